//! Failures are reported, not hidden: the `test-hooks` image's forced page fault and panic
//! end the run with a diagnostic dump and a failure exit.

use emu_harness::{QemuConfig, run};
use emulator_tests::{QEMU_TIMEOUT, mica_test_elf};

#[test]
fn fault_hook_dumps_and_fails() {
    let outcome = run(
        "fault_hook_dumps_and_fails",
        QemuConfig::kernel(mica_test_elf(), "test=fault"),
        QEMU_TIMEOUT,
    );
    outcome
        .expect_markers(&[
            "MICA READY",
            "MICA FAULT: #PF page fault (vector=14)",
            "cr2=0x00007fffdead0000",
            "rax=",
            "page fault: not-present page on write in supervisor mode",
            "MICA EXIT: failure",
        ])
        .expect_no_marker("MICA PANIC:")
        .expect_failure();
}

#[test]
fn stack_overflow_hits_guard_page() {
    let outcome = run(
        "stack_overflow_hits_guard_page",
        QemuConfig::kernel(mica_test_elf(), "test=stack-overflow"),
        QEMU_TIMEOUT,
    );
    // The overflow faults on the unmapped guard page; the handler runs on its own IST stack,
    // so the dump is complete and names the stack.
    outcome
        .expect_markers(&[
            "MICA FAULT: #PF page fault (vector=14)",
            "stack overflow: the fault hit the guard page of the boot stack",
            "MICA EXIT: failure",
        ])
        .expect_no_marker("stack overflow hook returned")
        .expect_failure();
}

#[test]
fn release_image_ignores_test_hooks() {
    let outcome = run(
        "release_image_ignores_test_hooks",
        QemuConfig::kernel(emulator_tests::mica_elf(), "test=fault"),
        QEMU_TIMEOUT,
    );
    outcome
        .expect_markers(&[
            "test=fault ignored: this image is built without test hooks",
            "MICA EXIT: success",
        ])
        .expect_no_marker("MICA FAULT:")
        .expect_success();
}

#[test]
fn malformed_command_line_stops_cleanly() {
    let outcome = run(
        "malformed_command_line_stops_cleanly",
        QemuConfig::kernel(emulator_tests::mica_elf(), "log=loud"),
        QEMU_TIMEOUT,
    );
    outcome
        .expect_markers(&[
            "MICA BOOT ERROR: command line:",
            "log",
            "MICA EXIT: failure",
        ])
        .expect_no_marker("MICA READY")
        .expect_failure();
}

#[test]
fn panic_hook_fails() {
    let outcome = run(
        "panic_hook_fails",
        QemuConfig::kernel(mica_test_elf(), "test=panic"),
        QEMU_TIMEOUT,
    );
    outcome
        .expect_markers(&["MICA PANIC:", "MICA EXIT: failure"])
        .expect_failure();
}
