//! Decoding every message kind, TOAST handling and relation changes.

use super::*;
use serde_json::json;

#[test]
fn begin_and_commit() {
    let mut d = Decoder::new();
    let begin = Msg::new(b'B').i64(0x16_B374_D848).i64(1_000_000).u32(742).0;
    let msg = d.decode(&begin).unwrap();
    assert_eq!(
        msg,
        Message::Begin {
            final_lsn: Lsn(0x16_B374_D848),
            commit_time_us: PG_EPOCH_US + 1_000_000,
            xid: 742
        }
    );
    assert_eq!(
        msg.to_json(),
        json!({"op": "begin", "final_lsn": "16/B374D848", "commit_time": "2000-01-01T00:00:01Z", "xid": 742})
    );

    let commit = Msg::new(b'C').u8(0).i64(0x10).i64(0x1_0000_0020).i64(-1).0;
    let msg = d.decode(&commit).unwrap();
    assert_eq!(
        msg,
        Message::Commit {
            commit_lsn: Lsn(0x10),
            end_lsn: Lsn(0x1_0000_0020),
            commit_time_us: PG_EPOCH_US - 1
        }
    );
    assert_eq!(
        msg.to_json(),
        json!({"op": "commit", "commit_lsn": "0/10", "end_lsn": "1/20", "commit_time": "1999-12-31T23:59:59.999999Z"})
    );
}

#[test]
fn origin_and_type() {
    let mut d = Decoder::new();
    let origin = Msg::new(b'O').i64(0x2A).str("pg_16400").0;
    let msg = d.decode(&origin).unwrap();
    assert_eq!(
        msg,
        Message::Origin {
            commit_lsn: Lsn(0x2A),
            name: "pg_16400".into()
        }
    );
    assert_eq!(msg.to_json()["commit_lsn"], "0/2A");

    let ty = Msg::new(b'Y')
        .u32(16_500)
        .str("public")
        .str("order_status")
        .0;
    assert_eq!(
        d.decode(&ty).unwrap(),
        Message::Type {
            oid: 16_500,
            namespace: "public".into(),
            name: "order_status".into()
        }
    );
    let builtin_ns = Msg::new(b'Y').u32(16_501).str("").str("t").0;
    assert!(
        matches!(d.decode(&builtin_ns).unwrap(), Message::Type { namespace, .. } if namespace == "pg_catalog")
    );
}

#[test]
fn relation_message_fills_cache() {
    let mut d = Decoder::new();
    assert!(d.relation(ORDERS).is_none());
    let Message::Relation(rel) = d.decode(&orders_relation(b'd')).unwrap() else {
        panic!("expected a Relation message");
    };
    assert_eq!(rel.oid, ORDERS);
    assert_eq!(rel.qualified_name(), "public.orders");
    assert_eq!(rel.replica_identity, ReplicaIdentity::Default);
    assert_eq!(rel.columns.len(), 4);
    assert_eq!(
        rel.columns[1],
        Column {
            name: "total".into(),
            type_oid: oid::NUMERIC,
            type_modifier: 655_366,
            is_key: false
        }
    );
    assert!(rel.columns[0].is_key);
    assert!(Arc::ptr_eq(d.relation(ORDERS).unwrap(), &rel));
    assert_eq!(d.relations().len(), 1);
    let j = Message::Relation(rel).to_json();
    assert_eq!(j["op"], "relation");
    assert_eq!(j["table"], "public.orders");
    assert_eq!(j["replica_identity"], "default");
    assert_eq!(
        j["columns"][0],
        json!({"name": "id", "type_oid": 23, "type_modifier": -1, "key": true})
    );

    let catalog = relation(1259, "", "pg_class", b'n', &[]);
    let Message::Relation(rel) = d.decode(&catalog).unwrap() else {
        panic!()
    };
    assert_eq!(rel.qualified_name(), "pg_catalog.pg_class");
    assert_eq!(rel.replica_identity, ReplicaIdentity::Nothing);
}

#[test]
fn insert_text_values() {
    let mut d = decoder_with_orders(b'd');
    let msg = d
        .decode(&insert_orders(&[
            Col::Text("7"),
            Col::Text("12.30"),
            Col::Null,
            Col::Text("hi"),
        ]))
        .unwrap();
    let Message::Insert { relation, new } = &msg else {
        panic!("{msg:?}")
    };
    assert_eq!(
        new.values,
        vec![
            Value::Int4(7),
            Value::Numeric("12.30".into()),
            Value::Null,
            Value::Text("hi".into())
        ]
    );
    assert_eq!(
        new.get(relation, "total"),
        Some(&Value::Numeric("12.30".into()))
    );
    assert_eq!(new.get(relation, "email"), Some(&Value::Null));
    assert_eq!(new.get(relation, "missing"), None);
    assert_eq!(
        msg.to_json(),
        json!({"op": "insert", "table": "public.orders",
               "new": {"id": 7, "total": "12.30", "email": null, "note": "hi"}})
    );
}

#[test]
fn insert_binary_values() {
    let mut d = decoder_with_orders(b'd');
    // numeric -1.5: ndigits 2, weight 0, sign NEG, dscale 1, digits 1, 5000
    let numeric = [0, 2, 0, 0, 0x40, 0, 0, 1, 0, 1, 0x13, 0x88];
    let msg = d
        .decode(&insert_orders(&[
            Col::Bin(&9i32.to_be_bytes()),
            Col::Bin(&numeric),
            Col::Bin(b"a@example.com"),
            Col::Bin(b""),
        ]))
        .unwrap();
    let Message::Insert { new, .. } = msg else {
        panic!()
    };
    assert_eq!(
        new.values,
        vec![
            Value::Int4(9),
            Value::Numeric("-1.5".into()),
            Value::Text("a@example.com".into()),
            Value::Text(String::new())
        ]
    );
}

#[test]
fn update_without_old_row_keeps_unchanged_toast() {
    let mut d = decoder_with_orders(b'd');
    let upd = Msg::new(b'U')
        .u32(ORDERS)
        .u8(b'N')
        .tuple(&[Col::Text("7"), Col::Text("1"), Col::Null, Col::Toast])
        .0;
    let msg = d.decode(&upd).unwrap();
    let Message::Update { old, new, .. } = &msg else {
        panic!()
    };
    assert!(old.is_none());
    assert_eq!(new.values[3], Value::UnchangedToast);
    let j = msg.to_json();
    assert_eq!(j["op"], "update");
    assert_eq!(j["new"]["note"], json!({"unchanged_toast": true}));
    assert!(j.get("old").is_none() && j.get("old_key").is_none());
}

#[test]
fn update_with_old_key() {
    let mut d = decoder_with_orders(b'd');
    let upd = Msg::new(b'U')
        .u32(ORDERS)
        .u8(b'K')
        .tuple(&[Col::Text("7"), Col::Null, Col::Null, Col::Null])
        .u8(b'N')
        .tuple(&[Col::Text("8"), Col::Text("1"), Col::Null, Col::Toast])
        .0;
    let msg = d.decode(&upd).unwrap();
    let Message::Update {
        old: Some(OldRow::Key(key)),
        new,
        ..
    } = &msg
    else {
        panic!("{msg:?}")
    };
    assert_eq!(key.values[0], Value::Int4(7));
    // A key image holds no real values for other columns: never fill from it.
    assert_eq!(new.values[3], Value::UnchangedToast);
    let j = msg.to_json();
    assert_eq!(j["old_key"], json!({"id": 7}));
    assert_eq!(j["new"]["id"], 8);
}

#[test]
fn update_with_full_old_row_fills_unchanged_toast() {
    let mut d = decoder_with_orders(b'f');
    let upd = Msg::new(b'U')
        .u32(ORDERS)
        .u8(b'O')
        .tuple(&text_row("7", "1.00", "a@x", "long note"))
        .u8(b'N')
        .tuple(&[Col::Text("7"), Col::Text("2.00"), Col::Null, Col::Toast])
        .0;
    let msg = d.decode(&upd).unwrap();
    let Message::Update {
        relation,
        old: Some(OldRow::Full(old)),
        new,
    } = &msg
    else {
        panic!("{msg:?}")
    };
    assert_eq!(relation.replica_identity, ReplicaIdentity::Full);
    assert_eq!(
        old.get(relation, "total"),
        Some(&Value::Numeric("1.00".into()))
    );
    assert_eq!(
        new.get(relation, "note"),
        Some(&Value::Text("long note".into()))
    );
    // A NULL in the new row is a real change, not filled.
    assert_eq!(new.get(relation, "email"), Some(&Value::Null));
    let j = msg.to_json();
    assert_eq!(j["old"]["note"], "long note");
    assert_eq!(j["new"]["total"], "2.00");
}

#[test]
fn update_full_old_row_that_is_itself_unchanged_stays_unchanged() {
    let mut d = decoder_with_orders(b'f');
    let upd = Msg::new(b'U')
        .u32(ORDERS)
        .u8(b'O')
        .tuple(&[Col::Text("7"), Col::Null, Col::Null, Col::Toast])
        .u8(b'N')
        .tuple(&[Col::Text("7"), Col::Null, Col::Null, Col::Toast])
        .0;
    let Message::Update { new, .. } = d.decode(&upd).unwrap() else {
        panic!()
    };
    assert_eq!(new.values[3], Value::UnchangedToast);
}

#[test]
fn delete_key_and_full() {
    let mut d = decoder_with_orders(b'd');
    let del = Msg::new(b'D')
        .u32(ORDERS)
        .u8(b'K')
        .tuple(&[Col::Text("7"), Col::Null, Col::Null, Col::Null])
        .0;
    let msg = d.decode(&del).unwrap();
    assert!(
        matches!(&msg, Message::Delete { old: OldRow::Key(row), .. } if row.values[0] == Value::Int4(7))
    );
    assert_eq!(
        msg.to_json(),
        json!({"op": "delete", "table": "public.orders", "old_key": {"id": 7}})
    );

    let del = Msg::new(b'D')
        .u32(ORDERS)
        .u8(b'O')
        .tuple(&text_row("7", "0.5", "e", "n"))
        .0;
    let msg = d.decode(&del).unwrap();
    let Message::Delete { old, .. } = &msg else {
        panic!()
    };
    assert_eq!(old.row().values[1], Value::Numeric("0.5".into()));
    assert_eq!(msg.to_json()["old"]["email"], "e");

    let bad = Msg::new(b'D')
        .u32(ORDERS)
        .u8(b'N')
        .tuple(&text_row("7", "0", "e", "n"))
        .0;
    let err = d.decode(&bad).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Delete for relation public.orders (OID 16384): expected 'K' or 'O' but found 'N'"
    );
}

#[test]
fn truncate() {
    let mut d = decoder_with_orders(b'd');
    d.decode(&relation(
        ITEMS,
        "public",
        "items",
        b'd',
        &[(1, "id", oid::INT8, -1)],
    ))
    .unwrap();
    let t = Msg::new(b'T').i32(2).u8(3).u32(ORDERS).u32(ITEMS).0;
    let msg = d.decode(&t).unwrap();
    let Message::Truncate {
        relations,
        cascade,
        restart_identity,
    } = &msg
    else {
        panic!()
    };
    assert_eq!(
        relations.iter().map(|r| r.oid).collect::<Vec<_>>(),
        vec![ORDERS, ITEMS]
    );
    assert!(*cascade && *restart_identity);
    assert_eq!(
        msg.to_json(),
        json!({"op": "truncate", "tables": ["public.orders", "public.items"], "cascade": true, "restart_identity": true})
    );
    let t = Msg::new(b'T').i32(1).u8(0).u32(ORDERS).0;
    assert!(matches!(
        d.decode(&t).unwrap(),
        Message::Truncate {
            cascade: false,
            restart_identity: false,
            ..
        }
    ));
    let unknown = Msg::new(b'T').i32(1).u8(0).u32(99).0;
    assert_eq!(
        d.decode(&unknown).unwrap_err().to_string(),
        "Truncate for relation OID 99 that no Relation message described"
    );
}

#[test]
fn logical_messages() {
    let mut d = Decoder::new();
    let m = Msg::new(b'M')
        .u8(1)
        .i64(0x30)
        .str("capi-cdc.heartbeat")
        .i32(2)
        .bytes(b"hi")
        .0;
    let msg = d.decode(&m).unwrap();
    assert_eq!(
        msg,
        Message::LogicalMessage {
            transactional: true,
            lsn: Lsn(0x30),
            prefix: "capi-cdc.heartbeat".into(),
            content: b"hi".to_vec()
        }
    );
    assert_eq!(
        msg.to_json(),
        json!({"op": "message", "transactional": true, "lsn": "0/30", "prefix": "capi-cdc.heartbeat", "content": "hi"})
    );
    let m = Msg::new(b'M')
        .u8(0)
        .i64(1)
        .str("p")
        .i32(2)
        .bytes(&[0xff, 0x00])
        .0;
    let msg = d.decode(&m).unwrap();
    assert!(matches!(
        &msg,
        Message::LogicalMessage {
            transactional: false,
            ..
        }
    ));
    assert_eq!(msg.to_json()["content_hex"], "\\xff00");
}

#[test]
fn relation_resent_with_extra_column() {
    let mut d = Decoder::new();
    let two = |extra: bool| {
        let mut cols = vec![(1, "id", oid::INT4, -1), (0, "total", oid::NUMERIC, -1)];
        if extra {
            cols.push((0, "currency", oid::BPCHAR, 7));
        }
        relation(ORDERS, "public", "orders", b'd', &cols)
    };
    d.decode(&two(false)).unwrap();
    let before = d
        .decode(
            &Msg::new(b'I')
                .u32(ORDERS)
                .u8(b'N')
                .tuple(&[Col::Text("1"), Col::Text("5")])
                .0,
        )
        .unwrap();

    // ALTER TABLE orders ADD COLUMN currency char(3): a new R arrives first.
    d.decode(&two(true)).unwrap();
    let after = d
        .decode(
            &Msg::new(b'I')
                .u32(ORDERS)
                .u8(b'N')
                .tuple(&[Col::Text("2"), Col::Text("6"), Col::Text("EUR")])
                .0,
        )
        .unwrap();
    let Message::Insert { relation, new } = &after else {
        panic!()
    };
    assert_eq!(
        new.get(relation, "currency"),
        Some(&Value::Text("EUR".into()))
    );
    // The earlier row still refers to the shape it was decoded with.
    assert_eq!(before.relation().unwrap().columns.len(), 2);
    assert_eq!(d.relation(ORDERS).unwrap().columns.len(), 3);

    // A row in the old shape no longer fits: an error naming both counts.
    let stale = Msg::new(b'I')
        .u32(ORDERS)
        .u8(b'N')
        .tuple(&[Col::Text("3"), Col::Text("7")])
        .0;
    assert_eq!(
        d.decode(&stale).unwrap_err().to_string(),
        "Insert for relation public.orders (OID 16384): tuple has 2 columns but the Relation message announced 3"
    );
}
