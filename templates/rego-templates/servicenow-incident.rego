# Aqua runtime incident -> ServiceNow incident. Same output as Postee's
# postee.servicenow.incident, aggregating with postee.servicenow.aggregation; written for this
# project.
package postee.servicenow.incident

import data.postee.lib
import future.keywords.in

title := input.name

aggregation_pkg := "postee.servicenow.aggregation"

severity := lib.num(input.severity_score) {
	input.severity_score != ""
} else := "unknown"

# `data` is a JSON-like string ({"host": "x","rule": "y",...}); Postee shows it as a key/value
# table in the order of the string (so it is split, not parsed), without `tracee_finding`.
data_rows(d) = [[key, value] |
	some part in split(d, ",\"")
	clean := replace(replace(replace(part, "\"", ""), "{", ""), "}", "")
	key := split(clean, ":")[0]
	key != "tracee_finding"
	value := trim_left(substring(clean, count(key), -1), ":")
]

data_block := lib.html_table([], data_rows(input.data)) {
	is_string(input.data)
	input.data != ""
} else := "data not found"

result := concat("", [
	sprintf("\n<p><b>Name:</b> %s</p>\n", [lib.value_or(input, "name", "name not found")]),
	sprintf("<p><b>Category:</b> %s</p>\n", [lib.value_or(input, "category", "category not found")]),
	sprintf("<p><b>Severity:</b> %s</p>\n", [severity]),
	sprintf("<p><b>Data:</b> %s</p>\n\n", [data_block]),
	sprintf("<p><b>Resourse policy name:</b> %s</p>\n", [lib.value_or(input, "response_policy_name", "response policy name not found")]),
	sprintf("<p><b>Resourse policy application scopes:</b> %v</p>\n", [lib.value_or(input, "application_scope", "none")]),
])

result_date := input.time

result_category := "Security incident"

only_one(list) = list[0] {
	is_array(list)
	count(list) == 1
} else := ""

result_assigned_to := only_one(input.application_scope_owners)

result_assigned_group := only_one(input.application_scope)

result_severity := input.severity_score

result_summary := sprintf("Category: %s\nSeverity: %s", [lib.value_or(input, "category", "category not found"), severity])
