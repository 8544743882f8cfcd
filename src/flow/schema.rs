//! A trigger's `body:` schema: JSON Schema 2020-12, compiled when the flow loads
//! and checked against each request's decoded body before anything is queued.
//! Its `response_schema:` is compiled the same way; both are kept as written too,
//! for the consumer document (`http/consumer_doc/`).
//!
//! Hostile schemas and bodies are bounded: `pattern`s run on the `regex` engine
//! (linear time, no backtracking) with a size limit, no `$ref` is fetched from
//! the network or the disk (the crate is built without either), formats are
//! annotations only (the 2020-12 default), and bodies reach here already bounded
//! in size and depth by decoding.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

/// Violations reported per request; the rest are counted.
pub const MAX_VIOLATIONS: usize = 20;
/// Violations counted beyond those reported, at most (the count says "or more").
const MAX_COUNTED: usize = 1000;
/// A reason longer than this is cut: it may quote a large part of the body.
const MAX_REASON: usize = 200;
/// Bytes a compiled `pattern` may take.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// A compiled `body:` (or `response_schema:`) schema, with the schema as written.
#[derive(Clone)]
pub struct BodySchema {
    validator: Arc<jsonschema::Validator>,
    source: Arc<Value>,
}

impl fmt::Debug for BodySchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BodySchema")
    }
}

/// Why a `body:` schema does not compile.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SchemaError(String);

/// One way a body does not match its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer of the offending value in the body (`""`: the body itself).
    pub pointer: String,
    pub reason: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pointer.is_empty() {
            write!(f, "the body: {}", self.reason)
        } else {
            write!(f, "`{}`: {}", self.pointer, self.reason)
        }
    }
}

/// What checking a body found: the first violations, and how many more.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Violations {
    pub first: Vec<Violation>,
    pub more: usize,
    /// `more` stopped counting.
    pub more_uncounted: bool,
}

impl BodySchema {
    /// Compiles `schema` as draft 2020-12 (whatever its `$schema` says).
    pub fn compile(schema: &Value) -> Result<Self, SchemaError> {
        jsonschema::draft202012::options()
            .with_pattern_options(
                jsonschema::PatternOptions::regex().size_limit(PATTERN_SIZE_LIMIT),
            )
            .build(schema)
            .map(|v| Self {
                validator: Arc::new(v),
                source: Arc::new(schema.clone()),
            })
            .map_err(|e| {
                let at = e.instance_path().as_str();
                let mut why = cut(&e.to_string());
                if why.ends_with("is not a \"regex\"") {
                    why.push_str(" that flowgate runs: no look-around or back-references");
                }
                SchemaError(if at.is_empty() {
                    why
                } else {
                    format!("{why} (at `{at}` in the schema)")
                })
            })
    }

    /// The schema as the file wrote it.
    pub fn source(&self) -> &Value {
        &self.source
    }

    /// Whether `value` matches (nothing is collected).
    pub fn matches(&self, value: &Value) -> bool {
        self.validator.is_valid(value)
    }

    /// Every way `body` does not match, the first [`MAX_VIOLATIONS`] in full.
    pub fn check(&self, body: &Value) -> Violations {
        let mut out = Violations::default();
        // Most bodies match: answering that stops at nothing and builds no errors.
        if self.validator.is_valid(body) {
            return out;
        }
        for e in self.validator.iter_errors(body) {
            if out.first.len() < MAX_VIOLATIONS {
                out.first.push(Violation {
                    pointer: e.instance_path().as_str().to_owned(),
                    reason: cut(&e.to_string()),
                });
            } else if out.more < MAX_COUNTED {
                out.more += 1;
            } else {
                out.more_uncounted = true;
                break;
            }
        }
        out
    }
}

/// `text` within [`MAX_REASON`] bytes, cut at a character boundary.
fn cut(text: &str) -> String {
    if text.len() <= MAX_REASON {
        return text.to_owned();
    }
    format!("{}…", &text[..text.floor_char_boundary(MAX_REASON)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(v: Value) -> BodySchema {
        BodySchema::compile(&v).unwrap()
    }

    #[test]
    fn each_violation_names_its_pointer_and_reason() {
        let s = schema(json!({
            "type": "object",
            "required": ["item", "qty"],
            "properties": {"item": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}}
        }));
        assert_eq!(
            s.check(&json!({"item": "C-300", "qty": 2})),
            Violations::default()
        );
        let v = s.check(&json!({"qty": 0}));
        let lines: Vec<String> = v.first.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "the body: \"item\" is a required property",
                "`/qty`: 0 is less than the minimum of 1",
            ]
        );
    }

    #[test]
    fn violations_beyond_the_first_are_counted() {
        let s = schema(json!({"type": "array", "items": {"type": "integer"}}));
        let v = s.check(&Value::Array(vec![json!("x"); 25]));
        assert_eq!((v.first.len(), v.more, v.more_uncounted), (20, 5, false));
        assert_eq!(v.first[19].pointer, "/19");
        let v = s.check(&Value::Array(vec![json!("x"); 2000]));
        assert_eq!((v.more, v.more_uncounted), (1000, true));
    }

    #[test]
    fn invalid_schemas_and_backtracking_patterns() {
        let e = BodySchema::compile(&json!({"type": "objekt"})).unwrap_err();
        assert!(e.to_string().contains("objekt"), "{e}");
        // Look-around needs a backtracking engine: refused, not run.
        assert!(BodySchema::compile(&json!({"pattern": "(?=a)a"})).is_err());
        // Exponential on a backtracking engine, linear here.
        let s = schema(json!({"type": "string", "pattern": "^(a+)+$"}));
        let text = format!("{}!", "a".repeat(100_000));
        assert_eq!(s.check(&json!(text)).first.len(), 1);
        assert!(BodySchema::compile(&json!({"$ref": "https://example.com/s.json"})).is_err());
    }

    #[test]
    fn long_reasons_are_cut() {
        let s = schema(json!({"type": "array"}));
        let v = s.check(&json!({"a": "é".repeat(500)}));
        assert!(v.first[0].reason.len() <= MAX_REASON + '…'.len_utf8());
        assert!(v.first[0].reason.ends_with('…'));
    }
}
