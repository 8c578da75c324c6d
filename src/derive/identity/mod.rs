//! Customer identity: per-platform normalization and SHA-256 hashing.
//!
//! Inputs: raw personal data wrapped in [`Pii`] ([`RawUser`]: email, phone,
//! names, address parts, country, external id), as decoded from the shop's
//! rows, and the row's country as a hint for phones written nationally.
//! Outputs: [`UserIds`], one set of identifiers per platform: Meta's
//! `user_data` hashes ([`meta`], spec `meta-capi.md` §3) and Google's Data
//! Manager `UserData` ([`google`], spec `google.md` §6: hashed email, phone
//! and names; region and postal code in clear). Values present but unusable
//! are reported as [`Dropped`] (field and a static reason, never the value).
//!
//! Layout: `text` (shared cleaning), `country` (names → ISO codes), `phone`
//! (libphonenumber → E.164), then one file per platform; this file wires
//! them into [`hash_user`].
//!
//! Invariants:
//! - Raw PII never leaves this module unhashed, except the two fields Google
//!   takes in clear (`region_code`, `postal_code`). The normalized strings
//!   returned by `meta::*` and `google::*` exist for unit tests against the
//!   platforms' published examples; pipeline code calls [`hash_user`].
//! - A value that is unusable after normalization is omitted (`None`), never
//!   sent as the hash of an empty or garbage string. Empty or whitespace-only
//!   values count as absent, not as dropped.
//! - Input that already is a SHA-256 hex digest (64 hex characters, any
//!   case) is passed through lowercased, once, for both platforms: it cannot
//!   be normalized again, so it matches only where it was hashed by that
//!   platform's rules. Google's clear fields never take a digest.
//! - Everything here is pure: no I/O, no clock, and nothing logs.

use std::fmt;

mod country;
pub mod google;
pub mod meta;
pub mod phone;
mod text;

pub use crate::event::{
    is_sha256_lower, sha256_hex, GoogleUserHashes, MetaUserHashes, NotSha256Hex, Sha256Hex, UserIds,
};

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

/// One field of [`RawUser`], to name it without its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// [`RawUser::email`].
    Email,
    /// [`RawUser::phone`].
    Phone,
    /// [`RawUser::first_name`].
    FirstName,
    /// [`RawUser::last_name`].
    LastName,
    /// [`RawUser::city`].
    City,
    /// [`RawUser::state`].
    State,
    /// [`RawUser::zip`].
    Zip,
    /// [`RawUser::country`].
    Country,
    /// [`RawUser::external_id`].
    ExternalId,
}

impl Field {
    /// The field's name as in [`RawUser`] (`"email"`, `"first_name"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Email => "email",
            Field::Phone => "phone",
            Field::FirstName => "first_name",
            Field::LastName => "last_name",
            Field::City => "city",
            Field::State => "state",
            Field::Zip => "zip",
            Field::Country => "country",
            Field::ExternalId => "external_id",
        }
    }
}

/// A value present in the input that could not be normalized for at least
/// one platform that takes it; it was left out there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dropped {
    /// Which field.
    pub field: Field,
    /// Short static text; never contains the value.
    pub reason: &'static str,
}

/// Reason for an email without one `@`, a dotted domain, or with whitespace.
const BAD_EMAIL: &str = "not a valid email address";
/// Reason for a name, city or state with no letters left.
const NO_LETTERS: &str = "no letters left after removing punctuation";
/// Reason for a postal code too short or with symbols.
const BAD_ZIP: &str = "not a postal code";
/// Reason for a country neither an ISO code nor a known name.
const BAD_COUNTRY: &str = "not a known country";

/// Normalizes and hashes every present field of `raw` for Meta and Google.
///
/// `country_hint` (ISO code or common name, e.g. the billing country) gives
/// the country for a phone written nationally and for the US ZIP rule;
/// without a usable hint the user's own `country` is used (spec: derive the
/// calling code from the order's address, not a default). The hint itself is
/// not sent as the user's country.
pub fn hash_user(raw: &RawUser, country_hint: Option<&str>) -> (UserIds, Vec<Dropped>) {
    let own_country = value(&raw.country).and_then(country::alpha2);
    let hint = country_hint.and_then(country::alpha2).or(own_country);
    let hint = hint.as_deref();

    let mut ids = UserIds::default();
    let (m, g) = (&mut ids.meta, &mut ids.google);
    let mut dropped = Vec::new();
    let mut check = |field, reason, ok: bool| {
        if !ok {
            dropped.push(Dropped { field, reason });
        }
    };
    let hash = |n: Option<String>| n.map(|n| Sha256Hex::of_normalized(&n));

    if let Some(v) = value(&raw.email) {
        let (me, ge) = (meta::email(v), google::email(v));
        check(Field::Email, BAD_EMAIL, me.is_some() && ge.is_some());
        (m.em, g.email) = (hash(me), hash(ge));
    }
    if let Some(v) = value(&raw.phone) {
        let normalized = match text::prehashed(v) {
            Some(digest) => Ok(digest),
            None => phone::e164(v, hint),
        };
        match normalized {
            Ok(e164) => {
                // One canonical E.164: Meta takes it without the `+` (a
                // digest has none and goes to both platforms as is).
                m.ph = hash(Some(e164.trim_start_matches('+').to_owned()));
                g.phone = hash(Some(e164));
            }
            Err(e) => check(Field::Phone, e.reason(), false),
        }
    }
    if let Some(v) = value(&raw.first_name) {
        let (mn, gn) = (meta::first_name(v), google::given_name(v));
        check(Field::FirstName, NO_LETTERS, mn.is_some() && gn.is_some());
        (m.fn_, g.given_name) = (hash(mn), hash(gn));
    }
    if let Some(v) = value(&raw.last_name) {
        let (mn, gn) = (meta::last_name(v), google::family_name(v));
        check(Field::LastName, NO_LETTERS, mn.is_some() && gn.is_some());
        (m.ln, g.family_name) = (hash(mn), hash(gn));
    }
    if let Some(v) = value(&raw.city) {
        m.ct = hash(meta::city(v));
        check(Field::City, NO_LETTERS, m.ct.is_some());
    }
    if let Some(v) = value(&raw.state) {
        m.st = hash(meta::state(v));
        check(Field::State, NO_LETTERS, m.st.is_some());
    }
    // A digest cannot go to Google's clear fields: not counted as dropped,
    // since Meta still has it.
    let digest = |v: &str| text::prehashed(v).is_some();
    if let Some(v) = value(&raw.zip) {
        let (mz, gz) = (meta::zip(v, hint), google::postal_code(v));
        check(
            Field::Zip,
            BAD_ZIP,
            mz.is_some() && (gz.is_some() || digest(v)),
        );
        (m.zp, g.postal_code) = (hash(mz), gz);
    }
    if let Some(v) = value(&raw.country) {
        let (mc, gc) = (meta::country(v), google::region_code(v));
        check(Field::Country, BAD_COUNTRY, mc.is_some());
        (m.country, g.region_code) = (hash(mc), gc);
    }
    if let Some(v) = value(&raw.external_id) {
        m.external_id = hash(meta::external_id(v));
    }
    (ids, dropped)
}

/// The trimmed raw value of a field, `None` when absent or blank.
fn value(v: &Option<Pii>) -> Option<&str> {
    v.as_ref().and_then(|p| text::present(p.expose()))
}

/// Copies from `previous` every output field that derives from `field`, for
/// a column that arrived as an unchanged TOAST value (no value, same as
/// before). Fields without a Google counterpart (city, state, external id)
/// touch Meta only.
pub fn keep_unchanged(ids: &mut UserIds, field: Field, previous: &UserIds) {
    let (m, g) = (&mut ids.meta, &mut ids.google);
    let (pm, pg) = (&previous.meta, &previous.google);
    match field {
        Field::Email => {
            m.em.clone_from(&pm.em);
            g.email.clone_from(&pg.email);
        }
        Field::Phone => {
            m.ph.clone_from(&pm.ph);
            g.phone.clone_from(&pg.phone);
        }
        Field::FirstName => {
            m.fn_.clone_from(&pm.fn_);
            g.given_name.clone_from(&pg.given_name);
        }
        Field::LastName => {
            m.ln.clone_from(&pm.ln);
            g.family_name.clone_from(&pg.family_name);
        }
        Field::City => m.ct.clone_from(&pm.ct),
        Field::State => m.st.clone_from(&pm.st),
        Field::Zip => {
            m.zp.clone_from(&pm.zp);
            g.postal_code.clone_from(&pg.postal_code);
        }
        Field::Country => {
            m.country.clone_from(&pm.country);
            g.region_code.clone_from(&pg.region_code);
        }
        Field::ExternalId => m.external_id.clone_from(&pm.external_id),
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_google;
