//! Google look-alike: OAuth token endpoint, Data Manager ingestion and the
//! Google Ads API calls capi-cdc makes to provision conversion actions.
//!
//! **Never production.** Input: HTTP requests on Google's own paths
//! (`/token`, `/v1/events:ingest`, `/v1/requestStatus:retrieve`,
//! `/{version}/customers/{id}/googleAds:searchStream`,
//! `/{version}/customers/{id}/conversionActions:mutate`), plus test hooks
//! under `/_sandbox/google/`. Output: Google-shaped answers (proto3 JSON,
//! `google.rpc.Status` error envelopes, OAuth error bodies) and an in-memory
//! store that tests read back through [`GoogleSandbox::report`].
//!
//! Invariants:
//! - all state sits behind one mutex that is never held across `.await`
//!   (every handler does its work synchronously, then sleeps if a delay
//!   fault asked for it);
//! - a rejected request changes nothing but the counters (Data Manager's
//!   fast-fail model: one bad field rejects the whole request);
//! - logs carry endpoint names, status codes, counts and account ids only —
//!   never bodies, tokens, hashes or identifiers;
//! - intra-module imports are `super::`/`self::` only, so the folder can be
//!   copied verbatim to another crate path.
//!
//! Sources: `googleapis/googleapis` at f8291d2b (2026-08-22), folders
//! `google/ads/datamanager/v1/` and `google/ads/googleads/v22/`; each file
//! names the protos it follows.

mod ads;
mod error;
mod failure;
mod fault;
mod hooks;
mod ids;
mod ingest;
mod oauth;
mod report;
mod schema;
mod store;
mod time;
mod validate;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

pub use self::fault::{GoogleEndpoint, GoogleFault, InvalidFault, DAILY_RETRY_DELAY_S};
pub use self::report::{
    AcceptedEvent, ConversionActionReport, EndpointReport, GoogleReport, Rejection,
    UnknownConversionAction,
};
pub use self::store::{ACTION_HOLD_MS, DEFAULT_CLICK_LOOKBACK_DAYS};
pub use self::validate::{MAX_DESTINATIONS, MAX_EVENTS, MAX_FUTURE_SKEW_MS, MAX_USER_IDENTIFIERS};

use self::failure::Failure;
use self::store::Store;

/// 2,000 events with full user data stay well below this; Google publishes no byte cap.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// OAuth scopes granted to every sandbox token (spec §1.6).
pub const SCOPES: &str =
    "https://www.googleapis.com/auth/adwords https://www.googleapis.com/auth/datamanager";

/// What the sandbox accepts as credentials and accounts.
#[derive(Clone)]
pub struct GoogleSandboxConfig {
    /// The only OAuth client id; others get 401 `invalid_client`.
    pub client_id: String,
    /// The client's secret; a wrong one gets 401 `invalid_client`.
    pub client_secret: String,
    /// The only refresh token that works; others get 400 `invalid_grant`.
    pub refresh_token: String,
    /// The Google Ads account (digits) that owns the conversion actions.
    pub operating_account_id: String,
    /// Manager account the OAuth user logs in through, if any (digits).
    pub login_account_id: Option<String>,
    /// Google Ads API versions served, e.g. `v22`; others get 404.
    pub ads_api_versions: Vec<String>,
    /// Lifetime of issued access tokens, in seconds.
    pub access_token_ttl_s: u64,
}

impl Default for GoogleSandboxConfig {
    fn default() -> Self {
        GoogleSandboxConfig {
            client_id: "sandbox-client-id.apps.googleusercontent.com".into(),
            client_secret: "sandbox-client-secret".into(),
            refresh_token: "sandbox-refresh-token".into(),
            operating_account_id: "1234567890".into(),
            login_account_id: None,
            // Spec §11: v22 sunsets 2026-10-07, v26 is the newest; serve the span in use in 2026.
            ads_api_versions: (22..=26).map(|v| format!("v{v}")).collect(),
            // Google's access tokens live one hour (spec §1.3).
            access_token_ttl_s: 3600,
        }
    }
}

impl fmt::Debug for GoogleSandboxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoogleSandboxConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("refresh_token", &"[redacted]")
            .field("operating_account_id", &self.operating_account_id)
            .field("login_account_id", &self.login_account_id)
            .field("ads_api_versions", &self.ads_api_versions)
            .field("access_token_ttl_s", &self.access_token_ttl_s)
            .finish()
    }
}

/// Shared sandbox state; cloning copies one `Arc`.
#[derive(Clone, Debug)]
pub struct GoogleSandbox {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: GoogleSandboxConfig,
    store: Mutex<Store>,
}

impl GoogleSandbox {
    /// Fresh, empty sandbox state.
    pub fn new(config: GoogleSandboxConfig) -> Self {
        GoogleSandbox {
            inner: Arc::new(Inner {
                config,
                store: Mutex::default(),
            }),
        }
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &GoogleSandboxConfig {
        &self.inner.config
    }

    /// Snapshot of everything accepted, rejected and counted so far.
    pub fn report(&self) -> GoogleReport {
        let store = self.store();
        let now = store.now_ms();
        store.report(now)
    }

    /// Queues a fault (or, for [`GoogleFault::ExpireAccessTokens`], applies it now).
    pub fn push_fault(&self, fault: GoogleFault) -> Result<(), InvalidFault> {
        fault.check()?;
        let mut store = self.store();
        if fault == GoogleFault::ExpireAccessTokens {
            store.expire_tokens();
        } else {
            store.push_fault(fault);
        }
        Ok(())
    }

    /// Drops queued faults that have not fired yet.
    pub fn clear_faults(&self) {
        self.store().clear_faults();
    }

    /// Forgets events, rejections, counters, request statuses and faults.
    ///
    /// Conversion actions and access tokens survive, so a running demo keeps
    /// its provisioned actions and its session.
    pub fn clear(&self) {
        self.store().clear();
    }

    /// Makes every issued access token expired, as if an hour had passed.
    pub fn expire_access_tokens(&self) {
        self.store().expire_tokens();
    }

    /// Creates an `UPLOAD_CLICKS` action as if made long ago (past the 6-hour hold); returns its id.
    pub fn seed_conversion_action(&self, name: &str, category: &str) -> String {
        let mut store = self.store();
        let now = store.now_ms();
        let created = now - store::SEED_AGE_MS;
        let id = store.add_action(&self.config().operating_account_id, name, category, created);
        id.to_string()
    }

    /// Moves an action's creation time `by` into the past (to lift the 6-hour hold).
    pub fn backdate_conversion_action(
        &self,
        id: &str,
        by: Duration,
    ) -> Result<(), UnknownConversionAction> {
        self.store().backdate_action(id, duration_ms(by))
    }

    /// Moves the sandbox clock forward (token expiry, holds, lookback windows).
    pub fn advance_clock(&self, by: Duration) {
        self.store().advance_clock(duration_ms(by));
    }

    /// Locks the store. Callers drop the guard before any `.await`.
    fn store(&self) -> MutexGuard<'_, Store> {
        // Every mutation is a push, insert or counter bump, so a panic in
        // another request cannot leave the store half-written.
        self.inner
            .store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the answer in the per-endpoint counters (and rejections), then returns it.
    fn finish(&self, endpoint: GoogleEndpoint, result: Result<Response, Failure>) -> Response {
        let mut store = self.store();
        let now = store.now_ms();
        match result {
            Ok(response) => {
                store.count(endpoint, response.status().as_u16(), now);
                response
            }
            Err(failure) => {
                let status = failure.http_status();
                tracing::info!(
                    endpoint = endpoint.name(),
                    status,
                    label = failure.label(),
                    "google sandbox rejected request"
                );
                store.count(endpoint, status, now);
                store.reject(Rejection {
                    endpoint: endpoint.name().to_owned(),
                    status,
                    status_text: failure.label().to_owned(),
                    message: failure.message().to_owned(),
                    fault: failure.is_fault(),
                    at: time::format_rfc3339(now),
                });
                failure.into_response()
            }
        }
    }
}

/// All Google routes and test hooks, with `sandbox` as their state; merge into a sandbox router.
pub fn routes(sandbox: GoogleSandbox) -> Router {
    Router::new()
        .route("/token", post(oauth::post_token))
        .route("/v1/events:ingest", post(ingest::post_ingest))
        .route(
            "/v1/requestStatus:retrieve",
            get(ingest::get_request_status),
        )
        .route(
            "/{version}/customers/{customer_id}/googleAds:searchStream",
            post(ads::post_search_stream),
        )
        .route(
            "/{version}/customers/{customer_id}/conversionActions:mutate",
            post(ads::post_mutate),
        )
        .merge(hooks::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(sandbox)
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
