//! The docker action against a real engine: each test starts its own dockerd (and registry)
//! with `common::docker::Engine`, runs the real postee binary with `DOCKER_HOST` pointing at
//! it, and looks at what the containers did (files in bind mounts), at the engine's container
//! list (every container removed), at `/dlq`, `/events/{id}` and the log.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use serde_json::Value;

use crate::common::docker::{Engine, EngineOptions};
use crate::common::*;

fn start(engine: &Engine, actions: &str) -> Postee {
    let cfg = format!(
        "routes:\n  - {{name: r, template: raw, actions: [d]}}\n\
         templates:\n  - {{name: raw, rego-package: postee.rawmessage.json}}\n\
         actions:\n{actions}"
    );
    Postee::start_with(
        &cfg,
        PosteeOptions {
            env: vec![("DOCKER_HOST".into(), engine.host())],
            ..Default::default()
        },
    )
}

/// A folder any container user may write to, for bind mounts.
fn shared_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    d
}

fn event_id(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap();
    v["id"].as_str().unwrap().to_string()
}

fn dead_letters(p: &Postee, n: usize) -> Vec<Value> {
    wait_until(
        Duration::from_secs(60),
        || p.api_get("/dlq").1.as_array().is_some_and(|a| a.len() >= n),
        || format!("waiting for {n} dead letters; log:\n{}", p.stderr()),
    );
    p.api_get("/dlq").1.as_array().unwrap().clone()
}

fn wait_done(p: &Postee, id: &str) -> Value {
    wait_until(
        Duration::from_secs(60),
        || p.api_get(&format!("/events/{id}")).1["state"] == "done",
        || format!("{}\n{}", p.api_get(&format!("/events/{id}")).1, p.stderr()),
    );
    p.api_get(&format!("/events/{id}")).1
}

fn wait_file(path: &std::path::Path, p: &Postee) -> String {
    wait_until(
        Duration::from_secs(60),
        || path.exists(),
        || format!("{} not written; log:\n{}", path.display(), p.stderr()),
    );
    // Written by a container that has exited by the time the delivery is done.
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn env_event_and_limits_reach_the_container_and_a_bind_mount_is_written() {
    let engine = Engine::start_with(EngineOptions { registry: false });
    let out = shared_dir();
    let p = start(
        &engine,
        &format!(
            r#"  - name: d
    type: docker
    enable: true
    docker-image-name: {image}
    docker-pull: never
    docker-network: none
    docker-user: "1000:1000"
    docker-memory: 64m
    docker-cpus: "0.5"
    docker-env: ["FOO=bar baz", "EMPTY="]
    docker-volume-mounts: {{"{out}": /out}}
    docker-cmd:
      - sh
      - -c
      - 'printf %s "$FOO" > /out/foo; printf %s "$POSTEE_EVENT" > /out/event; id -u > /out/uid; printf %s "$1" > /out/arg; {{ cat /sys/fs/cgroup/memory/memory.limit_in_bytes || cat /sys/fs/cgroup/memory.max; }} > /out/mem 2>/dev/null; echo done > /out/done'
      - event.input.finding.id
      - event.input.finding.id
"#,
            image = engine.image,
            out = out.path().display()
        ),
    );
    let body = r#"{"finding":{"id":"F-42; rm -rf /","severity":"high"}}"#;
    let (s, resp) = p.post("/", body.as_bytes());
    assert_eq!(s, 200, "{resp}");
    let id = event_id(&resp);
    let ev = wait_done(&p, &id);
    assert_eq!(ev["routes"][0]["actions"][0]["status"], "delivered", "{ev}");
    let read = |f: &str| std::fs::read_to_string(out.path().join(f)).unwrap();
    assert_eq!(read("done"), "done\n");
    assert_eq!(read("foo"), "bar baz");
    // The raw description, no quotes added (Postee wraps it in double quotes).
    let event: Value = serde_json::from_str(&read("event")).unwrap();
    let sent: Value = serde_json::from_str(body).unwrap();
    assert_eq!(event["finding"], sent["finding"]);
    assert_eq!(read("uid"), "1000\n");
    // `event.input` values are arguments, never shell text.
    assert_eq!(read("arg"), "F-42; rm -rf /");
    assert_eq!(read("mem").trim(), (64u64 << 20).to_string());
    assert!(
        engine.containers().is_empty(),
        "container removed: {:?}",
        engine.containers()
    );
    assert!(
        p.stderr().contains("outcome=\"delivered\""),
        "{}",
        p.stderr()
    );
}

#[test]
fn postee_event_can_be_quoted_as_postee_does_and_the_container_is_named_after_the_action() {
    let engine = Engine::start_with(EngineOptions { registry: false });
    let out = shared_dir();
    let p = start(
        &engine,
        &format!(
            r#"  - name: d
    type: docker
    enable: true
    docker-image-name: {image}
    docker-pull: never
    docker-network: none
    docker-event-quoted: true
    docker-volume-mounts: {{"{out}": /out}}
    docker-cmd: [sh, -c, 'printf %s "$POSTEE_EVENT" > /out/event; sleep 2']
"#,
            image = engine.image,
            out = out.path().display()
        ),
    );
    let (_, resp) = p.post("/", br#"{"a":1}"#);
    let id = event_id(&resp);
    // While it runs: one container, `postee-d-<uuid>`, labelled with the action and event.
    wait_until(
        Duration::from_secs(30),
        || !engine.containers().is_empty(),
        || p.stderr(),
    );
    let c = &engine.containers()[0];
    let name = c["Names"][0].as_str().unwrap().trim_start_matches('/');
    let re = regex::Regex::new(
        "^postee-d-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$",
    )
    .unwrap();
    assert!(re.is_match(name), "{name}");
    assert_eq!(c["Labels"]["io.postee.action"], "d");
    assert_eq!(c["Labels"]["io.postee.event"], id.as_str());
    wait_done(&p, &id);
    let quoted = std::fs::read_to_string(out.path().join("event")).unwrap();
    let inner = quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or_else(|| panic!("not quoted: {quoted}"));
    assert_eq!(serde_json::from_str::<Value>(inner).unwrap()["a"], 1);
    assert!(engine.containers().is_empty());
}

#[test]
fn exit_3_is_a_permanent_failure_with_the_log_tail_and_the_container_is_removed() {
    let engine = Engine::start_with(EngineOptions { registry: false });
    let p = start(
        &engine,
        &format!(
            r#"  - name: d
    type: docker
    enable: true
    docker-image-name: {image}
    docker-network: none
    docker-cmd: [sh, -c, 'echo to-stdout; echo to-stderr >&2; exit 3']
"#,
            image = engine.image
        ),
    );
    let (_, resp) = p.post("/", b"{}");
    let id = event_id(&resp);
    let dead = dead_letters(&p, 1);
    let err = dead[0]["error"].as_str().unwrap();
    assert!(err.contains("exited with status 3"), "{err}");
    assert!(
        err.contains("to-stdout") && err.contains("to-stderr"),
        "{err}"
    );
    assert_eq!(dead[0]["delivery"]["attempts"], 1, "permanent: not retried");
    let ev = wait_done(&p, &id);
    let last = ev["routes"][0]["actions"][0]["last_error"]
        .as_str()
        .unwrap();
    assert!(last.contains("exited with status 3"), "{ev}");
    assert!(
        p.stderr()
            .lines()
            .any(|l| l.contains("outcome") && l.contains("exited with status 3")),
        "{}",
        p.stderr()
    );
    assert!(engine.containers().is_empty(), "{:?}", engine.containers());
}

#[test]
fn at_the_timeout_the_container_is_killed_and_removed() {
    let engine = Engine::start_with(EngineOptions { registry: false });
    let p = start(
        &engine,
        &format!(
            r#"  - name: d
    type: docker
    enable: true
    timeout: 1s
    retry: {{max-attempts: 2, initial-delay: 50ms, max-delay: 100ms}}
    docker-image-name: {image}
    docker-network: none
    docker-cmd: [sh, -c, 'echo started; sleep 60']
"#,
            image = engine.image
        ),
    );
    let (_, resp) = p.post("/", b"{}");
    let id = event_id(&resp);
    let dead = dead_letters(&p, 1);
    let err = dead[0]["error"].as_str().unwrap();
    assert!(
        err.contains("did not finish within 1s and was killed and removed"),
        "{err}"
    );
    assert!(err.contains("started"), "the log so far: {err}");
    assert_eq!(dead[0]["delivery"]["attempts"], 2, "transient: retried");
    wait_done(&p, &id);
    assert!(engine.containers().is_empty(), "{:?}", engine.containers());
    assert!(
        p.stderr().contains("transient=true"),
        "the first timeout is retried:\n{}",
        p.stderr()
    );
}

#[test]
fn docker_pull_always_missing_and_never() {
    let engine = Engine::start();
    // The registry holds v2 of the image; the engine has v1 under the same name.
    engine.import_image(&engine.image, &[("marker", "v2")]);
    engine.push(&engine.image);
    engine.import_image(&engine.image, &[("marker", "v1")]);
    let out = shared_dir();
    let action = |mode: &str| {
        format!(
            r#"  - name: {mode}
    type: docker
    enable: true
    docker-image-name: {image}
    docker-pull: {mode}
    docker-network: none
    docker-volume-mounts: {{"{out}": /out}}
    docker-cmd: [sh, -c, 'cat /marker > /out/$0', event.input.file]
"#,
            image = engine.image,
            out = out.path().display()
        )
    };
    let cfg = format!(
        "routes:\n\
         \x20 - {{name: a, input: 'input.mode == \"always\"', template: raw, actions: [always]}}\n\
         \x20 - {{name: m, input: 'input.mode == \"missing\"', template: raw, actions: [missing]}}\n\
         \x20 - {{name: n, input: 'input.mode == \"never\"', template: raw, actions: [never]}}\n\
         templates:\n  - {{name: raw, rego-package: postee.rawmessage.json}}\n\
         actions:\n{}{}{}",
        action("always"),
        action("missing"),
        action("never")
    );
    let p = Postee::start_with(
        &cfg,
        PosteeOptions {
            env: vec![("DOCKER_HOST".into(), engine.host())],
            ..Default::default()
        },
    );
    let post = |mode: &str, file: &str| {
        let (s, resp) = p.post(
            "/",
            format!(r#"{{"mode":"{mode}","file":"{file}"}}"#).as_bytes(),
        );
        assert_eq!(s, 200, "{resp}");
        wait_done(&p, &event_id(&resp))
    };
    // missing, image present: no pull, the local v1 runs.
    post("missing", "m1");
    assert_eq!(
        std::fs::read_to_string(out.path().join("m1")).unwrap(),
        "v1"
    );
    // always: pulls v2 from the registry first.
    post("always", "a1");
    assert_eq!(
        std::fs::read_to_string(out.path().join("a1")).unwrap(),
        "v2"
    );
    // never, image absent: a permanent failure, nothing pulled.
    engine.remove_image(&engine.image);
    post("never", "n1");
    let dead = dead_letters(&p, 1);
    let err = dead[0]["error"].as_str().unwrap();
    assert!(
        err.contains("is not present on the engine and docker-pull is never"),
        "{err}"
    );
    assert_eq!(dead[0]["delivery"]["attempts"], 1);
    assert!(!engine.has_image(&engine.image));
    assert!(!out.path().join("n1").exists());
    // missing, image absent: pulled (the pull stream read to its end), then run.
    post("missing", "m2");
    assert_eq!(
        std::fs::read_to_string(out.path().join("m2")).unwrap(),
        "v2"
    );
    assert!(engine.has_image(&engine.image));
    assert!(engine.containers().is_empty());
}

#[test]
fn an_image_the_registry_does_not_have_is_permanent_and_an_unreachable_registry_transient() {
    let engine = Engine::start();
    let missing = format!("127.0.0.1:{}/nosuch:1", engine.registry_port);
    let unreachable = format!("127.0.0.1:{}/busybox:1", free_port());
    let cfg = format!(
        "routes:\n\
         \x20 - {{name: a, input: 'input.n == 1', template: raw, actions: [missing]}}\n\
         \x20 - {{name: b, input: 'input.n == 2', template: raw, actions: [unreachable]}}\n\
         templates:\n  - {{name: raw, rego-package: postee.rawmessage.json}}\n\
         actions:\n\
         \x20 - {{name: missing, type: docker, enable: true, docker-image-name: '{missing}', docker-network: none}}\n\
         \x20 - {{name: unreachable, type: docker, enable: true, docker-image-name: '{unreachable}', docker-network: none, retry: {{max-attempts: 2, initial-delay: 50ms}}}}\n"
    );
    let p = Postee::start_with(
        &cfg,
        PosteeOptions {
            env: vec![("DOCKER_HOST".into(), engine.host())],
            ..Default::default()
        },
    );
    p.post("/", br#"{"n":1}"#);
    let dead = dead_letters(&p, 1);
    let err = dead[0]["error"].as_str().unwrap();
    assert!(err.contains("docker pull of"), "{err}");
    assert!(
        err.contains("not found") || err.contains("manifest unknown"),
        "{err}"
    );
    assert_eq!(dead[0]["delivery"]["attempts"], 1, "permanent");
    p.post("/", br#"{"n":2}"#);
    let dead = dead_letters(&p, 2);
    let d = dead
        .iter()
        .find(|d| d["delivery"]["action"] == "unreachable")
        .unwrap_or_else(|| panic!("{dead:?}"));
    assert_eq!(d["delivery"]["attempts"], 2, "transient: retried: {d}");
    assert!(
        d["error"].as_str().unwrap().contains("docker pull of"),
        "{d}"
    );
}

#[test]
fn an_engine_that_is_down_is_retried_and_the_message_delivered_when_it_is_back() {
    let mut engine = Engine::start_with(EngineOptions { registry: false });
    let out = shared_dir();
    let p = start(
        &engine,
        &format!(
            r#"  - name: d
    type: docker
    enable: true
    retry: {{max-attempts: 1000, initial-delay: 100ms, max-delay: 500ms}}
    docker-image-name: {image}
    docker-network: none
    docker-volume-mounts: {{"{out}": /out}}
    docker-cmd: [sh, -c, 'echo delivered > /out/file']
"#,
            image = engine.image,
            out = out.path().display()
        ),
    );
    engine.stop();
    let (_, resp) = p.post("/", b"{}");
    let id = event_id(&resp);
    wait_until(
        Duration::from_secs(30),
        || p.stderr().matches("outcome=\"retrying\"").count() >= 2,
        || p.stderr(),
    );
    let log = p.stderr();
    assert!(log.contains("no docker engine at unix://"), "{log}");
    assert!(log.contains("transient=true"), "{log}");
    assert!(!out.path().join("file").exists());
    engine.restart();
    let ev = wait_done(&p, &id);
    assert_eq!(ev["routes"][0]["actions"][0]["status"], "delivered", "{ev}");
    assert_eq!(wait_file(&out.path().join("file"), &p), "delivered\n");
    assert!(p.api_get("/dlq").1.as_array().unwrap().is_empty());
    assert!(engine.containers().is_empty());
}

#[test]
fn an_event_input_path_that_resolves_to_nothing_is_permanent_and_runs_nothing() {
    let engine = Engine::start_with(EngineOptions { registry: false });
    let p = start(
        &engine,
        &format!(
            r#"  - name: d
    type: docker
    enable: true
    docker-image-name: {image}
    docker-cmd: [echo, event.input.no.such.path]
"#,
            image = engine.image
        ),
    );
    p.post("/", br#"{"a":1}"#);
    let dead = dead_letters(&p, 1);
    let err = dead[0]["error"].as_str().unwrap();
    assert!(
        err.contains(
            "docker-cmd cannot be resolved: event.input.no.such.path: the event has no such value"
        ),
        "{err}"
    );
    assert_eq!(dead[0]["delivery"]["attempts"], 1);
    assert!(engine.containers().is_empty());
}

/// `postee check` never contacts the engine: it passes with no engine at all, and reports
/// bad keys by path.
#[test]
fn check_validates_keys_without_an_engine() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg.yaml");
    std::fs::write(
        &cfg,
        "routes:\n  - {name: r, template: t, actions: [d]}\ntemplates:\n  - {name: t, rego-package: postee.rawmessage.json}\nactions:\n  - {name: d, type: docker, enable: true, docker-image-name: 127.0.0.1:5000/x:1}\n",
    )
    .unwrap();
    let nowhere = format!("unix://{}/no.sock", dir.path().display());
    let out = run(
        &["check", "--cfgfile", cfg.to_str().unwrap()],
        &[("DOCKER_HOST", &nowhere)],
    );
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(
        &cfg,
        "routes:\n  - {name: r, template: t, actions: [d]}\ntemplates:\n  - {name: t, rego-package: postee.rawmessage.json}\nactions:\n  - {name: d, type: docker, enable: true, docker-pull: sometimes, docker-memory: lots, docker-host: 'https://e:2376', docker-env: [NOEQUALS], docker-volume-mounts: {rel: /x}}\n",
    )
    .unwrap();
    let out = run(&["check", "--cfgfile", cfg.to_str().unwrap()], &[]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    for want in [
        "actions[d].docker-image-name: docker action requires docker-image-name",
        "actions[d].docker-pull: \"sometimes\" is not one of always, missing, never",
        "actions[d].docker-memory:",
        "actions[d].docker-host:",
        "actions[d].docker-env: entry 1 of 1 is not NAME=value (value hidden)",
        "actions[d].docker-volume-mounts: rel → /x: both paths must be absolute",
    ] {
        assert!(text.contains(want), "{want}:\n{text}");
    }
}

#[test]
fn render_previews_the_engine_calls_without_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg.yaml");
    std::fs::write(
        &cfg,
        "routes:\n  - {name: r, template: raw, actions: [d]}\n\
         templates:\n  - {name: raw, rego-package: postee.rawmessage.json}\n\
         actions:\n  - {name: d, type: docker, enable: true, docker-image-name: '127.0.0.1:5000/forensics:2', docker-host: 'unix:///nowhere/d.sock', docker-pull: always, docker-network: none, docker-env: ['API_TOKEN=secret-tok-1', 'OUT=/o'], docker-cmd: [collect, event.input.id], docker-memory: 128m}\n",
    )
    .unwrap();
    let input = dir.path().join("event.json");
    std::fs::write(&input, r#"{"id":"F-7"}"#).unwrap();
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
    assert!(!text.contains("secret-tok-1"), "{text}");
    for shown in [
        "unix:///nowhere/d.sock",
        "/images/create?fromImage=127.0.0.1:5000/forensics&tag=1",
        "/containers/create?name=postee-d-<id>",
        "API_TOKEN=<hidden>",
        "F-7",
        "134217728",
        "/containers/postee-d-<id>/wait?condition=not-running",
        "/containers/postee-d-<id>?force=true&v=true",
    ] {
        let shown = shown.replace("tag=1", "tag=2");
        assert!(text.contains(&shown), "{shown}:\n{text}");
    }
}

/// Seed story (c): a Tracee finding runs a forensics container that writes its report into a
/// mounted folder. Runs examples/story-tracee-forensics.yaml with the image and folder
/// replaced by this test's own.
#[test]
fn story_tracee_finding_collects_forensics_into_the_mounted_folder() {
    let engine = Engine::start_with(EngineOptions { registry: false });
    let folder = shared_dir();
    let example = std::fs::read_to_string(repo("examples/story-tracee-forensics.yaml")).unwrap();
    assert!(example.contains("registry.example.com/forensics:1"));
    assert!(example.contains("/var/lib/postee/forensics"));
    let cfg = example
        .replace("registry.example.com/forensics:1", &engine.image)
        .replace("/var/lib/postee/forensics", folder.path().to_str().unwrap());
    let p = Postee::start_with(
        &cfg,
        PosteeOptions {
            env: vec![("DOCKER_HOST".into(), engine.host())],
            ..Default::default()
        },
    );
    let (s, resp) = p.post_fixture("/", "events/tracee-finding.json");
    assert_eq!(s, 200, "{resp}");
    let id = event_id(&resp);
    let ev = wait_done(&p, &id);
    assert_eq!(ev["routes"][0]["actions"][0]["status"], "delivered", "{ev}");
    let dir = folder.path().join("TRC-2-4128");
    let summary = std::fs::read_to_string(dir.join("summary.txt")).unwrap_or_else(|e| {
        panic!(
            "{e}: {:?}",
            std::fs::read_dir(folder.path())
                .unwrap()
                .collect::<Vec<_>>()
        )
    });
    assert!(
        summary.contains("signature: TRC-2 Anti-Debugging"),
        "{summary}"
    );
    assert!(summary.contains("process: strace (pid 4128)"), "{summary}");
    assert!(summary.contains("host: ip-10-0-0-1"), "{summary}");
    let finding: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("finding.json")).unwrap()).unwrap();
    assert_eq!(finding["SigMetadata"]["ID"], "TRC-2");
    assert!(engine.containers().is_empty());
    // A finding of another signature runs nothing.
    let other = std::fs::read_to_string(fixture("events/tracee-finding-trc8.json")).unwrap();
    let v: Value = serde_json::from_str(&other).unwrap();
    let (_, resp) = p.post("/", other.as_bytes());
    wait_done(&p, &event_id(&resp));
    let sig = v["SigMetadata"]["ID"].as_str().unwrap();
    let pid = &v["Context"]["hostProcessId"];
    let other_dir = folder.path().join(format!("{sig}-{pid}"));
    assert_eq!(
        other_dir.exists(),
        sig == "TRC-2",
        "only the signatures the route selects"
    );
}
