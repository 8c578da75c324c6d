//! Google's error envelopes, as the sandbox answers them.
//!
//! Input: a failed check. Output: an HTTP response in one of two shapes:
//! - `google.rpc.Status` as JSON (`{"error":{"code","message","status","details"}}`),
//!   with `details` of `google.rpc.ErrorInfo` / `RequestInfo` / `BadRequest` /
//!   `RetryInfo` (`google/rpc/error_details.proto`) for Data Manager, following
//!   https://developers.google.com/data-manager/api/devguides/concepts/understand-errors;
//! - the same envelope carrying a `GoogleAdsFailure`
//!   (`google/ads/googleads/v22/errors/errors.proto`) for the Ads API;
//! - OAuth 2.0 token errors live in [`super::failure`].
//!
//! Invariant: messages name fields, never the values sent; tokens never appear.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::ids;
use super::schema::Violation;

/// Data Manager's `ErrorInfo.domain`.
pub(super) const DM_DOMAIN: &str = "datamanager.googleapis.com";
/// At most this many field violations are listed; the message counts the rest.
const MAX_VIOLATIONS: usize = 50;

/// Which API's envelope to use for a shared failure such as a quota fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Api<'a> {
    /// Data Manager (`datamanager.googleapis.com`).
    DataManager,
    /// Google Ads API at this version (`v22`, ...), for the `GoogleAdsFailure` type URL.
    Ads(&'a str),
}

/// A `google.rpc.Status` error answer.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ApiError {
    /// HTTP status.
    pub http: StatusCode,
    /// Canonical code name, e.g. `INVALID_ARGUMENT`.
    pub status: &'static str,
    /// `error.message`.
    pub message: String,
    /// `error.details`, already typed with `@type`.
    pub details: Vec<Value>,
    /// `Retry-After` header, in seconds.
    pub retry_after_s: Option<u64>,
    /// Sends `WWW-Authenticate: Bearer ...` (401 answers).
    pub www_authenticate: bool,
    /// Produced by an injected fault rather than a check.
    pub fault: bool,
}

impl ApiError {
    /// A bare error with no details.
    pub(super) fn new(http: StatusCode, status: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            http,
            status,
            message: message.into(),
            details: Vec::new(),
            retry_after_s: None,
            www_authenticate: false,
            fault: false,
        }
    }

    /// Appends a typed detail.
    pub(super) fn with_detail(mut self, detail: Value) -> Self {
        self.details.push(detail);
        self
    }

    /// Marks the answer as coming from an injected fault.
    pub(super) fn faulted(mut self) -> Self {
        self.fault = true;
        self
    }

    /// 401 for a missing, unknown or expired bearer token (Google's front-end wording).
    pub(super) fn unauthenticated(problem: AuthProblem) -> Self {
        let (message, reason) = match problem {
            AuthProblem::Missing => (
                "Request is missing required authentication credential. Expected OAuth 2 access \
                 token, login cookie or other valid authentication credential. See \
                 https://developers.google.com/identity/sign-in/web/devconsole-project.",
                Some("CREDENTIALS_MISSING"),
            ),
            AuthProblem::Invalid => (
                "Request had invalid authentication credentials. Expected OAuth 2 access token, \
                 login cookie or other valid authentication credential. See \
                 https://developers.google.com/identity/sign-in/web/devconsole-project.",
                None,
            ),
            AuthProblem::Expired => (
                "Request had invalid authentication credentials. Expected OAuth 2 access token, \
                 login cookie or other valid authentication credential. See \
                 https://developers.google.com/identity/sign-in/web/devconsole-project.",
                Some("ACCESS_TOKEN_EXPIRED"),
            ),
        };
        let mut err = ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", message);
        err.www_authenticate = problem != AuthProblem::Missing;
        if let Some(reason) = reason {
            err = err.with_detail(error_info(reason, "googleapis.com", json!({})));
        }
        err
    }

    /// 400 for a JSON-mapping error, reported alone as Google's front end does.
    pub(super) fn invalid_json(v: &Violation) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            v.description.clone(),
        )
        .with_detail(json!({
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"field": v.path.snake(), "description": v.description}],
        }))
    }

    /// 400 for a body that is not JSON at all.
    pub(super) fn unparseable_body(detail: &str) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            format!("Invalid JSON payload received. {detail}"),
        )
    }

    /// Data Manager's 400 with `ErrorInfo`, `RequestInfo` and `BadRequest` (all violations).
    ///
    /// Google's message is the generic "There was a problem with the request.";
    /// the sandbox appends the first violation's path so logs and test failures
    /// say where (sandbox choice, documented in the module header).
    pub(super) fn dm_invalid(violations: &[Violation]) -> Self {
        let request_id = format!("t-{}", ids::uuid());
        let first = violations.first().map_or(String::new(), |v| {
            format!(": {}: {}", v.path.camel(), v.description)
        });
        let more = match violations.len() {
            0 | 1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        let listed: Vec<Value> = violations
            .iter()
            .take(MAX_VIOLATIONS)
            .map(|v| {
                json!({
                    "field": v.path.snake(),
                    "description": v.description,
                    "reason": v.reason.unwrap_or("INVALID_ARGUMENT"),
                })
            })
            .collect();
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            format!("There was a problem with the request{first}{more}"),
        )
        .with_detail(error_info(
            "INVALID_ARGUMENT",
            DM_DOMAIN,
            json!({ "requestId": request_id }),
        ))
        .with_detail(request_info(&request_id))
        .with_detail(json!({
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": listed,
        }))
    }

    /// Data Manager's 403 when the caller cannot act for the operating account.
    pub(super) fn dm_permission_denied() -> Self {
        let request_id = format!("t-{}", ids::uuid());
        ApiError::new(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "The caller does not have permission",
        )
        .with_detail(error_info(
            "PERMISSION_DENIED",
            DM_DOMAIN,
            json!({ "requestId": request_id }),
        ))
        .with_detail(request_info(&request_id))
    }

    /// 404 for a `requestStatus:retrieve` id the sandbox never issued.
    pub(super) fn dm_unknown_request_id() -> Self {
        let request_id = format!("t-{}", ids::uuid());
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The request ID used to retrieve the status of a request is not valid.",
        )
        .with_detail(error_info(
            "INVALID_REQUEST_ID",
            DM_DOMAIN,
            json!({ "requestId": request_id }),
        ))
        .with_detail(request_info(&request_id))
    }

    /// 429 `RESOURCE_EXHAUSTED`: a per-minute limit, or the daily quota when `daily`.
    pub(super) fn quota(api: Api<'_>, retry_delay_s: u64, daily: bool) -> Self {
        let delay = format!("{retry_delay_s}s");
        let retry_info = json!({
            "@type": "type.googleapis.com/google.rpc.RetryInfo",
            "retryDelay": delay,
        });
        let mut err = match api {
            Api::DataManager => {
                let limit = if daily {
                    "Requests per day per project"
                } else {
                    "Requests per minute per project"
                };
                let tail = if daily {
                    " The daily quota is exhausted; it resets at midnight Pacific Time."
                } else {
                    ""
                };
                ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "RESOURCE_EXHAUSTED",
                    format!(
                        "Quota exceeded for quota metric 'Requests' and limit '{limit}' of service \
                         '{DM_DOMAIN}' for consumer 'project_number:0'.{tail}"
                    ),
                )
                .with_detail(error_info(
                    "RATE_LIMIT_EXCEEDED",
                    "googleapis.com",
                    json!({
                        "service": DM_DOMAIN,
                        "quota_metric": "datamanager.googleapis.com/requests",
                        "quota_limit": limit,
                        "consumer": "projects/0",
                    }),
                ))
                .with_detail(retry_info)
            }
            Api::Ads(version) => {
                let (code, scope, rate, message) = if daily {
                    (
                        "RESOURCE_EXHAUSTED",
                        "DEVELOPER",
                        "Number of operations for basic access",
                        format!(
                            "The daily quota is exhausted: too many operations for this access \
                             level today. Retry in {retry_delay_s} seconds."
                        ),
                    )
                } else {
                    (
                        "RESOURCE_TEMPORARILY_EXHAUSTED",
                        "ACCOUNT",
                        "Number of requests per customer per minute",
                        format!("Too many requests. Retry in {retry_delay_s} seconds."),
                    )
                };
                let item = json!({
                    "errorCode": { "quotaError": code },
                    "message": message,
                    "details": { "quotaErrorDetails": {
                        "rateScope": scope, "rateName": rate, "retryDelay": delay,
                    }},
                });
                ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "RESOURCE_EXHAUSTED",
                    "Resource has been exhausted (e.g. check quota).",
                )
                .with_detail(ads_failure(version, vec![item]))
                .with_detail(retry_info)
            }
        };
        err.retry_after_s = Some(retry_delay_s);
        err.faulted()
    }

    /// Injected 500 `INTERNAL` or 503 `UNAVAILABLE`.
    pub(super) fn server(api: Api<'_>, http: StatusCode) -> Self {
        let unavailable = http == StatusCode::SERVICE_UNAVAILABLE;
        let (status, message, internal) = if unavailable {
            (
                "UNAVAILABLE",
                "The service is currently unavailable.",
                "TRANSIENT_ERROR",
            )
        } else {
            ("INTERNAL", "Internal error encountered.", "INTERNAL_ERROR")
        };
        let mut err = ApiError::new(http, status, message);
        if let Api::Ads(version) = api {
            err = err.with_detail(ads_failure(
                version,
                vec![json!({
                    "errorCode": { "internalError": internal },
                    "message": "An internal error has occurred.",
                })],
            ));
        }
        err.faulted()
    }

    /// A Google Ads API error carrying a `GoogleAdsFailure` with `errors`.
    pub(super) fn ads(
        http: StatusCode,
        status: &'static str,
        version: &str,
        errors: Vec<AdsErrorItem>,
    ) -> Self {
        let message = match status {
            "INVALID_ARGUMENT" => "Request contains an invalid argument.",
            "PERMISSION_DENIED" => "The caller does not have permission",
            "UNAUTHENTICATED" => "Request had invalid authentication credentials.",
            _ => "The request failed.",
        };
        let first = errors
            .first()
            .map(|e| e.message.clone())
            .unwrap_or_default();
        let items = errors.iter().map(AdsErrorItem::to_json).collect();
        let mut err = ApiError::new(http, status, message).with_detail(ads_failure(version, items));
        // Sandbox choice: append the first error so the top-level message says what failed.
        if !first.is_empty() {
            err.message = format!("{message} {first}");
        }
        err
    }
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AuthProblem {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A token the sandbox never issued (or a malformed header).
    Invalid,
    /// An issued token past its lifetime.
    Expired,
}

/// One `GoogleAdsError` inside a `GoogleAdsFailure`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AdsErrorItem {
    /// `ErrorCode` oneof field, e.g. `conversionActionError`.
    pub kind: &'static str,
    /// Its enum value name, e.g. `DUPLICATE_NAME`.
    pub code: &'static str,
    /// Human-readable message (names fields, not values).
    pub message: String,
    /// `location.fieldPathElements`, as `(field_name, index)`.
    pub location: Vec<(String, Option<usize>)>,
}

impl AdsErrorItem {
    /// An error with no location.
    pub(super) fn new(kind: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        AdsErrorItem {
            kind,
            code,
            message: message.into(),
            location: Vec::new(),
        }
    }

    fn to_json(&self) -> Value {
        let mut item = json!({
            "errorCode": { self.kind: self.code },
            "message": self.message,
        });
        if !self.location.is_empty() {
            let elements: Vec<Value> = self
                .location
                .iter()
                .map(|(name, index)| match index {
                    Some(i) => json!({"fieldName": name, "index": i}),
                    None => json!({"fieldName": name}),
                })
                .collect();
            item["location"] = json!({ "fieldPathElements": elements });
        }
        item
    }
}

/// A `GoogleAdsFailure` detail at the given API version.
pub(super) fn ads_failure(version: &str, errors: Vec<Value>) -> Value {
    json!({
        "@type": format!("type.googleapis.com/google.ads.googleads.{version}.errors.GoogleAdsFailure"),
        "errors": errors,
        "requestId": ids::ads_request_id(),
    })
}

fn error_info(reason: &str, domain: &str, metadata: Value) -> Value {
    json!({
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": domain,
        "metadata": metadata,
    })
}

fn request_info(request_id: &str) -> Value {
    json!({
        "@type": "type.googleapis.com/google.rpc.RequestInfo",
        "requestId": request_id,
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": {
            "code": self.http.as_u16(),
            "message": self.message,
            "status": self.status,
            "details": self.details,
        }});
        let mut response = (self.http, Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(s) = self.retry_after_s {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.www_authenticate {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(
                    "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"",
                ),
            );
        }
        response
    }
}
