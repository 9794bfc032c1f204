//! The echo VSP (root side): answers each echo request with a completion packet that carries
//! the same transaction id and the same payload.
//!
//! **Invariant:** a request it cannot parse closes the channel with a typed error; nothing a
//! client sends makes it panic.
#![forbid(unsafe_code)]

use echo_protocol::{EchoMessage, MessageType};
use vsp_vsc_channel::{
    ChannelError, Endpoint, Guid, Notifier, OutgoingPacket, Packet, PacketKind, RingMem, Vsp,
};

/// The echo VSP. Counts what it served.
#[derive(Debug, Default)]
pub struct EchoVsp {
    /// Requests answered so far.
    pub requests: u64,
    /// Payload bytes echoed so far.
    pub bytes: u64,
    rx: Vec<u8>,
    tx: Vec<u8>,
}

impl EchoVsp {
    /// A VSP that has served nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers one received packet.
    fn answer<M: RingMem, N: Notifier>(
        &mut self,
        channel: &mut Endpoint<M, N>,
        len: usize,
    ) -> Result<(), ChannelError> {
        let bytes = self.rx.get(..len).unwrap_or_default();
        let packet = Packet::parse(bytes).map_err(|e| channel.fail(ChannelError::Malformed(e)))?;
        if packet.kind != PacketKind::InBand {
            return Err(channel.fail(ChannelError::Protocol("echo request is not in-band")));
        }
        let request = EchoMessage::parse(packet.payload)
            .map_err(|_| channel.fail(ChannelError::Protocol("malformed echo request")))?;
        if request.msg_type != MessageType::Request {
            return Err(channel.fail(ChannelError::Protocol("echo message is not a request")));
        }
        let response = EchoMessage::response(request.payload);
        self.tx.resize(response.encoded_len(), 0);
        let n = response
            .encode(&mut self.tx)
            .map_err(|_| channel.fail(ChannelError::Protocol("echo payload too large")))?;
        let tid = packet.transaction_id;
        self.requests += 1;
        self.bytes += request.payload.len() as u64;
        channel.send(&OutgoingPacket::completion(tid, &self.tx[..n]))
    }
}

impl Vsp for EchoVsp {
    fn interface_id(&self) -> Guid {
        echo_protocol::INTERFACE_ID
    }

    fn serve<M: RingMem, N: Notifier>(
        &mut self,
        channel: &mut Endpoint<M, N>,
    ) -> Result<(), ChannelError> {
        if self.rx.len() < 4096 {
            self.rx.resize(4096, 0);
        }
        loop {
            match channel.recv(&mut self.rx) {
                Ok(len) => self.answer(channel, len)?,
                Err(ChannelError::BufferTooSmall { needed }) => self.rx.resize(needed, 0),
                Err(ChannelError::Closed) => return Ok(()),
                Err(err) => return Err(err),
            }
        }
    }
}
