//! Dates and timestamps: PostgreSQL epochs, text output, RFC 3339 printing.
//!
//! Input: binary values counted from PostgreSQL's epoch (2000-01-01), or ISO
//! text output (`DateStyle = ISO`, the default) such as
//! `2026-11-26 09:31:42.123456+05:30`. Output: µs / days since the UNIX
//! epoch, with ±infinity kept as the `MAX` / `MIN` sentinels PostgreSQL
//! itself uses.
//!
//! The calendar arithmetic is written out (proleptic Gregorian, Howard
//! Hinnant's `days_from_civil`) rather than delegated to `time`, because
//! PostgreSQL timestamps reach year 294276 and BC dates, beyond `time`'s
//! default ±9999 range; the tests cross-check against `time` where both work.
//!
//! Limit: µs since 1970 in an `i64` end in January 294247, so timestamps in
//! PostgreSQL's last ~30 years (up to 294276) are an error, never a wrap.

/// Days from 1970-01-01 to 2000-01-01 (PostgreSQL's date epoch).
const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01 (PostgreSQL's timestamp epoch).
const PG_EPOCH_US: i64 = PG_EPOCH_DAYS as i64 * US_PER_DAY;
const US_PER_DAY: i64 = 86_400 * US_PER_SEC;
const US_PER_SEC: i64 = 1_000_000;

/// PostgreSQL µs since 2000-01-01 → µs since 1970-01-01; infinities kept;
/// `None` if the shift overflows (never for values PostgreSQL can store).
pub fn pg_timestamp_to_unix_us(pg_us: i64) -> Option<i64> {
    match pg_us {
        i64::MAX | i64::MIN => Some(pg_us),
        _ => pg_us
            .checked_add(PG_EPOCH_US)
            .filter(|us| is_finite_us(*us)),
    }
}

/// PostgreSQL days since 2000-01-01 → days since 1970-01-01; infinities kept.
pub fn pg_date_to_unix_days(pg_days: i32) -> Option<i32> {
    match pg_days {
        i32::MAX | i32::MIN => Some(pg_days),
        _ => pg_days
            .checked_add(PG_EPOCH_DAYS)
            .filter(|d| *d != i32::MAX && *d != i32::MIN),
    }
}

/// False for the ±infinity sentinels.
pub(super) fn is_finite_us(us: i64) -> bool {
    us != i64::MAX && us != i64::MIN
}

/// Days since 1970-01-01 of a proleptic Gregorian date (year 0 = 1 BC).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if y.rem_euclid(4) == 0 && (y.rem_euclid(100) != 0 || y.rem_euclid(400) == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A small cursor over ASCII text output.
struct Text<'a> {
    b: &'a [u8],
    i: usize,
}

impl Text<'_> {
    /// Reads 1.. ASCII digits (at most `max`), as a number.
    fn digits(&mut self, min: usize, max: usize) -> Option<(i64, usize)> {
        let start = self.i;
        let mut v: i64 = 0;
        while self.i - start < max {
            match self.b.get(self.i) {
                Some(c) if c.is_ascii_digit() => {
                    v = v * 10 + i64::from(c - b'0');
                    self.i += 1;
                }
                _ => break,
            }
        }
        let n = self.i - start;
        (n >= min).then_some((v, n))
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.b.get(self.i) == Some(&c);
        if hit {
            self.i += 1;
        }
        hit
    }

    fn rest(&self) -> &[u8] {
        &self.b[self.i.min(self.b.len())..]
    }
}

/// `YYYY-MM-DD` at the cursor (year ≥ 4 digits), as (year, month, day), validated.
fn read_date(t: &mut Text<'_>) -> Option<(i64, u32, u32)> {
    let (y, _) = t.digits(4, 9)?;
    let ok = t.eat(b'-');
    let (m, _) = t.digits(2, 2)?;
    let ok = ok && t.eat(b'-');
    let (d, _) = t.digits(2, 2)?;
    let (m, d) = (m as u32, d as u32);
    (ok && (1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m)).then_some((y, m, d))
}

/// Applies a trailing ` BC` (year 1 BC is astronomical year 0).
fn bc(t: &mut Text<'_>, y: i64) -> Option<i64> {
    if t.rest() == b" BC" {
        t.i += 3;
        (y >= 1).then_some(1 - y)
    } else {
        Some(y)
    }
}

/// Parses `date` output: `2026-11-26`, `0044-03-15 BC`, `infinity`, `-infinity`.
pub(super) fn parse_date(s: &str) -> Result<i32, &'static str> {
    match s {
        "infinity" => return Ok(i32::MAX),
        "-infinity" => return Ok(i32::MIN),
        _ => {}
    }
    let bad = "not ISO date output";
    let mut t = Text {
        b: s.as_bytes(),
        i: 0,
    };
    let (y, m, d) = read_date(&mut t).ok_or(bad)?;
    let y = bc(&mut t, y).ok_or(bad)?;
    if !t.rest().is_empty() {
        return Err(bad);
    }
    i32::try_from(days_from_civil(y, m, d))
        .ok()
        .filter(|d| *d != i32::MAX && *d != i32::MIN)
        .ok_or("date out of range")
}

/// Parses `timestamp` / `timestamptz` ISO output, e.g.
/// `2026-11-26 09:31:42.123456+00`, `… 09:31:42+05:30`, `… BC`, `infinity`.
/// `with_zone` requires the UTC offset timestamptz prints and applies it;
/// without it an offset is an error.
pub(super) fn parse_timestamp(s: &str, with_zone: bool) -> Result<i64, &'static str> {
    match s {
        "infinity" => return Ok(i64::MAX),
        "-infinity" => return Ok(i64::MIN),
        _ => {}
    }
    let bad = if with_zone {
        "not ISO timestamptz output"
    } else {
        "not ISO timestamp output"
    };
    let mut t = Text {
        b: s.as_bytes(),
        i: 0,
    };
    let (y, m, d) = read_date(&mut t).ok_or(bad)?;
    if !t.eat(b' ') && !t.eat(b'T') {
        return Err(bad);
    }
    let (hh, _) = t.digits(2, 2).ok_or(bad)?;
    let (mm, _) = t.eat(b':').then(|| t.digits(2, 2)).flatten().ok_or(bad)?;
    let (ss, _) = t.eat(b':').then(|| t.digits(2, 2)).flatten().ok_or(bad)?;
    if hh > 23 || mm > 59 || ss > 59 {
        return Err(bad);
    }
    let mut micros = 0;
    if t.eat(b'.') {
        let (frac, n) = t.digits(1, 6).ok_or(bad)?;
        micros = frac * 10i64.pow(6 - n as u32);
    }
    let mut offset_s = 0;
    if with_zone {
        let sign = if t.eat(b'+') {
            1
        } else if t.eat(b'-') {
            -1
        } else {
            return Err(bad);
        };
        let (oh, _) = t.digits(2, 2).ok_or(bad)?;
        let mut om = 0;
        let mut os = 0;
        if t.eat(b':') {
            om = t.digits(2, 2).ok_or(bad)?.0;
            if t.eat(b':') {
                os = t.digits(2, 2).ok_or(bad)?.0;
            }
        }
        if om > 59 || os > 59 {
            return Err(bad);
        }
        offset_s = sign * (oh * 3600 + om * 60 + os);
    }
    let y = bc(&mut t, y).ok_or(bad)?;
    if !t.rest().is_empty() {
        return Err(bad);
    }
    // Local wall clock minus the offset is UTC. i128 so no input can overflow.
    let local_s =
        i128::from(days_from_civil(y, m, d)) * 86_400 + i128::from(hh * 3600 + mm * 60 + ss);
    let us = (local_s - i128::from(offset_s)) * i128::from(US_PER_SEC) + i128::from(micros);
    i64::try_from(us)
        .ok()
        .filter(|us| is_finite_us(*us))
        .ok_or("timestamp out of range")
}

/// Formats µs since the UNIX epoch as RFC 3339: `2026-11-26T09:31:42.123456Z`
/// (`utc`) or without the `Z` for zone-less timestamps. The fraction is
/// printed only when non-zero, trailing zeros trimmed. Infinities print as
/// `infinity` / `-infinity`; years outside 0000–9999 (which RFC 3339 cannot
/// express) use ISO 8601's expanded `+YYYYYY` / `-YYYYYY` form.
pub(super) fn format_timestamp(us: i64, utc: bool) -> String {
    match us {
        i64::MAX => return "infinity".into(),
        i64::MIN => return "-infinity".into(),
        _ => {}
    }
    let days = us.div_euclid(US_PER_DAY);
    let in_day = us.rem_euclid(US_PER_DAY);
    let secs = in_day / US_PER_SEC;
    let micros = in_day % US_PER_SEC;
    let mut out = format!(
        "{}T{:02}:{:02}:{:02}",
        format_civil(days),
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if micros != 0 {
        let frac = format!("{micros:06}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    if utc {
        out.push('Z');
    }
    out
}

/// Formats days since 1970-01-01 as `YYYY-MM-DD` (same rules as above).
pub(super) fn format_date(days: i32) -> String {
    match days {
        i32::MAX => "infinity".into(),
        i32::MIN => "-infinity".into(),
        _ => format_civil(i64::from(days)),
    }
}

fn format_civil(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    if (0..=9999).contains(&y) {
        format!("{y:04}-{m:02}-{d:02}")
    } else {
        format!("{y:+07}-{m:02}-{d:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn unix_us(dt: time::OffsetDateTime) -> i64 {
        (dt.unix_timestamp_nanos() / 1000) as i64
    }

    #[test]
    fn epochs() {
        assert_eq!(pg_timestamp_to_unix_us(0), Some(946_684_800_000_000));
        assert_eq!(pg_timestamp_to_unix_us(i64::MAX), Some(i64::MAX));
        assert_eq!(pg_timestamp_to_unix_us(i64::MIN), Some(i64::MIN));
        assert_eq!(pg_timestamp_to_unix_us(i64::MAX - 1), None);
        assert_eq!(pg_date_to_unix_days(0), Some(10_957));
        assert_eq!(pg_date_to_unix_days(-10_957), Some(0));
        assert_eq!(pg_date_to_unix_days(i32::MIN), Some(i32::MIN));
        assert_eq!(pg_date_to_unix_days(i32::MAX - 5), None);
    }

    #[test]
    fn civil_round_trips_and_matches_time() {
        for days in [-800_000, -719_468, -1, 0, 1, 10_957, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        let date = time::Date::from_calendar_date(2026, time::Month::November, 26).unwrap();
        let expected = date.to_julian_day() - time::macros::date!(1970 - 01 - 01).to_julian_day();
        assert_eq!(days_from_civil(2026, 11, 26), i64::from(expected));
        assert_eq!(days_from_civil(2000, 2, 29), 11_016);
    }

    #[test]
    fn parses_timestamptz_text() {
        let want = unix_us(datetime!(2026-11-26 09:31:42.123456 UTC));
        assert_eq!(
            parse_timestamp("2026-11-26 09:31:42.123456+00", true),
            Ok(want)
        );
        assert_eq!(
            parse_timestamp("2026-11-26 15:01:42.123456+05:30", true),
            Ok(want)
        );
        assert_eq!(
            parse_timestamp("2026-11-26 09:31:42+00", true),
            Ok(unix_us(datetime!(2026-11-26 09:31:42 UTC)))
        );
        assert_eq!(
            parse_timestamp("2026-11-25 23:31:42.5-10", true),
            Ok(unix_us(datetime!(2026-11-26 09:31:42.5 UTC)))
        );
        // LMT-era offsets carry seconds.
        assert_eq!(
            parse_timestamp("1900-01-01 00:00:00+00:53:28", true),
            Ok(unix_us(datetime!(1899-12-31 23:06:32 UTC)))
        );
        assert_eq!(parse_timestamp("infinity", true), Ok(i64::MAX));
        assert_eq!(parse_timestamp("-infinity", true), Ok(i64::MIN));
    }

    #[test]
    fn parses_timestamp_and_bc() {
        assert_eq!(
            parse_timestamp("2026-11-26 09:31:42", false),
            Ok(unix_us(datetime!(2026-11-26 09:31:42 UTC)))
        );
        assert_eq!(parse_timestamp("1970-01-01 00:00:00.000001", false), Ok(1));
        // 0001-01-01 BC is astronomical year 0.
        assert_eq!(
            parse_timestamp("0001-01-01 00:00:00 BC", false),
            Ok(days_from_civil(0, 1, 1) * US_PER_DAY)
        );
        assert_eq!(
            parse_timestamp("0001-01-01 00:00:00+00 BC", true),
            Ok(days_from_civil(0, 1, 1) * US_PER_DAY)
        );
        // PostgreSQL's range ends in 294276, but µs since 1970 in an i64 end
        // in January 294247: the last 30 years are an error, not a wrap.
        assert!(parse_timestamp("294247-01-01 00:00:00", false).is_ok());
        assert_eq!(
            parse_timestamp("294276-12-31 23:59:59.999999", false),
            Err("timestamp out of range")
        );
    }

    #[test]
    fn rejects_bad_timestamp_text() {
        for bad in [
            "",
            "2026-11-26",
            "2026-13-01 00:00:00+00",
            "2026-02-29 00:00:00+00",
            "2026-11-26 24:00:00+00",
            "2026-11-26 09:31:42",
            "2026-11-26 09:31:42.1234567+00",
            "2026-11-26 09:31:42+00 AD",
            "26-11-26 09:31:42+00",
            "0000-01-01 00:00:00+00 BC",
        ] {
            assert!(parse_timestamp(bad, true).is_err(), "{bad}");
        }
        assert!(parse_timestamp("2026-11-26 09:31:42+00", false).is_err());
    }

    #[test]
    fn parses_dates() {
        assert_eq!(parse_date("1970-01-01"), Ok(0));
        assert_eq!(parse_date("2026-11-26"), Ok(20_783));
        assert_eq!(parse_date("1969-12-31"), Ok(-1));
        assert_eq!(
            parse_date("0044-03-15 BC"),
            Ok(days_from_civil(-43, 3, 15) as i32)
        );
        assert_eq!(parse_date("infinity"), Ok(i32::MAX));
        assert_eq!(parse_date("-infinity"), Ok(i32::MIN));
        assert!(parse_date("2026-11-31").is_err());
        assert!(parse_date("2026/11/26").is_err());
    }

    #[test]
    fn formats_rfc3339() {
        let us = unix_us(datetime!(2026-11-26 09:31:42.123456 UTC));
        assert_eq!(format_timestamp(us, true), "2026-11-26T09:31:42.123456Z");
        assert_eq!(format_timestamp(us, false), "2026-11-26T09:31:42.123456");
        assert_eq!(format_timestamp(0, true), "1970-01-01T00:00:00Z");
        assert_eq!(format_timestamp(-1, true), "1969-12-31T23:59:59.999999Z");
        assert_eq!(format_timestamp(500_000, true), "1970-01-01T00:00:00.5Z");
        assert_eq!(format_timestamp(i64::MAX, true), "infinity");
        assert_eq!(format_timestamp(i64::MIN, false), "-infinity");
        let far = parse_timestamp("12026-01-01 00:00:00", false).unwrap();
        assert_eq!(format_timestamp(far, true), "+012026-01-01T00:00:00Z");
        // Agrees with `time`'s RFC 3339 output in its range.
        let fmt = &time::format_description::well_known::Rfc3339;
        let t = datetime!(1999-12-31 23:59:59.25 UTC);
        assert_eq!(format_timestamp(unix_us(t), true), t.format(fmt).unwrap());
    }

    #[test]
    fn formats_dates() {
        assert_eq!(format_date(0), "1970-01-01");
        assert_eq!(format_date(20_783), "2026-11-26");
        assert_eq!(format_date(i32::MAX), "infinity");
        assert_eq!(format_date(i32::MIN), "-infinity");
        assert_eq!(
            format_date(days_from_civil(-43, 3, 15) as i32),
            "-000043-03-15"
        );
    }
}
