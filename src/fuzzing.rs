//! Bodies of the coverage-guided fuzz targets (`fuzz/fuzz_targets/*.rs`) and of their corpus
//! replay on stable (`tests/it/fuzz_corpora.rs`): one function per target, taking the fuzzer's
//! bytes, panicking when a property fails. See docs/fuzzing.md.
//!
//! Every call into postee's internals that a fuzz target makes is in this file, so that
//! moving a module means fixing this file only.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "fuzz targets: a panic is the finding"
)]

use std::path::{Path, PathBuf};

use regorus::Value;

use crate::config::{RouteConfig, problems::Problems};
use crate::event::JournalEntry;
use crate::rego::gojson;
use crate::routing::Condition;
use crate::routing::simple::SimpleCondition;
use crate::store::journal::{self, JournalWriter};

/// A fuzz target: the fuzzer's bytes in, a panic when a property fails.
pub type Target = fn(&[u8]);

/// The targets by name: the name is the cargo-fuzz target and the corpus directory
/// (`fuzz/corpus/<name>/`).
pub const TARGETS: &[(&str, Target)] = &[
    ("event", event),
    ("config", config),
    ("gojson", gojson),
    ("simple_condition", simple_condition),
    ("journal", journal),
];

/// Event parsing (`POST /` bodies): never panics; an accepted event is a JSON object that
/// serde_json also reads as an object, and converts to the same serde_json value (numbers
/// as float64; the legacy renderers go through serde_json); a refused one has a reason.
pub fn event(data: &[u8]) {
    let serde = serde_json::from_slice::<serde_json::Value>(data);
    match crate::event::parse(data) {
        Ok(v) => {
            assert!(matches!(v, Value::Object(_)), "an event is an object");
            assert!(
                matches!(serde, Ok(serde_json::Value::Object(_))),
                "serde_json disagrees: {serde:?}"
            );
            // Numbers as float64, as Postee (Go) reads them: regorus keeps more digits.
            let j = serde_json::to_value(&v).expect("an event converts to serde_json");
            let serde = serde.as_ref().expect("checked above");
            assert!(same(&j, serde), "{j} != {serde}");
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.is_empty());
            assert!(
                !matches!(serde, Ok(serde_json::Value::Object(_))),
                "refused a JSON object: {msg}"
            );
        }
    }
}

/// The config reader on YAML text: never panics; without a config there is an error saying
/// why; every problem has a message.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut problems = Problems::default();
    let cfg = crate::actions::parse_config(text, &mut problems);
    if cfg.is_none() {
        assert!(problems.has_errors(), "no config and no error");
    }
    for p in &problems.items {
        assert!(
            !p.message.is_empty(),
            "a problem without a message at {}",
            p.path
        );
    }
}

/// Go-JSON serialization of any JSON value: never panics; compact and indented output are
/// valid JSON that reads back as the same value, agree with each other and with the
/// serde_json flavour, and contain no raw `<`, `>`, `&`, U+2028, U+2029 or control
/// characters (Go escapes them).
pub fn gojson(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(v) = Value::from_json_str(text) else {
        return;
    };
    let compact = gojson::go_json(&v).expect("any JSON value serializes");
    let indented = gojson::go_json_indent(&v).expect("any JSON value serializes");
    let serde = serde_json::to_value(&v).expect("any JSON value converts");
    assert_eq!(gojson::go_json_serde(&serde), compact);
    for out in [&compact, &indented] {
        // Read back with regorus' parser: serde_json's own `Value` reads an object keyed
        // `$serde_json::private::RawValue` as raw JSON text (found by fuzzing).
        let back = Value::from_json_str(out)
            .unwrap_or_else(|e| panic!("Go-JSON output is not JSON: {e}\n{out}"));
        let back = serde_json::to_value(&back).expect("converts");
        assert!(
            same(&back, &serde),
            "round trip through {out}: {back} != {serde}"
        );
        assert!(
            !out.chars()
                .any(|c| matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}')
                    || (c < ' ' && c != '\n')),
            "unescaped character in {out:?}"
        );
    }
    assert!(!compact.contains('\n'));
    let back = Value::from_json_str(&indented).expect("indented is JSON");
    assert_eq!(
        gojson::go_json(&back).expect("serializes"),
        compact,
        "indenting changes nothing else"
    );
}

/// Equal JSON values, numbers compared as float64 when either is one. Go prints a float64
/// such as 1.7976931343157e19 as `17976931343157000000`, which reads back as an integer,
/// and regorus keeps digits a float64 drops (both found by fuzzing; neither is a bug).
fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match (a, b) {
        (J::Number(x), J::Number(y)) if x.is_f64() || y.is_f64() => x.as_f64() == y.as_f64(),
        (J::Array(x), J::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (J::Object(x), J::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, a)| y.get(k).is_some_and(|b| same(a, b)))
        }
        _ => a == b,
    }
}

/// Events every recognised simple condition is also tried on (beside the fuzzer's own).
const EVENTS: &[&str] = &[
    r#"{}"#,
    r#"{"a":1,"b":"x","c":[1,"2",null,false,{"d":0.5}],"e":{"f":[{"g":"alpine:3"}]}}"#,
    r#"{"a":"1","b":["x",1],"c":{"0":1,"1":"y"},"e":{"f":{"k":{"g":true}}}}"#,
    r#"{"a":-1.5e3,"b":null,"c":"s","e":[[]],"image":"all-in-one","registry":"Aqua"}"#,
    r#"{"vulnerability_summary":{"critical":2,"high":0},"resources":[{"vulnerabilities":[{"name":"CVE-1","fix_version":"1.2"}]}]}"#,
];

/// The simple-condition parser: never panics; what it accepts is valid Rego, and on every
/// event its answer (when it gives one) is the interpreter's, and the VM agrees too.
/// Input: the condition text, optionally followed by a NUL byte and an event to try.
pub fn simple_condition(data: &[u8]) {
    let (text, event) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let Some(simple) = SimpleCondition::parse(text) else {
        return;
    };
    let route = RouteConfig {
        name: "fuzz".into(),
        input: text.into(),
        ..RouteConfig::default()
    };
    let cond = Condition::build(&route, Path::new("/nonexistent"))
        .unwrap_or_else(|e| panic!("{text:?} is in the simple subset but not valid Rego: {e:?}"));
    assert!(cond.uses_simple_path(), "{text:?}");
    let interp = cond.interpreter_only();
    let general = cond.without_simple_path();
    let mut events: Vec<Value> = EVENTS
        .iter()
        .map(|e| Value::from_json_str(e).expect("valid fixture"))
        .collect();
    if let Some(Ok(v)) = event.map(crate::event::parse) {
        events.push(v);
    }
    for e in &events {
        let want = interp.matches(e);
        if let Some(got) = simple.eval(e) {
            assert_eq!(Ok(got), want, "{text:?} on {e}");
        }
        let want = want.unwrap_or(false);
        assert_eq!(cond.matches(e).unwrap_or(false), want, "{text:?} on {e}");
        assert_eq!(
            general.matches(e).unwrap_or(false),
            want,
            "VM: {text:?} on {e}"
        );
    }
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        // In memory when possible: the journal target writes and syncs 16 MiB segments.
        let shm = std::path::Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let p = base.join(format!(
            "postee-fuzz-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Reads fuzzer bytes as a stream of small numbers and strings (zeros once they run out).
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }
    fn take(&mut self, n: usize) -> &[u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
    fn text(&mut self, max: usize) -> String {
        let n = self.u16() as usize % (max + 1);
        String::from_utf8_lossy(self.take(n)).into_owned()
    }
}

const SEGMENT_1: &str = "000000000001.log";
const SEGMENT_2: &str = "000000000002.log";

/// Journal record reading, on torn and corrupted segments: `read` never panics and never
/// returns a record that is not byte for byte what is on disk with a matching CRC; records
/// before the first damaged byte are all read back as written; reopening for writing keeps
/// exactly the records `read` returns, zeroes what follows, and appends after them.
///
/// The first byte chooses: bit 0, reopen after reading; bit 1, write records with
/// [`JournalWriter`] from the bytes that follow and then tear and corrupt the segment at
/// offsets they give (else the bytes are the segment file itself); bit 2, with raw bytes,
/// split them over two segments.
pub fn journal(data: &[u8]) {
    let tmp = TempDir::new();
    let dir = tmp.0.join("j");
    let mut b = Bytes(data);
    let flags = b.byte();
    let reopen = flags & 1 != 0;
    let start = journal::position(1, 0);
    let mut expected: Vec<(u64, u64, String, JournalEntry)> = Vec::new();
    if flags & 2 != 0 {
        // An empty segment file to open: opening makes a new segment 16 MiB of zeros and
        // then scans it for a torn tail, which (instrumented) took most of a run's time.
        std::fs::create_dir_all(&dir).expect("journal dir");
        std::fs::File::create(dir.join(SEGMENT_1)).expect("segment");
        let mut w = JournalWriter::open(&dir).expect("open a new journal");
        assert_eq!(w.end(), start);
        let batches = b.byte() % 3 + 1;
        for _ in 0..batches {
            let n = b.byte() % 4 + 1;
            let items: Vec<(String, JournalEntry)> = (0..n)
                .map(|_| {
                    let id = b.text(300);
                    let route = (b.byte() & 1 == 1).then(|| b.text(40));
                    let received_at_ms = u64::from(b.u16()) << (b.byte() % 48);
                    let body = b.text(600);
                    (
                        id,
                        JournalEntry {
                            route,
                            received_at_ms,
                            body,
                        },
                    )
                })
                .collect();
            let refs: Vec<(&str, &JournalEntry)> =
                items.iter().map(|(id, e)| (id.as_str(), e)).collect();
            let starts = w.write(&refs).expect("journal write");
            for (pos, (id, e)) in starts.into_iter().zip(items) {
                if let Some(last) = expected.last_mut() {
                    assert_eq!(last.1, pos, "records are contiguous");
                }
                let len = encoded(&id, &e).len() as u64;
                // The writer keeps at most 255 bytes of an id.
                let id = truncated(&id, 255).to_string();
                expected.push((pos, pos + len, id, e));
            }
        }
        drop(w);
        // Damage: tears (zeroes from an offset, as a crash leaves a pre-zeroed segment),
        // flipped bytes and overwritten runs, at offsets up to a little past the records.
        let written = expected.last().map_or(0, |r| offset(r.1));
        let path = dir.join(SEGMENT_1);
        // Only the records and a few zeros after them are kept: `read` and reopening treat
        // the end of the file as they treat the zero-filled rest of a segment, and scanning
        // 16 MiB of zeros (instrumented) made a run a hundred times slower.
        let mut bytes = std::fs::read(&path).expect("segment");
        bytes.truncate(written as usize + 48);
        for _ in 0..b.byte() % 4 {
            let at = (b.u16() as u64 % (written + 16)) as usize;
            match b.byte() % 3 {
                0 => bytes[at..written as usize + 16].fill(0),
                1 => bytes[at] ^= b.byte().max(1),
                _ => {
                    let n = b.byte() as usize % 16;
                    let run = b.take(n).to_vec();
                    bytes[at..at + run.len()].copy_from_slice(&run);
                }
            }
        }
        std::fs::write(&path, &bytes).expect("write segment");
    } else {
        std::fs::create_dir_all(&dir).expect("journal dir");
        let rest = b.0;
        let split = if flags & 4 != 0 && !rest.is_empty() {
            rest[0] as usize % rest.len()
        } else {
            rest.len()
        };
        std::fs::write(dir.join(SEGMENT_1), &rest[..split]).expect("write segment");
        if split < rest.len() {
            std::fs::write(dir.join(SEGMENT_2), &rest[split..]).expect("write segment");
        }
    }

    let (records, _) = journal::read(&dir, start, u64::MAX, 10_000).expect("read");
    let segments = [
        std::fs::read(dir.join(SEGMENT_1)).unwrap_or_default(),
        std::fs::read(dir.join(SEGMENT_2)).unwrap_or_default(),
    ];
    let mut prev: Option<u64> = None;
    for r in &records {
        // What `read` returns is on disk, whole, with a matching checksum.
        let seg = &segments[journal::segment_of(r.start) as usize - 1];
        let (from, to) = (offset(r.start) as usize, offset(r.end) as usize);
        assert!(
            from + 8 <= to && to <= seg.len(),
            "record {from}..{to} out of the file"
        );
        let payload = &seg[from + 8..to];
        assert_eq!(
            u32::from_le_bytes(seg[from..from + 4].try_into().expect("4")) as usize,
            payload.len()
        );
        assert_eq!(
            u32::from_le_bytes(seg[from + 4..from + 8].try_into().expect("4")),
            crc32fast::hash(payload),
            "a record with a bad checksum was returned"
        );
        assert_eq!(
            &encoded(&r.id, &r.entry)[8..],
            payload,
            "decoded differently"
        );
        if let Some(p) = prev {
            assert!(
                p == r.start || journal::segment_of(r.start) > journal::segment_of(p),
                "records follow each other"
            );
        }
        prev = Some(r.end);
    }
    if !expected.is_empty() {
        // Every record written before the first damaged byte is read back as written.
        let now = &segments[0];
        let intact = expected
            .iter()
            .take_while(|(s, e, id, entry)| {
                now[offset(*s) as usize..offset(*e) as usize] == encoded(id, entry)[..]
            })
            .count();
        assert!(records.len() >= intact, "lost intact records");
        for (r, (s, e, id, entry)) in records.iter().zip(&expected).take(intact) {
            assert_eq!((r.start, r.end, &r.id), (*s, *e, id));
            assert_eq!(&r.entry.route, &entry.route);
            assert_eq!(r.entry.received_at_ms, entry.received_at_ms);
            assert_eq!(r.entry.body, entry.body);
        }
    }
    if !reopen {
        return;
    }

    // Reopening writes after the last record `read` returned in the last segment and
    // zeroes the rest, then appends where `read` finds it.
    let last_seg = if dir.join(SEGMENT_2).exists() { 2 } else { 1 };
    let kept: Vec<&journal::Record> = records
        .iter()
        .filter(|r| journal::segment_of(r.start) == last_seg)
        .collect();
    let good = kept.last().map_or(0, |r| offset(r.end));
    let mut w = JournalWriter::open(&dir).expect("reopen");
    assert_eq!(
        w.end(),
        journal::position(last_seg, good),
        "reopened at the wrong place"
    );
    let name = if last_seg == 1 { SEGMENT_1 } else { SEGMENT_2 };
    // Past the old end of the file, reopening wrote zeros itself (not read back: 16 MiB).
    let mut bytes = vec![0u8; segments[last_seg as usize - 1].len()];
    std::os::unix::fs::FileExt::read_exact_at(
        &std::fs::File::open(dir.join(name)).expect("segment"),
        &mut bytes,
        0,
    )
    .expect("segment");
    assert!(
        bytes[good as usize..].iter().all(|&x| x == 0),
        "bytes after the last record are zeroed"
    );
    let extra = JournalEntry {
        route: None,
        received_at_ms: 7,
        body: "{\"after\":\"reopen\"}".into(),
    };
    w.write(&[("after-reopen", &extra)]).expect("append");
    let (again, _) = journal::read(&dir, start, u64::MAX, 10_000).expect("read");
    let ids = |rs: &[journal::Record]| rs.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
    let mut want = ids(&records);
    want.push("after-reopen".into());
    assert_eq!(ids(&again), want, "reopen kept exactly what read returned");
}

fn offset(pos: u64) -> u64 {
    pos & ((1 << 40) - 1)
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn truncated(s: &str, max: usize) -> &str {
    let mut n = s.len().min(max);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    &s[..n]
}

/// A record as the journal's module documentation specifies it, written independently of
/// the journal's own encoder.
fn encoded(id: &str, e: &JournalEntry) -> Vec<u8> {
    let id = truncated(id, 255);
    let mut p = vec![id.len() as u8];
    p.extend_from_slice(id.as_bytes());
    match &e.route {
        Some(r) => {
            let r = truncated(r, 0xFFFE);
            p.extend_from_slice(&(r.len() as u16).to_le_bytes());
            p.extend_from_slice(r.as_bytes());
        }
        None => p.extend_from_slice(&0xFFFFu16.to_le_bytes()),
    }
    p.extend_from_slice(&e.received_at_ms.to_le_bytes());
    p.extend_from_slice(e.body.as_bytes());
    let mut out = (p.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&crc32fast::hash(&p).to_le_bytes());
    out.extend_from_slice(&p);
    out
}
