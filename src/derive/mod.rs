//! Derivation: committed row changes → business events and lookup updates.
//!
//! Inputs: decoded [`Message`]s of one transaction with its [`TxContext`]
//! (commit LSN and time: the clock is passed in, never read), the validated
//! [`RuleSet`], and read access to lookup state ([`Lookup`]).
//! Outputs: [`Effect`]s that the apply loop writes into the open spool batch:
//! lookup puts/deletes, rule state, drafts, notes and failures; at the
//! transaction's Commit, [`Deriver::finish`] turns the drafts into events.
//!
//! Invariants:
//! - Pure: no I/O, no clock, no logging of row values.
//! - Raw PII is normalized and hashed here (see [`identity`]); no effect
//!   carries a raw identifier.
//! - Lookup state is updated in WAL order in the same spool write as the
//!   events, and drafts are enriched at the commit, so an event sees its
//!   lookups exactly as committed with it (DESIGN.md §3 "as-of joins").
//! - The same row change always gives the same `event_id`.
//!
//! Layout: `rules/` (configuration and validation), `evaluate.rs` (rule ×
//! row → draft), `lookup.rs` (lookup state), `enrich.rs` (draft → event at
//! commit), `identity/` (normalization and hashing per platform),
//! `values.rs` (reading column values).

mod enrich;
mod evaluate;
pub mod identity;
pub mod lookup;
pub mod rules;
pub mod values;

pub use evaluate::Draft;
pub use lookup::{Entry, Lookup, LookupError};
pub use rules::{RuleError, RuleSet, Table};

use crate::decode::{Message, OldRow, Relation, Row};
use crate::event::BusinessEvent;
use crate::lsn::Lsn;

/// The transaction a change belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxContext {
    /// Commit LSN (Begin's final LSN).
    pub commit_lsn: Lsn,
    /// Commit time, µs since the Unix epoch.
    pub commit_time_us: i64,
}

/// A counted reason: a field left out of an event, a value clamped. Names
/// the rule or lookup and the column, never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// e.g. `rules[purchase].currency: public.orders.currency is not an ISO 4217 code`.
    pub reason: String,
}

/// What a change does to the spool.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// A new business event.
    Event(BusinessEvent),
    /// A rule fired; the event is built at the commit.
    Draft(Draft),
    /// A lookup row's new state.
    PutLookup {
        /// Lookup name.
        lookup: String,
        /// The row's primary key.
        pk: String,
        /// The lookup key rules reach it by.
        key: String,
        /// The entry.
        entry: Entry,
    },
    /// A lookup row is gone.
    DeleteLookup {
        /// Lookup name.
        lookup: String,
        /// The row's primary key.
        pk: String,
    },
    /// A lookup's table was truncated.
    ClearLookup {
        /// Lookup name.
        lookup: String,
    },
    /// Whether a `became_true` rule's condition holds for a row now.
    RuleHeld {
        /// Rule name.
        rule: String,
        /// The row's primary key.
        pk: String,
        /// Holds now.
        held: bool,
    },
    /// A `became_true` rule's table was truncated: no row holds any more.
    ClearRule {
        /// Rule name.
        rule: String,
    },
    /// A counted reason.
    Note(Note),
    /// A change that should have produced an event but could not; the
    /// reason names the rule, table and column, never a value.
    Failure {
        /// `schema.table`.
        relation: String,
        /// Why.
        reason: String,
    },
}

/// Applies a rule set; built once from the configuration.
#[derive(Debug, Clone)]
pub struct Deriver {
    rules: RuleSet,
}

impl Deriver {
    /// A deriver for `rules`.
    pub fn new(rules: RuleSet) -> Deriver {
        Deriver { rules }
    }

    /// The built-in rules for the reference schema.
    pub fn reference() -> Deriver {
        Deriver::new(RuleSet::default_rules().expect("the built-in rules are valid"))
    }

    /// The rule set.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Tables the rules and lookups read, qualified (`public.orders`): the
    /// publication must contain them.
    pub fn tables(&self) -> Vec<String> {
        self.rules.tables().iter().map(Table::to_string).collect()
    }

    /// Derives the effects of one decoded row change.
    pub fn change(
        &self,
        tx: &TxContext,
        message: &Message,
        lookup: &dyn Lookup,
    ) -> Result<Vec<Effect>, LookupError> {
        let mut out = Vec::new();
        match message {
            Message::Insert { relation, new } => {
                self.row(tx, relation, None, new, false, lookup, &mut out)?
            }
            Message::Update { relation, old, new } => {
                self.row(tx, relation, old.as_ref(), new, true, lookup, &mut out)?
            }
            Message::Delete { relation, old } => {
                if let Some(pk) = values::key(relation, old.row()) {
                    for def in self.rules.lookups_of(relation) {
                        out.push(Effect::DeleteLookup {
                            lookup: def.name.clone(),
                            pk: pk.clone(),
                        });
                    }
                    for rule in self
                        .rules
                        .rules
                        .iter()
                        .filter(|r| r.became_true && r.table.is(relation))
                    {
                        out.push(Effect::RuleHeld {
                            rule: rule.name.clone(),
                            pk: pk.clone(),
                            held: false,
                        });
                    }
                }
            }
            Message::Truncate { relations, .. } => {
                for rel in relations {
                    for def in self.rules.lookups_of(rel) {
                        out.push(Effect::ClearLookup {
                            lookup: def.name.clone(),
                        });
                    }
                    for rule in self
                        .rules
                        .rules
                        .iter()
                        .filter(|r| r.became_true && r.table.is(rel))
                    {
                        out.push(Effect::ClearRule {
                            rule: rule.name.clone(),
                        });
                    }
                }
            }
            _ => {}
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn row(
        &self,
        tx: &TxContext,
        rel: &Relation,
        old: Option<&OldRow>,
        new: &Row,
        is_update: bool,
        lookup: &dyn Lookup,
        out: &mut Vec<Effect>,
    ) -> Result<(), LookupError> {
        let pk = values::key(rel, new);
        // Lookups first: a rule on the same table sees the row's new state.
        for def in self.rules.lookups_of(rel) {
            let previous = match &pk {
                Some(pk) => lookup.by_pk(&def.name, pk)?,
                None => None,
            };
            if let Some(effect) =
                lookup::put(def, rel, new, tx.commit_time_us, previous.as_ref(), out)
            {
                out.push(effect);
            }
        }
        for (index, rule) in self.rules.rules.iter().enumerate() {
            if !rule.table.is(rel)
                || !(if is_update {
                    rule.operations.update
                } else {
                    rule.operations.insert
                })
            {
                continue;
            }
            let Some(now) = evaluate::holds(rule, rel, new) else {
                continue; // a condition column was not sent: state unchanged
            };
            if rule.became_true {
                let Some(pk) = &pk else {
                    out.push(Effect::Failure {
                        relation: rel.qualified_name(),
                        reason: format!(
                            "rules[{}]: the row has no primary key value; became_true needs one",
                            rule.name
                        ),
                    });
                    continue;
                };
                let before = match old {
                    Some(OldRow::Full(old)) => evaluate::holds(rule, rel, old).unwrap_or(false),
                    _ if !is_update => false,
                    _ => lookup.rule_held(&rule.name, pk)?,
                };
                if before != now {
                    out.push(Effect::RuleHeld {
                        rule: rule.name.clone(),
                        pk: pk.clone(),
                        held: now,
                    });
                }
                if before || !now {
                    continue;
                }
            } else if !now {
                continue;
            }
            if let Some(draft) = evaluate::draft(index, rule, tx, rel, new, out) {
                out.push(Effect::Draft(draft));
            }
        }
        Ok(())
    }

    /// One row of setup's snapshot: lookup state and rule state, no events
    /// (what the snapshot holds happened before capi-cdc was watching).
    pub fn snapshot_row(&self, snapshot_time_us: i64, rel: &Relation, row: &Row) -> Vec<Effect> {
        let mut out = Vec::new();
        for def in self.rules.lookups_of(rel) {
            if let Some(e) = lookup::put(def, rel, row, snapshot_time_us, None, &mut out) {
                out.push(e);
            }
        }
        if let Some(pk) = values::key(rel, row) {
            for rule in self
                .rules
                .rules
                .iter()
                .filter(|r| r.became_true && r.table.is(rel))
            {
                if evaluate::holds(rule, rel, row) == Some(true) {
                    out.push(Effect::RuleHeld {
                        rule: rule.name.clone(),
                        pk: pk.clone(),
                        held: true,
                    });
                }
            }
        }
        out
    }

    /// Columns of `table` the snapshot needs (lookups and `became_true`
    /// rules); empty when the table needs no snapshot.
    pub fn snapshot_columns(&self, table: &Table) -> Vec<String> {
        let mut cols: Vec<String> = Vec::new();
        for def in self.rules.lookups_on(table) {
            cols.extend(def.columns().into_iter().map(|(_, c)| c.to_owned()));
        }
        for rule in self
            .rules
            .rules
            .iter()
            .filter(|r| r.became_true && &r.table == table)
        {
            cols.extend(rule.when.iter().map(|c| c.column.clone()));
        }
        cols.sort();
        cols.dedup();
        cols
    }

    /// Columns of `table` its rules read (for backfill), of rules of
    /// `kind` when given; empty when no such rule reads the table.
    pub fn rule_columns(&self, table: &Table, kind: Option<&str>) -> Vec<String> {
        let mut cols: Vec<String> = self
            .rules
            .rules
            .iter()
            .filter(|r| &r.table == table && kind.is_none_or(|k| r.kind.as_str() == k))
            .flat_map(|r| r.columns().into_iter().map(|(_, c)| c.to_owned()))
            .collect();
        cols.sort();
        cols.dedup();
        cols
    }

    /// Derives the drafts of one row read from a snapshot, as if it had
    /// just been inserted (backfill); rules of `kind` only when given.
    pub fn backfill_row(
        &self,
        tx: &TxContext,
        rel: &Relation,
        row: &Row,
        kind: Option<&str>,
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        for (index, rule) in self.rules.rules.iter().enumerate() {
            if !rule.table.is(rel) || kind.is_some_and(|k| rule.kind.as_str() != k) {
                continue;
            }
            if evaluate::holds(rule, rel, row) != Some(true) {
                continue;
            }
            if let Some(draft) = evaluate::draft(index, rule, tx, rel, row, &mut out) {
                out.push(Effect::Draft(draft));
            }
        }
        out
    }

    /// Turns a transaction's drafts into events, as of its commit.
    pub fn finish(
        &self,
        tx: &TxContext,
        drafts: Vec<Draft>,
        lookup: &dyn Lookup,
    ) -> Result<Vec<Effect>, LookupError> {
        let mut out = Vec::with_capacity(drafts.len());
        for draft in drafts {
            let event = enrich::enrich(&self.rules, tx, draft, lookup, &mut out)?;
            out.push(Effect::Event(event));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
