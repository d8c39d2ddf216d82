//! Benchmark load generator, the same for postee and Alertmanager: POSTs numbered events,
//! open loop at a fixed rate (latency measured from the scheduled send time, so a slow
//! server cannot hide its queueing) or closed loop at the maximum with N connections.
//! Each event carries `seq` and `sent_at_us` for the sink's end-to-end figures.
//!
//! Usage: bench_load <url> <postee-route|postee-render|alertmanager> <rate|max> <count> [connections]
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark tool: a panic is a failed run

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
            format!(
                r#"{{"seq":{seq},"sent_at_us":{at},"image":"{image}","registry":"bench","vulnerability_summary":{{"critical":{critical},"high":3}},"resources":[{{"resource":{{"name":"openssl"}},"vulnerabilities":[{{"name":"{cve}"}}]}}]}}"#
            )
        }
        "postee-render" => {
            let mut s = scan.clone();
            s["image"] = format!("bench-{seq}-{at}").into();
            s.to_string()
        }
        "alertmanager" => serde_json::json!([{
            "labels": {"alertname": "bench", "seq": seq.to_string()},
            "annotations": {"seq": seq.to_string(), "sent_at_us": at.to_string()},
            "startsAt": postee::actions::rfc3339_now(),
        }])
        .to_string(),
        other => panic!("unknown kind {other}"),
    }
}

/// What every request shares.
struct Shared {
    target: Target,
    kind: String,
    scan: serde_json::Value,
    ok: AtomicU64,
    failed: AtomicU64,
    lat: std::sync::Mutex<Vec<u64>>,
}

/// Where to POST: host:port and path (plain HTTP on loopback).
#[derive(Clone)]
struct Target {
    addr: String,
    path: String,
}

impl Target {
    fn parse(url: &str) -> Target {
        let rest = url.strip_prefix("http://").expect("an http:// URL");
        let (addr, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        Target {
            addr: addr.to_string(),
            path: path.to_string(),
        }
    }
}

/// A keep-alive HTTP/1.1 connection and its read buffer.
struct Conn {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

/// POSTs a JSON body over the connection (opened or reopened as needed); returns the status.
/// A deliberately small HTTP/1.1 client: the generator's own cost stays low and identical for
/// every target.
async fn post(conn: &mut Option<Conn>, t: &Target, body: &[u8]) -> std::io::Result<u16> {
    use tokio::io::AsyncWriteExt;
    for attempt in 0..2 {
        if conn.is_none() {
            let stream = tokio::net::TcpStream::connect(&t.addr).await?;
            stream.set_nodelay(true)?;
            *conn = Some(Conn {
                stream,
                buf: Vec::with_capacity(4096),
            });
        }
        let c = conn.as_mut().expect("connected");
        let mut req = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            t.path,
            t.addr,
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        if c.stream.write_all(&req).await.is_err() {
            *conn = None;
            continue;
        }
        match read_response(c).await {
            Ok(status) => return Ok(status),
            // A keep-alive connection the server closed: reconnect once.
            Err(_) if attempt == 0 => *conn = None,
            Err(e) => {
                *conn = None;
                return Err(e);
            }
        }
    }
    Err(std::io::Error::other("connection closed"))
}

/// Reads one response (Content-Length or chunked body); returns its status.
async fn read_response(c: &mut Conn) -> std::io::Result<u16> {
    use tokio::io::AsyncReadExt;
    let eof = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed");
    let head_end = loop {
        if let Some(i) = c.buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = c.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(eof());
        }
        c.buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&c.buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let body = &c.buf[head_end..];
        let complete = match (length, chunked) {
            (Some(n), _) => body.len() >= n,
            (None, true) => body.windows(5).any(|w| w == b"0\r\n\r\n"),
            (None, false) => true,
        };
        if complete {
            let used = match length {
                Some(n) => head_end + n,
                None if chunked => {
                    head_end
                        + body
                            .windows(5)
                            .position(|w| w == b"0\r\n\r\n")
                            .expect("found")
                        + 5
                }
                None => head_end,
            };
            c.buf.drain(..used);
            return Ok(status);
        }
        let mut chunk = [0u8; 4096];
        let n = c.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(eof());
        }
        c.buf.extend_from_slice(&chunk[..n]);
    }
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
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
    let shared = Arc::new(Shared {
        target: Target::parse(&url),
        kind: kind.clone(),
        scan,
        ok: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        lat: std::sync::Mutex::new(Vec::with_capacity(count as usize)),
    });
    let start = Instant::now();
    // One keep-alive connection per worker, reused for every request it sends.
    let send = {
        let shared = shared.clone();
        move |conn: Arc<tokio::sync::Mutex<Option<Conn>>>, seq: u64, scheduled: Instant| {
            let sh = shared.clone();
            async move {
                let b = body(&sh.kind, seq, &sh.scan);
                let mut c = conn.lock().await;
                match post(&mut c, &sh.target, b.as_bytes()).await {
                    Ok(status) if (200..300).contains(&status) => {
                        sh.ok.fetch_add(1, Ordering::Relaxed);
                        sh.lat
                            .lock()
                            .unwrap()
                            .push(scheduled.elapsed().as_micros() as u64);
                    }
                    _ => {
                        sh.failed.fetch_add(1, Ordering::Relaxed);
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
            let conn = Arc::new(tokio::sync::Mutex::new(None));
            tasks.push(tokio::spawn(async move {
                loop {
                    let seq = next.fetch_add(1, Ordering::Relaxed);
                    if seq >= count {
                        break;
                    }
                    send(conn.clone(), seq, Instant::now()).await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    } else {
        let per_s: f64 = rate.parse().expect("rate is a number or max");
        let mut tasks = tokio::task::JoinSet::new();
        // A pool of connections; a request takes a free one (or opens one more).
        let pool: Vec<Arc<tokio::sync::Mutex<Option<Conn>>>> = (0..conns.max(256))
            .map(|_| Arc::new(tokio::sync::Mutex::new(None)))
            .collect();
        for seq in 0..count {
            let at = start + Duration::from_secs_f64(seq as f64 / per_s);
            tokio::time::sleep_until(at.into()).await;
            let conn = pool
                .iter()
                .find(|c| c.try_lock().is_ok())
                .cloned()
                .unwrap_or_else(|| Arc::new(tokio::sync::Mutex::new(None)));
            tasks.spawn(send(conn, seq, at));
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
    }
    let secs = start.elapsed().as_secs_f64();
    let mut l = shared.lat.lock().unwrap().clone();
    l.sort_unstable();
    let accepted = shared.ok.load(Ordering::Relaxed);
    println!(
        "{}",
        serde_json::json!({
            "sent": count, "accepted": accepted, "failed": shared.failed.load(Ordering::Relaxed),
            "seconds": secs, "accepted_per_s": accepted as f64 / secs,
            "intake_p50_us": pct(&l, 0.5), "intake_p99_us": pct(&l, 0.99),
        })
    );
}
