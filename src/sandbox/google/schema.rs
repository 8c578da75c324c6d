//! Proto3-JSON reading with Google's strictness, shared by Data Manager and Ads bodies.
//!
//! Input: a `serde_json::Value` plus, per message, the list of its JSON
//! field names (lowerCamelCase, as protoc derives them). Output: typed
//! values, and [`Violation`]s naming the field path.
//!
//! Rules (proto3 JSON mapping, https://protobuf.dev/programming-guides/json/):
//! parsers accept the lowerCamelCase name *and* the original snake_case
//! name; `null` means "unset"; an unknown name is an error (Google's front
//! end answers `Invalid JSON payload received. Unknown name ...`); int64
//! may be a JSON number or a decimal string; doubles may be numbers or
//! numeric strings; enums are their value names. Sandbox-strict: enum
//! integers and non-finite doubles (`"NaN"`) are refused.
//!
//! Invariant: descriptions name fields and types, never the values sent, so
//! a violation can be logged or stored without leaking PII.

use serde_json::{Map, Value};

/// A path into the request, e.g. `events[3].userData.userIdentifiers[0]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Path(Vec<Seg>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Field(&'static str),
    Index(usize),
}

impl Path {
    /// The root of the request body.
    pub(super) fn root() -> Path {
        Path(Vec::new())
    }

    /// This path extended by a field (given by its JSON name).
    pub(super) fn field(&self, camel: &'static str) -> Path {
        let mut p = self.clone();
        p.0.push(Seg::Field(camel));
        p
    }

    /// This path extended by a list index.
    pub(super) fn index(&self, i: usize) -> Path {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }

    /// JSON-name form, as the sender wrote it: `events[3].transactionId`.
    pub(super) fn camel(&self) -> String {
        self.render(|s| s.to_owned())
    }

    /// Proto-name form, as Google's `BadRequest.field_violations[].field` shows it:
    /// `events[3].transaction_id`.
    pub(super) fn snake(&self) -> String {
        self.render(to_snake)
    }

    /// `(field_name, index)` pairs, as Google Ads' `ErrorLocation.field_path_elements`.
    pub(super) fn elements(&self) -> Vec<(String, Option<usize>)> {
        let mut out: Vec<(String, Option<usize>)> = Vec::new();
        for seg in &self.0 {
            match seg {
                Seg::Field(name) => out.push((to_snake(name), None)),
                Seg::Index(i) => {
                    if let Some(last) = out.last_mut() {
                        last.1 = Some(*i);
                    }
                }
            }
        }
        out
    }

    fn render(&self, name: impl Fn(&str) -> String) -> String {
        let mut s = String::new();
        for seg in &self.0 {
            match seg {
                Seg::Field(f) => {
                    if !s.is_empty() {
                        s.push('.');
                    }
                    s.push_str(&name(f));
                }
                Seg::Index(i) => s.push_str(&format!("[{i}]")),
            }
        }
        s
    }
}

/// `productDestinationId` → `product_destination_id`; a digit run starts a new word
/// (`googleAnalytics4Settings` → `google_analytics_4_settings`), as protoc's names do.
fn to_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    let mut prev_digit = false;
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_digit() && !prev_digit {
            out.push('_');
            out.push(c);
        } else {
            out.push(c);
        }
        prev_digit = c.is_ascii_digit();
    }
    out
}

/// One problem found in a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Violation {
    /// Where the problem is.
    pub path: Path,
    /// Why it is a problem (no values quoted).
    pub description: String,
    /// Data Manager `ErrorReason` name, when the check has one.
    pub reason: Option<&'static str>,
    /// True for JSON-mapping errors, which Google's front end reports alone.
    pub parse: bool,
}

/// The fields of one JSON object, keyed by canonical (camelCase) name.
#[derive(Debug)]
pub(super) struct Fields<'a> {
    /// Path of the object itself.
    pub path: Path,
    map: Vec<(&'static str, &'a Value)>,
}

impl<'a> Fields<'a> {
    /// The raw value of a set (non-null) field.
    pub(super) fn get(&self, name: &str) -> Option<&'a Value> {
        self.map.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    /// Whether a field is set.
    pub(super) fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// Collects violations while reading a body.
#[derive(Debug, Default)]
pub(super) struct Checker {
    /// Everything found so far, in body order.
    pub violations: Vec<Violation>,
}

/// Google's protobuf JSON type names used in "Invalid value" messages.
const T_STRING: &str = "TYPE_STRING";
const T_DOUBLE: &str = "TYPE_DOUBLE";
const T_INT64: &str = "TYPE_INT64";
const T_INT32: &str = "TYPE_INT32";
const T_BOOL: &str = "TYPE_BOOL";

impl Checker {
    /// Records a JSON-mapping error (unknown name, wrong JSON type, bad enum name).
    pub(super) fn parse_error(&mut self, path: &Path, description: String) {
        self.violations.push(Violation {
            path: path.clone(),
            description,
            reason: None,
            parse: true,
        });
    }

    /// Records a semantic error with its Data Manager `ErrorReason`.
    pub(super) fn invalid(
        &mut self,
        path: &Path,
        reason: &'static str,
        description: impl Into<String>,
    ) {
        self.violations.push(Violation {
            path: path.clone(),
            description: description.into(),
            reason: Some(reason),
            parse: false,
        });
    }

    /// Whether any JSON-mapping error was found (later checks may then be skipped).
    pub(super) fn has_parse_errors(&self) -> bool {
        self.violations.iter().any(|v| v.parse)
    }

    /// Reads `value` as a message with the given JSON field names.
    pub(super) fn object<'a>(
        &mut self,
        value: &'a Value,
        path: &Path,
        schema: &[&'static str],
    ) -> Option<Fields<'a>> {
        let Value::Object(obj) = value else {
            self.type_error(path, "TYPE_MESSAGE", "a JSON object");
            return None;
        };
        Some(self.fields(obj, path, schema))
    }

    fn fields<'a>(
        &mut self,
        obj: &'a Map<String, Value>,
        path: &Path,
        schema: &[&'static str],
    ) -> Fields<'a> {
        let mut map: Vec<(&'static str, &'a Value)> = Vec::new();
        for (key, value) in obj {
            let known = schema
                .iter()
                .find(|name| **name == key.as_str() || to_snake(name) == *key);
            let Some(name) = known else {
                let at = if path.0.is_empty() {
                    String::new()
                } else {
                    format!(" at '{}'", path.camel())
                };
                self.parse_error(
                    path,
                    format!(
                        "Invalid JSON payload received. Unknown name \"{}\"{at}: Cannot find field.",
                        printable_key(key)
                    ),
                );
                continue;
            };
            if map.iter().any(|(n, _)| n == name) {
                self.parse_error(
                    &path.field(name),
                    format!(
                        "Invalid JSON payload received. Field '{}' is set twice (JSON and proto names).",
                        path.field(name).camel()
                    ),
                );
                continue;
            }
            if !value.is_null() {
                map.push((name, value));
            }
        }
        Fields {
            path: path.clone(),
            map,
        }
    }

    /// A nested message field.
    pub(super) fn message<'a>(
        &mut self,
        f: &Fields<'a>,
        name: &'static str,
        schema: &[&'static str],
    ) -> Option<Fields<'a>> {
        let v = f.get(name)?;
        self.object(v, &f.path.field(name), schema)
    }

    /// A repeated field; `None` when unset, `Some(&[])` when set to `[]`.
    pub(super) fn list<'a>(&mut self, f: &Fields<'a>, name: &'static str) -> Option<&'a [Value]> {
        match f.get(name)? {
            Value::Array(items) => Some(items),
            _ => {
                self.parse_error(
                    &f.path.field(name),
                    format!(
                        "Invalid value at '{}': Proto field is repeated; expected a JSON array.",
                        f.path.field(name).camel()
                    ),
                );
                None
            }
        }
    }

    /// A string field; the empty string reads as unset (proto3 default).
    pub(super) fn string<'a>(&mut self, f: &Fields<'a>, name: &'static str) -> Option<&'a str> {
        match f.get(name)? {
            Value::String(s) if s.is_empty() => None,
            Value::String(s) => Some(s),
            _ => {
                self.type_error(&f.path.field(name), T_STRING, "a JSON string");
                None
            }
        }
    }

    /// A required string field: unset or empty adds `REQUIRED_FIELD_MISSING`.
    pub(super) fn required_string<'a>(
        &mut self,
        f: &Fields<'a>,
        name: &'static str,
    ) -> Option<&'a str> {
        let wrong_type = f.get(name).is_some_and(|v| !v.is_string());
        let s = self.string(f, name);
        if s.is_none() && !wrong_type {
            self.invalid(
                &f.path.field(name),
                "REQUIRED_FIELD_MISSING",
                format!("{name} is required."),
            );
        }
        s
    }

    /// A string element of a repeated string field.
    pub(super) fn string_item<'a>(&mut self, v: &'a Value, path: &Path) -> Option<&'a str> {
        match v {
            Value::String(s) => Some(s),
            _ => {
                self.type_error(path, T_STRING, "a JSON string");
                None
            }
        }
    }

    /// A `bool` field.
    pub(super) fn boolean(&mut self, f: &Fields<'_>, name: &'static str) -> Option<bool> {
        match f.get(name)? {
            Value::Bool(b) => Some(*b),
            _ => {
                self.type_error(&f.path.field(name), T_BOOL, "true or false");
                None
            }
        }
    }

    /// A `double` field: a JSON number or a numeric string, finite.
    pub(super) fn double(&mut self, f: &Fields<'_>, name: &'static str) -> Option<f64> {
        let v = f.get(name)?;
        let parsed = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match parsed {
            Some(x) if x.is_finite() => Some(x),
            _ => {
                self.type_error(&f.path.field(name), T_DOUBLE, "a finite number");
                None
            }
        }
    }

    /// An `int64` field: a JSON integer or a decimal string.
    pub(super) fn int64(&mut self, f: &Fields<'_>, name: &'static str) -> Option<i64> {
        self.integer(f, name, T_INT64, i64::MIN, i64::MAX)
    }

    /// An `int32` field: a JSON integer or a decimal string within range.
    pub(super) fn int32(&mut self, f: &Fields<'_>, name: &'static str) -> Option<i64> {
        self.integer(f, name, T_INT32, i64::from(i32::MIN), i64::from(i32::MAX))
    }

    fn integer(
        &mut self,
        f: &Fields<'_>,
        name: &'static str,
        type_name: &str,
        min: i64,
        max: i64,
    ) -> Option<i64> {
        let v = f.get(name)?;
        let parsed = match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.parse::<i64>().ok(),
            _ => None,
        };
        match parsed {
            Some(x) if (min..=max).contains(&x) => Some(x),
            _ => {
                self.type_error(&f.path.field(name), type_name, "an integer");
                None
            }
        }
    }

    /// An enum field: one of `values` (its value names); `None` when unset.
    pub(super) fn enumeration<'a>(
        &mut self,
        f: &Fields<'a>,
        name: &'static str,
        type_url: &str,
        values: &[&'static str],
    ) -> Option<&'a str> {
        let v = f.get(name)?;
        let path = f.path.field(name);
        match v {
            Value::String(s) if values.contains(&s.as_str()) => Some(s),
            _ => {
                self.parse_error(
                    &path,
                    format!(
                        "Invalid value at '{}' ({type_url}): not a value name of this enum.",
                        path.camel()
                    ),
                );
                None
            }
        }
    }

    /// An RFC 3339 `google.protobuf.Timestamp` field, as Unix milliseconds.
    pub(super) fn timestamp(&mut self, f: &Fields<'_>, name: &'static str) -> Option<i64> {
        let v = f.get(name)?;
        let path = f.path.field(name);
        let parsed = v.as_str().and_then(super::time::parse_rfc3339);
        if parsed.is_none() {
            self.parse_error(
                &path,
                format!(
                    "Invalid value at '{}' (type.googleapis.com/google.protobuf.Timestamp): \
                     expected an RFC 3339 string such as 2025-06-10T20:07:01Z.",
                    path.camel()
                ),
            );
        }
        parsed
    }

    fn type_error(&mut self, path: &Path, type_name: &str, expected: &str) {
        let description = if path.0.is_empty() {
            format!("Invalid JSON payload received. The request body must be {expected}.")
        } else {
            format!(
                "Invalid value at '{}' ({type_name}): expected {expected}.",
                path.camel()
            )
        };
        self.parse_error(path, description);
    }
}

/// An unknown key is echoed (Google does), but only if it looks like a field name.
fn printable_key(key: &str) -> String {
    let ok = key.len() <= 64
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '@');
    if ok {
        key.to_owned()
    } else {
        "[unprintable]".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_render_both_ways() {
        let p = Path::root()
            .field("events")
            .index(3)
            .field("userData")
            .field("userIdentifiers")
            .index(0);
        assert_eq!(p.camel(), "events[3].userData.userIdentifiers[0]");
        assert_eq!(p.snake(), "events[3].user_data.user_identifiers[0]");
        assert_eq!(
            to_snake("googleAnalytics4Settings"),
            "google_analytics_4_settings"
        );
        assert_eq!(
            p.elements(),
            vec![
                ("events".to_owned(), Some(3)),
                ("user_data".to_owned(), None),
                ("user_identifiers".to_owned(), Some(0)),
            ]
        );
    }

    #[test]
    fn accepts_both_names_rejects_unknown_and_duplicates() {
        let mut c = Checker::default();
        let v = json!({"transaction_id": "a", "eventSource": null, "foo": 1});
        let f = c.object(
            &v,
            &Path::root().field("events").index(0),
            &["transactionId", "eventSource"],
        );
        let f = f.unwrap();
        assert_eq!(c.string(&f, "transactionId"), Some("a"));
        assert!(!f.has("eventSource"));
        assert_eq!(c.violations.len(), 1);
        assert!(c.violations[0]
            .description
            .contains("Unknown name \"foo\" at 'events[0]'"));

        let mut c = Checker::default();
        let v = json!({"transaction_id": "a", "transactionId": "b"});
        c.object(&v, &Path::root(), &["transactionId"]);
        assert_eq!(c.violations.len(), 1);
    }

    #[test]
    fn numbers_follow_proto3_json() {
        let mut c = Checker::default();
        let v = json!({"q": "12", "n": 3, "d": "1.5", "bad": "NaN", "big": 3_000_000_000_i64});
        let f = c
            .object(&v, &Path::root(), &["q", "n", "d", "bad", "big"])
            .unwrap();
        assert_eq!(c.int64(&f, "q"), Some(12));
        assert_eq!(c.int64(&f, "n"), Some(3));
        assert_eq!(c.double(&f, "d"), Some(1.5));
        assert_eq!(c.double(&f, "bad"), None);
        assert_eq!(c.int32(&f, "big"), None);
        assert_eq!(c.violations.len(), 2);
    }
}
