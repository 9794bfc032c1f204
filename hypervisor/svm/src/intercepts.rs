//! Intercept vectors of the VMCB control area (AMD APM vol. 2, appendix B, table B-1).

use bitflags::bitflags;

bitflags! {
    /// VMCB offset 0x000: CR reads (bits 15:0, one per CRn) and writes (bits 31:16).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct CrIntercepts: u32 {
        /// Reads of CR0.
        const CR0_READ = 1 << 0;
        /// Reads of CR2.
        const CR2_READ = 1 << 2;
        /// Reads of CR3.
        const CR3_READ = 1 << 3;
        /// Reads of CR4.
        const CR4_READ = 1 << 4;
        /// Reads of CR8.
        const CR8_READ = 1 << 8;
        /// Writes of CR0.
        const CR0_WRITE = 1 << 16;
        /// Writes of CR2.
        const CR2_WRITE = 1 << 18;
        /// Writes of CR3.
        const CR3_WRITE = 1 << 19;
        /// Writes of CR4.
        const CR4_WRITE = 1 << 20;
        /// Writes of CR8.
        const CR8_WRITE = 1 << 24;

        const _ = !0;
    }
}

impl CrIntercepts {
    /// The read intercept of CR`n`, or `None` if `n > 15`.
    pub const fn read(n: u8) -> Option<Self> {
        if n < 16 {
            Some(Self::from_bits_retain(1 << n))
        } else {
            None
        }
    }

    /// The write intercept of CR`n`, or `None` if `n > 15`.
    pub const fn write(n: u8) -> Option<Self> {
        if n < 16 {
            Some(Self::from_bits_retain(1 << (n + 16)))
        } else {
            None
        }
    }
}

bitflags! {
    /// VMCB offset 0x004: DR reads (bits 15:0, one per DRn) and writes (bits 31:16).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct DrIntercepts: u32 {
        /// Reads of DR0-DR15.
        const ALL_READS = 0x0000_FFFF;
        /// Writes of DR0-DR15.
        const ALL_WRITES = 0xFFFF_0000;

        const _ = !0;
    }
}

impl DrIntercepts {
    /// The read intercept of DR`n`, or `None` if `n > 15`.
    pub const fn read(n: u8) -> Option<Self> {
        if n < 16 {
            Some(Self::from_bits_retain(1 << n))
        } else {
            None
        }
    }

    /// The write intercept of DR`n`, or `None` if `n > 15`.
    pub const fn write(n: u8) -> Option<Self> {
        if n < 16 {
            Some(Self::from_bits_retain(1 << (n + 16)))
        } else {
            None
        }
    }
}

bitflags! {
    /// VMCB offset 0x008: one bit per exception vector 0-31.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct ExceptionIntercepts: u32 {
        /// #DE, divide error (0).
        const DE = 1 << 0;
        /// #DB, debug (1).
        const DB = 1 << 1;
        /// #BP, breakpoint (3).
        const BP = 1 << 3;
        /// #OF, overflow (4).
        const OF = 1 << 4;
        /// #BR, bound range (5).
        const BR = 1 << 5;
        /// #UD, invalid opcode (6).
        const UD = 1 << 6;
        /// #NM, device not available (7).
        const NM = 1 << 7;
        /// #DF, double fault (8).
        const DF = 1 << 8;
        /// #TS, invalid TSS (10).
        const TS = 1 << 10;
        /// #NP, segment not present (11).
        const NP = 1 << 11;
        /// #SS, stack fault (12).
        const SS = 1 << 12;
        /// #GP, general protection (13).
        const GP = 1 << 13;
        /// #PF, page fault (14).
        const PF = 1 << 14;
        /// #MF, x87 floating point (16).
        const MF = 1 << 16;
        /// #AC, alignment check (17).
        const AC = 1 << 17;
        /// #MC, machine check (18).
        const MC = 1 << 18;
        /// #XF, SIMD floating point (19).
        const XF = 1 << 19;
        /// #CP, control protection (21).
        const CP = 1 << 21;
        /// #HV, hypervisor injection (28).
        const HV = 1 << 28;
        /// #VC, VMM communication (29).
        const VC = 1 << 29;
        /// #SX, security (30).
        const SX = 1 << 30;

        const _ = !0;
    }
}

impl ExceptionIntercepts {
    /// The intercept bit of exception `vector`, or `None` if `vector > 31`.
    pub const fn vector(vector: u8) -> Option<Self> {
        if vector < 32 {
            Some(Self::from_bits_retain(1 << vector))
        } else {
            None
        }
    }
}

bitflags! {
    /// VMCB offset 0x00C: first vector of miscellaneous intercepts.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct Misc1Intercepts: u32 {
        /// Physical INTR (maskable interrupt).
        const INTR = 1 << 0;
        /// Physical NMI.
        const NMI = 1 << 1;
        /// Physical SMI.
        const SMI = 1 << 2;
        /// Physical INIT.
        const INIT = 1 << 3;
        /// Virtual INTR (interrupt window).
        const VINTR = 1 << 4;
        /// CR0 writes that change bits other than CR0.TS or CR0.MP.
        const CR0_SELECTIVE_WRITE = 1 << 5;
        /// Reads of IDTR (SIDT).
        const IDTR_READ = 1 << 6;
        /// Reads of GDTR (SGDT).
        const GDTR_READ = 1 << 7;
        /// Reads of LDTR (SLDT).
        const LDTR_READ = 1 << 8;
        /// Reads of TR (STR).
        const TR_READ = 1 << 9;
        /// Writes of IDTR (LIDT).
        const IDTR_WRITE = 1 << 10;
        /// Writes of GDTR (LGDT).
        const GDTR_WRITE = 1 << 11;
        /// Writes of LDTR (LLDT).
        const LDTR_WRITE = 1 << 12;
        /// Writes of TR (LTR).
        const TR_WRITE = 1 << 13;
        /// RDTSC.
        const RDTSC = 1 << 14;
        /// RDPMC.
        const RDPMC = 1 << 15;
        /// PUSHF.
        const PUSHF = 1 << 16;
        /// POPF.
        const POPF = 1 << 17;
        /// CPUID.
        const CPUID = 1 << 18;
        /// RSM.
        const RSM = 1 << 19;
        /// IRET.
        const IRET = 1 << 20;
        /// INTn (software interrupt).
        const INTN = 1 << 21;
        /// INVD.
        const INVD = 1 << 22;
        /// PAUSE.
        const PAUSE = 1 << 23;
        /// HLT.
        const HLT = 1 << 24;
        /// INVLPG.
        const INVLPG = 1 << 25;
        /// INVLPGA.
        const INVLPGA = 1 << 26;
        /// IN/OUT/INS/OUTS, filtered by the I/O permission map.
        const IOIO_PROT = 1 << 27;
        /// RDMSR/WRMSR, filtered by the MSR permission map.
        const MSR_PROT = 1 << 28;
        /// Task switches.
        const TASK_SWITCH = 1 << 29;
        /// FERR_FREEZE (processor freeze on FERR).
        const FERR_FREEZE = 1 << 30;
        /// Shutdown (triple fault) events.
        const SHUTDOWN = 1 << 31;
    }
}

bitflags! {
    /// VMCB offset 0x010: second vector of miscellaneous intercepts.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct Misc2Intercepts: u32 {
        /// VMRUN; must be set or VMRUN fails with VMEXIT_INVALID.
        const VMRUN = 1 << 0;
        /// VMMCALL.
        const VMMCALL = 1 << 1;
        /// VMLOAD.
        const VMLOAD = 1 << 2;
        /// VMSAVE.
        const VMSAVE = 1 << 3;
        /// STGI.
        const STGI = 1 << 4;
        /// CLGI.
        const CLGI = 1 << 5;
        /// SKINIT.
        const SKINIT = 1 << 6;
        /// RDTSCP.
        const RDTSCP = 1 << 7;
        /// ICEBP (INT1).
        const ICEBP = 1 << 8;
        /// WBINVD and WBNOINVD.
        const WBINVD = 1 << 9;
        /// MONITOR and MONITORX.
        const MONITOR = 1 << 10;
        /// MWAIT and MWAITX, unconditionally.
        const MWAIT = 1 << 11;
        /// MWAIT and MWAITX, only if the monitor hardware is armed.
        const MWAIT_ARMED = 1 << 12;
        /// XSETBV.
        const XSETBV = 1 << 13;
        /// RDPRU.
        const RDPRU = 1 << 14;
        /// Writes of EFER, trapped after the instruction completes.
        const EFER_WRITE_TRAP = 1 << 15;
        /// Writes of CR0-CR15, trapped after the instruction completes (bits 31:16).
        const CR_WRITE_TRAPS = 0xFFFF_0000;
    }
}

bitflags! {
    /// VMCB offset 0x014: third vector of miscellaneous intercepts (newer processors).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct Misc3Intercepts: u32 {
        /// INVLPGB.
        const INVLPGB = 1 << 0;
        /// Illegally specified INVLPGB.
        const INVLPGB_ILLEGAL = 1 << 1;
        /// INVPCID.
        const INVPCID = 1 << 2;
        /// MCOMMIT.
        const MCOMMIT = 1 << 3;
        /// TLBSYNC.
        const TLBSYNC = 1 << 4;

        const _ = !0;
    }
}

bitflags! {
    /// VMCB offset 0x0C0: clean bits. A set bit tells the CPU that the matching VMCB fields
    /// are unchanged since the last VMRUN of this VMCB on this CPU, so it may use cached copies.
    /// Clear a bit whenever its fields are written; zero is always correct.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct CleanBits: u32 {
        /// Intercept vectors, TSC offset, PAUSE filter count.
        const INTERCEPTS = 1 << 0;
        /// IOPM_BASE_PA and MSRPM_BASE_PA.
        const IOPM = 1 << 1;
        /// Guest ASID.
        const ASID = 1 << 2;
        /// V_TPR, V_IRQ, V_INTR_PRIO, V_IGN_TPR, V_INTR_MASKING, V_INTR_VECTOR.
        const TPR = 1 << 3;
        /// NP_ENABLE, N_CR3, G_PAT.
        const NP = 1 << 4;
        /// CR0, CR3, CR4, EFER.
        const CRX = 1 << 5;
        /// DR6, DR7.
        const DRX = 1 << 6;
        /// GDTR, IDTR.
        const DT = 1 << 7;
        /// CS, DS, SS, ES and CPL.
        const SEG = 1 << 8;
        /// CR2.
        const CR2 = 1 << 9;
        /// DBGCTL and the last-branch records.
        const LBR = 1 << 10;
        /// AVIC fields.
        const AVIC = 1 << 11;
        /// S_CET, SSP, ISST_ADDR.
        const CET = 1 << 12;

        const _ = !0;
    }
}
