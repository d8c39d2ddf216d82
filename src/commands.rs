//! `postee check` and `postee render`: the config and template developer loop.

use std::io::Read;
use std::path::{Path, PathBuf};

use regorus::Value;
use serde_json::json;

use crate::actions::Message;
use crate::app::{self, Paths};
use crate::cli::{CheckArgs, DlqArgs, DlqCommand, RenderArgs, cfgfile_for_subcommand};
use crate::config;
use crate::templates::{Registry, Rendered};

/// Validates a config (parse, types, references, Rego compile, url templates) and prints
/// every problem. Exit status 1 on any error (or any warning with `--strict`).
pub async fn check(args: CheckArgs) -> i32 {
    let path = cfgfile_for_subcommand(args.cfgfile);
    let (cfg, mut problems) = crate::actions::load_config(&path);
    let app = match &cfg {
        Some(c) => app::build(c, &Paths::from_env(), args.strict, &mut problems).await,
        None => None,
    };
    print!("{problems}");
    match (cfg, app) {
        (Some(cfg), Some(app)) => {
            let enabled = cfg.actions.iter().filter(|a| a.enable).count();
            println!(
                "{}: OK ({} routes, {} templates, {} actions of which {} enabled; {} warnings)",
                path.display(),
                app.routes.len(),
                cfg.templates.len(),
                cfg.actions.len(),
                enabled,
                problems.warnings().count()
            );
            0
        }
        _ => {
            println!(
                "{}: {} errors, {} warnings",
                path.display(),
                problems.errors().count(),
                problems.warnings().count()
            );
            1
        }
    }
}

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
    crate::intake::parse_event(text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
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

/// Loads a config (it must load without errors; warnings go to standard error).
async fn load_app(cfgfile: Option<PathBuf>) -> Result<app::App, String> {
    let path = cfgfile_for_subcommand(cfgfile);
    let (cfg, mut problems) = crate::actions::load_config(&path);
    let app = match &cfg {
        Some(c) => app::build(c, &Paths::from_env(), false, &mut problems).await,
        None => None,
    };
    for w in problems.warnings() {
        eprintln!("{w}");
    }
    app.ok_or_else(|| format!("the config {} has problems:\n{problems}", path.display()))
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
    let plan = app.plan_route(r, "render", input);
    if !plan.matched {
        return Err(plan
            .note
            .unwrap_or_else(|| format!("route {route:?} does not match the event")));
    }
    plan.content.ok_or_else(|| {
        plan.note
            .unwrap_or_else(|| "the route has no enabled actions".into())
    })
}

fn find_route<'a>(
    app: &'a app::App,
    route: &str,
) -> Result<&'a std::sync::Arc<app::Route>, String> {
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
    let plan = app.plan_route(r, "render", &input);
    if !plan.matched {
        return match plan.note {
            Some(note) => Err(note),
            None => Ok(json!({ "route": route, "matched": false })),
        };
    }
    let Some(content) = plan.content else {
        return Err(plan
            .note
            .unwrap_or_else(|| "the route has no enabled actions".into()));
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

/// `postee dlq list|replay`.
pub fn dlq(args: DlqArgs) -> i32 {
    let path = crate::serve::db_path(args.data_dir.clone());
    if !path.exists() {
        eprintln!(
            "error: no store at {} (set PATH_TO_DB or --data-dir as for the service)",
            path.display()
        );
        return 1;
    }
    let store = match crate::store::Store::open(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    match args.command {
        DlqCommand::List { json } => {
            let list = match store.dead_letters() {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("error: {e}");
                    return 1;
                }
            };
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&list).unwrap_or_default()
                );
            } else if list.is_empty() {
                println!("no dead letters in {}", path.display());
            } else {
                println!(
                    "{:<60} {:<16} {:<16} {:>8}  ERROR",
                    "ID", "ROUTE", "ACTION", "ATTEMPTS"
                );
                for d in &list {
                    let err: String = d.error.chars().take(120).collect();
                    println!(
                        "{:<60} {:<16} {:<16} {:>8}  {}",
                        d.delivery.id,
                        d.delivery.route,
                        d.delivery.action,
                        d.delivery.attempts,
                        err
                    );
                }
                println!("{} dead letters", list.len());
            }
            0
        }
        DlqCommand::Replay { ids, all } => {
            if ids.is_empty() && !all {
                eprintln!("error: name dead letter ids, or --all");
                return 2;
            }
            // Refuse to queue deliveries for actions the config no longer has.
            let cfg_path = cfgfile_for_subcommand(args.cfgfile);
            let known: Option<Vec<String>> = match crate::actions::load_config(&cfg_path) {
                (Some(c), _) => Some(
                    c.actions
                        .iter()
                        .filter(|a| a.enable)
                        .map(|a| a.name.clone())
                        .collect(),
                ),
                _ => None,
            };
            let wanted = (!all).then_some(ids.as_slice());
            let can_send = |a: &str| known.as_ref().is_none_or(|k| k.iter().any(|n| n == a));
            match store.replay(wanted, &can_send) {
                Ok(r) => {
                    for d in &r.skipped {
                        eprintln!(
                            "skipped {}: action `{}` is not enabled in {}",
                            d.delivery.id,
                            d.delivery.action,
                            cfg_path.display()
                        );
                    }
                    for id in &r.unknown {
                        eprintln!("no dead letter {id}");
                    }
                    println!(
                        "replayed {} dead letters; they are sent at the next start",
                        r.replayed.len()
                    );
                    if known.is_none() {
                        eprintln!(
                            "note: {} could not be read, so actions were not checked",
                            cfg_path.display()
                        );
                    }
                    // Non-zero when anything asked for was skipped or not found.
                    if r.skipped.is_empty() && r.unknown.is_empty() {
                        0
                    } else {
                        1
                    }
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    1
                }
            }
        }
    }
}
