//! Loader of Mica test-guest images, and the guest boot convention they rely on.
//!
//! A test guest is a small static `no_std` ELF64 kernel that the hypervisor starts as a
//! child partition. This crate turns its image bytes into a ready-to-run partition: it
//! checks the ELF ([`ElfImage::parse`]), copies the loadable segments into the child's RAM
//! through the [`GuestRam`] trait, builds identity-mapped page tables for the guest (with
//! the `paging` crate), writes a GDT and the start-info page ([`StartInfo`], shared with the
//! guest runtime `guest_rt`), and returns the vCPU's [`InitialState`].
//!
//! # The guest boot convention
//!
//! Guest-physical memory of the child (`ram_size` bytes, a multiple of 2 MiB, 4 MiB to
//! 64 GiB):
//!
//! ```text
//! 0x0000_0000 ..0x0000_1000   unused page (mapped; never written by the loader)
//! 0x0000_1000 ..0x0000_2000   start-info page (StartInfo at its start, rest zero)
//! 0x0000_2000 ..0x0000_3000   GDT: null, 64-bit code (selector 0x08), data (0x10)
//! 0x0000_3000 ..0x0020_0000   free
//! 0x0020_0000 ..image_end     the ELF's PT_LOAD segments (linked at 2 MiB, p_paddr = p_vaddr)
//! image_end   ..free_end      free (what `memory-pattern` scribbles over)
//! free_end    ..stack_top     boot stack, 64 KiB, zeroed; RSP = stack_top
//! stack_top   ..ram_size      page tables: PML4, one PDPT, one PD per GiB; CR3 = stack_top
//! ```
//!
//! The page tables identity-map all of RAM with writable, executable 2 MiB pages (no NX
//! bits, so EFER.NXE is not needed; W^X inside the guest is the guest's business) and map
//! nothing else: a guest that wants to touch a GPA beyond its RAM must add the mapping
//! itself. The vCPU starts in 64-bit long mode at CPL 0 with interrupts disabled and no IDT
//! (any exception triple-faults), RIP = ELF entry, RDI = GPA of the start-info page; every
//! other general-purpose register is zero. See [`InitialState`] for the control registers.
//!
//! Guest → hypervisor (implemented by the hypervisor, used by `guest_rt`):
//! - hypercalls with the TLFS ABI (RCX control, RDX/R8 input/output GPAs or fast data, RAX
//!   status), issued with VMMCALL when CPUID reports an AMD CPU and VMCALL on Intel;
//! - byte writes to I/O port 0xE9 append to the partition's debug console (NUL bytes are
//!   ignored, which the `bench-ioio` guest relies on);
//! - a 32-bit write to I/O port 0xF4 ends the partition with that exit value (0 = pass);
//! - any other I/O port stops the partition.
//!
//! The loader writes only the ranges it defines (segments including their zero fill,
//! start-info page, GDT page, stack, tables). The rest of RAM is left as given: the
//! hypervisor must hand a child only cleared pool memory.
//!
//! # Tests
//! `cargo test -p guest_loader` (hand-assembled images, every malformation, page-table
//! walks, proptest). Fuzzing (own workspace under `fuzz/`, run from there):
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run elf_loader -- -max_total_time=10`.
//!
//! Architecture invariant: no image bytes and no `ram_size` can make this crate panic, loop
//! without bound or write outside `[0, ram_size)`; an image is checked completely before the
//! first byte is written.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

#[cfg(all(feature = "fake", not(test)))]
extern crate std;

mod elf;
#[cfg(any(test, feature = "fake"))]
mod fake;
mod layout;
pub mod linux;
#[cfg(test)]
mod linux_tests;
mod load;
mod start_info;
#[cfg(test)]
mod tests;

pub use elf::{ElfError, ElfImage, MAX_LOAD_SEGMENTS, MAX_PROGRAM_HEADERS, Segment, SegmentFlags};
#[cfg(any(test, feature = "fake"))]
pub use fake::FakeRam;
pub use layout::{
    BOOT_PAGES_END, CODE_SELECTOR, CODE64_DESCRIPTOR, DATA_DESCRIPTOR, DATA_SELECTOR, GDT, GDT_GPA,
    IMAGE_BASE, Layout, LayoutError, MAX_RAM_SIZE, MIN_RAM_SIZE, RAM_ALIGN, Region, STACK_SIZE,
    START_INFO_GPA,
};
pub use linux::{
    BzImage, E820Entry, E820Table, E820Type, LinuxBootSpec, LinuxEntry, LinuxError, SCRATCH_SIZE,
    prepare_linux_boot, scratch_size,
};
pub use load::{GuestRam, InitialState, LoadError, LoadParams, RamError, load};
pub use start_info::{
    ARGS_MAX, START_INFO_MAGIC, START_INFO_VERSION, StartInfo, StartInfoError, StartInfoView,
};
