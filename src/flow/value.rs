//! Conversions between serde_json values (what we store and send) and jaq values
//! (what expressions run on).

use jaq_json::{Num, Val};
use serde::Deserialize;

pub fn from_json(v: &serde_json::Value) -> Val {
    // Deserializing a serde_json::Value cannot fail for any JSON value.
    Val::deserialize(v).unwrap_or(Val::Null)
}

pub fn to_json(v: &Val) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Val::Null => J::Null,
        Val::Bool(b) => J::Bool(*b),
        Val::Num(n) => num_to_json(n),
        Val::TStr(b) | Val::BStr(b) => J::String(String::from_utf8_lossy(b).into_owned()),
        Val::Arr(a) => J::Array(a.iter().map(to_json).collect()),
        Val::Obj(o) => J::Object(o.iter().map(|(k, v)| (key_string(k), to_json(v))).collect()),
    }
}

fn key_string(k: &Val) -> String {
    match k {
        Val::TStr(b) | Val::BStr(b) => String::from_utf8_lossy(b).into_owned(),
        other => to_json(other).to_string(),
    }
}

fn num_to_json(n: &Num) -> serde_json::Value {
    match n {
        Num::Int(i) => serde_json::Value::from(*i as i64),
        Num::Float(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        other => {
            let text = other.to_string();
            if let Ok(i) = text.parse::<i64>() {
                serde_json::Value::from(i)
            } else if let Ok(u) = text.parse::<u64>() {
                serde_json::Value::from(u)
            } else {
                text.parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(serde_json::Value::Number)
                    .unwrap_or(serde_json::Value::Null)
            }
        }
    }
}

/// A string value for jaq.
pub fn string(s: &str) -> Val {
    Val::utf8_str(s.as_bytes().to_vec())
}

/// Truthiness as jq defines it: everything but `false` and `null`.
pub fn truthy(v: &Val) -> bool {
    !matches!(v, Val::Null | Val::Bool(false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips() {
        let v = json!({"a": [1, 2.5, "x", null, true], "b": {"c": -7}, "big": 12345678901234i64});
        assert_eq!(to_json(&from_json(&v)), v);
    }
}
