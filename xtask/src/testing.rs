//! `cargo xtask test`: host tests, loom models, fuzz smoke, then the emulator tests.

use clap::Args;

use crate::fuzz::{self, FuzzArgs};
use crate::images;
use crate::process::{self, Result, io_err};
use crate::tools::{self, Need};
use crate::workspace::{self, HYPERVISOR_PACKAGE};

/// Package of the end-to-end tests.
pub const EMULATOR_TESTS_PACKAGE: &str = "emulator_tests";

/// Arguments of `cargo xtask test`. With neither --host nor --emulator, both run, host first.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// Host phase: `cargo test` of every crate but the hypervisor and the emulator tests, then
    /// the loom models, then a 20 s fuzz smoke run per fuzz target.
    #[arg(long)]
    pub host: bool,
    /// Emulator phase: build the images, boot them in QEMU and Bochs (`emulator_tests`).
    #[arg(long)]
    pub emulator: bool,
    /// Run only tests whose name contains STR (passed to the test binaries); the loom and
    /// fuzz smoke steps are skipped then.
    #[arg(long, value_name = "STR")]
    pub filter: Option<String>,
}

/// Runs the selected phases, stopping at the first failure.
pub fn run(args: &TestArgs) -> Result<()> {
    let both = !args.host && !args.emulator;
    let filter = args.filter.as_deref();
    if both || args.host {
        host_tests(filter)?;
        if filter.is_none() {
            loom_tests()?;
            fuzz_smoke()?;
        } else {
            println!("note: --filter given: loom and fuzz smoke steps skipped");
        }
    }
    if both || args.emulator {
        let built = images::build(false)?;
        images::build_root(&built, true)?;
        emulator_tests(filter)?;
    }
    Ok(())
}

fn with_filter(command: &mut std::process::Command, filter: Option<&str>) {
    if let Some(filter) = filter {
        command.args(["--", filter]);
    }
}

/// `cargo test --workspace --exclude mica --exclude emulator_tests`.
pub fn host_tests(filter: Option<&str>) -> Result<()> {
    let mut command = process::cargo();
    command.args([
        "test",
        "--workspace",
        "--exclude",
        HYPERVISOR_PACKAGE,
        "--exclude",
        EMULATOR_TESTS_PACKAGE,
    ]);
    with_filter(&mut command, filter);
    process::run(&mut command)
}

/// The loom models of every crate declaring `[target.'cfg(loom)'.dependencies]`, in release
/// mode, in `target/loom` (other RUSTFLAGS would otherwise invalidate the normal build).
pub fn loom_tests() -> Result<()> {
    let packages = workspace::loom_packages()?;
    if packages.is_empty() {
        println!(
            "note: no crate declares [target.'cfg(loom)'.dependencies]; no loom models to run"
        );
        return Ok(());
    }
    let loom_dir = workspace::target_dir().join("loom");
    for package in packages {
        let mut command = process::cargo();
        command
            .env("RUSTFLAGS", "--cfg loom")
            .args(["test", "-p", &package, "--release", "--target-dir"])
            .arg(&loom_dir)
            .args(["--", "loom"]);
        process::run(&mut command)?;
    }
    Ok(())
}

/// Every fuzz target for 20 s.
pub fn fuzz_smoke() -> Result<()> {
    fuzz::run(&FuzzArgs::smoke())
}

/// `cargo test -p emulator_tests` against the images in `target/mica`.
pub fn emulator_tests(filter: Option<&str>) -> Result<()> {
    tools::ensure_packages(&[Need::Qemu, Need::Bochs])?;
    let artifacts = workspace::artifacts_dir();
    let logs = artifacts.join("test-logs");
    std::fs::create_dir_all(&logs).map_err(io_err("create", &logs))?;
    let mut command = process::cargo();
    command
        .env("MICA_ARTIFACTS", &artifacts)
        .env("MICA_LOG_DIR", &logs)
        // Every boot is independent: report all of them, not just the first failing binary.
        .args(["test", "-p", EMULATOR_TESTS_PACKAGE, "--no-fail-fast"]);
    with_filter(&mut command, filter);
    let result = process::run(&mut command);
    if result.is_err() {
        eprintln!(
            "note: logs of failed emulator tests are in {}",
            logs.display()
        );
    }
    result
}
