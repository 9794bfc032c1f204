//! Random hypercall inputs for `fuzz-hypercalls`, and the rules that keep the fuzzing guest
//! alive and intact.
//!
//! # Not stopping or corrupting itself
//! - **No I/O at all**: the fuzzer only issues hypercalls, so it never writes the exit port
//!   (0xF4) or any port that stops the partition.
//! - **No calls that could act on the caller's own state** ([`SELF_AFFECTING`]): the
//!   list holds the calls that could delete, stop, finalize or re-map the caller, change
//!   its VP registers or address space, or print to its console (random console text could
//!   fake a `GUEST PASS` line). After the random control word is built, a code on that list
//!   is replaced by `HvCallNotifyLongSpinWait` (0x0008, advisory, harmless), keeping every
//!   other bit, **unless** it is a call Mica implements and the guest lacks the privilege
//!   that call needs (per the `hypercall` crate's call table): then Mica must refuse it
//!   with `HV_STATUS_ACCESS_DENIED` before acting, and sending it tests exactly that. The
//!   guest learns its privileges from CPUID 0x4000_0003; without that leaf it assumes it
//!   holds them all, so every listed code is replaced. Codes Mica does not implement are
//!   sent as they are, except the listed ones; when Mica implements another call that acts
//!   on its caller, add it here.
//! - **Outputs only into the scratch page**: an output GPA (R8) that lands inside the
//!   guest's RAM is moved into the scratch output page (same offset in the page), so a call
//!   that does write output cannot overwrite the guest's image, stack or tables. Input
//!   GPAs (RDX) stay anywhere: the hypervisor only reads them, and the guest checks after
//!   the run that its free RAM (filled with a pattern) is unchanged.

use guest_rt::rng::XorShift64;
use hypercall::call::PrivilegeRule;
use hypercall::control::{HypercallControl, RESERVED_INPUT_BITS};
use hypercall::{CallCode, PartitionPrivileges};

/// `HvCallNotifyLongSpinWait`: what a self-affecting call code is replaced with.
pub const HARMLESS_CODE: u16 = 0x0008;

/// Call codes the fuzzer never sends (see the module documentation).
pub const SELF_AFFECTING: [u16; 16] = [
    0x0001, // HvCallSwitchVirtualAddressSpace (not in Mica yet): would load a random CR3.
    0x0040, // HvCallCreatePartition
    0x0041, // HvCallInitializePartition
    0x0042, // HvCallFinalizePartition
    0x0043, // HvCallDeletePartition
    0x0045, // HvCallSetPartitionProperty
    0x004B, // HvCallMapGpaPages (not in Mica)
    0x004C, // HvCallUnmapGpaPages
    0x004E, // HvCallCreateVp
    0x0051, // HvCallSetVpRegisters
    0x0058, // HvCallInstallIntercept (not in Mica yet)
    CallCode::MicaMapPoolPages as u16,
    CallCode::MicaStartPartition as u16,
    CallCode::MicaStopPartition as u16,
    CallCode::MicaDebugOutput as u16,
    0x0099, // HvCallStartVirtualProcessor (not in Mica yet)
];

/// One generated call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FuzzCall {
    /// Control (input value).
    pub rcx: u64,
    /// Input GPA or first fast parameter.
    pub rdx: u64,
    /// Output GPA or second fast parameter.
    pub r8: u64,
}

impl FuzzCall {
    /// The rep count the control word asks for (0 for a simple call).
    #[must_use]
    pub fn rep_count(&self) -> u16 {
        ((self.rcx >> 32) & 0xFFF) as u16
    }
}

/// Generates calls for a guest with `ram_size` bytes of RAM whose input and output pages
/// are at `input_page` and `output_page`.
#[derive(Debug, Clone)]
pub struct Generator {
    rng: XorShift64,
    ram_size: u64,
    input_page: u64,
    output_page: u64,
    privileges: PartitionPrivileges,
}

impl Generator {
    /// A generator seeded with `seed`, for a guest holding `privileges`.
    #[must_use]
    pub const fn new(
        seed: u64,
        ram_size: u64,
        input_page: u64,
        output_page: u64,
        privileges: PartitionPrivileges,
    ) -> Self {
        Self {
            rng: XorShift64::new(seed),
            ram_size,
            input_page,
            output_page,
            privileges,
        }
    }

    /// The PRNG (to fill the input page with random bytes).
    pub fn rng(&mut self) -> &mut XorShift64 {
        &mut self.rng
    }

    /// The next call: a random control word (a quarter fully random, the rest built from
    /// fields around the implemented calls), random GPAs from several classes, then the
    /// two safety rules.
    pub fn next_call(&mut self) -> FuzzCall {
        let rcx = self.control();
        let rdx = self.gpa(self.input_page);
        let r8 = self.gpa(self.output_page);
        let fast = rcx & (1 << 16) != 0;
        FuzzCall {
            rcx: make_harmless(rcx, self.privileges),
            rdx,
            r8: if fast { r8 } else { self.confine_output(r8) },
        }
    }

    fn control(&mut self) -> u64 {
        let rng = &mut self.rng;
        if rng.chance(1, 4) {
            return rng.next_u64();
        }
        let code = if rng.chance(1, 4) {
            rng.next_u64() as u16
        } else {
            rng.pick(&CallCode::ALL).map_or(HARMLESS_CODE, |c| c.raw())
        };
        let field = |rng: &mut XorShift64| {
            if rng.chance(1, 2) {
                rng.below(4) as u16
            } else {
                rng.below(0x1000) as u16
            }
        };
        let rep_count = field(rng);
        let rep_start = if rng.chance(1, 4) { field(rng) } else { 0 };
        let control = HypercallControl {
            call_code: code,
            fast: rng.chance(1, 2),
            variable_header_qwords: if rng.chance(1, 8) {
                rng.below(0x400) as u16
            } else {
                0
            },
            nested: rng.chance(1, 32),
            rep_count,
            rep_start,
        };
        let reserved = if rng.chance(1, 16) {
            RESERVED_INPUT_BITS & rng.next_u64()
        } else {
            0
        };
        control.to_raw() | reserved
    }

    fn gpa(&mut self, page: u64) -> u64 {
        let rng = &mut self.rng;
        match rng.below(6) {
            0 => rng.next_u64(),
            1 => page + rng.below(4096),
            2 => page + 8 * rng.below(512),
            3 => self.ram_size.saturating_add(8 * rng.below(1 << 20)),
            4 => rng.below(self.ram_size) & !7,
            _ => u64::MAX - rng.below(4096),
        }
    }

    /// An output GPA inside RAM is moved into the output page.
    fn confine_output(&self, r8: u64) -> u64 {
        if r8 < self.ram_size {
            self.output_page + (r8 & 0xFFF)
        } else {
            r8
        }
    }
}

/// Whether a caller with `privileges` may make the call `code` (unknown codes: yes).
fn may_call(code: u16, privileges: PartitionPrivileges) -> bool {
    let Some(call) = CallCode::from_raw(code) else {
        return true;
    };
    match call.spec().privilege {
        PrivilegeRule::None => true,
        PrivilegeRule::Requires(needed) => privileges.contains(needed),
        PrivilegeRule::TargetDependent { own, other } => {
            privileges.contains(own) || privileges.contains(other)
        }
    }
}

/// `rcx` with a self-affecting call code replaced by [`HARMLESS_CODE`], unless Mica
/// implements the call and a caller with `privileges` would be refused it.
#[must_use]
pub fn make_harmless(rcx: u64, privileges: PartitionPrivileges) -> u64 {
    let code = (rcx & 0xFFFF) as u16;
    if SELF_AFFECTING.contains(&code) && may_call(code, privileges) {
        (rcx & !0xFFFF) | u64::from(HARMLESS_CODE)
    } else {
        rcx
    }
}

/// The word at `addr` of the pattern partition `partition_id` writes into its free RAM:
/// distinct per address and per partition (a bijective mix of both).
#[must_use]
pub const fn pattern(partition_id: u64, addr: u64) -> u64 {
    let mut x = addr ^ partition_id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn never_sends_a_self_affecting_code_and_keeps_outputs_in_the_scratch_page() {
        let ram = 16 * MIB;
        let (input, output) = (0x20_5000, 0x20_6000);
        let all = PartitionPrivileges::all();
        let mut generator = Generator::new(99, ram, input, output, all);
        let mut fast = 0;
        let mut known = 0;
        let mut harmless = 0;
        for _ in 0..50_000 {
            let call = generator.next_call();
            let code = (call.rcx & 0xFFFF) as u16;
            assert!(!SELF_AFFECTING.contains(&code), "{call:x?}");
            if call.rcx & (1 << 16) != 0 {
                fast += 1;
            } else if call.r8 < ram {
                assert!((output..output + 4096).contains(&call.r8), "{call:x?}");
            }
            known += usize::from(CallCode::from_raw(code).is_some());
            harmless += usize::from(code == HARMLESS_CODE);
        }
        // The mix is varied: both conventions, and mostly implemented calls.
        assert!((15_000..35_000).contains(&fast), "{fast}");
        assert!(known > 25_000, "{known}");
        assert!(
            harmless > 15_000,
            "{harmless}: self-affecting codes were replaced"
        );
    }

    #[test]
    fn unprivileged_guests_send_the_calls_mica_must_refuse() {
        let child = PartitionPrivileges::CHILD_DEFAULT;
        let mut generator = Generator::new(3, 16 * MIB, 0x20_5000, 0x20_6000, child);
        let mut refused_calls = 0;
        for _ in 0..20_000 {
            let code = (generator.next_call().rcx & 0xFFFF) as u16;
            if SELF_AFFECTING.contains(&code) {
                // Only implemented calls the child lacks the privilege for get through.
                assert!(!may_call(code, child), "{code:#x}");
                refused_calls += 1;
            }
        }
        assert!(refused_calls > 3_000, "{refused_calls}");
    }

    #[test]
    fn make_harmless_only_changes_the_code() {
        let all = PartitionPrivileges::all();
        let rcx = 0x0123_0456_0001_C003;
        assert_eq!(make_harmless(rcx, all), 0x0123_0456_0001_0008);
        assert_eq!(make_harmless(0x0001_0050, all), 0x0001_0050);
        for code in SELF_AFFECTING {
            assert_eq!(make_harmless(u64::from(code), all) & 0xFFFF, 8);
        }
        // A child may not stop partitions: Mica must refuse the call, so it is sent.
        let child = PartitionPrivileges::CHILD_DEFAULT;
        assert_eq!(make_harmless(rcx, child), rcx);
        // Calls Mica does not implement are never sent, privileges or not.
        assert_eq!(make_harmless(0x0001, child), 0x0008);
    }

    #[test]
    fn same_seed_same_calls() {
        let all = PartitionPrivileges::all();
        let mut a = Generator::new(5, 8 * MIB, 0x1000, 0x2000, all);
        let mut b = Generator::new(5, 8 * MIB, 0x1000, 0x2000, all);
        for _ in 0..100 {
            assert_eq!(a.next_call(), b.next_call());
        }
    }

    #[test]
    fn patterns_differ_between_partitions_and_addresses() {
        let mut same = 0;
        for addr in (0x40_0000..0x40_0000 + 8 * 4096).step_by(8) {
            assert_ne!(pattern(1, addr), pattern(1, addr + 8));
            same += usize::from(pattern(1, addr) == pattern(2, addr));
        }
        assert_eq!(same, 0);
        assert_eq!(pattern(3, 0x1234_5678), pattern(3, 0x1234_5678));
    }
}
