//! The `jira` action, with the real binary, against a stateful fake Jira that checks every
//! request the way Jira's REST API v2 and Agile API 1.0 documentation describe it (auth
//! header, paths, query strings, content type, the create body's field names and types) and
//! answers the way Jira does (Server 9, Server 8 and Cloud flavours), error bodies included
//! (`{"errorMessages": [...], "errors": {...}}`).

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use crate::common::*;

const SPRINT_CUSTOM: &str = "com.pyxis.greenhopper.jira:gh-sprint";
const AUTH_BODY: &str = r#"{"errorMessages":["You are not authenticated. Authentication required to perform this operation."],"errors":{}}"#;
const FAST_RETRY: &str = "retry: {initial-delay: 20ms, max-delay: 50ms}";

/// One request the fake got.
#[derive(Debug, Clone)]
struct Req {
    at: Instant,
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    headers: BTreeMap<String, String>,
    body: String,
    status: u16,
}

impl Req {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

#[derive(Debug, Clone)]
struct Issue {
    key: String,
    fields: Value,
    done: bool,
}

/// A scripted answer for the next request whose "METHOD /path" starts with `to`.
struct Scripted {
    to: String,
    status: u16,
    body: String,
    headers: Vec<(String, String)>,
}

struct JiraState {
    cloud: bool,
    version: [u64; 3],
    /// The exact `Authorization` header Jira accepts.
    auth: String,
    /// The create screen (create-meta fields of every issue type).
    screen: Vec<Value>,
    /// Fields that exist but are not on the screen.
    hidden: Vec<Value>,
    sprints: Vec<Value>,
    issues: Vec<Issue>,
    comments: Vec<(String, String)>,
    requests: Vec<Req>,
    /// What the fake found wrong in a request (a test fails unless empty).
    problems: Vec<String>,
    scripted: Vec<Scripted>,
    /// Creates that succeed but answer 503 (the answer is lost).
    lose_create_answers: usize,
    /// The same for comments.
    lose_comment_answers: usize,
}

fn field(id: &str, name: &str, schema: Value) -> Value {
    json!({"required": false, "schema": schema, "name": name, "fieldId": id, "key": id,
           "hasDefaultValue": false, "operations": ["set"]})
}

fn screen() -> Vec<Value> {
    let mut priority = field(
        "priority",
        "Priority",
        json!({"type": "priority", "system": "priority"}),
    );
    priority["allowedValues"] = json!([
        {"id": "1", "name": "Highest"}, {"id": "2", "name": "High"}, {"id": "3", "name": "Medium"}
    ]);
    let mut severity = field(
        "customfield_10101",
        "Severity",
        json!({"type": "option", "custom": "com.atlassian.jira.plugin.system.customfieldtypes:select", "customId": 10101}),
    );
    severity["allowedValues"] =
        json!([{"id": "1", "value": "Critical"}, {"id": "2", "value": "High"}]);
    vec![
        field(
            "summary",
            "Summary",
            json!({"type": "string", "system": "summary"}),
        ),
        field(
            "issuetype",
            "Issue Type",
            json!({"type": "issuetype", "system": "issuetype"}),
        ),
        field(
            "project",
            "Project",
            json!({"type": "project", "system": "project"}),
        ),
        field(
            "description",
            "Description",
            json!({"type": "string", "system": "description"}),
        ),
        priority,
        field(
            "assignee",
            "Assignee",
            json!({"type": "user", "system": "assignee"}),
        ),
        field(
            "labels",
            "Labels",
            json!({"type": "array", "items": "string", "system": "labels"}),
        ),
        field(
            "fixVersions",
            "Fix Version/s",
            json!({"type": "array", "items": "version", "system": "fixVersions"}),
        ),
        field(
            "versions",
            "Affects Version/s",
            json!({"type": "array", "items": "version", "system": "versions"}),
        ),
        field(
            "components",
            "Component/s",
            json!({"type": "array", "items": "component", "system": "components"}),
        ),
        field(
            "customfield_10020",
            "Sprint",
            json!({"type": "array", "items": "json", "custom": SPRINT_CUSTOM, "customId": 10020}),
        ),
        field(
            "customfield_10100",
            "Environment",
            json!({"type": "string", "custom": "com.atlassian.jira.plugin.system.customfieldtypes:textfield", "customId": 10100}),
        ),
        severity,
        field(
            "customfield_10102",
            "Story Points",
            json!({"type": "number", "custom": "com.atlassian.jira.plugin.system.customfieldtypes:float", "customId": 10102}),
        ),
        field(
            "customfield_10103",
            "Due",
            json!({"type": "date", "custom": "com.atlassian.jira.plugin.system.customfieldtypes:datepicker", "customId": 10103}),
        ),
    ]
}

/// A fake Jira on a thread of its own.
struct FakeJira {
    port: u16,
    st: Arc<Mutex<JiraState>>,
    _thread: std::thread::JoinHandle<()>,
}

impl FakeJira {
    fn start(cloud: bool, version: [u64; 3], auth: &str) -> FakeJira {
        Self::start_with(cloud, version, auth, false)
    }

    /// `tls`: HTTPS with a self-signed certificate (no client trusts it).
    fn start_with(cloud: bool, version: [u64; 3], auth: &str, tls: bool) -> FakeJira {
        let st = Arc::new(Mutex::new(JiraState {
            cloud,
            version,
            auth: auth.to_string(),
            screen: screen(),
            hidden: vec![field(
                "customfield_10200",
                "Hidden",
                json!({"type": "string", "custom": "com.atlassian.jira.plugin.system.customfieldtypes:textfield"}),
            )],
            sprints: vec![
                json!({"id": 41, "state": "active", "name": "Sprint 1", "originBoardId": 7}),
                json!({"id": 57, "state": "active", "name": "Sprint 2", "originBoardId": 7}),
                json!({"id": 63, "state": "future", "name": "Sprint 3", "originBoardId": 7}),
                json!({"id": 30, "state": "closed", "name": "Sprint 0", "originBoardId": 7}),
            ],
            issues: Vec::new(),
            comments: Vec::new(),
            requests: Vec::new(),
            problems: Vec::new(),
            scripted: Vec::new(),
            lose_create_answers: 0,
            lose_comment_answers: 0,
        }));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let s = st.clone();
        let thread = std::thread::spawn(move || {
            block_on(async move {
                let app = axum::Router::new().fallback(handle).with_state(s);
                if tls {
                    postee::install_crypto_provider();
                    let ck = rcgen::generate_simple_self_signed(vec![
                        "127.0.0.1".to_string(),
                        "localhost".to_string(),
                    ])
                    .unwrap();
                    let config = axum_server::tls_rustls::RustlsConfig::from_pem(
                        ck.cert.pem().into_bytes(),
                        ck.signing_key.serialize_pem().into_bytes(),
                    )
                    .await
                    .unwrap();
                    axum_server::from_tcp_rustls(listener, config)
                        .unwrap()
                        .serve(app.into_make_service())
                        .await
                        .unwrap();
                } else {
                    let l = tokio::net::TcpListener::from_std(listener).unwrap();
                    axum::serve(l, app).await.unwrap();
                }
            })
        });
        FakeJira {
            port,
            st,
            _thread: thread,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn https_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn script(&self, to: &str, status: u16, body: &str, headers: &[(&str, &str)]) {
        self.st.lock().unwrap().scripted.push(Scripted {
            to: to.to_string(),
            status,
            body: body.to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        });
    }

    fn requests(&self) -> Vec<Req> {
        self.st.lock().unwrap().requests.clone()
    }

    fn requests_to(&self, method: &str, path: &str) -> Vec<Req> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path == path)
            .collect()
    }

    fn issues(&self) -> Vec<Issue> {
        self.st.lock().unwrap().issues.clone()
    }

    fn comments(&self) -> Vec<(String, String)> {
        self.st.lock().unwrap().comments.clone()
    }

    fn assert_no_problems(&self) {
        let st = self.st.lock().unwrap();
        assert!(
            st.problems.is_empty(),
            "the fake Jira found bad requests: {:#?}",
            st.problems
        );
    }

    fn wait_issues(&self, n: usize, p: &Postee) {
        wait_until(
            Duration::from_secs(30),
            || self.issues().len() >= n,
            || {
                format!(
                    "waiting for {n} issues; problems {:?}; log:\n{}",
                    self.st.lock().unwrap().problems,
                    p.stderr()
                )
            },
        );
    }
}

fn reply(status: u16, body: Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json;charset=UTF-8")],
        body.to_string(),
    )
        .into_response()
}

fn jira_error(status: u16, messages: &[&str], errors: Value) -> Response {
    reply(status, json!({"errorMessages": messages, "errors": errors}))
}

async fn handle(
    State(st): State<Arc<Mutex<JiraState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query: BTreeMap<String, String> = uri
        .query()
        .map(|q| {
            reqwest::Url::parse(&format!("http://x/?{q}"))
                .unwrap()
                .query_pairs()
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let req = Req {
        at: Instant::now(),
        method: method.to_string(),
        path: uri.path().to_string(),
        query,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
        status: 0,
    };
    let mut s = st.lock().unwrap();
    let resp = answer(&mut s, &req);
    let mut req = req;
    req.status = resp.status().as_u16();
    s.requests.push(req);
    resp
}

fn answer(s: &mut JiraState, r: &Req) -> Response {
    if r.headers.get("authorization") != Some(&s.auth) {
        return (
            StatusCode::UNAUTHORIZED,
            [
                ("content-type", "application/json;charset=UTF-8"),
                ("www-authenticate", "Basic realm=\"protected-area\""),
            ],
            AUTH_BODY,
        )
            .into_response();
    }
    let line = format!("{} {}", r.method, r.path);
    if let Some(i) = s.scripted.iter().position(|x| line.starts_with(&x.to)) {
        let x = s.scripted.remove(i);
        let mut resp = (StatusCode::from_u16(x.status).unwrap(), x.body).into_response();
        for (k, v) in x.headers {
            resp.headers_mut().insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        return resp;
    }
    if r.method == "GET" && !r.body.is_empty() {
        s.problems.push(format!("{line}: a GET with a body"));
    }
    if r.method == "POST"
        && !r
            .headers
            .get("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    {
        s.problems.push(format!(
            "{line}: Content-Type {:?}",
            r.headers.get("content-type")
        ));
        return reply(415, json!({"errorMessages": ["Unsupported Media Type"]}));
    }
    let new_api = s.cloud || s.version[0] >= 9;
    let q = |k: &str| r.query.get(k).cloned().unwrap_or_default();
    let page = |items: Vec<Value>, key: &str, cloud_key: &str, s: &mut JiraState| -> Response {
        let start: usize = match q("startAt").parse() {
            Ok(n) => n,
            Err(_) if q("startAt").is_empty() => 0,
            Err(_) => {
                s.problems
                    .push(format!("{line}: startAt {:?}", q("startAt")));
                0
            }
        };
        // Jira caps a page; the fake at 5, so paging is exercised.
        let max: usize = q("maxResults").parse().unwrap_or(50).min(5);
        let total = items.len();
        let values: Vec<Value> = items.into_iter().skip(start).take(max).collect();
        let is_last = start + values.len() >= total;
        let k = if s.cloud { cloud_key } else { key };
        let mut v = json!({"maxResults": max, "startAt": start, "total": total});
        if !s.cloud || k == "values" {
            v["isLast"] = json!(is_last);
        }
        v[k] = Value::Array(values);
        reply(200, v)
    };
    let types = json!([
        {"id": "10001", "name": "Bug", "subtask": false, "description": "A problem."},
        {"id": "10002", "name": "Task", "subtask": false, "description": "A task."},
        {"id": "10003", "name": "Sub-task", "subtask": true, "description": "A part."}
    ]);
    match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/rest/api/2/serverInfo") => {
            let v = s.version;
            reply(
                200,
                json!({
                    "baseUrl": "http://jira.test", "version": format!("{}.{}.{}", v[0], v[1], v[2]),
                    "versionNumbers": v, "deploymentType": if s.cloud { "Cloud" } else { "Server" },
                    "buildNumber": 100000, "serverTitle": "Jira"
                }),
            )
        }
        ("GET", "/rest/api/2/issue/createmeta/SEC/issuetypes") if new_api => {
            page(types.as_array().unwrap().clone(), "values", "issueTypes", s)
        }
        ("GET", p) if new_api && p.starts_with("/rest/api/2/issue/createmeta/SEC/issuetypes/") => {
            let id = p.rsplit('/').next().unwrap();
            if !["10001", "10002", "10003"].contains(&id) {
                s.problems.push(format!("{line}: unknown issue type"));
                return jira_error(404, &["Issue type not found"], json!({}));
            }
            let f = s.screen.clone();
            page(f, "values", "fields", s)
        }
        ("GET", p) if p.starts_with("/rest/api/2/issue/createmeta/") && new_api => {
            jira_error(404, &["No project could be found with key 'X'."], json!({}))
        }
        ("GET", "/rest/api/2/issue/createmeta") if !new_api => {
            if q("projectKeys") != "SEC" || q("expand") != "projects.issuetypes.fields" {
                s.problems.push(format!("{line}: query {:?}", r.query));
            }
            let fields: serde_json::Map<String, Value> = s
                .screen
                .iter()
                .map(|f| {
                    let mut f = f.clone();
                    let id = f["fieldId"].as_str().unwrap().to_string();
                    f.as_object_mut().unwrap().remove("fieldId");
                    (id, f)
                })
                .collect();
            let its: Vec<Value> = types
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    let mut t = t.clone();
                    t["fields"] = Value::Object(fields.clone());
                    t
                })
                .collect();
            reply(
                200,
                json!({"expand": "projects", "projects": [
                    {"id": "10000", "key": "SEC", "name": "Security", "issuetypes": its}
                ]}),
            )
        }
        ("GET", "/rest/api/2/field") => {
            let mut all: Vec<Value> = s
                .screen
                .iter()
                .chain(s.hidden.iter())
                .map(|f| {
                    let id = f["fieldId"].as_str().unwrap();
                    json!({"id": id, "key": id, "name": f["name"], "custom": id.starts_with("customfield_"),
                           "orderable": true, "navigable": true, "searchable": true, "schema": f["schema"]})
                })
                .collect();
            all.push(json!({"id": "status", "name": "Status", "custom": false, "schema": {"type": "status", "system": "status"}}));
            reply(200, Value::Array(all))
        }
        ("GET", "/rest/agile/1.0/board") => {
            if q("projectKeyOrId") != "SEC" {
                s.problems.push(format!("{line}: query {:?}", r.query));
            }
            let boards = vec![
                json!({"id": 5, "self": "http://jira.test/rest/agile/1.0/board/5", "name": "SEC board", "type": "kanban"}),
                json!({"id": 8, "self": "http://jira.test/rest/agile/1.0/board/8", "name": "Ops board", "type": "kanban"}),
                json!({"id": 7, "self": "http://jira.test/rest/agile/1.0/board/7", "name": "SEC board", "type": "scrum"}),
            ];
            page(boards, "values", "values", s)
        }
        ("GET", "/rest/agile/1.0/board/7/sprint") => {
            let states: Vec<String> = q("state").split(',').map(str::to_string).collect();
            if q("state").is_empty() {
                s.problems.push(format!("{line}: no state"));
            }
            let sprints: Vec<Value> = s
                .sprints
                .iter()
                .filter(|sp| states.iter().any(|st| sp["state"] == st.as_str()))
                .cloned()
                .collect();
            page(sprints, "values", "values", s)
        }
        ("GET", p) if p.starts_with("/rest/agile/1.0/board/") && p.ends_with("/sprint") => {
            s.problems
                .push(format!("{line}: sprints of a kanban board"));
            jira_error(400, &["The board does not support sprints"], json!({}))
        }
        ("GET", "/rest/api/2/user/search") => {
            let (param, other) = if s.cloud {
                ("query", "username")
            } else {
                ("username", "query")
            };
            if r.query.contains_key(other) || q(param).is_empty() {
                s.problems.push(format!("{line}: query {:?}", r.query));
                return jira_error(
                    400,
                    &["The query parameter 'username' is not supported in GDPR strict mode."],
                    json!({}),
                );
            }
            let who = q(param).to_ascii_lowercase();
            let users: Vec<Value> = if s.cloud {
                vec![
                    json!({"accountId": "5b10ac8d82e05b22cc7d4ef5", "accountType": "atlassian", "emailAddress": "owner@acme.com", "displayName": "Olive Owner", "active": true}),
                    json!({"accountId": "5b10a2844c20165700ede21g", "accountType": "atlassian", "emailAddress": "bot@acme.com", "displayName": "Alerts Bot", "active": true}),
                ]
            } else {
                vec![
                    json!({"name": "jdoe", "key": "JIRAUSER10100", "emailAddress": "jdoe@example.com", "displayName": "John Doe", "active": true}),
                    json!({"name": "postee", "key": "JIRAUSER10101", "emailAddress": "postee@example.com", "displayName": "Postee Bot", "active": true}),
                ]
            };
            let found: Vec<Value> = users
                .into_iter()
                .filter(|u| {
                    ["name", "emailAddress", "displayName"].iter().any(|k| {
                        u[*k]
                            .as_str()
                            .is_some_and(|v| v.to_ascii_lowercase().starts_with(&who))
                    })
                })
                .collect();
            reply(200, Value::Array(found))
        }
        ("GET", "/rest/api/2/search") | ("GET", "/rest/api/2/search/jql") => {
            let jql_path = r.path.ends_with("/jql");
            if jql_path != s.cloud {
                s.problems
                    .push(format!("{line}: wrong search endpoint for this Jira"));
                return if s.cloud {
                    jira_error(
                        410,
                        &[
                            "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API.",
                        ],
                        json!({}),
                    )
                } else {
                    jira_error(404, &["null for uri"], json!({}))
                };
            }
            let re = regex::Regex::new(
                r#"^project = "SEC" AND \(labels = "(postee-[0-9a-f]{16})"(?: OR \(labels = "(postee-key-[0-9a-f]{16})" AND statusCategory != Done\))?\) ORDER BY created DESC$"#,
            )
            .unwrap();
            let jql = q("jql");
            let Some(c) = re.captures(&jql) else {
                s.problems.push(format!("{line}: JQL {jql:?}"));
                return jira_error(400, &["Error in the JQL Query: unexpected"], json!({}));
            };
            if q("fields") != "labels,status" {
                s.problems.push(format!("{line}: fields {:?}", q("fields")));
            }
            let delivery = c.get(1).unwrap().as_str();
            let key = c.get(2).map(|m| m.as_str());
            let has = |i: &Issue, l: &str| {
                i.fields["labels"]
                    .as_array()
                    .is_some_and(|ls| ls.iter().any(|x| x == l))
            };
            let found: Vec<Value> = s
                .issues
                .iter()
                .rev()
                .filter(|i| has(i, delivery) || key.is_some_and(|k| has(i, k) && !i.done))
                .map(|i| {
                    let (name, cat) = if i.done {
                        ("Done", "done")
                    } else {
                        ("To Do", "new")
                    };
                    json!({"id": "1", "key": i.key, "fields": {
                        "labels": i.fields["labels"],
                        "status": {"name": name, "statusCategory": {"key": cat, "name": name}}
                    }})
                })
                .collect();
            if s.cloud {
                reply(200, json!({"issues": found, "isLast": true}))
            } else {
                reply(
                    200,
                    json!({"startAt": 0, "maxResults": 10, "total": found.len(), "issues": found}),
                )
            }
        }
        ("POST", "/rest/api/2/issue") => create(s, r),
        ("POST", p) if p.starts_with("/rest/api/2/issue/") && p.ends_with("/comment") => {
            let key = p.split('/').nth(5).unwrap().to_string();
            let b = r.json();
            if !b["body"].is_string() || b.as_object().unwrap().len() != 1 {
                s.problems.push(format!("{line}: comment body {b}"));
                return jira_error(400, &[], json!({"body": "Comment body can not be empty!"}));
            }
            if !s.issues.iter().any(|i| i.key == key) {
                return jira_error(404, &["Issue Does Not Exist"], json!({}));
            }
            s.comments
                .push((key, b["body"].as_str().unwrap().to_string()));
            if s.lose_comment_answers > 0 {
                s.lose_comment_answers -= 1;
                return jira_error(502, &["Bad gateway"], json!({}));
            }
            reply(201, json!({"id": "10500", "body": b["body"]}))
        }
        ("GET", p) if p.starts_with("/rest/api/2/issue/") && p.ends_with("/comment") => {
            let key = p.split('/').nth(5).unwrap().to_string();
            if q("orderBy") != "-created" {
                s.problems
                    .push(format!("{line}: orderBy {:?}", q("orderBy")));
            }
            let all: Vec<Value> = s
                .comments
                .iter()
                .rev()
                .filter(|(k, _)| *k == key)
                .map(|(_, b)| json!({"id": "10500", "body": b}))
                .collect();
            reply(
                200,
                json!({"startAt": 0, "maxResults": 50, "total": all.len(), "comments": all}),
            )
        }
        _ => {
            s.problems.push(format!("{line}: no such resource"));
            jira_error(404, &["null for uri"], json!({}))
        }
    }
}

/// `POST /rest/api/2/issue`: checks each field's shape as Jira's create-meta says.
fn create(s: &mut JiraState, r: &Req) -> Response {
    let b = r.json();
    let mut bad: BTreeMap<String, String> = BTreeMap::new();
    let Some(f) = b["fields"].as_object() else {
        s.problems
            .push(format!("create: no fields object: {}", r.body));
        return jira_error(400, &["Can not deserialize"], json!({}));
    };
    if b.as_object().unwrap().len() != 1 {
        s.problems.push(format!("create: keys besides fields: {b}"));
    }
    let screen_ids: Vec<String> = s
        .screen
        .iter()
        .map(|x| x["fieldId"].as_str().unwrap().to_string())
        .collect();
    for (id, v) in f {
        if !screen_ids.contains(id) {
            bad.insert(
                id.clone(),
                format!(
                    "Field '{id}' cannot be set. It is not on the appropriate screen, or unknown."
                ),
            );
            continue;
        }
        let ok = match id.as_str() {
            "project" => v == &json!({"key": "SEC"}),
            "issuetype" => {
                v.as_object().is_some_and(|o| o.len() == 1)
                    && (["10001", "10002"].contains(&v["id"].as_str().unwrap_or("x"))
                        || ["Bug", "Task"].contains(&v["name"].as_str().unwrap_or("x")))
            }
            "summary" => v
                .as_str()
                .is_some_and(|t| !t.is_empty() && t.chars().count() <= 255 && !t.contains('\n')),
            "description" | "customfield_10100" | "customfield_10103" => v.is_string(),
            "priority" => {
                v.as_object().is_some_and(|o| o.len() == 1)
                    && ["Highest", "High", "Medium"].contains(&v["name"].as_str().unwrap_or("x"))
            }
            "assignee" => {
                let o = v.as_object();
                if s.cloud {
                    o.is_some_and(|o| o.len() == 1) && v["accountId"].is_string()
                } else {
                    o.is_some_and(|o| o.len() == 1) && v["name"].is_string()
                }
            }
            "labels" => v.as_array().is_some_and(|a| {
                a.iter()
                    .all(|l| l.as_str().is_some_and(|l| !l.contains(' ')))
            }),
            "fixVersions" | "versions" | "components" => v.as_array().is_some_and(|a| {
                a.iter()
                    .all(|x| x.as_object().is_some_and(|o| o.len() == 1) && x["name"].is_string())
            }),
            "customfield_10020" => v
                .as_i64()
                .is_some_and(|id| s.sprints.iter().any(|sp| sp["id"] == id)),
            "customfield_10101" => {
                v.as_object().is_some_and(|o| o.len() == 1)
                    && ["Critical", "High"].contains(&v["value"].as_str().unwrap_or("x"))
            }
            "customfield_10102" => v.is_number(),
            _ => true,
        };
        if !ok {
            s.problems.push(format!("create: field {id} = {v}"));
            bad.insert(id.clone(), format!("Field '{id}' has an invalid value."));
        }
    }
    for required in ["project", "issuetype", "summary"] {
        if !f.contains_key(required) {
            bad.insert(required.into(), format!("{required} is required."));
        }
    }
    if !bad.is_empty() {
        return jira_error(400, &[], json!(bad));
    }
    let n = s.issues.len() + 1;
    let key = format!("SEC-{n}");
    s.issues.push(Issue {
        key: key.clone(),
        fields: Value::Object(f.clone()),
        done: false,
    });
    if s.lose_create_answers > 0 {
        s.lose_create_answers -= 1;
        return jira_error(503, &["Service Unavailable"], json!({}));
    }
    reply(
        201,
        json!({"id": format!("{}", 10000 + n), "key": key, "self": format!("http://jira.test/rest/api/2/issue/{}", 10000 + n)}),
    )
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// A config with one route `r` (a passthrough template unless `template` names another).
fn config(template: &str, action: &str) -> String {
    format!(
        "routes:\n  - name: r\n    template: {template}\n    actions: [jira]\n\
         templates:\n  - name: passthrough\n    body: |\n      package passthrough\n      title = input.title\n      result = input.result\n\
         \x20 - name: trivy-jira\n    rego-package: postee.trivy.jira\n\
         actions:\n  - name: jira\n    type: jira\n    enable: true\n{action}"
    )
}

fn event_id(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap();
    v["id"].as_str().unwrap().to_string()
}

fn wait_done(p: &Postee, id: &str) -> Value {
    wait_until(
        Duration::from_secs(30),
        || p.api_get(&format!("/events/{id}")).1["state"] == "done",
        || {
            format!(
                "event {id} not done: {}\n{}",
                p.api_get(&format!("/events/{id}")).1,
                p.stderr()
            )
        },
    );
    p.api_get(&format!("/events/{id}")).1
}

fn paths(reqs: &[Req]) -> Vec<String> {
    reqs.iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

// ---------------------------------------------------------------------------------------

#[test]
fn server_with_a_pat_opens_an_issue_in_the_active_sprint_with_coerced_unknowns() {
    let jira = FakeJira::start(false, [9, 12, 2], "Bearer pat-secret-1");
    let p = Postee::start(&config(
        "trivy-jira",
        &format!(
            "    url: {}\n    project-key: sec\n    user: jdoe\n    token: pat-secret-1\n    priority: Highest\n\
             \x20   labels: [security, trivy]\n    fix-versions: ['1.0.1']\n    affects-versions: ['1.0.0']\n\
             \x20   unknowns:\n      Environment: production\n      Severity: Critical\n      Story Points: '3'\n      Due: '2026-12-24'\n",
            jira.url()
        ),
    ));
    let (s, body) = p.post_fixture("/", "events/trivy-report.json");
    assert_eq!(s, 200);
    let ev = wait_done(&p, &event_id(&body));
    assert_eq!(ev["routes"][0]["actions"][0]["status"], "delivered", "{ev}");
    jira.assert_no_problems();

    let reqs = jira.requests();
    assert_eq!(
        paths(&reqs),
        [
            "GET /rest/api/2/serverInfo",
            "GET /rest/api/2/issue/createmeta/SEC/issuetypes",
            "GET /rest/api/2/issue/createmeta/SEC/issuetypes/10002",
            "GET /rest/api/2/issue/createmeta/SEC/issuetypes/10002",
            "GET /rest/api/2/issue/createmeta/SEC/issuetypes/10002",
            "GET /rest/api/2/field",
            "GET /rest/agile/1.0/board",
            "GET /rest/api/2/search",
            "GET /rest/agile/1.0/board/7/sprint",
            "GET /rest/api/2/user/search",
            "POST /rest/api/2/issue",
        ]
    );
    for r in &reqs {
        assert_eq!(r.headers["authorization"], "Bearer pat-secret-1");
    }
    // Paged create-meta: 15 fields, 5 a page.
    let pages: Vec<&str> = reqs[2..5]
        .iter()
        .map(|r| r.query["startAt"].as_str())
        .collect();
    assert_eq!(pages, ["0", "5", "10"]);
    assert_eq!(reqs[8].query["state"], "active");
    assert_eq!(
        reqs[9].query,
        BTreeMap::from([("username".to_string(), "jdoe".to_string())])
    );
    let create = &reqs[10];
    assert_eq!(create.headers["content-type"], "application/json");
    let f = &create.json()["fields"];
    assert_eq!(f["project"], json!({"key": "SEC"}));
    assert_eq!(f["issuetype"], json!({"id": "10002"}), "Task by default");
    assert_eq!(f["summary"], "alpine:3.10 vulnerability scan report");
    let d = f["description"].as_str().unwrap();
    assert!(d.contains("h1. Image name: alpine:3.10"), "{d}");
    assert!(d.contains("h4. Critical severity vulnerabilities"), "{d}");
    assert_eq!(f["priority"], json!({"name": "Highest"}));
    assert_eq!(f["assignee"], json!({"name": "jdoe"}));
    let labels: Vec<&str> = f["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(&labels[..2], ["security", "trivy"]);
    assert!(
        labels[2].starts_with("postee-") && labels.len() == 3,
        "{labels:?}"
    );
    assert_eq!(f["fixVersions"], json!([{"name": "1.0.1"}]));
    assert_eq!(f["versions"], json!([{"name": "1.0.0"}]));
    assert_eq!(
        f["customfield_10020"],
        json!(57),
        "the scrum board's active sprint, by id (Postee sent the count - 1)"
    );
    assert_eq!(f["customfield_10100"], "production");
    assert_eq!(f["customfield_10101"], json!({"value": "Critical"}));
    assert_eq!(f["customfield_10102"], json!(3));
    assert_eq!(f["customfield_10103"], "2026-12-24");

    // A second event: metadata cached, one search, sprint, user, create.
    let (s, _) = p.post_fixture("/", "events/trivy-report.json");
    assert_eq!(s, 200);
    jira.wait_issues(2, &p);
    assert_eq!(jira.requests_to("GET", "/rest/api/2/serverInfo").len(), 1);
    assert_eq!(jira.requests_to("GET", "/rest/api/2/field").len(), 1);
    let labels = |i: &Issue| i.fields["labels"][2].as_str().unwrap().to_string();
    let issues = jira.issues();
    assert_ne!(
        labels(&issues[0]),
        labels(&issues[1]),
        "one label per delivery"
    );
    jira.assert_no_problems();
}

#[test]
fn cloud_uses_account_ids_the_new_search_and_a_named_sprint() {
    let auth = basic("bot@acme.com", "api-token-2");
    let jira = FakeJira::start(true, [1001, 0, 0], &auth);
    let p = Postee::start(&config(
        "passthrough",
        &format!(
            "    url: {}\n    project-key: SEC\n    user: bot@acme.com\n    password: api-token-2\n    issuetype: bug\n\
             \x20   assignee: ['<%application_scope_owner%>', bot@acme.com]\n    sprint: Sprint 3\n    board: '7'\n\
             \x20   unknowns:\n      customfield_10100: staging\n",
            jira.url()
        ),
    ));
    let ev = json!({"title": "CVE-2024-1 in\nalpine", "result": "h1. body", "application_scope_owners": ["owner@acme.com"]});
    let (s, body) = p.post("/", ev.to_string().as_bytes());
    assert_eq!(s, 200);
    wait_done(&p, &event_id(&body));
    jira.assert_no_problems();
    let reqs = jira.requests();
    for r in &reqs {
        assert_eq!(r.headers["authorization"], auth);
    }
    let search = &jira.requests_to("GET", "/rest/api/2/search/jql")[0];
    assert!(search.query["jql"].starts_with("project = \"SEC\" AND (labels = \"postee-"));
    assert_eq!(search.query["maxResults"], "10");
    let sprint = &jira.requests_to("GET", "/rest/agile/1.0/board/7/sprint")[0];
    assert_eq!(sprint.query["state"], "active,future");
    let users = jira.requests_to("GET", "/rest/api/2/user/search");
    assert_eq!(users[0].query["query"], "owner@acme.com");
    let f = &jira.requests_to("POST", "/rest/api/2/issue")[0].json()["fields"];
    assert_eq!(f["issuetype"], json!({"id": "10001"}));
    assert_eq!(
        f["assignee"],
        json!({"accountId": "5b10ac8d82e05b22cc7d4ef5"})
    );
    assert_eq!(f["summary"], "CVE-2024-1 in alpine", "one line");
    assert_eq!(f["description"], "h1. body");
    assert_eq!(f["priority"], json!({"name": "High"}), "High when offered");
    assert_eq!(
        f["customfield_10020"],
        json!(63),
        "the sprint named `Sprint 3`"
    );
    assert_eq!(f["customfield_10100"], "staging", "a field by id");
}

#[test]
fn a_lost_create_answer_is_not_created_twice_and_429_waits_for_retry_after() {
    // An old Server (8.x): the single create-meta call, Basic user + password.
    let auth = basic("postee", "pw-secret-3");
    let jira = FakeJira::start(false, [8, 20, 10], &auth);
    jira.script(
        "GET /rest/api/2/search",
        429,
        r#"{"errorMessages":["Rate limit exceeded."],"errors":{}}"#,
        &[("Retry-After", "1")],
    );
    jira.st.lock().unwrap().lose_create_answers = 1;
    let p = Postee::start(&config(
        "passthrough",
        &format!(
            "    url: {}\n    project-key: SEC\n    user: postee\n    password: pw-secret-3\n    {FAST_RETRY}\n",
            jira.url()
        ),
    ));
    let (s, body) = p.post("/", br#"{"title": "t", "result": "r"}"#);
    assert_eq!(s, 200);
    let ev = wait_done(&p, &event_id(&body));
    let a = &ev["routes"][0]["actions"][0];
    assert_eq!(a["status"], "delivered", "{ev}");
    assert_eq!(
        a["attempts"], 3,
        "429, then a lost answer, then found: {ev}"
    );
    jira.assert_no_problems();
    assert_eq!(jira.issues().len(), 1, "no second issue");
    let creates = jira.requests_to("POST", "/rest/api/2/issue");
    assert_eq!(creates.len(), 1);
    assert_eq!(creates[0].status, 503, "created, but the answer was a 503");
    assert_eq!(
        jira.requests_to("GET", "/rest/api/2/issue/createmeta")
            .len(),
        1
    );
    let searches = jira.requests_to("GET", "/rest/api/2/search");
    assert_eq!(searches.len(), 3);
    assert_eq!(searches[0].status, 429);
    assert!(
        searches[1].at - searches[0].at >= Duration::from_millis(950),
        "Retry-After: 1 was honoured"
    );
    assert_eq!(searches[0].query["jql"], searches[2].query["jql"]);
    assert!(p.stderr().contains("already exists"), "{}", p.stderr());
}

#[test]
fn a_401_is_a_dead_letter_with_jiras_text_everywhere() {
    let jira = FakeJira::start(false, [9, 12, 0], &basic("postee", "right"));
    let p = Postee::start(&config(
        "passthrough",
        &format!(
            "    url: {}\n    project-key: SEC\n    user: postee\n    password: wrong-secret-4\n",
            jira.url()
        ),
    ));
    let (s, body) = p.post("/", br#"{"title": "t", "result": "r"}"#);
    assert_eq!(s, 200);
    let id = event_id(&body);
    wait_until(
        Duration::from_secs(30),
        || {
            p.api_get("/dlq")
                .1
                .as_array()
                .is_some_and(|a| !a.is_empty())
        },
        || p.stderr(),
    );
    let dlq = p.api_get("/dlq").1;
    let err = dlq[0]["error"].as_str().unwrap();
    let want = "You are not authenticated. Authentication required to perform this operation.";
    assert!(err.contains(want), "{err}");
    assert!(err.contains("HTTP 401"), "{err}");
    assert!(
        err.contains("check the action's user and password, or token"),
        "{err}"
    );
    assert_eq!(dlq[0]["delivery"]["attempts"], 1, "permanent: no retry");
    let ev = p.api_get(&format!("/events/{id}")).1;
    assert!(ev.to_string().contains(want), "{ev}");
    let log = p.stderr();
    assert!(log.contains(want), "{log}");
    for shown in [dlq.to_string(), ev.to_string(), log] {
        assert!(!shown.contains("wrong-secret-4"));
    }
    assert_eq!(jira.requests().len(), 1, "stops at the first refusal");
}

#[test]
fn a_refused_field_refreshes_the_metadata_once_and_bad_unknowns_are_dead_letters() {
    let jira = FakeJira::start(false, [9, 12, 0], "Bearer pat-5");
    let p = Postee::start(&config(
        "passthrough",
        &format!(
            "    url: {}\n    project-key: SEC\n    user: jdoe\n    token: pat-5\n    board: Ops board\n    {FAST_RETRY}\n\
             \x20   unknowns:\n      Environment: prod\n",
            jira.url()
        ),
    ));
    let (_, b1) = p.post("/", br#"{"title": "one", "result": "r"}"#);
    wait_done(&p, &event_id(&b1));
    assert!(
        jira.requests_to("GET", "/rest/agile/1.0/board/8/sprint")
            .is_empty(),
        "a kanban board has no sprint"
    );
    assert!(jira.issues()[0].fields.get("customfield_10020").is_none());
    // The admin re-creates "Environment" as another field: the cached id is refused.
    {
        let mut st = jira.st.lock().unwrap();
        for f in st.screen.iter_mut() {
            if f["name"] == "Environment" {
                f["fieldId"] = json!("customfield_10300");
                f["key"] = json!("customfield_10300");
            }
        }
    }
    let (_, b2) = p.post("/", br#"{"title": "two", "result": "r"}"#);
    let ev = wait_done(&p, &event_id(&b2));
    assert_eq!(ev["routes"][0]["actions"][0]["attempts"], 1, "{ev}");
    let issues = jira.issues();
    assert_eq!(issues.len(), 2);
    assert_eq!(issues[1].fields["customfield_10300"], "prod");
    assert_eq!(jira.requests_to("GET", "/rest/api/2/serverInfo").len(), 2);
    let creates = jira.requests_to("POST", "/rest/api/2/issue");
    assert_eq!(
        creates.iter().map(|r| r.status).collect::<Vec<_>>(),
        [201, 400, 201]
    );
    jira.assert_no_problems();

    // A field that exists but is not on the create screen: a dead letter that says so.
    let p2 = Postee::start(&config(
        "passthrough",
        &format!(
            "    url: {}\n    project-key: SEC\n    user: jdoe\n    token: pat-5\n    unknowns:\n      Hidden: x\n",
            jira.url()
        ),
    ));
    p2.post("/", br#"{"title": "three", "result": "r"}"#);
    wait_until(
        Duration::from_secs(30),
        || {
            p2.api_get("/dlq")
                .1
                .as_array()
                .is_some_and(|a| !a.is_empty())
        },
        || p2.stderr(),
    );
    let err = p2.api_get("/dlq").1[0]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        err.contains("\"Hidden\" is not on the create screen of issue type Task in project SEC"),
        "{err}"
    );
    // Jira's own 400 reaches the dead letter: a priority the project does not have.
    jira.script(
        "POST /rest/api/2/issue",
        400,
        r#"{"errorMessages":[],"errors":{"priority":"Specify the Priority (id or name) in the string format"}}"#,
        &[],
    );
    p.post("/", br#"{"title": "four", "result": "r"}"#);
    wait_until(
        Duration::from_secs(30),
        || {
            p.api_get("/dlq")
                .1
                .as_array()
                .is_some_and(|a| !a.is_empty())
        },
        || p.stderr(),
    );
    let err = p.api_get("/dlq").1[0]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        err.contains(
            "HTTP 400 Bad Request: priority: Specify the Priority (id or name) in the string format"
        ),
        "{err}"
    );
}

#[test]
fn update_existing_comments_on_the_open_issue_until_it_is_done() {
    let jira = FakeJira::start(false, [9, 12, 0], "Bearer pat-6");
    let p = Postee::start(&config(
        "passthrough",
        &format!(
            "    url: {}\n    project-key: SEC\n    user: jdoe\n    token: pat-6\n    update-existing: true\n    unique-props: [image]\n    {FAST_RETRY}\n",
            jira.url()
        ),
    ));
    let send = |title: &str, image: Option<&str>| {
        let mut ev = json!({"title": title, "result": format!("{title} body")});
        if let Some(i) = image {
            ev["image"] = json!(i);
        }
        let (s, body) = p.post("/", ev.to_string().as_bytes());
        assert_eq!(s, 200);
        wait_done(&p, &event_id(&body));
    };
    send("first", Some("alpine:3"));
    // The comment's answer is lost: the retry finds the comment and does not post it again.
    jira.st.lock().unwrap().lose_comment_answers = 1;
    send("second", Some("alpine:3"));
    let issues = jira.issues();
    assert_eq!(issues.len(), 1, "the second message comments");
    let labels = issues[0].fields["labels"].as_array().unwrap().clone();
    assert!(
        labels[1].as_str().unwrap().starts_with("postee-key-"),
        "{labels:?}"
    );
    let comments = jira.comments();
    assert_eq!(comments.len(), 1);
    assert_eq!(comments[0].0, "SEC-1");
    let delivery_label = labels[0].as_str().unwrap();
    assert!(
        comments[0]
            .1
            .starts_with("*second*\n\nsecond body\n\n_(postee-"),
        "{comments:?}"
    );
    assert!(
        !comments[0].1.contains(delivery_label),
        "the comment carries its own delivery's label"
    );
    assert_eq!(
        jira.requests_to("POST", "/rest/api/2/issue/SEC-1/comment")
            .len(),
        1
    );
    assert_eq!(
        jira.requests_to("GET", "/rest/api/2/issue/SEC-1/comment")
            .len(),
        2
    );
    let search = &jira.requests_to("GET", "/rest/api/2/search")[1];
    assert!(
        search.query["jql"].contains(" OR (labels = \"postee-key-")
            && search.query["jql"].contains("AND statusCategory != Done)"),
        "{:?}",
        search.query
    );

    send("other image", Some("nginx:1"));
    assert_eq!(jira.issues().len(), 2, "another key: another issue");

    jira.st.lock().unwrap().issues[0].done = true;
    send("third", Some("alpine:3"));
    let issues = jira.issues();
    assert_eq!(issues.len(), 3, "the issue is done: a new one");
    assert_eq!(issues[2].fields["labels"][1], labels[1], "same key label");
    assert_eq!(jira.comments().len(), 1);

    send("no image", None);
    assert_eq!(jira.issues().len(), 4);
    assert!(
        p.stderr().contains("upsert key found no value"),
        "{}",
        p.stderr()
    );
    jira.assert_no_problems();
}

#[test]
fn certificates_are_verified_unless_tls_verify_is_false() {
    let jira = FakeJira::start_with(false, [9, 12, 0], "Bearer pat-10", true);
    let p = Postee::start(&format!(
        "routes:\n  - name: r\n    template: passthrough\n    actions: [verifying, trusting]\n\
         templates:\n  - name: passthrough\n    body: |\n      package passthrough\n      title = input.title\n      result = input.result\n\
         actions:\n\
         \x20 - {{name: verifying, type: jira, enable: true, url: '{u}', project-key: SEC, user: jdoe, token: pat-10, retry: {{max-attempts: 1}}}}\n\
         \x20 - {{name: trusting, type: jira, enable: true, url: '{u}', project-key: SEC, user: jdoe, token: pat-10, tls-verify: false}}\n",
        u = jira.https_url()
    ));
    let (s, _) = p.post("/", br#"{"title": "t", "result": "r"}"#);
    assert_eq!(s, 200);
    jira.wait_issues(1, &p);
    wait_until(
        Duration::from_secs(30),
        || {
            p.api_get("/dlq")
                .1
                .as_array()
                .is_some_and(|a| !a.is_empty())
        },
        || p.stderr(),
    );
    let dlq = p.api_get("/dlq").1;
    assert_eq!(dlq.as_array().unwrap().len(), 1, "{dlq}");
    assert_eq!(dlq[0]["delivery"]["action"], "verifying");
    let err = dlq[0]["error"].as_str().unwrap();
    assert!(err.contains("certificate"), "{err}");
    assert_eq!(
        jira.issues().len(),
        1,
        "only the action with tls-verify: false got through"
    );
    jira.assert_no_problems();
}

#[test]
fn without_labels_on_the_create_screen_the_issue_is_still_opened_with_a_warning() {
    let jira = FakeJira::start(false, [9, 12, 0], "Bearer pat-11");
    jira.st
        .lock()
        .unwrap()
        .screen
        .retain(|f| f["fieldId"] != "labels" && f["fieldId"] != "assignee");
    let p = Postee::start(&config(
        "passthrough",
        &format!(
            "    url: {}\n    project-key: SEC\n    user: jdoe\n    token: pat-11\n    labels: [security]\n",
            jira.url()
        ),
    ));
    let (_, body) = p.post("/", br#"{"title": "t", "result": "r"}"#);
    wait_done(&p, &event_id(&body));
    let f = &jira.issues()[0].fields;
    assert!(f.get("labels").is_none(), "{f}");
    assert!(f.get("assignee").is_none(), "{f}");
    assert!(
        jira.requests_to("GET", "/rest/api/2/user/search")
            .is_empty()
    );
    assert!(
        p.stderr()
            .contains("the Labels field is not on the create screen"),
        "{}",
        p.stderr()
    );
    jira.assert_no_problems();
}

#[test]
fn check_reports_jira_load_errors_with_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[&str])] = &[
        (
            "{name: j, type: jira, enable: true, password: p}",
            &[
                "error: actions[j].url: missing",
                "error: actions[j].project-key: missing",
                "error: actions[j].user: missing",
            ],
        ),
        (
            "{name: j, type: jira, enable: true, url: 'https://acme.atlassian.net', project-key: SEC, user: u, token: secret-pat-7}",
            &["error: actions[j].token: Jira Cloud can't work with PAT"],
        ),
        (
            "{name: j, type: jira, enable: true, url: 'https://jira.example.com', project-key: SEC, user: u, password: p, tls-verify: maybe}",
            &["actions[j].tls-verify: expected true or false"],
        ),
        (
            "{name: j, type: jira, enable: true, url: 'https://jira.example.com', project-key: SEC, user: u}",
            &["error: actions[j].password: missing: Password and Token are empty"],
        ),
        (
            "{name: j, type: jira, enable: true, url: 'https://jira.example.com', project-key: SEC, user: u, password: p, labels: [a b]}",
            &["error: actions[j].labels: label \"a b\" is empty or has spaces"],
        ),
    ];
    for (i, (action, wants)) in cases.iter().enumerate() {
        let cfg = dir.path().join(format!("c{i}.yaml"));
        std::fs::write(
            &cfg,
            format!(
                "routes:\n- {{name: r, template: t, actions: [j]}}\ntemplates:\n- {{name: t, rego-package: postee.trivy.jira}}\nactions:\n- {action}\n"
            ),
        )
        .unwrap();
        let o = run(&["check", "--cfgfile", cfg.to_str().unwrap()], &[]);
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        assert_eq!(o.status.code(), Some(1), "case {i}:\n{out}");
        for w in *wants {
            assert!(out.contains(w), "case {i}: want {w:?} in:\n{out}");
        }
        assert!(!out.contains("secret-pat-7"), "{out}");
    }
    // `tls-verify: false` is kept, with a warning; so is the unused `summary`.
    let cfg = dir.path().join("ok.yaml");
    std::fs::write(
        &cfg,
        "routes:\n- {name: r, template: t, actions: [j]}\ntemplates:\n- {name: t, rego-package: postee.trivy.jira}\n\
         actions:\n- {name: j, type: jira, enable: true, url: 'https://jira.example.com', project-key: SEC, user: u, password: p, tls-verify: false, summary: s, update-existing: true}\n",
    )
    .unwrap();
    let o = run(&["check", "--cfgfile", cfg.to_str().unwrap()], &[]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{out}");
    for w in [
        "warning: actions[j].tls-verify: false: the Jira server's certificate is NOT verified",
        "warning: actions[j].summary: ignored, as in Postee",
        "warning: actions[j].update-existing: route `r` has no `unique-message-props`",
    ] {
        assert!(out.contains(w), "want {w:?} in:\n{out}");
    }
    // The route's key, but the route drops every repeat for ever.
    std::fs::write(
        &cfg,
        "routes:\n- {name: r, template: t, actions: [j], plugins: {unique-message-props: [image]}}\n\
         templates:\n- {name: t, rego-package: postee.trivy.jira}\n\
         actions:\n- {name: j, type: jira, enable: true, url: 'https://jira.example.com', project-key: SEC, user: u, password: p, update-existing: true}\n",
    )
    .unwrap();
    let o = run(&["check", "--cfgfile", cfg.to_str().unwrap()], &[]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        out.contains("warning: actions[j].update-existing: uses the key of route `r`, whose `unique-message-props` drop every repeat"),
        "{out}"
    );
    // Postee's JIRA_PASSWORD fallback.
    let cfg = dir.path().join("env.yaml");
    std::fs::write(
        &cfg,
        "routes:\n- {name: r, template: t, actions: [j]}\ntemplates:\n- {name: t, rego-package: postee.trivy.jira}\n\
         actions:\n- {name: j, type: jira, enable: true, url: 'https://jira.example.com', project-key: SEC, user: u}\n",
    )
    .unwrap();
    let o = run(
        &["check", "--cfgfile", cfg.to_str().unwrap()],
        &[("JIRA_PASSWORD", "from-env")],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn render_shows_the_jira_calls_without_secrets_and_postee_samples_load() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg.yaml");
    std::fs::write(
        &cfg,
        config(
            "trivy-jira",
            "    url: https://jira.example.com/jira\n    project-key: SEC\n    user: jdoe\n    password: secret-jira-8\n    update-existing: true\n    unique-props: [ArtifactName]\n",
        ),
    )
    .unwrap();
    let out = run(
        &[
            "render",
            "--cfgfile",
            cfg.to_str().unwrap(),
            "--route",
            "r",
            "--input",
            fixture("events/trivy-report.json").to_str().unwrap(),
        ],
        &[],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("secret-jira-8"), "{text}");
    let v: Value = serde_json::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let calls = v["actions"][0]["would_send"]["calls"].as_array().unwrap();
    let last = calls.last().unwrap();
    assert_eq!(last["method"], "POST");
    assert_eq!(
        last["url"],
        "https://jira.example.com/jira/rest/api/2/issue"
    );
    assert_eq!(last["headers"]["Authorization"], "Basic <hidden>");
    assert_eq!(
        last["body"]["fields"]["summary"],
        "alpine:3.10 vulnerability scan report"
    );
    let search = calls
        .iter()
        .find(|c| c["url"].as_str().unwrap().contains("/rest/api/2/search?"))
        .unwrap();
    assert!(
        search["url"].as_str().unwrap().contains("postee-key-"),
        "{search}"
    );
    assert!(
        calls
            .iter()
            .any(|c| c["url"].as_str().unwrap().ends_with("/comment")),
        "the upsert comment is previewed"
    );

    // Without `unique-props`, the key is the route's dedup key; no value: no key.
    let route_key = |event: &str| {
        std::fs::write(
            &cfg,
            "routes:\n- {name: r, template: t, actions: [jira], plugins: {unique-message-props: [ArtifactName], unique-message-timeout: 1h}}\n\
             templates:\n- {name: t, rego-package: postee.trivy.jira}\n\
             actions:\n- {name: jira, type: jira, enable: true, url: 'https://jira.example.com', project-key: SEC, user: u, password: p, update-existing: true}\n",
        )
        .unwrap();
        let input = dir.path().join("event.json");
        std::fs::write(&input, event).unwrap();
        let o = run(
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
        assert!(o.status.success());
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let with = route_key(&std::fs::read_to_string(fixture("events/trivy-report.json")).unwrap());
    assert!(with.contains("postee-key-"), "{with}");
    let without = route_key(r#"{"ArtifactName": "", "Results": []}"#);
    assert!(!without.contains("postee-key-"), "{without}");
    assert!(
        without.contains("this message has no upsert key"),
        "{without}"
    );

    // Postee's sample config with its Jira action enabled loads and renders.
    let text = std::fs::read_to_string(fixture("postee-samples/cfg.yaml")).unwrap();
    let enabled = text.replacen(
        "- name: my-jira\n  type: jira\n  enable: false",
        "- name: my-jira\n  type: jira\n  enable: true",
        1,
    );
    assert_ne!(enabled, text);
    let sample = dir.path().join("sample.yaml");
    std::fs::write(&sample, enabled).unwrap();
    let env = [
        ("JIRA_USER", "bot@johndoe.com"),
        ("JIRA_PASSWORD", "secret-sample-9"),
        ("REGO_FILTERS_PATH", "/nonexistent"),
        ("REGO_TEMPLATES_PATH", "/nonexistent"),
    ];
    let o = run(&["check", "--cfgfile", sample.to_str().unwrap()], &env);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{out}");
    assert!(out.contains("actions[my-jira].tls-verify"), "{out}");
    let o = run(
        &[
            "render",
            "--cfgfile",
            sample.to_str().unwrap(),
            "--route",
            "trivy-operator-reports",
            "--input",
            fixture("events/trivy-operator-vulnreport.json")
                .to_str()
                .unwrap(),
        ],
        &env,
    );
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{out}");
    assert!(!out.contains("secret-sample-9"), "{out}");
    for shown in [
        "https://johndoe.atlassian.net/rest/api/2/search/jql?",
        "Basic <hidden>",
        "Vulnerability issue with image library/nginx:1.16 in namespace default",
        "accountId",
    ] {
        assert!(out.contains(shown), "{shown} missing:\n{out}");
    }
}
