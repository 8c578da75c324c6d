//! Delivery: spooled events → platform requests → ledger outcomes.
//!
//! Inputs: pending ledger rows of one destination, in spool order; a wake-up
//! from the apply loop after each spool commit with new events.
//! Outputs: HTTP requests, and one ledger update per attempt.
//!
//! Invariants (DESIGN.md §2.5, §2.6, §5):
//! - Every event ends delivered, dead-lettered with the platform's reason, or
//!   skipped with the policy's reason; attempts are capped.
//! - Policy checks (e.g. Meta's 7-day window) run before batching, so one
//!   stale event never rejects a batch; a rejected batch is bisected to find
//!   the bad event.
//! - One rate-limiter token per attempt, retries included.
//! - Auth failures pause the lane and alarm; they do not dead-letter events.
//! - Retries resend the same `event_id`s: sending is idempotent by
//!   construction, the platforms deduplicate.
//!
//! Shared mechanics live in [`lane`]; each platform supplies request
//! building and error classification ([`meta`]).

pub mod google;
mod lane;
pub mod meta;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::config::MetaConfig;
use crate::event::BusinessEvent;
use crate::spool::{Spool, SpoolError};
use crate::telemetry::Metrics;

pub use lane::backoff;

/// The outcome of one attempt, as classified by the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The platform accepted every event.
    Delivered,
    /// The platform rejected the request as invalid: bisect, then dead-letter.
    Rejected {
        /// The platform's code and message.
        reason: String,
    },
    /// Throttled: retry after the platform's delay.
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
    /// missing pixel): pause the lane, keep the events.
    Paused {
        /// What is wrong and the remedy.
        reason: String,
    },
}

/// A platform a lane delivers to.
pub trait Destination: Send + Sync + 'static {
    /// Ledger name, e.g. `meta`.
    fn name(&self) -> &'static str;
    /// Events per request.
    fn max_batch(&self) -> usize;
    /// Attempts before an event is dead-lettered.
    fn max_attempts(&self) -> u32;
    /// Requests per second.
    fn requests_per_second(&self) -> std::num::NonZeroU32;
    /// `Some(reason)` when policy says not to send this event at `now_s`.
    fn skip_reason(&self, event: &BusinessEvent, now_s: i64) -> Option<String>;
    /// A note recorded with a delivered event that was sent in a reduced
    /// form by policy (the ledger's reason column), e.g. "sent limited".
    fn delivered_note(&self, _event: &BusinessEvent) -> Option<&'static str> {
        None
    }
    /// Sends one request with these events.
    fn send(&self, events: &[&BusinessEvent]) -> impl Future<Output = Attempt> + Send;
}

/// Starts the Meta lane.
pub fn spawn_meta_lane(
    config: MetaConfig,
    spool: Spool,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
    shutdown: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, SpoolError> {
    let ledger = spool.ledger()?;
    let destination = meta::MetaDestination::new(config);
    Ok(tokio::spawn(lane::run(
        destination,
        ledger,
        metrics,
        |m: &Metrics| &m.meta,
        wake,
        shutdown,
    )))
}
