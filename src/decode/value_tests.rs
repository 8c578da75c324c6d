//! Tests for `value.rs`: every listed type in text and binary form.

use super::*;
use serde_json::json;
use time::macros::datetime;

fn text(type_oid: u32, s: &str) -> Value {
    Value::from_text(type_oid, s.as_bytes()).unwrap()
}

fn text_err(type_oid: u32, s: &str) -> String {
    Value::from_text(type_oid, s.as_bytes())
        .unwrap_err()
        .to_string()
}

fn bin(type_oid: u32, raw: &[u8]) -> Value {
    Value::from_binary(type_oid, raw).unwrap()
}

/// µs since the UNIX epoch of a `time` instant.
fn unix_us(dt: time::OffsetDateTime) -> i64 {
    (dt.unix_timestamp_nanos() / 1000) as i64
}

/// `array_send` bytes for a 1-dimensional array.
fn array_wire(elem: u32, items: &[Option<Vec<u8>>]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&1i32.to_be_bytes());
    b.extend_from_slice(&i32::from(items.iter().any(Option::is_none)).to_be_bytes());
    b.extend_from_slice(&elem.to_be_bytes());
    b.extend_from_slice(&(items.len() as i32).to_be_bytes());
    b.extend_from_slice(&1i32.to_be_bytes());
    for item in items {
        match item {
            None => b.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(v) => {
                b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                b.extend_from_slice(v);
            }
        }
    }
    b
}

const UUID_BYTES: [u8; 16] = [
    0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11,
];
const UUID_TEXT: &str = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";

#[test]
fn text_scalars() {
    assert_eq!(text(oid::BOOL, "t"), Value::Bool(true));
    assert_eq!(text(oid::BOOL, "f"), Value::Bool(false));
    assert_eq!(text(oid::INT2, "-32768"), Value::Int2(i16::MIN));
    assert_eq!(text(oid::INT4, "2147483647"), Value::Int4(i32::MAX));
    assert_eq!(
        text(oid::INT8, "-9223372036854775808"),
        Value::Int8(i64::MIN)
    );
    assert_eq!(text(oid::FLOAT4, "1.5"), Value::Float4(1.5));
    // Parsed as f32 directly, not rounded twice through f64.
    assert_eq!(text(oid::FLOAT4, "0.1"), Value::Float4(0.1));
    assert_eq!(text(oid::FLOAT4, "Infinity"), Value::Float4(f32::INFINITY));
    assert_eq!(text(oid::FLOAT8, "-0"), Value::Float8(-0.0));
    assert_eq!(text(oid::FLOAT8, "1e+20"), Value::Float8(1e20));
    assert_eq!(
        text(oid::FLOAT8, "-Infinity"),
        Value::Float8(f64::NEG_INFINITY)
    );
    assert!(matches!(text(oid::FLOAT8, "NaN"), Value::Float8(v) if v.is_nan()));
    assert_eq!(text(oid::UUID, UUID_TEXT), Value::Uuid(UUID_BYTES));
    assert_eq!(
        text(oid::JSONB, r#"{"a": 1}"#),
        Value::Json(r#"{"a": 1}"#.into())
    );
    assert_eq!(text(oid::JSON, "[1,2]"), Value::Json("[1,2]".into()));
}

#[test]
fn text_strings_keep_bytes_as_sent() {
    assert_eq!(text(oid::TEXT, "héllo"), Value::Text("héllo".into()));
    assert_eq!(text(oid::VARCHAR, ""), Value::Text(String::new()));
    // char(5) keeps the padding PostgreSQL sends.
    assert_eq!(text(oid::BPCHAR, "ab   "), Value::Text("ab   ".into()));
    assert_eq!(text(oid::NAME, "orders"), Value::Text("orders".into()));
    assert_eq!(text(oid::UNKNOWN, "x"), Value::Text("x".into()));
}

#[test]
fn text_numeric_is_kept_exactly() {
    for s in [
        "0",
        "0.00",
        "-1.5",
        "12.30",
        "123456789.0001",
        "100000000000000000000",
        "NaN",
    ] {
        assert_eq!(text(oid::NUMERIC, s), Value::Numeric(s.into()));
    }
    assert!(text_err(oid::NUMERIC, "1.5e3").contains("malformed"));
}

#[test]
fn text_dates_and_times() {
    let instant = unix_us(datetime!(2026-11-26 09:31:42.123456 UTC));
    assert_eq!(
        text(oid::TIMESTAMPTZ, "2026-11-26 09:31:42.123456+00"),
        Value::Timestamptz(instant)
    );
    assert_eq!(
        text(oid::TIMESTAMPTZ, "2026-11-26 15:01:42.123456+05:30"),
        Value::Timestamptz(instant)
    );
    assert_eq!(
        text(oid::TIMESTAMPTZ, "2026-11-26 09:31:42+00"),
        Value::Timestamptz(unix_us(datetime!(2026-11-26 09:31:42 UTC)))
    );
    assert_eq!(
        text(oid::TIMESTAMPTZ, "infinity"),
        Value::Timestamptz(i64::MAX)
    );
    assert_eq!(
        text(oid::TIMESTAMP, "-infinity"),
        Value::Timestamp(i64::MIN)
    );
    assert_eq!(
        text(oid::TIMESTAMP, "2026-11-26 09:31:42.123456"),
        Value::Timestamp(instant)
    );
    assert_eq!(text(oid::DATE, "2026-11-26"), Value::Date(20_783));
    assert_eq!(text(oid::DATE, "infinity"), Value::Date(i32::MAX));
}

#[test]
fn text_bytea_hex_and_escape() {
    assert_eq!(text(oid::BYTEA, "\\x0a0b"), Value::Bytea(vec![0x0a, 0x0b]));
    assert_eq!(text(oid::BYTEA, "\\x"), Value::Bytea(vec![]));
    assert_eq!(text(oid::BYTEA, "\\xFF"), Value::Bytea(vec![0xff]));
    assert_eq!(
        text(oid::BYTEA, r"ab\000\\"),
        Value::Bytea(b"ab\0\\".to_vec())
    );
    assert!(Value::from_text(oid::BYTEA, b"\\x0").is_err());
    assert!(Value::from_text(oid::BYTEA, b"\\xzz").is_err());
    assert!(Value::from_text(oid::BYTEA, br"\9").is_err());
}

#[test]
fn text_arrays() {
    assert_eq!(
        text(oid::TEXT_ARRAY, r#"{a,"b c",NULL,"with \"quote\""}"#),
        Value::TextArray(vec![
            Some("a".into()),
            Some("b c".into()),
            None,
            Some("with \"quote\"".into())
        ])
    );
    assert_eq!(
        text(oid::VARCHAR_ARRAY, "{x}"),
        Value::TextArray(vec![Some("x".into())])
    );
    assert_eq!(
        text(oid::BPCHAR_ARRAY, r#"{"a  "}"#),
        Value::TextArray(vec![Some("a  ".into())])
    );
    assert_eq!(
        text(oid::INT4_ARRAY, "{1,2,NULL}"),
        Value::IntArray(vec![Some(1), Some(2), None])
    );
    assert_eq!(text(oid::INT8_ARRAY, "{}"), Value::IntArray(vec![]));
    assert_eq!(
        text(oid::INT2_ARRAY, "{-5}"),
        Value::IntArray(vec![Some(-5)])
    );
    assert!(text_err(oid::INT4_ARRAY, "{1,x}").contains("not an integer"));
    assert!(text_err(oid::TEXT_ARRAY, "{{a},{b}}").contains("2 dimensions"));
}

#[test]
fn text_errors_never_quote_the_value() {
    let err = text_err(oid::INT4, "secret@example.com");
    assert_eq!(err, "text value of 18 bytes is malformed: not an int4");
    assert!(text_err(oid::BOOL, "true").contains("bool"));
    assert!(text_err(oid::INT2, "40000").contains("int2"));
    assert!(text_err(oid::FLOAT8, "inf").contains("float8"));
    assert!(text_err(oid::UUID, "a0eebc999c0b4ef8bb6d6bb9bd380a11").contains("uuid"));
    assert!(text_err(oid::UUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd38-a11").contains("uuid"));
    assert!(text_err(oid::UUID, "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").contains("uuid"));
    assert!(text_err(oid::FLOAT4, "nan").contains("float4"));
    assert!(text_err(oid::TIMESTAMPTZ, "2026-11-26 09:31:42").contains("timestamptz"));
    assert!(text_err(oid::DATE, "26/11/2026").contains("date"));
    let not_utf8 = Value::from_text(oid::TEXT, &[0xff, 0xfe]).unwrap_err();
    assert!(not_utf8.to_string().contains("not UTF-8"));
}

#[test]
fn unknown_types_are_kept_raw() {
    assert_eq!(
        text(600, "(1,2)"),
        Value::Other {
            type_oid: 600,
            text: Some("(1,2)".into()),
            binary: None
        }
    );
    assert_eq!(
        bin(600, &[1, 2, 3]),
        Value::Other {
            type_oid: 600,
            text: None,
            binary: Some(vec![1, 2, 3])
        }
    );
}

#[test]
fn binary_scalars() {
    assert_eq!(bin(oid::BOOL, &[1]), Value::Bool(true));
    assert_eq!(bin(oid::BOOL, &[0]), Value::Bool(false));
    assert_eq!(bin(oid::INT2, &(-2i16).to_be_bytes()), Value::Int2(-2));
    assert_eq!(
        bin(oid::INT4, &70_000i32.to_be_bytes()),
        Value::Int4(70_000)
    );
    assert_eq!(
        bin(oid::INT8, &(1i64 << 40).to_be_bytes()),
        Value::Int8(1 << 40)
    );
    assert_eq!(
        bin(oid::FLOAT4, &0.25f32.to_be_bytes()),
        Value::Float4(0.25)
    );
    assert_eq!(
        bin(oid::FLOAT8, &1e20f64.to_be_bytes()),
        Value::Float8(1e20)
    );
    assert_eq!(bin(oid::TEXT, "ü".as_bytes()), Value::Text("ü".into()));
    assert_eq!(bin(oid::BPCHAR, b"ab   "), Value::Text("ab   ".into()));
    assert_eq!(bin(oid::VARCHAR, b"v"), Value::Text("v".into()));
    assert_eq!(bin(oid::NAME, b"n"), Value::Text("n".into()));
    assert_eq!(bin(oid::UUID, &UUID_BYTES), Value::Uuid(UUID_BYTES));
    assert_eq!(bin(oid::BYTEA, &[0, 255]), Value::Bytea(vec![0, 255]));
    assert_eq!(
        bin(oid::JSON, br#"{"a":1}"#),
        Value::Json(r#"{"a":1}"#.into())
    );
    assert_eq!(
        bin(oid::JSONB, b"\x01{\"a\": 1}"),
        Value::Json(r#"{"a": 1}"#.into())
    );
}

#[test]
fn binary_numeric_matches_postgres_text() {
    // 12.30: ndigits 2, weight 0, sign +, dscale 2, digits 12, 3000.
    let raw = [0, 2, 0, 0, 0, 0, 0, 2, 0, 12, 0x0b, 0xb8];
    assert_eq!(bin(oid::NUMERIC, &raw), Value::Numeric("12.30".into()));
    let nan = [0, 0, 0, 0, 0xc0, 0, 0, 0];
    assert_eq!(bin(oid::NUMERIC, &nan), Value::Numeric("NaN".into()));
}

#[test]
fn binary_timestamps_shift_epoch_and_keep_infinity() {
    let instant = unix_us(datetime!(2026-11-26 09:31:42.123456 UTC));
    let pg = (instant - 946_684_800_000_000).to_be_bytes();
    assert_eq!(bin(oid::TIMESTAMPTZ, &pg), Value::Timestamptz(instant));
    assert_eq!(bin(oid::TIMESTAMP, &pg), Value::Timestamp(instant));
    assert_eq!(
        bin(oid::TIMESTAMPTZ, &0i64.to_be_bytes()),
        Value::Timestamptz(946_684_800_000_000)
    );
    assert_eq!(
        bin(oid::TIMESTAMPTZ, &i64::MAX.to_be_bytes()),
        Value::Timestamptz(i64::MAX)
    );
    assert_eq!(
        bin(oid::TIMESTAMP, &i64::MIN.to_be_bytes()),
        Value::Timestamp(i64::MIN)
    );
    assert_eq!(bin(oid::DATE, &0i32.to_be_bytes()), Value::Date(10_957));
    assert_eq!(bin(oid::DATE, &9826i32.to_be_bytes()), Value::Date(20_783));
    assert_eq!(
        bin(oid::DATE, &i32::MAX.to_be_bytes()),
        Value::Date(i32::MAX)
    );
    assert_eq!(
        bin(oid::DATE, &i32::MIN.to_be_bytes()),
        Value::Date(i32::MIN)
    );
    assert!(Value::from_binary(oid::TIMESTAMPTZ, &(i64::MAX - 1).to_be_bytes()).is_err());
}

#[test]
fn binary_arrays() {
    let t = array_wire(
        oid::TEXT,
        &[Some(b"a".to_vec()), None, Some(b"b c".to_vec())],
    );
    assert_eq!(
        bin(oid::TEXT_ARRAY, &t),
        Value::TextArray(vec![Some("a".into()), None, Some("b c".into())])
    );
    let v = array_wire(oid::VARCHAR, &[Some(b"x".to_vec())]);
    assert_eq!(
        bin(oid::VARCHAR_ARRAY, &v),
        Value::TextArray(vec![Some("x".into())])
    );
    let i4 = array_wire(oid::INT4, &[Some(1i32.to_be_bytes().to_vec()), None]);
    assert_eq!(
        bin(oid::INT4_ARRAY, &i4),
        Value::IntArray(vec![Some(1), None])
    );
    let i2 = array_wire(oid::INT2, &[Some((-3i16).to_be_bytes().to_vec())]);
    assert_eq!(bin(oid::INT2_ARRAY, &i2), Value::IntArray(vec![Some(-3)]));
    let i8 = array_wire(oid::INT8, &[Some(i64::MAX.to_be_bytes().to_vec())]);
    assert_eq!(
        bin(oid::INT8_ARRAY, &i8),
        Value::IntArray(vec![Some(i64::MAX)])
    );
    // Element type must match the array type.
    assert!(Value::from_binary(oid::INT4_ARRAY, &t).is_err());
    assert!(Value::from_binary(oid::TEXT_ARRAY, &i4).is_err());
    // Wrong element width is an error from postgres-protocol, kept as the cause.
    let bad = array_wire(oid::INT4, &[Some(vec![0, 1])]);
    let err = Value::from_binary(oid::INT4_ARRAY, &bad).unwrap_err();
    assert!(std::error::Error::source(&err).is_some());
}

#[test]
fn binary_errors() {
    assert!(Value::from_binary(oid::BOOL, &[]).is_err());
    assert!(Value::from_binary(oid::INT4, &[0, 0, 1]).is_err());
    assert!(Value::from_binary(oid::INT8, &[0; 9]).is_err());
    assert!(Value::from_binary(oid::UUID, &[0; 15]).is_err());
    assert!(Value::from_binary(oid::TEXT, &[0xc3]).is_err());
    assert!(Value::from_binary(oid::DATE, &[0, 0]).is_err());
    assert!(Value::from_binary(oid::JSONB, b"\x02{}").is_err());
    assert!(matches!(
        Value::from_binary(oid::JSONB, b""),
        Err(ValueError::Truncated { .. })
    ));
    assert!(matches!(
        Value::from_binary(oid::NUMERIC, &[0, 1, 0]),
        Err(ValueError::Truncated { len: 3, .. })
    ));
}

#[test]
fn accessors() {
    assert_eq!(Value::Text("a".into()).as_str(), Some("a"));
    assert_eq!(Value::Numeric("1.0".into()).as_str(), Some("1.0"));
    assert_eq!(Value::Int4(1).as_str(), None);
    assert_eq!(Value::Int2(-3).as_i64(), Some(-3));
    assert_eq!(Value::Int8(i64::MAX).as_i64(), Some(i64::MAX));
    assert_eq!(Value::Text("1".into()).as_i64(), None);
    assert_eq!(
        Value::Numeric("12.30".into()).as_decimal().as_deref(),
        Some("12.30")
    );
    assert_eq!(Value::Int4(-7).as_decimal().as_deref(), Some("-7"));
    assert_eq!(Value::Numeric("NaN".into()).as_decimal(), None);
    assert_eq!(Value::Float8(1.5).as_decimal(), None);
    assert_eq!(Value::Timestamptz(5).as_timestamp_us(), Some(5));
    assert_eq!(Value::Timestamp(-5).as_timestamp_us(), Some(-5));
    assert_eq!(Value::Timestamptz(i64::MAX).as_timestamp_us(), None);
    assert_eq!(Value::Date(1).as_timestamp_us(), None);
    assert!(Value::Null.is_null());
    assert!(!Value::UnchangedToast.is_null());
}

#[test]
fn json_rendering() {
    let instant = unix_us(datetime!(2026-11-26 09:31:42.123456 UTC));
    let cases = [
        (Value::Null, json!(null)),
        (Value::UnchangedToast, json!({"unchanged_toast": true})),
        (Value::Bool(true), json!(true)),
        (Value::Int2(1), json!(1)),
        (Value::Int8(i64::MAX), json!(i64::MAX)),
        (Value::Float4(0.1), json!(0.1)),
        (Value::Float8(f64::NAN), json!("NaN")),
        (Value::Float8(f64::INFINITY), json!("Infinity")),
        (Value::Numeric("12.30".into()), json!("12.30")),
        (Value::Text("x".into()), json!("x")),
        (Value::Json(r#"{"a":1}"#.into()), json!(r#"{"a":1}"#)),
        (Value::Uuid(UUID_BYTES), json!(UUID_TEXT)),
        (
            Value::Timestamptz(instant),
            json!("2026-11-26T09:31:42.123456Z"),
        ),
        (
            Value::Timestamp(instant),
            json!("2026-11-26T09:31:42.123456"),
        ),
        (Value::Timestamptz(i64::MIN), json!("-infinity")),
        (Value::Date(20_783), json!("2026-11-26")),
        (Value::Bytea(vec![0x0a, 0x0b]), json!("\\x0a0b")),
        (
            Value::TextArray(vec![Some("a".into()), None]),
            json!(["a", null]),
        ),
        (Value::IntArray(vec![Some(1), None]), json!([1, null])),
        (
            Value::Other {
                type_oid: 600,
                text: Some("(1,2)".into()),
                binary: None,
            },
            json!("(1,2)"),
        ),
        (
            Value::Other {
                type_oid: 600,
                text: None,
                binary: Some(vec![1]),
            },
            json!({"type_oid": 600, "binary": "\\x01"}),
        ),
    ];
    for (value, expected) in cases {
        assert_eq!(value.to_json(), expected, "{value:?}");
    }
}

#[test]
fn type_names() {
    assert_eq!(type_name(oid::NUMERIC), "numeric");
    assert_eq!(type_name(oid::TEXT_ARRAY), "text[]");
    assert_eq!(type_name(123_456), "other type");
}
