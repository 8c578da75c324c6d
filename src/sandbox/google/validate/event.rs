//! Checks of one Data Manager `Event` and the messages it contains.
//!
//! Input: one element of `events[]`, its path and the request-wide
//! [`EventContext`]. Output: violations pushed to the [`Checker`], and the
//! event's routing and dedup data when it is complete enough to store.
//!
//! Protos followed (googleapis/googleapis f8291d2b, `google/ads/datamanager/v1/`):
//! `event.proto` (`Event`, `AdIdentifiers`, `CustomVariable`, `EventParameter`,
//! `EventLocation`, `EventSource`), `device_info.proto`, `cart_data.proto`
//! (`CartData`, `Item`, `ItemCustomVariable`), `item_parameter.proto`,
//! `experimental_field.proto`, `user_properties.proto`,
//! `encrypted_user_id.proto`, `consent.proto`; reasons from `error.proto`.
//!
//! Sandbox-strict rules (stricter than the proto, each catching a sender bug):
//! `transactionId` is required (capi-cdc's dedup key; the proto marks it
//! optional); an event needs an ad identifier or user data
//! (`NO_IDENTIFIERS_PROVIDED`); `currency` must look like ISO 4217
//! (three capital letters; the list itself is not checked).
//!
//! Observed rule: a purely numeric `transactionId` is refused — but not under
//! `validateOnly`, which did not apply that check in a live test (spec §2.3,
//! superdesigndev/treg PR #151).

use serde_json::Value;

use super::super::schema::{Checker, Fields, Path};
use super::nested::{self, DEVICE_INFO_FIELDS};
use super::user_data;

/// Events may be stamped at most this far ahead of the sandbox clock (clock skew).
pub const MAX_FUTURE_SKEW_MS: i64 = 60_000;

const EVENT_FIELDS: &[&str] = &[
    "destinationReferences",
    "transactionId",
    "eventTimestamp",
    "lastUpdatedTimestamp",
    "userData",
    "consent",
    "adIdentifiers",
    "currency",
    "conversionValue",
    "conversionCount",
    "eventSource",
    "eventDeviceInfo",
    "cartData",
    "customVariables",
    "experimentalFields",
    "userProperties",
    "eventName",
    "clientId",
    "userId",
    "additionalEventParameters",
    "thirdPartyUserData",
    "eventLocation",
    "appInstanceId",
];
const AD_IDENTIFIER_FIELDS: &[&str] = &[
    "sessionAttributes",
    "gclid",
    "gbraid",
    "wbraid",
    "landingPageDeviceInfo",
    "mobileDeviceId",
    "dclid",
    "impressionId",
    "matchId",
    "encryptedUserIds",
];
const ENCRYPTED_USER_ID_FIELDS: &[&str] = &["encryptedId", "entityType", "entityId", "source"];
const EVENT_SOURCES: &[&str] = &[
    "EVENT_SOURCE_UNSPECIFIED",
    "WEB",
    "APP",
    "IN_STORE",
    "PHONE",
    "MESSAGE",
    "OTHER",
];
const ENTITY_TYPES: &[&str] = &[
    "ENCRYPTION_ENTITY_TYPE_UNSPECIFIED",
    "CAMPAIGN_MANAGER_ACCOUNT",
    "CAMPAIGN_MANAGER_ADVERTISER",
    "DISPLAY_VIDEO_PARTNER",
    "DISPLAY_VIDEO_ADVERTISER",
    "GOOGLE_ADS_CUSTOMER",
    "GOOGLE_AD_MANAGER_NETWORK_CODE",
];
const ENCRYPTION_SOURCES: &[&str] = &[
    "ENCRYPTION_SOURCE_UNSPECIFIED",
    "AD_SERVING",
    "DATA_TRANSFER",
];
const TYPE_PREFIX: &str = "type.googleapis.com/google.ads.datamanager.v1.";
const DAY_MS: i64 = 86_400_000;

/// Request-wide facts an event check needs.
#[derive(Debug)]
pub(super) struct EventContext<'a> {
    /// Sandbox "now", Unix ms.
    pub now_ms: i64,
    /// Request `encoding` (`HEX`/`BASE64`), if set.
    pub encoding: Option<&'a str>,
    /// Whether `encryptionInfo` is set (identifiers are then not bare SHA-256).
    pub encrypted: bool,
    /// Each destination's `reference`, by destination index.
    pub references: Vec<Option<&'a str>>,
    /// Each destination's click-through lookback in days, when resolved.
    pub lookback_days: Vec<Option<i64>>,
    /// Request-level `(adUserData, adPersonalization)`.
    pub request_consent: (&'a str, &'a str),
    /// `validateOnly`.
    pub validate_only: bool,
}

/// An event's routing and dedup data.
#[derive(Debug)]
pub(in super::super) struct Event<'a> {
    /// The event object as received.
    pub(in super::super) raw: &'a Value,
    /// Destination indices it goes to.
    pub(in super::super) targets: Vec<usize>,
    /// `transactionId`.
    pub(in super::super) transaction_id: &'a str,
    /// Effective `adUserData` (event over request).
    pub(in super::super) ad_user_data: &'a str,
    /// Effective `adPersonalization`.
    pub(in super::super) ad_personalization: &'a str,
    /// `conversionValue`.
    pub(in super::super) conversion_value: Option<f64>,
    /// `currency`.
    pub(in super::super) currency: Option<&'a str>,
    /// Whether it carries `userData` (which makes `encoding` required).
    pub(in super::super) has_user_data: bool,
}

/// Checks one event; `None` when it is not an object or lacks a usable `transactionId`.
pub(super) fn check<'a>(
    c: &mut Checker,
    raw: &'a Value,
    path: &Path,
    ctx: &EventContext<'a>,
) -> Option<Event<'a>> {
    let e = c.object(raw, path, EVENT_FIELDS)?;
    let targets = references(c, &e, "destinationReferences", ctx);
    let transaction_id = transaction_id(c, &e, ctx.validate_only);
    timestamps(c, &e, &targets, ctx);

    let has_user_data = e.has("userData");
    let user_identifiers = user_data::check(c, &e, "userData", ctx.encoding, ctx.encrypted);
    if e.has("thirdPartyUserData") {
        user_data::check(c, &e, "thirdPartyUserData", ctx.encoding, ctx.encrypted);
        c.invalid(
            &e.path.field("thirdPartyUserData"),
            "THIRD_PARTY_USER_DATA_NOT_ALLOWED",
            "Third party user data can only be set by data partners.",
        );
    }
    let (ad_user_data, ad_personalization) = match super::read_consent(c, &e) {
        Some((u, p)) => (
            effective(u, ctx.request_consent.0),
            effective(p, ctx.request_consent.1),
        ),
        None => ctx.request_consent,
    };
    let ad_ids = ad_identifiers(c, &e);
    if user_identifiers == 0 && !ad_ids && !e.has("userData") {
        c.invalid(
            path,
            "NO_IDENTIFIERS_PROVIDED",
            "Events data contains no user identifiers or ad identifiers.",
        );
    }

    let currency = c.string(&e, "currency");
    if let Some(code) = currency {
        if !(code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())) {
            c.invalid(
                &e.path.field("currency"),
                "INVALID_CURRENCY_CODE",
                "The currency code is not supported; use a three-letter ISO 4217 code.",
            );
        }
    }
    let conversion_value = c.double(&e, "conversionValue");
    c.double(&e, "conversionCount");
    let source_type = format!("{TYPE_PREFIX}EventSource");
    c.enumeration(&e, "eventSource", &source_type, EVENT_SOURCES);
    if let Some(d) = c.message(&e, "eventDeviceInfo", DEVICE_INFO_FIELDS) {
        nested::device_info(c, &d);
    }
    if let Some(cart) = c.message(&e, "cartData", nested::CART_FIELDS) {
        nested::cart_data(c, &cart, ctx);
    }
    nested::custom_variables(c, &e, ctx);
    nested::key_values(
        c,
        &e,
        "experimentalFields",
        nested::EXPERIMENTAL_FIELDS,
        false,
    );
    nested::key_values(
        c,
        &e,
        "additionalEventParameters",
        nested::PARAMETER_FIELDS,
        true,
    );
    nested::user_properties(c, &e);
    nested::event_location(c, &e);
    for name in ["eventName", "clientId", "userId", "appInstanceId"] {
        c.string(&e, name);
    }
    if e.has("clientId") && e.has("appInstanceId") {
        c.invalid(
            &e.path.field("appInstanceId"),
            "BOTH_CLIENT_ID_AND_APP_INSTANCE_ID_NOT_ALLOWED",
            "Both appInstanceId and clientId are set.",
        );
    }
    Some(Event {
        raw,
        targets,
        transaction_id: transaction_id?,
        ad_user_data,
        ad_personalization,
        conversion_value,
        currency,
        has_user_data,
    })
}

fn effective<'a>(event_value: &'a str, request_value: &'a str) -> &'a str {
    if event_value == super::CONSENT_VALUES[0] {
        request_value
    } else {
        event_value
    }
}

/// `destinationReferences`: each must name a destination; empty means all destinations.
pub(super) fn references(
    c: &mut Checker,
    f: &Fields<'_>,
    name: &'static str,
    ctx: &EventContext<'_>,
) -> Vec<usize> {
    let all: Vec<usize> = (0..ctx.references.len()).collect();
    let Some(list) = c.list(f, name) else {
        return all;
    };
    if list.is_empty() {
        return all;
    }
    let mut targets = Vec::new();
    for (i, v) in list.iter().enumerate() {
        let path = f.path.field(name).index(i);
        let Some(reference) = c.string_item(v, &path) else {
            continue;
        };
        let found: Vec<usize> = ctx
            .references
            .iter()
            .enumerate()
            .filter(|(_, r)| **r == Some(reference))
            .map(|(j, _)| j)
            .collect();
        if found.is_empty() {
            c.invalid(
                &path,
                "INVALID_DESTINATION",
                "No destination in the request has this reference.",
            );
        }
        targets.extend(found);
    }
    targets.sort_unstable();
    targets.dedup();
    targets
}

fn transaction_id<'a>(c: &mut Checker, e: &Fields<'a>, validate_only: bool) -> Option<&'a str> {
    let id = c.required_string(e, "transactionId")?;
    if !validate_only && id.bytes().all(|b| b.is_ascii_digit()) {
        c.invalid(
            &e.path.field("transactionId"),
            "INVALID_FORMAT",
            "A purely numeric transaction ID is not accepted; prefix it (for example order-41).",
        );
    }
    Some(id)
}

fn timestamps(c: &mut Checker, e: &Fields<'_>, targets: &[usize], ctx: &EventContext<'_>) {
    c.timestamp(e, "lastUpdatedTimestamp");
    let path = e.path.field("eventTimestamp");
    if !e.has("eventTimestamp") {
        c.invalid(
            &path,
            "REQUIRED_FIELD_MISSING",
            "eventTimestamp is required.",
        );
        return;
    }
    let Some(at) = c.timestamp(e, "eventTimestamp") else {
        return;
    };
    if at > ctx.now_ms + MAX_FUTURE_SKEW_MS {
        c.invalid(
            &path,
            "EVENT_TIME_INVALID",
            "Event did not occur within the acceptable time window: it is in the future.",
        );
        return;
    }
    let lookback = targets
        .iter()
        .filter_map(|&i| ctx.lookback_days.get(i).copied().flatten())
        .min()
        .unwrap_or(super::super::store::DEFAULT_CLICK_LOOKBACK_DAYS);
    if at < ctx.now_ms - lookback * DAY_MS {
        c.invalid(
            &path,
            "EVENT_TIME_INVALID",
            format!(
                "Event did not occur within the acceptable time window: it is older than the \
                 conversion action's {lookback}-day click-through lookback window."
            ),
        );
    }
}

/// Reads `adIdentifiers`; true when it holds at least one identifier.
fn ad_identifiers(c: &mut Checker, e: &Fields<'_>) -> bool {
    let Some(ids) = c.message(e, "adIdentifiers", AD_IDENTIFIER_FIELDS) else {
        return false;
    };
    let mut any = false;
    for name in [
        "sessionAttributes",
        "gclid",
        "gbraid",
        "wbraid",
        "mobileDeviceId",
        "dclid",
        "impressionId",
        "matchId",
    ] {
        any |= c.string(&ids, name).is_some();
    }
    if let Some(d) = c.message(&ids, "landingPageDeviceInfo", DEVICE_INFO_FIELDS) {
        nested::device_info(c, &d);
    }
    if let Some(list) = c.list(&ids, "encryptedUserIds") {
        for (i, v) in list.iter().enumerate() {
            let path = ids.path.field("encryptedUserIds").index(i);
            let Some(u) = c.object(v, &path, ENCRYPTED_USER_ID_FIELDS) else {
                continue;
            };
            any = true;
            c.required_string(&u, "encryptedId");
            c.int64(&u, "entityId");
            let entity = format!("{TYPE_PREFIX}EncryptedUserId.EncryptionEntityType");
            c.enumeration(&u, "entityType", &entity, ENTITY_TYPES);
            let source = format!("{TYPE_PREFIX}EncryptedUserId.EncryptionSource");
            c.enumeration(&u, "source", &source, ENCRYPTION_SOURCES);
        }
    }
    any
}
