//! The scenarios (bare metal only).

use core::fmt;
use core::hint::spin_loop;
use core::ops::Range;

use ::hypercall::control::{HypercallControl, rep_call, simple_call};
use ::hypercall::{
    Block, CallCode, GuestMemoryError, HvStatus, HypercallError, PartitionPrivileges,
};
use guest_rt::hypercall::{self as hc, HypercallResult, pages};
use guest_rt::mapping::{FreeFrames, MapError, map_identity};
use guest_rt::{Boot, EXIT_FAIL, EXIT_PASS, cpu, exit, gprintln};

use crate::command::Command;
use crate::fuzz::{Generator, pattern};

/// Called by the runtime with the checked start info.
pub fn main(boot: &Boot<'_>) -> ! {
    let command = match Command::parse(boot.info.args) {
        Ok(command) => command,
        Err(error) => fail("args", format_args!("{error}")),
    };
    let name = command.name();
    let result = match command {
        Command::Hello => hello(boot),
        Command::HypercallErrors => hypercall_errors(boot),
        Command::MemoryPattern { passes } => memory_pattern(boot, passes),
        Command::TouchOutside { addr } => touch_outside(boot, addr),
        Command::TripleFault => triple_fault(),
        Command::Spin => spin(),
        Command::FuzzHypercalls { count, seed } => fuzz_hypercalls(boot, count, seed),
        Command::BenchNullHypercall { iterations } => bench_null_hypercall(iterations),
        Command::BenchIoio { iterations } => bench_ioio(iterations),
        Command::FirstInstruction => first_instruction(boot),
        Command::FpuCheck { iterations } => fpu_check(boot, iterations),
    };
    match result {
        Ok(()) => {
            gprintln!("GUEST PASS {name}");
            exit(EXIT_PASS)
        }
        Err(reason) => fail(name, format_args!("{reason}")),
    }
}

/// Why a scenario failed (printed after `GUEST FAIL <name>: `).
struct Failure(&'static str, Detail);

/// Values that go with a failure message.
enum Detail {
    None,
    Status(HypercallResult),
    Word {
        addr: u64,
        found: u64,
        expected: u64,
    },
    Map(MapError),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)?;
        match &self.1 {
            Detail::None => Ok(()),
            Detail::Status(result) => write!(f, " ({result}, rax={:#x})", result.0),
            Detail::Word {
                addr,
                found,
                expected,
            } => write!(
                f,
                " (word at {addr:#x} is {found:#x}, expected {expected:#x})"
            ),
            Detail::Map(error) => write!(f, " ({error})"),
        }
    }
}

type Outcome = Result<(), Failure>;

fn fail(name: &str, reason: fmt::Arguments<'_>) -> ! {
    gprintln!("GUEST FAIL {name}: {reason}");
    exit(EXIT_FAIL)
}

/// A result value must carry a known status and nothing in undefined bits.
fn check_well_formed(result: HypercallResult) -> Outcome {
    if result.status().is_err() {
        return Err(Failure("unknown status", Detail::Status(result)));
    }
    if result.undefined_bits() != 0 {
        return Err(Failure("undefined result bits set", Detail::Status(result)));
    }
    Ok(())
}

fn hello(boot: &Boot<'_>) -> Outcome {
    gprintln!(
        "GUEST HELLO partition={} vp={} ram={:#x}",
        boot.info.partition_id,
        boot.info.vp_index,
        boot.info.ram_size
    );
    let result = pages().debug_output("GUEST HELLO via debug-output hypercall\n");
    gprintln!("hello: debug-output (0xC004) returned {result}");
    check_well_formed(result)?;
    if !result.is_success() {
        return Err(Failure("debug-output call failed", Detail::Status(result)));
    }
    let result = hc::fast(CallCode::NotifyLongSpinWait.raw(), 1, 0);
    gprintln!("hello: NotifyLongSpinWait (0x0008, fast) returned {result}");
    check_well_formed(result)?;
    if !result.is_success() {
        return Err(Failure("NotifyLongSpinWait failed", Detail::Status(result)));
    }
    Ok(())
}

/// A call code Mica does not implement (0 is reserved in the TLFS).
const UNKNOWN_CODE: u16 = 0x0000;
const _: () = assert!(CallCode::from_raw(UNKNOWN_CODE).is_none());
// CreatePartition must stay beyond a child's default privileges for the access case.
const _: () =
    assert!(!PartitionPrivileges::CHILD_DEFAULT.contains(PartitionPrivileges::CREATE_PARTITIONS));

fn hypercall_errors(boot: &Boot<'_>) -> Outcome {
    let spin = CallCode::NotifyLongSpinWait.raw();
    let mut pages = pages();
    pages.input.0.fill(0);
    let input = pages.input.gpa();
    // The status the hypercall crate gives a parameter block outside the caller's RAM
    // (HV_STATUS_INVALID_ALIGNMENT: the TLFS code for "outside the GPA space").
    let outside_ram = HypercallError::Memory {
        block: Block::Input,
        error: GuestMemoryError::NotRam {
            gpa: boot.info.ram_size,
            len: 8,
        },
    }
    .status();
    let rep_on_simple = HypercallControl {
        call_code: spin,
        fast: true,
        variable_header_qwords: 0,
        nested: false,
        rep_count: 1,
        rep_start: 0,
    }
    .to_raw();

    let cases: [(&str, HvStatus, HypercallResult); 8] = [
        (
            "unknown-call-code",
            HvStatus::InvalidHypercallCode,
            hc::fast(UNKNOWN_CODE, 0, 0),
        ),
        (
            "reserved-control-bits",
            HvStatus::InvalidHypercallInput,
            // SAFETY: a fast call: no memory block.
            unsafe { hc::raw(simple_call(spin, true) | (1 << 27), 0, 0) },
        ),
        (
            "misaligned-input-gpa",
            HvStatus::InvalidAlignment,
            pages.call_with_input(simple_call(spin, false), input + 4),
        ),
        (
            "input-gpa-outside-ram",
            outside_ram,
            pages.call_with_input(simple_call(spin, false), boot.info.ram_size),
        ),
        (
            "rep-count-on-simple-call",
            HvStatus::InvalidHypercallInput,
            // SAFETY: a fast call: no memory block.
            unsafe { hc::raw(rep_on_simple, 0, 0) },
        ),
        (
            "rep-start-beyond-count",
            HvStatus::InvalidHypercallInput,
            pages.call(rep_call(CallCode::GetVpRegisters.raw(), 1, 2)),
        ),
        (
            "fast-bit-on-memory-only-call",
            HvStatus::InvalidHypercallInput,
            hc::fast(CallCode::CreatePartition.raw(), 0, 0),
        ),
        (
            "create-partition-without-privilege",
            HvStatus::AccessDenied,
            pages.simple(CallCode::CreatePartition.raw()),
        ),
    ];
    let mut mismatches = 0;
    for (case, expected, actual) in cases {
        let ok = actual.status() == Ok(expected) && actual.undefined_bits() == 0;
        mismatches += usize::from(!ok);
        gprintln!(
            "hypercall-errors: {case}: expected={} actual={actual} rax={:#x} {}",
            expected.tlfs_name(),
            actual.0,
            if ok { "ok" } else { "MISMATCH" }
        );
    }
    if mismatches == 0 {
        Ok(())
    } else {
        Err(Failure("a case returned the wrong status", Detail::None))
    }
}

/// The free RAM above the image as 8-byte words.
fn free_words(boot: &Boot<'_>) -> Range<u64> {
    boot.info.free.start.next_multiple_of(8)..(boot.info.free.end & !7)
}

fn word_ptr(addr: u64) -> *mut u64 {
    core::ptr::with_exposed_provenance_mut(addr as usize)
}

/// Writes the partition's pattern over the free RAM.
fn fill_pattern(boot: &Boot<'_>) {
    let id = boot.info.partition_id;
    for addr in free_words(boot).step_by(8) {
        // SAFETY: free RAM per the boot convention: identity-mapped, writable, and neither
        // the image, the stack nor the page tables; no Rust object lives there.
        unsafe { word_ptr(addr).write_volatile(pattern(id, addr)) };
    }
}

/// Checks the pattern; the first wrong word is the error.
fn verify_pattern(boot: &Boot<'_>) -> Outcome {
    let id = boot.info.partition_id;
    for addr in free_words(boot).step_by(8) {
        // SAFETY: as in `fill_pattern`.
        let found = unsafe { word_ptr(addr).read_volatile() };
        let expected = pattern(id, addr);
        if found != expected {
            return Err(Failure(
                "free RAM was modified",
                Detail::Word {
                    addr,
                    found,
                    expected,
                },
            ));
        }
    }
    Ok(())
}

fn memory_pattern(boot: &Boot<'_>, passes: u64) -> Outcome {
    let words = free_words(boot);
    gprintln!(
        "memory-pattern: partition={} filling {:#x}..{:#x}",
        boot.info.partition_id,
        words.start,
        words.end
    );
    fill_pattern(boot);
    let every = (passes / 10).max(1);
    for pass in 1..=passes {
        verify_pattern(boot)?;
        if pass % every == 0 || pass == passes {
            gprintln!("memory-pattern: pass {pass}/{passes} intact");
        }
    }
    Ok(())
}

fn touch_outside(boot: &Boot<'_>, addr: Option<u64>) -> Outcome {
    let addr = addr.unwrap_or(boot.info.ram_size);
    if addr < boot.info.ram_size {
        return Err(Failure(
            "the address is inside the guest's own RAM",
            Detail::None,
        ));
    }
    let cr3 = cpu::read_cr3() & 0x000F_FFFF_FFFF_F000;
    if cr3 != boot.info.page_tables {
        return Err(Failure("CR3 is not the loader's page tables", Detail::None));
    }
    // Up to three new tables come from the top of the free RAM.
    let free_end = boot.info.free.end;
    // SAFETY: the top 4 pages of the free RAM (identity-mapped, writable, unused by
    // anything: this scenario does not use free RAM otherwise).
    let mut frames = unsafe { FreeFrames::new(free_end.saturating_sub(4 * 4096), free_end) };
    // SAFETY: `cr3` is the active root built by the loader, whose tables all lie in RAM;
    // `addr` is beyond RAM, so the new page aliases nothing.
    let page = unsafe { map_identity(cr3, addr, cpu::phys_addr_bits(), &mut frames) }
        .map_err(|error| Failure("cannot map the address", Detail::Map(error)))?;
    gprintln!("touch-outside: mapped {page:#x}; reading {addr:#x}");
    let target = core::ptr::with_exposed_provenance_mut::<u8>(addr as usize);
    // SAFETY: the page is mapped (just above); it is not RAM of this guest, so no Rust
    // object lives there. The hypervisor is expected to stop the guest here.
    let value = unsafe { target.read_volatile() };
    gprintln!("touch-outside: read {value:#x}; writing {addr:#x}");
    // SAFETY: as for the read.
    unsafe { target.write_volatile(!value) };
    Err(Failure("still running", Detail::None))
}

fn triple_fault() -> Outcome {
    gprintln!("GUEST TRIPLE-FAULT: empty IDT, then int3");
    cpu::triple_fault()
}

/// Loads the low quadword of XMM0-XMM15 with `values`.
fn load_xmm(values: &[u64; 16]) {
    // SAFETY: only writes XMM registers, which nothing else in this soft-float guest uses;
    // `values` is a valid array of 16 quadwords (the pointer is read, not retained).
    unsafe {
        core::arch::asm!(
            "movq xmm0, [{p}]", "movq xmm1, [{p} + 8]", "movq xmm2, [{p} + 16]",
            "movq xmm3, [{p} + 24]", "movq xmm4, [{p} + 32]", "movq xmm5, [{p} + 40]",
            "movq xmm6, [{p} + 48]", "movq xmm7, [{p} + 56]", "movq xmm8, [{p} + 64]",
            "movq xmm9, [{p} + 72]", "movq xmm10, [{p} + 80]", "movq xmm11, [{p} + 88]",
            "movq xmm12, [{p} + 96]", "movq xmm13, [{p} + 104]", "movq xmm14, [{p} + 112]",
            "movq xmm15, [{p} + 120]",
            p = in(reg) values.as_ptr(),
            options(nostack, readonly),
        );
    }
}

/// Reads the low quadword of XMM0-XMM15.
fn store_xmm() -> [u64; 16] {
    let mut values = [0u64; 16];
    // SAFETY: only reads XMM registers and writes the 128 bytes of `values`.
    unsafe {
        core::arch::asm!(
            "movq [{p}], xmm0", "movq [{p} + 8], xmm1", "movq [{p} + 16], xmm2",
            "movq [{p} + 24], xmm3", "movq [{p} + 32], xmm4", "movq [{p} + 40], xmm5",
            "movq [{p} + 48], xmm6", "movq [{p} + 56], xmm7", "movq [{p} + 64], xmm8",
            "movq [{p} + 72], xmm9", "movq [{p} + 80], xmm10", "movq [{p} + 88], xmm11",
            "movq [{p} + 96], xmm12", "movq [{p} + 104], xmm13", "movq [{p} + 112], xmm14",
            "movq [{p} + 120], xmm15",
            p = in(reg) values.as_mut_ptr(),
            options(nostack),
        );
    }
    values
}

/// SSE state survives preemption by other partitions: each partition fills XMM0-15 with
/// its own pattern, spins through several time slices, and checks the registers.
fn fpu_check(boot: &Boot<'_>, iterations: u64) -> Outcome {
    let id = boot.info.partition_id;
    let mut expected = [0u64; 16];
    for (i, slot) in expected.iter_mut().enumerate() {
        *slot = id
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(i as u64 * 0x0101_0101);
    }
    load_xmm(&expected);
    gprintln!("fpu-check: XMM0-15 loaded for partition {id}; spinning {iterations} iterations");
    for _ in 0..iterations {
        spin_loop();
    }
    let found = store_xmm();
    for (i, (&f, &e)) in found.iter().zip(&expected).enumerate() {
        if f != e {
            gprintln!("fpu-check: XMM{i} = {f:#018x}, expected {e:#018x}");
            return Err(Failure(
                "SSE registers changed while preempted",
                Detail::None,
            ));
        }
    }
    Ok(())
}

fn spin() -> Outcome {
    gprintln!("GUEST SPIN: spinning forever");
    loop {
        spin_loop();
    }
}

fn fuzz_hypercalls(boot: &Boot<'_>, count: u64, seed: u64) -> Outcome {
    gprintln!(
        "fuzz-hypercalls: {count} calls, seed {seed:#x}; filling free RAM to detect stray writes"
    );
    fill_pattern(boot);
    // Without the Hyper-V CPUID leaves, assume every privilege (the safe side).
    let privileges = cpu::hv_privileges().map_or(
        PartitionPrivileges::all(),
        PartitionPrivileges::from_bits_retain,
    );
    gprintln!("fuzz-hypercalls: privileges {:#x}", privileges.bits());
    let mut pages = pages();
    let mut generator = Generator::new(
        seed,
        boot.info.ram_size,
        pages.input.gpa(),
        pages.output.gpa(),
        privileges,
    );
    let mut successes = 0u64;
    for i in 1..=count {
        for chunk in pages.input.0.chunks_exact_mut(8) {
            chunk.copy_from_slice(&generator.rng().next_u64().to_le_bytes());
        }
        let call = generator.next_call();
        // SAFETY: `Generator` moves every output GPA inside RAM into the output page
        // (held by `pages` and not otherwise borrowed); see `fuzz`'s module documentation.
        let result = unsafe { hc::raw(call.rcx, call.rdx, call.r8) };
        check_well_formed(result).inspect_err(|_| {
            gprintln!(
                "fuzz-hypercalls: call {i}: rcx={:#x} rdx={:#x} r8={:#x}",
                call.rcx,
                call.rdx,
                call.r8
            );
        })?;
        if result.reps_completed() > call.rep_count() {
            return Err(Failure(
                "more reps completed than requested",
                Detail::Status(result),
            ));
        }
        successes += u64::from(result.is_success());
        if i % 10_000 == 0 {
            gprintln!("fuzz-hypercalls: {i}/{count} calls, {successes} succeeded");
        }
    }
    verify_pattern(boot)?;
    gprintln!("fuzz-hypercalls: done, {successes} of {count} succeeded, free RAM intact");
    Ok(())
}

fn bench_null_hypercall(iterations: u64) -> Outcome {
    let code = CallCode::NotifyLongSpinWait.raw();
    let mut failures = 0u64;
    let start = cpu::rdtsc();
    for _ in 0..iterations {
        failures += u64::from(!hc::fast(code, 0, 0).is_success());
    }
    let total = cpu::rdtsc().wrapping_sub(start);
    gprintln!("bench: null_hypercall_tsc_total={total} iterations={iterations}");
    if failures == 0 {
        Ok(())
    } else {
        Err(Failure(
            "some NotifyLongSpinWait calls failed",
            Detail::None,
        ))
    }
}

/// NUL bytes to the console port: a full I/O exit each, and the console ignores NULs.
fn bench_ioio(iterations: u64) -> Outcome {
    let start = cpu::rdtsc();
    for _ in 0..iterations {
        cpu::outb(guest_rt::CONSOLE_PORT, 0);
    }
    let total = cpu::rdtsc().wrapping_sub(start);
    gprintln!("bench: ioio_tsc_total={total} iterations={iterations}");
    Ok(())
}

fn first_instruction(boot: &Boot<'_>) -> Outcome {
    gprintln!("bench: guest_first_tsc={}", boot.entry_tsc);
    Ok(())
}
