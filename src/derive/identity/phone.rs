//! Phone numbers → one canonical E.164 string (`+` and digits), read with
//! libphonenumber's metadata (the `phonenumber` crate).
//!
//! Inputs: a phone number as a shopper typed it, and the ISO alpha-2 country
//! to read a national number with (the row's or the user's country).
//! Outputs: `+447700900123`, from which Meta takes the digits (E.164 without
//! `+`) and Google the whole string; or a [`PhoneError`] saying why the
//! number was dropped.
//!
//! Invariants:
//! - Only numbers that libphonenumber holds valid for the country they end
//!   up in are returned; anything else is dropped, never sent half-right
//!   (a wrong country code hashes to a value that can never match).
//! - Extensions (`x12`, `ext. 3`) and a `tel:` prefix are not part of the
//!   number; `+44 (0)20 …` loses its bracketed trunk zero (libphonenumber
//!   strips the national prefix after the country code).
//! - Errors carry no part of the number.

use phonenumber::{country::Id, Mode, PhoneNumber};

/// Why a phone number could not be normalized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhoneError {
    /// Written nationally (no `+`/`00`) and no country to read it with.
    NoCountry,
    /// Not parseable as a phone number at all.
    NotANumber,
    /// Parsed, but not a valid number for its country.
    Invalid,
}

impl PhoneError {
    /// Short static text for [`super::Dropped`]; never contains the number.
    pub fn reason(self) -> &'static str {
        match self {
            PhoneError::NoCountry => "national number without a country",
            PhoneError::NotANumber => "not a phone number",
            PhoneError::Invalid => "not a valid number for its country",
        }
    }
}

/// Normalizes `raw` to E.164 with the `+`.
///
/// `country` (ISO alpha-2, any case) reads numbers written without `+` or
/// `00`; its own international prefix (`011` in the US, `0011` in AU) is
/// understood too. `+` and `00` numbers parse as international whatever the
/// country. Without a country, digits that do not start with `0` are tried
/// as already carrying their country code (`16505551212`), as Meta's SDKs
/// assume; they are kept only if valid that way.
pub fn e164(raw: &str, country: Option<&str>) -> Result<String, PhoneError> {
    let s = strip_decorations(raw);
    let region = country.and_then(region);
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return Err(PhoneError::NotANumber);
    }
    let plus = s
        .trim_start_matches(|c: char| c.is_whitespace() || c == '(')
        .starts_with(['+', '\u{ff0b}']);

    let mut last = PhoneError::NotANumber;
    let mut attempt = |region: Option<Id>, text: &str| match parse_valid(region, text) {
        Ok(e164) => Some(e164),
        Err(e) => {
            last = e;
            None
        }
    };
    let found = if plus {
        attempt(None, s)
    } else if let Some(rest) = digits.strip_prefix("00") {
        // The ITU international prefix, used by most of the world; a
        // region with another one (AU's 0011) is tried next.
        attempt(None, &format!("+{rest}")).or_else(|| region.and_then(|r| attempt(Some(r), s)))
    } else if let Some(r) = region {
        attempt(Some(r), s)
    } else if digits.starts_with('0') {
        return Err(PhoneError::NoCountry);
    } else {
        attempt(None, &format!("+{digits}"))
    };
    match found {
        Some(e164) => Ok(e164),
        // Without a country and with no `+`, the digits were only a guess:
        // say that the country was missing rather than that the number is bad.
        None if !plus && region.is_none() && !digits.starts_with("00") => {
            Err(PhoneError::NoCountry)
        }
        None => Err(last),
    }
}

/// Removes what is not part of the dialled number: surrounding whitespace, a
/// `tel:` scheme and anything after `;` (RFC 3966 parameters) or `,` (pauses,
/// notes). Extensions are left to libphonenumber, which knows their forms.
fn strip_decorations(raw: &str) -> &str {
    let s = raw.trim();
    let s = match s.get(..4) {
        Some(scheme) if scheme.eq_ignore_ascii_case("tel:") => &s[4..],
        _ => s,
    };
    let end = s.find([';', ',']).unwrap_or(s.len());
    s[..end].trim()
}

/// libphonenumber's region for an ISO alpha-2 code, if it has metadata for it.
fn region(alpha2: &str) -> Option<Id> {
    alpha2.trim().to_ascii_uppercase().parse().ok()
}

/// Parses with an optional default region and keeps only a valid number.
fn parse_valid(region: Option<Id>, text: &str) -> Result<String, PhoneError> {
    let number: PhoneNumber =
        phonenumber::parse(region, text).map_err(|_| PhoneError::NotANumber)?;
    if !phonenumber::is_valid(&number) {
        return Err(PhoneError::Invalid);
    }
    Ok(number.format().mode(Mode::E164).to_string())
}
