//! The subset's tokens. Anything the lexer does not know (`?`, `;`, `\u`
//! escapes, ...) makes the whole source fall back to jaq.

/// A piece of a string literal: text, or the source of an interpolation.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Piece {
    Text(String),
    Source(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    /// A `.` not followed by a name: `.`, `."a"`, `.[e]`.
    Dot,
    /// `.name`: one token, as in jaq, so that `.and` is a field, not `. and`.
    Field(String),
    Ident(String),
    /// `$name`, without the `$`.
    Var(String),
    Str(String),
    /// A string literal with escapes or interpolations.
    Template(Vec<Piece>),
    Num(String),
    Op(&'static str),
    Open(char),
    Close(char),
    Comma,
    Colon,
}

pub(super) fn lex(src: &str) -> Option<Vec<Tok>> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i] as char;
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '.' if b.get(i + 1) == Some(&b'.') => {
                out.push(Tok::Op("..")); // recursion, left to jaq
                i += 2;
            }
            '.' | '$' if starts_name(b, i + 1) => {
                let end = word_end(src, i + 1);
                let name = src[i + 1..end].to_owned();
                out.push(if c == '.' {
                    Tok::Field(name)
                } else {
                    Tok::Var(name)
                });
                i = end;
            }
            '.' => {
                out.push(Tok::Dot);
                i += 1;
            }
            '"' => {
                let (pieces, end) = string_literal(src, i + 1)?;
                out.push(match pieces.as_slice() {
                    [] => Tok::Str(String::new()),
                    [Piece::Text(t)] => Tok::Str(t.clone()),
                    _ => Tok::Template(pieces),
                });
                i = end;
            }
            '0'..='9' => {
                let end = number_end(b, i)?;
                out.push(Tok::Num(src[i..end].to_owned()));
                i = end;
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let end = word_end(src, i);
                out.push(Tok::Ident(src[i..end].to_owned()));
                i = end;
            }
            '(' | '[' | '{' => {
                out.push(Tok::Open(c));
                i += 1;
            }
            ')' | ']' | '}' => {
                out.push(Tok::Close(c));
                i += 1;
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            ':' => {
                out.push(Tok::Colon);
                i += 1;
            }
            _ => {
                let two = src.get(i..i + 2).unwrap_or("");
                let op = ["//", "==", "!=", "<=", ">="]
                    .into_iter()
                    .find(|o| *o == two);
                let (op, len) = match op {
                    Some(o) => (o, 2),
                    None => (
                        ["<", ">", "+", "-", "*", "/", "|"]
                            .into_iter()
                            .find(|o| o.starts_with(c))?,
                        1,
                    ),
                };
                out.push(Tok::Op(op));
                i += len;
            }
        }
    }
    Some(out)
}

/// The end of the name (`[a-zA-Z0-9_]*`) starting at `start`.
/// Whether a name (`.name`, `$name`) starts at `at`: a letter or `_`.
fn starts_name(b: &[u8], at: usize) -> bool {
    b.get(at)
        .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
}

fn word_end(src: &str, start: usize) -> usize {
    src[start..]
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map_or(src.len(), |e| e + start)
}

/// The end of the number starting at `start`, read as jaq reads one: digits,
/// a fraction (`.` and at least one digit), an exponent (`e`, a sign, digits);
/// `None` where jaq's lexer fails (`1.`, `1e`).
fn number_end(b: &[u8], start: usize) -> Option<usize> {
    let digits = |i: usize| b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    let mut i = start + digits(start);
    if b.get(i) == Some(&b'.') {
        let n = digits(i + 1);
        if n == 0 {
            return None;
        }
        i += 1 + n;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let n = digits(i);
        if n == 0 {
            return None;
        }
        i += n;
    }
    Some(i)
}

/// Reads a string literal whose opening quote is just before `start`; returns
/// its pieces and the position after the closing quote. Escapes are JSON's;
/// `\(...)` holds an expression (its parentheses and strings may nest).
fn string_literal(src: &str, start: usize) -> Option<(Vec<Piece>, usize)> {
    let b = src.as_bytes();
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut i = start;
    loop {
        match *b.get(i)? {
            b'"' => {
                if !text.is_empty() {
                    pieces.push(Piece::Text(text));
                }
                return Some((pieces, i + 1));
            }
            b'\\' => {
                let escaped = match *b.get(i + 1)? {
                    b'"' => '"',
                    b'\\' => '\\',
                    b'/' => '/',
                    b'n' => '\n',
                    b't' => '\t',
                    b'r' => '\r',
                    b'(' => {
                        let end = interpolation_end(src, i + 2)?;
                        if !text.is_empty() {
                            pieces.push(Piece::Text(std::mem::take(&mut text)));
                        }
                        pieces.push(Piece::Source(src[i + 2..end].to_owned()));
                        i = end + 1;
                        continue;
                    }
                    _ => return None, // \uXXXX and the like are left to jaq
                };
                text.push(escaped);
                i += 2;
            }
            _ => {
                let c = src[i..].chars().next()?;
                text.push(c);
                i += c.len_utf8();
            }
        }
    }
}

/// The position of the `)` that closes an interpolation starting at `start`.
fn interpolation_end(src: &str, start: usize) -> Option<usize> {
    let b = src.as_bytes();
    let mut depth = 0usize;
    let mut i = start;
    loop {
        match *b.get(i)? {
            b'(' => depth += 1,
            b')' if depth == 0 => return Some(i),
            b')' => depth -= 1,
            b'"' => {
                let (_, end) = string_literal(src, i + 1)?;
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
}
