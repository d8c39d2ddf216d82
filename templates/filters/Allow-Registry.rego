# Allow-Registry: matches Aqua scan events whose `registry` contains one of the
# names listed in `ar_allowed_registries` (substring match, case-sensitive).
#
# Customise: edit the set below, e.g. {"Aqua", "Docker Hub", "ecr"}.
#
# Changes from Postee's rego-filters/Allow-Registry.rego:
#   * helper names carry the `ar_` prefix so this file can be combined with
#     other filters in one route without a conflicting-rule compile error;
#   * a non-string `registry` no longer raises a type error (it does not match).
#
# Several files in one route's `input-files` are combined with OR.
package postee

# --- edit here ---------------------------------------------------------------
ar_allowed_registries := {"Aqua"}
# -----------------------------------------------------------------------------

allow {
	is_string(input.registry)
	contains(input.registry, ar_allowed_registries[_])
}
