//! The messaging actions (slack, teams, opsgenie, pagerduty, splunk, email) against local
//! servers that check each request the way the real service documents it: the real binary
//! for the HTTP ones, a real SMTP server (Debian's python3-aiosmtpd) for email.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{Value, json};

/// A template that takes the title and the result from the event, so each test says exactly
/// what the action gets.
const TEMPLATE: &str = r#"
templates:
  - name: passthrough
    body: |
      package passthrough
      title = input.title
      result = input.result
"#;

const FAST_RETRY: &str = "retry: {initial-delay: 20ms, max-delay: 50ms}";

fn config(actions: &str) -> String {
    let names: Vec<String> = actions
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- name: ").map(str::to_string))
        .collect();
    format!(
        "routes:\n  - name: r\n    template: passthrough\n    actions: [{}]\n{TEMPLATE}actions:\n{actions}",
        names.join(", ")
    )
}

fn event(title: &str, result: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"title": title, "result": result})).unwrap()
}

fn json_body(r: &Received) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body_str()))
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
// Slack

#[test]
fn slack_posts_the_title_block_first_and_splits_over_fifty_blocks() {
    let sink = Sink::start();
    let p = Postee::start(&config(&format!(
        "  - name: slack\n    type: slack\n    enable: true\n    url: {}\n",
        sink.url("/services/T000/B000/XXXX")
    )));
    let mut blocks = vec![
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": "<https://x.example|link> & more"}]}),
    ];
    for i in 0..59 {
        blocks.push(
            json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("finding {i}")}}),
        );
    }
    assert_eq!(
        p.post("/", &event("alpine:3.18 <critical> & more", json!(blocks)))
            .0,
        200
    );
    let got = sink.wait_for("/services/T000/B000/XXXX", 2);
    p.wait_deliveries(1);
    assert_eq!(got.len(), 2, "60 blocks + title → two messages");
    let first = json_body(&got[0]);
    let second = json_body(&got[1]);
    for r in &got {
        assert_eq!(r.method, "POST");
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    let b1 = first["blocks"].as_array().unwrap();
    let b2 = second["blocks"].as_array().unwrap();
    assert_eq!(b1.len(), 50);
    assert_eq!(b2.len(), 11);
    assert_eq!(
        b1[0],
        json!({"type": "section", "text": {"type": "mrkdwn", "text": "*alpine:3.18 &lt;critical&gt; &amp; more*"}})
    );
    // The template's blocks arrive whole and in order; links survive.
    assert_eq!(
        b1[1]["elements"][0]["text"],
        "<https://x.example|link> & more"
    );
    assert_eq!(b1[2]["text"]["text"], "finding 0");
    assert_eq!(b2[10]["text"]["text"], "finding 58");
    assert_eq!(first["text"], "alpine:3.18 <critical> & more");
}

#[test]
fn slack_retries_429_after_retry_after_and_dead_letters_404_and_html() {
    let sink = Sink::start();
    sink.respond_with(429, "rate_limited", &[("Retry-After", "1")]);
    sink.respond(200, "ok");
    sink.respond(404, "no_service");
    let p = Postee::start(&config(&format!(
        "  - name: slack\n    type: slack\n    enable: true\n    url: {}\n    {FAST_RETRY}\n",
        sink.url("/hook")
    )));
    let blocks = json!([{"type": "section", "text": {"type": "mrkdwn", "text": "x"}}]);
    assert_eq!(p.post("/", &event("one", blocks.clone())).0, 200);
    let got = sink.wait_for("/hook", 2);
    assert_eq!(got[0].status, 429);
    assert_eq!(got[1].status, 200);
    assert!(
        got[1].at - got[0].at >= Duration::from_millis(950),
        "Retry-After: 1 was honoured"
    );
    assert_eq!(got[0].body, got[1].body, "the retry sends the same message");
    p.wait_deliveries(2);

    assert_eq!(p.post("/", &event("two", blocks)).0, 200);
    assert_eq!(
        p.post("/", &event("three", json!("<h1>an HTML template</h1>")))
            .0,
        200
    );
    let dead = dead_letters(&p, 2);
    let errors: Vec<&str> = dead.iter().map(|d| d["error"].as_str().unwrap()).collect();
    assert!(
        errors.iter().any(|e| e.contains("no_service")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("wrong template selected, choose a correct template")),
        "{errors:?}"
    );
    for d in &dead {
        assert_eq!(d["delivery"]["attempts"], 1, "permanent: no retry");
    }
    assert_eq!(sink.received_at("/hook").len(), 3, "HTML is never sent");
    assert!(
        !p.stderr().contains("/hook"),
        "the webhook URL is a secret and never logged"
    );
}

// ---------------------------------------------------------------------------------------
// Teams

#[test]
fn teams_sends_a_message_card_and_a_workflows_adaptive_card() {
    let card = Sink::start();
    card.respond(500, "busy");
    card.respond(200, "1");
    let flow = Sink::start();
    flow.respond(202, "");
    let p = Postee::start(&config(&format!(
        "  - name: teams\n    type: teams\n    enable: true\n    url: {}\n    {FAST_RETRY}\n\
         \x20 - name: teams-flow\n    type: teams\n    enable: true\n    teams-format: workflows\n    url: {}\n",
        card.url("/webhookb2/abc"),
        flow.url("/workflows/xyz")
    )));
    let html = "<p>Image &amp; <b>tag</b></p><table><tr><td>CVE-1</td><td>high</td></tr></table>";
    assert_eq!(p.post("/", &event("Scan <alpine>", json!(html))).0, 200);
    let got = card.wait_for("/webhookb2/abc", 2);
    let body = json_body(&got[1]);
    assert_eq!(
        body,
        json!({"text": format!("<h2>Scan &lt;alpine&gt;</h2>\n{html}")})
    );
    assert_eq!(got[0].body, got[1].body);
    let got = flow.wait_for("/workflows/xyz", 1);
    let body = json_body(&got[0]);
    assert_eq!(body["type"], "message");
    let att = &body["attachments"][0];
    assert_eq!(
        att["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(att["content"]["type"], "AdaptiveCard");
    assert_eq!(att["content"]["version"], "1.4");
    assert_eq!(att["content"]["body"][0]["text"], "Scan <alpine>");
    assert_eq!(
        att["content"]["body"][1]["text"],
        "Image & tag\n\nCVE-1 | high"
    );
    p.wait_deliveries(3);
    assert!(p.api_get("/dlq").1.as_array().unwrap().is_empty());
}

#[test]
fn teams_long_descriptions_become_postee_short_messages_and_body_errors_fail() {
    let sink = Sink::start();
    sink.respond(200, "1");
    sink.respond(200, "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 400");
    let p = Postee::start(&format!(
        "aqua-server: https://aqua.example\n{}",
        config(&format!(
            "  - name: teams\n    type: teams\n    enable: true\n    url: {}\n    {FAST_RETRY}\n",
            sink.url("/t")
        ))
    ));
    assert_eq!(p.post("/", &event("big", json!("x".repeat(20_000)))).0, 200);
    let got = sink.wait_for("/t", 1);
    let text = json_body(&got[0])["text"].as_str().unwrap().to_string();
    assert!(text.starts_with("<h2>big</h2>\n"), "{text}");
    assert!(
        text.contains("Unable to create link to entire scan results"),
        "no url from the template: {text}"
    );
    assert!(text.len() < 1000);
    assert_eq!(p.post("/", &event("small", json!("<p>x</p>"))).0, 200);
    let dead = dead_letters(&p, 1);
    assert!(
        dead[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("Teams Body Error"),
        "{dead:?}"
    );
}

// ---------------------------------------------------------------------------------------
// OpsGenie

#[test]
fn opsgenie_creates_an_alert_with_a_stable_alias_and_retries_a_503() {
    let sink = Sink::start();
    sink.respond(503, "{\"message\":\"unavailable\"}");
    sink.respond(
        202,
        r#"{"result":"Request will be processed","took":0.1,"requestId":"r1"}"#,
    );
    sink.respond(422, r#"{"message":"Request body is not processable"}"#);
    let p = Postee::start(&config(&format!(
        "  - name: genie\n    type: opsgenie\n    enable: true\n    token: 'literal-api-key'\n    api-url: {}\n    user: postee-bot\n    assignee: [alice@example.com]\n    recipients: [bob@example.com]\n    tags: [postee]\n    priority: p2\n    {FAST_RETRY}\n",
        sink.url("/eu")
    )));
    let desc = json!({"description": "3 critical", "tags": ["trivy", "alpine"], "priority": "P1", "entity": "alpine:3.18"});
    assert_eq!(p.post("/", &event("alpine:3.18 scan", desc)).0, 200);
    let got = sink.wait_for("/eu/v2/alerts", 2);
    for r in &got {
        assert_eq!(r.method, "POST");
        assert_eq!(r.header("authorization"), Some("GenieKey literal-api-key"));
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    let a = json_body(&got[0]);
    let b = json_body(&got[1]);
    assert_eq!(a, b, "the retry is the same request, same alias");
    assert_eq!(a["message"], "alpine:3.18 scan");
    assert_eq!(a["description"], "3 critical");
    assert_eq!(a["priority"], "P1");
    assert_eq!(a["entity"], "alpine:3.18");
    assert_eq!(a["user"], "postee-bot");
    assert_eq!(a["tags"], json!(["postee", "trivy", "alpine"]));
    assert_eq!(
        a["responders"],
        json!([{"type": "user", "username": "alice@example.com"}])
    );
    assert_eq!(
        a["visibleTo"],
        json!([{"type": "user", "username": "bob@example.com"}])
    );
    let alias = a["alias"].as_str().unwrap();
    assert!(alias.ends_with(":r:genie"), "{alias}");
    p.wait_deliveries(2);

    // A plain-text description is the alert's text; config priority applies; 422 is final.
    assert_eq!(p.post("/", &event("second", json!("just text"))).0, 200);
    let dead = dead_letters(&p, 1);
    assert!(dead[0]["error"].as_str().unwrap().contains("422"));
    let third = json_body(&sink.received_at("/eu/v2/alerts")[2]);
    assert_eq!(third["description"], "just text");
    assert_eq!(third["priority"], "P2");
    assert_ne!(third["alias"], a["alias"]);
    assert!(!p.stderr().contains("literal-api-key"));
}

// ---------------------------------------------------------------------------------------
// PagerDuty

#[test]
fn pagerduty_triggers_with_a_dedup_key_kept_across_retries() {
    let sink = Sink::start();
    sink.respond_with(429, "", &[("Retry-After", "0")]);
    sink.respond(
        202,
        r#"{"status":"success","message":"Event processed","dedup_key":"x"}"#,
    );
    sink.respond(
        400,
        r#"{"status":"invalid event","message":"Event object is invalid"}"#,
    );
    let p = Postee::start(&config(&format!(
        "  - name: pd\n    type: pagerduty\n    enable: true\n    pagerduty-routing-key: R0UT1NGKEY\n    pagerduty-auth-token: unused\n    api-url: {}\n    {FAST_RETRY}\n",
        sink.url("")
    )));
    assert_eq!(
        p.post("/", &event("my fancy title", json!("foo bar baz details")))
            .0,
        200
    );
    let got = sink.wait_for("/v2/enqueue", 2);
    let a = json_body(&got[0]);
    let b = json_body(&got[1]);
    assert_eq!(a["dedup_key"], b["dedup_key"]);
    assert_eq!(a["routing_key"], "R0UT1NGKEY");
    assert_eq!(a["event_action"], "trigger");
    assert!(a["dedup_key"].as_str().unwrap().ends_with(":r:pd"));
    let payload = &a["payload"];
    assert_eq!(payload["summary"], "my fancy title");
    assert_eq!(payload["source"], "postee");
    assert_eq!(payload["severity"], "critical");
    assert_eq!(payload["custom_details"], "foo bar baz details");
    let ts = payload["timestamp"].as_str().unwrap();
    assert!(
        ts.len() == 20 && ts.ends_with('Z') && &ts[10..11] == "T",
        "{ts}"
    );
    let mut keys: Vec<&String> = a.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["dedup_key", "event_action", "payload", "routing_key"]
    );
    p.wait_deliveries(2);
    assert_eq!(p.post("/", &event("bad", json!("x"))).0, 200);
    let dead = dead_letters(&p, 1);
    assert!(
        dead[0]["error"]
            .as_str()
            .unwrap()
            .contains("Event object is invalid")
    );
    assert_eq!(dead[0]["delivery"]["attempts"], 1);
    assert!(!p.stderr().contains("R0UT1NGKEY"));
}

// ---------------------------------------------------------------------------------------
// Splunk

#[test]
fn splunk_sends_the_whole_event_to_hec_and_trims_big_scans() {
    let sink = Sink::start();
    sink.respond(503, r#"{"text":"Server is busy","code":9}"#);
    sink.respond(200, r#"{"text":"Success","code":0}"#);
    sink.respond(200, r#"{"text":"Success","code":0}"#);
    sink.respond(403, r#"{"text":"Invalid token","code":4}"#);
    let p = Postee::start(&config(&format!(
        "  - name: splunk\n    type: splunk\n    enable: true\n    url: {}\n    token: 00000000-hec-token\n    size-limit: 10000\n    {FAST_RETRY}\n",
        sink.url("/hec")
    )));
    let scan = json!({"image": "alpine:3.18", "registry": "docker.io", "SchemaVersion": 2, "Results": [{"Target": "x"}]});
    assert_eq!(p.post("/", &event("t", scan.clone())).0, 200);
    let got = sink.wait_for("/hec/services/collector", 2);
    for r in &got {
        assert_eq!(r.header("authorization"), Some("Splunk 00000000-hec-token"));
    }
    assert!(
        got[1]
            .body_str()
            .starts_with(r#"{"sourcetype": "_json", "event": {"#)
    );
    let body = json_body(&got[1]);
    assert_eq!(body["event"], scan, "every field is kept");
    p.wait_deliveries(2);

    let big = "r".repeat(12_000);
    let trimmed = json!({"image": "big:1", "resources": big, "malware": "m"});
    assert_eq!(p.post("/", &event("t", trimmed)).0, 200);
    let got = sink.wait_for("/hec/services/collector", 3);
    assert_eq!(
        json_body(&got[2])["event"],
        json!({"image": "big:1", "malware": "m"})
    );
    assert_eq!(p.post("/", &event("t", json!({"a": 1}))).0, 200);
    let dead = dead_letters(&p, 1);
    assert!(dead[0]["error"].as_str().unwrap().contains("Invalid token"));
    assert!(!p.stderr().contains("00000000-hec-token"));
}

// ---------------------------------------------------------------------------------------
// Load-time validation

#[test]
fn missing_or_invalid_keys_of_messaging_actions_are_load_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg.yaml");
    std::fs::write(
        &cfg,
        config(
            "  - name: s\n    type: slack\n    enable: true\n\
             \x20 - name: t\n    type: teams\n    enable: true\n    url: https://x.example\n    teams-format: adaptive\n\
             \x20 - name: e\n    type: email\n    enable: true\n    host: 127.0.0.1\n    sender: not an address\n\
             \x20 - name: o\n    type: opsgenie\n    enable: true\n    priority: P9\n\
             \x20 - name: pd\n    type: pagerduty\n    enable: true\n    pagerduty-auth-token: x\n\
             \x20 - name: sp\n    type: splunk\n    enable: true\n    url: https://splunk.example:8088\n    tls-verify: true\n\
             \x20 - name: sp2\n    type: splunk\n    enable: true\n    url: https://splunk.example:8088\n    token: t\n    tls-verify: false\n    insecure-skip-verify: true\n",
        ),
    )
    .unwrap();
    let out = run(&["check", "--cfgfile", cfg.to_str().unwrap()], &[]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    for expected in [
        "actions[s].url: missing",
        "actions[t].teams-format: unknown format \"adaptive\"",
        "actions[e].sender: \"not an address\" is not an email address",
        "actions[e].recipients: missing",
        "actions[o].token: missing",
        "actions[o].priority: invalid priority \"P9\"",
        "actions[pd].pagerduty-routing-key: missing",
        "actions[sp].token: missing",
        "actions[sp].tls-verify: for splunk, `tls-verify: true` turns certificate verification OFF",
        "actions[sp2].tls-verify: contradicts insecure-skip-verify",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

// ---------------------------------------------------------------------------------------
// Email, against a real SMTP server

/// An aiosmtpd server on a loopback port, stopped when dropped (its stdin closes).
struct Smtp {
    port: u16,
    out: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Smtp {
    fn start(mode: &str, tls: Option<&TestPki>, auth: Option<&str>) -> Smtp {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("received.jsonl");
        let port = free_port();
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(repo("tests/fixtures/smtp/server.py"))
            .args(["--port", &port.to_string(), "--mode", mode])
            .arg("--out")
            .arg(&out)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(pki) = tls {
            cmd.arg("--cert")
                .arg(&pki.server_cert)
                .arg("--key")
                .arg(&pki.server_key);
        }
        if let Some(a) = auth {
            cmd.args(["--auth", a]);
        }
        let mut child = cmd
            .spawn()
            .expect("the email tests need /usr/bin/python3 with aiosmtpd (Debian python3-aiosmtpd; scripts/test installs it)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "READY", "the SMTP server did not start");
        Smtp {
            port,
            out,
            child,
            _dir: dir,
        }
    }

    fn messages(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn wait_for(&self, n: usize, p: Option<&Postee>) -> Vec<Value> {
        wait_until(
            Duration::from_secs(30),
            || self.messages().len() >= n,
            || {
                format!(
                    "SMTP server waiting for {n} messages; postee log:\n{}",
                    p.map(Postee::stderr).unwrap_or_default()
                )
            },
        );
        self.messages()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test CA and a server certificate for 127.0.0.1 and localhost, as files.
struct TestPki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

fn pki() -> TestPki {
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "postee test CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    let write = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    TestPki {
        ca: write("ca.pem", ca.pem()),
        server_cert: write("server.pem", cert.pem()),
        server_key: write("server.key", key.serialize_pem()),
        _dir: dir,
    }
}

fn email_action(smtp: &Smtp, extra: &str) -> String {
    format!(
        "  - name: mail\n    type: email\n    enable: true\n    host: 127.0.0.1\n    port: {}\n    sender: postee@example.com\n    client-host-name: postee.test\n    {FAST_RETRY}\n{extra}",
        smtp.port
    )
}

/// A header's value in a raw message (first occurrence, unfolded).
fn header(data: &str, name: &str) -> Option<String> {
    let head = data
        .split("\n\n")
        .next()
        .unwrap_or(data)
        .replace("\r\n", "\n");
    let mut value: Option<String> = None;
    for line in head.lines() {
        if let Some(v) = value.as_mut() {
            if line.starts_with([' ', '\t']) {
                v.push(' ');
                v.push_str(line.trim());
                continue;
            }
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case(name)
        {
            value = Some(v.trim().to_string());
        }
    }
    value
}

#[test]
fn email_goes_to_every_recipient_and_the_events_owners_in_plain_smtp() {
    let smtp = Smtp::start("plain", None, None);
    let p = Postee::start(&config(&email_action(
        &smtp,
        "    recipients: [sec@example.com, <%application_scope_owner%>]\n",
    )));
    let ev = json!({"title": "Scan: alpine", "result": "<h1>3 critical</h1>", "application_scope_owners": ["o1@example.org", "o2@example.org"]});
    assert_eq!(p.post("/", &serde_json::to_vec(&ev).unwrap()).0, 200);
    // Without owners the placeholder is dropped.
    assert_eq!(p.post("/", &event("no owners", json!("<p>x</p>"))).0, 200);
    let msgs = smtp.wait_for(2, Some(&p));
    p.wait_deliveries(2);
    let m = msgs
        .iter()
        .find(|m| m["data"].as_str().unwrap().contains("Scan: alpine"))
        .unwrap();
    assert_eq!(m["mail_from"], "postee@example.com");
    assert_eq!(
        m["rcpt_tos"],
        json!(["sec@example.com", "o1@example.org", "o2@example.org"])
    );
    assert_eq!(m["tls"], false);
    assert_eq!(m["auth"], Value::Null);
    let data = m["data"].as_str().unwrap();
    assert_eq!(header(data, "Subject").as_deref(), Some("Scan: alpine"));
    assert_eq!(header(data, "From").as_deref(), Some("postee@example.com"));
    assert_eq!(
        header(data, "To").as_deref(),
        Some("sec@example.com, o1@example.org, o2@example.org")
    );
    assert_eq!(
        header(data, "Content-Type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    assert!(header(data, "Date").is_some() && header(data, "Message-ID").is_some());
    assert!(data.contains("<h1>3 critical</h1>"), "{data}");
    let other = msgs
        .iter()
        .find(|m| m["data"].as_str().unwrap().contains("no owners"))
        .unwrap();
    assert_eq!(other["rcpt_tos"], json!(["sec@example.com"]));
}

#[test]
fn email_uses_starttls_with_a_custom_ca_and_auth() {
    let pki = pki();
    let smtp = Smtp::start("starttls", Some(&pki), Some("postee:s3cret-pass"));
    let p = Postee::start(&config(&email_action(
        &smtp,
        &format!(
            "    smtp-tls: starttls\n    ca-file: {}\n    user: postee\n    password: s3cret-pass\n    recipients: [a@example.com, b@example.com]\n",
            pki.ca.display()
        ),
    )));
    assert_eq!(p.post("/", &event("tls", json!("<p>secure</p>"))).0, 200);
    let msgs = smtp.wait_for(1, Some(&p));
    assert_eq!(msgs[0]["tls"], true);
    assert_eq!(msgs[0]["auth"], "postee");
    assert_eq!(
        msgs[0]["rcpt_tos"],
        json!(["a@example.com", "b@example.com"])
    );
    p.wait_deliveries(1);
    assert!(!p.stderr().contains("s3cret-pass"));
}

#[test]
fn email_implicit_tls_works_and_a_refused_login_is_a_dead_letter() {
    let pki = pki();
    let smtp = Smtp::start("implicit", Some(&pki), Some("postee:right"));
    let good = email_action(
        &smtp,
        &format!(
            "    smtp-tls: implicit\n    ca-file: {}\n    user: postee\n    password: right\n    recipients: [a@example.com]\n",
            pki.ca.display()
        ),
    );
    let bad = good
        .replace("name: mail", "name: mail-bad")
        .replace("password: right", "password: wrong");
    let p = Postee::start(&config(&format!("{good}{bad}")));
    assert_eq!(p.post("/", &event("smtps", json!("<p>x</p>"))).0, 200);
    let msgs = smtp.wait_for(1, Some(&p));
    assert_eq!(msgs[0]["tls"], true);
    assert_eq!(msgs[0]["auth"], "postee");
    let dead = dead_letters(&p, 1);
    assert_eq!(dead[0]["delivery"]["action"], "mail-bad");
    assert!(
        dead[0]["error"].as_str().unwrap().contains("535"),
        "{dead:?}"
    );
    assert_eq!(dead[0]["delivery"]["attempts"], 1);
    assert_eq!(smtp.messages().len(), 1);
}

#[test]
fn email_without_the_ca_fails_verification_and_is_retried() {
    let pki = pki();
    let smtp = Smtp::start("starttls", Some(&pki), None);
    let p = Postee::start(&config(&email_action(
        &smtp,
        "    smtp-tls: starttls\n    recipients: [a@example.com]\n    retry: {max-attempts: 2, initial-delay: 20ms, max-delay: 50ms}\n",
    ).replace(&format!("    {FAST_RETRY}\n"), "")));
    assert_eq!(p.post("/", &event("x", json!("<p>x</p>"))).0, 200);
    let dead = dead_letters(&p, 1);
    assert_eq!(
        dead[0]["delivery"]["attempts"], 2,
        "TLS failures are transient"
    );
    assert!(smtp.messages().is_empty());
}

/// MX answers for the in-process test: every domain's MX is 127.0.0.1; `flaky.test` fails
/// its first lookup.
struct FakeMx {
    lookups: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl postee::actions::email::MxResolver for FakeMx {
    async fn mx(&self, domain: &str) -> Result<Vec<(u16, String)>, (String, bool)> {
        let mut l = self.lookups.lock().unwrap();
        l.push(domain.to_string());
        if domain == "flaky.test" && l.iter().filter(|d| *d == "flaky.test").count() == 1 {
            return Err(("SERVFAIL".into(), true));
        }
        Ok(vec![(10, "127.0.0.1".to_string())])
    }
}

#[test]
fn email_use_mx_sends_each_domain_its_recipients_and_a_retry_skips_delivered_domains() {
    use postee::actions::{Action, Message};
    postee::install_crypto_provider();
    let smtp = Smtp::start("plain", None, None);
    let yaml = format!(
        "actions:\n  - name: mx\n    type: email\n    enable: true\n    use-mx: true\n    port: {}\n    sender: postee@example.com\n    recipients: [a@one.test, b@two.test, c@one.test, d@flaky.test]\n",
        smtp.port
    );
    let mut problems = postee::config::Problems::default();
    let cfg = postee::actions::parse_config(&yaml, &mut problems).unwrap();
    let resolver = Arc::new(FakeMx {
        lookups: Mutex::new(Vec::new()),
    });
    let valid = postee::actions::email::validate(&cfg.actions[0].fields);
    assert!(valid.warnings.is_empty(), "{:?}", valid.warnings);
    let email = postee::actions::email::Email::new("mx", valid.config.unwrap())
        .unwrap()
        .with_resolver(resolver.clone());
    let msg = Message {
        event_id: "ev1".into(),
        route: "r".into(),
        content: postee::message::Rendered {
            title: "mx".into(),
            description: "<p>direct</p>".into(),
            ..Default::default()
        },
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let first = rt.block_on(email.send(&msg)).unwrap_err();
    assert!(first.is_transient(), "{first}");
    assert!(first.to_string().contains("flaky.test"), "{first}");
    rt.block_on(email.send(&msg)).unwrap();
    let msgs = smtp.wait_for(3, None);
    assert_eq!(msgs.len(), 3, "one.test and two.test are not sent twice");
    let mut envelopes: Vec<Value> = msgs.iter().map(|m| m["rcpt_tos"].clone()).collect();
    envelopes.sort_by_key(|v| v.to_string());
    assert_eq!(
        envelopes,
        vec![
            json!(["a@one.test", "c@one.test"]),
            json!(["b@two.test"]),
            json!(["d@flaky.test"]),
        ]
    );
    assert_eq!(
        resolver.lookups.lock().unwrap().as_slice(),
        ["flaky.test", "one.test", "two.test", "flaky.test"]
    );
}

#[test]
fn render_previews_every_request_without_its_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg.yaml");
    std::fs::write(
        &cfg,
        config(
            "  - name: s\n    type: slack\n    enable: true\n    url: https://hooks.example/secret-slack-1\n\
             \x20 - name: t\n    type: teams\n    enable: true\n    url: https://hooks.example/secret-teams-2\n\
             \x20 - name: o\n    type: opsgenie\n    enable: true\n    token: secret-genie-3\n\
             \x20 - name: pd\n    type: pagerduty\n    enable: true\n    pagerduty-routing-key: secret-routing-4\n\
             \x20 - name: sp\n    type: splunk\n    enable: true\n    url: https://splunk.example:8088\n    token: secret-hec-5\n\
             \x20 - name: e\n    type: email\n    enable: true\n    host: smtp.example\n    user: u@example.com\n    password: secret-smtp-6\n    recipients: [a@example.com]\n",
        ),
    )
    .unwrap();
    let input = dir.path().join("event.json");
    std::fs::write(&input, event("Title", json!([{"type": "divider"}]))).unwrap();
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
    for secret in [
        "secret-slack-1",
        "secret-teams-2",
        "secret-genie-3",
        "secret-routing-4",
        "secret-hec-5",
        "secret-smtp-6",
    ] {
        assert!(!text.contains(secret), "{secret} shown:\n{text}");
    }
    for shown in [
        "GenieKey <hidden>",
        "Splunk <hidden>",
        "https://splunk.example:8088/services/collector",
        "https://events.pagerduty.com/v2/enqueue",
        "https://api.opsgenie.com/v2/alerts",
        "*Title*",
    ] {
        assert!(text.contains(shown), "{shown} missing:\n{text}");
    }
}
