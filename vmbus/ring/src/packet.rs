//! Typed packets: builders for what a writer sends ([`OutgoingPacket`]) and a parser for what a
//! reader received ([`Packet::parse`]).
//!
//! Supported kinds: in-band (6), transfer-page (7), GPA-direct (9) and completion (11). On the
//! wire the payload is padded to 8 bytes and its exact length is not recorded, so a parsed
//! payload is the padded one (Linux's readers see the same).

use core::fmt;

use zerocopy::little_endian::U64;
use zerocopy::{FromBytes, IntoBytes};

use crate::wire::{
    DESCRIPTOR_LEN, FLAG_COMPLETION_REQUESTED, GpaDirectHeader, GpaRangeHeader, PACKET_ALIGN,
    PAGE_SIZE, PacketDescriptor, TRAILER_LEN, TransferPageHeader, TransferPageRange, align8,
    gpa_range_pfn_count, packet_type,
};

/// Why a packet (or a GPA range for one) is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Fewer bytes than a descriptor.
    #[error("Packet of {len} bytes is shorter than a descriptor")]
    TooShort {
        /// Bytes given.
        len: usize,
    },
    /// The descriptor's `len8` does not match the bytes given.
    #[error("Descriptor says {len8} (x8) bytes, {actual} given")]
    LengthMismatch {
        /// The descriptor's `len8`.
        len8: u16,
        /// Bytes given.
        actual: usize,
    },
    /// The descriptor's `offset8` is inside the descriptor or past the packet.
    #[error("Data offset {offset8} (x8) is outside [2, {len8}]")]
    BadOffset {
        /// The descriptor's `offset8`.
        offset8: u16,
        /// The descriptor's `len8`.
        len8: u16,
    },
    /// A packet type this crate does not handle.
    #[error("Unsupported packet type {0:#x}")]
    UnsupportedType(u16),
    /// The kind-specific header does not fit before the payload offset.
    #[error("Header of packet type {packet_type:#x} does not fit before the data offset")]
    HeaderTruncated {
        /// The packet type.
        packet_type: u16,
    },
    /// The ranges announced by the header do not fit before the payload offset.
    #[error("{range_count} ranges do not fit before the data offset")]
    RangesBeyondHeader {
        /// The announced range count.
        range_count: u32,
    },
    /// A GPA range starts outside its first page.
    #[error("GPA range offset {byte_offset:#x} is not inside a page")]
    GpaOffsetOutsidePage {
        /// The range's byte offset.
        byte_offset: u32,
    },
    /// A GPA range has no bytes.
    #[error("GPA range is empty")]
    EmptyGpaRange,
    /// A GPA range's PFN list does not match the pages its offset and length span.
    #[error("GPA range spans {expected} pages, {actual} PFNs given")]
    PfnCountMismatch {
        /// Pages spanned.
        expected: u64,
        /// PFNs supplied.
        actual: usize,
    },
}

/// One guest-physical range to send in a GPA-direct packet: `byte_count` bytes starting
/// `byte_offset` bytes into the first of `pfns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpaRange<'a> {
    byte_count: u32,
    byte_offset: u32,
    pfns: &'a [u64],
}

impl<'a> GpaRange<'a> {
    /// A range; `byte_offset` must be below the page size, `byte_count` non-zero, and `pfns` must
    /// list exactly the pages the range spans.
    pub fn new(byte_count: u32, byte_offset: u32, pfns: &'a [u64]) -> Result<Self, PacketError> {
        check_gpa_range(byte_count, byte_offset, pfns.len())?;
        Ok(Self {
            byte_count,
            byte_offset,
            pfns,
        })
    }

    /// Length in bytes.
    pub fn byte_count(&self) -> u32 {
        self.byte_count
    }

    /// Offset into the first page.
    pub fn byte_offset(&self) -> u32 {
        self.byte_offset
    }

    /// Page frame numbers, first page first.
    pub fn pfns(&self) -> &'a [u64] {
        self.pfns
    }

    fn wire_len(&self) -> u64 {
        8 + 8 * self.pfns.len() as u64
    }
}

fn check_gpa_range(byte_count: u32, byte_offset: u32, pfn_count: usize) -> Result<(), PacketError> {
    if byte_offset >= PAGE_SIZE {
        return Err(PacketError::GpaOffsetOutsidePage { byte_offset });
    }
    if byte_count == 0 {
        return Err(PacketError::EmptyGpaRange);
    }
    let expected = gpa_range_pfn_count(byte_count, byte_offset);
    if expected != pfn_count as u64 {
        return Err(PacketError::PfnCountMismatch {
            expected,
            actual: pfn_count,
        });
    }
    Ok(())
}

/// The kind of an outgoing packet with its kind-specific header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutgoingKind<'a> {
    /// In-band data (type 6).
    InBand,
    /// Completion (type 11).
    Completion,
    /// Transfer-page data (type 7).
    TransferPages {
        /// Transfer page set id.
        set_id: u16,
        /// Whether the sender owns the set.
        sender_owns_set: bool,
        /// Ranges in the set.
        ranges: &'a [TransferPageRange],
    },
    /// GPA-direct data (type 9).
    GpaDirect {
        /// Guest-physical ranges.
        ranges: &'a [GpaRange<'a>],
    },
}

/// A packet to write, borrowed from the caller (nothing is allocated or copied until the write).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutgoingPacket<'a> {
    /// Kind and kind-specific header.
    pub kind: OutgoingKind<'a>,
    /// Transaction id.
    pub transaction_id: u64,
    /// Whether to set [`FLAG_COMPLETION_REQUESTED`].
    pub completion_requested: bool,
    /// Payload (padded with zeros to 8 bytes on the wire).
    pub payload: &'a [u8],
}

impl<'a> OutgoingPacket<'a> {
    /// An in-band data packet.
    #[inline]
    pub fn in_band(transaction_id: u64, payload: &'a [u8]) -> Self {
        Self {
            kind: OutgoingKind::InBand,
            transaction_id,
            completion_requested: false,
            payload,
        }
    }

    /// A completion for the packet with `transaction_id`.
    pub fn completion(transaction_id: u64, payload: &'a [u8]) -> Self {
        Self {
            kind: OutgoingKind::Completion,
            ..Self::in_band(transaction_id, payload)
        }
    }

    /// A transfer-page packet.
    pub fn transfer_pages(
        transaction_id: u64,
        set_id: u16,
        sender_owns_set: bool,
        ranges: &'a [TransferPageRange],
        payload: &'a [u8],
    ) -> Self {
        Self {
            kind: OutgoingKind::TransferPages {
                set_id,
                sender_owns_set,
                ranges,
            },
            ..Self::in_band(transaction_id, payload)
        }
    }

    /// A GPA-direct packet.
    pub fn gpa_direct(transaction_id: u64, ranges: &'a [GpaRange<'a>], payload: &'a [u8]) -> Self {
        Self {
            kind: OutgoingKind::GpaDirect { ranges },
            ..Self::in_band(transaction_id, payload)
        }
    }

    /// The same packet with the completion-requested flag set or cleared.
    pub fn with_completion_requested(self, requested: bool) -> Self {
        Self {
            completion_requested: requested,
            ..self
        }
    }

    /// The packet type on the wire.
    #[inline]
    pub fn packet_type(&self) -> u16 {
        match self.kind {
            OutgoingKind::InBand => packet_type::DATA_INBAND,
            OutgoingKind::Completion => packet_type::COMPLETION,
            OutgoingKind::TransferPages { .. } => packet_type::DATA_USING_XFER_PAGES,
            OutgoingKind::GpaDirect { .. } => packet_type::DATA_USING_GPA_DIRECT,
        }
    }

    /// Bytes before the payload: descriptor plus kind-specific header (a multiple of 8).
    #[inline]
    pub fn header_len(&self) -> u64 {
        let extra = match self.kind {
            OutgoingKind::InBand | OutgoingKind::Completion => 0,
            OutgoingKind::TransferPages { ranges, .. } => 8 + 8 * ranges.len() as u64,
            OutgoingKind::GpaDirect { ranges } => ranges
                .iter()
                .fold(8u64, |sum, range| sum.saturating_add(range.wire_len())),
        };
        u64::from(DESCRIPTOR_LEN).saturating_add(extra)
    }

    /// Packet length on the wire (`len8 * 8`): header plus padded payload.
    #[inline]
    pub fn packet_len(&self) -> u64 {
        self.header_len()
            .saturating_add(align8(self.payload.len() as u64))
    }

    /// Bytes the packet occupies in a ring: packet length plus the trailer. This is the value a
    /// blocked writer puts in `pending_send_sz`.
    #[inline]
    pub fn ring_len(&self) -> u64 {
        self.packet_len().saturating_add(u64::from(TRAILER_LEN))
    }

    /// The descriptor's first 8 bytes (`type`, `offset8`, `len8`, `flags`, see
    /// [`PacketDescriptor`]) as a little-endian word, if the lengths fit the 16-bit fields; the
    /// other 8 bytes are the transaction id. An integer rather than a `PacketDescriptor` value so
    /// the write path builds it in registers (moving the unaligned struct around stalls store
    /// forwarding).
    #[inline]
    pub(crate) fn descriptor_head(&self) -> Option<u64> {
        let offset8 = u16::try_from(self.header_len() / u64::from(PACKET_ALIGN)).ok()?;
        let len8 = u16::try_from(self.packet_len() / u64::from(PACKET_ALIGN)).ok()?;
        let flags = if self.completion_requested {
            FLAG_COMPLETION_REQUESTED
        } else {
            0
        };
        Some(
            u64::from(self.packet_type())
                | u64::from(offset8) << 16
                | u64::from(len8) << 32
                | u64::from(flags) << 48,
        )
    }

    /// Calls `emit` with the packet's bytes (without trailer) in pieces whose lengths are all
    /// multiples of 8, in wire order. `head` comes from [`Self::descriptor_head`].
    #[inline]
    pub(crate) fn emit(&self, head: u64, mut emit: impl FnMut(&[u8])) {
        emit(&head.to_le_bytes());
        emit(&self.transaction_id.to_le_bytes());
        if !matches!(self.kind, OutgoingKind::InBand | OutgoingKind::Completion) {
            self.emit_header(&mut emit);
        }
        let split = self.payload.len() - self.payload.len() % PACKET_ALIGN as usize;
        let (whole, tail) = self.payload.split_at(split);
        if !whole.is_empty() {
            emit(whole);
        }
        if !tail.is_empty() {
            let mut last = [0u8; PACKET_ALIGN as usize];
            last[..tail.len()].copy_from_slice(tail);
            emit(&last);
        }
    }

    /// The kind-specific header of a transfer-page or GPA-direct packet (out of line: the
    /// in-band fast path does not need it).
    fn emit_header(&self, emit: &mut impl FnMut(&[u8])) {
        match self.kind {
            OutgoingKind::InBand | OutgoingKind::Completion => {}
            OutgoingKind::TransferPages {
                set_id,
                sender_owns_set,
                ranges,
            } => {
                let header = TransferPageHeader {
                    transfer_page_set_id: set_id.into(),
                    sender_owns_set: u8::from(sender_owns_set),
                    reserved: 0,
                    range_count: (ranges.len() as u32).into(),
                };
                emit(header.as_bytes());
                emit(ranges.as_bytes());
            }
            OutgoingKind::GpaDirect { ranges } => {
                let header = GpaDirectHeader {
                    reserved: 0.into(),
                    range_count: (ranges.len() as u32).into(),
                };
                emit(header.as_bytes());
                for range in ranges {
                    let range_header = GpaRangeHeader {
                        byte_count: range.byte_count.into(),
                        byte_offset: range.byte_offset.into(),
                    };
                    emit(range_header.as_bytes());
                    for pfn in range.pfns {
                        emit(&pfn.to_le_bytes());
                    }
                }
            }
        }
    }
}

/// A received packet, parsed and validated, borrowing the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Kind and kind-specific header.
    pub kind: PacketKind<'a>,
    /// Transaction id.
    pub transaction_id: u64,
    /// Raw descriptor flags.
    pub flags: u16,
    /// Payload, from `offset8 * 8` to the end of the packet (padding included).
    pub payload: &'a [u8],
}

/// The kind of a received packet with its kind-specific header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind<'a> {
    /// In-band data (type 6).
    InBand,
    /// Completion (type 11).
    Completion,
    /// Transfer-page data (type 7).
    TransferPages(TransferPages<'a>),
    /// GPA-direct data (type 9).
    GpaDirect(GpaDirect<'a>),
}

/// Header of a received transfer-page packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferPages<'a> {
    /// Transfer page set id.
    pub set_id: u16,
    /// Whether the sender owns the set.
    pub sender_owns_set: bool,
    /// Ranges in the set.
    pub ranges: &'a [TransferPageRange],
}

/// Ranges of a received GPA-direct packet (validated when the packet was parsed).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct GpaDirect<'a> {
    range_count: u32,
    bytes: &'a [u8],
}

impl fmt::Debug for GpaDirect<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.ranges()).finish()
    }
}

impl<'a> GpaDirect<'a> {
    /// Number of ranges.
    pub fn range_count(&self) -> u32 {
        self.range_count
    }

    /// The ranges, in order.
    pub fn ranges(&self) -> GpaRanges<'a> {
        GpaRanges {
            remaining: self.range_count,
            bytes: self.bytes,
        }
    }

    /// Parses `range_count` ranges from the start of `bytes`, checking each one.
    fn parse(range_count: u32, bytes: &'a [u8]) -> Result<Self, PacketError> {
        let mut rest = bytes;
        for _ in 0..range_count {
            let (_, tail) =
                split_range(rest).ok_or(PacketError::RangesBeyondHeader { range_count })??;
            rest = tail;
        }
        Ok(Self { range_count, bytes })
    }
}

/// Splits one GPA range off the front of `bytes`: `None` if it does not fit, `Some(Err)` if it is
/// malformed.
fn split_range(bytes: &[u8]) -> Option<Result<(GpaRangeView<'_>, &[u8]), PacketError>> {
    let (header, rest) = GpaRangeHeader::read_from_prefix(bytes).ok()?;
    let byte_count = header.byte_count.get();
    let byte_offset = header.byte_offset.get();
    if byte_offset >= PAGE_SIZE {
        return Some(Err(PacketError::GpaOffsetOutsidePage { byte_offset }));
    }
    if byte_count == 0 {
        return Some(Err(PacketError::EmptyGpaRange));
    }
    let count = gpa_range_pfn_count(byte_count, byte_offset);
    let pfn_bytes = usize::try_from(count).ok()?.checked_mul(8)?;
    let (pfn_bytes, rest) = rest.split_at_checked(pfn_bytes)?;
    let pfns = <[U64]>::ref_from_bytes(pfn_bytes).ok()?;
    let range = GpaRangeView {
        byte_count,
        byte_offset,
        pfns,
    };
    Some(Ok((range, rest)))
}

/// One received GPA range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpaRangeView<'a> {
    /// Length in bytes.
    pub byte_count: u32,
    /// Offset into the first page.
    pub byte_offset: u32,
    pfns: &'a [U64],
}

impl<'a> GpaRangeView<'a> {
    /// Number of page frame numbers.
    pub fn pfn_count(&self) -> usize {
        self.pfns.len()
    }

    /// The page frame numbers, first page first.
    pub fn pfns(&self) -> impl Iterator<Item = u64> + 'a {
        self.pfns.iter().map(|pfn| pfn.get())
    }
}

/// Iterator over the ranges of a [`GpaDirect`] packet.
#[derive(Debug, Clone)]
pub struct GpaRanges<'a> {
    remaining: u32,
    bytes: &'a [u8],
}

impl<'a> Iterator for GpaRanges<'a> {
    type Item = GpaRangeView<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        self.remaining = self.remaining.checked_sub(1)?;
        let (range, rest) = split_range(self.bytes)?.ok()?;
        self.bytes = rest;
        Some(range)
    }
}

impl<'a> Packet<'a> {
    /// Parses a whole packet as [`RingReader`](crate::RingReader) returns it: descriptor through
    /// padding, exactly `len8 * 8` bytes, trailer excluded.
    // Inlined into the caller's receive loop: returning the parsed packet through memory
    // costs more than parsing it.
    #[inline(always)]
    pub fn parse(bytes: &'a [u8]) -> Result<Self, PacketError> {
        let (descriptor, _) = PacketDescriptor::read_from_prefix(bytes)
            .map_err(|_| PacketError::TooShort { len: bytes.len() })?;
        let len8 = descriptor.len8.get();
        let offset8 = descriptor.offset8.get();
        if usize::from(len8) * PACKET_ALIGN as usize != bytes.len() {
            return Err(PacketError::LengthMismatch {
                len8,
                actual: bytes.len(),
            });
        }
        let data_offset = usize::from(offset8) * PACKET_ALIGN as usize;
        if data_offset < DESCRIPTOR_LEN as usize || offset8 > len8 {
            return Err(PacketError::BadOffset { offset8, len8 });
        }
        let (head, payload) = bytes.split_at(data_offset);
        let header = &head[DESCRIPTOR_LEN as usize..];
        let ty = descriptor.packet_type.get();
        let kind = match ty {
            packet_type::DATA_INBAND => PacketKind::InBand,
            packet_type::COMPLETION => PacketKind::Completion,
            packet_type::DATA_USING_XFER_PAGES => {
                let (xfer, rest) = TransferPageHeader::read_from_prefix(header)
                    .map_err(|_| PacketError::HeaderTruncated { packet_type: ty })?;
                let range_count = xfer.range_count.get();
                let ranges = usize::try_from(range_count)
                    .ok()
                    .and_then(|n| n.checked_mul(size_of::<TransferPageRange>()))
                    .and_then(|n| rest.get(..n))
                    .and_then(|b| <[TransferPageRange]>::ref_from_bytes(b).ok())
                    .ok_or(PacketError::RangesBeyondHeader { range_count })?;
                PacketKind::TransferPages(TransferPages {
                    set_id: xfer.transfer_page_set_id.get(),
                    sender_owns_set: xfer.sender_owns_set != 0,
                    ranges,
                })
            }
            packet_type::DATA_USING_GPA_DIRECT => {
                let (gpa, rest) = GpaDirectHeader::read_from_prefix(header)
                    .map_err(|_| PacketError::HeaderTruncated { packet_type: ty })?;
                PacketKind::GpaDirect(GpaDirect::parse(gpa.range_count.get(), rest)?)
            }
            other => return Err(PacketError::UnsupportedType(other)),
        };
        Ok(Self {
            kind,
            transaction_id: descriptor.transaction_id.get(),
            flags: descriptor.flags.get(),
            payload,
        })
    }

    /// Whether the sender asked for a completion.
    #[inline]
    pub fn completion_requested(&self) -> bool {
        self.flags & FLAG_COMPLETION_REQUESTED != 0
    }
}
