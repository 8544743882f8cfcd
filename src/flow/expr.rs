//! jq expressions (jaq): checked once when a flow loads, run many times.
//!
//! A flow's expressions run in two places. Those the native evaluator
//! (`fast/`) covers run in this process, on the calling thread, under fuel.
//! Everything else runs as a [`Program`] in a worker process (`engine::sandbox`),
//! which can be killed: jaq has no fuel and recurses on the Rust stack.
//!
//! Loading bounds each expression's size (tokens and bracket nesting) and
//! compiles it on a thread with a large stack: jaq's parser and compiler recurse
//! on the source's structure, and a flow file must not crash `flowgate check`.
//!
//! The `env` builtin is removed (flows must not read the server's environment) and
//! `halt` can never stop the process: results are read as values, never unwrapped,
//! so a halting filter becomes an ordinary evaluation error.

use std::fmt;
use std::sync::Arc;

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data::JustLut};
use jaq_json::Val;

use super::fast::Fuel;

type Data = JustLut<Val>;

/// Builtins a flow may not call.
const FORBIDDEN: &[&str] = &["env", "input_filename", "get_search_list"];

/// Most tokens one expression may have (jaq's parser recurses on operator chains).
pub const MAX_TOKENS: usize = 4096;
/// Most brackets (and string interpolations) open at once in one expression.
pub const MAX_NESTING: usize = 256;
/// The stack jaq's parser and compiler get: twice what the deepest source within
/// the bounds needs in a debug build (a unit test compiles those).
const COMPILE_STACK: usize = 64 << 20;

/// A checked jq expression with its source.
#[derive(Clone)]
pub struct Expr {
    source: Arc<str>,
    /// The same program, evaluated natively when it is simple enough.
    fast: Option<super::fast::Fast>,
}

#[allow(dead_code)]
fn assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Expr>();
    is::<Program>();
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Expr({:?})", self.source)
    }
}

/// A compile error at a byte offset of the expression's source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExprError {
    pub offset: usize,
    pub message: String,
}

/// A run-time error of an expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

fn offset_in(code: &str, part: &str) -> usize {
    let start = code.as_ptr() as usize;
    let p = part.as_ptr() as usize;
    if p >= start && p <= start + code.len() {
        p - start
    } else {
        0
    }
}

/// A jq program compiled by jaq, ready to run. Built where expressions run: in
/// a worker process (and in tests).
pub struct Program(jaq_core::Filter<Data>);

impl Program {
    /// Checks `source`'s size, then compiles it on a thread with a large stack;
    /// on failure returns every error, with offsets.
    pub fn compile(source: &str) -> Result<Self, Vec<ExprError>> {
        check_size(source).map_err(|e| vec![e])?;
        let compiled = std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("flowgate-jq-compile".into())
                .stack_size(COMPILE_STACK)
                .spawn_scoped(s, || compile_filter(source))
                .map(|h| h.join())
        });
        match compiled {
            Ok(Ok(result)) => result.map(Self),
            Ok(Err(_)) => Err(vec![ExprError {
                offset: 0,
                message: "the expression could not be compiled (the compiler failed)".into(),
            }]),
            Err(e) => Err(vec![ExprError {
                offset: 0,
                message: format!("the expression could not be compiled: {e}"),
            }]),
        }
    }

    /// Runs the program on `input`: up to `max` outputs, and whether there were more.
    pub fn run(&self, input: Val, max: usize) -> Result<(Vec<Val>, bool), EvalError> {
        let ctx = Ctx::<Data>::new(&self.0.lut, Vars::new([]));
        let mut outputs = Vec::new();
        for r in self.0.id.run((ctx, input)) {
            if outputs.len() == max {
                return Ok((outputs, true));
            }
            outputs.push(r.map_err(exn_message)?);
        }
        Ok((outputs, false))
    }
}

fn compile_filter(source: &str) -> Result<jaq_core::Filter<Data>, Vec<ExprError>> {
    let arena = Arena::default();
    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs());
    let loader = Loader::new(defs);
    let file = File {
        code: source,
        path: (),
    };
    let modules = loader.load(&arena, file).map_err(|errs| {
        let mut out = Vec::new();
        for (file, err) in errs {
            match err {
                jaq_core::load::Error::Io(items) => {
                    for (part, msg) in items {
                        out.push(ExprError {
                            offset: offset_in(file.code, part),
                            message: msg,
                        });
                    }
                }
                jaq_core::load::Error::Lex(items) => {
                    for (expect, part) in items {
                        out.push(ExprError {
                            offset: offset_in(file.code, part),
                            message: format!("expected {}", expect.as_str()),
                        });
                    }
                }
                jaq_core::load::Error::Parse(items) => {
                    for (expect, found) in items {
                        let (offset, found) = if found.is_empty() {
                            (file.code.len(), "end of expression".to_owned())
                        } else {
                            (offset_in(file.code, found), format!("`{found}`"))
                        };
                        out.push(ExprError {
                            offset,
                            message: format!("expected {}, found {found}", expect.as_str()),
                        });
                    }
                }
            }
        }
        out
    })?;
    let funs = jaq_core::funs::<Data>()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs())
        .filter(|(name, _, _)| !FORBIDDEN.contains(name));
    Compiler::default()
        .with_funs(funs)
        .compile(modules)
        .map_err(|errs| {
            errs.into_iter()
                .flat_map(|(file, items)| {
                    items.into_iter().map(move |(name, undefined)| ExprError {
                        offset: offset_in(file.code, name),
                        message: format!("undefined {} `{name}`", undefined.as_str()),
                    })
                })
                .collect::<Vec<_>>()
        })
}

/// Refuses sources jaq's parser would recurse too deep on: more than
/// [`MAX_TOKENS`] tokens, or brackets nested more than [`MAX_NESTING`] deep.
/// A scan without recursion; anything malformed is left for jaq to report.
fn check_size(source: &str) -> Result<(), ExprError> {
    let b = source.as_bytes();
    // Open brackets, `"` for a string and `i` for an interpolation in one.
    let mut open: Vec<u8> = Vec::new();
    let mut nesting = 0usize;
    let mut tokens = 0usize;
    let mut i = 0;
    while i < b.len() {
        let start = i;
        if open.last() == Some(&b'"') {
            match b[i] {
                b'\\' if b.get(i + 1) == Some(&b'(') => {
                    open.push(b'i');
                    nesting += 1;
                    tokens += 1;
                    i += 2;
                }
                b'\\' => i += 2,
                b'"' => {
                    open.pop();
                    i += 1;
                }
                _ => i += 1,
            }
        } else {
            let c = b[i];
            match c {
                b' ' | b'\t' | b'\n' | b'\r' => {
                    i += 1;
                    continue;
                }
                b'#' => {
                    while i < b.len() && b[i] != b'\n' {
                        i += 1;
                    }
                    continue;
                }
                b'"' => {
                    open.push(b'"');
                    i += 1;
                }
                b'(' | b'[' | b'{' => {
                    open.push(c);
                    nesting += 1;
                    i += 1;
                }
                b')' | b']' | b'}' => {
                    let opener = match c {
                        b')' => [b'(', b'i'],
                        b']' => [b'[', b'['],
                        _ => [b'{', b'{'],
                    };
                    if open.last().is_some_and(|o| opener.contains(o)) {
                        open.pop();
                        nesting -= 1;
                    }
                    i += 1;
                }
                c if c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80 => {
                    while i < b.len()
                        && (b[i].is_ascii_alphanumeric()
                            || matches!(b[i], b'_' | b'$')
                            || b[i] >= 0x80)
                    {
                        i += 1;
                    }
                }
                // Every other byte counts as a token of its own (`==` as two):
                // an overcount only makes the bound safer.
                _ => i += 1,
            }
            tokens += 1;
        }
        if nesting > MAX_NESTING {
            return Err(ExprError {
                offset: start,
                message: format!(
                    "brackets are nested more than {MAX_NESTING} deep; split the expression into steps"
                ),
            });
        }
        if tokens > MAX_TOKENS {
            return Err(ExprError {
                offset: start,
                message: format!(
                    "the expression is longer than {MAX_TOKENS} tokens; split it into steps, or put data under `set:`"
                ),
            });
        }
    }
    Ok(())
}

impl Expr {
    /// Checks `source` (size, syntax, names); on failure returns every error
    /// jaq reports, with offsets.
    pub fn compile(source: &str) -> Result<Self, Vec<ExprError>> {
        Program::compile(source)?;
        Ok(Self {
            source: source.into(),
            fast: super::fast::Fast::compile(source),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The source, shared (what a worker process is sent).
    pub fn source_arc(&self) -> &Arc<str> {
        &self.source
    }

    /// Adds the top-level input fields the program reads to `keys`; false when
    /// that is not known (the program reads its input otherwise, or runs on jaq).
    pub fn root_keys(&self, keys: &mut std::collections::BTreeSet<String>) -> bool {
        self.fast.as_ref().is_some_and(|f| f.root_keys(keys))
    }

    /// The program's first output computed natively, or `None` when the native
    /// evaluator does not cover it (or ran out of `fuel`): then it runs on jaq.
    pub fn native(&self, input: &Val, fuel: &mut Fuel) -> Option<Val> {
        self.fast.as_ref()?.eval(input, fuel)
    }

    /// Whether the native evaluator covers the program's form.
    pub fn is_native(&self) -> bool {
        self.fast.is_some()
    }
}

fn exn_message(exn: jaq_core::Exn<'_, Val>) -> EvalError {
    match exn.get_err() {
        Ok(err) => EvalError(err.to_string()),
        Err(_) => EvalError("the expression stopped abnormally".to_owned()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::flow::value::{Bound, from_json, to_json};
    use serde_json::json;

    /// What jaq gives for `source` on `input`, run in this process (the first
    /// output, or null).
    pub(crate) fn jaq(source: &str, input: &Val) -> Result<Val, EvalError> {
        let p = Program::compile(source).unwrap_or_else(|e| panic!("`{source}`: {e:?}"));
        Ok(p.run(input.clone(), 1)?.0.pop().unwrap_or(Val::Null))
    }

    fn json_of(v: &Val) -> serde_json::Value {
        to_json(v, &mut Bound::generous()).unwrap()
    }

    #[test]
    fn runs_against_a_document() {
        let input = from_json(&json!({"params": {"itemId": "A", "qty": 3}})).unwrap();
        let v = jaq("{item: .params.itemId, n: (.params.qty * 2)}", &input).unwrap();
        assert_eq!(json_of(&v), json!({"item": "A", "n": 6}));
        let p = Program::compile("range(5)").unwrap();
        let (three, more) = p.run(Val::Null, 3).unwrap();
        assert_eq!((three.len(), more), (3, true));
        let (all, more) = p.run(Val::Null, 5).unwrap();
        assert_eq!((all.len(), more), (5, false));
    }

    #[test]
    fn reports_parse_errors_with_offsets() {
        let errs = Expr::compile(".a | | .b").unwrap_err();
        assert_eq!(errs[0].offset, 5);
        let errs = Expr::compile("nosuchfn(1)").unwrap_err();
        assert_eq!(errs[0].message, "undefined filter `nosuchfn`");
        assert_eq!(errs[0].offset, 0);
    }

    #[test]
    fn env_and_halt_are_not_available() {
        assert!(Expr::compile("env").is_err());
        assert!(Expr::compile("$ENV").is_err());
        assert!(jaq("halt", &Val::Null).is_err());
    }

    #[test]
    fn runtime_errors_are_values_not_panics() {
        assert!(
            jaq("error(\"boom\")", &Val::Null)
                .unwrap_err()
                .0
                .contains("boom")
        );
        let input = from_json(&json!({"a": "x"})).unwrap();
        assert!(jaq(".a + 1", &input).is_err());
    }

    #[test]
    fn deeply_nested_or_overlong_sources_are_load_errors() {
        let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        let errs = Expr::compile(&deep).unwrap_err();
        assert!(errs[0].message.contains("nested more than 256"), "{errs:?}");
        assert_eq!(errs[0].offset, MAX_NESTING);
        let interpolated = format!("{}1{}", "\"\\(".repeat(300), ")\"".repeat(300));
        assert!(
            Expr::compile(&interpolated).unwrap_err()[0]
                .message
                .contains("nested")
        );
        let long = vec!["1"; 3000].join(" + ");
        let errs = Expr::compile(&long).unwrap_err();
        assert!(errs[0].message.contains("4096 tokens"), "{errs:?}");
        let chain = vec!["."; 3000].join("|");
        assert!(Expr::compile(&chain).is_err());
        // At the bounds, jaq's parser and compiler have stack enough.
        let at_nesting = format!("{}1{}", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
        assert!(Expr::compile(&at_nesting).is_ok());
        let at_tokens = vec!["1"; MAX_TOKENS / 2].join("+");
        assert!(Expr::compile(&at_tokens).is_ok());
        let ifs = format!("{}1{}", "if . then ".repeat(600), " else 2 end".repeat(600));
        assert!(Expr::compile(&ifs).is_ok());
        // One level of recursion per token: the deepest sources within the bound.
        for deepest in [
            format!("{}1", "-".repeat(MAX_TOKENS - 1)),
            format!("{}1", "try ".repeat(MAX_TOKENS - 1)),
            format!("{}.", ". as $x | ".repeat(MAX_TOKENS / 5)),
            format!("{}1", "label $f | ".repeat(MAX_TOKENS / 4 - 1)),
        ] {
            assert!(Expr::compile(&deepest).is_ok(), "{}", &deepest[..20]);
        }
        let comments = "# [[[[[[\n.a # ((((((\n";
        assert!(Expr::compile(comments).is_ok());
        let strings = format!("\"{}\"", "[(".repeat(2000));
        assert!(Expr::compile(&strings).is_ok());
    }
}
