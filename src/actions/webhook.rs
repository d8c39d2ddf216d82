//! `webhook`: POSTs the rendered description as the request body (spec §6.5).
//!
//! Keys: `url` (required, http/https), `timeout` (Go duration, default 120s as Postee).
//! Differences from Postee: any 2xx is success (Postee accepts only 200), and every request
//! carries `Idempotency-Key` so a receiver can drop a retried duplicate.

use std::time::Duration;

use async_trait::async_trait;

use super::{
    Action, ActionError, BuildContext, Message, body_snippet, classify_status, classify_transport,
};
use crate::config::ActionConfig;
use crate::config::duration::parse_go_duration;

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Webhook {
    name: String,
    url: reqwest::Url,
    timeout: Duration,
    http: reqwest::Client,
}

/// Parses an action's `timeout` (Postee: "" or `0` means the default).
pub fn timeout_key(
    cfg: &ActionConfig,
    default: Duration,
    errs: &mut Vec<(String, String)>,
) -> Duration {
    match cfg.fields.non_empty("timeout") {
        None => default,
        Some(s) => match parse_go_duration(s) {
            Ok(d) if d.is_zero() => default,
            Ok(d) => d,
            Err(e) => {
                errs.push(("timeout".into(), e));
                default
            }
        },
    }
}

/// Parses a required http(s) `url`.
pub fn url_key(cfg: &ActionConfig, errs: &mut Vec<(String, String)>) -> Option<reqwest::Url> {
    let Some(raw) = cfg.fields.non_empty("url") else {
        errs.push((
            "url".into(),
            "missing: the URL to send to is required".into(),
        ));
        return None;
    };
    match reqwest::Url::parse(raw.trim()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Some(u),
        Ok(u) => {
            errs.push((
                "url".into(),
                format!("unsupported scheme `{}` (use http or https)", u.scheme()),
            ));
            None
        }
        Err(e) => {
            errs.push(("url".into(), format!("invalid URL {raw:?}: {e}")));
            None
        }
    }
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
        let resp = self
            .http
            .post(self.url.clone())
            .timeout(self.timeout)
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", msg.delivery_id(&self.name))
            .body(msg.content.description.clone())
            .send()
            .await
            .map_err(|e| classify_transport(&e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let headers = resp.headers().clone();
        let body = body_snippet(resp, 1024).await;
        Err(classify_status(
            status,
            &headers,
            format!(
                "Sending webhook wrong status: '{}'. Body: {body}",
                status.as_u16()
            ),
        ))
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
