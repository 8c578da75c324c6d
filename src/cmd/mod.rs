//! Operator commands beside `run`: each takes the validated [`Config`] and
//! returns the text to print (or an error naming the remedy). They reuse
//! the stages (spool, deliver) and never touch the replication slot.
//!
//! - [`dead_letters`]: `capi-cdc dead-letters list|retry|drop`
//! - [`provision`]: `capi-cdc provision` (Google conversion actions)
//! - [`send_test`]: `capi-cdc send-test`
//! - [`replay`]: `capi-cdc replay --from-lsn`
//! - [`backfill`]: `capi-cdc backfill --since`
//! - [`demo`]: `capi-cdc demo`
//!
//! [`Config`]: crate::config::Config

pub mod backfill;
pub mod dead_letters;
pub mod demo;
pub mod provision;
pub mod replay;
pub mod send_test;

/// A command failed; the message names the thing and the remedy.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// The spool failed.
    #[error(transparent)]
    Spool(#[from] crate::spool::SpoolError),
    /// Provisioning failed.
    #[error(transparent)]
    Provision(#[from] crate::deliver::google::provision::ProvisionError),
    /// A flag's value is unusable.
    #[error("{0}")]
    Usage(String),
}

/// Parses a time for `--since` / `--until`: `YYYY-MM-DD`,
/// `YYYY-MM-DDTHH:MM:SSZ`, or an age like `90m`, `6h`, `2d` (that long ago).
pub fn parse_time_ms(text: &str, now_ms: i64) -> Result<i64, CmdError> {
    let bad = || {
        CmdError::Usage(format!(
            "{text:?} is not a time: use 2026-12-01, 2026-12-01T08:00:00Z, or an age like 6h or 2d"
        ))
    };
    let t = text.trim();
    let age = t.len() > 1 && t[..t.len() - 1].bytes().all(|c| c.is_ascii_digit());
    if let Some(unit) = t.chars().last().filter(|c| age && c.is_ascii_alphabetic()) {
        let n: i64 = t[..t.len() - 1].parse().map_err(|_| bad())?;
        let ms = match unit {
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            _ => return Err(bad()),
        };
        return Ok(now_ms - n * ms);
    }
    let (date, time) = t.split_once('T').unwrap_or((t, "00:00:00Z"));
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (Some(Ok(y)), Some(Ok(m)), Some(Ok(day)), None) = (d.next(), d.next(), d.next(), d.next())
    else {
        return Err(bad());
    };
    let time = time.strip_suffix('Z').ok_or_else(bad)?;
    let mut hms = time.split(':').map(|p| p.parse::<i64>());
    let (Some(Ok(hh)), Some(Ok(mm)), Some(Ok(ss))) = (hms.next(), hms.next(), hms.next()) else {
        return Err(bad());
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return Err(bad());
    }
    let days = crate::decode::days_from_civil(y, m as u32, day as u32);
    Ok(((days * 86_400) + hh * 3600 + mm * 60 + ss) * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_dates_instants_and_ages() {
        assert_eq!(parse_time_ms("1970-01-02", 0).unwrap(), 86_400_000);
        assert_eq!(
            parse_time_ms("2025-12-01T14:00:00Z", 0).unwrap(),
            1_764_597_600_000
        );
        assert_eq!(parse_time_ms("6h", 10 * 3_600_000).unwrap(), 4 * 3_600_000);
        assert_eq!(parse_time_ms("2d", 3 * 86_400_000).unwrap(), 86_400_000);
        for bad in ["yesterday", "2025-13-01", "12x", "2025-12-01T14:00"] {
            assert!(parse_time_ms(bad, 0).is_err(), "{bad}");
        }
    }
}
