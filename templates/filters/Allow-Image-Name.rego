# Allow-Image-Name: matches Aqua/Trivy scan events whose `image` contains one of
# the names listed in `aim_allowed_image_names` (substring match, case-sensitive).
#
# Customise: edit the set below, e.g. {"ubuntu", "nginx", "my-team/"}.
#
# Changes from Postee's rego-filters/Allow-Image-Name.rego:
#   * helper names carry the `aim_` prefix so this file can be listed in one
#     route's `input-files` together with any other filter without a
#     conflicting-rule compile error;
#   * a non-string `image` no longer raises a type error (it simply does not match).
#
# Several files in one route's `input-files` are combined with OR: the route
# matches when any file's `allow` holds.
package postee

# --- edit here ---------------------------------------------------------------
aim_allowed_image_names := {"ubuntu", "busybox"}
# -----------------------------------------------------------------------------

allow {
	is_string(input.image)
	contains(input.image, aim_allowed_image_names[_])
}
