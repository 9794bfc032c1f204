//! In-memory fakes of [`TableMemory`] and [`FrameSource`] for host tests (this crate's and
//! other crates', through the `fake` feature).

use std::boxed::Box;
use std::collections::HashMap;
use std::vec::Vec;

use crate::format::{ENTRIES_PER_TABLE, TABLE_SIZE};
use crate::memory::{FrameSource, TableMemory};

/// Page-table memory held in a hash map from table address to its 512 entries.
///
/// Tables never written read as all zero, which together with [`FakeFrames`] (which never
/// hands out a frame twice) meets the [`FrameSource`] zeroing contract. As a test double it
/// panics on a misaligned table address or an index of 512 or more: those are bugs in the
/// code under test.
#[derive(Debug, Default, Clone)]
pub struct FakeMemory {
    tables: HashMap<u64, Box<[u64; ENTRIES_PER_TABLE]>>,
}

impl FakeMemory {
    /// Empty memory: every entry reads as zero.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The entries of the table at `table`, if anything was ever written there.
    #[must_use]
    pub fn table(&self, table: u64) -> Option<&[u64; ENTRIES_PER_TABLE]> {
        self.tables.get(&table).map(|t| &**t)
    }

    /// Number of distinct tables written so far.
    #[must_use]
    pub fn tables_written(&self) -> usize {
        self.tables.len()
    }

    fn check(table: u64, index: usize) {
        assert!(
            table.is_multiple_of(TABLE_SIZE),
            "table address {table:#x} is not 4 KiB aligned"
        );
        assert!(
            index < ENTRIES_PER_TABLE,
            "entry index {index} out of range"
        );
    }
}

impl TableMemory for FakeMemory {
    fn read_entry(&self, table: u64, index: usize) -> u64 {
        Self::check(table, index);
        self.tables.get(&table).map_or(0, |t| t[index])
    }

    fn write_entry(&mut self, table: u64, index: usize, value: u64) {
        Self::check(table, index);
        self.tables
            .entry(table)
            .or_insert_with(|| Box::new([0; ENTRIES_PER_TABLE]))[index] = value;
    }
}

/// A bump allocator of table frames over a fixed physical range; each frame is handed out
/// at most once. Released frames are recorded, not reused.
#[derive(Debug, Clone)]
pub struct FakeFrames {
    next: u64,
    end: u64,
    allocated: u64,
    released: Vec<u64>,
}

impl FakeFrames {
    /// Frames `start..start + count * 4 KiB` (`start` rounded down to 4 KiB; the end is
    /// clamped below 2^64).
    #[must_use]
    pub fn new(start: u64, count: u64) -> Self {
        let next = start & !(TABLE_SIZE - 1);
        let end = count
            .checked_mul(TABLE_SIZE)
            .and_then(|len| next.checked_add(len))
            .unwrap_or(!(TABLE_SIZE - 1));
        Self {
            next,
            end,
            allocated: 0,
            released: Vec::new(),
        }
    }

    /// Frames handed out so far.
    #[must_use]
    pub fn allocated(&self) -> u64 {
        self.allocated
    }

    /// Frames still available.
    #[must_use]
    pub fn remaining(&self) -> u64 {
        (self.end - self.next) / TABLE_SIZE
    }

    /// Frames given back through [`FrameSource::release_table`], in order.
    #[must_use]
    pub fn released(&self) -> &[u64] {
        &self.released
    }
}

impl FrameSource for FakeFrames {
    fn allocate_table(&mut self) -> Option<u64> {
        if self.next >= self.end {
            return None;
        }
        let frame = self.next;
        self.next += TABLE_SIZE;
        self.allocated += 1;
        Some(frame)
    }

    fn release_table(&mut self, table: u64) {
        self.released.push(table);
    }
}
