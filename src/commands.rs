//! `postee check` and `postee render`: the config and template developer loop.

use std::io::Read;
use std::path::{Path, PathBuf};

use regorus::Value;
use serde_json::json;

use crate::app::{self, Event, Paths};
use crate::cli::{CheckArgs, RenderArgs, cfgfile_for_subcommand};
use crate::config;
use crate::templates::Registry;

/// Validates a config (parse, types, references, Rego compile, url templates) and prints
/// every problem. Exit status 1 on any error (or any warning with `--strict`).
pub async fn check(args: CheckArgs) -> i32 {
    let path = cfgfile_for_subcommand(args.cfgfile);
    let (cfg, mut problems) = config::load_file(&path);
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

async fn render_inner(args: RenderArgs) -> Result<serde_json::Value, String> {
    let input = read_input(&args.input)?;
    if let Some(route) = args.route {
        return render_route(args.cfgfile, &route, input).await;
    }
    let Some(package) = args.package else {
        return Err("give --route (with --cfgfile) or --package".into());
    };
    let dir = args
        .rego_templates
        .unwrap_or_else(|| Paths::from_env().templates_dir);
    let registry = Registry::new(&dir).map_err(|e| e.join("\n"))?;
    let template = registry.package_template(&package, &package)?;
    let out = template
        .render(&input, &config::aqua_server_url(&args.aqua_server))
        .map_err(|e| e.to_string())?;
    let mut obj = serde_json::Map::new();
    obj.insert("title".into(), out.title.into());
    obj.insert("result".into(), out.description.into());
    if !out.url.is_empty() {
        obj.insert("url".into(), out.url.into());
    }
    if let Some(a) = out.aggregation_pkg {
        obj.insert("aggregation_pkg".into(), a.into());
    }
    for (k, v) in out.extra {
        obj.insert(k, v.into());
    }
    Ok(serde_json::Value::Object(obj))
}

async fn render_route(
    cfgfile: Option<PathBuf>,
    route: &str,
    input: Value,
) -> Result<serde_json::Value, String> {
    let path = cfgfile_for_subcommand(cfgfile);
    let (cfg, mut problems) = config::load_file(&path);
    let app = match &cfg {
        Some(c) => app::build(c, &Paths::from_env(), false, &mut problems).await,
        None => None,
    };
    for w in problems.warnings() {
        eprintln!("{w}");
    }
    let app =
        app.ok_or_else(|| format!("the config {} has problems:\n{problems}", path.display()))?;
    let r = app.route(route).ok_or_else(|| {
        let names: Vec<&str> = app.routes.iter().map(|r| r.name.as_str()).collect();
        format!("no route named {route:?} (routes: {})", names.join(", "))
    })?;
    let matched = r
        .condition
        .matches(&input)
        .map_err(|e| format!("route condition failed: {e}"))?;
    if !matched {
        return Ok(json!({ "route": route, "matched": false }));
    }
    let event = Event {
        id: "render".into(),
        received_at: std::time::SystemTime::now(),
        input,
    };
    let planned = app.plan(&event, Some(route));
    let Some(p) = planned.into_iter().next() else {
        // Matched but the template failed: say why.
        let err = r
            .template
            .render(&event.input, &app.aqua_server)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "the route has no enabled actions".into());
        return Err(err);
    };
    let actions: Vec<serde_json::Value> = r
        .actions
        .iter()
        .map(|a| json!({ "name": a.name(), "type": a.kind(), "would_send": a.preview(&p.message) }))
        .collect();
    Ok(json!({
        "route": route,
        "matched": true,
        "template": r.template.name,
        "message": p.message.content,
        "serialize_actions": r.serialize,
        "actions": actions,
    }))
}
