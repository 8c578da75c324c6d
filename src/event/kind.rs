//! Event kinds (the commerce platform's names) and their default platform
//! names and lanes (DESIGN.md §3).
//!
//! A [`Kind`] is open: the seven canonical kinds have defaults here, and a
//! custom kind (`quote.requested`) is declared by a rule and mapped to
//! platform names in each destination's configuration. Platform names are
//! never stored with the event: delivery looks them up when it builds a
//! request, so a remapping applies to everything still pending.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An event kind such as `transaction.purchase`: lowercase ASCII letters,
/// digits, `_` and `.`, starting with a letter, at most 64 characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct Kind(String);

/// Written as its text, borrowed (serde's `into` would copy it per encode).
impl Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Why a string is not a [`Kind`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not an event kind: use lowercase letters, digits, `_` and `.` (e.g. `quote.requested`), starting with a letter, at most 64 characters")]
pub struct BadKind(pub String);

impl Kind {
    /// Validates a kind name.
    pub fn new(name: &str) -> Result<Kind, BadKind> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'.');
        if ok {
            Ok(Kind(name.to_owned()))
        } else {
            Err(BadKind(name.to_owned()))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The defaults of a canonical kind; `None` for a custom kind.
    pub fn canonical(&self) -> Option<&'static Canonical> {
        CANONICAL.iter().find(|c| c.kind == self.0)
    }
}

impl TryFrom<String> for Kind {
    type Error = BadKind;
    fn try_from(s: String) -> Result<Kind, BadKind> {
        Kind::new(&s)
    }
}

impl From<Kind> for String {
    fn from(k: Kind) -> String {
        k.0
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which delivery lane a kind uses by default (DESIGN.md §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LaneKind {
    /// Sent as soon as the lane is free.
    RealTime,
    /// Flushed when full or when the oldest event reaches its age limit.
    Batched,
}

impl LaneKind {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            LaneKind::RealTime => "real_time",
            LaneKind::Batched => "batched",
        }
    }
}

/// A canonical kind's platform names and lane.
#[derive(Debug)]
pub struct Canonical {
    /// Our name.
    pub kind: &'static str,
    /// Meta's standard `event_name`.
    pub meta: &'static str,
    /// GA4's recommended event name.
    pub ga4: &'static str,
    /// Google Ads `ConversionActionCategory` for provisioning.
    pub ads_category: &'static str,
    /// Default lane.
    pub lane: LaneKind,
}

/// DESIGN.md §3's table.
pub static CANONICAL: &[Canonical] = &[
    Canonical {
        kind: "transaction.purchase",
        meta: "Purchase",
        ga4: "purchase",
        ads_category: "PURCHASE",
        lane: LaneKind::RealTime,
    },
    Canonical {
        kind: "payment_info.added",
        meta: "AddPaymentInfo",
        ga4: "add_payment_info",
        ads_category: "DEFAULT",
        lane: LaneKind::RealTime,
    },
    Canonical {
        kind: "user.signed_up",
        meta: "CompleteRegistration",
        ga4: "sign_up",
        ads_category: "SIGNUP",
        lane: LaneKind::RealTime,
    },
    Canonical {
        kind: "lead.submitted",
        meta: "Lead",
        ga4: "generate_lead",
        ads_category: "SUBMIT_LEAD_FORM",
        lane: LaneKind::RealTime,
    },
    Canonical {
        kind: "checkout.started",
        meta: "InitiateCheckout",
        ga4: "begin_checkout",
        ads_category: "BEGIN_CHECKOUT",
        lane: LaneKind::Batched,
    },
    Canonical {
        kind: "cart.added",
        meta: "AddToCart",
        ga4: "add_to_cart",
        ads_category: "ADD_TO_CART",
        lane: LaneKind::Batched,
    },
    Canonical {
        kind: "product.viewed",
        meta: "ViewContent",
        ga4: "view_item",
        ads_category: "PAGE_VIEW",
        lane: LaneKind::Batched,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_validated_and_canonical_ones_have_defaults() {
        let k = Kind::new("transaction.purchase").unwrap();
        assert_eq!(k.canonical().unwrap().meta, "Purchase");
        assert_eq!(k.canonical().unwrap().lane, LaneKind::RealTime);
        assert!(Kind::new("quote.requested").unwrap().canonical().is_none());
        for bad in ["", "Purchase", "1x", "a b", "a-b"] {
            assert!(Kind::new(bad).is_err(), "{bad:?}");
        }
        assert_eq!(CANONICAL.len(), 7);
    }
}
