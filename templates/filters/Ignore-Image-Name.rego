# Ignore-Image-Name: matches every event EXCEPT those whose `image` contains one
# of the names listed in `iin_ignored_image_names` (substring match,
# case-sensitive). Events without an `image` field are matched.
#
# Customise: edit the set below, e.g. {"alpine", "postgres", "test-"}.
#
# Changes from Postee's rego-filters/Ignore-Image-Name.rego:
#   * helper names carry the `iin_` prefix so this file can be combined with
#     other filters in one route without a conflicting-rule compile error;
#   * no `default` rule for a shared name, for the same reason.
#
# Several files in one route's `input-files` are combined with OR.
package postee

# --- edit here ---------------------------------------------------------------
iin_ignored_image_names := {"alpine", "postgres"}
# -----------------------------------------------------------------------------

iin_image_is_ignored {
	is_string(input.image)
	contains(input.image, iin_ignored_image_names[_])
}

allow {
	not iin_image_is_ignored
}
