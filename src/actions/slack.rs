//! `slack`: posts the rendered message to a Slack incoming webhook (spec §6.3).
//!
//! Keys: `url` (required, a secret: the webhook URL carries its key), `timeout` (ours, Go
//! duration, default 30s).
//!
//! The description of a Slack template is a JSON array of blocks (Postee also accepts one
//! block object, and a list with a trailing comma). Each message is
//! `{"text": <title>, "blocks": [<title block>, <blocks…>]}`: the title block is a mrkdwn
//! section `*<title>*` with `&`, `<`, `>` escaped as Slack asks, first, as Postee's.
//! Differences from Postee, on purpose:
//! - Blocks are sent as the template wrote them: Postee decoded them into a reduced model and
//!   dropped every other property (`elements` of context blocks, `accessory`, `block_id`...).
//! - Slack's limits are met by splitting, not by a "short message": a section text longer
//!   than 3,000 characters becomes several sections (cut at line ends when possible), and more
//!   than 50 blocks become several messages, sent in order. When a later message fails, the
//!   retry does not resend the messages Slack already accepted (remembered in memory).
//! - A description that is not JSON is sent as text sections, unless it is HTML (a template
//!   made for email or Teams): that is a permanent error, Postee's
//!   "wrong template selected, choose a correct template".
//! - A top-level `text` (the title) is added: Slack shows it in notifications.
//!
//! Success: any 2xx (Slack answers `200 ok`). 429 (with `Retry-After`), 408 and 5xx are
//! transient; other statuses (400 `invalid_blocks`, 403, 404 `no_service`, 410
//! `channel_is_archived`) are permanent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{
    Action, ActionError, BuildContext, Check, DEFAULT_SEND_TIMEOUT, Message, SEND_TIMEOUT_KEY,
    Validated, deliver_expecting_2xx_secret_url, truncate_chars,
};
use crate::config::{Fields, KeySpec, Kind, SecretUrl};

/// Slack's limit of blocks in one message.
pub const MAX_BLOCKS: usize = 50;
/// Slack's limit of characters in a section's text.
pub const MAX_TEXT: usize = 3000;
/// Deliveries whose progress is remembered at most (oldest forgotten first).
const MAX_REMEMBERED: usize = 10_000;

pub(crate) const KEYS: &[KeySpec] = &[
    KeySpec::required(
        "url",
        Kind::Secret,
        "The incoming webhook URL. A secret: it carries the webhook's key, so it is never shown.",
    ),
    SEND_TIMEOUT_KEY,
];

/// A valid slack action.
#[derive(Debug, Clone)]
pub struct SlackConfig {
    pub url: SecretUrl,
    pub timeout: Duration,
}

pub fn validate(f: &Fields) -> Validated<SlackConfig> {
    let mut c = Check::default();
    let timeout = c.timeout(f, DEFAULT_SEND_TIMEOUT);
    let url = c.secret_url(f);
    c.finish(url.map(|url| SlackConfig { url, timeout }))
}

pub fn build(name: &str, cfg: SlackConfig, ctx: &BuildContext) -> Result<Arc<dyn Action>, String> {
    Ok(Arc::new(Slack {
        name: name.to_string(),
        url: cfg.url,
        timeout: cfg.timeout,
        http: ctx.http.clone(),
        progress: Mutex::new(HashMap::new()),
    }))
}

pub struct Slack {
    name: String,
    url: SecretUrl,
    timeout: Duration,
    http: reqwest::Client,
    /// Delivery id → messages of it Slack already accepted (for multi-message deliveries).
    progress: Mutex<HashMap<String, usize>>,
}

/// Escapes the three characters Slack gives a meaning to in text.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn title_block(title: &str) -> Value {
    json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": truncate_chars(&format!("*{}*", escape(title)), MAX_TEXT)},
    })
}

/// The blocks a description stands for. `Err` only for content Slack cannot show.
pub fn blocks_of(description: &str) -> Result<Vec<Value>, ActionError> {
    let d = description.trim();
    let d = d.strip_suffix(',').unwrap_or(d).trim();
    if d.is_empty() {
        return Ok(Vec::new());
    }
    let parsed: Option<Value> = serde_json::from_str(d)
        .ok()
        .or_else(|| serde_json::from_str(&format!("[{d}]")).ok());
    match parsed {
        Some(Value::Array(items)) => {
            let mut blocks = Vec::new();
            for item in items {
                match item {
                    Value::Object(_) => blocks.push(item),
                    other => {
                        return Err(ActionError::permanent(format!(
                            "wrong template selected, choose a correct template: a Slack block must be a JSON object, found {other}"
                        )));
                    }
                }
            }
            Ok(blocks)
        }
        // A whole Slack payload: its blocks.
        Some(Value::Object(o)) if o.get("blocks").is_some_and(Value::is_array) => {
            blocks_of(&o["blocks"].to_string())
        }
        Some(v @ Value::Object(_)) => Ok(vec![v]),
        Some(_) | None if d.starts_with('<') => Err(ActionError::permanent(
            "wrong template selected, choose a correct template: the description is HTML; \
             Slack needs a template whose result is a list of Slack blocks, or plain text",
        )),
        _ => Ok(split_text(d)
            .into_iter()
            .map(|t| json!({"type": "section", "text": {"type": "mrkdwn", "text": t}}))
            .collect()),
    }
}

/// Cuts text into pieces of at most [`MAX_TEXT`] characters, at a line end when one is in
/// the second half of the piece.
pub fn split_text(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.chars().count() > MAX_TEXT {
        let cut = rest
            .char_indices()
            .nth(MAX_TEXT)
            .map_or(rest.len(), |(i, _)| i);
        let head = &rest[..cut];
        let at = match head.rfind('\n') {
            Some(nl) if nl >= cut / 2 => nl + 1,
            _ => cut,
        };
        out.push(rest[..at].to_string());
        rest = &rest[at..];
    }
    if !rest.is_empty() || out.is_empty() {
        out.push(rest.to_string());
    }
    out
}

/// Splits sections whose text is too long into several sections; the first keeps the
/// block's other properties, the others only carry text.
fn split_long_sections(blocks: Vec<Value>) -> Vec<Value> {
    let mut out = Vec::with_capacity(blocks.len());
    for block in blocks {
        let long = block
            .pointer("/text/text")
            .and_then(Value::as_str)
            .filter(|t| t.chars().count() > MAX_TEXT)
            .map(str::to_string);
        let Some(text) = long else {
            out.push(block);
            continue;
        };
        let kind = block
            .pointer("/text/type")
            .cloned()
            .unwrap_or(json!("mrkdwn"));
        for (i, piece) in split_text(&text).into_iter().enumerate() {
            if i == 0 {
                let mut first = block.clone();
                first["text"]["text"] = Value::String(piece);
                out.push(first);
            } else {
                out.push(json!({"type": "section", "text": {"type": kind, "text": piece}}));
            }
        }
    }
    out
}

/// The payloads to post, in order. Empty when the template produced no blocks (Postee sends
/// nothing then).
pub fn payloads(title: &str, description: &str) -> Result<Vec<Value>, ActionError> {
    let blocks = blocks_of(description)?;
    if blocks.is_empty() {
        return Ok(Vec::new());
    }
    let mut all = vec![title_block(title)];
    all.extend(split_long_sections(blocks));
    let text = truncate_chars(title, MAX_TEXT);
    Ok(all
        .chunks(MAX_BLOCKS)
        .map(|chunk| json!({"text": text, "blocks": chunk}))
        .collect())
}

#[async_trait]
impl Action for Slack {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "slack"
    }

    async fn send(&self, msg: &Message) -> Result<(), ActionError> {
        let messages = payloads(&msg.content.title, &msg.content.description)?;
        let id = msg.delivery_id(&self.name);
        let done = self
            .progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .copied()
            .unwrap_or(0);
        for (i, payload) in messages.iter().enumerate().skip(done) {
            let req = self
                .http
                .post(self.url.expose().clone())
                .timeout(self.timeout)
                .json(payload);
            let res = deliver_expecting_2xx_secret_url(req, |status, body| {
                format!("Slack API error: Status: \"{status}\". Message: \"{body}\"")
            })
            .await;
            let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
            match res {
                Ok(_) if i + 1 == messages.len() => {
                    progress.remove(&id);
                }
                Ok(_) => {
                    if progress.len() >= MAX_REMEMBERED {
                        progress.clear();
                    }
                    progress.insert(id.clone(), i + 1);
                }
                Err(e) => {
                    return Err(match e {
                        ActionError::Transient {
                            message,
                            retry_after,
                        } if messages.len() > 1 => ActionError::Transient {
                            message: format!("message {} of {}: {message}", i + 1, messages.len()),
                            retry_after,
                        },
                        other => other,
                    });
                }
            }
        }
        Ok(())
    }

    fn preview(&self, msg: &Message) -> Value {
        let body = match payloads(&msg.content.title, &msg.content.description) {
            Ok(p) => json!(p),
            Err(e) => json!({"error": e.to_string()}),
        };
        json!({
            "method": "POST",
            "url": "<hidden>",
            "timeout": format!("{:?}", self.timeout),
            "headers": {"Content-Type": "application/json"},
            "messages": body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FieldValue, Secret};

    #[test]
    fn validate_keeps_the_url_secret_even_when_it_is_invalid() {
        let mut f = Fields::new(KEYS);
        f.set(
            "url",
            FieldValue::Secret(Secret::new("https://hooks.slack.com/services/T0/B0/key-1")),
        );
        let cfg = validate(&f).config.unwrap();
        assert_eq!(cfg.url.expose().path(), "/services/T0/B0/key-1");
        assert!(!format!("{cfg:?}").contains("key-1"));
        f.set(
            "url",
            FieldValue::Secret(Secret::new("hooks.slack.com/services/T0/B0/key-2")),
        );
        let errs = validate(&f).config.unwrap_err();
        assert_eq!(errs[0].key, "url");
        assert!(
            errs[0]
                .message
                .starts_with("not a valid URL (value hidden)")
        );
        assert!(!errs[0].message.contains("key-2"), "{}", errs[0].message);
        let errs = validate(&Fields::new(KEYS)).config.unwrap_err();
        assert_eq!(errs[0].message, "missing: the URL to send to is required");
    }

    #[test]
    fn postee_block_lists_parse_with_a_trailing_comma_or_without_brackets() {
        let b = blocks_of(r#"{"type":"divider"},{"type":"divider"},"#).unwrap();
        assert_eq!(b.len(), 2);
        let b = blocks_of(r#"[{"type":"divider"}]"#).unwrap();
        assert_eq!(b, vec![json!({"type":"divider"})]);
        let b = blocks_of(r#"{"blocks":[{"type":"divider"}]}"#).unwrap();
        assert_eq!(b, vec![json!({"type":"divider"})]);
        assert!(blocks_of("  ").unwrap().is_empty());
    }

    #[test]
    fn html_is_refused_and_plain_text_becomes_sections() {
        let e = blocks_of("<h1>scan</h1>").unwrap_err();
        assert!(!e.is_transient());
        assert!(e.to_string().contains("wrong template selected"));
        let b = blocks_of("plain *text*").unwrap();
        assert_eq!(b[0]["text"]["text"], "plain *text*");
    }

    #[test]
    fn long_texts_and_many_blocks_are_split_within_slack_limits() {
        let line = "x".repeat(99) + "\n";
        let long = line.repeat(70); // 7,000 characters
        let mut blocks = vec![json!({"type":"section","text":{"type":"mrkdwn","text": long}})];
        for _ in 0..120 {
            blocks.push(json!({"type":"context","elements":[{"type":"mrkdwn","text":"e"}]}));
        }
        let p = payloads("Title <&>", &Value::Array(blocks).to_string()).unwrap();
        let all: Vec<&Value> = p
            .iter()
            .flat_map(|m| m["blocks"].as_array().unwrap())
            .collect();
        assert_eq!(all[0]["text"]["text"], "*Title &lt;&amp;&gt;*");
        // 1 title + 3 pieces of the long text + 120 context blocks.
        assert_eq!(all.len(), 124);
        assert_eq!(p.len(), 3);
        for m in &p {
            assert!(m["blocks"].as_array().unwrap().len() <= MAX_BLOCKS);
        }
        let rejoined: String = all[1..4]
            .iter()
            .map(|b| b["text"]["text"].as_str().unwrap())
            .collect();
        assert_eq!(rejoined, long);
        for b in &all[1..4] {
            let t = b["text"]["text"].as_str().unwrap();
            assert!(t.chars().count() <= MAX_TEXT && t.ends_with('\n'));
        }
        // Context elements are kept (Postee dropped them).
        assert_eq!(all[4]["elements"][0]["text"], "e");
    }
}
