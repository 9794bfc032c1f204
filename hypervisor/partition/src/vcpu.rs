//! Virtual processors: architecture-neutral register state, addressed by TLFS register
//! names (`HV_REGISTER_NAME`), and run state.
//!
//! **Who owns the state:** while a vCPU is not in guest mode, [`VcpuRegisters`] is the
//! authority. The backend loads it into its VMCB/VMCS (and the GPR save area) before entering
//! the guest and stores it back after every exit, before it calls
//! [`crate::handle_exit`]; whatever `handle_exit` or a register hypercall changed is then
//! loaded at the next entry. A backend may optimise this (copy only what changed) as long as
//! the observable result is the same.

use hypercall::{HvError, RegisterName, RegisterValue};

/// General-purpose registers, in x86 encoding order (which is also the TLFS order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum Gpr {
    /// RAX.
    Rax = 0,
    /// RCX.
    Rcx = 1,
    /// RDX.
    Rdx = 2,
    /// RBX.
    Rbx = 3,
    /// RSP.
    Rsp = 4,
    /// RBP.
    Rbp = 5,
    /// RSI.
    Rsi = 6,
    /// RDI.
    Rdi = 7,
    /// R8.
    R8 = 8,
    /// R9.
    R9 = 9,
    /// R10.
    R10 = 10,
    /// R11.
    R11 = 11,
    /// R12.
    R12 = 12,
    /// R13.
    R13 = 13,
    /// R14.
    R14 = 14,
    /// R15.
    R15 = 15,
}

/// A segment register as `HV_X64_SEGMENT_REGISTER` holds it.
///
/// `attributes` uses the TLFS layout, which is bits 40..47 and 52..55 of a descriptor
/// packed into 16 bits: type (3:0), S (4), DPL (6:5), P (7), AVL (12), L (13), D/B (14),
/// G (15). (SVM's VMCB packs the same bits into 12; VMX's access rights are this value plus
/// an "unusable" bit 16: the backends convert.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SegmentRegister {
    /// Base address.
    pub base: u64,
    /// Limit, in bytes (already scaled by G).
    pub limit: u32,
    /// Selector.
    pub selector: u16,
    /// Attributes (layout above).
    pub attributes: u16,
}

impl SegmentRegister {
    /// The 128-bit `HV_X64_SEGMENT_REGISTER` value: base, then limit, selector, attributes.
    #[must_use]
    pub const fn to_value(self) -> RegisterValue {
        RegisterValue {
            low: self.base,
            high: self.limit as u64 | (self.selector as u64) << 32 | (self.attributes as u64) << 48,
        }
    }

    /// The segment register a 128-bit value describes.
    #[must_use]
    pub const fn from_value(value: RegisterValue) -> Self {
        Self {
            base: value.low,
            limit: value.high as u32,
            selector: (value.high >> 32) as u16,
            attributes: (value.high >> 48) as u16,
        }
    }
}

/// A descriptor-table register (GDTR, IDTR) as `HV_X64_TABLE_REGISTER` holds it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TableRegister {
    /// Base address.
    pub base: u64,
    /// Limit.
    pub limit: u16,
}

impl TableRegister {
    /// The 128-bit value: three padding words, the limit, then the base.
    #[must_use]
    pub const fn to_value(self) -> RegisterValue {
        RegisterValue {
            low: (self.limit as u64) << 48,
            high: self.base,
        }
    }

    /// The table register a 128-bit value describes (padding ignored).
    #[must_use]
    pub const fn from_value(value: RegisterValue) -> Self {
        Self {
            base: value.high,
            limit: (value.low >> 48) as u16,
        }
    }
}

/// `HV_REGISTER_NAME` values of the registers Mica implements (TLFS "Virtual Processor
/// Register Names", x64).
pub mod names {
    /// `HvX64RegisterRax`; RCX..R15 follow in encoding order (0x00020001..0x0002000F).
    pub const RAX: u32 = 0x0002_0000;
    /// `HvX64RegisterR15`.
    pub const R15: u32 = 0x0002_000F;
    /// `HvX64RegisterRip`.
    pub const RIP: u32 = 0x0002_0010;
    /// `HvX64RegisterRflags`.
    pub const RFLAGS: u32 = 0x0002_0011;
    /// `HvX64RegisterCr0`.
    pub const CR0: u32 = 0x0004_0000;
    /// `HvX64RegisterCr2`.
    pub const CR2: u32 = 0x0004_0001;
    /// `HvX64RegisterCr3`.
    pub const CR3: u32 = 0x0004_0002;
    /// `HvX64RegisterCr4`.
    pub const CR4: u32 = 0x0004_0003;
    /// `HvX64RegisterCr8`.
    pub const CR8: u32 = 0x0004_0004;
    /// `HvX64RegisterDr0`; DR1..DR3 follow (0x00050001..0x00050003).
    pub const DR0: u32 = 0x0005_0000;
    /// `HvX64RegisterDr3`.
    pub const DR3: u32 = 0x0005_0003;
    /// `HvX64RegisterDr6`.
    pub const DR6: u32 = 0x0005_0004;
    /// `HvX64RegisterDr7`.
    pub const DR7: u32 = 0x0005_0005;
    /// `HvX64RegisterEs`; CS, SS, DS, FS, GS, LDTR, TR follow (0x00060001..0x00060007).
    pub const ES: u32 = 0x0006_0000;
    /// `HvX64RegisterCs`.
    pub const CS: u32 = 0x0006_0001;
    /// `HvX64RegisterSs`.
    pub const SS: u32 = 0x0006_0002;
    /// `HvX64RegisterDs`.
    pub const DS: u32 = 0x0006_0003;
    /// `HvX64RegisterFs`.
    pub const FS: u32 = 0x0006_0004;
    /// `HvX64RegisterGs`.
    pub const GS: u32 = 0x0006_0005;
    /// `HvX64RegisterLdtr`.
    pub const LDTR: u32 = 0x0006_0006;
    /// `HvX64RegisterTr`.
    pub const TR: u32 = 0x0006_0007;
    /// `HvX64RegisterIdtr`.
    pub const IDTR: u32 = 0x0007_0000;
    /// `HvX64RegisterGdtr`.
    pub const GDTR: u32 = 0x0007_0001;
    /// `HvX64RegisterEfer`.
    pub const EFER: u32 = 0x0008_0001;
    /// `HvX64RegisterKernelGsBase`.
    pub const KERNEL_GS_BASE: u32 = 0x0008_0002;
    /// `HvX64RegisterApicBase`.
    pub const APIC_BASE: u32 = 0x0008_0003;
    /// `HvX64RegisterPat`.
    pub const PAT: u32 = 0x0008_0004;
    /// `HvX64RegisterSysenterCs`.
    pub const SYSENTER_CS: u32 = 0x0008_0005;
    /// `HvX64RegisterSysenterEip`.
    pub const SYSENTER_EIP: u32 = 0x0008_0006;
    /// `HvX64RegisterSysenterEsp`.
    pub const SYSENTER_ESP: u32 = 0x0008_0007;
    /// `HvX64RegisterStar`.
    pub const STAR: u32 = 0x0008_0008;
    /// `HvX64RegisterLstar`.
    pub const LSTAR: u32 = 0x0008_0009;
    /// `HvX64RegisterCstar`.
    pub const CSTAR: u32 = 0x0008_000A;
    /// `HvX64RegisterSfmask`.
    pub const SFMASK: u32 = 0x0008_000B;
    /// `HvRegisterVpIndex` (read-only).
    pub const VP_INDEX: u32 = 0x0009_0003;
}

/// The register slots behind TLFS names, shared by the `&` and `&mut` accessors.
macro_rules! segment_slot {
    ($regs:expr, $name:expr, $($m:tt)*) => {
        match $name {
            names::ES => Some(&$($m)* $regs.es),
            names::CS => Some(&$($m)* $regs.cs),
            names::SS => Some(&$($m)* $regs.ss),
            names::DS => Some(&$($m)* $regs.ds),
            names::FS => Some(&$($m)* $regs.fs),
            names::GS => Some(&$($m)* $regs.gs),
            names::LDTR => Some(&$($m)* $regs.ldtr),
            names::TR => Some(&$($m)* $regs.tr),
            _ => None,
        }
    };
}

macro_rules! u64_slot {
    ($regs:expr, $name:expr, $($m:tt)*) => {
        match $name {
            names::RAX..=names::R15 => Some(&$($m)* $regs.gprs[($name - names::RAX) as usize]),
            names::RIP => Some(&$($m)* $regs.rip),
            names::RFLAGS => Some(&$($m)* $regs.rflags),
            names::CR0 => Some(&$($m)* $regs.cr0),
            names::CR2 => Some(&$($m)* $regs.cr2),
            names::CR3 => Some(&$($m)* $regs.cr3),
            names::CR4 => Some(&$($m)* $regs.cr4),
            names::CR8 => Some(&$($m)* $regs.cr8),
            names::DR0..=names::DR3 => Some(&$($m)* $regs.dr[($name - names::DR0) as usize]),
            names::DR6 => Some(&$($m)* $regs.dr6),
            names::DR7 => Some(&$($m)* $regs.dr7),
            names::EFER => Some(&$($m)* $regs.efer),
            names::KERNEL_GS_BASE => Some(&$($m)* $regs.kernel_gs_base),
            names::APIC_BASE => Some(&$($m)* $regs.apic_base),
            names::PAT => Some(&$($m)* $regs.pat),
            names::SYSENTER_CS => Some(&$($m)* $regs.sysenter_cs),
            names::SYSENTER_EIP => Some(&$($m)* $regs.sysenter_eip),
            names::SYSENTER_ESP => Some(&$($m)* $regs.sysenter_esp),
            names::STAR => Some(&$($m)* $regs.star),
            names::LSTAR => Some(&$($m)* $regs.lstar),
            names::CSTAR => Some(&$($m)* $regs.cstar),
            names::SFMASK => Some(&$($m)* $regs.sfmask),
            _ => None,
        }
    };
}

/// The architectural state of one vCPU that Mica keeps outside the hardware.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VcpuRegisters {
    /// RAX..R15, indexed by [`Gpr`].
    pub gprs: [u64; 16],
    /// RIP.
    pub rip: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// CR0.
    pub cr0: u64,
    /// CR2.
    pub cr2: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// CR8 (TPR).
    pub cr8: u64,
    /// DR0..DR3.
    pub dr: [u64; 4],
    /// DR6.
    pub dr6: u64,
    /// DR7.
    pub dr7: u64,
    /// EFER as the guest sees it (the backend adds SVME/whatever the hardware needs).
    pub efer: u64,
    /// ES.
    pub es: SegmentRegister,
    /// CS.
    pub cs: SegmentRegister,
    /// SS.
    pub ss: SegmentRegister,
    /// DS.
    pub ds: SegmentRegister,
    /// FS (its base is IA32_FS_BASE).
    pub fs: SegmentRegister,
    /// GS (its base is IA32_GS_BASE).
    pub gs: SegmentRegister,
    /// LDTR.
    pub ldtr: SegmentRegister,
    /// TR.
    pub tr: SegmentRegister,
    /// GDTR.
    pub gdtr: TableRegister,
    /// IDTR.
    pub idtr: TableRegister,
    /// IA32_PAT.
    pub pat: u64,
    /// IA32_KERNEL_GS_BASE.
    pub kernel_gs_base: u64,
    /// IA32_STAR.
    pub star: u64,
    /// IA32_LSTAR.
    pub lstar: u64,
    /// IA32_CSTAR.
    pub cstar: u64,
    /// IA32_FMASK (SFMASK).
    pub sfmask: u64,
    /// IA32_SYSENTER_CS.
    pub sysenter_cs: u64,
    /// IA32_SYSENTER_ESP.
    pub sysenter_esp: u64,
    /// IA32_SYSENTER_EIP.
    pub sysenter_eip: u64,
    /// IA32_APIC_BASE (read-only for the guest).
    pub apic_base: u64,
}

/// The power-on value of IA32_PAT (WB, WT, UC-, UC, repeated).
pub const PAT_DEFAULT: u64 = 0x0007_0406_0007_0406;
/// The default xAPIC base with the global-enable bit (11).
pub const APIC_BASE_DEFAULT: u64 = 0xFEE0_0000 | 1 << 11;
/// IA32_APIC_BASE bit 8: this is the bootstrap processor.
pub const APIC_BASE_BSP: u64 = 1 << 8;

impl VcpuRegisters {
    /// The reset state of a vCPU (Intel SDM/AMD APM "processor state after reset"):
    /// real mode at F000:FFF0, RFLAGS = 2, CR0 = ET|CD|NW, PAT default, APIC enabled (BSP
    /// for vCPU 0). Loaders replace it with a 64-bit entry state.
    #[must_use]
    pub fn reset(vp_index: u32) -> Self {
        let data = SegmentRegister {
            base: 0,
            limit: 0xFFFF,
            selector: 0,
            attributes: 0x93,
        };
        Self {
            rip: 0xFFF0,
            rflags: 0x2,
            cr0: 0x6000_0010,
            dr6: 0xFFFF_0FF0,
            dr7: 0x400,
            es: data,
            cs: SegmentRegister {
                base: 0xFFFF_0000,
                limit: 0xFFFF,
                selector: 0xF000,
                attributes: 0x9B,
            },
            ss: data,
            ds: data,
            fs: data,
            gs: data,
            ldtr: SegmentRegister {
                attributes: 0x82,
                limit: 0xFFFF,
                ..SegmentRegister::default()
            },
            tr: SegmentRegister {
                attributes: 0x8B,
                limit: 0xFFFF,
                ..SegmentRegister::default()
            },
            gdtr: TableRegister {
                base: 0,
                limit: 0xFFFF,
            },
            idtr: TableRegister {
                base: 0,
                limit: 0xFFFF,
            },
            pat: PAT_DEFAULT,
            apic_base: APIC_BASE_DEFAULT | if vp_index == 0 { APIC_BASE_BSP } else { 0 },
            ..Self::default()
        }
    }

    /// A general-purpose register.
    #[must_use]
    pub const fn gpr(&self, gpr: Gpr) -> u64 {
        self.gprs[gpr as usize]
    }

    /// Sets a general-purpose register.
    pub const fn set_gpr(&mut self, gpr: Gpr, value: u64) {
        self.gprs[gpr as usize] = value;
    }

    fn segment(&self, name: u32) -> Option<&SegmentRegister> {
        segment_slot!(self, name,)
    }

    fn segment_mut(&mut self, name: u32) -> Option<&mut SegmentRegister> {
        segment_slot!(self, name, mut)
    }

    fn u64_ref(&self, name: u32) -> Option<&u64> {
        u64_slot!(self, name,)
    }

    fn u64_mut(&mut self, name: u32) -> Option<&mut u64> {
        u64_slot!(self, name, mut)
    }

    /// The value of register `name` (`HvRegisterVpIndex` is answered by
    /// [`Vcpu::get_register`], which knows the index).
    ///
    /// # Errors
    /// `InvalidParameter` for a name Mica does not implement.
    pub fn get(&self, name: RegisterName) -> Result<RegisterValue, HvError> {
        match name.0 {
            names::IDTR => Ok(self.idtr.to_value()),
            names::GDTR => Ok(self.gdtr.to_value()),
            n => {
                if let Some(segment) = self.segment(n) {
                    return Ok(segment.to_value());
                }
                self.u64_ref(n)
                    .map(|v| RegisterValue::from_u64(*v))
                    .ok_or(HvError::InvalidParameter)
            }
        }
    }

    /// Sets register `name`. 64-bit registers need the high quadword to be zero.
    ///
    /// # Errors
    /// `InvalidParameter` for a name Mica does not implement or a read-only one
    /// (APIC base), `InvalidRegisterValue` for a non-zero high quadword of a 64-bit
    /// register.
    pub fn set(&mut self, name: RegisterName, value: RegisterValue) -> Result<(), HvError> {
        match name.0 {
            names::IDTR => self.idtr = TableRegister::from_value(value),
            names::GDTR => self.gdtr = TableRegister::from_value(value),
            names::APIC_BASE => return Err(HvError::InvalidParameter),
            n => {
                if let Some(segment) = self.segment_mut(n) {
                    *segment = SegmentRegister::from_value(value);
                    return Ok(());
                }
                let slot = self.u64_mut(n).ok_or(HvError::InvalidParameter)?;
                if value.high != 0 {
                    return Err(HvError::InvalidRegisterValue);
                }
                *slot = value.low;
            }
        }
        Ok(())
    }
}

/// Whether a vCPU may be scheduled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RunState {
    /// Ready to run.
    Runnable,
    /// Executed HLT; not runnable until woken (interrupt or wake call).
    Halted,
    /// Its partition is not running (not started yet, or stopped).
    Stopped,
}

/// One virtual processor of a partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vcpu {
    index: u32,
    /// Register state (see the module docs for who owns it when).
    pub regs: VcpuRegisters,
    run_state: RunState,
}

impl Vcpu {
    /// A vCPU in reset state, stopped.
    #[must_use]
    pub fn new(index: u32) -> Self {
        Self {
            index,
            regs: VcpuRegisters::reset(index),
            run_state: RunState::Stopped,
        }
    }

    /// Its index within the partition (`HvRegisterVpIndex`, HV_X64_MSR_VP_INDEX).
    #[must_use]
    pub const fn index(&self) -> u32 {
        self.index
    }

    /// Its run state.
    #[must_use]
    pub const fn run_state(&self) -> RunState {
        self.run_state
    }

    pub(crate) fn set_run_state(&mut self, state: RunState) {
        self.run_state = state;
    }

    /// Register `name`, including the read-only `HvRegisterVpIndex`.
    ///
    /// # Errors
    /// As [`VcpuRegisters::get`].
    pub fn get_register(&self, name: RegisterName) -> Result<RegisterValue, HvError> {
        if name.0 == names::VP_INDEX {
            return Ok(RegisterValue::from_u64(u64::from(self.index)));
        }
        self.regs.get(name)
    }

    /// Sets register `name` (`HvRegisterVpIndex` is read-only).
    ///
    /// # Errors
    /// As [`VcpuRegisters::set`].
    pub fn set_register(
        &mut self,
        name: RegisterName,
        value: RegisterValue,
    ) -> Result<(), HvError> {
        if name.0 == names::VP_INDEX {
            return Err(HvError::InvalidParameter);
        }
        self.regs.set(name, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpr_names_follow_encoding_order() {
        let mut regs = VcpuRegisters::default();
        for i in 0..16u32 {
            regs.set(
                RegisterName(names::RAX + i),
                RegisterValue::from_u64(100 + u64::from(i)),
            )
            .unwrap();
        }
        assert_eq!(regs.gpr(Gpr::Rax), 100);
        assert_eq!(regs.gpr(Gpr::Rcx), 101);
        assert_eq!(regs.gpr(Gpr::Rsp), 104);
        assert_eq!(regs.gpr(Gpr::Rdi), 107);
        assert_eq!(regs.gpr(Gpr::R8), 108);
        assert_eq!(regs.gpr(Gpr::R15), 115);
    }

    #[test]
    fn tlfs_name_values() {
        assert_eq!(names::RAX, 0x0002_0000);
        assert_eq!(names::RIP, 0x0002_0010);
        assert_eq!(names::CR3, 0x0004_0002);
        assert_eq!(names::CS, 0x0006_0001);
        assert_eq!(names::GDTR, 0x0007_0001);
        assert_eq!(names::EFER, 0x0008_0001);
        assert_eq!(names::SFMASK, 0x0008_000B);
        assert_eq!(names::VP_INDEX, 0x0009_0003);
    }

    #[test]
    fn every_named_register_round_trips() {
        let mut regs = VcpuRegisters::default();
        let simple = [
            names::RIP,
            names::RFLAGS,
            names::CR0,
            names::CR2,
            names::CR3,
            names::CR4,
            names::CR8,
            names::DR0,
            names::DR3,
            names::DR6,
            names::DR7,
            names::EFER,
            names::KERNEL_GS_BASE,
            names::PAT,
            names::SYSENTER_CS,
            names::SYSENTER_EIP,
            names::SYSENTER_ESP,
            names::STAR,
            names::LSTAR,
            names::CSTAR,
            names::SFMASK,
        ];
        for (i, &name) in simple.iter().enumerate() {
            let value = RegisterValue::from_u64(0x1000 + i as u64);
            regs.set(RegisterName(name), value).unwrap();
            assert_eq!(regs.get(RegisterName(name)), Ok(value), "{name:#x}");
        }
        assert_eq!(regs.cr3, 0x1000 + 4);
        assert_eq!(regs.lstar, 0x1000 + 18);
        let cs = SegmentRegister {
            base: 0x1234,
            limit: 0xFFFF_FFFF,
            selector: 0x08,
            attributes: 0xA09B,
        };
        regs.set(RegisterName(names::CS), cs.to_value()).unwrap();
        assert_eq!(regs.cs, cs);
        assert_eq!(regs.get(RegisterName(names::CS)), Ok(cs.to_value()));
        let gdtr = TableRegister {
            base: 0xFFFF_8000_0000_1000,
            limit: 0x27,
        };
        regs.set(RegisterName(names::GDTR), gdtr.to_value())
            .unwrap();
        assert_eq!(regs.gdtr, gdtr);
        // TLFS layout: limit in bits 63:48 of the low quadword, base in the high one.
        assert_eq!(gdtr.to_value().low, 0x27 << 48);
        assert_eq!(gdtr.to_value().high, 0xFFFF_8000_0000_1000);
    }

    #[test]
    fn unknown_read_only_and_oversized_values_are_rejected() {
        let mut vcpu = Vcpu::new(3);
        for bad in [
            0,
            0x0002_0012,
            0x0004_0005,
            0x0006_0008,
            0x0009_0000,
            u32::MAX,
        ] {
            assert_eq!(
                vcpu.get_register(RegisterName(bad)),
                Err(HvError::InvalidParameter),
                "{bad:#x}"
            );
            assert_eq!(
                vcpu.set_register(RegisterName(bad), RegisterValue::from_u64(1)),
                Err(HvError::InvalidParameter)
            );
        }
        assert_eq!(
            vcpu.get_register(RegisterName(names::VP_INDEX)),
            Ok(RegisterValue::from_u64(3))
        );
        assert_eq!(
            vcpu.set_register(RegisterName(names::VP_INDEX), RegisterValue::from_u64(0)),
            Err(HvError::InvalidParameter)
        );
        assert_eq!(
            vcpu.set_register(RegisterName(names::APIC_BASE), RegisterValue::from_u64(0)),
            Err(HvError::InvalidParameter)
        );
        assert_eq!(
            vcpu.set_register(RegisterName(names::RIP), RegisterValue { low: 1, high: 1 }),
            Err(HvError::InvalidRegisterValue)
        );
    }

    #[test]
    fn reset_state_is_the_architectural_one() {
        let bsp = VcpuRegisters::reset(0);
        assert_eq!(bsp.cs.selector, 0xF000);
        assert_eq!(bsp.cs.base + bsp.rip, 0xFFFF_FFF0);
        assert_eq!(bsp.rflags, 2);
        assert_ne!(bsp.apic_base & APIC_BASE_BSP, 0);
        assert_eq!(VcpuRegisters::reset(1).apic_base & APIC_BASE_BSP, 0);
    }
}
