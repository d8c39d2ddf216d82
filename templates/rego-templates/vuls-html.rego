# Aqua image scan -> HTML report (email, Teams, ServiceNow). Same layout as Postee's
# postee.vuls.html; written for this project.
package postee.vuls.html

import data.postee.lib
import future.keywords.in

title := sprintf("%s vulnerability scan report", [input.image])

aggregation_pkg := "postee.vuls.html.aggregation"

href := sprintf("%s%s/%s", [lib.aqua_server, urlquery.encode(input.registry), urlquery.encode(input.image)])

link_text := sprintf("%s%s/%s", [lib.aqua_server, input.registry, input.image])

url := lib.pick(lib.aqua_server != "", href, "")

severities := [
	["critical", "Critical", "#c00000"],
	["high", "High", "#e0443d"],
	["medium", "Medium", "#f79421"],
	["low", "Low", "#e1c930"],
	["negligible", "Negligible", "green"],
]

summary := input.vulnerability_summary

# "Yes" only when the scan looked for it and found some (Postee says "Yes" whenever the scan
# option is on, even with nothing found).
found(option, counter) = lib.pick(
	input.scan_options[option] == true,
	lib.pick(lib.value_or(summary, counter, 0) > 0, "Yes", "No"),
	"No",
)

stats := lib.html_table([], [[name, lib.colored(color, format_int(summary[name], 10))] |
	some s in severities
	name := s[0]
	color := s[2]
])

controls := lib.html_table(["#", "Control", "Policy Name", "Status"], [row |
	some i, check in input.image_assurance_results.checks_performed
	row := [format_int(i + 1, 10), check.control, check.policy_name, lib.pick(lib.value_or(check, "failed", false), "FAIL", "PASS")]
])

vulnerabilities(severity) = [row |
	some item in input.resources
	some v in item.vulnerabilities
	v.aqua_severity == severity
	row := [
		v.name,
		lib.value_or(item.resource, "name", "none"),
		lib.value_or(item.resource, "version", "none"),
		lib.value_or(v, "fix_version", "none"),
	]
]

severity_block(s) = "" {
	count(vulnerabilities(s[0])) == 0
}

severity_block(s) = sprintf("\n<h3>%s severity vulnerabilities</h3>\n%s\n", [s[1], table]) {
	rows := vulnerabilities(s[0])
	count(rows) > 0
	table := lib.html_table(["Vulnerability ID", "Resource name", "Installed version", "Fix version"], rows)
}

link := lib.pick(lib.aqua_server != "", sprintf("<p>See more: <a href='%s'>%s</a></p>\n", [href, link_text]), "")

result := concat("", [
	sprintf("\n<p>Image name: %s</p>\n", [input.image]),
	sprintf("<p>Registry: %s</p>\n", [input.registry]),
	sprintf("<p>%s</p>\n", [lib.pick(lib.value_or(input.image_assurance_results, "disallowed", false), "Image is non-compliant", "Image is compliant")]),
	sprintf("<p>Malware found: %s</p>\n", [found("scan_malware", "malware")]),
	sprintf("<p>Sensitive data found: %s</p>\n", [found("scan_sensitive_data", "sensitive")]),
	"<!-- stats -->\n",
	stats,
	"\n<h2>Assurance controls</h2>\n",
	controls,
	"\n",
	concat("", [block |
		some s in severities
		block := sprintf("<!-- %s severity vulnerabilities -->\n%s\n", [s[1], severity_block(s)])
	]),
	link,
	"\n",
])
