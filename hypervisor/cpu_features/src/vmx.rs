//! Intel VMX capabilities (Intel SDM vol. 3 appendix A, vol. 4 for MSR numbers).

use bitflags::bitflags;

use crate::Msrs;
use crate::regs::*;

bitflags! {
    /// IA32_VMX_EPT_VPID_CAP (SDM A.10). Unnamed bits are kept as reported.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct EptVpidCaps: u64 {
        /// Execute-only EPT translations.
        const EXECUTE_ONLY = 1 << 0;
        /// 4-level EPT page walks.
        const WALK_LENGTH_4 = 1 << 6;
        /// Uncacheable EPT paging-structure memory type.
        const MEMORY_TYPE_UC = 1 << 8;
        /// Write-back EPT paging-structure memory type.
        const MEMORY_TYPE_WB = 1 << 14;
        /// 2 MiB EPT pages (PDE leaf).
        const PAGE_2M = 1 << 16;
        /// 1 GiB EPT pages (PDPTE leaf).
        const PAGE_1G = 1 << 17;
        /// INVEPT.
        const INVEPT = 1 << 20;
        /// EPT accessed and dirty flags.
        const ACCESSED_DIRTY = 1 << 21;
        /// Single-context INVEPT.
        const INVEPT_SINGLE_CONTEXT = 1 << 25;
        /// All-context INVEPT.
        const INVEPT_ALL_CONTEXT = 1 << 26;
        /// INVVPID.
        const INVVPID = 1 << 32;
        /// Individual-address INVVPID.
        const INVVPID_INDIVIDUAL_ADDRESS = 1 << 40;
        /// Single-context INVVPID.
        const INVVPID_SINGLE_CONTEXT = 1 << 41;
        /// All-context INVVPID.
        const INVVPID_ALL_CONTEXT = 1 << 42;
        /// Single-context-retaining-globals INVVPID.
        const INVVPID_SINGLE_CONTEXT_RETAINING_GLOBALS = 1 << 43;

        // Keep bits this table does not name.
        const _ = !0;
    }
}

const FEATURE_CONTROL_LOCK: u64 = 1 << 0;
const FEATURE_CONTROL_VMX_OUTSIDE_SMX: u64 = 1 << 2;
const VMX_BASIC_TRUE_CONTROLS: u64 = 1 << 55;
/// Primary processor-based control 31: activate secondary controls.
const PROCBASED_SECONDARY: u32 = 1 << 31;
/// Secondary processor-based controls.
const PROCBASED2_EPT: u32 = 1 << 1;
const PROCBASED2_VPID: u32 = 1 << 5;
const PROCBASED2_UNRESTRICTED_GUEST: u32 = 1 << 7;

/// What the CPU's VMX implementation offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmxFeatures {
    /// Raw IA32_FEATURE_CONTROL, if readable.
    pub feature_control: Option<u64>,
    /// IA32_FEATURE_CONTROL is locked (bit 0): its VMX bits can no longer change.
    pub feature_control_locked: bool,
    /// VMXON allowed outside SMX (bit 2).
    pub vmxon_outside_smx: bool,
    /// Raw IA32_VMX_BASIC, if readable.
    pub basic: Option<u64>,
    /// VMCS revision identifier (IA32_VMX_BASIC bits 30:0).
    pub vmcs_revision: u32,
    /// The IA32_VMX_TRUE_*_CTLS MSRs exist (IA32_VMX_BASIC bit 55).
    pub true_controls: bool,
    /// Secondary processor-based controls may be activated.
    pub secondary_controls: bool,
    /// Enable EPT may be set.
    pub ept: bool,
    /// Enable VPID may be set.
    pub vpid: bool,
    /// Unrestricted guest may be set.
    pub unrestricted_guest: bool,
    /// IA32_VMX_EPT_VPID_CAP (empty if EPT and VPID are both unavailable).
    pub ept_vpid_caps: EptVpidCaps,
}

/// Allowed-1 settings: the high 32 bits of a VMX control capability MSR.
fn allowed1(msr: Option<u64>) -> u32 {
    msr.map_or(0, |v| (v >> 32) as u32)
}

impl VmxFeatures {
    /// Called only when CPUID advertises VMX; reads each capability MSR only if the SDM says
    /// it exists.
    pub(crate) fn detect(msrs: &(impl Msrs + ?Sized)) -> Self {
        let feature_control = msrs.read_msr(MSR_IA32_FEATURE_CONTROL);
        let fc = feature_control.unwrap_or(0);
        let basic = msrs.read_msr(MSR_IA32_VMX_BASIC);
        let secondary_controls = basic.is_some()
            && allowed1(msrs.read_msr(MSR_IA32_VMX_PROCBASED_CTLS)) & PROCBASED_SECONDARY != 0;
        let ctls2 = if secondary_controls {
            allowed1(msrs.read_msr(MSR_IA32_VMX_PROCBASED_CTLS2))
        } else {
            0
        };
        let ept = ctls2 & PROCBASED2_EPT != 0;
        let vpid = ctls2 & PROCBASED2_VPID != 0;
        let ept_vpid_caps = if ept || vpid {
            EptVpidCaps::from_bits_retain(msrs.read_msr(MSR_IA32_VMX_EPT_VPID_CAP).unwrap_or(0))
        } else {
            EptVpidCaps::empty()
        };
        Self {
            feature_control,
            feature_control_locked: fc & FEATURE_CONTROL_LOCK != 0,
            vmxon_outside_smx: fc & FEATURE_CONTROL_VMX_OUTSIDE_SMX != 0,
            basic,
            vmcs_revision: basic.map_or(0, |b| (b & 0x7FFF_FFFF) as u32),
            true_controls: basic.is_some_and(|b| b & VMX_BASIC_TRUE_CONTROLS != 0),
            secondary_controls,
            ept,
            vpid,
            unrestricted_guest: ctls2 & PROCBASED2_UNRESTRICTED_GUEST != 0,
            ept_vpid_caps,
        }
    }

    /// 2 MiB EPT pages.
    pub fn ept_2m(&self) -> bool {
        self.ept && self.ept_vpid_caps.contains(EptVpidCaps::PAGE_2M)
    }

    /// 1 GiB EPT pages.
    pub fn ept_1g(&self) -> bool {
        self.ept && self.ept_vpid_caps.contains(EptVpidCaps::PAGE_1G)
    }

    /// INVEPT.
    pub fn invept(&self) -> bool {
        self.ept && self.ept_vpid_caps.contains(EptVpidCaps::INVEPT)
    }

    /// Why this VMX implementation cannot host Mica, if it cannot.
    ///
    /// An unlocked IA32_FEATURE_CONTROL is usable: the hypervisor sets bit 2 and locks it.
    pub(crate) fn unusable_reason(&self) -> Option<&'static str> {
        let caps = self.ept_vpid_caps;
        if self.feature_control_locked && !self.vmxon_outside_smx {
            Some("VMX locked off in IA32_FEATURE_CONTROL")
        } else if self.basic.is_none() {
            Some("IA32_VMX_BASIC is not readable")
        } else if !self.ept {
            Some("VMX without EPT is not supported")
        } else if !caps.contains(EptVpidCaps::WALK_LENGTH_4 | EptVpidCaps::MEMORY_TYPE_WB) {
            Some("EPT lacks 4-level walks or write-back paging structures")
        } else if !self.invept() {
            Some("EPT without INVEPT is not supported")
        } else {
            None
        }
    }
}
