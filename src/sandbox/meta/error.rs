//! Graph API error envelope, as the sandbox returns it.
//!
//! Input: a failed check (code, optional subcode, wording). Output: an HTTP
//! response with Meta's body `{"error":{message,type,code,error_subcode?,
//! error_user_title?,error_user_msg?,is_transient,fbtrace_id}}`.
//! Invariant: messages name parameters (`data[0][user_data][em]`), never the
//! values sent, so a rejection can be shown or stored without leaking PII.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use sha2::{Digest, Sha256};

/// Graph "invalid parameter": every CAPI validation failure.
pub const INVALID_PARAMETER: u32 = 100;
/// Graph "invalid OAuth access token".
pub const INVALID_TOKEN: u32 = 190;
/// Graph "service temporarily unavailable" (retryable).
pub const SERVICE_UNAVAILABLE: u32 = 2;
/// Graph "application request limit reached" (throttling, retryable).
pub const APP_RATE_LIMIT: u32 = 4;

/// Subcode: object (pixel) does not exist or the token may not use it.
pub const SUB_UNKNOWN_OBJECT: u32 = 33;
/// Subcode: "Click ID Incorrectly Formatted" (`fbc`).
pub const SUB_BAD_FBC: u32 = 2_804_001;
/// Subcode: "Event Timestamp Too Old" (beyond 7 days).
pub const SUB_TOO_OLD: u32 = 2_804_003;
/// Subcode: "User Parameter Not Hashed".
pub const SUB_NOT_HASHED: u32 = 2_804_016;
/// Subcode: insufficient customer information (baseline matching rule).
pub const SUB_INSUFFICIENT_INFO: u32 = 2_804_050;

/// One Graph error, ready to be turned into a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphError {
    /// HTTP status (Graph answers 400 for validation and token errors).
    pub status: StatusCode,
    /// Graph `code`.
    pub code: u32,
    /// Graph `error_subcode`; absent from the body when `None`, as in Graph.
    pub subcode: Option<u32>,
    /// Graph `message`.
    pub message: String,
    /// `error_user_title`, for the subcoded CAPI errors.
    pub user_title: Option<&'static str>,
    /// `error_user_msg`: which parameter failed and why.
    pub user_msg: Option<String>,
    /// Graph `is_transient`.
    pub transient: bool,
    /// `Retry-After` header in seconds (throttling only).
    pub retry_after_s: Option<u64>,
}

impl GraphError {
    /// Code 100 without subcode: `(#100) {detail}`.
    pub fn invalid(detail: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            INVALID_PARAMETER,
            format!("(#100) {detail}"),
        )
    }

    /// Code 100 with a CAPI subcode, titled the way Events Manager shows it.
    pub fn invalid_sub(subcode: u32, title: &'static str, detail: impl Into<String>) -> Self {
        GraphError {
            subcode: Some(subcode),
            user_title: Some(title),
            user_msg: Some(detail.into()),
            ..Self::new(
                StatusCode::BAD_REQUEST,
                INVALID_PARAMETER,
                "Invalid parameter".into(),
            )
        }
    }

    /// Code 190; Graph answers token problems with HTTP 400, not 401.
    pub fn token(detail: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            INVALID_TOKEN,
            format!("Invalid OAuth access token - {detail}"),
        )
    }

    /// Code 100 / 33 for a pixel id that does not exist.
    pub fn unknown_object(id: &str) -> Self {
        GraphError {
            subcode: Some(SUB_UNKNOWN_OBJECT),
            ..Self::new(
                StatusCode::BAD_REQUEST,
                INVALID_PARAMETER,
                format!(
                    "Unsupported post request. Object with ID '{id}' does not exist, cannot be \
                     loaded due to missing permissions, or does not support this operation."
                ),
            )
        }
    }

    /// Injected throttling: HTTP 429, code 4, `Retry-After`.
    pub fn throttled(retry_after_s: u64) -> Self {
        GraphError {
            transient: true,
            retry_after_s: Some(retry_after_s),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                APP_RATE_LIMIT,
                "(#4) Application request limit reached".into(),
            )
        }
    }

    /// Injected server failure: HTTP 5xx, code 2, transient.
    pub fn unavailable(status: StatusCode) -> Self {
        GraphError {
            transient: true,
            ..Self::new(
                status,
                SERVICE_UNAVAILABLE,
                "Service temporarily unavailable".into(),
            )
        }
    }

    fn new(status: StatusCode, code: u32, message: String) -> Self {
        GraphError {
            status,
            code,
            subcode: None,
            message,
            user_title: None,
            user_msg: None,
            transient: false,
            retry_after_s: None,
        }
    }
}

impl IntoResponse for GraphError {
    fn into_response(self) -> Response {
        let trace = fbtrace_id();
        let mut error = json!({
            "message": self.message,
            "type": "OAuthException",
            "code": self.code,
            "is_transient": self.transient,
            "fbtrace_id": trace,
        });
        if let Some(sub) = self.subcode {
            error["error_subcode"] = sub.into();
        }
        if let Some(title) = self.user_title {
            error["error_user_title"] = title.into();
        }
        if let Some(msg) = self.user_msg {
            error["error_user_msg"] = msg.into();
        }
        let mut response = (self.status, Json(json!({ "error": error }))).into_response();
        let headers = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&trace) {
            headers.insert("x-fb-trace-id", v);
        }
        if let Some(s) = self.retry_after_s {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

/// An opaque, unique id shaped like Meta's (`A` + 26 url-safe characters).
pub fn fbtrace_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let digest = Sha256::new()
        .chain_update(n.to_le_bytes())
        .chain_update(nanos.to_le_bytes())
        .finalize();
    let mut id = String::from("A");
    id.extend(
        digest
            .iter()
            .take(26)
            .map(|b| char::from(ALPHABET[usize::from(b & 63)])),
    );
    id
}
