//! What one native evaluation may spend: steps, and bytes of values it builds.

use jaq_json::Val;

use crate::flow::value::{MAX_DEPTH, measure};

/// The steps one native evaluation may take: well under a millisecond.
pub const FUEL: u64 = 200_000;

/// What one native evaluation may still spend, and what it built.
#[derive(Debug, Clone)]
pub struct Fuel {
    left: u64,
    built: u64,
}

impl Default for Fuel {
    fn default() -> Self {
        Self::new(FUEL)
    }
}

impl Fuel {
    pub fn new(steps: u64) -> Self {
        Self {
            left: steps,
            built: 0,
        }
    }

    /// Bytes of new values built so far (approximately).
    pub fn built(&self) -> u64 {
        self.built
    }

    pub(super) fn burn(&mut self, steps: u64) -> Option<()> {
        self.left = self.left.checked_sub(steps)?;
        Some(())
    }

    /// Pays for `bytes` of new text or values.
    pub(super) fn build(&mut self, bytes: u64) -> Option<()> {
        self.burn(1 + bytes / 64)?;
        self.built += bytes;
        Some(())
    }

    /// Pays for walking `v`, or `None` when it is too big.
    pub(super) fn weigh(&mut self, v: &Val) -> Option<()> {
        if matches!(v, Val::Arr(_) | Val::Obj(_)) {
            measure(v, &mut self.left)?;
        }
        Some(())
    }

    /// Takes `v` into a new array or object: it must stay within `MAX_DEPTH`
    /// levels there, and what it holds counts as built (a value made by
    /// gathering others holds them all).
    pub(super) fn nest(&mut self, v: &Val) -> Option<()> {
        if matches!(v, Val::Arr(_) | Val::Obj(_)) {
            let m = measure(v, &mut self.left)?;
            if m.depth >= MAX_DEPTH {
                return None;
            }
            self.built += m.bytes;
        }
        Some(())
    }
}
