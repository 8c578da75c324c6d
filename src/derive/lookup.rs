//! Lookup state: the as-of copy of consent, session, customer and item
//! tables that events are enriched from.
//!
//! Input: a row change on a lookup's table (or a row of setup's snapshot).
//! Output: one generic [`Effect`] per lookup — put, delete or clear an
//! [`Entry`] — that the apply loop writes into the open spool batch in WAL
//! order. Entries hold hashes and pass-through values only, never raw PII.
//!
//! Every row is stored by its primary key (`pk`); rules reach entries by the
//! lookup's `key` column (the latest entry for a key, or all of them for
//! items). Deletes therefore work with the default replica identity, which
//! sends only the primary key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::identity::{self, Field, Pii, RawUser};
use super::rules::{consent_columns, identity_columns, LookupDef, RawIdentity};
use super::values::{self, Cell};
use super::{Effect, Note};
use crate::decode::{Relation, Row};
use crate::event::UserIds;

/// One stored lookup row.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Hashed identity (identity lookups).
    #[serde(default, skip_serializing_if = "UserIds::is_empty")]
    pub identity: UserIds,
    /// Kept values by role (`fbc`, `gclid`, `ip`, `ad_user_data`, `item.id`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
    /// When each click ID got its current value (commit time, µs).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub seen_us: BTreeMap<String, i64>,
    /// Commit time of the row's last change (µs), for expiry.
    #[serde(default)]
    pub updated_us: i64,
}

/// Lookup state could not be read.
#[derive(Debug, thiserror::Error)]
#[error("lookup state: {0}")]
pub struct LookupError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// Read access to lookup state as of the current point in the stream.
pub trait Lookup {
    /// The entry stored for a row.
    fn by_pk(&self, lookup: &str, pk: &str) -> Result<Option<Entry>, LookupError>;
    /// The latest entry for a key.
    fn latest(&self, lookup: &str, key: &str) -> Result<Option<Entry>, LookupError>;
    /// Every entry for a key, in primary-key order.
    fn all(&self, lookup: &str, key: &str) -> Result<Vec<Entry>, LookupError>;
    /// Whether a rule's condition held for a row at its last change.
    fn rule_held(&self, rule: &str, pk: &str) -> Result<bool, LookupError>;
}

/// Click ID roles whose first-seen time decides Google's choice.
const GOOGLE_CLICKS: [&str; 3] = ["gclid", "gbraid", "wbraid"];

/// The put effect for one row of a lookup's table; `previous` is the entry
/// stored for the same row (for unchanged TOAST columns and seen times).
pub fn put(
    def: &LookupDef,
    rel: &Relation,
    row: &Row,
    commit_time_us: i64,
    previous: Option<&Entry>,
    notes: &mut Vec<Effect>,
) -> Option<Effect> {
    let pk = values::key(rel, row)?;
    let key = match &def.key {
        None => Some(pk.clone()),
        Some(col) => match values::text(rel, row, col) {
            Cell::Some(k) => Some(k),
            // The key did not change: keep the stored one.
            Cell::Unchanged => previous.and_then(|p| p.fields.get("key").cloned()),
            _ => None,
        },
    };
    let Some(key) = key else {
        // A row without a key (a consent row for no session) is not
        // reachable through this lookup; drop any earlier version of it.
        return Some(Effect::DeleteLookup {
            lookup: def.name.clone(),
            pk,
        });
    };
    let mut entry = Entry {
        updated_us: commit_time_us,
        ..Entry::default()
    };
    entry.fields.insert("key".into(), key.clone());
    let keep = |role: String, column: &str, entry: &mut Entry| match values::text(rel, row, column)
    {
        Cell::Some(v) => {
            entry.fields.insert(role, v);
        }
        Cell::Unchanged => {
            if let Some(v) = previous.and_then(|p| p.fields.get(&role)) {
                entry.fields.insert(role, v.clone());
            }
        }
        _ => {}
    };
    if let Some(c) = &def.click_ids {
        for (role, col) in [
            ("fbc", &c.fbc),
            ("fbp", &c.fbp),
            ("fbclid", &c.fbclid),
            ("gclid", &c.gclid),
            ("gbraid", &c.gbraid),
            ("wbraid", &c.wbraid),
        ] {
            if let Some(col) = col {
                keep(role.into(), col, &mut entry);
            }
        }
        if let Some(col) = &c.fbclid_seen_at {
            match values::instant_us(rel, row, col) {
                Cell::Some(us) => {
                    entry
                        .fields
                        .insert("fbclid_seen_ms".into(), (us.div_euclid(1000)).to_string());
                }
                Cell::Unchanged => {
                    if let Some(v) = previous.and_then(|p| p.fields.get("fbclid_seen_ms")) {
                        entry.fields.insert("fbclid_seen_ms".into(), v.clone());
                    }
                }
                _ => {}
            }
        }
        for role in ["fbclid", "gclid", "gbraid", "wbraid"] {
            let Some(now) = entry.fields.get(role) else {
                continue;
            };
            let same = previous.is_some_and(|p| p.fields.get(role) == Some(now));
            let seen = match previous.and_then(|p| p.seen_us.get(role)) {
                Some(t) if same => *t,
                _ => commit_time_us,
            };
            entry.seen_us.insert(role.into(), seen);
        }
    }
    if let Some(c) = &def.context {
        for (role, col) in [
            ("ip", &c.ip),
            ("user_agent", &c.user_agent),
            ("page_url", &c.page_url),
        ] {
            if let Some(col) = col {
                keep(role.into(), col, &mut entry);
            }
        }
    }
    if let Some(c) = &def.consent {
        for (role, col) in consent_columns(c) {
            keep(role.into(), col, &mut entry);
        }
    }
    if let Some(i) = &def.item {
        keep("item.id".into(), &i.id, &mut entry);
        if let Some(q) = &i.quantity {
            keep("item.quantity".into(), q, &mut entry);
        }
        if let Some(p) = &i.unit_price {
            keep("item.unit_price".into(), p, &mut entry);
        }
    }
    if let Some(id) = &def.identity {
        let (ids, dropped) = hash_identity(id, rel, row, previous.map(|p| &p.identity));
        entry.identity = ids;
        note_dropped(&format_args!("lookups.{}", def.name), &dropped, notes);
    }
    Some(Effect::PutLookup {
        lookup: def.name.clone(),
        pk,
        key,
        entry,
    })
}

/// Hashes the identity columns of a row. Columns left unchanged (TOAST)
/// keep the hashes stored for them in `previous`; nothing is invented.
pub fn hash_identity(
    id: &RawIdentity,
    rel: &Relation,
    row: &Row,
    previous: Option<&UserIds>,
) -> (UserIds, Vec<identity::Dropped>) {
    let mut raw = RawUser::default();
    let mut unchanged = Vec::new();
    for (field, col) in identity_columns(id) {
        let (slot, f) = match field {
            "email" => (&mut raw.email, Field::Email),
            "phone" => (&mut raw.phone, Field::Phone),
            "first_name" => (&mut raw.first_name, Field::FirstName),
            "last_name" => (&mut raw.last_name, Field::LastName),
            "city" => (&mut raw.city, Field::City),
            "state" => (&mut raw.state, Field::State),
            "zip" => (&mut raw.zip, Field::Zip),
            "country" => (&mut raw.country, Field::Country),
            _ => (&mut raw.external_id, Field::ExternalId),
        };
        match values::text(rel, row, col) {
            Cell::Some(v) => *slot = Some(Pii::new(v)),
            Cell::Unchanged => unchanged.push(f),
            _ => {}
        }
    }
    let country = raw.country.as_ref().map(|c| c.expose().to_owned());
    let (mut ids, dropped) = identity::hash_user(&raw, country.as_deref());
    if let Some(prev) = previous {
        for f in unchanged {
            identity::keep_unchanged(&mut ids, f, prev);
        }
    }
    (ids, dropped)
}

/// Turns identity drops into counted notes (field and reason, no value).
pub fn note_dropped(
    at: &dyn std::fmt::Display,
    dropped: &[identity::Dropped],
    notes: &mut Vec<Effect>,
) {
    for d in dropped {
        notes.push(Effect::Note(Note {
            reason: format!("{at}: {} dropped: {}", d.field.as_str(), d.reason),
        }));
    }
}

/// The entry if it has not expired at `as_of_us`.
pub fn live(def: &LookupDef, entry: Option<Entry>, as_of_us: i64) -> Option<Entry> {
    entry.filter(|e| {
        def.expire_after_s
            .is_none_or(|s| as_of_us - e.updated_us <= s * 1_000_000)
    })
}

/// The most recently captured Google click ID of a session entry.
pub fn google_click(entry: &Entry) -> Option<(&'static str, &str)> {
    let mut best: Option<(&'static str, &str, i64)> = None;
    for role in GOOGLE_CLICKS {
        if let Some(v) = entry.fields.get(role) {
            let seen = entry.seen_us.get(role).copied().unwrap_or(i64::MIN);
            // Ties (all captured in one change) keep the first: gclid.
            if best.is_none_or(|(_, _, t)| seen > t) {
                best = Some((role, v.as_str(), seen));
            }
        }
    }
    best.map(|(r, v, _)| (r, v))
}
