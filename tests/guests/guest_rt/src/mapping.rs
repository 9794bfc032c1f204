//! Adding identity mappings to the guest's own page tables, for addresses beyond its RAM
//! (the loader maps RAM only). Used by guests that deliberately touch what they do not own.
//!
//! The tables are edited with the `paging` crate over the identity-mapped RAM that holds
//! them; new table frames come from a range of free RAM the caller hands over.

pub use paging::MapError;
use paging::{FrameSource, HugePages, LongMode, MapFlags, PageTables, TableMemory, WxPolicy};

const PAGE: u64 = 4096;

/// Table frames taken from a range of free RAM, zeroed as they are handed out.
#[derive(Debug)]
pub struct FreeFrames {
    next: u64,
    end: u64,
}

impl FreeFrames {
    /// Frames from `[start, end)` (rounded inward to 4 KiB).
    ///
    /// # Safety
    /// The range must be RAM mapped writable by the current page tables, used by nothing
    /// else (no Rust object, not the stack, not the tables) for as long as the tables that
    /// receive the frames are in use.
    #[must_use]
    pub unsafe fn new(start: u64, end: u64) -> Self {
        Self {
            next: start.next_multiple_of(PAGE),
            end: end & !(PAGE - 1),
        }
    }
}

impl FrameSource for FreeFrames {
    fn allocate_table(&mut self) -> Option<u64> {
        let frame = self.next;
        let after = frame.checked_add(PAGE)?;
        if after > self.end {
            return None;
        }
        self.next = after;
        for i in 0..512 {
            let entry = core::ptr::with_exposed_provenance_mut::<u64>((frame + i * 8) as usize);
            // SAFETY: the frame lies in the free range `new`'s caller handed over, mapped
            // writable and used by nothing else.
            unsafe { entry.write_volatile(0) };
        }
        Some(frame)
    }
}

/// Page-table entries read and written in place (tables are identity-mapped RAM).
struct IdentityTables;

fn entry_ptr(table: u64, index: usize) -> *mut u64 {
    core::ptr::with_exposed_provenance_mut::<u64>(table as usize + index * 8)
}

impl TableMemory for IdentityTables {
    fn read_entry(&self, table: u64, index: usize) -> u64 {
        // SAFETY: `map_identity`'s caller guarantees every table reachable from the root
        // (or taken from its `FreeFrames`) is mapped RAM; index < 512 by the trait contract.
        unsafe { entry_ptr(table, index).read_volatile() }
    }

    fn write_entry(&mut self, table: u64, index: usize, value: u64) {
        // SAFETY: as in `read_entry`; the tables are not Rust objects.
        unsafe { entry_ptr(table, index).write_volatile(value) }
    }
}

/// Maps the 4 KiB page containing `gpa` to itself (writable, executable: no NX bit, since
/// the loader leaves EFER.NXE clear) in the tables rooted at `root`, and flushes its TLB
/// entry. Returns the page's address.
///
/// # Errors
/// [`MapError::AlreadyMapped`] if `gpa` is already mapped (it is inside RAM), the address
/// is non-canonical or beyond `phys_addr_bits`, or `frames` ran out.
///
/// # Safety
/// `root` must be the PML4 of the active tables, all of whose tables lie in mapped RAM
/// (the loader's tables do). Mapping a page beyond RAM aliases no Rust object.
pub unsafe fn map_identity(
    root: u64,
    gpa: u64,
    phys_addr_bits: u8,
    frames: &mut FreeFrames,
) -> Result<u64, MapError> {
    let page = gpa & !(PAGE - 1);
    let format = LongMode::host(phys_addr_bits.clamp(32, 52)).ok_or(MapError::InvalidRoot(root))?;
    let mut memory = IdentityTables;
    let mut tables = PageTables::new(&mut memory, root, format)?.with_wx_policy(WxPolicy::Allow);
    // Only a non-present entry is filled; flush anyway, it costs nothing here.
    let _flush = tables.map_range(
        page,
        page,
        PAGE,
        MapFlags::WRITABLE | MapFlags::EXECUTABLE,
        HugePages::Forbidden,
        frames,
    )?;
    crate::cpu::invlpg(page);
    Ok(page)
}
