//! The lane loop shared by every destination: read due events, skip by
//! policy, rate-limit, send, bisect rejected batches, record outcomes, wait.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{watch, Notify};

use super::{Attempt, Destination};
use crate::event::BusinessEvent;
use crate::spool::{DeliveryState, Ledger, PendingEvent, SpoolError};
use crate::telemetry::{LaneMetrics, Metrics};

/// How long an auth-paused lane waits before trying again.
const PAUSE: Duration = Duration::from_secs(60);
/// The longest a lane sleeps without looking at the ledger.
const IDLE_POLL: Duration = Duration::from_secs(5);
/// Transient retries back off from 1 s, doubling, up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Backoff before attempt `attempts + 1`: 1 s, 2 s, 4 s … capped at 5 min.
pub fn backoff(attempts: u32) -> Duration {
    let secs = 1u64.checked_shl(attempts.min(16)).unwrap_or(u64::MAX);
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

type SharedLedger = Arc<Mutex<Ledger>>;

/// Runs a ledger operation on the blocking pool (SQLite may wait for the
/// apply loop's write lock).
async fn with_ledger<T: Send + 'static>(
    ledger: &SharedLedger,
    f: impl FnOnce(&mut Ledger) -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, SpoolError> {
    let ledger = ledger.clone();
    tokio::task::spawn_blocking(move || {
        let mut guard = ledger.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    })
    .await
    .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
}

/// What the drain loop should do next.
enum Next {
    /// Keep draining.
    More,
    /// Nothing due, or told to wait: sleep until woken or due.
    Wait,
    /// The destination needs an operator: sleep [`PAUSE`], ignoring wake-ups.
    Pause,
}

struct Lane<D> {
    dest: D,
    ledger: SharedLedger,
    limiter: DefaultDirectRateLimiter,
    metrics: Arc<Metrics>,
    counters: fn(&Metrics) -> &LaneMetrics,
    pause: Duration,
}

/// Delivers until `shutdown` turns true.
pub async fn run<D: Destination>(
    dest: D,
    ledger: Ledger,
    metrics: Arc<Metrics>,
    counters: fn(&Metrics) -> &LaneMetrics,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let rps = dest.requests_per_second();
    let burst = NonZeroU32::new(rps.get().min(10)).unwrap_or(NonZeroU32::MIN);
    let lane = Lane {
        limiter: RateLimiter::direct(Quota::per_second(rps).allow_burst(burst)),
        dest,
        ledger: Arc::new(Mutex::new(ledger)),
        metrics,
        counters,
        pause: PAUSE,
    };
    let name = lane.dest.name();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let next = match lane.drain_once().await {
            Ok(next) => next,
            Err(e) => {
                tracing::error!(destination = name, error = %e, "delivery lane cannot read or update the spool; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        match next {
            Next::More => continue,
            Next::Pause => {
                tokio::select! {
                    _ = tokio::time::sleep(lane.pause) => {}
                    _ = shutdown.changed() => return,
                }
                continue;
            }
            Next::Wait => {}
        }
        let sleep = match with_ledger(&lane.ledger, move |l| l.next_due_ms(name)).await {
            Ok(Some(due)) => {
                let wait = due - Ledger::now_ms();
                Duration::from_millis(wait.clamp(0, IDLE_POLL.as_millis() as i64) as u64)
            }
            _ => IDLE_POLL,
        };
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
            _ = shutdown.changed() => return,
        }
    }
}

impl<D: Destination> Lane<D> {
    fn counters(&self) -> &LaneMetrics {
        (self.counters)(&self.metrics)
    }

    async fn drain_once(&self) -> Result<Next, SpoolError> {
        let name = self.dest.name();
        let limit = self.dest.max_batch();
        let now_ms = Ledger::now_ms();
        let due = with_ledger(&self.ledger, move |l| l.pending(name, now_ms, limit)).await?;
        if due.is_empty() {
            return Ok(Next::Wait);
        }
        let now_s = now_ms / 1000;
        let mut sendable = Vec::with_capacity(due.len());
        for p in due {
            match self.dest.skip_reason(&p.event, now_s) {
                Some(reason) => {
                    self.finish(&[p.seq], DeliveryState::Skipped, Some(reason), false)
                        .await?;
                    Metrics::add(&self.counters().skipped, 1);
                }
                None => sendable.push(p),
            }
        }
        if sendable.is_empty() {
            return Ok(Next::More);
        }
        self.deliver(sendable).await
    }

    /// Sends `batch`, bisecting on rejection.
    async fn deliver(&self, batch: Vec<PendingEvent>) -> Result<Next, SpoolError> {
        let mut stack = vec![batch];
        while let Some(group) = stack.pop() {
            self.limiter.until_ready().await;
            Metrics::add(&self.counters().requests, 1);
            let events: Vec<&BusinessEvent> = group.iter().map(|p| &p.event).collect();
            let attempt = self.dest.send(&events).await;
            let seqs: Vec<i64> = group.iter().map(|p| p.seq).collect();
            match attempt {
                Attempt::Delivered => {
                    // Events sent in a policy's reduced form keep why (e.g.
                    // Meta's limited events under denied consent).
                    let (noted, plain): (Vec<&PendingEvent>, Vec<&PendingEvent>) = group
                        .iter()
                        .partition(|p| self.dest.delivered_note(&p.event).is_some());
                    let plain: Vec<i64> = plain.iter().map(|p| p.seq).collect();
                    self.finish(&plain, DeliveryState::Delivered, None, true)
                        .await?;
                    for p in noted {
                        let note = self.dest.delivered_note(&p.event).map(str::to_owned);
                        self.finish(&[p.seq], DeliveryState::Delivered, note, true)
                            .await?;
                    }
                    let now = crate::spool::Ledger::now_ms();
                    let latency: i64 = group.iter().map(|p| (now - p.spooled_at_ms).max(0)).sum();
                    Metrics::add(&self.counters().delivered, seqs.len() as u64);
                    Metrics::add(&self.counters().latency_ms_sum, latency as u64);
                    tracing::info!(
                        destination = self.dest.name(),
                        events = seqs.len(),
                        "delivered"
                    );
                }
                Attempt::Rejected { reason } if group.len() > 1 => {
                    tracing::warn!(destination = self.dest.name(), events = group.len(), reason = %reason, "request rejected; bisecting to find the invalid event");
                    let mut first = group;
                    let second = first.split_off(first.len() / 2);
                    stack.push(second);
                    stack.push(first);
                }
                Attempt::Rejected { reason } => {
                    tracing::warn!(destination = self.dest.name(), reason = %reason, "event dead-lettered");
                    self.finish(&seqs, DeliveryState::Dead, Some(reason), true)
                        .await?;
                    Metrics::add(&self.counters().dead, 1);
                }
                Attempt::RetryAfter { delay, reason } => {
                    tracing::warn!(destination = self.dest.name(), retry_in_ms = delay.as_millis() as u64, reason = %reason, "throttled by the platform");
                    Metrics::add(&self.counters().retries, 1);
                    self.retry_all(group, stack, delay, &reason, true).await?;
                    return Ok(Next::Wait);
                }
                Attempt::Transient { reason } => {
                    Metrics::add(&self.counters().retries, 1);
                    // Whatever is left on the stack was never sent and
                    // stays pending as it is.
                    self.transient(group, &reason).await?;
                    return Ok(Next::Wait);
                }
                Attempt::Paused { reason } => {
                    tracing::error!(destination = self.dest.name(), reason = %reason, pause_s = self.pause.as_secs(), "destination paused until the operator fixes it; events are kept");
                    // No attempt counted and no `not_before` stored: after
                    // the operator fixes it and restarts, they go at once.
                    self.retry_all(group, stack, Duration::ZERO, &reason, false)
                        .await?;
                    return Ok(Next::Pause);
                }
            }
        }
        Ok(Next::More)
    }

    /// A transient failure: back off each event, dead-letter those out of attempts.
    async fn transient(&self, group: Vec<PendingEvent>, reason: &str) -> Result<(), SpoolError> {
        let max = self.dest.max_attempts();
        let (dead, retry): (Vec<_>, Vec<_>) =
            group.into_iter().partition(|p| p.attempts + 1 >= max);
        if !dead.is_empty() {
            let seqs: Vec<i64> = dead.iter().map(|p| p.seq).collect();
            let why = format!("gave up after {max} attempts; last error: {reason}");
            tracing::warn!(destination = self.dest.name(), events = seqs.len(), reason = %why, "events dead-lettered");
            Metrics::add(&self.counters().dead, seqs.len() as u64);
            self.finish(&seqs, DeliveryState::Dead, Some(why), true)
                .await?;
        }
        if let Some(first) = retry.first() {
            let delay = backoff(first.attempts);
            tracing::warn!(destination = self.dest.name(), events = retry.len(), retry_in_ms = delay.as_millis() as u64, reason = %reason, "delivery failed; will retry");
            let seqs: Vec<i64> = retry.iter().map(|p| p.seq).collect();
            let not_before = Ledger::now_ms() + delay.as_millis() as i64;
            let name = self.dest.name();
            let reason = reason.to_owned();
            with_ledger(&self.ledger, move |l| {
                l.retry_later(name, &seqs, not_before, &reason, true)
            })
            .await?;
        }
        Ok(())
    }

    /// Puts `group` and everything still on `stack` back to wait `delay`.
    async fn retry_all(
        &self,
        group: Vec<PendingEvent>,
        stack: Vec<Vec<PendingEvent>>,
        delay: Duration,
        reason: &str,
        count_attempt: bool,
    ) -> Result<(), SpoolError> {
        let attempted: Vec<i64> = group.iter().map(|p| p.seq).collect();
        let waiting: Vec<i64> = stack.iter().flatten().map(|p| p.seq).collect();
        let not_before = Ledger::now_ms() + delay.as_millis() as i64;
        let name = self.dest.name();
        let reason = reason.to_owned();
        with_ledger(&self.ledger, move |l| {
            if !attempted.is_empty() {
                l.retry_later(name, &attempted, not_before, &reason, count_attempt)?;
            }
            if !waiting.is_empty() {
                l.retry_later(name, &waiting, not_before, &reason, false)?;
            }
            Ok(())
        })
        .await
    }

    async fn finish(
        &self,
        seqs: &[i64],
        state: DeliveryState,
        reason: Option<String>,
        attempted: bool,
    ) -> Result<(), SpoolError> {
        let seqs = seqs.to_vec();
        let name = self.dest.name();
        with_ledger(&self.ledger, move |l| {
            l.finish(name, &seqs, state, reason.as_deref(), attempted)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventId, Kind, Money};
    use crate::lsn::Lsn;
    use crate::spool::Spool;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }

    /// Rejects any batch holding the poison event, else answers `answer`.
    struct Fake {
        poison: &'static str,
        answer: Attempt,
        batches: Mutex<Vec<usize>>,
        max_attempts: u32,
    }

    impl Destination for Fake {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn max_batch(&self) -> usize {
            100
        }
        fn max_attempts(&self) -> u32 {
            self.max_attempts
        }
        fn requests_per_second(&self) -> NonZeroU32 {
            NonZeroU32::new(1000).unwrap()
        }
        fn skip_reason(&self, event: &BusinessEvent, _now_s: i64) -> Option<String> {
            (event.event_id.as_str() == "purchase-stale").then(|| "too old".to_owned())
        }
        async fn send(&self, events: &[&BusinessEvent]) -> Attempt {
            self.batches.lock().unwrap().push(events.len());
            if events.iter().any(|e| e.event_id.as_str() == self.poison) {
                Attempt::Rejected {
                    reason: "meta error 100/2804016: not hashed".into(),
                }
            } else {
                self.answer.clone()
            }
        }
    }

    fn event(id: &str) -> BusinessEvent {
        BusinessEvent {
            event_id: EventId::new(id).unwrap(),
            kind: Kind::new("transaction.purchase").unwrap(),
            rule: "purchase".into(),
            event_time_s: 1,
            commit_lsn: Lsn(1),
            commit_time_us: 1_000_000,
            value: Some(Money::new("1.00", "USD").unwrap()),
            order_id: None,
            items: Vec::new(),
            user: Default::default(),
            consent: Default::default(),
            click_ids: Default::default(),
            session: Default::default(),
        }
    }

    fn make_lane(
        answer: Attempt,
        max_attempts: u32,
        ids: &[&str],
    ) -> (Lane<Fake>, tempfile::TempDir, Spool) {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("s.sqlite3")).unwrap();
        let mut writer = spool.writer().unwrap();
        writer.set_destinations(vec!["fake"]);
        for id in ids {
            writer.insert_event(&event(id)).unwrap();
        }
        writer.commit(Lsn(10)).unwrap();
        let lane = Lane {
            dest: Fake {
                poison: "purchase-5",
                answer,
                batches: Mutex::new(Vec::new()),
                max_attempts,
            },
            ledger: Arc::new(Mutex::new(spool.ledger().unwrap())),
            limiter: RateLimiter::direct(Quota::per_second(NonZeroU32::new(1000).unwrap())),
            metrics: Arc::new(Metrics::default()),
            counters: |m: &Metrics| &m.meta,
            pause: Duration::from_millis(1),
        };
        (lane, dir, spool)
    }

    async fn drain(lane: &Lane<Fake>) -> Next {
        loop {
            match lane.drain_once().await.unwrap() {
                Next::More => continue,
                other => return other,
            }
        }
    }

    #[tokio::test]
    async fn a_rejected_batch_is_bisected_to_the_bad_event() {
        let ids: Vec<String> = (1..=8).map(|i| format!("purchase-{i}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let (lane, _dir, spool) = make_lane(Attempt::Delivered, 5, &ids);
        assert!(matches!(drain(&lane).await, Next::Wait));
        let counts = spool.ledger().unwrap().counts("fake").unwrap();
        assert_eq!((counts.delivered, counts.dead, counts.pending), (7, 1, 0));
        let dead = spool.ledger().unwrap().outcomes("fake", 10).unwrap();
        assert_eq!(dead[0].event_id, "purchase-5");
        assert!(dead[0].reason.as_deref().unwrap().contains("2804016"));
        // 8 → 4 ok + 4 rejected → 2 rejected + 2 ok → 1 dead + 1 ok.
        assert_eq!(
            *lane.dest.batches.lock().unwrap(),
            vec![8, 4, 4, 2, 1, 1, 2]
        );
    }

    #[tokio::test]
    async fn stale_events_are_skipped_before_batching() {
        let (lane, _dir, spool) = make_lane(
            Attempt::Delivered,
            5,
            &["purchase-1", "purchase-stale", "purchase-2"],
        );
        drain(&lane).await;
        let counts = spool.ledger().unwrap().counts("fake").unwrap();
        assert_eq!((counts.delivered, counts.skipped), (2, 1));
        assert_eq!(*lane.dest.batches.lock().unwrap(), vec![2]);
        let skipped = spool.ledger().unwrap().outcomes("fake", 10).unwrap();
        assert_eq!(skipped[0].state, "skipped");
        assert_eq!(skipped[0].reason.as_deref(), Some("too old"));
    }

    #[tokio::test]
    async fn an_auth_failure_pauses_without_dead_lettering() {
        let paused = Attempt::Paused {
            reason: "meta error 190: token expired".into(),
        };
        let (lane, _dir, spool) = make_lane(paused, 5, &["purchase-1", "purchase-2"]);
        assert!(matches!(drain(&lane).await, Next::Pause));
        let counts = spool.ledger().unwrap().counts("fake").unwrap();
        assert_eq!((counts.pending, counts.dead), (2, 0));
        // No attempt counted and still due now: a fixed token sends at once.
        let due = spool
            .ledger()
            .unwrap()
            .pending("fake", Ledger::now_ms(), 10)
            .unwrap();
        assert_eq!(due.len(), 2);
        assert!(due.iter().all(|p| p.attempts == 0));
    }

    #[tokio::test]
    async fn transient_failures_back_off_then_dead_letter_at_the_cap() {
        let flaky = Attempt::Transient {
            reason: "HTTP 503".into(),
        };
        let (lane, _dir, spool) = make_lane(flaky.clone(), 3, &["purchase-1"]);
        assert!(matches!(drain(&lane).await, Next::Wait));
        let ledger = spool.ledger().unwrap();
        assert_eq!(ledger.counts("fake").unwrap().pending, 1);
        assert!(
            ledger
                .pending("fake", Ledger::now_ms(), 10)
                .unwrap()
                .is_empty(),
            "not backed off"
        );
        let later = Ledger::now_ms() + 60_000;
        assert_eq!(ledger.pending("fake", later, 10).unwrap()[0].attempts, 1);

        let (lane2, _dir2, spool2) = make_lane(flaky, 1, &["purchase-1"]);
        drain(&lane2).await;
        let out = spool2.ledger().unwrap().outcomes("fake", 10).unwrap();
        assert_eq!(out[0].state, "dead");
        assert!(out[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("gave up after 1 attempts; last error: HTTP 503"));
    }
}
