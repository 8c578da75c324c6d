//! The apply loop's side of the spool: one open SQLite transaction per batch
//! of source transactions, closed by [`SpoolWriter::commit`] with the batch's
//! end LSN. See the module invariants in `spool/mod.rs`.

use rusqlite::{params, Connection, OptionalExtension};

use super::{now_ms, read_checkpoint, Result, Spool, SpoolError};
use crate::derive::BusinessEvent;
use crate::lsn::Lsn;

/// Writes events, lookup state and the checkpoint atomically.
#[derive(Debug)]
pub struct SpoolWriter {
    spool: Spool,
    conn: Connection,
    open: bool,
    checkpoint: Option<Lsn>,
    destinations: Vec<&'static str>,
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
            source,
        }
    }

    /// Destinations that get a ledger row for each new event.
    pub fn set_destinations(&mut self, destinations: Vec<&'static str>) {
        self.destinations = destinations;
    }

    /// The last committed checkpoint.
    pub fn checkpoint(&self) -> Option<Lsn> {
        self.checkpoint
    }

    /// Whether a batch is open (written but not yet committed).
    pub fn in_batch(&self) -> bool {
        self.open
    }

    fn ensure_open(&mut self) -> Result<()> {
        if !self.open {
            self.conn
                .execute_batch("BEGIN IMMEDIATE")
                .map_err(|e| self.spool.err(e))?;
            self.open = true;
        }
        Ok(())
    }

    /// Stores `event` unless one with its `event_id` exists; returns whether
    /// it was new. New events get a pending ledger row per destination.
    pub fn insert_event(&mut self, event: &BusinessEvent) -> Result<bool> {
        self.ensure_open()?;
        let payload = serde_json::to_string(event).map_err(|source| SpoolError::Corrupt {
            path: self.spool.path.clone(),
            record: format!("event {}", event.event_id),
            source,
        })?;
        let now = now_ms();
        let mut insert = self
            .conn
            .prepare_cached(
                "INSERT INTO events (event_id, kind, commit_lsn, event_time_s, payload, spooled_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (event_id) DO NOTHING",
            )
            .map_err(|e| self.spool.err(e))?;
        let inserted = insert
            .execute(params![
                event.event_id,
                event.kind.as_str(),
                event.commit_lsn.0 as i64,
                event.event_time_s,
                payload,
                now
            ])
            .map_err(|e| self.spool.err(e))?;
        drop(insert);
        if inserted == 0 {
            return Ok(false);
        }
        let seq = self.conn.last_insert_rowid();
        let mut ledger = self
            .conn
            .prepare_cached(
                "INSERT INTO deliveries (destination, seq, state, updated_at_ms)
                 VALUES (?1, ?2, 'pending', ?3)",
            )
            .map_err(|e| self.spool.err(e))?;
        for dest in &self.destinations {
            ledger
                .execute(params![dest, seq, now])
                .map_err(|e| self.spool.err(e))?;
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

    /// A customer's stored (hashed) identity as of the open batch.
    pub fn customer_json(&self, id: &str) -> Result<Option<String>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT identity FROM lookup_customers WHERE id = ?1")
            .map_err(|e| self.spool.err(e))?;
        stmt.query_row([id], |r| r.get(0))
            .optional()
            .map_err(|e| self.spool.err(e))
    }

    /// Stores a customer's hashed identity (JSON) in the open batch.
    pub fn put_customer(&mut self, id: &str, identity_json: &str) -> Result<()> {
        self.ensure_open()?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "INSERT INTO lookup_customers (id, identity) VALUES (?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET identity = excluded.identity",
            )
            .map_err(|e| self.spool.err(e))?;
        stmt.execute([id, identity_json])
            .map_err(|e| self.spool.err(e))?;
        Ok(())
    }

    /// Forgets a customer (row deleted at the source).
    pub fn delete_customer(&mut self, id: &str) -> Result<()> {
        self.ensure_open()?;
        self.conn
            .execute("DELETE FROM lookup_customers WHERE id = ?1", [id])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Forgets every customer (TRUNCATE at the source).
    pub fn clear_customers(&mut self) -> Result<()> {
        self.ensure_open()?;
        self.conn
            .execute("DELETE FROM lookup_customers", [])
            .map_err(|e| self.err(e))?;
        Ok(())
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

    /// Drops the open batch (used when the source connection breaks
    /// mid-transaction: the transaction will be streamed again).
    pub fn rollback(&mut self) -> Result<()> {
        if self.open {
            self.open = false;
            self.conn
                .execute_batch("ROLLBACK")
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }
}
