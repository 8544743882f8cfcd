//! Declared query parameters: turning the raw query string into typed values,
//! with defaults, enums and bounds. Errors name the parameter and say why.

use serde_json::{Map, Value};

use super::model::{Param, ParamType};

/// A parameter the caller got wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParamError {
    pub param: String,
    pub message: String,
}

/// Why a value does not fit a parameter (said after the parameter's name).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    #[error("is not of type {0}")]
    Type(&'static str),
    #[error("must be at least {}", fmt_num(*.0))]
    Below(f64),
    #[error("must be at most {}", fmt_num(*.0))]
    Above(f64),
    #[error("must be one of {}", .0.join(", "))]
    NotAllowed(Vec<String>),
    #[error("`{0}` is not an integer")]
    NotInteger(String),
    #[error("`{0}` is not a number")]
    NotNumber(String),
    #[error("`{0}` is not a boolean (true or false)")]
    NotBoolean(String),
}

/// Why a default from a file does not fit its parameter.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DefaultError {
    /// The default is text that does not read as the parameter's type.
    #[error("{0}")]
    Unreadable(ValueError),
    /// The default (as written) is of another type, or out of bounds.
    #[error("{value} {why}")]
    Unfit { value: Value, why: ValueError },
}

/// Checks a typed value against the type, enum and bounds of `param`.
pub fn check_value(param: &Param, v: &Value) -> Result<(), ValueError> {
    let type_ok = match param.ty {
        ParamType::String => v.is_string(),
        ParamType::Integer => v.is_i64() || v.is_u64(),
        ParamType::Number => v.is_number(),
        ParamType::Boolean => v.is_boolean(),
    };
    if !type_ok {
        return Err(ValueError::Type(param.ty.as_str()));
    }
    if let Some(n) = v.as_f64() {
        if let Some(min) = param.min
            && n < min
        {
            return Err(ValueError::Below(min));
        }
        if let Some(max) = param.max
            && n > max
        {
            return Err(ValueError::Above(max));
        }
    }
    Ok(())
}

fn fmt_num(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

fn check_enum(param: &Param, v: &Value) -> Result<(), ValueError> {
    let Some(allowed) = &param.allowed else {
        return Ok(());
    };
    let matches = |a: &Value| match (a.as_f64(), v.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == v,
    };
    if allowed.iter().any(matches) {
        return Ok(());
    }
    let list: Vec<String> = allowed
        .iter()
        .map(|a| match a {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    Err(ValueError::NotAllowed(list))
}

/// A default from the file, converted to the parameter's type (YAML may give `1`
/// for a string parameter or `"1"` for an integer one) and checked.
pub fn coerce_default(param: &Param, v: &Value) -> Result<Value, DefaultError> {
    let unfit = |why| DefaultError::Unfit {
        value: v.clone(),
        why,
    };
    let typed = match (param.ty, v) {
        (_, Value::String(s)) => parse_typed(param.ty, s).map_err(DefaultError::Unreadable)?,
        (ParamType::String, Value::Number(n)) => Value::String(n.to_string()),
        (ParamType::String, Value::Bool(b)) => Value::String(b.to_string()),
        (ParamType::Number, Value::Number(_)) | (ParamType::Boolean, Value::Bool(_)) => v.clone(),
        (ParamType::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => v.clone(),
        _ => return Err(unfit(ValueError::Type(param.ty.as_str()))),
    };
    check_value(param, &typed).map_err(unfit)?;
    check_enum(param, &typed).map_err(unfit)?;
    Ok(typed)
}

fn parse_typed(ty: ParamType, raw: &str) -> Result<Value, ValueError> {
    match ty {
        ParamType::String => Ok(Value::String(raw.to_owned())),
        ParamType::Integer => raw
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| ValueError::NotInteger(raw.to_owned())),
        ParamType::Number => raw
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| ValueError::NotNumber(raw.to_owned())),
        ParamType::Boolean => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(Value::Bool(true)),
            "false" | "0" | "no" => Ok(Value::Bool(false)),
            _ => Err(ValueError::NotBoolean(raw.to_owned())),
        },
    }
}

/// The raw query as an object: a key given once maps to a string, a key given
/// several times to an array of strings.
pub fn query_object(pairs: &[(String, String)]) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in pairs {
        match out.get_mut(k) {
            None => {
                out.insert(k.clone(), Value::String(v.clone()));
            }
            Some(Value::Array(a)) => a.push(Value::String(v.clone())),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, Value::String(v.clone())]);
            }
        }
    }
    out
}

/// Typed `.params` from the raw query pairs; every problem is reported.
pub fn parse_params(
    declared: &[Param],
    pairs: &[(String, String)],
) -> Result<Map<String, Value>, Vec<ParamError>> {
    let mut out = Map::new();
    let mut errors = Vec::new();
    for p in declared {
        let mut given = pairs.iter().filter(|(k, _)| k == &p.name).map(|(_, v)| v);
        let (first, second) = (given.next(), given.next());
        let err = |message: String| ParamError {
            param: p.name.clone(),
            message: format!("parameter `{}` {message}", p.name),
        };
        let value = match (first, second) {
            (Some(_), Some(_)) => {
                errors.push(err("is given more than once".to_owned()));
                continue;
            }
            (None, _) if p.required => {
                errors.push(err("is required".to_owned()));
                continue;
            }
            (None, _) => p.default.clone().unwrap_or(Value::Null),
            (Some(raw), None) => {
                let typed = match parse_typed(p.ty, raw) {
                    Ok(v) => v,
                    Err(why) => {
                        errors.push(err(format!("is invalid: {why}")));
                        continue;
                    }
                };
                if let Err(why) = check_value(p, &typed).and_then(|_| check_enum(p, &typed)) {
                    errors.push(err(format!("{why} (got `{raw}`)")));
                    continue;
                }
                typed
            }
        };
        out.insert(p.name.clone(), value);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn param(name: &str, ty: ParamType) -> Param {
        Param {
            name: name.into(),
            ty,
            required: false,
            default: None,
            allowed: None,
            min: None,
            max: None,
            description: None,
        }
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn types_defaults_and_bounds() {
        let mut qty = param("qty", ParamType::Integer);
        qty.default = Some(json!(1));
        qty.min = Some(1.0);
        let mut cur = param("currency", ParamType::String);
        cur.allowed = Some(vec![json!("EUR"), json!("SEK")]);
        cur.default = Some(json!("EUR"));
        let mut id = param("itemId", ParamType::String);
        id.required = true;
        let declared = vec![id, cur, qty];

        let ok = parse_params(&declared, &pairs(&[("itemId", "A"), ("qty", "3")])).unwrap();
        assert_eq!(
            Value::Object(ok),
            json!({"itemId": "A", "currency": "EUR", "qty": 3})
        );

        let errs =
            parse_params(&declared, &pairs(&[("qty", "0"), ("currency", "GBP")])).unwrap_err();
        let msgs: Vec<_> = errs.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            msgs,
            [
                "parameter `itemId` is required",
                "parameter `currency` must be one of EUR, SEK (got `GBP`)",
                "parameter `qty` must be at least 1 (got `0`)",
            ]
        );
        let errs = parse_params(&declared, &pairs(&[("itemId", "A"), ("qty", "x")])).unwrap_err();
        assert_eq!(
            errs[0].message,
            "parameter `qty` is invalid: `x` is not an integer"
        );
    }

    #[test]
    fn raw_query_keeps_repeats() {
        let q = query_object(&pairs(&[("a", "1"), ("a", "2"), ("b", "x")]));
        assert_eq!(Value::Object(q), json!({"a": ["1", "2"], "b": "x"}));
    }
}
