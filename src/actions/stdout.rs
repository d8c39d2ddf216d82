//! `stdout`: writes the rendered description to standard output, no trailing newline
//! (spec §6.18). Useful to try a config and for container log collectors.

use std::io::Write;
use std::sync::Arc;

use async_trait::async_trait;

use super::{Action, ActionError, BuildContext, Check, Message, Validated};
use crate::config::{Fields, KeySpec};

/// No keys of its own.
pub(crate) const KEYS: &[KeySpec] = &[];

/// Nothing to configure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StdoutConfig;

pub fn validate(_: &Fields) -> Validated<StdoutConfig> {
    Check::default().finish(Some(StdoutConfig))
}

pub fn build(name: &str, _: StdoutConfig, _: &BuildContext) -> Result<Arc<dyn Action>, String> {
    Ok(Arc::new(Stdout::new(name)))
}

pub struct Stdout {
    name: String,
}

impl Stdout {
    pub fn new(name: &str) -> Self {
        Stdout {
            name: name.to_string(),
        }
    }
}

#[async_trait]
impl Action for Stdout {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "stdout"
    }

    async fn send(&self, msg: &Message) -> Result<(), ActionError> {
        let mut out = std::io::stdout().lock();
        out.write_all(msg.content.description.as_bytes())
            .and_then(|_| out.flush())
            .map_err(|e| ActionError::permanent(format!("cannot write to stdout: {e}")))
    }

    fn preview(&self, msg: &Message) -> serde_json::Value {
        serde_json::json!({ "stdout": msg.content.description })
    }
}
