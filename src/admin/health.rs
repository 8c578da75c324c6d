//! `/api/health`: per destination × kind, the numbers server-side
//! conversion reporting is graded on, estimated from what capi-cdc sent.
//!
//! - **match quality** (0–10): for each recent event, the weights of the
//!   identifiers it carried for that platform, summed and capped at 10,
//!   then averaged. Meta publishes no formula (spec/meta-capi.md §7 names
//!   email, IP address, first + last name and phone as the high-value
//!   keys); these weights are ours and only rank events the same way:
//!   Meta: email 3, phone 2, client IP 1, user agent 0.5, `fbc` 1.5, `fbp`
//!   1, external ID 0.5, first + last name 0.5, city/state/zip/country 0.5.
//!   Google: email 4, phone 3, address 2, click ID 4 (spec/google.md §2.2,
//!   §6: hashed user data or a click ID is what matches).
//! - **coverage**: delivered / everything the ledger holds for it.
//! - **dedup readiness**: share of events whose ID follows the pixel
//!   convention (a prefix, then the row's key: `purchase-42`) and that carry
//!   what the platform deduplicates or attributes with (`fbp`/`fbc` for
//!   Meta, a click ID for Google).
//! - **freshness**: commit → acceptance percentiles of recent deliveries.
//!
//! Everything is computed from the spool's recent rows (the last
//! [`WINDOW_MS`], at most [`MAX_ROWS`] per destination); nothing here
//! exposes a value, only counts and ratios.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::event::BusinessEvent;
use crate::spool::{Ledger, Spool, SpoolError};
use crate::telemetry::Metrics;

/// How far back the estimates look.
pub const WINDOW_MS: i64 = 7 * 86_400_000;
/// Rows read per destination for the estimates.
pub const MAX_ROWS: usize = 20_000;

/// Meta's weights (see the module header).
pub fn meta_score(e: &BusinessEvent) -> f64 {
    let m = &e.user.meta;
    if e.consent.user_data_denied() {
        // Sent limited: IP and user agent only.
        return e.session.ip.as_ref().map_or(0.0, |_| 1.0)
            + e.session.user_agent.as_ref().map_or(0.0, |_| 0.5);
    }
    let mut s: f64 = 0.0;
    s += if m.em.is_some() { 3.0 } else { 0.0 };
    s += if m.ph.is_some() { 2.0 } else { 0.0 };
    s += if e.session.ip.is_some() { 1.0 } else { 0.0 };
    s += if e.session.user_agent.is_some() {
        0.5
    } else {
        0.0
    };
    s += if e.click_ids.fbc.is_some() { 1.5 } else { 0.0 };
    s += if e.click_ids.fbp.is_some() { 1.0 } else { 0.0 };
    s += if m.external_id.is_some() { 0.5 } else { 0.0 };
    s += if m.fn_.is_some() && m.ln.is_some() {
        0.5
    } else {
        0.0
    };
    s += if m.ct.is_some() || m.st.is_some() || m.zp.is_some() || m.country.is_some() {
        0.5
    } else {
        0.0
    };
    s.min(10.0)
}

/// Google's weights (see the module header).
pub fn google_score(e: &BusinessEvent) -> f64 {
    let g = &e.user.google;
    let mut s: f64 = if e.click_ids.google.is_some() {
        4.0
    } else {
        0.0
    };
    if !e.consent.user_data_denied() {
        s += if g.email.is_some() { 4.0 } else { 0.0 };
        s += if g.phone.is_some() { 3.0 } else { 0.0 };
        s += if g.given_name.is_some() && g.postal_code.is_some() {
            2.0
        } else {
            0.0
        };
    }
    s.min(10.0)
}

/// The pixel convention: letters (and `_`, `.`), a `-`, then the key.
pub fn follows_pixel_convention(event_id: &str) -> bool {
    event_id.split_once('-').is_some_and(|(p, k)| {
        !p.is_empty()
            && !k.is_empty()
            && p.bytes()
                .all(|c| c.is_ascii_alphabetic() || c == b'_' || c == b'.')
    })
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[derive(Default)]
struct Acc {
    n: u64,
    score: f64,
    dedup: u64,
    freshness: Vec<i64>,
}

/// The `/api/health` document.
/// Maps (destination, kind) to the platform's event name (the grades' key).
pub type EventNames<'a> = &'a dyn Fn(&str, &str) -> Option<String>;

/// The `/api/health` document; `event_names` places the platforms' own
/// grades (keyed by their event names) beside our per-kind estimates.
pub fn health(
    spool: &Spool,
    metrics: &Metrics,
    slot: &str,
    destinations: &[&'static str],
    event_names: EventNames<'_>,
) -> Result<Value, SpoolError> {
    let grades = metrics
        .grades
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let google_status = metrics
        .google_request_status
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let ledger = spool.ledger()?;
    let breakdown = ledger.breakdown()?;
    let now = Ledger::now_ms();
    let paused = metrics.delivery.paused();
    let mut dests = Vec::new();
    for dest in destinations {
        let mut acc: BTreeMap<String, Acc> = BTreeMap::new();
        for (state, updated_ms, event) in
            ledger.recent_deliveries(dest, now - WINDOW_MS, MAX_ROWS)?
        {
            let a = acc.entry(event.kind.to_string()).or_default();
            a.n += 1;
            let (score, ready) = if *dest == crate::deliver::google::DESTINATION {
                (google_score(&event), event.click_ids.google.is_some())
            } else {
                (
                    meta_score(&event),
                    event.click_ids.fbp.is_some() || event.click_ids.fbc.is_some(),
                )
            };
            a.score += score;
            if ready && follows_pixel_convention(event.event_id.as_str()) {
                a.dedup += 1;
            }
            if state == "delivered" && event.commit_time_us > 0 {
                a.freshness
                    .push((updated_ms - event.commit_time_us / 1000).max(0));
            }
        }
        let counts = breakdown
            .destinations
            .get(*dest)
            .cloned()
            .unwrap_or_default();
        let mut kinds: Vec<String> = counts.keys().cloned().collect();
        kinds.extend(acc.keys().cloned());
        kinds.sort();
        kinds.dedup();
        let rows: Vec<Value> = kinds
            .iter()
            .map(|kind| {
                let c = counts.get(kind).copied().unwrap_or_default();
                let total = c.pending + c.delivered + c.skipped + c.dead;
                let a = acc.remove(kind).unwrap_or_default();
                let mut f = a.freshness;
                f.sort_unstable();
                json!({
                    "kind": kind,
                    "derived": breakdown.derived.get(kind).copied().unwrap_or(0),
                    "pending": c.pending,
                    "delivered": c.delivered,
                    "skipped": c.skipped,
                    "dead": c.dead,
                    "match_quality": (a.n > 0).then(|| (a.score / a.n as f64 * 10.0).round() / 10.0),
                    "coverage": (total > 0).then(|| c.delivered as f64 / total as f64),
                    "dedup_ready": (a.n > 0).then(|| a.dedup as f64 / a.n as f64),
                    "freshness_ms": (!f.is_empty()).then(|| json!({"p50": percentile(&f, 0.5), "p95": percentile(&f, 0.95), "p99": percentile(&f, 0.99)})),
                    "per_hour": ledger.per_hour(dest, kind, now).ok(),
                    "platform_quality": event_names(dest, kind).and_then(|name| grades.get(&((*dest).to_owned(), name)).copied()),
                })
            })
            .collect();
        let is_paused = paused.iter().any(|p| p == dest);
        dests.push(json!({
            "name": dest,
            "paused": is_paused,
            "paused_reason": is_paused.then(|| metrics.delivery.paused_reason(dest)).flatten(),
            "kinds": rows,
            "platform_status": (*dest == crate::deliver::google::DESTINATION && !google_status.is_empty()).then(|| json!(google_status)),
        }));
    }
    let dead: Vec<Value> = ledger
        .dead_letters(&Default::default(), 20)?
        .into_iter()
        .map(|d| {
            json!({
                "destination": d.destination,
                "kind": d.kind,
                "event_id": d.event_id,
                "reason": d.reason,
                "at": crate::deliver::google::request::rfc3339(d.at_ms / 1000),
            })
        })
        .collect();
    let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let server = get(&metrics.server_lsn).max(get(&metrics.received_lsn));
    let checkpoint = get(&metrics.checkpoint_lsn);
    let retained = get(&metrics.slot_retained_bytes);
    Ok(json!({
        "generated_at": crate::deliver::google::request::rfc3339(now / 1000),
        "replication": {
            "streaming": get(&metrics.streaming) == 1,
            "slot": slot,
            "checkpoint_lsn": crate::lsn::Lsn(checkpoint).to_string(),
            "lag_bytes": (server > 0).then(|| server.saturating_sub(checkpoint)),
            "retained_wal_bytes": (get(&metrics.server_lsn) > 0).then_some(retained),
        },
        "destinations": dests,
        "dead_letters": dead,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pixel_convention_is_a_prefix_and_a_key() {
        assert!(follows_pixel_convention("purchase-42"));
        assert!(follows_pixel_convention("view-7"));
        assert!(!follows_pixel_convention("42"));
        assert!(!follows_pixel_convention("-42"));
        assert!(!follows_pixel_convention("a7c9e2"));
    }

    #[test]
    fn percentiles_pick_from_the_sorted_values() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), 51);
        assert_eq!(percentile(&v, 0.99), 99);
        assert_eq!(percentile(&[], 0.5), 0);
    }
}
