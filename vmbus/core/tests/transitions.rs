//! Exhaustive transition tests: for every state of the connection and of a channel, and for
//! every message type (and every host call), the outcome is either the legal transition the
//! table below names, or a typed error that leaves the state machine unchanged.
//!
//! The tables list only the legal pairs; the loops generate the full cross product.

use vmbus_core::client::{Client, ClientAction, ClientConfig, ClientGpadlPhase};
use vmbus_core::server::{GpadlPhase, OfferParams, Server, ServerAction, ServerConfig};
use vmbus_core::{ChannelPhase, ConnectionPhase};
use vmbus_protocol::*;

const R: ChannelId = ChannelId(1);
const R2: ChannelId = ChannelId(2);
/// The first GPADL ID a client picks, like Linux.
const G: GpadlId = GpadlId(FIRST_LINUX_GPADL);
const G2: GpadlId = GpadlId(FIRST_LINUX_GPADL + 1);
const V: VersionNumber = VersionNumber::WIN10_V5_3;

/// A canonical message of every type, aimed at channel `R` and GPADL `G` (a new GPADL is
/// `G2`, a new channel `R2`): the natural next step wherever it is legal.
fn canonical(t: MessageType) -> ChannelMessage {
    use ChannelMessage as M;
    let four_pages = GpaRange::whole_pages(vec![10, 11, 12, 13]).unwrap();
    match t {
        MessageType::OfferChannel => M::OfferChannel(OfferChannel {
            interface_type: device_class::NETVSC,
            instance: Guid::from_fields(2, 2, 2, [2; 8]),
            flags: OfferFlags::empty(),
            mmio_megabytes: 0,
            user_defined: UserDefined::default(),
            sub_channel_index: 0,
            child_relid: R2,
            monitor_id: 0,
            monitor_allocated: false,
            dedicated_interrupt: false,
            connection_id: 0x2002,
        }),
        MessageType::RescindChannelOffer => M::RescindChannelOffer { child_relid: R },
        MessageType::RequestOffers => M::RequestOffers,
        MessageType::AllOffersDelivered => M::AllOffersDelivered,
        MessageType::OpenChannel => M::OpenChannel(OpenChannel {
            child_relid: R,
            open_id: R.0,
            ring_gpadl: G,
            target_vp: 0,
            downstream_page_offset: 2,
            user_data: UserDefined::default(),
        }),
        MessageType::OpenChannelResult => M::OpenChannelResult(OpenResult {
            child_relid: R,
            open_id: R.0,
            status: status::SUCCESS,
        }),
        MessageType::CloseChannel => M::CloseChannel { child_relid: R },
        MessageType::GpadlHeader => {
            let mut msgs = gpadl_messages(R, G2, &[four_pages]).unwrap();
            msgs.remove(0)
        }
        MessageType::GpadlBody => M::GpadlBody(GpadlBody {
            msg_number: 1,
            gpadl: G,
            data: vec![12, 13],
        }),
        MessageType::GpadlCreated => M::GpadlCreated(GpadlCreated {
            child_relid: R,
            gpadl: G,
            status: status::SUCCESS,
        }),
        MessageType::GpadlTeardown => M::GpadlTeardown(GpadlTeardown {
            child_relid: R,
            gpadl: G,
        }),
        MessageType::GpadlTorndown => M::GpadlTorndown { gpadl: G },
        MessageType::RelIdReleased => M::RelIdReleased { child_relid: R },
        MessageType::InitiateContact => M::InitiateContact(InitiateContact {
            version: V,
            target_vcpu: 0,
            interrupt: InterruptTarget::Sint { sint: 2, vtl: 0 },
            monitor_page1: 0,
            monitor_page2: 0,
        }),
        MessageType::VersionResponse => M::VersionResponse(VersionResponse {
            version_supported: true,
            connection_state: ConnectionState::SUCCESSFUL,
            message_connection_id: 4,
        }),
        MessageType::Unload => M::Unload,
        MessageType::UnloadResponse => M::UnloadResponse,
        MessageType::TlConnectRequest => M::TlConnectRequest(TlConnectRequest {
            endpoint_id: Guid::from_fields(7, 7, 7, [7; 8]),
            service_id: Guid::from_fields(8, 8, 8, [8; 8]),
        }),
        MessageType::ModifyChannel => M::ModifyChannel(ModifyChannel {
            child_relid: R,
            target_vp: 1,
        }),
        MessageType::TlConnectResult => M::TlConnectResult(TlConnectResult {
            endpoint_id: Guid::from_fields(7, 7, 7, [7; 8]),
            service_id: Guid::from_fields(8, 8, 8, [8; 8]),
            status: status::CONNECTION_REFUSED,
        }),
        MessageType::ModifyChannelResponse => M::ModifyChannelResponse(ModifyChannelResponse {
            child_relid: R,
            status: status::SUCCESS,
        }),
    }
}

// ==== server ==============================================================================

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum S {
    /// Channel `R` offered by the host, nobody connected.
    Disconnected,
    /// Version negotiated, offers not requested.
    Connected,
    /// Offers delivered; `R` offered, no GPADL.
    Ready,
    /// `G` (4 pages) header received, one body outstanding.
    GpadlAssembling,
    /// `G` created.
    GpadlCreated,
    /// `R` opening on ring `G`.
    Opening,
    /// `R` open on ring `G`.
    Open,
    /// `R` closing, ring `G` still held.
    Closing,
    /// `R` closing, teardown of `G` waiting.
    TeardownPending,
    /// `R` rescinded while closed, `G` created.
    Rescinded,
    /// `R` rescinded while open on ring `G`.
    RescindedOpen,
}

const SERVER_STATES: [S; 11] = [
    S::Disconnected,
    S::Connected,
    S::Ready,
    S::GpadlAssembling,
    S::GpadlCreated,
    S::Opening,
    S::Open,
    S::Closing,
    S::TeardownPending,
    S::Rescinded,
    S::RescindedOpen,
];

fn ok<A>(r: Result<A, vmbus_core::ProtocolError>) -> A {
    r.expect("setup step is legal")
}

fn build_server(s: S) -> Server {
    let mut server = Server::new(ServerConfig::default());
    let (relid, _) = ok(server.offer(OfferParams::new(
        device_class::MICA_ECHO,
        Guid::from_fields(1, 1, 1, [1; 8]),
        0x2001,
    )));
    assert_eq!(relid, R);
    if s == S::Disconnected {
        return server;
    }
    ok(server.handle(canonical(MessageType::InitiateContact)));
    if s == S::Connected {
        return server;
    }
    ok(server.handle(ChannelMessage::RequestOffers));
    if s == S::Ready {
        return server;
    }
    let ring = GpaRange::whole_pages(vec![10, 11, 12, 13]).unwrap();
    let mut msgs = gpadl_messages(R, G, &[ring]).unwrap();
    // Split the header artificially so that a body is needed: keep 3 of its 5 words.
    let ChannelMessage::GpadlHeader(mut h) = msgs.remove(0) else {
        unreachable!()
    };
    h.data.truncate(3);
    ok(server.handle(ChannelMessage::GpadlHeader(h)));
    if s == S::GpadlAssembling {
        return server;
    }
    ok(server.handle(canonical(MessageType::GpadlBody)));
    if s == S::GpadlCreated {
        return server;
    }
    if s == S::Rescinded {
        ok(server.rescind(R));
        return server;
    }
    ok(server.handle(canonical(MessageType::OpenChannel)));
    if s == S::Opening {
        return server;
    }
    ok(server.complete_open(R, status::SUCCESS));
    if s == S::Open {
        return server;
    }
    if s == S::RescindedOpen {
        ok(server.rescind(R));
        return server;
    }
    ok(server.handle(ChannelMessage::CloseChannel { child_relid: R }));
    if s == S::Closing {
        return server;
    }
    ok(server.handle(canonical(MessageType::GpadlTeardown)));
    assert_eq!(s, S::TeardownPending);
    server
}

/// What the tests observe of a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ServerView {
    conn: ConnectionPhase,
    r: Option<(ChannelPhase, bool)>,
    g: Option<GpadlPhase>,
    g2: Option<GpadlPhase>,
}

fn view(s: &Server) -> ServerView {
    ServerView {
        conn: s.connection_phase(),
        r: s.channel_phase(R),
        g: s.gpadl_phase(G),
        g2: s.gpadl_phase(G2),
    }
}

/// The legal transitions of the server on client messages; every other pair is an error.
fn server_legal(s: S, t: MessageType) -> Option<ServerView> {
    use ChannelPhase::*;
    use MessageType as T;
    let before = view(&build_server(s));
    let with = |f: &dyn Fn(&mut ServerView)| {
        let mut v = before;
        f(&mut v);
        Some(v)
    };
    let rescinded = matches!(s, S::Rescinded | S::RescindedOpen);
    match (s, t) {
        (S::Disconnected, T::InitiateContact) => with(&|v| v.conn = ConnectionPhase::Connected),
        (S::Connected, T::RequestOffers) => with(&|v| v.conn = ConnectionPhase::Ready),
        (S::Disconnected, _) => None,
        // Unload resets everything; rescinded channels disappear.
        (_, T::Unload) => Some(ServerView {
            conn: ConnectionPhase::Disconnected,
            r: if rescinded {
                None
            } else {
                Some((Offered, false))
            },
            g: None,
            g2: None,
        }),
        // hv_sock is refused with a status: no state change.
        (_, T::TlConnectRequest) => Some(before),
        (S::Connected, _) => None,
        // A new GPADL on a channel that is not rescinded, in any channel phase.
        (_, T::GpadlHeader) if !rescinded => with(&|v| v.g2 = Some(GpadlPhase::Created)),
        (S::GpadlAssembling, T::GpadlBody) => with(&|v| v.g = Some(GpadlPhase::Created)),
        (S::GpadlAssembling | S::GpadlCreated | S::Rescinded, T::GpadlTeardown) => {
            with(&|v| v.g = None)
        }
        (S::Closing, T::GpadlTeardown) => with(&|v| v.g = Some(GpadlPhase::TeardownPending)),
        (S::GpadlCreated, T::OpenChannel) => with(&|v| v.r = Some((Opening, false))),
        (S::Open, T::CloseChannel) => with(&|v| v.r = Some((Closing, false))),
        (S::RescindedOpen, T::CloseChannel) => with(&|v| v.r = Some((Closing, true))),
        (S::Open | S::RescindedOpen, T::ModifyChannel) => Some(before),
        (S::Rescinded, T::RelIdReleased) => with(&|v| {
            v.r = None;
            v.g = None;
        }),
        _ => None,
    }
}

#[test]
fn server_every_state_times_every_message() {
    let mut legal_count = 0;
    for s in SERVER_STATES {
        for t in MessageType::ALL {
            let mut server = build_server(s);
            let snapshot = server.clone();
            let msg = canonical(t);
            let outcome = server.handle(msg.clone());
            match (server_legal(s, t), outcome) {
                (Some(expected), Ok(_)) => {
                    legal_count += 1;
                    assert_eq!(view(&server), expected, "{s:?} + {t:?}");
                }
                (None, Err(_)) => {
                    assert_eq!(server, snapshot, "{s:?} + {t:?}: error changed the state");
                }
                (Some(_), Err(e)) => panic!("{s:?} + {t:?} should be legal, got {e:?}"),
                (None, Ok(a)) => panic!("{s:?} + {t:?} should be an error, got {a:?}"),
            }
            // The same must hold when the message arrives as bytes.
            let mut again = snapshot.clone();
            let from_bytes = again.handle_bytes(&msg.to_vec().unwrap());
            assert_eq!(
                from_bytes.is_ok(),
                server_legal(s, t).is_some(),
                "{s:?} + {t:?} bytes"
            );
        }
    }
    // The table is not vacuous.
    assert_eq!(legal_count, 40);
}

#[derive(Clone, Copy, Debug)]
enum HostCall {
    CompleteOpen,
    FailOpen,
    CompleteClose,
    Rescind,
    Offer,
}

fn call(server: &mut Server, c: HostCall) -> Result<(), vmbus_core::ProtocolError> {
    match c {
        HostCall::CompleteOpen => server.complete_open(R, status::SUCCESS).map(drop),
        HostCall::FailOpen => server.complete_open(R, status::UNSUCCESSFUL).map(drop),
        HostCall::CompleteClose => server.complete_close(R).map(drop),
        HostCall::Rescind => server.rescind(R).map(drop),
        HostCall::Offer => server
            .offer(OfferParams::new(device_class::NETVSC, Guid::ZERO, 9))
            .map(drop),
    }
}

fn host_legal(s: S, c: HostCall) -> Option<ServerView> {
    use ChannelPhase::*;
    let before = view(&build_server(s));
    let mut v = before;
    match (s, c) {
        (_, HostCall::Offer) => {}
        (S::Opening, HostCall::CompleteOpen) => v.r = Some((Open, false)),
        (S::Opening, HostCall::FailOpen) => v.r = Some((Offered, false)),
        (S::Closing, HostCall::CompleteClose) => v.r = Some((Offered, false)),
        (S::TeardownPending, HostCall::CompleteClose) => {
            v.r = Some((Offered, false));
            v.g = None;
        }
        // Before the client has its offers, a rescind just removes the channel.
        (S::Disconnected | S::Connected, HostCall::Rescind) => v.r = None,
        (S::Rescinded | S::RescindedOpen, HostCall::Rescind) => return None,
        (_, HostCall::Rescind) => v.r = v.r.map(|(p, _)| (p, true)),
        _ => return None,
    }
    Some(v)
}

#[test]
fn server_every_state_times_every_host_call() {
    let calls = [
        HostCall::CompleteOpen,
        HostCall::FailOpen,
        HostCall::CompleteClose,
        HostCall::Rescind,
        HostCall::Offer,
    ];
    for s in SERVER_STATES {
        for c in calls {
            let mut server = build_server(s);
            let snapshot = server.clone();
            match (host_legal(s, c), call(&mut server, c)) {
                (Some(expected), Ok(())) => assert_eq!(view(&server), expected, "{s:?} + {c:?}"),
                (None, Err(_)) => assert_eq!(server, snapshot, "{s:?} + {c:?}"),
                (Some(_), Err(e)) => panic!("{s:?} + {c:?} should be legal, got {e:?}"),
                (None, Ok(())) => panic!("{s:?} + {c:?} should be an error"),
            }
        }
    }
}

#[test]
fn server_replies_match_the_protocol() {
    // A few replies the table above does not look at.
    let mut server = build_server(S::Ready);
    let actions = server.handle(canonical(MessageType::GpadlHeader)).unwrap();
    assert!(
        actions
            .as_slice()
            .contains(&ServerAction::Send(ChannelMessage::GpadlCreated(
                GpadlCreated {
                    child_relid: R,
                    gpadl: G2,
                    status: status::SUCCESS
                }
            )))
    );
    let mut server = build_server(S::Open);
    let actions = server
        .handle(canonical(MessageType::ModifyChannel))
        .unwrap();
    assert!(actions.as_slice().contains(&ServerAction::Send(
        ChannelMessage::ModifyChannelResponse(ModifyChannelResponse {
            child_relid: R,
            status: status::SUCCESS
        })
    )));
    let mut server = build_server(S::Connected);
    let actions = server
        .handle(canonical(MessageType::TlConnectRequest))
        .unwrap();
    assert!(matches!(
        actions.as_slice(),
        [ServerAction::Send(ChannelMessage::TlConnectResult(
            TlConnectResult {
                status: status::CONNECTION_REFUSED,
                ..
            }
        ))]
    ));
    // An unsupported version is answered, and the server stays disconnected.
    let mut server = build_server(S::Disconnected);
    let actions = server
        .handle(ChannelMessage::InitiateContact(InitiateContact {
            version: VersionNumber::WIN7,
            target_vcpu: 0,
            interrupt: InterruptTarget::Page(0),
            monitor_page1: 0,
            monitor_page2: 0,
        }))
        .unwrap();
    assert!(matches!(
        actions.as_slice(),
        [ServerAction::Send(ChannelMessage::VersionResponse(
            VersionResponse {
                version_supported: false,
                ..
            }
        ))]
    ));
    assert_eq!(server.connection_phase(), ConnectionPhase::Disconnected);
}

// ==== client ==============================================================================

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum C {
    Disconnected,
    Contacting,
    /// Version accepted, `R` offered, waiting for all-offers-delivered.
    Connected,
    Ready,
    GpadlCreating,
    GpadlCreated,
    Opening,
    Open,
    TearingDown,
    Rescinded,
    Unloading,
}

const CLIENT_STATES: [C; 11] = [
    C::Disconnected,
    C::Contacting,
    C::Connected,
    C::Ready,
    C::GpadlCreating,
    C::GpadlCreated,
    C::Opening,
    C::Open,
    C::TearingDown,
    C::Rescinded,
    C::Unloading,
];

fn build_client(c: C) -> Client {
    let mut client = Client::new(ClientConfig::default());
    if c == C::Disconnected {
        return client;
    }
    ok(client.connect());
    if c == C::Contacting {
        return client;
    }
    ok(client.handle(canonical(MessageType::VersionResponse)));
    let mut offer = canonical(MessageType::OfferChannel);
    if let ChannelMessage::OfferChannel(o) = &mut offer {
        o.child_relid = R;
    }
    ok(client.handle(offer));
    if c == C::Connected {
        return client;
    }
    ok(client.handle(ChannelMessage::AllOffersDelivered));
    if c == C::Unloading {
        ok(client.unload());
        return client;
    }
    if c == C::Ready {
        return client;
    }
    if c == C::Rescinded {
        ok(client.handle(canonical(MessageType::RescindChannelOffer)));
        return client;
    }
    let ring = GpaRange::whole_pages(vec![10, 11, 12, 13]).unwrap();
    let (id, _) = ok(client.create_gpadl(R, &[ring]));
    assert_eq!(id, G);
    if c == C::GpadlCreating {
        return client;
    }
    ok(client.handle(canonical(MessageType::GpadlCreated)));
    if c == C::GpadlCreated {
        return client;
    }
    if c == C::TearingDown {
        ok(client.teardown_gpadl(R, G));
        return client;
    }
    ok(client.open_channel(
        R,
        vmbus_core::client::OpenParams {
            ring_gpadl: G,
            downstream_page_offset: 2,
            target_vp: 0,
            user_data: UserDefined::default(),
        },
    ));
    if c == C::Opening {
        return client;
    }
    ok(client.handle(canonical(MessageType::OpenChannelResult)));
    assert_eq!(c, C::Open);
    client
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ClientView {
    conn: ConnectionPhase,
    r: Option<(ChannelPhase, bool)>,
    r2: Option<(ChannelPhase, bool)>,
    g: Option<ClientGpadlPhase>,
}

fn client_view(c: &Client) -> ClientView {
    ClientView {
        conn: c.connection_phase(),
        r: c.channel_phase(R),
        r2: c.channel_phase(R2),
        g: c.gpadl_phase(G),
    }
}

fn client_legal(c: C, t: MessageType) -> Option<ClientView> {
    use ChannelPhase::*;
    use MessageType as T;
    let before = client_view(&build_client(c));
    let mut v = before;
    let ready_like = !matches!(
        c,
        C::Disconnected | C::Contacting | C::Connected | C::Unloading
    );
    match (c, t) {
        (C::Contacting, T::VersionResponse) => v.conn = ConnectionPhase::Connected,
        (C::Connected, T::AllOffersDelivered) => v.conn = ConnectionPhase::Ready,
        (C::Unloading, T::UnloadResponse) => {
            v = ClientView {
                conn: ConnectionPhase::Disconnected,
                r: None,
                r2: None,
                g: None,
            }
        }
        (C::Connected, T::OfferChannel) => v.r2 = Some((Offered, false)),
        (C::Connected, T::RescindChannelOffer) => v.r = Some((Offered, true)),
        (_, _) if !ready_like => return None,
        (_, T::OfferChannel) => v.r2 = Some((Offered, false)),
        (C::Rescinded, T::RescindChannelOffer) => return None,
        (_, T::RescindChannelOffer) => v.r = v.r.map(|(p, _)| (p, true)),
        (_, T::ModifyChannelResponse | T::TlConnectResult) => {}
        (C::GpadlCreating, T::GpadlCreated) => v.g = Some(ClientGpadlPhase::Created),
        (C::Opening, T::OpenChannelResult) => v.r = Some((Open, false)),
        (C::TearingDown, T::GpadlTorndown) => v.g = None,
        _ => return None,
    }
    Some(v)
}

#[test]
fn client_every_state_times_every_message() {
    let mut legal_count = 0;
    for c in CLIENT_STATES {
        for t in MessageType::ALL {
            let mut client = build_client(c);
            let snapshot = client.clone();
            match (client_legal(c, t), client.handle(canonical(t))) {
                (Some(expected), Ok(_)) => {
                    legal_count += 1;
                    assert_eq!(client_view(&client), expected, "{c:?} + {t:?}");
                }
                (None, Err(_)) => {
                    assert_eq!(client, snapshot, "{c:?} + {t:?}: error changed the state");
                }
                (Some(_), Err(e)) => panic!("{c:?} + {t:?} should be legal, got {e:?}"),
                (None, Ok(a)) => panic!("{c:?} + {t:?} should be an error, got {a:?}"),
            }
        }
    }
    assert_eq!(legal_count, 35);
}

#[test]
fn client_refused_gpadl_and_open_go_back() {
    let mut client = build_client(C::GpadlCreating);
    let actions = client
        .handle(ChannelMessage::GpadlCreated(GpadlCreated {
            child_relid: R,
            gpadl: G,
            status: status::INVALID_PARAMETER,
        }))
        .unwrap();
    assert_eq!(
        actions.into_vec(),
        vec![ClientAction::GpadlCreated {
            gpadl: G,
            status: status::INVALID_PARAMETER
        }]
    );
    assert_eq!(client.gpadl_phase(G), None);

    let mut client = build_client(C::Opening);
    client
        .handle(ChannelMessage::OpenChannelResult(OpenResult {
            child_relid: R,
            open_id: R.0,
            status: status::UNSUCCESSFUL,
        }))
        .unwrap();
    assert_eq!(
        client.channel_phase(R),
        Some((ChannelPhase::Offered, false))
    );

    // An open result with another open ID is an error and changes nothing.
    let mut client = build_client(C::Opening);
    let snapshot = client.clone();
    assert!(
        client
            .handle(ChannelMessage::OpenChannelResult(OpenResult {
                child_relid: R,
                open_id: 99,
                status: status::SUCCESS,
            }))
            .is_err()
    );
    assert_eq!(client, snapshot);
}
