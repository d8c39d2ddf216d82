//! End-to-end: the real binary on loopback, real-shaped events, a local HTTP sink and exec
//! scripts, asserting exactly what arrived.

use std::time::Duration;

use crate::common::*;

/// Routes every fixture kind to a different action type.
fn routing_config(sink: &Sink, dir: &std::path::Path) -> String {
    format!(
        r#"
aqua-server: https://aqua.example.com
routes:
  - name: trivy-reports
    input: input.ArtifactType == "container_image"
    template: raw-json
    actions: [hook]
  - name: tracee-defense-evasion
    input-files: ["Defense Evasion"]
    template: raw-json
    actions: [script]
  - name: operator-reports
    input: |
      input.kind == "VulnerabilityReport"
      input.report.summary.criticalCount > 0
    template: raw-json
    actions: [api]
  - name: aqua-critical
    input: input.vulnerability_summary.critical > 0
    template: scan-summary
    actions: [hook-aqua]
templates:
  - name: raw-json
    rego-package: postee.rawmessage.json
  - name: scan-summary
    body: |
      package custom.summary
      import data.postee.with_default
      title = sprintf("%s has %d critical", [input.image, input.vulnerability_summary.critical])
      result = {{"image": input.image, "registry": with_default(input, "registry", "none"), "link": input.postee.AquaServer}}
      url = concat("", [input.postee.AquaServer, input.image])
actions:
  - name: hook
    type: webhook
    enable: true
    url: {hook}
  - name: hook-aqua
    type: webhook
    enable: true
    url: {hook_aqua}
  - name: api
    type: http
    enable: true
    method: put
    url: {api}
    headers:
      X-Team: ["sec", "ops"]
    body-content: |
      repo=event.input.report.artifact.repository&tag=event.input.report.artifact.tag
      namespace: event.input.metadata.namespace
  - name: script
    type: exec
    enable: true
    env: ["OUT={out}"]
    exec-script: |
      printf '%s' "$POSTEE_EVENT" > "$OUT"
"#,
        hook = sink.url("/hook"),
        hook_aqua = sink.url("/aqua"),
        api = sink.url("/api"),
        out = dir.join("exec-out.json").display(),
    )
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn real_events_are_routed_rendered_and_delivered_to_each_action_type() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = routing_config(&sink, dir.path());
    let p = Postee::start_in(dir, &cfg, PosteeOptions::default());

    for f in [
        "events/trivy-report.json",
        "events/tracee-finding.json",
        "events/trivy-operator-vulnreport.json",
        "events/aqua-scan.json",
        "events/plain.json",
    ] {
        let (status, body) = p.post_fixture("/", f);
        assert_eq!(status, 200, "{f}: {body}");
        assert!(
            json(&body)["id"].as_str().is_some_and(|id| !id.is_empty()),
            "{body}"
        );
    }

    // Trivy report → webhook, raw JSON with the injected postee key.
    let hook = sink.wait_for("/hook", 1);
    let trivy: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("events/trivy-report.json")).unwrap())
            .unwrap();
    let got = json(&hook[0].body_str());
    assert_eq!(got["ArtifactName"], trivy["ArtifactName"]);
    assert_eq!(got["Results"], trivy["Results"]);
    assert_eq!(
        got["postee"]["AquaServer"],
        "https://aqua.example.com/#/images/"
    );
    assert_eq!(hook[0].method, "POST");
    assert_eq!(hook[0].header("content-type"), Some("application/json"));
    assert!(
        hook[0]
            .header("idempotency-key")
            .unwrap()
            .ends_with(":trivy-reports:hook")
    );
    // The body is Postee's one-space indented JSON.
    assert!(
        hook[0]
            .body_str()
            .starts_with("{\n \"ArtifactName\": \"alpine:3.10\""),
        "{}",
        hook[0].body_str()
    );

    // trivy-operator report → http action with placeholders.
    let api = sink.wait_for("/api", 1);
    assert_eq!(api[0].method, "PUT");
    assert_eq!(
        api[0].body_str(),
        "repo=library/nginx&tag=1.16\nnamespace: default\n"
    );
    assert_eq!(api[0].headers["x-team"], vec!["sec", "ops"]);
    let event_header = api[0].header("postee-event").unwrap();
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(event_header)
        .unwrap();
    assert_eq!(
        json(&String::from_utf8(decoded).unwrap())["kind"],
        "VulnerabilityReport"
    );

    // Aqua scan → inline template → webhook.
    let aqua = sink.wait_for("/aqua", 1);
    assert_eq!(
        aqua[0].body_str(),
        r#"{"image":"all-in-one:3.5.19223","link":"https://aqua.example.com/#/images/","registry":"Aqua"}"#
    );

    // Tracee TRC-2 → bundled "Defense Evasion" filter → exec script.
    let out = p.path("exec-out.json");
    wait_until(Duration::from_secs(20), || out.exists(), || p.stderr());
    p.wait_deliveries(4);
    let written = json(&std::fs::read_to_string(&out).unwrap());
    assert_eq!(written["SigMetadata"]["ID"], "TRC-2");

    // Nothing else was sent: plain.json matched no route, each route fired once.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.received().len(), 3, "{:?}", sink.received());
    let log = p.stderr();
    assert_eq!(log.matches("outcome=\"delivered\"").count(), 4, "{log}");
    for route in [
        "trivy-reports",
        "tracee-defense-evasion",
        "operator-reports",
        "aqua-critical",
    ] {
        assert!(
            log.contains(&format!("route={route}")),
            "no delivery line for {route}:\n{log}"
        );
    }
}

#[test]
fn tenant_endpoint_sends_to_the_named_route_only() {
    let sink = Sink::start();
    let cfg = format!(
        r#"
routes:
  - name: a
    template: raw
    actions: [to-a]
  - name: b
    template: raw
    actions: [to-b]
templates:
  - name: raw
    rego-package: postee.rawmessage.json
actions:
  - {{name: to-a, type: webhook, enable: true, url: "{}"}}
  - {{name: to-b, type: webhook, enable: true, url: "{}"}}
"#,
        sink.url("/a"),
        sink.url("/b")
    );
    let p = Postee::start(&cfg);
    let (status, _) = p.post("/tenant/b", br#"{"x":1}"#);
    assert_eq!(status, 200);
    sink.wait_for("/b", 1);
    let (status, body) = p.post("/tenant/nope", br#"{"x":1}"#);
    assert_eq!(status, 404);
    assert!(json(&body)["error"].as_str().unwrap().contains("nope"));
    // `/scan` goes to every route.
    assert_eq!(p.post("/scan", br#"{"y":2}"#).0, 200);
    sink.wait_for("/a", 1);
    sink.wait_for("/b", 2);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.received_at("/a").len(), 1);
    assert_eq!(sink.received_at("/b").len(), 2);
    // Postee's /events form lists bodies posted to / and /scan (not /tenant), oldest first.
    assert_eq!(
        get(&p.url("/events?format=postee")).0,
        401,
        "the API key is required"
    );
    let (status, events) = p.api_get("/events?format=postee");
    assert_eq!(status, 200);
    assert_eq!(events, serde_json::json!([{"y": 2}]));
}

/// An answer with a body is read to its end, so its connection goes back to the pool: one
/// connection for a series of deliveries, not one each (and a TLS handshake each).
#[test]
fn deliveries_reuse_connections_when_the_target_answers_with_a_body() {
    let sink = Sink::start();
    let cfg = format!(
        r#"
routes:
  - {{name: all, input: 'input.x >= 0', template: raw, actions: [hook, generic]}}
templates:
  - {{name: raw, rego-package: postee.rawmessage.json}}
actions:
  - {{name: hook, type: webhook, enable: true, url: "{}"}}
  - {{name: generic, type: http, enable: true, url: "{}", method: POST}}
"#,
        sink.url("/hook"),
        sink.url("/http")
    );
    // An answer larger than one read: a client that drops it unread closes the connection.
    sink.set_default_reply(200, &"ok ".repeat(10_000));
    let p = Postee::start(&cfg);
    for i in 0..8 {
        assert_eq!(p.post("/", format!(r#"{{"x":{i}}}"#).as_bytes()).0, 200);
        sink.wait_for("/hook", i + 1);
        sink.wait_for("/http", i + 1);
    }
    for path in ["/hook", "/http"] {
        let got = sink.received_at(path);
        assert!(got.iter().all(|r| r.status == 200), "{got:?}");
        let peers: std::collections::BTreeSet<_> = got.iter().map(|r| r.peer).collect();
        assert!(
            peers.len() <= 2,
            "{path}: 8 deliveries one after another used {} connections: {peers:?}",
            peers.len()
        );
    }
}

#[test]
fn bad_requests_get_clear_errors_and_never_stop_the_service() {
    let cfg = "routes: []\n";
    let p = Postee::start_with(
        cfg,
        PosteeOptions {
            args: vec!["--max-body-bytes".into(), "2000".into()],
            ..Default::default()
        },
    );
    let (s, b) = get(&p.url("/ping"));
    assert_eq!((s, b.as_str()), (200, "\"Postee alive!\""));
    assert_eq!(get(&p.url("/healthz")).0, 200);

    let cases: &[(&[u8], u16, &str)] = &[
        (b"not json", 400, "not valid JSON"),
        (b"[1,2]", 400, "must be a JSON object"),
        (b"\"text\"", 400, "must be a JSON object"),
        (b"", 400, "empty"),
        (&[0xff, 0xfe, 0x00], 400, "UTF-8"),
    ];
    for (body, want, msg) in cases {
        let (status, resp) = p.post("/", body);
        assert_eq!(status, *want, "{resp}");
        assert!(
            json(&resp)["error"].as_str().unwrap().contains(msg),
            "{resp}"
        );
    }
    let deep = "[".repeat(1500);
    assert_eq!(p.post("/", deep.as_bytes()).0, 400);
    let big = format!("{{\"a\":\"{}\"}}", "x".repeat(5000));
    let (status, resp) = p.post("/", big.as_bytes());
    assert_eq!(status, 413, "{resp}");
    assert!(json(&resp)["error"].as_str().unwrap().contains("2000"));
    assert_eq!(get(&p.url("/nope")).0, 404);
    // Still alive and serving.
    assert_eq!(p.post("/", b"{}").0, 200);
    assert_eq!(get(&p.url("/ping")).0, 200);
}

#[test]
fn serialize_actions_runs_in_list_order_and_otherwise_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("order.log");
    let cfg = format!(
        r#"
routes:
  - name: serial
    input: input.mode == "serial"
    serialize-actions: true
    template: raw
    actions: [slow, fast]
  - name: parallel
    input: input.mode == "parallel"
    template: raw
    actions: [slow, fast]
templates:
  - name: raw
    rego-package: postee.rawmessage.json
actions:
  - name: slow
    type: exec
    enable: true
    exec-script: "sleep 1; echo slow >> {log}"
  - name: fast
    type: exec
    enable: true
    exec-script: "echo fast >> {log}"
"#,
        log = log.display()
    );
    let p = Postee::start_in(dir, &cfg, PosteeOptions::default());
    assert_eq!(p.post("/", br#"{"mode":"serial"}"#).0, 200);
    p.wait_deliveries(2);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "slow\nfast\n");
    std::fs::remove_file(&log).unwrap();
    assert_eq!(p.post("/", br#"{"mode":"parallel"}"#).0, 200);
    p.wait_deliveries(4);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "fast\nslow\n");
}

#[test]
fn delivery_outcomes_are_logged_as_json_with_retries_and_dead_letters() {
    let sink = Sink::start();
    sink.respond(503, "busy");
    sink.respond(400, "bad request body");
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        r#"
routes:
  - name: r
    template: raw
    actions: [hook, broken-script]
templates:
  - name: raw
    rego-package: postee.rawmessage.json
actions:
  - {{name: hook, type: webhook, enable: true, url: "{}", retry: {{initial-delay: 20ms, max-delay: 50ms}}}}
  - {{name: broken-script, type: exec, enable: true, exec-script: "echo failure; exit 3"}}
"#,
        sink.url("/hook")
    );
    let p = Postee::start_in(
        dir,
        &cfg,
        PosteeOptions {
            args: vec!["--log-format".into(), "json".into()],
            ..Default::default()
        },
    );
    assert_eq!(p.post("/", b"{\"n\":1}").0, 200);
    p.wait_deliveries(3);
    let lines: Vec<serde_json::Value> = p
        .stderr()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v.get("outcome").is_some())
        .collect();
    assert_eq!(lines.len(), 3, "{}", p.stderr());
    let hook: Vec<&serde_json::Value> = lines.iter().filter(|l| l["action"] == "hook").collect();
    assert_eq!(hook[0]["outcome"], "retrying");
    assert_eq!(hook[0]["transient"], true);
    assert_eq!(hook[0]["attempt"], 1);
    assert!(hook[0]["error"].as_str().unwrap().contains("'503'"));
    assert_eq!(hook[1]["outcome"], "dead");
    assert_eq!(hook[1]["transient"], false);
    assert_eq!(hook[1]["attempt"], 2);
    assert!(
        hook[1]["error"]
            .as_str()
            .unwrap()
            .contains("bad request body")
    );
    for l in &lines {
        assert_eq!(l["route"], "r");
        assert!(l["event_id"].as_str().is_some_and(|s| s.len() > 10));
    }
    let script: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["action"] == "broken-script")
        .collect();
    assert_eq!(script.len(), 1);
    assert_eq!(script[0]["outcome"], "dead");
    assert!(
        script[0]["error"]
            .as_str()
            .unwrap()
            .contains("exit status 3, output: failure"),
        "{:?}",
        script[0]
    );
    // Both are dead letters, with their last error.
    let (status, dead) = p.api_get("/dlq");
    assert_eq!(status, 200);
    assert_eq!(dead.as_array().unwrap().len(), 2, "{dead}");
}

#[test]
fn sigterm_finishes_in_flight_deliveries_then_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("done");
    let cfg = format!(
        r#"
routes:
  - {{name: r, template: raw, actions: [slow]}}
templates:
  - {{name: raw, rego-package: postee.rawmessage.json}}
actions:
  - {{name: slow, type: exec, enable: true, exec-script: "sleep 1; echo done > {}"}}
"#,
        out.display()
    );
    let mut p = Postee::start_in(dir, &cfg, PosteeOptions::default());
    assert_eq!(p.post("/", b"{}").0, 200);
    std::thread::sleep(Duration::from_millis(200));
    let pid = p.child.as_ref().unwrap().id() as i32;
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    // While the delivery finishes, new events and health checks get 503 with Retry-After.
    wait_until(
        Duration::from_secs(5),
        || get(&p.url("/healthz")).0 == 503,
        || p.stderr(),
    );
    let (status, body) = p.post("/", b"{}");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("shutting down"), "{body}");
    let status = p.terminate();
    assert!(status.success(), "{status}: {}", p.stderr());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "done\n");
    let log = p.stderr();
    assert!(log.contains("shutting down"), "{log}");
    assert!(log.contains("outcome=\"delivered\""), "{log}");
}

#[test]
fn exec_scripts_are_killed_at_their_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = r#"
routes:
  - {name: r, template: raw, actions: [hang]}
templates:
  - {name: raw, rego-package: postee.rawmessage.json}
actions:
  - {name: hang, type: exec, enable: true, timeout: 300ms, exec-script: "sleep 30 & sleep 30"}
"#;
    let p = Postee::start_in(dir, cfg, PosteeOptions::default());
    assert_eq!(p.post("/", b"{}").0, 200);
    p.wait_deliveries(1);
    let log = p.stderr();
    assert!(log.contains("was killed"), "{log}");
    assert!(log.contains("transient=true"), "{log}");
}

#[test]
fn https_uses_a_generated_certificate_and_reuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let opts = || PosteeOptions {
        https: true,
        ..Default::default()
    };
    let mut p = Postee::start_in(dir, "routes: []\n", opts());
    let cert = std::fs::read(data.join("cert.pem")).unwrap();
    let key_mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(data.join("key.pem"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(key_mode, 0o600);
    assert_eq!(https_ping(p.https, &cert), 200);
    assert!(p.terminate().success());
    // Second start on the same data dir keeps the same certificate.
    let dir = std::mem::replace(&mut p.dir, tempfile::tempdir().unwrap());
    let p2 = Postee::start_in(dir, "routes: []\n", opts());
    assert_eq!(std::fs::read(data.join("cert.pem")).unwrap(), cert);
    assert_eq!(https_ping(p2.https, &cert), 200);
}

#[test]
fn https_certificate_files_can_be_chosen_by_environment() {
    let dir = tempfile::tempdir().unwrap();
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = dir.path().join("mine.pem");
    let key = dir.path().join("mine.key");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let p = Postee::start_in(
        dir,
        "routes: []\n",
        PosteeOptions {
            https: true,
            env: vec![
                ("AQUAALERT_CERT_PEM".into(), cert.display().to_string()),
                ("AQUAALERT_KEY_PEM".into(), key.display().to_string()),
            ],
            ..Default::default()
        },
    );
    assert_eq!(https_ping(p.https, ck.cert.pem().as_bytes()), 200);
    assert!(
        !p.path("data/cert.pem").exists(),
        "no certificate generated when files are given"
    );
}

/// GET /ping over HTTPS trusting only `cert_pem`.
fn https_ping(port: u16, cert_pem: &[u8]) -> u16 {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert_pem).unwrap()])
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            client
                .get(format!("https://localhost:{port}/ping"))
                .send()
                .await
                .unwrap_or_else(|e| panic!("https: {e:?}"))
                .status()
                .as_u16()
        })
}

#[test]
fn environment_overrides_follow_postee_precedence() {
    let dir = tempfile::tempdir().unwrap();
    let real_cfg = dir.path().join("real.yaml");
    std::fs::write(&real_cfg, "routes: []\n").unwrap();
    let (a, b) = (free_port(), free_port());
    let mut child = std::process::Command::new(BIN)
        .args([
            "--cfgfile",
            "/nonexistent/cfg.yaml",
            "--url",
            "127.0.0.1:1",
            "--tls",
            "off",
        ])
        .env("AQUAALERT_URL", format!("127.0.0.1:{a}"))
        .env("POSTEE_HTTP", format!("127.0.0.1:{b}"))
        .env("AQUAALERT_CFG", "/nonexistent/other.yaml")
        .env("POSTEE_CFG", &real_cfg)
        .env("POSTEE_DATA_DIR", dir.path().join("data"))
        .env_remove("PATH_TO_DB")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until(
        Duration::from_secs(20),
        || ureq_get(&format!("http://127.0.0.1:{b}/ping")).is_ok_and(|r| r.0 == 200),
        || "POSTEE_HTTP port did not answer".into(),
    );
    assert!(ureq_get(&format!("http://127.0.0.1:{a}/ping")).is_err());
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_bad_config_stops_the_start_with_every_problem_listed() {
    let out = run(
        &[
            "--cfgfile",
            fixture("configs/broken.yaml").to_str().unwrap(),
            "--tls",
            "off",
            "--url",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("routes[r1].actions: action `nope` is not defined"),
        "{err}"
    );
    assert!(err.contains("actions[w].url"), "{err}");
    assert!(err.contains("actions[h].method"), "{err}");
}

#[test]
fn templates_can_be_fetched_from_a_url_at_load() {
    let sink = Sink::start();
    sink.respond(
        200,
        "package fetched\ntitle = \"t\"\nresult = sprintf(\"got %v\", [input.n])\n",
    );
    let cfg = format!(
        r#"
routes:
  - {{name: r, template: remote, actions: [hook]}}
templates:
  - {{name: remote, url: "{}"}}
actions:
  - {{name: hook, type: webhook, enable: true, url: "{}"}}
"#,
        sink.url("/tpl/fetched.rego"),
        sink.url("/hook")
    );
    let p = Postee::start(&cfg);
    assert_eq!(p.post("/", br#"{"n":7}"#).0, 200);
    let got = sink.wait_for("/hook", 1);
    assert_eq!(got[0].body_str(), "got 7");
    assert_eq!(
        sink.received_at("/tpl/fetched.rego").len(),
        1,
        "fetched once, at load"
    );
}

#[test]
fn a_template_url_that_fails_is_a_load_error() {
    let sink = Sink::start();
    sink.respond(404, "not found");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg.yaml");
    std::fs::write(
        &cfg,
        format!(
            "routes:\n  - {{name: r, template: remote, actions: [out]}}\ntemplates:\n  - {{name: remote, url: \"{}\"}}\nactions:\n  - {{name: out, type: stdout, enable: true}}\n",
            sink.url("/missing.rego")
        ),
    )
    .unwrap();
    let out = run(
        &[
            "--cfgfile",
            cfg.to_str().unwrap(),
            "--tls",
            "off",
            "--url",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("templates[remote]"), "{err}");
    assert!(err.contains("response status is 404"), "{err}");
}

/// `POSTEE_JOURNAL_SYNCS` tunes the journal's flushes in flight; a bad value is named in a
/// warning and the default used, and a good one works end to end.
#[test]
fn journal_syncs_variable_is_checked_and_used() {
    let sink = Sink::start();
    let cfg = format!(
        "routes:\n- {{name: r, input: 'input.x >= 0', template: raw, actions: [hook]}}\ntemplates:\n- {{name: raw, rego-package: postee.rawmessage.json}}\nactions:\n- {{name: hook, type: webhook, enable: true, url: \"{}\"}}\n",
        sink.url("/hook")
    );
    for (value, warned) in [("lots", true), ("0", true), ("1", false)] {
        let p = Postee::start_with(
            &cfg,
            PosteeOptions {
                env: vec![("POSTEE_JOURNAL_SYNCS".into(), value.into())],
                ..PosteeOptions::default()
            },
        );
        let before = sink.received_at("/hook").len();
        for i in 0..5 {
            assert_eq!(p.post("/", format!(r#"{{"x":{i}}}"#).as_bytes()).0, 200);
        }
        sink.wait_for("/hook", before + 5);
        let log = p.stderr();
        assert_eq!(
            log.contains("POSTEE_JOURNAL_SYNCS must be a whole number from 1 to 16"),
            warned,
            "{value}: {log}"
        );
    }
}
