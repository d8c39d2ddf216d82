# Building blocks of the bundled templates (package `postee.lib`): HTML and Jira tables, Slack
# blocks, defaults and escaping. Written for this project. It is a package of its own so that a
# user `postee` helpers package (common.rego) can replace the helpers without breaking these.
package postee.lib

import future.keywords.in

# ---------------------------------------------------------------------------------------------
# Defaults

# obj[prop] when it is defined and not false, otherwise d (the semantics of Postee's with_default:
# an empty string or 0 is kept).
value_or(obj, prop, d) = obj[prop] {
	obj[prop]
}

value_or(obj, prop, d) = d {
	not obj[prop]
}

# `yes` when cond is true, otherwise `no` (also when cond is not a boolean).
pick(cond, yes, no) = yes {
	cond == true
}

pick(cond, yes, no) = no {
	not cond == true
}

# input.postee.AquaServer, "" when the event has none.
aqua_server := s {
	s := input.postee.AquaServer
	is_string(s)
} else := ""

# Number -> decimal string; anything else is passed through `%v`.
num(n) = format_int(n, 10) {
	is_number(n)
}

num(n) = sprintf("%v", [n]) {
	not is_number(n)
}

# ---------------------------------------------------------------------------------------------
# HTML (the layout Postee's HTML templates use, byte for byte)

html_table_start := "\n<TABLE border='1' style='width: 100%; border-collapse: collapse;'>\n"

html_row(cells, tag) = concat("", ["\n<TR>\n", concat("", [c |
	some cell in cells
	c := sprintf("<%s style='padding: 5px;'>%v</%s>\n", [tag, cell, tag])
]), "\n</TR>"])

html_header(headers) = "" {
	count(headers) == 0
}

html_header(headers) = html_row(headers, "TH") {
	count(headers) > 0
}

# A table: an optional header row, then one row per array of cells.
html_table(headers, rows) = concat("", [
	html_table_start,
	html_header(headers),
	concat("", [html_row(r, "TD") | some r in rows]),
	"\n</TABLE>\n",
])

colored(color, text) = sprintf("<span style='color:%s'>%v</span>", [color, text])

# ---------------------------------------------------------------------------------------------
# Slack blocks

section(text) = {"type": "section", "text": {"type": "mrkdwn", "text": text}}

field(text) = {"type": "mrkdwn", "text": text}

fields_section(fields) = {"type": "section", "fields": fields}

# Splits an array into consecutive slices of at most n items.
chunks(arr, n) = [array.slice(arr, i * n, (i + 1) * n) | some i in numbers.range(0, ceil(count(arr) / n) - 1)] {
	count(arr) > 0
}

chunks(arr, n) = [] {
	count(arr) == 0
}

# Slack allows at most 10 fields in a section: the fields are split into sections of 10,
# each preceded by the caption section. Nothing at all when there are no fields.
captioned_fields(caption, fields) = [b |
	some part in chunks(fields, 10)
	some b in [section(caption), fields_section(part)]
]

# As captioned_fields, with the caption only before the first section.
fields_once_captioned(caption, fields) = [b |
	some i, part in chunks(fields, 10)
	some b in array.concat([section(caption) | i == 0], [fields_section(part)])
]

# ---------------------------------------------------------------------------------------------
# XML

# Escapes the five XML special characters; numbers and other values are formatted with %v.
xml(s) = out {
	is_string(s)
	out := replace(replace(replace(replace(replace(s, "&", "&amp;"), "<", "&lt;"), ">", "&gt;"), "\"", "&quot;"), "'", "&apos;")
}

xml(s) = sprintf("%v", [s]) {
	not is_string(s)
}
