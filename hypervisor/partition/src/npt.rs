//! [`SecondLevel`] implemented with the `paging` crate, for any [`EntryFormat`]:
//! `LongMode::nested` gives AMD NPT, an EPT format gives Intel EPT. Pages are mapped with
//! 4 KiB leaves only (the partition map is per page), W+X allowed (guests need it; the
//! second-level tables only decide what the guest may do with its own RAM).

use paging::{
    ENTRIES_PER_TABLE, EntryFormat, Flush, FrameSource, Level, MapError, MapFlags, PageSize,
    PageTables, TableMemory, WxPolicy,
};

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
        let tables = PageTables::new(&mut self.memory, root, self.format.clone()).ok()?;
        tables.translate(gpa).map(|t| (t.phys, t.flags))
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
        tables
            .map(gpa, hpa, PageSize::Size4K, flags, frames)
            .map_err(|e| map_error(gpa, e))
    }

    fn unmap(&mut self, root: u64, gpa: u64) -> Result<Flush, SecondLevelError> {
        let mut tables = self.tables(root)?;
        tables
            .unmap(gpa)
            .map(|unmapped| unmapped.flush())
            .map_err(|e| map_error(gpa, e))
    }

    fn destroy(&mut self, root: u64) {
        self.release(root, Level::Pml4);
    }
}
