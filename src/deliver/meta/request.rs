//! Meta request building: a batch of [`BusinessEvent`]s → the JSON body of
//! `POST /{pixel_id}/events` (spec/meta-capi.md §1.2, §2, §3, §5).
//!
//! - `user_data`: the event's Meta hashes, plus the unhashed
//!   `client_ip_address`, `client_user_agent`, `fbc` and `fbp`.
//! - `action_source`: `website` when the session gives both the page URL
//!   and the user agent, which Meta requires for it; else `other` (a
//!   conversion recorded by the shop's database, not seen in a browser).
//! - Consent: Meta has no consent field. With `ad_user_data` denied and
//!   `consent_policy = send_limited`, the event goes without hashed
//!   identifiers and click cookies; only what any HTTP request reveals (IP,
//!   user agent) stays. `drop` is applied before batching (a skip).

use serde::Serialize;
use serde_json::value::RawValue;

use crate::config::MetaConfig;
use crate::event::{BusinessEvent, MetaUserHashes};

#[derive(Serialize)]
struct Body<'a> {
    data: Vec<ServerEvent<'a>>,
    access_token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    test_event_code: Option<&'a str>,
}

#[derive(Serialize)]
struct ServerEvent<'a> {
    event_name: &'a str,
    event_time: i64,
    event_id: &'a str,
    action_source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_source_url: Option<&'a str>,
    user_data: UserData<'a>,
    custom_data: CustomData<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_processing_options: Option<[&'static str; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_processing_options_country: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_processing_options_state: Option<u32>,
}

#[derive(Serialize)]
struct UserData<'a> {
    #[serde(flatten)]
    hashes: &'a MetaUserHashes,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_ip_address: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_user_agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fbc: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fbp: Option<&'a str>,
}

#[derive(Serialize)]
struct Content<'a> {
    id: &'a str,
    quantity: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    item_price: Option<Box<RawValue>>,
}

#[derive(Serialize)]
struct CustomData<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    currency: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    order_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    content_ids: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    contents: Vec<Content<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    num_items: Option<u32>,
}

static NO_HASHES: MetaUserHashes = MetaUserHashes {
    em: None,
    ph: None,
    fn_: None,
    ln: None,
    ct: None,
    st: None,
    zp: None,
    country: None,
    external_id: None,
};

/// A decimal text as a JSON number (it is one: `Decimal` guarantees it).
fn number(text: &str) -> serde_json::Result<Box<RawValue>> {
    RawValue::from_string(text.to_owned())
}

/// Whether the event's `user_data` has a key Meta can match on: a hashed
/// identifier other than location alone, a client IP, `fbc` or `fbp`
/// (a user agent or a country alone is "insufficient", spec §3.4).
pub fn has_match_key(event: &BusinessEvent) -> bool {
    if event.consent.user_data_denied() {
        return limited_has_match_key(event);
    }
    let m = &event.user.meta;
    let strong = m.em.is_some()
        || m.ph.is_some()
        || m.external_id.is_some()
        || (m.fn_.is_some() && m.ln.is_some());
    strong
        || event.session.ip.is_some()
        || event.click_ids.fbc.is_some()
        || event.click_ids.fbp.is_some()
}

/// Whether an event sent limited (no identifiers) still has a match key.
pub fn limited_has_match_key(event: &BusinessEvent) -> bool {
    event.session.ip.is_some()
}

fn event<'a>(
    e: &'a BusinessEvent,
    name: &'a str,
    now_s: i64,
    ldu: Option<(u32, u32)>,
) -> serde_json::Result<ServerEvent<'a>> {
    let limited = e.consent.user_data_denied();
    let s = &e.session;
    let website = s.page_url.is_some() && s.user_agent.is_some();
    let user_data = UserData {
        hashes: if limited { &NO_HASHES } else { &e.user.meta },
        client_ip_address: s.ip.as_deref(),
        client_user_agent: s.user_agent.as_deref(),
        fbc: e.click_ids.fbc.as_deref().filter(|_| !limited),
        fbp: e.click_ids.fbp.as_deref().filter(|_| !limited),
    };
    let contents = e
        .items
        .iter()
        .map(|i| {
            Ok(Content {
                id: &i.id,
                quantity: i.quantity,
                item_price: i
                    .unit_price
                    .as_ref()
                    .map(|p| number(p.as_str()))
                    .transpose()?,
            })
        })
        .collect::<serde_json::Result<Vec<_>>>()?;
    Ok(ServerEvent {
        event_name: name,
        // A shop clock ahead of ours must not make Meta reject the event.
        event_time: e.event_time_s.min(now_s),
        event_id: e.event_id.as_str(),
        action_source: if website { "website" } else { "other" },
        event_source_url: if website { s.page_url.as_deref() } else { None },
        user_data,
        custom_data: CustomData {
            value: e
                .value
                .as_ref()
                .map(|m| number(m.amount.as_str()))
                .transpose()?,
            currency: e.value.as_ref().map(|m| m.currency.code()),
            order_id: e.order_id.as_deref(),
            content_ids: e.items.iter().map(|i| i.id.as_str()).collect(),
            content_type: (!e.items.is_empty()).then_some("product"),
            num_items: (!e.items.is_empty()).then(|| e.items.iter().map(|i| i.quantity).sum()),
            contents,
        },
        data_processing_options: ldu.map(|_| ["LDU"]),
        data_processing_options_country: ldu.map(|(c, _)| c),
        data_processing_options_state: ldu.map(|(_, s)| s),
    })
}

/// The request body for `events`; `name` maps each to its `event_name`.
pub fn body<'a>(
    config: &'a MetaConfig,
    events: &[&'a BusinessEvent],
    name: impl Fn(&'a BusinessEvent) -> Option<&'a str>,
    now_s: i64,
) -> serde_json::Result<Vec<u8>> {
    let data = events
        .iter()
        .map(|e| {
            event(
                e,
                name(e).unwrap_or_default(),
                now_s,
                config.limited_data_use,
            )
        })
        .collect::<serde_json::Result<Vec<_>>>()?;
    serde_json::to_vec(&Body {
        data,
        access_token: config.access_token.expose(),
        test_event_code: config.test_event_code.as_deref(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ClickIds, Consent, EventId, Item, Kind, Money, SessionContext, Signal};
    use crate::lsn::Lsn;

    fn config() -> MetaConfig {
        crate::config::Config::from_figment(figment::Figment::new().merge(
            figment::providers::Serialized::defaults(serde_json::json!({
                "source": {"url": "postgresql://h/db"},
                "destinations": {"meta": {"pixel_id": "1", "access_token": "t"}}
            })),
        ))
        .unwrap()
        .meta
        .unwrap()
    }

    fn purchase() -> BusinessEvent {
        BusinessEvent {
            event_id: EventId::new("purchase-7").unwrap(),
            kind: Kind::new("transaction.purchase").unwrap(),
            rule: "purchase".into(),
            lane: crate::event::LaneKind::RealTime,
            event_time_s: 1_700_000_000,
            commit_lsn: Lsn(1),
            commit_time_us: 0,
            value: Some(Money::new("12.30", "usd").unwrap()),
            order_id: Some("7".into()),
            items: vec![Item {
                id: "SKU-1".into(),
                quantity: 2,
                unit_price: Some(crate::event::Decimal::parse("6.15").unwrap()),
            }],
            user: crate::event::UserIds {
                meta: MetaUserHashes {
                    em: Some(crate::event::sha256_hex("a@example.com")),
                    ..Default::default()
                },
                ..Default::default()
            },
            consent: Consent::default(),
            click_ids: ClickIds {
                fbc: Some("fb.1.1554763741205.AbCdEfGh".into()),
                fbp: Some("fb.1.1596403881668.1116446470".into()),
                google: None,
            },
            session: SessionContext {
                ip: Some("203.0.113.7".into()),
                user_agent: Some("Mozilla/5.0".into()),
                page_url: Some("https://shop.example/checkout".into()),
            },
        }
    }

    fn json(events: &[&BusinessEvent]) -> serde_json::Value {
        let c = config();
        serde_json::from_slice(&body(&c, events, |_| Some("Purchase"), 1_800_000_000).unwrap())
            .unwrap()
    }

    /// The shape of Meta's documented Purchase example (spec §5): numbers
    /// as numbers, contents with id/quantity/item_price, unhashed cookies.
    #[test]
    fn a_purchase_has_metas_documented_shape() {
        let e = purchase();
        let v = json(&[&e]);
        let ev = &v["data"][0];
        assert_eq!(ev["action_source"], "website");
        assert_eq!(ev["event_source_url"], "https://shop.example/checkout");
        assert_eq!(ev["custom_data"]["value"], serde_json::json!(12.30));
        assert_eq!(ev["custom_data"]["currency"], "USD");
        assert_eq!(
            ev["custom_data"]["contents"][0],
            serde_json::json!({"id": "SKU-1", "quantity": 2, "item_price": 6.15})
        );
        assert_eq!(ev["custom_data"]["num_items"], 2);
        assert_eq!(ev["custom_data"]["content_type"], "product");
        assert_eq!(ev["user_data"]["fbc"], "fb.1.1554763741205.AbCdEfGh");
        assert_eq!(ev["user_data"]["client_ip_address"], "203.0.113.7");
        assert!(ev["user_data"]["em"].is_string());
        assert!(ev.get("data_processing_options").is_none());
        // A business time ahead of our clock is clamped, not sent as future.
        let mut ahead = purchase();
        ahead.event_time_s = 1_900_000_000;
        assert_eq!(json(&[&ahead])["data"][0]["event_time"], 1_800_000_000);
    }

    #[test]
    fn limited_data_use_is_sent_as_configured() {
        let mut c = config();
        c.limited_data_use = Some((1, 1000));
        let e = purchase();
        let v: serde_json::Value =
            serde_json::from_slice(&body(&c, &[&e], |_| Some("Purchase"), 1_800_000_000).unwrap())
                .unwrap();
        assert_eq!(
            v["data"][0]["data_processing_options"],
            serde_json::json!(["LDU"])
        );
        assert_eq!(v["data"][0]["data_processing_options_country"], 1);
        assert_eq!(v["data"][0]["data_processing_options_state"], 1000);
    }

    #[test]
    fn without_a_browser_page_the_source_is_other_and_denied_consent_sends_limited() {
        let mut e = purchase();
        e.session.page_url = None;
        e.consent.ad_user_data = Signal::Denied;
        let v = json(&[&e]);
        let ev = &v["data"][0];
        assert_eq!(ev["action_source"], "other");
        assert!(ev.get("event_source_url").is_none());
        let ud = ev["user_data"].as_object().unwrap();
        assert!(
            !ud.contains_key("em") && !ud.contains_key("fbc") && !ud.contains_key("fbp"),
            "{ud:?}"
        );
        assert_eq!(ud["client_ip_address"], "203.0.113.7");
    }
}
