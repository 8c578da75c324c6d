//! `capi-cdc status`: where the connector stands, for an operator's shell.
//!
//! Reads the spool (checkpoint, events, ledger, derive failures) and the
//! slot (position, WAL retained, lag); changes nothing and creates nothing.

use std::fmt::Write as _;

use crate::config::Config;
use crate::source::{control_client, describe_target, slot, SourceError};
use crate::spool::Spool;

/// Renders the status report as text.
pub async fn status(config: &Config) -> Result<String, SourceError> {
    let mut out = String::new();
    let file = &config.spool.file;
    let checkpoint = if file.exists() {
        let spool = Spool::open(file)?;
        let ledger = spool.ledger()?;
        let checkpoint = spool.checkpoint()?;
        let _ = writeln!(out, "spool {}", file.display());
        let _ = writeln!(
            out,
            "  checkpoint        {}",
            checkpoint.map_or("none (run `capi-cdc setup`)".into(), |c| c.to_string())
        );
        let _ = writeln!(out, "  events            {}", ledger.event_count()?);
        let _ = writeln!(out, "  derive failures   {}", ledger.derive_failures()?);
        for (reason, count) in ledger.derive_notes(10)? {
            let _ = writeln!(out, "  derive note       {count} × {reason}");
        }
        let b = ledger.breakdown()?;
        for (kind, n) in &b.derived {
            let _ = writeln!(out, "  derived           {kind}: {n}");
        }
        for (dest, kinds) in &b.destinations {
            for (kind, c) in kinds {
                let _ = writeln!(
                    out,
                    "  {dest:<17} {kind}: pending {}, delivered {}, skipped {}, dead-lettered {}",
                    c.pending, c.delivered, c.skipped, c.dead
                );
            }
        }
        // The same estimates as the health page, per destination and kind.
        if let Ok(h) = json(config) {
            for d in h["destinations"].as_array().into_iter().flatten() {
                for k in d["kinds"].as_array().into_iter().flatten() {
                    let pct = |v: &serde_json::Value| {
                        v.as_f64()
                            .map_or("—".to_owned(), |x| format!("{:.0} %", x * 100.0))
                    };
                    let _ = writeln!(
                        out,
                        "  {:<17} {}: match quality {}, coverage {}, dedup ready {}, freshness p95 {}",
                        d["name"].as_str().unwrap_or(""),
                        k["kind"].as_str().unwrap_or(""),
                        k["match_quality"].as_f64().map_or("—".to_owned(), |q| format!("{q:.1}/10")),
                        pct(&k["coverage"]),
                        pct(&k["dedup_ready"]),
                        k["freshness_ms"]["p95"].as_i64().map_or("—".to_owned(), |ms| format!("{ms} ms")),
                    );
                }
            }
        }
        checkpoint
    } else {
        let _ = writeln!(out, "spool {} does not exist yet", file.display());
        None
    };

    let src = &config.source;
    let target = describe_target(&src.pg);
    let client = control_client(src).await?;
    let current: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .map_err(|source| SourceError::Query {
            what: "reading pg_current_wal_lsn()",
            target: target.clone(),
            source,
        })?
        .get(0);
    let current: crate::lsn::Lsn = current
        .parse()
        .map_err(|e| SourceError::NotReady(format!("server reported an unreadable LSN: {e}")))?;
    match slot::slot_info(&client, &target, &src.slot).await? {
        None => {
            let _ = writeln!(out, "slot {} does not exist on {target}", src.slot);
        }
        Some(info) => {
            let _ = writeln!(out, "slot {} on {target}", info.name);
            let _ = writeln!(
                out,
                "  state             {}, {}",
                info.wal_status.as_deref().unwrap_or("unknown"),
                info.active_pid
                    .map_or("inactive".to_owned(), |p| format!("streaming to PID {p}"))
            );
            if let Some(confirmed) = info.confirmed_flush_lsn {
                let _ = writeln!(
                    out,
                    "  confirmed flush   {confirmed} ({} bytes behind the server at {current})",
                    confirmed.bytes_until(current)
                );
            }
            let _ = writeln!(
                out,
                "  WAL retained      {} bytes{}",
                info.retained_bytes.unwrap_or(0),
                info.safe_wal_size.map_or(String::new(), |s| format!(
                    " ({s} bytes until max_slot_wal_keep_size)"
                ))
            );
        }
    }
    if let Some(cp) = checkpoint {
        let _ = writeln!(
            out,
            "spool lag           {} bytes of WAL",
            cp.bytes_until(current)
        );
    }
    Ok(out)
}

/// `capi-cdc status --event ID`: one business event's whole story — the
/// rule and commit it came from, its consent and identifiers (hashed, as
/// sent), and per destination where it stands with the platform's last
/// answer (for Google, the Data Manager request ID it was accepted under).
pub async fn event_story(
    config: &Config,
    event_id: &str,
) -> Result<serde_json::Value, SourceError> {
    let spool = Spool::open(&config.spool.file)?;
    let ledger = spool.ledger()?;
    let Some((event, rows)) = ledger.event_story(event_id)? else {
        return Err(SourceError::NotReady(format!(
            "no event {event_id} in spool {}: check the ID (the storefront's pixel convention, e.g. purchase-42) or whether it was pruned past spool.retention_days",
            config.spool.file.display()
        )));
    };
    let mut destinations: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let answers: Vec<serde_json::Value> = ledger
                .attempt_log(&r.destination, event_id)
                .unwrap_or_default()
                .into_iter()
                .map(|(at, counted, answer)| {
                    serde_json::json!({
                        "at": crate::deliver::google::request::rfc3339(at / 1000),
                        "counted_as_attempt": counted,
                        "answer": answer,
                    })
                })
                .collect();
            serde_json::json!({
                "answers": answers,
                "destination": r.destination,
                "state": r.state,
                "lane": r.lane,
                "attempts": r.attempts,
                "last_answer": r.reason,
                "updated_at": crate::deliver::google::request::rfc3339(r.updated_at_ms / 1000),
                "not_before": (r.not_before_ms > 0).then(|| crate::deliver::google::request::rfc3339(r.not_before_ms / 1000)),
                "google_request_id": r.reason.as_deref().and_then(|x| x.split("request_id ").nth(1)).map(|id| id.split(|c: char| c.is_whitespace() || c == ';').next().unwrap_or(id)),
            })
        })
        .collect();
    // Data Manager reports processing later: ask for this request's status.
    if let Some(google) = &config.google {
        for d in destinations
            .iter_mut()
            .filter(|d| d["destination"] == "google")
        {
            if let Some(id) = d["google_request_id"].as_str().map(str::to_owned) {
                d["google_processing"] = google_request_status(google, &id).await;
            }
        }
    }
    Ok(serde_json::json!({
        "event": event,
        "event_time": crate::deliver::google::request::rfc3339(event.event_time_s),
        "destinations": destinations,
    }))
}

/// `capi-cdc status --json`: the `/api/health` document computed from the
/// spool (live gauges such as streaming and lag are only known to `run`).
pub fn json(config: &Config) -> Result<serde_json::Value, SourceError> {
    let spool = Spool::open(&config.spool.file)?;
    let mut destinations: Vec<&'static str> = Vec::new();
    if config.meta.is_some() {
        destinations.push(crate::deliver::meta::DESTINATION);
    }
    if config.google.is_some() {
        destinations.push(crate::deliver::google::DESTINATION);
    }
    let metrics = crate::telemetry::Metrics::default();
    if let Some(cp) = spool.checkpoint()? {
        metrics
            .checkpoint_lsn
            .store(cp.0, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(crate::admin::health::health(
        &spool,
        &metrics,
        &config.source.slot,
        &destinations,
        &|d, k| crate::admin::event_name(config, d, k),
    )?)
}

/// Data Manager's `requestStatus:retrieve` for one request, or why not.
async fn google_request_status(
    google: &crate::config::GoogleConfig,
    request_id: &str,
) -> serde_json::Value {
    let oauth = crate::deliver::google::oauth::Oauth::new(google);
    let token = match oauth.token().await {
        Ok(t) => t,
        Err(e) => return serde_json::json!({ "error": e.to_string() }),
    };
    let mut url = google.data_manager_url.clone();
    let path = format!(
        "{}/v1/requestStatus:retrieve",
        url.path().trim_end_matches('/')
    );
    url.set_path(&path);
    url.query_pairs_mut().append_pair("requestId", request_id);
    let client = crate::deliver::http::client(std::time::Duration::from_secs(10));
    match crate::deliver::http::send(
        client.get(url).bearer_auth(token.expose()),
        "google requestStatus:retrieve",
    )
    .await
    {
        Ok(a) => serde_json::from_slice(&a.body)
            .unwrap_or_else(|_| serde_json::json!({ "http_status": a.status })),
        Err(a) => serde_json::json!({ "error": format!("{a:?}") }),
    }
}
