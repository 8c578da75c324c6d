//! Rule evaluation: one row change × one rule → maybe a [`Draft`].
//!
//! A draft holds what the row itself says (ID, time, money, inline identity
//! hashed, join keys). Joins wait for the transaction's commit
//! (`enrich.rs`), so an order and its items, or an order and the consent
//! given in the same transaction, are seen together whatever their order
//! inside it. Bad fields never stop the stream: the event is derived without
//! them, with a counted note, or the change is recorded as a failure that
//! names the rule and column, never a value.

use super::lookup::{hash_identity, note_dropped};
use super::rules::{Cmp, Condition, ItemColumns, Piece, Rule, Test};
use super::values::{self, Cell};
use super::{Effect, Note, TxContext};
use crate::decode::{Relation, Row};
use crate::event::{Currency, Decimal, EventId, Item, Money, UserIds};

/// Values whose integer part has more digits than this are not believed.
const MAX_VALUE_DIGITS: usize = 12;
/// Quantities above this are not believed.
const MAX_QUANTITY: i64 = 1_000_000;

/// A rule's event before its joins are resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    /// Index of the rule in the rule set.
    pub rule: usize,
    /// The event ID.
    pub event_id: EventId,
    /// Business time, µs, already clamped to the commit.
    pub event_time_us: i64,
    /// Value and currency.
    pub value: Option<Money>,
    /// Order ID.
    pub order_id: Option<String>,
    /// Identity from the row itself, hashed.
    pub identity: UserIds,
    /// Join keys.
    pub customer: Option<String>,
    /// Session join key.
    pub session: Option<String>,
    /// Consent join keys, aligned with the rule's `consent` list.
    pub consent: Vec<Option<String>>,
    /// Items join key.
    pub items: Option<String>,
    /// The inline item.
    pub item: Option<Item>,
    /// Page URL from the row.
    pub page_url: Option<String>,
}

/// Whether every condition holds on `row` (`None`: a condition's column was
/// not sent, an unchanged TOAST value).
pub fn holds(rule: &Rule, rel: &Relation, row: &Row) -> Option<bool> {
    for c in &rule.when {
        if !condition(c, rel, row)? {
            return Some(false);
        }
    }
    Some(true)
}

fn condition(c: &Condition, rel: &Relation, row: &Row) -> Option<bool> {
    let cell = values::text(rel, row, &c.column);
    if matches!(cell, Cell::Unchanged) {
        return None;
    }
    Some(match (&c.test, cell) {
        (Test::NotNull, cell) => matches!(cell, Cell::Some(_)),
        (Test::In(set), Cell::Some(v)) => set.iter().any(|s| same_value(s, v.trim())),
        (Test::Compare(op, bound), Cell::Some(v)) => match v.trim().parse::<f64>() {
            Ok(x) => match op {
                Cmp::Gt => x > *bound,
                Cmp::Gte => x >= *bound,
                Cmp::Lt => x < *bound,
                Cmp::Lte => x <= *bound,
            },
            Err(_) => false,
        },
        _ => false,
    })
}

/// Equal as text, or as numbers (`5` matches a numeric `5.00`).
fn same_value(want: &str, got: &str) -> bool {
    want == got || matches!((want.parse::<f64>(), got.parse::<f64>()), (Ok(a), Ok(b)) if a == b)
}

/// `rules[name]` in a message, formatted only when a message is made.
#[derive(Clone, Copy)]
struct At<'a>(&'a str);

impl std::fmt::Display for At<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rules[{}]", self.0)
    }
}

/// Builds the draft of `rule` for `row`; notes and failures go to `out`.
pub fn draft(
    index: usize,
    rule: &Rule,
    tx: &TxContext,
    rel: &Relation,
    row: &Row,
    out: &mut Vec<Effect>,
) -> Option<Draft> {
    // Named in messages only: formatted when one is made, not per row.
    let at = At(&rule.name);
    let table = rel;
    let fail = |out: &mut Vec<Effect>, reason: String| {
        out.push(Effect::Failure {
            relation: rel.qualified_name(),
            reason,
        });
    };
    let note = |out: &mut Vec<Effect>, reason: String| out.push(Effect::Note(Note { reason }));

    // The event ID: every column of the template must be there.
    let mut id = String::new();
    for piece in &rule.event_id {
        match piece {
            Piece::Text(t) => id.push_str(t),
            Piece::Column(c) => match values::text(rel, row, c) {
                Cell::Some(v) => id.push_str(&v),
                other => {
                    fail(
                        out,
                        format!(
                            "{at}.event_id: column {table}.{c} is {}: no event without an ID",
                            describe(&other)
                        ),
                    );
                    return None;
                }
            },
        }
    }
    let event_id = match EventId::new(id) {
        Ok(id) => id,
        Err(e) => {
            fail(out, format!("{at}.event_id: {e}"));
            return None;
        }
    };

    // Business time, never after the commit (platforms reject the future).
    let event_time_us = match &rule.event_time {
        None => tx.commit_time_us,
        Some(c) => match values::instant_us(rel, row, c) {
            Cell::Some(us) => {
                if us > tx.commit_time_us {
                    note(out, format!("{at}.event_time: {table}.{c} after the commit, clamped to the commit time"));
                }
                us.min(tx.commit_time_us)
            }
            Cell::Null | Cell::Unchanged => tx.commit_time_us,
            other => {
                note(
                    out,
                    format!(
                        "{at}.event_time: {table}.{c} is {}, used the commit time",
                        describe(&other)
                    ),
                );
                tx.commit_time_us
            }
        },
    };

    let currency = currency(rule, at, rel, row, out);
    let value = money(rule, at, rel, row, currency, out);

    let text = |c: &Option<String>| c.as_deref().and_then(|c| values::text(rel, row, c).ok());
    let mut identity = UserIds::default();
    if let Some(id) = &rule.identity {
        let (ids, dropped) = hash_identity(id, rel, row, None);
        note_dropped(&at, &dropped, out);
        identity = ids;
    }
    let item = rule
        .item
        .as_ref()
        .and_then(|cols| inline_item(cols, at, rel, row, currency, out));
    Some(Draft {
        rule: index,
        event_id,
        event_time_us,
        value,
        order_id: text(&rule.order_id),
        identity,
        customer: rule
            .customer
            .as_ref()
            .and_then(|j| values::text(rel, row, &j.column).ok()),
        session: rule
            .session
            .as_ref()
            .and_then(|j| values::text(rel, row, &j.column).ok()),
        consent: rule
            .consent
            .iter()
            .map(|j| values::text(rel, row, &j.column).ok())
            .collect(),
        items: rule
            .items
            .as_ref()
            .and_then(|j| values::text(rel, row, &j.column).ok()),
        item,
        page_url: text(&rule.page_url),
    })
}

fn describe<T>(cell: &Cell<T>) -> &'static str {
    match cell {
        Cell::Some(_) => "present",
        Cell::Null => "NULL or empty",
        Cell::Unchanged => "an unchanged TOAST value not sent by the server",
        Cell::BadType(why) => why,
        Cell::NoColumn => "missing from the table",
    }
}

fn currency(
    rule: &Rule,
    at: At<'_>,
    rel: &Relation,
    row: &Row,
    out: &mut Vec<Effect>,
) -> Option<Currency> {
    let from_column = rule
        .currency
        .as_deref()
        .and_then(|c| match values::text(rel, row, c) {
            Cell::Some(code) => match Currency::parse(&code) {
                Ok(cur) => Some(cur),
                Err(_) => {
                    out.push(Effect::Note(Note {
                        reason: format!("{at}.currency: {rel}.{c} is not an ISO 4217 code"),
                    }));
                    None
                }
            },
            _ => None,
        });
    from_column.or(rule.currency_default)
}

fn money(
    rule: &Rule,
    at: At<'_>,
    rel: &Relation,
    row: &Row,
    currency: Option<Currency>,
    out: &mut Vec<Effect>,
) -> Option<Money> {
    let col = rule.value.as_deref()?;
    let mut note = |why: &str| {
        out.push(Effect::Note(Note {
            reason: format!("{at}.value: {rel}.{col} {why}, sent without a value"),
        }))
    };
    let amount = match values::decimal(rel, row, col) {
        Cell::Some(text) => text,
        Cell::Null | Cell::Unchanged | Cell::NoColumn => return None,
        Cell::BadType(why) => {
            note(why);
            return None;
        }
    };
    let Some(currency) = currency else {
        note("has no valid currency");
        return None;
    };
    let amount = if rule.value_minor_units {
        match amount.parse::<i64>() {
            Ok(units) => Decimal::from_minor_units(units, currency.minor_unit_digits()),
            Err(_) => {
                note("is not an integer count of minor units");
                return None;
            }
        }
    } else {
        match Decimal::parse(&amount) {
            Ok(d) => d,
            Err(_) => {
                note("is not a decimal");
                return None;
            }
        }
    };
    if amount.is_negative() {
        note("is negative");
        return None;
    }
    if amount.integer_digits() > MAX_VALUE_DIGITS {
        note("is implausibly large");
        return None;
    }
    Some(Money { amount, currency })
}

/// An item from a row's columns (rules' `item`, lookups' `item`).
pub fn item_from_fields(
    id: Option<&str>,
    quantity: Option<&str>,
    unit_price: Option<&str>,
    minor_units: bool,
    currency: Option<Currency>,
) -> Result<Item, &'static str> {
    let id = id.ok_or("has no product ID")?;
    let quantity = match quantity {
        None => 1,
        Some(q) => match q
            .trim()
            .split('.')
            .next()
            .and_then(|q| q.parse::<i64>().ok())
        {
            Some(q) if (1..=MAX_QUANTITY).contains(&q) => q as u32,
            _ => return Err("has a quantity that is not a positive whole number"),
        },
    };
    let unit_price = match unit_price {
        None => None,
        Some(p) if minor_units => match (p.parse::<i64>(), currency) {
            (Ok(u), Some(c)) if u >= 0 => Some(Decimal::from_minor_units(u, c.minor_unit_digits())),
            (Ok(u), None) if u >= 0 => Some(Decimal::from_minor_units(u, 2)),
            _ => return Err("has a price that is not a non-negative count of minor units"),
        },
        Some(p) => match Decimal::parse(p) {
            Ok(d) if !d.is_negative() && d.integer_digits() <= MAX_VALUE_DIGITS => Some(d),
            _ => return Err("has a price that is not a non-negative decimal"),
        },
    };
    Ok(Item {
        id: id.to_owned(),
        quantity,
        unit_price,
    })
}

fn inline_item(
    cols: &ItemColumns,
    at: At<'_>,
    rel: &Relation,
    row: &Row,
    currency: Option<Currency>,
    out: &mut Vec<Effect>,
) -> Option<Item> {
    let text = |c: &Option<String>| c.as_deref().and_then(|c| values::text(rel, row, c).ok());
    let id = values::text(rel, row, &cols.id).ok();
    match item_from_fields(
        id.as_deref(),
        text(&cols.quantity).as_deref(),
        text(&cols.unit_price).as_deref(),
        cols.unit_price_minor_units,
        currency,
    ) {
        Ok(item) => Some(item),
        Err(why) => {
            out.push(Effect::Note(Note {
                reason: format!("{at}.item: the {rel} row {why}; sent without items"),
            }));
            None
        }
    }
}
