//! The management API (`/events`, `/stats`, `/dlq`), behind the API key, and the JSON views
//! of what it shows.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::{Intake, error};
use crate::pipeline::ReplayError;
use crate::store::{EventRecord, EventView};

/// Most events `GET /events` returns.
pub const MAX_EVENTS_LISTED: usize = 1000;

type Params = Query<HashMap<String, String>>;

pub(super) fn routes() -> Router<Arc<Intake>> {
    Router::new()
        .route("/events", get(events))
        .route("/events/{id}", get(event))
        .route("/stats", get(stats))
        .route("/dlq", get(dlq_list))
        .route("/dlq/replay", post(dlq_replay_all))
        .route("/dlq/{id}/replay", post(dlq_replay_one))
}

/// The API key from `X-Api-Key`, `Authorization: Bearer`, or `?key=` (Postee's `/reload`).
fn authorized(intake: &Intake, headers: &HeaderMap, query: &HashMap<String, String>) -> bool {
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
pub(super) async fn require_key(
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

fn internal(e: ReplayError) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// An event's history as the API shows it.
pub fn event_json(rec: &EventRecord) -> Value {
    let state = if rec.error.is_some() {
        "failed"
    } else if rec.finished() {
        "done"
    } else {
        "delivering"
    };
    let mut v = json!({
        "id": rec.id,
        "received_at_ms": rec.received_at_ms,
        "routed_at_ms": rec.routed_at_ms,
        "state": state,
        "tenant": rec.tenant,
        "routes": rec.routes,
        "event": serde_json::from_str::<Value>(&rec.body).unwrap_or_default(),
    });
    if let Some(e) = &rec.error {
        v["error"] = json!(e);
    }
    v
}

fn view_json(v: &EventView) -> Value {
    match v {
        EventView::Routed(rec) => event_json(rec),
        EventView::Queued { id, entry } => json!({
            "id": id,
            "received_at_ms": entry.received_at_ms,
            "state": "queued",
            "event": serde_json::from_str::<Value>(&entry.body).unwrap_or_default(),
        }),
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
    let recs = match intake.pipeline.recent_events(limit).await {
        Ok(r) => r,
        Err(e) => return internal(e),
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
    let list: Vec<Value> = recs.iter().map(event_json).collect();
    axum::Json(list).into_response()
}

async fn event(State(intake): State<Arc<Intake>>, Path(id): Path<String>) -> Response {
    match intake.pipeline.event(id.clone()).await {
        Ok(Some(v)) => axum::Json(view_json(&v)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no event {id:?}")),
        Err(e) => internal(e),
    }
}

/// Store size, table counts, fault counters and concurrency limits.
async fn stats(State(intake): State<Arc<Intake>>) -> Response {
    match intake.pipeline.stats().await {
        Ok(s) => axum::Json(s).into_response(),
        Err(e) => internal(e),
    }
}

async fn dlq_list(State(intake): State<Arc<Intake>>) -> Response {
    match intake.pipeline.dead_letters().await {
        Ok(list) => axum::Json(list).into_response(),
        Err(e) => internal(e),
    }
}

async fn replay(intake: &Intake, ids: Option<Vec<String>>) -> Response {
    let one = ids.is_some();
    let r = match intake.pipeline.replay(ids).await {
        Ok(r) => r,
        Err(e) => return internal(e),
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
    let ids: Vec<&str> = r.replayed.iter().map(|d| d.id.as_str()).collect();
    axum::Json(json!({ "replayed": ids })).into_response()
}

async fn dlq_replay_all(State(intake): State<Arc<Intake>>) -> Response {
    replay(&intake, None).await
}

async fn dlq_replay_one(State(intake): State<Arc<Intake>>, Path(id): Path<String>) -> Response {
    replay(&intake, Some(vec![id])).await
}
