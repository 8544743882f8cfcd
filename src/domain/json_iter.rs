//! A JSON parser whose nesting lives in a `Vec`, not on the thread's stack: for
//! documents too deep for serde_json's recursive parser to be safe on a 2 MiB
//! stack. Strings and numbers (leaves, never nested) are decoded by serde_json,
//! so they mean exactly what they mean everywhere else.

use serde_json::{Map, Number, Value};

enum Frame {
    Array(Vec<Value>),
    /// The object so far and the key whose value is being read.
    Object(Map<String, Value>, String),
}

/// Where and why a text is not JSON, as serde_json says it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at line {line} column {column}")]
pub struct SyntaxError {
    what: String,
    line: usize,
    column: usize,
}

struct Cursor<'a> {
    text: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    /// Steps over a container's opening byte and the whitespace after it; true
    /// when `close` follows at once (an empty container, stepped over whole).
    fn open(&mut self, close: u8) -> bool {
        self.pos += 1;
        self.ws();
        let empty = self.peek() == Some(close);
        if empty {
            self.pos += 1;
        }
        empty
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.text.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek();
        self.pos += usize::from(b.is_some());
        b
    }

    fn error(&self, what: &str) -> SyntaxError {
        let before = &self.text[..self.pos.min(self.text.len())];
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        let column = before.len()
            - before
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1);
        SyntaxError {
            what: what.to_owned(),
            line,
            column,
        }
    }

    fn string(&mut self) -> Result<String, SyntaxError> {
        let start = self.pos;
        let mut i = start + 1;
        loop {
            match self.text.get(i) {
                None => return Err(self.error("EOF while parsing a string")),
                Some(b'"') => break,
                Some(b'\\') => i += 2,
                Some(_) => i += 1,
            }
        }
        let token = self.text.get(start..=i).unwrap_or_default();
        let s = serde_json::from_slice::<String>(token).map_err(|e| self.error(&e.to_string()))?;
        self.pos = i + 1;
        Ok(s)
    }

    fn key(&mut self) -> Result<String, SyntaxError> {
        if self.peek() != Some(b'"') {
            return Err(self.error("key must be a string"));
        }
        let key = self.string()?;
        self.ws();
        if self.next() != Some(b':') {
            return Err(self.error("expected `:`"));
        }
        Ok(key)
    }

    fn number(&mut self) -> Result<Value, SyntaxError> {
        let start = self.pos;
        while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = self.peek() {
            self.pos += 1;
        }
        serde_json::from_slice::<Number>(&self.text[start..self.pos])
            .map(Value::Number)
            .map_err(|_| self.error("invalid number"))
    }

    fn literal(&mut self, word: &[u8], v: Value) -> Result<Value, SyntaxError> {
        if self.text[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(v)
        } else {
            Err(self.error("expected value"))
        }
    }
}

/// Parses one JSON document (whitespace around it allowed, nothing else).
pub fn parse(text: &[u8]) -> Result<Value, SyntaxError> {
    let mut p = Cursor { text, pos: 0 };
    let mut stack: Vec<Frame> = Vec::new();
    'value: loop {
        p.ws();
        let mut v = match p.peek() {
            Some(b'[') => {
                if p.open(b']') {
                    Value::Array(Vec::new())
                } else {
                    stack.push(Frame::Array(Vec::new()));
                    continue 'value;
                }
            }
            Some(b'{') => {
                if p.open(b'}') {
                    Value::Object(Map::new())
                } else {
                    let key = p.key()?;
                    stack.push(Frame::Object(Map::new(), key));
                    continue 'value;
                }
            }
            Some(b'"') => Value::String(p.string()?),
            Some(b'-' | b'0'..=b'9') => p.number()?,
            Some(b't') => p.literal(b"true", Value::Bool(true))?,
            Some(b'f') => p.literal(b"false", Value::Bool(false))?,
            Some(b'n') => p.literal(b"null", Value::Null)?,
            Some(_) => return Err(p.error("expected value")),
            None => return Err(p.error("EOF while parsing a value")),
        };
        // `v` is complete: add it to its container, closing every container
        // the text closes after it.
        loop {
            p.ws();
            let closed = match stack.last_mut() {
                None => {
                    if p.pos < text.len() {
                        return Err(p.error("trailing characters"));
                    }
                    return Ok(v);
                }
                Some(Frame::Array(items)) => {
                    items.push(v);
                    match p.next() {
                        Some(b',') => continue 'value,
                        Some(b']') => b']',
                        _ => return Err(p.error("expected `,` or `]`")),
                    }
                }
                Some(Frame::Object(map, key)) => {
                    map.insert(std::mem::take(key), v);
                    match p.next() {
                        Some(b',') => {
                            p.ws();
                            *key = p.key()?;
                            continue 'value;
                        }
                        Some(b'}') => b'}',
                        _ => return Err(p.error("expected `,` or `}`")),
                    }
                }
            };
            v = match (stack.pop(), closed) {
                (Some(Frame::Array(items)), b']') => Value::Array(items),
                (Some(Frame::Object(map, _)), b'}') => Value::Object(map),
                _ => return Err(p.error("mismatched brackets")),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_serde_json() {
        for text in [
            r#"{"a": [1, -2.5e3, "x\"\\\u00e9", true, false, null, {}], "b": {"c": []}}"#,
            " [ ] ",
            "18446744073709551615",
            r#"{"a":1,"a":2,"b":3}"#,
            "\"\\ud83d\\ude00\"",
        ] {
            let ours = parse(text.as_bytes()).unwrap();
            let theirs: Value = serde_json::from_str(text).unwrap();
            assert_eq!(ours, theirs, "{text}");
            assert_eq!(ours.to_string(), theirs.to_string(), "{text}");
        }
        for bad in [
            "",
            "[",
            "[1,]",
            "{\"a\"}",
            "{\"a\":1,}",
            "[1 2]",
            "01",
            "tru",
            "[1]]",
            "{1:2}",
            "\"\u{1}\"",
            "[\"a]",
            "1 2",
            "-",
            "[}",
            "{]",
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad:?}");
            assert!(serde_json::from_str::<Value>(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse(b"[1,\n  x]").unwrap_err().to_string(),
            "expected value at line 2 column 2"
        );
    }

    #[test]
    fn any_depth_on_a_small_stack() {
        let run = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(|| {
                let n = 100_000;
                let text = format!("{}0{}", "[{\"k\":".repeat(n), "}]".repeat(n));
                let v = parse(text.as_bytes()).unwrap();
                // Taken apart by hand: dropping it whole would recurse.
                let mut levels = 0;
                let mut cur = v;
                while let Value::Array(mut items) = cur {
                    let Some(Value::Object(mut m)) = items.pop() else {
                        break;
                    };
                    cur = m.remove("k").unwrap_or(Value::Null);
                    levels += 1;
                }
                assert_eq!(levels, n);
            })
            .unwrap();
        run.join().unwrap();
    }
}
