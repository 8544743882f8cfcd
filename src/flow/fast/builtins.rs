//! The builtins the subset calls natively: `length`, `type`, `not`,
//! `tostring`, `ascii_downcase` and `ascii_upcase`.

use jaq_core::ValT;
use jaq_json::Val;

use super::fuel::Fuel;

/// A builtin called without arguments, on its input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Builtin {
    Length,
    Type,
    Not,
    ToString,
    Downcase,
    Upcase,
}

impl Builtin {
    pub(super) fn named(name: &str) -> Option<Self> {
        Some(match name {
            "length" => Self::Length,
            "type" => Self::Type,
            "not" => Self::Not,
            "tostring" => Self::ToString,
            "ascii_downcase" => Self::Downcase,
            "ascii_upcase" => Self::Upcase,
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
    })
}
