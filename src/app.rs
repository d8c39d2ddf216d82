//! Builds the runtime from a validated config (routes, templates, actions, all compiled once)
//! and runs the pipeline for one event: conditions → render once per route → actions.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use regorus::Value;

use crate::actions::{self, Action, BuildContext};
use crate::config::{Config, Problems, RetryPolicy, problems::closest};
use crate::routing::Condition;
use crate::routing::dedup::dedup_key;
use crate::store::{AggItem, Aggregate, EventPlan, JournalEntry, RoutePlan, WindowRoute};
use crate::templates::{Registry, Rendered, Template};

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
    /// Names of the route's enabled actions, in list order.
    pub actions: Vec<String>,
    pub serialize: bool,
    /// `unique-message-props` and `unique-message-timeout` (seconds, 0: forever).
    pub dedup_props: Vec<String>,
    pub dedup_ttl: u64,
    /// Aggregation plugins, with the template's aggregation package.
    pub aggregate: Option<(Aggregate, Arc<Template>)>,
}

/// A built action with its delivery settings.
#[derive(Clone)]
pub struct BuiltAction {
    pub action: Arc<dyn Action>,
    pub retry: RetryPolicy,
    pub concurrency: usize,
}

/// The runtime built from one config.
pub struct App {
    pub routes: Vec<Arc<Route>>,
    pub actions: BTreeMap<String, BuiltAction>,
    /// `aqua-server` in Postee's `…/#/images/` form.
    pub aqua_server: String,
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
        aqua_server: cfg.aqua_server_url(),
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
    let mut built: BTreeMap<String, BuiltAction> = BTreeMap::new();
    for a in &cfg.actions {
        let path = format!("actions[{}]", a.name);
        let implemented = actions::is_implemented(&a.kind);
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
            built.insert(
                a.name.clone(),
                BuiltAction {
                    action,
                    retry: a.retry,
                    concurrency: a.concurrency,
                },
            );
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
                (Some(_), _) => route_actions.push(name.clone()),
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
        let mode = if p.aggregate_message_number > 0 {
            if p.aggregate_message_timeout > 0 {
                problems.warn(
                    format!("{path}.plugins.aggregate-message-timeout"),
                    "ignored: aggregate-message-number takes precedence (as in Postee)",
                );
            }
            Some(Aggregate::Count(p.aggregate_message_number as usize))
        } else if p.aggregate_message_timeout > 0 {
            Some(Aggregate::Window(p.aggregate_message_timeout * 1000))
        } else {
            None
        };
        let mut aggregate = None;
        if let (Some(mode), Some(t), Some(reg)) = (mode, template.as_ref(), registry.as_ref()) {
            match t.aggregation_template(reg) {
                Some(Ok(at)) => aggregate = Some((mode, Arc::new(at))),
                Some(Err(e)) if active(r) => problems.error(format!("{path}.plugins"), e),
                Some(Err(e)) => problems.warn(format!("{path}.plugins"), e),
                None => problems.warn(
                    format!("{path}.plugins"),
                    format!(
                        "template `{}` has no aggregation_pkg, so events are sent one by one (as in Postee)",
                        t.name
                    ),
                ),
            }
        }
        if let (Some(condition), Some(template)) = (condition, template) {
            routes.push(Arc::new(Route {
                name: r.name.clone(),
                condition,
                template,
                actions: route_actions,
                serialize: r.serialize_actions,
                dedup_props: r.plugins.unique_message_props.clone(),
                dedup_ttl: r.plugins.unique_message_timeout,
                aggregate,
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
        actions: built,
        aqua_server: cfg.aqua_server_url(),
    })
}

impl App {
    pub fn route(&self, name: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| r.name == name)
    }

    /// Decides what one route does with an event: condition, dedup key, rendering.
    pub fn plan_route(&self, route: &Route, event_id: &str, input: &Value) -> RoutePlan {
        let mut plan = RoutePlan {
            route: route.name.clone(),
            matched: false,
            note: None,
            content: None,
            actions: Vec::new(),
            serialize: route.serialize,
            dedup: None,
            aggregate: route.aggregate.as_ref().map(|(m, _)| *m),
        };
        match route.condition.matches(input) {
            Ok(true) => plan.matched = true,
            Ok(false) => return plan,
            Err(e) => {
                tracing::warn!(route = %route.name, event_id, error = %e, "route condition failed; counted as no match");
                plan.note = Some(format!("condition failed: {e}"));
                return plan;
            }
        }
        if !route.dedup_props.is_empty() {
            let json = serde_json::to_value(input).unwrap_or_default();
            let key = dedup_key(&json, &route.dedup_props);
            if key.is_empty() {
                // Postee drops such an event (empty key); sending it is the safer choice.
                tracing::warn!(route = %route.name, event_id, "unique-message-props found no value in the event; sent without dedup");
            } else {
                plan.dedup = Some((format!("{}\u{0}{key}", route.name), route.dedup_ttl));
            }
        }
        match route.template.render(input, &self.aqua_server) {
            Ok(content) => {
                plan.content = Some(content);
                plan.actions = route.actions.clone();
            }
            Err(e) => {
                tracing::warn!(route = %route.name, event_id, template = %route.template.name, error = %e, "template failed; nothing sent for this route");
                plan.note = Some(e.to_string());
            }
        }
        plan
    }

    /// Renders a route's aggregation batch with its aggregation package. The input is the
    /// array of items Postee builds (spec §4.9), without Postee's leading `null`s.
    pub fn render_aggregate(&self, route: &str, items: &[AggItem]) -> Result<Rendered, String> {
        let Some((_, template)) = self.route(route).and_then(|r| r.aggregate.as_ref()) else {
            return Err(format!("route {route} does not aggregate (any more)"));
        };
        let contents: Vec<Rendered> = items.iter().map(|i| i.content.clone()).collect();
        template.aggregate(&contents).map_err(|e| e.to_string())
    }

    /// Routes that aggregate over a time window.
    pub fn window_routes(&self) -> Vec<WindowRoute> {
        self.routes
            .iter()
            .filter_map(|r| match r.aggregate {
                Some((Aggregate::Window(ms), _)) => Some(WindowRoute {
                    route: r.name.clone(),
                    window_ms: ms,
                    actions: r.actions.clone(),
                    serialize: r.serialize,
                }),
                _ => None,
            })
            .collect()
    }

    /// Plans one journaled event over every route (or its tenant route).
    pub fn plan_event(&self, id: &str, entry: &JournalEntry, input: &Value) -> EventPlan {
        let routes = self
            .routes
            .iter()
            .filter(|r| entry.route.as_deref().is_none_or(|only| only == r.name))
            .filter(|r| !r.actions.is_empty())
            .map(|r| self.plan_route(r, id, input))
            .collect();
        EventPlan {
            id: id.to_string(),
            entry: entry.clone(),
            routes,
        }
    }
}
