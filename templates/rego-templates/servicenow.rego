# Aqua scan (image, function or VM) -> ServiceNow incident: HTML body plus the result_* fields.
# Same output as Postee's postee.servicenow, but it aggregates with postee.servicenow.aggregation
# (Postee's used the HTML package, losing the ServiceNow fields); written for this project.
package postee.servicenow

import data.postee.lib
import future.keywords.in

aggregation_pkg := "postee.servicenow.aggregation"

report_type := "function" {
	input.entity_type == 1
} else := "vm" {
	input.entity_type == 2
} else := "image"

title := sprintf("Aqua security | %s | %s | Scan report", [report_type, input.image])

server_url := trim_suffix(lib.aqua_server, "images/")

href := sprintf("%sfunctions/%s/%s", [server_url, urlquery.encode(input.registry), urlquery.encode(input.image)]) {
	report_type == "function"
} else := sprintf("%sinfrastructure/%s/node", [server_url, urlquery.encode(input.image)]) {
	report_type == "vm"
} else := sprintf("%simage/%s/%s", [server_url, urlquery.encode(input.registry), urlquery.encode(input.image)])

link_text := sprintf("%sfunctions/%s/%s", [server_url, input.registry, input.image]) {
	report_type == "function"
} else := sprintf("%sinfrastructure/%s/node", [server_url, input.image]) {
	report_type == "vm"
} else := sprintf("%simage/%s/%s", [server_url, input.registry, input.image])

url := lib.pick(server_url != "", href, "")

severities := [
	["critical", "Critical", "#c00000"],
	["high", "High", "#e0443d"],
	["medium", "Medium", "#f79421"],
	["low", "Low", "#e1c930"],
	["negligible", "Negligible", "green"],
]

summary := lib.value_or(input, "vulnerability_summary", {})

count_of(s) = lib.value_or(summary, s, 0)

found(option, counter) = lib.pick(
	input.scan_options[option] == true,
	lib.pick(count_of(counter) > 0, "Yes", "No"),
	"No",
)

malware := found("scan_malware", "malware")

sensitive := found("scan_sensitive_data", "sensitive")

checks := [row |
	some i, check in input.image_assurance_results.checks_performed
	row := [format_int(i + 1, 10), check.control, check.policy_name, lib.pick(lib.value_or(check, "failed", false), "FAIL", "PASS")]
]

controls := "" {
	count(checks) == 0
} else := sprintf("\n<h3>Assurance controls</h3>\n%s\n", [lib.html_table(["#", "Control", "Policy Name", "Status"], checks)])

vulnerabilities(severity) = [row |
	some item in lib.value_or(input, "resources", [])
	some v in lib.value_or(item, "vulnerabilities", [])
	v.aqua_severity == severity
	row := [v.name, lib.value_or(item.resource, "name", "none"), lib.value_or(item.resource, "version", "none"), lib.value_or(v, "fix_version", "none")]
]

severity_block(s) = "" {
	count(vulnerabilities(s[0])) == 0
} else := sprintf("\n<h3>%s severity vulnerabilities</h3>\n%s\n", [s[1], lib.html_table(["Vulnerability ID", "Resource name", "Installed version", "Fix version"], vulnerabilities(s[0]))])

link := lib.pick(server_url != "", sprintf("<p>See more: <a href='%s'>%s</a></p>\n", [href, link_text]), "")

result := concat("", [
	sprintf("\n<p><b>Name:</b> %s</p>\n", [input.image]),
	sprintf("<p><b>Registry:</b> %s</p>\n", [input.registry]),
	sprintf("<p><b>Malware found:</b> %s</p>\n", [malware]),
	sprintf("<p><b>Sensitive data found:</b> %s</p>\n", [sensitive]),
	"<!-- Stats -->\n<h3> Vulnerability summary </h3>\n",
	lib.html_table([], [[s[0], lib.colored(s[2], lib.num(count_of(s[0])))] | some s in severities]),
	"\n<!-- Assurance controls -->\n",
	controls,
	"\n",
	concat("", [sprintf("<!-- %s severity vulnerabilities -->\n%s\n", [s[1], severity_block(s)]) | some s in severities]),
	link,
	sprintf("<p><b>Resourse policy name:</b> %s</p>\n", [lib.value_or(input, "response_policy_name", "")]),
	sprintf("<p><b>Resourse policy application scopes:</b> %v</p>\n\n", [lib.value_or(input, "application_scope", [])]),
])

result_date := input.scan_started.seconds

result_category := "Serverless functions Scanning" {
	report_type == "function"
} else := "Security - VM Scan results" {
	report_type == "vm"
} else := "Security Image Scan results"

result_subcategory := "Security incident"

only_one(list) = list[0] {
	is_array(list)
	count(list) == 1
} else := ""

result_assigned_to := only_one(input.application_scope_owners)

result_assigned_group := only_one(input.application_scope)

result_severity := 1 {
	count_of("critical") > 0
} else := 2 {
	count_of("high") > 0
} else := 3

result_summary := concat("", [
	sprintf("Name: %s\nRegistry: %s\n", [input.image, input.registry]),
	sprintf("Malware found: %s\nSensitive data found: %s\n\n", [malware, sensitive]),
	"vulnerabilities:\n",
	concat(",\n", [sprintf("*   %s: %s", [s[0], lib.num(count_of(s[0]))]) | some s in severities]),
	"\n\n",
	lib.pick(server_url != "", sprintf("See more: %s", [link_text]), ""),
])
