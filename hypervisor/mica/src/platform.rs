//! Bare-metal implementations of the narrow hardware traits the pure crates use:
//! [`boot_info::PhysRead`], [`cpu_features::Cpuid`] and [`cpu_features::Msrs`].

use boot_info::{OutOfRange, PhysRead};
use cpu_features::{Cpuid, CpuidResult, Msrs};

/// Physical memory below 4 GiB, read through the boot trampoline's identity map.
///
/// Used only before the hypervisor's own page tables are live; every byte it can reach is
/// mapped by the trampoline's 2 MiB pages. Reads are raw copies into the caller's buffer, so
/// memory a loader left in any state is never turned into a Rust reference.
pub struct BootPhysMemory;

/// End of what the trampoline identity-maps.
const BOOT_IDENTITY_LIMIT: u64 = 4 << 30;

impl PhysRead for BootPhysMemory {
    fn read(&self, phys: u64, buf: &mut [u8]) -> Result<(), OutOfRange> {
        let len = buf.len() as u64;
        let in_range = phys
            .checked_add(len)
            .is_some_and(|end| end <= BOOT_IDENTITY_LIMIT);
        if !in_range {
            return Err(OutOfRange { phys, len });
        }
        // SAFETY: the source range is below 4 GiB, identity mapped by the boot page tables
        // (present, readable) and not modified while the boot information is parsed (one CPU,
        // interrupts off); `buf` is a distinct, writable Rust buffer of exactly `len` bytes.
        // No Rust reference to the source memory is created.
        unsafe {
            core::ptr::copy_nonoverlapping(phys as *const u8, buf.as_mut_ptr(), buf.len());
        }
        Ok(())
    }
}

/// The CPU's CPUID instruction.
pub struct HostCpuid;

impl Cpuid for HostCpuid {
    fn cpuid(&self, leaf: u32, subleaf: u32) -> CpuidResult {
        let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
        CpuidResult {
            eax: r.eax,
            ebx: r.ebx,
            ecx: r.ecx,
            edx: r.edx,
        }
    }
}

/// The CPU's MSRs, read with RDMSR.
pub struct HostMsrs;

impl Msrs for HostMsrs {
    fn read_msr(&self, msr: u32) -> Option<u64> {
        let msr = x86_64::registers::model_specific::Msr::new(msr);
        // SAFETY: `cpu_features` reads only MSRs whose existence CPUID has established
        // (its documented invariant), so RDMSR does not fault; reading has no side effects.
        Some(unsafe { msr.read() })
    }
}
