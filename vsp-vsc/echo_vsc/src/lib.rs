//! The echo VSC (guest side, `no_std` + `alloc`): sends numbered echo requests and checks that
//! each response comes back as a completion with the request's transaction id and payload.
//!
//! Up to [`EchoConfig::window`] requests are in flight. The client never blocks in a send while
//! responses are waiting to be read: when the request ring is full it drains responses and
//! waits for either space or a response, so client and VSP can never wait on each other.
//!
//! **Invariant:** a response that does not match (wrong kind, transaction id, length or bytes)
//! closes the channel with [`ChannelError::Protocol`]; nothing the VSP sends makes it panic.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;

use echo_protocol::{EchoMessage, MessageType};
use vsp_vsc_channel::{
    ChannelError, Endpoint, Guid, Notifier, OutgoingPacket, Packet, PacketKind, RingMem, Vsc,
};

/// What the client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoConfig {
    /// Number of requests.
    pub messages: u64,
    /// Payload bytes per request.
    pub size: usize,
    /// Most requests in flight at once (at least 1).
    pub window: usize,
}

impl Default for EchoConfig {
    fn default() -> Self {
        Self {
            messages: 1000,
            size: 64,
            window: 8,
        }
    }
}

/// What a finished run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoReport {
    /// Requests answered correctly.
    pub messages: u64,
    /// Payload bytes echoed.
    pub bytes: u64,
}

/// The byte at `index` of request `id`'s payload: a pattern that differs per request, so a
/// response carrying another request's bytes is caught.
pub fn pattern_byte(id: u64, index: usize) -> u8 {
    (id.wrapping_mul(31).wrapping_add(index as u64 * 7)) as u8
}

/// The echo client.
#[derive(Debug)]
pub struct EchoVsc {
    config: EchoConfig,
}

impl EchoVsc {
    /// A client that will send `config.messages` requests.
    pub fn new(config: EchoConfig) -> Self {
        Self { config }
    }

    fn fill(buf: &mut Vec<u8>, id: u64, size: usize) -> Result<(), ChannelError> {
        let payload: Vec<u8> = (0..size).map(|i| pattern_byte(id, i)).collect();
        buf.resize(EchoMessage::request(&payload).encoded_len(), 0);
        EchoMessage::request(&payload)
            .encode(buf)
            .map(|_| ())
            .map_err(|_| ChannelError::Protocol("echo payload too large"))
    }

    fn check(bytes: &[u8], expected_id: u64, size: usize) -> Result<(), ChannelError> {
        let packet = Packet::parse(bytes).map_err(ChannelError::Malformed)?;
        if packet.kind != PacketKind::Completion {
            return Err(ChannelError::Protocol("echo response is not a completion"));
        }
        if packet.transaction_id != expected_id {
            return Err(ChannelError::Protocol("echo response out of order"));
        }
        let msg = EchoMessage::parse(packet.payload)
            .map_err(|_| ChannelError::Protocol("malformed echo response"))?;
        if msg.msg_type != MessageType::Response || msg.payload.len() != size {
            return Err(ChannelError::Protocol("echo response has the wrong length"));
        }
        let intact = msg
            .payload
            .iter()
            .enumerate()
            .all(|(i, &b)| b == pattern_byte(expected_id, i));
        if !intact {
            return Err(ChannelError::Protocol("echo response payload differs"));
        }
        Ok(())
    }
}

impl Vsc for EchoVsc {
    type Outcome = EchoReport;

    fn interface_id(&self) -> Guid {
        echo_protocol::INTERFACE_ID
    }

    fn run<M: RingMem, N: Notifier>(
        &mut self,
        channel: &mut Endpoint<M, N>,
    ) -> Result<EchoReport, ChannelError> {
        let EchoConfig {
            messages,
            size,
            window,
        } = self.config;
        let window = window.max(1) as u64;
        let mut request = Vec::new();
        let mut rx = vec![0u8; 4096];
        let mut sent = 0u64;
        let mut received = 0u64;
        let mut prepared = None;
        while received < messages {
            let mut progress = false;
            let mut blocked = false;
            if sent < messages && sent - received < window {
                if prepared != Some(sent) {
                    Self::fill(&mut request, sent, size)?;
                    prepared = Some(sent);
                }
                let packet = OutgoingPacket::in_band(sent, &request);
                if channel.try_send(&packet)? {
                    sent += 1;
                    progress = true;
                } else {
                    blocked = true;
                }
            }
            loop {
                match channel.try_recv(&mut rx) {
                    Ok(Some(len)) => {
                        let bytes = rx.get(..len).unwrap_or_default();
                        if received >= sent {
                            return Err(channel
                                .fail(ChannelError::Protocol("echo response without a request")));
                        }
                        Self::check(bytes, received, size).map_err(|e| channel.fail(e))?;
                        received += 1;
                        progress = true;
                    }
                    Ok(None) => break,
                    Err(ChannelError::BufferTooSmall { needed }) => rx.resize(needed, 0),
                    Err(err) => return Err(err),
                }
            }
            if !progress && received < messages {
                let packet = OutgoingPacket::in_band(sent, &request);
                channel.wait_for_peer(blocked.then_some(&packet))?;
            }
        }
        Ok(EchoReport {
            messages: received,
            bytes: received.saturating_mul(size as u64),
        })
    }
}
