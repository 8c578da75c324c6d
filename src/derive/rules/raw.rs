//! The rules file as written (serde, `deny_unknown_fields`): see
//! `docs/configuration.md` for the format and `config/rules.default.toml`
//! for the rules that target the reference schema.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A whole rules file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRules {
    /// Schema for unqualified table names (default `public`).
    pub schema: Option<String>,
    /// Lookups by name.
    #[serde(default)]
    pub lookups: BTreeMap<String, RawLookup>,
    /// Rules, in the order they are tried.
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

/// `[lookups.<name>]`: a table kept as as-of state in the spool.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLookup {
    /// Table, `schema.table` or `table`.
    pub table: Option<String>,
    /// Column rules reach entries by (default: the primary key). Several
    /// rows may share it (a consent log, the items of an order): a single
    /// lookup takes the latest, `items` takes them all.
    pub key: Option<String>,
    /// Entries older than this (by their last change) count as gone.
    pub expire_after_days: Option<u32>,
    /// Identity columns, hashed on the way in.
    pub identity: Option<RawIdentity>,
    /// Click ID columns.
    pub click_ids: Option<RawClickIds>,
    /// Session context columns.
    pub context: Option<RawContext>,
    /// Consent Mode v2 columns.
    pub consent: Option<RawConsent>,
    /// Line-item columns.
    pub item: Option<RawItem>,
}

/// Identity fields → column names.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    pub email: Option<String>,
    pub phone: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub zip: Option<String>,
    pub country: Option<String>,
    pub external_id: Option<String>,
}

/// Click ID fields → column names.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawClickIds {
    pub fbclid: Option<String>,
    pub fbclid_seen_at: Option<String>,
    pub fbc: Option<String>,
    pub fbp: Option<String>,
    pub gclid: Option<String>,
    pub gbraid: Option<String>,
    pub wbraid: Option<String>,
}

/// Session context fields → column names.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawContext {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub page_url: Option<String>,
}

/// Consent Mode v2 signals → column names.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawConsent {
    pub ad_storage: Option<String>,
    pub analytics_storage: Option<String>,
    pub ad_user_data: Option<String>,
    pub ad_personalization: Option<String>,
}

/// Line-item fields → column names.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawItem {
    pub id: Option<String>,
    pub quantity: Option<String>,
    pub unit_price: Option<String>,
    /// Prices are integer minor units (cents).
    #[serde(default)]
    pub unit_price_minor_units: bool,
}

/// `[[rules]]`: which row changes are which conversion.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub table: Option<String>,
    /// `insert`, `update` (default: both).
    pub operations: Option<Vec<String>>,
    /// All must hold on the new row.
    #[serde(default)]
    pub when: Vec<RawCondition>,
    /// Fire only when `when` turned true in this change.
    #[serde(default)]
    pub became_true: bool,
    pub event_id: Option<String>,
    pub event_time: Option<String>,
    pub order_id: Option<String>,
    pub value: Option<String>,
    #[serde(default)]
    pub value_minor_units: bool,
    pub currency: Option<String>,
    pub currency_default: Option<String>,
    pub page_url: Option<String>,
    /// Identity columns on the rule's own row (lead forms, sign-ups).
    pub identity: Option<RawIdentity>,
    pub customer: Option<RawJoin>,
    pub session: Option<RawJoin>,
    /// Consent sources in order of preference.
    #[serde(default)]
    pub consent: Vec<RawJoin>,
    /// The event's items from an items lookup.
    pub items: Option<RawJoin>,
    /// Or one item from the rule's own row.
    pub item: Option<RawItem>,
    /// `real_time` or `batched` (default: the kind's).
    pub lane: Option<String>,
}

/// A column of the rule's row that names an entry of a lookup.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawJoin {
    pub column: Option<String>,
    pub lookup: Option<String>,
}

/// One condition on a column of the new row.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawCondition {
    pub column: Option<String>,
    pub equals: Option<toml::Value>,
    #[serde(rename = "in")]
    pub in_: Option<Vec<toml::Value>>,
    pub not_null: Option<bool>,
    pub gt: Option<f64>,
    pub gte: Option<f64>,
    pub lt: Option<f64>,
    pub lte: Option<f64>,
}
