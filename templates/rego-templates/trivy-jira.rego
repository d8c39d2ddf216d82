# Trivy JSON report -> Jira wiki markup. Same text as Postee's postee.trivy.jira, but it
# aggregates with a Jira package (Postee's pointed at the Slack one); written for this project.
package postee.trivy.jira

import data.postee.lib
import future.keywords.in

title := sprintf("%s vulnerability scan report", [input.ArtifactName])

aggregation_pkg := "postee.trivy.jira.aggregation"

severities := [["CRITICAL", "Critical"], ["HIGH", "High"], ["MEDIUM", "Medium"], ["LOW", "Low"], ["UNKNOWN", "Unknown"]]

headers := ["Layer", "Title", "Vulnerability ID", "Resource name", "Path", "Installed version", "Fix version", "Url"]

rows(severity) = [row |
	some r in lib.value_or(input, "Results", [])
	some v in lib.value_or(r, "Vulnerabilities", [])
	v.Severity == severity
	row := [
		lib.value_or(r, "Target", "none"),
		lib.value_or(v, "Title", "none"),
		v.VulnerabilityID,
		lib.value_or(v, "PkgName", "none"),
		lib.value_or(v, "PkgPath", "none"),
		lib.value_or(v, "InstalledVersion", "none"),
		lib.value_or(v, "FixedVersion", "none"),
		lib.value_or(v, "PrimaryURL", "none"),
	]
]

line(cells, sep) = sprintf("\n| %s ", [concat("", [sprintf("%s %s ", [sep, c]) | some c in cells])])

table(severity) = concat("", [
	"\n",
	line(headers, "||"),
	concat("", [line(r, "|") | some r in rows(severity)]),
	"\n",
])

block(s) = "" {
	count(rows(s[0])) == 0
}

block(s) = sprintf("\nh4. %s severity vulnerabilities\n%s\n", [s[1], table(s[0])]) {
	count(rows(s[0])) > 0
}

result := concat("", array.concat(
	[sprintf("\nh1. Image name: %s\n", [input.ArtifactName])],
	[sprintf("%s\n", [block(s)]) | some s in severities],
))
