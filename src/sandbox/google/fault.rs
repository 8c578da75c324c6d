//! Scripted faults: what the next requests to an endpoint should suffer.
//!
//! Input: a [`GoogleFault`] (from the Rust API or `POST /_sandbox/google/faults`,
//! same JSON: `{"kind":"rate_limited","endpoint":"ingest","count":2,"retry_delay_s":2}`).
//! Output: the error answer to give instead of (or the delay to add to) the
//! normal one. Invariant: faults fire in the order they were queued, each at
//! most `count` times, and only on their own endpoint.

use std::collections::VecDeque;
use std::fmt;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::error::{Api, ApiError};
use super::failure::{Failure, OAuthError};

/// Seconds Google Ads reported as a daily-quota wait in the wild (spec §7: "Retry in 40591 seconds").
pub const DAILY_RETRY_DELAY_S: u64 = 40_591;

/// The sandbox's endpoints, as fault targets and report keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GoogleEndpoint {
    /// `POST /token`.
    Token,
    /// `POST /v1/events:ingest`.
    Ingest,
    /// `GET /v1/requestStatus:retrieve`.
    RequestStatus,
    /// `POST /{version}/customers/{id}/googleAds:searchStream`.
    SearchStream,
    /// `POST /{version}/customers/{id}/conversionActions:mutate`.
    Mutate,
}

impl GoogleEndpoint {
    /// Name used in logs and report keys.
    pub fn name(self) -> &'static str {
        match self {
            GoogleEndpoint::Token => "token",
            GoogleEndpoint::Ingest => "ingest",
            GoogleEndpoint::RequestStatus => "request_status",
            GoogleEndpoint::SearchStream => "search_stream",
            GoogleEndpoint::Mutate => "mutate",
        }
    }
}

fn one() -> u32 {
    1
}

fn two() -> u64 {
    2
}

/// A scripted misbehaviour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum GoogleFault {
    /// Next `count` requests get 429 `RESOURCE_EXHAUSTED` with `RetryInfo` and `Retry-After`.
    RateLimited {
        /// Which endpoint.
        endpoint: GoogleEndpoint,
        /// How many requests.
        #[serde(default = "one")]
        count: u32,
        /// `retryDelay` / `Retry-After`, seconds (default 2).
        #[serde(default = "two")]
        retry_delay_s: u64,
    },
    /// Next `count` requests get 429 saying the daily quota is exhausted, with a long delay.
    DailyQuotaExhausted {
        /// Which endpoint.
        endpoint: GoogleEndpoint,
        /// How many requests.
        #[serde(default = "one")]
        count: u32,
        /// `retryDelay`, seconds (default [`DAILY_RETRY_DELAY_S`]).
        #[serde(default)]
        retry_delay_s: Option<u64>,
    },
    /// Next `count` requests get 500 `INTERNAL` or 503 `UNAVAILABLE`.
    ServerError {
        /// Which endpoint.
        endpoint: GoogleEndpoint,
        /// How many requests.
        #[serde(default = "one")]
        count: u32,
        /// 500 or 503.
        status: u16,
    },
    /// Next `count` requests are answered normally, but only after `delay_ms`
    /// (processed first: a late reply to a stored batch, as a client timeout sees it).
    Delay {
        /// Which endpoint.
        endpoint: GoogleEndpoint,
        /// How many requests.
        #[serde(default = "one")]
        count: u32,
        /// Added latency, milliseconds.
        delay_ms: u64,
    },
    /// Next `count` token refreshes get 400 `invalid_grant` (revoked refresh token).
    InvalidGrant {
        /// How many requests.
        #[serde(default = "one")]
        count: u32,
    },
    /// Every access token issued so far expires now (applied when pushed, not queued).
    ExpireAccessTokens,
    /// Next `count` ingest requests are rejected with INVALID_ARGUMENT at `events[index]`
    /// (when the request has that many events).
    RejectEvent {
        /// How many requests.
        #[serde(default = "one")]
        count: u32,
        /// Event index to reject.
        index: usize,
    },
}

/// A fault spec that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidFault(pub String);

impl fmt::Display for InvalidFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid fault: {}", self.0)
    }
}

impl std::error::Error for InvalidFault {}

impl GoogleFault {
    /// Rejects specs that could never fire as described.
    pub(super) fn check(&self) -> Result<(), InvalidFault> {
        if self.count() == Some(0) {
            return Err(InvalidFault("count must be at least 1".into()));
        }
        match self {
            GoogleFault::ServerError { status, .. } if *status != 500 && *status != 503 => {
                Err(InvalidFault(format!("status {status} is not 500 or 503")))
            }
            GoogleFault::RateLimited {
                retry_delay_s: 0, ..
            } => Err(InvalidFault("retry_delay_s must be at least 1".into())),
            _ => Ok(()),
        }
    }

    fn count(&self) -> Option<u32> {
        match self {
            GoogleFault::RateLimited { count, .. }
            | GoogleFault::DailyQuotaExhausted { count, .. }
            | GoogleFault::ServerError { count, .. }
            | GoogleFault::Delay { count, .. }
            | GoogleFault::InvalidGrant { count }
            | GoogleFault::RejectEvent { count, .. } => Some(*count),
            GoogleFault::ExpireAccessTokens => None,
        }
    }

    fn endpoint(&self) -> Option<GoogleEndpoint> {
        match self {
            GoogleFault::RateLimited { endpoint, .. }
            | GoogleFault::DailyQuotaExhausted { endpoint, .. }
            | GoogleFault::ServerError { endpoint, .. }
            | GoogleFault::Delay { endpoint, .. } => Some(*endpoint),
            GoogleFault::InvalidGrant { .. } => Some(GoogleEndpoint::Token),
            GoogleFault::RejectEvent { .. } => Some(GoogleEndpoint::Ingest),
            GoogleFault::ExpireAccessTokens => None,
        }
    }
}

/// What a fired fault asks the handler to do.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Fired {
    /// Answer with this error instead.
    Fail(Failure),
    /// Answer normally after this many milliseconds.
    Delay(u64),
    /// Token endpoint: refuse the refresh token.
    InvalidGrant,
    /// Ingest: reject the event at this index.
    RejectEvent(usize),
}

/// Queued faults, oldest first, each with its remaining uses.
#[derive(Debug, Default)]
pub(super) struct FaultQueue {
    queue: VecDeque<(GoogleFault, u32)>,
}

impl FaultQueue {
    /// Queues a checked fault behind those already queued.
    pub(super) fn push(&mut self, fault: GoogleFault) {
        if let Some(n) = fault.count() {
            self.queue.push_back((fault, n));
        }
    }

    /// Requests still to be affected.
    pub(super) fn pending(&self) -> u64 {
        self.queue.iter().map(|(_, n)| u64::from(*n)).sum()
    }

    /// Drops everything queued.
    pub(super) fn clear(&mut self) {
        self.queue.clear();
    }

    /// Consumes one use of the oldest fault for `endpoint` and says what it does there.
    pub(super) fn take(&mut self, endpoint: GoogleEndpoint, api: Api<'_>) -> Option<Fired> {
        let pos = self
            .queue
            .iter()
            .position(|(f, _)| f.endpoint() == Some(endpoint))?;
        let (fault, remaining) = &mut self.queue[pos];
        *remaining -= 1;
        let fault = fault.clone();
        if *remaining == 0 {
            self.queue.remove(pos);
        }
        Some(fire(&fault, endpoint, api))
    }
}

fn fire(fault: &GoogleFault, endpoint: GoogleEndpoint, api: Api<'_>) -> Fired {
    let token = endpoint == GoogleEndpoint::Token;
    match fault {
        GoogleFault::RateLimited { retry_delay_s, .. } if token => Fired::Fail(oauth_fault(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            "Rate Limit Exceeded",
            Some(*retry_delay_s),
        )),
        GoogleFault::DailyQuotaExhausted { retry_delay_s, .. } if token => {
            let delay = retry_delay_s.unwrap_or(DAILY_RETRY_DELAY_S);
            Fired::Fail(oauth_fault(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_exceeded",
                "The daily quota is exhausted.",
                Some(delay),
            ))
        }
        GoogleFault::ServerError { status, .. } if token => {
            let (http, error) = if *status == 503 {
                (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
            } else {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal_failure")
            };
            Fired::Fail(oauth_fault(http, error, "Backend Error", None))
        }
        GoogleFault::RateLimited { retry_delay_s, .. } => {
            Fired::Fail(ApiError::quota(api, *retry_delay_s, false).into())
        }
        GoogleFault::DailyQuotaExhausted { retry_delay_s, .. } => {
            let delay = retry_delay_s.unwrap_or(DAILY_RETRY_DELAY_S);
            Fired::Fail(ApiError::quota(api, delay, true).into())
        }
        GoogleFault::ServerError { status, .. } => {
            let http = if *status == 503 {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            Fired::Fail(ApiError::server(api, http).into())
        }
        GoogleFault::Delay { delay_ms, .. } => Fired::Delay(*delay_ms),
        GoogleFault::InvalidGrant { .. } => Fired::InvalidGrant,
        GoogleFault::RejectEvent { index, .. } => Fired::RejectEvent(*index),
        // Never queued: applied when pushed.
        GoogleFault::ExpireAccessTokens => Fired::Delay(0),
    }
}

fn oauth_fault(
    http: StatusCode,
    error: &'static str,
    description: &str,
    retry_after_s: Option<u64>,
) -> Failure {
    let mut e = OAuthError::new(http, error, description);
    e.retry_after_s = retry_after_s;
    e.fault = true;
    e.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_spec_round_trips_and_rejects_unknown_keys() {
        let f: GoogleFault =
            serde_json::from_str(r#"{"kind":"rate_limited","endpoint":"ingest","count":2}"#)
                .unwrap();
        assert_eq!(
            f,
            GoogleFault::RateLimited {
                endpoint: GoogleEndpoint::Ingest,
                count: 2,
                retry_delay_s: 2
            }
        );
        assert!(serde_json::from_str::<GoogleFault>(
            r#"{"kind":"rate_limited","endpoint":"ingest","cnt":2}"#
        )
        .is_err());
        let e: GoogleFault = serde_json::from_str(r#"{"kind":"expire_access_tokens"}"#).unwrap();
        assert_eq!(e, GoogleFault::ExpireAccessTokens);
    }

    #[test]
    fn faults_fire_per_endpoint_in_order() {
        let mut q = FaultQueue::default();
        q.push(GoogleFault::ServerError {
            endpoint: GoogleEndpoint::Mutate,
            count: 1,
            status: 503,
        });
        q.push(GoogleFault::Delay {
            endpoint: GoogleEndpoint::Ingest,
            count: 2,
            delay_ms: 5,
        });
        assert_eq!(q.pending(), 3);
        assert_eq!(
            q.take(GoogleEndpoint::Ingest, Api::DataManager),
            Some(Fired::Delay(5))
        );
        assert!(matches!(
            q.take(GoogleEndpoint::Mutate, Api::Ads("v22")),
            Some(Fired::Fail(_))
        ));
        assert_eq!(q.take(GoogleEndpoint::Mutate, Api::Ads("v22")), None);
        assert_eq!(q.pending(), 1);
    }

    #[test]
    fn bad_specs_are_refused() {
        let bad = GoogleFault::ServerError {
            endpoint: GoogleEndpoint::Ingest,
            count: 1,
            status: 502,
        };
        assert!(bad.check().is_err());
        assert!(GoogleFault::InvalidGrant { count: 0 }.check().is_err());
    }
}
