//! Templates: Rego packages that turn an event into a message (`title`, `result`, `url`, ...),
//! evaluated the two ways Postee does (spec §5.2): a `rego-package` from the bundle plus the
//! user's `rego-templates/` directory, or a single external module (`body:` / `url:`).

pub mod legacy;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use regorus::{Engine, Value};

use crate::bundle::{self as bundled, Source};
use crate::config::TemplateConfig;
use crate::rego;
use crate::rego::vm::VmTemplate;

pub use crate::message::Rendered;

/// Bundled packages that run on regorus' VM. Each is proven to give exactly the
/// interpreter's output on every fixture by `vm_and_interpreter_agree_...`; the others
/// (`postee.vuls.cyclonedx`, which reads another package's rules through an import, and
/// `postee.vuls.slack.trivy.aggregation`) gave different results on the VM, so they stay on
/// the interpreter.
const VM_PACKAGES: &[&str] = &[
    "postee.rawmessage.html",
    "postee.rawmessage.json",
    "postee.vuls.html",
    "postee.vuls.html.aggregation",
    "postee.vuls.slack",
    "postee.vuls.slack.aggregation",
    "postee.vuls.trivy.slack",
    "postee.trivy.jira",
    "postee.trivy.jira.aggregation",
    "postee.trivyoperator.jira",
    "postee.trivyoperator.slack",
    "postee.trivyoperator.dependencytrack",
    "postee.vuls.cyclondx",
    "postee.vuls.opsgenie",
    "postee.tracee.html",
    "postee.tracee.slack",
    "postee.servicenow",
    "postee.servicenow.aggregation",
    "postee.servicenow.incident",
    "postee.servicenow.insight",
];

/// Every rule of a template that becomes part of the content.
const TEMPLATE_FIELDS: &[&str] = &[
    "title",
    "result",
    "url",
    "aggregation_pkg",
    "result_date",
    "result_severity",
    "result_summary",
    "result_category",
    "result_subcategory",
    "result_assigned_to",
    "result_assigned_group",
];

/// `result_*` rule name → content key (spec §4.5).
const EXTRA_FIELDS: &[(&str, &str)] = &[
    ("result_date", "date"),
    ("result_severity", "severity"),
    ("result_summary", "summary"),
    ("result_category", "category"),
    ("result_subcategory", "subcategory"),
    ("result_assigned_to", "assignedTo"),
    ("result_assigned_group", "assignedGroup"),
];

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(
        "template `{template}`: `{field}` is undefined for this event (check that the event has the fields the template reads)"
    )]
    Missing {
        template: String,
        field: &'static str,
    },
    #[error("template `{template}`: {message}")]
    Eval { template: String, message: String },
}

/// Bundled packages rendered natively: they only serialise the input, so the VM's set-up
/// and the copy of the input into it are the whole cost of rendering them.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Native {
    /// `postee.rawmessage.json`: `title = "-"`, `result = jsonformat(input)`.
    RawJson,
}

/// A compiled template, ready to render. Cloning shares the compiled modules.
#[derive(Clone)]
pub struct Template {
    pub name: String,
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    /// Query `data.<package>`; the value is the result object.
    Package {
        engine: Engine,
        package: String,
        /// The VM program, for bundled packages (identical output, proven by the goldens).
        vm: Option<Arc<VmTemplate>>,
        /// A native renderer for a bundled package whose result is plain serialisation
        /// (identical output, proven against the interpreter on every fixture).
        native: Option<Native>,
    },
    /// Query `data`; the first nested object with a `result` key is the result object.
    External { engine: Engine },
    /// One of Postee's Go layouts (`legacy-scan-renderer`).
    Legacy(legacy::Format),
    /// The aggregation of a legacy layout.
    LegacyAggregation(legacy::Format),
}

impl Template {
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Package { package, .. } => format!("rego-package {package}"),
            Kind::External { .. } => "external module".to_string(),
            Kind::Legacy(f) => format!("legacy-scan-renderer {}", f.name()),
            Kind::LegacyAggregation(f) => {
                format!("legacy-scan-renderer {} (aggregation)", f.name())
            }
        }
    }

    /// The template that aggregates this one's messages: the `aggregation_pkg` package of a
    /// `rego-package` template, the legacy aggregation of a legacy renderer, none otherwise.
    pub fn aggregation_template(&self, registry: &Registry) -> Option<Result<Template, String>> {
        match &self.kind {
            Kind::Legacy(f) => Some(Ok(Template {
                name: format!("{} (aggregation)", self.name),
                kind: Kind::LegacyAggregation(*f),
            })),
            Kind::Package { .. } => {
                let pkg = self.aggregation_package()?;
                Some(
                    registry
                        .package_template(&format!("{} (aggregation)", self.name), &pkg)
                        .map_err(|e| {
                            format!("template `{}` aggregates with `{pkg}`: {e}", self.name)
                        }),
                )
            }
            _ => None,
        }
    }

    /// Renders a batch of messages (newest first) with this aggregation template. Rego
    /// packages get the array of items Postee builds (spec §4.9) as `input`, without Postee's
    /// leading `null`s.
    pub fn aggregate(&self, items: &[Rendered]) -> Result<Rendered, RenderError> {
        if let Kind::LegacyAggregation(f) = &self.kind {
            return Ok(legacy::aggregate(*f, items));
        }
        let input: Vec<serde_json::Value> = items.iter().map(aggregation_item).collect();
        self.eval(Value::from(serde_json::Value::Array(input)))
    }

    /// Postee's aggregation support test: evaluated with an empty input, a `rego-package`
    /// template names its aggregation package in `aggregation_pkg`. External templates never
    /// aggregate (spec §5.2).
    pub fn aggregation_package(&self) -> Option<String> {
        let Kind::Package {
            engine, package, ..
        } = &self.kind
        else {
            return None;
        };
        let mut e = engine.clone();
        e.set_input(Value::new_object());
        match e.eval_rule(format!("data.{package}.aggregation_pkg")) {
            Ok(Value::String(s)) => Some(s.to_string()),
            _ => None,
        }
    }

    /// Renders one event. `input` is the event object (without the `postee` key);
    /// `aqua_server` is the `…/#/images/` form injected as `input.postee.AquaServer`.
    pub fn render(&self, input: &Value, aqua_server: &str) -> Result<Rendered, RenderError> {
        if let Kind::Legacy(f) = &self.kind {
            let mut rendered = self.legacy(*f, input, aqua_server)?;
            rendered.owners = owners_of(input);
            return Ok(rendered);
        }
        let mut input = input.clone();
        if let Ok(obj) = input.as_object_mut() {
            let mut postee = Value::new_object();
            if let Ok(p) = postee.as_object_mut() {
                p.insert(Value::from("AquaServer"), Value::from(aqua_server));
            }
            obj.insert(Value::from("postee"), postee);
        }
        let owners = owners_of(&input);
        let mut rendered = self.eval(input)?;
        rendered.owners = owners;
        Ok(rendered)
    }

    /// Evaluates with the input as given (no `postee` key injected, no owners), as Postee's
    /// golden tests do; `render` is what the pipeline uses.
    pub fn eval(&self, input: Value) -> Result<Rendered, RenderError> {
        let err = |message: String| RenderError::Eval {
            template: self.name.clone(),
            message,
        };
        let obj = match &self.kind {
            Kind::Package {
                engine,
                package,
                vm,
                native,
            } => {
                if *native == Some(Native::RawJson) && input.as_object().is_ok() {
                    let description =
                        rego::go_json_indent(&input).map_err(|e| err(e.to_string()))?;
                    return Ok(Rendered {
                        title: "-".to_string(),
                        description,
                        ..Rendered::default()
                    });
                }
                if let Some(vm) = vm {
                    match vm.eval(&input) {
                        Ok(obj) => return self.content(&obj),
                        Err(e) => {
                            tracing::debug!(template = %self.name, error = %e, "VM failed; using the interpreter")
                        }
                    }
                }
                let mut e = engine.clone();
                e.set_input(input);
                let res = e
                    .eval_query(format!("data.{package}"), false)
                    .map_err(|e| err(rego::describe_error(&e)))?;
                res.result
                    .into_iter()
                    .next()
                    .and_then(|r| r.expressions.into_iter().next())
                    .map(|x| x.value)
                    .ok_or_else(|| err(format!("package {package} produced no result")))?
            }
            Kind::Legacy(f) => return self.legacy(*f, &input, ""),
            Kind::LegacyAggregation(_) => {
                return Err(err(
                    "a legacy aggregation renders batches of messages, not an event".into(),
                ));
            }
            Kind::External { engine } => {
                let mut e = engine.clone();
                e.set_input(input);
                let res = e
                    .eval_query("data".to_string(), false)
                    .map_err(|e| err(rego::describe_error(&e)))?;
                let data = res
                    .result
                    .into_iter()
                    .next()
                    .and_then(|r| r.expressions.into_iter().next())
                    .map(|x| x.value)
                    .unwrap_or(Value::Undefined);
                find_result_object(&data).ok_or_else(|| RenderError::Missing {
                    template: self.name.clone(),
                    field: "result",
                })?
            }
        };
        self.content(&obj)
    }

    fn legacy(
        &self,
        f: legacy::Format,
        input: &Value,
        aqua_server: &str,
    ) -> Result<Rendered, RenderError> {
        let json = serde_json::to_value(input).map_err(|e| RenderError::Eval {
            template: self.name.clone(),
            message: e.to_string(),
        })?;
        legacy::render(f, &json, aqua_server).map_err(|message| RenderError::Eval {
            template: self.name.clone(),
            message,
        })
    }

    fn content(&self, obj: &Value) -> Result<Rendered, RenderError> {
        let field = |name: &str| -> Value {
            obj.as_object()
                .ok()
                .and_then(|o| o.get(&Value::from(name)).cloned())
                .unwrap_or(Value::Undefined)
        };
        let text = |name: &'static str| -> Result<String, RenderError> {
            match field(name) {
                Value::Undefined => Err(RenderError::Missing {
                    template: self.name.clone(),
                    field: name,
                }),
                Value::String(s) => Ok(s.to_string()),
                other => rego::go_json(&other).map_err(|e| RenderError::Eval {
                    template: self.name.clone(),
                    message: e.to_string(),
                }),
            }
        };
        let title = text("title")?;
        let description = text("result")?;
        let url = match field("url") {
            Value::String(s) => s.to_string(),
            _ => String::new(),
        };
        let aggregation_pkg = match field("aggregation_pkg") {
            Value::String(s) => Some(s.to_string()),
            _ => None,
        };
        let mut extra = BTreeMap::new();
        for (rule, key) in EXTRA_FIELDS {
            match field(rule) {
                Value::String(s) => {
                    extra.insert(key.to_string(), s.to_string());
                }
                Value::Number(n) => {
                    let v = Value::Number(n);
                    extra.insert(key.to_string(), rego::go_json(&v).unwrap_or_default());
                }
                _ => {}
            }
        }
        Ok(Rendered {
            title,
            description,
            url,
            aggregation_pkg,
            extra,
            owners: None,
            keys: BTreeMap::new(),
        })
    }
}

/// One item of an aggregation input, as Postee builds it: the description parsed when it is
/// a JSON array of objects (Slack blocks), else the text; the other content fields as text.
pub fn aggregation_item(c: &Rendered) -> serde_json::Value {
    let description = match serde_json::from_str::<serde_json::Value>(&c.description) {
        Ok(v @ serde_json::Value::Array(_))
            if v.as_array()
                .is_some_and(|a| a.iter().all(|x| x.is_object())) =>
        {
            v
        }
        _ => serde_json::Value::String(c.description.clone()),
    };
    let extra = |k: &str| c.extra.get(k).cloned().unwrap_or_default();
    serde_json::json!({
        "description": description,
        "title": c.title,
        "url": c.url,
        "date": extra("date"),
        "severity": extra("severity"),
        "summary": extra("summary"),
        "category": extra("category"),
        "subcategory": extra("subcategory"),
        "assignedTo": extra("assignedTo"),
        "assignedGroup": extra("assignedGroup"),
    })
}

/// Depth-first search (keys in sorted order, so the answer is stable; Postee's depends on Go
/// map order) for the first object with a non-null `result`.
fn find_result_object(v: &Value) -> Option<Value> {
    let obj = v.as_object().ok()?;
    match obj.get(&Value::from("result")) {
        Some(Value::Null) | None => {}
        Some(_) => return Some(v.clone()),
    }
    for (_, child) in obj.iter_sorted() {
        if let Some(found) = find_result_object(child) {
            return Some(found);
        }
    }
    None
}

/// `application_scope_owners` joined by `;` (non-strings are skipped; Postee crashes on them).
fn owners_of(input: &Value) -> Option<String> {
    let owners = input
        .as_object()
        .ok()?
        .get(&Value::from("application_scope_owners"))?;
    let arr = owners.as_array().ok()?;
    let names: Vec<String> = arr
        .iter()
        .filter_map(|v| v.as_string().ok().map(|s| s.to_string()))
        .collect();
    if names.is_empty() {
        None
    } else {
        Some(names.join(";"))
    }
}

/// The package a module declares (`package a.b.c`).
pub fn package_of(text: &str) -> Option<String> {
    for line in text.lines() {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("package ") {
            let p: String = rest
                .trim()
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '#')
                .collect();
            return Some(p);
        }
    }
    None
}

/// Reads every `.rego` file under `dir`, recursively, sorted by path, skipping `lost+found`
/// (as Postee does). A missing directory is no templates, not an error.
pub fn read_rego_dir(dir: &Path) -> Result<Vec<Source>, String> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    let mut stack = vec![dir.to_path_buf()];
    let mut files: Vec<PathBuf> = Vec::new();
    while let Some(d) = stack.pop() {
        let entries =
            std::fs::read_dir(&d).map_err(|e| format!("cannot read {}: {e}", d.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot read {}: {e}", d.display()))?;
            let p = entry.path();
            if entry.file_name() == "lost+found" {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rego") {
                files.push(p);
            }
        }
    }
    files.sort();
    for p in files {
        let text =
            std::fs::read_to_string(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        out.push(Source {
            path: p.display().to_string(),
            text,
        });
    }
    Ok(out)
}

/// All templates of a config, compiled. Built once at load.
pub struct Registry {
    /// Bundled templates plus the user's directory, compiled together (Postee's bundled mode).
    bundle: Engine,
    /// Package → source paths that declare it.
    packages: BTreeMap<String, Vec<String>>,
    /// The `postee` helper sources external templates are compiled with.
    common: Vec<Source>,
}

impl Registry {
    /// Compiles the bundle: the bundled packages, then the user's `dir`; a user package with
    /// the same name as a bundled one replaces it.
    pub fn new(user_dir: &Path) -> Result<Registry, Vec<String>> {
        let user = read_rego_dir(user_dir).map_err(|e| vec![e])?;
        let user_packages: BTreeSet<String> =
            user.iter().filter_map(|s| package_of(&s.text)).collect();
        let mut sources: Vec<Source> = bundled::templates()
            .into_iter()
            .filter(|s| package_of(&s.text).is_none_or(|p| !user_packages.contains(&p)))
            .collect();
        sources.extend(user.iter().cloned());
        let mut engine = rego::new_engine(rego::TEMPLATE_TIME_LIMIT);
        let mut errors = Vec::new();
        let mut packages: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for s in &sources {
            match engine.add_policy(s.path.clone(), s.text.clone()) {
                Ok(pkg) => packages
                    .entry(pkg.trim_start_matches("data.").to_string())
                    .or_default()
                    .push(s.path.clone()),
                Err(e) => errors.push(format!(
                    "template file {}: {}",
                    s.path,
                    rego::describe_error(&e)
                )),
            }
        }
        if errors.is_empty() {
            // Compile (analyse, schedule) everything now so errors show at load, not per event.
            engine.set_input(Value::new_object());
            if let Err(e) = engine.eval_query("data.postee.__postee_load_check".into(), false) {
                errors.push(format!("templates: {}", rego::describe_error(&e)));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        // External templates use the user's `common/` when it exists (Postee loads
        // ./rego-templates/common), else the bundled helpers.
        let user_common = read_rego_dir(&user_dir.join("common")).map_err(|e| vec![e])?;
        let common = if user_common.is_empty() {
            bundled::templates()
                .into_iter()
                .filter(|s| package_of(&s.text).as_deref() == Some("postee"))
                .collect()
        } else {
            user_common
        };
        Ok(Registry {
            bundle: engine,
            packages,
            common,
        })
    }

    pub fn has_package(&self, package: &str) -> bool {
        self.packages.contains_key(package)
    }

    /// Package names available to `rego-package`.
    pub fn package_names(&self) -> Vec<String> {
        self.packages.keys().cloned().collect()
    }

    /// A template evaluating `data.<package>` of the bundle.
    pub fn package_template(&self, name: &str, package: &str) -> Result<Template, String> {
        let Some(paths) = self.packages.get(package) else {
            let names = self.package_names();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let hint = match crate::config::problems::closest(package, &refs) {
                Some(c) => format!("; did you mean `{c}`?"),
                None => String::new(),
            };
            return Err(format!(
                "rego-package `{package}` is not bundled and not found in the templates directory{hint}"
            ));
        };
        for field in ["title", "result"] {
            let declared = paths.iter().any(|p| {
                self.bundle
                    .has_declared_rule_rooted_at(p, field)
                    .unwrap_or(false)
            });
            if !declared {
                return Err(format!(
                    "package `{package}` does not define `{field}` (a template must define `title` and `result`)"
                ));
            }
        }
        // Bundled packages run on the VM (unless POSTEE_REGO_VM=off); a user's own package,
        // or one the VM cannot compile, runs on the interpreter.
        let vm_wanted = std::env::var("POSTEE_REGO_VM").map_or(true, |v| v != "off");
        let vm = if vm_wanted
            && VM_PACKAGES.contains(&package)
            && paths.iter().all(|p| p.starts_with("bundled:"))
        {
            let fields: Vec<&str> = TEMPLATE_FIELDS
                .iter()
                .copied()
                .filter(|f| {
                    paths.iter().any(|p| {
                        self.bundle
                            .has_declared_rule_rooted_at(p, f)
                            .unwrap_or(false)
                    })
                })
                .collect();
            match VmTemplate::compile(&self.bundle, package, &fields) {
                Ok(v) => Some(Arc::new(v)),
                Err(e) => {
                    tracing::debug!(package, error = %e, "VM cannot compile this package; using the interpreter");
                    None
                }
            }
        } else {
            None
        };
        let bundled = paths.iter().all(|p| p.starts_with("bundled:"));
        let native = (vm_wanted && bundled && package == "postee.rawmessage.json")
            .then_some(Native::RawJson);
        Ok(Template {
            name: name.to_string(),
            kind: Kind::Package {
                engine: self.bundle.clone(),
                package: package.to_string(),
                vm,
                native,
            },
        })
    }

    /// Whether renders of `t` run on the VM.
    pub fn uses_vm(t: &Template) -> bool {
        matches!(&t.kind, Kind::Package { vm: Some(_), .. })
    }

    /// Whether renders of `t` run natively (no Rego at all).
    pub fn is_native(t: &Template) -> bool {
        matches!(
            &t.kind,
            Kind::Package {
                native: Some(_),
                ..
            }
        )
    }

    /// Without the VM or a native renderer, for tests that compare the paths.
    pub fn interpreter_only(t: &Template) -> Template {
        let mut t = t.clone();
        if let Kind::Package { vm, native, .. } = &mut t.kind {
            *vm = None;
            *native = None;
        }
        t
    }

    /// A template from one module (`body:` or text fetched from `url:`), compiled with the
    /// `postee` helpers only.
    pub fn external_template(
        &self,
        name: &str,
        module_path: &str,
        text: &str,
    ) -> Result<Template, String> {
        let mut engine = rego::new_engine(rego::TEMPLATE_TIME_LIMIT);
        for s in &self.common {
            engine
                .add_policy(s.path.clone(), s.text.clone())
                .map_err(|e| rego::describe_error(&e))?;
        }
        engine
            .add_policy(module_path.to_string(), text.to_string())
            .map_err(|e| rego::describe_error(&e))?;
        for field in ["title", "result"] {
            if !engine
                .has_declared_rule_rooted_at(module_path, field)
                .unwrap_or(false)
            {
                return Err(format!(
                    "the module does not define `{field}` (a template must define `title` and `result`)"
                ));
            }
        }
        engine.set_input(Value::new_object());
        engine
            .eval_query("data.postee.__postee_load_check".into(), false)
            .map_err(|e| rego::describe_error(&e))?;
        Ok(Template {
            name: name.to_string(),
            kind: Kind::External { engine },
        })
    }

    /// Builds the template of one config entry. Precedence as Postee: body > url > rego-package
    /// > legacy renderer.
    pub async fn build(
        &self,
        t: &TemplateConfig,
        http: &reqwest::Client,
    ) -> Result<Template, String> {
        if let Some(body) = &t.body {
            return self.external_template(&t.name, &format!("templates[{}].body", t.name), body);
        }
        if let Some(url) = &t.url {
            let text = fetch_module(http, url).await?;
            let file = url
                .rsplit('/')
                .next()
                .filter(|s| !s.is_empty())
                .unwrap_or("template.rego");
            return self
                .external_template(&t.name, file, &text)
                .map_err(|e| format!("module from {url}: {e}"));
        }
        if let Some(pkg) = &t.rego_package {
            return self.package_template(&t.name, pkg);
        }
        if let Some(r) = &t.legacy_scan_renderer {
            let Some(format) = legacy::Format::parse(r) else {
                return Err(format!(
                    "unknown legacy-scan-renderer `{r}` (valid: html, slack, jira)"
                ));
            };
            return Ok(Template {
                name: t.name.clone(),
                kind: Kind::Legacy(format),
            });
        }
        Err("template has none of `rego-package`, `body`, `url` or `legacy-scan-renderer`".into())
    }
}

/// Largest template module fetched from a `url:`.
const MAX_TEMPLATE_BYTES: usize = 1 << 20;
const FETCH_TIMEOUT: Duration = Duration::from_secs(15);

async fn fetch_module(http: &reqwest::Client, url: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("invalid url {url:?}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("url {url:?} must be http or https"));
    }
    let resp = http
        .get(parsed)
        .timeout(FETCH_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("cannot fetch {url}: {e}"))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!(
            "can not connect to {url}, response status is {}",
            status.as_u16()
        ));
    }
    if resp
        .content_length()
        .is_some_and(|n| n as usize > MAX_TEMPLATE_BYTES)
    {
        return Err(format!(
            "module at {url} is larger than {MAX_TEMPLATE_BYTES} bytes"
        ));
    }
    let mut resp = resp;
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("cannot fetch {url}: {e}"))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_TEMPLATE_BYTES {
            return Err(format!(
                "module at {url} is larger than {MAX_TEMPLATE_BYTES} bytes"
            ));
        }
    }
    String::from_utf8(body).map_err(|_| format!("module at {url} is not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        Registry::new(Path::new("/nonexistent-templates")).unwrap()
    }

    #[test]
    fn raw_message_templates_match_postee_goldens() {
        let r = registry();
        let input = Value::from_json_str(r#"{"user":"demo"}"#).unwrap();
        let html = r.package_template("h", "postee.rawmessage.html").unwrap();
        let out = html.eval(input.clone()).unwrap();
        assert_eq!(out.title, "Raw Message Received");
        assert_eq!(
            out.description,
            "<pre><code>{\n \"user\": \"demo\"\n}</code></pre>"
        );
        let json = r.package_template("j", "postee.rawmessage.json").unwrap();
        let out = json.eval(input).unwrap();
        assert_eq!(out.title, "-");
        assert_eq!(out.description, "{\n \"user\": \"demo\"\n}");
        assert_eq!(out.url, "");
    }

    #[test]
    fn raw_json_includes_the_injected_postee_key() {
        let r = registry();
        let t = r.package_template("j", "postee.rawmessage.json").unwrap();
        let input = Value::from_json_str(r#"{"a":1}"#).unwrap();
        let out = t.render(&input, "https://aqua/#/images/").unwrap();
        assert_eq!(
            out.description,
            "{\n \"a\": 1,\n \"postee\": {\n  \"AquaServer\": \"https://aqua/#/images/\"\n }\n}"
        );
    }

    #[test]
    fn external_module_finds_the_first_result_object_and_serializes_like_go() {
        let r = registry();
        let t = r
            .external_template(
                "x",
                "inline.rego",
                "package rego1.json\ntitle = \"Audit event received\"\nresult = {\"assignee\": input.user}\nurl = \"Audit-registry-received/Audit-image-received\"\n",
            )
            .unwrap();
        let out = t
            .eval(Value::from_json_str(r#"{"user":"demo"}"#).unwrap())
            .unwrap();
        assert_eq!(out.description, r#"{"assignee":"demo"}"#);
        assert_eq!(out.url, "Audit-registry-received/Audit-image-received");
    }

    /// The VM is only an optimisation: on every bundled package and every fixture it must
    /// give exactly what the interpreter gives.
    #[test]
    fn vm_and_interpreter_agree_on_every_bundled_package_and_fixture() {
        let r = registry();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events");
        let mut inputs = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            let text = std::fs::read_to_string(&p).unwrap();
            inputs.push((
                p.display().to_string(),
                Value::from_json_str(&text).unwrap(),
            ));
        }
        let mut compared = 0;
        let mut diffs = Vec::new();
        for package in VM_PACKAGES {
            let t = r.package_template(package, package).unwrap();
            assert!(
                Registry::uses_vm(&t),
                "{package} does not compile for the VM"
            );
            let slow = Registry::interpreter_only(&t);
            for (name, input) in &inputs {
                for server in ["", "https://aqua.example.com/#/images/"] {
                    let fast = t.render(input, server);
                    let reference = slow.render(input, server);
                    let same = match (&fast, &reference) {
                        (Ok(a), Ok(b)) => a == b,
                        (Err(_), Err(_)) => true,
                        _ => false,
                    };
                    if !same {
                        diffs.push(format!(
                            "{package} on {name}: VM {fast:?} vs interpreter {reference:?}"
                        ));
                    }
                    compared += 1;
                }
            }
        }
        assert!(diffs.is_empty(), "{}", diffs.join("\n"));
        let on_vm = VM_PACKAGES.len();
        assert!(on_vm >= 10 && compared > 100);
        // The raw JSON package renders natively (and was compared above).
        let t = r.package_template("j", "postee.rawmessage.json").unwrap();
        assert!(Registry::is_native(&t));
        // Packages outside the list stay on the interpreter.
        let t = r.package_template("c", "postee.vuls.cyclonedx").unwrap();
        assert!(!Registry::uses_vm(&t));
    }

    #[test]
    fn servicenow_result_fields_become_content_keys() {
        let r = registry();
        let t = r
            .external_template(
                "sn",
                "sn.rego",
                "package sn\ntitle = \"t\"\nresult = \"r\"\nresult_date = input.scan_started.seconds\nresult_severity = 1\nresult_category = \"Security incident\"\nresult_subcategory = \"sub\"\nresult_assigned_to = \"owner\"\nresult_assigned_group = \"group\"\nresult_summary = \"line1\\nline2\"\n",
            )
            .unwrap();
        let out = t
            .eval(Value::from_json_str(r#"{"scan_started":{"seconds":1624544066}}"#).unwrap())
            .unwrap();
        let want: BTreeMap<String, String> = [
            ("date", "1624544066"),
            ("severity", "1"),
            ("category", "Security incident"),
            ("subcategory", "sub"),
            ("assignedTo", "owner"),
            ("assignedGroup", "group"),
            ("summary", "line1\nline2"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(out.extra, want);
    }

    #[test]
    fn missing_title_or_result_is_a_load_error() {
        let r = registry();
        let err = r
            .external_template("x", "inline.rego", "package p\nresult = input\n")
            .err()
            .unwrap();
        assert!(err.contains("`title`"), "{err}");
        let err = r.package_template("x", "postee.nope").err().unwrap();
        assert!(err.contains("not bundled"), "{err}");
    }

    #[test]
    fn undefined_result_for_an_event_names_the_field() {
        let r = registry();
        let t = r
            .external_template(
                "x",
                "m.rego",
                "package p\ntitle = input.image\nresult = \"r\"\n",
            )
            .unwrap();
        let err = t.eval(Value::from_json_str("{}").unwrap()).unwrap_err();
        assert!(err.to_string().contains("`title` is undefined"), "{err}");
    }

    #[test]
    fn user_package_overrides_bundled_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("mine.rego"),
            "package postee.rawmessage.json\ntitle = \"mine\"\nresult = \"custom\"\n",
        )
        .unwrap();
        let r = Registry::new(dir.path()).unwrap();
        let t = r.package_template("j", "postee.rawmessage.json").unwrap();
        let out = t.eval(Value::from_json_str("{}").unwrap()).unwrap();
        assert_eq!(
            (out.title.as_str(), out.description.as_str()),
            ("mine", "custom")
        );
    }

    #[test]
    fn a_broken_user_template_reports_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("bad.rego"),
            "package bad\n\ntitle = \"x\"\nresult = [\n",
        )
        .unwrap();
        let errs = Registry::new(dir.path()).err().unwrap();
        let all = errs.join("\n");
        assert!(all.contains("bad.rego:"), "{all}");
    }

    #[test]
    fn owners_are_joined_and_non_strings_skipped() {
        let v = Value::from_json_str(r#"{"application_scope_owners":["a","b",3]}"#).unwrap();
        assert_eq!(owners_of(&v).as_deref(), Some("a;b"));
        let v = Value::from_json_str(r#"{"application_scope_owners":"x"}"#).unwrap();
        assert_eq!(owners_of(&v), None);
    }
}
