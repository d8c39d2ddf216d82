//! Secrets stay typed to the edge: known secret values (webhook URL keys, passwords, tokens,
//! routing keys, the API key), given literally, by `$VAR`, `env:` and `file:`, never show up in
//! anything the real binary prints or answers: `check` with a bad config and with malformed
//! secret URLs, the service's logs and API (`/events`, `/events/{id}`, `/dlq`, `/stats`) after
//! deliveries that fail (400, 500, unreachable ports) and end as dead letters, `render`
//! previews, and `dlq list`.

use std::time::Duration;

use crate::common::*;

const SLACK_KEY: &str = "slackkey7f3a9c";
const TEAMS_KEY: &str = "teamskey51c2eb";
const SMTP_PASSWORD: &str = "smtppassc81d0e";
const GENIE_TOKEN: &str = "geniekey4b6e1f";
const PD_ROUTING_KEY: &str = "pdrouting93aa2d";
const PD_AUTH_TOKEN: &str = "pdauth0d4f7a";
const HEC_TOKEN: &str = "hectoken2e8b5c";
const WEBHOOK_PASSWORD: &str = "hookpass6a1c3d";
const HTTP_TOKEN: &str = "httptoken9e7f2a";
const EXEC_TOKEN: &str = "exectoken3b8d4e";
const API_KEY: &str = "apikey8c5e1b7f";

const ALL: &[&str] = &[
    SLACK_KEY,
    TEAMS_KEY,
    SMTP_PASSWORD,
    GENIE_TOKEN,
    PD_ROUTING_KEY,
    PD_AUTH_TOKEN,
    HEC_TOKEN,
    WEBHOOK_PASSWORD,
    HTTP_TOKEN,
    EXEC_TOKEN,
    API_KEY,
];

/// The environment the secrets come from (`$VAR` and `env:VAR` forms).
fn secret_env() -> Vec<(String, String)> {
    vec![
        ("POSTEE_T_SMTP".into(), SMTP_PASSWORD.into()),
        ("POSTEE_T_HEC".into(), HEC_TOKEN.into()),
        ("POSTEE_T_PD".into(), PD_ROUTING_KEY.into()),
        ("POSTEE_T_API".into(), API_KEY.into()),
    ]
}

fn env_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn assert_no_secret(what: &str, text: &str) {
    for s in ALL {
        assert!(!text.contains(s), "{what} shows the secret {s}:\n{text}");
    }
}

fn output_text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A config with every secret-bearing action; `targets` fills in where each one sends.
struct Targets {
    /// Answers 400 to everything.
    bad_request: String,
    /// Answers 500 to everything.
    server_error: String,
    /// A port nothing listens on.
    unreachable: u16,
    /// File holding the OpsGenie token (`file:` form).
    genie_file: String,
}

fn config(t: &Targets) -> String {
    let retry = "retry: {max-attempts: 2, initial-delay: 20ms, max-delay: 50ms}";
    let hook_url =
        t.bad_request
            .replacen("http://", &format!("http://user:{WEBHOOK_PASSWORD}@"), 1);
    format!(
        r#"api-key: env:POSTEE_T_API
routes:
  - name: r
    template: raw
    actions: [slack, slack-down, teams, email, genie, pd, hec, hook, req, script]
templates:
  - name: raw
    rego-package: postee.rawmessage.json
actions:
  - name: slack
    type: slack
    enable: true
    url: {bad}/services/T0/B0/{SLACK_KEY}
    {retry}
  - name: slack-down
    type: slack
    enable: true
    url: http://127.0.0.1:{down}/services/T1/B1/{SLACK_KEY}
    {retry}
  - name: teams
    type: teams
    enable: true
    url: {err}/webhookb2/{TEAMS_KEY}
    {retry}
  - name: email
    type: email
    enable: true
    host: 127.0.0.1
    port: {down}
    smtp-tls: none
    user: postee@example.com
    password: env:POSTEE_T_SMTP
    recipients: [security@example.com]
    {retry}
  - name: genie
    type: opsgenie
    enable: true
    token: file:{genie}
    api-url: {bad}
    {retry}
  - name: pd
    type: pagerduty
    enable: true
    pagerduty-routing-key: $POSTEE_T_PD
    pagerduty-auth-token: {PD_AUTH_TOKEN}
    api-url: http://127.0.0.1:{down}
    {retry}
  - name: hec
    type: splunk
    enable: true
    url: {err}
    token: $POSTEE_T_HEC
    {retry}
  - name: hook
    type: webhook
    enable: true
    url: {hook_url}/hook
    {retry}
  - name: req
    type: http
    enable: true
    method: POST
    url: http://user:{WEBHOOK_PASSWORD}@127.0.0.1:{down}/api
    headers:
      Authorization: ["Bearer {HTTP_TOKEN}"]
    {retry}
  - name: script
    type: exec
    enable: true
    env: ["API_TOKEN={EXEC_TOKEN}"]
    exec-script: echo "the target refused"; exit 3
    {retry}
"#,
        bad = t.bad_request,
        err = t.server_error,
        down = t.unreachable,
        genie = t.genie_file,
    )
}

fn targets(dir: &std::path::Path, bad: &Sink, err: &Sink) -> Targets {
    let genie_file = dir.join("genie-token");
    std::fs::write(&genie_file, format!("{GENIE_TOKEN}\n")).unwrap();
    Targets {
        bad_request: bad.url(""),
        server_error: err.url(""),
        unreachable: free_port(),
        genie_file: genie_file.display().to_string(),
    }
}

fn check(cfg: &std::path::Path) -> std::process::Output {
    let env = secret_env();
    let mut env = env_refs(&env);
    env.push(("REGO_FILTERS_PATH", "/nonexistent"));
    env.push(("REGO_TEMPLATES_PATH", "/nonexistent"));
    run(&["check", "--cfgfile", cfg.to_str().unwrap()], &env)
}

#[test]
fn check_reports_bad_secret_keys_without_their_values() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg.yaml");
    // Malformed secret URLs only: each is an error naming the key, not the value.
    std::fs::write(
        &cfg,
        format!(
            "actions:\n\
             - {{name: s, type: slack, enable: true, url: 'hooks.slack.example/services/T0/B0/{SLACK_KEY}'}}\n\
             - {{name: t, type: Teams, enable: true, url: 'ftp://x.webhook.office.example/{TEAMS_KEY}'}}\n\
             - {{name: u, type: slack, enable: true, url: 'https://[{SLACK_KEY}'}}\n"
        ),
    )
    .unwrap();
    let o = check(&cfg);
    let text = output_text(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    for expected in [
        "error: actions[s].url: not a valid URL (value hidden)",
        "error: actions[t].url: unsupported scheme `ftp` (use http or https)",
        "error: actions[u].url: not a valid URL (value hidden)",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert_no_secret("check (malformed secret URLs)", &text);

    // Everything else wrong at once, each secret given in one of its forms.
    let genie_file = dir.path().join("genie-token");
    std::fs::write(&genie_file, GENIE_TOKEN).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "api-key: {API_KEY}\n\
             actions:\n\
             - {{name: e, type: email, enable: true, host: 127.0.0.1, user: 'not an address', password: env:POSTEE_T_SMTP, recipients: []}}\n\
             - {{name: o, type: opsgenie, enable: true, token: 'file:{}', priority: urgent, api-url: 'ftp://api.opsgenie.example'}}\n\
             - {{name: p, type: pagerduty, enable: true, pagerduty-auth-token: {PD_AUTH_TOKEN}}}\n\
             - {{name: h, type: splunk, enable: true, token: $POSTEE_T_HEC, tokn: {HEC_TOKEN}, size-limit: -1}}\n\
             - {{name: x, type: exec, enable: true, exec-script: 'true', env: ['API_TOKEN {EXEC_TOKEN}']}}\n\
             - {{name: q, type: http, enable: true, method: GET, url: 'http://127.0.0.1:1/', headers: {{Authorization: [\"Bearer {HTTP_TOKEN}\\x01\"]}}}}\n\
             - {{name: j, type: jira, enable: false, password: {SMTP_PASSWORD}, token: env:POSTEE_T_UNSET}}\n",
            genie_file.display()
        ),
    )
    .unwrap();
    let o = check(&cfg);
    let text = output_text(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    for expected in [
        "error: actions[e].user: \"not an address\" is not an email address",
        "error: actions[e].recipients: missing",
        "error: actions[o].priority: invalid priority \"urgent\"",
        "error: actions[o].api-url: unsupported scheme `ftp`",
        "error: actions[p].pagerduty-routing-key: missing",
        "error: actions[h].size-limit: must be a number of bytes",
        "error: actions[h].url: missing",
        "warning: actions[h].tokn: unknown key `tokn`",
        "error: actions[x].env: entry 1 of 1 is not NAME=value (value hidden)",
        "error: actions[q].headers.Authorization: invalid header value (value hidden)",
        "error: actions[j].token: environment variable POSTEE_T_UNSET is not set",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert_no_secret("check (bad config)", &text);
}

#[test]
fn failed_deliveries_logs_api_previews_and_dead_letters_never_show_a_secret() {
    let bad = Sink::start();
    bad.set_default(Some(400));
    let err = Sink::start();
    err.set_default(Some(500));
    let dir = tempfile::tempdir().unwrap();
    let t = targets(dir.path(), &bad, &err);
    let cfg_text = config(&t);
    let env = secret_env();

    // `check` passes on it and shows nothing secret.
    let cfg = dir.path().join("cfg.yaml");
    std::fs::write(&cfg, &cfg_text).unwrap();
    let o = check(&cfg);
    assert!(o.status.success(), "{}", output_text(&o));
    assert_no_secret("check (valid config)", &output_text(&o));

    // `render`: every action's request, without sending it.
    let event = dir.path().join("event.json");
    std::fs::write(&event, br#"{"image": "alpine:3.18", "title": "t"}"#).unwrap();
    let render_env = env_refs(&env);
    let o = run(
        &[
            "render",
            "--cfgfile",
            cfg.to_str().unwrap(),
            "--route",
            "r",
            "--input",
            event.to_str().unwrap(),
        ],
        &render_env,
    );
    let preview = output_text(&o);
    assert!(o.status.success(), "{preview}");
    for shown in [
        "\"url\": \"<hidden>\"",
        "\"authorization\": \"<hidden>\"",
        "\"API_TOKEN\": \"<hidden>\"",
        "Splunk <hidden>",
        "GenieKey <hidden>",
        "\"routing_key\": \"<hidden>\"",
        "user:***@127.0.0.1",
    ] {
        assert!(
            preview.contains(shown),
            "{shown} missing in the preview:\n{preview}"
        );
    }
    assert_no_secret("render", &preview);

    // The service: every delivery fails and ends as a dead letter.
    let mut opts = PosteeOptions {
        env: env.clone(),
        ..Default::default()
    };
    opts.env.push(("RUST_LOG".into(), "debug".into()));
    let mut p = Postee::start_with(&cfg_text, opts);
    let data = p.path("data");
    let (status, body) = p.post("/", br#"{"image": "alpine:3.18", "title": "t"}"#);
    assert_eq!(status, 200, "{body}");
    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let api = |path: &str| get_with_key(&p.url(path), API_KEY);
    wait_until(
        Duration::from_secs(60),
        || {
            serde_json::from_str::<serde_json::Value>(&api("/dlq").1)
                .ok()
                .and_then(|v| v.as_array().map(Vec::len))
                == Some(10)
        },
        || {
            format!(
                "waiting for 10 dead letters:\n{}\n{}",
                api("/dlq").1,
                p.stderr()
            )
        },
    );
    // The targets did get the secrets (the test would prove nothing otherwise).
    let got = bad.received();
    assert!(got.iter().any(|r| r.path.ends_with(SLACK_KEY)), "{got:?}");
    assert!(
        got.iter()
            .any(|r| r.header("authorization") == Some(&format!("GenieKey {GENIE_TOKEN}")))
    );
    let got = err.received();
    assert!(got.iter().any(|r| r.path.ends_with(TEAMS_KEY)), "{got:?}");
    assert!(
        got.iter()
            .any(|r| r.header("authorization") == Some(&format!("Splunk {HEC_TOKEN}")))
    );

    let mut answers = String::new();
    for path in ["/events", &format!("/events/{id}"), "/dlq", "/stats"] {
        let (s, body) = api(path);
        assert_eq!(s, 200, "{path}: {body}");
        answers.push_str(&format!("{path}: {body}\n"));
    }
    // What failed is said, with the targets' answers.
    for shown in [
        "Slack API error",
        "InsertRecordToTable Error",
        "SMTP 127.0.0.1",
        "OpsGenie create alert failed",
        "/v2/enqueue): client error (Connect)",
        "failed response status for Splunk",
        "Sending webhook wrong status: '400'",
        "error sending request",
        "the target refused",
    ] {
        assert!(answers.contains(shown), "{shown} missing in:\n{answers}");
    }
    assert_no_secret("the management API", &answers);

    assert!(p.terminate().success());
    assert_no_secret("the service's standard error", &p.stderr());
    assert_no_secret("the service's standard output", &p.stdout());
    assert!(p.stderr().contains("outcome"), "{}", p.stderr());

    let cli_env = [("POSTEE_DATA_DIR", data.to_str().unwrap())];
    for args in [&["dlq", "list"][..], &["dlq", "list", "--json"][..]] {
        let o = run(args, &cli_env);
        let text = output_text(&o);
        assert!(o.status.success(), "{text}");
        assert!(text.contains("Slack API error"), "{text}");
        assert_no_secret("dlq list", &text);
    }
}
