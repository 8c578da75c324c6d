//! Derivation over an in-memory lookup store that applies effects the way
//! the spool writer does: the default rules on the reference schema's rows.

use std::cell::RefCell;
use std::sync::Arc;

use super::*;
use crate::decode::{oid, Column, ReplicaIdentity, Value};
use crate::event::{GoogleClickId, Signal};

/// Lookup rows `(lookup, pk, key, entry)` and rule state, in memory.
#[derive(Default)]
struct Mem {
    rows: RefCell<Vec<(String, String, String, Entry)>>,
    held: RefCell<Vec<(String, String)>>,
    notes: RefCell<Vec<String>>,
}

impl Lookup for Mem {
    fn by_pk(&self, lookup: &str, pk: &str) -> Result<Option<Entry>, LookupError> {
        Ok(self
            .rows
            .borrow()
            .iter()
            .find(|r| r.0 == lookup && r.1 == pk)
            .map(|r| r.3.clone()))
    }
    fn latest(&self, lookup: &str, key: &str) -> Result<Option<Entry>, LookupError> {
        Ok(self
            .rows
            .borrow()
            .iter()
            .filter(|r| r.0 == lookup && r.2 == key)
            .max_by_key(|r| r.3.updated_us)
            .map(|r| r.3.clone()))
    }
    fn all(&self, lookup: &str, key: &str) -> Result<Vec<Entry>, LookupError> {
        let mut v: Vec<_> = self
            .rows
            .borrow()
            .iter()
            .filter(|r| r.0 == lookup && r.2 == key)
            .cloned()
            .collect();
        v.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(v.into_iter().map(|r| r.3).collect())
    }
    fn rule_held(&self, rule: &str, pk: &str) -> Result<bool, LookupError> {
        Ok(self.held.borrow().iter().any(|(r, p)| r == rule && p == pk))
    }
}

impl Mem {
    fn apply(&self, effect: &Effect) {
        match effect {
            Effect::PutLookup {
                lookup,
                pk,
                key,
                entry,
            } => {
                let mut rows = self.rows.borrow_mut();
                rows.retain(|r| !(r.0 == *lookup && r.1 == *pk));
                rows.push((lookup.clone(), pk.clone(), key.clone(), entry.clone()));
            }
            Effect::DeleteLookup { lookup, pk } => self
                .rows
                .borrow_mut()
                .retain(|r| !(r.0 == *lookup && r.1 == *pk)),
            Effect::ClearLookup { lookup } => self.rows.borrow_mut().retain(|r| r.0 != *lookup),
            Effect::RuleHeld { rule, pk, held } => {
                let mut h = self.held.borrow_mut();
                h.retain(|(r, p)| !(r == rule && p == pk));
                if *held {
                    h.push((rule.clone(), pk.clone()));
                }
            }
            Effect::Note(n) => self.notes.borrow_mut().push(n.reason.clone()),
            _ => {}
        }
    }
}

/// Runs transactions of messages and returns the events each produced.
struct Harness {
    d: Deriver,
    mem: Mem,
    t_us: i64,
}

const T0: i64 = 1_760_000_000_000_000;

impl Harness {
    fn new() -> Harness {
        Harness {
            d: Deriver::reference(),
            mem: Mem::default(),
            t_us: T0,
        }
    }

    /// One transaction committing a second after the previous one.
    fn tx(&mut self, messages: Vec<Message>) -> Vec<BusinessEvent> {
        self.t_us += 1_000_000;
        let tx = TxContext {
            commit_lsn: Lsn(self.t_us as u64),
            commit_time_us: self.t_us,
        };
        let mut drafts = Vec::new();
        for m in &messages {
            for e in self.d.change(&tx, m, &self.mem).unwrap() {
                match e {
                    Effect::Draft(d) => drafts.push(d),
                    other => self.mem.apply(&other),
                }
            }
        }
        let mut events = Vec::new();
        for e in self.d.finish(&tx, drafts, &self.mem).unwrap() {
            match e {
                Effect::Event(ev) => events.push(ev),
                other => self.mem.apply(&other),
            }
        }
        events
    }
}

fn rel(name: &str, cols: &[(&str, u32)]) -> Arc<Relation> {
    Arc::new(Relation {
        oid: 1,
        namespace: "public".into(),
        name: name.into(),
        replica_identity: ReplicaIdentity::Default,
        columns: cols
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

fn t(s: &str) -> Value {
    Value::Text(s.into())
}

fn insert(r: &Arc<Relation>, values: Vec<Value>) -> Message {
    Message::Insert {
        relation: r.clone(),
        new: Row { values },
    }
}

fn update(r: &Arc<Relation>, values: Vec<Value>) -> Message {
    Message::Update {
        relation: r.clone(),
        old: None,
        new: Row { values },
    }
}

fn orders() -> Arc<Relation> {
    rel(
        "orders",
        &[
            ("id", oid::INT8),
            ("customer_id", oid::INT8),
            ("status", oid::TEXT),
            ("total", oid::NUMERIC),
            ("currency", oid::BPCHAR),
            ("session_id", oid::TEXT),
            ("paid_at", oid::TIMESTAMPTZ),
        ],
    )
}

fn order(id: i64, status: &str, total: Value, currency: &str) -> Vec<Value> {
    vec![
        Value::Int8(id),
        Value::Int8(1),
        t(status),
        total,
        t(currency),
        t("s1"),
        Value::Null,
    ]
}

fn items() -> Arc<Relation> {
    rel(
        "order_items",
        &[
            ("id", oid::INT8),
            ("order_id", oid::INT8),
            ("product_id", oid::TEXT),
            ("quantity", oid::INT4),
            ("unit_price", oid::NUMERIC),
        ],
    )
}

fn item(id: i64, order: i64, sku: &str, qty: i32) -> Message {
    insert(
        &items(),
        vec![
            Value::Int8(id),
            Value::Int8(order),
            t(sku),
            Value::Int4(qty),
            Value::Numeric("5.00".into()),
        ],
    )
}

fn consents() -> Arc<Relation> {
    rel(
        "consents",
        &[
            ("id", oid::INT8),
            ("session_id", oid::TEXT),
            ("customer_id", oid::INT8),
            ("ad_storage", oid::TEXT),
            ("analytics_storage", oid::TEXT),
            ("ad_user_data", oid::TEXT),
            ("ad_personalization", oid::TEXT),
        ],
    )
}

fn consent(id: i64, session: &str, ad_user_data: &str) -> Message {
    insert(
        &consents(),
        vec![
            Value::Int8(id),
            t(session),
            Value::Null,
            t("granted"),
            t("granted"),
            t(ad_user_data),
            t("granted"),
        ],
    )
}

fn sessions() -> Arc<Relation> {
    rel(
        "sessions",
        &[
            ("id", oid::TEXT),
            ("fbclid", oid::TEXT),
            ("fbclid_seen_at", oid::TIMESTAMPTZ),
            ("fbc", oid::TEXT),
            ("fbp", oid::TEXT),
            ("gclid", oid::TEXT),
            ("gbraid", oid::TEXT),
            ("wbraid", oid::TEXT),
            ("user_agent", oid::TEXT),
        ],
    )
}

fn session(gclid: Value, wbraid: Value, fbclid: Value, seen: Value) -> Vec<Value> {
    vec![
        t("s1"),
        fbclid,
        seen,
        Value::Null,
        t("fb.1.1.AbC"),
        gclid,
        Value::Null,
        wbraid,
        t("Mozilla/5.0"),
    ]
}

fn customers() -> Arc<Relation> {
    rel(
        "customers",
        &[
            ("id", oid::INT8),
            ("email", oid::TEXT),
            ("phone", oid::TEXT),
            ("country", oid::TEXT),
            ("session_id", oid::TEXT),
        ],
    )
}

#[test]
fn items_in_the_same_transaction_or_earlier_give_the_same_contents() {
    let mut h = Harness::new();
    let same_tx = h.tx(vec![
        insert(
            &orders(),
            order(1, "paid", Value::Numeric("10.00".into()), "usd"),
        ),
        item(1, 1, "SKU-A", 2),
    ]);
    h.tx(vec![item(2, 2, "SKU-A", 2)]);
    let earlier = h.tx(vec![insert(
        &orders(),
        order(2, "paid", Value::Numeric("10.00".into()), "usd"),
    )]);
    assert_eq!(same_tx.len(), 1);
    assert_eq!(same_tx[0].items, earlier[0].items);
    assert_eq!(same_tx[0].items[0].id, "SKU-A");
    assert_eq!(same_tx[0].items[0].quantity, 2);
    assert_eq!(same_tx[0].value.as_ref().unwrap().currency.code(), "USD");
    assert_eq!(same_tx[0].event_id.as_str(), "purchase-1");
}

#[test]
fn consent_is_as_of_the_commit_and_denial_strips_google_identifiers() {
    let mut h = Harness::new();
    h.tx(vec![insert(
        &customers(),
        vec![
            Value::Int8(1),
            t("Jane.Doe@gmail.com"),
            Value::Null,
            t("US"),
            Value::Null,
        ],
    )]);
    h.tx(vec![consent(1, "s1", "granted")]);
    let granted = h.tx(vec![insert(
        &orders(),
        order(1, "paid", Value::Numeric("1".into()), "USD"),
    )]);
    h.tx(vec![consent(2, "s1", "denied")]);
    let denied = h.tx(vec![insert(
        &orders(),
        order(2, "paid", Value::Numeric("1".into()), "USD"),
    )]);
    assert_eq!(
        granted[0].consent.ad_user_data,
        Signal::Granted,
        "the later withdrawal does not rewrite history"
    );
    assert!(granted[0].user.google.email.is_some());
    assert_eq!(denied[0].consent.ad_user_data, Signal::Denied);
    assert!(
        denied[0].user.google.is_empty(),
        "Google gets no identifiers without ad_user_data"
    );
    assert!(
        denied[0].user.meta.em.is_some(),
        "Meta's policy decides at delivery"
    );
    // Without any consent row every signal is unknown, never granted.
    let none = h.tx(vec![insert(
        &orders(),
        vec![
            Value::Int8(3),
            Value::Int8(9),
            t("paid"),
            Value::Numeric("1".into()),
            t("USD"),
            t("s-other"),
            Value::Null,
        ],
    )]);
    assert!(none[0].consent.is_unknown());
}

#[test]
fn click_ids_are_as_of_the_commit_and_google_takes_the_most_recent() {
    let mut h = Harness::new();
    let before_session = h.tx(vec![insert(
        &orders(),
        order(1, "paid", Value::Numeric("1".into()), "USD"),
    )]);
    assert!(
        before_session[0].click_ids.is_empty(),
        "a click ID captured after the order is not attached"
    );
    h.tx(vec![insert(
        &sessions(),
        session(t("Gclid-1"), Value::Null, t("IwAR-xY"), Value::Null),
    )]);
    let with_gclid = h.tx(vec![insert(
        &orders(),
        order(2, "paid", Value::Numeric("1".into()), "USD"),
    )]);
    assert_eq!(
        with_gclid[0].click_ids.google,
        Some(GoogleClickId::Gclid("Gclid-1".into()))
    );
    assert_eq!(with_gclid[0].click_ids.fbp.as_deref(), Some("fb.1.1.AbC"));
    let fbc = with_gclid[0].click_ids.fbc.clone().unwrap();
    assert!(
        fbc.starts_with("fb.1.") && fbc.ends_with(".IwAR-xY"),
        "built from fbclid, case kept: {fbc}"
    );
    h.tx(vec![update(
        &sessions(),
        session(t("Gclid-1"), t("WbRaid-2"), t("IwAR-xY"), Value::Null),
    )]);
    let later = h.tx(vec![insert(
        &orders(),
        order(3, "paid", Value::Numeric("1".into()), "USD"),
    )]);
    assert_eq!(
        later[0].click_ids.google,
        Some(GoogleClickId::Wbraid("WbRaid-2".into())),
        "the most recent, not a fixed priority"
    );
    assert_eq!(
        later[0].click_ids.fbc,
        Some(fbc),
        "fbc keeps fbclid's first-seen time"
    );
}

#[test]
fn an_fbc_older_than_90_days_is_not_sent() {
    let mut h = Harness::new();
    let old = Value::Timestamptz(T0 - 100 * 86_400_000_000);
    h.tx(vec![insert(
        &sessions(),
        session(Value::Null, Value::Null, t("IwAR-old"), old),
    )]);
    let ev = h.tx(vec![insert(
        &orders(),
        order(1, "paid", Value::Numeric("1".into()), "USD"),
    )]);
    assert_eq!(ev[0].click_ids.fbc, None);
    assert!(
        h.mem.notes.borrow().iter().any(|n| n.contains("90-day")),
        "{:?}",
        h.mem.notes.borrow()
    );
}

#[test]
fn paid_unpaid_paid_is_one_purchase_id_and_updates_while_paid_fire_nothing() {
    let mut h = Harness::new();
    let total = || Value::Numeric("3.00".into());
    let first = h.tx(vec![insert(&orders(), order(1, "pending", total(), "USD"))]);
    assert!(first.is_empty());
    let paid = h.tx(vec![update(&orders(), order(1, "paid", total(), "USD"))]);
    assert_eq!(paid.len(), 1);
    let again = h.tx(vec![update(&orders(), order(1, "paid", total(), "USD"))]);
    assert!(again.is_empty(), "still paid: not a new purchase");
    h.tx(vec![update(&orders(), order(1, "pending", total(), "USD"))]);
    let repaid = h.tx(vec![update(&orders(), order(1, "paid", total(), "USD"))]);
    assert_eq!(
        repaid[0].event_id, paid[0].event_id,
        "the spool keeps one event per ID"
    );
}

#[test]
fn bad_values_are_left_out_with_a_counted_reason_and_never_panic() {
    let mut h = Harness::new();
    let cases = [
        (Value::Numeric("-5".into()), "USD", "negative"),
        (Value::Numeric("NaN".into()), "USD", "NaN"),
        (Value::Numeric("1".into()), "ZZZ", "ISO 4217"),
        (
            Value::Numeric("12345678901234567".into()),
            "USD",
            "implausibly",
        ),
        (Value::Float8(1.5), "USD", "float"),
        (Value::Null, "USD", ""),
    ];
    for (i, (total, cur, note)) in cases.into_iter().enumerate() {
        let id = i as i64 + 1;
        let ev = h.tx(vec![insert(&orders(), order(id, "paid", total, cur))]);
        assert_eq!(ev.len(), 1, "case {i}: the event is still derived");
        assert!(ev[0].value.is_none(), "case {i}");
        if !note.is_empty() {
            assert!(
                h.mem
                    .notes
                    .borrow()
                    .iter()
                    .any(|n| n.contains(note) && n.contains("rules[purchase]")),
                "case {i}: {:?}",
                h.mem.notes.borrow()
            );
        }
    }
    // A future business time is clamped to the commit.
    let mut row = order(99, "paid", Value::Numeric("1".into()), "USD");
    row[6] = Value::Timestamptz(i64::MAX - 1);
    let ev = h.tx(vec![insert(&orders(), row)]);
    assert_eq!(ev[0].event_time_s, h.t_us / 1_000_000);
    // No ID: a failure naming the rule and column, no event.
    let tx = TxContext {
        commit_lsn: Lsn(1),
        commit_time_us: T0,
    };
    let mut row = order(1, "paid", Value::Numeric("1".into()), "USD");
    row[0] = Value::Null;
    let effects = h.d.change(&tx, &insert(&orders(), row), &h.mem).unwrap();
    let failure = effects.iter().find_map(|e| match e {
        Effect::Failure { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert!(
        failure
            .as_deref()
            .is_some_and(|r| r.contains("rules[purchase]") && r.contains("primary key")),
        "{failure:?}"
    );
    // A rule without became_true names the template's column.
    let views = rel(
        "product_views",
        &[("id", oid::INT8), ("product_id", oid::TEXT)],
    );
    let effects =
        h.d.change(&tx, &insert(&views, vec![Value::Null, t("SKU")]), &h.mem)
            .unwrap();
    assert!(effects.iter().any(|e| matches!(e, Effect::Failure { reason, .. }
        if reason.contains("rules[view_item].event_id") && reason.contains("public.product_views.id"))), "{effects:?}");
}

#[test]
fn rules_match_schema_and_table_and_name_both_in_their_messages() {
    let mut h = Harness::new();
    // The same table name in another schema is not the rule's table.
    let mut other = (*orders()).clone();
    other.namespace = "shop".into();
    let other = Arc::new(other);
    let row = || order(7, "paid", Value::Numeric("5".into()), "usd");
    assert!(h.tx(vec![insert(&other, row())]).is_empty());
    let ev = h.tx(vec![insert(&orders(), row())]);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].value.as_ref().map(|m| m.currency.code()), Some("USD"));
    // A bad currency names the rule, the table and the column.
    let ev = h.tx(vec![insert(
        &orders(),
        order(8, "paid", Value::Numeric("5".into()), "US"),
    )]);
    assert!(ev[0].value.is_none());
    let notes = h.mem.notes.borrow();
    assert!(
        notes.iter().any(
            |n| n == "rules[purchase].currency: public.orders.currency is not an ISO 4217 code"
        ),
        "{notes:?}"
    );
}

#[test]
fn deleted_lookup_rows_are_gone_for_later_events_only() {
    let mut h = Harness::new();
    h.tx(vec![insert(
        &customers(),
        vec![
            Value::Int8(1),
            t("a@example.com"),
            Value::Null,
            t("US"),
            Value::Null,
        ],
    )]);
    let before = h.tx(vec![insert(
        &orders(),
        order(1, "paid", Value::Numeric("1".into()), "USD"),
    )]);
    h.tx(vec![Message::Delete {
        relation: customers(),
        old: crate::decode::OldRow::Key(Row {
            values: vec![
                Value::Int8(1),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
            ],
        }),
    }]);
    let after = h.tx(vec![insert(
        &orders(),
        order(2, "paid", Value::Numeric("1".into()), "USD"),
    )]);
    assert!(before[0].user.meta.em.is_some());
    assert!(after[0].user.meta.em.is_none());
    assert!(
        after[0].user.meta.external_id.is_some(),
        "the order's own customer_id still identifies"
    );
}

#[test]
fn sign_ups_hash_their_own_row_and_snapshot_rows_make_no_events() {
    let mut h = Harness::new();
    let ev = h.tx(vec![insert(
        &customers(),
        vec![
            Value::Int8(5),
            t("Mary@Example.com"),
            t("(650) 555-1212"),
            t("US"),
            Value::Null,
        ],
    )]);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind.as_str(), "user.signed_up");
    assert_eq!(ev[0].event_id.as_str(), "signup-5");
    assert!(ev[0].user.meta.ph.is_some() && ev[0].user.google.phone.is_some());
    let json = serde_json::to_string(&ev[0]).unwrap();
    assert!(
        !json.contains("Mary") && !json.contains("555"),
        "no raw PII in the event: {json}"
    );
    let snap = h.d.snapshot_row(
        T0,
        &customers(),
        &Row {
            values: vec![
                Value::Int8(6),
                t("x@example.com"),
                Value::Null,
                t("US"),
                Value::Null,
            ],
        },
    );
    assert!(
        snap.iter().all(|e| matches!(e, Effect::PutLookup { .. })),
        "{snap:?}"
    );
}

#[test]
fn an_expired_session_is_gone_for_later_events_and_intact_for_earlier_ones() {
    let mut h = Harness::new();
    h.tx(vec![insert(
        &sessions(),
        session(t("Gclid-Old"), Value::Null, Value::Null, Value::Null),
    )]);
    let fresh = h.tx(vec![insert(
        &orders(),
        order(1, "paid", Value::Numeric("1".into()), "USD"),
    )]);
    assert!(fresh[0].click_ids.google.is_some());
    // 91 days later the 90-day session lookup has expired.
    h.t_us += 91 * 86_400_000_000;
    let late = h.tx(vec![insert(
        &orders(),
        order(2, "paid", Value::Numeric("1".into()), "USD"),
    )]);
    assert!(late[0].click_ids.is_empty(), "{:?}", late[0].click_ids);
    assert!(late[0].session.is_empty());
    assert!(
        fresh[0].click_ids.google.is_some(),
        "the earlier event keeps what it had"
    );
}
