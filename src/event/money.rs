//! Money as exact decimal text with an ISO 4217 currency. Never a float: a
//! value read from `numeric(12,2)` reaches the platform digit for digit.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A finite decimal number as text: optional `-`, digits, optional `.digits`
/// (PostgreSQL's `numeric` output without NaN or infinities). Serialized as a
/// JSON string in the spool; delivery writes it as a JSON number.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Decimal(String);

/// Written as its text, borrowed (every payload encode writes one or more).
impl Serialize for Decimal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Why money could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MoneyError {
    /// Not a finite decimal.
    #[error("not a finite decimal number")]
    NotDecimal,
    /// Not a current ISO 4217 code.
    #[error("{0:?} is not an ISO 4217 currency code")]
    Currency(String),
}

impl Decimal {
    /// Accepts `-?[0-9]+(\.[0-9]+)?` (surrounding whitespace trimmed).
    pub fn parse(text: &str) -> Result<Decimal, MoneyError> {
        let t = text.trim();
        let body = t.strip_prefix('-').unwrap_or(t);
        let (int, frac) = match body.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (body, None),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
        if digits(int) && frac.is_none_or(digits) {
            Ok(Decimal(t.to_owned()))
        } else {
            Err(MoneyError::NotDecimal)
        }
    }

    /// An integer count of minor units (cents) as a decimal with `scale`
    /// fraction digits: `(1999, 2)` → `19.99`.
    pub fn from_minor_units(units: i64, scale: u32) -> Decimal {
        let neg = units < 0;
        let digits = units.unsigned_abs().to_string();
        let scale = scale as usize;
        let text = if scale == 0 {
            digits
        } else {
            let padded = format!("{digits:0>width$}", width = scale + 1);
            let (int, frac) = padded.split_at(padded.len() - scale);
            format!("{int}.{frac}")
        };
        Decimal(if neg { format!("-{text}") } else { text })
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True below zero.
    pub fn is_negative(&self) -> bool {
        self.0.starts_with('-') && self.0.bytes().any(|c| (b'1'..=b'9').contains(&c))
    }

    /// Digits before the point (without sign or leading zeros).
    pub fn integer_digits(&self) -> usize {
        let body = self.0.trim_start_matches('-');
        let int = body.split('.').next().unwrap_or_default();
        int.trim_start_matches('0').len()
    }
}

impl TryFrom<String> for Decimal {
    type Error = MoneyError;
    fn try_from(s: String) -> Result<Decimal, MoneyError> {
        Decimal::parse(&s)
    }
}

impl From<Decimal> for String {
    fn from(d: Decimal) -> String {
        d.0
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A current ISO 4217 code, upper case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Currency(iso_currency::Currency);

/// Written as its code, read from a borrowed string: no allocation either
/// way (the lanes read one per event with a value).
impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Currency, D::Error> {
        struct Code;
        impl serde::de::Visitor<'_> for Code {
            type Value = Currency;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an ISO 4217 currency code")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Currency, E> {
                Currency::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_str(Code)
    }
}

impl Currency {
    /// Parses a code in any case (`usd` → `USD`); unknown codes are errors.
    pub fn parse(code: &str) -> Result<Currency, MoneyError> {
        // Every ISO 4217 code is three letters: uppercased on the stack, as
        // this runs for every row with a currency column.
        let t = code.trim();
        let mut upper = [0u8; 3];
        let found = match t.as_bytes() {
            b @ [_, _, _] => {
                upper.copy_from_slice(b);
                upper.make_ascii_uppercase();
                std::str::from_utf8(&upper)
                    .ok()
                    .and_then(iso_currency::Currency::from_code)
            }
            _ => None,
        };
        found
            .map(Currency)
            .ok_or_else(|| MoneyError::Currency(t.chars().take(8).collect()))
    }

    /// The three-letter code.
    pub fn code(self) -> &'static str {
        self.0.code()
    }

    /// Fraction digits of the currency's minor unit (USD 2, JPY 0, BHD 3).
    pub fn minor_unit_digits(self) -> u32 {
        self.0.exponent().map_or(2, u32::from)
    }
}

/// A value and its currency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    /// Exact amount.
    pub amount: Decimal,
    /// ISO 4217.
    pub currency: Currency,
}

impl Money {
    /// Parses both parts.
    pub fn new(amount: &str, currency: &str) -> Result<Money, MoneyError> {
        Ok(Money {
            amount: Decimal::parse(amount)?,
            currency: Currency::parse(currency)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_exact_text() {
        assert_eq!(Decimal::parse(" 12.30 ").unwrap().as_str(), "12.30");
        assert!(Decimal::parse("-0.5").unwrap().is_negative());
        assert!(!Decimal::parse("-0.00").unwrap().is_negative());
        for bad in ["NaN", "Infinity", "", ".5", "1.", "1e3", "--1", "1,5"] {
            assert!(Decimal::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Decimal::parse("000123.4").unwrap().integer_digits(), 3);
    }

    #[test]
    fn minor_units_use_the_currency_exponent() {
        assert_eq!(Decimal::from_minor_units(1999, 2).as_str(), "19.99");
        assert_eq!(Decimal::from_minor_units(5, 2).as_str(), "0.05");
        assert_eq!(Decimal::from_minor_units(-5, 3).as_str(), "-0.005");
        assert_eq!(Decimal::from_minor_units(1200, 0).as_str(), "1200");
        assert_eq!(Currency::parse("jpy").unwrap().minor_unit_digits(), 0);
        assert_eq!(Currency::parse("USD").unwrap().minor_unit_digits(), 2);
        assert_eq!(Currency::parse("bhd").unwrap().minor_unit_digits(), 3);
    }

    #[test]
    fn unknown_currencies_are_refused() {
        assert!(Currency::parse("XYZ").is_err());
        assert!(Currency::parse("US").is_err());
        assert_eq!(Currency::parse(" eur ").unwrap().code(), "EUR");
        assert!(
            Currency::parse("€").is_err(),
            "three bytes, not three letters"
        );
        assert!(Currency::parse("USDX").is_err());
    }

    #[test]
    fn money_is_its_text_in_json_and_messagepack_and_reads_back_checked() {
        let m = Money::new("12.30", "usd").unwrap();
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"amount":"12.30","currency":"USD"}"#);
        assert_eq!(serde_json::from_str::<Money>(&json).unwrap(), m);
        let packed = rmp_serde::to_vec_named(&m).unwrap();
        assert_eq!(rmp_serde::from_slice::<Money>(&packed).unwrap(), m);
        // The same map with a code that is not ISO 4217, or a bad amount.
        for bad in [
            r#"{"amount":"12.30","currency":"ZZZ"}"#,
            r#"{"amount":"1e3","currency":"USD"}"#,
        ] {
            let v: serde_json::Value = serde_json::from_str(bad).unwrap();
            assert!(serde_json::from_str::<Money>(bad).is_err(), "{bad}");
            let packed = rmp_serde::to_vec_named(&v).unwrap();
            assert!(rmp_serde::from_slice::<Money>(&packed).is_err(), "{bad}");
        }
    }
}
