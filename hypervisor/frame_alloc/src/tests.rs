//! Allocator tests: unit cases and a model-based property test.

use std::collections::BTreeSet;
use std::vec;
use std::vec::Vec;

use proptest::prelude::*;

use crate::{BuildError, FRAME_SIZE, FrameAllocator, FrameError, MemoryRegions, PhysRange};

const MIB: u64 = 0x10_0000;

fn r(start: u64, end: u64) -> PhysRange {
    PhysRange::new(start, end)
}

fn storage(usable: &[PhysRange], reserved: &[PhysRange]) -> Vec<u64> {
    vec![0; FrameAllocator::bitmap_words_needed(usable, reserved).unwrap()]
}

#[test]
fn allocates_lowest_first_until_exhausted() {
    let usable = [r(0x3000, 0x5000), r(0x1000, 0x2000)];
    let mut bits = storage(&usable, &[]);
    let mut a = FrameAllocator::from_map(&usable, &[], &mut bits).unwrap();
    assert_eq!(a.total_frames(), 3);
    assert_eq!(a.allocate(), Some(0x1000));
    assert_eq!(a.allocate(), Some(0x3000));
    assert_eq!(a.allocate(), Some(0x4000));
    assert_eq!(a.allocate(), None);
    assert_eq!(a.free_frames(), 0);
    a.free(0x3000).unwrap();
    assert_eq!(a.free_frames(), 1);
    assert_eq!(a.allocate(), Some(0x3000));
    assert_eq!(a.allocate(), None);
}

#[test]
fn freed_low_frame_is_reused_before_higher_ones() {
    let usable = [r(0, 200 * FRAME_SIZE)];
    let mut bits = storage(&usable, &[]);
    let mut a = FrameAllocator::from_map(&usable, &[], &mut bits).unwrap();
    for i in 0..150 {
        assert_eq!(a.allocate(), Some(i * FRAME_SIZE));
    }
    a.free(3 * FRAME_SIZE).unwrap();
    a.free(100 * FRAME_SIZE).unwrap();
    assert_eq!(a.allocate(), Some(3 * FRAME_SIZE));
    assert_eq!(a.allocate(), Some(100 * FRAME_SIZE));
    assert_eq!(a.allocate(), Some(150 * FRAME_SIZE));
}

#[test]
fn region_tails_are_never_handed_out() {
    // 65 frames: one full word plus one bit of a second word.
    let usable = [
        r(MIB, MIB + 65 * FRAME_SIZE),
        r(4 * MIB, 4 * MIB + FRAME_SIZE),
    ];
    let mut bits = storage(&usable, &[]);
    assert_eq!(bits.len(), 3);
    let mut a = FrameAllocator::from_map(&usable, &[], &mut bits).unwrap();
    let got: Vec<u64> = std::iter::from_fn(|| a.allocate()).collect();
    let mut want: Vec<u64> = (0..65).map(|i| MIB + i * FRAME_SIZE).collect();
    want.push(4 * MIB);
    assert_eq!(got, want);
}

#[test]
fn reserved_frames_are_never_handed_out() {
    let usable = [r(0, 8 * MIB)];
    let reserved = [crate::LOW_MEMORY, r(2 * MIB + 5, 3 * MIB - 5)];
    let mut bits = storage(&usable, &reserved);
    let mut a = FrameAllocator::from_map(&usable, &reserved, &mut bits).unwrap();
    assert_eq!(a.total_frames(), (8 - 1 - 1) * 256);
    while let Some(f) = a.allocate() {
        assert!(f >= MIB);
        assert!(!(2 * MIB..3 * MIB).contains(&f), "{f:#x}");
    }
}

#[test]
fn free_errors_leave_the_allocator_unchanged() {
    let usable = [r(MIB, 2 * MIB)];
    let mut bits = storage(&usable, &[]);
    let mut a = FrameAllocator::from_map(&usable, &[], &mut bits).unwrap();
    let f = a.allocate().unwrap();
    a.free(f).unwrap();
    assert_eq!(a.free(f), Err(FrameError::NotAllocated(f)));
    assert_eq!(a.free(f + 1), Err(FrameError::Misaligned(f + 1)));
    assert_eq!(a.free(0), Err(FrameError::NotManaged(0)));
    assert_eq!(a.free(2 * MIB), Err(FrameError::NotManaged(2 * MIB)));
    assert_eq!(a.free(!0xfff_u64), Err(FrameError::NotManaged(!0xfff_u64)));
    assert_eq!(a.free_frames(), a.total_frames());
    assert_eq!(a.is_allocated(f), Ok(false));
}

#[test]
fn contiguous_allocation_is_aligned_and_skips_used_frames() {
    // Region starts 1 MiB past a 2 MiB boundary.
    let usable = [r(3 * MIB, 16 * MIB)];
    let mut bits = storage(&usable, &[]);
    let mut a = FrameAllocator::from_map(&usable, &[], &mut bits).unwrap();
    let first = a.allocate().unwrap();
    assert_eq!(first, 3 * MIB);
    let huge = a.allocate_contiguous(512, 2 * MIB).unwrap();
    assert_eq!(huge, 4 * MIB);
    for i in 0..512 {
        assert_eq!(a.is_allocated(huge + i * FRAME_SIZE), Ok(true));
    }
    assert_eq!(a.is_allocated(6 * MIB), Ok(false));
    // A used frame inside the next 2 MiB block pushes the run to the block after it.
    a.free_contiguous(huge, 512).unwrap();
    assert_eq!(
        a.allocate_contiguous(1, FRAME_SIZE),
        Ok(3 * MIB + FRAME_SIZE)
    );
    assert_eq!(a.allocate_contiguous(1, MIB), Ok(4 * MIB));
    assert_eq!(a.allocate_contiguous(1, MIB), Ok(5 * MIB));
    a.free(4 * MIB).unwrap();
    assert_eq!(a.allocate_contiguous(512, 2 * MIB), Ok(6 * MIB));
    // Small alignment values mean 4 KiB.
    assert_eq!(a.allocate_contiguous(2, 1), Ok(3 * MIB + 2 * FRAME_SIZE));
    assert_eq!(a.free_frames(), a.total_frames() - 1 - 1 - 1 - 512 - 2);
}

#[test]
fn contiguous_allocation_never_spans_a_reserved_hole() {
    let usable = [r(MIB, 3 * MIB)];
    let reserved = [r(2 * MIB, 2 * MIB + FRAME_SIZE)];
    let mut bits = storage(&usable, &reserved);
    let mut a = FrameAllocator::from_map(&usable, &reserved, &mut bits).unwrap();
    assert_eq!(
        a.allocate_contiguous(257, FRAME_SIZE),
        Err(FrameError::OutOfFrames)
    );
    assert_eq!(a.allocate_contiguous(256, FRAME_SIZE), Ok(MIB));
    assert_eq!(
        a.allocate_contiguous(255, FRAME_SIZE),
        Ok(2 * MIB + FRAME_SIZE)
    );
    assert_eq!(a.free_frames(), 0);
}

#[test]
fn contiguous_allocation_argument_errors() {
    let usable = [r(MIB, 2 * MIB)];
    let mut bits = storage(&usable, &[]);
    let mut a = FrameAllocator::from_map(&usable, &[], &mut bits).unwrap();
    assert_eq!(
        a.allocate_contiguous(0, FRAME_SIZE),
        Err(FrameError::ZeroCount)
    );
    assert_eq!(
        a.allocate_contiguous(1, 3 * FRAME_SIZE),
        Err(FrameError::InvalidAlignment(3 * FRAME_SIZE))
    );
    assert_eq!(
        a.allocate_contiguous(1, 0),
        Err(FrameError::InvalidAlignment(0))
    );
    assert_eq!(
        a.allocate_contiguous(257, FRAME_SIZE),
        Err(FrameError::OutOfFrames)
    );
    assert_eq!(
        a.allocate_contiguous(u64::MAX, FRAME_SIZE),
        Err(FrameError::OutOfFrames)
    );
    assert_eq!(
        a.allocate_contiguous(1, 1 << 63),
        Err(FrameError::OutOfFrames)
    );
    assert_eq!(a.free_frames(), 256);
}

#[test]
fn free_contiguous_is_all_or_nothing() {
    let usable = [r(MIB, 2 * MIB)];
    let mut bits = storage(&usable, &[]);
    let mut a = FrameAllocator::from_map(&usable, &[], &mut bits).unwrap();
    let run = a.allocate_contiguous(4, FRAME_SIZE).unwrap();
    a.free(run + 2 * FRAME_SIZE).unwrap();
    assert_eq!(
        a.free_contiguous(run, 4),
        Err(FrameError::NotAllocated(run + 2 * FRAME_SIZE))
    );
    assert_eq!(a.is_allocated(run), Ok(true));
    assert_eq!(
        a.free_contiguous(run + 3 * FRAME_SIZE, 300),
        Err(FrameError::NotManaged(2 * MIB))
    );
    assert_eq!(a.free_contiguous(run, 0), Err(FrameError::ZeroCount));
    assert_eq!(a.free_frames(), 256 - 3);
    a.free_contiguous(run, 2).unwrap();
    a.free(run + 3 * FRAME_SIZE).unwrap();
    assert_eq!(a.free_frames(), 256);
}

#[test]
fn bitmap_too_small_is_rejected_and_extra_words_untouched() {
    let usable = [r(MIB, 2 * MIB)];
    let mut short = vec![0u64; 3];
    assert_eq!(
        FrameAllocator::from_map(&usable, &[], &mut short).unwrap_err(),
        BuildError::BitmapTooSmall {
            needed: 4,
            provided: 3
        }
    );
    let mut long = vec![0xdead_beef_u64; 6];
    {
        let mut a = FrameAllocator::from_map(&usable, &[], &mut long).unwrap();
        assert_eq!(a.allocate(), Some(MIB));
    }
    assert_eq!(&long[4..], &[0xdead_beef, 0xdead_beef]);
    assert_eq!(long[0], 1);
}

#[test]
fn planned_bitmap_frames_are_reserved() {
    let usable = [r(0, 0x9_f000), r(MIB, 64 * MIB)];
    let image = r(MIB, 3 * MIB);
    let mut regions = MemoryRegions::new(&usable, &[crate::LOW_MEMORY, image]).unwrap();
    let plan = regions.plan_bitmap().unwrap();
    assert_eq!(plan.range.start, 3 * MIB);
    regions.reserve(plan.range).unwrap();
    let mut bits = vec![0u64; plan.words];
    let mut a = FrameAllocator::new(&regions, &mut bits).unwrap();
    assert_eq!(
        a.regions().collect::<Vec<_>>(),
        [r(plan.range.end, 64 * MIB)]
    );
    while let Some(f) = a.allocate() {
        assert!(!plan.range.contains(f) && !image.contains(f));
    }
}

/// Every frame inside the union of `usable` and touching no `reserved` byte, by brute force.
fn expected_frames(usable: &[PhysRange], reserved: &[PhysRange], limit: u64) -> BTreeSet<u64> {
    let covered = |a: u64| {
        let mut p = a;
        while p < a + FRAME_SIZE {
            match usable.iter().find(|u| u.contains(p)) {
                Some(u) => p = u.end,
                None => return false,
            }
        }
        true
    };
    (0..limit / FRAME_SIZE)
        .map(|i| i * FRAME_SIZE)
        .filter(|&a| covered(a) && !reserved.iter().any(|x| x.overlaps(&r(a, a + FRAME_SIZE))))
        .collect()
}

#[derive(Debug, Clone)]
enum Op {
    Allocate,
    Contiguous { count: u64, align_shift: u32 },
    Free(usize),
}

fn ranges(max_start: u64, max_len: u64, n: usize) -> impl Strategy<Value = Vec<PhysRange>> {
    prop::collection::vec(
        (0..max_start, 0..max_len).prop_map(|(s, l)| r(s, s + l)),
        0..n,
    )
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            4 => Just(Op::Allocate),
            1 => (1..40u64, 0..10u32).prop_map(|(count, align_shift)| Op::Contiguous { count, align_shift }),
            3 => any::<usize>().prop_map(Op::Free),
        ],
        0..300,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn allocator_matches_a_model(
        usable in ranges(4 * MIB, MIB / 2, 8),
        reserved in ranges(5 * MIB, MIB / 2, 8),
        ops in ops(),
    ) {
        let limit = 6 * MIB;
        let expected = expected_frames(&usable, &reserved, limit);
        let mut bits = storage(&usable, &reserved);
        let mut a = FrameAllocator::from_map(&usable, &reserved, &mut bits).unwrap();
        prop_assert_eq!(a.total_frames(), expected.len() as u64);
        let mut held: BTreeSet<u64> = BTreeSet::new();
        for op in ops {
            match op {
                Op::Allocate => {
                    let lowest_free = expected.difference(&held).next().copied();
                    prop_assert_eq!(a.allocate(), lowest_free);
                    if let Some(f) = lowest_free {
                        held.insert(f);
                    }
                }
                Op::Contiguous { count, align_shift } => {
                    let align = FRAME_SIZE << align_shift;
                    if let Ok(start) = a.allocate_contiguous(count, align) {
                        prop_assert_eq!(start % align, 0);
                        for i in 0..count {
                            let f = start + i * FRAME_SIZE;
                            prop_assert!(expected.contains(&f), "{:#x} not allocatable", f);
                            prop_assert!(held.insert(f), "{:#x} handed out twice", f);
                        }
                    } else {
                        // No aligned run of free, allocatable frames exists.
                        let fits = expected.iter().any(|&s| {
                            s.is_multiple_of(align)
                                && (0..count).all(|i| {
                                    let f = s + i * FRAME_SIZE;
                                    expected.contains(&f) && !held.contains(&f)
                                })
                        });
                        prop_assert!(!fits);
                    }
                }
                Op::Free(pick) => {
                    if held.is_empty() {
                        continue;
                    }
                    let f = *held.iter().nth(pick % held.len()).unwrap();
                    prop_assert_eq!(a.free(f), Ok(()));
                    prop_assert_eq!(a.free(f), Err(FrameError::NotAllocated(f)));
                    held.remove(&f);
                }
            }
            prop_assert_eq!(a.free_frames() + held.len() as u64, a.total_frames());
        }
        for &f in &held {
            prop_assert_eq!(a.is_allocated(f), Ok(true));
        }
        for f in held {
            prop_assert_eq!(a.free(f), Ok(()));
        }
        prop_assert_eq!(a.free_frames(), a.total_frames());
    }

    #[test]
    fn planned_bitmap_is_big_enough_and_never_allocated(
        usable in ranges(64 * MIB, 16 * MIB, 8),
        reserved in ranges(64 * MIB, 4 * MIB, 8),
    ) {
        let Ok(plan) = FrameAllocator::plan(&usable, &reserved) else {
            prop_assert!(MemoryRegions::new(&usable, &reserved).unwrap().is_empty());
            return Ok(());
        };
        let mut all_reserved = reserved.clone();
        all_reserved.push(plan.range);
        prop_assert!(FrameAllocator::bitmap_words_needed(&usable, &all_reserved).unwrap() <= plan.words);
        let mut bits = vec![0u64; plan.words];
        let mut a = FrameAllocator::from_map(&usable, &all_reserved, &mut bits).unwrap();
        while let Some(f) = a.allocate() {
            prop_assert!(!plan.range.overlaps(&r(f, f + FRAME_SIZE)));
        }
    }
}

mod placement {
    use crate::{PhysRange, highest_fit};

    const MIB: u64 = 1 << 20;

    fn r(start: u64, end: u64) -> PhysRange {
        PhysRange::new(start, end)
    }

    #[test]
    fn picks_the_top_of_the_highest_usable_range_below_the_limit() {
        let usable = [r(0, 0x9F000), r(MIB, 1024 * MIB), r(4096 * MIB, 8192 * MIB)];
        let got = highest_fit(&usable, &[], 64 * MIB, 2 * MIB, 4096 * MIB);
        assert_eq!(got, Some(r(960 * MIB, 1024 * MIB)));
    }

    #[test]
    fn steps_below_avoided_ranges_and_keeps_alignment() {
        let usable = [r(MIB, 1024 * MIB)];
        let avoid = [r(1000 * MIB, 1001 * MIB), r(900 * MIB + 4096, 950 * MIB)];
        let got = highest_fit(&usable, &avoid, 64 * MIB, 2 * MIB, u64::MAX).unwrap();
        assert_eq!(got, r(836 * MIB, 900 * MIB));
        assert!(avoid.iter().all(|a| !a.overlaps(&got)));
    }

    #[test]
    fn none_when_nothing_fits() {
        let usable = [r(MIB, 32 * MIB)];
        assert_eq!(highest_fit(&usable, &[], 64 * MIB, 2 * MIB, u64::MAX), None);
        assert_eq!(
            highest_fit(&usable, &[r(0, 64 * MIB)], 2 * MIB, 2 * MIB, u64::MAX),
            None
        );
        assert_eq!(highest_fit(&usable, &[], 0, 2 * MIB, u64::MAX), None);
        assert_eq!(highest_fit(&usable, &[], MIB, 3, u64::MAX), None);
    }

    proptest::proptest! {
        #[test]
        fn result_is_usable_aligned_and_clear(
            ranges in proptest::collection::vec((0u64..4096, 1u64..512), 1..6),
            avoids in proptest::collection::vec((0u64..4096, 1u64..256), 0..6),
            size_mib in 1u64..128,
        ) {
            let usable: Vec<PhysRange> = ranges.iter().map(|&(s, l)| r(s * MIB, (s + l) * MIB)).collect();
            let avoid: Vec<PhysRange> = avoids.iter().map(|&(s, l)| r(s * MIB, (s + l) * MIB)).collect();
            if let Some(got) = highest_fit(&usable, &avoid, size_mib * MIB, 2 * MIB, 4096 * MIB) {
                proptest::prop_assert_eq!(got.len(), size_mib * MIB);
                proptest::prop_assert_eq!(got.start % (2 * MIB), 0);
                proptest::prop_assert!(got.end <= 4096 * MIB);
                proptest::prop_assert!(usable.iter().any(|u| u.start <= got.start && got.end <= u.end));
                proptest::prop_assert!(avoid.iter().all(|a| !a.overlaps(&got)));
            }
        }
    }
}
