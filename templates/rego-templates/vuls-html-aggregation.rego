# Aggregation packages: several rendered messages (newest first) -> one message. `input` is an
# array of {title, description, url, date, severity, summary, category, subcategory,
# assignedTo, assignedGroup}; a description that was a JSON array of objects (Slack blocks)
# arrives as that array. Written for this project.
package postee.vuls.html.aggregation

import future.keywords.in

title := "Vulnerability scan report"

result := concat("\n", [part |
	some item in input
	is_object(item)
	some part in [sprintf("<h1>%s</h1>", [item.title]), sprintf("%v", [item.description])]
])

url := concat("\n", [item.url | some item in input; is_object(item)])
