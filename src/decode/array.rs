//! One-dimensional arrays: `array_out` text and `array_send` binary.
//!
//! Input: the bytes of one array column. Output: its elements in order,
//! `None` for NULL elements; element conversion (text, integers) is done by
//! the caller in `value.rs`. Arrays with more than one dimension are an
//! error naming the dimension count, never flattened.
//!
//! The binary form is parsed here rather than with
//! `postgres_protocol::types::array_from_sql`, because iterating its result
//! needs the `fallible-iterator` trait, a crate this module may not depend on.

use super::value::{Format, ValueError};

/// Parses `array_out` text such as `{a,"b c",NULL,"with \"quote\""}`.
///
/// Follows `ReadArrayStr`: elements are separated by `,`; double quotes
/// protect delimiters, braces and whitespace; a backslash escapes the next
/// character; unquoted whitespace around an element is dropped; an
/// unquoted, unescaped `NULL` (any case) is SQL NULL. A leading dimension
/// decoration (`[0:2]=`, printed when the lower bound is not 1) is skipped.
pub(super) fn parse_text(s: &str) -> Result<Vec<Option<String>>, ValueError> {
    const T: Format = Format::Text;
    let bad = |reason| ValueError::malformed(T, s.len(), reason);
    let mut body = s;
    if body.starts_with('[') {
        let (decoration, rest) = body
            .split_once('=')
            .ok_or_else(|| bad("unterminated dimension decoration"))?;
        let dims_declared = decoration.matches('[').count();
        if dims_declared > 1 {
            return Err(ValueError::MultiDimArray {
                format: T,
                dims: dims_declared,
            });
        }
        body = rest;
    }
    let chars: Vec<char> = body.chars().collect();
    let mut i = 0;
    if chars.first() != Some(&'{') {
        return Err(bad("array text does not start with {"));
    }
    i += 1;
    if chars.get(i) == Some(&'{') {
        let dims = chars.iter().take_while(|c| **c == '{').count();
        return Err(ValueError::MultiDimArray { format: T, dims });
    }
    let mut items = Vec::new();
    let skip_ws = |i: &mut usize| {
        while chars.get(*i).is_some_and(|c| c.is_whitespace()) {
            *i += 1;
        }
    };
    skip_ws(&mut i);
    if chars.get(i) == Some(&'}') {
        i += 1;
    } else {
        loop {
            skip_ws(&mut i);
            let mut item = String::new();
            let mut quoted = false;
            let mut escaped_any = false;
            // Length of `item` up to the last character that must be kept
            // (quoted or escaped), so trailing unquoted whitespace can be trimmed.
            let mut keep = 0;
            loop {
                let Some(&c) = chars.get(i) else {
                    return Err(bad("unterminated array"));
                };
                match c {
                    '\\' => {
                        let next = *chars.get(i + 1).ok_or_else(|| bad("dangling backslash"))?;
                        item.push(next);
                        keep = item.len();
                        escaped_any = true;
                        i += 2;
                    }
                    '"' if quoted => {
                        quoted = false;
                        keep = item.len();
                        i += 1;
                    }
                    '"' => {
                        quoted = true;
                        escaped_any = true;
                        i += 1;
                    }
                    _ if quoted => {
                        item.push(c);
                        keep = item.len();
                        i += 1;
                    }
                    ',' | '}' => break,
                    '{' => return Err(ValueError::MultiDimArray { format: T, dims: 2 }),
                    _ => {
                        item.push(c);
                        if !c.is_whitespace() {
                            keep = item.len();
                        }
                        i += 1;
                    }
                }
            }
            item.truncate(keep);
            if item.is_empty() && !escaped_any {
                return Err(bad("empty array element"));
            }
            if !escaped_any && item.eq_ignore_ascii_case("NULL") {
                items.push(None);
            } else {
                items.push(Some(item));
            }
            let delimiter = chars[i];
            i += 1;
            if delimiter == '}' {
                break;
            }
        }
    }
    if i != chars.len() {
        return Err(bad("text after the closing brace"));
    }
    Ok(items)
}

/// A decoded `array_send` header and its raw elements.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct BinaryArray<'a> {
    /// `pg_type` OID of the elements, as the sender declared it.
    pub elem_oid: u32,
    /// Element bytes in order; `None` for NULL elements.
    pub items: Vec<Option<&'a [u8]>>,
}

/// Parses `array_send` bytes: Int32 ndim · Int32 has-nulls flag · Int32
/// element OID · per dimension (Int32 length, Int32 lower bound) · per
/// element Int32 length (-1 = NULL) + bytes. Returns the element OID and
/// the raw element bytes.
pub(super) fn parse_binary(raw: &[u8]) -> Result<BinaryArray<'_>, ValueError> {
    const B: Format = Format::Binary;
    let truncated = || ValueError::Truncated {
        format: B,
        len: raw.len(),
    };
    let bad = |reason| ValueError::malformed(B, raw.len(), reason);
    let mut pos = 0;
    let int = |pos: &mut usize| -> Result<i32, ValueError> {
        let b = raw.get(*pos..*pos + 4).ok_or_else(truncated)?;
        *pos += 4;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let ndim = int(&mut pos)?;
    let _has_nulls = int(&mut pos)?;
    let elem_oid = int(&mut pos)? as u32;
    let count = match ndim {
        0 => 0,
        1 => {
            let len = int(&mut pos)?;
            let _lower_bound = int(&mut pos)?;
            usize::try_from(len).map_err(|_| bad("negative dimension length"))?
        }
        n if n < 0 => return Err(bad("negative dimension count")),
        n => {
            return Err(ValueError::MultiDimArray {
                format: B,
                dims: n as usize,
            })
        }
    };
    // Each element needs at least its 4-byte length: bound the allocation by
    // what the buffer can actually hold.
    let mut items = Vec::with_capacity(count.min(raw.len() / 4));
    for _ in 0..count {
        let len = int(&mut pos)?;
        if len == -1 {
            items.push(None);
            continue;
        }
        let len = usize::try_from(len).map_err(|_| bad("negative element length"))?;
        let bytes = raw
            .get(pos..pos.saturating_add(len))
            .ok_or_else(truncated)?;
        pos += len;
        items.push(Some(bytes));
    }
    if pos != raw.len() {
        return Err(bad("bytes after the last element"));
    }
    Ok(BinaryArray { elem_oid, items })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    #[test]
    fn text_elements_quotes_escapes_and_nulls() {
        assert_eq!(
            parse_text(r#"{a,"b c",NULL,"with \"quote\""}"#).unwrap(),
            vec![s("a"), s("b c"), None, s("with \"quote\"")]
        );
        assert_eq!(
            parse_text("{1,2,NULL}").unwrap(),
            vec![s("1"), s("2"), None]
        );
        assert_eq!(parse_text("{}").unwrap(), Vec::<Option<String>>::new());
        // A quoted NULL is the string "NULL"; case-insensitive bare null is NULL.
        assert_eq!(
            parse_text(r#"{"NULL",null}"#).unwrap(),
            vec![s("NULL"), None]
        );
        assert_eq!(parse_text(r#"{"",x}"#).unwrap(), vec![s(""), s("x")]);
        assert_eq!(
            parse_text(r"{a\,b,c\\d}").unwrap(),
            vec![s("a,b"), s(r"c\d")]
        );
        assert_eq!(parse_text("{ a , b }").unwrap(), vec![s("a"), s("b")]);
        assert_eq!(
            parse_text(r#"{"  padded  "}"#).unwrap(),
            vec![s("  padded  ")]
        );
        assert_eq!(parse_text("{ä,日本}").unwrap(), vec![s("ä"), s("日本")]);
        assert_eq!(parse_text("[0:1]={x,y}").unwrap(), vec![s("x"), s("y")]);
    }

    #[test]
    fn text_multi_dimensional_is_an_error() {
        assert!(matches!(
            parse_text("{{1,2},{3,4}}"),
            Err(ValueError::MultiDimArray { dims: 2, .. })
        ));
        assert!(matches!(
            parse_text("[1:2][1:1]={{1},{2}}"),
            Err(ValueError::MultiDimArray { dims: 2, .. })
        ));
    }

    #[test]
    fn text_malformed() {
        for bad in [
            "", "a,b", "{a,b", "{a,}", "{a}x", r#"{"a}"#, r"{a\", "{,}", "[1:2",
        ] {
            assert!(parse_text(bad).is_err(), "{bad}");
        }
    }

    fn binary(ndim: i32, elem: u32, dims: &[(i32, i32)], items: &[Option<&[u8]>]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&ndim.to_be_bytes());
        b.extend_from_slice(&i32::from(items.iter().any(Option::is_none)).to_be_bytes());
        b.extend_from_slice(&elem.to_be_bytes());
        for (len, lb) in dims {
            b.extend_from_slice(&len.to_be_bytes());
            b.extend_from_slice(&lb.to_be_bytes());
        }
        for item in items {
            match item {
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(v) => {
                    b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    b.extend_from_slice(v);
                }
            }
        }
        b
    }

    #[test]
    fn binary_one_dimension() {
        let raw = binary(1, 25, &[(3, 1)], &[Some(b"a"), None, Some(b"")]);
        let array = parse_binary(&raw).unwrap();
        assert_eq!(array.elem_oid, 25);
        assert_eq!(array.items, vec![Some(&b"a"[..]), None, Some(&b""[..])]);
        let empty = binary(0, 23, &[], &[]);
        assert_eq!(
            parse_binary(&empty).unwrap(),
            BinaryArray {
                elem_oid: 23,
                items: vec![]
            }
        );
    }

    #[test]
    fn binary_errors() {
        let two = binary(2, 23, &[(1, 1), (1, 1)], &[Some(&[0, 0, 0, 1])]);
        assert!(matches!(
            parse_binary(&two),
            Err(ValueError::MultiDimArray { dims: 2, .. })
        ));
        let mut cut = binary(1, 25, &[(2, 1)], &[Some(b"ab"), Some(b"cd")]);
        cut.pop();
        assert!(matches!(
            parse_binary(&cut),
            Err(ValueError::Truncated { .. })
        ));
        let mut extra = binary(1, 25, &[(1, 1)], &[Some(b"ab")]);
        extra.push(0);
        assert!(parse_binary(&extra).is_err());
        // A huge declared length must not allocate or panic.
        let huge = binary(1, 25, &[(i32::MAX, 1)], &[]);
        assert!(matches!(
            parse_binary(&huge),
            Err(ValueError::Truncated { .. })
        ));
        assert!(parse_binary(&binary(-1, 25, &[], &[])).is_err());
        assert!(parse_binary(&[0, 0]).is_err());
        let neg_len = binary(1, 25, &[(-1, 1)], &[]);
        assert!(parse_binary(&neg_len).is_err());
    }
}
