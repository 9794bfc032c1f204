//! The MSR allow-list: which model-specific registers a guest may read or write when the
//! backend intercepts them, and the values it may write. Anything else is #GP.
//!
//! | MSR | read | write |
//! | --- | --- | --- |
//! | IA32_TSC (0x10) | host TSC | #GP (guests may not move the TSC) |
//! | IA32_APIC_BASE (0x1B) | per vCPU | #GP (fixed xAPIC base) |
//! | SYSENTER_CS/ESP/EIP (0x174..0x176) | yes | yes |
//! | IA32_PAT (0x277) | yes | each byte a valid memory type |
//! | EFER (0xC0000080) | yes | only SCE, LME, LMA, NXE |
//! | STAR, LSTAR, CSTAR, SFMASK (0xC0000081..84) | yes | LSTAR/CSTAR canonical |
//! | FS/GS/KERNEL_GS base (0xC0000100..02) | yes | canonical |
//! | HV_X64_MSR_GUEST_OS_ID (0x40000000) | yes* | yes* |
//! | HV_X64_MSR_HYPERCALL (0x40000001) | yes* | enable bit + GPA page* |
//! | HV_X64_MSR_VP_INDEX (0x40000002) | yes** | #GP |
//!
//! \* needs `ACCESS_HYPERCALL_MSRS`; \** needs `ACCESS_VP_INDEX`.

use hypercall::PartitionPrivileges;

use crate::partition::SyntheticMsrs;
use crate::vcpu::VcpuRegisters;

/// IA32_TSC.
pub const IA32_TSC: u32 = 0x10;
/// IA32_APIC_BASE.
pub const IA32_APIC_BASE: u32 = 0x1B;
/// IA32_SYSENTER_CS.
pub const IA32_SYSENTER_CS: u32 = 0x174;
/// IA32_SYSENTER_ESP.
pub const IA32_SYSENTER_ESP: u32 = 0x175;
/// IA32_SYSENTER_EIP.
pub const IA32_SYSENTER_EIP: u32 = 0x176;
/// IA32_PAT.
pub const IA32_PAT: u32 = 0x277;
/// IA32_EFER.
pub const IA32_EFER: u32 = 0xC000_0080;
/// IA32_STAR.
pub const IA32_STAR: u32 = 0xC000_0081;
/// IA32_LSTAR.
pub const IA32_LSTAR: u32 = 0xC000_0082;
/// IA32_CSTAR.
pub const IA32_CSTAR: u32 = 0xC000_0083;
/// IA32_FMASK.
pub const IA32_SFMASK: u32 = 0xC000_0084;
/// IA32_FS_BASE.
pub const IA32_FS_BASE: u32 = 0xC000_0100;
/// IA32_GS_BASE.
pub const IA32_GS_BASE: u32 = 0xC000_0101;
/// IA32_KERNEL_GS_BASE.
pub const IA32_KERNEL_GS_BASE: u32 = 0xC000_0102;
/// HV_X64_MSR_GUEST_OS_ID.
pub const HV_X64_MSR_GUEST_OS_ID: u32 = 0x4000_0000;
/// HV_X64_MSR_HYPERCALL.
pub const HV_X64_MSR_HYPERCALL: u32 = 0x4000_0001;
/// HV_X64_MSR_VP_INDEX.
pub const HV_X64_MSR_VP_INDEX: u32 = 0x4000_0002;

/// EFER bits a guest may set: SCE (0), LME (8), LMA (10), NXE (11). SVME and the rest are
/// refused (no nested virtualization).
pub const EFER_ALLOWED: u64 = 1 | 1 << 8 | 1 << 10 | 1 << 11;
/// EFER.LMA.
pub const EFER_LMA: u64 = 1 << 10;
/// HV_X64_MSR_HYPERCALL enable bit.
pub const HYPERCALL_ENABLE: u64 = 1;
/// HV_X64_MSR_HYPERCALL locked bit (accepted and kept; Mica does not enforce it).
pub const HYPERCALL_LOCKED: u64 = 1 << 1;

/// Whether `value` is a canonical 48-bit virtual address.
#[must_use]
pub const fn is_canonical(value: u64) -> bool {
    let top = (value as i64) >> 47;
    top == 0 || top == -1
}

/// Whether every byte of a PAT value is a valid memory type (0, 1, 4, 5, 6, 7).
#[must_use]
pub fn is_valid_pat(value: u64) -> bool {
    value
        .to_le_bytes()
        .iter()
        .all(|&t| matches!(t, 0 | 1 | 4 | 5 | 6 | 7))
}

/// What an MSR access needs done beyond reading/writing the vCPU's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrEffect {
    /// Nothing more.
    None,
    /// Write the hypercall code page at this guest-physical page address.
    InstallHypercallPage(u64),
}

/// The state an MSR access reads or changes.
#[derive(Debug)]
pub struct MsrContext<'a> {
    /// The vCPU's registers.
    pub regs: &'a mut VcpuRegisters,
    /// The partition's synthetic MSRs.
    pub synthetic: &'a mut SyntheticMsrs,
    /// The partition's privileges.
    pub privileges: PartitionPrivileges,
    /// The vCPU's index.
    pub vp_index: u32,
    /// The host TSC now.
    pub tsc: u64,
}

impl MsrContext<'_> {
    fn may(&self, privilege: PartitionPrivileges) -> Option<()> {
        self.privileges.contains(privilege).then_some(())
    }

    /// The value RDMSR returns, or `None` for #GP.
    #[must_use]
    pub fn read(&self, msr: u32) -> Option<u64> {
        let r = &*self.regs;
        Some(match msr {
            IA32_TSC => self.tsc,
            IA32_APIC_BASE => r.apic_base,
            IA32_SYSENTER_CS => r.sysenter_cs,
            IA32_SYSENTER_ESP => r.sysenter_esp,
            IA32_SYSENTER_EIP => r.sysenter_eip,
            IA32_PAT => r.pat,
            IA32_EFER => r.efer,
            IA32_STAR => r.star,
            IA32_LSTAR => r.lstar,
            IA32_CSTAR => r.cstar,
            IA32_SFMASK => r.sfmask,
            IA32_FS_BASE => r.fs.base,
            IA32_GS_BASE => r.gs.base,
            IA32_KERNEL_GS_BASE => r.kernel_gs_base,
            HV_X64_MSR_GUEST_OS_ID => {
                self.may(PartitionPrivileges::ACCESS_HYPERCALL_MSRS)?;
                self.synthetic.guest_os_id
            }
            HV_X64_MSR_HYPERCALL => {
                self.may(PartitionPrivileges::ACCESS_HYPERCALL_MSRS)?;
                self.synthetic.hypercall
            }
            HV_X64_MSR_VP_INDEX => {
                self.may(PartitionPrivileges::ACCESS_VP_INDEX)?;
                u64::from(self.vp_index)
            }
            _ => return None,
        })
    }

    /// Performs WRMSR, or returns `None` for #GP (nothing changed then).
    pub fn write(&mut self, msr: u32, value: u64) -> Option<MsrEffect> {
        let canonical = || is_canonical(value).then_some(());
        match msr {
            IA32_SYSENTER_CS => self.regs.sysenter_cs = value,
            IA32_SYSENTER_ESP => self.regs.sysenter_esp = value,
            IA32_SYSENTER_EIP => self.regs.sysenter_eip = value,
            IA32_PAT => {
                is_valid_pat(value).then_some(())?;
                self.regs.pat = value;
            }
            IA32_EFER => {
                (value & !EFER_ALLOWED == 0).then_some(())?;
                // LMA is the processor's: keep the current value.
                self.regs.efer = (value & !EFER_LMA) | (self.regs.efer & EFER_LMA);
            }
            IA32_STAR => self.regs.star = value,
            IA32_LSTAR => {
                canonical()?;
                self.regs.lstar = value;
            }
            IA32_CSTAR => {
                canonical()?;
                self.regs.cstar = value;
            }
            IA32_SFMASK => self.regs.sfmask = value,
            IA32_FS_BASE => {
                canonical()?;
                self.regs.fs.base = value;
            }
            IA32_GS_BASE => {
                canonical()?;
                self.regs.gs.base = value;
            }
            IA32_KERNEL_GS_BASE => {
                canonical()?;
                self.regs.kernel_gs_base = value;
            }
            HV_X64_MSR_GUEST_OS_ID => {
                self.may(PartitionPrivileges::ACCESS_HYPERCALL_MSRS)?;
                self.synthetic.guest_os_id = value;
                if value == 0 {
                    // TLFS: clearing the guest OS ID disables the hypercall page.
                    self.synthetic.hypercall &= !HYPERCALL_ENABLE;
                }
            }
            HV_X64_MSR_HYPERCALL => {
                self.may(PartitionPrivileges::ACCESS_HYPERCALL_MSRS)?;
                // Bits 11:2 are reserved.
                (value & 0xFFC == 0).then_some(())?;
                let mut stored = value;
                if self.synthetic.guest_os_id == 0 {
                    // TLFS: the page cannot be enabled before the guest identifies itself.
                    stored &= !HYPERCALL_ENABLE;
                }
                self.synthetic.hypercall = stored;
                if stored & HYPERCALL_ENABLE != 0 {
                    return Some(MsrEffect::InstallHypercallPage(stored & !0xFFF));
                }
            }
            _ => return None,
        }
        Some(MsrEffect::None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_ctx<R>(privileges: PartitionPrivileges, f: impl FnOnce(&mut MsrContext<'_>) -> R) -> R {
        let mut regs = VcpuRegisters::reset(0);
        let mut synthetic = SyntheticMsrs::default();
        let mut ctx = MsrContext {
            regs: &mut regs,
            synthetic: &mut synthetic,
            privileges,
            vp_index: 5,
            tsc: 777,
        };
        f(&mut ctx)
    }

    #[test]
    fn allow_listed_msrs_round_trip() {
        with_ctx(crate::CHILD_PRIVILEGES, |ctx| {
            for (msr, value) in [
                (IA32_STAR, 0x0023_0010_0000_0000),
                (IA32_LSTAR, 0xFFFF_8000_0000_1000),
                (IA32_CSTAR, 0x1000),
                (IA32_SFMASK, 0x4700),
                (IA32_FS_BASE, 0x7FFF_0000_0000),
                (IA32_GS_BASE, 0xFFFF_8000_1234_0000),
                (IA32_KERNEL_GS_BASE, 0x5000),
                (IA32_SYSENTER_CS, 0x10),
                (IA32_SYSENTER_ESP, 0x2000),
                (IA32_SYSENTER_EIP, 0x3000),
                (IA32_PAT, 0x0007_0406_0007_0406),
                (IA32_EFER, 0xD01),
                (HV_X64_MSR_GUEST_OS_ID, 0x8100_0000_0000_0000),
            ] {
                assert_eq!(ctx.write(msr, value), Some(MsrEffect::None), "{msr:#x}");
                let expected = if msr == IA32_EFER { 0x901 } else { value };
                assert_eq!(ctx.read(msr), Some(expected), "{msr:#x}");
            }
            assert_eq!(ctx.read(IA32_TSC), Some(777));
            assert_eq!(ctx.read(HV_X64_MSR_VP_INDEX), Some(5));
            assert_eq!(ctx.regs.fs.base, 0x7FFF_0000_0000);
        });
    }

    #[test]
    fn bad_values_and_unknown_msrs_fault_without_change() {
        with_ctx(crate::CHILD_PRIVILEGES, |ctx| {
            let before = *ctx.regs;
            assert_eq!(ctx.write(IA32_EFER, 1 << 12), None, "SVME");
            assert_eq!(ctx.write(IA32_LSTAR, 0x0000_8000_0000_0000), None);
            assert_eq!(ctx.write(IA32_PAT, 0x02), None);
            assert_eq!(ctx.write(IA32_TSC, 0), None);
            assert_eq!(ctx.write(IA32_APIC_BASE, 0), None);
            assert_eq!(ctx.write(HV_X64_MSR_VP_INDEX, 1), None);
            assert_eq!(
                ctx.write(HV_X64_MSR_HYPERCALL, 0x1004),
                None,
                "reserved bit"
            );
            assert_eq!(ctx.write(0xC001_0114, 0), None, "VM_CR");
            assert_eq!(ctx.read(0x3A), None, "FEATURE_CONTROL");
            assert_eq!(ctx.read(0xC001_0117), None, "VM_HSAVE_PA");
            assert_eq!(*ctx.regs, before);
        });
    }

    #[test]
    fn hypercall_page_needs_a_guest_os_id() {
        with_ctx(crate::CHILD_PRIVILEGES, |ctx| {
            assert_eq!(
                ctx.write(HV_X64_MSR_HYPERCALL, 0x5001),
                Some(MsrEffect::None)
            );
            assert_eq!(ctx.read(HV_X64_MSR_HYPERCALL), Some(0x5000));
            ctx.write(HV_X64_MSR_GUEST_OS_ID, 0x8100).unwrap();
            assert_eq!(
                ctx.write(HV_X64_MSR_HYPERCALL, 0x5001),
                Some(MsrEffect::InstallHypercallPage(0x5000))
            );
            ctx.write(HV_X64_MSR_GUEST_OS_ID, 0).unwrap();
            assert_eq!(ctx.read(HV_X64_MSR_HYPERCALL), Some(0x5000));
        });
    }

    #[test]
    fn synthetic_msrs_need_their_privileges() {
        with_ctx(PartitionPrivileges::empty(), |ctx| {
            assert_eq!(ctx.read(HV_X64_MSR_GUEST_OS_ID), None);
            assert_eq!(ctx.read(HV_X64_MSR_VP_INDEX), None);
            assert_eq!(ctx.write(HV_X64_MSR_GUEST_OS_ID, 1), None);
        });
    }
}
