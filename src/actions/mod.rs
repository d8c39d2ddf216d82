//! Actions: where rendered messages go. One file per type; this file holds the trait, the
//! error classification the dispatcher relies on, and `build` (config → runtime action).

pub mod email;
pub mod exec;
pub mod http;
pub mod opsgenie;
pub mod pagerduty;
pub mod slack;
pub mod splunk;
pub mod stdout;
pub mod teams;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::duration::parse_go_duration;
use crate::config::{ActionConfig, Problems};

pub use crate::message::Message;

/// Why a send failed, classified for the dispatcher's retry policy.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ActionError {
    /// Worth retrying: connect errors, timeouts, 408, 429, 5xx.
    #[error("{message}")]
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Retrying would not help: other 4xx, a script that failed, bad content.
    #[error("{message}")]
    Permanent { message: String },
}

impl ActionError {
    pub fn transient(message: impl Into<String>) -> Self {
        ActionError::Transient {
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn permanent(message: impl Into<String>) -> Self {
        ActionError::Permanent {
            message: message.into(),
        }
    }
    pub fn is_transient(&self) -> bool {
        matches!(self, ActionError::Transient { .. })
    }
}

#[async_trait]
pub trait Action: Send + Sync {
    fn name(&self) -> &str;
    fn kind(&self) -> &'static str;
    /// Sends one message. No retries here: the dispatcher owns them.
    async fn send(&self, msg: &Message) -> Result<(), ActionError>;
    /// Exactly what `send` would do with this message, without doing it (`postee render`).
    fn preview(&self, msg: &Message) -> serde_json::Value;
}

/// Types whose sending is implemented. The others parse and validate, then are rejected at
/// load with "not supported yet" (when enabled) instead of being skipped silently.
pub const IMPLEMENTED: &[&str] = &[
    "stdout",
    "webhook",
    "http",
    "exec",
    "slack",
    "teams",
    "email",
    "opsgenie",
    "pagerduty",
    "splunk",
];

/// Default time limit of one send for the messaging actions (slack, teams, email, opsgenie,
/// pagerduty, splunk); each has a `timeout` key to change it.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Shared resources actions are built with.
#[derive(Clone)]
pub struct BuildContext {
    pub http: reqwest::Client,
    /// `aqua-server` in Postee's `…/#/images/` form ("" when unset), for short messages.
    pub aqua_server: String,
}

/// Builds an enabled action. Problems go to `problems` with the action's path.
pub fn build(
    cfg: &ActionConfig,
    ctx: &BuildContext,
    problems: &mut Problems,
) -> Option<Arc<dyn Action>> {
    let path = format!("actions[{}]", cfg.name);
    let mut errs: Vec<(String, String)> = Vec::new();
    let action: Option<Arc<dyn Action>> = match cfg.kind.as_str() {
        "stdout" => Some(Arc::new(stdout::Stdout::new(&cfg.name))),
        "webhook" => webhook::Webhook::build(cfg, ctx, &mut errs).map(|a| Arc::new(a) as _),
        "http" => http::Http::build(cfg, ctx, &mut errs, problems).map(|a| Arc::new(a) as _),
        "exec" => exec::Exec::build(cfg, &mut errs, problems).map(|a| Arc::new(a) as _),
        "slack" => slack::Slack::build(cfg, ctx, &mut errs).map(|a| Arc::new(a) as _),
        "teams" => teams::Teams::build(cfg, ctx, &mut errs).map(|a| Arc::new(a) as _),
        "email" => email::Email::build(cfg, &mut errs, problems).map(|a| Arc::new(a) as _),
        "opsgenie" => opsgenie::OpsGenie::build(cfg, ctx, &mut errs).map(|a| Arc::new(a) as _),
        "pagerduty" => pagerduty::PagerDuty::build(cfg, ctx, &mut errs).map(|a| Arc::new(a) as _),
        "splunk" => splunk::Splunk::build(cfg, ctx, &mut errs, problems).map(|a| Arc::new(a) as _),
        other => {
            problems.error(
                format!("{path}.type"),
                format!("action type {other} is not supported yet"),
            );
            return None;
        }
    };
    for (key, msg) in errs {
        let p = if key.is_empty() {
            path.clone()
        } else {
            format!("{path}.{key}")
        };
        problems.error(p, msg);
    }
    action
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

/// Parses an optional http(s) base URL key (`api-url`), defaulting to `default`.
pub fn base_url_key(
    cfg: &ActionConfig,
    key: &str,
    default: &str,
    errs: &mut Vec<(String, String)>,
) -> Option<reqwest::Url> {
    let raw = cfg.fields.non_empty(key).unwrap_or(default).trim();
    match reqwest::Url::parse(raw) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Some(u),
        Ok(u) => {
            errs.push((
                key.into(),
                format!("unsupported scheme `{}` (use http or https)", u.scheme()),
            ));
            None
        }
        Err(e) => {
            errs.push((key.into(), format!("invalid URL {raw:?}: {e}")));
            None
        }
    }
}

/// `base` joined with an absolute API path, keeping any path prefix of `base`
/// (`https://proxy/opsgenie` + `/v2/alerts` → `https://proxy/opsgenie/v2/alerts`).
pub fn join_path(base: &reqwest::Url, path: &str) -> reqwest::Url {
    let mut u = base.clone();
    let joined = format!(
        "{}/{}",
        base.path().trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    u.set_path(&joined);
    u
}

/// At most `max` characters of `s` (not bytes), for targets with field limits.
pub fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

/// The current time in RFC 3339, UTC, second precision (`2026-11-22T10:41:56Z`).
pub fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    rfc3339(secs)
}

fn rfc3339(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Parses `Retry-After` (seconds or an HTTP date).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate_parse(v)?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// RFC 7231 IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
fn httpdate_parse(s: &str) -> Option<std::time::SystemTime> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    let day: u64 = parts[1].parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == parts[2])? as u64
        + 1;
    let year: u64 = parts[3].parse().ok()?;
    let hms: Vec<u64> = parts[4].split(':').filter_map(|x| x.parse().ok()).collect();
    if hms.len() != 3 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let secs = days * 86400 + hms[0] * 3600 + hms[1] * 60 + hms[2];
    Some(std::time::UNIX_EPOCH + Duration::from_secs(secs))
}

/// Classifies a non-success HTTP response: 408, 429 and 5xx are transient.
pub fn classify_status(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    message: String,
) -> ActionError {
    let code = status.as_u16();
    if code == 408 || code == 429 || status.is_server_error() {
        ActionError::Transient {
            message,
            retry_after: retry_after(headers),
        }
    } else {
        ActionError::Permanent { message }
    }
}

/// Classifies a transport error: every connect error and timeout is transient.
pub fn classify_transport(e: &reqwest::Error) -> ActionError {
    if e.is_builder() {
        return ActionError::permanent(e.to_string());
    }
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    ActionError::transient(msg)
}

/// Sends a request and expects a 2xx. Otherwise the error is classified for retries and its
/// message is built by `describe(status, start of the response body)`.
pub async fn send_expecting_2xx(
    req: reqwest::RequestBuilder,
    describe: impl FnOnce(reqwest::StatusCode, &str) -> String,
) -> Result<reqwest::Response, ActionError> {
    send_2xx(req, false, describe).await
}

/// Like [`send_expecting_2xx`], for targets whose URL is a secret (Slack and Teams webhook
/// URLs carry their key): transport errors do not repeat the URL.
pub async fn send_expecting_2xx_secret_url(
    req: reqwest::RequestBuilder,
    describe: impl FnOnce(reqwest::StatusCode, &str) -> String,
) -> Result<reqwest::Response, ActionError> {
    send_2xx(req, true, describe).await
}

async fn send_2xx(
    req: reqwest::RequestBuilder,
    hide_url: bool,
    describe: impl FnOnce(reqwest::StatusCode, &str) -> String,
) -> Result<reqwest::Response, ActionError> {
    let resp = req.send().await.map_err(|e| {
        if hide_url {
            classify_transport(&e.without_url())
        } else {
            classify_transport(&e)
        }
    })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let headers = resp.headers().clone();
    let body = body_snippet(resp, 1024).await;
    Err(classify_status(status, &headers, describe(status, &body)))
}

/// Reads at most `limit` bytes of a response body as text, for error messages.
pub async fn body_snippet(resp: reqwest::Response, limit: usize) -> String {
    let bytes = resp.bytes().await.unwrap_or_default();
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(limit)]).to_string();
    if bytes.len() > limit {
        format!("{s}…")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses_are_classified_for_retries() {
        let h = reqwest::header::HeaderMap::new();
        for (code, transient) in [
            (408, true),
            (429, true),
            (500, true),
            (503, true),
            (400, false),
            (401, false),
            (404, false),
        ] {
            let e = classify_status(reqwest::StatusCode::from_u16(code).unwrap(), &h, "x".into());
            assert_eq!(e.is_transient(), transient, "{code}");
        }
    }

    #[test]
    fn rfc3339_formats_utc_seconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(784111777), "1994-11-06T08:49:37Z");
        assert_eq!(rfc3339(1709210096), "2024-02-29T12:34:56Z");
    }

    #[test]
    fn join_path_keeps_a_base_prefix_and_truncation_counts_chars() {
        let b = reqwest::Url::parse("https://proxy.example/opsgenie/").unwrap();
        assert_eq!(
            join_path(&b, "/v2/alerts").as_str(),
            "https://proxy.example/opsgenie/v2/alerts"
        );
        let b = reqwest::Url::parse("https://api.opsgenie.com").unwrap();
        assert_eq!(
            join_path(&b, "/v2/alerts").as_str(),
            "https://api.opsgenie.com/v2/alerts"
        );
        assert_eq!(truncate_chars("héllo", 2), "hé");
        assert_eq!(truncate_chars("hé", 5), "hé");
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "120".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(120)));
        h.insert(
            "retry-after",
            "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        assert_eq!(
            httpdate_parse("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(std::time::UNIX_EPOCH + Duration::from_secs(784111777))
        );
    }
}
