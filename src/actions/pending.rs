//! Keys of the action types Postee has and postee does not support yet (spec §3.7).
//!
//! Their configs must still load: the keys are read and type-checked, a disabled action is a
//! warning and an enabled one an error ("not supported yet"). Implementing a type moves its
//! list into the type's own file, with defaults and docs.

use crate::config::{KeySpec, Kind};

pub const DOCKER: &[KeySpec] = &[
    KeySpec::known("docker-image-name", Kind::Str),
    KeySpec::known("docker-cmd", Kind::StrList),
    KeySpec::known("docker-env", Kind::StrList),
    KeySpec::known("docker-network", Kind::Str),
    KeySpec::known("docker-volume-mounts", Kind::StrMap),
];
