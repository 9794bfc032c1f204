//! Writer and reader on two real threads, sleeping and waking only through the ring's
//! notification rules (interrupt mask with re-check, pending send size). A lost wake-up would
//! leave a thread asleep; the doorbell then reports it instead of hanging the test run.
#![cfg(not(loom))]

use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use vmbus_ring::{
    FlatRingMem, OutgoingPacket, Packet, ReadError, RingReader, RingWriter, SpaceWait, WriteError,
};

/// Batch sizes the batch test cycles through.
const BATCH_SIZES: [usize; 5] = [1, 7, 3, 16, 2];

/// A wake-up channel: `ring` wakes one `wait` (a pending ring is remembered).
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

    fn wait(&self, who: &str) {
        let guard = self.rung.lock().unwrap();
        // The timeout only turns a lost wake-up (a bug) into a failure instead of a hang.
        let (mut guard, timeout) = self
            .cond
            .wait_timeout_while(guard, Duration::from_secs(60), |rung| !*rung)
            .unwrap();
        assert!(!timeout.timed_out(), "{who} lost a wake-up");
        *guard = false;
    }
}

const PACKETS: u64 = 5000;

fn length_of(id: u64) -> usize {
    (id.wrapping_mul(2654435761) % 200) as usize
}

#[test]
fn threads_exchange_packets_with_notifications() {
    let mem = Arc::new(FlatRingMem::new(512).unwrap());
    let to_reader = Arc::new(Doorbell::default());
    let to_writer = Arc::new(Doorbell::default());

    let writer_thread = {
        let (mem, to_reader, to_writer) = (mem.clone(), to_reader.clone(), to_writer.clone());
        thread::spawn(move || {
            let mut writer = RingWriter::new(mem).unwrap();
            for id in 0..PACKETS {
                let body = vec![id as u8; length_of(id)];
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
                                SpaceWait::Sleep => to_writer.wait("writer"),
                                SpaceWait::PollOnly => unreachable!("feature is set"),
                            }
                        }
                        Err(err) => panic!("{err:?}"),
                    }
                }
            }
        })
    };

    let mut reader = RingReader::new(mem).unwrap();
    let mut buf = vec![0u8; 512];
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
                let len = length_of(next);
                assert!(packet.payload[..len].iter().all(|&b| b == next as u8));
                next += 1;
            }
            Err(ReadError::Empty) => {
                if !reader.unmask_interrupts() {
                    to_reader.wait("reader");
                }
                reader.mask_interrupts();
            }
            Err(err) => panic!("{err:?}"),
        }
    }
    writer_thread.join().unwrap();
}

/// The same exchange with batched writes and batched reads on both sides (cached indices, one
/// publish and one commit per batch); a lost wake-up or a torn packet fails as above.
#[test]
fn threads_exchange_batches_with_notifications() {
    let mem = Arc::new(FlatRingMem::new(1024).unwrap());
    let to_reader = Arc::new(Doorbell::default());
    let to_writer = Arc::new(Doorbell::default());

    let writer_thread = {
        let (mem, to_reader, to_writer) = (mem.clone(), to_reader.clone(), to_writer.clone());
        thread::spawn(move || {
            let mut writer = RingWriter::new(mem).unwrap();
            let bodies: Vec<Vec<u8>> = (0..PACKETS)
                .map(|id| vec![id as u8; length_of(id)])
                .collect();
            let packets: Vec<OutgoingPacket<'_>> = bodies
                .iter()
                .zip(0..)
                .map(|(body, id)| OutgoingPacket::in_band(id, body))
                .collect();
            let mut next = 0;
            let mut round = 0;
            while next < packets.len() {
                let end = (next + BATCH_SIZES[round % BATCH_SIZES.len()]).min(packets.len());
                round += 1;
                loop {
                    match writer.try_write_batch(&packets[next..end]) {
                        Ok(outcome) => {
                            if outcome.signal {
                                to_reader.ring();
                            }
                            next += outcome.written;
                            break;
                        }
                        Err(WriteError::Full { needed, .. }) => {
                            match writer.request_space_signal(needed).unwrap() {
                                SpaceWait::Available => {}
                                SpaceWait::Sleep => to_writer.wait("writer"),
                                SpaceWait::PollOnly => unreachable!("feature is set"),
                            }
                        }
                        Err(err) => panic!("{err:?}"),
                    }
                }
            }
        })
    };

    let mut reader = RingReader::new(mem).unwrap();
    let mut buf = vec![0u8; 700];
    let mut next = 0;
    let mut round = 0;
    reader.mask_interrupts();
    while next < PACKETS {
        round += 1;
        match reader.read_batch(&mut buf, BATCH_SIZES[round % BATCH_SIZES.len()]) {
            Ok(batch) => {
                if batch.signal {
                    to_writer.ring();
                }
                for bytes in batch.packets {
                    let packet = Packet::parse(bytes).unwrap();
                    assert_eq!(packet.transaction_id, next);
                    let len = length_of(next);
                    assert!(packet.payload[..len].iter().all(|&b| b == next as u8));
                    next += 1;
                }
            }
            Err(ReadError::Empty) => {
                if !reader.unmask_interrupts() {
                    to_reader.wait("reader");
                }
                reader.mask_interrupts();
            }
            Err(err) => panic!("{err:?}"),
        }
    }
    writer_thread.join().unwrap();
}
