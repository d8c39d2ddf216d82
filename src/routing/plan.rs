//! The plan of one event: for each route, whether its condition matched, the dedup key it
//! would hold, and the message its template rendered. Planning reads only the event and the
//! config; what the plan leads to is decided in [`super::decide`].

use std::collections::BTreeMap;
use std::sync::Arc;

use regorus::Value;

use super::Condition;
use super::dedup::dedup_key;
use crate::event::JournalEntry;
use crate::message::Rendered;
use crate::templates::Template;

/// How a route aggregates (spec §4.7–4.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// `aggregate-message-number`: send every N messages.
    Count(usize),
    /// `aggregate-message-timeout`: send what gathered when the window (ms) ends.
    Window(u64),
}

/// One runnable route.
pub struct Route {
    pub name: String,
    pub condition: Condition,
    pub template: Arc<Template>,
    /// Names of the route's enabled actions, in list order.
    pub actions: Vec<String>,
    pub serialize: bool,
    /// `unique-message-props` and `unique-message-timeout` (seconds, 0: forever).
    pub dedup_props: Vec<String>,
    pub dedup_ttl: u64,
    /// Aggregation plugins, with the template's aggregation package.
    pub aggregate: Option<(Aggregate, Arc<Template>)>,
    /// Actions that need an upsert key (`Action::key_props`), with its event paths (empty:
    /// `dedup_props`). Their keys go into the rendered content's `keys`.
    pub action_keys: Vec<(String, Vec<String>)>,
}

/// What a route made of an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    NoMatch,
    /// The condition could not be evaluated (e.g. its time limit): nothing is sent, and the
    /// event's history says why.
    ConditionFailed(String),
    /// The route matched and its template failed: each action gets a dead letter with the
    /// error, replayable once the template is fixed.
    RenderFailed(String),
    Rendered(Rendered),
}

/// What one route makes of one event.
#[derive(Debug, Clone)]
pub struct RoutePlan {
    pub route: String,
    pub verdict: Verdict,
    pub actions: Vec<String>,
    /// `serialize-actions`: deliver to one action after the other, in list order.
    pub serialize: bool,
    /// Dedup key (already scoped to the route) and its time to live in seconds (0: forever).
    pub dedup: Option<(String, u64)>,
    /// Queue the content for aggregation instead of sending it now.
    pub aggregate: Option<Aggregate>,
}

/// What every route makes of one event, or why planning it failed.
#[derive(Debug, Clone)]
pub struct EventPlan {
    pub id: String,
    pub entry: JournalEntry,
    pub routes: Vec<RoutePlan>,
    /// Planning failed as a whole (a panic): the event is recorded with this error.
    pub failure: Option<String>,
}

impl EventPlan {
    /// The plan of an event whose planning failed.
    pub fn failed(id: String, entry: JournalEntry, error: String) -> EventPlan {
        EventPlan {
            id,
            entry,
            routes: Vec::new(),
            failure: Some(error),
        }
    }
}

/// Plans one journaled event over every route (or its tenant route).
pub fn plan_event(
    routes: &[Arc<Route>],
    aqua_server: &str,
    id: &str,
    entry: &JournalEntry,
    input: &Value,
) -> EventPlan {
    let routes = routes
        .iter()
        .filter(|r| entry.route.as_deref().is_none_or(|only| only == r.name))
        .filter(|r| !r.actions.is_empty())
        .map(|r| plan_route(r, aqua_server, id, input))
        .collect();
    EventPlan {
        id: id.to_string(),
        entry: entry.clone(),
        routes,
        failure: None,
    }
}

/// What one route makes of an event: condition, dedup key, rendering.
pub fn plan_route(route: &Route, aqua_server: &str, event_id: &str, input: &Value) -> RoutePlan {
    let mut plan = RoutePlan {
        route: route.name.clone(),
        verdict: Verdict::NoMatch,
        actions: route.actions.clone(),
        serialize: route.serialize,
        dedup: None,
        aggregate: route.aggregate.as_ref().map(|(m, _)| *m),
    };
    match route.condition.matches(input) {
        Ok(true) => {}
        Ok(false) => return plan,
        Err(e) => {
            tracing::warn!(route = %route.name, event_id, error = %e, "route condition failed; nothing sent on this route");
            plan.verdict = Verdict::ConditionFailed(format!("condition failed: {e}"));
            return plan;
        }
    }
    // The event as JSON, for the dedup and upsert keys (only when some are needed).
    let json = if route.dedup_props.is_empty() && route.action_keys.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::to_value(input).unwrap_or_default()
    };
    if !route.dedup_props.is_empty() {
        let key = dedup_key(&json, &route.dedup_props);
        if key.is_empty() {
            // Postee drops such an event (empty key); sending it is the safer choice.
            tracing::warn!(route = %route.name, event_id, "unique-message-props found no value in the event; sent without dedup");
        } else {
            plan.dedup = Some((format!("{}\u{0}{key}", route.name), route.dedup_ttl));
        }
    }
    plan.verdict = match route.template.render(input, aqua_server) {
        Ok(mut content) => {
            content.keys = action_keys(route, &json);
            if content.keys.len() < route.action_keys.len() {
                tracing::warn!(route = %route.name, event_id, "an action's upsert key found no value in the event; it creates a new item");
            }
            Verdict::Rendered(content)
        }
        Err(e) => {
            tracing::warn!(route = %route.name, event_id, template = %route.template.name, error = %e, "template failed; dead letters for this route's actions");
            Verdict::RenderFailed(e.to_string())
        }
    };
    plan
}

/// The upsert key of each action of the route that needs one (none when its props find no
/// value in the event).
pub fn action_keys(route: &Route, event: &serde_json::Value) -> BTreeMap<String, String> {
    keys_of(&route.action_keys, &route.dedup_props, event)
}

/// [`action_keys`] over its parts: each action's props, empty meaning `dedup_props`.
fn keys_of(
    actions: &[(String, Vec<String>)],
    dedup_props: &[String],
    event: &serde_json::Value,
) -> BTreeMap<String, String> {
    let mut keys = BTreeMap::new();
    for (action, props) in actions {
        let props = if props.is_empty() { dedup_props } else { props };
        if props.is_empty() {
            continue;
        }
        let key = dedup_key(event, props);
        if !key.is_empty() {
            keys.insert(action.clone(), key);
        }
    }
    keys
}

/// Renders a route's aggregation batch with its aggregation package. The input is the
/// array of items Postee builds (spec §4.9), newest first, without Postee's leading `null`s.
pub fn render_aggregate(route: &Route, items: &[Rendered]) -> Result<Rendered, String> {
    let Some((_, template)) = route.aggregate.as_ref() else {
        return Err(format!(
            "route {} does not aggregate (any more)",
            route.name
        ));
    };
    template.aggregate(items).map_err(|e| e.to_string())
}

/// Renders an event's body again with its route's template (the replay of a delivery whose
/// template had failed).
pub fn render_body(route: &Route, aqua_server: &str, body: &str) -> Result<Rendered, String> {
    let input = crate::event::parse(body.as_bytes()).map_err(|e| e.to_string())?;
    let mut content = route
        .template
        .render(&input, aqua_server)
        .map_err(|e| e.to_string())?;
    if !route.action_keys.is_empty() {
        content.keys = action_keys(route, &serde_json::to_value(&input).unwrap_or_default());
    }
    Ok(content)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn action_keys_use_their_props_or_the_routes() {
        let ev = json!({"image": "alpine", "ns": "prod", "digest": "sha256:1"});
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let actions = vec![
            ("own".to_string(), s(&["image", "ns"])),
            ("route".to_string(), Vec::new()),
            ("none".to_string(), s(&["missing"])),
        ];
        let keys = keys_of(&actions, &s(&["digest"]), &ev);
        assert_eq!(keys["own"], "alpine-prod");
        assert_eq!(keys["route"], "sha256:1");
        assert!(!keys.contains_key("none"));
        assert!(!keys_of(&actions, &[], &ev).contains_key("route"));
    }
}
