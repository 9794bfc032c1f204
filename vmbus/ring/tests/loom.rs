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

#[test]
fn loom_no_lost_wakeup() {
    let mut builder = loom::model::Builder::new();
    // Bounded preemptions keep the model to seconds (bound 3: about 2 s here, bound 4: about
    // 12 s); every lost wake-up found by removing one of the four fences needs only 2.
    // LOOM_MAX_PREEMPTIONS overrides.
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(|| {
        let mem = Arc::new(FlatRingMem::new(72).unwrap());
        let to_reader = Arc::new(Doorbell::default());
        let to_writer = Arc::new(Doorbell::default());
        let writer = {
            let (mem, to_reader, to_writer) = (mem.clone(), to_reader.clone(), to_writer.clone());
            thread::spawn(move || writer_side(mem, to_reader, to_writer))
        };
        reader_side(mem, to_reader, to_writer);
        writer.join().unwrap();
    });
}
