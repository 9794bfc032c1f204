//! The bitmap frame allocator.

use core::fmt;

use crate::range::{FRAME_SIZE, PhysRange, align_up};
use crate::regions::{BITS_PER_WORD, BitmapPlan, BuildError, MAX_REGIONS, MemoryRegions};

/// Why a free or contiguous allocation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The address is not 4 KiB aligned.
    #[error("Address {0:#x} is not 4 KiB aligned")]
    Misaligned(u64),
    /// The address (or part of the run starting there) lies outside every managed region.
    #[error("Address {0:#x} is not managed by the allocator")]
    NotManaged(u64),
    /// The frame is free: a double free, or a frame that was never handed out.
    #[error("Frame {0:#x} is not allocated")]
    NotAllocated(u64),
    /// The requested alignment is not a power of two.
    #[error("Alignment {0:#x} is not a power of two")]
    InvalidAlignment(u64),
    /// A run of zero frames was requested.
    #[error("Frame count is zero")]
    ZeroCount,
    /// No free run of the requested size and alignment exists.
    #[error("No free run of frames large enough")]
    OutOfFrames,
}

/// One managed region and where its bits start in the bitmap.
#[derive(Clone, Copy, Default)]
struct Region {
    range: PhysRange,
    /// Index of the region's first bitmap word; every region starts on a word boundary.
    first_word: usize,
}

impl Region {
    /// Global bit index of the region's first frame.
    fn first_bit(&self) -> u64 {
        // Lossless: word indices are below the bitmap length, which fits in `usize` and u64.
        self.first_word as u64 * BITS_PER_WORD
    }
}

/// A bitmap allocator of 4 KiB physical frames.
///
/// One bit per frame (set = allocated), stored in a caller-supplied `&mut [u64]` so the
/// allocator needs no heap. Each region starts on a word boundary; the unused tail bits of a
/// region's last word are permanently set, so word scans never return a frame outside a
/// region. Allocation scans whole words (skipping full ones) from a hint below which every
/// word is full, and always returns the lowest free address (deterministic).
///
/// Bare-metal setup:
/// ```
/// # use frame_alloc::{FrameAllocator, MemoryRegions, PhysRange, LOW_MEMORY};
/// let usable = [PhysRange::new(0, 0x9_f000), PhysRange::new(0x10_0000, 0x800_0000)];
/// let image = PhysRange::new(0x20_0000, 0x40_0000);
/// let mut regions = MemoryRegions::new(&usable, &[LOW_MEMORY, image])?;
/// let plan = regions.plan_bitmap()?;
/// regions.reserve(plan.range)?; // the bitmap's frames are never handed out
/// // On bare metal the storage is `plan.words` words at `plan.range.start`.
/// let mut storage = vec![0u64; plan.words];
/// let mut frames = FrameAllocator::new(&regions, &mut storage)?;
/// let frame = frames.allocate().expect("memory left");
/// assert!(!plan.range.contains(frame) && !image.contains(frame));
/// # Ok::<(), frame_alloc::BuildError>(())
/// ```
pub struct FrameAllocator<'a> {
    bitmap: &'a mut [u64],
    /// Words of `bitmap` in use (the rest is ignored).
    words: usize,
    regions: [Region; MAX_REGIONS],
    region_count: usize,
    total: u64,
    free: u64,
    /// Every word below this index is full.
    hint: usize,
}

impl<'a> FrameAllocator<'a> {
    /// Builds an allocator managing `regions`, with every frame free, using `bitmap` as
    /// storage. The bitmap's previous contents do not matter; words past
    /// [`MemoryRegions::bitmap_words`] are left untouched.
    ///
    /// # Errors
    /// [`BuildError::BitmapTooSmall`] if `bitmap` is shorter than the regions need;
    /// [`BuildError::TooLarge`] if the size does not fit in `usize`.
    pub fn new(regions: &MemoryRegions, bitmap: &'a mut [u64]) -> Result<Self, BuildError> {
        let needed = regions.bitmap_words()?;
        if bitmap.len() < needed {
            return Err(BuildError::BitmapTooSmall {
                needed,
                provided: bitmap.len(),
            });
        }
        let mut table = [Region::default(); MAX_REGIONS];
        let mut word = 0usize;
        let mut total = 0u64;
        for (slot, range) in table.iter_mut().zip(regions.iter()) {
            *slot = Region {
                range,
                first_word: word,
            };
            let frames = range.frame_count();
            // Cannot overflow: the sums were checked by `bitmap_words`.
            let region_words = frames.div_ceil(BITS_PER_WORD) as usize;
            let words = &mut bitmap[word..word + region_words];
            words.fill(0);
            let tail = frames % BITS_PER_WORD;
            if let Some(last) = words.last_mut()
                && tail != 0
            {
                *last = !0u64 << tail;
            }
            word += region_words;
            total += frames;
        }
        Ok(Self {
            bitmap,
            words: needed,
            regions: table,
            region_count: regions.len(),
            total,
            free: total,
            hint: 0,
        })
    }

    /// [`new`](Self::new) over `usable` minus `reserved` (see [`MemoryRegions::new`]).
    ///
    /// # Errors
    /// As [`MemoryRegions::new`] and [`new`](Self::new).
    pub fn from_map(
        usable: &[PhysRange],
        reserved: &[PhysRange],
        bitmap: &'a mut [u64],
    ) -> Result<Self, BuildError> {
        Self::new(&MemoryRegions::new(usable, reserved)?, bitmap)
    }

    /// Bitmap words an allocator over `usable` minus `reserved` needs.
    ///
    /// # Errors
    /// As [`MemoryRegions::new`] and [`MemoryRegions::bitmap_words`].
    pub fn bitmap_words_needed(
        usable: &[PhysRange],
        reserved: &[PhysRange],
    ) -> Result<usize, BuildError> {
        MemoryRegions::new(usable, reserved)?.bitmap_words()
    }

    /// Where to put the bitmap for `usable` minus `reserved`. Add [`BitmapPlan::range`] to
    /// the reserved list before building the allocator; [`BitmapPlan::words`] is then enough.
    ///
    /// # Errors
    /// As [`MemoryRegions::new`] and [`MemoryRegions::plan_bitmap`].
    pub fn plan(usable: &[PhysRange], reserved: &[PhysRange]) -> Result<BitmapPlan, BuildError> {
        MemoryRegions::new(usable, reserved)?.plan_bitmap()
    }

    /// Allocates one frame and returns its physical address (lowest free first), or `None`
    /// when memory is exhausted. The frame's contents are whatever was there before.
    pub fn allocate(&mut self) -> Option<u64> {
        let start = self.hint;
        for w in start..self.words {
            let word = self.bitmap[w];
            if word != u64::MAX {
                let bit = u64::from(word.trailing_ones());
                self.bitmap[w] = word | (1 << bit);
                self.free -= 1;
                self.hint = w;
                return Some(self.address_of(w as u64 * BITS_PER_WORD + bit));
            }
        }
        self.hint = self.words;
        None
    }

    /// Allocates `count` physically contiguous frames whose first address is a multiple of
    /// `align` bytes (a power of two; values below 4 KiB mean 4 KiB). Returns the lowest
    /// suitable address. A run never spans two regions.
    ///
    /// # Errors
    /// [`FrameError::ZeroCount`], [`FrameError::InvalidAlignment`], or
    /// [`FrameError::OutOfFrames`] if no such run is free.
    pub fn allocate_contiguous(&mut self, count: u64, align: u64) -> Result<u64, FrameError> {
        if count == 0 {
            return Err(FrameError::ZeroCount);
        }
        if !align.is_power_of_two() {
            return Err(FrameError::InvalidAlignment(align));
        }
        let align = align.max(FRAME_SIZE);
        if count > self.free {
            return Err(FrameError::OutOfFrames);
        }
        let bytes = count
            .checked_mul(FRAME_SIZE)
            .ok_or(FrameError::OutOfFrames)?;
        for region in &self.regions[..self.region_count] {
            let mut candidate = align_up(region.range.start, align);
            while let Some(start) = candidate {
                match start.checked_add(bytes) {
                    Some(end) if end <= region.range.end => {}
                    _ => break,
                }
                let from = region.first_bit() + (start - region.range.start) / FRAME_SIZE;
                match self.find_bit(from, from + count, true) {
                    None => {
                        self.fill_bits(from, from + count, true);
                        self.free -= count;
                        return Ok(start);
                    }
                    Some(used) => {
                        // Resume after the allocated frame that blocked this candidate.
                        let after = (used + 1 - region.first_bit()) * FRAME_SIZE;
                        candidate = align_up(region.range.start + after, align);
                    }
                }
            }
        }
        Err(FrameError::OutOfFrames)
    }

    /// Returns the frame at `addr` to the allocator.
    ///
    /// # Errors
    /// [`FrameError::Misaligned`], [`FrameError::NotManaged`], or
    /// [`FrameError::NotAllocated`] for a double free; the allocator is unchanged on error.
    pub fn free(&mut self, addr: u64) -> Result<(), FrameError> {
        self.free_contiguous(addr, 1)
    }

    /// Returns `count` contiguous frames starting at `addr`. Either all are freed or, on
    /// error, none.
    ///
    /// # Errors
    /// [`FrameError::ZeroCount`], [`FrameError::Misaligned`], [`FrameError::NotManaged`]
    /// (naming the first address outside the region), or [`FrameError::NotAllocated`]
    /// (naming the first free frame in the run).
    pub fn free_contiguous(&mut self, addr: u64, count: u64) -> Result<(), FrameError> {
        if count == 0 {
            return Err(FrameError::ZeroCount);
        }
        let (region, from) = self.locate(addr)?;
        let end_frame = region.range.frame_count();
        let first_frame = from - region.first_bit();
        match first_frame.checked_add(count) {
            Some(end) if end <= end_frame => {}
            _ => return Err(FrameError::NotManaged(region.range.end)),
        }
        if let Some(free_bit) = self.find_bit(from, from + count, false) {
            return Err(FrameError::NotAllocated(self.address_of(free_bit)));
        }
        self.fill_bits(from, from + count, false);
        self.free += count;
        // Lossless: bit indices are below the bitmap length in bits.
        self.hint = self.hint.min((from / BITS_PER_WORD) as usize);
        Ok(())
    }

    /// Whether the frame at `addr` is currently allocated.
    ///
    /// # Errors
    /// [`FrameError::Misaligned`] or [`FrameError::NotManaged`].
    pub fn is_allocated(&self, addr: u64) -> Result<bool, FrameError> {
        let (_, bit) = self.locate(addr)?;
        Ok(self.find_bit(bit, bit + 1, true).is_some())
    }

    /// Number of frames currently free.
    #[must_use]
    pub fn free_frames(&self) -> u64 {
        self.free
    }

    /// Number of frames managed (free or allocated).
    #[must_use]
    pub fn total_frames(&self) -> u64 {
        self.total
    }

    /// The managed regions, lowest address first (for logging).
    pub fn regions(&self) -> impl Iterator<Item = PhysRange> + '_ {
        self.regions[..self.region_count].iter().map(|r| r.range)
    }

    /// The region holding `addr` and the frame's global bit index.
    fn locate(&self, addr: u64) -> Result<(Region, u64), FrameError> {
        if !addr.is_multiple_of(FRAME_SIZE) {
            return Err(FrameError::Misaligned(addr));
        }
        let regions = &self.regions[..self.region_count];
        let i = regions.partition_point(|r| r.range.end <= addr);
        match regions.get(i) {
            Some(r) if r.range.contains(addr) => {
                Ok((*r, r.first_bit() + (addr - r.range.start) / FRAME_SIZE))
            }
            _ => Err(FrameError::NotManaged(addr)),
        }
    }

    /// Physical address of the frame with global bit index `bit` (must be a region's frame).
    fn address_of(&self, bit: u64) -> u64 {
        let regions = &self.regions[..self.region_count];
        // At least 1: the first region starts at word 0 and `bit` is inside the bitmap.
        let i = regions.partition_point(|r| r.first_bit() <= bit) - 1;
        let r = &regions[i];
        r.range.start + (bit - r.first_bit()) * FRAME_SIZE
    }

    /// The lowest bit in `from..to` equal to `value`, scanning word by word.
    fn find_bit(&self, from: u64, to: u64, value: bool) -> Option<u64> {
        let mut w = from / BITS_PER_WORD;
        while w * BITS_PER_WORD < to {
            // Lossless: `w` indexes a word inside the bitmap.
            let word = self.bitmap[w as usize];
            let word = if value { word } else { !word };
            let hits = word & word_mask(w, from, to);
            if hits != 0 {
                return Some(w * BITS_PER_WORD + u64::from(hits.trailing_zeros()));
            }
            w += 1;
        }
        None
    }

    /// Sets every bit in `from..to` to `value`.
    fn fill_bits(&mut self, from: u64, to: u64, value: bool) {
        let mut w = from / BITS_PER_WORD;
        while w * BITS_PER_WORD < to {
            let mask = word_mask(w, from, to);
            // Lossless: `w` indexes a word inside the bitmap.
            let word = &mut self.bitmap[w as usize];
            if value {
                *word |= mask;
            } else {
                *word &= !mask;
            }
            w += 1;
        }
    }
}

/// The bits of word `w` whose global index lies in `from..to`.
fn word_mask(w: u64, from: u64, to: u64) -> u64 {
    let base = w * BITS_PER_WORD;
    let lo = from.saturating_sub(base);
    let hi = to.saturating_sub(base).min(BITS_PER_WORD);
    let below_hi = if hi == BITS_PER_WORD {
        u64::MAX
    } else {
        (1u64 << hi) - 1
    };
    let below_lo = if lo >= BITS_PER_WORD {
        u64::MAX
    } else {
        (1u64 << lo) - 1
    };
    below_hi & !below_lo
}

impl fmt::Debug for FrameAllocator<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Ranges<'r>(&'r [Region]);
        impl fmt::Debug for Ranges<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list()
                    .entries(self.0.iter().map(|r| r.range))
                    .finish()
            }
        }
        f.debug_struct("FrameAllocator")
            .field("regions", &Ranges(&self.regions[..self.region_count]))
            .field("total_frames", &self.total)
            .field("free_frames", &self.free)
            .finish_non_exhaustive()
    }
}
