//! Typed channel messages and their encoding.

use alloc::vec::Vec;
use core::fmt;

use zerocopy::byteorder::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, IntoBytes};

use crate::gpadl::{self, GpaRange, RangeError};
use crate::wire;
use crate::{Guid, MAX_MESSAGE_SIZE, VersionNumber};

/// `enum vmbus_channel_message_type`: the message types Linux 6.1 defines, except the
/// placeholders 18, 19 and 20 that it never sends nor accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u32)]
pub enum MessageType {
    /// Server to client: a channel exists.
    OfferChannel = 1,
    /// Server to client: a channel is going away.
    RescindChannelOffer = 2,
    /// Client to server: send me the offers.
    RequestOffers = 3,
    /// Server to client: the offer list is complete.
    AllOffersDelivered = 4,
    /// Client to server: open a channel.
    OpenChannel = 5,
    /// Server to client: result of an open.
    OpenChannelResult = 6,
    /// Client to server: close a channel.
    CloseChannel = 7,
    /// Client to server: first part of a GPADL.
    GpadlHeader = 8,
    /// Client to server: continuation of a GPADL.
    GpadlBody = 9,
    /// Server to client: a GPADL is ready (or failed).
    GpadlCreated = 10,
    /// Client to server: release a GPADL.
    GpadlTeardown = 11,
    /// Server to client: a GPADL is released.
    GpadlTorndown = 12,
    /// Client to server: a rescinded relid may be reused.
    RelIdReleased = 13,
    /// Client to server: version negotiation.
    InitiateContact = 14,
    /// Server to client: answer to initiate contact.
    VersionResponse = 15,
    /// Client to server: disconnect everything.
    Unload = 16,
    /// Server to client: unload is complete.
    UnloadResponse = 17,
    /// Client to server: hv_sock connect.
    TlConnectRequest = 21,
    /// Client to server: move a channel's interrupt to another VP.
    ModifyChannel = 22,
    /// Server to client: hv_sock connect result.
    TlConnectResult = 23,
    /// Server to client: modify channel result (5.3+).
    ModifyChannelResponse = 24,
}

impl MessageType {
    /// Every message type, in numeric order.
    pub const ALL: [MessageType; 21] = [
        Self::OfferChannel,
        Self::RescindChannelOffer,
        Self::RequestOffers,
        Self::AllOffersDelivered,
        Self::OpenChannel,
        Self::OpenChannelResult,
        Self::CloseChannel,
        Self::GpadlHeader,
        Self::GpadlBody,
        Self::GpadlCreated,
        Self::GpadlTeardown,
        Self::GpadlTorndown,
        Self::RelIdReleased,
        Self::InitiateContact,
        Self::VersionResponse,
        Self::Unload,
        Self::UnloadResponse,
        Self::TlConnectRequest,
        Self::ModifyChannel,
        Self::TlConnectResult,
        Self::ModifyChannelResponse,
    ];

    /// The type for a wire value, if Mica knows it.
    pub fn from_raw(raw: u32) -> Option<Self> {
        Self::ALL.iter().copied().find(|t| *t as u32 == raw)
    }

    /// Whether the client (guest) sends this type; otherwise the server does.
    pub fn is_client_to_server(self) -> bool {
        matches!(
            self,
            Self::RequestOffers
                | Self::OpenChannel
                | Self::CloseChannel
                | Self::GpadlHeader
                | Self::GpadlBody
                | Self::GpadlTeardown
                | Self::RelIdReleased
                | Self::InitiateContact
                | Self::Unload
                | Self::TlConnectRequest
                | Self::ModifyChannel
        )
    }
}

/// A relative channel ID ("relid"), assigned by the server in its offer.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct ChannelId(pub u32);

/// A GPADL handle, chosen by the client.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct GpadlId(pub u32);

/// NTSTATUS values used in channel messages.
pub mod status {
    /// Success.
    pub const SUCCESS: u32 = 0;
    /// Generic failure (`STATUS_UNSUCCESSFUL`).
    pub const UNSUCCESSFUL: u32 = 0xC000_0001;
    /// A parameter is invalid (`STATUS_INVALID_PARAMETER`).
    pub const INVALID_PARAMETER: u32 = 0xC000_000D;
    /// Out of resources (`STATUS_INSUFFICIENT_RESOURCES`).
    pub const INSUFFICIENT_RESOURCES: u32 = 0xC000_009A;
    /// Nobody listens (`STATUS_CONNECTION_REFUSED`).
    pub const CONNECTION_REFUSED: u32 = 0xC000_0236;
}

bitflags::bitflags! {
    /// `chn_flags` of an offer (`VMBUS_CHANNEL_*` in include/linux/hyperv.h). Unknown bits are
    /// kept.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
    pub struct OfferFlags: u16 {
        /// Enumerate the device interface.
        const ENUMERATE_DEVICE_INTERFACE = 0x1;
        /// The server supports transfer pages.
        const SERVER_SUPPORTS_TRANSFER_PAGES = 0x2;
        /// The server supports GPADLs.
        const SERVER_SUPPORTS_GPADLS = 0x4;
        /// Named pipe mode: the user-defined bytes start with the pipe mode.
        const NAMED_PIPE_MODE = 0x10;
        /// Loopback offer.
        const LOOPBACK_OFFER = 0x100;
        /// Parent offer.
        const PARENT_OFFER = 0x200;
        /// Request monitored notification.
        const REQUEST_MONITORED_NOTIFICATION = 0x400;
        /// hv_sock (transport-layer named pipe) provider offer.
        const TLNPI_PROVIDER_OFFER = 0x2000;
        const _ = !0;
    }
}

/// Size of the user-defined area of an offer and of an open request.
pub const USER_DEFINED_SIZE: usize = 120;

/// The 120 user-defined bytes of an offer or an open request.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserDefined(pub [u8; USER_DEFINED_SIZE]);

impl Default for UserDefined {
    fn default() -> Self {
        Self([0; USER_DEFINED_SIZE])
    }
}

impl UserDefined {
    /// Pipe mode (`VMBUS_PIPE_TYPE_*`), meaningful when the offer has
    /// [`OfferFlags::NAMED_PIPE_MODE`].
    pub fn pipe_mode(&self) -> u32 {
        let [a, b, c, d, ..] = self.0;
        u32::from_le_bytes([a, b, c, d])
    }

    /// The same bytes with the pipe mode set.
    pub fn with_pipe_mode(mut self, mode: u32) -> Self {
        self.0[..4].copy_from_slice(&mode.to_le_bytes());
        self
    }
}

impl fmt::Debug for UserDefined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.iter().rposition(|&b| b != 0) {
            None => write!(f, "UserDefined(zero)"),
            Some(last) => write!(f, "UserDefined({:02x?})", &self.0[..=last]),
        }
    }
}

/// Byte pipe mode (`VMBUS_PIPE_TYPE_BYTE`).
pub const PIPE_TYPE_BYTE: u32 = 0;
/// Message pipe mode (`VMBUS_PIPE_TYPE_MESSAGE`).
pub const PIPE_TYPE_MESSAGE: u32 = 4;

/// Offer of a channel (type 1).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct OfferChannel {
    /// Device class.
    pub interface_type: Guid,
    /// Device instance.
    pub instance: Guid,
    /// Channel flags.
    pub flags: OfferFlags,
    /// MMIO space the device needs, in MiB.
    pub mmio_megabytes: u16,
    /// User-defined bytes (pipe mode first in pipe mode).
    pub user_defined: UserDefined,
    /// 0 for a primary channel.
    pub sub_channel_index: u16,
    /// Relid the server assigned.
    pub child_relid: ChannelId,
    /// Monitor ID, meaningful if `monitor_allocated`.
    pub monitor_id: u8,
    /// Whether the channel uses a monitor page bit.
    pub monitor_allocated: bool,
    /// Whether the channel has a dedicated interrupt (no channel bitmap bit).
    pub dedicated_interrupt: bool,
    /// Connection ID the guest signals the host with.
    pub connection_id: u32,
}

/// Open request (type 5).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct OpenChannel {
    /// The channel.
    pub child_relid: ChannelId,
    /// Echoed in the result (Linux uses the relid).
    pub open_id: u32,
    /// GPADL holding both rings: guest-to-host first, host-to-guest at the offset below.
    pub ring_gpadl: GpadlId,
    /// VP for host-to-guest interrupts.
    pub target_vp: u32,
    /// Page index of the host-to-guest ring inside the ring GPADL.
    pub downstream_page_offset: u32,
    /// Passed to the VSP.
    pub user_data: UserDefined,
}

/// Open result (type 6).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct OpenResult {
    /// The channel.
    pub child_relid: ChannelId,
    /// The open ID of the request.
    pub open_id: u32,
    /// [`status::SUCCESS`] or an NTSTATUS.
    pub status: u32,
}

/// GPADL header (type 8): the GPADL's identity and the beginning of its range buffer.
///
/// Decoding checks the header against itself: at least one range, a range buffer length
/// that is a multiple of 8 and large enough for `range_count` ranges, no more words than the
/// buffer length, and a first range whose offset is inside the page, whose byte count is not
/// zero, and whose PFN count fits (or, for a single range, equals) the buffer length.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct GpadlHeader {
    /// The channel the GPADL belongs to.
    pub child_relid: ChannelId,
    /// The GPADL.
    pub gpadl: GpadlId,
    /// Size in bytes of the whole range buffer.
    pub range_buflen: u16,
    /// Number of ranges in the whole range buffer.
    pub range_count: u16,
    /// The first words of the range buffer (the first range's header word, then PFNs).
    pub data: Vec<u64>,
}

impl GpadlHeader {
    /// Most range-buffer words one header message carries: `(240 - 20) / 8`.
    pub const MAX_WORDS: usize = (MAX_MESSAGE_SIZE - size_of::<wire::GpadlHeader>()) / 8;

    /// Number of words in the whole range buffer.
    pub fn total_words(&self) -> usize {
        usize::from(self.range_buflen / 8)
    }

    /// `(byte_count, byte_offset)` of the first range, if the data is not empty.
    pub fn first_range(&self) -> Option<(u32, u32)> {
        self.data
            .first()
            .map(|&w| gpadl::split_range_header_word(w))
    }

    fn validate(&self) -> Result<(), InvalidMessage> {
        let first = *self.data.first().ok_or(InvalidMessage::EmptyGpadlHeader)?;
        if self.range_count == 0 {
            return Err(InvalidMessage::NoRanges);
        }
        if !self.range_buflen.is_multiple_of(8) {
            return Err(InvalidMessage::RangeBufLenUnaligned(self.range_buflen));
        }
        let total = self.total_words();
        // Each range needs its header word and at least one PFN.
        if total < 2 * usize::from(self.range_count) {
            return Err(InvalidMessage::RangeBufLenTooSmall {
                range_buflen: self.range_buflen,
                range_count: self.range_count,
            });
        }
        if self.data.len() > total {
            return Err(InvalidMessage::DataExceedsRangeBufLen {
                words: self.data.len(),
                range_buflen: self.range_buflen,
            });
        }
        let (byte_count, byte_offset) = gpadl::split_range_header_word(first);
        let pfns = gpadl::pfn_count(byte_offset, byte_count).map_err(InvalidMessage::FirstRange)?;
        // Words the other ranges need at least.
        let others = 2 * (usize::from(self.range_count) - 1);
        let fits = pfns
            .checked_add(1 + others)
            .is_some_and(|need| need <= total);
        let exact = self.range_count != 1 || pfns + 1 == total;
        if !fits || !exact {
            return Err(InvalidMessage::RangeBufLenMismatch {
                range_buflen: self.range_buflen,
                first_range_pfns: pfns,
            });
        }
        Ok(())
    }
}

/// GPADL body (type 9): more words of a GPADL's range buffer.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct GpadlBody {
    /// Sequence number; Linux leaves it zero, so receivers must not rely on it.
    pub msg_number: u32,
    /// The GPADL this continues.
    pub gpadl: GpadlId,
    /// The next words of the range buffer (PFNs, or range header words of later ranges).
    pub data: Vec<u64>,
}

impl GpadlBody {
    /// Most words one body message carries: `(240 - 16) / 8`.
    pub const MAX_WORDS: usize = (MAX_MESSAGE_SIZE - size_of::<wire::GpadlBody>()) / 8;
}

/// GPADL created (type 10).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct GpadlCreated {
    /// The channel.
    pub child_relid: ChannelId,
    /// The GPADL.
    pub gpadl: GpadlId,
    /// [`status::SUCCESS`] or an NTSTATUS.
    pub status: u32,
}

/// GPADL teardown request (type 11).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct GpadlTeardown {
    /// The channel.
    pub child_relid: ChannelId,
    /// The GPADL.
    pub gpadl: GpadlId,
}

/// Where the server delivers its messages to the client, by protocol version.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum InterruptTarget {
    /// Before 5.0: GPA of the interrupt page.
    Page(u64),
    /// From 5.0: the SINT and VTL the client receives messages on.
    Sint {
        /// Synthetic interrupt source (Linux: `VMBUS_MESSAGE_SINT` = 2).
        sint: u8,
        /// Virtual trust level.
        vtl: u8,
    },
}

/// Initiate contact (type 14): the client asks for one version.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct InitiateContact {
    /// The version requested.
    pub version: VersionNumber,
    /// VP the server sends its messages to.
    pub target_vcpu: u32,
    /// Interrupt page (before 5.0) or SINT/VTL (5.0+); must match `version` (the six reserved
    /// bytes of the SINT form are ignored on decode and zero on encode).
    pub interrupt: InterruptTarget,
    /// First monitor page GPA.
    pub monitor_page1: u64,
    /// Second monitor page GPA.
    pub monitor_page2: u64,
}

/// `connection_state` of a version response.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct ConnectionState(pub u8);

impl ConnectionState {
    /// Connected.
    pub const SUCCESSFUL: Self = Self(0);
    /// Failed for lack of resources.
    pub const FAILED_LOW_RESOURCES: Self = Self(1);
    /// Failed for another reason.
    pub const FAILED_UNKNOWN: Self = Self(2);
}

/// Version response (type 15).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct VersionResponse {
    /// Whether the requested version is accepted (any non-zero byte decodes as `true`).
    pub version_supported: bool,
    /// Connection state.
    pub connection_state: ConnectionState,
    /// Message connection ID for all later client messages (5.0+).
    pub message_connection_id: u32,
}

/// hv_sock connect request (type 21).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TlConnectRequest {
    /// Guest endpoint ID.
    pub endpoint_id: Guid,
    /// Host service ID.
    pub service_id: Guid,
}

/// hv_sock connect result (type 23).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TlConnectResult {
    /// Guest endpoint ID of the request.
    pub endpoint_id: Guid,
    /// Host service ID of the request.
    pub service_id: Guid,
    /// [`status::SUCCESS`] or an NTSTATUS.
    pub status: u32,
}

/// Modify channel (type 22).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ModifyChannel {
    /// The channel.
    pub child_relid: ChannelId,
    /// New target VP.
    pub target_vp: u32,
}

/// Modify channel response (type 24).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ModifyChannelResponse {
    /// The channel.
    pub child_relid: ChannelId,
    /// [`status::SUCCESS`] or an NTSTATUS.
    pub status: u32,
}

/// One channel-management message, as carried in the payload of a SynIC message.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ChannelMessage {
    /// Type 1.
    OfferChannel(OfferChannel),
    /// Type 2.
    RescindChannelOffer {
        /// The channel.
        child_relid: ChannelId,
    },
    /// Type 3.
    RequestOffers,
    /// Type 4.
    AllOffersDelivered,
    /// Type 5.
    OpenChannel(OpenChannel),
    /// Type 6.
    OpenChannelResult(OpenResult),
    /// Type 7.
    CloseChannel {
        /// The channel.
        child_relid: ChannelId,
    },
    /// Type 8.
    GpadlHeader(GpadlHeader),
    /// Type 9.
    GpadlBody(GpadlBody),
    /// Type 10.
    GpadlCreated(GpadlCreated),
    /// Type 11.
    GpadlTeardown(GpadlTeardown),
    /// Type 12.
    GpadlTorndown {
        /// The GPADL.
        gpadl: GpadlId,
    },
    /// Type 13.
    RelIdReleased {
        /// The channel.
        child_relid: ChannelId,
    },
    /// Type 14.
    InitiateContact(InitiateContact),
    /// Type 15.
    VersionResponse(VersionResponse),
    /// Type 16.
    Unload,
    /// Type 17.
    UnloadResponse,
    /// Type 21.
    TlConnectRequest(TlConnectRequest),
    /// Type 22.
    ModifyChannel(ModifyChannel),
    /// Type 23.
    TlConnectResult(TlConnectResult),
    /// Type 24.
    ModifyChannelResponse(ModifyChannelResponse),
}

/// A message that is well-formed bytes but inconsistent in itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidMessage {
    /// A GPADL header without even the first range's header word.
    #[error("GPADL header carries no range data")]
    EmptyGpadlHeader,
    /// A GPADL body without any word.
    #[error("GPADL body carries no data")]
    EmptyGpadlBody,
    /// A GPADL with a range count of zero.
    #[error("GPADL header has a range count of zero")]
    NoRanges,
    /// A range buffer length that is not a whole number of words.
    #[error("GPADL range buffer length {0} is not a multiple of 8")]
    RangeBufLenUnaligned(u16),
    /// A range buffer too small for the range count.
    #[error("GPADL range buffer of {range_buflen} bytes cannot hold {range_count} ranges")]
    RangeBufLenTooSmall {
        /// Declared buffer length.
        range_buflen: u16,
        /// Declared range count.
        range_count: u16,
    },
    /// The header carries more words than the declared buffer length.
    #[error("GPADL header carries {words} words, more than its {range_buflen}-byte range buffer")]
    DataExceedsRangeBufLen {
        /// Words in the message.
        words: usize,
        /// Declared buffer length.
        range_buflen: u16,
    },
    /// The first range's header word is invalid.
    #[error("GPADL first range is invalid")]
    FirstRange(#[source] RangeError),
    /// The first range's PFN count disagrees with the range buffer length.
    #[error(
        "GPADL first range needs {first_range_pfns} PFNs, range buffer is {range_buflen} bytes"
    )]
    RangeBufLenMismatch {
        /// Declared buffer length.
        range_buflen: u16,
        /// PFNs implied by the first range.
        first_range_pfns: usize,
    },
    /// An initiate contact whose interrupt target form does not match its version.
    #[error("Interrupt target form does not match version {0:?}")]
    InterruptTargetMismatch(VersionNumber),
}

/// Why bytes are not a channel message. Decoding never panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the 8-byte header.
    #[error("Message of {0} bytes is shorter than the header")]
    TooShort(usize),
    /// Longer than a SynIC message payload.
    #[error("Message of {0} bytes exceeds the 240-byte limit")]
    TooLong(usize),
    /// A type Mica does not know (including 0 and the placeholders 18 to 20).
    #[error("Unknown message type {0}")]
    UnknownType(u32),
    /// A fixed-size message of the wrong size.
    #[error("{msgtype:?} message must be {expected} bytes, got {actual}")]
    LengthMismatch {
        /// The type.
        msgtype: MessageType,
        /// Linux's size of the type.
        expected: usize,
        /// Size received.
        actual: usize,
    },
    /// A variable-size message whose size is not its fixed part plus whole words.
    #[error("{msgtype:?} message of {len} bytes is not a fixed part plus 8-byte words")]
    BadVariableLength {
        /// The type.
        msgtype: MessageType,
        /// Size received.
        len: usize,
    },
    /// The fields contradict each other.
    #[error("Invalid message")]
    Invalid(#[from] InvalidMessage),
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The output buffer is too small.
    #[error("Buffer of {available} bytes, message needs {needed}")]
    BufferTooSmall {
        /// Bytes the message needs.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// The message would exceed a SynIC message payload.
    #[error("Message of {0} bytes exceeds the 240-byte limit")]
    TooLarge(usize),
    /// The message is inconsistent (decode would reject it).
    #[error("Invalid message")]
    Invalid(#[from] InvalidMessage),
}

fn header(t: MessageType) -> wire::MessageHeader {
    wire::MessageHeader {
        msgtype: U32::new(t as u32),
        padding: U32::new(0),
    }
}

fn read_words(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            u64::from_le_bytes(w)
        })
        .collect()
}

/// Reads a fixed-size message of exactly `size_of::<T>()` bytes.
fn fixed<T: FromBytes>(t: MessageType, bytes: &[u8]) -> Result<T, DecodeError> {
    T::read_from_bytes(bytes).map_err(|_| DecodeError::LengthMismatch {
        msgtype: t,
        expected: size_of::<T>(),
        actual: bytes.len(),
    })
}

/// Splits a variable-size message into its fixed part and its words.
fn variable<T: FromBytes>(t: MessageType, bytes: &[u8]) -> Result<(T, Vec<u64>), DecodeError> {
    let bad = DecodeError::BadVariableLength {
        msgtype: t,
        len: bytes.len(),
    };
    let (fixed, rest) = T::read_from_prefix(bytes).map_err(|_| bad)?;
    if !rest.len().is_multiple_of(8) {
        return Err(bad);
    }
    Ok((fixed, read_words(rest)))
}

impl ChannelMessage {
    /// The message's type.
    pub fn message_type(&self) -> MessageType {
        match self {
            Self::OfferChannel(_) => MessageType::OfferChannel,
            Self::RescindChannelOffer { .. } => MessageType::RescindChannelOffer,
            Self::RequestOffers => MessageType::RequestOffers,
            Self::AllOffersDelivered => MessageType::AllOffersDelivered,
            Self::OpenChannel(_) => MessageType::OpenChannel,
            Self::OpenChannelResult(_) => MessageType::OpenChannelResult,
            Self::CloseChannel { .. } => MessageType::CloseChannel,
            Self::GpadlHeader(_) => MessageType::GpadlHeader,
            Self::GpadlBody(_) => MessageType::GpadlBody,
            Self::GpadlCreated(_) => MessageType::GpadlCreated,
            Self::GpadlTeardown(_) => MessageType::GpadlTeardown,
            Self::GpadlTorndown { .. } => MessageType::GpadlTorndown,
            Self::RelIdReleased { .. } => MessageType::RelIdReleased,
            Self::InitiateContact(_) => MessageType::InitiateContact,
            Self::VersionResponse(_) => MessageType::VersionResponse,
            Self::Unload => MessageType::Unload,
            Self::UnloadResponse => MessageType::UnloadResponse,
            Self::TlConnectRequest(_) => MessageType::TlConnectRequest,
            Self::ModifyChannel(_) => MessageType::ModifyChannel,
            Self::TlConnectResult(_) => MessageType::TlConnectResult,
            Self::ModifyChannelResponse(_) => MessageType::ModifyChannelResponse,
        }
    }

    /// Size of the encoded message in bytes (Linux's `sizeof` for fixed messages).
    pub fn encoded_len(&self) -> usize {
        use wire as w;
        match self {
            Self::OfferChannel(_) => size_of::<w::OfferChannel>(),
            Self::RescindChannelOffer { .. }
            | Self::CloseChannel { .. }
            | Self::RelIdReleased { .. } => size_of::<w::ChildRelid>(),
            Self::RequestOffers
            | Self::AllOffersDelivered
            | Self::Unload
            | Self::UnloadResponse => size_of::<w::MessageHeader>(),
            Self::OpenChannel(_) => size_of::<w::OpenChannel>(),
            Self::OpenChannelResult(_) => size_of::<w::OpenResult>(),
            Self::GpadlHeader(h) => {
                size_of::<w::GpadlHeader>().saturating_add(h.data.len().saturating_mul(8))
            }
            Self::GpadlBody(b) => {
                size_of::<w::GpadlBody>().saturating_add(b.data.len().saturating_mul(8))
            }
            Self::GpadlCreated(_) => size_of::<w::GpadlCreated>(),
            Self::GpadlTeardown(_) => size_of::<w::GpadlTeardown>(),
            Self::GpadlTorndown { .. } => size_of::<w::GpadlTorndown>(),
            Self::InitiateContact(_) => size_of::<w::InitiateContact>(),
            Self::VersionResponse(_) => size_of::<w::VersionResponse>(),
            Self::TlConnectRequest(_) => size_of::<w::TlConnectRequest>(),
            Self::ModifyChannel(_) => size_of::<w::ModifyChannel>(),
            Self::TlConnectResult(_) => size_of::<w::TlConnectResult>(),
            Self::ModifyChannelResponse(_) => size_of::<w::ModifyChannelResponse>(),
        }
    }

    /// Checks that the message is consistent (what [`ChannelMessage::decode`] checks beyond
    /// sizes).
    pub fn validate(&self) -> Result<(), InvalidMessage> {
        match self {
            Self::GpadlHeader(h) => h.validate(),
            Self::GpadlBody(b) if b.data.is_empty() => Err(InvalidMessage::EmptyGpadlBody),
            Self::InitiateContact(c) => {
                let sint_form = matches!(c.interrupt, InterruptTarget::Sint { .. });
                if sint_form == c.version.uses_message_sint() {
                    Ok(())
                } else {
                    Err(InvalidMessage::InterruptTargetMismatch(c.version))
                }
            }
            _ => Ok(()),
        }
    }

    /// Encodes the message into `buf`; returns the number of bytes written.
    ///
    /// Fails if the message is inconsistent, larger than 240 bytes, or `buf` is too small.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        let len = self.encoded_len();
        if len > MAX_MESSAGE_SIZE {
            return Err(EncodeError::TooLarge(len));
        }
        self.validate()?;
        let available = buf.len();
        let out = buf.get_mut(..len).ok_or(EncodeError::BufferTooSmall {
            needed: len,
            available,
        })?;
        let t = self.message_type();
        let relid = |c: ChannelId| wire::ChildRelid {
            header: header(t),
            child_relid: U32::new(c.0),
        };
        match self {
            Self::OfferChannel(o) => out.copy_from_slice(
                wire::OfferChannel {
                    header: header(t),
                    if_type: o.interface_type.to_bytes(),
                    if_instance: o.instance.to_bytes(),
                    reserved1: U64::new(0),
                    reserved2: U64::new(0),
                    chn_flags: U16::new(o.flags.bits()),
                    mmio_megabytes: U16::new(o.mmio_megabytes),
                    user_def: o.user_defined.0,
                    sub_channel_index: U16::new(o.sub_channel_index),
                    reserved3: U16::new(0),
                    child_relid: U32::new(o.child_relid.0),
                    monitorid: o.monitor_id,
                    monitor_flags: u8::from(o.monitor_allocated),
                    interrupt_flags: U16::new(u16::from(o.dedicated_interrupt)),
                    connection_id: U32::new(o.connection_id),
                }
                .as_bytes(),
            ),
            Self::RescindChannelOffer { child_relid }
            | Self::CloseChannel { child_relid }
            | Self::RelIdReleased { child_relid } => {
                out.copy_from_slice(relid(*child_relid).as_bytes())
            }
            Self::RequestOffers
            | Self::AllOffersDelivered
            | Self::Unload
            | Self::UnloadResponse => out.copy_from_slice(header(t).as_bytes()),
            Self::OpenChannel(o) => out.copy_from_slice(
                wire::OpenChannel {
                    header: header(t),
                    child_relid: U32::new(o.child_relid.0),
                    openid: U32::new(o.open_id),
                    ringbuffer_gpadlhandle: U32::new(o.ring_gpadl.0),
                    target_vp: U32::new(o.target_vp),
                    downstream_ringbuffer_pageoffset: U32::new(o.downstream_page_offset),
                    userdata: o.user_data.0,
                }
                .as_bytes(),
            ),
            Self::OpenChannelResult(r) => out.copy_from_slice(
                wire::OpenResult {
                    header: header(t),
                    child_relid: U32::new(r.child_relid.0),
                    openid: U32::new(r.open_id),
                    status: U32::new(r.status),
                }
                .as_bytes(),
            ),
            Self::GpadlHeader(h) => {
                let fixed = wire::GpadlHeader {
                    header: header(t),
                    child_relid: U32::new(h.child_relid.0),
                    gpadl: U32::new(h.gpadl.0),
                    range_buflen: U16::new(h.range_buflen),
                    rangecount: U16::new(h.range_count),
                };
                write_with_words(out, fixed.as_bytes(), &h.data);
            }
            Self::GpadlBody(b) => {
                let fixed = wire::GpadlBody {
                    header: header(t),
                    msgnumber: U32::new(b.msg_number),
                    gpadl: U32::new(b.gpadl.0),
                };
                write_with_words(out, fixed.as_bytes(), &b.data);
            }
            Self::GpadlCreated(c) => out.copy_from_slice(
                wire::GpadlCreated {
                    header: header(t),
                    child_relid: U32::new(c.child_relid.0),
                    gpadl: U32::new(c.gpadl.0),
                    creation_status: U32::new(c.status),
                }
                .as_bytes(),
            ),
            Self::GpadlTeardown(d) => out.copy_from_slice(
                wire::GpadlTeardown {
                    header: header(t),
                    child_relid: U32::new(d.child_relid.0),
                    gpadl: U32::new(d.gpadl.0),
                }
                .as_bytes(),
            ),
            Self::GpadlTorndown { gpadl } => out.copy_from_slice(
                wire::GpadlTorndown {
                    header: header(t),
                    gpadl: U32::new(gpadl.0),
                }
                .as_bytes(),
            ),
            Self::InitiateContact(c) => {
                let interrupt_page = match c.interrupt {
                    InterruptTarget::Page(gpa) => gpa.to_le_bytes(),
                    InterruptTarget::Sint { sint, vtl } => [sint, vtl, 0, 0, 0, 0, 0, 0],
                };
                out.copy_from_slice(
                    wire::InitiateContact {
                        header: header(t),
                        vmbus_version_requested: U32::new(c.version.0),
                        target_vcpu: U32::new(c.target_vcpu),
                        interrupt_page,
                        monitor_page1: U64::new(c.monitor_page1),
                        monitor_page2: U64::new(c.monitor_page2),
                    }
                    .as_bytes(),
                )
            }
            Self::VersionResponse(r) => out.copy_from_slice(
                wire::VersionResponse {
                    header: header(t),
                    version_supported: u8::from(r.version_supported),
                    connection_state: r.connection_state.0,
                    padding: U16::new(0),
                    msg_conn_id: U32::new(r.message_connection_id),
                }
                .as_bytes(),
            ),
            Self::TlConnectRequest(r) => out.copy_from_slice(
                wire::TlConnectRequest {
                    header: header(t),
                    guest_endpoint_id: r.endpoint_id.to_bytes(),
                    host_service_id: r.service_id.to_bytes(),
                }
                .as_bytes(),
            ),
            Self::ModifyChannel(m) => out.copy_from_slice(
                wire::ModifyChannel {
                    header: header(t),
                    child_relid: U32::new(m.child_relid.0),
                    target_vp: U32::new(m.target_vp),
                }
                .as_bytes(),
            ),
            Self::TlConnectResult(r) => out.copy_from_slice(
                wire::TlConnectResult {
                    header: header(t),
                    endpoint_id: r.endpoint_id.to_bytes(),
                    service_id: r.service_id.to_bytes(),
                    status: U32::new(r.status),
                }
                .as_bytes(),
            ),
            Self::ModifyChannelResponse(m) => out.copy_from_slice(
                wire::ModifyChannelResponse {
                    header: header(t),
                    child_relid: U32::new(m.child_relid.0),
                    status: U32::new(m.status),
                }
                .as_bytes(),
            ),
        }
        Ok(len)
    }

    /// Encodes into a new vector (convenience for tests and hosts with alloc).
    pub fn to_vec(&self) -> Result<Vec<u8>, EncodeError> {
        let mut buf = alloc::vec![0u8; self.encoded_len().min(MAX_MESSAGE_SIZE)];
        let n = self.encode(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Decodes one message: `bytes` is exactly the SynIC payload (`payload_size` bytes).
    ///
    /// Fixed-size messages must have exactly Linux's size; reserved fields are ignored.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_MESSAGE_SIZE {
            return Err(DecodeError::TooLong(bytes.len()));
        }
        let (hdr, _) = wire::MessageHeader::read_from_prefix(bytes)
            .map_err(|_| DecodeError::TooShort(bytes.len()))?;
        let raw = hdr.msgtype.get();
        let t = MessageType::from_raw(raw).ok_or(DecodeError::UnknownType(raw))?;
        let relid = |b: &[u8]| -> Result<ChannelId, DecodeError> {
            let m: wire::ChildRelid = fixed(t, b)?;
            Ok(ChannelId(m.child_relid.get()))
        };
        let msg = match t {
            MessageType::OfferChannel => {
                let o: wire::OfferChannel = fixed(t, bytes)?;
                Self::OfferChannel(OfferChannel {
                    interface_type: Guid::from_bytes(o.if_type),
                    instance: Guid::from_bytes(o.if_instance),
                    flags: OfferFlags::from_bits_retain(o.chn_flags.get()),
                    mmio_megabytes: o.mmio_megabytes.get(),
                    user_defined: UserDefined(o.user_def),
                    sub_channel_index: o.sub_channel_index.get(),
                    child_relid: ChannelId(o.child_relid.get()),
                    monitor_id: o.monitorid,
                    monitor_allocated: o.monitor_flags & 1 != 0,
                    dedicated_interrupt: o.interrupt_flags.get() & 1 != 0,
                    connection_id: o.connection_id.get(),
                })
            }
            MessageType::RescindChannelOffer => Self::RescindChannelOffer {
                child_relid: relid(bytes)?,
            },
            MessageType::CloseChannel => Self::CloseChannel {
                child_relid: relid(bytes)?,
            },
            MessageType::RelIdReleased => Self::RelIdReleased {
                child_relid: relid(bytes)?,
            },
            MessageType::RequestOffers
            | MessageType::AllOffersDelivered
            | MessageType::Unload
            | MessageType::UnloadResponse => {
                let _: wire::MessageHeader = fixed(t, bytes)?;
                match t {
                    MessageType::RequestOffers => Self::RequestOffers,
                    MessageType::AllOffersDelivered => Self::AllOffersDelivered,
                    MessageType::Unload => Self::Unload,
                    _ => Self::UnloadResponse,
                }
            }
            MessageType::OpenChannel => {
                let o: wire::OpenChannel = fixed(t, bytes)?;
                Self::OpenChannel(OpenChannel {
                    child_relid: ChannelId(o.child_relid.get()),
                    open_id: o.openid.get(),
                    ring_gpadl: GpadlId(o.ringbuffer_gpadlhandle.get()),
                    target_vp: o.target_vp.get(),
                    downstream_page_offset: o.downstream_ringbuffer_pageoffset.get(),
                    user_data: UserDefined(o.userdata),
                })
            }
            MessageType::OpenChannelResult => {
                let r: wire::OpenResult = fixed(t, bytes)?;
                Self::OpenChannelResult(OpenResult {
                    child_relid: ChannelId(r.child_relid.get()),
                    open_id: r.openid.get(),
                    status: r.status.get(),
                })
            }
            MessageType::GpadlHeader => {
                let (h, data): (wire::GpadlHeader, _) = variable(t, bytes)?;
                Self::GpadlHeader(GpadlHeader {
                    child_relid: ChannelId(h.child_relid.get()),
                    gpadl: GpadlId(h.gpadl.get()),
                    range_buflen: h.range_buflen.get(),
                    range_count: h.rangecount.get(),
                    data,
                })
            }
            MessageType::GpadlBody => {
                let (b, data): (wire::GpadlBody, _) = variable(t, bytes)?;
                Self::GpadlBody(GpadlBody {
                    msg_number: b.msgnumber.get(),
                    gpadl: GpadlId(b.gpadl.get()),
                    data,
                })
            }
            MessageType::GpadlCreated => {
                let c: wire::GpadlCreated = fixed(t, bytes)?;
                Self::GpadlCreated(GpadlCreated {
                    child_relid: ChannelId(c.child_relid.get()),
                    gpadl: GpadlId(c.gpadl.get()),
                    status: c.creation_status.get(),
                })
            }
            MessageType::GpadlTeardown => {
                let d: wire::GpadlTeardown = fixed(t, bytes)?;
                Self::GpadlTeardown(GpadlTeardown {
                    child_relid: ChannelId(d.child_relid.get()),
                    gpadl: GpadlId(d.gpadl.get()),
                })
            }
            MessageType::GpadlTorndown => {
                let d: wire::GpadlTorndown = fixed(t, bytes)?;
                Self::GpadlTorndown {
                    gpadl: GpadlId(d.gpadl.get()),
                }
            }
            MessageType::InitiateContact => {
                let c: wire::InitiateContact = fixed(t, bytes)?;
                let version = VersionNumber(c.vmbus_version_requested.get());
                let p = c.interrupt_page;
                let interrupt = if version.uses_message_sint() {
                    InterruptTarget::Sint {
                        sint: p[0],
                        vtl: p[1],
                    }
                } else {
                    InterruptTarget::Page(u64::from_le_bytes(p))
                };
                Self::InitiateContact(InitiateContact {
                    version,
                    target_vcpu: c.target_vcpu.get(),
                    interrupt,
                    monitor_page1: c.monitor_page1.get(),
                    monitor_page2: c.monitor_page2.get(),
                })
            }
            MessageType::VersionResponse => {
                let r: wire::VersionResponse = fixed(t, bytes)?;
                Self::VersionResponse(VersionResponse {
                    version_supported: r.version_supported != 0,
                    connection_state: ConnectionState(r.connection_state),
                    message_connection_id: r.msg_conn_id.get(),
                })
            }
            MessageType::TlConnectRequest => {
                let r: wire::TlConnectRequest = fixed(t, bytes)?;
                Self::TlConnectRequest(TlConnectRequest {
                    endpoint_id: Guid::from_bytes(r.guest_endpoint_id),
                    service_id: Guid::from_bytes(r.host_service_id),
                })
            }
            MessageType::ModifyChannel => {
                let m: wire::ModifyChannel = fixed(t, bytes)?;
                Self::ModifyChannel(ModifyChannel {
                    child_relid: ChannelId(m.child_relid.get()),
                    target_vp: m.target_vp.get(),
                })
            }
            MessageType::TlConnectResult => {
                let r: wire::TlConnectResult = fixed(t, bytes)?;
                Self::TlConnectResult(TlConnectResult {
                    endpoint_id: Guid::from_bytes(r.endpoint_id),
                    service_id: Guid::from_bytes(r.service_id),
                    status: r.status.get(),
                })
            }
            MessageType::ModifyChannelResponse => {
                let m: wire::ModifyChannelResponse = fixed(t, bytes)?;
                Self::ModifyChannelResponse(ModifyChannelResponse {
                    child_relid: ChannelId(m.child_relid.get()),
                    status: m.status.get(),
                })
            }
        };
        msg.validate()?;
        Ok(msg)
    }
}

/// Writes a fixed part followed by little-endian words; `out` has exactly the right length.
fn write_with_words(out: &mut [u8], fixed: &[u8], words: &[u64]) {
    let (head, tail) = out.split_at_mut(fixed.len());
    head.copy_from_slice(fixed);
    for (chunk, w) in tail.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
}

/// Why a GPADL could not be split into messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GpadlSplitError {
    /// No range given.
    #[error("GPADL has no range")]
    NoRanges,
    /// More than 65535 ranges.
    #[error("GPADL has more than 65535 ranges")]
    TooManyRanges,
    /// The range buffer exceeds the 16-bit `range_buflen` (8190 pages for one range).
    #[error("GPADL range buffer of {0} bytes exceeds 65535 bytes")]
    TooLarge(usize),
}

/// Splits a GPADL into its header message and as many body messages as the 240-byte limit
/// requires: the header carries up to [`GpadlHeader::MAX_WORDS`] words (one range header and
/// 26 PFNs for a single range, like Linux), each body up to [`GpadlBody::MAX_WORDS`].
///
/// Bodies are numbered 1, 2, ... in `msg_number`.
pub fn gpadl_messages(
    child_relid: ChannelId,
    gpadl: GpadlId,
    ranges: &[GpaRange],
) -> Result<Vec<ChannelMessage>, GpadlSplitError> {
    if ranges.is_empty() {
        return Err(GpadlSplitError::NoRanges);
    }
    let range_count = u16::try_from(ranges.len()).map_err(|_| GpadlSplitError::TooManyRanges)?;
    let words = gpadl::range_buffer(ranges);
    let bytes = words.len().saturating_mul(8);
    let range_buflen = u16::try_from(bytes).map_err(|_| GpadlSplitError::TooLarge(bytes))?;
    let split = words.len().min(GpadlHeader::MAX_WORDS);
    let (first, rest) = words.split_at(split);
    let mut msgs = Vec::with_capacity(1 + rest.len().div_ceil(GpadlBody::MAX_WORDS));
    msgs.push(ChannelMessage::GpadlHeader(GpadlHeader {
        child_relid,
        gpadl,
        range_buflen,
        range_count,
        data: first.to_vec(),
    }));
    for (i, chunk) in rest.chunks(GpadlBody::MAX_WORDS).enumerate() {
        msgs.push(ChannelMessage::GpadlBody(GpadlBody {
            // At most 65535 / 8 words: the index fits a u32.
            msg_number: u32::try_from(i + 1).unwrap_or(u32::MAX),
            gpadl,
            data: chunk.to_vec(),
        }));
    }
    Ok(msgs)
}
