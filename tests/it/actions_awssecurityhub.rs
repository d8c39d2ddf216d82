//! `awssecurityhub` with the real binary against a fake Security Hub on 127.0.0.1 (reached
//! through `endpoint-url`): the fake checks each `BatchImportFindings` call the way AWS
//! documents it (method, path, JSON content type, SigV4 headers) and verifies the signature
//! with its own SigV4 implementation and the known secret key; it answers like AWS, with
//! `FailedFindings` and AWS's error headers and bodies. IMDS is disabled and the AWS files
//! point into the test's temp dir, so nothing leaves the machine.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::common::*;

const AKID: &str = "AKIAFAKEENVKEY000001";
const SECRET: &str = "env-secret-key/very+secret0001";
const TOKEN: &str = "env-session-token-0001";
const PROFILE_AKID: &str = "AKIAFAKEPROFILE00002";
const PROFILE_SECRET: &str = "profile-secret-key-0002";
const REGION: &str = "eu-west-3";
const STS_AKID: &str = "ASIAFAKESTSROLE00003";
const STS_SECRET: &str = "sts-secret-key-0003";
const STS_TOKEN: &str = "sts-session-token-0003";

// ---------------------------------------------------------------------------------------
// The fake Security Hub.

/// One call the fake received, with what it found wrong in it.
#[derive(Clone)]
struct Call {
    at: Instant,
    headers: BTreeMap<String, String>,
    findings: Vec<Value>,
    problems: Vec<String>,
    status: u16,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("status", &self.status)
            .field("problems", &self.problems)
            .field("findings", &self.findings.len())
            .field("headers", &self.headers)
            .finish()
    }
}

impl Call {
    fn ids(&self) -> Vec<String> {
        self.findings
            .iter()
            .map(|f| f["Id"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

/// How the fake answers the next call.
#[derive(Debug, Clone)]
enum Answer {
    /// 200, with these findings (by Id) failed with (ErrorCode, ErrorMessage).
    Failing(Vec<(&'static str, &'static str, &'static str)>),
    /// An AWS error: status, `x-amzn-ErrorType`, body, extra headers.
    Error(u16, &'static str, String, Vec<(&'static str, &'static str)>),
}

#[derive(Clone, Default)]
struct HubState {
    calls: Arc<Mutex<Vec<Call>>>,
    answers: Arc<Mutex<Vec<Answer>>>,
    /// Secret keys by access key id, and the region calls must be signed for.
    secrets: Arc<BTreeMap<String, String>>,
    region: Arc<String>,
}

struct Hub {
    port: u16,
    state: HubState,
}

impl Hub {
    fn start(region: &str) -> Hub {
        let std_listener = TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let port = std_listener.local_addr().unwrap().port();
        let state = HubState {
            secrets: Arc::new(BTreeMap::from([
                (AKID.to_string(), SECRET.to_string()),
                (PROFILE_AKID.to_string(), PROFILE_SECRET.to_string()),
                (STS_AKID.to_string(), STS_SECRET.to_string()),
            ])),
            region: Arc::new(region.to_string()),
            ..Default::default()
        };
        let st = state.clone();
        std::thread::spawn(move || {
            block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                let app = axum::Router::new().fallback(import).with_state(st);
                axum::serve(listener, app).await.unwrap();
            })
        });
        Hub { port, state }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn answer(&self, a: Answer) {
        self.state.answers.lock().unwrap().push(a);
    }

    fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }

    fn wait_calls(&self, n: usize) -> Vec<Call> {
        wait_until(
            Duration::from_secs(30),
            || {
                let calls = self.calls();
                calls.len() >= n || calls.iter().any(|c| !c.problems.is_empty())
            },
            || format!("waiting for {n} calls; got {:?}", self.calls()),
        );
        let calls = self.calls();
        for c in &calls {
            assert!(c.problems.is_empty(), "call not as AWS documents it: {c:?}");
        }
        calls
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sha256_hex(b: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, b).as_ref())
}

fn hmac(key: &[u8], msg: &str) -> Vec<u8> {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::sign(&k, msg.as_bytes()).as_ref().to_vec()
}

/// SigV4 as AWS documents it: canonical request, string to sign, derived key, signature.
fn expected_signature(
    secret: &str,
    (method, path): (&str, &str),
    headers: &BTreeMap<String, String>,
    signed: &[&str],
    body: &[u8],
    (amz_date, scope): (&str, &str),
) -> String {
    let mut canonical = format!("{method}\n{path}\n\n");
    for h in signed {
        let v = headers.get(*h).map(String::as_str).unwrap_or_default();
        let v = v.split_whitespace().collect::<Vec<_>>().join(" ");
        canonical.push_str(&format!("{h}:{v}\n"));
    }
    canonical.push_str(&format!("\n{}\n{}", signed.join(";"), sha256_hex(body)));
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let parts: Vec<&str> = scope.split('/').collect();
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), parts[0]);
    for p in &parts[1..] {
        key = hmac(&key, p);
    }
    hex(&hmac(&key, &to_sign))
}

/// Checks one call; returns what is wrong with it.
fn check_call(
    st: &HubState,
    method: &Method,
    uri: &Uri,
    headers: &BTreeMap<String, String>,
    body: &[u8],
) -> Vec<String> {
    let mut problems = Vec::new();
    if method != Method::POST {
        problems.push(format!("method {method}"));
    }
    if uri.path() != "/findings/import" || uri.query().is_some() {
        problems.push(format!("path {uri}"));
    }
    if headers.get("content-type").map(String::as_str) != Some("application/json") {
        problems.push(format!("content-type {:?}", headers.get("content-type")));
    }
    let date_re = regex::Regex::new(r"^(\d{8})T\d{6}Z$").unwrap();
    let amz_date = headers.get("x-amz-date").cloned().unwrap_or_default();
    let Some(day) = date_re.captures(&amz_date).map(|c| c[1].to_string()) else {
        problems.push(format!("x-amz-date {amz_date:?}"));
        return problems;
    };
    let auth_re = regex::Regex::new(
        r"^AWS4-HMAC-SHA256 Credential=([A-Z0-9]+)/(\d{8})/([a-z0-9-]+)/([a-z]+)/aws4_request, SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$",
    )
    .unwrap();
    let auth = headers.get("authorization").cloned().unwrap_or_default();
    let Some(c) = auth_re.captures(&auth) else {
        problems.push(format!("authorization {auth:?}"));
        return problems;
    };
    let (akid, scope_day, region, service, signed, signature) =
        (&c[1], &c[2], &c[3], &c[4], &c[5], &c[6]);
    if scope_day != day {
        problems.push(format!("scope date {scope_day} vs x-amz-date {day}"));
    }
    if region != st.region.as_str() {
        problems.push(format!("region {region}"));
    }
    if service != "securityhub" {
        problems.push(format!("service {service}"));
    }
    let signed: Vec<&str> = signed.split(';').collect();
    for must in ["host", "x-amz-date", "content-type"] {
        if !signed.contains(&must) {
            problems.push(format!("{must} not signed"));
        }
    }
    if headers.contains_key("x-amz-security-token") && !signed.contains(&"x-amz-security-token") {
        problems.push("x-amz-security-token not signed".into());
    }
    match st.secrets.get(akid) {
        None => problems.push(format!("unknown access key id {akid}")),
        Some(secret) => {
            let scope = format!("{scope_day}/{region}/{service}/aws4_request");
            let want = expected_signature(
                secret,
                (method.as_str(), uri.path()),
                headers,
                &signed,
                body,
                (&amz_date, &scope),
            );
            if want != signature {
                problems.push("signature does not verify".into());
            }
        }
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => match v["Findings"].as_array() {
            Some(f) if !f.is_empty() && f.len() <= 100 && f.iter().all(Value::is_object) => {}
            _ => problems.push("Findings must hold 1 to 100 objects".into()),
        },
        Err(e) => problems.push(format!("body is not JSON: {e}")),
    }
    problems
}

async fn import(
    State(st): State<HubState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let mut h = BTreeMap::new();
    for (k, v) in &headers {
        h.insert(
            k.as_str().to_string(),
            v.to_str().unwrap_or_default().to_string(),
        );
    }
    let problems = check_call(&st, &method, &uri, &h, &body);
    let findings: Vec<Value> = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["Findings"].as_array().cloned())
        .unwrap_or_default();
    let answer = if problems.is_empty() {
        let mut a = st.answers.lock().unwrap();
        if a.is_empty() {
            None
        } else {
            Some(a.remove(0))
        }
    } else {
        Some(Answer::Error(
            403,
            "InvalidSignatureException",
            json!({"message": format!("fake Security Hub: {problems:?}")}).to_string(),
            vec![],
        ))
    };
    let (status, body, extra): (u16, String, Vec<(&str, &str)>) = match answer {
        None | Some(Answer::Failing(_)) => {
            let failing = match &answer {
                Some(Answer::Failing(f)) => f.clone(),
                _ => vec![],
            };
            let failed: Vec<Value> = findings
                .iter()
                .filter_map(|f| {
                    let id = f["Id"].as_str()?;
                    let (_, code, msg) = failing.iter().find(|(i, _, _)| *i == id)?;
                    Some(json!({"Id": id, "ErrorCode": code, "ErrorMessage": msg}))
                })
                .collect();
            let body = json!({
                "FailedCount": failed.len(),
                "SuccessCount": findings.len() - failed.len(),
                "FailedFindings": failed,
            });
            (200, body.to_string(), vec![])
        }
        Some(Answer::Error(status, kind, body, extra)) => {
            let mut extra = extra;
            extra.push(("x-amzn-ErrorType", kind));
            (status, body, extra)
        }
    };
    st.calls.lock().unwrap().push(Call {
        at: Instant::now(),
        headers: h,
        findings,
        problems,
        status,
    });
    let mut resp = (StatusCode::from_u16(status).unwrap(), body).into_response();
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    resp.headers_mut().insert(
        "x-amzn-requestid",
        "4b3e2f3c-0000-4000-8000-000000000000".parse().unwrap(),
    );
    for (k, v) in extra {
        resp.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    resp
}

// ---------------------------------------------------------------------------------------
// Configs, environments, reports.

const FAST_RETRY: &str = "retry: {initial-delay: 20ms, max-delay: 50ms}";

fn config(action_keys: &str) -> String {
    format!(
        "routes:\n  - name: r\n    template: raw\n    actions: [hub]\n\
         templates:\n  - name: raw\n    rego-package: postee.rawmessage.json\n\
         actions:\n  - name: hub\n    type: awssecurityhub\n    enable: true\n{action_keys}"
    )
}

/// An AWS environment that reaches nothing: no instance metadata, AWS files in `dir`.
fn aws_env(dir: &Path) -> Vec<(String, String)> {
    [
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ("HOME", dir.display().to_string()),
        (
            "AWS_CONFIG_FILE",
            dir.join("aws-config").display().to_string(),
        ),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join("aws-credentials").display().to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn env_keys(dir: &Path) -> Vec<(String, String)> {
    let mut env = aws_env(dir);
    env.push(("AWS_ACCESS_KEY_ID".into(), AKID.into()));
    env.push(("AWS_SECRET_ACCESS_KEY".into(), SECRET.into()));
    env.push(("AWS_SESSION_TOKEN".into(), TOKEN.into()));
    env
}

fn start(
    hub: &Hub,
    extra_keys: &str,
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
) -> Postee {
    let cfg = config(&format!(
        "    region: {REGION}\n    endpoint-url: {}\n    {FAST_RETRY}\n{extra_keys}",
        hub.url()
    ));
    Postee::start_in(
        dir,
        &cfg,
        PosteeOptions {
            env,
            ..Default::default()
        },
    )
}

/// A Trivy ASFF finding (the fields `trivy image --format asff` writes).
fn finding(i: usize) -> Value {
    json!({
        "SchemaVersion": "2018-10-08",
        "Id": format!("alpine:3.18/CVE-2024-{i:05}"),
        "ProductArn": format!("arn:aws:securityhub:{REGION}::product/aquasecurity/aquasecurity"),
        "GeneratorId": "Trivy/CVE-2024",
        "AwsAccountId": "123456789012",
        "Types": ["Software and Configuration Checks/Vulnerabilities/CVE"],
        "CreatedAt": "2026-11-30T10:00:00Z",
        "UpdatedAt": "2026-11-30T10:00:00Z",
        "Severity": {"Label": "HIGH"},
        "Title": format!("Trivy found a vulnerability to CVE-2024-{i:05} in container alpine:3.18"),
        "Description": "A buffer overflow.",
        "Remediation": {"Recommendation": {"Text": "More information on this vulnerability is provided in the hyperlink", "Url": "https://avd.aquasec.com/nvd/cve-2024-00001"}},
        "ProductFields": {"Product Name": "Trivy"},
        "Resources": [{
            "Type": "Container",
            "Id": "alpine:3.18",
            "Partition": "aws",
            "Region": REGION,
            "Details": {"Container": {"ImageName": "alpine:3.18"}, "Other": {"PkgName": "openssl", "Installed Package": "3.1.0", "Patched Package": "3.1.1"}}
        }],
        "RecordState": "ACTIVE"
    })
}

fn report(n: usize) -> Vec<u8> {
    let findings: Vec<Value> = (0..n).map(finding).collect();
    serde_json::to_vec(&json!({ "Findings": findings })).unwrap()
}

fn event_id(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap();
    v["id"].as_str().unwrap().to_string()
}

fn dead_letters(p: &Postee, n: usize) -> Vec<Value> {
    wait_until(
        Duration::from_secs(30),
        || p.api_get("/dlq").1.as_array().is_some_and(|a| a.len() >= n),
        || format!("waiting for {n} dead letters; log:\n{}", p.stderr()),
    );
    p.api_get("/dlq").1.as_array().unwrap().clone()
}

// ---------------------------------------------------------------------------------------
// Tests.

#[test]
fn findings_are_imported_whole_in_signed_calls_of_at_most_100() {
    let hub = Hub::start(REGION);
    let dir = tempfile::tempdir().unwrap();
    let env = env_keys(dir.path());
    let p = start(&hub, "", env, dir);
    assert_eq!(p.post("/", &report(250)).0, 200);
    let calls = hub.wait_calls(3);
    p.wait_deliveries(1);
    assert_eq!(calls.len(), 3, "{calls:?}");
    let sizes: Vec<usize> = calls.iter().map(|c| c.findings.len()).collect();
    assert_eq!(sizes, [100, 100, 50]);
    let sent: Vec<Value> = calls.iter().flat_map(|c| c.findings.clone()).collect();
    let want: Vec<Value> = (0..250).map(finding).collect();
    assert_eq!(
        sent, want,
        "every finding arrives as the report has it, in order"
    );
    for c in &calls {
        let auth = &c.headers["authorization"];
        let day = &c.headers["x-amz-date"][..8];
        assert!(
            auth.starts_with(&format!(
                "AWS4-HMAC-SHA256 Credential={AKID}/{day}/{REGION}/securityhub/aws4_request, SignedHeaders="
            )),
            "{auth}"
        );
        assert_eq!(c.headers["x-amz-security-token"], TOKEN);
        assert_eq!(c.headers["content-type"], "application/json");
        assert_eq!(c.status, 200);
    }
    // Postee dropped these and invented one resource per finding.
    assert_eq!(sent[7]["Resources"][0]["Type"], "Container");
    assert_eq!(
        sent[7]["Resources"][0]["Details"]["Other"]["PkgName"],
        "openssl"
    );
    assert_eq!(sent[7]["ProductFields"]["Product Name"], "Trivy");
    assert_eq!(sent[7]["AwsAccountId"], "123456789012");
    assert!(p.api_get("/dlq").1.as_array().unwrap().is_empty());
    let log = p.stderr();
    for secret in [SECRET, TOKEN] {
        assert!(!log.contains(secret), "a secret in the log:\n{log}");
    }
}

#[test]
fn throttling_is_retried_and_only_failed_findings_are_sent_again() {
    let hub = Hub::start(REGION);
    hub.answer(Answer::Error(
        429,
        "ThrottlingException",
        json!({"message": "Rate exceeded"}).to_string(),
        vec![("Retry-After", "1")],
    ));
    hub.answer(Answer::Failing(vec![(
        "alpine:3.18/CVE-2024-00001",
        "InternalException",
        "Internal service failure",
    )]));
    let dir = tempfile::tempdir().unwrap();
    let env = env_keys(dir.path());
    let p = start(&hub, "", env, dir);
    let (s, body) = p.post("/", &report(3));
    assert_eq!(s, 200);
    let id = event_id(&body);
    let calls = hub.wait_calls(3);
    assert_eq!(calls[0].status, 429);
    assert_eq!(
        calls[0].ids(),
        calls[1].ids(),
        "a throttled call is sent again whole"
    );
    assert!(
        calls[1].at - calls[0].at >= Duration::from_millis(950),
        "Retry-After: 1 was honoured"
    );
    assert_eq!(calls[1].findings.len(), 3);
    assert_eq!(
        calls[2].ids(),
        ["alpine:3.18/CVE-2024-00001"],
        "only the finding AWS failed is sent again"
    );
    assert_eq!(calls[2].findings[0], finding(1));
    wait_until(
        Duration::from_secs(30),
        || p.api_get(&format!("/events/{id}")).1["state"] == "done",
        || format!("{}", p.api_get(&format!("/events/{id}")).1),
    );
    assert_eq!(hub.calls().len(), 3, "nothing more is sent");
    assert!(p.api_get("/dlq").1.as_array().unwrap().is_empty());
}

#[test]
fn a_failed_call_is_retried_without_the_calls_already_accepted() {
    let hub = Hub::start(REGION);
    hub.answer(Answer::Failing(vec![]));
    hub.answer(Answer::Error(
        503,
        "ServiceUnavailableException",
        json!({"message": "Service is unavailable"}).to_string(),
        vec![],
    ));
    let dir = tempfile::tempdir().unwrap();
    let env = env_keys(dir.path());
    let p = start(&hub, "", env, dir);
    let (_, body) = p.post("/", &report(250));
    let id = event_id(&body);
    let calls = hub.wait_calls(4);
    let statuses: Vec<u16> = calls.iter().map(|c| c.status).collect();
    assert_eq!(statuses, [200, 503, 200, 200]);
    assert_eq!(
        calls[1].ids(),
        calls[2].ids(),
        "the failed call is made again"
    );
    assert_eq!(calls[2].findings[0], finding(100));
    assert_eq!(calls[3].findings.len(), 50);
    assert_eq!(calls[3].findings[49], finding(249));
    let sent: usize = calls.iter().map(|c| c.findings.len()).sum();
    assert_eq!(sent, 350, "the first 100 findings are not sent again");
    wait_until(
        Duration::from_secs(30),
        || p.api_get(&format!("/events/{id}")).1["state"] == "done",
        || format!("{}", p.api_get(&format!("/events/{id}")).1),
    );
    assert_eq!(hub.calls().len(), 4);
    assert!(p.api_get("/dlq").1.as_array().unwrap().is_empty());
}

#[test]
fn refused_findings_and_access_denied_are_dead_letters_with_aws_messages() {
    let hub = Hub::start(REGION);
    hub.answer(Answer::Failing(vec![(
        "alpine:3.18/CVE-2024-00000",
        "InvalidInput",
        "Finding does not adhere to Amazon Security Finding Format. data.AwsAccountId should match pattern",
    )]));
    hub.answer(Answer::Error(
        403,
        "AccessDeniedException:http://internal.amazon.com/coral/com.amazon.coral.service/",
        json!({"Message": "User: arn:aws:iam::123456789012:user/ci is not authorized to perform: securityhub:BatchImportFindings"}).to_string(),
        vec![],
    ));
    let dir = tempfile::tempdir().unwrap();
    let env = env_keys(dir.path());
    let p = start(&hub, "", env, dir);
    let (_, body) = p.post("/", &report(2));
    let refused = event_id(&body);
    hub.wait_calls(1);
    let dead = dead_letters(&p, 1);
    let err = dead[0]["error"].as_str().unwrap();
    assert!(
        err.contains("upload to AWS Security Hub failed: AWS Security Hub refused 1 of 2 findings: alpine:3.18/CVE-2024-00000 (InvalidInput: Finding does not adhere"),
        "{err}"
    );
    assert_eq!(dead[0]["delivery"]["event_id"], refused.as_str());
    assert_eq!(hub.calls().len(), 1, "a refused finding is not retried");

    let (_, body) = p.post("/", &report(1));
    let denied = event_id(&body);
    let dead = dead_letters(&p, 2);
    let d = dead
        .iter()
        .find(|d| d["delivery"]["event_id"] == denied.as_str())
        .unwrap();
    let want = "upload to AWS Security Hub failed: HTTP 403 AccessDeniedException: User: arn:aws:iam::123456789012:user/ci is not authorized to perform: securityhub:BatchImportFindings";
    let err = d["error"].as_str().unwrap();
    assert!(err.starts_with(want), "{err}");
    assert!(err.contains("grant it in IAM"), "a hint: {err}");
    assert_eq!(d["delivery"]["attempts"], 1, "permanent: not retried");
    let (_, ev) = p.api_get(&format!("/events/{denied}"));
    let action = &ev["routes"][0]["actions"][0];
    assert!(
        action["last_error"].as_str().unwrap().starts_with(want),
        "{ev}"
    );
    let log = p.stderr();
    assert!(
        log.lines()
            .any(|l| l.contains("outcome") && l.contains(want)),
        "the log line has AWS's error:\n{log}"
    );
    let shown = format!("{dead:?} {ev} {}", p.stderr());
    assert!(!shown.contains(SECRET) && !shown.contains(TOKEN));
    assert_eq!(hub.calls().len(), 2);
}

#[test]
fn credentials_and_region_come_from_the_profile_in_the_shared_files() {
    let hub = Hub::start("eu-north-1");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("aws-credentials"),
        format!(
            "[default]\naws_access_key_id = AKIAWRONGDEFAULT0003\naws_secret_access_key = wrong\n\n[ci]\naws_access_key_id = {PROFILE_AKID}\naws_secret_access_key = {PROFILE_SECRET}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("aws-config"),
        "[default]\nregion = us-east-1\n\n[profile ci]\nregion = eu-north-1\n",
    )
    .unwrap();
    let mut env = aws_env(dir.path());
    env.push(("AWS_PROFILE".into(), "ci".into()));
    // No `region` key: the profile's region is used.
    let cfg = config(&format!(
        "    endpoint-url: {}\n    {FAST_RETRY}\n",
        hub.url()
    ));
    let p = Postee::start_in(
        dir,
        &cfg,
        PosteeOptions {
            env,
            ..Default::default()
        },
    );
    assert_eq!(p.post("/", &report(1)).0, 200);
    let calls = hub.wait_calls(1);
    let auth = &calls[0].headers["authorization"];
    assert!(
        auth.contains(&format!("Credential={PROFILE_AKID}/"))
            && auth.contains("/eu-north-1/securityhub/aws4_request"),
        "{auth}"
    );
    assert!(!calls[0].headers.contains_key("x-amz-security-token"));
    p.wait_deliveries(1);
    assert!(p.api_get("/dlq").1.as_array().unwrap().is_empty());
}

/// EKS IRSA: a projected service-account token and a role; the chain trades them at STS
/// (here a fake STS, through `AWS_ENDPOINT_URL_STS`) for temporary credentials.
#[test]
fn a_web_identity_token_is_traded_at_sts_for_temporary_credentials() {
    let hub = Hub::start(REGION);
    let sts = Sink::start();
    sts.respond_with(
        200,
        &format!(
            r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:security:postee</SubjectFromWebIdentityToken>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/postee-securityhub/postee</Arn>
      <AssumedRoleId>AROAFAKEROLEID:postee</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>{STS_AKID}</AccessKeyId>
      <SecretAccessKey>{STS_SECRET}</SecretAccessKey>
      <SessionToken>{STS_TOKEN}</SessionToken>
      <Expiration>2099-01-01T00:00:00Z</Expiration>
    </Credentials>
    <Provider>arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-3.amazonaws.com/id/EXAMPLE</Provider>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"#
        ),
        &[("Content-Type", "text/xml")],
    );
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.fake-projected-token.sig").unwrap();
    let mut env = aws_env(dir.path());
    env.extend(
        [
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token.display().to_string()),
            (
                "AWS_ROLE_ARN",
                "arn:aws:iam::123456789012:role/postee-securityhub".to_string(),
            ),
            ("AWS_ROLE_SESSION_NAME", "postee".to_string()),
            ("AWS_ENDPOINT_URL_STS", sts.url("")),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    let p = start(&hub, "", env, dir);
    assert_eq!(p.post("/", &report(2)).0, 200);
    assert_eq!(p.post("/", &report(3)).0, 200);
    let calls = hub.wait_calls(2);
    p.wait_deliveries(2);
    for c in &calls {
        assert!(
            c.headers["authorization"].contains(&format!("Credential={STS_AKID}/")),
            "{c:?}"
        );
        assert_eq!(c.headers["x-amz-security-token"], STS_TOKEN);
    }
    let asked = sts.received();
    assert_eq!(asked.len(), 1, "the credentials are kept until they expire");
    let form = asked[0].body_str();
    for part in [
        "Action=AssumeRoleWithWebIdentity",
        "RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fpostee-securityhub",
        "WebIdentityToken=eyJhbGciOiJSUzI1NiJ9.fake-projected-token.sig",
    ] {
        assert!(form.contains(part), "{part} not in {form}");
    }
    assert!(p.api_get("/dlq").1.as_array().unwrap().is_empty());
}

/// ECS (and EKS Pod Identity): credentials from the container endpoint, with its token.
#[test]
fn container_credentials_come_from_the_ecs_endpoint() {
    let hub = Hub::start(REGION);
    let ecs = Sink::start();
    ecs.set_default_reply(
        200,
        &json!({
            "AccessKeyId": STS_AKID,
            "SecretAccessKey": STS_SECRET,
            "Token": STS_TOKEN,
            "Expiration": "2099-01-01T00:00:00Z",
            "RoleArn": "arn:aws:iam::123456789012:role/postee-task"
        })
        .to_string(),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut env = aws_env(dir.path());
    env.push((
        "AWS_CONTAINER_CREDENTIALS_FULL_URI".into(),
        ecs.url("/v2/credentials/task-1"),
    ));
    env.push((
        "AWS_CONTAINER_AUTHORIZATION_TOKEN".into(),
        "ecs-auth-token-0004".into(),
    ));
    let p = start(&hub, "", env, dir);
    assert_eq!(p.post("/", &report(1)).0, 200);
    let calls = hub.wait_calls(1);
    assert!(
        calls[0].headers["authorization"].contains(&format!("Credential={STS_AKID}/")),
        "{calls:?}"
    );
    assert_eq!(calls[0].headers["x-amz-security-token"], STS_TOKEN);
    let asked = ecs.received();
    assert_eq!(asked[0].method, "GET");
    assert_eq!(asked[0].path, "/v2/credentials/task-1");
    assert_eq!(
        asked[0].header("authorization"),
        Some("ecs-auth-token-0004")
    );
    p.wait_deliveries(1);
    assert!(!p.stderr().contains("ecs-auth-token-0004"));
}

/// A fake EC2 instance metadata service that insists on IMDSv2 (a session token from
/// `PUT /latest/api/token`) and serves one role's credentials.
fn start_imds() -> (u16, Arc<Mutex<Vec<String>>>) {
    use axum::routing::{get, put};
    let std_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let port = std_listener.local_addr().unwrap().port();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    let token_ok = |h: &HeaderMap| {
        h.get("x-aws-ec2-metadata-token")
            .is_some_and(|v| v == "imds-session-0005")
    };
    let app = axum::Router::new()
        .route(
            "/latest/api/token",
            put(|h: HeaderMap| async move {
                // IMDS answers with the session's lifetime in the same header.
                match h.get("x-aws-ec2-metadata-token-ttl-seconds") {
                    Some(ttl) => (
                        StatusCode::OK,
                        [("x-aws-ec2-metadata-token-ttl-seconds", ttl.clone())],
                        "imds-session-0005",
                    )
                        .into_response(),
                    None => StatusCode::BAD_REQUEST.into_response(),
                }
            }),
        )
        .route(
            "/latest/meta-data/iam/security-credentials/",
            get(move |h: HeaderMap| async move {
                if token_ok(&h) {
                    (StatusCode::OK, "postee-role".to_string())
                } else {
                    (StatusCode::UNAUTHORIZED, String::new())
                }
            }),
        )
        .route(
            "/latest/meta-data/iam/security-credentials/postee-role",
            get(move |h: HeaderMap| async move {
                if !token_ok(&h) {
                    return (StatusCode::UNAUTHORIZED, String::new());
                }
                let body = json!({
                    "Code": "Success",
                    "LastUpdated": "2026-12-01T00:00:00Z",
                    "Type": "AWS-HMAC",
                    "AccessKeyId": STS_AKID,
                    "SecretAccessKey": STS_SECRET,
                    "Token": STS_TOKEN,
                    "Expiration": "2099-01-01T00:00:00Z"
                });
                (StatusCode::OK, body.to_string())
            }),
        )
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let log = log.clone();
                async move {
                    let line = format!("{} {}", req.method(), req.uri().path());
                    let resp = next.run(req).await;
                    log.lock()
                        .unwrap()
                        .push(format!("{line} {}", resp.status().as_u16()));
                    resp
                }
            },
        ));
    std::thread::spawn(move || {
        block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        })
    });
    (port, seen)
}

#[test]
fn the_ec2_instance_role_is_read_from_imds_v2() {
    let hub = Hub::start(REGION);
    let (port, seen) = start_imds();
    let dir = tempfile::tempdir().unwrap();
    let mut env: Vec<(String, String)> = aws_env(dir.path())
        .into_iter()
        .filter(|(k, _)| k != "AWS_EC2_METADATA_DISABLED")
        .collect();
    env.push((
        "AWS_EC2_METADATA_SERVICE_ENDPOINT".into(),
        format!("http://127.0.0.1:{port}"),
    ));
    let p = start(&hub, "", env, dir);
    assert_eq!(p.post("/", &report(1)).0, 200);
    wait_until(
        Duration::from_secs(30),
        || !hub.calls().is_empty(),
        || format!("IMDS saw {:?}; log:\n{}", seen.lock().unwrap(), p.stderr()),
    );
    let calls = hub.wait_calls(1);
    assert!(
        calls[0].headers["authorization"].contains(&format!("Credential={STS_AKID}/")),
        "{calls:?}"
    );
    assert_eq!(calls[0].headers["x-amz-security-token"], STS_TOKEN);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.first().map(String::as_str),
        Some("PUT /latest/api/token 200"),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|l| l == "GET /latest/meta-data/iam/security-credentials/postee-role 200"),
        "{seen:?}"
    );
    assert!(
        !seen.iter().any(|l| l.ends_with(" 401")),
        "every read carried the session token: {seen:?}"
    );
    p.wait_deliveries(1);
}

#[test]
fn no_credentials_at_all_is_a_dead_letter_that_says_where_it_looked() {
    let hub = Hub::start(REGION);
    let dir = tempfile::tempdir().unwrap();
    let env = aws_env(dir.path());
    let p = start(&hub, "", env, dir);
    let (_, body) = p.post("/", &report(1));
    let id = event_id(&body);
    let dead = dead_letters(&p, 1);
    let err = dead[0]["error"].as_str().unwrap();
    assert!(
        err.starts_with("upload to AWS Security Hub failed: no AWS credentials found (looked for AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, the shared config and credentials files with AWS_PROFILE"),
        "{err}"
    );
    assert_eq!(dead[0]["delivery"]["attempts"], 1, "permanent");
    let (_, ev) = p.api_get(&format!("/events/{id}"));
    assert!(
        ev["routes"][0]["actions"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("no AWS credentials found"),
        "{ev}"
    );
    assert!(hub.calls().is_empty(), "nothing unsigned is sent");
    // An empty report is Postee's error, before any AWS work.
    let (_, _) = p.post("/", br#"{"Findings": []}"#);
    let dead = dead_letters(&p, 2);
    assert!(
        dead.iter()
            .any(|d| d["error"] == "trivy AWS sent no findings to Postee, skipping sending"),
        "{dead:?}"
    );
}

#[test]
fn check_reports_bad_region_and_endpoint_and_the_postee_sample_loads_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg.yaml");
    std::fs::write(
        &cfg,
        config("    region: US East 1\n    endpoint-url: ftp://securityhub.example\n"),
    )
    .unwrap();
    let o = run(
        &["check", "--cfgfile", cfg.to_str().unwrap()],
        &[("AWS_EC2_METADATA_DISABLED", "true")],
    );
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("error: actions[hub].region: invalid region \"US East 1\": use an AWS region code such as us-east-1"),
        "{out}"
    );
    assert!(
        out.contains("error: actions[hub].endpoint-url: \"ftp://securityhub.example\": unsupported scheme `ftp` (use http or https)"),
        "{out}"
    );
    // An environment variable that is not a region is named too.
    std::fs::write(&cfg, config("")).unwrap();
    let o = run(
        &["check", "--cfgfile", cfg.to_str().unwrap()],
        &[
            ("AWS_REGION", "Paris"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(out.contains("error: actions[hub].region: not set, and AWS_REGION=\"Paris\" is not an AWS region code"), "{out}");

    // Postee's sample config with the action enabled loads (credentials are looked up at
    // the first send, never by `check`).
    let sample = std::fs::read_to_string(fixture("postee-samples/cfg.yaml")).unwrap();
    let enabled = sample.replace(
        "type: awssecurityhub                       # Uses the default AWS credential chain\n  enable: false",
        "type: awssecurityhub                       # Uses the default AWS credential chain\n  enable: true",
    );
    assert_ne!(sample, enabled, "the sample has the awssecurityhub action");
    let path = dir.path().join("sample.yaml");
    std::fs::write(&path, enabled).unwrap();
    let o = run(
        &["check", "--cfgfile", path.to_str().unwrap()],
        &[
            ("REGO_FILTERS_PATH", "/nonexistent"),
            ("REGO_TEMPLATES_PATH", "/nonexistent"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{out}");
    assert!(!out.contains("my-aws-securityhub"), "{out}");
    // And `render` shows what its route would send, without credentials.
    let input = dir.path().join("report.asff");
    std::fs::write(&input, report(2)).unwrap();
    let o = run(
        &[
            "render",
            "--cfgfile",
            path.to_str().unwrap(),
            "--route",
            "Trivy AWS Security Hub",
            "--input",
            input.to_str().unwrap(),
        ],
        &[
            ("REGO_FILTERS_PATH", "/nonexistent"),
            ("REGO_TEMPLATES_PATH", "/nonexistent"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_REGION", "us-east-2"),
            ("AWS_ACCESS_KEY_ID", AKID),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
        ],
    );
    let rendered: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)));
    let action = &rendered["actions"][0];
    assert_eq!(action["name"], "my-aws-securityhub", "{rendered}");
    let call = &action["would_send"]["calls"][0];
    assert_eq!(
        call["url"],
        "https://securityhub.us-east-2.amazonaws.com/findings/import"
    );
    assert_eq!(call["body"]["Findings"][1], finding(1));
    let text = rendered.to_string();
    assert!(!text.contains(SECRET) && !text.contains(AKID), "{text}");
}

#[test]
fn render_shows_the_calls_without_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg.yaml");
    std::fs::write(&cfg, config(&format!("    region: {REGION}\n"))).unwrap();
    let input = dir.path().join("event.json");
    std::fs::write(&input, report(120)).unwrap();
    let mut env: Vec<(String, String)> = env_keys(dir.path());
    env.push(("RUST_LOG".into(), "debug".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
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
        &env,
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    for secret in [SECRET, TOKEN, AKID] {
        assert!(!text.contains(secret), "{secret} shown:\n{text}");
    }
    for shown in [
        format!("https://securityhub.{REGION}.amazonaws.com/findings/import"),
        format!("Credential=<access key id>/<date>/{REGION}/securityhub/aws4_request"),
        "Signature=<hidden>".to_string(),
        "\"findings\": 100".to_string(),
        "\"findings\": 20".to_string(),
        "alpine:3.18/CVE-2024-00119".to_string(),
    ] {
        assert!(text.contains(&shown), "{shown} missing:\n{text}");
    }
}
