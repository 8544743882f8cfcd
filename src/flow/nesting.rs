//! A bound on how deep an expression's source can make jaq recurse, checked
//! before jaq sees it. jaq's parser and compiler recurse once per level of an
//! expression's tree — a bracket, a keyword (`if`, `reduce`, `try`, `as`...), a
//! string interpolation, each operator of a chain (`1 | . | . | ...`, `[a, b,
//! ...]`) — and a few hundred levels overflow a 2 MiB stack (debug builds
//! overflow at 150 nested `{a: ...}`). Counting those tokens gives an upper
//! bound on the tree's height; an expression over [`MAX_WEIGHT`] is a load
//! error. Compiling also runs on a thread with a large stack, so that what
//! passes the bound compiles whatever thread loads the flows.

use super::expr::ExprError;

/// Brackets, keywords, interpolations and operators an expression may have.
pub const MAX_WEIGHT: usize = 256;

/// The stack jaq compiles on: far more than [`MAX_WEIGHT`] levels need.
const COMPILE_STACK: usize = 64 * 1024 * 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Frame {
    Paren,
    Bracket,
    Brace,
    /// `\(` inside a string: closing it goes back into the string.
    Interpolation,
}

const KEYWORDS: &[&str] = &[
    "if", "elif", "reduce", "foreach", "try", "as", "label", "and", "or",
];

/// Where the source passes [`MAX_WEIGHT`], if it does.
fn heavy_at(source: &str) -> Option<usize> {
    let bytes = source.as_bytes();
    let mut frames: Vec<Frame> = Vec::new();
    let mut weight = 0usize;
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let count = |weight: &mut usize| {
            *weight += 1;
            *weight > MAX_WEIGHT
        };
        if in_string {
            match b {
                b'\\' if bytes.get(i + 1) == Some(&b'(') => {
                    frames.push(Frame::Interpolation);
                    in_string = false;
                    if count(&mut weight) {
                        return Some(i);
                    }
                    i += 1;
                }
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'#' => {
                // A comment, to the end of the line.
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'(' | b'[' | b'{' => {
                frames.push(match b {
                    b'(' => Frame::Paren,
                    b'[' => Frame::Bracket,
                    _ => Frame::Brace,
                });
                if count(&mut weight) {
                    return Some(i);
                }
            }
            b')' | b']' | b'}' => in_string = frames.pop() == Some(Frame::Interpolation),
            // An object's fields are a list, not a chain.
            b',' if frames.last() == Some(&Frame::Brace) => {}
            b'|' | b',' | b'+' | b'-' | b'*' | b'/' | b'%' | b'=' | b'<' | b'>' | b'!' | b'?' => {
                // A run of operator characters (`//=`, `|=`, `?//`) is one operator.
                while let Some(
                    b'|' | b'+' | b'-' | b'*' | b'/' | b'%' | b'=' | b'<' | b'>' | b'!' | b'?',
                ) = bytes.get(i + 1)
                {
                    i += 1;
                }
                if count(&mut weight) {
                    return Some(i);
                }
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' | b'$' => {
                let start = i;
                while let Some(b'a'..=b'z' | b'A'..=b'Z' | b'_' | b'0'..=b'9' | b'$' | b':') =
                    bytes.get(i + 1)
                {
                    i += 1;
                }
                let word = &source[start..=i];
                let after_dot = start > 0 && bytes[start - 1] == b'.';
                if !after_dot && KEYWORDS.contains(&word) && count(&mut weight) {
                    return Some(start);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Refuses a source that could make jaq recurse too deep.
pub fn check(source: &str) -> Result<(), ExprError> {
    match heavy_at(source) {
        None => Ok(()),
        Some(offset) => Err(ExprError {
            offset,
            message: format!(
                "the expression nests or chains too deeply (more than {MAX_WEIGHT} brackets, keywords and operators); split it into steps"
            ),
        }),
    }
}

/// Runs `compile` on a thread with a large stack (its pages are only touched
/// as far as they are used); `None` when no thread could be started.
pub fn on_large_stack<T: Send>(compile: impl FnOnce() -> T + Send) -> Option<T> {
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("flowgate-compile".into())
            .stack_size(COMPILE_STACK)
            .spawn_scoped(scope, compile)
            .ok()?;
        match handle.join() {
            Ok(v) => Some(v),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// The error when [`on_large_stack`] could not start its thread.
pub fn no_thread() -> ExprError {
    ExprError {
        offset: 0,
        message: "no thread could be started to compile this expression; try again".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_what_makes_jaq_recurse() {
        assert!(check(".a.b.c | {x: .y, z: [1, 2]} | if . then 1 else 2 end").is_ok());
        let deep =
            |n: usize, open: &str, close: &str| format!("{}1{}", open.repeat(n), close.repeat(n));
        assert!(check(&deep(MAX_WEIGHT, "(", ")")).is_ok());
        assert!(check(&deep(MAX_WEIGHT + 1, "(", ")")).is_err());
        assert!(check(&format!("1{}", " | .".repeat(MAX_WEIGHT + 1))).is_err());
        assert!(check(&format!("[{}]", vec!["1"; MAX_WEIGHT + 2].join(","))).is_err());
        assert!(check(&format!("{}1", "try ".repeat(MAX_WEIGHT + 1))).is_err());
        assert!(check(&deep(MAX_WEIGHT, "\"\\(", ")\"")).is_ok());
        assert!(check(&deep(MAX_WEIGHT + 1, "\"\\(", ")\"")).is_err());
        // Wide but flat: an object's fields, paths, brackets in strings and comments.
        let fields: Vec<String> = (0..1000).map(|i| format!("k{i}: .a{i}")).collect();
        assert!(check(&format!("{{{}}}", fields.join(", "))).is_ok());
        assert!(check(&".a".repeat(10_000)).is_ok());
        assert!(check(&format!("\"{}\"", "((((".repeat(1000))).is_ok());
        assert!(check(&format!("1 # {}", "((((".repeat(1000))).is_ok());
        assert!(check(".if.reduce.as").is_ok());
        let err = check(&deep(300, "[", "]")).unwrap_err();
        assert_eq!(err.offset, MAX_WEIGHT);
    }

    #[test]
    fn what_passes_the_bound_compiles_on_a_small_thread() {
        for source in [
            format!("{}1{}", "{a:".repeat(MAX_WEIGHT), "}".repeat(MAX_WEIGHT)),
            format!(
                "{}1{}",
                "reduce . as $x (".repeat(MAX_WEIGHT / 3),
                "; .)".repeat(MAX_WEIGHT / 3)
            ),
            format!("1{}", " | .".repeat(MAX_WEIGHT)),
        ] {
            assert!(check(&source).is_ok());
            let compiled = std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    on_large_stack(|| crate::flow::Expr::compile(&source).is_ok()) == Some(true)
                })
                .unwrap()
                .join()
                .unwrap();
            assert!(compiled);
        }
    }
}
