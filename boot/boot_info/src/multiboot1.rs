//! Multiboot1 information (Multiboot Specification 0.6.96, section 3.3).

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::error::{BootInfoError, StringKind};
use crate::memory::{MemoryKind, MemoryMap};
use crate::phys::{PhysRead, read_cstr, read_cstr_lenient, read_struct};
use crate::{BasicMemory, BootInfo, Loader, MAX_MODULES, Module, rsdp};

/// The value a Multiboot1 loader leaves in EAX.
pub const MULTIBOOT1_MAGIC: u32 = 0x2BAD_B002;

/// Largest `mmap_length` accepted (a BIOS e820 map is a few hundred bytes).
pub const MB1_MMAP_MAX: u32 = 64 * 1024;

const FLAG_MEM: u32 = 1 << 0;
const FLAG_CMDLINE: u32 = 1 << 2;
const FLAG_MODS: u32 = 1 << 3;
const FLAG_MMAP: u32 = 1 << 6;
const FLAG_LOADER_NAME: u32 = 1 << 9;

/// The fields of the Multiboot1 information structure up to `boot_loader_name`
/// (the rest: APM, VBE and framebuffer data, is not read).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct Mb1Info {
    flags: U32,
    mem_lower: U32,
    mem_upper: U32,
    boot_device: U32,
    cmdline: U32,
    mods_count: U32,
    mods_addr: U32,
    syms: [U32; 4],
    mmap_length: U32,
    mmap_addr: U32,
    drives_length: U32,
    drives_addr: U32,
    config_table: U32,
    boot_loader_name: U32,
}
const _: () = assert!(size_of::<Mb1Info>() == 68);

/// One module entry of the `mods_addr` array.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct Mb1Module {
    mod_start: U32,
    mod_end: U32,
    string: U32,
    reserved: U32,
}
const _: () = assert!(size_of::<Mb1Module>() == 16);

/// A memory map entry after its `size` field (which does not count itself).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct Mb1MmapEntry {
    base_addr: U64,
    length: U64,
    kind: U32,
}
const _: () = assert!(size_of::<Mb1MmapEntry>() == 20);
const MMAP_ENTRY_MIN: u32 = 20;

/// Parses Multiboot1 information at physical address `info` (non-zero).
pub(crate) fn parse(mem: &(impl PhysRead + ?Sized), info: u64) -> Result<BootInfo, BootInfoError> {
    let mbi: Mb1Info = read_struct(mem, info)?;
    let flags = mbi.flags.get();
    let mut out = BootInfo::empty(Loader::Multiboot1);

    if flags & FLAG_MEM != 0 {
        out.basic_memory = Some(BasicMemory {
            lower_kib: mbi.mem_lower.get(),
            upper_kib: mbi.mem_upper.get(),
        });
    }
    if flags & FLAG_CMDLINE != 0 && mbi.cmdline.get() != 0 {
        out.cmdline = read_cstr(
            mem,
            u64::from(mbi.cmdline.get()),
            cmdline_window(),
            StringKind::Cmdline,
        )?;
    }
    if flags & FLAG_LOADER_NAME != 0 && mbi.boot_loader_name.get() != 0 {
        out.loader_name = read_cstr_lenient(mem, u64::from(mbi.boot_loader_name.get()), u64::MAX);
    }
    if flags & FLAG_MODS != 0 {
        parse_modules(mem, &mbi, &mut out)?;
    }
    if flags & FLAG_MMAP != 0 {
        parse_mmap(mem, &mbi, &mut out.memory_map)?;
    }
    out.finish_memory_map()?;
    out.rsdp = rsdp::find_rsdp_in_bios_area(mem);
    Ok(out)
}

fn cmdline_window() -> u64 {
    // The terminator must lie within the buffer's capacity plus one byte.
    (crate::CMDLINE_MAX as u64) + 1
}

fn parse_modules(
    mem: &(impl PhysRead + ?Sized),
    mbi: &Mb1Info,
    out: &mut BootInfo,
) -> Result<(), BootInfoError> {
    let count = usize::try_from(mbi.mods_count.get()).unwrap_or(usize::MAX);
    if count > MAX_MODULES {
        return Err(BootInfoError::TooManyModules {
            count,
            cap: MAX_MODULES,
        });
    }
    let base = u64::from(mbi.mods_addr.get());
    for index in 0..count {
        let addr = (index as u64)
            .checked_mul(size_of::<Mb1Module>() as u64)
            .and_then(|off| base.checked_add(off))
            .ok_or(BootInfoError::Unreadable {
                phys: base,
                len: u64::MAX,
            })?;
        let entry: Mb1Module = read_struct(mem, addr)?;
        let string = u64::from(entry.string.get());
        let cmdline = if string == 0 {
            Default::default()
        } else {
            read_cstr(
                mem,
                string,
                crate::MODULE_CMDLINE_MAX as u64 + 1,
                StringKind::Module(index),
            )?
        };
        let module = Module::new(
            index,
            entry.mod_start.get().into(),
            entry.mod_end.get().into(),
            cmdline,
        )?;
        out.push_module(module)?;
    }
    Ok(())
}

fn parse_mmap(
    mem: &(impl PhysRead + ?Sized),
    mbi: &Mb1Info,
    map: &mut MemoryMap,
) -> Result<(), BootInfoError> {
    let length = mbi.mmap_length.get();
    if length > MB1_MMAP_MAX {
        return Err(BootInfoError::MmapTooLarge {
            length,
            max: MB1_MMAP_MAX,
        });
    }
    let mut addr = u64::from(mbi.mmap_addr.get());
    // Both are below 2^33: no overflow.
    let end = addr + u64::from(length);
    while addr < end {
        let malformed = |size| BootInfoError::BadMb1MmapEntry { addr, size };
        if end - addr < 4 {
            return Err(malformed(0));
        }
        let size: U32 = read_struct(mem, addr)?;
        let size = size.get();
        let entry_end = addr + 4 + u64::from(size);
        if size < MMAP_ENTRY_MIN || entry_end > end {
            return Err(malformed(size));
        }
        let entry: Mb1MmapEntry = read_struct(mem, addr + 4)?;
        map.add(
            entry.base_addr.get(),
            entry.length.get(),
            MemoryKind::from_multiboot(entry.kind.get()),
        )?;
        addr = entry_end;
    }
    Ok(())
}
