//! x86-64 4-level page-table builder and walker for the Mica hypervisor.
//!
//! [`PageTables`] maps, unmaps, re-protects, translates and enumerates pages of 4 KiB, 2 MiB
//! and 1 GiB in a table tree rooted at a physical address. It touches memory only through
//! two narrow traits, [`TableMemory`] (read/write one 64-bit entry of a table page) and
//! [`FrameSource`] (zeroed frames for new tables), so it runs on the host against
//! `FakeMemory` and `FakeFrames` (feature `fake`). Entry bits come from an
//! [`EntryFormat`]: [`LongMode`] serves the hypervisor's own tables
//! ([`LongMode::host`]) and AMD nested page tables ([`LongMode::nested`]); Intel EPT is
//! another implementation of the same trait.
//!
//! Policy: leaves carry exactly the permissions asked for (NX unless
//! [`MapFlags::EXECUTABLE`]), intermediate entries are permissive, and
//! `WRITABLE | EXECUTABLE` is refused unless [`WxPolicy::Allow`] is set (the hypervisor
//! never sets it).
//!
//! **TLB contract:** the crate never flushes a TLB. Every changing call reports whether the
//! caller must (see [`Flush`]); only the caller knows which CPUs use the tables.
//!
//! No heap, no `unsafe`, no panics outside the test fakes.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

#[cfg(all(feature = "fake", not(test)))]
extern crate std;

#[cfg(any(test, feature = "fake"))]
mod fake;
mod format;
mod memory;
mod tables;
#[cfg(test)]
mod tests;

#[cfg(any(test, feature = "fake"))]
pub use fake::{FakeFrames, FakeMemory};
pub use format::{
    ENTRIES_PER_TABLE, EntryFormat, INPUT_ADDR_BITS, Level, LongMode, LongModeBits,
    MAX_PHYS_ADDR_BITS, MapFlags, PageSize, TABLE_SIZE,
};
pub use memory::{FrameSource, TableMemory};
pub use tables::{Flush, HugePages, MapError, PageTables, Translation, Unmapped, WxPolicy};
