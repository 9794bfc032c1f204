//! The Mica hypervisor binary: thin bare-metal glue over the host-testable crates.
#![no_std]
#![no_main]

mod arch;
mod serial;
mod shutdown;

use shutdown::ExitStatus;

/// Rust entry, called by the trampoline in `boot/entry` in 64-bit mode on the boot stack.
#[unsafe(no_mangle)]
extern "C" fn mica_main(magic: u32, info_addr: u32) -> ! {
    serial::init(serial::COM1);
    let layout = boot_entry::image_layout();
    arch::init(&layout);
    println!("Mica {} starting (magic=0x{magic:x} info=0x{info_addr:x})", env!("CARGO_PKG_VERSION"));
    println!("bench: entry_to_ready_tsc={}", arch::rdtsc() - boot_entry::entry_tsc());
    shutdown::set_emulator(true);
    println!("MICA READY");
    shutdown::exit(ExitStatus::Success)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    serial::force_unlock();
    println!("MICA PANIC: {info}");
    shutdown::exit(ExitStatus::Failure)
}
