//! The global allocator of the `flowgate` binary: the system's choice (mimalloc)
//! behind a counter that only a jq worker process turns on. There it bounds
//! the memory one evaluation may take: an allocation past the limit fails, and
//! Rust's allocation-failure handler ends the process, which the server reports
//! as the execution's memory budget being exceeded.
//!
//! The server itself never counts: each allocation then costs one relaxed load
//! of a flag that never changes.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};

static COUNTING: AtomicBool = AtomicBool::new(false);
/// Bytes allocated since counting began (frees of older memory may take it below 0).
static USED: AtomicIsize = AtomicIsize::new(0);
/// Most bytes `USED` may reach; 0 = no limit.
static LIMIT: AtomicIsize = AtomicIsize::new(0);

/// Wraps an allocator with the counter.
pub struct Counting<A>(pub A);

impl<A> Counting<A> {
    fn reserve(size: usize) -> bool {
        if !COUNTING.load(Ordering::Relaxed) {
            return true;
        }
        let size = size as isize;
        let used = USED.fetch_add(size, Ordering::Relaxed) + size;
        let limit = LIMIT.load(Ordering::Relaxed);
        if limit > 0 && used > limit {
            USED.fetch_sub(size, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn release(size: usize) {
        if COUNTING.load(Ordering::Relaxed) {
            USED.fetch_sub(size as isize, Ordering::Relaxed);
        }
    }

    /// Runs `alloc` for `size` new bytes if the counter lets them be taken,
    /// giving them back when the allocation fails.
    #[inline(always)]
    fn counted(size: usize, alloc: impl FnOnce() -> *mut u8) -> *mut u8 {
        if !Self::reserve(size) {
            return std::ptr::null_mut();
        }
        let p = alloc();
        if p.is_null() {
            Self::release(size);
        }
        p
    }
}

// SAFETY: every call is passed on unchanged to the wrapped allocator; the
// counter only decides whether an allocation is attempted at all (failing it
// with null, which the GlobalAlloc contract allows).
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as the caller's contract.
        Self::counted(layout.size(), || unsafe { self.0.alloc(layout) })
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as the caller's contract.
        Self::counted(layout.size(), || unsafe { self.0.alloc_zeroed(layout) })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as the caller's contract.
        unsafe { self.0.dealloc(ptr, layout) };
        Self::release(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = layout.size();
        if new_size > old && !Self::reserve(new_size - old) {
            return std::ptr::null_mut();
        }
        // SAFETY: as the caller's contract.
        let p = unsafe { self.0.realloc(ptr, layout, new_size) };
        if p.is_null() {
            if new_size > old {
                Self::release(new_size - old);
            }
        } else if new_size < old {
            Self::release(old - new_size);
        }
        p
    }
}

/// Starts counting (a worker process, at its start).
pub(super) fn start_counting() {
    COUNTING.store(true, Ordering::Relaxed);
}

/// Bytes allocated now (since counting began).
pub(super) fn used() -> isize {
    USED.load(Ordering::Relaxed)
}

/// Allocations past `used() + bytes` fail from now on; `None` lifts the limit.
pub(super) fn limit_to(bytes: Option<u64>) {
    let limit = match bytes {
        Some(b) => used()
            .max(0)
            .saturating_add(isize::try_from(b).unwrap_or(isize::MAX))
            .max(1),
        None => 0,
    };
    LIMIT.store(limit, Ordering::Relaxed);
}
