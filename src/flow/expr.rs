//! jq expressions (jaq): compiled once when a flow loads, run many times.
//!
//! The `env` builtin is removed (flows must not read the server's environment) and
//! `halt` can never stop the process: results are read as values, never unwrapped,
//! so a halting filter becomes an ordinary evaluation error.

use std::fmt;
use std::sync::Arc;

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data::JustLut};
use jaq_json::Val;

type Data = JustLut<Val>;

/// Builtins a flow may not call.
const FORBIDDEN: &[&str] = &["env", "input_filename", "get_search_list"];

/// A compiled jq program with its source.
#[derive(Clone)]
pub struct Expr {
    source: String,
    filter: Arc<jaq_core::Filter<Data>>,
    /// The same program, evaluated natively when it is simple enough.
    fast: Option<super::fast::Fast>,
}

#[allow(dead_code)]
fn assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Expr>();
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Expr({:?})", self.source)
    }
}

/// A compile error at a byte offset of the expression's source.
#[derive(Debug, Clone, PartialEq, Eq)]
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

impl Expr {
    /// Compiles `source`; on failure returns every error jaq reports, with offsets.
    pub fn compile(source: &str) -> Result<Self, Vec<ExprError>> {
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
        let filter = Compiler::default()
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
            })?;
        Ok(Self {
            source: source.to_owned(),
            filter: Arc::new(filter),
            fast: super::fast::Fast::compile(source),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Adds the top-level input fields the program reads to `keys`; false when
    /// that is not known (the program reads its input otherwise, or runs on jaq).
    pub fn root_keys(&self, keys: &mut std::collections::BTreeSet<String>) -> bool {
        self.fast.as_ref().is_some_and(|f| f.root_keys(keys))
    }

    /// The first output of the program, or `null` when it produces none.
    pub fn eval(&self, input: &Val) -> Result<Val, EvalError> {
        if let Some(v) = self.fast.as_ref().and_then(|f| f.eval(input)) {
            return Ok(v);
        }
        let ctx = Ctx::<Data>::new(&self.filter.lut, Vars::new([]));
        match self.filter.id.run((ctx, input.clone())).next() {
            None => Ok(Val::Null),
            Some(Ok(v)) => Ok(v),
            Some(Err(exn)) => Err(exn_message(exn)),
        }
    }

    /// Every output of the program.
    pub fn eval_all(&self, input: &Val) -> Result<Vec<Val>, EvalError> {
        if let Some(v) = self.fast.as_ref().and_then(|f| f.eval(input)) {
            return Ok(vec![v]);
        }
        let ctx = Ctx::<Data>::new(&self.filter.lut, Vars::new([]));
        self.filter
            .id
            .run((ctx, input.clone()))
            .map(|r| r.map_err(exn_message))
            .collect()
    }
}

fn exn_message(exn: jaq_core::Exn<'_, Val>) -> EvalError {
    match exn.get_err() {
        Ok(err) => EvalError(err.to_string()),
        Err(_) => EvalError("the expression stopped abnormally".to_owned()),
    }
}

/// A string with `{{ jq }}` parts, e.g. a header value or a URL.
#[derive(Debug, Clone)]
pub struct Template {
    parts: Vec<TemplatePart>,
}

#[derive(Debug, Clone)]
enum TemplatePart {
    Text(String),
    Expr(Expr),
}

impl Template {
    /// Compiles every `{{ ... }}` part; errors carry offsets into `source`.
    pub fn compile(source: &str) -> Result<Self, Vec<ExprError>> {
        let mut parts = Vec::new();
        let mut errors = Vec::new();
        let mut rest = source;
        let mut base = 0;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(TemplatePart::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                errors.push(ExprError {
                    offset: base + open,
                    message: "`{{` without a closing `}}`".to_owned(),
                });
                return Err(errors);
            };
            let code = &after[..close];
            match Expr::compile(code.trim()) {
                Ok(e) => parts.push(TemplatePart::Expr(e)),
                Err(errs) => {
                    let lead = code.len() - code.trim_start().len();
                    errors.extend(errs.into_iter().map(|e| ExprError {
                        offset: base + open + 2 + lead + e.offset,
                        message: e.message,
                    }))
                }
            }
            let consumed = open + 2 + close + 2;
            base += consumed;
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            parts.push(TemplatePart::Text(rest.to_owned()));
        }
        if errors.is_empty() {
            Ok(Self { parts })
        } else {
            Err(errors)
        }
    }

    /// As `Expr::root_keys`, for every expression of the template.
    pub fn root_keys(&self, keys: &mut std::collections::BTreeSet<String>) -> bool {
        self.parts.iter().all(|p| match p {
            TemplatePart::Text(_) => true,
            TemplatePart::Expr(e) => e.root_keys(keys),
        })
    }

    /// Strings are inserted as they are, other values as JSON.
    pub fn render(&self, input: &Val) -> Result<String, EvalError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                TemplatePart::Text(t) => out.push_str(t),
                TemplatePart::Expr(e) => match e.eval(input)? {
                    Val::TStr(b) | Val::BStr(b) => out.push_str(&String::from_utf8_lossy(&b)),
                    other => out.push_str(&crate::flow::value::to_json(&other).to_string()),
                },
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::value::{from_json, to_json};
    use serde_json::json;

    #[test]
    fn runs_against_a_document() {
        let e = Expr::compile("{item: .params.itemId, n: (.params.qty * 2)}").unwrap();
        let input = from_json(&json!({"params": {"itemId": "A", "qty": 3}}));
        assert_eq!(
            to_json(&e.eval(&input).unwrap()),
            json!({"item": "A", "n": 6})
        );
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
        let halt = Expr::compile("halt").unwrap();
        assert!(halt.eval(&Val::Null).is_err());
    }

    #[test]
    fn runtime_errors_are_values_not_panics() {
        let e = Expr::compile("error(\"boom\")").unwrap();
        assert!(e.eval(&Val::Null).unwrap_err().0.contains("boom"));
        let e = Expr::compile(".a + 1").unwrap();
        assert!(e.eval(&from_json(&json!({"a": "x"}))).is_err());
    }

    #[test]
    fn templates_interpolate() {
        let t = Template::compile("/items/{{ .id }}?n={{ .n }}").unwrap();
        let input = from_json(&json!({"id": "A-1", "n": 2}));
        assert_eq!(t.render(&input).unwrap(), "/items/A-1?n=2");
        let errs = Template::compile("x {{ .a | }} y").unwrap_err();
        assert!(errs[0].offset > 4);
    }
}
