//! PostgreSQL values <-> JSON for the `sql` step.
//!
//! Columns: integers and floats -> numbers; `numeric` -> a string holding the exact
//! decimal (`"12.50"`: a JSON number would lose digits past 15 or so, and the scale);
//! text types, enums -> strings; `bool`; `json`/`jsonb` -> the JSON value; `timestamptz`
//! -> RFC 3339 in UTC (`2024-05-01T10:00:00.5Z`); `timestamp` -> the same without an
//! offset (it names no instant); `date` -> `YYYY-MM-DD`; `time` -> `HH:MM:SS`; `uuid`
//! -> string; `bytea` -> `{"base64": ...}`; arrays -> arrays; NULL -> null. Other types
//! are an error that says to cast them in the query.
//!
//! Parameters go the other way, by the type PostgreSQL infers for each `$n`: a
//! number or a numeric string for number types, RFC 3339 strings for timestamps,
//! any JSON for `json`/`jsonb`, arrays for array types, null for NULL. Values are
//! always bound, never put into the query text.

use std::error::Error;

use base64::Engine;
use bytes::{BufMut, BytesMut};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};
use tokio_postgres::types::{FromSql, IsNull, Kind, ToSql, Type, to_sql_checked};

type BoxError = Box<dyn Error + Sync + Send>;

const DATE: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]");
const TIME: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[hour]:[minute]:[second][optional [.[subsecond]]]");
const LOCAL_DATETIME: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]");

/// One column value as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell(pub Value);

impl<'a> FromSql<'a> for Cell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let v = match *ty {
            Type::BOOL => Value::Bool(bool::from_sql(ty, raw)?),
            Type::INT2 => json!(i16::from_sql(ty, raw)?),
            Type::INT4 => json!(i32::from_sql(ty, raw)?),
            Type::INT8 => json!(i64::from_sql(ty, raw)?),
            Type::OID => json!(u32::from_sql(ty, raw)?),
            Type::FLOAT4 => float(f32::from_sql(ty, raw)? as f64),
            Type::FLOAT8 => float(f64::from_sql(ty, raw)?),
            Type::NUMERIC => Value::String(numeric_to_string(raw)?),
            Type::JSON | Type::JSONB => Value::from_sql(ty, raw)?,
            Type::TIMESTAMPTZ => Value::String(
                OffsetDateTime::from_sql(ty, raw)?
                    .to_offset(UtcOffset::UTC)
                    .format(&Rfc3339)?,
            ),
            Type::TIMESTAMP => {
                let t = PrimitiveDateTime::from_sql(ty, raw)?;
                Value::String(format!(
                    "{}T{}",
                    t.date().format(DATE)?,
                    time_text(t.time())?
                ))
            }
            Type::DATE => Value::String(Date::from_sql(ty, raw)?.format(DATE)?),
            Type::TIME => Value::String(time_text(Time::from_sql(ty, raw)?)?),
            Type::UUID => Value::String(uuid::Uuid::from_sql(ty, raw)?.to_string()),
            Type::BYTEA => {
                json!({"base64": base64::engine::general_purpose::STANDARD.encode(raw)})
            }
            _ => match ty.kind() {
                Kind::Array(_) => Value::Array(
                    Vec::<Option<Cell>>::from_sql(ty, raw)?
                        .into_iter()
                        .map(|c| c.map_or(Value::Null, |c| c.0))
                        .collect(),
                ),
                Kind::Domain(inner) => Cell::from_sql(inner, raw)?.0,
                Kind::Enum(_) => Value::String(std::str::from_utf8(raw)?.to_owned()),
                _ if <String as FromSql>::accepts(ty) => Value::String(String::from_sql(ty, raw)?),
                _ => {
                    return Err(format!(
                        "type `{}` has no JSON mapping; cast it in the query (e.g. `::text`)",
                        ty.name()
                    )
                    .into());
                }
            },
        };
        Ok(Cell(v))
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Cell(Value::Null))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// `HH:MM:SS`, with the fraction only when there is one (`10:00:00.25`).
fn time_text(t: Time) -> Result<String, BoxError> {
    let mut s = t.format(format_description!("[hour]:[minute]:[second]"))?;
    if t.nanosecond() > 0 {
        let frac = format!("{:09}", t.nanosecond());
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    Ok(s)
}

fn float(f: f64) -> Value {
    serde_json::Number::from_f64(f)
        .map(Value::Number)
        // NaN and infinities have no JSON number.
        .unwrap_or_else(|| Value::String(f.to_string()))
}

/// One bound parameter: a JSON value encoded as the type the query needs.
#[derive(Debug)]
pub struct Param<'a>(pub &'a Value);

impl ToSql for Param<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        let v = self.0;
        if v.is_null() {
            return Ok(IsNull::Yes);
        }
        match *ty {
            Type::BOOL => match v {
                Value::Bool(b) => b.to_sql(ty, out),
                Value::String(s) if s == "true" || s == "false" => (s == "true").to_sql(ty, out),
                _ => Err(expected("a boolean", v)),
            },
            Type::INT2 => i16::try_from(integer(v)?)
                .map_err(|_| expected("an int2 (-32768..32767)", v))?
                .to_sql(ty, out),
            Type::INT4 => i32::try_from(integer(v)?)
                .map_err(|_| expected("an int4", v))?
                .to_sql(ty, out),
            Type::INT8 => integer(v)?.to_sql(ty, out),
            Type::OID => u32::try_from(integer(v)?)
                .map_err(|_| expected("an oid", v))?
                .to_sql(ty, out),
            Type::FLOAT4 => (number(v)? as f32).to_sql(ty, out),
            Type::FLOAT8 => number(v)?.to_sql(ty, out),
            Type::NUMERIC => {
                let text = match v {
                    Value::Number(n) => n.to_string(),
                    Value::String(s) => s.trim().to_owned(),
                    _ => return Err(expected("a number or a decimal string", v)),
                };
                numeric_from_str(&text, out)?;
                Ok(IsNull::No)
            }
            Type::JSON | Type::JSONB => v.to_sql(ty, out),
            Type::TIMESTAMPTZ => OffsetDateTime::parse(string(v, "an RFC 3339 timestamp")?, &Rfc3339)
                .map_err(|e| format!("{v} is not an RFC 3339 timestamp: {e}"))?
                .to_sql(ty, out),
            Type::TIMESTAMP => {
                let s = string(v, "a timestamp")?;
                let t = match OffsetDateTime::parse(s, &Rfc3339) {
                    Ok(t) => {
                        let u = t.to_offset(UtcOffset::UTC);
                        PrimitiveDateTime::new(u.date(), u.time())
                    }
                    Err(_) => PrimitiveDateTime::parse(s, LOCAL_DATETIME)
                        .map_err(|e| format!("{v} is not a timestamp: {e}"))?,
                };
                t.to_sql(ty, out)
            }
            Type::DATE => Date::parse(string(v, "a date")?, DATE)
                .map_err(|e| format!("{v} is not a date like 2024-05-31: {e}"))?
                .to_sql(ty, out),
            Type::TIME => Time::parse(string(v, "a time")?, TIME)
                .map_err(|e| format!("{v} is not a time like 10:30:00: {e}"))?
                .to_sql(ty, out),
            Type::UUID => uuid::Uuid::parse_str(string(v, "a UUID")?)
                .map_err(|e| format!("{v} is not a UUID: {e}"))?
                .to_sql(ty, out),
            Type::BYTEA => {
                let bytes = match v {
                    Value::Object(o) => match o.get("base64") {
                        Some(Value::String(b)) => base64::engine::general_purpose::STANDARD
                            .decode(b)
                            .map_err(|e| format!("`base64` is not base64: {e}"))?,
                        _ => return Err(expected("a string or {\"base64\": ...}", v)),
                    },
                    Value::String(s) => s.as_bytes().to_vec(),
                    _ => return Err(expected("a string or {\"base64\": ...}", v)),
                };
                bytes.as_slice().to_sql(ty, out)
            }
            _ => match ty.kind() {
                Kind::Array(_) => {
                    let Value::Array(items) = v else {
                        return Err(expected("an array", v));
                    };
                    let params: Vec<Param<'_>> = items.iter().map(Param).collect();
                    params.to_sql(ty, out)
                }
                Kind::Domain(inner) => Param(v).to_sql(inner, out),
                Kind::Enum(_) => {
                    out.put_slice(string(v, "a string")?.as_bytes());
                    Ok(IsNull::No)
                }
                _ if <&str as ToSql>::accepts(ty) => match v {
                    Value::String(s) => s.as_str().to_sql(ty, out),
                    // Numbers and booleans bind to text as their JSON text.
                    Value::Number(_) | Value::Bool(_) => v.to_string().as_str().to_sql(ty, out),
                    _ => Err(expected("a string", v)),
                },
                _ => Err(format!(
                    "parameters of type `{}` are not supported; cast in the query (e.g. `$1::text::{}`)",
                    ty.name(),
                    ty.name()
                )
                .into()),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn expected(what: &str, v: &Value) -> BoxError {
    let mut shown = v.to_string();
    if shown.len() > 60 {
        shown.truncate(60);
        shown.push('…');
    }
    format!("expected {what}, got {shown}").into()
}

fn string<'a>(v: &'a Value, what: &str) -> Result<&'a str, BoxError> {
    v.as_str().ok_or_else(|| expected(what, v))
}

fn integer(v: &Value) -> Result<i64, BoxError> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                    .map(|f| f as i64)
            })
            .ok_or_else(|| expected("an integer", v)),
        Value::String(s) => s.trim().parse().map_err(|_| expected("an integer", v)),
        _ => Err(expected("an integer", v)),
    }
}

fn number(v: &Value) -> Result<f64, BoxError> {
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| expected("a number", v)),
        Value::String(s) => s.trim().parse().map_err(|_| expected("a number", v)),
        _ => Err(expected("a number", v)),
    }
}

const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;

/// The binary `numeric` (base-10000 digits) as its exact decimal text.
pub fn numeric_to_string(raw: &[u8]) -> Result<String, BoxError> {
    let word = |i: usize| -> Result<u16, BoxError> {
        raw.get(i..i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "truncated numeric".into())
    };
    let ndigits = word(0)? as usize;
    let weight = word(2)? as i16 as i64;
    let sign = word(4)?;
    let dscale = word(6)? as usize;
    match sign {
        NUMERIC_NAN => return Ok("NaN".into()),
        NUMERIC_PINF => return Ok("Infinity".into()),
        NUMERIC_NINF => return Ok("-Infinity".into()),
        _ => {}
    }
    let mut digits = Vec::with_capacity(ndigits);
    for i in 0..ndigits {
        digits.push(word(8 + 2 * i)?);
    }
    let digit = |k: i64| -> u16 {
        if k >= 0 && (k as usize) < digits.len() {
            digits[k as usize]
        } else {
            0
        }
    };
    let mut s = String::new();
    if sign == NUMERIC_NEG {
        s.push('-');
    }
    if weight < 0 {
        s.push('0');
    } else {
        for k in 0..=weight {
            if k == 0 {
                s.push_str(&digit(k).to_string());
            } else {
                s.push_str(&format!("{:04}", digit(k)));
            }
        }
    }
    if dscale > 0 {
        let mut frac = String::with_capacity(dscale + 4);
        let mut k = weight + 1;
        while frac.len() < dscale {
            frac.push_str(&format!("{:04}", digit(k)));
            k += 1;
        }
        frac.truncate(dscale);
        s.push('.');
        s.push_str(&frac);
    }
    Ok(s)
}

/// Decimal text (`-12.50`, `1e-7`, `NaN`) as binary `numeric`.
pub fn numeric_from_str(text: &str, out: &mut BytesMut) -> Result<(), BoxError> {
    let bad = || -> BoxError { format!("`{text}` is not a decimal number").into() };
    let put_header = |out: &mut BytesMut, n: u16, weight: i16, sign: u16, dscale: u16| {
        out.put_u16(n);
        out.put_i16(weight);
        out.put_u16(sign);
        out.put_u16(dscale);
    };
    match text {
        "NaN" => {
            put_header(out, 0, 0, NUMERIC_NAN, 0);
            return Ok(());
        }
        "Infinity" | "+Infinity" => {
            put_header(out, 0, 0, NUMERIC_PINF, 0);
            return Ok(());
        }
        "-Infinity" => {
            put_header(out, 0, 0, NUMERIC_NINF, 0);
            return Ok(());
        }
        _ => {}
    }
    let (negative, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().map_err(|_| bad())?),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || exp.abs() > 100_000
    {
        return Err(bad());
    }
    let mut digits: Vec<u8> = int.bytes().chain(frac.bytes()).map(|b| b - b'0').collect();
    // Position of the decimal point within `digits`.
    let mut point = int.len() as i64 + exp;
    let dscale = (digits.len() as i64 - point).max(0);
    if point < 0 {
        let mut padded = vec![0u8; (-point) as usize];
        padded.extend_from_slice(&digits);
        digits = padded;
        point = 0;
    }
    if point > digits.len() as i64 {
        digits.resize(point as usize, 0);
    }
    let lead = ((4 - point % 4) % 4) as usize;
    let mut padded = vec![0u8; lead];
    padded.extend_from_slice(&digits);
    point += lead as i64;
    while !padded.len().is_multiple_of(4) {
        padded.push(0);
    }
    let mut groups: Vec<i16> = padded
        .chunks(4)
        .map(|c| c.iter().fold(0i16, |acc, d| acc * 10 + *d as i16))
        .collect();
    let mut weight = point / 4 - 1;
    let leading = groups.iter().take_while(|g| **g == 0).count();
    groups.drain(..leading);
    weight -= leading as i64;
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    let weight = i16::try_from(weight).map_err(|_| bad())?;
    let dscale = u16::try_from(dscale).map_err(|_| bad())?;
    let sign = if negative && !groups.is_empty() {
        NUMERIC_NEG
    } else {
        0
    };
    put_header(out, groups.len() as u16, weight, sign, dscale);
    for g in groups {
        out.put_i16(g);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_round_trips_exactly() {
        for (input, expect) in [
            ("12.50", "12.50"),
            ("-0.001", "-0.001"),
            ("0", "0"),
            (
                "123456789012345678901234567890.123456789",
                "123456789012345678901234567890.123456789",
            ),
            ("10000", "10000"),
            ("1e-7", "0.0000001"),
            ("1.5e3", "1500"),
            ("NaN", "NaN"),
        ] {
            let mut buf = BytesMut::new();
            numeric_from_str(input, &mut buf).unwrap();
            assert_eq!(numeric_to_string(&buf).unwrap(), expect, "{input}");
        }
        assert!(numeric_from_str("12a", &mut BytesMut::new()).is_err());
    }
}
