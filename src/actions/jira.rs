//! `jira`: opens an issue in Jira Cloud or Jira Server / Data Center with REST API v2 and the
//! Agile API 1.0 (spec §6.2), or comments on the open issue of the same key (`update-existing`).
//!
//! Keys: `url`, `project-key` (upper-cased), `user` (required, as in Postee), `password`
//! (secret; empty: env `JIRA_PASSWORD`, as Postee), `token` (secret, a Personal Access Token of
//! Server / Data Center, sent as `Authorization: Bearer`; against `*.atlassian.net` a load
//! error), `board`, `priority`, `assignee`, `issuetype`, `labels`, `sprint`, `fix-versions`,
//! `affects-versions`, `unknowns`, `tls-verify` (default: verify; Postee's default skipped
//! verification), `summary` (parsed and unused, as in Postee); ours: `update-existing`,
//! `unique-props`, `timeout`.
//!
//! Which Jira: Cloud when the host ends with `.atlassian.net` or `GET /rest/api/2/serverInfo`
//! answers `deploymentType: Cloud`; Server / Data Center otherwise. Cloud, and Server from
//! version 9 (`versionNumbers`), use the per-issue-type create-meta endpoints; older Servers the
//! single `createmeta?projectKeys=…&expand=projects.issuetypes.fields`. Cloud searches with
//! `/rest/api/2/search/jql` (its `/search` is gone), Server with `/rest/api/2/search`; users are
//! looked up with `query=` and sent as `{accountId}` on Cloud, `username=` and `{name}` on Server.
//!
//! One delivery (all metadata — serverInfo, fields, create-meta, board — is fetched once per
//! action and cached; refreshed after an hour, and once when a create is refused naming a custom
//! field or the issue type):
//! 1. `GET /rest/api/2/search` with JQL `project = "KEY" AND (labels = "postee-<d>" [OR
//!    (labels = "postee-key-<k>" AND statusCategory != Done)]) ORDER BY created DESC`, where
//!    `<d>` hashes the delivery id and `<k>` the upsert key. An issue labelled `postee-<d>` means
//!    an earlier attempt of this delivery created it: done (no duplicate on retry). An open issue
//!    labelled `postee-key-<k>`: unless one of its latest comments (`GET …/comment?orderBy=-created`)
//!    ends with `postee-<d>`, `POST /rest/api/2/issue/{key}/comment` with the content; done.
//! 2. The sprint: the `sprint` key (an id, or a name looked up among the board's active and
//!    future sprints), else the board's active sprint when the board is scrum (the last one when
//!    several are active: Postee sent their count − 1 as the id).
//! 3. The assignee (`user/search`), then `POST /rest/api/2/issue` with `fields`: `project.key`,
//!    `issuetype.id`, `summary` (the title, one line, at most 255 characters), `description`
//!    (the rendered text, at most 32,000 characters), `priority.name`, `assignee`, `labels`
//!    (config labels + `postee-<d>` [+ `postee-key-<k>`]), `fixVersions`/`versions` as
//!    `[{name}]`, the sprint field as a number, and the `unknowns` coerced by the field's schema.
//!
//! Success: 2xx. 429 (with `Retry-After`), 408, 5xx and transport errors are transient; 401/403
//! (credentials), 400 (Jira's `errorMessages` and `errors`, which name the field) and other 4xx
//! permanent.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use super::{
    Action, ActionError, BuildContext, Check, DEFAULT_SEND_TIMEOUT, Message, SEND_TIMEOUT_KEY,
    Validated, body_snippet, classify_status, classify_transport, join_path, shown_url,
    truncate_chars,
};
use crate::config::{Fields, KeySpec, Kind, Secret};

/// Where `<%application_scope_owner%>` in `assignee` takes the event's owners.
pub use super::email::OWNER_PLACEHOLDER;

/// Jira limits: summary 255 characters, text fields 32,767.
const MAX_SUMMARY: usize = 255;
const MAX_TEXT: usize = 32_000;
const TRUNCATED: &str = "\n\n_(truncated by postee)_";
/// Cached metadata is fetched again after this long.
const META_TTL: Duration = Duration::from_secs(3600);
/// Pages of a paged listing read at most (create-meta fields, boards).
const MAX_PAGES: usize = 20;
const PAGE: usize = 100;
/// The schema `custom` of the sprint field.
const SPRINT_CUSTOM: &str = "com.pyxis.greenhopper.jira:gh-sprint";
/// Sends that share a label are serialized over this many locks.
const LOCKS: usize = 64;

pub(crate) const KEYS: &[KeySpec] = &[
    KeySpec::required(
        "url",
        Kind::Str,
        "Jira base URL (`https://example.atlassian.net`, or a Server's URL with its context path).",
    ),
    KeySpec::required(
        "project-key",
        Kind::Str,
        "Key of the project to open issues in; upper-cased.",
    ),
    KeySpec::required(
        "user",
        Kind::Expand,
        "Jira user: the account's email on Cloud, the user name on Server; the default assignee.",
    ),
    KeySpec::optional(
        "password",
        Kind::Secret,
        "`$JIRA_PASSWORD`",
        "A secret: the API token on Cloud, the password on Server (Basic auth). Required unless `token` is set.",
    ),
    KeySpec::optional(
        "token",
        Kind::Secret,
        "none",
        "A secret: a Personal Access Token of Jira Server / Data Center, sent as `Authorization: Bearer`. Not for Cloud.",
    ),
    KeySpec::optional(
        "board",
        Kind::Str,
        "`<project-key> board`",
        "Board whose active sprint new issues join (when it is a scrum board).",
    ),
    KeySpec::optional(
        "priority",
        Kind::Str,
        "`High` when the project has it",
        "Priority name.",
    ),
    KeySpec::optional(
        "assignee",
        Kind::StrList,
        "the `user`",
        "Users to assign (the first found is assigned); `<%application_scope_owner%>` takes the event's owners.",
    ),
    KeySpec::optional(
        "issuetype",
        Kind::Str,
        "`Task` when the project has it",
        "Issue type name; otherwise the project's first type that is not a sub-task.",
    ),
    KeySpec::optional(
        "labels",
        Kind::StrList,
        "none",
        "Labels of every issue (no spaces).",
    ),
    KeySpec::optional(
        "sprint",
        Kind::Str,
        "the board's active sprint",
        "Sprint to put new issues in: its id, or its name (active or future sprint of the board).",
    ),
    KeySpec::optional(
        "fix-versions",
        Kind::StrList,
        "none",
        "Version names, sent as `fixVersions`.",
    ),
    KeySpec::optional(
        "affects-versions",
        Kind::StrList,
        "none",
        "Version names, sent as `versions`.",
    ),
    KeySpec::optional(
        "unknowns",
        Kind::StrMap,
        "none",
        "More fields: display name (or field id) → value, converted by the field's type.",
    ),
    KeySpec::optional(
        "tls-verify",
        Kind::Bool,
        "`true`",
        "Verify the server's certificate; `false` turns verification off (a load warning).",
    ),
    KeySpec::optional(
        "summary",
        Kind::Str,
        "the title",
        "Parsed and ignored, as in Postee (a load warning): the summary is the template's title.",
    ),
    KeySpec::optional(
        "update-existing",
        Kind::Bool,
        "`false`",
        "Comment on the open issue of the same key instead of opening another one.",
    ),
    KeySpec::optional(
        "unique-props",
        Kind::StrList,
        "the route's `unique-message-props`",
        "Event paths whose values make the key of `update-existing`.",
    ),
    SEND_TIMEOUT_KEY,
];

/// How requests authenticate.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Cloud: email + API token; Server: user + password.
    Basic { user: String, password: Secret },
    /// Server / Data Center Personal Access Token.
    Bearer(Secret),
}

/// A valid jira action.
#[derive(Debug, Clone)]
pub struct JiraConfig {
    pub base: reqwest::Url,
    pub project_key: String,
    pub user: String,
    pub auth: Auth,
    /// The host is `*.atlassian.net`.
    pub cloud_host: bool,
    pub board: String,
    pub priority: Option<String>,
    pub assignee: Vec<String>,
    pub issuetype: Option<String>,
    pub labels: Vec<String>,
    pub sprint: Option<String>,
    pub fix_versions: Vec<String>,
    pub affects_versions: Vec<String>,
    pub unknowns: BTreeMap<String, String>,
    pub skip_verify: bool,
    pub timeout: Duration,
    pub update_existing: bool,
    pub unique_props: Vec<String>,
}

pub fn validate(f: &Fields) -> Validated<JiraConfig> {
    let mut c = Check::default();
    let base = c.url(f);
    let project_key = match f.non_empty("project-key") {
        Some(k)
            if k.trim()
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_') =>
        {
            Some(k.trim().to_ascii_uppercase())
        }
        Some(k) => {
            c.error(
                "project-key",
                format!("{k:?} is not a project key (letters, digits and `_`)"),
            );
            None
        }
        None => {
            c.error(
                "project-key",
                "missing: the key of the project to open issues in is required",
            );
            None
        }
    };
    let user = f.non_empty("user").map(|u| u.trim().to_string());
    if user.is_none() {
        c.error(
            "user",
            "missing: the Jira user is required (the account's email on Cloud)",
        );
    }
    let cloud_host = base.as_ref().is_some_and(|u| {
        u.host_str().is_some_and(|h| {
            let h = h.to_ascii_lowercase();
            let h = h.trim_end_matches('.');
            h == "atlassian.net" || h.ends_with(".atlassian.net")
        })
    });
    let token = f.secret("token").filter(|s| !s.is_blank()).cloned();
    let password = f
        .secret("password")
        .filter(|s| !s.is_blank())
        .cloned()
        .or_else(|| {
            std::env::var("JIRA_PASSWORD")
                .ok()
                .filter(|p| !p.trim().is_empty())
                .map(Secret::new)
        });
    let auth = match (token, password) {
        (Some(_), _) if cloud_host => {
            c.error(
                "token",
                "Jira Cloud can't work with PAT: a Personal Access Token is for Jira Server / Data Center; on Cloud use `password` with an API token",
            );
            None
        }
        (Some(t), _) => Some(Auth::Bearer(t)),
        (None, Some(p)) => user.clone().map(|u| Auth::Basic {
            user: u,
            password: p,
        }),
        (None, None) => {
            c.error(
                "password",
                "missing: Password and Token are empty; set `password` (the API token on Cloud), `token` (a PAT on Server), or JIRA_PASSWORD",
            );
            None
        }
    };
    let skip_verify = match f.bool("tls-verify") {
        Some(false) => {
            c.warn(
                "tls-verify",
                "false: the Jira server's certificate is NOT verified (remove the key to verify it)",
            );
            true
        }
        _ => false,
    };
    if f.str("summary").is_some() {
        c.warn(
            "summary",
            "ignored, as in Postee: the issue's summary is the template's title",
        );
    }
    let labels = f.list("labels");
    for l in &labels {
        if l.trim().is_empty() || l.chars().any(char::is_whitespace) {
            c.error(
                "labels",
                format!("label {l:?} is empty or has spaces, which Jira refuses"),
            );
        }
    }
    let update_existing = f.bool("update-existing").unwrap_or(false);
    let unique_props: Vec<String> = f
        .list("unique-props")
        .into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    if !unique_props.is_empty() && !update_existing {
        c.warn(
            "unique-props",
            "has no effect without `update-existing: true`",
        );
    }
    let timeout = c.timeout(f, DEFAULT_SEND_TIMEOUT);
    let non_empty = |k: &str| f.non_empty(k).map(|s| s.trim().to_string());
    let config = match (base, project_key, user, auth) {
        (Some(base), Some(project_key), Some(user), Some(auth)) => Some(JiraConfig {
            board: non_empty("board").unwrap_or_else(|| format!("{project_key} board")),
            base,
            project_key,
            auth,
            cloud_host,
            priority: non_empty("priority"),
            assignee: f.list("assignee"),
            issuetype: non_empty("issuetype"),
            labels,
            sprint: non_empty("sprint"),
            fix_versions: f.list("fix-versions"),
            affects_versions: f.list("affects-versions"),
            unknowns: f.map("unknowns"),
            skip_verify,
            timeout,
            update_existing,
            unique_props,
            user,
        }),
        _ => None,
    };
    c.finish(config)
}

pub fn build(name: &str, cfg: JiraConfig, ctx: &BuildContext) -> Result<Arc<dyn Action>, String> {
    let http = ctx.client(cfg.skip_verify)?;
    Ok(Arc::new(Jira {
        name: name.to_string(),
        cfg,
        http,
        meta: tokio::sync::Mutex::new(None),
        locks: (0..LOCKS).map(|_| tokio::sync::Mutex::new(())).collect(),
    }))
}

pub struct Jira {
    name: String,
    cfg: JiraConfig,
    http: reqwest::Client,
    meta: tokio::sync::Mutex<Option<Arc<Meta>>>,
    /// Striped by label: two sends of the same delivery or upsert key never interleave.
    locks: Vec<tokio::sync::Mutex<()>>,
}

/// What Jira told us about the project, cached per action.
#[derive(Debug)]
struct Meta {
    cloud: bool,
    issuetype: (String, String),
    /// The fields of the issue type's create screen.
    screen: Vec<MetaField>,
    /// Every field's (id, name), to tell "not on the screen" from "no such field".
    all: Vec<(String, String)>,
    sprint_field: Option<String>,
    /// The board's (id, type).
    board: Option<(u64, String)>,
    fetched: Instant,
}

#[derive(Debug, Clone)]
struct MetaField {
    id: String,
    name: String,
    kind: String,
    items: String,
    custom: String,
    allowed: Vec<Value>,
}

impl MetaField {
    fn from(id: &str, v: &Value) -> MetaField {
        let s = |x: &Value| x.as_str().unwrap_or_default().to_string();
        MetaField {
            id: id.to_string(),
            name: s(&v["name"]),
            kind: s(&v["schema"]["type"]),
            items: s(&v["schema"]["items"]),
            custom: s(&v["schema"]["custom"]),
            allowed: v["allowedValues"].as_array().cloned().unwrap_or_default(),
        }
    }
}

/// Why a call failed: the classified error, with the status and the fields Jira named.
struct Failure {
    status: Option<u16>,
    fields: Vec<String>,
    error: ActionError,
}

impl From<Failure> for ActionError {
    fn from(f: Failure) -> ActionError {
        f.error
    }
}

/// The text of a Jira error body: `errorMessages` and `errors` (field: message); otherwise
/// the start of the body.
pub fn jira_error_text(body: &str) -> (String, Vec<String>) {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return (body.trim().to_string(), Vec::new());
    };
    let mut parts: Vec<String> = v["errorMessages"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut fields = Vec::new();
    if let Some(o) = v["errors"].as_object() {
        for (k, m) in o {
            fields.push(k.clone());
            parts.push(format!("{k}: {}", m.as_str().unwrap_or(&m.to_string())));
        }
    }
    if let Some(m) = v["message"].as_str() {
        parts.push(m.to_string());
    }
    if parts.is_empty() {
        (body.trim().to_string(), fields)
    } else {
        (parts.join("; "), fields)
    }
}

/// The first 16 hex digits of SHA-256: the labels' suffix.
fn short_hash(s: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// `s` cut to `max` characters, with a note when it was cut.
fn bounded(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}{TRUNCATED}", truncate_chars(s, max))
    }
}

/// The value of one unknown, by the field's schema.
fn coerce(field: &MetaField, value: &str) -> Result<Value, String> {
    let list = || -> Vec<&str> {
        value
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect()
    };
    let number = |v: &str| -> Result<Value, String> {
        if let Ok(i) = v.trim().parse::<i64>() {
            return Ok(json!(i));
        }
        match v.trim().parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(json!(f)),
            _ => Err(format!(
                "field {:?} is a number; {v:?} is not one",
                field.name
            )),
        }
    };
    Ok(match field.kind.as_str() {
        "string" | "date" | "datetime" | "any" | "" => json!(value),
        "number" => number(value)?,
        "option" => json!({"value": value}),
        "option-with-child" => json!({"value": value}),
        "priority" | "version" | "component" | "resolution" | "securitylevel" | "issuetype" => {
            json!({"name": value})
        }
        "project" => json!({"key": value}),
        "user" => json!({"name": value}),
        "array" if field.custom == SPRINT_CUSTOM => number(value)?,
        "array" => match field.items.as_str() {
            "option" => Value::Array(list().into_iter().map(|v| json!({"value": v})).collect()),
            "component" | "version" => {
                Value::Array(list().into_iter().map(|v| json!({"name": v})).collect())
            }
            "number" => Value::Array(list().into_iter().map(number).collect::<Result<_, _>>()?),
            "string" | "" => Value::Array(list().into_iter().map(|v| json!(v)).collect()),
            "user" => Value::Array(list().into_iter().map(|v| json!({"name": v})).collect()),
            other => {
                return Err(format!(
                    "field {:?} is a list of {other}, which postee cannot fill",
                    field.name
                ));
            }
        },
        other => {
            return Err(format!(
                "field {:?} has type {other}, which postee cannot fill",
                field.name
            ));
        }
    })
}

/// What a delivery found before creating.
enum Found {
    Delivered(String),
    Open(String),
    Nothing,
}

impl Jira {
    fn url(&self, path: &str, query: &[(&str, &str)]) -> reqwest::Url {
        let mut u = join_path(&self.cfg.base, path);
        if !query.is_empty() {
            let mut q = u.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        u
    }

    fn auth_shown(&self) -> &'static str {
        match self.cfg.auth {
            Auth::Basic { .. } => "Basic <hidden>",
            Auth::Bearer(_) => "Bearer <hidden>",
        }
    }

    /// One call; a 2xx answer's JSON (null when empty).
    async fn call(
        &self,
        method: reqwest::Method,
        url: reqwest::Url,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Value, Failure> {
        let mut req = self
            .http
            .request(method, url)
            .timeout(self.cfg.timeout)
            .header("Accept", "application/json");
        req = match &self.cfg.auth {
            Auth::Basic { user, password } => req.basic_auth(user, Some(password.expose())),
            Auth::Bearer(t) => req.bearer_auth(t.expose()),
        };
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.map_err(|e| Failure {
            status: None,
            fields: Vec::new(),
            error: {
                let mut err = classify_transport(&e);
                if let ActionError::Transient { message, .. } = &mut err {
                    *message = format!("Jira {what}: {message}");
                }
                err
            },
        })?;
        let status = resp.status();
        if status.is_success() {
            let text = body_snippet(resp, 64 * 1024 * 1024).await;
            return Ok(serde_json::from_str(&text).unwrap_or(Value::Null));
        }
        let headers = resp.headers().clone();
        let body = body_snippet(resp, 2048).await;
        let (text, fields) = jira_error_text(&body);
        let message = match status.as_u16() {
            401 | 403 => format!(
                "Jira {what}: HTTP {status}: {text} (check the action's user and password, or token: Jira refused them or they lack permission)"
            ),
            _ => format!("Jira {what}: HTTP {status}: {text}"),
        };
        Err(Failure {
            status: Some(status.as_u16()),
            fields,
            error: classify_status(status, &headers, message),
        })
    }

    async fn get(&self, path: &str, query: &[(&str, &str)], what: &str) -> Result<Value, Failure> {
        self.call(reqwest::Method::GET, self.url(path, query), None, what)
            .await
    }

    /// Every item of a paged listing (`values`, or Cloud's `issueTypes` / `fields`).
    async fn paged(
        &self,
        path: &str,
        query: &[(&str, &str)],
        what: &str,
    ) -> Result<Vec<Value>, Failure> {
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let start = out.len().to_string();
            let page = PAGE.to_string();
            let mut q: Vec<(&str, &str)> = query.to_vec();
            q.push(("startAt", &start));
            q.push(("maxResults", &page));
            let v = self.get(path, &q, what).await?;
            let items = ["values", "issueTypes", "fields", "results"]
                .iter()
                .find_map(|k| v[*k].as_array())
                .cloned()
                .unwrap_or_default();
            let n = items.len();
            out.extend(items);
            let last = match (v["isLast"].as_bool(), v["total"].as_u64()) {
                (Some(l), _) => l,
                (None, Some(t)) => out.len() as u64 >= t,
                (None, None) => n < PAGE,
            };
            if last || n == 0 {
                break;
            }
        }
        Ok(out)
    }

    /// The cached metadata, fetched when missing, stale, or `refresh`.
    async fn meta(&self, refresh: bool) -> Result<Arc<Meta>, Failure> {
        let mut slot = self.meta.lock().await;
        if let Some(m) = slot.as_ref()
            && !refresh
            && m.fetched.elapsed() < META_TTL
        {
            return Ok(m.clone());
        }
        let m = Arc::new(self.fetch_meta().await?);
        *slot = Some(m.clone());
        Ok(m)
    }

    async fn fetch_meta(&self) -> Result<Meta, Failure> {
        let key = &self.cfg.project_key;
        let info = self
            .get("/rest/api/2/serverInfo", &[], "serverInfo")
            .await?;
        let cloud = self.cfg.cloud_host
            || info["deploymentType"]
                .as_str()
                .is_some_and(|d| d.eq_ignore_ascii_case("cloud"));
        let major = info["versionNumbers"][0].as_u64().unwrap_or(0);
        let per_type = cloud || major >= 9;
        let not_found = |f: Failure| -> Failure {
            if f.status == Some(404) {
                Failure {
                    error: ActionError::permanent(format!(
                        "could not find project with key {key}: {}",
                        f.error
                    )),
                    ..f
                }
            } else {
                f
            }
        };
        // Issue types, and the chosen one's create screen.
        let types: Vec<Value> = if per_type {
            let path = format!("/rest/api/2/issue/createmeta/{key}/issuetypes");
            self.paged(&path, &[], "create-meta issue types")
                .await
                .map_err(not_found)?
        } else {
            let v = self
                .get(
                    "/rest/api/2/issue/createmeta",
                    &[
                        ("projectKeys", key.as_str()),
                        ("expand", "projects.issuetypes.fields"),
                    ],
                    "create-meta",
                )
                .await?;
            let Some(p) = v["projects"]
                .as_array()
                .and_then(|ps| ps.iter().find(|p| p["key"].as_str() == Some(key)))
            else {
                return Err(Failure {
                    status: None,
                    fields: Vec::new(),
                    error: ActionError::permanent(format!(
                        "could not find project with key {key} (or the user may not create issues in it)"
                    )),
                });
            };
            p["issuetypes"].as_array().cloned().unwrap_or_default()
        };
        let name_of = |t: &Value| t["name"].as_str().unwrap_or_default().to_string();
        let chosen = match &self.cfg.issuetype {
            Some(want) => types
                .iter()
                .find(|t| name_of(t).eq_ignore_ascii_case(want))
                .ok_or_else(|| {
                    let names: Vec<String> = types.iter().map(name_of).collect();
                    Failure {
                        status: None,
                        fields: Vec::new(),
                        error: ActionError::permanent(format!(
                            "issue type {want:?} is not in project {key} (its types: {})",
                            names.join(", ")
                        )),
                    }
                })?,
            None => types
                .iter()
                .find(|t| name_of(t) == "Task")
                .or_else(|| types.iter().find(|t| t["subtask"].as_bool() != Some(true)))
                .or(types.first())
                .ok_or_else(|| Failure {
                    status: None,
                    fields: Vec::new(),
                    error: ActionError::permanent(format!(
                        "project {key} has no issue type the user may create"
                    )),
                })?,
        };
        let type_id = chosen["id"].as_str().unwrap_or_default().to_string();
        let screen: Vec<MetaField> = if !per_type {
            chosen["fields"]
                .as_object()
                .map(|o| o.iter().map(|(id, v)| MetaField::from(id, v)).collect())
                .unwrap_or_default()
        } else {
            let path = format!("/rest/api/2/issue/createmeta/{key}/issuetypes/{type_id}");
            self.paged(&path, &[], "create-meta fields")
                .await?
                .iter()
                .map(|v| MetaField::from(v["fieldId"].as_str().unwrap_or_default(), v))
                .collect()
        };
        let all_fields = self.get("/rest/api/2/field", &[], "fields").await?;
        let mut all = Vec::new();
        let mut sprint_field = None;
        for f in all_fields.as_array().into_iter().flatten() {
            let id = f["id"].as_str().unwrap_or_default().to_string();
            if f["schema"]["custom"].as_str() == Some(SPRINT_CUSTOM) && sprint_field.is_none() {
                sprint_field = Some(id.clone());
            }
            all.push((id, f["name"].as_str().unwrap_or_default().to_string()));
        }
        let board = self.find_board().await?;
        Ok(Meta {
            cloud,
            issuetype: (type_id, name_of(chosen)),
            screen,
            all,
            sprint_field,
            board,
            fetched: Instant::now(),
        })
    }

    /// The last board of the project with the configured name (Postee keeps the last) or id.
    async fn find_board(&self) -> Result<Option<(u64, String)>, Failure> {
        let boards = match self
            .paged(
                "/rest/agile/1.0/board",
                &[("projectKeyOrId", self.cfg.project_key.as_str())],
                "boards",
            )
            .await
        {
            Ok(b) => b,
            // No Jira Software (no Agile API), or no board visible: no sprint.
            Err(f) if matches!(f.status, Some(400 | 404)) => {
                tracing::warn!(action = %self.name, error = %f.error, "Jira boards not available; issues get no sprint");
                return Ok(None);
            }
            Err(f) => return Err(f),
        };
        let found = boards
            .iter()
            .rev()
            .find(|b| {
                b["name"].as_str() == Some(self.cfg.board.as_str())
                    || b["id"]
                        .as_u64()
                        .is_some_and(|id| id.to_string() == self.cfg.board)
            })
            .and_then(|b| {
                Some((
                    b["id"].as_u64()?,
                    b["type"].as_str().unwrap_or_default().to_string(),
                ))
            });
        if found.is_none() {
            tracing::warn!(action = %self.name, board = %self.cfg.board, "Jira board not found in the project; issues get no sprint");
        }
        Ok(found)
    }

    /// The sprint id new issues join, if any.
    async fn sprint(&self, meta: &Meta) -> Result<Option<i64>, Failure> {
        if let Some(s) = &self.cfg.sprint
            && let Ok(id) = s.parse::<i64>()
        {
            return Ok(Some(id));
        }
        let Some((board, kind)) = &meta.board else {
            if self.cfg.sprint.is_some() {
                tracing::warn!(action = %self.name, "no board: the `sprint` name cannot be looked up; no sprint");
            }
            return Ok(None);
        };
        if self.cfg.sprint.is_none() && kind != "scrum" {
            return Ok(None);
        }
        let state = if self.cfg.sprint.is_some() {
            "active,future"
        } else {
            "active"
        };
        let path = format!("/rest/agile/1.0/board/{board}/sprint");
        let sprints = self.paged(&path, &[("state", state)], "sprints").await?;
        let id = |s: &Value| s["id"].as_i64();
        Ok(match &self.cfg.sprint {
            Some(name) => {
                let found = sprints
                    .iter()
                    .find(|s| s["name"].as_str() == Some(name))
                    .and_then(id);
                if found.is_none() {
                    tracing::warn!(action = %self.name, sprint = %name, "no active or future sprint of that name on the board; no sprint");
                }
                found
            }
            None => sprints.last().and_then(id),
        })
    }

    /// The assignee names: the config's, owners expanded, or the user.
    fn assignees(&self, msg: &Message) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for a in &self.cfg.assignee {
            if a.trim() == OWNER_PLACEHOLDER {
                match &msg.content.owners {
                    Some(o) => out.extend(
                        o.split(';')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(str::to_string),
                    ),
                    None => {
                        tracing::debug!(action = %self.name, "no application scope owners; {OWNER_PLACEHOLDER} dropped")
                    }
                }
            } else if !a.trim().is_empty() {
                out.push(a.trim().to_string());
            }
        }
        // Postee: the first expanded assignee, else the user.
        if out.is_empty() {
            out.push(self.cfg.user.clone());
        }
        out
    }

    /// A user reference for the create body: `{accountId}` on Cloud, `{name}` on Server.
    async fn find_user(&self, meta: &Meta, who: &str) -> Result<Option<Value>, Failure> {
        let (param, id_key) = if meta.cloud {
            ("query", "accountId")
        } else {
            ("username", "name")
        };
        let users = self
            .get("/rest/api/2/user/search", &[(param, who)], "user search")
            .await?;
        let users = users.as_array().cloned().unwrap_or_default();
        let exact = users.iter().find(|u| {
            ["name", "emailAddress", "displayName", "accountId", "key"]
                .iter()
                .any(|k| u[*k].as_str().is_some_and(|v| v.eq_ignore_ascii_case(who)))
        });
        Ok(exact
            .or(users.first())
            .and_then(|u| u[id_key].as_str())
            .map(|id| json!({ id_key: id })))
    }

    fn labels(&self, msg: &Message) -> (String, Option<String>) {
        let delivery = format!(
            "postee-{}",
            short_hash(&format!(
                "{}\u{0}{}",
                self.cfg.project_key,
                msg.delivery_id(&self.name)
            ))
        );
        let key = self.upsert_key(msg).map(|k| {
            format!(
                "postee-key-{}",
                short_hash(&format!("{}\u{0}{k}", self.cfg.project_key))
            )
        });
        (delivery, key)
    }

    fn upsert_key<'a>(&self, msg: &'a Message) -> Option<&'a str> {
        if !self.cfg.update_existing {
            return None;
        }
        msg.content
            .keys
            .get(&self.name)
            .map(String::as_str)
            .filter(|k| !k.is_empty())
    }

    fn jql(&self, delivery: &str, key: Option<&str>) -> String {
        let mut which = format!("labels = \"{delivery}\"");
        if let Some(k) = key {
            which = format!("{which} OR (labels = \"{k}\" AND statusCategory != Done)");
        }
        format!(
            "project = \"{}\" AND ({which}) ORDER BY created DESC",
            self.cfg.project_key
        )
    }

    fn search_path(&self, cloud: bool) -> &'static str {
        if cloud {
            "/rest/api/2/search/jql"
        } else {
            "/rest/api/2/search"
        }
    }

    async fn find(&self, meta: &Meta, delivery: &str, key: Option<&str>) -> Result<Found, Failure> {
        let jql = self.jql(delivery, key);
        let v = self
            .get(
                self.search_path(meta.cloud),
                &[
                    ("jql", jql.as_str()),
                    ("fields", "labels,status"),
                    ("maxResults", "10"),
                ],
                "search",
            )
            .await?;
        let issues = v["issues"].as_array().cloned().unwrap_or_default();
        let has = |i: &Value, l: &str| {
            i["fields"]["labels"]
                .as_array()
                .is_some_and(|ls| ls.iter().any(|x| x.as_str() == Some(l)))
        };
        let key_of = |i: &Value| i["key"].as_str().unwrap_or_default().to_string();
        if let Some(i) = issues.iter().find(|i| has(i, delivery)) {
            return Ok(Found::Delivered(key_of(i)));
        }
        if let Some(k) = key
            && let Some(i) = issues.iter().find(|i| {
                has(i, k) && i["fields"]["status"]["statusCategory"]["key"].as_str() != Some("done")
            })
        {
            return Ok(Found::Open(key_of(i)));
        }
        Ok(Found::Nothing)
    }

    fn summary(msg: &Message) -> String {
        let t: String = msg
            .content
            .title
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let t = t.trim();
        if t.is_empty() {
            "Postee alert".into()
        } else {
            truncate_chars(t, MAX_SUMMARY)
        }
    }

    /// The comment: the title, the content, and the delivery's label (how a retry knows the
    /// comment was already made).
    fn comment_body(msg: &Message, delivery: &str) -> Value {
        let text = format!("*{}*\n\n{}", Self::summary(msg), msg.content.description);
        json!({ "body": format!("{}\n\n_({delivery})_", bounded(&text, MAX_TEXT)) })
    }

    /// Whether one of the issue's latest comments carries this delivery's label.
    async fn commented(&self, issue: &str, delivery: &str) -> Result<bool, Failure> {
        let v = self
            .get(
                &format!("/rest/api/2/issue/{issue}/comment"),
                &[("orderBy", "-created"), ("maxResults", "50")],
                "comments",
            )
            .await?;
        Ok(v["comments"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["body"].as_str().is_some_and(|b| b.contains(delivery)))
        }))
    }

    /// The create body's fields that need no lookup.
    fn base_fields(&self, msg: &Message, labels: &[String]) -> Map<String, Value> {
        let mut f = Map::new();
        f.insert("project".into(), json!({"key": self.cfg.project_key}));
        f.insert("summary".into(), json!(Self::summary(msg)));
        f.insert(
            "description".into(),
            json!(bounded(&msg.content.description, MAX_TEXT)),
        );
        if !labels.is_empty() || !self.cfg.labels.is_empty() {
            let mut all: Vec<String> = self.cfg.labels.clone();
            all.extend(labels.iter().cloned());
            f.insert("labels".into(), json!(all));
        }
        let names = |v: &[String]| -> Value {
            Value::Array(v.iter().map(|n| json!({"name": n})).collect())
        };
        if !self.cfg.fix_versions.is_empty() {
            f.insert("fixVersions".into(), names(&self.cfg.fix_versions));
        }
        if !self.cfg.affects_versions.is_empty() {
            f.insert("versions".into(), names(&self.cfg.affects_versions));
        }
        f
    }

    /// The whole create body, with lookups.
    async fn create_fields(
        &self,
        msg: &Message,
        meta: &Meta,
        labels: &[String],
    ) -> Result<Map<String, Value>, Failure> {
        let permanent = |m: String| Failure {
            status: None,
            fields: Vec::new(),
            error: ActionError::permanent(m),
        };
        let on_screen = |id: &str| meta.screen.iter().any(|f| f.id == id);
        // Without Labels on the create screen the issue is still opened, without the labels
        // that keep retries and updates from duplicating it.
        let labelled = meta.screen.is_empty() || on_screen("labels");
        let mut f = if labelled {
            self.base_fields(msg, labels)
        } else {
            tracing::warn!(action = %self.name, project = %self.cfg.project_key, issuetype = %meta.issuetype.1, "the Labels field is not on the create screen: the issue is opened without labels, so a retry or an update may open another one; add Labels to the screen");
            self.base_fields(msg, &[])
        };
        if !labelled {
            f.remove("labels");
        }
        f.insert("issuetype".into(), json!({"id": meta.issuetype.0}));
        // Priority: the configured one, else High when the screen offers it.
        let priority = match &self.cfg.priority {
            Some(p) => Some(p.clone()),
            None => meta
                .screen
                .iter()
                .find(|x| x.id == "priority")
                .and_then(|x| {
                    let names: Vec<&str> = x
                        .allowed
                        .iter()
                        .filter_map(|a| a["name"].as_str())
                        .collect();
                    names
                        .iter()
                        .find(|n| **n == "High")
                        .or(names.first())
                        .map(|n| n.to_string())
                }),
        };
        if let Some(p) = priority {
            f.insert("priority".into(), json!({"name": p}));
        }
        if let Some(sprint) = self.sprint(meta).await? {
            match &meta.sprint_field {
                Some(id) if on_screen(id) => {
                    f.insert(id.clone(), json!(sprint));
                }
                _ => {
                    tracing::warn!(action = %self.name, sprint, "the Sprint field is not on the project's create screen; the issue is created without a sprint")
                }
            }
        }
        if on_screen("assignee") || meta.screen.is_empty() {
            for who in self.assignees(msg) {
                if let Some(u) = self.find_user(meta, &who).await? {
                    f.insert("assignee".into(), u);
                    break;
                }
                tracing::warn!(action = %self.name, user = %who, "no Jira user found to assign");
            }
        }
        for (name, value) in &self.cfg.unknowns {
            let field = meta
                .screen
                .iter()
                .find(|x| &x.name == name)
                .or_else(|| meta.screen.iter().find(|x| &x.id == name))
                .or_else(|| {
                    meta.screen
                        .iter()
                        .find(|x| x.name.eq_ignore_ascii_case(name))
                });
            let Some(field) = field else {
                let exists = meta
                    .all
                    .iter()
                    .any(|(id, n)| n.eq_ignore_ascii_case(name) || id == name);
                return Err(permanent(if exists {
                    format!(
                        "unknowns: field {name:?} is not on the create screen of issue type {} in project {}",
                        meta.issuetype.1, self.cfg.project_key
                    )
                } else {
                    format!("unknowns: key {name} is not found in the list of fields")
                }));
            };
            let mut v = coerce(field, value).map_err(|e| permanent(format!("unknowns: {e}")))?;
            if field.kind == "user" || field.items == "user" {
                v = self.users_value(meta, field, value).await?;
            }
            f.insert(field.id.clone(), v);
        }
        Ok(f)
    }

    async fn users_value(
        &self,
        meta: &Meta,
        field: &MetaField,
        value: &str,
    ) -> Result<Value, Failure> {
        let mut found = Vec::new();
        for who in value.split(',').map(str::trim).filter(|v| !v.is_empty()) {
            match self.find_user(meta, who).await? {
                Some(u) => found.push(u),
                None => {
                    tracing::warn!(action = %self.name, field = %field.name, user = %who, "no Jira user found")
                }
            }
        }
        Ok(if field.kind == "array" {
            Value::Array(found)
        } else {
            found.into_iter().next().unwrap_or(Value::Null)
        })
    }

    async fn deliver(&self, msg: &Message) -> Result<(), ActionError> {
        let (delivery, key) = self.labels(msg);
        if self.cfg.update_existing && key.is_none() {
            tracing::warn!(action = %self.name, event_id = %msg.event_id, route = %msg.route, "update-existing: no upsert key for this message (its props found no value); a new issue is created");
        }
        let mut meta = self.meta(false).await?;
        match self.find(&meta, &delivery, key.as_deref()).await? {
            Found::Delivered(k) => {
                tracing::info!(action = %self.name, issue = %k, "Jira issue of this delivery already exists (an earlier attempt created it)");
                return Ok(());
            }
            Found::Open(k) => {
                if self.commented(&k, &delivery).await? {
                    tracing::info!(action = %self.name, issue = %k, "Jira comment of this delivery already exists (an earlier attempt made it)");
                    return Ok(());
                }
                let url = self.url(&format!("/rest/api/2/issue/{k}/comment"), &[]);
                let body = Self::comment_body(msg, &delivery);
                self.call(reqwest::Method::POST, url, Some(&body), "add comment")
                    .await?;
                tracing::info!(action = %self.name, issue = %k, "commented on the open Jira issue of the same key");
                return Ok(());
            }
            Found::Nothing => {}
        }
        let mut labels = vec![delivery];
        labels.extend(key);
        let mut refreshed = false;
        loop {
            let fields = self.create_fields(msg, &meta, &labels).await?;
            let body = json!({ "fields": fields });
            let url = self.url("/rest/api/2/issue", &[]);
            match self
                .call(reqwest::Method::POST, url, Some(&body), "create issue")
                .await
            {
                Ok(v) => {
                    tracing::info!(action = %self.name, issue = %v["key"].as_str().unwrap_or_default(), id = %v["id"].as_str().unwrap_or_default(), "Jira issue created");
                    return Ok(());
                }
                // Jira refused a field whose id came from the cached metadata (a custom field,
                // the issue type): it may be stale; fetch it once more.
                Err(f)
                    if f.status == Some(400)
                        && !refreshed
                        && f.fields
                            .iter()
                            .any(|x| x.starts_with("customfield_") || x == "issuetype") =>
                {
                    tracing::info!(action = %self.name, error = %f.error, "Jira refused a field; fetching the project's metadata again");
                    refreshed = true;
                    meta = self.meta(true).await?;
                }
                Err(f) => return Err(f.error),
            }
        }
    }

    fn call_shown(
        &self,
        method: &str,
        url: reqwest::Url,
        body: Option<Value>,
        note: &str,
    ) -> Value {
        let mut headers = json!({"Accept": "application/json", "Authorization": self.auth_shown()});
        if body.is_some() {
            headers["Content-Type"] = json!("application/json");
        }
        // Placeholders (`<issue type id>`) read as written, not percent-encoded.
        let shown = shown_url(&url)
            .replace("%3C", "<")
            .replace("%3E", ">")
            .replace("%20", " ");
        let mut v = json!({"method": method, "url": shown, "headers": headers});
        if let Some(b) = body {
            v["body"] = b;
        }
        if !note.is_empty() {
            v["note"] = json!(note);
        }
        v
    }
}

#[async_trait]
impl Action for Jira {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "jira"
    }

    fn key_props(&self) -> Option<&[String]> {
        self.cfg
            .update_existing
            .then_some(&self.cfg.unique_props[..])
    }

    async fn send(&self, msg: &Message) -> Result<(), ActionError> {
        let (delivery, key) = self.labels(msg);
        let lock = key.as_deref().unwrap_or(&delivery);
        let stripe = lock
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        let _guard = self.locks[stripe % LOCKS].lock().await;
        self.deliver(msg).await
    }

    fn preview(&self, msg: &Message) -> Value {
        let (delivery, key) = self.labels(msg);
        let cloud = self.cfg.cloud_host;
        let key_ = &self.cfg.project_key;
        let cached = "once per action (cached)";
        let mut calls = vec![
            self.call_shown("GET", self.url("/rest/api/2/serverInfo", &[]), None, &format!("{cached}: Cloud or Server, and its version")),
            self.call_shown(
                "GET",
                self.url(&format!("/rest/api/2/issue/createmeta/{key_}/issuetypes"), &[("startAt", "0"), ("maxResults", "100")]),
                None,
                &format!("{cached}; Jira Server before 9: GET /rest/api/2/issue/createmeta?projectKeys={key_}&expand=projects.issuetypes.fields"),
            ),
            self.call_shown(
                "GET",
                self.url(&format!("/rest/api/2/issue/createmeta/{key_}/issuetypes/<issue type id>"), &[("startAt", "0"), ("maxResults", "100")]),
                None,
                &format!("{cached}: the create screen of issue type {}", self.cfg.issuetype.as_deref().unwrap_or("Task (or the first)")),
            ),
            self.call_shown("GET", self.url("/rest/api/2/field", &[]), None, cached),
            self.call_shown(
                "GET",
                self.url("/rest/agile/1.0/board", &[("projectKeyOrId", key_), ("startAt", "0"), ("maxResults", "100")]),
                None,
                &format!("{cached}: board {:?}", self.cfg.board),
            ),
        ];
        let jql = self.jql(&delivery, key.as_deref());
        calls.push(self.call_shown(
            "GET",
            self.url(self.search_path(cloud), &[("jql", &jql), ("fields", "labels,status"), ("maxResults", "10")]),
            None,
            if key.is_some() {
                "an issue labelled with this delivery: done; an open issue of the same key: comment on it instead of creating"
            } else {
                "an issue labelled with this delivery (an earlier attempt created it): done"
            },
        ));
        if key.is_some() {
            calls.push(self.call_shown(
                "GET",
                self.url("/rest/api/2/issue/<open issue>/comment", &[("orderBy", "-created"), ("maxResults", "50")]),
                None,
                "only when an open issue of the same key was found: a comment of this delivery there means done",
            ));
            calls.push(self.call_shown(
                "POST",
                self.url("/rest/api/2/issue/<open issue>/comment", &[]),
                Some(Self::comment_body(msg, &delivery)),
                "only when an open issue of the same key was found (then nothing else is sent)",
            ));
        } else if self.cfg.update_existing {
            calls.push(json!({"note": "update-existing: this message has no upsert key (its props found no value); a new issue is created"}));
        }
        let sprint_note = match &self.cfg.sprint {
            Some(s) if s.parse::<i64>().is_ok() => String::new(),
            Some(s) => format!("sprints of the board named {s:?}"),
            None => "when the board is a scrum board: its active sprint".into(),
        };
        if !sprint_note.is_empty() {
            calls.push(self.call_shown(
                "GET",
                self.url(
                    "/rest/agile/1.0/board/<board id>/sprint",
                    &[
                        (
                            "state",
                            if self.cfg.sprint.is_some() {
                                "active,future"
                            } else {
                                "active"
                            },
                        ),
                        ("startAt", "0"),
                        ("maxResults", "100"),
                    ],
                ),
                None,
                &sprint_note,
            ));
        }
        let (param, id_key) = if cloud {
            ("query", "accountId")
        } else {
            ("username", "name")
        };
        let assignees = self.assignees(msg);
        if let Some(first) = assignees.first() {
            calls.push(self.call_shown(
                "GET",
                self.url("/rest/api/2/user/search", &[(param, first)]),
                None,
                "the assignee (the next name when none is found)",
            ));
        }
        let mut labels = vec![delivery];
        labels.extend(key);
        let mut fields = self.base_fields(msg, &labels);
        fields.insert(
            "issuetype".into(),
            json!({"id": format!("<id of {}>", self.cfg.issuetype.as_deref().unwrap_or("Task"))}),
        );
        fields.insert(
            "priority".into(),
            json!({"name": self.cfg.priority.as_deref().unwrap_or("High (when the project has it)")}),
        );
        if let Some(first) = assignees.first() {
            fields.insert(
                "assignee".into(),
                json!({ id_key: format!("<{id_key} of {first}>") }),
            );
        }
        fields.insert("<Sprint field id>".into(), json!("<sprint id, a number>"));
        for (name, value) in &self.cfg.unknowns {
            fields.insert(
                format!("<id of {name}>"),
                json!(format!("{value} (converted by the field's type)")),
            );
        }
        calls.push(self.call_shown(
            "POST",
            self.url("/rest/api/2/issue", &[]),
            Some(json!({ "fields": fields })),
            if cloud {
                "Jira Cloud"
            } else {
                "Jira Server / Data Center (Cloud when serverInfo says so)"
            },
        ));
        json!({
            "tls_verify": !self.cfg.skip_verify,
            "timeout": format!("{:?}", self.cfg.timeout),
            "calls": calls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FieldValue;
    use crate::message::Rendered;

    fn fields(pairs: &[(&str, FieldValue)]) -> Fields {
        let mut f = Fields::new(KEYS);
        for (k, v) in pairs {
            f.set(k, v.clone());
        }
        f
    }

    fn s(v: &str) -> FieldValue {
        FieldValue::Str(v.into())
    }

    #[test]
    fn validate_reads_auth_and_refuses_a_pat_on_cloud() {
        let f = fields(&[
            ("url", s("https://jira.example.com/jira")),
            ("project-key", s("sec")),
            ("user", s("bot")),
            ("token", FieldValue::Secret(Secret::new("pat-1"))),
        ]);
        let cfg = validate(&f).config.unwrap();
        assert_eq!(cfg.project_key, "SEC");
        assert_eq!(cfg.board, "SEC board");
        assert!(matches!(cfg.auth, Auth::Bearer(_)));
        assert!(!cfg.skip_verify);
        let f = fields(&[
            ("url", s("https://acme.atlassian.net")),
            ("project-key", s("SEC")),
            ("user", s("a@acme.com")),
            ("token", FieldValue::Secret(Secret::new("pat-1"))),
            ("tls-verify", FieldValue::Bool(false)),
        ]);
        let v = validate(&f);
        assert_eq!(v.warnings[0].key, "tls-verify");
        let errs = v.config.unwrap_err();
        assert_eq!(errs[0].key, "token");
        assert!(errs[0].message.contains("Jira Cloud can't work with PAT"));
        assert!(!format!("{errs:?}").contains("pat-1"));
    }

    #[test]
    fn validate_reports_labels_with_spaces_and_the_ignored_summary() {
        let f = fields(&[
            ("url", s("https://jira.example.com")),
            ("project-key", s("SEC")),
            ("user", s("bot")),
            ("password", FieldValue::Secret(Secret::new("pw"))),
            (
                "labels",
                FieldValue::List(vec!["ok".into(), "not ok".into()]),
            ),
            ("summary", s("x")),
        ]);
        let v = validate(&f);
        assert_eq!(v.warnings[0].key, "summary");
        assert_eq!(v.config.unwrap_err()[0].key, "labels");
    }

    #[test]
    fn jira_errors_read_messages_and_fields() {
        let (t, f) = jira_error_text(
            r#"{"errorMessages":["Issue type is required"],"errors":{"customfield_10010":"Field 'customfield_10010' cannot be set."}}"#,
        );
        assert_eq!(
            t,
            "Issue type is required; customfield_10010: Field 'customfield_10010' cannot be set."
        );
        assert_eq!(f, ["customfield_10010"]);
        assert_eq!(jira_error_text("<html>busy</html>").0, "<html>busy</html>");
    }

    fn field(kind: &str, items: &str, custom: &str) -> MetaField {
        MetaField {
            id: "customfield_1".into(),
            name: "F".into(),
            kind: kind.into(),
            items: items.into(),
            custom: custom.into(),
            allowed: Vec::new(),
        }
    }

    #[test]
    fn unknowns_are_coerced_by_the_schema() {
        assert_eq!(
            coerce(&field("string", "", ""), "a,b").unwrap(),
            json!("a,b")
        );
        assert_eq!(coerce(&field("number", "", ""), "42").unwrap(), json!(42));
        assert_eq!(coerce(&field("number", "", ""), "4.5").unwrap(), json!(4.5));
        assert!(coerce(&field("number", "", ""), "x").is_err());
        assert_eq!(
            coerce(&field("array", "option", ""), "a, b").unwrap(),
            json!([{"value": "a"}, {"value": "b"}])
        );
        assert_eq!(
            coerce(&field("array", "component", ""), "api").unwrap(),
            json!([{"name": "api"}])
        );
        assert_eq!(
            coerce(&field("array", "string", ""), "x,y").unwrap(),
            json!(["x", "y"])
        );
        assert_eq!(
            coerce(&field("array", "number", SPRINT_CUSTOM), "7").unwrap(),
            json!(7)
        );
        assert_eq!(
            coerce(&field("option", "", ""), "Yes").unwrap(),
            json!({"value": "Yes"})
        );
        assert_eq!(
            coerce(&field("date", "", ""), "2026-01-02").unwrap(),
            json!("2026-01-02")
        );
        assert!(coerce(&field("weird", "", ""), "x").is_err());
    }

    #[test]
    fn labels_hash_the_delivery_and_the_key() {
        crate::install_crypto_provider();
        let mut f = fields(&[
            ("url", s("https://jira.example.com")),
            ("project-key", s("SEC")),
            ("user", s("bot")),
            ("password", FieldValue::Secret(Secret::new("pw"))),
            ("update-existing", FieldValue::Bool(true)),
        ]);
        f.set("unique-props", FieldValue::List(vec!["image".into()]));
        let cfg = validate(&f).config.unwrap();
        let ctx = BuildContext {
            http: reqwest::Client::new(),
            aqua_server: String::new(),
        };
        let a = build("j", cfg, &ctx).unwrap();
        assert_eq!(a.key_props(), Some(&["image".to_string()][..]));
        let mut content = Rendered {
            title: "t".into(),
            ..Default::default()
        };
        content.keys.insert("j".into(), "alpine".into());
        let msg = Message {
            event_id: "e1".into(),
            route: "r".into(),
            content,
        };
        let p = a.preview(&msg);
        let text = p.to_string();
        assert!(!text.contains("pw\""), "{text}");
        let post = p["calls"].as_array().unwrap().last().unwrap().clone();
        let labels = post["body"]["fields"]["labels"].as_array().unwrap();
        assert!(labels[0].as_str().unwrap().starts_with("postee-"));
        assert_eq!(labels[0].as_str().unwrap().len(), "postee-".len() + 16);
        assert!(labels[1].as_str().unwrap().starts_with("postee-key-"));
        assert_eq!(post["headers"]["Authorization"], "Basic <hidden>");
    }
}
