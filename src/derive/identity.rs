//! Customer identity: normalization and SHA-256 hashing of `user_data`.
//!
//! Inputs: raw personal data wrapped in [`Pii`] (email, phone, names, address
//! parts, country, external id), as decoded from the shop's order rows.
//! Outputs: [`Sha256Hex`] values, normalized the way Meta's Conversions API
//! expects (spec `meta-capi.md` §3.1 and §3.3), collected in
//! [`MetaUserHashes`], which serializes with Meta's `user_data` keys.
//!
//! Invariants:
//! - Raw PII never leaves this module unhashed. The normalized intermediate
//!   strings are returned by the `meta::*` functions only so that they can be
//!   unit-tested against Meta's published examples; pipeline code calls
//!   [`hash_user`] and sees hashes only.
//! - A value that is unusable after normalization is omitted (`None`), never
//!   sent as the hash of an empty or garbage string.
//! - Input that already is a SHA-256 hex digest (64 hex characters, any case)
//!   is passed through lowercased instead of being hashed twice, as Meta's
//!   SDKs do.
//! - Everything here is pure: no I/O, no clock, and nothing logs.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Raw personal data; `Debug` and `Display` print `[redacted]`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Pii(String);

impl Pii {
    /// Wraps a raw value.
    pub fn new(value: impl Into<String>) -> Self {
        Pii(value.into())
    }

    /// The raw value, for normalization only; never log or send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Pii {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Pii {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A SHA-256 digest as 64 lowercase hexadecimal characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Hex(String);

/// Why a string is not a [`Sha256Hex`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a SHA-256 digest: expected 64 lowercase hexadecimal characters")]
pub struct NotSha256Hex;

impl Sha256Hex {
    /// Accepts exactly 64 lowercase hex characters.
    pub fn parse(value: &str) -> Result<Self, NotSha256Hex> {
        if is_sha256_lower(value) {
            Ok(Sha256Hex(value.to_owned()))
        } else {
            Err(NotSha256Hex)
        }
    }

    /// The digest as lowercase hex.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Serialize for Sha256Hex {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Sha256Hex {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Sha256Hex::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// SHA-256 of the UTF-8 bytes of an already normalized value.
pub fn sha256_hex(normalized: &str) -> Sha256Hex {
    let digest = Sha256::digest(normalized.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    Sha256Hex(out)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn is_sha256_lower(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// 64 hex digits in any case: treated as already hashed (Meta SDK behaviour).
fn prehashed(s: &str) -> Option<String> {
    (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
}

/// Raw customer fields of one event, as read from the order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawUser {
    /// Email address.
    pub email: Option<Pii>,
    /// Phone number in any common format.
    pub phone: Option<Pii>,
    /// Given name.
    pub first_name: Option<Pii>,
    /// Family name.
    pub last_name: Option<Pii>,
    /// City.
    pub city: Option<Pii>,
    /// State, province or region (US: name or code).
    pub state: Option<Pii>,
    /// Postal code.
    pub zip: Option<Pii>,
    /// Country as ISO alpha-2 code or common English name; also the phone's country hint.
    pub country: Option<Pii>,
    /// Stable advertiser-side customer id.
    pub external_id: Option<Pii>,
}

/// Hashed `user_data` fields, serialized with Meta's keys; `None` is omitted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaUserHashes {
    /// Email.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub em: Option<Sha256Hex>,
    /// Phone with country code.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ph: Option<Sha256Hex>,
    /// First name (`fn` is a Rust keyword).
    #[serde(rename = "fn", skip_serializing_if = "Option::is_none", default)]
    pub fn_: Option<Sha256Hex>,
    /// Last name.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ln: Option<Sha256Hex>,
    /// City.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ct: Option<Sha256Hex>,
    /// State.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub st: Option<Sha256Hex>,
    /// Postal code.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub zp: Option<Sha256Hex>,
    /// Country.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub country: Option<Sha256Hex>,
    /// External id (we always hash it; the browser Pixel must send the same hash).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub external_id: Option<Sha256Hex>,
}

impl MetaUserHashes {
    /// True when no field survived normalization.
    pub fn is_empty(&self) -> bool {
        *self == MetaUserHashes::default()
    }
}

/// Normalizes and hashes every present field of `input` for Meta.
///
/// `country_hint` (ISO code or common name, e.g. the billing country) gives
/// the phone's calling code and the US ZIP rule; without it the user's own
/// `country` is used, following the spec's advice to derive the calling code
/// from the order's address rather than a default.
pub fn hash_user(input: &RawUser, country_hint: Option<&str>) -> MetaUserHashes {
    let field = |value: &Option<Pii>, normalize: fn(&str) -> Option<String>| {
        value
            .as_ref()
            .and_then(|v| normalize(v.expose()))
            .map(|n| meta::hash(&n))
    };
    let country = input
        .country
        .as_ref()
        .and_then(|c| meta::country(c.expose()));
    let hint = country_hint
        .and_then(meta::country)
        .or_else(|| country.clone())
        .filter(|c| c.len() == 2);
    let hint = hint.as_deref();
    MetaUserHashes {
        em: field(&input.email, meta::email),
        ph: input
            .phone
            .as_ref()
            .and_then(|p| meta::phone(p.expose(), hint))
            .map(|n| meta::hash(&n)),
        fn_: field(&input.first_name, meta::first_name),
        ln: field(&input.last_name, meta::last_name),
        ct: field(&input.city, meta::city),
        st: field(&input.state, meta::state),
        zp: input
            .zip
            .as_ref()
            .and_then(|z| meta::zip(z.expose(), hint))
            .map(|n| meta::hash(&n)),
        country: country.map(|c| meta::hash(&c)),
        external_id: field(&input.external_id, meta::external_id),
    }
}

/// Meta's per-field normalization (spec §3.1, §3.3). Each returns `None` for
/// empty or unusable input, and passes 64-hex (pre-hashed) input through.
pub mod meta {
    use super::{is_sha256_lower, prehashed, sha256_hex, Sha256Hex};

    /// Hashes a normalized value; a value that already is a lowercase digest is kept.
    pub fn hash(normalized: &str) -> Sha256Hex {
        if is_sha256_lower(normalized) {
            Sha256Hex(normalized.to_owned())
        } else {
            sha256_hex(normalized)
        }
    }

    /// `em`: trim, lowercase; requires one `@`, a dotted domain and no whitespace.
    pub fn email(raw: &str) -> Option<String> {
        let s = raw.trim();
        if let Some(h) = prehashed(s) {
            return Some(h);
        }
        let s = s.to_lowercase();
        let (local, domain) = s.split_once('@')?;
        let labels_ok = domain.split('.').count() >= 2 && domain.split('.').all(|l| !l.is_empty());
        let ok = !local.is_empty()
            && labels_ok
            && !domain.contains('@')
            && !s.chars().any(char::is_whitespace);
        ok.then_some(s)
    }

    /// `ph`: digits only, with the country calling code, no `+` or leading zeros.
    ///
    /// `country_hint` (ISO alpha-2, any case) supplies the calling code when the
    /// number is written nationally. Without a usable hint, a national number
    /// starting with a trunk `0` is rejected: its hash could never match.
    pub fn phone(raw: &str, country_hint: Option<&str>) -> Option<String> {
        let s = raw.trim();
        if let Some(h) = prehashed(s) {
            return Some(h);
        }
        let s = s.strip_prefix("tel:").unwrap_or(s);
        // An extension or trailing note ("x12", "ext. 3", "# 5") is not part of the number.
        let end = s
            .find(|c: char| c.is_alphabetic() || matches!(c, '#' | ';' | ','))
            .unwrap_or(s.len());
        let s = &s[..end];
        let plus = s
            .trim_start_matches(|c: char| c.is_whitespace() || c == '(')
            .starts_with('+');
        // "+44 (0)20 …": the bracketed trunk zero is dropped when dialling internationally.
        let s = if plus {
            s.replace("(0)", "")
        } else {
            s.to_owned()
        };
        let digits: String = s.chars().filter(char::is_ascii_digit).collect();
        let hint = country_hint.and_then(calling_code);

        let full = if plus {
            digits
        } else if let Some(rest) = digits.strip_prefix("00") {
            rest.to_owned()
        } else if let Some(cc) = hint {
            with_calling_code(&digits, cc)?
        } else if digits.starts_with('0') {
            return None;
        } else {
            // No hint: assume the country code is already there (Meta SDK behaviour).
            digits
        };
        let ok = (7..=15).contains(&full.len()) && !full.starts_with('0');
        ok.then_some(full)
    }

    /// Adds the calling code to a number written without an international prefix.
    fn with_calling_code(digits: &str, cc: &CallingCode) -> Option<String> {
        if cc.code == "1" {
            // NANP: 10-digit national numbers, or 11 digits with the leading 1.
            return match digits.len() {
                10 if !digits.starts_with(['0', '1']) => Some(format!("1{digits}")),
                11 if digits.starts_with('1') => Some(digits.to_owned()),
                _ if digits.starts_with("011") => Some(digits[3..].to_owned()),
                n if n > 11 && !digits.starts_with('0') => Some(digits.to_owned()),
                _ => None,
            };
        }
        if let Some(national) = cc.trunk.iter().find_map(|t| digits.strip_prefix(t)) {
            return Some(format!("{}{national}", cc.code));
        }
        // Written with the country code but without "+": keep it. Eight digits
        // after the code is the shortest national number that we treat as such.
        if digits.starts_with(cc.code) && digits.len() >= cc.code.len() + 8 {
            return Some(digits.to_owned());
        }
        Some(format!("{}{digits}", cc.code))
    }

    /// `fn`: trim, lowercase, no punctuation; letters of any script are kept.
    pub fn first_name(raw: &str) -> Option<String> {
        name(raw)
    }

    /// `ln`: same rules as [`first_name`].
    pub fn last_name(raw: &str) -> Option<String> {
        name(raw)
    }

    /// Keeps letters (and marks, for decomposed accents); inner whitespace runs
    /// collapse to one space, as Meta asks only to remove punctuation.
    fn name(raw: &str) -> Option<String> {
        let s = raw.trim();
        if let Some(h) = prehashed(s) {
            return Some(h);
        }
        let mut out = String::with_capacity(s.len());
        for word in s.split_whitespace() {
            let word: String = word
                .chars()
                .filter(|c| c.is_alphabetic() || is_mark(*c))
                .collect();
            if !word.is_empty() {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(&word.to_lowercase());
            }
        }
        (!out.is_empty()).then_some(out)
    }

    /// Combining diacritical marks (U+0300–U+036F) that follow a base letter.
    fn is_mark(c: char) -> bool {
        ('\u{300}'..='\u{36f}').contains(&c)
    }

    /// Lowercase letters only: no digits, whitespace or punctuation.
    fn letters_only(s: &str) -> String {
        s.chars()
            .filter(|c| c.is_alphabetic() || is_mark(*c))
            .flat_map(char::to_lowercase)
            .collect()
    }

    /// `ct`: lowercase letters only (`New York` → `newyork`).
    pub fn city(raw: &str) -> Option<String> {
        let s = raw.trim();
        if let Some(h) = prehashed(s) {
            return Some(h);
        }
        Some(letters_only(s)).filter(|c| !c.is_empty())
    }

    /// `st`: US state names and codes → 2-letter code; elsewhere letters only.
    pub fn state(raw: &str) -> Option<String> {
        let s = raw.trim();
        if let Some(h) = prehashed(s) {
            return Some(h);
        }
        let key = letters_only(s);
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
        let s = raw.trim();
        if let Some(h) = prehashed(s) {
            return Some(h);
        }
        let head = s.split('-').next().unwrap_or_default();
        let mut z: String = head
            .chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect();
        let us = country_hint.is_some_and(|c| c.eq_ignore_ascii_case("us"));
        if us && z.len() > 5 && z.bytes().all(|b| b.is_ascii_digit()) {
            z.truncate(5); // ZIP+4 written without the dash
        }
        (z.chars().count() >= 2).then_some(z)
    }

    /// `country`: ISO 3166-1 alpha-2 lowercase; common names and alpha-3 codes map to it.
    pub fn country(raw: &str) -> Option<String> {
        let s = raw.trim();
        if let Some(h) = prehashed(s) {
            return Some(h);
        }
        let key = letters_only(s);
        if key.len() == 2 && ISO_ALPHA2.split(' ').any(|c| c == key) {
            return Some(key);
        }
        COUNTRY_NAMES
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, code)| (*code).to_owned())
    }

    /// `external_id`: trim, lowercase.
    pub fn external_id(raw: &str) -> Option<String> {
        let s = raw.trim();
        (!s.is_empty()).then(|| s.to_lowercase())
    }

    /// A country's calling code and national trunk prefixes.
    #[derive(Debug)]
    struct CallingCode {
        code: &'static str,
        /// Dropped before adding the code (`0` in GB/DE/FR, `8` in RU, `06` in HU).
        /// Empty where the leading digit belongs to the number (IT keeps its `0`).
        trunk: &'static [&'static str],
    }

    fn calling_code(alpha2: &str) -> Option<&'static CallingCode> {
        let key = alpha2.trim().to_ascii_lowercase();
        CALLING_CODES
            .iter()
            .find(|(c, _)| *c == key)
            .map(|(_, cc)| cc)
    }

    const fn cc(code: &'static str, trunk: &'static [&'static str]) -> CallingCode {
        CallingCode { code, trunk }
    }

    const Z: &[&str] = &["0"];
    const NONE: &[&str] = &[];

    /// Calling codes of the markets we expect orders from (ITU E.164 assignments).
    #[rustfmt::skip]
    static CALLING_CODES: &[(&str, CallingCode)] = &[
        ("us", cc("1", NONE)), ("ca", cc("1", NONE)), ("pr", cc("1", NONE)),
        ("gb", cc("44", Z)), ("ie", cc("353", Z)), ("de", cc("49", Z)), ("fr", cc("33", Z)),
        ("nl", cc("31", Z)), ("be", cc("32", Z)), ("lu", cc("352", NONE)), ("es", cc("34", NONE)),
        ("pt", cc("351", NONE)), ("it", cc("39", NONE)), ("ch", cc("41", Z)), ("at", cc("43", Z)),
        ("dk", cc("45", NONE)), ("se", cc("46", Z)), ("no", cc("47", NONE)), ("fi", cc("358", Z)),
        ("is", cc("354", NONE)), ("pl", cc("48", NONE)), ("cz", cc("420", NONE)), ("sk", cc("421", Z)),
        ("hu", cc("36", &["06"])), ("ro", cc("40", Z)), ("bg", cc("359", Z)), ("gr", cc("30", NONE)),
        ("hr", cc("385", Z)), ("si", cc("386", Z)), ("rs", cc("381", Z)), ("ee", cc("372", NONE)),
        ("lv", cc("371", NONE)), ("lt", cc("370", &["0", "8"])), ("ua", cc("380", Z)),
        ("ru", cc("7", &["8"])), ("kz", cc("7", &["8"])), ("by", cc("375", &["8"])),
        ("tr", cc("90", Z)), ("il", cc("972", Z)), ("ae", cc("971", Z)), ("sa", cc("966", Z)),
        ("qa", cc("974", NONE)), ("eg", cc("20", Z)), ("za", cc("27", Z)), ("ng", cc("234", Z)),
        ("ke", cc("254", Z)), ("ma", cc("212", Z)), ("in", cc("91", Z)), ("pk", cc("92", Z)),
        ("bd", cc("880", Z)), ("cn", cc("86", Z)), ("hk", cc("852", NONE)), ("tw", cc("886", Z)),
        ("jp", cc("81", Z)), ("kr", cc("82", Z)), ("sg", cc("65", NONE)), ("my", cc("60", Z)),
        ("th", cc("66", Z)), ("vn", cc("84", Z)), ("id", cc("62", Z)), ("ph", cc("63", Z)),
        ("au", cc("61", Z)), ("nz", cc("64", Z)), ("mx", cc("52", NONE)), ("br", cc("55", Z)),
        ("ar", cc("54", Z)), ("cl", cc("56", NONE)), ("co", cc("57", NONE)), ("pe", cc("51", Z)),
        ("ve", cc("58", Z)), ("uy", cc("598", Z)), ("ec", cc("593", Z)), ("cr", cc("506", NONE)),
        ("cy", cc("357", NONE)), ("mt", cc("356", NONE)),
    ];

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

    /// All 249 officially assigned ISO 3166-1 alpha-2 codes.
    const ISO_ALPHA2: &str = "ad ae af ag ai al am ao aq ar as at au aw ax az ba bb bd be bf bg bh bi bj bl bm bn bo bq br bs bt bv bw by bz ca cc cd cf cg ch ci ck cl cm cn co cr cu cv cw cx cy cz de dj dk dm do dz ec ee eg eh er es et fi fj fk fm fo fr ga gb gd ge gf gg gh gi gl gm gn gp gq gr gs gt gu gw gy hk hm hn hr ht hu id ie il im in io iq ir is it je jm jo jp ke kg kh ki km kn kp kr kw ky kz la lb lc li lk lr ls lt lu lv ly ma mc md me mf mg mh mk ml mm mn mo mp mq mr ms mt mu mv mw mx my mz na nc ne nf ng ni nl no np nr nu nz om pa pe pf pg ph pk pl pm pn pr ps pt pw py qa re ro rs ru rw sa sb sc sd se sg sh si sj sk sl sm sn so sr ss st sv sx sy sz tc td tf tg th tj tk tl tm tn to tr tt tv tw tz ua ug um us uy uz va vc ve vg vi vn vu wf ws ye yt za zm zw";

    /// Common English (and a few native) country names and alpha-3 codes,
    /// keyed by their lowercase letters-only form.
    #[rustfmt::skip]
    static COUNTRY_NAMES: &[(&str, &str)] = &[
        ("unitedstates", "us"), ("unitedstatesofamerica", "us"), ("usa", "us"), ("america", "us"),
        ("unitedkingdom", "gb"), ("greatbritain", "gb"), ("uk", "gb"), ("gbr", "gb"),
        ("england", "gb"), ("scotland", "gb"), ("wales", "gb"), ("northernireland", "gb"),
        ("germany", "de"), ("deutschland", "de"), ("deu", "de"), ("france", "fr"), ("fra", "fr"),
        ("netherlands", "nl"), ("thenetherlands", "nl"), ("holland", "nl"), ("nld", "nl"),
        ("spain", "es"), ("españa", "es"), ("esp", "es"), ("italy", "it"), ("italia", "it"), ("ita", "it"),
        ("portugal", "pt"), ("prt", "pt"), ("ireland", "ie"), ("irl", "ie"), ("belgium", "be"), ("bel", "be"),
        ("luxembourg", "lu"), ("switzerland", "ch"), ("schweiz", "ch"), ("suisse", "ch"), ("che", "ch"),
        ("austria", "at"), ("österreich", "at"), ("aut", "at"), ("sweden", "se"), ("swe", "se"),
        ("norway", "no"), ("nor", "no"), ("denmark", "dk"), ("dnk", "dk"), ("finland", "fi"), ("fin", "fi"),
        ("iceland", "is"), ("poland", "pl"), ("polska", "pl"), ("pol", "pl"), ("czechia", "cz"),
        ("czechrepublic", "cz"), ("slovakia", "sk"), ("hungary", "hu"), ("romania", "ro"),
        ("bulgaria", "bg"), ("greece", "gr"), ("croatia", "hr"), ("slovenia", "si"), ("serbia", "rs"),
        ("estonia", "ee"), ("latvia", "lv"), ("lithuania", "lt"), ("ukraine", "ua"), ("russia", "ru"),
        ("russianfederation", "ru"), ("turkey", "tr"), ("türkiye", "tr"), ("turkiye", "tr"),
        ("israel", "il"), ("unitedarabemirates", "ae"), ("uae", "ae"), ("saudiarabia", "sa"),
        ("qatar", "qa"), ("egypt", "eg"), ("southafrica", "za"), ("nigeria", "ng"), ("kenya", "ke"),
        ("morocco", "ma"), ("india", "in"), ("ind", "in"), ("pakistan", "pk"), ("bangladesh", "bd"),
        ("china", "cn"), ("chn", "cn"), ("hongkong", "hk"), ("taiwan", "tw"), ("japan", "jp"), ("jpn", "jp"),
        ("southkorea", "kr"), ("korea", "kr"), ("republicofkorea", "kr"), ("singapore", "sg"),
        ("malaysia", "my"), ("thailand", "th"), ("vietnam", "vn"), ("indonesia", "id"),
        ("philippines", "ph"), ("australia", "au"), ("aus", "au"), ("newzealand", "nz"), ("nzl", "nz"),
        ("canada", "ca"), ("can", "ca"), ("mexico", "mx"), ("méxico", "mx"), ("mex", "mx"),
        ("brazil", "br"), ("brasil", "br"), ("bra", "br"), ("argentina", "ar"), ("chile", "cl"),
        ("colombia", "co"), ("peru", "pe"), ("venezuela", "ve"), ("uruguay", "uy"), ("ecuador", "ec"),
        ("costarica", "cr"), ("puertorico", "pr"), ("cyprus", "cy"), ("malta", "mt"),
    ];

    #[cfg(test)]
    pub(super) fn table_sizes() -> (usize, usize, usize) {
        (
            ISO_ALPHA2.split(' ').count(),
            CALLING_CODES.len(),
            US_STATES.len(),
        )
    }
}

#[cfg(test)]
mod tests;
