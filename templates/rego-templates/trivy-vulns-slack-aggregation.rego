# Aggregation of postee.vuls.trivy.slack messages: the same as postee.vuls.slack.aggregation
# (Postee's version read fields that aggregation items do not have and always produced an
# empty message). Written for this project.
package postee.vuls.slack.trivy.aggregation

import data.postee.vuls.slack.aggregation as slack

title := slack.title

result := slack.result

url := slack.url
