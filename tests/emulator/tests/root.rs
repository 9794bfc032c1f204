//! Mica with its Linux root partition, end to end under QEMU (`-machine pc -cpu EPYC`, TCG):
//! Debian's kernel boots as the root and reaches user space, and the root's smoke script
//! (`root-partition/initramfs/mica-smoke`) runs `hvctl info`, `hvctl selftest` (an
//! unprivileged process cannot reach the doorbell; root cannot read hypervisor memory or
//! the child pool), creates a test guest from a TOML file, runs it, reads its console,
//! reaps a faulting guest, and prints `MICA-SMOKE: PASS`.
//!
//! Both serial ports go to one log: COM1 carries the hypervisor, COM2 the root's console.

use std::time::Duration;

use emu_harness::{QemuConfig, RunOutcome, run};
use emulator_tests::{artifact, mica_elf};

/// A root boot plus the smoke script takes about half a minute under TCG here; the limit
/// leaves room for slow CI machines.
const ROOT_TIMEOUT: Duration = Duration::from_secs(420);

fn root_files() -> (std::path::PathBuf, std::path::PathBuf) {
    (artifact("root/vmlinuz"), artifact("root/initramfs.cpio"))
}

fn check_smoke(outcome: &RunOutcome) {
    outcome
        .expect_markers(&[
            "MICA READY",
            "starting the root partition",
            "bench: entry_to_root_tsc=",
            "Run /init as init process",
            // hvctl info, as the root sees the hypervisor.
            "Mica 0.1 (build 1)",
            "backend:    AMD SVM with nested paging",
            // The isolation checks, run from root user space.
            "selftest: unprivileged-doorbell: PASS",
            "selftest: unprivileged-devmem: PASS",
            "selftest: root-protected 0x100000 (start of 0x100000-",
            // A test guest created from a TOML file runs, prints and is reaped.
            "created hello (ID 2)",
            "GUEST PASS hello",
            "partition 2 stopped: exited with status 0",
            "hello: exited with status 0",
            // A faulting guest is stopped; the root and the hypervisor go on.
            "partition 3 stopped: Read at GPA 0x400000 outside its memory",
            "faulty: access to 0x400000, outside its memory",
            "MICA-SMOKE: PASS",
            // The smoke script reports through the hypervisor log too (hvctl log).
            "[1 root] MICA-SMOKE: PASS",
        ])
        .expect_no_marker("MICA-SMOKE: FAIL")
        .expect_no_marker("MICA PANIC")
        .expect_no_marker("root partition stopped");
}

#[test]
fn linux_root_smoke_via_multiboot1() {
    let (kernel, initramfs) = root_files();
    let config = QemuConfig::kernel(mica_elf(), "")
        .cpu("EPYC")
        .memory_mib(1024)
        .two_serial_ports(true)
        .module(kernel, "linux mica.smoke")
        .module(initramfs, "initrd");
    check_smoke(&run("qemu_linux_root_smoke", config, ROOT_TIMEOUT));
}

#[test]
fn smoke_iso_passes() {
    let config = QemuConfig::iso(artifact("mica-smoke.iso"))
        .cpu("EPYC")
        .memory_mib(1024)
        .two_serial_ports(true);
    check_smoke(&run("qemu_smoke_iso", config, ROOT_TIMEOUT));
}
