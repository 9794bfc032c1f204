//! Round trips, byte-exact layouts and hostile-input properties of the channel messages.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use vmbus_protocol::*;

// ---- strategies -------------------------------------------------------------------------

fn guid() -> impl Strategy<Value = Guid> {
    any::<[u8; 16]>().prop_map(Guid::from_bytes)
}

fn user_defined() -> impl Strategy<Value = UserDefined> {
    proptest::collection::vec(any::<u8>(), USER_DEFINED_SIZE).prop_map(|v| {
        let mut a = [0u8; USER_DEFINED_SIZE];
        a.copy_from_slice(&v);
        UserDefined(a)
    })
}

fn relid() -> impl Strategy<Value = ChannelId> {
    any::<u32>().prop_map(ChannelId)
}

fn gpadl_id() -> impl Strategy<Value = GpadlId> {
    any::<u32>().prop_map(GpadlId)
}

/// A valid range of up to 40 pages.
fn gpa_range() -> impl Strategy<Value = GpaRange> {
    (0u32..PAGE_SIZE, 1u32..40 * PAGE_SIZE).prop_flat_map(|(off, count)| {
        let n = gpadl::pfn_count(off, count).unwrap();
        proptest::collection::vec(any::<u64>(), n)
            .prop_map(move |pfns| GpaRange::new(off, count, pfns).unwrap())
    })
}

/// A valid GPADL header: the first 1..=27 words of a real range buffer.
fn gpadl_header() -> impl Strategy<Value = GpadlHeader> {
    (
        relid(),
        gpadl_id(),
        proptest::collection::vec(gpa_range(), 1..4),
    )
        .prop_flat_map(|(relid, gpadl, ranges)| {
            let words = gpadl::range_buffer(&ranges);
            let max = words.len().min(GpadlHeader::MAX_WORDS);
            let count = ranges.len() as u16;
            (1..=max).prop_map(move |k| GpadlHeader {
                child_relid: relid,
                gpadl,
                range_buflen: (words.len() * 8) as u16,
                range_count: count,
                data: words[..k].to_vec(),
            })
        })
}

fn initiate_contact() -> impl Strategy<Value = InitiateContact> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u64>(),
        any::<(u8, u8)>(),
        any::<(u64, u64)>(),
    )
        .prop_map(|(v, vcpu, page, (sint, vtl), (m1, m2))| {
            let version = VersionNumber(v);
            InitiateContact {
                version,
                target_vcpu: vcpu,
                interrupt: if version.uses_message_sint() {
                    InterruptTarget::Sint { sint, vtl }
                } else {
                    InterruptTarget::Page(page)
                },
                monitor_page1: m1,
                monitor_page2: m2,
            }
        })
}

fn offer() -> impl Strategy<Value = OfferChannel> {
    (
        (guid(), guid(), any::<u16>(), any::<u16>(), user_defined()),
        (
            any::<u16>(),
            relid(),
            any::<u8>(),
            any::<bool>(),
            any::<bool>(),
            any::<u32>(),
        ),
    )
        .prop_map(
            |((t, i, flags, mmio, ud), (sub, relid, mon, alloc, ded, conn))| OfferChannel {
                interface_type: t,
                instance: i,
                flags: OfferFlags::from_bits_retain(flags),
                mmio_megabytes: mmio,
                user_defined: ud,
                sub_channel_index: sub,
                child_relid: relid,
                monitor_id: mon,
                monitor_allocated: alloc,
                dedicated_interrupt: ded,
                connection_id: conn,
            },
        )
}

/// Every valid message of every type.
fn message() -> impl Strategy<Value = ChannelMessage> {
    use ChannelMessage as M;
    prop_oneof![
        offer().prop_map(M::OfferChannel),
        relid().prop_map(|c| M::RescindChannelOffer { child_relid: c }),
        Just(M::RequestOffers),
        Just(M::AllOffersDelivered),
        (
            relid(),
            any::<u32>(),
            gpadl_id(),
            any::<(u32, u32)>(),
            user_defined()
        )
            .prop_map(|(c, id, g, (vp, off), ud)| M::OpenChannel(OpenChannel {
                child_relid: c,
                open_id: id,
                ring_gpadl: g,
                target_vp: vp,
                downstream_page_offset: off,
                user_data: ud,
            })),
        (relid(), any::<u32>(), any::<u32>()).prop_map(|(c, id, s)| M::OpenChannelResult(
            OpenResult {
                child_relid: c,
                open_id: id,
                status: s
            }
        )),
        relid().prop_map(|c| M::CloseChannel { child_relid: c }),
        gpadl_header().prop_map(M::GpadlHeader),
        (
            any::<u32>(),
            gpadl_id(),
            proptest::collection::vec(any::<u64>(), 1..=28)
        )
            .prop_map(|(n, g, data)| M::GpadlBody(GpadlBody {
                msg_number: n,
                gpadl: g,
                data
            })),
        (relid(), gpadl_id(), any::<u32>()).prop_map(|(c, g, s)| M::GpadlCreated(GpadlCreated {
            child_relid: c,
            gpadl: g,
            status: s
        })),
        (relid(), gpadl_id()).prop_map(|(c, g)| M::GpadlTeardown(GpadlTeardown {
            child_relid: c,
            gpadl: g
        })),
        gpadl_id().prop_map(|g| M::GpadlTorndown { gpadl: g }),
        relid().prop_map(|c| M::RelIdReleased { child_relid: c }),
        initiate_contact().prop_map(M::InitiateContact),
        (any::<bool>(), any::<u8>(), any::<u32>()).prop_map(|(ok, st, id)| M::VersionResponse(
            VersionResponse {
                version_supported: ok,
                connection_state: ConnectionState(st),
                message_connection_id: id,
            }
        )),
        Just(M::Unload),
        Just(M::UnloadResponse),
        (guid(), guid()).prop_map(|(e, s)| M::TlConnectRequest(TlConnectRequest {
            endpoint_id: e,
            service_id: s
        })),
        (relid(), any::<u32>()).prop_map(|(c, vp)| M::ModifyChannel(ModifyChannel {
            child_relid: c,
            target_vp: vp
        })),
        (guid(), guid(), any::<u32>()).prop_map(|(e, s, st)| M::TlConnectResult(TlConnectResult {
            endpoint_id: e,
            service_id: s,
            status: st
        })),
        (relid(), any::<u32>()).prop_map(|(c, s)| M::ModifyChannelResponse(
            ModifyChannelResponse {
                child_relid: c,
                status: s
            }
        )),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decode_of_encode_is_identity(m in message()) {
        let bytes = m.to_vec().unwrap();
        prop_assert_eq!(bytes.len(), m.encoded_len());
        prop_assert!(bytes.len() <= MAX_MESSAGE_SIZE);
        prop_assert_eq!(ChannelMessage::decode(&bytes), Ok(m));
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        // Whatever decodes must re-encode to something that decodes to the same value.
        if let Ok(m) = ChannelMessage::decode(&bytes) {
            let again = m.to_vec().unwrap();
            prop_assert_eq!(ChannelMessage::decode(&again), Ok(m));
        }
    }

    #[test]
    fn random_bytes_with_valid_type_never_panic(
        t in 0u32..26,
        body in proptest::collection::vec(any::<u8>(), 0..240),
    ) {
        let mut bytes = t.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0; 4]);
        bytes.extend_from_slice(&body);
        if let Ok(m) = ChannelMessage::decode(&bytes) {
            prop_assert_eq!(m.message_type() as u32, t);
            prop_assert_eq!(ChannelMessage::decode(&m.to_vec().unwrap()), Ok(m));
        }
    }

    #[test]
    fn truncated_or_extended_fixed_messages_are_rejected(m in message(), extra in 1usize..9) {
        if matches!(m, ChannelMessage::GpadlHeader(_) | ChannelMessage::GpadlBody(_)) {
            return Ok(());
        }
        let bytes = m.to_vec().unwrap();
        let short = &bytes[..bytes.len() - 1];
        prop_assert!(ChannelMessage::decode(short).is_err());
        let mut long = bytes.clone();
        long.extend(core::iter::repeat_n(0, extra));
        prop_assert!(ChannelMessage::decode(&long).is_err());
    }

    #[test]
    fn gpadl_split_reassembles(ranges in proptest::collection::vec(gpa_range(), 1..4)) {
        let msgs = gpadl_messages(ChannelId(3), GpadlId(9), &ranges).unwrap();
        let mut words = Vec::new();
        let mut count = 0;
        for (i, m) in msgs.iter().enumerate() {
            let bytes = m.to_vec().unwrap();
            prop_assert!(bytes.len() <= MAX_MESSAGE_SIZE);
            match ChannelMessage::decode(&bytes).unwrap() {
                ChannelMessage::GpadlHeader(h) => {
                    prop_assert_eq!(i, 0);
                    count = h.range_count;
                    prop_assert_eq!(h.total_words(), gpadl::range_buffer(&ranges).len());
                    words.extend(h.data);
                }
                ChannelMessage::GpadlBody(b) => {
                    prop_assert!(i > 0);
                    prop_assert_eq!(b.msg_number as usize, i);
                    words.extend(b.data);
                }
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
        // Every message but the last is full.
        for m in &msgs[..msgs.len() - 1] {
            prop_assert!(m.encoded_len() > MAX_MESSAGE_SIZE - 8);
        }
        prop_assert_eq!(gpadl::parse_ranges(count, &words), Ok(ranges));
    }
}

// ---- byte-exact layouts -----------------------------------------------------------------

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}

#[test]
fn offer_layout_is_linux_layout() {
    let m = ChannelMessage::OfferChannel(OfferChannel {
        interface_type: device_class::STORVSC,
        instance: Guid::from_fields(0x1122_3344, 0x5566, 0x7788, [1, 2, 3, 4, 5, 6, 7, 8]),
        flags: OfferFlags::NAMED_PIPE_MODE,
        mmio_megabytes: 0x0102,
        user_defined: UserDefined::default().with_pipe_mode(PIPE_TYPE_MESSAGE),
        sub_channel_index: 5,
        child_relid: ChannelId(0xabcd),
        monitor_id: 7,
        monitor_allocated: true,
        dedicated_interrupt: true,
        connection_id: 0x2001,
    });
    let b = m.to_vec().unwrap();
    assert_eq!(b.len(), 196);
    assert_eq!(le32(&b, 0), 1); // CHANNELMSG_OFFERCHANNEL
    assert_eq!(le32(&b, 4), 0);
    assert_eq!(&b[8..12], &[0xd9, 0x63, 0x61, 0xba]); // if_type data1, little-endian
    assert_eq!(
        &b[24..32],
        &[0x44, 0x33, 0x22, 0x11, 0x66, 0x55, 0x88, 0x77]
    );
    assert_eq!(&b[32..40], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert!(b[40..56].iter().all(|&x| x == 0)); // reserved1, reserved2
    assert_eq!(le16(&b, 56), 0x10); // chn_flags
    assert_eq!(le16(&b, 58), 0x0102); // mmio_megabytes
    assert_eq!(le32(&b, 60), 4); // pipe_mode at the start of user_def
    assert_eq!(le16(&b, 180), 5); // sub_channel_index
    assert_eq!(le16(&b, 182), 0); // reserved3
    assert_eq!(le32(&b, 184), 0xabcd); // child_relid
    assert_eq!(b[188], 7); // monitorid
    assert_eq!(b[189], 1); // monitor_allocated:1
    assert_eq!(le16(&b, 190), 1); // is_dedicated_interrupt:1
    assert_eq!(le32(&b, 192), 0x2001); // connection_id
}

#[test]
fn gpadl_header_layout_is_linux_layout() {
    // Linux: one range, offset 0, 2 pages: range_buflen = sizeof(gpa_range) + 2 * 8 = 24.
    let range = GpaRange::whole_pages(vec![0x1000, 0x2000]).unwrap();
    let msgs = gpadl_messages(ChannelId(4), GpadlId(0xE1E10), &[range]).unwrap();
    assert_eq!(msgs.len(), 1);
    let b = msgs[0].to_vec().unwrap();
    assert_eq!(b.len(), 20 + 8 + 16);
    assert_eq!(le32(&b, 0), 8);
    assert_eq!(le32(&b, 8), 4);
    assert_eq!(le32(&b, 12), 0xE1E10);
    assert_eq!(le16(&b, 16), 24); // range_buflen
    assert_eq!(le16(&b, 18), 1); // rangecount
    assert_eq!(le32(&b, 20), 8192); // byte_count
    assert_eq!(le32(&b, 24), 0); // byte_offset
    assert_eq!(&b[28..36], &0x1000u64.to_le_bytes());
    assert_eq!(&b[36..44], &0x2000u64.to_le_bytes());
}

#[test]
fn gpadl_split_matches_linux_counts() {
    // Linux: 26 PFNs in the header, 28 per body. 100 pages -> header 26, bodies 28, 28, 18.
    let range = GpaRange::whole_pages((0..100).collect()).unwrap();
    let msgs = gpadl_messages(ChannelId(1), GpadlId(2), &[range]).unwrap();
    let sizes: Vec<usize> = msgs.iter().map(ChannelMessage::encoded_len).collect();
    assert_eq!(
        sizes,
        vec![20 + 8 + 26 * 8, 16 + 28 * 8, 16 + 28 * 8, 16 + 18 * 8]
    );
    assert_eq!(sizes[0], 236);
    assert_eq!(sizes[1], 240);
}

#[test]
fn gpadl_split_rejects_oversized_buffers() {
    // 8190 pages is the most a 16-bit range_buflen describes for one range.
    let max = GpaRange::whole_pages((0..8190).collect()).unwrap();
    assert!(gpadl_messages(ChannelId(1), GpadlId(2), &[max]).is_ok());
    let over = GpaRange::whole_pages((0..8191).collect()).unwrap();
    assert_eq!(
        gpadl_messages(ChannelId(1), GpadlId(2), &[over]),
        Err(GpadlSplitError::TooLarge(65536))
    );
    assert_eq!(
        gpadl_messages(ChannelId(1), GpadlId(2), &[]),
        Err(GpadlSplitError::NoRanges)
    );
}

#[test]
fn initiate_contact_layout_depends_on_version() {
    let v5 = ChannelMessage::InitiateContact(InitiateContact {
        version: VersionNumber::WIN10_V5_3,
        target_vcpu: 3,
        interrupt: InterruptTarget::Sint { sint: 2, vtl: 0 },
        monitor_page1: 0x1000,
        monitor_page2: 0x2000,
    });
    let b = v5.to_vec().unwrap();
    assert_eq!(b.len(), 40);
    assert_eq!(le32(&b, 0), 14);
    assert_eq!(le32(&b, 8), 0x0005_0003);
    assert_eq!(le32(&b, 12), 3);
    assert_eq!(&b[16..24], &[2, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&b[24..32], &0x1000u64.to_le_bytes());
    assert_eq!(&b[32..40], &0x2000u64.to_le_bytes());

    let v4 = ChannelMessage::InitiateContact(InitiateContact {
        version: VersionNumber::WIN10,
        target_vcpu: 0,
        interrupt: InterruptTarget::Page(0xdead_b000),
        monitor_page1: 0,
        monitor_page2: 0,
    });
    let b = v4.to_vec().unwrap();
    assert_eq!(&b[16..24], &0xdead_b000u64.to_le_bytes());

    // The form must match the version.
    let wrong = ChannelMessage::InitiateContact(InitiateContact {
        version: VersionNumber::WIN10,
        target_vcpu: 0,
        interrupt: InterruptTarget::Sint { sint: 2, vtl: 0 },
        monitor_page1: 0,
        monitor_page2: 0,
    });
    assert_eq!(
        wrong.to_vec(),
        Err(EncodeError::Invalid(
            InvalidMessage::InterruptTargetMismatch(VersionNumber::WIN10)
        ))
    );
}

#[test]
fn small_message_layouts() {
    let vr = ChannelMessage::VersionResponse(VersionResponse {
        version_supported: true,
        connection_state: ConnectionState::SUCCESSFUL,
        message_connection_id: 4,
    })
    .to_vec()
    .unwrap();
    assert_eq!(vr, [15, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0]);

    let open = ChannelMessage::OpenChannel(OpenChannel {
        child_relid: ChannelId(1),
        open_id: 1,
        ring_gpadl: GpadlId(0xE1E10),
        target_vp: 2,
        downstream_page_offset: 9,
        user_data: UserDefined::default(),
    })
    .to_vec()
    .unwrap();
    assert_eq!(open.len(), 148);
    assert_eq!(le32(&open, 0), 5);
    assert_eq!(le32(&open, 16), 0xE1E10);
    assert_eq!(le32(&open, 20), 2);
    assert_eq!(le32(&open, 24), 9);

    let sizes = [
        (ChannelMessage::RequestOffers, 8),
        (ChannelMessage::Unload, 8),
        (
            ChannelMessage::CloseChannel {
                child_relid: ChannelId(1),
            },
            12,
        ),
        (ChannelMessage::GpadlTorndown { gpadl: GpadlId(1) }, 12),
    ];
    for (m, n) in sizes {
        assert_eq!(m.to_vec().unwrap().len(), n, "{m:?}");
    }
}

// ---- hostile input ----------------------------------------------------------------------

fn gpadl_header_bytes(range_buflen: u16, range_count: u16, words: &[u64]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&8u32.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&2u32.to_le_bytes());
    b.extend_from_slice(&range_buflen.to_le_bytes());
    b.extend_from_slice(&range_count.to_le_bytes());
    for w in words {
        b.extend_from_slice(&w.to_le_bytes());
    }
    b
}

#[test]
fn gpadl_header_inconsistencies_are_typed_errors() {
    let w = gpadl::range_header_word;
    let inv = |e| Err(DecodeError::Invalid(e));
    // Consistent: 1 range of 2 pages.
    assert!(ChannelMessage::decode(&gpadl_header_bytes(24, 1, &[w(8192, 0), 1, 2])).is_ok());
    // Range count zero.
    assert_eq!(
        ChannelMessage::decode(&gpadl_header_bytes(24, 0, &[w(8192, 0), 1, 2])),
        inv(InvalidMessage::NoRanges)
    );
    // Buffer length disagrees with the first range's PFN count.
    assert_eq!(
        ChannelMessage::decode(&gpadl_header_bytes(32, 1, &[w(8192, 0), 1, 2])),
        inv(InvalidMessage::RangeBufLenMismatch {
            range_buflen: 32,
            first_range_pfns: 2
        })
    );
    // Byte count overflowing the PFNs the buffer holds.
    assert_eq!(
        ChannelMessage::decode(&gpadl_header_bytes(24, 1, &[w(8193, 0), 1, 2])),
        inv(InvalidMessage::RangeBufLenMismatch {
            range_buflen: 24,
            first_range_pfns: 3
        })
    );
    // Offset outside the page, zero byte count.
    assert_eq!(
        ChannelMessage::decode(&gpadl_header_bytes(24, 1, &[w(100, 4096), 1, 2])),
        inv(InvalidMessage::FirstRange(RangeError::OffsetOutsidePage(
            4096
        )))
    );
    assert_eq!(
        ChannelMessage::decode(&gpadl_header_bytes(24, 1, &[w(0, 0), 1, 2])),
        inv(InvalidMessage::FirstRange(RangeError::ZeroByteCount))
    );
    // More words than the declared buffer.
    assert_eq!(
        ChannelMessage::decode(&gpadl_header_bytes(16, 1, &[w(4096, 0), 1, 2])),
        inv(InvalidMessage::DataExceedsRangeBufLen {
            words: 3,
            range_buflen: 16
        })
    );
    // Unaligned buffer length, too small for the range count.
    assert_eq!(
        ChannelMessage::decode(&gpadl_header_bytes(23, 1, &[w(8192, 0), 1, 2])),
        inv(InvalidMessage::RangeBufLenUnaligned(23))
    );
    assert_eq!(
        ChannelMessage::decode(&gpadl_header_bytes(24, 2, &[w(8192, 0), 1, 2])),
        inv(InvalidMessage::RangeBufLenTooSmall {
            range_buflen: 24,
            range_count: 2
        })
    );
    // No range data at all, or a partial word.
    assert_eq!(
        ChannelMessage::decode(&gpadl_header_bytes(24, 1, &[])),
        inv(InvalidMessage::EmptyGpadlHeader)
    );
    let mut partial = gpadl_header_bytes(24, 1, &[w(8192, 0)]);
    partial.push(0);
    assert_eq!(
        ChannelMessage::decode(&partial),
        Err(DecodeError::BadVariableLength {
            msgtype: MessageType::GpadlHeader,
            len: 29
        })
    );
}

#[test]
fn framing_errors_are_typed() {
    assert_eq!(ChannelMessage::decode(&[]), Err(DecodeError::TooShort(0)));
    assert_eq!(
        ChannelMessage::decode(&[1, 0, 0]),
        Err(DecodeError::TooShort(3))
    );
    assert_eq!(
        ChannelMessage::decode(&[0; 241]),
        Err(DecodeError::TooLong(241))
    );
    for t in [0u32, 18, 19, 20, 25, u32::MAX] {
        let mut b = t.to_le_bytes().to_vec();
        b.extend_from_slice(&[0; 4]);
        assert_eq!(ChannelMessage::decode(&b), Err(DecodeError::UnknownType(t)));
    }
    // A request-offers with a trailing byte.
    assert_eq!(
        ChannelMessage::decode(&[3, 0, 0, 0, 0, 0, 0, 0, 0]),
        Err(DecodeError::LengthMismatch {
            msgtype: MessageType::RequestOffers,
            expected: 8,
            actual: 9
        })
    );
    // An empty GPADL body.
    assert_eq!(
        ChannelMessage::decode(&[9, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0]),
        Err(DecodeError::Invalid(InvalidMessage::EmptyGpadlBody))
    );
}

#[test]
fn encode_checks_size_and_buffer() {
    let m = ChannelMessage::GpadlBody(GpadlBody {
        msg_number: 0,
        gpadl: GpadlId(1),
        data: vec![0; GpadlBody::MAX_WORDS + 1],
    });
    assert_eq!(m.to_vec(), Err(EncodeError::TooLarge(248)));
    let mut small = [0u8; 11];
    assert_eq!(
        ChannelMessage::CloseChannel {
            child_relid: ChannelId(1)
        }
        .encode(&mut small),
        Err(EncodeError::BufferTooSmall {
            needed: 12,
            available: 11
        })
    );
    let mut big = [0xffu8; 64];
    assert_eq!(ChannelMessage::Unload.encode(&mut big), Ok(8));
    assert_eq!(&big[..8], &[16, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(big[8], 0xff, "encode must not write past the message");
}

#[test]
fn every_message_type_has_a_round_trip_case() {
    // The proptest strategy covers every type; make sure the list itself is complete.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..2000 {
        let m = message().new_tree(&mut runner).unwrap().current();
        seen.insert(m.message_type());
    }
    assert_eq!(seen.len(), MessageType::ALL.len());
    for t in MessageType::ALL {
        assert_eq!(MessageType::from_raw(t as u32), Some(t));
    }
}
