//! The set of frames that may be handed out: usable memory minus reserved ranges.

use core::fmt;

use crate::range::{FRAME_SIZE, PhysRange};

/// Largest number of separate regions a [`MemoryRegions`] (and so a frame allocator) holds.
pub const MAX_REGIONS: usize = 128;

/// Bits in one bitmap word.
pub(crate) const BITS_PER_WORD: u64 = u64::BITS as u64;

/// Why a region set or an allocator could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The memory map splits into more than [`MAX_REGIONS`] separate pieces.
    #[error("Memory map has more than {MAX_REGIONS} separate regions")]
    TooManyRegions,
    /// No whole usable frame is left (or none large enough for the bitmap).
    #[error("No usable memory left")]
    NoMemory,
    /// The bitmap storage handed to the allocator is shorter than needed.
    #[error("Bitmap has {provided} words, {needed} needed")]
    BitmapTooSmall {
        /// Words the regions need.
        needed: usize,
        /// Words supplied.
        provided: usize,
    },
    /// The bitmap size does not fit in `usize`.
    #[error("Memory too large to index")]
    TooLarge,
}

/// Where to put the allocator's own bitmap, chosen by [`MemoryRegions::plan_bitmap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BitmapPlan {
    /// Frame-aligned physical range to hold the bitmap. Reserve it (see
    /// [`MemoryRegions::reserve`]) before building the allocator, so it is not handed out.
    pub range: PhysRange,
    /// Number of `u64` words the bitmap needs. Reserving `range` never increases it.
    pub words: usize,
}

/// A sorted set of disjoint, non-adjacent, frame-aligned physical ranges: the memory a frame
/// allocator manages. Fixed capacity ([`MAX_REGIONS`]), no heap.
///
/// Built from the boot memory map's usable ranges (overlapping or touching ones are merged)
/// minus reserved ranges (hypervisor image, boot modules, boot information, [`LOW_MEMORY`]
/// and so on). Partial frames at the edges of what is left are dropped: a frame is managed
/// only if it lies wholly inside usable memory and touches no reserved byte.
///
/// [`LOW_MEMORY`]: crate::LOW_MEMORY
#[derive(Clone)]
pub struct MemoryRegions {
    ranges: [PhysRange; MAX_REGIONS],
    len: usize,
}

impl MemoryRegions {
    /// An empty set.
    #[must_use]
    pub const fn empty() -> Self {
        Self {
            ranges: [PhysRange::new(0, 0); MAX_REGIONS],
            len: 0,
        }
    }

    /// Usable memory minus reserved memory, trimmed to whole frames.
    ///
    /// # Errors
    /// [`BuildError::TooManyRegions`] if the result (or the merged usable set on the way)
    /// has more than [`MAX_REGIONS`] pieces.
    pub fn new(usable: &[PhysRange], reserved: &[PhysRange]) -> Result<Self, BuildError> {
        let mut set = Self::empty();
        for range in usable {
            set.union(*range)?;
        }
        set.trim_to_frames();
        for range in reserved {
            set.reserve(*range)?;
        }
        Ok(set)
    }

    /// Removes `range` (widened to whole frames) from the set.
    ///
    /// # Errors
    /// [`BuildError::TooManyRegions`] if this splits a region and the set is full; the set
    /// is then unchanged.
    pub fn reserve(&mut self, range: PhysRange) -> Result<(), BuildError> {
        let cut = range.align_outward();
        if cut.is_empty() {
            return Ok(());
        }
        // Regions touched by `cut` form one run `first..last` because the set is sorted.
        let first = self.ranges().partition_point(|r| r.end <= cut.start);
        let last = self.ranges().partition_point(|r| r.start < cut.end);
        if first >= last {
            return Ok(());
        }
        let left = PhysRange::new(self.ranges[first].start, cut.start);
        let right = PhysRange::new(cut.end, self.ranges[last - 1].end);
        let mut pieces = [PhysRange::default(); 2];
        let mut count = 0;
        for piece in [left, right] {
            if !piece.is_empty() {
                pieces[count] = piece;
                count += 1;
            }
        }
        self.splice(first, last, &pieces[..count])
    }

    /// The regions, lowest address first.
    pub fn iter(&self) -> impl Iterator<Item = PhysRange> + '_ {
        self.ranges().iter().copied()
    }

    /// Number of regions.
    #[must_use]
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no managed frame at all.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Total number of frames in all regions.
    #[must_use]
    pub fn total_frames(&self) -> u64 {
        self.iter().map(|r| r.frame_count()).sum()
    }

    /// Number of `u64` bitmap words an allocator over these regions needs (each region
    /// starts on a word boundary).
    ///
    /// # Errors
    /// [`BuildError::TooLarge`] if the count does not fit in `usize`.
    pub fn bitmap_words(&self) -> Result<usize, BuildError> {
        let mut words: u64 = 0;
        for r in self.iter() {
            words = words
                .checked_add(r.frame_count().div_ceil(BITS_PER_WORD))
                .ok_or(BuildError::TooLarge)?;
        }
        usize::try_from(words).map_err(|_| BuildError::TooLarge)
    }

    /// Picks where the allocator's bitmap goes: the first frames of the lowest region large
    /// enough. Because the bitmap is carved from the *start* of a region, reserving
    /// [`BitmapPlan::range`] afterwards never splits a region and never raises the word
    /// count, so [`BitmapPlan::words`] stays sufficient.
    ///
    /// # Errors
    /// [`BuildError::NoMemory`] if there is no memory or no region can hold the bitmap;
    /// [`BuildError::TooLarge`] as for [`bitmap_words`](Self::bitmap_words).
    pub fn plan_bitmap(&self) -> Result<BitmapPlan, BuildError> {
        let words = self.bitmap_words()?;
        if words == 0 {
            return Err(BuildError::NoMemory);
        }
        let bytes = u64::try_from(words)
            .ok()
            .and_then(|w| w.checked_mul(8))
            .ok_or(BuildError::TooLarge)?;
        let frames = bytes.div_ceil(FRAME_SIZE);
        let region = self
            .iter()
            .find(|r| r.frame_count() >= frames)
            .ok_or(BuildError::NoMemory)?;
        // Cannot overflow: the region holds at least `frames` frames.
        let range = PhysRange::new(region.start, region.start + frames * FRAME_SIZE);
        Ok(BitmapPlan { range, words })
    }

    fn ranges(&self) -> &[PhysRange] {
        &self.ranges[..self.len]
    }

    /// Adds `range` to the set, merging it with every region it overlaps or touches.
    fn union(&mut self, range: PhysRange) -> Result<(), BuildError> {
        if range.is_empty() {
            return Ok(());
        }
        let first = self.ranges().partition_point(|r| r.end < range.start);
        let last = self.ranges().partition_point(|r| r.start <= range.end);
        let mut merged = range;
        if first < last {
            merged.start = merged.start.min(self.ranges[first].start);
            merged.end = merged.end.max(self.ranges[last - 1].end);
        }
        self.splice(first, last, &[merged])
    }

    /// Shrinks every region to whole frames and drops regions left empty.
    fn trim_to_frames(&mut self) {
        let mut kept = 0;
        for i in 0..self.len {
            if let Some(r) = self.ranges[i].align_inward() {
                self.ranges[kept] = r;
                kept += 1;
            }
        }
        self.len = kept;
    }

    /// Replaces regions `first..last` by `with` (at most two ranges), keeping the order.
    fn splice(&mut self, first: usize, last: usize, with: &[PhysRange]) -> Result<(), BuildError> {
        let removed = last - first;
        let new_len = self.len - removed + with.len();
        if new_len > MAX_REGIONS {
            return Err(BuildError::TooManyRegions);
        }
        self.ranges.copy_within(last..self.len, first + with.len());
        self.ranges[first..first + with.len()].copy_from_slice(with);
        self.len = new_len;
        Ok(())
    }
}

impl Default for MemoryRegions {
    fn default() -> Self {
        Self::empty()
    }
}

impl fmt::Debug for MemoryRegions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.ranges()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn r(start: u64, end: u64) -> PhysRange {
        PhysRange::new(start, end)
    }

    fn regions(usable: &[PhysRange], reserved: &[PhysRange]) -> Vec<PhysRange> {
        MemoryRegions::new(usable, reserved)
            .unwrap()
            .iter()
            .collect()
    }

    #[test]
    fn reserved_overlapping_the_start_trims_it() {
        assert_eq!(
            regions(&[r(0x10_0000, 0x20_0000)], &[r(0x8_0000, 0x10_2345)]),
            [r(0x10_3000, 0x20_0000)]
        );
    }

    #[test]
    fn reserved_overlapping_the_end_trims_it() {
        assert_eq!(
            regions(&[r(0x10_0000, 0x20_0000)], &[r(0x1f_f001, 0x30_0000)]),
            [r(0x10_0000, 0x1f_f000)]
        );
    }

    #[test]
    fn reserved_in_the_middle_splits() {
        assert_eq!(
            regions(&[r(0x10_0000, 0x20_0000)], &[r(0x15_0800, 0x15_1800)]),
            [r(0x10_0000, 0x15_0000), r(0x15_2000, 0x20_0000)]
        );
    }

    #[test]
    fn reserved_fully_covering_removes_region() {
        assert_eq!(
            regions(
                &[r(0x10_0000, 0x20_0000), r(0x40_0000, 0x50_0000)],
                &[r(0x10_0000, 0x20_0000)]
            ),
            [r(0x40_0000, 0x50_0000)]
        );
        assert!(
            MemoryRegions::new(&[r(0x10_0000, 0x20_0000)], &[r(0, u64::MAX)])
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn reserved_spanning_several_regions() {
        assert_eq!(
            regions(
                &[r(0x1000, 0x5000), r(0x8000, 0x9000), r(0xa000, 0xf000)],
                &[r(0x3000, 0xb000)]
            ),
            [r(0x1000, 0x3000), r(0xb000, 0xf000)]
        );
    }

    #[test]
    fn unaligned_usable_ranges_are_trimmed_inward() {
        assert_eq!(
            regions(&[r(0x1001, 0x4fff), r(0x6001, 0x7fff)], &[]),
            [r(0x2000, 0x4000)]
        );
    }

    #[test]
    fn adjacent_and_overlapping_usable_ranges_merge_before_trimming() {
        // Neither piece holds a whole frame alone; together they hold one.
        assert_eq!(
            regions(&[r(0x1800, 0x2800), r(0x2800, 0x3800)], &[]),
            [r(0x2000, 0x3000)]
        );
        assert_eq!(
            regions(
                &[r(0x5000, 0x9000), r(0x1000, 0x6000), r(0x8000, 0xa000)],
                &[]
            ),
            [r(0x1000, 0xa000)]
        );
    }

    #[test]
    fn adjacent_reserved_ranges_and_empty_ones() {
        assert_eq!(
            regions(
                &[r(0x1000, 0x9000)],
                &[
                    r(0x2000, 0x3000),
                    r(0x3000, 0x4000),
                    r(0x6000, 0x6000),
                    r(9, 3)
                ]
            ),
            [r(0x1000, 0x2000), r(0x4000, 0x9000)]
        );
    }

    #[test]
    fn too_many_regions_is_an_error_and_leaves_the_set_unchanged() {
        let usable: Vec<_> = (0..MAX_REGIONS as u64)
            .map(|i| r(i * 0x2000, i * 0x2000 + 0x1000))
            .collect();
        let mut set = MemoryRegions::new(&usable, &[]).unwrap();
        assert_eq!(set.len(), MAX_REGIONS);
        assert!(matches!(
            MemoryRegions::new(
                &[usable.as_slice(), &[r(0x1000_0000, 0x1000_1000)]].concat(),
                &[]
            ),
            Err(BuildError::TooManyRegions)
        ));
        // A cut at the edge of a region needs no new slot.
        set.reserve(r(0, 0x1000)).unwrap();
        assert_eq!(set.len(), MAX_REGIONS - 1);
        let mut big = MemoryRegions::new(&[r(0, 0x1000_0000)], &[]).unwrap();
        for i in 0..(MAX_REGIONS as u64 - 1) {
            big.reserve(r(0x1000 + i * 0x2000, 0x2000 + i * 0x2000))
                .unwrap();
        }
        assert_eq!(big.len(), MAX_REGIONS);
        let full: Vec<_> = big.iter().collect();
        assert_eq!(
            big.reserve(r(0x800_0000, 0x800_1000)),
            Err(BuildError::TooManyRegions)
        );
        assert_eq!(big.iter().collect::<Vec<_>>(), full);
    }

    #[test]
    fn bitmap_words_round_up_per_region() {
        let set = MemoryRegions::new(&[r(0, 65 * 4096), r(0x100_0000, 0x100_1000)], &[]).unwrap();
        assert_eq!(set.total_frames(), 66);
        assert_eq!(set.bitmap_words().unwrap(), 3);
    }

    #[test]
    fn bitmap_plan_takes_the_start_of_the_first_region_big_enough() {
        // 16 GiB region needs 4 Mi frames = 64 Ki words = 512 KiB = 128 frames.
        let set =
            MemoryRegions::new(&[r(0x1000, 0x3000), r(0x1_0000_0000, 0x5_0000_0000)], &[]).unwrap();
        let plan = set.plan_bitmap().unwrap();
        assert_eq!(plan.words, 1 + (1 << 16));
        assert_eq!(plan.range, r(0x1_0000_0000, 0x1_0000_0000 + 129 * 4096));
        let mut after = set.clone();
        after.reserve(plan.range).unwrap();
        assert!(after.bitmap_words().unwrap() <= plan.words);
        assert_eq!(after.len(), set.len());
    }

    #[test]
    fn bitmap_plan_without_memory_fails() {
        assert_eq!(
            MemoryRegions::empty().plan_bitmap(),
            Err(BuildError::NoMemory)
        );
    }
}
