# Trivy JSON report -> Slack blocks. Same blocks as Postee's postee.vuls.trivy.slack, without
# its chunking bug (the last vulnerability of a severity was dropped when the number of
# vulnerabilities was a multiple of 5); written for this project.
package postee.vuls.trivy.slack

import data.postee.lib
import future.keywords.in

title := "Vulnerability scan report"

aggregation_pkg := "postee.vuls.slack.trivy.aggregation"

severities := [["CRITICAL", "Critical"], ["HIGH", "High"], ["MEDIUM", "Medium"], ["LOW", "Low"], ["UNKNOWN", "Unknown"]]

vulnerabilities(severity) = [v |
	some r in lib.value_or(input, "Results", [])
	some v in lib.value_or(r, "Vulnerabilities", [])
	v.Severity == severity
]

cells(severity) = [f |
	some v in vulnerabilities(severity)
	text := concat(" / ", [
		lib.value_or(v, "PkgName", "none"),
		lib.value_or(v, "InstalledVersion", "none"),
		lib.value_or(v, "FixedVersion", "none"),
	])
	some f in [lib.field(v.VulnerabilityID), lib.field(text)]
]

severity_blocks(severity) = [] {
	count(cells(severity)) == 0
}

severity_blocks(severity) = lib.fields_once_captioned(sprintf("*%s severity vulnerabilities*", [severity]), all) {
	count(cells(severity)) > 0
	all := array.concat([lib.field("*Vulnerability ID*"), lib.field("*Resource name / Installed version / Fix version*")], cells(severity))
}

totals := lib.fields_section([f |
	some s in severities
	some f in [lib.field(s[1]), lib.field(sprintf("*%d*", [count(vulnerabilities(s[0]))]))]
])

header := [
	lib.section(sprintf("Artifact name: %s", [input.ArtifactName])),
	lib.section(sprintf("Type: %s", [input.ArtifactType])),
	lib.section("*Found vulnerabilities*"),
]

result := [b |
	some part in array.concat(
		array.concat([header], [severity_blocks(s[0]) | some s in severities]),
		[[lib.section("*Found vulnerabilities*"), totals]],
	)
	some b in part
]
