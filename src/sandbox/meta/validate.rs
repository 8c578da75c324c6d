//! The checks Meta applies to `data`, as a pure function of the JSON and the clock.
//!
//! Input: the request's `data` value and "now" in Unix seconds. Output: the
//! events, or the first [`GraphError`] found (Meta rejects the whole request
//! when one event is invalid, so the first error decides the answer).
//!
//! Rules come from `spec/meta-capi.md` §1.3, §2, §3, §4, §5. Where Meta
//! publishes no subcode the sandbox answers plain code 100. A few checks are
//! deliberately a little stricter than Meta is known to be; they are marked
//! "sandbox-strict" and catch sender bugs that Meta would accept silently
//! and then fail to match.

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::error::{self, GraphError};

/// Meta accepts at most 1,000 events per request.
pub const MAX_EVENTS: usize = 1000;
/// Any event older than 7 days fails the whole request (2804003).
pub const MAX_AGE_S: i64 = 7 * 86_400;
/// `physical_store` events may be uploaded up to 62 days late.
pub const MAX_AGE_PHYSICAL_STORE_S: i64 = 62 * 86_400;
/// Meta publishes no future bound; RudderStack rejects > 1 minute ahead, and so do we.
pub const MAX_FUTURE_S: i64 = 60;

/// Documented `action_source` values (spec §2.2).
const ACTION_SOURCES: &[&str] = &[
    "website",
    "app",
    "email",
    "phone_call",
    "chat",
    "physical_store",
    "system_generated",
    "business_messaging",
    "other",
];

/// Server-event keys Meta documents (spec §2.1, plus app/messaging fields).
const EVENT_KEYS: &[&str] = &[
    "event_name",
    "event_time",
    "user_data",
    "custom_data",
    "event_source_url",
    "action_source",
    "event_id",
    "opt_out",
    "data_processing_options",
    "data_processing_options_country",
    "data_processing_options_state",
    "referrer_url",
    "original_event_data",
    "customer_segmentation",
    "app_data",
    "extinfo",
    "messaging_channel",
];

/// `user_data` keys that must arrive as SHA-256 (spec §3.1).
const HASHED_KEYS: &[&str] = &[
    "em", "ph", "fn", "ln", "ct", "st", "zp", "country", "db", "ge",
];

/// `user_data` keys sent in clear (spec §3.2).
const CLEAR_KEYS: &[&str] = &[
    "external_id",
    "client_ip_address",
    "client_user_agent",
    "fbc",
    "fbp",
    "subscription_id",
    "fb_login_id",
    "lead_id",
    "anon_id",
    "madid",
    "page_id",
    "page_scoped_user_id",
    "ctwa_clid",
    "ig_account_id",
    "ig_sid",
];

/// Key sets that are never enough to match a person (spec §3.4, since v13.0).
const INSUFFICIENT: &[&[&str]] = &[
    &["ct", "country", "st", "zp", "ge", "client_user_agent"],
    &["db", "client_user_agent"],
    &["fn", "ge"],
    &["ln", "ge"],
];

/// Checks `data` and returns its events.
pub fn validate_data(data: Option<&Value>, now_s: i64) -> Result<&[Value], GraphError> {
    let events = match data {
        None => return Err(GraphError::invalid("The parameter data is required")),
        Some(Value::Array(events)) => events,
        Some(_) => return Err(GraphError::invalid("Param data must be an array.")),
    };
    if events.is_empty() {
        return Err(GraphError::invalid(
            "Param data must contain at least one event.",
        ));
    }
    if events.len() > MAX_EVENTS {
        return Err(GraphError::invalid(format!(
            "Param data must contain at most {MAX_EVENTS} events."
        )));
    }
    for (i, event) in events.iter().enumerate() {
        validate_event(i, event, now_s)?;
    }
    Ok(events)
}

fn validate_event(i: usize, event: &Value, now_s: i64) -> Result<(), GraphError> {
    let p = format!("data[{i}]");
    let ev = event
        .as_object()
        .ok_or_else(|| GraphError::invalid(format!("Param {p} must be an object.")))?;
    reject_unknown_keys(ev, EVENT_KEYS, &p)?;

    non_empty_str(ev.get("event_name"), &format!("{p}[event_name]"))?;
    if let Some(id) = ev.get("event_id") {
        non_empty_str(Some(id), &format!("{p}[event_id]"))?;
    }

    let action_source = non_empty_str(ev.get("action_source"), &format!("{p}[action_source]"))?;
    if !ACTION_SOURCES.contains(&action_source) {
        return Err(GraphError::invalid(format!(
            "Param {p}[action_source] must be one of {{{}}}.",
            ACTION_SOURCES.join(", ")
        )));
    }
    check_event_time(ev.get("event_time"), action_source, now_s, &p)?;

    let website = action_source == "website";
    match ev.get("event_source_url") {
        Some(url) => http_url(url, &format!("{p}[event_source_url]"))?,
        None if website => {
            return Err(GraphError::invalid(format!(
                "Param {p}[event_source_url] is required for action_source website."
            )))
        }
        None => {}
    }
    if let Some(url) = ev.get("referrer_url") {
        http_url(url, &format!("{p}[referrer_url]"))?;
    }
    if let Some(v) = ev.get("opt_out") {
        if !v.is_boolean() {
            return Err(GraphError::invalid(format!(
                "Param {p}[opt_out] must be a boolean."
            )));
        }
    }
    if let Some(v) = ev.get("data_processing_options") {
        if !v.as_array().is_some_and(|a| a.iter().all(Value::is_string)) {
            return Err(GraphError::invalid(format!(
                "Param {p}[data_processing_options] must be an array of strings."
            )));
        }
    }

    let user_data = ev
        .get("user_data")
        .ok_or_else(|| GraphError::invalid(format!("The parameter {p}[user_data] is required")))?;
    validate_user_data(user_data, website, &format!("{p}[user_data]"))?;

    let is_purchase = ev.get("event_name").and_then(Value::as_str) == Some("Purchase");
    match ev.get("custom_data") {
        Some(cd) => validate_custom_data(cd, is_purchase, &format!("{p}[custom_data]")),
        None if is_purchase => Err(GraphError::invalid(format!(
            "Param {p}[custom_data] with value and currency is required for Purchase events."
        ))),
        None => Ok(()),
    }
}

fn check_event_time(
    t: Option<&Value>,
    action_source: &str,
    now_s: i64,
    p: &str,
) -> Result<(), GraphError> {
    let path = format!("{p}[event_time]");
    let t = match t {
        None => {
            return Err(GraphError::invalid(format!(
                "The parameter {path} is required"
            )))
        }
        // Integers only: `1.7e9` or `"1700000000"` are sender bugs (sandbox-strict).
        Some(v) => v.as_i64().ok_or_else(|| {
            GraphError::invalid(format!(
                "Param {path} must be an integer Unix timestamp in seconds."
            ))
        })?,
    };
    let max_age = if action_source == "physical_store" {
        MAX_AGE_PHYSICAL_STORE_S
    } else {
        MAX_AGE_S
    };
    if now_s - t > max_age {
        return Err(GraphError::invalid_sub(
            error::SUB_TOO_OLD,
            "Event Timestamp Too Old",
            format!(
                "The timestamp for this event ({path}) is older than {} days. Please check whether the \
                 event_time is correct and in Unix seconds.",
                max_age / 86_400
            ),
        ));
    }
    if t - now_s > MAX_FUTURE_S {
        return Err(GraphError::invalid(format!(
            "Param {path} is more than {MAX_FUTURE_S} seconds in the future."
        )));
    }
    Ok(())
}

fn validate_user_data(ud: &Value, website: bool, p: &str) -> Result<(), GraphError> {
    let ud = ud
        .as_object()
        .ok_or_else(|| GraphError::invalid(format!("Param {p} must be an object.")))?;
    if ud.is_empty() {
        return Err(GraphError::invalid(format!(
            "Param {p} must contain at least one customer information parameter."
        )));
    }
    for (key, value) in ud {
        let path = format!("{p}[{key}]");
        if HASHED_KEYS.contains(&key.as_str()) {
            hashed(value, &path)?;
        } else if CLEAR_KEYS.contains(&key.as_str()) {
            clear_field(key, value, &path)?;
        } else {
            return Err(unexpected_key(key, p));
        }
    }
    if website && !ud.contains_key("client_user_agent") {
        return Err(GraphError::invalid(format!(
            "Param {p}[client_user_agent] is required for action_source website."
        )));
    }
    if INSUFFICIENT
        .iter()
        .any(|set| ud.keys().all(|k| set.contains(&k.as_str())))
    {
        return Err(GraphError::invalid_sub(
            error::SUB_INSUFFICIENT_INFO,
            "Insufficient Customer Information",
            format!("The customer information in {p} is not enough to match this event."),
        ));
    }
    Ok(())
}

/// A hashed key: one 64-lowercase-hex string or a non-empty array of them.
fn hashed(value: &Value, path: &str) -> Result<(), GraphError> {
    let not_hashed = || {
        GraphError::invalid_sub(
            error::SUB_NOT_HASHED,
            "User Parameter Not Hashed",
            format!(
                "Param {path} must be hashed with SHA-256 (64 lowercase hexadecimal characters)."
            ),
        )
    };
    let is_hash = |v: &Value| v.as_str().is_some_and(is_sha256_lower);
    match value {
        Value::Array(items) if items.is_empty() => Err(empty(path)), // sandbox-strict
        Value::Array(items) if items.iter().all(is_hash) => Ok(()),
        v if is_hash(v) => Ok(()),
        _ => Err(not_hashed()),
    }
}

fn clear_field(key: &str, value: &Value, path: &str) -> Result<(), GraphError> {
    match key {
        "external_id" => match value {
            Value::Array(items) if !items.is_empty() && items.iter().all(non_empty_string) => Ok(()),
            v if non_empty_string(v) => Ok(()),
            _ => Err(GraphError::invalid(format!("Param {path} must be a non-empty string or array of strings."))),
        },
        "client_ip_address" => match value.as_str().map(str::parse::<IpAddr>) {
            Some(Ok(_)) => Ok(()),
            _ => Err(GraphError::invalid(format!("Param {path} must be a valid IPv4 or IPv6 address."))),
        },
        "fbc" if !value.as_str().is_some_and(is_fbc) => Err(GraphError::invalid_sub(
            error::SUB_BAD_FBC,
            "Click ID Incorrectly Formatted",
            format!("Param {path} must be formatted as fb.<subdomain index>.<creation time ms>.<fbclid>."),
        )),
        "fbp" if !value.as_str().is_some_and(is_fbp) => Err(GraphError::invalid(format!(
            "Param {path} must be formatted as fb.<subdomain index>.<creation time ms>.<random number>."
        ))),
        _ if !non_empty_string(value) && !value.is_number() => Err(empty(path)),
        _ => Ok(()),
    }
}

fn validate_custom_data(cd: &Value, is_purchase: bool, p: &str) -> Result<(), GraphError> {
    let cd = cd
        .as_object()
        .ok_or_else(|| GraphError::invalid(format!("Param {p} must be an object.")))?;
    match cd.get("value") {
        Some(v) if !v.is_number() => {
            return Err(GraphError::invalid(format!(
                "Param {p}[value] must be a number."
            )))
        }
        None if is_purchase => {
            return Err(GraphError::invalid(format!(
                "Param {p}[value] is required for Purchase events."
            )))
        }
        _ => {}
    }
    match cd.get("currency") {
        Some(c)
            if !c
                .as_str()
                .is_some_and(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic())) =>
        {
            return Err(GraphError::invalid(format!(
                "Param {p}[currency] must be a 3-letter ISO 4217 code."
            )))
        }
        None if is_purchase => {
            return Err(GraphError::invalid(format!(
                "Param {p}[currency] is required for Purchase events."
            )))
        }
        _ => {}
    }
    if let Some(ids) = cd.get("content_ids") {
        if !ids
            .as_array()
            .is_some_and(|a| a.iter().all(|v| v.is_string() || v.is_number()))
        {
            return Err(GraphError::invalid(format!(
                "Param {p}[content_ids] must be an array of strings."
            )));
        }
    }
    if let Some(contents) = cd.get("contents") {
        if !contents
            .as_array()
            .is_some_and(|a| a.iter().all(|c| c.get("id").is_some()))
        {
            return Err(GraphError::invalid(format!(
                "Param {p}[contents] must be an array of objects with an id."
            )));
        }
    }
    Ok(())
}

fn reject_unknown_keys(
    obj: &Map<String, Value>,
    known: &[&str],
    p: &str,
) -> Result<(), GraphError> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        Some(key) => Err(unexpected_key(key, p)),
        None => Ok(()),
    }
}

/// Graph's wording for a key the typed parameter does not define.
fn unexpected_key(key: &str, p: &str) -> GraphError {
    // Key names are chosen by the sender's code, not PII; echoing them helps debugging.
    GraphError::invalid(format!("Unexpected key \"{key}\" on param \"{p}\"."))
}

fn empty(path: &str) -> GraphError {
    GraphError::invalid(format!("Param {path} must not be empty."))
}

fn non_empty_string(v: &Value) -> bool {
    v.as_str().is_some_and(|s| !s.trim().is_empty())
}

fn non_empty_str<'a>(v: Option<&'a Value>, path: &str) -> Result<&'a str, GraphError> {
    match v {
        None => Err(GraphError::invalid(format!(
            "The parameter {path} is required"
        ))),
        Some(v) if non_empty_string(v) => Ok(v.as_str().unwrap_or_default()),
        Some(_) => Err(GraphError::invalid(format!(
            "Param {path} must be a non-empty string."
        ))),
    }
}

fn http_url(v: &Value, path: &str) -> Result<(), GraphError> {
    let ok = v.as_str().is_some_and(|s| {
        let rest = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"));
        rest.is_some_and(|r| !r.is_empty() && !r.contains(char::is_whitespace))
    });
    if ok {
        Ok(())
    } else {
        Err(GraphError::invalid(format!(
            "Param {path} must be an absolute http(s) URL."
        )))
    }
}

fn is_sha256_lower(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `fb.<subdomain index>.<13-digit ms>.<rest>`; the creation time must be in
/// milliseconds (sandbox-strict: seconds there is a known sender bug, spec §4.3).
fn fb_cookie_parts(s: &str) -> Option<&str> {
    let mut parts = s.splitn(4, '.');
    let ok = parts.next() == Some("fb")
        && parts.next().is_some_and(|d| {
            !d.is_empty() && d.len() <= 3 && d.bytes().all(|b| b.is_ascii_digit())
        })
        && parts
            .next()
            .is_some_and(|ms| ms.len() == 13 && ms.bytes().all(|b| b.is_ascii_digit()));
    ok.then(|| parts.next())
        .flatten()
        .filter(|rest| !rest.is_empty())
}

fn is_fbc(s: &str) -> bool {
    // The fbclid is opaque and case sensitive; only its presence and charset are checked.
    fb_cookie_parts(s).is_some_and(|rest| !rest.contains(char::is_whitespace) && rest.is_ascii())
}

fn is_fbp(s: &str) -> bool {
    fb_cookie_parts(s).is_some_and(|rest| {
        let mut it = rest.splitn(2, '.');
        let random = it.next().unwrap_or_default();
        let appendix_ok = it.next().is_none_or(|a| {
            !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
        !random.is_empty() && random.bytes().all(|b| b.is_ascii_digit()) && appendix_ok
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_shapes() {
        assert!(is_fbc(
            "fb.1.1554763741205.IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgk"
        ));
        assert!(
            is_fbc("fb.1.1554763741205.IwAR2F4.AbCdEfGh"),
            "parameter-builder appendix"
        );
        assert!(!is_fbc("fb.1.1554763741205."), "missing fbclid");
        assert!(!is_fbc("fb.1.1554763741.IwAR2"), "seconds, not ms");
        assert!(!is_fbc("IwAR2F4-dbP0l7Mn1"), "bare fbclid");
        assert!(is_fbp("fb.1.1596403881668.1116446470"));
        assert!(is_fbp("fb.2.1596403881668.1116446470.AQ"));
        assert!(!is_fbp("fb.1.1596403881668.abc"));
        assert!(!is_fbp("fb.1.1596403881668.123."));
    }

    #[test]
    fn insufficient_sets_only_match_subsets() {
        let now = 1_800_000_000;
        let h = "a".repeat(64);
        let ev = |ud: Value| serde_json::json!([{"event_name": "Lead", "event_time": now, "action_source": "email", "user_data": ud}]);
        let err = validate_data(Some(&ev(serde_json::json!({"fn": h, "ge": h}))), now).unwrap_err();
        assert_eq!(err.subcode, Some(error::SUB_INSUFFICIENT_INFO));
        assert!(validate_data(
            Some(&ev(serde_json::json!({"fn": h, "ge": h, "em": h}))),
            now
        )
        .is_ok());
    }
}
