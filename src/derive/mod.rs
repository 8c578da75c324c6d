//! Derivation: committed row changes → business events and lookup updates.
//!
//! Inputs: decoded [`Message`]s of one transaction, that transaction's
//! [`TxContext`] (commit LSN and time: the clock is passed in, never read),
//! and read access to lookup state as of the previous change ([`Lookup`]).
//! Outputs: [`Effect`]s that the apply loop writes into the open spool batch.
//!
//! Invariants:
//! - Pure: no I/O, no clock, no logging of row values.
//! - Raw PII is normalized and hashed here (see [`identity`]); no effect
//!   carries a raw identifier.
//! - Lookup state is updated in WAL order in the same spool write as the
//!   events, so an event sees customers exactly as committed at its commit
//!   (DESIGN.md §3 "as-of joins").
//! - The same row change always gives the same `event_id`.
//!
//! The rules here target the reference schema in `sql/schema.sql`
//! (`customers`, `orders`). Configurable rules are a later step; the seam is
//! [`Deriver::tables`] and [`Deriver::derive`].

pub mod event;
pub mod identity;

use serde::{Deserialize, Serialize};

pub use event::{BusinessEvent, EventKind};
pub use identity::MetaUserHashes;

use crate::decode::{Message, Relation, Row, Value};
use crate::lsn::Lsn;
use crate::spool::SpoolError;
use identity::{Pii, RawUser};

/// The transaction a change belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxContext {
    /// Commit LSN (Begin's final LSN).
    pub commit_lsn: Lsn,
    /// Commit time, µs since the Unix epoch.
    pub commit_time_us: i64,
}

/// A customer's identity as kept in lookup state: hashes only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CustomerIdentity {
    /// Identifiers normalized and hashed per Meta's rules.
    pub meta: MetaUserHashes,
}

/// Read access to lookup state (the spool, in production).
pub trait Lookup {
    /// The customer's identity as of the current point in the stream.
    fn customer(&self, id: &str) -> Result<Option<CustomerIdentity>, SpoolError>;
}

/// What a change does to the spool.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// A new business event.
    Event(BusinessEvent),
    /// Customer identity changed.
    PutCustomer {
        /// Customer primary key, as text.
        id: String,
        /// The new identity.
        identity: CustomerIdentity,
    },
    /// Customer row deleted.
    DeleteCustomer {
        /// Customer primary key, as text.
        id: String,
    },
    /// Customers table truncated.
    ClearCustomers,
    /// A change that should have produced an event but could not; the
    /// reason names the table and column, never a value.
    Failure {
        /// `schema.table`.
        relation: String,
        /// Why.
        reason: String,
    },
}

/// Applies the built-in rule set.
#[derive(Debug, Clone)]
pub struct Deriver {
    schema: String,
}

impl Default for Deriver {
    fn default() -> Self {
        Deriver {
            schema: "public".into(),
        }
    }
}

/// The reference schema's customers table.
const CUSTOMERS: &str = "customers";
/// The reference schema's orders table.
const ORDERS: &str = "orders";
/// The order status that makes a purchase.
const PAID: &str = "paid";

impl Deriver {
    /// Tables the rules read, qualified (`public.orders`): the publication
    /// must contain exactly these.
    pub fn tables(&self) -> Vec<String> {
        [CUSTOMERS, ORDERS]
            .iter()
            .map(|t| format!("{}.{t}", self.schema))
            .collect()
    }

    /// Columns the snapshot of the customers lookup reads.
    pub fn customer_snapshot_sql(&self) -> String {
        format!(
            "SELECT id::text, email, phone, first_name, last_name, country FROM {}.{CUSTOMERS}",
            self.schema
        )
    }

    /// The lookup effect of one customers row read from the slot's snapshot
    /// (`id, email, phone, first_name, last_name, country` as text), hashed
    /// exactly as a streamed row would be.
    pub fn customer_from_snapshot(&self, fields: &[Option<String>; 6]) -> Option<Effect> {
        let columns = ["id", "email", "phone", "first_name", "last_name", "country"];
        let relation = Relation {
            oid: 0,
            namespace: self.schema.clone(),
            name: CUSTOMERS.into(),
            replica_identity: crate::decode::ReplicaIdentity::Default,
            columns: columns
                .iter()
                .map(|name| crate::decode::Column {
                    name: (*name).into(),
                    type_oid: crate::decode::oid::TEXT,
                    type_modifier: -1,
                    is_key: *name == "id",
                })
                .collect(),
        };
        let row = Row {
            values: fields
                .iter()
                .map(|f| f.clone().map_or(Value::Null, Value::Text))
                .collect(),
        };
        customer_effect(&relation, None, &row)
    }

    /// Derives the effects of one decoded message.
    pub fn derive(
        &self,
        tx: &TxContext,
        message: &Message,
        lookup: &dyn Lookup,
    ) -> Result<Vec<Effect>, SpoolError> {
        match message {
            Message::Insert { relation, new } => self.row(tx, relation, None, new, lookup),
            Message::Update { relation, new, .. } => {
                let old = if self.is(relation, CUSTOMERS) {
                    let id = key_text(relation, new);
                    match id {
                        Some(id) => lookup.customer(&id)?,
                        None => None,
                    }
                } else {
                    None
                };
                self.row(tx, relation, old, new, lookup)
            }
            Message::Delete { relation, old } if self.is(relation, CUSTOMERS) => {
                Ok(key_text(relation, old.row())
                    .map(|id| vec![Effect::DeleteCustomer { id }])
                    .unwrap_or_default())
            }
            Message::Truncate { relations, .. }
                if relations.iter().any(|r| self.is(r, CUSTOMERS)) =>
            {
                Ok(vec![Effect::ClearCustomers])
            }
            _ => Ok(Vec::new()),
        }
    }

    fn is(&self, relation: &Relation, table: &str) -> bool {
        relation.name == table && relation.namespace == self.schema
    }

    fn row(
        &self,
        tx: &TxContext,
        relation: &Relation,
        previous: Option<CustomerIdentity>,
        new: &Row,
        lookup: &dyn Lookup,
    ) -> Result<Vec<Effect>, SpoolError> {
        if self.is(relation, CUSTOMERS) {
            Ok(customer_effect(relation, previous, new)
                .into_iter()
                .collect())
        } else if self.is(relation, ORDERS) {
            purchase(tx, relation, new, lookup)
        } else {
            Ok(Vec::new())
        }
    }
}

/// The primary-key column `id` as text.
fn key_text(relation: &Relation, row: &Row) -> Option<String> {
    match row.get(relation, "id")? {
        Value::Int2(v) => Some(v.to_string()),
        Value::Int4(v) => Some(v.to_string()),
        Value::Int8(v) => Some(v.to_string()),
        Value::Text(s) => Some(s.clone()),
        Value::Numeric(s) => Some(s.clone()),
        Value::Uuid(b) => Some(uuid_text(b)),
        _ => None,
    }
}

fn uuid_text(b: &[u8; 16]) -> String {
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

/// What one text column holds in a row: a value, nothing, or "unchanged".
enum Field {
    Text(String),
    Absent,
    Unchanged,
}

fn text_field(relation: &Relation, row: &Row, column: &str) -> Field {
    match row.get(relation, column) {
        Some(Value::UnchangedToast) => Field::Unchanged,
        Some(Value::Text(s)) if !s.trim().is_empty() => Field::Text(s.clone()),
        _ => Field::Absent,
    }
}

/// Hashes a customers row. Columns left unchanged (TOAST) keep the hash
/// stored for them; nothing is invented.
fn customer_effect(
    relation: &Relation,
    previous: Option<CustomerIdentity>,
    row: &Row,
) -> Option<Effect> {
    let id = key_text(relation, row)?;
    let previous = previous.unwrap_or_default().meta;
    let get = |c: &str| text_field(relation, row, c);
    let country = get("country");
    let country_hint = match &country {
        Field::Text(c) => Some(c.clone()),
        _ => None,
    };
    let raw = RawUser {
        email: pii(&get("email")),
        phone: pii(&get("phone")),
        first_name: pii(&get("first_name")),
        last_name: pii(&get("last_name")),
        country: pii(&country),
        external_id: Some(Pii::new(id.clone())),
        ..RawUser::default()
    };
    let mut meta = identity::hash_user(&raw, country_hint.as_deref());
    let keep =
        |f: Field, now: &mut Option<identity::Sha256Hex>, old: &Option<identity::Sha256Hex>| {
            if matches!(f, Field::Unchanged) {
                now.clone_from(old);
            }
        };
    keep(get("email"), &mut meta.em, &previous.em);
    keep(get("phone"), &mut meta.ph, &previous.ph);
    keep(get("first_name"), &mut meta.fn_, &previous.fn_);
    keep(get("last_name"), &mut meta.ln, &previous.ln);
    keep(country, &mut meta.country, &previous.country);
    Some(Effect::PutCustomer {
        id,
        identity: CustomerIdentity { meta },
    })
}

fn pii(field: &Field) -> Option<Pii> {
    match field {
        Field::Text(s) => Some(Pii::new(s.clone())),
        _ => None,
    }
}

/// `orders` row → `transaction.purchase` when its status is `paid`.
fn purchase(
    tx: &TxContext,
    relation: &Relation,
    row: &Row,
    lookup: &dyn Lookup,
) -> Result<Vec<Effect>, SpoolError> {
    let is_paid = matches!(row.get(relation, "status"), Some(Value::Text(s)) if s.trim() == PAID);
    if !is_paid {
        return Ok(Vec::new());
    }
    let table = format!("{}.{}", relation.namespace, relation.name);
    let fail = |reason: String| {
        Ok(vec![Effect::Failure {
            relation: table.clone(),
            reason,
        }])
    };
    let Some(order_id) = key_text(relation, row) else {
        return fail(format!("{table}.id is missing or NULL on a paid order"));
    };
    let value = match row.get(relation, "total") {
        Some(v) => match v.as_decimal() {
            Some(d) if is_json_number(&d) => d.into_owned(),
            _ => {
                return fail(format!(
                    "{table}.total of order {order_id} is NULL, unchanged or not a finite number: a purchase needs a value"
                ))
            }
        },
        None => return fail(format!("{table} has no column total")),
    };
    let currency = match row.get(relation, "currency") {
        Some(Value::Text(c))
            if c.trim().len() == 3 && c.trim().chars().all(|x| x.is_ascii_alphabetic()) =>
        {
            c.trim().to_ascii_uppercase()
        }
        _ => {
            return fail(format!(
                "{table}.currency of order {order_id} is not a 3-letter ISO 4217 code"
            ))
        }
    };
    // The business time, but never after the commit: a paid_at in the
    // future is bad data, and platforms reject events from the future.
    let event_time_us = row
        .get(relation, "paid_at")
        .and_then(Value::as_timestamp_us)
        .map_or(tx.commit_time_us, |t| t.min(tx.commit_time_us));
    let customer_id = match row.get(relation, "customer_id") {
        Some(Value::Int2(v)) => Some(v.to_string()),
        Some(Value::Int4(v)) => Some(v.to_string()),
        Some(Value::Int8(v)) => Some(v.to_string()),
        Some(Value::Text(s)) => Some(s.clone()),
        Some(Value::Uuid(b)) => Some(uuid_text(b)),
        _ => None,
    };
    let meta_user = match &customer_id {
        Some(id) => match lookup.customer(id)? {
            Some(identity) => identity.meta,
            // Not in lookup state (yet): still identify by external_id.
            None => identity::hash_user(
                &RawUser {
                    external_id: Some(Pii::new(id.clone())),
                    ..RawUser::default()
                },
                None,
            ),
        },
        None => MetaUserHashes::default(),
    };
    Ok(vec![Effect::Event(BusinessEvent {
        event_id: format!("purchase-{order_id}"),
        kind: EventKind::Purchase,
        event_time_s: event_time_us.div_euclid(1_000_000),
        commit_lsn: tx.commit_lsn,
        value: Some(value),
        currency: Some(currency),
        order_id: Some(order_id),
        meta_user,
    })])
}

/// PostgreSQL's numeric text is a JSON number unless it is NaN or ±Infinity.
fn is_json_number(text: &str) -> bool {
    let t = text.strip_prefix('-').unwrap_or(text);
    !t.is_empty()
        && t.bytes().all(|c| c.is_ascii_digit() || c == b'.')
        && t.bytes().next().is_some_and(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::*;
    use crate::decode::{oid, Column, OldRow, ReplicaIdentity};

    #[derive(Default)]
    struct Mem(RefCell<HashMap<String, CustomerIdentity>>);

    impl Lookup for Mem {
        fn customer(&self, id: &str) -> Result<Option<CustomerIdentity>, SpoolError> {
            Ok(self.0.borrow().get(id).cloned())
        }
    }

    impl Mem {
        /// Applies lookup effects the way the spool writer would.
        fn apply(&self, effects: &[Effect]) {
            for e in effects {
                match e {
                    Effect::PutCustomer { id, identity } => {
                        self.0.borrow_mut().insert(id.clone(), identity.clone());
                    }
                    Effect::DeleteCustomer { id } => {
                        self.0.borrow_mut().remove(id);
                    }
                    _ => {}
                }
            }
        }
    }

    fn relation(name: &str, columns: &[(&str, u32)]) -> Arc<Relation> {
        Arc::new(Relation {
            oid: 1,
            namespace: "public".into(),
            name: name.into(),
            replica_identity: ReplicaIdentity::Default,
            columns: columns
                .iter()
                .map(|(n, t)| Column {
                    name: (*n).into(),
                    type_oid: *t,
                    type_modifier: -1,
                    is_key: *n == "id",
                })
                .collect(),
        })
    }

    fn customers() -> Arc<Relation> {
        relation(
            "customers",
            &[
                ("id", oid::INT8),
                ("email", oid::TEXT),
                ("phone", oid::TEXT),
                ("first_name", oid::TEXT),
                ("last_name", oid::TEXT),
                ("country", oid::TEXT),
            ],
        )
    }

    fn orders() -> Arc<Relation> {
        relation(
            "orders",
            &[
                ("id", oid::INT8),
                ("customer_id", oid::INT8),
                ("status", oid::TEXT),
                ("total", oid::NUMERIC),
                ("currency", oid::BPCHAR),
                ("paid_at", oid::TIMESTAMPTZ),
            ],
        )
    }

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    const TX: TxContext = TxContext {
        commit_lsn: Lsn(0x100),
        commit_time_us: 1_700_000_000_000_000,
    };

    fn order(status: &str, total: Value, paid_at: Value) -> Message {
        Message::Insert {
            relation: orders(),
            new: Row {
                values: vec![
                    Value::Int8(7),
                    Value::Int8(1),
                    text(status),
                    total,
                    text("usd"),
                    paid_at,
                ],
            },
        }
    }

    #[test]
    fn a_paid_order_becomes_one_purchase_with_the_customer_as_of_now() {
        let d = Deriver::default();
        let mem = Mem::default();
        let customer = Message::Insert {
            relation: customers(),
            new: Row {
                values: vec![
                    Value::Int8(1),
                    text("John_Smith@gmail.com"),
                    text("(650)555-1212"),
                    text("John"),
                    text("Smith"),
                    text("US"),
                ],
            },
        };
        let effects = d.derive(&TX, &customer, &mem).unwrap();
        mem.apply(&effects);
        let paid_at = 1_699_999_000_000_000;
        let effects = d
            .derive(
                &TX,
                &order(
                    "paid",
                    Value::Numeric("12.30".into()),
                    Value::Timestamptz(paid_at),
                ),
                &mem,
            )
            .unwrap();
        let [Effect::Event(ev)] = effects.as_slice() else {
            panic!("{effects:?}")
        };
        assert_eq!(ev.event_id, "purchase-7");
        assert_eq!(ev.value.as_deref(), Some("12.30"));
        assert_eq!(ev.currency.as_deref(), Some("USD"));
        assert_eq!(ev.event_time_s, 1_699_999_000);
        assert_eq!(ev.commit_lsn, Lsn(0x100));
        assert_eq!(
            ev.meta_user.em.as_ref().unwrap().as_str(),
            "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"
        );
        // Without paid_at, the commit time is the business time.
        let effects = d
            .derive(
                &TX,
                &order("paid", Value::Numeric("1".into()), Value::Null),
                &mem,
            )
            .unwrap();
        let [Effect::Event(ev)] = effects.as_slice() else {
            panic!("{effects:?}")
        };
        assert_eq!(ev.event_time_s, 1_700_000_000);
        // A paid_at after the commit is clamped to the commit time.
        let future = Value::Timestamptz(1_800_000_000_000_000);
        let effects = d
            .derive(
                &TX,
                &order("paid", Value::Numeric("1".into()), future),
                &mem,
            )
            .unwrap();
        let [Effect::Event(ev)] = effects.as_slice() else {
            panic!("{effects:?}")
        };
        assert_eq!(ev.event_time_s, 1_700_000_000);
    }

    #[test]
    fn unpaid_orders_and_other_tables_derive_nothing() {
        let d = Deriver::default();
        let mem = Mem::default();
        assert!(d
            .derive(
                &TX,
                &order("pending", Value::Numeric("1".into()), Value::Null),
                &mem
            )
            .unwrap()
            .is_empty());
        let other = Message::Insert {
            relation: relation("carts", &[("id", oid::INT8), ("status", oid::TEXT)]),
            new: Row {
                values: vec![Value::Int8(1), text("paid")],
            },
        };
        assert!(d.derive(&TX, &other, &mem).unwrap().is_empty());
    }

    #[test]
    fn a_paid_order_without_a_value_is_a_failure_naming_the_column_not_the_data() {
        let d = Deriver::default();
        let effects = d
            .derive(
                &TX,
                &order("paid", Value::Null, Value::Null),
                &Mem::default(),
            )
            .unwrap();
        let [Effect::Failure { relation, reason }] = effects.as_slice() else {
            panic!("{effects:?}")
        };
        assert_eq!(relation, "public.orders");
        assert!(reason.contains("public.orders.total"), "{reason}");
        let effects = d
            .derive(
                &TX,
                &order("paid", Value::Numeric("NaN".into()), Value::Null),
                &Mem::default(),
            )
            .unwrap();
        assert!(matches!(effects.as_slice(), [Effect::Failure { .. }]));
    }

    #[test]
    fn unchanged_toast_keeps_the_stored_hash_and_never_invents_one() {
        let d = Deriver::default();
        let mem = Mem::default();
        let insert = Message::Insert {
            relation: customers(),
            new: Row {
                values: vec![
                    Value::Int8(1),
                    text("a@example.com"),
                    Value::Null,
                    Value::Null,
                    Value::Null,
                    text("US"),
                ],
            },
        };
        mem.apply(&d.derive(&TX, &insert, &mem).unwrap());
        let before = mem.customer("1").unwrap().unwrap();
        let update = Message::Update {
            relation: customers(),
            old: None,
            new: Row {
                values: vec![
                    Value::Int8(1),
                    Value::UnchangedToast,
                    text("+1 650 555 1212"),
                    Value::UnchangedToast,
                    Value::Null,
                    text("US"),
                ],
            },
        };
        mem.apply(&d.derive(&TX, &update, &mem).unwrap());
        let after = mem.customer("1").unwrap().unwrap();
        assert_eq!(
            after.meta.em, before.meta.em,
            "unchanged email must keep its hash"
        );
        assert!(after.meta.ph.is_some());
        assert!(
            after.meta.fn_.is_none(),
            "nothing invented for an unchanged, never-seen column"
        );
        let delete = Message::Delete {
            relation: customers(),
            old: OldRow::Key(Row {
                values: vec![
                    Value::Int8(1),
                    Value::Null,
                    Value::Null,
                    Value::Null,
                    Value::Null,
                    Value::Null,
                ],
            }),
        };
        mem.apply(&d.derive(&TX, &delete, &mem).unwrap());
        assert!(mem.customer("1").unwrap().is_none());
    }

    #[test]
    fn snapshot_rows_hash_like_streamed_rows() {
        let d = Deriver::default();
        let fields = [
            Some("5".to_owned()),
            Some("Mary@Example.com".to_owned()),
            Some("07700 900123".to_owned()),
            Some("Mary".to_owned()),
            None,
            Some("GB".to_owned()),
        ];
        let Some(Effect::PutCustomer { id, identity: snap }) = d.customer_from_snapshot(&fields)
        else {
            panic!("no customer")
        };
        let streamed = Message::Insert {
            relation: customers(),
            new: Row {
                values: vec![
                    Value::Int8(5),
                    text("Mary@Example.com"),
                    text("07700 900123"),
                    text("Mary"),
                    Value::Null,
                    text("GB"),
                ],
            },
        };
        let effects = d.derive(&TX, &streamed, &Mem::default()).unwrap();
        assert_eq!(id, "5");
        assert_eq!(
            effects,
            vec![Effect::PutCustomer {
                id: "5".into(),
                identity: snap
            }]
        );
    }
}
