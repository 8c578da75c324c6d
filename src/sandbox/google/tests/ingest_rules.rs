//! Every invalid request is refused whole, names the field path, and stores nothing.

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::*;

/// One broken request: how to break it and what the answer must name.
struct Case {
    name: &'static str,
    mutate: fn(&mut Value),
    /// Substring of `error.message`.
    message: &'static str,
    /// `fieldViolations[0].field` (proto names).
    field: &'static str,
    /// `fieldViolations[0].reason`, or "" for JSON-mapping errors (which carry none).
    reason: &'static str,
}

fn ev(body: &mut Value, i: usize) -> &mut Value {
    &mut body["events"][i]
}

const CASES: &[Case] = &[
    Case {
        name: "unknown field inside adIdentifiers",
        mutate: |b| ev(b, 1)["adIdentifiers"]["gclidd"] = json!("x"),
        message: "Unknown name \"gclidd\" at 'events[1].adIdentifiers'",
        field: "events[1].ad_identifiers",
        reason: "",
    },
    Case {
        name: "unknown top-level field",
        mutate: |b| b["partialFailure"] = json!(true),
        message: "Unknown name \"partialFailure\"",
        field: "",
        reason: "",
    },
    Case {
        name: "numeric transactionId",
        mutate: |b| ev(b, 1)["transactionId"] = json!("41"),
        message: "events[1].transactionId",
        field: "events[1].transaction_id",
        reason: "INVALID_FORMAT",
    },
    Case {
        name: "missing transactionId",
        mutate: |b| {
            ev(b, 0).as_object_mut().unwrap().remove("transactionId");
        },
        message: "events[0].transactionId",
        field: "events[0].transaction_id",
        reason: "REQUIRED_FIELD_MISSING",
    },
    Case {
        name: "2001 events",
        mutate: |b| {
            let e = b["events"][0].clone();
            b["events"] = Value::Array((0..2001).map(|i| {
                let mut e = e.clone();
                e["transactionId"] = json!(format!("bulk-{i}"));
                e
            }).collect());
        },
        message: "events: At most 2000 events",
        field: "events",
        reason: "TOO_MANY_EVENTS",
    },
    Case {
        name: "11 user identifiers",
        mutate: |b| {
            let ids: Vec<Value> = (0..11).map(|i| json!({"emailAddress": hex64(i)})).collect();
            ev(b, 1)["userData"]["userIdentifiers"] = Value::Array(ids);
        },
        message: "events[1].userData.userIdentifiers",
        field: "events[1].user_data.user_identifiers",
        reason: "TOO_MANY_USER_IDENTIFIERS",
    },
    Case {
        name: "bad eventSource enum",
        mutate: |b| ev(b, 0)["eventSource"] = json!("WEBSITE"),
        message: "Invalid value at 'events[0].eventSource' (type.googleapis.com/google.ads.datamanager.v1.EventSource)",
        field: "events[0].event_source",
        reason: "",
    },
    Case {
        name: "Ads-API consent value in a Data Manager field",
        mutate: |b| ev(b, 0)["consent"]["adUserData"] = json!("GRANTED"),
        message: "events[0].consent.adUserData",
        field: "events[0].consent.ad_user_data",
        reason: "",
    },
    Case {
        name: "user data without encoding",
        mutate: |b| {
            b.as_object_mut().unwrap().remove("encoding");
        },
        message: "encoding",
        field: "encoding",
        reason: "REQUIRED_FIELD_MISSING",
    },
    Case {
        name: "63-character hash",
        mutate: |b| ev(b, 1)["userData"]["userIdentifiers"][0]["emailAddress"] = json!(&hex64(1)[1..]),
        message: "events[1].userData.userIdentifiers[0].emailAddress",
        field: "events[1].user_data.user_identifiers[0].email_address",
        reason: "INVALID_HEX_ENCODING",
    },
    Case {
        name: "unhashed email",
        mutate: |b| ev(b, 0)["userData"]["userIdentifiers"][0]["emailAddress"] = json!("jane@example.com"),
        message: "events[0].userData.userIdentifiers[0].emailAddress",
        field: "events[0].user_data.user_identifiers[0].email_address",
        reason: "INVALID_HEX_ENCODING",
    },
    Case {
        name: "uppercase hex digest",
        mutate: |b| ev(b, 0)["userData"]["userIdentifiers"][1]["phoneNumber"] = json!(hex64(0xab).to_uppercase()),
        message: "events[0].userData.userIdentifiers[1].phoneNumber",
        field: "events[0].user_data.user_identifiers[1].phone_number",
        reason: "INVALID_SHA256_FORMAT",
    },
    Case {
        name: "hex digest under BASE64 encoding",
        mutate: |b| b["encoding"] = json!("BASE64"),
        message: "events[0].userData.userIdentifiers[0].emailAddress",
        field: "events[0].user_data.user_identifiers[0].email_address",
        reason: "INVALID_SHA256_FORMAT",
    },
    Case {
        name: "hashed family name missing",
        mutate: |b| {
            ev(b, 0)["userData"]["userIdentifiers"][2]["address"].as_object_mut().unwrap().remove("familyName");
        },
        message: "events[0].userData.userIdentifiers[2].address.familyName",
        field: "events[0].user_data.user_identifiers[2].address.family_name",
        reason: "REQUIRED_FIELD_MISSING",
    },
    Case {
        name: "lowercase region code",
        mutate: |b| ev(b, 0)["userData"]["userIdentifiers"][2]["address"]["regionCode"] = json!("us"),
        message: "address.regionCode",
        field: "events[0].user_data.user_identifiers[2].address.region_code",
        reason: "INVALID_REGION_CODE",
    },
    Case {
        name: "two identifiers in one UserIdentifier",
        mutate: |b| ev(b, 0)["userData"]["userIdentifiers"][0]["phoneNumber"] = json!(hex64(9)),
        message: "events[0].userData.userIdentifiers[0]",
        field: "events[0].user_data.user_identifiers[0]",
        reason: "",
    },
    Case {
        name: "lowercase currency",
        mutate: |b| ev(b, 1)["currency"] = json!("usd"),
        message: "events[1].currency",
        field: "events[1].currency",
        reason: "INVALID_CURRENCY_CODE",
    },
    Case {
        name: "conversionValue as text",
        mutate: |b| ev(b, 0)["conversionValue"] = json!("1,99"),
        message: "events[0].conversionValue",
        field: "events[0].conversion_value",
        reason: "",
    },
    Case {
        name: "quantity not an integer",
        mutate: |b| ev(b, 0)["cartData"]["items"][0]["quantity"] = json!("2.5"),
        message: "events[0].cartData.items[0].quantity",
        field: "events[0].cart_data.items[0].quantity",
        reason: "",
    },
    Case {
        name: "unknown cart item field",
        mutate: |b| ev(b, 0)["cartData"]["items"][1]["productId"] = json!("x"),
        message: "Unknown name \"productId\" at 'events[0].cartData.items[1]'",
        field: "events[0].cart_data.items[1]",
        reason: "",
    },
    Case {
        name: "Ads-API date format",
        mutate: |b| ev(b, 0)["eventTimestamp"] = json!("2026-05-01 12:32:45+00:00"),
        message: "events[0].eventTimestamp",
        field: "events[0].event_timestamp",
        reason: "",
    },
    Case {
        name: "event in the future",
        mutate: |b| ev(b, 1)["eventTimestamp"] = json!(hours_ago(-2)),
        message: "events[1].eventTimestamp",
        field: "events[1].event_timestamp",
        reason: "EVENT_TIME_INVALID",
    },
    Case {
        name: "event older than 90 days",
        mutate: |b| ev(b, 1)["eventTimestamp"] = json!(hours_ago(91 * 24)),
        message: "90-day click-through lookback",
        field: "events[1].event_timestamp",
        reason: "EVENT_TIME_INVALID",
    },
    Case {
        name: "no identifiers at all",
        mutate: |b| {
            let e = ev(b, 0).as_object_mut().unwrap();
            e.remove("userData");
            e.remove("adIdentifiers");
        },
        message: "events[0]",
        field: "events[0]",
        reason: "NO_IDENTIFIERS_PROVIDED",
    },
    Case {
        name: "unknown destination reference",
        mutate: |b| ev(b, 0)["destinationReferences"] = json!(["nope"]),
        message: "events[0].destinationReferences[0]",
        field: "events[0].destination_references[0]",
        reason: "INVALID_DESTINATION",
    },
    Case {
        name: "unknown conversion action",
        mutate: |b| b["destinations"][0]["productDestinationId"] = json!("424242"),
        message: "destinations[0].productDestinationId",
        field: "destinations[0].product_destination_id",
        reason: "INVALID_CONVERSION_ACTION_ID",
    },
    Case {
        name: "account id with hyphens",
        mutate: |b| b["destinations"][0]["operatingAccount"]["accountId"] = json!("123-456-7890"),
        message: "destinations[0].operatingAccount.accountId",
        field: "destinations[0].operating_account.account_id",
        reason: "INVALID_NUMBER_FORMAT",
    },
    Case {
        name: "bad account type",
        mutate: |b| b["destinations"][0]["operatingAccount"]["accountType"] = json!("ADS"),
        message: "destinations[0].operatingAccount.accountType",
        field: "destinations[0].operating_account.account_type",
        reason: "",
    },
    Case {
        name: "11 destinations",
        mutate: |b| {
            let d = b["destinations"][0].clone();
            b["destinations"] = Value::Array(vec![d; 11]);
        },
        message: "destinations",
        field: "destinations",
        reason: "TOO_MANY_DESTINATIONS",
    },
];

#[tokio::test]
async fn each_invalid_request_is_rejected_with_its_field_path_and_nothing_is_stored() {
    let h = start().await;
    let token = h.token().await;
    let action = h.seeded_action();
    let valid = request(
        &action,
        vec![quickstart_event("ok-0"), quickstart_event("ok-1")],
    );
    for case in CASES {
        let mut body = valid.clone();
        (case.mutate)(&mut body);
        let a = h.ingest(&token, &body).await;
        assert_eq!(
            a.status,
            StatusCode::BAD_REQUEST,
            "{}: {}",
            case.name,
            a.body
        );
        assert_eq!(
            a.body["error"]["status"], "INVALID_ARGUMENT",
            "{}",
            case.name
        );
        let message = a.body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(case.message),
            "{}: message {message:?}",
            case.name
        );
        assert_eq!(
            violation_field(&a.body),
            case.field,
            "{}: {}",
            case.name,
            a.body
        );
        assert_eq!(
            violation_reason(&a.body),
            case.reason,
            "{}: {}",
            case.name,
            a.body
        );
        assert!(
            !message.contains("jane@example.com"),
            "{}: values must not be echoed",
            case.name
        );
    }
    let report = h.sandbox.report();
    assert!(report.accepted.is_empty(), "nothing may be stored");
    assert_eq!(report.rejections.len(), CASES.len());
    assert!(report
        .rejections
        .iter()
        .all(|r| r.status == 400 && !r.fault));
    // The untouched request still passes.
    assert_eq!(h.ingest(&token, &valid).await.status, StatusCode::OK);
}

#[tokio::test]
async fn semantic_errors_are_all_listed_with_error_and_request_info() {
    let h = start().await;
    let token = h.token().await;
    let action = h.seeded_action();
    let mut body = request(&action, vec![quickstart_event("1"), quickstart_event("2")]);
    body["events"][1]["currency"] = json!("EURO");
    let a = h.ingest(&token, &body).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let details = a.body["error"]["details"].as_array().unwrap();
    assert_eq!(
        details[0]["@type"],
        "type.googleapis.com/google.rpc.ErrorInfo"
    );
    assert_eq!(details[0]["domain"], "datamanager.googleapis.com");
    assert_eq!(details[0]["reason"], "INVALID_ARGUMENT");
    assert_eq!(
        details[1]["@type"],
        "type.googleapis.com/google.rpc.RequestInfo"
    );
    let fields: Vec<&str> = details[2]["fieldViolations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "events[0].transaction_id",
            "events[1].transaction_id",
            "events[1].currency"
        ]
    );
    assert!(a.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("(and 2 more)"));
}

#[tokio::test]
async fn other_accounts_are_permission_denied() {
    let h = start().await;
    let token = h.token().await;
    let action = h.seeded_action();
    let mut body = request(&action, vec![quickstart_event("p-1")]);
    body["destinations"][0]["operatingAccount"]["accountId"] = json!("999");
    let a = h.ingest(&token, &body).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.body["error"]["status"], "PERMISSION_DENIED");

    // With a manager configured, loginAccount must name it.
    let h = start_with(GoogleSandboxConfig {
        login_account_id: Some("5550001111".into()),
        ..Default::default()
    })
    .await;
    let token = h.token().await;
    let action = h.seeded_action();
    let mut body = request(&action, vec![quickstart_event("p-2")]);
    assert_eq!(h.ingest(&token, &body).await.status, StatusCode::FORBIDDEN);
    body["destinations"][0]["loginAccount"] =
        json!({"accountType": "GOOGLE_ADS", "accountId": "5550001111"});
    assert_eq!(h.ingest(&token, &body).await.status, StatusCode::OK);
}

#[tokio::test]
async fn not_json_is_invalid_argument() {
    let h = start().await;
    let token = h.token().await;
    let res = h
        .client
        .post(format!("{}/v1/events:ingest", h.base))
        .bearer_auth(&token)
        .body("{\"destinations\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: Value = res.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Invalid JSON payload received."));
}
