//! Text helpers shared by the Meta and Google normalizers.
//!
//! Inputs: one raw field value. Outputs: a cleaned `String`, or `None` when
//! nothing usable is left.
//!
//! Invariant: pure functions over `&str`; nothing here hashes, logs or keeps
//! a value.

/// A value of 64 hex digits in any case is taken as an already hashed
/// identifier and returned lowercased.
///
/// Such a value cannot be normalized again (the raw text is gone), so it is
/// passed through once, as Meta's SDKs do; if the sender hashed it with
/// another platform's rules it will simply not match there.
pub(super) fn prehashed(s: &str) -> Option<String> {
    let s = s.trim();
    (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
}

/// The trimmed value, or `None` for an empty or whitespace-only one (treated
/// as absent, not as a value that failed to normalize).
pub(super) fn present(s: &str) -> Option<&str> {
    let s = s.trim();
    (!s.is_empty()).then_some(s)
}

/// A name (given or family): lowercase, letters of any script (with combining
/// accents) kept, punctuation and digits removed, inner whitespace runs
/// collapsed to one space. Both platforms ask for "lowercase, no punctuation,
/// trimmed"; neither asks to drop inner spaces.
pub(super) fn name(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    for word in raw.split_whitespace() {
        let word = letters_only(word);
        if !word.is_empty() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&word);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Lowercase letters only: no digits, whitespace or punctuation.
pub(super) fn letters_only(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphabetic() || is_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Combining diacritical marks (U+0300–U+036F) that follow a base letter.
fn is_mark(c: char) -> bool {
    ('\u{300}'..='\u{36f}').contains(&c)
}

/// An email address, trimmed and lowercased, split at its one `@`.
///
/// Requires a non-empty local part, a domain of at least two non-empty
/// dot-separated labels, and no whitespace inside. (Google's formatting page
/// says to remove inner whitespace; an address with a space in it is more
/// likely garbage than a typo, so both platforms drop it alike.)
pub(super) fn email_parts(raw: &str) -> Option<(String, String)> {
    let s = raw.trim().to_lowercase();
    if s.chars().any(char::is_whitespace) {
        return None;
    }
    let (local, domain) = s.split_once('@')?;
    let labels_ok = domain.split('.').count() >= 2 && domain.split('.').all(|l| !l.is_empty());
    let ok = !local.is_empty() && labels_ok && !domain.contains('@');
    ok.then(|| (local.to_owned(), domain.to_owned()))
}
