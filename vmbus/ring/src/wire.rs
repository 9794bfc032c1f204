//! Wire layouts of a VMBus ring buffer, as Hyper-V and Linux's `drivers/hv` use them.
//!
//! A ring is one 4 KiB control page followed by a data area whose size is a multiple of 8
//! (a multiple of 4 KiB when it lives in guest pages). The control page holds the indices and
//! notification fields ([`ControlPage`]); the data area holds packets back to back, each made of a
//! 16-byte [`PacketDescriptor`], a kind-specific header, the payload padded to 8 bytes, and an
//! 8-byte trailer. All integers are little-endian; the types here are unaligned so they can be
//! read from any byte buffer with zerocopy.

use core::mem::{offset_of, size_of};

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Size of a guest page; ring memory handed over in GPADLs comes in pages.
pub const PAGE_SIZE: u32 = 4096;
/// Size of the control page that precedes the data area.
pub const CONTROL_PAGE_LEN: u32 = PAGE_SIZE;
/// Packets, indices and the data area are all multiples of this many bytes.
pub const PACKET_ALIGN: u32 = 8;
/// Size of [`PacketDescriptor`].
pub const DESCRIPTOR_LEN: u32 = 16;
/// Size of the trailer written after every packet.
pub const TRAILER_LEN: u32 = 8;
/// Largest packet (descriptor to end of padding, trailer excluded): `len8` is a `u16`.
pub const MAX_PACKET_LEN: u32 = 0xffff * PACKET_ALIGN;

/// Bit 0 of `feature_bits`: the reader honours `pending_send_sz` (Linux `feat_pending_send_sz`).
pub const FEATURE_PENDING_SEND_SIZE: u32 = 1;

/// Descriptor flag: the sender wants a completion packet for this one.
pub const FLAG_COMPLETION_REQUESTED: u16 = 1;

/// Packet types (`enum vmbus_packet_type`). This crate builds and parses the four data kinds;
/// the others are listed for completeness.
pub mod packet_type {
    /// Invalid.
    pub const INVALID: u16 = 0x0;
    /// Synchronisation (unused by Linux).
    pub const SYNCH: u16 = 0x1;
    /// Add a transfer page set (unused by Linux).
    pub const ADD_XFER_PAGESET: u16 = 0x2;
    /// Remove a transfer page set (unused by Linux).
    pub const RM_XFER_PAGESET: u16 = 0x3;
    /// Establish a GPADL (unused by Linux).
    pub const ESTABLISH_GPADL: u16 = 0x4;
    /// Tear down a GPADL (unused by Linux).
    pub const TEARDOWN_GPADL: u16 = 0x5;
    /// In-band data: the payload follows the descriptor.
    pub const DATA_INBAND: u16 = 0x6;
    /// Data in a transfer page set (netvsc receive buffer), described by ranges.
    pub const DATA_USING_XFER_PAGES: u16 = 0x7;
    /// Data in a GPADL (unused by Linux).
    pub const DATA_USING_GPADL: u16 = 0x8;
    /// Data in guest pages named directly by PFN lists (storvsc, netvsc send).
    pub const DATA_USING_GPA_DIRECT: u16 = 0x9;
    /// Cancel a request (unused by Linux).
    pub const CANCEL_REQUEST: u16 = 0xa;
    /// Completion of an earlier packet, matched by transaction id.
    pub const COMPLETION: u16 = 0xb;
    /// Data continued in an additional packet (unused by Linux).
    pub const DATA_USING_ADDITIONAL_PKT: u16 = 0xc;
    /// Additional data (unused by Linux).
    pub const ADDITIONAL_DATA: u16 = 0xd;
}

/// The control page at the start of every ring (`struct hv_ring_buffer`).
///
/// Only the first five fields take part in the protocol; the rest is reserved. The ring code never
/// reads this struct from shared memory (it uses atomic field accesses through
/// [`RingMem`](crate::RingMem)); it documents the layout and parses snapshots.
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned, Clone, Copy, Debug)]
pub struct ControlPage {
    /// Byte offset in the data area where the writer puts the next packet (writer-owned).
    pub write_index: U32,
    /// Byte offset in the data area of the next packet to read (reader-owned).
    pub read_index: U32,
    /// Non-zero: the reader does not want a signal for new data (reader-owned).
    pub interrupt_mask: U32,
    /// Non-zero: the writer waits until this many bytes are free (writer-owned).
    pub pending_send_sz: U32,
    /// Reserved.
    pub reserved1: [U32; 12],
    /// Feature bits; bit 0 is [`FEATURE_PENDING_SEND_SIZE`] (set by whoever creates the ring).
    pub feature_bits: U32,
    /// Reserved up to the end of the page.
    pub reserved2: [u8; 4028],
}

const _: () = assert!(size_of::<ControlPage>() == CONTROL_PAGE_LEN as usize);
const _: () = assert!(offset_of!(ControlPage, write_index) == 0);
const _: () = assert!(offset_of!(ControlPage, read_index) == 4);
const _: () = assert!(offset_of!(ControlPage, interrupt_mask) == 8);
const _: () = assert!(offset_of!(ControlPage, pending_send_sz) == 12);
const _: () = assert!(offset_of!(ControlPage, feature_bits) == 64);

/// The 16-byte header of every packet (`struct vmpacket_descriptor`).
#[repr(C)]
#[derive(
    FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned, Clone, Copy, Debug, PartialEq, Eq,
)]
pub struct PacketDescriptor {
    /// One of [`packet_type`].
    pub packet_type: U16,
    /// Offset of the payload from the packet start, in 8-byte units (at least 2).
    pub offset8: U16,
    /// Total packet length (descriptor to end of padding, trailer excluded), in 8-byte units.
    pub len8: U16,
    /// Flags; bit 0 is [`FLAG_COMPLETION_REQUESTED`].
    pub flags: U16,
    /// Transaction id, echoed in the completion.
    pub transaction_id: U64,
}

const _: () = assert!(size_of::<PacketDescriptor>() == DESCRIPTOR_LEN as usize);
const _: () = assert!(offset_of!(PacketDescriptor, len8) == 4);
const _: () = assert!(offset_of!(PacketDescriptor, transaction_id) == 8);

/// Header of a transfer-page packet, after the descriptor (`struct vmtransfer_page_packet_header`
/// minus its descriptor). `range_count` [`TransferPageRange`]s follow.
#[repr(C)]
#[derive(
    FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned, Clone, Copy, Debug, PartialEq, Eq,
)]
pub struct TransferPageHeader {
    /// Transfer page set id (the receive buffer's GPADL handle in netvsc).
    pub transfer_page_set_id: U16,
    /// Non-zero if the sender owns the page set.
    pub sender_owns_set: u8,
    /// Reserved, zero.
    pub reserved: u8,
    /// Number of ranges that follow.
    pub range_count: U32,
}

const _: () = assert!(size_of::<TransferPageHeader>() == 8);

/// One range of a transfer page set (`struct vmtransfer_page_range`).
#[repr(C)]
#[derive(
    FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned, Clone, Copy, Debug, PartialEq, Eq,
)]
pub struct TransferPageRange {
    /// Length of the range in bytes.
    pub byte_count: U32,
    /// Offset of the range in the transfer page set.
    pub byte_offset: U32,
}

const _: () = assert!(size_of::<TransferPageRange>() == 8);

impl TransferPageRange {
    /// A range of `byte_count` bytes at `byte_offset` in the page set.
    pub fn new(byte_count: u32, byte_offset: u32) -> Self {
        Self {
            byte_count: U32::new(byte_count),
            byte_offset: U32::new(byte_offset),
        }
    }
}

/// Header of a GPA-direct packet, after the descriptor (`struct vmdata_gpa_direct` minus its
/// descriptor and ranges). `range_count` GPA ranges follow, each a [`GpaRangeHeader`] and its PFNs.
#[repr(C)]
#[derive(
    FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned, Clone, Copy, Debug, PartialEq, Eq,
)]
pub struct GpaDirectHeader {
    /// Reserved, zero.
    pub reserved: U32,
    /// Number of GPA ranges that follow.
    pub range_count: U32,
}

const _: () = assert!(size_of::<GpaDirectHeader>() == 8);

/// Start of one GPA range (`struct gpa_range` without its PFN array). The number of PFNs that
/// follow is not on the wire: it is [`gpa_range_pfn_count`] of the offset and length.
#[repr(C)]
#[derive(
    FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned, Clone, Copy, Debug, PartialEq, Eq,
)]
pub struct GpaRangeHeader {
    /// Length of the range in bytes.
    pub byte_count: U32,
    /// Offset of the range's first byte within its first page (below [`PAGE_SIZE`]).
    pub byte_offset: U32,
}

const _: () = assert!(size_of::<GpaRangeHeader>() == 8);

/// Number of page frame numbers that follow a GPA range header: the pages spanned by
/// `byte_count` bytes starting `byte_offset` bytes into the first page.
pub fn gpa_range_pfn_count(byte_count: u32, byte_offset: u32) -> u64 {
    (u64::from(byte_offset) + u64::from(byte_count)).div_ceil(u64::from(PAGE_SIZE))
}

/// The trailer Linux writes after a packet: the packet's start offset (the write index before the
/// packet) in the upper 32 bits. Readers skip the trailer and do not rely on its value.
pub fn trailer_value(packet_start: u32) -> u64 {
    u64::from(packet_start) << 32
}

/// Rounds `len` up to a multiple of [`PACKET_ALIGN`] (saturating instead of overflowing).
pub fn align8(len: u64) -> u64 {
    len.div_ceil(u64::from(PACKET_ALIGN))
        .saturating_mul(u64::from(PACKET_ALIGN))
}
