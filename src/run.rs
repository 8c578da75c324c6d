//! `capi-cdc run`: wires source → apply → spool → deliver, and reconnects.
//!
//! Inputs: validated [`Config`], [`RunOptions`] and a shutdown signal.
//! Outputs: nothing but effects; returns when shut down or on a fatal error.
//!
//! Invariants:
//! - Before every `START_REPLICATION` the slot is read and compared with the
//!   spool checkpoint ([`slot::start_position`]).
//! - A broken connection drops the uncommitted batch and resumes from the
//!   checkpoint with capped exponential backoff; decode and spool errors are
//!   fatal (they would recur) and say which LSN.
//! - The apply loop runs on its own thread (SQLite is blocking); the
//!   replication worker's status updates run on the async runtime and never
//!   wait for it.

use std::sync::Arc;
use std::time::Duration;

use pgwire_replication::{ReplicationClient, ReplicationEvent};
use tokio::sync::{watch, Notify};

use crate::apply::{Applier, ApplyError};
use crate::config::Config;
use crate::deliver;
use crate::lsn::Lsn;
use crate::source::slot::{self, StartError};
use crate::source::{self, describe_target, SourceError, StreamOptions};
use crate::spool::{LedgerTarget, Spool, SpoolError};
use crate::telemetry::Metrics;

/// Flags of `capi-cdc run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Start even when the slot is ahead of the spool (the gap is logged).
    pub accept_gap: bool,
}

/// Why `run` stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The slot or server is not usable; the message has the remedy.
    #[error(transparent)]
    Start(#[from] StartError),
    /// Source problem that retrying will not fix.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Applying failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The spool failed.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The replication stream's runtime could not start.
    #[error("cannot start the replication stream's threads: {0}. Remedy: check the process's thread limit (ulimit -u, the container's pids limit)")]
    Runtime(#[source] std::io::Error),
    /// The admin listener could not bind.
    #[error("admin.listen {addr}: {source}")]
    Admin {
        /// Address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// How much nicer than the process `run`'s delivery, admin and housekeeping
/// threads are (setpriority(2); 10 gives them about a tenth of a busy
/// core's share against a thread at 0). The replication stream's threads
/// (the client's socket task and the apply loop) stay at the process's
/// priority, so a backlog drains first and delivery takes what is left;
/// on idle cores the nice value changes nothing.
pub const DELIVERY_NICE: i32 = 10;

/// Lowers the calling thread's CPU priority by [`DELIVERY_NICE`]; given to
/// the main runtime of `run` as `on_thread_start`. Best effort: a thread
/// that cannot be reniced keeps its priority.
pub fn lower_priority() {
    // On Linux, PRIO_PROCESS with a thread ID applies to that thread alone.
    // The target is absolute, from the main thread's priority: a thread
    // started by an already lowered one inherits its nice value.
    let tid = rustix::thread::gettid();
    if let Ok(base) = rustix::process::getpriority_process(Some(rustix::process::getpid())) {
        let _ = rustix::process::setpriority_process(Some(tid), lowered_nice(base));
    }
}

/// The nice value of a lowered thread when the main thread's is `base`
/// (19 is the lowest priority there is).
pub fn lowered_nice(base: i32) -> i32 {
    (base + DELIVERY_NICE).min(19)
}

/// The replication stream's runtime, shut down without waiting when `run`
/// returns by any path: a runtime dropped plainly inside async code panics.
struct ReceiveRuntime(Option<tokio::runtime::Runtime>);

impl ReceiveRuntime {
    fn handle(&self) -> &tokio::runtime::Handle {
        self.0.as_ref().expect("taken only on drop").handle()
    }
}

impl Drop for ReceiveRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// How a session ended.
enum SessionEnd {
    Shutdown,
    Retry(String),
}

/// Runs until `shutdown` turns true.
pub async fn run(
    config: Config,
    opts: RunOptions,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), RunError> {
    let spool = Spool::open(&config.spool.file)?;
    let _owned = spool.lock_exclusive()?;
    let metrics = Arc::new(Metrics::default());
    let mut writer = spool.writer()?;
    writer.leave_wal_copy_to_others()?;

    // Lanes and the admin server stop when `run` returns, whatever the
    // reason (operator shutdown or a fatal error).
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut wakes: Vec<Arc<Notify>> = Vec::new();
    let mut lanes = Vec::new();
    let mut targets = Vec::new();
    if let Some(meta) = &config.meta {
        targets.push(LedgerTarget {
            name: deliver::meta::DESTINATION,
            lanes: meta.delivery.lanes.clone(),
        });
        let started = deliver::spawn(
            deliver::meta::MetaDestination::new(meta.clone()),
            &spool,
            metrics.clone(),
            stop_rx.clone(),
        )?;
        lanes.extend(started.tasks);
        wakes.extend(started.wakes);
    }
    if let Some(google) = &config.google {
        targets.push(LedgerTarget {
            name: deliver::google::DESTINATION,
            lanes: google.delivery.lanes.clone(),
        });
        let actions = crate::cmd::provision::recorded_actions(&spool).map_err(|e| match e {
            crate::cmd::CmdError::Spool(s) => RunError::Spool(s),
            other => RunError::Source(SourceError::NotReady(other.to_string())),
        })?;
        let started = deliver::spawn(
            deliver::google::GoogleDestination::new(google.clone(), actions),
            &spool,
            metrics.clone(),
            stop_rx.clone(),
        )?;
        lanes.extend(started.tasks);
        wakes.extend(started.wakes);
    }
    // Only destinations enabled now get ledger rows for new events; events
    // spooled before a destination was enabled reach it through replay.
    writer.set_destinations(targets)?;
    let admin = crate::admin::spawn(&config, spool.clone(), metrics.clone(), stop_rx.clone())
        .await
        .map_err(|source| RunError::Admin {
            addr: config.admin.listen,
            source,
        })?;

    let pruner = tokio::spawn(crate::spool::prune::run(
        spool.clone(),
        crate::spool::prune::Retention {
            events: config.retention(),
            lookups: config
                .rules
                .lookups
                .values()
                .filter_map(|l| {
                    l.expire_after_s
                        .map(|s| (l.name.clone(), Duration::from_secs(s as u64)))
                })
                .collect(),
            every: config.spool.prune_every,
        },
        stop_rx.clone(),
    ));
    let wal_copy = tokio::spawn(crate::spool::wal::run(spool.clone(), stop_rx.clone()));
    let grades = tokio::spawn(crate::admin::grades::run(
        Arc::new(config.clone()),
        spool.clone(),
        metrics.clone(),
        config.admin.grades_every,
        stop_rx.clone(),
    ));
    let watcher = tokio::spawn(watch_slot(
        config.source.clone(),
        metrics.clone(),
        spool.clone(),
        stop_rx.clone(),
    ));
    let heartbeat = config.source.heartbeat_interval.map(|every| {
        tokio::spawn(source::heartbeat(
            config.source.clone(),
            every,
            stop_rx.clone(),
        ))
    });
    let mut applier = Some(Applier::new(
        writer,
        crate::derive::Deriver::new(config.rules.clone()),
        metrics.clone(),
        wakes,
    ));
    // The replication stream gets threads of its own: one async worker for
    // the client's socket task, and the blocking pool's thread for the apply
    // loop. Nothing else runs there, so the drain never queues behind
    // delivery, and those threads keep the process's priority while the
    // main runtime's are lowered (`lower_priority`).
    let receive = ReceiveRuntime(Some(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(2)
            .thread_name("capi-receive")
            .enable_all()
            .build()
            .map_err(RunError::Runtime)?,
    ));
    let mut backoff = Duration::from_millis(250);
    let result = loop {
        if *shutdown.borrow() {
            break Ok(());
        }
        let Some(app) = applier.take() else {
            break Ok(());
        };
        let began = std::time::Instant::now();
        let outcome = session(
            &config,
            &opts,
            receive.handle(),
            app,
            &metrics,
            shutdown.clone(),
        )
        .await;
        if began.elapsed() > Duration::from_secs(30) {
            // The last session got going: start the backoff over.
            backoff = Duration::from_millis(250);
        }
        match outcome {
            (_, Ok(SessionEnd::Shutdown)) => break Ok(()),
            (mut app, Ok(SessionEnd::Retry(why))) => {
                app.reset_session()?;
                applier = Some(app);
                tracing::warn!(reason = %why, retry_in_ms = backoff.as_millis() as u64, "replication session ended; reconnecting from the checkpoint");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => {}
                }
                backoff = (backoff * 2).min(config.source.reconnect_max_backoff);
            }
            (_, Err(e)) => break Err(e),
        }
    };
    drop(receive);
    let _ = stop_tx.send(true);
    for lane in lanes {
        let _ = lane.await;
    }
    let _ = admin.await;
    let _ = pruner.await;
    let _ = wal_copy.await;
    let _ = watcher.await;
    let _ = grades.await;
    if let Some(heartbeat) = heartbeat {
        let _ = heartbeat.await;
    }
    result
}

/// One replication session: check the slot, stream, apply until it ends.
async fn session(
    config: &Config,
    opts: &RunOptions,
    receive: &tokio::runtime::Handle,
    mut applier: Applier,
    metrics: &Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> (Applier, Result<SessionEnd, RunError>) {
    let src = &config.source;
    let target = describe_target(&src.pg);
    let prepared = async {
        let control = source::control_client(src).await?;
        let version = source::server_version_num(&control, &target).await?;
        let wal_level = source::setting(&control, &target, "wal_level").await?;
        if wal_level != "logical" {
            return Err(SourceError::NotReady(format!(
                "wal_level is {wal_level} on {target}; logical decoding needs wal_level = logical. Remedy: ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL"
            )));
        }
        let info = slot::slot_info(&control, &target, &src.slot).await?;
        // Every table, column and type the rules name, before streaming
        // (a missing slot comes first: `setup` also fixes the publication).
        if info.is_some() {
            let catalog =
                source::catalog::read(&control, &target, &config.rules, &src.publication).await?;
            let problems =
                source::catalog::check(&config.rules, &catalog, &src.publication, true);
            if !problems.is_empty() {
                return Err(SourceError::Rules(problems));
            }
        }
        Ok::<_, SourceError>((version, info))
    }
    .await;
    let (version, info) = match prepared {
        Ok(v) => v,
        // Wrong credentials or database name: retrying cannot help.
        Err(e @ SourceError::Connect { .. }) if e.is_permanent() => {
            return (applier, Err(e.into()))
        }
        Err(e @ (SourceError::Connect { .. } | SourceError::Query { .. })) => {
            return (applier, Ok(SessionEnd::Retry(e.to_string())));
        }
        Err(e) => return (applier, Err(e.into())),
    };
    let Some(info) = info else {
        return (
            applier,
            Err(SourceError::NotReady(format!(
                "replication slot {} does not exist on {target}. Remedy: run `capi-cdc setup` (review it first with --print-sql)",
                src.slot
            ))
            .into()),
        );
    };
    if let Some(pid) = info.active_pid {
        return (
            applier,
            Ok(SessionEnd::Retry(format!(
                "replication slot {} is in use by walsender PID {pid}; waiting for it to be free",
                src.slot
            ))),
        );
    }
    let database = src.pg.get_dbname().unwrap_or_default();
    let start = match slot::start_position(applier.checkpoint(), &info, database, opts.accept_gap) {
        Ok(start) => start,
        Err(e) => return (applier, Err(e.into())),
    };
    if let (Some(cp), Some(slot_lsn)) = (applier.checkpoint(), info.confirmed_flush_lsn) {
        if slot_lsn > cp {
            tracing::warn!(slot = %src.slot, checkpoint = %cp, slot_lsn = %slot_lsn, gap_bytes = cp.bytes_until(slot_lsn), "accepting the gap between the spool and the slot (--accept-gap)");
        }
    }
    let stream_opts = StreamOptions {
        slot: src.slot.clone(),
        publication: src.publication.clone(),
        start,
        binary: version >= 140000,
        status_interval: src.status_interval,
    };
    let repl_cfg = match source::replication_config(src, &stream_opts) {
        Ok(c) => c,
        Err(e) => return (applier, Err(e.into())),
    };
    // Connected from the receive runtime, so the client's task runs there.
    let client = match receive.spawn(ReplicationClient::connect(repl_cfg)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return (applier, Ok(SessionEnd::Retry(e.to_string()))),
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    };
    Metrics::add(&metrics.connects, 1);
    metrics
        .streaming
        .store(1, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(slot = %src.slot, start = %start, binary = stream_opts.binary, target = %target, "streaming");

    // The replication client's channel is bounded by message count
    // (source::RECEIVE_CHANNEL_MESSAGES); the relay moves messages from it into a
    // channel bounded by bytes (`source.receive_buffer_mb`), so memory stays
    // bounded whatever the row size while small rows never find it full
    // (a full channel costs a cross-thread wake-up per message).
    // The apply loop blocks on SQLite, so it runs on a blocking thread.
    let budget_kb = src.receive_buffer_mb.saturating_mul(1024);
    let budget = Arc::new(tokio::sync::Semaphore::new(budget_kb as usize));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (acked_tx, acked_rx) = watch::channel(0u64);
    let (relay_stop, relay_stop_rx) = watch::channel(false);
    let relay = receive.spawn(relay(
        client,
        tx,
        budget.clone(),
        budget_kb,
        acked_rx,
        relay_stop_rx,
    ));
    let handle = receive.clone();
    let stop = shutdown.clone();
    let joined = receive
        .spawn_blocking(move || {
            let end = apply_loop(&handle, &mut rx, &budget, &acked_tx, &mut applier, stop);
            // Wake the relay wherever it waits, and let it stop the client.
            budget.close();
            let _ = relay_stop.send(true);
            drop(rx);
            let _ = handle.block_on(relay);
            (applier, end)
        })
        .await;
    metrics
        .streaming
        .store(0, std::sync::atomic::Ordering::Relaxed);
    match joined {
        Ok((applier, end)) => (applier, end),
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    }
}

/// What the relay hands the apply loop.
enum Relayed {
    /// Messages in stream order and the budget (KiB) they hold until applied.
    Events(Vec<ReplicationEvent>, u32),
    /// The stream ended: normally (`None`) or with this error.
    End(Option<String>),
}

/// Messages the relay hands over at once, at most.
const RELAY_BATCH: usize = 256;

/// The relay ended without saying why (it stops only with the session).
fn relay_gone() -> Relayed {
    Relayed::End(Some("the replication relay stopped".into()))
}

/// KiB of the byte budget a message holds: its payload, at least 1.
fn size_kb(event: &ReplicationEvent, budget_kb: u32) -> u32 {
    let bytes = match event {
        ReplicationEvent::XLogData { data, .. } => data.len(),
        ReplicationEvent::Message {
            content, prefix, ..
        } => content.len() + prefix.len(),
        _ => 0,
    };
    u32::try_from(bytes.div_ceil(1024))
        .unwrap_or(u32::MAX)
        .clamp(1, budget_kb.max(1))
}

/// Moves messages from the replication client into the byte-bounded
/// channel, and the apply loop's acknowledged LSNs back to the client,
/// until the stream ends or `stop`; then stops the client.
async fn relay(
    mut client: ReplicationClient,
    tx: tokio::sync::mpsc::UnboundedSender<Relayed>,
    budget: Arc<tokio::sync::Semaphore>,
    budget_kb: u32,
    mut acked: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            biased;
            () = async { let _ = stop.wait_for(|s| *s).await; } => break,
            changed = acked.changed() => {
                if changed.is_err() {
                    break;
                }
                let lsn = *acked.borrow_and_update();
                client.update_applied_lsn(pgwire_replication::Lsn::from_u64(lsn));
            }
            next = client.recv() => {
                // Take what else is ready too and hand it over as one batch:
                // one channel operation and at most one wake-up of the apply
                // thread for many messages.
                let mut batch = Vec::new();
                let mut batch_kb = 0u32;
                let mut end = None;
                let mut next = Some(next);
                while let Some(n) = next.take() {
                    match n {
                        Ok(Some(ev)) => {
                            batch_kb = batch_kb.saturating_add(size_kb(&ev, budget_kb));
                            batch.push(ev);
                        }
                        Ok(None) => end = Some(None),
                        Err(e) => end = Some(Some(e.to_string())),
                    }
                    if end.is_some() || batch.len() >= RELAY_BATCH || batch_kb >= budget_kb / 4 {
                        break;
                    }
                    next = tokio::select! {
                        biased;
                        n = client.recv() => Some(n),
                        () = std::future::ready(()) => None,
                    };
                }
                let batch_kb = batch_kb.min(budget_kb);
                if !batch.is_empty() {
                    match budget.acquire_many(batch_kb).await {
                        Ok(permit) => permit.forget(),
                        Err(_) => break, // the apply loop is gone
                    }
                    if tx.send(Relayed::Events(batch, batch_kb)).is_err() {
                        break;
                    }
                }
                if let Some(why) = end {
                    let _ = tx.send(Relayed::End(why));
                    break;
                }
            }
        }
    }
    client.stop();
    let _ = tokio::time::timeout(Duration::from_secs(5), client.shutdown()).await;
}

/// Pulls events and applies them until shutdown or a broken stream.
fn apply_loop(
    handle: &tokio::runtime::Handle,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Relayed>,
    budget: &tokio::sync::Semaphore,
    acked: &watch::Sender<u64>,
    applier: &mut Applier,
    mut stop: watch::Receiver<bool>,
) -> Result<SessionEnd, RunError> {
    use tokio::sync::mpsc::error::TryRecvError;
    let ack = |lsn: Lsn| {
        acked.send_replace(lsn.0);
    };
    loop {
        if *stop.borrow() {
            // Only completed transactions are in the batch; the rest comes
            // again from the checkpoint next time.
            if let Some(lsn) = applier.flush()? {
                ack(lsn);
            }
            return Ok(SessionEnd::Shutdown);
        }
        // Whatever is ready is taken without entering the runtime.
        let next = match rx.try_recv() {
            Ok(r) => Some(r),
            Err(TryRecvError::Disconnected) => Some(relay_gone()),
            Err(TryRecvError::Empty) if applier.has_pending_commit() => {
                // Flush as soon as the stream has nothing ready: group
                // commit without adding latency.
                None
            }
            Err(TryRecvError::Empty) => handle.block_on(async {
                tokio::select! {
                    r = rx.recv() => Some(r.unwrap_or_else(relay_gone)),
                    _ = stop.changed() => None,
                }
            }),
        };
        let (events, kb) = match next {
            None => {
                if let Some(lsn) = applier.flush()? {
                    ack(lsn);
                }
                if *stop.borrow() {
                    return Ok(SessionEnd::Shutdown);
                }
                continue;
            }
            Some(Relayed::Events(events, kb)) => (events, kb),
            Some(Relayed::End(None)) => {
                return Ok(SessionEnd::Retry("the server ended the stream".into()))
            }
            Some(Relayed::End(Some(e))) => return Ok(SessionEnd::Retry(e)),
        };
        for event in &events {
            if let Some(lsn) = applier.on_event(event)? {
                ack(lsn);
            }
            if matches!(event, ReplicationEvent::StoppedAt { .. }) {
                return Ok(SessionEnd::Shutdown);
            }
        }
        drop(events);
        budget.add_permits(kb as usize);
    }
}

/// Every 10 s, the slot's retained WAL and `safe_wal_size` and the
/// server's WAL position, for `/metrics` and `/api/health` (a DBA's first
/// question: is this connector making my primary keep WAL?). Failures are
/// logged at debug and retried; they never affect streaming.
async fn watch_slot(
    src: crate::config::SourceConfig,
    metrics: Arc<Metrics>,
    spool: Spool,
    mut stop: watch::Receiver<bool>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let target = describe_target(&src.pg);
    let mut client: Option<tokio_postgres::Client> = None;
    loop {
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            client = source::control_client(&src).await.ok();
        }
        if let Some(c) = &client {
            match slot::slot_info(c, &target, &src.slot).await {
                Ok(Some(info)) => {
                    metrics
                        .slot_retained_bytes
                        .store(info.retained_bytes.unwrap_or(0).max(0) as u64, Relaxed);
                    metrics.slot_safe_wal_bytes.store(
                        info.safe_wal_size.map_or(u64::MAX, |s| s.max(0) as u64),
                        Relaxed,
                    );
                }
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, "slot watcher: cannot read the slot"),
            }
            if let Ok(row) = c.query_one("SELECT pg_current_wal_lsn()::text", &[]).await {
                if let Ok(lsn) = row.get::<_, String>(0).parse::<Lsn>() {
                    metrics.server_lsn.store(lsn.0, Relaxed);
                }
            }
        }
        // The spool's own size and lookup state, off the hot path.
        let (s, m) = (spool.clone(), metrics.clone());
        let _ = tokio::task::spawn_blocking(move || {
            let bytes = ["", "-wal"]
                .iter()
                .filter_map(|x| std::fs::metadata(format!("{}{x}", s.path().display())).ok())
                .map(|m| m.len())
                .sum();
            m.spool_bytes.store(bytes, Relaxed);
            if let Ok(counts) = s.ledger().and_then(|l| l.lookup_row_counts()) {
                *m.lookup_rows.lock().unwrap_or_else(|p| p.into_inner()) = counts;
            }
        })
        .await;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod priority_tests {
    fn own() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
    }

    #[test]
    fn lower_priority_renices_the_calling_thread_only_and_once() {
        let base = rustix::process::getpriority_process(Some(rustix::process::getpid())).unwrap();
        let want = super::lowered_nice(base);
        let (lowered, again, inherited) = std::thread::spawn(move || {
            super::lower_priority();
            let lowered = own();
            super::lower_priority();
            // A thread started by a lowered one (as tokio's blocking pool
            // does) inherits the nice value; lowering it again must not add up.
            let inherited = std::thread::spawn(|| {
                super::lower_priority();
                own()
            })
            .join()
            .unwrap();
            (lowered, own(), inherited)
        })
        .join()
        .unwrap();
        assert_eq!(lowered, want);
        assert_eq!(again, want);
        assert_eq!(inherited, want);
        assert_eq!(own(), base, "the caller's thread keeps its priority");
    }
}
