//! Server and client driven back to back through encoded bytes: the whole life of a
//! connection, as a Linux guest would go through it against Mica's root.

use vmbus_core::client::{Client, ClientAction, ClientConfig, ClientGpadlPhase, OpenParams};
use vmbus_core::server::{GpadlPhase, OfferParams, Server, ServerAction, ServerConfig};
use vmbus_core::{ChannelPhase, ConnectionPhase, ProtocolError};
use vmbus_protocol::*;

/// Both ends plus everything the hosts were told.
struct Bus {
    server: Server,
    client: Client,
    host_events: Vec<ServerAction>,
    guest_events: Vec<ClientAction>,
    wire_log: Vec<MessageType>,
}

impl Bus {
    fn new(server_config: ServerConfig) -> Self {
        Self {
            server: Server::new(server_config),
            client: Client::new(ClientConfig {
                target_vcpu: 1,
                monitor_page1: 0x10_0000,
                monitor_page2: 0x10_1000,
                ..ClientConfig::default()
            }),
            host_events: Vec::new(),
            guest_events: Vec::new(),
            wire_log: Vec::new(),
        }
    }

    /// Sends client messages to the server and delivers every reply, until both are quiet.
    fn send_to_server(&mut self, msgs: impl IntoIterator<Item = ChannelMessage>) {
        let mut to_server: Vec<ChannelMessage> = msgs.into_iter().collect();
        let mut to_client: Vec<ChannelMessage> = Vec::new();
        while !to_server.is_empty() || !to_client.is_empty() {
            for m in std::mem::take(&mut to_server) {
                self.wire_log.push(m.message_type());
                let bytes = m.to_vec().expect("client message encodes");
                let actions = self.server.handle_bytes(&bytes).expect("server accepts");
                to_client.extend(self.absorb_server(actions));
            }
            for m in std::mem::take(&mut to_client) {
                self.wire_log.push(m.message_type());
                let bytes = m.to_vec().expect("server message encodes");
                let actions = self.client.handle_bytes(&bytes).expect("client accepts");
                for a in actions {
                    match a {
                        ClientAction::Send(m) => to_server.push(m),
                        other => self.guest_events.push(other),
                    }
                }
            }
        }
    }

    /// Host-side call results: deliver their messages to the client.
    fn deliver_host(&mut self, actions: vmbus_core::Actions<ServerAction>) {
        let msgs = self.absorb_server(actions);
        let mut pending = msgs;
        while !pending.is_empty() {
            let mut to_server = Vec::new();
            for m in std::mem::take(&mut pending) {
                self.wire_log.push(m.message_type());
                let actions = self.client.handle_bytes(&m.to_vec().unwrap()).unwrap();
                for a in actions {
                    match a {
                        ClientAction::Send(m) => to_server.push(m),
                        other => self.guest_events.push(other),
                    }
                }
            }
            if !to_server.is_empty() {
                self.send_to_server(to_server);
            }
        }
    }

    fn absorb_server(&mut self, actions: vmbus_core::Actions<ServerAction>) -> Vec<ChannelMessage> {
        let mut out = Vec::new();
        for a in actions {
            match a {
                ServerAction::Send(m) => out.push(m),
                other => self.host_events.push(other),
            }
        }
        out
    }
}

fn offer(class: Guid, n: u8) -> OfferParams {
    OfferParams::new(
        class,
        Guid::from_fields(0x1000 + u32::from(n), 0, 0, [n; 8]),
        0x2000 + u32::from(n),
    )
}

fn pages(first: u64, n: u64) -> Vec<GpaRange> {
    vec![GpaRange::whole_pages((first..first + n).collect()).unwrap()]
}

#[test]
fn full_life_of_a_connection() {
    // The server speaks 5.2 and 4.0 only: the client must fall back from 5.3.
    let mut bus = Bus::new(ServerConfig {
        versions: vec![VersionNumber::WIN10_V5_2, VersionNumber::WIN10],
        ..ServerConfig::default()
    });
    let (scsi, _) = bus.server.offer(offer(device_class::STORVSC, 1)).unwrap();
    let (nic, _) = bus.server.offer(offer(device_class::NETVSC, 2)).unwrap();
    let (echo, _) = bus.server.offer(offer(device_class::MICA_ECHO, 3)).unwrap();
    assert_eq!(
        (scsi, nic, echo),
        (ChannelId(1), ChannelId(2), ChannelId(3))
    );

    // ---- version negotiation and offers ----
    let hello = bus.client.connect().unwrap();
    bus.send_to_server([hello]);
    assert_eq!(
        &bus.wire_log[..4],
        &[
            MessageType::InitiateContact, // 5.3
            MessageType::VersionResponse, // rejected
            MessageType::InitiateContact, // 5.2
            MessageType::VersionResponse, // accepted
        ]
    );
    assert_eq!(bus.client.version(), Some(VersionNumber::WIN10_V5_2));
    assert_eq!(bus.server.version(), Some(VersionNumber::WIN10_V5_2));
    assert_eq!(bus.client.connection_phase(), ConnectionPhase::Ready);
    assert_eq!(bus.server.connection_phase(), ConnectionPhase::Ready);
    assert!(bus.guest_events.contains(&ClientAction::Connected {
        version: VersionNumber::WIN10_V5_2,
        message_connection_id: MESSAGE_CONNECTION_ID_4,
    }));
    let ServerAction::Connected { client, .. } = &bus.host_events[0] else {
        panic!("first host event is the connection: {:?}", bus.host_events);
    };
    assert_eq!(
        client.interrupt,
        InterruptTarget::Sint {
            sint: MESSAGE_SINT,
            vtl: 0
        }
    );
    assert_eq!(client.target_vcpu, 1);
    assert_eq!(client.monitor_page2, 0x10_1000);
    let classes: Vec<Guid> = bus.client.offers().map(|o| o.interface_type).collect();
    assert_eq!(
        classes,
        vec![
            device_class::STORVSC,
            device_class::NETVSC,
            device_class::MICA_ECHO
        ]
    );
    assert_eq!(bus.client.offer(nic).unwrap().connection_id, 0x2002);
    assert_eq!(bus.guest_events.last(), Some(&ClientAction::OffersComplete));

    // ---- a 100-page ring GPADL: one header and three bodies ----
    let ring_ranges = pages(0x5_0000, 100);
    let (ring, msgs) = bus.client.create_gpadl(echo, &ring_ranges).unwrap();
    assert_eq!(ring, GpadlId(FIRST_LINUX_GPADL));
    assert_eq!(msgs.len(), 4);
    assert_eq!(
        bus.client.gpadl_phase(ring),
        Some(ClientGpadlPhase::Creating)
    );
    // Deliver the header alone first: the server waits for the bodies.
    let mut msgs = msgs.into_iter();
    let header = msgs.next().unwrap();
    let actions = bus.server.handle(header).unwrap();
    assert!(actions.is_empty());
    assert_eq!(bus.server.gpadl_phase(ring), Some(GpadlPhase::Assembling));
    bus.send_to_server(msgs);
    assert_eq!(
        bus.client.gpadl_phase(ring),
        Some(ClientGpadlPhase::Created)
    );
    assert_eq!(bus.server.gpadl(ring), Some((echo, &ring_ranges[..])));
    assert_eq!(bus.server.total_gpadl_pages(), 100);

    // ---- open ----
    let open = bus
        .client
        .open_channel(
            echo,
            OpenParams {
                ring_gpadl: ring,
                downstream_page_offset: 50,
                target_vp: 1,
                user_data: UserDefined::default(),
            },
        )
        .unwrap();
    bus.send_to_server([open]);
    assert_eq!(
        bus.server.channel_phase(echo),
        Some((ChannelPhase::Opening, false))
    );
    let Some(ServerAction::OpenChannel(req)) = bus.host_events.last().cloned() else {
        panic!("host must be asked to open: {:?}", bus.host_events.last());
    };
    assert_eq!(req.relid, echo);
    assert_eq!(req.downstream_page_offset, 50);
    assert_eq!(req.ring, ring_ranges);
    let done = bus.server.complete_open(echo, status::SUCCESS).unwrap();
    bus.deliver_host(done);
    assert_eq!(
        bus.client.channel_phase(echo),
        Some((ChannelPhase::Open, false))
    );
    assert_eq!(
        bus.server.channel_phase(echo),
        Some((ChannelPhase::Open, false))
    );

    // ---- modify: no response before 5.3 ----
    let before = bus.wire_log.len();
    let modify = bus.client.modify_channel(echo, 0).unwrap();
    bus.send_to_server([modify]);
    assert_eq!(bus.wire_log.len(), before + 1);
    assert_eq!(
        bus.host_events.last(),
        Some(&ServerAction::ChannelModified {
            relid: echo,
            target_vp: 0
        })
    );

    // ---- a second GPADL on the open channel, torn down while the channel stays open ----
    let (extra, msgs) = bus.client.create_gpadl(echo, &pages(0x9_0000, 3)).unwrap();
    assert_eq!(msgs.len(), 1);
    bus.send_to_server(msgs);
    let teardown = bus.client.teardown_gpadl(echo, extra).unwrap();
    bus.send_to_server([teardown]);
    assert_eq!(bus.client.gpadl_phase(extra), None);
    assert_eq!(bus.server.gpadl_phase(extra), None);
    assert_eq!(bus.server.total_gpadl_pages(), 100);

    // The ring cannot go while the channel is open, on either side.
    assert_eq!(
        bus.client.teardown_gpadl(echo, ring),
        Err(ProtocolError::GpadlInUse(ring))
    );
    let forged = ChannelMessage::GpadlTeardown(GpadlTeardown {
        child_relid: echo,
        gpadl: ring,
    });
    assert_eq!(
        bus.server.handle(forged),
        Err(ProtocolError::GpadlInUse(ring))
    );

    // ---- close, then ring teardown waits for the host to let go ----
    let close = bus.client.close_channel(echo).unwrap();
    bus.send_to_server([close]);
    assert_eq!(
        bus.server.channel_phase(echo),
        Some((ChannelPhase::Closing, false))
    );
    assert_eq!(
        bus.host_events.last(),
        Some(&ServerAction::CloseChannel { relid: echo })
    );
    let teardown = bus.client.teardown_gpadl(echo, ring).unwrap();
    bus.send_to_server([teardown]);
    assert_eq!(
        bus.server.gpadl_phase(ring),
        Some(GpadlPhase::TeardownPending)
    );
    assert_eq!(
        bus.client.gpadl_phase(ring),
        Some(ClientGpadlPhase::TearingDown)
    );
    let done = bus.server.complete_close(echo).unwrap();
    bus.deliver_host(done);
    assert_eq!(bus.client.gpadl_phase(ring), None);
    assert_eq!(bus.server.gpadl_phase(ring), None);
    assert_eq!(bus.server.total_gpadl_pages(), 0);
    assert_eq!(
        bus.server.channel_phase(echo),
        Some((ChannelPhase::Offered, false))
    );

    // ---- hot-added offer ----
    let (late, actions) = bus.server.offer(offer(device_class::KEYBOARD, 4)).unwrap();
    bus.deliver_host(actions);
    assert_eq!(
        bus.client.channel_phase(late),
        Some((ChannelPhase::Offered, false))
    );

    // ---- rescind of a closed channel, then relid release ----
    let actions = bus.server.rescind(nic).unwrap();
    bus.deliver_host(actions);
    assert_eq!(
        bus.guest_events.last(),
        Some(&ClientAction::Rescinded { relid: nic })
    );
    assert_eq!(
        bus.client.create_gpadl(nic, &pages(1, 1)),
        Err(ProtocolError::ChannelRescinded(nic))
    );
    let release = bus.client.release_relid(nic).unwrap();
    bus.send_to_server([release]);
    assert_eq!(bus.server.channel_phase(nic), None);
    assert_eq!(
        bus.host_events.last(),
        Some(&ServerAction::ChannelReleased { relid: nic })
    );

    // ---- rescind of an open channel: close, teardown, release ----
    let (ring2, msgs) = bus.client.create_gpadl(scsi, &pages(0x7_0000, 8)).unwrap();
    bus.send_to_server(msgs);
    let open = bus
        .client
        .open_channel(
            scsi,
            OpenParams {
                ring_gpadl: ring2,
                downstream_page_offset: 4,
                target_vp: 0,
                user_data: UserDefined::default(),
            },
        )
        .unwrap();
    bus.send_to_server([open]);
    let done = bus.server.complete_open(scsi, status::SUCCESS).unwrap();
    bus.deliver_host(done);
    let actions = bus.server.rescind(scsi).unwrap();
    bus.deliver_host(actions);
    assert_eq!(
        bus.server.channel_phase(scsi),
        Some((ChannelPhase::Open, true))
    );
    assert_eq!(
        bus.client.release_relid(scsi),
        Err(ProtocolError::WrongChannelPhase {
            what: "release relid",
            relid: scsi,
            phase: ChannelPhase::Open
        })
    );
    let close = bus.client.close_channel(scsi).unwrap();
    bus.send_to_server([close]);
    let done = bus.server.complete_close(scsi).unwrap();
    bus.deliver_host(done);
    let teardown = bus.client.teardown_gpadl(scsi, ring2).unwrap();
    bus.send_to_server([teardown]);
    let release = bus.client.release_relid(scsi).unwrap();
    bus.send_to_server([release]);
    assert_eq!(bus.server.channel_phase(scsi), None);
    assert_eq!(bus.client.channel_phase(scsi), None);

    // ---- unload with an open channel and a live GPADL ----
    let (ring3, msgs) = bus.client.create_gpadl(echo, &pages(0x8_0000, 4)).unwrap();
    bus.send_to_server(msgs);
    let open = bus
        .client
        .open_channel(
            echo,
            OpenParams {
                ring_gpadl: ring3,
                downstream_page_offset: 2,
                target_vp: 0,
                user_data: UserDefined::default(),
            },
        )
        .unwrap();
    bus.send_to_server([open]);
    let done = bus.server.complete_open(echo, status::SUCCESS).unwrap();
    bus.deliver_host(done);
    let events_before = bus.host_events.len();
    let unload = bus.client.unload().unwrap();
    bus.send_to_server([unload]);
    let unload_events = &bus.host_events[events_before..];
    assert!(unload_events.contains(&ServerAction::CloseChannel { relid: echo }));
    assert!(unload_events.contains(&ServerAction::GpadlTornDown {
        relid: echo,
        gpadl: ring3
    }));
    assert_eq!(unload_events.last(), Some(&ServerAction::Unloaded));
    assert_eq!(bus.guest_events.last(), Some(&ClientAction::Unloaded));
    assert_eq!(bus.client.connection_phase(), ConnectionPhase::Disconnected);
    assert_eq!(bus.server.connection_phase(), ConnectionPhase::Disconnected);
    assert_eq!(bus.server.total_gpadl_pages(), 0);
    assert_eq!(bus.client.offers().count(), 0);

    // ---- reconnect: the remaining devices are offered again ----
    let hello = bus.client.connect().unwrap();
    bus.send_to_server([hello]);
    let mut relids: Vec<ChannelId> = bus.client.offers().map(|o| o.child_relid).collect();
    relids.sort();
    assert_eq!(relids, vec![echo, late]);
    assert_eq!(
        bus.server.channel_phase(echo),
        Some((ChannelPhase::Offered, false))
    );
}

#[test]
fn client_gives_up_when_no_version_is_common() {
    let mut bus = Bus::new(ServerConfig {
        versions: vec![VersionNumber::WIN7],
        ..ServerConfig::default()
    });
    let hello = bus.client.connect().unwrap();
    bus.send_to_server([hello]);
    // Every version of the client was tried once, newest first.
    let tried = bus
        .wire_log
        .iter()
        .filter(|t| **t == MessageType::InitiateContact)
        .count();
    assert_eq!(tried, SUPPORTED_VERSIONS.len());
    assert_eq!(bus.guest_events, vec![ClientAction::ConnectFailed]);
    assert_eq!(bus.client.connection_phase(), ConnectionPhase::Disconnected);
    assert_eq!(bus.server.connection_phase(), ConnectionPhase::Disconnected);
}

#[test]
fn old_versions_use_the_interrupt_page_and_connection_id_1() {
    let mut bus = Bus::new(ServerConfig {
        versions: vec![VersionNumber::WIN8_1],
        ..ServerConfig::default()
    });
    bus.client = Client::new(ClientConfig {
        interrupt_page: 0xabc000,
        ..ClientConfig::default()
    });
    let hello = bus.client.connect().unwrap();
    bus.send_to_server([hello]);
    assert_eq!(bus.client.version(), Some(VersionNumber::WIN8_1));
    assert!(bus.guest_events.contains(&ClientAction::Connected {
        version: VersionNumber::WIN8_1,
        message_connection_id: MESSAGE_CONNECTION_ID,
    }));
    let ServerAction::Connected { client, .. } = &bus.host_events[0] else {
        panic!("{:?}", bus.host_events);
    };
    assert_eq!(client.interrupt, InterruptTarget::Page(0xabc000));
}

#[test]
fn modify_channel_is_answered_from_5_3() {
    let mut bus = Bus::new(ServerConfig::default());
    let (relid, _) = bus.server.offer(offer(device_class::MICA_ECHO, 1)).unwrap();
    let hello = bus.client.connect().unwrap();
    bus.send_to_server([hello]);
    assert_eq!(bus.client.version(), Some(VersionNumber::WIN10_V5_3));
    let (ring, msgs) = bus.client.create_gpadl(relid, &pages(10, 4)).unwrap();
    bus.send_to_server(msgs);
    let open = bus
        .client
        .open_channel(
            relid,
            OpenParams {
                ring_gpadl: ring,
                downstream_page_offset: 2,
                target_vp: 0,
                user_data: UserDefined::default(),
            },
        )
        .unwrap();
    bus.send_to_server([open]);
    let done = bus.server.complete_open(relid, status::SUCCESS).unwrap();
    bus.deliver_host(done);
    let modify = bus.client.modify_channel(relid, 3).unwrap();
    bus.send_to_server([modify]);
    assert_eq!(
        bus.guest_events.last(),
        Some(&ClientAction::ModifyChannelResponse(
            ModifyChannelResponse {
                child_relid: relid,
                status: status::SUCCESS
            }
        ))
    );
}

#[test]
fn bad_ring_layout_and_failed_open_are_answered_not_hung() {
    let mut bus = Bus::new(ServerConfig::default());
    let (relid, _) = bus.server.offer(offer(device_class::MICA_ECHO, 1)).unwrap();
    let hello = bus.client.connect().unwrap();
    bus.send_to_server([hello]);
    let (ring, msgs) = bus.client.create_gpadl(relid, &pages(10, 4)).unwrap();
    bus.send_to_server(msgs);
    let params = |offset| OpenParams {
        ring_gpadl: ring,
        downstream_page_offset: offset,
        target_vp: 0,
        user_data: UserDefined::default(),
    };
    // Offset 3 leaves one page for the host-to-guest ring: refused with a status.
    let open = bus.client.open_channel(relid, params(3)).unwrap();
    bus.send_to_server([open]);
    assert_eq!(
        bus.guest_events.last(),
        Some(&ClientAction::OpenResult {
            relid,
            status: status::INVALID_PARAMETER
        })
    );
    assert_eq!(
        bus.client.channel_phase(relid),
        Some((ChannelPhase::Offered, false))
    );
    // The VSP fails to start: the client learns it and may retry.
    let open = bus.client.open_channel(relid, params(2)).unwrap();
    bus.send_to_server([open]);
    let failed = bus
        .server
        .complete_open(relid, status::UNSUCCESSFUL)
        .unwrap();
    bus.deliver_host(failed);
    assert_eq!(
        bus.client.channel_phase(relid),
        Some((ChannelPhase::Offered, false))
    );
    assert_eq!(
        bus.server.channel_phase(relid),
        Some((ChannelPhase::Offered, false))
    );
}
