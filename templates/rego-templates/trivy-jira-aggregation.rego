# Aggregation of postee.trivy.jira messages into one Jira wiki text: each message's title as a
# level-1 heading, then its text. Written for this project (Postee has no Jira aggregation).
package postee.trivy.jira.aggregation

import future.keywords.in

title := "Vulnerability scan report"

result := concat("\n", [part |
	some item in input
	is_object(item)
	some part in [sprintf("h1. %s", [item.title]), sprintf("%v", [item.description])]
])

url := concat("\n", [item.url | some item in input; is_object(item)])
