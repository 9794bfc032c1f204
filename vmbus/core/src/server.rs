//! The VMBus server: the root partition's side of the channel protocol (Hyper-V's role).
//!
//! # Life of a connection
//! `Disconnected` --initiate contact (supported version)--> `Connected` --request offers-->
//! `Ready` (every offer sent, then all-offers-delivered) --unload--> `Disconnected`.
//! An unsupported version is answered "not supported" and leaves the server `Disconnected`.
//!
//! # Life of a channel (all in `Ready`)
//! `Offered` --open--> `Opening` --[`Server::complete_open`]--> `Open` (or back to `Offered` on
//! failure) --close--> `Closing` --[`Server::complete_close`]--> `Offered`.
//! [`Server::rescind`] marks a channel rescinded in any phase; the client then closes it,
//! tears its GPADLs down and releases the relid, which removes the channel.
//!
//! # GPADLs
//! A GPADL belongs to one channel. Its header may be followed by bodies until the announced
//! range buffer is complete; then it is created (or refused with a failure status if the ranges
//! are inconsistent). A GPADL that an `Opening`/`Open` channel uses as its ring cannot be torn
//! down; while the channel is `Closing`, the teardown waits for [`Server::complete_close`].
//! Sizes are bounded by [`ServerConfig`].
//!
//! Any [`ProtocolError`] leaves the server unchanged.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use vmbus_protocol::{
    ChannelId, ChannelMessage, ConnectionState, GpaRange, GpadlBody, GpadlCreated, GpadlHeader,
    GpadlId, GpadlTeardown, Guid, InitiateContact, InterruptTarget, MESSAGE_CONNECTION_ID_4,
    ModifyChannel, ModifyChannelResponse, OfferChannel, OfferFlags, OpenChannel, OpenResult,
    SUPPORTED_VERSIONS, TlConnectRequest, TlConnectResult, UserDefined, VersionNumber,
    VersionResponse, gpadl, status,
};

use crate::{Actions, ChannelPhase, ConnectionPhase, ProtocolError};

/// Limits and identity of a server.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ServerConfig {
    /// Versions accepted, any order.
    pub versions: Vec<VersionNumber>,
    /// Message connection ID returned in the version response (used by 5.0+ clients for all
    /// later messages).
    pub message_connection_id: u32,
    /// Most channels offered at once (relids run from 1 to this).
    pub max_channels: u32,
    /// Most pages in one GPADL.
    pub max_gpadl_pages: usize,
    /// Most pages in all GPADLs of the connection together (created or being assembled).
    pub max_total_gpadl_pages: usize,
    /// Most GPADLs of the connection (created or being assembled).
    pub max_gpadls: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            versions: SUPPORTED_VERSIONS.to_vec(),
            message_connection_id: MESSAGE_CONNECTION_ID_4,
            max_channels: 256,
            // The most one 16-bit range buffer can describe (one range).
            max_gpadl_pages: 8190,
            // 1 GiB of shared memory.
            max_total_gpadl_pages: 262_144,
            max_gpadls: 1024,
        }
    }
}

/// What the host offers: the fields of an offer the server does not assign itself.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct OfferParams {
    /// Device class.
    pub interface_type: Guid,
    /// Device instance.
    pub instance: Guid,
    /// Channel flags.
    pub flags: OfferFlags,
    /// MMIO space in MiB.
    pub mmio_megabytes: u16,
    /// User-defined bytes.
    pub user_defined: UserDefined,
    /// 0 for a primary channel.
    pub sub_channel_index: u16,
    /// Monitor ID, if the channel uses monitored notification.
    pub monitor_id: Option<u8>,
    /// Whether the channel has a dedicated interrupt.
    pub dedicated_interrupt: bool,
    /// Connection ID the guest signals the host with.
    pub connection_id: u32,
}

impl OfferParams {
    /// A plain offer of a device class and instance, signalled on `connection_id`.
    pub fn new(interface_type: Guid, instance: Guid, connection_id: u32) -> Self {
        Self {
            interface_type,
            instance,
            flags: OfferFlags::empty(),
            mmio_megabytes: 0,
            user_defined: UserDefined::default(),
            sub_channel_index: 0,
            monitor_id: None,
            dedicated_interrupt: false,
            connection_id,
        }
    }

    fn to_message(self, relid: ChannelId) -> OfferChannel {
        OfferChannel {
            interface_type: self.interface_type,
            instance: self.instance,
            flags: self.flags,
            mmio_megabytes: self.mmio_megabytes,
            user_defined: self.user_defined,
            sub_channel_index: self.sub_channel_index,
            child_relid: relid,
            monitor_id: self.monitor_id.unwrap_or(0),
            monitor_allocated: self.monitor_id.is_some(),
            dedicated_interrupt: self.dedicated_interrupt,
            connection_id: self.connection_id,
        }
    }
}

/// Where the client wants its messages and monitor pages, from its initiate contact.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ClientInfo {
    /// VP to deliver server messages to.
    pub target_vcpu: u32,
    /// Interrupt page or SINT/VTL.
    pub interrupt: InterruptTarget,
    /// First monitor page GPA.
    pub monitor_page1: u64,
    /// Second monitor page GPA.
    pub monitor_page2: u64,
}

/// A channel open the host must carry out, then answer with [`Server::complete_open`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct OpenRequest {
    /// The channel.
    pub relid: ChannelId,
    /// The ring GPADL.
    pub ring_gpadl: GpadlId,
    /// Its pages: the guest-to-host ring first, the host-to-guest ring from
    /// `downstream_page_offset` on.
    pub ring: Vec<GpaRange>,
    /// Page index of the host-to-guest ring in the GPADL.
    pub downstream_page_offset: u32,
    /// VP to interrupt for host-to-guest traffic.
    pub target_vp: u32,
    /// User data of the open request.
    pub user_data: UserDefined,
}

/// What the server asks its host to do.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ServerAction {
    /// Send this message to the client.
    Send(ChannelMessage),
    /// A version was negotiated.
    Connected {
        /// The version.
        version: VersionNumber,
        /// Where the client receives messages.
        client: ClientInfo,
    },
    /// Connect the channel's VSP to the ring, then call [`Server::complete_open`].
    OpenChannel(OpenRequest),
    /// Disconnect the channel's VSP from its ring. After a client close, call
    /// [`Server::complete_close`] when done; after unload nothing more is needed.
    CloseChannel {
        /// The channel.
        relid: ChannelId,
    },
    /// A GPADL is created; [`Server::gpadl`] gives its pages.
    GpadlCreated {
        /// Its channel.
        relid: ChannelId,
        /// The GPADL.
        gpadl: GpadlId,
    },
    /// A GPADL is gone: unmap its pages.
    GpadlTornDown {
        /// Its channel.
        relid: ChannelId,
        /// The GPADL.
        gpadl: GpadlId,
    },
    /// The client moved the channel's interrupt to another VP.
    ChannelModified {
        /// The channel.
        relid: ChannelId,
        /// The new VP.
        target_vp: u32,
    },
    /// A rescinded channel is gone; its relid may be reused.
    ChannelReleased {
        /// The channel.
        relid: ChannelId,
    },
    /// The client unloaded: every channel is closed, every GPADL gone.
    Unloaded,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Connection {
    Disconnected,
    Connected { version: VersionNumber },
    Ready { version: VersionNumber },
}

#[derive(Clone, PartialEq, Eq, Debug)]
enum ChannelState {
    Offered,
    Opening {
        open_id: u32,
        ring_gpadl: GpadlId,
        target_vp: u32,
    },
    Open {
        ring_gpadl: GpadlId,
        target_vp: u32,
    },
    Closing {
        ring_gpadl: GpadlId,
    },
}

impl ChannelState {
    fn phase(&self) -> ChannelPhase {
        match self {
            Self::Offered => ChannelPhase::Offered,
            Self::Opening { .. } => ChannelPhase::Opening,
            Self::Open { .. } => ChannelPhase::Open,
            Self::Closing { .. } => ChannelPhase::Closing,
        }
    }

    fn ring(&self) -> Option<GpadlId> {
        match *self {
            Self::Offered => None,
            Self::Opening { ring_gpadl, .. }
            | Self::Open { ring_gpadl, .. }
            | Self::Closing { ring_gpadl } => Some(ring_gpadl),
        }
    }
}

#[derive(Clone, PartialEq, Eq, Debug)]
struct Channel {
    offer: OfferParams,
    state: ChannelState,
    rescinded: bool,
}

/// Where a GPADL is in its life, on the server.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GpadlPhase {
    /// Header received, bodies outstanding.
    Assembling,
    /// Complete and created.
    Created,
    /// Teardown requested while its channel is closing; answered at close completion.
    TeardownPending,
}

#[derive(Clone, PartialEq, Eq, Debug)]
enum GpadlState {
    Assembling {
        range_count: u16,
        total_words: usize,
        words: Vec<u64>,
    },
    Created {
        ranges: Vec<GpaRange>,
    },
    TeardownPending {
        ranges: Vec<GpaRange>,
    },
}

#[derive(Clone, PartialEq, Eq, Debug)]
struct Gpadl {
    relid: ChannelId,
    pages: usize,
    state: GpadlState,
}

impl Gpadl {
    fn phase(&self) -> GpadlPhase {
        match self.state {
            GpadlState::Assembling { .. } => GpadlPhase::Assembling,
            GpadlState::Created { .. } => GpadlPhase::Created,
            GpadlState::TeardownPending { .. } => GpadlPhase::TeardownPending,
        }
    }
}

/// The server state machine. `Clone + Eq` so tests can check that errors change nothing.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Server {
    config: ServerConfig,
    connection: Connection,
    channels: BTreeMap<ChannelId, Channel>,
    gpadls: BTreeMap<GpadlId, Gpadl>,
    total_pages: usize,
}

type Result<T> = core::result::Result<T, ProtocolError>;

impl Server {
    /// A disconnected server with no channel.
    pub fn new(config: ServerConfig) -> Self {
        Self {
            config,
            connection: Connection::Disconnected,
            channels: BTreeMap::new(),
            gpadls: BTreeMap::new(),
            total_pages: 0,
        }
    }

    /// The connection's phase.
    pub fn connection_phase(&self) -> ConnectionPhase {
        match self.connection {
            Connection::Disconnected => ConnectionPhase::Disconnected,
            Connection::Connected { .. } => ConnectionPhase::Connected,
            Connection::Ready { .. } => ConnectionPhase::Ready,
        }
    }

    /// The negotiated version, if connected.
    pub fn version(&self) -> Option<VersionNumber> {
        match self.connection {
            Connection::Disconnected => None,
            Connection::Connected { version } | Connection::Ready { version } => Some(version),
        }
    }

    /// A channel's phase and whether it is rescinded.
    pub fn channel_phase(&self, relid: ChannelId) -> Option<(ChannelPhase, bool)> {
        self.channels
            .get(&relid)
            .map(|c| (c.state.phase(), c.rescinded))
    }

    /// The relids of all channels.
    pub fn channels(&self) -> impl Iterator<Item = ChannelId> + '_ {
        self.channels.keys().copied()
    }

    /// A GPADL's phase.
    pub fn gpadl_phase(&self, gpadl: GpadlId) -> Option<GpadlPhase> {
        self.gpadls.get(&gpadl).map(Gpadl::phase)
    }

    /// A created GPADL's channel and ranges.
    pub fn gpadl(&self, gpadl: GpadlId) -> Option<(ChannelId, &[GpaRange])> {
        let g = self.gpadls.get(&gpadl)?;
        match &g.state {
            GpadlState::Created { ranges } | GpadlState::TeardownPending { ranges } => {
                Some((g.relid, ranges))
            }
            GpadlState::Assembling { .. } => None,
        }
    }

    /// Pages held by all GPADLs (created or being assembled).
    pub fn total_gpadl_pages(&self) -> usize {
        self.total_pages
    }

    // ---- host calls ---------------------------------------------------------------------

    /// Offers a channel; returns its relid. If the client already has its offers, the offer
    /// is sent now, else with the others on request-offers.
    pub fn offer(&mut self, params: OfferParams) -> Result<(ChannelId, Actions<ServerAction>)> {
        let relid = (1..=self.config.max_channels)
            .map(ChannelId)
            .find(|r| !self.channels.contains_key(r))
            .ok_or(ProtocolError::TooManyChannels)?;
        self.channels.insert(
            relid,
            Channel {
                offer: params,
                state: ChannelState::Offered,
                rescinded: false,
            },
        );
        let mut actions = Actions::new();
        if matches!(self.connection, Connection::Ready { .. }) {
            actions.push(ServerAction::Send(ChannelMessage::OfferChannel(
                params.to_message(relid),
            )));
        }
        Ok((relid, actions))
    }

    /// Withdraws a channel. If the client knows it, it is told and the channel stays until the
    /// client releases the relid; otherwise the channel is removed now.
    pub fn rescind(&mut self, relid: ChannelId) -> Result<Actions<ServerAction>> {
        let visible = matches!(self.connection, Connection::Ready { .. });
        let ch = self
            .channels
            .get_mut(&relid)
            .ok_or(ProtocolError::UnknownChannel(relid))?;
        if ch.rescinded {
            return Err(ProtocolError::ChannelRescinded(relid));
        }
        let mut actions = Actions::new();
        if visible {
            ch.rescinded = true;
            actions.push(ServerAction::Send(ChannelMessage::RescindChannelOffer {
                child_relid: relid,
            }));
        } else {
            // Not connected: the client has no state for it (unload cleared everything).
            self.channels.remove(&relid);
            actions.push(ServerAction::ChannelReleased { relid });
        }
        Ok(actions)
    }

    /// Answers an open: `status` is [`status::SUCCESS`] once the VSP is connected to the
    /// ring, else an NTSTATUS and the channel goes back to `Offered`.
    pub fn complete_open(
        &mut self,
        relid: ChannelId,
        result: u32,
    ) -> Result<Actions<ServerAction>> {
        let ch = self
            .channels
            .get_mut(&relid)
            .ok_or(ProtocolError::UnknownChannel(relid))?;
        let ChannelState::Opening {
            open_id,
            ring_gpadl,
            target_vp,
        } = ch.state
        else {
            return Err(ProtocolError::WrongChannelPhase {
                what: "complete_open",
                relid,
                phase: ch.state.phase(),
            });
        };
        ch.state = if result == status::SUCCESS {
            ChannelState::Open {
                ring_gpadl,
                target_vp,
            }
        } else {
            ChannelState::Offered
        };
        let mut actions = Actions::new();
        actions.push(ServerAction::Send(ChannelMessage::OpenChannelResult(
            OpenResult {
                child_relid: relid,
                open_id,
                status: result,
            },
        )));
        Ok(actions)
    }

    /// Confirms that the VSP let go of a closing channel's ring; answers the teardowns that
    /// waited for it.
    pub fn complete_close(&mut self, relid: ChannelId) -> Result<Actions<ServerAction>> {
        let ch = self
            .channels
            .get_mut(&relid)
            .ok_or(ProtocolError::UnknownChannel(relid))?;
        if !matches!(ch.state, ChannelState::Closing { .. }) {
            return Err(ProtocolError::WrongChannelPhase {
                what: "complete_close",
                relid,
                phase: ch.state.phase(),
            });
        }
        ch.state = ChannelState::Offered;
        let pending: Vec<GpadlId> = self
            .gpadls
            .iter()
            .filter(|(_, g)| g.relid == relid && g.phase() == GpadlPhase::TeardownPending)
            .map(|(id, _)| *id)
            .collect();
        let mut actions = Actions::new();
        for gpadl in pending {
            self.remove_gpadl(gpadl);
            actions.push(ServerAction::Send(ChannelMessage::GpadlTorndown { gpadl }));
            actions.push(ServerAction::GpadlTornDown { relid, gpadl });
        }
        Ok(actions)
    }

    // ---- client messages ----------------------------------------------------------------

    /// Decodes and handles one message from the client.
    pub fn handle_bytes(&mut self, bytes: &[u8]) -> Result<Actions<ServerAction>> {
        let msg = ChannelMessage::decode(bytes)?;
        self.handle(msg)
    }

    /// Handles one message from the client.
    pub fn handle(&mut self, msg: ChannelMessage) -> Result<Actions<ServerAction>> {
        match msg {
            ChannelMessage::InitiateContact(c) => self.on_initiate_contact(c),
            ChannelMessage::RequestOffers => self.on_request_offers(),
            ChannelMessage::Unload => self.on_unload(),
            ChannelMessage::GpadlHeader(h) => self.on_gpadl_header(h),
            ChannelMessage::GpadlBody(b) => self.on_gpadl_body(b),
            ChannelMessage::GpadlTeardown(t) => self.on_gpadl_teardown(t),
            ChannelMessage::OpenChannel(o) => self.on_open(o),
            ChannelMessage::CloseChannel { child_relid } => self.on_close(child_relid),
            ChannelMessage::RelIdReleased { child_relid } => self.on_relid_released(child_relid),
            ChannelMessage::ModifyChannel(m) => self.on_modify(m),
            ChannelMessage::TlConnectRequest(r) => self.on_tl_connect(r),
            other => Err(ProtocolError::UnexpectedMessage(other.message_type())),
        }
    }

    fn require_ready(&self, what: &'static str) -> Result<VersionNumber> {
        match self.connection {
            Connection::Ready { version } => Ok(version),
            _ => Err(ProtocolError::WrongConnectionPhase {
                what,
                phase: self.connection_phase(),
            }),
        }
    }

    fn channel(&self, relid: ChannelId) -> Result<&Channel> {
        self.channels
            .get(&relid)
            .ok_or(ProtocolError::UnknownChannel(relid))
    }

    fn on_initiate_contact(&mut self, c: InitiateContact) -> Result<Actions<ServerAction>> {
        if self.connection != Connection::Disconnected {
            return Err(ProtocolError::WrongConnectionPhase {
                what: "initiate contact",
                phase: self.connection_phase(),
            });
        }
        let mut actions = Actions::new();
        let supported = self.config.versions.contains(&c.version);
        actions.push(ServerAction::Send(ChannelMessage::VersionResponse(
            VersionResponse {
                version_supported: supported,
                connection_state: ConnectionState::SUCCESSFUL,
                message_connection_id: if supported {
                    self.config.message_connection_id
                } else {
                    0
                },
            },
        )));
        if supported {
            self.connection = Connection::Connected { version: c.version };
            actions.push(ServerAction::Connected {
                version: c.version,
                client: ClientInfo {
                    target_vcpu: c.target_vcpu,
                    interrupt: c.interrupt,
                    monitor_page1: c.monitor_page1,
                    monitor_page2: c.monitor_page2,
                },
            });
        }
        Ok(actions)
    }

    fn on_request_offers(&mut self) -> Result<Actions<ServerAction>> {
        let Connection::Connected { version } = self.connection else {
            return Err(ProtocolError::WrongConnectionPhase {
                what: "request offers",
                phase: self.connection_phase(),
            });
        };
        let mut actions = Actions::new();
        for (relid, ch) in &self.channels {
            actions.push(ServerAction::Send(ChannelMessage::OfferChannel(
                ch.offer.to_message(*relid),
            )));
        }
        actions.push(ServerAction::Send(ChannelMessage::AllOffersDelivered));
        self.connection = Connection::Ready { version };
        Ok(actions)
    }

    fn on_unload(&mut self) -> Result<Actions<ServerAction>> {
        if self.connection == Connection::Disconnected {
            return Err(ProtocolError::WrongConnectionPhase {
                what: "unload",
                phase: ConnectionPhase::Disconnected,
            });
        }
        let mut actions = Actions::new();
        for (relid, ch) in &mut self.channels {
            if ch.state != ChannelState::Offered {
                actions.push(ServerAction::CloseChannel { relid: *relid });
                ch.state = ChannelState::Offered;
            }
        }
        for (gpadl, g) in core::mem::take(&mut self.gpadls) {
            actions.push(ServerAction::GpadlTornDown {
                relid: g.relid,
                gpadl,
            });
        }
        self.total_pages = 0;
        let rescinded: Vec<ChannelId> = self
            .channels
            .iter()
            .filter(|(_, c)| c.rescinded)
            .map(|(r, _)| *r)
            .collect();
        for relid in rescinded {
            self.channels.remove(&relid);
            actions.push(ServerAction::ChannelReleased { relid });
        }
        self.connection = Connection::Disconnected;
        actions.push(ServerAction::Send(ChannelMessage::UnloadResponse));
        actions.push(ServerAction::Unloaded);
        Ok(actions)
    }

    fn on_gpadl_header(&mut self, h: GpadlHeader) -> Result<Actions<ServerAction>> {
        self.require_ready("GPADL header")?;
        let ch = self.channel(h.child_relid)?;
        if ch.rescinded {
            return Err(ProtocolError::ChannelRescinded(h.child_relid));
        }
        if self.gpadls.contains_key(&h.gpadl) {
            return Err(ProtocolError::DuplicateGpadl(h.gpadl));
        }
        // A decoded header is self-consistent: each range has exactly one header word.
        let total_words = h.total_words();
        let pages = total_words.saturating_sub(usize::from(h.range_count));
        if pages > self.config.max_gpadl_pages {
            return Err(ProtocolError::GpadlTooLarge {
                pages,
                limit: self.config.max_gpadl_pages,
            });
        }
        let new_total = self
            .total_pages
            .checked_add(pages)
            .filter(|&t| t <= self.config.max_total_gpadl_pages);
        let Some(new_total) = new_total.filter(|_| self.gpadls.len() < self.config.max_gpadls)
        else {
            return Err(ProtocolError::GpadlResourcesExhausted);
        };
        if h.data.len() > total_words {
            // Excluded by decoding; kept so that a hand-built message cannot break the bound.
            return Err(ProtocolError::GpadlOverflow {
                gpadl: h.gpadl,
                expected: total_words,
            });
        }
        self.total_pages = new_total;
        self.gpadls.insert(
            h.gpadl,
            Gpadl {
                relid: h.child_relid,
                pages,
                state: GpadlState::Assembling {
                    range_count: h.range_count,
                    total_words,
                    words: h.data,
                },
            },
        );
        Ok(self.try_complete_gpadl(h.gpadl))
    }

    fn on_gpadl_body(&mut self, b: GpadlBody) -> Result<Actions<ServerAction>> {
        self.require_ready("GPADL body")?;
        let g = self
            .gpadls
            .get_mut(&b.gpadl)
            .ok_or(ProtocolError::GpadlBodyWithoutHeader(b.gpadl))?;
        let GpadlState::Assembling {
            total_words, words, ..
        } = &mut g.state
        else {
            return Err(ProtocolError::GpadlBodyWithoutHeader(b.gpadl));
        };
        let fits = words
            .len()
            .checked_add(b.data.len())
            .is_some_and(|n| n <= *total_words);
        if !fits {
            return Err(ProtocolError::GpadlOverflow {
                gpadl: b.gpadl,
                expected: *total_words,
            });
        }
        words.extend_from_slice(&b.data);
        Ok(self.try_complete_gpadl(b.gpadl))
    }

    /// Creates the GPADL if all its words are in, or refuses it if they are inconsistent.
    fn try_complete_gpadl(&mut self, id: GpadlId) -> Actions<ServerAction> {
        let mut actions = Actions::new();
        let Some(g) = self.gpadls.get_mut(&id) else {
            return actions;
        };
        let GpadlState::Assembling {
            range_count,
            total_words,
            words,
        } = &g.state
        else {
            return actions;
        };
        if words.len() < *total_words {
            return actions;
        }
        let relid = g.relid;
        match gpadl::parse_ranges(*range_count, words) {
            Ok(ranges) => {
                g.state = GpadlState::Created { ranges };
                actions.push(ServerAction::Send(ChannelMessage::GpadlCreated(
                    GpadlCreated {
                        child_relid: relid,
                        gpadl: id,
                        status: status::SUCCESS,
                    },
                )));
                actions.push(ServerAction::GpadlCreated { relid, gpadl: id });
            }
            Err(_) => {
                self.remove_gpadl(id);
                actions.push(ServerAction::Send(ChannelMessage::GpadlCreated(
                    GpadlCreated {
                        child_relid: relid,
                        gpadl: id,
                        status: status::INVALID_PARAMETER,
                    },
                )));
            }
        }
        actions
    }

    fn remove_gpadl(&mut self, id: GpadlId) {
        if let Some(g) = self.gpadls.remove(&id) {
            self.total_pages = self.total_pages.saturating_sub(g.pages);
        }
    }

    fn on_gpadl_teardown(&mut self, t: GpadlTeardown) -> Result<Actions<ServerAction>> {
        self.require_ready("GPADL teardown")?;
        let relid = t.child_relid;
        let ch = self.channel(relid)?;
        let g = self
            .gpadls
            .get(&t.gpadl)
            .ok_or(ProtocolError::UnknownGpadl(t.gpadl))?;
        if g.relid != relid {
            return Err(ProtocolError::GpadlWrongChannel {
                gpadl: t.gpadl,
                relid,
            });
        }
        if g.phase() == GpadlPhase::TeardownPending {
            return Err(ProtocolError::GpadlTeardownPending(t.gpadl));
        }
        let mut actions = Actions::new();
        if ch.state.ring() == Some(t.gpadl) {
            if let ChannelState::Closing { .. } = ch.state {
                // Answered when the host confirms the close.
                if let Some(g) = self.gpadls.get_mut(&t.gpadl) {
                    let ranges = match &mut g.state {
                        GpadlState::Created { ranges } => core::mem::take(ranges),
                        _ => Vec::new(),
                    };
                    g.state = GpadlState::TeardownPending { ranges };
                }
                return Ok(actions);
            }
            return Err(ProtocolError::GpadlInUse(t.gpadl));
        }
        let was_created = g.phase() == GpadlPhase::Created;
        self.remove_gpadl(t.gpadl);
        actions.push(ServerAction::Send(ChannelMessage::GpadlTorndown {
            gpadl: t.gpadl,
        }));
        if was_created {
            actions.push(ServerAction::GpadlTornDown {
                relid,
                gpadl: t.gpadl,
            });
        }
        Ok(actions)
    }

    fn on_open(&mut self, o: OpenChannel) -> Result<Actions<ServerAction>> {
        self.require_ready("open channel")?;
        let relid = o.child_relid;
        let ch = self.channel(relid)?;
        if ch.rescinded {
            return Err(ProtocolError::ChannelRescinded(relid));
        }
        if ch.state != ChannelState::Offered {
            return Err(ProtocolError::WrongChannelPhase {
                what: "open channel",
                relid,
                phase: ch.state.phase(),
            });
        }
        let g = self
            .gpadls
            .get(&o.ring_gpadl)
            .ok_or(ProtocolError::UnknownGpadl(o.ring_gpadl))?;
        if g.relid != relid {
            return Err(ProtocolError::GpadlWrongChannel {
                gpadl: o.ring_gpadl,
                relid,
            });
        }
        let GpadlState::Created { ranges } = &g.state else {
            return Err(ProtocolError::GpadlNotCreated(o.ring_gpadl));
        };
        let mut actions = Actions::new();
        // Each ring needs its control page and at least one data page.
        let offset = usize::try_from(o.downstream_page_offset).unwrap_or(usize::MAX);
        if offset < 2 || g.pages.saturating_sub(offset) < 2 {
            actions.push(ServerAction::Send(ChannelMessage::OpenChannelResult(
                OpenResult {
                    child_relid: relid,
                    open_id: o.open_id,
                    status: status::INVALID_PARAMETER,
                },
            )));
            return Ok(actions);
        }
        let request = OpenRequest {
            relid,
            ring_gpadl: o.ring_gpadl,
            ring: ranges.clone(),
            downstream_page_offset: o.downstream_page_offset,
            target_vp: o.target_vp,
            user_data: o.user_data,
        };
        if let Some(ch) = self.channels.get_mut(&relid) {
            ch.state = ChannelState::Opening {
                open_id: o.open_id,
                ring_gpadl: o.ring_gpadl,
                target_vp: o.target_vp,
            };
        }
        actions.push(ServerAction::OpenChannel(request));
        Ok(actions)
    }

    fn on_close(&mut self, relid: ChannelId) -> Result<Actions<ServerAction>> {
        self.require_ready("close channel")?;
        let ch = self
            .channels
            .get_mut(&relid)
            .ok_or(ProtocolError::UnknownChannel(relid))?;
        let ChannelState::Open { ring_gpadl, .. } = ch.state else {
            return Err(ProtocolError::WrongChannelPhase {
                what: "close channel",
                relid,
                phase: ch.state.phase(),
            });
        };
        ch.state = ChannelState::Closing { ring_gpadl };
        let mut actions = Actions::new();
        actions.push(ServerAction::CloseChannel { relid });
        Ok(actions)
    }

    fn on_relid_released(&mut self, relid: ChannelId) -> Result<Actions<ServerAction>> {
        self.require_ready("relid released")?;
        let ch = self.channel(relid)?;
        if !ch.rescinded {
            return Err(ProtocolError::NotRescinded(relid));
        }
        if ch.state != ChannelState::Offered {
            return Err(ProtocolError::WrongChannelPhase {
                what: "relid released",
                relid,
                phase: ch.state.phase(),
            });
        }
        let mut actions = Actions::new();
        let owned: Vec<GpadlId> = self
            .gpadls
            .iter()
            .filter(|(_, g)| g.relid == relid)
            .map(|(id, _)| *id)
            .collect();
        for gpadl in owned {
            self.remove_gpadl(gpadl);
            actions.push(ServerAction::GpadlTornDown { relid, gpadl });
        }
        self.channels.remove(&relid);
        actions.push(ServerAction::ChannelReleased { relid });
        Ok(actions)
    }

    fn on_modify(&mut self, m: ModifyChannel) -> Result<Actions<ServerAction>> {
        let version = self.require_ready("modify channel")?;
        let relid = m.child_relid;
        let ch = self
            .channels
            .get_mut(&relid)
            .ok_or(ProtocolError::UnknownChannel(relid))?;
        let ChannelState::Open { target_vp, .. } = &mut ch.state else {
            return Err(ProtocolError::WrongChannelPhase {
                what: "modify channel",
                relid,
                phase: ch.state.phase(),
            });
        };
        *target_vp = m.target_vp;
        let mut actions = Actions::new();
        actions.push(ServerAction::ChannelModified {
            relid,
            target_vp: m.target_vp,
        });
        if version.has_modify_channel_response() {
            actions.push(ServerAction::Send(ChannelMessage::ModifyChannelResponse(
                ModifyChannelResponse {
                    child_relid: relid,
                    status: status::SUCCESS,
                },
            )));
        }
        Ok(actions)
    }

    fn on_tl_connect(&mut self, r: TlConnectRequest) -> Result<Actions<ServerAction>> {
        if self.connection == Connection::Disconnected {
            return Err(ProtocolError::WrongConnectionPhase {
                what: "hv_sock connect",
                phase: ConnectionPhase::Disconnected,
            });
        }
        // Mica has no hv_sock provider yet: refuse every connection.
        let mut actions = Actions::new();
        actions.push(ServerAction::Send(ChannelMessage::TlConnectResult(
            TlConnectResult {
                endpoint_id: r.endpoint_id,
                service_id: r.service_id,
                status: status::CONNECTION_REFUSED,
            },
        )));
        Ok(actions)
    }
}
