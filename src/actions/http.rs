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

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use regex::Regex;

use super::{Action, ActionError, BuildContext, Message, send_expecting_2xx, timeout_key, url_key};
use crate::config::{ActionConfig, Problems};

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

enum Body {
    None,
    File(String),
    Content(String),
}

pub struct Http {
    name: String,
    url: reqwest::Url,
    method: reqwest::Method,
    headers: Vec<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>,
    timeout: Duration,
    body: Body,
    http: reqwest::Client,
}

impl Http {
    pub fn build(
        cfg: &ActionConfig,
        ctx: &BuildContext,
        errs: &mut Vec<(String, String)>,
        problems: &mut Problems,
    ) -> Option<Self> {
        let f = &cfg.fields;
        let method = match f.non_empty("method") {
            None => {
                errs.push((
                    "method".into(),
                    "http action requires a method to be specified".into(),
                ));
                None
            }
            Some(m) => {
                let m = m.trim().to_ascii_uppercase();
                if m == "CONNECT" {
                    errs.push(("method".into(), "CONNECT is not supported".into()));
                    None
                } else {
                    match reqwest::Method::from_bytes(m.as_bytes()) {
                        Ok(m) => Some(m),
                        Err(_) => {
                            errs.push(("method".into(), format!("invalid HTTP method {m:?}")));
                            None
                        }
                    }
                }
            }
        };
        let url = url_key(cfg, errs);
        let timeout = timeout_key(cfg, DEFAULT_TIMEOUT, errs);
        let mut headers = Vec::new();
        for (name, values) in f.list_map("headers") {
            let Ok(hn) = reqwest::header::HeaderName::from_bytes(name.as_bytes()) else {
                errs.push((format!("headers.{name}"), "invalid header name".into()));
                continue;
            };
            for v in values {
                match reqwest::header::HeaderValue::from_str(&v) {
                    Ok(hv) => headers.push((hn.clone(), hv)),
                    Err(_) => errs.push((
                        format!("headers.{name}"),
                        format!("invalid header value {v:?}"),
                    )),
                }
            }
        }
        let body = match (
            f.non_empty("body-file"),
            f.str("body-content").filter(|s| !s.is_empty()),
        ) {
            (Some(_), Some(_)) => {
                errs.push((
                    String::new(),
                    "http action supports only one of body-file or body-content, not both".into(),
                ));
                Body::None
            }
            (Some(file), None) => {
                if !std::path::Path::new(file).is_file() {
                    problems.warn(
                        format!("actions[{}].body-file", cfg.name),
                        format!("file {file} does not exist now; sends fail until it does"),
                    );
                }
                Body::File(file.to_string())
            }
            (None, Some(content)) => Body::Content(content.to_string()),
            (None, None) => Body::None,
        };
        Some(Http {
            name: cfg.name.clone(),
            url: url?,
            method: method?,
            headers,
            timeout,
            body,
            http: ctx.http.clone(),
        })
    }

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
            .request(self.method.clone(), self.url.clone())
            .timeout(self.timeout)
            .header("Postee-Event", Self::event_header(msg));
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        req = match &self.body {
            Body::None => req,
            Body::Content(c) => req.body(substitute(c, &msg.content.description)),
            Body::File(path) => {
                let data = tokio::fs::read(path).await.map_err(|e| {
                    ActionError::permanent(format!("unable to read body file: {path}, err: {e}"))
                })?;
                req.body(data)
            }
        };
        send_expecting_2xx(req, |status, body| {
            format!("http status NOT OK: HTTP {status}, response: {body}")
        })
        .await
        .map(|_| ())
    }

    fn preview(&self, msg: &Message) -> serde_json::Value {
        let mut headers = serde_json::Map::new();
        headers.insert("Postee-Event".into(), Self::event_header(msg).into());
        for (k, v) in &self.headers {
            let v = v.to_str().unwrap_or("").to_string();
            match headers.get_mut(k.as_str()) {
                Some(serde_json::Value::Array(a)) => a.push(v.into()),
                Some(old) => *old = serde_json::Value::Array(vec![old.clone(), v.into()]),
                None => {
                    headers.insert(k.to_string(), v.into());
                }
            }
        }
        let body = match &self.body {
            Body::None => serde_json::Value::Null,
            Body::Content(c) => substitute(c, &msg.content.description).into(),
            Body::File(p) => format!("<contents of {p}>").into(),
        };
        serde_json::json!({
            "method": self.method.as_str(),
            "url": self.url.as_str(),
            "timeout": format!("{:?}", self.timeout),
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

    #[test]
    fn a_plain_text_description_replaces_each_placeholder_whole() {
        assert_eq!(
            substitute("event1: event.input\nevent2: event.input", "foo bar"),
            "event1: foo bar\nevent2: foo bar"
        );
    }
}
