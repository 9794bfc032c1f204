//! The hypervisor's typed boot description, parsed from what a Multiboot1 or Multiboot2 boot
//! loader leaves behind.
//!
//! The 32-to-64-bit trampoline hands the Rust entry the loader's magic (EAX) and information
//! pointer (EBX); [`parse`] turns them into a [`BootInfo`]: memory map, boot modules, the
//! hypervisor's command line, the loader's name and the ACPI RSDP. [`cmdline`] then decodes the
//! hypervisor command line into typed options.
//!
//! Parsing runs before any heap exists: nothing here allocates, everything is fixed capacity.
//! Physical memory is only reached through [`PhysRead`]; every structure is copied out first and
//! validated afterwards, and no length or pointer from the loader is trusted: a malformed
//! structure yields a [`BootInfoError`], never a panic, a hang or an out-of-bounds read.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

#[cfg(any(test, feature = "fake"))]
extern crate alloc;

pub mod cmdline;
mod error;
#[cfg(any(test, feature = "fake"))]
mod fake;
mod fixed;
mod memory;
mod multiboot1;
mod multiboot2;
mod phys;
mod rsdp;
#[cfg(test)]
mod tests;

pub use error::{BootInfoError, StringKind};
#[cfg(any(test, feature = "fake"))]
pub use fake::FakePhys;
pub use fixed::{CapacityError, FixedStr, FixedVec, StrTooLong};
pub use memory::{MAX_MEMORY_REGIONS, MemoryKind, MemoryMap, MemoryRegion};
pub use multiboot1::{MB1_MMAP_MAX, MULTIBOOT1_MAGIC};
pub use multiboot2::{MB2_MAX_TOTAL_SIZE, MULTIBOOT2_MAGIC};
pub use phys::{OutOfRange, PhysRead};
pub use rsdp::{Rsdp, RsdpSource, find_rsdp_in_bios_area};

/// Largest number of boot modules kept (more is an error).
pub const MAX_MODULES: usize = 16;
/// Capacity of the hypervisor command line in bytes (without the terminator).
pub const CMDLINE_MAX: usize = 1024;
/// Capacity of a module's command line in bytes (without the terminator).
pub const MODULE_CMDLINE_MAX: usize = 256;
/// Capacity of the boot loader's name in bytes; longer names are cut.
pub const LOADER_NAME_MAX: usize = 64;

/// Which boot protocol delivered the information.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loader {
    /// Multiboot1 (QEMU `-kernel`, GRUB `multiboot`).
    Multiboot1,
    /// Multiboot2 (GRUB `multiboot2`).
    Multiboot2,
}

/// Memory sizes from the BIOS (Multiboot1 `mem_lower`/`mem_upper`, Multiboot2 tag 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BasicMemory {
    /// KiB of memory from address 0 (at most 640).
    pub lower_kib: u32,
    /// KiB of memory from 1 MiB up to the first hole.
    pub upper_kib: u32,
}

/// A boot module: a file the loader placed in memory (root kernel, initramfs, guest images).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Module {
    /// Physical address of the first byte.
    pub start: u64,
    /// Physical address one past the last byte (`start <= end`).
    pub end: u64,
    /// The module's command line; its first token is the module's name.
    pub cmdline: FixedStr<MODULE_CMDLINE_MAX>,
}

impl Module {
    fn new(
        index: usize,
        start: u64,
        end: u64,
        cmdline: FixedStr<MODULE_CMDLINE_MAX>,
    ) -> Result<Self, BootInfoError> {
        if end < start {
            return Err(BootInfoError::ModuleEndBeforeStart { index, start, end });
        }
        Ok(Self {
            start,
            end,
            cmdline,
        })
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether the module is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The module's name: the first whitespace-separated token of its command line.
    pub fn name(&self) -> &str {
        self.cmdline.split_ascii_whitespace().next().unwrap_or("")
    }

    /// The module's arguments: its command line after the name, trimmed.
    pub fn args(&self) -> &str {
        let line = self.cmdline.trim_start();
        let name_len = self.name().len();
        line.get(name_len..).unwrap_or("").trim()
    }
}

/// The typed boot description handed to the hypervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootInfo {
    /// Which protocol delivered it.
    pub loader: Loader,
    /// The loader's name, if it gave one (informative only: cut at capacity, never an error).
    pub loader_name: FixedStr<LOADER_NAME_MAX>,
    /// The hypervisor's command line (empty if none was given); see [`cmdline::parse`].
    pub cmdline: FixedStr<CMDLINE_MAX>,
    /// Physical memory map, sorted.
    pub memory_map: MemoryMap,
    /// Boot modules in loader order.
    pub modules: FixedVec<Module, MAX_MODULES>,
    /// The ACPI RSDP, if the loader passed one (Multiboot2) or the BIOS area holds one
    /// (Multiboot1).
    pub rsdp: Option<Rsdp>,
    /// Physical address the image was loaded at (Multiboot2 tag 21, relocatable images).
    pub load_base: Option<u64>,
    /// BIOS memory sizes, if given.
    pub basic_memory: Option<BasicMemory>,
}

impl BootInfo {
    fn empty(loader: Loader) -> Self {
        Self {
            loader,
            loader_name: FixedStr::new(),
            cmdline: FixedStr::new(),
            memory_map: MemoryMap::new(),
            modules: FixedVec::new(),
            rsdp: None,
            load_base: None,
            basic_memory: None,
        }
    }

    fn push_module(&mut self, module: Module) -> Result<(), BootInfoError> {
        self.modules
            .push(module)
            .map_err(|_| BootInfoError::TooManyModules {
                count: MAX_MODULES + 1,
                cap: MAX_MODULES,
            })
    }

    /// Falls back to the BIOS memory sizes if no map was given, then sorts the map.
    fn finish_memory_map(&mut self) -> Result<(), BootInfoError> {
        if self.memory_map.is_empty() {
            let basic = self.basic_memory.ok_or(BootInfoError::NoMemoryMap)?;
            self.memory_map
                .add(0, u64::from(basic.lower_kib) * 1024, MemoryKind::Usable)?;
            self.memory_map.add(
                0x10_0000,
                u64::from(basic.upper_kib) * 1024,
                MemoryKind::Usable,
            )?;
            if self.memory_map.is_empty() {
                return Err(BootInfoError::NoMemoryMap);
            }
        }
        self.memory_map.sort();
        Ok(())
    }

    /// The first module whose name (first command-line token) is `name`.
    pub fn module(&self, name: &str) -> Option<&Module> {
        self.modules.iter().find(|m| m.name() == name)
    }
}

/// Parses the boot information the loader left: `magic` from EAX, `info` from EBX.
///
/// Dispatches on the magic to the Multiboot1 or Multiboot2 parser.
pub fn parse(
    mem: &(impl PhysRead + ?Sized),
    magic: u32,
    info: u32,
) -> Result<BootInfo, BootInfoError> {
    if magic != MULTIBOOT1_MAGIC && magic != MULTIBOOT2_MAGIC {
        return Err(BootInfoError::UnknownMagic { seen: magic });
    }
    if info == 0 {
        return Err(BootInfoError::NullInfo);
    }
    let info = u64::from(info);
    if magic == MULTIBOOT1_MAGIC {
        multiboot1::parse(mem, info)
    } else {
        multiboot2::parse(mem, info)
    }
}
