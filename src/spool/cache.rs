//! The apply loop's memory of lookup rows it has read or written, so that a
//! commit does not read and parse the same row from SQLite again (workload
//! A's customer, C's session of the journey).
//!
//! Invariants (the cache never answers differently from the spool):
//! - Only the writer changes lookup rows while `run` runs (setup writes them
//!   before the first checkpoint; backfill uses a scratch spool), and it
//!   changes them through [`LookupCache::put`], [`LookupCache::delete`] and
//!   [`LookupCache::clear`], which keep this cache in step.
//! - A row's entry (`by_pk`) is stored exactly; a key's latest entry is only
//!   ever forgotten on a write, never computed, so the spool's ordering
//!   (change time, then rowid) stays the one place that decides it.
//! - Pruning runs on another connection: it bumps the spool's prune
//!   generation after each commit, and a changed generation empties the
//!   cache before the next read (the prune is then seen as if it ran at
//!   that moment, which is as good as any other moment: it is asynchronous).
//! - A rolled-back batch empties the cache: its writes never happened.
//! - At most [`MAX_ENTRIES`] rows per map; a full map is emptied and refilled
//!   from the spool, so memory stays bounded without an LRU's bookkeeping.

use std::collections::HashMap;

use crate::derive::Entry;

/// Rows kept per map (by row, by key) before it is emptied.
pub const MAX_ENTRIES: usize = 4096;

/// Lookup name → (row or key → entry, `None` = known absent).
type Map = HashMap<String, HashMap<String, Option<Entry>>>;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct LookupCache {
    generation: u64,
    by_pk: Map,
    by_pk_len: usize,
    latest: Map,
    latest_len: usize,
}

/// Result of a cache read (returned by value and consumed at once, so its
/// size does not matter).
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Cached {
    /// Not known: ask the spool.
    Unknown,
    /// Known; `None` means no such row.
    Known(Option<Entry>),
}

impl LookupCache {
    /// Empties the cache if the spool was pruned since it was filled.
    pub fn sync(&mut self, generation: u64) {
        if generation != self.generation {
            self.forget_all();
            self.generation = generation;
        }
    }

    /// Forgets everything (a rolled-back batch, a prune).
    pub fn forget_all(&mut self) {
        self.by_pk.clear();
        self.latest.clear();
        self.by_pk_len = 0;
        self.latest_len = 0;
    }

    fn get(map: &Map, lookup: &str, k: &str) -> Cached {
        match map.get(lookup).and_then(|m| m.get(k)) {
            Some(e) => Cached::Known(e.clone()),
            None => Cached::Unknown,
        }
    }

    fn set(map: &mut Map, len: &mut usize, lookup: &str, k: &str, entry: Option<Entry>) {
        if *len >= MAX_ENTRIES {
            map.clear();
            *len = 0;
        }
        let inner = match map.get_mut(lookup) {
            Some(m) => m,
            None => map.entry(lookup.to_owned()).or_default(),
        };
        if inner.insert(k.to_owned(), entry).is_none() {
            *len += 1;
        }
    }

    fn remove(map: &mut Map, len: &mut usize, lookup: &str, k: &str) {
        if let Some(m) = map.get_mut(lookup) {
            if m.remove(k).is_some() {
                *len -= 1;
            }
        }
    }

    /// The cached entry of a row.
    pub fn by_pk(&self, lookup: &str, pk: &str) -> Cached {
        Self::get(&self.by_pk, lookup, pk)
    }

    /// The cached latest entry of a key.
    pub fn latest(&self, lookup: &str, key: &str) -> Cached {
        Self::get(&self.latest, lookup, key)
    }

    /// Remembers what the spool said about a row.
    pub fn read_pk(&mut self, lookup: &str, pk: &str, entry: Option<Entry>) {
        Self::set(&mut self.by_pk, &mut self.by_pk_len, lookup, pk, entry);
    }

    /// Remembers what the spool said about a key.
    pub fn read_latest(&mut self, lookup: &str, key: &str, entry: Option<Entry>) {
        Self::set(&mut self.latest, &mut self.latest_len, lookup, key, entry);
    }

    /// The key a row is stored under, when the cache knows the row:
    /// `Some(None)` for a row known to be absent.
    pub fn key_of(&self, lookup: &str, pk: &str) -> Option<Option<String>> {
        match self.by_pk(lookup, pk) {
            Cached::Unknown => None,
            Cached::Known(e) => Some(e.and_then(|e| e.fields.get("key").cloned())),
        }
    }

    /// A row was written under `key`, having been stored under `old_key`.
    pub fn put(&mut self, lookup: &str, pk: &str, key: &str, old_key: Option<&str>, entry: &Entry) {
        Self::remove(&mut self.latest, &mut self.latest_len, lookup, key);
        if let Some(old) = old_key {
            Self::remove(&mut self.latest, &mut self.latest_len, lookup, old);
        }
        Self::set(
            &mut self.by_pk,
            &mut self.by_pk_len,
            lookup,
            pk,
            Some(entry.clone()),
        );
    }

    /// A row stored under `old_key` was deleted.
    pub fn delete(&mut self, lookup: &str, pk: &str, old_key: Option<&str>) {
        if let Some(old) = old_key {
            Self::remove(&mut self.latest, &mut self.latest_len, lookup, old);
        }
        Self::set(&mut self.by_pk, &mut self.by_pk_len, lookup, pk, None);
    }

    /// Every row of a lookup was deleted.
    pub fn clear(&mut self, lookup: &str) {
        if let Some(m) = self.by_pk.remove(lookup) {
            self.by_pk_len -= m.len();
        }
        if let Some(m) = self.latest.remove(lookup) {
            self.latest_len -= m.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, t: i64) -> Entry {
        let mut e = Entry {
            updated_us: t,
            ..Entry::default()
        };
        e.fields.insert("key".into(), key.into());
        e
    }

    fn known(c: Cached) -> Option<Entry> {
        match c {
            Cached::Known(e) => e,
            Cached::Unknown => panic!("expected a cached answer"),
        }
    }

    #[test]
    fn writes_keep_rows_exact_and_forget_the_keys_they_touch() {
        let mut c = LookupCache::default();
        c.read_pk("sessions", "s1", None);
        c.read_latest("sessions", "k1", Some(entry("k1", 1)));
        c.read_latest("sessions", "k2", Some(entry("k2", 1)));
        c.read_latest("sessions", "k3", Some(entry("k3", 1)));
        // s1 moves from k1 to k2: both keys' latest are forgotten, k3 kept.
        c.put("sessions", "s1", "k2", Some("k1"), &entry("k2", 5));
        assert!(matches!(c.latest("sessions", "k1"), Cached::Unknown));
        assert!(matches!(c.latest("sessions", "k2"), Cached::Unknown));
        assert_eq!(known(c.latest("sessions", "k3")), Some(entry("k3", 1)));
        assert_eq!(known(c.by_pk("sessions", "s1")), Some(entry("k2", 5)));
        assert_eq!(c.key_of("sessions", "s1"), Some(Some("k2".into())));
        c.delete("sessions", "s1", Some("k2"));
        assert_eq!(known(c.by_pk("sessions", "s1")), None);
        assert_eq!(c.key_of("sessions", "s1"), Some(None));
        assert_eq!(c.key_of("sessions", "s9"), None);
        // Another lookup's rows are untouched by clear.
        c.read_pk("customers", "1", Some(entry("1", 1)));
        c.clear("sessions");
        assert!(matches!(c.by_pk("sessions", "s1"), Cached::Unknown));
        assert!(matches!(c.latest("sessions", "k3"), Cached::Unknown));
        assert_eq!(known(c.by_pk("customers", "1")), Some(entry("1", 1)));
    }

    #[test]
    fn a_prune_or_a_full_map_empties_it() {
        let mut c = LookupCache::default();
        c.sync(0);
        c.read_pk("customers", "1", Some(entry("1", 1)));
        c.sync(0);
        assert!(matches!(c.by_pk("customers", "1"), Cached::Known(_)));
        c.sync(1);
        assert!(matches!(c.by_pk("customers", "1"), Cached::Unknown));
        for i in 0..MAX_ENTRIES {
            c.read_pk("customers", &i.to_string(), None);
        }
        assert_eq!(c.by_pk_len, MAX_ENTRIES);
        c.read_pk("customers", "one more", None);
        assert_eq!(c.by_pk_len, 1, "a full map is emptied before it grows");
        assert!(matches!(c.by_pk("customers", "0"), Cached::Unknown));
    }
}
