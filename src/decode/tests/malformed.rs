//! Malformed input: every failure is a `DecodeError` naming what was wrong; nothing panics.

use super::*;

#[test]
fn unknown_relation_is_an_error() {
    let mut d = Decoder::new();
    let cases = [
        (insert_orders(&[]), "Insert"),
        (Msg::new(b'U').u32(ORDERS).u8(b'N').tuple(&[]).0, "Update"),
        (Msg::new(b'D').u32(ORDERS).u8(b'K').tuple(&[]).0, "Delete"),
    ];
    for (payload, kind) in cases {
        let err = d.decode(&payload).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{kind} for relation OID 16384 that no Relation message described")
        );
    }
}

#[test]
fn value_errors_name_table_column_and_type() {
    let mut d = decoder_with_orders(b'd');
    let err = d
        .decode(&insert_orders(&[
            Col::Text("1"),
            Col::Bin(&[0, 1, 0]),
            Col::Null,
            Col::Null,
        ]))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "column orders.total (numeric, OID 1700): binary value of 3 bytes is truncated"
    );
    assert!(matches!(
        std::error::Error::source(&err).and_then(|s| s.downcast_ref::<ValueError>()),
        Some(ValueError::Truncated { len: 3, .. })
    ));
    let err = d
        .decode(&insert_orders(&text_row("x", "1", "e", "n")))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "column orders.id (int4, OID 23): text value of 1 bytes is malformed: not an int4"
    );
    let err = d
        .decode(&insert_orders(&[
            Col::Text("1"),
            Col::Null,
            Col::Bin(&[0xff]),
            Col::Null,
        ]))
        .unwrap_err();
    assert!(err
        .to_string()
        .starts_with("column orders.email (text, OID 25): binary value of 1 bytes is malformed"));
}

#[test]
fn malformed_framing_errors() {
    let mut d = decoder_with_orders(b'd');
    let check = |d: &mut Decoder, payload: Vec<u8>, expected: &str| {
        let err = d.decode(&payload).unwrap_err();
        assert_eq!(err.to_string(), expected);
    };
    check(&mut d, vec![], "empty pgoutput message");
    check(&mut d, vec![b'Z'], "unknown pgoutput message tag 'Z'");
    check(&mut d, vec![0x01], "unknown pgoutput message tag 0x01");
    check(
        &mut d,
        vec![b'S', 0, 0, 0, 1, 1],
        "pgoutput Stream Start message ('S') needs protocol v2+ features this decoder does not request",
    );
    check(
        &mut d,
        Msg::new(b'B').i64(1).i64(2).0,
        "Begin message is truncated: xid needs 4 bytes at offset 17, 0 left",
    );
    check(
        &mut d,
        Msg::new(b'B').i64(1).i64(2).u32(3).u8(9).0,
        "Begin message has 1 unexpected bytes after its last field",
    );
    check(
        &mut d,
        Msg::new(b'B').i64(1).i64(i64::MAX - 1).u32(3).0,
        "Begin message: commit timestamp is out of range",
    );
    check(
        &mut d,
        Msg::new(b'O').i64(1).bytes(b"abc").0,
        "Origin message: origin name has no NUL terminator",
    );
    check(
        &mut d,
        Msg::new(b'R')
            .u32(1)
            .str("public")
            .bytes(&[0xc3, 0x28, 0])
            .u8(b'd')
            .i16(0)
            .0,
        "Relation message: relation name is not UTF-8",
    );
    check(
        &mut d,
        relation(5, "public", "t", b'x', &[]),
        "Relation message for public.t (OID 5): unknown replica identity 'x'",
    );
    check(
        &mut d,
        Msg::new(b'R')
            .u32(5)
            .str("public")
            .str("t")
            .u8(b'd')
            .i16(-1)
            .0,
        "Relation message: column count is negative (-1)",
    );
    check(
        &mut d,
        Msg::new(b'T').i32(-2).u8(0).0,
        "Truncate message: relation count is negative (-2)",
    );
    check(
        &mut d,
        Msg::new(b'M')
            .u8(0)
            .i64(1)
            .str("p")
            .i32(10)
            .bytes(b"short")
            .0,
        "Logical message is truncated: content needs 10 bytes at offset 16, 5 left",
    );
    check(
        &mut d,
        Msg::new(b'I').u32(ORDERS).u8(b'X').0,
        "Insert for relation public.orders (OID 16384): expected 'N' but found 'X'",
    );
    check(
        &mut d,
        Msg::new(b'I').u32(ORDERS).u8(b'N').i16(4).u8(b'z').0,
        "Insert for relation public.orders: column id has unknown tuple data kind 'z'",
    );
    check(
        &mut d,
        Msg::new(b'I')
            .u32(ORDERS)
            .u8(b'N')
            .i16(4)
            .u8(b't')
            .i32(-5)
            .0,
        "Insert message: column length is negative (-5)",
    );
    check(
        &mut d,
        Msg::new(b'I')
            .u32(ORDERS)
            .u8(b'N')
            .i16(4)
            .u8(b't')
            .i32(i32::MAX)
            .bytes(b"1")
            .0,
        "Insert message is truncated: column value needs 2147483647 bytes at offset 13, 1 left",
    );
    check(
        &mut d,
        Msg::new(b'U').u32(ORDERS).u8(b'K').tuple(&[Col::Text("1"), Col::Null, Col::Null, Col::Null]).u8(b'K').0,
        "Update for relation public.orders (OID 16384): expected 'N' after the old row but found 'K'",
    );
}

/// Every valid message used in these tests.
fn sample_messages() -> Vec<Vec<u8>> {
    vec![
        Msg::new(b'B').i64(1).i64(2).u32(3).0,
        Msg::new(b'C').u8(0).i64(1).i64(2).i64(3).0,
        Msg::new(b'O').i64(1).str("origin").0,
        Msg::new(b'Y').u32(16_500).str("public").str("t").0,
        orders_relation(b'f'),
        insert_orders(&text_row("7", "12.30", "a@x", "n")),
        insert_orders(&[
            Col::Bin(&7i32.to_be_bytes()),
            Col::Bin(&[0, 0, 0, 0, 0, 0, 0, 2]),
            Col::Null,
            Col::Toast,
        ]),
        Msg::new(b'U')
            .u32(ORDERS)
            .u8(b'O')
            .tuple(&text_row("7", "1", "e", "n"))
            .u8(b'N')
            .tuple(&[Col::Text("7"), Col::Null, Col::Null, Col::Toast])
            .0,
        Msg::new(b'U')
            .u32(ORDERS)
            .u8(b'N')
            .tuple(&text_row("7", "1", "e", "n"))
            .0,
        Msg::new(b'D')
            .u32(ORDERS)
            .u8(b'K')
            .tuple(&[Col::Text("7"), Col::Null, Col::Null, Col::Null])
            .0,
        Msg::new(b'T').i32(1).u8(1).u32(ORDERS).0,
        Msg::new(b'M').u8(1).i64(5).str("p").i32(3).bytes(b"abc").0,
    ]
}

#[test]
fn every_truncation_of_every_message_is_an_error() {
    for full in sample_messages() {
        let mut d = decoder_with_orders(b'f');
        assert!(d.decode(&full).is_ok(), "sample must decode: {full:?}");
        for cut in 0..full.len() {
            assert!(
                d.decode(&full[..cut]).is_err(),
                "prefix {cut} of {full:?} decoded"
            );
        }
    }
}

#[test]
fn corrupted_messages_never_panic() {
    // Deterministic xorshift so failures are reproducible.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut errors = 0;
    for full in sample_messages() {
        for _ in 0..2_000 {
            let mut d = decoder_with_orders(b'f');
            let mut bytes = full.clone();
            for _ in 0..=(next() % 3) {
                let i = (next() as usize) % bytes.len();
                bytes[i] = next() as u8;
            }
            if d.decode(&bytes).is_err() {
                errors += 1;
            }
        }
    }
    // Some corruptions still decode (a changed digit), most must not.
    assert!(
        errors > 1_000,
        "only {errors} corrupted messages were rejected"
    );
}
