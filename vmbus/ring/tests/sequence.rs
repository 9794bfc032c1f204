//! Property tests: random packet sizes and kinds across small rings, with wraparound, never lose,
//! duplicate or corrupt a packet; the reader sees exactly the writer's sequence, and the writer's
//! signal and full decisions match a model of the ring. Single-packet and batch operations are
//! mixed, so the endpoints' cached peer indices are exercised against every interleaving of
//! writes, peeks, batch reads and commits: a stale cache that let the writer overwrite unread
//! bytes or the reader read unwritten ones would show as a wrong packet.
#![cfg(not(loom))]

use std::collections::VecDeque;

use proptest::prelude::*;
use vmbus_ring::{
    BatchWriteOutcome, FlatRingMem, GpaRange, OutgoingPacket, Packet, PacketBatch, PacketKind,
    ReadError, RingReader, RingWriter, TransferPageRange, WriteError,
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
    /// Write these packets (kind, payload length) with one batch write.
    WriteBatch(Vec<(u8, usize)>),
    /// Peek up to `max` packets into a buffer of `buf` bytes.
    PeekBatch { max: usize, buf: usize },
    /// Read (peek and commit) up to `max` packets into a buffer of `buf` bytes.
    ReadBatch { max: usize, buf: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..4, 0usize..90).prop_map(|(kind, len)| Op::Write(kind, len)),
        2 => Just(Op::Read),
        1 => Just(Op::Peek),
        1 => Just(Op::Commit),
        2 => proptest::collection::vec((0u8..4, 0usize..90), 0..5).prop_map(Op::WriteBatch),
        1 => (0usize..5, 0usize..400).prop_map(|(max, buf)| Op::PeekBatch { max, buf }),
        2 => (0usize..5, 0usize..400).prop_map(|(max, buf)| Op::ReadBatch { max, buf }),
    ]
}

/// Payload bytes that identify the packet and the position.
fn payload(seq: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seq as usize * 31 + i * 7) as u8)
        .collect()
}

const PFNS: [u64; 2] = [0x1234, 0x1235];

/// Builds packet `seq` of `kind` from `body` and the header ranges in `xfer`/`gpa`.
fn build<'a>(
    seq: u64,
    kind: u8,
    body: &'a [u8],
    xfer: &'a [TransferPageRange; 1],
    gpa: &'a [GpaRange<'static>; 1],
) -> OutgoingPacket<'a> {
    let packet = match kind {
        0 => OutgoingPacket::in_band(seq, body),
        1 => OutgoingPacket::completion(seq, body),
        2 => OutgoingPacket::transfer_pages(seq, 3, false, xfer, body),
        _ => OutgoingPacket::gpa_direct(seq, gpa, body),
    };
    packet.with_completion_requested(seq.is_multiple_of(2))
}

/// Header ranges of packet `seq`.
fn ranges(seq: u64) -> ([TransferPageRange; 1], [GpaRange<'static>; 1]) {
    (
        [TransferPageRange::new(seq as u32, 8)],
        [GpaRange::new(4096, 16, &PFNS).unwrap()],
    )
}

/// Builds packet `seq` of `kind` and calls `f` with it.
fn with_packet<R>(seq: u64, kind: u8, body: &[u8], f: impl FnOnce(&OutgoingPacket<'_>) -> R) -> R {
    let (xfer, gpa) = ranges(seq);
    f(&build(seq, kind, body, &xfer, &gpa))
}

/// What a batch read into `buf_len` bytes must return for the unpeeked packets `pending`
/// (seq, kind, payload len, ring bytes): the packets it takes, or the error.
fn expected_batch(
    pending: &[(u64, u8, usize, u32)],
    max: usize,
    buf_len: usize,
) -> Result<usize, ReadError> {
    let available: u32 = pending.iter().map(|e| e.3).sum();
    if available == 0 {
        return Err(ReadError::Empty);
    }
    let room = (buf_len as u32 & !7).min(available);
    let mut off = 0;
    let mut count = 0;
    for &(_, _, _, ring_len) in pending.iter().take(max) {
        let len = ring_len - 8;
        if off + len > room {
            if count == 0 {
                return Err(ReadError::BufferTooSmall {
                    needed: len as usize,
                });
            }
            break;
        }
        off += ring_len;
        count += 1;
    }
    Ok(count)
}

/// Checks a returned batch against the packets it should hold.
fn check_batch(batch: &PacketBatch<'_>, expected: &[(u64, u8, usize, u32)]) {
    assert_eq!(batch.len(), expected.len());
    let got: Vec<&[u8]> = batch.iter().collect();
    assert_eq!(got.len(), expected.len());
    for (bytes, &(seq, kind, len, ring_len)) in got.iter().zip(expected) {
        assert_eq!(bytes.len() as u32, ring_len - 8);
        check_packet(bytes, seq, kind, len);
    }
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
                Op::WriteBatch(specs) => {
                    let was_empty = in_ring.is_empty();
                    let seqs: Vec<u64> = (next_seq..).take(specs.len()).collect();
                    let bodies: Vec<Vec<u8>> = seqs
                        .iter()
                        .zip(&specs)
                        .map(|(&seq, &(_, len))| payload(seq, len))
                        .collect();
                    let headers: Vec<_> = seqs.iter().map(|&seq| ranges(seq)).collect();
                    let packets: Vec<OutgoingPacket<'_>> = specs
                        .iter()
                        .zip(&seqs)
                        .zip(bodies.iter().zip(&headers))
                        .map(|((&(kind, _), &seq), (body, (xfer, gpa)))| {
                            build(seq, kind, body, xfer, gpa)
                        })
                        .collect();
                    // The model: the longest prefix that fits, an error if none of it does.
                    let mut free = data_len - 8 - in_ring.iter().map(|e| e.3).sum::<u32>();
                    let mut expected = Ok(0);
                    for (i, packet) in packets.iter().enumerate() {
                        let ring_len = packet.ring_len() as u32;
                        let error = if ring_len > data_len - 8 {
                            Some(WriteError::TooLarge { needed: ring_len.into(), max: data_len - 8 })
                        } else if ring_len > free {
                            Some(WriteError::Full { needed: ring_len, free })
                        } else {
                            None
                        };
                        if let Some(error) = error {
                            if i == 0 {
                                expected = Err(error);
                            }
                            break;
                        }
                        free -= ring_len;
                        expected = Ok(i + 1);
                    }
                    let result = writer.try_write_batch(&packets);
                    match expected {
                        Err(error) => prop_assert_eq!(result, Err(error)),
                        Ok(written) => {
                            prop_assert_eq!(
                                result,
                                Ok(BatchWriteOutcome { written, signal: written > 0 && was_empty })
                            );
                            for ((&seq, &(kind, len)), packet) in
                                seqs.iter().zip(&specs).zip(&packets).take(written)
                            {
                                in_ring.push_back((seq, kind, len, packet.ring_len() as u32));
                            }
                            next_seq += written as u64;
                        }
                    }
                }
                Op::PeekBatch { max, buf: buf_len } | Op::ReadBatch { max, buf: buf_len } => {
                    let commit = matches!(op, Op::ReadBatch { .. });
                    let pending: Vec<_> = in_ring.iter().skip(peeked).copied().collect();
                    let expected = expected_batch(&pending, max, buf_len);
                    let mut batch_buf = vec![0u8; buf_len];
                    let result = if commit {
                        reader.read_batch(&mut batch_buf, max).map(|b| b.packets)
                    } else {
                        reader.peek_batch(&mut batch_buf, max)
                    };
                    match expected {
                        Err(error) => prop_assert_eq!(result.map(|b| b.len()), Err(error)),
                        Ok(count) => {
                            let batch = result.unwrap();
                            check_batch(&batch, &pending[..count]);
                            if let (Some(&(seq, ..)), true) = (pending.first(), count > 0) {
                                prop_assert_eq!(seq, next_read);
                            }
                            next_read += count as u64;
                            peeked += count;
                            if commit {
                                in_ring.drain(..peeked);
                                peeked = 0;
                            }
                        }
                    }
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

    /// The same with the batch paths: batch reads of any buffer size end after a bounded number
    /// of calls, return only packets whose length fits what was published, and never panic; a
    /// batch write either writes a prefix or fails with a typed error.
    #[test]
    fn hostile_rings_drain_in_batches_without_panicking(
        control in proptest::collection::vec(any::<u8>(), 0..80),
        words in 4usize..64,
        seed in proptest::collection::vec(any::<u8>(), 0..512),
        buf_len in 0usize..300,
        max in 1usize..8,
    ) {
        let mut data = vec![0u8; words * 8];
        for (d, s) in data.iter_mut().zip(seed.iter().cycle()) {
            *d = *s;
        }
        let mem = FlatRingMem::from_bytes(&control, &data).unwrap();
        if let Ok(mut reader) = RingReader::new(&mem) {
            let mut buf = vec![0u8; buf_len];
            let mut packets = 0;
            let mut calls = 0;
            while let Ok(batch) = reader.read_batch(&mut buf, max) {
                prop_assert!(!batch.packets.is_empty());
                for bytes in batch.packets {
                    prop_assert!(bytes.len() >= 16 && bytes.len() % 8 == 0);
                    let _ = Packet::parse(bytes);
                    packets += 1;
                }
                calls += 1;
                prop_assert!(packets <= data.len() / 24, "more packets than fit");
                prop_assert!(calls <= data.len() / 24, "a call without progress");
            }
        }
        if let Ok(mut writer) = RingWriter::new(&mem) {
            let packets = [
                OutgoingPacket::in_band(1, &[1, 2, 3]),
                OutgoingPacket::completion(2, &[4; 40]),
            ];
            if let Ok(outcome) = writer.try_write_batch(&packets) {
                prop_assert!(outcome.written >= 1 && outcome.written <= 2);
            }
        }
    }
}
