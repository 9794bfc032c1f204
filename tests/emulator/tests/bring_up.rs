//! The hypervisor boots on every supported loader and CPU model, reports the virtualization
//! features it found, reaches READY and exits with success.

use emu_harness::{BochsConfig, BochsCpu, QemuConfig, run};
use emulator_tests::{BOCHS_TIMEOUT, QEMU_TIMEOUT, mica_elf, mica_iso};

/// What every successful bring-up prints after its feature lines.
const READY_AND_SUCCESS: [&str; 2] = ["MICA READY", "MICA EXIT: success"];

#[test]
fn qemu_kernel_multiboot1_reports_svm_npt() {
    let outcome = run(
        "qemu_kernel_multiboot1_reports_svm_npt",
        QemuConfig::kernel(mica_elf(), "").cpu("EPYC"),
        QEMU_TIMEOUT,
    );
    outcome
        .expect_markers(&[
            "starting (loader=Multiboot1)",
            "cpu: vendor=AMD",
            "svm: supported=yes",
            "npt=yes",
            "nrip_save=no",
        ])
        .expect_markers(&READY_AND_SUCCESS)
        .expect_success();
}

#[test]
fn qemu_iso_multiboot2_reports_svm_npt() {
    let outcome = run(
        "qemu_iso_multiboot2_reports_svm_npt",
        QemuConfig::iso(mica_iso()).cpu("EPYC"),
        QEMU_TIMEOUT,
    );
    outcome
        .expect_markers(&[
            "starting (loader=Multiboot2)",
            "cpu: vendor=AMD",
            "svm: supported=yes",
            "npt=yes",
            "nrip_save=no",
        ])
        .expect_markers(&READY_AND_SUCCESS)
        .expect_success();
}

#[test]
fn bochs_skylake_reports_vmx_ept() {
    let outcome = run(
        "bochs_skylake_reports_vmx_ept",
        BochsConfig::new(BochsCpu::CoreI7SkylakeX, mica_iso()),
        BOCHS_TIMEOUT,
    );
    outcome
        .expect_markers(&[
            "starting (loader=Multiboot2)",
            "vmx: supported=yes",
            "ept=yes",
            "vpid=yes",
            "unrestricted_guest=yes",
        ])
        .expect_markers(&READY_AND_SUCCESS)
        .expect_success();
}

#[test]
fn bochs_ryzen_reports_svm_npt_nrip() {
    let outcome = run(
        "bochs_ryzen_reports_svm_npt_nrip",
        BochsConfig::new(BochsCpu::Ryzen, mica_iso()),
        BOCHS_TIMEOUT,
    );
    outcome
        .expect_markers(&[
            "starting (loader=Multiboot2)",
            "cpu: vendor=AMD",
            "svm: supported=yes",
            "npt=yes",
            "nrip_save=yes",
        ])
        .expect_markers(&READY_AND_SUCCESS)
        .expect_success();
}
