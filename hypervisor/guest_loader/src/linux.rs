//! The Linux x86 boot protocol, 64-bit entry: starts a stock bzImage (the root partition's
//! kernel) with guest-physical = host-physical addresses.
//!
//! Reference: the kernel's `Documentation/arch/x86/boot.rst` ("64-bit BOOT PROTOCOL",
//! "The Real-Mode Kernel Header") and `arch/x86/include/uapi/asm/bootparam.h` (offsets of
//! `struct boot_params`, the "zero page").
//!
//! Three steps, all without allocation:
//! 1. [`BzImage::parse`] checks the image: setup header, protocol >= 2.12, 64-bit entry,
//!    relocatable, every offset inside the file.
//! 2. [`E820Table::for_root`] turns the firmware memory map into the root's map, with the
//!    hypervisor's protected ranges reported as reserved.
//! 3. [`prepare_linux_boot`] checks the placement ([`LinuxBootSpec`]) and writes the zero
//!    page, command line, GDT and identity page tables into a scratch area, returning the
//!    boot vCPU's [`LinuxEntry`] state.
//!
//! The protected-mode part of the kernel ([`BzImage::protected_mode`]) is not copied here:
//! the caller places it at [`LinuxBootSpec::kernel_load`] (possibly where the boot module
//! already lies), and the initrd likewise.
//!
//! # Scratch area
//!
//! ```text
//! scratch + 0x0000  zero page (struct boot_params); RSI at entry
//! scratch + 0x1000  command line, NUL-terminated (2 pages reserved)
//! scratch + 0x3000  GDT: null, null, code (0x10), data (0x18)
//! scratch + 0x4000  PML4; CR3 at entry
//! scratch + 0x5000  PDPT
//! scratch + 0x6000  one page directory per GiB of `identity_limit`
//! ```
//! [`scratch_size`] gives the exact size for an identity limit, [`SCRATCH_SIZE`] the
//! largest (512 GiB identity-mapped).
//!
//! # Why these entry values
//!
//! The decompressor (`arch/x86/boot/compressed/head_64.S`, `startup_64`) needs long mode,
//! the GDT selectors 0x10/0x18, interrupts off, RSI = zero page, and an identity map of the
//! loaded kernel, its decompression window, the zero page and the command line; it builds
//! its own page tables, GDT and stack right after. CR4 holds only PAE: the kernel's own
//! 32-to-64-bit path enables nothing more, and the decompressor is built without SSE, so
//! OSFXSR is left to the kernel. The page tables have no NX bits, so EFER.NXE stays clear.
//! Hidden segment parts are as a load of the GDT's descriptors sets them (SVM attribute
//! words 0x0A9B for CS and 0x0C93 for data, accessed bit set). IDTR base 0, limit 0; TR and
//! LDTR unusable; every general-purpose register other than RSI is zero (RSP included: the
//! decompressor sets its own stack before using one).
//!
//! The page tables are written directly (a fixed PML4 → PDPT → PD shape with 2 MiB leaves)
//! rather than with the `paging` crate: one 4 KiB write per table instead of a walk per
//! 2 MiB page, and the tests check them with `paging`'s independent walker.

use crate::load::{GuestRam, RamError};

/// Size of a page of the scratch area and of the page tables.
const PAGE: u64 = 0x1000;
/// Bytes one page directory maps (512 × 2 MiB).
const GIB: u64 = 1 << 30;
/// Bytes one page-directory leaf maps.
const LEAF_2M: u64 = 2 << 20;
/// Entries in a page table.
const TABLE_ENTRIES: usize = 512;

/// Offsets in the image's boot sector / `struct boot_params` (bootparam.h).
pub(crate) mod offset {
    /// `acpi_rsdp_addr` (u64, protocol 2.14+).
    pub const ACPI_RSDP_ADDR: usize = 0x070;
    /// `ext_ramdisk_image` (u32): bits 63:32 of the initrd address.
    pub const EXT_RAMDISK_IMAGE: usize = 0x0C0;
    /// `ext_ramdisk_size` (u32): bits 63:32 of the initrd size.
    pub const EXT_RAMDISK_SIZE: usize = 0x0C4;
    /// `ext_cmd_line_ptr` (u32): bits 63:32 of the command-line address.
    pub const EXT_CMD_LINE_PTR: usize = 0x0C8;
    /// `e820_entries` (u8).
    pub const E820_ENTRIES: usize = 0x1E8;
    /// Start of `struct setup_header` (`setup_sects`, u8).
    pub const SETUP_HEADER: usize = 0x1F1;
    /// `syssize` (u32): protected-mode part in 16-byte units.
    pub const SYSSIZE: usize = 0x1F4;
    /// `boot_flag` (u16): 0xAA55.
    pub const BOOT_FLAG: usize = 0x1FE;
    /// `jump` (u16): a short jump whose second byte is the header length beyond 0x202.
    pub const JUMP: usize = 0x200;
    /// `header` (u32): "HdrS".
    pub const MAGIC: usize = 0x202;
    /// `version` (u16).
    pub const VERSION: usize = 0x206;
    /// `type_of_loader` (u8).
    pub const TYPE_OF_LOADER: usize = 0x210;
    /// `loadflags` (u8).
    pub const LOADFLAGS: usize = 0x211;
    /// `ramdisk_image` (u32).
    pub const RAMDISK_IMAGE: usize = 0x218;
    /// `ramdisk_size` (u32).
    pub const RAMDISK_SIZE: usize = 0x21C;
    /// `cmd_line_ptr` (u32).
    pub const CMD_LINE_PTR: usize = 0x228;
    /// `initrd_addr_max` (u32).
    pub const INITRD_ADDR_MAX: usize = 0x22C;
    /// `kernel_alignment` (u32).
    pub const KERNEL_ALIGNMENT: usize = 0x230;
    /// `relocatable_kernel` (u8).
    pub const RELOCATABLE_KERNEL: usize = 0x234;
    /// `xloadflags` (u16).
    pub const XLOADFLAGS: usize = 0x236;
    /// `cmdline_size` (u32).
    pub const CMDLINE_SIZE: usize = 0x238;
    /// `hardware_subarch` (u32).
    pub const HARDWARE_SUBARCH: usize = 0x23C;
    /// `hardware_subarch_data` (u64).
    pub const HARDWARE_SUBARCH_DATA: usize = 0x240;
    /// `payload_offset` (u32), from the start of the protected-mode part.
    pub const PAYLOAD_OFFSET: usize = 0x248;
    /// `payload_length` (u32).
    pub const PAYLOAD_LENGTH: usize = 0x24C;
    /// `setup_data` (u64): physical address of a `struct setup_data` list.
    pub const SETUP_DATA: usize = 0x250;
    /// `pref_address` (u64).
    pub const PREF_ADDRESS: usize = 0x258;
    /// `init_size` (u32).
    pub const INIT_SIZE: usize = 0x260;
    /// End of `init_size`: the shortest header this module accepts.
    pub const MIN_HEADER_END: usize = 0x264;
    /// `edd_mbr_sig_buffer`: the setup header must end at or before it.
    pub const MAX_HEADER_END: usize = 0x290;
    /// `e820_table`: 128 entries of 20 bytes.
    pub const E820_TABLE: usize = 0x2D0;
}

/// "HdrS" at [`offset::MAGIC`].
const HEADER_MAGIC: [u8; 4] = *b"HdrS";
/// `boot_flag` of every bootable image.
const BOOT_FLAG: u16 = 0xAA55;
/// Oldest protocol accepted: 2.12 introduced `xloadflags`.
pub const MIN_PROTOCOL: u16 = 0x020C;
/// Protocol that introduced `acpi_rsdp_addr` (2.14).
const RSDP_PROTOCOL: u16 = 0x020E;
/// `type_of_loader` for a loader without an assigned ID.
const LOADER_UNDEFINED: u8 = 0xFF;
/// `loadflags` bit: the loader set up segments the kernel must keep (16/32-bit entries only).
const KEEP_SEGMENTS: u8 = 0x40;
/// `xloadflags` bit: the kernel has the 64-bit entry point at 0x200.
pub const XLF_KERNEL_64: u16 = 1 << 0;
/// `xloadflags` bit: kernel, boot_params, command line and initrd may lie above 4 GiB.
pub const XLF_CAN_BE_LOADED_ABOVE_4G: u16 = 1 << 1;
/// Offset of the 64-bit entry point from the start of the protected-mode part.
pub const ENTRY_64_OFFSET: u64 = 0x200;
/// Size of one sector of the real-mode part.
const SECTOR: u64 = 512;

/// Offset of the zero page in the scratch area.
pub const ZERO_PAGE_OFFSET: u64 = 0;
/// Offset of the command line in the scratch area.
pub const CMDLINE_OFFSET: u64 = 0x1000;
/// Bytes reserved for the command line and its NUL.
pub const CMDLINE_AREA: u64 = 2 * PAGE;
/// Offset of the GDT in the scratch area.
pub const GDT_OFFSET: u64 = 0x3000;
/// Offset of the PML4 in the scratch area.
pub const PML4_OFFSET: u64 = 0x4000;
/// Offset of the PDPT in the scratch area.
pub const PDPT_OFFSET: u64 = 0x5000;
/// Offset of the first page directory in the scratch area.
pub const PD_OFFSET: u64 = 0x6000;
/// Largest identity map the boot page tables can hold (one PDPT).
pub const MAX_IDENTITY_LIMIT: u64 = 512 * GIB;
/// Scratch bytes for the largest identity map; [`scratch_size`] gives the exact need.
pub const SCRATCH_SIZE: u64 = PD_OFFSET + (MAX_IDENTITY_LIMIT / GIB) * PAGE;

/// The boot protocol's `__BOOT_CS`: flat 64-bit code (CS at entry).
pub const LINUX_CODE_SELECTOR: u16 = 0x10;
/// The boot protocol's `__BOOT_DS`: flat data (DS, ES, FS, GS, SS at entry).
pub const LINUX_DATA_SELECTOR: u16 = 0x18;
/// Flat 64-bit code: present, DPL 0, execute/read, L = 1, G = 1.
pub const LINUX_CODE_DESCRIPTOR: u64 = 0x00AF_9A00_0000_FFFF;
/// Flat 4 GiB data: present, DPL 0, read/write, D/B = 1, G = 1.
pub const LINUX_DATA_DESCRIPTOR: u64 = 0x00CF_9200_0000_FFFF;
/// The GDT written at scratch + [`GDT_OFFSET`].
pub const LINUX_GDT: [u64; 4] = [0, 0, LINUX_CODE_DESCRIPTOR, LINUX_DATA_DESCRIPTOR];

/// Most entries `boot_params.e820_table` holds.
pub const E820_MAX_ENTRIES: usize = 128;
/// Size of one packed `struct boot_e820_entry`.
pub const E820_ENTRY_SIZE: usize = 20;

/// Page-table entry bits.
const PTE_PRESENT: u64 = 1 << 0;
const PTE_WRITABLE: u64 = 1 << 1;
const PTE_HUGE: u64 = 1 << 7;

const _: () = assert!(offset::E820_TABLE + E820_MAX_ENTRIES * E820_ENTRY_SIZE <= PAGE as usize);
const _: () = assert!(offset::MAX_HEADER_END <= offset::E820_TABLE);
const _: () = assert!(CMDLINE_OFFSET + CMDLINE_AREA <= GDT_OFFSET);
const _: () = assert!(size_of::<[u64; 4]>() as u64 <= PAGE);
const _: () = assert!(LINUX_GDT.len() * 8 > LINUX_DATA_SELECTOR as usize);
const _: () = assert!(SCRATCH_SIZE == 0x20_6000);

/// A range of guest memory the boot placement involves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootArea {
    /// The protected-mode part of the kernel where it is loaded.
    Kernel,
    /// The range the decompressor overwrites ([`BzImage::decompression_window`]).
    DecompressionWindow,
    /// The scratch area (zero page, command line, GDT, page tables).
    Scratch,
    /// The initial RAM disk.
    Initrd,
}

/// Why a bzImage cannot be booted as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinuxError {
    /// The image ends before a part its header describes.
    #[error("Image of {len} bytes is shorter than the {needed} bytes its header needs")]
    Truncated {
        /// Bytes needed.
        needed: u64,
        /// Bytes present.
        len: u64,
    },
    /// No "HdrS" at 0x202.
    #[error("Not a bzImage (no HdrS signature)")]
    BadMagic,
    /// `boot_flag` is not 0xAA55.
    #[error("Boot flag {0:#06x} is not 0xaa55")]
    BadBootFlag(u16),
    /// Boot protocol older than 2.12.
    #[error("Boot protocol {0:#06x} is older than 2.12")]
    OldProtocol(u16),
    /// The setup header (0x202 + the jump's offset byte) ends before `init_size` or runs
    /// into the rest of `boot_params`.
    #[error("Setup header end {0:#x} is outside 0x264..=0x290")]
    BadHeaderEnd(u64),
    /// The protected-mode part (`syssize`) is too short to hold the 64-bit entry.
    #[error("Protected-mode part of {0} bytes holds no 64-bit entry")]
    KernelTooShort(u64),
    /// `xloadflags` lacks XLF_KERNEL_64.
    #[error("Kernel has no 64-bit entry point")]
    No64BitEntry,
    /// `relocatable_kernel` is zero.
    #[error("Kernel is not relocatable")]
    NotRelocatable,
    /// `kernel_alignment` is not a power of two.
    #[error("Kernel alignment {0:#x} is not a power of two")]
    BadKernelAlignment(u32),
    /// `init_size` is zero.
    #[error("Kernel declares no init size")]
    ZeroInitSize,
    /// The compressed payload lies outside the protected-mode part.
    #[error("Payload {offset:#x}+{length:#x} lies outside the kernel")]
    PayloadOutOfBounds {
        /// `payload_offset`.
        offset: u32,
        /// `payload_length`.
        length: u32,
    },
    /// The command line is longer than the kernel (or the scratch area) accepts.
    #[error("Command line of {len} bytes exceeds the limit of {max}")]
    CmdlineTooLong {
        /// Its length without NUL.
        len: usize,
        /// The most accepted.
        max: usize,
    },
    /// The command line contains a NUL byte (the kernel would cut it there).
    #[error("Command line contains a NUL byte")]
    CmdlineHasNul,
    /// The initrd ends above `initrd_addr_max` + 1 and the kernel cannot take it above 4 GiB.
    #[error("Initrd ending at {end:#x} lies above the kernel's limit {limit:#x}")]
    InitrdAboveLimit {
        /// End of the initrd (exclusive).
        end: u64,
        /// `initrd_addr_max` (inclusive).
        limit: u64,
    },
    /// The root's memory map needs more entries than `boot_params` holds.
    #[error("Memory map needs more than 128 entries")]
    TooManyE820Entries,
    /// A protected range ends before it starts.
    #[error("Protected range {start:#x}..{end:#x} is reversed")]
    BadRange {
        /// Its start.
        start: u64,
        /// Its end.
        end: u64,
    },
    /// An address computation overflowed 64 bits.
    #[error("Address arithmetic overflows")]
    Overflow,
    /// The scratch area is not 4 KiB aligned.
    #[error("Scratch area {0:#x} is not 4 KiB aligned")]
    MisalignedScratch(u64),
    /// `identity_limit` is not a multiple of 1 GiB in 1..=512 GiB.
    #[error("Identity limit {0:#x} is not a multiple of 1 GiB in 1..=512 GiB")]
    BadIdentityLimit(u64),
    /// An area the kernel uses before building its own page tables lies beyond the
    /// identity map.
    #[error("{area:?} ends at {end:#x}, beyond the identity map")]
    NotIdentityMapped {
        /// The area.
        area: BootArea,
        /// Its end.
        end: u64,
    },
    /// Two areas that must be disjoint overlap.
    #[error("{0:?} overlaps {1:?}")]
    Overlap(BootArea, BootArea),
    /// The decompression window is not all RAM in the memory map.
    #[error("Decompression window {start:#x}..{end:#x} is not all RAM")]
    WindowNotRam {
        /// Its start.
        start: u64,
        /// Its end.
        end: u64,
    },
    /// An ACPI RSDP address was given but the kernel's protocol predates the field.
    #[error("Boot protocol {0:#06x} cannot take an RSDP address")]
    RsdpUnsupported(u16),
    /// The [`GuestRam`] refused an access.
    #[error("Guest RAM access failed")]
    Ram(#[from] RamError),
}

/// A checked bzImage. Every field read here lies inside the image bytes.
#[derive(Debug, Clone, Copy)]
pub struct BzImage<'a> {
    bytes: &'a [u8],
    version: u16,
    setup_sects: u8,
    header_end: usize,
    xloadflags: u16,
    kernel_alignment: u32,
    cmdline_size: u32,
    initrd_addr_max: u32,
    pref_address: u64,
    init_size: u32,
    protected_mode_len: u64,
}

/// Little-endian field readers; callers have checked that the header lies in `bytes`.
fn read_u8(bytes: &[u8], at: usize) -> u8 {
    bytes.get(at).copied().unwrap_or(0)
}

fn read_u16(bytes: &[u8], at: usize) -> u16 {
    let mut raw = [0u8; 2];
    if let Some(src) = bytes.get(at..at.saturating_add(2)) {
        raw.copy_from_slice(src);
    }
    u16::from_le_bytes(raw)
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    if let Some(src) = bytes.get(at..at.saturating_add(4)) {
        raw.copy_from_slice(src);
    }
    u32::from_le_bytes(raw)
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    if let Some(src) = bytes.get(at..at.saturating_add(8)) {
        raw.copy_from_slice(src);
    }
    u64::from_le_bytes(raw)
}

impl<'a> BzImage<'a> {
    /// Checks `bytes` as a bzImage bootable through the 64-bit entry.
    ///
    /// # Errors
    /// [`LinuxError::Truncated`], [`BadMagic`](LinuxError::BadMagic),
    /// [`BadBootFlag`](LinuxError::BadBootFlag), [`OldProtocol`](LinuxError::OldProtocol),
    /// [`BadHeaderEnd`](LinuxError::BadHeaderEnd),
    /// [`KernelTooShort`](LinuxError::KernelTooShort),
    /// [`No64BitEntry`](LinuxError::No64BitEntry),
    /// [`NotRelocatable`](LinuxError::NotRelocatable),
    /// [`BadKernelAlignment`](LinuxError::BadKernelAlignment),
    /// [`ZeroInitSize`](LinuxError::ZeroInitSize),
    /// [`PayloadOutOfBounds`](LinuxError::PayloadOutOfBounds).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, LinuxError> {
        let len = bytes.len() as u64;
        let need = |needed: usize| {
            if bytes.len() < needed {
                Err(LinuxError::Truncated {
                    needed: needed as u64,
                    len,
                })
            } else {
                Ok(())
            }
        };
        need(offset::VERSION + 2)?;
        if bytes.get(offset::MAGIC..offset::MAGIC + 4) != Some(&HEADER_MAGIC[..]) {
            return Err(LinuxError::BadMagic);
        }
        let boot_flag = read_u16(bytes, offset::BOOT_FLAG);
        if boot_flag != BOOT_FLAG {
            return Err(LinuxError::BadBootFlag(boot_flag));
        }
        let version = read_u16(bytes, offset::VERSION);
        if version < MIN_PROTOCOL {
            return Err(LinuxError::OldProtocol(version));
        }
        let header_end = offset::MAGIC + usize::from(read_u8(bytes, offset::JUMP + 1));
        if !(offset::MIN_HEADER_END..=offset::MAX_HEADER_END).contains(&header_end) {
            return Err(LinuxError::BadHeaderEnd(header_end as u64));
        }
        need(header_end)?;

        let setup_sects = match read_u8(bytes, offset::SETUP_HEADER) {
            0 => 4,
            n => n,
        };
        let pm_offset = (u64::from(setup_sects) + 1) * SECTOR;
        let protected_mode_len = u64::from(read_u32(bytes, offset::SYSSIZE)) * 16;
        // Both factors are at most 2^36: no overflow.
        let pm_end = pm_offset + protected_mode_len;
        if pm_end > len {
            return Err(LinuxError::Truncated {
                needed: pm_end,
                len,
            });
        }
        if protected_mode_len <= ENTRY_64_OFFSET {
            return Err(LinuxError::KernelTooShort(protected_mode_len));
        }
        let xloadflags = read_u16(bytes, offset::XLOADFLAGS);
        if xloadflags & XLF_KERNEL_64 == 0 {
            return Err(LinuxError::No64BitEntry);
        }
        if read_u8(bytes, offset::RELOCATABLE_KERNEL) == 0 {
            return Err(LinuxError::NotRelocatable);
        }
        let kernel_alignment = read_u32(bytes, offset::KERNEL_ALIGNMENT);
        if !kernel_alignment.is_power_of_two() {
            return Err(LinuxError::BadKernelAlignment(kernel_alignment));
        }
        let init_size = read_u32(bytes, offset::INIT_SIZE);
        if init_size == 0 {
            return Err(LinuxError::ZeroInitSize);
        }
        let payload_offset = read_u32(bytes, offset::PAYLOAD_OFFSET);
        let payload_length = read_u32(bytes, offset::PAYLOAD_LENGTH);
        if u64::from(payload_offset) + u64::from(payload_length) > protected_mode_len {
            return Err(LinuxError::PayloadOutOfBounds {
                offset: payload_offset,
                length: payload_length,
            });
        }
        Ok(Self {
            bytes,
            version,
            setup_sects,
            header_end,
            xloadflags,
            kernel_alignment,
            cmdline_size: read_u32(bytes, offset::CMDLINE_SIZE),
            initrd_addr_max: read_u32(bytes, offset::INITRD_ADDR_MAX),
            pref_address: read_u64(bytes, offset::PREF_ADDRESS),
            init_size,
            protected_mode_len,
        })
    }

    /// Boot protocol version (0x020F is 2.15).
    #[must_use]
    pub fn version(&self) -> u16 {
        self.version
    }

    /// Sectors of the real-mode setup code after the boot sector (a header value of 0
    /// means 4).
    #[must_use]
    pub fn setup_sects(&self) -> u8 {
        self.setup_sects
    }

    /// Offset of the protected-mode part in the file: `(setup_sects + 1) * 512`.
    #[must_use]
    pub fn protected_mode_offset(&self) -> u64 {
        (u64::from(self.setup_sects) + 1) * SECTOR
    }

    /// The protected-mode part (`syssize` × 16 bytes from
    /// [`protected_mode_offset`](Self::protected_mode_offset)), which the caller places at
    /// [`LinuxBootSpec::kernel_load`]. Bytes after it (a signature) are not loaded.
    #[must_use]
    pub fn protected_mode(&self) -> &'a [u8] {
        let start = self.protected_mode_offset();
        let end = start + self.protected_mode_len;
        usize::try_from(start)
            .ok()
            .zip(usize::try_from(end).ok())
            .and_then(|(start, end)| self.bytes.get(start..end))
            .unwrap_or(&[])
    }

    /// The setup header bytes `[0x1F1, 0x202 + jump offset)` as the image holds them.
    #[must_use]
    pub fn setup_header(&self) -> &'a [u8] {
        self.bytes
            .get(offset::SETUP_HEADER..self.header_end)
            .unwrap_or(&[])
    }

    /// `xloadflags`.
    #[must_use]
    pub fn xloadflags(&self) -> u16 {
        self.xloadflags
    }

    /// Memory the kernel needs from its aligned load address for decompression
    /// (`init_size`).
    #[must_use]
    pub fn init_size(&self) -> u64 {
        u64::from(self.init_size)
    }

    /// Alignment the decompressor rounds its load address up to (a power of two).
    #[must_use]
    pub fn kernel_alignment(&self) -> u64 {
        u64::from(self.kernel_alignment)
    }

    /// Longest command line the kernel takes, without the NUL.
    #[must_use]
    pub fn cmdline_size(&self) -> u32 {
        self.cmdline_size
    }

    /// Highest address the initrd may occupy (inclusive), unless the kernel takes it above
    /// 4 GiB ([`XLF_CAN_BE_LOADED_ABOVE_4G`]).
    #[must_use]
    pub fn initrd_addr_max(&self) -> u64 {
        u64::from(self.initrd_addr_max)
    }

    /// The kernel's `LOAD_PHYSICAL_ADDR`: the lowest address it decompresses to.
    #[must_use]
    pub fn pref_address(&self) -> u64 {
        self.pref_address
    }

    /// `[start, end)` the in-guest decompressor will overwrite when the protected-mode part
    /// lies at `load` (GPA): `start = max(align_up(load, kernel_alignment), pref_address)`,
    /// `end = start + init_size`. `None` on overflow.
    #[must_use]
    pub fn decompression_window(&self, load: u64) -> Option<(u64, u64)> {
        let mask = self.kernel_alignment() - 1;
        let aligned = load.checked_add(mask)? & !mask;
        let start = aligned.max(self.pref_address);
        let end = start.checked_add(self.init_size())?;
        Some((start, end))
    }
}

/// `boot_params` memory types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum E820Type {
    /// Usable RAM.
    Ram = 1,
    /// Reserved (firmware, devices, or the hypervisor's own memory).
    Reserved = 2,
    /// ACPI tables, reclaimable after they are read.
    Acpi = 3,
    /// ACPI non-volatile storage.
    Nvs = 4,
    /// Memory with errors.
    Unusable = 5,
}

/// One memory range of the map (`struct boot_e820_entry`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct E820Entry {
    /// Start address.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// Memory type: an [`E820Type`] or another firmware value.
    pub kind: u32,
}

impl E820Entry {
    /// An entry of a known type.
    #[must_use]
    pub const fn new(addr: u64, size: u64, kind: E820Type) -> Self {
        Self {
            addr,
            size,
            kind: kind as u32,
        }
    }

    /// End (exclusive), saturated at `u64::MAX`.
    #[must_use]
    pub const fn end(&self) -> u64 {
        self.addr.saturating_add(self.size)
    }

    /// Whether this is usable RAM.
    #[must_use]
    pub const fn is_ram(&self) -> bool {
        self.kind == E820Type::Ram as u32
    }

    /// The packed 20-byte form in `boot_params.e820_table`.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; E820_ENTRY_SIZE] {
        let mut out = [0u8; E820_ENTRY_SIZE];
        out[..8].copy_from_slice(&self.addr.to_le_bytes());
        out[8..16].copy_from_slice(&self.size.to_le_bytes());
        out[16..].copy_from_slice(&self.kind.to_le_bytes());
        out
    }
}

/// A sorted, non-overlapping memory map of at most [`E820_MAX_ENTRIES`] entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct E820Table {
    entries: [E820Entry; E820_MAX_ENTRIES],
    len: usize,
}

/// Rank of a firmware type where ranges overlap: RAM loses to anything, otherwise the
/// higher type number wins.
fn e820_rank(kind: u32) -> u64 {
    if kind == E820Type::Ram as u32 {
        0
    } else {
        u64::from(kind) + 1
    }
}

impl E820Table {
    /// An empty map.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            entries: [E820Entry {
                addr: 0,
                size: 0,
                kind: 0,
            }; E820_MAX_ENTRIES],
            len: 0,
        }
    }

    /// The root partition's map: `firmware` (any order, may overlap: a higher type number
    /// wins where ranges overlap, RAM loses to anything) with every `protected` `[start,
    /// end)` range turned into [`E820Type::Reserved`] (the hypervisor's own memory, its
    /// child-memory pool, the shared window), also where the firmware map has a hole.
    /// The result is sorted, adjacent entries of equal type are merged, and RAM entries
    /// are trimmed inward to 4 KiB boundaries (dropped if nothing is left). Empty ranges
    /// are ignored; a firmware entry reaching past 2^64 ends at `u64::MAX`.
    ///
    /// Runs in O((n + m)²) for n firmware entries and m protected ranges.
    ///
    /// # Errors
    /// [`LinuxError::BadRange`] for a protected range with `end < start`;
    /// [`LinuxError::TooManyE820Entries`] if more than 128 entries result.
    pub fn for_root(firmware: &[E820Entry], protected: &[(u64, u64)]) -> Result<Self, LinuxError> {
        if let Some(&(start, end)) = protected.iter().find(|(start, end)| end < start) {
            return Err(LinuxError::BadRange { start, end });
        }
        let firmware_ranges = firmware
            .iter()
            .filter(|e| e.size > 0)
            .map(|e| (e.addr, e.end()));
        let protected_ranges = protected.iter().copied().filter(|(s, e)| s < e);
        let all = || firmware_ranges.clone().chain(protected_ranges.clone());

        let mut builder = MapBuilder {
            table: Self::new(),
            run: None,
        };
        let Some(mut cursor) = all().map(|(start, _)| start).min() else {
            return Ok(builder.table);
        };
        // Walk from boundary to boundary: no range starts or ends inside
        // [cursor, next), so one type holds over it.
        while let Some(next) = all()
            .flat_map(|(start, end)| [start, end])
            .filter(|&point| point > cursor)
            .min()
        {
            let covers = |&(start, end): &(u64, u64)| start <= cursor && cursor < end;
            let kind = if protected_ranges.clone().any(|r| covers(&r)) {
                Some(E820Type::Reserved as u32)
            } else {
                firmware
                    .iter()
                    .filter(|e| e.size > 0 && covers(&(e.addr, e.end())))
                    .map(|e| e.kind)
                    .max_by_key(|&kind| e820_rank(kind))
            };
            if let Some(kind) = kind {
                builder.push(cursor, next, kind)?;
            }
            cursor = next;
        }
        builder.finish()
    }

    /// The entries, sorted by address.
    #[must_use]
    pub fn as_slice(&self) -> &[E820Entry] {
        self.entries.get(..self.len).unwrap_or(&[])
    }

    /// Whether `[start, end)` lies entirely in RAM entries (an empty range does).
    #[must_use]
    pub fn covers_ram(&self, start: u64, end: u64) -> bool {
        let mut cursor = start;
        for entry in self.as_slice() {
            if cursor >= end {
                break;
            }
            if entry.is_ram() && entry.addr <= cursor && cursor < entry.end() {
                cursor = entry.end();
            }
        }
        cursor >= end
    }
}

impl Default for E820Table {
    fn default() -> Self {
        Self::new()
    }
}

/// Collects `[start, end)` pieces in address order, merging equal-type neighbours.
struct MapBuilder {
    table: E820Table,
    run: Option<(u64, u64, u32)>,
}

impl MapBuilder {
    fn push(&mut self, start: u64, end: u64, kind: u32) -> Result<(), LinuxError> {
        match &mut self.run {
            Some((_, run_end, run_kind)) if *run_end == start && *run_kind == kind => {
                *run_end = end;
                Ok(())
            }
            _ => {
                self.flush()?;
                self.run = Some((start, end, kind));
                Ok(())
            }
        }
    }

    fn flush(&mut self) -> Result<(), LinuxError> {
        let Some((mut start, mut end, kind)) = self.run.take() else {
            return Ok(());
        };
        if kind == E820Type::Ram as u32 {
            let Some(up) = start.checked_next_multiple_of(PAGE) else {
                return Ok(());
            };
            start = up;
            end -= end % PAGE;
            if start >= end {
                return Ok(());
            }
        }
        let slot = self
            .table
            .entries
            .get_mut(self.table.len)
            .ok_or(LinuxError::TooManyE820Entries)?;
        *slot = E820Entry {
            addr: start,
            size: end - start,
            kind,
        };
        self.table.len += 1;
        Ok(())
    }

    fn finish(mut self) -> Result<E820Table, LinuxError> {
        self.flush()?;
        Ok(self.table)
    }
}

/// Scratch bytes [`prepare_linux_boot`] writes for `identity_limit` bytes identity-mapped;
/// `None` unless `identity_limit` is a multiple of 1 GiB in 1..=512 GiB.
#[must_use]
pub const fn scratch_size(identity_limit: u64) -> Option<u64> {
    if identity_limit == 0
        || identity_limit > MAX_IDENTITY_LIMIT
        || !identity_limit.is_multiple_of(GIB)
    {
        return None;
    }
    Some(PD_OFFSET + identity_limit / GIB * PAGE)
}

/// Where the root kernel and its data lie, and what it is told.
#[derive(Debug, Clone, Copy)]
pub struct LinuxBootSpec<'a> {
    /// GPA of the protected-mode part ([`BzImage::protected_mode`]); any alignment.
    pub kernel_load: u64,
    /// 4 KiB-aligned GPA of [`scratch_size`]`(identity_limit)` free bytes (at most
    /// [`SCRATCH_SIZE`]), outside the kernel, its decompression window and the initrd
    /// (checked). Also keep it (not checked here) off the BIOS data area (the
    /// decompressor reads the EBDA pointer at 0x40E) and off 128..640 KiB, where the
    /// decompressor puts its paging-mode trampoline while our tables are still live:
    /// 0x1_0000 suits identity limits up to 10 GiB, and anything free between the
    /// loaded kernel and `pref_address` suits larger ones.
    pub scratch: u64,
    /// The kernel command line.
    pub cmdline: &'a str,
    /// `(GPA, size)` of the initrd, already in memory; a size of 0 means none.
    pub initrd: Option<(u64, u64)>,
    /// The memory map the kernel sees; the decompression window must be RAM in it.
    pub e820: &'a E820Table,
    /// GPA of the ACPI RSDP (needs protocol 2.14), or `None` for the kernel's own search.
    pub acpi_rsdp: Option<u64>,
    /// Bytes identity-mapped by the boot page tables from 0: a multiple of 1 GiB,
    /// 1..=512 GiB, covering the kernel, its window and the scratch area.
    pub identity_limit: u64,
}

/// Register state of the boot vCPU for the 64-bit entry (crate docs of this module for
/// the parts not listed: hidden segment state, IDTR, TR, other registers zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinuxEntry {
    /// `kernel_load + 0x200`.
    pub rip: u64,
    /// GPA of the zero page.
    pub rsi: u64,
    /// [`LinuxEntry::CR0`].
    pub cr0: u64,
    /// GPA of the PML4.
    pub cr3: u64,
    /// [`LinuxEntry::CR4`].
    pub cr4: u64,
    /// [`LinuxEntry::EFER`].
    pub efer: u64,
    /// [`LinuxEntry::RFLAGS`].
    pub rflags: u64,
    /// GPA of the GDT.
    pub gdtr_base: u64,
    /// GDT limit (size - 1).
    pub gdtr_limit: u16,
    /// CS: [`LINUX_CODE_SELECTOR`].
    pub code_selector: u16,
    /// DS, ES, FS, GS, SS: [`LINUX_DATA_SELECTOR`].
    pub data_selector: u16,
}

impl LinuxEntry {
    /// CR0 at entry: PE | MP | ET | NE | WP | PG.
    pub const CR0: u64 = (1 << 0) | (1 << 1) | (1 << 4) | (1 << 5) | (1 << 16) | (1 << 31);
    /// CR4 at entry: PAE only (module docs say why not OSFXSR).
    pub const CR4: u64 = 1 << 5;
    /// EFER at entry: LME | LMA (no NXE, no SCE).
    pub const EFER: u64 = (1 << 8) | (1 << 10);
    /// RFLAGS at entry: the always-one bit 1, IF clear.
    pub const RFLAGS: u64 = 1 << 1;
}

/// Whether `[a0, a1)` and `[b0, b1)` share a byte.
fn overlaps((a0, a1): (u64, u64), (b0, b1): (u64, u64)) -> bool {
    a0 < a1 && b0 < b1 && a0 < b1 && b0 < a1
}

/// Writes `value` little-endian at `at` in `page` (all callers use fixed in-page offsets).
fn put(page: &mut [u8], at: usize, value: &[u8]) {
    if let Some(dest) = page.get_mut(at..at.saturating_add(value.len())) {
        dest.copy_from_slice(value);
    }
}

/// Checks the placement in `spec`, then writes the zero page, the command line, a GDT and
/// identity page tables into `spec.scratch` through `ram`, and returns the vCPU state for
/// the 64-bit entry. The kernel and initrd bytes must already be in place.
///
/// Everything is checked before the first write; a [`LinuxError::Ram`] can leave the
/// scratch area partly written.
///
/// # Errors
/// [`LinuxError::BadIdentityLimit`], [`MisalignedScratch`](LinuxError::MisalignedScratch),
/// [`CmdlineHasNul`](LinuxError::CmdlineHasNul),
/// [`CmdlineTooLong`](LinuxError::CmdlineTooLong), [`Overflow`](LinuxError::Overflow),
/// [`InitrdAboveLimit`](LinuxError::InitrdAboveLimit),
/// [`RsdpUnsupported`](LinuxError::RsdpUnsupported), [`Overlap`](LinuxError::Overlap),
/// [`NotIdentityMapped`](LinuxError::NotIdentityMapped),
/// [`WindowNotRam`](LinuxError::WindowNotRam), [`Ram`](LinuxError::Ram).
pub fn prepare_linux_boot(
    ram: &mut impl GuestRam,
    image: &BzImage<'_>,
    spec: &LinuxBootSpec<'_>,
) -> Result<LinuxEntry, LinuxError> {
    let scratch_len = scratch_size(spec.identity_limit)
        .ok_or(LinuxError::BadIdentityLimit(spec.identity_limit))?;
    if !spec.scratch.is_multiple_of(PAGE) {
        return Err(LinuxError::MisalignedScratch(spec.scratch));
    }
    let scratch = (
        spec.scratch,
        spec.scratch
            .checked_add(scratch_len)
            .ok_or(LinuxError::Overflow)?,
    );

    let cmdline = spec.cmdline.as_bytes();
    if cmdline.contains(&0) {
        return Err(LinuxError::CmdlineHasNul);
    }
    let max_cmdline = usize::try_from(image.cmdline_size())
        .unwrap_or(usize::MAX)
        .min(CMDLINE_AREA as usize - 1);
    if cmdline.len() > max_cmdline {
        return Err(LinuxError::CmdlineTooLong {
            len: cmdline.len(),
            max: max_cmdline,
        });
    }

    let kernel_len = image.protected_mode().len() as u64;
    let kernel = (
        spec.kernel_load,
        spec.kernel_load
            .checked_add(kernel_len)
            .ok_or(LinuxError::Overflow)?,
    );
    let window = image
        .decompression_window(spec.kernel_load)
        .ok_or(LinuxError::Overflow)?;
    // boot.rst: "the range with setup_header.init_size from start address of loaded kernel"
    // must be identity-mapped, besides the window the decompressor really uses.
    let init_end = spec
        .kernel_load
        .checked_add(image.init_size())
        .ok_or(LinuxError::Overflow)?;
    let rip = spec
        .kernel_load
        .checked_add(ENTRY_64_OFFSET)
        .ok_or(LinuxError::Overflow)?;

    let initrd = match spec.initrd {
        Some((gpa, size)) if size > 0 => {
            let end = gpa.checked_add(size).ok_or(LinuxError::Overflow)?;
            let limit = image.initrd_addr_max();
            if image.xloadflags() & XLF_CAN_BE_LOADED_ABOVE_4G == 0 && end > limit.saturating_add(1)
            {
                return Err(LinuxError::InitrdAboveLimit { end, limit });
            }
            Some((gpa, end))
        }
        _ => None,
    };
    if spec.acpi_rsdp.is_some() && image.version() < RSDP_PROTOCOL {
        return Err(LinuxError::RsdpUnsupported(image.version()));
    }

    for (area, range) in [
        (BootArea::Kernel, kernel),
        (BootArea::DecompressionWindow, window),
    ] {
        if overlaps(scratch, range) {
            return Err(LinuxError::Overlap(BootArea::Scratch, area));
        }
    }
    if let Some(initrd) = initrd {
        for (area, range) in [
            (BootArea::Kernel, kernel),
            (BootArea::DecompressionWindow, window),
            (BootArea::Scratch, scratch),
        ] {
            if overlaps(initrd, range) {
                return Err(LinuxError::Overlap(BootArea::Initrd, area));
            }
        }
    }
    for (area, end) in [
        (BootArea::Kernel, kernel.1.max(init_end)),
        (BootArea::DecompressionWindow, window.1),
        (BootArea::Scratch, scratch.1),
    ] {
        if end > spec.identity_limit {
            return Err(LinuxError::NotIdentityMapped { area, end });
        }
    }
    if !spec.e820.covers_ram(window.0, window.1) {
        return Err(LinuxError::WindowNotRam {
            start: window.0,
            end: window.1,
        });
    }

    // Checked: scratch + scratch_len does not overflow, and every offset below is inside.
    let zero_page = spec.scratch + ZERO_PAGE_OFFSET;
    let cmdline_gpa = spec.scratch + CMDLINE_OFFSET;
    let gdt = spec.scratch + GDT_OFFSET;
    let pml4 = spec.scratch + PML4_OFFSET;

    write_zero_page(ram, image, spec, zero_page, cmdline_gpa, initrd)?;

    ram.zero(cmdline_gpa, CMDLINE_AREA)?;
    ram.write(cmdline_gpa, cmdline)?;

    ram.zero(gdt, PAGE)?;
    let mut gdt_bytes = [0u8; LINUX_GDT.len() * 8];
    for (chunk, descriptor) in gdt_bytes.chunks_exact_mut(8).zip(LINUX_GDT) {
        chunk.copy_from_slice(&descriptor.to_le_bytes());
    }
    ram.write(gdt, &gdt_bytes)?;

    write_page_tables(ram, spec.scratch, spec.identity_limit)?;

    Ok(LinuxEntry {
        rip,
        rsi: zero_page,
        cr0: LinuxEntry::CR0,
        cr3: pml4,
        cr4: LinuxEntry::CR4,
        efer: LinuxEntry::EFER,
        rflags: LinuxEntry::RFLAGS,
        gdtr_base: gdt,
        gdtr_limit: (gdt_bytes.len() - 1) as u16,
        code_selector: LINUX_CODE_SELECTOR,
        data_selector: LINUX_DATA_SELECTOR,
    })
}

/// Builds `struct boot_params` in a page buffer and writes it at `gpa`.
fn write_zero_page(
    ram: &mut impl GuestRam,
    image: &BzImage<'_>,
    spec: &LinuxBootSpec<'_>,
    gpa: u64,
    cmdline_gpa: u64,
    initrd: Option<(u64, u64)>,
) -> Result<(), LinuxError> {
    let mut page = [0u8; PAGE as usize];
    put(&mut page, offset::SETUP_HEADER, image.setup_header());
    page[offset::TYPE_OF_LOADER] = LOADER_UNDEFINED;
    page[offset::LOADFLAGS] &= !KEEP_SEGMENTS;
    // We boot a plain PC and pass no setup_data list, whatever the image's defaults say.
    put(&mut page, offset::HARDWARE_SUBARCH, &0u32.to_le_bytes());
    put(
        &mut page,
        offset::HARDWARE_SUBARCH_DATA,
        &0u64.to_le_bytes(),
    );
    put(&mut page, offset::SETUP_DATA, &0u64.to_le_bytes());

    let split = |value: u64| {
        (
            (value as u32).to_le_bytes(),
            ((value >> 32) as u32).to_le_bytes(),
        )
    };
    let (low, high) = split(cmdline_gpa);
    put(&mut page, offset::CMD_LINE_PTR, &low);
    put(&mut page, offset::EXT_CMD_LINE_PTR, &high);

    let (start, end) = initrd.unwrap_or((0, 0));
    let (image_low, image_high) = split(start);
    let (size_low, size_high) = split(end - start);
    put(&mut page, offset::RAMDISK_IMAGE, &image_low);
    put(&mut page, offset::EXT_RAMDISK_IMAGE, &image_high);
    put(&mut page, offset::RAMDISK_SIZE, &size_low);
    put(&mut page, offset::EXT_RAMDISK_SIZE, &size_high);

    if let Some(rsdp) = spec.acpi_rsdp {
        put(&mut page, offset::ACPI_RSDP_ADDR, &rsdp.to_le_bytes());
    }

    let entries = spec.e820.as_slice();
    // E820Table holds at most 128 entries.
    page[offset::E820_ENTRIES] = entries.len() as u8;
    for (index, entry) in entries.iter().enumerate() {
        put(
            &mut page,
            offset::E820_TABLE + index * E820_ENTRY_SIZE,
            &entry.to_bytes(),
        );
    }
    ram.write(gpa, &page)?;
    Ok(())
}

/// Identity-maps `[0, identity_limit)` with writable, executable 2 MiB pages: PML4 →
/// one PDPT → one PD per GiB, in the scratch area at `scratch`.
fn write_page_tables(
    ram: &mut impl GuestRam,
    scratch: u64,
    identity_limit: u64,
) -> Result<(), RamError> {
    let directories = identity_limit / GIB;
    let pdpt = scratch + PDPT_OFFSET;
    let mut table = [0u8; PAGE as usize];
    write_table(ram, &mut table, scratch + PML4_OFFSET, 1, |_| {
        pdpt | PTE_PRESENT | PTE_WRITABLE
    })?;
    write_table(ram, &mut table, pdpt, directories, |index| {
        (scratch + PD_OFFSET + index * PAGE) | PTE_PRESENT | PTE_WRITABLE
    })?;
    for directory in 0..directories {
        let base = directory * GIB;
        let gpa = scratch + PD_OFFSET + directory * PAGE;
        write_table(ram, &mut table, gpa, TABLE_ENTRIES as u64, |index| {
            (base + index * LEAF_2M) | PTE_PRESENT | PTE_WRITABLE | PTE_HUGE
        })?;
    }
    Ok(())
}

/// Writes a table page at `gpa` whose first `count` entries are `entry(index)` and whose
/// others are zero (not present).
fn write_table(
    ram: &mut impl GuestRam,
    table: &mut [u8; PAGE as usize],
    gpa: u64,
    count: u64,
    entry: impl Fn(u64) -> u64,
) -> Result<(), RamError> {
    table.fill(0);
    for (index, slot) in (0..count).zip(table.chunks_exact_mut(8)) {
        slot.copy_from_slice(&entry(index).to_le_bytes());
    }
    ram.write(gpa, table)
}
