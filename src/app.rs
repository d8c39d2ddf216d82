//! Builds the runtime from a validated config (routes, templates, actions, all compiled once)
//! and runs the pipeline for one event: conditions → render once per route → actions.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use futures_util::future::join_all;
use regorus::Value;

use crate::actions::{self, Action, ActionError, BuildContext, Message};
use crate::config::{Config, Problems, problems::closest};
use crate::routing::Condition;
use crate::templates::{Registry, Template};

/// Where the user's Rego lives (Postee's working-directory-relative defaults).
#[derive(Debug, Clone)]
pub struct Paths {
    /// `REGO_FILTERS_PATH`, default `./rego-filters`.
    pub filters_dir: PathBuf,
    /// `REGO_TEMPLATES_PATH`, default `./rego-templates`.
    pub templates_dir: PathBuf,
}

impl Paths {
    pub fn from_env() -> Self {
        let dir = |var: &str, default: &str| {
            PathBuf::from(
                std::env::var(var)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| default.to_string()),
            )
        };
        Paths {
            filters_dir: dir("REGO_FILTERS_PATH", "./rego-filters"),
            templates_dir: dir("REGO_TEMPLATES_PATH", "./rego-templates"),
        }
    }
}

/// One runnable route.
pub struct Route {
    pub name: String,
    pub condition: Condition,
    pub template: Arc<Template>,
    pub actions: Vec<Arc<dyn Action>>,
    pub serialize: bool,
}

/// The runtime built from one config.
pub struct App {
    pub routes: Vec<Arc<Route>>,
    /// `aqua-server` in Postee's `…/#/images/` form.
    pub aqua_server: String,
}

/// One received event, parsed once and shared by every route.
#[derive(Clone)]
pub struct Event {
    pub id: String,
    pub received_at: SystemTime,
    pub input: Value,
}

/// What one route produced for one event.
pub struct Planned {
    pub route: Arc<Route>,
    pub message: Message,
}

/// A shared HTTP client (rustls with the system's roots).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("postee/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the HTTP client builds with the installed rustls provider")
}

/// Builds everything, reporting every problem. `None` when there are errors (or warnings
/// under strict mode).
pub async fn build(
    cfg: &Config,
    paths: &Paths,
    strict: bool,
    problems: &mut Problems,
) -> Option<App> {
    let ctx = BuildContext {
        http: http_client(),
    };
    let used_actions: Vec<&str> = cfg
        .routes
        .iter()
        .flat_map(|r| r.actions.iter().map(String::as_str))
        .collect();
    // A route is active when it names at least one enabled action; what only inactive routes
    // use (templates, plugins) cannot affect a delivery, so its problems are warnings.
    let enabled = |name: &String| cfg.actions.iter().any(|a| &a.name == name && a.enable);
    let active = |r: &crate::config::RouteConfig| r.actions.iter().any(enabled);
    let used_templates: Vec<&str> = cfg
        .routes
        .iter()
        .filter(|r| active(r))
        .map(|r| r.template.as_str())
        .collect();

    // Actions.
    let mut built: BTreeMap<String, Arc<dyn Action>> = BTreeMap::new();
    for a in &cfg.actions {
        let path = format!("actions[{}]", a.name);
        let implemented = actions::IMPLEMENTED.contains(&a.kind.as_str());
        if !a.enable {
            if !implemented {
                problems.warn(
                    format!("{path}.type"),
                    format!("action type {} is not supported yet (the action is disabled, so this is not an error)", a.kind),
                );
            }
            continue;
        }
        if let Some(r) = &a.runs_on {
            problems.warn(
                format!("{path}.runs-on"),
                format!("controller/runner mode is not supported yet; this action runs here, not on runner `{r}`"),
            );
        }
        if let Some(action) = actions::build(a, &ctx, problems) {
            built.insert(a.name.clone(), action);
        }
    }
    for name in built.keys() {
        if !used_actions.contains(&name.as_str()) {
            problems.warn(
                format!("actions[{name}]"),
                "action is enabled but no route uses it",
            );
        }
    }

    // Templates.
    let registry = match Registry::new(&paths.templates_dir) {
        Ok(r) => Some(r),
        Err(errs) => {
            for e in errs {
                problems.error(
                    format!("rego-templates ({})", paths.templates_dir.display()),
                    e,
                );
            }
            None
        }
    };
    let mut templates: BTreeMap<String, Arc<Template>> = BTreeMap::new();
    if let Some(reg) = &registry {
        for t in &cfg.templates {
            match reg.build(t, &ctx.http).await {
                Ok(tpl) => {
                    templates.insert(t.name.clone(), Arc::new(tpl));
                }
                Err(e) if used_templates.contains(&t.name.as_str()) => {
                    problems.error(format!("templates[{}]", t.name), e)
                }
                Err(e) => problems.warn(
                    format!("templates[{}]", t.name),
                    format!("{e} (no route with an enabled action uses this template, so this is not an error)"),
                ),
            }
        }
    }

    // Routes.
    let action_names: Vec<&str> = cfg.actions.iter().map(|a| a.name.as_str()).collect();
    let template_names: Vec<&str> = cfg.templates.iter().map(|t| t.name.as_str()).collect();
    let mut routes = Vec::new();
    for r in &cfg.routes {
        let path = format!("routes[{}]", r.name);
        let condition = match Condition::build(r, &paths.filters_dir) {
            Ok(c) => Some(c),
            Err(errs) => {
                let key = if r.input_files.is_empty() {
                    "input"
                } else {
                    "input-files"
                };
                for e in errs {
                    problems.error(format!("{path}.{key}"), e);
                }
                None
            }
        };
        let p = &r.plugins;
        for (key, set) in [
            ("aggregate-message-number", p.aggregate_message_number > 0),
            ("aggregate-message-timeout", p.aggregate_message_timeout > 0),
            ("unique-message-props", !p.unique_message_props.is_empty()),
        ] {
            if set {
                let msg = format!(
                    "plugin `{key}` is not supported yet (dedup and aggregation come with the durable store); remove it to send every event"
                );
                if active(r) {
                    problems.error(format!("{path}.plugins.{key}"), msg);
                } else {
                    problems.warn(
                        format!("{path}.plugins.{key}"),
                        format!("{msg} (no enabled action on this route, so this is not an error)"),
                    );
                }
            }
        }
        if p.unique_message_timeout > 0 && p.unique_message_props.is_empty() {
            problems.warn(
                format!("{path}.plugins.unique-message-timeout"),
                "has no effect without `unique-message-props`",
            );
        }
        if r.actions.is_empty() {
            problems.warn(&path, "route has no actions; it never sends anything");
        }
        let mut route_actions = Vec::new();
        for name in &r.actions {
            match (
                built.get(name),
                cfg.actions.iter().find(|a| &a.name == name),
            ) {
                (Some(a), _) => route_actions.push(a.clone()),
                (None, Some(a)) if !a.enable => problems.warn(
                    format!("{path}.actions"),
                    format!("action `{name}` is disabled (enable: false); the route skips it"),
                ),
                (None, Some(_)) => {} // enabled but broken: its own errors are reported
                (None, None) => {
                    let hint = closest(name, &action_names)
                        .map(|c| format!("; did you mean `{c}`?"))
                        .unwrap_or_default();
                    problems.error(
                        format!("{path}.actions"),
                        format!("action `{name}` is not defined{hint}"),
                    );
                }
            }
        }
        let template = if r.template.is_empty() {
            if !r.actions.is_empty() {
                problems.error(
                    format!("{path}.template"),
                    "route has actions but no `template`",
                );
            }
            None
        } else {
            match templates.get(&r.template) {
                Some(t) => Some(t.clone()),
                None if template_names.contains(&r.template.as_str()) => None, // its error is reported
                None => {
                    let hint = closest(&r.template, &template_names)
                        .map(|c| format!("; did you mean `{c}`?"))
                        .unwrap_or_default();
                    problems.error(
                        format!("{path}.template"),
                        format!("template `{}` is not defined{hint}", r.template),
                    );
                    None
                }
            }
        };
        if let (Some(condition), Some(template)) = (condition, template) {
            routes.push(Arc::new(Route {
                name: r.name.clone(),
                condition,
                template,
                actions: route_actions,
                serialize: r.serialize_actions,
            }));
        }
    }
    if strict || cfg.strict {
        problems.make_strict();
    }
    if problems.has_errors() {
        return None;
    }
    Some(App {
        routes,
        aqua_server: cfg.aqua_server_url(),
    })
}

impl App {
    pub fn route(&self, name: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| r.name == name)
    }

    /// Conditions and rendering for one event (CPU work: run it off the async threads).
    /// `only` restricts to one route (`POST /tenant/{route}`).
    pub fn plan(&self, event: &Event, only: Option<&str>) -> Vec<Planned> {
        let mut out = Vec::new();
        for route in &self.routes {
            if only.is_some_and(|o| o != route.name) || route.actions.is_empty() {
                continue;
            }
            match route.condition.matches(&event.input) {
                Ok(true) => {}
                Ok(false) => {
                    tracing::debug!(route = %route.name, event_id = %event.id, "event does not match the route");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(route = %route.name, event_id = %event.id, error = %e, "route condition failed; counted as no match");
                    continue;
                }
            }
            match route.template.render(&event.input, &self.aqua_server) {
                Ok(content) => out.push(Planned {
                    route: route.clone(),
                    message: Message {
                        event_id: event.id.clone(),
                        route: route.name.clone(),
                        content,
                    },
                }),
                Err(e) => {
                    tracing::warn!(route = %route.name, event_id = %event.id, template = %route.template.name, error = %e, "template failed; nothing sent for this route");
                }
            }
        }
        out
    }

    /// Runs one event through every route (or one) and delivers to every action.
    pub async fn process(self: &Arc<Self>, event: Event, only: Option<String>) {
        let app = self.clone();
        let planned = tokio::task::spawn_blocking(move || app.plan(&event, only.as_deref()))
            .await
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "event evaluation panicked");
                Vec::new()
            });
        join_all(planned.into_iter().map(deliver_route)).await;
    }
}

/// Delivers one route's message to its actions: in list order when `serialize-actions`,
/// concurrently otherwise. A failing action never stops the others.
pub async fn deliver_route(p: Planned) {
    if p.route.serialize {
        for a in &p.route.actions {
            let _ = deliver_one(a.as_ref(), &p.message).await;
        }
    } else {
        join_all(
            p.route
                .actions
                .iter()
                .map(|a| deliver_one(a.as_ref(), &p.message)),
        )
        .await;
    }
}

/// Sends once and logs the outcome: one line per delivery.
pub async fn deliver_one(action: &dyn Action, msg: &Message) -> Result<(), ActionError> {
    let start = Instant::now();
    let res = action.send(msg).await;
    let ms = start.elapsed().as_millis() as u64;
    match &res {
        Ok(()) => tracing::info!(
            route = %msg.route, action = %action.name(), kind = action.kind(),
            event_id = %msg.event_id, outcome = "delivered", elapsed_ms = ms, "delivery"
        ),
        Err(e) => tracing::warn!(
            route = %msg.route, action = %action.name(), kind = action.kind(),
            event_id = %msg.event_id, outcome = "failed", transient = e.is_transient(),
            elapsed_ms = ms, error = %e, "delivery"
        ),
    }
    res
}
