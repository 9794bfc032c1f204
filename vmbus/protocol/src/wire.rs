//! Fixed wire layouts of the channel messages, byte for byte as Linux 6.1 declares them
//! (`struct vmbus_channel_*` in include/linux/hyperv.h, all `__packed`).
//!
//! Every struct includes the 8-byte message header, so `size_of` equals Linux's `sizeof`.
//! Fields are explicit little-endian zerocopy integers: alignment 1, no padding, no `unsafe`.
//! These are the raw layouts; the typed messages ([`crate::ChannelMessage`]) are what code uses.

use zerocopy::byteorder::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `struct vmbus_channel_message_header`.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
pub struct MessageHeader {
    /// `enum vmbus_channel_message_type`.
    pub msgtype: U32,
    /// Reserved, zero.
    pub padding: U32,
}

/// `struct vmbus_channel_offer_channel` (with the embedded `struct vmbus_channel_offer`).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
pub struct OfferChannel {
    /// Header, type 1.
    pub header: MessageHeader,
    /// Interface (device class) GUID.
    pub if_type: [u8; 16],
    /// Instance GUID.
    pub if_instance: [u8; 16],
    /// Reserved.
    pub reserved1: U64,
    /// Reserved.
    pub reserved2: U64,
    /// `VMBUS_CHANNEL_*` flags.
    pub chn_flags: U16,
    /// MMIO space the device needs, in MiB.
    pub mmio_megabytes: U16,
    /// User-defined bytes; in pipe mode the first four hold the pipe mode.
    pub user_def: [u8; 120],
    /// 0 for a primary channel, else the sub-channel index.
    pub sub_channel_index: U16,
    /// Reserved.
    pub reserved3: U16,
    /// Relative channel ID assigned by the server.
    pub child_relid: U32,
    /// Monitor ID (valid if `monitor_flags` bit 0 is set).
    pub monitorid: u8,
    /// Bit 0: monitor allocated; bits 1..7 reserved.
    pub monitor_flags: u8,
    /// Bit 0: dedicated interrupt; bits 1..15 reserved.
    pub interrupt_flags: U16,
    /// Connection ID the guest signals the host with.
    pub connection_id: U32,
}

/// A message whose only field is a relid: `vmbus_channel_rescind_offer`,
/// `vmbus_channel_close_channel` and `vmbus_channel_relid_released`.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
pub struct ChildRelid {
    /// Header, type 2, 7 or 13.
    pub header: MessageHeader,
    /// The channel.
    pub child_relid: U32,
}

/// `struct vmbus_channel_open_channel`.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
pub struct OpenChannel {
    /// Header, type 5.
    pub header: MessageHeader,
    /// The channel to open.
    pub child_relid: U32,
    /// Echoed in the open result.
    pub openid: U32,
    /// GPADL holding both ring buffers.
    pub ringbuffer_gpadlhandle: U32,
    /// VP to interrupt for host-to-guest traffic.
    pub target_vp: U32,
    /// Page offset of the host-to-guest ring inside the GPADL.
    pub downstream_ringbuffer_pageoffset: U32,
    /// Passed to the server endpoint.
    pub userdata: [u8; 120],
}

/// `struct vmbus_channel_open_result`.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
pub struct OpenResult {
    /// Header, type 6.
    pub header: MessageHeader,
    /// The channel.
    pub child_relid: U32,
    /// The open ID of the request.
    pub openid: U32,
    /// 0 on success, else an NTSTATUS.
    pub status: U32,
}

/// Fixed part of `struct vmbus_channel_gpadl_header`; the range buffer follows.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
pub struct GpadlHeader {
    /// Header, type 8.
    pub header: MessageHeader,
    /// The channel the GPADL belongs to.
    pub child_relid: U32,
    /// GPADL handle chosen by the client.
    pub gpadl: U32,
    /// Size in bytes of the whole range buffer (all ranges, across all messages).
    pub range_buflen: U16,
    /// Number of ranges.
    pub rangecount: U16,
}

/// Fixed part of `struct vmbus_channel_gpadl_body`; PFNs follow.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
pub struct GpadlBody {
    /// Header, type 9.
    pub header: MessageHeader,
    /// Sequence number (Linux leaves it zero).
    pub msgnumber: U32,
    /// GPADL handle of the header this continues.
    pub gpadl: U32,
}

/// `struct vmbus_channel_gpadl_created`.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
pub struct GpadlCreated {
    /// Header, type 10.
    pub header: MessageHeader,
    /// The channel.
    pub child_relid: U32,
    /// The GPADL.
    pub gpadl: U32,
    /// 0 on success.
    pub creation_status: U32,
}

/// `struct vmbus_channel_gpadl_teardown`.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
pub struct GpadlTeardown {
    /// Header, type 11.
    pub header: MessageHeader,
    /// The channel.
    pub child_relid: U32,
    /// The GPADL.
    pub gpadl: U32,
}

/// `struct vmbus_channel_gpadl_torndown`.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
pub struct GpadlTorndown {
    /// Header, type 12.
    pub header: MessageHeader,
    /// The GPADL.
    pub gpadl: U32,
}

/// `struct vmbus_channel_initiate_contact`.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
pub struct InitiateContact {
    /// Header, type 14.
    pub header: MessageHeader,
    /// Requested version.
    pub vmbus_version_requested: U32,
    /// VP the server should send its messages to.
    pub target_vcpu: U32,
    /// Before 5.0: the interrupt page GPA. From 5.0: byte 0 message SINT, byte 1 VTL,
    /// six reserved bytes.
    pub interrupt_page: [u8; 8],
    /// First monitor page GPA (server to client).
    pub monitor_page1: U64,
    /// Second monitor page GPA (client to server).
    pub monitor_page2: U64,
}

/// `struct vmbus_channel_version_response`.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
pub struct VersionResponse {
    /// Header, type 15.
    pub header: MessageHeader,
    /// Non-zero if the requested version is accepted.
    pub version_supported: u8,
    /// Connection state.
    pub connection_state: u8,
    /// Reserved.
    pub padding: U16,
    /// Message connection ID for later messages (5.0+).
    pub msg_conn_id: U32,
}

/// `struct vmbus_channel_tl_connect_request` (hv_sock connect).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
pub struct TlConnectRequest {
    /// Header, type 21.
    pub header: MessageHeader,
    /// Guest endpoint (service) ID.
    pub guest_endpoint_id: [u8; 16],
    /// Host service ID.
    pub host_service_id: [u8; 16],
}

/// The hv_sock connect result (type 23). Linux 6.1 receives and ignores it and declares no
/// struct; the layout is Hyper-V's: endpoint GUID, service GUID, NTSTATUS.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
pub struct TlConnectResult {
    /// Header, type 23.
    pub header: MessageHeader,
    /// Guest endpoint ID of the request.
    pub endpoint_id: [u8; 16],
    /// Host service ID of the request.
    pub service_id: [u8; 16],
    /// 0 on success, else an NTSTATUS.
    pub status: U32,
}

/// `struct vmbus_channel_modifychannel`.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
pub struct ModifyChannel {
    /// Header, type 22.
    pub header: MessageHeader,
    /// The channel.
    pub child_relid: U32,
    /// New target VP.
    pub target_vp: U32,
}

/// `struct vmbus_channel_modifychannel_response`.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
pub struct ModifyChannelResponse {
    /// Header, type 24.
    pub header: MessageHeader,
    /// The channel.
    pub child_relid: U32,
    /// 0 on success.
    pub status: U32,
}

// Sizes as `sizeof` gives them for Linux 6.1's packed structs.
const _: () = assert!(size_of::<MessageHeader>() == 8);
const _: () = assert!(size_of::<OfferChannel>() == 196);
const _: () = assert!(size_of::<ChildRelid>() == 12);
const _: () = assert!(size_of::<OpenChannel>() == 148);
const _: () = assert!(size_of::<OpenResult>() == 20);
const _: () = assert!(size_of::<GpadlHeader>() == 20);
const _: () = assert!(size_of::<GpadlBody>() == 16);
const _: () = assert!(size_of::<GpadlCreated>() == 20);
const _: () = assert!(size_of::<GpadlTeardown>() == 16);
const _: () = assert!(size_of::<GpadlTorndown>() == 12);
const _: () = assert!(size_of::<InitiateContact>() == 40);
const _: () = assert!(size_of::<VersionResponse>() == 16);
const _: () = assert!(size_of::<TlConnectRequest>() == 40);
const _: () = assert!(size_of::<TlConnectResult>() == 44);
const _: () = assert!(size_of::<ModifyChannel>() == 16);
const _: () = assert!(size_of::<ModifyChannelResponse>() == 16);
// The largest fixed message must fit in one SynIC message.
const _: () = assert!(size_of::<OfferChannel>() <= crate::MAX_MESSAGE_SIZE);

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    /// Offsets computed by hand from the packed C declarations in include/linux/hyperv.h.
    #[test]
    fn offer_field_offsets_match_linux() {
        assert_eq!(offset_of!(OfferChannel, if_type), 8);
        assert_eq!(offset_of!(OfferChannel, if_instance), 24);
        assert_eq!(offset_of!(OfferChannel, reserved1), 40);
        assert_eq!(offset_of!(OfferChannel, chn_flags), 56);
        assert_eq!(offset_of!(OfferChannel, mmio_megabytes), 58);
        assert_eq!(offset_of!(OfferChannel, user_def), 60);
        assert_eq!(offset_of!(OfferChannel, sub_channel_index), 180);
        assert_eq!(offset_of!(OfferChannel, child_relid), 184);
        assert_eq!(offset_of!(OfferChannel, monitorid), 188);
        assert_eq!(offset_of!(OfferChannel, monitor_flags), 189);
        assert_eq!(offset_of!(OfferChannel, interrupt_flags), 190);
        assert_eq!(offset_of!(OfferChannel, connection_id), 192);
    }

    #[test]
    fn other_field_offsets_match_linux() {
        assert_eq!(offset_of!(OpenChannel, child_relid), 8);
        assert_eq!(
            offset_of!(OpenChannel, downstream_ringbuffer_pageoffset),
            24
        );
        assert_eq!(offset_of!(OpenChannel, userdata), 28);
        assert_eq!(offset_of!(GpadlHeader, range_buflen), 16);
        assert_eq!(offset_of!(GpadlHeader, rangecount), 18);
        assert_eq!(offset_of!(GpadlBody, gpadl), 12);
        assert_eq!(offset_of!(InitiateContact, target_vcpu), 12);
        assert_eq!(offset_of!(InitiateContact, interrupt_page), 16);
        assert_eq!(offset_of!(InitiateContact, monitor_page1), 24);
        assert_eq!(offset_of!(InitiateContact, monitor_page2), 32);
        assert_eq!(offset_of!(VersionResponse, connection_state), 9);
        assert_eq!(offset_of!(VersionResponse, msg_conn_id), 12);
        assert_eq!(offset_of!(GpadlCreated, creation_status), 16);
        assert_eq!(offset_of!(TlConnectRequest, host_service_id), 24);
    }
}
