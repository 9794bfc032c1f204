//! Child partitions on AMD SVM, end to end: each scenario boots the hypervisor with the test
//! guest as boot modules and a launch list, under QEMU (`-cpu EPYC`: no NRIP-save) and under
//! Bochs `ryzen` (NRIP-save), and checks what the guests report and how each partition ended.

use emu_harness::{BochsConfig, BochsCpu, IsoSpec, QemuConfig, RunOutcome, run};
use emulator_tests::{BOCHS_TIMEOUT, QEMU_TIMEOUT, artifact_dir, mica_elf, test_guest_elf};

/// A launch list: the hypervisor command line and the guests (label, arguments).
struct Scenario {
    name: &'static str,
    cmdline: &'static str,
    guests: &'static [(&'static str, &'static str)],
}

impl Scenario {
    fn qemu(&self) -> RunOutcome {
        let mut config = QemuConfig::kernel(mica_elf(), self.cmdline).cpu("EPYC");
        for (label, args) in self.guests {
            config = config.module(test_guest_elf(), format!("{label} {args}"));
        }
        run(&format!("qemu_{}", self.name), config, QEMU_TIMEOUT)
    }

    fn bochs_ryzen(&self) -> RunOutcome {
        let mut spec = IsoSpec::new(mica_elf(), self.cmdline);
        for (label, args) in self.guests {
            spec = spec.module(test_guest_elf(), format!("{label} {args}"));
        }
        let dir = artifact_dir().join("scenario-isos");
        std::fs::create_dir_all(&dir).expect("scenario ISO folder");
        let iso = dir.join(format!("{}.iso", self.name));
        spec.write(&iso)
            .expect("grub-mkrescue builds the scenario ISO");
        run(
            &format!("bochs_ryzen_{}", self.name),
            BochsConfig::new(BochsCpu::Ryzen, iso),
            BOCHS_TIMEOUT,
        )
    }
}

const HELLO: Scenario = Scenario {
    name: "hypercall_round_trip",
    cmdline: "launch=hello",
    guests: &[("hello", "hello")],
};

fn check_hello(outcome: &RunOutcome) {
    outcome
        .expect_markers(&[
            "MICA READY",
            // 4 MiB of contiguous, aligned pool memory: two 2 MiB nested-page leaves.
            "partition 2 'hello' created: 4 MiB, args \"hello\", nested paging: 2 x 2 MiB + 0 x 4 KiB",
            "[2 hello] GUEST HELLO partition=2",
            "[2 hello] GUEST HELLO via debug-output hypercall",
            "debug-output (0xC004) returned HV_STATUS_SUCCESS",
            "NotifyLongSpinWait (0x0008, fast) returned HV_STATUS_SUCCESS",
            "[2 hello] GUEST PASS hello",
            "partition 2 'hello' stopped: exited with status 0",
            "MICA EXIT: success",
        ])
        .expect_success();
}

#[test]
fn qemu_hypercall_round_trip() {
    check_hello(&HELLO.qemu());
}

#[test]
fn bochs_ryzen_hypercall_round_trip() {
    check_hello(&HELLO.bochs_ryzen());
}

const ERRORS: Scenario = Scenario {
    name: "invalid_hypercall_inputs",
    cmdline: "launch=errors",
    guests: &[("errors", "hypercall-errors")],
};

fn check_errors(outcome: &RunOutcome) {
    outcome
        .expect_markers(&[
            "unknown-call-code: expected=HV_STATUS_INVALID_HYPERCALL_CODE actual=HV_STATUS_INVALID_HYPERCALL_CODE",
            "reserved-control-bits: expected=HV_STATUS_INVALID_HYPERCALL_INPUT actual=HV_STATUS_INVALID_HYPERCALL_INPUT",
            "misaligned-input-gpa: expected=HV_STATUS_INVALID_ALIGNMENT actual=HV_STATUS_INVALID_ALIGNMENT",
            "input-gpa-outside-ram: expected=HV_STATUS_INVALID_ALIGNMENT actual=HV_STATUS_INVALID_ALIGNMENT",
            "rep-count-on-simple-call: expected=HV_STATUS_INVALID_HYPERCALL_INPUT actual=HV_STATUS_INVALID_HYPERCALL_INPUT",
            "rep-start-beyond-count: expected=HV_STATUS_INVALID_HYPERCALL_INPUT actual=HV_STATUS_INVALID_HYPERCALL_INPUT",
            "create-partition-without-privilege: expected=HV_STATUS_ACCESS_DENIED actual=HV_STATUS_ACCESS_DENIED",
            "GUEST PASS hypercall-errors",
            "partition 2 'errors' stopped: exited with status 0",
            "MICA EXIT: success",
        ])
        .expect_no_marker("GUEST FAIL")
        .expect_success();
}

#[test]
fn qemu_invalid_hypercall_inputs_return_tlfs_status() {
    check_errors(&ERRORS.qemu());
}

#[test]
fn bochs_ryzen_invalid_hypercall_inputs_return_tlfs_status() {
    check_errors(&ERRORS.bochs_ryzen());
}

const ISOLATION: Scenario = Scenario {
    name: "isolation",
    cmdline: "launch=victim,past-ram,apic",
    guests: &[
        ("victim", "memory-pattern 30"),
        ("past-ram", "touch-outside"),
        ("apic", "touch-outside 0xfee00000"),
    ],
};

fn check_isolation(outcome: &RunOutcome) {
    outcome
        .expect_markers(&[
            "partition 3 'past-ram' stopped: Read at GPA 0x400000 outside its memory",
        ])
        .expect_markers(&["partition 4 'apic' stopped: Read at GPA 0xfee00000 outside its memory"])
        .expect_markers(&[
            "[2 victim] GUEST PASS memory-pattern",
            "partition 2 'victim' stopped: exited with status 0",
            "MICA EXIT: success",
        ])
        .expect_no_marker("GUEST FAIL")
        .expect_success();
}

#[test]
fn qemu_child_outside_its_memory_is_stopped_others_intact() {
    check_isolation(&ISOLATION.qemu());
}

#[test]
fn bochs_ryzen_child_outside_its_memory_is_stopped_others_intact() {
    check_isolation(&ISOLATION.bochs_ryzen());
}

const TRIPLE_FAULT: Scenario = Scenario {
    name: "triple_fault",
    cmdline: "launch=victim,crasher",
    guests: &[("victim", "memory-pattern 30"), ("crasher", "triple-fault")],
};

fn check_triple_fault(outcome: &RunOutcome) {
    outcome
        .expect_markers(&["partition 3 'crasher' stopped: triple fault"])
        .expect_markers(&[
            "[2 victim] GUEST PASS memory-pattern",
            "partition 2 'victim' stopped: exited with status 0",
            "MICA EXIT: success",
        ])
        .expect_success();
}

#[test]
fn qemu_triple_faulting_child_stops_alone() {
    check_triple_fault(&TRIPLE_FAULT.qemu());
}

#[test]
fn bochs_ryzen_triple_faulting_child_stops_alone() {
    check_triple_fault(&TRIPLE_FAULT.bochs_ryzen());
}

const SPINNER: Scenario = Scenario {
    name: "spinner",
    cmdline: "launch=spinner,hello wait=hello",
    guests: &[("spinner", "spin"), ("hello", "hello")],
};

fn check_spinner(outcome: &RunOutcome) {
    // The spinner starts first and never yields: only timer preemption lets hello run.
    outcome
        .expect_markers(&[
            "[2 spinner] GUEST SPIN",
            "[3 hello] GUEST PASS hello",
            "partition 3 'hello' stopped: exited with status 0",
            "partition 2 'spinner' stopped: stopped by request",
            "MICA EXIT: success",
        ])
        .expect_success();
}

#[test]
fn qemu_spinning_child_does_not_starve_another() {
    check_spinner(&SPINNER.qemu());
}

#[test]
fn bochs_ryzen_spinning_child_does_not_starve_another() {
    check_spinner(&SPINNER.bochs_ryzen());
}

const FUZZ: Scenario = Scenario {
    name: "hostile_hypercalls",
    cmdline: "launch=fuzz,victim",
    guests: &[
        ("fuzz", "fuzz-hypercalls 100000 20261121"),
        ("victim", "memory-pattern 30"),
    ],
};

fn check_fuzz(outcome: &RunOutcome) {
    outcome
        .expect_markers(&["fuzz-hypercalls: 100000/100000 calls"])
        .expect_markers(&[
            "[2 fuzz] GUEST PASS fuzz-hypercalls",
            "partition 2 'fuzz' stopped: exited with status 0",
        ])
        .expect_markers(&["[3 victim] GUEST PASS memory-pattern"])
        .expect_markers(&["MICA EXIT: success"])
        .expect_no_marker("GUEST FAIL")
        .expect_no_marker("MICA FAULT")
        .expect_success();
}

#[test]
fn qemu_hostile_guest_100k_random_hypercalls() {
    check_fuzz(&FUZZ.qemu());
}

#[test]
fn bochs_ryzen_hostile_guest_100k_random_hypercalls() {
    check_fuzz(&FUZZ.bochs_ryzen());
}

const FPU: Scenario = Scenario {
    name: "fpu_state",
    cmdline: "launch=f1,f2",
    guests: &[("f1", "fpu-check"), ("f2", "fpu-check")],
};

fn check_fpu(outcome: &RunOutcome) {
    // Both load their own XMM pattern before either finishes spinning: they time-share the
    // CPU's SSE registers, and each still finds its own values.
    outcome
        .expect_markers(&[
            "[2 f1] fpu-check: XMM0-15 loaded",
            "[3 f2] GUEST PASS fpu-check",
        ])
        .expect_markers(&[
            "[3 f2] fpu-check: XMM0-15 loaded",
            "[2 f1] GUEST PASS fpu-check",
        ])
        .expect_markers(&["MICA EXIT: success"])
        .expect_no_marker("GUEST FAIL")
        .expect_success();
}

#[test]
fn qemu_fpu_state_is_per_vcpu() {
    check_fpu(&FPU.qemu());
}

#[test]
fn bochs_ryzen_fpu_state_is_per_vcpu() {
    check_fpu(&FPU.bochs_ryzen());
}
