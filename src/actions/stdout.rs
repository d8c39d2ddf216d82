//! `stdout`: writes the rendered description to standard output, no trailing newline
//! (spec §6.18). Useful to try a config and for container log collectors.

use std::io::Write;

use async_trait::async_trait;

use super::{Action, ActionError, Message};

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
