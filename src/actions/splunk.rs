//! `splunk`: sends the rendered description to a Splunk HTTP Event Collector (spec §6.6).
//!
//! Keys: `url` (required: the HEC base, e.g. `https://splunk.example.com:8088`), `token`
//! (required, secret: the HEC token), `size-limit` (bytes, default 10000; `0` is the default),
//! `tls-verify` (**Postee's inverted meaning: `true` turns certificate verification OFF**; kept
//! so Postee configs behave the same), ours: `insecure-skip-verify` (the unambiguous spelling:
//! `true` turns verification off; it wins, and contradicting `tls-verify` is a load error) and
//! `timeout` (default 30s). Verification is on unless one of them turns it off.
//!
//! The request: `POST <url>/services/collector` (not appended again when `url` already ends
//! with it), `Authorization: Splunk <token>`, body `{"sourcetype": "_json", "event": <json>}`
//! (Postee's spacing). The event is the description parsed as JSON and sent whole: Postee
//! decoded it into its Aqua scan model and dropped every other field; we keep every field, so
//! non-Aqua events (Trivy, Tracee) arrive intact. A description that is not JSON is sent as a
//! JSON string. Size, as Postee: while the event's encoding is at least `size-limit − 32`
//! bytes, its top-level `resources`, then `malware`, then `sensitive_data` are dropped; still
//! too big is a permanent error.
//!
//! Success: any 2xx (HEC answers `200 {"text":"Success","code":0}`). 429, 408 and 5xx (503
//! "server is busy") are transient; 400 (invalid data), 401/403 (token) are permanent. HEC has
//! no idempotency key on this endpoint: a retry after a lost response can index an event twice.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{
    Action, ActionError, BuildContext, Check, DEFAULT_SEND_TIMEOUT, Message, SEND_TIMEOUT_KEY,
    Validated, deliver_expecting_2xx, shown_url,
};
use crate::config::{Fields, KeySpec, Kind, Secret};

pub const DEFAULT_SIZE_LIMIT: usize = 10_000;
/// Fields dropped, in order, from an event over the size limit (Postee's order).
const TRIMMABLE: &[&str] = &["resources", "malware", "sensitive_data"];

pub(crate) const KEYS: &[KeySpec] = &[
    KeySpec::required(
        "url",
        Kind::Str,
        "HEC base URL. `/services/collector` is appended (unless it is already there).",
    ),
    KeySpec::required("token", Kind::Secret, "HEC token, a secret."),
    KeySpec::optional(
        "size-limit",
        Kind::Int,
        "`10000`",
        "Bytes; `0` means the default; below 10000 is a warning (as Postee).",
    ),
    KeySpec::optional(
        "tls-verify",
        Kind::Bool,
        "`false`",
        "**Inverted, as in Postee: `true` turns certificate verification OFF.**",
    ),
    KeySpec::optional(
        "insecure-skip-verify",
        Kind::Bool,
        "`false`",
        "The unambiguous spelling: `true` turns verification off.",
    ),
    SEND_TIMEOUT_KEY,
];

/// A valid splunk action.
#[derive(Debug, Clone)]
pub struct SplunkConfig {
    /// `<url>/services/collector`.
    pub endpoint: reqwest::Url,
    pub token: Secret,
    pub size_limit: usize,
    pub skip_verify: bool,
    pub timeout: Duration,
}

pub fn validate(f: &Fields) -> Validated<SplunkConfig> {
    let mut c = Check::default();
    let token = c.required_secret(f, "token", "the HTTP Event Collector token is required");
    let size_limit = match f.int("size-limit") {
        None | Some(0) => DEFAULT_SIZE_LIMIT,
        Some(n) if n < 0 => {
            c.error("size-limit", "must be a number of bytes, 0 or more");
            DEFAULT_SIZE_LIMIT
        }
        Some(n) => {
            if (n as usize) < DEFAULT_SIZE_LIMIT {
                c.warn(
                    "size-limit",
                    format!("{n} is below the recommended 10000 bytes; big scans will be trimmed or refused"),
                );
            }
            n as usize
        }
    };
    let skip_verify = match (f.bool("insecure-skip-verify"), f.bool("tls-verify")) {
        (Some(a), Some(b)) if a != b => {
            c.error(
                "tls-verify",
                format!(
                    "contradicts insecure-skip-verify: {a} (for splunk, Postee's `tls-verify: true` means skip verification); remove tls-verify"
                ),
            );
            a
        }
        (Some(a), _) => a,
        (None, Some(true)) => {
            c.warn(
                "tls-verify",
                "for splunk, `tls-verify: true` turns certificate verification OFF (Postee's inverted meaning, kept for compatibility); write `insecure-skip-verify: true` to say so, or remove it to verify",
            );
            true
        }
        (None, _) => false,
    };
    let timeout = c.timeout(f, DEFAULT_SEND_TIMEOUT);
    let url = c.url(f);
    let config = match (url, token) {
        (Some(url), Some(token)) => {
            let endpoint = if url
                .path()
                .trim_end_matches('/')
                .ends_with("/services/collector")
            {
                url
            } else {
                super::join_path(&url, "/services/collector")
            };
            Some(SplunkConfig {
                endpoint,
                token,
                size_limit,
                skip_verify,
                timeout,
            })
        }
        _ => None,
    };
    c.finish(config)
}

pub fn build(name: &str, cfg: SplunkConfig, ctx: &BuildContext) -> Result<Arc<dyn Action>, String> {
    let http = ctx.client(cfg.skip_verify)?;
    Ok(Arc::new(Splunk {
        name: name.to_string(),
        cfg,
        http,
    }))
}

pub struct Splunk {
    name: String,
    cfg: SplunkConfig,
    http: reqwest::Client,
}

impl Splunk {
    /// The request body, trimmed to the size limit as Postee does.
    pub fn body(&self, description: &str) -> Result<String, ActionError> {
        let mut event: Value = serde_json::from_str(description)
            .unwrap_or_else(|_| Value::String(description.to_string()));
        let limit = self.cfg.size_limit.saturating_sub(32);
        let mut encoded = event.to_string();
        for field in TRIMMABLE {
            if encoded.len() < limit {
                break;
            }
            if let Some(o) = event.as_object_mut()
                && o.remove(*field).is_some()
            {
                encoded = event.to_string();
            }
        }
        if encoded.len() >= limit {
            let image = event
                .get("image")
                .and_then(Value::as_str)
                .unwrap_or("<no image>");
            return Err(ActionError::permanent(format!(
                "Scan result for \"{image}\" is large for \"{}\", its size is {} (limit {})",
                self.name,
                encoded.len(),
                self.cfg.size_limit
            )));
        }
        Ok(format!(
            "{{\"sourcetype\": \"_json\", \"event\": {encoded}}}"
        ))
    }
}

#[async_trait]
impl Action for Splunk {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "splunk"
    }

    async fn send(&self, msg: &Message) -> Result<(), ActionError> {
        let body = self.body(&msg.content.description)?;
        let req = self
            .http
            .post(self.cfg.endpoint.clone())
            .timeout(self.cfg.timeout)
            .header(
                "Authorization",
                format!("Splunk {}", self.cfg.token.expose()),
            )
            .header("Content-Type", "application/json")
            .body(body);
        deliver_expecting_2xx(req, |status, body| {
            format!("failed response status for Splunk sending: HTTP {status}: {body}")
        })
        .await
    }

    fn preview(&self, msg: &Message) -> Value {
        let body = match self.body(&msg.content.description) {
            Ok(b) => Value::String(b),
            Err(e) => json!({"error": e.to_string()}),
        };
        json!({
            "method": "POST",
            "url": shown_url(&self.cfg.endpoint),
            "tls_verify": !self.cfg.skip_verify,
            "timeout": format!("{:?}", self.cfg.timeout),
            "headers": {"Content-Type": "application/json", "Authorization": "Splunk <hidden>"},
            "body": body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn splunk(limit: usize) -> Splunk {
        Splunk {
            name: "s".into(),
            cfg: SplunkConfig {
                endpoint: reqwest::Url::parse("http://127.0.0.1/services/collector").unwrap(),
                token: Secret::new("t"),
                size_limit: limit,
                skip_verify: false,
                timeout: DEFAULT_SEND_TIMEOUT,
            },
            http: {
                crate::install_crypto_provider();
                reqwest::Client::new()
            },
        }
    }

    #[test]
    fn big_events_lose_resources_then_malware_then_sensitive_data() {
        let big = "x".repeat(400);
        let desc = json!({"image": "alpine", "other": 1, "resources": big, "malware": big, "sensitive_data": big}).to_string();
        let b = splunk(700).body(&desc).unwrap();
        let v: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["sourcetype"], "_json");
        assert_eq!(v["event"]["other"], 1);
        assert!(v["event"].get("resources").is_none());
        assert!(v["event"].get("malware").is_none());
        assert_eq!(v["event"]["sensitive_data"], big);
        assert!(b.starts_with(r#"{"sourcetype": "_json", "event": {"#));
        let kept = json!({"image": "alpine", "other": big}).to_string();
        let e = splunk(300).body(&kept).unwrap_err();
        assert!(!e.is_transient());
        assert!(
            e.to_string()
                .contains("Scan result for \"alpine\" is large")
        );
    }

    #[test]
    fn validate_reads_tls_keys_with_postee_inverted_meaning() {
        use crate::config::FieldValue;
        let mut f = Fields::new(KEYS);
        f.set("url", FieldValue::Str("https://splunk.example:8088".into()));
        f.set("token", FieldValue::Secret(Secret::new("hec-1")));
        f.set("tls-verify", FieldValue::Bool(true));
        f.set("size-limit", FieldValue::Int(500));
        let v = validate(&f);
        let warned: Vec<&str> = v.warnings.iter().map(|w| w.key.as_str()).collect();
        assert_eq!(warned, ["size-limit", "tls-verify"]);
        let cfg = v.config.unwrap();
        assert!(cfg.skip_verify);
        assert_eq!(
            cfg.endpoint.as_str(),
            "https://splunk.example:8088/services/collector"
        );
        f.set("insecure-skip-verify", FieldValue::Bool(false));
        let errs = validate(&f).config.unwrap_err();
        assert_eq!(errs[0].key, "tls-verify");
    }

    #[test]
    fn non_json_is_sent_as_a_string_event() {
        let b = splunk(10_000).body("plain <b>text</b>").unwrap();
        assert_eq!(
            b,
            r#"{"sourcetype": "_json", "event": "plain <b>text</b>"}"#
        );
    }
}
