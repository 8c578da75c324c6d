//! `POST /token`: the refresh flow, expiry and OAuth errors.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use super::*;

fn form(c: &GoogleSandboxConfig) -> Vec<(&'static str, &str)> {
    vec![
        ("grant_type", "refresh_token"),
        ("client_id", &c.client_id),
        ("client_secret", &c.client_secret),
        ("refresh_token", &c.refresh_token),
    ]
}

#[tokio::test]
async fn refresh_grant_issues_a_bearer_token() {
    let h = start().await;
    let c = h.sandbox.config().clone();
    let a = h.token_request(&form(&c)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["token_type"], "Bearer");
    assert_eq!(a.body["expires_in"], 3600);
    assert!(a.body["scope"]
        .as_str()
        .unwrap()
        .contains("https://www.googleapis.com/auth/datamanager"));
    assert!(a.body["access_token"]
        .as_str()
        .unwrap()
        .starts_with("ya29."));
    assert_eq!(h.sandbox.report().tokens_issued, 1);

    // JSON bodies are accepted too.
    let body = json!({"grant_type": "refresh_token", "client_id": c.client_id, "client_secret": c.client_secret, "refresh_token": c.refresh_token});
    assert_eq!(
        h.post("/token", None, &[], &body).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn tokens_expire_after_their_ttl() {
    let h = start_with(GoogleSandboxConfig {
        access_token_ttl_s: 60,
        ..Default::default()
    })
    .await;
    let token = h.token().await;
    let action = h.seeded_action();
    let body = request(&action, vec![quickstart_event("t-1")]);
    assert_eq!(h.ingest(&token, &body).await.status, StatusCode::OK);
    h.sandbox.advance_clock(Duration::from_secs(59));
    assert_eq!(h.ingest(&token, &body).await.status, StatusCode::OK);
    let hook = h
        .post(
            "/_sandbox/google/clock",
            None,
            &[],
            &json!({"advance_s": 1}),
        )
        .await;
    assert_eq!(hook.status, StatusCode::NO_CONTENT);
    let a = h.ingest(&token, &body).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        a.body["error"]["details"][0]["reason"],
        "ACCESS_TOKEN_EXPIRED"
    );
}

#[tokio::test]
async fn oauth_errors_use_rfc6749_codes() {
    let h = start().await;
    let c = h.sandbox.config().clone();
    let with = |k: &'static str, v: &'static str| {
        let mut f = form(&c);
        f.retain(|(key, _)| *key != k);
        if !v.is_empty() {
            f.push((k, v));
        }
        f
    };
    let cases = [
        (
            with("refresh_token", "revoked"),
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            with("refresh_token", ""),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            with("client_id", "someone-else"),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            with("client_secret", "wrong"),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            with("grant_type", "password"),
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        (
            with("grant_type", ""),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (f, status, error) in &cases {
        let a = h.token_request(f).await;
        assert_eq!(a.status, *status, "{error}: {}", a.body);
        assert_eq!(a.body["error"], *error);
        assert!(a.body["error_description"].is_string());
    }
    let report = h.sandbox.report();
    assert_eq!(report.tokens_issued, 0);
    assert_eq!(report.rejections.len(), cases.len());
    assert!(report
        .rejections
        .iter()
        .all(|r| !r.message.contains(&c.client_secret)));
}

#[tokio::test]
async fn scripted_invalid_grant_refuses_the_next_refreshes_only() {
    let h = start().await;
    h.sandbox
        .push_fault(GoogleFault::InvalidGrant { count: 2 })
        .unwrap();
    let c = h.sandbox.config().clone();
    for _ in 0..2 {
        let a = h.token_request(&form(&c)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        assert_eq!(a.body["error"], "invalid_grant");
        assert_eq!(
            a.body["error_description"],
            "Token has been expired or revoked."
        );
    }
    assert_eq!(h.token_request(&form(&c)).await.status, StatusCode::OK);
    let report = h.sandbox.report();
    assert_eq!(report.rejections.iter().filter(|r| r.fault).count(), 2);
    assert_eq!(report.faults_fired, 2);
}

#[tokio::test]
async fn debug_output_redacts_secrets() {
    let c = GoogleSandboxConfig::default();
    let shown = format!("{c:?}");
    assert!(!shown.contains(&c.client_secret));
    assert!(!shown.contains(&c.refresh_token));
    assert!(shown.contains(&c.operating_account_id));
}
