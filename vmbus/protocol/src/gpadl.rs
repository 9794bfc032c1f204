//! GPA ranges: how a GPADL (guest physical address descriptor list) describes memory.
//!
//! A GPADL's range buffer is a sequence of 64-bit words. Each range starts with one word
//! holding `byte_count` (low 32 bits, first on the wire) and `byte_offset` (high 32 bits), then
//! one PFN per 4 KiB page the range touches: `ceil((byte_offset + byte_count) / 4096)`
//! (`struct gpa_range` in include/linux/hyperv.h). The buffer is sent in a GPADL header message
//! and continued in GPADL body messages when it does not fit (see [`crate::gpadl_messages`]).

use alloc::vec::Vec;

/// Page size of the VMBus protocol (`HV_HYP_PAGE_SIZE`), whatever the guest's page size.
pub const PAGE_SIZE: u32 = 4096;

/// Why a GPA range is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// A range of zero bytes.
    #[error("GPA range has a byte count of zero")]
    ZeroByteCount,
    /// The offset into the first page is not inside the page.
    #[error("GPA range byte offset {0} is not below the page size")]
    OffsetOutsidePage(u32),
    /// The PFN list does not have the length the byte count and offset imply.
    #[error("GPA range needs {expected} PFNs, has {actual}")]
    PfnCountMismatch {
        /// PFNs implied by byte offset and count.
        expected: usize,
        /// PFNs present.
        actual: usize,
    },
    /// The range buffer ends inside a range.
    #[error("Range buffer ends inside a range")]
    Truncated,
    /// Words are left over after the last range.
    #[error("Range buffer has {0} words after the last range")]
    TrailingWords(usize),
    /// A GPADL with no range.
    #[error("GPADL has no range")]
    NoRanges,
    /// More ranges than the 16-bit range count can hold.
    #[error("GPADL has more than 65535 ranges")]
    TooManyRanges,
}

/// Number of PFNs a range of `byte_count` bytes starting `byte_offset` bytes into its first
/// page spans. Checks the offset and count first.
pub fn pfn_count(byte_offset: u32, byte_count: u32) -> Result<usize, RangeError> {
    if byte_count == 0 {
        return Err(RangeError::ZeroByteCount);
    }
    if byte_offset >= PAGE_SIZE {
        return Err(RangeError::OffsetOutsidePage(byte_offset));
    }
    // Both below 2^32: the sum cannot overflow a u64.
    let end = u64::from(byte_offset) + u64::from(byte_count);
    let pages = end.div_ceil(u64::from(PAGE_SIZE));
    // At most 2^20 + 1 pages: fits usize on every supported target.
    Ok(usize::try_from(pages).unwrap_or(usize::MAX))
}

/// Packs a range's first word.
pub const fn range_header_word(byte_count: u32, byte_offset: u32) -> u64 {
    (byte_count as u64) | ((byte_offset as u64) << 32)
}

/// Unpacks a range's first word into `(byte_count, byte_offset)`.
pub const fn split_range_header_word(word: u64) -> (u32, u32) {
    (word as u32, (word >> 32) as u32)
}

/// One validated range of a GPADL: a byte span over a list of guest pages.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct GpaRange {
    byte_offset: u32,
    byte_count: u32,
    pfns: Vec<u64>,
}

impl GpaRange {
    /// A range of `byte_count` bytes starting `byte_offset` bytes into `pfns[0]`.
    pub fn new(byte_offset: u32, byte_count: u32, pfns: Vec<u64>) -> Result<Self, RangeError> {
        let expected = pfn_count(byte_offset, byte_count)?;
        if pfns.len() != expected {
            return Err(RangeError::PfnCountMismatch {
                expected,
                actual: pfns.len(),
            });
        }
        Ok(Self {
            byte_offset,
            byte_count,
            pfns,
        })
    }

    /// A range covering whole pages, as Linux builds them (offset 0).
    pub fn whole_pages(pfns: Vec<u64>) -> Result<Self, RangeError> {
        let bytes = u32::try_from(pfns.len())
            .ok()
            .and_then(|n| n.checked_mul(PAGE_SIZE))
            .ok_or(RangeError::PfnCountMismatch {
                expected: (u32::MAX / PAGE_SIZE) as usize,
                actual: pfns.len(),
            })?;
        Self::new(0, bytes, pfns)
    }

    /// Offset of the first byte inside the first page.
    pub fn byte_offset(&self) -> u32 {
        self.byte_offset
    }

    /// Length of the range in bytes.
    pub fn byte_count(&self) -> u32 {
        self.byte_count
    }

    /// The guest page frame numbers, in order.
    pub fn pfns(&self) -> &[u64] {
        &self.pfns
    }

    /// Number of 64-bit words this range takes in a range buffer.
    pub fn word_len(&self) -> usize {
        self.pfns.len() + 1
    }
}

/// Parses a complete range buffer of `range_count` ranges; every word must be used.
pub fn parse_ranges(range_count: u16, words: &[u64]) -> Result<Vec<GpaRange>, RangeError> {
    if range_count == 0 {
        return Err(RangeError::NoRanges);
    }
    let mut ranges = Vec::with_capacity(usize::from(range_count));
    let mut rest = words;
    for _ in 0..range_count {
        let (&head, tail) = rest.split_first().ok_or(RangeError::Truncated)?;
        let (byte_count, byte_offset) = split_range_header_word(head);
        let n = pfn_count(byte_offset, byte_count)?;
        if tail.len() < n {
            return Err(RangeError::Truncated);
        }
        let (pfns, after) = tail.split_at(n);
        ranges.push(GpaRange {
            byte_offset,
            byte_count,
            pfns: pfns.to_vec(),
        });
        rest = after;
    }
    if !rest.is_empty() {
        return Err(RangeError::TrailingWords(rest.len()));
    }
    Ok(ranges)
}

/// Builds the range buffer for `ranges` (the inverse of [`parse_ranges`]).
pub fn range_buffer(ranges: &[GpaRange]) -> Vec<u64> {
    let len = ranges.iter().map(GpaRange::word_len).sum();
    let mut words = Vec::with_capacity(len);
    for r in ranges {
        words.push(range_header_word(r.byte_count, r.byte_offset));
        words.extend_from_slice(&r.pfns);
    }
    words
}

/// Total number of pages (PFNs) in `ranges`.
pub fn total_pages(ranges: &[GpaRange]) -> usize {
    ranges.iter().map(|r| r.pfns.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn pfn_count_rounds_up_across_pages() {
        assert_eq!(pfn_count(0, 1), Ok(1));
        assert_eq!(pfn_count(0, 4096), Ok(1));
        assert_eq!(pfn_count(0, 4097), Ok(2));
        assert_eq!(pfn_count(4095, 2), Ok(2));
        assert_eq!(pfn_count(4095, u32::MAX), Ok(1_048_577));
        assert_eq!(pfn_count(0, 0), Err(RangeError::ZeroByteCount));
        assert_eq!(pfn_count(4096, 1), Err(RangeError::OffsetOutsidePage(4096)));
    }

    #[test]
    fn header_word_layout() {
        // byte_count is the first u32 on the wire, i.e. the low half of the LE word.
        let w = range_header_word(0x1234, 0x10);
        assert_eq!(w.to_le_bytes(), [0x34, 0x12, 0, 0, 0x10, 0, 0, 0]);
        assert_eq!(split_range_header_word(w), (0x1234, 0x10));
    }

    #[test]
    fn parse_and_build_are_inverse() {
        let a = GpaRange::new(100, 8000, vec![7, 8]).unwrap();
        let b = GpaRange::whole_pages(vec![1, 2, 3]).unwrap();
        let words = range_buffer(&[a.clone(), b.clone()]);
        assert_eq!(words.len(), 7);
        assert_eq!(parse_ranges(2, &words), Ok(vec![a, b]));
        assert_eq!(total_pages(&parse_ranges(2, &words).unwrap()), 5);
    }

    #[test]
    fn parse_rejects_bad_buffers() {
        let words = range_buffer(&[GpaRange::whole_pages(vec![1, 2]).unwrap()]);
        assert_eq!(parse_ranges(0, &words), Err(RangeError::NoRanges));
        assert_eq!(parse_ranges(2, &words), Err(RangeError::Truncated));
        assert_eq!(parse_ranges(1, &words[..2]), Err(RangeError::Truncated));
        let mut long = words.clone();
        long.push(9);
        assert_eq!(parse_ranges(1, &long), Err(RangeError::TrailingWords(1)));
        assert_eq!(parse_ranges(1, &[]), Err(RangeError::Truncated));
    }

    #[test]
    fn constructor_checks_pfn_count() {
        assert_eq!(
            GpaRange::new(0, 4097, vec![1]),
            Err(RangeError::PfnCountMismatch {
                expected: 2,
                actual: 1
            })
        );
        assert!(GpaRange::whole_pages(vec![]).is_err());
    }
}
