//! Data Manager ingestion look-alike: `POST /v1/events:ingest` and
//! `GET /v1/requestStatus:retrieve`.
//!
//! Input: `IngestEventsRequest` JSON with `Authorization: Bearer <token>`;
//! a `requestId` (or `request_id`) query parameter for the status call.
//! Output: `IngestEventsResponse` `{"requestId"}` and
//! `RetrieveRequestStatusResponse` `{"requestStatusPerDestination":[...]}`
//! (proto3 JSON: int64 counts as strings), or `google.rpc.Status` errors.
//!
//! Order of checks: bearer token (401) → injected fault → JSON syntax →
//! [`super::validate`] (400 / 403) → store. One bad field rejects the whole
//! request and stores nothing. `validateOnly` answers with a `requestId`
//! but stores nothing and keeps no status (Google: status "can only be
//! retrieved for requests that succeed and don't have validate_only=true",
//! `ErrorReason.INVALID_REQUEST_ID`).
//!
//! Request status is reported as final at once: `SUCCESS`, or
//! `PARTIAL_SUCCESS` / `FAILED` with `PROCESSING_ERROR_REASON_DENIED_CONSENT`
//! counts for events whose effective `adUserData` is `CONSENT_DENIED`
//! (Google reports `PROCESSING` first; the sandbox skips that phase).
//!
//! Protos: `google/ads/datamanager/v1/ingestion_service.proto`,
//! `request_status_per_destination.proto`, `processing_errors.proto`.
//! Logs: counts, status and the operating account id only.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::error::{Api, ApiError};
use super::failure::Failure;
use super::fault::{Fired, GoogleEndpoint};
use super::oauth::{check_bearer, parse_form};
use super::schema::{Path, Violation};
use super::store::{Accepted, DestinationStatus, NewEvent};
use super::validate::{self, Context, Rejected};
use super::{ids, GoogleSandbox};

/// `POST /v1/events:ingest`.
pub(super) async fn post_ingest(
    State(sandbox): State<GoogleSandbox>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (result, delay_ms) = ingest(&sandbox, &headers, &body);
    let response = sandbox.finish(GoogleEndpoint::Ingest, result);
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    response
}

/// `GET /v1/requestStatus:retrieve?requestId=...`.
pub(super) async fn get_request_status(
    State(sandbox): State<GoogleSandbox>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (result, delay_ms) = request_status(&sandbox, query.as_deref(), &headers);
    let response = sandbox.finish(GoogleEndpoint::RequestStatus, result);
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    response
}

/// Auth and fault handling shared by both endpoints: `(now, delay, reject_event)`.
fn admit(
    sandbox: &GoogleSandbox,
    headers: &HeaderMap,
    endpoint: GoogleEndpoint,
) -> Result<(i64, u64, Option<usize>), Failure> {
    let mut store = sandbox.store();
    let now = store.now_ms();
    check_bearer(&store, headers, now).map_err(ApiError::unauthenticated)?;
    match store.take_fault(endpoint, Api::DataManager) {
        Some(Fired::Fail(f)) => Err(f),
        Some(Fired::Delay(ms)) => Ok((now, ms, None)),
        Some(Fired::RejectEvent(i)) => Ok((now, 0, Some(i))),
        Some(Fired::InvalidGrant) | None => Ok((now, 0, None)),
    }
}

fn ingest(
    sandbox: &GoogleSandbox,
    headers: &HeaderMap,
    body: &[u8],
) -> (Result<Response, Failure>, u64) {
    let (now, delay_ms, reject_event) = match admit(sandbox, headers, GoogleEndpoint::Ingest) {
        Ok(admitted) => admitted,
        Err(f) => return (Err(f), 0),
    };
    (check_and_store(sandbox, body, now, reject_event), delay_ms)
}

fn check_and_store(
    sandbox: &GoogleSandbox,
    body: &[u8],
    now: i64,
    reject_event: Option<usize>,
) -> Result<Response, Failure> {
    let config = sandbox.config();
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::unparseable_body(&format!("{e}.")))?;
    // Validation runs on a snapshot of the actions, outside the lock.
    let actions = sandbox.store().action_map();
    let ctx = Context {
        now_ms: now,
        operating_account_id: &config.operating_account_id,
        login_account_id: config.login_account_id.as_deref(),
        actions: &actions,
        reject_event,
    };
    let checked = validate::validate_ingest(&value, &ctx).map_err(|rejected| match rejected {
        Rejected::PermissionDenied => ApiError::dm_permission_denied(),
        Rejected::Invalid(violations) => match violations.iter().find(|v| v.parse) {
            Some(first) => ApiError::invalid_json(first),
            None => ApiError::dm_invalid(&violations),
        },
    })?;

    let request_id = ids::uuid();
    let mut store = sandbox.store();
    if checked.validate_only {
        store.count_validate_only();
        tracing::info!(
            operating_account = %config.operating_account_id,
            events = checked.events.len(),
            "google sandbox validated ingest (validateOnly)"
        );
        return Ok(Json(json!({ "requestId": request_id })).into_response());
    }

    let mut statuses: Vec<DestinationStatus> = checked
        .destinations
        .iter()
        .map(|d| DestinationStatus {
            destination: d.raw.clone(),
            record_count: 0,
            denied_consent: 0,
        })
        .collect();
    let (mut stored, mut duplicates) = (0u64, 0u64);
    for event in &checked.events {
        for &t in &event.targets {
            let (Some(dest), Some(status)) = (checked.destinations.get(t), statuses.get_mut(t))
            else {
                continue;
            };
            status.record_count += 1;
            if event.ad_user_data == "CONSENT_DENIED" {
                status.denied_consent += 1;
            }
            let new = NewEvent {
                action_id: dest.action_id,
                transaction_id: event.transaction_id,
                event: event.raw,
                ad_user_data: event.ad_user_data,
                ad_personalization: event.ad_personalization,
                conversion_value: event.conversion_value,
                currency: event.currency,
            };
            match store.accept(&new, &request_id, now) {
                Accepted::New => stored += 1,
                Accepted::Duplicate => duplicates += 1,
            }
        }
    }
    store.put_status(request_id.clone(), statuses);
    tracing::info!(
        operating_account = %config.operating_account_id,
        events = checked.events.len(),
        destinations = checked.destinations.len(),
        stored,
        duplicates,
        "google sandbox accepted ingest"
    );
    Ok(Json(json!({ "requestId": request_id })).into_response())
}

fn request_status(
    sandbox: &GoogleSandbox,
    query: Option<&str>,
    headers: &HeaderMap,
) -> (Result<Response, Failure>, u64) {
    let delay_ms = match admit(sandbox, headers, GoogleEndpoint::RequestStatus) {
        Ok((_, delay_ms, _)) => delay_ms,
        Err(f) => return (Err(f), 0),
    };
    (status_body(sandbox, query), delay_ms)
}

fn status_body(sandbox: &GoogleSandbox, query: Option<&str>) -> Result<Response, Failure> {
    let params = parse_form(query.unwrap_or_default()).unwrap_or_default();
    let id = params
        .get("requestId")
        .or_else(|| params.get("request_id"))
        .filter(|s| !s.is_empty());
    let Some(id) = id else {
        return Err(ApiError::dm_invalid(&[Violation {
            path: Path::root().field("requestId"),
            description: "request_id is required.".into(),
            reason: Some("REQUIRED_FIELD_MISSING"),
            parse: false,
        }])
        .into());
    };
    let store = sandbox.store();
    let statuses = store
        .status(id)
        .ok_or_else(ApiError::dm_unknown_request_id)?;
    let per_destination: Vec<Value> = statuses.iter().map(destination_status).collect();
    Ok(Json(json!({ "requestStatusPerDestination": per_destination })).into_response())
}

/// One `RequestStatusPerDestination` in proto3 JSON.
fn destination_status(s: &DestinationStatus) -> Value {
    let status = match (s.denied_consent, s.record_count) {
        (0, _) => "SUCCESS",
        (denied, total) if denied == total => "FAILED",
        _ => "PARTIAL_SUCCESS",
    };
    let mut v = json!({
        "destination": s.destination,
        "requestStatus": status,
        "eventsIngestionStatus": { "recordCount": s.record_count.to_string() },
    });
    if s.denied_consent > 0 {
        v["errorInfo"] = json!({ "errorCounts": [{
            "recordCount": s.denied_consent.to_string(),
            "reason": "PROCESSING_ERROR_REASON_DENIED_CONSENT",
        }]});
    }
    v
}
