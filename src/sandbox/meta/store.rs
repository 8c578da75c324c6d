//! What the Meta sandbox keeps: accepted events, counters and queued faults.
//!
//! Input: accepted batches (with receipt time and `test_event_code`),
//! rejections, fault specs. Output: [`MetaEventsReport`] snapshots with the
//! raw receipts and Meta's deduplicated view.
//! Invariant: the store only changes under the [`super::super::Sandbox`]
//! mutex, and no method here awaits, so the lock is never held across `.await`.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Meta deduplicates an `event_name` + `event_id` pair within 48 hours of the first copy.
pub const DEDUP_WINDOW_MS: u64 = 48 * 3600 * 1000;

/// One accepted event with the sandbox's receipt metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// The event object exactly as received.
    #[serde(flatten)]
    pub event: Map<String, Value>,
    /// Receipt time, Unix milliseconds.
    pub received_at_ms: u64,
    /// The request's `test_event_code`, if any.
    pub test_event_code: Option<String>,
}

impl StoredEvent {
    /// `event_name`, if a string.
    pub fn event_name(&self) -> Option<&str> {
        self.event.get("event_name").and_then(Value::as_str)
    }

    /// `event_id`, if a string.
    pub fn event_id(&self) -> Option<&str> {
        self.event.get("event_id").and_then(Value::as_str)
    }
}

/// Code and subcode of one rejected request (the message names fields, never values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// HTTP status returned.
    pub status: u16,
    /// Graph `code`.
    pub code: u32,
    /// Graph `error_subcode`.
    pub error_subcode: Option<u32>,
    /// Graph `message` (plus `error_user_msg` when present).
    pub message: String,
}

/// Body of `GET /_sandbox/meta/events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetaEventsReport {
    /// Every accepted event, in receipt order, duplicates included.
    pub received: Vec<StoredEvent>,
    /// The events Meta would count: duplicates of `event_name` + `event_id` within 48 h removed.
    pub deduplicated: Vec<StoredEvent>,
    /// Requests answered 200.
    pub requests: u64,
    /// Requests rejected by validation, token or pixel checks.
    pub rejected: u64,
    /// Requests failed by injected faults.
    pub faulted: u64,
    /// Why each rejected request failed, oldest first.
    pub rejections: Vec<Rejection>,
    /// Arrival time (Unix ms) of every request to the events edge,
    /// faulted and rejected ones included: the rate a client really sent.
    pub request_times_ms: Vec<u64>,
}

/// A queued fault: the next `remaining` event requests fail and/or are delayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// HTTP status to fail with (429 or 5xx); `None` = only delay.
    pub status: Option<u16>,
    /// `Retry-After` for 429.
    pub retry_after_s: u64,
    /// Delay before answering, in milliseconds.
    pub delay_ms: u64,
    /// How many more requests this fault applies to.
    pub remaining: u32,
}

/// The Meta half of the sandbox state.
#[derive(Debug, Default)]
pub struct MetaStore {
    received: Vec<StoredEvent>,
    requests: u64,
    rejected: u64,
    faulted: u64,
    rejections: Vec<Rejection>,
    faults: VecDeque<Fault>,
    request_times_ms: Vec<u64>,
}

impl MetaStore {
    /// Appends an accepted batch.
    pub fn accept(&mut self, events: &[Value], received_at_ms: u64, test_event_code: Option<&str>) {
        self.requests += 1;
        self.received.extend(events.iter().map(|e| StoredEvent {
            event: e.as_object().cloned().unwrap_or_default(),
            received_at_ms,
            test_event_code: test_event_code.map(str::to_owned),
        }));
    }

    /// Counts a rejected request.
    pub fn reject(&mut self, rejection: Rejection) {
        self.rejected += 1;
        self.rejections.push(rejection);
    }

    /// Counts a request failed by an injected fault.
    pub fn count_fault(&mut self) {
        self.faulted += 1;
    }

    /// Queues a fault behind any already queued.
    pub fn push_fault(&mut self, fault: Fault) {
        self.faults.push_back(fault);
    }

    /// Drops all queued faults.
    pub fn clear_faults(&mut self) {
        self.faults.clear();
    }

    /// Requests still affected by queued faults.
    pub fn pending_faults(&self) -> u64 {
        self.faults.iter().map(|f| u64::from(f.remaining)).sum()
    }

    /// Consumes one use of the oldest queued fault.
    pub fn take_fault(&mut self) -> Option<Fault> {
        let front = self.faults.front_mut()?;
        front.remaining -= 1;
        let fault = front.clone();
        if front.remaining == 0 {
            self.faults.pop_front();
        }
        Some(fault)
    }

    /// Forgets all events, counters and faults.
    pub fn clear(&mut self) {
        *self = MetaStore::default();
    }

    /// Notes a request's arrival.
    pub fn arrived(&mut self, at_ms: u64) {
        self.request_times_ms.push(at_ms);
    }

    /// A snapshot for tests and the read-back endpoint.
    pub fn report(&self) -> MetaEventsReport {
        MetaEventsReport {
            received: self.received.clone(),
            deduplicated: deduplicate(&self.received),
            requests: self.requests,
            rejected: self.rejected,
            faulted: self.faulted,
            rejections: self.rejections.clone(),
            request_times_ms: self.request_times_ms.clone(),
        }
    }
}

/// Meta's primary dedup rule (spec §6): a copy with the same `event_name` and
/// `event_id` arriving within 48 h of the first kept copy is dropped. Events
/// without `event_id` are never deduplicated. The sandbox has one pixel, so
/// the "same Pixel ID" condition always holds.
fn deduplicate(received: &[StoredEvent]) -> Vec<StoredEvent> {
    let mut first_seen: HashMap<(&str, &str), u64> = HashMap::new();
    let mut kept = Vec::new();
    for ev in received {
        if let (Some(name), Some(id)) = (ev.event_name(), ev.event_id()) {
            match first_seen.get(&(name, id)) {
                Some(&t) if ev.received_at_ms.saturating_sub(t) < DEDUP_WINDOW_MS => continue,
                _ => {
                    first_seen.insert((name, id), ev.received_at_ms);
                }
            }
        }
        kept.push(ev.clone());
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dedup_within_48h_only_and_only_with_event_id() {
        let mut store = MetaStore::default();
        let a = json!({"event_name": "Purchase", "event_id": "o-1"});
        let b = json!({"event_name": "Purchase", "event_id": "o-2"});
        let other_name = json!({"event_name": "AddToCart", "event_id": "o-1"});
        let no_id = json!({"event_name": "PageView"});
        store.accept(&[a.clone(), b, other_name, no_id.clone()], 1_000, None);
        store.accept(&[a.clone(), no_id], 2_000, Some("TEST1"));
        store.accept(std::slice::from_ref(&a), 1_000 + DEDUP_WINDOW_MS, None);

        let report = store.report();
        assert_eq!(report.received.len(), 7);
        assert_eq!(report.requests, 3);
        let ids: Vec<_> = report
            .deduplicated
            .iter()
            .map(|e| (e.event_name(), e.event_id(), e.received_at_ms))
            .collect();
        assert_eq!(
            ids,
            [
                (Some("Purchase"), Some("o-1"), 1_000),
                (Some("Purchase"), Some("o-2"), 1_000),
                (Some("AddToCart"), Some("o-1"), 1_000),
                (Some("PageView"), None, 1_000),
                (Some("PageView"), None, 2_000),
                (Some("Purchase"), Some("o-1"), 1_000 + DEDUP_WINDOW_MS),
            ]
        );
    }

    #[test]
    fn faults_are_consumed_in_order() {
        let mut store = MetaStore::default();
        store.push_fault(Fault {
            status: Some(500),
            retry_after_s: 1,
            delay_ms: 0,
            remaining: 2,
        });
        store.push_fault(Fault {
            status: None,
            retry_after_s: 1,
            delay_ms: 5,
            remaining: 1,
        });
        assert_eq!(store.pending_faults(), 3);
        assert_eq!(store.take_fault().and_then(|f| f.status), Some(500));
        assert_eq!(store.take_fault().and_then(|f| f.status), Some(500));
        assert_eq!(store.take_fault().map(|f| f.delay_ms), Some(5));
        assert_eq!(store.take_fault(), None);
    }
}
