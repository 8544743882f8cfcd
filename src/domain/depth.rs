//! Nesting depth of JSON text, measured without recursion, and JSON text read
//! with a bound on it. Every document flowgate parses — a caller's body, a
//! stored input, trace or response read back — goes through here, so that deep
//! data is an error naming the limit, never a stack overflow and never a silent
//! `null` (serde_json's own limit of 128 levels would refuse documents the edge
//! accepted).

use serde_json::Value;

/// The deepest stored document that is read back. Above anything the edge
/// accepts (`max_input_depth` is at most [`MAX_INPUT_DEPTH`], an XML element
/// level can take two JSON levels, and the document wraps the body), so every
/// accepted input reads back as it was written. Parsing, serializing and
/// dropping a value this deep stays well inside a 2 MiB thread stack.
pub const MAX_STORED_DEPTH: usize = MAX_INPUT_DEPTH + 64;

/// The largest `max_input_depth` the settings accept: an accepted document,
/// wrapped in the input document and held in a flow's variables, stays within
/// the depth an execution's values may have (`flow::value::MAX_DEPTH`).
pub const MAX_INPUT_DEPTH: usize = 250;

/// Why a JSON text was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DepthError {
    #[error("nested deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("not valid JSON: {0}")]
    Invalid(String),
}

/// Whether `text`'s arrays and objects nest deeper than `limit` (`[]` is one
/// level; a scalar none). Brackets inside strings do not count. Stops at the
/// first level past the limit, so the cost is bounded by the text's length.
pub fn exceeds(text: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in text {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Below this depth serde_json's own (recursive, faster) parser is used.
const RECURSIVE_BELOW: usize = 100;

/// Parses JSON text nested at most `limit` deep (at most [`MAX_STORED_DEPTH`]).
/// Shallow text goes to serde_json; deeper text to a parser that keeps its own
/// stack on the heap, so no depth uses more than a few frames of the thread's.
pub fn parse(text: &[u8], limit: usize) -> Result<Value, DepthError> {
    let limit = limit.min(MAX_STORED_DEPTH);
    if exceeds(text, limit) {
        return Err(DepthError::TooDeep { limit });
    }
    if !exceeds(text, RECURSIVE_BELOW) {
        return serde_json::from_slice(text).map_err(|e| DepthError::Invalid(e.to_string()));
    }
    super::json_iter::parse(text).map_err(|e| DepthError::Invalid(e.to_string()))
}

/// Reads a document the store wrote: at most [`MAX_STORED_DEPTH`] deep.
pub fn parse_stored(text: &str) -> Result<Value, DepthError> {
    parse(text.as_bytes(), MAX_STORED_DEPTH)
}

/// The nesting depth of a value, without recursion.
pub fn depth(v: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Array(items) => {
                deepest = deepest.max(d + 1);
                stack.extend(items.iter().map(|i| (i, d + 1)));
            }
            Value::Object(map) => {
                deepest = deepest.max(d + 1);
                stack.extend(map.values().map(|i| (i, d + 1)));
            }
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(n: usize) -> String {
        format!("{}1{}", "[".repeat(n), "]".repeat(n))
    }

    #[test]
    fn counts_levels_outside_strings() {
        assert!(!exceeds(b"1", 0));
        assert!(exceeds(b"[]", 0));
        assert!(!exceeds(b"[]", 1));
        assert!(!exceeds(br#"{"a":"[[[[\"[[["}"#, 1));
        assert!(exceeds(br#"{"a":"\\",  "b":[[1]]}"#, 2));
        assert!(!exceeds(nested(128).as_bytes(), 128));
        assert!(exceeds(nested(129).as_bytes(), 128));
    }

    #[test]
    fn reads_what_serde_json_alone_would_refuse() {
        let text = nested(300);
        assert!(serde_json::from_str::<Value>(&text).is_err());
        let v = parse(text.as_bytes(), 300).unwrap();
        assert_eq!(depth(&v), 300);
        assert_eq!(serde_json::to_string(&v).unwrap(), text);
        assert_eq!(
            parse(text.as_bytes(), 299),
            Err(DepthError::TooDeep { limit: 299 })
        );
        assert!(matches!(parse(b"[1", 10), Err(DepthError::Invalid(_))));
        assert!(matches!(parse(b"[1] x", 10), Err(DepthError::Invalid(_))));
    }

    #[test]
    fn numbers_read_back_as_they_were_written() {
        // Found by the randomized run: without serde_json's exact float parsing
        // this read back one unit in the last place away.
        let v = serde_json::json!({"amount": 5.72e38, "x": [0.1, 1e-300, 123456.789]});
        let text = serde_json::to_string(&v).unwrap();
        assert_eq!(parse_stored(&text).unwrap(), v);
        let deep = format!("{}5.72e38{}", "[".repeat(200), "]".repeat(200));
        let mut expected = serde_json::json!(5.72e38);
        for _ in 0..200 {
            expected = serde_json::json!([expected]);
        }
        assert_eq!(parse_stored(&deep).unwrap(), expected);
    }

    #[test]
    fn the_deepest_stored_document_fits_a_small_stack() {
        // The 2 MiB that tokio and actix give their threads, less what a request uses
        // before it gets here.
        let run = std::thread::Builder::new()
            .stack_size(1536 * 1024)
            .spawn(|| {
                let text = nested(MAX_STORED_DEPTH);
                let v = parse_stored(&text).unwrap();
                assert_eq!(serde_json::to_string(&v).unwrap(), text);
                let deeper = nested(MAX_STORED_DEPTH + 1);
                assert!(parse_stored(&deeper).is_err());
                let huge = nested(1_000_000);
                assert_eq!(
                    parse_stored(&huge),
                    Err(DepthError::TooDeep {
                        limit: MAX_STORED_DEPTH
                    })
                );
                drop(v);
            })
            .unwrap();
        run.join().unwrap();
    }
}
