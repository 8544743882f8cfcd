//! YAML text -> raw structs: errors rendered with their position, and parsing
//! that goes on past an unknown key so one stray key hides nothing else.

use super::cx::FileCx;
use super::recover;

/// Renders a YAML error without its position (the position goes in front).
pub fn yaml_error(cx: &mut FileCx<'_>, err: &serde_saphyr::Error) {
    let err = err.without_snippet();
    let (line, column) = err.location().map_or((1, 1), |l| (l.line(), l.column()));
    let options = serde_saphyr::render_options! { snippets: serde_saphyr::SnippetMode::Off };
    let text = err.render_with_options(options);
    let suffix = format!(" at line {line}, column {column}");
    let text = text.strip_suffix(&suffix).unwrap_or(&text).to_owned();
    cx.error_at(line, column, text);
}

/// Parses a file into its raw struct. An unknown key is reported and its entry
/// blanked out of a copy of the text, and parsing goes on, so that one stray key
/// does not hide the file's other problems. A value of the wrong type is
/// reported with its key and replaced by a placeholder of the right type (whose
/// own problems are not reported). Any other error of shape stops here.
pub fn parse_recovering<T: serde::de::DeserializeOwned>(
    cx: &mut FileCx<'_>,
    source: &str,
) -> Option<T> {
    let mut text = source.to_owned();
    for _ in 0..50 {
        match serde_saphyr::from_str_with_options::<T>(&text, yaml_options()) {
            Ok(v) => return Some(v),
            Err(e) => {
                if let Some(expected) = recover::expected(&e)
                    && let Some(at) = e.without_snippet().location()
                    && !cx.replaced.contains(&(at.line(), at.column()))
                {
                    let (line, column) = (at.line() as usize, at.column() as usize);
                    let message = recover::message(&text, line, column, &expected);
                    let replaced = recover::replace_value(&text, line, column, &expected);
                    cx.error(at, message);
                    cx.replaced.push((at.line(), at.column()));
                    match replaced {
                        Some((t, value_at)) => {
                            cx.replaced.push(value_at);
                            text = t;
                            continue;
                        }
                        None => return None,
                    }
                }
                yaml_error(cx, &e);
                let unknown = cx
                    .diagnostics
                    .last()
                    .is_some_and(|d| d.message.starts_with("unknown field"));
                let blanked = e
                    .without_snippet()
                    .location()
                    .filter(|_| unknown)
                    .and_then(|l| blank_entry(&text, l.line() as usize, l.column() as usize));
                match blanked {
                    Some(t) => text = t,
                    None => return None,
                }
            }
        }
    }
    None
}

/// `text` with the mapping entry whose key starts at `line`:`column` replaced by
/// spaces (positions elsewhere stay where they were).
fn blank_entry(text: &str, line: usize, column: usize) -> Option<String> {
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    let idx = line.checked_sub(1)?;
    let start = column.checked_sub(1)?;
    let current = lines.get(idx)?.clone();
    if start > current.len() || !current.is_char_boundary(start) {
        return None;
    }
    let blank = |s: &str| " ".repeat(s.len());
    if current[..start].contains('{') {
        // In a flow mapping: up to the next `,` or `}` at this depth.
        let rest = &current[start..];
        let mut depth = 0i32;
        let mut end = rest.len();
        for (i, c) in rest.char_indices() {
            match c {
                '{' | '[' => depth += 1,
                '}' | ']' if depth == 0 => {
                    end = i;
                    break;
                }
                '}' | ']' => depth -= 1,
                ',' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        lines[idx] = format!(
            "{}{}{}",
            &current[..start],
            blank(&rest[..end]),
            &rest[end..]
        );
        return Some(lines.join("\n"));
    }
    lines[idx] = format!("{}{}", &current[..start], blank(&current[start..]));
    // The entry's value continues on lines indented deeper than the key.
    for l in lines.iter_mut().skip(idx + 1) {
        let indent = l.len() - l.trim_start().len();
        if !l.trim().is_empty() && indent <= start {
            break;
        }
        *l = blank(l);
    }
    Some(lines.join("\n"))
}

pub fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! { strict_booleans: true }
}
