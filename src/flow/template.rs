//! Strings with `{{ jq }}` parts: header values, URLs, messages. Each part is
//! an [`Expr`]; errors point into the whole string.

use super::expr::{Expr, ExprError};

/// A string with `{{ jq }}` parts, e.g. a header value or a URL.
#[derive(Debug, Clone)]
pub struct Template {
    parts: Vec<TemplatePart>,
}

/// Literal text, or an expression whose value is inserted (strings as they are,
/// other values as JSON).
#[derive(Debug, Clone)]
pub enum TemplatePart {
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

    /// The template's parts, in order.
    pub fn parts(&self) -> &[TemplatePart] {
        &self.parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_compile_their_parts() {
        let t = Template::compile("/items/{{ .id }}?n={{ .n }}").unwrap();
        assert_eq!(t.parts().len(), 4);
        let errs = Template::compile("x {{ .a | }} y").unwrap_err();
        assert!(errs[0].offset > 4);
    }
}
