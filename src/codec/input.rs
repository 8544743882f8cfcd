//! Request -> input document: typed params, raw query, redacted headers, decoded
//! body. Shared by the HTTP layer and `flowgate run`, so both see the same document.

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::domain::depth::{self, DepthError, MAX_INPUT_DEPTH};
use crate::domain::{MessageId, Micros, REDACTED, SECRET_HEADERS, format_rfc3339};
use crate::flow::params::{parse_params, query_object};
use crate::flow::schema::Violations;
use crate::flow::{Method, Trigger};

/// What the caller got wrong, one entry per problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InputError {
    pub code: &'static str,
    pub message: String,
    /// For a violation of the trigger's `body:` schema: the JSON pointer of the
    /// value in the body (`""`: the body itself).
    pub pointer: Option<String>,
}

impl InputError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            pointer: None,
        }
    }
}

/// Everything taken from one request.
pub struct Request<'a> {
    pub id: MessageId,
    pub received_at: Micros,
    pub method: Method,
    pub query: &'a str,
    pub headers: Vec<(String, String)>,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
    /// `{"method": "api_key", "label": ...}` or `{"method": "none"}`
    pub auth: Value,
    /// How deep the body may nest (`max_input_depth`).
    pub max_depth: usize,
}

/// The input document built from one request.
pub struct Document {
    pub input: Value,
    /// The body was JSON and `input.body` is its parse, so the request's own bytes
    /// can stand for it where the document is written out
    /// (`NewMessage::body_json`).
    pub json_body: bool,
}

/// Builds the input document for `trigger`, or every error found.
pub fn document(trigger: &Trigger, req: Request<'_>) -> Result<Document, Vec<InputError>> {
    let mut errors = Vec::new();
    let pairs = match form_pairs(req.query.as_bytes()) {
        Ok(p) => p,
        Err(e) => {
            errors.push(InputError::new(
                "invalid_query",
                format!("the query string cannot be decoded: {e}"),
            ));
            Vec::new()
        }
    };
    let params = match parse_params(&trigger.params, &pairs) {
        Ok(p) => p,
        Err(errs) => {
            errors.extend(
                errs.into_iter()
                    .map(|e| InputError::new("invalid_parameter", e.message)),
            );
            Map::new()
        }
    };
    let xml = is_xml(req.content_type);
    let (body, json_body) = match decode(req.content_type, req.body, req.max_depth) {
        Ok(b) => {
            if let Some(schema) = &trigger.body_schema {
                errors.extend(schema_errors(schema.check(&b.0)));
            }
            b
        }
        Err(e) => {
            errors.push(e);
            (Value::Null, false)
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut headers = Map::new();
    for (name, value) in req.headers {
        let name = name.to_ascii_lowercase();
        let value =
            if SECRET_HEADERS.contains(&name.as_str()) || trigger.secret_headers.contains(&name) {
                REDACTED.to_owned()
            } else {
                value
            };
        headers.insert(name, Value::String(value));
    }
    // Built by moving each part in: `json!` would copy the body and the maps
    // through the serializer.
    let mut doc = Map::with_capacity(11);
    let text = |s: &str| Value::String(s.to_owned());
    doc.insert("message_id".into(), Value::String(req.id.to_string()));
    doc.insert("tenant".into(), text(trigger.key.tenant.as_str()));
    doc.insert("trigger".into(), text(trigger.key.trigger.as_str()));
    doc.insert(
        "received_at".into(),
        Value::String(format_rfc3339(req.received_at)),
    );
    doc.insert("method".into(), text(req.method.as_str()));
    doc.insert("params".into(), Value::Object(params));
    doc.insert("query".into(), Value::Object(query_object(&pairs)));
    doc.insert("headers".into(), Value::Object(headers));
    doc.insert("body".into(), body);
    doc.insert("auth".into(), req.auth);
    if xml && !req.body.is_empty() {
        // The exact text as well, for flows that forward or archive it.
        doc.insert(
            "raw_body".into(),
            Value::String(String::from_utf8_lossy(req.body).into_owned()),
        );
    }
    Ok(Document {
        input: Value::Object(doc),
        json_body,
    })
}

fn essence(content_type: Option<&str>) -> String {
    content_type
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// `application/xml`, `text/xml` or `*+xml`.
pub fn is_xml(content_type: Option<&str>) -> bool {
    let e = essence(content_type);
    e == "application/xml" || e == "text/xml" || e.ends_with("+xml")
}

/// JSON -> value; form -> object; XML -> value (see `crate::codec::xml`); text ->
/// string; anything else -> `{"base64": ...}`; an empty body -> null. Nested
/// at most [`MAX_INPUT_DEPTH`] deep (for answers of outbound calls).
pub fn decode_body(content_type: Option<&str>, body: &[u8]) -> Result<Value, InputError> {
    decode(content_type, body, MAX_INPUT_DEPTH).map(|(value, _)| value)
}

/// One `invalid_body` error per violation of the trigger's `body:` schema, and
/// one more saying how many were left out.
fn schema_errors(found: Violations) -> Vec<InputError> {
    let mut errors: Vec<InputError> = found
        .first
        .iter()
        .map(|v| InputError {
            pointer: Some(v.pointer.clone()),
            ..body_error(v.to_string())
        })
        .collect();
    if found.more > 0 {
        let or_more = if found.more_uncounted { " or more" } else { "" };
        errors.push(body_error(format!(
            "{}{or_more} more violation(s) of the body's schema not listed",
            found.more
        )));
    }
    errors
}

fn body_error(message: String) -> InputError {
    InputError::new("invalid_body", message)
}

fn too_deep(limit: usize) -> InputError {
    InputError::new(
        "too_deep",
        format!("the body is nested deeper than the limit of {limit} levels (max_input_depth)"),
    )
}

/// `decode_body` within `max_depth`, and whether the value is the parse of the
/// body as JSON.
fn decode(
    content_type: Option<&str>,
    body: &[u8],
    max_depth: usize,
) -> Result<(Value, bool), InputError> {
    if body.is_empty() {
        return Ok((Value::Null, false));
    }
    let essence = essence(content_type);
    let text = || {
        std::str::from_utf8(body).map_err(|_| {
            body_error(format!(
                "the body is declared as {essence} but is not valid UTF-8"
            ))
        })
    };
    let json = |body| json_body(body, max_depth).map(|v| (v, true));
    match essence.as_str() {
        "application/json" => json(body),
        e if e.ends_with("+json") => json(body),
        "application/x-www-form-urlencoded" => form_pairs(body)
            .map(|pairs| (Value::Object(query_object(&pairs)), false))
            .map_err(|e| body_error(format!("the body is not valid form data: {e}"))),
        e if e == "application/xml" || e == "text/xml" || e.ends_with("+xml") => {
            match crate::codec::xml::parse(text()?, max_depth) {
                Ok(v) => Ok((v, false)),
                Err(crate::codec::xml::XmlError::TooDeep(limit)) => Err(too_deep(limit)),
                Err(e) => Err(body_error(format!("the body is not valid XML: {e}"))),
            }
        }
        e if e.starts_with("text/") => Ok((Value::String(text()?.to_owned()), false)),
        "" => match depth::parse(body, max_depth) {
            Ok(v) => Ok((v, true)),
            Err(DepthError::TooDeep { limit }) => Err(too_deep(limit)),
            Err(DepthError::Invalid(_)) => Ok((
                std::str::from_utf8(body)
                    .map(|s| Value::String(s.to_owned()))
                    .unwrap_or_else(|_| base64_body(body)),
                false,
            )),
        },
        _ => Ok((base64_body(body), false)),
    }
}

fn json_body(body: &[u8], max_depth: usize) -> Result<Value, InputError> {
    depth::parse(body, max_depth).map_err(|e| match e {
        DepthError::TooDeep { limit } => too_deep(limit),
        DepthError::Invalid(e) => body_error(format!("the body is not valid JSON: {e}")),
    })
}

/// A pair of `application/x-www-form-urlencoded` text that is not UTF-8 once decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// The name of the pair numbered from 1.
    #[error("the name of pair {0} is not valid UTF-8")]
    Name(usize),
    #[error("the value of `{0}` is not valid UTF-8")]
    Value(String),
}

/// `application/x-www-form-urlencoded` pairs (a query string or a form body):
/// `+` is a space, `%XX` a byte, and every name and value must be UTF-8 once
/// decoded (nothing is silently replaced). A `%` not followed by two hex
/// digits stays as it is.
pub fn form_pairs(text: &[u8]) -> Result<Vec<(String, String)>, FormError> {
    fn unescape(part: &[u8]) -> Vec<u8> {
        let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
        let mut out = Vec::with_capacity(part.len());
        let mut i = 0;
        while i < part.len() {
            match part[i] {
                b'+' => out.push(b' '),
                b'%' => match (
                    part.get(i + 1).and_then(|b| hex(*b)),
                    part.get(i + 2).and_then(|b| hex(*b)),
                ) {
                    (Some(h), Some(l)) => {
                        out.push(h << 4 | l);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                },
                b => out.push(b),
            }
            i += 1;
        }
        out
    }
    let mut pairs = Vec::new();
    for (n, part) in text.split(|b| *b == b'&').enumerate() {
        if part.is_empty() {
            continue;
        }
        let (name, value) = match part.iter().position(|b| *b == b'=') {
            Some(i) => (&part[..i], &part[i + 1..]),
            None => (part, &b""[..]),
        };
        let name = String::from_utf8(unescape(name)).map_err(|_| FormError::Name(n + 1))?;
        let value =
            String::from_utf8(unescape(value)).map_err(|_| FormError::Value(name.clone()))?;
        pairs.push((name, value));
    }
    Ok(pairs)
}

fn base64_body(body: &[u8]) -> Value {
    json!({"base64": base64::engine::general_purpose::STANDARD.encode(body)})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_by_content_type() {
        let refused = |ct: &str, body: &[u8], says: &str| {
            let e = decode_body(Some(ct), body).unwrap_err();
            assert!(e.message.contains(says), "{ct}: {}", e.message);
        };
        assert_eq!(
            decode_body(Some("application/json"), b"{\"a\":1}").unwrap(),
            json!({"a": 1})
        );
        assert_eq!(
            decode_body(Some("application/vnd.x+json; charset=utf-8"), b"[1]").unwrap(),
            json!([1])
        );
        refused("application/json", b"{oops", "not valid JSON");
        assert_eq!(
            decode_body(Some("application/x-www-form-urlencoded"), b"a=1&b=x+y").unwrap(),
            json!({"a": "1", "b": "x y"})
        );
        assert_eq!(decode_body(Some("text/plain"), b"hi").unwrap(), json!("hi"));
        assert_eq!(
            decode_body(Some("application/xml"), b"<a x=\"1\"/>").unwrap(),
            json!({"a": {"@x": "1"}})
        );
        refused("text/xml", b"<a>", "not valid XML");
        assert_eq!(
            decode_body(Some("application/octet-stream"), &[0, 255]).unwrap(),
            json!({"base64": "AP8="})
        );
        assert_eq!(decode_body(None, b"").unwrap(), Value::Null);
        assert_eq!(decode_body(None, b"{\"a\":1}").unwrap(), json!({"a": 1}));
    }

    #[test]
    fn only_bodies_parsed_as_json_may_be_stored_as_sent() {
        let json = |ct: Option<&str>, body: &[u8]| decode(ct, body, 128).unwrap().1;
        assert!(json(Some("application/json"), b"{\"a\": 1}"));
        assert!(json(Some("application/vnd.x+json"), b"[1]"));
        assert!(json(None, b" {\"a\":1} "));
        assert!(!json(None, b"not json"));
        assert!(!json(None, b""));
        assert!(!json(Some("text/plain"), b"\"a\""));
        assert!(!json(Some("application/x-www-form-urlencoded"), b"a=1"));
        assert!(!json(Some("application/xml"), b"<a/>"));
        assert!(!json(Some("application/octet-stream"), b"{}"));
    }
}
