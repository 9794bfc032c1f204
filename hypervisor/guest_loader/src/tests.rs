//! Host tests: a hand-assembled ELF loads and its page tables translate; every malformation
//! gives its error; random bytes never panic.

use std::collections::BTreeMap;
use std::vec;
use std::vec::Vec;

use paging::{LongMode, MAX_PHYS_ADDR_BITS, MapFlags, PageSize, PageTables};
use proptest::prelude::*;
use zerocopy::{FromBytes, FromZeros, IntoBytes};

use crate::elf::{FILE_HEADER_SIZE, FileHeader, PROGRAM_HEADER_SIZE, ProgramHeader};
use crate::load::RamTables;
use crate::*;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// `hlt; jmp $-3` (f4 eb fd): a guest that halts forever.
const CODE: [u8; 3] = [0xF4, 0xEB, 0xFD];

/// One program header to put into a test image, with its file bytes.
#[derive(Clone)]
struct Seg {
    kind: u32,
    flags: u32,
    vaddr: u64,
    paddr: u64,
    data: Vec<u8>,
    memsz: u64,
}

impl Seg {
    fn load(gpa: u64, flags: u32, data: &[u8], memsz: u64) -> Self {
        Self {
            kind: 1,
            flags,
            vaddr: gpa,
            paddr: gpa,
            data: data.to_vec(),
            memsz,
        }
    }
}

/// Builds an ELF64 image: header, program headers, then each segment's bytes.
fn build_elf(entry: u64, segs: &[Seg]) -> Vec<u8> {
    let mut header = FileHeader::new_zeroed();
    header.ident[..8].copy_from_slice(&[0x7F, b'E', b'L', b'F', 2, 1, 1, 0]);
    header.kind = 2;
    header.machine = 62;
    header.version = 1;
    header.entry = entry;
    header.phoff = FILE_HEADER_SIZE as u64;
    header.ehsize = FILE_HEADER_SIZE as u16;
    header.phentsize = PROGRAM_HEADER_SIZE as u16;
    header.phnum = segs.len() as u16;
    let mut out = header.as_bytes().to_vec();
    let mut offset = (FILE_HEADER_SIZE + segs.len() * PROGRAM_HEADER_SIZE) as u64;
    for seg in segs {
        let ph = ProgramHeader {
            kind: seg.kind,
            flags: seg.flags,
            offset,
            vaddr: seg.vaddr,
            paddr: seg.paddr,
            filesz: seg.data.len() as u64,
            memsz: seg.memsz,
            align: 0x1000,
        };
        out.extend_from_slice(ph.as_bytes());
        offset += seg.data.len() as u64;
    }
    for seg in segs {
        out.extend_from_slice(&seg.data);
    }
    out
}

/// Text (R+X) at 2 MiB, data with bss (R+W) at 2 MiB + 8 KiB.
fn tiny_segments() -> Vec<Seg> {
    vec![
        Seg::load(IMAGE_BASE, 5, &CODE, CODE.len() as u64),
        Seg::load(IMAGE_BASE + 0x2000, 6, &[1, 2, 3, 4, 5, 6, 7, 8], 0x1800),
    ]
}

fn tiny_elf() -> Vec<u8> {
    build_elf(IMAGE_BASE, &tiny_segments())
}

const PARAMS: LoadParams<'static> = LoadParams {
    partition_id: 7,
    vp_index: 0,
    args: "memory-pattern 3",
};

fn load_into(elf: &[u8], ram_size: u64) -> Result<(InitialState, FakeRam), LoadError> {
    let mut ram = FakeRam::new(ram_size as usize);
    load(elf, &PARAMS, &mut ram).map(|state| (state, ram))
}

fn start_info(ram: &impl GuestRam) -> StartInfo {
    let mut bytes = [0u8; size_of::<StartInfo>()];
    ram.read(START_INFO_GPA, &mut bytes).unwrap();
    StartInfo::read_from_bytes(&bytes).unwrap()
}

/// Translates `gpa` through the guest's tables, reading them back out of `ram`.
fn translate<R: GuestRam>(ram: &mut R, cr3: u64, gpa: u64) -> Option<paging::Translation> {
    let mut memory = RamTables {
        ram,
        error: core::cell::Cell::new(None),
    };
    let format = LongMode::host(MAX_PHYS_ADDR_BITS).unwrap();
    let tables = PageTables::new(&mut memory, cr3, format).unwrap();
    tables.translate(gpa)
}

fn count_mappings<R: GuestRam>(ram: &mut R, cr3: u64) -> Vec<(u64, u64, PageSize, MapFlags)> {
    let mut memory = RamTables {
        ram,
        error: core::cell::Cell::new(None),
    };
    let format = LongMode::host(MAX_PHYS_ADDR_BITS).unwrap();
    let tables = PageTables::new(&mut memory, cr3, format).unwrap();
    let mut all = Vec::new();
    tables.for_each_mapping(|v, p, size, flags| all.push((v, p, size, flags)));
    all
}

#[test]
fn tiny_image_loads_with_segments_start_info_and_state() {
    let ram_size = 8 * MIB;
    let (state, ram) = load_into(&tiny_elf(), ram_size).unwrap();
    let bytes = ram.bytes();

    // Segments copied to their paddr, bss zero-filled, untouched RAM left alone.
    let base = IMAGE_BASE as usize;
    assert_eq!(&bytes[base..base + 3], &CODE);
    assert_eq!(bytes[base + 3], FakeRam::FILL);
    assert_eq!(
        &bytes[base + 0x2000..base + 0x2008],
        &[1, 2, 3, 4, 5, 6, 7, 8]
    );
    assert!(bytes[base + 0x2008..base + 0x3800].iter().all(|&b| b == 0));
    assert_eq!(bytes[base + 0x3800], FakeRam::FILL);
    assert_eq!(bytes[0], FakeRam::FILL, "page 0 is not written");

    let layout = Layout::new(ram_size).unwrap();
    assert_eq!(layout.table_pages(), 3, "PML4, PDPT, one PD");
    assert_eq!(layout.stack_top(), ram_size - 3 * 4096);

    assert_eq!(
        state,
        InitialState {
            rip: IMAGE_BASE,
            rsp: layout.stack_top(),
            rdi: START_INFO_GPA,
            rflags: 0x2,
            cr3: layout.stack_top(),
            cr0: 0x8001_0033,
            cr4: 0x620,
            efer: 0x500,
            gdtr_base: GDT_GPA,
            gdtr_limit: 23,
            code_selector: 0x08,
            data_selector: 0x10,
        }
    );
    assert_eq!(state.rsp % 16, 0);

    // Stack zeroed.
    let stack = layout.stack();
    assert!(
        bytes[stack.start as usize..stack.end as usize]
            .iter()
            .all(|&b| b == 0)
    );

    // GDT.
    for (i, expected) in GDT.iter().enumerate() {
        assert_eq!(ram.read_u64(GDT_GPA + 8 * i as u64), Some(*expected));
    }
    assert_eq!(ram.read_u64(GDT_GPA + 8), Some(0x00AF_9B00_0000_FFFF));

    // Start info.
    let info = start_info(&ram);
    let view = info.validate().unwrap();
    assert_eq!(view.ram_size, ram_size);
    assert_eq!(view.partition_id, 7);
    assert_eq!(view.vp_index, 0);
    assert_eq!(view.args, "memory-pattern 3");
    assert_eq!(view.image, IMAGE_BASE..IMAGE_BASE + 0x4000);
    assert_eq!(view.free, IMAGE_BASE + 0x4000..stack.start);
    assert_eq!(view.stack_top, state.rsp);
    assert_eq!(view.page_tables, state.cr3);
    assert_eq!(&bytes[0x1000..0x1008], b"MicaStrt");
    // The rest of the start-info page is zero.
    let end = 0x1000 + size_of::<StartInfo>();
    assert!(bytes[end..0x2000].iter().all(|&b| b == 0));
}

#[test]
fn loader_writes_only_the_ranges_it_defines() {
    let ram_size = 6 * MIB;
    let (_, ram) = load_into(&tiny_elf(), ram_size).unwrap();
    let layout = Layout::new(ram_size).unwrap();
    let allowed = [
        IMAGE_BASE..IMAGE_BASE + 3,
        IMAGE_BASE + 0x2000..IMAGE_BASE + 0x3800,
        START_INFO_GPA..START_INFO_GPA + 4096,
        GDT_GPA..GDT_GPA + 4096,
        layout.stack(),
        layout.page_tables(),
    ];
    for &(gpa, len) in ram.writes() {
        let inside = allowed.iter().any(|r| r.start <= gpa && gpa + len <= r.end);
        assert!(inside, "write {gpa:#x}+{len:#x} outside the defined ranges");
    }
}

#[test]
fn page_tables_identity_map_all_of_ram_with_2m_pages() {
    let ram_size = 8 * MIB;
    let (state, mut ram) = load_into(&tiny_elf(), ram_size).unwrap();
    for gpa in [0, 0x1000, 0x1234, IMAGE_BASE + 1, 0x40_0000, ram_size - 1] {
        let t = translate(&mut ram, state.cr3, gpa).unwrap();
        assert_eq!(t.phys, gpa);
        assert_eq!(t.size, PageSize::Size2M);
        assert_eq!(t.flags, MapFlags::WRITABLE | MapFlags::EXECUTABLE);
    }
    assert_eq!(translate(&mut ram, state.cr3, ram_size), None);
    assert_eq!(translate(&mut ram, state.cr3, GIB), None);
    let all = count_mappings(&mut ram, state.cr3);
    assert_eq!(all.len() as u64, ram_size / (2 * MIB));
    assert!(all.iter().all(|&(v, p, _, _)| v == p));
    // The raw PML4 entry points into the table area.
    let pml4e = ram.read_u64(state.cr3).unwrap();
    let pdpt = pml4e & 0x000F_FFFF_FFFF_F000;
    assert!(Layout::new(ram_size).unwrap().page_tables().contains(&pdpt));
    assert_eq!(pml4e & 0x3, 0x3, "present and writable");
}

/// RAM over several GiB, without allocating it: pages materialise on first write.
#[derive(Default)]
struct SparseRam {
    size: u64,
    pages: BTreeMap<u64, Vec<u8>>,
}

impl SparseRam {
    fn page_mut(&mut self, page: u64) -> &mut Vec<u8> {
        self.pages.entry(page).or_insert_with(|| vec![0xCC; 4096])
    }

    fn check(&self, gpa: u64, len: u64) -> Result<(), RamError> {
        match gpa.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(RamError { gpa, len }),
        }
    }
}

impl GuestRam for SparseRam {
    fn ram_size(&self) -> u64 {
        self.size
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), RamError> {
        self.check(gpa, data.len() as u64)?;
        for (i, &b) in data.iter().enumerate() {
            let a = gpa + i as u64;
            self.page_mut(a / 4096)[(a % 4096) as usize] = b;
        }
        Ok(())
    }

    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), RamError> {
        self.check(gpa, buf.len() as u64)?;
        for (i, b) in buf.iter_mut().enumerate() {
            let a = gpa + i as u64;
            *b = self
                .pages
                .get(&(a / 4096))
                .map_or(0xCC, |p| p[(a % 4096) as usize]);
        }
        Ok(())
    }

    fn zero(&mut self, gpa: u64, len: u64) -> Result<(), RamError> {
        self.check(gpa, len)?;
        let mut a = gpa;
        while a < gpa + len {
            let page = a / 4096;
            let off = (a % 4096) as usize;
            let n = (4096 - off as u64).min(gpa + len - a);
            self.page_mut(page)[off..off + n as usize].fill(0);
            a += n;
        }
        Ok(())
    }
}

#[test]
fn large_ram_uses_one_page_directory_per_gib() {
    let ram_size = 5 * GIB + 2 * MIB;
    let mut ram = SparseRam {
        size: ram_size,
        ..SparseRam::default()
    };
    let state = load(&tiny_elf(), &PARAMS, &mut ram).unwrap();
    assert_eq!(Layout::new(ram_size).unwrap().table_pages(), 2 + 6);
    assert_eq!(state.cr3, ram_size - 8 * 4096);
    for gpa in [0, GIB - 1, GIB, 3 * GIB + 0x1234, 5 * GIB, ram_size - 1] {
        let t = translate(&mut ram, state.cr3, gpa).unwrap();
        assert_eq!((t.phys, t.size), (gpa, PageSize::Size2M), "{gpa:#x}");
    }
    assert_eq!(translate(&mut ram, state.cr3, ram_size), None);
    assert_eq!(
        count_mappings(&mut ram, state.cr3).len() as u64,
        ram_size / (2 * MIB)
    );
}

#[test]
fn ram_size_must_be_2m_multiple_between_4m_and_64g() {
    for size in [0, 2 * MIB, 4 * MIB - 4096, 5 * MIB, 65 * GIB, u64::MAX] {
        assert_eq!(
            Layout::new(size),
            Err(LayoutError::BadRamSize(size)),
            "{size:#x}"
        );
    }
    for size in [4 * MIB, 6 * MIB, 64 * GIB] {
        assert!(Layout::new(size).is_ok(), "{size:#x}");
    }
    let mut ram = FakeRam::new(3 * MIB as usize);
    assert_eq!(
        load(&tiny_elf(), &PARAMS, &mut ram),
        Err(LoadError::Layout(LayoutError::BadRamSize(3 * MIB)))
    );
}

fn parse_err(bytes: &[u8]) -> ElfError {
    ElfImage::parse(bytes).unwrap_err()
}

/// The tiny image with one byte of the file header patched.
fn patched(offset: usize, value: &[u8]) -> Vec<u8> {
    let mut elf = tiny_elf();
    elf[offset..offset + value.len()].copy_from_slice(value);
    elf
}

#[test]
fn header_malformations_give_their_errors() {
    assert_eq!(parse_err(&[]), ElfError::Truncated);
    assert_eq!(parse_err(&tiny_elf()[..63]), ElfError::Truncated);
    assert_eq!(parse_err(&patched(0, b"\x7fELG")), ElfError::BadMagic);
    assert_eq!(parse_err(&patched(4, &[1])), ElfError::BadClass(1));
    assert_eq!(parse_err(&patched(5, &[2])), ElfError::BadEndianness(2));
    assert_eq!(parse_err(&patched(6, &[0])), ElfError::BadVersion);
    assert_eq!(parse_err(&patched(20, &[2, 0, 0, 0])), ElfError::BadVersion);
    // ET_DYN (a PIE) and ET_REL are refused.
    assert_eq!(parse_err(&patched(16, &[3, 0])), ElfError::NotExecutable(3));
    assert_eq!(parse_err(&patched(16, &[1, 0])), ElfError::NotExecutable(1));
    assert_eq!(parse_err(&patched(18, &[3, 0])), ElfError::BadMachine(3));
    assert_eq!(
        parse_err(&patched(54, &[32, 0])),
        ElfError::BadProgramHeaderSize(32)
    );
    assert_eq!(
        parse_err(&patched(56, &[65, 0])),
        ElfError::TooManyProgramHeaders(65)
    );
    assert_eq!(
        parse_err(&patched(56, &[0xFF, 0xFF])),
        ElfError::TooManyProgramHeaders(0xFFFF)
    );
    // Program headers beyond the file, or at an offset that overflows.
    assert_eq!(
        parse_err(&patched(56, &[60, 0])),
        ElfError::ProgramHeadersOutOfFile
    );
    assert_eq!(
        parse_err(&patched(32, &u64::MAX.to_le_bytes())),
        ElfError::ProgramHeadersOutOfFile
    );
    assert_eq!(
        parse_err(&patched(56, &[0, 0])),
        ElfError::NoLoadableSegments
    );
}

#[test]
fn segment_malformations_give_their_errors() {
    let with = |f: &dyn Fn(&mut Vec<Seg>)| {
        let mut segs = tiny_segments();
        f(&mut segs);
        parse_err(&build_elf(IMAGE_BASE, &segs))
    };
    assert_eq!(
        with(&|s| s[1].memsz = 4),
        ElfError::FileSizeExceedsMemSize { index: 1 }
    );
    assert_eq!(
        with(&|s| s[0].paddr = u64::MAX - 1),
        ElfError::AddressOverflow { index: 0 }
    );
    assert_eq!(
        with(&|s| s[1].vaddr += 0x1000),
        ElfError::VirtualPhysicalMismatch { index: 1 }
    );
    assert_eq!(
        with(&|s| {
            s[1].paddr = IMAGE_BASE + 2;
            s[1].vaddr = IMAGE_BASE + 2;
        }),
        ElfError::SegmentsOverlap {
            first: 0,
            second: 1
        }
    );
    assert_eq!(
        with(&|s| s[1].kind = 3),
        ElfError::DynamicImage { index: 1 }
    );
    assert_eq!(
        with(&|s| s[0].kind = 2),
        ElfError::DynamicImage { index: 0 }
    );
    // Too many loadable segments (each non-empty and disjoint).
    assert_eq!(
        with(&|s| {
            s.truncate(1);
            for i in 1..=MAX_LOAD_SEGMENTS as u64 {
                s.push(Seg::load(IMAGE_BASE + i * 0x1000, 4, &[], 16));
            }
        }),
        ElfError::TooManySegments
    );
    // A segment's file bytes beyond the end of the file.
    let mut elf = tiny_elf();
    let ph1 = FILE_HEADER_SIZE + PROGRAM_HEADER_SIZE;
    let near_end = elf.len() as u64 - 4;
    elf[ph1 + 8..ph1 + 16].copy_from_slice(&near_end.to_le_bytes());
    assert_eq!(parse_err(&elf), ElfError::SegmentOutOfFile { index: 1 });
    elf[ph1 + 8..ph1 + 16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(parse_err(&elf), ElfError::SegmentOutOfFile { index: 1 });
}

#[test]
fn ignored_and_empty_headers_are_skipped() {
    let mut segs = tiny_segments();
    // A PT_NOTE, a PT_GNU_STACK and an empty PT_LOAD at an absurd address.
    segs.push(Seg {
        kind: 4,
        ..Seg::load(0, 4, &[9; 4], 4)
    });
    segs.push(Seg {
        kind: 0x6474_E551,
        ..Seg::load(0, 6, &[], 0)
    });
    segs.push(Seg::load(u64::MAX - 8, 4, &[], 0));
    let elf = build_elf(IMAGE_BASE, &segs);
    let image = ElfImage::parse(&elf).unwrap();
    assert_eq!(image.segments().len(), 2);
    assert_eq!(image.start(), IMAGE_BASE);
    assert_eq!(image.end(), IMAGE_BASE + 0x3800);
    assert!(load_into(&elf, 4 * MIB).is_ok());
}

#[test]
fn entry_must_be_in_file_bytes_of_an_executable_segment() {
    let segs = tiny_segments();
    for entry in [
        IMAGE_BASE + 3,      // past the code's file bytes
        IMAGE_BASE + 0x2000, // in the data segment (not executable)
        IMAGE_BASE - 1,
        0,
    ] {
        assert_eq!(
            parse_err(&build_elf(entry, &segs)),
            ElfError::EntryOutsideExecutableSegment(entry)
        );
    }
    assert!(ElfImage::parse(&build_elf(IMAGE_BASE + 2, &segs)).is_ok());
}

#[test]
fn segments_must_fit_ram_and_avoid_reserved_regions() {
    let ram_size = 4 * MIB;
    let layout = Layout::new(ram_size).unwrap();
    let place = |gpa: u64, memsz: u64| {
        let segs = vec![Seg::load(gpa, 5, &CODE, memsz)];
        load_into(&build_elf(gpa, &segs), ram_size).map(|_| ())
    };
    assert_eq!(
        place(ram_size - 2, 3),
        Err(LoadError::SegmentBeyondRam { index: 0 })
    );
    assert_eq!(
        place(8 * MIB, 3),
        Err(LoadError::SegmentBeyondRam { index: 0 })
    );
    let reserved = |region| Err(LoadError::SegmentOverlapsReserved { index: 0, region });
    assert_eq!(place(START_INFO_GPA + 8, 3), reserved(Region::BootPages));
    assert_eq!(place(GDT_GPA, 3), reserved(Region::BootPages));
    assert_eq!(place(0x2FFE, 3), reserved(Region::BootPages));
    assert_eq!(place(layout.stack().start, 3), reserved(Region::Stack));
    assert_eq!(place(layout.stack().start - 2, 3), reserved(Region::Stack));
    assert_eq!(place(layout.stack_top(), 3), reserved(Region::PageTables));
    // Just fits: up to the stack, and just above the boot pages.
    assert_eq!(place(layout.stack().start - 3, 3), Ok(()));
    assert_eq!(place(BOOT_PAGES_END, 3), Ok(()));
}

#[test]
fn argument_string_is_bounded() {
    let long = "x".repeat(ARGS_MAX + 1);
    let mut ram = FakeRam::new(4 * MIB as usize);
    let params = LoadParams {
        args: &long,
        ..PARAMS
    };
    assert_eq!(
        load(&tiny_elf(), &params, &mut ram),
        Err(LoadError::ArgsTooLong(ARGS_MAX + 1))
    );
    assert!(ram.writes().is_empty(), "nothing written on error");
    let max = "é".repeat(ARGS_MAX / 2);
    let params = LoadParams {
        args: &max,
        ..PARAMS
    };
    load(&tiny_elf(), &params, &mut ram).unwrap();
    assert_eq!(start_info(&ram).validate().unwrap().args, max);
}

#[test]
fn start_info_validation_rejects_each_corruption() {
    let (_, ram) = load_into(&tiny_elf(), 4 * MIB).unwrap();
    let good = start_info(&ram);
    assert!(good.validate().is_ok());
    let check = |f: &dyn Fn(&mut StartInfo), expected: StartInfoError| {
        let mut info = good;
        f(&mut info);
        assert_eq!(info.validate(), Err(expected));
    };
    check(&|i| i.magic = 0, StartInfoError::BadMagic(0));
    check(&|i| i.version = 2, StartInfoError::UnsupportedVersion(2));
    check(&|i| i.size = 80, StartInfoError::BadSize(80));
    check(&|i| i.args_len = 513, StartInfoError::ArgsTooLong(513));
    check(
        &|i| i.args_len = u32::MAX,
        StartInfoError::ArgsTooLong(u32::MAX),
    );
    check(&|i| i.args[0] = 0xFF, StartInfoError::ArgsNotUtf8);
    check(&|i| i.image_end = i.free_end + 1, StartInfoError::BadRanges);
    check(&|i| i.page_tables = i.ram_size, StartInfoError::BadRanges);
    check(&|i| i.stack_top += 16, StartInfoError::BadRanges);
    check(&|i| i.image_start = 0, StartInfoError::BadRanges);
}

#[test]
fn failing_ram_is_reported_not_panicked() {
    /// RAM that refuses every access above 3 MiB (so the page-table area fails).
    struct Broken(FakeRam);
    impl GuestRam for Broken {
        fn ram_size(&self) -> u64 {
            self.0.ram_size()
        }
        fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), RamError> {
            self.refuse(gpa, data.len() as u64)?;
            self.0.write(gpa, data)
        }
        fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), RamError> {
            self.refuse(gpa, buf.len() as u64)?;
            self.0.read(gpa, buf)
        }
        fn zero(&mut self, gpa: u64, len: u64) -> Result<(), RamError> {
            self.0.zero(gpa, len)
        }
    }
    impl Broken {
        fn refuse(&self, gpa: u64, len: u64) -> Result<(), RamError> {
            if gpa >= 3 * MIB {
                Err(RamError { gpa, len })
            } else {
                Ok(())
            }
        }
    }
    let mut ram = Broken(FakeRam::new(4 * MIB as usize));
    assert!(matches!(
        load(&tiny_elf(), &PARAMS, &mut ram),
        Err(LoadError::Ram(RamError { gpa, .. })) if gpa >= 3 * MIB
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = ElfImage::parse(&bytes);
        let mut ram = FakeRam::new(4 * MIB as usize);
        prop_assert!(load(&bytes, &PARAMS, &mut ram).is_err());
    }

    /// Random corruption of a valid image: never a panic, and whatever loads still obeys
    /// the layout (segments in RAM, outside the reserved regions, entry executable).
    #[test]
    fn corrupted_images_load_only_within_the_layout(
        edits in proptest::collection::vec((0usize..256, any::<u8>()), 1..8),
    ) {
        let mut elf = tiny_elf();
        for (pos, value) in edits {
            let len = elf.len();
            elf[pos % len] = value;
        }
        let ram_size = 4 * MIB;
        let mut ram = FakeRam::new(ram_size as usize);
        if let Ok(state) = load(&elf, &PARAMS, &mut ram) {
            let image = ElfImage::parse(&elf).unwrap();
            let layout = Layout::new(ram_size).unwrap();
            for s in image.segments() {
                prop_assert!(s.end() <= ram_size);
                prop_assert_eq!(layout.overlapped_region(s.gpa, s.end()), None);
            }
            prop_assert!(image.segments().iter().any(|s| s.flags.execute
                && s.gpa <= state.rip && state.rip < s.gpa + s.file_size));
            prop_assert!(start_info(&ram).validate().is_ok());
        }
    }

    #[test]
    fn tables_translate_every_ram_size(pages in 2u64..=40, probe in any::<u64>()) {
        let ram_size = pages * 2 * MIB;
        let mut ram = SparseRam { size: ram_size, ..SparseRam::default() };
        let state = load(&tiny_elf(), &PARAMS, &mut ram).unwrap();
        let gpa = probe % (ram_size * 2);
        let t = translate(&mut ram, state.cr3, gpa);
        if gpa < ram_size {
            prop_assert_eq!(t.map(|t| t.phys), Some(gpa));
        } else {
            prop_assert_eq!(t, None);
        }
    }
}
