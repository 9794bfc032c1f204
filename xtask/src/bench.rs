//! `cargo xtask bench <what>`: benchmarks. Hypervisor paths are measured in emulated
//! instructions (QEMU `-icount shift=0,sleep=off`), never in wall time.

use std::process::Command;
use std::time::Duration;

use clap::Subcommand;
use emu_harness::{QemuConfig, RunOptions, try_run};

use crate::images::{self, file_size};
use crate::process::{self, Result, bail};
use crate::tools::{self, Need};
use crate::workspace;

/// Package holding the VMBus benchmark binary.
pub const VMBUS_BENCH_PACKAGE: &str = "vsp_vsc_harness";

/// The serial line carrying the boot measurement.
pub const BOOT_BENCH_PREFIX: &str = "bench: entry_to_ready_tsc=";

/// What to measure. A new benchmark is one more variant here and one more arm in [`run`].
#[derive(Debug, Subcommand)]
pub enum Bench {
    /// Boot the release image under QEMU with instruction counting; print
    /// `boot_instructions: N` (first instruction to READY) and `image_size_bytes: N`.
    Boot,
    /// Run the VMBus ring benchmark (`vsp_vsc_harness`'s `vmbus-bench`, release build);
    /// arguments after `--` go to it.
    Vmbus {
        /// Arguments passed through to `vmbus-bench`.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGS"
        )]
        args: Vec<String>,
    },
}

/// Runs one benchmark.
pub fn run(bench: &Bench) -> Result<()> {
    match bench {
        Bench::Boot => boot(),
        Bench::Vmbus { args } => vmbus(args),
    }
}

fn boot() -> Result<()> {
    let built = images::build(false)?;
    tools::ensure_packages(&[Need::Qemu])?;
    let config = QemuConfig::kernel(&built.elf, "").icount(true);
    let options = RunOptions::new("bench_boot", Duration::from_secs(90))
        .log_root(workspace::artifacts_dir().join("bench-logs"));
    let outcome = try_run(&config.into(), &options)?;
    if !outcome.succeeded() {
        let kept = outcome.keep_logs()?;
        bail!(
            "The boot benchmark run ended with {} (logs: {})",
            outcome.exit,
            kept.display()
        );
    }
    let Some(instructions) = parse_boot_bench(&outcome.serial) else {
        let kept = outcome.keep_logs()?;
        bail!(
            "No valid `{BOOT_BENCH_PREFIX}<N>` line in the serial output (logs: {})",
            kept.display()
        );
    };
    println!("boot_instructions: {instructions}");
    println!("image_size_bytes: {}", file_size(&built.elf)?);
    Ok(())
}

/// The number on the last `bench: entry_to_ready_tsc=<N>` line.
pub fn parse_boot_bench(serial: &str) -> Option<u64> {
    serial
        .lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix(BOOT_BENCH_PREFIX))
        .and_then(|n| n.trim().parse().ok())
}

fn vmbus(args: &[String]) -> Result<()> {
    if !workspace::has_package(VMBUS_BENCH_PACKAGE)? {
        bail!(
            "The VMBus benchmark lives in package `{VMBUS_BENCH_PACKAGE}`, which does not exist yet"
        );
    }
    let mut command: Command = process::cargo();
    command
        .args([
            "run",
            "--release",
            "-p",
            VMBUS_BENCH_PACKAGE,
            "--bin",
            "vmbus-bench",
            "--",
        ])
        .args(args);
    process::run(&mut command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_bench_line_is_parsed() {
        let serial = "Mica 0.1 starting\nbench: entry_to_ready_tsc=123456\nMICA READY\n";
        assert_eq!(parse_boot_bench(serial), Some(123_456));
        assert_eq!(
            parse_boot_bench("bench: entry_to_ready_tsc=1\nbench: entry_to_ready_tsc=2\n"),
            Some(2)
        );
        assert_eq!(parse_boot_bench("bench: entry_to_ready_tsc=abc\n"), None);
        assert_eq!(parse_boot_bench("MICA READY\n"), None);
    }
}
