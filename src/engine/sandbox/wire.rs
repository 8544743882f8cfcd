//! What flowgate and a jq worker process say to each other over the worker's
//! stdin and stdout: frames (an 8-byte little-endian length, then that many
//! bytes) holding a hello, requests and replies, with values in the exact
//! encoding of [`codec`](super::codec).

use std::time::Instant;

use jaq_json::Val;

use super::codec::{Malformed, Reader, TSTR, Writer};
use crate::flow::value::TooBig;

/// The first frame a worker sends: who it is and which protocol it speaks.
pub const HELLO: &[u8] = b"flowgate-jq-worker/1";

/// An evaluation to run.
#[derive(Debug)]
pub struct Request<'a> {
    pub source: &'a str,
    /// Most outputs wanted; one more is reported as "more".
    pub max_outputs: u32,
    /// Bytes the evaluation may allocate beyond its input.
    pub memory: u64,
    pub input: Input<'a>,
}

/// What an evaluation runs on.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// This value.
    Whole(&'a Val),
    /// An execution's context: the input document's fields (`base`, the same for
    /// the whole execution, sent to a worker once and kept there under `token`)
    /// with `vars` added.
    Context {
        token: u64,
        base: Option<&'a Val>,
        vars: &'a Val,
    },
}

/// What a worker reads: as [`Input`], owned.
#[derive(Debug)]
pub enum Received {
    Whole(Val),
    Context {
        token: u64,
        base: Option<Val>,
        vars: Val,
    },
}

/// A worker's answer.
#[derive(Debug)]
pub enum Reply {
    /// The outputs, each with the size of its encoding, and whether there were
    /// more than asked for.
    Values(Vec<(Val, u64)>, bool),
    /// The program failed (a jq error, or it could not be compiled).
    Failed(String),
    /// The outputs were too large or too deep to send back.
    TooBig(TooBig),
    /// The worker does not hold the base of this context (send it again).
    NeedBase,
}

/// Longest error message sent back.
const MAX_MESSAGE: usize = 2048;

const EVAL: u8 = b'E';
const VALUES: u8 = b'V';
const FAILED: u8 = b'F';
const TOO_BIG: u8 = b'B';
const NEED_BASE: u8 = b'N';
const WHOLE: u8 = b'W';
const CONTEXT: u8 = b'C';

/// A request's frame; fails when its input is too large, deep or slow to write.
pub fn request(r: &Request<'_>, deadline: Option<Instant>) -> Result<Vec<u8>, TooBig> {
    let mut w = Writer::new(
        r.memory.saturating_add(r.source.len() as u64 + 64),
        deadline,
    );
    w.byte(EVAL)?;
    w.u32(r.max_outputs)?;
    w.u64(r.memory)?;
    w.bytes(TSTR, r.source.as_bytes())?;
    match r.input {
        Input::Whole(v) => {
            w.byte(WHOLE)?;
            w.value(v)?;
        }
        Input::Context { token, base, vars } => {
            w.byte(CONTEXT)?;
            w.u64(token)?;
            w.byte(u8::from(base.is_some()))?;
            if let Some(b) = base {
                w.value(b)?;
            }
            w.value(vars)?;
        }
    }
    Ok(w.out)
}

/// The frame of a worker's `NeedBase` answer.
pub fn need_base() -> Vec<u8> {
    vec![NEED_BASE]
}

/// A request as the worker reads it: the source, the most outputs, the memory
/// and the input.
pub fn read_request(frame: &[u8]) -> Result<(&str, u32, u64, Received), Malformed> {
    let mut r = Reader::new(frame);
    match r.byte()? {
        EVAL => {}
        k => return Err(Malformed::Kind(k)),
    }
    let max = r.u32()?;
    let memory = r.u64()?;
    if r.byte()? != TSTR {
        return Err(Malformed::Kind(TSTR));
    }
    let source = r.text()?;
    let input = match r.byte()? {
        WHOLE => Received::Whole(r.value()?),
        CONTEXT => {
            let token = r.u64()?;
            let base = match r.byte()? {
                0 => None,
                _ => Some(r.value()?),
            };
            Received::Context {
                token,
                base,
                vars: r.value()?,
            }
        }
        k => return Err(Malformed::Kind(k)),
    };
    r.finish()?;
    Ok((source, max, memory, input))
}

/// A reply's frame, at most `max_bytes` long (else a `TooBig` reply).
pub fn reply(outcome: Result<(&[Val], bool), &str>, max_bytes: u64) -> Vec<u8> {
    let encoded = match outcome {
        Err(message) => {
            // A jq error quotes the value it failed on, which may be huge.
            let end = message.floor_char_boundary(MAX_MESSAGE);
            let mut out = vec![FAILED];
            out.extend_from_slice(&message.as_bytes()[..end]);
            if end < message.len() {
                out.extend_from_slice("…".as_bytes());
            }
            return out;
        }
        Ok((values, more)) => {
            let mut w = Writer::new(max_bytes, None);
            (|| {
                w.byte(VALUES)?;
                w.byte(u8::from(more))?;
                w.u32(values.len() as u32)?;
                values.iter().try_for_each(|v| w.value(v))
            })()
            .map(|()| w.out)
        }
    };
    encoded.unwrap_or_else(|why| {
        vec![
            TOO_BIG,
            match why {
                TooBig::Depth => 0,
                TooBig::Size => 1,
                TooBig::Time => 2,
            },
        ]
    })
}

pub fn read_reply(frame: &[u8]) -> Result<Reply, Malformed> {
    let mut r = Reader::new(frame);
    Ok(match r.byte()? {
        VALUES => {
            let more = r.byte()? != 0;
            let n = r.u32()? as usize;
            let mut values = Vec::with_capacity(n.min(4096));
            for _ in 0..n {
                let start = r.position();
                let v = r.value()?;
                values.push((v, (r.position() - start) as u64));
            }
            r.finish()?;
            Reply::Values(values, more)
        }
        FAILED => Reply::Failed(String::from_utf8_lossy(&frame[1..]).into_owned()),
        NEED_BASE => {
            r.finish()?;
            Reply::NeedBase
        }
        TOO_BIG => Reply::TooBig(match r.byte()? {
            0 => TooBig::Depth,
            1 => TooBig::Size,
            _ => TooBig::Time,
        }),
        k => return Err(Malformed::Kind(k)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::sandbox::codec::{ARR, NULL};
    use crate::flow::value::{Bound, MAX_DEPTH, from_json, to_json};
    use jaq_json::{Num, Rc};
    use serde_json::json;

    #[test]
    fn values_cross_exactly() {
        let mut values = vec![
            from_json(&json!({"a": [1, -2, 2.5, "x", null, true, false], "b": {"c": u64::MAX}}))
                .unwrap(),
        ];
        values.push(Val::byte_str(vec![0xff, 0]));
        values.push(Val::Num(Num::Dec(Rc::new("1.50".into()))));
        values.push(Val::Num(
            Num::from_str_radix("123456789012345678901234567890", 10).unwrap(),
        ));
        let mut keyed = jaq_json::Map::default();
        keyed.insert(Val::from(1isize), Val::Null);
        values.push(Val::obj(keyed));
        let frame = reply(Ok((&values, true)), 1 << 20);
        let Reply::Values(back, more) = read_reply(&frame).unwrap() else {
            panic!("not values")
        };
        assert!(more);
        for ((b, size), v) in back.iter().zip(&values) {
            assert!(*size > 0);
            assert_eq!(format!("{b:?}"), format!("{v:?}"));
        }
        let input = &values[0];
        let req = Request {
            source: ".a",
            max_outputs: 1,
            memory: 1000,
            input: Input::Whole(input),
        };
        let frame = request(&req, None).unwrap();
        let (src, max, mem, got) = read_request(&frame).unwrap();
        assert_eq!((src, max, mem), (".a", 1, 1000));
        let Received::Whole(got) = got else {
            panic!("not whole")
        };
        assert_eq!(
            to_json(&got, &mut Bound::generous()),
            to_json(input, &mut Bound::generous())
        );
        let context = Request {
            input: Input::Context {
                token: 7,
                base: None,
                vars: input,
            },
            ..req
        };
        let frame = request(&context, None).unwrap();
        assert!(matches!(
            read_request(&frame).unwrap().3,
            Received::Context {
                token: 7,
                base: None,
                ..
            }
        ));
        assert!(matches!(read_reply(&need_base()), Ok(Reply::NeedBase)));
    }

    #[test]
    fn writing_is_bounded_and_reading_is_checked() {
        let mut v = Val::from(1isize);
        for _ in 0..64 {
            v = [v.clone(), v].into_iter().collect();
        }
        let req = Request {
            source: ".",
            max_outputs: 1,
            memory: 1 << 20,
            input: Input::Whole(&v),
        };
        assert_eq!(request(&req, None), Err(TooBig::Size));
        assert!(matches!(
            read_reply(&reply(Ok((&[v], false)), 1 << 20)).unwrap(),
            Reply::TooBig(TooBig::Size)
        ));
        // Truncated, trailing, lying about lengths, nested too deep, unknown tags.
        let frame = reply(Ok((&[Val::from(7isize)], false)), 100);
        assert!(read_reply(&frame[..frame.len() - 1]).is_err());
        let mut long = frame.clone();
        long.push(0);
        assert_eq!(read_reply(&long).unwrap_err(), Malformed::Trailing(1));
        let mut lying = vec![VALUES, 0, 1, 0, 0, 0, ARR];
        lying.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(read_reply(&lying).is_err());
        let mut deep = vec![VALUES, 0, 1, 0, 0, 0];
        for _ in 0..MAX_DEPTH + 1 {
            deep.push(ARR);
            deep.extend_from_slice(&1u64.to_le_bytes());
        }
        deep.push(NULL);
        assert_eq!(read_reply(&deep).unwrap_err(), Malformed::Deep);
        assert_eq!(
            read_reply(&[VALUES, 0, 1, 0, 0, 0, 99]).unwrap_err(),
            Malformed::Tag(99)
        );
    }
}
