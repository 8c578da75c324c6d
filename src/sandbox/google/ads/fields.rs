//! The `conversion_action` fields GAQL can select, and their REST JSON rendering.
//!
//! Input: a stored [`Action`] and field indices into [`FIELDS`]. Output: the
//! `ConversionAction` as proto3 JSON (lowerCamelCase, int64 as strings,
//! nested messages as objects, `resourceName` always present).
//!
//! Proto: `google/ads/googleads/v22/resources/conversion_action.proto`. Fields
//! the sandbox keeps no value for (tag snippets, Firebase and GA4 settings,
//! ...) are selectable and come back unset, as for an action that never had them.

use std::cmp::Ordering;

use serde_json::{json, Map, Value};

use super::super::store::Action;
use super::{ATTRIBUTION_MODELS, CATEGORIES, COUNTING_TYPES, STATUSES, TYPES};

/// How a field's values compare and which literals it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// `string`.
    Str,
    /// `int64` (rendered as a string).
    Int,
    /// `double`.
    Double,
    /// `bool`.
    Bool,
    /// An enum with these value names.
    Enum(&'static [&'static str]),
}

/// One selectable `conversion_action` field.
pub(super) struct FieldDef {
    /// GAQL name after `conversion_action.`, e.g. `value_settings.default_value`.
    pub name: &'static str,
    /// Value kind.
    pub kind: Kind,
    /// Reads the value from a stored action (`None` = unset).
    pub get: fn(&Action) -> Option<Value>,
}

const fn field(name: &'static str, kind: Kind, get: fn(&Action) -> Option<Value>) -> FieldDef {
    FieldDef { name, kind, get }
}

/// `ConversionOrigin` value names (enums/conversion_origin.proto).
const ORIGINS: &[&str] = &[
    "UNSPECIFIED",
    "UNKNOWN",
    "WEBSITE",
    "GOOGLE_HOSTED",
    "APP",
    "CALL_FROM_ADS",
    "STORE",
    "YOUTUBE_HOSTED",
];
/// `DataDrivenModelStatus` value names (enums/data_driven_model_status.proto).
pub(super) const MODEL_STATUSES: &[&str] = &[
    "UNSPECIFIED",
    "UNKNOWN",
    "AVAILABLE",
    "STALE",
    "EXPIRED",
    "NEVER_GENERATED",
];

fn unset(_: &Action) -> Option<Value> {
    None
}

/// The fields of `ConversionAction` (v22), with how the sandbox fills them.
#[rustfmt::skip]
pub(super) const FIELDS: &[FieldDef] = &[
    field("resource_name", Kind::Str, |a| Some(json!(a.resource_name()))),
    field("id", Kind::Int, |a| Some(json!(a.id.to_string()))),
    field("name", Kind::Str, |a| Some(json!(a.name))),
    field("status", Kind::Enum(STATUSES), |a| Some(json!(a.status))),
    field("type", Kind::Enum(TYPES), |a| Some(json!(a.action_type))),
    field("category", Kind::Enum(CATEGORIES), |a| Some(json!(a.category))),
    field("origin", Kind::Enum(ORIGINS), unset),
    field("primary_for_goal", Kind::Bool, |a| Some(json!(a.primary_for_goal))),
    field("owner_customer", Kind::Str, |a| Some(json!(format!("customers/{}", a.customer_id)))),
    field("include_in_conversions_metric", Kind::Bool, |a| Some(json!(a.include_in_conversions_metric))),
    field("click_through_lookback_window_days", Kind::Int, |a| Some(json!(a.click_through_days.to_string()))),
    field("view_through_lookback_window_days", Kind::Int, |a| Some(json!(a.view_through_days.to_string()))),
    field("counting_type", Kind::Enum(COUNTING_TYPES), |a| Some(json!(a.counting_type))),
    field("value_settings.default_value", Kind::Double, |a| a.default_value.map(|v| json!(v))),
    field("value_settings.default_currency_code", Kind::Str, |a| a.default_currency_code.as_ref().map(|v| json!(v))),
    field("value_settings.always_use_default_value", Kind::Bool, |a| a.always_use_default_value.map(|v| json!(v))),
    field("attribution_model_settings.attribution_model", Kind::Enum(ATTRIBUTION_MODELS), |a| a.attribution_model.as_ref().map(|v| json!(v))),
    field("attribution_model_settings.data_driven_model_status", Kind::Enum(MODEL_STATUSES), unset),
    field("tag_snippets", Kind::Str, unset),
    field("phone_call_duration_seconds", Kind::Int, unset),
    field("app_id", Kind::Str, unset),
    field("mobile_app_vendor", Kind::Str, unset),
    field("firebase_settings.event_name", Kind::Str, unset),
    field("firebase_settings.project_id", Kind::Str, unset),
    field("firebase_settings.property_id", Kind::Int, unset),
    field("firebase_settings.property_name", Kind::Str, unset),
    field("third_party_app_analytics_settings.event_name", Kind::Str, unset),
    field("third_party_app_analytics_settings.provider_name", Kind::Str, unset),
    field("google_analytics_4_settings.event_name", Kind::Str, unset),
    field("google_analytics_4_settings.property_name", Kind::Str, unset),
    field("google_analytics_4_settings.property_id", Kind::Int, unset),
];

/// An action as REST JSON with every field the sandbox keeps.
pub(super) fn render_all(a: &Action) -> Value {
    let all: Vec<usize> = (0..FIELDS.len()).collect();
    render(a, &all)
}

/// An action as REST JSON with `resourceName` and the given fields.
pub(super) fn render(a: &Action, fields: &[usize]) -> Value {
    let mut obj = Map::new();
    obj.insert("resourceName".into(), json!(a.resource_name()));
    for &f in fields {
        let Some(v) = (FIELDS[f].get)(a) else {
            continue;
        };
        let parts: Vec<String> = FIELDS[f].name.split('.').map(camel).collect();
        insert(&mut obj, &parts, v);
    }
    Value::Object(obj)
}

/// Sets `obj.a.b.c = v` for `parts = [a, b, c]`, creating the inner objects.
fn insert(obj: &mut Map<String, Value>, parts: &[String], v: Value) {
    match parts {
        [] => {}
        [last] => {
            obj.insert(last.clone(), v);
        }
        [first, rest @ ..] => {
            let entry = obj.entry(first.clone()).or_insert_with(|| json!({}));
            if let Value::Object(inner) = entry {
                insert(inner, rest, v);
            }
        }
    }
}

/// `click_through_lookback_window_days` → `clickThroughLookbackWindowDays`.
fn camel(snake: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for ch in snake.chars() {
        if ch == '_' {
            upper = true;
        } else if upper {
            out.push(ch.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(ch);
        }
    }
    out
}

/// A dotted GAQL field name in its REST field-mask form.
pub(super) fn camel_path(name: &str) -> String {
    name.split('.').map(camel).collect::<Vec<_>>().join(".")
}

/// Orders two field values for ORDER BY (int64 strings numerically, unset first).
pub(super) fn compare(x: &Option<Value>, y: &Option<Value>) -> Ordering {
    match (x, y) {
        (Some(Value::String(a)), Some(Value::String(b))) => {
            match (a.parse::<i64>(), b.parse::<i64>()) {
                (Ok(m), Ok(n)) => m.cmp(&n),
                _ => a.cmp(b),
            }
        }
        (Some(Value::Number(a)), Some(Value::Number(b))) => a
            .as_f64()
            .partial_cmp(&b.as_f64())
            .unwrap_or(Ordering::Equal),
        (Some(Value::Bool(a)), Some(Value::Bool(b))) => a.cmp(b),
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        _ => Ordering::Equal,
    }
}
