//! `teams`: posts the rendered message to a Microsoft Teams webhook (spec §6.4).
//!
//! Keys: `url` (required, a secret), `teams-format` (ours: `messagecard`, the default, for
//! Office 365 connector webhooks as Postee; or `workflows` for Teams Workflows / Power
//! Automate webhooks, which take an Adaptive Card), `timeout` (ours, default 30s).
//!
//! `messagecard`: `{"text": "<h2>TITLE</h2>\n<description>"}`, as Postee, but valid JSON (Postee
//! wrote a raw newline into the string) and with the title HTML-escaped (it comes from the
//! event). A description longer than 18,000 bytes is replaced by Postee's short message
//! (a link to the scan in the Aqua console, §6.16).
//!
//! `workflows`: `{"type":"message","attachments":[{"contentType":
//! "application/vnd.microsoft.card.adaptive","content":<AdaptiveCard 1.4>}]}`. A description
//! that is itself an Adaptive Card (a JSON object with `"type":"AdaptiveCard"`) is sent as the
//! card; otherwise the card has the title (bold) and the description as text, HTML turned into
//! plain lines (Adaptive Cards do not render HTML).
//!
//! Success: any 2xx (connectors answer `200 1`, Workflows `202`). A connector's `200` whose body
//! is not `1` is Teams reporting a failure in the body (Postee's `Teams Body Error`); it is
//! transient when it mentions HTTP 429 or a 5xx, permanent otherwise. Other statuses are
//! classified as usual (429 with `Retry-After`, 408, 5xx transient; other 4xx permanent).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{
    Action, ActionError, BuildContext, Check, DEFAULT_SEND_TIMEOUT, Message, SEND_TIMEOUT_KEY,
    Validated, body_snippet, drain, send_expecting_2xx_secret_url,
};
use crate::config::{Fields, KeySpec, Kind, SecretUrl};

/// Postee's limit for the description before the short message is used.
pub const MAX_BODY: usize = 18_000;

pub(crate) const KEYS: &[KeySpec] = &[
    KeySpec::required(
        "url",
        Kind::Secret,
        "The webhook URL. A secret: it carries the webhook's key, so it is never shown.",
    ),
    KeySpec::optional(
        "teams-format",
        Kind::Str,
        "`messagecard`",
        "`messagecard`: Postee's payload for connectors. `workflows`: an Adaptive Card for Workflows webhooks.",
    ),
    SEND_TIMEOUT_KEY,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    MessageCard,
    Workflows,
}

/// A valid teams action.
#[derive(Debug, Clone)]
pub struct TeamsConfig {
    pub url: SecretUrl,
    pub format: Format,
    pub timeout: Duration,
}

pub fn validate(f: &Fields) -> Validated<TeamsConfig> {
    let mut c = Check::default();
    let format = match f
        .non_empty("teams-format")
        .map(|s| s.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("messagecard") => Format::MessageCard,
        Some("workflows") => Format::Workflows,
        Some(other) => {
            c.error(
                "teams-format",
                format!("unknown format {other:?}: use `messagecard` (default) or `workflows`"),
            );
            Format::MessageCard
        }
    };
    let timeout = c.timeout(f, DEFAULT_SEND_TIMEOUT);
    let url = c.secret_url(f);
    c.finish(url.map(|url| TeamsConfig {
        url,
        format,
        timeout,
    }))
}

pub fn build(name: &str, cfg: TeamsConfig, ctx: &BuildContext) -> Result<Arc<dyn Action>, String> {
    Ok(Arc::new(Teams {
        name: name.to_string(),
        url: cfg.url,
        format: cfg.format,
        timeout: cfg.timeout,
        aqua_server: ctx.aqua_server.clone(),
        http: ctx.http.clone(),
    }))
}

pub struct Teams {
    name: String,
    url: SecretUrl,
    format: Format,
    timeout: Duration,
    aqua_server: String,
    http: reqwest::Client,
}

impl Teams {
    pub fn payload(&self, msg: &Message) -> Value {
        let c = &msg.content;
        match self.format {
            Format::MessageCard => {
                let body = if c.description.len() > MAX_BODY {
                    short_message_html(&self.aqua_server, &c.url)
                } else {
                    c.description.clone()
                };
                json!({"text": format!("<h2>{}</h2>\n{body}", html_escape(&c.title))})
            }
            Format::Workflows => {
                let card = match serde_json::from_str::<Value>(&c.description) {
                    Ok(v) if v.get("type").and_then(Value::as_str) == Some("AdaptiveCard") => v,
                    _ => {
                        let text = if c.description.len() > MAX_BODY {
                            html_to_text(&short_message_html(&self.aqua_server, &c.url))
                        } else {
                            html_to_text(&c.description)
                        };
                        json!({
                            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                            "type": "AdaptiveCard",
                            "version": "1.4",
                            "msteams": {"width": "Full"},
                            "body": [
                                {"type": "TextBlock", "text": c.title, "weight": "Bolder", "size": "Medium", "wrap": true},
                                {"type": "TextBlock", "text": text, "wrap": true},
                            ],
                        })
                    }
                };
                json!({
                    "type": "message",
                    "attachments": [{
                        "contentType": "application/vnd.microsoft.card.adaptive",
                        "contentUrl": null,
                        "content": card,
                    }],
                })
            }
        }
    }
}

pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Postee's short message (§6.16), HTML variant: a link to the full results.
pub fn short_message_html(aqua_server: &str, url: &str) -> String {
    if aqua_server.is_empty() {
        return "<p>Please configure Aqua server url to get link to entire scan results.</p>\n\
                <p><a href=\"https://aquasecurity.github.io/postee/settings/\">Postee settings</a></p>\n"
            .to_string();
    }
    let links: Vec<&str> = url.split('\n').filter(|l| !l.is_empty()).collect();
    if links.is_empty() {
        return "<p>Unable to create link to entire scan results. Input message doesn't contain 'registry' and 'image' fields or they are empty</p>\n".to_string();
    }
    let mut s = String::from(
        "<p>This message is too long to display here. Please visit the link to read the content.</p>\n",
    );
    for l in links {
        let text = percent_decode(l);
        s.push_str(&format!(
            "<p><a href=\"{}\">{}</a></p>\n",
            html_escape(l),
            html_escape(&text)
        ));
    }
    s
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && b[i + 1].is_ascii_hexdigit()
            && b[i + 2].is_ascii_hexdigit()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// HTML to readable text for an Adaptive Card: block ends become line ends, tags go, the
/// common entities are decoded. Not an HTML parser: enough for Postee's templates.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('>') else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let tag = rest[start + 1..start + end]
            .trim_start_matches('/')
            .split(|c: char| c.is_whitespace() || c == '/')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let closing = rest[start + 1..].starts_with('/');
        match tag.as_str() {
            "br" | "p" | "div" | "tr" | "h1" | "h2" | "h3" | "h4" | "li" | "table" => {
                if !out.ends_with('\n') && !out.is_empty() {
                    out.push('\n');
                }
                if tag == "li" && !closing {
                    out.push_str("- ");
                }
            }
            "td" | "th" if closing => out.push_str(" | "),
            _ => {}
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    let decoded = out
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&");
    // Blank lines collapse; Adaptive Card text needs a blank line for a paragraph break.
    decoded
        .lines()
        .map(|l| l.trim_end_matches([' ', '|']).trim_end())
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[async_trait]
impl Action for Teams {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "teams"
    }

    async fn send(&self, msg: &Message) -> Result<(), ActionError> {
        let req = self
            .http
            .post(self.url.expose().clone())
            .timeout(self.timeout)
            .json(&self.payload(msg));
        let resp = send_expecting_2xx_secret_url(req, |status, body| {
            format!("InsertRecordToTable Error: \"{status}\". {body}")
        })
        .await?;
        if self.format != Format::MessageCard || resp.status() != reqwest::StatusCode::OK {
            // Read to the end, so the connection goes back to the pool.
            drain(resp).await;
        } else {
            let body = body_snippet(resp, 1024).await;
            let body = body.trim();
            if !body.is_empty() && !body.starts_with('1') {
                let message = format!("Teams Body Error: \"{body}\"");
                let transient = body.contains("429")
                    || ["HTTP error 5", "HTTP 5"].iter().any(|p| body.contains(p));
                return Err(if transient {
                    ActionError::transient(message)
                } else {
                    ActionError::permanent(message)
                });
            }
        }
        Ok(())
    }

    fn preview(&self, msg: &Message) -> Value {
        json!({
            "method": "POST",
            "url": "<hidden>",
            "format": match self.format { Format::MessageCard => "messagecard", Format::Workflows => "workflows" },
            "timeout": format!("{:?}", self.timeout),
            "headers": {"Content-Type": "application/json"},
            "body": self.payload(msg),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FieldValue, Secret};

    #[test]
    fn validate_reads_the_format_and_hides_a_bad_url() {
        let mut f = Fields::new(KEYS);
        f.set(
            "url",
            FieldValue::Secret(Secret::new("https://x.webhook.office.com/webhookb2/key-1")),
        );
        f.set("teams-format", FieldValue::Str("Workflows".into()));
        let cfg = validate(&f).config.unwrap();
        assert_eq!(cfg.format, Format::Workflows);
        f.set(
            "url",
            FieldValue::Secret(Secret::new("x.webhook.office.com/key-2")),
        );
        f.set("teams-format", FieldValue::Str("adaptive".into()));
        let errs = validate(&f).config.unwrap_err();
        let shown: Vec<String> = errs
            .iter()
            .map(|e| format!("{}: {}", e.key, e.message))
            .collect();
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert!(shown[0].starts_with("teams-format: unknown format \"adaptive\""));
        assert!(shown[1].starts_with("url: not a valid URL (value hidden)"));
        assert!(!shown.concat().contains("key-2"));
    }

    #[test]
    fn short_messages_follow_postee_variants() {
        assert!(short_message_html("", "x").contains("Please configure Aqua server url"));
        assert!(short_message_html("https://aqua/#/images/", "").contains("Unable to create link"));
        let s = short_message_html("https://aqua/#/images/", "https://aqua/#/images/r/a%3A1\n");
        assert!(s.contains("This message is too long"));
        assert!(s.contains(
            r#"<a href="https://aqua/#/images/r/a%3A1">https://aqua/#/images/r/a:1</a>"#
        ));
    }

    #[test]
    fn html_becomes_card_text() {
        let t = html_to_text(
            "<h3>Scan</h3><p>Image &amp; tag</p><table><tr><td>CVE-1</td><td>high</td></tr></table>",
        );
        assert_eq!(t, "Scan\n\nImage & tag\n\nCVE-1 | high");
    }
}
