# Aggregation of ServiceNow messages into one incident: the HTML bodies one after the other
# (as postee.vuls.html.aggregation), the most severe severity (1 is the most severe), the
# newest date, category and subcategory, the summaries joined, and an assignee or group only
# when every message agrees. Written for this project (Postee used the HTML aggregation and
# lost these fields).
package postee.servicenow.aggregation

import data.postee.vuls.html.aggregation as html
import future.keywords.in

title := html.title

result := html.result

url := html.url

items := [item | some item in input; is_object(item)]

result_severity := min([to_number(item.severity) | some item in items; item.severity != ""])

result_date := items[0].date

result_category := items[0].category

result_subcategory := items[0].subcategory

result_summary := concat("\n\n", [sprintf("%s\n%s", [item.title, item.summary]) | some item in items])

agreed(key) = v {
	values := {item[key] | some item in items}
	count(values) == 1
	some v in values
}

result_assigned_to := agreed("assignedTo")

result_assigned_group := agreed("assignedGroup")
