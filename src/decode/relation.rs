//! Table shapes announced by pgoutput `R` (Relation) messages.
//!
//! Input: the fields of one Relation message, already parsed by
//! `pgoutput.rs`. Output: an immutable [`Relation`] shared as `Arc` by every
//! row decoded against it, and a [`RelationCache`] keyed by relation OID.
//!
//! Invariants: a new `R` for an OID *replaces* the cached entry (pgoutput
//! sends one before the first change that uses a changed shape, e.g. after
//! `ALTER TABLE … ADD COLUMN`), so a row is always decoded with the shape
//! that was current when it arrived. Rows decoded earlier keep their own
//! `Arc` to the old shape, so nothing already decoded changes meaning.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// `pg_class.relreplident`: which old values UPDATE and DELETE carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaIdentity {
    /// `d`: the primary key (old key sent only when a key column changes).
    Default,
    /// `n`: no old values at all.
    Nothing,
    /// `f`: the whole old row (`O` images); lets us fill unchanged TOAST values.
    Full,
    /// `i`: the columns of a chosen unique index.
    Index,
}

impl ReplicaIdentity {
    /// Parses the `relreplident` byte; `None` for anything PostgreSQL does not send.
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            b'd' => Some(Self::Default),
            b'n' => Some(Self::Nothing),
            b'f' => Some(Self::Full),
            b'i' => Some(Self::Index),
            _ => None,
        }
    }

    /// Lower-case name as used in `ALTER TABLE … REPLICA IDENTITY`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Nothing => "nothing",
            Self::Full => "full",
            Self::Index => "index",
        }
    }
}

/// One published column of a relation, in pgoutput order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Column name as PostgreSQL spells it (unquoted).
    pub name: String,
    /// `pg_type` OID; decides how values are decoded.
    pub type_oid: u32,
    /// `atttypmod` (e.g. varchar length + 4, numeric precision/scale); -1 if none.
    pub type_modifier: i32,
    /// Part of the replica identity (all columns under `REPLICA IDENTITY FULL`).
    pub is_key: bool,
}

/// A table's shape as announced by the latest `R` message for its OID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// `pg_class` OID; what change messages refer to.
    pub oid: u32,
    /// Schema name; pgoutput sends `""` for `pg_catalog`, stored here already replaced.
    pub namespace: String,
    /// Table name.
    pub name: String,
    /// Which old values UPDATE/DELETE carry for this table.
    pub replica_identity: ReplicaIdentity,
    /// Published columns, in the order tuple data lists them.
    pub columns: Vec<Column>,
}

impl Relation {
    /// Position of `column` in [`Relation::columns`] (and so in every decoded row).
    pub fn column_index(&self, column: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == column)
    }

    /// `schema.table`, e.g. `public.orders` (unquoted; for display and routing).
    pub fn qualified_name(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.namespace, self.name)
    }
}

/// Latest [`Relation`] per OID, for one replication connection.
#[derive(Debug, Default, Clone)]
pub struct RelationCache {
    by_oid: HashMap<u32, Arc<Relation>>,
}

impl RelationCache {
    /// An empty cache (a new connection: pgoutput re-sends every `R` it needs).
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `relation`, replacing any earlier shape for its OID; returns the
    /// shared new entry and the replaced one (so callers can diff shapes).
    pub fn insert(&mut self, relation: Relation) -> (Arc<Relation>, Option<Arc<Relation>>) {
        let relation = Arc::new(relation);
        let previous = self.by_oid.insert(relation.oid, Arc::clone(&relation));
        (relation, previous)
    }

    /// The current shape of relation `oid`, if an `R` message described it.
    pub fn get(&self, oid: u32) -> Option<&Arc<Relation>> {
        self.by_oid.get(&oid)
    }

    /// Number of relations known.
    pub fn len(&self) -> usize {
        self.by_oid.len()
    }

    /// True before the first `R` message.
    pub fn is_empty(&self) -> bool {
        self.by_oid.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orders(columns: &[&str]) -> Relation {
        Relation {
            oid: 16384,
            namespace: "public".into(),
            name: "orders".into(),
            replica_identity: ReplicaIdentity::Default,
            columns: columns
                .iter()
                .enumerate()
                .map(|(i, name)| Column {
                    name: (*name).into(),
                    type_oid: 23,
                    type_modifier: -1,
                    is_key: i == 0,
                })
                .collect(),
        }
    }

    #[test]
    fn replica_identity_bytes() {
        assert_eq!(
            ReplicaIdentity::from_byte(b'd'),
            Some(ReplicaIdentity::Default)
        );
        assert_eq!(
            ReplicaIdentity::from_byte(b'n'),
            Some(ReplicaIdentity::Nothing)
        );
        assert_eq!(
            ReplicaIdentity::from_byte(b'f'),
            Some(ReplicaIdentity::Full)
        );
        assert_eq!(
            ReplicaIdentity::from_byte(b'i'),
            Some(ReplicaIdentity::Index)
        );
        assert_eq!(ReplicaIdentity::from_byte(b'x'), None);
        assert_eq!(ReplicaIdentity::Full.as_str(), "full");
    }

    #[test]
    fn names_and_column_lookup() {
        let rel = orders(&["id", "total"]);
        assert_eq!(rel.qualified_name(), "public.orders");
        assert_eq!(rel.column_index("total"), Some(1));
        assert_eq!(rel.column_index("missing"), None);
    }

    #[test]
    fn insert_replaces_and_keeps_old_arcs_intact() {
        let mut cache = RelationCache::new();
        assert!(cache.is_empty());
        let (v1, prev) = cache.insert(orders(&["id"]));
        assert!(prev.is_none());
        let (v2, prev) = cache.insert(orders(&["id", "total"]));
        assert_eq!(prev.as_deref(), Some(&*v1));
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get(16384).map(|r| r.columns.len()), Some(2));
        // The earlier shape is still what rows decoded with it refer to.
        assert_eq!(v1.columns.len(), 1);
        assert!(Arc::ptr_eq(cache.get(16384).unwrap(), &v2));
        assert!(cache.get(1).is_none());
    }
}
