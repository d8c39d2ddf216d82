//! The kubernetes action against a loopback fake of the Kubernetes API server, and that fake
//! cross-checked with the real `kubectl`: the same changes made by kubectl must give the same
//! objects, so the fake cannot drift from what a real server and client agree on.
//!
//! The fake (`FakeApi`) implements what the action and kubectl use, with the API's documented
//! semantics: discovery (`/version`, `/api`, `/apis`, `/api/v1`, `/apis/apps/v1`,
//! `/apis/batch/v1`), list with `labelSelector` (equality and set-based: `=`, `==`, `!=`,
//! `in`, `notin`, `key`, `!key`), get, PATCH with `application/merge-patch+json` (RFC 7386)
//! and `application/strategic-merge-patch+json` (for the maps and scalars kubectl patches it
//! is the same merge; other patch types answer 415), the `scale` subresource (`autoscaling/v1`
//! Scale), DELETE with a `DeleteOptions` body (`propagationPolicy`; Background and Foreground
//! delete the dependents, Orphan strips their owner reference), `dryRun=All` (checked, not
//! stored), a global `resourceVersion` that every write increments, a bearer token, and
//! errors as `Status` objects (401, 403, 404, 409, 415, 422). Tests can forbid a (verb,
//! resource) pair, as a missing RBAC rule does, or make the next writes conflict.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use crate::common::*;

const TOKEN: &str = "fake-sa-token-1";

// ---------------------------------------------------------------------------------------
// The fake API server.

#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
}

#[derive(Default)]
struct FakeState {
    /// (plural, namespace, name) → object.
    objects: BTreeMap<(String, String, String), Value>,
    rv: u64,
    uid: u64,
    requests: Vec<Req>,
    /// (verb, resource) pairs the service account lacks.
    forbidden: Vec<(String, String)>,
    /// The next writes answered with 409 Conflict.
    conflicts: u32,
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<FakeState>>);

pub struct FakeApi {
    pub port: u16,
    /// The CA that signed the server's certificate (kubectl sends a bearer token over TLS only).
    ca_pem: String,
    state: Shared,
    _thread: std::thread::JoinHandle<()>,
}

struct Res {
    plural: &'static str,
    group: &'static str,
    kind: &'static str,
    scalable: bool,
}

const RESOURCES: &[Res] = &[
    Res {
        plural: "pods",
        group: "",
        kind: "Pod",
        scalable: false,
    },
    Res {
        plural: "deployments",
        group: "apps",
        kind: "Deployment",
        scalable: true,
    },
    Res {
        plural: "statefulsets",
        group: "apps",
        kind: "StatefulSet",
        scalable: true,
    },
    Res {
        plural: "replicasets",
        group: "apps",
        kind: "ReplicaSet",
        scalable: true,
    },
    Res {
        plural: "daemonsets",
        group: "apps",
        kind: "DaemonSet",
        scalable: false,
    },
    Res {
        plural: "jobs",
        group: "batch",
        kind: "Job",
        scalable: false,
    },
    Res {
        plural: "cronjobs",
        group: "batch",
        kind: "CronJob",
        scalable: false,
    },
];

fn res(plural: &str) -> Option<&'static Res> {
    RESOURCES.iter().find(|r| r.plural == plural)
}

fn api_version(group: &str) -> String {
    if group.is_empty() {
        "v1".into()
    } else {
        format!("{group}/v1")
    }
}

fn status(code: u16, reason: &str, message: String, details: Value) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "details": details, "code": code,
    });
    (
        StatusCode::from_u16(code).unwrap(),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn ok(v: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().unwrap();
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn label_value_ok(s: &str) -> bool {
    s.len() <= 63
        && (s.is_empty()
            || (s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                && s.starts_with(|c: char| c.is_ascii_alphanumeric())
                && s.ends_with(|c: char| c.is_ascii_alphanumeric())))
}

fn key_ok(k: &str) -> bool {
    let (prefix, name) = k.rsplit_once('/').map_or((None, k), |(p, n)| (Some(p), n));
    prefix.is_none_or(|p| {
        !p.is_empty()
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            })
    }) && !name.is_empty()
        && label_value_ok(name)
}

/// One requirement of a label selector.
#[derive(Debug)]
enum Requirement {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// Parses a label selector as the API server does (`k8s.io/apimachinery/pkg/labels`).
fn parse_selector(s: &str) -> Result<Vec<Requirement>, String> {
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() || !parts.is_empty() {
        parts.push(cur);
    }
    let mut out = Vec::new();
    for p in parts {
        let p = p.trim();
        let set = |rest: &str| -> Result<Vec<String>, String> {
            let inner = rest
                .trim()
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or(format!("bad set in {p:?}"))?;
            Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
        };
        let r = if let Some(k) = p.strip_prefix('!') {
            Requirement::NotExists(k.trim().to_string())
        } else if let Some((k, v)) = p.split_once("!=") {
            Requirement::Ne(k.trim().into(), v.trim().into())
        } else if let Some((k, v)) = p.split_once("==") {
            Requirement::Eq(k.trim().into(), v.trim().into())
        } else if let Some((k, v)) = p.split_once('=') {
            Requirement::Eq(k.trim().into(), v.trim().into())
        } else if let Some((k, rest)) = p.split_once(" notin ") {
            Requirement::NotIn(k.trim().into(), set(rest)?)
        } else if let Some((k, rest)) = p.split_once(" in ") {
            Requirement::In(k.trim().into(), set(rest)?)
        } else {
            Requirement::Exists(p.to_string())
        };
        let (key, values): (&String, Vec<&String>) = match &r {
            Requirement::Eq(k, v) | Requirement::Ne(k, v) => (k, vec![v]),
            Requirement::In(k, vs) | Requirement::NotIn(k, vs) => (k, vs.iter().collect()),
            Requirement::Exists(k) | Requirement::NotExists(k) => (k, vec![]),
        };
        if !key_ok(key) || values.iter().any(|v| !label_value_ok(v)) {
            return Err(format!("unable to parse requirement: {p:?}"));
        }
        out.push(r);
    }
    Ok(out)
}

fn selects(reqs: &[Requirement], labels: &Value) -> bool {
    let get = |k: &str| labels.get(k).and_then(Value::as_str);
    reqs.iter().all(|r| match r {
        Requirement::Eq(k, v) => get(k) == Some(v),
        Requirement::Ne(k, v) => get(k) != Some(v),
        Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
        Requirement::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
        Requirement::Exists(k) => get(k).is_some(),
        Requirement::NotExists(k) => get(k).is_none(),
    })
}

fn query_map(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| {
                let b = s.as_bytes();
                let mut out = Vec::new();
                let mut i = 0;
                while i < b.len() {
                    match b[i] {
                        b'%' if i + 2 < b.len() => {
                            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                            i += 3;
                        }
                        b'+' => {
                            out.push(b' ');
                            i += 1;
                        }
                        c => {
                            out.push(c);
                            i += 1;
                        }
                    }
                }
                String::from_utf8(out).unwrap()
            };
            (dec(k), dec(v))
        })
        .collect()
}

fn discovery(path: &str, port: u16) -> Option<Value> {
    let resources = |group: &str| -> Value {
        let mut list = Vec::new();
        for r in RESOURCES.iter().filter(|r| r.group == group) {
            let short = match r.plural {
                "pods" => vec!["po"],
                "deployments" => vec!["deploy"],
                "replicasets" => vec!["rs"],
                "statefulsets" => vec!["sts"],
                "daemonsets" => vec!["ds"],
                "cronjobs" => vec!["cj"],
                _ => vec![],
            };
            list.push(json!({
                "name": r.plural, "singularName": r.kind.to_lowercase(), "namespaced": true,
                "kind": r.kind, "shortNames": short,
                "verbs": ["create","delete","deletecollection","get","list","patch","update","watch"],
            }));
            if r.scalable {
                list.push(json!({
                    "name": format!("{}/scale", r.plural), "singularName": "", "namespaced": true,
                    "group": "autoscaling", "version": "v1", "kind": "Scale",
                    "verbs": ["get","patch","update"],
                }));
            }
        }
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": api_version(group), "resources": list})
    };
    Some(match path {
        "/version" => {
            json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0", "platform": "linux/amd64"})
        }
        "/api" => json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": format!("127.0.0.1:{port}")}]}),
        "/apis" => {
            let groups: Vec<Value> = ["apps", "batch"]
                .iter()
                .map(|g| {
                    json!({"name": g, "versions": [{"groupVersion": format!("{g}/v1"), "version": "v1"}],
                           "preferredVersion": {"groupVersion": format!("{g}/v1"), "version": "v1"}})
                })
                .collect();
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        }
        "/api/v1" => resources(""),
        "/apis/apps/v1" => resources("apps"),
        "/apis/batch/v1" => resources("batch"),
        _ => return None,
    })
}

fn scale_of(obj: &Value) -> Value {
    let replicas = obj["spec"]["replicas"].as_i64().unwrap_or(1);
    let sel = obj["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"],
            "uid": obj["metadata"]["uid"], "resourceVersion": obj["metadata"]["resourceVersion"],
            "creationTimestamp": obj["metadata"]["creationTimestamp"],
        },
        "spec": {"replicas": replicas},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(replicas), "selector": sel},
    })
}

async fn handle(
    State(st): State<(Shared, u16)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (shared, port) = st;
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body_json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut s = shared.0.lock().unwrap();
    s.requests.push(Req {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        content_type: content_type.clone(),
        body: body_json.clone(),
    });
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    // `/version` is public (the `system:public-info-viewer` role); kubectl's dispatcher asks
    // it without credentials.
    if auth != Some(&format!("Bearer {TOKEN}")) && path != "/version" {
        return status(401, "Unauthorized", "Unauthorized".into(), json!({}));
    }
    if method == Method::GET
        && let Some(v) = discovery(&path, port)
    {
        return ok(v);
    }
    // /api/v1/namespaces/{ns}/{plural}[/{name}[/scale]] or /apis/{g}/v1/namespaces/...
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let rest = match segs.as_slice() {
        ["api", "v1", rest @ ..] => rest,
        ["apis", _, "v1", rest @ ..] => rest,
        _ => {
            return status(
                404,
                "NotFound",
                "the server could not find the requested resource".into(),
                json!({}),
            );
        }
    };
    let (ns, plural, name, sub) = match rest {
        ["namespaces", ns, plural] => (*ns, *plural, None, None),
        ["namespaces", ns, plural, name] => (*ns, *plural, Some(*name), None),
        ["namespaces", ns, plural, name, sub] => (*ns, *plural, Some(*name), Some(*sub)),
        _ => {
            return status(
                404,
                "NotFound",
                "the server could not find the requested resource".into(),
                json!({}),
            );
        }
    };
    let Some(r) = res(plural) else {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
            json!({}),
        );
    };
    let expected_prefix = if r.group.is_empty() {
        "api".to_string()
    } else {
        format!("apis/{}", r.group)
    };
    if !path.trim_start_matches('/').starts_with(&expected_prefix) {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
            json!({}),
        );
    }
    if sub.is_some_and(|s| s != "scale" || !r.scalable) {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
            json!({}),
        );
    }
    let q = query_map(&query);
    let verb = match (method.as_str(), name) {
        ("GET", None) => "list",
        ("GET", Some(_)) => "get",
        ("PATCH", Some(_)) => "patch",
        ("PUT", Some(_)) => "update",
        ("DELETE", Some(_)) => "delete",
        _ => {
            return status(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource".into(),
                json!({}),
            );
        }
    };
    let resource = match sub {
        Some(sub) => format!("{plural}/{sub}"),
        None => plural.to_string(),
    };
    if s.forbidden
        .iter()
        .any(|(v, res)| v == verb && *res == resource)
    {
        let who = match name {
            Some(n) => format!("{plural} \"{n}\" is forbidden"),
            None => format!("{plural} is forbidden"),
        };
        return status(
            403,
            "Forbidden",
            format!(
                "{who}: User \"system:serviceaccount:postee:postee\" cannot {verb} resource \"{resource}\" in API group \"{}\" in the namespace \"{ns}\"",
                r.group
            ),
            json!({"name": name.unwrap_or(""), "kind": plural}),
        );
    }
    let qualified = if r.group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{}", r.group)
    };
    let not_found = |name: &str| {
        status(
            404,
            "NotFound",
            format!("{qualified} \"{name}\" not found"),
            json!({"name": name, "group": r.group, "kind": plural}),
        )
    };
    let dry_run = q.get("dryRun").is_some_and(|v| v == "All")
        || body_json["dryRun"]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == "All"));
    let key = |n: &str| (plural.to_string(), ns.to_string(), n.to_string());
    match verb {
        "list" => {
            let reqs = match q
                .get("labelSelector")
                .map(|sel| parse_selector(sel.as_str()))
            {
                None => Vec::new(),
                Some(Ok(r)) => r,
                Some(Err(e)) => return status(400, "BadRequest", e, json!({})),
            };
            let items: Vec<Value> = s
                .objects
                .iter()
                .filter(|((p, n, _), _)| p == plural && n == ns)
                .filter(|(_, o)| selects(&reqs, &o["metadata"]["labels"]))
                .map(|(_, o)| {
                    let mut o = o.clone();
                    // Items of a list carry no kind/apiVersion.
                    o.as_object_mut().unwrap().remove("kind");
                    o.as_object_mut().unwrap().remove("apiVersion");
                    o
                })
                .collect();
            ok(
                json!({"kind": format!("{}List", r.kind), "apiVersion": api_version(r.group),
                "metadata": {"resourceVersion": s.rv.to_string()}, "items": items}),
            )
        }
        "get" => {
            let name = name.unwrap();
            match s.objects.get(&key(name)) {
                Some(o) if sub.is_some() => ok(scale_of(o)),
                Some(o) => ok(o.clone()),
                None => not_found(name),
            }
        }
        "patch" | "update" | "delete" => {
            let name = name.unwrap();
            let Some(current) = s.objects.get(&key(name)).cloned() else {
                return not_found(name);
            };
            if s.conflicts > 0 {
                s.conflicts -= 1;
                return status(
                    409,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on {qualified} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
                    ),
                    json!({"name": name, "group": r.group, "kind": plural}),
                );
            }
            if verb == "delete" {
                let policy = body_json["propagationPolicy"]
                    .as_str()
                    .unwrap_or("Background");
                if !["Orphan", "Background", "Foreground"].contains(&policy) {
                    return status(
                        422,
                        "Invalid",
                        format!(
                            "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"{policy}\""
                        ),
                        json!({}),
                    );
                }
                if !dry_run {
                    s.objects.remove(&key(name));
                    s.rv += 1;
                    let uid = current["metadata"]["uid"].clone();
                    delete_dependents(&mut s, &uid, policy);
                }
                return ok(current);
            }
            let mut view = if sub.is_some() {
                scale_of(&current)
            } else {
                current.clone()
            };
            if verb == "patch" {
                let ct = content_type.split(';').next().unwrap_or("").trim();
                if ct != "application/merge-patch+json"
                    && ct != "application/strategic-merge-patch+json"
                {
                    return status(
                        415,
                        "UnsupportedMediaType",
                        format!(
                            "the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json (got {ct})"
                        ),
                        json!({}),
                    );
                }
                if !body_json.is_object() {
                    return status(
                        400,
                        "BadRequest",
                        "the patch is not a JSON object".into(),
                        json!({}),
                    );
                }
                merge(&mut view, &body_json);
            } else {
                if body_json["metadata"]["resourceVersion"]
                    != current["metadata"]["resourceVersion"]
                {
                    return status(
                        409,
                        "Conflict",
                        format!(
                            "Operation cannot be fulfilled on {plural} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
                        ),
                        json!({"name": name, "kind": plural}),
                    );
                }
                view = body_json.clone();
            }
            if let Some(rv) = body_json["metadata"]["resourceVersion"].as_str()
                && Some(rv) != current["metadata"]["resourceVersion"].as_str()
            {
                return status(
                    409,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on {plural} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
                    ),
                    json!({"name": name, "kind": plural}),
                );
            }
            let mut updated = current.clone();
            if sub.is_some() {
                let Some(n) = view["spec"]["replicas"].as_i64().filter(|n| *n >= 0) else {
                    return status(
                        422,
                        "Invalid",
                        format!(
                            "Scale.autoscaling \"{name}\" is invalid: spec.replicas: Invalid value: must be greater than or equal to 0"
                        ),
                        json!({}),
                    );
                };
                updated["spec"]["replicas"] = json!(n);
            } else {
                updated = view;
                // Immutable identity.
                for f in ["name", "namespace", "uid", "creationTimestamp"] {
                    updated["metadata"][f] = current["metadata"][f].clone();
                }
                for map in ["labels", "annotations"] {
                    if let Some(m) = updated["metadata"][map].as_object() {
                        for (k, v) in m {
                            let bad_value =
                                map == "labels" && !v.as_str().is_some_and(label_value_ok);
                            if !key_ok(k) || bad_value || !v.is_string() {
                                return status(
                                    422,
                                    "Invalid",
                                    format!(
                                        "{} \"{name}\" is invalid: metadata.{map}: Invalid value: {v}",
                                        r.kind
                                    ),
                                    json!({"name": name, "kind": r.kind}),
                                );
                            }
                        }
                    }
                }
            }
            if updated == current && sub.is_none() {
                return ok(current);
            }
            if !dry_run {
                s.rv += 1;
                updated["metadata"]["resourceVersion"] = json!(s.rv.to_string());
                s.objects.insert(key(name), updated.clone());
            }
            if sub.is_some() {
                ok(scale_of(&updated))
            } else {
                ok(updated)
            }
        }
        _ => unreachable!(),
    }
}

fn delete_dependents(s: &mut FakeState, uid: &Value, policy: &str) {
    let deps: Vec<(String, String, String)> = s
        .objects
        .iter()
        .filter(|(_, o)| {
            o["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|a| a.iter().any(|r| r["uid"] == *uid))
        })
        .map(|(k, _)| k.clone())
        .collect();
    for k in deps {
        if policy == "Orphan" {
            let o = s.objects.get_mut(&k).unwrap();
            let refs: Vec<Value> = o["metadata"]["ownerReferences"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["uid"] != *uid)
                .cloned()
                .collect();
            o["metadata"]["ownerReferences"] = json!(refs);
        } else if let Some(o) = s.objects.remove(&k) {
            let uid = o["metadata"]["uid"].clone();
            delete_dependents(s, &uid, policy);
        }
    }
}

impl FakeApi {
    pub fn start() -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (ca_pem, cert_pem, key_pem) = test_ca_and_server_cert();
        let state = Shared::default();
        let st = (state.clone(), port);
        let thread = std::thread::spawn(move || {
            block_on(async move {
                postee::install_crypto_provider();
                let app = axum::Router::new().fallback(handle).with_state(st);
                let config = axum_server::tls_rustls::RustlsConfig::from_pem(
                    cert_pem.into_bytes(),
                    key_pem.into_bytes(),
                )
                .await
                .unwrap();
                axum_server::from_tcp_rustls(listener, config)
                    .unwrap()
                    .serve(app.into_make_service())
                    .await
                    .unwrap();
            })
        });
        FakeApi {
            port,
            ca_pem,
            state,
            _thread: thread,
        }
    }

    /// Stores an object (kind and apiVersion from its resource), giving it a uid, a
    /// resourceVersion and a creation time.
    pub fn add(&self, plural: &str, mut obj: Value) -> Value {
        let r = res(plural).unwrap();
        let mut s = self.state.0.lock().unwrap();
        s.rv += 1;
        s.uid += 1;
        obj["kind"] = json!(r.kind);
        obj["apiVersion"] = json!(api_version(r.group));
        let m = &mut obj["metadata"];
        if m["uid"].is_null() {
            m["uid"] = json!(format!("00000000-0000-4000-8000-{:012}", s.uid));
        }
        m["resourceVersion"] = json!(s.rv.to_string());
        m["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        if m["namespace"].is_null() {
            m["namespace"] = json!("default");
        }
        let key = (
            plural.to_string(),
            m["namespace"].as_str().unwrap().to_string(),
            m["name"].as_str().unwrap().to_string(),
        );
        s.objects.insert(key, obj.clone());
        obj
    }

    pub fn object(&self, plural: &str, ns: &str, name: &str) -> Option<Value> {
        let s = self.state.0.lock().unwrap();
        s.objects
            .get(&(plural.to_string(), ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Every object, without the fields that differ between two equal histories of writes
    /// (`resourceVersion`, `generation`).
    pub fn snapshot(&self) -> BTreeMap<String, Value> {
        let s = self.state.0.lock().unwrap();
        s.objects
            .iter()
            .map(|((p, n, name), o)| {
                let mut o = o.clone();
                o["metadata"]
                    .as_object_mut()
                    .unwrap()
                    .remove("resourceVersion");
                o["metadata"].as_object_mut().unwrap().remove("generation");
                (format!("{p}/{n}/{name}"), o)
            })
            .collect()
    }

    pub fn rv(&self) -> u64 {
        self.state.0.lock().unwrap().rv
    }

    /// Requests for objects (discovery left out).
    pub fn requests(&self) -> Vec<Req> {
        self.state
            .0
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|r| r.path.contains("/namespaces/"))
            .cloned()
            .collect()
    }

    pub fn clear_requests(&self) {
        self.state.0.lock().unwrap().requests.clear();
    }

    pub fn forbid(&self, verb: &str, resource: &str) {
        self.state
            .0
            .lock()
            .unwrap()
            .forbidden
            .push((verb.into(), resource.into()));
    }

    pub fn conflict_next(&self, n: u32) {
        self.state.0.lock().unwrap().conflicts = n;
    }

    /// A kubeconfig for this server with the fake's token, in `dir`.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let p = dir.join("kubeconfig");
        std::fs::write(
            &p,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: https://127.0.0.1:{}\n    certificate-authority-data: {}\n\
                 users:\n- name: sa\n  user:\n    token: {TOKEN}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: sa\n    namespace: default\n\
                 current-context: fake\n",
                self.port,
                base64::engine::general_purpose::STANDARD.encode(&self.ca_pem),
            ),
        )
        .unwrap();
        p
    }
}

fn kubectl_bin() -> &'static str {
    if Path::new("/usr/bin/kubectl").exists() {
        "/usr/bin/kubectl"
    } else {
        "kubectl"
    }
}

/// A CA and a certificate for 127.0.0.1 signed by it, as PEM: (ca, cert, key).
fn test_ca_and_server_cert() -> (String, String, String) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "fake kube-apiserver CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kube-apiserver");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// The real kubectl against a fake, with its own kubeconfig and cache.
struct Kubectl {
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl Kubectl {
    fn new(api: &FakeApi) -> Kubectl {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = api.kubeconfig(dir.path());
        Kubectl { dir, kubeconfig }
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new(kubectl_bin())
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .env("HOME", self.dir.path())
            .output()
            .unwrap_or_else(|e| {
                panic!("kubectl must be installed (scripts/test installs kubernetes-client): {e}")
            });
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "kubectl {args:?} failed:\n{text}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Names kubectl lists with a selector.
    fn names(&self, kind: &str, selector: &str) -> Vec<String> {
        let out = self.run(&["get", kind, "-l", selector, "-o", "name"]);
        out.lines()
            .map(|l| l.rsplit('/').next().unwrap().to_string())
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// Fixtures.

fn pod(name: &str, labels: Value) -> Value {
    json!({"metadata": {"name": name, "labels": labels},
           "spec": {"containers": [{"name": "app", "image": "registry.example/web:1.0"}]}})
}

fn deployment(name: &str, labels: Value, replicas: i64) -> Value {
    json!({"metadata": {"name": name, "labels": labels},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}},
                                 "spec": {"containers": [{"name": "app", "image": "registry.example/web:1.0"}]}}},
           "status": {"replicas": replicas}})
}

/// The same starting objects in a fake.
fn seed_pods(api: &FakeApi) {
    api.add("pods", pod("web-1", json!({"app": "web", "tier": "fe"})));
    api.add("pods", pod("web-2", json!({"app": "web", "tier": "be"})));
    api.add("pods", pod("db-1", json!({"app": "db", "tier": "fe"})));
    api.add(
        "pods",
        pod(
            "web-canary",
            json!({"app": "web", "tier": "fe", "canary": "true"}),
        ),
    );
    let mut other = pod("web-9", json!({"app": "web", "tier": "fe"}));
    other["metadata"]["namespace"] = json!("other");
    api.add("pods", other);
}

/// A deployment `nginx`, its ReplicaSet `nginx-6d4cf56db6` (as in the trivy-operator fixture)
/// and a pod of it.
fn seed_nginx(api: &FakeApi) {
    let d = api.add(
        "deployments",
        deployment("nginx", json!({"app": "nginx"}), 3),
    );
    let rs = api.add(
        "replicasets",
        json!({"metadata": {"name": "nginx-6d4cf56db6", "labels": {"app": "nginx"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "nginx",
                "uid": d["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}]},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "nginx"}}}, "status": {"replicas": 3}}),
    );
    api.add(
        "pods",
        json!({"metadata": {"name": "nginx-6d4cf56db6-abcde", "labels": {"app": "nginx"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "nginx-6d4cf56db6",
                "uid": rs["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}]},
            "spec": {"containers": [{"name": "nginx", "image": "library/nginx:1.16"}]}}),
    );
}

const FAST_RETRY: &str = "retry: {initial-delay: 20ms, max-delay: 50ms}";

/// A config whose route passes the event through as JSON (the description is the event).
fn config(action: &str) -> String {
    format!(
        "routes:\n  - name: r\n    template: passthrough\n    actions: [k]\n\
         templates:\n  - name: passthrough\n    body: |\n      package passthrough\n      title = \"event\"\n      result = input\n\
         actions:\n  - name: k\n    type: kubernetes\n    enable: true\n    {FAST_RETRY}\n{action}"
    )
}

fn dead_letters(p: &Postee, n: usize) -> Vec<Value> {
    wait_until(
        Duration::from_secs(30),
        || p.api_get("/dlq").1.as_array().is_some_and(|a| a.len() >= n),
        || format!("waiting for {n} dead letters; log:\n{}", p.stderr()),
    );
    p.api_get("/dlq").1.as_array().unwrap().clone()
}

fn without_rv(mut v: Value) -> Value {
    v["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    v["metadata"].as_object_mut().unwrap().remove("generation");
    v
}

// ---------------------------------------------------------------------------------------
// Tests.

#[test]
fn the_fake_selects_as_kubectl_expects_with_set_based_selectors() {
    let api = FakeApi::start();
    seed_pods(&api);
    let k = Kubectl::new(&api);
    for (sel, want) in [
        ("app=web", vec!["web-1", "web-2", "web-canary"]),
        ("app==web,tier=fe", vec!["web-1", "web-canary"]),
        ("tier in (fe)", vec!["db-1", "web-1", "web-canary"]),
        ("tier notin (fe),app", vec!["web-2"]),
        ("app=web,!canary", vec!["web-1", "web-2"]),
        ("canary", vec!["web-canary"]),
        ("app!=web", vec!["db-1"]),
        (
            "tier in (fe, be),app in (web)",
            vec!["web-1", "web-2", "web-canary"],
        ),
    ] {
        assert_eq!(k.names("pods", sel), want, "{sel}");
    }
    // kubectl reaches the fake's list with the selector encoded as a real server gets it.
    let lists: Vec<Req> = api
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert!(
        lists.iter().any(
            |r| query_map(&r.query).get("labelSelector").map(String::as_str)
                == Some("tier notin (fe),app")
        ),
        "{lists:?}"
    );
    // 404 and 415 as Status objects: kubectl prints the server's message.
    let out = Command::new(kubectl_bin())
        .arg("--kubeconfig")
        .arg(&k.kubeconfig)
        .arg("--cache-dir")
        .arg(k.dir.path().join("cache"))
        .args(["get", "pod", "nope"])
        .env("HOME", k.dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pods \"nope\" not found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(kubectl_bin())
        .arg("--kubeconfig")
        .arg(&k.kubeconfig)
        .arg("--cache-dir")
        .arg(k.dir.path().join("cache"))
        .args([
            "patch",
            "pod",
            "web-1",
            "--type",
            "json",
            "-p",
            r#"[{"op":"add","path":"/metadata/labels/x","value":"y"}]"#,
        ])
        .env("HOME", k.dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown format"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn labels_and_annotations_go_to_the_selected_pods_only_and_kubectl_agrees() {
    let api = FakeApi::start();
    seed_pods(&api);
    let dir = tempfile::tempdir().unwrap();
    let kc = api.kubeconfig(dir.path());
    let p = Postee::start(&config(&format!(
        "    kube-namespace: default\n    kube-config-file: {}\n    kube-label-selector: \"app=event.input.app,tier in (fe),!canary\"\n\
         \x20   kube-actions:\n      labels:\n        postee.io/quarantine: \"true\"\n        severity: event.input.severity\n\
         \x20     annotations:\n        postee.io/reason: event.input.reason\n",
        kc.display()
    )));
    let before = api.snapshot();
    let rv_before = api.rv();
    let (code, _) = p.post(
        "/",
        br#"{"app":"web","severity":"CRITICAL","reason":"CVE-2022-1292 in openssl: upgrade to 1.1.1n"}"#,
    );
    assert_eq!(code, 200);
    wait_until(
        Duration::from_secs(30),
        || api.requests().iter().any(|r| r.method == "PATCH"),
        || format!("no patch; log:\n{}", p.stderr()),
    );
    p.wait_deliveries(1);
    let reqs = api.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[0].method, "GET");
    assert_eq!(reqs[0].path, "/api/v1/namespaces/default/pods");
    assert_eq!(
        query_map(&reqs[0].query)
            .get("labelSelector")
            .map(String::as_str),
        Some("app=web,tier in (fe),!canary")
    );
    assert_eq!(reqs[1].method, "PATCH");
    assert_eq!(reqs[1].path, "/api/v1/namespaces/default/pods/web-1");
    assert_eq!(reqs[1].content_type, "application/merge-patch+json");
    assert_eq!(
        query_map(&reqs[1].query)
            .get("fieldManager")
            .map(String::as_str),
        Some("postee")
    );
    assert_eq!(
        reqs[1].body,
        json!({"metadata": {"labels": {"postee.io/quarantine": "true", "severity": "CRITICAL"},
                            "annotations": {"postee.io/reason": "CVE-2022-1292 in openssl: upgrade to 1.1.1n"}}})
    );
    assert_eq!(api.rv(), rv_before + 1, "one write");
    let after = api.snapshot();
    for (k, v) in &before {
        if k != "pods/default/web-1" {
            assert_eq!(after.get(k), Some(v), "{k} must not change");
        }
    }
    let web1 = api.object("pods", "default", "web-1").unwrap();
    assert_eq!(
        web1["metadata"]["labels"]["app"], "web",
        "existing labels kept"
    );

    // The same change made by kubectl on a twin of the starting state gives the same objects.
    let twin = FakeApi::start();
    seed_pods(&twin);
    let k = Kubectl::new(&twin);
    assert_eq!(k.names("pods", "app=web,tier in (fe),!canary"), ["web-1"]);
    k.run(&[
        "label",
        "pod",
        "web-1",
        "postee.io/quarantine=true",
        "severity=CRITICAL",
    ]);
    k.run(&[
        "annotate",
        "pod",
        "web-1",
        "postee.io/reason=CVE-2022-1292 in openssl: upgrade to 1.1.1n",
    ]);
    let kubectl_patches: Vec<Req> = twin
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert!(
        kubectl_patches
            .iter()
            .all(|r| r.content_type == "application/merge-patch+json"),
        "{kubectl_patches:?}"
    );
    assert_eq!(twin.snapshot(), api.snapshot());
}

#[test]
fn an_event_input_selector_that_resolves_to_nothing_is_refused() {
    let api = FakeApi::start();
    seed_pods(&api);
    let dir = tempfile::tempdir().unwrap();
    let kc = api.kubeconfig(dir.path());
    let p = Postee::start(&config(&format!(
        "    kube-namespace: default\n    kube-config-file: {}\n    kube-label-selector: app=event.input.app\n\
         \x20   kube-actions:\n      labels:\n        postee.io/quarantine: \"true\"\n",
        kc.display()
    )));
    let before = api.snapshot();
    // No `app` in the event (Postee selects every pod here); then a value that is no label.
    assert_eq!(p.post("/", br#"{"severity":"CRITICAL"}"#).0, 200);
    assert_eq!(p.post("/", br#"{"app":"web,tier notin (x)"}"#).0, 200);
    let dlq = dead_letters(&p, 2);
    let errors: Vec<String> = dlq
        .iter()
        .map(|d| d["error"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("event.input.app resolves to nothing")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("not a valid label value")),
        "{errors:?}"
    );
    for d in &dlq {
        assert_eq!(d["delivery"]["attempts"], 1, "permanent: not retried: {d}");
    }
    assert!(
        api.requests().is_empty(),
        "no request at all: {:?}",
        api.requests()
    );
    assert_eq!(api.snapshot(), before);
    assert!(p.stderr().contains("resolves to nothing"), "{}", p.stderr());
}

/// The report's metadata names the ReplicaSet; the action walks its controller owner up to
/// the Deployment and labels that.
#[test]
fn from_event_labels_the_deployment_a_trivy_operator_report_names_and_kubectl_agrees() {
    let api = FakeApi::start();
    seed_nginx(&api);
    let dir = tempfile::tempdir().unwrap();
    let kc = api.kubeconfig(dir.path());
    let p = Postee::start(&config(&format!(
        "    kube-config-file: {}\n    kube-target: from-event\n    kube-resource-kind: deployments\n\
         \x20   kube-actions:\n      labels:\n        postee.io/vulnerable: \"true\"\n\
         \x20     annotations:\n        postee.io/vulnerability-summary: event.input.report.summary\n",
        kc.display()
    )));
    assert_eq!(
        p.post_fixture("/", "events/trivy-operator-vulnreport.json")
            .0,
        200
    );
    p.wait_deliveries(1);
    let reqs = api.requests();
    let shown: Vec<String> = reqs
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        shown,
        [
            "GET /apis/apps/v1/namespaces/default/replicasets/nginx-6d4cf56db6",
            "PATCH /apis/apps/v1/namespaces/default/deployments/nginx",
        ],
        "log:\n{}",
        p.stderr()
    );
    let summary = r#"{"criticalCount":2,"highCount":2,"lowCount":1,"mediumCount":1,"noneCount":0,"unknownCount":0}"#;
    let d = api.object("deployments", "default", "nginx").unwrap();
    assert_eq!(d["metadata"]["labels"]["postee.io/vulnerable"], "true");
    assert_eq!(
        d["metadata"]["annotations"]["postee.io/vulnerability-summary"],
        summary
    );
    let rs = api
        .object("replicasets", "default", "nginx-6d4cf56db6")
        .unwrap();
    assert!(
        rs["metadata"]["labels"]
            .get("postee.io/vulnerable")
            .is_none()
    );

    let twin = FakeApi::start();
    seed_nginx(&twin);
    let k = Kubectl::new(&twin);
    k.run(&["label", "deployment", "nginx", "postee.io/vulnerable=true"]);
    k.run(&[
        "annotate",
        "deploy",
        "nginx",
        &format!("postee.io/vulnerability-summary={summary}"),
    ]);
    assert_eq!(twin.snapshot(), api.snapshot());
}

#[test]
fn scale_to_zero_after_a_dry_run_that_changes_nothing_and_kubectl_agrees() {
    let api = FakeApi::start();
    api.add(
        "deployments",
        deployment(
            "web",
            json!({"app": "web", "postee.io/image-repo": "web"}),
            3,
        ),
    );
    api.add("deployments", deployment("api", json!({"app": "api"}), 2));
    let dir = tempfile::tempdir().unwrap();
    let kc = api.kubeconfig(dir.path());
    let action = |dry: bool| {
        format!(
            "    kube-namespace: default\n    kube-config-file: {}\n    kube-resource-kind: deployments\n\
             \x20   kube-label-selector: postee.io/image-repo=event.input.repo\n    dry-run: {dry}\n\
             \x20   kube-actions:\n      scale-to-zero: true\n",
            kc.display()
        )
    };
    let before = api.snapshot();
    let rv = api.rv();
    let p = Postee::start(&config(&action(true)));
    assert_eq!(p.post("/", br#"{"repo":"web"}"#).0, 200);
    p.wait_deliveries(1);
    let reqs = api.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[1].method, "PATCH");
    assert_eq!(
        reqs[1].path,
        "/apis/apps/v1/namespaces/default/deployments/web/scale"
    );
    assert_eq!(
        query_map(&reqs[1].query).get("dryRun").map(String::as_str),
        Some("All")
    );
    assert_eq!(reqs[1].body, json!({"spec": {"replicas": 0}}));
    assert_eq!(api.snapshot(), before, "dry run changes nothing");
    assert_eq!(api.rv(), rv);
    assert!(p.stderr().contains("would change"), "{}", p.stderr());
    drop(p);

    api.clear_requests();
    let p = Postee::start(&config(&action(false)));
    assert_eq!(p.post("/", br#"{"repo":"web"}"#).0, 200);
    p.wait_deliveries(1);
    let web = api.object("deployments", "default", "web").unwrap();
    assert_eq!(web["spec"]["replicas"], 0);
    assert_eq!(
        api.object("deployments", "default", "api").unwrap()["spec"]["replicas"],
        2
    );
    assert!(!api.requests()[1].query.contains("dryRun"));

    let twin = FakeApi::start();
    twin.add(
        "deployments",
        deployment(
            "web",
            json!({"app": "web", "postee.io/image-repo": "web"}),
            3,
        ),
    );
    twin.add("deployments", deployment("api", json!({"app": "api"}), 2));
    let k = Kubectl::new(&twin);
    k.run(&[
        "scale",
        "deployment",
        "-l",
        "postee.io/image-repo=web",
        "--replicas=0",
    ]);
    assert_eq!(
        without_rv(twin.object("deployments", "default", "web").unwrap()),
        without_rv(api.object("deployments", "default", "web").unwrap())
    );
    assert!(
        twin.requests()
            .iter()
            .any(|r| r.path.ends_with("/deployments/web/scale")),
        "{:?}",
        twin.requests()
    );
}

#[test]
fn delete_sends_background_propagation_and_kubectl_agrees() {
    let api = FakeApi::start();
    seed_pods(&api);
    let dir = tempfile::tempdir().unwrap();
    let kc = api.kubeconfig(dir.path());
    let p = Postee::start(&config(&format!(
        "    kube-namespace: default\n    kube-config-file: {}\n    kube-label-selector: \"app=web,tier=fe\"\n\
         \x20   kube-actions:\n      delete: true\n",
        kc.display()
    )));
    assert_eq!(p.post("/", b"{}").0, 200);
    p.wait_deliveries(1);
    let deletes: Vec<Req> = api
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 2, "{deletes:?}");
    for d in &deletes {
        assert_eq!(d.body["propagationPolicy"], "Background", "{d:?}");
    }
    let twin = FakeApi::start();
    seed_pods(&twin);
    let k = Kubectl::new(&twin);
    k.run(&["delete", "pods", "-l", "app=web,tier=fe", "--wait=false"]);
    let kd: Vec<Req> = twin
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .collect();
    assert_eq!(kd[0].body["propagationPolicy"], "Background", "{kd:?}");
    assert_eq!(twin.snapshot(), api.snapshot());
    assert!(api.object("pods", "default", "web-2").is_some());
}

#[test]
fn a_409_is_retried_and_a_403_is_permanent_naming_the_missing_verb() {
    let api = FakeApi::start();
    seed_pods(&api);
    api.conflict_next(1);
    let dir = tempfile::tempdir().unwrap();
    let kc = api.kubeconfig(dir.path());
    let p = Postee::start(&config(&format!(
        "    kube-namespace: default\n    kube-config-file: {}\n    kube-label-selector: app=db\n\
         \x20   kube-actions:\n      labels:\n        postee.io/quarantine: \"true\"\n",
        kc.display()
    )));
    assert_eq!(p.post("/", b"{}").0, 200);
    wait_until(
        Duration::from_secs(30),
        || {
            api.object("pods", "default", "db-1").unwrap()["metadata"]["labels"]["postee.io/quarantine"]
                == "true"
        },
        || format!("not labelled after the conflict; log:\n{}", p.stderr()),
    );
    let patches = api
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .count();
    assert_eq!(patches, 2, "the 409 and the retry");
    assert!(p.stderr().contains("409"), "{}", p.stderr());
    assert!(p.api_get("/dlq").1.as_array().unwrap().is_empty());

    api.forbid("patch", "pods");
    api.clear_requests();
    assert_eq!(p.post("/", br#"{"second":1}"#).0, 200);
    let dlq = dead_letters(&p, 1);
    let err = dlq[0]["error"].as_str().unwrap();
    assert!(
        err.contains(r#"needs RBAC verb "patch" on resource "pods" in namespace "default""#),
        "{err}"
    );
    assert!(
        err.contains("cannot patch resource"),
        "the server's text: {err}"
    );
    assert_eq!(dlq[0]["delivery"]["attempts"], 1);
    let id = dlq[0]["delivery"]["event_id"].as_str().unwrap();
    let (_, ev) = p.api_get(&format!("/events/{id}"));
    assert!(ev.to_string().contains("needs RBAC verb"), "{ev}");
    assert!(p.stderr().contains("needs RBAC verb"), "{}", p.stderr());
}

#[test]
fn render_shows_the_list_and_the_patches_and_check_reports_load_errors() {
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    std::fs::write(
        &kc,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://k8s.example:6443\n\
         users:\n- name: u\n  user:\n    token: secret-kube-token-7\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\n",
    )
    .unwrap();
    let cfg = dir.path().join("cfg.yaml");
    std::fs::write(
        &cfg,
        config(&format!(
            "    kube-namespace: prod\n    kube-config-file: {}\n    kube-resource-kind: deployments\n    kube-label-selector: app=event.input.app\n    dry-run: true\n\
             \x20   kube-actions:\n      labels:\n        postee.io/vulnerable: \"true\"\n      scale-to-zero: true\n",
            kc.display()
        )),
    )
    .unwrap();
    let input = dir.path().join("event.json");
    std::fs::write(&input, br#"{"app":"web"}"#).unwrap();
    let out = run(
        &[
            "render",
            "--cfgfile",
            cfg.to_str().unwrap(),
            "--route",
            "r",
            "--input",
            input.to_str().unwrap(),
        ],
        &[],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("secret-kube-token-7"), "{text}");
    for shown in [
        "https://k8s.example:6443",
        "/apis/apps/v1/namespaces/prod/deployments?labelSelector=app%3Dweb",
        "/apis/apps/v1/namespaces/prod/deployments/{name}?dryRun=All&fieldManager=postee",
        "/apis/apps/v1/namespaces/prod/deployments/{name}/scale?dryRun=All&fieldManager=postee",
        "application/merge-patch+json",
        "postee.io/vulnerable",
    ] {
        assert!(text.contains(shown), "{shown} missing:\n{text}");
    }

    // In a cluster (KUBERNETES_SERVICE_HOST set), no kube-config-file is needed: the service
    // account is used.
    std::fs::write(
        &cfg,
        "actions:\n- name: k\n  type: kubernetes\n  enable: true\n  kube-namespace: default\n  kube-actions: {labels: {a: b}}\n",
    )
    .unwrap();
    let out = run(
        &["check", "--cfgfile", cfg.to_str().unwrap()],
        &[
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Load errors, each with its key's path.
    std::fs::write(
        &cfg,
        "actions:\n- name: k\n  type: kubernetes\n  enable: true\n  kube-config-file: /nonexistent/kubeconfig\n  kube-resource-kind: pods\n  kube-actions: {scale-to-zero: true}\n\
         - name: j\n  type: kubernetes\n  enable: true\n  kube-namespace: default\n  kube-actions: {labels: {a: b}}\n",
    )
    .unwrap();
    let out = run(&["check", "--cfgfile", cfg.to_str().unwrap()], &[]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "{text}");
    for want in [
        "actions[k].kube-namespace: kubernetes namespace needs to be set",
        "actions[k].kube-actions.scale-to-zero: pods have no scale subresource",
        "actions[k].kube-config-file: /nonexistent/kubeconfig does not exist now",
        "actions[j].kube-config-file: kubernetes config file needs to be set",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
}

// ---------------------------------------------------------------------------------------
// The seed stories in examples/, run against the fake.

/// An example config with its kubeconfig path pointed at the fake and its delays shortened.
fn example(name: &str, kubeconfig: &Path) -> String {
    let text = std::fs::read_to_string(repo(&format!("examples/{name}"))).unwrap();
    assert!(text.contains("/etc/postee/kubeconfig"), "{name}");
    text.replace("/etc/postee/kubeconfig", kubeconfig.to_str().unwrap())
}

#[test]
fn story_a_a_vulnerability_report_with_criticals_labels_and_annotates_its_deployment() {
    let api = FakeApi::start();
    seed_nginx(&api);
    let dir = tempfile::tempdir().unwrap();
    let kc = api.kubeconfig(dir.path());
    let p = Postee::start(&example("story-trivy-operator-label.yaml", &kc));
    // A report without criticals does not match the route.
    let mut clean: Value = serde_json::from_slice(
        &std::fs::read(fixture("events/trivy-operator-vulnreport.json")).unwrap(),
    )
    .unwrap();
    clean["report"]["summary"]["criticalCount"] = json!(0);
    assert_eq!(p.post("/", clean.to_string().as_bytes()).0, 200);
    assert_eq!(
        p.post_fixture("/", "events/trivy-operator-vulnreport.json")
            .0,
        200
    );
    wait_until(
        Duration::from_secs(30),
        || {
            api.object("deployments", "default", "nginx").unwrap()["metadata"]["labels"]["postee.io/vulnerable"]
                == "true"
        },
        || format!("deployment not labelled; log:\n{}", p.stderr()),
    );
    let d = api.object("deployments", "default", "nginx").unwrap();
    let ann = &d["metadata"]["annotations"];
    assert_eq!(
        ann["postee.io/vulnerability-summary"],
        r#"{"criticalCount":2,"highCount":2,"lowCount":1,"mediumCount":1,"noneCount":0,"unknownCount":0}"#
    );
    assert_eq!(ann["postee.io/image"], "library/nginx:1.16");
    assert_eq!(
        api.requests()
            .iter()
            .filter(|r| r.method == "PATCH")
            .count(),
        1,
        "the clean report changed nothing"
    );
}

#[test]
fn story_b_a_critical_image_scan_scales_the_labelled_deployments_to_zero_after_a_dry_run() {
    let api = FakeApi::start();
    for (name, repo, n) in [("alpine-tools", "alpine", 2), ("web", "web", 3)] {
        let mut d = deployment(name, json!({"postee.io/image-repo": repo}), n);
        d["metadata"]["namespace"] = json!("prod");
        api.add("deployments", d);
    }
    let mut elsewhere = deployment("alpine-tools", json!({"postee.io/image-repo": "alpine"}), 1);
    elsewhere["metadata"]["namespace"] = json!("other");
    api.add("deployments", elsewhere);
    let dir = tempfile::tempdir().unwrap();
    let kc = api.kubeconfig(dir.path());
    let text = example("story-scale-to-zero.yaml", &kc);
    assert!(
        text.contains("dry-run: true"),
        "the example starts with a dry run"
    );
    let before = api.snapshot();
    let p = Postee::start(&text);
    assert_eq!(p.post_fixture("/", "events/trivy-report.json").0, 200);
    p.wait_deliveries(1);
    assert_eq!(api.snapshot(), before, "dry run: nothing changed");
    assert!(
        api.requests()
            .iter()
            .any(|r| r.path.ends_with("/deployments/alpine-tools/scale")
                && r.query.contains("dryRun=All")),
        "{:?}",
        api.requests()
    );
    assert!(p.stderr().contains("would change"), "{}", p.stderr());
    drop(p);
    // The user has read the log and turns the dry run off.
    let p = Postee::start(&text.replace("dry-run: true", "dry-run: false"));
    assert_eq!(p.post_fixture("/", "events/trivy-report.json").0, 200);
    wait_until(
        Duration::from_secs(30),
        || api.object("deployments", "prod", "alpine-tools").unwrap()["spec"]["replicas"] == 0,
        || format!("not scaled; log:\n{}", p.stderr()),
    );
    assert_eq!(
        api.object("deployments", "prod", "web").unwrap()["spec"]["replicas"],
        3
    );
    assert_eq!(
        api.object("deployments", "other", "alpine-tools").unwrap()["spec"]["replicas"],
        1
    );
}
