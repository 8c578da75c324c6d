//! Google Ads API: searchStream over conversion_action and conversionActions:mutate.

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::*;

const QUERY: &str =
    "SELECT conversion_action.id, conversion_action.name, conversion_action.category, \
    conversion_action.type, conversion_action.status FROM conversion_action \
    WHERE conversion_action.type = 'UPLOAD_CLICKS'";

fn create(name: &str, category: &str, action_type: &str) -> Value {
    json!({"create": {"name": name, "category": category, "type": action_type, "status": "ENABLED"}})
}

async fn search(h: &Harness, token: &str, query: &str) -> Answer {
    h.ads(token, "googleAds:searchStream", &json!({ "query": query }))
        .await
}

fn ads_error_code(body: &Value) -> Value {
    body["error"]["details"][0]["errors"][0]["errorCode"].clone()
}

#[tokio::test]
async fn search_stream_lists_created_upload_clicks_actions() {
    let h = start().await;
    let token = h.token().await;
    let ops = json!({"operations": [
        create("capi-cdc – purchase", "PURCHASE", "UPLOAD_CLICKS"),
        create("capi-cdc – add_to_cart", "ADD_TO_CART", "UPLOAD_CLICKS"),
        create("site tag", "PURCHASE", "WEBPAGE"),
    ]});
    let m = h.ads(&token, "conversionActions:mutate", &ops).await;
    assert_eq!(m.status, StatusCode::OK, "{}", m.body);
    let names: Vec<&str> = m.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["resourceName"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3);
    assert!(names[0].starts_with(&format!("customers/{ACCOUNT}/conversionActions/")));

    let a = search(&h, &token, QUERY).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let batches = a.body.as_array().unwrap();
    assert_eq!(batches.len(), 1);
    assert_eq!(
        batches[0]["fieldMask"],
        "conversionAction.id,conversionAction.name,conversionAction.category,conversionAction.type,conversionAction.status"
    );
    let results = batches[0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    let id = names[0].rsplit('/').next().unwrap();
    assert_eq!(
        results[0],
        json!({"conversionAction": {
            "resourceName": names[0], "id": id, "name": "capi-cdc – purchase",
            "category": "PURCHASE", "type": "UPLOAD_CLICKS", "status": "ENABLED"
        }})
    );

    // Reordered fields, odd whitespace, lowercase keywords and a status filter.
    let q = "select conversion_action.status,conversion_action.id\n\tfrom conversion_action\n where conversion_action.status != 'REMOVED' and conversion_action.type = UPLOAD_CLICKS order by conversion_action.id desc";
    let a = search(&h, &token, q).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let results = a.body[0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[1]["conversionAction"]["id"], id);
    assert!(results[0]["conversionAction"].get("name").is_none());

    // Removing an action hides it from a status filter.
    let rm = h
        .ads(
            &token,
            "conversionActions:mutate",
            &json!({"operations": [{"remove": names[0]}]}),
        )
        .await;
    assert_eq!(rm.status, StatusCode::OK, "{}", rm.body);
    let a = search(&h, &token, q).await;
    assert_eq!(a.body[0]["results"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn empty_result_has_a_field_mask_and_no_results() {
    let h = start().await;
    let token = h.token().await;
    let a = search(&h, &token, QUERY).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body[0].get("results").is_none());
    assert!(a.body[0]["requestId"].is_string());
}

#[tokio::test]
async fn bad_queries_get_query_errors() {
    let h = start().await;
    let token = h.token().await;
    for (q, code) in [
        ("SELECT conversion_action.foo FROM conversion_action", "UNRECOGNIZED_FIELD"),
        ("SELECT campaign.id FROM campaign", "PROHIBITED_RESOURCE_TYPE_IN_SELECT_CLAUSE"),
        ("SELECT conversion_action.id FROM conversion_actions", "BAD_RESOURCE_TYPE_IN_FROM_CLAUSE"),
        ("SELECT conversion_action.id FROM conversion_action WHERE conversion_action.type = 'UPLOAD_CLICK'", "BAD_ENUM_CONSTANT"),
    ] {
        let a = search(&h, &token, q).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(a.body["error"]["status"], "INVALID_ARGUMENT");
        assert_eq!(ads_error_code(&a.body), json!({ "queryError": code }), "{q}");
    }
    let a = h
        .ads(
            &token,
            "googleAds:searchStream",
            &json!({"query": QUERY, "pageSize": 10}),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Unknown name \"pageSize\""));
}

#[tokio::test]
async fn a_second_create_with_the_same_name_is_duplicate_name() {
    let h = start().await;
    let token = h.token().await;
    let ops = json!({"operations": [create("capi-cdc – purchase", "PURCHASE", "UPLOAD_CLICKS")]});
    assert_eq!(
        h.ads(&token, "conversionActions:mutate", &ops).await.status,
        StatusCode::OK
    );
    let a = h.ads(&token, "conversionActions:mutate", &ops).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let e = &a.body["error"];
    assert_eq!(e["code"], 400);
    assert_eq!(e["status"], "INVALID_ARGUMENT");
    let failure = &e["details"][0];
    assert_eq!(
        failure["@type"],
        "type.googleapis.com/google.ads.googleads.v22.errors.GoogleAdsFailure"
    );
    assert_eq!(
        failure["errors"][0]["errorCode"],
        json!({"conversionActionError": "DUPLICATE_NAME"})
    );
    assert!(failure["errors"][0]["message"].is_string());
    assert_eq!(
        failure["errors"][0]["location"]["fieldPathElements"],
        json!([{"fieldName": "operations", "index": 0}, {"fieldName": "create"}, {"fieldName": "name"}])
    );
    assert_eq!(h.sandbox.report().conversion_actions.len(), 1);
}

#[tokio::test]
async fn partial_failure_applies_the_valid_operations() {
    let h = start().await;
    let token = h.token().await;
    let first = json!({"operations": [create("a", "PURCHASE", "UPLOAD_CLICKS")]});
    h.ads(&token, "conversionActions:mutate", &first).await;
    let ops = json!({"partialFailure": true, "responseContentType": "MUTABLE_RESOURCE", "operations": [
        create("a", "PURCHASE", "UPLOAD_CLICKS"),
        create("b", "SIGNUP", "UPLOAD_CLICKS"),
    ]});
    let a = h.ads(&token, "conversionActions:mutate", &ops).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["results"][0], json!({}));
    assert_eq!(a.body["results"][1]["conversionAction"]["name"], "b");
    assert_eq!(
        a.body["results"][1]["conversionAction"]["clickThroughLookbackWindowDays"],
        "90"
    );
    let pfe = &a.body["partialFailureError"];
    assert_eq!(pfe["code"], 3);
    assert_eq!(
        pfe["details"][0]["errors"][0]["errorCode"]["conversionActionError"],
        "DUPLICATE_NAME"
    );
    assert_eq!(h.sandbox.report().conversion_actions.len(), 2);
}

#[tokio::test]
async fn create_checks_enums_required_fields_and_ranges() {
    let h = start().await;
    let token = h.token().await;
    let bad_category = json!({"operations": [create("x", "LEAD", "UPLOAD_CLICKS")]});
    let a = h
        .ads(&token, "conversionActions:mutate", &bad_category)
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("operations[0].create.category"),
        "{}",
        a.body
    );

    let cases = [
        (
            json!({"create": {"category": "PURCHASE", "type": "UPLOAD_CLICKS"}}),
            json!({"fieldError": "REQUIRED"}),
        ),
        (
            json!({"create": {"name": "n", "category": "PURCHASE"}}),
            json!({"fieldError": "REQUIRED"}),
        ),
        (
            json!({"create": {"name": "n", "category": "UNSPECIFIED", "type": "UPLOAD_CLICKS"}}),
            json!({"requestError": "INVALID_ENUM_VALUE"}),
        ),
        (
            json!({"create": {"name": "n", "type": "GOOGLE_PLAY_DOWNLOAD"}}),
            json!({"conversionActionError": "CREATION_NOT_SUPPORTED"}),
        ),
        (
            json!({"create": {"name": "n", "type": "UPLOAD_CLICKS", "clickThroughLookbackWindowDays": 91}}),
            json!({"rangeError": "TOO_HIGH"}),
        ),
        (
            json!({"create": {"name": "n", "type": "UPLOAD_CLICKS", "attributionModelSettings": {"attributionModel": "GOOGLE_SEARCH_ATTRIBUTION_LINEAR"}}}),
            json!({"conversionActionError": "CANNOT_SET_RULE_BASED_ATTRIBUTION_MODELS"}),
        ),
        (json!({}), json!({"requestError": "OPERATION_REQUIRED"})),
    ];
    for (op, code) in cases {
        let a = h
            .ads(
                &token,
                "conversionActions:mutate",
                &json!({"operations": [op]}),
            )
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{code}");
        assert_eq!(ads_error_code(&a.body), code, "{}", a.body);
    }
    let validate =
        json!({"validateOnly": true, "operations": [create("v", "PURCHASE", "UPLOAD_CLICKS")]});
    let a = h.ads(&token, "conversionActions:mutate", &validate).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(h.sandbox.report().conversion_actions.is_empty());
}

#[tokio::test]
async fn headers_customer_and_version_are_checked() {
    let h = start().await;
    let token = h.token().await;
    let body = json!({ "query": QUERY });
    let path = format!("/v22/customers/{ACCOUNT}/googleAds:searchStream");

    let a = h.post(&path, Some(&token), &[], &body).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        ads_error_code(&a.body),
        json!({"requestError": "DEVELOPER_TOKEN_PARAMETER_MISSING"})
    );

    let a = h
        .post(&path, None, &[("developer-token", "t")], &body)
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = h
        .post(
            &path,
            Some("ya29.forged"),
            &[("developer-token", "t")],
            &body,
        )
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let failure = a.body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["@type"].as_str().unwrap().ends_with("GoogleAdsFailure"))
        .cloned()
        .unwrap();
    assert_eq!(
        failure["errors"][0]["errorCode"]["authenticationError"],
        "OAUTH_TOKEN_INVALID"
    );

    let other = "/v22/customers/1112223333/googleAds:searchStream";
    let a = h
        .post(other, Some(&token), &[("developer-token", "t")], &body)
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(
        ads_error_code(&a.body),
        json!({"authorizationError": "USER_PERMISSION_DENIED"})
    );

    let hyphens = "/v22/customers/123-456-7890/googleAds:searchStream";
    let a = h
        .post(hyphens, Some(&token), &[("developer-token", "t")], &body)
        .await;
    assert_eq!(
        ads_error_code(&a.body),
        json!({"requestError": "INVALID_CUSTOMER_ID"})
    );

    let a = h
        .post(
            &path,
            Some(&token),
            &[("developer-token", "t"), ("login-customer-id", "999")],
            &body,
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);

    let a = h
        .post(
            "/v19/customers/1234567890/googleAds:searchStream",
            Some(&token),
            &[("developer-token", "t")],
            &body,
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);

    let v23 = format!("/v23/customers/{ACCOUNT}/conversionActions:mutate");
    let ops = json!({"operations": [create("x", "PURCHASE", "UPLOAD_CLICKS"), create("x", "PURCHASE", "UPLOAD_CLICKS")]});
    let a = h
        .post(&v23, Some(&token), &[("developer-token", "t")], &ops)
        .await;
    assert_eq!(
        a.body["error"]["details"][0]["@type"],
        "type.googleapis.com/google.ads.googleads.v23.errors.GoogleAdsFailure"
    );
    assert_eq!(
        a.body["error"]["details"][0]["errors"][0]["location"]["fieldPathElements"][0]["index"],
        1
    );
}

#[tokio::test]
async fn manager_login_requires_the_login_customer_id_header() {
    let h = start_with(GoogleSandboxConfig {
        login_account_id: Some("5550001111".into()),
        ..Default::default()
    })
    .await;
    let token = h.token().await;
    let path = format!("/v22/customers/{ACCOUNT}/googleAds:searchStream");
    let body = json!({ "query": QUERY });
    let a = h
        .post(&path, Some(&token), &[("developer-token", "t")], &body)
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = h
        .post(
            &path,
            Some(&token),
            &[
                ("developer-token", "t"),
                ("login-customer-id", "5550001111"),
            ],
            &body,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}
