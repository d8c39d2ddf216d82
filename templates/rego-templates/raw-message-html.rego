# The whole event, pretty-printed, in an HTML <pre> block (for email and other HTML targets).
package postee.rawmessage.html

title = "Raw Message Received"

result = sprintf("<pre><code>%s</code></pre>", [jsonformat(input)])
