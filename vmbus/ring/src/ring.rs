//! The two endpoints of a ring: [`RingWriter`] and [`RingReader`].
//!
//! # Indices
//! `write_index` and `read_index` are byte offsets into the data area, always multiples of 8 and
//! below its size. The ring is empty when they are equal; the writer always leaves at least one
//! 8-byte gap, so a full ring never looks empty (as Linux does: a write needs strictly more free
//! bytes than the packet occupies). Each endpoint keeps its own index privately and only
//! *publishes* it; it never reads it back from shared memory, so a peer that scribbles over our
//! index cannot steer us. The peer's index is read, checked, and never trusted further.
//!
//! # Memory ordering
//! - Data before index: the writer copies a packet and then stores `write_index` with Release;
//!   the reader loads it with Acquire before copying, so it sees the whole packet. Symmetrically
//!   the reader finishes copying before its Release store of `read_index`, and the writer's
//!   Acquire load of it guarantees it never overwrites bytes still being read.
//! - No lost wake-up: both notification rules are store-then-load patterns across the two
//!   endpoints (writer: publish `write_index`, then read `interrupt_mask`/`read_index`; reader:
//!   clear `interrupt_mask`, then re-read `write_index`; and the same shape for
//!   `pending_send_sz`/`read_index`). Acquire/Release cannot order a store before a later load, so
//!   each side issues a `SeqCst` fence between its store and its load (Linux's `virt_mb()`). With
//!   fences on both sides, at least one side observes the other's store: either the writer sees
//!   the mask clear (and signals) or the reader's re-check sees the new data (and does not sleep).
//!   The loom model in `tests/loom.rs` checks this on the real code.

use core::sync::atomic::Ordering;

use crate::error::{CorruptKind, InvalidDataLen, OpenError, ReadError, WriteError};
use crate::mem::{ControlField, RingMem, check_data_len};
use crate::packet::OutgoingPacket;
use crate::sync::fence;
use crate::wire::{
    DESCRIPTOR_LEN, FEATURE_PENDING_SEND_SIZE, MAX_PACKET_LEN, PACKET_ALIGN, PacketDescriptor,
    TRAILER_LEN, trailer_value,
};

/// Bytes between `read` and `write` going forward around a ring of `size` bytes
/// (both indices below `size`).
pub(crate) fn used_bytes(write: u32, read: u32, size: u32) -> u32 {
    if write >= read {
        write - read
    } else {
        size - (read - write)
    }
}

/// `index + len` around a ring of `size` bytes (`index < size`).
pub(crate) fn advance(index: u32, len: u32, size: u32) -> u32 {
    ((u64::from(index) + u64::from(len)) % u64::from(size)) as u32
}

/// Checks an index read from the control page.
fn check_index(field: ControlField, index: u32, data_len: u32) -> Result<u32, CorruptKind> {
    if index >= data_len {
        Err(CorruptKind::IndexOutOfRange {
            field,
            index,
            data_len,
        })
    } else if !index.is_multiple_of(PACKET_ALIGN) {
        Err(CorruptKind::UnalignedIndex { field, index })
    } else {
        Ok(index)
    }
}

fn load_index<M: RingMem>(
    mem: &M,
    field: ControlField,
    order: Ordering,
) -> Result<u32, CorruptKind> {
    check_index(field, mem.load_control(field, order), mem.data_len())
}

/// Checked data-area size of `mem`.
fn data_len_of<M: RingMem>(mem: &M) -> Result<u32, InvalidDataLen> {
    let data_len = mem.data_len();
    check_data_len(data_len)?;
    Ok(data_len)
}

/// Copies `data` (a multiple of 8 bytes, at most the data area) into the ring at `at`, wrapping.
fn copy_to_ring<M: RingMem>(mem: &M, size: u32, at: u32, data: &[u8]) -> u32 {
    let len = data.len() as u32;
    let first = len.min(size - at);
    let (head, tail) = data.split_at(first as usize);
    mem.write_data(at, head);
    if !tail.is_empty() {
        mem.write_data(0, tail);
    }
    advance(at, len, size)
}

/// Copies `buf.len()` bytes (a multiple of 8, at most the data area) out of the ring at `at`,
/// wrapping.
fn copy_from_ring<M: RingMem>(mem: &M, size: u32, at: u32, buf: &mut [u8]) {
    let len = buf.len() as u32;
    let first = len.min(size - at);
    let (head, tail) = buf.split_at_mut(first as usize);
    mem.read_data(at, head);
    if !tail.is_empty() {
        mem.read_data(0, tail);
    }
}

/// A successful write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct WriteOutcome {
    /// Signal the reader (the ring was empty before this write and the reader's interrupt mask
    /// is clear).
    pub signal: bool,
}

/// What a writer blocked on a full ring should do after
/// [`RingWriter::request_space_signal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpaceWait {
    /// Enough space is free already: retry the write now.
    Available,
    /// Sleep until the reader signals; it will once enough space is free.
    Sleep,
    /// The ring lacks the pending-send-size feature: the reader will not signal, so poll.
    PollOnly,
}

/// The writing endpoint of a ring (one per ring).
#[derive(Debug)]
pub struct RingWriter<M: RingMem> {
    mem: M,
    size: u32,
    /// Our write index; the shared copy is only ever written.
    write: u32,
    /// Whether we have set `pending_send_sz` and not cleared it yet.
    pending: bool,
}

impl<M: RingMem> RingWriter<M> {
    /// Attaches to a ring, continuing from the `write_index` in its control page.
    pub fn new(mem: M) -> Result<Self, OpenError> {
        let size = data_len_of(&mem)?;
        let write = load_index(&mem, ControlField::WriteIndex, Ordering::Acquire)
            .map_err(OpenError::Corrupt)?;
        Ok(Self {
            mem,
            size,
            write,
            pending: false,
        })
    }

    /// The ring memory.
    pub fn mem(&self) -> &M {
        &self.mem
    }

    /// Largest [`OutgoingPacket::ring_len`] this ring takes.
    pub fn max_ring_len(&self) -> u32 {
        (self.size - PACKET_ALIGN).min(MAX_PACKET_LEN + TRAILER_LEN)
    }

    /// Bytes that can be written now (the mandatory 8-byte gap excluded).
    pub fn free_bytes(&self) -> Result<u32, WriteError> {
        let read = load_index(&self.mem, ControlField::ReadIndex, Ordering::Acquire)
            .map_err(WriteError::Corrupt)?;
        Ok(self.free_with(read))
    }

    fn free_with(&self, read: u32) -> u32 {
        let raw_free = self.size - used_bytes(self.write, read, self.size);
        raw_free - PACKET_ALIGN
    }

    /// Writes one packet, or nothing.
    ///
    /// On success, publishes the new `write_index` and reports whether to signal the reader. If
    /// this writer had set `pending_send_sz`, it is cleared.
    pub fn try_write(&mut self, packet: &OutgoingPacket<'_>) -> Result<WriteOutcome, WriteError> {
        let max = self.max_ring_len();
        let needed = packet.ring_len();
        let too_large = WriteError::TooLarge { needed, max };
        let descriptor = packet.descriptor().ok_or(too_large)?;
        let needed = u32::try_from(needed)
            .ok()
            .filter(|&n| n <= max)
            .ok_or(too_large)?;
        let free = self.free_bytes()?;
        if needed > free {
            return Err(WriteError::Full { needed, free });
        }

        let start = self.write;
        let mut at = start;
        packet.emit(&descriptor, |piece| {
            at = copy_to_ring(&self.mem, self.size, at, piece);
        });
        at = copy_to_ring(
            &self.mem,
            self.size,
            at,
            &trailer_value(start).to_le_bytes(),
        );
        self.write = at;
        // Release: the packet bytes above are visible to a reader that acquires this index.
        self.mem
            .store_control(ControlField::WriteIndex, at, Ordering::Release);
        if self.pending {
            self.clear_pending_send_size();
        }

        // Store (write_index) then load (interrupt_mask, read_index): needs a full fence, paired
        // with the reader's fence in `unmask_interrupts`.
        fence(Ordering::SeqCst);
        let masked = self
            .mem
            .load_control(ControlField::InterruptMask, Ordering::Relaxed)
            != 0;
        let signal = !masked
            && self
                .mem
                .load_control(ControlField::ReadIndex, Ordering::Acquire)
                == start;
        Ok(WriteOutcome { signal })
    }

    /// Asks the reader to signal once `needed` bytes are free (set `needed` to the
    /// [`OutgoingPacket::ring_len`] of the packet that did not fit), then re-checks: space freed
    /// between the failed write and this call would otherwise never be signalled.
    ///
    /// The next successful [`try_write`](Self::try_write) clears the request.
    pub fn request_space_signal(&mut self, needed: u32) -> Result<SpaceWait, WriteError> {
        let max = self.max_ring_len();
        if needed > max {
            return Err(WriteError::TooLarge {
                needed: needed.into(),
                max,
            });
        }
        let features = self
            .mem
            .load_control(ControlField::FeatureBits, Ordering::Relaxed);
        if features & FEATURE_PENDING_SEND_SIZE == 0 {
            return Ok(SpaceWait::PollOnly);
        }
        self.mem
            .store_control(ControlField::PendingSendSize, needed, Ordering::Relaxed);
        self.pending = true;
        // Store (pending_send_sz) then load (read_index): paired with the reader's fence in
        // `commit`.
        fence(Ordering::SeqCst);
        if self.free_bytes()? >= needed {
            Ok(SpaceWait::Available)
        } else {
            Ok(SpaceWait::Sleep)
        }
    }

    /// Withdraws a space request (sets `pending_send_sz` to 0).
    pub fn clear_pending_send_size(&mut self) {
        self.mem
            .store_control(ControlField::PendingSendSize, 0, Ordering::Relaxed);
        self.pending = false;
    }
}

/// A successful [`RingReader::try_read`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct ReadOutcome {
    /// Bytes of the packet copied to the start of the buffer (descriptor through padding); parse
    /// them with [`Packet::parse`](crate::Packet::parse).
    pub len: usize,
    /// Signal the writer (see [`CommitOutcome::signal`]).
    pub signal: bool,
}

/// The result of [`RingReader::commit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct CommitOutcome {
    /// Signal the writer: it asked for `pending_send_sz` bytes (and the ring has the feature),
    /// and this commit raised the free space from below that to at or above it.
    pub signal: bool,
}

/// The reading endpoint of a ring (one per ring).
///
/// Packets are read into the caller's buffer with [`try_read`](Self::try_read), or several with
/// [`peek`](Self::peek) followed by one [`commit`](Self::commit) that releases their space.
/// Before sleeping the reader must call [`unmask_interrupts`](Self::unmask_interrupts) and sleep
/// only if it returns `false`.
#[derive(Debug)]
pub struct RingReader<M: RingMem> {
    mem: M,
    size: u32,
    /// Read index last published.
    committed: u32,
    /// Start of the next packet to read (at or after `committed`).
    cursor: u32,
}

impl<M: RingMem> RingReader<M> {
    /// Attaches to a ring, continuing from the `read_index` in its control page.
    pub fn new(mem: M) -> Result<Self, OpenError> {
        let size = data_len_of(&mem)?;
        let read = load_index(&mem, ControlField::ReadIndex, Ordering::Acquire)
            .map_err(OpenError::Corrupt)?;
        Ok(Self {
            mem,
            size,
            committed: read,
            cursor: read,
        })
    }

    /// The ring memory.
    pub fn mem(&self) -> &M {
        &self.mem
    }

    /// Reads the next packet into `buf` and releases its space at once.
    pub fn try_read(&mut self, buf: &mut [u8]) -> Result<ReadOutcome, ReadError> {
        let len = self.peek(buf)?;
        let CommitOutcome { signal } = self.commit();
        Ok(ReadOutcome { len, signal })
    }

    /// Reads the next packet into `buf` without releasing its space: the writer cannot reuse it
    /// until [`commit`](Self::commit). Returns the packet length. On error nothing moves.
    ///
    /// The descriptor is copied out of shared memory once, checked, and the rest of the packet
    /// appended after it, so a peer changing the ring meanwhile cannot make a checked length
    /// disagree with the copied bytes.
    pub fn peek(&mut self, buf: &mut [u8]) -> Result<usize, ReadError> {
        // Acquire: everything the writer wrote before publishing this index is visible.
        let write = load_index(&self.mem, ControlField::WriteIndex, Ordering::Acquire)
            .map_err(ReadError::Corrupt)?;
        let available = used_bytes(write, self.cursor, self.size);
        if available == 0 {
            return Err(ReadError::Empty);
        }
        if available < DESCRIPTOR_LEN + TRAILER_LEN {
            return Err(ReadError::Corrupt(CorruptKind::Truncated { available }));
        }
        let mut raw = [0u8; DESCRIPTOR_LEN as usize];
        copy_from_ring(&self.mem, self.size, self.cursor, &mut raw);
        let descriptor: PacketDescriptor = zerocopy::transmute!(raw);
        let len = check_descriptor(&descriptor, available).map_err(ReadError::Corrupt)?;
        let out = buf
            .get_mut(..len as usize)
            .ok_or(ReadError::BufferTooSmall {
                needed: len as usize,
            })?;
        let (head, rest) = out.split_at_mut(DESCRIPTOR_LEN as usize);
        head.copy_from_slice(&raw);
        let body_at = advance(self.cursor, DESCRIPTOR_LEN, self.size);
        copy_from_ring(&self.mem, self.size, body_at, rest);
        self.cursor = advance(self.cursor, len + TRAILER_LEN, self.size);
        Ok(len as usize)
    }

    /// Forgets packets peeked since the last commit: they will be read again.
    pub fn rollback(&mut self) {
        self.cursor = self.committed;
    }

    /// Publishes the read index past every peeked packet, releasing their space, and reports
    /// whether the writer needs a signal.
    pub fn commit(&mut self) -> CommitOutcome {
        let old = self.committed;
        let new = self.cursor;
        if old == new {
            return CommitOutcome { signal: false };
        }
        // Release: our copies out of the released bytes finish before the writer can reuse them.
        self.mem
            .store_control(ControlField::ReadIndex, new, Ordering::Release);
        self.committed = new;

        // Store (read_index) then load (pending_send_sz): needs a full fence, paired with the
        // writer's fence in `request_space_signal`.
        fence(Ordering::SeqCst);
        let features = self
            .mem
            .load_control(ControlField::FeatureBits, Ordering::Relaxed);
        if features & FEATURE_PENDING_SEND_SIZE == 0 {
            return CommitOutcome { signal: false };
        }
        let pending = self
            .mem
            .load_control(ControlField::PendingSendSize, Ordering::Relaxed);
        if pending == 0 {
            return CommitOutcome { signal: false };
        }
        let Ok(write) = load_index(&self.mem, ControlField::WriteIndex, Ordering::Acquire) else {
            // A corrupt write index is reported by the next read.
            return CommitOutcome { signal: false };
        };
        // Usable free space (gap excluded) before and after this commit.
        let free_before = (self.size - used_bytes(write, old, self.size)) - PACKET_ALIGN;
        let free_after = (self.size - used_bytes(write, new, self.size)) - PACKET_ALIGN;
        CommitOutcome {
            signal: free_before < pending && free_after >= pending,
        }
    }

    /// Asks the writer not to signal new data (while this reader is busy draining).
    pub fn mask_interrupts(&self) {
        self.mem
            .store_control(ControlField::InterruptMask, 1, Ordering::Relaxed);
    }

    /// Asks the writer to signal new data, then re-checks the ring. Returns `true` if data (or a
    /// corrupt index, which the next read reports) is present: the reader must not sleep but read
    /// again. Call this before every sleep, whether or not interrupts were masked.
    #[must_use = "the reader must not sleep if data arrived"]
    pub fn unmask_interrupts(&self) -> bool {
        self.mem
            .store_control(ControlField::InterruptMask, 0, Ordering::Relaxed);
        // Store (interrupt_mask) then load (write_index): paired with the writer's fence in
        // `try_write`.
        fence(Ordering::SeqCst);
        self.has_data()
    }

    /// Whether data past the read cursor is present (or the write index is corrupt).
    pub fn has_data(&self) -> bool {
        match load_index(&self.mem, ControlField::WriteIndex, Ordering::Acquire) {
            Ok(write) => write != self.cursor,
            Err(_) => true,
        }
    }
}

/// Checks a descriptor against the data available; returns the packet length (`len8 * 8`).
fn check_descriptor(descriptor: &PacketDescriptor, available: u32) -> Result<u32, CorruptKind> {
    let len8 = descriptor.len8.get();
    let offset8 = descriptor.offset8.get();
    if len8 == 0 {
        return Err(CorruptKind::ZeroLength);
    }
    let len = u32::from(len8) * PACKET_ALIGN;
    if len < DESCRIPTOR_LEN {
        return Err(CorruptKind::LengthTooSmall { len8 });
    }
    if u32::from(offset8) * PACKET_ALIGN < DESCRIPTOR_LEN {
        return Err(CorruptKind::OffsetInsideDescriptor { offset8 });
    }
    if offset8 > len8 {
        return Err(CorruptKind::OffsetBeyondLength { offset8, len8 });
    }
    let needed = len + TRAILER_LEN;
    if needed > available {
        return Err(CorruptKind::LengthBeyondAvailable { needed, available });
    }
    Ok(len)
}
