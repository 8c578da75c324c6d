//! JSON rendering of decoded messages, one object per message, for the
//! `tail` command and debugging.
//!
//! Input: a [`Message`]. Output: a `serde_json::Value` such as
//! `{"op":"insert","table":"public.orders","new":{"id":1,"total":"12.30"}}`.
//! LSNs print as `X/Y`, times as RFC 3339 UTC, values per [`Value::to_json`].
//!
//! Invariant: an old *key* image shows only the key columns; the `Null`s
//! pgoutput leaves in the other columns are not data and are not printed.

use serde_json::{json, Map, Value as J};

use super::value::hex;
use super::{datetime, Message, OldRow, Relation, Row};

impl Message {
    /// One JSON object describing this message (see the module docs of `json.rs`).
    ///
    /// Row changes: `op` (`insert`/`update`/`delete`), `table`, `new`, and
    /// `old_key` (`K` image: key columns only) or `old` (`O` image: all
    /// columns). Logical message content is `content` when it is UTF-8, else
    /// `content_hex` (`\x…`).
    pub fn to_json(&self) -> J {
        match self {
            Message::Begin {
                final_lsn,
                commit_time_us,
                xid,
            } => json!({
                "op": "begin",
                "final_lsn": final_lsn.to_string(),
                "commit_time": datetime::format_timestamp(*commit_time_us, true),
                "xid": xid,
            }),
            Message::Commit {
                commit_lsn,
                end_lsn,
                commit_time_us,
            } => json!({
                "op": "commit",
                "commit_lsn": commit_lsn.to_string(),
                "end_lsn": end_lsn.to_string(),
                "commit_time": datetime::format_timestamp(*commit_time_us, true),
            }),
            Message::Origin { commit_lsn, name } => json!({
                "op": "origin",
                "commit_lsn": commit_lsn.to_string(),
                "name": name,
            }),
            Message::Relation(rel) => json!({
                "op": "relation",
                "oid": rel.oid,
                "table": rel.qualified_name(),
                "replica_identity": rel.replica_identity.as_str(),
                "columns": rel.columns.iter().map(|c| json!({
                    "name": c.name,
                    "type_oid": c.type_oid,
                    "type_modifier": c.type_modifier,
                    "key": c.is_key,
                })).collect::<Vec<_>>(),
            }),
            Message::Type {
                oid,
                namespace,
                name,
            } => json!({ "op": "type", "oid": oid, "namespace": namespace, "name": name }),
            Message::Insert { relation, new } => json!({
                "op": "insert",
                "table": relation.qualified_name(),
                "new": row_json(relation, new, false),
            }),
            Message::Update { relation, old, new } => {
                let mut obj = change("update", relation, old.as_ref());
                obj.insert("new".into(), row_json(relation, new, false));
                J::Object(obj)
            }
            Message::Delete { relation, old } => J::Object(change("delete", relation, Some(old))),
            Message::Truncate {
                relations,
                cascade,
                restart_identity,
            } => json!({
                "op": "truncate",
                "tables": relations.iter().map(|r| r.qualified_name()).collect::<Vec<_>>(),
                "cascade": cascade,
                "restart_identity": restart_identity,
            }),
            Message::LogicalMessage {
                transactional,
                lsn,
                prefix,
                content,
            } => {
                let mut obj = Map::new();
                obj.insert("op".into(), "message".into());
                obj.insert("transactional".into(), (*transactional).into());
                obj.insert("lsn".into(), lsn.to_string().into());
                obj.insert("prefix".into(), prefix.clone().into());
                match std::str::from_utf8(content) {
                    Ok(text) => obj.insert("content".into(), text.into()),
                    Err(_) => obj.insert("content_hex".into(), hex(content).into()),
                };
                J::Object(obj)
            }
        }
    }
}

/// `op`, `table` and the old image of an Update or Delete.
fn change(op: &str, relation: &Relation, old: Option<&OldRow>) -> Map<String, J> {
    let mut obj = Map::new();
    obj.insert("op".into(), op.into());
    obj.insert("table".into(), relation.qualified_name().into());
    match old {
        Some(OldRow::Key(row)) => obj.insert("old_key".into(), row_json(relation, row, true)),
        Some(OldRow::Full(row)) => obj.insert("old".into(), row_json(relation, row, false)),
        None => None,
    };
    obj
}

/// `{column: value}`; with `key_only`, just the replica-identity columns.
fn row_json(relation: &Relation, row: &Row, key_only: bool) -> J {
    let map = relation
        .columns
        .iter()
        .zip(&row.values)
        .filter(|(column, _)| !key_only || column.is_key)
        .map(|(column, value)| (column.name.clone(), value.to_json()))
        .collect::<Map<_, _>>();
    J::Object(map)
}
