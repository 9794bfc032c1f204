//! Building, changing and walking a 4-level table tree.

use crate::format::{EntryFormat, INPUT_ADDR_BITS, Level, MapFlags, PageSize, TABLE_SIZE};
use crate::memory::{FrameSource, TableMemory};

/// Why a page-table operation failed. The tables are unchanged on error, except that
/// intermediate tables created on the way may remain (empty, and reused later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// The flags ask for a writable and executable page and the policy is
    /// [`WxPolicy::Deny`].
    #[error("Writable and executable mapping denied by the W^X policy")]
    WriteExecute,
    /// The entry format does not allow this page size (1 GiB pages not enabled).
    #[error("{0} pages are not supported")]
    UnsupportedPageSize(PageSize),
    /// The virtual address is not aligned to the page size (4 KiB for ranges and unmap).
    #[error("Virtual address {0:#x} is misaligned")]
    MisalignedVirtual(u64),
    /// The physical address is not aligned to the page size.
    #[error("Physical address {0:#x} is misaligned")]
    MisalignedPhysical(u64),
    /// A range length is not a multiple of 4 KiB.
    #[error("Length {0:#x} is not a multiple of 4 KiB")]
    MisalignedLength(u64),
    /// The input address is not canonical (host tables) or not below 2^48 (nested tables).
    #[error("Address {0:#x} is outside the translated address space")]
    NonCanonical(u64),
    /// A virtual range wraps around or crosses the non-canonical hole.
    #[error("Range at {start:#x} of length {len:#x} is not contiguous")]
    InvalidRange {
        /// First address.
        start: u64,
        /// Length in bytes.
        len: u64,
    },
    /// The physical page (or range) reaches beyond MAXPHYADDR.
    #[error("Physical address {0:#x} is beyond the physical address width")]
    PhysicalTooLarge(u64),
    /// Part of the virtual page is already mapped (by a page of any size).
    #[error("Virtual address {0:#x} is already mapped")]
    AlreadyMapped(u64),
    /// The frame source had no frame for a new table.
    #[error("Out of frames for page tables")]
    OutOfFrames,
    /// The frame source returned a misaligned frame or one beyond MAXPHYADDR.
    #[error("Frame source returned unusable table frame {0:#x}")]
    InvalidTableFrame(u64),
    /// The root table address is misaligned or beyond MAXPHYADDR.
    #[error("Root table {0:#x} is misaligned or beyond the physical address width")]
    InvalidRoot(u64),
    /// Nothing is mapped at the address.
    #[error("Virtual address {0:#x} is not mapped")]
    NotMapped(u64),
    /// The address lies inside a larger page but not at its start (pages are not split).
    #[error("Virtual address {0:#x} lies inside a larger page")]
    PartialHugePage(u64),
}

/// Whether the caller must invalidate TLB entries after an operation.
///
/// The crate never flushes: it cannot know which CPUs use the tables. `Needed` means that a
/// present entry (leaf or table pointer) was changed or removed, so the caller must
/// invalidate the affected addresses (INVLPG, a CR3 reload, INVLPGA/ASID flush for nested
/// tables, INVEPT for EPT) on every CPU that may have used these tables before relying on
/// the change or reusing the memory it mapped. `NotNeeded` means only non-present entries
/// were filled, which x86 processors do not cache.
#[must_use = "the caller must flush the TLB when required"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Only previously non-present entries were written.
    NotNeeded,
    /// A present entry changed: invalidate before relying on the change.
    Needed,
}

impl Flush {
    /// Whether a flush is needed.
    #[must_use]
    pub const fn is_needed(self) -> bool {
        matches!(self, Flush::Needed)
    }

    /// `Needed` if either is.
    pub const fn or(self, other: Flush) -> Flush {
        if self.is_needed() || other.is_needed() {
            Flush::Needed
        } else {
            Flush::NotNeeded
        }
    }
}

/// Whether writable-and-executable mappings may be created. The hypervisor always uses
/// [`WxPolicy::Deny`] (the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WxPolicy {
    /// Reject `WRITABLE | EXECUTABLE` with [`MapError::WriteExecute`].
    #[default]
    Deny,
    /// Accept them (for guest-physical tables whose guests need W+X memory).
    Allow,
}

/// Whether [`PageTables::map_range`] may use 2 MiB and 1 GiB pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HugePages {
    /// Use the largest page alignment and length allow (and the format supports).
    #[default]
    Allowed,
    /// Map with 4 KiB pages only.
    Forbidden,
}

/// The result of translating one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    /// The physical address the input address translates to (page base plus offset).
    pub phys: u64,
    /// Size of the page containing the address.
    pub size: PageSize,
    /// The page's flags, as encoded (see [`EntryFormat::leaf_flags`]).
    pub flags: MapFlags,
}

/// A mapping removed by [`PageTables::unmap`]. The caller must flush the TLB for the page
/// (see [`Flush`]) before reusing the physical memory.
#[must_use = "the caller must flush the TLB for the removed page"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unmapped {
    /// Physical base of the removed page.
    pub phys: u64,
    /// Size of the removed page.
    pub size: PageSize,
    /// Flags it had.
    pub flags: MapFlags,
}

impl Unmapped {
    /// Always [`Flush::Needed`]: a present entry was removed.
    pub const fn flush(&self) -> Flush {
        Flush::Needed
    }
}

/// A leaf entry found by a walk.
struct Leaf {
    table: u64,
    index: usize,
    entry: u64,
    size: PageSize,
}

/// The levels of a walk, top first.
const WALK: [Level; 4] = [Level::Pml4, Level::Pdpt, Level::Pd, Level::Pt];

/// A 4-level table tree rooted at a PML4 (or nested PML4 / EPT PML4) physical address.
///
/// Reads and writes entries through `M`, encodes them with `F`, and takes new table frames
/// from the [`FrameSource`] passed to each mapping call. See [`Flush`] for the TLB contract.
#[derive(Debug)]
pub struct PageTables<'m, M: TableMemory, F: EntryFormat> {
    memory: &'m mut M,
    root: u64,
    format: F,
    wx: WxPolicy,
}

impl<'m, M: TableMemory, F: EntryFormat> PageTables<'m, M, F> {
    /// Tables rooted at the existing top-level table `root` (zeroed, or built earlier with
    /// the same format). The W^X policy starts as [`WxPolicy::Deny`].
    ///
    /// # Errors
    /// [`MapError::InvalidRoot`] if `root` is misaligned or beyond MAXPHYADDR.
    pub fn new(memory: &'m mut M, root: u64, format: F) -> Result<Self, MapError> {
        if !is_table_frame(&format, root) {
            return Err(MapError::InvalidRoot(root));
        }
        Ok(Self {
            memory,
            root,
            format,
            wx: WxPolicy::Deny,
        })
    }

    /// Empty tables with a root taken from `frames`.
    ///
    /// # Errors
    /// [`MapError::OutOfFrames`] or [`MapError::InvalidTableFrame`].
    pub fn create(
        memory: &'m mut M,
        format: F,
        frames: &mut impl FrameSource,
    ) -> Result<Self, MapError> {
        let root = frames.allocate_table().ok_or(MapError::OutOfFrames)?;
        if !is_table_frame(&format, root) {
            return Err(MapError::InvalidTableFrame(root));
        }
        Self::new(memory, root, format)
    }

    /// Sets the W^X policy.
    #[must_use]
    pub fn with_wx_policy(mut self, wx: WxPolicy) -> Self {
        self.wx = wx;
        self
    }

    /// Physical address of the top-level table (for CR3, nCR3 or the EPT pointer).
    #[must_use]
    pub fn root(&self) -> u64 {
        self.root
    }

    /// The entry format.
    #[must_use]
    pub fn format(&self) -> &F {
        &self.format
    }

    /// Maps the page of `size` at `virt` to `phys` with `flags`.
    ///
    /// Missing intermediate tables are taken from `frames`. If a table hangs where the new
    /// leaf goes but maps nothing any more, it is replaced (its frames go to
    /// [`FrameSource::release_table`]) and [`Flush::Needed`] is returned; otherwise mapping
    /// fills a non-present entry and returns [`Flush::NotNeeded`].
    ///
    /// # Errors
    /// [`MapError::WriteExecute`], [`MapError::UnsupportedPageSize`],
    /// [`MapError::MisalignedVirtual`], [`MapError::MisalignedPhysical`],
    /// [`MapError::NonCanonical`], [`MapError::PhysicalTooLarge`],
    /// [`MapError::AlreadyMapped`] (also when a huge page covers `virt` or smaller pages are
    /// mapped inside the new page), [`MapError::OutOfFrames`], [`MapError::InvalidTableFrame`].
    pub fn map(
        &mut self,
        virt: u64,
        phys: u64,
        size: PageSize,
        flags: MapFlags,
        frames: &mut impl FrameSource,
    ) -> Result<Flush, MapError> {
        self.check_flags(flags)?;
        if !self.format.supports(size) {
            return Err(MapError::UnsupportedPageSize(size));
        }
        if !size.is_aligned(virt) {
            return Err(MapError::MisalignedVirtual(virt));
        }
        if !size.is_aligned(phys) {
            return Err(MapError::MisalignedPhysical(phys));
        }
        self.check_input(virt)?;
        self.check_phys(phys, size.bytes())?;
        self.map_checked(virt, phys, size, flags, frames)
    }

    /// Maps `len` bytes at `virt` to `phys`, each piece with the largest page size that the
    /// alignment of both addresses, the remaining length, the format and `huge` allow.
    ///
    /// All-or-nothing: on error, pieces already mapped are removed again; the caller should
    /// then flush `virt..virt + len` before mapping it differently, since processors may have
    /// cached the short-lived entries.
    ///
    /// # Errors
    /// As [`map`](Self::map), plus [`MapError::MisalignedLength`] and
    /// [`MapError::InvalidRange`]; all addresses must be 4 KiB aligned.
    pub fn map_range(
        &mut self,
        virt: u64,
        phys: u64,
        len: u64,
        flags: MapFlags,
        huge: HugePages,
        frames: &mut impl FrameSource,
    ) -> Result<Flush, MapError> {
        self.check_flags(flags)?;
        if !PageSize::Size4K.is_aligned(virt) {
            return Err(MapError::MisalignedVirtual(virt));
        }
        if !PageSize::Size4K.is_aligned(phys) {
            return Err(MapError::MisalignedPhysical(phys));
        }
        if !PageSize::Size4K.is_aligned(len) {
            return Err(MapError::MisalignedLength(len));
        }
        if len == 0 {
            return Ok(Flush::NotNeeded);
        }
        self.check_input(virt)?;
        let last = virt
            .checked_add(len - 1)
            .ok_or(MapError::InvalidRange { start: virt, len })?;
        self.check_input(last)?;
        if self.format.canonical_input() && (virt ^ last) >> (INPUT_ADDR_BITS - 1) != 0 {
            return Err(MapError::InvalidRange { start: virt, len });
        }
        self.check_phys(phys, len)?;

        let mut flush = Flush::NotNeeded;
        let mut offset = 0;
        while offset < len {
            let (v, p) = (virt + offset, phys + offset);
            let size = self.largest_fit(v, p, len - offset, huge);
            match self.map_checked(v, p, size, flags, frames) {
                Ok(f) => flush = flush.or(f),
                Err(e) => {
                    self.remove_range(virt, offset);
                    return Err(e);
                }
            }
            offset += size.bytes();
        }
        Ok(flush)
    }

    /// Removes the mapping that starts at `virt`. Emptied tables stay in place.
    ///
    /// # Errors
    /// [`MapError::MisalignedVirtual`] (not 4 KiB aligned), [`MapError::NonCanonical`],
    /// [`MapError::NotMapped`], or [`MapError::PartialHugePage`] if `virt` lies inside a
    /// larger page without being its start.
    pub fn unmap(&mut self, virt: u64) -> Result<Unmapped, MapError> {
        let leaf = self.leaf_starting_at(virt)?;
        self.memory.write_entry(leaf.table, leaf.index, 0);
        Ok(Unmapped {
            phys: self.format.leaf_address(leaf.entry, leaf.size),
            size: leaf.size,
            flags: self.format.leaf_flags(leaf.entry, leaf.size),
        })
    }

    /// Changes the flags of the mapping that starts at `virt`, keeping its physical page.
    /// Returns [`Flush::Needed`] unless the entry is unchanged.
    ///
    /// # Errors
    /// [`MapError::WriteExecute`] and the errors of [`unmap`](Self::unmap).
    pub fn protect(&mut self, virt: u64, flags: MapFlags) -> Result<Flush, MapError> {
        self.check_flags(flags)?;
        let leaf = self.leaf_starting_at(virt)?;
        let phys = self.format.leaf_address(leaf.entry, leaf.size);
        let entry = self.format.leaf_entry(phys, leaf.size, flags);
        if entry == leaf.entry {
            return Ok(Flush::NotNeeded);
        }
        self.memory.write_entry(leaf.table, leaf.index, entry);
        Ok(Flush::Needed)
    }

    /// What `virt` translates to, or `None` if it is unmapped or outside the address space.
    #[must_use]
    pub fn translate(&self, virt: u64) -> Option<Translation> {
        self.check_input(virt).ok()?;
        let leaf = self.find_leaf(virt)?;
        let base = self.format.leaf_address(leaf.entry, leaf.size);
        Some(Translation {
            phys: base | (virt & (leaf.size.bytes() - 1)),
            size: leaf.size,
            flags: self.format.leaf_flags(leaf.entry, leaf.size),
        })
    }

    /// Calls `f(virt, phys, size, flags)` for every mapped page, in increasing order of the
    /// table index path (low half before high half for host tables). Virtual addresses are
    /// canonical for host tables.
    pub fn for_each_mapping(&self, mut f: impl FnMut(u64, u64, PageSize, MapFlags)) {
        self.walk(self.root, Level::Pml4, 0, &mut f);
    }

    fn walk(
        &self,
        table: u64,
        level: Level,
        base: u64,
        f: &mut dyn FnMut(u64, u64, PageSize, MapFlags),
    ) {
        for index in 0..crate::ENTRIES_PER_TABLE {
            let entry = self.memory.read_entry(table, index);
            if !self.format.is_present(entry) {
                continue;
            }
            // Cannot overflow: index < 512 and the span times 512 is at most 2^48.
            let addr = base + index as u64 * level.entry_span();
            if self.format.is_leaf(entry, level) {
                if let Some(size) = level.leaf_size() {
                    let phys = self.format.leaf_address(entry, size);
                    let flags = self.format.leaf_flags(entry, size);
                    f(self.output_address(addr), phys, size, flags);
                }
            } else if let Some(lower) = level.lower() {
                self.walk(self.format.table_address(entry), lower, addr, f);
            }
        }
    }

    /// Sign-extends a walk address for canonical (host) address spaces.
    fn output_address(&self, addr: u64) -> u64 {
        if self.format.canonical_input() && addr & (1 << (INPUT_ADDR_BITS - 1)) != 0 {
            addr | !((1u64 << INPUT_ADDR_BITS) - 1)
        } else {
            addr
        }
    }

    /// `map` after argument validation.
    fn map_checked(
        &mut self,
        virt: u64,
        phys: u64,
        size: PageSize,
        flags: MapFlags,
        frames: &mut impl FrameSource,
    ) -> Result<Flush, MapError> {
        let leaf_level = size.leaf_level();
        let mut table = self.root;
        for level in WALK {
            if level == leaf_level {
                break;
            }
            let index = level.index(virt);
            let entry = self.memory.read_entry(table, index);
            table = if !self.format.is_present(entry) {
                let frame = frames.allocate_table().ok_or(MapError::OutOfFrames)?;
                if !is_table_frame(&self.format, frame) {
                    return Err(MapError::InvalidTableFrame(frame));
                }
                let pointer = self.format.table_entry(frame);
                self.memory.write_entry(table, index, pointer);
                frame
            } else if self.format.is_leaf(entry, level) {
                // A larger page already covers `virt`.
                return Err(MapError::AlreadyMapped(virt));
            } else {
                self.format.table_address(entry)
            };
        }

        let index = leaf_level.index(virt);
        let entry = self.memory.read_entry(table, index);
        let mut orphan = None;
        if self.format.is_present(entry) {
            let lower = match leaf_level.lower() {
                Some(lower) if !self.format.is_leaf(entry, leaf_level) => lower,
                _ => return Err(MapError::AlreadyMapped(virt)),
            };
            let subtree = self.format.table_address(entry);
            if !self.subtree_is_empty(subtree, lower) {
                return Err(MapError::AlreadyMapped(virt));
            }
            orphan = Some((subtree, lower));
        }
        let leaf = self.format.leaf_entry(phys, size, flags);
        self.memory.write_entry(table, index, leaf);
        match orphan {
            Some((subtree, lower)) => {
                self.release_subtree(subtree, lower, frames);
                Ok(Flush::Needed)
            }
            None => Ok(Flush::NotNeeded),
        }
    }

    /// The largest page size usable at `virt`/`phys` with `remaining` bytes left.
    fn largest_fit(&self, virt: u64, phys: u64, remaining: u64, huge: HugePages) -> PageSize {
        PageSize::LARGEST_FIRST
            .into_iter()
            .find(|&size| {
                (size == PageSize::Size4K || huge == HugePages::Allowed)
                    && self.format.supports(size)
                    && size.is_aligned(virt)
                    && size.is_aligned(phys)
                    && remaining >= size.bytes()
            })
            .unwrap_or(PageSize::Size4K)
    }

    /// Removes the mappings `map_range` made in `virt..virt + len`.
    fn remove_range(&mut self, virt: u64, len: u64) {
        let mut offset = 0;
        while offset < len {
            let step = match self.unmap(virt + offset) {
                Ok(removed) => removed.size.bytes(),
                Err(_) => PageSize::Size4K.bytes(),
            };
            offset += step;
        }
    }

    /// The leaf mapping a page that starts exactly at `virt`.
    fn leaf_starting_at(&self, virt: u64) -> Result<Leaf, MapError> {
        if !PageSize::Size4K.is_aligned(virt) {
            return Err(MapError::MisalignedVirtual(virt));
        }
        self.check_input(virt)?;
        let leaf = self.find_leaf(virt).ok_or(MapError::NotMapped(virt))?;
        if !leaf.size.is_aligned(virt) {
            return Err(MapError::PartialHugePage(virt));
        }
        Ok(leaf)
    }

    /// Walks to the leaf mapping `virt`, if any.
    fn find_leaf(&self, virt: u64) -> Option<Leaf> {
        let mut table = self.root;
        for level in WALK {
            let index = level.index(virt);
            let entry = self.memory.read_entry(table, index);
            if !self.format.is_present(entry) {
                return None;
            }
            if self.format.is_leaf(entry, level) {
                return level.leaf_size().map(|size| Leaf {
                    table,
                    index,
                    entry,
                    size,
                });
            }
            table = self.format.table_address(entry);
        }
        None
    }

    /// Whether the table at `level` and everything below it maps nothing.
    fn subtree_is_empty(&self, table: u64, level: Level) -> bool {
        (0..crate::ENTRIES_PER_TABLE).all(|index| {
            let entry = self.memory.read_entry(table, index);
            if !self.format.is_present(entry) {
                return true;
            }
            match level.lower() {
                Some(lower) if !self.format.is_leaf(entry, level) => {
                    self.subtree_is_empty(self.format.table_address(entry), lower)
                }
                _ => false,
            }
        })
    }

    /// Hands every table of an unreferenced, empty subtree back to `frames`.
    fn release_subtree(&self, table: u64, level: Level, frames: &mut impl FrameSource) {
        if let Some(lower) = level.lower() {
            for index in 0..crate::ENTRIES_PER_TABLE {
                let entry = self.memory.read_entry(table, index);
                if self.format.is_present(entry) && !self.format.is_leaf(entry, level) {
                    self.release_subtree(self.format.table_address(entry), lower, frames);
                }
            }
        }
        frames.release_table(table);
    }

    fn check_flags(&self, flags: MapFlags) -> Result<(), MapError> {
        if self.wx == WxPolicy::Deny && flags.contains(MapFlags::WRITABLE | MapFlags::EXECUTABLE) {
            return Err(MapError::WriteExecute);
        }
        Ok(())
    }

    /// Input addresses: canonical 48-bit for host tables, below 2^48 otherwise.
    fn check_input(&self, addr: u64) -> Result<(), MapError> {
        let high = addr >> (INPUT_ADDR_BITS - 1);
        let ok = if self.format.canonical_input() {
            high == 0 || high == (1 << (64 - INPUT_ADDR_BITS + 1)) - 1
        } else {
            addr >> INPUT_ADDR_BITS == 0
        };
        if ok {
            Ok(())
        } else {
            Err(MapError::NonCanonical(addr))
        }
    }

    /// `phys..phys + len` must lie below 2^MAXPHYADDR.
    fn check_phys(&self, phys: u64, len: u64) -> Result<(), MapError> {
        match phys.checked_add(len) {
            Some(end) if end <= phys_limit(&self.format) => Ok(()),
            _ => Err(MapError::PhysicalTooLarge(phys)),
        }
    }
}

/// First physical address beyond MAXPHYADDR (the format caps the width at 52 bits).
fn phys_limit(format: &impl EntryFormat) -> u64 {
    1u64 << format.phys_addr_bits().min(crate::MAX_PHYS_ADDR_BITS)
}

/// Whether `frame` can hold a table: 4 KiB aligned and below MAXPHYADDR.
fn is_table_frame(format: &impl EntryFormat, frame: u64) -> bool {
    frame.is_multiple_of(TABLE_SIZE) && frame < phys_limit(format)
}
