//! `application/x-www-form-urlencoded` decoding for query strings and form bodies.
//!
//! Input: the raw text (`data=%5B...%5D&access_token=...`). Output: decoded
//! key/value pairs in order. Written here rather than pulling in a crate for
//! twenty lines; follows the WHATWG rules (`+` is a space, a malformed `%`
//! escape is kept literally).

/// The decoded bytes were not UTF-8.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("form field is not valid UTF-8 after percent-decoding")]
pub struct NotUtf8;

/// Splits and percent-decodes `a=1&b=2`.
pub fn parse(input: &str) -> Result<Vec<(String, String)>, NotUtf8> {
    input
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

fn decode(s: &str) -> Result<String, NotUtf8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| Some(hex(*bytes.get(i + 1)?)? << 4 | hex(*bytes.get(i + 2)?)?))
            .flatten();
        match (bytes[i], escaped) {
            (_, Some(byte)) => {
                out.push(byte);
                i += 2;
            }
            (b'+', None) => out.push(b' '),
            (b, None) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| NotUtf8)
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_pairs() {
        let pairs =
            parse("data=%5B%7B%22a%22%3A1%7D%5D&access_token=a+b&flag&x=%zz&e=%C3%A9").unwrap();
        let expected = [
            ("data", "[{\"a\":1}]"),
            ("access_token", "a b"),
            ("flag", ""),
            ("x", "%zz"),
            ("e", "é"),
        ];
        let got: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(got, expected);
        assert_eq!(parse("a=%FF"), Err(NotUtf8));
        assert_eq!(parse("a=%4"), Ok(vec![("a".into(), "%4".into())]));
    }
}
