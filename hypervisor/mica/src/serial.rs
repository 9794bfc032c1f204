//! The hypervisor's console: a 16550 UART (COM1 by default, 8N1) and the `log` backend on it.
//!
//! Output is synchronous and unbuffered so that the last line before a fault or a shutdown is
//! on the wire. A lock protects the port; the fault path may steal it (see [`force_unlock`]).

use core::fmt::{self, Write};

use spin::Mutex;
use uart_16550::backend::PioBackend;
use uart_16550::{BaudRate, Config, Uart16550};

/// I/O base of COM1, the default console.
pub const COM1: u16 = 0x3F8;

struct Console {
    uart: Option<Uart16550<PioBackend>>,
}

static CONSOLE: Mutex<Console> = Mutex::new(Console { uart: None });

/// Programs the UART at `base` for 115200 8N1. Without a UART the console stays silent.
pub fn init(base: u16) {
    // SAFETY: `base` is the I/O base of a 16550 UART on PC-compatible platforms (COM1 by
    // default, or the port named by `serial=` on the command line); the hypervisor is the only
    // user of that port — it is never passed through to a partition.
    let uart = unsafe { Uart16550::new_port(base) };
    let Ok(mut uart) = uart else { return };
    let config = Config {
        baud_rate: BaudRate::Baud115200,
        ..Config::DEFAULT
    };
    if uart.init(config).is_ok() {
        CONSOLE.lock().uart = Some(uart);
    }
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if let Some(uart) = self.uart.as_mut() {
            for chunk in s.split_inclusive('\n') {
                match chunk.strip_suffix('\n') {
                    Some(line) => {
                        uart.send_bytes_exact(line.as_bytes());
                        uart.send_bytes_exact(b"\r\n");
                    }
                    None => uart.send_bytes_exact(chunk.as_bytes()),
                }
            }
        }
        Ok(())
    }
}

/// Writes formatted text to the console.
pub fn write_fmt(args: fmt::Arguments<'_>) {
    // Formatting to a UART cannot fail; a missing UART drops the text.
    let _ = CONSOLE.lock().write_fmt(args);
}

/// Waits until the UART has shifted out every byte (LSR.TEMT), so nothing is lost when the
/// machine stops right after.
pub fn flush() {
    if let Some(uart) = CONSOLE.lock().uart.as_mut() {
        for _ in 0..1_000_000 {
            if uart
                .lsr()
                .contains(uart_16550::spec::registers::LSR::TRANSMITTER_EMPTY)
            {
                break;
            }
            core::hint::spin_loop();
        }
    }
}

/// Releases the console lock held by an interrupted context, so the fault path can print.
///
/// Only for terminal paths (fault dump, panic) that never return to the interrupted code.
pub fn force_unlock() {
    if CONSOLE.is_locked() {
        // SAFETY: called only from terminal paths on the single boot CPU; the context that held
        // the lock was interrupted and will never run again, so no second user can observe it.
        unsafe { CONSOLE.force_unlock() };
    }
}

/// `println!` to the hypervisor console.
#[macro_export]
macro_rules! println {
    () => { $crate::serial::write_fmt(format_args!("\n")) };
    ($($arg:tt)*) => {
        $crate::serial::write_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}

struct SerialLogger;

impl log::Log for SerialLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            write_fmt(format_args!("[{:<5}] {}\n", record.level(), record.args()));
        }
    }

    fn flush(&self) {
        flush();
    }
}

static LOGGER: SerialLogger = SerialLogger;

/// Routes the `log` macros to the console at `level` and above.
pub fn init_logger(level: log::LevelFilter) {
    // A second call only changes the level.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
