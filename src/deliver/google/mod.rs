//! Google Ads through the Data Manager API (spec/google.md §0–§2, §5, §7).
//!
//! `POST {data_manager_url}/v1/events:ingest` with `Authorization: Bearer`
//! (an OAuth access token from [`oauth`]), one request per batch of up to
//! 2,000 events across the conversion actions of their kinds
//! ([`request`]), classified by [`classify`]. The conversion action of a
//! kind is configured (`destinations.google.conversion_actions`) or
//! provisioned (`capi-cdc provision`, [`provision`]); a kind without one is
//! skipped with that reason. Uploads to an action created less than 6 hours
//! ago are held until then (Google's `TOO_RECENT_CONVERSION_ACTION` rule),
//! not failed. An expired access token is refreshed and the request sent
//! again once; a revoked grant pauses the destination.

pub mod classify;
pub mod oauth;
pub mod provision;
pub mod request;

use std::collections::BTreeMap;
use std::time::Duration;

use super::{http, Attempt, Destination};
use crate::config::{DeliveryConfig, GoogleConfig};
use crate::event::BusinessEvent;
use oauth::{Oauth, TokenError};

/// Ledger name of this destination.
pub const DESTINATION: &str = "google";
/// Google accepts uploads to a new conversion action only after this long.
pub const NEW_ACTION_HOLD_MS: i64 = 6 * 3600 * 1000;

/// A kind's conversion action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// The conversion action ID.
    pub id: String,
    /// When capi-cdc created it (ms), if it did: uploads wait 6 hours.
    pub created_ms: Option<i64>,
}

/// The Google destination.
#[derive(Debug)]
pub struct GoogleDestination {
    config: GoogleConfig,
    actions: BTreeMap<String, Action>,
    oauth: Oauth,
    url: reqwest::Url,
    http: reqwest::Client,
}

impl GoogleDestination {
    /// A destination for `config`; `provisioned` are the actions recorded
    /// by `capi-cdc provision` (configured IDs win).
    pub fn new(config: GoogleConfig, provisioned: BTreeMap<String, Action>) -> GoogleDestination {
        let mut actions = provisioned;
        for (kind, id) in &config.conversion_actions {
            actions.insert(
                kind.clone(),
                Action {
                    id: id.clone(),
                    created_ms: None,
                },
            );
        }
        let mut url = config.data_manager_url.clone();
        let path = format!("{}/v1/events:ingest", url.path().trim_end_matches('/'));
        url.set_path(&path);
        GoogleDestination {
            oauth: Oauth::new(&config),
            http: http::client(config.delivery.timeout),
            actions,
            url,
            config,
        }
    }

    /// The request body for `events` (exposed for tests).
    pub fn body(&self, events: &[&BusinessEvent]) -> serde_json::Result<Vec<u8>> {
        let with_actions: Vec<(&BusinessEvent, &str)> = events
            .iter()
            .filter_map(|e| {
                self.actions
                    .get(e.kind.as_str())
                    .map(|a| (*e, a.id.as_str()))
            })
            .collect();
        let target = request::Target {
            operating_account_id: &self.config.operating_account_id,
            login_account_id: self.config.login_account_id.as_deref(),
            validate_only: self.config.validate_only,
        };
        request::body(
            &target,
            &with_actions,
            crate::spool::Ledger::now_ms() / 1000,
        )
    }

    async fn post(
        &self,
        body: Vec<u8>,
        token: &crate::config::Secret,
    ) -> Result<http::Answer, Attempt> {
        let request = self
            .http
            .post(self.url.clone())
            .bearer_auth(token.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        http::send(request, "google data manager events:ingest").await
    }

    async fn token(&self) -> Result<crate::config::Secret, Attempt> {
        self.oauth.token().await.map_err(|e| match e {
            TokenError::NeedsOperator(reason) => Attempt::Paused { reason },
            TokenError::Transient(reason) => Attempt::Transient { reason },
        })
    }
}

impl Destination for GoogleDestination {
    fn name(&self) -> &'static str {
        DESTINATION
    }

    fn delivery(&self) -> &DeliveryConfig {
        &self.config.delivery
    }

    fn window(&self, _event: &BusinessEvent) -> Duration {
        self.config.lookback
    }

    fn skip_reason(&self, event: &BusinessEvent, _now_s: i64) -> Option<String> {
        if !self.actions.contains_key(event.kind.as_str()) {
            return Some(format!(
                "no Google conversion action for kind {}: set destinations.google.conversion_actions.\"{}\" or run `capi-cdc provision`",
                event.kind, event.kind
            ));
        }
        if !request::has_identifier(event) {
            return Some(if event.consent.user_data_denied() {
                "no click ID, and ad_user_data was denied (no user data may be sent): Google cannot attribute it".to_owned()
            } else {
                "no identifiers: Google needs a click ID (gclid, gbraid, wbraid) or hashed user data".to_owned()
            });
        }
        None
    }

    fn hold_until_ms(&self, event: &BusinessEvent) -> Option<i64> {
        self.actions
            .get(event.kind.as_str())
            .and_then(|a| a.created_ms)
            .map(|t| t + NEW_ACTION_HOLD_MS)
    }

    async fn send(&self, events: &[&BusinessEvent]) -> Attempt {
        let body = match self.body(events) {
            Ok(b) => b,
            Err(e) => {
                return Attempt::Rejected {
                    reason: format!("cannot encode the request: {e}"),
                }
            }
        };
        let token = match self.token().await {
            Ok(t) => t,
            Err(a) => return a,
        };
        let answer = match self.post(body.clone(), &token).await {
            Ok(a) => a,
            Err(a) => return a,
        };
        if answer.status != 401 {
            return classify::ingest(&answer);
        }
        // The access token expired early or was revoked: refresh once and
        // send again; a second 401 pauses (classify).
        self.oauth.invalidate().await;
        let token = match self.token().await {
            Ok(t) => t,
            Err(a) => return a,
        };
        match self.post(body, &token).await {
            Ok(a) => classify::ingest(&a),
            Err(a) => a,
        }
    }
}
