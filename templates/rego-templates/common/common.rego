# Helpers shared by the bundled templates (package `postee`), the same functions Postee's
# templates call. Written for this project; see docs/templates.md.
package postee

# by_flag(a, b, flag): `a` when flag is true, `b` when it is false, undefined otherwise.
by_flag(a, b, flag) = a {
	flag == true
}

by_flag(a, b, flag) = b {
	flag == false
}

# duplicate(a, b, col): `a` for column 1, `b` for column 2 (used to build table cells).
duplicate(a, b, col) = a {
	col == 1
}

duplicate(a, b, col) = b {
	col == 2
}

# clamp(a, b): the smaller of the two.
clamp(a, b) = b {
	a > b
}

clamp(a, b) = a {
	a <= b
}

# flat_array(a): flattens one level of nesting, [[x, y], [z]] -> [x, y, z].
flat_array(a) = [item | part := a[_]; item := part[_]]

# with_default(obj, prop, d): obj[prop] when it is defined and not false, otherwise d.
with_default(obj, prop, d) = obj[prop] {
	obj[prop]
}

with_default(obj, prop, d) = d {
	not obj[prop]
}
