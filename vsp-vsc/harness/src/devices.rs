//! Devices the `vmbus-pair` CLI knows, and a hostile client for testing VSPs' error paths.

use std::time::Duration;

use vmbus_ring::{ControlField, RingMem};
use vsp_vsc_channel::{ChannelError, Endpoint, Guid, Notifier, Vsc, Wake};

/// A device the CLI can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Device {
    /// The echo device: the VSP sends every request's payload back.
    Echo,
}

impl Device {
    /// Every known device.
    pub const ALL: [Device; 1] = [Device::Echo];

    /// Its CLI name.
    pub fn name(self) -> &'static str {
        match self {
            Device::Echo => "echo",
        }
    }

    /// Its interface GUID.
    pub fn interface_id(self) -> Guid {
        match self {
            Device::Echo => echo_protocol::INTERFACE_ID,
        }
    }

    /// One line about it.
    pub fn description(self) -> &'static str {
        match self {
            Device::Echo => {
                "Echo test device: the VSC sends numbered requests, the VSP completes each with the same payload"
            }
        }
    }
}

/// How a [`SaboteurVsc`] breaks the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Sabotage {
    /// Publish an unaligned write index in the control page.
    ControlPage,
    /// Publish a packet whose descriptor has a zero length.
    Packet,
}

/// A hostile client: after the handshake it corrupts its outgoing ring instead of speaking the
/// device protocol, signals the VSP, and waits (bounded) for the VSP to close the channel.
/// Succeeds if the VSP closed the channel; the VSP is expected to report a corrupt ring.
#[derive(Debug)]
pub struct SaboteurVsc {
    /// The device whose interface GUID to ask for.
    pub interface: Guid,
    /// What to corrupt.
    pub sabotage: Sabotage,
    /// How long to wait for the VSP to notice.
    pub timeout: Duration,
}

impl Vsc for SaboteurVsc {
    type Outcome = ();

    fn interface_id(&self) -> Guid {
        self.interface
    }

    fn run<M: RingMem, N: Notifier>(
        &mut self,
        channel: &mut Endpoint<M, N>,
    ) -> Result<(), ChannelError> {
        let mem = channel.writer().mem();
        let write = mem.load_control(
            ControlField::WriteIndex,
            core::sync::atomic::Ordering::Relaxed,
        );
        match self.sabotage {
            Sabotage::ControlPage => {
                mem.store_control(
                    ControlField::WriteIndex,
                    write | 4,
                    core::sync::atomic::Ordering::Release,
                );
            }
            Sabotage::Packet => {
                // A descriptor with len8 = 0 and offset8 = 2, then a trailer.
                let mut bytes = [0u8; 24];
                bytes[0] = 6; // in-band
                bytes[2] = 2;
                if write
                    .checked_add(24)
                    .is_some_and(|end| end < mem.data_len())
                {
                    mem.write_data(write, &bytes);
                    mem.store_control(
                        ControlField::WriteIndex,
                        write + 24,
                        core::sync::atomic::Ordering::Release,
                    );
                }
            }
        }
        channel.notifier().signal();
        let mut waited = Duration::ZERO;
        let slice = Duration::from_millis(20);
        while waited < self.timeout {
            if channel.notifier().wait(slice) == Wake::Closed {
                return Ok(());
            }
            waited += slice;
        }
        Err(ChannelError::Timeout(waited))
    }
}
