//! The spool: capi-cdc's durable store, one SQLite file.
//!
//! Inputs: derived events, lookup-state updates and transaction end LSNs from
//! the apply loop ([`SpoolWriter`]); delivery outcomes from the lanes
//! ([`Ledger`]). Outputs: the checkpoint (the only LSN ever reported to
//! PostgreSQL as flushed) and the pending work of each destination.
//!
//! Invariants (DESIGN.md §2):
//! - Events, lookup updates and the checkpoint of a batch of transactions are
//!   committed in **one** SQLite transaction: the checkpoint never gets ahead
//!   of what is stored, and nothing stored is ever behind the checkpoint.
//! - The checkpoint only moves forward, and only on transaction boundaries
//!   (or to an idle keepalive position when nothing is in flight).
//! - An event is stored once per `event_id`, with the lanes it is routed to
//!   (`events.routes`). A lane writes an event's ledger row when it records
//!   the event's first outcome; until then the event is pending without a
//!   row. Each routed destination's row ends as delivered, dead or skipped.
//! - Sequence numbers only grow (`AUTOINCREMENT`), so a lane's cursor (all
//!   its events at or below it have rows) stays true as events arrive.
//! - `synchronous = FULL`: a commit that returned survives power loss, which
//!   is what acknowledging the LSN to PostgreSQL promises.
//! - No raw PII is ever written here (events carry hashes only).

mod cache;
mod ledger;
pub mod payload;
pub mod prune;
pub mod wal;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension};

pub use ledger::{
    Breakdown, DeadFilter, DeadLetter, DeliveryState, Ledger, LedgerCounts, LedgerRow, Outcome,
    PendingEvent,
};
pub use writer::{LedgerTarget, SpoolWriter, Waits};

use crate::lsn::Lsn;

/// Schema version written to `meta`; bump with a migration.
const SCHEMA_VERSION: i64 = 5;

/// Prepared statements kept per connection (see `connect`).
const STATEMENT_CACHE: usize = 64;

/// Page cache of a delivery lane's connection, KiB (SQLite's default is
/// 2,000). A lane reads each pending row about once, soon after the apply
/// loop wrote it, so its pages are in the OS's cache anyway; four lanes at
/// the default could hold 8 MB for nothing (bench/RESULTS.md).
pub const LANE_PAGE_CACHE_KIB: i64 = 512;

/// How long a connection waits for another writer before `SQLITE_BUSY`.
/// The apply loop holds the write lock for the length of one batch (a huge
/// source transaction included), so delivery must be patient.
const BUSY_TIMEOUT: Duration = Duration::from_secs(600);

/// Waits for the write lock in steps of [`BUSY_STEP`] for up to
/// [`BUSY_TIMEOUT`]. SQLite's own `busy_timeout` backs off to 100 ms
/// sleeps, so a delivery lane that met the apply loop's commit slept up to
/// 100 ms after the lock was free again: that, not the work, was most of the
/// real-time lane's latency under load (bench/RESULTS.md, workload C).
fn wait_for_lock(attempts: i32) -> bool {
    let attempts = u64::try_from(attempts).unwrap_or(0);
    if Duration::from_micros(attempts.saturating_mul(BUSY_STEP.as_micros() as u64)) >= BUSY_TIMEOUT
    {
        return false;
    }
    std::thread::sleep(BUSY_STEP);
    true
}

/// Like [`wait_for_lock`], for at most [`RESTART_PATIENCE`]: the apply
/// loop's restart of the WAL gives up rather than wait long for a lane.
fn wait_briefly(attempts: i32) -> bool {
    let attempts = u64::try_from(attempts).unwrap_or(0);
    if Duration::from_micros(attempts.saturating_mul(BUSY_STEP.as_micros() as u64))
        >= RESTART_PATIENCE
    {
        return false;
    }
    std::thread::sleep(BUSY_STEP);
    true
}

/// How long the writer's restart of the WAL waits for a lane's write lock
/// or reads before it settles for a copy.
const RESTART_PATIENCE: Duration = Duration::from_millis(50);

/// One step of [`wait_for_lock`].
const BUSY_STEP: Duration = Duration::from_micros(500);

/// A spool problem; names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// SQLite failed.
    #[error("spool {path}: {source}")]
    Sqlite {
        /// The spool file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The directory or lock file could not be created.
    #[error("spool {path}: cannot create it: {source}")]
    Io {
        /// The spool file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A stored record could not be encoded or read back.
    #[error("spool {path}: {record} is unreadable: {source}. Restore the spool from a backup, or move it aside and start over with `capi-cdc setup` and a backfill")]
    Corrupt {
        /// The spool file.
        path: PathBuf,
        /// Which record, e.g. `event purchase-42`.
        record: String,
        /// The decoding error.
        #[source]
        source: RecordError,
    },
    /// Another process runs on this spool.
    #[error("spool {path} is in use by another capi-cdc process (one `run` per spool and slot). Stop the other one, or give this instance its own spool.path")]
    InUse {
        /// The spool file.
        path: PathBuf,
    },
    /// `events.routes` has room for this many destinations only.
    #[error("spool {path}: destination {name} does not fit: a spool routes events to at most {MAX_DESTINATIONS} destinations over its life; start a new spool.path")]
    TooManyDestinations {
        /// The spool file.
        path: PathBuf,
        /// The destination that did not fit.
        name: String,
    },
    /// The file was written by a newer capi-cdc.
    #[error("spool {path}: schema version {found} is newer than this capi-cdc understands ({SCHEMA_VERSION}); upgrade capi-cdc")]
    TooNew {
        /// The spool file.
        path: PathBuf,
        /// Version found.
        found: i64,
    },
}

/// Why a stored record could not be encoded or decoded (JSON, MessagePack).
pub type RecordError = Box<dyn std::error::Error + Send + Sync>;

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, SpoolError>;

/// Opens connections to one spool file.
#[derive(Debug, Clone)]
pub struct Spool {
    path: PathBuf,
    /// Bumped after each commit that pruned lookup rows: the writer's
    /// [`cache::LookupCache`] forgets what it holds when this changes.
    lookups_pruned: Arc<AtomicU64>,
    /// Delivery lanes waiting to record outcomes: the apply loop lets them
    /// in before it opens its next batch (see [`LaneTurn`]).
    lanes_waiting: Arc<AtomicUsize>,
    /// Set by [`wal::run`] when the log should start over: the writer does
    /// it before its next batch, when it holds no lock (see `wal.rs`).
    restart_wanted: Arc<AtomicBool>,
}

/// A delivery lane's claim to the write lock between two of the apply
/// loop's batches, held while it records outcomes.
///
/// During a backlog the apply loop holds the write lock almost all the
/// time: it commits a batch and begins the next one at once, while a lane
/// waiting for the lock looks again only every [`BUSY_STEP`]. In workload A
/// the lane recorded 11,022 of 200,000 deliveries while the slot drained,
/// and the rest only after. With a turn taken, the apply loop waits (at
/// most [`LANE_TURN_MAX`]) until no lane is waiting before it begins.
#[derive(Debug)]
pub(crate) struct LaneTurn(Arc<AtomicUsize>);

impl Drop for LaneTurn {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The longest the apply loop waits for lanes before a batch.
pub(crate) const LANE_TURN_MAX: Duration = Duration::from_millis(5);

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- One row: the end LSN of the last transaction whose effects are stored.
CREATE TABLE IF NOT EXISTS checkpoint (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    lsn           INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
-- Derived business events, hashed identifiers only; one row per event_id.
CREATE TABLE IF NOT EXISTS events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id      TEXT NOT NULL UNIQUE,
    kind          TEXT NOT NULL,
    commit_lsn    INTEGER NOT NULL,
    event_time_s  INTEGER NOT NULL,
    payload       BLOB NOT NULL,
    spooled_at_ms INTEGER NOT NULL,
    routes        INTEGER
);
-- events.routes: the lanes an event goes to. Per destination slot s, bit 2s
-- = routed, bit 2s+1 = batched lane. NULL: spooled before version 4, with a
-- ledger row per destination written at once.
-- Destinations in the order they were first enabled; `slot` numbers their
-- bits in `events.routes`.
CREATE TABLE IF NOT EXISTS destinations (
    name TEXT PRIMARY KEY,
    slot INTEGER NOT NULL UNIQUE
);
-- Per lane: every event routed to it with seq <= `seq` has a ledger row, so
-- its reads of events without one start here.
CREATE TABLE IF NOT EXISTS lane_cursors (
    destination TEXT NOT NULL,
    lane        TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    PRIMARY KEY (destination, lane)
) WITHOUT ROWID;
-- Per destination: where each event stands once a lane has recorded an
-- outcome for it (or a replay asked for it again).
CREATE TABLE IF NOT EXISTS deliveries (
    destination   TEXT NOT NULL,
    seq           INTEGER NOT NULL REFERENCES events(seq),
    state         TEXT NOT NULL,        -- pending | delivered | dead | skipped
    lane          TEXT NOT NULL DEFAULT 'real_time', -- real_time | batched
    attempts      INTEGER NOT NULL DEFAULT 0,
    not_before_ms INTEGER NOT NULL DEFAULT 0,
    reason        TEXT,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (destination, seq)
) WITHOUT ROWID;
-- Lanes read only pending rows: partial indexes keep those reads
-- proportional to the backlog, not to everything ever delivered.
DROP INDEX IF EXISTS deliveries_by_state;
-- As-of lookup state (consent, sessions, customers, items), as of the
-- checkpoint: one row per source row, reached by its lookup key `k`.
-- Hashes and pass-through values only.
CREATE TABLE IF NOT EXISTS lookup_rows (
    lookup     TEXT NOT NULL,
    pk         TEXT NOT NULL,
    k          TEXT NOT NULL,
    updated_us INTEGER NOT NULL,
    entry      TEXT NOT NULL,
    PRIMARY KEY (lookup, pk)
);
CREATE INDEX IF NOT EXISTS lookup_rows_by_key ON lookup_rows (lookup, k, updated_us);
-- Rows for which a became_true rule's condition holds (its previous state).
CREATE TABLE IF NOT EXISTS rule_state (
    rule TEXT NOT NULL,
    pk   TEXT NOT NULL,
    PRIMARY KEY (rule, pk)
) WITHOUT ROWID;
-- Counted reasons: fields left out of events, values clamped (no values).
CREATE TABLE IF NOT EXISTS derive_notes (
    reason     TEXT PRIMARY KEY,
    count      INTEGER NOT NULL,
    last_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
-- Answers that did not settle an event (retries, throttling, pauses, the
-- final failure), for `status --event`; a delivery is the final state.
CREATE TABLE IF NOT EXISTS attempt_log (
    destination TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    at_ms       INTEGER NOT NULL,
    counted     INTEGER NOT NULL,
    answer      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS attempt_log_by_event ON attempt_log (seq, destination);
-- Row changes that could not become events: kept with their position and
-- reason (never the row's values) so nothing is lost silently.
CREATE TABLE IF NOT EXISTS derive_failures (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    commit_lsn INTEGER NOT NULL,
    relation   TEXT NOT NULL,
    reason     TEXT NOT NULL,
    at_ms      INTEGER NOT NULL
);
"#;

/// Indexes created after migrations (they name columns older spools lack).
const INDEXES: &str = r#"
DROP INDEX IF EXISTS deliveries_pending;
DROP INDEX IF EXISTS deliveries_pending_due;
CREATE INDEX IF NOT EXISTS deliveries_pending_lane ON deliveries (destination, lane, seq) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_pending_lane_due ON deliveries (destination, lane, not_before_ms) WHERE state = 'pending';
"#;

impl Spool {
    /// Opens (creating if needed) the spool at `file` and migrates it.
    pub fn open(file: &Path) -> Result<Spool> {
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| SpoolError::Io {
                path: file.to_path_buf(),
                source,
            })?;
        }
        let spool = Spool {
            path: file.to_path_buf(),
            lookups_pruned: Arc::default(),
            lanes_waiting: Arc::default(),
            restart_wanted: Arc::default(),
        };
        let conn = spool.connect()?;
        conn.execute_batch(SCHEMA).map_err(|e| spool.err(e))?;
        let found: Option<i64> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get::<_, String>(0),
            )
            .optional()
            .map_err(|e| spool.err(e))?
            .and_then(|v| v.parse().ok());
        match found {
            Some(v) if v > SCHEMA_VERSION => {
                return Err(SpoolError::TooNew {
                    path: spool.path.clone(),
                    found: v,
                })
            }
            Some(v) if v < SCHEMA_VERSION => migrate(&conn, v).map_err(|e| spool.err(e))?,
            Some(_) => {}
            None => {
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
                    [SCHEMA_VERSION.to_string()],
                )
                .map_err(|e| spool.err(e))?;
            }
        }
        conn.execute_batch(INDEXES).map_err(|e| spool.err(e))?;
        Ok(spool)
    }

    /// Takes the spool for this process: `run` holds the returned guard for
    /// its lifetime, so two connectors can never deliver from one ledger.
    /// The OS releases the lock when the process dies, SIGKILL included.
    pub fn lock_exclusive(&self) -> Result<SpoolLock> {
        let lock_path = self.path.with_extension("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| SpoolError::Io {
                path: lock_path.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => Ok(SpoolLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(SpoolError::InUse {
                path: self.path.clone(),
            }),
            Err(std::fs::TryLockError::Error(source)) => Err(SpoolError::Io {
                path: lock_path,
                source,
            }),
        }
    }

    /// Takes a lane's turn at the write lock until the guard drops.
    pub(crate) fn lane_turn(&self) -> LaneTurn {
        self.lanes_waiting.fetch_add(1, Ordering::AcqRel);
        LaneTurn(self.lanes_waiting.clone())
    }

    /// Waits (in short sleeps, at most [`LANE_TURN_MAX`]) while lanes wait
    /// for the write lock; returns whether any did.
    pub(crate) fn let_lanes_in(&self) -> bool {
        if self.lanes_waiting.load(Ordering::Acquire) == 0 {
            return false;
        }
        let started = std::time::Instant::now();
        while self.lanes_waiting.load(Ordering::Acquire) > 0 && started.elapsed() < LANE_TURN_MAX {
            std::thread::sleep(Duration::from_micros(100));
        }
        true
    }

    /// Asks the writer to make the WAL start over before its next batch.
    pub(crate) fn want_restart(&self) {
        self.restart_wanted.store(true, Ordering::Release);
    }

    /// Whether a restart asked for is still not done.
    pub(crate) fn restart_pending(&self) -> bool {
        self.restart_wanted.load(Ordering::Acquire)
    }

    /// Takes the request to restart the WAL, if there is one.
    pub(crate) fn take_restart(&self) -> bool {
        self.restart_wanted.swap(false, Ordering::AcqRel)
    }

    /// Lookup rows were pruned (called after the pruning commit).
    pub(crate) fn note_lookups_pruned(&self) {
        self.lookups_pruned.fetch_add(1, Ordering::Release);
    }

    /// How many pruning commits removed lookup rows so far.
    pub(crate) fn lookups_pruned(&self) -> u64 {
        self.lookups_pruned.load(Ordering::Acquire)
    }

    /// The spool file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new connection with the pragmas every user needs.
    fn connect(&self) -> Result<Connection> {
        let conn = Connection::open(&self.path).map_err(|e| self.err(e))?;
        conn.busy_handler(Some(wait_for_lock))
            .map_err(|e| self.err(e))?;
        // The apply loop alone uses a dozen statements per transaction
        // (events, ledger rows, lookup reads and writes, rule state, notes);
        // rusqlite's default cache of 16 thrashed and re-prepared them.
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;
             PRAGMA journal_size_limit = 67108864;",
        )
        .map_err(|e| self.err(e))?;
        Ok(conn)
    }

    fn err(&self, source: rusqlite::Error) -> SpoolError {
        SpoolError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// The stored checkpoint, `None` for a spool that never had one.
    pub fn checkpoint(&self) -> Result<Option<Lsn>> {
        let conn = self.connect()?;
        read_checkpoint(&conn).map_err(|e| self.err(e))
    }

    /// The writer used by the apply loop (one per process).
    pub fn writer(&self) -> Result<SpoolWriter> {
        SpoolWriter::new(self.clone(), self.connect()?)
    }

    /// A ledger handle for delivery lanes and status readers.
    pub fn ledger(&self) -> Result<Ledger> {
        Ok(Ledger::new(self.clone(), self.connect()?))
    }

    /// The ledger for a delivery lane: like [`Spool::ledger`], but its
    /// commits do not wait for fsync (`synchronous = NORMAL`, WAL mode). A
    /// process crash loses none of them; a power cut may lose the last
    /// outcomes recorded before the apply loop's next (fsynced) commit, and
    /// those events are then sent again with the same event IDs, which both
    /// platforms deduplicate. The checkpoint and the events themselves stay
    /// `FULL`: they are what the server's WAL is released against.
    pub fn delivery_ledger(&self) -> Result<Ledger> {
        let conn = self.connect()?;
        // The WAL is copied back by `wal::run`, not inside the lanes'
        // commits (which would then wait on it).
        conn.execute_batch(&format!(
            "PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0; PRAGMA cache_size = -{LANE_PAGE_CACHE_KIB};"
        ))
        .map_err(|e| self.err(e))?;
        Ok(Ledger::new(self.clone(), conn))
    }

    /// Sets a `meta` value at once (outside the apply loop's batches: the
    /// provisioned conversion actions).
    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        let conn = self.connect()?;
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [key, value],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// `meta` values whose key starts with `prefix` (prefix removed).
    pub fn meta_prefixed(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let conn = self.connect()?;
        let mut stmt = conn
            .prepare(
                "SELECT key, value FROM meta WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([prefix], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e))?;
        Ok(rows
            .into_iter()
            .map(|(k, v)| (k[prefix.len()..].to_owned(), v))
            .collect())
    }

    /// A value from the `meta` table (e.g. `slot`, `system_identifier`).
    pub fn meta_value(&self, key: &str) -> Result<Option<String>> {
        let conn = self.connect()?;
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }
}

/// Upgrades an older spool in place, in one transaction.
fn migrate(conn: &Connection, from: i64) -> rusqlite::Result<()> {
    if from < 2 {
        // Version 1 kept only the customers lookup, as `{"meta": {...}}`
        // identities: the same JSON a lookup entry's `identity` reads.
        conn.execute_batch(
            "BEGIN IMMEDIATE;
             INSERT OR IGNORE INTO lookup_rows (lookup, pk, k, updated_us, entry)
                 SELECT 'customers', id, id, 0, json_object('identity', json(identity))
                 FROM lookup_customers;
             DROP TABLE lookup_customers;
             UPDATE meta SET value = '2' WHERE key = 'schema_version';
             COMMIT;",
        )?;
    }
    if from < 3 {
        // Version 2 had one lane per destination: everything was real-time.
        conn.execute_batch(
            "BEGIN IMMEDIATE;
             ALTER TABLE deliveries ADD COLUMN lane TEXT NOT NULL DEFAULT 'real_time';
             UPDATE meta SET value = '3' WHERE key = 'schema_version';
             COMMIT;",
        )?;
    }
    if from < 4 {
        // Version 3 wrote a pending ledger row per destination with each
        // event. Those rows stay; lanes look for events without one only
        // past the newest event spooled so far.
        conn.execute_batch(
            "BEGIN IMMEDIATE;
             ALTER TABLE events ADD COLUMN routes INTEGER;
             INSERT OR REPLACE INTO meta (key, value)
                 SELECT 'rowless_from_seq', COALESCE(MAX(seq), 0) FROM events;
             UPDATE meta SET value = '4' WHERE key = 'schema_version';
             COMMIT;",
        )?;
    }
    if from < 5 {
        // Version 5 stores new payloads as MessagePack blobs; the JSON text
        // of older rows stays and reads as before (`payload.rs`).
        conn.execute(
            "UPDATE meta SET value = '5' WHERE key = 'schema_version'",
            [],
        )?;
    }
    Ok(())
}

/// Held by `run` while it owns the spool; dropping it releases the lock.
#[derive(Debug)]
pub struct SpoolLock {
    _file: std::fs::File,
}

fn read_checkpoint(conn: &Connection) -> rusqlite::Result<Option<Lsn>> {
    conn.query_row("SELECT lsn FROM checkpoint WHERE id = 1", [], |r| {
        r.get::<_, i64>(0)
    })
    .optional()
    .map(|v| v.map(|v| Lsn(v as u64)))
}

/// Destinations one spool can route to: two bits each in `events.routes`.
pub(crate) const MAX_DESTINATIONS: u32 = 31;

/// `destination`'s slot in `events.routes`, registering it (in the next free
/// slot) when `register` is set and it has none.
fn destination_slot(
    conn: &Connection,
    destination: &str,
    register: bool,
) -> rusqlite::Result<Option<u32>> {
    let find = |conn: &Connection| {
        conn.prepare_cached("SELECT slot FROM destinations WHERE name = ?1")?
            .query_row([destination], |r| r.get::<_, u32>(0))
            .optional()
    };
    match find(conn)? {
        Some(slot) => Ok(Some(slot)),
        None if register => {
            conn.execute(
                "INSERT INTO destinations (name, slot)
                 SELECT ?1, COALESCE(MAX(slot) + 1, 0) FROM destinations WHERE true
                 ON CONFLICT (name) DO NOTHING",
                [destination],
            )?;
            find(conn)
        }
        None => Ok(None),
    }
}

/// The bits of `events.routes` that send an event to `lane` of the
/// destination in `slot`.
fn route_bits(slot: u32, lane: crate::event::LaneKind) -> i64 {
    let batched = i64::from(lane == crate::event::LaneKind::Batched);
    (1 | batched << 1) << (2 * slot)
}

/// Milliseconds since the Unix epoch, for bookkeeping columns.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bundled SQLite is built with the flags in `.cargo/config.toml`:
    /// a page cache (and its mutex) per connection, not one for the whole
    /// process, and no global memory statistics. A build that lost them
    /// (another `CARGO_HOME`, a changed `libsqlite3-sys`) fails here.
    #[test]
    fn sqlite_is_built_with_a_page_cache_per_connection() {
        let conn = Connection::open_in_memory().unwrap();
        let options: Vec<String> = conn
            .prepare("PRAGMA compile_options")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(
            !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
            "one shared page cache: {options:?}"
        );
        for want in ["DEFAULT_MEMSTATUS=0", "DISABLE_PAGECACHE_OVERFLOW_STATS"] {
            assert!(
                options.iter().any(|o| o == want),
                "{want} missing: {options:?}"
            );
        }
    }

    #[test]
    fn one_process_holds_the_spool() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("s.sqlite3")).unwrap();
        let held = spool.lock_exclusive().unwrap();
        let err = spool.lock_exclusive().unwrap_err();
        assert!(matches!(err, SpoolError::InUse { .. }), "{err}");
        assert!(err.to_string().contains("spool.path"));
        drop(held);
        spool.lock_exclusive().unwrap();
    }

    /// A key's rows come back shorter keys first (in characters, as
    /// SQLite's `length`), then as text: integer keys in numeric order. That
    /// is the order items are sent in, however they were written.
    #[test]
    fn a_keys_rows_come_back_in_key_order() {
        use crate::derive::{Effect, Entry, Lookup};
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("s.sqlite3")).unwrap();
        let mut w = spool.writer().unwrap();
        let put = |pk: &str, key: &str| {
            let mut entry = Entry::default();
            entry.fields.insert("item.id".into(), pk.into());
            Effect::PutLookup {
                lookup: "order_items".into(),
                pk: pk.into(),
                key: key.into(),
                entry,
            }
        };
        for pk in ["10", "b", "9", "é"] {
            w.apply_state(&put(pk, "7")).unwrap();
        }
        w.commit(Lsn(1)).unwrap();
        for pk in ["100", "a", "2"] {
            w.apply_state(&put(pk, "7")).unwrap();
        }
        w.apply_state(&put("1", "8")).unwrap();
        let ids = |w: &SpoolWriter| -> Vec<String> {
            w.all("order_items", "7")
                .unwrap()
                .into_iter()
                .map(|e| e.fields["item.id"].clone())
                .collect()
        };
        let want = ["2", "9", "a", "b", "é", "10", "100"];
        assert_eq!(ids(&w), want, "inside the batch");
        w.commit(Lsn(2)).unwrap();
        assert_eq!(ids(&spool.writer().unwrap()), want, "committed");
        assert!(w.all("order_items", "9").unwrap().is_empty());
    }

    /// The writer keeps lookup rows in memory; every answer must still be
    /// the spool's, through moves between keys, deletes, a rolled-back
    /// batch and a prune on another connection.
    #[test]
    fn cached_lookups_answer_as_the_spool_does() {
        use crate::derive::{Effect, Entry, Lookup};
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("s.sqlite3")).unwrap();
        let entry = |key: &str, t: i64| {
            let mut e = Entry {
                updated_us: t,
                ..Entry::default()
            };
            e.fields.insert("key".into(), key.into());
            e
        };
        let put = |pk: &str, key: &str, t: i64| Effect::PutLookup {
            lookup: "sessions".into(),
            pk: pk.into(),
            key: key.into(),
            entry: entry(key, t),
        };
        let mut w = spool.writer().unwrap();
        let mut lsn = 0;
        // Every answer of the (caching) writer against a fresh reader of
        // the committed spool, twice: once filling the cache, once from it.
        let check = |w: &SpoolWriter, step: &str| {
            let fresh = spool.writer().unwrap();
            for _ in 0..2 {
                for k in ["k1", "k2"] {
                    assert_eq!(
                        w.latest("sessions", k).unwrap(),
                        fresh.latest("sessions", k).unwrap(),
                        "{step}: latest {k}"
                    );
                }
                for pk in ["s1", "s2"] {
                    assert_eq!(
                        w.by_pk("sessions", pk).unwrap(),
                        fresh.by_pk("sessions", pk).unwrap(),
                        "{step}: row {pk}"
                    );
                }
            }
        };
        let mut step = |w: &mut SpoolWriter, e: Effect, name: &str| {
            w.apply_state(&e).unwrap();
            lsn += 1;
            w.commit(Lsn(lsn)).unwrap();
            check(w, name);
        };
        check(&w, "empty");
        step(&mut w, put("s1", "k1", 1), "first row");
        assert_eq!(w.latest("sessions", "k1").unwrap(), Some(entry("k1", 1)));
        step(&mut w, put("s2", "k1", 2), "a newer row for the key");
        assert_eq!(w.latest("sessions", "k1").unwrap(), Some(entry("k1", 2)));
        step(
            &mut w,
            put("s2", "k2", 3),
            "the newer row moves to another key",
        );
        assert_eq!(w.latest("sessions", "k1").unwrap(), Some(entry("k1", 1)));
        assert_eq!(w.latest("sessions", "k2").unwrap(), Some(entry("k2", 3)));
        step(
            &mut w,
            Effect::DeleteLookup {
                lookup: "sessions".into(),
                pk: "s2".into(),
            },
            "a delete",
        );
        assert_eq!(w.latest("sessions", "k2").unwrap(), None);
        // Written and read inside a batch, then rolled back.
        w.apply_state(&put("s1", "k2", 4)).unwrap();
        assert_eq!(w.latest("sessions", "k2").unwrap(), Some(entry("k2", 4)));
        w.rollback().unwrap();
        check(&w, "a rolled-back batch");
        assert_eq!(w.latest("sessions", "k2").unwrap(), None);
        // Pruned on another connection: the cached row is gone too.
        assert_eq!(w.by_pk("sessions", "s1").unwrap(), Some(entry("k1", 1)));
        let pruned = spool
            .ledger()
            .unwrap()
            .prune_lookup("sessions", 2, 10)
            .unwrap();
        assert_eq!(pruned, 1);
        check(&w, "a prune");
        assert_eq!(w.by_pk("sessions", "s1").unwrap(), None);
        step(
            &mut w,
            Effect::ClearLookup {
                lookup: "sessions".into(),
            },
            "a truncate",
        );
    }

    /// A lane waiting for the write lock gets it before the apply loop's
    /// next batch, but never holds the apply loop up for long, and at most
    /// once per LANE_TURN_EVERY.
    #[test]
    fn waiting_lanes_get_a_turn_between_batches() {
        use std::time::Instant;
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("s.sqlite3")).unwrap();
        assert!(!spool.let_lanes_in(), "no lane waiting: no wait");
        // A lane that finishes 2 ms after the apply loop starts waiting: the
        // apply loop waits for it. On a loaded machine the lane can finish
        // before the apply loop looks (then there is nothing to wait for and
        // `let_lanes_in` rightly says so), so the scene is played until the
        // apply loop did find the lane, at most 20 times.
        let mut found = false;
        for _ in 0..20 {
            let turn = spool.lane_turn();
            let (go, wait) = std::sync::mpsc::channel::<()>();
            let releaser = std::thread::spawn(move || {
                wait.recv().unwrap();
                std::thread::sleep(Duration::from_millis(2));
                drop(turn);
            });
            go.send(()).unwrap();
            let started = Instant::now();
            let waited = spool.let_lanes_in();
            assert!(
                spool.lanes_waiting.load(Ordering::Acquire) == 0
                    || started.elapsed() >= LANE_TURN_MAX,
                "returned while the lane still waited, before the limit"
            );
            releaser.join().unwrap();
            if waited {
                found = true;
                break;
            }
        }
        assert!(found, "the apply loop never found the waiting lane");
        // A lane that never finishes holds it up only LANE_TURN_MAX.
        let stuck = spool.lane_turn();
        let started = Instant::now();
        assert!(spool.let_lanes_in());
        let waited = started.elapsed();
        assert!(waited >= LANE_TURN_MAX, "{waited:?}");
        assert!(waited < Duration::from_secs(1), "{waited:?}");
        // The writer lets lanes in before a batch, then not again at once.
        let mut w = spool.writer().unwrap();
        let note = crate::derive::Effect::Note(crate::derive::Note {
            reason: "test".into(),
        });
        let started = Instant::now();
        w.apply_state(&note).unwrap();
        let first = started.elapsed();
        w.commit(Lsn(1)).unwrap();
        let started = Instant::now();
        w.apply_state(&note).unwrap();
        let second = started.elapsed();
        w.commit(Lsn(2)).unwrap();
        assert!(first >= LANE_TURN_MAX, "first batch waited {first:?}");
        assert!(second < LANE_TURN_MAX, "second batch waited {second:?}");
        drop(stuck);
        // A lane recording outcomes while a batch holds the lock is counted
        // as waiting until its write is done (its event exists: a ledger
        // row names a stored event).
        spool
            .connect()
            .unwrap()
            .execute_batch(
                "INSERT INTO events (seq, event_id, kind, commit_lsn, event_time_s, payload, spooled_at_ms)
                 VALUES (1, 'e-1', 'k', 1, 1, '{}', 1)",
            )
            .unwrap();
        w.apply_state(&note).unwrap();
        let lane_spool = spool.clone();
        let lane = std::thread::spawn(move || {
            let mut l = lane_spool.delivery_ledger().unwrap();
            l.finish(
                "meta",
                crate::event::LaneKind::RealTime,
                &[1],
                ledger::DeliveryState::Delivered,
                None,
                true,
            )
            .unwrap();
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while spool.lanes_waiting.load(Ordering::Acquire) == 0 {
            assert!(Instant::now() < deadline, "the lane never took a turn");
            std::thread::sleep(Duration::from_micros(200));
        }
        w.commit(Lsn(3)).unwrap();
        lane.join().unwrap();
        assert_eq!(spool.lanes_waiting.load(Ordering::Acquire), 0);
    }

    /// Lanes' connections: no fsync wait, no WAL copy, a small page cache.
    #[test]
    fn lanes_connections_are_lighter_than_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("s.sqlite3")).unwrap();
        let lane = spool.delivery_ledger().unwrap();
        let other = spool.ledger().unwrap();
        // cache_size < 0 is KiB; synchronous 1 = NORMAL, 2 = FULL.
        assert_eq!(lane.pragma("cache_size"), -LANE_PAGE_CACHE_KIB);
        assert_eq!(lane.pragma("synchronous"), 1);
        assert_eq!(lane.pragma("wal_autocheckpoint"), 0);
        assert_eq!(other.pragma("cache_size"), -2000);
        assert_eq!(other.pragma("synchronous"), 2);
    }

    /// The lanes' reads must use the partial indexes: a full scan of every
    /// delivery ever made would slow delivery as the spool grows.
    #[test]
    fn pending_reads_use_the_partial_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("s.sqlite3")).unwrap();
        let conn = spool.connect().unwrap();
        let plan = |sql: &str| -> String {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<rusqlite::Result<Vec<_>>>()
                .unwrap();
            rows.join(" | ")
        };
        // The lanes' parameters, written in.
        let bound = |sql: &str| {
            sql.replace("?1", "'meta'")
                .replace("?2", "0")
                .replace("?3", "10")
                .replace("?4", "'batched'")
        };
        let pending = plan(&bound(ledger::PENDING_SQL));
        assert!(pending.contains("deliveries_pending_lane"), "{pending}");
        let summary = plan(&bound(ledger::PENDING_SUMMARY_SQL));
        assert!(
            summary.contains("USING INDEX deliveries_pending_lane"),
            "{summary}"
        );
        let due = plan(
            &ledger::NEXT_DUE_SQL
                .replace("?1", "'meta'")
                .replace("?2", "'batched'"),
        );
        assert!(due.contains("deliveries_pending_lane_due"), "{due}");
        // Row-less events: a range of the events' primary key past the
        // cursor, one probe of the ledger's key per candidate.
        let rowless = |sql: &str| {
            plan(
                &sql.replace("?1", "0")
                    .replace("?2", "100")
                    .replace("?3", "2")
                    .replace("?4", "1")
                    .replace("?5", "'meta'")
                    .replace("?6", "10"),
            )
        };
        for sql in [ledger::ROWLESS_SQL, ledger::ROUTED_SUMMARY_SQL] {
            let p = rowless(sql);
            assert!(
                p.contains("SEARCH e USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)"),
                "{p}"
            );
            assert!(!p.contains("SCAN e") && !p.contains("SCAN d"), "{p}");
        }
        let p = rowless(ledger::ROWLESS_SQL);
        assert!(
            p.contains("SEARCH d USING PRIMARY KEY (destination=? AND seq=?)"),
            "{p}"
        );
    }
}
