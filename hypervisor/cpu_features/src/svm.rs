//! AMD SVM capabilities (AMD APM vol. 2 ch. 15, vol. 3 appendix E: CPUID Fn8000_000A).

use bitflags::bitflags;

use crate::identity::CpuIdentity;
use crate::regs::*;
use crate::{Cpuid, Msrs};

bitflags! {
    /// SVM feature flags: CPUID Fn8000_000A EDX. Unnamed bits are kept as reported.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct SvmFeatureFlags: u32 {
        /// Nested paging (NPT).
        const NP = 1 << 0;
        /// LBR virtualization.
        const LBR_VIRT = 1 << 1;
        /// SVM lock (VM_CR.LOCK / SVM_KEY).
        const SVM_LOCK = 1 << 2;
        /// Next-RIP save on #VMEXIT (NRIPS).
        const NRIP_SAVE = 1 << 3;
        /// MSR-based TSC rate control.
        const TSC_RATE_MSR = 1 << 4;
        /// VMCB clean bits.
        const VMCB_CLEAN = 1 << 5;
        /// Flush by ASID (TLB_CONTROL values 3 and 7).
        const FLUSH_BY_ASID = 1 << 6;
        /// Decode assists.
        const DECODE_ASSISTS = 1 << 7;
        /// PAUSE intercept filter.
        const PAUSE_FILTER = 1 << 10;
        /// PAUSE filter cycle-count threshold.
        const PAUSE_FILTER_THRESHOLD = 1 << 12;
        /// Advanced virtual interrupt controller.
        const AVIC = 1 << 13;
        /// Virtualized VMSAVE/VMLOAD.
        const VMSAVE_VIRT = 1 << 15;
        /// Virtual global interrupt flag.
        const VGIF = 1 << 16;
        /// x2APIC mode of the AVIC.
        const X2AVIC = 1 << 18;
        /// Virtualized SPEC_CTRL.
        const SPEC_CTRL = 1 << 20;
        /// Virtual NMI.
        const VNMI = 1 << 25;
        /// SVM instructions check their address against reserved ranges before #GP.
        const SVME_ADDR_CHK = 1 << 28;

        // Keep bits this table does not name.
        const _ = !0;
    }
}

/// What the CPU's SVM implementation offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SvmFeatures {
    /// Raw VM_CR, if readable.
    pub vm_cr: Option<u64>,
    /// Firmware disabled SVM (VM_CR bit 4, SVMDIS): EFER.SVME cannot be set.
    pub disabled_by_bios: bool,
    /// SVM revision (Fn8000_000A EAX[7:0]); 0 if the leaf is absent.
    pub revision: u8,
    /// Number of ASIDs (Fn8000_000A EBX); 0 if the leaf is absent.
    pub asids: u32,
    /// Feature flags (Fn8000_000A EDX); empty if the leaf is absent.
    pub flags: SvmFeatureFlags,
}

const VM_CR_SVMDIS: u64 = 1 << 4;

impl SvmFeatures {
    /// Called only when CPUID advertises SVM, so VM_CR exists.
    pub(crate) fn detect(
        cpu: &(impl Cpuid + ?Sized),
        msrs: &(impl Msrs + ?Sized),
        id: &CpuIdentity,
    ) -> Self {
        let vm_cr = msrs.read_msr(MSR_VM_CR);
        let (revision, asids, flags) = if id.max_ext_leaf >= LEAF_SVM {
            let r = cpu.cpuid(LEAF_SVM, 0);
            (
                (r.eax & 0xFF) as u8,
                r.ebx,
                SvmFeatureFlags::from_bits_retain(r.edx),
            )
        } else {
            (0, 0, SvmFeatureFlags::empty())
        };
        Self {
            vm_cr,
            disabled_by_bios: vm_cr.is_some_and(|v| v & VM_CR_SVMDIS != 0),
            revision,
            asids,
            flags,
        }
    }

    /// Nested paging.
    pub fn npt(&self) -> bool {
        self.flags.contains(SvmFeatureFlags::NP)
    }

    /// Next-RIP save.
    pub fn nrip_save(&self) -> bool {
        self.flags.contains(SvmFeatureFlags::NRIP_SAVE)
    }

    /// Decode assists.
    pub fn decode_assists(&self) -> bool {
        self.flags.contains(SvmFeatureFlags::DECODE_ASSISTS)
    }

    /// Flush by ASID.
    pub fn flush_by_asid(&self) -> bool {
        self.flags.contains(SvmFeatureFlags::FLUSH_BY_ASID)
    }

    /// VMCB clean bits.
    pub fn vmcb_clean(&self) -> bool {
        self.flags.contains(SvmFeatureFlags::VMCB_CLEAN)
    }

    /// Virtual GIF.
    pub fn vgif(&self) -> bool {
        self.flags.contains(SvmFeatureFlags::VGIF)
    }

    /// AVIC.
    pub fn avic(&self) -> bool {
        self.flags.contains(SvmFeatureFlags::AVIC)
    }

    /// Why this SVM implementation cannot host Mica, if it cannot.
    pub(crate) fn unusable_reason(&self) -> Option<&'static str> {
        if self.disabled_by_bios {
            Some("SVM disabled by BIOS (VM_CR.SVMDIS)")
        } else if !self.npt() {
            Some("SVM without nested paging (NPT) is not supported")
        } else if self.asids < 2 {
            Some("SVM reports fewer than 2 ASIDs")
        } else {
            None
        }
    }
}
