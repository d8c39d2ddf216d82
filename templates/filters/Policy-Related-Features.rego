# Policy-Related-Features: one filter that combines all the Aqua-scan checks of
# the other *.rego filters with a logical AND. An event matches only when every
# check below passes.
#
# Customise: edit the settings block below.
#   * prf_allowed_image_names  - image must contain one of these; empty set() = any image
#   * prf_ignored_image_names  - image must contain none of these; empty set() = ignore nothing
#   * prf_allowed_registries   - registry must contain one of these; empty set() = any registry
#   * prf_ignored_registries   - registry must contain none of these; empty set() = ignore nothing
#   * prf_min_severity         - at least one vulnerability at or above this severity
#                                ("negligible", "low", "medium", "high", "critical"); "" = no check
#   * prf_require_fix          - true: at least one vulnerability must have a fix_version
# To drop a check entirely you may also delete its line from the `allow` body.
#
# Changes from Postee's rego-filters/Policy-Related-Features.rego:
#   * Postee's `allow` body contains only comments, which is a parse error
#     ("empty body"), so the file never worked as shipped. Here `allow` has a
#     real body that ANDs all checks, and each check can be switched off from
#     the settings block instead of by editing rule bodies;
#   * all helper names carry the `prf_` prefix, so this file can be listed
#     together with Allow-Image-Name.rego, Policy-Min-Vulnerability.rego, ... in
#     one route without conflicting-rule compile errors (Postee reused the same
#     helper names in several files);
#   * an empty fix_version ("") does not count as "fix available".
#
# Note: several files in one route's `input-files` are combined with OR.
package postee

# --- edit here ---------------------------------------------------------------
prf_allowed_image_names := set()
prf_ignored_image_names := {"alpine", "postgres"}
prf_allowed_registries := {"Aqua"}
prf_ignored_registries := set()
prf_min_severity := "high"
prf_require_fix := true
# -----------------------------------------------------------------------------

# Severity ordering. Don't remove it.
prf_severity_rank := {"negligible": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}

# Image allow-list.
prf_image_name_permitted {
	count(prf_allowed_image_names) == 0
}

prf_image_name_permitted {
	is_string(input.image)
	contains(input.image, prf_allowed_image_names[_])
}

# Image ignore-list.
prf_image_name_ignored {
	is_string(input.image)
	contains(input.image, prf_ignored_image_names[_])
}

# Registry allow-list.
prf_registry_permitted {
	count(prf_allowed_registries) == 0
}

prf_registry_permitted {
	is_string(input.registry)
	contains(input.registry, prf_allowed_registries[_])
}

# Registry ignore-list.
prf_registry_ignored {
	is_string(input.registry)
	contains(input.registry, prf_ignored_registries[_])
}

# Minimum severity.
prf_min_severity_reached {
	prf_min_severity == ""
}

prf_min_severity_reached {
	rank := prf_severity_rank[severity]
	rank >= prf_severity_rank[prf_min_severity]
	input.vulnerability_summary[severity] > 0
}

# Fix available.
prf_fix_condition_met {
	not prf_require_fix
}

prf_fix_condition_met {
	fix := input.resources[_].vulnerabilities[_].fix_version
	is_string(fix)
	fix != ""
}

# All checks are combined with AND.
allow {
	prf_image_name_permitted
	not prf_image_name_ignored
	prf_registry_permitted
	not prf_registry_ignored
	prf_min_severity_reached
	prf_fix_condition_met
}
