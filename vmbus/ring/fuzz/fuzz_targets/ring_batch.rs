//! Drives the batch APIs of `vmbus_ring` (`RingReader::peek_batch`/`read_batch`,
//! `RingWriter::try_write_batch`) with fuzzer bytes. Whatever the bytes, every call must return
//! `Ok` or a typed error (no panic, no out-of-bounds access, no endless loop) and keep the
//! crate's documented invariants:
//!
//! 1. Static hostile ring, differential: draining a copy of the ring with fuzzer-chosen
//!    `peek_batch`/`read_batch`/`peek`/`commit`/`rollback` calls (buffer sizes and batch limits
//!    from the fuzzer) yields exactly the packets, final error and published read index that
//!    `try_read` one packet at a time yields.
//! 2. Mutating hostile ring: between batch reads the "peer" rewrites the write index, the data
//!    area and the feature bits; every `Ok` batch is well formed.
//! 3. Batch writer against a hostile control page: the peer rewrites the read index, interrupt
//!    mask and feature bits between `try_write_batch` calls; an `Ok` publishes exactly the
//!    packets it reports written, an `Err` publishes nothing.
//!
//! Input layout: bytes `[0, 68)` start the control page (as in `ring_reader`); byte 68 picks the
//! data area's length (`32 * (n + 1)` bytes, so at most 8 KiB: small rings wrap often); the next
//! that many bytes are the data area (zero-padded); the rest is the script of operations.
#![no_main]

use core::sync::atomic::Ordering;

use libfuzzer_sys::fuzz_target;
use vmbus_ring::{
    ControlField, FlatRingMem, MIN_DATA_LEN, OutgoingPacket, Packet, PacketBatch, ReadError,
    RingMem, RingReader, RingWriter, WriteError,
};

const CONTROL_PREFIX: usize = 68;
const DESCRIPTOR_LEN: usize = 16;
const TRAILER_LEN: usize = 8;
/// Smallest ring bytes a packet takes (descriptor plus trailer).
const MIN_PACKET_RING: usize = DESCRIPTOR_LEN + TRAILER_LEN;

/// The fuzzer's operation bytes, read front to back; zero once exhausted.
struct Script<'a>(&'a [u8]);

impl Script<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }
}

/// A buffer length from a selector byte: small and unaligned lengths are interesting, so are
/// lengths around typical packets.
fn buf_len(sel: u8) -> usize {
    match sel % 4 {
        0 => usize::from(sel / 4),
        1 => usize::from(sel) * 8,
        2 => usize::from(sel) * 37,
        _ => 64 * 1024,
    }
}

/// A batch limit from a selector byte (0 is allowed: the ring is checked, nothing taken).
fn max_packets(sel: u8) -> usize {
    match sel {
        255 => usize::MAX,
        n => usize::from(n % 17),
    }
}

/// Checks the documented shape of an `Ok` batch and returns its packets.
fn check_batch(batch: &PacketBatch<'_>, buf_len: usize, max: usize) -> Vec<Vec<u8>> {
    // "Errors only when the first packet cannot be read": an `Ok` takes at least one packet
    // unless told to take none, and never more than asked.
    if max == 0 {
        assert!(batch.is_empty());
    } else {
        assert!((1..=max).contains(&batch.len()));
    }
    let packets: Vec<Vec<u8>> = batch.iter().map(<[u8]>::to_vec).collect();
    assert_eq!(packets.len(), batch.len(), "the iterator yields every packet");
    let mut used = 0usize;
    for packet in &packets {
        assert!(packet.len() >= DESCRIPTOR_LEN && packet.len() % 8 == 0);
        // Descriptor: type (u16), offset8 (u16), len8 (u16), flags (u16), transaction id.
        let len8 = u16::from_le_bytes([packet[4], packet[5]]);
        let offset8 = u16::from_le_bytes([packet[2], packet[3]]);
        assert_eq!(usize::from(len8) * 8, packet.len());
        assert!(offset8 >= 2 && offset8 <= len8);
        let _ = Packet::parse(packet);
        used += packet.len() + TRAILER_LEN;
    }
    // The last trailer may lie outside the buffer.
    assert!(used.saturating_sub(TRAILER_LEN) <= buf_len);
    packets
}

/// Phase 1: batch reads on a static ring agree with one-at-a-time reads.
fn differential(control: &[u8], area: &[u8], script: &mut Script<'_>) {
    let single = FlatRingMem::from_bytes(control, area).expect("the data length is usable");
    let batched = FlatRingMem::from_bytes(control, area).expect("the data length is usable");
    let (Ok(mut one), Ok(mut many)) = (RingReader::new(&single), RingReader::new(&batched)) else {
        return;
    };
    let data_len = area.len();
    let bound = data_len / MIN_PACKET_RING + 2;

    // Reference: `try_read` with a buffer that fits any packet.
    let mut buf = vec![0u8; data_len];
    let mut expected = Vec::new();
    let mut expected_end = None;
    for _ in 0..=bound {
        match one.try_read(&mut buf) {
            Ok(outcome) => expected.push(buf[..outcome.len].to_vec()),
            Err(err) => {
                expected_end = Some(err);
                break;
            }
        }
    }
    let expected_end = expected_end.expect("try_read terminates within the ring's packet bound");
    assert!(!matches!(expected_end, ReadError::BufferTooSmall { .. }));

    // Under test: a fuzzer-chosen mix of batch calls.
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut peeked: Vec<Vec<u8>> = Vec::new();
    let mut rounds = 0usize;
    while !script.is_empty() && rounds < 64 {
        rounds += 1;
        let op = script.byte();
        let len = buf_len(script.byte());
        let max = max_packets(script.byte());
        let mut buf = vec![0u8; len];
        match op % 5 {
            0 => match many.read_batch(&mut buf, max) {
                Ok(batch) => {
                    let packets = check_batch(&batch.packets, len, max);
                    got.append(&mut peeked);
                    got.extend(packets);
                }
                Err(ReadError::BufferTooSmall { needed }) => assert!(needed > len),
                Err(_) => {}
            },
            1 => match many.peek_batch(&mut buf, max) {
                Ok(batch) => peeked.extend(check_batch(&batch, len, max)),
                Err(ReadError::BufferTooSmall { needed }) => assert!(needed > len),
                Err(_) => {}
            },
            2 => match many.peek(&mut buf) {
                Ok(n) => peeked.push(buf[..n].to_vec()),
                Err(ReadError::BufferTooSmall { needed }) => assert!(needed > len),
                Err(_) => {}
            },
            3 => {
                let _ = many.commit();
                got.append(&mut peeked);
            }
            _ => {
                many.rollback();
                peeked.clear();
            }
        }
    }
    let _ = many.commit();
    got.append(&mut peeked);
    // Drain the rest in batches.
    let mut buf = vec![0u8; data_len];
    let mut end = None;
    for _ in 0..=bound {
        match many.read_batch(&mut buf, 7) {
            Ok(batch) => got.extend(check_batch(&batch.packets, data_len, 7)),
            Err(err) => {
                end = Some(err);
                break;
            }
        }
    }
    let end = end.expect("read_batch terminates within the ring's packet bound");
    assert_eq!(got, expected, "batch reads return the packets try_read returns");
    assert_eq!(end, expected_end, "and end on the same error");
    assert_eq!(
        single.load_control(ControlField::ReadIndex, Ordering::Relaxed),
        batched.load_control(ControlField::ReadIndex, Ordering::Relaxed),
        "and publish the same read index"
    );
}

/// Phase 2: batch reads while the peer rewrites the ring.
fn mutating(control: &[u8], area: &[u8], script: &mut Script<'_>) {
    let mem = FlatRingMem::from_bytes(control, area).expect("the data length is usable");
    let Ok(mut reader) = RingReader::new(&mem) else {
        return;
    };
    let data_len = mem.data_len();
    let mut rounds = 0usize;
    while !script.is_empty() && rounds < 64 {
        rounds += 1;
        let op = script.byte();
        match op % 8 {
            0 | 1 => {
                let len = buf_len(script.byte());
                let max = max_packets(script.byte());
                let mut buf = vec![0u8; len];
                let result = if op % 8 == 0 {
                    reader.read_batch(&mut buf, max).map(|b| b.packets)
                } else {
                    reader.peek_batch(&mut buf, max)
                };
                match result {
                    Ok(batch) => {
                        check_batch(&batch, len, max);
                    }
                    Err(ReadError::BufferTooSmall { needed }) => assert!(needed > len),
                    Err(_) => {}
                }
            }
            2 => {
                let _ = reader.commit();
            }
            3 => reader.rollback(),
            4 => {
                // The peer moves the write index: anywhere (often corrupt) or to an aligned
                // in-range spot.
                let raw = script.u32();
                let value = if raw & 1 == 0 {
                    (raw % data_len) & !7
                } else {
                    raw
                };
                mem.store_control(ControlField::WriteIndex, value, Ordering::Release);
            }
            5 => {
                // The peer rewrites a word of the data area.
                let at = (script.u32() % data_len) & !7;
                let word: [u8; 8] = core::array::from_fn(|_| script.byte());
                mem.write_data(at, &word);
            }
            6 => {
                let field = if script.byte() & 1 == 0 {
                    ControlField::FeatureBits
                } else {
                    ControlField::PendingSendSize
                };
                mem.store_control(field, script.u32(), Ordering::Relaxed);
            }
            _ => {
                let _ = reader.unmask_interrupts();
                let _ = reader.has_data();
                reader.mask_interrupts();
            }
        }
    }
}

/// Phase 3: batch writes while the peer rewrites the reader's fields.
fn writer(control: &[u8], area: &[u8], script: &mut Script<'_>) {
    let mem = FlatRingMem::from_bytes(control, area).expect("the data length is usable");
    let Ok(mut writer) = RingWriter::new(&mem) else {
        return;
    };
    let data_len = mem.data_len();
    let payload = [0x6du8; 4096];
    let mut rounds = 0usize;
    while !script.is_empty() && rounds < 64 {
        rounds += 1;
        let op = script.byte();
        match op % 5 {
            0 | 1 => {
                let count = usize::from(script.byte() % 9);
                let sizes: Vec<usize> = (0..count)
                    .map(|_| usize::from(script.byte()) * 17 % payload.len())
                    .collect();
                let packets: Vec<OutgoingPacket<'_>> = sizes
                    .iter()
                    .zip(0u64..)
                    .map(|(&n, tid)| OutgoingPacket::in_band(tid, &payload[..n]))
                    .collect();
                let before = mem.load_control(ControlField::WriteIndex, Ordering::Relaxed);
                match writer.try_write_batch(&packets) {
                    Ok(outcome) => {
                        assert!(outcome.written <= packets.len());
                        assert_eq!(outcome.written == 0, packets.is_empty());
                        let after = mem.load_control(ControlField::WriteIndex, Ordering::Relaxed);
                        let bytes: u64 =
                            packets[..outcome.written].iter().map(OutgoingPacket::ring_len).sum();
                        let expected = (u64::from(before) + bytes) % u64::from(data_len);
                        assert_eq!(u64::from(after), expected, "publishes what it wrote");
                        assert_eq!(after % 8, 0);
                    }
                    Err(err) => {
                        assert!(!packets.is_empty());
                        let after = mem.load_control(ControlField::WriteIndex, Ordering::Relaxed);
                        assert_eq!(after, before, "an error publishes nothing");
                        if let WriteError::Full { needed, free } = err {
                            assert!(needed > free);
                        }
                    }
                }
            }
            2 => {
                // The peer moves the read index: anywhere or to an aligned in-range spot.
                let raw = script.u32();
                let value = if raw & 1 == 0 {
                    (raw % data_len) & !7
                } else {
                    raw
                };
                mem.store_control(ControlField::ReadIndex, value, Ordering::Release);
            }
            3 => {
                let field = match script.byte() % 3 {
                    0 => ControlField::FeatureBits,
                    1 => ControlField::InterruptMask,
                    _ => ControlField::PendingSendSize,
                };
                mem.store_control(field, script.u32(), Ordering::Relaxed);
            }
            _ => {
                let needed = script.u32() % (2 * data_len);
                let _ = writer.request_space_signal(needed);
                if let Ok(free) = writer.free_bytes() {
                    assert!(free <= data_len - 8);
                }
                if script.byte() & 1 == 0 {
                    writer.clear_pending_send_size();
                }
            }
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let (control, rest) = input.split_at(input.len().min(CONTROL_PREFIX));
    let (selector, rest) = rest.split_first().map_or((0, &[][..]), |(s, r)| (*s, r));
    let data_len = (usize::from(selector) + 1) * 32;
    assert!(data_len >= MIN_DATA_LEN as usize);
    let (data, ops) = rest.split_at(rest.len().min(data_len));
    let mut area = vec![0u8; data_len];
    area[..data.len()].copy_from_slice(data);

    let mut script = Script(ops);
    differential(control, &area, &mut script);
    // The later phases reuse the script from the start, so each sees the fuzzer's choices.
    let mut script = Script(ops);
    mutating(control, &area, &mut script);
    let mut script = Script(ops);
    writer(control, &area, &mut script);
});
