//! The worked example of `vsp-vsc/README.md` ("Testing your own VSP/VSC"), kept compiling and
//! passing here. Keep the two in sync.

use vmbus_protocol::Guid;
use vsp_vsc_harness::{
    ChannelError, Endpoint, Notifier, OutgoingPacket, PacketKind, PairOptions, RingMem, Vsc, Vsp,
    run_in_process,
};

/// Interface GUID of the example device (make your own with `uuidgen`).
const UPPER: Guid = Guid::from_literal("0f6c5a52-7d0e-4c38-9a51-3d2b5e8e4a11");

/// VSP: answers each in-band request with its bytes in upper case.
struct UpperVsp;

impl Vsp for UpperVsp {
    fn interface_id(&self) -> Guid {
        UPPER
    }

    fn serve<M: RingMem, N: Notifier>(
        &mut self,
        ch: &mut Endpoint<M, N>,
    ) -> Result<(), ChannelError> {
        let mut buf = vec![0u8; 4096];
        loop {
            let req = match ch.recv_packet(&mut buf) {
                Ok(packet) => packet,
                Err(ChannelError::Closed) => return Ok(()),
                Err(err) => return Err(err),
            };
            let reply = req.payload.to_ascii_uppercase();
            let tid = req.transaction_id;
            ch.send(&OutgoingPacket::completion(tid, &reply))?;
        }
    }
}

/// VSC: sends one request and returns the answer.
struct UpperVsc(&'static str);

impl Vsc for UpperVsc {
    type Outcome = String;

    fn interface_id(&self) -> Guid {
        UPPER
    }

    fn run<M: RingMem, N: Notifier>(
        &mut self,
        ch: &mut Endpoint<M, N>,
    ) -> Result<String, ChannelError> {
        ch.send(&OutgoingPacket::in_band(1, self.0.as_bytes()))?;
        let mut buf = vec![0u8; 4096];
        let reply = ch.recv_packet(&mut buf)?;
        if reply.kind != PacketKind::Completion || reply.transaction_id != 1 {
            return Err(ChannelError::Protocol("unexpected reply"));
        }
        // Payloads are padded to 8 bytes on the wire; real protocols carry their length.
        let text = &reply.payload[..self.0.len()];
        Ok(String::from_utf8_lossy(text).into_owned())
    }
}

#[test]
fn upper_case_device() {
    let result = run_in_process(
        &mut UpperVsp,
        &mut UpperVsc("hello, vmbus"),
        &PairOptions::default(),
    );
    assert_eq!(result.into_result().unwrap(), "HELLO, VMBUS");
}
