//! `postee render`: what a template, a legacy layout or a route of a config makes of events,
//! and what each action would send, without sending it.

use std::io::Read;
use std::path::{Path, PathBuf};

use regorus::Value;
use serde_json::json;

use super::load_app;
use crate::app::{self, Paths};
use crate::cli::RenderArgs;
use crate::config;
use crate::message::{Message, Rendered};
use crate::routing::Verdict;
use crate::routing::plan::plan_route;
use crate::templates::Registry;

fn read_input(path: &Path) -> Result<Value, String> {
    let text = if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        s
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?
    };
    crate::event::parse(text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
}

fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

pub async fn render(args: RenderArgs) -> i32 {
    match render_inner(args).await {
        Ok(v) => {
            print_json(&v);
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// What renders the events: a template package, a legacy layout or a route of a config.
#[derive(Debug, Clone)]
pub enum Subject {
    Package(String),
    Legacy(String),
    Route {
        cfgfile: Option<PathBuf>,
        route: String,
    },
}

/// Renders events with a package or legacy layout: each one alone, or (with `aggregate`) all
/// of them, in arrival order, through the template's aggregation.
pub async fn render_with_template(
    subject: &Subject,
    templates_dir: &Path,
    aqua_server: &str,
    inject: bool,
    inputs: &[Value],
    aggregate: bool,
) -> Result<Rendered, String> {
    let registry = Registry::new(templates_dir).map_err(|e| e.join("\n"))?;
    let template = match subject {
        Subject::Package(p) => registry.package_template(p, p)?,
        Subject::Legacy(l) => {
            let t = crate::config::TemplateConfig {
                name: format!("legacy-{l}"),
                legacy_scan_renderer: Some(l.clone()),
                ..Default::default()
            };
            registry.build(&t, &app::http_client()).await?
        }
        Subject::Route { .. } => return Err("a route is rendered with render_route".into()),
    };
    let server = config::aqua_server_url(aqua_server);
    let mut rendered = Vec::new();
    for input in inputs {
        let out = if inject {
            template.render(input, &server)
        } else {
            template.eval(input.clone())
        };
        rendered.push(out.map_err(|e| e.to_string())?);
    }
    if !aggregate {
        return rendered.pop().ok_or_else(|| "no input event".to_string());
    }
    let agg = template.aggregation_template(&registry).ok_or_else(|| {
        format!(
            "{} has no aggregation (it defines no aggregation_pkg)",
            template.describe()
        )
    })??;
    // Aggregation items are newest first, as a route queues them.
    rendered.reverse();
    agg.aggregate(&rendered).map_err(|e| e.to_string())
}

/// The content fields `render` prints for a template.
pub fn content_json(out: &Rendered) -> serde_json::Value {
    let mut obj = serde_json::Map::new();
    obj.insert("title".into(), out.title.clone().into());
    obj.insert("result".into(), out.description.clone().into());
    if !out.url.is_empty() {
        obj.insert("url".into(), out.url.clone().into());
    }
    if let Some(a) = &out.aggregation_pkg {
        obj.insert("aggregation_pkg".into(), a.clone().into());
    }
    for (k, v) in &out.extra {
        obj.insert(k.clone(), v.clone().into());
    }
    serde_json::Value::Object(obj)
}

async fn render_inner(args: RenderArgs) -> Result<serde_json::Value, String> {
    let aggregate = !args.aggregate.is_empty();
    let inputs: Vec<Value> = match &args.input {
        Some(p) => vec![read_input(p)?],
        None => args
            .aggregate
            .iter()
            .map(|p| read_input(p))
            .collect::<Result<_, _>>()?,
    };
    let subject = match (args.route, args.package, args.legacy) {
        (Some(route), _, _) => {
            if aggregate {
                let r = render_route_aggregate(args.cfgfile, &route, &inputs).await?;
                return Ok(content_json(&r));
            }
            return render_route(
                args.cfgfile,
                &route,
                inputs.into_iter().next().unwrap_or(Value::Undefined),
            )
            .await;
        }
        (None, Some(p), _) => Subject::Package(p),
        (None, None, Some(l)) => Subject::Legacy(l),
        (None, None, None) => {
            return Err("give --route (with --cfgfile), --package or --legacy".into());
        }
    };
    let dir = args
        .rego_templates
        .unwrap_or_else(|| Paths::from_env().templates_dir);
    let out = render_with_template(
        &subject,
        &dir,
        &args.aqua_server,
        !args.no_inject,
        &inputs,
        aggregate,
    )
    .await?;
    Ok(content_json(&out))
}

/// The content a route sends for one event (an error when it does not match).
pub async fn render_route_content(
    cfgfile: Option<PathBuf>,
    route: &str,
    input: &Value,
) -> Result<Rendered, String> {
    let app = load_app(cfgfile).await?;
    route_content(&app, route, input)
}

fn route_content(app: &app::App, route: &str, input: &Value) -> Result<Rendered, String> {
    let r = find_route(app, route)?;
    match plan_route(r, &app.aqua_server, "render", input).verdict {
        Verdict::Rendered(c) => Ok(c),
        Verdict::NoMatch => Err(format!("route {route:?} does not match the event")),
        Verdict::ConditionFailed(e) | Verdict::RenderFailed(e) => Err(e),
    }
}

fn find_route<'a>(
    app: &'a app::App,
    route: &str,
) -> Result<&'a std::sync::Arc<crate::routing::Route>, String> {
    app.route(route).ok_or_else(|| {
        let names: Vec<&str> = app.routes.iter().map(|r| r.name.as_str()).collect();
        format!("no route named {route:?} (routes: {})", names.join(", "))
    })
}

/// What a route with an aggregate plugin sends for these events (in arrival order).
pub async fn render_route_aggregate(
    cfgfile: Option<PathBuf>,
    route: &str,
    inputs: &[Value],
) -> Result<Rendered, String> {
    let app = load_app(cfgfile).await?;
    let r = find_route(&app, route)?;
    let Some((_, agg)) = &r.aggregate else {
        return Err(format!("route {route:?} has no aggregate plugin"));
    };
    let mut items = Vec::new();
    for input in inputs {
        items.push(route_content(&app, route, input)?);
    }
    items.reverse();
    agg.aggregate(&items).map_err(|e| e.to_string())
}

async fn render_route(
    cfgfile: Option<PathBuf>,
    route: &str,
    input: Value,
) -> Result<serde_json::Value, String> {
    let app = load_app(cfgfile).await?;
    let r = find_route(&app, route)?;
    let content = match plan_route(r, &app.aqua_server, "render", &input).verdict {
        Verdict::Rendered(c) => c,
        Verdict::NoMatch => return Ok(json!({ "route": route, "matched": false })),
        Verdict::ConditionFailed(e) | Verdict::RenderFailed(e) => return Err(e),
    };
    let msg = Message {
        event_id: "render".into(),
        route: route.to_string(),
        content,
    };
    let actions: Vec<serde_json::Value> = r
        .actions
        .iter()
        .filter_map(|name| app.actions.get(name))
        .map(|b| {
            let a = &b.action;
            json!({ "name": a.name(), "type": a.kind(), "would_send": a.preview(&msg) })
        })
        .collect();
    Ok(json!({
        "route": route,
        "matched": true,
        "template": r.template.name,
        "message": msg.content,
        "serialize_actions": r.serialize,
        "actions": actions,
    }))
}
