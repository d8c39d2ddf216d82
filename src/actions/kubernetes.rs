//! `kubernetes`: labels, annotates, scales to zero or deletes Kubernetes objects (spec §6.14).
//!
//! Keys (Postee's): `kube-namespace`, `kube-config-file` (absent: the in-cluster service
//! account), `kube-label-selector`, `kube-actions` (`labels`, `annotations`). Ours:
//! `kube-resource-kind` (pods by default, as Postee), `kube-target: from-event` (the workload a
//! trivy-operator report names), `kube-actions.scale-to-zero` and `.delete`, `dry-run`,
//! `timeout`.
//!
//! One delivery: list the objects of the kind in the namespace with the selector (or, with
//! `from-event`, take the one the report names, following its controller owners up to the
//! kind asked for), then for each: one JSON merge patch of `metadata.labels` and
//! `metadata.annotations` (no GET+PUT: concurrent writers lose nothing), a merge patch of the
//! scale subresource to `spec.replicas: 0`, or a delete with `propagationPolicy: Background`.
//! `dry-run: true` sends the same writes with `dryRun=All`: the API server checks them
//! (RBAC, admission, validation) and changes nothing.
//!
//! Where Postee is wrong and we are not: an `event.input` path that resolves to nothing fails
//! the delivery (Postee then selects every pod); values taken from the event must be valid
//! label values; failures are failures (Postee logs them and reports success).

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use regex::Regex;
use serde_json::{Value, json};

use super::{Action, ActionError, BuildContext, Check, Message, Validated};
use crate::config::{Fields, KeySpec, Kind, KubeActions};

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The field manager named in every write (shows in `managedFields`).
pub const FIELD_MANAGER: &str = "postee";

pub(crate) const KEYS: &[KeySpec] = &[
    KeySpec {
        required: true,
        ..KeySpec::optional(
            "kube-namespace",
            Kind::Str,
            "required unless `kube-target: from-event`",
            "Namespace of the objects. With `kube-target: from-event`, when set, the only namespace an event may name.",
        )
    },
    KeySpec {
        required: true,
        ..KeySpec::optional(
            "kube-config-file",
            Kind::Str,
            "required unless in a cluster (`KUBERNETES_SERVICE_HOST` set)",
            "Path of a kubeconfig file (its current context is used); absent: the in-cluster service account.",
        )
    },
    KeySpec::optional(
        "kube-label-selector",
        Kind::Str,
        "none: every object of the kind",
        "Label selector (`app=web`, `tier in (fe,be)`, `!canary`), with `event.input.<path>` placeholders.",
    ),
    KeySpec::required(
        "kube-actions",
        Kind::KubeActions,
        "What to do to each object: `labels` and `annotations` (maps; a value `event.input.<path>` is taken from the event), `scale-to-zero: true`, `delete: true`.",
    ),
    KeySpec::optional(
        "kube-resource-kind",
        Kind::Str,
        "`pods`",
        "Kind of the objects: `pods`, `deployments`, `statefulsets`, `daemonsets`, `replicasets`, `cronjobs` or `jobs`.",
    ),
    KeySpec::optional(
        "kube-target",
        Kind::Str,
        "`selector`",
        "`selector`, or `from-event`: the workload a trivy-operator report names (namespace, kind, name).",
    ),
    KeySpec::optional(
        "dry-run",
        Kind::Bool,
        "`false`",
        "Send every write with `dryRun=All`: the API server checks it and changes nothing; the log says what would change.",
    ),
    KeySpec::optional(
        "timeout",
        Kind::Str,
        "`30s`",
        "Time limit of one delivery (all its requests), a Go duration.",
    ),
];

/// A kind of object the action works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    Pods,
    Deployments,
    StatefulSets,
    DaemonSets,
    ReplicaSets,
    CronJobs,
    Jobs,
}

impl ResourceKind {
    pub const ALL: [ResourceKind; 7] = [
        ResourceKind::Pods,
        ResourceKind::Deployments,
        ResourceKind::StatefulSets,
        ResourceKind::DaemonSets,
        ResourceKind::ReplicaSets,
        ResourceKind::CronJobs,
        ResourceKind::Jobs,
    ];

    /// The resource name (`deployments`), as in `kube-resource-kind` and RBAC rules.
    pub fn plural(self) -> &'static str {
        match self {
            ResourceKind::Pods => "pods",
            ResourceKind::Deployments => "deployments",
            ResourceKind::StatefulSets => "statefulsets",
            ResourceKind::DaemonSets => "daemonsets",
            ResourceKind::ReplicaSets => "replicasets",
            ResourceKind::CronJobs => "cronjobs",
            ResourceKind::Jobs => "jobs",
        }
    }

    /// The object kind (`Deployment`), as in `ownerReferences` and trivy-operator labels.
    pub fn kind(self) -> &'static str {
        match self {
            ResourceKind::Pods => "Pod",
            ResourceKind::Deployments => "Deployment",
            ResourceKind::StatefulSets => "StatefulSet",
            ResourceKind::DaemonSets => "DaemonSet",
            ResourceKind::ReplicaSets => "ReplicaSet",
            ResourceKind::CronJobs => "CronJob",
            ResourceKind::Jobs => "Job",
        }
    }

    /// API group ("" for the core group).
    pub fn group(self) -> &'static str {
        match self {
            ResourceKind::Pods => "",
            ResourceKind::CronJobs | ResourceKind::Jobs => "batch",
            _ => "apps",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self.group() {
            "" => "v1",
            "batch" => "batch/v1",
            _ => "apps/v1",
        }
    }

    /// Whether it has a `scale` subresource.
    pub fn scalable(self) -> bool {
        matches!(
            self,
            ResourceKind::Deployments | ResourceKind::StatefulSets | ResourceKind::ReplicaSets
        )
    }

    pub fn from_plural(s: &str) -> Option<ResourceKind> {
        let s = s.trim().to_ascii_lowercase();
        Self::ALL.into_iter().find(|k| k.plural() == s)
    }

    pub fn from_kind(s: &str) -> Option<ResourceKind> {
        Self::ALL.into_iter().find(|k| k.kind() == s)
    }

    /// The collection's path in a namespace (`/apis/apps/v1/namespaces/ns/deployments`).
    pub fn collection_path(self, namespace: &str) -> String {
        let base = match self.group() {
            "" => "/api/v1".to_string(),
            _ => format!("/apis/{}", self.api_version()),
        };
        format!("{base}/namespaces/{namespace}/{}", self.plural())
    }
}

/// Which objects a delivery acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The objects of the kind in the namespace that the selector (with placeholders) selects.
    Selector { namespace: String, selector: String },
    /// The workload the event (a trivy-operator report) names. `namespace`: the only one allowed,
    /// when set.
    FromEvent { namespace: Option<String> },
}

/// A valid kubernetes action.
#[derive(Debug, Clone)]
pub struct KubernetesConfig {
    /// `None`: the in-cluster service account.
    pub config_file: Option<String>,
    pub target: Target,
    /// `None` with `from-event`: the kind the report names.
    pub kind: Option<ResourceKind>,
    pub actions: KubeActions,
    pub dry_run: bool,
    pub timeout: Duration,
}

impl KubernetesConfig {
    fn kind_or_pods(&self) -> ResourceKind {
        self.kind.unwrap_or(ResourceKind::Pods)
    }
}

#[allow(clippy::expect_used, reason = "fixed patterns, checked by the tests")]
static LABEL_VALUE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$").expect("valid regex")
});
#[allow(clippy::expect_used, reason = "fixed patterns, checked by the tests")]
static DNS_LABEL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").expect("valid regex"));
#[allow(clippy::expect_used, reason = "fixed patterns, checked by the tests")]
static DNS_SUBDOMAIN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
        .expect("valid regex")
});
#[allow(clippy::expect_used, reason = "fixed patterns, checked by the tests")]
static PLACEHOLDER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"event\.input((?:\.[A-Za-z0-9_\-]+)*)").expect("valid regex"));

/// A label value: at most 63 characters, alphanumeric at both ends, `-_.` inside; may be empty.
pub fn is_label_value(s: &str) -> bool {
    s.len() <= 63 && LABEL_VALUE.is_match(s)
}

/// A namespace name (RFC 1123 label).
pub fn is_namespace(s: &str) -> bool {
    s.len() <= 63 && DNS_LABEL.is_match(s)
}

/// An object name (RFC 1123 subdomain).
pub fn is_object_name(s: &str) -> bool {
    s.len() <= 253 && DNS_SUBDOMAIN.is_match(s)
}

/// A label or annotation key: `[prefix/]name`, prefix a DNS subdomain, name at most 63
/// characters, alphanumeric at both ends.
pub fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    prefix.is_none_or(|p| !p.is_empty() && p.len() <= 253 && DNS_SUBDOMAIN.is_match(p))
        && !name.is_empty()
        && is_label_value(name)
}

pub fn validate(f: &Fields) -> Validated<KubernetesConfig> {
    let mut c = Check::default();
    let target_kind = f
        .non_empty("kube-target")
        .map(|s| s.trim().to_ascii_lowercase());
    let from_event = match target_kind.as_deref() {
        None | Some("selector") => false,
        Some("from-event") => true,
        Some(other) => {
            c.error(
                "kube-target",
                format!("unknown target {other:?}: use `selector` or `from-event`"),
            );
            false
        }
    };
    let namespace = f.non_empty("kube-namespace").map(|s| s.trim().to_string());
    match &namespace {
        None if !from_event => c.error(
            "kube-namespace",
            "kubernetes namespace needs to be set in config yaml",
        ),
        Some(ns) if !is_namespace(ns) => c.error(
            "kube-namespace",
            format!("{ns:?} is not a namespace name (lower-case letters, digits, `-`)"),
        ),
        _ => {}
    }
    let config_file = f.non_empty("kube-config-file").map(str::to_string);
    match &config_file {
        None if std::env::var_os("KUBERNETES_SERVICE_HOST").is_none() => c.error(
            "kube-config-file",
            "kubernetes config file needs to be set in config yaml (or run postee in the \
             cluster, where KUBERNETES_SERVICE_HOST is set, to use its service account)",
        ),
        None => {}
        Some(path) => check_kubeconfig(&mut c, path),
    }
    let kind = match f.non_empty("kube-resource-kind") {
        None => None,
        Some(s) => match ResourceKind::from_plural(s) {
            Some(k) => Some(k),
            None => {
                let valid: Vec<&str> = ResourceKind::ALL.iter().map(|k| k.plural()).collect();
                c.error(
                    "kube-resource-kind",
                    format!("unknown kind {s:?}: use one of {}", valid.join(", ")),
                );
                None
            }
        },
    };
    let selector = f
        .non_empty("kube-label-selector")
        .map(|s| s.trim().to_string());
    let actions = f.kube_actions("kube-actions").unwrap_or_default();
    let nothing = actions.labels.is_empty()
        && actions.annotations.is_empty()
        && !actions.scale_to_zero
        && !actions.delete;
    if nothing {
        c.error(
            "kube-actions",
            "nothing to do: set `labels`, `annotations`, `scale-to-zero: true` or `delete: true`",
        );
    }
    for (what, map, value_is_label) in [
        ("labels", &actions.labels, true),
        ("annotations", &actions.annotations, false),
    ] {
        for (k, v) in map {
            if !is_qualified_name(k) {
                c.error(
                    &format!("kube-actions.{what}"),
                    format!("{k:?} is not a valid key ([prefix/]name, name at most 63 characters)"),
                );
            }
            if value_is_label && !v.starts_with("event.input") && !is_label_value(v) {
                c.error(
                    &format!("kube-actions.{what}"),
                    format!(
                        "value {v:?} of {k:?} is not a valid label value (at most 63 characters: letters, digits, `-_.`)"
                    ),
                );
            }
        }
    }
    let effective = kind.unwrap_or(ResourceKind::Pods);
    if actions.scale_to_zero && kind.is_some_and(|k| !k.scalable()) {
        c.error(
            "kube-actions.scale-to-zero",
            format!(
                "{} have no scale subresource: use deployments, statefulsets or replicasets",
                effective.plural()
            ),
        );
    }
    if actions.scale_to_zero && kind.is_none() && !from_event {
        c.error(
            "kube-actions.scale-to-zero",
            "pods have no scale subresource: set kube-resource-kind to deployments, statefulsets or replicasets",
        );
    }
    if actions.delete && effective != ResourceKind::Pods {
        c.error(
            "kube-actions.delete",
            format!(
                "deletes pods only (set kube-resource-kind: pods), not {}",
                effective.plural()
            ),
        );
    }
    if actions.scale_to_zero && actions.delete {
        c.error(
            "kube-actions",
            "scale-to-zero and delete exclude each other",
        );
    }
    if from_event && selector.is_some() {
        c.error(
            "kube-label-selector",
            "not used with `kube-target: from-event` (the event names the object): remove one",
        );
    }
    if !from_event && selector.is_none() && (actions.scale_to_zero || actions.delete) {
        c.error(
            "kube-label-selector",
            "scale-to-zero and delete need a label selector (or `kube-target: from-event`): \
             they would act on every object of the kind in the namespace",
        );
    }
    let dry_run = f.bool("dry-run").unwrap_or(false);
    let timeout = c.timeout(f, DEFAULT_TIMEOUT);
    let target = if from_event {
        Some(Target::FromEvent {
            namespace: namespace.clone(),
        })
    } else {
        namespace.clone().map(|namespace| Target::Selector {
            namespace,
            selector: selector.clone().unwrap_or_default(),
        })
    };
    c.finish(target.map(|target| KubernetesConfig {
        config_file,
        target,
        kind,
        actions,
        dry_run,
        timeout,
    }))
}

/// A kubeconfig that is missing now is a warning (it may be mounted later); one that cannot be
/// read as a kubeconfig is an error. The file's text is never shown (it holds credentials).
fn check_kubeconfig(c: &mut Check, path: &str) {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            c.warn(
                "kube-config-file",
                format!("{path} does not exist now; deliveries fail until it does"),
            );
            return;
        }
        Err(e) => {
            c.error("kube-config-file", format!("cannot read {path}: {e}"));
            return;
        }
    };
    #[cfg(feature = "kubernetes")]
    if let Err(e) = kube::config::Kubeconfig::from_yaml(&text) {
        c.error(
            "kube-config-file",
            format!(
                "{path} is not a valid kubeconfig{}",
                where_in(&e.to_string())
            ),
        );
    }
    #[cfg(not(feature = "kubernetes"))]
    let _ = text;
}

/// ` (line 3 column 5)` from a parser error, without the rest (it may quote a credential).
#[cfg(feature = "kubernetes")]
fn where_in(err: &str) -> String {
    #[allow(clippy::expect_used, reason = "a fixed pattern")]
    static AT: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"line \d+,? column \d+").expect("valid regex"));
    AT.find(err)
        .map(|m| format!(" ({})", m.as_str()))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// What one delivery does, worked out from the event before any request (also for previews).

/// The event's values put in place: which objects, and what to send to each.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub kind: ResourceKind,
    pub target: PlanTarget,
    /// The merge patch of `metadata` (`None`: no labels or annotations to set).
    pub patch: Option<Value>,
    pub scale_to_zero: bool,
    pub delete: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanTarget {
    Selector {
        namespace: String,
        selector: String,
    },
    /// The object the report names; `kind`: its kind, which may be below the plan's kind
    /// (a ReplicaSet of the Deployment asked for): its controller owners are followed up.
    Named {
        namespace: String,
        kind: ResourceKind,
        name: String,
    },
}

/// Resolves `event.input[.path]` in the description: `None` when the path leads nowhere or to
/// null or "" (an error for the delivery, never "select everything").
fn resolve(description: &str, json: Option<&Value>, path: &str) -> Option<String> {
    let Some(path) = path.strip_prefix('.') else {
        return Some(description.to_string()).filter(|s| !s.is_empty());
    };
    let cur = super::event_input_lookup(json?, path)?;
    let s = match cur {
        Value::String(s) => s.clone(),
        Value::Null => return None,
        other => other.to_string(),
    };
    Some(s).filter(|s| !s.is_empty())
}

fn permanent(m: String) -> ActionError {
    ActionError::permanent(m)
}

impl KubernetesConfig {
    /// The plan for one event. Errors are permanent: the same event gives the same error.
    pub fn plan(&self, description: &str) -> Result<Plan, ActionError> {
        let json: Option<Value> = serde_json::from_str(description).ok();
        let json = json.as_ref();
        let value = |v: &str, what: &str, label: bool| -> Result<String, ActionError> {
            let Some(path) = v.strip_prefix("event.input") else {
                return Ok(v.to_string());
            };
            let got = resolve(description, json, path).ok_or_else(|| {
                permanent(format!(
                    "{what}: {v} resolves to nothing in the rendered event (is the template's result JSON with that field?)"
                ))
            })?;
            if label && !is_label_value(&got) {
                return Err(permanent(format!(
                    "{what}: {v} is {:?}, not a valid label value (at most 63 characters: letters, digits, `-_.`); refused",
                    super::truncate_chars(&got, 80)
                )));
            }
            Ok(got)
        };
        let mut labels = serde_json::Map::new();
        for (k, v) in &self.actions.labels {
            labels.insert(k.clone(), value(v, &format!("label {k}"), true)?.into());
        }
        let mut annotations = serde_json::Map::new();
        for (k, v) in &self.actions.annotations {
            annotations.insert(
                k.clone(),
                value(v, &format!("annotation {k}"), false)?.into(),
            );
        }
        let mut meta = serde_json::Map::new();
        if !labels.is_empty() {
            meta.insert("labels".into(), labels.into());
        }
        if !annotations.is_empty() {
            meta.insert("annotations".into(), annotations.into());
        }
        let patch = (!meta.is_empty()).then(|| json!({ "metadata": meta }));
        let (kind, target) = match &self.target {
            Target::Selector {
                namespace,
                selector,
            } => {
                let mut err = None;
                let sel = PLACEHOLDER.replace_all(selector, |caps: &regex::Captures| {
                    let path = caps.get(1).map_or("", |m| m.as_str());
                    let got = resolve(description, json, path);
                    match got {
                        Some(v) if is_label_value(&v) => v,
                        Some(v) => {
                            err.get_or_insert_with(|| permanent(format!(
                                "kube-label-selector: event.input{path} is {:?}, not a valid label value; refused",
                                super::truncate_chars(&v, 80)
                            )));
                            String::new()
                        }
                        None => {
                            err.get_or_insert_with(|| permanent(format!(
                                "kube-label-selector: event.input{path} resolves to nothing in the rendered event; refused (it would select more than meant)"
                            )));
                            String::new()
                        }
                    }
                });
                if let Some(e) = err {
                    return Err(e);
                }
                (
                    self.kind_or_pods(),
                    PlanTarget::Selector {
                        namespace: namespace.clone(),
                        selector: sel.into_owned(),
                    },
                )
            }
            Target::FromEvent { namespace: allowed } => {
                let (namespace, kind, name) = from_event(json)?;
                if let Some(a) = allowed
                    && *a != namespace
                {
                    return Err(permanent(format!(
                        "the event names namespace {namespace:?}, and this action may only act in {a:?} (kube-namespace)"
                    )));
                }
                (
                    self.kind.unwrap_or(kind),
                    PlanTarget::Named {
                        namespace,
                        kind,
                        name,
                    },
                )
            }
        };
        if self.actions.scale_to_zero && !kind.scalable() {
            return Err(permanent(format!(
                "scale-to-zero: the event names a {}, which has no scale subresource (set kube-resource-kind to its deployments, statefulsets or replicasets)",
                kind.kind()
            )));
        }
        if self.actions.delete && kind != ResourceKind::Pods {
            return Err(permanent(format!(
                "delete: the event names a {}; this action deletes pods only",
                kind.kind()
            )));
        }
        Ok(Plan {
            kind,
            target,
            patch,
            scale_to_zero: self.actions.scale_to_zero,
            delete: self.actions.delete,
        })
    }
}

/// Namespace, kind and name of the workload a trivy-operator report is about: its
/// `trivy-operator.resource.*` labels, else its controller owner reference. Checked to be
/// names, and a kind this action knows.
pub fn from_event(json: Option<&Value>) -> Result<(String, ResourceKind, String), ActionError> {
    let Some(json) = json else {
        return Err(permanent(
            "kube-target from-event: the rendered event is not JSON (use a template whose result is the report, e.g. raw-json)".into(),
        ));
    };
    let meta = &json["metadata"];
    let labels = &meta["labels"];
    let label = |k: &str| labels[k].as_str().map(str::to_string);
    let (ns, kind, name) = match (
        label("trivy-operator.resource.namespace"),
        label("trivy-operator.resource.kind"),
        label("trivy-operator.resource.name"),
    ) {
        (Some(ns), Some(kind), Some(name)) => (ns, kind, name),
        _ => {
            let owner = meta["ownerReferences"].as_array().and_then(|a| {
                a.iter()
                    .find(|o| o["controller"].as_bool() == Some(true))
                    .or(a.first())
            });
            match (meta["namespace"].as_str(), owner) {
                (Some(ns), Some(o)) => (
                    ns.to_string(),
                    o["kind"].as_str().unwrap_or_default().to_string(),
                    o["name"].as_str().unwrap_or_default().to_string(),
                ),
                _ => {
                    return Err(permanent(
                        "kube-target from-event: the event has no trivy-operator.resource.namespace/kind/name labels nor an owner reference (is it a trivy-operator report?)".into(),
                    ));
                }
            }
        }
    };
    if !is_namespace(&ns) {
        return Err(permanent(format!(
            "kube-target from-event: namespace {:?} from the event is not a namespace name; refused",
            super::truncate_chars(&ns, 80)
        )));
    }
    if !is_object_name(&name) {
        return Err(permanent(format!(
            "kube-target from-event: name {:?} from the event is not an object name; refused",
            super::truncate_chars(&name, 80)
        )));
    }
    let Some(k) = ResourceKind::from_kind(&kind) else {
        return Err(permanent(format!(
            "kube-target from-event: kind {:?} from the event is not one this action acts on (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, CronJob, Job)",
            super::truncate_chars(&kind, 80)
        )));
    };
    Ok((ns, k, name))
}

/// `?dryRun=All&fieldManager=postee` (writes).
fn write_query(dry_run: bool) -> String {
    if dry_run {
        format!("?dryRun=All&fieldManager={FIELD_MANAGER}")
    } else {
        format!("?fieldManager={FIELD_MANAGER}")
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Plan {
    /// The requests of this plan, as `postee render` shows them. `{name}`: each object found.
    pub fn requests(&self, dry_run: bool) -> Vec<Value> {
        let mut out = Vec::new();
        let (ns, name) = match &self.target {
            PlanTarget::Selector {
                namespace,
                selector,
            } => {
                let q = if selector.is_empty() {
                    String::new()
                } else {
                    format!("?labelSelector={}", percent_encode(selector))
                };
                out.push(json!({
                    "method": "GET",
                    "path": format!("{}{q}", self.kind.collection_path(namespace)),
                }));
                (namespace.clone(), "{name}".to_string())
            }
            PlanTarget::Named {
                namespace,
                kind,
                name,
            } => {
                if *kind != self.kind {
                    out.push(json!({
                        "method": "GET",
                        "path": format!("{}/{name}", kind.collection_path(namespace)),
                        "then": format!("follow controller ownerReferences up to a {}", self.kind.kind()),
                    }));
                    (namespace.clone(), "{name}".to_string())
                } else {
                    (namespace.clone(), name.clone())
                }
            }
        };
        let each = format!("{}/{name}", self.kind.collection_path(&ns));
        let q = write_query(dry_run);
        if let Some(p) = &self.patch {
            out.push(json!({
                "method": "PATCH",
                "path": format!("{each}{q}"),
                "headers": {"Content-Type": "application/merge-patch+json"},
                "body": p,
            }));
        }
        if self.scale_to_zero {
            out.push(json!({
                "method": "PATCH",
                "path": format!("{each}/scale{q}"),
                "headers": {"Content-Type": "application/merge-patch+json"},
                "body": {"spec": {"replicas": 0}},
            }));
        }
        if self.delete {
            let q = if dry_run { "?dryRun=All" } else { "" };
            out.push(json!({
                "method": "DELETE",
                "path": format!("{each}{q}"),
                "headers": {"Content-Type": "application/json"},
                "body": {"propagationPolicy": "Background"},
            }));
        }
        out
    }
}

/// The RBAC rights a plan needs, as `(verb, resource)`.
pub fn rbac_needs(
    kind: ResourceKind,
    actions: &KubeActions,
    from_event: bool,
) -> Vec<(&'static str, String)> {
    let mut v = Vec::new();
    if !from_event {
        v.push(("list", kind.plural().to_string()));
    }
    if !actions.labels.is_empty() || !actions.annotations.is_empty() {
        v.push(("patch", kind.plural().to_string()));
    }
    if actions.scale_to_zero {
        v.push(("patch", format!("{}/scale", kind.plural())));
    }
    if actions.delete {
        v.push(("delete", kind.plural().to_string()));
    }
    v
}

pub fn build(
    name: &str,
    cfg: KubernetesConfig,
    _: &BuildContext,
) -> Result<Arc<dyn Action>, String> {
    #[cfg(feature = "kubernetes")]
    {
        Ok(Arc::new(client::Kubernetes::new(name, cfg)))
    }
    #[cfg(not(feature = "kubernetes"))]
    {
        let _ = (name, cfg);
        Err("this postee was built without the kubernetes feature".into())
    }
}

/// What `postee render` shows for a plan.
#[cfg_attr(not(feature = "kubernetes"), allow(dead_code))]
fn preview_of(cfg: &KubernetesConfig, server: &str, msg: &Message) -> Value {
    match cfg.plan(&msg.content.description) {
        Ok(plan) => json!({
            "server": server,
            "dry_run": cfg.dry_run,
            "timeout": format!("{:?}", cfg.timeout),
            "kind": plan.kind.plural(),
            "requests": plan.requests(cfg.dry_run),
        }),
        Err(e) => json!({
            "server": server,
            "error": e.to_string(),
        }),
    }
}

#[cfg(feature = "kubernetes")]
mod client {
    use async_trait::async_trait;
    use kube::api::{
        Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams,
        PropagationPolicy,
    };
    use tokio::sync::OnceCell;

    use super::*;

    pub struct Kubernetes {
        name: String,
        cfg: KubernetesConfig,
        client: OnceCell<kube::Client>,
    }

    /// What failed, for messages and the RBAC right a 403 names.
    struct Op<'a> {
        verb: &'static str,
        resource: String,
        namespace: &'a str,
        name: Option<&'a str>,
    }

    fn classify(e: kube::Error, op: &Op) -> ActionError {
        let what = match op.name {
            Some(n) => format!("{} {} {}/{n}", op.verb, op.resource, op.namespace),
            None => format!("{} {} in {}", op.verb, op.resource, op.namespace),
        };
        match e {
            kube::Error::Api(s) => {
                let text = super::super::truncate_chars(&s.message, 500);
                match s.code {
                    403 => permanent(format!(
                        "{what}: forbidden (HTTP 403): the service account needs RBAC verb \"{}\" on resource \"{}\" in namespace \"{}\"; the API server said: {text}",
                        op.verb, op.resource, op.namespace
                    )),
                    401 => permanent(format!(
                        "{what}: unauthorized (HTTP 401): check the credentials of the kubeconfig or service account; the API server said: {text}"
                    )),
                    404 => permanent(format!("{what}: not found (HTTP 404): {text}")),
                    408 | 409 | 429 | 500..=599 => ActionError::transient(format!(
                        "{what}: HTTP {} {}: {text}",
                        s.code, s.reason
                    )),
                    code => permanent(format!("{what}: HTTP {code} {}: {text}", s.reason)),
                }
            }
            kube::Error::Auth(e) => permanent(format!("{what}: authentication failed: {e}")),
            kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => {
                ActionError::transient(format!("{what}: cannot reach the API server: {e}"))
            }
            other => permanent(format!("{what}: {other}")),
        }
    }

    fn api_resource(kind: ResourceKind) -> ApiResource {
        ApiResource {
            group: kind.group().to_string(),
            version: "v1".to_string(),
            api_version: kind.api_version().to_string(),
            kind: kind.kind().to_string(),
            plural: kind.plural().to_string(),
        }
    }

    impl Kubernetes {
        pub fn new(name: &str, cfg: KubernetesConfig) -> Kubernetes {
            Kubernetes {
                name: name.to_string(),
                cfg,
                client: OnceCell::new(),
            }
        }

        async fn client(&self) -> Result<&kube::Client, ActionError> {
            self.client
                .get_or_try_init(|| async {
                    let mut config = match &self.cfg.config_file {
                        Some(path) => {
                            let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| {
                                permanent(format!(
                                    "cannot read kubeconfig {path}{}",
                                    if e.to_string().contains("No such file") {
                                        ": no such file".to_string()
                                    } else {
                                        where_in(&e.to_string())
                                    }
                                ))
                            })?;
                            kube::Config::from_custom_kubeconfig(
                                kc,
                                &kube::config::KubeConfigOptions::default(),
                            )
                            .await
                            .map_err(|e| {
                                permanent(format!("kubeconfig {path} cannot be used: {e}"))
                            })?
                        }
                        None => kube::Config::incluster().map_err(|e| {
                            permanent(format!(
                                "no kube-config-file and the in-cluster service account cannot be used: {e}"
                            ))
                        })?,
                    };
                    config.connect_timeout = Some(self.cfg.timeout);
                    config.read_timeout = Some(self.cfg.timeout);
                    config.write_timeout = Some(self.cfg.timeout);
                    kube::Client::try_from(config)
                        .map_err(|e| permanent(format!("cannot set up the Kubernetes client: {e}")))
                })
                .await
        }

        fn api(&self, client: &kube::Client, ns: &str, kind: ResourceKind) -> Api<DynamicObject> {
            Api::namespaced_with(client.clone(), ns, &api_resource(kind))
        }

        /// From the object the report names up its controller owners to the plan's kind.
        async fn walk_up(
            &self,
            client: &kube::Client,
            ns: &str,
            mut kind: ResourceKind,
            mut name: String,
            want: ResourceKind,
        ) -> Result<String, ActionError> {
            for _ in 0..4 {
                if kind == want {
                    return Ok(name);
                }
                let obj = self.api(client, ns, kind).get(&name).await.map_err(|e| {
                    classify(
                        e,
                        &Op {
                            verb: "get",
                            resource: kind.plural().to_string(),
                            namespace: ns,
                            name: Some(&name),
                        },
                    )
                })?;
                let owner = obj
                    .metadata
                    .owner_references
                    .unwrap_or_default()
                    .into_iter()
                    .find(|o| o.controller == Some(true));
                let Some(next) = owner
                    .as_ref()
                    .and_then(|o| ResourceKind::from_kind(&o.kind))
                else {
                    return Err(permanent(format!(
                        "{} {ns}/{name} (named by the event) is not controlled by a {}",
                        kind.kind(),
                        want.kind()
                    )));
                };
                kind = next;
                name = owner.map(|o| o.name).unwrap_or_default();
            }
            Err(permanent(format!(
                "no {} found above the object the event names",
                want.kind()
            )))
        }

        async fn run(&self, msg: &Message) -> Result<(), ActionError> {
            let plan = self.cfg.plan(&msg.content.description)?;
            let client = self.client().await?;
            let kind = plan.kind;
            let (ns, names) = match &plan.target {
                PlanTarget::Selector {
                    namespace,
                    selector,
                } => {
                    let mut lp = ListParams::default();
                    if !selector.is_empty() {
                        lp = lp.labels(selector);
                    }
                    let list = self
                        .api(client, namespace, kind)
                        .list(&lp)
                        .await
                        .map_err(|e| {
                            classify(
                                e,
                                &Op {
                                    verb: "list",
                                    resource: kind.plural().to_string(),
                                    namespace,
                                    name: None,
                                },
                            )
                        })?;
                    let names: Vec<String> = list
                        .items
                        .into_iter()
                        .filter_map(|o| o.metadata.name)
                        .collect();
                    (namespace.clone(), names)
                }
                PlanTarget::Named {
                    namespace,
                    kind: named,
                    name,
                } => {
                    let n = self
                        .walk_up(client, namespace, *named, name.clone(), kind)
                        .await?;
                    (namespace.clone(), vec![n])
                }
            };
            if names.is_empty() {
                tracing::info!(action = %self.name, event_id = %msg.event_id, kind = kind.plural(), namespace = %ns, "kubernetes: nothing matched the selector; nothing to do");
                return Ok(());
            }
            let api = self.api(client, &ns, kind);
            let pp = PatchParams {
                dry_run: self.cfg.dry_run,
                field_manager: Some(FIELD_MANAGER.to_string()),
                ..PatchParams::default()
            };
            let mut errors: Vec<ActionError> = Vec::new();
            let mut done = Vec::new();
            for name in &names {
                let op = |verb, resource: String| Op {
                    verb,
                    resource,
                    namespace: &ns,
                    name: Some(name),
                };
                let mut ok = true;
                if let Some(p) = &plan.patch
                    && let Err(e) = api.patch(name, &pp, &Patch::Merge(p)).await
                {
                    errors.push(classify(e, &op("patch", kind.plural().to_string())));
                    ok = false;
                }
                if ok
                    && plan.scale_to_zero
                    && let Err(e) = api
                        .patch_scale(name, &pp, &Patch::Merge(json!({"spec": {"replicas": 0}})))
                        .await
                {
                    errors.push(classify(
                        e,
                        &op("patch", format!("{}/scale", kind.plural())),
                    ));
                    ok = false;
                }
                if ok && plan.delete {
                    let dp = DeleteParams {
                        dry_run: self.cfg.dry_run,
                        propagation_policy: Some(PropagationPolicy::Background),
                        ..DeleteParams::default()
                    };
                    if let Err(e) = api.delete(name, &dp).await {
                        errors.push(classify(e, &op("delete", kind.plural().to_string())));
                        ok = false;
                    }
                }
                if ok {
                    done.push(name.as_str());
                }
            }
            let what = [
                plan.patch.as_ref().map(|p| p.to_string()),
                plan.scale_to_zero.then(|| "scale to 0".to_string()),
                plan.delete.then(|| "delete".to_string()),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ");
            if self.cfg.dry_run {
                tracing::info!(action = %self.name, event_id = %msg.event_id, kind = kind.plural(), namespace = %ns, objects = ?done, change = %what, "kubernetes dry run (dryRun=All): would change these objects; nothing was changed");
            } else if !done.is_empty() {
                tracing::info!(action = %self.name, event_id = %msg.event_id, kind = kind.plural(), namespace = %ns, objects = ?done, change = %what, "kubernetes: changed");
            }
            if errors.is_empty() {
                return Ok(());
            }
            let n = errors.len();
            let transient = errors.iter().any(ActionError::is_transient);
            let text = errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            let text = format!("{n} of {} objects failed: {text}", names.len());
            Err(if transient {
                ActionError::transient(text)
            } else {
                permanent(text)
            })
        }

        fn server(&self) -> String {
            match &self.cfg.config_file {
                None => "in-cluster (KUBERNETES_SERVICE_HOST, service account token)".into(),
                Some(path) => {
                    let server = kube::config::Kubeconfig::read_from(path)
                        .ok()
                        .and_then(|kc| {
                            let ctx_name = kc.current_context.clone()?;
                            let ctx = kc
                                .contexts
                                .iter()
                                .find(|c| c.name == ctx_name)?
                                .context
                                .clone()?;
                            kc.clusters
                                .iter()
                                .find(|c| c.name == ctx.cluster)?
                                .cluster
                                .as_ref()?
                                .server
                                .clone()
                        });
                    match server {
                        Some(s) => format!("{s} (from {path})"),
                        None => format!("the current context of {path}"),
                    }
                }
            }
        }
    }

    #[async_trait]
    impl Action for Kubernetes {
        fn name(&self) -> &str {
            &self.name
        }

        fn kind(&self) -> &'static str {
            "kubernetes"
        }

        async fn send(&self, msg: &Message) -> Result<(), ActionError> {
            match tokio::time::timeout(self.cfg.timeout, self.run(msg)).await {
                Ok(r) => r,
                Err(_) => Err(ActionError::transient(format!(
                    "the Kubernetes requests did not finish within {:?}",
                    self.cfg.timeout
                ))),
            }
        }

        fn preview(&self, msg: &Message) -> Value {
            preview_of(&self.cfg, &self.server(), msg)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FieldValue;

    fn fields(pairs: &[(&str, FieldValue)]) -> Fields {
        let mut f = Fields::new(KEYS);
        for (k, v) in pairs {
            f.set(k, v.clone());
        }
        f
    }

    fn labels(pairs: &[(&str, &str)]) -> FieldValue {
        FieldValue::Kube(KubeActions {
            labels: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..KubeActions::default()
        })
    }

    fn s(v: &str) -> FieldValue {
        FieldValue::Str(v.into())
    }

    #[test]
    fn names_and_label_values_follow_kubernetes_rules() {
        for ok in ["", "a", "A-b_c.9", &"x".repeat(63)] {
            assert!(is_label_value(ok), "{ok}");
        }
        for bad in ["-a", "a-", "a b", "a/b", "alpine:3.10", &"x".repeat(64)] {
            assert!(!is_label_value(bad), "{bad}");
        }
        assert!(is_qualified_name("postee.io/vulnerable"));
        assert!(is_qualified_name("app"));
        assert!(!is_qualified_name("/app"));
        assert!(!is_qualified_name("Postee.IO/x"));
        assert!(is_namespace("kube-system") && !is_namespace("Default"));
        assert!(is_object_name("nginx-6d4cf56db6") && !is_object_name("a_b"));
    }

    #[test]
    fn validate_checks_every_key_with_its_path() {
        let v = validate(&fields(&[
            ("kube-namespace", s("Prod")),
            ("kube-config-file", s("/nonexistent/kubeconfig")),
            ("kube-resource-kind", s("widgets")),
            ("kube-target", s("everything")),
            (
                "kube-actions",
                FieldValue::Kube(KubeActions {
                    labels: [("bad key!".to_string(), "x y".to_string())].into(),
                    delete: true,
                    ..KubeActions::default()
                }),
            ),
        ]));
        let errs: Vec<String> = v
            .config
            .unwrap_err()
            .iter()
            .map(|e| format!("{}: {}", e.key, e.message))
            .collect();
        for want in [
            "kube-target: unknown target",
            "kube-namespace: \"Prod\" is not a namespace",
            "kube-resource-kind: unknown kind \"widgets\"",
            "kube-actions.labels: \"bad key!\" is not a valid key",
            "kube-actions.labels: value \"x y\"",
            "kube-label-selector: scale-to-zero and delete need a label selector",
        ] {
            assert!(errs.iter().any(|e| e.starts_with(want)), "{want}: {errs:?}");
        }
        assert_eq!(v.warnings[0].key, "kube-config-file");
        // scale-to-zero needs a scalable kind; from-event needs no namespace.
        let v = validate(&fields(&[
            ("kube-config-file", s("/nonexistent/k")),
            ("kube-target", s("from-event")),
            ("kube-resource-kind", s("deployments")),
            (
                "kube-actions",
                FieldValue::Kube(KubeActions {
                    scale_to_zero: true,
                    ..KubeActions::default()
                }),
            ),
        ]));
        let cfg = v.config.unwrap();
        assert_eq!(cfg.target, Target::FromEvent { namespace: None });
        let errs = validate(&fields(&[
            ("kube-namespace", s("default")),
            ("kube-config-file", s("/nonexistent/k")),
            ("kube-label-selector", s("app=web")),
            (
                "kube-actions",
                FieldValue::Kube(KubeActions {
                    scale_to_zero: true,
                    ..KubeActions::default()
                }),
            ),
        ]))
        .config
        .unwrap_err();
        assert_eq!(errs[0].key, "kube-actions.scale-to-zero", "{errs:?}");
    }

    #[test]
    fn a_kubeconfig_that_is_not_one_is_an_error_that_does_not_quote_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, "clusters: [\n  token: s3cr3t-value\n").unwrap();
        let v = validate(&fields(&[
            ("kube-namespace", s("default")),
            ("kube-config-file", s(p.to_str().unwrap())),
            ("kube-actions", labels(&[("a", "b")])),
        ]));
        let errs = v.config.unwrap_err();
        assert_eq!(errs[0].key, "kube-config-file");
        assert!(errs[0].message.contains("is not a valid kubeconfig"));
        assert!(!errs[0].message.contains("s3cr3t"), "{:?}", errs[0]);
    }

    fn selector_cfg(selector: &str, acts: FieldValue) -> KubernetesConfig {
        validate(&fields(&[
            ("kube-namespace", s("default")),
            ("kube-config-file", s("/nonexistent/k")),
            ("kube-label-selector", s(selector)),
            ("kube-actions", acts),
        ]))
        .config
        .unwrap()
    }

    #[test]
    fn event_input_resolves_or_fails_never_selects_everything() {
        let cfg = selector_cfg(
            "app=event.input.app,tier in (fe)",
            labels(&[("sev", "event.input.severity"), ("fixed", "yes")]),
        );
        let plan = cfg.plan(r#"{"app":"web","severity":"CRITICAL"}"#).unwrap();
        assert_eq!(
            plan.target,
            PlanTarget::Selector {
                namespace: "default".into(),
                selector: "app=web,tier in (fe)".into()
            }
        );
        assert_eq!(
            plan.patch,
            Some(json!({"metadata": {"labels": {"sev": "CRITICAL", "fixed": "yes"}}}))
        );
        // Postee selects every pod here: we refuse.
        let e = cfg.plan(r#"{"severity":"CRITICAL"}"#).unwrap_err();
        assert!(!e.is_transient());
        assert!(e.to_string().contains("resolves to nothing"), "{e}");
        let e = cfg.plan("not json").unwrap_err();
        assert!(e.to_string().contains("resolves to nothing"), "{e}");
        // Values that are not label values are refused, in the selector and in labels.
        let e = cfg
            .plan(r#"{"app":"web, tier notin (x)","severity":"HIGH"}"#)
            .unwrap_err();
        assert!(e.to_string().contains("not a valid label value"), "{e}");
        let e = cfg.plan(r#"{"app":"web","severity":"a b"}"#).unwrap_err();
        assert!(e.to_string().contains("label sev"), "{e}");
        // Annotations take any text; objects come as JSON.
        let cfg = selector_cfg(
            "app=web",
            FieldValue::Kube(KubeActions {
                annotations: [("counts".to_string(), "event.input.summary".to_string())].into(),
                ..KubeActions::default()
            }),
        );
        let plan = cfg.plan(r#"{"summary":{"critical":2}}"#).unwrap();
        assert_eq!(
            plan.patch,
            Some(json!({"metadata": {"annotations": {"counts": "{\"critical\":2}"}}}))
        );
    }

    #[test]
    fn from_event_reads_trivy_operator_labels_then_owner_and_checks_them() {
        let report = include_str!("../../tests/fixtures/events/trivy-operator-vulnreport.json");
        let v: Value = serde_json::from_str(report).unwrap();
        assert_eq!(
            from_event(Some(&v)).unwrap(),
            (
                "default".into(),
                ResourceKind::ReplicaSets,
                "nginx-6d4cf56db6".into()
            )
        );
        let mut no_labels = v.clone();
        no_labels["metadata"]["labels"] = json!({});
        assert_eq!(from_event(Some(&no_labels)).unwrap().2, "nginx-6d4cf56db6");
        let mut bad = v.clone();
        bad["metadata"]["labels"]["trivy-operator.resource.namespace"] = json!("../x");
        assert!(from_event(Some(&bad)).is_err());
        bad["metadata"]["labels"]["trivy-operator.resource.namespace"] = json!("default");
        bad["metadata"]["labels"]["trivy-operator.resource.kind"] = json!("Secret");
        assert!(
            from_event(Some(&bad))
                .unwrap_err()
                .to_string()
                .contains("Secret")
        );
        // kube-namespace limits the namespace an event may name.
        let cfg = validate(&fields(&[
            ("kube-namespace", s("prod")),
            ("kube-config-file", s("/nonexistent/k")),
            ("kube-target", s("from-event")),
            ("kube-resource-kind", s("deployments")),
            ("kube-actions", labels(&[("postee.io/vulnerable", "true")])),
        ]))
        .config
        .unwrap();
        assert!(
            cfg.plan(report)
                .unwrap_err()
                .to_string()
                .contains("\"prod\"")
        );
    }

    #[test]
    fn requests_show_list_then_patches_with_dry_run() {
        let cfg = selector_cfg("tier in (fe)", labels(&[("a", "b")]));
        let plan = cfg.plan("{}").unwrap();
        let r = plan.requests(true);
        assert_eq!(
            r[0]["path"],
            "/api/v1/namespaces/default/pods?labelSelector=tier%20in%20%28fe%29"
        );
        assert_eq!(
            r[1]["path"],
            "/api/v1/namespaces/default/pods/{name}?dryRun=All&fieldManager=postee"
        );
        assert_eq!(
            rbac_needs(
                ResourceKind::Deployments,
                &KubeActions {
                    scale_to_zero: true,
                    ..Default::default()
                },
                false
            ),
            vec![
                ("list", "deployments".to_string()),
                ("patch", "deployments/scale".to_string())
            ]
        );
    }

    /// The rules docs/actions.md lists for the shipped manifests grant every right any
    /// kube-action on any kind needs (and `get` on replicasets, to go from a trivy-operator
    /// report on a ReplicaSet to its Deployment).
    #[test]
    fn the_documented_rbac_rules_cover_every_kube_action() {
        let text = include_str!("../../docs/actions.md");
        let start = text.find("| resource (API group) | verbs |").unwrap();
        let mut rules: Vec<(String, Vec<String>)> = Vec::new();
        for line in text[start..].lines().skip(2) {
            if !line.starts_with('|') {
                break;
            }
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            let resource = cells[0].split('`').nth(1).unwrap().to_string();
            let verbs = cells[1]
                .split(',')
                .map(|v| v.trim().trim_matches('`').to_string())
                .collect();
            rules.push((resource, verbs));
        }
        let grants = |verb: &str, resource: &str| {
            rules
                .iter()
                .any(|(r, vs)| r == resource && vs.iter().any(|v| v == verb))
        };
        for kind in ResourceKind::ALL {
            let mut sets = vec![KubeActions {
                labels: [("a".to_string(), "b".to_string())].into(),
                ..KubeActions::default()
            }];
            if kind.scalable() {
                sets.push(KubeActions {
                    scale_to_zero: true,
                    ..KubeActions::default()
                });
            }
            if kind == ResourceKind::Pods {
                sets.push(KubeActions {
                    delete: true,
                    ..KubeActions::default()
                });
            }
            for acts in &sets {
                for from_event in [false, true] {
                    for (verb, resource) in rbac_needs(kind, acts, from_event) {
                        assert!(
                            grants(verb, &resource),
                            "docs/actions.md lacks {verb} on {resource}"
                        );
                    }
                }
            }
        }
        assert!(grants("get", "replicasets"));
    }
}
