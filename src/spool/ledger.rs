//! The delivery side of the spool: each destination's ledger of events.
//!
//! An event routed to a lane (`events.routes`) is pending there from the
//! moment it is spooled. Its ledger row is written by the lane with its first
//! outcome: delivered, dead or skipped, or pending again with a later
//! `not_before` and one more attempt. A lane therefore reads two kinds of
//! pending event, in spool order: rows still pending (retries, replays, and
//! rows written before schema version 4), and routed events that have no row
//! yet, read past the lane's cursor.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::{now_ms, Result, Spool, SpoolError};
use crate::event::{BusinessEvent, LaneKind};

/// The due pending rows of one lane, in spool order, up to ?3 (?1
/// destination, ?2 now, ?4 lane). `INDEXED BY` pins the partial index:
/// without statistics SQLite would walk the primary key, i.e. every delivery
/// ever made. One text for both reads below, so they cannot disagree.
macro_rules! due_pending {
    () => {
        "FROM deliveries d INDEXED BY deliveries_pending_lane JOIN events e ON e.seq = d.seq
         WHERE d.destination = ?1 AND d.lane = ?4 AND d.state = 'pending' AND d.not_before_ms <= ?2
         ORDER BY d.seq LIMIT ?3"
    };
}

/// Due pending rows of one lane, with their payloads.
pub(super) const PENDING_SQL: &str = concat!(
    "SELECT d.seq, d.attempts, e.spooled_at_ms, e.event_id, e.payload ",
    due_pending!()
);

/// How many of those rows are due (up to a limit) and when the oldest was
/// spooled, without reading a payload: a batched lane asks this on every
/// wake, and reading (and parsing) a growing batch on every commit cost
/// more than sending it.
pub(super) const PENDING_SUMMARY_SQL: &str = concat!(
    "SELECT count(*), MIN(spooled_at_ms) FROM (SELECT e.spooled_at_ms ",
    due_pending!(),
    ")"
);

/// Events routed to one lane that have no ledger row yet, in spool order:
/// seq in (?1, ?2], routed when `(routes >> ?3) & 3 = ?4`, ?5 destination,
/// up to ?6. The range walks the events' primary key; each candidate costs
/// one probe of the ledger's.
macro_rules! rowless {
    () => {
        "FROM events e
         WHERE e.seq > ?1 AND e.seq <= ?2 AND (e.routes >> ?3) & 3 = ?4
           AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.destination = ?5 AND d.seq = e.seq)
         ORDER BY e.seq LIMIT ?6"
    };
}

/// Row-less events of one lane, with their payloads.
pub(super) const ROWLESS_SQL: &str = concat!(
    "SELECT e.seq, e.spooled_at_ms, e.event_id, e.payload ",
    rowless!()
);

/// How many events routed to one lane lie past its cursor (up to ?6),
/// the first one's seq and the oldest spool time, without probing the
/// ledger: an upper bound on the row-less ones (those recorded since the
/// cursor last moved count too) and a lower bound on their age. A batched
/// lane asks this on every wake; an overestimate only makes it read the
/// batch, which says the truth, a little early. Same parameters as
/// `rowless!` (?5 unused).
pub(super) const ROUTED_SUMMARY_SQL: &str = "SELECT count(*), MIN(seq), MIN(spooled_at_ms) FROM (
     SELECT e.seq, e.spooled_at_ms FROM events e
     WHERE e.seq > ?1 AND e.seq <= ?2 AND (e.routes >> ?3) & 3 = ?4
     ORDER BY e.seq LIMIT ?6)";

/// Where a lane's reads of row-less events start when it has no stored
/// cursor: past the events of spools older than version 4 (all of which
/// have rows), else the beginning.
const STORED_CURSOR_SQL: &str = "SELECT COALESCE(
    (SELECT seq FROM lane_cursors WHERE destination = ?1 AND lane = ?2),
    (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'rowless_from_seq'),
    0)";

/// How often, at most, an idle lane stores a cursor that moved.
const CURSOR_SAVE_EVERY: Duration = Duration::from_secs(1);

/// The earliest retry time among pending events of one destination.
pub(super) const NEXT_DUE_SQL: &str = "SELECT MIN(not_before_ms) FROM deliveries INDEXED BY deliveries_pending_lane_due WHERE destination = ?1 AND lane = ?2 AND state = 'pending'";

/// Where one event stands for one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Not yet accepted by the platform.
    Pending,
    /// Accepted by the platform.
    Delivered,
    /// Given up on, with the platform's reason.
    Dead,
    /// Not sent by policy, with the reason.
    Skipped,
}

impl DeliveryState {
    fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
            DeliveryState::Skipped => "skipped",
        }
    }
}

/// A pending event handed to a lane.
#[derive(Debug, Clone)]
pub struct PendingEvent {
    /// Spool order.
    pub seq: i64,
    /// Attempts so far.
    pub attempts: u32,
    /// When it was spooled (ms since epoch), for latency metrics.
    pub spooled_at_ms: i64,
    /// The event.
    pub event: BusinessEvent,
}

/// Per-state counts for one destination.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LedgerCounts {
    /// Waiting to be sent.
    pub pending: u64,
    /// Accepted.
    pub delivered: u64,
    /// Dead-lettered.
    pub dead: u64,
    /// Skipped by policy.
    pub skipped: u64,
}

/// Derived events per kind, and ledger counts per destination × kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Breakdown {
    /// Kind → events derived.
    pub derived: std::collections::BTreeMap<String, u64>,
    /// Destination → kind → counts.
    pub destinations:
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, LedgerCounts>>,
}

/// Events in the last hour against the same hour a week before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HourlyCount {
    /// The last hour.
    pub last_hour: u64,
    /// The same hour, a week earlier.
    pub same_hour_last_week: u64,
}

/// One destination's ledger row for one event.
#[derive(Debug, Clone, Serialize)]
pub struct LedgerRow {
    /// Destination.
    pub destination: String,
    /// pending | delivered | dead | skipped.
    pub state: String,
    /// Attempts made.
    pub attempts: u32,
    /// The platform's last answer, the policy's reason, or the receipt.
    pub reason: Option<String>,
    /// Last change (ms).
    pub updated_at_ms: i64,
    /// real_time | batched.
    pub lane: String,
    /// Not sent before (ms).
    pub not_before_ms: i64,
}

/// Which dead letters a command works on.
#[derive(Debug, Clone, Default)]
pub struct DeadFilter {
    /// Only this destination.
    pub destination: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Dead-lettered at or after (ms).
    pub since_ms: Option<i64>,
    /// Dead-lettered before (ms).
    pub until_ms: Option<i64>,
}

impl DeadFilter {
    /// ` AND ...` conditions over `d` (deliveries) and `e.kind`, with their values.
    fn sql(&self) -> (String, Vec<rusqlite::types::Value>) {
        use rusqlite::types::Value;
        let mut clause = String::new();
        let mut args = Vec::new();
        if let Some(d) = &self.destination {
            clause.push_str(" AND d.destination = ?");
            args.push(Value::Text(d.clone()));
        }
        if let Some(k) = &self.kind {
            clause.push_str(" AND e.kind = ?");
            args.push(Value::Text(k.clone()));
        }
        if let Some(t) = self.since_ms {
            clause.push_str(" AND d.updated_at_ms >= ?");
            args.push(Value::Integer(t));
        }
        if let Some(t) = self.until_ms {
            clause.push_str(" AND d.updated_at_ms < ?");
            args.push(Value::Integer(t));
        }
        (clause, args)
    }
}

/// One dead letter.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// Destination.
    pub destination: String,
    /// Event.
    pub event_id: String,
    /// Kind.
    pub kind: String,
    /// Attempts made.
    pub attempts: u32,
    /// The platform's last answer.
    pub reason: Option<String>,
    /// When (ms).
    pub at_ms: i64,
}

/// A dead or skipped event and why.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The event.
    pub event_id: String,
    /// Its state.
    pub state: String,
    /// The platform's reason, or the policy's.
    pub reason: Option<String>,
    /// Attempts made.
    pub attempts: u32,
}

/// Reads and updates delivery state.
#[derive(Debug)]
pub struct Ledger {
    spool: Spool,
    conn: Connection,
    /// What this connection knows of each lane's cursor.
    cursors: RefCell<HashMap<(String, LaneKind), Cursor>>,
    /// Destinations' slots in `events.routes` (only found ones: a
    /// destination is registered by the writer, maybe after a lane starts).
    slots: RefCell<HashMap<String, u32>>,
    /// When this connection last stored cursors outside an outcome.
    cursors_saved_at: Option<Instant>,
    /// Write transactions committed (see [`Ledger::commits`]).
    commits: u64,
}

/// One lane's cursor: every event routed to it at or below `read_from` has
/// a ledger row, and `saved` is what `lane_cursors` holds.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    read_from: i64,
    saved: i64,
}

/// A lane's due pending events, or just how many and how old.
enum Read {
    Events(Vec<PendingEvent>),
    Summary(usize, Option<i64>),
}

/// Events given one value and reason by [`Ledger::update_each`].
struct Row<'a, V> {
    seqs: &'a [i64],
    value: V,
    reason: Option<&'a str>,
}

impl Ledger {
    pub(super) fn new(spool: Spool, conn: Connection) -> Ledger {
        Ledger {
            spool,
            conn,
            cursors: RefCell::default(),
            slots: RefCell::default(),
            cursors_saved_at: None,
            commits: 0,
        }
    }

    /// A pragma's value on this connection (tests of the settings).
    #[cfg(test)]
    pub(super) fn pragma(&self, name: &str) -> i64 {
        self.conn
            .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
            .unwrap()
    }

    fn err(&self, e: rusqlite::Error) -> SpoolError {
        self.spool.err(e)
    }

    fn corrupt(&self, record: String, source: super::RecordError) -> SpoolError {
        SpoolError::Corrupt {
            path: self.spool.path.clone(),
            record,
            source,
        }
    }

    /// `destination`'s slot in `events.routes`; `None` until the writer
    /// has routed an event (or anything) to it.
    fn slot(&self, destination: &str) -> Result<Option<u32>> {
        if let Some(slot) = self.slots.borrow().get(destination) {
            return Ok(Some(*slot));
        }
        let slot =
            super::destination_slot(&self.conn, destination, false).map_err(|e| self.err(e))?;
        if let Some(slot) = slot {
            self.slots.borrow_mut().insert(destination.to_owned(), slot);
        }
        Ok(slot)
    }

    /// Where reads of `lane`'s row-less events start: the further of what
    /// this connection found and what is stored (by this connection, or by
    /// the lane when this one serves `status`).
    fn cursor(&self, destination: &str, lane: LaneKind) -> Result<i64> {
        let stored: i64 = self
            .conn
            .prepare_cached(STORED_CURSOR_SQL)
            .and_then(|mut s| s.query_row(params![destination, lane.as_str()], |r| r.get(0)))
            .map_err(|e| self.err(e))?;
        let mut cursors = self.cursors.borrow_mut();
        let c = cursors
            .entry((destination.to_owned(), lane))
            .or_insert(Cursor {
                read_from: stored,
                saved: stored,
            });
        c.read_from = c.read_from.max(stored);
        c.saved = c.saved.max(stored);
        Ok(c.read_from)
    }

    /// Moves `lane`'s cursor to `to` (never back): a read found that every
    /// routed event up to `to` has a row. Rows are never deleted without
    /// their event, and new events get larger seqs, so that stays true.
    fn advance(&self, destination: &str, lane: LaneKind, to: i64) {
        if let Some(c) = self
            .cursors
            .borrow_mut()
            .get_mut(&(destination.to_owned(), lane))
        {
            c.read_from = c.read_from.max(to);
        }
    }

    /// Stores the cursors of `destination`'s lanes that moved, inside `tx`;
    /// returns them, to mark as saved once `tx` commits.
    fn store_cursors(
        &self,
        tx: &Connection,
        destination: Option<&str>,
    ) -> Result<Vec<((String, LaneKind), i64)>> {
        let moved: Vec<((String, LaneKind), i64)> = self
            .cursors
            .borrow()
            .iter()
            .filter(|((d, _), c)| c.read_from > c.saved && destination.is_none_or(|want| want == d))
            .map(|(k, c)| (k.clone(), c.read_from))
            .collect();
        if !moved.is_empty() {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO lane_cursors (destination, lane, seq) VALUES (?1, ?2, ?3)
                     ON CONFLICT (destination, lane) DO UPDATE SET seq = MAX(seq, excluded.seq)",
                )
                .map_err(|e| self.err(e))?;
            for ((d, lane), seq) in &moved {
                stmt.execute(params![d, lane.as_str(), seq])
                    .map_err(|e| self.err(e))?;
            }
        }
        Ok(moved)
    }

    fn cursors_saved(&self, saved: Vec<((String, LaneKind), i64)>) {
        let mut cursors = self.cursors.borrow_mut();
        for (key, seq) in saved {
            if let Some(c) = cursors.get_mut(&key) {
                c.saved = c.saved.max(seq);
            }
        }
    }

    /// Stores cursors that moved while nothing was recorded (a lane whose
    /// kinds are all sent by the other lane reads but never writes), at
    /// most every [`CURSOR_SAVE_EVERY`], so a restart and `status` start
    /// their reads near the end.
    pub fn save_moved_cursors(&mut self) -> Result<()> {
        if self
            .cursors_saved_at
            .is_some_and(|t| t.elapsed() < CURSOR_SAVE_EVERY)
            || !self
                .cursors
                .borrow()
                .values()
                .any(|c| c.read_from > c.saved)
        {
            return Ok(());
        }
        self.cursors_saved_at = Some(Instant::now());
        let _turn = self.spool.lane_turn();
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(|e| self.spool.err(e))?;
        let saved = self.store_cursors(&tx, None)?;
        tx.commit().map_err(|e| self.spool.err(e))?;
        self.commits += 1;
        self.cursors_saved(saved);
        Ok(())
    }

    /// Up to `limit` pending events of one lane of `destination` that are
    /// due at `now_ms`, in spool order.
    pub fn pending(
        &self,
        destination: &str,
        lane: LaneKind,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<PendingEvent>> {
        match self.read(destination, lane, now_ms, limit, false)? {
            Read::Events(events) => Ok(events),
            Read::Summary(..) => unreachable!("asked for events"),
        }
    }

    /// How many pending events of one lane are due at `now_ms` (counting at
    /// most `limit`), and the oldest one's spool time: what
    /// [`Ledger::pending`] would return, without the payloads, or more and
    /// older (see [`ROUTED_SUMMARY_SQL`]).
    pub fn pending_summary(
        &self,
        destination: &str,
        lane: LaneKind,
        now_ms: i64,
        limit: usize,
    ) -> Result<(usize, Option<i64>)> {
        match self.read(destination, lane, now_ms, limit, true)? {
            Read::Summary(n, oldest) => Ok((n, oldest)),
            Read::Events(_) => unreachable!("asked for a summary"),
        }
    }

    /// Both kinds of pending event of one lane from one snapshot: due rows,
    /// and routed events without a row past the lane's cursor (which moves
    /// up to the first of those, or to the end when there is none).
    fn read(
        &self,
        destination: &str,
        lane: LaneKind,
        now_ms: i64,
        limit: usize,
        summary: bool,
    ) -> Result<Read> {
        let slot = self.slot(destination)?;
        let from = self.cursor(destination, lane)?;
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        let end: i64 = tx
            .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM events")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(|e| self.err(e))?;
        let want = if lane == LaneKind::Batched { 3 } else { 1 };
        let lim = limit as i64;
        if summary {
            let (mut n, mut oldest) = tx
                .prepare_cached(PENDING_SUMMARY_SQL)
                .and_then(|mut s| {
                    s.query_row(params![destination, now_ms, lim, lane.as_str()], |r| {
                        Ok((r.get::<_, i64>(0)? as usize, r.get::<_, Option<i64>>(1)?))
                    })
                })
                .map_err(|e| self.err(e))?;
            if let Some(slot) = slot {
                let (m, first, old): (i64, Option<i64>, Option<i64>) = tx
                    .prepare_cached(ROUTED_SUMMARY_SQL)
                    .and_then(|mut s| {
                        s.query_row(
                            params![from, end, 2 * i64::from(slot), want, destination, lim],
                            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                        )
                    })
                    .map_err(|e| self.err(e))?;
                // Nothing before the first routed event is routed here.
                self.advance(destination, lane, first.map_or(end, |f| f - 1));
                n = (n + m as usize).min(limit);
                oldest = match (oldest, old) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            return Ok(Read::Summary(n, oldest));
        }
        // Payloads are parsed from SQLite's buffer, without a copy first.
        type Parsed = std::result::Result<BusinessEvent, (String, super::RecordError)>;
        let parse = |r: &rusqlite::Row<'_>, id: usize| -> rusqlite::Result<Parsed> {
            Ok(
                super::payload::decode(r.get_ref(id + 1)?).map_err(|source| {
                    let event_id = r.get_ref(id).ok().and_then(|v| v.as_str().ok());
                    (event_id.unwrap_or("?").to_owned(), source)
                }),
            )
        };
        let mut raw: Vec<(i64, u32, i64, Parsed)> = tx
            .prepare_cached(PENDING_SQL)
            .and_then(|mut s| {
                s.query_map(params![destination, now_ms, lim, lane.as_str()], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, parse(r, 3)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(|e| self.err(e))?;
        if let Some(slot) = slot {
            let fresh: Vec<(i64, u32, i64, Parsed)> = tx
                .prepare_cached(ROWLESS_SQL)
                .and_then(|mut s| {
                    s.query_map(
                        params![from, end, 2 * i64::from(slot), want, destination, lim],
                        |r| Ok((r.get(0)?, 0, r.get(1)?, parse(r, 2)?)),
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(|e| self.err(e))?;
            self.advance(destination, lane, fresh.first().map_or(end, |f| f.0 - 1));
            if !fresh.is_empty() {
                raw.extend(fresh);
                raw.sort_unstable_by_key(|r| r.0);
                raw.dedup_by_key(|r| r.0);
                raw.truncate(limit);
            }
        }
        drop(tx);
        let mut out = Vec::with_capacity(raw.len());
        for (seq, attempts, spooled_at_ms, event) in raw {
            let event =
                event.map_err(|(id, source)| self.corrupt(format!("event {id}"), source))?;
            out.push(PendingEvent {
                seq,
                attempts,
                spooled_at_ms,
                event,
            });
        }
        Ok(Read::Events(out))
    }

    /// The earliest `not_before` among one lane's pending events, if any.
    pub fn next_due_ms(&self, destination: &str, lane: LaneKind) -> Result<Option<i64>> {
        self.conn
            .query_row(NEXT_DUE_SQL, [destination, lane.as_str()], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    /// Records a final outcome of `lane` for `seqs` (one attempt each when
    /// `attempted`), writing their ledger rows if they have none yet.
    pub fn finish(
        &mut self,
        destination: &str,
        lane: LaneKind,
        seqs: &[i64],
        state: DeliveryState,
        reason: Option<&str>,
        attempted: bool,
    ) -> Result<()> {
        self.finish_each(destination, lane, &[(seqs, reason)], state, attempted)
    }

    /// [`Ledger::finish`] for several groups of events, each with its own
    /// reason, in one transaction: a request's outcome is one commit (one
    /// fsync, one turn at the write lock) however its events' notes differ.
    pub fn finish_each(
        &mut self,
        destination: &str,
        lane: LaneKind,
        groups: &[(&[i64], Option<&str>)],
        state: DeliveryState,
        attempted: bool,
    ) -> Result<()> {
        let rows: Vec<Row<'_, &str>> = groups
            .iter()
            .map(|(seqs, reason)| Row {
                seqs,
                value: state.as_str(),
                reason: *reason,
            })
            .collect();
        self.update_each(
            "INSERT INTO deliveries (destination, seq, state, lane, attempts, reason, updated_at_ms)
             VALUES (?1, ?2, ?3, ?7, ?5, ?4, ?6)
             ON CONFLICT (destination, seq) DO UPDATE SET state = excluded.state, reason = excluded.reason,
                 attempts = attempts + excluded.attempts, updated_at_ms = excluded.updated_at_ms",
            (destination, lane),
            &rows,
            attempted,
            state != DeliveryState::Delivered,
        )
    }

    /// Keeps `seqs` pending in `lane` until `not_before_ms`, counting an
    /// attempt when `count_attempt` (a row settled meanwhile stays settled).
    pub fn retry_later(
        &mut self,
        destination: &str,
        lane: LaneKind,
        seqs: &[i64],
        not_before_ms: i64,
        reason: &str,
        count_attempt: bool,
    ) -> Result<()> {
        let at: Vec<(i64, i64)> = seqs.iter().map(|s| (*s, not_before_ms)).collect();
        self.retry_each(destination, lane, &at, reason, count_attempt)
    }

    /// [`Ledger::retry_later`] with a time of its own per seq
    /// (`(seq, not_before_ms)`), in one transaction.
    pub fn retry_each(
        &mut self,
        destination: &str,
        lane: LaneKind,
        at: &[(i64, i64)],
        reason: &str,
        count_attempt: bool,
    ) -> Result<()> {
        let rows: Vec<Row<'_, i64>> = at
            .iter()
            .map(|(seq, not_before_ms)| Row {
                seqs: std::slice::from_ref(seq),
                value: *not_before_ms,
                reason: Some(reason),
            })
            .collect();
        self.update_each(
            "INSERT INTO deliveries (destination, seq, state, lane, attempts, not_before_ms, reason, updated_at_ms)
             VALUES (?1, ?2, 'pending', ?7, ?5, ?3, ?4, ?6)
             ON CONFLICT (destination, seq) DO UPDATE SET not_before_ms = excluded.not_before_ms,
                 reason = excluded.reason, attempts = attempts + excluded.attempts,
                 updated_at_ms = excluded.updated_at_ms
             WHERE state = 'pending'",
            (destination, lane),
            &rows,
            count_attempt,
            true,
        )
    }

    /// Runs `sql` once per seq of every row, all in one transaction, with
    /// the cursors of the destination's lanes that moved. Parameters: ?1
    /// destination, ?2 seq, ?3 the row's value, ?4 its reason, ?5 attempts
    /// to add, ?6 now, ?7 lane.
    fn update_each<V: rusqlite::ToSql>(
        &mut self,
        sql: &str,
        (destination, lane): (&str, LaneKind),
        rows: &[Row<'_, V>],
        attempted: bool,
        log: bool,
    ) -> Result<()> {
        if rows.iter().all(|r| r.seqs.is_empty()) {
            return Ok(());
        }
        let _turn = self.spool.lane_turn();
        // Unchecked: `&self` stays usable for the cursors; nothing nests.
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(|e| self.spool.err(e))?;
        let saved = {
            let mut stmt = tx.prepare_cached(sql).map_err(|e| self.spool.err(e))?;
            let now = now_ms();
            for row in rows {
                for seq in row.seqs {
                    stmt.execute(params![
                        destination,
                        seq,
                        row.value,
                        row.reason,
                        i64::from(attempted),
                        now,
                        lane.as_str()
                    ])
                    .map_err(|e| self.spool.err(e))?;
                }
            }
            // Every answer that did not settle the event (and every final
            // failure) is kept for `status --event`; a successful delivery
            // is the final state itself. Rare in normal operation.
            if log {
                let mut log = tx
                    .prepare_cached("INSERT INTO attempt_log (destination, seq, at_ms, counted, answer) VALUES (?1, ?2, ?3, ?4, ?5)")
                    .map_err(|e| self.spool.err(e))?;
                for row in rows {
                    let Some(reason) = row.reason else { continue };
                    for seq in row.seqs {
                        log.execute(params![destination, seq, now, i64::from(attempted), reason])
                            .map_err(|e| self.spool.err(e))?;
                    }
                }
            }
            self.store_cursors(&tx, Some(destination))?
        };
        tx.commit().map_err(|e| self.spool.err(e))?;
        self.commits += 1;
        self.cursors_saved(saved);
        Ok(())
    }

    /// Write transactions this connection committed (outcomes, retries,
    /// cursors): each is one turn at the spool's write lock and one fsync.
    pub fn commits(&self) -> u64 {
        self.commits
    }

    /// The logged answers of one event at `destination`, oldest first:
    /// (at ms, counted as an attempt, answer).
    pub fn attempt_log(
        &self,
        destination: &str,
        event_id: &str,
    ) -> Result<Vec<(i64, bool, String)>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT a.at_ms, a.counted, a.answer FROM attempt_log a JOIN events e ON e.seq = a.seq
                 WHERE a.destination = ?1 AND e.event_id = ?2 ORDER BY a.at_ms, a.rowid",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![destination, event_id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)? == 1,
                    r.get::<_, String>(2)?,
                ))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }

    /// Per-state counts for `destination`.
    pub fn counts(&self, destination: &str) -> Result<LedgerCounts> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT state, COUNT(*) FROM deliveries WHERE destination = ?1 GROUP BY state",
            )
            .map_err(|e| self.err(e))?;
        let mut counts = LedgerCounts::default();
        let rows = stmt
            .query_map([destination], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?))
            })
            .map_err(|e| self.err(e))?;
        for row in rows {
            let (state, n) = row.map_err(|e| self.err(e))?;
            match state.as_str() {
                "pending" => counts.pending = n,
                "delivered" => counts.delivered = n,
                "dead" => counts.dead = n,
                "skipped" => counts.skipped = n,
                _ => {}
            }
        }
        drop(stmt);
        counts.pending += self.rowless_by_kind(destination)?.values().sum::<u64>();
        Ok(counts)
    }

    /// Per kind, events routed to `destination` (either lane) that have no
    /// ledger row yet: pending, and not yet read by a lane.
    fn rowless_by_kind(
        &self,
        destination: &str,
    ) -> Result<std::collections::BTreeMap<String, u64>> {
        let Some(slot) = self.slot(destination)? else {
            return Ok(Default::default());
        };
        let from = self
            .cursor(destination, LaneKind::RealTime)?
            .min(self.cursor(destination, LaneKind::Batched)?);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT e.kind, COUNT(*) FROM events e
                 WHERE e.seq > ?1 AND (e.routes >> ?2) & 1 = 1
                   AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.destination = ?3 AND d.seq = e.seq)
                 GROUP BY e.kind",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![from, 2 * i64::from(slot), destination], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<_>>())
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }

    /// Destinations events were ever routed to.
    fn routed_destinations(&self) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name FROM destinations ORDER BY slot")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<String>>>())
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }

    /// Dead-lettered and skipped events for `destination`, newest first.
    pub fn outcomes(&self, destination: &str, limit: usize) -> Result<Vec<Outcome>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT e.event_id, d.state, d.reason, d.attempts FROM deliveries d JOIN events e ON e.seq = d.seq
                 WHERE d.destination = ?1 AND d.state IN ('dead', 'skipped')
                 ORDER BY d.seq DESC LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![destination, limit as i64], |r| {
                Ok(Outcome {
                    event_id: r.get(0)?,
                    state: r.get(1)?,
                    reason: r.get(2)?,
                    attempts: r.get(3)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    /// Dead letters matching `filter`, newest first.
    pub fn dead_letters(&self, filter: &DeadFilter, limit: usize) -> Result<Vec<DeadLetter>> {
        let (clause, args) = filter.sql();
        let sql = format!(
            "SELECT d.destination, e.event_id, e.kind, d.attempts, d.reason, d.updated_at_ms
             FROM deliveries d JOIN events e ON e.seq = d.seq
             WHERE d.state = 'dead' {clause} ORDER BY d.updated_at_ms DESC, d.seq DESC LIMIT {limit}"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                Ok(DeadLetter {
                    destination: r.get(0)?,
                    event_id: r.get(1)?,
                    kind: r.get(2)?,
                    attempts: r.get(3)?,
                    reason: r.get(4)?,
                    at_ms: r.get(5)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }

    /// Puts matching dead letters back to pending, due now, with a fresh
    /// retry budget; returns how many.
    pub fn retry_dead(&mut self, filter: &DeadFilter) -> Result<usize> {
        self.change_dead(filter, "state = 'pending', attempts = 0, not_before_ms = 0, reason = 'retried by the operator; was: ' || COALESCE(reason, '')")
    }

    /// Marks matching dead letters as skipped by the operator; returns how many.
    pub fn drop_dead(&mut self, filter: &DeadFilter) -> Result<usize> {
        self.change_dead(
            filter,
            "state = 'skipped', reason = 'dropped by the operator; was: ' || COALESCE(reason, '')",
        )
    }

    fn change_dead(&mut self, filter: &DeadFilter, set: &str) -> Result<usize> {
        let (clause, args) = filter.sql();
        let sql = format!(
            "UPDATE deliveries AS d SET {set}, updated_at_ms = {now}
             WHERE d.state = 'dead' {clause}",
            now = now_ms()
        )
        .replace("e.kind", "(SELECT kind FROM events WHERE seq = d.seq)");
        self.conn
            .execute(&sql, rusqlite::params_from_iter(args.iter()))
            .map_err(|e| self.err(e))
    }

    /// Recorded derive failures, newest first: (commit LSN, table, reason).
    pub fn derive_failure_list(
        &self,
        limit: usize,
    ) -> Result<Vec<(crate::lsn::Lsn, String, String)>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT commit_lsn, relation, reason FROM derive_failures ORDER BY id DESC LIMIT ?1",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([limit as i64], |r| {
                Ok((
                    crate::lsn::Lsn(r.get::<_, i64>(0)? as u64),
                    r.get(1)?,
                    r.get(2)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    /// Number of stored events (all destinations).
    pub fn event_count(&self) -> Result<u64> {
        self.conn
            .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    /// Row changes that could not become events.
    pub fn derive_failures(&self) -> Result<u64> {
        self.conn
            .query_row("SELECT COUNT(*) FROM derive_failures", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    /// Per kind: events derived; per destination × kind: where they stand.
    /// Events derived while a destination was not enabled count as derived
    /// and have no row for it.
    pub fn breakdown(&self) -> Result<Breakdown> {
        let mut out = Breakdown::default();
        let mut stmt = self
            .conn
            .prepare("SELECT kind, COUNT(*) FROM events GROUP BY kind")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e))?;
        out.derived.extend(rows);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT d.destination, e.kind, d.state, COUNT(*) FROM deliveries d JOIN events e ON e.seq = d.seq
                 GROUP BY d.destination, e.kind, d.state",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, u64>(3)?,
                ))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e))?;
        for (dest, kind, state, n) in rows {
            let c = out
                .destinations
                .entry(dest)
                .or_default()
                .entry(kind)
                .or_default();
            match state.as_str() {
                "pending" => c.pending += n,
                "delivered" => c.delivered += n,
                "dead" => c.dead += n,
                _ => c.skipped += n,
            }
        }
        for dest in self.routed_destinations()? {
            for (kind, n) in self.rowless_by_kind(&dest)? {
                out.destinations
                    .entry(dest.clone())
                    .or_default()
                    .entry(kind)
                    .or_default()
                    .pending += n;
            }
        }
        Ok(out)
    }

    /// Events whose commit LSN is in `[from, to]` (and of `kind`, if given):
    /// `(seq, kind, lane, event_time_s)`, in spool order.
    pub fn events_in_range(
        &self,
        from: crate::lsn::Lsn,
        to: crate::lsn::Lsn,
        kind: Option<&str>,
    ) -> Result<Vec<(i64, String, LaneKind, i64)>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT seq, kind, payload, event_time_s FROM events
                 WHERE commit_lsn >= ?1 AND commit_lsn <= ?2 AND (?3 IS NULL OR kind = ?3) ORDER BY seq",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![from.0 as i64, to.0 as i64, kind], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, rusqlite::types::Value>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e))?;
        rows.into_iter()
            .map(|(seq, kind, payload, t)| {
                let ev: BusinessEvent =
                    super::payload::decode((&payload).into()).map_err(|source| {
                        SpoolError::Corrupt {
                            path: self.spool.path.clone(),
                            record: format!("event seq {seq}"),
                            source,
                        }
                    })?;
                Ok((seq, kind, ev.lane, t))
            })
            .collect()
    }

    /// Makes `seqs` pending again for `destination` (creating the ledger
    /// row for a destination enabled after they were spooled), due now,
    /// with a fresh retry budget.
    pub fn replay(&mut self, destination: &str, rows: &[(i64, LaneKind)]) -> Result<()> {
        let now = now_ms();
        let tx = self.conn.transaction().map_err(|e| self.spool.err(e))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO deliveries (destination, seq, state, lane, attempts, not_before_ms, reason, updated_at_ms)
                     VALUES (?1, ?2, 'pending', ?3, 0, 0, 'replay', ?4)
                     ON CONFLICT (destination, seq) DO UPDATE SET state = 'pending', attempts = 0, not_before_ms = 0,
                         reason = 'replay', updated_at_ms = excluded.updated_at_ms",
                )
                .map_err(|e| self.spool.err(e))?;
            for (seq, lane) in rows {
                stmt.execute(params![destination, seq, lane.as_str(), now])
                    .map_err(|e| self.spool.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.spool.err(e))
    }

    /// Where `seqs` stand for `destination`: (kind, state, reason) per event
    /// (pending while no lane has recorded an outcome).
    pub fn states_of(
        &self,
        destination: &str,
        seqs: &[i64],
    ) -> Result<Vec<(String, String, Option<String>)>> {
        let mut out = Vec::with_capacity(seqs.len());
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT e.kind, COALESCE(d.state, 'pending'), d.reason FROM events e
                 LEFT JOIN deliveries d ON d.destination = ?1 AND d.seq = e.seq
                 WHERE e.seq = ?2",
            )
            .map_err(|e| self.err(e))?;
        for seq in seqs {
            let row = stmt
                .query_row(params![destination, seq], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .map_err(|e| self.err(e))?;
            out.push(row);
        }
        Ok(out)
    }

    /// Deletes up to `limit` events spooled before `before_ms` whose
    /// deliveries are all settled (none pending, and a row for every
    /// destination they were routed to), with their ledger rows;
    /// returns how many events went.
    pub fn prune_events(&mut self, before_ms: i64, limit: usize) -> Result<usize> {
        let tx = self.conn.transaction().map_err(|e| self.spool.err(e))?;
        let n = {
            let seqs: Vec<i64> = {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT e.seq FROM events e WHERE e.spooled_at_ms < ?1
                         AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.seq = e.seq AND d.state = 'pending')
                         AND NOT EXISTS (SELECT 1 FROM destinations t WHERE (e.routes >> (2 * t.slot)) & 1 = 1
                             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.destination = t.name AND d.seq = e.seq))
                         ORDER BY e.seq LIMIT ?2",
                    )
                    .map_err(|e| self.spool.err(e))?;
                let rows = stmt
                    .query_map(params![before_ms, limit as i64], |r| r.get(0))
                    .and_then(|rows| rows.collect::<rusqlite::Result<Vec<i64>>>())
                    .map_err(|e| self.spool.err(e))?;
                rows
            };
            for seq in &seqs {
                tx.execute("DELETE FROM attempt_log WHERE seq = ?1", [seq])
                    .map_err(|e| self.spool.err(e))?;
                tx.execute("DELETE FROM deliveries WHERE seq = ?1", [seq])
                    .map_err(|e| self.spool.err(e))?;
                tx.execute("DELETE FROM events WHERE seq = ?1", [seq])
                    .map_err(|e| self.spool.err(e))?;
            }
            seqs.len()
        };
        tx.commit().map_err(|e| self.spool.err(e))?;
        Ok(n)
    }

    /// Deletes up to `limit` rows of `lookup` last changed before
    /// `before_us` (expired lookup state); returns how many.
    pub fn prune_lookup(&mut self, lookup: &str, before_us: i64, limit: usize) -> Result<usize> {
        let n = self
            .conn
            .execute(
                "DELETE FROM lookup_rows WHERE rowid IN (SELECT rowid FROM lookup_rows WHERE lookup = ?1 AND updated_us < ?2 LIMIT ?3)",
                params![lookup, before_us, limit as i64],
            )
            .map_err(|e| self.err(e))?;
        if n > 0 {
            // Committed (autocommit): the writer's cache must not keep them.
            self.spool.note_lookups_pruned();
        }
        Ok(n)
    }

    /// The newest change time stored for a lookup (µs), if it has rows.
    pub fn newest_lookup_change_us(&self, lookup: &str) -> Result<Option<i64>> {
        self.conn
            .query_row(
                "SELECT MAX(updated_us) FROM lookup_rows WHERE lookup = ?1",
                [lookup],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// Recent events of `destination` (spooled since `since_ms`, newest
    /// first): state, last update (ms; the spool time while no lane has
    /// recorded an outcome) and the event.
    pub fn recent_deliveries(
        &self,
        destination: &str,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, i64, BusinessEvent)>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT COALESCE(d.state, 'pending'), COALESCE(d.updated_at_ms, e.spooled_at_ms), e.payload, e.event_id
                 FROM events e LEFT JOIN deliveries d ON d.destination = ?1 AND d.seq = e.seq
                 WHERE e.spooled_at_ms >= ?2 AND (d.seq IS NOT NULL OR (e.routes >> ?4) & 1 = 1)
                 ORDER BY e.seq DESC LIMIT ?3",
            )
            .map_err(|e| self.err(e))?;
        // NULL when nothing was ever routed there: then only rows count.
        let shift = self.slot(destination)?.map(|s| 2 * i64::from(s));
        let rows = stmt
            .query_map(params![destination, since_ms, limit as i64, shift], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, rusqlite::types::Value>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e))?;
        rows.into_iter()
            .map(|(state, at, payload, id)| {
                let ev = super::payload::decode((&payload).into()).map_err(|source| {
                    SpoolError::Corrupt {
                        path: self.spool.path.clone(),
                        record: format!("event {id}"),
                        source,
                    }
                })?;
                Ok((state, at, ev))
            })
            .collect()
    }

    /// Events of `kind` spooled for `destination` in the last hour, and in
    /// the same hour a week earlier.
    pub fn per_hour(&self, destination: &str, kind: &str, now_ms: i64) -> Result<HourlyCount> {
        let shift = self.slot(destination)?.map(|s| 2 * i64::from(s));
        let count = |from: i64, to: i64| -> Result<u64> {
            self.conn
                .prepare_cached(
                    "SELECT count(*) FROM events e
                     WHERE e.kind = ?2 AND e.spooled_at_ms >= ?3 AND e.spooled_at_ms < ?4
                       AND ((e.routes >> ?5) & 1 = 1
                            OR EXISTS (SELECT 1 FROM deliveries d WHERE d.destination = ?1 AND d.seq = e.seq))",
                )
                .and_then(|mut s| {
                    s.query_row(params![destination, kind, from, to, shift], |r| r.get(0))
                })
                .map_err(|e| self.err(e))
        };
        const HOUR: i64 = 3_600_000;
        const WEEK: i64 = 7 * 24 * HOUR;
        Ok(HourlyCount {
            last_hour: count(now_ms - HOUR, now_ms)?,
            same_hour_last_week: count(now_ms - WEEK - HOUR, now_ms - WEEK)?,
        })
    }

    /// One event and its ledger rows: the payload, and per destination
    /// (name, state, attempts, last answer or receipt, last change ms, lane,
    /// not_before ms).
    pub fn event_story(&self, event_id: &str) -> Result<Option<(BusinessEvent, Vec<LedgerRow>)>> {
        let row: Option<(i64, rusqlite::types::Value, Option<i64>, i64)> = self
            .conn
            .query_row(
                "SELECT seq, payload, routes, spooled_at_ms FROM events WHERE event_id = ?1",
                [event_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let Some((seq, payload, routes, spooled_at_ms)) = row else {
            return Ok(None);
        };
        let event =
            super::payload::decode((&payload).into()).map_err(|source| SpoolError::Corrupt {
                path: self.spool.path.clone(),
                record: format!("event {event_id}"),
                source,
            })?;
        let mut stmt = self
            .conn
            .prepare("SELECT destination, state, attempts, reason, updated_at_ms, lane, not_before_ms FROM deliveries WHERE seq = ?1 ORDER BY destination")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([seq], |r| {
                Ok(LedgerRow {
                    destination: r.get(0)?,
                    state: r.get(1)?,
                    attempts: r.get(2)?,
                    reason: r.get(3)?,
                    updated_at_ms: r.get(4)?,
                    lane: r.get(5)?,
                    not_before_ms: r.get(6)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<LedgerRow>>>())
            .map_err(|e| self.err(e))?;
        drop(stmt);
        // Routed destinations whose lane has not recorded anything yet.
        let mut rows = rows;
        for dest in self.routed_destinations()? {
            let Some(slot) = self.slot(&dest)? else {
                continue;
            };
            let bits = routes.unwrap_or(0) >> (2 * slot);
            if bits & 1 == 1 && !rows.iter().any(|r| r.destination == dest) {
                let lane = if bits & 2 == 2 {
                    LaneKind::Batched
                } else {
                    LaneKind::RealTime
                };
                rows.push(LedgerRow {
                    destination: dest,
                    state: DeliveryState::Pending.as_str().to_owned(),
                    attempts: 0,
                    reason: None,
                    updated_at_ms: spooled_at_ms,
                    lane: lane.as_str().to_owned(),
                    not_before_ms: 0,
                });
            }
        }
        rows.sort_by(|a, b| a.destination.cmp(&b.destination));
        Ok(Some((event, rows)))
    }

    /// The newest Data Manager request IDs recorded with Google deliveries.
    pub fn google_request_ids(&self, limit: usize) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT DISTINCT substr(reason, instr(reason, 'request_id ') + 11, 36) FROM deliveries
                 WHERE destination = 'google' AND state = 'delivered' AND reason LIKE '%request_id %'
                 ORDER BY updated_at_ms DESC LIMIT ?1",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([limit as i64], |r| r.get::<_, String>(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }

    /// Rows of lookup state per lookup.
    pub fn lookup_row_counts(&self) -> Result<std::collections::BTreeMap<String, u64>> {
        let mut stmt = self
            .conn
            .prepare("SELECT lookup, count(*) FROM lookup_rows GROUP BY lookup")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))
            .and_then(|rows| rows.collect::<rusqlite::Result<std::collections::BTreeMap<_, _>>>())
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }

    /// Whether an event with this ID is in the spool.
    pub fn event_exists(&self, event_id: &str) -> Result<bool> {
        self.conn
            .prepare_cached("SELECT 1 FROM events WHERE event_id = ?1")
            .and_then(|mut s| s.exists([event_id]))
            .map_err(|e| self.err(e))
    }

    /// Derivation's counted reasons (fields left out, values clamped), most
    /// frequent first.
    pub fn derive_notes(&self, limit: usize) -> Result<Vec<(String, u64)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT reason, count FROM derive_notes ORDER BY count DESC, reason LIMIT ?1")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }

    /// Milliseconds since the epoch (exposed for lanes that share the clock).
    pub fn now_ms() -> i64 {
        now_ms()
    }
}
