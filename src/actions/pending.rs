//! Keys of the action types Postee has and postee does not support yet (spec §3.7).
//!
//! Their configs must still load: the keys are read and type-checked, a disabled action is a
//! warning and an enabled one an error ("not supported yet"). Implementing a type moves its
//! list into the type's own file, with defaults and docs.

use crate::config::{KeySpec, Kind};

pub const JIRA: &[KeySpec] = &[
    KeySpec::known("url", Kind::Str),
    KeySpec::known("user", Kind::Expand),
    KeySpec::known("password", Kind::Secret),
    KeySpec::known("token", Kind::Secret),
    KeySpec::known("project-key", Kind::Str),
    KeySpec::known("issuetype", Kind::Str),
    KeySpec::known("priority", Kind::Str),
    KeySpec::known("assignee", Kind::StrList),
    KeySpec::known("labels", Kind::StrList),
    KeySpec::known("fix-versions", Kind::StrList),
    KeySpec::known("affects-versions", Kind::StrList),
    KeySpec::known("unknowns", Kind::StrMap),
    KeySpec::known("board", Kind::Str),
    KeySpec::known("tls-verify", Kind::Bool),
    KeySpec::known("sprint", Kind::Str),
    KeySpec::known("summary", Kind::Str),
];

pub const SERVICENOW: &[KeySpec] = &[
    KeySpec::known("user", Kind::Expand),
    KeySpec::known("password", Kind::Secret),
    KeySpec::known("instance", Kind::Str),
    KeySpec::known("board", Kind::Str),
];

pub const NEXUSIQ: &[KeySpec] = &[
    KeySpec::known("url", Kind::Str),
    KeySpec::known("user", Kind::Expand),
    KeySpec::known("password", Kind::Secret),
    KeySpec::known("organization-id", Kind::Str),
];

pub const DEPENDENCYTRACK: &[KeySpec] = &[
    KeySpec::known("url", Kind::Str),
    KeySpec::known("dependency-track-api-key", Kind::Secret),
];

pub const KUBERNETES: &[KeySpec] = &[
    KeySpec::known("kube-namespace", Kind::Str),
    KeySpec::known("kube-config-file", Kind::Str),
    KeySpec::known("kube-label-selector", Kind::Str),
    KeySpec::known("kube-actions", Kind::KubeActions),
];

pub const DOCKER: &[KeySpec] = &[
    KeySpec::known("docker-image-name", Kind::Str),
    KeySpec::known("docker-cmd", Kind::StrList),
    KeySpec::known("docker-env", Kind::StrList),
    KeySpec::known("docker-network", Kind::Str),
    KeySpec::known("docker-volume-mounts", Kind::StrMap),
];
