//! The narrow traits through which the page-table code touches memory.

/// Access to the 64-bit entries of page-table pages, addressed physically.
///
/// On bare metal this reads and writes through the hypervisor's mapping of physical memory;
/// in tests `FakeMemory` (feature `fake`) stands in. The page-table code only passes
/// 4 KiB-aligned `table` addresses that are the root or came from a [`FrameSource`] (or from
/// entries it wrote itself), and `index < 512`.
pub trait TableMemory {
    /// Reads entry `index` of the table at physical address `table`.
    fn read_entry(&self, table: u64, index: usize) -> u64;

    /// Writes entry `index` of the table at physical address `table`.
    fn write_entry(&mut self, table: u64, index: usize, value: u64);
}

/// A source of frames for new page tables.
///
/// **Zeroing contract:** [`allocate_table`](Self::allocate_table) returns the physical
/// address of a 4 KiB-aligned frame that is not in use for anything else, and all 512 entries
/// of which already read as zero through the [`TableMemory`] the tables are built with. The
/// page-table code does not clear the frame itself (on bare metal the source zeroes it, or
/// takes it from memory known to be zero). Frames handed out here become owned by the tables.
/// Tables emptied by `unmap` stay in place and are reused by later mappings; the only time a
/// table is dropped is when a huge page is mapped over a subtree that no longer maps
/// anything, and then its frames go to [`release_table`](Self::release_table).
pub trait FrameSource {
    /// A zeroed 4 KiB frame for a page table, or `None` if memory is exhausted.
    fn allocate_table(&mut self) -> Option<u64>;

    /// Takes back a table frame the tables no longer reference.
    ///
    /// Processors may still hold the frame in their paging-structure caches until the
    /// caller has carried out the TLB flush the operation returned: an implementation must
    /// not reuse the frame before then (queue it). The default does nothing (the frame
    /// is leaked), which is always safe.
    fn release_table(&mut self, table: u64) {
        let _ = table;
    }
}

impl<T: FrameSource + ?Sized> FrameSource for &mut T {
    fn allocate_table(&mut self) -> Option<u64> {
        (**self).allocate_table()
    }

    fn release_table(&mut self, table: u64) {
        (**self).release_table(table);
    }
}
