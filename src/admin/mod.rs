//! Admin HTTP: `/healthz`, `/readyz`, `/metrics` and `/api/status`.
//!
//! Inputs: shared [`Metrics`] and the spool (read-only). Outputs: HTTP
//! answers for operators and orchestrators. Never exposes row values, PII,
//! hashes or tokens. The health page and per-kind reports come later.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::spool::Spool;
use crate::telemetry::Metrics;

#[derive(Clone)]
struct AdminState {
    spool: Spool,
    metrics: Arc<Metrics>,
}

/// Binds `addr` and serves until `shutdown`.
pub async fn spawn(
    addr: SocketAddr,
    spool: Spool,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_page))
        .route("/api/status", get(status))
        .with_state(AdminState { spool, metrics });
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
