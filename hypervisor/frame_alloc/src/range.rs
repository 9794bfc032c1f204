//! Half-open physical address ranges.

use core::fmt;

/// Size of one physical frame in bytes (4 KiB).
pub const FRAME_SIZE: u64 = 4096;

/// The first MiB of physical memory (real-mode IVT, BIOS data, EBDA, option ROMs, the
/// Multiboot trampoline). Callers put it in the reserved list so it is never handed out.
pub const LOW_MEMORY: PhysRange = PhysRange::new(0, 0x10_0000);

/// A half-open range `start..end` of physical addresses.
///
/// A range with `end <= start` is empty; every helper treats it as containing nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PhysRange {
    /// First address in the range.
    pub start: u64,
    /// First address after the range.
    pub end: u64,
}

impl PhysRange {
    /// The range `start..end` (empty if `end <= start`).
    #[must_use]
    pub const fn new(start: u64, end: u64) -> Self {
        Self { start, end }
    }

    /// The range of `len` bytes starting at `start`, or `None` if it would wrap around.
    #[must_use]
    pub const fn from_start_len(start: u64, len: u64) -> Option<Self> {
        match start.checked_add(len) {
            Some(end) => Some(Self { start, end }),
            None => None,
        }
    }

    /// Whether the range contains no address.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// Length in bytes (0 for an empty range).
    #[must_use]
    pub const fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Number of whole frames the range spans, assuming it is frame-aligned.
    #[must_use]
    pub const fn frame_count(&self) -> u64 {
        self.len() / FRAME_SIZE
    }

    /// Whether `addr` lies inside the range.
    #[must_use]
    pub const fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }

    /// Whether the two ranges share at least one address.
    #[must_use]
    pub const fn overlaps(&self, other: &PhysRange) -> bool {
        !self.is_empty() && !other.is_empty() && self.start < other.end && other.start < self.end
    }

    /// The largest frame-aligned range inside `self`: start rounded up, end rounded down to
    /// 4 KiB. `None` if no whole frame fits.
    #[must_use]
    pub const fn align_inward(&self) -> Option<PhysRange> {
        let Some(start) = align_up(self.start, FRAME_SIZE) else {
            return None;
        };
        let end = align_down(self.end, FRAME_SIZE);
        if end > start {
            Some(PhysRange { start, end })
        } else {
            None
        }
    }

    /// The smallest frame-aligned range covering `self`: start rounded down, end rounded up
    /// (clamped to the last frame boundary below 2^64). Empty ranges stay empty.
    #[must_use]
    pub const fn align_outward(&self) -> PhysRange {
        if self.is_empty() {
            return PhysRange { start: 0, end: 0 };
        }
        let end = match align_up(self.end, FRAME_SIZE) {
            Some(end) => end,
            None => align_down(u64::MAX, FRAME_SIZE),
        };
        PhysRange {
            start: align_down(self.start, FRAME_SIZE),
            end,
        }
    }
}

impl fmt::Debug for PhysRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}..{:#x}", self.start, self.end)
    }
}

impl fmt::Display for PhysRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// `value` rounded up to a multiple of `align` (a power of two), or `None` on overflow.
pub(crate) const fn align_up(value: u64, align: u64) -> Option<u64> {
    match value.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

/// `value` rounded down to a multiple of `align` (a power of two).
pub(crate) const fn align_down(value: u64, align: u64) -> u64 {
    value & !(align - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn len_and_emptiness() {
        assert_eq!(PhysRange::new(0x1000, 0x3000).len(), 0x2000);
        assert_eq!(PhysRange::new(0x3000, 0x1000).len(), 0);
        assert!(PhysRange::new(5, 5).is_empty());
        assert!(PhysRange::new(6, 5).is_empty());
        assert_eq!(PhysRange::from_start_len(u64::MAX, 2), None);
        assert_eq!(
            PhysRange::from_start_len(0x1000, 0x1000),
            Some(PhysRange::new(0x1000, 0x2000))
        );
    }

    #[test]
    fn contains_is_half_open() {
        let r = PhysRange::new(0x1000, 0x2000);
        assert!(r.contains(0x1000));
        assert!(r.contains(0x1fff));
        assert!(!r.contains(0x2000));
        assert!(!r.contains(0xfff));
    }

    #[test]
    fn overlaps_excludes_touching_and_empty() {
        let a = PhysRange::new(0x1000, 0x2000);
        assert!(a.overlaps(&PhysRange::new(0x1fff, 0x3000)));
        assert!(!a.overlaps(&PhysRange::new(0x2000, 0x3000)));
        assert!(!a.overlaps(&PhysRange::new(0x1800, 0x1800)));
        assert!(a.overlaps(&PhysRange::new(0, u64::MAX)));
    }

    #[test]
    fn align_inward_rounds_towards_the_middle() {
        assert_eq!(
            PhysRange::new(0x1001, 0x5fff).align_inward(),
            Some(PhysRange::new(0x2000, 0x5000))
        );
        assert_eq!(PhysRange::new(0x1001, 0x2fff).align_inward(), None);
        assert_eq!(PhysRange::new(u64::MAX - 10, u64::MAX).align_inward(), None);
        assert_eq!(
            PhysRange::new(0, u64::MAX).align_inward(),
            Some(PhysRange::new(0, 0xffff_ffff_ffff_f000))
        );
    }

    #[test]
    fn align_outward_rounds_away_and_clamps() {
        assert_eq!(
            PhysRange::new(0x1001, 0x2001).align_outward(),
            PhysRange::new(0x1000, 0x3000)
        );
        assert_eq!(
            PhysRange::new(0x1000, u64::MAX).align_outward(),
            PhysRange::new(0x1000, 0xffff_ffff_ffff_f000)
        );
        assert!(PhysRange::new(9, 3).align_outward().is_empty());
    }
}
