//! Runtime of Mica's test guests: small `no_std` 64-bit kernels that run as child
//! partitions and report over the debug console.
//!
//! The guest boot convention (memory map, initial registers, I/O ports) is defined and
//! documented in the `guest_loader` crate, which also owns the [`StartInfo`] layout. This
//! crate is the guest's side of it:
//! - [`entry`]: `_start` (reads the TSC as its very first instruction, then calls Rust with
//!   RDI = start-info GPA on the loader's stack) and [`entry_point!`], which names the
//!   guest's `main`;
//! - [`console`]: [`gprint!`]/[`gprintln!`] over I/O port 0xE9; [`exit`]: port 0xF4;
//! - [`hypercall`]: TLFS hypercalls (VMMCALL on AMD, VMCALL on Intel) with typed status;
//! - [`cpu`]: the few instructions the guests need (RDTSC, CPUID, LIDT, ...);
//! - [`mapping`]: adding identity mappings beyond RAM to the guest's own page tables;
//! - [`rng`]: an xorshift PRNG; [`args`]: argument-string helpers;
//! - a panic handler (bare metal only) printing `GUEST PANIC: ...` and exiting with 0xFF.
//!
//! Everything that executes privileged instructions is compiled on the host too (so the
//! workspace builds and clippy checks it) but only runs in a guest; `entry` and the panic
//! handler exist only for `target_os = "none"`. The pure parts ([`rng`], [`args`]) have
//! host unit tests.
//!
//! Architecture invariant: a guest built on this runtime touches the hypervisor only
//! through the documented interfaces (hypercall instruction, ports 0xE9 and 0xF4, memory
//! accesses it chooses); nothing here assumes more of the hypervisor than the boot
//! convention.

#![cfg_attr(not(test), no_std)]

pub mod args;
pub mod console;
pub mod cpu;
pub mod entry;
pub mod hypercall;
pub mod mapping;
#[cfg(target_os = "none")]
mod panic;
pub mod rng;

pub use entry::Boot;
pub use guest_loader::{StartInfo, StartInfoView};

/// I/O port of the partition's debug console (byte writes).
pub const CONSOLE_PORT: u16 = 0xE9;
/// I/O port that ends the partition (32-bit write of the exit value).
pub const EXIT_PORT: u16 = 0xF4;
/// Exit value of a passing guest.
pub const EXIT_PASS: u32 = 0;
/// Exit value of a failing guest.
pub const EXIT_FAIL: u32 = 1;
/// Exit value after a panic.
pub const EXIT_PANIC: u32 = 0xFF;

/// Ends the partition with `code` (a 32-bit write to port 0xF4). If the hypervisor ever
/// resumed the guest after that, it halts forever with interrupts off.
pub fn exit(code: u32) -> ! {
    cpu::outl(EXIT_PORT, code);
    loop {
        cpu::cli_hlt();
    }
}
