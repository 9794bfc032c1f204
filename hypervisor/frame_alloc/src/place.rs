//! Choosing where a large fixed-size block goes before any allocator exists (the region the
//! hypervisor keeps for itself when a root partition gets the rest of RAM).

use crate::range::PhysRange;

/// The highest `align`-aligned range of `size` bytes that lies wholly inside one `usable`
/// range, ends at or below `limit`, and overlaps none of `avoid`. `None` if there is none
/// (or `align` is not a power of two, or `size` is 0).
///
/// Candidates are tried from the top of each usable range downwards, stepping below each
/// range in `avoid` that a candidate hits, so the search ends after at most
/// `usable.len() * (avoid.len() + 1)` candidates.
#[must_use]
pub fn highest_fit(
    usable: &[PhysRange],
    avoid: &[PhysRange],
    size: u64,
    align: u64,
    limit: u64,
) -> Option<PhysRange> {
    if size == 0 || !align.is_power_of_two() {
        return None;
    }
    let mut best: Option<PhysRange> = None;
    for ram in usable {
        let top = ram.end.min(limit);
        let mut end = top;
        // Each step moves `end` strictly below the start of an avoided range it overlapped,
        // so at most avoid.len() + 1 steps per usable range.
        for _ in 0..=avoid.len() {
            let Some(start) = end.checked_sub(size).map(|s| s & !(align - 1)) else {
                break;
            };
            if start < ram.start {
                break;
            }
            let candidate = PhysRange::new(start, start + size);
            match avoid
                .iter()
                .filter(|a| !a.is_empty() && a.overlaps(&candidate))
                .map(|a| a.start)
                .min()
            {
                None => {
                    if best.is_none_or(|b| candidate.start > b.start) {
                        best = Some(candidate);
                    }
                    break;
                }
                Some(lowest_hit) => end = lowest_hit,
            }
        }
    }
    best
}
