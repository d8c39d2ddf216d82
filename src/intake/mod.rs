//! The webhook server (spec §2.1): `POST /`, `/scan`, `/tenant/{route}`, `GET /ping`,
//! `/healthz`, and the management API (`/events`, `/dlq`, with the API key), served alike
//! over HTTP and HTTPS.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use regorus::Value;
use serde_json::json;

use crate::dispatch::{AcceptError, Dispatcher};
use crate::store::{self, JournalEntry};

/// Default largest accepted request body.
pub const DEFAULT_BODY_LIMIT: usize = 10 * 1024 * 1024;
/// Most events `GET /events` returns.
pub const MAX_EVENTS_LISTED: usize = 1000;

pub struct Intake {
    pub dispatcher: Arc<Dispatcher>,
    pub route_names: Vec<String>,
    pub body_limit: usize,
    /// Key for the management endpoints (`/events`, `/dlq`).
    pub api_key: String,
}

impl Intake {
    pub fn new(dispatcher: Arc<Dispatcher>, api_key: String, body_limit: usize) -> Arc<Self> {
        let route_names = dispatcher
            .app
            .routes
            .iter()
            .map(|r| r.name.clone())
            .collect();
        Arc::new(Intake {
            dispatcher,
            route_names,
            body_limit,
            api_key,
        })
    }
}

pub fn router(intake: Arc<Intake>) -> Router {
    let limit = intake.body_limit;
    // The management API needs the API key; the intake endpoints do not (as in Postee).
    let management = Router::new()
        .route("/events", get(events))
        .route("/events/{id}", get(event))
        .route("/stats", get(stats))
        .route("/dlq", get(dlq_list))
        .route("/dlq/replay", post(dlq_replay_all))
        .route("/dlq/{id}/replay", post(dlq_replay_one))
        .route_layer(middleware::from_fn_with_state(intake.clone(), require_key));
    Router::new()
        .route("/", post(post_all))
        .route("/scan", post(post_all))
        .route("/tenant/{route}", post(post_tenant))
        .route("/ping", get(ping))
        .route("/healthz", get(healthz))
        .merge(management)
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

/// Answers 200 with the event id only once the event is committed to disk.
async fn accept(
    intake: &Intake,
    body: Result<Bytes, BytesRejection>,
    route: Option<String>,
) -> Response {
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
    let entry = JournalEntry {
        route,
        received_at_ms: store::now_ms(),
        // parse_event checked it is UTF-8.
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    match intake.dispatcher.accept(entry, input).await {
        Ok(id) => (StatusCode::OK, axum::Json(json!({ "id": id }))).into_response(),
        Err(e @ AcceptError::ShuttingDown) => unavailable(&e.to_string(), 5),
        Err(e @ (AcceptError::Busy | AcceptError::Full)) => unavailable(&e.to_string(), 5),
        Err(e @ AcceptError::Store(_)) => {
            tracing::error!(error = %e, "event refused");
            unavailable(&e.to_string(), 10)
        }
    }
}

/// Parses a body into an event: it must be UTF-8 JSON and a JSON object.
pub fn parse_event(body: &[u8]) -> Result<Value, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("body is not UTF-8 text: {e}"))?;
    if text.trim().is_empty() {
        return Err("body is empty; send a JSON object".into());
    }
    // One parse, straight into the Rego value every route shares (regorus parses with
    // serde_json: nesting depth is bounded and errors carry line and column).
    let parsed =
        Value::from_json_str(text).map_err(|e| format!("body is not valid JSON: {e:#}"))?;
    let kind = match &parsed {
        Value::Object(_) => return Ok(parsed),
        Value::Array(_) => "an array",
        Value::String(_) => "a string",
        Value::Number(_) => "a number",
        Value::Bool(_) => "a boolean",
        _ => "null",
    };
    Err(format!("body must be a JSON object, found {kind}"))
}

async fn ping() -> Response {
    (StatusCode::OK, axum::Json(json!("Postee alive!"))).into_response()
}

async fn healthz(State(intake): State<Arc<Intake>>) -> Response {
    if intake.dispatcher.is_accepting() {
        (StatusCode::OK, axum::Json(json!({ "status": "ok" }))).into_response()
    } else {
        unavailable(
            "not accepting events (shutting down, queue full or store full)",
            5,
        )
    }
}

/// The API key from `X-Api-Key`, `Authorization: Bearer`, or `?key=` (Postee's `/reload`).
fn authorized(
    intake: &Intake,
    headers: &HeaderMap,
    query: &std::collections::HashMap<String, String>,
) -> bool {
    let given = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_string)
        })
        .or_else(|| query.get("key").cloned());
    match given {
        // Compare without an early exit on the first differing byte.
        Some(g) if g.len() == intake.api_key.len() => {
            g.bytes()
                .zip(intake.api_key.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
        }
        _ => false,
    }
}

/// Middleware of the management API: 401 without the right key.
async fn require_key(
    State(intake): State<Arc<Intake>>,
    Query(q): Params,
    req: Request,
    next: Next,
) -> Response {
    if authorized(&intake, req.headers(), &q) {
        next.run(req).await
    } else {
        error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong API key (send it as X-Api-Key; see docs/operations.md)",
        )
    }
}

type Params = Query<std::collections::HashMap<String, String>>;

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, store::StoreError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// Recent events with, per route, whether it matched and, per action, the delivery status.
/// `?format=postee` gives Postee's form: the raw bodies posted to `/` and `/scan`, oldest first.
async fn events(State(intake): State<Arc<Intake>>, Query(q): Params) -> Response {
    let postee_form = q.get("format").is_some_and(|f| f == "postee");
    // Postee's form keeps its last 1000 bodies.
    let default = if postee_form { MAX_EVENTS_LISTED } else { 100 };
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(default)
        .clamp(1, MAX_EVENTS_LISTED);
    let store = intake.dispatcher.store.clone();
    let recs = match blocking(move || store.recent_events(limit)).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if postee_form {
        let mut out = b"[".to_vec();
        let mut first = true;
        // Bodies received on `/` and `/scan` only: not tenant events, not aggregation batches.
        for r in recs
            .iter()
            .rev()
            .filter(|r| r.tenant.is_none() && !r.body.starts_with("{\"aggregated\":"))
        {
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(r.body.as_bytes());
        }
        out.push(b']');
        return ([(header::CONTENT_TYPE, "application/json")], out).into_response();
    }
    let list: Vec<serde_json::Value> = recs.iter().map(store::event_json).collect();
    axum::Json(list).into_response()
}

async fn event(State(intake): State<Arc<Intake>>, Path(id): Path<String>) -> Response {
    let store = intake.dispatcher.store.clone();
    let key = id.clone();
    match blocking(move || store.event(&key)).await {
        Ok(Some(v)) => axum::Json(v).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no event {id:?}")),
        Err(resp) => resp,
    }
}

/// Store size and table counts.
async fn stats(State(intake): State<Arc<Intake>>) -> Response {
    let store = intake.dispatcher.store.clone();
    let full = intake
        .dispatcher
        .full
        .load(std::sync::atomic::Ordering::SeqCst);
    let unrouted = intake.dispatcher.unrouted();
    match blocking(move || Ok((store.size()?, store.journal_bytes()?, store.counts()?))).await {
        Ok((size, journal_bytes, mut counts)) => {
            // Not routed yet: waiting in the journal.
            counts.insert("journal", unrouted);
            axum::Json(json!({
                "store_bytes": size,
                "journal_bytes": journal_bytes,
                "store_full": full,
                "counts": counts,
            }))
            .into_response()
        }
        Err(resp) => resp,
    }
}

async fn dlq_list(State(intake): State<Arc<Intake>>) -> Response {
    let store = intake.dispatcher.store.clone();
    match blocking(move || store.dead_letters()).await {
        Ok(list) => axum::Json(list).into_response(),
        Err(resp) => resp,
    }
}

async fn replay(intake: &Intake, ids: Option<Vec<String>>) -> Response {
    let store = intake.dispatcher.store.clone();
    let dispatcher = intake.dispatcher.clone();
    let one = ids.is_some();
    // Only dead letters whose action is configured now can be sent.
    let res =
        blocking(move || store.replay(ids.as_deref(), &|a| dispatcher.app.actions.contains_key(a)))
            .await;
    let r = match res {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if one {
        if let Some(id) = r.unknown.first() {
            return error(StatusCode::NOT_FOUND, format!("no dead letter {id:?}"));
        }
        if let Some(d) = r.skipped.first() {
            return error(
                StatusCode::CONFLICT,
                format!(
                    "action `{}` is not configured (or not enabled); enable it, then replay",
                    d.delivery.action
                ),
            );
        }
    }
    for d in &r.replayed {
        intake.dispatcher.notify(&d.action);
    }
    let ids: Vec<&str> = r.replayed.iter().map(|d| d.id.as_str()).collect();
    axum::Json(json!({ "replayed": ids })).into_response()
}

async fn dlq_replay_all(State(intake): State<Arc<Intake>>) -> Response {
    replay(&intake, None).await
}

async fn dlq_replay_one(State(intake): State<Arc<Intake>>, Path(id): Path<String>) -> Response {
    replay(&intake, Some(vec![id])).await
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
