//! The VSP/VSC harness: run any VSP against any VSC back to back, with no hypervisor, in one
//! process (two threads) or two processes (a shared file), through the real VMBus handshake.
//!
//! - Device traits [`Vsp`]/[`Vsc`] and the channel [`Endpoint`] come from `vsp_vsc_channel`
//!   (re-exported here), which is `no_std` so VSCs can use it in test guests.
//! - [`run_in_process`]: two threads over anonymous shared memory, condition-variable
//!   notifications ([`ThreadNotifier`]).
//! - [`serve_file`] / [`connect_file`]: two processes over a `--shm` file whose layout is in
//!   [`layout`], polled doorbell notifications ([`ShmNotifier`]).
//! - Both drive a `vmbus_core` server and client through version negotiation, the offer of the
//!   device's interface GUID, a GPADL for the ring buffer and the channel open before handing
//!   the ring pair to the devices, then close, tear down and unload.
//!
//! **Invariant:** whatever the peer writes (ring indices, packets, channel messages, the file
//! header) ends in a typed [`HarnessError`] after a bounded wait, never a panic or a hang; the
//! only `unsafe` code is the shared-memory accessors in [`shm`].
#![deny(unsafe_code)]

pub mod bench;
pub mod control;
pub mod devices;
pub mod layout;
pub mod notify;
#[allow(unsafe_code)] // Shared-memory accessors; each unsafe block carries its SAFETY argument.
pub mod shm;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vmbus_protocol::Guid;
pub use vsp_vsc_channel::{
    ChannelError, Endpoint, Notifier, OutgoingPacket, Packet, PacketKind, RingMem, Vsc, Vsp, Wake,
};

pub use layout::Geometry;
pub use notify::{ShmNotifier, ThreadNotifier};
pub use shm::{RegionRingMem, SharedRegion};

/// Why a harness run failed.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The shared file could not be created, opened or mapped.
    #[error("Shared memory file {path}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The shared file is not a usable vmbus-pair file.
    #[error("Bad shared memory file: {0}")]
    BadFile(&'static str),
    /// A ring size the harness cannot lay out.
    #[error("Bad ring size: {0}")]
    BadGeometry(&'static str),
    /// The peer did not answer in time.
    #[error("Timed out waiting for {0}")]
    Timeout(&'static str),
    /// Another client already attached to the file.
    #[error("Another client is already attached to this file")]
    AlreadyAttached,
    /// A channel message was illegal for the VMBus state machine.
    #[error("VMBus protocol error")]
    Protocol(#[from] vmbus_core::ProtocolError),
    /// A control-plane message ring is broken.
    #[error("Control message ring: {0}")]
    ControlRing(&'static str),
    /// The server rejected every VMBus version the client offered.
    #[error("Server rejected every VMBus version")]
    ConnectFailed,
    /// The server does not offer the VSC's device.
    #[error("Server offers no device with interface {0}")]
    NotOffered(Guid),
    /// The server refused the ring buffer's GPADL.
    #[error("GPADL refused with status {0:#x}")]
    GpadlRefused(u32),
    /// The server refused to open the channel.
    #[error("Channel open refused with status {0:#x}")]
    OpenRefused(u32),
    /// The device failed on the open channel (the channel is closed).
    #[error("Channel failed")]
    Channel(#[from] ChannelError),
    /// A device thread panicked.
    #[error("Device thread panicked")]
    Panicked,
}

/// Settings of a pair run.
#[derive(Debug, Clone, Copy)]
pub struct PairOptions {
    /// Data-area bytes of each channel ring (rounded up to 4 KiB pages).
    pub ring_bytes: usize,
    /// How long the server waits for a client to attach and open the channel.
    pub setup_timeout: Duration,
    /// How long a device waits for a silent peer on the open channel.
    pub idle_timeout: Duration,
    /// Instance GUID of the offered device.
    pub instance: Guid,
}

impl Default for PairOptions {
    fn default() -> Self {
        Self {
            ring_bytes: 64 * 1024,
            setup_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(10),
            instance: Guid::from_literal("6d696361-0000-4000-8000-000000000001"),
        }
    }
}

/// Both sides' results of an in-process run.
#[derive(Debug)]
pub struct PairResult<O> {
    /// The VSC's outcome.
    pub client: Result<O, HarnessError>,
    /// The VSP's result.
    pub server: Result<(), HarnessError>,
}

impl<O> PairResult<O> {
    /// The VSC's outcome if both sides succeeded, else the first error (the server's first:
    /// when the VSP fails, the client only sees the closed channel).
    pub fn into_result(self) -> Result<O, HarnessError> {
        self.server?;
        self.client
    }
}

/// Runs `vsp` against `vsc` on two threads of this process, through the VMBus handshake.
pub fn run_in_process<V, C>(
    vsp: &mut V,
    vsc: &mut C,
    options: &PairOptions,
) -> PairResult<C::Outcome>
where
    V: Vsp + Send,
    C: Vsc,
{
    let setup = || -> Result<(Arc<SharedRegion>, Geometry), HarnessError> {
        let geometry = Geometry::with_ring_bytes(options.ring_bytes)?;
        let region =
            SharedRegion::anonymous(geometry.total_bytes()).map_err(|source| HarnessError::Io {
                path: "(anonymous)".into(),
                source,
            })?;
        layout::init_header(&region, geometry);
        Ok((Arc::new(region), geometry))
    };
    let (region, geometry) = match setup() {
        Ok(x) => x,
        Err(err) => {
            return PairResult {
                client: Err(err),
                server: Ok(()),
            };
        }
    };
    let (server_side, client_side) = ThreadNotifier::pair();
    std::thread::scope(|scope| {
        let server_region = region.clone();
        let server = scope.spawn(move || control::serve(vsp, &server_region, server_side, options));
        let client = control::connect(vsc, &region, geometry, client_side, options);
        let server = server.join().unwrap_or(Err(HarnessError::Panicked));
        PairResult { client, server }
    })
}

/// Creates the shared file at `path` and serves `vsp` from it until a client has connected,
/// run and unloaded (the `serve` half of a two-process pair).
pub fn serve_file<V: Vsp + Send>(
    vsp: &mut V,
    path: &Path,
    options: &PairOptions,
) -> Result<(), HarnessError> {
    let geometry = Geometry::with_ring_bytes(options.ring_bytes)?;
    let region = SharedRegion::create_file(path, geometry.total_bytes()).map_err(|source| {
        HarnessError::Io {
            path: path.display().to_string(),
            source,
        }
    })?;
    layout::init_header(&region, geometry);
    let region = Arc::new(region);
    let notifier = ShmNotifier::server(region.clone());
    control::serve(vsp, &region, notifier, options)
}

/// Opens the shared file at `path` (waiting up to `options.setup_timeout` for the server to
/// create it) and runs `vsc` against the VSP serving it (the `connect` half of a pair).
pub fn connect_file<C: Vsc>(
    vsc: &mut C,
    path: &Path,
    options: &PairOptions,
) -> Result<C::Outcome, HarnessError> {
    let region = open_when_ready(path, options.setup_timeout)?;
    let geometry = layout::check_header(&region)?;
    let attached = region
        .word(layout::OFF_CLIENT_ATTACHED)
        .ok_or(HarnessError::BadFile("no header"))?
        .compare_exchange(
            0,
            1,
            std::sync::atomic::Ordering::AcqRel,
            std::sync::atomic::Ordering::Acquire,
        );
    if attached.is_err() {
        return Err(HarnessError::AlreadyAttached);
    }
    let region = Arc::new(region);
    let notifier = ShmNotifier::client(region.clone());
    control::connect(vsc, &region, geometry, notifier, options)
}

/// Maps the file once it exists and its creator finished the header; both are retried for a
/// grace period of at most 1 s (start `serve` first: it creates the file at once).
fn open_when_ready(path: &Path, timeout: Duration) -> Result<SharedRegion, HarnessError> {
    let start = Instant::now();
    let grace = timeout.min(Duration::from_secs(1));
    loop {
        match SharedRegion::open_file(path) {
            Ok(region) if layout::header_ready(&region) => return Ok(region),
            Ok(region) if start.elapsed() >= grace => {
                // The header never appeared: say what is wrong with the file.
                layout::check_header(&region)?;
                return Ok(region);
            }
            Ok(_) => {}
            Err(source) if start.elapsed() >= grace => {
                return Err(HarnessError::Io {
                    path: path.display().to_string(),
                    source,
                });
            }
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
