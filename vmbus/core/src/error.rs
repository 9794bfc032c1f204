//! The protocol error type shared by server and client.

use vmbus_protocol::{
    ChannelId, DecodeError, GpadlId, GpadlSplitError, MessageType, RangeError, VersionNumber,
};

/// Where a connection is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ConnectionPhase {
    /// No version negotiated (initially, and after unload).
    Disconnected,
    /// Client: initiate contact sent, waiting for the version response.
    Contacting,
    /// Version negotiated, offers not yet (completely) delivered.
    Connected,
    /// All offers delivered: channels can be used.
    Ready,
    /// Client: unload sent, waiting for the unload response.
    Unloading,
}

/// Where a channel is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ChannelPhase {
    /// Offered and closed.
    Offered,
    /// Open requested, result not yet given.
    Opening,
    /// Open.
    Open,
    /// Server: close received, the host has not yet confirmed that the VSP let go of the ring.
    Closing,
}

/// A message or call that is not legal now. The state machine is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The bytes are not a channel message.
    #[error("Malformed channel message")]
    Decode(#[from] DecodeError),
    /// A message type this side never receives.
    #[error("{0:?} is never sent to this side")]
    UnexpectedMessage(MessageType),
    /// A message or call not allowed in the connection's phase.
    #[error("{what} not allowed while {phase:?}")]
    WrongConnectionPhase {
        /// The message or call.
        what: &'static str,
        /// The current phase.
        phase: ConnectionPhase,
    },
    /// No such channel (or not visible to the client yet).
    #[error("Unknown channel {0:?}")]
    UnknownChannel(ChannelId),
    /// A message or call not allowed in the channel's phase.
    #[error("{what} not allowed on channel {relid:?} while {phase:?}")]
    WrongChannelPhase {
        /// The message or call.
        what: &'static str,
        /// The channel.
        relid: ChannelId,
        /// Its phase.
        phase: ChannelPhase,
    },
    /// The channel was rescinded: only close, GPADL teardown and relid release remain.
    #[error("Channel {0:?} is rescinded")]
    ChannelRescinded(ChannelId),
    /// Relid release of a channel that was not rescinded.
    #[error("Channel {0:?} was not rescinded")]
    NotRescinded(ChannelId),
    /// The same relid offered twice.
    #[error("Channel {0:?} offered twice")]
    DuplicateOffer(ChannelId),
    /// No relid left under the configured channel limit.
    #[error("Too many channels")]
    TooManyChannels,
    /// No such GPADL.
    #[error("Unknown GPADL {0:?}")]
    UnknownGpadl(GpadlId),
    /// A GPADL ID already in use.
    #[error("GPADL {0:?} already exists")]
    DuplicateGpadl(GpadlId),
    /// A GPADL named with a channel it does not belong to.
    #[error("GPADL {gpadl:?} does not belong to channel {relid:?}")]
    GpadlWrongChannel {
        /// The GPADL.
        gpadl: GpadlId,
        /// The channel named.
        relid: ChannelId,
    },
    /// A GPADL body without a header in progress for that GPADL.
    #[error("GPADL body for {0:?} without a header in progress")]
    GpadlBodyWithoutHeader(GpadlId),
    /// GPADL bodies carrying more words than the header announced.
    #[error("GPADL {gpadl:?} bodies exceed the announced {expected} words")]
    GpadlOverflow {
        /// The GPADL.
        gpadl: GpadlId,
        /// Words announced by the header.
        expected: usize,
    },
    /// A GPADL used before it is complete and created.
    #[error("GPADL {0:?} is not created")]
    GpadlNotCreated(GpadlId),
    /// A GPADL whose teardown is already under way.
    #[error("GPADL {0:?} is being torn down")]
    GpadlTeardownPending(GpadlId),
    /// Teardown of a GPADL an open (or opening) channel uses as its ring.
    #[error("GPADL {0:?} is in use by an open channel")]
    GpadlInUse(GpadlId),
    /// A GPADL with more pages than one GPADL may have.
    #[error("GPADL of {pages} pages exceeds the limit of {limit}")]
    GpadlTooLarge {
        /// Pages requested.
        pages: usize,
        /// Per-GPADL limit.
        limit: usize,
    },
    /// The GPADL limits of the connection (count or total pages) are reached.
    #[error("GPADL resources exhausted")]
    GpadlResourcesExhausted,
    /// A GPADL that cannot be split into messages.
    #[error("GPADL cannot be described")]
    GpadlSplit(#[from] GpadlSplitError),
    /// Invalid GPA ranges given to the client.
    #[error("Invalid GPA ranges")]
    InvalidRanges(#[from] RangeError),
    /// An open result whose open ID does not match the request.
    #[error("Open result for {relid:?} has open ID {got}, expected {expected}")]
    OpenIdMismatch {
        /// The channel.
        relid: ChannelId,
        /// Open ID of the request.
        expected: u32,
        /// Open ID received.
        got: u32,
    },
    /// A version the server does not speak, requested by the host.
    #[error("Version {0:?} is not supported")]
    UnsupportedVersion(VersionNumber),
}
