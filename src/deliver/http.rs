//! The one place requests leave: send, map transport failures, parse
//! `Retry-After`. Platform modules build the request and classify the
//! [`Answer`]; they never talk to reqwest's errors themselves.

use std::time::Duration;

use super::Attempt;

/// An HTTP answer, read whole.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// `Retry-After` in seconds, when the platform sent one.
    pub retry_after: Option<Duration>,
    /// The body.
    pub body: Vec<u8>,
}

/// A client for one destination: its timeout and our user agent.
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("capi-cdc/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// Sends `request`; a timeout or network failure is a transient [`Attempt`]
/// naming `endpoint` (never the URL, which may carry identifiers).
pub async fn send(request: reqwest::RequestBuilder, endpoint: &str) -> Result<Answer, Attempt> {
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            return Err(Attempt::Transient {
                reason: format!("{endpoint}: no answer within the timeout"),
            })
        }
        Err(e) => {
            return Err(Attempt::Transient {
                reason: format!("{endpoint}: request failed: {}", without_url(&e)),
            })
        }
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    match response.bytes().await {
        Ok(body) => Ok(Answer {
            status,
            retry_after,
            body: body.to_vec(),
        }),
        Err(e) => Err(Attempt::Transient {
            reason: format!(
                "{endpoint}: HTTP {status}, body unreadable: {}",
                without_url(&e)
            ),
        }),
    }
}

/// reqwest errors print the URL; keep logs short and free of query strings.
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<endpoint>");
    }
    text
}

/// Longest platform message kept as a reason.
pub const MAX_REASON_CHARS: usize = 300;

/// A platform message cut to [`MAX_REASON_CHARS`].
pub fn short(message: &str) -> String {
    let m: String = message.chars().take(MAX_REASON_CHARS).collect();
    if m.is_empty() {
        "no message".into()
    } else {
        m
    }
}
