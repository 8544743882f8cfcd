//! The secrets of a tenant's files (values read from the environment, passwords,
//! credential headers), and their removal from any text flowgate writes: traces,
//! step results, error messages and logs.

use std::borrow::Cow;

use serde_json::Value;

pub const REDACTED: &str = "[redacted]";

/// Values shorter than this are not treated as secrets: redacting `1` or `db`
/// everywhere would make traces unreadable and protect nothing.
const MIN_SECRET_LEN: usize = 4;

#[derive(Debug, Clone, Default)]
pub struct Secrets(Vec<String>);

impl Secrets {
    pub fn add(&mut self, value: &str) {
        let v = value.trim();
        if v.len() >= MIN_SECRET_LEN && !self.0.iter().any(|s| s == v) {
            self.0.push(v.to_owned());
            // Longest first, so that a secret containing another is removed whole.
            self.0.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    pub fn extend(&mut self, other: &Secrets) {
        for s in &other.0 {
            self.add(s);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `text` with every secret replaced by `[redacted]`.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for s in &self.0 {
            if out.contains(s.as_str()) {
                out = Cow::Owned(out.replace(s.as_str(), REDACTED));
            }
        }
        out
    }

    /// Redacts every string (and object key) inside `v`.
    pub fn redact_json(&self, v: &mut Value) {
        if self.0.is_empty() {
            return;
        }
        match v {
            Value::String(s) => {
                if let Cow::Owned(r) = self.redact(s) {
                    *s = r;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| self.redact_json(i)),
            Value::Object(map) => {
                let needs_key = map.keys().any(|k| matches!(self.redact(k), Cow::Owned(_)));
                if needs_key {
                    let old = std::mem::take(map);
                    for (k, mut val) in old {
                        self.redact_json(&mut val);
                        map.insert(self.redact(&k).into_owned(), val);
                    }
                } else {
                    map.values_mut().for_each(|i| self.redact_json(i));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redacts_text_and_json() {
        let mut s = Secrets::default();
        s.add("tok3n-abc");
        s.add("x");
        let mut v = json!({"a": "Bearer tok3n-abc", "b": ["tok3n-abc"], "tok3n-abc": 1});
        s.redact_json(&mut v);
        assert_eq!(
            v,
            json!({"a": "Bearer [redacted]", "b": ["[redacted]"], "[redacted]": 1})
        );
        assert_eq!(s.redact("x y"), "x y");
    }
}
