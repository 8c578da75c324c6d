//! Test hooks under `/_sandbox/google/` (never part of Google's API).
//!
//! - `GET /_sandbox/google/report` — [`super::GoogleReport`] as JSON; `DELETE` clears it
//!   (events, statuses, rejections, counters, faults; actions and tokens stay).
//! - `POST /_sandbox/google/faults` — queue a [`super::GoogleFault`] (same JSON as its
//!   serde form, e.g. `{"kind":"server_error","endpoint":"ingest","status":503}`);
//!   `DELETE` drops queued faults.
//! - `POST /_sandbox/google/tokens/expire` — expire every access token now.
//! - `POST /_sandbox/google/conversion_actions` — seed an action past its hold:
//!   `{"name": "...", "category": "PURCHASE"}` → `{"id", "resourceName"}`.
//! - `POST /_sandbox/google/conversion_actions/{id}/backdate` — `{"hours": 7}`.
//! - `POST /_sandbox/google/clock` — `{"advance_s": 3600}` moves the sandbox clock.
//!
//! Input: small JSON bodies (unknown keys refused). Output: JSON or 204.
//! Hook calls are not counted in the report's request counters.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

use super::ads::CATEGORIES;
use super::{GoogleFault, GoogleReport, GoogleSandbox};

/// The hook routes, merged into [`super::routes`].
pub(super) fn routes() -> Router<GoogleSandbox> {
    Router::new()
        .route(
            "/_sandbox/google/report",
            get(get_report).delete(delete_report),
        )
        .route(
            "/_sandbox/google/faults",
            post(post_fault).delete(delete_faults),
        )
        .route("/_sandbox/google/tokens/expire", post(post_expire))
        .route("/_sandbox/google/conversion_actions", post(post_seed))
        .route(
            "/_sandbox/google/conversion_actions/{id}/backdate",
            post(post_backdate),
        )
        .route("/_sandbox/google/clock", post(post_clock))
}

fn bad(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("invalid hook body: {e}"))
}

async fn get_report(State(sandbox): State<GoogleSandbox>) -> Json<GoogleReport> {
    Json(sandbox.report())
}

async fn delete_report(State(sandbox): State<GoogleSandbox>) -> StatusCode {
    sandbox.clear();
    StatusCode::NO_CONTENT
}

async fn post_fault(State(sandbox): State<GoogleSandbox>, bytes: Bytes) -> Response {
    let fault: GoogleFault = match body(&bytes) {
        Ok(f) => f,
        Err(e) => return bad(e),
    };
    match sandbox.push_fault(fault) {
        Ok(()) => Json(json!({ "pending": sandbox.store().pending_faults() })).into_response(),
        Err(e) => bad(e.to_string()),
    }
}

async fn delete_faults(State(sandbox): State<GoogleSandbox>) -> StatusCode {
    sandbox.clear_faults();
    StatusCode::NO_CONTENT
}

async fn post_expire(State(sandbox): State<GoogleSandbox>) -> StatusCode {
    sandbox.expire_access_tokens();
    StatusCode::NO_CONTENT
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Seed {
    name: String,
    #[serde(default = "purchase")]
    category: String,
}

fn purchase() -> String {
    "PURCHASE".into()
}

async fn post_seed(State(sandbox): State<GoogleSandbox>, bytes: Bytes) -> Response {
    let seed: Seed = match body(&bytes) {
        Ok(s) => s,
        Err(e) => return bad(e),
    };
    if seed.name.trim().is_empty() || !CATEGORIES[2..].contains(&seed.category.as_str()) {
        return bad("name must be non-empty and category a ConversionActionCategory name".into());
    }
    let id = sandbox.seed_conversion_action(&seed.name, &seed.category);
    let resource = format!(
        "customers/{}/conversionActions/{id}",
        sandbox.config().operating_account_id
    );
    Json(json!({ "id": id, "resourceName": resource })).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Backdate {
    hours: f64,
}

async fn post_backdate(
    State(sandbox): State<GoogleSandbox>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Response {
    let b: Backdate = match body(&bytes) {
        Ok(b) => b,
        Err(e) => return bad(e),
    };
    if !(b.hours.is_finite() && b.hours >= 0.0) {
        return bad("hours must be a non-negative number".into());
    }
    match sandbox.backdate_conversion_action(&id, Duration::from_secs_f64(b.hours * 3600.0)) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": e.to_string() })),
        )
            .into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Clock {
    advance_s: u64,
}

async fn post_clock(State(sandbox): State<GoogleSandbox>, bytes: Bytes) -> Response {
    let c: Clock = match body(&bytes) {
        Ok(c) => c,
        Err(e) => return bad(e),
    };
    sandbox.advance_clock(Duration::from_secs(c.advance_s));
    StatusCode::NO_CONTENT.into_response()
}
