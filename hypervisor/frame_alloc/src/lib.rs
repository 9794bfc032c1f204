//! Physical 4 KiB frame allocator for the Mica hypervisor, built from the boot memory map.
//!
//! [`MemoryRegions`] turns the memory map's usable ranges and a list of reserved ranges
//! (hypervisor image, boot modules, boot information, [`LOW_MEMORY`]) into the frame-aligned
//! set of frames that may be handed out. [`FrameAllocator`] manages that set with a bitmap
//! whose storage the caller supplies (on bare metal: frames carved out of usable memory at the
//! place [`MemoryRegions::plan_bitmap`] picks).
//!
//! No heap, no `unsafe`, no panics on any input: the crate runs before the heap exists.
//! Architecture invariant: a frame is handed out only if it lies wholly inside usable memory
//! and touches no reserved byte, and never twice without being freed in between.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

mod allocator;
mod place;
mod range;
mod regions;
#[cfg(test)]
mod tests;

pub use allocator::{FrameAllocator, FrameError};
pub use place::highest_fit;
pub use range::{FRAME_SIZE, LOW_MEMORY, PhysRange};
pub use regions::{BitmapPlan, BuildError, MAX_REGIONS, MemoryRegions};
