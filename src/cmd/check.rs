//! `postee check`: validates a config the way the service loads it, and prints every problem.

use super::build_app;
use crate::cli::{CheckArgs, cfgfile_for_subcommand};

/// Validates a config (parse, types, references, Rego compile, url templates) and prints
/// every problem. Exit status 1 on any error (or any warning with `--strict`).
pub async fn check(args: CheckArgs) -> i32 {
    let path = cfgfile_for_subcommand(args.cfgfile);
    let (cfg, mut problems) = crate::actions::load_config(&path);
    let app = match &cfg {
        Some(c) => build_app(c, args.strict, &mut problems).await,
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
