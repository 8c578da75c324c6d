//! Meta Conversions API: request building and error classification.
//!
//! `POST {base_url}/{api_version}/{pixel_id}/events` with a JSON body
//! `{"data": [...], "access_token": ..., "test_event_code"?: ...}`. The
//! token travels in the body, not the URL, so it never shows up in proxy or
//! access logs. Classification follows spec/meta-capi.md §1.6: keyed on
//! `code`/`error_subcode`, never on message text.

use std::time::Duration;

use serde::Deserialize;

use super::{http, Attempt, Destination};
use crate::config::ConsentPolicy;
use crate::config::MetaConfig;
use crate::event::BusinessEvent;

mod request;

/// Ledger name of this destination.
pub const DESTINATION: &str = "meta";

/// Meta rejects a whole request if one event is older than 7 days
/// (spec/meta-capi.md §1.3), so such events are skipped before batching.
pub const MAX_EVENT_AGE_S: i64 = 7 * 24 * 3600;
/// Default wait when Meta throttles without saying how long.
const THROTTLE_WAIT: Duration = Duration::from_secs(60);

/// The Meta destination.
#[derive(Debug)]
pub struct MetaDestination {
    config: MetaConfig,
    url: reqwest::Url,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: GraphError,
}

#[derive(Deserialize)]
struct GraphError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    code: i64,
    #[serde(default)]
    error_subcode: Option<i64>,
    #[serde(default)]
    is_transient: Option<bool>,
    /// Which parameter failed and why (Meta's CAPI subcoded errors).
    #[serde(default)]
    error_user_msg: Option<String>,
}

impl MetaDestination {
    /// A destination for `config`.
    pub fn new(config: MetaConfig) -> MetaDestination {
        let mut url = config.base_url.clone();
        let path = format!(
            "{}/{}/{}/events",
            url.path().trim_end_matches('/'),
            config.api_version,
            config.pixel_id
        );
        url.set_path(&path);
        let http = http::client(config.delivery.timeout);
        MetaDestination { config, url, http }
    }

    /// Meta's `event_name` for the event's kind: the configured mapping,
    /// else DESIGN.md §3's default; `None` for an unmapped custom kind.
    pub fn event_name<'e>(&'e self, event: &'e BusinessEvent) -> Option<&'e str> {
        self.config
            .event_names
            .get(event.kind.as_str())
            .map(String::as_str)
            .or_else(|| event.kind.canonical().map(|c| c.meta))
    }

    /// The request body for `events` (exposed for tests).
    pub fn body(&self, events: &[&BusinessEvent]) -> serde_json::Result<Vec<u8>> {
        let now_s = crate::spool::Ledger::now_ms() / 1000;
        request::body(&self.config, events, |e| self.event_name(e), now_s)
    }
}

/// Classifies Meta's answer (spec/meta-capi.md §1.6).
pub fn classify(status: u16, retry_after: Option<Duration>, body: &[u8]) -> Attempt {
    if (200..300).contains(&status) {
        return Attempt::DELIVERED;
    }
    let parsed: Option<GraphError> = serde_json::from_slice::<ErrorEnvelope>(body)
        .ok()
        .map(|e| e.error);
    let Some(err) = parsed else {
        // HTML or empty error bodies happen; treat them as the platform
        // having trouble, not as our request being wrong.
        return match status {
            429 => Attempt::RetryAfter {
                delay: retry_after.unwrap_or(THROTTLE_WAIT),
                reason: "HTTP 429 without a Graph error body".into(),
            },
            _ => Attempt::Transient {
                reason: format!("HTTP {status} without a Graph error body"),
            },
        };
    };
    let message = match &err.error_user_msg {
        Some(detail) => http::short(&format!("{}: {detail}", err.message)),
        None => http::short(&err.message),
    };
    let code = match err.error_subcode {
        Some(sub) => format!("meta error {}/{sub}", err.code),
        None => format!("meta error {}", err.code),
    };
    let reason = format!("{code} (HTTP {status}): {message}");
    match (err.code, err.error_subcode) {
        (190, _) => Attempt::Paused {
            reason: format!("{reason}. The access token is invalid or expired: set a new destinations.meta.access_token"),
        },
        (100, Some(33)) => Attempt::Paused {
            reason: format!("{reason}. The pixel does not exist or the token may not use it: check destinations.meta.pixel_id and the system user's access"),
        },
        (200..=299, _) => Attempt::Paused {
            reason: format!("{reason}. Permission error: grant the token access to the pixel"),
        },
        (4 | 17 | 32 | 341 | 613, _) | (80000..=80014, _) => Attempt::RetryAfter {
            delay: retry_after.unwrap_or(THROTTLE_WAIT),
            reason,
        },
        (368, _) => Attempt::RetryAfter {
            delay: Duration::from_secs(3600),
            reason,
        },
        (1 | 2, _) => Attempt::Transient { reason },
        _ if err.is_transient == Some(true) || status >= 500 => Attempt::Transient { reason },
        (100, _) => Attempt::Rejected { reason },
        _ if status == 429 => Attempt::RetryAfter {
            delay: retry_after.unwrap_or(THROTTLE_WAIT),
            reason,
        },
        _ if (400..500).contains(&status) => Attempt::Rejected { reason },
        _ => Attempt::Transient { reason },
    }
}

impl Destination for MetaDestination {
    fn name(&self) -> &'static str {
        DESTINATION
    }

    fn delivery(&self) -> &crate::config::DeliveryConfig {
        &self.config.delivery
    }

    fn window(&self, _event: &BusinessEvent) -> Duration {
        Duration::from_secs(MAX_EVENT_AGE_S as u64)
    }

    fn skip_reason(&self, event: &BusinessEvent, _now_s: i64) -> Option<String> {
        let Some(name) = self.event_name(event) else {
            return Some(format!(
                "no Meta event_name for kind {}: map it in destinations.meta.event_names",
                event.kind
            ));
        };
        if event.consent.user_data_denied() {
            match self.config.consent_policy {
                ConsentPolicy::Drop => {
                    return Some("consent: ad_user_data denied at the commit and destinations.meta.consent_policy = drop".into())
                }
                ConsentPolicy::SendLimited if !request::limited_has_match_key(event) => {
                    return Some("consent: ad_user_data denied at the commit; the limited event (no identifiers) has no client IP to match on".into())
                }
                ConsentPolicy::SendLimited => {}
            }
        }
        if !request::has_match_key(event) {
            return Some("no customer information to match on (no hashed identifier, IP, fbc or fbp): Meta rejects such events; add identity columns or a session to the rule".into());
        }
        if name == "Purchase" && event.value.is_none() {
            return Some("Meta requires value and currency on Purchase".into());
        }
        None
    }

    fn delivered_note(&self, event: &BusinessEvent) -> Option<&'static str> {
        event.consent.user_data_denied().then_some(
            "sent limited: ad_user_data denied at the commit (destinations.meta.consent_policy = send_limited), no hashed identifiers or click cookies",
        )
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
        let request = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        match http::send(request, "meta events endpoint").await {
            Ok(a) => classify(a.status, a.retry_after, &a.body),
            Err(attempt) => attempt,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(code: i64, sub: Option<i64>) -> Vec<u8> {
        let sub = sub
            .map(|s| format!(",\"error_subcode\":{s}"))
            .unwrap_or_default();
        format!("{{\"error\":{{\"message\":\"m\",\"type\":\"OAuthException\",\"code\":{code}{sub},\"fbtrace_id\":\"x\"}}}}").into_bytes()
    }

    #[test]
    fn classifies_by_code_not_text() {
        assert_eq!(classify(200, None, b"{}"), Attempt::DELIVERED);
        assert!(matches!(
            classify(400, None, &err(190, Some(463))),
            Attempt::Paused { .. }
        ));
        assert!(matches!(
            classify(400, None, &err(100, Some(33))),
            Attempt::Paused { .. }
        ));
        assert!(matches!(
            classify(400, None, &err(100, Some(2804003))),
            Attempt::Rejected { .. }
        ));
        assert!(matches!(
            classify(400, None, &err(100, None)),
            Attempt::Rejected { .. }
        ));
        assert!(matches!(
            classify(500, None, &err(2, None)),
            Attempt::Transient { .. }
        ));
        assert!(matches!(
            classify(502, None, b"<html>bad gateway</html>"),
            Attempt::Transient { .. }
        ));
        match classify(400, Some(Duration::from_secs(7)), &err(4, None)) {
            Attempt::RetryAfter { delay, .. } => assert_eq!(delay, Duration::from_secs(7)),
            other => panic!("{other:?}"),
        }
        match classify(429, None, b"") {
            Attempt::RetryAfter { delay, .. } => assert_eq!(delay, THROTTLE_WAIT),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejected_reason_names_code_and_subcode() {
        match classify(400, None, &err(100, Some(2804016))) {
            Attempt::Rejected { reason } => {
                assert!(reason.starts_with("meta error 100/2804016"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }
}
