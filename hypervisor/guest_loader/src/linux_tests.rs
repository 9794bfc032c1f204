//! Host tests of the Linux boot protocol: synthetic bzImages (every malformation), the
//! zero page read back field by field, memory-map construction against a model, page
//! tables walked with the `paging` crate, placement checks, and the real Debian bzImage
//! when it is present.

use std::collections::BTreeMap;
use std::vec;
use std::vec::Vec;

use paging::{LongMode, MAX_PHYS_ADDR_BITS, MapFlags, PageSize, PageTables};
use proptest::prelude::*;

use crate::linux::{
    BootArea, CMDLINE_AREA, CMDLINE_OFFSET, E820_ENTRY_SIZE, E820_MAX_ENTRIES, GDT_OFFSET,
    LINUX_CODE_SELECTOR, LINUX_DATA_SELECTOR, MAX_IDENTITY_LIMIT, PD_OFFSET, PDPT_OFFSET,
    PML4_OFFSET, XLF_CAN_BE_LOADED_ABOVE_4G, offset,
};
use crate::load::RamTables;
use crate::*;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

const RAM: u32 = E820Type::Ram as u32;
const RESERVED: u32 = E820Type::Reserved as u32;
const ACPI: u32 = E820Type::Acpi as u32;
const NVS: u32 = E820Type::Nvs as u32;

/// Synthetic image: 4 setup sectors after the boot sector, 4 KiB protected-mode part.
const SETUP_SECTS: u8 = 4;
const PM_OFFSET: usize = (SETUP_SECTS as usize + 1) * 512;
const PM_LEN: usize = 0x1000;
/// Header end of the synthetic image (as in the Debian image).
const HEADER_END: usize = 0x26C;
const PREF: u64 = 16 * MIB;
const INIT_SIZE: u64 = 16 * MIB;
const ALIGN: u64 = 2 * MIB;
const CMDLINE_SIZE: u32 = 0x7FF;
const INITRD_MAX: u64 = 0x7FFF_FFFF;

fn put(bytes: &mut [u8], at: usize, value: &[u8]) {
    bytes[at..at + value.len()].copy_from_slice(value);
}

fn get_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap())
}

fn get_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn get_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// A bzImage the parser accepts, with recognisable values in fields the loader must copy
/// and in fields it must override.
fn image_bytes() -> Vec<u8> {
    let mut b = vec![0u8; PM_OFFSET + PM_LEN + 64];
    // Boot-sector bytes before the header: the loader must not copy them.
    b[..offset::SETUP_HEADER].fill(0x5A);
    b[offset::SETUP_HEADER] = SETUP_SECTS;
    put(&mut b, 0x1F2, &0x1234u16.to_le_bytes()); // root_flags
    put(
        &mut b,
        offset::SYSSIZE,
        &((PM_LEN / 16) as u32).to_le_bytes(),
    );
    put(&mut b, 0x1FA, &0xFFFFu16.to_le_bytes()); // vid_mode
    put(&mut b, offset::BOOT_FLAG, &0xAA55u16.to_le_bytes());
    b[offset::JUMP] = 0xEB;
    b[offset::JUMP + 1] = (HEADER_END - offset::MAGIC) as u8;
    put(&mut b, offset::MAGIC, b"HdrS");
    put(&mut b, offset::VERSION, &0x020Fu16.to_le_bytes());
    put(&mut b, 0x20E, &0x0100u16.to_le_bytes()); // kernel_version
    b[offset::LOADFLAGS] = 0x01 | 0x40 | 0x20; // LOADED_HIGH | KEEP_SEGMENTS | QUIET
    put(&mut b, 0x214, &0x0010_0000u32.to_le_bytes()); // code32_start
    put(
        &mut b,
        offset::INITRD_ADDR_MAX,
        &(INITRD_MAX as u32).to_le_bytes(),
    );
    put(
        &mut b,
        offset::KERNEL_ALIGNMENT,
        &(ALIGN as u32).to_le_bytes(),
    );
    b[offset::RELOCATABLE_KERNEL] = 1;
    b[0x235] = 21; // min_alignment
    put(&mut b, offset::XLOADFLAGS, &0x0001u16.to_le_bytes());
    put(&mut b, offset::CMDLINE_SIZE, &CMDLINE_SIZE.to_le_bytes());
    put(&mut b, offset::HARDWARE_SUBARCH, &2u32.to_le_bytes());
    put(
        &mut b,
        offset::HARDWARE_SUBARCH_DATA,
        &0xDEADu64.to_le_bytes(),
    );
    put(&mut b, offset::PAYLOAD_OFFSET, &0x100u32.to_le_bytes());
    put(&mut b, offset::PAYLOAD_LENGTH, &0x800u32.to_le_bytes());
    put(&mut b, offset::SETUP_DATA, &0xBAD0_0000u64.to_le_bytes());
    put(&mut b, offset::PREF_ADDRESS, &PREF.to_le_bytes());
    put(&mut b, offset::INIT_SIZE, &(INIT_SIZE as u32).to_le_bytes());
    put(&mut b, 0x268, &0x0ABCu32.to_le_bytes()); // kernel_info_offset
    // Beyond the header (inside the setup sectors): not part of the zero page.
    b[HEADER_END..PM_OFFSET].fill(0x77);
    for (i, byte) in b[PM_OFFSET..PM_OFFSET + PM_LEN].iter_mut().enumerate() {
        *byte = i as u8;
    }
    b
}

fn patched(at: usize, value: &[u8]) -> Vec<u8> {
    let mut b = image_bytes();
    put(&mut b, at, value);
    b
}

fn parse_err(bytes: &[u8]) -> LinuxError {
    BzImage::parse(bytes).unwrap_err()
}

#[test]
fn synthetic_image_parses_with_its_fields() {
    let bytes = image_bytes();
    let image = BzImage::parse(&bytes).unwrap();
    assert_eq!(image.version(), 0x020F);
    assert_eq!(image.setup_sects(), SETUP_SECTS);
    assert_eq!(image.protected_mode_offset(), PM_OFFSET as u64);
    assert_eq!(
        image.protected_mode(),
        &bytes[PM_OFFSET..PM_OFFSET + PM_LEN]
    );
    assert_eq!(
        image.setup_header(),
        &bytes[offset::SETUP_HEADER..HEADER_END]
    );
    assert_eq!(image.init_size(), INIT_SIZE);
    assert_eq!(image.kernel_alignment(), ALIGN);
    assert_eq!(image.cmdline_size(), CMDLINE_SIZE);
    assert_eq!(image.initrd_addr_max(), INITRD_MAX);
    assert_eq!(image.pref_address(), PREF);
    assert_eq!(image.xloadflags(), 1);
}

#[test]
fn setup_sects_zero_means_four() {
    let mut bytes = patched(offset::SETUP_HEADER, &[0]);
    bytes.extend_from_slice(&[0; 512]);
    // Same layout as 4 sectors: the protected-mode part stays where it was.
    let image = BzImage::parse(&bytes).unwrap();
    assert_eq!(image.setup_sects(), 4);
    assert_eq!(image.protected_mode_offset(), 5 * 512);
    // One sector more moves the protected-mode part (and needs more bytes).
    bytes[offset::SETUP_HEADER] = 5;
    let image = BzImage::parse(&bytes).unwrap();
    assert_eq!(image.protected_mode_offset(), 6 * 512);
    assert_eq!(image.protected_mode(), &bytes[6 * 512..6 * 512 + PM_LEN]);
}

#[test]
fn every_malformation_gives_its_error() {
    let full = image_bytes();
    let len = full.len() as u64;

    assert_eq!(
        parse_err(&full[..0x100]),
        LinuxError::Truncated {
            needed: 0x208,
            len: 0x100
        }
    );
    assert_eq!(
        parse_err(&[]),
        LinuxError::Truncated {
            needed: 0x208,
            len: 0
        }
    );
    assert_eq!(
        parse_err(&patched(offset::MAGIC, b"HdrZ")),
        LinuxError::BadMagic
    );
    assert_eq!(
        parse_err(&patched(offset::BOOT_FLAG, &0x55AAu16.to_le_bytes())),
        LinuxError::BadBootFlag(0x55AA)
    );
    assert_eq!(
        parse_err(&patched(offset::VERSION, &0x020Bu16.to_le_bytes())),
        LinuxError::OldProtocol(0x020B)
    );
    // The header must reach init_size (0x264) and stop before edd_mbr_sig_buffer (0x290).
    assert_eq!(
        parse_err(&patched(offset::JUMP + 1, &[0x61])),
        LinuxError::BadHeaderEnd(0x263)
    );
    assert_eq!(
        parse_err(&patched(offset::JUMP + 1, &[0x8F])),
        LinuxError::BadHeaderEnd(0x291)
    );
    assert!(BzImage::parse(&patched(offset::JUMP + 1, &[0x62])).is_ok());
    assert!(BzImage::parse(&patched(offset::JUMP + 1, &[0x8E])).is_ok());
    assert_eq!(
        parse_err(&full[..0x268]),
        LinuxError::Truncated {
            needed: HEADER_END as u64,
            len: 0x268
        }
    );
    // The protected-mode part (syssize) must lie in the file ...
    let pm_end = (PM_OFFSET + PM_LEN) as u64;
    assert_eq!(
        parse_err(&full[..PM_OFFSET + PM_LEN - 1]),
        LinuxError::Truncated {
            needed: pm_end,
            len: pm_end - 1
        }
    );
    assert_eq!(
        parse_err(&patched(offset::SYSSIZE, &u32::MAX.to_le_bytes())),
        LinuxError::Truncated {
            needed: PM_OFFSET as u64 + u64::from(u32::MAX) * 16,
            len
        }
    );
    // ... which the setup sectors move.
    assert_eq!(
        parse_err(&patched(offset::SETUP_HEADER, &[255])),
        LinuxError::Truncated {
            needed: 256 * 512 + PM_LEN as u64,
            len
        }
    );
    // ... and must hold the 64-bit entry at 0x200.
    assert_eq!(
        parse_err(&patched(offset::SYSSIZE, &0x20u32.to_le_bytes())),
        LinuxError::KernelTooShort(0x200)
    );
    assert_eq!(
        parse_err(&patched(offset::XLOADFLAGS, &0x7Eu16.to_le_bytes())),
        LinuxError::No64BitEntry
    );
    assert_eq!(
        parse_err(&patched(offset::RELOCATABLE_KERNEL, &[0])),
        LinuxError::NotRelocatable
    );
    for alignment in [0u32, 3, 0x30_0000, u32::MAX] {
        assert_eq!(
            parse_err(&patched(offset::KERNEL_ALIGNMENT, &alignment.to_le_bytes())),
            LinuxError::BadKernelAlignment(alignment)
        );
    }
    assert_eq!(
        parse_err(&patched(offset::INIT_SIZE, &0u32.to_le_bytes())),
        LinuxError::ZeroInitSize
    );
    let mut bad_payload = patched(offset::PAYLOAD_OFFSET, &0xF00u32.to_le_bytes());
    put(
        &mut bad_payload,
        offset::PAYLOAD_LENGTH,
        &0x101u32.to_le_bytes(),
    );
    assert_eq!(
        parse_err(&bad_payload),
        LinuxError::PayloadOutOfBounds {
            offset: 0xF00,
            length: 0x101
        }
    );
    // The payload may end exactly at the end of the protected-mode part.
    put(
        &mut bad_payload,
        offset::PAYLOAD_LENGTH,
        &0x100u32.to_le_bytes(),
    );
    assert!(BzImage::parse(&bad_payload).is_ok());
    // Offset and length near 2^32 do not wrap.
    let mut huge = patched(offset::PAYLOAD_OFFSET, &u32::MAX.to_le_bytes());
    put(&mut huge, offset::PAYLOAD_LENGTH, &u32::MAX.to_le_bytes());
    assert!(matches!(
        parse_err(&huge),
        LinuxError::PayloadOutOfBounds { .. }
    ));
}

#[test]
fn decompression_window_follows_the_decompressor() {
    let bytes = image_bytes();
    let image = BzImage::parse(&bytes).unwrap();
    // Below LOAD_PHYSICAL_ADDR: the kernel moves up to it.
    assert_eq!(
        image.decompression_window(0x10_0000),
        Some((PREF, PREF + INIT_SIZE))
    );
    assert_eq!(
        image.decompression_window(0),
        Some((PREF, PREF + INIT_SIZE))
    );
    // Above it: aligned up to kernel_alignment.
    let load = 32 * MIB + 0x2800;
    assert_eq!(
        image.decompression_window(load),
        Some((34 * MIB, 34 * MIB + INIT_SIZE))
    );
    assert_eq!(
        image.decompression_window(34 * MIB),
        Some((34 * MIB, 34 * MIB + INIT_SIZE))
    );
    assert_eq!(
        image.decompression_window(34 * MIB + 1),
        Some((36 * MIB, 36 * MIB + INIT_SIZE))
    );
    // Overflow in the rounding and in start + init_size.
    assert_eq!(image.decompression_window(u64::MAX), None);
    assert_eq!(image.decompression_window(u64::MAX - ALIGN + 2), None);
    let top = u64::MAX - (ALIGN - 1); // aligned, but start + init_size overflows
    assert_eq!(image.decompression_window(top), None);
    let last = (u64::MAX - INIT_SIZE) & !(ALIGN - 1);
    assert_eq!(
        image.decompression_window(last),
        Some((last, last + INIT_SIZE))
    );
}

// ---------------------------------------------------------------------------------------
// RAM fakes and placement.

/// RAM over many GiB without allocating it: 4 KiB pages materialise on first write and
/// read as zero before.
#[derive(Debug)]
struct SparseRam {
    size: u64,
    pages: BTreeMap<u64, Vec<u8>>,
}

impl SparseRam {
    fn new(size: u64) -> Self {
        Self {
            size,
            pages: BTreeMap::new(),
        }
    }

    fn check(&self, gpa: u64, len: u64) -> Result<(), RamError> {
        match gpa.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(RamError { gpa, len }),
        }
    }

    fn bytes(&self, gpa: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        self.read(gpa, &mut buf).unwrap();
        buf
    }
}

impl GuestRam for SparseRam {
    fn ram_size(&self) -> u64 {
        self.size
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), RamError> {
        self.check(gpa, data.len() as u64)?;
        for (i, byte) in data.iter().enumerate() {
            let at = gpa + i as u64;
            let page = self.pages.entry(at / 4096).or_insert_with(|| vec![0; 4096]);
            page[(at % 4096) as usize] = *byte;
        }
        Ok(())
    }

    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), RamError> {
        self.check(gpa, buf.len() as u64)?;
        for (i, byte) in buf.iter_mut().enumerate() {
            let at = gpa + i as u64;
            *byte = self
                .pages
                .get(&(at / 4096))
                .map_or(0, |page| page[(at % 4096) as usize]);
        }
        Ok(())
    }

    fn zero(&mut self, gpa: u64, len: u64) -> Result<(), RamError> {
        self.check(gpa, len)?;
        let first = gpa / 4096;
        let last = (gpa + len).div_ceil(4096);
        for page in first..last {
            if let Some(bytes) = self.pages.get_mut(&page) {
                for (i, byte) in bytes.iter_mut().enumerate() {
                    let at = page * 4096 + i as u64;
                    if (gpa..gpa + len).contains(&at) {
                        *byte = 0;
                    }
                }
            }
        }
        Ok(())
    }
}

const SCRATCH: u64 = 0x1_0000;
const KERNEL_LOAD: u64 = MIB;

/// RAM below 640 KiB and from 1 MiB to 4 GiB, as a PC firmware would report it.
fn low_e820() -> E820Table {
    E820Table::for_root(
        &[
            E820Entry::new(0, 0xA_0000, E820Type::Ram),
            E820Entry::new(0xF_0000, 0x1_0000, E820Type::Reserved),
            E820Entry::new(MIB, 4 * GIB - MIB, E820Type::Ram),
        ],
        &[],
    )
    .unwrap()
}

fn spec(e820: &E820Table) -> LinuxBootSpec<'_> {
    LinuxBootSpec {
        kernel_load: KERNEL_LOAD,
        scratch: SCRATCH,
        cmdline: "console=ttyS0 nokaslr",
        initrd: None,
        e820,
        acpi_rsdp: None,
        identity_limit: 4 * GIB,
    }
}

fn boot(bytes: &[u8], spec: &LinuxBootSpec<'_>) -> Result<(LinuxEntry, SparseRam), LinuxError> {
    let image = BzImage::parse(bytes).unwrap();
    let mut ram = SparseRam::new(16 * GIB);
    prepare_linux_boot(&mut ram, &image, spec).map(|entry| (entry, ram))
}

fn boot_err(bytes: &[u8], spec: &LinuxBootSpec<'_>) -> LinuxError {
    boot(bytes, spec).unwrap_err()
}

#[test]
fn entry_state_follows_the_64_bit_protocol() {
    let e820 = low_e820();
    let (entry, ram) = boot(&image_bytes(), &spec(&e820)).unwrap();
    assert_eq!(entry.rip, KERNEL_LOAD + 0x200);
    assert_eq!(entry.rsi, SCRATCH);
    assert_eq!(entry.cr3, SCRATCH + PML4_OFFSET);
    assert_eq!(entry.gdtr_base, SCRATCH + GDT_OFFSET);
    assert_eq!(entry.gdtr_limit, 31);
    assert_eq!(entry.code_selector, 0x10);
    assert_eq!(entry.data_selector, 0x18);
    // PE MP ET NE WP PG; PAE; LME LMA; IF clear.
    assert_eq!(entry.cr0, 0x8001_0033);
    assert_eq!(entry.cr4, 0x20);
    assert_eq!(entry.efer, 0x500);
    assert_eq!(entry.rflags, 0x2);

    // The selectors index flat, present, DPL 0 descriptors of the right kind.
    let gdt = ram.bytes(entry.gdtr_base, usize::from(entry.gdtr_limit) + 1);
    let descriptor = |selector: u16| get_u64(&gdt, usize::from(selector));
    let (code, data) = (
        descriptor(LINUX_CODE_SELECTOR),
        descriptor(LINUX_DATA_SELECTOR),
    );
    for d in [code, data] {
        assert_eq!(d & 0xFFFF, 0xFFFF, "limit 15:0");
        assert_eq!((d >> 48) & 0xF, 0xF, "limit 19:16");
        assert_eq!((d >> 16) & 0xFF_FFFF, 0, "base 23:0");
        assert_eq!(d >> 56, 0, "base 31:24");
        assert_eq!((d >> 47) & 1, 1, "present");
        assert_eq!((d >> 45) & 3, 0, "DPL 0");
        assert_eq!((d >> 44) & 1, 1, "code/data");
        assert_eq!((d >> 55) & 1, 1, "4 KiB granularity");
    }
    assert_eq!((code >> 40) & 0xE, 0xA, "execute/read");
    assert_eq!((code >> 53) & 3, 0b01, "L = 1, D = 0");
    assert_eq!((data >> 40) & 0xE, 0x2, "read/write data");
    assert_eq!((data >> 54) & 1, 1, "D/B = 1");
    assert_eq!(get_u64(&gdt, 0), 0);
    assert_eq!(get_u64(&gdt, 8), 0);
}

#[test]
fn zero_page_fields_are_at_their_offsets() {
    let bytes = mut_image(|b| {
        put(b, offset::XLOADFLAGS, &0x7Fu16.to_le_bytes());
    });
    // Everything above 4 GiB, so the ext_* halves matter.
    let scratch = 5 * GIB + 0x3000;
    let initrd = (9 * GIB + 0x1234_5000, 0x1_2345_6000);
    let e820 = E820Table::for_root(
        &[
            E820Entry::new(0, 0xA_0000, E820Type::Ram),
            E820Entry::new(MIB, 16 * GIB, E820Type::Ram),
            E820Entry::new(0xFEE0_0000, 0x1000, E820Type::Reserved),
        ],
        &[(0x1000_0000, 0x1100_0000)],
    )
    .unwrap();
    let spec = LinuxBootSpec {
        scratch,
        initrd: Some(initrd),
        acpi_rsdp: Some(0xF_5A40),
        identity_limit: 6 * GIB,
        ..spec(&e820)
    };
    let (entry, ram) = boot(&bytes, &spec).unwrap();
    assert_eq!(entry.rsi, scratch);
    let zp = ram.bytes(scratch, 4096);

    // The setup header is copied, with the loader's fields set.
    let mut expected_header = bytes[offset::SETUP_HEADER..HEADER_END].to_vec();
    let hdr = |at: usize| at - offset::SETUP_HEADER;
    expected_header[hdr(offset::TYPE_OF_LOADER)] = 0xFF;
    expected_header[hdr(offset::LOADFLAGS)] = 0x01 | 0x20; // KEEP_SEGMENTS cleared
    let cmdline = scratch + CMDLINE_OFFSET;
    put(
        &mut expected_header,
        hdr(offset::CMD_LINE_PTR),
        &(cmdline as u32).to_le_bytes(),
    );
    put(
        &mut expected_header,
        hdr(offset::RAMDISK_IMAGE),
        &(initrd.0 as u32).to_le_bytes(),
    );
    put(
        &mut expected_header,
        hdr(offset::RAMDISK_SIZE),
        &(initrd.1 as u32).to_le_bytes(),
    );
    for (at, len) in [
        (offset::HARDWARE_SUBARCH, 4),
        (offset::HARDWARE_SUBARCH_DATA, 8),
        (offset::SETUP_DATA, 8),
    ] {
        expected_header[hdr(at)..hdr(at) + len].fill(0);
    }
    assert_eq!(&zp[offset::SETUP_HEADER..HEADER_END], &expected_header[..]);
    assert_eq!(zp[0x210], 0xFF);
    assert_eq!(zp[0x211], 0x21);
    assert_eq!(get_u32(&zp, 0x228), cmdline as u32);
    assert_eq!(get_u32(&zp, 0x0C8), (cmdline >> 32) as u32);
    assert_eq!(get_u32(&zp, 0x218), initrd.0 as u32);
    assert_eq!(get_u32(&zp, 0x0C0), (initrd.0 >> 32) as u32);
    assert_eq!(get_u32(&zp, 0x21C), initrd.1 as u32);
    assert_eq!(get_u32(&zp, 0x0C4), (initrd.1 >> 32) as u32);
    assert_eq!(get_u64(&zp, 0x070), 0xF_5A40);
    assert_eq!(get_u16(&zp, 0x206), 0x020F, "version copied");
    assert_eq!(get_u32(&zp, 0x260), INIT_SIZE as u32, "init_size copied");
    assert_eq!(get_u32(&zp, 0x230), ALIGN as u32, "kernel_alignment copied");

    // The memory map.
    let entries = e820.as_slice();
    assert_eq!(usize::from(zp[0x1E8]), entries.len());
    for (i, e) in entries.iter().enumerate() {
        let at = 0x2D0 + i * 20;
        assert_eq!(get_u64(&zp, at), e.addr);
        assert_eq!(get_u64(&zp, at + 8), e.size);
        assert_eq!(get_u32(&zp, at + 16), e.kind);
    }
    assert_eq!(
        get_u64(&zp, 0x2D0 + 20),
        MIB,
        "second entry: RAM from 1 MiB"
    );
    assert_eq!(
        get_u32(&zp, 0x2D0 + 2 * 20 + 16),
        RESERVED,
        "the protected range"
    );

    // Everything the loader does not define is zero: the boot sector's bytes (sentinel at
    // 0x1EF included), the bytes between header and map, the unused map slots.
    let defined = |at: usize| {
        (offset::SETUP_HEADER..HEADER_END).contains(&at)
            || (0x070..0x078).contains(&at)
            || (0x0C0..0x0CC).contains(&at)
            || at == 0x1E8
            || (0x2D0..0x2D0 + entries.len() * 20).contains(&at)
    };
    for (at, byte) in zp.iter().enumerate() {
        if !defined(at) {
            assert_eq!(*byte, 0, "zero page byte {at:#x}");
        }
    }

    // The command line, NUL-terminated, the rest of its area zero.
    let area = ram.bytes(cmdline, CMDLINE_AREA as usize);
    let text = spec.cmdline.as_bytes();
    assert_eq!(&area[..text.len()], text);
    assert!(area[text.len()..].iter().all(|&b| b == 0));
}

fn mut_image(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut b = image_bytes();
    f(&mut b);
    b
}

#[test]
fn without_initrd_or_rsdp_their_fields_stay_zero() {
    let e820 = low_e820();
    let spec = LinuxBootSpec {
        initrd: Some((64 * MIB, 0)),
        ..spec(&e820)
    };
    let (_, ram) = boot(&image_bytes(), &spec).unwrap();
    let zp = ram.bytes(SCRATCH, 4096);
    for at in [0x218, 0x21C, 0x0C0, 0x0C4, 0x0C8] {
        assert_eq!(get_u32(&zp, at), 0, "{at:#x}");
    }
    assert_eq!(get_u64(&zp, 0x070), 0);
    assert_eq!(get_u32(&zp, 0x228), (SCRATCH + CMDLINE_OFFSET) as u32);
}

#[test]
fn command_line_length_follows_cmdline_size() {
    let e820 = low_e820();
    let bytes = image_bytes();
    let longest = "a".repeat(CMDLINE_SIZE as usize);
    let (_, ram) = boot(
        &bytes,
        &LinuxBootSpec {
            cmdline: &longest,
            ..spec(&e820)
        },
    )
    .unwrap();
    let area = ram.bytes(SCRATCH + CMDLINE_OFFSET, longest.len() + 1);
    assert_eq!(&area[..longest.len()], longest.as_bytes());
    assert_eq!(area[longest.len()], 0);

    let too_long = "a".repeat(CMDLINE_SIZE as usize + 1);
    assert_eq!(
        boot_err(
            &bytes,
            &LinuxBootSpec {
                cmdline: &too_long,
                ..spec(&e820)
            }
        ),
        LinuxError::CmdlineTooLong {
            len: CMDLINE_SIZE as usize + 1,
            max: CMDLINE_SIZE as usize
        }
    );
    // A kernel taking more than the scratch area holds is limited to 8191 bytes.
    let generous = patched(offset::CMDLINE_SIZE, &u32::MAX.to_le_bytes());
    let fits = "b".repeat(8191);
    assert!(
        boot(
            &generous,
            &LinuxBootSpec {
                cmdline: &fits,
                ..spec(&e820)
            }
        )
        .is_ok()
    );
    let overflows = "b".repeat(8192);
    assert_eq!(
        boot_err(
            &generous,
            &LinuxBootSpec {
                cmdline: &overflows,
                ..spec(&e820)
            }
        ),
        LinuxError::CmdlineTooLong {
            len: 8192,
            max: 8191
        }
    );
    assert_eq!(
        boot_err(
            &bytes,
            &LinuxBootSpec {
                cmdline: "root=/dev/sda\0init=/bin/sh",
                ..spec(&e820)
            }
        ),
        LinuxError::CmdlineHasNul
    );
}

#[test]
fn initrd_respects_initrd_addr_max_unless_loadable_above_4g() {
    let e820 = low_e820();
    let low_only = image_bytes();
    let size = 8 * MIB;
    let at_limit = INITRD_MAX + 1 - size;
    let with = |gpa: u64| LinuxBootSpec {
        initrd: Some((gpa, size)),
        ..spec(&e820)
    };
    assert!(boot(&low_only, &with(at_limit)).is_ok());
    assert_eq!(
        boot_err(&low_only, &with(at_limit + 0x1000)),
        LinuxError::InitrdAboveLimit {
            end: INITRD_MAX + 1 + 0x1000,
            limit: INITRD_MAX
        }
    );
    let high_ok = mut_image(|b| {
        put(
            b,
            offset::XLOADFLAGS,
            &(1 | XLF_CAN_BE_LOADED_ABOVE_4G).to_le_bytes(),
        );
    });
    assert!(boot(&high_ok, &with(at_limit + 0x1000)).is_ok());
    assert!(boot(&high_ok, &with(12 * GIB)).is_ok());
    assert_eq!(
        boot_err(&high_ok, &with(u64::MAX - 0x1000)),
        LinuxError::Overflow
    );
}

#[test]
fn placement_overlaps_are_refused() {
    let e820 = low_e820();
    let bytes = image_bytes();
    let cases = [
        // Scratch inside the decompression window [16 MiB, 32 MiB).
        (
            LinuxBootSpec {
                scratch: 20 * MIB,
                ..spec(&e820)
            },
            LinuxError::Overlap(BootArea::Scratch, BootArea::DecompressionWindow),
        ),
        // Scratch over the loaded kernel [1 MiB, 1 MiB + 4 KiB).
        (
            LinuxBootSpec {
                scratch: MIB - 0x2000,
                ..spec(&e820)
            },
            LinuxError::Overlap(BootArea::Scratch, BootArea::Kernel),
        ),
        (
            LinuxBootSpec {
                initrd: Some((MIB + 0xFFF, 0x1000)),
                ..spec(&e820)
            },
            LinuxError::Overlap(BootArea::Initrd, BootArea::Kernel),
        ),
        (
            LinuxBootSpec {
                initrd: Some((31 * MIB, 2 * MIB)),
                ..spec(&e820)
            },
            LinuxError::Overlap(BootArea::Initrd, BootArea::DecompressionWindow),
        ),
        (
            LinuxBootSpec {
                initrd: Some((SCRATCH + 0x6000, 0x1000)),
                ..spec(&e820)
            },
            LinuxError::Overlap(BootArea::Initrd, BootArea::Scratch),
        ),
    ];
    for (spec, error) in cases {
        assert_eq!(boot_err(&bytes, &spec), error);
    }
    // Touching is not overlapping: initrd right after the window, scratch right before
    // the kernel (4 GiB identity: 4 page directories).
    let scratch_len = scratch_size(4 * GIB).unwrap();
    assert!(
        boot(
            &bytes,
            &LinuxBootSpec {
                scratch: MIB - scratch_len,
                initrd: Some((32 * MIB, MIB)),
                ..spec(&e820)
            }
        )
        .is_ok()
    );
}

#[test]
fn identity_map_must_cover_kernel_window_and_scratch() {
    let e820 = E820Table::for_root(&[E820Entry::new(0, 64 * GIB, E820Type::Ram)], &[]).unwrap();
    let bytes = image_bytes();
    let base = LinuxBootSpec {
        identity_limit: GIB,
        ..spec(&e820)
    };
    assert!(boot(&bytes, &base).is_ok());
    // Window [1 GiB - 8 MiB, 1 GiB + 8 MiB) for a kernel just below 1 GiB.
    let load = GIB - 8 * MIB;
    assert_eq!(
        boot_err(
            &bytes,
            &LinuxBootSpec {
                kernel_load: load,
                ..base
            }
        ),
        LinuxError::NotIdentityMapped {
            area: BootArea::Kernel,
            end: load + INIT_SIZE
        }
    );
    // The kernel's own range is mapped but the window (moved up to a high
    // LOAD_PHYSICAL_ADDR) is not.
    let high_pref = patched(offset::PREF_ADDRESS, &(GIB - 4 * MIB).to_le_bytes());
    assert_eq!(
        boot_err(&high_pref, &base),
        LinuxError::NotIdentityMapped {
            area: BootArea::DecompressionWindow,
            end: GIB - 4 * MIB + INIT_SIZE
        }
    );
    assert_eq!(
        boot_err(
            &bytes,
            &LinuxBootSpec {
                scratch: 2 * GIB,
                ..base
            }
        ),
        LinuxError::NotIdentityMapped {
            area: BootArea::Scratch,
            end: 2 * GIB + scratch_size(GIB).unwrap()
        }
    );
}

#[test]
fn bad_limits_scratch_rsdp_and_window_are_refused() {
    let e820 = low_e820();
    let bytes = image_bytes();
    for limit in [0, GIB / 2, GIB + GIB / 2, 513 * GIB, u64::MAX] {
        assert_eq!(
            boot_err(
                &bytes,
                &LinuxBootSpec {
                    identity_limit: limit,
                    ..spec(&e820)
                }
            ),
            LinuxError::BadIdentityLimit(limit)
        );
        assert_eq!(scratch_size(limit), None);
    }
    assert_eq!(scratch_size(GIB), Some(0x7000));
    assert_eq!(scratch_size(MAX_IDENTITY_LIMIT), Some(SCRATCH_SIZE));
    assert_eq!(
        boot_err(
            &bytes,
            &LinuxBootSpec {
                scratch: SCRATCH + 0x800,
                ..spec(&e820)
            }
        ),
        LinuxError::MisalignedScratch(SCRATCH + 0x800)
    );
    assert_eq!(
        boot_err(
            &bytes,
            &LinuxBootSpec {
                scratch: !0xFFF,
                ..spec(&e820)
            }
        ),
        LinuxError::Overflow
    );
    assert_eq!(
        boot_err(
            &bytes,
            &LinuxBootSpec {
                kernel_load: u64::MAX - 0x100,
                ..spec(&e820)
            }
        ),
        LinuxError::Overflow
    );
    let old = patched(offset::VERSION, &0x020Du16.to_le_bytes());
    assert_eq!(
        boot_err(
            &old,
            &LinuxBootSpec {
                acpi_rsdp: Some(0xF_0000),
                ..spec(&e820)
            }
        ),
        LinuxError::RsdpUnsupported(0x020D)
    );
    assert!(boot(&old, &spec(&e820)).is_ok());
    // The hypervisor reserved 20..21 MiB, inside the window [16 MiB, 32 MiB).
    let carved = E820Table::for_root(
        &[E820Entry::new(0, 4 * GIB, E820Type::Ram)],
        &[(20 * MIB, 21 * MIB)],
    )
    .unwrap();
    assert_eq!(
        boot_err(&bytes, &spec(&carved)),
        LinuxError::WindowNotRam {
            start: PREF,
            end: PREF + INIT_SIZE
        }
    );
}

#[test]
fn ram_errors_name_the_gpa() {
    let e820 = low_e820();
    let bytes = image_bytes();
    let image = BzImage::parse(&bytes).unwrap();
    // RAM ends inside the page tables' first page directory.
    let mut ram = FakeRam::new((SCRATCH + PD_OFFSET + 0x800) as usize);
    assert_eq!(
        prepare_linux_boot(&mut ram, &image, &spec(&e820)),
        Err(LinuxError::Ram(RamError {
            gpa: SCRATCH + PD_OFFSET,
            len: 4096
        }))
    );
    let mut ram = FakeRam::new(0x8000);
    assert_eq!(
        prepare_linux_boot(&mut ram, &image, &spec(&e820)),
        Err(LinuxError::Ram(RamError {
            gpa: SCRATCH,
            len: 4096
        }))
    );
}

#[test]
fn only_the_scratch_area_is_written() {
    let e820 = low_e820();
    let bytes = image_bytes();
    let image = BzImage::parse(&bytes).unwrap();
    let mut ram = FakeRam::new(2 * MIB as usize);
    prepare_linux_boot(&mut ram, &image, &spec(&e820)).unwrap();
    let end = SCRATCH + scratch_size(4 * GIB).unwrap();
    for &(gpa, len) in ram.writes() {
        assert!(SCRATCH <= gpa && gpa + len <= end, "{gpa:#x}+{len:#x}");
    }
    assert!(
        ram.bytes()[..SCRATCH as usize]
            .iter()
            .all(|&b| b == FakeRam::FILL)
    );
    assert!(
        ram.bytes()[end as usize..]
            .iter()
            .all(|&b| b == FakeRam::FILL)
    );
}

// ---------------------------------------------------------------------------------------
// Page tables.

fn translate<R: GuestRam>(ram: &mut R, cr3: u64, address: u64) -> Option<paging::Translation> {
    let mut memory = RamTables {
        ram,
        error: core::cell::Cell::new(None),
    };
    let format = LongMode::host(MAX_PHYS_ADDR_BITS).unwrap();
    let tables = PageTables::new(&mut memory, cr3, format).unwrap();
    tables.translate(address)
}

fn boot_with_limit(limit: u64) -> (LinuxEntry, SparseRam) {
    let e820 = low_e820();
    boot(
        &image_bytes(),
        &LinuxBootSpec {
            identity_limit: limit,
            // Above the largest scratch area.
            kernel_load: 4 * MIB,
            ..spec(&e820)
        },
    )
    .unwrap()
}

#[test]
fn page_tables_identity_map_exactly_the_limit() {
    for gib in [1, 4, 512] {
        let limit = gib * GIB;
        let (entry, mut ram) = boot_with_limit(limit);
        for address in [
            0,
            0x1FFF,
            SCRATCH,
            KERNEL_LOAD + 0x200,
            limit / 2 + 5,
            limit - 1,
        ] {
            let t = translate(&mut ram, entry.cr3, address).unwrap();
            assert_eq!(t.phys, address);
            assert_eq!(t.size, PageSize::Size2M);
            assert!(t.flags.contains(MapFlags::WRITABLE | MapFlags::EXECUTABLE));
            assert!(!t.flags.contains(MapFlags::USER));
        }
        assert_eq!(translate(&mut ram, entry.cr3, limit), None);
        assert_eq!(translate(&mut ram, entry.cr3, 1 << 47), None);

        // Shape: PML4 with one entry, PDPT with one per GiB, 2 MiB leaves.
        let pml4 = ram.bytes(entry.cr3, 4096);
        assert_eq!(get_u64(&pml4, 0), (SCRATCH + PDPT_OFFSET) | 0x3);
        assert!(pml4[8..].iter().all(|&b| b == 0));
        let pdpt = ram.bytes(SCRATCH + PDPT_OFFSET, 4096);
        for index in 0..512u64 {
            let value = get_u64(&pdpt, index as usize * 8);
            if index < gib {
                assert_eq!(value, (SCRATCH + PD_OFFSET + index * 4096) | 0x3);
            } else {
                assert_eq!(value, 0);
            }
        }
        let last_pd = ram.bytes(SCRATCH + PD_OFFSET + (gib - 1) * 4096, 4096);
        assert_eq!(get_u64(&last_pd, 511 * 8), (limit - 2 * MIB) | 0x83);
    }
}

// ---------------------------------------------------------------------------------------
// Memory map.

fn entry(addr: u64, size: u64, kind: u32) -> E820Entry {
    E820Entry { addr, size, kind }
}

fn map(firmware: &[E820Entry], protected: &[(u64, u64)]) -> Vec<E820Entry> {
    E820Table::for_root(firmware, protected)
        .unwrap()
        .as_slice()
        .to_vec()
}

#[test]
fn e820_overlaps_resolve_to_the_higher_type() {
    // Reserved inside RAM splits it; RAM loses even to a type it does not know (7).
    assert_eq!(
        map(
            &[
                entry(0, 16 * MIB, RAM),
                entry(MIB, MIB, RESERVED),
                entry(4 * MIB, MIB, 7)
            ],
            &[]
        ),
        [
            entry(0, MIB, RAM),
            entry(MIB, MIB, RESERVED),
            entry(2 * MIB, 2 * MIB, RAM),
            entry(4 * MIB, MIB, 7),
            entry(5 * MIB, 11 * MIB, RAM),
        ]
    );
    // ACPI overlapped by NVS: NVS (4) wins over ACPI (3) where both claim the range.
    assert_eq!(
        map(
            &[entry(0x1000, 0x3000, ACPI), entry(0x3000, 0x2000, NVS)],
            &[]
        ),
        [entry(0x1000, 0x2000, ACPI), entry(0x3000, 0x2000, NVS)]
    );
    // Type 0 is not RAM either.
    assert_eq!(
        map(&[entry(0, 0x4000, RAM), entry(0x1000, 0x1000, 0)], &[]),
        [
            entry(0, 0x1000, RAM),
            entry(0x1000, 0x1000, 0),
            entry(0x2000, 0x2000, RAM)
        ]
    );
}

#[test]
fn e820_is_sorted_merged_and_trimmed() {
    // Unsorted, adjacent RAM merged, adjacent equal reserved merged.
    assert_eq!(
        map(
            &[
                entry(2 * MIB, MIB, RAM),
                entry(0x9_F000, 0x1000, RESERVED),
                entry(MIB, MIB, RAM),
                entry(0, 0x9_F000, RAM),
                entry(0xA_0000, 0x6_0000, RESERVED),
            ],
            &[]
        ),
        [
            entry(0, 0x9_F000, RAM),
            entry(0x9_F000, 0x6_1000, RESERVED),
            entry(MIB, 2 * MIB, RAM),
        ]
    );
    // RAM trimmed inward to 4 KiB; a RAM piece inside one page disappears; other types
    // keep byte boundaries.
    assert_eq!(
        map(
            &[
                entry(0x100, 0x2700, RAM),
                entry(0x5100, 0x200, RAM),
                entry(0x9_FC00, 0x400, RESERVED),
                entry(0x8_0000, 0x1_FC00, RAM),
            ],
            &[]
        ),
        [
            entry(0x1000, 0x1000, RAM),
            entry(0x8_0000, 0x1_F000, RAM),
            entry(0x9_FC00, 0x400, RESERVED),
        ]
    );
    // Zero-size entries are ignored; an entry past 2^64 ends at u64::MAX.
    assert_eq!(
        map(
            &[
                entry(0x5000, 0, RESERVED),
                entry(u64::MAX - 0x2FFF, 0x1_0000, RESERVED)
            ],
            &[]
        ),
        [entry(u64::MAX - 0x2FFF, 0x2FFF, RESERVED)]
    );
    assert_eq!(
        map(&[entry(u64::MAX - 0x2FFF, 0x1_0000, RAM)], &[]),
        [entry(u64::MAX - 0x2FFF, 0x2000, RAM)]
    );
    assert_eq!(map(&[], &[]), []);
}

#[test]
fn protected_ranges_become_reserved() {
    // Carved out of RAM (trimming the RAM around an unaligned carve), added in a hole,
    // merged with a neighbouring reserved entry; protected wins over ACPI too.
    assert_eq!(
        map(
            &[
                entry(0, 64 * MIB, RAM),
                entry(64 * MIB, MIB, RESERVED),
                entry(80 * MIB, MIB, ACPI),
            ],
            &[
                (8 * MIB + 0x10, 10 * MIB),
                (63 * MIB, 64 * MIB),
                (0xE000_0000, 0xE100_0000),
                (80 * MIB, 80 * MIB + 0x1000),
                (5, 5),
            ]
        ),
        [
            entry(0, 8 * MIB, RAM),
            entry(8 * MIB + 0x10, 2 * MIB - 0x10, RESERVED),
            entry(10 * MIB, 53 * MIB, RAM),
            entry(63 * MIB, 2 * MIB, RESERVED),
            entry(80 * MIB, 0x1000, RESERVED),
            entry(80 * MIB + 0x1000, MIB - 0x1000, ACPI),
            entry(0xE000_0000, 16 * MIB, RESERVED),
        ]
    );
    assert_eq!(
        E820Table::for_root(&[entry(0, MIB, RAM)], &[(0x2000, 0x1000)]),
        Err(LinuxError::BadRange {
            start: 0x2000,
            end: 0x1000
        })
    );
}

#[test]
fn e820_holds_at_most_128_entries() {
    // Alternating RAM and reserved pages: n entries in, n entries out.
    let alternating = |n: u64| -> Vec<E820Entry> {
        (0..n)
            .map(|i| entry(i * 0x1000, 0x1000, if i % 2 == 0 { RAM } else { RESERVED }))
            .collect()
    };
    let table = E820Table::for_root(&alternating(128), &[]).unwrap();
    assert_eq!(table.as_slice().len(), E820_MAX_ENTRIES);
    assert_eq!(
        E820Table::for_root(&alternating(129), &[]),
        Err(LinuxError::TooManyE820Entries)
    );
    // Many inputs may still merge into few outputs.
    let contiguous: Vec<_> = (0..1000).map(|i| entry(i * 0x1000, 0x1000, RAM)).collect();
    assert_eq!(map(&contiguous, &[]), [entry(0, 1000 * 0x1000, RAM)]);
    assert_eq!(E820_ENTRY_SIZE, 20);
    assert_eq!(
        entry(0x1122_3344_5566_7788, 0x99AA_BBCC_DDEE_FF00, 0x0102_0304).to_bytes(),
        [
            0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x00, 0xFF, 0xEE, 0xDD, 0xCC, 0xBB,
            0xAA, 0x99, 0x04, 0x03, 0x02, 0x01
        ]
    );
}

#[test]
fn covers_ram_needs_every_byte_in_ram() {
    let table = map(
        &[
            entry(0, MIB, RAM),
            entry(MIB, MIB, RESERVED),
            entry(2 * MIB, MIB, RAM),
        ],
        &[],
    );
    let table = E820Table::for_root(&table, &[]).unwrap();
    assert!(table.covers_ram(0, MIB));
    assert!(table.covers_ram(2 * MIB, 3 * MIB));
    assert!(table.covers_ram(5, 5));
    assert!(!table.covers_ram(0, MIB + 1));
    assert!(!table.covers_ram(2 * MIB, 3 * MIB + 1));
    assert!(!table.covers_ram(MIB - 1, 2 * MIB + 1));
}

/// Unit of the model's grid: 1 KiB, so pages (4 units) can be partly RAM.
const UNIT: u64 = KIB;
const CELLS: u64 = 96;

/// The type of each 1 KiB cell as the rules define it (None: hole).
fn model_cells(base: u64, firmware: &[E820Entry], protected: &[(u64, u64)]) -> Vec<Option<u32>> {
    // Ranges start below CELLS and are shorter than 24 cells.
    (0..CELLS + 24)
        .map(|cell| {
            let at = base + cell * UNIT;
            if protected.iter().any(|&(s, e)| s <= at && at < e) {
                return Some(RESERVED);
            }
            let kinds = firmware
                .iter()
                .filter(|e| e.addr <= at && at < e.addr + e.size)
                .map(|e| e.kind);
            kinds.max_by_key(|&k| if k == RAM { 0 } else { u64::from(k) + 1 })
        })
        .collect()
}

/// The expected map: runs of equal cells, RAM runs trimmed to whole pages.
fn model_map(base: u64, cells: &[Option<u32>]) -> Vec<E820Entry> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < cells.len() {
        let mut j = i;
        while j < cells.len() && cells[j] == cells[i] {
            j += 1;
        }
        if let Some(kind) = cells[i] {
            let (mut start, mut end) = (base + i as u64 * UNIT, base + j as u64 * UNIT);
            if kind == RAM {
                start = start.next_multiple_of(4096);
                end -= end % 4096;
            }
            if start < end {
                out.push(entry(start, end - start, kind));
            }
        }
        i = j;
    }
    out
}

fn firmware_strategy() -> impl Strategy<Value = Vec<(u64, u64, u32)>> {
    proptest::collection::vec(
        (
            0..CELLS,
            0..24u64,
            prop_oneof![Just(RAM), Just(RAM), 2..=5u32, Just(7u32)],
        ),
        0..10,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The map equals the cell model, and the stated properties hold on their own.
    #[test]
    fn e820_matches_the_model(
        base_pages in 0u64..(1 << 40),
        raw_firmware in firmware_strategy(),
        raw_protected in proptest::collection::vec((0..CELLS, 0..16u64), 0..4),
    ) {
        let base = base_pages * 4096;
        let firmware: Vec<_> = raw_firmware
            .iter()
            .map(|&(start, len, kind)| entry(base + start * UNIT, len * UNIT, kind))
            .collect();
        let protected: Vec<_> = raw_protected
            .iter()
            .map(|&(start, len)| (base + start * UNIT, base + (start + len) * UNIT))
            .collect();
        let table = E820Table::for_root(&firmware, &protected).unwrap();
        let got = table.as_slice();
        let expected = model_map(base, &model_cells(base, &firmware, &protected));
        prop_assert_eq!(got, &expected[..]);

        for pair in got.windows(2) {
            prop_assert!(pair[0].addr + pair[0].size <= pair[1].addr, "sorted, disjoint");
            prop_assert!(
                pair[0].addr + pair[0].size < pair[1].addr || pair[0].kind != pair[1].kind,
                "equal neighbours merged"
            );
        }
        for e in got {
            prop_assert!(e.size > 0);
            if e.kind != RAM {
                continue;
            }
            prop_assert!(e.addr % 4096 == 0 && e.size % 4096 == 0);
            for &(s, end) in protected.iter().filter(|(s, end)| s < end) {
                prop_assert!(end <= e.addr || e.addr + e.size <= s, "protected never RAM");
            }
            // Every 1 KiB of a RAM entry is firmware RAM and nothing else.
            for at in (e.addr..e.addr + e.size).step_by(UNIT as usize) {
                let covering: Vec<_> = firmware
                    .iter()
                    .filter(|f| f.addr <= at && at < f.addr + f.size)
                    .collect();
                prop_assert!(!covering.is_empty() && covering.iter().all(|f| f.kind == RAM));
            }
        }
    }

    /// Random bytes and random edits of a valid image never panic, and whatever parses
    /// keeps every part inside the bytes and boots without panicking either.
    #[test]
    fn corrupted_images_never_panic(
        edits in proptest::collection::vec((0x1E0usize..0x300, any::<u8>()), 0..12),
        truncate in proptest::option::of(0usize..(PM_OFFSET + PM_LEN + 64)),
        load in any::<u64>(),
    ) {
        let mut bytes = image_bytes();
        for (at, value) in edits {
            bytes[at] = value;
        }
        if let Some(len) = truncate {
            bytes.truncate(len);
        }
        if let Ok(image) = BzImage::parse(&bytes) {
            let start = image.protected_mode_offset() as usize;
            prop_assert_eq!(
                image.protected_mode(),
                &bytes[start..start + image.protected_mode().len()]
            );
            prop_assert!(image.protected_mode().len() > 0x200);
            prop_assert!(image.kernel_alignment().is_power_of_two());
            if let Some((s, e)) = image.decompression_window(load) {
                prop_assert!(s >= load && s >= image.pref_address() && e - s == image.init_size());
            }
            let e820 = low_e820();
            let mut ram = FakeRam::new(0x2_0000);
            let _ = prepare_linux_boot(&mut ram, &image, &LinuxBootSpec {
                kernel_load: load,
                ..spec(&e820)
            });
        }
    }

    #[test]
    fn random_bytes_never_parse_or_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        prop_assert!(BzImage::parse(&bytes).is_err());
    }

    /// The decompressor's arithmetic: the window starts at the aligned load address or
    /// at LOAD_PHYSICAL_ADDR, whichever is higher.
    #[test]
    fn window_is_aligned_load_or_pref(load in any::<u64>(), shift in 12u32..31) {
        let bytes = patched(offset::KERNEL_ALIGNMENT, &(1u32 << shift).to_le_bytes());
        let image = BzImage::parse(&bytes).unwrap();
        let align = 1u64 << shift;
        match image.decompression_window(load) {
            Some((start, end)) => {
                prop_assert_eq!(end - start, INIT_SIZE);
                prop_assert!(start >= PREF);
                if start != PREF {
                    prop_assert!(start % align == 0 && start >= load && start - load < align);
                }
            }
            None => prop_assert!(u128::from(load) + u128::from(align) + u128::from(INIT_SIZE)
                > u128::from(u64::MAX)),
        }
    }

    #[test]
    fn tables_translate_within_the_limit(gib in 1u64..=8, probe in any::<u64>()) {
        let limit = gib * GIB;
        let (entry, mut ram) = boot_with_limit(limit);
        let address = probe % (limit * 2);
        let t = translate(&mut ram, entry.cr3, address);
        if address < limit {
            prop_assert_eq!(t.map(|t| t.phys), Some(address));
        } else {
            prop_assert_eq!(t, None);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The real kernel.

const DEBIAN_BZIMAGE: &str = "/root/.cache/mica/x/boot/vmlinuz-6.1.0-56-amd64";

#[test]
fn debian_bzimage_parses_and_boots_when_present() {
    let Ok(bytes) = std::fs::read(DEBIAN_BZIMAGE) else {
        return;
    };
    let image = BzImage::parse(&bytes).unwrap();
    assert_eq!(image.version(), 0x020F);
    assert_eq!(image.init_size(), 0x3F9_8000);
    assert_eq!(image.setup_sects(), 39);
    assert_eq!(image.protected_mode_offset(), 40 * 512);
    assert_eq!(image.kernel_alignment(), 0x20_0000);
    assert_eq!(image.pref_address(), 0x100_0000);
    assert_eq!(image.cmdline_size(), 0x7FF);
    assert_eq!(image.initrd_addr_max(), 0x7FFF_FFFF);
    assert_eq!(image.xloadflags(), 0x7F);
    assert_eq!(
        image.decompression_window(MIB),
        Some((0x100_0000, 0x100_0000 + 0x3F9_8000))
    );

    let e820 = low_e820();
    let (entry, ram) = boot(
        &bytes,
        &LinuxBootSpec {
            initrd: Some((0x7000_0000, 0x100_0000)),
            acpi_rsdp: Some(0xF_5A40),
            ..spec(&e820)
        },
    )
    .unwrap();
    assert_eq!(entry.rip, MIB + 0x200);
    let zp = ram.bytes(entry.rsi, 4096);
    assert_eq!(&zp[0x202..0x206], b"HdrS");
    assert_eq!(get_u16(&zp, 0x206), 0x020F);
    assert_eq!(get_u32(&zp, 0x260), 0x3F9_8000);
    assert_eq!(zp[0x210], 0xFF);
    assert_eq!(get_u32(&zp, 0x218), 0x7000_0000);
}
