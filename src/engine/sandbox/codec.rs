//! jq values as bytes, exactly as jaq holds them: text and byte strings,
//! integers, floats, decimals kept as text, big integers, non-string object
//! keys. Writing is bounded in bytes, nesting and time (a shared value can stand
//! for far more than it occupies); reading is bounded in nesting and checks
//! every length against what is left, so bad bytes are an error, never a panic
//! or a huge allocation.

use std::time::Instant;

use jaq_json::{Num, Rc, Val};

use crate::flow::value::{Bound, MAX_DEPTH, TooBig};

/// Value tags (`TSTR` also marks a request's source text).
pub(super) const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const INT: u8 = 3;
const FLOAT: u8 = 4;
const DEC: u8 = 5;
const BIG: u8 = 6;
pub(super) const TSTR: u8 = 7;
const BSTR: u8 = 8;
pub(super) const ARR: u8 = 9;
const OBJ: u8 = 10;

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

    pub fn byte(&mut self, b: u8) -> Result<(), TooBig> {
        self.room(1)?;
        self.out.push(b);
        Ok(())
    }

    pub fn bytes(&mut self, tag: u8, b: &[u8]) -> Result<(), TooBig> {
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
