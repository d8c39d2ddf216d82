//! `http`: a configurable HTTP request (spec §6.13).
//!
//! Keys: `url` and `method` (required), `headers` (name → list of values), `timeout` (Go
//! duration, default 5s), and at most one of `body-file` (read at each send) or `body-content`
//! (with `event.input.<path>` placeholders). Every request carries
//! `Postee-Event: base64(description)`, as Postee's does.
//!
//! Placeholders: `event.input.a.b` is replaced by the value at `a.b` of the rendered
//! description (when it is JSON; strings unquoted, other values as JSON, missing → empty);
//! a bare `event.input` by the whole description. Postee's pattern swallowed the rest of the
//! line after a placeholder; ours ends at the path, so `id=event.input.x&y=1` works.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use regex::Regex;

use super::{
    Action, ActionError, BuildContext, Check, Message, Validated, deliver_expecting_2xx,
    is_sensitive_name, shown_url,
};
use crate::config::{Fields, KeySpec, Kind};

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) const KEYS: &[KeySpec] = &[
    KeySpec::required("url", Kind::Str, "Where to send: an `http` or `https` URL."),
    KeySpec::required(
        "method",
        Kind::Str,
        "Any HTTP method, upper-cased (`put` = `PUT`).",
    ),
    KeySpec::optional(
        "headers",
        Kind::StrListMap,
        "none",
        "Header name → list of values; each value is sent as its own header line.",
    ),
    KeySpec::optional(
        "timeout",
        Kind::Str,
        "`5s`",
        "Time limit of one request, a Go duration; `\"\"` or `0` means the default.",
    ),
    KeySpec::optional(
        "body-content",
        Kind::Str,
        "none",
        "Request body, with `event.input` placeholders (below).",
    ),
    KeySpec::optional(
        "body-file",
        Kind::Str,
        "none",
        "A file whose content is the body, read at each send.",
    ),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    None,
    File(String),
    Content(String),
}

/// A valid http action.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub url: reqwest::Url,
    pub method: reqwest::Method,
    pub headers: Vec<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>,
    pub timeout: Duration,
    pub body: Body,
}

/// Checks the keys. Reads the file system only to warn about a `body-file` missing now.
pub fn validate(f: &Fields) -> Validated<HttpConfig> {
    let mut c = Check::default();
    let method = match f.non_empty("method") {
        None => {
            c.error("method", "http action requires a method to be specified");
            None
        }
        Some(m) => {
            let m = m.trim().to_ascii_uppercase();
            if m == "CONNECT" {
                c.error("method", "CONNECT is not supported");
                None
            } else {
                match reqwest::Method::from_bytes(m.as_bytes()) {
                    Ok(m) => Some(m),
                    Err(_) => {
                        c.error("method", format!("invalid HTTP method {m:?}"));
                        None
                    }
                }
            }
        }
    };
    let url = c.url(f);
    let timeout = c.timeout(f, DEFAULT_TIMEOUT);
    let mut headers = Vec::new();
    for (name, values) in f.list_map("headers") {
        let key = format!("headers.{name}");
        let Ok(hn) = reqwest::header::HeaderName::from_bytes(name.as_bytes()) else {
            c.error(&key, "invalid header name");
            continue;
        };
        for v in values {
            match reqwest::header::HeaderValue::from_str(&v) {
                Ok(hv) => headers.push((hn.clone(), hv)),
                // Header values are often credentials: say what is wrong, not the value.
                Err(_) => c.error(
                    &key,
                    "invalid header value (value hidden): control characters are not allowed",
                ),
            }
        }
    }
    let body = match (
        f.non_empty("body-file"),
        f.str("body-content").filter(|s| !s.is_empty()),
    ) {
        (Some(_), Some(_)) => {
            c.error(
                "",
                "http action supports only one of body-file or body-content, not both",
            );
            Body::None
        }
        (Some(file), None) => {
            if !std::path::Path::new(file).is_file() {
                c.warn(
                    "body-file",
                    format!("file {file} does not exist now; sends fail until it does"),
                );
            }
            Body::File(file.to_string())
        }
        (None, Some(content)) => Body::Content(content.to_string()),
        (None, None) => Body::None,
    };
    let config = match (url, method) {
        (Some(url), Some(method)) => Some(HttpConfig {
            url,
            method,
            headers,
            timeout,
            body,
        }),
        _ => None,
    };
    c.finish(config)
}

pub fn build(name: &str, cfg: HttpConfig, ctx: &BuildContext) -> Result<Arc<dyn Action>, String> {
    Ok(Arc::new(Http {
        name: name.to_string(),
        cfg,
        http: ctx.http.clone(),
    }))
}

pub struct Http {
    name: String,
    cfg: HttpConfig,
    http: reqwest::Client,
}

impl Http {
    fn event_header(msg: &Message) -> String {
        base64::engine::general_purpose::STANDARD.encode(msg.content.description.as_bytes())
    }
}

#[allow(clippy::expect_used, reason = "a fixed pattern, checked by the tests")]
static PLACEHOLDER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"event\.input((?:\.[A-Za-z0-9_\-]+)*)").expect("valid regex"));

/// Replaces `event.input[.path]` placeholders with values from the description.
pub fn substitute(template: &str, description: &str) -> String {
    let json: Option<serde_json::Value> = serde_json::from_str(description).ok();
    PLACEHOLDER
        .replace_all(template, |caps: &regex::Captures| {
            let path = caps.get(1).map_or("", |m| m.as_str());
            match (&json, path.strip_prefix('.')) {
                (_, None) => description.to_string(),
                (Some(j), Some(p)) => lookup(j, p),
                // Not JSON: Postee puts the description where `event.input` was.
                (None, Some(_)) => format!("{description}{path}"),
            }
        })
        .into_owned()
}

fn lookup(v: &serde_json::Value, path: &str) -> String {
    let mut cur = v;
    for part in path.split('.') {
        let next = match cur {
            serde_json::Value::Object(m) => m.get(part),
            serde_json::Value::Array(a) => part.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return String::new(),
        }
    }
    match cur {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[async_trait]
impl Action for Http {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "http"
    }

    async fn send(&self, msg: &Message) -> Result<(), ActionError> {
        let mut req = self
            .http
            .request(self.cfg.method.clone(), self.cfg.url.clone())
            .timeout(self.cfg.timeout)
            .header("Postee-Event", Self::event_header(msg));
        for (k, v) in &self.cfg.headers {
            req = req.header(k, v);
        }
        req = match &self.cfg.body {
            Body::None => req,
            Body::Content(c) => req.body(substitute(c, &msg.content.description)),
            Body::File(path) => {
                let data = tokio::fs::read(path).await.map_err(|e| {
                    ActionError::permanent(format!("unable to read body file: {path}, err: {e}"))
                })?;
                req.body(data)
            }
        };
        deliver_expecting_2xx(req, |status, body| {
            format!("http status NOT OK: HTTP {status}, response: {body}")
        })
        .await
    }

    fn preview(&self, msg: &Message) -> serde_json::Value {
        let mut headers = serde_json::Map::new();
        headers.insert("Postee-Event".into(), Self::event_header(msg).into());
        for (k, v) in &self.cfg.headers {
            // Credentials (`Authorization`, `X-Api-Key`...) are not shown.
            let v = if is_sensitive_name(k.as_str()) {
                "<hidden>".to_string()
            } else {
                v.to_str().unwrap_or("").to_string()
            };
            match headers.get_mut(k.as_str()) {
                Some(serde_json::Value::Array(a)) => a.push(v.into()),
                Some(old) => *old = serde_json::Value::Array(vec![old.clone(), v.into()]),
                None => {
                    headers.insert(k.to_string(), v.into());
                }
            }
        }
        let body = match &self.cfg.body {
            Body::None => serde_json::Value::Null,
            Body::Content(c) => substitute(c, &msg.content.description).into(),
            Body::File(p) => format!("<contents of {p}>").into(),
        };
        serde_json::json!({
            "method": self.cfg.method.as_str(),
            "url": shown_url(&self.cfg.url),
            "timeout": format!("{:?}", self.cfg.timeout),
            "headers": headers,
            "body": body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_take_values_from_a_json_description() {
        let desc =
            r#"{"argsNum":2,"eventID":"TRC-2","SigMetadata":{"ID":"TRC-2"},"list":[{"a":"x"}]}"#;
        assert_eq!(
            substitute(
                "argsNum: event.input.argsNum\neventID: event.input.eventID",
                desc
            ),
            "argsNum: 2\neventID: TRC-2"
        );
        assert_eq!(
            substitute("id=event.input.SigMetadata.ID&x=1", desc),
            "id=TRC-2&x=1"
        );
        assert_eq!(substitute("v=event.input.list.0.a", desc), "v=x");
        assert_eq!(substitute("m=event.input.missing", desc), "m=");
        assert_eq!(
            substitute("all=event.input", r#"{"a":1}"#),
            r#"all={"a":1}"#
        );
    }

    fn fields(pairs: &[(&str, crate::config::FieldValue)]) -> Fields {
        let mut f = Fields::new(KEYS);
        for (k, v) in pairs {
            f.set(k, v.clone());
        }
        f
    }

    fn s(v: &str) -> crate::config::FieldValue {
        crate::config::FieldValue::Str(v.into())
    }

    #[test]
    fn validate_types_the_request_and_hides_bad_header_values() {
        let headers = crate::config::FieldValue::ListMap(
            [("X-Team".to_string(), vec!["a".to_string(), "b".to_string()])].into(),
        );
        let v = validate(&fields(&[
            ("url", s("http://h/x")),
            ("method", s("put")),
            ("headers", headers),
            ("body-content", s("x")),
        ]));
        let cfg = v.config.unwrap();
        assert_eq!(cfg.method, reqwest::Method::PUT);
        assert_eq!(cfg.headers.len(), 2);
        assert_eq!(cfg.body, Body::Content("x".into()));
        let bad = crate::config::FieldValue::ListMap(
            [(
                "Authorization".to_string(),
                vec!["Bearer tok-1\n".to_string()],
            )]
            .into(),
        );
        let errs = validate(&fields(&[
            ("url", s("http://h/x")),
            ("headers", bad),
            ("body-file", s("/nonexistent")),
            ("body-content", s("b")),
        ]))
        .config
        .unwrap_err();
        let shown: Vec<String> = errs
            .iter()
            .map(|e| format!("{}: {}", e.key, e.message))
            .collect();
        assert_eq!(shown.len(), 3, "{shown:?}");
        assert!(shown[0].starts_with("method: http action requires a method"));
        assert!(shown[1].starts_with("headers.Authorization: invalid header value (value hidden)"));
        assert!(shown[2].contains("only one of body-file or body-content"));
        assert!(!shown.concat().contains("tok-1"));
    }

    #[test]
    fn a_plain_text_description_replaces_each_placeholder_whole() {
        assert_eq!(
            substitute("event1: event.input\nevent2: event.input", "foo bar"),
            "event1: foo bar\nevent2: foo bar"
        );
    }
}
