//! `capi-cdc replay --from-lsn X [--to-lsn Y] [--destination D] [--kind K]
//! [--dry-run]`: re-deliver spooled events whose commit LSN is in the
//! range, with their original IDs, payloads and event times.
//!
//! Replay never touches the replication slot or the spool checkpoint: it
//! marks the events' ledger rows pending again (creating them for a
//! destination enabled after the events were spooled) and lets the lanes
//! deliver them, with the usual window checks (an event the platform no
//! longer accepts is skipped with that reason). When `run` holds the spool,
//! its lanes do it; otherwise replay runs the lanes itself until the
//! replayed events are settled. Running it twice sends the same IDs, which
//! the platforms deduplicate.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::CmdError;
use crate::config::Config;
use crate::deliver;
use crate::event::LaneKind;
use crate::lsn::Lsn;
use crate::spool::{Ledger, Spool, SpoolError};
use crate::telemetry::Metrics;

/// Keep the same margin as the lanes so a dry run predicts their skips.
const WINDOW_MARGIN_S: i64 = 300;

/// What to replay.
#[derive(Debug, Clone)]
pub struct ReplayArgs {
    /// First commit LSN (inclusive).
    pub from: Lsn,
    /// Last commit LSN (inclusive); the spool checkpoint when absent.
    pub to: Option<Lsn>,
    /// Only this destination.
    pub destination: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Print what would be sent; send nothing.
    pub dry_run: bool,
}

struct Target {
    name: &'static str,
    window_s: i64,
    lanes: BTreeMap<String, LaneKind>,
}

fn targets(config: &Config, only: Option<&str>) -> Result<Vec<Target>, CmdError> {
    let mut out = Vec::new();
    if let Some(m) = &config.meta {
        out.push(Target {
            name: deliver::meta::DESTINATION,
            window_s: deliver::meta::MAX_EVENT_AGE_S,
            lanes: m.delivery.lanes.clone(),
        });
    }
    if let Some(g) = &config.google {
        out.push(Target {
            name: deliver::google::DESTINATION,
            window_s: g.lookback.as_secs() as i64,
            lanes: g.delivery.lanes.clone(),
        });
    }
    if let Some(name) = only {
        out.retain(|t| t.name == name);
        if out.is_empty() {
            return Err(CmdError::Usage(format!(
                "--destination {name}: not an enabled destination (meta, google)"
            )));
        }
    }
    if out.is_empty() {
        return Err(CmdError::Usage(
            "no destination is enabled: nothing to replay to".into(),
        ));
    }
    Ok(out)
}

/// Checks the range against the spool and the server.
async fn check_range(config: &Config, spool: &Spool, args: &ReplayArgs) -> Result<Lsn, CmdError> {
    let checkpoint = spool.checkpoint()?.ok_or_else(|| {
        CmdError::Usage(
            "the spool has no checkpoint yet: nothing was spooled, nothing to replay".into(),
        )
    })?;
    let to = args.to.unwrap_or(checkpoint);
    if to < args.from {
        return Err(CmdError::Usage(format!(
            "--to-lsn {to} is before --from-lsn {}: nothing in between",
            args.from
        )));
    }
    let db = config.source.pg.get_dbname().unwrap_or_default();
    if let Some(spooled_for) = spool.meta_value("database")? {
        if spooled_for != db {
            return Err(CmdError::Usage(format!(
                "spool {} belongs to database {spooled_for}, not {db}: point spool.path at this database's spool",
                spool.path().display()
            )));
        }
    }
    let target = crate::source::describe_target(&config.source.pg);
    let client = crate::source::control_client(&config.source)
        .await
        .map_err(|e| CmdError::Usage(e.to_string()))?;
    let row = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .map_err(|e| {
            CmdError::Usage(format!(
                "reading the server's WAL position on {target}: {e}"
            ))
        })?;
    let current: Lsn = row
        .get::<_, String>(0)
        .parse()
        .map_err(|_| CmdError::Usage("the server returned an unreadable LSN".into()))?;
    for (flag, lsn) in [("--from-lsn", args.from), ("--to-lsn", to)] {
        if lsn > current {
            return Err(CmdError::Usage(format!(
                "{flag} {lsn} is beyond the server's current WAL position {current}"
            )));
        }
    }
    Ok(to)
}

/// Runs the command; returns what to print.
pub async fn run(
    config: &Config,
    args: &ReplayArgs,
    shutdown: watch::Receiver<bool>,
) -> Result<String, CmdError> {
    let spool = Spool::open(&config.spool.file)?;
    let to = check_range(config, &spool, args).await?;
    let targets = targets(config, args.destination.as_deref())?;
    let mut ledger = spool.ledger()?;
    let events = ledger.events_in_range(args.from, to, args.kind.as_deref())?;
    let now_s = Ledger::now_ms() / 1000;
    let mut out = String::new();
    let verb = if args.dry_run {
        "would replay"
    } else {
        "replaying"
    };
    let _ = writeln!(
        out,
        "{verb} {} events with commit LSN {}..={to}",
        events.len(),
        args.from
    );
    for t in &targets {
        let mut per_kind: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for (_, kind, _, event_time) in &events {
            let e = per_kind.entry(kind).or_default();
            if now_s > event_time + t.window_s - WINDOW_MARGIN_S {
                e.1 += 1;
            } else {
                e.0 += 1;
            }
        }
        for (kind, (send, skip)) in per_kind {
            let _ = writeln!(
                out,
                "  {:<7} {kind:<22} {verb}: send {send}, skip {skip} (outside {}'s window)",
                t.name, t.name
            );
        }
    }
    if args.dry_run || events.is_empty() {
        return Ok(out);
    }
    // Say what it will do before doing it, when someone is watching.
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprint!("{out}");
    }
    for t in &targets {
        let rows: Vec<(i64, LaneKind)> = events
            .iter()
            .map(|(seq, kind, lane, _)| (*seq, t.lanes.get(kind).copied().unwrap_or(*lane)))
            .collect();
        ledger.replay(t.name, &rows)?;
    }
    let seqs: Vec<i64> = events.iter().map(|(s, ..)| *s).collect();
    match spool.lock_exclusive() {
        Ok(_lock) => deliver_here(config, &spool, &targets, &seqs, shutdown).await?,
        Err(SpoolError::InUse { .. }) => {
            let _ = writeln!(out, "capi-cdc run holds this spool: its lanes deliver the replayed events now (follow with `capi-cdc status`)");
            return Ok(out);
        }
        Err(e) => return Err(e.into()),
    }
    // One summary: per destination, kind and outcome.
    let mut summary: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    for t in &targets {
        for (kind, state, reason) in ledger.states_of(t.name, &seqs)? {
            let outcome = match (state.as_str(), reason) {
                ("skipped", Some(r)) => format!("skipped: {r}"),
                ("dead", _) => "dead-lettered".to_owned(),
                (s, _) => s.to_owned(),
            };
            *summary
                .entry((t.name.to_owned(), kind, outcome))
                .or_default() += 1;
        }
    }
    let mut line = Vec::new();
    for ((dest, kind, outcome), n) in &summary {
        let _ = writeln!(out, "  {dest:<7} {kind:<22} {n} {outcome}");
        line.push(format!("{dest}/{kind}/{outcome}={n}"));
    }
    tracing::info!(from = %args.from, to = %to, events = seqs.len(), outcomes = %line.join(" "), "replay finished");
    Ok(out)
}

/// Runs the destinations' lanes in this process until every replayed event
/// is settled (or `shutdown`).
async fn deliver_here(
    config: &Config,
    spool: &Spool,
    targets: &[Target],
    seqs: &[i64],
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), CmdError> {
    let metrics = Arc::new(Metrics::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for t in targets {
        let lanes = match t.name {
            "meta" => config.meta.as_ref().map(|m| {
                deliver::spawn(
                    deliver::meta::MetaDestination::new(m.clone()),
                    spool,
                    metrics.clone(),
                    stop_rx.clone(),
                )
            }),
            _ => config.google.as_ref().map(|g| {
                let actions = super::provision::recorded_actions(spool).unwrap_or_default();
                deliver::spawn(
                    deliver::google::GoogleDestination::new(g.clone(), actions),
                    spool,
                    metrics.clone(),
                    stop_rx.clone(),
                )
            }),
        };
        if let Some(l) = lanes {
            let l = l?;
            for w in &l.wakes {
                w.notify_one();
            }
            tasks.extend(l.tasks);
        }
    }
    let ledger = spool.ledger()?;
    loop {
        let mut pending = 0;
        for t in targets {
            pending += ledger
                .states_of(t.name, seqs)?
                .iter()
                .filter(|(_, s, _)| s == "pending")
                .count();
        }
        // Events held or backed off for long (a platform outage, Google's
        // 6-hour hold) stay pending for `run` to finish.
        let due = targets.iter().try_fold(0usize, |n, t| {
            ledger
                .pending(t.name, LaneKind::RealTime, Ledger::now_ms() + 1000, 1)
                .and_then(|a| {
                    ledger
                        .pending(t.name, LaneKind::Batched, Ledger::now_ms() + 1000, 1)
                        .map(|b| n + a.len() + b.len())
                })
        })?;
        if pending == 0 || due == 0 {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = shutdown.changed() => break,
        }
    }
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}
