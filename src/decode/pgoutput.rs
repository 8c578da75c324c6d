//! pgoutput protocol-v1 framing: message bytes → [`Message`].
//!
//! Input: one message, tag byte first, and the connection's
//! [`RelationCache`]. Output: the decoded [`Message`]; `R` messages also
//! replace the cache entry for their OID. Layouts follow
//! `protocol-logicalrep-message-formats.html` (integers big-endian, strings
//! NUL-terminated). v1 has no `[xid]` fields; streaming and two-phase tags
//! are rejected because this client never requests them.
//!
//! Invariants: every read is bounds-checked; allocations are bounded by the
//! bytes actually present, never by a count field; a message must be
//! consumed exactly, so misframing is caught at the message that caused it.

use std::sync::Arc;

use super::value::{type_name, Value};
use super::{
    datetime, Column, DecodeError, Message, OldRow, Relation, RelationCache, ReplicaIdentity, Row,
};
use crate::lsn::Lsn;

/// `TRUNCATE` option bits.
const TRUNCATE_CASCADE: u8 = 1;
const TRUNCATE_RESTART_IDENTITY: u8 = 2;
/// Relation column flag: part of the replica identity.
const COLUMN_IS_KEY: u8 = 1;
/// Logical message flag: emitted transactionally.
const MESSAGE_TRANSACTIONAL: u8 = 1;

/// Decodes one pgoutput message (see the module docs).
pub(super) fn decode(cache: &mut RelationCache, payload: &[u8]) -> Result<Message, DecodeError> {
    let (&tag, _) = payload.split_first().ok_or(DecodeError::Empty)?;
    let name = match tag {
        b'B' => "Begin",
        b'C' => "Commit",
        b'O' => "Origin",
        b'R' => "Relation",
        b'Y' => "Type",
        b'I' => "Insert",
        b'U' => "Update",
        b'D' => "Delete",
        b'T' => "Truncate",
        // Reads as "Logical message is truncated…" in errors.
        b'M' => "Logical",
        other => return Err(unsupported(other)),
    };
    let mut r = Reader {
        buf: payload,
        pos: 1,
        message: name,
    };
    let message = match tag {
        b'B' => begin(&mut r)?,
        b'C' => commit(&mut r)?,
        b'O' => Message::Origin {
            commit_lsn: r.lsn("origin commit LSN")?,
            name: r.string("origin name")?,
        },
        b'R' => Message::Relation(relation(&mut r, cache)?),
        b'Y' => Message::Type {
            oid: r.u32("type OID")?,
            namespace: catalog_if_empty(r.string("type namespace")?),
            name: r.string("type name")?,
        },
        b'I' => insert(&mut r, cache)?,
        b'U' => update(&mut r, cache)?,
        b'D' => delete(&mut r, cache)?,
        b'T' => truncate(&mut r, cache)?,
        _ => logical_message(&mut r)?,
    };
    r.finish()?;
    Ok(message)
}

fn unsupported(tag: u8) -> DecodeError {
    let name = match tag {
        b'S' => "Stream Start",
        b'E' => "Stream Stop",
        b'c' => "Stream Commit",
        b'A' => "Stream Abort",
        b'b' => "Begin Prepare",
        b'P' => "Prepare",
        b'K' => "Commit Prepared",
        b'r' => "Rollback Prepared",
        b'p' => "Stream Prepare",
        _ => return DecodeError::UnknownTag { tag },
    };
    DecodeError::Unsupported { tag, name }
}

fn begin(r: &mut Reader<'_>) -> Result<Message, DecodeError> {
    Ok(Message::Begin {
        final_lsn: r.lsn("final LSN")?,
        commit_time_us: r.timestamp("commit timestamp")?,
        xid: r.u32("xid")?,
    })
}

fn commit(r: &mut Reader<'_>) -> Result<Message, DecodeError> {
    let _flags = r.u8("flags")?; // always 0 in v1
    Ok(Message::Commit {
        commit_lsn: r.lsn("commit LSN")?,
        end_lsn: r.lsn("end LSN")?,
        commit_time_us: r.timestamp("commit timestamp")?,
    })
}

fn relation(r: &mut Reader<'_>, cache: &mut RelationCache) -> Result<Arc<Relation>, DecodeError> {
    let oid = r.u32("relation OID")?;
    let namespace = catalog_if_empty(r.string("namespace")?);
    let name = r.string("relation name")?;
    let ident = r.u8("replica identity")?;
    let replica_identity =
        ReplicaIdentity::from_byte(ident).ok_or_else(|| DecodeError::BadReplicaIdentity {
            oid,
            relation: format!("{namespace}.{name}"),
            byte: ident,
        })?;
    let count = r.count16("column count")?;
    // Each column takes at least 10 bytes; never trust the count for capacity.
    let mut columns = Vec::with_capacity(count.min(r.remaining() / 10));
    for _ in 0..count {
        let flags = r.u8("column flags")?;
        columns.push(Column {
            name: r.string("column name")?,
            type_oid: r.u32("column type OID")?,
            type_modifier: r.i32("column type modifier")?,
            is_key: flags & COLUMN_IS_KEY != 0,
        });
    }
    let (relation, _previous) = cache.insert(Relation {
        oid,
        namespace,
        name,
        replica_identity,
        columns,
    });
    Ok(relation)
}

/// pgoutput sends `""` for `pg_catalog`.
fn catalog_if_empty(namespace: String) -> String {
    if namespace.is_empty() {
        "pg_catalog".to_owned()
    } else {
        namespace
    }
}

fn insert(r: &mut Reader<'_>, cache: &RelationCache) -> Result<Message, DecodeError> {
    let relation = r.relation(cache)?;
    r.marker(&relation, b"N", "'N'")?;
    let new = r.tuple(&relation)?;
    Ok(Message::Insert { relation, new })
}

fn update(r: &mut Reader<'_>, cache: &RelationCache) -> Result<Message, DecodeError> {
    let relation = r.relation(cache)?;
    let old = match r.marker(&relation, b"KON", "'K', 'O' or 'N'")? {
        b'K' => Some(OldRow::Key(r.tuple(&relation)?)),
        b'O' => Some(OldRow::Full(r.tuple(&relation)?)),
        _ => None,
    };
    if old.is_some() {
        r.marker(&relation, b"N", "'N' after the old row")?;
    }
    let mut new = r.tuple(&relation)?;
    // Under REPLICA IDENTITY FULL the old image is logged with TOASTed
    // values flattened, so it holds the real value of an unchanged column.
    if let Some(OldRow::Full(old_row)) = &old {
        for (value, old_value) in new.values.iter_mut().zip(&old_row.values) {
            if *value == Value::UnchangedToast && *old_value != Value::UnchangedToast {
                *value = old_value.clone();
            }
        }
    }
    Ok(Message::Update { relation, old, new })
}

fn delete(r: &mut Reader<'_>, cache: &RelationCache) -> Result<Message, DecodeError> {
    let relation = r.relation(cache)?;
    let old = match r.marker(&relation, b"KO", "'K' or 'O'")? {
        b'K' => OldRow::Key(r.tuple(&relation)?),
        _ => OldRow::Full(r.tuple(&relation)?),
    };
    Ok(Message::Delete { relation, old })
}

fn truncate(r: &mut Reader<'_>, cache: &RelationCache) -> Result<Message, DecodeError> {
    let count = r.count32("relation count")?;
    let options = r.u8("options")?;
    let mut relations = Vec::with_capacity(count.min(r.remaining() / 4));
    for _ in 0..count {
        relations.push(r.relation(cache)?);
    }
    Ok(Message::Truncate {
        relations,
        cascade: options & TRUNCATE_CASCADE != 0,
        restart_identity: options & TRUNCATE_RESTART_IDENTITY != 0,
    })
}

fn logical_message(r: &mut Reader<'_>) -> Result<Message, DecodeError> {
    let flags = r.u8("flags")?;
    let lsn = r.lsn("message LSN")?;
    let prefix = r.string("prefix")?;
    let len = r.count32("content length")?;
    let content = r.take(len, "content")?.to_vec();
    Ok(Message::LogicalMessage {
        transactional: flags & MESSAGE_TRANSACTIONAL != 0,
        lsn,
        prefix,
        content,
    })
}

/// Bounds-checked big-endian reads over one message.
struct Reader<'a> {
    buf: &'a [u8],
    /// Offset from the tag byte.
    pos: usize,
    /// Message kind, for errors.
    message: &'static str,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|end| *end <= self.buf.len());
        let Some(end) = end else {
            return Err(DecodeError::Truncated {
                message: self.message,
                field,
                offset: self.pos,
                needed: n,
                available: self.remaining(),
            });
        };
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn i16(&mut self, field: &'static str) -> Result<i16, DecodeError> {
        self.array(field).map(i16::from_be_bytes)
    }

    fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        self.array(field).map(i32::from_be_bytes)
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        self.array(field).map(u32::from_be_bytes)
    }

    fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        self.array(field).map(i64::from_be_bytes)
    }

    fn lsn(&mut self, field: &'static str) -> Result<Lsn, DecodeError> {
        self.array(field).map(|b| Lsn(u64::from_be_bytes(b)))
    }

    /// A PostgreSQL timestamp (µs since 2000-01-01) as µs since the UNIX epoch.
    fn timestamp(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        let pg = self.i64(field)?;
        datetime::pg_timestamp_to_unix_us(pg).ok_or(DecodeError::OutOfRange {
            message: self.message,
            field,
        })
    }

    fn negative(&self, field: &'static str, value: i64) -> DecodeError {
        DecodeError::Negative {
            message: self.message,
            field,
            value,
        }
    }

    fn count16(&mut self, field: &'static str) -> Result<usize, DecodeError> {
        let n = self.i16(field)?;
        usize::try_from(n).map_err(|_| self.negative(field, n.into()))
    }

    fn count32(&mut self, field: &'static str) -> Result<usize, DecodeError> {
        let n = self.i32(field)?;
        usize::try_from(n).map_err(|_| self.negative(field, n.into()))
    }

    fn string(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let Some(nul) = rest.iter().position(|b| *b == 0) else {
            return Err(DecodeError::UnterminatedString {
                message: self.message,
                field,
            });
        };
        let s = std::str::from_utf8(&rest[..nul]).map_err(|_| DecodeError::NotUtf8 {
            message: self.message,
            field,
        })?;
        self.pos += nul + 1;
        Ok(s.to_owned())
    }

    /// Reads a relation OID and looks it up.
    fn relation(&mut self, cache: &RelationCache) -> Result<Arc<Relation>, DecodeError> {
        let oid = self.u32("relation OID")?;
        cache.get(oid).cloned().ok_or(DecodeError::UnknownRelation {
            message: self.message,
            oid,
        })
    }

    /// Reads a tuple marker byte and checks it is one of `allowed`.
    fn marker(
        &mut self,
        relation: &Relation,
        allowed: &[u8],
        expected: &'static str,
    ) -> Result<u8, DecodeError> {
        let got = self.u8("tuple marker")?;
        if allowed.contains(&got) {
            Ok(got)
        } else {
            Err(DecodeError::UnexpectedMarker {
                message: self.message,
                relation: relation.qualified_name(),
                oid: relation.oid,
                expected,
                got,
            })
        }
    }

    /// Reads TupleData and decodes each column with `relation`'s types.
    fn tuple(&mut self, relation: &Relation) -> Result<Row, DecodeError> {
        let count = self.count16("tuple column count")?;
        if count != relation.columns.len() {
            return Err(DecodeError::ColumnCount {
                message: self.message,
                relation: relation.qualified_name(),
                oid: relation.oid,
                expected: relation.columns.len(),
                got: count,
            });
        }
        let mut values = Vec::with_capacity(count);
        for column in &relation.columns {
            let kind = self.u8("column kind")?;
            let value = match kind {
                b'n' => Value::Null,
                b'u' => Value::UnchangedToast,
                b't' | b'b' => {
                    let len = self.count32("column length")?;
                    let raw = self.take(len, "column value")?;
                    let decoded = if kind == b't' {
                        Value::from_text(column.type_oid, raw)
                    } else {
                        Value::from_binary(column.type_oid, raw)
                    };
                    decoded.map_err(|source| DecodeError::Value {
                        table: relation.name.clone(),
                        column: column.name.clone(),
                        type_name: type_name(column.type_oid),
                        type_oid: column.type_oid,
                        source,
                    })?
                }
                _ => {
                    return Err(DecodeError::UnknownColumnKind {
                        message: self.message,
                        relation: relation.qualified_name(),
                        column: column.name.clone(),
                        kind,
                    })
                }
            };
            values.push(value);
        }
        Ok(Row { values })
    }

    /// Checks the whole message was consumed.
    fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes {
                message: self.message,
                count,
            }),
        }
    }
}
