//! Ring memory in a file that two processes map (feature `std`).
//!
//! One side [`create`](SharedFileRingMem::create)s the file with a data-area size; the other
//! [`open`](SharedFileRingMem::open)s it by path. The file is exactly the wire layout: the 4 KiB
//! control page, then the data area (a multiple of 4 KiB), so the same bytes could be guest pages.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::sync::atomic::Ordering;

use memmap2::MmapRaw;

use crate::mem::{ControlField, RingMem, check_data_len};
use crate::raw::MappedRing;
use crate::sync::{for_load, for_store};
use crate::wire::{CONTROL_PAGE_LEN, FEATURE_PENDING_SEND_SIZE, PACKET_ALIGN, PAGE_SIZE};

/// Why a shared ring file could not be created or opened.
#[derive(Debug, thiserror::Error)]
pub enum SharedFileError {
    /// The file could not be created, sized, opened or mapped.
    #[error("Shared ring file")]
    Io(#[from] io::Error),
    /// The requested or found data area is not a positive multiple of the page size, or too
    /// large.
    #[error("Data area of {data_len} bytes is not a usable multiple of {PAGE_SIZE}")]
    BadDataLen {
        /// The data-area size, in bytes.
        data_len: u64,
    },
    /// The file is shorter than a control page plus one data page.
    #[error("File of {file_len} bytes is too short for a ring")]
    TooShort {
        /// The file's length.
        file_len: u64,
    },
}

/// A ring mapped from a file shared between two processes.
#[derive(Debug)]
pub struct SharedFileRingMem {
    ring: MappedRing,
    data_len: u32,
}

fn check_page_data_len(data_len: u64) -> Result<u32, SharedFileError> {
    u32::try_from(data_len)
        .ok()
        .filter(|&len| len.is_multiple_of(PAGE_SIZE) && check_data_len(len).is_ok())
        .ok_or(SharedFileError::BadDataLen { data_len })
}

impl SharedFileRingMem {
    /// Creates a new file at `path` (it must not exist) holding a zeroed ring with a
    /// `data_len`-byte data area (a multiple of 4 KiB) and the pending-send-size feature set.
    pub fn create(path: &Path, data_len: u32) -> Result<Self, SharedFileError> {
        let data_len = check_page_data_len(data_len.into())?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        file.set_len(u64::from(CONTROL_PAGE_LEN) + u64::from(data_len))?;
        let mem = Self::map(&file, data_len)?;
        mem.store_control(
            ControlField::FeatureBits,
            FEATURE_PENDING_SEND_SIZE,
            Ordering::Release,
        );
        Ok(mem)
    }

    /// Opens a ring file another process created; checks that its size is a control page plus a
    /// whole number of data pages.
    pub fn open(path: &Path) -> Result<Self, SharedFileError> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let file_len = file.metadata()?.len();
        let data_len = file_len
            .checked_sub(u64::from(CONTROL_PAGE_LEN))
            .filter(|&len| len >= u64::from(PAGE_SIZE))
            .ok_or(SharedFileError::TooShort { file_len })?;
        let data_len = check_page_data_len(data_len)?;
        Self::map(&file, data_len)
    }

    fn map(file: &File, data_len: u32) -> Result<Self, SharedFileError> {
        let map = MmapRaw::map_raw(file)?;
        let ring = MappedRing::new(map, data_len).ok_or(SharedFileError::BadDataLen {
            data_len: data_len.into(),
        })?;
        Ok(Self { ring, data_len })
    }
}

impl RingMem for SharedFileRingMem {
    fn data_len(&self) -> u32 {
        self.data_len
    }

    fn load_control(&self, field: ControlField, order: Ordering) -> u32 {
        self.ring
            .control()
            .get(field.byte_offset() / 4)
            .map_or(0, |word| word.load(for_load(order)))
    }

    fn store_control(&self, field: ControlField, value: u32, order: Ordering) {
        if let Some(word) = self.ring.control().get(field.byte_offset() / 4) {
            word.store(value, for_store(order));
        }
    }

    fn read_data(&self, offset: u32, buf: &mut [u8]) {
        let Some(words) = word_slice(self.ring.data(), offset, buf.len()) else {
            return;
        };
        for (chunk, word) in buf.chunks_exact_mut(PACKET_ALIGN as usize).zip(words) {
            chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
        }
    }

    fn write_data(&self, offset: u32, data: &[u8]) {
        let Some(words) = word_slice(self.ring.data(), offset, data.len()) else {
            return;
        };
        for (chunk, word) in data.chunks_exact(PACKET_ALIGN as usize).zip(words) {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(chunk);
            word.store(u64::from_le_bytes(bytes), Ordering::Relaxed);
        }
    }
}

/// The words covering `[offset, offset + len)`, if both are multiples of 8 and in range.
fn word_slice<T>(words: &[T], offset: u32, len: usize) -> Option<&[T]> {
    let align = PACKET_ALIGN as usize;
    let offset = usize::try_from(offset).ok()?;
    if !offset.is_multiple_of(align) || !len.is_multiple_of(align) {
        return None;
    }
    let first = offset / align;
    words.get(first..first.checked_add(len / align)?)
}
