//! The webhook server (spec §2.1): `POST /`, `/scan`, `/tenant/{route}`, `GET /ping`,
//! `/healthz`, `/events`, served alike over HTTP and HTTPS.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use regorus::Value;
use serde_json::json;
use tokio::sync::mpsc;

use crate::app::Event;

/// Default largest accepted request body.
pub const DEFAULT_BODY_LIMIT: usize = 10 * 1024 * 1024;
/// How many recent events `GET /events` keeps (Postee keeps 1000).
pub const RECENT_EVENTS: usize = 1000;

/// An accepted event and the route it is for (`None`: every route).
pub type Job = (Event, Option<String>);

pub struct Intake {
    pub tx: mpsc::Sender<Job>,
    pub accepting: AtomicBool,
    pub route_names: Vec<String>,
    pub recent: Mutex<VecDeque<Bytes>>,
    pub body_limit: usize,
}

impl Intake {
    pub fn new(tx: mpsc::Sender<Job>, route_names: Vec<String>, body_limit: usize) -> Arc<Self> {
        Arc::new(Intake {
            tx,
            accepting: AtomicBool::new(true),
            route_names,
            recent: Mutex::new(VecDeque::with_capacity(RECENT_EVENTS)),
            body_limit,
        })
    }

    /// Stop taking events (shutdown): new posts get 503 and `/healthz` fails.
    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::SeqCst);
    }
}

pub fn router(intake: Arc<Intake>) -> Router {
    let limit = intake.body_limit;
    Router::new()
        .route("/", post(post_all))
        .route("/scan", post(post_all))
        .route("/tenant/{route}", post(post_tenant))
        .route("/ping", get(ping))
        .route("/healthz", get(healthz))
        .route("/events", get(events))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(intake)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

fn unavailable(message: &str, retry_after: u32) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    r
}

/// A new event id: milliseconds since the epoch and randomness, so ids sort by arrival.
pub fn new_event_id() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{ms:013x}-{:016x}", rand::random::<u64>())
}

async fn post_all(
    State(intake): State<Arc<Intake>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    accept(&intake, body, None).await
}

async fn post_tenant(
    State(intake): State<Arc<Intake>>,
    Path(route): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if !intake.route_names.iter().any(|r| r == &route) {
        return error(StatusCode::NOT_FOUND, format!("no route named {route:?}"));
    }
    accept(&intake, body, Some(route)).await
}

async fn accept(
    intake: &Intake,
    body: Result<Bytes, BytesRejection>,
    route: Option<String>,
) -> Response {
    if !intake.accepting.load(Ordering::SeqCst) {
        return unavailable("postee is shutting down; retry later", 5);
    }
    let body = match body {
        Ok(b) => b,
        Err(rej) if rej.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body is larger than the limit of {} bytes",
                    intake.body_limit
                ),
            );
        }
        Err(rej) => return error(rej.status(), format!("cannot read request body: {rej}")),
    };
    let input = match parse_event(&body) {
        Ok(v) => v,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let event = Event {
        id: new_event_id(),
        received_at: SystemTime::now(),
        input,
    };
    let id = event.id.clone();
    match intake.tx.try_send((event, route.clone())) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => {
            return unavailable("too many events are waiting; retry later", 1);
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            return unavailable("postee is shutting down; retry later", 5);
        }
    }
    if route.is_none() {
        let mut recent = intake.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == RECENT_EVENTS {
            recent.pop_front();
        }
        recent.push_back(body);
    }
    tracing::debug!(event_id = %id, route = route.as_deref().unwrap_or("*"), "event accepted");
    (StatusCode::OK, axum::Json(json!({ "id": id }))).into_response()
}

/// Parses a body into an event: it must be UTF-8 JSON and a JSON object.
pub fn parse_event(body: &[u8]) -> Result<Value, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("body is not UTF-8 text: {e}"))?;
    if text.trim().is_empty() {
        return Err("body is empty; send a JSON object".into());
    }
    // serde_json first: it bounds nesting depth and gives line/column in its errors.
    let parsed: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("body is not valid JSON: {e}"))?;
    if !parsed.is_object() {
        return Err(format!(
            "body must be a JSON object, found {}",
            match parsed {
                serde_json::Value::Array(_) => "an array",
                serde_json::Value::String(_) => "a string",
                serde_json::Value::Number(_) => "a number",
                serde_json::Value::Bool(_) => "a boolean",
                _ => "null",
            }
        ));
    }
    Ok(Value::from(parsed))
}

async fn ping() -> Response {
    (StatusCode::OK, axum::Json(json!("Postee alive!"))).into_response()
}

async fn healthz(State(intake): State<Arc<Intake>>) -> Response {
    if !intake.accepting.load(Ordering::SeqCst) || intake.tx.is_closed() {
        unavailable("not accepting events: shutting down", 5)
    } else if intake.tx.capacity() == 0 {
        unavailable("not accepting events: the queue is full", 1)
    } else {
        (StatusCode::OK, axum::Json(json!({ "status": "ok" }))).into_response()
    }
}

/// Postee's `/events`: the last bodies received on `/` and `/scan`, oldest first, as a JSON
/// array (ours are always valid JSON: non-JSON bodies are refused at intake).
async fn events(State(intake): State<Arc<Intake>>) -> Response {
    let recent = intake.recent.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = Vec::with_capacity(recent.iter().map(|b| b.len() + 1).sum::<usize>() + 2);
    out.push(b'[');
    for (i, b) in recent.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b);
    }
    out.push(b']');
    ([(header::CONTENT_TYPE, "application/json")], out).into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_json_objects_are_events() {
        assert!(parse_event(br#"{"a":1}"#).is_ok());
        assert!(parse_event(b"[1]").unwrap_err().contains("an array"));
        assert!(parse_event(b"\"x\"").unwrap_err().contains("a string"));
        assert!(
            parse_event(b"{nope")
                .unwrap_err()
                .contains("not valid JSON")
        );
        assert!(parse_event(b"").unwrap_err().contains("empty"));
        assert!(parse_event(&[0xff, 0xfe]).unwrap_err().contains("UTF-8"));
        let deep = "[".repeat(10_000);
        assert!(parse_event(deep.as_bytes()).is_err());
    }

    #[test]
    fn event_ids_are_unique_and_sortable() {
        let a = new_event_id();
        let b = new_event_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 30);
    }
}
