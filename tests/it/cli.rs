//! `postee check`, `postee render`, `--version`/`--help`, and the example configs.

use crate::common::*;

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn check(path: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["check", "--cfgfile", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    run(
        &args,
        &[
            ("REGO_FILTERS_PATH", "/nonexistent"),
            ("REGO_TEMPLATES_PATH", "/nonexistent"),
        ],
    )
}

#[test]
fn version_and_help_work() {
    let o = run(&["--version"], &[]);
    assert!(o.status.success());
    assert!(stdout(&o).starts_with(&format!("postee {}", env!("CARGO_PKG_VERSION"))));
    let o = run(&["--help"], &[]);
    let help = stdout(&o);
    for flag in ["--url", "--tls", "--cfgfile", "check", "render"] {
        assert!(help.contains(flag), "help lacks {flag}:\n{help}");
    }
}

#[test]
fn every_example_config_in_the_repo_loads() {
    let mut n = 0;
    for entry in std::fs::read_dir(repo("examples")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "yaml") {
            let o = check(&p, &[]);
            assert!(o.status.success(), "{}:\n{}", p.display(), stdout(&o));
            assert!(stdout(&o).contains(": OK ("), "{}", stdout(&o));
            n += 1;
        }
    }
    assert!(n >= 2, "examples found: {n}");
}

/// Configs shaped like Postee's documented samples parse; the only errors left are features
/// of later milestones, each named plainly.
#[test]
fn postee_sample_configs_load_except_for_features_not_built_yet() {
    let not_yet = ["is not supported yet", "is not bundled"];
    for entry in std::fs::read_dir(fixture("postee-samples")).unwrap() {
        let p = entry.unwrap().path();
        let o = check(&p, &[]);
        let out = stdout(&o);
        for line in out.lines().filter(|l| l.starts_with("error:")) {
            assert!(
                not_yet.iter().any(|n| line.contains(n)),
                "{}: unexpected error: {line}\n{out}",
                p.display()
            );
        }
        for line in out.lines().filter(|l| l.starts_with("warning:")) {
            assert!(!line.contains("unknown key"), "{}: {line}", p.display());
        }
    }
    // Those without unbuilt features load cleanly.
    for ok in ["cfg.yaml", "cfg-actions.yaml", "cfg-controller-runner.yaml"] {
        let o = check(&fixture("postee-samples").join(ok), &[]);
        assert!(o.status.success(), "{ok}:\n{}", stdout(&o));
    }
}

/// Issue 12, point 6: Postee's sample config with every ticketing and security-platform action
/// enabled at once (its own spellings: `serviceNow`, `nexusIq`) loads; `render` shows what
/// each would send without its secrets.
#[test]
fn postee_sample_with_every_ticketing_action_enabled_loads_and_renders() {
    let mut text = std::fs::read_to_string(fixture("postee-samples/cfg.yaml")).unwrap();
    let names = [
        "my-jira",
        "my-servicenow",
        "my-nexus-iq",
        "my-dependencytrack",
        "my-aws-securityhub",
    ];
    for name in names {
        let at = text.find(&format!("- name: {name}\n")).unwrap();
        let off = text[at..].find("enable: false").unwrap() + at;
        text.replace_range(off..off + "enable: false".len(), "enable: true");
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg.yaml");
    std::fs::write(&cfg, &text).unwrap();
    let env = [
        ("JIRA_USER", "bot@johndoe.com"),
        ("JIRA_PASSWORD", "sample-jira-secret"),
        ("SERVICENOW_PASSWORD", "sample-snow-secret"),
        ("NEXUS_IQ_PASSWORD", "sample-iq-secret"),
        ("AWS_REGION", "eu-west-1"),
        ("REGO_FILTERS_PATH", "/nonexistent"),
        ("REGO_TEMPLATES_PATH", "/nonexistent"),
    ];
    let o = run(&["check", "--cfgfile", cfg.to_str().unwrap()], &env);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}");
    assert!(!out.contains("error:"), "{out}");
    assert!(out.contains("of which 6 enabled"), "{out}");
    for (route, event, url) in [
        (
            "critical-vulnerabilities",
            "events/aqua-scan.json",
            "https://johndoe.atlassian.net/rest/api/2/issue",
        ),
        (
            "trivy-operator-reports",
            "events/trivy-operator-vulnreport.json",
            "https://johndoe.atlassian.net/rest/api/2/issue",
        ),
        (
            "fixable-vulnerabilities",
            "events/aqua-scan.json",
            "https://dev12345.service-now.com/api/now/table/incident",
        ),
        (
            "aqua-scan-sbom",
            "events/aqua-scan.json",
            "https://nexus.example.com/api/v2/applications",
        ),
        (
            "trivy-operator-sbom",
            "events/trivy-operator-sbomreport.json",
            "https://dependency-track.example.com/api/v1/bom",
        ),
    ] {
        let o = run(
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
        let shown = format!("{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
        assert!(o.status.success(), "{route}: {shown}");
        assert!(shown.contains(url), "{route}: {url} not shown in {shown}");
        for secret in [
            "sample-jira-secret",
            "sample-snow-secret",
            "sample-iq-secret",
        ] {
            assert!(!shown.contains(secret), "{route}: {shown}");
        }
    }
}

#[test]
fn check_reports_every_problem_with_its_place_and_fails() {
    let o = check(&fixture("configs/broken.yaml"), &[]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    let expected = [
        "error: actions[w].timeout: invalid duration \"60sm\"",
        "error: actions[w].url: missing",
        "error: actions[h].method: http action requires a method to be specified",
        "error: actions[e]: exec action requires either input-file or exec-script to be set",
        "warning: actions[e].port: key `port` is not used by action type `exec`",
        "error: routes[r1].actions: action `nope` is not defined",
        "error: routes[r2].input: Rego error at the end of the condition: expecting }",
        "warning: routes[r2].templete: unknown key `templete` in a route (ignored); did you mean `template`?",
        "error: routes[r2].template: route has actions but no `template`",
        "7 errors, 2 warnings",
    ];
    for e in expected {
        assert!(out.contains(e), "missing {e:?} in:\n{out}");
    }
}

#[test]
fn warnings_pass_unless_strict() {
    let path = fixture("configs/warnings-only.yaml");
    let o = check(&path, &[]);
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("unknown key `action` in a route (ignored); did you mean `actions`?")
    );
    let o = check(&path, &["--strict"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("error: routes[r].action: unknown key"));
    // `strict: true` in the file does the same.
    let dir = tempfile::tempdir().unwrap();
    let strict = dir.path().join("strict.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&strict, format!("strict: true\n{text}")).unwrap();
    assert_eq!(check(&strict, &[]).status.code(), Some(1));
}

/// One config per class of error; each must fail with its own message.
#[test]
fn each_config_error_class_is_reported() {
    let cases: &[(&str, &str)] = &[
        ("routes: [\n", "invalid YAML"),
        ("- a\n- b\n", "must be a mapping"),
        (
            "routes:\n- name: r\n  serialize-actions: maybe\n",
            "routes[r].serialize-actions: expected true or false",
        ),
        (
            "actions:\n- name: e\n  type: email\n  enable: false\n  port: [1]\n",
            "actions[e].port: expected a whole number",
        ),
        (
            "actions:\n- {name: s, type: docker, enable: true, docker-image-name: x, docker-pull: sometimes}\n",
            "actions[s].docker-pull: \"sometimes\" is not one of always, missing, never",
        ),
        (
            "actions:\n- {name: o, type: opsgenie, enable: true, token: t, priority: urgent}\n",
            "invalid priority \"urgent\": use P1, P2, P3, P4 or P5",
        ),
        (
            "actions:\n- {name: s, type: slak, enable: true}\n",
            "unknown action type `slak`; did you mean `slack`?",
        ),
        (
            "routes:\n- {name: r, template: t, actions: [a]}\ntemplates:\n- {name: t, rego-package: postee.rawmessage.json}\nactions:\n- {name: a, type: stdout, enable: true}\n- {name: a, type: stdout, enable: true}\n",
            "action name is used more than once",
        ),
        (
            "routes:\n- {name: r, template: nope, actions: [a]}\nactions:\n- {name: a, type: stdout, enable: true}\n",
            "template `nope` is not defined",
        ),
        (
            "routes:\n- {name: r, template: t, actions: [a]}\ntemplates:\n- {name: t, rego-package: postee.nothing}\nactions:\n- {name: a, type: stdout, enable: true}\n",
            "rego-package `postee.nothing` is not bundled",
        ),
        (
            "routes:\n- {name: r, template: t, actions: [a]}\ntemplates:\n- {name: t, body: \"package x\\nresult = 1\\n\"}\nactions:\n- {name: a, type: stdout, enable: true}\n",
            "does not define `title`",
        ),
        (
            "routes:\n- {name: r, template: t, actions: [a]}\ntemplates:\n- {name: t, body: \"package x\\ntitle = 1\\nresult = [\\n\"}\nactions:\n- {name: a, type: stdout, enable: true}\n",
            "templates[t].body:4",
        ),
        (
            "routes:\n- {name: r, input-files: [Nope.rego], template: t, actions: [a]}\ntemplates:\n- {name: t, rego-package: postee.rawmessage.json}\nactions:\n- {name: a, type: stdout, enable: true}\n",
            "input-files `Nope.rego`: not found",
        ),
        (
            "routes:\n- name: r\n  plugins: {unique-message-timeout: 2x}\n",
            "invalid timeout \"2x\"",
        ),
        ("max-db-size: 7TB\n", "max-db-size: invalid size"),
        (
            "actions:\n- {name: h, type: http, enable: true, method: GET, url: 'ftp://x'}\n",
            "unsupported scheme `ftp`",
        ),
        (
            "actions:\n- {name: h, type: http, enable: true, method: GET, url: 'http://x', body-file: /a, body-content: b}\n",
            "only one of body-file or body-content",
        ),
        (
            "actions:\n- {name: x, type: exec, enable: true, exec-script: a, input-file: b}\n",
            "either input-file or exec-script, not both",
        ),
        (
            "actions:\n- {name: x, type: exec, enable: true, exec-script: a, env: [NOEQUALS]}\n",
            "is not NAME=value",
        ),
        (
            "actions:\n- {name: j, type: jira, enable: false, password: 'env:POSTEE_TEST_UNSET_VAR'}\n",
            "environment variable POSTEE_TEST_UNSET_VAR is not set",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (i, (cfg, want)) in cases.iter().enumerate() {
        let p = dir.path().join(format!("c{i}.yaml"));
        std::fs::write(&p, cfg).unwrap();
        let o = check(&p, &[]);
        let out = stdout(&o);
        assert_eq!(
            o.status.code(),
            Some(1),
            "case {i} should fail:\n{cfg}\n{out}"
        );
        assert!(out.contains(want), "case {i}: want {want:?} in:\n{out}");
    }
}

#[test]
fn aggregation_needs_a_template_with_an_aggregation_package() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("agg.yaml");
    std::fs::write(
        &cfg,
        "routes:\n- {name: r, template: t, actions: [a], plugins: {aggregate-message-number: 3}}\n\
         - {name: r2, template: u, actions: [a], plugins: {aggregate-message-timeout: 1h}}\n\
         templates:\n- {name: t, rego-package: postee.rawmessage.json}\n- {name: u, rego-package: mine}\n\
         actions:\n- {name: a, type: stdout, enable: true}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("mine.rego"),
        "package mine\ntitle = \"t\"\nresult = \"r\"\naggregation_pkg = \"mine.missing\"\n",
    )
    .unwrap();
    let o = run(
        &["check", "--cfgfile", cfg.to_str().unwrap()],
        &[
            ("REGO_TEMPLATES_PATH", dir.path().to_str().unwrap()),
            ("REGO_FILTERS_PATH", "/nonexistent"),
        ],
    );
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("warning: routes[r].plugins: template `t` has no aggregation_pkg, so events are sent one by one"),
        "{out}"
    );
    assert!(
        out.contains("error: routes[r2].plugins: template `u` aggregates with `mine.missing`: rego-package `mine.missing` is not bundled"),
        "{out}"
    );
}

#[test]
fn secrets_never_appear_in_check_output() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.yaml");
    std::fs::write(
        &p,
        "actions:\n- {name: s, type: splunk, enable: true, token: supersecret-123, url: 'http://x'}\n\
         - {name: p, type: pagerduty, enable: true, pagerduty-auth-token: '$POSTEE_TEST_PD', pagerduty-routing-key: routing-secret-9}\n\
         - {name: t, type: teams, enable: true, url: 'https://hook.example/secret-path-7', bogus: 1}\n",
    )
    .unwrap();
    let o = run(
        &["check", "--cfgfile", p.to_str().unwrap()],
        &[("POSTEE_TEST_PD", "pd-secret-5")],
    );
    let all = format!("{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
    // The unknown key under --strict makes it fail; every action is still built and checked.
    let strict = run(
        &["check", "--strict", "--cfgfile", p.to_str().unwrap()],
        &[("POSTEE_TEST_PD", "pd-secret-5")],
    );
    assert_eq!(strict.status.code(), Some(1));
    let all = format!(
        "{all}{}{}",
        stdout(&strict),
        String::from_utf8_lossy(&strict.stderr)
    );
    assert!(all.contains("actions[t].bogus"), "{all}");
    for secret in [
        "supersecret-123",
        "pd-secret-5",
        "routing-secret-9",
        "secret-path-7",
    ] {
        assert!(!all.contains(secret), "{secret} printed:\n{all}");
    }
}

#[test]
fn render_package_prints_postee_content_fields() {
    let o = run(
        &[
            "render",
            "--package",
            "postee.rawmessage.html",
            "--input",
            fixture("events/plain.json").to_str().unwrap(),
            "--rego-templates",
            "/nonexistent",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["title"], "Raw Message Received");
    assert_eq!(
        v["result"],
        "<pre><code>{\n \"postee\": {\n  \"AquaServer\": \"\"\n },\n \"user\": \"demo\"\n}</code></pre>"
    );
    assert!(
        v.get("url").is_none() && v.get("aggregation_pkg").is_none(),
        "{v}"
    );
}

#[test]
fn render_package_finds_user_templates_in_the_given_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("custom")).unwrap();
    std::fs::write(
        dir.path().join("custom/mine.rego"),
        "package my.tpl\nimport data.postee.with_default\ntitle = with_default(input, \"image\", \"none\")\nresult = {\"a\": \"<b>\"}\nurl = \"http://x\"\naggregation_pkg = \"my.tpl.aggr\"\n",
    )
    .unwrap();
    let o = run(
        &[
            "render",
            "--rego-templates",
            dir.path().to_str().unwrap(),
            "--package",
            "my.tpl",
            "--input",
            fixture("events/plain.json").to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"title": "none", "result": "{\"a\":\"\\u003cb\\u003e\"}", "url": "http://x", "aggregation_pkg": "my.tpl.aggr"})
    );
}

#[test]
fn render_route_shows_match_and_what_each_action_would_receive() {
    let cfg = repo("examples/cfg-webhook-http.yaml");
    let event = fixture("events/tracee-finding.json");
    let o = run(
        &[
            "render",
            "--cfgfile",
            cfg.to_str().unwrap(),
            "--route",
            "tracee-to-api",
            "--input",
            event.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["matched"], true);
    assert_eq!(v["template"], "raw-json");
    assert_eq!(v["message"]["title"], "-");
    let actions = v["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 2);
    assert_eq!(actions[0]["type"], "http");
    assert_eq!(actions[0]["would_send"]["method"], "POST");
    assert_eq!(
        actions[0]["would_send"]["body"],
        "signature: TRC-2\nprocess: strace\n"
    );
    assert_eq!(actions[0]["would_send"]["headers"]["x-team"], "security");
    assert_eq!(actions[1]["type"], "exec");
    assert!(
        actions[1]["would_send"]["env"]["POSTEE_EVENT"]
            .as_str()
            .unwrap()
            .contains("\"TRC-2\"")
    );

    // A non-matching event says so.
    let o = run(
        &[
            "render",
            "--cfgfile",
            cfg.to_str().unwrap(),
            "--route",
            "tracee-to-api",
            "--input",
            fixture("events/plain.json").to_str().unwrap(),
        ],
        &[],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"route": "tracee-to-api", "matched": false})
    );

    // An unknown route is an error that lists the routes.
    let o = run(
        &[
            "render",
            "--cfgfile",
            cfg.to_str().unwrap(),
            "--route",
            "nope",
            "--input",
            event.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("trivy-to-webhook, tracee-to-api"));
}

#[test]
fn bundled_templates_match_their_golden_outputs() {
    // Every case under tests/goldens (package × fixture, aggregations, legacy layouts) runs
    // through `postee test`, the same command users run on their own cases.
    let o = run(
        &["test", repo("tests/goldens").to_str().unwrap()],
        &[("REGO_TEMPLATES_PATH", "/nonexistent")],
    );
    let out = stdout(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains(" passed, 0 failed"), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
}

#[test]
fn postee_test_prints_a_diff_and_fails_on_a_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let case = dir.path().join("raw");
    std::fs::create_dir(&case).unwrap();
    std::fs::write(
        case.join("case.yaml"),
        "package: postee.rawmessage.json\ninject: false\n",
    )
    .unwrap();
    std::fs::write(case.join("input.json"), r#"{"user":"demo","n":1}"#).unwrap();
    std::fs::write(case.join("expected.title"), "-").unwrap();
    std::fs::write(
        case.join("expected.result"),
        "{\n \"n\": 2,\n \"user\": \"demo\"\n}",
    )
    .unwrap();
    let o = run(
        &["test", dir.path().to_str().unwrap()],
        &[("REGO_TEMPLATES_PATH", "/nonexistent")],
    );
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("FAIL raw\n    result differs:\n    --- expected.result\n    +++ actual\n    @@ -1,4 +1,4 @@\n     {\n    - \"n\": 2,\n    + \"n\": 1,\n"), "{out}");
    assert!(out.contains("0 passed, 1 failed"), "{out}");
    // --update writes the actual output; the case then passes.
    let o = run(
        &["test", "--update", dir.path().to_str().unwrap()],
        &[("REGO_TEMPLATES_PATH", "/nonexistent")],
    );
    assert!(o.status.success(), "{}", stdout(&o));
    let o = run(
        &["test", dir.path().to_str().unwrap()],
        &[("REGO_TEMPLATES_PATH", "/nonexistent")],
    );
    assert!(o.status.success(), "{}", stdout(&o));
}

#[test]
fn render_aggregate_renders_events_through_the_aggregation_package() {
    let scan = fixture("events/aqua-scan.json");
    let s = scan.to_str().unwrap();
    let o = run(
        &[
            "render",
            "--package",
            "postee.vuls.html",
            "--aggregate",
            s,
            s,
            "--aqua-server",
            "https://aqua",
        ],
        &[("REGO_TEMPLATES_PATH", "/nonexistent")],
    );
    let out = stdout(&o);
    assert!(o.status.success(), "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["title"], "Vulnerability scan report");
    let result = v["result"].as_str().unwrap();
    assert!(
        result.starts_with(
            "<h1>all-in-one:3.5.19223 vulnerability scan report</h1>\n\n<p>Image name:"
        ),
        "{result}"
    );
    assert_eq!(result.matches("<h1>").count(), 2);
    assert_eq!(
        v["url"],
        "https://aqua/#/images/Aqua/all-in-one%3A3.5.19223\nhttps://aqua/#/images/Aqua/all-in-one%3A3.5.19223"
    );
    // A package without aggregation says so.
    let o = run(
        &[
            "render",
            "--package",
            "postee.rawmessage.json",
            "--aggregate",
            s,
        ],
        &[("REGO_TEMPLATES_PATH", "/nonexistent")],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("has no aggregation"));
}

#[test]
fn legacy_renderers_load_from_a_config_and_aggregate() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("legacy.yaml");
    std::fs::write(
        &cfg,
        "routes:\n- {name: r, template: legacy-jira, actions: [a], plugins: {aggregate-message-number: 2}}\n\
         templates:\n- {name: legacy-jira, legacy-scan-renderer: jira}\n\
         actions:\n- {name: a, type: stdout, enable: true}\n",
    )
    .unwrap();
    let scan = fixture("events/aqua-scan.json");
    let s = scan.to_str().unwrap();
    let env = [
        ("REGO_TEMPLATES_PATH", "/nonexistent"),
        ("REGO_FILTERS_PATH", "/nonexistent"),
    ];
    let o = run(&["check", "--cfgfile", cfg.to_str().unwrap()], &env);
    assert!(o.status.success(), "{}", stdout(&o));
    let o = run(
        &[
            "render",
            "--cfgfile",
            cfg.to_str().unwrap(),
            "--route",
            "r",
            "--aggregate",
            s,
            s,
        ],
        &env,
    );
    let out = stdout(&o);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let result = v["result"].as_str().unwrap();
    assert!(
        result.starts_with(
            "h1. all-in-one:3.5.19223 vulnerability scan report\nImage name: all-in-one:3.5.19223\n"
        ),
        "{result}"
    );
    assert_eq!(result.matches("h1. ").count(), 2);
}

/// Nothing but our own report reaches standard error for the bundled Rego: `postee check` on
/// every example config and on a config using every bundled filter, and rendering every
/// bundled package over every event fixture (alone and aggregated), print nothing there.
/// regorus 0.14.1 prints `could not schedule all statements [..]` with an unconditional
/// `eprintln!` when it cannot order a rule body; users read that as an error.
#[test]
fn bundled_rego_prints_nothing_on_stderr() {
    let env = [
        ("REGO_TEMPLATES_PATH", "/nonexistent"),
        ("REGO_FILTERS_PATH", "/nonexistent"),
    ];
    let quiet = |what: &str, o: &std::process::Output| {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{what}:\n{}{err}", stdout(o));
        assert!(err.is_empty(), "{what} wrote to stderr:\n{err}");
    };
    let dir = tempfile::tempdir().unwrap();

    // Every example config, and every bundled filter in a route of its own.
    let mut configs: Vec<std::path::PathBuf> = std::fs::read_dir(repo("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    let mut filters = String::from("routes:\n");
    for (i, name) in postee::bundle::filter_names().iter().enumerate() {
        filters.push_str(&format!(
            "- {{name: f{i}, input-files: [\"{name}\"], template: t, actions: [a]}}\n"
        ));
    }
    filters.push_str(
        "templates:\n- {name: t, rego-package: postee.rawmessage.json}\n\
         actions:\n- {name: a, type: stdout, enable: true}\n",
    );
    let cfg = dir.path().join("filters.yaml");
    std::fs::write(&cfg, filters).unwrap();
    configs.push(cfg);
    assert!(configs.len() >= 3, "{configs:?}");
    for p in &configs {
        let o = run(&["check", "--cfgfile", p.to_str().unwrap()], &env);
        quiet(&format!("check {}", p.display()), &o);
        assert!(stdout(&o).contains(": OK ("), "{}", stdout(&o));
    }

    // Every bundled package × every fixture, and each package aggregating all fixtures, as
    // `postee test --update` cases: one process renders them all (a case that cannot render
    // an event records the error, which is fine here; only stderr matters).
    let cases = dir.path().join("cases");
    let mut packages: Vec<String> = postee::bundle::templates()
        .iter()
        .filter_map(|s| postee::templates::package_of(&s.text))
        .collect();
    packages.sort();
    packages.dedup();
    assert!(packages.len() >= 20, "{packages:?}");
    let events: Vec<std::path::PathBuf> = std::fs::read_dir(fixture("events"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let list = |ps: &[std::path::PathBuf]| {
        ps.iter()
            .map(|p| format!("\"{}\"", p.display()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut n = 0;
    for pkg in &packages {
        for ev in &events {
            let case = cases.join(format!("{pkg}-{n}"));
            std::fs::create_dir_all(&case).unwrap();
            std::fs::write(
                case.join("case.yaml"),
                format!("package: {pkg}\ninput: \"{}\"\n", ev.display()),
            )
            .unwrap();
            n += 1;
        }
        let case = cases.join(format!("{pkg}-aggregated"));
        std::fs::create_dir_all(&case).unwrap();
        std::fs::write(
            case.join("case.yaml"),
            format!("package: {pkg}\ninputs: [{}]\n", list(&events)),
        )
        .unwrap();
    }
    let o = run(
        &["test", "--update", cases.to_str().unwrap()],
        &[("REGO_TEMPLATES_PATH", "/nonexistent")],
    );
    quiet("rendering the bundled packages", &o);
    assert_eq!(
        stdout(&o)
            .lines()
            .filter(|l| l.starts_with("updated "))
            .count(),
        n + packages.len(),
        "{}",
        stdout(&o)
    );

    // The control: a body regorus cannot order (`i` is declared in the body and used only
    // inside the comprehension) does print the line, so the checks above can see it. If a
    // regorus upgrade stops printing it, drop this control and the note in docs/templates.md.
    let user = dir.path().join("user");
    std::fs::create_dir_all(&user).unwrap();
    std::fs::write(
        user.join("t.rego"),
        "package my.t\ntitle = \"t\"\nresult = v {\n\tsome i\n\tv := [r | r := input.a[i]]\n}\n",
    )
    .unwrap();
    let o = run(
        &[
            "render",
            "--rego-templates",
            user.to_str().unwrap(),
            "--package",
            "my.t",
            "--input",
            fixture("events/plain.json").to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("could not schedule all statements"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
