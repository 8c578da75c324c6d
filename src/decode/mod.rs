//! pgoutput decoding: one pgoutput message's bytes → a typed [`Message`].
//!
//! Input: the payload of one `XLogData` (`w`) replication message, i.e. one
//! pgoutput protocol-v1 message starting with its tag byte (`B C O R Y I U D
//! T M`). Output: a [`Message`] whose rows hold typed [`Value`]s in the
//! column order of the [`Relation`] that was current when the row arrived.
//!
//! Invariants:
//! - Pure: no I/O, no clock, no logging; the only state is the
//!   [`RelationCache`] inside [`Decoder`], updated by `R` messages.
//! - Never invents a value for an unchanged TOAST column (`u`): it stays
//!   [`Value::UnchangedToast`], unless the same Update carries a full old
//!   row (`REPLICA IDENTITY FULL`) whose value for that column is real.
//! - Money never goes through floats: `numeric` is kept as PostgreSQL's
//!   exact decimal text.
//! - Malformed input (truncated buffers, bad UTF-8, counts that do not match
//!   the relation, unknown relation OIDs) is a [`DecodeError`] naming the
//!   message, relation, column and type; never a panic. Errors never quote
//!   row values, which may be personal data.
//!
//! Layout: `pgoutput.rs` parses message framing, `relation.rs` holds table
//! shapes, `value.rs` (+ `numeric.rs`, `datetime.rs`, `array.rs`) turns
//! column bytes into values, `json.rs` renders messages for `tail`.

mod array;
mod datetime;
mod json;
mod numeric;
mod pgoutput;
mod relation;
mod value;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use crate::lsn::Lsn;

pub use datetime::{
    civil_from_days, days_from_civil, pg_date_to_unix_days, pg_timestamp_to_unix_us,
};
pub use relation::{Column, Relation, RelationCache, ReplicaIdentity};
pub use value::{oid, type_name, Format, Value, ValueError};

/// One row image, values in the relation's column order.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// One value per column of the relation the row was decoded with.
    pub values: Vec<Value>,
}

impl Row {
    /// The value of `column`, looked up by name in `rel` (the row's relation).
    pub fn get<'a>(&'a self, rel: &Relation, column: &str) -> Option<&'a Value> {
        rel.column_index(column).and_then(|i| self.values.get(i))
    }
}

/// The old image carried by an Update or Delete.
#[derive(Debug, Clone, PartialEq)]
pub enum OldRow {
    /// `K`: replica-identity key columns only; every other column is `Null`.
    Key(Row),
    /// `O`: the whole old row (`REPLICA IDENTITY FULL`).
    Full(Row),
}

impl OldRow {
    /// The row, whichever kind it is.
    pub fn row(&self) -> &Row {
        match self {
            OldRow::Key(row) | OldRow::Full(row) => row,
        }
    }
}

/// One decoded pgoutput message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Start of a transaction.
    Begin {
        /// LSN of the transaction's commit record.
        final_lsn: Lsn,
        /// Commit time, µs since the UNIX epoch.
        commit_time_us: i64,
        /// Transaction id.
        xid: u32,
    },
    /// End of a transaction.
    Commit {
        /// LSN of the commit record.
        commit_lsn: Lsn,
        /// End of the transaction's WAL: the position to checkpoint and acknowledge.
        end_lsn: Lsn,
        /// Commit time, µs since the UNIX epoch.
        commit_time_us: i64,
    },
    /// Replication origin of the transaction (changes replayed from another server).
    Origin {
        /// Commit LSN on the origin server.
        commit_lsn: Lsn,
        /// Origin name.
        name: String,
    },
    /// A table's (new) shape; already stored in the decoder's cache.
    Relation(Arc<Relation>),
    /// A non-built-in type used by a following relation.
    Type {
        /// Type OID.
        oid: u32,
        /// Schema of the type (`pg_catalog` when pgoutput sends `""`).
        namespace: String,
        /// Type name.
        name: String,
    },
    /// A new row.
    Insert {
        /// Shape the row was decoded with.
        relation: Arc<Relation>,
        /// The inserted row.
        new: Row,
    },
    /// A changed row.
    Update {
        /// Shape the rows were decoded with.
        relation: Arc<Relation>,
        /// Old key (only if a key column changed) or full old row (FULL); else `None`.
        old: Option<OldRow>,
        /// The new row; unchanged TOAST columns are `UnchangedToast` unless
        /// filled from a full old row.
        new: Row,
    },
    /// A deleted row.
    Delete {
        /// Shape the row was decoded with.
        relation: Arc<Relation>,
        /// Old key or full old row.
        old: OldRow,
    },
    /// `TRUNCATE` of one or more tables.
    Truncate {
        /// Truncated relations.
        relations: Vec<Arc<Relation>>,
        /// `TRUNCATE … CASCADE`.
        cascade: bool,
        /// `TRUNCATE … RESTART IDENTITY`.
        restart_identity: bool,
    },
    /// A `pg_logical_emit_message` message (heartbeats, markers).
    LogicalMessage {
        /// Emitted inside a transaction (delivered between its Begin and Commit).
        transactional: bool,
        /// LSN of the message record.
        lsn: Lsn,
        /// Prefix chosen by the emitter.
        prefix: String,
        /// Opaque content.
        content: Vec<u8>,
    },
}

impl Message {
    /// The relation of a row change or Relation message; `None` for other messages.
    pub fn relation(&self) -> Option<&Arc<Relation>> {
        match self {
            Message::Insert { relation, .. }
            | Message::Update { relation, .. }
            | Message::Delete { relation, .. } => Some(relation),
            Message::Relation(relation) => Some(relation),
            _ => None,
        }
    }
}

/// Decodes a stream of pgoutput messages from one replication connection.
#[derive(Debug, Default)]
pub struct Decoder {
    relations: RelationCache,
}

impl Decoder {
    /// A decoder with an empty relation cache (a new connection).
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes one pgoutput message starting with its tag byte. Relation
    /// messages update the cache before they are returned.
    pub fn decode(&mut self, payload: &[u8]) -> Result<Message, DecodeError> {
        pgoutput::decode(&mut self.relations, payload)
    }

    /// The current shape of relation `oid`, if an `R` message described it.
    pub fn relation(&self, oid: u32) -> Option<&Arc<Relation>> {
        self.relations.get(oid)
    }

    /// All relations known on this connection.
    pub fn relations(&self) -> &RelationCache {
        &self.relations
    }
}

/// Why a pgoutput message could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// A zero-length payload.
    #[error("empty pgoutput message")]
    Empty,
    /// A tag byte no pgoutput version uses.
    #[error("unknown pgoutput message tag {}", show_byte(*tag))]
    UnknownTag {
        /// The tag byte.
        tag: u8,
    },
    /// A streaming (v2) or two-phase (v3) message, which protocol v1 never sends.
    #[error("pgoutput {name} message ({}) needs protocol v2+ features this decoder does not request", show_byte(*tag))]
    Unsupported {
        /// The tag byte.
        tag: u8,
        /// Its name in the protocol documentation.
        name: &'static str,
    },
    /// The buffer ended inside a field.
    #[error("{message} message is truncated: {field} needs {needed} bytes at offset {offset}, {available} left")]
    Truncated {
        /// Message kind, e.g. `Insert`.
        message: &'static str,
        /// Field being read.
        field: &'static str,
        /// Offset of the field from the tag byte.
        offset: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the buffer.
        available: usize,
    },
    /// Bytes left over after the last field.
    #[error("{message} message has {count} unexpected bytes after its last field")]
    TrailingBytes {
        /// Message kind.
        message: &'static str,
        /// Bytes left over.
        count: usize,
    },
    /// A string field without its NUL terminator.
    #[error("{message} message: {field} has no NUL terminator")]
    UnterminatedString {
        /// Message kind.
        message: &'static str,
        /// Field being read.
        field: &'static str,
    },
    /// A string field that is not UTF-8.
    #[error("{message} message: {field} is not UTF-8")]
    NotUtf8 {
        /// Message kind.
        message: &'static str,
        /// Field being read.
        field: &'static str,
    },
    /// A change for a relation OID no `R` message described on this connection.
    #[error("{message} for relation OID {oid} that no Relation message described")]
    UnknownRelation {
        /// Message kind.
        message: &'static str,
        /// The relation OID.
        oid: u32,
    },
    /// A `relreplident` byte PostgreSQL does not define.
    #[error("Relation message for {relation} (OID {oid}): unknown replica identity {}", show_byte(*byte))]
    BadReplicaIdentity {
        /// Relation OID.
        oid: u32,
        /// `schema.table`.
        relation: String,
        /// The byte received.
        byte: u8,
    },
    /// A count or length field that is negative.
    #[error("{message} message: {field} is negative ({value})")]
    Negative {
        /// Message kind.
        message: &'static str,
        /// Field being read.
        field: &'static str,
        /// Value received.
        value: i64,
    },
    /// Tuple data whose column count differs from the relation's.
    #[error("{message} for relation {relation} (OID {oid}): tuple has {got} columns but the Relation message announced {expected}")]
    ColumnCount {
        /// Message kind.
        message: &'static str,
        /// `schema.table`.
        relation: String,
        /// Relation OID.
        oid: u32,
        /// Columns in the cached relation.
        expected: usize,
        /// Columns in the tuple.
        got: usize,
    },
    /// A tuple marker (`N`, `K`, `O`) other than the protocol allows here.
    #[error("{message} for relation {relation} (OID {oid}): expected {expected} but found {}", show_byte(*got))]
    UnexpectedMarker {
        /// Message kind.
        message: &'static str,
        /// `schema.table`.
        relation: String,
        /// Relation OID.
        oid: u32,
        /// What the protocol allows, e.g. `'K', 'O' or 'N'`.
        expected: &'static str,
        /// The byte received.
        got: u8,
    },
    /// A column kind other than `n`, `u`, `t`, `b`.
    #[error("{message} for relation {relation}: column {column} has unknown tuple data kind {}", show_byte(*kind))]
    UnknownColumnKind {
        /// Message kind.
        message: &'static str,
        /// `schema.table`.
        relation: String,
        /// Column name.
        column: String,
        /// The byte received.
        kind: u8,
    },
    /// A column value its type's decoder rejected.
    #[error("column {table}.{column} ({type_name}, OID {type_oid}): {source}")]
    Value {
        /// Table name (without schema, as in SQL `orders.total`).
        table: String,
        /// Column name.
        column: String,
        /// Type name, or `other type`.
        type_name: &'static str,
        /// Type OID.
        type_oid: u32,
        /// What was wrong with the value.
        #[source]
        source: ValueError,
    },
    /// A commit timestamp outside what µs since the UNIX epoch can hold.
    #[error("{message} message: {field} is out of range")]
    OutOfRange {
        /// Message kind.
        message: &'static str,
        /// Field being read.
        field: &'static str,
    },
}

/// `'B'` for printable ASCII, `0x07` otherwise.
fn show_byte(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("'{}'", char::from(b))
    } else {
        format!("0x{b:02x}")
    }
}
