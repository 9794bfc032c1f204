//! The one place this crate turns raw shared memory into Rust values: a memory-mapped ring
//! viewed as atomics. Everything else in the crate is `#![deny(unsafe_code)]`.
//!
//! Why atomics: the mapping is shared with another process that may write any byte at any time.
//! Plain loads and stores of such memory would be data races (undefined behaviour) and would let
//! the compiler assume values do not change between two reads. Viewing every word as an atomic
//! makes each access a single well-defined load or store; the ring code then copies what it
//! needs out once and validates the copy.
#![allow(unsafe_code)]

use core::sync::atomic::{AtomicU32, AtomicU64};

use memmap2::MmapRaw;

use crate::wire::CONTROL_PAGE_LEN;

/// A mapping of a control page plus data area, checked once for size and alignment.
#[derive(Debug)]
pub(crate) struct MappedRing {
    map: MmapRaw,
    data_words: usize,
}

impl MappedRing {
    /// Wraps `map`, which must hold the control page plus `data_len` bytes and be 8-byte aligned
    /// (mappings are page aligned). Returns `None` otherwise.
    pub(crate) fn new(map: MmapRaw, data_len: u32) -> Option<Self> {
        let data_len = usize::try_from(data_len).ok()?;
        let needed = data_len.checked_add(CONTROL_PAGE_LEN as usize)?;
        if map.len() < needed
            || map.as_ptr().align_offset(align_of::<AtomicU64>()) != 0
            || !data_len.is_multiple_of(size_of::<AtomicU64>())
        {
            return None;
        }
        Some(Self {
            map,
            data_words: data_len / size_of::<AtomicU64>(),
        })
    }

    /// The control page as 1024 32-bit atomics.
    pub(crate) fn control(&self) -> &[AtomicU32] {
        let ptr = self.map.as_mut_ptr().cast::<AtomicU32>();
        // SAFETY: `new` checked that the mapping holds at least CONTROL_PAGE_LEN bytes and is
        // 8-byte (so also 4-byte) aligned. `AtomicU32` has the size and alignment of `u32` and
        // every bit pattern is valid. The mapping lives as long as `self`, so the slice cannot
        // outlive it. The memory is only ever accessed through atomics in this process; the
        // peer process is outside Rust's memory model and its writes are plain hardware stores,
        // which atomic loads tolerate.
        unsafe { core::slice::from_raw_parts(ptr, CONTROL_PAGE_LEN as usize / 4) }
    }

    /// The data area as 64-bit atomics.
    pub(crate) fn data(&self) -> &[AtomicU64] {
        let base = self
            .map
            .as_mut_ptr()
            .wrapping_add(CONTROL_PAGE_LEN as usize);
        let ptr = base.cast::<AtomicU64>();
        // SAFETY: `new` checked that the mapping holds the control page plus `data_words * 8`
        // bytes and is 8-byte aligned; the data area starts a page (a multiple of 8) in, so `ptr`
        // is in bounds and aligned for `AtomicU64`, which has the layout of `u64` and accepts
        // every bit pattern. The slice borrows `self`, which owns the mapping; all accesses in
        // this process are atomic (see `control`).
        unsafe { core::slice::from_raw_parts(ptr, self.data_words) }
    }
}
