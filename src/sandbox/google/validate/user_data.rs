//! Checks of `UserData`: hashed identifiers and their encoding.
//!
//! Input: an event's `userData` (or `thirdPartyUserData`) and the request's
//! `encoding`. Output: violations, and how many identifiers were read.
//!
//! Proto followed: `google/ads/datamanager/v1/user_data.proto` (`UserData`
//! with at most 10 `userIdentifiers`; `UserIdentifier` oneof `emailAddress` |
//! `phoneNumber` | `address`; `AddressInfo` with hashed `givenName` /
//! `familyName`, clear `regionCode` / `postalCode`) and `ingestion_service.proto`
//! (`Encoding`: `HEX` | `BASE64`, required for user data). Reasons from
//! `error.proto`: `INVALID_HEX_ENCODING`, `INVALID_BASE64_ENCODING`,
//! `INVALID_SHA256_FORMAT`, `TOO_MANY_USER_IDENTIFIERS`, `INVALID_REGION_CODE`,
//! `INVALID_POSTAL_CODE`.
//!
//! A hashed value is SHA-256: with `HEX`, 64 lowercase hex characters
//! (sandbox-strict on case: Google's formatting guide asks for lowercase);
//! with `BASE64`, standard or URL-safe base64 of 32 bytes. With
//! `encryptionInfo` set only the outer encoding is checked. Without
//! `encoding` the values cannot be judged; the caller reports the missing
//! `encoding` once per request.

use super::super::schema::{Checker, Fields, Path};

/// At most 10 identifiers per event (user_data.proto).
pub const MAX_USER_IDENTIFIERS: usize = 10;
/// Postal codes are sent in clear; none in use is longer than this.
const MAX_POSTAL_CODE_LEN: usize = 16;

const USER_DATA_FIELDS: &[&str] = &["userIdentifiers"];
const IDENTIFIER_FIELDS: &[&str] = &["emailAddress", "phoneNumber", "address"];
const ADDRESS_FIELDS: &[&str] = &[
    "givenName",
    "familyName",
    "regionCode",
    "postalCode",
    "addressLine",
    "city",
    "administrativeArea",
];

/// Checks `e.<name>` as `UserData`; returns the number of identifiers read.
pub(super) fn check(
    c: &mut Checker,
    e: &Fields<'_>,
    name: &'static str,
    encoding: Option<&str>,
    encrypted: bool,
) -> usize {
    let Some(ud) = c.message(e, name, USER_DATA_FIELDS) else {
        return 0;
    };
    let path = ud.path.field("userIdentifiers");
    let list = match c.list(&ud, "userIdentifiers") {
        None | Some([]) => {
            c.invalid(
                &path,
                "REQUIRED_FIELD_MISSING",
                "userIdentifiers must hold at least one identifier.",
            );
            return 0;
        }
        Some(list) => list,
    };
    if list.len() > MAX_USER_IDENTIFIERS {
        c.invalid(
            &path,
            "TOO_MANY_USER_IDENTIFIERS",
            format!("At most {MAX_USER_IDENTIFIERS} user identifiers are allowed per event."),
        );
        return list.len();
    }
    let hashed = Hashed {
        encoding,
        encrypted,
    };
    for (i, v) in list.iter().enumerate() {
        let ipath = path.index(i);
        let Some(id) = c.object(v, &ipath, IDENTIFIER_FIELDS) else {
            continue;
        };
        let set: Vec<&'static str> = IDENTIFIER_FIELDS
            .iter()
            .copied()
            .filter(|n| id.has(n))
            .collect();
        match set.as_slice() {
            [] => c.invalid(
                &ipath,
                "REQUIRED_FIELD_MISSING",
                "Exactly one of emailAddress, phoneNumber or address must be set.",
            ),
            ["address"] => address(c, &id, &hashed),
            [one] => hashed.check(c, &id, one, true),
            _ => c.parse_error(
                &ipath,
                format!(
                    "Invalid JSON payload received. Oneof field 'identifier' at '{}' is set more \
                     than once (exactly one of emailAddress, phoneNumber, address).",
                    ipath.camel()
                ),
            ),
        }
    }
    list.len()
}

fn address(c: &mut Checker, id: &Fields<'_>, hashed: &Hashed<'_>) {
    let Some(a) = c.message(id, "address", ADDRESS_FIELDS) else {
        return;
    };
    hashed.check(c, &a, "givenName", true);
    hashed.check(c, &a, "familyName", true);
    hashed.check(c, &a, "addressLine", false);
    c.string(&a, "city");
    c.string(&a, "administrativeArea");
    if let Some(region) = c.required_string(&a, "regionCode") {
        if !is_region_code(region) {
            c.invalid(
                &a.path.field("regionCode"),
                "INVALID_REGION_CODE",
                "The region code is not valid (ISO-3166-1 alpha-2, two capital letters).",
            );
        }
    }
    if let Some(postal) = c.required_string(&a, "postalCode") {
        let plausible = postal.len() <= MAX_POSTAL_CODE_LEN
            && postal
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == ' ' || ch == '-');
        if !plausible {
            c.invalid(
                &a.path.field("postalCode"),
                "INVALID_POSTAL_CODE",
                "Postal code is not valid (sent in clear, not hashed).",
            );
        }
    }
}

/// Two capital ASCII letters.
pub(super) fn is_region_code(s: &str) -> bool {
    s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase())
}

/// How hashed values must look in this request.
struct Hashed<'a> {
    encoding: Option<&'a str>,
    encrypted: bool,
}

impl Hashed<'_> {
    /// Checks `f.<name>` as a hashed value; `required` adds REQUIRED_FIELD_MISSING when unset.
    fn check(&self, c: &mut Checker, f: &Fields<'_>, name: &'static str, required: bool) {
        let value = if required {
            c.required_string(f, name)
        } else {
            c.string(f, name)
        };
        let (Some(value), Some(encoding)) = (value, self.encoding) else {
            return;
        };
        let path = f.path.field(name);
        match encoding {
            "HEX" => self.hex(c, &path, value),
            _ => self.base64(c, &path, value),
        }
    }

    fn hex(&self, c: &mut Checker, path: &Path, value: &str) {
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_hexdigit()) || value.len() % 2 == 1
        {
            c.invalid(
                path,
                "INVALID_HEX_ENCODING",
                "The HEX encoded value is malformed.",
            );
            return;
        }
        let sha256 = value.len() == 64 && !value.bytes().any(|b| b.is_ascii_uppercase());
        if !self.encrypted && !sha256 {
            c.invalid(
                path,
                "INVALID_SHA256_FORMAT",
                "The SHA256 encoded value is malformed: expected 64 lowercase hex characters.",
            );
        }
    }

    fn base64(&self, c: &mut Checker, path: &Path, value: &str) {
        match base64_len(value) {
            None => c.invalid(
                path,
                "INVALID_BASE64_ENCODING",
                "The base64 encoded value is malformed.",
            ),
            Some(32) => {}
            Some(_) if self.encrypted => {}
            Some(_) => c.invalid(
                path,
                "INVALID_SHA256_FORMAT",
                "The SHA256 encoded value is malformed: expected base64 of 32 bytes.",
            ),
        }
    }
}

/// Decoded length of standard or URL-safe base64 (padding optional), if well-formed.
fn base64_len(s: &str) -> Option<usize> {
    let body = s.trim_end_matches('=');
    let padding = s.len() - body.len();
    let standard = body
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    let url_safe = body
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if body.is_empty() || !(standard || url_safe) || padding > 2 || body.len() % 4 == 1 {
        return None;
    }
    if padding > 0 && !s.len().is_multiple_of(4) {
        return None;
    }
    Some(body.len() * 3 / 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_lengths() {
        // 32 bytes: 43 characters plus one '=' (standard), or 43 without padding.
        let b64 = "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=";
        assert_eq!(base64_len(b64), Some(32));
        assert_eq!(base64_len(b64.trim_end_matches('=')), Some(32));
        assert_eq!(
            base64_len("n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg"),
            Some(32)
        );
        assert_eq!(base64_len("abc$"), None);
        assert_eq!(base64_len("a"), None);
        assert_eq!(base64_len("ab=="), Some(1));
        assert_eq!(base64_len("ab="), None);
    }
}
