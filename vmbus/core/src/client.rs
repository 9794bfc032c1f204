//! The VMBus client: the guest's side of the channel protocol (what Linux's hv_vmbus does).
//!
//! # Life of a connection
//! [`Client::connect`] sends initiate contact for the newest configured version; each
//! rejection makes the client try the next older one. On acceptance it requests the offers
//! (`Connected`), records them until all-offers-delivered (`Ready`). [`Client::unload`] then
//! the unload response bring it back to `Disconnected`.
//!
//! # Life of a channel
//! `Offered` --[`Client::open_channel`]--> `Opening` --open result--> `Open` (or back to
//! `Offered`) --[`Client::close_channel`]--> `Offered` (the server does not answer a close).
//! A rescinded channel can still be closed and its GPADLs torn down; then
//! [`Client::release_relid`] forgets it.
//!
//! GPADLs are created with [`Client::create_gpadl`], which splits the page list into a header
//! and body messages exactly as the 240-byte message limit requires, and torn down with
//! [`Client::teardown_gpadl`].
//!
//! Any [`ProtocolError`] leaves the client unchanged.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use vmbus_protocol::{
    ChannelId, ChannelMessage, FIRST_LINUX_GPADL, GpaRange, GpadlCreated, GpadlId, GpadlTeardown,
    InitiateContact, InterruptTarget, MESSAGE_CONNECTION_ID, MESSAGE_SINT, ModifyChannel,
    ModifyChannelResponse, OfferChannel, OpenChannel, OpenResult, SUPPORTED_VERSIONS,
    TlConnectResult, UserDefined, VersionNumber, VersionResponse, gpadl_messages, status,
};

use crate::{Actions, ChannelPhase, ConnectionPhase, ProtocolError};

/// How the client introduces itself.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ClientConfig {
    /// Versions to try, newest first.
    pub versions: Vec<VersionNumber>,
    /// VP the server should send messages to.
    pub target_vcpu: u32,
    /// Interrupt page GPA, sent to servers older than 5.0.
    pub interrupt_page: u64,
    /// SINT for messages, sent to 5.0+ servers.
    pub message_sint: u8,
    /// VTL of the client, sent to 5.0+ servers.
    pub vtl: u8,
    /// First monitor page GPA.
    pub monitor_page1: u64,
    /// Second monitor page GPA.
    pub monitor_page2: u64,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            versions: SUPPORTED_VERSIONS.to_vec(),
            target_vcpu: 0,
            interrupt_page: 0,
            message_sint: MESSAGE_SINT,
            vtl: 0,
            monitor_page1: 0,
            monitor_page2: 0,
        }
    }
}

/// Parameters of an open request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct OpenParams {
    /// GPADL holding both rings.
    pub ring_gpadl: GpadlId,
    /// Page index of the host-to-guest ring inside the GPADL.
    pub downstream_page_offset: u32,
    /// VP for host-to-guest interrupts.
    pub target_vp: u32,
    /// Passed to the VSP.
    pub user_data: UserDefined,
}

/// What the client tells its host (the guest's VMBus driver glue).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ClientAction {
    /// Send this message to the server.
    Send(ChannelMessage),
    /// A version was accepted.
    Connected {
        /// The version.
        version: VersionNumber,
        /// Connection ID for all later messages.
        message_connection_id: u32,
    },
    /// The server rejected every configured version; the client is disconnected.
    ConnectFailed,
    /// A channel is offered.
    Offer(OfferChannel),
    /// The initial offer list is complete.
    OffersComplete,
    /// A channel is rescinded: close it, tear its GPADLs down, then release the relid.
    Rescinded {
        /// The channel.
        relid: ChannelId,
    },
    /// The result of an open.
    OpenResult {
        /// The channel.
        relid: ChannelId,
        /// [`status::SUCCESS`] or an NTSTATUS.
        status: u32,
    },
    /// A GPADL is created (or refused if `status` is not success).
    GpadlCreated {
        /// The GPADL.
        gpadl: GpadlId,
        /// [`status::SUCCESS`] or an NTSTATUS.
        status: u32,
    },
    /// A GPADL is torn down: its memory may be reused.
    GpadlTornDown {
        /// The GPADL.
        gpadl: GpadlId,
    },
    /// The server answered a modify channel.
    ModifyChannelResponse(ModifyChannelResponse),
    /// The server answered an hv_sock connect.
    TlConnectResult(TlConnectResult),
    /// Unload is complete: no channel, no GPADL remains.
    Unloaded,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Connection {
    Disconnected,
    Contacting { attempt: usize },
    Connected { version: VersionNumber },
    Ready { version: VersionNumber },
    Unloading,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ChannelState {
    Offered,
    Opening { open_id: u32, ring_gpadl: GpadlId },
    Open { ring_gpadl: GpadlId },
}

impl ChannelState {
    fn phase(self) -> ChannelPhase {
        match self {
            Self::Offered => ChannelPhase::Offered,
            Self::Opening { .. } => ChannelPhase::Opening,
            Self::Open { .. } => ChannelPhase::Open,
        }
    }

    fn ring(self) -> Option<GpadlId> {
        match self {
            Self::Offered => None,
            Self::Opening { ring_gpadl, .. } | Self::Open { ring_gpadl } => Some(ring_gpadl),
        }
    }
}

#[derive(Clone, PartialEq, Eq, Debug)]
struct Channel {
    offer: OfferChannel,
    state: ChannelState,
    rescinded: bool,
}

/// Where a GPADL is in its life, on the client.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ClientGpadlPhase {
    /// Messages sent, waiting for GPADL created.
    Creating,
    /// Created.
    Created,
    /// Teardown sent, waiting for torndown.
    TearingDown,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Gpadl {
    relid: ChannelId,
    phase: ClientGpadlPhase,
}

/// The client state machine. `Clone + Eq` so tests can check that errors change nothing.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Client {
    config: ClientConfig,
    connection: Connection,
    channels: BTreeMap<ChannelId, Channel>,
    gpadls: BTreeMap<GpadlId, Gpadl>,
    next_gpadl: u32,
}

type Result<T> = core::result::Result<T, ProtocolError>;

impl Client {
    /// A disconnected client.
    pub fn new(config: ClientConfig) -> Self {
        Self {
            config,
            connection: Connection::Disconnected,
            channels: BTreeMap::new(),
            gpadls: BTreeMap::new(),
            next_gpadl: FIRST_LINUX_GPADL,
        }
    }

    /// The connection's phase.
    pub fn connection_phase(&self) -> ConnectionPhase {
        match self.connection {
            Connection::Disconnected => ConnectionPhase::Disconnected,
            Connection::Contacting { .. } => ConnectionPhase::Contacting,
            Connection::Connected { .. } => ConnectionPhase::Connected,
            Connection::Ready { .. } => ConnectionPhase::Ready,
            Connection::Unloading => ConnectionPhase::Unloading,
        }
    }

    /// The negotiated version, if any.
    pub fn version(&self) -> Option<VersionNumber> {
        match self.connection {
            Connection::Connected { version } | Connection::Ready { version } => Some(version),
            _ => None,
        }
    }

    /// A channel's phase and whether it is rescinded.
    pub fn channel_phase(&self, relid: ChannelId) -> Option<(ChannelPhase, bool)> {
        self.channels
            .get(&relid)
            .map(|c| (c.state.phase(), c.rescinded))
    }

    /// A channel's offer.
    pub fn offer(&self, relid: ChannelId) -> Option<&OfferChannel> {
        self.channels.get(&relid).map(|c| &c.offer)
    }

    /// All offers received, by relid.
    pub fn offers(&self) -> impl Iterator<Item = &OfferChannel> + '_ {
        self.channels.values().map(|c| &c.offer)
    }

    /// A GPADL's phase.
    pub fn gpadl_phase(&self, gpadl: GpadlId) -> Option<ClientGpadlPhase> {
        self.gpadls.get(&gpadl).map(|g| g.phase)
    }

    // ---- calls --------------------------------------------------------------------------

    fn initiate_contact(&self, version: VersionNumber) -> ChannelMessage {
        let c = &self.config;
        ChannelMessage::InitiateContact(InitiateContact {
            version,
            target_vcpu: c.target_vcpu,
            interrupt: if version.uses_message_sint() {
                InterruptTarget::Sint {
                    sint: c.message_sint,
                    vtl: c.vtl,
                }
            } else {
                InterruptTarget::Page(c.interrupt_page)
            },
            monitor_page1: c.monitor_page1,
            monitor_page2: c.monitor_page2,
        })
    }

    /// Starts version negotiation with the newest configured version.
    pub fn connect(&mut self) -> Result<ChannelMessage> {
        if self.connection != Connection::Disconnected {
            return Err(self.wrong_phase("connect"));
        }
        let &first = self
            .config
            .versions
            .first()
            .ok_or(ProtocolError::WrongConnectionPhase {
                what: "connect without versions",
                phase: ConnectionPhase::Disconnected,
            })?;
        self.connection = Connection::Contacting { attempt: 0 };
        Ok(self.initiate_contact(first))
    }

    /// Describes memory to the server for `relid`; returns the GPADL ID and the header and
    /// body messages to send, in order. The GPADL is usable once the server created it.
    pub fn create_gpadl(
        &mut self,
        relid: ChannelId,
        ranges: &[GpaRange],
    ) -> Result<(GpadlId, Vec<ChannelMessage>)> {
        self.require_ready("create GPADL")?;
        let ch = self.channel(relid)?;
        if ch.rescinded {
            return Err(ProtocolError::ChannelRescinded(relid));
        }
        let mut id = self.next_gpadl;
        // At most `gpadls.len()` IDs are taken, so this ends.
        while id == 0 || self.gpadls.contains_key(&GpadlId(id)) {
            id = id.wrapping_add(1);
        }
        let gpadl = GpadlId(id);
        let msgs = gpadl_messages(relid, gpadl, ranges)?;
        self.next_gpadl = id.wrapping_add(1);
        self.gpadls.insert(
            gpadl,
            Gpadl {
                relid,
                phase: ClientGpadlPhase::Creating,
            },
        );
        Ok((gpadl, msgs))
    }

    /// Opens a channel on a created GPADL (the open ID is the relid, as Linux does).
    pub fn open_channel(&mut self, relid: ChannelId, p: OpenParams) -> Result<ChannelMessage> {
        self.require_ready("open channel")?;
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
        self.created_gpadl_of(relid, p.ring_gpadl)?;
        let open_id = relid.0;
        if let Some(ch) = self.channels.get_mut(&relid) {
            ch.state = ChannelState::Opening {
                open_id,
                ring_gpadl: p.ring_gpadl,
            };
        }
        Ok(ChannelMessage::OpenChannel(OpenChannel {
            child_relid: relid,
            open_id,
            ring_gpadl: p.ring_gpadl,
            target_vp: p.target_vp,
            downstream_page_offset: p.downstream_page_offset,
            user_data: p.user_data,
        }))
    }

    /// Closes an open channel (also when rescinded). The server does not answer.
    pub fn close_channel(&mut self, relid: ChannelId) -> Result<ChannelMessage> {
        self.require_ready("close channel")?;
        let ch = self
            .channels
            .get_mut(&relid)
            .ok_or(ProtocolError::UnknownChannel(relid))?;
        if !matches!(ch.state, ChannelState::Open { .. }) {
            return Err(ProtocolError::WrongChannelPhase {
                what: "close channel",
                relid,
                phase: ch.state.phase(),
            });
        }
        ch.state = ChannelState::Offered;
        Ok(ChannelMessage::CloseChannel { child_relid: relid })
    }

    /// Tears down a created GPADL that no open channel uses as its ring.
    pub fn teardown_gpadl(&mut self, relid: ChannelId, gpadl: GpadlId) -> Result<ChannelMessage> {
        self.require_ready("teardown GPADL")?;
        let ch = self.channel(relid)?;
        self.created_gpadl_of(relid, gpadl)?;
        if ch.state.ring() == Some(gpadl) {
            return Err(ProtocolError::GpadlInUse(gpadl));
        }
        if let Some(g) = self.gpadls.get_mut(&gpadl) {
            g.phase = ClientGpadlPhase::TearingDown;
        }
        Ok(ChannelMessage::GpadlTeardown(GpadlTeardown {
            child_relid: relid,
            gpadl,
        }))
    }

    /// Moves an open channel's interrupt to another VP.
    pub fn modify_channel(&mut self, relid: ChannelId, target_vp: u32) -> Result<ChannelMessage> {
        self.require_ready("modify channel")?;
        let ch = self.channel(relid)?;
        if !matches!(ch.state, ChannelState::Open { .. }) {
            return Err(ProtocolError::WrongChannelPhase {
                what: "modify channel",
                relid,
                phase: ch.state.phase(),
            });
        }
        Ok(ChannelMessage::ModifyChannel(ModifyChannel {
            child_relid: relid,
            target_vp,
        }))
    }

    /// Forgets a rescinded, closed channel and tells the server the relid is free. GPADLs still
    /// recorded for it are forgotten too (the server drops them with the relid).
    pub fn release_relid(&mut self, relid: ChannelId) -> Result<ChannelMessage> {
        self.require_ready("release relid")?;
        let ch = self.channel(relid)?;
        if !ch.rescinded {
            return Err(ProtocolError::NotRescinded(relid));
        }
        if ch.state != ChannelState::Offered {
            return Err(ProtocolError::WrongChannelPhase {
                what: "release relid",
                relid,
                phase: ch.state.phase(),
            });
        }
        self.channels.remove(&relid);
        self.gpadls.retain(|_, g| g.relid != relid);
        Ok(ChannelMessage::RelIdReleased { child_relid: relid })
    }

    /// Asks the server to tear the whole connection down.
    pub fn unload(&mut self) -> Result<ChannelMessage> {
        match self.connection {
            Connection::Connected { .. } | Connection::Ready { .. } => {
                self.connection = Connection::Unloading;
                Ok(ChannelMessage::Unload)
            }
            _ => Err(self.wrong_phase("unload")),
        }
    }

    // ---- server messages ----------------------------------------------------------------

    /// Decodes and handles one message from the server.
    pub fn handle_bytes(&mut self, bytes: &[u8]) -> Result<Actions<ClientAction>> {
        let msg = ChannelMessage::decode(bytes)?;
        self.handle(msg)
    }

    /// Handles one message from the server.
    pub fn handle(&mut self, msg: ChannelMessage) -> Result<Actions<ClientAction>> {
        match msg {
            ChannelMessage::VersionResponse(r) => self.on_version_response(r),
            ChannelMessage::OfferChannel(o) => self.on_offer(o),
            ChannelMessage::AllOffersDelivered => self.on_all_offers_delivered(),
            ChannelMessage::RescindChannelOffer { child_relid } => self.on_rescind(child_relid),
            ChannelMessage::OpenChannelResult(r) => self.on_open_result(r),
            ChannelMessage::GpadlCreated(c) => self.on_gpadl_created(c),
            ChannelMessage::GpadlTorndown { gpadl } => self.on_gpadl_torndown(gpadl),
            ChannelMessage::UnloadResponse => self.on_unload_response(),
            ChannelMessage::ModifyChannelResponse(r) => {
                self.require_ready("modify channel response")?;
                self.channel(r.child_relid)?;
                Ok(single(ClientAction::ModifyChannelResponse(r)))
            }
            ChannelMessage::TlConnectResult(r) => {
                self.require_ready("hv_sock connect result")?;
                Ok(single(ClientAction::TlConnectResult(r)))
            }
            other => Err(ProtocolError::UnexpectedMessage(other.message_type())),
        }
    }

    fn wrong_phase(&self, what: &'static str) -> ProtocolError {
        ProtocolError::WrongConnectionPhase {
            what,
            phase: self.connection_phase(),
        }
    }

    fn require_ready(&self, what: &'static str) -> Result<()> {
        match self.connection {
            Connection::Ready { .. } => Ok(()),
            _ => Err(self.wrong_phase(what)),
        }
    }

    fn channel(&self, relid: ChannelId) -> Result<&Channel> {
        self.channels
            .get(&relid)
            .ok_or(ProtocolError::UnknownChannel(relid))
    }

    fn created_gpadl_of(&self, relid: ChannelId, gpadl: GpadlId) -> Result<()> {
        let g = self
            .gpadls
            .get(&gpadl)
            .ok_or(ProtocolError::UnknownGpadl(gpadl))?;
        if g.relid != relid {
            return Err(ProtocolError::GpadlWrongChannel { gpadl, relid });
        }
        match g.phase {
            ClientGpadlPhase::Created => Ok(()),
            ClientGpadlPhase::Creating => Err(ProtocolError::GpadlNotCreated(gpadl)),
            ClientGpadlPhase::TearingDown => Err(ProtocolError::GpadlTeardownPending(gpadl)),
        }
    }

    fn on_version_response(&mut self, r: VersionResponse) -> Result<Actions<ClientAction>> {
        let Connection::Contacting { attempt } = self.connection else {
            return Err(self.wrong_phase("version response"));
        };
        let mut actions = Actions::new();
        let Some(&version) = self.config.versions.get(attempt) else {
            // Cannot happen: `attempt` always indexes the list. Refuse rather than panic.
            return Err(self.wrong_phase("version response"));
        };
        if r.version_supported {
            self.connection = Connection::Connected { version };
            actions.push(ClientAction::Connected {
                version,
                message_connection_id: if version.uses_message_sint() {
                    r.message_connection_id
                } else {
                    MESSAGE_CONNECTION_ID
                },
            });
            actions.push(ClientAction::Send(ChannelMessage::RequestOffers));
        } else if let Some(&next) = self.config.versions.get(attempt + 1) {
            self.connection = Connection::Contacting {
                attempt: attempt + 1,
            };
            actions.push(ClientAction::Send(self.initiate_contact(next)));
        } else {
            self.connection = Connection::Disconnected;
            actions.push(ClientAction::ConnectFailed);
        }
        Ok(actions)
    }

    fn on_offer(&mut self, o: OfferChannel) -> Result<Actions<ClientAction>> {
        if !matches!(
            self.connection,
            Connection::Connected { .. } | Connection::Ready { .. }
        ) {
            return Err(self.wrong_phase("offer"));
        }
        if self.channels.contains_key(&o.child_relid) {
            return Err(ProtocolError::DuplicateOffer(o.child_relid));
        }
        self.channels.insert(
            o.child_relid,
            Channel {
                offer: o,
                state: ChannelState::Offered,
                rescinded: false,
            },
        );
        Ok(single(ClientAction::Offer(o)))
    }

    fn on_all_offers_delivered(&mut self) -> Result<Actions<ClientAction>> {
        let Connection::Connected { version } = self.connection else {
            return Err(self.wrong_phase("all offers delivered"));
        };
        self.connection = Connection::Ready { version };
        Ok(single(ClientAction::OffersComplete))
    }

    fn on_rescind(&mut self, relid: ChannelId) -> Result<Actions<ClientAction>> {
        if !matches!(
            self.connection,
            Connection::Connected { .. } | Connection::Ready { .. }
        ) {
            return Err(self.wrong_phase("rescind"));
        }
        let ch = self
            .channels
            .get_mut(&relid)
            .ok_or(ProtocolError::UnknownChannel(relid))?;
        if ch.rescinded {
            return Err(ProtocolError::ChannelRescinded(relid));
        }
        ch.rescinded = true;
        Ok(single(ClientAction::Rescinded { relid }))
    }

    fn on_open_result(&mut self, r: OpenResult) -> Result<Actions<ClientAction>> {
        self.require_ready("open result")?;
        let relid = r.child_relid;
        let ch = self
            .channels
            .get_mut(&relid)
            .ok_or(ProtocolError::UnknownChannel(relid))?;
        let ChannelState::Opening {
            open_id,
            ring_gpadl,
        } = ch.state
        else {
            return Err(ProtocolError::WrongChannelPhase {
                what: "open result",
                relid,
                phase: ch.state.phase(),
            });
        };
        if open_id != r.open_id {
            return Err(ProtocolError::OpenIdMismatch {
                relid,
                expected: open_id,
                got: r.open_id,
            });
        }
        ch.state = if r.status == status::SUCCESS {
            ChannelState::Open { ring_gpadl }
        } else {
            ChannelState::Offered
        };
        Ok(single(ClientAction::OpenResult {
            relid,
            status: r.status,
        }))
    }

    fn on_gpadl_created(&mut self, c: GpadlCreated) -> Result<Actions<ClientAction>> {
        self.require_ready("GPADL created")?;
        let g = self
            .gpadls
            .get_mut(&c.gpadl)
            .ok_or(ProtocolError::UnknownGpadl(c.gpadl))?;
        if g.relid != c.child_relid {
            return Err(ProtocolError::GpadlWrongChannel {
                gpadl: c.gpadl,
                relid: c.child_relid,
            });
        }
        if g.phase != ClientGpadlPhase::Creating {
            return Err(ProtocolError::DuplicateGpadl(c.gpadl));
        }
        if c.status == status::SUCCESS {
            g.phase = ClientGpadlPhase::Created;
        } else {
            self.gpadls.remove(&c.gpadl);
        }
        Ok(single(ClientAction::GpadlCreated {
            gpadl: c.gpadl,
            status: c.status,
        }))
    }

    fn on_gpadl_torndown(&mut self, gpadl: GpadlId) -> Result<Actions<ClientAction>> {
        self.require_ready("GPADL torndown")?;
        let g = self
            .gpadls
            .get(&gpadl)
            .ok_or(ProtocolError::UnknownGpadl(gpadl))?;
        if g.phase != ClientGpadlPhase::TearingDown {
            return Err(ProtocolError::UnknownGpadl(gpadl));
        }
        self.gpadls.remove(&gpadl);
        Ok(single(ClientAction::GpadlTornDown { gpadl }))
    }

    fn on_unload_response(&mut self) -> Result<Actions<ClientAction>> {
        if self.connection != Connection::Unloading {
            return Err(self.wrong_phase("unload response"));
        }
        self.connection = Connection::Disconnected;
        self.channels.clear();
        self.gpadls.clear();
        Ok(single(ClientAction::Unloaded))
    }
}

fn single(a: ClientAction) -> Actions<ClientAction> {
    let mut actions = Actions::new();
    actions.push(a);
    actions
}
