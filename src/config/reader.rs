//! The hand-written walker over the YAML tree: each section's keys, case-insensitively,
//! with scalar coercion, YAML 1.1 booleans, and every problem reported with its place.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::*;

/// `routes[my-route]` when the item has a name, else `routes[3]`.
pub(super) fn item_path(section: &str, index: usize, item: &Map<String, Value>) -> String {
    let name = item
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("name"))
        .and_then(|(_, v)| scalar_string(v));
    match name {
        Some(n) if !n.is_empty() => format!("{section}[{n}]"),
        _ => format!("{section}[{index}]"),
    }
}

pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

pub(super) fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub(super) struct Reader<'p> {
    pub(super) problems: &'p mut Problems,
    pub(super) schema: &'p Schema,
}

impl Reader<'_> {
    /// Normalises keys to their canonical (lower-case) spelling and reports unknown ones.
    pub(super) fn keys(
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

    pub(super) fn unknown_key(&mut self, path: &str, key: &str, known: &[&str], what: &str) {
        let hint = match problems::closest(key, known) {
            Some(c) => format!("; did you mean `{c}`?"),
            None => String::new(),
        };
        self.problems.warn(
            join(path, key),
            format!("unknown key `{key}` in {what} (ignored){hint}"),
        );
    }

    pub(super) fn string(
        &mut self,
        m: &Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Option<String> {
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

    pub(super) fn bool(&mut self, m: &Map<String, Value>, key: &str, path: &str) -> Option<bool> {
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

    pub(super) fn int(&mut self, m: &Map<String, Value>, key: &str, path: &str) -> Option<i64> {
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

    pub(super) fn str_list(
        &mut self,
        m: &Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Option<Vec<String>> {
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

    pub(super) fn str_map(
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

    pub(super) fn str_list_map(
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

    pub(super) fn list_of_maps(
        &mut self,
        top: &Map<String, Value>,
        key: &str,
    ) -> Vec<Map<String, Value>> {
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

    pub(super) fn route(&mut self, index: usize, item: &Map<String, Value>) -> RouteConfig {
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

    pub(super) fn template(&mut self, index: usize, item: &Map<String, Value>) -> TemplateConfig {
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

    // Long on purpose: the common keys, then the type's keys from the schema, then `retry`
    // and `concurrency`, each reported with its place, in the order a user reads the entry.
    pub(super) fn action(
        &mut self,
        index: usize,
        item: &Map<String, Value>,
    ) -> Option<ActionConfig> {
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
            None => None,
            Some(n) if CONCURRENCY_RANGE.contains(&n) => Some(n as usize),
            Some(_) => {
                self.problems
                    .error(join(&path, "concurrency"), "must be between 1 and 1024");
                None
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

    pub(super) fn retry(&mut self, common: &Map<String, Value>, path: &str) -> RetryPolicy {
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

    pub(super) fn kube_actions(
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
                        "expected a mapping with `labels`, `annotations`, `scale-to-zero` or `delete`, found {}",
                        type_name(other)
                    ),
                );
                return None;
            }
        };
        let p = join(path, key);
        let o = self.keys(
            o,
            &["labels", "annotations", "scale-to-zero", "delete"],
            &p,
            "kube-actions",
        );
        Some(FieldValue::Kube(KubeActions {
            labels: self.str_map(&o, "labels", &p).unwrap_or_default(),
            annotations: self.str_map(&o, "annotations", &p).unwrap_or_default(),
            scale_to_zero: self.bool(&o, "scale-to-zero", &p).unwrap_or(false),
            delete: self.bool(&o, "delete", &p).unwrap_or(false),
        }))
    }
}

pub(super) fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Number(n) => n.to_string(),
        other => type_name(other).to_string(),
    }
}
