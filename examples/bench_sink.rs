//! Benchmark sink: answers 200 to every POST and counts what it got. Every JSON body is
//! searched for `"seq"`/`"sent_at_us"` pairs (a postee raw-json message carries one, an
//! Alertmanager webhook carries one per alert in its annotations), to count distinct events,
//! duplicates and end-to-end latency. `GET /stats` returns the figures; `POST /reset` clears.
//!
//! `POST /reset?delay_ms=N` also makes every answer wait N ms (a slow receiver).
//!
//! Usage: bench_sink <port>
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark tool: a panic is a failed run

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::routing::{get, post};

#[derive(Default)]
struct Stats {
    requests: u64,
    seen: HashSet<u64>,
    duplicates: u64,
    latencies_us: Vec<u64>,
    first_us: Option<u64>,
    last_us: Option<u64>,
}

type Shared = Arc<Sink>;

#[derive(Default)]
struct Sink {
    stats: Mutex<Stats>,
    delay_ms: std::sync::atomic::AtomicU64,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn collect(v: &serde_json::Value, out: &mut Vec<(u64, u64)>) {
    match v {
        serde_json::Value::Object(m) => {
            let num = |k: &str| {
                m.get(k).and_then(|x| {
                    x.as_u64()
                        .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
                })
            };
            if let (Some(seq), Some(at)) = (num("seq"), num("sent_at_us")) {
                out.push((seq, at));
            }
            for x in m.values() {
                collect(x, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
        _ => {}
    }
}

async fn hook(State(s): State<Shared>, body: Bytes) -> &'static str {
    let now = now_us();
    let mut found = Vec::new();
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
        collect(&v, &mut found);
    }
    if found.is_empty() {
        // Rendered text (the render scenario): the image name is `bench-<seq>-<sent_at_us>`.
        let text = String::from_utf8_lossy(&body);
        if let Some(i) = text.find("bench-") {
            let mut parts = text[i + 6..].splitn(3, |c: char| !c.is_ascii_digit());
            if let (Some(a), Some(b)) = (parts.next(), parts.next())
                && let (Ok(seq), Ok(at)) = (a.parse(), b.parse())
            {
                found.push((seq, at));
            }
        }
    }
    // One body can name an event twice (Alertmanager repeats a lone alert's annotations in
    // `commonAnnotations`): count each event once per request.
    found.sort_unstable();
    found.dedup_by_key(|(seq, _)| *seq);
    let delay = s.delay_ms.load(std::sync::atomic::Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    let now = if delay > 0 { now_us() } else { now };
    let mut st = s.stats.lock().unwrap();
    st.requests += 1;
    for (seq, at) in found {
        if st.seen.insert(seq) {
            st.latencies_us.push(now.saturating_sub(at));
            st.first_us.get_or_insert(now);
            st.last_us = Some(now);
        } else {
            st.duplicates += 1;
        }
    }
    "ok"
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn stats(State(s): State<Shared>) -> axum::Json<serde_json::Value> {
    let st = s.stats.lock().unwrap();
    let mut l = st.latencies_us.clone();
    l.sort_unstable();
    let span_us = match (st.first_us, st.last_us) {
        (Some(a), Some(b)) if b > a => b - a,
        _ => 0,
    };
    axum::Json(serde_json::json!({
        "requests": st.requests,
        "distinct": st.seen.len(),
        "duplicates": st.duplicates,
        "e2e_p50_us": pct(&l, 0.5),
        "e2e_p99_us": pct(&l, 0.99),
        "delivered_per_s": if span_us > 0 { st.seen.len() as f64 / (span_us as f64 / 1e6) } else { 0.0 },
    }))
}

async fn reset(
    State(s): State<Shared>,
    Query(q): Query<std::collections::HashMap<String, u64>>,
) -> &'static str {
    *s.stats.lock().unwrap() = Stats::default();
    s.delay_ms.store(
        q.get("delay_ms").copied().unwrap_or(0),
        std::sync::atomic::Ordering::Relaxed,
    );
    "ok"
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("usage: bench_sink <port>");
    let state: Shared = Arc::default();
    let app = Router::new()
        .route("/stats", get(stats))
        .route("/reset", post(reset))
        .fallback(hook)
        .with_state(state);
    let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    axum::serve(l, app).await.expect("serve");
}
