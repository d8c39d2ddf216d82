//! postee's own container image (issue 13 point 4): `scripts/image` builds it with a real
//! Docker engine (the per-test engine of `common::docker`, no registry needed: the image is
//! `FROM scratch`), and the container runs as uid 1099, takes an event, delivers it to a sink
//! on the host's loopback, and its HEALTHCHECK (`postee healthcheck`) reports healthy.
//!
//! The image is built from the binary under test (the debug build, stripped by the script),
//! so CI needs no release build; the release image's size is in docs/operations.md.
//!
//! Also here: `postee healthcheck` itself, without Docker.

use std::process::Command;
use std::time::Duration;

use crate::common::docker::{Engine, EngineOptions};
use crate::common::{BIN, Postee, Sink, free_port, post, repo, run, wait_until};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn healthcheck_exits_0_on_a_healthy_postee_and_follows_postee_http() {
    let p = Postee::start("routes: []\n");
    let out = run(&["healthcheck", "--url", &p.url("/healthz")], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        format!("healthy: {}: 200 {{\"status\":\"ok\"}}", p.url("/healthz"))
    );
    // Without --url: the address the service itself would take from POSTEE_HTTP, a wildcard
    // host probed on loopback.
    let out = run(
        &["healthcheck"],
        &[("POSTEE_HTTP", &format!("0.0.0.0:{}", p.http))],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("http://127.0.0.1:{}/healthz", p.http)));
}

#[test]
fn healthcheck_exits_1_with_the_reason_when_unhealthy_or_down() {
    let sink = Sink::start();
    sink.set_default_reply(
        503,
        r#"{"status":"failing","problems":["router: panicked"]}"#,
    );
    let out = run(&["healthcheck", "--url", &sink.url("/healthz")], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("unhealthy:") && err.contains("503") && err.contains("router: panicked"),
        "{err}"
    );

    let port = free_port();
    let out = run(
        &["healthcheck", "--timeout", "2"],
        &[("POSTEE_HTTP", &format!(":{port}"))],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("http://127.0.0.1:{port}/healthz: no answer")),
        "{err}"
    );
}

/// `docker` with the engine, asserting success; returns stdout.
fn docker_ok(engine: &Engine, args: &[&str]) -> String {
    let out = engine.docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout).trim().to_string()
}

#[test]
fn the_image_builds_without_a_registry_runs_as_postee_delivers_and_is_healthy() {
    let engine = Engine::start_with(EngineOptions { registry: false });
    let tag = "postee-it:test";

    // Build, as a user would, with the script (the debug binary keeps CI free of a release build).
    let out = Command::new(repo("scripts/image"))
        .args(["--binary", BIN, "--tag", tag])
        .env("DOCKER_HOST", engine.host())
        .env("DOCKER_CONFIG", engine.path("cli"))
        .env_remove("DOCKER_CONTEXT")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/image failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains(&format!("built {tag}")));

    // What the image declares.
    let (status, image) = engine.api("GET", &format!("/images/{tag}/json"));
    assert_eq!(status, 200, "{image}");
    let c = &image["Config"];
    assert_eq!(c["User"], "1099:1099");
    assert_eq!(c["WorkingDir"], "/server");
    assert_eq!(c["Entrypoint"], serde_json::json!(["/server/postee"]));
    assert!(c["ExposedPorts"]["8082/tcp"].is_object(), "{c}");
    assert!(c["ExposedPorts"]["8445/tcp"].is_object(), "{c}");
    assert!(c["Volumes"]["/server/database"].is_object(), "{c}");
    let env: Vec<&str> = c["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(env.contains(&"POSTEE_CFG=/config/cfg.yaml"), "{env:?}");
    assert!(env.contains(&"POSTEE_DATA_DIR=/server/database"), "{env:?}");
    assert_eq!(
        c["Healthcheck"]["Test"],
        serde_json::json!(["CMD", "/server/postee", "healthcheck"])
    );
    // Only the base layer of files and the data directory: nothing was pulled.
    assert_eq!(
        image["RootFS"]["Layers"].as_array().unwrap().len(),
        2,
        "{image}"
    );

    // The config bundled in the image loads (run as a one-off `postee check`).
    let out = docker_ok(&engine, &["run", "--rm", "--network", "none", tag, "check"]);
    assert!(out.contains("/config/cfg.yaml: OK"), "{out}");

    // A config that delivers to a sink on the host's loopback (host network: the test
    // engine has no bridge), mounted over the bundled one.
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg.yaml");
    std::fs::write(
        &cfg,
        format!(
            "routes:\n  - name: all\n    template: raw-json\n    actions: [hook]\n\
             templates:\n  - name: raw-json\n    rego-package: postee.rawmessage.json\n\
             actions:\n  - name: hook\n    type: webhook\n    enable: true\n    url: {}\n",
            sink.url("/hook")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let http = free_port();
    let https = free_port();
    let mount = format!("{}:/config/cfg.yaml:ro", cfg.display());
    // As the Kubernetes manifests run it: read-only root, no capabilities, a tmpfs /tmp; the
    // data directory is the image's volume.
    let id = docker_ok(
        &engine,
        &[
            "run",
            "-d",
            "--network",
            "host",
            "--read-only",
            "--tmpfs",
            "/tmp",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "-e",
            &format!("POSTEE_HTTP=127.0.0.1:{http}"),
            "-e",
            &format!("POSTEE_HTTPS=127.0.0.1:{https}"),
            "-v",
            &mount,
            "--health-interval",
            "1s",
            "--health-start-period",
            "1s",
            tag,
        ],
    );
    let logs = || {
        let out = engine.docker(&["logs", &id]);
        format!("{}{}", text(&out.stdout), text(&out.stderr))
    };
    let inspect = |format: &str| docker_ok(&engine, &["inspect", "--format", format, &id]);

    wait_until(
        Duration::from_secs(30),
        || crate::common::ureq_get(&format!("http://127.0.0.1:{http}/ping")).is_ok(),
        || {
            format!(
                "the container did not answer on {http} (state {}); logs:\n{}",
                inspect("{{json .State}}"),
                logs()
            )
        },
    );

    // Runs as postee: the container's main process, seen from the host.
    let pid = inspect("{{.State.Pid}}");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let gid = status.lines().find(|l| l.starts_with("Gid:")).unwrap();
    assert_eq!(
        uid.split_whitespace().skip(1).collect::<Vec<_>>(),
        ["1099"; 4],
        "{uid}"
    );
    assert_eq!(
        gid.split_whitespace().skip(1).collect::<Vec<_>>(),
        ["1099"; 4],
        "{gid}"
    );

    // An event in, delivered to the sink.
    let (status, body) = post(
        &format!("http://127.0.0.1:{http}/"),
        br#"{"image":"alpine:3.10","from":"container"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let got = sink.wait_for("/hook", 1);
    let delivered: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(delivered["image"], "alpine:3.10", "{delivered}");
    assert_eq!(delivered["from"], "container");

    // HTTPS came up with a certificate generated into the (writable) data volume.
    let l = logs();
    assert!(
        l.contains("generated a self-signed TLS certificate")
            && l.contains("/server/database/cert.pem"),
        "{l}"
    );

    // The image's HEALTHCHECK, run by the engine, says healthy.
    wait_until(
        Duration::from_secs(30),
        || inspect("{{.State.Health.Status}}") == "healthy",
        || format!("health: {}", inspect("{{json .State.Health}}")),
    );
    let health = inspect("{{json .State.Health}}");
    assert!(
        health.contains(&format!("healthy: http://127.0.0.1:{http}/healthz: 200")),
        "{health}"
    );

    docker_ok(&engine, &["rm", "-f", &id]);
}

/// `scripts/image --busybox`: the image has /bin/sh, so an `exec` action runs in it (the
/// plain image has no shell).
#[test]
fn the_busybox_image_runs_exec_actions() {
    let engine = Engine::start_with(EngineOptions { registry: false });
    let tag = "postee-it:busybox";
    let out = Command::new(repo("scripts/image"))
        .args(["--binary", BIN, "--tag", tag, "--busybox"])
        .env("DOCKER_HOST", engine.host())
        .env("DOCKER_CONFIG", engine.path("cli"))
        .env_remove("DOCKER_CONTEXT")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/image --busybox failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg.yaml");
    std::fs::write(
        &cfg,
        "routes:\n  - name: all\n    template: raw-json\n    actions: [save]\n\
         templates:\n  - name: raw-json\n    rego-package: postee.rawmessage.json\n\
         actions:\n  - name: save\n    type: exec\n    enable: true\n    exec-script: |\n      \
         id -u > /tmp/uid; printf '%s' \"$POSTEE_EVENT\" > /tmp/event.json\n",
    )
    .unwrap();
    std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let http = free_port();
    let mount = format!("{}:/config/cfg.yaml:ro", cfg.display());
    let id = docker_ok(
        &engine,
        &[
            "run",
            "-d",
            "--network",
            "host",
            "-e",
            &format!("POSTEE_HTTP=127.0.0.1:{http}"),
            "-e",
            "POSTEE_HTTPS=off",
            "-v",
            &mount,
            tag,
        ],
    );
    let logs = || text(&engine.docker(&["logs", &id]).stderr);
    wait_until(
        Duration::from_secs(30),
        || crate::common::ureq_get(&format!("http://127.0.0.1:{http}/ping")).is_ok(),
        || format!("the container did not answer; logs:\n{}", logs()),
    );
    let (status, body) = post(
        &format!("http://127.0.0.1:{http}/"),
        br#"{"finding":"TRC-2"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let cat = |f: &str| text(&engine.docker(&["exec", &id, "cat", f]).stdout);
    wait_until(
        Duration::from_secs(30),
        || cat("/tmp/event.json").contains("TRC-2"),
        || format!("the exec action did not run; logs:\n{}", logs()),
    );
    assert_eq!(cat("/tmp/uid").trim(), "1099");
    docker_ok(&engine, &["rm", "-f", &id]);
}
