//! Delivery: spooled events → platform requests → ledger outcomes.
//!
//! Inputs: pending ledger rows of one destination and lane, in spool order;
//! a wake-up from the apply loop after each spool commit with new events.
//! Outputs: HTTP requests, and one ledger update per attempt.
//!
//! Invariants (DESIGN.md §2.5, §2.6, §5):
//! - Every event ends delivered, dead-lettered with the platform's reason,
//!   or skipped with the policy's reason.
//! - Policy checks (the platform's window, consent policy, a missing
//!   mapping) run before batching, so one stale event never rejects a batch;
//!   a rejected batch is bisected to find the bad event.
//! - One rate-limiter per destination account, shared by its lanes; one
//!   token per attempt, retries included.
//! - Transient failures are retried with capped, jittered backoff for as long
//!   as the event is inside the platform's window (or the configured
//!   ceiling), not a fixed count; throttling never uses up that budget.
//! - Auth failures pause the destination and alarm; they do not dead-letter.
//! - Retries resend the same `event_id`s: sending is idempotent by
//!   construction, the platforms deduplicate.
//!
//! Layout (vector's sinks as the model: batch → build → send → acknowledge):
//! [`lane`] owns batching, the limiter, retries and the ledger; [`http`]
//! sends and maps transport errors; a platform module ([`meta`], [`google`])
//! builds a request from a batch and classifies the answer.

pub mod google;
pub mod http;
mod lane;
pub mod meta;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::config::DeliveryConfig;
use crate::event::{BusinessEvent, LaneKind};
use crate::spool::{Spool, SpoolError};
use crate::telemetry::Metrics;

pub use lane::{backoff, Limiter};

/// The outcome of one attempt, as classified by the platform module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The platform accepted every event; `receipt` is kept in the ledger
    /// (Data Manager's `requestId`).
    Delivered {
        /// The platform's receipt, if any.
        receipt: Option<String>,
    },
    /// The platform rejected the request as invalid: bisect, then dead-letter.
    Rejected {
        /// The platform's code and message.
        reason: String,
    },
    /// Throttled or out of quota: retry after the platform's delay without
    /// counting an attempt.
    RetryAfter {
        /// How long to wait.
        delay: Duration,
        /// The platform's code and message.
        reason: String,
    },
    /// A transient failure (5xx, timeout, network): back off and retry.
    Transient {
        /// What happened.
        reason: String,
    },
    /// The destination cannot work until an operator acts (bad token,
    /// revoked grant): pause the destination, keep the events.
    Paused {
        /// What is wrong and the remedy.
        reason: String,
    },
}

impl Attempt {
    /// Delivered without a receipt.
    pub const DELIVERED: Attempt = Attempt::Delivered { receipt: None };
}

/// A platform a lane delivers to: policy, request building and
/// classification. Sending goes through [`http`].
pub trait Destination: Send + Sync + 'static {
    /// Ledger name, e.g. `meta`.
    fn name(&self) -> &'static str;
    /// Rate, batching, lanes and retry settings.
    fn delivery(&self) -> &DeliveryConfig;
    /// How long after its `event_time` the platform still accepts `event`.
    fn window(&self, event: &BusinessEvent) -> Duration;
    /// `Some(reason)` when policy says not to send this event at `now_s`.
    fn skip_reason(&self, event: &BusinessEvent, now_s: i64) -> Option<String>;
    /// A time (ms) before which the event must not be sent (Google's
    /// 6-hour rule for a new conversion action); not a failure.
    fn hold_until_ms(&self, _event: &BusinessEvent) -> Option<i64> {
        None
    }
    /// A note recorded with a delivered event that was sent in a reduced
    /// form by policy (the ledger's reason column), e.g. "sent limited".
    fn delivered_note(&self, _event: &BusinessEvent) -> Option<&'static str> {
        None
    }
    /// Sends one request with these events.
    fn send(&self, events: &[&BusinessEvent]) -> impl Future<Output = Attempt> + Send;
}

/// The lanes of one destination, started.
#[derive(Debug)]
pub struct Lanes {
    /// Lane tasks.
    pub tasks: Vec<JoinHandle<()>>,
    /// One wake-up per lane, notified by the apply loop after each commit
    /// with new events (`notify_one` keeps a permit for a busy lane).
    pub wakes: Vec<Arc<Notify>>,
}

/// Starts a destination's real-time and batched lanes, sharing one limiter.
pub fn spawn<D: Destination>(
    dest: D,
    spool: &Spool,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> Result<Lanes, SpoolError> {
    let dest = Arc::new(dest);
    let limiter = Arc::new(Limiter::new(dest.delivery().requests_per_second));
    metrics.delivery.register(dest.name());
    let mut tasks = Vec::new();
    let mut wakes = Vec::new();
    for kind in [LaneKind::RealTime, LaneKind::Batched] {
        let wake = Arc::new(Notify::new());
        wakes.push(wake.clone());
        tasks.push(tokio::spawn(lane::run(
            dest.clone(),
            kind,
            spool.delivery_ledger()?,
            limiter.clone(),
            metrics.clone(),
            wake,
            shutdown.clone(),
        )));
    }
    Ok(Lanes { tasks, wakes })
}
