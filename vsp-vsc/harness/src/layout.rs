//! Layout of the shared region (a `--shm` file, or anonymous memory in one process).
//!
//! ```text
//! page 0        harness header (below)
//! page 1..=2    control-plane messages, client -> server: a VMBus ring (control page + 1 data page)
//! page 3..=4    control-plane messages, server -> client: likewise
//! page 5..      the channel's ring buffer, exactly as a guest hands it over in a GPADL:
//!               client-to-server ring (control page + N data pages), then
//!               server-to-client ring (control page + N data pages); the open-channel message's
//!               downstream page offset is 1 + N
//! ```
//!
//! The two message rings stand in for SynIC message slots: each carries one encoded channel
//! message per in-band packet (transaction id = exact message length). Header words (little
//! endian `u32`, byte offsets): magic `MICAPAIR` at 0..8, layout version at 8, N (data pages per
//! channel ring) at 12, total pages at 16, client-attached flag at 20; the doorbell the server
//! waits on at 64, the client's at 128 (counters the peer increments to signal), the channel's
//! closed flag at 192. The creator writes everything else first and the magic last.
//!
//! "Guest page numbers" in the GPADL are page indices in this region.

use std::sync::atomic::Ordering;

use crate::HarnessError;
use crate::shm::{PAGE, SharedRegion};

const MAGIC_LO: u32 = u32::from_le_bytes(*b"MICA");
const MAGIC_HI: u32 = u32::from_le_bytes(*b"PAIR");
/// Version of this layout; a file with another version is refused.
pub const LAYOUT_VERSION: u32 = 1;

const OFF_MAGIC_LO: usize = 0;
const OFF_MAGIC_HI: usize = 4;
const OFF_VERSION: usize = 8;
const OFF_RING_DATA_PAGES: usize = 12;
const OFF_TOTAL_PAGES: usize = 16;
/// Byte offset of the client-attached flag.
pub const OFF_CLIENT_ATTACHED: usize = 20;
/// Byte offset of the doorbell the server side waits on.
pub const OFF_DOORBELL_SERVER: usize = 64;
/// Byte offset of the doorbell the client side waits on.
pub const OFF_DOORBELL_CLIENT: usize = 128;
/// Byte offset of the channel's closed flag.
pub const OFF_CLOSED: usize = 192;

/// First page of the client-to-server message ring.
pub const MSG_TO_SERVER_PAGE: usize = 1;
/// First page of the server-to-client message ring.
pub const MSG_TO_CLIENT_PAGE: usize = 3;
/// First page of the channel ring buffer (the GPADL).
pub const RING_BUFFER_PAGE: usize = 5;

/// Most data pages per channel ring (256 MiB), keeping every size far from overflow.
pub const MAX_RING_DATA_PAGES: usize = 65536;

/// The region's geometry: how big the channel rings are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Data pages of each channel ring.
    pub ring_data_pages: usize,
}

impl Geometry {
    /// Rings with a `ring_bytes`-byte data area each (rounded up to pages, at least 1 page).
    pub fn with_ring_bytes(ring_bytes: usize) -> Result<Self, HarnessError> {
        let pages = ring_bytes.div_ceil(PAGE).max(1);
        if pages > MAX_RING_DATA_PAGES {
            return Err(HarnessError::BadGeometry("ring larger than 256 MiB"));
        }
        Ok(Self {
            ring_data_pages: pages,
        })
    }

    /// Pages of the channel ring buffer (both rings).
    pub fn ring_buffer_pages(&self) -> usize {
        2 * (1 + self.ring_data_pages)
    }

    /// Page offset of the server-to-client ring inside the ring buffer.
    pub fn downstream_page_offset(&self) -> usize {
        1 + self.ring_data_pages
    }

    /// Pages of the whole region.
    pub fn total_pages(&self) -> usize {
        RING_BUFFER_PAGE + self.ring_buffer_pages()
    }

    /// Bytes of the whole region.
    pub fn total_bytes(&self) -> usize {
        self.total_pages() * PAGE
    }
}

/// Writes the header of a fresh region (the magic last).
pub fn init_header(region: &SharedRegion, geometry: Geometry) {
    region.store(OFF_VERSION, LAYOUT_VERSION, Ordering::Relaxed);
    region.store(
        OFF_RING_DATA_PAGES,
        geometry.ring_data_pages as u32,
        Ordering::Relaxed,
    );
    region.store(
        OFF_TOTAL_PAGES,
        geometry.total_pages() as u32,
        Ordering::Relaxed,
    );
    region.store(OFF_MAGIC_HI, MAGIC_HI, Ordering::Release);
    region.store(OFF_MAGIC_LO, MAGIC_LO, Ordering::Release);
}

/// Whether the creator has finished the header.
pub fn header_ready(region: &SharedRegion) -> bool {
    region.len() >= PAGE && region.load(OFF_MAGIC_LO, Ordering::Acquire) == MAGIC_LO
}

/// Reads and checks the header of a region another process created.
pub fn check_header(region: &SharedRegion) -> Result<Geometry, HarnessError> {
    if region.len() < PAGE
        || region.load(OFF_MAGIC_LO, Ordering::Acquire) != MAGIC_LO
        || region.load(OFF_MAGIC_HI, Ordering::Acquire) != MAGIC_HI
    {
        return Err(HarnessError::BadFile("no vmbus-pair header (wrong magic)"));
    }
    if region.load(OFF_VERSION, Ordering::Relaxed) != LAYOUT_VERSION {
        return Err(HarnessError::BadFile("unsupported layout version"));
    }
    let ring_data_pages = region.load(OFF_RING_DATA_PAGES, Ordering::Relaxed) as usize;
    if ring_data_pages == 0 || ring_data_pages > MAX_RING_DATA_PAGES {
        return Err(HarnessError::BadFile("ring size out of range"));
    }
    let geometry = Geometry { ring_data_pages };
    let total = region.load(OFF_TOTAL_PAGES, Ordering::Relaxed) as usize;
    if total != geometry.total_pages() || region.len() != geometry.total_bytes() {
        return Err(HarnessError::BadFile(
            "file size does not match its header (wrong size)",
        ));
    }
    Ok(geometry)
}
