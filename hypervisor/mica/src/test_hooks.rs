//! Test-only hooks (feature `test-hooks`, image `mica-test.elf`), selected with `test=NAME` on
//! the command line. Each makes the hypervisor fail in one specific way so the emulator tests
//! can check that the failure is reported and the machine stops with the failure status.

use boot_entry::ImageLayout;
use log::{info, warn};

/// An address the hypervisor never maps: canonical, far above any RAM of a test machine.
const UNMAPPED: u64 = 0x0000_7fff_dead_0000;

/// Runs the hook `name`; unknown names are reported and ignored.
pub fn run(name: &str, layout: &ImageLayout) {
    match name {
        "fault" => {
            info!("test hook: writing to unmapped address {UNMAPPED:#x}");
            // SAFETY: deliberately unsound in the test image only: the write faults (#PF) before
            // it can change anything, and the fault handler never returns.
            unsafe { (UNMAPPED as *mut u64).write_volatile(0xdead) };
        }
        "panic" => panic!("test hook requested a panic"),
        "stack-overflow" => {
            info!(
                "test hook: overflowing the boot stack into its guard page at {:#x}",
                layout.boot_stack.guard.start
            );
            let depth = recurse(0);
            warn!("stack overflow hook returned after {depth} frames");
        }
        other => warn!("unknown test hook '{other}' ignored (known: fault, panic, stack-overflow)"),
    }
}

#[inline(never)]
#[expect(
    unconditional_recursion,
    reason = "the hook exists to overflow the stack"
)]
fn recurse(depth: u64) -> u64 {
    let frame = core::hint::black_box([depth; 32]);
    recurse(depth + 1).wrapping_add(frame[usize::try_from(depth % 32).unwrap_or(0)])
}
