//! The start-info page: what the loader tells a test guest at entry (RDI = its GPA).
//!
//! Shared by the loader (which writes it) and the guest runtime `guest_rt` (which copies it
//! out once and checks it with [`StartInfo::validate`]).

use core::ops::Range;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::layout::{BOOT_PAGES_END, PAGE_SIZE};

/// `magic` of a start-info page: the bytes "MicaStrt" read as a little-endian `u64`.
pub const START_INFO_MAGIC: u64 = u64::from_le_bytes(*b"MicaStrt");
/// The layout version this crate writes and accepts.
pub const START_INFO_VERSION: u32 = 1;
/// Longest argument string, in bytes.
pub const ARGS_MAX: usize = 512;

/// The start-info structure at the start of the start-info page (little-endian, 592 bytes).
///
/// Address ranges are guest-physical (equal to guest-virtual under the initial tables).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct StartInfo {
    /// [`START_INFO_MAGIC`].
    pub magic: u64,
    /// [`START_INFO_VERSION`].
    pub version: u32,
    /// `size_of::<StartInfo>()`.
    pub size: u32,
    /// Bytes of guest RAM, which spans `[0, ram_size)`.
    pub ram_size: u64,
    /// The partition's ID.
    pub partition_id: u64,
    /// Index of the virtual processor started with this page.
    pub vp_index: u32,
    /// Bytes of `args` in use.
    pub args_len: u32,
    /// Lowest GPA of the loaded image.
    pub image_start: u64,
    /// First GPA after the loaded image, rounded up to 4 KiB.
    pub image_end: u64,
    /// End of the free RAM above the image (the stack's lowest address).
    pub free_end: u64,
    /// Initial stack pointer; the page tables start here.
    pub stack_top: u64,
    /// GPA of the PML4 (CR3 at entry).
    pub page_tables: u64,
    /// The module's argument string (UTF-8), `args_len` bytes, zero padded.
    pub args: [u8; ARGS_MAX],
}

const _: () = assert!(size_of::<StartInfo>() == 80 + ARGS_MAX);
const _: () = assert!(core::mem::offset_of!(StartInfo, args) == 80);
const _: () = assert!(size_of::<StartInfo>() as u64 <= PAGE_SIZE);

/// Why a start-info page is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StartInfoError {
    /// `magic` is wrong (RDI does not point at a start-info page).
    #[error("Bad start-info magic {0:#x}")]
    BadMagic(u64),
    /// Another layout version.
    #[error("Unsupported start-info version {0}")]
    UnsupportedVersion(u32),
    /// `size` disagrees with this layout.
    #[error("Start-info size {0} does not match the layout")]
    BadSize(u32),
    /// `args_len` is larger than [`ARGS_MAX`].
    #[error("Argument length {0} exceeds the maximum")]
    ArgsTooLong(u32),
    /// The arguments are not UTF-8.
    #[error("Arguments are not UTF-8")]
    ArgsNotUtf8,
    /// The ranges are out of order or outside RAM.
    #[error("Inconsistent memory ranges")]
    BadRanges,
}

/// A checked start-info page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartInfoView<'a> {
    /// Bytes of guest RAM.
    pub ram_size: u64,
    /// The partition's ID.
    pub partition_id: u64,
    /// The VP's index.
    pub vp_index: u32,
    /// The argument string.
    pub args: &'a str,
    /// The loaded image `[image_start, image_end)`.
    pub image: Range<u64>,
    /// Free RAM above the image, `[image_end, free_end)`.
    pub free: Range<u64>,
    /// Initial stack pointer.
    pub stack_top: u64,
    /// GPA of the PML4.
    pub page_tables: u64,
}

impl StartInfo {
    /// Copies a start-info structure out of the first `size_of::<StartInfo>()` bytes of
    /// `bytes` (`None` if there are fewer). Nothing is checked yet: see
    /// [`validate`](Self::validate).
    #[must_use]
    pub fn copy_from_prefix(bytes: &[u8]) -> Option<Self> {
        Self::read_from_prefix(bytes).ok().map(|(info, _)| info)
    }

    /// Checks every field; the view borrows the argument string.
    ///
    /// # Errors
    /// Every [`StartInfoError`].
    pub fn validate(&self) -> Result<StartInfoView<'_>, StartInfoError> {
        if self.magic != START_INFO_MAGIC {
            return Err(StartInfoError::BadMagic(self.magic));
        }
        if self.version != START_INFO_VERSION {
            return Err(StartInfoError::UnsupportedVersion(self.version));
        }
        if self.size as usize != size_of::<Self>() {
            return Err(StartInfoError::BadSize(self.size));
        }
        let args = usize::try_from(self.args_len)
            .ok()
            .and_then(|len| self.args.get(..len))
            .ok_or(StartInfoError::ArgsTooLong(self.args_len))?;
        let args = core::str::from_utf8(args).map_err(|_| StartInfoError::ArgsNotUtf8)?;
        let ordered = BOOT_PAGES_END <= self.image_start
            && self.image_start <= self.image_end
            && self.image_end <= self.free_end
            && self.free_end <= self.stack_top
            && self.stack_top == self.page_tables
            && self.page_tables < self.ram_size;
        if !ordered {
            return Err(StartInfoError::BadRanges);
        }
        Ok(StartInfoView {
            ram_size: self.ram_size,
            partition_id: self.partition_id,
            vp_index: self.vp_index,
            args,
            image: self.image_start..self.image_end,
            free: self.image_end..self.free_end,
            stack_top: self.stack_top,
            page_tables: self.page_tables,
        })
    }
}
