//! `postee dlq list|replay`: dead letters while the service is stopped.

use std::path::{Path, PathBuf};

use crate::cli::{DlqArgs, DlqCommand, cfgfile_for_subcommand};
use crate::store::Store;

/// `postee dlq list|replay`.
pub fn dlq(args: DlqArgs) -> i32 {
    let path = super::db_path(args.data_dir.clone());
    if !path.exists() {
        eprintln!(
            "error: no store at {} (set PATH_TO_DB or --data-dir as for the service)",
            path.display()
        );
        return 1;
    }
    let store = match Store::open(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    match args.command {
        DlqCommand::List { json } => list(&store, &path, json),
        DlqCommand::Replay { ids, all } => replay(&store, ids, all, args.cfgfile),
    }
}

/// `postee dlq list [--json]`.
fn list(store: &Store, path: &Path, json: bool) -> i32 {
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
                d.delivery.id, d.delivery.route, d.delivery.action, d.delivery.attempts, err
            );
        }
        println!("{} dead letters", list.len());
    }
    0
}

/// `postee dlq replay <id>...|--all`: refuses to queue deliveries for actions the config no
/// longer enables.
fn replay(store: &Store, ids: Vec<String>, all: bool, cfgfile: Option<PathBuf>) -> i32 {
    if ids.is_empty() && !all {
        eprintln!("error: name dead letter ids, or --all");
        return 2;
    }
    let cfg_path = cfgfile_for_subcommand(cfgfile);
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
    let r = match store.replay(wanted, &can_send, crate::event::now_ms()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
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
