//! The physical memory map as the boot loader reported it.

use crate::BootInfoError;
use crate::fixed::FixedVec;

/// Largest number of memory regions kept (more is an error, never silently dropped).
pub const MAX_MEMORY_REGIONS: usize = 128;

/// What a physical memory region may be used for.
///
/// Multiboot1 and Multiboot2 share the numbering: 1 available, 3 ACPI reclaimable, 4 ACPI NVS,
/// 5 bad memory; every other value is reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum MemoryKind {
    /// RAM free for the hypervisor to use.
    Usable,
    /// Not to be touched (firmware, MMIO holes, unknown types).
    #[default]
    Reserved,
    /// Holds ACPI tables; becomes usable once they are no longer needed.
    AcpiReclaimable,
    /// ACPI non-volatile storage: must be preserved across sleep states.
    AcpiNvs,
    /// RAM reported defective.
    BadMemory,
}

impl MemoryKind {
    /// Decodes a Multiboot memory type; unknown values are [`MemoryKind::Reserved`].
    pub fn from_multiboot(raw: u32) -> Self {
        match raw {
            1 => Self::Usable,
            3 => Self::AcpiReclaimable,
            4 => Self::AcpiNvs,
            5 => Self::BadMemory,
            _ => Self::Reserved,
        }
    }
}

/// One contiguous range of physical memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryRegion {
    /// First physical address.
    pub start: u64,
    /// Length in bytes (never zero in a parsed map; `start + len` never overflows).
    pub len: u64,
    /// What the range may be used for.
    pub kind: MemoryKind,
}

impl MemoryRegion {
    /// One past the last address (saturating; parsed regions never saturate).
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.len)
    }
}

/// The memory map, sorted by start address (ties by kind), without zero-length regions.
///
/// Regions are kept as the loader reported them: overlapping entries are not merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryMap {
    regions: FixedVec<MemoryRegion, MAX_MEMORY_REGIONS>,
}

impl MemoryMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a region reported by the loader; zero-length regions are ignored.
    ///
    /// The map is unsorted until [`MemoryMap::sort`] is called.
    pub(crate) fn add(
        &mut self,
        start: u64,
        len: u64,
        kind: MemoryKind,
    ) -> Result<(), BootInfoError> {
        if len == 0 {
            return Ok(());
        }
        if start.checked_add(len).is_none() {
            return Err(BootInfoError::RegionOverflow { start, len });
        }
        self.regions
            .push(MemoryRegion { start, len, kind })
            .map_err(|_| BootInfoError::TooManyRegions {
                cap: MAX_MEMORY_REGIONS,
            })
    }

    pub(crate) fn sort(&mut self) {
        self.regions
            .as_mut_slice()
            .sort_unstable_by_key(|r| (r.start, r.kind, r.len));
    }

    /// All regions, sorted by start address.
    pub fn regions(&self) -> &[MemoryRegion] {
        self.regions.as_slice()
    }

    /// The regions of kind [`MemoryKind::Usable`], in address order.
    pub fn usable(&self) -> impl Iterator<Item = &MemoryRegion> + '_ {
        self.regions.iter().filter(|r| r.kind == MemoryKind::Usable)
    }

    /// Sum of the lengths of the usable regions (saturating).
    pub fn total_usable(&self) -> u64 {
        self.usable().fold(0u64, |acc, r| acc.saturating_add(r.len))
    }

    /// Number of regions.
    pub fn len(&self) -> usize {
        self.regions.len()
    }

    /// Whether the map has no regions.
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }
}
