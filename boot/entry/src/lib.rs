//! Mica's image entry, shared by every way the image is booted.
//!
//! - `entry.S` holds a Multiboot1 header (with the a.out-kludge address fields, so QEMU
//!   `-kernel` loads the ELF64 image) and a Multiboot2 header (GRUB on BIOS and UEFI machines),
//!   and the 32-to-64-bit trampoline that calls `mica_main(magic, info_addr)`.
//! - `linker.ld` fixes the image layout (load address 1 MiB, page-aligned sections, linear file
//!   layout). The hypervisor binary links with it (see `hypervisor/mica/build.rs`).
//! - This crate exposes the layout the linker produced, so the hypervisor can map each part
//!   with the right permissions and leave stack guard pages unmapped.
//!
//! Only the bare-metal target assembles the entry; on the host this crate is a plain library
//! of layout types.
#![no_std]

use core::ops::Range;

#[cfg(all(target_arch = "x86_64", target_os = "none"))]
core::arch::global_asm!(include_str!("entry.S"), options(att_syntax));

/// Magic value in EAX when a Multiboot1 loader enters the image.
pub const MULTIBOOT1_LOADER_MAGIC: u32 = 0x2BAD_B002;
/// Magic value in EAX when a Multiboot2 loader enters the image.
pub const MULTIBOOT2_LOADER_MAGIC: u32 = 0x36D7_6289;
/// Physical (and virtual) address the image is linked and loaded at.
pub const IMAGE_BASE: u64 = 0x10_0000;
/// Size of one page of the image layout.
pub const PAGE_SIZE: u64 = 4096;

/// One stack in the image: a guard page (never mapped) directly below the usable range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackLayout {
    /// The unmapped guard page.
    pub guard: Range<u64>,
    /// The usable stack memory; the stack grows down from `stack.end`.
    pub stack: Range<u64>,
}

impl StackLayout {
    /// Initial stack pointer value.
    pub fn top(&self) -> u64 {
        self.stack.end
    }
}

/// Where the linker put each part of the image. All ranges are page aligned except
/// `load_end`, and lie inside `image`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageLayout {
    /// The whole image, from the first header byte to the end of the stacks.
    pub image: Range<u64>,
    /// Code (headers, trampoline, Rust text): read + execute.
    pub text: Range<u64>,
    /// Read-only data: read only, no execute.
    pub rodata: Range<u64>,
    /// Initialised and zeroed data: read + write, no execute.
    pub data: Range<u64>,
    /// Boot stack (used by the trampoline and `mica_main`).
    pub boot_stack: StackLayout,
    /// IST stack for double faults.
    pub double_fault_stack: StackLayout,
    /// IST stack for NMIs.
    pub nmi_stack: StackLayout,
    /// IST stack for machine checks.
    pub machine_check_stack: StackLayout,
    /// IST stack for every other exception (terminal handlers: one at a time).
    pub exception_stack: StackLayout,
}

impl ImageLayout {
    /// All stacks of the image.
    pub fn stacks(&self) -> [&StackLayout; 5] {
        [
            &self.boot_stack,
            &self.double_fault_stack,
            &self.nmi_stack,
            &self.machine_check_stack,
            &self.exception_stack,
        ]
    }
}

#[cfg(all(target_arch = "x86_64", target_os = "none"))]
mod symbols {
    use super::{ImageLayout, StackLayout};

    unsafe extern "C" {
        static __image_start: u8;
        static __text_end: u8;
        static __rodata_end: u8;
        static __image_end: u8;
        static boot_entry_tsc: u64;
        static boot_stack_guard: u8;
        static boot_stack_bottom: u8;
        static boot_stack_top: u8;
        static ist_double_fault_stack_guard: u8;
        static ist_double_fault_stack_bottom: u8;
        static ist_double_fault_stack_top: u8;
        static ist_nmi_stack_guard: u8;
        static ist_nmi_stack_bottom: u8;
        static ist_nmi_stack_top: u8;
        static ist_machine_check_stack_guard: u8;
        static ist_machine_check_stack_bottom: u8;
        static ist_machine_check_stack_top: u8;
        static ist_exception_stack_guard: u8;
        static ist_exception_stack_bottom: u8;
        static ist_exception_stack_top: u8;
    }

    fn addr(symbol: *const u8) -> u64 {
        symbol as u64
    }

    fn stack(guard: *const u8, bottom: *const u8, top: *const u8) -> StackLayout {
        StackLayout {
            guard: addr(guard)..addr(bottom),
            stack: addr(bottom)..addr(top),
        }
    }

    pub fn layout() -> ImageLayout {
        // Only the addresses of these linker/assembler symbols are taken; nothing is read.
        ImageLayout {
            image: addr(&raw const __image_start)..addr(&raw const __image_end),
            text: addr(&raw const __image_start)..addr(&raw const __text_end),
            rodata: addr(&raw const __text_end)..addr(&raw const __rodata_end),
            data: addr(&raw const __rodata_end)..addr(&raw const boot_stack_guard),
            boot_stack: stack(
                &raw const boot_stack_guard,
                &raw const boot_stack_bottom,
                &raw const boot_stack_top,
            ),
            double_fault_stack: stack(
                &raw const ist_double_fault_stack_guard,
                &raw const ist_double_fault_stack_bottom,
                &raw const ist_double_fault_stack_top,
            ),
            nmi_stack: stack(
                &raw const ist_nmi_stack_guard,
                &raw const ist_nmi_stack_bottom,
                &raw const ist_nmi_stack_top,
            ),
            machine_check_stack: stack(
                &raw const ist_machine_check_stack_guard,
                &raw const ist_machine_check_stack_bottom,
                &raw const ist_machine_check_stack_top,
            ),
            exception_stack: stack(
                &raw const ist_exception_stack_guard,
                &raw const ist_exception_stack_bottom,
                &raw const ist_exception_stack_top,
            ),
        }
    }

    pub fn entry_tsc() -> u64 {
        // SAFETY: `boot_entry_tsc` is an aligned u64 in .data written once by the trampoline
        // before any Rust code runs and never written again.
        unsafe { core::ptr::read_volatile(&raw const boot_entry_tsc) }
    }
}

/// The image layout the linker produced (bare metal only).
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
pub fn image_layout() -> ImageLayout {
    symbols::layout()
}

/// TSC value read by the first instructions of the trampoline (bare metal only).
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
pub fn entry_tsc() -> u64 {
    symbols::entry_tsc()
}
