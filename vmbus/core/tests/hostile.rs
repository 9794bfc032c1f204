//! A hostile client: GPADL abuse and random message sequences against the server.

use proptest::prelude::*;
use vmbus_core::server::{GpadlPhase, OfferParams, Server, ServerConfig};
use vmbus_core::{ConnectionPhase, ProtocolError};
use vmbus_protocol::*;

fn ready_server(config: ServerConfig) -> (Server, ChannelId) {
    let mut s = Server::new(config);
    let (relid, _) = s
        .offer(OfferParams::new(device_class::MICA_ECHO, Guid::ZERO, 1))
        .unwrap();
    s.handle(ChannelMessage::InitiateContact(InitiateContact {
        version: VersionNumber::WIN10_V5_3,
        target_vcpu: 0,
        interrupt: InterruptTarget::Sint { sint: 2, vtl: 0 },
        monitor_page1: 0,
        monitor_page2: 0,
    }))
    .unwrap();
    s.handle(ChannelMessage::RequestOffers).unwrap();
    (s, relid)
}

fn header(relid: ChannelId, gpadl: GpadlId, pages: u64) -> Vec<ChannelMessage> {
    let range = GpaRange::whole_pages((0..pages).collect()).unwrap();
    gpadl_messages(relid, gpadl, &[range]).unwrap()
}

/// Applies `msg` and checks the error contract: on error, nothing changed.
fn apply(s: &mut Server, msg: ChannelMessage) -> Result<(), ProtocolError> {
    let before = s.clone();
    let r = s.handle(msg).map(drop);
    if r.is_err() {
        assert_eq!(*s, before, "an error changed the server");
    }
    r
}

#[test]
fn gpadl_limits_are_enforced() {
    let config = ServerConfig {
        max_gpadl_pages: 64,
        max_total_gpadl_pages: 100,
        max_gpadls: 3,
        ..ServerConfig::default()
    };
    let (mut s, r) = ready_server(config);
    let big = header(r, GpadlId(1), 65);
    assert_eq!(
        apply(&mut s, big[0].clone()),
        Err(ProtocolError::GpadlTooLarge {
            pages: 65,
            limit: 64
        })
    );
    for m in header(r, GpadlId(1), 60) {
        apply(&mut s, m).unwrap();
    }
    // 60 + 41 > 100 pages in total.
    assert_eq!(
        apply(&mut s, header(r, GpadlId(2), 41).remove(0)),
        Err(ProtocolError::GpadlResourcesExhausted)
    );
    apply(&mut s, header(r, GpadlId(2), 40).remove(0)).unwrap(); // assembling, counts already
    assert_eq!(s.total_gpadl_pages(), 100);
    assert_eq!(
        apply(&mut s, header(r, GpadlId(3), 1).remove(0)),
        Err(ProtocolError::GpadlResourcesExhausted)
    );
    // Tearing down the incomplete one gives its pages back.
    apply(
        &mut s,
        ChannelMessage::GpadlTeardown(GpadlTeardown {
            child_relid: r,
            gpadl: GpadlId(2),
        }),
    )
    .unwrap();
    assert_eq!(s.total_gpadl_pages(), 60);
    apply(&mut s, header(r, GpadlId(3), 1).remove(0)).unwrap();
    apply(&mut s, header(r, GpadlId(4), 1).remove(0)).unwrap();
    // Three GPADLs exist: the count limit applies.
    assert_eq!(
        apply(&mut s, header(r, GpadlId(5), 1).remove(0)),
        Err(ProtocolError::GpadlResourcesExhausted)
    );
}

#[test]
fn gpadl_body_abuse_is_rejected() {
    let (mut s, r) = ready_server(ServerConfig::default());
    let body = |gpadl, n: usize| {
        ChannelMessage::GpadlBody(GpadlBody {
            msg_number: 0,
            gpadl: GpadlId(gpadl),
            data: vec![7; n],
        })
    };
    assert_eq!(
        apply(&mut s, body(9, 1)),
        Err(ProtocolError::GpadlBodyWithoutHeader(GpadlId(9)))
    );
    let msgs = header(r, GpadlId(9), 30); // 31 words: header 27, body 4
    apply(&mut s, msgs[0].clone()).unwrap();
    assert_eq!(
        apply(&mut s, msgs[0].clone()),
        Err(ProtocolError::DuplicateGpadl(GpadlId(9)))
    );
    assert_eq!(
        apply(&mut s, body(9, 5)),
        Err(ProtocolError::GpadlOverflow {
            gpadl: GpadlId(9),
            expected: 31
        })
    );
    apply(&mut s, msgs[1].clone()).unwrap();
    assert_eq!(s.gpadl_phase(GpadlId(9)), Some(GpadlPhase::Created));
    // A body after completion has no header in progress.
    assert_eq!(
        apply(&mut s, body(9, 1)),
        Err(ProtocolError::GpadlBodyWithoutHeader(GpadlId(9)))
    );
    // GPADL IDs are per connection: another channel cannot reuse or tear down this one.
    let (r2, _) = s
        .offer(OfferParams::new(device_class::NETVSC, Guid::ZERO, 2))
        .unwrap();
    assert_eq!(
        apply(&mut s, header(r2, GpadlId(9), 1).remove(0)),
        Err(ProtocolError::DuplicateGpadl(GpadlId(9)))
    );
    assert_eq!(
        apply(
            &mut s,
            ChannelMessage::GpadlTeardown(GpadlTeardown {
                child_relid: r2,
                gpadl: GpadlId(9)
            })
        ),
        Err(ProtocolError::GpadlWrongChannel {
            gpadl: GpadlId(9),
            relid: r2
        })
    );
}

#[test]
fn inconsistent_multi_range_gpadl_is_refused_with_a_status() {
    let (mut s, r) = ready_server(ServerConfig::default());
    // Two ranges announced; the header is valid on its own, but the second range's header
    // word (in the body) has a zero byte count.
    let first = gpadl::range_header_word(4096, 0);
    let h = ChannelMessage::GpadlHeader(GpadlHeader {
        child_relid: r,
        gpadl: GpadlId(5),
        range_buflen: 32,
        range_count: 2,
        data: vec![first, 100],
    });
    apply(&mut s, h).unwrap();
    let actions = s
        .handle(ChannelMessage::GpadlBody(GpadlBody {
            msg_number: 1,
            gpadl: GpadlId(5),
            data: vec![gpadl::range_header_word(0, 0), 200],
        }))
        .unwrap();
    assert!(actions.as_slice().iter().any(|a| matches!(
        a,
        vmbus_core::server::ServerAction::Send(ChannelMessage::GpadlCreated(GpadlCreated {
            status: status::INVALID_PARAMETER,
            ..
        }))
    )));
    assert_eq!(s.gpadl_phase(GpadlId(5)), None);
    assert_eq!(s.total_gpadl_pages(), 0);
}

/// Messages drawn from a small ID space so that sequences hit real channels and GPADLs.
fn hostile_message() -> impl Strategy<Value = ChannelMessage> {
    let relid = (0u32..4).prop_map(ChannelId);
    let gpadl = (0u32..4).prop_map(GpadlId);
    prop_oneof![
        Just(ChannelMessage::RequestOffers),
        Just(ChannelMessage::Unload),
        (0u32..2).prop_map(|i| ChannelMessage::InitiateContact(InitiateContact {
            version: [VersionNumber::WIN10_V5_3, VersionNumber::WIN7][i as usize],
            target_vcpu: 0,
            interrupt: if i == 0 {
                InterruptTarget::Sint { sint: 2, vtl: 0 }
            } else {
                InterruptTarget::Page(0)
            },
            monitor_page1: 0,
            monitor_page2: 0,
        })),
        (relid.clone(), gpadl.clone(), 1u64..80).prop_map(|(r, g, n)| {
            // Sometimes the whole GPADL, sometimes only its header.
            header(r, g, n).remove(0)
        }),
        (gpadl.clone(), 1usize..30).prop_map(|(g, n)| ChannelMessage::GpadlBody(GpadlBody {
            msg_number: 0,
            gpadl: g,
            data: vec![5; n],
        })),
        (relid.clone(), gpadl.clone()).prop_map(|(r, g)| ChannelMessage::GpadlTeardown(
            GpadlTeardown {
                child_relid: r,
                gpadl: g
            }
        )),
        (relid.clone(), gpadl.clone(), 0u32..6).prop_map(|(r, g, off)| {
            ChannelMessage::OpenChannel(OpenChannel {
                child_relid: r,
                open_id: 1,
                ring_gpadl: g,
                target_vp: 0,
                downstream_page_offset: off,
                user_data: UserDefined::default(),
            })
        }),
        relid
            .clone()
            .prop_map(|r| ChannelMessage::CloseChannel { child_relid: r }),
        relid
            .clone()
            .prop_map(|r| ChannelMessage::RelIdReleased { child_relid: r }),
        relid.prop_map(|r| ChannelMessage::ModifyChannel(ModifyChannel {
            child_relid: r,
            target_vp: 3
        })),
    ]
}

#[derive(Clone, Debug)]
enum Step {
    Client(ChannelMessage),
    CompleteOpen(u32, bool),
    CompleteClose(u32),
    Rescind(u32),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => hostile_message().prop_map(Step::Client),
        1 => (0u32..4, any::<bool>()).prop_map(|(r, ok)| Step::CompleteOpen(r, ok)),
        1 => (0u32..4).prop_map(Step::CompleteClose),
        1 => (0u32..4).prop_map(Step::Rescind),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_sequences_keep_the_server_consistent(steps in proptest::collection::vec(step(), 1..60)) {
        let config = ServerConfig { max_total_gpadl_pages: 200, max_gpadls: 6, ..ServerConfig::default() };
        let mut s = Server::new(config);
        for i in 0..3 {
            s.offer(OfferParams::new(device_class::MICA_ECHO, Guid::ZERO, i)).unwrap();
        }
        for st in steps {
            let before = s.clone();
            let r = match st {
                Step::Client(m) => s.handle(m).map(drop),
                Step::CompleteOpen(r, ok) => s
                    .complete_open(ChannelId(r), if ok { status::SUCCESS } else { status::UNSUCCESSFUL })
                    .map(drop),
                Step::CompleteClose(r) => s.complete_close(ChannelId(r)).map(drop),
                Step::Rescind(r) => s.rescind(ChannelId(r)).map(drop),
            };
            if r.is_err() {
                prop_assert_eq!(&s, &before);
            }
            prop_assert!(s.total_gpadl_pages() <= 200);
            if s.connection_phase() == ConnectionPhase::Disconnected {
                prop_assert_eq!(s.total_gpadl_pages(), 0);
            }
        }
    }
}
