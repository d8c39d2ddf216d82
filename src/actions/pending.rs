//! Keys of the action types Postee has and postee does not support yet (spec §3.7).
//!
//! Their configs must still load: the keys are read and type-checked, a disabled action is a
//! warning and an enabled one an error ("not supported yet"). Implementing a type moves its
//! list into the type's own file, with defaults and docs.

use crate::config::{KeySpec, Kind};

pub const KUBERNETES: &[KeySpec] = &[
    KeySpec::known("kube-namespace", Kind::Str),
    KeySpec::known("kube-config-file", Kind::Str),
    KeySpec::known("kube-label-selector", Kind::Str),
    KeySpec::known("kube-actions", Kind::KubeActions),
];
