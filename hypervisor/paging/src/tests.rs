//! Page-table tests against the fakes: unit cases for every page size and error, and a
//! property test comparing the tables with a list of mappings.

use std::vec::Vec;

use proptest::prelude::*;

use crate::{
    EntryFormat, FakeFrames, FakeMemory, Flush, FrameSource, HugePages, LongMode, LongModeBits,
    MapError, MapFlags, PageSize, PageTables, Translation, WxPolicy,
};

const KIB4: u64 = 0x1000;
const MIB2: u64 = 0x20_0000;
const GIB: u64 = 0x4000_0000;
const RW: MapFlags = MapFlags::WRITABLE;
const RX: MapFlags = MapFlags::EXECUTABLE;

fn host() -> LongMode {
    LongMode::host(46).unwrap().with_1g_pages(true)
}

fn nested() -> LongMode {
    LongMode::nested(46).unwrap().with_1g_pages(true)
}

/// Table frames come from 16 TiB up, far from the physical addresses the tests map.
fn frames() -> FakeFrames {
    FakeFrames::new(1 << 44, 4096)
}

type Mapping = (u64, u64, PageSize, MapFlags);

/// Asserts a mapping call succeeded by filling non-present entries only.
#[track_caller]
fn fresh(result: Result<Flush, MapError>) {
    assert_eq!(result, Ok(Flush::NotNeeded));
}

fn mappings<F: EntryFormat>(pt: &PageTables<'_, FakeMemory, F>) -> Vec<Mapping> {
    let mut all = Vec::new();
    pt.for_each_mapping(|v, p, s, f| all.push((v, p, s, f)));
    all
}

#[test]
fn maps_each_page_size_and_translates_with_offset() {
    let mut mem = FakeMemory::new();
    let mut fr = frames();
    let mut pt = PageTables::create(&mut mem, host(), &mut fr).unwrap();
    let cases = [
        (0x40_0000_1000, 0x1234_5000, PageSize::Size4K, RW),
        (0x40_0020_0000, 0x8_0020_0000, PageSize::Size2M, RX),
        (
            0x80_4000_0000,
            0x3_c000_0000,
            PageSize::Size1G,
            MapFlags::empty(),
        ),
    ];
    for (v, p, s, f) in cases {
        assert_eq!(pt.map(v, p, s, f, &mut fr), Ok(Flush::NotNeeded));
    }
    for (v, p, s, f) in cases {
        let last = s.bytes() - 8;
        assert_eq!(
            pt.translate(v),
            Some(Translation {
                phys: p,
                size: s,
                flags: f
            })
        );
        assert_eq!(
            pt.translate(v + last),
            Some(Translation {
                phys: p + last,
                size: s,
                flags: f
            })
        );
        assert_eq!(pt.translate(v + s.bytes()), None);
    }
    assert_eq!(pt.translate(cases[0].0 - KIB4), None);
    let mut want = cases.to_vec();
    want.sort();
    assert_eq!(mappings(&pt), want);
}

#[test]
fn high_half_addresses_are_reported_canonical() {
    let mut mem = FakeMemory::new();
    let mut fr = frames();
    let mut pt = PageTables::create(&mut mem, host(), &mut fr).unwrap();
    let kernel = 0xffff_ffff_8000_0000;
    fresh(pt.map(
        kernel,
        0x20_0000,
        PageSize::Size2M,
        RX | MapFlags::GLOBAL,
        &mut fr,
    ));
    fresh(pt.map(0xffff_8000_0000_0000, 0, PageSize::Size4K, RW, &mut fr));
    assert_eq!(
        mappings(&pt),
        [
            (0xffff_8000_0000_0000, 0, PageSize::Size4K, RW),
            (kernel, 0x20_0000, PageSize::Size2M, RX | MapFlags::GLOBAL),
        ]
    );
    assert_eq!(pt.translate(kernel + 0x1234).unwrap().phys, 0x20_1234);
    // Same PML4 index modulo the hole, but non-canonical: never translated.
    assert_eq!(pt.translate(0x0000_ffff_8000_0000), None);
}

#[test]
fn intermediate_entries_are_permissive_and_leaves_restrictive() {
    let mut mem = FakeMemory::new();
    let mut fr = frames();
    let root;
    {
        let mut pt = PageTables::create(&mut mem, host(), &mut fr).unwrap();
        root = pt.root();
        fresh(pt.map(0x1000, 0x5000, PageSize::Size4K, MapFlags::empty(), &mut fr));
    }
    let pml4e = LongModeBits::from_bits_retain(mem.table(root).unwrap()[0]);
    assert!(pml4e.contains(LongModeBits::PRESENT | LongModeBits::WRITABLE));
    assert!(!pml4e.intersects(LongModeBits::USER | LongModeBits::NO_EXECUTE));
    let pdpt = pml4e.bits() & 0x000f_ffff_ffff_f000;
    let pd = mem.table(pdpt).unwrap()[0] & 0x000f_ffff_ffff_f000;
    let pt_table = mem.table(pd).unwrap()[0] & 0x000f_ffff_ffff_f000;
    let leaf = LongModeBits::from_bits_retain(mem.table(pt_table).unwrap()[1]);
    assert_eq!(leaf.bits() & 0x000f_ffff_ffff_f000, 0x5000);
    assert!(leaf.contains(LongModeBits::PRESENT | LongModeBits::NO_EXECUTE));
    assert!(!leaf.intersects(LongModeBits::WRITABLE | LongModeBits::USER));
}

#[test]
fn nested_tables_set_user_on_every_level() {
    let mut mem = FakeMemory::new();
    let mut fr = frames();
    let mut pt = PageTables::create(&mut mem, nested(), &mut fr).unwrap();
    // Guest-physical input: bit 47 set is a plain address, not a hole.
    let gpa = 0x8000_0000_0000;
    fresh(pt.map(gpa, 0x7000, PageSize::Size4K, RW, &mut fr));
    let t = pt.translate(gpa).unwrap();
    assert_eq!(t.flags, RW | MapFlags::USER);
    assert_eq!(
        mappings(&pt),
        [(gpa, 0x7000, PageSize::Size4K, RW | MapFlags::USER)]
    );
    assert_eq!(
        pt.map(1 << 48, 0, PageSize::Size4K, RW, &mut fr),
        Err(MapError::NonCanonical(1 << 48))
    );
    let mut table = pt.root();
    for level in [4, 3, 2] {
        let e = mem.table(table).unwrap()[(gpa >> (12 + 9 * (level - 1))) as usize & 511];
        assert_eq!(e & 0x7, 0x7, "level {level}");
        table = e & 0x000f_ffff_ffff_f000;
    }
    assert_eq!(mem.table(table).unwrap()[0] & 0x7, 0x7);
}

#[test]
fn write_execute_is_refused_unless_allowed() {
    let mut mem = FakeMemory::new();
    let mut fr = frames();
    let mut pt = PageTables::create(&mut mem, host(), &mut fr).unwrap();
    let wx = RW | RX;
    assert_eq!(
        pt.map(0, 0, PageSize::Size4K, wx, &mut fr),
        Err(MapError::WriteExecute)
    );
    assert_eq!(
        pt.map_range(0, 0, MIB2, wx, HugePages::Allowed, &mut fr),
        Err(MapError::WriteExecute)
    );
    fresh(pt.map(0, 0, PageSize::Size4K, RW, &mut fr));
    assert_eq!(pt.protect(0, wx), Err(MapError::WriteExecute));
    assert_eq!(mappings(&pt), [(0, 0, PageSize::Size4K, RW)]);
    let mut pt = pt.with_wx_policy(WxPolicy::Allow);
    assert_eq!(pt.protect(0, wx), Ok(Flush::Needed));
    assert_eq!(pt.translate(0).unwrap().flags, wx);
}

#[test]
fn alignment_address_space_and_size_errors() {
    let mut mem = FakeMemory::new();
    // Table frames must lie below MAXPHYADDR (2^36) too.
    let mut fr = FakeFrames::new(1 << 32, 64);
    let mut pt = PageTables::create(&mut mem, LongMode::host(36).unwrap(), &mut fr).unwrap();
    let m = |pt: &mut PageTables<'_, FakeMemory, LongMode>, v, p, s, fr: &mut FakeFrames| {
        pt.map(v, p, s, RW, fr)
    };
    assert_eq!(
        m(&mut pt, 0x1000, 0, PageSize::Size2M, &mut fr),
        Err(MapError::MisalignedVirtual(0x1000))
    );
    assert_eq!(
        m(&mut pt, 0, 0x1000, PageSize::Size2M, &mut fr),
        Err(MapError::MisalignedPhysical(0x1000))
    );
    assert_eq!(
        m(&mut pt, 0x123, 0, PageSize::Size4K, &mut fr),
        Err(MapError::MisalignedVirtual(0x123))
    );
    assert_eq!(
        m(&mut pt, 0x8000_0000_0000, 0, PageSize::Size4K, &mut fr),
        Err(MapError::NonCanonical(0x8000_0000_0000))
    );
    assert_eq!(
        m(&mut pt, 0, 1 << 36, PageSize::Size4K, &mut fr),
        Err(MapError::PhysicalTooLarge(1 << 36))
    );
    // The last 2 MiB below 2^36 fits; the page must fit entirely.
    assert_eq!(
        m(&mut pt, 0, (1 << 36) - MIB2, PageSize::Size2M, &mut fr),
        Ok(Flush::NotNeeded)
    );
    assert_eq!(
        m(&mut pt, GIB, 0, PageSize::Size1G, &mut fr),
        Err(MapError::UnsupportedPageSize(PageSize::Size1G))
    );
    assert_eq!(mappings(&pt).len(), 1);
}

#[test]
fn overlaps_with_any_page_size_are_already_mapped() {
    let mut mem = FakeMemory::new();
    let mut fr = frames();
    let mut pt = PageTables::create(&mut mem, host(), &mut fr).unwrap();
    fresh(pt.map(MIB2, 0, PageSize::Size2M, RW, &mut fr));
    fresh(pt.map(GIB + 5 * KIB4, 0, PageSize::Size4K, RW, &mut fr));
    fresh(pt.map(4 * GIB, 0, PageSize::Size1G, RW, &mut fr));
    let cases = [
        (MIB2, PageSize::Size2M),            // same page
        (MIB2 + 7 * KIB4, PageSize::Size4K), // inside a 2 MiB page
        (0, PageSize::Size1G),               // 1 GiB over a 2 MiB page
        (GIB, PageSize::Size2M),             // 2 MiB over a 4 KiB page
        (GIB, PageSize::Size1G),             // 1 GiB over a 4 KiB page
        (4 * GIB + MIB2, PageSize::Size2M),  // inside a 1 GiB page
        (5 * GIB - KIB4, PageSize::Size4K),  // last 4 KiB of a 1 GiB page
    ];
    for (v, s) in cases {
        assert_eq!(
            pt.map(v, 0, s, RW, &mut fr),
            Err(MapError::AlreadyMapped(v)),
            "{v:#x}"
        );
    }
    assert_eq!(mappings(&pt).len(), 3);
}

#[test]
fn out_of_frames_and_bad_frames_are_errors() {
    let mut mem = FakeMemory::new();
    let mut fr = FakeFrames::new(1 << 40, 3); // root + PDPT + PD, no PT
    let mut pt = PageTables::create(&mut mem, host(), &mut fr).unwrap();
    assert_eq!(
        pt.map(0, 0, PageSize::Size4K, RW, &mut fr),
        Err(MapError::OutOfFrames)
    );
    // The PD exists now: a 2 MiB page needs no new table.
    assert_eq!(
        pt.map(MIB2, 0, PageSize::Size2M, RW, &mut fr),
        Ok(Flush::NotNeeded)
    );
    assert_eq!(fr.remaining(), 0);
    assert_eq!(mappings(&pt), [(MIB2, 0, PageSize::Size2M, RW)]);

    struct Misaligned;
    impl FrameSource for Misaligned {
        fn allocate_table(&mut self) -> Option<u64> {
            Some(0x1234)
        }
    }
    assert_eq!(
        pt.map(GIB * 512, 0, PageSize::Size4K, RW, &mut Misaligned),
        Err(MapError::InvalidTableFrame(0x1234))
    );
    let mut empty = FakeFrames::new(0, 0);
    let mut mem2 = FakeMemory::new();
    assert_eq!(
        PageTables::create(&mut mem2, host(), &mut empty).unwrap_err(),
        MapError::OutOfFrames
    );
    assert_eq!(
        PageTables::new(&mut mem2, 0x10, host()).unwrap_err(),
        MapError::InvalidRoot(0x10)
    );
    assert_eq!(
        PageTables::new(&mut mem2, 1 << 46, host()).unwrap_err(),
        MapError::InvalidRoot(1 << 46)
    );
}

#[test]
fn unmap_and_protect() {
    let mut mem = FakeMemory::new();
    let mut fr = frames();
    let mut pt = PageTables::create(&mut mem, host(), &mut fr).unwrap();
    fresh(pt.map(MIB2, 0x60_0000, PageSize::Size2M, RW, &mut fr));
    fresh(pt.map(0x3000, 0x9000, PageSize::Size4K, RX, &mut fr));
    assert_eq!(
        pt.unmap(MIB2 + KIB4),
        Err(MapError::PartialHugePage(MIB2 + KIB4))
    );
    assert_eq!(
        pt.unmap(MIB2 + 1),
        Err(MapError::MisalignedVirtual(MIB2 + 1))
    );
    assert_eq!(pt.unmap(0x4000), Err(MapError::NotMapped(0x4000)));
    assert_eq!(pt.unmap(1 << 47), Err(MapError::NonCanonical(1 << 47)));
    assert_eq!(pt.protect(0x3000, MapFlags::empty()), Ok(Flush::Needed));
    assert_eq!(pt.protect(0x3000, MapFlags::empty()), Ok(Flush::NotNeeded));
    assert_eq!(pt.protect(0x5000, RW), Err(MapError::NotMapped(0x5000)));
    let removed = pt.unmap(MIB2).unwrap();
    assert_eq!(
        (removed.phys, removed.size, removed.flags),
        (0x60_0000, PageSize::Size2M, RW)
    );
    assert_eq!(removed.flush(), Flush::Needed);
    assert_eq!(pt.translate(MIB2), None);
    assert_eq!(pt.unmap(MIB2), Err(MapError::NotMapped(MIB2)));
    assert_eq!(
        mappings(&pt),
        [(0x3000, 0x9000, PageSize::Size4K, MapFlags::empty())]
    );
}

#[test]
fn huge_page_over_an_emptied_subtree_replaces_it_and_releases_tables() {
    let mut mem = FakeMemory::new();
    let mut fr = frames();
    let mut pt = PageTables::create(&mut mem, host(), &mut fr).unwrap();
    fresh(pt.map(GIB + 0x5000, 0x5000, PageSize::Size4K, RW, &mut fr));
    let after_first = fr.allocated();
    // While the 4 KiB page exists, the 1 GiB page overlaps.
    assert_eq!(
        pt.map(GIB, 0, PageSize::Size1G, RW, &mut fr),
        Err(MapError::AlreadyMapped(GIB))
    );
    let _ = pt.unmap(GIB + 0x5000).unwrap();
    // The emptied PD and PT are dropped for the 1 GiB leaf: a paging-structure flush is due.
    assert_eq!(
        pt.map(GIB, 0, PageSize::Size1G, RW, &mut fr),
        Ok(Flush::Needed)
    );
    assert_eq!(fr.released().len(), 2);
    assert_eq!(fr.allocated(), after_first);
    assert_eq!(mappings(&pt), [(GIB, 0, PageSize::Size1G, RW)]);
    // Emptied tables are otherwise reused: no new frames for a page under an existing PD.
    let _ = pt.unmap(GIB).unwrap();
    fresh(pt.map(3 * MIB2, 0, PageSize::Size2M, RW, &mut fr));
    let before = fr.allocated();
    let _ = pt.unmap(3 * MIB2).unwrap();
    assert_eq!(
        pt.map(3 * MIB2, 0, PageSize::Size2M, RW, &mut fr),
        Ok(Flush::NotNeeded)
    );
    assert_eq!(fr.allocated(), before);
}

fn count_sizes(all: &[Mapping]) -> [usize; 3] {
    let mut n = [0; 3];
    for m in all {
        n[m.2 as usize] += 1;
    }
    n
}

#[test]
fn map_range_uses_the_largest_pages_alignment_allows() {
    let mut mem = FakeMemory::new();
    let mut fr = frames();
    let mut pt = PageTables::create(&mut mem, host(), &mut fr).unwrap();
    // 0x1000..0x40_1000: 511 small pages, one 2 MiB page, one small page.
    assert_eq!(
        pt.map_range(0x1000, 0x1000, 2 * MIB2, RW, HugePages::Allowed, &mut fr),
        Ok(Flush::NotNeeded)
    );
    assert_eq!(count_sizes(&mappings(&pt)), [512, 1, 0]);
    assert_eq!(pt.translate(0x30_0000).unwrap().phys, 0x30_0000);
    // Physical and virtual alignment differ by 4 KiB: small pages only.
    fresh(pt.map_range(GIB, GIB + KIB4, 2 * MIB2, RW, HugePages::Allowed, &mut fr));
    // One 1 GiB page in the middle of a range.
    fresh(pt.map_range(
        2 * GIB - MIB2,
        GIB - MIB2,
        GIB + MIB2,
        RX,
        HugePages::Allowed,
        &mut fr,
    ));
    // Huge pages forbidden.
    fresh(pt.map_range(8 * GIB, 0, MIB2, RW, HugePages::Forbidden, &mut fr));
    let all = mappings(&pt);
    assert_eq!(count_sizes(&all), [512 + 1024 + 512, 2, 1]);
    assert!(all.contains(&(2 * GIB, GIB, PageSize::Size1G, RX)));
    for (v, p, s, _) in &all {
        assert_eq!(pt.translate(*v).map(|t| (t.phys, t.size)), Some((*p, *s)));
    }
}

#[test]
fn map_range_argument_errors() {
    let mut mem = FakeMemory::new();
    let mut fr = frames();
    let mut pt = PageTables::create(&mut mem, host(), &mut fr).unwrap();
    let a = HugePages::Allowed;
    assert_eq!(pt.map_range(0, 0, 0, RW, a, &mut fr), Ok(Flush::NotNeeded));
    assert_eq!(
        pt.map_range(0, 0, 0x800, RW, a, &mut fr),
        Err(MapError::MisalignedLength(0x800))
    );
    assert_eq!(
        pt.map_range(0x10, 0, KIB4, RW, a, &mut fr),
        Err(MapError::MisalignedVirtual(0x10))
    );
    assert_eq!(
        pt.map_range(0, 0x10, KIB4, RW, a, &mut fr),
        Err(MapError::MisalignedPhysical(0x10))
    );
    let top = 0x7fff_ffff_f000;
    assert_eq!(
        pt.map_range(top, 0, 2 * KIB4, RW, a, &mut fr),
        Err(MapError::NonCanonical(top + 2 * KIB4 - 1))
    );
    assert_eq!(
        pt.map_range(top, 0, 0xffff_0000_0000_2000, RW, a, &mut fr),
        Err(MapError::InvalidRange {
            start: top,
            len: 0xffff_0000_0000_2000
        })
    );
    assert_eq!(
        pt.map_range(0xffff_ffff_ffff_f000, 0, 2 * KIB4, RW, a, &mut fr),
        Err(MapError::InvalidRange {
            start: 0xffff_ffff_ffff_f000,
            len: 2 * KIB4
        })
    );
    assert_eq!(
        pt.map_range(0, (1 << 46) - KIB4, 2 * KIB4, RW, a, &mut fr),
        Err(MapError::PhysicalTooLarge((1 << 46) - KIB4))
    );
    assert!(mappings(&pt).is_empty());
}

#[test]
fn failed_map_range_removes_what_it_mapped() {
    let mut mem = FakeMemory::new();
    let mut fr = frames();
    let mut pt = PageTables::create(&mut mem, host(), &mut fr).unwrap();
    fresh(pt.map(0x30_0000, 0x99_9000, PageSize::Size4K, RW, &mut fr));
    let before = mappings(&pt);
    assert_eq!(
        pt.map_range(0x1000, 0x1000, 4 * MIB2, RW, HugePages::Allowed, &mut fr),
        Err(MapError::AlreadyMapped(0x20_0000))
    );
    assert_eq!(mappings(&pt), before);
    let mut few = FakeFrames::new(1 << 40, 1);
    assert_eq!(
        pt.map_range(
            GIB - 2 * KIB4,
            0,
            4 * KIB4,
            RW,
            HugePages::Allowed,
            &mut few
        ),
        Err(MapError::OutOfFrames)
    );
    assert_eq!(mappings(&pt), before);
}

// ---- Property test ----------------------------------------------------------------------

/// Input-address windows (4 GiB each) where the random mappings land, chosen to share
/// tables and to reach both ends of each half of the address space.
fn windows(nested: bool) -> [u64; 4] {
    if nested {
        [0, 0x7fff_0000_0000, 0x8000_0000_0000, 0xffff_0000_0000]
    } else {
        [
            0,
            0x7fff_0000_0000,
            0xffff_8000_0000_0000,
            0xffff_ffff_0000_0000,
        ]
    }
}

#[derive(Debug, Clone)]
struct Candidate {
    window: usize,
    size: PageSize,
    slot: u64,
    phys_slot: u64,
    flags: MapFlags,
}

fn candidate() -> impl Strategy<Value = Candidate> {
    let size = prop_oneof![
        Just((PageSize::Size1G, 4u64)),
        Just((PageSize::Size2M, 512)),
        Just((PageSize::Size4K, 32768)),
    ];
    (0..4usize, size, any::<u64>(), 0..(1u64 << 16), 0..64u32).prop_map(
        |(window, (size, slots), slot, phys_slot, flags)| {
            let mut flags = MapFlags::from_bits_truncate(flags);
            if flags.contains(MapFlags::WRITABLE) {
                flags.remove(MapFlags::EXECUTABLE);
            }
            Candidate {
                window,
                size,
                slot: slot % slots,
                phys_slot,
                flags,
            }
        },
    )
}

fn covers(m: &Mapping, addr: u64) -> bool {
    addr.wrapping_sub(m.0) < m.2.bytes()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn tables_match_the_mapping_list(
        nested_tables in any::<bool>(),
        candidates in prop::collection::vec(candidate(), 1..40),
        probes in prop::collection::vec((0..4usize, 0..(4 * GIB)), 32),
        victim in any::<usize>(),
    ) {
        let format = if nested_tables { nested() } else { host() };
        let win = windows(nested_tables);
        let mut mem = FakeMemory::new();
        let mut fr = frames();
        let mut pt = PageTables::create(&mut mem, format, &mut fr).unwrap();
        let mut mapped: Vec<Mapping> = Vec::new();
        for c in &candidates {
            let bytes = c.size.bytes();
            let virt = win[c.window] + c.slot * bytes;
            // Physical pages below 2^46, the format's MAXPHYADDR.
            let phys = (c.phys_slot * bytes) % (1 << 46);
            let overlaps = mapped
                .iter()
                .any(|m| virt <= m.0 + (m.2.bytes() - 1) && m.0 <= virt + (bytes - 1));
            let result = pt.map(virt, phys, c.size, c.flags, &mut fr);
            if overlaps {
                prop_assert_eq!(result, Err(MapError::AlreadyMapped(virt)));
            } else {
                prop_assert_eq!(result, Ok(Flush::NotNeeded));
                // What the hardware sees: nested leaves always carry USER.
                let flags = format.leaf_flags(format.leaf_entry(0, c.size, c.flags), c.size);
                mapped.push((virt, phys, c.size, flags));
            }
        }
        mapped.sort();

        // Every mapped page translates back to exactly what was mapped.
        for m in &mapped {
            for offset in [0, m.2.bytes() / 2 + 8, m.2.bytes() - 1] {
                prop_assert_eq!(
                    pt.translate(m.0 + offset),
                    Some(Translation { phys: m.1 + offset, size: m.2, flags: m.3 })
                );
            }
        }
        // The walker yields exactly the mapped set.
        prop_assert_eq!(&mappings(&pt), &mapped);
        // Random addresses translate iff some mapping covers them.
        for (w, off) in probes {
            let addr = win[w] + off;
            let want = mapped.iter().find(|m| covers(m, addr));
            let got = pt.translate(addr);
            prop_assert_eq!(got.is_some(), want.is_some(), "{:#x}", addr);
            if let (Some(t), Some(m)) = (got, want) {
                prop_assert_eq!(t.phys, m.1 + (addr - m.0));
            }
        }
        // Unmapping removes exactly one mapping.
        let gone = mapped.remove(victim % mapped.len());
        let removed = pt.unmap(gone.0).unwrap();
        prop_assert_eq!((removed.phys, removed.size, removed.flags), (gone.1, gone.2, gone.3));
        prop_assert_eq!(pt.translate(gone.0), None);
        prop_assert_eq!(&mappings(&pt), &mapped);
    }
}
