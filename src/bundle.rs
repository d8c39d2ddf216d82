//! The Rego templates and route filters compiled into the binary (written for this project),
//! shared by the template registry and route conditions.

/// A Rego module and the path its errors name.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: String,
    pub text: String,
}

/// Bundled template modules: `(path shown in errors, source)`.
const TEMPLATES: &[(&str, &str)] = &[
    (
        "bundled:rego-templates/common/common.rego",
        include_str!("../templates/rego-templates/common/common.rego"),
    ),
    (
        "bundled:rego-templates/lib/lib.rego",
        include_str!("../templates/rego-templates/lib/lib.rego"),
    ),
    (
        "bundled:rego-templates/raw-message-html.rego",
        include_str!("../templates/rego-templates/raw-message-html.rego"),
    ),
    (
        "bundled:rego-templates/raw-message-json.rego",
        include_str!("../templates/rego-templates/raw-message-json.rego"),
    ),
    (
        "bundled:rego-templates/servicenow-aggregation.rego",
        include_str!("../templates/rego-templates/servicenow-aggregation.rego"),
    ),
    (
        "bundled:rego-templates/servicenow-incident.rego",
        include_str!("../templates/rego-templates/servicenow-incident.rego"),
    ),
    (
        "bundled:rego-templates/servicenow-insight.rego",
        include_str!("../templates/rego-templates/servicenow-insight.rego"),
    ),
    (
        "bundled:rego-templates/servicenow.rego",
        include_str!("../templates/rego-templates/servicenow.rego"),
    ),
    (
        "bundled:rego-templates/tracee-html.rego",
        include_str!("../templates/rego-templates/tracee-html.rego"),
    ),
    (
        "bundled:rego-templates/tracee-slack.rego",
        include_str!("../templates/rego-templates/tracee-slack.rego"),
    ),
    (
        "bundled:rego-templates/trivy-jira-aggregation.rego",
        include_str!("../templates/rego-templates/trivy-jira-aggregation.rego"),
    ),
    (
        "bundled:rego-templates/trivy-jira.rego",
        include_str!("../templates/rego-templates/trivy-jira.rego"),
    ),
    (
        "bundled:rego-templates/trivy-operator-dependency-track.rego",
        include_str!("../templates/rego-templates/trivy-operator-dependency-track.rego"),
    ),
    (
        "bundled:rego-templates/trivy-operator-jira.rego",
        include_str!("../templates/rego-templates/trivy-operator-jira.rego"),
    ),
    (
        "bundled:rego-templates/trivy-operator-slack.rego",
        include_str!("../templates/rego-templates/trivy-operator-slack.rego"),
    ),
    (
        "bundled:rego-templates/trivy-vulns-slack-aggregation.rego",
        include_str!("../templates/rego-templates/trivy-vulns-slack-aggregation.rego"),
    ),
    (
        "bundled:rego-templates/trivy-vulns-slack.rego",
        include_str!("../templates/rego-templates/trivy-vulns-slack.rego"),
    ),
    (
        "bundled:rego-templates/vuls-cyclonedx-alias.rego",
        include_str!("../templates/rego-templates/vuls-cyclonedx-alias.rego"),
    ),
    (
        "bundled:rego-templates/vuls-cyclonedx.rego",
        include_str!("../templates/rego-templates/vuls-cyclonedx.rego"),
    ),
    (
        "bundled:rego-templates/vuls-html-aggregation.rego",
        include_str!("../templates/rego-templates/vuls-html-aggregation.rego"),
    ),
    (
        "bundled:rego-templates/vuls-html.rego",
        include_str!("../templates/rego-templates/vuls-html.rego"),
    ),
    (
        "bundled:rego-templates/vuls-opsgenie.rego",
        include_str!("../templates/rego-templates/vuls-opsgenie.rego"),
    ),
    (
        "bundled:rego-templates/vuls-slack-aggregation.rego",
        include_str!("../templates/rego-templates/vuls-slack-aggregation.rego"),
    ),
    (
        "bundled:rego-templates/vuls-slack.rego",
        include_str!("../templates/rego-templates/vuls-slack.rego"),
    ),
];

/// Bundled route filters, by the file name a route's `input-files` uses.
const FILTERS: &[(&str, &str)] = &[
    (
        "Allow-Image-Name.rego",
        include_str!("../templates/filters/Allow-Image-Name.rego"),
    ),
    (
        "Allow-Registry.rego",
        include_str!("../templates/filters/Allow-Registry.rego"),
    ),
    (
        "Credential Access",
        include_str!("../templates/filters/Credential Access"),
    ),
    (
        "Defense Evasion",
        include_str!("../templates/filters/Defense Evasion"),
    ),
    (
        "Ignore-Image-Name.rego",
        include_str!("../templates/filters/Ignore-Image-Name.rego"),
    ),
    (
        "Ignore-Registry.rego",
        include_str!("../templates/filters/Ignore-Registry.rego"),
    ),
    (
        "Initial Access",
        include_str!("../templates/filters/Initial Access"),
    ),
    (
        "Persistence",
        include_str!("../templates/filters/Persistence"),
    ),
    (
        "Policy-Min-Vulnerability.rego",
        include_str!("../templates/filters/Policy-Min-Vulnerability.rego"),
    ),
    (
        "Policy-Only-Fix-Available.rego",
        include_str!("../templates/filters/Policy-Only-Fix-Available.rego"),
    ),
    (
        "Policy-Related-Features.rego",
        include_str!("../templates/filters/Policy-Related-Features.rego"),
    ),
    (
        "Privilege Escalation",
        include_str!("../templates/filters/Privilege Escalation"),
    ),
    (
        "Tracee Default Set",
        include_str!("../templates/filters/Tracee Default Set"),
    ),
    (
        "Trivy AWS Findings",
        include_str!("../templates/filters/Trivy AWS Findings"),
    ),
];

pub fn templates() -> Vec<Source> {
    TEMPLATES
        .iter()
        .map(|(path, text)| Source {
            path: path.to_string(),
            text: text.to_string(),
        })
        .collect()
}

/// A bundled filter by file name (`Allow-Image-Name.rego`, `Initial Access`, ...).
pub fn filter(name: &str) -> Option<Source> {
    FILTERS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, text)| Source {
            path: format!("bundled:rego-filters/{n}"),
            text: text.to_string(),
        })
}

pub fn filter_names() -> Vec<&'static str> {
    FILTERS.iter().map(|(n, _)| *n).collect()
}
