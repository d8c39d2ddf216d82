//! Durable delivery, with the real binary: acknowledged events survive kill -9, failed sends
//! are retried or dead-lettered, dead letters replay, dedup, a slow target stays isolated.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;

fn hook_config(sink: &Sink, extra_action_keys: &str, plugins: &str) -> String {
    format!(
        r#"
routes:
  - name: all
    template: raw
    actions: [hook]
    {plugins}
templates:
  - name: raw
    rego-package: postee.rawmessage.json
actions:
  - name: hook
    type: webhook
    enable: true
    url: "{}"
    {extra_action_keys}
"#,
        sink.url("/hook")
    )
}

/// A sink answering 503 until told otherwise, and a config that retries it (1,000 attempts,
/// backoff from `initial` up to `max`).
fn sink_down_config(initial: &str, max: &str) -> (Sink, String) {
    let sink = Sink::start();
    sink.set_default(Some(503));
    let cfg = hook_config(
        &sink,
        &format!("retry: {{initial-delay: {initial}, max-delay: {max}, max-attempts: 1000}}"),
        "",
    );
    (sink, cfg)
}

/// POSTs `n` bodies (`body(i)` for i in 0..n) from `conns` concurrent senders; each must get 200.
fn post_all(
    url: &str,
    n: usize,
    conns: usize,
    body: impl Fn(usize) -> String + Send + Sync + 'static,
) {
    let body = Arc::new(body);
    let next = Arc::new(AtomicUsize::new(0));
    block_on(async {
        let client = client();
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (client, url, next, body) =
                (client.clone(), url.to_string(), next.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= n {
                        break;
                    }
                    let r = client.post(&url).body(body(i)).send().await.unwrap();
                    assert_eq!(r.status(), 200);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

/// The `n` field of each body the sink got at `path`.
fn ns(sink: &Sink, path: &str) -> Vec<u64> {
    sink.received_at(path)
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            v["n"].as_u64().unwrap()
        })
        .collect()
}

#[test]
fn kill_9_during_a_stream_of_10000_events_loses_no_acknowledged_event() {
    const N: usize = 10_000;
    let sink = Sink::start();
    let cfg = hook_config(&sink, "concurrency: 32", "");
    let mut p = Postee::start(&cfg);
    let acked: Arc<Mutex<Vec<bool>>> = Arc::new(Mutex::new(vec![false; N]));
    let pid = p.child.as_ref().unwrap().id() as i32;

    // Phase 1: 32 concurrent senders; kill -9 once 3,000 events are acknowledged.
    let url = p.url("/");
    let next = Arc::new(AtomicUsize::new(0));
    let count = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    block_on(async {
        let client = client();
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let (client, url, next, count, killed, acked) = (
                client.clone(),
                url.clone(),
                next.clone(),
                count.clone(),
                killed.clone(),
                acked.clone(),
            );
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= N || killed.load(Ordering::SeqCst) {
                        break;
                    }
                    let body = format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(200));
                    if let Ok(r) = client.post(&url).body(body).send().await
                        && r.status() == 200
                    {
                        acked.lock().unwrap()[i] = true;
                        if count.fetch_add(1, Ordering::SeqCst) + 1 == 3000 {
                            unsafe {
                                libc::kill(pid, libc::SIGKILL);
                            }
                            killed.store(true, Ordering::SeqCst);
                        }
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    assert!(
        killed.load(Ordering::SeqCst),
        "the kill happened during the stream"
    );
    let acked_before_kill: usize = acked.lock().unwrap().iter().filter(|a| **a).count();

    // Phase 2: restart on the same store; senders resend what was not acknowledged.
    p.restart(PosteeOptions::default());
    let url = p.url("/");
    let missing: Vec<usize> = (0..N).filter(|i| !acked.lock().unwrap()[*i]).collect();
    block_on(async {
        let client = client();
        let queue = Arc::new(Mutex::new(missing));
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let (client, url, queue, acked) =
                (client.clone(), url.clone(), queue.clone(), acked.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let Some(i) = queue.lock().unwrap().pop() else {
                        break;
                    };
                    let body = format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(200));
                    let r = client.post(&url).body(body).send().await.unwrap();
                    assert_eq!(r.status(), 200);
                    acked.lock().unwrap()[i] = true;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });

    wait_until(
        Duration::from_secs(120),
        || {
            ns(&sink, "/hook")
                .into_iter()
                .collect::<BTreeSet<_>>()
                .len()
                == N
        },
        || {
            format!(
                "delivered {} distinct of {N}",
                ns(&sink, "/hook")
                    .into_iter()
                    .collect::<BTreeSet<_>>()
                    .len()
            )
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    let got = ns(&sink, "/hook");
    let distinct: BTreeSet<u64> = got.iter().copied().collect();
    assert_eq!(distinct.len(), N, "every event delivered");
    assert_eq!(*distinct.iter().next_back().unwrap(), (N - 1) as u64);
    let duplicates = got.len() - N;
    println!(
        "kill -9 after {acked_before_kill} acknowledged events: {N} delivered, {duplicates} duplicates (at-least-once)"
    );
    assert!(
        duplicates <= 1000,
        "{duplicates} duplicates is more than a crash window should cause"
    );
}

#[test]
fn deliveries_wait_for_a_dead_sink_and_all_arrive_when_it_returns() {
    let (sink, cfg) = sink_down_config("20ms", "100ms");
    let p = Postee::start(&cfg);
    let mut ids = Vec::new();
    for n in 0..20 {
        let (s, body) = p.post("/", format!("{{\"n\":{n}}}").as_bytes());
        assert_eq!(s, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    // The sink refuses for a while: every event is tried several times.
    let tried = |id: &String| {
        let (_, ev) = p.api_get(&format!("/events/{id}"));
        ev["routes"][0]["actions"][0]["attempts"].as_u64() >= Some(2)
    };
    wait_until(
        Duration::from_secs(30),
        || ids.iter().all(tried),
        || format!("{} requests", sink.received().len()),
    );
    let (_, ev) = p.api_get(&format!("/events/{}", ids[0]));
    assert_eq!(ev["state"], "delivering", "{ev}");
    let action = &ev["routes"][0]["actions"][0];
    assert_eq!(action["status"], "pending");
    assert!(action["attempts"].as_u64().unwrap() >= 1, "{ev}");
    assert!(
        action["last_error"].as_str().unwrap().contains("'503'"),
        "{ev}"
    );

    sink.set_default(None);
    wait_until(
        Duration::from_secs(30),
        || {
            ids.iter()
                .all(|id| p.api_get(&format!("/events/{id}")).1["state"] == "done")
        },
        || "events not delivered after the sink came back".into(),
    );
    for id in &ids {
        let (_, ev) = p.api_get(&format!("/events/{id}"));
        assert_eq!(ev["state"], "done", "{ev}");
        let a = &ev["routes"][0]["actions"][0];
        assert_eq!(a["status"], "delivered", "{ev}");
        assert!(
            a["attempts"].as_u64().unwrap() > 1,
            "retries are visible: {ev}"
        );
    }
    // Every retry of a delivery carries the same Idempotency-Key; each got one 200.
    let mut ok_per_key: BTreeMap<String, usize> = BTreeMap::new();
    for r in sink.received() {
        let n = ok_per_key
            .entry(r.header("idempotency-key").unwrap().to_string())
            .or_default();
        if r.status == 200 {
            *n += 1;
        }
    }
    assert_eq!(ok_per_key.len(), 20);
    assert!(ok_per_key.values().all(|n| *n == 1), "{ok_per_key:?}");
}

#[test]
fn a_permanent_4xx_is_dead_lettered_and_replay_delivers_it() {
    let sink = Sink::start();
    sink.respond(400, "missing field");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = hook_config(&sink, "", "");
    let mut p = Postee::start_in(dir, &cfg, PosteeOptions::default());

    // 400: straight to the dead letters, no retry.
    assert_eq!(p.post("/", br#"{"n":1}"#).0, 200);
    wait_until(
        Duration::from_secs(20),
        || p.api_get("/dlq").1.as_array().is_some_and(|a| a.len() == 1),
        || p.stderr(),
    );
    assert_eq!(sink.received_at("/hook").len(), 1, "a 4xx is not retried");
    let dead = p.api_get("/dlq").1;
    assert_eq!(
        dead[0]["error"].as_str().unwrap(),
        "Sending webhook wrong status: '400'. Body: missing field"
    );
    assert_eq!(dead[0]["delivery"]["attempts"], 1);
    let id = dead[0]["delivery"]["id"].as_str().unwrap().to_string();

    // Without the key: refused.
    assert_eq!(post(&p.url(&format!("/dlq/{id}/replay")), b"").0, 401);
    // Replay over HTTP after the "fix" (the sink answers 200 now).
    let (s, r) = p.api_post(&format!("/dlq/{id}/replay"));
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["replayed"][0], id);
    sink.wait_for("/hook", 2);
    wait_until(
        Duration::from_secs(10),
        || p.api_get("/dlq").1.as_array().is_some_and(|a| a.is_empty()),
        || p.stderr(),
    );

    // A second failure, replayed with the CLI while postee is stopped.
    sink.respond(422, "still bad");
    assert_eq!(p.post("/", br#"{"n":2}"#).0, 200);
    wait_until(
        Duration::from_secs(20),
        || p.api_get("/dlq").1.as_array().is_some_and(|a| a.len() == 1),
        || p.stderr(),
    );
    let cli_env = [("POSTEE_DATA_DIR", data.to_str().unwrap())];
    let busy = run(&["dlq", "list"], &cli_env);
    assert_eq!(busy.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&busy.stderr).contains("in use by another postee process"));
    assert!(p.terminate().success());
    let list = run(&["dlq", "list", "--json"], &cli_env);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(
        listed[0]["error"].as_str().unwrap(),
        "Sending webhook wrong status: '422'. Body: still bad"
    );
    let cfgfile = p.path("cfg.yaml");
    let replay = run(
        &[
            "dlq",
            "replay",
            "--all",
            "--cfgfile",
            cfgfile.to_str().unwrap(),
        ],
        &cli_env,
    );
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    assert!(String::from_utf8_lossy(&replay.stdout).contains("replayed 1 dead letters"));
    p.restart(PosteeOptions::default());
    let got = sink.wait_for("/hook", 4);
    assert_eq!(ns(&sink, "/hook"), vec![1, 1, 2, 2], "{got:?}");
    assert!(p.api_get("/dlq").1.as_array().unwrap().is_empty());
}

#[test]
fn a_429_with_retry_after_is_honoured() {
    let sink = Sink::start();
    sink.respond_with(429, "slow down", &[("Retry-After", "2")]);
    let cfg = hook_config(&sink, "retry: {initial-delay: 10ms, max-delay: 20ms}", "");
    let p = Postee::start(&cfg);
    assert_eq!(p.post("/", br#"{"n":1}"#).0, 200);
    let got = sink.wait_for("/hook", 2);
    let gap = got[1].at.duration_since(got[0].at);
    assert!(
        gap >= Duration::from_millis(1900),
        "retried after {gap:?}, before Retry-After: 2"
    );
    assert!(p.stderr().contains("retrying"), "{}", p.stderr());
}

#[test]
fn a_slow_action_does_not_delay_another_actions_deliveries() {
    let sink = Sink::start();
    sink.delay("/slow", Duration::from_secs(2));
    let cfg = format!(
        r#"
routes:
  - {{name: r, template: raw, actions: [slow, fast]}}
templates:
  - {{name: raw, rego-package: postee.rawmessage.json}}
actions:
  - {{name: slow, type: webhook, enable: true, url: "{}", concurrency: 1}}
  - {{name: fast, type: webhook, enable: true, url: "{}"}}
"#,
        sink.url("/slow"),
        sink.url("/fast")
    );
    let p = Postee::start(&cfg);
    for n in 0..5 {
        assert_eq!(p.post("/", format!("{{\"n\":{n}}}").as_bytes()).0, 200);
    }
    sink.wait_for("/fast", 5);
    // The slow target takes 2 s per request, one at a time: it has answered at most one.
    assert!(
        sink.received_at("/slow").len() <= 1,
        "{:?}",
        sink.received_at("/slow").len()
    );
    let mut fast = ns(&sink, "/fast");
    fast.sort();
    assert_eq!(fast, vec![0, 1, 2, 3, 4]);
}

#[test]
fn dedup_suppresses_copies_and_releases_the_key_when_the_delivery_dies() {
    let sink = Sink::start();
    sink.respond(400, "rejected");
    let cfg = hook_config(
        &sink,
        "",
        "plugins: {unique-message-props: [image, registry], unique-message-timeout: 2s}",
    );
    let p = Postee::start(&cfg);
    let post_n = |n: u64| -> String {
        let (s, body) = p.post(
            "/",
            format!("{{\"image\":\"alpine\",\"registry\":\"hub\",\"n\":{n}}}").as_bytes(),
        );
        assert_eq!(s, 200);
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // 1: sent, rejected for good → its dedup key is released.
    post_n(1);
    wait_until(
        Duration::from_secs(20),
        || p.api_get("/dlq").1.as_array().is_some_and(|a| a.len() == 1),
        || p.stderr(),
    );
    // 2: a copy of 1, but 1 never arrived: sent.
    post_n(2);
    sink.wait_for("/hook", 2);
    // 3: a copy of 2, which was delivered: suppressed.
    let id3 = post_n(3);
    wait_until(
        Duration::from_secs(10),
        || {
            p.api_get(&format!("/events/{id3}")).0 == 200
                && p.api_get(&format!("/events/{id3}")).1["state"] == "done"
        },
        || p.stderr(),
    );
    let (_, ev3) = p.api_get(&format!("/events/{id3}"));
    assert!(
        ev3["routes"][0]["note"]
            .as_str()
            .unwrap()
            .contains("duplicate of event"),
        "{ev3}"
    );
    assert!(ev3["routes"][0]["actions"].as_array().unwrap().is_empty());
    // The key expires after unique-message-timeout (2s): 4 is sent.
    std::thread::sleep(Duration::from_millis(2100));
    post_n(4);
    sink.wait_for("/hook", 3);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ns(&sink, "/hook"), vec![1, 2, 4]);
}

#[test]
fn a_restart_routes_and_sends_what_was_pending() {
    let (sink, cfg) = sink_down_config("50ms", "200ms");
    let mut p = Postee::start(&cfg);
    for n in 0..10 {
        assert_eq!(p.post("/", format!("{{\"n\":{n}}}").as_bytes()).0, 200);
    }
    wait_until(
        Duration::from_secs(20),
        || sink.received().len() >= 10,
        || p.stderr(),
    );
    // A clean stop leaves the undelivered work queued.
    assert!(p.terminate().success());
    sink.set_default(None);
    p.restart(PosteeOptions::default());
    p.wait_deliveries(10);
    let ok: Vec<u64> = sink
        .received()
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(ok, (0..10).collect::<Vec<u64>>());
    let log = p.stderr();
    assert_eq!(log.matches("outcome=\"delivered\"").count(), 10, "{log}");
}

const AGG_TEMPLATE: &str = r#"package test.agg
title = sprintf("scan of %s", [input.image])
result = sprintf("<p>%s</p>", [input.image])
url = input.image
aggregation_pkg = "test.agg.aggregation"
"#;

const AGG_AGGREGATION: &str = r#"package test.agg.aggregation
title = "Vulnerability scan report"
result = concat("\n", [sprintf("<h1>%s</h1>%s", [item.title, item.description]) | item := input[_]])
url = concat("\n", [item.url | item := input[_]])
"#;

fn aggregating_postee(sink: &Sink, plugins: &str) -> Postee {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("rego-templates")).unwrap();
    std::fs::write(dir.path().join("rego-templates/agg.rego"), AGG_TEMPLATE).unwrap();
    std::fs::write(
        dir.path().join("rego-templates/agg-aggregation.rego"),
        AGG_AGGREGATION,
    )
    .unwrap();
    let cfg = format!(
        r#"
routes:
  - name: scans
    template: agg
    actions: [one, two]
    plugins: {{{plugins}}}
templates:
  - {{name: agg, rego-package: test.agg}}
actions:
  - {{name: one, type: webhook, enable: true, url: "{}"}}
  - {{name: two, type: webhook, enable: true, url: "{}"}}
"#,
        sink.url("/one"),
        sink.url("/two")
    );
    Postee::start_in(dir, &cfg, PosteeOptions::default())
}

fn post_image(p: &Postee, image: &str) {
    let (s, b) = p.post("/", format!("{{\"image\":\"{image}\"}}").as_bytes());
    assert_eq!(s, 200, "{b}");
}

#[test]
fn aggregation_by_count_goes_to_every_action_and_survives_a_restart() {
    let sink = Sink::start();
    let mut p = aggregating_postee(&sink, "aggregate-message-number: 3");
    for img in ["a", "b", "c", "d"] {
        post_image(&p, img);
    }
    let one = sink.wait_for("/one", 1);
    let two = sink.wait_for("/two", 1);
    // Newest first, as Postee builds the batch; both actions get it (Postee: only one).
    let want = "<h1>scan of c</h1><p>c</p>\n<h1>scan of b</h1><p>b</p>\n<h1>scan of a</h1><p>a</p>";
    assert_eq!(one[0].body_str(), want);
    assert_eq!(two[0].body_str(), want);
    // "d" waits in the queue, on disk: a restart keeps it.
    std::thread::sleep(Duration::from_millis(700));
    p.restart(PosteeOptions::default());
    post_image(&p, "e");
    post_image(&p, "f");
    let one = sink.wait_for("/one", 2);
    assert_eq!(
        one[1].body_str(),
        "<h1>scan of f</h1><p>f</p>\n<h1>scan of e</h1><p>e</p>\n<h1>scan of d</h1><p>d</p>"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.received_at("/one").len(), 2);
    assert_eq!(sink.received_at("/two").len(), 2);
}

#[test]
fn an_aggregation_window_that_ends_while_postee_is_down_fires_at_start() {
    let sink = Sink::start();
    let mut p = aggregating_postee(&sink, "aggregate-message-timeout: 2s");
    post_image(&p, "a");
    post_image(&p, "b");
    // Let routing commit and become durable, then crash in the middle of the window.
    std::thread::sleep(Duration::from_millis(900));
    assert!(sink.received().is_empty());
    p.kill9();
    std::thread::sleep(Duration::from_millis(2500));
    p.restart(PosteeOptions::default());
    let one = sink.wait_for("/one", 1);
    let two = sink.wait_for("/two", 1);
    let want = "<h1>scan of b</h1><p>b</p>\n<h1>scan of a</h1><p>a</p>";
    assert_eq!(one[0].body_str(), want);
    assert_eq!(two[0].body_str(), want);
}

#[test]
fn max_db_size_holds_over_a_long_run_by_trimming_delivered_history() {
    let sink = Sink::start();
    let cfg = format!(
        "max-db-size: 2MB\n{}",
        hook_config(&sink, "concurrency: 16", "")
    );
    let p = Postee::start(&cfg);
    let pad = "x".repeat(2000);
    let url = p.url("/");
    // ~6,000 events of 2 KB: about 12 MB of history against a 2 MB limit.
    post_all(&url, 6000, 16, move |i| {
        format!("{{\"n\":{i},\"pad\":\"{pad}\"}}")
    });
    // A bound on waiting, not a speed test: on a loaded machine the size checks' fsyncs
    // (every 10 s, several while trimming) slow delivery a lot.
    wait_until(
        Duration::from_secs(300),
        || sink.received().len() >= 6000,
        || format!("{} delivered", sink.received().len()),
    );
    // The size check runs every 10 s and trims the oldest delivered history; the run that
    // trims below the limit then clears `store_full`.
    wait_until(
        Duration::from_secs(40),
        || {
            let stats = p.api_get("/stats").1;
            stats["store_bytes"].as_u64().unwrap() <= 2 * 1024 * 1024
                && stats["store_full"] == false
        },
        || format!("{}", p.api_get("/stats").1),
    );
    let (_, stats) = p.api_get("/stats");
    println!("after 6000 events with max-db-size 2MB: {stats}");
    let events = stats["counts"]["events"].as_u64().unwrap();
    assert!(events < 6000, "history was trimmed: {stats}");
    assert!(events > 0, "recent history is kept: {stats}");
    assert_eq!(stats["counts"]["outbox"], 0);
    assert_eq!(stats["store_full"], false);
    assert!(p.stderr().contains("history_trimmed"), "{}", p.stderr());
    // Everything was delivered, once.
    let distinct: BTreeSet<u64> = ns(&sink, "/hook").into_iter().collect();
    assert_eq!(distinct.len(), 6000);
}

#[test]
fn a_store_full_of_undelivered_work_answers_503_until_it_drains() {
    let sink = Sink::start();
    sink.set_default(Some(503));
    let cfg = format!(
        "max-db-size: 300kb\n{}",
        hook_config(
            &sink,
            "retry: {initial-delay: 100ms, max-delay: 200ms, max-attempts: 1000}",
            ""
        )
    );
    let p = Postee::start(&cfg);
    let pad = "x".repeat(2000);
    for n in 0..200 {
        assert_eq!(
            p.post("/", format!("{{\"n\":{n},\"pad\":\"{pad}\"}}").as_bytes())
                .0,
            200
        );
    }
    // Nothing can be trimmed (all undelivered): the next size check marks the store full.
    wait_until(
        Duration::from_secs(30),
        || get(&p.url("/healthz")).0 == 503,
        || format!("{}", p.api_get("/stats").1),
    );
    let (status, body) = p.post("/", b"{\"n\":999}");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("max-db-size"), "{body}");
    assert_eq!(
        p.api_get("/stats").1["counts"]["outbox"],
        200,
        "undelivered work is never dropped"
    );
    // The target comes back: deliveries drain, history is trimmed, events are taken again.
    sink.set_default(None);
    wait_until(
        Duration::from_secs(40),
        || get(&p.url("/healthz")).0 == 200,
        || format!("{}", p.api_get("/stats").1),
    );
    assert_eq!(p.post("/", b"{\"n\":1000}").0, 200);
    let distinct: BTreeSet<u64> = sink
        .received()
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!((0..200).all(|n| distinct.contains(&n)), "all 200 delivered");
}

#[test]
fn deliveries_of_an_action_removed_from_the_config_become_dead_letters_at_start() {
    let (sink, cfg) = sink_down_config("1s", "2s");
    let mut p = Postee::start(&cfg);
    assert_eq!(p.post("/", br#"{"n":1}"#).0, 200);
    sink.wait_for("/hook", 1);
    assert!(p.terminate().success());
    // The action is disabled in the new config: its queued delivery cannot be sent.
    std::fs::write(
        p.path("cfg.yaml"),
        cfg.replace("enable: true", "enable: false"),
    )
    .unwrap();
    p.restart(PosteeOptions::default());
    let (_, dead) = p.api_get("/dlq");
    assert_eq!(dead.as_array().unwrap().len(), 1, "{dead}");
    assert!(
        dead[0]["error"]
            .as_str()
            .unwrap()
            .contains("action `hook` is not configured"),
        "{dead}"
    );
    let id = dead[0]["delivery"]["id"].as_str().unwrap().to_string();
    let (status, body) = p.api_post(&format!("/dlq/{id}/replay"));
    assert_eq!(status, 409, "{body}");
    assert_eq!(p.api_get("/dlq").1.as_array().unwrap().len(), 1);
}
