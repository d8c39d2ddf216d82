# Aqua insight -> ServiceNow incident. Same output as Postee's postee.servicenow.insight,
# aggregating with postee.servicenow.aggregation; written for this project.
package postee.servicenow.insight

import data.postee.lib
import future.keywords.in

title := input.insight.description

aggregation_pkg := "postee.servicenow.aggregation"

server_url := trim_suffix(lib.aqua_server, "/#/images/")

href := sprintf("%s/ah/#/insights/%s/resource/%s", [server_url, urlquery.encode(input.insight.id), urlquery.encode(input.resource.id)])

link_text := sprintf("%s/ah/#/insights/%s/resource/%s", [server_url, input.insight.id, input.resource.id])

priority := p {
	names := {4: "critical", 3: "high", 2: "medium", 1: "low", 0: "negligible"}
	p := names[input.insight.priority]
} else := "unknown"

evidence := lib.value_or(input, "evidence", {})

list(name) = l {
	l := evidence[name]
	is_array(l)
} else := []

vulnerabilities := "" {
	count(list("vulnerabilities")) == 0
} else := sprintf("\n<p>Vulnerabilities</p>\n%s\n", [lib.html_table(
	["Vulnerability ID", "Severity", "Resource name", "Installed version", "Fix version"],
	[[v.name, v.severity, lib.value_or(v, "package_name", "none"), lib.value_or(v, "current_version", "none"), lib.value_or(v, "fix_version", "none")] |
		some v in list("vulnerabilities")
	],
)])

sensitive_data := "" {
	count(list("sensitive_data")) == 0
} else := sprintf("\n<p>Sensitive data</p>\n%s\n", [lib.html_table(
	["File Type", "File Path", "Image"],
	[[s.file_type, s.file_path, s.image] | some s in list("sensitive_data")],
)])

# The first remediation the evidence carries.
remediations := [r |
	some key in ["vulnerabilities_remediation", "sensitive_data_remediation", "malware_remediation", "privileged_workloads_remediation", "privileged_iam_roles_remediation"]
	r := evidence[key]
	is_string(r)
	r != ""
]

recommendation := remediations[0] {
	count(remediations) > 0
} else := "No Recommendation"

result := concat("", [
	"\n<!-- Insight Details -->\n<h2> <i>Insight Details:</i> </h2>\n",
	sprintf("<p><b>Insight ID:</b> %s</p>\n", [input.insight.id]),
	sprintf("<p><b>Description:</b> %s</p>\n", [input.insight.description]),
	sprintf("<p><b>Impact:</b> %s</p>\n", [input.insight.impact]),
	sprintf("<p><b>Severity:</b> %s</p>\n", [priority]),
	sprintf("<p><b>Found Date:</b> %s</p>\n", [input.resource.found_date]),
	sprintf("<p><b>Last Scan:</b> %s</p>\n", [input.resource.last_scanned]),
	sprintf("<p><b>URL:</b> %s</p>\n", [lib.pick(server_url != "", sprintf("<a href='%s'>%s</a>", [href, link_text]), "")]),
	"<!-- TODO  -->\n<!-- Resourse Details -->\n<h2> <i>Resourse Details:</i> </h2>\n",
	sprintf("<p><b>Resourse ID:</b> %s</p>\n", [input.resource.id]),
	sprintf("<p><b>Resourse Name:</b> %s</p>\n", [input.resource.name]),
	sprintf("<p><b>ARN:</b> %s</p>\n", [lib.value_or(input.resource, "arn", "")]),
	sprintf("<p><b>Extra Info:</b> %v</p>\n", [lib.value_or(input.resource, "steps", {})]),
	"<!-- Evidence -->\n<h2> <i>Evidence:</i> </h2>\n<!-- Vulnerabilities -->\n",
	vulnerabilities,
	"\n<!-- Sensitive data -->\n",
	sensitive_data,
	"\n<!-- Recommendation -->\n<h2> <i>Recommendation:</i> </h2>\n",
	recommendation,
	"\n",
	sprintf("<p><b>Resourse policy name:</b> %s</p>\n", [lib.value_or(input, "response_policy_name", "")]),
	sprintf("<p><b>Resourse policy application scopes:</b> %v</p>\n", [lib.value_or(input, "application_scope", "none")]),
])

result_category := "Security insight"

only_one(l) = l[0] {
	is_array(l)
	count(l) == 1
} else := ""

result_assigned_to := only_one(input.application_scope_owners)

result_assigned_group := only_one(input.application_scope)

result_severity := input.insight.priority

result_summary := sprintf("Insight ID: %s\nDescription: %s\nImpact: %s\nSeverity: %s\nFound Date: %s\nLast Scan: %s\nURL: %s", [
	input.insight.id,
	input.insight.description,
	input.insight.impact,
	priority,
	input.resource.found_date,
	input.resource.last_scanned,
	lib.pick(server_url != "", link_text, ""),
])
