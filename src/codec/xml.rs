//! XML bodies <-> JSON values, both ways with one mapping (docs/flows.md, "XML"):
//!
//! - the document is an object whose one key is the root element's name;
//! - an attribute becomes `"@name": "value"`;
//! - an element with only text becomes that text (a string: numbers are not guessed);
//!   with attributes or children as well, its text goes under `"#text"`;
//! - an empty element without attributes becomes `null`;
//! - child elements become keys; a name that repeats becomes an array in
//!   document order (a single child stays a single value);
//! - prefixes stay as written (`soap:Envelope`, `@xmlns:soap`); CDATA is text;
//!   comments, processing instructions and the DOCTYPE are dropped; only the five
//!   predefined entities and character references are expanded (no external
//!   entities are ever loaded).

use quick_xml::events::Event;
use quick_xml::{Reader, XmlVersion};
use serde_json::{Map, Value};

use crate::domain::depth::{self, MAX_INPUT_DEPTH};

/// Values nested deeper than this are not written as XML.
const MAX_DEPTH: usize = MAX_INPUT_DEPTH;

/// Why a text was not read as XML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// Elements (or the JSON value they map to) nest deeper than the limit.
    #[error("nested deeper than {0} levels")]
    TooDeep(usize),
    #[error("{0}")]
    Invalid(String),
}

/// Why a JSON value was not written as XML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToXmlError {
    #[error("nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("`{0}` is not an XML element name")]
    ElementName(String),
    #[error("`{0}` is not an XML attribute name")]
    AttributeName(String),
    #[error("attribute `{0}` must be a string, number or boolean")]
    AttributeValue(String),
    #[error("`#text` must be a string, number or boolean")]
    Text,
    #[error("XML needs an object with one key, the root element")]
    NotAnObject,
    #[error("XML needs an object with exactly one key, the root element")]
    NotOneKey,
    #[error("the root element cannot repeat")]
    RepeatedRoot,
}

impl From<String> for XmlError {
    fn from(s: String) -> Self {
        Self::Invalid(s)
    }
}

impl From<&str> for XmlError {
    fn from(s: &str) -> Self {
        Self::Invalid(s.to_owned())
    }
}

struct Open {
    name: String,
    map: Map<String, Value>,
    text: String,
}

fn open(e: &quick_xml::events::BytesStart<'_>) -> Result<Open, XmlError> {
    let name = e.name().as_ref().to_owned();
    let mut map = Map::new();
    for a in e.attributes() {
        let a = a.map_err(|e| format!("bad attribute: {e}"))?;
        let key = format!("@{}", a.key.as_ref());
        let value = a
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|e| format!("bad attribute value: {e}"))?;
        map.insert(key, Value::String(value.into_owned()));
    }
    Ok(Open {
        name,
        map,
        text: String::new(),
    })
}

fn close(o: Open) -> (String, Value) {
    let text = o.text.trim();
    let value = if o.map.is_empty() {
        if text.is_empty() {
            Value::Null
        } else {
            Value::String(text.to_owned())
        }
    } else {
        let mut map = o.map;
        if !text.is_empty() {
            map.insert("#text".into(), Value::String(text.to_owned()));
        }
        Value::Object(map)
    };
    (o.name, value)
}

fn add_child(parent: &mut Map<String, Value>, name: String, value: Value) {
    match parent.get_mut(&name) {
        None => {
            parent.insert(name, value);
        }
        Some(Value::Array(items)) if !name.starts_with('@') => items.push(value),
        Some(existing) => {
            let first = std::mem::take(existing);
            *existing = Value::Array(vec![first, value]);
        }
    }
}

/// Parses an XML document into the JSON value described above, nested at most
/// `max_depth` deep: elements (each is at least one level of the value; an
/// element name that repeats adds an array level).
pub fn parse(text: &str, max_depth: usize) -> Result<Value, XmlError> {
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Open> = Vec::new();
    let mut root: Option<(String, Value)> = None;
    loop {
        let event = reader.read_event().map_err(|e| {
            format!(
                "not well-formed XML at byte {}: {e}",
                reader.error_position()
            )
        })?;
        match event {
            Event::Start(e) => {
                if root.is_some() {
                    return Err("more than one root element".into());
                }
                if stack.len() >= max_depth {
                    return Err(XmlError::TooDeep(max_depth));
                }
                stack.push(open(&e)?);
            }
            Event::Empty(e) => {
                if root.is_some() {
                    return Err("more than one root element".into());
                }
                let (name, value) = close(open(&e)?);
                match stack.last_mut() {
                    Some(parent) => add_child(&mut parent.map, name, value),
                    None => root = Some((name, value)),
                }
            }
            Event::End(_) => {
                let Some(o) = stack.pop() else {
                    return Err("a closing tag without its opening tag".into());
                };
                let (name, value) = close(o);
                match stack.last_mut() {
                    Some(parent) => add_child(&mut parent.map, name, value),
                    None => root = Some((name, value)),
                }
            }
            Event::Text(t) => {
                if let Some(o) = stack.last_mut() {
                    o.text.push_str(&t.xml10_content());
                } else if !t.trim().is_empty() {
                    return Err("text outside the root element".into());
                }
            }
            Event::CData(c) => {
                if let Some(o) = stack.last_mut() {
                    o.text.push_str(&c.into_inner());
                }
            }
            Event::GeneralRef(r) => {
                let Some(o) = stack.last_mut() else {
                    return Err("an entity outside the root element".into());
                };
                match r.resolve_char_ref() {
                    Ok(Some(c)) => o.text.push(c),
                    Ok(None) => match quick_xml::escape::resolve_xml_entity(&r) {
                        Some(s) => o.text.push_str(s),
                        None => return Err(format!("unknown entity `&{};`", &*r).into()),
                    },
                    Err(e) => return Err(format!("bad character reference: {e}").into()),
                }
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err(format!("`<{}>` is not closed", stack[stack.len() - 1].name).into());
    }
    let (name, value) = root.ok_or("no root element")?;
    let mut doc = Map::new();
    doc.insert(name, value);
    let doc = Value::Object(doc);
    if depth::depth(&doc) > max_depth {
        return Err(XmlError::TooDeep(max_depth));
    }
    Ok(doc)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
}

fn escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn element(name: &str, v: &Value, out: &mut String, depth: usize) -> Result<(), ToXmlError> {
    if depth > MAX_DEPTH {
        return Err(ToXmlError::TooDeep);
    }
    if let Value::Array(items) = v {
        for item in items {
            element(name, item, out, depth + 1)?;
        }
        return Ok(());
    }
    if !valid_name(name) {
        return Err(ToXmlError::ElementName(name.to_owned()));
    }
    out.push('<');
    out.push_str(name);
    match v {
        Value::Null => out.push_str("/>"),
        Value::Object(map) => {
            for (k, val) in map.iter().filter(|(k, _)| k.starts_with('@')) {
                let attr = &k[1..];
                if !valid_name(attr) {
                    return Err(ToXmlError::AttributeName(attr.to_owned()));
                }
                let text =
                    scalar_text(val).ok_or_else(|| ToXmlError::AttributeValue(attr.to_owned()))?;
                out.push(' ');
                out.push_str(attr);
                out.push_str("=\"");
                escape(&text, out);
                out.push('"');
            }
            out.push('>');
            for (k, val) in map.iter().filter(|(k, _)| !k.starts_with('@')) {
                if k == "#text" {
                    let text = scalar_text(val).ok_or(ToXmlError::Text)?;
                    escape(&text, out);
                } else {
                    element(k, val, out, depth + 1)?;
                }
            }
            out.push_str("</");
            out.push_str(name);
            out.push('>');
        }
        scalar => {
            out.push('>');
            escape(&scalar_text(scalar).unwrap_or_default(), out);
            out.push_str("</");
            out.push_str(name);
            out.push('>');
        }
    }
    Ok(())
}

/// A JSON value in the mapping above (an object with one key, the root) as an
/// XML document.
pub fn to_xml(v: &Value) -> Result<String, ToXmlError> {
    let Value::Object(map) = v else {
        return Err(ToXmlError::NotAnObject);
    };
    let mut entries = map.iter();
    let (Some((name, value)), None) = (entries.next(), entries.next()) else {
        return Err(ToXmlError::NotOneKey);
    };
    if value.is_array() {
        return Err(ToXmlError::RepeatedRoot);
    }
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    element(name, value, &mut out, 0)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn maps_attributes_text_and_repeated_elements() {
        let xml = r#"<?xml version="1.0"?>
            <!-- an order -->
            <order id="7" xmlns:x="urn:x">
              <item sku="A">Apple &amp; pear</item>
              <item sku="B"/>
              <note><![CDATA[<fragile>]]></note>
              <empty/>
              <x:total>12.50</x:total>
              <ch>&#65;&lt;</ch>
            </order>"#;
        let v = parse(xml, 128).unwrap();
        assert_eq!(
            v,
            json!({"order": {
                "@id": "7", "@xmlns:x": "urn:x",
                "item": [{"@sku": "A", "#text": "Apple & pear"}, {"@sku": "B"}],
                "note": "<fragile>", "empty": null, "x:total": "12.50", "ch": "A<"
            }})
        );
    }

    #[test]
    fn refuses_what_is_not_a_document() {
        assert!(parse("<a><b></a>", 128).is_err());
        assert!(parse("<a/><b/>", 128).is_err());
        assert!(parse("", 128).is_err());
        assert!(
            parse("<a>&xxe;</a>", 128)
                .unwrap_err()
                .to_string()
                .contains("unknown entity")
        );
        let deep = |n: usize| "<a>".repeat(n) + &"</a>".repeat(n);
        assert_eq!(parse(&deep(300), 128), Err(XmlError::TooDeep(128)));
        // The innermost element is text (`null` when empty): n elements, n levels.
        assert_eq!(depth::depth(&parse(&deep(128), 128).unwrap()), 128);
        // A repeated name is an array: one more level of the value.
        let repeated = "<a>".repeat(127) + "<b/><b/>" + &"</a>".repeat(127);
        assert_eq!(parse(&repeated, 128), Err(XmlError::TooDeep(128)));
        assert!(parse(&repeated, 129).is_ok());
    }

    #[test]
    fn writes_back_what_it_reads() {
        let v = json!({"price": {"@currency": "EUR", "item": "A-100", "amount": 12.5, "tags": ["x", "y"], "none": null}});
        let xml = to_xml(&v).unwrap();
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><price currency=\"EUR\"><item>A-100</item><amount>12.5</amount><tags>x</tags><tags>y</tags><none/></price>"
        );
        assert_eq!(
            parse(&xml, 128).unwrap(),
            json!({"price": {"@currency": "EUR", "item": "A-100", "amount": "12.5", "tags": ["x", "y"], "none": null}})
        );
        assert!(to_xml(&json!({"a": 1, "b": 2})).is_err());
        assert!(to_xml(&json!({"bad name": 1})).is_err());
        assert_eq!(
            to_xml(&json!({"t": "a<b&\"c\""})).unwrap(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><t>a&lt;b&amp;&quot;c&quot;</t>"
        );
    }
}
