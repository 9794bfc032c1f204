//! x86-64 CPU structures of the hypervisor itself: GDT, TSS with IST stacks, IDT and the
//! exception path. Partitions never see these.

pub mod exceptions;
pub mod fpu;
pub mod gdt;
pub mod lapic;
pub mod svm;

use boot_entry::ImageLayout;

/// Loads the hypervisor's GDT/TSS and IDT. Every exception runs on an IST stack with a
/// guard page below it, so even a stack overflow produces a readable dump.
pub fn init(layout: &ImageLayout) {
    gdt::init(layout);
    exceptions::init();
}

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects; CR4.TSD is clear in ring 0 anyway.
    unsafe { core::arch::x86_64::_rdtsc() }
}
