//! OAuth 2.0 token endpoint look-alike (`POST https://oauth2.googleapis.com/token`)
//! and the bearer-token check the other endpoints share.
//!
//! Input: a refresh-token grant, form-encoded (`grant_type=refresh_token`,
//! `client_id`, `client_secret`, `refresh_token`; a JSON object is accepted
//! too, as Google's endpoint does). Output: `{"access_token","expires_in",
//! "scope","token_type":"Bearer"}`, or RFC 6749 §5.2 errors with Google's
//! wording: 400 `invalid_request` / `unsupported_grant_type` /
//! `invalid_grant`, 401 `invalid_client`.
//!
//! Invariants: tokens and secrets never reach logs or the report (only a
//! count of tokens issued); tokens expire `access_token_ttl_s` after issue on
//! the sandbox clock.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::error::{Api, AuthProblem};
use super::failure::{Failure, OAuthError};
use super::fault::{Fired, GoogleEndpoint};
use super::store::Store;
use super::{GoogleSandbox, SCOPES};

/// `POST /token`.
pub(super) async fn post_token(
    State(sandbox): State<GoogleSandbox>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (result, delay_ms) = token(&sandbox, &headers, &body);
    let response = sandbox.finish(GoogleEndpoint::Token, result);
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    response
}

fn token(
    sandbox: &GoogleSandbox,
    headers: &HeaderMap,
    body: &[u8],
) -> (Result<Response, Failure>, u64) {
    let config = sandbox.config();
    let mut store = sandbox.store();
    let now = store.now_ms();
    let mut delay_ms = 0;
    let mut revoked = false;
    match store.take_fault(GoogleEndpoint::Token, Api::DataManager) {
        Some(Fired::Fail(f)) => return (Err(f), 0),
        Some(Fired::Delay(ms)) => delay_ms = ms,
        Some(Fired::InvalidGrant) => revoked = true,
        Some(Fired::RejectEvent(_)) | None => {}
    }
    let bad =
        |http, error, description: &str| Err(OAuthError::new(http, error, description).into());
    let Some(params) = parse_params(headers, body) else {
        return (
            bad(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Invalid request body.",
            ),
            delay_ms,
        );
    };
    let param = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let result = match param("grant_type") {
        None => bad(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: grant_type",
        ),
        Some("refresh_token") => match (
            param("client_id"),
            param("client_secret"),
            param("refresh_token"),
        ) {
            (None, _, _) => bad(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Could not determine client ID from request.",
            ),
            (Some(id), _, _) if id != config.client_id => bad(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "The OAuth client was not found.",
            ),
            (_, secret, _) if secret != Some(config.client_secret.as_str()) => {
                bad(StatusCode::UNAUTHORIZED, "invalid_client", "Unauthorized")
            }
            (_, _, None) => bad(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Missing required parameter: refresh_token",
            ),
            _ if revoked => {
                let mut e = OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Token has been expired or revoked.",
                );
                e.fault = true;
                Err(e.into())
            }
            (_, _, Some(rt)) if rt != config.refresh_token => {
                bad(StatusCode::BAD_REQUEST, "invalid_grant", "Bad Request")
            }
            _ => Ok(issue(&mut store, config.access_token_ttl_s, now)),
        },
        Some(_) => bad(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Invalid grant_type.",
        ),
    };
    (result, delay_ms)
}

fn issue(store: &mut Store, ttl_s: u64, now: i64) -> Response {
    let ttl_ms = i64::try_from(ttl_s.saturating_mul(1000)).unwrap_or(i64::MAX);
    let token = store.issue_token(ttl_ms, now);
    tracing::info!(
        issued = store.tokens_issued(),
        "google sandbox issued access token"
    );
    let body = json!({
        "access_token": token,
        "expires_in": ttl_s,
        "scope": SCOPES,
        "token_type": "Bearer",
    });
    let mut response = Json(body).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, max-age=0, must-revalidate"),
    );
    response
}

/// Checks `Authorization: Bearer <token>` against the issued tokens.
pub(super) fn check_bearer(
    store: &Store,
    headers: &HeaderMap,
    now: i64,
) -> Result<(), AuthProblem> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(AuthProblem::Missing);
    };
    let value = value.to_str().map_err(|_| AuthProblem::Invalid)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthProblem::Invalid)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthProblem::Invalid);
    }
    store.check_token(token.trim(), now)
}

/// Form (or JSON) parameters of a token request.
fn parse_params(headers: &HeaderMap, body: &[u8]) -> Option<HashMap<String, String>> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type.trim_start().starts_with("application/json") {
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
            return None;
        };
        return map
            .into_iter()
            .map(|(k, v)| v.as_str().map(|s| (k, s.to_owned())))
            .collect();
    }
    parse_form(std::str::from_utf8(body).ok()?)
}

/// `application/x-www-form-urlencoded`: `+` is a space, `%XX` a byte; bad escapes fail.
pub(super) fn parse_form(text: &str) -> Option<HashMap<String, String>> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((decode(k)?, decode(v)?))
        })
        .collect()
}

fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        let p = parse_form("grant_type=refresh_token&client_id=a%2Bb&x=1+2&empty=").unwrap();
        assert_eq!(p["grant_type"], "refresh_token");
        assert_eq!(p["client_id"], "a+b");
        assert_eq!(p["x"], "1 2");
        assert_eq!(p["empty"], "");
        assert!(parse_form("a=%zz").is_none());
        assert!(parse_form("a=%2").is_none());
    }
}
