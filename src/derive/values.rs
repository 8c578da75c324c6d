//! Reading decoded column values the way rules need them: as text, an
//! exact decimal, an instant. Pure; never logs a value.

use crate::decode::{Relation, Row, Value};

/// What a column holds in one row image.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<T> {
    /// A usable value.
    Some(T),
    /// SQL NULL, or an empty text.
    Null,
    /// An unchanged TOAST value the server did not send.
    Unchanged,
    /// A value of a type this reading cannot use (named for the reason).
    BadType(&'static str),
    /// The relation has no such column (the table changed shape).
    NoColumn,
}

impl<T> Cell<T> {
    /// The value, if usable.
    pub fn ok(self) -> Option<T> {
        match self {
            Cell::Some(v) => Some(v),
            _ => None,
        }
    }
}

fn get<'a>(rel: &Relation, row: &'a Row, column: &str) -> Result<&'a Value, Cell<()>> {
    match row.get(rel, column) {
        None => Err(Cell::NoColumn),
        Some(Value::Null) => Err(Cell::Null),
        Some(Value::UnchangedToast) => Err(Cell::Unchanged),
        Some(v) => Ok(v),
    }
}

fn relay<T>(c: Cell<()>) -> Cell<T> {
    match c {
        Cell::Null => Cell::Null,
        Cell::Unchanged => Cell::Unchanged,
        Cell::NoColumn => Cell::NoColumn,
        Cell::BadType(t) => Cell::BadType(t),
        Cell::Some(()) => Cell::Null,
    }
}

/// A column as text: text types, numbers, uuid, bool, enums, inet.
pub fn text(rel: &Relation, row: &Row, column: &str) -> Cell<String> {
    let v = match get(rel, row, column) {
        Ok(v) => v,
        Err(c) => return relay(c),
    };
    let s = match v {
        Value::Text(s) | Value::Numeric(s) => s.trim_end().to_owned(),
        Value::Int2(_) | Value::Int4(_) | Value::Int8(_) => {
            v.as_i64().unwrap_or_default().to_string()
        }
        Value::Bool(b) => if *b { "true" } else { "false" }.to_owned(),
        Value::Uuid(b) => uuid_text(b),
        Value::Other { text: Some(t), .. } => t.clone(),
        // Enums send their label; inet/cidr their address bytes.
        Value::Other {
            binary: Some(b),
            type_oid,
            ..
        } => match inet_text(b) {
            Some(s) => s,
            None => match std::str::from_utf8(b) {
                Ok(s) if *type_oid > 16_383 => s.to_owned(),
                _ => return Cell::BadType("a binary value of a type capi-cdc cannot read as text"),
            },
        },
        _ => return Cell::BadType("not a text, number, uuid, boolean or enum"),
    };
    if s.trim().is_empty() {
        Cell::Null
    } else {
        Cell::Some(s)
    }
}

/// A column as an instant (µs since the epoch); dates count from midnight UTC.
pub fn instant_us(rel: &Relation, row: &Row, column: &str) -> Cell<i64> {
    match get(rel, row, column) {
        Ok(Value::Date(d)) if d.abs() < 3_000_000 => Cell::Some(i64::from(*d) * 86_400_000_000),
        Ok(v) => match v.as_timestamp_us() {
            Some(us) => Cell::Some(us),
            None if matches!(
                v,
                Value::Timestamptz(_) | Value::Timestamp(_) | Value::Date(_)
            ) =>
            {
                Cell::BadType("an infinite timestamp")
            }
            None => Cell::BadType("not a timestamp or date"),
        },
        Err(c) => relay(c),
    }
}

/// A column as exact decimal text (numeric or integer; never a float).
/// Text that is a plain decimal (a snapshot's `numeric::text`) counts too.
pub fn decimal(rel: &Relation, row: &Row, column: &str) -> Cell<String> {
    match get(rel, row, column) {
        Ok(Value::Text(t)) if crate::event::Decimal::parse(t).is_ok() => {
            Cell::Some(t.trim().to_owned())
        }
        Ok(v) => match v.as_decimal() {
            Some(d) => Cell::Some(d.into_owned()),
            None if matches!(v, Value::Numeric(_)) => Cell::BadType("NaN or infinite"),
            None if matches!(v, Value::Float4(_) | Value::Float8(_)) => {
                Cell::BadType("a float: money must be numeric or integer cents")
            }
            None => Cell::BadType("not a number"),
        },
        Err(c) => relay(c),
    }
}

/// A column as an integer.
pub fn integer(rel: &Relation, row: &Row, column: &str) -> Cell<i64> {
    match get(rel, row, column) {
        Ok(v) => match v.as_i64() {
            Some(i) => Cell::Some(i),
            None => match v.as_decimal() {
                Some(d) => match d.split('.').next().and_then(|i| i.parse().ok()) {
                    Some(i) => Cell::Some(i),
                    None => Cell::BadType("not an integer"),
                },
                None => Cell::BadType("not an integer"),
            },
        },
        Err(c) => relay(c),
    }
}

/// The row's primary key (replica identity columns) as text, `|`-joined.
pub fn key(rel: &Relation, row: &Row) -> Option<String> {
    let mut out = String::new();
    let mut any = false;
    for (i, col) in rel.columns.iter().enumerate() {
        if !col.is_key {
            continue;
        }
        let Cell::Some(t) = text(rel, row, &col.name) else {
            return None;
        };
        if any {
            out.push('|');
        }
        out.push_str(&t);
        any = true;
        let _ = i;
    }
    any.then_some(out)
}

/// Hyphenated lowercase UUID.
pub fn uuid_text(b: &[u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// `inet`/`cidr` binary send format: family, bits, is_cidr, length, bytes.
fn inet_text(b: &[u8]) -> Option<String> {
    let [family, bits, _cidr, len, addr @ ..] = b else {
        return None;
    };
    match (family, usize::from(*len), addr.len()) {
        (2, 4, 4) => {
            let ip = std::net::Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]);
            Some(if *bits == 32 {
                ip.to_string()
            } else {
                format!("{ip}/{bits}")
            })
        }
        (3, 16, 16) => {
            let mut o = [0u8; 16];
            o.copy_from_slice(addr);
            let ip = std::net::Ipv6Addr::from(o);
            Some(if *bits == 128 {
                ip.to_string()
            } else {
                format!("{ip}/{bits}")
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inet_binary_reads_as_an_address() {
        assert_eq!(
            inet_text(&[2, 32, 0, 4, 203, 0, 113, 7]).as_deref(),
            Some("203.0.113.7")
        );
        let mut v6 = vec![3, 128, 0, 16];
        v6.extend([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(inet_text(&v6).as_deref(), Some("2001:db8::1"));
        assert_eq!(inet_text(b"paid"), None);
    }
}
