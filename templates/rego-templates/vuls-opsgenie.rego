# Aqua image scan -> OpsGenie alert fields. Same output as Postee's postee.vuls.opsgenie;
# written for this project.
package postee.vuls.opsgenie

title := input.image

result := {
	"alias": input.image,
	"description": sprintf("%s vulnerability scan report", [input.image]),
}
