//! How an event is stored in `events.payload`.
//!
//! Since schema version 5: MessagePack with field names (`rmp-serde`), in
//! which a digest ([`crate::event::Sha256Hex`]) is its 32 bytes rather than
//! 64 hex digits. Rows spooled before that hold JSON text and stay readable:
//! SQLite keeps each value's type, so a blob is MessagePack and text is JSON.
//!
//! Why not JSON: in workload A the apply thread spent 13 % of its time
//! encoding payloads as JSON (escaping every digest byte by byte), and the
//! payload is most of what each commit writes; every lane parses it again
//! (bench/RESULTS.md, eighth session). Field names are kept so the record
//! stays self-describing: `#[serde(default)]` and skipped fields work, and
//! an event written by an older version of the struct still reads.

use rusqlite::types::ValueRef;

use super::RecordError;
use crate::event::BusinessEvent;

/// The stored form of `event`.
pub fn encode(event: &BusinessEvent) -> Result<Vec<u8>, RecordError> {
    let mut out = Vec::new();
    encode_into(event, &mut out)?;
    Ok(out)
}

/// The stored form of `event` in `out` (emptied first). The writer keeps
/// one buffer for every event: growing a fresh vector was over half of the
/// encoding's cost in workload A (bench/RESULTS.md, ninth session).
pub fn encode_into(event: &BusinessEvent, out: &mut Vec<u8>) -> Result<(), RecordError> {
    out.clear();
    rmp_serde::encode::write_named(out, event)?;
    Ok(())
}

/// An event read back from `events.payload` (MessagePack, or the JSON of
/// rows spooled before schema version 5).
pub fn decode(stored: ValueRef<'_>) -> Result<BusinessEvent, RecordError> {
    match stored {
        ValueRef::Blob(bytes) => Ok(rmp_serde::from_slice(bytes)?),
        ValueRef::Text(json) => Ok(serde_json::from_slice(json)?),
        other => Err(format!("the payload is {}, not an event", other.data_type()).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{
        sha256_hex, ClickIds, Consent, EventId, GoogleClickId, Item, Kind, LaneKind, Money,
        SessionContext, Signal, UserIds,
    };
    use crate::lsn::Lsn;

    fn event() -> BusinessEvent {
        let mut user = UserIds::default();
        user.meta.em = Some(sha256_hex("a@example.com"));
        user.meta.external_id = Some(sha256_hex("42"));
        BusinessEvent {
            event_id: EventId::new("purchase-1").unwrap(),
            kind: Kind::new("transaction.purchase").unwrap(),
            rule: "purchase".into(),
            lane: LaneKind::Batched,
            event_time_s: 1_700_000_000,
            commit_lsn: Lsn(0x1_0000_0010),
            commit_time_us: 2,
            value: Some(Money::new("12.30", "usd").unwrap()),
            order_id: Some("1".into()),
            items: vec![Item {
                id: "sku".into(),
                quantity: 2,
                unit_price: None,
            }],
            user,
            consent: Consent {
                ad_user_data: Signal::Denied,
                ..Consent::default()
            },
            click_ids: ClickIds {
                google: Some(GoogleClickId::Gclid("Cj0-x".into())),
                fbp: Some("fb.1.1.2".into()),
                ..ClickIds::default()
            },
            session: SessionContext {
                ip: Some("2001:db8::1".into()),
                ..SessionContext::default()
            },
        }
    }

    #[test]
    fn an_event_round_trips_and_is_smaller_than_its_json() {
        let ev = event();
        let stored = encode(&ev).unwrap();
        assert_eq!(decode(ValueRef::Blob(&stored)).unwrap(), ev);
        let json = serde_json::to_string(&ev).unwrap();
        assert!(
            stored.len() * 4 < json.len() * 3,
            "{} bytes against {} of JSON",
            stored.len(),
            json.len()
        );
        // Digests are stored as their bytes, not as hex text.
        let hex = ev.user.meta.em.as_ref().unwrap().to_hex();
        assert!(!stored.windows(64).any(|w| w == hex.as_bytes()));
    }

    #[test]
    fn rows_spooled_as_json_still_read() {
        let ev = event();
        let json = serde_json::to_string(&ev).unwrap();
        assert_eq!(decode(ValueRef::Text(json.as_bytes())).unwrap(), ev);
    }

    #[test]
    fn what_is_not_an_event_is_an_error_naming_why() {
        assert!(decode(ValueRef::Blob(b"\x93\x01")).is_err());
        assert!(decode(ValueRef::Text(b"{not json")).is_err());
        let err = decode(ValueRef::Integer(7)).unwrap_err();
        assert!(err.to_string().contains("Integer"), "{err}");
    }
}
