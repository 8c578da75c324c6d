//! GAQL tokens: words (keywords and dotted field names), quoted strings,
//! numbers and the comparison/list symbols.
//!
//! Input: the query text. Output: tokens, or the `QueryError` for a broken
//! string literal or an unknown symbol (`STRING_NOT_TERMINATED`,
//! `PROHIBITED_NEWLINE_IN_STRING`, `BAD_ESCAPE_SEQUENCE`, `BAD_SYMBOL`).

use super::{err, GaqlError};

/// One GAQL token.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Token {
    /// A keyword, field or resource name, or a bare enum constant.
    Word(String),
    /// A quoted string, unescaped.
    Str(String),
    /// A number as written.
    Num(String),
    /// `= != < <= > >= , ( )`.
    Sym(&'static str),
}

/// Splits a query into tokens.
pub(super) fn tokenize(q: &str) -> Result<Vec<Token>, GaqlError> {
    let chars: Vec<char> = q.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let ch = chars[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch.is_ascii_alphabetic() || ch == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '.')
            {
                i += 1;
            }
            out.push(Token::Word(chars[start..i].iter().collect()));
        } else if ch.is_ascii_digit()
            || (ch == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            out.push(Token::Num(chars[start..i].iter().collect()));
        } else if ch == '\'' || ch == '"' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err(err(
                            "STRING_NOT_TERMINATED",
                            "Error in query: a string literal is not terminated.",
                        ))
                    }
                    Some('\n') => {
                        return Err(err(
                            "PROHIBITED_NEWLINE_IN_STRING",
                            "Error in query: newline inside a string literal.",
                        ))
                    }
                    Some('\\') => {
                        match chars.get(i + 1) {
                            Some(c @ ('\\' | '\'' | '"')) => s.push(*c),
                            _ => {
                                return Err(err(
                                    "BAD_ESCAPE_SEQUENCE",
                                    "Error in query: bad escape sequence in a string literal.",
                                ))
                            }
                        }
                        i += 2;
                    }
                    Some(c) if *c == ch => {
                        i += 1;
                        break;
                    }
                    Some(c) => {
                        s.push(*c);
                        i += 1;
                    }
                }
            }
            out.push(Token::Str(s));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let sym = match (two.as_str(), ch) {
                ("!=", _) => "!=",
                ("<=", _) => "<=",
                (">=", _) => ">=",
                (_, '=') => "=",
                (_, '<') => "<",
                (_, '>') => ">",
                (_, ',') => ",",
                (_, '(') => "(",
                (_, ')') => ")",
                _ => return Err(err("BAD_SYMBOL", "Error in query: unexpected symbol.")),
            };
            i += sym.len();
            out.push(Token::Sym(sym));
        }
    }
    Ok(out)
}
