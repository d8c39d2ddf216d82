# trivy-operator VulnerabilityReport -> Slack blocks. Same blocks as Postee's
# postee.trivyoperator.slack; written for this project.
package postee.trivyoperator.slack

import data.postee.lib
import future.keywords.in

image := sprintf("%s:%s", [input.report.artifact.repository, input.report.artifact.tag])

title := sprintf("Vulnerability scan report %s", [image])

severities := [
	["CRITICAL", "Critical", "criticalCount"],
	["HIGH", "High", "highCount"],
	["MEDIUM", "Medium", "mediumCount"],
	["LOW", "Low", "lowCount"],
	["UNKNOWN", "Unknown", "unknownCount"],
]

divider := {"type": "divider"}

cells(severity) = [f |
	some v in lib.value_or(input.report, "vulnerabilities", [])
	v.severity == severity
	link := sprintf("<%s|%s>", [lib.value_or(v, "primaryLink", ""), v.vulnerabilityID])
	text := concat(" / ", [lib.value_or(v, "resource", ""), lib.value_or(v, "installedVersion", ""), lib.value_or(v, "fixedVersion", "")])
	some f in [lib.field(link), lib.field(text)]
]

severity_blocks(severity) = [] {
	count(cells(severity)) == 0
}

severity_blocks(severity) = array.concat(lib.fields_once_captioned(sprintf("*%s severity vulnerabilities*", [severity]), all), [divider]) {
	count(cells(severity)) > 0
	all := array.concat([lib.field("*Vulnerability ID*"), lib.field("*Resource / Version / Fixed version*")], cells(severity))
}

header := [
	{"type": "header", "text": {"type": "plain_text", "text": sprintf("Vulnerability issue with image:%s in namespace %s", [image, input.metadata.namespace])}},
	divider,
	{"type": "context", "elements": [lib.field("*Summary totals:*")]},
	{"type": "context", "elements": [lib.field(sprintf("%s: *%s*", [s[1], lib.num(lib.value_or(input.report.summary, s[2], 0))])) | some s in severities]},
	divider,
]

result := [b |
	some part in array.concat([header], [severity_blocks(s[0]) | some s in severities])
	some b in part
]
