//! Data Manager request building: a batch of [`BusinessEvent`]s, each with
//! the conversion action of its kind → the JSON body of `POST
//! /v1/events:ingest` (`IngestEventsRequest`).
//!
//! Field names and enum values follow `googleapis/googleapis`
//! `google/ads/datamanager/v1/` (ingestion_service.proto, event.proto,
//! destination.proto, user_data.proto, consent.proto, cart_data.proto,
//! device_info.proto) in proto3 JSON form: lowerCamelCase names, enums by
//! name, `int64` as strings, `Timestamp` as RFC 3339.
//!
//! - One `Destination` per conversion action in the batch (`reference`
//!   `ca-<id>`); each event names its own in `destinationReferences`.
//! - `transactionId` is the event ID (never purely numeric, see `EventId`).
//! - `userData` holds the Google hashes (hex, so `encoding = HEX`); derivation
//!   leaves them empty when `ad_user_data` was denied, and then the IP is
//!   not sent either. An address is sent only complete (all four parts are
//!   required by `AddressInfo`).
//! - At most 10 identifiers per event (`UserData`).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::event::{BusinessEvent, GoogleClickId, Sha256Hex, Signal};

/// `UserData` holds at most this many identifiers.
pub const MAX_IDENTIFIERS: usize = 10;
/// `IngestEventsRequest.events` holds at most this many events.
pub const MAX_EVENTS: usize = 2000;

/// Where a batch goes: the Google Ads account that owns the actions.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// Digits only.
    pub operating_account_id: &'a str,
    /// A manager account, when the login goes through one.
    pub login_account_id: Option<&'a str>,
    /// `validateOnly`: checked, not recorded.
    pub validate_only: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Request<'a> {
    destinations: Vec<Destination<'a>>,
    events: Vec<Event<'a>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    validate_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Destination<'a> {
    reference: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    login_account: Option<Account<'a>>,
    operating_account: Account<'a>,
    product_destination_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Account<'a> {
    account_id: &'a str,
    account_type: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    destination_references: Vec<String>,
    transaction_id: &'a str,
    event_timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_data: Option<UserData<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    consent: Option<Consent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ad_identifiers: Option<AdIdentifiers<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    currency: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    conversion_value: Option<Box<RawValue>>,
    event_source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_device_info: Option<DeviceInfo<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cart_data: Option<CartData<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserData<'a> {
    user_identifiers: Vec<Identifier<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum Identifier<'a> {
    EmailAddress(&'a Sha256Hex),
    PhoneNumber(&'a Sha256Hex),
    Address(Address<'a>),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Address<'a> {
    given_name: &'a Sha256Hex,
    family_name: &'a Sha256Hex,
    region_code: &'a str,
    postal_code: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Consent {
    #[serde(skip_serializing_if = "Option::is_none")]
    ad_user_data: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ad_personalization: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AdIdentifiers<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    gclid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gbraid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    wbraid: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeviceInfo<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip_address: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CartData<'a> {
    items: Vec<CartItem<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CartItem<'a> {
    merchant_product_id: &'a str,
    /// `int64`: a string in proto3 JSON.
    quantity: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    unit_price: Option<Box<RawValue>>,
}

/// Whether the event carries something Google can match: a click ID, or
/// user identifiers it may send (not when `ad_user_data` is denied).
pub fn has_identifier(e: &BusinessEvent) -> bool {
    let g = &e.user.google;
    let user = g.email.is_some()
        || g.phone.is_some()
        || (g.given_name.is_some()
            && g.family_name.is_some()
            && g.region_code.is_some()
            && g.postal_code.is_some());
    e.click_ids.google.is_some() || (user && !e.consent.user_data_denied())
}

fn status(s: Signal) -> Option<&'static str> {
    match s {
        Signal::Granted => Some("CONSENT_GRANTED"),
        Signal::Denied => Some("CONSENT_DENIED"),
        // Unknown is left unspecified, never guessed.
        Signal::Unknown => None,
    }
}

fn number(text: &str) -> serde_json::Result<Box<RawValue>> {
    RawValue::from_string(text.to_owned())
}

/// RFC 3339 in UTC for Unix seconds (`1970-01-01T00:00:00Z`).
pub fn rfc3339(unix_s: i64) -> String {
    let (year, month, day) = crate::decode::civil_from_days(unix_s.div_euclid(86_400));
    let secs = unix_s.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn event<'a>(e: &'a BusinessEvent, reference: String, now_s: i64) -> serde_json::Result<Event<'a>> {
    let g = &e.user.google;
    let mut ids = Vec::new();
    if let Some(h) = &g.email {
        ids.push(Identifier::EmailAddress(h));
    }
    if let Some(h) = &g.phone {
        ids.push(Identifier::PhoneNumber(h));
    }
    if let (Some(gn), Some(fam), Some(rc), Some(pc)) = (
        &g.given_name,
        &g.family_name,
        &g.region_code,
        &g.postal_code,
    ) {
        ids.push(Identifier::Address(Address {
            given_name: gn,
            family_name: fam,
            region_code: rc,
            postal_code: pc,
        }));
    }
    ids.truncate(MAX_IDENTIFIERS);
    let denied = e.consent.user_data_denied();
    let consent = Consent {
        ad_user_data: status(e.consent.ad_user_data),
        ad_personalization: status(e.consent.ad_personalization),
    };
    let has_consent = consent.ad_user_data.is_some() || consent.ad_personalization.is_some();
    let ad_identifiers = e.click_ids.google.as_ref().map(|c| match c {
        GoogleClickId::Gclid(v) => AdIdentifiers {
            gclid: Some(v),
            gbraid: None,
            wbraid: None,
        },
        GoogleClickId::Gbraid(v) => AdIdentifiers {
            gclid: None,
            gbraid: Some(v),
            wbraid: None,
        },
        GoogleClickId::Wbraid(v) => AdIdentifiers {
            gclid: None,
            gbraid: None,
            wbraid: Some(v),
        },
    });
    let device = DeviceInfo {
        user_agent: e.session.user_agent.as_deref(),
        ip_address: e.session.ip.as_deref().filter(|_| !denied),
    };
    let items = e
        .items
        .iter()
        .map(|i| {
            Ok(CartItem {
                merchant_product_id: &i.id,
                quantity: i.quantity.to_string(),
                unit_price: i
                    .unit_price
                    .as_ref()
                    .map(|p| number(p.as_str()))
                    .transpose()?,
            })
        })
        .collect::<serde_json::Result<Vec<_>>>()?;
    Ok(Event {
        destination_references: vec![reference],
        transaction_id: e.event_id.as_str(),
        // A business time ahead of our clock is clamped, not sent as future.
        event_timestamp: rfc3339(e.event_time_s.min(now_s)),
        user_data: (!ids.is_empty() && !denied).then_some(UserData {
            user_identifiers: ids,
        }),
        consent: has_consent.then_some(consent),
        ad_identifiers,
        currency: e.value.as_ref().map(|m| m.currency.code()),
        conversion_value: e
            .value
            .as_ref()
            .map(|m| number(m.amount.as_str()))
            .transpose()?,
        event_source: if e.session.page_url.is_some() {
            "WEB"
        } else {
            "OTHER"
        },
        event_device_info: (device.user_agent.is_some() || device.ip_address.is_some())
            .then_some(device),
        cart_data: (!items.is_empty()).then_some(CartData { items }),
    })
}

/// The request body for `events`, each with its conversion action ID.
pub fn body(
    target: &Target<'_>,
    events: &[(&BusinessEvent, &str)],
    now_s: i64,
) -> serde_json::Result<Vec<u8>> {
    let mut actions: BTreeMap<&str, String> = BTreeMap::new();
    for (_, action) in events {
        actions
            .entry(action)
            .or_insert_with(|| format!("ca-{action}"));
    }
    let destinations = actions
        .iter()
        .map(|(action, reference)| Destination {
            reference: reference.clone(),
            login_account: target.login_account_id.map(|id| Account {
                account_id: id,
                account_type: "GOOGLE_ADS",
            }),
            operating_account: Account {
                account_id: target.operating_account_id,
                account_type: "GOOGLE_ADS",
            },
            product_destination_id: action,
        })
        .collect();
    let events = events
        .iter()
        .map(|(e, action)| event(e, actions[action].clone(), now_s))
        .collect::<serde_json::Result<Vec<_>>>()?;
    let any_user_data = events.iter().any(|e| e.user_data.is_some());
    serde_json::to_vec(&Request {
        destinations,
        events,
        validate_only: target.validate_only,
        encoding: any_user_data.then_some("HEX"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{
        sha256_hex, ClickIds, Consent as EventConsent, EventId, GoogleUserHashes, Item, Kind,
        Money, SessionContext, UserIds,
    };
    use crate::lsn::Lsn;

    fn purchase(denied: bool) -> BusinessEvent {
        BusinessEvent {
            event_id: EventId::new("purchase-41").unwrap(),
            kind: Kind::new("transaction.purchase").unwrap(),
            rule: "purchase".into(),
            lane: crate::event::LaneKind::RealTime,
            event_time_s: 1_764_597_600,
            commit_lsn: Lsn(1),
            commit_time_us: 0,
            value: Some(Money::new("30.05", "USD").unwrap()),
            order_id: Some("41".into()),
            items: vec![Item {
                id: "SKU-1".into(),
                quantity: 2,
                unit_price: Some(crate::event::Decimal::parse("15.025").unwrap()),
            }],
            user: UserIds {
                google: if denied {
                    GoogleUserHashes::default()
                } else {
                    GoogleUserHashes {
                        email: Some(sha256_hex("janedoe@gmail.com")),
                        ..Default::default()
                    }
                },
                ..Default::default()
            },
            consent: EventConsent {
                ad_user_data: if denied {
                    Signal::Denied
                } else {
                    Signal::Granted
                },
                ..EventConsent::default()
            },
            click_ids: ClickIds {
                google: Some(GoogleClickId::Gclid("Cj0KCQ-AbC".into())),
                ..ClickIds::default()
            },
            session: SessionContext {
                ip: Some("203.0.113.7".into()),
                user_agent: Some("Mozilla/5.0".into()),
                page_url: Some("https://shop.example/".into()),
            },
        }
    }

    fn json(events: &[(&BusinessEvent, &str)]) -> serde_json::Value {
        let t = Target {
            operating_account_id: "1234567890",
            login_account_id: Some("999"),
            validate_only: false,
        };
        serde_json::from_slice(&body(&t, events, 1_800_000_000).unwrap()).unwrap()
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_764_597_600), "2025-12-01T14:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    /// The shape of Google's "send events" guide: destinations with the
    /// operating account and the conversion action, hex user identifiers,
    /// adIdentifiers, consent, value and cart items.
    #[test]
    fn an_ingest_request_has_the_documented_shape() {
        let e = purchase(false);
        let v = json(&[(&e, "555")]);
        assert_eq!(
            v["destinations"][0]["operatingAccount"],
            serde_json::json!({"accountId": "1234567890", "accountType": "GOOGLE_ADS"})
        );
        assert_eq!(v["destinations"][0]["loginAccount"]["accountId"], "999");
        assert_eq!(v["destinations"][0]["productDestinationId"], "555");
        assert_eq!(v["destinations"][0]["reference"], "ca-555");
        assert_eq!(v["encoding"], "HEX");
        let ev = &v["events"][0];
        assert_eq!(ev["destinationReferences"], serde_json::json!(["ca-555"]));
        assert_eq!(ev["transactionId"], "purchase-41");
        assert_eq!(ev["eventTimestamp"], "2025-12-01T14:00:00Z");
        assert_eq!(
            ev["userData"]["userIdentifiers"][0]["emailAddress"]
                .as_str()
                .unwrap()
                .len(),
            64
        );
        assert_eq!(
            ev["adIdentifiers"],
            serde_json::json!({"gclid": "Cj0KCQ-AbC"})
        );
        assert_eq!(
            ev["consent"],
            serde_json::json!({"adUserData": "CONSENT_GRANTED"})
        );
        assert_eq!(ev["conversionValue"], serde_json::json!(30.05));
        assert_eq!(ev["currency"], "USD");
        assert_eq!(ev["eventSource"], "WEB");
        assert_eq!(ev["eventDeviceInfo"]["ipAddress"], "203.0.113.7");
        assert_eq!(
            ev["cartData"]["items"][0],
            serde_json::json!({"merchantProductId": "SKU-1", "quantity": "2", "unitPrice": 15.025})
        );
    }

    #[test]
    fn denied_ad_user_data_sends_no_identifiers_or_ip_and_keeps_the_flag() {
        let e = purchase(true);
        let v = json(&[(&e, "555")]);
        let ev = &v["events"][0];
        assert!(ev.get("userData").is_none());
        assert!(ev["eventDeviceInfo"].get("ipAddress").is_none());
        assert_eq!(ev["consent"]["adUserData"], "CONSENT_DENIED");
        assert!(v.get("encoding").is_none(), "no user data, no encoding");
    }

    #[test]
    fn several_actions_share_one_request() {
        let a = purchase(false);
        let mut b = purchase(false);
        b.event_id = EventId::new("signup-3").unwrap();
        let v = json(&[(&a, "555"), (&b, "777")]);
        assert_eq!(v["destinations"].as_array().unwrap().len(), 2);
        assert_eq!(
            v["events"][1]["destinationReferences"],
            serde_json::json!(["ca-777"])
        );
    }
}
