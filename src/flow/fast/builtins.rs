//! The builtins the subset calls natively: `length`, `type`, `not`,
//! `tostring`, `tojson`, `tonumber`, `keys`, `keys_unsorted`,
//! `utf8bytelength`, `ascii_downcase` and `ascii_upcase` on their input, and
//! `has(k)`, `select(f)`, `startswith(s)`, `endswith(s)`, `ltrimstr(s)` and
//! `rtrimstr(s)` with one argument. `error` and `error(m)` are in the subset
//! but never answered natively: jaq reports the error. Each answers only where
//! jaq gives one value (`select` of a false condition gives none: left to
//! jaq), and only for the types whose result is sure.

use jaq_core::ValT;
use jaq_json::{Num, Val};

use super::fuel::Fuel;

/// A builtin, called on its input (and with one argument, for some).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Builtin {
    Length,
    Type,
    Not,
    ToString,
    ToJson,
    ToNumber,
    Keys,
    KeysUnsorted,
    Utf8ByteLength,
    Downcase,
    Upcase,
    Error,
    Has,
    Select,
    StartsWith,
    EndsWith,
    LtrimStr,
    RtrimStr,
}

impl Builtin {
    /// The builtin `name` without arguments.
    pub(super) fn named(name: &str) -> Option<Self> {
        Some(match name {
            "length" => Self::Length,
            "type" => Self::Type,
            "not" => Self::Not,
            "tostring" => Self::ToString,
            "tojson" => Self::ToJson,
            "tonumber" => Self::ToNumber,
            "keys" => Self::Keys,
            "keys_unsorted" => Self::KeysUnsorted,
            "utf8bytelength" => Self::Utf8ByteLength,
            "ascii_downcase" => Self::Downcase,
            "ascii_upcase" => Self::Upcase,
            "error" => Self::Error,
            _ => return None,
        })
    }

    /// The builtin `name` with one argument.
    pub(super) fn with_arg(name: &str) -> Option<Self> {
        Some(match name {
            "error" => Self::Error,
            "has" => Self::Has,
            "select" => Self::Select,
            "startswith" => Self::StartsWith,
            "endswith" => Self::EndsWith,
            "ltrimstr" => Self::LtrimStr,
            "rtrimstr" => Self::RtrimStr,
            _ => return None,
        })
    }
}

/// A string's text, for the builtins that take strings.
fn text(v: &Val) -> Option<&[u8]> {
    match v {
        Val::TStr(b) => Some(b),
        _ => None,
    }
}

/// `tostring`: strings as they are, anything else as JSON text.
pub(super) fn push_string(out: &mut Vec<u8>, v: &Val, fuel: &mut Fuel) -> Option<()> {
    match v {
        Val::TStr(b) => {
            fuel.build(b.len() as u64)?;
            out.extend_from_slice(b)
        }
        Val::BStr(_) => return None,
        other => {
            fuel.weigh(other)?;
            let text = other.to_string();
            fuel.build(text.len() as u64)?;
            out.extend_from_slice(text.as_bytes())
        }
    }
    Some(())
}

pub(super) fn call(f: Builtin, input: &Val, fuel: &mut Fuel) -> Option<Val> {
    Some(match f {
        Builtin::Not => Val::Bool(!input.as_bool()),
        Builtin::Length => match input {
            Val::Null => Val::from(0isize),
            Val::TStr(b) => {
                fuel.burn(b.len() as u64 / 64)?;
                Val::from(std::str::from_utf8(b).ok()?.chars().count() as isize)
            }
            Val::Arr(a) => Val::from(a.len() as isize),
            Val::Obj(o) => Val::from(o.len() as isize),
            _ => return None,
        },
        Builtin::Type => Val::utf8_str(
            match input {
                Val::Null => "null",
                Val::Bool(_) => "boolean",
                Val::Num(_) => "number",
                Val::TStr(_) => "string",
                Val::Arr(_) => "array",
                Val::Obj(_) => "object",
                Val::BStr(_) => return None,
            }
            .as_bytes()
            .to_vec(),
        ),
        Builtin::ToString => {
            if let Val::TStr(_) = input {
                return Some(input.clone());
            }
            let mut out = Vec::new();
            push_string(&mut out, input, fuel)?;
            Val::utf8_str(out)
        }
        Builtin::Downcase => {
            let t = text(input)?;
            fuel.build(t.len() as u64)?;
            Val::utf8_str(t.to_ascii_lowercase())
        }
        Builtin::Upcase => {
            let t = text(input)?;
            fuel.build(t.len() as u64)?;
            Val::utf8_str(t.to_ascii_uppercase())
        }
        Builtin::ToJson => {
            if let Val::BStr(_) = input {
                return None;
            }
            fuel.weigh(input)?;
            let text = input.to_string();
            fuel.build(text.len() as u64)?;
            Val::utf8_str(text.into_bytes())
        }
        // jaq: `if isnumber then . else fromjson | ...`: one JSON number, or
        // an error (or none, or several, for text of no or several values).
        Builtin::ToNumber => match input {
            Val::Num(_) => input.clone(),
            Val::TStr(b) => {
                fuel.burn(1 + b.len() as u64 / 64)?;
                match jaq_json::read::parse_single(b) {
                    Ok(n @ Val::Num(_)) => n,
                    _ => return None,
                }
            }
            _ => return None,
        },
        Builtin::Keys | Builtin::KeysUnsorted => {
            let mut keys: Vec<Val> = match input {
                Val::Obj(o) => {
                    fuel.burn(o.len() as u64)?;
                    o.keys().cloned().collect()
                }
                Val::Arr(a) => {
                    fuel.burn(a.len() as u64)?;
                    (0..a.len()).map(|i| Val::from(i as isize)).collect()
                }
                _ => return None,
            };
            fuel.build(16 * keys.len() as u64)?;
            if f == Builtin::Keys {
                fuel.burn(keys.len() as u64)?;
                keys.sort();
            }
            keys.into_iter().collect()
        }
        Builtin::Utf8ByteLength => Val::from(text(input)?.len() as isize),
        Builtin::Error => return None,
        Builtin::Has
        | Builtin::Select
        | Builtin::StartsWith
        | Builtin::EndsWith
        | Builtin::LtrimStr
        | Builtin::RtrimStr => return None,
    })
}

/// `f(arg)` on `input`, `arg` evaluated on the same input.
pub(super) fn apply(f: Builtin, input: &Val, arg: &Val, fuel: &mut Fuel) -> Option<Val> {
    Some(match f {
        Builtin::Select if arg.as_bool() => input.clone(),
        // No output: jaq's to give.
        Builtin::Select => return None,
        Builtin::Has => Val::Bool(match (input, arg) {
            (Val::Null, _) => false,
            (Val::Obj(o), k) => o.contains_key(k),
            (Val::Arr(a), Val::Num(Num::Int(i))) => {
                // As jaq indexes: from the end when negative.
                let len = a.len() as isize;
                if *i >= 0 { *i < len } else { len + *i >= 0 }
            }
            _ => return None,
        }),
        Builtin::StartsWith | Builtin::EndsWith => {
            let (t, s) = (text(input)?, text(arg)?);
            fuel.burn(1 + s.len() as u64 / 64)?;
            Val::Bool(if f == Builtin::StartsWith {
                t.starts_with(s)
            } else {
                t.ends_with(s)
            })
        }
        Builtin::LtrimStr | Builtin::RtrimStr => {
            let (t, s) = (text(input)?, text(arg)?);
            let rest = if f == Builtin::LtrimStr {
                t.strip_prefix(s)
            } else {
                t.strip_suffix(s)
            };
            match rest {
                Some(rest) => {
                    fuel.build(rest.len() as u64)?;
                    Val::utf8_str(rest.to_vec())
                }
                None => input.clone(),
            }
        }
        _ => return None,
    })
}
