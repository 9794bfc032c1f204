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
//!
//! # Cached peer indices
//! Each endpoint keeps a private copy of the peer's index and reloads it from the control page
//! only when the copy makes the ring look full (writer) or empty (reader), as SPSC queues do; a
//! batch read also reloads once if the copy shows less than its buffer could take. The shared
//! cache line then moves between the cores about once per batch instead of once per packet. A stale copy is always on the safe side, because each index only ever moves forward
//! towards the other one:
//! - The writer's copy of `read_index` lags the real one, so the free space it implies is at most
//!   the real free space: the writer never overwrites unread bytes. The copy came from an Acquire
//!   load, so the reader's copies out of the space it released happened before our writes.
//! - The reader's copy of `write_index` lags the real one, so the data it implies is published
//!   data: the Acquire load that produced the copy made those bytes visible.
//! - Notification decisions never use a copy: the writer's signal check after its fence, the
//!   reader's re-check in [`RingReader::unmask_interrupts`] and the `pending_send_sz` check in
//!   [`RingReader::commit`] all load the peer's index afresh, so no wake-up depends on a stale
//!   value.
//! - A reload checks the index like every load; a corrupt index seen then is a typed
//!   [`CorruptKind`] error. A new writer starts from a copy that makes the ring look full and a
//!   new reader from one that makes it look empty, so each reloads before its first transfer.
//!
//! # Batches
//! [`RingWriter::try_write_batch`] copies several packets and publishes `write_index` once, with
//! one fence and one signal decision: signal iff the ring was empty before the batch
//! (`read_index` equals the batch's first packet's start) and the interrupt mask is clear, which
//! is Linux's rule applied to the batch as one write. Small packets are assembled in a private
//! staging buffer and copied into the ring in one piece. [`RingReader::peek_batch`] copies several
//! packets out at once, validates every descriptor in the private copy, and
//! [`RingReader::read_batch`] commits them with one store and one `pending_send_sz` decision.

use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::Ordering;

use zerocopy::FromBytes;

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

/// Packets of up to this many ring bytes are assembled in the writer's staging buffer and copied
/// into the ring together; larger ones are copied straight from the caller's buffers.
const STAGE_PACKET_MAX: u32 = 512;
/// Most bytes the writer stages before copying them into the ring.
const STAGE_CAPACITY: usize = 8 * 1024;
/// How far [`RingReader::peek_batch`] copies ahead of the packet it is checking: enough for many
/// small packets per copy, little enough that a batch ending early wastes little copying.
const BATCH_COPY_CHUNK: u32 = 8 * 1024;

/// A successful write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct WriteOutcome {
    /// Signal the reader (the ring was empty before this write and the reader's interrupt mask
    /// is clear).
    pub signal: bool,
}

/// A successful [`RingWriter::try_write_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct BatchWriteOutcome {
    /// Packets written: the first `written` of the batch (at least one unless the batch was
    /// empty).
    pub written: usize,
    /// Signal the reader (the ring was empty before the batch and the reader's interrupt mask is
    /// clear).
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
pub struct RingWriter<M: RingMem> {
    mem: M,
    size: u32,
    /// Our write index; the shared copy is only ever written.
    write: u32,
    /// Whether we have set `pending_send_sz` and not cleared it yet.
    pending: bool,
    /// `read_index` as last loaded and checked (see the module docs): the free space it implies
    /// is never more than the real free space.
    cached_read: u32,
    /// Small packets of the write in progress, copied into the ring in one piece.
    stage: Vec<u8>,
    /// Ring index of `stage`'s first byte.
    stage_at: u32,
}

impl<M: RingMem + fmt::Debug> fmt::Debug for RingWriter<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingWriter")
            .field("mem", &self.mem)
            .field("size", &self.size)
            .field("write", &self.write)
            .field("pending", &self.pending)
            .field("cached_read", &self.cached_read)
            .finish_non_exhaustive()
    }
}

/// Checks that `packet` can ever fit a ring taking `max` bytes; returns its descriptor head (see
/// [`OutgoingPacket::descriptor_head`]) and ring length.
// Inlined into the batch loop: returning the result through memory costs more than the checks.
#[inline(always)]
fn check_packet(packet: &OutgoingPacket<'_>, max: u32) -> Result<(u64, u32), WriteError> {
    let needed = packet.ring_len();
    let too_large = WriteError::TooLarge { needed, max };
    let descriptor = packet.descriptor_head().ok_or(too_large)?;
    let needed = u32::try_from(needed)
        .ok()
        .filter(|&n| n <= max)
        .ok_or(too_large)?;
    Ok((descriptor, needed))
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
            // One gap ahead of us: the ring looks full, so the first write loads the real index.
            cached_read: advance(write, PACKET_ALIGN, size),
            stage: Vec::new(),
            stage_at: write,
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

    /// Bytes that can be written now (the mandatory 8-byte gap excluded), from a fresh load of
    /// `read_index`.
    pub fn free_bytes(&self) -> Result<u32, WriteError> {
        let read = load_index(&self.mem, ControlField::ReadIndex, Ordering::Acquire)
            .map_err(WriteError::Corrupt)?;
        Ok(self.free_between(self.write, read))
    }

    /// Usable free bytes with the writer at `write` and the reader at `read` (both checked
    /// indices, so the difference is at least the gap).
    fn free_between(&self, write: u32, read: u32) -> u32 {
        let raw_free = self.size - used_bytes(write, read, self.size);
        raw_free - PACKET_ALIGN
    }

    /// Loads and checks `read_index` into the cached copy.
    fn reload_read(&mut self) -> Result<(), WriteError> {
        // Acquire: the reader's copies out of the space it released happened before our writes.
        self.cached_read = load_index(&self.mem, ControlField::ReadIndex, Ordering::Acquire)
            .map_err(WriteError::Corrupt)?;
        Ok(())
    }

    /// Writes one packet, or nothing.
    ///
    /// On success, publishes the new `write_index` and reports whether to signal the reader. If
    /// this writer had set `pending_send_sz`, it is cleared.
    pub fn try_write(&mut self, packet: &OutgoingPacket<'_>) -> Result<WriteOutcome, WriteError> {
        let outcome = self.try_write_batch(core::slice::from_ref(packet))?;
        Ok(WriteOutcome {
            signal: outcome.signal,
        })
    }

    /// Writes as many packets of `packets` as fit, in order, and publishes them with one store
    /// of `write_index`, one fence and one signal decision (signal iff the ring was empty before
    /// the batch and the reader's interrupt mask is clear). If this writer had set
    /// `pending_send_sz`, it is cleared.
    ///
    /// Stops before the first packet that does not fit now (or can never fit, or the batch's
    /// end); the caller retries with the rest. Errors only if the first packet cannot be written
    /// (then nothing is), or if `read_index` is corrupt (then nothing is published). An empty
    /// batch writes nothing and does not signal.
    ///
    /// `read_index` is loaded only when the cached copy shows too little space (see the module
    /// docs), so a corrupt index is reported by the first write that reloads it.
    ///
    /// A batch is published only when all of it is copied, so keep batches small next to the
    /// ring (a few KiB of small packets): the reader can start on one batch while the next is
    /// copied.
    pub fn try_write_batch(
        &mut self,
        packets: &[OutgoingPacket<'_>],
    ) -> Result<BatchWriteOutcome, WriteError> {
        let max = self.max_ring_len();
        let start = self.write;
        let mut at = start;
        let mut written = 0;
        let mut reloaded = false;
        self.stage.clear();
        for packet in packets {
            let (descriptor, needed) = match check_packet(packet, max) {
                Ok(checked) => checked,
                Err(err) if written == 0 => return Err(err),
                // Publish what is written; the next write reports the error.
                Err(_) => break,
            };
            let mut free = self.free_between(at, self.cached_read);
            if needed > free && !reloaded {
                // Looks full by the cached index: load the real one (once per batch).
                reloaded = true;
                self.reload_read()?;
                free = self.free_between(at, self.cached_read);
            }
            if needed > free {
                if written == 0 {
                    return Err(WriteError::Full { needed, free });
                }
                break;
            }
            at = self.copy_packet(packet, descriptor, needed, at);
            written += 1;
        }
        if written == 0 {
            return Ok(BatchWriteOutcome {
                written,
                signal: false,
            });
        }
        self.flush_stage();
        let signal = self.publish(start, at);
        Ok(BatchWriteOutcome { written, signal })
    }

    /// Copies one packet (known to fit) into the ring at `start`, or into the staging buffer if
    /// it is small; returns the index after its trailer.
    fn copy_packet(
        &mut self,
        packet: &OutgoingPacket<'_>,
        descriptor: u64,
        needed: u32,
        start: u32,
    ) -> u32 {
        let trailer = trailer_value(start).to_le_bytes();
        if needed <= STAGE_PACKET_MAX {
            if self.stage.len() + needed as usize > STAGE_CAPACITY {
                self.flush_stage();
            }
            if self.stage.is_empty() {
                self.stage_at = start;
            }
            let stage = &mut self.stage;
            stage.reserve(needed as usize);
            packet.emit(descriptor, |piece| stage.extend_from_slice(piece));
            stage.extend_from_slice(&trailer);
        } else {
            self.flush_stage();
            let mut at = start;
            packet.emit(descriptor, |piece| {
                at = copy_to_ring(&self.mem, self.size, at, piece);
            });
            copy_to_ring(&self.mem, self.size, at, &trailer);
        }
        advance(start, needed, self.size)
    }

    /// Copies the staged packets into the ring. They are contiguous from `stage_at` and all fit
    /// in the free space, so the copy is at most the data area.
    fn flush_stage(&mut self) {
        if !self.stage.is_empty() {
            copy_to_ring(&self.mem, self.size, self.stage_at, &self.stage);
            self.stage.clear();
        }
    }

    /// Publishes `end` as the write index (the packets from `start` are copied) and decides
    /// whether to signal.
    fn publish(&mut self, start: u32, end: u32) -> bool {
        self.write = end;
        // Release: the packet bytes copied above are visible to a reader that acquires this
        // index.
        self.mem
            .store_control(ControlField::WriteIndex, end, Ordering::Release);
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
        if masked {
            return false;
        }
        let read = self
            .mem
            .load_control(ControlField::ReadIndex, Ordering::Acquire);
        // A fresh, checked read index is as good a cache as a reload (a corrupt one is reported
        // by the next reload).
        if let Ok(read) = check_index(ControlField::ReadIndex, read, self.size) {
            self.cached_read = read;
        }
        read == start
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
        // `commit`. The load is fresh, never the cached copy.
        fence(Ordering::SeqCst);
        self.reload_read()?;
        if self.free_between(self.write, self.cached_read) >= needed {
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

/// Packets copied out of a ring by [`RingReader::peek_batch`] or [`RingReader::read_batch`],
/// borrowing the caller's buffer. Each item is one whole packet as
/// [`Packet::parse`](crate::Packet::parse) takes it (descriptor through padding, trailer
/// excluded); every descriptor was checked in this copy, which the batch borrows immutably.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacketBatch<'a> {
    /// The copied bytes: packets and trailers back to back (the last trailer may be missing).
    bytes: &'a [u8],
    count: usize,
}

impl<'a> PacketBatch<'a> {
    /// Number of packets.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the batch holds no packet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The packets, in ring order.
    pub fn iter(&self) -> PacketBatchIter<'a> {
        PacketBatchIter {
            bytes: self.bytes,
            remaining: self.count,
        }
    }
}

impl<'a> IntoIterator for PacketBatch<'a> {
    type Item = &'a [u8];
    type IntoIter = PacketBatchIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'a> IntoIterator for &PacketBatch<'a> {
    type Item = &'a [u8];
    type IntoIter = PacketBatchIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over the packets of a [`PacketBatch`].
#[derive(Debug, Clone)]
pub struct PacketBatchIter<'a> {
    bytes: &'a [u8],
    remaining: usize,
}

impl<'a> Iterator for PacketBatchIter<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        self.remaining = self.remaining.checked_sub(1)?;
        // The descriptors were checked when the batch was copied; the lookups stay checked all
        // the same, and end the iteration instead of panicking.
        let (descriptor, _) = PacketDescriptor::read_from_prefix(self.bytes).ok()?;
        let len = usize::from(descriptor.len8.get()) * PACKET_ALIGN as usize;
        let packet = self.bytes.get(..len)?;
        self.bytes = self
            .bytes
            .get(len + TRAILER_LEN as usize..)
            .unwrap_or_default();
        Some(packet)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining))
    }
}

/// A successful [`RingReader::read_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct ReadBatch<'a> {
    /// The packets read (at least one).
    pub packets: PacketBatch<'a>,
    /// Signal the writer (see [`CommitOutcome::signal`]).
    pub signal: bool,
}

/// The reading endpoint of a ring (one per ring).
///
/// Packets are read into the caller's buffer with [`try_read`](Self::try_read), or several with
/// [`peek`](Self::peek) followed by one [`commit`](Self::commit) that releases their space, or
/// many at once with [`read_batch`](Self::read_batch).
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
    /// `write_index` as last loaded and checked (see the module docs): every byte up to it is
    /// published.
    cached_write: u32,
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
            // The ring looks empty, so the first read loads the real index.
            cached_write: read,
        })
    }

    /// The ring memory.
    pub fn mem(&self) -> &M {
        &self.mem
    }

    /// Published bytes past the cursor by the cached write index; reloads it if that shows none.
    fn available(&mut self) -> Result<u32, ReadError> {
        let cached = used_bytes(self.cached_write, self.cursor, self.size);
        if cached != 0 {
            return Ok(cached);
        }
        // Acquire: everything the writer wrote before publishing this index is visible.
        let write = load_index(&self.mem, ControlField::WriteIndex, Ordering::Acquire)
            .map_err(ReadError::Corrupt)?;
        self.cached_write = write;
        Ok(used_bytes(write, self.cursor, self.size))
    }

    /// Published bytes past the cursor for a batch into a `buf_len`-byte buffer: the cached
    /// write index if it already shows enough to fill the buffer, else a fresh one (one load per
    /// batch, so a batch takes everything published that fits).
    fn available_for_batch(&mut self, buf_len: u32) -> Result<u32, ReadError> {
        let cached = used_bytes(self.cached_write, self.cursor, self.size);
        if cached >= buf_len && cached != 0 {
            return Ok(cached);
        }
        // Acquire: everything the writer wrote before publishing this index is visible.
        let write = load_index(&self.mem, ControlField::WriteIndex, Ordering::Acquire)
            .map_err(ReadError::Corrupt)?;
        self.cached_write = write;
        Ok(used_bytes(write, self.cursor, self.size))
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
        let available = self.available()?;
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

    /// Reads up to `max_packets` packets into `buf` without releasing their space (as
    /// [`peek`](Self::peek) does for one): as many whole packets as are published and fit the
    /// buffer, copied out of the ring in a few large pieces. The packets stay in `buf` with their
    /// trailers between them; iterate the returned batch to get each one.
    ///
    /// Every descriptor is checked in the private copy. Errors (nothing moves) only when the
    /// first packet cannot be read: [`ReadError::Empty`], [`ReadError::BufferTooSmall`] if it
    /// does not fit `buf`, [`ReadError::Corrupt`] if its descriptor or the write index is bad. A
    /// bad descriptor further on ends the batch before it, and the next call reports it. With
    /// `max_packets == 0` no packet is taken (the ring is still checked for data).
    pub fn peek_batch<'b>(
        &mut self,
        buf: &'b mut [u8],
        max_packets: usize,
    ) -> Result<PacketBatch<'b>, ReadError> {
        let buf_len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        let available = self.available_for_batch(buf_len)?;
        if available == 0 {
            return Err(ReadError::Empty);
        }
        if available < DESCRIPTOR_LEN + TRAILER_LEN {
            return Err(ReadError::Corrupt(CorruptKind::Truncated { available }));
        }
        // Bytes of `buf` the batch may fill: whole words, no more than is published.
        let room =
            u32::try_from(buf.len()).unwrap_or(u32::MAX).min(available) & !(PACKET_ALIGN - 1);
        // Bytes copied into `buf` so far, and the start of the next packet (both from the cursor).
        let mut filled = 0u32;
        let mut off = 0u32;
        let mut count = 0usize;
        while count < max_packets && off < available {
            let first = count == 0;
            let left = available - off;
            if left < DESCRIPTOR_LEN + TRAILER_LEN {
                // Not the first packet (checked above): the next call reports it.
                break;
            }
            let descriptor = if off + DESCRIPTOR_LEN <= room {
                self.fill(buf, &mut filled, off + DESCRIPTOR_LEN, room);
                let Some(raw) = buf.get(off as usize..(off + DESCRIPTOR_LEN) as usize) else {
                    break;
                };
                let Ok(descriptor) = PacketDescriptor::read_from_bytes(raw) else {
                    break;
                };
                descriptor
            } else if first {
                // The buffer cannot take even the descriptor: read it privately, to report the
                // size the packet needs (or its corruption).
                let mut raw = [0u8; DESCRIPTOR_LEN as usize];
                copy_from_ring(&self.mem, self.size, self.cursor, &mut raw);
                zerocopy::transmute!(raw)
            } else {
                break;
            };
            let len = match check_descriptor(&descriptor, left) {
                Ok(len) => len,
                Err(kind) if first => return Err(ReadError::Corrupt(kind)),
                Err(_) => break,
            };
            let end = off + len;
            if end > room {
                if first {
                    return Err(ReadError::BufferTooSmall {
                        needed: len as usize,
                    });
                }
                break;
            }
            self.fill(buf, &mut filled, end, room);
            // `check_descriptor` kept the trailer inside the published data.
            off = end + TRAILER_LEN;
            count += 1;
        }
        self.cursor = advance(self.cursor, off, self.size);
        let buf: &'b [u8] = buf;
        Ok(PacketBatch {
            bytes: buf.get(..filled as usize).unwrap_or_default(),
            count,
        })
    }

    /// Extends the copied prefix of `buf` to at least `want` bytes (`want <= room`), copying up
    /// to [`BATCH_COPY_CHUNK`] more ahead but never past `room` (published bytes that fit `buf`).
    fn fill(&self, buf: &mut [u8], filled: &mut u32, want: u32, room: u32) {
        if want <= *filled {
            return;
        }
        let to = want.max(filled.saturating_add(BATCH_COPY_CHUNK)).min(room);
        if let Some(dst) = buf.get_mut(*filled as usize..to as usize) {
            let at = advance(self.cursor, *filled, self.size);
            copy_from_ring(&self.mem, self.size, at, dst);
            *filled = to;
        }
    }

    /// [`peek_batch`](Self::peek_batch) then one [`commit`](Self::commit): the read index is
    /// published once for the whole batch (and for packets peeked before it), and the
    /// `pending_send_sz` rule is evaluated once.
    pub fn read_batch<'b>(
        &mut self,
        buf: &'b mut [u8],
        max_packets: usize,
    ) -> Result<ReadBatch<'b>, ReadError> {
        let packets = self.peek_batch(buf, max_packets)?;
        let CommitOutcome { signal } = self.commit();
        Ok(ReadBatch { packets, signal })
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
        // Fresh, never the cached copy: a stale write index overstates the free space.
        let Ok(write) = load_index(&self.mem, ControlField::WriteIndex, Ordering::Acquire) else {
            // A corrupt write index is reported by the next read.
            return CommitOutcome { signal: false };
        };
        self.cached_write = write;
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
