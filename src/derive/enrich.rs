//! Enrichment at commit: a [`Draft`] + lookup state as of the commit → a
//! [`BusinessEvent`].
//!
//! Runs when the transaction's Commit arrives, after every lookup change of
//! that transaction has been applied, so the event sees customers, sessions,
//! consent and items exactly as committed with it (DESIGN.md §3). Consent is
//! taken from the rule's sources in order (session, then customer); when
//! none has an entry every signal stays unknown, never granted. When
//! `ad_user_data` is denied, the Google identifiers are not kept.

use super::evaluate::{item_from_fields, Draft};
use super::lookup::{google_click, live, Entry, Lookup, LookupError};
use super::rules::{Join, RuleSet};
use super::{Effect, Note, TxContext};
use crate::event::{
    BusinessEvent, ClickIds, Consent, GoogleClickId, GoogleUserHashes, SessionContext, Signal,
};

/// Meta ignores an `fbc` older than its 90-day click window (spec
/// meta-capi.md §4); sending it would only add a stale match key.
const FBC_WINDOW_MS: i64 = 90 * 86_400_000;

/// Resolves one draft's joins; notes go to `out`.
pub fn enrich(
    rules: &RuleSet,
    tx: &TxContext,
    draft: Draft,
    lookup: &dyn Lookup,
    out: &mut Vec<Effect>,
) -> Result<BusinessEvent, LookupError> {
    let rule = &rules.rules[draft.rule];
    let as_of = tx.commit_time_us;
    let latest = |join: &Join, key: &str| -> Result<Option<Entry>, LookupError> {
        let def = &rules.lookups[&join.lookup];
        Ok(live(def, lookup.latest(&join.lookup, key)?, as_of))
    };

    let mut user = draft.identity;
    if let (Some(join), Some(key)) = (&rule.customer, &draft.customer) {
        if let Some(entry) = latest(join, key)? {
            user = user.or(&entry.identity);
        }
    }

    let mut click_ids = ClickIds::default();
    let mut session = SessionContext::default();
    if let (Some(join), Some(key)) = (&rule.session, &draft.session) {
        if let Some(entry) = latest(join, key)? {
            let f = &entry.fields;
            click_ids.fbp = f.get("fbp").cloned();
            click_ids.fbc = f.get("fbc").cloned().or_else(|| build_fbc(&entry));
            if let Some(fbc) = &click_ids.fbc {
                if fbc_created_ms(fbc)
                    .is_some_and(|ms| draft.event_time_us / 1000 - ms > FBC_WINDOW_MS)
                {
                    out.push(Effect::Note(Note {
                        reason: format!(
                            "rules[{}]: fbc older than Meta's 90-day click window, not sent",
                            rule.name
                        ),
                    }));
                    click_ids.fbc = None;
                }
            }
            click_ids.google = google_click(&entry).map(|(role, v)| match role {
                "gbraid" => GoogleClickId::Gbraid(v.to_owned()),
                "wbraid" => GoogleClickId::Wbraid(v.to_owned()),
                _ => GoogleClickId::Gclid(v.to_owned()),
            });
            session.ip = f.get("ip").cloned();
            session.user_agent = f.get("user_agent").cloned();
            session.page_url = f.get("page_url").cloned();
        }
    }
    if draft.page_url.is_some() {
        session.page_url = draft.page_url;
    }

    let mut consent = Consent::default();
    for (join, key) in rule.consent.iter().zip(&draft.consent) {
        let Some(key) = key else { continue };
        if let Some(entry) = latest(join, key)? {
            let get = |s: &str| {
                entry
                    .fields
                    .get(s)
                    .map_or(Signal::Unknown, |v| Signal::parse(v))
            };
            consent = Consent {
                ad_storage: get("ad_storage"),
                analytics_storage: get("analytics_storage"),
                ad_user_data: get("ad_user_data"),
                ad_personalization: get("ad_personalization"),
            };
            break;
        }
    }
    if consent.user_data_denied() {
        // Google gets the event without identifiers (DESIGN.md §3).
        user.google = GoogleUserHashes::default();
    }

    let currency = draft
        .value
        .as_ref()
        .map(|m| m.currency)
        .or(rule.currency_default);
    let mut items = Vec::new();
    if let (Some(join), Some(key)) = (&rule.items, &draft.items) {
        let def = &rules.lookups[&join.lookup];
        let minor = def.item.as_ref().is_some_and(|i| i.unit_price_minor_units);
        for entry in lookup.all(&join.lookup, key)? {
            let Some(entry) = live(def, Some(entry), as_of) else {
                continue;
            };
            let f = |k: &str| entry.fields.get(k).map(String::as_str);
            match item_from_fields(
                f("item.id"),
                f("item.quantity"),
                f("item.unit_price"),
                minor,
                currency,
            ) {
                Ok(item) => items.push(item),
                Err(why) => out.push(Effect::Note(Note {
                    reason: format!("lookups.{}: an item {why}; left out", join.lookup),
                })),
            }
        }
    }
    items.extend(draft.item);

    Ok(BusinessEvent {
        event_id: draft.event_id,
        kind: rule.kind.clone(),
        rule: rule.name.clone(),
        lane: rule.lane,
        event_time_s: draft.event_time_us.div_euclid(1_000_000),
        commit_lsn: tx.commit_lsn,
        commit_time_us: tx.commit_time_us,
        value: draft.value,
        order_id: draft.order_id,
        items,
        user,
        consent,
        click_ids,
        session,
    })
}

/// `fb.1.<first seen ms>.<fbclid>` when the storefront kept the fbclid but
/// no `_fbc` cookie (spec meta-capi.md §4.2). The first-seen time is the
/// captured column, else the commit that first stored this fbclid.
fn build_fbc(entry: &Entry) -> Option<String> {
    let fbclid = entry.fields.get("fbclid")?;
    let ms = entry
        .fields
        .get("fbclid_seen_ms")
        .and_then(|v| v.parse::<i64>().ok())
        .or_else(|| entry.seen_us.get("fbclid").map(|us| us.div_euclid(1000)))?;
    Some(format!("fb.1.{ms}.{fbclid}"))
}

/// The creation time inside an `fbc` value.
fn fbc_created_ms(fbc: &str) -> Option<i64> {
    let mut parts = fbc.splitn(4, '.');
    let (Some("fb"), Some(_), Some(ms), Some(_)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    ms.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fbc_is_built_from_fbclid_and_its_first_seen_time_without_changing_case() {
        let mut e = Entry::default();
        e.fields.insert(
            "fbclid".into(),
            "IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgk".into(),
        );
        assert_eq!(build_fbc(&e), None, "no first-seen time, no fbc");
        e.seen_us.insert("fbclid".into(), 1_554_763_694_000_000);
        assert_eq!(
            build_fbc(&e).as_deref(),
            Some(
                "fb.1.1554763694000.IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgk"
            )
        );
        e.fields
            .insert("fbclid_seen_ms".into(), "1554763694358".into());
        let fbc = build_fbc(&e).unwrap();
        assert_eq!(
            fbc,
            "fb.1.1554763694358.IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgk"
        );
        assert_eq!(fbc_created_ms(&fbc), Some(1_554_763_694_358));
        assert_eq!(fbc_created_ms("garbage"), None);
    }
}
