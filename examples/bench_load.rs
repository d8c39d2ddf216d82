//! Benchmark load generator, the same for postee and Alertmanager: POSTs numbered events,
//! open loop at a fixed rate (latency measured from the scheduled send time, so a slow
//! server cannot hide its queueing) or closed loop at the maximum with N connections.
//! Each event carries `seq` and `sent_at_us` for the sink's end-to-end figures.
//!
//! Usage: bench_load <url> <postee-route|postee-render|alertmanager> <rate|max> <count> [connections]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The body of event `seq`. `postee-route`: each event matches exactly one of the ten
/// benchmark routes (by image, by a numeric range, or by a value inside arrays).
fn body(kind: &str, seq: u64, scan: &serde_json::Value) -> String {
    let at = now_us();
    match kind {
        "postee-route" => {
            let k = seq % 10;
            let image = if k < 4 {
                format!("team-{k}/app:1.0")
            } else {
                "shared/app:1.0".into()
            };
            let critical = if (4..7).contains(&k) { k * 10 + 5 } else { 1 };
            let cve = if k >= 7 {
                format!("CVE-{k}")
            } else {
                "CVE-none".into()
            };
            serde_json::json!({
                "seq": seq, "sent_at_us": at, "image": image, "registry": "bench",
                "vulnerability_summary": {"critical": critical, "high": 3},
                "resources": [{"resource": {"name": "openssl"}, "vulnerabilities": [{"name": cve}]}]
            })
            .to_string()
        }
        "postee-render" => {
            let mut s = scan.clone();
            s["image"] = format!("bench-{seq}-{at}").into();
            s.to_string()
        }
        "alertmanager" => serde_json::json!([{
            "labels": {"alertname": "bench", "seq": seq.to_string()},
            "annotations": {"seq": seq.to_string(), "sent_at_us": at.to_string()},
            "startsAt": humantime_now(),
        }])
        .to_string(),
        other => panic!("unknown kind {other}"),
    }
}

fn humantime_now() -> String {
    // RFC 3339 in UTC from the system clock.
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let days = secs / 86400;
    let (h, m, s) = ((secs % 86400) / 3600, (secs % 3600) / 60, secs % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant).
    let z = days as i64 + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    postee::install_crypto_provider();
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 5 {
        eprintln!(
            "usage: bench_load <url> <postee-route|postee-render|alertmanager> <rate|max> <count> [connections]"
        );
        std::process::exit(2);
    }
    let (url, kind, rate, count) = (
        a[1].clone(),
        a[2].clone(),
        a[3].clone(),
        a[4].parse::<u64>().unwrap(),
    );
    let conns: u64 = a.get(5).and_then(|c| c.parse().ok()).unwrap_or(32);
    let scan: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/events/aqua-scan.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(4096)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let lat = Arc::new(std::sync::Mutex::new(Vec::with_capacity(count as usize)));
    let start = Instant::now();
    let send = {
        let (client, url, kind, scan, ok, failed, lat) = (
            client.clone(),
            url.clone(),
            kind.clone(),
            scan.clone(),
            ok.clone(),
            failed.clone(),
            lat.clone(),
        );
        move |seq: u64, scheduled: Instant| {
            let (client, url, kind, scan, ok, failed, lat) = (
                client.clone(),
                url.clone(),
                kind.clone(),
                scan.clone(),
                ok.clone(),
                failed.clone(),
                lat.clone(),
            );
            async move {
                let b = body(&kind, seq, &scan);
                let r = client
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .body(b)
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        lat.lock()
                            .unwrap()
                            .push(scheduled.elapsed().as_micros() as u64);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    };
    if rate == "max" {
        let next = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (next, send) = (next.clone(), send.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let seq = next.fetch_add(1, Ordering::Relaxed);
                    if seq >= count {
                        break;
                    }
                    send(seq, Instant::now()).await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    } else {
        let per_s: f64 = rate.parse().expect("rate is a number or max");
        let mut tasks = tokio::task::JoinSet::new();
        for seq in 0..count {
            let at = start + Duration::from_secs_f64(seq as f64 / per_s);
            tokio::time::sleep_until(at.into()).await;
            tasks.spawn(send(seq, at));
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
    }
    let secs = start.elapsed().as_secs_f64();
    let mut l = lat.lock().unwrap().clone();
    l.sort_unstable();
    let accepted = ok.load(Ordering::Relaxed);
    println!(
        "{}",
        serde_json::json!({
            "sent": count, "accepted": accepted, "failed": failed.load(Ordering::Relaxed),
            "seconds": secs, "accepted_per_s": accepted as f64 / secs,
            "intake_p50_us": pct(&l, 0.5), "intake_p99_us": pct(&l, 0.99),
        })
    );
}
