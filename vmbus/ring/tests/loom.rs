//! Loom model of the notification protocol, run on the real `RingWriter`/`RingReader` code (the
//! crate's atomics and fences become loom's under `--cfg loom`, and the data area becomes loom
//! cells, so loom also checks that the index protocol orders every data copy).
//!
//! Two threads share a 72-byte ring (64 usable bytes: two 32-byte packets fit, and the third
//! wraps across the end). The writer sends three packets, sleeping on a doorbell when the ring is
//! full after registering `pending_send_sz`; the reader drains with interrupts masked, and before
//! sleeping unmasks and re-checks. Sleeps are real blocking waits on a doorbell that only the
//! peer's signal rings, so a lost wake-up leaves both threads blocked and loom reports a
//! deadlock. Run with:
//! `RUSTFLAGS="--cfg loom" cargo test -p vmbus_ring --release -- loom`
#![cfg(loom)]

use std::sync::Arc;

use loom::sync::{Condvar, Mutex};
use loom::thread;
use vmbus_ring::{
    FlatRingMem, OutgoingPacket, Packet, ReadError, RingReader, RingWriter, SpaceWait, WriteError,
};

// Both models run the real code with its cached peer indices: the writer reloads `read_index`
// only when the ring looks full and the reader reloads `write_index` only when it looks empty,
// so loom also checks that a stale copy never lets the writer overwrite unread bytes (a data
// race on a loom cell) or the reader read unwritten ones (a race, or a wrong packet).

const PACKETS: u64 = 3;

/// A wake-up channel: `ring` wakes the (single) waiter, or is remembered until it waits.
#[derive(Default)]
struct Doorbell {
    rung: Mutex<bool>,
    cond: Condvar,
}

impl Doorbell {
    fn ring(&self) {
        *self.rung.lock().unwrap() = true;
        self.cond.notify_one();
    }

    fn wait(&self) {
        let mut rung = self.rung.lock().unwrap();
        while !*rung {
            rung = self.cond.wait(rung).unwrap();
        }
        *rung = false;
    }
}

fn writer_side(mem: Arc<FlatRingMem>, to_reader: Arc<Doorbell>, to_writer: Arc<Doorbell>) {
    let mut writer = RingWriter::new(mem).unwrap();
    for id in 0..PACKETS {
        let body = id.to_le_bytes();
        let packet = OutgoingPacket::in_band(id, &body);
        loop {
            match writer.try_write(&packet) {
                Ok(outcome) => {
                    if outcome.signal {
                        to_reader.ring();
                    }
                    break;
                }
                Err(WriteError::Full { needed, .. }) => {
                    match writer.request_space_signal(needed).unwrap() {
                        SpaceWait::Available => {}
                        SpaceWait::Sleep => to_writer.wait(),
                        SpaceWait::PollOnly => unreachable!("the feature bit is set"),
                    }
                }
                Err(err) => panic!("{err:?}"),
            }
        }
    }
}

fn reader_side(mem: Arc<FlatRingMem>, to_reader: Arc<Doorbell>, to_writer: Arc<Doorbell>) {
    let mut reader = RingReader::new(mem).unwrap();
    let mut buf = [0u8; 64];
    let mut next = 0;
    reader.mask_interrupts();
    while next < PACKETS {
        match reader.try_read(&mut buf) {
            Ok(outcome) => {
                if outcome.signal {
                    to_writer.ring();
                }
                let packet = Packet::parse(&buf[..outcome.len]).unwrap();
                assert_eq!(packet.transaction_id, next);
                assert_eq!(packet.payload, next.to_le_bytes());
                next += 1;
            }
            Err(ReadError::Empty) => {
                if !reader.unmask_interrupts() {
                    to_reader.wait();
                }
                reader.mask_interrupts();
            }
            Err(err) => panic!("{err:?}"),
        }
    }
}

/// Batch writer: packets go out two per [`RingWriter::try_write_batch`] call (one publish, one
/// fence, one signal decision per batch); a batch that only partly fits continues with the rest.
fn batch_writer_side(mem: Arc<FlatRingMem>, to_reader: Arc<Doorbell>, to_writer: Arc<Doorbell>) {
    let mut writer = RingWriter::new(mem).unwrap();
    let bodies: Vec<[u8; 8]> = (0..PACKETS).map(u64::to_le_bytes).collect();
    let packets: Vec<OutgoingPacket<'_>> = bodies
        .iter()
        .zip(0..)
        .map(|(body, id)| OutgoingPacket::in_band(id, body))
        .collect();
    let mut next = 0;
    while next < packets.len() {
        let end = (next + 2).min(packets.len());
        match writer.try_write_batch(&packets[next..end]) {
            Ok(outcome) => {
                assert!(outcome.written > 0);
                if outcome.signal {
                    to_reader.ring();
                }
                next += outcome.written;
            }
            Err(WriteError::Full { needed, .. }) => {
                match writer.request_space_signal(needed).unwrap() {
                    SpaceWait::Available => {}
                    SpaceWait::Sleep => to_writer.wait(),
                    SpaceWait::PollOnly => unreachable!("the feature bit is set"),
                }
            }
            Err(err) => panic!("{err:?}"),
        }
    }
}

/// Batch reader: drains with [`RingReader::read_batch`] (one commit and one `pending_send_sz`
/// decision per batch).
fn batch_reader_side(mem: Arc<FlatRingMem>, to_reader: Arc<Doorbell>, to_writer: Arc<Doorbell>) {
    let mut reader = RingReader::new(mem).unwrap();
    let mut buf = [0u8; 72];
    let mut next = 0;
    reader.mask_interrupts();
    while next < PACKETS {
        match reader.read_batch(&mut buf, 4) {
            Ok(batch) => {
                if batch.signal {
                    to_writer.ring();
                }
                assert!(!batch.packets.is_empty());
                for bytes in batch.packets {
                    let packet = Packet::parse(bytes).unwrap();
                    assert_eq!(packet.transaction_id, next);
                    assert_eq!(packet.payload, next.to_le_bytes());
                    next += 1;
                }
            }
            Err(ReadError::Empty) => {
                if !reader.unmask_interrupts() {
                    to_reader.wait();
                }
                reader.mask_interrupts();
            }
            Err(err) => panic!("{err:?}"),
        }
    }
}

fn model(
    writer: fn(Arc<FlatRingMem>, Arc<Doorbell>, Arc<Doorbell>),
    reader: fn(Arc<FlatRingMem>, Arc<Doorbell>, Arc<Doorbell>),
) {
    let mut builder = loom::model::Builder::new();
    // Bounded preemptions keep the model to seconds (bound 3: about 2 s here, bound 4: about
    // 12 s); every lost wake-up found by removing one of the four fences needs only 2.
    // LOOM_MAX_PREEMPTIONS overrides.
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(move || {
        let mem = Arc::new(FlatRingMem::new(72).unwrap());
        let to_reader = Arc::new(Doorbell::default());
        let to_writer = Arc::new(Doorbell::default());
        let writer = {
            let (mem, to_reader, to_writer) = (mem.clone(), to_reader.clone(), to_writer.clone());
            thread::spawn(move || writer(mem, to_reader, to_writer))
        };
        reader(mem, to_reader, to_writer);
        writer.join().unwrap();
    });
}

#[test]
fn loom_no_lost_wakeup() {
    model(writer_side, reader_side);
}

/// Batched writes and reads (with the cached indices) against each other.
#[test]
fn loom_batches_no_lost_wakeup() {
    model(batch_writer_side, batch_reader_side);
}

/// Batched writes against single-packet reads, and single writes against batched reads: each
/// batch path must keep the notification rules with the other side's one-by-one path.
#[test]
fn loom_batches_against_single_packets() {
    model(batch_writer_side, reader_side);
    model(writer_side, batch_reader_side);
}
