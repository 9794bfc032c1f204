//! Multiboot2 information (Multiboot2 Specification 2.0, section 3.6).

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::error::{BootInfoError, StringKind};
use crate::fixed::FixedStr;
use crate::memory::MemoryKind;
use crate::phys::{PhysRead, read_cstr, read_cstr_lenient, read_struct};
use crate::rsdp::{self, RSDP_V1_LEN, RSDP_V2_LEN, RsdpSource};
use crate::{BasicMemory, BootInfo, Loader, MAX_MODULES, Module};

/// The value a Multiboot2 loader leaves in EAX.
pub const MULTIBOOT2_MAGIC: u32 = 0x36D7_6289;

/// Largest `total_size` accepted (GRUB's information is a few KiB).
pub const MB2_MAX_TOTAL_SIZE: u32 = 1024 * 1024;

/// Multiboot2 tag types this crate understands (others are skipped).
mod tag {
    pub const END: u32 = 0;
    pub const CMDLINE: u32 = 1;
    pub const LOADER_NAME: u32 = 2;
    pub const MODULE: u32 = 3;
    pub const BASIC_MEMINFO: u32 = 4;
    pub const MMAP: u32 = 6;
    pub const ACPI_OLD: u32 = 14;
    pub const ACPI_NEW: u32 = 15;
    pub const LOAD_BASE_ADDR: u32 = 21;
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct Header {
    total_size: U32,
    reserved: U32,
}
const _: () = assert!(size_of::<Header>() == 8);

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct TagHeader {
    kind: U32,
    size: U32,
}
const TAG_HEADER_LEN: u32 = 8;
const _: () = assert!(size_of::<TagHeader>() == TAG_HEADER_LEN as usize);

/// Fixed fields of tag 3 before its string.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct ModuleTag {
    header: TagHeader,
    mod_start: U32,
    mod_end: U32,
}
const _: () = assert!(size_of::<ModuleTag>() == 16);

/// Tag 4.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct BasicMeminfoTag {
    header: TagHeader,
    mem_lower: U32,
    mem_upper: U32,
}
const _: () = assert!(size_of::<BasicMeminfoTag>() == 16);

/// Fixed fields of tag 6 before its entries.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct MmapTag {
    header: TagHeader,
    entry_size: U32,
    entry_version: U32,
}
const _: () = assert!(size_of::<MmapTag>() == 16);

/// One memory map entry (version 0); `entry_size` may be larger.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct MmapEntry {
    base_addr: U64,
    length: U64,
    kind: U32,
    reserved: U32,
}
const MMAP_ENTRY_LEN: u32 = 24;
const _: () = assert!(size_of::<MmapEntry>() == MMAP_ENTRY_LEN as usize);

/// Tag 21.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct LoadBaseTag {
    header: TagHeader,
    load_base_addr: U32,
}
const _: () = assert!(size_of::<LoadBaseTag>() == 12);

/// Smallest valid size of each understood tag type.
fn min_tag_size(kind: u32) -> u32 {
    match kind {
        tag::MODULE => size_of::<ModuleTag>() as u32,
        tag::BASIC_MEMINFO => size_of::<BasicMeminfoTag>() as u32,
        tag::MMAP => size_of::<MmapTag>() as u32,
        tag::ACPI_OLD => TAG_HEADER_LEN + RSDP_V1_LEN as u32,
        tag::ACPI_NEW => TAG_HEADER_LEN + RSDP_V2_LEN as u32,
        tag::LOAD_BASE_ADDR => size_of::<LoadBaseTag>() as u32,
        _ => TAG_HEADER_LEN,
    }
}

/// Parses Multiboot2 information at physical address `info` (non-zero).
pub(crate) fn parse(mem: &(impl PhysRead + ?Sized), info: u64) -> Result<BootInfo, BootInfoError> {
    if !info.is_multiple_of(8) {
        return Err(BootInfoError::Misaligned { addr: info });
    }
    let header: Header = read_struct(mem, info)?;
    let total = header.total_size.get();
    if !(16..=MB2_MAX_TOTAL_SIZE).contains(&total) {
        return Err(BootInfoError::BadTotalSize {
            size: total,
            max: MB2_MAX_TOTAL_SIZE,
        });
    }
    let end = info + u64::from(total);
    let mut out = BootInfo::empty(Loader::Multiboot2);
    let mut module_count = 0usize;
    let mut addr = info + 8;
    loop {
        if end.saturating_sub(addr) < u64::from(TAG_HEADER_LEN) {
            return Err(BootInfoError::MissingEndTag);
        }
        let th: TagHeader = read_struct(mem, addr)?;
        let (kind, size) = (th.kind.get(), th.size.get());
        let min = min_tag_size(kind);
        if size < min {
            return Err(BootInfoError::BadTagSize {
                tag_type: kind,
                addr,
                size,
                min,
            });
        }
        let tag_end = addr + u64::from(size);
        if tag_end > end {
            return Err(BootInfoError::TagPastEnd {
                tag_type: kind,
                addr,
            });
        }
        let payload = addr + u64::from(TAG_HEADER_LEN);
        let payload_len = u64::from(size - TAG_HEADER_LEN);
        match kind {
            tag::END => break,
            tag::CMDLINE => {
                out.cmdline = read_cstr(mem, payload, payload_len, StringKind::Cmdline)?;
            }
            tag::LOADER_NAME => {
                out.loader_name = read_cstr_lenient(mem, payload, payload_len);
            }
            tag::MODULE => {
                let index = module_count;
                module_count += 1;
                if index < MAX_MODULES {
                    let t: ModuleTag = read_struct(mem, addr)?;
                    let string_at = addr + size_of::<ModuleTag>() as u64;
                    let string_len = tag_end - string_at;
                    let cmdline: FixedStr<{ crate::MODULE_CMDLINE_MAX }> =
                        read_cstr(mem, string_at, string_len, StringKind::Module(index))?;
                    let module = Module::new(
                        index,
                        t.mod_start.get().into(),
                        t.mod_end.get().into(),
                        cmdline,
                    )?;
                    out.push_module(module)?;
                }
            }
            tag::BASIC_MEMINFO => {
                let t: BasicMeminfoTag = read_struct(mem, addr)?;
                out.basic_memory = Some(BasicMemory {
                    lower_kib: t.mem_lower.get(),
                    upper_kib: t.mem_upper.get(),
                });
            }
            tag::MMAP => parse_mmap(mem, addr, tag_end, &mut out)?,
            tag::ACPI_OLD => {
                let found = rsdp::read_v1(mem, payload, RsdpSource::Multiboot2Old).ok_or(
                    BootInfoError::BadRsdp {
                        tag_type: kind,
                        addr,
                    },
                )?;
                // A new-style RSDP wins over an old one, whatever the tag order.
                if out.rsdp.is_none() {
                    out.rsdp = Some(found);
                }
            }
            tag::ACPI_NEW => {
                let found = rsdp::read_v2(mem, payload, RsdpSource::Multiboot2New).ok_or(
                    BootInfoError::BadRsdp {
                        tag_type: kind,
                        addr,
                    },
                )?;
                out.rsdp = Some(found);
            }
            tag::LOAD_BASE_ADDR => {
                let t: LoadBaseTag = read_struct(mem, addr)?;
                out.load_base = Some(t.load_base_addr.get().into());
            }
            _ => {}
        }
        // Tags start on 8-byte boundaries; `tag_end <= end < 2^33`, so this cannot overflow.
        addr = (tag_end + 7) & !7;
    }
    if module_count > MAX_MODULES {
        return Err(BootInfoError::TooManyModules {
            count: module_count,
            cap: MAX_MODULES,
        });
    }
    out.finish_memory_map()?;
    Ok(out)
}

fn parse_mmap(
    mem: &(impl PhysRead + ?Sized),
    addr: u64,
    tag_end: u64,
    out: &mut BootInfo,
) -> Result<(), BootInfoError> {
    let t: MmapTag = read_struct(mem, addr)?;
    let entry_size = t.entry_size.get();
    if entry_size < MMAP_ENTRY_LEN || !entry_size.is_multiple_of(8) {
        return Err(BootInfoError::BadMmapEntrySize { addr, entry_size });
    }
    let mut at = addr + size_of::<MmapTag>() as u64;
    // A trailing fragment shorter than one entry is ignored.
    while tag_end.saturating_sub(at) >= u64::from(entry_size) {
        let e: MmapEntry = read_struct(mem, at)?;
        out.memory_map.add(
            e.base_addr.get(),
            e.length.get(),
            MemoryKind::from_multiboot(e.kind.get()),
        )?;
        at += u64::from(entry_size);
    }
    Ok(())
}
