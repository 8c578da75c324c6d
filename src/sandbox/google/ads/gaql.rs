//! A GAQL subset over `conversion_action`, enough for capi-cdc's provisioning queries.
//!
//! Input: a query such as
//! `SELECT conversion_action.id, conversion_action.name FROM conversion_action
//!  WHERE conversion_action.type = 'UPLOAD_CLICKS' AND conversion_action.status != 'REMOVED'`.
//! Output: `GoogleAdsRow`s in REST JSON (`{"conversionAction":{"resourceName",...}}`,
//! int64 as strings, only selected fields plus `resourceName`) and the
//! `fieldMask` string, or a `QueryError` code from
//! `google/ads/googleads/v22/errors/query_error.proto`.
//!
//! Grammar served (https://developers.google.com/google-ads/api/docs/query/grammar):
//! `SELECT f (, f)* FROM conversion_action [WHERE cond (AND cond)*]
//! [ORDER BY f [ASC|DESC] (, ...)*] [LIMIT n] [PARAMETERS ...]`, keywords in
//! any case, conditions with `= != < <= > >= IN (..) NOT IN (..)`, values as
//! quoted strings, numbers, bare enum names or TRUE/FALSE. Fields are those
//! of `resources/conversion_action.proto` (see [`super::fields`]). Other
//! resources, metrics and segments are refused (sandbox limit).

mod lex;

use std::cmp::Ordering;

use serde_json::{json, Value};

use self::lex::{tokenize, Token};
use super::super::store::Action;
use super::fields::{camel_path, compare, render, Kind, FIELDS};

/// A GAQL error: `QueryError` code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct GaqlError {
    /// `QueryErrorEnum.QueryError` value name.
    pub code: &'static str,
    /// Message naming the offending token.
    pub message: String,
}

fn err(code: &'static str, message: impl Into<String>) -> GaqlError {
    GaqlError {
        code,
        message: message.into(),
    }
}

/// A parsed query.
#[derive(Debug)]
pub(super) struct Query {
    select: Vec<usize>,
    conditions: Vec<Condition>,
    order_by: Vec<(usize, bool)>,
    limit: Option<usize>,
}

#[derive(Debug)]
struct Condition {
    field: usize,
    op: Op,
    values: Vec<Literal>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    NotIn,
}

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Str(String),
    Num(f64),
    Bool(bool),
}

impl Query {
    /// Rows for the actions that match, ordered and limited.
    pub(super) fn run(&self, actions: &[&Action]) -> Vec<Value> {
        let mut hits: Vec<&Action> = actions
            .iter()
            .copied()
            .filter(|a| self.conditions.iter().all(|c| c.matches(a)))
            .collect();
        if !self.order_by.is_empty() {
            hits.sort_by(|x, y| {
                self.order_by
                    .iter()
                    .map(|&(f, desc)| {
                        let o = compare(&(FIELDS[f].get)(x), &(FIELDS[f].get)(y));
                        if desc {
                            o.reverse()
                        } else {
                            o
                        }
                    })
                    .find(|o| *o != Ordering::Equal)
                    .unwrap_or(Ordering::Equal)
            });
        }
        hits.into_iter()
            .take(self.limit.unwrap_or(usize::MAX))
            .map(|a| json!({ "conversionAction": render(a, &self.select) }))
            .collect()
    }

    /// `fieldMask` of the selected fields in REST form (`conversionAction.id,...`).
    pub(super) fn field_mask(&self) -> String {
        self.select
            .iter()
            .map(|&f| format!("conversionAction.{}", camel_path(FIELDS[f].name)))
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Condition {
    fn matches(&self, a: &Action) -> bool {
        let value = (FIELDS[self.field].get)(a);
        let eq = |lit: &Literal| match (&value, lit) {
            (Some(Value::String(s)), Literal::Str(l)) => s == l,
            (Some(Value::String(s)), Literal::Num(n)) => s.parse::<f64>().ok() == Some(*n),
            (Some(Value::Number(x)), Literal::Num(n)) => x.as_f64() == Some(*n),
            (Some(Value::Bool(b)), Literal::Bool(l)) => b == l,
            _ => false,
        };
        let num = || match &value {
            Some(Value::String(s)) => s.parse::<f64>().ok(),
            Some(Value::Number(x)) => x.as_f64(),
            _ => None,
        };
        let cmp = |f: fn(f64, f64) -> bool| match (num(), self.values.first()) {
            (Some(v), Some(Literal::Num(n))) => f(v, *n),
            _ => false,
        };
        match self.op {
            Op::Eq => self.values.first().is_some_and(eq),
            Op::Ne => !self.values.first().is_some_and(eq),
            Op::In => self.values.iter().any(eq),
            Op::NotIn => !self.values.iter().any(eq),
            Op::Lt => cmp(|v, n| v < n),
            Op::Le => cmp(|v, n| v <= n),
            Op::Gt => cmp(|v, n| v > n),
            Op::Ge => cmp(|v, n| v >= n),
        }
    }
}

/// Parses and checks a query against the `conversion_action` field list.
pub(super) fn parse(query: &str) -> Result<Query, GaqlError> {
    let tokens = tokenize(query)?;
    let mut p = Parser { tokens, pos: 0 };
    if !p.keyword("SELECT") {
        return Err(err(
            "EXPECTED_SELECT",
            "Error in query: expected SELECT at the start.",
        ));
    }
    let mut select = vec![p.field("SELECT")?];
    while p.sym(",") {
        select.push(p.field("SELECT")?);
    }
    if !p.keyword("FROM") {
        return Err(err(
            "EXPECTED_FROM",
            "Error in query: expected FROM after the SELECT list.",
        ));
    }
    match p.next() {
        Some(Token::Word(r)) if r == "conversion_action" => {}
        Some(Token::Word(r)) => {
            return Err(err(
                "BAD_RESOURCE_TYPE_IN_FROM_CLAUSE",
                format!("Error in FROM clause: resource '{}' is not supported (the sandbox serves conversion_action only).", printable(&r)),
            ))
        }
        _ => return Err(err("BAD_RESOURCE_TYPE_IN_FROM_CLAUSE", "Error in FROM clause: expected a resource name.")),
    }
    let mut conditions = Vec::new();
    if p.keyword("WHERE") {
        conditions.push(p.condition()?);
        while p.keyword("AND") {
            conditions.push(p.condition()?);
        }
    }
    let mut order_by = Vec::new();
    if p.keyword("ORDER") {
        if !p.keyword("BY") {
            return Err(err(
                "EXPECTED_BY",
                "Error in ORDER BY clause: expected BY after ORDER.",
            ));
        }
        loop {
            let f = p.field("ORDER BY")?;
            let desc = p.keyword("DESC");
            if !desc {
                p.keyword("ASC");
            }
            order_by.push((f, desc));
            if !p.sym(",") {
                break;
            }
        }
    }
    let mut limit = None;
    if p.keyword("LIMIT") {
        match p.next() {
            Some(Token::Num(n)) => match n.parse::<usize>() {
                Ok(0) => {
                    return Err(err(
                        "LIMIT_VALUE_TOO_LOW",
                        "Error in LIMIT clause: the limit must be positive.",
                    ))
                }
                Ok(n) => limit = Some(n),
                Err(_) => {
                    return Err(err(
                        "BAD_LIMIT_VALUE",
                        "Error in LIMIT clause: not a valid number.",
                    ))
                }
            },
            _ => {
                return Err(err(
                    "BAD_LIMIT_VALUE",
                    "Error in LIMIT clause: expected a number.",
                ))
            }
        }
    }
    if p.keyword("PARAMETERS") {
        // e.g. `PARAMETERS include_drafts=true`: nothing the sandbox changes.
        p.pos = p.tokens.len();
    }
    if p.pos < p.tokens.len() {
        return Err(err(
            "UNEXPECTED_INPUT",
            "Error in query: unexpected input after the end of the query.",
        ));
    }
    Ok(Query {
        select,
        conditions,
        order_by,
        limit,
    })
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn keyword(&mut self, kw: &str) -> bool {
        match self.tokens.get(self.pos) {
            Some(Token::Word(w)) if w.eq_ignore_ascii_case(kw) => {
                self.pos += 1;
                true
            }
            _ => false,
        }
    }

    fn sym(&mut self, s: &str) -> bool {
        match self.tokens.get(self.pos) {
            Some(Token::Sym(t)) if *t == s => {
                self.pos += 1;
                true
            }
            _ => false,
        }
    }

    /// A field name, resolved to its index in [`FIELDS`].
    fn field(&mut self, clause: &str) -> Result<usize, GaqlError> {
        let Some(Token::Word(name)) = self.next() else {
            return Err(err(
                "BAD_FIELD_NAME",
                format!("Error in {clause} clause: expected a field name."),
            ));
        };
        let name = name.to_ascii_lowercase();
        let Some(rest) = name.strip_prefix("conversion_action.") else {
            let code = if name.starts_with("metrics.") {
                "PROHIBITED_METRIC_IN_SELECT_OR_WHERE_CLAUSE"
            } else if name.starts_with("segments.") {
                "PROHIBITED_SEGMENT_IN_SELECT_OR_WHERE_CLAUSE"
            } else {
                "PROHIBITED_RESOURCE_TYPE_IN_SELECT_CLAUSE"
            };
            return Err(err(code, format!(
                "Error in {clause} clause: '{}' is not a conversion_action field the sandbox serves.",
                printable(&name)
            )));
        };
        FIELDS.iter().position(|f| f.name == rest).ok_or_else(|| {
            err(
                "UNRECOGNIZED_FIELD",
                format!("Unrecognized field in the query: '{}'.", printable(&name)),
            )
        })
    }

    fn condition(&mut self) -> Result<Condition, GaqlError> {
        let field = self.field("WHERE")?;
        let op = if self.keyword("IN") {
            Op::In
        } else if self.keyword("NOT") {
            if !self.keyword("IN") {
                return Err(err(
                    "BAD_OPERATOR",
                    "Error in WHERE clause: the sandbox supports NOT IN only after NOT.",
                ));
            }
            Op::NotIn
        } else {
            match self.next() {
                Some(Token::Sym("=")) => Op::Eq,
                Some(Token::Sym("!=")) => Op::Ne,
                Some(Token::Sym("<")) => Op::Lt,
                Some(Token::Sym("<=")) => Op::Le,
                Some(Token::Sym(">")) => Op::Gt,
                Some(Token::Sym(">=")) => Op::Ge,
                _ => {
                    return Err(err(
                        "BAD_OPERATOR",
                        "Error in WHERE clause: unsupported or missing operator.",
                    ))
                }
            }
        };
        let values = if matches!(op, Op::In | Op::NotIn) {
            if !self.sym("(") {
                return Err(err(
                    "EXPECTED_LIST",
                    "Error in WHERE clause: expected a list after IN.",
                ));
            }
            let mut values = vec![self.literal(field)?];
            while self.sym(",") {
                values.push(self.literal(field)?);
            }
            if !self.sym(")") {
                return Err(err(
                    "EXPECTED_LIST",
                    "Error in WHERE clause: the list is not closed.",
                ));
            }
            values
        } else {
            vec![self.literal(field)?]
        };
        let kind = FIELDS[field].kind;
        let ordered = matches!(op, Op::Lt | Op::Le | Op::Gt | Op::Ge);
        if ordered && !matches!(kind, Kind::Int | Kind::Double) {
            return Err(err(
                "OPERATOR_FIELD_MISMATCH",
                "Error in WHERE clause: ordering operators need a numeric field.",
            ));
        }
        Ok(Condition { field, op, values })
    }

    /// A value for `field`, checked against its type (enum names against the enum).
    fn literal(&mut self, field: usize) -> Result<Literal, GaqlError> {
        let def = &FIELDS[field];
        let token = self.next();
        let bad = || {
            err(
                "BAD_VALUE",
                format!(
                    "Error in WHERE clause: invalid value for conversion_action.{}.",
                    def.name
                ),
            )
        };
        match (def.kind, token) {
            (Kind::Enum(values), Some(Token::Str(s) | Token::Word(s))) => {
                if values.contains(&s.as_str()) {
                    Ok(Literal::Str(s))
                } else {
                    Err(err(
                        "BAD_ENUM_CONSTANT",
                        format!(
                        "Error in WHERE clause: invalid enum constant for conversion_action.{}.",
                        def.name
                    ),
                    ))
                }
            }
            (Kind::Str, Some(Token::Str(s))) => Ok(Literal::Str(s)),
            (Kind::Int | Kind::Double, Some(Token::Num(n) | Token::Str(n))) => {
                n.parse::<f64>().map(Literal::Num).map_err(|_| bad())
            }
            (Kind::Bool, Some(Token::Word(w))) if w.eq_ignore_ascii_case("true") => {
                Ok(Literal::Bool(true))
            }
            (Kind::Bool, Some(Token::Word(w))) if w.eq_ignore_ascii_case("false") => {
                Ok(Literal::Bool(false))
            }
            _ => Err(bad()),
        }
    }
}

/// Echo a query token only when it looks like an identifier.
fn printable(s: &str) -> String {
    if s.len() <= 100
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    {
        s.to_owned()
    } else {
        "[unprintable]".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BRIEF: &str =
        "SELECT conversion_action.id, conversion_action.name, conversion_action.category, \
        conversion_action.type, conversion_action.status FROM conversion_action \
        WHERE conversion_action.type = 'UPLOAD_CLICKS'";

    #[test]
    fn parses_the_provisioning_query_and_variations() {
        let q = parse(BRIEF).unwrap();
        assert_eq!(
            q.field_mask(),
            "conversionAction.id,conversionAction.name,conversionAction.category,conversionAction.type,conversionAction.status"
        );
        for variant in [
            "select conversion_action.name ,conversion_action.id\n from conversion_action where conversion_action.type=UPLOAD_CLICKS and conversion_action.status != 'REMOVED'",
            "SELECT conversion_action.resource_name FROM conversion_action WHERE conversion_action.status IN ('ENABLED', 'HIDDEN') ORDER BY conversion_action.id DESC LIMIT 10",
            "SELECT conversion_action.id FROM conversion_action WHERE conversion_action.id > 5 PARAMETERS include_drafts=true",
        ] {
            assert!(parse(variant).is_ok(), "{variant}");
        }
    }

    #[test]
    fn rejects_unknown_fields_resources_and_enums() {
        let code = |q: &str| parse(q).unwrap_err().code;
        assert_eq!(
            code("SELECT conversion_action.foo FROM conversion_action"),
            "UNRECOGNIZED_FIELD"
        );
        assert_eq!(
            code("SELECT campaign.id FROM campaign"),
            "PROHIBITED_RESOURCE_TYPE_IN_SELECT_CLAUSE"
        );
        assert_eq!(
            code("SELECT conversion_action.id FROM campaign"),
            "BAD_RESOURCE_TYPE_IN_FROM_CLAUSE"
        );
        assert_eq!(code("SELECT conversion_action.id FROM conversion_action WHERE conversion_action.type = 'CLICKS'"), "BAD_ENUM_CONSTANT");
        assert_eq!(
            code("conversion_action.id FROM conversion_action"),
            "EXPECTED_SELECT"
        );
        assert_eq!(
            code("SELECT conversion_action.id conversion_action"),
            "EXPECTED_FROM"
        );
        assert_eq!(code("SELECT conversion_action.id FROM conversion_action WHERE conversion_action.name = 'x"), "STRING_NOT_TERMINATED");
        assert_eq!(
            code("SELECT conversion_action.id FROM conversion_action LIMIT 0"),
            "LIMIT_VALUE_TOO_LOW"
        );
        assert_eq!(
            code("SELECT conversion_action.id FROM conversion_action OR"),
            "UNEXPECTED_INPUT"
        );
    }
}
