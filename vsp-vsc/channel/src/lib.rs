//! What a device sees of an open VMBus channel, independent of where the rings live.
//!
//! A channel endpoint ([`Endpoint`]) is a ring pair (an outgoing [`RingWriter`] and an incoming
//! [`RingReader`]) plus a [`Notifier`]: the channel's interrupt in both directions. The ring
//! memory is any [`RingMem`] (an in-process buffer, a file shared by two processes, guest pages
//! later) and the notifier any implementation of the small trait below (a condition variable
//! between threads, a polled doorbell word between processes, SynIC events in a partition), so
//! a VSP or VSC written against [`Vsp`]/[`Vsc`] runs unchanged in all of them.
//!
//! The endpoint applies the ring's notification rules (signal the reader on empty-to-non-empty
//! unless masked, signal a blocked writer via `pending_send_sz`), masks interrupts while it
//! drains, and closes the channel on the first sign of corruption.
//!
//! **Invariant:** nothing the peer writes makes the endpoint panic or wait without bound: every
//! wait is a bounded [`Notifier::wait`], and the idle limit turns a silent peer into
//! [`ChannelError::Timeout`].
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

use core::time::Duration;

pub use vmbus_protocol::Guid;
pub use vmbus_ring::{
    CorruptKind, OutgoingPacket, Packet, PacketBatch, PacketError, PacketKind, ReadError, RingMem,
    RingReader, RingWriter, SpaceWait, WriteError,
};

/// Why a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The peer signalled (or the wake-up was spurious): re-check the rings.
    Signalled,
    /// The timeout passed without a signal.
    TimedOut,
    /// The channel is closed (by either side).
    Closed,
}

/// The interrupt of one channel endpoint: signal the peer, wait for the peer's signal, and the
/// channel's closed state (which the control plane sets when either side closes the channel).
///
/// A signal is remembered until the next wait consumes it, so a signal sent between a ring
/// re-check and the wait is not lost.
pub trait Notifier {
    /// Interrupts the peer (SynIC: signal the channel's event connection).
    fn signal(&self);
    /// Waits for the peer's signal, at most `timeout`. May return [`Wake::Signalled`] spuriously.
    fn wait(&self, timeout: Duration) -> Wake;
    /// Closes the channel: both sides' waits return [`Wake::Closed`] from now on.
    fn close(&self);
    /// Whether the channel is closed.
    fn is_closed(&self) -> bool;
}

impl<N: Notifier + ?Sized> Notifier for &N {
    fn signal(&self) {
        (**self).signal()
    }
    fn wait(&self, timeout: Duration) -> Wake {
        (**self).wait(timeout)
    }
    fn close(&self) {
        (**self).close()
    }
    fn is_closed(&self) -> bool {
        (**self).is_closed()
    }
}

/// Why a channel operation failed. Every error but [`ChannelError::BufferTooSmall`] and
/// [`ChannelError::TooLarge`] closes the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// The channel is closed.
    #[error("Channel is closed")]
    Closed,
    /// The peer neither sent nor made room for the idle limit.
    #[error("Peer silent for {0:?}")]
    Timeout(Duration),
    /// The peer broke the ring protocol.
    #[error("Ring is corrupt")]
    Corrupt(#[source] CorruptKind),
    /// The peer sent a packet that does not parse.
    #[error("Malformed packet")]
    Malformed(#[source] PacketError),
    /// The peer sent a well-formed packet that breaks the device protocol.
    #[error("Device protocol violation: {0}")]
    Protocol(&'static str),
    /// An incoming packet does not fit the caller's buffer (nothing was consumed).
    #[error("Packet of {needed} bytes does not fit the buffer")]
    BufferTooSmall {
        /// Packet length.
        needed: usize,
    },
    /// An outgoing packet can never fit the ring.
    #[error("Packet needs {needed} bytes, at most {max} fit")]
    TooLarge {
        /// Ring bytes the packet needs.
        needed: u64,
        /// Largest that fits.
        max: u32,
    },
}

/// Default idle limit: how long a blocked send or receive waits for the peer.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Length of one wait; a lost or never-sent signal costs at most this much.
const WAIT_SLICE: Duration = Duration::from_millis(20);

/// One side of an open channel: outgoing ring, incoming ring, notifier.
#[derive(Debug)]
pub struct Endpoint<M: RingMem, N: Notifier> {
    out: RingWriter<M>,
    inp: RingReader<M>,
    notifier: N,
    idle_timeout: Duration,
    /// Time waited since the peer last made progress.
    idle: Duration,
}

impl<M: RingMem, N: Notifier> Endpoint<M, N> {
    /// An endpoint over attached rings. Incoming interrupts start masked: the endpoint unmasks
    /// them only before it waits.
    pub fn new(out: RingWriter<M>, inp: RingReader<M>, notifier: N) -> Self {
        inp.mask_interrupts();
        Self {
            out,
            inp,
            notifier,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            idle: Duration::ZERO,
        }
    }

    /// Sets how long a blocked send or receive waits for the peer before giving up.
    pub fn with_idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }

    /// The notifier.
    pub fn notifier(&self) -> &N {
        &self.notifier
    }

    /// The outgoing ring.
    pub fn writer(&mut self) -> &mut RingWriter<M> {
        &mut self.out
    }

    /// The incoming ring.
    pub fn reader(&mut self) -> &mut RingReader<M> {
        &mut self.inp
    }

    /// Closes the channel (the peer's waits end with [`Wake::Closed`]).
    pub fn close(&self) {
        self.notifier.close();
    }

    /// Whether the channel is closed.
    pub fn is_closed(&self) -> bool {
        self.notifier.is_closed()
    }

    /// Closes the channel and returns `err`: the one way a fatal error leaves the endpoint.
    pub fn fail(&self, err: ChannelError) -> ChannelError {
        self.notifier.close();
        err
    }

    /// Writes one packet if it fits now; `Ok(false)` if the ring is full.
    pub fn try_send(&mut self, packet: &OutgoingPacket<'_>) -> Result<bool, ChannelError> {
        if self.notifier.is_closed() {
            return Err(ChannelError::Closed);
        }
        match self.out.try_write(packet) {
            Ok(outcome) => {
                if outcome.signal {
                    self.notifier.signal();
                }
                self.idle = Duration::ZERO;
                Ok(true)
            }
            Err(WriteError::Full { .. }) => Ok(false),
            Err(WriteError::TooLarge { needed, max }) => {
                Err(ChannelError::TooLarge { needed, max })
            }
            Err(WriteError::Corrupt(kind)) => Err(self.fail(ChannelError::Corrupt(kind))),
        }
    }

    /// Writes as many of `packets` as fit now, in order, publishing them with one index store
    /// and at most one signal; returns how many were written (`Ok(0)` if the first does not fit
    /// now). Small packets sent in batches cost far less per packet than one by one.
    pub fn try_send_batch(
        &mut self,
        packets: &[OutgoingPacket<'_>],
    ) -> Result<usize, ChannelError> {
        if self.notifier.is_closed() {
            return Err(ChannelError::Closed);
        }
        match self.out.try_write_batch(packets) {
            Ok(outcome) => {
                if outcome.signal {
                    self.notifier.signal();
                }
                if outcome.written > 0 {
                    self.idle = Duration::ZERO;
                }
                Ok(outcome.written)
            }
            Err(WriteError::Full { .. }) => Ok(0),
            Err(WriteError::TooLarge { needed, max }) => {
                Err(ChannelError::TooLarge { needed, max })
            }
            Err(WriteError::Corrupt(kind)) => Err(self.fail(ChannelError::Corrupt(kind))),
        }
    }

    /// Writes all of `packets`, in order: as many per batch as fit, waiting (via
    /// `pending_send_sz`) while the ring is full.
    pub fn send_batch(&mut self, packets: &[OutgoingPacket<'_>]) -> Result<(), ChannelError> {
        let mut rest = packets;
        while let Some(first) = rest.first() {
            match self.try_send_batch(rest)? {
                0 => self.wait_for_space(first)?,
                written => rest = rest.get(written..).unwrap_or_default(),
            }
        }
        Ok(())
    }

    /// Writes one packet, waiting (via `pending_send_sz`) while the ring is full.
    pub fn send(&mut self, packet: &OutgoingPacket<'_>) -> Result<(), ChannelError> {
        loop {
            if self.try_send(packet)? {
                return Ok(());
            }
            self.wait_for_space(packet)?;
        }
    }

    /// After [`try_send`](Self::try_send) found the ring full: asks the reader to signal when
    /// `packet` fits and waits (one bounded slice) unless it fits already.
    pub fn wait_for_space(&mut self, packet: &OutgoingPacket<'_>) -> Result<(), ChannelError> {
        let needed = u32::try_from(packet.ring_len()).unwrap_or(u32::MAX);
        let slice = match self.out.request_space_signal(needed) {
            Ok(SpaceWait::Available) => return Ok(()),
            Ok(SpaceWait::Sleep) | Err(WriteError::Full { .. }) => WAIT_SLICE,
            // The reader will not signal: poll.
            Ok(SpaceWait::PollOnly) => Duration::from_millis(1),
            Err(WriteError::Corrupt(kind)) => {
                return Err(self.fail(ChannelError::Corrupt(kind)));
            }
            Err(WriteError::TooLarge { needed, max }) => {
                return Err(ChannelError::TooLarge { needed, max });
            }
        };
        self.wait(slice)
    }

    /// Waits (one bounded slice) for the peer to send a packet or free space this side asked
    /// for, unless a packet is already there. For devices that interleave sending and
    /// receiving with [`try_send`](Self::try_send) and [`try_recv`](Self::try_recv); `space` is
    /// the packet that did not fit, if any.
    pub fn wait_for_peer(
        &mut self,
        space: Option<&OutgoingPacket<'_>>,
    ) -> Result<(), ChannelError> {
        if let Some(packet) = space {
            let needed = u32::try_from(packet.ring_len()).unwrap_or(u32::MAX);
            match self.out.request_space_signal(needed) {
                Ok(SpaceWait::Available) => return Ok(()),
                Ok(_) | Err(WriteError::Full { .. }) => {}
                Err(WriteError::Corrupt(kind)) => {
                    return Err(self.fail(ChannelError::Corrupt(kind)));
                }
                Err(WriteError::TooLarge { needed, max }) => {
                    return Err(ChannelError::TooLarge { needed, max });
                }
            }
        }
        if self.notifier.is_closed() {
            return Err(ChannelError::Closed);
        }
        if self.inp.unmask_interrupts() {
            self.inp.mask_interrupts();
            return Ok(());
        }
        let result = self.wait(WAIT_SLICE);
        self.inp.mask_interrupts();
        result
    }

    /// Reads the next packet into `buf` and releases its ring space; `Ok(None)` if none is
    /// there.
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<Option<usize>, ChannelError> {
        let len = self.try_peek(buf)?;
        if len.is_some() {
            self.commit();
        }
        Ok(len)
    }

    /// Reads the next packet into `buf` without releasing its ring space (see
    /// [`commit`](Self::commit)); `Ok(None)` if none is there. Draining a batch with
    /// `try_peek` and committing once saves a shared-memory store and a fence per packet.
    pub fn try_peek(&mut self, buf: &mut [u8]) -> Result<Option<usize>, ChannelError> {
        match self.inp.peek(buf) {
            Ok(len) => {
                self.idle = Duration::ZERO;
                Ok(Some(len))
            }
            Err(ReadError::Empty) => Ok(None),
            Err(ReadError::BufferTooSmall { needed }) => {
                Err(ChannelError::BufferTooSmall { needed })
            }
            Err(ReadError::Corrupt(kind)) => Err(self.fail(ChannelError::Corrupt(kind))),
        }
    }

    /// Reads up to `max_packets` packets into `buf` (as many as are there and fit) and releases
    /// their ring space with one commit; `Ok(None)` if none is there. Iterate the batch for the
    /// packets and parse each with [`Packet::parse`].
    pub fn try_recv_batch<'b>(
        &mut self,
        buf: &'b mut [u8],
        max_packets: usize,
    ) -> Result<Option<PacketBatch<'b>>, ChannelError> {
        match self.inp.read_batch(buf, max_packets) {
            Ok(batch) => {
                if batch.signal {
                    self.notifier.signal();
                }
                self.idle = Duration::ZERO;
                Ok(Some(batch.packets))
            }
            Err(ReadError::Empty) => Ok(None),
            Err(ReadError::BufferTooSmall { needed }) => {
                Err(ChannelError::BufferTooSmall { needed })
            }
            Err(ReadError::Corrupt(kind)) => Err(self.fail(ChannelError::Corrupt(kind))),
        }
    }

    /// Releases the ring space of every packet peeked so far, signalling a writer that waits
    /// for it.
    pub fn commit(&mut self) {
        if self.inp.commit().signal {
            self.notifier.signal();
        }
    }

    /// Reads the next packet into `buf`, waiting for one; returns its length. Parse it with
    /// [`Packet::parse`]. Ends with [`ChannelError::Closed`] once the channel is closed and
    /// the ring drained.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, ChannelError> {
        loop {
            if let Some(len) = self.try_recv(buf)? {
                return Ok(len);
            }
            if self.notifier.is_closed() {
                return Err(ChannelError::Closed);
            }
            // Unmask, then re-check: a packet written before the unmask sent no signal.
            if self.inp.unmask_interrupts() {
                self.inp.mask_interrupts();
                continue;
            }
            let result = self.wait(WAIT_SLICE);
            self.inp.mask_interrupts();
            result?;
        }
    }

    /// Receives and parses one packet: a convenience over [`recv`](Self::recv).
    pub fn recv_packet<'b>(&mut self, buf: &'b mut [u8]) -> Result<Packet<'b>, ChannelError> {
        let len = self.recv(buf)?;
        let bytes = buf
            .get(..len)
            .ok_or(ChannelError::BufferTooSmall { needed: len })?;
        Packet::parse(bytes).map_err(|err| self.fail(ChannelError::Malformed(err)))
    }

    /// One bounded wait. Time that passes without a signal counts towards the idle limit; only
    /// a packet sent or received resets it.
    fn wait(&mut self, slice: Duration) -> Result<(), ChannelError> {
        match self.notifier.wait(slice) {
            Wake::Signalled => Ok(()),
            Wake::Closed => Err(ChannelError::Closed),
            Wake::TimedOut => {
                self.idle = self.idle.saturating_add(slice);
                if self.idle >= self.idle_timeout {
                    Err(self.fail(ChannelError::Timeout(self.idle)))
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// A virtualization service provider: the root-side half of a device.
///
/// The harness (and later `rootd`) offers the device under [`interface_id`](Self::interface_id),
/// runs the VMBus handshake with the client and calls [`serve`](Self::serve) with the opened
/// channel.
pub trait Vsp {
    /// Interface GUID the device is offered under.
    fn interface_id(&self) -> Guid;
    /// Serves requests until the channel closes. Returns `Ok` when the client closed the
    /// channel, an error when the client broke the protocol (the channel is then closed).
    fn serve<M: RingMem, N: Notifier>(
        &mut self,
        channel: &mut Endpoint<M, N>,
    ) -> Result<(), ChannelError>;
}

/// A virtualization service client: the guest-side half of a device (`no_std` + `alloc`).
pub trait Vsc {
    /// What a finished run reports.
    type Outcome;
    /// Interface GUID of the device this client drives.
    fn interface_id(&self) -> Guid;
    /// Drives the device over the opened channel. The caller closes the channel afterwards.
    fn run<M: RingMem, N: Notifier>(
        &mut self,
        channel: &mut Endpoint<M, N>,
    ) -> Result<Self::Outcome, ChannelError>;
}
