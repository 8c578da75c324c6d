//! The business event: what derivation produces and the spool stores.
//!
//! A [`BusinessEvent`] holds only hashed identifiers (see `identity`), never
//! raw PII, so it can be written to the spool and read back by delivery as
//! is. Its `event_id` is deterministic (DESIGN.md §4): the same row change
//! always yields the same ID, across retries, restarts and replays.

use serde::{Deserialize, Serialize};

use super::identity::MetaUserHashes;
use crate::lsn::Lsn;

/// Canonical event kinds (DESIGN.md §3) and their platform names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    /// `transaction.purchase`
    #[serde(rename = "transaction.purchase")]
    Purchase,
}

impl EventKind {
    /// The canonical (commerce platform) name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Purchase => "transaction.purchase",
        }
    }

    /// Meta's standard `event_name`.
    pub fn meta_event_name(self) -> &'static str {
        match self {
            EventKind::Purchase => "Purchase",
        }
    }

    /// Real-time kinds are sent as soon as the lane is free; the others are
    /// batched (DESIGN.md §5).
    pub fn is_real_time(self) -> bool {
        matches!(self, EventKind::Purchase)
    }
}

/// A derived conversion, ready to spool. Contains no raw PII.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BusinessEvent {
    /// Deterministic ID shared with the browser pixel, e.g. `purchase-42`.
    pub event_id: String,
    /// What happened.
    pub kind: EventKind,
    /// Business time (Unix seconds): the configured column, else commit time.
    pub event_time_s: i64,
    /// Commit LSN of the transaction the event came from.
    pub commit_lsn: Lsn,
    /// Monetary value as exact decimal text (never a float in the spool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// ISO 4217 code, upper case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// The order / transaction ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// Hashed identifiers, normalized per Meta's rules.
    #[serde(default)]
    pub meta_user: MetaUserHashes,
}

impl Serialize for Lsn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
