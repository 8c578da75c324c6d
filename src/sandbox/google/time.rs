//! The sandbox clock and RFC 3339 timestamps, without a date crate.
//!
//! Input: `google.protobuf.Timestamp` in its proto3 JSON form
//! (`1972-01-01T10:00:20.021Z`, offsets such as `-05:00` accepted, 0–9
//! fraction digits, years 0001–9999, per `google/protobuf/timestamp.proto`).
//! Output: Unix milliseconds, and back to a `Z`-normalised string.
//! Invariant: the wall clock is read in [`wall_ms`] only; the store adds its
//! test-controlled offset on top.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock Unix milliseconds.
pub(super) fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Parses an RFC 3339 timestamp into Unix milliseconds (sub-millisecond digits are dropped).
pub(super) fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    if year == 0 || !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut rest = &b[19..];
    let mut millis = 0;
    if let Some((b'.', tail)) = rest.split_first() {
        let n = tail.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return None;
        }
        let frac = &tail[..n];
        millis = frac
            .iter()
            .chain(std::iter::repeat(&b'0'))
            .take(3)
            .fold(0, |acc, c| acc * 10 + i64::from(c - b'0'));
        rest = &tail[n..];
    }
    let offset_min = match rest {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let oh = digits(&[*h1, *h2])?;
            let om = digits(&[*m1, *m2])?;
            if oh > 23 || om > 59 {
                return None;
            }
            let total = oh * 60 + om;
            if *sign == b'-' {
                -total
            } else {
                total
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let local_s = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some((local_s - offset_min * 60) * 1000 + millis)
}

/// Formats Unix milliseconds as `YYYY-MM-DDThh:mm:ss.mmmZ`.
pub(super) fn format_rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

fn digits(b: &[u8]) -> Option<i64> {
    b.iter().try_fold(0i64, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (the decoder's civil-date arithmetic, shared).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    crate::decode::days_from_civil(y, m as u32, d as u32)
}

/// Inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let (y, m, d) = crate::decode::civil_from_days(z);
    (y, i64::from(m), i64::from(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_protobuf_examples() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("1972-01-01T10:00:20.021Z"),
            Some(63_108_020_021)
        );
        // The Data Manager quickstart's event time, 2025-06-10 15:07:01-05:00.
        assert_eq!(
            parse_rfc3339("2025-06-10T15:07:01-05:00"),
            parse_rfc3339("2025-06-10T20:07:01Z")
        );
        assert_eq!(
            parse_rfc3339("2025-06-10T20:07:01.123456789Z"),
            Some(parse_rfc3339("2025-06-10T20:07:01Z").unwrap() + 123)
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "2025-06-10 20:07:01Z",
            "2025-06-10T20:07:01",
            "2025-02-30T00:00:00Z",
            "2025-06-10T24:00:00Z",
            "2025-06-10T20:07:01.Z",
            "2025-06-10T20:07:01+0500",
            "2025-06-10t20:07:01z",
            "0000-01-01T00:00:00Z",
            "1749586021",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for s in [
            "1970-01-01T00:00:00.000Z",
            "2024-02-29T23:59:59.999Z",
            "2026-11-01T08:30:00.250Z",
        ] {
            assert_eq!(format_rfc3339(parse_rfc3339(s).unwrap()), s);
        }
    }
}
