//! Micro-benchmarks of the per-event work: route conditions, template rendering (VM and
//! interpreter), dedup keys, journal commits. `cargo bench`; results in docs/performance.md.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is a failed run

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use postee::config::RouteConfig;
use postee::event::JournalEntry;
use postee::routing::Condition;
use postee::routing::dedup::dedup_key;
use postee::store::journal::JournalWriter;
use postee::templates::Registry;
use regorus::Value;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/events")
            .join(name),
    )
    .expect("fixture")
}

/// An Aqua scan with 300 vulnerabilities in 100 resources, built from the small fixture.
fn big_scan() -> serde_json::Value {
    let mut scan: serde_json::Value = serde_json::from_str(&fixture("aqua-scan.json")).unwrap();
    let vuln = scan["resources"][0]["vulnerabilities"][0].clone();
    let resource = scan["resources"][0].clone();
    let sev = ["critical", "high", "medium", "low", "negligible"];
    let mut resources = Vec::new();
    for r in 0..100 {
        let mut res = resource.clone();
        res["resource"]["name"] = format!("package-{r}").into();
        let vulns: Vec<serde_json::Value> = (0..3)
            .map(|i| {
                let mut v = vuln.clone();
                v["name"] = format!("CVE-2024-{:05}", r * 3 + i).into();
                v["aqua_severity"] = sev[(r * 3 + i) % 5].into();
                v
            })
            .collect();
        res["vulnerabilities"] = vulns.into();
        resources.push(res);
    }
    scan["resources"] = resources.into();
    scan
}

fn route(input: &str) -> RouteConfig {
    RouteConfig {
        name: "bench".into(),
        input: input.into(),
        ..RouteConfig::default()
    }
}

/// A `postee-route` body of examples/bench_load.rs (the one routed by `cve-7`).
fn bench_event() -> Value {
    Value::from(serde_json::json!({
        "seq": 7, "sent_at_us": 1_700_000_000_000_000u64, "image": "shared/app:1.0",
        "registry": "bench", "vulnerability_summary": {"critical": 1, "high": 3},
        "resources": [{"resource": {"name": "openssl"}, "vulnerabilities": [{"name": "CVE-7"}]}]
    }))
}

/// Route conditions on each evaluation path: `default` is what routing uses (the simple
/// path where the condition is in its subset, else the VM), then the VM and the interpreter.
fn conditions(c: &mut Criterion) {
    let scan = Value::from_json_str(&fixture("aqua-scan.json")).unwrap();
    let event = bench_event();
    let cases = [
        (
            "aqua_scan/contains",
            &scan,
            r#"contains(input.image, "all-in-one")"#,
            true,
        ),
        (
            "aqua_scan/numeric",
            &scan,
            "input.vulnerability_summary.critical > 0",
            true,
        ),
        (
            "aqua_scan/some_over_arrays",
            &scan,
            "some i\ninput.resources[i].vulnerabilities[_].fix_version",
            true,
        ),
        (
            "bench_event/contains",
            &event,
            r#"contains(input.image, "team-0/")"#,
            false,
        ),
        (
            "bench_event/numeric_range",
            &event,
            "input.vulnerability_summary.critical > 40\ninput.vulnerability_summary.critical <= 50",
            false,
        ),
        (
            "bench_event/some_over_arrays",
            &event,
            "some i\ninput.resources[i].vulnerabilities[_].name == \"CVE-7\"",
            true,
        ),
        // Beyond the simple path (a join on `i`): the VM is the default.
        (
            "bench_event/some_join",
            &event,
            "some i\ninput.resources[i].resource.name == \"openssl\"\ninput.resources[i].vulnerabilities[_].name == \"CVE-7\"",
            true,
        ),
    ];
    let mut g = c.benchmark_group("conditions");
    g.warm_up_time(std::time::Duration::from_secs(1));
    g.measurement_time(std::time::Duration::from_secs(3));
    for (name, input, text, want) in cases {
        let cond = Condition::build(&route(text), Path::new("/nonexistent")).unwrap();
        let paths = [
            ("default", cond.clone()),
            ("vm", cond.without_simple_path()),
            ("interpreter", cond.interpreter_only()),
        ];
        for (path, cond) in paths {
            assert_eq!(cond.matches(input).unwrap(), want, "{name} {path}");
            g.bench_function(format!("{name}/{path}"), |b| {
                b.iter(|| black_box(cond.matches(black_box(input)).unwrap()))
            });
        }
        // The router splits a batch over the cores: the same condition on two threads at
        // once, each with its own events (time per evaluation: ideally half the figure above
        // on two free cores).
        if name.starts_with("bench_event/some") {
            let copies: Vec<Value> = (0..2)
                .map(|_| Value::from_json_str(&input.to_json_str().unwrap()).unwrap())
                .collect();
            for (path, cond) in [
                ("default", cond.clone()),
                ("vm", cond.without_simple_path()),
            ] {
                g.bench_function(format!("{name}/{path}/2_threads"), |b| {
                    b.iter_custom(|iters| {
                        let start = std::time::Instant::now();
                        std::thread::scope(|s| {
                            for input in &copies {
                                let cond = &cond;
                                s.spawn(move || {
                                    for _ in 0..iters.div_ceil(2) {
                                        black_box(cond.matches(black_box(input)).unwrap());
                                    }
                                });
                            }
                        });
                        start.elapsed()
                    })
                });
            }
        }
    }
    g.finish();
}

fn templates(c: &mut Criterion) {
    let reg = Registry::new(Path::new("/nonexistent")).unwrap();
    let small = Value::from_json_str(&fixture("aqua-scan.json")).unwrap();
    let big = Value::from(big_scan());
    let raw = reg
        .package_template("raw", "postee.rawmessage.json")
        .unwrap();
    c.bench_function("template/raw_json", |b| {
        b.iter(|| black_box(raw.render(&small, "").unwrap()))
    });
    let html = reg.package_template("html", "postee.vuls.html").unwrap();
    let html_interp = Registry::interpreter_only(&html);
    assert_eq!(
        html.render(&big, "").unwrap(),
        html_interp.render(&big, "").unwrap()
    );
    c.bench_function("template/vuls_html_small/vm", |b| {
        b.iter(|| black_box(html.render(&small, "").unwrap()))
    });
    c.bench_function("template/vuls_html_small/interpreter", |b| {
        b.iter(|| black_box(html_interp.render(&small, "").unwrap()))
    });
    let mut g = c.benchmark_group("template/vuls_html_300");
    g.sample_size(20);
    g.bench_function("vm", |b| {
        b.iter(|| black_box(html.render(&big, "").unwrap()))
    });
    g.bench_function("interpreter", |b| {
        b.iter(|| black_box(html_interp.render(&big, "").unwrap()))
    });
    g.finish();
}

fn dedup(c: &mut Criterion) {
    let scan: serde_json::Value = serde_json::from_str(&fixture("aqua-scan.json")).unwrap();
    let props: Vec<String> = [
        "digest",
        "image",
        "registry",
        "vulnerability_summary.critical",
        "vulnerability_summary.high",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    c.bench_function("dedup_key", |b| {
        b.iter(|| black_box(dedup_key(black_box(&scan), &props)))
    });
}

fn journal(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = JournalWriter::open(&dir.path().join("bench.journal")).unwrap();
    let body = fixture("trivy-report.json");
    let entry = |i: u64| {
        (
            format!("{i:020}"),
            JournalEntry {
                route: None,
                received_at_ms: i,
                body: body.clone(),
            },
        )
    };
    let mut n = 0u64;
    let mut g = c.benchmark_group("journal_commit");
    g.sample_size(20);
    g.bench_function("single_event", |b| {
        b.iter(|| {
            n += 1;
            let (id, e) = entry(n);
            writer.write(&[(&id, &e)]).unwrap();
            writer.file().sync_data().unwrap()
        })
    });
    g.bench_function("batch_of_100_events", |b| {
        b.iter(|| {
            let batch: Vec<_> = (0..100)
                .map(|_| {
                    n += 1;
                    entry(n)
                })
                .collect();
            let items: Vec<(&str, &JournalEntry)> =
                batch.iter().map(|(id, e)| (id.as_str(), e)).collect();
            writer.write(&items).unwrap();
            writer.file().sync_data().unwrap()
        })
    });
    g.finish();
}

/// Parsing a body into the Rego value routing and templates share: postee's parse against
/// regorus' `from_json_str` (which interns object keys for the duration of the parse).
fn parse(c: &mut Criterion) {
    let small = serde_json::to_string(&bench_event()).unwrap();
    let big = serde_json::to_string(&big_scan()).unwrap();
    let mut g = c.benchmark_group("parse");
    for (name, body) in [("bench_event", &small), ("aqua_scan_300_vulns", &big)] {
        g.bench_function(format!("{name}/postee"), |b| {
            b.iter(|| postee::event::parse(black_box(body.as_bytes())).unwrap())
        });
        g.bench_function(format!("{name}/regorus_from_json_str"), |b| {
            b.iter(|| Value::from_json_str(black_box(body)).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, conditions, templates, dedup, journal, parse);
criterion_main!(benches);
