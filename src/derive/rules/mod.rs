//! Rules as configuration: the rules file → a validated [`RuleSet`].
//!
//! Input: a TOML rules file (`derive.rules_file`), or the built-in rules for
//! the reference schema (`config/rules.default.toml`). Output: typed rules
//! and lookups that evaluation trusts. Two checks:
//! - [`RuleSet::parse`]: the file's own consistency (names, kinds,
//!   templates, a lookup named by a rule exists and has the needed part);
//! - `catalog::check` (at `run`, `check`, `setup`): every table, column and
//!   type against the database and the publication.
//!
//! Every error names where it is (`rules[purchase].value`,
//! `lookups.sessions.key`) and what to do.

mod raw;

use std::collections::BTreeMap;
use std::path::Path;

pub use raw::{RawClickIds, RawConsent, RawContext, RawIdentity, RawItem};
use raw::{RawCondition, RawJoin, RawLookup, RawRule, RawRules};

use crate::event::{Currency, Kind, LaneKind};

/// The built-in rules for `sql/schema.sql`.
pub const DEFAULT_RULES: &str = include_str!("../../../config/rules.default.toml");

/// A problem in the rules, naming its place and the remedy.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// The file is not TOML of the expected shape.
    #[error("rules file {file}: {source}")]
    Parse {
        /// Which file (`built-in` for the default).
        file: String,
        /// The TOML error, with line and column.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// The file could not be read.
    #[error("rules file {file}: {source}")]
    Read {
        /// Which file.
        file: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A value is unusable.
    #[error("rules: `{at}`: {problem}")]
    Invalid {
        /// e.g. `rules[purchase].value`.
        at: String,
        /// What is wrong and the remedy.
        problem: String,
    },
}

fn invalid(at: impl Into<String>, problem: impl Into<String>) -> RuleError {
    RuleError::Invalid {
        at: at.into(),
        problem: problem.into(),
    }
}

/// A table, schema-qualified.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Table {
    /// Schema.
    pub schema: String,
    /// Name.
    pub name: String,
}

impl Table {
    /// Whether `rel` is this table (no allocation: compared per row).
    pub fn is(&self, rel: &crate::decode::Relation) -> bool {
        self.name == rel.name && self.schema == rel.namespace
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// Which row changes a rule reacts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operations {
    /// INSERT.
    pub insert: bool,
    /// UPDATE.
    pub update: bool,
}

/// What a condition tests.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// Equal to one of these texts (an `equals` is a one-element `in`).
    In(Vec<String>),
    /// Not NULL.
    NotNull,
    /// A numeric comparison.
    Compare(Cmp, f64),
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `>`
    Gt,
    /// `>=`
    Gte,
    /// `<`
    Lt,
    /// `<=`
    Lte,
}

/// One condition on a column.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// The column.
    pub column: String,
    /// The test.
    pub test: Test,
}

/// One piece of an `event_id` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Literal text.
    Text(String),
    /// A column's value.
    Column(String),
}

/// A reference from a rule's column to a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    /// Column of the rule's table.
    pub column: String,
    /// Lookup name.
    pub lookup: String,
}

/// Where an item's fields come from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ItemColumns {
    /// Product ID column.
    pub id: String,
    /// Quantity column (default 1).
    pub quantity: Option<String>,
    /// Unit price column.
    pub unit_price: Option<String>,
    /// Prices are integer minor units.
    pub unit_price_minor_units: bool,
}

/// A validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Unique name.
    pub name: String,
    /// Event kind.
    pub kind: Kind,
    /// Table.
    pub table: Table,
    /// Operations.
    pub operations: Operations,
    /// All must hold.
    pub when: Vec<Condition>,
    /// Fire only on a false → true change.
    pub became_true: bool,
    /// `event_id` template.
    pub event_id: Vec<Piece>,
    /// Business time column.
    pub event_time: Option<String>,
    /// Order ID column.
    pub order_id: Option<String>,
    /// Value column.
    pub value: Option<String>,
    /// Value is integer minor units.
    pub value_minor_units: bool,
    /// Currency column.
    pub currency: Option<String>,
    /// Currency when the column is absent or NULL.
    pub currency_default: Option<Currency>,
    /// Page URL column.
    pub page_url: Option<String>,
    /// Identity on the rule's own row.
    pub identity: Option<RawIdentity>,
    /// Customer join.
    pub customer: Option<Join>,
    /// Session join.
    pub session: Option<Join>,
    /// Consent joins, first found wins.
    pub consent: Vec<Join>,
    /// Items from a lookup (by a column of this row).
    pub items: Option<Join>,
    /// Or one inline item.
    pub item: Option<ItemColumns>,
    /// Lane.
    pub lane: LaneKind,
}

impl Rule {
    /// Every column of the rule's own table that the rule reads.
    pub fn columns(&self) -> Vec<(&'static str, &str)> {
        let mut out: Vec<(&'static str, &str)> = Vec::new();
        for c in &self.when {
            out.push(("when.column", &c.column));
        }
        for p in &self.event_id {
            if let Piece::Column(c) = p {
                out.push(("event_id", c));
            }
        }
        let opt = [
            ("event_time", &self.event_time),
            ("order_id", &self.order_id),
            ("value", &self.value),
            ("currency", &self.currency),
            ("page_url", &self.page_url),
        ];
        for (k, v) in opt {
            if let Some(c) = v {
                out.push((k, c));
            }
        }
        if let Some(id) = &self.identity {
            for (_, c) in identity_columns(id) {
                out.push(("identity", c));
            }
        }
        for (k, j) in [
            ("customer.column", &self.customer),
            ("session.column", &self.session),
            ("items.column", &self.items),
        ] {
            if let Some(j) = j {
                out.push((k, &j.column));
            }
        }
        for j in &self.consent {
            out.push(("consent.column", &j.column));
        }
        if let Some(item) = &self.item {
            out.push(("item.id", &item.id));
            if let Some(q) = &item.quantity {
                out.push(("item.quantity", q));
            }
            if let Some(p) = &item.unit_price {
                out.push(("item.unit_price", p));
            }
        }
        out
    }
}

/// Identity fields and their columns.
pub fn identity_columns(id: &RawIdentity) -> Vec<(&'static str, &str)> {
    [
        ("email", &id.email),
        ("phone", &id.phone),
        ("first_name", &id.first_name),
        ("last_name", &id.last_name),
        ("city", &id.city),
        ("state", &id.state),
        ("zip", &id.zip),
        ("country", &id.country),
        ("external_id", &id.external_id),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_deref().map(|c| (k, c)))
    .collect()
}

/// A validated lookup.
#[derive(Debug, Clone)]
pub struct LookupDef {
    /// Name.
    pub name: String,
    /// Table.
    pub table: Table,
    /// Key column (`None`: the primary key).
    pub key: Option<String>,
    /// Expiry.
    pub expire_after_s: Option<i64>,
    /// Identity columns.
    pub identity: Option<RawIdentity>,
    /// Click ID columns.
    pub click_ids: Option<RawClickIds>,
    /// Context columns.
    pub context: Option<RawContext>,
    /// Consent columns.
    pub consent: Option<RawConsent>,
    /// Item columns.
    pub item: Option<ItemColumns>,
}

impl LookupDef {
    /// Every column the lookup keeps, with the key that names it.
    pub fn columns(&self) -> Vec<(String, &str)> {
        let mut out: Vec<(String, &str)> = Vec::new();
        if let Some(k) = &self.key {
            out.push(("key".into(), k));
        }
        if let Some(id) = &self.identity {
            for (f, c) in identity_columns(id) {
                out.push((format!("identity.{f}"), c));
            }
        }
        if let Some(c) = &self.click_ids {
            for (f, col) in [
                ("fbclid", &c.fbclid),
                ("fbclid_seen_at", &c.fbclid_seen_at),
                ("fbc", &c.fbc),
                ("fbp", &c.fbp),
                ("gclid", &c.gclid),
                ("gbraid", &c.gbraid),
                ("wbraid", &c.wbraid),
            ] {
                if let Some(col) = col {
                    out.push((format!("click_ids.{f}"), col));
                }
            }
        }
        if let Some(c) = &self.context {
            for (f, col) in [
                ("ip", &c.ip),
                ("user_agent", &c.user_agent),
                ("page_url", &c.page_url),
            ] {
                if let Some(col) = col {
                    out.push((format!("context.{f}"), col));
                }
            }
        }
        if let Some(c) = &self.consent {
            for (f, col) in consent_columns(c) {
                out.push((format!("consent.{f}"), col));
            }
        }
        if let Some(i) = &self.item {
            out.push(("item.id".into(), &i.id));
            if let Some(q) = &i.quantity {
                out.push(("item.quantity".into(), q));
            }
            if let Some(p) = &i.unit_price {
                out.push(("item.unit_price".into(), p));
            }
        }
        out
    }
}

/// Consent signals and their columns.
pub fn consent_columns(c: &RawConsent) -> Vec<(&'static str, &str)> {
    [
        ("ad_storage", &c.ad_storage),
        ("analytics_storage", &c.analytics_storage),
        ("ad_user_data", &c.ad_user_data),
        ("ad_personalization", &c.ad_personalization),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_deref().map(|c| (k, c)))
    .collect()
}

/// All rules and lookups, validated.
#[derive(Debug, Clone)]
pub struct RuleSet {
    /// Rules in file order.
    pub rules: Vec<Rule>,
    /// Lookups by name.
    pub lookups: BTreeMap<String, LookupDef>,
}

impl RuleSet {
    /// The built-in rules for the reference schema.
    pub fn default_rules() -> Result<RuleSet, RuleError> {
        RuleSet::parse("built-in", DEFAULT_RULES)
    }

    /// Reads and validates a rules file.
    pub fn load(path: &Path) -> Result<RuleSet, RuleError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| RuleError::Read {
            file: file.clone(),
            source,
        })?;
        RuleSet::parse(&file, &text)
    }

    /// Validates rules text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<RuleSet, RuleError> {
        let raw: RawRules = toml::from_str(text).map_err(|source| RuleError::Parse {
            file: file.to_owned(),
            source: Box::new(source),
        })?;
        RuleSet::try_from(raw)
    }

    /// Every table a rule or lookup reads: the publication must hold them.
    pub fn tables(&self) -> Vec<Table> {
        let mut t: Vec<Table> = self
            .rules
            .iter()
            .map(|r| r.table.clone())
            .chain(self.lookups.values().map(|l| l.table.clone()))
            .collect();
        t.sort();
        t.dedup();
        t
    }

    /// Lookups on `table`.
    pub fn lookups_on<'a>(&'a self, table: &'a Table) -> impl Iterator<Item = &'a LookupDef> + 'a {
        self.lookups.values().filter(move |l| &l.table == table)
    }

    /// The lookups fed by the table of `rel`.
    pub fn lookups_of<'a>(
        &'a self,
        rel: &'a crate::decode::Relation,
    ) -> impl Iterator<Item = &'a LookupDef> + 'a {
        self.lookups.values().filter(move |l| l.table.is(rel))
    }
}

fn table(default_schema: &str, at: &str, text: Option<&str>) -> Result<Table, RuleError> {
    let text = text.ok_or_else(|| {
        invalid(
            at,
            "missing: name the table, e.g. \"orders\" or \"shop.orders\"",
        )
    })?;
    let (schema, name) = match text.split_once('.') {
        Some((s, n)) => (s, n),
        None => (default_schema, text),
    };
    for part in [schema, name] {
        ident(at, part)?;
    }
    Ok(Table {
        schema: schema.into(),
        name: name.into(),
    })
}

/// Column and table names: as PostgreSQL stores unquoted identifiers.
fn ident(at: &str, name: &str) -> Result<(), RuleError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'$');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            at,
            format!("{name:?} is not a lower-case SQL identifier (letters, digits, _)"),
        ))
    }
}

fn column(at: &str, text: &Option<String>) -> Result<Option<String>, RuleError> {
    match text {
        Some(c) => {
            ident(at, c)?;
            Ok(Some(c.clone()))
        }
        None => Ok(None),
    }
}

fn required(at: &str, text: &Option<String>) -> Result<String, RuleError> {
    column(at, text)?.ok_or_else(|| invalid(at, "missing: name the column"))
}

/// Parses `purchase-{id}` into pieces; the result can never be empty or
/// purely numeric, because a literal with a non-digit is required.
pub fn parse_template(at: &str, text: &str) -> Result<Vec<Piece>, RuleError> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        match rest.find('{') {
            Some(0) => {
                let end = rest
                    .find('}')
                    .ok_or_else(|| invalid(at, "a `{` has no closing `}`"))?;
                let col = &rest[1..end];
                ident(at, col)?;
                pieces.push(Piece::Column(col.to_owned()));
                rest = &rest[end + 1..];
            }
            Some(i) => {
                pieces.push(Piece::Text(rest[..i].to_owned()));
                rest = &rest[i..];
            }
            None => {
                if rest.contains('}') {
                    return Err(invalid(at, "a `}` has no opening `{`"));
                }
                pieces.push(Piece::Text(rest.to_owned()));
                rest = "";
            }
        }
    }
    if !pieces.iter().any(|p| matches!(p, Piece::Column(_))) {
        return Err(invalid(
            at,
            "names no column: every event would get the same ID; use e.g. \"purchase-{id}\"",
        ));
    }
    let prefixed = pieces
        .iter()
        .any(|p| matches!(p, Piece::Text(t) if t.chars().any(|c| !c.is_ascii_digit())));
    if !prefixed {
        return Err(invalid(at, "has no text around the columns: a numeric ID is rejected by Google; add a prefix, e.g. \"purchase-{id}\""));
    }
    Ok(pieces)
}

fn item(at: &str, raw: &RawItem) -> Result<ItemColumns, RuleError> {
    Ok(ItemColumns {
        id: required(&format!("{at}.id"), &raw.id)?,
        quantity: column(&format!("{at}.quantity"), &raw.quantity)?,
        unit_price: column(&format!("{at}.unit_price"), &raw.unit_price)?,
        unit_price_minor_units: raw.unit_price_minor_units,
    })
}

fn check_identity(at: &str, id: &RawIdentity) -> Result<(), RuleError> {
    for (f, c) in identity_columns(id) {
        ident(&format!("{at}.{f}"), c)?;
    }
    Ok(())
}

fn condition(at: &str, raw: &RawCondition) -> Result<Condition, RuleError> {
    let column = required(&format!("{at}.column"), &raw.column)?;
    let text = |v: &toml::Value| -> Result<String, RuleError> {
        match v {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(i) => Ok(i.to_string()),
            toml::Value::Boolean(b) => Ok(if *b { "true" } else { "false" }.into()),
            toml::Value::Float(f) => Ok(f.to_string()),
            _ => Err(invalid(at, "compare with a string, number or boolean")),
        }
    };
    let mut tests = Vec::new();
    if let Some(v) = &raw.equals {
        tests.push(Test::In(vec![text(v)?]));
    }
    if let Some(vs) = &raw.in_ {
        if vs.is_empty() {
            return Err(invalid(
                format!("{at}.in"),
                "is empty: the rule could never fire",
            ));
        }
        tests.push(Test::In(vs.iter().map(text).collect::<Result<_, _>>()?));
    }
    match raw.not_null {
        Some(true) => tests.push(Test::NotNull),
        Some(false) => {
            return Err(invalid(
                format!("{at}.not_null"),
                "only `not_null = true` is meaningful",
            ))
        }
        None => {}
    }
    for (op, v) in [
        (Cmp::Gt, raw.gt),
        (Cmp::Gte, raw.gte),
        (Cmp::Lt, raw.lt),
        (Cmp::Lte, raw.lte),
    ] {
        if let Some(v) = v {
            tests.push(Test::Compare(op, v));
        }
    }
    match tests.len() {
        1 => Ok(Condition {
            column,
            test: tests.remove(0),
        }),
        0 => Err(invalid(
            at,
            "has no test: use one of equals, in, not_null, gt, gte, lt, lte",
        )),
        _ => Err(invalid(
            at,
            "has several tests: write one condition per test (all conditions must hold)",
        )),
    }
}

fn join(
    at: &str,
    raw: &RawJoin,
    lookups: &BTreeMap<String, LookupDef>,
    need: &str,
) -> Result<Join, RuleError> {
    let column = required(&format!("{at}.column"), &raw.column)?;
    let lookup = raw.lookup.clone().ok_or_else(|| {
        invalid(
            format!("{at}.lookup"),
            "missing: name a lookup from [lookups]",
        )
    })?;
    let Some(def) = lookups.get(&lookup) else {
        let known: Vec<&str> = lookups.keys().map(String::as_str).collect();
        return Err(invalid(
            format!("{at}.lookup"),
            format!("no lookup named {lookup:?} (known: {})", known.join(", ")),
        ));
    };
    let has = match need {
        "identity" => def.identity.is_some(),
        "session" => def.click_ids.is_some() || def.context.is_some(),
        "consent" => def.consent.is_some(),
        "item" => def.item.is_some(),
        _ => true,
    };
    if !has {
        return Err(invalid(
            format!("{at}.lookup"),
            format!(
                "lookup {lookup:?} has no {need} columns: add a `{need}` table to lookups.{lookup}"
            ),
        ));
    }
    Ok(Join { column, lookup })
}

impl TryFrom<RawRules> for RuleSet {
    type Error = RuleError;

    fn try_from(raw: RawRules) -> Result<RuleSet, RuleError> {
        let schema = raw.schema.unwrap_or_else(|| "public".into());
        ident("schema", &schema)?;
        let mut lookups = BTreeMap::new();
        for (name, l) in raw.lookups {
            let at = format!("lookups.{name}");
            ident(&at, &name)?;
            let def = lookup(&schema, &at, &name, l)?;
            lookups.insert(name, def);
        }
        let mut rules: Vec<Rule> = Vec::new();
        for (i, r) in raw.rules.into_iter().enumerate() {
            let name = r.name.clone().unwrap_or_else(|| format!("#{}", i + 1));
            let at = format!("rules[{name}]");
            if r.name.is_none() {
                return Err(invalid(
                    &at,
                    "missing `name`: give every rule a unique name",
                ));
            }
            if rules.iter().any(|x| x.name == name) {
                return Err(invalid(
                    &at,
                    "the name is used twice: rule names must be unique",
                ));
            }
            rules.push(rule(&schema, &at, name, r, &lookups)?);
        }
        if rules.is_empty() {
            return Err(invalid(
                "rules",
                "no rules: add at least one [[rules]] entry",
            ));
        }
        Ok(RuleSet { rules, lookups })
    }
}

fn lookup(schema: &str, at: &str, name: &str, l: RawLookup) -> Result<LookupDef, RuleError> {
    let table = table(schema, &format!("{at}.table"), l.table.as_deref())?;
    let key = column(&format!("{at}.key"), &l.key)?;
    if let Some(id) = &l.identity {
        check_identity(&format!("{at}.identity"), id)?;
    }
    let item = l
        .item
        .as_ref()
        .map(|i| item(&format!("{at}.item"), i))
        .transpose()?;
    let parts = [
        l.identity.is_some(),
        l.click_ids.is_some() || l.context.is_some(),
        l.consent.is_some(),
        item.is_some(),
    ];
    if !parts.iter().any(|p| *p) {
        return Err(invalid(at, format!("keeps nothing: give lookups.{name} identity, click_ids, context, consent or item columns")));
    }
    let expire_after_s = match l.expire_after_days {
        Some(0) => {
            return Err(invalid(
                format!("{at}.expire_after_days"),
                "must be at least 1 (leave it out for no expiry)",
            ))
        }
        Some(d) => Some(i64::from(d) * 86_400),
        None => None,
    };
    Ok(LookupDef {
        name: name.to_owned(),
        table,
        key,
        expire_after_s,
        identity: l.identity,
        click_ids: l.click_ids,
        context: l.context,
        consent: l.consent,
        item,
    })
}

fn rule(
    schema: &str,
    at: &str,
    name: String,
    r: RawRule,
    lookups: &BTreeMap<String, LookupDef>,
) -> Result<Rule, RuleError> {
    let kind_text = r.kind.clone().ok_or_else(|| {
        invalid(
            format!("{at}.kind"),
            "missing: e.g. \"transaction.purchase\"",
        )
    })?;
    let kind = Kind::new(&kind_text).map_err(|e| invalid(format!("{at}.kind"), e.to_string()))?;
    let table = table(schema, &format!("{at}.table"), r.table.as_deref())?;
    let operations = match &r.operations {
        None => Operations {
            insert: true,
            update: true,
        },
        Some(ops) => {
            let mut o = Operations {
                insert: false,
                update: false,
            };
            for op in ops {
                match op.as_str() {
                    "insert" => o.insert = true,
                    "update" => o.update = true,
                    other => return Err(invalid(format!("{at}.operations"), format!("{other:?} is not an operation: use \"insert\" and/or \"update\" (deletes never make conversions)"))),
                }
            }
            if !o.insert && !o.update {
                return Err(invalid(
                    format!("{at}.operations"),
                    "is empty: the rule could never fire",
                ));
            }
            o
        }
    };
    let when = r
        .when
        .iter()
        .enumerate()
        .map(|(i, c)| condition(&format!("{at}.when[{i}]"), c))
        .collect::<Result<Vec<_>, _>>()?;
    if r.became_true && when.is_empty() {
        return Err(invalid(
            format!("{at}.became_true"),
            "needs `when` conditions to watch",
        ));
    }
    let template = r.event_id.clone().ok_or_else(|| invalid(format!("{at}.event_id"), "missing: a template over the row, e.g. \"purchase-{id}\", matching what the storefront gives the pixel"))?;
    let event_id = parse_template(&format!("{at}.event_id"), &template)?;
    let currency_default = r
        .currency_default
        .as_deref()
        .map(|c| {
            Currency::parse(c).map_err(|e| invalid(format!("{at}.currency_default"), e.to_string()))
        })
        .transpose()?;
    let value = column(&format!("{at}.value"), &r.value)?;
    let currency = column(&format!("{at}.currency"), &r.currency)?;
    if value.is_some() && currency.is_none() && currency_default.is_none() {
        return Err(invalid(
            format!("{at}.currency"),
            "a value needs a currency: name the column, or set currency_default = \"USD\"",
        ));
    }
    if r.value_minor_units && value.is_none() {
        return Err(invalid(
            format!("{at}.value_minor_units"),
            "is set but no `value` column is named",
        ));
    }
    if let Some(id) = &r.identity {
        check_identity(&format!("{at}.identity"), id)?;
    }
    let customer = r
        .customer
        .as_ref()
        .map(|j| join(&format!("{at}.customer"), j, lookups, "identity"))
        .transpose()?;
    let session = r
        .session
        .as_ref()
        .map(|j| join(&format!("{at}.session"), j, lookups, "session"))
        .transpose()?;
    let consent = r
        .consent
        .iter()
        .enumerate()
        .map(|(i, j)| join(&format!("{at}.consent[{i}]"), j, lookups, "consent"))
        .collect::<Result<Vec<_>, _>>()?;
    let items = r
        .items
        .as_ref()
        .map(|j| join(&format!("{at}.items"), j, lookups, "item"))
        .transpose()?;
    if let Some(j) = &items {
        if lookups[&j.lookup].key.is_none() {
            return Err(invalid(format!("{at}.items.lookup"), format!("lookup {:?} has no `key`: items are found by the column that names their order (e.g. key = \"order_id\")", j.lookup)));
        }
    }
    let item = r
        .item
        .as_ref()
        .map(|i| item(&format!("{at}.item"), i))
        .transpose()?;
    if items.is_some() && item.is_some() {
        return Err(invalid(at, "has both `items` and `item`: keep one"));
    }
    let lane = match r.lane.as_deref() {
        None => kind.canonical().map_or(LaneKind::Batched, |c| c.lane),
        Some("real_time") => LaneKind::RealTime,
        Some("batched") => LaneKind::Batched,
        Some(other) => {
            return Err(invalid(
                format!("{at}.lane"),
                format!("{other:?}: use \"real_time\" or \"batched\""),
            ))
        }
    };
    Ok(Rule {
        name,
        kind,
        table,
        operations,
        when,
        became_true: r.became_true,
        event_id,
        event_time: column(&format!("{at}.event_time"), &r.event_time)?,
        order_id: column(&format!("{at}.order_id"), &r.order_id)?,
        value,
        value_minor_units: r.value_minor_units,
        currency,
        currency_default,
        page_url: column(&format!("{at}.page_url"), &r.page_url)?,
        identity: r.identity,
        customer,
        session,
        consent,
        items,
        item,
        lane,
    })
}

#[cfg(test)]
mod tests;
