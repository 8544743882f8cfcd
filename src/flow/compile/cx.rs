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
    /// Positions of values of the wrong type, replaced by placeholders to read
    /// on: problems found there are the placeholder's and are not reported.
    pub replaced: Vec<(u64, u64)>,
}

impl<'a> FileCx<'a> {
    pub fn new(file: &'a Path, source: &'a str) -> Self {
        Self {
            file,
            lines: source.lines().collect(),
            diagnostics: Vec::new(),
            once_steps: std::collections::HashSet::new(),
            replaced: Vec::new(),
        }
    }

    pub fn error_at(&mut self, line: u64, column: u64, message: impl Into<String>) {
        if self.replaced.contains(&(line, column)) {
            return;
        }
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

    /// Each error at its place in the file, after `lead` (what the value is).
    fn expr_errors(&mut self, loc: Location, text: &str, lead: &str, errs: Vec<ExprError>) {
        for e in errs {
            let (line, column) = self.position_in_scalar(loc, text, e.offset);
            self.error_at(line, column, format!("{lead}: {}", e.message));
        }
    }

    /// Compiles a jq expression; a failure becomes a diagnostic at its position
    /// that names the key, says the value is jq and, for what reads like plain
    /// text, shows it quoted as a jq string.
    pub fn expr(&mut self, s: &Spanned<ExprText>, what: &str) -> Option<Expr> {
        match Expr::compile(&s.value.0) {
            Ok(e) => Some(e),
            Err(mut errs) => {
                if let (Some(quoted), Some(last)) = (quoted_text(&s.value.0), errs.last_mut()) {
                    last.message = format!(
                        "{}; to give the text itself, write it as a jq string: {quoted}",
                        last.message
                    );
                }
                let lead = format!("`{what}` is a jq expression");
                self.expr_errors(s.referenced, &s.value.0, &lead, errs);
                None
            }
        }
    }

    pub fn template(&mut self, s: &Spanned<String>, what: &str) -> Option<Template> {
        match Template::compile(&s.value) {
            Ok(t) => Some(t),
            Err(errs) => {
                let lead = format!("`{what}`: the part in {{{{ }}}} is a jq expression");
                self.expr_errors(s.referenced, &s.value, &lead, errs);
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

/// `text` as a quoted jq string in a YAML single-quoted scalar, when it reads
/// like words rather than jq: `Out of stock` -> `'"Out of stock"'`.
pub fn quoted_text(text: &str) -> Option<String> {
    let t = text.trim();
    let words = t.chars().next().is_some_and(char::is_alphabetic)
        && t.chars()
            .all(|c| c.is_alphanumeric() || c == ' ' || ",.!?':;-".contains(c) || !c.is_ascii())
        && t.len() <= 200;
    words.then(|| format!("'\"{}\"'", t.replace('\'', "''")))
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
