//! What a partition's CPUID returns: the Hyper-V hypervisor leaves (0x40000000..) from Mica,
//! the rest from the host CPU with virtualization hidden.
//!
//! # What Mica advertises
//! - 0x40000000: max leaf 0x40000005, vendor "Microsoft Hv" (so Linux's Hyper-V drivers
//!   recognise the platform).
//! - 0x40000001: interface signature "Hv#1".
//! - 0x40000002: Mica's version (build [`MICA_BUILD`], version 0.1).
//! - 0x40000003: EAX = the partition's privileges limited to the synthetic MSRs Mica
//!   implements (HV_X64_MSR_GUEST_OS_ID + HV_X64_MSR_HYPERCALL, HV_X64_MSR_VP_INDEX); EBX =
//!   its privileges limited to the hypercalls Mica implements (create partitions, partition
//!   ID, memory pool, debugging, VP registers); ECX = EDX = 0 (no power-management or misc
//!   features: no SynIC, no synthetic timers, no reference TSC page yet).
//! - 0x40000004: no recommendations; spinlock retries 0xFFFFFFFF (never notify).
//! - 0x40000005: max virtual processors = max logical processors = the vCPU limit.
//! - Other hypervisor leaves (up to 0x400000FF): zero.
//!
//! Host leaves pass through except: leaf 1 ECX.VMX (bit 5) cleared and ECX.hypervisor
//! (bit 31) set, ECX.OSXSAVE (bit 27) following the guest's CR4.OSXSAVE and EBX bits 31:24 the
//! vCPU's APIC ID (its index); 0x80000001 ECX.SVM (bit 2) cleared and leaf 0x8000000A
//! (SVM features) zero; leaves 0xB and 0x1F report the vCPU index as x2APIC ID in EDX. This
//! applies to the root too: Mica offers no nested virtualization.
//!
//! The root differs in two ways: leaf 0x40000000 names the vendor "MicaMicaMica" (the root
//! runs a stock kernel that must not take itself for a Hyper-V guest: Mica's root ABI is
//! the doorbell of `hypercall::root_abi`, not the Hyper-V enlightenments), and the APIC IDs
//! are the host's (the root owns the physical local APICs).

use hypercall::PartitionPrivileges;

/// The four registers a CPUID leaf returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CpuidResult {
    /// EAX.
    pub eax: u32,
    /// EBX.
    pub ebx: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
}

/// The highest hypervisor leaf Mica implements.
pub const HV_MAX_LEAF: u32 = 0x4000_0005;
/// Mica's build number in leaf 0x40000002.
pub const MICA_BUILD: u32 = 1;

const fn sig(bytes: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*bytes)
}

/// The synthetic-MSR privileges Mica implements.
const IMPLEMENTED_MSR_PRIVILEGES: PartitionPrivileges =
    PartitionPrivileges::ACCESS_HYPERCALL_MSRS.union(PartitionPrivileges::ACCESS_VP_INDEX);

/// The hypercall privileges Mica implements.
const IMPLEMENTED_CALL_PRIVILEGES: PartitionPrivileges = PartitionPrivileges::CREATE_PARTITIONS
    .union(PartitionPrivileges::ACCESS_PARTITION_ID)
    .union(PartitionPrivileges::ACCESS_MEMORY_POOL)
    .union(PartitionPrivileges::DEBUGGING)
    .union(PartitionPrivileges::ACCESS_VP_REGISTERS);

/// The CPU facts the policy needs about the calling vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuidContext {
    /// The partition's privileges.
    pub privileges: PartitionPrivileges,
    /// The vCPU's index (its APIC ID).
    pub vp_index: u32,
    /// The guest's CR4 (for OSXSAVE).
    pub cr4: u64,
    /// The vCPU limit (leaf 0x40000005).
    pub max_vcpus: u32,
    /// The caller is the root partition (see the module docs).
    pub root: bool,
}

/// The answer to CPUID(`leaf`, `subleaf`) for a vCPU; `host` gives the real CPU's values.
pub fn cpuid(
    leaf: u32,
    subleaf: u32,
    ctx: &CpuidContext,
    host: impl FnOnce(u32, u32) -> CpuidResult,
) -> CpuidResult {
    match leaf {
        0x4000_0000 if ctx.root => CpuidResult {
            eax: HV_MAX_LEAF,
            ebx: sig(b"Mica"),
            ecx: sig(b"Mica"),
            edx: sig(b"Mica"),
        },
        0x4000_0000 => CpuidResult {
            eax: HV_MAX_LEAF,
            ebx: sig(b"Micr"),
            ecx: sig(b"osof"),
            edx: sig(b"t Hv"),
        },
        0x4000_0001 => CpuidResult {
            eax: sig(b"Hv#1"),
            ..CpuidResult::default()
        },
        0x4000_0002 => CpuidResult {
            eax: MICA_BUILD,
            ebx: 1,
            ..CpuidResult::default()
        },
        0x4000_0003 => CpuidResult {
            eax: ctx
                .privileges
                .intersection(IMPLEMENTED_MSR_PRIVILEGES)
                .cpuid_eax(),
            ebx: ctx
                .privileges
                .intersection(IMPLEMENTED_CALL_PRIVILEGES)
                .cpuid_ebx(),
            ecx: 0,
            edx: 0,
        },
        0x4000_0004 => CpuidResult {
            ebx: u32::MAX,
            ..CpuidResult::default()
        },
        0x4000_0005 => CpuidResult {
            eax: ctx.max_vcpus,
            ebx: ctx.max_vcpus,
            ..CpuidResult::default()
        },
        0x4000_0006..=0x4000_00FF | 0x8000_000A => CpuidResult::default(),
        _ => {
            let mut r = host(leaf, subleaf);
            match leaf {
                1 => {
                    r.ecx &= !(1 << 5);
                    r.ecx |= 1 << 31;
                    if ctx.cr4 & (1 << 18) != 0 {
                        r.ecx |= 1 << 27;
                    } else {
                        r.ecx &= !(1 << 27);
                    }
                    if !ctx.root {
                        r.ebx = (r.ebx & 0x00FF_FFFF) | (ctx.vp_index & 0xFF) << 24;
                    }
                }
                0xB | 0x1F if !ctx.root => r.edx = ctx.vp_index,
                0x8000_0001 => r.ecx &= !(1 << 2),
                _ => {}
            }
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(privileges: PartitionPrivileges) -> CpuidContext {
        CpuidContext {
            privileges,
            vp_index: 2,
            cr4: 0,
            max_vcpus: 8,
            root: false,
        }
    }

    fn all_ones(_: u32, _: u32) -> CpuidResult {
        CpuidResult {
            eax: u32::MAX,
            ebx: u32::MAX,
            ecx: u32::MAX,
            edx: u32::MAX,
        }
    }

    fn text(regs: [u32; 3]) -> [u8; 12] {
        let mut out = [0u8; 12];
        for (chunk, r) in out.chunks_mut(4).zip(regs) {
            chunk.copy_from_slice(&r.to_le_bytes());
        }
        out
    }

    #[test]
    fn hypervisor_leaves_identify_hyper_v() {
        let c = ctx(crate::CHILD_PRIVILEGES);
        let r = cpuid(0x4000_0000, 0, &c, all_ones);
        assert!(r.eax >= 0x4000_0005);
        assert_eq!(&text([r.ebx, r.ecx, r.edx]), b"Microsoft Hv");
        assert_eq!(
            &cpuid(0x4000_0001, 0, &c, all_ones).eax.to_le_bytes(),
            b"Hv#1"
        );
        let features = cpuid(0x4000_0003, 0, &c, all_ones);
        // Linux requires HV_MSR_HYPERCALL_AVAILABLE (bit 5) and HV_MSR_VP_INDEX_AVAILABLE (6).
        assert_eq!(features.eax, (1 << 5) | (1 << 6));
        // A child has no management privileges; debugging (bit 11) only.
        assert_eq!(features.ebx, 1 << 11);
        let root = cpuid(0x4000_0003, 0, &ctx(PartitionPrivileges::ROOT), all_ones);
        assert_ne!(root.ebx & 1, 0, "root may create partitions");
        // Synthetic interrupts/messages are not implemented: not advertised even to the root.
        assert_eq!(root.ebx & (1 << 4), 0);
        assert_eq!(root.eax & (1 << 2), 0);
        assert_eq!(cpuid(0x4000_0005, 0, &c, all_ones).eax, 8);
        assert_eq!(cpuid(0x4000_0042, 0, &c, all_ones), CpuidResult::default());
    }

    #[test]
    fn virtualization_is_hidden_and_presence_shown() {
        let c = ctx(crate::CHILD_PRIVILEGES);
        let leaf1 = cpuid(1, 0, &c, all_ones);
        assert_eq!(leaf1.ecx & (1 << 5), 0, "VMX hidden");
        assert_ne!(leaf1.ecx & (1 << 31), 0, "hypervisor present");
        assert_eq!(leaf1.ecx & (1 << 27), 0, "OSXSAVE follows CR4");
        assert_eq!(leaf1.ebx >> 24, 2, "APIC ID is the VP index");
        let ext = cpuid(0x8000_0001, 0, &c, all_ones);
        assert_eq!(ext.ecx & (1 << 2), 0, "SVM hidden");
        assert_eq!(ext.ecx | (1 << 2), u32::MAX, "other bits pass through");
        assert_eq!(cpuid(0x8000_000A, 0, &c, all_ones), CpuidResult::default());
        let mut host_seen = None;
        let plain = cpuid(7, 3, &c, |l, s| {
            host_seen = Some((l, s));
            CpuidResult {
                eax: 1,
                ebx: 2,
                ecx: 3,
                edx: 4,
            }
        });
        assert_eq!(host_seen, Some((7, 3)));
        assert_eq!((plain.eax, plain.ebx, plain.ecx, plain.edx), (1, 2, 3, 4));
    }
}
