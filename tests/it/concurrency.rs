//! Adaptive concurrency with the real binary: an action's limit (seen in `/stats`) grows while
//! a local target keeps up, falls when it answers 429 or slows down, recovers, and every event
//! is still delivered exactly once. Assertions are on directions, with generous timeouts: the
//! machine is shared and the build is a debug one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::*;

fn config(sink: &Sink) -> String {
    format!(
        r#"
routes:
  - name: all
    template: raw
    actions: [hook]
templates:
  - name: raw
    rego-package: postee.rawmessage.json
actions:
  - name: hook
    type: webhook
    enable: true
    url: "{}"
    retry: {{initial-delay: 20ms, max-delay: 200ms, max-attempts: 1000}}
"#,
        sink.url("/hook")
    )
}

/// The `hook` action's `{limit, max, in_flight}` from `/stats`.
fn concurrency(p: &Postee) -> (u64, u64, u64) {
    let (status, stats) = p.api_get("/stats");
    assert_eq!(status, 200, "{stats}");
    let c = &stats["concurrency"]["hook"];
    let n = |k: &str| {
        c[k].as_u64()
            .unwrap_or_else(|| panic!("no concurrency.hook.{k} in {stats}"))
    };
    (n("limit"), n("max"), n("in_flight"))
}

/// Polls the limit until `done(limit)`, for up to a minute; returns the limits seen.
fn watch_limit(p: &Postee, what: &str, done: impl Fn(u64) -> bool) -> Vec<u64> {
    let seen = std::cell::RefCell::new(Vec::new());
    wait_until(
        Duration::from_secs(60),
        || {
            let (limit, max, in_flight) = concurrency(p);
            assert!(
                (1..=max).contains(&limit),
                "limit {limit} outside 1..={max}"
            );
            assert!(in_flight <= max, "{in_flight} in flight, ceiling {max}");
            seen.borrow_mut().push(limit);
            done(limit)
        },
        || format!("{what}; limits seen: {:?}\n{}", seen.borrow(), p.stderr()),
    );
    seen.into_inner()
}

/// POSTs `{"n": i}` for each i in `range` from 8 concurrent senders, on a thread of its own.
fn post_in_background(p: &Postee, range: std::ops::Range<usize>) -> std::thread::JoinHandle<()> {
    let url = p.url("/");
    std::thread::spawn(move || {
        let next = Arc::new(AtomicUsize::new(range.start));
        block_on(async {
            let client = client();
            let mut tasks = Vec::new();
            for _ in 0..8 {
                let (client, url, next, end) =
                    (client.clone(), url.clone(), next.clone(), range.end);
                tasks.push(tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= end {
                            break;
                        }
                        let r = client
                            .post(&url)
                            .body(format!("{{\"n\":{i}}}"))
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(r.status(), 200);
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        });
    })
}

/// How many times the sink accepted (200) each `n`.
fn accepted(sink: &Sink) -> BTreeMap<u64, usize> {
    let mut count = BTreeMap::new();
    for r in sink.received_at("/hook") {
        if r.status == 200 {
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            *count.entry(v["n"].as_u64().unwrap()).or_default() += 1;
        }
    }
    count
}

/// Waits until the sink has accepted every n below `n`.
fn wait_accepted(sink: &Sink, p: &Postee, n: usize) {
    wait_until(
        Duration::from_secs(120),
        || accepted(sink).len() >= n,
        || {
            format!(
                "{} of {n} accepted; /stats: {}",
                accepted(sink).len(),
                p.api_get("/stats").1
            )
        },
    );
}

#[test]
fn the_limit_grows_on_a_fast_target_falls_on_429s_and_slowness_and_nothing_is_lost() {
    let sink = Sink::start();
    // Fast: 5 ms a request, however many at once.
    sink.delay("/hook", Duration::from_millis(5));
    let p = Postee::start(&config(&sink));
    let (limit, max, in_flight) = concurrency(&p);
    assert_eq!(
        (limit, max, in_flight),
        (1, 128, 0),
        "starts at 1; webhook ceiling 128"
    );

    // 1. A backlog on a target that keeps up: the limit grows well above its start.
    let posting = post_in_background(&p, 0..1500);
    watch_limit(&p, "the limit did not grow above 5", |l| l >= 6);
    posting.join().unwrap();
    wait_accepted(&sink, &p, 1500);
    let (after_fast, _, _) = concurrency(&p);
    println!("limit after the fast phase: {after_fast}");
    assert!(after_fast >= 2, "{after_fast}");

    // 2. The target answers 429: the limit falls below where it was.
    sink.set_default(Some(429));
    let posting = post_in_background(&p, 1500..1700);
    let seen = watch_limit(&p, "the limit did not fall on 429s", |l| l < after_fast);
    posting.join().unwrap();
    let low = *seen.iter().min().unwrap();
    let rejected = sink
        .received_at("/hook")
        .iter()
        .filter(|r| r.status == 429)
        .count();
    assert!(rejected > 0);
    println!("limit during 429s: down to {low} ({rejected} requests answered 429)");

    // 3. The target recovers: the 429'd deliveries are retried and arrive, and with a new
    // backlog the limit grows again.
    sink.set_default(None);
    wait_accepted(&sink, &p, 1700);
    let posting = post_in_background(&p, 1700..2700);
    watch_limit(&p, "the limit did not recover", |l| l > low.max(2));
    posting.join().unwrap();
    wait_accepted(&sink, &p, 2700);
    let (before_slow, _, _) = concurrency(&p);
    assert!(before_slow >= 2, "{before_slow}");

    // 4. The target slows down (5 ms → 500 ms a request; far above this machine's RTT noise,
    // which reaches tens of ms): the limit is cut, not grown. 100 events: several windows of
    // slow answers whatever the limit (below 100) is.
    assert!(before_slow < 100, "{before_slow}");
    sink.delay("/hook", Duration::from_millis(500));
    let posting = post_in_background(&p, 2700..2800);
    let seen = watch_limit(
        &p,
        "the limit did not fall when the target slowed down",
        |l| l < before_slow,
    );
    posting.join().unwrap();
    println!("limit when the target slowed down: {before_slow} → {seen:?}");
    wait_accepted(&sink, &p, 2800);

    // Every event exactly once; nothing dead, nothing left in flight.
    let count = accepted(&sink);
    let twice: Vec<_> = count.iter().filter(|(_, c)| **c != 1).collect();
    assert!(twice.is_empty(), "accepted more than once: {twice:?}");
    assert_eq!(
        count.keys().copied().collect::<Vec<_>>(),
        (0..2800).collect::<Vec<u64>>()
    );
    assert_eq!(p.api_get("/dlq").1.as_array().map(Vec::len), Some(0));
    wait_until(
        Duration::from_secs(30),
        || concurrency(&p).2 == 0,
        || format!("still in flight: {}", p.api_get("/stats").1),
    );
}
