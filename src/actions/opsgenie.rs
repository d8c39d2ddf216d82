//! `opsgenie`: creates an alert with the OpsGenie Alert API v2 (spec §6.10).
//!
//! Keys: `token` (required, secret: the API key of an API integration), `user` (the alert's
//! `user`), `assignee` (user names → `responders`), `recipients` (user names → `visibleTo`),
//! `tags`, `priority` (`P1`…`P5`, default `P3`, checked at load), `alias`, `entity`; ours:
//! `api-url` (default `https://api.opsgenie.com`; EU accounts use `https://api.eu.opsgenie.com`)
//! and `timeout` (default 30s).
//!
//! The request: `POST {api-url}/v2/alerts`, `Authorization: GenieKey <token>`, JSON body with
//! `message` (the title, cut to OpsGenie's 130 characters), `alias`, `description` (cut to
//! 15,000), `responders`, `visibleTo`, `tags`, `entity`, `priority`, `user`.
//! When the description is a JSON object (Postee's OpsGenie templates), its `description`,
//! `alias`, `entity` and `priority` override the config and its `tags` (a comma-separated
//! string, or — unlike Postee, which ignored it — an array) are added to the config's.
//! Otherwise the description is the alert's description text (Postee failed).
//!
//! Idempotency: OpsGenie drops an alert whose `alias` matches an open alert. Without an
//! `alias` (config or template), the alias is the delivery id `<event>:<route>:<action>`, so a
//! retried request does not open a second alert.
//!
//! Success: any 2xx (OpsGenie answers `202`; processing is asynchronous). 429 (with
//! `Retry-After`), 408 and 5xx are transient; other 4xx (401 bad key, 422 bad field) permanent.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use super::{
    Action, ActionError, BuildContext, DEFAULT_SEND_TIMEOUT, Message, base_url_key, join_path,
    send_expecting_2xx, timeout_key, truncate_chars,
};
use crate::config::{ActionConfig, Secret};

pub const DEFAULT_API_URL: &str = "https://api.opsgenie.com";
pub const DEFAULT_PRIORITY: &str = "P3";
const MAX_MESSAGE: usize = 130;
const MAX_DESCRIPTION: usize = 15_000;
const MAX_ALIAS: usize = 512;

pub struct OpsGenie {
    name: String,
    endpoint: reqwest::Url,
    token: Secret,
    user: Option<String>,
    assignee: Vec<String>,
    recipients: Vec<String>,
    tags: Vec<String>,
    priority: String,
    alias: Option<String>,
    entity: Option<String>,
    timeout: Duration,
    http: reqwest::Client,
}

/// `P1`…`P5`, any case.
pub fn parse_priority(s: &str) -> Option<String> {
    let p = s.trim().to_ascii_uppercase();
    matches!(p.as_str(), "P1" | "P2" | "P3" | "P4" | "P5").then_some(p)
}

impl OpsGenie {
    pub fn build(
        cfg: &ActionConfig,
        ctx: &BuildContext,
        errs: &mut Vec<(String, String)>,
    ) -> Option<Self> {
        let f = &cfg.fields;
        let token = f.secret("token").filter(|t| !t.expose().trim().is_empty());
        if token.is_none() {
            errs.push((
                "token".into(),
                "missing: the OpsGenie API key is required".into(),
            ));
        }
        let priority = match f.non_empty("priority") {
            None => DEFAULT_PRIORITY.to_string(),
            Some(p) => parse_priority(p).unwrap_or_else(|| {
                errs.push((
                    "priority".into(),
                    format!("invalid priority {p:?}: use P1, P2, P3, P4 or P5"),
                ));
                DEFAULT_PRIORITY.to_string()
            }),
        };
        let base = base_url_key(cfg, "api-url", DEFAULT_API_URL, errs);
        let timeout = timeout_key(cfg, DEFAULT_SEND_TIMEOUT, errs);
        let non_empty = |k: &str| f.non_empty(k).map(str::to_string);
        Some(OpsGenie {
            name: cfg.name.clone(),
            endpoint: join_path(&base?, "/v2/alerts"),
            token: token?,
            user: non_empty("user"),
            assignee: f.list("assignee"),
            recipients: f.list("recipients"),
            tags: f.list("tags"),
            priority,
            alias: non_empty("alias"),
            entity: non_empty("entity"),
            timeout,
            http: ctx.http.clone(),
        })
    }

    /// The create-alert request body.
    pub fn body(&self, msg: &Message) -> Value {
        let c = &msg.content;
        let obj: Option<Map<String, Value>> = match serde_json::from_str(&c.description) {
            Ok(Value::Object(o)) => Some(o),
            _ => None,
        };
        let field = |k: &str| -> Option<String> {
            match obj.as_ref()?.get(k)? {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            }
        };
        let description = match &obj {
            Some(_) => field("description").unwrap_or_default(),
            None => c.description.clone(),
        };
        let alias = field("alias")
            .or_else(|| self.alias.clone())
            .unwrap_or_else(|| msg.delivery_id(&self.name));
        let priority = field("priority")
            .and_then(|p| parse_priority(&p))
            .unwrap_or_else(|| self.priority.clone());
        let mut tags = self.tags.clone();
        match obj.as_ref().and_then(|o| o.get("tags")) {
            Some(Value::String(s)) => tags.extend(
                s.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string),
            ),
            Some(Value::Array(a)) => tags.extend(a.iter().filter_map(|t| match t {
                Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })),
            _ => {}
        }
        let users = |names: &[String]| -> Vec<Value> {
            names
                .iter()
                .map(|u| json!({"type": "user", "username": u}))
                .collect()
        };
        let mut body = Map::new();
        let message = if c.title.trim().is_empty() {
            "postee alert".to_string()
        } else {
            truncate_chars(&c.title, MAX_MESSAGE)
        };
        body.insert("message".into(), message.into());
        body.insert("alias".into(), truncate_chars(&alias, MAX_ALIAS).into());
        if !description.is_empty() {
            body.insert(
                "description".into(),
                truncate_chars(&description, MAX_DESCRIPTION).into(),
            );
        }
        if !self.assignee.is_empty() {
            body.insert("responders".into(), users(&self.assignee).into());
        }
        if !self.recipients.is_empty() {
            body.insert("visibleTo".into(), users(&self.recipients).into());
        }
        if !tags.is_empty() {
            body.insert("tags".into(), tags.into());
        }
        if let Some(e) = field("entity").or_else(|| self.entity.clone()) {
            body.insert("entity".into(), e.into());
        }
        body.insert("priority".into(), priority.into());
        if let Some(u) = &self.user {
            body.insert("user".into(), u.clone().into());
        }
        Value::Object(body)
    }
}

#[async_trait]
impl Action for OpsGenie {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "opsgenie"
    }

    async fn send(&self, msg: &Message) -> Result<(), ActionError> {
        let req = self
            .http
            .post(self.endpoint.clone())
            .timeout(self.timeout)
            .header("Authorization", format!("GenieKey {}", self.token.expose()))
            .json(&self.body(msg));
        send_expecting_2xx(req, |status, body| {
            format!("OpsGenie create alert failed: HTTP {status}: {body}")
        })
        .await
        .map(|_| ())
    }

    fn preview(&self, msg: &Message) -> Value {
        json!({
            "method": "POST",
            "url": self.endpoint.as_str(),
            "timeout": format!("{:?}", self.timeout),
            "headers": {"Content-Type": "application/json", "Authorization": "GenieKey <hidden>"},
            "body": self.body(msg),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_are_p1_to_p5_in_any_case() {
        assert_eq!(parse_priority("p1").as_deref(), Some("P1"));
        assert_eq!(parse_priority(" P5 ").as_deref(), Some("P5"));
        assert_eq!(parse_priority("P6"), None);
        assert_eq!(parse_priority("high"), None);
    }
}
