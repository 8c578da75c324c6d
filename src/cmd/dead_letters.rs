//! `capi-cdc dead-letters list|retry|drop [--destination D] [--kind K]
//! [--since T] [--until T]`: what each destination gave up on, with the
//! platform's last answer; put back to pending (a fresh retry budget, the
//! same event IDs, which the platforms deduplicate) or drop with a record.
//! Works while `run` is running: the lanes pick retried events up.

use std::fmt::Write;

use super::CmdError;
use crate::config::Config;
use crate::spool::{DeadFilter, Spool};

/// What to do with the matching dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Print them.
    List,
    /// Back to pending.
    Retry,
    /// Mark as skipped by the operator.
    Drop,
}

/// Runs the command; returns what to print.
pub fn run(
    config: &Config,
    action: Action,
    filter: &DeadFilter,
    limit: usize,
) -> Result<String, CmdError> {
    let mut out = String::new();
    let file = &config.spool.file;
    if !file.exists() {
        let _ = writeln!(out, "spool {} does not exist yet", file.display());
        return Ok(out);
    }
    let mut ledger = Spool::open(file)?.ledger()?;
    match action {
        Action::List => {
            let rows = ledger.dead_letters(filter, limit)?;
            let _ = writeln!(
                out,
                "{} dead letters (newest first, at most {limit})",
                rows.len()
            );
            for d in rows {
                let _ = writeln!(
                    out,
                    "  {:<8} {:<22} {:<28} attempts {:<4} {}  {}",
                    d.destination,
                    d.kind,
                    d.event_id,
                    d.attempts,
                    crate::deliver::google::request::rfc3339(d.at_ms / 1000),
                    d.reason.as_deref().unwrap_or("")
                );
            }
            let failures = ledger.derive_failure_list(limit)?;
            if !failures.is_empty() {
                let _ = writeln!(
                    out,
                    "{} row changes that could not become events (newest first)",
                    failures.len()
                );
                for (lsn, relation, reason) in failures {
                    let _ = writeln!(out, "  {lsn:<12} {relation:<24} {reason}");
                }
            }
        }
        Action::Retry => {
            let n = ledger.retry_dead(filter)?;
            tracing::info!(
                events = n,
                "dead letters put back to pending by the operator"
            );
            let _ = writeln!(
                out,
                "{n} dead letters are pending again (same event IDs; the platforms deduplicate)"
            );
        }
        Action::Drop => {
            let n = ledger.drop_dead(filter)?;
            tracing::info!(events = n, "dead letters dropped by the operator");
            let _ = writeln!(
                out,
                "{n} dead letters dropped (kept as skipped, with the reason)"
            );
        }
    }
    Ok(out)
}
