//! `webhook`: POSTs the rendered description as the request body (spec §6.5).
//!
//! Keys: `url` (required, http/https), `timeout` (Go duration, default 120s as Postee).
//! Differences from Postee: any 2xx is success (Postee accepts only 200), and every request
//! carries `Idempotency-Key` so a receiver can drop a retried duplicate.

use std::time::Duration;

use async_trait::async_trait;

use super::{Action, ActionError, BuildContext, Message, send_expecting_2xx, timeout_key, url_key};
use crate::config::ActionConfig;

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Webhook {
    name: String,
    url: reqwest::Url,
    timeout: Duration,
    http: reqwest::Client,
}

impl Webhook {
    pub fn build(
        cfg: &ActionConfig,
        ctx: &BuildContext,
        errs: &mut Vec<(String, String)>,
    ) -> Option<Self> {
        let timeout = timeout_key(cfg, DEFAULT_TIMEOUT, errs);
        let url = url_key(cfg, errs)?;
        Some(Webhook {
            name: cfg.name.clone(),
            url,
            timeout,
            http: ctx.http.clone(),
        })
    }
}

#[async_trait]
impl Action for Webhook {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "webhook"
    }

    async fn send(&self, msg: &Message) -> Result<(), ActionError> {
        let req = self
            .http
            .post(self.url.clone())
            .timeout(self.timeout)
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", msg.delivery_id(&self.name))
            .body(msg.content.description.clone());
        send_expecting_2xx(req, |status, body| {
            format!(
                "Sending webhook wrong status: '{}'. Body: {body}",
                status.as_u16()
            )
        })
        .await
        .map(|_| ())
    }

    fn preview(&self, msg: &Message) -> serde_json::Value {
        serde_json::json!({
            "method": "POST",
            "url": self.url.as_str(),
            "timeout": format!("{:?}", self.timeout),
            "headers": {
                "Content-Type": "application/json",
                "Idempotency-Key": msg.delivery_id(&self.name),
            },
            "body": msg.content.description,
        })
    }
}
