# Aqua image scan -> Slack blocks. Same blocks as Postee's postee.vuls.slack, except that empty
# severity and malware sections are left out; written for this project.
package postee.vuls.slack

import data.postee.lib
import future.keywords.in

title := sprintf("%s vulnerability scan report", [input.image])

aggregation_pkg := "postee.vuls.slack.aggregation"

href := sprintf("%s%s/%s", [lib.aqua_server, urlquery.encode(input.registry), urlquery.encode(input.image)])

link_text := sprintf("%s%s/%s", [lib.aqua_server, input.registry, input.image])

url := lib.pick(lib.aqua_server != "", href, "")

severities := ["critical", "high", "medium", "low", "negligible"]

summary := input.vulnerability_summary

found(option, counter) = lib.pick(
	input.scan_options[option] == true,
	lib.pick(lib.value_or(summary, counter, 0) > 0, "Yes", "No"),
	"No",
)

stats := [f |
	some s in severities
	some f in [lib.field(sprintf("*%s*", [upper(s)])), lib.field(sprintf("*%d*", [summary[s]]))]
]

checks := [f |
	some i, check in input.image_assurance_results.checks_performed
	status := lib.pick(lib.value_or(check, "failed", false), "FAIL", "PASS")
	some f in [
		lib.field(sprintf("%d %s", [i + 1, check.control])),
		lib.field(concat(" / ", [check.policy_name, status])),
	]
]

controls := [lib.fields_section(part) |
	some part in lib.chunks(array.concat([lib.field("*#* *Control*"), lib.field("*Policy Name* / *Status*")], checks), 10)
]

vulnerability_cells(severity) = [f |
	some item in input.resources
	some v in item.vulnerabilities
	v.aqua_severity == severity
	text := concat("/", [
		lib.value_or(item.resource, "name", "none"),
		lib.value_or(item.resource, "version", "none"),
		lib.value_or(v, "fix_version", "none"),
	])
	some f in [lib.field(v.name), lib.field(text)]
]

severity_blocks(severity) = [] {
	count(vulnerability_cells(severity)) == 0
}

severity_blocks(severity) = lib.captioned_fields(sprintf("*%s severity vulnerabilities*", [severity]), cells) {
	cells := array.concat(
		[lib.field("*Vulnerability ID*"), lib.field("*Resource name / Installed version / Fix version*")],
		vulnerability_cells(severity),
	)
	count(cells) > 2
}

malware_cells := [f |
	some i, m in lib.value_or(input, "malware", [])
	some f in [
		lib.field(sprintf("%d %s", [i + 1, m.malware])),
		lib.field(concat("/", [lib.value_or(m, "hash", ""), lib.value_or(m, "path", "")])),
	]
]

malware_blocks := [] {
	count(malware_cells) == 0
} else := lib.captioned_fields("Malware", array.concat([lib.field("*# Malware*"), lib.field("*Hash / Path*")], malware_cells))

footer := [lib.section(sprintf("See more: <%s|%s>", [href, link_text])) | lib.aqua_server != ""]

header := array.concat(
	[
		lib.section(sprintf("Image name: %s", [input.image])),
		lib.section(sprintf("Registry: %s", [input.registry])),
		lib.section(lib.pick(lib.value_or(input.image_assurance_results, "disallowed", false), "Image is non-compliant", "Image is compliant")),
		lib.section(sprintf("Malware found: %s", [found("scan_malware", "malware")])),
		lib.section(sprintf("Sensitive data found: %s", [found("scan_sensitive_data", "sensitive")])),
		lib.fields_section(stats),
		lib.section("*Assurance controls*"),
	],
	array.concat(controls, [lib.section("*Found vulnerabilities*")]),
)

result := [b |
	some part in array.concat(
		array.concat([header], [severity_blocks(s) | some s in severities]),
		[malware_blocks, footer],
	)
	some b in part
]
