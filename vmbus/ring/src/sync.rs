//! The atomics the ring protocol uses: `core`'s normally, loom's under `--cfg loom` so the loom
//! tests check the real reader and writer code.

use core::sync::atomic::Ordering;
#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicU32, fence};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, fence};

/// `order` made valid for a load: a store-only ordering becomes `SeqCst` (stronger, never
/// weaker), so a caller's mistake costs a fence instead of a panic.
pub(crate) fn for_load(order: Ordering) -> Ordering {
    match order {
        Ordering::Release | Ordering::AcqRel => Ordering::SeqCst,
        other => other,
    }
}

/// `order` made valid for a store: a load-only ordering becomes `SeqCst`.
pub(crate) fn for_store(order: Ordering) -> Ordering {
    match order {
        Ordering::Acquire | Ordering::AcqRel => Ordering::SeqCst,
        other => other,
    }
}

/// One 8-byte word of an in-process data area.
///
/// Normally a relaxed `AtomicU64`: the peer may write the data area concurrently (a hostile peer
/// may even write the part we are reading), and atomic accesses keep that defined behaviour. The
/// index protocol (Release store of an index, Acquire load by the peer) orders the data.
#[cfg(not(loom))]
#[derive(Debug, Default)]
pub(crate) struct DataWord(core::sync::atomic::AtomicU64);

#[cfg(not(loom))]
impl DataWord {
    pub(crate) fn load(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    pub(crate) fn store(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }
}

/// Under loom a data word is a loom `UnsafeCell`: loom then reports any access to the data area
/// that the index protocol does not order (a data race), which is exactly what the model checks.
#[cfg(loom)]
#[derive(Debug)]
pub(crate) struct DataWord(loom::cell::UnsafeCell<u64>);

#[cfg(loom)]
impl Default for DataWord {
    fn default() -> Self {
        Self(loom::cell::UnsafeCell::new(0))
    }
}

// SAFETY: every access goes through loom's `UnsafeCell::with`/`with_mut`, which track causality
// and fail the model on any unsynchronised concurrent access; sharing across threads is what the
// model exists to check.
#[cfg(loom)]
#[allow(unsafe_code)]
unsafe impl Sync for DataWord {}

#[cfg(loom)]
#[allow(unsafe_code)]
impl DataWord {
    pub(crate) fn load(&self) -> u64 {
        // SAFETY: loom checks that no write to this cell is concurrent with this read; the pointer
        // is valid for the duration of the closure.
        self.0.with(|ptr| unsafe { *ptr })
    }

    pub(crate) fn store(&self, value: u64) {
        // SAFETY: loom checks that no other access to this cell is concurrent with this write; the
        // pointer is valid for the duration of the closure.
        self.0.with_mut(|ptr| unsafe { *ptr = value })
    }
}
