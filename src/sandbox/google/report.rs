//! The report types: what tests and demos read back from the Google sandbox.
//!
//! Input: built by the store from its state. Output: serde types, served as
//! JSON by `GET /_sandbox/google/report` and returned by
//! [`super::GoogleSandbox::report`]. Invariant: nothing here holds a token,
//! secret or request body other than the accepted events themselves (which
//! carry only hashed identifiers, as Google receives them).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One event the ingest endpoint accepted for one conversion action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcceptedEvent {
    /// `requestId` of the ingest call that first carried it.
    pub request_id: String,
    /// Receipt time (sandbox clock), RFC 3339.
    pub received_at: String,
    /// Its `transactionId` (the dedup key).
    pub transaction_id: String,
    /// The event object exactly as first received.
    pub event: Value,
    /// Effective `adUserData` (event-level over request-level), e.g. `CONSENT_GRANTED`.
    pub ad_user_data: String,
    /// Effective `adPersonalization`.
    pub ad_personalization: String,
    /// Current value: the latest copy's `conversionValue` (restatements overwrite).
    pub conversion_value: Option<f64>,
    /// Current currency (restatements overwrite).
    pub currency: Option<String>,
    /// Later copies with the same `transactionId`, restatements included.
    pub duplicates: u64,
    /// Later copies whose value or currency differed, as received.
    pub restatements: Vec<Value>,
}

/// One request answered with an error (the message names fields, never values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// Endpoint name, e.g. `ingest`.
    pub endpoint: String,
    /// HTTP status.
    pub status: u16,
    /// Canonical status (`INVALID_ARGUMENT`) or OAuth error (`invalid_grant`).
    pub status_text: String,
    /// The message returned.
    pub message: String,
    /// Whether an injected fault caused it.
    pub fault: bool,
    /// When (sandbox clock), RFC 3339.
    pub at: String,
}

/// Request counters of one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EndpointReport {
    /// Requests answered.
    pub total: u64,
    /// Requests per HTTP status code.
    pub by_status: BTreeMap<String, u64>,
    /// Most requests seen within any one-second window.
    pub peak_requests_per_second: u64,
}

/// A conversion action as the report lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversionActionReport {
    /// Numeric id.
    pub id: String,
    /// Resource name.
    pub resource_name: String,
    /// Name.
    pub name: String,
    /// Category enum name.
    pub category: String,
    /// Type enum name.
    #[serde(rename = "type")]
    pub action_type: String,
    /// Status enum name.
    pub status: String,
    /// Creation time (sandbox clock), RFC 3339.
    pub created_at: String,
    /// Whether uploads are still refused because it is younger than 6 hours.
    pub on_hold: bool,
}

/// Body of `GET /_sandbox/google/report`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoogleReport {
    /// Accepted events per conversion action id, in receipt order, one per `transactionId`.
    pub accepted: BTreeMap<String, Vec<AcceptedEvent>>,
    /// Copies not stored again because their `transactionId` was already recorded.
    pub deduplicated: u64,
    /// Ingest requests with `validateOnly: true` that passed (nothing stored).
    pub validate_only_requests: u64,
    /// Every error answer, oldest first.
    pub rejections: Vec<Rejection>,
    /// Counters per endpoint name.
    pub requests: BTreeMap<String, EndpointReport>,
    /// Access tokens issued by `/token`.
    pub tokens_issued: u64,
    /// Conversion actions of the operating account.
    pub conversion_actions: Vec<ConversionActionReport>,
    /// Faults that fired.
    pub faults_fired: u64,
    /// Requests still to be hit by queued faults.
    pub pending_faults: u64,
}

/// A conversion action id the sandbox does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownConversionAction(pub String);

impl std::fmt::Display for UnknownConversionAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no conversion action with id {}", self.0)
    }
}

impl std::error::Error for UnknownConversionAction {}
