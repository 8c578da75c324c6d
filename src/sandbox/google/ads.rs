//! Google Ads API look-alike for conversion-action provisioning:
//! `POST /{version}/customers/{customer_id}/googleAds:searchStream` and
//! `POST /{version}/customers/{customer_id}/conversionActions:mutate`.
//!
//! Input: REST JSON bodies with `Authorization: Bearer`, `developer-token`
//! and optional `login-customer-id` headers. Output: `SearchGoogleAdsStreamResponse`
//! batches as a JSON array, `MutateConversionActionsResponse`, or errors
//! carrying a `GoogleAdsFailure` typed for the path's version.
//!
//! Order of checks: API version (404) → bearer token (401) → injected fault
//! → `developer-token` (400 `DEVELOPER_TOKEN_PARAMETER_MISSING`; still
//! enforced after the documented 2026-09-09 sunset, Opteo/google-ads-api
//! issue #553) → customer id format (400 `INVALID_CUSTOMER_ID`) →
//! `login-customer-id` and customer access (403 `USER_PERMISSION_DENIED`)
//! → body.
//!
//! Protos (googleapis/googleapis f8291d2b, `google/ads/googleads/v22/`):
//! `services/google_ads_service.proto`, `services/conversion_action_service.proto`,
//! `resources/conversion_action.proto`, `enums/conversion_action_{category,type,status,counting_type}.proto`,
//! `enums/attribution_model.proto`, `errors/{errors,conversion_action_error,query_error,
//! request_error,authentication_error,authorization_error,header_error,field_error,
//! range_error,mutate_error}.proto`. Later versions share these names for
//! everything used here. Logs: status codes, counts and customer ids only.

mod create;
mod fields;
mod gaql;
mod mutate;

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::error::{AdsErrorItem, Api, ApiError, AuthProblem};
use super::failure::Failure;
use super::fault::{Fired, GoogleEndpoint};
use super::ids;
use super::oauth::check_bearer;
use super::schema::{Checker, Path};
use super::GoogleSandbox;

/// Type-URL prefix of Google Ads enums in "Invalid value" messages.
pub(super) const ENUM_PREFIX: &str = "type.googleapis.com/google.ads.googleads.v22.enums.";
/// `ConversionActionCategory` value names (enums/conversion_action_category.proto).
pub(super) const CATEGORIES: &[&str] = &[
    "UNSPECIFIED",
    "UNKNOWN",
    "DEFAULT",
    "PAGE_VIEW",
    "PURCHASE",
    "SIGNUP",
    "DOWNLOAD",
    "ADD_TO_CART",
    "BEGIN_CHECKOUT",
    "SUBSCRIBE_PAID",
    "PHONE_CALL_LEAD",
    "IMPORTED_LEAD",
    "SUBMIT_LEAD_FORM",
    "BOOK_APPOINTMENT",
    "REQUEST_QUOTE",
    "GET_DIRECTIONS",
    "OUTBOUND_CLICK",
    "CONTACT",
    "ENGAGEMENT",
    "STORE_VISIT",
    "STORE_SALE",
    "QUALIFIED_LEAD",
    "CONVERTED_LEAD",
];
/// `ConversionActionType` value names (enums/conversion_action_type.proto).
pub(super) const TYPES: &[&str] = &[
    "UNSPECIFIED",
    "UNKNOWN",
    "AD_CALL",
    "CLICK_TO_CALL",
    "GOOGLE_PLAY_DOWNLOAD",
    "GOOGLE_PLAY_IN_APP_PURCHASE",
    "UPLOAD_CALLS",
    "UPLOAD_CLICKS",
    "WEBPAGE",
    "WEBSITE_CALL",
    "STORE_SALES_DIRECT_UPLOAD",
    "STORE_SALES",
    "FIREBASE_ANDROID_FIRST_OPEN",
    "FIREBASE_ANDROID_IN_APP_PURCHASE",
    "FIREBASE_ANDROID_CUSTOM",
    "FIREBASE_IOS_FIRST_OPEN",
    "FIREBASE_IOS_IN_APP_PURCHASE",
    "FIREBASE_IOS_CUSTOM",
    "THIRD_PARTY_APP_ANALYTICS_ANDROID_FIRST_OPEN",
    "THIRD_PARTY_APP_ANALYTICS_ANDROID_IN_APP_PURCHASE",
    "THIRD_PARTY_APP_ANALYTICS_ANDROID_CUSTOM",
    "THIRD_PARTY_APP_ANALYTICS_IOS_FIRST_OPEN",
    "THIRD_PARTY_APP_ANALYTICS_IOS_IN_APP_PURCHASE",
    "THIRD_PARTY_APP_ANALYTICS_IOS_CUSTOM",
    "ANDROID_APP_PRE_REGISTRATION",
    "ANDROID_INSTALLS_ALL_OTHER_APPS",
    "FLOODLIGHT_ACTION",
    "FLOODLIGHT_TRANSACTION",
    "GOOGLE_HOSTED",
    "LEAD_FORM_SUBMIT",
    "SALESFORCE",
    "SEARCH_ADS_360",
    "SMART_CAMPAIGN_AD_CLICKS_TO_CALL",
    "SMART_CAMPAIGN_MAP_CLICKS_TO_CALL",
    "SMART_CAMPAIGN_MAP_DIRECTIONS",
    "SMART_CAMPAIGN_TRACKED_CALLS",
    "STORE_VISITS",
    "WEBPAGE_CODELESS",
    "UNIVERSAL_ANALYTICS_GOAL",
    "UNIVERSAL_ANALYTICS_TRANSACTION",
    "GOOGLE_ANALYTICS_4_CUSTOM",
    "GOOGLE_ANALYTICS_4_PURCHASE",
];
/// `ConversionActionStatus` value names (enums/conversion_action_status.proto).
pub(super) const STATUSES: &[&str] = &["UNSPECIFIED", "UNKNOWN", "ENABLED", "REMOVED", "HIDDEN"];
/// `ConversionActionCountingType` value names.
pub(super) const COUNTING_TYPES: &[&str] =
    &["UNSPECIFIED", "UNKNOWN", "ONE_PER_CLICK", "MANY_PER_CLICK"];
/// `AttributionModel` value names (enums/attribution_model.proto).
pub(super) const ATTRIBUTION_MODELS: &[&str] = &[
    "UNSPECIFIED",
    "UNKNOWN",
    "EXTERNAL",
    "GOOGLE_ADS_LAST_CLICK",
    "GOOGLE_SEARCH_ATTRIBUTION_FIRST_CLICK",
    "GOOGLE_SEARCH_ATTRIBUTION_LINEAR",
    "GOOGLE_SEARCH_ATTRIBUTION_TIME_DECAY",
    "GOOGLE_SEARCH_ATTRIBUTION_POSITION_BASED",
    "GOOGLE_SEARCH_ATTRIBUTION_DATA_DRIVEN",
];

/// The checked parts of an Ads request.
#[derive(Debug)]
struct Admitted<'a> {
    version: &'a str,
    customer_id: &'a str,
    now: i64,
    delay_ms: u64,
}

/// `POST /{version}/customers/{customer_id}/googleAds:searchStream`.
pub(super) async fn post_search_stream(
    State(sandbox): State<GoogleSandbox>,
    UrlPath((version, customer_id)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (result, delay_ms) = match admit(
        &sandbox,
        &version,
        &customer_id,
        &headers,
        GoogleEndpoint::SearchStream,
    ) {
        Ok(a) => (search_stream(&sandbox, &a, &body), a.delay_ms),
        Err(f) => (Err(f), 0),
    };
    let response = sandbox.finish(GoogleEndpoint::SearchStream, result);
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    response
}

/// `POST /{version}/customers/{customer_id}/conversionActions:mutate`.
pub(super) async fn post_mutate(
    State(sandbox): State<GoogleSandbox>,
    UrlPath((version, customer_id)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (result, delay_ms) = match admit(
        &sandbox,
        &version,
        &customer_id,
        &headers,
        GoogleEndpoint::Mutate,
    ) {
        Ok(a) => (
            mutate::mutate(&sandbox, a.version, a.customer_id, a.now, &body),
            a.delay_ms,
        ),
        Err(f) => (Err(f), 0),
    };
    let response = sandbox.finish(GoogleEndpoint::Mutate, result);
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    response
}

fn admit<'a>(
    sandbox: &GoogleSandbox,
    version: &'a str,
    customer_id: &'a str,
    headers: &HeaderMap,
    endpoint: GoogleEndpoint,
) -> Result<Admitted<'a>, Failure> {
    let config = sandbox.config();
    if !config.ads_api_versions.iter().any(|v| v == version) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The requested URL was not found on this server (unsupported Google Ads API version).",
        )
        .into());
    }
    let mut delay_ms = 0;
    let now = {
        let mut store = sandbox.store();
        let now = store.now_ms();
        check_bearer(&store, headers, now).map_err(|p| ads_unauthenticated(version, p))?;
        match store.take_fault(endpoint, Api::Ads(version)) {
            Some(Fired::Fail(f)) => return Err(f),
            Some(Fired::Delay(ms)) => delay_ms = ms,
            _ => {}
        }
        now
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let bad = |kind, code, message: &str| -> Failure {
        ApiError::ads(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            version,
            vec![AdsErrorItem::new(kind, code, message)],
        )
        .into()
    };
    if header("developer-token").is_none_or(str::is_empty) {
        return Err(bad(
            "requestError",
            "DEVELOPER_TOKEN_PARAMETER_MISSING",
            "developer-token parameter is missing.",
        ));
    }
    if customer_id.is_empty() || !customer_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(
            "requestError",
            "INVALID_CUSTOMER_ID",
            "Invalid customer ID: use the 10 digits without hyphens.",
        ));
    }
    let login = header("login-customer-id").filter(|s| !s.is_empty());
    if let Some(l) = login {
        if !l.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(
                "headerError",
                "INVALID_LOGIN_CUSTOMER_ID",
                "The login customer ID header must hold digits only, without hyphens.",
            ));
        }
    }
    let expected_login = config.login_account_id.as_deref();
    let login_ok = match (login, expected_login) {
        (Some(l), Some(m)) => l == m,
        (None, Some(_)) => false,
        (Some(l), None) => l == config.operating_account_id,
        (None, None) => true,
    };
    if !login_ok || customer_id != config.operating_account_id {
        tracing::info!(
            customer = customer_id,
            "google sandbox refused customer access"
        );
        return Err(ApiError::ads(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            version,
            vec![AdsErrorItem::new(
                "authorizationError",
                "USER_PERMISSION_DENIED",
                "User doesn't have permission to access customer. Note: If you're accessing a \
                 client customer, the manager's customer id must be set in the \
                 'login-customer-id' header.",
            )],
        )
        .into());
    }
    Ok(Admitted {
        version,
        customer_id,
        now,
        delay_ms,
    })
}

fn ads_unauthenticated(version: &str, problem: AuthProblem) -> Failure {
    let base = ApiError::unauthenticated(problem);
    let item = match problem {
        AuthProblem::Missing => return base.into(),
        AuthProblem::Invalid => {
            json!({"errorCode": {"authenticationError": "OAUTH_TOKEN_INVALID"}, "message": "Oauth token is invalid."})
        }
        AuthProblem::Expired => {
            json!({"errorCode": {"authenticationError": "OAUTH_TOKEN_EXPIRED"}, "message": "Oauth token is expired."})
        }
    };
    base.with_detail(super::error::ads_failure(version, vec![item]))
        .into()
}

/// Fields of `SearchGoogleAdsStreamRequest` in REST JSON.
const SEARCH_FIELDS: &[&str] = &["customerId", "query", "summaryRowSetting"];
const SUMMARY_ROW_SETTINGS: &[&str] = &[
    "UNSPECIFIED",
    "UNKNOWN",
    "NO_SUMMARY_ROW",
    "SUMMARY_ROW_WITH_RESULTS",
    "SUMMARY_ROW_ONLY",
];

fn search_stream(
    sandbox: &GoogleSandbox,
    a: &Admitted<'_>,
    body: &[u8],
) -> Result<Response, Failure> {
    let value = parse_body(body)?;
    let mut c = Checker::default();
    let Some(req) = c.object(&value, &Path::root(), SEARCH_FIELDS) else {
        return Err(first_parse_error(&c).into());
    };
    let query = c.string(&req, "query");
    c.string(&req, "customerId");
    c.enumeration(&req, "summaryRowSetting", "type.googleapis.com/google.ads.googleads.v22.enums.SummaryRowSettingEnum.SummaryRowSetting", SUMMARY_ROW_SETTINGS);
    if c.has_parse_errors() {
        return Err(first_parse_error(&c).into());
    }
    let Some(query) = query else {
        let mut item = AdsErrorItem::new(
            "fieldError",
            "REQUIRED",
            "The required field was not present.",
        );
        item.location = vec![("query".into(), None)];
        return Err(ApiError::ads(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            a.version,
            vec![item],
        )
        .into());
    };
    let parsed = gaql::parse(query).map_err(|e| {
        ApiError::ads(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            a.version,
            vec![AdsErrorItem::new("queryError", e.code, e.message)],
        )
    })?;
    let rows: Vec<Value> = {
        let store = sandbox.store();
        let matching: Vec<_> = store
            .actions()
            .filter(|x| x.customer_id == a.customer_id)
            .collect();
        parsed.run(&matching)
    };
    tracing::info!(
        customer = a.customer_id,
        rows = rows.len(),
        "google sandbox answered searchStream"
    );
    let mut batch = json!({ "fieldMask": parsed.field_mask(), "requestId": ids::ads_request_id() });
    if !rows.is_empty() {
        batch["results"] = Value::Array(rows);
    }
    Ok(Json(json!([batch])).into_response())
}

/// The body as JSON, or Google's "Invalid JSON payload" 400.
fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::unparseable_body(&format!("{e}.")))
}

/// The first JSON-mapping violation as Google's front end reports it.
fn first_parse_error(c: &Checker) -> ApiError {
    match c.violations.iter().find(|v| v.parse) {
        Some(v) => ApiError::invalid_json(v),
        None => ApiError::unparseable_body("The request body must be a JSON object."),
    }
}
