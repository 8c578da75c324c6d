//! `events:ingest` and `requestStatus:retrieve`: acceptance, dedup, validateOnly,
//! auth, request status and the 6-hour hold.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use super::*;

#[tokio::test]
async fn quickstart_shaped_request_is_accepted_and_stored_as_received() {
    let h = start().await;
    let token = h.token().await;
    let action = h.seeded_action();
    let event = quickstart_event("ABC798654321");
    let body = request(&action, vec![event.clone()]);
    let a = h.ingest(&token, &body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let request_id = a.body["requestId"].as_str().unwrap().to_owned();
    assert_eq!(request_id.len(), 36);
    assert_eq!(a.body.as_object().unwrap().len(), 1);

    let report = h.sandbox.report();
    let stored = &report.accepted[&action];
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].event, event);
    assert_eq!(stored[0].transaction_id, "ABC798654321");
    assert_eq!(stored[0].request_id, request_id);
    assert_eq!(stored[0].ad_user_data, "CONSENT_GRANTED");
    assert_eq!(report.requests["ingest"].by_status["200"], 1);

    let s = h
        .get(
            &format!("/v1/requestStatus:retrieve?requestId={request_id}"),
            Some(&token),
        )
        .await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.body);
    let per = &s.body["requestStatusPerDestination"][0];
    assert_eq!(per["requestStatus"], "SUCCESS");
    assert_eq!(per["eventsIngestionStatus"]["recordCount"], "1");
    assert_eq!(per["destination"], body["destinations"][0]);
    // The proto name of the query parameter works too.
    let s = h
        .get(
            &format!("/v1/requestStatus:retrieve?request_id={request_id}"),
            Some(&token),
        )
        .await;
    assert_eq!(s.status, StatusCode::OK);
}

#[tokio::test]
async fn proto_field_names_and_deprecated_product_are_accepted() {
    let h = start().await;
    let token = h.token().await;
    let action = h.seeded_action();
    let body = json!({
        "destinations": [{
            "operating_account": { "product": "GOOGLE_ADS", "account_id": ACCOUNT },
            "product_destination_id": action
        }],
        "events": [{
            "transaction_id": "order-1",
            "event_timestamp": hours_ago(1),
            "ad_identifiers": { "gbraid": "GBRAID_1", "landing_page_device_info": { "ip_address": "2001:db8::1", "screen_width": "1280" } }
        }]
    });
    let a = h.ingest(&token, &body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

#[tokio::test]
async fn duplicates_are_counted_not_stored_and_restatements_update_the_value() {
    let h = start().await;
    let token = h.token().await;
    let action = h.seeded_action();
    let e = quickstart_event("order-77");
    for _ in 0..2 {
        assert_eq!(
            h.ingest(&token, &request(&action, vec![e.clone()]))
                .await
                .status,
            StatusCode::OK
        );
    }
    let mut refund = e.clone();
    refund["conversionValue"] = json!(0.5);
    assert_eq!(
        h.ingest(&token, &request(&action, vec![refund]))
            .await
            .status,
        StatusCode::OK
    );
    // The same transactionId twice in one request is also one conversion.
    let twice = request(
        &action,
        vec![quickstart_event("order-78"), quickstart_event("order-78")],
    );
    assert_eq!(h.ingest(&token, &twice).await.status, StatusCode::OK);

    let report = h.sandbox.report();
    let stored = &report.accepted[&action];
    assert_eq!(stored.len(), 2);
    assert_eq!(report.deduplicated, 3);
    assert_eq!(stored[0].duplicates, 2);
    assert_eq!(stored[0].restatements.len(), 1);
    assert_eq!(stored[0].conversion_value, Some(0.5));
    assert_eq!(stored[0].event, e, "the first copy is kept as received");
}

#[tokio::test]
async fn events_route_by_destination_reference_and_dedup_per_action() {
    let h = start().await;
    let token = h.token().await;
    let a1 = h.sandbox.seed_conversion_action("purchase", "PURCHASE");
    let a2 = h
        .sandbox
        .seed_conversion_action("add to cart", "ADD_TO_CART");
    let dest = |r: &str, id: &str| json!({"reference": r, "operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": ACCOUNT}, "productDestinationId": id});
    let mut only_first = quickstart_event("t-1");
    only_first["destinationReferences"] = json!(["p"]);
    let both = quickstart_event("t-2");
    let body = json!({"destinations": [dest("p", &a1), dest("c", &a2)], "encoding": "HEX", "events": [only_first, both]});
    let a = h.ingest(&token, &body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let r = h.sandbox.report();
    assert_eq!(r.accepted[&a1].len(), 2);
    assert_eq!(r.accepted[&a2].len(), 1);

    let id = a.body["requestId"].as_str().unwrap();
    let s = h
        .get(
            &format!("/v1/requestStatus:retrieve?requestId={id}"),
            Some(&token),
        )
        .await;
    let counts: Vec<_> = s.body["requestStatusPerDestination"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["eventsIngestionStatus"]["recordCount"].clone())
        .collect();
    assert_eq!(counts, [json!("2"), json!("1")]);
}

#[tokio::test]
async fn validate_only_stores_nothing_and_skips_the_numeric_transaction_id_rule() {
    let h = start().await;
    let token = h.token().await;
    let action = h.seeded_action();
    let mut body = request(&action, vec![quickstart_event("41")]);
    body["validateOnly"] = json!(true);
    let a = h.ingest(&token, &body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let id = a.body["requestId"].as_str().unwrap().to_owned();
    let r = h.sandbox.report();
    assert!(r.accepted.is_empty());
    assert_eq!(r.validate_only_requests, 1);
    let s = h
        .get(
            &format!("/v1/requestStatus:retrieve?requestId={id}"),
            Some(&token),
        )
        .await;
    assert_eq!(s.status, StatusCode::NOT_FOUND);

    // Other rules still apply under validateOnly.
    body["events"][0]["currency"] = json!("usd");
    let a = h.ingest(&token, &body).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(violation_reason(&a.body), "INVALID_CURRENCY_CODE");
}

#[tokio::test]
async fn denied_ad_user_data_shows_as_processing_errors_in_request_status() {
    let h = start().await;
    let token = h.token().await;
    let action = h.seeded_action();
    let mut denied = quickstart_event("c-1");
    denied.as_object_mut().unwrap().remove("consent");
    let mut body = request(&action, vec![denied, quickstart_event("c-2")]);
    // Request-level consent applies where the event sets none.
    body["consent"] = json!({"adUserData": "CONSENT_DENIED"});
    let a = h.ingest(&token, &body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let id = a.body["requestId"].as_str().unwrap();
    let s = h
        .get(
            &format!("/v1/requestStatus:retrieve?requestId={id}"),
            Some(&token),
        )
        .await;
    let per = &s.body["requestStatusPerDestination"][0];
    assert_eq!(per["requestStatus"], "PARTIAL_SUCCESS");
    assert_eq!(
        per["errorInfo"]["errorCounts"][0]["reason"],
        "PROCESSING_ERROR_REASON_DENIED_CONSENT"
    );
    assert_eq!(per["errorInfo"]["errorCounts"][0]["recordCount"], "1");
    let stored = &h.sandbox.report().accepted[&action];
    assert_eq!(stored[0].ad_user_data, "CONSENT_DENIED");
    assert_eq!(stored[1].ad_user_data, "CONSENT_GRANTED");
}

#[tokio::test]
async fn request_status_needs_a_known_id_and_a_token() {
    let h = start().await;
    let token = h.token().await;
    let a = h
        .get("/v1/requestStatus:retrieve?requestId=nope", Some(&token))
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.body["error"]["status"], "NOT_FOUND");
    let a = h.get("/v1/requestStatus:retrieve", Some(&token)).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(violation_field(&a.body), "request_id");
    let a = h.get("/v1/requestStatus:retrieve?requestId=x", None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn missing_unknown_and_expired_tokens_get_401_unauthenticated() {
    let h = start().await;
    let action = h.seeded_action();
    let body = request(&action, vec![quickstart_event("a-1")]);

    let a = h.post("/v1/events:ingest", None, &[], &body).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.body["error"]["code"], 401);
    assert_eq!(a.body["error"]["status"], "UNAUTHENTICATED");
    assert_eq!(
        a.body["error"]["details"][0]["reason"],
        "CREDENTIALS_MISSING"
    );

    let a = h.ingest("ya29.not-issued", &body).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.headers.contains_key("www-authenticate"));

    let token = h.token().await;
    h.sandbox.advance_clock(Duration::from_secs(3600));
    let a = h.ingest(&token, &body).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        a.body["error"]["details"][0]["reason"],
        "ACCESS_TOKEN_EXPIRED"
    );
    assert!(h.sandbox.report().accepted.is_empty());
    // Refreshing gives a working token again.
    let fresh = h.token().await;
    assert_eq!(h.ingest(&fresh, &body).await.status, StatusCode::OK);
}

#[tokio::test]
async fn new_actions_are_held_for_six_hours_and_backdating_lifts_the_hold() {
    let h = start().await;
    let token = h.token().await;
    let created = h
        .ads(&token, "conversionActions:mutate", &json!({"operations": [{"create": {
            "name": "capi-cdc – purchase", "category": "PURCHASE", "type": "UPLOAD_CLICKS", "status": "ENABLED"
        }}]}))
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let resource = created.body["results"][0]["resourceName"].as_str().unwrap();
    let id = resource.rsplit('/').next().unwrap().to_owned();
    assert!(h.sandbox.report().conversion_actions[0].on_hold);

    let body = request(&id, vec![quickstart_event("h-1")]);
    let a = h.ingest(&token, &body).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        violation_field(&a.body),
        "destinations[0].product_destination_id"
    );
    assert!(a.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("TOO_RECENT_CONVERSION_ACTION"));

    // Five hours is not enough; the hook adds the sixth.
    h.sandbox
        .backdate_conversion_action(&id, Duration::from_secs(5 * 3600))
        .unwrap();
    assert_eq!(
        h.ingest(&token, &body).await.status,
        StatusCode::BAD_REQUEST
    );
    let hook = h
        .post(
            &format!("/_sandbox/google/conversion_actions/{id}/backdate"),
            None,
            &[],
            &json!({"hours": 1}),
        )
        .await;
    assert_eq!(hook.status, StatusCode::NO_CONTENT);
    assert_eq!(h.ingest(&token, &body).await.status, StatusCode::OK);
    assert!(h
        .sandbox
        .backdate_conversion_action("999", Duration::ZERO)
        .is_err());
}

#[tokio::test]
async fn events_older_than_the_actions_lookback_window_are_refused() {
    let h = start().await;
    let token = h.token().await;
    let created = h
        .ads(
            &token,
            "conversionActions:mutate",
            &json!({"operations": [{"create": {
                "name": "short window", "category": "PURCHASE", "type": "UPLOAD_CLICKS",
                "clickThroughLookbackWindowDays": "30"
            }}]}),
        )
        .await;
    let resource = created.body["results"][0]["resourceName"].as_str().unwrap();
    let id = resource.rsplit('/').next().unwrap().to_owned();
    h.sandbox
        .backdate_conversion_action(&id, Duration::from_secs(7 * 3600))
        .unwrap();
    let mut old = quickstart_event("old-1");
    old["eventTimestamp"] = json!(hours_ago(31 * 24));
    let a = h.ingest(&token, &request(&id, vec![old.clone()])).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(violation_reason(&a.body), "EVENT_TIME_INVALID");
    // The default (90-day) window of a seeded action takes it.
    let seeded = h.seeded_action();
    assert_eq!(
        h.ingest(&token, &request(&seeded, vec![old])).await.status,
        StatusCode::OK
    );
}
