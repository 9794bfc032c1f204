//! [`SecondLevel`] implemented with the `paging` crate, for any [`EntryFormat`]:
//! `LongMode::nested` gives AMD NPT, an EPT format gives Intel EPT. W+X is allowed (guests
//! need it; the second-level tables only decide what the guest may do with its own RAM).
//!
//! The partition map is per 4 KiB page; the tables use 2 MiB leaves wherever they can: when a
//! map completes a 2 MiB-aligned guest range whose 512 pages are backed by one 2 MiB-aligned,
//! physically contiguous host range with the same permissions (what the pool hands out to a
//! partition mapped in order), the 512 small leaves are replaced by one large leaf
//! (promotion). Unmapping a page inside a large leaf splits it back into 511 small ones
//! (demotion). Both report [`Flush::Needed`].

use paging::{
    ENTRIES_PER_TABLE, EntryFormat, Flush, FrameSource, Level, MapError, MapFlags, PageSize,
    PageTables, TableMemory, WxPolicy,
};

/// Bytes of a large (2 MiB) leaf.
const LARGE: u64 = PageSize::Size2M.bytes();
/// Bytes of a small leaf.
const SMALL: u64 = PageSize::Size4K.bytes();

use crate::memory::{GpaPerms, SecondLevel, SecondLevelError};

/// Second-level tables for every partition, built in `memory` with table frames from
/// `frames`, entries encoded by `format`.
#[derive(Debug)]
pub struct NestedTables<M: TableMemory, F: FrameSource, E: EntryFormat + Clone> {
    memory: M,
    frames: F,
    format: E,
}

impl<M: TableMemory, F: FrameSource, E: EntryFormat + Clone> NestedTables<M, F, E> {
    /// Tables in `memory`, new table frames from `frames`.
    pub fn new(memory: M, frames: F, format: E) -> Self {
        Self {
            memory,
            frames,
            format,
        }
    }

    /// The table memory (for inspection in tests).
    pub fn memory(&self) -> &M {
        &self.memory
    }

    /// The frame source (for inspection in tests).
    pub fn frames(&self) -> &F {
        &self.frames
    }

    /// The host-physical address `gpa` translates to in the tree at `root`.
    pub fn translate(&mut self, root: u64, gpa: u64) -> Option<(u64, MapFlags)> {
        self.translate_full(root, gpa).map(|t| (t.phys, t.flags))
    }

    fn translate_full(&mut self, root: u64, gpa: u64) -> Option<paging::Translation> {
        let tables = PageTables::new(&mut self.memory, root, self.format.clone()).ok()?;
        tables.translate(gpa)
    }

    /// Leaves of the tree at `root` by size: (4 KiB, 2 MiB, 1 GiB).
    pub fn leaf_counts(&mut self, root: u64) -> (u64, u64, u64) {
        let mut counts = (0, 0, 0);
        if let Ok(tables) = PageTables::new(&mut self.memory, root, self.format.clone()) {
            tables.for_each_mapping(|_, _, size, _| match size {
                PageSize::Size4K => counts.0 += 1,
                PageSize::Size2M => counts.1 += 1,
                PageSize::Size1G => counts.2 += 1,
            });
        }
        counts
    }

    /// Replaces the 512 small leaves of the 2 MiB range holding `gpa` by one large leaf if
    /// they map one aligned, contiguous host range with equal flags.
    fn try_promote(&mut self, root: u64, gpa: u64) -> Result<Flush, SecondLevelError> {
        if !self.format.supports(PageSize::Size2M) {
            return Ok(Flush::NotNeeded);
        }
        let base = gpa & !(LARGE - 1);
        // Cheap pre-check (both ends) before walking all 512 pages.
        let (Some(first), Some(last)) = (
            self.translate_full(root, base),
            self.translate_full(root, base + LARGE - SMALL),
        ) else {
            return Ok(Flush::NotNeeded);
        };
        if first.size != PageSize::Size4K
            || first.phys % LARGE != 0
            || last.phys != first.phys + LARGE - SMALL
            || last.flags != first.flags
        {
            return Ok(Flush::NotNeeded);
        }
        for index in 1..(LARGE / SMALL) - 1 {
            let offset = index * SMALL;
            match self.translate_full(root, base + offset) {
                Some(t)
                    if t.size == PageSize::Size4K
                        && t.phys == first.phys + offset
                        && t.flags == first.flags => {}
                _ => return Ok(Flush::NotNeeded),
            }
        }
        let Self {
            memory,
            frames,
            format,
        } = self;
        let mut tables = PageTables::new(memory, root, format.clone())
            .map_err(|e| map_error(gpa, e))?
            .with_wx_policy(WxPolicy::Allow);
        // Every step changes present entries; the caller flushes once (Flush::Needed).
        for index in 0..LARGE / SMALL {
            let _removed = tables
                .unmap(base + index * SMALL)
                .map_err(|e| map_error(base, e))?;
        }
        let _ = tables
            .map(base, first.phys, PageSize::Size2M, first.flags, frames)
            .map_err(|e| map_error(base, e))?;
        Ok(Flush::Needed)
    }

    fn tables(&mut self, root: u64) -> Result<PageTables<'_, M, E>, SecondLevelError> {
        PageTables::new(&mut self.memory, root, self.format.clone())
            .map(|t| t.with_wx_policy(WxPolicy::Allow))
            .map_err(|_| SecondLevelError::Rejected(0))
    }

    /// Releases the table at `table` (of `level`) and every table below it, clearing
    /// their entries so the frames read as zero when the frame source reuses them.
    fn release(&mut self, table: u64, level: Level) {
        for index in 0..ENTRIES_PER_TABLE {
            let entry = self.memory.read_entry(table, index);
            if entry == 0 {
                continue;
            }
            if let Some(lower) = level.lower()
                && self.format.is_present(entry)
                && !self.format.is_leaf(entry, level)
            {
                let child = self.format.table_address(entry);
                self.release(child, lower);
            }
            self.memory.write_entry(table, index, 0);
        }
        self.frames.release_table(table);
    }
}

fn map_flags(perms: GpaPerms) -> MapFlags {
    let mut flags = MapFlags::USER;
    if perms.contains(GpaPerms::WRITE) {
        flags |= MapFlags::WRITABLE;
    }
    if perms.contains(GpaPerms::EXECUTE) {
        flags |= MapFlags::EXECUTABLE;
    }
    flags
}

fn map_error(gpa: u64, error: MapError) -> SecondLevelError {
    match error {
        MapError::OutOfFrames => SecondLevelError::OutOfFrames,
        MapError::AlreadyMapped(_) => SecondLevelError::AlreadyMapped(gpa),
        MapError::NotMapped(_) => SecondLevelError::NotMapped(gpa),
        _ => SecondLevelError::Rejected(gpa),
    }
}

impl<M: TableMemory, F: FrameSource, E: EntryFormat + Clone> SecondLevel for NestedTables<M, F, E> {
    fn create(&mut self) -> Result<u64, SecondLevelError> {
        PageTables::create(&mut self.memory, self.format.clone(), &mut self.frames)
            .map(|t| t.root())
            .map_err(|e| map_error(0, e))
    }

    fn map(
        &mut self,
        root: u64,
        gpa: u64,
        hpa: u64,
        perms: GpaPerms,
    ) -> Result<Flush, SecondLevelError> {
        let flags = map_flags(perms);
        let Self {
            memory,
            frames,
            format,
        } = self;
        let mut tables = PageTables::new(memory, root, format.clone())
            .map_err(|e| map_error(gpa, e))?
            .with_wx_policy(WxPolicy::Allow);
        let flush = tables
            .map(gpa, hpa, PageSize::Size4K, flags, frames)
            .map_err(|e| map_error(gpa, e))?;
        Ok(flush.or(self.try_promote(root, gpa)?))
    }

    fn unmap(&mut self, root: u64, gpa: u64) -> Result<Flush, SecondLevelError> {
        let page = gpa & !(SMALL - 1);
        let Some(found) = self.translate_full(root, page) else {
            return Err(SecondLevelError::NotMapped(gpa));
        };
        if found.size == PageSize::Size4K {
            let mut tables = self.tables(root)?;
            return tables
                .unmap(page)
                .map(|unmapped| unmapped.flush())
                .map_err(|e| map_error(gpa, e));
        }
        // Demote: drop the large leaf, put back every small page but this one.
        let span = found.size.bytes();
        let base = page & !(span - 1);
        let host_base = found.phys - (page - base);
        let Self {
            memory,
            frames,
            format,
        } = self;
        let mut tables = PageTables::new(memory, root, format.clone())
            .map_err(|e| map_error(gpa, e))?
            .with_wx_policy(WxPolicy::Allow);
        // The caller flushes once for all of it (Flush::Needed below).
        let _removed = tables.unmap(base).map_err(|e| map_error(gpa, e))?;
        for offset in (0..span).step_by(SMALL as usize) {
            if base + offset == page {
                continue;
            }
            let _ = tables
                .map(
                    base + offset,
                    host_base + offset,
                    PageSize::Size4K,
                    found.flags,
                    frames,
                )
                .map_err(|e| map_error(base + offset, e))?;
        }
        Ok(Flush::Needed)
    }

    fn destroy(&mut self, root: u64) {
        self.release(root, Level::Pml4);
    }
}
