//! Page sizes, table levels, mapping flags and the entry encodings.

use core::fmt;

use bitflags::bitflags;

/// Entries in one page table.
pub const ENTRIES_PER_TABLE: usize = 512;

/// Size of one page table (and of a small page) in bytes.
pub const TABLE_SIZE: u64 = 4096;

/// Highest physical address width any x86-64 entry format can express.
pub const MAX_PHYS_ADDR_BITS: u8 = 52;

/// Width of the input address a 4-level walk translates.
pub const INPUT_ADDR_BITS: u32 = 48;

/// The size of a page a leaf entry maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PageSize {
    /// 4 KiB, mapped by a PT entry.
    Size4K,
    /// 2 MiB, mapped by a PD entry with the page-size bit.
    Size2M,
    /// 1 GiB, mapped by a PDPT entry with the page-size bit.
    Size1G,
}

impl PageSize {
    /// All sizes, largest first.
    pub const LARGEST_FIRST: [PageSize; 3] = [PageSize::Size1G, PageSize::Size2M, PageSize::Size4K];

    /// The page size in bytes.
    #[must_use]
    pub const fn bytes(self) -> u64 {
        match self {
            PageSize::Size4K => 1 << 12,
            PageSize::Size2M => 1 << 21,
            PageSize::Size1G => 1 << 30,
        }
    }

    /// The table level whose entries map pages of this size.
    #[must_use]
    pub const fn leaf_level(self) -> Level {
        match self {
            PageSize::Size4K => Level::Pt,
            PageSize::Size2M => Level::Pd,
            PageSize::Size1G => Level::Pdpt,
        }
    }

    /// Whether `addr` is a multiple of the page size.
    #[must_use]
    pub const fn is_aligned(self, addr: u64) -> bool {
        addr & (self.bytes() - 1) == 0
    }
}

impl fmt::Display for PageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PageSize::Size4K => "4 KiB",
            PageSize::Size2M => "2 MiB",
            PageSize::Size1G => "1 GiB",
        })
    }
}

/// A level of the 4-level walk, numbered as the hardware manuals do (PT = 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// Page table: entries map 4 KiB pages.
    Pt = 1,
    /// Page directory: entries map 2 MiB pages or point at page tables.
    Pd = 2,
    /// Page-directory-pointer table: entries map 1 GiB pages or point at page directories.
    Pdpt = 3,
    /// Top level: entries point at PDPTs.
    Pml4 = 4,
}

impl Level {
    /// Index into this level's table selected by input address `addr`.
    #[must_use]
    pub const fn index(self, addr: u64) -> usize {
        ((addr >> self.shift()) & (ENTRIES_PER_TABLE as u64 - 1)) as usize
    }

    /// Bytes of input address space one entry of this level covers.
    #[must_use]
    pub const fn entry_span(self) -> u64 {
        1 << self.shift()
    }

    /// The page size a leaf at this level maps (`None` for PML4, which has no leaves).
    #[must_use]
    pub const fn leaf_size(self) -> Option<PageSize> {
        match self {
            Level::Pt => Some(PageSize::Size4K),
            Level::Pd => Some(PageSize::Size2M),
            Level::Pdpt => Some(PageSize::Size1G),
            Level::Pml4 => None,
        }
    }

    /// The level below (`None` for PT).
    #[must_use]
    pub const fn lower(self) -> Option<Level> {
        match self {
            Level::Pt => None,
            Level::Pd => Some(Level::Pt),
            Level::Pdpt => Some(Level::Pd),
            Level::Pml4 => Some(Level::Pdpt),
        }
    }

    const fn shift(self) -> u32 {
        12 + 9 * (self as u32 - 1)
    }
}

bitflags! {
    /// Architecture-neutral permissions and attributes of a mapping. An entry format turns
    /// them into its bits (long mode derives NX from the absence of `EXECUTABLE`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub struct MapFlags: u32 {
        /// Writes allowed.
        const WRITABLE = 1 << 0;
        /// Instruction fetches allowed.
        const EXECUTABLE = 1 << 1;
        /// Accessible from CPL 3 (for nested tables: see [`LongMode::nested`]).
        const USER = 1 << 2;
        /// Survives CR3 reloads (kernel mappings shared by all address spaces).
        const GLOBAL = 1 << 3;
        /// Uncached (PCD), for device memory.
        const NO_CACHE = 1 << 4;
        /// Write-through caching (PWT).
        const WRITE_THROUGH = 1 << 5;
    }
}

/// An encoding of page-table entries. The walk in [`PageTables`](crate::PageTables) is the
/// same for long-mode, AMD nested (NPT) and Intel EPT tables; only the entry bits differ.
///
/// Implementations must be pure functions of their arguments and of `self`.
pub trait EntryFormat {
    /// Physical address width (MAXPHYADDR); every physical address the tables hold lies
    /// below `2^phys_addr_bits()`.
    fn phys_addr_bits(&self) -> u8;

    /// `true` if input addresses are virtual addresses that must be canonical (bits 63..47
    /// equal); `false` if they are guest-physical addresses below 2^48 (nested tables, EPT).
    fn canonical_input(&self) -> bool;

    /// Whether leaves of `size` may be created (1 GiB pages need CPU support).
    fn supports(&self, size: PageSize) -> bool;

    /// Whether the entry maps a page or points at a table.
    fn is_present(&self, entry: u64) -> bool;

    /// Whether a present entry at `level` maps a page (rather than pointing at a table).
    fn is_leaf(&self, entry: u64, level: Level) -> bool;

    /// The entry pointing at the next-level table at physical address `table`. Its
    /// permissions must be the most permissive ones: the leaf decides.
    fn table_entry(&self, table: u64) -> u64;

    /// The physical address of the table a non-leaf entry points at.
    fn table_address(&self, entry: u64) -> u64;

    /// The leaf entry mapping a page of `size` at physical address `phys` with `flags`.
    fn leaf_entry(&self, phys: u64, size: PageSize, flags: MapFlags) -> u64;

    /// The physical address of the page a leaf entry of `size` maps.
    fn leaf_address(&self, entry: u64, size: PageSize) -> u64;

    /// The flags a leaf entry of `size` grants (as the hardware will apply them).
    fn leaf_flags(&self, entry: u64, size: PageSize) -> MapFlags;
}

bitflags! {
    /// Bits of a long-mode (and AMD nested) page-table entry (AMD APM vol. 2, 5.3;
    /// Intel SDM vol. 3, 4.5). The address field is bits 12..MAXPHYADDR (21.. for 2 MiB and
    /// 30.. for 1 GiB leaves, where bit 12 is PAT).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct LongModeBits: u64 {
        /// P: the entry is valid.
        const PRESENT = 1 << 0;
        /// R/W: writes allowed.
        const WRITABLE = 1 << 1;
        /// U/S: user accessible.
        const USER = 1 << 2;
        /// PWT: write-through.
        const WRITE_THROUGH = 1 << 3;
        /// PCD: cache disabled.
        const CACHE_DISABLE = 1 << 4;
        /// A: set by the CPU on access.
        const ACCESSED = 1 << 5;
        /// D: set by the CPU on write (leaves only).
        const DIRTY = 1 << 6;
        /// PS: a PD or PDPT entry maps a 2 MiB or 1 GiB page (PAT in PT entries).
        const HUGE = 1 << 7;
        /// G: global translation (leaves only).
        const GLOBAL = 1 << 8;
        /// NX: no instruction fetch (requires EFER.NXE).
        const NO_EXECUTE = 1 << 63;
    }
}

/// Which tables a [`LongMode`] format builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    /// The hypervisor's own tables (CR3): canonical virtual input, supervisor
    /// intermediates, USER only on request.
    Host,
    /// AMD nested page tables (nCR3): guest-physical input, U/S set everywhere.
    Nested,
}

/// The long-mode entry format, used for the hypervisor's own tables and AMD NPT.
///
/// Leaves get `PRESENT | ACCESSED` (plus `DIRTY` when writable) preset so the CPU never
/// has to write table memory, and `NO_EXECUTE` unless [`MapFlags::EXECUTABLE`]; NX needs
/// EFER.NXE set on the CPU walking the tables. Intermediate entries are
/// `PRESENT | WRITABLE | ACCESSED` (plus `USER` for nested tables) and never NX, so the leaf
/// alone decides permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongMode {
    phys_addr_bits: u8,
    table: Table,
    pages_1g: bool,
}

impl LongMode {
    /// Format for the hypervisor's own page tables: canonical 48-bit virtual addresses,
    /// intermediates without U/S, leaves with U/S only for [`MapFlags::USER`].
    /// `phys_addr_bits` is MAXPHYADDR (CPUID 0x8000_0008 EAX bits 7:0); `None` unless 32..=52.
    /// 1 GiB pages are off until [`with_1g_pages`](Self::with_1g_pages).
    #[must_use]
    pub const fn host(phys_addr_bits: u8) -> Option<Self> {
        Self::build(phys_addr_bits, Table::Host)
    }

    /// Format for AMD nested page tables: input addresses are guest-physical (below 2^48),
    /// and U/S is set in every entry, intermediate and leaf, because nested walks are user
    /// accesses (a nested leaf without U/S faults on the guest's first access). Leaves
    /// therefore always report [`MapFlags::USER`]. `None` unless `phys_addr_bits` is 32..=52.
    #[must_use]
    pub const fn nested(phys_addr_bits: u8) -> Option<Self> {
        Self::build(phys_addr_bits, Table::Nested)
    }

    /// Allows 1 GiB leaves (only if the CPU reports them: CPUID 0x8000_0001 EDX bit 26).
    #[must_use]
    pub const fn with_1g_pages(mut self, enabled: bool) -> Self {
        self.pages_1g = enabled;
        self
    }

    const fn build(phys_addr_bits: u8, table: Table) -> Option<Self> {
        if phys_addr_bits < 32 || phys_addr_bits > MAX_PHYS_ADDR_BITS {
            return None;
        }
        Some(Self {
            phys_addr_bits,
            table,
            pages_1g: false,
        })
    }

    /// Mask of the address bits from bit `low` up to MAXPHYADDR.
    const fn address_mask(&self, low: u32) -> u64 {
        let below_max = (1u64 << self.phys_addr_bits) - 1;
        below_max & !((1u64 << low) - 1)
    }

    const fn leaf_mask(&self, size: PageSize) -> u64 {
        self.address_mask(size.bytes().trailing_zeros())
    }
}

impl EntryFormat for LongMode {
    fn phys_addr_bits(&self) -> u8 {
        self.phys_addr_bits
    }

    fn canonical_input(&self) -> bool {
        self.table == Table::Host
    }

    fn supports(&self, size: PageSize) -> bool {
        size != PageSize::Size1G || self.pages_1g
    }

    fn is_present(&self, entry: u64) -> bool {
        LongModeBits::from_bits_retain(entry).contains(LongModeBits::PRESENT)
    }

    fn is_leaf(&self, entry: u64, level: Level) -> bool {
        match level {
            Level::Pt => true,
            Level::Pd | Level::Pdpt => {
                LongModeBits::from_bits_retain(entry).contains(LongModeBits::HUGE)
            }
            Level::Pml4 => false,
        }
    }

    fn table_entry(&self, table: u64) -> u64 {
        let mut bits = LongModeBits::PRESENT | LongModeBits::WRITABLE | LongModeBits::ACCESSED;
        if self.table == Table::Nested {
            bits |= LongModeBits::USER;
        }
        (table & self.address_mask(12)) | bits.bits()
    }

    fn table_address(&self, entry: u64) -> u64 {
        entry & self.address_mask(12)
    }

    fn leaf_entry(&self, phys: u64, size: PageSize, flags: MapFlags) -> u64 {
        let mut bits = LongModeBits::PRESENT | LongModeBits::ACCESSED;
        bits.set(LongModeBits::HUGE, size != PageSize::Size4K);
        if flags.contains(MapFlags::WRITABLE) {
            bits |= LongModeBits::WRITABLE | LongModeBits::DIRTY;
        }
        bits.set(
            LongModeBits::USER,
            flags.contains(MapFlags::USER) || self.table == Table::Nested,
        );
        bits.set(
            LongModeBits::NO_EXECUTE,
            !flags.contains(MapFlags::EXECUTABLE),
        );
        bits.set(LongModeBits::GLOBAL, flags.contains(MapFlags::GLOBAL));
        bits.set(
            LongModeBits::CACHE_DISABLE,
            flags.contains(MapFlags::NO_CACHE),
        );
        bits.set(
            LongModeBits::WRITE_THROUGH,
            flags.contains(MapFlags::WRITE_THROUGH),
        );
        (phys & self.leaf_mask(size)) | bits.bits()
    }

    fn leaf_address(&self, entry: u64, size: PageSize) -> u64 {
        entry & self.leaf_mask(size)
    }

    fn leaf_flags(&self, entry: u64, _size: PageSize) -> MapFlags {
        let bits = LongModeBits::from_bits_retain(entry);
        let mut flags = MapFlags::empty();
        flags.set(MapFlags::WRITABLE, bits.contains(LongModeBits::WRITABLE));
        flags.set(
            MapFlags::EXECUTABLE,
            !bits.contains(LongModeBits::NO_EXECUTE),
        );
        flags.set(MapFlags::USER, bits.contains(LongModeBits::USER));
        flags.set(MapFlags::GLOBAL, bits.contains(LongModeBits::GLOBAL));
        flags.set(
            MapFlags::NO_CACHE,
            bits.contains(LongModeBits::CACHE_DISABLE),
        );
        flags.set(
            MapFlags::WRITE_THROUGH,
            bits.contains(LongModeBits::WRITE_THROUGH),
        );
        flags
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_indices_and_spans() {
        let addr = 0x0000_7f12_3456_7000_u64;
        assert_eq!(Level::Pml4.index(addr), (addr >> 39) as usize & 511);
        assert_eq!(Level::Pdpt.index(addr), (addr >> 30) as usize & 511);
        assert_eq!(Level::Pd.index(addr), (addr >> 21) as usize & 511);
        assert_eq!(Level::Pt.index(addr), (addr >> 12) as usize & 511);
        assert_eq!(Level::Pdpt.entry_span(), PageSize::Size1G.bytes());
        assert_eq!(Level::Pml4.entry_span(), 512 << 30);
    }

    #[test]
    fn host_leaf_encoding() {
        let f = LongMode::host(46).unwrap();
        let rw = f.leaf_entry(0x1234_5000, PageSize::Size4K, MapFlags::WRITABLE);
        // P | RW | A | D | NX, no U/S, no PS.
        assert_eq!(rw, 0x8000_0000_1234_5063);
        let rx = f.leaf_entry(
            0x4000_0000,
            PageSize::Size1G,
            MapFlags::EXECUTABLE | MapFlags::GLOBAL,
        );
        // P | A | PS | G.
        assert_eq!(rx, 0x4000_01a1);
        let dev = f.leaf_entry(
            0xfee0_0000,
            PageSize::Size2M,
            MapFlags::WRITABLE | MapFlags::NO_CACHE | MapFlags::WRITE_THROUGH | MapFlags::USER,
        );
        assert_eq!(dev, 0x8000_0000_fee0_00ff);
        assert_eq!(f.table_entry(0x7000), 0x7023);
    }

    #[test]
    fn nested_sets_user_everywhere() {
        let f = LongMode::nested(48).unwrap();
        assert_eq!(f.table_entry(0x7000), 0x7027);
        // 0x7 for a read-write leaf, as the platform notes require (plus A, D and NX).
        let leaf = f.leaf_entry(0x5000, PageSize::Size4K, MapFlags::WRITABLE);
        assert_eq!(leaf & 0x7, 0x7);
        assert!(
            f.leaf_flags(leaf, PageSize::Size4K)
                .contains(MapFlags::USER)
        );
        assert!(!f.canonical_input());
        assert!(LongMode::host(48).unwrap().canonical_input());
    }

    #[test]
    fn flags_round_trip_through_the_encoding() {
        let f = LongMode::host(52).unwrap();
        for raw in 0..64u32 {
            let flags = MapFlags::from_bits_truncate(raw);
            for size in PageSize::LARGEST_FIRST {
                let e = f.leaf_entry(0x4000_0000, size, flags);
                assert_eq!(f.leaf_flags(e, size), flags);
                assert_eq!(f.leaf_address(e, size), 0x4000_0000);
                assert!(f.is_present(e));
                assert!(f.is_leaf(e, size.leaf_level()));
            }
        }
    }

    #[test]
    fn address_mask_respects_maxphyaddr_and_pat() {
        let f = LongMode::host(40).unwrap();
        // Bits above MAXPHYADDR (52..62 are software/PKEY bits) never leak into addresses.
        let entry = 0x7ff0_0000_0000_1001_u64 | (1 << 45) | 0x12_3456_7000;
        assert_eq!(f.table_address(entry), 0x12_3456_7000);
        // Bit 12 of a 2 MiB leaf is PAT, not address.
        assert_eq!(
            f.leaf_address(0x20_1000 | 0x81, PageSize::Size2M),
            0x20_0000
        );
    }

    #[test]
    fn phys_bits_are_validated() {
        assert!(LongMode::host(31).is_none());
        assert!(LongMode::host(53).is_none());
        assert!(LongMode::nested(52).is_some());
        let f = LongMode::host(48).unwrap();
        assert!(!f.supports(PageSize::Size1G));
        assert!(f.with_1g_pages(true).supports(PageSize::Size1G));
    }
}
