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

/// Prefix of every measurement line the hypervisor or a guest prints: `bench: NAME=VALUE`.
pub const BENCH_PREFIX: &str = "bench: ";

/// What to measure. A new benchmark is one more variant here and one more arm in [`run`].
#[derive(Debug, Subcommand)]
pub enum Bench {
    /// Boot the release image under QEMU with instruction counting; print
    /// `boot_instructions: N` (first instruction to READY), `trampoline_instructions: N`
    /// (first instruction to the first Rust instruction, same run) and `image_size_bytes: N`.
    Boot,
    /// Run the test guest's hypercall loops under QEMU with instruction counting; print
    /// `null_hypercall_instructions: N` (HvCallNotifyLongSpinWait round trip from a guest
    /// loop), `ioio_instructions: N` (an OUT to the debug port, round trip) and
    /// `create_to_first_instruction: N` (hypervisor starts creating the partition to the
    /// guest's first instruction), all exact and identical on every run.
    Hypercall {
        /// Loop iterations per measurement.
        #[arg(long, default_value_t = 10_000)]
        iterations: u32,
    },
    /// Boot Mica with its Linux root partition under QEMU: print `entry_to_root_instructions:
    /// N` (hypervisor entry to the root kernel's first instruction, instruction counting on;
    /// goal <= 2,000,000) and `root_setup_instructions: N` (the root bring-up part of it),
    /// then run the unattended smoke test without instruction counting and print
    /// `smoke_wall_seconds: S` (plain TCG on this machine).
    Root,
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
        Bench::Hypercall { iterations } => hypercall(*iterations),
        Bench::Vmbus { args } => vmbus(args),
        Bench::Root => root(),
    }
}

fn root() -> Result<()> {
    let built = images::build(false)?;
    let root = images::build_root(&built, true)?;
    tools::ensure_packages(&[Need::Qemu])?;
    // Instruction counts (the smoke script ends the run by powering off).
    let config = crate::emulate::root_qemu(
        &built,
        &root,
        images::SMOKE_ARG,
        "",
        crate::emulate::DEFAULT_QEMU_CPU,
    )
    .icount(true);
    let options = RunOptions::new(
        "bench_root",
        Duration::from_secs(crate::emulate::SMOKE_TIMEOUT_SECS),
    )
    .log_root(workspace::artifacts_dir().join("bench-logs"));
    let outcome = try_run(&config.into(), &options)?;
    let value = |name: &str| {
        bench_value(&outcome.serial, name).ok_or_else(|| {
            let kept = outcome
                .keep_logs()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|e| e.to_string());
            process::Error(format!(
                "No `{BENCH_PREFIX}{name}=<N>` line in the serial output (logs: {kept})"
            ))
        })
    };
    let to_root = value("entry_to_root_tsc")?;
    let setup = value("root_setup_tsc")?;
    let ready = value("entry_to_ready_tsc")?;
    println!("entry_to_root_instructions: {to_root}");
    println!("  boot_to_ready_instructions: {ready}");
    println!("  root_setup_instructions: {setup}");
    println!(
        "  goal: <= 2000000 ({})",
        if to_root <= 2_000_000 {
            "met"
        } else {
            "NOT met"
        }
    );
    // Wall time of the smoke run (plain TCG).
    let config = crate::emulate::root_qemu(
        &built,
        &root,
        images::SMOKE_ARG,
        "",
        crate::emulate::DEFAULT_QEMU_CPU,
    );
    let options = RunOptions::new(
        "bench_smoke",
        Duration::from_secs(crate::emulate::SMOKE_TIMEOUT_SECS),
    )
    .log_root(workspace::artifacts_dir().join("bench-logs"));
    let outcome = try_run(&config.into(), &options)?;
    if !outcome.serial.contains("MICA-SMOKE: PASS") {
        let kept = outcome.keep_logs()?;
        bail!("The smoke run did not pass (logs: {})", kept.display());
    }
    println!("smoke_wall_seconds: {:.1}", outcome.duration.as_secs_f64());
    Ok(())
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
    let measured = |name: &str| {
        bench_value(&outcome.serial, name).ok_or_else(|| {
            let kept = outcome
                .keep_logs()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|e| e.to_string());
            process::Error(format!(
                "No valid `{BENCH_PREFIX}{name}=<N>` line in the serial output (logs: {kept})"
            ))
        })
    };
    println!("boot_instructions: {}", measured("entry_to_ready_tsc")?);
    println!(
        "trampoline_instructions: {}",
        measured("entry_to_main_tsc")?
    );
    println!("image_size_bytes: {}", file_size(&built.elf)?);
    Ok(())
}

/// The value of `name` on the last `bench: ... name=N ...` line of a serial log (the line
/// may carry a prefix, e.g. a guest's `[2 bench] `, and several `key=value` pairs).
pub fn bench_value(serial: &str, name: &str) -> Option<u64> {
    serial.lines().rev().find_map(|line| {
        let (_, pairs) = line.split_once(BENCH_PREFIX)?;
        pairs.split_whitespace().find_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            if key == name {
                value.parse().ok()
            } else {
                None
            }
        })
    })
}

/// Runs the test guest with `args` under QEMU with instruction counting; returns the serial.
fn guest_run(built: &images::Images, name: &str, args: &str) -> Result<String> {
    let config = QemuConfig::kernel(&built.elf, "launch=bench")
        .module(&built.test_guest, format!("bench {args}"))
        .icount(true);
    let options = RunOptions::new(name, Duration::from_secs(300))
        .log_root(workspace::artifacts_dir().join("bench-logs"));
    let outcome = try_run(&config.into(), &options)?;
    if !outcome.succeeded() || !outcome.serial.contains("exited with status 0") {
        let kept = outcome.keep_logs()?;
        bail!(
            "The {name} run ended with {} (logs: {})",
            outcome.exit,
            kept.display()
        );
    }
    Ok(outcome.serial.clone())
}

fn hypercall(iterations: u32) -> Result<()> {
    let built = images::build(false)?;
    tools::ensure_packages(&[Need::Qemu])?;
    let value = |serial: &str, name: &str| {
        bench_value(serial, name).ok_or_else(|| {
            process::Error(format!(
                "No `{BENCH_PREFIX}{name}=<N>` line in the serial output"
            ))
        })
    };
    let per_iteration = |serial: &str, total: &str| -> Result<u64> {
        let iterations = value(serial, "iterations")?.max(1);
        Ok(value(serial, total)? / iterations)
    };
    let serial = guest_run(
        &built,
        "bench_null_hypercall",
        &format!("bench-null-hypercall {iterations}"),
    )?;
    println!(
        "null_hypercall_instructions: {}",
        per_iteration(&serial, "null_hypercall_tsc_total")?
    );
    let serial = guest_run(&built, "bench_ioio", &format!("bench-ioio {iterations}"))?;
    println!(
        "ioio_instructions: {}",
        per_iteration(&serial, "ioio_tsc_total")?
    );
    let serial = guest_run(&built, "bench_first_instruction", "first-instruction")?;
    let created = value(&serial, "partition_create_tsc")?;
    let first = value(&serial, "guest_first_tsc")?;
    println!(
        "create_to_first_instruction: {}",
        first.saturating_sub(created)
    );
    println!("iterations: {iterations}");
    Ok(())
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
    fn bench_lines_are_parsed_by_name() {
        let serial = "Mica 0.1 starting\nbench: entry_to_main_tsc=99\n\
                      bench: entry_to_ready_tsc=123456\nMICA READY\n";
        assert_eq!(bench_value(serial, "entry_to_ready_tsc"), Some(123_456));
        assert_eq!(bench_value(serial, "entry_to_main_tsc"), Some(99));
        assert_eq!(bench_value(serial, "missing"), None);
        assert_eq!(
            bench_value(
                "bench: entry_to_ready_tsc=1\nbench: entry_to_ready_tsc=2\n",
                "entry_to_ready_tsc"
            ),
            Some(2)
        );
        assert_eq!(
            bench_value("bench: entry_to_ready_tsc=abc\n", "entry_to_ready_tsc"),
            None
        );
        assert_eq!(bench_value("MICA READY\n", "entry_to_ready_tsc"), None);
    }
}
