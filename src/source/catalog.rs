//! The rules against the database: every table, column and type a rule or
//! lookup names must exist, have a usable type and be published.
//!
//! Input: the [`RuleSet`] and a control connection. Output: the catalog
//! facts of the named tables ([`Catalog`], also used by setup's snapshot)
//! and a list of [`Problem`]s, each naming the rule or lookup key, the
//! column and the remedy. `run`, `check` and `setup` all call [`check`].

use std::collections::BTreeMap;

use tokio_postgres::Client;

use super::SourceError;
use crate::derive::rules::{Cmp, Test};
use crate::derive::{RuleSet, Table};

/// One column.
#[derive(Debug, Clone)]
pub struct ColumnInfo {
    /// `format_type` output, e.g. `numeric(12,2)`.
    pub type_name: String,
    /// `pg_type.typcategory`: `S` string, `N` numeric, `D` date/time, `E` enum, `B` bool, ...
    pub category: char,
    /// Labels of an enum type.
    pub enum_labels: Vec<String>,
    /// Part of the primary key.
    pub is_pk: bool,
}

impl ColumnInfo {
    /// A timestamp or date.
    pub fn is_time(&self) -> bool {
        self.category == 'D'
            && (self.type_name.starts_with("timestamp") || self.type_name == "date")
    }
    fn is_integer(&self) -> bool {
        matches!(self.type_name.as_str(), "smallint" | "integer" | "bigint")
    }
    fn is_exact_number(&self) -> bool {
        self.is_integer() || self.type_name.starts_with("numeric")
    }
    fn is_float(&self) -> bool {
        matches!(self.type_name.as_str(), "real" | "double precision")
    }
}

/// One table.
#[derive(Debug, Clone, Default)]
pub struct TableInfo {
    /// Columns by name.
    pub columns: BTreeMap<String, ColumnInfo>,
    /// In the publication.
    pub published: bool,
}

impl TableInfo {
    /// Primary-key columns in catalog order.
    pub fn pk(&self) -> Vec<&str> {
        self.columns
            .iter()
            .filter(|(_, c)| c.is_pk)
            .map(|(n, _)| n.as_str())
            .collect()
    }
}

/// The tables the rules name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Tables that exist, by qualified name.
    pub tables: BTreeMap<Table, TableInfo>,
}

/// A rule or lookup that does not fit the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `rules[purchase].value`, `lookups.sessions.table`, ...
    pub at: String,
    /// What is wrong and the remedy.
    pub problem: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.problem)
    }
}

/// Reads the catalog facts of every table `rules` names.
pub async fn read(
    client: &Client,
    target: &str,
    rules: &RuleSet,
    publication: &str,
) -> Result<Catalog, SourceError> {
    let names: Vec<String> = rules.tables().iter().map(Table::to_string).collect();
    let q = |what| {
        move |source| SourceError::Query {
            what,
            target: target.to_owned(),
            source,
        }
    };
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, a.attname::text,
                    format_type(a.atttypid, a.atttypmod), t.typcategory::text,
                    COALESCE((SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder)
                              FROM pg_enum e WHERE e.enumtypid = t.oid), '{}'::text[]),
                    EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary
                            AND a.attnum = ANY (i.indkey))
             FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             JOIN pg_type t ON t.oid = a.atttypid
             WHERE c.relkind IN ('r', 'p') AND n.nspname || '.' || c.relname = ANY ($1)
             ORDER BY a.attnum",
            &[&names],
        )
        .await
        .map_err(q("reading the columns of the rules' tables"))?;
    let mut catalog = Catalog::default();
    for r in rows {
        let table = Table {
            schema: r.get(0),
            name: r.get(1),
        };
        let category: String = r.get(4);
        catalog.tables.entry(table).or_default().columns.insert(
            r.get(2),
            ColumnInfo {
                type_name: r.get(3),
                category: category.chars().next().unwrap_or('X'),
                enum_labels: r.get(5),
                is_pk: r.get(6),
            },
        );
    }
    let published = client
        .query(
            "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1",
            &[&publication],
        )
        .await
        .map_err(q("reading the publication's tables"))?;
    for r in published {
        let t = Table {
            schema: r.get(0),
            name: r.get(1),
        };
        if let Some(info) = catalog.tables.get_mut(&t) {
            info.published = true;
        }
    }
    Ok(catalog)
}

/// What a column is used for, to check its type.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Use {
    Any,
    Time,
    Money { minor_units: bool },
    Quantity,
    Text,
    Signal,
}

/// Every problem of `rules` against `catalog`. `publication_checked`:
/// report tables missing from the publication (not before setup made it).
pub fn check(
    rules: &RuleSet,
    catalog: &Catalog,
    publication: &str,
    publication_checked: bool,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut push = |at: String, problem: String| problems.push(Problem { at, problem });
    let table_ok = |at: &str,
                    table: &Table,
                    push: &mut dyn FnMut(String, String)|
     -> Option<TableInfo> {
        match catalog.tables.get(table) {
            None => {
                push(format!("{at}.table"), format!("table {table} does not exist: create it, or correct the name in the rules file"));
                None
            }
            Some(info) => {
                if publication_checked && !info.published {
                    push(format!("{at}.table"), format!("table {table} is not in publication {publication}: run `capi-cdc setup`, or ALTER PUBLICATION {publication} ADD TABLE {table};"));
                }
                Some(info.clone())
            }
        }
    };
    for def in rules.lookups.values() {
        let at = format!("lookups.{}", def.name);
        let Some(info) = table_ok(&at, &def.table, &mut push) else {
            continue;
        };
        if info.pk().is_empty() {
            push(
                format!("{at}.table"),
                format!(
                    "table {} has no primary key: lookups store rows by it; add one",
                    def.table
                ),
            );
        }
        for (key, col) in def.columns() {
            let usage = match key.as_str() {
                "click_ids.fbclid_seen_at" => Use::Time,
                "item.quantity" => Use::Quantity,
                "item.unit_price" => Use::Money {
                    minor_units: def.item.as_ref().is_some_and(|i| i.unit_price_minor_units),
                },
                k if k.starts_with("consent.") => Use::Signal,
                _ => Use::Any,
            };
            column(
                &format!("{at}.{key}"),
                &def.table,
                &info,
                col,
                usage,
                &mut push,
            );
        }
    }
    for rule in &rules.rules {
        let at = format!("rules[{}]", rule.name);
        let Some(info) = table_ok(&at, &rule.table, &mut push) else {
            continue;
        };
        for (key, col) in rule.columns() {
            let usage = match key {
                "event_time" => Use::Time,
                "value" => Use::Money {
                    minor_units: rule.value_minor_units,
                },
                "item.unit_price" => Use::Money {
                    minor_units: rule.item.as_ref().is_some_and(|i| i.unit_price_minor_units),
                },
                "item.quantity" => Use::Quantity,
                "currency" => Use::Text,
                _ => Use::Any,
            };
            column(
                &format!("{at}.{key}"),
                &rule.table,
                &info,
                col,
                usage,
                &mut push,
            );
        }
        for (i, cond) in rule.when.iter().enumerate() {
            let Some(c) = info.columns.get(&cond.column) else {
                continue;
            };
            let at = format!("{at}.when[{i}]");
            match &cond.test {
                Test::In(values) if !c.enum_labels.is_empty() => {
                    let unknown: Vec<&String> = values
                        .iter()
                        .filter(|v| !c.enum_labels.contains(v))
                        .collect();
                    if unknown.len() == values.len() {
                        push(
                            at,
                            format!(
                                "can never fire: {} is not a label of {}.{}'s enum {} (labels: {})",
                                quote_all(&unknown),
                                rule.table,
                                cond.column,
                                c.type_name,
                                c.enum_labels.join(", ")
                            ),
                        );
                    } else if !unknown.is_empty() {
                        push(
                            at,
                            format!(
                                "{} is not a label of {}.{}'s enum (labels: {}): remove it",
                                quote_all(&unknown),
                                rule.table,
                                cond.column,
                                c.enum_labels.join(", ")
                            ),
                        );
                    }
                }
                Test::In(values) if c.category == 'B' => {
                    if let Some(v) = values
                        .iter()
                        .find(|v| !["true", "false"].contains(&v.as_str()))
                    {
                        push(at, format!("can never fire: {}.{} is boolean, compare with true or false, not {v:?}", rule.table, cond.column));
                    }
                }
                Test::Compare(op, _) if c.category != 'N' => {
                    let op = match op {
                        Cmp::Gt => "gt",
                        Cmp::Gte => "gte",
                        Cmp::Lt => "lt",
                        Cmp::Lte => "lte",
                    };
                    push(
                        at,
                        format!(
                            "`{op}` needs a number but {}.{} is {}",
                            rule.table, cond.column, c.type_name
                        ),
                    );
                }
                _ => {}
            }
        }
        if rule.became_true && info.pk().is_empty() {
            push(
                format!("{at}.became_true"),
                format!(
                    "table {} has no primary key: the previous state is kept by it; add one",
                    rule.table
                ),
            );
        }
    }
    problems
}

fn quote_all(v: &[&String]) -> String {
    v.iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn column(
    at: &str,
    table: &Table,
    info: &TableInfo,
    col: &str,
    usage: Use,
    push: &mut dyn FnMut(String, String),
) {
    let Some(c) = info.columns.get(col) else {
        let known: Vec<&str> = info.columns.keys().map(String::as_str).collect();
        push(
            at.to_owned(),
            format!(
                "column {table}.{col} does not exist (columns: {})",
                known.join(", ")
            ),
        );
        return;
    };
    let bad = |want: &str| {
        format!(
            "{table}.{col} is {}, which cannot be read as {want}",
            c.type_name
        )
    };
    match usage {
        Use::Time if !c.is_time() => push(at.to_owned(), bad("a time: use a timestamptz, timestamp or date column")),
        Use::Money { .. } if c.is_float() => push(at.to_owned(), format!("{table}.{col} is {}: money in floating point is inexact; use numeric, or integer minor units with value_minor_units = true", c.type_name)),
        Use::Money { minor_units: true } if !c.is_integer() => push(at.to_owned(), bad("integer minor units: remove value_minor_units, or use an integer column")),
        Use::Money { minor_units: false } if !c.is_exact_number() => push(at.to_owned(), bad("an amount: use a numeric or integer column")),
        Use::Quantity if !c.is_exact_number() => push(at.to_owned(), bad("a quantity: use an integer column")),
        Use::Text if !matches!(c.category, 'S' | 'E') => push(at.to_owned(), bad("text: use a text, varchar, char or enum column")),
        Use::Signal if !matches!(c.category, 'S' | 'E' | 'B') => push(at.to_owned(), bad("a consent signal: use a text, enum or boolean column ('granted'/'denied', true/false)")),
        _ => {}
    }
}
