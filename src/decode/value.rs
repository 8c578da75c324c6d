//! Column values: PostgreSQL text or binary wire form → [`Value`].
//!
//! Input: a type OID and the bytes of one `t` (text output) or `b` (binary
//! send format) column from pgoutput TupleData. Output: a typed [`Value`],
//! or a [`ValueError`] that says what was wrong without quoting the value
//! (row values may be personal data and errors end up in logs).
//!
//! Invariants: money never goes through floats (numeric stays decimal text,
//! exactly as PostgreSQL prints it); types we do not know are kept raw in
//! [`Value::Other`], never guessed; nothing here panics on malformed bytes.

use std::borrow::Cow;
use std::fmt;

use postgres_protocol::types as pg;

use super::{array, datetime, numeric};

/// Type OIDs this module decodes (`pg_type.oid`, fixed in every PostgreSQL).
pub mod oid {
    /// `bool`
    pub const BOOL: u32 = 16;
    /// `bytea`
    pub const BYTEA: u32 = 17;
    /// `name`
    pub const NAME: u32 = 19;
    /// `int8`
    pub const INT8: u32 = 20;
    /// `int2`
    pub const INT2: u32 = 21;
    /// `int4`
    pub const INT4: u32 = 23;
    /// `text`
    pub const TEXT: u32 = 25;
    /// `json`
    pub const JSON: u32 = 114;
    /// `float4`
    pub const FLOAT4: u32 = 700;
    /// `float8`
    pub const FLOAT8: u32 = 701;
    /// `unknown` (untyped literals); sent as text.
    pub const UNKNOWN: u32 = 705;
    /// `int2[]`
    pub const INT2_ARRAY: u32 = 1005;
    /// `int4[]`
    pub const INT4_ARRAY: u32 = 1007;
    /// `text[]`
    pub const TEXT_ARRAY: u32 = 1009;
    /// `bpchar[]`
    pub const BPCHAR_ARRAY: u32 = 1014;
    /// `varchar[]`
    pub const VARCHAR_ARRAY: u32 = 1015;
    /// `int8[]`
    pub const INT8_ARRAY: u32 = 1016;
    /// `bpchar` (`char(n)`)
    pub const BPCHAR: u32 = 1042;
    /// `varchar`
    pub const VARCHAR: u32 = 1043;
    /// `date`
    pub const DATE: u32 = 1082;
    /// `timestamp` (without time zone)
    pub const TIMESTAMP: u32 = 1114;
    /// `timestamptz`
    pub const TIMESTAMPTZ: u32 = 1184;
    /// `numeric`
    pub const NUMERIC: u32 = 1700;
    /// `uuid`
    pub const UUID: u32 = 2950;
    /// `jsonb`
    pub const JSONB: u32 = 3802;
}

/// PostgreSQL's name for a type OID this module knows, for error messages.
pub fn type_name(type_oid: u32) -> &'static str {
    match type_oid {
        oid::BOOL => "bool",
        oid::BYTEA => "bytea",
        oid::NAME => "name",
        oid::INT8 => "int8",
        oid::INT2 => "int2",
        oid::INT4 => "int4",
        oid::TEXT => "text",
        oid::JSON => "json",
        oid::FLOAT4 => "float4",
        oid::FLOAT8 => "float8",
        oid::UNKNOWN => "unknown",
        oid::INT2_ARRAY => "int2[]",
        oid::INT4_ARRAY => "int4[]",
        oid::TEXT_ARRAY => "text[]",
        oid::BPCHAR_ARRAY => "bpchar[]",
        oid::VARCHAR_ARRAY => "varchar[]",
        oid::INT8_ARRAY => "int8[]",
        oid::BPCHAR => "bpchar",
        oid::VARCHAR => "varchar",
        oid::DATE => "date",
        oid::TIMESTAMP => "timestamp",
        oid::TIMESTAMPTZ => "timestamptz",
        oid::NUMERIC => "numeric",
        oid::UUID => "uuid",
        oid::JSONB => "jsonb",
        _ => "other type",
    }
}

/// One decoded column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL (`n`), and the non-key columns of a `K` old-key image.
    Null,
    /// `u`: a TOASTed value the UPDATE did not change and pgoutput did not send.
    UnchangedToast,
    /// `bool`
    Bool(bool),
    /// `int2`
    Int2(i16),
    /// `int4`
    Int4(i32),
    /// `int8`
    Int8(i64),
    /// `float4`
    Float4(f32),
    /// `float8`
    Float8(f64),
    /// `numeric` as PostgreSQL prints it: `12.30`, `-0.5`, `NaN`, `Infinity`.
    Numeric(String),
    /// `text`, `varchar`, `bpchar` (padding kept), `name`, `unknown`.
    Text(String),
    /// `uuid`
    Uuid([u8; 16]),
    /// `timestamptz`: µs since the UNIX epoch, UTC; ±infinity = `i64::MAX` / `i64::MIN`.
    Timestamptz(i64),
    /// `timestamp`: µs since the UNIX epoch of a zone-less wall clock; ±infinity as above.
    Timestamp(i64),
    /// `date`: days since 1970-01-01; ±infinity = `i32::MAX` / `i32::MIN`.
    Date(i32),
    /// `json` / `jsonb` document text.
    Json(String),
    /// `bytea`
    Bytea(Vec<u8>),
    /// One-dimensional `text[]`, `varchar[]`, `bpchar[]`.
    TextArray(Vec<Option<String>>),
    /// One-dimensional `int2[]`, `int4[]`, `int8[]`.
    IntArray(Vec<Option<i64>>),
    /// Any other type, kept exactly as received.
    Other {
        /// `pg_type` OID of the column.
        type_oid: u32,
        /// Text output, when the value came as `t`.
        text: Option<String>,
        /// Binary send format, when the value came as `b`.
        binary: Option<Vec<u8>>,
    },
}

/// Wire form of a column value, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `t`: the type's text output function.
    Text,
    /// `b`: the type's binary send function.
    Binary,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Text => "text",
            Format::Binary => "binary",
        })
    }
}

/// Why one column value could not be decoded. Never quotes the value itself.
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    /// Fewer bytes than the format's own header promises.
    #[error("{format} value of {len} bytes is truncated")]
    Truncated {
        /// Text or binary.
        format: Format,
        /// Bytes received.
        len: usize,
    },
    /// Bytes that are not a valid value of the type.
    #[error("{format} value of {len} bytes is malformed: {reason}")]
    Malformed {
        /// Text or binary.
        format: Format,
        /// Bytes received.
        len: usize,
        /// What was wrong, in words that do not include the value.
        reason: &'static str,
    },
    /// A `postgres-protocol` binary decoder rejected the bytes.
    #[error("binary value of {len} bytes is malformed: {cause}")]
    Binary {
        /// Bytes received.
        len: usize,
        /// The decoder's own error.
        #[source]
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An array with more than one dimension; only 1-dimensional arrays are decoded.
    #[error("{format} array value has {dims} dimensions; only 1-dimensional arrays are supported")]
    MultiDimArray {
        /// Text or binary.
        format: Format,
        /// Dimensions found.
        dims: usize,
    },
}

impl ValueError {
    pub(super) fn malformed(format: Format, len: usize, reason: &'static str) -> Self {
        Self::Malformed {
            format,
            len,
            reason,
        }
    }
}

/// Wraps a `postgres-protocol` decoder result, keeping its error as the cause.
fn lib<T>(
    raw: &[u8],
    result: Result<T, Box<dyn std::error::Error + Send + Sync>>,
) -> Result<T, ValueError> {
    result.map_err(|cause| ValueError::Binary {
        len: raw.len(),
        cause,
    })
}

fn utf8(format: Format, raw: &[u8]) -> Result<&str, ValueError> {
    std::str::from_utf8(raw).map_err(|_| ValueError::malformed(format, raw.len(), "not UTF-8"))
}

impl Value {
    /// Decodes a `t` column: `raw` is the type's text output (no NUL).
    pub fn from_text(type_oid: u32, raw: &[u8]) -> Result<Value, ValueError> {
        const T: Format = Format::Text;
        let s = utf8(T, raw)?;
        let bad = |reason| ValueError::malformed(T, raw.len(), reason);
        let value = match type_oid {
            oid::BOOL => match s {
                "t" => Value::Bool(true),
                "f" => Value::Bool(false),
                _ => return Err(bad("bool is not t or f")),
            },
            oid::INT2 => Value::Int2(s.parse().map_err(|_| bad("not an int2"))?),
            oid::INT4 => Value::Int4(s.parse().map_err(|_| bad("not an int4"))?),
            oid::INT8 => Value::Int8(s.parse().map_err(|_| bad("not an int8"))?),
            oid::FLOAT4 => Value::Float4(parse_float(s).ok_or_else(|| bad("not a float4"))?),
            oid::FLOAT8 => Value::Float8(parse_float(s).ok_or_else(|| bad("not a float8"))?),
            oid::NUMERIC => {
                numeric::check_text(s).map_err(bad)?;
                Value::Numeric(s.to_owned())
            }
            oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME | oid::UNKNOWN => {
                Value::Text(s.to_owned())
            }
            oid::UUID => Value::Uuid(parse_uuid(s).ok_or_else(|| bad("not a hyphenated uuid"))?),
            oid::TIMESTAMPTZ => {
                Value::Timestamptz(datetime::parse_timestamp(s, true).map_err(bad)?)
            }
            oid::TIMESTAMP => Value::Timestamp(datetime::parse_timestamp(s, false).map_err(bad)?),
            oid::DATE => Value::Date(datetime::parse_date(s).map_err(bad)?),
            oid::JSON | oid::JSONB => Value::Json(s.to_owned()),
            oid::BYTEA => {
                Value::Bytea(parse_bytea(s).ok_or_else(|| bad("not bytea hex or escape output"))?)
            }
            oid::TEXT_ARRAY | oid::VARCHAR_ARRAY | oid::BPCHAR_ARRAY => {
                Value::TextArray(array::parse_text(s)?)
            }
            oid::INT2_ARRAY | oid::INT4_ARRAY | oid::INT8_ARRAY => {
                let items = array::parse_text(s)?;
                let ints = items
                    .into_iter()
                    .map(|item| item.map(|i| i.parse::<i64>()).transpose())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| bad("array element is not an integer"))?;
                Value::IntArray(ints)
            }
            _ => Value::Other {
                type_oid,
                text: Some(s.to_owned()),
                binary: None,
            },
        };
        Ok(value)
    }

    /// Decodes a `b` column: `raw` is the type's binary send format.
    pub fn from_binary(type_oid: u32, raw: &[u8]) -> Result<Value, ValueError> {
        const B: Format = Format::Binary;
        let value = match type_oid {
            oid::BOOL => Value::Bool(lib(raw, pg::bool_from_sql(raw))?),
            oid::INT2 => Value::Int2(lib(raw, pg::int2_from_sql(raw))?),
            oid::INT4 => Value::Int4(lib(raw, pg::int4_from_sql(raw))?),
            oid::INT8 => Value::Int8(lib(raw, pg::int8_from_sql(raw))?),
            oid::FLOAT4 => Value::Float4(lib(raw, pg::float4_from_sql(raw))?),
            oid::FLOAT8 => Value::Float8(lib(raw, pg::float8_from_sql(raw))?),
            oid::NUMERIC => Value::Numeric(numeric::from_binary(raw)?),
            oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME | oid::UNKNOWN => {
                Value::Text(lib(raw, pg::text_from_sql(raw))?.to_owned())
            }
            oid::UUID => Value::Uuid(lib(raw, pg::uuid_from_sql(raw))?),
            oid::TIMESTAMPTZ | oid::TIMESTAMP => {
                let pg_us = lib(raw, pg::timestamp_from_sql(raw))?;
                let us = datetime::pg_timestamp_to_unix_us(pg_us)
                    .ok_or_else(|| ValueError::malformed(B, raw.len(), "timestamp out of range"))?;
                if type_oid == oid::TIMESTAMPTZ {
                    Value::Timestamptz(us)
                } else {
                    Value::Timestamp(us)
                }
            }
            oid::DATE => {
                let pg_days = lib(raw, pg::date_from_sql(raw))?;
                Value::Date(
                    datetime::pg_date_to_unix_days(pg_days)
                        .ok_or_else(|| ValueError::malformed(B, raw.len(), "date out of range"))?,
                )
            }
            oid::JSON => Value::Json(utf8(B, raw)?.to_owned()),
            oid::JSONB => match raw.split_first() {
                // jsonb_send writes a version byte (1) before the document text.
                Some((1, doc)) => Value::Json(utf8(B, doc)?.to_owned()),
                Some(_) => {
                    return Err(ValueError::malformed(B, raw.len(), "unknown jsonb version"))
                }
                None => return Err(ValueError::Truncated { format: B, len: 0 }),
            },
            oid::BYTEA => Value::Bytea(pg::bytea_from_sql(raw).to_vec()),
            oid::TEXT_ARRAY | oid::VARCHAR_ARRAY | oid::BPCHAR_ARRAY => {
                let array::BinaryArray {
                    elem_oid: elem,
                    items,
                } = array::parse_binary(raw)?;
                if !matches!(elem, oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME) {
                    return Err(ValueError::malformed(
                        B,
                        raw.len(),
                        "array element type is not text-like",
                    ));
                }
                let items = items
                    .into_iter()
                    .map(|item| item.map(|b| utf8(B, b).map(str::to_owned)).transpose())
                    .collect::<Result<Vec<_>, _>>()?;
                Value::TextArray(items)
            }
            oid::INT2_ARRAY | oid::INT4_ARRAY | oid::INT8_ARRAY => {
                let array::BinaryArray {
                    elem_oid: elem,
                    items,
                } = array::parse_binary(raw)?;
                let decode = |b: &[u8]| -> Result<i64, ValueError> {
                    match elem {
                        oid::INT2 => lib(b, pg::int2_from_sql(b)).map(i64::from),
                        oid::INT4 => lib(b, pg::int4_from_sql(b)).map(i64::from),
                        oid::INT8 => lib(b, pg::int8_from_sql(b)),
                        _ => Err(ValueError::malformed(
                            B,
                            raw.len(),
                            "array element type is not an integer",
                        )),
                    }
                };
                let items = items
                    .into_iter()
                    .map(|item| item.map(decode).transpose())
                    .collect::<Result<Vec<_>, _>>()?;
                Value::IntArray(items)
            }
            _ => Value::Other {
                type_oid,
                text: None,
                binary: Some(raw.to_vec()),
            },
        };
        Ok(value)
    }

    /// The text of `Text`, `Json` and `Numeric` values.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) | Value::Json(s) | Value::Numeric(s) => Some(s),
            _ => None,
        }
    }

    /// `Int2`, `Int4` and `Int8` widened to `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int2(v) => Some(i64::from(*v)),
            Value::Int4(v) => Some(i64::from(*v)),
            Value::Int8(v) => Some(*v),
            _ => None,
        }
    }

    /// An exact decimal amount: `Numeric` text (borrowed) or an integer
    /// formatted in base 10 (owned). `None` for `NaN`/`±Infinity`, which are
    /// not amounts, for floats (never used for money) and for other types.
    pub fn as_decimal(&self) -> Option<Cow<'_, str>> {
        match self {
            Value::Numeric(s) if numeric::is_finite_text(s) => Some(Cow::Borrowed(s)),
            _ => self.as_i64().map(|v| Cow::Owned(v.to_string())),
        }
    }

    /// `Timestamptz` and `Timestamp` (read as UTC) in µs since the UNIX epoch;
    /// `None` for ±infinity, which is not an instant.
    pub fn as_timestamp_us(&self) -> Option<i64> {
        match self {
            Value::Timestamptz(us) | Value::Timestamp(us) if datetime::is_finite_us(*us) => {
                Some(*us)
            }
            _ => None,
        }
    }

    /// True for SQL NULL only (an unchanged TOAST value is not NULL).
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// JSON for the `tail` command and for debugging.
    ///
    /// Numeric and json/jsonb become JSON *strings* so no digit passes
    /// through a float; non-finite floats become `"NaN"`/`"Infinity"`;
    /// timestamptz is RFC 3339 in UTC (`…Z`), timestamp the same without an
    /// offset (it has none), date `YYYY-MM-DD`, infinities `"infinity"` /
    /// `"-infinity"`; bytea `"\\x0a0b"`; uuid hyphenated; an unchanged TOAST
    /// value `{"unchanged_toast": true}`; other types their text output, or
    /// `{"type_oid": n, "binary": "\\x…"}` when they came as binary.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::{json, Value as J};
        match self {
            Value::Null => J::Null,
            Value::UnchangedToast => json!({ "unchanged_toast": true }),
            Value::Bool(b) => J::Bool(*b),
            Value::Int2(v) => json!(v),
            Value::Int4(v) => json!(v),
            Value::Int8(v) => json!(v),
            // Shortest text of the f32 re-read as f64, so 0.1f32 prints as 0.1.
            Value::Float4(v) => float_json(v.to_string().parse().unwrap_or(f64::NAN)),
            Value::Float8(v) => float_json(*v),
            Value::Numeric(s) | Value::Text(s) | Value::Json(s) => J::String(s.clone()),
            Value::Uuid(u) => J::String(format_uuid(u)),
            Value::Timestamptz(us) => J::String(datetime::format_timestamp(*us, true)),
            Value::Timestamp(us) => J::String(datetime::format_timestamp(*us, false)),
            Value::Date(days) => J::String(datetime::format_date(*days)),
            Value::Bytea(b) => J::String(hex(b)),
            Value::TextArray(items) => J::Array(
                items
                    .iter()
                    .map(|i| i.as_ref().map_or(J::Null, |s| J::String(s.clone())))
                    .collect(),
            ),
            Value::IntArray(items) => J::Array(
                items
                    .iter()
                    .map(|i| i.map_or(J::Null, |v| json!(v)))
                    .collect(),
            ),
            Value::Other { text: Some(t), .. } => J::String(t.clone()),
            Value::Other {
                type_oid, binary, ..
            } => json!({
                "type_oid": type_oid,
                "binary": binary.as_deref().map(hex),
            }),
        }
    }
}

fn float_json(v: f64) -> serde_json::Value {
    match serde_json::Number::from_f64(v) {
        Some(n) => serde_json::Value::Number(n),
        None if v.is_nan() => "NaN".into(),
        None if v > 0.0 => "Infinity".into(),
        None => "-Infinity".into(),
    }
}

/// float4/float8 text output: decimal or exponent form, `NaN`, `±Infinity`.
fn parse_float<F: std::str::FromStr>(s: &str) -> Option<F> {
    // Rust also accepts "inf", "nan", "infinity" in any case; PostgreSQL
    // prints only these three spellings, so anything else with letters
    // (other than an exponent) is not float output.
    let special = matches!(s, "NaN" | "Infinity" | "-Infinity");
    if !special
        && s.bytes()
            .any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E')
    {
        return None;
    }
    s.parse().ok()
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, as `uuid_out` prints it.
fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let hex: Vec<u8> = b.iter().copied().filter(|&c| c != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        *out.get_mut(i)? = hex_val(pair[0])? << 4 | hex_val(pair[1])?;
    }
    Some(out)
}

fn format_uuid(u: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, byte) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{byte:02x}"));
    }
    s
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// `\x` + lower-case hex, PostgreSQL's `bytea_output = hex` form.
pub(super) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + bytes.len() * 2);
    s.push_str("\\x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// bytea text output: `\x0a0b` (hex, the default) or the legacy escape form
/// (`bytea_output = escape`: printable bytes as-is, `\\`, `\ooo` octal).
fn parse_bytea(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if let Some(hexpart) = s.strip_prefix("\\x") {
        let h = hexpart.as_bytes();
        if h.len() % 2 != 0 {
            return None;
        }
        return h
            .chunks_exact(2)
            .map(|p| Some(hex_val(p[0])? << 4 | hex_val(p[1])?))
            .collect();
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
        } else if b.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let oct = b.get(i + 1..i + 4)?;
            if !oct.iter().all(|c| (b'0'..=b'7').contains(c)) || oct[0] > b'3' {
                return None;
            }
            out.push((oct[0] - b'0') << 6 | (oct[1] - b'0') << 3 | (oct[2] - b'0'));
            i += 4;
        }
    }
    Some(out)
}

#[cfg(test)]
#[path = "value_tests.rs"]
mod tests;
