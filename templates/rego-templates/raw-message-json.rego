# The whole event as pretty-printed JSON (for webhooks, http and exec actions).
# Like Postee, the event includes the injected `postee` key: {"AquaServer": "..."}.
package postee.rawmessage.json

title = "-"

result = jsonformat(input)
