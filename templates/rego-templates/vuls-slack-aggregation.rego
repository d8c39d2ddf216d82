# Slack aggregation: each message's title as a section, then its blocks (a text description
# becomes one section). Written for this project.
package postee.vuls.slack.aggregation

import data.postee.lib
import future.keywords.in

title := "Vulnerability scan report"

blocks(d) = d {
	is_array(d)
} else := [lib.section(sprintf("%v", [d]))]

result := [b |
	some item in input
	is_object(item)
	some b in array.concat([lib.section(item.title)], blocks(item.description))
]

url := concat("\n", [item.url | some item in input; is_object(item)])
