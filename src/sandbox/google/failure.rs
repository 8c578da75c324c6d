//! What every handler returns on failure: a `google.rpc.Status` envelope or an
//! OAuth token error, plus what the report records about it.
//!
//! Input: an [`ApiError`] or an [`OAuthError`]. Output: the HTTP response and,
//! for the report, status code, label and message. OAuth errors follow
//! RFC 6749 §5.2 (`{"error","error_description"}`) with Google's wording.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::error::ApiError;

/// An OAuth 2.0 token-endpoint error (`oauth2.googleapis.com/token`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OAuthError {
    /// HTTP status (400 for grant errors, 401 for client errors).
    pub http: StatusCode,
    /// `error`, e.g. `invalid_grant`.
    pub error: &'static str,
    /// `error_description`.
    pub description: String,
    /// `Retry-After` header, in seconds.
    pub retry_after_s: Option<u64>,
    /// Produced by an injected fault rather than a check.
    pub fault: bool,
}

impl OAuthError {
    /// An OAuth error from a check.
    pub(super) fn new(
        http: StatusCode,
        error: &'static str,
        description: impl Into<String>,
    ) -> Self {
        OAuthError {
            http,
            error,
            description: description.into(),
            retry_after_s: None,
            fault: false,
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.error, "error_description": self.description });
        let mut response = (self.http, Json(body)).into_response();
        if let Some(s) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

/// Any error answer the sandbox gives, with what the report records about it.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Failure {
    /// A `google.rpc.Status` envelope.
    Api(ApiError),
    /// An OAuth token-endpoint error.
    OAuth(OAuthError),
}

impl Failure {
    /// HTTP status code.
    pub(super) fn http_status(&self) -> u16 {
        match self {
            Failure::Api(e) => e.http.as_u16(),
            Failure::OAuth(e) => e.http.as_u16(),
        }
    }

    /// Canonical status or OAuth `error` code.
    pub(super) fn label(&self) -> &str {
        match self {
            Failure::Api(e) => e.status,
            Failure::OAuth(e) => e.error,
        }
    }

    /// The message shown to the client.
    pub(super) fn message(&self) -> &str {
        match self {
            Failure::Api(e) => &e.message,
            Failure::OAuth(e) => &e.description,
        }
    }

    /// Whether an injected fault produced it.
    pub(super) fn is_fault(&self) -> bool {
        match self {
            Failure::Api(e) => e.fault,
            Failure::OAuth(e) => e.fault,
        }
    }

    /// The HTTP answer.
    pub(super) fn into_response(self) -> Response {
        match self {
            Failure::Api(e) => e.into_response(),
            Failure::OAuth(e) => e.into_response(),
        }
    }
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure::Api(e)
    }
}

impl From<OAuthError> for Failure {
    fn from(e: OAuthError) -> Self {
        Failure::OAuth(e)
    }
}
