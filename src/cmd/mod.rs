//! The subcommands, as siblings: the service (`serve`), `check`, `render`, `test`, `dlq`,
//! `healthcheck`; and what they share: where the data lives, and loading a config into a runnable app.

pub mod check;
pub mod dlq;
pub mod healthcheck;
pub mod render;
pub mod serve;
pub mod test;

use std::path::PathBuf;

use crate::app::{self, App, Paths};
use crate::cli::cfgfile_for_subcommand;
use crate::config::{Config, Problems};

/// The data directory: `--data-dir`/`POSTEE_DATA_DIR`, else the directory of `PATH_TO_DB`,
/// else `$XDG_DATA_HOME/postee`, `~/.local/share/postee`, or `./postee-data`.
pub fn data_dir(flag: Option<PathBuf>) -> PathBuf {
    if let Some(d) = flag {
        return d;
    }
    if let Ok(db) = std::env::var("PATH_TO_DB")
        && !db.is_empty()
        && let Some(parent) = PathBuf::from(db).parent()
        && !parent.as_os_str().is_empty()
    {
        return parent.to_path_buf();
    }
    if let Ok(x) = std::env::var("XDG_DATA_HOME")
        && !x.is_empty()
    {
        return PathBuf::from(x).join("postee");
    }
    if let Ok(h) = std::env::var("HOME")
        && !h.is_empty()
    {
        return PathBuf::from(h).join(".local/share/postee");
    }
    PathBuf::from("postee-data")
}

/// The store file: `PATH_TO_DB` (Postee's variable), else `webhooks.db` in the data directory.
pub fn db_path(data_dir_flag: Option<PathBuf>) -> PathBuf {
    match std::env::var("PATH_TO_DB") {
        Ok(p) if !p.is_empty() => PathBuf::from(p),
        _ => data_dir(data_dir_flag).join("webhooks.db"),
    }
}

/// Builds the runnable app of a loaded config (templates and filters from the environment's
/// directories).
pub async fn build_app(cfg: &Config, strict: bool, problems: &mut Problems) -> Option<App> {
    app::build(cfg, &Paths::from_env(), strict, problems).await
}

/// Loads a config (it must load without errors; warnings go to standard error).
pub async fn load_app(cfgfile: Option<PathBuf>) -> Result<App, String> {
    let path = cfgfile_for_subcommand(cfgfile);
    let (cfg, mut problems) = crate::actions::load_config(&path);
    let app = match &cfg {
        Some(c) => build_app(c, false, &mut problems).await,
        None => None,
    };
    for w in problems.warnings() {
        eprintln!("{w}");
    }
    app.ok_or_else(|| format!("the config {} has problems:\n{problems}", path.display()))
}
