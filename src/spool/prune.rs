//! Retention: events and ledger rows are kept for `spool.retention_days`
//! (what replay can reach), then pruned; lookup rows are pruned by their
//! own expiry. Deletes run in small transactions (a few hundred rows), so
//! the apply loop and the lanes never wait long for the write lock, and
//! SQLite reuses the freed pages: the file stays bounded under a steady
//! workload.
//!
//! Never pruned: an event with a pending delivery (it still has to reach a
//! platform), and lookup rows the stream may still need (expiry is counted
//! from the newest change stored for that lookup, not from the wall clock,
//! so a connector that is hours behind keeps what its events join against).

use std::time::Duration;

use tokio::sync::watch;

use super::{Ledger, Spool};

/// Rows deleted per transaction.
const BATCH: usize = 500;

/// What to prune.
#[derive(Debug, Clone)]
pub struct Retention {
    /// Keep events this long after they were spooled.
    pub events: Duration,
    /// Lookups with an expiry: (name, expiry).
    pub lookups: Vec<(String, Duration)>,
    /// How often to look.
    pub every: Duration,
}

/// Rows removed by one pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Events (with their ledger rows).
    pub events: usize,
    /// Lookup rows.
    pub lookup_rows: usize,
}

/// One pass: prune everything due, a batch at a time.
pub fn prune_once(spool: &Spool, retention: &Retention) -> super::Result<Pruned> {
    let mut ledger = spool.ledger()?;
    let mut out = Pruned::default();
    let before_ms = Ledger::now_ms() - retention.events.as_millis() as i64;
    loop {
        let n = ledger.prune_events(before_ms, BATCH)?;
        out.events += n;
        if n < BATCH {
            break;
        }
    }
    for (lookup, expiry) in &retention.lookups {
        let Some(newest) = ledger.newest_lookup_change_us(lookup)? else {
            continue;
        };
        let before_us = newest - expiry.as_micros() as i64;
        loop {
            let n = ledger.prune_lookup(lookup, before_us, BATCH)?;
            out.lookup_rows += n;
            if n < BATCH {
                break;
            }
        }
    }
    Ok(out)
}

/// Prunes every `retention.every` until `shutdown`.
pub async fn run(spool: Spool, retention: Retention, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(retention.every) => {}
            _ = shutdown.changed() => return,
        }
        let (s, r) = (spool.clone(), retention.clone());
        match tokio::task::spawn_blocking(move || prune_once(&s, &r)).await {
            Ok(Ok(p)) if p.events + p.lookup_rows > 0 => {
                tracing::info!(
                    events = p.events,
                    lookup_rows = p.lookup_rows,
                    "pruned the spool past its retention"
                );
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "pruning the spool failed; retrying at the next interval")
            }
            Err(e) => tracing::warn!(error = %e, "the pruning task failed"),
        }
    }
}
