//! Hashed identifiers, kept per platform.
//!
//! Meta and Google normalize differently before hashing (Google drops dots
//! and `+tags` from gmail addresses, wants E.164 phones with the `+`, and
//! takes country and postal code in clear), so an event carries one set of
//! hashes per platform ([`UserIds`]). Derivation fills them
//! (`derive::identity`); delivery only reads them.
//!
//! Invariant: nothing here holds a raw identifier. Every field is either a
//! [`Sha256Hex`] or, for the few values a platform requires in clear (Google's
//! address `regionCode` and `postalCode`), documented as such.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// A SHA-256 digest, kept as its 32 bytes and written as 64 lowercase
/// hexadecimal characters. Bytes rather than a `String`: no allocation per
/// digest, and no hex decoding when a lane reads an event back (that was
/// 11 % of workload A's ledger reader; bench/RESULTS.md, ninth session).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Hex([u8; 32]);

/// Why a string is not a [`Sha256Hex`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a SHA-256 digest: expected 64 lowercase hexadecimal characters")]
pub struct NotSha256Hex;

impl Sha256Hex {
    /// Accepts exactly 64 lowercase hex characters.
    pub fn parse(value: &str) -> Result<Self, NotSha256Hex> {
        let hex = value.as_bytes();
        if hex.len() != 64 {
            return Err(NotSha256Hex);
        }
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (hex_digit(hex[2 * i])? << 4) | hex_digit(hex[2 * i + 1])?;
        }
        Ok(Sha256Hex(bytes))
    }

    /// SHA-256 of an already normalized value; a value that already is a
    /// lowercase digest (pre-hashed input) is kept as is, never hashed twice.
    pub fn of_normalized(normalized: &str) -> Sha256Hex {
        Sha256Hex::parse(normalized).unwrap_or_else(|_| sha256_hex(normalized))
    }

    /// The digest as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.hex_str(&mut [0; 64]).to_owned()
    }

    /// The digest as lowercase hex, written into `buf`.
    fn hex_str<'b>(&self, buf: &'b mut [u8; 64]) -> &'b str {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for (pair, byte) in buf.chunks_exact_mut(2).zip(self.0) {
            pair[0] = HEX[usize::from(byte >> 4)];
            pair[1] = HEX[usize::from(byte & 0x0f)];
        }
        std::str::from_utf8(buf).expect("hex digits are ASCII")
    }
}

impl std::fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.hex_str(&mut [0; 64]))
    }
}

impl std::fmt::Debug for Sha256Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sha256Hex({self})")
    }
}

/// Hex text in JSON (and every other human-readable format); the digest's
/// 32 bytes in the spool's binary payloads (`spool/payload.rs`).
impl Serialize for Sha256Hex {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(self.hex_str(&mut [0; 64]))
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

/// The value of one lowercase hex digit.
fn hex_digit(c: u8) -> Result<u8, NotSha256Hex> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(NotSha256Hex),
    }
}

impl<'de> Deserialize<'de> for Sha256Hex {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Digest;
        impl serde::de::Visitor<'_> for Digest {
            type Value = Sha256Hex;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a SHA-256 digest (64 lowercase hex digits, or 32 bytes)")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Sha256Hex, E> {
                Sha256Hex::parse(s).map_err(E::custom)
            }
            fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> Result<Sha256Hex, E> {
                b.try_into()
                    .map(Sha256Hex)
                    .map_err(|_| E::invalid_length(b.len(), &self))
            }
        }
        if deserializer.is_human_readable() {
            deserializer.deserialize_str(Digest)
        } else {
            deserializer.deserialize_bytes(Digest)
        }
    }
}

/// SHA-256 of the UTF-8 bytes of a value.
pub fn sha256_hex(normalized: &str) -> Sha256Hex {
    Sha256Hex(Sha256::digest(normalized.as_bytes()).into())
}

/// Exactly 64 lowercase hex digits.
pub fn is_sha256_lower(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| hex_digit(b).is_ok())
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

/// Identifiers normalized per Google's rules (Data Manager `UserData`).
///
/// Email, phone and names are hashed; `region_code` and `postal_code` are
/// sent in clear because Google requires them so (spec/google.md §6). An
/// address is only usable complete, which delivery checks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoogleUserHashes {
    /// Email: gmail/googlemail dots and `+tag` removed, then hashed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub email: Option<Sha256Hex>,
    /// Phone in E.164 (`+18005550100`), then hashed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub phone: Option<Sha256Hex>,
    /// Given name, hashed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub given_name: Option<Sha256Hex>,
    /// Family name, hashed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub family_name: Option<Sha256Hex>,
    /// ISO 3166-1 alpha-2, upper case, in clear.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub region_code: Option<String>,
    /// Postal code, in clear.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub postal_code: Option<String>,
}

impl GoogleUserHashes {
    /// True when nothing survived normalization.
    pub fn is_empty(&self) -> bool {
        *self == GoogleUserHashes::default()
    }
}

/// One person's identifiers, hashed once per platform.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserIds {
    /// Meta's normalization.
    #[serde(default, skip_serializing_if = "MetaUserHashes::is_empty")]
    pub meta: MetaUserHashes,
    /// Google's normalization.
    #[serde(default, skip_serializing_if = "GoogleUserHashes::is_empty")]
    pub google: GoogleUserHashes,
}

impl UserIds {
    /// True when neither platform has an identifier.
    pub fn is_empty(&self) -> bool {
        self.meta.is_empty() && self.google.is_empty()
    }

    /// Fills every field that `self` lacks from `other` (an event's own
    /// columns win over the customer lookup).
    pub fn or(mut self, other: &UserIds) -> UserIds {
        fn fill<T: Clone>(a: &mut Option<T>, b: &Option<T>) {
            if a.is_none() {
                a.clone_from(b);
            }
        }
        let (m, o) = (&mut self.meta, &other.meta);
        fill(&mut m.em, &o.em);
        fill(&mut m.ph, &o.ph);
        fill(&mut m.fn_, &o.fn_);
        fill(&mut m.ln, &o.ln);
        fill(&mut m.ct, &o.ct);
        fill(&mut m.st, &o.st);
        fill(&mut m.zp, &o.zp);
        fill(&mut m.country, &o.country);
        fill(&mut m.external_id, &o.external_id);
        let (g, o) = (&mut self.google, &other.google);
        fill(&mut g.email, &o.email);
        fill(&mut g.phone, &o.phone);
        fill(&mut g.given_name, &o.given_name);
        fill(&mut g.family_name, &o.family_name);
        fill(&mut g.region_code, &o.region_code);
        fill(&mut g.postal_code, &o.postal_code);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_lowercase_hex_and_never_hashed_twice() {
        // printf %s abc | sha256sum
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_hex("abc").to_hex(), abc);
        assert_eq!(Sha256Hex::of_normalized(abc).to_hex(), abc);
        assert!(Sha256Hex::parse(&abc.to_uppercase()).is_err());
        assert!(Sha256Hex::parse("abc").is_err());
        assert!(Sha256Hex::parse(&abc.replace('f', "g")).is_err());
        assert!(Sha256Hex::parse(&abc[1..]).is_err());
        assert!(Sha256Hex::parse(&format!("{abc}0")).is_err());
        // An uppercase digest is not one: it gets hashed like any value.
        let upper = abc.to_uppercase();
        assert_eq!(Sha256Hex::of_normalized(&upper), sha256_hex(&upper));
        let d = sha256_hex("abc");
        assert_eq!(d.to_string(), abc);
        assert_eq!(format!("{d:?}"), format!("Sha256Hex({abc})"));
        // Hex in JSON, the 32 bytes in MessagePack; both read back.
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{abc}\""));
        assert_eq!(serde_json::from_str::<Sha256Hex>(&json).unwrap(), d);
        let packed = rmp_serde::to_vec(&d).unwrap();
        assert_eq!(packed.len(), 2 + 32, "bin 8 marker, length, the digest");
        assert_eq!(&packed[2..], Sha256::digest(b"abc").as_slice());
        assert_eq!(rmp_serde::from_slice::<Sha256Hex>(&packed).unwrap(), d);
        let short = rmp_serde::to_vec(&serde_bytes_of(&[1; 31])).unwrap();
        assert!(rmp_serde::from_slice::<Sha256Hex>(&short).is_err());
    }

    /// MessagePack bytes (a `Vec<u8>` would be written as an array).
    fn serde_bytes_of(b: &[u8]) -> impl Serialize + '_ {
        struct Bytes<'a>(&'a [u8]);
        impl Serialize for Bytes<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(self.0)
            }
        }
        Bytes(b)
    }

    #[test]
    fn own_fields_win_over_the_lookup() {
        let own = UserIds {
            meta: MetaUserHashes {
                em: Some(sha256_hex("a")),
                ..Default::default()
            },
            ..Default::default()
        };
        let lookup = UserIds {
            meta: MetaUserHashes {
                em: Some(sha256_hex("b")),
                ph: Some(sha256_hex("c")),
                ..Default::default()
            },
            google: GoogleUserHashes {
                region_code: Some("US".into()),
                ..Default::default()
            },
        };
        let merged = own.or(&lookup);
        assert_eq!(merged.meta.em, Some(sha256_hex("a")));
        assert_eq!(merged.meta.ph, Some(sha256_hex("c")));
        assert_eq!(merged.google.region_code.as_deref(), Some("US"));
    }
}
