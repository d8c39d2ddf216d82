//! `pagerduty`: triggers an incident with the PagerDuty Events API v2 (spec §6.11).
//!
//! Keys: `pagerduty-routing-key` (required, secret: the integration key of an Events API v2
//! integration), `pagerduty-auth-token` (accepted for Postee configs; the Events API does not
//! use it, so unlike Postee it is optional); ours: `api-url` (default
//! `https://events.pagerduty.com`) and `timeout` (default 30s).
//!
//! The request: `POST {api-url}/v2/enqueue`, JSON as Postee's plus `dedup_key`:
//! `{"routing_key":K,"event_action":"trigger","dedup_key":D,"payload":{"summary":<title>,
//! "source":"postee","severity":"critical","timestamp":<now, RFC 3339 UTC>,
//! "custom_details":<description>}}`. `D` is the delivery id `<event>:<route>:<action>`
//! (hashed when longer than PagerDuty's 255 characters): a retried request adds to the same
//! incident instead of opening a second one. The summary is cut to 1,024 characters.
//!
//! Success: any 2xx (PagerDuty answers `202`). 429 (with `Retry-After`), 408 and 5xx are
//! transient; 400 (invalid event) and other 4xx are permanent.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{
    Action, ActionError, BuildContext, Check, DEFAULT_SEND_TIMEOUT, Message, SEND_TIMEOUT_KEY,
    Validated, deliver_expecting_2xx, join_path, rfc3339_now, shown_url, truncate_chars,
};
use crate::config::{Fields, KeySpec, Kind, Secret};

pub const DEFAULT_API_URL: &str = "https://events.pagerduty.com";
const MAX_SUMMARY: usize = 1024;
const MAX_DEDUP_KEY: usize = 255;

pub(crate) const KEYS: &[KeySpec] = &[
    KeySpec::required(
        "pagerduty-routing-key",
        Kind::Secret,
        "Integration key of an Events API v2 integration, a secret.",
    ),
    KeySpec::optional(
        "pagerduty-auth-token",
        Kind::Secret,
        "none",
        "Accepted for Postee configs, a secret. The Events API does not use it, so unlike Postee it is optional.",
    ),
    KeySpec::optional(
        "api-url",
        Kind::Str,
        "`https://events.pagerduty.com`",
        "API base.",
    ),
    SEND_TIMEOUT_KEY,
];

/// A valid pagerduty action.
#[derive(Debug, Clone)]
pub struct PagerDutyConfig {
    /// `{api-url}/v2/enqueue`.
    pub endpoint: reqwest::Url,
    pub routing_key: Secret,
    pub timeout: Duration,
}

pub fn validate(f: &Fields) -> Validated<PagerDutyConfig> {
    let mut c = Check::default();
    let routing_key = c.required_secret(
        f,
        "pagerduty-routing-key",
        "pagerduty routing key is required to send events",
    );
    let base = c.base_url(f, "api-url", DEFAULT_API_URL);
    let timeout = c.timeout(f, DEFAULT_SEND_TIMEOUT);
    let config = match (base, routing_key) {
        (Some(base), Some(routing_key)) => Some(PagerDutyConfig {
            endpoint: join_path(&base, "/v2/enqueue"),
            routing_key,
            timeout,
        }),
        _ => None,
    };
    c.finish(config)
}

pub fn build(
    name: &str,
    cfg: PagerDutyConfig,
    ctx: &BuildContext,
) -> Result<Arc<dyn Action>, String> {
    Ok(Arc::new(PagerDuty {
        name: name.to_string(),
        endpoint: cfg.endpoint,
        routing_key: cfg.routing_key,
        timeout: cfg.timeout,
        http: ctx.http.clone(),
    }))
}

pub struct PagerDuty {
    name: String,
    endpoint: reqwest::Url,
    routing_key: Secret,
    timeout: Duration,
    http: reqwest::Client,
}

impl PagerDuty {
    fn body(&self, msg: &Message, routing_key: &str, timestamp: &str) -> Value {
        json!({
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": dedup_key(&msg.delivery_id(&self.name)),
            "payload": {
                "summary": truncate_chars(&msg.content.title, MAX_SUMMARY),
                "source": "postee",
                "severity": "critical",
                "timestamp": timestamp,
                "custom_details": msg.content.description,
            },
        })
    }
}

/// The delivery id when it fits PagerDuty's limit; otherwise its start and a hash of it.
pub fn dedup_key(delivery_id: &str) -> String {
    if delivery_id.len() <= MAX_DEDUP_KEY {
        return delivery_id.to_string();
    }
    let h = super::stable_hash(delivery_id);
    let mut cut = 200;
    while !delivery_id.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}#{h:016x}", &delivery_id[..cut])
}

#[async_trait]
impl Action for PagerDuty {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "pagerduty"
    }

    async fn send(&self, msg: &Message) -> Result<(), ActionError> {
        let body = self.body(msg, self.routing_key.expose(), &rfc3339_now());
        let req = self
            .http
            .post(self.endpoint.clone())
            .timeout(self.timeout)
            .json(&body);
        deliver_expecting_2xx(req, |status, body| {
            format!("failed to send event to pagerduty: HTTP {status}: {body}")
        })
        .await
    }

    fn preview(&self, msg: &Message) -> Value {
        json!({
            "method": "POST",
            "url": shown_url(&self.endpoint),
            "timeout": format!("{:?}", self.timeout),
            "headers": {"Content-Type": "application/json"},
            "body": self.body(msg, "<hidden>", "<time of sending>"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_needs_the_routing_key_not_the_auth_token() {
        use crate::config::FieldValue;
        let mut f = Fields::new(KEYS);
        f.set(
            "pagerduty-auth-token",
            FieldValue::Secret(Secret::new("auth-1")),
        );
        let errs = validate(&f).config.unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].key, "pagerduty-routing-key");
        f.set(
            "pagerduty-routing-key",
            FieldValue::Secret(Secret::new("routing-2")),
        );
        let cfg = validate(&f).config.unwrap();
        assert_eq!(
            cfg.endpoint.as_str(),
            "https://events.pagerduty.com/v2/enqueue"
        );
        assert_eq!(cfg.routing_key.expose(), "routing-2");
    }

    #[test]
    fn long_delivery_ids_are_hashed_to_fit_pagerduty() {
        assert_eq!(dedup_key("e:r:a"), "e:r:a");
        let long = "é".repeat(300);
        let k = dedup_key(&long);
        assert!(k.len() <= MAX_DEDUP_KEY, "{}", k.len());
        assert_eq!(k, dedup_key(&long));
        assert_ne!(k, dedup_key(&format!("{long}x")));
    }
}
