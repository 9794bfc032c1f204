//! Stopping the machine: the last thing the hypervisor does.
//!
//! Order: QEMU's `isa-debug-exit` (exit status tells success from failure), Bochs' shutdown
//! port, then the fallbacks of a real machine: keyboard-controller reset and, if even that does
//! nothing, a triple fault. Emulator-only ports are touched only when the firmware identifies
//! itself as an emulator's (ACPI OEM ID "BOCHS ", used by SeaBIOS in QEMU and by the Bochs
//! BIOS), so a real machine never sees writes to them.

use core::sync::atomic::{AtomicBool, Ordering};

use x86_64::instructions::port::Port;

use crate::println;

/// How the hypervisor's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything requested ran and succeeded.
    Success,
    /// A fault, panic, or a failed check.
    Failure,
}

/// QEMU `-device isa-debug-exit,iobase=0xf4`: QEMU exits with status `(value << 1) | 1`.
const QEMU_DEBUG_EXIT_PORT: u16 = 0xF4;
/// Exit status 33.
const QEMU_EXIT_SUCCESS: u32 = 0x10;
/// Exit status 35.
const QEMU_EXIT_FAILURE: u32 = 0x11;
/// Bochs: writing the string "Shutdown" here ends the simulation.
const BOCHS_SHUTDOWN_PORT: u16 = 0x8900;
/// i8042 keyboard controller command port; command 0xFE pulses the CPU reset line.
const KBC_COMMAND_PORT: u16 = 0x64;

static EMULATOR: AtomicBool = AtomicBool::new(false);
static EXITING: AtomicBool = AtomicBool::new(false);

/// Records whether the firmware is an emulator's (decided once at boot).
pub fn set_emulator(emulator: bool) {
    EMULATOR.store(emulator, Ordering::Relaxed);
}

/// Prints the verdict line and stops the machine.
pub fn exit(status: ExitStatus) -> ! {
    x86_64::instructions::interrupts::disable();
    if EXITING.swap(true, Ordering::SeqCst) {
        // A fault while exiting: do not recurse, just stop.
        halt_forever();
    }
    println!(
        "MICA EXIT: {}",
        match status {
            ExitStatus::Success => "success",
            ExitStatus::Failure => "failure",
        }
    );
    crate::serial::flush();
    if EMULATOR.load(Ordering::Relaxed) {
        let code = match status {
            ExitStatus::Success => QEMU_EXIT_SUCCESS,
            ExitStatus::Failure => QEMU_EXIT_FAILURE,
        };
        // SAFETY: the firmware is QEMU's or Bochs' (checked at boot); on QEMU port 0xF4 is the
        // isa-debug-exit device (if configured) and on Bochs it is unclaimed. The write ends the
        // process or has no effect.
        unsafe { Port::<u32>::new(QEMU_DEBUG_EXIT_PORT).write(code) };
        let mut bochs = Port::<u8>::new(BOCHS_SHUTDOWN_PORT);
        for byte in b"Shutdown" {
            // SAFETY: Bochs' shutdown port; on QEMU unclaimed. Ends the simulation or nothing.
            unsafe { bochs.write(*byte) };
        }
    }
    // SAFETY: pulsing the reset line through the i8042 restarts the machine; we are done with
    // it and nothing else runs on this CPU.
    unsafe { Port::<u8>::new(KBC_COMMAND_PORT).write(0xFE) };
    triple_fault()
}

fn triple_fault() -> ! {
    let empty = x86_64::structures::DescriptorTablePointer {
        limit: 0,
        base: x86_64::VirtAddr::zero(),
    };
    // SAFETY: loading an empty IDT and raising an exception makes the CPU shut down (triple
    // fault), which resets the machine: the intended effect of this last resort.
    unsafe { x86_64::instructions::tables::lidt(&empty) };
    x86_64::instructions::interrupts::int3();
    halt_forever()
}

fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
