//! Shared pieces of the vmount fuzz targets.
//!
//! [`Counting`] is a global allocator that remembers the largest single allocation made
//! since the last [`take_largest`], so a target can assert that no input, whatever
//! lengths it announces, makes the code under test allocate more than a bound. libFuzzer's
//! own `-malloc_limit_mb` only works in megabytes and kills the process without saying
//! which allocation it was; this check runs after each input and names the size.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

static LARGEST: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, recording the largest request.
pub struct Counting;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// only addition is a relaxed atomic update, which cannot allocate or unwind.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc` is passed on unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc_zeroed` is passed on unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: the caller's contract for `realloc` is passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// The largest single allocation since the last call, and resets it.
pub fn take_largest() -> usize {
    LARGEST.swap(0, Ordering::Relaxed)
}

/// The most any one allocation may take while a record is handled: the record reader
/// holds at most `MAX_RECORD` bytes and a reply at most `MAX_REPLY`, and a `Vec` growing
/// to either may reserve up to twice that. Announced lengths (a 4 GiB opaque, a 2 GiB
/// record mark, a READ of `u32::MAX` bytes) must never show up here.
pub const NFS_ALLOC_LIMIT: usize = 4 << 20;
