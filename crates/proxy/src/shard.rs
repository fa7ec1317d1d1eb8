//! Per-thread sharding of hot shared state (idle connections, metrics,
//! round-robin positions): each thread that touches a sharded value gets a
//! fixed slot, so the request path writes cache lines no other core is
//! writing.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Slots per sharded value; threads beyond this share slots (still correct).
pub(crate) const SHARDS: usize = 16;

/// This thread's slot, assigned round robin on first use.
pub(crate) fn index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SLOT.with(|s| {
        let slot = s.get();
        if slot != usize::MAX {
            return slot;
        }
        let slot = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
        s.set(slot);
        slot
    })
}

/// A value padded to its own cache lines (128 bytes covers adjacent-line
/// prefetching) so neighbouring shards do not false-share.
#[repr(align(128))]
#[derive(Debug, Default)]
pub(crate) struct Padded<T>(pub T);
