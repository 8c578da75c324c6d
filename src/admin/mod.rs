//! Admin HTTP: `/healthz`, `/readyz`, `/metrics`, `/api/status`,
//! `/api/health` (see [`health`]) and the mutating endpoints.
//!
//! Inputs: shared [`Metrics`], the spool and the configuration. Outputs:
//! HTTP answers for operators and orchestrators. Never exposes row values,
//! PII, hashes or tokens. Mutating endpoints (`POST /api/test-event`,
//! `/api/destinations/{name}/pause|resume`, `/api/dead-letters/retry`)
//! need `Authorization: Bearer <admin.token>`: 401 without or with a wrong
//! one, 403 when no token is configured. The default bind is loopback.

pub mod grades;
pub mod health;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::spool::Spool;
use crate::telemetry::Metrics;

#[derive(Clone)]
struct AdminState {
    spool: Spool,
    metrics: Arc<Metrics>,
    config: Arc<Config>,
}

/// Binds `config.admin.listen` and serves until `shutdown`.
pub async fn spawn(
    config: &Config,
    spool: Spool,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<JoinHandle<()>> {
    let addr: SocketAddr = config.admin.listen;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let app = Router::new()
        .route("/", get(page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_page))
        .route("/api/status", get(status))
        .route("/api/health", get(health_json))
        .route("/api/test-event", post(test_event))
        .route("/api/destinations/{name}/{action}", post(pause_resume))
        .route("/api/dead-letters/retry", post(retry_dead))
        .with_state(AdminState {
            spool,
            metrics,
            config: Arc::new(config.clone()),
        });
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|s| *s).await;
            })
            .await;
    }))
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    // Ready while a replication session streams; between reconnects (or
    // while a standby waits for the slot) the instance is alive, not ready.
    let streaming = state
        .metrics
        .streaming
        .load(std::sync::atomic::Ordering::Relaxed)
        == 1;
    let paused = state.metrics.delivery.paused();
    if !streaming {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not streaming\n".to_owned(),
        )
    } else if !paused.is_empty() {
        // A destination that needs the operator (bad credentials) is not
        // ready: events pile up until someone fixes it.
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "destination paused: {} (see the logs for the remedy)\n",
                paused.join(", ")
            ),
        )
    } else {
        (StatusCode::OK, "ready\n".to_owned())
    }
}

async fn metrics_page(State(state): State<AdminState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render_prometheus(),
    )
}

async fn status(State(state): State<AdminState>) -> impl IntoResponse {
    let spool = state.spool.clone();
    let result = tokio::task::spawn_blocking(
        move || -> Result<serde_json::Value, crate::spool::SpoolError> {
            let ledger = spool.ledger()?;
            let breakdown = ledger.breakdown()?;
            let totals: serde_json::Map<String, serde_json::Value> = breakdown
                .destinations
                .iter()
                .map(|(dest, kinds)| {
                    let mut t = crate::spool::LedgerCounts::default();
                    for c in kinds.values() {
                        t.pending += c.pending;
                        t.delivered += c.delivered;
                        t.dead += c.dead;
                        t.skipped += c.skipped;
                    }
                    (dest.clone(), serde_json::json!(t))
                })
                .collect();
            Ok(serde_json::json!({
                "checkpoint": spool.checkpoint()?.map(|l| l.to_string()),
                "events": ledger.event_count()?,
                "derive_failures": ledger.derive_failures()?,
                "destinations": totals,
                "derived": breakdown.derived,
                "by_kind": breakdown.destinations,
            }))
        },
    )
    .await;
    match result {
        Ok(Ok(v)) => (StatusCode::OK, Json(v)).into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// `Err(answer)` unless the request carries the configured bearer token.
fn authorized(state: &AdminState, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let Some(token) = &state.config.admin.token else {
        return Err(Box::new((
            StatusCode::FORBIDDEN,
            Json(serde_json::json!({"error": "no admin.token is configured: set it (CAPI_CDC_ADMIN__TOKEN) to enable this endpoint"})),
        )
            .into_response()));
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    // Compare every byte, so the answer time does not tell how much matched.
    let want = token.expose().as_bytes();
    let ok = given.len() == want.len()
        && given
            .bytes()
            .zip(want)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if ok {
        Ok(())
    } else {
        tracing::warn!("admin request refused: missing or wrong bearer token");
        Err(Box::new((StatusCode::UNAUTHORIZED, Json(serde_json::json!({"error": "admin token required: send Authorization: Bearer <admin.token>"}))).into_response()))
    }
}

async fn health_json(State(state): State<AdminState>) -> Response {
    let mut destinations: Vec<&'static str> = Vec::new();
    if state.config.meta.is_some() {
        destinations.push(crate::deliver::meta::DESTINATION);
    }
    if state.config.google.is_some() {
        destinations.push(crate::deliver::google::DESTINATION);
    }
    let (spool, metrics, slot) = (
        state.spool.clone(),
        state.metrics.clone(),
        state.config.source.slot.clone(),
    );
    let config = state.config.clone();
    match tokio::task::spawn_blocking(move || {
        health::health(&spool, &metrics, &slot, &destinations, &|d, k| {
            event_name(&config, d, k)
        })
    })
    .await
    {
        Ok(Ok(v)) => (StatusCode::OK, Json(v)).into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn test_event(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&state, &headers) {
        return *r;
    }
    match crate::cmd::send_test::answers(&state.config, None).await {
        Ok(results) => {
            let results: Vec<serde_json::Value> = results
                .into_iter()
                .map(|(d, outcome)| serde_json::json!({"destination": d, "outcome": outcome}))
                .collect();
            (
                StatusCode::OK,
                Json(serde_json::json!({ "results": results })),
            )
                .into_response()
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

async fn pause_resume(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path((name, action)): Path<(String, String)>,
) -> Response {
    if let Err(r) = authorized(&state, &headers) {
        return *r;
    }
    if !state.metrics.delivery.knows(&name) {
        return (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": format!("no enabled destination {name}")})),
        )
            .into_response();
    }
    let value = match action.as_str() {
        "pause" => 1,
        "resume" => 0,
        _ => {
            return (
                StatusCode::NOT_FOUND,
                Json(serde_json::json!({"error": "use /pause or /resume"})),
            )
                .into_response()
        }
    };
    state.metrics.delivery.destination(&name, |d| {
        d.operator_paused
            .store(value, std::sync::atomic::Ordering::Relaxed)
    });
    tracing::warn!(destination = %name, action = %action, "destination {action}d by an operator");
    (
        StatusCode::OK,
        Json(serde_json::json!({"destination": name, "paused": value == 1})),
    )
        .into_response()
}

#[derive(serde::Deserialize, Default)]
struct RetryFilter {
    destination: Option<String>,
    kind: Option<String>,
}

async fn retry_dead(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: Option<Json<RetryFilter>>,
) -> Response {
    if let Err(r) = authorized(&state, &headers) {
        return *r;
    }
    let f = body.map(|Json(f)| f).unwrap_or_default();
    let spool = state.spool.clone();
    let filter = crate::spool::DeadFilter {
        destination: f.destination,
        kind: f.kind,
        ..Default::default()
    };
    match tokio::task::spawn_blocking(move || {
        spool.ledger().and_then(|mut l| l.retry_dead(&filter))
    })
    .await
    {
        Ok(Ok(n)) => (StatusCode::OK, Json(serde_json::json!({"retried": n}))).into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The health page: one self-contained file, reading `/api/health`.
const PAGE: &str = include_str!("page.html");

async fn page() -> impl IntoResponse {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Everything is inline and same-origin; nothing else may load.
            (
                axum::http::header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:",
            ),
        ],
        PAGE,
    )
}

/// The platform's event name of `kind` at `destination` (Meta: the mapping
/// or DESIGN.md §3's default), which keys the platform's own grades.
pub fn event_name(config: &Config, destination: &str, kind: &str) -> Option<String> {
    match destination {
        "meta" => config
            .meta
            .as_ref()
            .and_then(|m| m.event_names.get(kind).cloned())
            .or_else(|| {
                crate::event::Kind::new(kind)
                    .ok()?
                    .canonical()
                    .map(|c| c.meta.to_owned())
            }),
        _ => None,
    }
}
