//! What flowgate and a jq worker process say to each other over the worker's
//! stdin and stdout: frames (an 8-byte little-endian length, then that many
//! bytes), and jq values encoded exactly as jaq holds them (text and byte
//! strings, integers, floats, decimals kept as text, non-string object keys).
//!
//! Writing a value is bounded in bytes, nesting and time (a shared value can
//! stand for far more than it occupies); reading one is bounded in nesting and
//! checks every length against what is left, so a bad frame is an error, never
//! a panic or a huge allocation.

use std::time::Instant;

use jaq_json::{Num, Rc, Val};

use crate::flow::value::{Bound, MAX_DEPTH, TooBig};

/// The first frame a worker sends: who it is and which protocol it speaks.
pub const HELLO: &[u8] = b"flowgate-jq-worker/1";

const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const INT: u8 = 3;
const FLOAT: u8 = 4;
const DEC: u8 = 5;
const BIG: u8 = 6;
const TSTR: u8 = 7;
const BSTR: u8 = 8;
const ARR: u8 = 9;
const OBJ: u8 = 10;

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

/// Encodes values within a byte count, a nesting depth and a deadline.
pub struct Writer {
    pub out: Vec<u8>,
    bound: Bound,
}

impl Writer {
    pub fn new(max_bytes: u64, deadline: Option<Instant>) -> Self {
        Self {
            out: Vec::new(),
            bound: Bound::new(max_bytes, deadline),
        }
    }

    fn room(&mut self, more: usize) -> Result<(), TooBig> {
        self.bound.spend(more as u64)
    }

    fn byte(&mut self, b: u8) -> Result<(), TooBig> {
        self.room(1)?;
        self.out.push(b);
        Ok(())
    }

    fn bytes(&mut self, tag: u8, b: &[u8]) -> Result<(), TooBig> {
        self.room(9 + b.len())?;
        self.out.push(tag);
        self.out.extend_from_slice(&(b.len() as u64).to_le_bytes());
        self.out.extend_from_slice(b);
        Ok(())
    }

    pub fn u32(&mut self, n: u32) -> Result<(), TooBig> {
        self.room(4)?;
        self.out.extend_from_slice(&n.to_le_bytes());
        Ok(())
    }

    pub fn u64(&mut self, n: u64) -> Result<(), TooBig> {
        self.room(8)?;
        self.out.extend_from_slice(&n.to_le_bytes());
        Ok(())
    }

    pub fn value(&mut self, v: &Val) -> Result<(), TooBig> {
        self.value_at(v, 0)
    }

    fn value_at(&mut self, v: &Val, depth: usize) -> Result<(), TooBig> {
        match v {
            Val::Null => self.byte(NULL),
            Val::Bool(false) => self.byte(FALSE),
            Val::Bool(true) => self.byte(TRUE),
            Val::Num(Num::Int(i)) => {
                self.byte(INT)?;
                self.u64(*i as i64 as u64)
            }
            Val::Num(Num::Float(f)) => {
                self.byte(FLOAT)?;
                self.u64(f.to_bits())
            }
            Val::Num(Num::Dec(d)) => self.bytes(DEC, d.as_bytes()),
            Val::Num(n @ Num::BigInt(_)) => self.bytes(BIG, n.to_string().as_bytes()),
            Val::TStr(b) => self.bytes(TSTR, b),
            Val::BStr(b) => self.bytes(BSTR, b),
            Val::Arr(a) => {
                if depth >= MAX_DEPTH {
                    return Err(TooBig::Depth);
                }
                self.byte(ARR)?;
                self.u64(a.len() as u64)?;
                a.iter().try_for_each(|i| self.value_at(i, depth + 1))
            }
            Val::Obj(o) => {
                if depth >= MAX_DEPTH {
                    return Err(TooBig::Depth);
                }
                self.byte(OBJ)?;
                self.u64(o.len() as u64)?;
                o.iter().try_for_each(|(k, v)| {
                    self.value_at(k, depth + 1)?;
                    self.value_at(v, depth + 1)
                })
            }
        }
    }
}

/// A frame that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("a frame ends early")]
    Short,
    #[error("unknown value tag {0}")]
    Tag(u8),
    #[error("a value is nested deeper than {MAX_DEPTH} levels")]
    Deep,
    #[error("a frame has {0} bytes left over")]
    Trailing(usize),
    #[error("unknown message kind {0}")]
    Kind(u8),
    #[error("a source is not UTF-8")]
    Utf8,
}

/// Decodes values from one frame.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn finish(&self) -> Result<(), Malformed> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            n => Err(Malformed::Trailing(n)),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self.pos.checked_add(n).ok_or(Malformed::Short)?;
        let s = self.buf.get(self.pos..end).ok_or(Malformed::Short)?;
        self.pos = end;
        Ok(s)
    }

    pub fn byte(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }

    pub fn u32(&mut self) -> Result<u32, Malformed> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> Result<u64, Malformed> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A length, at most the bytes left (each counted thing takes at least one).
    fn len(&mut self) -> Result<usize, Malformed> {
        let n = self.u64()?;
        usize::try_from(n)
            .ok()
            .filter(|n| *n <= self.buf.len() - self.pos)
            .ok_or(Malformed::Short)
    }

    fn sized(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.len()?;
        self.take(n)
    }

    pub fn text(&mut self) -> Result<&'a str, Malformed> {
        std::str::from_utf8(self.sized()?).map_err(|_| Malformed::Utf8)
    }

    pub fn value(&mut self) -> Result<Val, Malformed> {
        self.value_at(0)
    }

    fn value_at(&mut self, depth: usize) -> Result<Val, Malformed> {
        Ok(match self.byte()? {
            NULL => Val::Null,
            FALSE => Val::Bool(false),
            TRUE => Val::Bool(true),
            INT => Val::Num(Num::from_integral(self.u64()? as i64)),
            FLOAT => Val::Num(Num::Float(f64::from_bits(self.u64()?))),
            DEC => Val::Num(Num::Dec(Rc::new(
                std::str::from_utf8(self.sized()?)
                    .map_err(|_| Malformed::Utf8)?
                    .to_owned(),
            ))),
            BIG => {
                let digits = std::str::from_utf8(self.sized()?).map_err(|_| Malformed::Utf8)?;
                Val::Num(Num::from_str_radix(digits, 10).ok_or(Malformed::Tag(BIG))?)
            }
            TSTR => Val::utf8_str(self.sized()?.to_vec()),
            BSTR => Val::byte_str(self.sized()?.to_vec()),
            ARR => {
                if depth >= MAX_DEPTH {
                    return Err(Malformed::Deep);
                }
                let n = self.len()?;
                let mut items = Vec::with_capacity(n.min(4096));
                for _ in 0..n {
                    items.push(self.value_at(depth + 1)?);
                }
                items.into_iter().collect()
            }
            OBJ => {
                if depth >= MAX_DEPTH {
                    return Err(Malformed::Deep);
                }
                let n = self.len()?;
                let mut map = jaq_json::Map::default();
                for _ in 0..n {
                    let k = self.value_at(depth + 1)?;
                    map.insert(k, self.value_at(depth + 1)?);
                }
                Val::obj(map)
            }
            other => return Err(Malformed::Tag(other)),
        })
    }
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
            let mut end = message.len().min(MAX_MESSAGE);
            while !message.is_char_boundary(end) {
                end -= 1;
            }
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
    use crate::flow::value::{Bound, from_json, to_json};
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
