//! What the Google sandbox keeps: tokens, conversion actions, accepted events,
//! request statuses, counters and queued faults — plus the report types.
//!
//! Input: calls from the handlers (already validated data) and the test
//! hooks. Output: [`GoogleReport`] snapshots. Invariants: the store only
//! changes under the sandbox mutex and nothing here awaits; an event is
//! stored once per (conversion action, `transactionId`) — later copies only
//! bump counters (Data Manager dedups on `transactionId` within an action,
//! spec §2.4 and the conversion-adjustments guide); time is "wall clock +
//! test offset", read through [`Store::now_ms`].

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde_json::Value;

use super::error::{Api, AuthProblem};
use super::fault::{FaultQueue, Fired, GoogleEndpoint, GoogleFault};
use super::report::{
    AcceptedEvent, ConversionActionReport, EndpointReport, GoogleReport, Rejection,
    UnknownConversionAction,
};
use super::{ids, time};

/// Google asks for a 6-hour wait after creating a conversion action before
/// uploading to it (`TOO_RECENT_CONVERSION_ACTION`, conversion_upload_error.proto v22).
pub const ACTION_HOLD_MS: i64 = 6 * 3600 * 1000;
/// Click-through lookback used when an action does not set one (per the brief;
/// Google's UI default is 30 days and its maximum 90, spec §5).
pub const DEFAULT_CLICK_LOOKBACK_DAYS: i64 = 90;
/// Seeded actions look this old, far past the hold.
pub(super) const SEED_AGE_MS: i64 = 30 * 86_400 * 1000;
/// First id handed to a new conversion action.
const FIRST_ACTION_ID: u64 = 7_000_000_001;

/// One conversion action of the operating account.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Action {
    /// Numeric id (`conversion_action.id`).
    pub id: u64,
    /// Owning customer id (digits).
    pub customer_id: String,
    /// `name`, unique among non-removed actions.
    pub name: String,
    /// `ConversionActionCategory` name.
    pub category: String,
    /// `ConversionActionType` name.
    pub action_type: String,
    /// `ConversionActionStatus` name.
    pub status: String,
    /// `ConversionActionCountingType` name.
    pub counting_type: String,
    /// `primary_for_goal`.
    pub primary_for_goal: bool,
    /// `include_in_conversions_metric`.
    pub include_in_conversions_metric: bool,
    /// `click_through_lookback_window_days`.
    pub click_through_days: i64,
    /// `view_through_lookback_window_days`.
    pub view_through_days: i64,
    /// `value_settings.default_value`.
    pub default_value: Option<f64>,
    /// `value_settings.default_currency_code`.
    pub default_currency_code: Option<String>,
    /// `value_settings.always_use_default_value`.
    pub always_use_default_value: Option<bool>,
    /// `attribution_model_settings.attribution_model`.
    pub attribution_model: Option<String>,
    /// When it was created (sandbox clock, Unix ms).
    pub created_at_ms: i64,
}

impl Action {
    /// `customers/{customer_id}/conversionActions/{id}`.
    pub(super) fn resource_name(&self) -> String {
        format!(
            "customers/{}/conversionActions/{}",
            self.customer_id, self.id
        )
    }
}

/// Per-destination outcome kept for `requestStatus:retrieve`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct DestinationStatus {
    /// The destination object as received.
    pub destination: Value,
    /// Events routed to it.
    pub record_count: u64,
    /// Of those, events with `adUserData` denied (reported as processing errors).
    pub denied_consent: u64,
}

/// What [`Store::accept`] did with one event copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Accepted {
    /// First copy: stored.
    New,
    /// Same `transactionId` seen before: counted, not stored.
    Duplicate,
}

/// One event to store, already validated.
#[derive(Debug)]
pub(super) struct NewEvent<'a> {
    /// Target conversion action id.
    pub action_id: &'a str,
    /// Dedup key.
    pub transaction_id: &'a str,
    /// The event JSON as received.
    pub event: &'a Value,
    /// Effective consent values.
    pub ad_user_data: &'a str,
    /// Effective consent values.
    pub ad_personalization: &'a str,
    /// `conversionValue`, if sent.
    pub conversion_value: Option<f64>,
    /// `currency`, if sent.
    pub currency: Option<&'a str>,
}

#[derive(Debug, Default)]
struct EndpointStats {
    total: u64,
    by_status: BTreeMap<u16, u64>,
    window: VecDeque<i64>,
    peak: u64,
}

/// The Google half of the sandbox state.
#[derive(Debug)]
pub(super) struct Store {
    clock_offset_ms: i64,
    tokens: HashMap<String, i64>,
    tokens_issued: u64,
    actions: BTreeMap<u64, Action>,
    next_action_id: u64,
    accepted: BTreeMap<String, Vec<AcceptedEvent>>,
    dedup: HashMap<(String, String), usize>,
    deduplicated: u64,
    validate_only_requests: u64,
    statuses: HashMap<String, Vec<DestinationStatus>>,
    rejections: Vec<Rejection>,
    endpoints: BTreeMap<GoogleEndpoint, EndpointStats>,
    faults: FaultQueue,
    faults_fired: u64,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            clock_offset_ms: 0,
            tokens: HashMap::new(),
            tokens_issued: 0,
            actions: BTreeMap::new(),
            next_action_id: FIRST_ACTION_ID,
            accepted: BTreeMap::new(),
            dedup: HashMap::new(),
            deduplicated: 0,
            validate_only_requests: 0,
            statuses: HashMap::new(),
            rejections: Vec::new(),
            endpoints: BTreeMap::new(),
            faults: FaultQueue::default(),
            faults_fired: 0,
        }
    }
}

impl Store {
    /// The sandbox's "now": wall clock plus the test offset, Unix ms.
    pub(super) fn now_ms(&self) -> i64 {
        time::wall_ms().saturating_add(self.clock_offset_ms)
    }

    /// Moves the sandbox clock forward.
    pub(super) fn advance_clock(&mut self, by_ms: i64) {
        self.clock_offset_ms = self.clock_offset_ms.saturating_add(by_ms);
    }

    /// Issues a bearer token valid for `ttl_ms`.
    pub(super) fn issue_token(&mut self, ttl_ms: i64, now: i64) -> String {
        let token = ids::access_token();
        self.tokens
            .insert(token.clone(), now.saturating_add(ttl_ms));
        self.tokens_issued += 1;
        token
    }

    /// How many tokens `/token` has issued.
    pub(super) fn tokens_issued(&self) -> u64 {
        self.tokens_issued
    }

    /// Checks a bearer token.
    pub(super) fn check_token(&self, token: &str, now: i64) -> Result<(), AuthProblem> {
        match self.tokens.get(token) {
            None => Err(AuthProblem::Invalid),
            Some(&expires) if expires <= now => Err(AuthProblem::Expired),
            Some(_) => Ok(()),
        }
    }

    /// Expires every issued token (they stay known, so answers say "expired").
    pub(super) fn expire_tokens(&mut self) {
        let past = self.now_ms() - 1;
        for expires in self.tokens.values_mut() {
            *expires = past;
        }
    }

    /// The next free action id (not yet reserved).
    pub(super) fn next_action_id(&mut self) -> u64 {
        let id = self.next_action_id;
        self.next_action_id += 1;
        id
    }

    /// Stores an action built by the mutate endpoint.
    pub(super) fn insert_action(&mut self, action: Action) {
        self.actions.insert(action.id, action);
    }

    /// Creates an enabled `UPLOAD_CLICKS` action with defaults; returns its id.
    pub(super) fn add_action(
        &mut self,
        customer_id: &str,
        name: &str,
        category: &str,
        created_at_ms: i64,
    ) -> u64 {
        let id = self.next_action_id();
        self.insert_action(Action {
            id,
            customer_id: customer_id.to_owned(),
            name: name.to_owned(),
            category: category.to_owned(),
            action_type: "UPLOAD_CLICKS".into(),
            status: "ENABLED".into(),
            counting_type: "MANY_PER_CLICK".into(),
            primary_for_goal: true,
            include_in_conversions_metric: true,
            click_through_days: DEFAULT_CLICK_LOOKBACK_DAYS,
            view_through_days: 1,
            default_value: None,
            default_currency_code: None,
            always_use_default_value: None,
            attribution_model: None,
            created_at_ms,
        });
        id
    }

    /// All actions, by id.
    pub(super) fn actions(&self) -> impl Iterator<Item = &Action> {
        self.actions.values()
    }

    /// One action by id.
    pub(super) fn action_mut(&mut self, id: u64) -> Option<&mut Action> {
        self.actions.get_mut(&id)
    }

    /// Snapshot of the actions, for validation outside the lock-free path.
    pub(super) fn action_map(&self) -> HashMap<String, Action> {
        self.actions
            .values()
            .map(|a| (a.id.to_string(), a.clone()))
            .collect()
    }

    /// Moves an action's creation time into the past.
    pub(super) fn backdate_action(
        &mut self,
        id: &str,
        by_ms: i64,
    ) -> Result<(), UnknownConversionAction> {
        let action = id
            .parse::<u64>()
            .ok()
            .and_then(|n| self.actions.get_mut(&n))
            .ok_or_else(|| UnknownConversionAction(id.to_owned()))?;
        action.created_at_ms = action.created_at_ms.saturating_sub(by_ms);
        Ok(())
    }

    /// Stores one event copy, or counts it as a duplicate of the recorded one.
    pub(super) fn accept(&mut self, new: &NewEvent<'_>, request_id: &str, now: i64) -> Accepted {
        let key = (new.action_id.to_owned(), new.transaction_id.to_owned());
        let list = self.accepted.entry(new.action_id.to_owned()).or_default();
        if let Some(&i) = self.dedup.get(&key) {
            let stored = &mut list[i];
            stored.duplicates += 1;
            let value_changed =
                new.conversion_value.is_some() && new.conversion_value != stored.conversion_value;
            let currency_changed =
                new.currency.is_some() && new.currency != stored.currency.as_deref();
            if value_changed || currency_changed {
                // Data Manager treats a matching transactionId as an adjustment:
                // value and currency are overwritten (conversion-adjustments guide).
                stored.conversion_value = new.conversion_value.or(stored.conversion_value);
                if let Some(c) = new.currency {
                    stored.currency = Some(c.to_owned());
                }
                stored.restatements.push(new.event.clone());
            }
            self.deduplicated += 1;
            return Accepted::Duplicate;
        }
        self.dedup.insert(key, list.len());
        list.push(AcceptedEvent {
            request_id: request_id.to_owned(),
            received_at: time::format_rfc3339(now),
            transaction_id: new.transaction_id.to_owned(),
            event: new.event.clone(),
            ad_user_data: new.ad_user_data.to_owned(),
            ad_personalization: new.ad_personalization.to_owned(),
            conversion_value: new.conversion_value,
            currency: new.currency.map(str::to_owned),
            duplicates: 0,
            restatements: Vec::new(),
        });
        Accepted::New
    }

    /// Counts a successful `validateOnly` ingest.
    pub(super) fn count_validate_only(&mut self) {
        self.validate_only_requests += 1;
    }

    /// Keeps per-destination outcomes for `requestStatus:retrieve`.
    pub(super) fn put_status(&mut self, request_id: String, statuses: Vec<DestinationStatus>) {
        self.statuses.insert(request_id, statuses);
    }

    /// Per-destination outcomes of an earlier ingest.
    pub(super) fn status(&self, request_id: &str) -> Option<&[DestinationStatus]> {
        self.statuses.get(request_id).map(Vec::as_slice)
    }

    /// Counts an answered request.
    pub(super) fn count(&mut self, endpoint: GoogleEndpoint, status: u16, now: i64) {
        let stats = self.endpoints.entry(endpoint).or_default();
        stats.total += 1;
        *stats.by_status.entry(status).or_default() += 1;
        stats.window.push_back(now);
        while stats.window.front().is_some_and(|&t| t <= now - 1000) {
            stats.window.pop_front();
        }
        stats.peak = stats.peak.max(stats.window.len() as u64);
    }

    /// Records an error answer.
    pub(super) fn reject(&mut self, rejection: Rejection) {
        self.rejections.push(rejection);
    }

    /// Queues a fault.
    pub(super) fn push_fault(&mut self, fault: GoogleFault) {
        self.faults.push(fault);
    }

    /// Requests still to be hit by queued faults.
    pub(super) fn pending_faults(&self) -> u64 {
        self.faults.pending()
    }

    /// Drops queued faults.
    pub(super) fn clear_faults(&mut self) {
        self.faults.clear();
    }

    /// Fires the oldest fault queued for `endpoint`, if any.
    pub(super) fn take_fault(&mut self, endpoint: GoogleEndpoint, api: Api<'_>) -> Option<Fired> {
        let fired = self.faults.take(endpoint, api)?;
        self.faults_fired += 1;
        Some(fired)
    }

    /// Forgets events, statuses, rejections, counters and faults; keeps actions, tokens, clock.
    pub(super) fn clear(&mut self) {
        self.accepted.clear();
        self.dedup.clear();
        self.deduplicated = 0;
        self.validate_only_requests = 0;
        self.statuses.clear();
        self.rejections.clear();
        self.endpoints.clear();
        self.faults.clear();
        self.faults_fired = 0;
        self.tokens_issued = 0;
    }

    /// A snapshot for tests and the report hook.
    pub(super) fn report(&self, now: i64) -> GoogleReport {
        GoogleReport {
            accepted: self.accepted.clone(),
            deduplicated: self.deduplicated,
            validate_only_requests: self.validate_only_requests,
            rejections: self.rejections.clone(),
            requests: self
                .endpoints
                .iter()
                .map(|(ep, s)| {
                    let report = EndpointReport {
                        total: s.total,
                        by_status: s
                            .by_status
                            .iter()
                            .map(|(k, v)| (k.to_string(), *v))
                            .collect(),
                        peak_requests_per_second: s.peak,
                    };
                    (ep.name().to_owned(), report)
                })
                .collect(),
            tokens_issued: self.tokens_issued,
            conversion_actions: self
                .actions
                .values()
                .map(|a| ConversionActionReport {
                    id: a.id.to_string(),
                    resource_name: a.resource_name(),
                    name: a.name.clone(),
                    category: a.category.clone(),
                    action_type: a.action_type.clone(),
                    status: a.status.clone(),
                    created_at: time::format_rfc3339(a.created_at_ms),
                    on_hold: now - a.created_at_ms < ACTION_HOLD_MS,
                })
                .collect(),
            faults_fired: self.faults_fired,
            pending_faults: self.faults.pending(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event<'a>(action: &'a str, tx: &'a str, v: &'a Value, value: Option<f64>) -> NewEvent<'a> {
        NewEvent {
            action_id: action,
            transaction_id: tx,
            event: v,
            ad_user_data: "CONSENT_GRANTED",
            ad_personalization: "CONSENT_STATUS_UNSPECIFIED",
            conversion_value: value,
            currency: Some("EUR"),
        }
    }

    #[test]
    fn dedups_per_action_and_keeps_restatements() {
        let mut s = Store::default();
        let v = json!({"transactionId": "o-1"});
        assert_eq!(
            s.accept(&event("1", "o-1", &v, Some(10.0)), "r1", 0),
            Accepted::New
        );
        assert_eq!(
            s.accept(&event("1", "o-1", &v, Some(10.0)), "r2", 0),
            Accepted::Duplicate
        );
        assert_eq!(
            s.accept(&event("1", "o-1", &v, Some(7.0)), "r3", 0),
            Accepted::Duplicate
        );
        assert_eq!(
            s.accept(&event("2", "o-1", &v, Some(10.0)), "r4", 0),
            Accepted::New
        );
        let r = s.report(0);
        assert_eq!(r.deduplicated, 2);
        let first = &r.accepted["1"][0];
        assert_eq!(first.duplicates, 2);
        assert_eq!(first.restatements.len(), 1);
        assert_eq!(first.conversion_value, Some(7.0));
        assert_eq!(r.accepted["2"].len(), 1);
    }

    #[test]
    fn tokens_expire() {
        let mut s = Store::default();
        let t = s.issue_token(1000, 0);
        assert_eq!(s.check_token(&t, 999), Ok(()));
        assert_eq!(s.check_token(&t, 1000), Err(AuthProblem::Expired));
        assert_eq!(s.check_token("nope", 0), Err(AuthProblem::Invalid));
    }

    #[test]
    fn peak_rate_counts_a_one_second_window() {
        let mut s = Store::default();
        for t in [0, 100, 200, 1150, 1160, 1170, 1180] {
            s.count(GoogleEndpoint::Ingest, 200, t);
        }
        let r = s.report(0);
        assert_eq!(r.requests["ingest"].total, 7);
        assert_eq!(r.requests["ingest"].peak_requests_per_second, 5);
    }
}
