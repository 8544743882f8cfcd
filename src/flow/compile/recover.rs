//! A value of the wrong YAML type (a mapping where a jq expression goes, a
//! list for a string, a word for a number): reported with its key and what was
//! expected, then replaced in a copy of the text by a placeholder of the right
//! type so that parsing goes on to the rest of the file.

use serde_json::Value;
use serde_saphyr::Error;

/// What a value of the wrong type should have been, in words, and a YAML
/// placeholder of that type.
pub struct Expected {
    pub what: &'static str,
    pub placeholder: &'static str,
    /// A jq expression was expected.
    pub expr: bool,
    /// The error says a mapping was found: it points at the mapping, which in
    /// block style starts with a key of its own. Other errors may point at the
    /// value's key.
    pub map_found: bool,
}

/// The expectation a type error names, or `None` for errors of another kind.
pub fn expected(err: &Error) -> Option<Expected> {
    let mut map_found = false;
    let named = match err.without_snippet() {
        Error::SerdeInvalidType {
            expected,
            unexpected,
            ..
        }
        | Error::SerdeInvalidValue {
            expected,
            unexpected,
            ..
        } => {
            map_found = unexpected == "map";
            expected.as_str()
        }
        Error::InvalidScalar { ty, .. } => ty,
        Error::Unexpected { expected, .. } => expected,
        Error::InvalidBooleanStrict { .. } => "bool",
        Error::NullIntoString { .. } => "a string",
        _ => return None,
    };
    let (what, placeholder, expr) = match named {
        "a jq expression" => ("a jq expression", "null", true),
        n if n.starts_with("a jq expression,") => (
            "a jq expression, or a mapping or list of literal data",
            "null",
            true,
        ),
        "a string" | "string" | "str" | "string scalar" => ("a string", "''", false),
        "i8" | "i16" | "i32" | "i64" | "i128" | "u8" | "u16" | "u32" | "u64" | "u128" | "isize"
        | "usize" => ("an integer", "0", false),
        "f32" | "f64" => ("a number", "0", false),
        "bool" | "a boolean" => ("true or false", "false", false),
        "a sequence" | "sequence" | "sequence start" => ("a list", "[]", false),
        "mapping start" => ("a mapping", "{}", false),
        n if n.starts_with("a map") || n.starts_with("struct ") => ("a mapping", "{}", false),
        _ => return None,
    };
    Some(Expected {
        what,
        placeholder,
        expr,
        map_found,
    })
}

/// The message for a value of the wrong type at `line`:`column` (1-based) of
/// `text`, naming its key, what it is and what was expected.
pub fn message(text: &str, line: usize, column: usize, expected: &Expected) -> String {
    let Some(at) = offset(text, line, column).map(|o| value_start(text, o, expected)) else {
        return format!("expected {}", expected.what);
    };
    let key = key_of(text, at).map_or_else(
        || "this value".to_owned(),
        |(key, item)| {
            if item {
                format!("an item of `{key}`")
            } else {
                format!("`{key}`")
            }
        },
    );
    let span = value_span(text, at);
    let source = span.map(|(a, b)| &text[a..b]).unwrap_or_default();
    let found = match source.trim_start().chars().next() {
        Some('{') => "a mapping".to_owned(),
        Some('[') => "a list".to_owned(),
        Some('-') if source.trim_start().starts_with("- ") => "a list".to_owned(),
        _ if is_block_mapping(source) => "a mapping".to_owned(),
        _ if source.trim().is_empty() => "empty".to_owned(),
        _ => format!("`{}`", source.trim()),
    };
    if !expected.expr {
        let mut msg = format!("{key} expects {}, not {found}", expected.what);
        if let Some(item) = lone_item(source).filter(|_| expected.what == "a list") {
            msg.push_str(&format!("; a list of one is written `[{item}]`"));
        }
        return msg;
    }
    let mut msg = format!("{key} is {}, not {found}", expected.what);
    // Parsed where it stands: a block mapping's later lines keep their indentation.
    let column = text[..at]
        .rsplit('\n')
        .next()
        .map_or(0, |l| l.chars().count());
    let literal = serde_saphyr::from_str::<Value>(&format!("{}{source}", " ".repeat(column)))
        .ok()
        .filter(|v| v.is_object() || v.is_array())
        .map(|v| jq_literal(&v))
        .filter(|l| l.len() <= 200);
    match literal {
        Some(l) if l.starts_with('{') => msg.push_str(&format!(
            "; write an object in jq, in quotes: '{}'",
            l.replace('\'', "''")
        )),
        Some(l) => msg.push_str(&format!(
            "; write an array in jq, in quotes: '{}'",
            l.replace('\'', "''")
        )),
        None => {}
    }
    msg
}

/// `text` with the value at `line`:`column` (or of the key there) replaced by
/// `placeholder` and spaces (every other position stays where it was), and
/// where the value starts (1-based line and column).
pub fn replace_value(
    text: &str,
    line: usize,
    column: usize,
    expected: &Expected,
) -> Option<(String, (u64, u64))> {
    let placeholder = expected.placeholder;
    let at = value_start(text, offset(text, line, column)?, expected);
    let (start, end) = value_span(text, at)?;
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..start]);
    let old = &text[start..end];
    // A single value where a list goes, alone on its line: the list of it, so
    // that the value is still checked (one bracket more on that line).
    let wrapped = lone_item(old)
        .filter(|_| placeholder == "[]" && !text[end..].starts_with([',', '}', ']']))
        .map(|item| format!("[{item}]"));
    let placeholder = wrapped.as_deref().unwrap_or(placeholder);
    let mut rest = placeholder.chars();
    for c in old.chars() {
        match c {
            '\n' | '\r' => out.push(c),
            _ => match rest.next() {
                Some(p) => out.push(p),
                None => out.extend(std::iter::repeat_n(' ', c.len_utf8())),
            },
        }
    }
    // A value shorter than its placeholder (`x` for `''`): the rest goes after it.
    out.extend(rest);
    out.push_str(&text[end..]);
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Some((out, (line as u64, column as u64)))
}

/// Where the value begins when `at` is its key (some errors point there):
/// after `key:` and the spaces. An error that found a mapping points at it,
/// and in block style that is its first key.
fn value_start(text: &str, at: usize, expected: &Expected) -> usize {
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let before = &text[line_start..at];
    let in_flow = before.matches(['{', '[']).count() > before.matches(['}', ']']).count();
    if expected.map_found && !in_flow {
        return at;
    }
    let rest = &text[at..];
    let key_len = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
        .unwrap_or(0);
    let after = &rest[key_len..];
    if key_len == 0 || !(after.starts_with(": ") || after.starts_with(":\n")) {
        return at;
    }
    let value = after[1..].trim_start_matches([' ', '\n', '\r']);
    at + rest.len() - value.len()
}

/// Byte offset of `line`:`column` (1-based; columns count characters).
fn offset(text: &str, line: usize, column: usize) -> Option<usize> {
    let mut start = 0;
    for _ in 1..line {
        start += text[start..].find('\n')? + 1;
    }
    let line_text = text[start..].split('\n').next().unwrap_or_default();
    let within = line_text
        .char_indices()
        .nth(column.checked_sub(1)?)
        .map_or(line_text.len(), |(i, _)| i);
    Some(start + within)
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// Byte range of the value starting at `line`:`column`: a bracketed flow
/// value, a block value (the lines indented at least as deep), a quoted
/// scalar, or a plain one up to the end of its line or flow entry.
fn value_span(text: &str, start: usize) -> Option<(usize, usize)> {
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let before = &text[line_start..start];
    let rest = &text[start..];
    let first = rest.chars().next()?;
    if first == '{' || first == '[' {
        return bracketed(rest).map(|n| (start, start + n));
    }
    if first == '"' || first == '\'' {
        let close = rest[1..].find(first).map_or(rest.len(), |i| i + 2);
        return Some((start, start + close));
    }
    let in_flow = before.matches(['{', '[']).count() > before.matches(['}', ']']).count();
    if in_flow {
        let end = rest.find([',', '}', ']']).unwrap_or(rest.len());
        return Some((start, start + end));
    }
    let line_end = rest.find('\n').unwrap_or(rest.len());
    if !before.trim().is_empty() && first != '|' && first != '>' {
        return Some((start, start + line_end));
    }
    // A block value: lines as deep as its first (a list's items may also sit at
    // its key's depth), or deeper than the key's line for `|` and `>`.
    let depth = if before.trim().is_empty() {
        before.len()
    } else {
        indent(before) + 1
    };
    let list = before.trim().is_empty() && rest.starts_with("- ");
    let mut end = start + line_end;
    for l in text[end..].split_inclusive('\n').skip(1) {
        let blank = l.trim().is_empty();
        let deeper = indent(l) >= depth;
        let item = list && indent(l) == depth && l.trim_start().starts_with("- ");
        if !(blank || deeper || item) {
            break;
        }
        end += l.len();
    }
    // Trailing blank lines stay.
    let body = text[start..end].trim_end();
    Some((start, start + body.len()))
}

/// Length of the balanced `{...}` or `[...]` at the start of `text`.
fn bracketed(text: &str) -> Option<usize> {
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '{' | '[') => depth += 1,
            (None, '}' | ']') => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// The value as a plain scalar (one that may go in a flow list as it is).
fn lone_item(source: &str) -> Option<&str> {
    let s = source.trim();
    let plain = !s.is_empty()
        && !s.contains(['\n', '{', '[', ':', '#', ',', '\'', '"'])
        && !s.starts_with(['-', '|', '>']);
    plain.then_some(s)
}

fn is_block_mapping(source: &str) -> bool {
    let first = source.trim_start().lines().next().unwrap_or_default();
    first.contains(": ") || first.ends_with(':')
}

/// The key whose value starts at `line`:`column`, and whether the value is an
/// item of its list.
fn key_of(text: &str, start: usize) -> Option<(String, bool)> {
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let before = &text[line_start..start];
    let trimmed = before.trim_end();
    if let Some(k) = trimmed.strip_suffix(':') {
        return Some((last_key(k)?, false));
    }
    let item = trimmed.ends_with('-') || trimmed.ends_with('[') || trimmed.ends_with(',');
    if item
        && let Some(open) = trimmed.rfind('[')
        && let Some(k) = trimmed[..open].trim_end().strip_suffix(':')
    {
        return Some((last_key(k)?, true));
    }
    // A block value or item: the nearest line above, less indented, that ends
    // with `key:`.
    let depth = if trimmed.is_empty() {
        before.len()
    } else {
        indent(before)
    };
    for l in text[..line_start].lines().rev() {
        if l.trim().is_empty() || indent(l) > depth {
            continue;
        }
        let t = l.trim_end();
        if let Some(k) = t.strip_suffix(':') {
            return Some((last_key(k)?, trimmed.ends_with('-')));
        }
        if indent(l) < depth {
            return None;
        }
    }
    None
}

/// The last key of `text` that ends just before a `:` (`- fail: { message` ->
/// `message`).
fn last_key(text: &str) -> Option<String> {
    let key: String = text
        .chars()
        .rev()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let key = key.trim_start_matches('-').to_owned();
    (!key.is_empty()).then_some(key)
}

/// A value as jq source: objects with bare keys where jq allows them, strings
/// that read as jq paths (`.body.item`, `$x`) as they are, the rest as JSON.
fn jq_literal(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let fields: Vec<String> = m
                .iter()
                .map(|(k, v)| {
                    let bare = k
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                    let key = if bare {
                        k.clone()
                    } else {
                        Value::String(k.clone()).to_string()
                    };
                    format!("{key}: {}", jq_literal(v))
                })
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(jq_literal).collect();
            format!("[{}]", items.join(", "))
        }
        Value::String(s) if s.starts_with('.') || s.starts_with('$') => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "steps:\n  - respond:\n      body: {reserved: true, item: .body.item}\n  - fail:\n      message:\n        a: 1\n        b: [x]\n      status: x\n  - fail: { status: 422, message: [x, 'y'] }\n";

    const fn expecting(what: &'static str, expr: bool, map_found: bool) -> Expected {
        let placeholder = if expr { "null" } else { "0" };
        Expected {
            what,
            placeholder,
            expr,
            map_found,
        }
    }
    const MAP: Expected = expecting("a jq expression", true, true);
    const LIST: Expected = expecting("a jq expression", true, false);
    const INTEGER: Expected = expecting("an integer", false, false);

    #[test]
    fn keys_of_values_in_flow_and_block_mappings() {
        let key = |line, column, e: &Expected| {
            key_of(FILE, value_start(FILE, offset(FILE, line, column)?, e))
        };
        assert_eq!(key(3, 13, &MAP), Some(("body".into(), false)));
        // A block mapping as the value: its first key, and the key above.
        assert_eq!(key(6, 9, &MAP), Some(("message".into(), false)));
        assert_eq!(key(8, 15, &INTEGER), Some(("status".into(), false)));
        assert_eq!(key(9, 35, &LIST), Some(("message".into(), false)));
        // An error at the key: the value after it.
        assert_eq!(key(9, 26, &LIST), Some(("message".into(), false)));
        assert_eq!(key(8, 7, &INTEGER), Some(("status".into(), false)));
    }

    #[test]
    fn values_are_replaced_in_place() {
        let (out, at) = replace_value(FILE, 3, 13, &MAP).unwrap();
        assert!(out.contains("\n      body: null"), "{out}");
        assert_eq!((out.len(), at), (FILE.len(), (3, 13)));
        let (out, at) = replace_value(FILE, 6, 9, &MAP).unwrap();
        let blanked = "      message:\n        null\n              \n";
        assert!(out.contains(blanked), "{out:?}");
        assert!(out.contains("      status: x\n"), "{out}");
        assert_eq!(at, (6, 9));
        let (out, _) = replace_value(FILE, 8, 15, &INTEGER).unwrap();
        assert!(out.contains("      status: 0\n"), "{out}");
        let (out, _) = replace_value(FILE, 9, 35, &LIST).unwrap();
        assert!(out.ends_with("message: null     }\n"), "{out}");
        // An error at the key: its value is replaced.
        let (out, at) = replace_value(FILE, 9, 26, &LIST).unwrap();
        assert!(out.ends_with("message: null     }\n"), "{out}");
        assert_eq!(at, (9, 35));
    }

    #[test]
    fn objects_and_arrays_are_suggested_in_jq() {
        let cases = [
            (
                3,
                13,
                &MAP,
                "`body` is a jq expression, not a mapping; write an object in jq, in quotes: '{reserved: true, item: .body.item}'",
            ),
            (
                6,
                9,
                &MAP,
                "`message` is a jq expression, not a mapping; write an object in jq, in quotes: '{a: 1, b: [\"x\"]}'",
            ),
            (
                9,
                26,
                &LIST,
                "`message` is a jq expression, not a list; write an array in jq, in quotes: '[\"x\", \"y\"]'",
            ),
            (8, 15, &INTEGER, "`status` expects an integer, not `x`"),
        ];
        for (line, column, expected, want) in cases {
            assert_eq!(message(FILE, line, column, expected), want);
        }
    }

    #[test]
    fn plain_text_is_suggested_as_a_jq_string() {
        use crate::flow::compile::cx::quoted_text;
        assert_eq!(
            quoted_text("Out of stock").as_deref(),
            Some("'\"Out of stock\"'")
        );
        assert_eq!(
            quoted_text("We're out!").as_deref(),
            Some("'\"We''re out!\"'")
        );
        assert_eq!(quoted_text(".body | nosuch"), None);
        assert_eq!(quoted_text("ascii_downcase("), None);
    }
}
