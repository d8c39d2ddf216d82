# Tracee finding -> HTML. Same text as Postee's postee.tracee.html; written for this project.
package postee.tracee.html

title := sprintf("Tracee Detection - %s", [input.SigMetadata.Name])

result := sprintf("\n<p> Rule Description: %s </p>\n<p> Detection: %s </p>\n<p> MITRE Details: %s </p>\n<p> Severity: %v </p>\n", [
	input.SigMetadata.Description,
	input.Context.processName,
	input.SigMetadata.Properties,
	input.SigMetadata.Properties.Severity,
])
