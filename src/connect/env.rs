//! `${VAR}` in connection and secret fields: the server's environment, read when the
//! flow files load. `${VAR:-default}` gives a default; a variable that is missing
//! (and has no default) is a load error naming it. Nothing a caller sends is ever
//! expanded: only these fields of the files go through here.

use std::sync::Arc;

/// Reads one variable of the environment (a map in tests).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The process environment.
pub fn process_env() -> EnvLookup {
    Arc::new(|name| std::env::var(name).ok())
}

/// An environment made of fixed pairs (tests, `flowgate check` fixtures).
pub fn fixed_env(pairs: &[(&str, &str)]) -> EnvLookup {
    let map: std::collections::HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Arc::new(move |name| map.get(name).cloned())
}

/// A field after expansion, with the values that came from the environment (they
/// are treated as secrets: redacted wherever flowgate writes text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded {
    pub value: String,
    pub from_env: Vec<String>,
}

/// Why a field could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error("environment variable `{0}` is not set (use `${{{0}:-default}}` for a default)")]
    Missing(String),
    #[error("`${{{0}}}`: a variable name is letters, digits and `_`, not starting with a digit")]
    BadName(String),
    #[error("`${{` without a closing `}}`")]
    Unclosed,
}

/// Replaces every `${NAME}` / `${NAME:-default}` of `text`.
pub fn expand(text: &str, env: &EnvLookup) -> Result<Expanded, ExpandError> {
    let mut value = String::with_capacity(text.len());
    let mut from_env = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        value.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or(ExpandError::Unclosed)?;
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(ExpandError::BadName(inner.to_owned()));
        }
        match env(name) {
            Some(v) => {
                value.push_str(&v);
                from_env.push(v);
            }
            None => match default {
                Some(d) => value.push_str(d),
                None => return Err(ExpandError::Missing(name.to_owned())),
            },
        }
        rest = &after[end + 1..];
    }
    value.push_str(rest);
    Ok(Expanded { value, from_env })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_variables_and_defaults_and_names_missing_ones() {
        let env = fixed_env(&[("TOKEN", "s3cr3t"), ("HOST", "db")]);
        let e = expand("Bearer ${TOKEN}", &env).unwrap();
        assert_eq!(e.value, "Bearer s3cr3t");
        assert_eq!(e.from_env, vec!["s3cr3t".to_owned()]);
        let e = expand("postgres://${HOST}:${PORT:-5432}/x", &env).unwrap();
        assert_eq!(e.value, "postgres://db:5432/x");
        assert_eq!(
            expand("${NOPE}", &env).unwrap_err(),
            ExpandError::Missing("NOPE".into())
        );
        assert!(
            expand("${NOPE}", &env)
                .unwrap_err()
                .to_string()
                .contains("`NOPE` is not set")
        );
        assert_eq!(expand("${A", &env).unwrap_err(), ExpandError::Unclosed);
        assert!(matches!(
            expand("${1X}", &env),
            Err(ExpandError::BadName(_))
        ));
        assert_eq!(expand("plain $5", &env).unwrap().value, "plain $5");
    }
}
