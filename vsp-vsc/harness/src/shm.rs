//! Shared memory: one mapping (a file two processes map, or anonymous memory two threads share)
//! that holds the harness header page, the control-plane message rings and the channel's ring
//! buffer, and [`RegionRingMem`], which exposes one ring inside it as [`RingMem`].
//!
//! This module is the harness's only `unsafe` code. The peer (another process, possibly hostile)
//! may write any byte at any time, so the mapping is never viewed as Rust references to plain
//! data: control fields are accessed as atomics, and data is copied with `rep movsb` in inline
//! assembly (x86-64), which the compiler treats as an opaque access like a volatile copy. That
//! makes concurrent peer writes defined (the copy may see torn data, which the ring code
//! validates after copying) and lets the CPU's fast string copy move whole packets.

use std::fs::OpenOptions;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use memmap2::{MmapOptions, MmapRaw};
use vmbus_ring::{ControlField, RingMem};

/// Size of a page of the region (the VMBus page size).
pub const PAGE: usize = 4096;

/// A mapping shared with the peer.
#[derive(Debug)]
pub struct SharedRegion {
    map: MmapRaw,
}

impl SharedRegion {
    /// Zeroed anonymous memory for two threads of one process.
    pub fn anonymous(len: usize) -> io::Result<Self> {
        let map = MmapOptions::new().len(len).map_anon()?;
        Ok(Self { map: map.into() })
    }

    /// Creates the file at `path` (it must not exist), `len` zero bytes, and maps it.
    pub fn create_file(path: &Path, len: usize) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        file.set_len(len as u64)?;
        Ok(Self {
            map: MmapRaw::map_raw(&file)?,
        })
    }

    /// Maps an existing file.
    pub fn open_file(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Self {
            map: MmapRaw::map_raw(&file)?,
        })
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the region is empty.
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// The 32-bit word at `offset` as an atomic, if `offset` is 4-byte aligned and in bounds.
    pub fn word(&self, offset: usize) -> Option<&AtomicU32> {
        let end = offset.checked_add(4)?;
        if !offset.is_multiple_of(4) || end > self.map.len() {
            return None;
        }
        let ptr = self
            .map
            .as_mut_ptr()
            .wrapping_add(offset)
            .cast::<AtomicU32>();
        // SAFETY: `offset..offset + 4` lies inside the mapping, which is page aligned, so `ptr`
        // is 4-byte aligned; `AtomicU32` has the size and alignment of `u32` and accepts every
        // bit pattern. The reference borrows `self`, which owns the mapping. In this process the
        // word is only accessed atomically (or by `copy`, whose asm is an opaque access).
        Some(unsafe { &*ptr })
    }

    /// Loads the word at `offset` (0 if out of range).
    pub fn load(&self, offset: usize, order: Ordering) -> u32 {
        self.word(offset).map_or(0, |w| w.load(load_order(order)))
    }

    /// Stores the word at `offset` (ignored if out of range).
    pub fn store(&self, offset: usize, value: u32, order: Ordering) {
        if let Some(w) = self.word(offset) {
            w.store(value, store_order(order));
        }
    }

    /// Copies bytes out of the region at `offset` into `buf`; `false` (and `buf` unchanged) if
    /// the range is out of bounds.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> bool {
        if !self.in_bounds(offset, buf.len()) {
            return false;
        }
        let src = self.map.as_ptr().wrapping_add(offset);
        // SAFETY: `src..src + len` is inside the mapping (checked above) and `buf` is a
        // distinct exclusive buffer of `len` bytes, so the ranges do not overlap.
        unsafe { copy_bytes(src, buf.as_mut_ptr(), buf.len()) };
        true
    }

    /// Copies `data` into the region at `offset`; `false` (nothing written) if out of bounds.
    pub fn write(&self, offset: usize, data: &[u8]) -> bool {
        if !self.in_bounds(offset, data.len()) {
            return false;
        }
        let dst = self.map.as_mut_ptr().wrapping_add(offset);
        // SAFETY: `dst..dst + len` is inside the writable mapping (checked above) and `data` is
        // a distinct buffer of `len` bytes, so the ranges do not overlap.
        unsafe { copy_bytes(data.as_ptr(), dst, data.len()) };
        true
    }

    fn in_bounds(&self, offset: usize, len: usize) -> bool {
        offset
            .checked_add(len)
            .is_some_and(|end| end <= self.map.len())
    }
}

fn load_order(order: Ordering) -> Ordering {
    match order {
        Ordering::Release | Ordering::AcqRel => Ordering::SeqCst,
        other => other,
    }
}

fn store_order(order: Ordering) -> Ordering {
    match order {
        Ordering::Acquire | Ordering::AcqRel => Ordering::SeqCst,
        other => other,
    }
}

/// Copies `len` bytes from `src` to `dst` as one opaque access.
///
/// # Safety
/// `src` must be valid for reads and `dst` for writes of `len` bytes, and the two ranges must
/// not overlap. Either range may be concurrently written by another process.
#[cfg(target_arch = "x86_64")]
unsafe fn copy_bytes(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: the caller guarantees both ranges are valid and disjoint; `rep movsb` copies
    // exactly `rcx` bytes forward (the ABI keeps the direction flag clear) and touches nothing
    // else, no stack, no flags.
    unsafe {
        core::arch::asm!(
            "rep movsb",
            inout("rcx") len => _,
            inout("rsi") src => _,
            inout("rdi") dst => _,
            options(nostack, preserves_flags)
        );
    }
}

/// Copies `len` bytes from `src` to `dst` as volatile byte accesses (non-x86 fallback).
///
/// # Safety
/// As for the x86-64 version.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn copy_bytes(src: *const u8, dst: *mut u8, len: usize) {
    for i in 0..len {
        // SAFETY: `i < len`, so both pointers are in their valid, disjoint ranges.
        let byte = unsafe { src.add(i).read_volatile() };
        // SAFETY: as above.
        unsafe { dst.add(i).write_volatile(byte) };
    }
}

/// One ring inside a [`SharedRegion`]: its control page at `first_page`, its data area the
/// `data_pages` pages after it (the layout a ring has in a GPADL).
#[derive(Debug, Clone)]
pub struct RegionRingMem {
    region: Arc<SharedRegion>,
    control: usize,
    data: usize,
    data_len: u32,
}

impl RegionRingMem {
    /// The ring at `first_page` with `data_pages` data pages, if it lies inside the region.
    pub fn new(region: Arc<SharedRegion>, first_page: usize, data_pages: usize) -> Option<Self> {
        let control = first_page.checked_mul(PAGE)?;
        let data = control.checked_add(PAGE)?;
        let data_len = data_pages.checked_mul(PAGE)?;
        if data_pages == 0 || data.checked_add(data_len)? > region.len() {
            return None;
        }
        Some(Self {
            region,
            control,
            data,
            data_len: u32::try_from(data_len).ok()?,
        })
    }

    /// The region the ring lives in.
    pub fn region(&self) -> &Arc<SharedRegion> {
        &self.region
    }

    /// Byte offset of the control page in the region.
    pub fn control_offset(&self) -> usize {
        self.control
    }

    /// Byte offset of the data area in the region.
    pub fn data_offset(&self) -> usize {
        self.data
    }

    /// Zeroes the protocol fields and sets the feature bits (the ring's creator does this once,
    /// before handing the ring over).
    pub fn init(&self, feature_bits: u32) {
        for field in ControlField::ALL {
            self.store_control(field, 0, Ordering::Relaxed);
        }
        self.store_control(ControlField::FeatureBits, feature_bits, Ordering::Release);
    }
}

impl RingMem for RegionRingMem {
    fn data_len(&self) -> u32 {
        self.data_len
    }

    fn load_control(&self, field: ControlField, order: Ordering) -> u32 {
        self.region.load(self.control + field.byte_offset(), order)
    }

    fn store_control(&self, field: ControlField, value: u32, order: Ordering) {
        self.region
            .store(self.control + field.byte_offset(), value, order)
    }

    fn read_data(&self, offset: u32, buf: &mut [u8]) {
        let end = (offset as usize).checked_add(buf.len());
        if end.is_some_and(|end| end <= self.data_len as usize) {
            self.region.read(self.data + offset as usize, buf);
        }
    }

    fn write_data(&self, offset: u32, data: &[u8]) {
        let end = (offset as usize).checked_add(data.len());
        if end.is_some_and(|end| end <= self.data_len as usize) {
            self.region.write(self.data + offset as usize, data);
        }
    }
}
