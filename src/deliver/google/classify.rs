//! Google's answers → [`Attempt`]s (spec/google.md §2.1, §7), keyed on the
//! HTTP status and the `google.rpc.Status` code name, never on message
//! text. `RESOURCE_EXHAUSTED` waits for the `retryDelay` of its
//! `google.rpc.RetryInfo` detail (else `Retry-After`, else a minute); a
//! daily quota's long delay simply parks the lane until then.

use std::time::Duration;

use serde::Deserialize;

use crate::deliver::http::{short, Answer};
use crate::deliver::Attempt;

/// Default wait when Google throttles without saying how long.
const THROTTLE_WAIT: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
struct Envelope {
    error: Status,
}

/// `google.rpc.Status` in JSON.
#[derive(Deserialize)]
struct Status {
    #[serde(default)]
    code: u16,
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Accepted {
    #[serde(default)]
    request_id: Option<String>,
}

/// `"2s"`, `"1.5s"`, `"40591s"` → a duration.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let secs: f64 = text.strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

fn retry_delay(details: &[serde_json::Value]) -> Option<Duration> {
    details
        .iter()
        .filter(|d| {
            d.get("@type")
                .and_then(|t| t.as_str())
                .is_some_and(|t| t.ends_with("google.rpc.RetryInfo"))
        })
        .find_map(|d| {
            d.get("retryDelay")
                .and_then(|v| v.as_str())
                .and_then(parse_duration)
        })
}

/// Classifies a Data Manager answer.
pub fn ingest(answer: &Answer) -> Attempt {
    if (200..300).contains(&answer.status) {
        let id = serde_json::from_slice::<Accepted>(&answer.body)
            .ok()
            .and_then(|a| a.request_id);
        return Attempt::Delivered {
            receipt: id.map(|id| format!("google request_id {id}")),
        };
    }
    let Some(err) = serde_json::from_slice::<Envelope>(&answer.body)
        .ok()
        .map(|e| e.error)
    else {
        return match answer.status {
            429 => Attempt::RetryAfter {
                delay: answer.retry_after.unwrap_or(THROTTLE_WAIT),
                reason: "HTTP 429 without a google.rpc.Status body".into(),
            },
            s => Attempt::Transient {
                reason: format!("HTTP {s} without a google.rpc.Status body"),
            },
        };
    };
    let reason = format!(
        "google {} (HTTP {}, code {}): {}",
        err.status,
        answer.status,
        err.code,
        short(&err.message)
    );
    match (answer.status, err.status.as_str()) {
        (429, _) | (_, "RESOURCE_EXHAUSTED") => Attempt::RetryAfter {
            delay: retry_delay(&err.details).or(answer.retry_after).unwrap_or(THROTTLE_WAIT),
            reason,
        },
        (401, _) | (_, "UNAUTHENTICATED") => Attempt::Paused {
            reason: format!("{reason}. The access token was refused after a refresh: check the OAuth client and that the refresh token has the datamanager scope"),
        },
        (403, _) | (_, "PERMISSION_DENIED") => Attempt::Paused {
            reason: format!("{reason}. Remedy: give the OAuth user access to Google Ads account destinations.google.operating_account_id (or set login_account_id to a manager with access)"),
        },
        (404, _) | (_, "NOT_FOUND") => Attempt::Paused {
            reason: format!("{reason}. Remedy: check destinations.google.operating_account_id and the conversion action IDs (`capi-cdc provision` lists them)"),
        },
        (_, "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE") | (400, _) => Attempt::Rejected { reason },
        _ => Attempt::Transient { reason },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            retry_after: None,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn accepted_keeps_the_request_id() {
        assert_eq!(
            ingest(&answer(
                200,
                r#"{"requestId":"126365e1-16d0-4c81-9de9-f362711e250a"}"#
            )),
            Attempt::Delivered {
                receipt: Some("google request_id 126365e1-16d0-4c81-9de9-f362711e250a".into())
            }
        );
    }

    /// Recorded error bodies in google.rpc.Status form.
    #[test]
    fn errors_are_classified_by_status_not_text() {
        let quota = r#"{"error":{"code":429,"message":"Quota exceeded for quota metric 'Requests per day'","status":"RESOURCE_EXHAUSTED",
            "details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"40591s"}]}}"#;
        assert!(
            matches!(ingest(&answer(429, quota)), Attempt::RetryAfter { delay, .. } if delay == Duration::from_secs(40591))
        );
        let invalid = r#"{"error":{"code":400,"message":"Invalid value at 'events[3].transaction_id'","status":"INVALID_ARGUMENT"}}"#;
        assert!(
            matches!(ingest(&answer(400, invalid)), Attempt::Rejected { reason } if reason.contains("events[3]"))
        );
        let auth = r#"{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}"#;
        assert!(matches!(ingest(&answer(401, auth)), Attempt::Paused { .. }));
        let denied = r#"{"error":{"code":403,"message":"The caller does not have permission","status":"PERMISSION_DENIED"}}"#;
        assert!(
            matches!(ingest(&answer(403, denied)), Attempt::Paused { reason } if reason.contains("operating_account_id"))
        );
        let down = r#"{"error":{"code":503,"message":"The service is currently unavailable.","status":"UNAVAILABLE"}}"#;
        assert!(matches!(
            ingest(&answer(503, down)),
            Attempt::Transient { .. }
        ));
        assert!(matches!(
            ingest(&answer(502, "<html>bad gateway</html>")),
            Attempt::Transient { .. }
        ));
        assert!(
            matches!(ingest(&answer(429, "")), Attempt::RetryAfter { delay, .. } if delay == THROTTLE_WAIT)
        );
    }

    #[test]
    fn durations_parse_as_protobuf_json() {
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.500s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2"), None);
        assert_eq!(parse_duration("-1s"), None);
    }
}
