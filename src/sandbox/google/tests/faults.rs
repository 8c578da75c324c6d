//! Scripted faults through the Rust API and the `/_sandbox/google/` hooks, and the report hook.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::*;

fn retry_delay(body: &Value) -> Option<String> {
    body["error"]["details"]
        .as_array()?
        .iter()
        .find(|d| d["@type"] == "type.googleapis.com/google.rpc.RetryInfo")
        .and_then(|d| d["retryDelay"].as_str().map(str::to_owned))
}

#[tokio::test]
async fn rate_limited_ingest_answers_429_with_retry_info_then_recovers() {
    let h = start().await;
    let token = h.token().await;
    let action = h.seeded_action();
    h.sandbox
        .push_fault(GoogleFault::RateLimited {
            endpoint: GoogleEndpoint::Ingest,
            count: 2,
            retry_delay_s: 3,
        })
        .unwrap();
    let body = request(&action, vec![quickstart_event("r-1")]);
    for _ in 0..2 {
        let a = h.ingest(&token, &body).await;
        assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(a.body["error"]["status"], "RESOURCE_EXHAUSTED");
        assert_eq!(a.headers["retry-after"], "3");
        assert_eq!(retry_delay(&a.body).as_deref(), Some("3s"));
    }
    assert!(h.sandbox.report().accepted.is_empty());
    assert_eq!(h.ingest(&token, &body).await.status, StatusCode::OK);
    let r = h.sandbox.report();
    assert_eq!(r.requests["ingest"].by_status["429"], 2);
    assert_eq!(
        r.rejections
            .iter()
            .filter(|x| x.fault && x.status == 429)
            .count(),
        2
    );
    assert_eq!(r.pending_faults, 0);
}

#[tokio::test]
async fn rate_limited_ads_call_carries_quota_error_details() {
    let h = start().await;
    let token = h.token().await;
    let hook = h
        .post(
            "/_sandbox/google/faults",
            None,
            &[],
            &json!({"kind": "rate_limited", "endpoint": "mutate"}),
        )
        .await;
    assert_eq!(hook.status, StatusCode::OK);
    assert_eq!(hook.body["pending"], 1);
    let ops = json!({"operations": [{"create": {"name": "n", "type": "UPLOAD_CLICKS"}}]});
    let a = h.ads(&token, "conversionActions:mutate", &ops).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    let err = &a.body["error"]["details"][0]["errors"][0];
    assert_eq!(
        err["errorCode"]["quotaError"],
        "RESOURCE_TEMPORARILY_EXHAUSTED"
    );
    assert_eq!(err["details"]["quotaErrorDetails"]["retryDelay"], "2s");
    assert_eq!(retry_delay(&a.body).as_deref(), Some("2s"));
    assert!(h.sandbox.report().conversion_actions.is_empty());
    assert_eq!(
        h.ads(&token, "conversionActions:mutate", &ops).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn daily_quota_exhausted_says_so_with_a_long_delay() {
    let h = start().await;
    let token = h.token().await;
    let action = h.seeded_action();
    h.sandbox
        .push_fault(GoogleFault::DailyQuotaExhausted {
            endpoint: GoogleEndpoint::Ingest,
            count: 1,
            retry_delay_s: None,
        })
        .unwrap();
    let a = h
        .ingest(&token, &request(&action, vec![quickstart_event("d-1")]))
        .await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(a.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("daily quota is exhausted"));
    assert_eq!(retry_delay(&a.body).as_deref(), Some("40591s"));
    assert_eq!(a.headers["retry-after"], "40591");

    h.sandbox
        .push_fault(GoogleFault::DailyQuotaExhausted {
            endpoint: GoogleEndpoint::SearchStream,
            count: 1,
            retry_delay_s: Some(7200),
        })
        .unwrap();
    let a = h
        .ads(
            &token,
            "googleAds:searchStream",
            &json!({"query": "SELECT conversion_action.id FROM conversion_action"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    let err = &a.body["error"]["details"][0]["errors"][0];
    assert_eq!(err["errorCode"]["quotaError"], "RESOURCE_EXHAUSTED");
    assert!(err["message"]
        .as_str()
        .unwrap()
        .contains("daily quota is exhausted"));
    assert_eq!(retry_delay(&a.body).as_deref(), Some("7200s"));
}

#[tokio::test]
async fn server_errors_are_500_internal_and_503_unavailable() {
    let h = start().await;
    let token = h.token().await;
    let action = h.seeded_action();
    h.sandbox
        .push_fault(GoogleFault::ServerError {
            endpoint: GoogleEndpoint::Ingest,
            count: 1,
            status: 500,
        })
        .unwrap();
    h.sandbox
        .push_fault(GoogleFault::ServerError {
            endpoint: GoogleEndpoint::SearchStream,
            count: 1,
            status: 503,
        })
        .unwrap();
    h.sandbox
        .push_fault(GoogleFault::ServerError {
            endpoint: GoogleEndpoint::Token,
            count: 1,
            status: 503,
        })
        .unwrap();

    let a = h
        .ingest(&token, &request(&action, vec![quickstart_event("s-1")]))
        .await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(a.body["error"]["status"], "INTERNAL");
    let a = h
        .ads(
            &token,
            "googleAds:searchStream",
            &json!({"query": "SELECT conversion_action.id FROM conversion_action"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.body["error"]["status"], "UNAVAILABLE");
    let c = h.sandbox.config().clone();
    let t = h
        .token_request(&[
            ("grant_type", "refresh_token"),
            ("client_id", &c.client_id),
            ("client_secret", &c.client_secret),
            ("refresh_token", &c.refresh_token),
        ])
        .await;
    assert_eq!(t.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(t.body["error"], "temporarily_unavailable");
    assert!(h.sandbox.report().accepted.is_empty());

    let bad = h
        .post(
            "/_sandbox/google/faults",
            None,
            &[],
            &json!({"kind": "server_error", "endpoint": "ingest", "status": 502}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let bad = h
        .post(
            "/_sandbox/google/faults",
            None,
            &[],
            &json!({"kind": "server_error", "endpoint": "ingest", "statuss": 500}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn delayed_ingest_is_stored_then_answered_late() {
    let h = start().await;
    let token = h.token().await;
    let action = h.seeded_action();
    h.sandbox
        .push_fault(GoogleFault::Delay {
            endpoint: GoogleEndpoint::Ingest,
            count: 1,
            delay_ms: 300,
        })
        .unwrap();
    let t0 = Instant::now();
    let a = h
        .ingest(&token, &request(&action, vec![quickstart_event("slow-1")]))
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert_eq!(h.sandbox.report().accepted[&action].len(), 1);
}

#[tokio::test]
async fn expire_all_tokens_now_via_api_and_hook() {
    let h = start().await;
    let action = h.seeded_action();
    let body = request(&action, vec![quickstart_event("e-1")]);
    let token = h.token().await;
    h.sandbox
        .push_fault(GoogleFault::ExpireAccessTokens)
        .unwrap();
    let a = h.ingest(&token, &body).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        a.body["error"]["details"][0]["reason"],
        "ACCESS_TOKEN_EXPIRED"
    );

    let token = h.token().await;
    assert_eq!(h.ingest(&token, &body).await.status, StatusCode::OK);
    assert_eq!(
        h.post("/_sandbox/google/tokens/expire", None, &[], &json!({}))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        h.ingest(&token, &body).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn reject_event_fault_fails_the_whole_request_at_that_index() {
    let h = start().await;
    let token = h.token().await;
    let action = h.seeded_action();
    h.sandbox
        .push_fault(GoogleFault::RejectEvent { count: 1, index: 2 })
        .unwrap();
    let body = request(
        &action,
        (0..4)
            .map(|i| quickstart_event(&format!("x-{i}")))
            .collect(),
    );
    let a = h.ingest(&token, &body).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(violation_field(&a.body), "events[2]");
    assert_eq!(violation_reason(&a.body), "INVALID_EVENT");
    assert!(h.sandbox.report().accepted.is_empty());
    assert_eq!(h.ingest(&token, &body).await.status, StatusCode::OK);
    assert_eq!(h.sandbox.report().accepted[&action].len(), 4);
}

#[tokio::test]
async fn report_hook_reads_and_clears() {
    let h = start().await;
    let token = h.token().await;
    let action = h.seeded_action();
    let seeded = h
        .post(
            "/_sandbox/google/conversion_actions",
            None,
            &[],
            &json!({"name": "lead", "category": "SUBMIT_LEAD_FORM"}),
        )
        .await;
    assert_eq!(seeded.status, StatusCode::OK, "{}", seeded.body);
    let body = request(&action, vec![quickstart_event("rep-1")]);
    // Five concurrent copies of one event: one stored, four deduplicated.
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let req = h
            .client
            .post(format!("{}/v1/events:ingest", h.base))
            .bearer_auth(&token)
            .json(&body);
        set.spawn(async move { req.send().await.unwrap().status() });
    }
    while let Some(status) = set.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::OK);
    }
    h.sandbox
        .push_fault(GoogleFault::Delay {
            endpoint: GoogleEndpoint::Mutate,
            count: 3,
            delay_ms: 1,
        })
        .unwrap();

    let r = h.get("/_sandbox/google/report", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["accepted"][&action].as_array().unwrap().len(), 1);
    assert_eq!(r.body["deduplicated"], 4);
    assert_eq!(r.body["requests"]["ingest"]["total"], 5);
    assert!(
        r.body["requests"]["ingest"]["peak_requests_per_second"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert_eq!(r.body["requests"]["token"]["total"], 1);
    assert_eq!(r.body["tokens_issued"], 1);
    assert_eq!(r.body["pending_faults"], 3);
    assert_eq!(r.body["conversion_actions"].as_array().unwrap().len(), 2);
    assert_eq!(r.body["conversion_actions"][1]["type"], "UPLOAD_CLICKS");
    assert_eq!(r.body["conversion_actions"][1]["on_hold"], false);
    let text = r.body.to_string();
    assert!(!text.contains(&token), "the report never shows tokens");

    let del = h
        .client
        .delete(format!("{}/_sandbox/google/report", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), StatusCode::NO_CONTENT);
    let r = h.sandbox.report();
    assert!(r.accepted.is_empty() && r.requests.is_empty() && r.pending_faults == 0);
    assert_eq!(r.conversion_actions.len(), 2, "actions survive a clear");
    assert_eq!(
        h.ingest(&token, &body).await.status,
        StatusCode::OK,
        "tokens survive a clear"
    );
}
