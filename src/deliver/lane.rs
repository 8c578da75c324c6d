//! The lane loop shared by every destination: read due events of one lane,
//! skip by policy, hold, batch, rate-limit, send, bisect rejected batches,
//! record outcomes, wait.
//!
//! A destination has two lanes over the same ledger, told apart by the
//! ledger row's `lane`: **real-time** sends whatever is due as soon as it is
//! free; **batched** waits until `max_batch_events` are due or the oldest
//! has waited `batch_max_age`. Both take tokens from one [`Limiter`], and
//! each keeps up to [`IN_FLIGHT`] requests going, never with the same event
//! in two of them.

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{watch, Notify};

use super::{Attempt, Destination};
use crate::event::{BusinessEvent, LaneKind};
use crate::spool::{DeliveryState, Ledger, PendingEvent, SpoolError};
use crate::telemetry::Metrics;

/// The longest a lane sleeps without looking at the ledger.
const IDLE_POLL: Duration = Duration::from_secs(5);
/// Keep a margin so an event does not leave the window while in flight.
const WINDOW_MARGIN_S: i64 = 300;
/// A real-time lane whose newest due event committed longer ago than this
/// is behind: a backlog drains (after an outage, a restart, a bulk load).
const BEHIND: Duration = Duration::from_secs(1);
/// While behind, a real-time lane sends a partial batch at most this often
/// (a full one goes at once). Its events are old already; each request's
/// outcome is a write transaction the slot's drain waits for, and in
/// workload C the real-time lanes committed about once per spool commit.
pub const BEHIND_PACE: Duration = Duration::from_millis(250);

/// Requests a lane keeps in flight at once, each with different events:
/// while the platform answers one, the lane records the last and reads the
/// next.
pub const IN_FLIGHT: usize = 2;

/// The rate limit of one destination account, shared by its lanes.
#[derive(Debug)]
pub struct Limiter {
    inner: DefaultDirectRateLimiter,
}

impl Limiter {
    /// `rps` requests per second, bursts of at most 10 (or `rps` if lower).
    pub fn new(rps: NonZeroU32) -> Limiter {
        let burst = NonZeroU32::new(rps.get().min(10)).unwrap_or(NonZeroU32::MIN);
        Limiter {
            inner: RateLimiter::direct(Quota::per_second(rps).allow_burst(burst)),
        }
    }

    /// Waits for one token; returns how long it waited.
    pub async fn acquire(&self) -> Duration {
        let start = Instant::now();
        self.inner.until_ready().await;
        start.elapsed()
    }
}

/// Backoff before retry `attempts + 1`: `initial` doubling, capped at `max`.
pub fn backoff(initial: Duration, max: Duration, attempts: u32) -> Duration {
    let factor = 1u32.checked_shl(attempts.min(20)).unwrap_or(u32::MAX);
    initial.saturating_mul(factor).min(max)
}

/// ±25 % of `d`, spread by `seed` so a batch's events do not retry in step
/// (deterministic: no random source needed, and tests can predict it).
fn jitter(d: Duration, seed: u64) -> Duration {
    let spread = (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 33) % 501; // 0..=500
    d.mul_f64(0.75 + spread as f64 / 1000.0)
}

/// A job for a lane's ledger thread.
type Job = Box<dyn FnOnce(&mut Ledger) + Send>;

/// One lane's ledger on a thread of its own. A call may wait for the apply
/// loop's write lock; run on the runtime's blocking pool, every call that
/// queued behind another held a pool thread (20 and more in workload C).
/// One thread per lane runs them in order, and no lock is needed.
pub(crate) struct LedgerThread {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl LedgerThread {
    /// Starts the thread; it ends when the last handle is dropped, after
    /// the jobs already queued.
    pub(crate) fn start(ledger: Ledger, name: String) -> std::io::Result<LedgerThread> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new().name(name).spawn(move || {
            let mut ledger = ledger;
            for job in queue {
                job(&mut ledger);
            }
        })?;
        Ok(LedgerThread { jobs })
    }

    /// Runs `f` on the thread and waits for it without holding a runtime
    /// thread; a panic in `f` is resumed here.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Ledger) -> Result<T, SpoolError> + Send + 'static,
    ) -> Result<T, SpoolError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |ledger| {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(ledger)));
            let _ = reply.send(result);
        });
        self.jobs
            .send(job)
            .unwrap_or_else(|_| unreachable!("the ledger thread runs while its handle lives"));
        match answer.await {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => unreachable!("the ledger thread answers every job it takes"),
        }
    }
}

/// What [`Lane::prepare_once`] found: a batch to send, or what to do.
enum Prepared {
    Send(Vec<PendingEvent>),
    Next(Next),
}

/// What the drain loop should do next.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Keep draining.
    More,
    /// Nothing due, or told to wait: sleep until woken or due.
    Wait,
    /// A batch is filling: sleep until this time (ms) unless woken.
    Until(i64),
    /// The destination needs an operator: sleep the auth retry, ignoring wake-ups.
    Pause,
}

/// Outcomes the platform accepted but the ledger failed to record: kept in
/// memory and recorded first, and their events are never sent again.
#[derive(Default)]
struct Unrecorded {
    seqs: HashSet<i64>,
    outcomes: Vec<(Vec<i64>, Option<String>)>,
}

struct Lane<D> {
    dest: Arc<D>,
    lane: LaneKind,
    ledger: LedgerThread,
    limiter: Arc<Limiter>,
    metrics: Arc<Metrics>,
    unrecorded: Mutex<Unrecorded>,
    /// Events of the requests in flight. Only the lane's own loop changes
    /// it, between its reads, so a read never sees an event leave this set
    /// before its outcome is in the ledger (or in `unrecorded`).
    in_flight: Mutex<HashSet<i64>>,
    /// When this lane last handed a batch to a request.
    last_send: Mutex<Option<Instant>>,
    /// Whether its last read found it behind (see [`BEHIND`]).
    behind: std::sync::atomic::AtomicBool,
}

type Flights = tokio::task::JoinSet<(Vec<i64>, Result<Next, SpoolError>)>;

/// Delivers one lane of `dest` until `shutdown` turns true.
pub async fn run<D: Destination>(
    dest: Arc<D>,
    lane: LaneKind,
    ledger: Ledger,
    limiter: Arc<Limiter>,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = dest.name();
    let ledger = match LedgerThread::start(ledger, format!("capi-ledger-{}", lane.as_str())) {
        Ok(thread) => thread,
        Err(e) => {
            tracing::error!(destination = name, lane = lane.as_str(), error = %e, "cannot start the lane's ledger thread; the lane does not run");
            return;
        }
    };
    let lane = Arc::new(Lane {
        dest,
        lane,
        ledger,
        limiter,
        metrics,
        unrecorded: Mutex::default(),
        in_flight: Mutex::default(),
        last_send: Mutex::default(),
        behind: Default::default(),
    });
    let mut flights = Flights::new();
    loop {
        if *shutdown.borrow() {
            // Outcomes of requests already sent are recorded before exit.
            lane.land_all(&mut flights, Ok(Next::More)).await.ok();
            return;
        }
        let next = match lane.pipeline(&mut flights).await {
            Ok(next) => next,
            Err(e) => {
                tracing::error!(destination = name, lane = lane.lane.as_str(), error = %e, "delivery lane cannot read or update the spool; retrying in 1 s");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => return,
                }
                continue;
            }
        };
        let sleep = match next {
            Next::More => continue,
            Next::Pause => {
                tokio::select! {
                    _ = tokio::time::sleep(lane.dest.delivery().auth_retry) => {}
                    _ = shutdown.changed() => return,
                }
                continue;
            }
            Next::Until(at_ms) => Duration::from_millis(
                (at_ms - Ledger::now_ms()).clamp(0, IDLE_POLL.as_millis() as i64) as u64,
            ),
            Next::Wait => {
                let kind = lane.lane;
                match lane
                    .with_ledger(move |l| {
                        l.save_moved_cursors()?;
                        l.next_due_ms(name, kind)
                    })
                    .await
                {
                    Ok(Some(due)) => Duration::from_millis(
                        (due - Ledger::now_ms()).clamp(0, IDLE_POLL.as_millis() as i64) as u64,
                    ),
                    _ => IDLE_POLL,
                }
            }
        };
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
            _ = shutdown.changed() => return,
        }
    }
}

impl<D: Destination> Lane<D> {
    /// Runs a ledger operation on the lane's ledger thread, counting its
    /// write transactions in `capi_cdc_ledger_commits_total`.
    async fn with_ledger<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Ledger) -> Result<T, SpoolError> + Send + 'static,
    ) -> Result<T, SpoolError> {
        let metrics = self.metrics.clone();
        self.ledger
            .call(move |l| {
                let before = l.commits();
                let result = f(l);
                Metrics::add(&metrics.ledger_commits, l.commits() - before);
                result
            })
            .await
    }

    /// Keeps up to [`IN_FLIGHT`] requests going until one answers with
    /// anything but "more", or nothing is left to send; then lets every
    /// request in flight land and says what to do next.
    async fn pipeline(self: &Arc<Self>, flights: &mut Flights) -> Result<Next, SpoolError> {
        loop {
            while flights.len() < IN_FLIGHT {
                match self.prepare_once().await {
                    Ok(Prepared::Send(batch)) => {
                        let seqs: Vec<i64> = batch.iter().map(|p| p.seq).collect();
                        self.in_flight
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .extend(seqs.iter().copied());
                        let lane = self.clone();
                        flights.spawn(async move { (seqs, lane.deliver(batch).await) });
                    }
                    Ok(Prepared::Next(Next::More)) => {}
                    Ok(Prepared::Next(next)) => return self.land_all(flights, Ok(next)).await,
                    Err(e) => return self.land_all(flights, Err(e)).await,
                }
            }
            match self.land_one(flights).await {
                Some(Ok(Next::More)) => {}
                Some(other) => return self.land_all(flights, other).await,
                None => return Ok(Next::More),
            }
        }
    }

    /// Waits for the next request in flight to finish; `None` if none is.
    async fn land_one(&self, flights: &mut Flights) -> Option<Result<Next, SpoolError>> {
        let (seqs, result) = match flights.join_next().await? {
            Ok(done) => done,
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        };
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        for seq in seqs {
            in_flight.remove(&seq);
        }
        Some(result)
    }

    /// Lets every request in flight finish; the first error wins, then a
    /// pause, then `next`, then any other answer but "more".
    async fn land_all(
        &self,
        flights: &mut Flights,
        next: Result<Next, SpoolError>,
    ) -> Result<Next, SpoolError> {
        let mut next = next;
        while let Some(done) = self.land_one(flights).await {
            next = match (next, done) {
                (Err(e), _) | (_, Err(e)) => Err(e),
                (Ok(Next::Pause), _) | (_, Ok(Next::Pause)) => Ok(Next::Pause),
                (Ok(Next::More), Ok(other)) => Ok(other),
                (Ok(n), Ok(_)) => Ok(n),
            };
        }
        next
    }

    /// One read and one send, in turn (tests step a lane with it).
    #[cfg(test)]
    async fn drain_once(&self) -> Result<Next, SpoolError> {
        match self.prepare_once().await? {
            Prepared::Send(batch) => self.deliver(batch).await,
            Prepared::Next(next) => Ok(next),
        }
    }

    /// Reads what is due (leaving out events in flight), skips and holds by
    /// policy, and returns what to send.
    async fn prepare_once(&self) -> Result<Prepared, SpoolError> {
        self.record_unrecorded().await?;
        let name = self.dest.name();
        let mut operator_paused = false;
        self.metrics.delivery.destination(name, |d| {
            operator_paused = d.operator_paused.load(std::sync::atomic::Ordering::Relaxed) == 1
        });
        if operator_paused {
            // Look again in a second: a resume takes effect at once.
            return Ok(Prepared::Next(Next::Until(Ledger::now_ms() + 1000)));
        }
        let delivery = self.dest.delivery();
        let limit = delivery.max_batch_events;
        let now_ms = Ledger::now_ms();
        let kind = self.lane;
        if kind == LaneKind::Batched {
            // Until the batch is full or old enough, count it without reading
            // it: this runs after every spool commit with new events.
            let (n, oldest) = self
                .with_ledger(move |l| l.pending_summary(name, kind, now_ms, limit))
                .await?;
            let Some(oldest) = oldest else {
                return Ok(Prepared::Next(Next::Wait));
            };
            let flush_at = oldest + delivery.batch_max_age.as_millis() as i64;
            if n < limit && now_ms < flush_at {
                return Ok(Prepared::Next(Next::Until(flush_at)));
            }
        }
        // A real-time lane behind a backlog sends partial batches at most
        // every BEHIND_PACE: count first, and read only a full batch early.
        let paced_until = self.paced_until();
        if let Some(until) = paced_until {
            let (n, _) = self
                .with_ledger(move |l| l.pending_summary(name, kind, now_ms, limit))
                .await?;
            if n < limit {
                return Ok(Prepared::Next(Next::Until(until)));
            }
        }
        // Events in flight or delivered-but-unrecorded are still pending in
        // the ledger: read past them. One snapshot is enough: a request in
        // flight adds to `unrecorded` only events that are in `in_flight`,
        // and only this loop takes events out of `in_flight`.
        let excluded: HashSet<i64> = {
            let unrecorded = self.unrecorded.lock().unwrap_or_else(|p| p.into_inner());
            let in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            unrecorded.seqs.union(&in_flight).copied().collect()
        };
        let skip = excluded.len();
        let mut due = self
            .with_ledger(move |l| l.pending(name, kind, now_ms, limit + skip))
            .await?;
        due.retain(|p| !excluded.contains(&p.seq));
        due.truncate(limit);
        if due.is_empty() {
            return Ok(Prepared::Next(Next::Wait));
        }
        if self.lane == LaneKind::RealTime {
            let newest_ms = due.iter().map(|p| p.event.commit_time_us / 1000).max();
            let behind = newest_ms.is_some_and(|t| now_ms - t > BEHIND.as_millis() as i64);
            self.behind
                .store(behind, std::sync::atomic::Ordering::Relaxed);
            if let (Some(until), true) = (
                paced_until.or_else(|| self.paced_until()),
                due.len() < limit,
            ) {
                return Ok(Prepared::Next(Next::Until(until)));
            }
        }
        if self.lane == LaneKind::Batched && due.len() < limit {
            let oldest = due.iter().map(|p| p.spooled_at_ms).min().unwrap_or(now_ms);
            let flush_at = oldest + delivery.batch_max_age.as_millis() as i64;
            if now_ms < flush_at {
                return Ok(Prepared::Next(Next::Until(flush_at)));
            }
        }
        let now_s = now_ms / 1000;
        let mut sendable = Vec::with_capacity(due.len());
        let mut held: Vec<(i64, i64)> = Vec::new();
        let mut skipped: Vec<(Vec<i64>, Option<String>)> = Vec::new();
        for p in due {
            let window_end = p.event.event_time_s + self.dest.window(&p.event).as_secs() as i64
                - WINDOW_MARGIN_S;
            let reason = if now_s > window_end {
                Some(format!(
                    "event_time is {} h old: outside {name}'s window of {} days",
                    (now_s - p.event.event_time_s) / 3600,
                    self.dest.window(&p.event).as_secs() / 86_400
                ))
            } else {
                self.dest.skip_reason(&p.event, now_s)
            };
            if let Some(reason) = reason {
                self.metrics
                    .delivery
                    .count(name, p.event.kind.as_str(), |c| &c.skipped, 1);
                skipped.push((vec![p.seq], Some(reason)));
            } else if let Some(until) = self.dest.hold_until_ms(&p.event).filter(|t| *t > now_ms) {
                held.push((p.seq, until));
            } else {
                sendable.push(p);
            }
        }
        self.finish_groups(skipped, DeliveryState::Skipped, false)
            .await?;
        if !held.is_empty() {
            let reason = "held: Google accepts uploads to a new conversion action 6 hours after its creation";
            let lane = self.lane;
            self.with_ledger(move |l| l.retry_each(name, lane, &held, reason, false))
                .await?;
        }
        if sendable.is_empty() {
            return Ok(Prepared::Next(Next::More));
        }
        *self.last_send.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        Ok(Prepared::Send(sendable))
    }

    /// Until when (ms) a real-time lane that is behind holds a partial
    /// batch back; `None` if it is not behind or its pace allows a send.
    fn paced_until(&self) -> Option<i64> {
        if self.lane != LaneKind::RealTime
            || !self.behind.load(std::sync::atomic::Ordering::Relaxed)
        {
            return None;
        }
        let since = self
            .last_send
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|t| t.elapsed())?;
        let left = BEHIND_PACE.checked_sub(since).filter(|d| !d.is_zero())?;
        Some(Ledger::now_ms() + left.as_millis() as i64 + 1)
    }

    /// Sends `batch`, bisecting on rejection.
    async fn deliver(&self, batch: Vec<PendingEvent>) -> Result<Next, SpoolError> {
        let name = self.dest.name();
        let mut stack = vec![batch];
        while let Some(group) = stack.pop() {
            let waited = self.limiter.acquire().await;
            self.metrics.delivery.destination(name, |d| {
                Metrics::add(&d.requests, 1);
                Metrics::add(&d.rate_limit_wait_ms, waited.as_millis() as u64);
            });
            let events: Vec<&BusinessEvent> = group.iter().map(|p| &p.event).collect();
            let attempt = self.dest.send(&events).await;
            match attempt {
                Attempt::Delivered { receipt } => {
                    self.metrics.delivery.destination(name, |d| {
                        d.paused.store(0, std::sync::atomic::Ordering::Relaxed)
                    });
                    self.delivered(&group, receipt).await?;
                }
                Attempt::Rejected { reason } if group.len() > 1 => {
                    tracing::warn!(destination = name, events = group.len(), reason = %reason, "request rejected; bisecting to find the invalid event");
                    let mut first = group;
                    let second = first.split_off(first.len() / 2);
                    stack.push(second);
                    stack.push(first);
                }
                Attempt::Rejected { reason } => {
                    tracing::warn!(destination = name, reason = %reason, "event dead-lettered");
                    let p = &group[0];
                    self.metrics
                        .delivery
                        .count(name, p.event.kind.as_str(), |c| &c.dead, 1);
                    self.finish(vec![p.seq], DeliveryState::Dead, Some(reason), true)
                        .await?;
                }
                Attempt::RetryAfter { delay, reason } => {
                    tracing::warn!(destination = name, retry_in_ms = delay.as_millis() as u64, reason = %reason, "throttled by the platform; waiting without using up the retry budget");
                    self.metrics
                        .delivery
                        .destination(name, |d| Metrics::add(&d.throttled, 1));
                    self.retry_all(group, stack, delay, &reason).await?;
                    return Ok(Next::Wait);
                }
                Attempt::Transient { reason } => {
                    // Whatever is left on the stack was never sent and
                    // stays pending as it is.
                    self.transient(group, &reason).await?;
                    return Ok(Next::Wait);
                }
                Attempt::Paused { reason } => {
                    tracing::error!(destination = name, reason = %reason, retry_s = self.dest.delivery().auth_retry.as_secs(), "ALARM: destination paused until the operator fixes it; events are kept");
                    self.metrics.delivery.destination(name, |d| {
                        d.paused.store(1, std::sync::atomic::Ordering::Relaxed);
                        *d.paused_reason.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(reason.clone());
                    });
                    // No attempt counted and no `not_before` stored: once
                    // the credentials work, they go at once.
                    self.retry_all(group, stack, Duration::ZERO, &reason)
                        .await?;
                    return Ok(Next::Pause);
                }
            }
        }
        Ok(Next::More)
    }

    /// Records a delivered group; if the ledger cannot take it, the outcome
    /// is kept in memory (and its events excluded from sending) until it can.
    async fn delivered(
        &self,
        group: &[PendingEvent],
        receipt: Option<String>,
    ) -> Result<(), SpoolError> {
        let name = self.dest.name();
        let now = Ledger::now_ms();
        for p in group {
            self.metrics
                .delivery
                .count(name, p.event.kind.as_str(), |c| &c.delivered, 1);
            self.metrics.delivery.destination(name, |d| {
                Metrics::add(&d.latency_ms_sum, (now - p.spooled_at_ms).max(0) as u64);
                Metrics::add(&d.latency_count, 1);
            });
            self.metrics
                .delivery
                .observe_latency(name, (now - p.event.commit_time_us / 1000).max(0) as u64);
            self.metrics.delivery.destination(name, |_| {});
        }
        tracing::info!(
            destination = name,
            lane = self.lane.as_str(),
            events = group.len(),
            "delivered"
        );
        let mut outcomes: Vec<(Vec<i64>, Option<String>)> = Vec::new();
        let mut plain = Vec::new();
        for p in group {
            match self.dest.delivered_note(&p.event) {
                Some(note) => {
                    let note = match &receipt {
                        Some(r) => format!("{note}; {r}"),
                        None => note.to_owned(),
                    };
                    outcomes.push((vec![p.seq], Some(note)));
                }
                None => plain.push(p.seq),
            }
        }
        if !plain.is_empty() {
            outcomes.push((plain, receipt.clone()));
        }
        // One transaction for the whole request, notes and all.
        let result = self
            .finish_groups(outcomes.clone(), DeliveryState::Delivered, true)
            .await;
        if let Err(e) = result {
            let mut u = self.unrecorded.lock().unwrap_or_else(|p| p.into_inner());
            for (seqs, note) in outcomes {
                u.seqs.extend(seqs.iter().copied());
                u.outcomes.push((seqs, note));
            }
            tracing::error!(destination = name, events = u.seqs.len(), error = %e, "delivered but the ledger could not record it; kept in memory and not resent");
            return Err(e);
        }
        Ok(())
    }

    async fn record_unrecorded(&self) -> Result<(), SpoolError> {
        let pending = {
            let u = self.unrecorded.lock().unwrap_or_else(|p| p.into_inner());
            u.outcomes.clone()
        };
        if pending.is_empty() {
            return Ok(());
        }
        let recorded = pending.len();
        self.finish_groups(pending, DeliveryState::Delivered, true)
            .await?;
        // Requests in flight may have added outcomes meanwhile: keep those.
        let mut u = self.unrecorded.lock().unwrap_or_else(|p| p.into_inner());
        for (seqs, _) in u.outcomes.drain(..recorded).collect::<Vec<_>>() {
            for seq in seqs {
                u.seqs.remove(&seq);
            }
        }
        Ok(())
    }

    /// A transient failure: back off each event while it is inside the
    /// platform's window (and the configured ceiling); dead-letter the rest
    /// with the last answer.
    async fn transient(&self, group: Vec<PendingEvent>, reason: &str) -> Result<(), SpoolError> {
        let name = self.dest.name();
        let d = self.dest.delivery();
        let now_ms = Ledger::now_ms();
        let mut dead = Vec::new();
        let mut retry: Vec<(i64, i64)> = Vec::new();
        for p in &group {
            let delay = jitter(
                backoff(d.retry_initial, d.retry_max, p.attempts),
                p.seq as u64 ^ u64::from(p.attempts),
            );
            let next_ms = now_ms + delay.as_millis() as i64;
            let window_end_ms = (p.event.event_time_s
                + self.dest.window(&p.event).as_secs() as i64
                - WINDOW_MARGIN_S)
                * 1000;
            let ceiling_ms = d
                .max_retry_age
                .map_or(i64::MAX, |c| p.spooled_at_ms + c.as_millis() as i64);
            self.metrics
                .delivery
                .count(name, p.event.kind.as_str(), |c| &c.retries, 1);
            if next_ms > window_end_ms.min(ceiling_ms) {
                let why = if next_ms > window_end_ms {
                    format!("outside {name}'s window")
                } else {
                    "past destinations.*.max_retry_hours".to_owned()
                };
                dead.push((
                    p.seq,
                    p.event.kind.as_str().to_owned(),
                    format!(
                        "gave up after {} attempts ({why}); last error: {reason}",
                        p.attempts + 1
                    ),
                ));
            } else {
                retry.push((p.seq, next_ms));
            }
        }
        let mut dead_groups = Vec::with_capacity(dead.len());
        for (seq, kind, why) in dead {
            tracing::warn!(destination = name, reason = %why, "event dead-lettered");
            self.metrics.delivery.count(name, &kind, |c| &c.dead, 1);
            dead_groups.push((vec![seq], Some(why)));
        }
        self.finish_groups(dead_groups, DeliveryState::Dead, true)
            .await?;
        if let Some(first) = retry.iter().map(|(_, t)| *t).min() {
            tracing::warn!(destination = name, events = retry.len(), retry_in_ms = first - now_ms, reason = %reason, "delivery failed; will retry");
            let reason = reason.to_owned();
            let lane = self.lane;
            self.with_ledger(move |l| l.retry_each(name, lane, &retry, &reason, true))
                .await?;
        }
        Ok(())
    }

    /// Puts `group` and everything still on `stack` back to wait `delay`,
    /// counting no attempt.
    async fn retry_all(
        &self,
        group: Vec<PendingEvent>,
        stack: Vec<Vec<PendingEvent>>,
        delay: Duration,
        reason: &str,
    ) -> Result<(), SpoolError> {
        let seqs: Vec<i64> = group
            .iter()
            .chain(stack.iter().flatten())
            .map(|p| p.seq)
            .collect();
        let not_before = Ledger::now_ms() + delay.as_millis() as i64;
        let name = self.dest.name();
        let reason = reason.to_owned();
        let lane = self.lane;
        self.with_ledger(move |l| l.retry_later(name, lane, &seqs, not_before, &reason, false))
            .await
    }

    async fn finish(
        &self,
        seqs: Vec<i64>,
        state: DeliveryState,
        reason: Option<String>,
        attempted: bool,
    ) -> Result<(), SpoolError> {
        self.finish_groups(vec![(seqs, reason)], state, attempted)
            .await
    }

    /// Records `state` for groups of events, each with its reason, in one
    /// write transaction (none when there are no groups).
    async fn finish_groups(
        &self,
        groups: Vec<(Vec<i64>, Option<String>)>,
        state: DeliveryState,
        attempted: bool,
    ) -> Result<(), SpoolError> {
        if groups.is_empty() {
            return Ok(());
        }
        let name = self.dest.name();
        let lane = self.lane;
        self.with_ledger(move |l| {
            let groups: Vec<(&[i64], Option<&str>)> = groups
                .iter()
                .map(|(seqs, reason)| (seqs.as_slice(), reason.as_deref()))
                .collect();
            l.finish_each(name, lane, &groups, state, attempted)
        })
        .await
    }
}

#[cfg(test)]
mod tests;
