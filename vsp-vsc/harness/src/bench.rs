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

/// Everything the VSC measured.
#[derive(Debug, Clone)]
pub struct BenchResults {
    /// One entry per packet size.
    pub throughput: Vec<Throughput>,
    /// 64-byte ping-pong.
    pub latency: Latency,
}

/// The measuring VSC.
#[derive(Debug)]
pub struct BenchVsc {
    /// Payload sizes to stream.
    pub sizes: Vec<usize>,
    /// Time per measurement.
    pub duration: Duration,
}

impl BenchVsc {
    fn throughput<M: RingMem, N: Notifier>(
        &self,
        channel: &mut Endpoint<M, N>,
        size: usize,
        buf: &mut [u8],
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
            if start.elapsed() >= self.duration {
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
            throughput.push(self.throughput(channel, size, &mut buf)?);
        }
        let latency = self.latency(channel, &mut buf)?;
        Ok(BenchResults {
            throughput,
            latency,
        })
    }
}
