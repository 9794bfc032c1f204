//! The harness against the real emulators, without the hypervisor: GRUB-only ISOs whose menu
//! entry prints the markers and ends the run the way Mica does (debug-exit port under QEMU,
//! the `Shutdown` port under Bochs). When these pass and the bring-up tests fail, the fault is
//! in the hypervisor, not in the harness or the emulator setup.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use emu_harness::{BochsConfig, BochsCpu, Exit, QemuConfig, RunOptions, run, try_run};
use emulator_tests::{BOCHS_TIMEOUT, QEMU_TIMEOUT};

/// GRUB script lines that write `Shutdown` to Bochs' shutdown port 0x8900.
fn bochs_shutdown() -> String {
    "Shutdown"
        .bytes()
        .map(|b| format!("  outb 0x8900 {b:#04x}\n"))
        .collect()
}

/// Makes a GRUB rescue ISO whose only entry runs `body` with the console on the serial port.
fn grub_iso(name: &str, body: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("mica-selfcheck-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let grub = dir.join("root").join("boot").join("grub");
    std::fs::create_dir_all(&grub).expect("staging folder");
    let cfg = format!(
        "set timeout=0\nserial --unit=0 --speed=115200\n\
         terminal_input serial console\nterminal_output serial console\n\
         menuentry \"self-check\" {{\n{body}}}\n"
    );
    std::fs::write(grub.join("grub.cfg"), cfg).expect("grub.cfg");
    let iso = dir.join("self-check.iso");
    let out = Command::new("grub-mkrescue")
        .arg("-o")
        .arg(&iso)
        .arg(dir.join("root"))
        .output()
        .expect("grub-mkrescue runs (`cargo xtask test` installs it)");
    assert!(
        out.status.success(),
        "grub-mkrescue failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (iso, dir)
}

fn cleanup(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn harness_reads_qemu_debug_exit_success() {
    let (iso, dir) = grub_iso(
        "qemu_ok",
        "  echo \"MICA READY\"\n  echo \"MICA EXIT: success\"\n  outb 0xf4 0x10\n  halt\n",
    );
    let outcome = run(
        "harness_reads_qemu_debug_exit_success",
        QemuConfig::iso(&iso),
        QEMU_TIMEOUT,
    );
    assert_eq!(outcome.exit, Exit::Success);
    outcome
        .expect_markers(&["MICA READY", "MICA EXIT: success"])
        .expect_success();
    drop(outcome);
    cleanup(&dir);
}

#[test]
fn harness_reads_qemu_debug_exit_failure_and_timeout() {
    let (iso, dir) = grub_iso(
        "qemu_fail",
        "  echo \"MICA PANIC: self-check\"\n  echo \"MICA EXIT: failure\"\n  outb 0xf4 0x11\n  halt\n",
    );
    let outcome = run(
        "harness_reads_qemu_debug_exit_failure",
        QemuConfig::iso(&iso),
        QEMU_TIMEOUT,
    );
    assert_eq!(outcome.exit, Exit::Failure);
    outcome.expect_markers(&["MICA PANIC:"]).expect_failure();
    drop(outcome);
    cleanup(&dir);

    // An image that never ends is killed at the timeout.
    let (iso, dir) = grub_iso("qemu_hang", "  echo \"hanging\"\n  sleep 100000\n");
    let options = RunOptions::new("harness_qemu_timeout", Duration::from_secs(5));
    let outcome = try_run(&QemuConfig::iso(&iso).into(), &options).expect("QEMU starts");
    assert_eq!(outcome.exit, Exit::Timeout);
    assert!(!outcome.succeeded() && !outcome.reported_failure());
    drop(outcome);
    cleanup(&dir);
}

#[test]
fn harness_reads_bochs_verdict_from_serial() {
    let body = format!(
        "  echo \"MICA READY\"\n  echo \"MICA EXIT: success\"\n{}  halt\n",
        bochs_shutdown()
    );
    let (iso, dir) = grub_iso("bochs_ok", &body);
    let outcome = run(
        "harness_reads_bochs_verdict_from_serial",
        BochsConfig::new(BochsCpu::CoreI7SkylakeX, &iso),
        BOCHS_TIMEOUT,
    );
    assert_eq!(outcome.exit, Exit::BochsFinished);
    outcome
        .expect_markers(&["MICA READY", "MICA EXIT: success"])
        .expect_success();
    drop(outcome);
    cleanup(&dir);
}
