# trivy-operator VulnerabilityReport -> Jira wiki markup. Same text as Postee's
# postee.trivyoperator.jira; written for this project.
package postee.trivyoperator.jira

import data.postee.lib
import future.keywords.in

image := sprintf("%s:%s", [input.report.artifact.repository, input.report.artifact.tag])

namespace := input.metadata.namespace

title := sprintf("Vulnerability issue with image %s in namespace %s", [image, namespace])

# [severity in the report, heading, summary counter, colour]
severities := [
	["CRITICAL", "Critical", "criticalCount", "#c00000"],
	["HIGH", "High", "highCount", "#e0443d"],
	["MEDIUM", "Medium", "mediumCount", "#f79421"],
	["LOW", "Low", "lowCount", "#e1c930"],
	["UNKNOWN", "Unknown", "unknownCount", "#505f79"],
]

totals := concat("", array.concat([sprintf("|%s: {color:%s}%s{color}", [lower(s[1]), s[3], lib.num(lib.value_or(input.report.summary, s[2], 0))]) | some s in severities], ["|"]))

rows(severity) = [row |
	some v in lib.value_or(input.report, "vulnerabilities", [])
	v.severity == severity
	cells := [lib.value_or(v, k, "") | some k in ["vulnerabilityID", "title", "resource", "installedVersion", "fixedVersion", "primaryLink"]]
	row := sprintf("%s |", [concat("", [sprintf("| %s ", [c]) | some c in cells])])
]

block(s) = "" {
	count(rows(s[0])) == 0
}

block(s) = concat("", [
	sprintf("\nh4. %s severity vulnerabilities\n\n\n", [s[1]]),
	"|| ID || Title || Resource || Installed version || Fixed version || Url  ||\n",
	concat("\n", rows(s[0])),
	"\n\n\n",
]) {
	count(rows(s[0])) > 0
}

result := concat("", array.concat(
	[sprintf("\nh1. Image: %s in namespace %s\n\nh4. Summary totals:\n%s\n\n", [image, namespace, totals])],
	[block(s) | some s in severities],
))
