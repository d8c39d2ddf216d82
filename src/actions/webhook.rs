//! `webhook`: POSTs the rendered description as the request body (spec §6.5).
//!
//! Keys: `url` (required, http/https), `timeout` (Go duration, default 120s as Postee).
//! Differences from Postee: any 2xx is success (Postee accepts only 200), and every request
//! carries `Idempotency-Key` so a receiver can drop a retried duplicate.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{
    Action, ActionError, BuildContext, Check, Message, Validated, deliver_expecting_2xx, shown_url,
};
use crate::config::{Fields, KeySpec, Kind};

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

pub(crate) const KEYS: &[KeySpec] = &[
    KeySpec::required("url", Kind::Str, "Where to POST: an `http` or `https` URL."),
    KeySpec::optional(
        "timeout",
        Kind::Str,
        "`120s`",
        "Time limit of one request, a Go duration (`300ms`, `10s`, `1m30s`, `2h`).",
    ),
];

/// A valid webhook action.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    pub url: reqwest::Url,
    pub timeout: Duration,
}

pub fn validate(f: &Fields) -> Validated<WebhookConfig> {
    let mut c = Check::default();
    let timeout = c.timeout(f, DEFAULT_TIMEOUT);
    let url = c.url(f);
    c.finish(url.map(|url| WebhookConfig { url, timeout }))
}

pub fn build(
    name: &str,
    cfg: WebhookConfig,
    ctx: &BuildContext,
) -> Result<Arc<dyn Action>, String> {
    Ok(Arc::new(Webhook {
        name: name.to_string(),
        url: cfg.url,
        timeout: cfg.timeout,
        http: ctx.http.clone(),
    }))
}

pub struct Webhook {
    name: String,
    url: reqwest::Url,
    timeout: Duration,
    http: reqwest::Client,
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
        deliver_expecting_2xx(req, |status, body| {
            format!(
                "Sending webhook wrong status: '{}'. Body: {body}",
                status.as_u16()
            )
        })
        .await
    }

    fn preview(&self, msg: &Message) -> serde_json::Value {
        serde_json::json!({
            "method": "POST",
            "url": shown_url(&self.url),
            "timeout": format!("{:?}", self.timeout),
            "headers": {
                "Content-Type": "application/json",
                "Idempotency-Key": msg.delivery_id(&self.name),
            },
            "body": msg.content.description,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FieldValue;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        let mut f = Fields::new(KEYS);
        for (k, v) in pairs {
            f.set(k, FieldValue::Str(v.to_string()));
        }
        f
    }

    #[test]
    fn validate_reads_url_and_timeout_and_reports_every_problem() {
        let v = validate(&fields(&[("url", "https://h/x"), ("timeout", "2s")]));
        let cfg = v.config.unwrap();
        assert_eq!(cfg.url.as_str(), "https://h/x");
        assert_eq!(cfg.timeout, Duration::from_secs(2));
        let v = validate(&fields(&[("url", "https://h/x"), ("timeout", "0")]));
        assert_eq!(v.config.unwrap().timeout, DEFAULT_TIMEOUT);
        let errs = validate(&fields(&[("timeout", "60sm")]))
            .config
            .unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["timeout", "url"]);
        let errs = validate(&fields(&[("url", "ftp://h/")]))
            .config
            .unwrap_err();
        assert!(errs[0].message.contains("unsupported scheme `ftp`"));
    }
}
