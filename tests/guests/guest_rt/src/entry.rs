//! The guest's entry: `_start`, the start-info page, and the hand-over to the guest's
//! `main` named with [`entry_point!`](crate::entry_point).
//!
//! `_start` (bare metal only) is entered as the boot convention says: 64-bit mode, RSP =
//! top of the loader's stack (16-byte aligned), RDI = GPA of the start-info page. It reads
//! the TSC as its very first instruction (kept for [`Boot::entry_tsc`]), sets up nothing
//! else, and calls the runtime, which copies the start-info page out once, checks it, and
//! calls `main(&Boot)`.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::StartInfoView;
use crate::cpu::Vendor;

/// TSC value read by the first instruction of `_start`.
static ENTRY_TSC: AtomicU64 = AtomicU64::new(0);

/// What the guest knows when its `main` starts.
#[derive(Debug, Clone)]
pub struct Boot<'a> {
    /// The checked start-info page.
    pub info: StartInfoView<'a>,
    /// TSC at the guest's first instruction.
    pub entry_tsc: u64,
    /// CPU vendor (decides VMMCALL or VMCALL).
    pub vendor: Vendor,
}

/// The TSC value `_start` read first thing (0 before `_start` ran, e.g. on the host).
#[must_use]
pub fn entry_tsc() -> u64 {
    ENTRY_TSC.load(Ordering::Relaxed)
}

/// Names the guest's `main`, a `fn(&guest_rt::Boot<'_>) -> !`, as the function the
/// runtime calls after `_start`. Use once, in the guest binary, on the bare-metal target.
#[macro_export]
macro_rules! entry_point {
    ($main:path) => {
        /// Called by `guest_rt` once the start-info page checked out.
        #[unsafe(no_mangle)]
        fn guest_rt_main(boot: &$crate::Boot<'_>) -> ! {
            let main: fn(&$crate::Boot<'_>) -> ! = $main;
            main(boot)
        }
    };
}

#[cfg(target_os = "none")]
mod bare_metal {
    use guest_loader::{START_INFO_GPA, StartInfo};

    use super::{Boot, ENTRY_TSC, Ordering};
    use crate::cpu::Vendor;
    use crate::{EXIT_PANIC, exit, gprintln};

    unsafe extern "Rust" {
        /// Defined by [`entry_point!`](crate::entry_point) in the guest binary.
        safe fn guest_rt_main(boot: &Boot<'_>) -> !;
    }

    core::arch::global_asm!(
        ".pushsection .text._start, \"ax\"",
        ".global _start",
        "_start:",
        "rdtsc",
        "shl rdx, 32",
        "or rax, rdx",
        "mov qword ptr [rip + {tsc}], rax",
        "call {entry}",
        "ud2",
        ".popsection",
        tsc = sym ENTRY_TSC,
        entry = sym rust_entry,
    );

    /// Called by `_start` with RDI as the loader set it.
    extern "sysv64" fn rust_entry(start_info_gpa: u64) -> ! {
        if start_info_gpa != START_INFO_GPA {
            gprintln!(
                "GUEST PANIC: start info at {start_info_gpa:#x}, expected {START_INFO_GPA:#x}"
            );
            exit(EXIT_PANIC);
        }
        let source = core::ptr::with_exposed_provenance::<[u8; size_of::<StartInfo>()]>(
            START_INFO_GPA as usize,
        );
        // SAFETY: the loader wrote the start-info page at START_INFO_GPA, inside RAM that the
        // initial page tables identity-map; nothing else refers to it. One volatile copy,
        // then only the copy is used.
        let bytes = unsafe { core::ptr::read_volatile(source) };
        let Some(info) = StartInfo::copy_from_prefix(&bytes) else {
            exit(EXIT_PANIC);
        };
        let view = match info.validate() {
            Ok(view) => view,
            Err(error) => {
                gprintln!("GUEST PANIC: bad start info: {error}");
                exit(EXIT_PANIC);
            }
        };
        let boot = Boot {
            info: view,
            entry_tsc: ENTRY_TSC.load(Ordering::Relaxed),
            vendor: Vendor::detect(),
        };
        guest_rt_main(&boot)
    }
}
