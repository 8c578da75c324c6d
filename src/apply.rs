//! The apply loop: replication events → decode → derive → spool → ack.
//!
//! Inputs: [`ReplicationEvent`]s in WAL order from one replication session.
//! Outputs: spool batches and, after each spool commit, the new checkpoint
//! (which the caller reports to PostgreSQL as the flush LSN).
//!
//! Invariants:
//! - A spool batch is committed only on a transaction boundary: never while a
//!   source transaction is open, so the checkpoint is always a Commit end LSN
//!   or an idle keepalive position (DESIGN.md §2.2, §2.4).
//! - Row changes are written into the open spool batch as they arrive; a
//!   transaction is never held whole in memory.
//! - A transaction whose commit LSN is below the checkpoint is already in the
//!   spool: it is decoded (to keep the relation cache right) and skipped.
//! - Group commit: several small transactions share one spool commit (one
//!   fsync), but a completed transaction waits at most [`MAX_BATCH_AGE`]
//!   once another begins, and never when the stream has nothing more ready.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgwire_replication::ReplicationEvent;
use tokio::sync::Notify;

use crate::decode::{DecodeError, Decoder, Message};
use crate::derive::{Deriver, Draft, Effect, LookupError, TxContext};
use crate::lsn::Lsn;
use crate::spool::{SpoolError, SpoolWriter};
use crate::telemetry::Metrics;

/// PostgreSQL timestamps count µs from 2000-01-01; ours from 1970-01-01.
const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;
/// Commit at least every this many source transactions.
const MAX_BATCH_TXS: usize = 5_000;
/// A completed transaction waits at most this long for companions.
const MAX_BATCH_AGE: Duration = Duration::from_millis(20);
/// Idle keepalive positions are written at most this often (each is an fsync).
const IDLE_CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Why applying stopped. Decode and spool errors are fatal for the session
/// and name the LSN; nothing past the last checkpoint was acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A pgoutput message could not be decoded.
    #[error("cannot decode the change at WAL position {lsn}: {source}. Nothing from this transaction was acknowledged; report this with the server version and table definition")]
    Decode {
        /// Where.
        lsn: Lsn,
        /// Why.
        #[source]
        source: DecodeError,
    },
    /// The spool failed.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// Lookup state could not be read.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// The stream broke the protocol's framing rules.
    #[error("replication protocol: {0}")]
    Protocol(String),
}

#[derive(Debug)]
struct OpenTx {
    ctx: TxContext,
    skip: bool,
    /// Events waiting for the commit to resolve their joins.
    drafts: Vec<Draft>,
}

#[derive(Debug, Default)]
struct Batch {
    txs: usize,
    started: Option<Instant>,
    end: Option<Lsn>,
    new_events: u64,
}

/// Applies one stream to the spool; survives reconnects (call
/// [`Applier::reset_session`] between sessions).
#[derive(Debug)]
pub struct Applier {
    decoder: Decoder,
    deriver: Deriver,
    writer: SpoolWriter,
    open_tx: Option<OpenTx>,
    batch: Batch,
    last_idle_write: Option<Instant>,
    metrics: Arc<Metrics>,
    wake: Vec<Arc<Notify>>,
}

impl Applier {
    /// A new applier writing through `writer`; `wake` is notified after each
    /// spool commit that stored new events.
    pub fn new(
        writer: SpoolWriter,
        deriver: Deriver,
        metrics: Arc<Metrics>,
        wake: Vec<Arc<Notify>>,
    ) -> Applier {
        if let Some(cp) = writer.checkpoint() {
            metrics
                .checkpoint_lsn
                .store(cp.0, std::sync::atomic::Ordering::Relaxed);
        }
        Applier {
            decoder: Decoder::new(),
            deriver,
            writer,
            open_tx: None,
            batch: Batch::default(),
            last_idle_write: None,
            metrics,
            wake,
        }
    }

    /// The spool checkpoint.
    pub fn checkpoint(&self) -> Option<Lsn> {
        self.writer.checkpoint()
    }

    /// True when completed transactions wait in an uncommitted batch and no
    /// transaction is open: the caller should flush if nothing else is ready.
    pub fn has_pending_commit(&self) -> bool {
        self.open_tx.is_none() && self.batch.end.is_some()
    }

    /// Forgets the session: drops the uncommitted batch (the server sends it
    /// again, since it was never acknowledged) and the relation cache.
    pub fn reset_session(&mut self) -> Result<(), SpoolError> {
        self.writer.rollback()?;
        self.open_tx = None;
        self.batch = Batch::default();
        self.decoder = Decoder::new();
        Ok(())
    }

    /// Handles one event; returns the new checkpoint if the spool committed.
    pub fn on_event(&mut self, event: &ReplicationEvent) -> Result<Option<Lsn>, ApplyError> {
        match event {
            ReplicationEvent::Begin {
                final_lsn,
                commit_time_micros,
                ..
            } => {
                if self.open_tx.is_some() {
                    return Err(ApplyError::Protocol(format!(
                        "Begin of the transaction committing at {} arrived inside another transaction",
                        Lsn(final_lsn.as_u64())
                    )));
                }
                let mut committed = None;
                if self
                    .batch
                    .started
                    .is_some_and(|t| t.elapsed() >= MAX_BATCH_AGE)
                {
                    committed = self.flush()?;
                }
                let commit_lsn = Lsn(final_lsn.as_u64());
                let skip = self.writer.checkpoint().is_some_and(|cp| commit_lsn < cp);
                self.open_tx = Some(OpenTx {
                    ctx: TxContext {
                        commit_lsn,
                        commit_time_us: commit_time_micros + PG_EPOCH_OFFSET_US,
                    },
                    skip,
                    drafts: Vec::new(),
                });
                Ok(committed)
            }
            ReplicationEvent::XLogData {
                wal_start, data, ..
            } => {
                let lsn = Lsn(wal_start.as_u64());
                self.metrics
                    .received_lsn
                    .fetch_max(lsn.0, std::sync::atomic::Ordering::Relaxed);
                let message = match self.decoder.decode(data) {
                    Ok(m) => m,
                    Err(source) => return self.undecodable_row(lsn, data, source),
                };
                self.on_message(lsn, &message)?;
                Ok(None)
            }
            ReplicationEvent::Commit { end_lsn, .. } => {
                let Some(tx) = self.open_tx.take() else {
                    return Err(ApplyError::Protocol(format!(
                        "Commit ending at {} without a Begin",
                        Lsn(end_lsn.as_u64())
                    )));
                };
                if tx.skip {
                    Metrics::add(&self.metrics.transactions_skipped, 1);
                    return Ok(None);
                }
                let commit_ms = (tx.ctx.commit_time_us / 1000).max(0) as u64;
                self.metrics
                    .last_commit_ms
                    .fetch_max(commit_ms, std::sync::atomic::Ordering::Relaxed);
                // Every change of the transaction is in lookup state now:
                // resolve the drafts' joins as of this commit.
                let effects = self.deriver.finish(&tx.ctx, tx.drafts, &self.writer)?;
                for effect in effects {
                    self.apply_effect(&tx.ctx, effect)?;
                }
                Metrics::add(&self.metrics.transactions, 1);
                self.batch.end = Some(Lsn(end_lsn.as_u64()));
                self.batch.txs += 1;
                self.batch.started.get_or_insert_with(Instant::now);
                if self.batch.txs >= MAX_BATCH_TXS {
                    return self.flush();
                }
                Ok(None)
            }
            ReplicationEvent::KeepAlive {
                wal_end,
                reply_requested,
                ..
            } => {
                if self.open_tx.is_some() {
                    return Ok(None);
                }
                let committed = self.flush()?;
                let wal_end = Lsn(wal_end.as_u64());
                self.metrics
                    .received_lsn
                    .fetch_max(wal_end.0, std::sync::atomic::Ordering::Relaxed);
                let due = *reply_requested
                    || self
                        .last_idle_write
                        .is_none_or(|t| t.elapsed() >= IDLE_CHECKPOINT_EVERY);
                if due && self.writer.checkpoint().is_none_or(|cp| wal_end > cp) {
                    // Nothing in flight: everything received is spooled, so
                    // the server's WAL end is a safe checkpoint (DESIGN.md §2.4).
                    self.last_idle_write = Some(Instant::now());
                    return Ok(Some(self.commit(wal_end)?));
                }
                Ok(committed)
            }
            // Our heartbeat coming back proves the path end to end; the
            // keepalive logic above acknowledges the position it moved.
            ReplicationEvent::Message { prefix, .. } => {
                if prefix == crate::source::HEARTBEAT_PREFIX {
                    Metrics::add(&self.metrics.heartbeats, 1);
                }
                Ok(None)
            }
            ReplicationEvent::StoppedAt { .. } => Ok(None),
        }
    }

    /// A row change that cannot be decoded (a value its type's decoder
    /// rejects, a tuple that does not match its relation) is recorded with
    /// its table, LSN and reason, never its values, and the stream goes on:
    /// one bad row must not crash-loop the connector while WAL piles up.
    /// Anything else (a Relation message, framing outside a row) stays fatal
    /// because what follows could not be read correctly.
    fn undecodable_row(
        &mut self,
        lsn: Lsn,
        data: &[u8],
        source: DecodeError,
    ) -> Result<Option<Lsn>, ApplyError> {
        let is_row = matches!(data.first(), Some(b'I' | b'U' | b'D'));
        let Some(tx) = self.open_tx.as_ref().filter(|_| is_row) else {
            return Err(ApplyError::Decode { lsn, source });
        };
        if tx.skip {
            return Ok(None);
        }
        let ctx = tx.ctx;
        let relation = data
            .get(1..5)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
            .and_then(|oid| self.decoder.relation(oid))
            .map_or_else(|| "unknown relation".to_owned(), |r| r.qualified_name());
        let reason = format!("undecodable row change at WAL position {lsn}: {source}");
        tracing::warn!(commit_lsn = %ctx.commit_lsn, lsn = %lsn, relation = %relation, reason = %source, "row change could not be decoded; recorded in the spool and skipped");
        Metrics::add(&self.metrics.derive_failures, 1);
        self.writer
            .record_failure(ctx.commit_lsn, &relation, &reason)?;
        Ok(None)
    }

    fn on_message(&mut self, lsn: Lsn, message: &Message) -> Result<(), ApplyError> {
        match message {
            Message::Relation(_) | Message::Type { .. } | Message::Origin { .. } => return Ok(()),
            Message::Begin { .. } | Message::Commit { .. } => {
                return Err(ApplyError::Protocol(format!(
                    "unexpected raw Begin/Commit at {lsn}"
                )))
            }
            _ => {}
        }
        let Some(tx) = &mut self.open_tx else {
            if matches!(
                message,
                Message::LogicalMessage {
                    transactional: false,
                    ..
                }
            ) {
                return Ok(());
            }
            return Err(ApplyError::Protocol(format!(
                "a row change at {lsn} arrived outside a transaction"
            )));
        };
        if tx.skip {
            return Ok(());
        }
        let ctx = tx.ctx;
        Metrics::add(&self.metrics.changes, 1);
        let effects = self.deriver.change(&ctx, message, &self.writer)?;
        for effect in effects {
            if let Effect::Draft(draft) = effect {
                if let Some(tx) = &mut self.open_tx {
                    tx.drafts.push(draft);
                }
            } else {
                self.apply_effect(&ctx, effect)?;
            }
        }
        Ok(())
    }

    fn apply_effect(&mut self, ctx: &TxContext, effect: Effect) -> Result<(), ApplyError> {
        match effect {
            Effect::Event(event) => {
                if self.writer.insert_event(&event)? {
                    self.batch.new_events += 1;
                }
            }
            Effect::Note(ref note) => {
                Metrics::add(&self.metrics.derive_notes, 1);
                tracing::debug!(commit_lsn = %ctx.commit_lsn, reason = %note.reason, "derivation note");
                self.writer.apply_state(&effect)?;
            }
            Effect::Draft(_) => {
                return Err(ApplyError::Protocol(
                    "a draft outside its transaction".into(),
                ))
            }
            Effect::PutLookup { .. }
            | Effect::DeleteLookup { .. }
            | Effect::ClearLookup { .. }
            | Effect::RuleHeld { .. }
            | Effect::ClearRule { .. } => self.writer.apply_state(&effect)?,
            Effect::Failure { relation, reason } => {
                tracing::warn!(commit_lsn = %ctx.commit_lsn, relation = %relation, reason = %reason, "row change could not become an event; recorded in the spool");
                Metrics::add(&self.metrics.derive_failures, 1);
                self.writer
                    .record_failure(ctx.commit_lsn, &relation, &reason)?;
            }
        }
        Ok(())
    }

    /// Commits completed transactions, if any and none is open.
    pub fn flush(&mut self) -> Result<Option<Lsn>, ApplyError> {
        if self.open_tx.is_some() {
            return Ok(None);
        }
        match self.batch.end {
            Some(end) => Ok(Some(self.commit(end)?)),
            None => Ok(None),
        }
    }

    fn commit(&mut self, lsn: Lsn) -> Result<Lsn, ApplyError> {
        let cp = self.writer.commit(lsn)?;
        let new_events = self.batch.new_events;
        self.batch = Batch::default();
        Metrics::add(&self.metrics.spool_commits, 1);
        let waits = self.writer.take_waits();
        Metrics::add(
            &self.metrics.spool_lock_wait_us,
            waits.lock.as_micros() as u64,
        );
        Metrics::add(
            &self.metrics.spool_turn_wait_us,
            waits.turns.as_micros() as u64,
        );
        Metrics::add(
            &self.metrics.wal_restart_us,
            waits.restart.as_micros() as u64,
        );
        Metrics::add(&self.metrics.wal_restarts, waits.restarts);
        Metrics::add(&self.metrics.events_spooled, new_events);
        self.metrics
            .checkpoint_lsn
            .store(cp.0, std::sync::atomic::Ordering::Relaxed);
        if new_events > 0 {
            for wake in &self.wake {
                wake.notify_one();
            }
        }
        Ok(cp)
    }
}

#[cfg(test)]
mod tests;
