//! Meta Conversions API look-alike: `POST /{api_version}/{pixel_id}/events`.
//!
//! Input: requests shaped like Meta's (JSON body, or form fields with `data`
//! as a JSON string; token in the query or body). Output: Meta's success body
//! or Graph error envelope, and accepted events appended to the store.
//!
//! Order of checks, each answering with Meta's code: injected fault → API
//! version (100) → body parse (100) → token (190) → pixel id (100/33) →
//! `data` and every event (100 and CAPI subcodes, see `validate`). One bad
//! event rejects the whole request and nothing is stored, as at Meta.
//!
//! Test hooks under `/_sandbox/meta/`: `events` (GET read-back, DELETE clear)
//! and `faults` (POST queue a fault, DELETE clear queued faults).
//! Logs carry status codes, Graph codes, counts and the pixel id only.

mod error;
mod form;
mod quality;
mod store;
mod validate;

#[cfg(test)]
mod tests;

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};

pub use error::GraphError;
pub use store::{MetaEventsReport, Rejection, StoredEvent, DEDUP_WINDOW_MS};
pub use validate::{MAX_AGE_S, MAX_EVENTS, MAX_FUTURE_S};

use super::{now_ms, Sandbox};
use store::Fault;
pub(super) use store::MetaStore;

/// Top-level body parameters of the `/events` edge (spec §1.2).
const BODY_KEYS: &[&str] = &[
    "data",
    "access_token",
    "test_event_code",
    "partner_agent",
    "namespace_id",
    "upload_id",
    "upload_tag",
    "upload_source",
    "appsecret_proof",
];

/// The Meta routes, to be merged into the sandbox router.
pub(super) fn routes() -> Router<Sandbox> {
    Router::new()
        .route("/{version}/{pixel_id}/events", post(post_events))
        .route(
            "/{version}/dataset_quality",
            axum::routing::get(quality::dataset_quality),
        )
        .route(
            "/_sandbox/meta/events",
            axum::routing::get(get_events).delete(delete_events),
        )
        .route(
            "/_sandbox/meta/faults",
            post(post_fault).delete(delete_faults),
        )
}

async fn post_events(
    State(sandbox): State<Sandbox>,
    Path((version, pixel_id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Take the fault and release the lock before any await.
    let fault = {
        let mut store = sandbox.meta_store();
        store.arrived(now_ms());
        store.take_fault()
    };
    let delay = Duration::from_millis(fault.as_ref().map_or(0, |f| f.delay_ms));

    if let Some(status) = fault.as_ref().and_then(|f| f.status) {
        sandbox.meta_store().count_fault();
        tokio::time::sleep(delay).await;
        tracing::info!(status, "meta sandbox injected fault");
        let retry_after_s = fault.map_or(1, |f| f.retry_after_s);
        return match StatusCode::from_u16(status) {
            Ok(StatusCode::TOO_MANY_REQUESTS) => GraphError::throttled(retry_after_s),
            Ok(s) => GraphError::unavailable(s),
            Err(_) => GraphError::unavailable(StatusCode::INTERNAL_SERVER_ERROR),
        }
        .into_response();
    }

    // Processed (and stored) before the delay: a delayed answer models "Meta
    // got it but the reply was late", which is what makes client timeouts
    // and retries produce duplicates that dedup must absorb.
    let request = Incoming {
        version: &version,
        pixel_id: &pixel_id,
        query: query.as_deref(),
        headers: &headers,
        body: &body,
    };
    let response = respond(&sandbox, check_and_store(&sandbox, &request, now_ms()));
    tokio::time::sleep(delay).await;
    response
}

/// The parts of an events request that the checks read.
struct Incoming<'a> {
    version: &'a str,
    pixel_id: &'a str,
    query: Option<&'a str>,
    headers: &'a HeaderMap,
    body: &'a [u8],
}

/// Runs Meta's checks in order and stores the batch if all pass; returns the event count.
///
/// Synchronous on purpose: the store lock taken here cannot cross an await.
fn check_and_store(
    sandbox: &Sandbox,
    req: &Incoming<'_>,
    now_ms: u64,
) -> Result<usize, GraphError> {
    let config = sandbox.config();
    if !config.api_versions.iter().any(|v| v == req.version) {
        return Err(GraphError::invalid(format!(
            "Unsupported API version {}.",
            req.version
        )));
    }
    let mut params = collect_params(req.query, req.headers, req.body)?;
    match params.get("access_token") {
        None => {
            return Err(GraphError::token(
                "An access token is required to request this resource.",
            ))
        }
        Some(Value::String(t)) if *t == config.meta_access_token => {}
        Some(_) => return Err(GraphError::token("Cannot parse access token")),
    }
    if req.pixel_id != config.meta_pixel_id {
        return Err(GraphError::unknown_object(req.pixel_id));
    }
    let test_event_code = match params.remove("test_event_code") {
        None => None,
        Some(Value::String(code)) if !code.trim().is_empty() => Some(code),
        Some(_) => {
            return Err(GraphError::invalid(
                "Param test_event_code must be a non-empty string.",
            ))
        }
    };
    let data = params.remove("data").map(|d| match d {
        // `data` is typed as a JSON-encoded list; form bodies always send it so.
        Value::String(s) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
        other => other,
    });
    let now_s = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
    let events = validate::validate_data(data.as_ref(), now_s)?;
    sandbox
        .meta_store()
        .accept(events, now_ms, test_event_code.as_deref());
    Ok(events.len())
}

/// Meta's success body, or the error envelope (and the rejection is recorded).
fn respond(sandbox: &Sandbox, checked: Result<usize, GraphError>) -> Response {
    let config = sandbox.config();
    match checked {
        Ok(n) => {
            tracing::info!(pixel_id = %config.meta_pixel_id, events = n, "meta sandbox accepted request");
            let trace = error::fbtrace_id();
            let body = json!({ "events_received": n, "messages": [], "fbtrace_id": trace });
            ([("x-fb-trace-id", trace)], Json(body)).into_response()
        }
        Err(err) => {
            tracing::info!(status = err.status.as_u16(), code = err.code, subcode = ?err.subcode, "meta sandbox rejected request");
            let mut message = err.message.clone();
            if let Some(detail) = &err.user_msg {
                message = format!("{message}: {detail}");
            }
            sandbox.meta_store().reject(Rejection {
                status: err.status.as_u16(),
                code: err.code,
                error_subcode: err.subcode,
                message,
            });
            err.into_response()
        }
    }
}

/// Query parameters, then body parameters (which win), as one JSON map.
fn collect_params(
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Map<String, Value>, GraphError> {
    let not_utf8 = |_| GraphError::invalid("Request is not valid UTF-8.");
    let mut params: Map<String, Value> = form::parse(query.unwrap_or_default())
        .map_err(not_utf8)?
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(params);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let body_params: Map<String, Value> = match mime.as_str() {
        "application/json" => match serde_json::from_slice(body) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return Err(GraphError::invalid(
                    "The request body must be a JSON object.",
                ))
            }
            Err(_) => return Err(GraphError::invalid("The request body is not valid JSON.")),
        },
        "application/x-www-form-urlencoded" => {
            let text = std::str::from_utf8(body)
                .map_err(|_| GraphError::invalid("Request is not valid UTF-8."))?;
            form::parse(text)
                .map_err(not_utf8)?
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect()
        }
        // Graph also takes multipart (curl -F); our sender never uses it, so neither do we.
        _ => return Err(GraphError::invalid(
            "Unsupported Content-Type; send application/json or application/x-www-form-urlencoded.",
        )),
    };
    if let Some(key) = body_params
        .keys()
        .find(|k| !BODY_KEYS.contains(&k.as_str()))
    {
        return Err(GraphError::invalid(format!(
            "Unexpected key \"{key}\" in the request body."
        )));
    }
    params.extend(body_params);
    Ok(params)
}

async fn get_events(State(sandbox): State<Sandbox>) -> Json<MetaEventsReport> {
    Json(sandbox.meta_report())
}

async fn delete_events(State(sandbox): State<Sandbox>) -> StatusCode {
    sandbox.meta_store().clear();
    StatusCode::NO_CONTENT
}

/// Body of `POST /_sandbox/meta/faults`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultSpec {
    /// 429 or a 5xx status; omit for a pure delay.
    status: Option<u16>,
    /// How many of the next event requests are affected.
    #[serde(default = "one")]
    count: u32,
    /// `Retry-After` for 429 (default 1 s, to keep tests fast).
    retry_after_s: Option<u64>,
    /// Delay before answering.
    delay_ms: Option<u64>,
}

fn one() -> u32 {
    1
}

async fn post_fault(State(sandbox): State<Sandbox>, body: Bytes) -> Response {
    let bad =
        |msg: String| (StatusCode::BAD_REQUEST, Json(json!({ "error": msg }))).into_response();
    let spec: FaultSpec = match serde_json::from_slice(&body) {
        Ok(spec) => spec,
        Err(e) => return bad(format!("invalid fault spec: {e}")),
    };
    if let Some(s) = spec.status {
        if s != 429 && !(500..=599).contains(&s) {
            return bad(format!("status {s} is not 429 or 5xx"));
        }
    }
    if spec.status.is_none() && spec.delay_ms.is_none() {
        return bad("a fault needs status and/or delay_ms".into());
    }
    if spec.retry_after_s.is_some() && spec.status != Some(429) {
        return bad("retry_after_s only applies to status 429".into());
    }
    if spec.count == 0 {
        return bad("count must be at least 1".into());
    }
    let mut store = sandbox.meta_store();
    store.push_fault(Fault {
        status: spec.status,
        retry_after_s: spec.retry_after_s.unwrap_or(1),
        delay_ms: spec.delay_ms.unwrap_or(0),
        remaining: spec.count,
    });
    Json(json!({ "pending": store.pending_faults() })).into_response()
}

async fn delete_faults(State(sandbox): State<Sandbox>) -> StatusCode {
    sandbox.meta_store().clear_faults();
    StatusCode::NO_CONTENT
}
