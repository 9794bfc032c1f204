//! The guest's panic handler: report and exit with [`crate::EXIT_PANIC`].

use crate::gprintln;

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    match info.location() {
        Some(at) => gprintln!(
            "GUEST PANIC: {} at {}:{}",
            info.message(),
            at.file(),
            at.line()
        ),
        None => gprintln!("GUEST PANIC: {}", info.message()),
    }
    crate::exit(crate::EXIT_PANIC)
}
