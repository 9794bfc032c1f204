//! VMBus channel-management messages ("channel messages"), wire-compatible with Linux 6.1's
//! drivers/hv.
//!
//! These are the messages a VMBus client (guest) and server (root) exchange over SynIC
//! messages to negotiate a version, learn the offered channels, describe shared memory
//! (GPADLs) and open and close channels. This crate only converts between bytes and typed
//! values:
//!
//! - [`ChannelMessage::decode`] parses one SynIC message payload into a typed message, with a
//!   typed [`DecodeError`] for anything malformed. It never panics, whatever the input.
//! - [`ChannelMessage::encode`] writes a message in Linux's exact layout.
//! - [`wire`] holds the raw layouts (zerocopy, sizes checked at compile time), [`gpadl`] the GPA
//!   range format, [`gpadl_messages`] splits a GPADL into header and body messages.
//!
//! The state machines that use these messages live in `vmbus_core`.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod gpadl;
mod guid;
mod message;
mod version;
pub mod wire;

pub use gpadl::{GpaRange, PAGE_SIZE, RangeError};
pub use guid::{Guid, GuidParseError, device_class};
pub use message::{
    ChannelId, ChannelMessage, ConnectionState, DecodeError, EncodeError, GpadlBody, GpadlCreated,
    GpadlHeader, GpadlId, GpadlSplitError, GpadlTeardown, InitiateContact, InterruptTarget,
    InvalidMessage, MessageType, ModifyChannel, ModifyChannelResponse, OfferChannel, OfferFlags,
    OpenChannel, OpenResult, PIPE_TYPE_BYTE, PIPE_TYPE_MESSAGE, TlConnectRequest, TlConnectResult,
    USER_DEFINED_SIZE, UserDefined, VersionResponse, gpadl_messages, status,
};
pub use version::{SUPPORTED_VERSIONS, VersionNumber};

/// Largest channel message: the payload of one SynIC message (`HV_MESSAGE_PAYLOAD_BYTE_COUNT`),
/// header included.
pub const MAX_MESSAGE_SIZE: usize = 240;

/// Connection ID of the first initiate contact before 5.0, and of every client message then
/// (`VMBUS_MESSAGE_CONNECTION_ID`).
pub const MESSAGE_CONNECTION_ID: u32 = 1;
/// Connection ID of initiate contact from 5.0 on (`VMBUS_MESSAGE_CONNECTION_ID_4`).
pub const MESSAGE_CONNECTION_ID_4: u32 = 4;
/// SINT on which Linux receives VMBus messages (`VMBUS_MESSAGE_SINT`).
pub const MESSAGE_SINT: u8 = 2;
/// First GPADL handle Linux allocates (`next_gpadl_handle` starts at 0xE1E10).
pub const FIRST_LINUX_GPADL: u32 = 0xE1E10;
