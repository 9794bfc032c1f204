//! Where everything lives in a test guest's RAM (see the crate documentation for the map).

use core::ops::Range;

/// The page size of the layout (start-info page, GDT page, table frames).
pub const PAGE_SIZE: u64 = 4096;
/// Granularity of `ram_size`: the loader maps RAM with 2 MiB pages.
pub const RAM_ALIGN: u64 = 2 << 20;
/// Smallest RAM a test guest may have.
pub const MIN_RAM_SIZE: u64 = 4 << 20;
/// Largest RAM a test guest may have (bounds the page-table area to 66 pages).
pub const MAX_RAM_SIZE: u64 = 64 << 30;
/// Address the guest image is linked at (its first PT_LOAD segment).
pub const IMAGE_BASE: u64 = 0x20_0000;
/// GPA of the start-info page; RDI holds it at entry.
pub const START_INFO_GPA: u64 = 0x1000;
/// GPA of the GDT the loader writes.
pub const GDT_GPA: u64 = 0x2000;
/// End of the low boot pages `[0, BOOT_PAGES_END)` no segment may overlap.
pub const BOOT_PAGES_END: u64 = 0x3000;
/// Size of the boot stack just below the page tables.
pub const STACK_SIZE: u64 = 64 << 10;

/// A flat 64-bit code segment: present, DPL 0, execute/read, accessed, L = 1, G = 1.
pub const CODE64_DESCRIPTOR: u64 = 0x00AF_9B00_0000_FFFF;
/// A flat data segment: present, DPL 0, read/write, accessed, D/B = 1, G = 1.
pub const DATA_DESCRIPTOR: u64 = 0x00CF_9300_0000_FFFF;
/// The GDT written at [`GDT_GPA`]: null, code, data.
pub const GDT: [u64; 3] = [0, CODE64_DESCRIPTOR, DATA_DESCRIPTOR];
/// Selector of [`CODE64_DESCRIPTOR`] (CS at entry).
pub const CODE_SELECTOR: u16 = 0x08;
/// Selector of [`DATA_DESCRIPTOR`] (DS, ES, SS, FS, GS at entry).
pub const DATA_SELECTOR: u16 = 0x10;

/// Bytes of address space one page directory covers (512 × 2 MiB).
const PD_SPAN: u64 = 1 << 30;

/// A range of guest RAM the loader reserves for itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    /// `[0, BOOT_PAGES_END)`: unused page, start-info page, GDT page.
    BootPages,
    /// The boot stack below the page tables.
    Stack,
    /// The page tables at the top of RAM.
    PageTables,
}

/// Why a RAM size is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// Not a multiple of 2 MiB, below 4 MiB or above 64 GiB.
    #[error("RAM size {0:#x} is not a multiple of 2 MiB in 4 MiB..=64 GiB")]
    BadRamSize(u64),
}

/// The reserved ranges for one RAM size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    ram_size: u64,
    tables_base: u64,
}

impl Layout {
    /// The layout of a guest with `ram_size` bytes of RAM.
    ///
    /// # Errors
    /// [`LayoutError::BadRamSize`] unless `ram_size` is a multiple of [`RAM_ALIGN`] within
    /// [`MIN_RAM_SIZE`]`..=`[`MAX_RAM_SIZE`].
    pub const fn new(ram_size: u64) -> Result<Self, LayoutError> {
        if ram_size < MIN_RAM_SIZE || ram_size > MAX_RAM_SIZE || !ram_size.is_multiple_of(RAM_ALIGN)
        {
            return Err(LayoutError::BadRamSize(ram_size));
        }
        // ram_size <= 64 GiB: the table area is at most 66 pages, far below ram_size.
        let tables_base = ram_size - Self::table_pages_for(ram_size) * PAGE_SIZE;
        Ok(Self {
            ram_size,
            tables_base,
        })
    }

    /// Page-table pages needed to identity-map `ram_size` with 2 MiB pages: a PML4, one
    /// PDPT (RAM stays below 512 GiB) and one page directory per started GiB.
    const fn table_pages_for(ram_size: u64) -> u64 {
        2 + ram_size.div_ceil(PD_SPAN)
    }

    /// Bytes of guest RAM.
    #[must_use]
    pub const fn ram_size(&self) -> u64 {
        self.ram_size
    }

    /// The page-table area `[stack_top, ram_size)`; the PML4 is its first page.
    #[must_use]
    pub const fn page_tables(&self) -> Range<u64> {
        self.tables_base..self.ram_size
    }

    /// The boot stack `[free_end, stack_top)`.
    #[must_use]
    pub const fn stack(&self) -> Range<u64> {
        (self.tables_base - STACK_SIZE)..self.tables_base
    }

    /// The initial stack pointer (16-byte aligned).
    #[must_use]
    pub const fn stack_top(&self) -> u64 {
        self.tables_base
    }

    /// Number of page-table pages.
    #[must_use]
    pub const fn table_pages(&self) -> u64 {
        Self::table_pages_for(self.ram_size)
    }

    /// The reserved region a range `[start, end)` overlaps, if any (first in address
    /// order).
    #[must_use]
    pub fn overlapped_region(&self, start: u64, end: u64) -> Option<Region> {
        let regions = [
            (Region::BootPages, 0..BOOT_PAGES_END),
            (Region::Stack, self.stack()),
            (Region::PageTables, self.page_tables()),
        ];
        regions
            .into_iter()
            .find(|(_, range)| start < range.end && range.start < end)
            .map(|(region, _)| region)
    }
}

const _: () = assert!(BOOT_PAGES_END <= IMAGE_BASE);
const _: () = assert!(START_INFO_GPA + PAGE_SIZE <= GDT_GPA);
const _: () = assert!(GDT_GPA + PAGE_SIZE <= BOOT_PAGES_END);
// The smallest RAM still leaves 2 MiB - 64 KiB - 3 pages above IMAGE_BASE for the image.
const _: () = assert!(
    IMAGE_BASE + STACK_SIZE + 3 * PAGE_SIZE < MIN_RAM_SIZE,
    "the layout must leave room for an image"
);
const _: () = assert!(STACK_SIZE.is_multiple_of(16));
