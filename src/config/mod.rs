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
pub mod secret;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

pub use keys::{FieldValue, Fields, KeySpec, Kind, Schema};
pub use problems::{Problem, Problems, Severity};
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
    /// `concurrency:` (ours): deliveries of this action sent at the same time.
    pub concurrency: usize,
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

/// Default `concurrency` of an action.
pub const DEFAULT_CONCURRENCY: usize = 8;
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

/// `routes[my-route]` when the item has a name, else `routes[3]`.
fn item_path(section: &str, index: usize, item: &Map<String, Value>) -> String {
    let name = item
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("name"))
        .and_then(|(_, v)| scalar_string(v));
    match name {
        Some(n) if !n.is_empty() => format!("{section}[{n}]"),
        _ => format!("{section}[{index}]"),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

struct Reader<'p> {
    problems: &'p mut Problems,
    schema: &'p Schema,
}

impl Reader<'_> {
    /// Normalises keys to their canonical (lower-case) spelling and reports unknown ones.
    fn keys(
        &mut self,
        m: &Map<String, Value>,
        known: &[&str],
        path: &str,
        what: &str,
    ) -> Map<String, Value> {
        let mut out = Map::new();
        for (k, v) in m {
            let lk = k.to_ascii_lowercase();
            if known.contains(&lk.as_str()) {
                if out.contains_key(&lk) {
                    self.problems.warn(
                        join(path, k),
                        format!("key `{lk}` is given more than once; the last one is used"),
                    );
                }
                out.insert(lk, v.clone());
            } else {
                self.unknown_key(path, k, known, what);
            }
        }
        out
    }

    fn unknown_key(&mut self, path: &str, key: &str, known: &[&str], what: &str) {
        let hint = match problems::closest(key, known) {
            Some(c) => format!("; did you mean `{c}`?"),
            None => String::new(),
        };
        self.problems.warn(
            join(path, key),
            format!("unknown key `{key}` in {what} (ignored){hint}"),
        );
    }

    fn string(&mut self, m: &Map<String, Value>, key: &str, path: &str) -> Option<String> {
        let v = m.get(key)?;
        if v.is_null() {
            return None;
        }
        match scalar_string(v) {
            Some(s) => Some(s),
            None => {
                self.problems.error(
                    join(path, key),
                    format!("expected a string, found {}", type_name(v)),
                );
                None
            }
        }
    }

    fn bool(&mut self, m: &Map<String, Value>, key: &str, path: &str) -> Option<bool> {
        let v = m.get(key)?;
        match v {
            Value::Null => None,
            Value::Bool(b) => Some(*b),
            // YAML 1.1 booleans, which Postee's YAML library accepts.
            Value::String(s) => match s.to_ascii_lowercase().as_str() {
                "true" | "yes" | "y" | "on" => Some(true),
                "false" | "no" | "n" | "off" => Some(false),
                _ => {
                    self.problems.error(
                        join(path, key),
                        format!("expected true or false, found {s:?}"),
                    );
                    None
                }
            },
            other => {
                self.problems.error(
                    join(path, key),
                    format!("expected true or false, found {}", type_name(other)),
                );
                None
            }
        }
    }

    fn int(&mut self, m: &Map<String, Value>, key: &str, path: &str) -> Option<i64> {
        let v = m.get(key)?;
        match v {
            Value::Null => None,
            Value::Number(n) if n.as_i64().is_some() => n.as_i64(),
            Value::String(s) if s.trim().parse::<i64>().is_ok() => s.trim().parse().ok(),
            other => {
                self.problems.error(
                    join(path, key),
                    format!("expected a whole number, found {}", describe(other)),
                );
                None
            }
        }
    }

    fn str_list(&mut self, m: &Map<String, Value>, key: &str, path: &str) -> Option<Vec<String>> {
        let v = m.get(key)?;
        match v {
            Value::Null => None,
            Value::Array(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match scalar_string(item) {
                        Some(s) => out.push(s),
                        None if item.is_null() => {}
                        None => self.problems.error(
                            format!("{}[{i}]", join(path, key)),
                            format!("expected a string, found {}", type_name(item)),
                        ),
                    }
                }
                Some(out)
            }
            other => {
                self.problems.error(
                    join(path, key),
                    format!(
                        "expected a list, found {} (write it as [{}])",
                        type_name(other),
                        scalar_string(other).unwrap_or_default()
                    ),
                );
                None
            }
        }
    }

    fn str_map(
        &mut self,
        m: &Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Option<BTreeMap<String, String>> {
        let v = m.get(key)?;
        match v {
            Value::Null => None,
            Value::Object(o) => {
                let mut out = BTreeMap::new();
                for (k, val) in o {
                    match scalar_string(val) {
                        Some(s) => {
                            out.insert(k.clone(), s);
                        }
                        None if val.is_null() => {
                            out.insert(k.clone(), String::new());
                        }
                        None => self.problems.error(
                            format!("{}.{k}", join(path, key)),
                            format!("expected a string, found {}", type_name(val)),
                        ),
                    }
                }
                Some(out)
            }
            other => {
                self.problems.error(
                    join(path, key),
                    format!("expected a mapping, found {}", type_name(other)),
                );
                None
            }
        }
    }

    fn str_list_map(
        &mut self,
        m: &Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Option<BTreeMap<String, Vec<String>>> {
        let v = m.get(key)?;
        match v {
            Value::Null => None,
            Value::Object(o) => {
                let mut out = BTreeMap::new();
                for (k, val) in o {
                    let p = format!("{}.{k}", join(path, key));
                    let vals = match val {
                        Value::Array(items) => items.iter().filter_map(scalar_string).collect(),
                        Value::Null => Vec::new(),
                        other => match scalar_string(other) {
                            Some(s) => vec![s],
                            None => {
                                self.problems.error(
                                    p,
                                    format!(
                                        "expected a list of strings, found {}",
                                        type_name(other)
                                    ),
                                );
                                continue;
                            }
                        },
                    };
                    out.insert(k.clone(), vals);
                }
                Some(out)
            }
            other => {
                self.problems.error(
                    join(path, key),
                    format!("expected a mapping, found {}", type_name(other)),
                );
                None
            }
        }
    }

    fn list_of_maps(&mut self, top: &Map<String, Value>, key: &str) -> Vec<Map<String, Value>> {
        match top.get(key) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::Object(m) => out.push(m.clone()),
                        other => self.problems.error(
                            format!("{key}[{i}]"),
                            format!("expected a mapping, found {}", describe(other)),
                        ),
                    }
                }
                out
            }
            Some(other) => {
                self.problems
                    .error(key, format!("expected a list, found {}", type_name(other)));
                Vec::new()
            }
        }
    }

    fn route(&mut self, index: usize, item: &Map<String, Value>) -> RouteConfig {
        let path = item_path("routes", index, item);
        let m = self.keys(item, ROUTE_KEYS, &path, "a route");
        let name = self.string(&m, "name", &path).unwrap_or_default();
        if name.is_empty() {
            self.problems.error(&path, "route has no `name`");
        }
        let mut route = RouteConfig {
            name,
            input: self.string(&m, "input", &path).unwrap_or_default(),
            input_files: self.str_list(&m, "input-files", &path).unwrap_or_default(),
            actions: self.str_list(&m, "actions", &path).unwrap_or_default(),
            template: self.string(&m, "template", &path).unwrap_or_default(),
            serialize_actions: self.bool(&m, "serialize-actions", &path).unwrap_or(false),
            plugins: PluginsConfig::default(),
        };
        route.input_files.retain(|f| !f.is_empty());
        match m.get("plugins") {
            None | Some(Value::Null) => {}
            Some(Value::Object(p)) => {
                let ppath = join(&path, "plugins");
                let p = self.keys(p, PLUGIN_KEYS, &ppath, "route plugins");
                let pl = &mut route.plugins;
                pl.aggregate_message_number = self
                    .int(&p, "aggregate-message-number", &ppath)
                    .unwrap_or(0);
                if pl.aggregate_message_number < 0 {
                    self.problems.error(
                        join(&ppath, "aggregate-message-number"),
                        "must be 0 or more",
                    );
                }
                pl.unique_message_props = self
                    .str_list(&p, "unique-message-props", &ppath)
                    .unwrap_or_default();
                for key in ["aggregate-message-timeout", "unique-message-timeout"] {
                    if let Some(s) = self.string(&p, key, &ppath) {
                        match duration::parse_plugin_timeout(&s) {
                            Ok(secs) if key == "aggregate-message-timeout" => {
                                pl.aggregate_message_timeout = secs
                            }
                            Ok(secs) => pl.unique_message_timeout = secs,
                            Err(e) => self.problems.error(join(&ppath, key), e),
                        }
                    }
                }
            }
            Some(other) => self.problems.error(
                join(&path, "plugins"),
                format!("expected a mapping, found {}", type_name(other)),
            ),
        }
        route
    }

    fn template(&mut self, index: usize, item: &Map<String, Value>) -> TemplateConfig {
        let path = item_path("templates", index, item);
        let m = self.keys(item, TEMPLATE_KEYS, &path, "a template");
        let name = self.string(&m, "name", &path).unwrap_or_default();
        if name.is_empty() {
            self.problems.error(&path, "template has no `name`");
        }
        let non_empty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
        TemplateConfig {
            name,
            legacy_scan_renderer: non_empty(self.string(&m, "legacy-scan-renderer", &path)),
            rego_package: non_empty(self.string(&m, "rego-package", &path)),
            url: non_empty(self.string(&m, "url", &path)),
            body: non_empty(self.string(&m, "body", &path)),
        }
    }

    fn action(&mut self, index: usize, item: &Map<String, Value>) -> Option<ActionConfig> {
        let path = item_path("actions", index, item);
        // Common keys first, then the type decides which other keys are valid.
        let mut common = Map::new();
        let mut rest = Map::new();
        for (k, v) in item {
            let lk = k.to_ascii_lowercase();
            if ACTION_COMMON_KEYS.contains(&lk.as_str()) {
                common.insert(lk, v.clone());
            } else {
                rest.insert(k.clone(), v.clone());
            }
        }
        let name = self.string(&common, "name", &path).unwrap_or_default();
        if name.is_empty() {
            self.problems.error(&path, "action has no `name`");
        }
        let raw_type = self.string(&common, "type", &path).unwrap_or_default();
        let kind = raw_type.to_ascii_lowercase();
        let enable = self.bool(&common, "enable", &path).unwrap_or(false);
        let runs_on = self
            .string(&common, "runs-on", &path)
            .filter(|s| !s.is_empty());
        let retry = self.retry(&common, &path);
        let concurrency = match self.int(&common, "concurrency", &path) {
            None => DEFAULT_CONCURRENCY,
            Some(n) if (1..=1024).contains(&n) => n as usize,
            Some(_) => {
                self.problems
                    .error(join(&path, "concurrency"), "must be between 1 and 1024");
                DEFAULT_CONCURRENCY
            }
        };
        let Some(specs) = self.schema.keys(&kind) else {
            let types = self.schema.type_names();
            let hint = match problems::closest(&kind, &types) {
                Some(c) => format!("; did you mean `{c}`?"),
                None => format!("; valid types: {}", types.join(", ")),
            };
            let msg = if kind.is_empty() {
                format!("action has no `type`{hint}")
            } else {
                format!("unknown action type `{raw_type}`{hint}")
            };
            // Postee skips such an action; an enabled one is a real mistake.
            if enable {
                self.problems.error(join(&path, "type"), msg);
            } else {
                self.problems.warn(join(&path, "type"), msg);
            }
            return None;
        };
        let own: Vec<&str> = specs.iter().map(|k| k.name).collect();
        let all = self.schema.all_keys();
        let mut m = Map::new();
        for (k, v) in &rest {
            let lk = k.to_ascii_lowercase();
            if own.contains(&lk.as_str()) {
                m.insert(lk, v.clone());
            } else if all.contains(&lk.as_str()) {
                self.problems.warn(
                    join(&path, k),
                    format!("key `{lk}` is not used by action type `{kind}` (ignored)"),
                );
            } else {
                let mut candidates = own.clone();
                candidates.extend_from_slice(ACTION_COMMON_KEYS);
                self.unknown_key(&path, k, &candidates, &format!("a `{kind}` action"));
            }
        }
        let mut fields = Fields::new(specs);
        for spec in specs {
            let key = spec.name;
            let value = match spec.kind {
                Kind::Str => self.string(&m, key, &path).map(FieldValue::Str),
                Kind::Expand | Kind::Secret => self.string(&m, key, &path).map(|raw| {
                    let (secret, err) = secret::resolve(&raw);
                    if let Some(err) = err {
                        let p = join(&path, key);
                        match err {
                            secret::SecretError::UnsetDollar(_) => {
                                self.problems.warn(p, err.to_string())
                            }
                            _ => self.problems.error(p, err.to_string()),
                        }
                    }
                    if spec.kind == Kind::Expand {
                        FieldValue::Str(secret.expose().to_string())
                    } else {
                        FieldValue::Secret(secret)
                    }
                }),
                Kind::Bool => self.bool(&m, key, &path).map(FieldValue::Bool),
                Kind::Int => self.int(&m, key, &path).map(FieldValue::Int),
                Kind::StrList => self.str_list(&m, key, &path).map(FieldValue::List),
                Kind::StrMap => self.str_map(&m, key, &path).map(FieldValue::Map),
                Kind::StrListMap => self.str_list_map(&m, key, &path).map(FieldValue::ListMap),
                Kind::KubeActions => self.kube_actions(&m, key, &path),
            };
            if let Some(v) = value {
                fields.set(key, v);
            }
        }
        Some(ActionConfig {
            name,
            kind,
            enable,
            runs_on,
            retry,
            concurrency,
            fields,
        })
    }

    fn retry(&mut self, common: &Map<String, Value>, path: &str) -> RetryPolicy {
        let mut policy = RetryPolicy::default();
        let o = match common.get("retry") {
            None | Some(Value::Null) => return policy,
            Some(Value::Object(o)) => o,
            Some(other) => {
                self.problems.error(
                    join(path, "retry"),
                    format!(
                        "expected a mapping of {}, found {}",
                        RETRY_KEYS.join(", "),
                        type_name(other)
                    ),
                );
                return policy;
            }
        };
        let p = join(path, "retry");
        let o = self.keys(o, RETRY_KEYS, &p, "retry");
        match self.int(&o, "max-attempts", &p) {
            Some(n) if (1..=1000).contains(&n) => policy.max_attempts = n as u32,
            Some(_) => self
                .problems
                .error(join(&p, "max-attempts"), "must be between 1 and 1000"),
            None => {}
        }
        for (key, slot) in [
            ("max-age", &mut policy.max_age),
            ("initial-delay", &mut policy.initial_delay),
            ("max-delay", &mut policy.max_delay),
        ] {
            if let Some(s) = self.string(&o, key, &p) {
                match duration::parse_go_duration(&s) {
                    Ok(d) if !d.is_zero() => *slot = d,
                    Ok(_) => self.problems.error(join(&p, key), "must be more than 0"),
                    Err(e) => self.problems.error(join(&p, key), e),
                }
            }
        }
        if policy.initial_delay > policy.max_delay {
            self.problems
                .error(&p, "initial-delay is longer than max-delay");
        }
        policy
    }

    fn kube_actions(
        &mut self,
        m: &Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Option<FieldValue> {
        let v = m.get(key)?;
        let o = match v {
            Value::Null => return None,
            Value::Object(o) => o,
            other => {
                self.problems.error(
                    join(path, key),
                    format!(
                        "expected a mapping with `labels` and `annotations`, found {}",
                        type_name(other)
                    ),
                );
                return None;
            }
        };
        let p = join(path, key);
        let o = self.keys(o, &["labels", "annotations"], &p, "kube-actions");
        Some(FieldValue::Kube {
            labels: self.str_map(&o, "labels", &p).unwrap_or_default(),
            annotations: self.str_map(&o, "annotations", &p).unwrap_or_default(),
        })
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Number(n) => n.to_string(),
        other => type_name(other).to_string(),
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
        assert_eq!(c.actions[0].concurrency, 2);
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
