//! `cfg.yaml`: the Postee config schema, read strictly but kindly (spec §3).
//!
//! The YAML is read into a JSON tree (as Postee does), then walked by hand against the schema
//! below. Walking by hand (instead of serde derive) lets us do what Postee users need: keys
//! match case-insensitively, scalars coerce to strings, YAML 1.1 `yes/no` work as booleans,
//! unknown keys become warnings naming the closest valid key, and *every* problem is reported
//! at once with its place (`actions[my-slack].url`).
//!
//! The keys of each action type are declared by the action itself (`actions/<type>.rs`);
//! the reader gets them as a [`Schema`] (`actions::schema()`), so this module does not depend
//! on `actions`.

pub mod duration;
pub mod keys;
pub mod problems;
mod reader;
pub mod secret;

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

pub use keys::{FieldValue, Fields, KeySpec, Kind, KubeActions, Schema};
pub use problems::{Problem, Problems, Severity};
use reader::{Reader, item_path, type_name};
pub use secret::{Secret, SecretUrl};

/// A whole config file, parsed and type-checked (references are checked by `app::build`).
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Directory of the config file; relative paths in the config are not resolved against it
    /// (Postee resolves them against the working directory, and so do we).
    pub source: Option<PathBuf>,
    /// `aqua-server` as written.
    pub aqua_server: String,
    /// `max-db-size` in bytes; `None` is unlimited.
    pub max_db_size: Option<u64>,
    /// `db-verify-interval` in hours (0 means 1, as Postee).
    pub db_verify_interval: u64,
    /// `delete-old-data`: days of delivered history to keep (Postee parsed it and ignored it);
    /// 0 means the default, 7 days.
    pub delete_old_data: i64,
    /// `strict: true` turns every warning into an error.
    pub strict: bool,
    /// `api-key` (ours; also env `POSTEE_API_KEY`): protects the management endpoints.
    pub api_key: Option<Secret>,
    pub routes: Vec<RouteConfig>,
    pub templates: Vec<TemplateConfig>,
    pub rules: Vec<RuleConfig>,
    pub actions: Vec<ActionConfig>,
}

impl Config {
    /// The Aqua console base turned into Postee's `<server>/#/images/` form ("" stays "").
    pub fn aqua_server_url(&self) -> String {
        aqua_server_url(&self.aqua_server)
    }
}

pub fn aqua_server_url(raw: &str) -> String {
    if raw.is_empty() {
        return String::new();
    }
    let mut s = raw.to_string();
    if !s.ends_with('/') {
        s.push('/');
    }
    s.push_str("#/images/");
    s
}

#[derive(Debug, Clone, Default)]
pub struct RouteConfig {
    pub name: String,
    /// Rego expressions pasted into Postee's `allow { ... }` wrapper.
    pub input: String,
    /// Filter files under `REGO_FILTERS_PATH`; when given they replace `input`.
    pub input_files: Vec<String>,
    pub actions: Vec<String>,
    pub template: String,
    pub serialize_actions: bool,
    pub plugins: PluginsConfig,
}

#[derive(Debug, Clone, Default)]
pub struct PluginsConfig {
    pub aggregate_message_number: i64,
    /// Seconds; 0 is off.
    pub aggregate_message_timeout: u64,
    pub unique_message_props: Vec<String>,
    /// Seconds; 0 is never.
    pub unique_message_timeout: u64,
}

#[derive(Debug, Clone, Default)]
pub struct TemplateConfig {
    pub name: String,
    pub legacy_scan_renderer: Option<String>,
    pub rego_package: Option<String>,
    pub url: Option<String>,
    pub body: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct RuleConfig {
    pub name: String,
    pub id: String,
}

/// One action entry: common keys, plus the type's own keys, type-checked.
#[derive(Debug, Clone)]
pub struct ActionConfig {
    pub name: String,
    /// Lower-cased type (`serviceNow` → `servicenow`), as Postee matches it.
    pub kind: String,
    pub enable: bool,
    pub runs_on: Option<String>,
    /// `retry:` (ours): how failed deliveries are retried.
    pub retry: RetryPolicy,
    /// `concurrency:` (ours): the most deliveries of this action sent at the same time (the
    /// ceiling of its adaptive limit); `None`: the type's default (`actions::REGISTRY`).
    pub concurrency: Option<usize>,
    pub fields: Fields,
}

/// Retry policy of an action (`retry: {max-attempts, max-age, initial-delay, max-delay}`).
/// Transient failures are retried with exponential backoff and full jitter, honouring
/// `Retry-After`, until `max-attempts` attempts or `max-age` since the event; then the
/// delivery becomes a dead letter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub max_age: std::time::Duration,
    pub initial_delay: std::time::Duration,
    pub max_delay: std::time::Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 10,
            max_age: std::time::Duration::from_secs(3600),
            initial_delay: std::time::Duration::from_secs(10),
            max_delay: std::time::Duration::from_secs(15 * 60),
        }
    }
}

/// The valid values of `concurrency`. (Its default depends on the action type: the action
/// registry holds it.)
pub const CONCURRENCY_RANGE: std::ops::RangeInclusive<i64> = 1..=1024;
pub const RETRY_KEYS: &[&str] = &["max-attempts", "max-age", "initial-delay", "max-delay"];

/// Keys of the top-level section.
pub const GENERAL_KEYS: &[&str] = &[
    "name",
    "aqua-server",
    "max-db-size",
    "db-verify-interval",
    "delete-old-data",
    "strict",
    "api-key",
    "routes",
    "templates",
    "rules",
    "actions",
];
pub const ROUTE_KEYS: &[&str] = &[
    "name",
    "input",
    "input-files",
    "actions",
    "template",
    "serialize-actions",
    "plugins",
];
pub const PLUGIN_KEYS: &[&str] = &[
    "aggregate-message-number",
    "aggregate-message-timeout",
    "unique-message-props",
    "unique-message-timeout",
    // Internal fields of Postee's route struct, visible as JSON keys; Postee overwrites them.
    "aggregate-timeout-seconds",
    "unique-message-timeout-seconds",
];
pub const TEMPLATE_KEYS: &[&str] = &[
    "name",
    "legacy-scan-renderer",
    "rego-package",
    "url",
    "body",
];
pub const RULE_KEYS: &[&str] = &["name", "id"];
pub const ACTION_COMMON_KEYS: &[&str] =
    &["name", "type", "enable", "runs-on", "retry", "concurrency"];

/// Reads and parses a config file, actions against `schema`. `None` when the file cannot be
/// read or is not YAML.
pub fn load_file(path: &Path, schema: &Schema) -> (Option<Config>, Problems) {
    let mut problems = Problems::default();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            problems.error(
                "",
                format!("cannot read config file {}: {e}", path.display()),
            );
            return (None, problems);
        }
    };
    let mut cfg = parse(&text, schema, &mut problems);
    if let Some(c) = cfg.as_mut() {
        c.source = Some(path.to_path_buf());
    }
    (cfg, problems)
}

/// Parses config text, actions against `schema` (their types and declared keys). Type errors
/// and unknown keys go to `problems`; `None` only when the text is not a YAML mapping at all.
pub fn parse(text: &str, schema: &Schema, problems: &mut Problems) -> Option<Config> {
    if text.contains("- type: common") {
        problems.warn(
            "",
            "this looks like a Postee V1 config (`- type: common`), which is not supported; \
             see docs/configuration.md for the current format",
        );
    }
    let doc: Value = match yaml_serde::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            problems.error("", format!("invalid YAML: {e}"));
            return None;
        }
    };
    let top = match doc {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        other => {
            problems.error(
                "",
                format!(
                    "the config must be a mapping of settings, found {}",
                    type_name(&other)
                ),
            );
            return None;
        }
    };
    let mut r = Reader { problems, schema };
    let top = r.keys(&top, GENERAL_KEYS, "", "the top level");
    let mut cfg = Config {
        aqua_server: r
            .string(&top, "aqua-server", "aqua-server")
            .unwrap_or_default(),
        ..Config::default()
    };
    if let Some(s) = r.string(&top, "max-db-size", "max-db-size") {
        match duration::parse_size(&s) {
            Ok(v) => cfg.max_db_size = v,
            Err(e) => r.problems.error("max-db-size", e),
        }
    }
    cfg.db_verify_interval = match r.int(&top, "db-verify-interval", "db-verify-interval") {
        Some(n) if n < 0 => {
            r.problems
                .error("db-verify-interval", "must be a number of hours, 0 or more");
            1
        }
        Some(0) | None => 1,
        Some(n) => n as u64,
    };
    cfg.delete_old_data = r
        .int(&top, "delete-old-data", "delete-old-data")
        .unwrap_or(0);
    if cfg.delete_old_data < 0 {
        r.problems
            .error("delete-old-data", "must be a number of days, 0 or more");
    }
    cfg.strict = r.bool(&top, "strict", "strict").unwrap_or(false);
    if let Some(raw) = r.string(&top, "api-key", "") {
        let (secret, err) = secret::resolve(&raw);
        if let Some(e) = err {
            r.problems.error("api-key", e.to_string());
        }
        cfg.api_key = Some(secret);
    }

    for (i, item) in r.list_of_maps(&top, "routes").into_iter().enumerate() {
        cfg.routes.push(r.route(i, &item));
    }
    for (i, item) in r.list_of_maps(&top, "templates").into_iter().enumerate() {
        cfg.templates.push(r.template(i, &item));
    }
    for (i, item) in r.list_of_maps(&top, "rules").into_iter().enumerate() {
        let path = item_path("rules", i, &item);
        let m = r.keys(&item, RULE_KEYS, &path, "a rule");
        cfg.rules.push(RuleConfig {
            name: r.string(&m, "name", &path).unwrap_or_default(),
            id: r.string(&m, "id", &path).unwrap_or_default(),
        });
    }
    for (i, item) in r.list_of_maps(&top, "actions").into_iter().enumerate() {
        if let Some(a) = r.action(i, &item) {
            cfg.actions.push(a);
        }
    }
    check_unique_names(&cfg, r.problems);
    Some(cfg)
}

fn check_unique_names(cfg: &Config, problems: &mut Problems) {
    fn dups<'a>(names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for n in names {
            if !seen.insert(n) && !out.contains(&n) {
                out.push(n);
            }
        }
        out
    }
    for n in dups(cfg.routes.iter().map(|r| r.name.as_str())) {
        problems.error(format!("routes[{n}]"), "route name is used more than once");
    }
    for n in dups(cfg.templates.iter().map(|r| r.name.as_str())) {
        problems.error(
            format!("templates[{n}]"),
            "template name is used more than once",
        );
    }
    for n in dups(cfg.actions.iter().map(|r| r.name.as_str())) {
        problems.error(
            format!("actions[{n}]"),
            "action name is used more than once",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A few action types, declared here so the reader is tested on its own (the real
    /// declarations live with the actions).
    const URL_TIMEOUT: &[KeySpec] = &[
        KeySpec::known("url", Kind::Str),
        KeySpec::known("timeout", Kind::Str),
    ];
    const SLACK: &[KeySpec] = &[KeySpec::known("url", Kind::Secret)];
    const EMAIL: &[KeySpec] = &[
        KeySpec::known("port", Kind::Int),
        KeySpec::known("recipients", Kind::StrList),
        KeySpec::known("password", Kind::Secret),
    ];

    fn schema() -> Schema {
        Schema::new([
            ("stdout", &[][..]),
            ("webhook", URL_TIMEOUT),
            ("slack", SLACK),
            ("email", EMAIL),
        ])
    }

    fn parse(text: &str, problems: &mut Problems) -> Option<Config> {
        super::parse(text, &schema(), problems)
    }

    fn parse_ok(text: &str) -> (Config, Problems) {
        let mut p = Problems::default();
        let c = parse(text, &mut p).expect("parses");
        (c, p)
    }

    #[test]
    fn keys_match_case_insensitively_and_scalars_coerce() {
        let (c, p) = parse_ok(
            "Aqua-Server: https://aqua\nactions:\n- name: w\n  TYPE: Webhook\n  Enable: yes\n  URL: http://x\n  timeout: 10\n",
        );
        assert!(!p.has_errors(), "{p}");
        assert_eq!(c.aqua_server, "https://aqua");
        let a = &c.actions[0];
        assert_eq!(a.kind, "webhook");
        assert!(a.enable);
        assert_eq!(a.fields.str("url"), Some("http://x"));
        assert_eq!(a.fields.str("timeout"), Some("10"));
    }

    #[test]
    fn secret_keys_are_resolved_and_kept_wrapped() {
        let (c, p) = parse_ok(
            "actions:\n- name: s\n  type: slack\n  url: https://hooks.example/T0/key-1\n- name: e\n  type: email\n  password: env:POSTEE_TEST_NEVER_SET\n",
        );
        let s = &c.actions[0].fields;
        assert_eq!(
            s.secret("url").map(Secret::expose),
            Some("https://hooks.example/T0/key-1")
        );
        assert!(!format!("{:?}", c.actions).contains("key-1"));
        let e: Vec<String> = p.errors().map(|e| e.to_string()).collect();
        assert_eq!(
            e,
            ["error: actions[e].password: environment variable POSTEE_TEST_NEVER_SET is not set"]
        );
    }

    #[test]
    fn unknown_keys_warn_with_the_closest_valid_key() {
        let (_, p) = parse_ok("routes:\n- name: r\n  templete: t\n  action: []\n");
        let msgs: Vec<String> = p.warnings().map(|w| w.to_string()).collect();
        assert!(
            msgs.iter()
                .any(|m| m.contains("routes[r].templete") && m.contains("did you mean `template`")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.contains("routes[r].action") && m.contains("`actions`")),
            "{msgs:?}"
        );
        assert!(!p.has_errors());
    }

    #[test]
    fn wrong_types_are_errors_with_their_path() {
        let mut p = Problems::default();
        parse(
            "actions:\n- name: e\n  type: email\n  port: [1]\n  recipients: a@b.c\nroutes:\n- name: r\n  serialize-actions: maybe\n",
            &mut p,
        );
        let errs: Vec<String> = p.errors().map(|e| e.to_string()).collect();
        assert!(
            errs.iter()
                .any(|e| e.contains("actions[e].port") && e.contains("whole number")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("actions[e].recipients") && e.contains("expected a list")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("routes[r].serialize-actions")),
            "{errs:?}"
        );
    }

    #[test]
    fn keys_of_another_action_type_are_reported_as_unused() {
        let (_, p) = parse_ok("actions:\n- name: s\n  type: stdout\n  url: http://x\n");
        let w: Vec<String> = p.warnings().map(|w| w.to_string()).collect();
        assert!(
            w.iter()
                .any(|m| m.contains("not used by action type `stdout`")),
            "{w:?}"
        );
    }

    #[test]
    fn unknown_action_type_suggests_a_valid_one() {
        let mut p = Problems::default();
        parse(
            "actions:\n- name: s\n  type: slak\n  enable: true\n",
            &mut p,
        );
        let e: Vec<String> = p.errors().map(|w| w.to_string()).collect();
        assert!(
            e.iter()
                .any(|m| m.contains("unknown action type `slak`") && m.contains("`slack`")),
            "{e:?}"
        );
    }

    #[test]
    fn documented_but_ignored_keys_are_accepted() {
        let (c, p) = parse_ok(
            "name: tenant\ndelete-old-data: 10\nmax-db-size: 1000MB\ndb-verify-interval: 0\n",
        );
        assert!(p.items.is_empty(), "{p}");
        assert_eq!(c.max_db_size, Some(1000 << 20));
        assert_eq!(c.db_verify_interval, 1);
    }

    #[test]
    fn plugins_parse_with_postee_duration_syntax() {
        let (c, p) = parse_ok(
            "routes:\n- name: r\n  plugins:\n    aggregate-message-timeout: 1h\n    unique-message-props: [digest, image]\n    unique-message-timeout: 2d\n    Policy-Show-All: true\n",
        );
        assert!(!p.has_errors());
        assert_eq!(c.routes[0].plugins.aggregate_message_timeout, 3600);
        assert_eq!(c.routes[0].plugins.unique_message_timeout, 172800);
        assert_eq!(
            c.routes[0].plugins.unique_message_props,
            vec!["digest", "image"]
        );
        assert_eq!(p.warnings().count(), 1);
    }

    #[test]
    fn duplicate_names_and_invalid_yaml_are_errors() {
        let mut p = Problems::default();
        parse("routes:\n- name: r\n- name: r\n", &mut p);
        assert!(p.errors().any(|e| e.to_string().contains("more than once")));
        let mut p = Problems::default();
        assert!(parse("routes: [\n", &mut p).is_none());
        assert!(p.errors().any(|e| e.message.contains("invalid YAML")));
    }

    #[test]
    fn retry_and_concurrency_parse_with_defaults() {
        let (c, p) = parse_ok(
            "actions:\n- {name: a, type: stdout, retry: {max-attempts: 3, initial-delay: 50ms, max-delay: 1s}, concurrency: 2}\n- {name: b, type: stdout}\n",
        );
        assert!(!p.has_errors(), "{p}");
        let r = c.actions[0].retry;
        assert_eq!(r.max_attempts, 3);
        assert_eq!(r.initial_delay, std::time::Duration::from_millis(50));
        assert_eq!(r.max_age, RetryPolicy::default().max_age);
        assert_eq!(c.actions[0].concurrency, Some(2));
        assert_eq!(c.actions[1].concurrency, None);
        assert_eq!(c.actions[1].retry, RetryPolicy::default());
        let mut p = Problems::default();
        parse(
            "actions:\n- {name: a, type: stdout, retry: {max-attempts: 0, max-age: soon}}\n",
            &mut p,
        );
        let e: Vec<String> = p.errors().map(|e| e.to_string()).collect();
        assert!(
            e.iter()
                .any(|m| m.contains("actions[a].retry.max-attempts")),
            "{e:?}"
        );
        assert!(
            e.iter().any(|m| m.contains("actions[a].retry.max-age")),
            "{e:?}"
        );
    }

    #[test]
    fn aqua_server_gets_postee_images_suffix() {
        assert_eq!(aqua_server_url(""), "");
        assert_eq!(aqua_server_url("https://a.b"), "https://a.b/#/images/");
        assert_eq!(aqua_server_url("https://a.b/"), "https://a.b/#/images/");
    }
}
