//! Opaque ids the sandbox hands out: request ids, access tokens, Ads request ids.
//!
//! Input: nothing (a process-wide counter and the standard library's randomly
//! keyed hasher). Output: unique, unpredictable-enough strings. Invariant:
//! ids are never derived from request content, so they carry no PII.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// A random-looking 64-bit value (SipHash over a counter with per-process random keys).
pub(super) fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_i64(super::time::wall_ms());
    h.finish()
}

/// A version-4-shaped UUID, as Data Manager uses for `requestId`.
pub(super) fn uuid() -> String {
    let (a, b) = (random_u64(), random_u64());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        ((b >> 48) & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

/// An opaque bearer token shaped like Google's (`ya29.` prefix).
pub(super) fn access_token() -> String {
    format!(
        "ya29.sandbox.{:016x}{:016x}{:016x}",
        random_u64(),
        random_u64(),
        random_u64()
    )
}

/// A 22-character url-safe id, the shape of Google Ads' `requestId`.
pub(super) fn ads_request_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bits = (u128::from(random_u64()) << 64) | u128::from(random_u64());
    (0..22)
        .map(|i| char::from(ALPHABET[((bits >> (i * 6)) & 63) as usize]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let u = uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(uuid(), uuid());
        assert_eq!(ads_request_id().len(), 22);
        assert!(access_token().starts_with("ya29."));
    }
}
