//! `capi-cdc backfill --since T [--until T] [--kind K] [--destination D]
//! [--dry-run]`: derive events from rows that are already in the database
//! (orders placed before the slot existed, a rule added later) and spool
//! them so the lanes deliver them.
//!
//! Everything is read in **one** REPEATABLE READ snapshot on a control
//! connection, through cursors: first every lookup table into a scratch
//! store (consent, sessions, customers, items *as the snapshot holds them*:
//! a backfill cannot know consent states the database no longer stores),
//! then every rule table. Rows go through the same rules as the stream
//! (each row as if just inserted), so events get the same `event_id`s; the
//! spool keeps one event per ID, so what the stream already spooled is not
//! sent again, and a second backfill spools nothing new. Events are written
//! in small transactions that never touch the checkpoint, beside a running
//! `run`, whose lanes pick them up; the replication slot is never touched.
//! Each chunk's last key is recorded, so an interrupted backfill resumes
//! where it stopped.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::io::IsTerminal;

use tokio::sync::watch;
use tokio_postgres::SimpleQueryMessage;

use super::CmdError;
use crate::config::Config;
use crate::derive::{Deriver, Effect, TxContext};
use crate::lsn::Lsn;
use crate::source::{catalog, snapshot};
use crate::spool::{Ledger, LedgerTarget, Spool};

/// Rows fetched per round trip (and per spool transaction).
const CHUNK: usize = 2000;

/// What to backfill.
#[derive(Debug, Clone)]
pub struct BackfillArgs {
    /// Events whose business time is at or after this (ms).
    pub since_ms: i64,
    /// And before this (ms); now when absent.
    pub until_ms: Option<i64>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this destination gets ledger rows.
    pub destination: Option<String>,
    /// Count, spool nothing.
    pub dry_run: bool,
}

fn usage(e: impl std::fmt::Display) -> CmdError {
    CmdError::Usage(e.to_string())
}

/// Per kind: rows read, events in the time range, new in the spool, already there.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    derived: u64,
    in_range: u64,
    new: u64,
    known: u64,
}

async fn cursor_rows(
    client: &tokio_postgres::Client,
    sql: &str,
    mut each: impl FnMut(Vec<Option<String>>) -> Result<(), CmdError>,
) -> Result<u64, CmdError> {
    client
        .batch_execute(&format!(
            "DECLARE capi_cdc_backfill NO SCROLL CURSOR FOR {sql}"
        ))
        .await
        .map_err(usage)?;
    let mut n = 0;
    loop {
        let msgs = client
            .simple_query(&format!("FETCH {CHUNK} FROM capi_cdc_backfill"))
            .await
            .map_err(usage)?;
        let mut got = 0;
        for m in msgs {
            if let SimpleQueryMessage::Row(r) = m {
                got += 1;
                each((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())?;
            }
        }
        n += got;
        if got < CHUNK as u64 {
            break;
        }
    }
    client
        .batch_execute("CLOSE capi_cdc_backfill")
        .await
        .map_err(usage)?;
    Ok(n)
}

fn remove_scratch(file: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
}

/// Runs the command; returns what to print.
pub async fn run(
    config: &Config,
    args: &BackfillArgs,
    mut shutdown: watch::Receiver<bool>,
) -> Result<String, CmdError> {
    let now_ms = Ledger::now_ms();
    let until_ms = args.until_ms.unwrap_or(now_ms);
    if until_ms <= args.since_ms {
        return Err(usage("--until is not after --since: nothing in between"));
    }
    if args.since_ms > now_ms {
        return Err(usage("--since is in the future"));
    }
    let spool = Spool::open(&config.spool.file)?;
    let db = config.source.pg.get_dbname().unwrap_or_default();
    if let Some(spooled_for) = spool.meta_value("database")? {
        if spooled_for != db {
            return Err(usage(format!(
                "spool {} belongs to database {spooled_for}, not {db}",
                spool.path().display()
            )));
        }
    }
    let mut destinations = Vec::new();
    if let Some(m) = &config.meta {
        destinations.push(LedgerTarget {
            name: crate::deliver::meta::DESTINATION,
            lanes: m.delivery.lanes.clone(),
        });
    }
    if let Some(g) = &config.google {
        destinations.push(LedgerTarget {
            name: crate::deliver::google::DESTINATION,
            lanes: g.delivery.lanes.clone(),
        });
    }
    if let Some(only) = &args.destination {
        destinations.retain(|d| d.name == only);
        if destinations.is_empty() {
            return Err(usage(format!(
                "--destination {only}: not an enabled destination (meta, google)"
            )));
        }
    }
    let deriver = Deriver::new(config.rules.clone());
    let target = crate::source::describe_target(&config.source.pg);
    let client = crate::source::control_client(&config.source)
        .await
        .map_err(usage)?;
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(usage)?;
    let lsn: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .map_err(usage)?
        .get(0);
    let tx = TxContext {
        commit_lsn: lsn.parse::<Lsn>().map_err(usage)?,
        commit_time_us: now_ms * 1000,
    };
    let cat = catalog::read(&client, &target, &config.rules, &config.source.publication)
        .await
        .map_err(usage)?;
    let problems = catalog::check(&config.rules, &cat, &config.source.publication, false);
    if !problems.is_empty() {
        return Err(usage(crate::source::SourceError::Rules(problems)));
    }
    let tables: Vec<_> = config
        .rules
        .tables()
        .into_iter()
        .filter(|t| !deriver.rule_columns(t, args.kind.as_deref()).is_empty())
        .collect();
    let terminal = std::io::stderr().is_terminal();
    if terminal {
        eprintln!(
            "backfill: reading {} in one snapshot at {}; events with business time in the range are {}",
            tables.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
            tx.commit_lsn,
            if args.dry_run { "counted, not spooled" } else { "spooled for delivery (IDs already spooled are skipped)" }
        );
    }

    // 1. Lookup state as the snapshot holds it, in a scratch store.
    // Beside the spool (its volume has the room), removed at the end.
    let scratch_file = spool.path().with_extension("backfill-lookups");
    remove_scratch(&scratch_file);
    let scratch = Spool::open(&scratch_file)?;
    let mut lookups = scratch.writer()?;
    for table in config.rules.tables() {
        let Some((sql, relation)) =
            snapshot::query(&cat, &table, &deriver.snapshot_columns(&table), None)
        else {
            continue;
        };
        cursor_rows(&client, &sql, |texts| {
            let row = snapshot::row(&relation, texts.into_iter());
            for e in deriver.snapshot_row(tx.commit_time_us, &relation, &row) {
                lookups.apply_state(&e)?;
            }
            Ok(())
        })
        .await?;
    }
    lookups.commit_events_only()?;

    // 2. The rule tables, row by row, as inserts; resumable per table.
    let mut writer = spool.writer()?;
    writer.set_destinations(destinations)?;
    let check = spool.ledger()?;
    let mut counts: BTreeMap<String, Counts> = BTreeMap::new();
    let mut windows: BTreeMap<(String, String), u64> = BTreeMap::new();
    let resume_prefix = format!(
        "backfill.resume.{}.{until_ms}.{}.",
        args.since_ms,
        args.kind.as_deref().unwrap_or("*")
    );
    let mut interrupted = false;
    for table in &tables {
        let key = format!("{resume_prefix}{table}");
        let after = spool.meta_value(&key)?.filter(|v| !v.is_empty());
        let Some((sql, relation)) = snapshot::query(
            &cat,
            table,
            &deriver.rule_columns(table, args.kind.as_deref()),
            after.as_deref(),
        ) else {
            continue;
        };
        let total: i64 = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .map_err(usage)?
            .get(0);
        let bar = terminal.then(|| {
            let bar = indicatif::ProgressBar::new(total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg:24} {bar:32} {pos}/{len} rows, {per_sec}, ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_message(table.to_string());
            bar
        });
        client
            .batch_execute(&format!(
                "DECLARE capi_cdc_backfill NO SCROLL CURSOR FOR {sql}"
            ))
            .await
            .map_err(usage)?;
        let single_key = relation.columns.iter().filter(|c| c.is_key).count() == 1;
        loop {
            let msgs = client
                .simple_query(&format!("FETCH {CHUNK} FROM capi_cdc_backfill"))
                .await
                .map_err(usage)?;
            let mut got = 0usize;
            let mut last_key = None;
            for m in msgs {
                let SimpleQueryMessage::Row(r) = m else {
                    continue;
                };
                got += 1;
                let row =
                    snapshot::row(&relation, (0..r.len()).map(|i| r.get(i).map(str::to_owned)));
                if single_key {
                    last_key = crate::derive::values::key(&relation, &row);
                }
                let mut drafts = Vec::new();
                for e in deriver.backfill_row(&tx, &relation, &row, args.kind.as_deref()) {
                    match e {
                        Effect::Draft(d) => drafts.push(d),
                        other => lookups.apply_state(&other)?,
                    }
                }
                for e in deriver.finish(&tx, drafts, &lookups).map_err(usage)? {
                    let Effect::Event(event) = e else { continue };
                    let c = counts.entry(event.kind.to_string()).or_default();
                    c.derived += 1;
                    let t_ms = event.event_time_s * 1000;
                    if t_ms < args.since_ms || t_ms >= until_ms {
                        continue;
                    }
                    c.in_range += 1;
                    for (dest, window_s) in [
                        ("meta", crate::deliver::meta::MAX_EVENT_AGE_S),
                        (
                            "google",
                            config
                                .google
                                .as_ref()
                                .map_or(0, |g| g.lookback.as_secs() as i64),
                        ),
                    ] {
                        if (dest == "meta" && config.meta.is_some()
                            || dest == "google" && config.google.is_some())
                            && now_ms / 1000 - event.event_time_s > window_s
                        {
                            *windows
                                .entry((dest.to_owned(), event.kind.to_string()))
                                .or_default() += 1;
                        }
                    }
                    let new = if args.dry_run {
                        !check.event_exists(event.event_id.as_str())?
                    } else {
                        writer.insert_event(&event)?
                    };
                    if new {
                        c.new += 1;
                    } else {
                        c.known += 1;
                    }
                }
            }
            lookups.commit_events_only()?;
            if !args.dry_run {
                writer.commit_events_only()?;
                if let Some(k) = &last_key {
                    spool.set_meta(&key, k)?;
                }
            }
            if let Some(b) = &bar {
                b.inc(got as u64);
            }
            if got < CHUNK {
                break;
            }
            if *shutdown.borrow_and_update() {
                interrupted = true;
                break;
            }
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        client
            .batch_execute("CLOSE capi_cdc_backfill")
            .await
            .map_err(usage)?;
        if interrupted {
            break;
        }
        if !args.dry_run {
            spool.set_meta(&key, "")?;
        }
    }
    let _ = client.batch_execute("COMMIT").await;
    drop(lookups);
    remove_scratch(&scratch_file);

    let mut out = String::new();
    let verb = if args.dry_run {
        "would spool"
    } else {
        "spooled"
    };
    let mut line = Vec::new();
    for (kind, c) in &counts {
        let _ = writeln!(
            out,
            "  {kind:<22} derived {}, in the range {}, {verb} {} new, {} already spooled",
            c.derived, c.in_range, c.new, c.known
        );
        line.push(format!("{kind}: new={} known={}", c.new, c.known));
    }
    for ((dest, kind), n) in &windows {
        let _ = writeln!(
            out,
            "  {dest:<7} {kind:<22} {n} outside {dest}'s window: skipped for it, with that reason"
        );
    }
    if interrupted {
        let _ = writeln!(
            out,
            "interrupted: run the same command again to resume where it stopped"
        );
    }
    tracing::info!(snapshot_lsn = %tx.commit_lsn, interrupted, summary = %line.join(", "), "backfill finished");
    Ok(format!(
        "backfill {} (snapshot at {})\n{out}",
        if args.dry_run { "dry run" } else { "done" },
        tx.commit_lsn
    ))
}
