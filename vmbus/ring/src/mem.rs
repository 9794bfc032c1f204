//! Ring memory: where a ring's control page and data area live.
//!
//! The ring code ([`RingReader`](crate::RingReader), [`RingWriter`](crate::RingWriter)) sees
//! memory only through [`RingMem`]: the data area's size, atomic access to the control-page
//! fields, and copies in and out of the data area. Wraparound is the ring code's job: it never
//! asks for a copy that crosses the end of the data area.
//!
//! Implementations:
//! - [`FlatRingMem`]: an in-process buffer, shared by two threads through `Arc` (tests, VSP/VSC
//!   pairs in one process, benchmarks).
//! - `SharedFileRingMem` (feature `std`): a file both processes map with memmap2.
//! - Guest pages (later): a ring a guest hands over in a GPADL is a list of guest pages, the
//!   first one the control page. A `GpadlRingMem` will implement [`RingMem`] over that page list:
//!   control-field accesses become atomic accesses to the mapped first page, and
//!   [`RingMem::read_data`]/[`RingMem::write_data`] split each copy at page boundaries (the ring
//!   code already keeps each copy inside the data area). Until then, nothing here assumes the data
//!   area is one contiguous allocation.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::Ordering;

use zerocopy::FromBytes;

use crate::error::InvalidDataLen;
use crate::sync::{AtomicU32, DataWord, for_load, for_store};
use crate::wire::{CONTROL_PAGE_LEN, ControlPage, FEATURE_PENDING_SEND_SIZE, PACKET_ALIGN};
use crate::{MAX_DATA_LEN, MIN_DATA_LEN};

/// A control-page field that takes part in the ring protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlField {
    /// `write_index` (offset 0), owned by the writer.
    WriteIndex,
    /// `read_index` (offset 4), owned by the reader.
    ReadIndex,
    /// `interrupt_mask` (offset 8), owned by the reader.
    InterruptMask,
    /// `pending_send_sz` (offset 12), owned by the writer.
    PendingSendSize,
    /// `feature_bits` (offset 64), set when the ring is created.
    FeatureBits,
}

impl ControlField {
    /// Every protocol field, in offset order.
    pub const ALL: [ControlField; 5] = [
        ControlField::WriteIndex,
        ControlField::ReadIndex,
        ControlField::InterruptMask,
        ControlField::PendingSendSize,
        ControlField::FeatureBits,
    ];

    /// Byte offset of the field in the control page.
    pub const fn byte_offset(self) -> usize {
        match self {
            ControlField::WriteIndex => 0,
            ControlField::ReadIndex => 4,
            ControlField::InterruptMask => 8,
            ControlField::PendingSendSize => 12,
            ControlField::FeatureBits => 64,
        }
    }

    const fn slot(self) -> usize {
        match self {
            ControlField::WriteIndex => 0,
            ControlField::ReadIndex => 1,
            ControlField::InterruptMask => 2,
            ControlField::PendingSendSize => 3,
            ControlField::FeatureBits => 4,
        }
    }
}

/// Memory holding one ring: a control page and a data area.
///
/// Contract the ring code keeps (so implementations may rely on it, but must still not cause
/// undefined behaviour if it is broken): `offset` and the slice length of
/// [`read_data`](Self::read_data) and [`write_data`](Self::write_data) are multiples of 8 and
/// `offset + len <= data_len()`. Implementations that get an out-of-range request ignore it
/// (reads leave `buf` unchanged).
///
/// Control fields are shared with a concurrent peer: implementations must access them as
/// 32-bit atomics with (at least) the ordering asked for. The peer is untrusted; an
/// implementation never interprets the values.
pub trait RingMem {
    /// Size of the data area in bytes (fixed for the life of the memory).
    fn data_len(&self) -> u32;
    /// Atomically loads a control field.
    fn load_control(&self, field: ControlField, order: Ordering) -> u32;
    /// Atomically stores a control field.
    fn store_control(&self, field: ControlField, value: u32, order: Ordering);
    /// Copies `buf.len()` bytes out of the data area, starting at `offset`.
    fn read_data(&self, offset: u32, buf: &mut [u8]);
    /// Copies `data` into the data area, starting at `offset`.
    fn write_data(&self, offset: u32, data: &[u8]);
}

impl<T: RingMem + ?Sized> RingMem for &T {
    fn data_len(&self) -> u32 {
        (**self).data_len()
    }
    fn load_control(&self, field: ControlField, order: Ordering) -> u32 {
        (**self).load_control(field, order)
    }
    fn store_control(&self, field: ControlField, value: u32, order: Ordering) {
        (**self).store_control(field, value, order)
    }
    fn read_data(&self, offset: u32, buf: &mut [u8]) {
        (**self).read_data(offset, buf)
    }
    fn write_data(&self, offset: u32, data: &[u8]) {
        (**self).write_data(offset, data)
    }
}

impl<T: RingMem + ?Sized> RingMem for Arc<T> {
    fn data_len(&self) -> u32 {
        (**self).data_len()
    }
    fn load_control(&self, field: ControlField, order: Ordering) -> u32 {
        (**self).load_control(field, order)
    }
    fn store_control(&self, field: ControlField, value: u32, order: Ordering) {
        (**self).store_control(field, value, order)
    }
    fn read_data(&self, offset: u32, buf: &mut [u8]) {
        (**self).read_data(offset, buf)
    }
    fn write_data(&self, offset: u32, data: &[u8]) {
        (**self).write_data(offset, data)
    }
}

/// Checks that `data_len` is usable for a ring: a multiple of 8 in
/// [[`MIN_DATA_LEN`], [`MAX_DATA_LEN`]].
pub fn check_data_len(data_len: u32) -> Result<(), InvalidDataLen> {
    if data_len.is_multiple_of(PACKET_ALIGN) && (MIN_DATA_LEN..=MAX_DATA_LEN).contains(&data_len) {
        Ok(())
    } else {
        Err(InvalidDataLen { data_len })
    }
}

/// Word range `[first, first + count)` for a byte range, if it keeps the [`RingMem`] contract.
fn word_range(offset: u32, len: usize, data_len: u32) -> Option<core::ops::Range<usize>> {
    let align = PACKET_ALIGN as usize;
    let offset = usize::try_from(offset).ok()?;
    let end = offset.checked_add(len)?;
    if !offset.is_multiple_of(align)
        || !len.is_multiple_of(align)
        || end > usize::try_from(data_len).ok()?
    {
        return None;
    }
    Some(offset / align..end / align)
}

/// Copies whole little-endian words out of `words` into `buf` (same length in bytes).
fn copy_out<'a>(words: impl Iterator<Item = &'a DataWord>, buf: &mut [u8]) {
    for (chunk, word) in buf.chunks_exact_mut(PACKET_ALIGN as usize).zip(words) {
        chunk.copy_from_slice(&word.load().to_le_bytes());
    }
}

/// Copies `data` into whole little-endian words.
fn copy_in<'a>(words: impl Iterator<Item = &'a DataWord>, data: &[u8]) {
    for (chunk, word) in data.chunks_exact(PACKET_ALIGN as usize).zip(words) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        word.store(u64::from_le_bytes(bytes));
    }
}

/// A ring in an ordinary heap buffer, shared between two threads (wrap it in an `Arc`).
///
/// The data area is an array of relaxed 64-bit atomics, so concurrent access by the peer is
/// defined behaviour and the type needs no `unsafe`. Only the protocol fields of the control page
/// are kept; the reserved bytes read as zero.
pub struct FlatRingMem {
    control: [AtomicU32; 5],
    data: Box<[DataWord]>,
    data_len: u32,
}

impl FlatRingMem {
    /// A zeroed ring with a `data_len`-byte data area and the pending-send-size feature bit set
    /// (as Linux initialises its rings).
    pub fn new(data_len: u32) -> Result<Self, InvalidDataLen> {
        check_data_len(data_len)?;
        let words = (data_len / PACKET_ALIGN) as usize;
        let data: Box<[DataWord]> = (0..words).map(|_| DataWord::default()).collect();
        let mem = Self {
            control: [
                AtomicU32::new(0),
                AtomicU32::new(0),
                AtomicU32::new(0),
                AtomicU32::new(0),
                AtomicU32::new(FEATURE_PENDING_SEND_SIZE),
            ],
            data,
            data_len,
        };
        Ok(mem)
    }

    /// A ring built from raw bytes: `control` is a control page (at least its first 68 bytes;
    /// missing bytes read as zero) and `data` the data area, whose length must be usable
    /// (see [`check_data_len`]). Tests and fuzzers use this to build hostile rings.
    pub fn from_bytes(control: &[u8], data: &[u8]) -> Result<Self, InvalidDataLen> {
        let data_len =
            u32::try_from(data.len()).map_err(|_| InvalidDataLen { data_len: u32::MAX })?;
        let mem = Self::new(data_len)?;
        let mut page = [0u8; CONTROL_PAGE_LEN as usize];
        let n = control.len().min(page.len());
        page[..n].copy_from_slice(&control[..n]);
        if let Ok(parsed) = ControlPage::read_from_bytes(&page[..]) {
            let values = [
                parsed.write_index.get(),
                parsed.read_index.get(),
                parsed.interrupt_mask.get(),
                parsed.pending_send_sz.get(),
                parsed.feature_bits.get(),
            ];
            for (field, value) in ControlField::ALL.into_iter().zip(values) {
                mem.store_control(field, value, Ordering::Relaxed);
            }
        }
        copy_in(mem.data.iter(), data);
        Ok(mem)
    }

    /// A snapshot of the control page as bytes (reserved bytes zero).
    pub fn control_bytes(&self) -> Vec<u8> {
        let mut page = alloc::vec![0u8; CONTROL_PAGE_LEN as usize];
        for field in ControlField::ALL {
            let value = self.load_control(field, Ordering::Acquire).to_le_bytes();
            let at = field.byte_offset();
            if let Some(dst) = page.get_mut(at..at + value.len()) {
                dst.copy_from_slice(&value);
            }
        }
        page
    }

    /// A snapshot of the data area as bytes.
    pub fn data_bytes(&self) -> Vec<u8> {
        let mut bytes = alloc::vec![0u8; self.data_len as usize];
        copy_out(self.data.iter(), &mut bytes);
        bytes
    }
}

impl fmt::Debug for FlatRingMem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("FlatRingMem");
        s.field("data_len", &self.data_len);
        for field in ControlField::ALL {
            s.field(
                match field {
                    ControlField::WriteIndex => "write_index",
                    ControlField::ReadIndex => "read_index",
                    ControlField::InterruptMask => "interrupt_mask",
                    ControlField::PendingSendSize => "pending_send_sz",
                    ControlField::FeatureBits => "feature_bits",
                },
                &self.load_control(field, Ordering::Relaxed),
            );
        }
        s.finish()
    }
}

impl RingMem for FlatRingMem {
    fn data_len(&self) -> u32 {
        self.data_len
    }

    fn load_control(&self, field: ControlField, order: Ordering) -> u32 {
        self.control[field.slot()].load(for_load(order))
    }

    fn store_control(&self, field: ControlField, value: u32, order: Ordering) {
        self.control[field.slot()].store(value, for_store(order))
    }

    fn read_data(&self, offset: u32, buf: &mut [u8]) {
        debug_assert!(word_range(offset, buf.len(), self.data_len).is_some());
        if let Some(words) =
            word_range(offset, buf.len(), self.data_len).and_then(|range| self.data.get(range))
        {
            copy_out(words.iter(), buf);
        }
    }

    fn write_data(&self, offset: u32, data: &[u8]) {
        debug_assert!(word_range(offset, data.len(), self.data_len).is_some());
        if let Some(words) =
            word_range(offset, data.len(), self.data_len).and_then(|range| self.data.get(range))
        {
            copy_in(words.iter(), data);
        }
    }
}
