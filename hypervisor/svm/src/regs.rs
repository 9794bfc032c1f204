//! Architectural register bits the VMCB holds (AMD APM vol. 2, ch. 3 and 15).

use bitflags::bitflags;

bitflags! {
    /// CR0 (APM vol. 2, 3.1.1). Bits the table does not name are kept as stored.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct Cr0: u64 {
        /// Protection enable.
        const PE = 1 << 0;
        /// Monitor coprocessor.
        const MP = 1 << 1;
        /// Emulate coprocessor.
        const EM = 1 << 2;
        /// Task switched.
        const TS = 1 << 3;
        /// Extension type (reads as 1).
        const ET = 1 << 4;
        /// Numeric error (native x87 error reporting).
        const NE = 1 << 5;
        /// Write protect.
        const WP = 1 << 16;
        /// Alignment mask.
        const AM = 1 << 18;
        /// Not write-through.
        const NW = 1 << 29;
        /// Cache disable.
        const CD = 1 << 30;
        /// Paging.
        const PG = 1 << 31;

        const _ = !0;
    }
}

bitflags! {
    /// CR4 (APM vol. 2, 3.1.3). Bits the table does not name are kept as stored.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct Cr4: u64 {
        /// Virtual-8086 mode extensions.
        const VME = 1 << 0;
        /// Protected-mode virtual interrupts.
        const PVI = 1 << 1;
        /// Time-stamp disable.
        const TSD = 1 << 2;
        /// Debugging extensions.
        const DE = 1 << 3;
        /// Page-size extensions.
        const PSE = 1 << 4;
        /// Physical-address extension (required for long mode).
        const PAE = 1 << 5;
        /// Machine-check enable.
        const MCE = 1 << 6;
        /// Page-global enable.
        const PGE = 1 << 7;
        /// Performance-counter enable.
        const PCE = 1 << 8;
        /// FXSAVE/FXRSTOR support.
        const OSFXSR = 1 << 9;
        /// Unmasked SIMD exception support.
        const OSXMMEXCPT = 1 << 10;
        /// User-mode instruction prevention.
        const UMIP = 1 << 11;
        /// 5-level paging.
        const LA57 = 1 << 12;
        /// RDFSBASE/WRFSBASE and friends.
        const FSGSBASE = 1 << 16;
        /// Process-context identifiers.
        const PCIDE = 1 << 17;
        /// XSAVE and extended states.
        const OSXSAVE = 1 << 18;
        /// Supervisor-mode execution prevention.
        const SMEP = 1 << 20;
        /// Supervisor-mode access prevention.
        const SMAP = 1 << 21;
        /// Protection keys.
        const PKE = 1 << 22;
        /// Control-flow enforcement (shadow stacks).
        const CET = 1 << 23;

        const _ = !0;
    }
}

bitflags! {
    /// EFER, MSR 0xC000_0080 (APM vol. 2, 3.1.7). Bits the table does not name are kept.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct Efer: u64 {
        /// SYSCALL/SYSRET enable.
        const SCE = 1 << 0;
        /// Long mode enable.
        const LME = 1 << 8;
        /// Long mode active.
        const LMA = 1 << 10;
        /// No-execute enable.
        const NXE = 1 << 11;
        /// Secure virtual machine enable: must be set in a guest's EFER too, or VMRUN fails.
        const SVME = 1 << 12;
        /// Long-mode segment limit enable.
        const LMSLE = 1 << 13;
        /// Fast FXSAVE/FXRSTOR.
        const FFXSR = 1 << 14;
        /// Translation cache extension.
        const TCE = 1 << 15;

        const _ = !0;
    }
}

/// RFLAGS bit 1, which always reads as 1.
pub const RFLAGS_FIXED: u64 = 1 << 1;
/// RFLAGS.IF.
pub const RFLAGS_IF: u64 = 1 << 9;

/// DR6 value after reset (APM vol. 2, 13.1.1.5).
pub const DR6_INIT: u64 = 0xFFFF_0FF0;
/// DR7 value after reset.
pub const DR7_INIT: u64 = 0x400;

/// Power-on default of the PAT MSR: WB, WT, UC-, UC repeated (APM vol. 2, 7.8.1).
pub const PAT_DEFAULT: u64 = 0x0007_0406_0007_0406;
