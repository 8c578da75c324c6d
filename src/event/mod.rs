//! The platform-neutral event model: what derivation produces, the spool
//! stores and delivery reads.
//!
//! A [`BusinessEvent`] is one conversion (a purchase, a sign-up, …) with
//! everything a platform needs, already in the shape the spool keeps:
//! identifiers hashed per platform ([`UserIds`]), consent as of the commit
//! ([`Consent`]), click IDs as captured ([`ClickIds`]), the shopper's
//! session context ([`SessionContext`]), money as exact decimal text with an
//! ISO 4217 currency ([`Money`]).
//!
//! Invariants:
//! - No raw PII: identity fields are [`Sha256Hex`] digests (see `user.rs` for
//!   the few values Google takes in clear). IP, user agent, URL and click IDs
//!   pass through unaltered, as the platforms require.
//! - The [`EventId`] is deterministic, never empty and never purely numeric
//!   (Google rejects numeric transaction IDs), so the pixel, retries, replays
//!   and backfills all report the same ID (DESIGN.md §4).
//! - No platform event names: those come from per-destination mapping
//!   (`kind.rs` defaults, overridable in configuration).
//!
//! Depends on nothing but `lsn`: `spool` and `deliver` use the model without
//! knowing derivation.

mod kind;
mod money;
mod user;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::lsn::Lsn;

pub use kind::{BadKind, Canonical, Kind, LaneKind, CANONICAL};
pub use money::{Currency, Decimal, Money, MoneyError};
pub use user::{
    is_sha256_lower, sha256_hex, GoogleUserHashes, MetaUserHashes, NotSha256Hex, Sha256Hex, UserIds,
};

/// A business event's stable ID, shared with the browser pixel.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct EventId(String);

/// Written as its text, borrowed (serde's `into` would copy it per encode).
impl Serialize for EventId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Why a string is not an [`EventId`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BadEventId {
    /// Empty or only whitespace.
    #[error("the event_id is empty")]
    Empty,
    /// Only digits: Google rejects numeric transaction IDs.
    #[error("the event_id {0:?} is purely numeric; Google rejects numeric transaction IDs: give the template a prefix, e.g. \"purchase-{{id}}\"")]
    Numeric(String),
    /// Longer than the platforms keep.
    #[error("the event_id is {0} characters long; at most {MAX_EVENT_ID_CHARS} are allowed")]
    TooLong(usize),
    /// Control characters or surrounding whitespace.
    #[error("the event_id contains control characters or leading/trailing whitespace")]
    Unprintable,
}

/// The longest ID kept; Google's `transactionId` and Meta's `event_id` are
/// matched against what the pixel sent, which is never this long.
pub const MAX_EVENT_ID_CHARS: usize = 256;

impl EventId {
    /// Validates an ID.
    pub fn new(id: impl Into<String>) -> Result<EventId, BadEventId> {
        let id = id.into();
        if id.trim().is_empty() {
            return Err(BadEventId::Empty);
        }
        if id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BadEventId::Numeric(id));
        }
        let chars = id.chars().count();
        if chars > MAX_EVENT_ID_CHARS {
            return Err(BadEventId::TooLong(chars));
        }
        if id.chars().any(char::is_control) || id.trim() != id {
            return Err(BadEventId::Unprintable);
        }
        Ok(EventId(id))
    }

    /// The ID.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EventId {
    type Error = BadEventId;
    fn try_from(s: String) -> Result<EventId, BadEventId> {
        EventId::new(s)
    }
}

impl From<EventId> for String {
    fn from(id: EventId) -> String {
        id.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One Consent Mode v2 signal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// The shopper granted it.
    Granted,
    /// The shopper denied it.
    Denied,
    /// Nothing recorded: never treated as granted.
    #[default]
    Unknown,
}

impl Signal {
    /// Reads a stored value: `granted`/`true`/`yes`/`1` and
    /// `denied`/`false`/`no`/`0` in any case; anything else is unknown.
    pub fn parse(text: &str) -> Signal {
        match text.trim().to_ascii_lowercase().as_str() {
            "granted" | "true" | "t" | "yes" | "y" | "1" | "on" => Signal::Granted,
            "denied" | "false" | "f" | "no" | "n" | "0" | "off" => Signal::Denied,
            _ => Signal::Unknown,
        }
    }

    /// The spelling used in configuration, logs and `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Granted => "granted",
            Signal::Denied => "denied",
            Signal::Unknown => "unknown",
        }
    }
}

/// The four Consent Mode v2 signals as of the event's commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    /// Advertising storage (cookies).
    #[serde(default)]
    pub ad_storage: Signal,
    /// Analytics storage.
    #[serde(default)]
    pub analytics_storage: Signal,
    /// Sending user data to Google for advertising.
    #[serde(default)]
    pub ad_user_data: Signal,
    /// Personalised advertising.
    #[serde(default)]
    pub ad_personalization: Signal,
}

impl Consent {
    /// True when nothing is known about any signal.
    pub fn is_unknown(&self) -> bool {
        *self == Consent::default()
    }

    /// Identifiers may go to ad platforms unless `ad_user_data` is denied.
    /// Unknown is not denied: what a destination does with unknown is its
    /// own policy (DESIGN.md §3).
    pub fn user_data_denied(&self) -> bool {
        self.ad_user_data == Signal::Denied
    }
}

/// The Google click ID attached to a conversion: exactly one of the three,
/// the most recently captured as of the commit (spec/google.md §2.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GoogleClickId {
    /// Web click.
    Gclid(String),
    /// iOS app-to-web click.
    Gbraid(String),
    /// iOS web-to-app click.
    Wbraid(String),
}

/// Click identifiers as captured by the storefront. Case-sensitive: never
/// altered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClickIds {
    /// Meta click ID cookie (`fb.1.<ms>.<fbclid>`), captured or built from
    /// `fbclid` and its first-seen time; absent once older than Meta's
    /// 90-day click window at the event time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fbc: Option<String>,
    /// Meta browser ID cookie (`fb.1.<ms>.<random>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fbp: Option<String>,
    /// Google's click ID for this conversion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub google: Option<GoogleClickId>,
}

impl ClickIds {
    /// True when no click ID is known.
    pub fn is_empty(&self) -> bool {
        self.fbc.is_none() && self.fbp.is_none() && self.google.is_none()
    }
}

/// Where the shopper was: passed through unhashed, as the platforms require.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionContext {
    /// Client IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Client user agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The page the event happened on (or the landing page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_url: Option<String>,
}

impl SessionContext {
    /// True when nothing is known.
    pub fn is_empty(&self) -> bool {
        self.ip.is_none() && self.user_agent.is_none() && self.page_url.is_none()
    }
}

/// One line of an order, cart or view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Product ID (SKU), as the catalog feed names it.
    pub id: String,
    /// Units.
    pub quantity: u32,
    /// Price of one unit, in the event's currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_price: Option<Decimal>,
}

/// A derived conversion, ready to spool. Contains no raw PII.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BusinessEvent {
    /// Deterministic ID shared with the browser pixel, e.g. `purchase-42`.
    pub event_id: EventId,
    /// What happened.
    pub kind: Kind,
    /// The rule that derived it.
    pub rule: String,
    /// The rule's lane (a destination may override it per kind).
    #[serde(default = "real_time")]
    pub lane: LaneKind,
    /// Business time (Unix seconds): the configured column, else commit
    /// time; never after the commit.
    pub event_time_s: i64,
    /// Commit LSN of the transaction the event came from.
    pub commit_lsn: Lsn,
    /// Commit time (Unix µs), for freshness.
    #[serde(default)]
    pub commit_time_us: i64,
    /// Value and currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Money>,
    /// The order / transaction ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// Line items.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<Item>,
    /// Hashed identifiers per platform. Empty for Google when
    /// `ad_user_data` was denied (derivation strips them).
    #[serde(default, skip_serializing_if = "UserIds::is_empty")]
    pub user: UserIds,
    /// Consent Mode v2 signals as of the commit.
    #[serde(default)]
    pub consent: Consent,
    /// Click identifiers as of the commit.
    #[serde(default, skip_serializing_if = "ClickIds::is_empty")]
    pub click_ids: ClickIds,
    /// IP, user agent and page.
    #[serde(default, skip_serializing_if = "SessionContext::is_empty")]
    pub session: SessionContext,
}

fn real_time() -> LaneKind {
    LaneKind::RealTime
}

/// `16/B374D848` in human-readable formats (JSON, the API); its 64-bit value
/// in binary ones (the spool's MessagePack payloads), which reads back
/// either form: formatting the text was 1.5 % of workload A's apply thread.
impl Serialize for Lsn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_u64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Position;
        impl serde::de::Visitor<'_> for Position {
            type Value = Lsn;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a WAL position (text like 16/B374D848, or its 64-bit value)")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Lsn, E> {
                s.parse().map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Lsn, E> {
                Ok(Lsn(v))
            }
        }
        if d.is_human_readable() {
            d.deserialize_str(Position)
        } else {
            // Payloads spooled by 0.1's first schema-5 build hold the text.
            d.deserialize_any(Position)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_lsn_is_text_in_json_and_a_number_in_the_spool_which_reads_both() {
        let lsn = Lsn(0x16_B374_D848);
        assert_eq!(serde_json::to_string(&lsn).unwrap(), "\"16/B374D848\"");
        assert_eq!(serde_json::from_str::<Lsn>("\"16/B374D848\"").unwrap(), lsn);
        let packed = rmp_serde::to_vec(&lsn).unwrap();
        assert_eq!(packed, rmp_serde::to_vec(&lsn.0).unwrap());
        assert_eq!(rmp_serde::from_slice::<Lsn>(&packed).unwrap(), lsn);
        // The first schema-5 payloads held the text.
        let text = rmp_serde::to_vec("16/B374D848").unwrap();
        assert_eq!(rmp_serde::from_slice::<Lsn>(&text).unwrap(), lsn);
        let bad = rmp_serde::to_vec("16-B374D848").unwrap();
        assert!(rmp_serde::from_slice::<Lsn>(&bad).is_err());
    }

    #[test]
    fn event_ids_refuse_empty_and_numeric() {
        assert!(EventId::new("purchase-42").is_ok());
        assert_eq!(EventId::new("  "), Err(BadEventId::Empty));
        let err = EventId::new("42").unwrap_err();
        assert!(err.to_string().contains("prefix"), "{err}");
        assert!(EventId::new("a\nb").is_err());
        assert!(EventId::new("x".repeat(300)).is_err());
        // Deserializing goes through the same check.
        assert!(serde_json::from_str::<EventId>("\"7\"").is_err());
    }

    #[test]
    fn consent_signals_parse_and_unknown_is_never_granted() {
        assert_eq!(Signal::parse("GRANTED"), Signal::Granted);
        assert_eq!(Signal::parse("f"), Signal::Denied);
        assert_eq!(Signal::parse(""), Signal::Unknown);
        assert_eq!(Signal::parse("maybe"), Signal::Unknown);
        let c = Consent::default();
        assert!(c.is_unknown());
        assert!(!c.user_data_denied());
    }

    #[test]
    fn an_event_round_trips_through_json() {
        let ev = BusinessEvent {
            event_id: EventId::new("purchase-1").unwrap(),
            kind: Kind::new("transaction.purchase").unwrap(),
            rule: "purchase".into(),
            lane: crate::event::LaneKind::RealTime,
            event_time_s: 1,
            commit_lsn: Lsn(0x10),
            commit_time_us: 2,
            value: Some(Money::new("12.30", "usd").unwrap()),
            order_id: Some("1".into()),
            items: vec![Item {
                id: "sku".into(),
                quantity: 2,
                unit_price: Some(Decimal::parse("6.15").unwrap()),
            }],
            user: UserIds::default(),
            consent: Consent {
                ad_user_data: Signal::Denied,
                ..Consent::default()
            },
            click_ids: ClickIds {
                google: Some(GoogleClickId::Gbraid("AbC".into())),
                ..ClickIds::default()
            },
            session: SessionContext::default(),
        };
        let json = serde_json::to_string(&ev).unwrap();
        assert!(json.contains(r#""gbraid":"AbC""#), "{json}");
        assert!(json.contains(r#""currency":"USD""#), "{json}");
        let back: BusinessEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ev);
    }
}
