//! The context of compiling one file: it collects every diagnostic with its
//! position (mapping positions inside expressions back to the file) and holds
//! the small checks that files of every kind share.

use std::path::Path;
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use crate::connect::{EnvLookup, Secrets, expand};
use crate::flow::diagnostic::Diagnostic;
use crate::flow::expr::{Expr, ExprError};
use crate::flow::raw::ExprText;
use crate::flow::template::Template;

/// Collects the diagnostics of one file and maps positions inside expressions
/// back to the file.
pub struct FileCx<'a> {
    pub file: &'a Path,
    lines: Vec<&'a str>,
    pub diagnostics: Vec<Diagnostic>,
    /// Names of the file's `once: true` steps: each records its effect under its
    /// name, so two may not share one.
    pub once_steps: std::collections::HashSet<String>,
}

impl<'a> FileCx<'a> {
    pub fn new(file: &'a Path, source: &'a str) -> Self {
        Self {
            file,
            lines: source.lines().collect(),
            diagnostics: Vec::new(),
            once_steps: std::collections::HashSet::new(),
        }
    }

    pub fn error_at(&mut self, line: u64, column: u64, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic {
            file: self.file.to_path_buf(),
            line: line.max(1),
            column: column.max(1),
            message: message.into(),
        });
    }

    pub fn error(&mut self, loc: Location, message: impl Into<String>) {
        self.error_at(loc.line(), loc.column(), message)
    }

    /// Where byte `offset` of a scalar that starts at `loc` lies in the file.
    fn position_in_scalar(&self, loc: Location, text: &str, offset: usize) -> (u64, u64) {
        let line_idx = loc.line().saturating_sub(1) as usize;
        let col_idx = loc.column().saturating_sub(1) as usize;
        let first = self
            .lines
            .get(line_idx)
            .and_then(|l| l.get(col_idx..))
            .and_then(|l| l.chars().next());
        let before = &text[..offset.min(text.len())];
        let newlines = before.matches('\n').count() as u64;
        let col_in_line = before.rsplit('\n').next().map_or(0, str::len) as u64;
        match first {
            Some('|') | Some('>') => {
                let line = loc.line() + 1 + newlines;
                let indent =
                    self.lines
                        .get(line as usize - 1)
                        .map_or(0, |l| l.len() - l.trim_start().len()) as u64;
                (line, indent + col_in_line + 1)
            }
            Some('\'') | Some('"') if newlines == 0 => (loc.line(), loc.column() + 1 + col_in_line),
            _ if newlines == 0 => (loc.line(), loc.column() + col_in_line),
            // Later lines of a block or multi-line scalar: the text lost the
            // line's indentation, the file did not.
            _ => {
                let line = loc.line() + newlines;
                let indent =
                    self.lines
                        .get(line as usize - 1)
                        .map_or(0, |l| l.len() - l.trim_start().len()) as u64;
                (line, indent + col_in_line + 1)
            }
        }
    }

    fn expr_errors(&mut self, loc: Location, text: &str, what: &str, errs: Vec<ExprError>) {
        for e in errs {
            let (line, column) = self.position_in_scalar(loc, text, e.offset);
            self.error_at(line, column, format!("{what}: {}", e.message));
        }
    }

    /// Compiles a jq expression; a failure becomes a diagnostic at its position.
    pub fn expr(&mut self, s: &Spanned<ExprText>, what: &str) -> Option<Expr> {
        match Expr::compile(&s.value.0) {
            Ok(e) => Some(e),
            Err(errs) => {
                self.expr_errors(s.referenced, &s.value.0, what, errs);
                None
            }
        }
    }

    pub fn template(&mut self, s: &Spanned<String>, what: &str) -> Option<Template> {
        match Template::compile(&s.value) {
            Ok(t) => Some(t),
            Err(errs) => {
                self.expr_errors(s.referenced, &s.value, what, errs);
                None
            }
        }
    }

    pub fn duration(&mut self, s: &Spanned<String>, what: &str) -> Option<Duration> {
        match humantime::parse_duration(s.value.trim()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(
                    s.referenced,
                    format!(
                        "{what}: `{}` is not a duration like 500ms, 5s, 2m or 1h ({e})",
                        s.value
                    ),
                );
                None
            }
        }
    }

    /// `${VAR}` expansion of a field; the values read are added to `secrets`.
    pub fn expand(
        &mut self,
        s: &Spanned<String>,
        what: &str,
        env: &EnvLookup,
        secrets: &mut Secrets,
    ) -> Option<String> {
        match expand(&s.value, env) {
            Ok(e) => {
                for v in &e.from_env {
                    secrets.add(v);
                }
                Some(e.value)
            }
            Err(e) => {
                self.error(s.referenced, format!("{what}: {e}"));
                None
            }
        }
    }

    pub fn positive_duration(&mut self, s: &Spanned<String>, what: &str) -> Option<Duration> {
        match self.duration(s, what) {
            Some(d) if d.is_zero() => {
                self.error(s.referenced, format!("`{what}` must be greater than zero"));
                None
            }
            d => d,
        }
    }
}

pub(super) fn is_header_name(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A variable name: letters, digits and `_`, not starting with a digit.
pub(super) fn is_variable_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub(super) fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}
