//! Meta's per-field normalization for `user_data` (spec `meta-capi.md` §3.1,
//! §3.3).
//!
//! Inputs: one raw field value (and, for phone and ZIP, the ISO alpha-2
//! country). Outputs: the normalized string that Meta hashes, or `None` when
//! the value is empty or unusable; [`hash`] turns it into a [`Sha256Hex`].
//!
//! Invariants:
//! - A 64-hex input (any case) is taken as already hashed and passed through
//!   lowercased, as Meta's SDKs do; it cannot be normalized again.
//! - The normalized strings are returned only so that tests can check them
//!   against Meta's published examples; pipeline code calls
//!   [`super::hash_user`] and sees hashes only.

use super::text::{email_parts, letters_only, name, prehashed};
use super::{country as iso, phone};
use crate::event::Sha256Hex;

/// Hashes a normalized value; a value that already is a lowercase digest is kept.
pub fn hash(normalized: &str) -> Sha256Hex {
    Sha256Hex::of_normalized(normalized)
}

/// `em`: trim, lowercase; requires one `@`, a dotted domain and no whitespace.
pub fn email(raw: &str) -> Option<String> {
    prehashed(raw).or_else(|| email_parts(raw).map(|(local, domain)| format!("{local}@{domain}")))
}

/// `ph`: E.164 digits without the `+` (country code, no leading zeros).
///
/// `country_hint` (ISO alpha-2, any case) reads a number written nationally;
/// see [`phone::e164`] for the rules. Numbers that libphonenumber does not
/// hold valid are dropped.
pub fn phone(raw: &str, country_hint: Option<&str>) -> Option<String> {
    prehashed(raw).or_else(|| {
        phone::e164(raw, country_hint)
            .ok()
            .map(|e| e.trim_start_matches('+').to_owned())
    })
}

/// `fn`: trim, lowercase, no punctuation; letters of any script are kept.
pub fn first_name(raw: &str) -> Option<String> {
    prehashed(raw).or_else(|| name(raw))
}

/// `ln`: same rules as [`first_name`].
pub fn last_name(raw: &str) -> Option<String> {
    first_name(raw)
}

/// `ct`: lowercase letters only (`New York` → `newyork`).
pub fn city(raw: &str) -> Option<String> {
    prehashed(raw).or_else(|| Some(letters_only(raw)).filter(|c| !c.is_empty()))
}

/// `st`: US state names and codes → 2-letter code; elsewhere letters only.
pub fn state(raw: &str) -> Option<String> {
    if let Some(h) = prehashed(raw) {
        return Some(h);
    }
    let key = letters_only(raw);
    if key.is_empty() {
        return None;
    }
    let code = US_STATES
        .iter()
        .find(|(code, name)| *name == key || *code == key);
    Some(code.map_or(key, |(code, _)| (*code).to_owned()))
}

/// `zp`: lowercase, no spaces, part before the first `-`; US: first 5 digits.
pub fn zip(raw: &str, country_hint: Option<&str>) -> Option<String> {
    if let Some(h) = prehashed(raw) {
        return Some(h);
    }
    let head = raw.trim().split('-').next().unwrap_or_default();
    let mut z: String = head
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect();
    let us = country_hint.is_some_and(|c| c.trim().eq_ignore_ascii_case("us"));
    if us && z.len() > 5 && z.bytes().all(|b| b.is_ascii_digit()) {
        z.truncate(5); // ZIP+4 written without the dash
    }
    (z.chars().count() >= 2).then_some(z)
}

/// `country`: ISO 3166-1 alpha-2 lowercase; common names and alpha-3 codes map to it.
pub fn country(raw: &str) -> Option<String> {
    prehashed(raw).or_else(|| iso::alpha2(raw))
}

/// `external_id`: trim, lowercase (we always hash it; the Pixel must send the same).
pub fn external_id(raw: &str) -> Option<String> {
    let s = raw.trim();
    (!s.is_empty()).then(|| s.to_lowercase())
}

/// Number of US state entries (a test checks the table is complete).
#[cfg(test)]
pub(super) fn us_state_count() -> usize {
    US_STATES.len()
}

/// US states and DC: Meta wants the 2-letter ANSI code, lowercase.
#[rustfmt::skip]
static US_STATES: &[(&str, &str)] = &[
    ("al", "alabama"), ("ak", "alaska"), ("az", "arizona"), ("ar", "arkansas"),
    ("ca", "california"), ("co", "colorado"), ("ct", "connecticut"), ("de", "delaware"),
    ("dc", "districtofcolumbia"), ("fl", "florida"), ("ga", "georgia"), ("hi", "hawaii"),
    ("id", "idaho"), ("il", "illinois"), ("in", "indiana"), ("ia", "iowa"), ("ks", "kansas"),
    ("ky", "kentucky"), ("la", "louisiana"), ("me", "maine"), ("md", "maryland"),
    ("ma", "massachusetts"), ("mi", "michigan"), ("mn", "minnesota"), ("ms", "mississippi"),
    ("mo", "missouri"), ("mt", "montana"), ("ne", "nebraska"), ("nv", "nevada"),
    ("nh", "newhampshire"), ("nj", "newjersey"), ("nm", "newmexico"), ("ny", "newyork"),
    ("nc", "northcarolina"), ("nd", "northdakota"), ("oh", "ohio"), ("ok", "oklahoma"),
    ("or", "oregon"), ("pa", "pennsylvania"), ("ri", "rhodeisland"), ("sc", "southcarolina"),
    ("sd", "southdakota"), ("tn", "tennessee"), ("tx", "texas"), ("ut", "utah"),
    ("vt", "vermont"), ("va", "virginia"), ("wa", "washington"), ("wv", "westvirginia"),
    ("wi", "wisconsin"), ("wy", "wyoming"), ("dc", "washingtondc"),
];
