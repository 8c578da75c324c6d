//! End-to-end tests of [`Decoder`]: hand-built pgoutput v1 messages for
//! every tag, TOAST handling, relation changes mid-stream (`changes.rs`),
//! and malformed input, which must give errors, never panics
//! (`malformed.rs`). This file holds the message builders they share.

mod changes;
mod malformed;

use super::*;

pub(super) const ORDERS: u32 = 16_384;
pub(super) const ITEMS: u32 = 16_390;
/// 2000-01-01 (PostgreSQL epoch) in µs since the UNIX epoch.
pub(super) const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// Builds one pgoutput message.
pub(super) struct Msg(pub(super) Vec<u8>);

impl Msg {
    pub(super) fn new(tag: u8) -> Self {
        Msg(vec![tag])
    }
    pub(super) fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    pub(super) fn i16(mut self, v: i16) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(super) fn i32(mut self, v: i32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(super) fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(super) fn i64(mut self, v: i64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(super) fn bytes(mut self, v: &[u8]) -> Self {
        self.0.extend_from_slice(v);
        self
    }
    pub(super) fn str(self, v: &str) -> Self {
        self.bytes(v.as_bytes()).u8(0)
    }
    /// TupleData: Int16 count, then per column a kind and maybe a value.
    pub(super) fn tuple(self, cols: &[Col<'_>]) -> Self {
        let mut m = self.i16(cols.len() as i16);
        for col in cols {
            m = match col {
                Col::Null => m.u8(b'n'),
                Col::Toast => m.u8(b'u'),
                Col::Text(s) => m.u8(b't').i32(s.len() as i32).bytes(s.as_bytes()),
                Col::Bin(b) => m.u8(b'b').i32(b.len() as i32).bytes(b),
            };
        }
        m
    }
}

pub(super) enum Col<'a> {
    Null,
    Toast,
    Text(&'a str),
    Bin(&'a [u8]),
}

/// `R` for public.orders: id int4 (key), total numeric, email text, note text.
pub(super) fn orders_relation(ident: u8) -> Vec<u8> {
    relation(
        ORDERS,
        "public",
        "orders",
        ident,
        &[
            (1, "id", oid::INT4, -1),
            (0, "total", oid::NUMERIC, 655_366),
            (0, "email", oid::TEXT, -1),
            (0, "note", oid::TEXT, -1),
        ],
    )
}

pub(super) fn relation(
    rel_oid: u32,
    ns: &str,
    name: &str,
    ident: u8,
    cols: &[(u8, &str, u32, i32)],
) -> Vec<u8> {
    let mut m = Msg::new(b'R')
        .u32(rel_oid)
        .str(ns)
        .str(name)
        .u8(ident)
        .i16(cols.len() as i16);
    for (flags, col, type_oid, typmod) in cols {
        m = m.u8(*flags).str(col).u32(*type_oid).i32(*typmod);
    }
    m.0
}

pub(super) fn decoder_with_orders(ident: u8) -> Decoder {
    let mut d = Decoder::new();
    d.decode(&orders_relation(ident)).unwrap();
    d
}

pub(super) fn insert_orders(cols: &[Col<'_>]) -> Vec<u8> {
    Msg::new(b'I').u32(ORDERS).u8(b'N').tuple(cols).0
}

pub(super) fn text_row(id: &str, total: &str, email: &str, note: &str) -> Vec<Col<'static>> {
    // Leak is fine in tests: keeps the helper signature simple.
    let s = |v: &str| -> &'static str { Box::leak(v.to_owned().into_boxed_str()) };
    vec![
        Col::Text(s(id)),
        Col::Text(s(total)),
        Col::Text(s(email)),
        Col::Text(s(note)),
    ]
}
