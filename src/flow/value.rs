//! Conversions between serde_json values (what we store and send) and jaq values
//! (what expressions run on).
//!
//! Both directions recurse, so both are bounded: a value nested deeper than
//! [`MAX_DEPTH`] is an error, never a stack overflow. Going out to JSON is also
//! bounded in size and time ([`Bound`]): jq values share their parts, so a small
//! value in memory (`[.,.] | [.,.] | ...`) can stand for gigabytes of JSON.

use std::time::Instant;

use jaq_json::{Num, Val};

/// How deep values an execution holds may nest (arrays and objects in one another).
pub const MAX_DEPTH: usize = 256;

/// What one JSON value takes in memory, counted against a [`Bound`] (text adds
/// its length, an object entry its key and this again).
pub const VALUE_BYTES: u64 = 32;

/// Why a value could not be converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TooBig {
    /// Nested deeper than [`MAX_DEPTH`].
    Depth,
    /// Larger, written out, than the bound's bytes.
    Size,
    /// The bound's deadline passed while converting.
    Time,
}

impl std::fmt::Display for TooBig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Depth => "the value is nested deeper than 256 levels",
            Self::Size => "the value is too large",
            Self::Time => "the time ran out while converting the value",
        })
    }
}

/// Limits of one conversion out to JSON: bytes (of the JSON values built, at
/// least [`VALUE_BYTES`] a value) and a deadline, checked every few thousand
/// values.
#[derive(Debug, Clone)]
pub struct Bound {
    bytes_left: u64,
    deadline: Option<Instant>,
    ticks: u32,
}

impl Bound {
    pub fn new(max_bytes: u64, deadline: Option<Instant>) -> Self {
        Self {
            bytes_left: max_bytes,
            deadline,
            ticks: 0,
        }
    }

    /// Bytes and time enough for anything real; depth is still bounded.
    pub fn generous() -> Self {
        Self::new(1 << 30, None)
    }

    /// Takes `bytes` from what is left; checks the deadline now and then.
    pub fn spend(&mut self, bytes: u64) -> Result<(), TooBig> {
        self.bytes_left = self.bytes_left.checked_sub(bytes).ok_or(TooBig::Size)?;
        self.ticks += 1;
        if self.ticks >= 4096 {
            self.ticks = 0;
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(TooBig::Time);
            }
        }
        Ok(())
    }
}

/// A jaq value of a JSON value.
pub fn from_json(v: &serde_json::Value) -> Result<Val, TooBig> {
    from_json_sized(v).map(|(v, _)| v)
}

/// A jaq value of a JSON value, and its size written out (approximately).
pub fn from_json_sized(v: &serde_json::Value) -> Result<(Val, u64), TooBig> {
    let mut size = 0;
    let v = from_json_at(v, 0, &mut size)?;
    Ok((v, size))
}

fn from_json_at(v: &serde_json::Value, depth: usize, size: &mut u64) -> Result<Val, TooBig> {
    use serde_json::Value as J;
    *size += 8;
    Ok(match v {
        J::Null => Val::Null,
        J::Bool(b) => Val::Bool(*b),
        J::Number(n) => num_from_json(n),
        J::String(s) => {
            *size += s.len() as u64;
            string(s)
        }
        J::Array(items) => {
            if depth >= MAX_DEPTH {
                return Err(TooBig::Depth);
            }
            items
                .iter()
                .map(|i| from_json_at(i, depth + 1, size))
                .collect::<Result<Vec<Val>, TooBig>>()?
                .into_iter()
                .collect()
        }
        J::Object(fields) => {
            if depth >= MAX_DEPTH {
                return Err(TooBig::Depth);
            }
            let mut map = jaq_json::Map::default();
            for (k, v) in fields {
                *size += k.len() as u64;
                map.insert(string(k), from_json_at(v, depth + 1, size)?);
            }
            Val::obj(map)
        }
    })
}

/// As jaq's own serde support reads a number: integers as integers (big ones
/// too), everything else as a float.
fn num_from_json(n: &serde_json::Number) -> Val {
    if let Some(i) = n.as_i64() {
        Val::Num(Num::from_integral(i))
    } else if let Some(u) = n.as_u64() {
        Val::Num(Num::from_integral(u))
    } else {
        n.as_f64().map_or(Val::Null, |f| Val::Num(Num::Float(f)))
    }
}

/// The JSON value of a jaq value, within `bound`.
pub fn to_json(v: &Val, bound: &mut Bound) -> Result<serde_json::Value, TooBig> {
    to_json_at(v, bound, 0)
}

fn to_json_at(v: &Val, bound: &mut Bound, depth: usize) -> Result<serde_json::Value, TooBig> {
    use serde_json::Value as J;
    Ok(match v {
        Val::Null => {
            bound.spend(VALUE_BYTES)?;
            J::Null
        }
        Val::Bool(b) => {
            bound.spend(VALUE_BYTES)?;
            J::Bool(*b)
        }
        Val::Num(n) => {
            bound.spend(VALUE_BYTES)?;
            num_to_json(n)
        }
        Val::TStr(b) | Val::BStr(b) => {
            bound.spend(VALUE_BYTES + b.len() as u64)?;
            J::String(String::from_utf8_lossy(b).into_owned())
        }
        Val::Arr(a) => {
            if depth >= MAX_DEPTH {
                return Err(TooBig::Depth);
            }
            bound.spend(VALUE_BYTES)?;
            J::Array(
                a.iter()
                    .map(|i| to_json_at(i, bound, depth + 1))
                    .collect::<Result<_, _>>()?,
            )
        }
        Val::Obj(o) => {
            if depth >= MAX_DEPTH {
                return Err(TooBig::Depth);
            }
            bound.spend(VALUE_BYTES)?;
            let mut out = serde_json::Map::with_capacity(o.len());
            for (k, v) in o.iter() {
                let key = match k {
                    Val::TStr(b) | Val::BStr(b) => {
                        bound.spend(VALUE_BYTES + b.len() as u64)?;
                        String::from_utf8_lossy(b).into_owned()
                    }
                    other => to_json_at(other, bound, depth + 1)?.to_string(),
                };
                out.insert(key, to_json_at(v, bound, depth + 1)?);
            }
            J::Object(out)
        }
    })
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

/// What a value takes, found by walking it: bytes (as [`to_json`] counts them,
/// shared parts each time they occur) and nesting depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measure {
    pub bytes: u64,
    pub depth: usize,
}

/// Measures `v` spending a step of `fuel` per value and per 64 bytes of text;
/// `None` when the fuel runs out first (the value may be shared many times
/// over) or it nests deeper than [`MAX_DEPTH`].
pub fn measure(v: &Val, fuel: &mut u64) -> Option<Measure> {
    let mut m = Measure { bytes: 0, depth: 0 };
    measure_at(v, fuel, 0, &mut m)?;
    Some(m)
}

fn measure_at(v: &Val, fuel: &mut u64, depth: usize, m: &mut Measure) -> Option<()> {
    *fuel = fuel.checked_sub(1)?;
    m.bytes += VALUE_BYTES;
    match v {
        Val::TStr(b) | Val::BStr(b) => {
            *fuel = fuel.checked_sub(b.len() as u64 / 64)?;
            m.bytes += b.len() as u64;
        }
        Val::Arr(a) => {
            if depth >= MAX_DEPTH {
                return None;
            }
            m.depth = m.depth.max(depth + 1);
            for i in a.iter() {
                measure_at(i, fuel, depth + 1, m)?;
            }
        }
        Val::Obj(o) => {
            if depth >= MAX_DEPTH {
                return None;
            }
            m.depth = m.depth.max(depth + 1);
            for (k, v) in o.iter() {
                measure_at(k, fuel, depth + 1, m)?;
                measure_at(v, fuel, depth + 1, m)?;
            }
        }
        _ => {}
    }
    Some(())
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

    fn out(v: &Val) -> Result<serde_json::Value, TooBig> {
        to_json(v, &mut Bound::generous())
    }

    #[test]
    fn round_trips() {
        let v = json!({"a": [1, 2.5, "x", null, true], "b": {"c": -7}, "big": 12345678901234i64,
                       "huge": 123456789012345678901234567890u128 as f64, "u": u64::MAX});
        assert_eq!(out(&from_json(&v).unwrap()).unwrap(), v);
    }

    fn nested(depth: usize) -> serde_json::Value {
        let mut v = json!(1);
        for _ in 0..depth {
            v = json!([v]);
        }
        v
    }

    #[test]
    fn depth_is_bounded_both_ways() {
        assert!(from_json(&nested(MAX_DEPTH)).is_ok());
        assert_eq!(from_json(&nested(MAX_DEPTH + 1)), Err(TooBig::Depth));
        let mut v = Val::from(1isize);
        for _ in 0..MAX_DEPTH + 1 {
            v = [v].into_iter().collect();
        }
        assert_eq!(out(&v), Err(TooBig::Depth));
        let mut fuel = 10_000;
        assert_eq!(measure(&v, &mut fuel), None);
    }

    #[test]
    fn a_shared_value_cannot_expand_without_bound() {
        // 2^60 leaves in a few dozen bytes of memory.
        let mut v = Val::from(1isize);
        for _ in 0..60 {
            v = [v.clone(), v].into_iter().collect();
        }
        assert_eq!(
            to_json(&v, &mut Bound::new(1 << 20, None)),
            Err(TooBig::Size)
        );
        let mut fuel = 100_000;
        assert_eq!(measure(&v, &mut fuel), None);
        let small = from_json(&serde_json::json!({"a": ["xy", 1]})).unwrap();
        let mut fuel = 100;
        assert_eq!(
            measure(&small, &mut fuel),
            Some(Measure {
                bytes: 5 * VALUE_BYTES + 3,
                depth: 2
            })
        );
        let past = Instant::now() - std::time::Duration::from_secs(1);
        assert_eq!(
            to_json(&v, &mut Bound::new(u64::MAX, Some(past))),
            Err(TooBig::Time)
        );
    }
}

#[cfg(test)]
mod depth_bounds {
    /// Whatever the edge may accept fits in an execution's values, with the
    /// input document and the variables around it.
    #[test]
    fn the_deepest_accepted_input_fits_in_a_flows_values() {
        const { assert!(crate::domain::depth::MAX_INPUT_DEPTH + 3 <= super::MAX_DEPTH) };
    }
}
