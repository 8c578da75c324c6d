//! Reading tables in a snapshot (setup's lookup snapshot, backfill): one
//! query per table over the columns the rules need, and its text rows
//! turned into the same [`Row`]s the stream decodes, so derivation treats
//! them alike.

use super::catalog::Catalog;
use crate::decode::{oid, Column, Relation, ReplicaIdentity, Row, Value};
use crate::derive::Table;

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A text row of a [`query`] → a [`Row`] of its relation.
pub fn row(relation: &Relation, texts: impl Iterator<Item = Option<String>>) -> Row {
    let values = relation
        .columns
        .iter()
        .zip(texts)
        .map(|(c, text)| match (text, c.type_oid) {
            (None, _) => Value::Null,
            (Some(t), oid::TIMESTAMPTZ) => t.parse().map_or(Value::Null, Value::Timestamptz),
            (Some(t), _) => Value::Text(t),
        })
        .collect();
    Row { values }
}

/// The query reading `wanted` columns (plus the primary key) of one table,
/// as text (times as epoch µs, `inet` as the stream prints it), in key
/// order, and the shape its rows are read with. With `after` (a value of a
/// one-column primary key), only rows past it: a resumed read. `None` when
/// nothing is wanted or the table is unknown.
pub fn query(
    catalog: &Catalog,
    table: &Table,
    wanted: &[String],
    after: Option<&str>,
) -> Option<(String, Relation)> {
    let info = catalog.tables.get(table)?;
    if wanted.is_empty() {
        return None;
    }
    let pk: Vec<&str> = info.pk();
    let mut columns: Vec<&str> = pk.clone();
    columns.extend(
        wanted
            .iter()
            .map(String::as_str)
            .filter(|c| !pk.contains(c)),
    );
    let mut select = Vec::new();
    let mut shape = Vec::new();
    for name in columns {
        let column = info.columns.get(name);
        let is_time = column.is_some_and(|c| c.is_time());
        let q = quote_ident(name);
        select.push(if is_time {
            format!("(extract(epoch from {q}) * 1000000)::int8::text")
        } else if column.is_some_and(|c| c.type_name == "inet") {
            // The output function, as the stream sends it: no `/32`.
            format!("format('%s', {q})")
        } else {
            format!("{q}::text")
        });
        shape.push(Column {
            name: name.to_owned(),
            type_oid: if is_time { oid::TIMESTAMPTZ } else { oid::TEXT },
            type_modifier: -1,
            is_key: pk.contains(&name),
        });
    }
    // In key order, so that among rows sharing a lookup key (a consent
    // log) the one stored last, which `latest` prefers at equal times, is
    // the one with the highest (most recent serial) key.
    let order: Vec<String> = pk.iter().map(|c| quote_ident(c)).collect();
    let order = if order.is_empty() {
        String::new()
    } else {
        format!(" ORDER BY {}", order.join(", "))
    };
    let filter = match (after, pk.as_slice()) {
        (Some(last), [key]) => {
            let ty = info
                .columns
                .get(*key)
                .map_or("text", |c| c.type_name.as_str());
            format!(
                " WHERE {} > '{}'::{ty}",
                quote_ident(key),
                last.replace('\'', "''")
            )
        }
        _ => String::new(),
    };
    let sql = format!(
        "SELECT {} FROM {}.{}{filter}{order}",
        select.join(", "),
        quote_ident(&table.schema),
        quote_ident(&table.name)
    );
    let relation = Relation {
        oid: 0,
        namespace: table.schema.clone(),
        name: table.name.clone(),
        replica_identity: ReplicaIdentity::Default,
        columns: shape,
    };
    Some((sql, relation))
}
