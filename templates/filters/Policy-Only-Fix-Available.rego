# Policy-Only-Fix-Available: matches Aqua scan events in which at least one
# vulnerability has a fix, i.e. some
# `input.resources[_].vulnerabilities[_].fix_version` is a non-empty string.
#
# Customise: nothing to edit; combine with other filters (see
# Policy-Related-Features.rego for an AND combination).
#
# Changes from Postee's rego-filters/Policy-Only-Fix-Available.rego:
#   * an empty `fix_version` ("") no longer counts as "fix available";
#   * helper names carry the `pofa_` prefix so this file can be combined with
#     other filters in one route without a conflicting-rule compile error.
#
# Several files in one route's `input-files` are combined with OR.
package postee

pofa_fix_available {
	fix := input.resources[_].vulnerabilities[_].fix_version
	is_string(fix)
	fix != ""
}

allow {
	pofa_fix_available
}
