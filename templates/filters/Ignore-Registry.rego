# Ignore-Registry: matches every event EXCEPT those whose `registry` contains one
# of the names listed in `ir_ignored_registries` (substring match,
# case-sensitive). Events without a `registry` field are matched.
#
# Customise: edit the set below, e.g. {"Aqua", "Docker Hub"}.
#
# Changes from Postee's rego-filters/Ignore-Registry.rego:
#   * helper names carry the `ir_` prefix so this file can be combined with
#     other filters in one route without a conflicting-rule compile error;
#   * no `default` rule for a shared name, for the same reason.
#
# Several files in one route's `input-files` are combined with OR.
package postee

# --- edit here ---------------------------------------------------------------
ir_ignored_registries := {"Aqua"}
# -----------------------------------------------------------------------------

ir_registry_is_ignored {
	is_string(input.registry)
	contains(input.registry, ir_ignored_registries[_])
}

allow {
	not ir_registry_is_ignored
}
