//! VMBus ring buffers, wire-compatible with Hyper-V and the rings Linux's `drivers/hv` uses.
//!
//! A ring carries packets one way between a writer and a reader that share its memory: a 4 KiB
//! control page (indices, interrupt mask, pending send size, feature bits; see
//! [`wire::ControlPage`]) and a data area of 8-byte-aligned packets. A VMBus channel uses two
//! rings, one per direction.
//!
//! - [`wire`]: layouts and constants, checked at compile time.
//! - [`RingMem`]: where ring memory lives ([`FlatRingMem`] in-process, `SharedFileRingMem`
//!   between processes with feature `std`, guest pages later).
//! - [`RingWriter`] / [`RingReader`]: the endpoints, with Linux's notification rules (signal on
//!   empty-to-non-empty unless masked; signal a blocked writer when free space crosses its
//!   `pending_send_sz`). Each caches the peer's index, and both move packets one at a time or in
//!   batches published with one index store ([`RingWriter::try_write_batch`],
//!   [`RingReader::read_batch`]).
//! - [`OutgoingPacket`] / [`Packet`]: typed builders and parser for in-band, transfer-page,
//!   GPA-direct and completion packets.
//!
//! **Invariant:** nothing the peer writes (indices, descriptors, packet contents) can make this
//! crate panic, read or write out of bounds, or loop without progress; every violation is a typed
//! [`CorruptKind`] or [`PacketError`].
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

mod error;
pub mod mem;
pub mod packet;
mod ring;
mod sync;
pub mod wire;

#[cfg(all(not(loom), any(test, feature = "std")))]
mod raw;
#[cfg(all(not(loom), any(test, feature = "std")))]
mod shared_file;

pub use error::{CorruptKind, InvalidDataLen, OpenError, ReadError, WriteError};
pub use mem::{ControlField, FlatRingMem, RingMem};
pub use packet::{
    GpaDirect, GpaRange, GpaRangeView, OutgoingKind, OutgoingPacket, Packet, PacketError,
    PacketKind, TransferPages,
};
pub use ring::{
    BatchWriteOutcome, CommitOutcome, PacketBatch, PacketBatchIter, ReadBatch, ReadOutcome,
    RingReader, RingWriter, SpaceWait, WriteOutcome,
};
#[cfg(all(not(loom), any(test, feature = "std")))]
pub use shared_file::{SharedFileError, SharedFileRingMem};
pub use wire::TransferPageRange;

/// Smallest data area: one packet without payload (descriptor and trailer) plus the 8-byte gap.
pub const MIN_DATA_LEN: u32 = 32;
/// Largest data area (2 GiB) accepted, keeping all index arithmetic far from `u32` overflow.
pub const MAX_DATA_LEN: u32 = 1 << 31;

#[cfg(all(test, not(loom)))]
mod tests;
