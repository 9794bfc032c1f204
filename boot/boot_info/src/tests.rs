//! Host tests: Multiboot1 and Multiboot2 structures built in fake physical memory.

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use proptest::prelude::*;

use crate::*;

// ---------------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------------

const MB1_INFO: u64 = 0x9000;
const MB1_CMDLINE: u64 = 0x9100;
const MB1_LOADER_NAME: u64 = 0x9A00;
const MB1_MODS: u64 = 0x9B00;
const MB1_MOD_STRINGS: u64 = 0xA000;
const MB1_MMAP: u64 = 0xD000;

/// Multiboot1 information; `None` fields leave their flag clear.
#[derive(Default)]
struct Mb1 {
    mem: Option<(u32, u32)>,
    cmdline: Option<String>,
    loader_name: Option<String>,
    /// (start, end, string)
    modules: Option<Vec<(u32, u32, String)>>,
    /// (base, len, type)
    mmap: Option<Vec<(u64, u64, u32)>>,
}

impl Mb1 {
    fn build(&self) -> FakePhys {
        let mut mem = FakePhys::new();
        let mut f = [0u32; 17];
        if let Some((lower, upper)) = self.mem {
            f[0] |= 1;
            f[1] = lower;
            f[2] = upper;
        }
        if let Some(c) = &self.cmdline {
            f[0] |= 1 << 2;
            f[4] = MB1_CMDLINE as u32;
            mem.write_cstr(MB1_CMDLINE, c);
        }
        if let Some(mods) = &self.modules {
            f[0] |= 1 << 3;
            f[5] = mods.len() as u32;
            f[6] = MB1_MODS as u32;
            for (i, (start, end, s)) in mods.iter().enumerate() {
                let string = MB1_MOD_STRINGS + 0x200 * i as u64;
                let entry = [*start, *end, string as u32, 0];
                mem.write(MB1_MODS + 16 * i as u64, &words(&entry));
                mem.write_cstr(string, s);
            }
        }
        if let Some(entries) = &self.mmap {
            let mut bytes = Vec::new();
            for (base, len, kind) in entries {
                bytes.extend_from_slice(&20u32.to_le_bytes());
                bytes.extend_from_slice(&base.to_le_bytes());
                bytes.extend_from_slice(&len.to_le_bytes());
                bytes.extend_from_slice(&kind.to_le_bytes());
            }
            f[0] |= 1 << 6;
            f[11] = bytes.len() as u32;
            f[12] = MB1_MMAP as u32;
            mem.write(MB1_MMAP, &bytes);
        }
        if let Some(n) = &self.loader_name {
            f[0] |= 1 << 9;
            f[16] = MB1_LOADER_NAME as u32;
            mem.write_cstr(MB1_LOADER_NAME, n);
        }
        mem.write(MB1_INFO, &words(&f));
        mem
    }
}

fn words(w: &[u32]) -> Vec<u8> {
    w.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A typical QEMU-like map: low RAM, BIOS hole, high RAM, ACPI areas (deliberately unsorted).
fn qemu_like_mmap() -> Vec<(u64, u64, u32)> {
    vec![
        (0x10_0000, 0x7ee_0000, 1),
        (0, 0x9_fc00, 1),
        (0x9_fc00, 0x400, 2),
        (0xf_0000, 0x1_0000, 2),
        (0x7fe_0000, 0x1_0000, 3),
        (0x7ff_0000, 0x1_0000, 4),
        (0xfffc_0000, 0x4_0000, 2),
    ]
}

fn parse_mb1(mem: &FakePhys) -> Result<BootInfo, BootInfoError> {
    parse(mem, MULTIBOOT1_MAGIC, MB1_INFO as u32)
}

const MB2_INFO: u64 = 0x1_0000;

/// Multiboot2 information as a list of tags; [`Mb2::build`] adds the header and end tag.
#[derive(Default)]
struct Mb2 {
    tags: Vec<u8>,
}

impl Mb2 {
    fn tag(mut self, kind: u32, payload: &[u8]) -> Self {
        let size = 8 + payload.len() as u32;
        self.tags.extend_from_slice(&kind.to_le_bytes());
        self.tags.extend_from_slice(&size.to_le_bytes());
        self.tags.extend_from_slice(payload);
        while !self.tags.len().is_multiple_of(8) {
            self.tags.push(0);
        }
        self
    }

    fn string_tag(self, kind: u32, s: &str) -> Self {
        let mut p = s.as_bytes().to_vec();
        p.push(0);
        self.tag(kind, &p)
    }

    fn cmdline(self, s: &str) -> Self {
        self.string_tag(1, s)
    }

    fn module(self, start: u32, end: u32, s: &str) -> Self {
        let mut p = words(&[start, end]);
        p.extend_from_slice(s.as_bytes());
        p.push(0);
        self.tag(3, &p)
    }

    fn mmap(self, entry_size: u32, entries: &[(u64, u64, u32)]) -> Self {
        let mut p = words(&[entry_size, 0]);
        for (base, len, kind) in entries {
            let start = p.len();
            p.extend_from_slice(&base.to_le_bytes());
            p.extend_from_slice(&len.to_le_bytes());
            p.extend_from_slice(&kind.to_le_bytes());
            p.resize(start + entry_size as usize, 0);
        }
        self.tag(6, &p)
    }

    fn basic_meminfo(self, lower: u32, upper: u32) -> Self {
        self.tag(4, &words(&[lower, upper]))
    }

    /// Header + tags + end tag, as bytes.
    fn bytes(&self) -> Vec<u8> {
        let mut b = words(&[0, 0]);
        b.extend_from_slice(&self.tags);
        b.extend_from_slice(&words(&[0, 8]));
        let total = b.len() as u32;
        b[..4].copy_from_slice(&total.to_le_bytes());
        b
    }

    fn build(&self) -> FakePhys {
        let mut mem = FakePhys::new();
        mem.write(MB2_INFO, &self.bytes());
        mem
    }
}

fn parse_mb2(mem: &FakePhys) -> Result<BootInfo, BootInfoError> {
    parse(mem, MULTIBOOT2_MAGIC, MB2_INFO as u32)
}

fn rsdp_v1(rsdt: u32) -> Vec<u8> {
    let mut b = b"RSD PTR ".to_vec();
    b.push(0); // checksum, fixed below
    b.extend_from_slice(b"MICAOE");
    b.push(0); // revision 0
    b.extend_from_slice(&rsdt.to_le_bytes());
    b[8] = 0u8.wrapping_sub(b.iter().fold(0u8, |a, x| a.wrapping_add(*x)));
    b
}

fn rsdp_v2(rsdt: u32, xsdt: u64) -> Vec<u8> {
    let mut b = rsdp_v1(rsdt);
    b[15] = 2;
    b[8] = 0;
    b[8] = 0u8.wrapping_sub(b.iter().fold(0u8, |a, x| a.wrapping_add(*x)));
    b.extend_from_slice(&36u32.to_le_bytes());
    b.extend_from_slice(&xsdt.to_le_bytes());
    b.extend_from_slice(&[0, 0, 0, 0]);
    b[32] = 0u8.wrapping_sub(b.iter().fold(0u8, |a, x| a.wrapping_add(*x)));
    b
}

fn region(start: u64, len: u64, kind: MemoryKind) -> MemoryRegion {
    MemoryRegion { start, len, kind }
}

// ---------------------------------------------------------------------------------------------
// Dispatch
// ---------------------------------------------------------------------------------------------

#[test]
fn unknown_magic_names_seen_and_expected() {
    let mem = FakePhys::new();
    let e = parse(&mem, 0x1BADB002, 0x9000).unwrap_err();
    assert_eq!(e, BootInfoError::UnknownMagic { seen: 0x1BADB002 });
    assert_eq!(
        e.to_string(),
        "Unknown boot loader magic 0x1badb002 (expected 0x2badb002 for Multiboot1 or 0x36d76289 for Multiboot2)"
    );
}

#[test]
fn null_info_pointer_is_rejected() {
    let mem = FakePhys::new();
    assert_eq!(
        parse(&mem, MULTIBOOT1_MAGIC, 0),
        Err(BootInfoError::NullInfo)
    );
    assert_eq!(
        parse(&mem, MULTIBOOT2_MAGIC, 0),
        Err(BootInfoError::NullInfo)
    );
}

#[test]
fn unreadable_info_is_reported_with_its_address() {
    let mem = FakePhys::new();
    assert_eq!(
        parse_mb1(&mem),
        Err(BootInfoError::Unreadable {
            phys: MB1_INFO,
            len: 68
        })
    );
    assert_eq!(
        parse_mb2(&mem),
        Err(BootInfoError::Unreadable {
            phys: MB2_INFO,
            len: 8
        })
    );
}

// ---------------------------------------------------------------------------------------------
// Multiboot1
// ---------------------------------------------------------------------------------------------

fn full_mb1() -> Mb1 {
    Mb1 {
        mem: Some((639, 130_048)),
        cmdline: Some("/boot/mica.elf log=debug pool=64M".to_string()),
        loader_name: Some("qemu".to_string()),
        modules: Some(vec![
            (
                0x20_0000,
                0x90_0000,
                "root-linux console=ttyS0 nokaslr".to_string(),
            ),
            (0x90_0000, 0x90_0000, "empty".to_string()),
        ]),
        mmap: Some(qemu_like_mmap()),
    }
}

#[test]
fn mb1_well_formed_parses_to_typed_values() {
    let info = parse_mb1(&full_mb1().build()).unwrap();
    assert_eq!(info.loader, Loader::Multiboot1);
    assert_eq!(info.loader_name, "qemu");
    assert_eq!(info.cmdline, "/boot/mica.elf log=debug pool=64M");
    assert_eq!(
        info.basic_memory,
        Some(BasicMemory {
            lower_kib: 639,
            upper_kib: 130_048
        })
    );
    assert_eq!(info.rsdp, None);
    assert_eq!(info.load_base, None);

    assert_eq!(info.modules.len(), 2);
    let root = &info.modules[0];
    assert_eq!(
        (root.start, root.end, root.len()),
        (0x20_0000, 0x90_0000, 0x70_0000)
    );
    assert_eq!(root.name(), "root-linux");
    assert_eq!(root.args(), "console=ttyS0 nokaslr");
    assert!(info.modules[1].is_empty());
    assert_eq!(info.module("empty").map(|m| m.start), Some(0x90_0000));
    assert!(info.module("missing").is_none());

    use MemoryKind::*;
    assert_eq!(
        info.memory_map.regions(),
        &[
            region(0, 0x9_fc00, Usable),
            region(0x9_fc00, 0x400, Reserved),
            region(0xf_0000, 0x1_0000, Reserved),
            region(0x10_0000, 0x7ee_0000, Usable),
            region(0x7fe_0000, 0x1_0000, AcpiReclaimable),
            region(0x7ff_0000, 0x1_0000, AcpiNvs),
            region(0xfffc_0000, 0x4_0000, Reserved),
        ]
    );
    let usable: Vec<_> = info
        .memory_map
        .usable()
        .map(|r| (r.start, r.end()))
        .collect();
    assert_eq!(usable, vec![(0, 0x9_fc00), (0x10_0000, 0x7fe_0000)]);
    assert_eq!(info.memory_map.total_usable(), 0x9_fc00 + 0x7ee_0000);

    let cmd = cmdline::parse(&info.cmdline).unwrap();
    assert_eq!(cmd.log_level, cmdline::LogLevel::Debug);
    assert_eq!(cmd.child_pool, Some(64 << 20));
}

#[test]
fn mb1_without_mmap_falls_back_to_mem_lower_upper() {
    let mb = Mb1 {
        mem: Some((640, 0x1_0000)),
        ..Default::default()
    };
    let info = parse_mb1(&mb.build()).unwrap();
    assert_eq!(
        info.memory_map.regions(),
        &[
            region(0, 640 * 1024, MemoryKind::Usable),
            region(0x10_0000, 64 << 20, MemoryKind::Usable)
        ]
    );
    assert_eq!(info.cmdline, "");
    assert!(info.modules.is_empty());
    assert_eq!(info.loader_name, "");
}

#[test]
fn mb1_empty_mmap_also_falls_back() {
    let mb = Mb1 {
        mem: Some((0, 1024)),
        mmap: Some(vec![]),
        ..Default::default()
    };
    let info = parse_mb1(&mb.build()).unwrap();
    assert_eq!(
        info.memory_map.regions(),
        &[region(0x10_0000, 1 << 20, MemoryKind::Usable)]
    );
}

#[test]
fn mb1_without_any_memory_information_is_an_error() {
    let mb = Mb1 {
        cmdline: Some(String::new()),
        ..Default::default()
    };
    assert_eq!(parse_mb1(&mb.build()), Err(BootInfoError::NoMemoryMap));
    let mb = Mb1 {
        mem: Some((0, 0)),
        ..Default::default()
    };
    assert_eq!(parse_mb1(&mb.build()), Err(BootInfoError::NoMemoryMap));
}

#[test]
fn mb1_skips_zero_length_regions_and_maps_unknown_types_to_reserved() {
    let mb = Mb1 {
        mmap: Some(vec![
            (0x1000, 0, 1),
            (0x2000, 0x1000, 7),
            (0x3000, 0x1000, 5),
        ]),
        ..Default::default()
    };
    let info = parse_mb1(&mb.build()).unwrap();
    assert_eq!(
        info.memory_map.regions(),
        &[
            region(0x2000, 0x1000, MemoryKind::Reserved),
            region(0x3000, 0x1000, MemoryKind::BadMemory)
        ]
    );
    assert_eq!(info.memory_map.usable().count(), 0);
}

#[test]
fn mb1_mmap_entries_honour_their_size_field() {
    // An entry with size 24 (4 bytes beyond base/len/type) followed by a normal one.
    let mut mem = Mb1 {
        mmap: Some(vec![]),
        ..Default::default()
    }
    .build();
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&24u32.to_le_bytes());
    bytes.extend_from_slice(&0u64.to_le_bytes());
    bytes.extend_from_slice(&0x8000u64.to_le_bytes());
    bytes.extend_from_slice(&words(&[1, 0xdead]));
    bytes.extend_from_slice(&20u32.to_le_bytes());
    bytes.extend_from_slice(&0x10_0000u64.to_le_bytes());
    bytes.extend_from_slice(&0x1000u64.to_le_bytes());
    bytes.extend_from_slice(&3u32.to_le_bytes());
    mem.write(MB1_MMAP, &bytes);
    mem.write_u32(MB1_INFO + 44, bytes.len() as u32);
    let info = parse_mb1(&mem).unwrap();
    assert_eq!(
        info.memory_map.regions(),
        &[
            region(0, 0x8000, MemoryKind::Usable),
            region(0x10_0000, 0x1000, MemoryKind::AcpiReclaimable)
        ]
    );
}

#[test]
fn mb1_mmap_entry_too_small_is_rejected() {
    let mut mem = full_mb1().build();
    mem.write_u32(MB1_MMAP, 12);
    assert_eq!(
        parse_mb1(&mem),
        Err(BootInfoError::BadMb1MmapEntry {
            addr: MB1_MMAP,
            size: 12
        })
    );
}

#[test]
fn mb1_mmap_entry_past_mmap_length_is_rejected() {
    let mut mem = full_mb1().build();
    // Cut the map in the middle of the second entry.
    mem.write_u32(MB1_INFO + 44, 24 + 10);
    assert_eq!(
        parse_mb1(&mem),
        Err(BootInfoError::BadMb1MmapEntry {
            addr: MB1_MMAP + 24,
            size: 20
        })
    );
    // A tail too short to hold even the size field.
    mem.write_u32(MB1_INFO + 44, 24 + 2);
    assert_eq!(
        parse_mb1(&mem),
        Err(BootInfoError::BadMb1MmapEntry {
            addr: MB1_MMAP + 24,
            size: 0
        })
    );
}

#[test]
fn mb1_huge_mmap_length_is_rejected() {
    let mut mem = full_mb1().build();
    mem.write_u32(MB1_INFO + 44, 0xFFFF_FFF0);
    assert_eq!(
        parse_mb1(&mem),
        Err(BootInfoError::MmapTooLarge {
            length: 0xFFFF_FFF0,
            max: MB1_MMAP_MAX
        })
    );
}

#[test]
fn mb1_too_many_regions_names_the_cap() {
    let entries: Vec<_> = (0..=MAX_MEMORY_REGIONS as u64)
        .map(|i| (i * 0x1000, 0x1000, 1))
        .collect();
    let mb = Mb1 {
        mmap: Some(entries),
        ..Default::default()
    };
    let e = parse_mb1(&mb.build()).unwrap_err();
    assert_eq!(e, BootInfoError::TooManyRegions { cap: 128 });
    assert_eq!(
        e.to_string(),
        "Too many memory regions (at most 128 supported)"
    );
}

#[test]
fn mb1_exactly_max_regions_fit() {
    let entries: Vec<_> = (0..MAX_MEMORY_REGIONS as u64)
        .rev()
        .map(|i| (i * 0x1000, 0x1000, 1))
        .collect();
    let mb = Mb1 {
        mmap: Some(entries),
        ..Default::default()
    };
    let info = parse_mb1(&mb.build()).unwrap();
    assert_eq!(info.memory_map.len(), MAX_MEMORY_REGIONS);
    assert!(
        info.memory_map
            .regions()
            .windows(2)
            .all(|w| w[0].start < w[1].start)
    );
}

#[test]
fn mb1_region_wrapping_the_address_space_is_rejected() {
    let mb = Mb1 {
        mmap: Some(vec![(u64::MAX - 0xfff, 0x2000, 1)]),
        ..Default::default()
    };
    assert_eq!(
        parse_mb1(&mb.build()),
        Err(BootInfoError::RegionOverflow {
            start: u64::MAX - 0xfff,
            len: 0x2000
        })
    );
}

#[test]
fn mb1_too_many_modules_names_count_and_cap() {
    let mods = (0..17)
        .map(|i| (i * 0x1000, i * 0x1000 + 0x10, "m".to_string()))
        .collect();
    let mb = Mb1 {
        mem: Some((640, 1024)),
        modules: Some(mods),
        ..Default::default()
    };
    let e = parse_mb1(&mb.build()).unwrap_err();
    assert_eq!(e, BootInfoError::TooManyModules { count: 17, cap: 16 });
    assert_eq!(
        e.to_string(),
        "Too many boot modules: 17 (at most 16 supported)"
    );
}

#[test]
fn mb1_module_ending_before_its_start_is_rejected() {
    let mb = Mb1 {
        mem: Some((640, 1024)),
        modules: Some(vec![
            (0x1000, 0x2000, "a".into()),
            (0x5000, 0x4fff, "b".into()),
        ]),
        ..Default::default()
    };
    assert_eq!(
        parse_mb1(&mb.build()),
        Err(BootInfoError::ModuleEndBeforeStart {
            index: 1,
            start: 0x5000,
            end: 0x4fff
        })
    );
}

#[test]
fn mb1_module_with_null_string_has_empty_cmdline() {
    let mut mem = Mb1 {
        mem: Some((640, 1024)),
        modules: Some(vec![(0, 0x10, "x".into())]),
        ..Default::default()
    }
    .build();
    mem.write_u32(MB1_MODS + 8, 0);
    let info = parse_mb1(&mem).unwrap();
    assert_eq!(info.modules[0].cmdline, "");
    assert_eq!(info.modules[0].name(), "");
}

#[test]
fn mb1_cmdline_without_terminator_within_cap_is_rejected() {
    let mut mem = Mb1 {
        mem: Some((640, 1024)),
        cmdline: Some(String::new()),
        ..Default::default()
    }
    .build();
    mem.write(MB1_CMDLINE, &[b'a'; 2000]);
    let e = parse_mb1(&mem).unwrap_err();
    assert_eq!(
        e,
        BootInfoError::StringNotTerminated {
            which: StringKind::Cmdline,
            cap: CMDLINE_MAX + 1
        }
    );
    assert_eq!(
        e.to_string(),
        "The hypervisor command line is not NUL-terminated within 1025 bytes"
    );
}

#[test]
fn mb1_cmdline_of_exactly_cap_bytes_fits() {
    let long = "a".repeat(CMDLINE_MAX);
    let mb = Mb1 {
        mem: Some((640, 1024)),
        cmdline: Some(long.clone()),
        ..Default::default()
    };
    assert_eq!(parse_mb1(&mb.build()).unwrap().cmdline.as_str(), long);
}

#[test]
fn mb1_cmdline_not_utf8_is_rejected() {
    let mut mem = Mb1 {
        mem: Some((640, 1024)),
        cmdline: Some(String::new()),
        ..Default::default()
    }
    .build();
    mem.write(MB1_CMDLINE, &[b'o', b'k', 0xff, 0xfe, 0]);
    assert_eq!(
        parse_mb1(&mem),
        Err(BootInfoError::StringNotUtf8 {
            which: StringKind::Cmdline
        })
    );
}

#[test]
fn mb1_cmdline_running_into_unreadable_memory_is_rejected() {
    let mut mem = Mb1 {
        mem: Some((640, 1024)),
        ..Default::default()
    }
    .build();
    mem.write_u32(MB1_INFO, 1 | 1 << 2);
    mem.write_u32(MB1_INFO + 16, 0x7000_0000);
    mem.write(0x7000_0000, b"abc"); // no terminator, then nothing
    assert_eq!(
        parse_mb1(&mem),
        Err(BootInfoError::Unreadable {
            phys: 0x7000_0003,
            len: 1
        })
    );
}

#[test]
fn mb1_module_cmdline_too_long_is_rejected() {
    let mut mem = Mb1 {
        mem: Some((640, 1024)),
        modules: Some(vec![(0, 1, String::new())]),
        ..Default::default()
    }
    .build();
    mem.write_cstr(MB1_MOD_STRINGS, &"x".repeat(400));
    assert_eq!(
        parse_mb1(&mem),
        Err(BootInfoError::StringNotTerminated {
            which: StringKind::Module(0),
            cap: MODULE_CMDLINE_MAX + 1
        })
    );
}

#[test]
fn mb1_long_or_broken_loader_name_is_cut_not_fatal() {
    let mut mem = Mb1 {
        mem: Some((640, 1024)),
        loader_name: Some("L".repeat(200)),
        ..Default::default()
    }
    .build();
    assert_eq!(
        parse_mb1(&mem).unwrap().loader_name.as_str(),
        "L".repeat(LOADER_NAME_MAX)
    );
    mem.write(MB1_LOADER_NAME, &[b'G', b'R', 0xC3, 0]);
    assert_eq!(parse_mb1(&mem).unwrap().loader_name, "GR");
}

#[test]
fn mb1_finds_rsdp_in_bios_area() {
    let mut mem = Mb1 {
        mem: Some((640, 1024)),
        ..Default::default()
    }
    .build();
    // A decoy with the signature but a bad checksum, then the real one.
    let mut bad = rsdp_v1(0x1234);
    bad[8] ^= 1;
    mem.write(0xE_0000, &bad);
    mem.write(0xF_5A40, &rsdp_v2(0x7FE_1000, 0x7FE_2000));
    let info = parse_mb1(&mem).unwrap();
    let rsdp = info.rsdp.unwrap();
    assert_eq!(rsdp.phys, 0xF_5A40);
    assert_eq!(rsdp.source, RsdpSource::BiosScan);
    assert_eq!(rsdp.revision, 2);
    assert_eq!(rsdp.rsdt_address, 0x7FE_1000);
    assert_eq!(rsdp.xsdt_address, Some(0x7FE_2000));
    assert_eq!(&rsdp.oem_id, b"MICAOE");
}

#[test]
fn bios_scan_checks_the_ebda_first() {
    let mut mem = FakePhys::new();
    mem.write(0x40E, &0x9FC0u16.to_le_bytes());
    mem.write(0x9_FC00 + 0x20, &rsdp_v1(0xAAAA));
    mem.write(0xF_0000, &rsdp_v1(0xBBBB));
    let rsdp = find_rsdp_in_bios_area(&mem).unwrap();
    assert_eq!(
        (rsdp.phys, rsdp.rsdt_address, rsdp.xsdt_address),
        (0x9_FC20, 0xAAAA, None)
    );
}

// ---------------------------------------------------------------------------------------------
// Multiboot2
// ---------------------------------------------------------------------------------------------

fn full_mb2() -> Mb2 {
    Mb2::default()
        .cmdline("log=trace launch=guest")
        .string_tag(2, "GRUB 2.06")
        .tag(21, &0x20_0000u32.to_le_bytes())
        .module(0x100_0000, 0x180_0000, "root-linux console=ttyS0")
        .tag(8, &[0xAB; 13]) // framebuffer: unknown here, odd size, skipped
        .module(0x180_0000, 0x1a0_0000, "initramfs")
        .basic_meminfo(639, 523_264)
        .mmap(24, &qemu_like_mmap())
        .tag(14, &rsdp_v1(0x7FE_1000))
        .tag(15, &rsdp_v2(0x7FE_1000, 0x7FE_2000))
        .tag(14, &rsdp_v1(0x7FE_1000))
}

#[test]
fn mb2_well_formed_parses_to_typed_values() {
    let info = parse_mb2(&full_mb2().build()).unwrap();
    assert_eq!(info.loader, Loader::Multiboot2);
    assert_eq!(info.loader_name, "GRUB 2.06");
    assert_eq!(info.cmdline, "log=trace launch=guest");
    assert_eq!(info.load_base, Some(0x20_0000));
    assert_eq!(
        info.basic_memory,
        Some(BasicMemory {
            lower_kib: 639,
            upper_kib: 523_264
        })
    );
    let names: Vec<_> = info
        .modules
        .iter()
        .map(|m| (m.name(), m.start, m.end))
        .collect();
    assert_eq!(
        names,
        vec![
            ("root-linux", 0x100_0000, 0x180_0000),
            ("initramfs", 0x180_0000, 0x1a0_0000)
        ]
    );
    assert_eq!(info.memory_map.len(), 7);
    assert_eq!(
        info.memory_map.regions()[0],
        region(0, 0x9_fc00, MemoryKind::Usable)
    );
    assert_eq!(info.memory_map.usable().count(), 2);

    // The new RSDP wins even though an old one follows it; its address is that of the copy.
    let rsdp = info.rsdp.unwrap();
    assert_eq!(rsdp.source, RsdpSource::Multiboot2New);
    assert_eq!(rsdp.xsdt_address, Some(0x7FE_2000));
    let bytes = full_mb2().build();
    let mut sig = [0u8; 8];
    bytes.read(rsdp.phys, &mut sig).unwrap();
    assert_eq!(&sig, b"RSD PTR ");
}

#[test]
fn mb2_old_rsdp_alone_is_recorded() {
    let mb = Mb2::default()
        .basic_meminfo(640, 1024)
        .tag(14, &rsdp_v1(0xE_0000));
    let rsdp = parse_mb2(&mb.build()).unwrap().rsdp.unwrap();
    assert_eq!(rsdp.source, RsdpSource::Multiboot2Old);
    assert_eq!(rsdp.phys, MB2_INFO + 8 + 16 + 8);
    assert_eq!(
        (rsdp.revision, rsdp.rsdt_address, rsdp.xsdt_address),
        (0, 0xE_0000, None)
    );
}

#[test]
fn mb2_bad_rsdp_is_rejected() {
    let mut v2 = rsdp_v2(1, 2);
    v2[32] ^= 0xFF; // extended checksum
    let mem = Mb2::default().basic_meminfo(640, 1024).tag(15, &v2).build();
    assert_eq!(
        parse_mb2(&mem),
        Err(BootInfoError::BadRsdp {
            tag_type: 15,
            addr: MB2_INFO + 24
        })
    );
}

#[test]
fn mb2_larger_mmap_entries_are_stepped_over() {
    let mem = Mb2::default()
        .mmap(32, &[(0x10_0000, 0x1000, 1), (0, 0x1000, 4)])
        .build();
    let info = parse_mb2(&mem).unwrap();
    assert_eq!(
        info.memory_map.regions(),
        &[
            region(0, 0x1000, MemoryKind::AcpiNvs),
            region(0x10_0000, 0x1000, MemoryKind::Usable)
        ]
    );
}

#[test]
fn mb2_without_mmap_falls_back_to_basic_meminfo() {
    let info = parse_mb2(&Mb2::default().basic_meminfo(640, 2048).build()).unwrap();
    assert_eq!(
        info.memory_map.regions(),
        &[
            region(0, 640 * 1024, MemoryKind::Usable),
            region(0x10_0000, 2 << 20, MemoryKind::Usable)
        ]
    );
    assert_eq!(
        parse_mb2(&Mb2::default().cmdline("x").build()),
        Err(BootInfoError::NoMemoryMap)
    );
}

#[test]
fn mb2_unknown_tags_are_skipped() {
    let mem = Mb2::default()
        .tag(0x1234, &[1, 2, 3])
        .tag(9, &[0; 40])
        .basic_meminfo(1, 2)
        .build();
    let info = parse_mb2(&mem).unwrap();
    assert_eq!(
        info.basic_memory,
        Some(BasicMemory {
            lower_kib: 1,
            upper_kib: 2
        })
    );
}

#[test]
fn mb2_total_size_out_of_range_is_rejected() {
    let mut bytes = full_mb2().bytes();
    bytes[..4].copy_from_slice(&(2u32 << 20).to_le_bytes());
    let mut mem = FakePhys::new();
    mem.write(MB2_INFO, &bytes);
    assert_eq!(
        parse_mb2(&mem),
        Err(BootInfoError::BadTotalSize {
            size: 2 << 20,
            max: MB2_MAX_TOTAL_SIZE
        })
    );
    mem.write_u32(MB2_INFO, 8);
    assert_eq!(
        parse_mb2(&mem),
        Err(BootInfoError::BadTotalSize {
            size: 8,
            max: MB2_MAX_TOTAL_SIZE
        })
    );
}

#[test]
fn mb2_tag_smaller_than_header_is_rejected() {
    let mut mem = Mb2::default().basic_meminfo(1, 2).build();
    mem.write_u32(MB2_INFO + 12, 4);
    assert_eq!(
        parse_mb2(&mem),
        Err(BootInfoError::BadTagSize {
            tag_type: 4,
            addr: MB2_INFO + 8,
            size: 4,
            min: 16
        })
    );
    let mut mem = Mb2::default().tag(77, &[]).basic_meminfo(1, 2).build();
    mem.write_u32(MB2_INFO + 12, 7);
    assert_eq!(
        parse_mb2(&mem),
        Err(BootInfoError::BadTagSize {
            tag_type: 77,
            addr: MB2_INFO + 8,
            size: 7,
            min: 8
        })
    );
}

#[test]
fn mb2_module_tag_too_small_for_its_fields_is_rejected() {
    let mem = Mb2::default().tag(3, &[0; 4]).build();
    assert_eq!(
        parse_mb2(&mem),
        Err(BootInfoError::BadTagSize {
            tag_type: 3,
            addr: MB2_INFO + 8,
            size: 12,
            min: 16
        })
    );
}

#[test]
fn mb2_tag_running_past_the_end_is_rejected() {
    let mb = Mb2::default()
        .basic_meminfo(1, 2)
        .mmap(24, &[(0, 0x1000, 1)]);
    let mut mem = mb.build();
    let mmap_at = MB2_INFO + 8 + 16;
    mem.write_u32(mmap_at + 4, 0x1000);
    let e = parse_mb2(&mem).unwrap_err();
    assert_eq!(
        e,
        BootInfoError::TagPastEnd {
            tag_type: 6,
            addr: mmap_at
        }
    );
    assert_eq!(
        e.to_string(),
        "Multiboot2 tag 6 at 0x10018 runs past the end of the boot information"
    );
}

#[test]
fn mb2_bad_mmap_entry_sizes_are_rejected() {
    for entry_size in [0u32, 16, 20, 28] {
        let mut mem = Mb2::default().mmap(24, &[(0, 0x1000, 1)]).build();
        mem.write_u32(MB2_INFO + 16, entry_size);
        assert_eq!(
            parse_mb2(&mem),
            Err(BootInfoError::BadMmapEntrySize {
                addr: MB2_INFO + 8,
                entry_size
            }),
            "entry_size {entry_size}"
        );
    }
}

#[test]
fn mb2_missing_end_tag_is_rejected() {
    let mut bytes = Mb2::default().basic_meminfo(1, 2).bytes();
    let len = bytes.len();
    bytes.truncate(len - 8);
    let total = bytes.len() as u32;
    bytes[..4].copy_from_slice(&total.to_le_bytes());
    let mut mem = FakePhys::new();
    mem.write(MB2_INFO, &bytes);
    assert_eq!(parse_mb2(&mem), Err(BootInfoError::MissingEndTag));
}

#[test]
fn mb2_misaligned_info_is_rejected() {
    let mem = full_mb2().build();
    assert_eq!(
        parse(&mem, MULTIBOOT2_MAGIC, MB2_INFO as u32 + 4),
        Err(BootInfoError::Misaligned { addr: MB2_INFO + 4 })
    );
}

#[test]
fn mb2_cmdline_errors() {
    // No terminator inside the tag.
    let mem = Mb2::default()
        .basic_meminfo(1, 2)
        .tag(1, b"abcdefgh")
        .build();
    assert_eq!(
        parse_mb2(&mem),
        Err(BootInfoError::StringNotTerminated {
            which: StringKind::Cmdline,
            cap: 8
        })
    );
    // Longer than the buffer.
    let mem = Mb2::default()
        .basic_meminfo(1, 2)
        .cmdline(&"p".repeat(CMDLINE_MAX + 1))
        .build();
    assert_eq!(
        parse_mb2(&mem),
        Err(BootInfoError::StringTooLong {
            which: StringKind::Cmdline,
            len: CMDLINE_MAX + 1,
            cap: CMDLINE_MAX
        })
    );
    // Not UTF-8.
    let mem = Mb2::default()
        .basic_meminfo(1, 2)
        .tag(1, &[b'a', 0xC0, 0])
        .build();
    assert_eq!(
        parse_mb2(&mem),
        Err(BootInfoError::StringNotUtf8 {
            which: StringKind::Cmdline
        })
    );
}

#[test]
fn mb2_module_errors() {
    let mem = Mb2::default()
        .basic_meminfo(1, 2)
        .module(0x2000, 0x1000, "m")
        .build();
    assert_eq!(
        parse_mb2(&mem),
        Err(BootInfoError::ModuleEndBeforeStart {
            index: 0,
            start: 0x2000,
            end: 0x1000
        })
    );
    let mut mb = Mb2::default().basic_meminfo(1, 2);
    for i in 0..18 {
        mb = mb.module(i * 0x1000, i * 0x1000 + 1, "m");
    }
    assert_eq!(
        parse_mb2(&mb.build()),
        Err(BootInfoError::TooManyModules { count: 18, cap: 16 })
    );
    let mem = Mb2::default()
        .basic_meminfo(1, 2)
        .module(0, 1, &"n".repeat(300))
        .build();
    assert_eq!(
        parse_mb2(&mem),
        Err(BootInfoError::StringTooLong {
            which: StringKind::Module(0),
            len: 300,
            cap: MODULE_CMDLINE_MAX
        })
    );
}

#[test]
fn mb2_info_cut_short_in_memory_is_unreadable_not_a_panic() {
    let bytes = full_mb2().bytes();
    let mut mem = FakePhys::new();
    mem.write(MB2_INFO, &bytes[..bytes.len() / 2]);
    assert!(matches!(
        parse_mb2(&mem),
        Err(BootInfoError::Unreadable { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Robustness: arbitrary bytes never panic
// ---------------------------------------------------------------------------------------------

fn tag_strategy() -> impl Strategy<Value = (u32, Vec<u8>)> {
    (0u32..24, proptest::collection::vec(any::<u8>(), 0..64))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn mb2_random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut mem = FakePhys::new();
        mem.write(MB2_INFO, &bytes);
        let _ = parse_mb2(&mem);
    }

    #[test]
    fn mb2_random_bytes_with_plausible_size_never_panic(
        mut bytes in proptest::collection::vec(any::<u8>(), 16..512)
    ) {
        let total = bytes.len() as u32;
        bytes[..4].copy_from_slice(&total.to_le_bytes());
        let mut mem = FakePhys::new();
        mem.write(MB2_INFO, &bytes);
        let _ = parse_mb2(&mem);
    }

    #[test]
    fn mb2_random_tags_never_panic(tags in proptest::collection::vec(tag_strategy(), 0..12)) {
        let mb = tags.iter().fold(Mb2::default(), |mb, (kind, payload)| mb.tag(*kind, payload));
        let mem = mb.build();
        match parse_mb2(&mem) {
            Ok(info) => {
                prop_assert!(info.memory_map.regions().windows(2).all(|w| w[0].start <= w[1].start));
                prop_assert!(info.modules.iter().all(|m| m.start <= m.end));
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn mb1_random_info_never_panics(fields in proptest::collection::vec(any::<u32>(), 17)) {
        let mut mem = full_mb1().build();
        mem.write(MB1_INFO, &words(&fields));
        let _ = parse_mb1(&mem);
    }

    #[test]
    fn hv_cmdline_random_text_never_panics(line in "[ -~]{0,120}") {
        let _ = cmdline::parse(&line);
    }
}
