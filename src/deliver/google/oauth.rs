//! OAuth 2.0 refresh-token flow for Google's APIs (spec/google.md §1).
//!
//! `POST {oauth_token_url}` with `grant_type=refresh_token`, the client ID
//! and secret and the refresh token (form-encoded) → an access token and its
//! lifetime. The token is cached and refreshed a minute before it expires,
//! or at once after the API said it is no longer valid. `invalid_grant`
//! (revoked or expired refresh token) and `invalid_client` need the
//! operator: they are [`TokenError::NeedsOperator`], which pauses the
//! destination instead of failing events. Secrets never reach a log line or
//! an error message.

use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Mutex;

use crate::config::{GoogleConfig, Secret};
use crate::deliver::http;

/// Refresh this long before the token's announced expiry.
const EARLY: Duration = Duration::from_secs(60);
/// Scope the Data Manager API requires.
pub const SCOPE: &str = "https://www.googleapis.com/auth/datamanager";

/// Why no access token could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The credentials are wrong or revoked: pause, tell the operator.
    #[error("{0}")]
    NeedsOperator(String),
    /// The token endpoint is unreachable or failing: retry later.
    #[error("{0}")]
    Transient(String),
}

#[derive(Debug)]
struct Cached {
    token: Secret,
    refresh_at: Instant,
}

/// A cached access token for one set of credentials.
#[derive(Debug)]
pub struct Oauth {
    url: reqwest::Url,
    client_id: String,
    client_secret: Secret,
    refresh_token: Secret,
    http: reqwest::Client,
    cache: Mutex<Option<Cached>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct TokenFailure {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// `application/x-www-form-urlencoded` for one value.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Oauth {
    /// For the destination's credentials.
    pub fn new(config: &GoogleConfig) -> Oauth {
        Oauth {
            url: config.oauth_token_url.clone(),
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
            refresh_token: config.refresh_token.clone(),
            http: http::client(config.delivery.timeout),
            cache: Mutex::new(None),
        }
    }

    /// A valid access token, from the cache or freshly refreshed.
    pub async fn token(&self) -> Result<Secret, TokenError> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref().filter(|c| Instant::now() < c.refresh_at) {
            return Ok(c.token.clone());
        }
        let fresh = self.refresh().await?;
        let token = fresh.token.clone();
        *cache = Some(fresh);
        Ok(token)
    }

    /// Forgets the cached token (the API answered 401 with it).
    pub async fn invalidate(&self) {
        *self.cache.lock().await = None;
    }

    async fn refresh(&self) -> Result<Cached, TokenError> {
        let body = format!(
            "grant_type=refresh_token&client_id={}&client_secret={}&refresh_token={}",
            form_encode(&self.client_id),
            form_encode(self.client_secret.expose()),
            form_encode(self.refresh_token.expose()),
        );
        let request = self
            .http
            .post(self.url.clone())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body);
        let answer = http::send(request, "google oauth token endpoint")
            .await
            .map_err(|a| TokenError::Transient(format!("{a:?}")))?;
        if (200..300).contains(&answer.status) {
            let t: TokenAnswer = serde_json::from_slice(&answer.body).map_err(|e| {
                TokenError::Transient(format!(
                    "google oauth: HTTP {} with an unreadable token answer ({e})",
                    answer.status
                ))
            })?;
            let life = Duration::from_secs(t.expires_in.unwrap_or(3600));
            return Ok(Cached {
                token: Secret::new(t.access_token),
                refresh_at: Instant::now() + life.saturating_sub(EARLY),
            });
        }
        let failure: Option<TokenFailure> = serde_json::from_slice(&answer.body).ok();
        let (error, description) =
            failure.map_or((String::new(), None), |f| (f.error, f.error_description));
        let description = description.map(|d| http::short(&d)).unwrap_or_default();
        match error.as_str() {
            "invalid_grant" => Err(TokenError::NeedsOperator(format!(
                "google oauth: invalid_grant ({description}): the refresh token is expired or revoked. Remedy: create a new refresh token with the {SCOPE} scope and set destinations.google.refresh_token (CAPI_CDC_DESTINATIONS__GOOGLE__REFRESH_TOKEN)"
            ))),
            "invalid_client" | "unauthorized_client" => Err(TokenError::NeedsOperator(format!(
                "google oauth: {error} ({description}): check destinations.google.client_id and client_secret"
            ))),
            _ if answer.status >= 500 || answer.status == 429 => Err(TokenError::Transient(format!(
                "google oauth: HTTP {} {error}",
                answer.status
            ))),
            _ => Err(TokenError::NeedsOperator(format!(
                "google oauth: HTTP {} {error} ({description}): check the destinations.google OAuth settings",
                answer.status
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_percent_encoded() {
        assert_eq!(form_encode("a b/c+d=e&f"), "a%20b%2Fc%2Bd%3De%26f");
        assert_eq!(form_encode("1//0gAbC-_.~"), "1%2F%2F0gAbC-_.~");
    }
}
