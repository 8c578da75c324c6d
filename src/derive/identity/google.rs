//! Google's normalization for Data Manager `UserData` (spec `google.md` §6).
//!
//! Inputs: one raw field value (and, for phone, the ISO alpha-2 country).
//! Outputs: the normalized string: hashed by [`super::hash_user`] for email,
//! phone and names; sent in clear for `regionCode` and `postalCode`, as
//! Google requires. `None` when the value is empty or unusable.
//!
//! Invariants:
//! - Email, phone and names that already are a 64-hex digest (any case) pass
//!   through lowercased; they cannot be normalized again, so a digest made
//!   with other rules (Meta's `+`-less phone, a gmail address with its dots)
//!   will not match at Google.
//! - The clear fields never carry a digest: a 64-hex region or postal code
//!   gives `None`, since Google could not read it.

use super::text::{email_parts, name, prehashed, present};
use super::{country, phone};

/// Domains whose mailboxes ignore dots and `+tags` in the local part.
const GMAIL_DOMAINS: [&str; 2] = ["gmail.com", "googlemail.com"];

/// `emailAddress`: trim, lowercase; for gmail.com and googlemail.com remove
/// every `.` in the local part and drop a `+tag`. Other domains keep both.
pub fn email(raw: &str) -> Option<String> {
    if let Some(h) = prehashed(raw) {
        return Some(h);
    }
    let (local, domain) = email_parts(raw)?;
    if !GMAIL_DOMAINS.contains(&domain.as_str()) {
        return Some(format!("{local}@{domain}"));
    }
    let untagged = local.split('+').next().unwrap_or_default();
    let local: String = untagged.chars().filter(|c| *c != '.').collect();
    (!local.is_empty()).then(|| format!("{local}@{domain}"))
}

/// `phoneNumber`: E.164 with the `+` (`+18005550100`); see [`phone::e164`].
pub fn phone(raw: &str, country_hint: Option<&str>) -> Option<String> {
    prehashed(raw).or_else(|| phone::e164(raw, country_hint).ok())
}

/// `givenName`: lowercase, trimmed, no punctuation.
///
/// Google also asks to leave out prefixes such as "Mrs."; a shop's
/// first-name column is taken to hold none, so nothing is stripped by word.
pub fn given_name(raw: &str) -> Option<String> {
    prehashed(raw).or_else(|| name(raw))
}

/// `familyName`: same rules as [`given_name`] (suffixes such as "Jr." are
/// likewise not stripped by word).
pub fn family_name(raw: &str) -> Option<String> {
    given_name(raw)
}

/// `regionCode`: ISO 3166-1 alpha-2, upper case, in clear.
pub fn region_code(raw: &str) -> Option<String> {
    if prehashed(raw).is_some() {
        return None;
    }
    country::alpha2(raw).map(|c| c.to_ascii_uppercase())
}

/// `postalCode`: trimmed, inner whitespace runs collapsed to one space, in
/// clear. Needs at least two letters or digits and nothing but letters,
/// digits, spaces and `-`.
pub fn postal_code(raw: &str) -> Option<String> {
    let s = present(raw)?;
    if prehashed(s).is_some() {
        return None;
    }
    let ok = s
        .chars()
        .all(|c| c.is_alphanumeric() || c == '-' || c.is_whitespace())
        && s.chars().filter(|c| c.is_alphanumeric()).count() >= 2;
    ok.then(|| s.split_whitespace().collect::<Vec<_>>().join(" "))
}
