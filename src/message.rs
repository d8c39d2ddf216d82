//! Messages: what a template rendered for an event and route, and the delivery of it to one
//! action. Delivery ids have one format, made here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a template produced for one event: Postee's "content" map (spec §4.5).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Rendered {
    pub title: String,
    /// The template's `result`, serialized as Postee does when it is not a string.
    pub description: String,
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregation_pkg: Option<String>,
    /// ServiceNow fields (`date`, `severity`, `summary`, `category`, `subcategory`,
    /// `assignedTo`, `assignedGroup`) when the template defines them.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
    /// `application_scope_owners` of the event joined by `;`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owners: Option<String>,
    /// Upsert keys: action name → the key of the thing it updates (jira `update-existing`),
    /// from the event's values at the action's props (see `Action::key_props`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub keys: BTreeMap<String, String>,
}

/// What one action is asked to send: the rendered content plus where it came from.
#[derive(Debug, Clone)]
pub struct Message {
    pub event_id: String,
    pub route: String,
    pub content: Rendered,
}

impl Message {
    /// Stable per (event, route, action): a retry of the same delivery carries the same key.
    pub fn delivery_id(&self, action: &str) -> String {
        delivery_id(&self.event_id, &self.route, action)
    }
}

/// The id of the delivery of an event's message on a route to an action.
pub fn delivery_id(event_id: &str, route: &str, action: &str) -> String {
    format!("{event_id}:{route}:{action}")
}

/// One (event, route, action) delivery: what one action must send, with its attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: String,
    pub event_id: String,
    pub route: String,
    pub action: String,
    pub content: Rendered,
    /// Attempts made so far.
    pub attempts: u32,
    pub created_at_ms: u64,
    pub due_at_ms: u64,
    pub last_error: Option<String>,
    /// The route's dedup key held for this event (released when every delivery is dead).
    #[serde(default)]
    pub dedup_key: Option<String>,
    /// `serialize-actions`: the actions that get this content after this one has finished.
    #[serde(default)]
    pub then: Vec<String>,
    /// The content could not be rendered (the template failed): this delivery is created
    /// dead, and a replay renders it again from the event (or batch) before sending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unrendered: Option<Unrendered>,
}

/// What a replay needs to render a delivery whose template failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unrendered {
    /// Render the event's body (kept in the history) with the route's template.
    Event,
    /// Render these members' messages with the route's aggregation package.
    Aggregation { items: Vec<Rendered> },
}

impl Delivery {
    /// A new delivery, due at `now`.
    pub fn new(event_id: &str, route: &str, action: &str, content: Rendered, now: u64) -> Self {
        Delivery {
            id: delivery_id(event_id, route, action),
            event_id: event_id.to_string(),
            route: route.to_string(),
            action: action.to_string(),
            content,
            attempts: 0,
            created_at_ms: now,
            due_at_ms: now,
            last_error: None,
            dedup_key: None,
            then: Vec::new(),
            unrendered: None,
        }
    }

    /// What the action is handed.
    pub fn message(&self) -> Message {
        Message {
            event_id: self.event_id.clone(),
            route: self.route.clone(),
            content: self.content.clone(),
        }
    }
}

impl Delivery {
    /// The same delivery replayed from the dead letters: a fresh start (attempts and max-age
    /// count from now), without the chain after it (serialize-actions queued that when it
    /// died).
    pub fn replayed(mut self, now: u64) -> Delivery {
        self.attempts = 0;
        self.due_at_ms = now;
        self.created_at_ms = now;
        self.then.clear();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_content_without_keys_reads_as_before() {
        let old = r#"{"title":"t","description":"d","url":"","owners":"a@x"}"#;
        let r: Rendered = serde_json::from_str(old).unwrap();
        assert!(r.keys.is_empty());
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            old,
            "no keys: written as before"
        );
        let mut r = r;
        r.keys.insert("jira".into(), "alpine".into());
        let back: Rendered = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
