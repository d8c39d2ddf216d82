//! Builds the runtime from a validated config (routes, templates, actions, all compiled once)
//! and runs the pipeline for one event: conditions → render once per route → actions.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::actions::{self, Action, BuildContext};
use crate::config::{Config, Problems, RetryPolicy, problems::closest};
use crate::routing::{Aggregate, Condition, Route};
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

/// A built action with its delivery settings.
#[derive(Clone)]
pub struct BuiltAction {
    pub action: Arc<dyn Action>,
    pub retry: RetryPolicy,
    /// The most deliveries in flight at once: the ceiling of the adaptive limit.
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
#[allow(
    clippy::expect_used,
    reason = "building fails only without a TLS provider, which main installs first"
)]
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
    let actions = build_actions(cfg, &ctx, problems);
    let registry = match Registry::new(&paths.templates_dir) {
        Ok(r) => Some(r),
        Err(errs) => {
            for e in errs {
                let path = format!("rego-templates ({})", paths.templates_dir.display());
                problems.error(path, e);
            }
            None
        }
    };
    let templates = build_templates(cfg, registry.as_ref(), &ctx, problems).await;
    let known = Known {
        cfg,
        actions: &actions,
        templates: &templates,
        registry: registry.as_ref(),
        filters_dir: &paths.filters_dir,
    };
    let routes = cfg
        .routes
        .iter()
        .filter_map(|r| known.route(r, problems))
        .map(Arc::new)
        .collect();
    if strict || cfg.strict {
        problems.make_strict();
    }
    if problems.has_errors() {
        return None;
    }
    Some(App {
        routes,
        actions,
        aqua_server: cfg.aqua_server_url(),
    })
}

/// A route is active when it names at least one enabled action; what only inactive routes
/// use (templates, plugins) cannot affect a delivery, so its problems are warnings.
fn is_active(cfg: &Config, r: &crate::config::RouteConfig) -> bool {
    r.actions
        .iter()
        .any(|name| cfg.actions.iter().any(|a| &a.name == name && a.enable))
}

/// Builds every enabled action.
fn build_actions(
    cfg: &Config,
    ctx: &BuildContext,
    problems: &mut Problems,
) -> BTreeMap<String, BuiltAction> {
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
        if let Some(action) = actions::build(a, ctx, problems) {
            built.insert(
                a.name.clone(),
                BuiltAction {
                    action,
                    retry: a.retry,
                    concurrency: a
                        .concurrency
                        .unwrap_or_else(|| actions::default_concurrency(&a.kind)),
                },
            );
        }
    }
    for name in built.keys() {
        let used = cfg.routes.iter().any(|r| r.actions.contains(name));
        if !used {
            problems.warn(
                format!("actions[{name}]"),
                "action is enabled but no route uses it",
            );
        }
    }
    built
}

/// Compiles every template; a failure is an error only when an active route uses it.
async fn build_templates(
    cfg: &Config,
    registry: Option<&Registry>,
    ctx: &BuildContext,
    problems: &mut Problems,
) -> BTreeMap<String, Arc<Template>> {
    let mut templates = BTreeMap::new();
    let Some(reg) = registry else {
        return templates;
    };
    for t in &cfg.templates {
        let used = cfg
            .routes
            .iter()
            .any(|r| r.template == t.name && is_active(cfg, r));
        match reg.build(t, &ctx.http).await {
            Ok(tpl) => {
                templates.insert(t.name.clone(), Arc::new(tpl));
            }
            Err(e) if used => problems.error(format!("templates[{}]", t.name), e),
            Err(e) => problems.warn(
                format!("templates[{}]", t.name),
                format!("{e} (no route with an enabled action uses this template, so this is not an error)"),
            ),
        }
    }
    templates
}

/// What routes are checked against.
struct Known<'a> {
    cfg: &'a Config,
    actions: &'a BTreeMap<String, BuiltAction>,
    templates: &'a BTreeMap<String, Arc<Template>>,
    registry: Option<&'a Registry>,
    filters_dir: &'a std::path::Path,
}

impl Known<'_> {
    /// Builds one route, reporting its problems. `None` when it cannot run.
    fn route(&self, r: &crate::config::RouteConfig, problems: &mut Problems) -> Option<Route> {
        let path = format!("routes[{}]", r.name);
        let condition = match Condition::build(r, self.filters_dir) {
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
        let actions = self.route_actions(r, &path, problems);
        let action_keys = self.route_action_keys(r, &actions, problems);
        let template = self.route_template(r, &path, problems);
        let aggregate = self.route_aggregate(r, &path, template.as_ref(), problems);
        Some(Route {
            name: r.name.clone(),
            condition: condition?,
            template: template?,
            actions,
            serialize: r.serialize_actions,
            dedup_props: r.plugins.unique_message_props.clone(),
            dedup_ttl: r.plugins.unique_message_timeout,
            aggregate,
            action_keys,
        })
    }

    /// The route's actions that need an upsert key, with its props (empty: the route's
    /// `unique-message-props`). One whose props are empty on a route without dedup props
    /// gets no key, with a warning.
    fn route_action_keys(
        &self,
        r: &crate::config::RouteConfig,
        actions: &[String],
        problems: &mut Problems,
    ) -> Vec<(String, Vec<String>)> {
        let mut out = Vec::new();
        for name in actions {
            let Some(props) = self.actions.get(name).and_then(|b| b.action.key_props()) else {
                continue;
            };
            if props.is_empty() && r.plugins.unique_message_props.is_empty() {
                problems.warn(
                    format!("actions[{name}].update-existing"),
                    format!(
                        "route `{}` has no `unique-message-props` and the action no `unique-props`: there is no key to find an existing issue by, so every message opens a new one",
                        r.name
                    ),
                );
                continue;
            }
            if props.is_empty() && r.plugins.unique_message_timeout == 0 {
                problems.warn(
                    format!("actions[{name}].update-existing"),
                    format!(
                        "uses the key of route `{}`, whose `unique-message-props` drop every repeat of a key for ever (no `unique-message-timeout`): nothing is left to update; set `unique-message-timeout` on the route or `unique-props` on the action",
                        r.name
                    ),
                );
            }
            if r.plugins.aggregate_message_number > 0 || r.plugins.aggregate_message_timeout > 0 {
                problems.warn(
                    format!("actions[{name}].update-existing"),
                    format!(
                        "route `{}` aggregates: an aggregated message has no single key, so it opens a new issue",
                        r.name
                    ),
                );
            }
            out.push((name.clone(), props.to_vec()));
        }
        out
    }

    /// The route's enabled actions, in list order.
    fn route_actions(
        &self,
        r: &crate::config::RouteConfig,
        path: &str,
        problems: &mut Problems,
    ) -> Vec<String> {
        let action_names: Vec<&str> = self.cfg.actions.iter().map(|a| a.name.as_str()).collect();
        let mut out = Vec::new();
        for name in &r.actions {
            match (
                self.actions.get(name),
                self.cfg.actions.iter().find(|a| &a.name == name),
            ) {
                (Some(_), _) => out.push(name.clone()),
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
        out
    }

    fn route_template(
        &self,
        r: &crate::config::RouteConfig,
        path: &str,
        problems: &mut Problems,
    ) -> Option<Arc<Template>> {
        if r.template.is_empty() {
            if !r.actions.is_empty() {
                problems.error(
                    format!("{path}.template"),
                    "route has actions but no `template`",
                );
            }
            return None;
        }
        let names: Vec<&str> = self.cfg.templates.iter().map(|t| t.name.as_str()).collect();
        match self.templates.get(&r.template) {
            Some(t) => Some(t.clone()),
            None if names.contains(&r.template.as_str()) => None, // its error is reported
            None => {
                let hint = closest(&r.template, &names)
                    .map(|c| format!("; did you mean `{c}`?"))
                    .unwrap_or_default();
                problems.error(
                    format!("{path}.template"),
                    format!("template `{}` is not defined{hint}", r.template),
                );
                None
            }
        }
    }

    fn route_aggregate(
        &self,
        r: &crate::config::RouteConfig,
        path: &str,
        template: Option<&Arc<Template>>,
        problems: &mut Problems,
    ) -> Option<(Aggregate, Arc<Template>)> {
        let p = &r.plugins;
        let mode = if p.aggregate_message_number > 0 {
            if p.aggregate_message_timeout > 0 {
                problems.warn(
                    format!("{path}.plugins.aggregate-message-timeout"),
                    "ignored: aggregate-message-number takes precedence (as in Postee)",
                );
            }
            Aggregate::Count(p.aggregate_message_number as usize)
        } else if p.aggregate_message_timeout > 0 {
            Aggregate::Window(p.aggregate_message_timeout * 1000)
        } else {
            return None;
        };
        let (t, reg) = (template?, self.registry?);
        match t.aggregation_template(reg) {
            Some(Ok(at)) => Some((mode, Arc::new(at))),
            Some(Err(e)) => {
                if is_active(self.cfg, r) {
                    problems.error(format!("{path}.plugins"), e);
                } else {
                    problems.warn(format!("{path}.plugins"), e);
                }
                None
            }
            None => {
                problems.warn(
                    format!("{path}.plugins"),
                    format!(
                        "template `{}` has no aggregation_pkg, so events are sent one by one (as in Postee)",
                        t.name
                    ),
                );
                None
            }
        }
    }
}

impl App {
    pub fn route(&self, name: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| r.name == name)
    }

    /// Routes that aggregate over a time window, with the window in ms.
    pub fn window_routes(&self) -> Vec<(Arc<Route>, u64)> {
        self.routes
            .iter()
            .filter_map(|r| match r.aggregate {
                Some((Aggregate::Window(ms), _)) => Some((r.clone(), ms)),
                _ => None,
            })
            .collect()
    }
}
