//! The apply loop's side of the spool: one open SQLite transaction per batch
//! of source transactions, closed by [`SpoolWriter::commit`] with the batch's
//! end LSN. See the module invariants in `spool/mod.rs`.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};

use super::cache::{Cached, LookupCache};
use super::{now_ms, read_checkpoint, Result, Spool, SpoolError};
use crate::derive::{Effect, Entry, Lookup, LookupError};
use crate::event::{BusinessEvent, LaneKind};
use crate::lsn::Lsn;

/// Writes events, lookup state and the checkpoint atomically.
#[derive(Debug)]
pub struct SpoolWriter {
    spool: Spool,
    conn: Connection,
    open: bool,
    checkpoint: Option<Lsn>,
    /// Enabled destinations with their slots in `events.routes`.
    destinations: Vec<(LedgerTarget, u32)>,
    /// Lookup rows read or written, so commits do not re-read them.
    cache: RefCell<LookupCache>,
    /// When waiting lanes were last let in before a batch.
    last_lane_turn: Option<Instant>,
    /// Time spent waiting to open batches (lanes let in, the write lock
    /// taken), not yet taken by [`SpoolWriter::take_waits`].
    lock_wait: Duration,
    /// The part of `lock_wait` spent letting lanes in.
    turn_wait: Duration,
    /// Time spent restarting the WAL before batches, and restarts done.
    restart_wait: Duration,
    restarts: u64,
    /// The payload of the event being inserted (kept to reuse its memory).
    payload: Vec<u8>,
}

/// What opening batches waited for, since the last
/// [`SpoolWriter::take_waits`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Waits {
    /// Letting lanes in, then taking the write lock.
    pub lock: Duration,
    /// The part of `lock` spent letting lanes in.
    pub turns: Duration,
    /// Restarting the WAL (asked by `wal::run`), apart from `lock`.
    pub restart: Duration,
    /// Restarts that made the log start over.
    pub restarts: u64,
}

/// How often, at most, the apply loop lets waiting lanes take the write
/// lock before its next batch (see `spool::LaneTurn`).
const LANE_TURN_EVERY: Duration = Duration::from_millis(50);

/// A destination each new event is routed to, and its lanes.
#[derive(Debug, Clone)]
pub struct LedgerTarget {
    /// Ledger name.
    pub name: &'static str,
    /// Kind → lane overrides of this destination.
    pub lanes: std::collections::BTreeMap<String, LaneKind>,
}

impl SpoolWriter {
    pub(super) fn new(spool: Spool, conn: Connection) -> Result<SpoolWriter> {
        let checkpoint = read_checkpoint(&conn).map_err(|e| spool.err(e))?;
        Ok(SpoolWriter {
            spool,
            conn,
            open: false,
            checkpoint,
            destinations: Vec::new(),
            cache: RefCell::default(),
            last_lane_turn: None,
            lock_wait: Duration::ZERO,
            turn_wait: Duration::ZERO,
            restart_wait: Duration::ZERO,
            restarts: 0,
            payload: Vec::new(),
        })
    }

    fn err(&self, e: rusqlite::Error) -> SpoolError {
        self.spool.err(e)
    }

    /// An unreadable stored record, named for the error message.
    pub fn corrupt(&self, what: &str, source: serde_json::Error) -> SpoolError {
        SpoolError::Corrupt {
            path: self.spool.path.clone(),
            record: what.to_owned(),
            source: source.into(),
        }
    }

    /// Stops this connection's commits from copying the WAL back into the
    /// spool file (SQLite's automatic checkpoint); [`super::wal::run`] does
    /// it instead, off the apply loop.
    pub fn leave_wal_copy_to_others(&self) -> Result<()> {
        self.conn
            .execute_batch("PRAGMA wal_autocheckpoint = 0;")
            .map_err(|e| self.err(e))
    }

    /// Destinations each new event is routed to. Each gets (once, for the
    /// spool's life) a slot of two bits in `events.routes`.
    pub fn set_destinations(&mut self, destinations: Vec<LedgerTarget>) -> Result<()> {
        let mut with_slots = Vec::with_capacity(destinations.len());
        for dest in destinations {
            let slot = super::destination_slot(&self.conn, dest.name, true)
                .map_err(|e| self.err(e))?
                .expect("registered");
            if slot >= super::MAX_DESTINATIONS {
                return Err(SpoolError::TooManyDestinations {
                    path: self.spool.path.clone(),
                    name: dest.name.to_owned(),
                });
            }
            with_slots.push((dest, slot));
        }
        self.destinations = with_slots;
        Ok(())
    }

    /// The last committed checkpoint.
    pub fn checkpoint(&self) -> Option<Lsn> {
        self.checkpoint
    }

    /// What opening batches waited for since the last call.
    pub fn take_waits(&mut self) -> Waits {
        Waits {
            lock: std::mem::take(&mut self.lock_wait),
            turns: std::mem::take(&mut self.turn_wait),
            restart: std::mem::take(&mut self.restart_wait),
            restarts: std::mem::take(&mut self.restarts),
        }
    }

    /// Makes the WAL start over if `wal::run` asked: between batches this
    /// connection holds no lock and has only its last commits left to copy
    /// (see `wal.rs`). Waits for lanes at most `RESTART_PATIENCE`; a
    /// restart that could not finish was still a copy, and is asked again.
    fn restart_wal_if_asked(&mut self) -> Result<()> {
        if !self.spool.take_restart() {
            return Ok(());
        }
        let started = Instant::now();
        self.conn
            .busy_handler(Some(super::wait_briefly))
            .map_err(|e| self.err(e))?;
        let done = super::wal::restart(&self.conn);
        self.conn
            .busy_handler(Some(super::wait_for_lock))
            .map_err(|e| self.err(e))?;
        match done {
            Ok(c) if c.restarted => self.restarts += 1,
            Ok(_) => {}
            // Not fatal: the log only stays long until the next request.
            Err(e) => {
                tracing::warn!(error = %self.err(e), "restarting the spool's WAL failed; it is asked again later")
            }
        }
        self.restart_wait += started.elapsed();
        Ok(())
    }

    /// Whether a batch is open (written but not yet committed).
    pub fn in_batch(&self) -> bool {
        self.open
    }

    fn ensure_open(&mut self) -> Result<()> {
        if !self.open {
            self.restart_wal_if_asked()?;
            let started = Instant::now();
            // Lanes waiting to record outcomes go first, but at most once
            // per LANE_TURN_EVERY: the slot's drain keeps priority.
            if self
                .last_lane_turn
                .is_none_or(|t| t.elapsed() >= LANE_TURN_EVERY)
                && self.spool.let_lanes_in()
            {
                self.last_lane_turn = Some(Instant::now());
                self.turn_wait += started.elapsed();
            }
            self.conn
                .execute_batch("BEGIN IMMEDIATE")
                .map_err(|e| self.spool.err(e))?;
            self.open = true;
            self.lock_wait += started.elapsed();
        }
        Ok(())
    }

    /// Stores `event` unless one with its `event_id` exists; returns whether
    /// it was new. A new event is routed to each destination's lane for its
    /// kind, and is pending there until that lane records an outcome.
    pub fn insert_event(&mut self, event: &BusinessEvent) -> Result<bool> {
        self.ensure_open()?;
        let mut routes: i64 = 0;
        for (dest, slot) in &self.destinations {
            let lane = dest
                .lanes
                .get(event.kind.as_str())
                .copied()
                .unwrap_or(event.lane);
            routes |= super::route_bits(*slot, lane);
        }
        super::payload::encode_into(event, &mut self.payload).map_err(|source| {
            SpoolError::Corrupt {
                path: self.spool.path.clone(),
                record: format!("event {}", event.event_id),
                source,
            }
        })?;
        let now = now_ms();
        let mut insert = self
            .conn
            .prepare_cached(
                "INSERT INTO events (event_id, kind, commit_lsn, event_time_s, payload, spooled_at_ms, routes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (event_id) DO NOTHING",
            )
            .map_err(|e| self.spool.err(e))?;
        let inserted = insert
            .execute(params![
                event.event_id.as_str(),
                event.kind.as_str(),
                event.commit_lsn.0 as i64,
                event.event_time_s,
                self.payload.as_slice(),
                now,
                routes
            ])
            .map_err(|e| self.spool.err(e))?;
        drop(insert);
        if inserted == 0 {
            // Same ID from another kind: two rules' templates collide, and
            // the second event would vanish. Say so (rare path: conflicts only).
            let kind: String = self
                .conn
                .prepare_cached("SELECT kind FROM events WHERE event_id = ?1")
                .and_then(|mut s| s.query_row([event.event_id.as_str()], |r| r.get(0)))
                .map_err(|e| self.spool.err(e))?;
            if kind != event.kind.as_str() {
                self.record_failure(
                    event.commit_lsn,
                    &format!("rules[{}]", event.rule),
                    &format!(
                        "event_id {} is already taken by a {kind} event: give rules[{}].event_id a prefix of its own",
                        event.event_id, event.rule
                    ),
                )?;
            }
            return Ok(false);
        }
        Ok(true)
    }

    /// Records a row change that could not become an event (no values kept).
    pub fn record_failure(&mut self, commit_lsn: Lsn, relation: &str, reason: &str) -> Result<()> {
        self.ensure_open()?;
        self.conn
            .execute(
                "INSERT INTO derive_failures (commit_lsn, relation, reason, at_ms) VALUES (?1, ?2, ?3, ?4)",
                params![commit_lsn.0 as i64, relation, reason, now_ms()],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Applies a lookup or rule-state effect inside the open batch.
    pub fn apply_state(&mut self, effect: &Effect) -> Result<()> {
        self.ensure_open()?;
        let r = match effect {
            Effect::PutLookup { lookup, pk, key, entry } => {
                let json = serde_json::to_string(entry)
                    .map_err(|source| self.corrupt(&format!("lookup {lookup} row"), source))?;
                let old_key = self.stored_key(lookup, pk)?;
                let mut stmt = self
                    .conn
                    .prepare_cached(
                        "INSERT INTO lookup_rows (lookup, pk, k, updated_us, entry) VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (lookup, pk) DO UPDATE SET k = excluded.k, updated_us = excluded.updated_us, entry = excluded.entry",
                    )
                    .map_err(|e| self.spool.err(e))?;
                let r = stmt.execute(params![lookup, pk, key, entry.updated_us, json]);
                drop(stmt);
                if r.is_ok() {
                    self.cache
                        .get_mut()
                        .put(lookup, pk, key, old_key.as_deref(), entry);
                }
                r
            }
            Effect::DeleteLookup { lookup, pk } => {
                let old_key = self.stored_key(lookup, pk)?;
                let r = self
                    .conn
                    .prepare_cached("DELETE FROM lookup_rows WHERE lookup = ?1 AND pk = ?2")
                    .and_then(|mut s| s.execute(params![lookup, pk]));
                if r.is_ok() {
                    self.cache.get_mut().delete(lookup, pk, old_key.as_deref());
                }
                r
            }
            Effect::ClearLookup { lookup } => {
                let r = self
                    .conn
                    .execute("DELETE FROM lookup_rows WHERE lookup = ?1", [lookup]);
                self.cache.get_mut().clear(lookup);
                r
            }
            Effect::RuleHeld { rule, pk, held: true } => self
                .conn
                .prepare_cached("INSERT INTO rule_state (rule, pk) VALUES (?1, ?2) ON CONFLICT DO NOTHING")
                .and_then(|mut s| s.execute(params![rule, pk])),
            Effect::ClearRule { rule } => self
                .conn
                .execute("DELETE FROM rule_state WHERE rule = ?1", [rule]),
            Effect::RuleHeld { rule, pk, held: false } => self
                .conn
                .prepare_cached("DELETE FROM rule_state WHERE rule = ?1 AND pk = ?2")
                .and_then(|mut s| s.execute(params![rule, pk])),
            Effect::Note(note) => self
                .conn
                .prepare_cached(
                    "INSERT INTO derive_notes (reason, count, last_at_ms) VALUES (?1, 1, ?2)
                     ON CONFLICT (reason) DO UPDATE SET count = count + 1, last_at_ms = excluded.last_at_ms",
                )
                .and_then(|mut s| s.execute(params![note.reason, now_ms()])),
            _ => return Ok(()),
        };
        r.map(|_| ()).map_err(|e| self.err(e))
    }

    /// The key a lookup row is stored under now (from the cache when it
    /// knows the row), so a write can forget that key's cached latest entry.
    fn stored_key(&self, lookup: &str, pk: &str) -> Result<Option<String>> {
        let mut cache = self.cache.borrow_mut();
        cache.sync(self.spool.lookups_pruned());
        if let Some(k) = cache.key_of(lookup, pk) {
            return Ok(k);
        }
        self.conn
            .prepare_cached("SELECT k FROM lookup_rows WHERE lookup = ?1 AND pk = ?2")
            .and_then(|mut s| s.query_row(params![lookup, pk], |r| r.get(0)).optional())
            .map_err(|e| self.err(e))
    }

    fn entry(&self, what: &str, json: Option<String>) -> Result<Option<Entry>> {
        json.map(|j| serde_json::from_str(&j).map_err(|source| self.corrupt(what, source)))
            .transpose()
    }

    /// Sets a `meta` value inside the open batch.
    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<()> {
        self.ensure_open()?;
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [key, value],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Commits the open batch together with checkpoint `lsn`. The stored
    /// checkpoint never moves backwards: a smaller `lsn` keeps the old one.
    pub fn commit(&mut self, lsn: Lsn) -> Result<Lsn> {
        self.ensure_open()?;
        let new = self.checkpoint.map_or(lsn, |c| c.max(lsn));
        self.conn
            .execute(
                "INSERT INTO checkpoint (id, lsn, updated_at_ms) VALUES (1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET lsn = excluded.lsn, updated_at_ms = excluded.updated_at_ms",
                params![new.0 as i64, now_ms()],
            )
            .map_err(|e| self.err(e))?;
        self.conn.execute_batch("COMMIT").map_err(|e| self.err(e))?;
        self.open = false;
        self.checkpoint = Some(new);
        Ok(new)
    }

    /// Commits the open batch without touching the checkpoint: backfill
    /// adds events beside the apply loop, and must never move the position
    /// the stream resumes from.
    pub fn commit_events_only(&mut self) -> Result<()> {
        if self.open {
            self.conn.execute_batch("COMMIT").map_err(|e| self.err(e))?;
            self.open = false;
        }
        Ok(())
    }

    /// Drops the open batch (used when the source connection breaks
    /// mid-transaction: the transaction will be streamed again).
    pub fn rollback(&mut self) -> Result<()> {
        self.cache.get_mut().forget_all();
        if self.open {
            self.open = false;
            self.conn
                .execute_batch("ROLLBACK")
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }
}

fn lookup_err(e: SpoolError) -> LookupError {
    LookupError(Box::new(e))
}

impl Lookup for SpoolWriter {
    fn by_pk(&self, lookup: &str, pk: &str) -> std::result::Result<Option<Entry>, LookupError> {
        {
            let mut cache = self.cache.borrow_mut();
            cache.sync(self.spool.lookups_pruned());
            if let Cached::Known(e) = cache.by_pk(lookup, pk) {
                return Ok(e);
            }
        }
        let json: Option<String> = self
            .conn
            .prepare_cached("SELECT entry FROM lookup_rows WHERE lookup = ?1 AND pk = ?2")
            .and_then(|mut s| s.query_row(params![lookup, pk], |r| r.get(0)).optional())
            .map_err(|e| lookup_err(self.err(e)))?;
        let entry = self
            .entry(&format!("lookup {lookup} row"), json)
            .map_err(lookup_err)?;
        self.cache.borrow_mut().read_pk(lookup, pk, entry.clone());
        Ok(entry)
    }

    fn latest(&self, lookup: &str, key: &str) -> std::result::Result<Option<Entry>, LookupError> {
        {
            let mut cache = self.cache.borrow_mut();
            cache.sync(self.spool.lookups_pruned());
            if let Cached::Known(e) = cache.latest(lookup, key) {
                return Ok(e);
            }
        }
        let json: Option<String> = self
            .conn
            .prepare_cached(
                "SELECT entry FROM lookup_rows WHERE lookup = ?1 AND k = ?2
                 ORDER BY updated_us DESC, rowid DESC LIMIT 1",
            )
            .and_then(|mut s| s.query_row(params![lookup, key], |r| r.get(0)).optional())
            .map_err(|e| lookup_err(self.err(e)))?;
        let entry = self
            .entry(&format!("lookup {lookup} row"), json)
            .map_err(lookup_err)?;
        self.cache
            .borrow_mut()
            .read_latest(lookup, key, entry.clone());
        Ok(entry)
    }

    fn all(&self, lookup: &str, key: &str) -> std::result::Result<Vec<Entry>, LookupError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT pk, entry FROM lookup_rows WHERE lookup = ?1 AND k = ?2")
            .map_err(|e| lookup_err(self.err(e)))?;
        let mut rows = stmt
            .query_map(params![lookup, key], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| lookup_err(self.err(e)))?;
        // Integer keys in numeric order (9 before 10), text keys as text:
        // SQLite's `ORDER BY length(pk), pk`, sorted here because SQLite
        // opened a sorter for it on every purchase, rows or not (a third of
        // this read in workload A; bench/RESULTS.md, ninth session).
        rows.sort_by(|(a, _), (b, _)| {
            (a.chars().count(), a.as_str()).cmp(&(b.chars().count(), b.as_str()))
        });
        rows.into_iter()
            .map(|(_, j)| {
                self.entry(&format!("lookup {lookup} row"), Some(j))
                    .map(|e| e.unwrap_or_default())
            })
            .collect::<Result<Vec<_>>>()
            .map_err(lookup_err)
    }

    fn rule_held(&self, rule: &str, pk: &str) -> std::result::Result<bool, LookupError> {
        self.conn
            .prepare_cached("SELECT 1 FROM rule_state WHERE rule = ?1 AND pk = ?2")
            .and_then(|mut s| s.exists(params![rule, pk]))
            .map_err(|e| lookup_err(self.err(e)))
    }
}
