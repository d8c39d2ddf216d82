//! Command line: Postee's flags and environment variables (spec §1.1, §1.2), plus the
//! `check` and `render` subcommands Postee lacks.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub const DEFAULT_CFG: &str = "/config/cfg.yaml";
/// The HTTP listen address when neither `--url` nor the env variables say otherwise.
pub const DEFAULT_HTTP: &str = "0.0.0.0:8082";

#[derive(Debug, Parser)]
#[command(
    name = "postee",
    version,
    about = "Security alert router compatible with Postee",
    long_about = "Receives events (Trivy, trivy-operator, Tracee, Aqua, any JSON) on a webhook, \
                  routes them with Rego rules, renders them with Rego templates and delivers \
                  them to actions. Without a subcommand it runs the server."
)]
pub struct Cli {
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a config without starting anything; prints every problem with its place.
    Check(CheckArgs),
    /// Show what a route or a template makes of an event, without sending anything.
    Render(RenderArgs),
    /// Run a folder of template test cases (input events and expected outputs); prints a
    /// diff for every mismatch and exits 1 if any case fails. See docs/templates.md.
    Test(TestArgs),
    /// List or replay dead letters (deliveries that failed for good). Works on the store
    /// file while the service is stopped; while it runs, use its /dlq endpoints.
    Dlq(DlqArgs),
    /// Probe a running postee's `/healthz` (for container health checks: the image has no
    /// curl or wget). Exit status 0 when it answers 200, else 1 with the reason.
    Healthcheck(HealthcheckArgs),
}

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// URL to probe. Default: `/healthz` on the HTTP listen address (`--url` default,
    /// overridden by AQUAALERT_URL, then POSTEE_HTTP, as for the service), with a wildcard
    /// host (`0.0.0.0`, `::`, empty) replaced by loopback.
    #[arg(long)]
    pub url: Option<String>,
    /// Seconds to wait for the whole answer.
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    pub command: DlqCommand,
    /// Config file: replayed deliveries must name an action it still has.
    #[arg(long, global = true)]
    pub cfgfile: Option<PathBuf>,
    /// Data directory (as for the service); the store is PATH_TO_DB or <data dir>/webhooks.db.
    #[arg(long, env = "POSTEE_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Queue dead letters again with a fresh attempt count.
    Replay {
        /// Dead letter ids (as `list` shows them).
        ids: Vec<String>,
        /// Replay every dead letter.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// HTTP listen address (env AQUAALERT_URL, then POSTEE_HTTP, override it).
    #[arg(long, default_value = DEFAULT_HTTP)]
    pub url: String,
    /// HTTPS listen address; `off` disables HTTPS (env AQUAALERT_TLS, then POSTEE_HTTPS).
    #[arg(long, default_value = "0.0.0.0:8445")]
    pub tls: String,
    /// Config file (env AQUAALERT_CFG, then POSTEE_CFG, override it).
    #[arg(long, default_value = DEFAULT_CFG)]
    pub cfgfile: PathBuf,
    /// Treat config warnings (unknown keys, ...) as errors.
    #[arg(long)]
    pub strict: bool,
    /// Directory for generated certificates and state (default: directory of PATH_TO_DB,
    /// else $XDG_DATA_HOME/postee or ~/.local/share/postee).
    #[arg(long, env = "POSTEE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "POSTEE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "POSTEE_MAX_BODY_BYTES", default_value_t = crate::intake::DEFAULT_BODY_LIMIT)]
    pub max_body_bytes: usize,
    /// Seconds to finish in-flight deliveries after SIGTERM/SIGINT.
    #[arg(long, default_value_t = 30)]
    pub shutdown_timeout: u64,
    /// Run as controller (Postee flag; not supported yet).
    #[arg(long)]
    pub controller_mode: bool,
    /// NATS URL of the controller (Postee flag; not supported yet).
    #[arg(long, default_value = "")]
    pub controller_url: String,
    #[arg(long, default_value = "", hide = true)]
    pub controller_ca_root: String,
    #[arg(long, default_value = "", hide = true)]
    pub controller_tls_cert: String,
    #[arg(long, default_value = "", hide = true)]
    pub controller_tls_key: String,
    #[arg(long, default_value = "", hide = true)]
    pub controller_seed_file: String,
    /// Run as the named runner (Postee flag; not supported yet).
    #[arg(long, default_value = "")]
    pub runner_name: String,
    #[arg(long, default_value = "", hide = true)]
    pub runner_ca_root: String,
    #[arg(long, default_value = "", hide = true)]
    pub runner_tls_cert: String,
    #[arg(long, default_value = "", hide = true)]
    pub runner_tls_key: String,
    #[arg(long, default_value = "", hide = true)]
    pub runner_seed_file: String,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Config file to check (default: POSTEE_CFG, AQUAALERT_CFG, then /config/cfg.yaml).
    #[arg(long)]
    pub cfgfile: Option<PathBuf>,
    /// Treat warnings as errors.
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Config file (with --route).
    #[arg(long)]
    pub cfgfile: Option<PathBuf>,
    /// Route to try the event on.
    #[arg(long, requires = "cfgfile", conflicts_with = "package")]
    pub route: Option<String>,
    /// Template package to evaluate (bundled, or found in --rego-templates).
    #[arg(long)]
    pub package: Option<String>,
    /// One of Postee's Go layouts instead of a package: html, slack or jira.
    #[arg(long, conflicts_with_all = ["package", "route"])]
    pub legacy: Option<String>,
    /// Directory of user templates (default: REGO_TEMPLATES_PATH, then ./rego-templates).
    #[arg(long)]
    pub rego_templates: Option<PathBuf>,
    /// Aqua console URL to inject as input.postee.AquaServer (with --package or --legacy).
    #[arg(long, default_value = "")]
    pub aqua_server: String,
    /// Evaluate the event exactly as given, without the injected `postee` key (as Postee's
    /// own golden tests do; with --package).
    #[arg(long)]
    pub no_inject: bool,
    /// The event, a JSON file (`-` for standard input).
    #[arg(long, required_unless_present = "aggregate")]
    pub input: Option<PathBuf>,
    /// Render these events (JSON files, in the order they arrive) and then their aggregation,
    /// as a route with an aggregate plugin would send it.
    #[arg(long, num_args = 1.., conflicts_with = "input")]
    pub aggregate: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Folder of cases: every directory under it that has a `case.yaml` is a case.
    pub dir: PathBuf,
    /// Write the actual outputs into the `expected.*` files instead of comparing (review
    /// the changes with `git diff` before committing them).
    #[arg(long)]
    pub update: bool,
    /// Run only the cases whose name contains this text.
    #[arg(long)]
    pub filter: Option<String>,
}

/// Postee's precedence: the flag, then `AQUAALERT_*`, then `POSTEE_*` (the last set wins).
pub fn env_override(flag: &str, legacy: &str, current: &str) -> String {
    let mut v = flag.to_string();
    for name in [legacy, current] {
        if let Ok(e) = std::env::var(name)
            && !e.is_empty()
        {
            v = e;
        }
    }
    v
}

/// The config path for subcommands: an explicit flag wins, then the env variables.
pub fn cfgfile_for_subcommand(flag: Option<PathBuf>) -> PathBuf {
    flag.unwrap_or_else(|| PathBuf::from(env_override(DEFAULT_CFG, "AQUAALERT_CFG", "POSTEE_CFG")))
}
