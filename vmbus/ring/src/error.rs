//! Error types. "Normal" outcomes (empty, full, buffer too small) are kept apart from
//! corruption: a [`CorruptKind`] means the peer broke the ring protocol and the channel should be
//! closed; retrying gives the same error.

use crate::mem::ControlField;

/// How the peer broke the ring protocol. Every value read from shared memory is checked; each
/// violation has its own kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CorruptKind {
    /// An index read from the control page lies outside the data area.
    #[error("{field:?} {index:#x} is outside the {data_len:#x}-byte data area")]
    IndexOutOfRange {
        /// Which index.
        field: ControlField,
        /// Its value.
        index: u32,
        /// Size of the data area.
        data_len: u32,
    },
    /// An index read from the control page is not a multiple of 8.
    #[error("{field:?} {index:#x} is not 8-byte aligned")]
    UnalignedIndex {
        /// Which index.
        field: ControlField,
        /// Its value.
        index: u32,
    },
    /// Data is present but too little for a descriptor and a trailer.
    #[error("Only {available} bytes available, less than a packet")]
    Truncated {
        /// Bytes between the read and write indices.
        available: u32,
    },
    /// A descriptor has `len8 == 0`.
    #[error("Packet length is zero")]
    ZeroLength,
    /// A descriptor's `len8` is shorter than the descriptor itself.
    #[error("Packet length {len8} (x8) is shorter than its descriptor")]
    LengthTooSmall {
        /// The descriptor's `len8`.
        len8: u16,
    },
    /// A descriptor's `offset8` points inside the descriptor.
    #[error("Data offset {offset8} (x8) lies inside the descriptor")]
    OffsetInsideDescriptor {
        /// The descriptor's `offset8`.
        offset8: u16,
    },
    /// A descriptor's `offset8` points past the end of the packet.
    #[error("Data offset {offset8} (x8) lies beyond the packet length {len8} (x8)")]
    OffsetBeyondLength {
        /// The descriptor's `offset8`.
        offset8: u16,
        /// The descriptor's `len8`.
        len8: u16,
    },
    /// A packet and its trailer are longer than the data the writer published.
    #[error("Packet needs {needed} bytes with its trailer, only {available} available")]
    LengthBeyondAvailable {
        /// Packet length plus trailer.
        needed: u32,
        /// Bytes between the read and write indices.
        available: u32,
    },
}

/// Why [`RingReader`](crate::RingReader) read nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// No packet is available.
    #[error("Ring is empty")]
    Empty,
    /// The next packet does not fit the caller's buffer; nothing was consumed.
    #[error("Packet of {needed} bytes does not fit the buffer")]
    BufferTooSmall {
        /// Length of the packet (descriptor to end of padding).
        needed: usize,
    },
    /// The peer broke the ring protocol.
    #[error("Ring is corrupt")]
    Corrupt(#[source] CorruptKind),
}

/// Why [`RingWriter`](crate::RingWriter) wrote nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// Not enough free space now; retry after the reader frees some (see
    /// [`RingWriter::request_space_signal`](crate::RingWriter::request_space_signal)).
    #[error("Packet needs {needed} bytes, {free} free")]
    Full {
        /// Bytes the packet occupies in the ring, trailer included.
        needed: u32,
        /// Bytes that could be written now (the mandatory 8-byte gap excluded).
        free: u32,
    },
    /// The packet can never fit: it is larger than the ring or than `len8` can describe.
    #[error("Packet needs {needed} bytes, at most {max} fit")]
    TooLarge {
        /// Bytes the packet would occupy in the ring, trailer included.
        needed: u64,
        /// Largest packet this ring takes, trailer included.
        max: u32,
    },
    /// The peer broke the ring protocol.
    #[error("Ring is corrupt")]
    Corrupt(#[source] CorruptKind),
}

/// A data area size the ring cannot use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Data area of {data_len} bytes is not a multiple of 8 in [{min}, {max}]", min = crate::MIN_DATA_LEN, max = crate::MAX_DATA_LEN)]
pub struct InvalidDataLen {
    /// The rejected size.
    pub data_len: u32,
}

/// Why a reader or writer could not attach to a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The ring memory's data area has an unusable size.
    #[error(transparent)]
    InvalidDataLen(#[from] InvalidDataLen),
    /// The endpoint's own index in the control page is invalid.
    #[error("Ring is corrupt")]
    Corrupt(#[source] CorruptKind),
}
