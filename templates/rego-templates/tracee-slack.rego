# Tracee finding -> Slack blocks. Same blocks as Postee's postee.tracee.slack; written for this
# project.
package postee.tracee.slack

import data.postee.lib

title := sprintf("Tracee Detection - %s", [input.SigMetadata.Name])

result := [
	lib.section(sprintf("*Rule Description:* %s", [input.SigMetadata.Description])),
	lib.section(sprintf("*Detection:* %s", [input.Context.processName])),
	lib.section(sprintf("*MITRE Details:* %v", [input.SigMetadata.Properties])),
	lib.section(sprintf("*Severity:* %v", [input.SigMetadata.Properties.Severity])),
]
