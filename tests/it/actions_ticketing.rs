//! The ticketing and security-platform actions (servicenow, dependencytrack, nexusiq) with the
//! real binary against local fakes of each vendor's API. Each fake checks every request the
//! way the vendor documents it (method, path, query, auth, content type, JSON field names and
//! types), keeps the vendor's state (records, applications, uploads) so that retries can be
//! checked for duplicates, and answers as the vendor does, error bodies included. A request
//! the real API would refuse is recorded as a problem (and answered `400`): every test ends by
//! checking there was none.

use std::collections::{BTreeMap, VecDeque};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use base64::Engine;
use serde_json::{Value, json};

use crate::common::*;

const FAST_RETRY: &str = "retry: {initial-delay: 20ms, max-delay: 50ms}";

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

// ---------------------------------------------------------------------------------------
// A fake vendor server

/// One request the fake got.
#[derive(Debug, Clone)]
struct Req {
    at: std::time::Instant,
    method: String,
    path: String,
    query: Option<String>,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
    /// The status it was answered with.
    status: u16,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
    /// The query's pairs, decoded, in order.
    fn query_pairs(&self) -> Vec<(String, String)> {
        let u = reqwest::Url::parse(&format!(
            "http://x/?{}",
            self.query.as_deref().unwrap_or("")
        ))
        .unwrap();
        u.query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: body.to_string(),
            headers: vec![],
        }
    }
    fn text(status: u16, body: &str) -> Reply {
        Reply {
            status,
            content_type: "text/plain",
            body: body.to_string(),
            headers: vec![],
        }
    }
    fn with_header(mut self, name: &'static str, value: &str) -> Reply {
        self.headers.push((name, value.to_string()));
        self
    }
}

/// A reply forced on the next request to (method, path). With `after_processing`, the fake
/// does the work first (the record is created) and then answers this: a lost answer.
struct Forced {
    method: &'static str,
    path: String,
    reply: Reply,
    after_processing: bool,
}

/// The vendor's behaviour: checks a request (pushing what is wrong to `problems`), updates the
/// state, answers.
type Handler = fn(&Vendor, &Req, &mut Vec<String>) -> Reply;

#[derive(Default)]
struct Vendor {
    /// Records (ServiceNow), applications (Nexus IQ), uploads (Dependency-Track, Nexus IQ scans).
    records: Mutex<Vec<Value>>,
    scans: Mutex<Vec<Value>>,
}

#[derive(Clone)]
struct FakeState {
    handler: Handler,
    vendor: Arc<Vendor>,
    received: Arc<Mutex<Vec<Req>>>,
    forced: Arc<Mutex<VecDeque<Forced>>>,
    problems: Arc<Mutex<Vec<String>>>,
}

struct Fake {
    port: u16,
    st: FakeState,
    _thread: std::thread::JoinHandle<()>,
}

impl Fake {
    fn start(handler: Handler) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let st = FakeState {
            handler,
            vendor: Arc::default(),
            received: Arc::default(),
            forced: Arc::default(),
            problems: Arc::default(),
        };
        let state = st.clone();
        let thread = std::thread::spawn(move || {
            block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new().fallback(serve).with_state(state);
                axum::serve(listener, app).await.unwrap();
            })
        });
        Fake {
            port,
            st,
            _thread: thread,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn force(&self, method: &'static str, path: &str, reply: Reply) {
        self.st.forced.lock().unwrap().push_back(Forced {
            method,
            path: path.to_string(),
            reply,
            after_processing: false,
        });
    }

    /// The next such request is processed, but its answer is `reply` (as when the answer is
    /// lost on the way back).
    fn lose_answer(&self, method: &'static str, path: &str, reply: Reply) {
        self.st.forced.lock().unwrap().push_back(Forced {
            method,
            path: path.to_string(),
            reply,
            after_processing: true,
        });
    }

    fn received(&self) -> Vec<Req> {
        self.st.received.lock().unwrap().clone()
    }

    fn requests(&self, method: &str, path: &str) -> Vec<Req> {
        self.received()
            .into_iter()
            .filter(|r| r.method == method && r.path == path)
            .collect()
    }

    fn wait_requests(&self, method: &str, path: &str, n: usize) -> Vec<Req> {
        wait_until(
            Duration::from_secs(30),
            || self.requests(method, path).len() >= n,
            || {
                format!(
                    "waiting for {n} {method} {path}; got {:#?}",
                    self.received()
                )
            },
        );
        self.requests(method, path)
    }

    fn records(&self) -> Vec<Value> {
        self.st.vendor.records.lock().unwrap().clone()
    }

    fn scans(&self) -> Vec<Value> {
        self.st.vendor.scans.lock().unwrap().clone()
    }

    fn assert_no_problems(&self) {
        let p = self.st.problems.lock().unwrap().clone();
        assert!(p.is_empty(), "requests the vendor would refuse: {p:#?}");
    }
}

async fn serve(
    State(st): State<FakeState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let mut req = Req {
        at: std::time::Instant::now(),
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: body.to_vec(),
        status: 0,
    };
    let forced = {
        let mut f = st.forced.lock().unwrap();
        match f.front() {
            Some(x) if x.method == req.method && x.path == req.path => f.pop_front(),
            _ => None,
        }
    };
    let mut problems = Vec::new();
    let reply = match forced {
        Some(f) if !f.after_processing => f.reply,
        Some(f) => {
            let _ = (st.handler)(&st.vendor, &req, &mut problems);
            f.reply
        }
        None => (st.handler)(&st.vendor, &req, &mut problems),
    };
    let reply = if problems.is_empty() {
        reply
    } else {
        let mut p = st.problems.lock().unwrap();
        for x in &problems {
            p.push(format!("{} {}: {x}", req.method, req.path));
        }
        Reply::text(400, &problems.join("; "))
    };
    req.status = reply.status;
    st.received.lock().unwrap().push(req);
    let mut resp = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    resp.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_static(reply.content_type),
    );
    for (k, v) in reply.headers {
        resp.headers_mut()
            .insert(k, axum::http::HeaderValue::from_str(&v).unwrap());
    }
    resp
}

/// Checks a JSON object's fields: each listed name must be there with the given type
/// ("string", "number", "bool"), and there must be no other.
fn check_fields(body: &Value, fields: &[(&str, &str)], problems: &mut Vec<String>) {
    let Some(obj) = body.as_object() else {
        problems.push(format!("body is not a JSON object: {body}"));
        return;
    };
    for (name, kind) in fields {
        let ok = match (obj.get(*name), *kind) {
            (Some(Value::String(_)), "string") => true,
            (Some(Value::Number(n)), "int") => n.is_i64(),
            (Some(Value::Bool(_)), "bool") => true,
            _ => false,
        };
        if !ok {
            problems.push(format!(
                "field {name} must be a {kind}, got {:?}",
                obj.get(*name)
            ));
        }
    }
    for k in obj.keys() {
        if !fields.iter().any(|(n, _)| n == k) {
            problems.push(format!("unexpected field {k}"));
        }
    }
}

fn dead_letters(p: &Postee, n: usize) -> Vec<Value> {
    wait_until(
        Duration::from_secs(30),
        || p.api_get("/dlq").1.as_array().is_some_and(|a| a.len() >= n),
        || format!("waiting for {n} dead letters; log:\n{}", p.stderr()),
    );
    p.api_get("/dlq").1.as_array().unwrap().clone()
}

fn post_event(p: &Postee, fixture_name: &str) -> String {
    let (status, body) = p.post_fixture("/", fixture_name);
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["id"].as_str().unwrap().to_string()
}

fn post_json(p: &Postee, v: &Value) -> String {
    let (status, body) = p.post("/", &serde_json::to_vec(v).unwrap());
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["id"].as_str().unwrap().to_string()
}

/// A permanent failure is visible everywhere users look: the dead letter, the event's
/// history, and the log line; `expected` is in each.
fn assert_failure_visible(p: &Postee, event_id: &str, expected: &str) {
    let dead = dead_letters(p, 1);
    let d = dead
        .iter()
        .find(|d| d["delivery"]["event_id"] == event_id)
        .unwrap_or_else(|| panic!("no dead letter for {event_id}: {dead:#?}"));
    let error = d["error"].as_str().unwrap();
    assert!(error.contains(expected), "dead letter: {error}");
    assert_eq!(d["delivery"]["attempts"], 1, "permanent: not retried");
    let (_, ev) = p.api_get(&format!("/events/{event_id}"));
    let action = &ev["routes"][0]["actions"][0];
    assert_eq!(action["status"], "dead", "{ev}");
    assert!(
        action["last_error"].as_str().unwrap().contains(expected),
        "{ev}"
    );
    let log = p.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("outcome") && l.contains("dead") && l.contains(event_id))
        .unwrap_or_else(|| panic!("no dead log line for {event_id}:\n{log}"));
    assert!(line.contains(expected), "{line}");
}

// ---------------------------------------------------------------------------------------
// ServiceNow

const SNOW_USER: &str = "postee";
const SNOW_PASSWORD: &str = "snow-pass-1";
const SNOW_TABLE: &str = "/api/now/table/incident";

/// The Table API: `GET` (query) and `POST` (insert) on `/api/now/table/incident`, Basic auth.
fn servicenow(v: &Vendor, r: &Req, problems: &mut Vec<String>) -> Reply {
    if r.header("authorization") != Some(basic(SNOW_USER, SNOW_PASSWORD).as_str()) {
        return Reply::json(
            401,
            json!({"error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"}, "status": "failure"}),
        );
    }
    if r.path != SNOW_TABLE {
        return Reply::json(
            400,
            json!({"error": {"message": "Invalid table", "detail": null}, "status": "failure"}),
        );
    }
    if r.header("accept") != Some("application/json") {
        problems.push(format!("Accept: {:?}", r.header("accept")));
    }
    match r.method.as_str() {
        "GET" => {
            let q = r.query_pairs();
            let names: Vec<&str> = q.iter().map(|(k, _)| k.as_str()).collect();
            if names != ["sysparm_query", "sysparm_limit", "sysparm_fields"] {
                problems.push(format!("query parameters {names:?}"));
            }
            let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            if get("sysparm_limit").as_deref() != Some("1") {
                problems.push("sysparm_limit".into());
            }
            if get("sysparm_fields").as_deref() != Some("sys_id,number") {
                problems.push("sysparm_fields".into());
            }
            let Some(id) = get("sysparm_query")
                .and_then(|s| s.strip_prefix("correlation_id=").map(str::to_string))
            else {
                problems.push("sysparm_query is not correlation_id=<id>".into());
                return Reply::json(200, json!({"result": []}));
            };
            let found: Vec<Value> = v
                .records
                .lock()
                .unwrap()
                .iter()
                .filter(|rec| rec["correlation_id"] == id.as_str())
                .take(1)
                .map(|rec| json!({"sys_id": rec["sys_id"], "number": rec["number"]}))
                .collect();
            Reply::json(200, json!({"result": found}))
        }
        "POST" => {
            if r.header("content-type") != Some("application/json") {
                problems.push(format!("Content-Type: {:?}", r.header("content-type")));
            }
            let body = r.json();
            check_fields(
                &body,
                &[
                    ("short_description", "string"),
                    ("work_notes", "string"),
                    ("opened_at", "string"),
                    ("caller_id", "string"),
                    ("category", "string"),
                    ("subcategory", "string"),
                    ("impact", "int"),
                    ("urgency", "int"),
                    ("state", "int"),
                    ("description", "string"),
                    ("assigned_to", "string"),
                    ("assignment_group", "string"),
                    ("correlation_id", "string"),
                ],
                problems,
            );
            if body["correlation_id"]
                .as_str()
                .is_some_and(|c| c.len() > 100)
            {
                problems.push("correlation_id longer than its 100-character column".into());
            }
            let mut records = v.records.lock().unwrap();
            let mut rec = body.clone();
            rec["sys_id"] = json!(format!(
                "{:032x}",
                0x9d38_5017_c611_2283_u64 + records.len() as u64
            ));
            rec["number"] = json!(format!("INC00{}", 10001 + records.len()));
            records.push(rec.clone());
            Reply::json(201, json!({"result": rec}))
        }
        m => Reply::json(
            405,
            json!({"error": {"message": format!("Method {m} not allowed"), "detail": null}, "status": "failure"}),
        ),
    }
}

fn servicenow_config(fake: &Fake, password: &str, template: &str) -> String {
    format!(
        "routes:\n  - name: r\n    template: {template}\n    actions: [snow]\n\
         templates:\n  - name: servicenow\n    rego-package: postee.servicenow\n\
         \x20 - name: raw\n    rego-package: postee.rawmessage.json\n\
         actions:\n  - name: snow\n    type: serviceNow\n    enable: true\n    user: {SNOW_USER}\n    password: {password}\n    instance-url: {}\n    {FAST_RETRY}\n",
        fake.url("")
    )
}

#[test]
fn servicenow_inserts_an_incident_with_postees_fields_after_looking_for_an_earlier_one() {
    let fake = Fake::start(servicenow);
    let p = Postee::start(&servicenow_config(&fake, SNOW_PASSWORD, "servicenow"));
    let id = post_event(&p, "events/aqua-scan.json");
    let posts = fake.wait_requests("POST", SNOW_TABLE, 1);
    p.wait_deliveries(1);
    let gets = fake.requests("GET", SNOW_TABLE);
    assert_eq!(gets.len(), 1);
    assert!(gets[0].at <= posts[0].at, "looked up before inserting");
    assert_eq!(
        gets[0].query.as_deref(),
        Some(
            format!(
                "sysparm_query=correlation_id%3D{}%3Ar%3Asnow&sysparm_limit=1&sysparm_fields=sys_id%2Cnumber",
                id
            )
            .as_str()
        )
    );
    let post = &posts[0];
    let body = post.json();
    // Postee's field order, as sent.
    let text = post.text();
    let order: Vec<usize> = [
        "short_description",
        "work_notes",
        "opened_at",
        "caller_id",
        "category",
        "subcategory",
        "impact",
        "urgency",
        "state",
        "description",
        "assigned_to",
        "assignment_group",
        "correlation_id",
    ]
    .iter()
    .map(|k| text.find(&format!("\"{k}\":")).unwrap())
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
    assert_eq!(
        body["short_description"],
        "Aqua security | image | all-in-one:3.5.19223 | Scan report"
    );
    let notes = body["work_notes"].as_str().unwrap();
    assert!(notes.starts_with("[code]") && notes.ends_with("[/code]"));
    assert!(notes.contains("<p><b>Name:</b> all-in-one:3.5.19223</p>"));
    assert_eq!(body["opened_at"], "2021-06-24 14:14:26", "UTC");
    assert_eq!(body["caller_id"], SNOW_USER);
    assert_eq!(body["category"], "Security Image Scan results");
    assert_eq!(body["subcategory"], "Security incident");
    assert_eq!(body["impact"], 1);
    assert_eq!(body["urgency"], 1);
    assert_eq!(body["state"], 0);
    assert!(
        body["description"]
            .as_str()
            .unwrap()
            .starts_with("Name: all-in-one:3.5.19223\nRegistry: Aqua\n")
    );
    assert_eq!(body["assigned_to"], "owner@example.com");
    assert_eq!(body["assignment_group"], "group");
    assert_eq!(body["correlation_id"], format!("{id}:r:snow"));
    wait_until(
        Duration::from_secs(10),
        || p.stderr().contains("INC0010001"),
        || format!("the created number is logged:\n{}", p.stderr()),
    );
    assert_eq!(fake.records().len(), 1);
    assert!(!p.stderr().contains(SNOW_PASSWORD));
    fake.assert_no_problems();
}

#[test]
fn servicenow_retries_without_opening_a_second_incident() {
    let fake = Fake::start(servicenow);
    // The first insert is stored but its answer is lost (a 503 comes back instead).
    fake.lose_answer(
        "POST",
        SNOW_TABLE,
        Reply::text(503, "<html><body>Service Unavailable</body></html>"),
    );
    let p = Postee::start(&servicenow_config(&fake, SNOW_PASSWORD, "raw"));
    let first = post_json(&p, &json!({"n": 1}));
    fake.wait_requests("GET", SNOW_TABLE, 2);
    p.wait_deliveries(2);
    assert_eq!(
        fake.requests("POST", SNOW_TABLE).len(),
        1,
        "the retry found the record and did not insert again"
    );
    assert_eq!(fake.records().len(), 1);
    assert_eq!(
        fake.records()[0]["correlation_id"],
        format!("{first}:r:snow")
    );
    // Without `result_*` rules: Postee's defaults.
    let rec = &fake.records()[0];
    assert_eq!(rec["impact"], 3);
    assert_eq!(rec["opened_at"], "");
    assert_eq!(rec["category"], "");

    // 429 with Retry-After: the insert is retried after it, once.
    fake.force(
        "POST",
        SNOW_TABLE,
        Reply::json(
            429,
            json!({"error": {"message": "Too Many Requests", "detail": "Rate limit exceeded"}, "status": "failure"}),
        )
        .with_header("Retry-After", "1"),
    );
    post_json(&p, &json!({"n": 2}));
    let posts = fake.wait_requests("POST", SNOW_TABLE, 3);
    assert_eq!(posts[1].status, 429);
    assert_eq!(posts[2].status, 201);
    assert!(
        posts[2].at - posts[1].at >= Duration::from_millis(950),
        "Retry-After: 1 was honoured"
    );
    assert_eq!(
        posts[1].body, posts[2].body,
        "the same record is sent again"
    );
    p.wait_deliveries(4);
    assert_eq!(fake.records().len(), 2);
    let log = p.stderr();
    assert!(
        log.contains("Too Many Requests: Rate limit exceeded"),
        "{log}"
    );
    assert!(log.contains("exists already"), "{log}");
    fake.assert_no_problems();
}

#[test]
fn servicenow_refusing_the_credentials_is_a_dead_letter_with_its_message() {
    let fake = Fake::start(servicenow);
    let p = Postee::start(&servicenow_config(&fake, "wrong-pass-2", "raw"));
    let id = post_json(&p, &json!({"n": 1}));
    assert_failure_visible(
        &p,
        &id,
        "HTTP 401 Unauthorized: User Not Authenticated: Required to provide Auth information (check `user` and `password`)",
    );
    assert!(fake.requests("POST", SNOW_TABLE).is_empty());
    assert!(!p.stderr().contains("wrong-pass-2"));
    let dlq = p.api_get("/dlq").1.to_string();
    assert!(!dlq.contains("wrong-pass-2"));
    fake.assert_no_problems();
}

// ---------------------------------------------------------------------------------------
// Dependency-Track

const DT_KEY: &str = "odt_secretKey0123456789";
const DT_BOM: &str = "/api/v1/bom";

/// `PUT /api/v1/bom` with `X-Api-Key` and a `BomSubmitRequest`; the project versions are the
/// records (one per name and version: an upload replaces the version's components).
fn dependencytrack(v: &Vendor, r: &Req, problems: &mut Vec<String>) -> Reply {
    if r.header("x-api-key") != Some(DT_KEY) {
        // Dependency-Track's authentication filter answers with no body.
        return Reply::text(401, "");
    }
    if (r.method.as_str(), r.path.as_str()) != ("PUT", DT_BOM) {
        return Reply::text(405, "");
    }
    if r.header("content-type") != Some("application/json") {
        problems.push(format!("Content-Type: {:?}", r.header("content-type")));
    }
    let body = r.json();
    check_fields(
        &body,
        &[
            ("projectName", "string"),
            ("projectVersion", "string"),
            ("autoCreate", "bool"),
            ("bom", "string"),
        ],
        problems,
    );
    let bom = base64::engine::general_purpose::STANDARD
        .decode(body["bom"].as_str().unwrap_or_default())
        .unwrap_or_default();
    let doc: Value = serde_json::from_slice(&bom).unwrap_or(Value::Null);
    if doc["bomFormat"] != "CycloneDX" {
        return Reply::json(
            400,
            json!({"status": 400, "title": "The uploaded BOM is invalid", "detail": "Schema validation failed", "errors": ["$.bomFormat: is missing but it is required"]}),
        )
        .with_content_type("application/problem+json");
    }
    let mut projects = v.records.lock().unwrap();
    let key = (body["projectName"].clone(), body["projectVersion"].clone());
    projects.retain(|p| (p["name"].clone(), p["version"].clone()) != key);
    projects.push(json!({"name": key.0, "version": key.1, "bom": String::from_utf8_lossy(&bom)}));
    v.scans.lock().unwrap().push(body.clone());
    Reply::json(
        200,
        json!({"token": format!("8d2ad3a5-6c2b-4a4e-9e3f-{:012x}", projects.len())}),
    )
}

impl Reply {
    fn with_content_type(mut self, ct: &'static str) -> Reply {
        self.content_type = ct;
        self
    }
}

fn dependencytrack_config(fake: &Fake, key: &str) -> String {
    format!(
        "routes:\n  - name: r\n    template: sbom\n    input: input.kind == \"SbomReport\"\n    actions: [dtrack]\n\
         \x20 - name: plain\n    template: passthrough\n    input: input.title\n    actions: [dtrack]\n\
         templates:\n  - name: sbom\n    rego-package: postee.trivyoperator.dependencytrack\n\
         \x20 - name: passthrough\n    body: |\n      package passthrough\n      title = input.title\n      result = input.result\n\
         actions:\n  - name: dtrack\n    type: dependencytrack\n    enable: true\n    url: {}\n    dependency-track-api-key: {key}\n    {FAST_RETRY}\n",
        fake.url("")
    )
}

#[test]
fn dependencytrack_uploads_the_compacted_bom_in_base64_for_the_titles_project() {
    let fake = Fake::start(dependencytrack);
    let p = Postee::start(&dependencytrack_config(&fake, DT_KEY));
    post_event(&p, "events/trivy-operator-sbomreport.json");
    let got = fake.wait_requests("PUT", DT_BOM, 1);
    p.wait_deliveries(1);
    let body = got[0].json();
    assert_eq!(body["projectName"], "library/nginx");
    assert_eq!(body["projectVersion"], "1.16");
    assert_eq!(body["autoCreate"], true);
    let bom = base64::engine::general_purpose::STANDARD
        .decode(body["bom"].as_str().unwrap())
        .unwrap();
    let bom = String::from_utf8(bom).unwrap();
    let fixture: Value = serde_json::from_slice(
        &std::fs::read(fixture("events/trivy-operator-sbomreport.json")).unwrap(),
    )
    .unwrap();
    let components = &fixture["report"]["components"];
    assert_eq!(serde_json::from_str::<Value>(&bom).unwrap(), *components);
    // Compact: no whitespace between tokens (Go's json.Compact of the rendered result).
    assert!(
        !bom.contains('\n') && !bom.contains("\": ") && !bom.contains(", \""),
        "{bom}"
    );
    assert!(bom.starts_with("{\"bomFormat\":\"CycloneDX\","), "{bom}");
    wait_until(
        Duration::from_secs(10),
        || p.stderr().contains("8d2ad3a5-6c2b-4a4e-9e3f-000000000001"),
        || format!("the token is logged:\n{}", p.stderr()),
    );
    assert!(!p.stderr().contains(DT_KEY));
    fake.assert_no_problems();
}

#[test]
fn dependencytrack_retries_503_and_429_and_a_lost_answer_leaves_one_project_version() {
    let fake = Fake::start(dependencytrack);
    fake.lose_answer("PUT", DT_BOM, Reply::text(503, "Service Unavailable"));
    fake.force(
        "PUT",
        DT_BOM,
        Reply::text(429, "Too Many Requests").with_header("Retry-After", "1"),
    );
    let p = Postee::start(&dependencytrack_config(&fake, DT_KEY));
    let bom = json!({"bomFormat": "CycloneDX", "specVersion": "1.5", "components": [{"name": "a b", "version": "1"}]});
    post_json(&p, &json!({"title": "shop:2.0", "result": bom}));
    let got = fake.wait_requests("PUT", DT_BOM, 3);
    p.wait_deliveries(3);
    assert_eq!(
        got.iter().map(|r| r.status).collect::<Vec<_>>(),
        [503, 429, 200]
    );
    assert!(
        got[2].at - got[1].at >= Duration::from_millis(950),
        "Retry-After: 1 was honoured"
    );
    assert!(got.windows(2).all(|w| w[0].body == w[1].body));
    let projects = fake.records();
    assert_eq!(projects.len(), 1, "{projects:?}");
    assert_eq!(
        projects[0]["bom"],
        r#"{"bomFormat":"CycloneDX","components":[{"name":"a b","version":"1"}],"specVersion":"1.5"}"#
    );
    fake.assert_no_problems();
}

#[test]
fn dependencytrack_dead_letters_a_refused_key_and_content_it_cannot_upload() {
    let fake = Fake::start(dependencytrack);
    let p = Postee::start(&dependencytrack_config(&fake, "odt_wrongKey99"));
    let id = post_json(
        &p,
        &json!({"title": "shop:2.0", "result": {"bomFormat": "CycloneDX"}}),
    );
    assert_failure_visible(
        &p,
        &id,
        "failed to upload BOM: api error (status: 401) (the API key was refused: check `dependency-track-api-key`; its team needs the BOM_UPLOAD and PROJECT_CREATION_UPLOAD permissions)",
    );
    assert!(!p.stderr().contains("odt_wrongKey99"));
    assert!(!p.api_get("/dlq").1.to_string().contains("odt_wrongKey99"));

    // Bad content never reaches the server and is not retried.
    let no_colon = post_json(
        &p,
        &json!({"title": "shop", "result": {"bomFormat": "CycloneDX"}}),
    );
    let not_json = post_json(&p, &json!({"title": "shop:2.0", "result": "<bom/>"}));
    let dead = dead_letters(&p, 3);
    let error_of = |id: &str| {
        dead.iter()
            .find(|d| d["delivery"]["event_id"] == id)
            .map(|d| {
                (
                    d["error"].as_str().unwrap().to_string(),
                    d["delivery"]["attempts"].clone(),
                )
            })
            .unwrap()
    };
    let (e, attempts) = error_of(&no_colon);
    assert!(e.starts_with("title key has wrong format"), "{e}");
    assert_eq!(attempts, 1);
    let (e, attempts) = error_of(&not_json);
    assert!(e.starts_with("description key has wrong format: "), "{e}");
    assert_eq!(attempts, 1);
    assert_eq!(fake.requests("PUT", DT_BOM).len(), 1);
    fake.assert_no_problems();
}

#[test]
fn dependencytrack_an_invalid_bom_is_a_dead_letter_with_the_problem_details() {
    let fake = Fake::start(dependencytrack);
    let p = Postee::start(&dependencytrack_config(&fake, DT_KEY));
    let id = post_json(
        &p,
        &json!({"title": "shop:2.0", "result": {"components": []}}),
    );
    assert_failure_visible(
        &p,
        &id,
        "failed to upload BOM: api error (status: 400): {\"detail\":\"Schema validation failed\"",
    );
    fake.assert_no_problems();
}

// ---------------------------------------------------------------------------------------
// Nexus IQ

const IQ_USER: &str = "admin";
const IQ_PASSWORD: &str = "iq-pass-1";
const IQ_ORG: &str = "222de33e8005408a844c12eab952c9b0";
const IQ_APPS: &str = "/api/v2/applications";

fn iq_org_path() -> String {
    format!("/api/v2/applications/organization/{IQ_ORG}")
}

/// The applications API (list by organization, create) and the third-party scan API; the
/// applications are the records, the registered BOMs the scans.
fn nexusiq(v: &Vendor, r: &Req, problems: &mut Vec<String>) -> Reply {
    if r.header("authorization") != Some(basic(IQ_USER, IQ_PASSWORD).as_str()) {
        return Reply::text(401, "Authentication required")
            .with_header("WWW-Authenticate", "BASIC realm=\"Sonatype IQ Server\"");
    }
    let app_json = |a: &Value| json!({"id": a["id"], "publicId": a["publicId"], "name": a["name"], "organizationId": a["organizationId"], "contactUserName": null, "applicationTags": []});
    let scan_prefix = "/api/v2/scan/applications/";
    match r.method.as_str() {
        "GET" if r.path.starts_with("/api/v2/applications/organization/") => {
            if r.path != iq_org_path() {
                return Reply::text(404, "Organization not found");
            }
            let apps: Vec<Value> = v.records.lock().unwrap().iter().map(app_json).collect();
            Reply::json(200, json!({"applications": apps}))
        }
        "POST" if r.path == IQ_APPS => {
            if r.header("content-type") != Some("application/json") {
                problems.push(format!("Content-Type: {:?}", r.header("content-type")));
            }
            let body = r.json();
            check_fields(
                &body,
                &[
                    ("name", "string"),
                    ("organizationId", "string"),
                    ("publicId", "string"),
                ],
                problems,
            );
            if body["organizationId"] != IQ_ORG {
                return Reply::text(404, "Organization not found");
            }
            let mut apps = v.records.lock().unwrap();
            if apps.iter().any(|a| a["publicId"] == body["publicId"]) {
                problems.push(format!("a second application {}", body["publicId"]));
                return Reply::text(400, "Application public ID must be unique");
            }
            let app = json!({
                "id": format!("4bb67dcfc86344e3a483832f8c496{:03}", apps.len() + 1),
                "publicId": body["publicId"], "name": body["name"], "organizationId": body["organizationId"],
            });
            apps.push(app.clone());
            Reply::json(200, app_json(&app))
        }
        "POST" if r.path.starts_with(scan_prefix) => {
            let rest = &r.path[scan_prefix.len()..];
            let Some(id) = rest.strip_suffix("/sources/cyclone") else {
                return Reply::text(404, "Not Found");
            };
            if !v.records.lock().unwrap().iter().any(|a| a["id"] == id) {
                return Reply::text(404, &format!("Application not found: {id}"));
            }
            if r.header("content-type") != Some("application/xml") {
                problems.push(format!("Content-Type: {:?}", r.header("content-type")));
            }
            let xml = r.text();
            if !xml.trim_start().starts_with("<?xml") || !xml.contains("<bom") {
                return Reply::text(400, "Unable to parse the scan: not a CycloneDX document");
            }
            let mut scans = v.scans.lock().unwrap();
            scans.push(json!({"application": id, "xml": xml}));
            Reply::json(
                202,
                json!({"statusUrl": format!("api/v2/scan/applications/{id}/status/9cee2b6366fc4d328edc318eae46b2c{}", scans.len())}),
            )
        }
        _ => Reply::text(404, "Not Found"),
    }
}

fn nexusiq_config(fake: &Fake, password: &str) -> String {
    format!(
        "routes:\n  - name: r\n    template: vuls-cyclonedx\n    actions: [iq]\n\
         templates:\n  - name: vuls-cyclonedx\n    rego-package: postee.vuls.cyclondx\n\
         actions:\n  - name: iq\n    type: nexusIq\n    enable: true\n    url: {}\n    user: {IQ_USER}\n    password: {password}\n    organization-id: {IQ_ORG}\n    {FAST_RETRY}\n",
        fake.url("")
    )
}

#[test]
fn nexusiq_creates_the_application_once_and_registers_each_bom() {
    let fake = Fake::start(nexusiq);
    let p = Postee::start(&nexusiq_config(&fake, IQ_PASSWORD));
    post_event(&p, "events/aqua-scan.json");
    let app_id = "4bb67dcfc86344e3a483832f8c496001";
    let scan_path = format!("/api/v2/scan/applications/{app_id}/sources/cyclone");
    fake.wait_requests("POST", &scan_path, 1);
    p.wait_deliveries(1);
    let calls: Vec<(String, String)> = fake
        .received()
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    assert_eq!(
        calls,
        [
            ("GET".to_string(), iq_org_path()),
            ("POST".to_string(), IQ_APPS.to_string()),
            ("POST".to_string(), scan_path.clone()),
        ]
    );
    let create = &fake.requests("POST", IQ_APPS)[0];
    assert_eq!(
        create.json(),
        json!({"name": "all-in-one_3_5_19223", "organizationId": IQ_ORG, "publicId": "all-in-one_3_5_19223"})
    );
    let get = &fake.requests("GET", &iq_org_path())[0];
    assert_eq!(
        get.header("content-type"),
        Some("application/json"),
        "as Postee"
    );
    let scan = &fake.requests("POST", &scan_path)[0];
    let xml = scan.text();
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert!(xml.contains("<v:id>CVE-2018-1000517</v:id>"), "{xml}");
    wait_until(
        Duration::from_secs(10),
        || p.stderr().contains("9cee2b6366fc4d328edc318eae46b2c1"),
        || format!("the status URL is logged:\n{}", p.stderr()),
    );

    // The same image again: found by its public id, not created again.
    post_event(&p, "events/aqua-scan.json");
    fake.wait_requests("POST", &scan_path, 2);
    p.wait_deliveries(2);
    assert_eq!(fake.requests("POST", IQ_APPS).len(), 1);
    assert_eq!(fake.records().len(), 1);
    assert_eq!(fake.scans().len(), 2);
    assert!(!p.stderr().contains(IQ_PASSWORD));
    fake.assert_no_problems();
}

#[test]
fn nexusiq_retries_find_the_application_created_by_an_earlier_attempt() {
    let fake = Fake::start(nexusiq);
    let app_id = "4bb67dcfc86344e3a483832f8c496001";
    let scan_path = format!("/api/v2/scan/applications/{app_id}/sources/cyclone");
    // The application is created, then the registration fails twice.
    fake.force(
        "GET",
        &iq_org_path(),
        Reply::text(429, "Too Many Requests").with_header("Retry-After", "1"),
    );
    let p = Postee::start(&nexusiq_config(&fake, IQ_PASSWORD));
    fake.force("POST", &scan_path, Reply::text(503, "Service Unavailable"));
    fake.force("POST", &scan_path, Reply::text(502, "Bad Gateway"));
    post_event(&p, "events/aqua-scan.json");
    let scans = fake.wait_requests("POST", &scan_path, 3);
    p.wait_deliveries(4);
    let gets = fake.requests("GET", &iq_org_path());
    assert_eq!(gets[0].status, 429);
    assert!(
        gets[1].at - gets[0].at >= Duration::from_millis(950),
        "Retry-After: 1 was honoured"
    );
    assert_eq!(
        scans.iter().map(|r| r.status).collect::<Vec<_>>(),
        [503, 502, 202]
    );
    assert_eq!(gets.len(), 4, "every attempt looks the application up");
    assert_eq!(
        fake.requests("POST", IQ_APPS).len(),
        1,
        "created once, then found"
    );
    assert_eq!(fake.records().len(), 1);
    assert_eq!(fake.scans().len(), 1);
    let log = p.stderr();
    assert!(
        log.contains("error fetching application: HTTP 429"),
        "{log}"
    );
    assert!(
        log.contains("error registering bom: HTTP 503 Service Unavailable: Service Unavailable"),
        "{log}"
    );
    fake.assert_no_problems();
}

#[test]
fn nexusiq_refused_credentials_and_non_json_answers_are_dead_letters() {
    let fake = Fake::start(nexusiq);
    let p = Postee::start(&nexusiq_config(&fake, "wrong-iq-pass"));
    let id = post_event(&p, "events/aqua-scan.json");
    assert_failure_visible(
        &p,
        &id,
        "error fetching application: HTTP 401 Unauthorized: Authentication required (check `user` and `password`)",
    );
    assert!(!p.stderr().contains("wrong-iq-pass"));
    assert!(!p.api_get("/dlq").1.to_string().contains("wrong-iq-pass"));
    assert_eq!(fake.received().len(), 1);

    // A 2xx that is not a JSON object (a login page from a proxy) is not a success.
    let fake = Fake::start(nexusiq);
    let p = Postee::start(&nexusiq_config(&fake, IQ_PASSWORD));
    let mut page = Reply::text(200, "<html><body>Sign in</body></html>");
    page.content_type = "text/html";
    fake.force("GET", &iq_org_path(), page);
    let id = post_event(&p, "events/aqua-scan.json");
    assert_failure_visible(
        &p,
        &id,
        "error fetching application: the answer is not a JSON object: <html><body>Sign in</body></html>",
    );
    assert!(fake.requests("POST", IQ_APPS).is_empty());
    fake.assert_no_problems();
}

// ---------------------------------------------------------------------------------------
// Load-time checks and previews

fn output(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn missing_or_invalid_keys_of_ticketing_actions_are_load_errors_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg.yaml");
    std::fs::write(
        &cfg,
        "routes:\n  - name: r\n    actions: [s1, s2, s3, dt, iq]\n\
         actions:\n\
         \x20 - name: s1\n    type: servicenow\n    enable: true\n\
         \x20 - name: s2\n    type: serviceNow\n    enable: true\n    user: postee\n    password: $UNSET_SNOW_PASSWORD_VAR\n    instance: dev1\n    instance-url: https://itsm.example.com\n\
         \x20 - name: s3\n    type: SERVICENOW\n    enable: true\n    user: postee\n    password: secret-snow-value-7\n    instance: https://dev1.service-now.com\n    board: incident; drop\n\
         \x20 - name: dt\n    type: dependencytrack\n    enable: true\n    url: ftp://dt.example\n\
         \x20 - name: iq\n    type: nexusIQ\n    enable: true\n    url: https://iq.example\n    timeout: soon\n",
    )
    .unwrap();
    let out = run(&["check", "--cfgfile", cfg.to_str().unwrap()], &[]);
    let text = output(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for expected in [
        "actions[s1].user: missing: the ServiceNow user is empty",
        "actions[s1].password: missing: the ServiceNow password is empty",
        "actions[s1].instance: missing: the instance name",
        // Postee checked credentials only for the lower-case spelling; any spelling here.
        "actions[s2].password: missing: the ServiceNow password is empty",
        "actions[s2].instance-url: set either `instance` or `instance-url`, not both",
        "actions[s3].instance: \"https://dev1.service-now.com\" is not an instance name",
        "actions[s3].board: \"incident; drop\" is not a table name",
        "actions[dt].url: unsupported scheme `ftp`",
        "actions[dt].dependency-track-api-key: missing",
        "actions[iq].user: missing",
        "actions[iq].password: missing",
        "actions[iq].organization-id: missing",
        "actions[iq].timeout:",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(!text.contains("secret-snow-value-7"), "{text}");
    assert!(!text.contains("not supported yet"), "{text}");
}

#[test]
fn render_shows_each_call_of_the_ticketing_actions_without_their_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg.yaml");
    std::fs::write(
        &cfg,
        "routes:\n\
         \x20 - name: snow\n    template: servicenow\n    actions: [snow]\n\
         \x20 - name: iq\n    template: cyclonedx\n    actions: [iq]\n\
         \x20 - name: dt\n    template: sbom\n    actions: [dt]\n\
         templates:\n\
         \x20 - name: servicenow\n    rego-package: postee.servicenow\n\
         \x20 - name: cyclonedx\n    rego-package: postee.vuls.cyclonedx\n\
         \x20 - name: sbom\n    rego-package: postee.trivyoperator.dependencytrack\n\
         actions:\n\
         \x20 - name: snow\n    type: servicenow\n    enable: true\n    user: postee\n    password: secret-snow-1\n    instance: dev12345\n\
         \x20 - name: iq\n    type: nexusiq\n    enable: true\n    url: https://iq.example.com\n    user: admin\n    password: secret-iq-2\n    organization-id: org1\n\
         \x20 - name: dt\n    type: dependencytrack\n    enable: true\n    url: https://dt.example.com\n    dependency-track-api-key: secret-dt-3\n",
    )
    .unwrap();
    let render = |route: &str, event: &str| -> Value {
        let out = run(
            &[
                "render",
                "--cfgfile",
                cfg.to_str().unwrap(),
                "--route",
                route,
                "--input",
                fixture(event).to_str().unwrap(),
            ],
            &[],
        );
        let text = output(&out);
        assert!(out.status.success(), "{text}");
        for secret in ["secret-snow-1", "secret-iq-2", "secret-dt-3"] {
            assert!(!text.contains(secret), "{secret} shown:\n{text}");
        }
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["actions"][0]["would_send"].clone()
    };

    let snow = render("snow", "events/aqua-scan.json");
    let calls = snow["requests"].as_array().unwrap();
    assert_eq!(calls[0]["method"], "GET");
    assert_eq!(
        calls[0]["url"],
        "https://dev12345.service-now.com/api/now/table/incident?sysparm_query=correlation_id%3Drender%3Asnow%3Asnow&sysparm_limit=1&sysparm_fields=sys_id%2Cnumber"
    );
    assert_eq!(calls[0]["headers"]["Authorization"], "Basic <hidden>");
    assert_eq!(calls[1]["method"], "POST");
    assert_eq!(
        calls[1]["url"],
        "https://dev12345.service-now.com/api/now/table/incident"
    );
    assert_eq!(calls[1]["headers"]["Authorization"], "Basic <hidden>");
    assert_eq!(calls[1]["body"]["opened_at"], "2021-06-24 14:14:26");
    assert_eq!(calls[1]["body"]["impact"], 1);
    assert_eq!(calls[1]["body"]["category"], "Security Image Scan results");

    let iq = render("iq", "events/aqua-scan.json");
    let calls = iq["requests"].as_array().unwrap();
    let urls: Vec<&str> = calls.iter().map(|c| c["url"].as_str().unwrap()).collect();
    assert_eq!(
        urls,
        [
            "https://iq.example.com/api/v2/applications/organization/org1",
            "https://iq.example.com/api/v2/applications",
            "https://iq.example.com/api/v2/scan/applications/<application id>/sources/cyclone",
        ]
    );
    assert_eq!(
        calls[1]["body"],
        json!({"name": "all-in-one_3_5_19223", "organizationId": "org1", "publicId": "all-in-one_3_5_19223"})
    );
    assert_eq!(calls[2]["headers"]["Content-Type"], "application/xml");
    assert!(calls[2]["body"].as_str().unwrap().starts_with("<?xml"));
    for c in calls {
        assert_eq!(c["headers"]["Authorization"], "Basic <hidden>");
    }

    let dt = render("dt", "events/trivy-operator-sbomreport.json");
    assert_eq!(dt["method"], "PUT");
    assert_eq!(dt["url"], "https://dt.example.com/api/v1/bom");
    assert_eq!(dt["headers"]["X-Api-Key"], "<hidden>");
    assert_eq!(dt["body"]["projectName"], "library/nginx");
    assert_eq!(dt["body"]["projectVersion"], "1.16");
}

/// Postee's own sample config with its servicenow, nexusiq and dependencytrack actions
/// enabled (the documented `serviceNow` and `nexusIq` spellings): it loads, and `render` shows
/// what each would send.
#[test]
fn postees_sample_config_with_these_actions_enabled_loads_and_renders() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = std::fs::read_to_string(fixture("postee-samples/cfg.yaml")).unwrap();
    for name in ["my-servicenow", "my-nexus-iq", "my-dependencytrack"] {
        let at = text.find(&format!("- name: {name}\n")).unwrap();
        let off = text[at..].find("enable: false").unwrap() + at;
        text.replace_range(off..off + "enable: false".len(), "enable: true");
    }
    let cfg = dir.path().join("cfg.yaml");
    std::fs::write(&cfg, &text).unwrap();
    let env = [
        ("SERVICENOW_PASSWORD", "sample-snow-secret"),
        ("NEXUS_IQ_PASSWORD", "sample-iq-secret"),
        ("REGO_FILTERS_PATH", "/nonexistent"),
        ("REGO_TEMPLATES_PATH", "/nonexistent"),
    ];
    let out = run(&["check", "--cfgfile", cfg.to_str().unwrap()], &env);
    let checked = output(&out);
    assert!(out.status.success(), "{checked}");
    assert!(checked.contains("of which 4 enabled"), "{checked}");
    for (route, event, action, url) in [
        (
            "aqua-scan-sbom",
            "events/aqua-scan.json",
            "my-nexus-iq",
            "https://nexus.example.com/api/v2/applications/organization/222de33e8005408a844c12eab952c9b0",
        ),
        (
            "trivy-operator-sbom",
            "events/trivy-operator-sbomreport.json",
            "my-dependencytrack",
            "https://dependency-track.example.com/api/v1/bom",
        ),
        (
            "fixable-vulnerabilities",
            "events/aqua-scan.json",
            "my-servicenow",
            "https://dev12345.service-now.com/api/now/table/incident",
        ),
    ] {
        let out = run(
            &[
                "render",
                "--cfgfile",
                cfg.to_str().unwrap(),
                "--route",
                route,
                "--input",
                fixture(event).to_str().unwrap(),
            ],
            &env,
        );
        let shown = output(&out);
        assert!(out.status.success(), "{route}: {shown}");
        assert!(
            !shown.contains("sample-snow-secret")
                && !shown.contains("sample-iq-secret")
                && !shown.contains("odt_xxxx"),
            "{shown}"
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let a = v["actions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == action)
            .unwrap_or_else(|| panic!("{route}: {action} not shown: {v}"));
        assert!(a["would_send"].to_string().contains(url), "{route}: {a}");
    }
}
