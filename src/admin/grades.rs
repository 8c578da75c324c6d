//! The platforms' own grades, read at a modest interval and shown beside
//! capi-cdc's estimates:
//!
//! - Meta: the Dataset Quality API (`GET /{version}/dataset_quality`,
//!   spec/meta-capi.md §7): Event Match Quality per event name.
//! - Google: Data Manager's `requestStatus:retrieve` (spec/google.md §2.1)
//!   for the newest accepted requests: how their records were processed
//!   (`SUCCESS`, `PARTIAL_SUCCESS`, `FAILED`, `PROCESSING`).
//!
//! A failure is logged at debug and retried at the next interval; it never
//! affects delivery. Tokens never reach a log line (the Meta request's
//! query carries one: errors print without the URL).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::watch;

use crate::config::Config;
use crate::deliver::http;
use crate::spool::Spool;
use crate::telemetry::Metrics;

/// Google request IDs checked per round.
const GOOGLE_REQUESTS: usize = 20;

#[derive(Deserialize)]
struct Quality {
    #[serde(default)]
    web: Vec<WebQuality>,
}

#[derive(Deserialize)]
struct WebQuality {
    event_name: String,
    event_match_quality: Option<Emq>,
}

#[derive(Deserialize)]
struct Emq {
    composite_score: Option<f64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusAnswer {
    #[serde(default)]
    request_status_per_destination: Vec<PerDestination>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PerDestination {
    #[serde(default)]
    request_status: String,
}

async fn meta_round(
    config: &crate::config::MetaConfig,
    http: &reqwest::Client,
    metrics: &Metrics,
) -> Result<(), String> {
    let mut url = config.base_url.clone();
    let path = format!(
        "{}/{}/dataset_quality",
        url.path().trim_end_matches('/'),
        config.api_version
    );
    url.set_path(&path);
    url.query_pairs_mut()
        .append_pair("dataset_id", &config.pixel_id)
        .append_pair("fields", "web{event_match_quality,event_name}")
        .append_pair("access_token", config.access_token.expose());
    let answer = http::send(http.get(url), "meta dataset_quality")
        .await
        .map_err(|a| format!("{a:?}"))?;
    if answer.status != 200 {
        return Err(format!("meta dataset_quality: HTTP {}", answer.status));
    }
    let q: Quality = serde_json::from_slice(&answer.body).map_err(|e| e.to_string())?;
    let mut grades = metrics.grades.lock().unwrap_or_else(|p| p.into_inner());
    for w in q.web {
        if let Some(score) = w.event_match_quality.and_then(|e| e.composite_score) {
            grades.insert(("meta".into(), w.event_name), score);
        }
    }
    Ok(())
}

async fn google_round(
    config: &crate::config::GoogleConfig,
    oauth: &crate::deliver::google::oauth::Oauth,
    http: &reqwest::Client,
    spool: &Spool,
    metrics: &Metrics,
) -> Result<(), String> {
    let ids = spool
        .ledger()
        .and_then(|l| l.google_request_ids(GOOGLE_REQUESTS))
        .map_err(|e| e.to_string())?;
    if ids.is_empty() {
        return Ok(());
    }
    let token = oauth.token().await.map_err(|e| e.to_string())?;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for id in ids {
        let mut url = config.data_manager_url.clone();
        let path = format!(
            "{}/v1/requestStatus:retrieve",
            url.path().trim_end_matches('/')
        );
        url.set_path(&path);
        url.query_pairs_mut().append_pair("requestId", &id);
        let answer = http::send(
            http.get(url).bearer_auth(token.expose()),
            "google requestStatus:retrieve",
        )
        .await
        .map_err(|a| format!("{a:?}"))?;
        if answer.status != 200 {
            continue;
        }
        if let Ok(s) = serde_json::from_slice::<StatusAnswer>(&answer.body) {
            for d in s.request_status_per_destination {
                *counts.entry(d.request_status).or_default() += 1;
            }
        }
    }
    *metrics
        .google_request_status
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = counts;
    Ok(())
}

/// Reads the grades every `every` until `shutdown`.
pub async fn run(
    config: Arc<Config>,
    spool: Spool,
    metrics: Arc<Metrics>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let client = http::client(Duration::from_secs(10));
    let oauth = config
        .google
        .as_ref()
        .map(crate::deliver::google::oauth::Oauth::new);
    loop {
        if let Some(meta) = &config.meta {
            if let Err(e) = meta_round(meta, &client, &metrics).await {
                tracing::debug!(error = %e, "meta's dataset quality could not be read; next try at the next interval");
            }
        }
        if let (Some(google), Some(oauth)) = (&config.google, &oauth) {
            if let Err(e) = google_round(google, oauth, &client, &spool, &metrics).await {
                tracing::debug!(error = %e, "google's request status could not be read; next try at the next interval");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}
