//! Address-space identifiers and TLB control (AMD APM vol. 2, 15.16).
//!
//! Every guest runs with a non-zero ASID (0 is the host's), so its TLB entries survive
//! world switches. An ASID may hold stale translations from an earlier owner or from nested
//! mappings that changed, so the first VMRUN after allocation, and the first VMRUN after any
//! change of a partition's nested page tables, must flush that ASID through TLB_CONTROL.

use core::num::NonZeroU32;

use thiserror::Error;

/// A guest ASID: never 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Asid(NonZeroU32);

impl Asid {
    /// `Some` unless `raw` is 0.
    pub const fn new(raw: u32) -> Option<Self> {
        match NonZeroU32::new(raw) {
            Some(n) => Some(Self(n)),
            None => None,
        }
    }

    /// The value for the VMCB's guest ASID field.
    pub const fn get(self) -> u32 {
        self.0.get()
    }
}

/// The VMCB's TLB_CONTROL byte: what the CPU flushes on VMRUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TlbControl {
    /// Flush nothing.
    DoNothing = 0,
    /// Flush the entire TLB, every ASID (the only flush on CPUs without FlushByAsid).
    FlushAll = 1,
    /// Flush this guest's entries (needs FlushByAsid).
    FlushAsid = 3,
    /// Flush this guest's non-global entries (needs FlushByAsid).
    FlushAsidNonGlobal = 7,
}

impl TlbControl {
    /// Decodes TLB_CONTROL; other values are reserved.
    pub const fn from_raw(raw: u8) -> Option<Self> {
        match raw {
            0 => Some(Self::DoNothing),
            1 => Some(Self::FlushAll),
            3 => Some(Self::FlushAsid),
            7 => Some(Self::FlushAsidNonGlobal),
            _ => None,
        }
    }

    /// The flush that removes all of one guest's translations: this ASID only if the CPU has
    /// FlushByAsid (CPUID Fn8000_000A EDX bit 6), otherwise everything.
    pub const fn flush_guest(flush_by_asid: bool) -> Self {
        if flush_by_asid {
            Self::FlushAsid
        } else {
            Self::FlushAll
        }
    }

    /// Whether this value needs the FlushByAsid feature.
    pub const fn needs_flush_by_asid(self) -> bool {
        matches!(self, Self::FlushAsid | Self::FlushAsidNonGlobal)
    }
}

/// Why an ASID operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AsidError {
    /// Every usable ASID is in use.
    #[error("No free ASID")]
    Exhausted,
    /// The ASID is outside what this allocator hands out.
    #[error("ASID {0} is out of range")]
    OutOfRange(u32),
    /// The ASID is not currently allocated (double free).
    #[error("ASID {0} is not allocated")]
    NotAllocated(u32),
}

/// A freshly allocated ASID and the TLB_CONTROL its first VMRUN must use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsidGrant {
    /// The ASID.
    pub asid: Asid,
    /// TLB_CONTROL for the first VMRUN with this ASID (clears a previous owner's entries).
    pub first_run: TlbControl,
}

const WORDS: usize = 64;

/// Hands out ASIDs 1..`nasid` (at most [`AsidAllocator::MAX_ASIDS`] - 1 of them), next-fit
/// so that a freed ASID is reused as late as possible. No heap; 512 bytes of bitmap.
#[derive(Debug, Clone)]
pub struct AsidAllocator {
    used: [u64; WORDS],
    /// One past the highest ASID handed out.
    limit: u32,
    /// Where the next search starts.
    cursor: u32,
    in_use: u32,
    flush_by_asid: bool,
}

impl AsidAllocator {
    /// Largest `nasid` the allocator uses; a CPU reporting more gets this many.
    pub const MAX_ASIDS: u32 = (WORDS * 64) as u32;

    /// An allocator for a CPU with `nasid` ASIDs (CPUID Fn8000_000A EBX) and, if
    /// `flush_by_asid`, per-ASID TLB flushes. ASID 0 is never handed out.
    pub const fn new(nasid: u32, flush_by_asid: bool) -> Self {
        let limit = if nasid > Self::MAX_ASIDS {
            Self::MAX_ASIDS
        } else {
            nasid
        };
        Self {
            used: [0; WORDS],
            limit,
            cursor: 1,
            in_use: 0,
            flush_by_asid,
        }
    }

    /// How many ASIDs can be allocated at once.
    pub const fn capacity(&self) -> u32 {
        self.limit.saturating_sub(1)
    }

    /// How many ASIDs are allocated.
    pub const fn in_use(&self) -> u32 {
        self.in_use
    }

    /// Whether `asid` is currently allocated.
    pub fn is_allocated(&self, asid: Asid) -> bool {
        let n = asid.get();
        n < self.limit && self.bit(n)
    }

    /// Allocates an ASID. Its first VMRUN must use [`AsidGrant::first_run`].
    pub fn allocate(&mut self) -> Result<AsidGrant, AsidError> {
        let capacity = self.capacity();
        if self.in_use >= capacity {
            return Err(AsidError::Exhausted);
        }
        let mut candidate = self.cursor;
        // At most `capacity` probes: the loop always ends.
        for _ in 0..capacity {
            if candidate == 0 || candidate >= self.limit {
                candidate = 1;
            }
            if !self.bit(candidate) {
                self.set_bit(candidate, true);
                self.in_use += 1;
                self.cursor = candidate + 1;
                let asid = Asid::new(candidate).ok_or(AsidError::OutOfRange(0))?;
                return Ok(AsidGrant {
                    asid,
                    first_run: self.flush(),
                });
            }
            candidate += 1;
        }
        Err(AsidError::Exhausted)
    }

    /// Returns `asid` to the pool.
    pub fn free(&mut self, asid: Asid) -> Result<(), AsidError> {
        let n = asid.get();
        if n >= self.limit {
            return Err(AsidError::OutOfRange(n));
        }
        if !self.bit(n) {
            return Err(AsidError::NotAllocated(n));
        }
        self.set_bit(n, false);
        self.in_use -= 1;
        Ok(())
    }

    /// TLB_CONTROL for the next VMRUN of a partition whose nested mappings changed (a page
    /// unmapped or its permissions reduced).
    pub const fn on_mapping_change(&self) -> TlbControl {
        self.flush()
    }

    const fn flush(&self) -> TlbControl {
        TlbControl::flush_guest(self.flush_by_asid)
    }

    fn bit(&self, n: u32) -> bool {
        let (word, bit) = (n as usize / 64, n % 64);
        self.used.get(word).is_some_and(|w| w & (1 << bit) != 0)
    }

    fn set_bit(&mut self, n: u32, on: bool) {
        let (word, bit) = (n as usize / 64, n % 64);
        if let Some(w) = self.used.get_mut(word) {
            if on {
                *w |= 1 << bit;
            } else {
                *w &= !(1 << bit);
            }
        }
    }
}
