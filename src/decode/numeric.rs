//! `numeric`: binary send format → the exact text PostgreSQL prints.
//!
//! Input: `numeric_send` bytes (Int16 ndigits · Int16 weight · Int16 sign ·
//! Int16 dscale · ndigits × Int16 base-10000 digits) or `numeric_out` text.
//! Output: decimal text identical to `numeric_out` (`get_str_from_var` in
//! `src/backend/utils/adt/numeric.c`): integer part without leading zeros,
//! exactly `dscale` fraction digits, `NaN`, `Infinity`, `-Infinity`.
//!
//! Invariant: integer arithmetic on digits only; no float ever sees a value.

use std::fmt::Write;

use super::value::{Format, ValueError};

/// Sign word values (`NUMERIC_POS`, `NUMERIC_NEG`, `NUMERIC_NAN`, `NUMERIC_PINF`, `NUMERIC_NINF`).
const POS: u16 = 0x0000;
const NEG: u16 = 0x4000;
const NAN: u16 = 0xC000;
const PINF: u16 = 0xD000;
const NINF: u16 = 0xF000;
/// `NUMERIC_DSCALE_MASK`: display scales above this are rejected by `numeric_recv` too.
const DSCALE_MASK: u16 = 0x3FFF;
/// One base-10000 digit holds four decimal digits (`DEC_DIGITS`).
const DEC_DIGITS: usize = 4;

/// Converts `numeric_send` bytes to `numeric_out` text.
pub(super) fn from_binary(raw: &[u8]) -> Result<String, ValueError> {
    const B: Format = Format::Binary;
    let bad = |reason| ValueError::malformed(B, raw.len(), reason);
    let word = |i: usize| raw.get(i..i + 2).map(|w| u16::from_be_bytes([w[0], w[1]]));
    let (Some(ndigits), Some(weight), Some(sign), Some(dscale)) =
        (word(0), word(2), word(4), word(6))
    else {
        return Err(ValueError::Truncated {
            format: B,
            len: raw.len(),
        });
    };
    let ndigits = ndigits as i16;
    let weight = i64::from(weight as i16);
    if ndigits < 0 {
        return Err(bad("negative digit count"));
    }
    let ndigits = ndigits as usize;
    let body = &raw[8..];
    if body.len() < ndigits * 2 {
        return Err(ValueError::Truncated {
            format: B,
            len: raw.len(),
        });
    }
    if body.len() > ndigits * 2 {
        return Err(bad("bytes after the last digit"));
    }
    let negative = match sign {
        POS => false,
        NEG => true,
        NAN => return Ok("NaN".into()),
        PINF => return Ok("Infinity".into()),
        NINF => return Ok("-Infinity".into()),
        _ => return Err(bad("invalid sign word")),
    };
    if dscale & !DSCALE_MASK != 0 {
        return Err(bad("invalid display scale"));
    }
    let mut digits = Vec::with_capacity(ndigits);
    for pair in body.chunks_exact(2) {
        let d = i16::from_be_bytes([pair[0], pair[1]]);
        if !(0..10_000).contains(&d) {
            return Err(bad("digit outside 0..9999"));
        }
        digits.push(d as u16);
    }
    Ok(format_var(negative, weight, dscale as usize, &digits))
}

/// `get_str_from_var`: digits[0] has weight `weight` (value × 10000^weight).
fn format_var(negative: bool, mut weight: i64, dscale: usize, mut digits: &[u16]) -> String {
    // Strip leading zero digits as `numeric_recv` (via make_result) does, so
    // a non-normalized sender cannot produce "00001".
    while let Some((0, rest)) = digits.split_first() {
        digits = rest;
        weight -= 1;
    }
    let digit_at = |index: i64| -> u16 {
        usize::try_from(index)
            .ok()
            .and_then(|i| digits.get(i))
            .copied()
            .unwrap_or(0)
    };
    let mut out = String::new();
    if weight < 0 {
        out.push('0');
    } else {
        for index in 0..=weight {
            let d = digit_at(index);
            if index == 0 {
                let _ = write!(out, "{d}");
            } else {
                let _ = write!(out, "{d:04}");
            }
        }
    }
    if dscale > 0 {
        out.push('.');
        for j in 0..dscale {
            // Fraction decimal j lives in base-10000 digit weight+1+j/4 (index
            // from digits[0]), at position j%4 within it.
            let d = digit_at(weight + 1 + (j / DEC_DIGITS) as i64);
            let div = 10u16.pow((DEC_DIGITS - 1 - j % DEC_DIGITS) as u32);
            out.push(char::from(b'0' + ((d / div) % 10) as u8));
        }
    }
    // numeric_recv truncates to dscale before printing and a zero result is
    // always positive, so the sign shows only if a printed digit is non-zero.
    if negative && out.bytes().any(|b| (b'1'..=b'9').contains(&b)) {
        out.insert(0, '-');
    }
    out
}

/// Accepts `numeric_out` text: `[-]digits[.digits]`, `NaN`, `Infinity`, `-Infinity`.
pub(super) fn check_text(s: &str) -> Result<(), &'static str> {
    if matches!(s, "NaN" | "Infinity" | "-Infinity") {
        return Ok(());
    }
    let unsigned = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !all_digits(int) || !all_digits(frac) || (unsigned.ends_with('.')) {
        return Err("not numeric output text");
    }
    Ok(())
}

/// False for `NaN` and the infinities.
pub(super) fn is_finite_text(s: &str) -> bool {
    !matches!(s, "NaN" | "Infinity" | "-Infinity")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds `numeric_send` bytes.
    fn wire(weight: i16, sign: u16, dscale: u16, digits: &[i16]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&(digits.len() as i16).to_be_bytes());
        b.extend_from_slice(&weight.to_be_bytes());
        b.extend_from_slice(&sign.to_be_bytes());
        b.extend_from_slice(&dscale.to_be_bytes());
        for d in digits {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b
    }

    fn dec(weight: i16, sign: u16, dscale: u16, digits: &[i16]) -> String {
        from_binary(&wire(weight, sign, dscale, digits)).unwrap()
    }

    // Expected strings are what `SELECT x::numeric` prints in psql.
    #[test]
    fn zeros_keep_their_scale() {
        assert_eq!(dec(0, POS, 0, &[]), "0");
        assert_eq!(dec(0, POS, 2, &[]), "0.00");
        // -0 does not exist in numeric: PG prints 0.
        assert_eq!(dec(0, NEG, 1, &[]), "0.0");
        assert_eq!(dec(0, NEG, 0, &[0]), "0");
    }

    #[test]
    fn ordinary_values() {
        assert_eq!(dec(0, NEG, 1, &[1, 5000]), "-1.5");
        assert_eq!(dec(-1, NEG, 1, &[5000]), "-0.5");
        assert_eq!(dec(0, POS, 2, &[12, 3000]), "12.30");
        assert_eq!(dec(2, POS, 4, &[1, 2345, 6789, 1]), "123456789.0001");
        assert_eq!(dec(0, POS, 0, &[7]), "7");
        assert_eq!(dec(1, POS, 0, &[1]), "10000");
        assert_eq!(dec(1, POS, 0, &[9999, 9999]), "99999999");
    }

    #[test]
    fn large_weights_pad_with_zero_groups() {
        // 1e20 = 1 0000 0000 0000 0000 0000
        assert_eq!(dec(5, POS, 0, &[1]), "100000000000000000000");
        assert_eq!(dec(5, NEG, 2, &[1]), "-100000000000000000000.00");
        let big = dec(100, POS, 0, &[42]);
        assert_eq!(big.len(), 2 + 400);
        assert!(big.starts_with("42000"));
    }

    #[test]
    fn small_fractions_and_dscale_padding() {
        assert_eq!(dec(-1, POS, 4, &[1]), "0.0001");
        assert_eq!(dec(-2, POS, 5, &[1000]), "0.00001");
        assert_eq!(dec(-2, POS, 8, &[1]), "0.00000001");
        assert_eq!(dec(0, POS, 6, &[3, 1400]), "3.140000");
        // dscale shorter than the digits sent: truncated like numeric_recv.
        assert_eq!(dec(0, POS, 2, &[3, 1415]), "3.14");
        assert_eq!(dec(-1, NEG, 2, &[1]), "0.00");
    }

    #[test]
    fn leading_zero_digits_are_normalized() {
        assert_eq!(dec(1, POS, 0, &[0, 5]), "5");
        assert_eq!(dec(1, POS, 1, &[0, 0, 5000]), "0.5");
    }

    #[test]
    fn special_values() {
        assert_eq!(dec(0, NAN, 0, &[]), "NaN");
        assert_eq!(dec(0, PINF, 0, &[]), "Infinity");
        assert_eq!(dec(0, NINF, 0, &[]), "-Infinity");
    }

    #[test]
    fn malformed_binary_is_an_error() {
        assert!(matches!(
            from_binary(&[0, 1, 0]),
            Err(ValueError::Truncated { len: 3, .. })
        ));
        let mut short = wire(0, POS, 0, &[1, 2]);
        short.pop();
        assert!(matches!(
            from_binary(&short),
            Err(ValueError::Truncated { .. })
        ));
        let mut long = wire(0, POS, 0, &[1]);
        long.push(0);
        assert!(from_binary(&long).is_err());
        assert!(from_binary(&wire(0, 0x1234, 0, &[1])).is_err());
        assert!(from_binary(&wire(0, POS, 0, &[10_000])).is_err());
        assert!(from_binary(&wire(0, POS, 0, &[-1])).is_err());
        assert!(from_binary(&wire(0, POS, 0xC000, &[1])).is_err());
        let neg_count = [0xFF, 0xFF, 0, 0, 0, 0, 0, 0];
        assert!(from_binary(&neg_count).is_err());
        let msg = from_binary(&[0, 1, 0]).unwrap_err().to_string();
        assert_eq!(msg, "binary value of 3 bytes is truncated");
    }

    #[test]
    fn text_check() {
        for ok in [
            "0",
            "12.30",
            "-0.5",
            "NaN",
            "Infinity",
            "-Infinity",
            "100000000000000000000",
        ] {
            assert!(check_text(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "-", "1.", ".5", "1e20", "1,5", "+1", "nan", "1.2.3", " 1",
        ] {
            assert!(check_text(bad).is_err(), "{bad}");
        }
        assert!(!is_finite_text("NaN"));
        assert!(is_finite_text("1.5"));
    }
}
