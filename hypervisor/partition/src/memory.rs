//! A partition's guest-physical memory: the traits through which the hypervisor supplies
//! frames ([`MemoryPool`]), touches host-physical bytes ([`HostPhysMemory`]) and edits
//! second-level tables ([`SecondLevel`]), the per-partition map ([`GuestRam`]) and the
//! [`GuestMemory`] views built on them.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use bitflags::bitflags;
use hypercall::{Access, GuestMemory, GuestMemoryError, MapGpaFlags};
pub use paging::Flush;

/// Size of a guest page and of a host frame.
pub const PAGE_SIZE: u64 = 4096;
/// `PAGE_SIZE` as a `usize`, for buffers.
pub const PAGE_BYTES: usize = 4096;

/// The child-memory pool the hypervisor reserves at boot: 4 KiB host frames for child RAM.
///
/// The partition manager zeroes every frame (through [`HostPhysMemory`]) before a guest
/// can see it, so an implementation need not.
pub trait MemoryPool {
    /// A free 4 KiB-aligned host-physical frame, or `None` when the pool is empty.
    fn allocate(&mut self) -> Option<u64>;

    /// Returns a frame obtained from [`Self::allocate`]. The caller has already removed
    /// every mapping of it and carried out the TLB flush that required.
    fn free(&mut self, hpa: u64);

    /// Frames still available (for the root's `hvctl info`).
    fn free_frames(&self) -> u64;

    /// Frames the pool holds in all (free or handed out).
    fn total_frames(&self) -> u64;
}

/// Host-physical memory, as the hypervisor reaches it (its physical-memory window on bare
/// metal, a `Vec` in tests).
///
/// The partition manager only passes ranges inside one 4 KiB frame that is either a pool
/// frame it owns or RAM of the root partition, so implementations need not check bounds
/// beyond what their own safety requires.
pub trait HostPhysMemory {
    /// Copies `buf.len()` bytes at host-physical `hpa` into `buf`.
    fn read(&self, hpa: u64, buf: &mut [u8]);

    /// Copies `data` to host-physical `hpa`.
    fn write(&mut self, hpa: u64, data: &[u8]);

    /// Fills the 4 KiB frame at `hpa` with zeros.
    fn zero_frame(&mut self, hpa: u64) {
        self.write(hpa, &[0; PAGE_BYTES]);
    }
}

bitflags! {
    /// What a guest may do with one of its pages (as the second-level tables enforce it).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct GpaPerms: u8 {
        /// Reads (always set for a mapped page: AMD NPT cannot express write-only or
        /// execute-only pages, so Mica maps none).
        const READ = 1 << 0;
        /// Writes.
        const WRITE = 1 << 1;
        /// Instruction fetches.
        const EXECUTE = 1 << 2;
    }
}

impl GpaPerms {
    /// The permissions `HV_MAP_GPA_FLAGS` asks for, or `None` if they are not readable
    /// (Mica maps only readable pages).
    #[must_use]
    pub fn from_map_flags(flags: MapGpaFlags) -> Option<Self> {
        if !flags.contains(MapGpaFlags::READABLE) {
            return None;
        }
        let mut perms = Self::READ;
        if flags.contains(MapGpaFlags::WRITABLE) {
            perms |= Self::WRITE;
        }
        if flags.intersects(MapGpaFlags::KERNEL_EXECUTABLE | MapGpaFlags::USER_EXECUTABLE) {
            perms |= Self::EXECUTE;
        }
        Some(perms)
    }
}

/// Why a second-level table operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecondLevelError {
    /// No frame was left for a new table.
    #[error("Out of frames for second-level tables")]
    OutOfFrames,
    /// The GPA is already mapped.
    #[error("GPA {0:#x} is already mapped")]
    AlreadyMapped(u64),
    /// The GPA is not mapped.
    #[error("GPA {0:#x} is not mapped")]
    NotMapped(u64),
    /// The tables refused the address or permissions (beyond the GPA width, ...).
    #[error("Second-level tables refused GPA {0:#x}")]
    Rejected(u64),
}

/// Second-level address translation (AMD NPT, Intel EPT): one table tree per partition,
/// named by its root's host-physical address (nCR3 / the EPTP's address field).
///
/// The partition manager keeps its own map ([`GuestRam`]) as the authority and mirrors
/// every change here, 4 KiB page by 4 KiB page. [`crate::npt::NestedTables`] implements
/// this over `paging` for any [`paging::EntryFormat`].
pub trait SecondLevel {
    /// A new, empty table tree; returns its root.
    ///
    /// # Errors
    /// [`SecondLevelError::OutOfFrames`].
    fn create(&mut self) -> Result<u64, SecondLevelError>;

    /// Maps the 4 KiB guest page at `gpa` to the host frame `hpa` with `perms`.
    ///
    /// # Errors
    /// Why the page could not be mapped; the tree is then unchanged.
    fn map(
        &mut self,
        root: u64,
        gpa: u64,
        hpa: u64,
        perms: GpaPerms,
    ) -> Result<Flush, SecondLevelError>;

    /// Removes the mapping of the 4 KiB guest page at `gpa`.
    ///
    /// # Errors
    /// [`SecondLevelError::NotMapped`].
    fn unmap(&mut self, root: u64, gpa: u64) -> Result<Flush, SecondLevelError>;

    /// Frees the (already empty) tree rooted at `root`, table frames included. The caller
    /// has flushed every TLB that may hold its translations.
    fn destroy(&mut self, root: u64);
}

/// One mapped guest page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpaMapping {
    /// Host frame backing the page.
    pub hpa: u64,
    /// What the guest may do with it.
    pub perms: GpaPerms,
}

/// A partition's guest-physical RAM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestRam {
    /// The root partition: GPA = HPA over these page-aligned, sorted, disjoint host ranges
    /// (`[start, end)`), readable, writable and executable. The lead builds the root's
    /// second-level tables; this crate only uses the ranges to reach hypercall parameters.
    Identity(Vec<(u64, u64)>),
    /// A child partition: GPA page number → pool frame.
    Mapped(BTreeMap<u64, GpaMapping>),
}

impl GuestRam {
    /// The host frame and permissions behind guest page number `gpa_page`.
    #[must_use]
    pub fn translate_page(&self, gpa_page: u64) -> Option<GpaMapping> {
        match self {
            Self::Identity(ranges) => {
                let gpa = gpa_page.checked_mul(PAGE_SIZE)?;
                ranges
                    .iter()
                    .any(|&(start, end)| gpa >= start && gpa < end)
                    .then_some(GpaMapping {
                        hpa: gpa,
                        perms: GpaPerms::all(),
                    })
            }
            Self::Mapped(map) => map.get(&gpa_page).copied(),
        }
    }

    /// Number of pages a child has mapped (0 for the root's identity RAM).
    #[must_use]
    pub fn mapped_pages(&self) -> u64 {
        match self {
            Self::Identity(_) => 0,
            Self::Mapped(map) => map.len() as u64,
        }
    }

    /// Checks `[gpa, gpa + len)` page by page; returns the error the range deserves.
    fn check_range(&self, gpa: u64, len: u64, access: Access) -> Result<(), GuestMemoryError> {
        let not_ram = GuestMemoryError::NotRam { gpa, len };
        if len == 0 {
            return Ok(());
        }
        let last = gpa.checked_add(len - 1).ok_or(not_ram)?;
        for page in gpa / PAGE_SIZE..=last / PAGE_SIZE {
            let mapping = self.translate_page(page).ok_or(not_ram)?;
            if access == Access::Write && !mapping.perms.contains(GpaPerms::WRITE) {
                return Err(GuestMemoryError::NotWritable { gpa, len });
            }
        }
        Ok(())
    }
}

/// Splits `[gpa, gpa + len)` into per-page pieces `(gpa, offset in the range, length)`.
/// The range must not overflow (checked by the caller).
fn pieces(gpa: u64, len: usize) -> impl Iterator<Item = (u64, usize, usize)> {
    let mut done = 0usize;
    core::iter::from_fn(move || {
        if done >= len {
            return None;
        }
        let at = gpa + done as u64;
        let room = (PAGE_SIZE - at % PAGE_SIZE) as usize;
        let n = room.min(len - done);
        let piece = (at, done, n);
        done += n;
        Some(piece)
    })
}

/// A partition's guest-physical memory seen through its map: what image loading and
/// other hypervisor-side copies use. Implements [`GuestMemory`].
#[derive(Debug)]
pub struct PartitionMemory<'a, H: HostPhysMemory> {
    pub(crate) ram: &'a GuestRam,
    pub(crate) host: &'a mut H,
}

impl<H: HostPhysMemory> PartitionMemory<'_, H> {
    /// The host-physical address behind `gpa`, if it is RAM of the partition.
    #[must_use]
    pub fn translate(&self, gpa: u64) -> Option<u64> {
        let mapping = self.ram.translate_page(gpa / PAGE_SIZE)?;
        Some(mapping.hpa + gpa % PAGE_SIZE)
    }
}

impl<H: HostPhysMemory> GuestMemory for PartitionMemory<'_, H> {
    fn check(&self, gpa: u64, len: u64, access: Access) -> Result<(), GuestMemoryError> {
        self.ram.check_range(gpa, len, access)
    }

    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), GuestMemoryError> {
        self.ram.check_range(gpa, buf.len() as u64, Access::Read)?;
        for (at, offset, n) in pieces(gpa, buf.len()) {
            let hpa = self.translate(at).ok_or(GuestMemoryError::NotRam {
                gpa,
                len: buf.len() as u64,
            })?;
            self.host.read(hpa, &mut buf[offset..offset + n]);
        }
        Ok(())
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), GuestMemoryError> {
        self.ram
            .check_range(gpa, data.len() as u64, Access::Write)?;
        for (at, offset, n) in pieces(gpa, data.len()) {
            let hpa = self.translate(at).ok_or(GuestMemoryError::NotRam {
                gpa,
                len: data.len() as u64,
            })?;
            self.host.write(hpa, &data[offset..offset + n]);
        }
        Ok(())
    }
}

/// One pre-read page of a hypercall caller's memory.
#[derive(Debug)]
struct BufferedPage {
    gpa_page: u64,
    perms: GpaPerms,
    bytes: [u8; PAGE_BYTES],
    dirty: bool,
}

/// The caller's memory during one hypercall: the (at most two) pages its RDX and R8 name,
/// copied out before the call and written back after it. The dispatcher keeps every
/// parameter block inside one page, so these pages are all it may touch; this lets the
/// partition manager be the handler (and edit any partition's map) while the dispatcher
/// holds the caller's memory, and it reads guest memory exactly once per call.
#[derive(Debug)]
pub(crate) struct CallerMemory {
    pages: [Option<BufferedPage>; 2],
}

impl CallerMemory {
    /// A view with no pages (for fast calls).
    pub(crate) const fn empty() -> Self {
        Self {
            pages: [None, None],
        }
    }

    /// Buffers the pages of `gpas` that are RAM of the caller (`ram`).
    pub(crate) fn load<H: HostPhysMemory>(ram: &GuestRam, host: &H, gpas: [u64; 2]) -> Self {
        let mut pages = [None, None];
        for (slot, gpa) in pages.iter_mut().zip(gpas) {
            let gpa_page = gpa / PAGE_SIZE;
            let Some(mapping) = ram.translate_page(gpa_page) else {
                continue;
            };
            let mut bytes = [0u8; PAGE_BYTES];
            host.read(mapping.hpa, &mut bytes);
            *slot = Some(BufferedPage {
                gpa_page,
                perms: mapping.perms,
                bytes,
                dirty: false,
            });
        }
        if let [Some(a), Some(b)] = &pages
            && a.gpa_page == b.gpa_page
        {
            pages[1] = None;
        }
        Self { pages }
    }

    /// Writes modified pages back through the caller's (possibly changed) map; a page
    /// that is no longer the caller's RAM is dropped.
    pub(crate) fn store<H: HostPhysMemory>(&self, ram: &GuestRam, host: &mut H) {
        for page in self.pages.iter().flatten().filter(|p| p.dirty) {
            if let Some(mapping) = ram.translate_page(page.gpa_page)
                && mapping.perms.contains(GpaPerms::WRITE)
            {
                host.write(mapping.hpa, &page.bytes);
            }
        }
    }

    fn locate(&self, gpa: u64, len: u64, access: Access) -> Result<usize, GuestMemoryError> {
        let not_ram = GuestMemoryError::NotRam { gpa, len };
        let offset = gpa % PAGE_SIZE;
        if offset.checked_add(len).is_none_or(|end| end > PAGE_SIZE) {
            return Err(not_ram);
        }
        let index = self
            .pages
            .iter()
            .position(|p| p.as_ref().is_some_and(|p| p.gpa_page == gpa / PAGE_SIZE))
            .ok_or(not_ram)?;
        let writable = self.pages[index]
            .as_ref()
            .is_some_and(|p| p.perms.contains(GpaPerms::WRITE));
        if access == Access::Write && !writable {
            return Err(GuestMemoryError::NotWritable { gpa, len });
        }
        Ok(index)
    }
}

impl GuestMemory for CallerMemory {
    fn check(&self, gpa: u64, len: u64, access: Access) -> Result<(), GuestMemoryError> {
        self.locate(gpa, len, access).map(|_| ())
    }

    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), GuestMemoryError> {
        let index = self.locate(gpa, buf.len() as u64, Access::Read)?;
        let start = (gpa % PAGE_SIZE) as usize;
        if let Some(page) = &self.pages[index] {
            buf.copy_from_slice(&page.bytes[start..start + buf.len()]);
        }
        Ok(())
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), GuestMemoryError> {
        let index = self.locate(gpa, data.len() as u64, Access::Write)?;
        let start = (gpa % PAGE_SIZE) as usize;
        if let Some(page) = &mut self.pages[index] {
            page.bytes[start..start + data.len()].copy_from_slice(data);
            page.dirty = true;
        }
        Ok(())
    }
}
