# Aqua image scan -> CycloneDX 1.1 XML with the vulnerability extension. Same document as
# Postee's postee.vuls.cyclondx (sic), except that text is XML-escaped; written for this
# project. `postee.vuls.cyclonedx` (below, correct spelling) is the same template.
package postee.vuls.cyclondx

import data.postee.lib
import future.keywords.in

title := input.image

vulnerability(v) = concat("", [
	"\n        <v:vulnerability>\n",
	sprintf("          <v:id>%s</v:id> \n", [lib.xml(v.name)]),
	"          <v:source name=\"NVD\">\n",
	sprintf("            <v:url>%s</v:url>\n", [lib.xml(lib.value_or(v, "nvd_url", ""))]),
	"          </v:source>\n          <v:ratings>\n            <v:rating>\n              <v:score>\n",
	sprintf("                <v:base>%s</v:base>\n", [score]),
	sprintf("                <v:impact>%s</v:impact>\n", [score]),
	sprintf("                <v:exploitability>%s</v:exploitability>\n", [score]),
	"              </v:score>\n",
	sprintf("              <v:severity>%s</v:severity>\n", [lib.xml(lib.value_or(v, "aqua_severity", ""))]),
	sprintf("              <v:method>%s</v:method>\n", [lib.xml(lib.value_or(v, "aqua_scoring_system", ""))]),
	sprintf("              <v:vector>%s</v:vector>\n", [lib.xml(lib.value_or(v, "aqua_vectors", ""))]),
	"            </v:rating>\n          </v:ratings>\n          <v:recommendations>\n",
	sprintf("            <v:recommendation>%s</v:recommendation>\n", [lib.xml(lib.value_or(v, "solution", "No solution available"))]),
	"          </v:recommendations>\n        </v:vulnerability>",
]) {
	score := lib.xml(lib.value_or(v, "aqua_score", 0))
}

license(resource) = substring(l, 0, 32) {
	l := resource.license
	is_string(l)
	l != ""
} else = "not provided"

component(item) = concat("", [
	"    <component type=\"application\">\n",
	sprintf("      <name>%s</name>\n", [lib.xml(lib.value_or(item.resource, "name", "none"))]),
	sprintf("      <version>%s</version>\n", [lib.xml(lib.value_or(item.resource, "version", "none"))]),
	"      <licenses>\n        <license>\n",
	sprintf("          <id>%s</id>\n", [lib.xml(license(item.resource))]),
	"        </license>\n      </licenses>\n",
	sprintf("      <v:vulnerabilities>%s</v:vulnerabilities>\n", [concat("", [vulnerability(v) | some v in lib.value_or(item, "vulnerabilities", [])])]),
	"    </component>",
])

result := concat("", [
	"<?xml version=\"1.0\"?>\n",
	"<bom serialNumber=\"urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79\" version=\"1\"\n",
	"     xmlns=\"http://cyclonedx.org/schema/bom/1.1\"\n",
	"     xmlns:v=\"http://cyclonedx.org/schema/ext/vulnerability/1.0\">\n",
	"  <components>\n  ",
	concat("", [component(item) | some item in lib.value_or(input, "resources", [])]),
	"\n  </components>\n</bom>",
])
