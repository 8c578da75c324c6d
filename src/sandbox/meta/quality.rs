//! Meta's Dataset Quality API look-alike: `GET /{version}/dataset_quality
//! ?dataset_id=…&fields=web{event_match_quality,event_name}&access_token=…`
//! (spec/meta-capi.md §7): per event name, an Event Match Quality
//! `composite_score` out of 10 and `match_key_feedback` coverage.
//!
//! Meta's real score is not published; the sandbox grades what it received
//! with its own coverage formula (email 4, phone 2, IP 1.5, fbc or fbp 1.5,
//! external_id 1, out of 10), independent of capi-cdc's own estimate, so
//! the health page shows two numbers that can disagree.

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::{form, GraphError, Sandbox};

const KEYS: [(&str, &str, f64); 6] = [
    ("em", "email", 4.0),
    ("ph", "phone", 2.0),
    ("client_ip_address", "ip_address", 1.5),
    ("fbc", "click_id", 1.5),
    ("fbp", "browser_id", 0.0),
    ("external_id", "external_id", 1.0),
];

pub(super) async fn dataset_quality(
    State(sandbox): State<Sandbox>,
    Path(version): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let config = sandbox.config();
    if !config.api_versions.contains(&version) {
        return GraphError::invalid(format!("Unknown API version {version}")).into_response();
    }
    let params: BTreeMap<String, String> = form::parse(query.as_deref().unwrap_or_default())
        .unwrap_or_default()
        .into_iter()
        .collect();
    if params.get("access_token") != Some(&config.meta_access_token) {
        return GraphError::token("Invalid OAuth access token - Cannot parse access token")
            .into_response();
    }
    if params.get("dataset_id") != Some(&config.meta_pixel_id) {
        return GraphError::unknown_object(params.get("dataset_id").map_or("", String::as_str))
            .into_response();
    }
    let report = sandbox.meta_report();
    let mut by_name: BTreeMap<String, (u64, f64, BTreeMap<&str, u64>)> = BTreeMap::new();
    for e in &report.deduplicated {
        let Some(name) = e.event_name() else { continue };
        let ud = e.event.get("user_data").and_then(Value::as_object);
        let entry = by_name.entry(name.to_owned()).or_default();
        entry.0 += 1;
        let mut score: f64 = 0.0;
        let has = |k: &str| ud.is_some_and(|u| u.contains_key(k));
        for (key, identifier, weight) in KEYS {
            if has(key) {
                *entry.2.entry(identifier).or_default() += 1;
                score += weight;
            }
        }
        if has("fbp") && !has("fbc") {
            score += 1.5;
        }
        entry.1 += score.min(10.0);
    }
    let web: Vec<Value> = by_name
        .into_iter()
        .map(|(name, (n, total, keys))| {
            let feedback: Vec<Value> = keys
                .into_iter()
                .map(|(identifier, k)| json!({"identifier": identifier, "coverage": {"percentage": (k as f64 * 100.0 / n as f64).round()}}))
                .collect();
            json!({
                "event_name": name,
                "event_match_quality": {
                    "composite_score": (total / n as f64 * 10.0).round() / 10.0,
                    "match_key_feedback": feedback,
                },
            })
        })
        .collect();
    Json(json!({ "web": web })).into_response()
}
