//! The webhook server (spec §2.1): `POST /`, `/scan`, `/tenant/{route}`, `GET /ping`,
//! `/healthz`, plus the management API ([`api`]), served alike over HTTP and HTTPS. It talks
//! to the running service only through the [`Pipeline`] handle.

mod api;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::event::{self, JournalEntry};
use crate::pipeline::{AcceptError, Pipeline};

/// Default largest accepted request body.
pub const DEFAULT_BODY_LIMIT: usize = 10 * 1024 * 1024;

pub struct Intake {
    pipeline: Arc<Pipeline>,
    route_names: Vec<String>,
    body_limit: usize,
    /// Key for the management endpoints (`/events`, `/dlq`, `/stats`).
    api_key: String,
}

impl Intake {
    pub fn new(pipeline: Arc<Pipeline>, api_key: String, body_limit: usize) -> Arc<Self> {
        let route_names = pipeline.route_names();
        Arc::new(Intake {
            pipeline,
            route_names,
            body_limit,
            api_key,
        })
    }
}

pub fn router(intake: Arc<Intake>) -> Router {
    let limit = intake.body_limit;
    // The management API needs the API key; the intake endpoints do not (as in Postee).
    let management = api::routes().route_layer(middleware::from_fn_with_state(
        intake.clone(),
        api::require_key,
    ));
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
    let input = match event::parse(&body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let entry = JournalEntry {
        route,
        received_at_ms: event::now_ms(),
        // event::parse checked it is UTF-8.
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    match intake.pipeline.accept(entry, input).await {
        Ok(id) => (StatusCode::OK, axum::Json(json!({ "id": id }))).into_response(),
        Err(e @ (AcceptError::ShuttingDown | AcceptError::Busy | AcceptError::Full)) => {
            unavailable(&e.to_string(), 5)
        }
        Err(e @ AcceptError::Store(_)) => {
            tracing::error!(error = %e, "event refused");
            unavailable(&e.to_string(), 10)
        }
    }
}

async fn ping() -> Response {
    (StatusCode::OK, axum::Json(json!("Postee alive!"))).into_response()
}

/// 200 when events are taken and every pipeline task runs; else 503 with the reasons.
async fn healthz(State(intake): State<Arc<Intake>>) -> Response {
    let problems = intake.pipeline.problems();
    if !problems.is_empty() {
        let mut r = (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({
                "status": "failing",
                "error": format!("pipeline tasks are down: {}", problems.join("; ")),
                "problems": problems,
            })),
        )
            .into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(5));
        return r;
    }
    if intake.pipeline.is_accepting() {
        (StatusCode::OK, axum::Json(json!({ "status": "ok" }))).into_response()
    } else {
        unavailable(
            "not accepting events (shutting down, queue full or store full)",
            5,
        )
    }
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint")
}
