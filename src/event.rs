//! Events as they enter: ids (minted here and only here), the journaled form, parsing of
//! untrusted bodies, and the `Clock` every time-based decision reads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use regorus::Value;
use serde::{Deserialize, Serialize};

/// An event id: milliseconds since the epoch in hex, then 64 random bits, so ids sort by
/// arrival and never collide in practice. Aggregation batches get ids of the same form.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId(String);

impl EventId {
    /// The one constructor of new ids.
    pub fn mint(now_ms: u64) -> EventId {
        EventId(format!("{now_ms:013x}-{:016x}", rand::random::<u64>()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An acknowledged event as the journal keeps it, until it is routed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// `POST /tenant/{route}`: only this route.
    pub route: Option<String>,
    pub received_at_ms: u64,
    pub body: String,
}

/// Why a body is not an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("body is not UTF-8 text: {0}")]
    NotUtf8(String),
    #[error("body is empty; send a JSON object")]
    Empty,
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    #[error("body must be a JSON object, found {0}")]
    NotAnObject(&'static str),
}

/// Parses a body into an event: it must be UTF-8 JSON and a JSON object.
pub fn parse(body: &[u8]) -> Result<Value, ParseError> {
    let text = std::str::from_utf8(body).map_err(|e| ParseError::NotUtf8(e.to_string()))?;
    if text.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    // One parse, straight into the Rego value every route shares, with serde_json (nesting
    // depth is bounded and errors carry line and column). Not `Value::from_json_str`: that
    // also sets up a table to intern object keys for each parse, which costs more than it
    // saves on events (`cargo bench -- parse`).
    let parsed =
        serde_json::from_str::<Value>(text).map_err(|e| ParseError::NotJson(e.to_string()))?;
    let kind = match &parsed {
        Value::Object(_) => return Ok(parsed),
        Value::Array(_) => "an array",
        Value::String(_) => "a string",
        Value::Number(_) => "a number",
        Value::Bool(_) => "a boolean",
        _ => "null",
    };
    Err(ParseError::NotAnObject(kind))
}

/// Where every decision gets the time from, so tests can hold it still or move it.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        now_ms()
    }
}

/// The wall clock in milliseconds since the epoch (0 before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A clock that moves only when told to (tests).
#[derive(Debug, Default)]
pub struct FakeClock(AtomicU64);

impl FakeClock {
    pub fn at(ms: u64) -> FakeClock {
        FakeClock(AtomicU64::new(ms))
    }

    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn set(&self, ms: u64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parse is regorus' own deserializer without its per-parse key interning: the value
    /// must be exactly what `Value::from_json_str` gives, on every fixture and edge case.
    #[test]
    fn parse_gives_what_regorus_gives() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events");
        let mut bodies: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect();
        bodies.extend(
            [
                r#"{"n":[0,-1,1.5,1e300,-0.0,18446744073709551615,-9223372036854775808,12345678901234567890123]}"#,
                r#"{"s":"\u00e9\ud83d\ude00\n","e":{},"a":[],"z":null,"t":true,"f":false}"#,
                r#"{"dup":1,"dup":2,"k":{"dup":[{"x":1},{"x":2}]}}"#,
            ]
            .map(String::from),
        );
        assert!(bodies.len() > 10);
        for body in &bodies {
            let ours = parse(body.as_bytes()).unwrap();
            let theirs = Value::from_json_str(body).unwrap();
            assert_eq!(ours, theirs, "{body}");
            assert_eq!(ours.to_string(), theirs.to_string(), "{body}");
        }
        // Both refuse non-finite numbers.
        assert!(parse(br#"{"x":1e999}"#).is_err());
        assert!(Value::from_json_str(r#"{"x":1e999}"#).is_err());
    }

    #[test]
    fn only_json_objects_are_events() {
        assert!(parse(br#"{"a":1}"#).is_ok());
        let msg = |b: &[u8]| parse(b).unwrap_err().to_string();
        assert!(msg(b"[1]").contains("an array"));
        assert!(msg(b"\"x\"").contains("a string"));
        assert!(msg(b"{nope").contains("not valid JSON"));
        assert!(msg(b"").contains("empty"));
        assert!(msg(&[0xff, 0xfe]).contains("UTF-8"));
        let deep = "[".repeat(10_000);
        assert!(parse(deep.as_bytes()).is_err());
    }

    #[test]
    fn event_ids_are_unique_and_sortable() {
        let a = EventId::mint(now_ms());
        let b = EventId::mint(now_ms());
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 30);
        assert!(EventId::mint(1) < EventId::mint(2));
    }

    #[test]
    fn a_fake_clock_moves_only_when_told() {
        let c = FakeClock::at(1000);
        assert_eq!(c.now_ms(), 1000);
        c.advance(500);
        assert_eq!(c.now_ms(), 1500);
        c.set(7);
        assert_eq!(c.now_ms(), 7);
    }
}
