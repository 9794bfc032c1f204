//! The debug console: bytes written to I/O port 0xE9 append to the partition's console.

use core::fmt;

use crate::{CONSOLE_PORT, cpu};

/// A [`fmt::Write`] sink over the debug-console port.
#[derive(Debug, Default, Clone, Copy)]
pub struct Console;

impl Console {
    /// Writes raw bytes.
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            cpu::outb(CONSOLE_PORT, b);
        }
    }
}

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.write_bytes(s.as_bytes());
        Ok(())
    }
}

/// Formats to the debug console (used by [`crate::gprint!`] and [`crate::gprintln!`]).
pub fn print(args: fmt::Arguments<'_>) {
    // The console never fails to take bytes.
    let _ = fmt::write(&mut Console, args);
}

/// Prints to the guest's debug console.
#[macro_export]
macro_rules! gprint {
    ($($arg:tt)*) => { $crate::console::print(format_args!($($arg)*)) };
}

/// Prints a line to the guest's debug console.
#[macro_export]
macro_rules! gprintln {
    () => { $crate::console::print(format_args!("\n")) };
    ($($arg:tt)*) => {{
        $crate::console::print(format_args!($($arg)*));
        $crate::console::print(format_args!("\n"));
    }};
}
