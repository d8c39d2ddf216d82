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

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use super::{
    Action, ActionError, BuildContext, Check, DEFAULT_SEND_TIMEOUT, Message, SEND_TIMEOUT_KEY,
    Validated, deliver_expecting_2xx, join_path, shown_url, truncate_chars,
};
use crate::config::{Fields, KeySpec, Kind, Secret};

pub const DEFAULT_API_URL: &str = "https://api.opsgenie.com";
pub const DEFAULT_PRIORITY: &str = "P3";
const MAX_MESSAGE: usize = 130;
const MAX_DESCRIPTION: usize = 15_000;
const MAX_ALIAS: usize = 512;

pub(crate) const KEYS: &[KeySpec] = &[
    KeySpec::required(
        "token",
        Kind::Secret,
        "API key of an OpsGenie API integration, a secret.",
    ),
    KeySpec::optional(
        "user",
        Kind::Expand,
        "none",
        "The alert's `user` (display name of the request owner).",
    ),
    KeySpec::optional(
        "assignee",
        Kind::StrList,
        "none",
        "User names (emails), sent as `responders` of type `user`.",
    ),
    KeySpec::optional(
        "recipients",
        Kind::StrList,
        "none",
        "User names, sent as `visibleTo` of type `user`.",
    ),
    KeySpec::optional("tags", Kind::StrList, "none", "Tags of every alert."),
    KeySpec::optional(
        "priority",
        Kind::Str,
        "`P3`",
        "`P1`...`P5` (any case); anything else is a load error.",
    ),
    KeySpec::optional(
        "alias",
        Kind::Str,
        "the delivery id",
        "OpsGenie's de-duplication key (see below).",
    ),
    KeySpec::optional("entity", Kind::Str, "none", "The alert's entity."),
    KeySpec::optional(
        "api-url",
        Kind::Str,
        "`https://api.opsgenie.com`",
        "API base; EU accounts use `https://api.eu.opsgenie.com`.",
    ),
    SEND_TIMEOUT_KEY,
];

/// A valid opsgenie action.
#[derive(Debug, Clone)]
pub struct OpsGenieConfig {
    /// `{api-url}/v2/alerts`.
    pub endpoint: reqwest::Url,
    pub token: Secret,
    pub user: Option<String>,
    pub assignee: Vec<String>,
    pub recipients: Vec<String>,
    pub tags: Vec<String>,
    pub priority: String,
    pub alias: Option<String>,
    pub entity: Option<String>,
    pub timeout: Duration,
}

/// `P1`…`P5`, any case.
pub fn parse_priority(s: &str) -> Option<String> {
    let p = s.trim().to_ascii_uppercase();
    matches!(p.as_str(), "P1" | "P2" | "P3" | "P4" | "P5").then_some(p)
}

pub fn validate(f: &Fields) -> Validated<OpsGenieConfig> {
    let mut c = Check::default();
    let token = c.required_secret(f, "token", "the OpsGenie API key is required");
    let priority = match f.non_empty("priority") {
        None => DEFAULT_PRIORITY.to_string(),
        Some(p) => parse_priority(p).unwrap_or_else(|| {
            c.error(
                "priority",
                format!("invalid priority {p:?}: use P1, P2, P3, P4 or P5"),
            );
            DEFAULT_PRIORITY.to_string()
        }),
    };
    let base = c.base_url(f, "api-url", DEFAULT_API_URL);
    let timeout = c.timeout(f, DEFAULT_SEND_TIMEOUT);
    let non_empty = |k: &str| f.non_empty(k).map(str::to_string);
    let config = match (base, token) {
        (Some(base), Some(token)) => Some(OpsGenieConfig {
            endpoint: join_path(&base, "/v2/alerts"),
            token,
            user: non_empty("user"),
            assignee: f.list("assignee"),
            recipients: f.list("recipients"),
            tags: f.list("tags"),
            priority,
            alias: non_empty("alias"),
            entity: non_empty("entity"),
            timeout,
        }),
        _ => None,
    };
    c.finish(config)
}

pub fn build(
    name: &str,
    cfg: OpsGenieConfig,
    ctx: &BuildContext,
) -> Result<Arc<dyn Action>, String> {
    Ok(Arc::new(OpsGenie {
        name: name.to_string(),
        endpoint: cfg.endpoint,
        token: cfg.token,
        user: cfg.user,
        assignee: cfg.assignee,
        recipients: cfg.recipients,
        tags: cfg.tags,
        priority: cfg.priority,
        alias: cfg.alias,
        entity: cfg.entity,
        timeout: cfg.timeout,
        http: ctx.http.clone(),
    }))
}

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

impl OpsGenie {
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
        deliver_expecting_2xx(req, |status, body| {
            format!("OpsGenie create alert failed: HTTP {status}: {body}")
        })
        .await
    }

    fn preview(&self, msg: &Message) -> Value {
        json!({
            "method": "POST",
            "url": shown_url(&self.endpoint),
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
    fn validate_needs_a_token_and_checks_priority_and_api_url() {
        use crate::config::FieldValue;
        let mut f = Fields::new(KEYS);
        f.set("token", FieldValue::Secret(Secret::new("genie-1")));
        f.set(
            "api-url",
            FieldValue::Str("https://proxy.example/og/".into()),
        );
        f.set("priority", FieldValue::Str("p1".into()));
        let cfg = validate(&f).config.unwrap();
        assert_eq!(cfg.endpoint.as_str(), "https://proxy.example/og/v2/alerts");
        assert_eq!(cfg.priority, "P1");
        assert_eq!(cfg.token.expose(), "genie-1");
        let mut f = Fields::new(KEYS);
        f.set("token", FieldValue::Secret(Secret::new("  ")));
        f.set("priority", FieldValue::Str("urgent".into()));
        let errs = validate(&f).config.unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["token", "priority"]);
    }

    #[test]
    fn priorities_are_p1_to_p5_in_any_case() {
        assert_eq!(parse_priority("p1").as_deref(), Some("P1"));
        assert_eq!(parse_priority(" P5 ").as_deref(), Some("P5"));
        assert_eq!(parse_priority("P6"), None);
        assert_eq!(parse_priority("high"), None);
    }
}
