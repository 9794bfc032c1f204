//! The VMBus benchmark's devices: a sink/ping VSP and the measuring VSC (see `vmbus-bench`).
//!
//! Bench protocol (in-band packets, payload bytes are not interpreted): a packet without the
//! completion-requested flag is consumed and counted; one with the flag is answered at once with
//! a completion carrying the same transaction id and payload. Throughput runs stream packets and
//! end with one flagged packet, whose completion proves the VSP consumed everything before it;
//! latency runs send one flagged packet at a time.
//!
//! Both devices batch as a real VSP/VSC does (Linux netvsc does too): the VSC streams small
//! packets with [`Endpoint::send_batch`] (one index publish, one fence and at most one signal per
//! batch of up to 64 packets or 16 KiB of ring; a 16 KiB packet goes alone so the VSP can start on
//! it at once), and the VSP drains with [`Endpoint::try_recv_batch`] (one copy out of the ring
//! per few KiB and one commit per batch). Every packet is still parsed and checked by the VSP.
//!
//! Ratios against a reference (memcpy, an SPSC queue) are measured interleaved: the VSC runs a
//! short ring round, then the caller's reference for as long, and so on ([`Interleave`]), and the
//! ratio is taken per adjacent pair. A machine whose speed drifts over seconds (a shared VM, CPU
//! frequency) then moves both sides of each pair together, and the median of the per-round ratios
//! ([`Interleaved::median_ratio`]) shrugs off the rounds a state change cut through.

use std::fmt;
use std::time::{Duration, Instant};

use vmbus_ring::{OutgoingPacket, Packet, PacketKind, RingMem};
use vsp_vsc_channel::{ChannelError, Endpoint, Guid, Notifier, Vsc, Vsp};

/// Interface GUID of the bench device (Mica-private, harness only).
pub const BENCH_INTERFACE: Guid = Guid::from_literal("6d696361-6265-4e63-8800-000000000b1e");

/// Most ring bytes the VSC puts in one batch of streamed packets.
const BATCH_BYTES: u64 = 16 * 1024;
/// Most packets the VSC puts in one batch.
const MAX_BATCH: usize = 64;

/// How long a side polls an empty ring before it waits on its notifier.
const POLL_BEFORE_WAIT: Duration = Duration::from_micros(200);

/// The VSP: counts streamed packets, answers flagged ones.
#[derive(Debug, Default)]
pub struct BenchVsp {
    /// Packets consumed.
    pub packets: u64,
}

impl Vsp for BenchVsp {
    fn interface_id(&self) -> Guid {
        BENCH_INTERFACE
    }

    fn serve<M: RingMem, N: Notifier>(
        &mut self,
        channel: &mut Endpoint<M, N>,
    ) -> Result<(), ChannelError> {
        let mut buf = vec![0u8; 66 * 1024];
        let mut idle_since: Option<Instant> = None;
        loop {
            // Drain a batch: one copy out of the ring per few KiB, one commit (one store, one
            // fence) for all of it.
            let Some(batch) = channel.try_recv_batch(&mut buf, 256)? else {
                let since = *idle_since.get_or_insert_with(Instant::now);
                if since.elapsed() < POLL_BEFORE_WAIT {
                    std::hint::spin_loop();
                    continue;
                }
                match channel.wait_for_peer(None) {
                    Ok(()) => continue,
                    Err(ChannelError::Closed) => return Ok(()),
                    Err(err) => return Err(err),
                }
            };
            idle_since = None;
            for bytes in batch {
                let packet =
                    Packet::parse(bytes).map_err(|e| channel.fail(ChannelError::Malformed(e)))?;
                if packet.kind != PacketKind::InBand {
                    return Err(channel.fail(ChannelError::Protocol("bench packet not in-band")));
                }
                self.packets += 1;
                if packet.completion_requested() {
                    let reply = OutgoingPacket::completion(packet.transaction_id, packet.payload);
                    match channel.send(&reply) {
                        Err(ChannelError::Closed) => return Ok(()),
                        other => other?,
                    }
                }
            }
        }
    }
}

/// One throughput measurement.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    /// Payload bytes per packet.
    pub size: usize,
    /// Packets per second.
    pub packets_per_sec: f64,
    /// Payload bytes per second.
    pub bytes_per_sec: f64,
}

/// Ping-pong latency, round trip.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    /// Round trips measured.
    pub samples: usize,
    /// Median round trip in ns.
    pub median_ns: u64,
    /// 99th percentile round trip in ns.
    pub p99_ns: u64,
}

/// A reference measurement run between ring rounds: given the round's length, it returns how many
/// items of the compared payload size it moved per second (e.g. 16 KiB memcpy chunks, 64-byte
/// queue messages).
pub type Reference = Box<dyn FnMut(Duration) -> f64>;

/// One ratio measured in alternating rounds: ring, reference, ring, reference, ...
pub struct Interleave {
    /// Name of the ratio (printed).
    pub name: &'static str,
    /// Payload bytes of each ring packet (and of each reference item).
    pub size: usize,
    /// Ring/reference round pairs.
    pub rounds: usize,
    /// Length of each round (each side of a pair).
    pub round: Duration,
    /// The reference, called on the VSC's thread between ring rounds.
    pub reference: Reference,
}

impl fmt::Debug for Interleave {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interleave")
            .field("name", &self.name)
            .field("size", &self.size)
            .field("rounds", &self.rounds)
            .field("round", &self.round)
            .finish_non_exhaustive()
    }
}

/// One adjacent pair of rounds.
#[derive(Debug, Clone, Copy)]
pub struct RoundPair {
    /// The ring round.
    pub ring: Throughput,
    /// Reference items per second in the round right after it.
    pub reference_per_sec: f64,
}

impl RoundPair {
    /// Ring packets per second over reference items per second (items of the same size, so this
    /// is also the byte-rate ratio).
    pub fn ratio(&self) -> f64 {
        self.ring.packets_per_sec / self.reference_per_sec
    }
}

/// The rounds of one [`Interleave`].
#[derive(Debug, Clone)]
pub struct Interleaved {
    /// Name of the ratio.
    pub name: &'static str,
    /// Payload bytes per packet/item.
    pub size: usize,
    /// Length of each round.
    pub round: Duration,
    /// The pairs, in the order run.
    pub pairs: Vec<RoundPair>,
}

impl Interleaved {
    /// Median of the per-pair ratios (`None` without pairs).
    pub fn median_ratio(&self) -> Option<f64> {
        median(self.pairs.iter().map(RoundPair::ratio))
    }

    /// Smallest and largest per-pair ratio (`None` without pairs).
    pub fn ratio_range(&self) -> Option<(f64, f64)> {
        self.pairs
            .iter()
            .map(RoundPair::ratio)
            .fold(None, |acc, r| {
                Some(acc.map_or((r, r), |(lo, hi): (f64, f64)| (lo.min(r), hi.max(r))))
            })
    }

    /// Median ring packets per second over the rounds.
    pub fn median_ring_per_sec(&self) -> Option<f64> {
        median(self.pairs.iter().map(|p| p.ring.packets_per_sec))
    }

    /// Median reference items per second over the rounds.
    pub fn median_reference_per_sec(&self) -> Option<f64> {
        median(self.pairs.iter().map(|p| p.reference_per_sec))
    }
}

/// Median of `values` (mean of the middle two for an even count); `None` when empty. NaNs sort
/// last.
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut sorted: Vec<f64> = values.into_iter().collect();
    sorted.sort_unstable_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[mid]),
        _ => Some((sorted[mid - 1] + sorted[mid]) / 2.0),
    }
}

/// Everything the VSC measured.
#[derive(Debug, Clone)]
pub struct BenchResults {
    /// One entry per packet size.
    pub throughput: Vec<Throughput>,
    /// 64-byte ping-pong.
    pub latency: Latency,
    /// One entry per [`BenchVsc::interleave`], in order.
    pub interleaved: Vec<Interleaved>,
}

/// The measuring VSC.
#[derive(Debug)]
pub struct BenchVsc {
    /// Payload sizes to stream.
    pub sizes: Vec<usize>,
    /// Time per measurement.
    pub duration: Duration,
    /// Ratios to measure in alternating ring/reference rounds after the rest.
    pub interleave: Vec<Interleave>,
}

impl BenchVsc {
    fn throughput<M: RingMem, N: Notifier>(
        &self,
        channel: &mut Endpoint<M, N>,
        size: usize,
        buf: &mut [u8],
        duration: Duration,
    ) -> Result<Throughput, ChannelError> {
        let payload = vec![0x5au8; size];
        // Packets per batch: up to MAX_BATCH, and no more than BATCH_BYTES of ring, so the VSP can
        // drain one batch while the next is copied (a 16 KiB packet goes alone).
        let ring_len = OutgoingPacket::in_band(0, &payload).ring_len();
        let per_batch = usize::try_from(BATCH_BYTES / ring_len)
            .unwrap_or(MAX_BATCH)
            .clamp(1, MAX_BATCH);
        let mut batch = vec![OutgoingPacket::in_band(0, &payload); per_batch];
        let start = Instant::now();
        let mut sent = 0u64;
        loop {
            let round_end = sent + MAX_BATCH as u64;
            while sent < round_end {
                for (tid, packet) in (sent..).zip(batch.iter_mut()) {
                    packet.transaction_id = tid;
                }
                channel.send_batch(&batch)?;
                sent += per_batch as u64;
            }
            if start.elapsed() >= duration {
                break;
            }
        }
        // The completion of a flagged packet proves everything before it was consumed.
        let sync = OutgoingPacket::in_band(u64::MAX, &payload[..0]).with_completion_requested(true);
        channel.send(&sync)?;
        self.await_completion(channel, buf, u64::MAX)?;
        let secs = start.elapsed().as_secs_f64();
        Ok(Throughput {
            size,
            packets_per_sec: sent as f64 / secs,
            bytes_per_sec: (sent as f64 * size as f64) / secs,
        })
    }

    /// Polls (no sleeping) for the completion of `tid`.
    fn await_completion<M: RingMem, N: Notifier>(
        &self,
        channel: &mut Endpoint<M, N>,
        buf: &mut [u8],
        tid: u64,
    ) -> Result<(), ChannelError> {
        let start = Instant::now();
        loop {
            if let Some(len) = channel.try_recv(buf)? {
                let packet = Packet::parse(&buf[..len]).map_err(ChannelError::Malformed)?;
                if packet.kind == PacketKind::Completion && packet.transaction_id == tid {
                    return Ok(());
                }
                return Err(channel.fail(ChannelError::Protocol("unexpected bench reply")));
            }
            if channel.is_closed() {
                return Err(ChannelError::Closed);
            }
            if start.elapsed() > Duration::from_secs(10) {
                return Err(channel.fail(ChannelError::Timeout(start.elapsed())));
            }
            std::hint::spin_loop();
        }
    }

    fn latency<M: RingMem, N: Notifier>(
        &self,
        channel: &mut Endpoint<M, N>,
        buf: &mut [u8],
    ) -> Result<Latency, ChannelError> {
        let payload = [0xa5u8; 64];
        let mut samples = Vec::new();
        let start = Instant::now();
        let mut tid = 0u64;
        while start.elapsed() < self.duration && samples.len() < 1_000_000 {
            let t0 = Instant::now();
            channel
                .send(&OutgoingPacket::in_band(tid, &payload).with_completion_requested(true))?;
            self.await_completion(channel, buf, tid)?;
            samples.push(t0.elapsed().as_nanos() as u64);
            tid += 1;
        }
        samples.sort_unstable();
        let at = |q: f64| {
            samples
                .get(((samples.len() as f64 - 1.0) * q) as usize)
                .copied()
        };
        Ok(Latency {
            samples: samples.len(),
            median_ns: at(0.5).unwrap_or(0),
            p99_ns: at(0.99).unwrap_or(0),
        })
    }
}

impl Vsc for BenchVsc {
    type Outcome = BenchResults;

    fn interface_id(&self) -> Guid {
        BENCH_INTERFACE
    }

    fn run<M: RingMem, N: Notifier>(
        &mut self,
        channel: &mut Endpoint<M, N>,
    ) -> Result<BenchResults, ChannelError> {
        let mut buf = vec![0u8; 128 * 1024];
        let mut throughput = Vec::new();
        for &size in &self.sizes {
            throughput.push(self.throughput(channel, size, &mut buf, self.duration)?);
        }
        let latency = self.latency(channel, &mut buf)?;
        let mut interleaved = Vec::new();
        for i in 0..self.interleave.len() {
            let (size, rounds, round) = {
                let spec = &self.interleave[i];
                (spec.size, spec.rounds, spec.round)
            };
            let mut pairs = Vec::with_capacity(rounds);
            for _ in 0..rounds {
                let ring = self.throughput(channel, size, &mut buf, round)?;
                // The VSP goes back to waiting on its notifier within POLL_BEFORE_WAIT, leaving
                // its core to the reference.
                let reference_per_sec = (self.interleave[i].reference)(round);
                pairs.push(RoundPair {
                    ring,
                    reference_per_sec,
                });
            }
            interleaved.push(Interleaved {
                name: self.interleave[i].name,
                size,
                round,
                pairs,
            });
        }
        Ok(BenchResults {
            throughput,
            latency,
            interleaved,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(ring: f64, reference: f64) -> RoundPair {
        RoundPair {
            ring: Throughput {
                size: 64,
                packets_per_sec: ring,
                bytes_per_sec: ring * 64.0,
            },
            reference_per_sec: reference,
        }
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median([3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median([4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(std::iter::empty()), None);
    }

    #[test]
    fn ratios_are_taken_per_pair_not_from_medians_of_sides() {
        // A fast/slow machine: each pair is measured in one state and has ratio 0.5, but the
        // medians of the two sides taken apart (60 / 100) would give 0.6.
        let rounds = Interleaved {
            name: "r",
            size: 64,
            round: Duration::from_millis(1),
            pairs: vec![
                pair(10.0, 20.0),
                pair(100.0, 200.0),
                pair(20.0, 40.0),
                pair(60.0, 120.0),
                pair(1000.0, 100.0),
            ],
        };
        assert_eq!(rounds.median_ratio(), Some(0.5));
        assert_eq!(rounds.ratio_range(), Some((0.5, 10.0)));
        assert_eq!(rounds.median_ring_per_sec(), Some(60.0));
        assert_eq!(rounds.median_reference_per_sec(), Some(100.0));
    }
}
