//! Property tests: random packet sizes and kinds across small rings, with wraparound, never lose,
//! duplicate or corrupt a packet; the reader sees exactly the writer's sequence, and the writer's
//! signal and full decisions match a model of the ring.
#![cfg(not(loom))]

use std::collections::VecDeque;

use proptest::prelude::*;
use vmbus_ring::{
    FlatRingMem, GpaRange, OutgoingPacket, Packet, PacketKind, ReadError, RingReader, RingWriter,
    TransferPageRange, WriteError,
};

#[derive(Debug, Clone)]
enum Op {
    /// Write a packet of this kind (0..4) and payload length.
    Write(u8, usize),
    /// Read one packet.
    Read,
    /// Peek one packet without committing.
    Peek,
    /// Commit what was peeked.
    Commit,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..4, 0usize..90).prop_map(|(kind, len)| Op::Write(kind, len)),
        2 => Just(Op::Read),
        1 => Just(Op::Peek),
        1 => Just(Op::Commit),
    ]
}

/// Payload bytes that identify the packet and the position.
fn payload(seq: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seq as usize * 31 + i * 7) as u8)
        .collect()
}

const PFNS: [u64; 2] = [0x1234, 0x1235];

/// Builds packet `seq` of `kind` and calls `f` with it.
fn with_packet<R>(seq: u64, kind: u8, body: &[u8], f: impl FnOnce(&OutgoingPacket<'_>) -> R) -> R {
    let xfer = [TransferPageRange::new(seq as u32, 8)];
    let gpa = [GpaRange::new(4096, 16, &PFNS).unwrap()];
    let packet = match kind {
        0 => OutgoingPacket::in_band(seq, body),
        1 => OutgoingPacket::completion(seq, body),
        2 => OutgoingPacket::transfer_pages(seq, 3, false, &xfer, body),
        _ => OutgoingPacket::gpa_direct(seq, &gpa, body),
    };
    f(&packet.with_completion_requested(seq.is_multiple_of(2)))
}

/// Checks that `bytes` is packet `seq` of `kind` with payload length `len`.
fn check_packet(bytes: &[u8], seq: u64, kind: u8, len: usize) {
    let packet = Packet::parse(bytes).expect("parse");
    assert_eq!(packet.transaction_id, seq);
    assert_eq!(packet.completion_requested(), seq.is_multiple_of(2));
    assert_eq!(&packet.payload[..len], &payload(seq, len)[..]);
    assert!(packet.payload[len..].iter().all(|&b| b == 0));
    assert_eq!(packet.payload.len(), len.div_ceil(8) * 8);
    match (kind, packet.kind) {
        (0, PacketKind::InBand) | (1, PacketKind::Completion) => {}
        (2, PacketKind::TransferPages(x)) => {
            assert_eq!(x.ranges, &[TransferPageRange::new(seq as u32, 8)]);
        }
        (3, PacketKind::GpaDirect(g)) => {
            let ranges: Vec<_> = g
                .ranges()
                .map(|r| (r.byte_count, r.byte_offset, r.pfns().collect::<Vec<_>>()))
                .collect();
            assert_eq!(ranges, vec![(4096, 16, PFNS.to_vec())]);
        }
        (kind, other) => panic!("kind {kind} came back as {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn reader_sees_exactly_the_writers_sequence(
        words in 4u32..40,
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let data_len = words * 8;
        let mem = FlatRingMem::new(data_len).unwrap();
        let mut writer = RingWriter::new(&mem).unwrap();
        let mut reader = RingReader::new(&mem).unwrap();
        // Packets written and not yet committed: (seq, kind, payload len, ring bytes).
        let mut in_ring: VecDeque<(u64, u8, usize, u32)> = VecDeque::new();
        let mut peeked = 0usize;
        let mut next_seq = 0u64;
        let mut next_read = 0u64;
        let mut buf = vec![0u8; 1024];

        for op in ops {
            match op {
                Op::Write(kind, len) => {
                    let seq = next_seq;
                    let body = payload(seq, len);
                    let ring_len = with_packet(seq, kind, &body, |p| p.ring_len()) as u32;
                    let used: u32 = in_ring.iter().map(|e| e.3).sum();
                    let free = data_len - 8 - used;
                    let result = with_packet(seq, kind, &body, |p| writer.try_write(p));
                    if ring_len > data_len - 8 {
                        prop_assert!(matches!(result, Err(WriteError::TooLarge { .. })), "{result:?}");
                    } else if ring_len > free {
                        prop_assert_eq!(result, Err(WriteError::Full { needed: ring_len, free }));
                    } else {
                        // The reader's published index equals our start only if it committed
                        // everything: then the writer must signal (the mask is never set here).
                        let outcome = result.unwrap();
                        prop_assert_eq!(outcome.signal, in_ring.is_empty());
                        in_ring.push_back((seq, kind, len, ring_len));
                        next_seq += 1;
                    }
                }
                Op::Read | Op::Peek => {
                    let result = if matches!(op, Op::Read) {
                        reader.try_read(&mut buf).map(|o| o.len)
                    } else {
                        reader.peek(&mut buf)
                    };
                    match in_ring.get(peeked) {
                        // Nothing was read, so a read does not commit earlier peeks either.
                        None => prop_assert_eq!(result, Err(ReadError::Empty)),
                        Some(&(seq, kind, len, _)) => {
                            prop_assert_eq!(seq, next_read);
                            let got = result.unwrap();
                            check_packet(&buf[..got], seq, kind, len);
                            next_read += 1;
                            peeked += 1;
                            if matches!(op, Op::Read) {
                                in_ring.drain(..peeked);
                                peeked = 0;
                            }
                        }
                    }
                }
                Op::Commit => {
                    let _ = reader.commit();
                    in_ring.drain(..peeked);
                    peeked = 0;
                }
            }
            prop_assert_eq!(reader.has_data(), peeked < in_ring.len());
        }
        // Drain: everything written comes out, in order, once.
        let _ = reader.commit();
        in_ring.drain(..peeked);
        while let Some((seq, kind, len, _)) = in_ring.pop_front() {
            let got = reader.try_read(&mut buf).unwrap().len;
            check_packet(&buf[..got], seq, kind, len);
            next_read += 1;
        }
        prop_assert_eq!(reader.try_read(&mut buf), Err(ReadError::Empty));
        prop_assert_eq!(next_read, next_seq);
    }

    /// Whatever bytes a hostile peer leaves in the ring, draining it ends with `Empty` or an
    /// error after a bounded number of packets, and never panics.
    #[test]
    fn hostile_rings_drain_without_panicking(
        control in proptest::collection::vec(any::<u8>(), 0..80),
        words in 4usize..64,
        seed in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut data = vec![0u8; words * 8];
        for (d, s) in data.iter_mut().zip(seed.iter().cycle()) {
            *d = *s;
        }
        let mem = FlatRingMem::from_bytes(&control, &data).unwrap();
        if let Ok(mut reader) = RingReader::new(&mem) {
            let mut buf = vec![0u8; 256];
            let mut reads = 0;
            while let Ok(outcome) = reader.try_read(&mut buf) {
                let _ = Packet::parse(&buf[..outcome.len]);
                reads += 1;
                prop_assert!(reads <= data.len() / 24, "more packets than fit");
            }
        }
        if let Ok(mut writer) = RingWriter::new(&mem) {
            let _ = writer.try_write(&OutgoingPacket::in_band(1, &[1, 2, 3]));
        }
    }
}
