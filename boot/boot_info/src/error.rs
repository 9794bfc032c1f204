//! Errors of boot-information parsing, worded for a serial console.

use core::fmt;

use crate::OutOfRange;

/// Which string of the boot information an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringKind {
    /// The hypervisor's own command line.
    Cmdline,
    /// The boot loader's name.
    LoaderName,
    /// The command line of the boot module with this index (0-based, in loader order).
    Module(usize),
}

impl fmt::Display for StringKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cmdline => f.write_str("The hypervisor command line"),
            Self::LoaderName => f.write_str("The boot loader name"),
            Self::Module(i) => write!(f, "The command line of boot module {i}"),
        }
    }
}

/// Why the boot information could not be turned into a [`crate::BootInfo`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BootInfoError {
    /// EAX did not hold a Multiboot magic value.
    #[error(
        "Unknown boot loader magic {seen:#010x} (expected 0x2badb002 for Multiboot1 or 0x36d76289 for Multiboot2)"
    )]
    UnknownMagic {
        /// The value found in EAX.
        seen: u32,
    },
    /// EBX was zero.
    #[error("The boot loader passed a null boot information pointer")]
    NullInfo,
    /// Part of the boot information lies outside readable physical memory.
    #[error("Boot information at {phys:#x} ({len} bytes) is not readable")]
    Unreadable {
        /// First physical address of the failed read.
        phys: u64,
        /// Length of the failed read in bytes.
        len: u64,
    },
    /// The Multiboot2 information does not start on an 8-byte boundary.
    #[error("Multiboot2 boot information at {addr:#x} is not 8-byte aligned")]
    Misaligned {
        /// Physical address of the information.
        addr: u64,
    },
    /// The Multiboot2 `total_size` is too small to hold a header and end tag, or beyond the cap.
    #[error("Multiboot2 boot information claims {size} bytes (must be 16 to {max})")]
    BadTotalSize {
        /// The `total_size` field.
        size: u32,
        /// The largest size accepted.
        max: u32,
    },
    /// A Multiboot2 tag is smaller than its header or its type's fixed fields.
    #[error(
        "Multiboot2 tag {tag_type} at {addr:#x} has size {size}, less than the {min} bytes it needs"
    )]
    BadTagSize {
        /// The tag type.
        tag_type: u32,
        /// Physical address of the tag.
        addr: u64,
        /// The tag's size field.
        size: u32,
        /// The smallest valid size for this tag type.
        min: u32,
    },
    /// A Multiboot2 tag extends beyond `total_size`.
    #[error("Multiboot2 tag {tag_type} at {addr:#x} runs past the end of the boot information")]
    TagPastEnd {
        /// The tag type.
        tag_type: u32,
        /// Physical address of the tag.
        addr: u64,
    },
    /// The Multiboot2 tags ran out before an end tag (type 0) was found.
    #[error("Multiboot2 boot information has no end tag")]
    MissingEndTag,
    /// A Multiboot2 memory map tag declares an unusable entry size.
    #[error(
        "Multiboot2 memory map at {addr:#x} has entry size {entry_size} (must be a multiple of 8, at least 24)"
    )]
    BadMmapEntrySize {
        /// Physical address of the memory map tag.
        addr: u64,
        /// The declared entry size.
        entry_size: u32,
    },
    /// A Multiboot1 memory map entry is too small or runs past `mmap_length`.
    #[error("Multiboot1 memory map entry at {addr:#x} with size {size} is malformed")]
    BadMb1MmapEntry {
        /// Physical address of the entry's `size` field.
        addr: u64,
        /// The entry's `size` field.
        size: u32,
    },
    /// The Multiboot1 `mmap_length` is beyond the cap.
    #[error("Multiboot1 memory map is {length} bytes long (at most {max} supported)")]
    MmapTooLarge {
        /// The `mmap_length` field.
        length: u32,
        /// The largest length accepted.
        max: u32,
    },
    /// A memory region wraps around the end of the 64-bit address space.
    #[error(
        "Memory region at {start:#x} with length {len:#x} wraps past the end of the address space"
    )]
    RegionOverflow {
        /// Start of the region.
        start: u64,
        /// Length of the region.
        len: u64,
    },
    /// More memory regions than [`crate::MAX_MEMORY_REGIONS`].
    #[error("Too many memory regions (at most {cap} supported)")]
    TooManyRegions {
        /// The capacity.
        cap: usize,
    },
    /// More boot modules than [`crate::MAX_MODULES`].
    #[error("Too many boot modules: {count} (at most {cap} supported)")]
    TooManyModules {
        /// How many modules the loader reported (at least `cap + 1`).
        count: usize,
        /// The capacity.
        cap: usize,
    },
    /// Neither a memory map nor basic memory information was provided.
    #[error("The boot loader provided no memory map")]
    NoMemoryMap,
    /// No NUL terminator was found within the string's capacity or its tag.
    #[error("{which} is not NUL-terminated within {cap} bytes")]
    StringNotTerminated {
        /// Which string.
        which: StringKind,
        /// How many bytes were searched.
        cap: usize,
    },
    /// The string does not fit its fixed buffer.
    #[error("{which} is {len} bytes long (at most {cap} supported)")]
    StringTooLong {
        /// Which string.
        which: StringKind,
        /// Its length without the terminator.
        len: usize,
        /// The capacity.
        cap: usize,
    },
    /// The string is not valid UTF-8.
    #[error("{which} is not valid UTF-8")]
    StringNotUtf8 {
        /// Which string.
        which: StringKind,
    },
    /// A module's end address is below its start address.
    #[error("Boot module {index} ends at {end:#x}, before its start at {start:#x}")]
    ModuleEndBeforeStart {
        /// Module index (0-based, loader order).
        index: usize,
        /// Start address.
        start: u64,
        /// End address.
        end: u64,
    },
    /// An ACPI RSDP copy in a Multiboot2 tag has a bad signature or checksum.
    #[error(
        "The ACPI RSDP in Multiboot2 tag {tag_type} at {addr:#x} has a bad signature or checksum"
    )]
    BadRsdp {
        /// The tag type (14 or 15).
        tag_type: u32,
        /// Physical address of the tag.
        addr: u64,
    },
}

impl From<OutOfRange> for BootInfoError {
    fn from(e: OutOfRange) -> Self {
        Self::Unreadable {
            phys: e.phys,
            len: e.len,
        }
    }
}
