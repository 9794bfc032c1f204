//! #VMEXIT decoding (AMD APM vol. 2, 15.6-15.13 and appendix C).
//!
//! [`SvmExit::decode`] turns EXITCODE, EXITINFO1/2, nRIP and the saved guest RIP into a typed
//! exit. The VMCB is written by the CPU, but the values in it derive from what the guest did,
//! so decoding never panics and reports contradictory exit information as a [`DecodeError`].
//!
//! Next RIP: with NRIP-save the CPU stores it in the VMCB's nRIP field; without it (QEMU TCG)
//! the decoder adds the fixed length of the intercepted instruction (VMMCALL 3, CPUID 2,
//! RDMSR/WRMSR 2, HLT 1). IOIO exits always carry the next RIP in EXITINFO2.

use thiserror::Error;

use crate::vmcb::Vmcb;

/// An EXITCODE value (appendix C).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExitCode(pub u64);

impl ExitCode {
    /// Read of CR0 (CRn read is 0x00 + n).
    pub const CR0_READ: Self = Self(0x00);
    /// Write of CR0 (CRn write is 0x10 + n).
    pub const CR0_WRITE: Self = Self(0x10);
    /// Read of DR0 (DRn read is 0x20 + n).
    pub const DR0_READ: Self = Self(0x20);
    /// Write of DR0 (DRn write is 0x30 + n).
    pub const DR0_WRITE: Self = Self(0x30);
    /// Exception vector 0 (vector v is 0x40 + v).
    pub const EXCEPTION_BASE: Self = Self(0x40);
    /// Physical INTR.
    pub const INTR: Self = Self(0x60);
    /// Physical NMI.
    pub const NMI: Self = Self(0x61);
    /// Physical SMI.
    pub const SMI: Self = Self(0x62);
    /// Physical INIT.
    pub const INIT: Self = Self(0x63);
    /// Virtual interrupt window.
    pub const VINTR: Self = Self(0x64);
    /// Selective CR0 write.
    pub const CR0_SEL_WRITE: Self = Self(0x65);
    /// RDTSC.
    pub const RDTSC: Self = Self(0x6E);
    /// RDPMC.
    pub const RDPMC: Self = Self(0x6F);
    /// CPUID.
    pub const CPUID: Self = Self(0x72);
    /// RSM.
    pub const RSM: Self = Self(0x73);
    /// IRET.
    pub const IRET: Self = Self(0x74);
    /// INTn.
    pub const SWINT: Self = Self(0x75);
    /// INVD.
    pub const INVD: Self = Self(0x76);
    /// PAUSE.
    pub const PAUSE: Self = Self(0x77);
    /// HLT.
    pub const HLT: Self = Self(0x78);
    /// INVLPG.
    pub const INVLPG: Self = Self(0x79);
    /// INVLPGA.
    pub const INVLPGA: Self = Self(0x7A);
    /// IN/OUT/INS/OUTS.
    pub const IOIO: Self = Self(0x7B);
    /// RDMSR/WRMSR.
    pub const MSR: Self = Self(0x7C);
    /// Task switch.
    pub const TASK_SWITCH: Self = Self(0x7D);
    /// FERR_FREEZE.
    pub const FERR_FREEZE: Self = Self(0x7E);
    /// Shutdown (triple fault).
    pub const SHUTDOWN: Self = Self(0x7F);
    /// VMRUN.
    pub const VMRUN: Self = Self(0x80);
    /// VMMCALL.
    pub const VMMCALL: Self = Self(0x81);
    /// VMLOAD.
    pub const VMLOAD: Self = Self(0x82);
    /// VMSAVE.
    pub const VMSAVE: Self = Self(0x83);
    /// STGI.
    pub const STGI: Self = Self(0x84);
    /// CLGI.
    pub const CLGI: Self = Self(0x85);
    /// SKINIT.
    pub const SKINIT: Self = Self(0x86);
    /// RDTSCP.
    pub const RDTSCP: Self = Self(0x87);
    /// ICEBP.
    pub const ICEBP: Self = Self(0x88);
    /// WBINVD/WBNOINVD.
    pub const WBINVD: Self = Self(0x89);
    /// MONITOR/MONITORX.
    pub const MONITOR: Self = Self(0x8A);
    /// MWAIT/MWAITX.
    pub const MWAIT: Self = Self(0x8B);
    /// MWAIT/MWAITX with the monitor armed.
    pub const MWAIT_CONDITIONAL: Self = Self(0x8C);
    /// XSETBV.
    pub const XSETBV: Self = Self(0x8D);
    /// RDPRU.
    pub const RDPRU: Self = Self(0x8E);
    /// EFER write trap.
    pub const EFER_WRITE_TRAP: Self = Self(0x8F);
    /// Nested page fault.
    pub const NPF: Self = Self(0x400);
    /// Invalid guest state: VMRUN's consistency checks failed (-1).
    pub const INVALID: Self = Self(u64::MAX);
    /// VMRUN on a busy VMSA (SEV-ES; -2).
    pub const BUSY: Self = Self(u64::MAX - 1);

    /// Whether this is VMEXIT_INVALID. Only the low 32 bits are compared: QEMU writes
    /// 0x0000_0000_FFFF_FFFF, Bochs and hardware all ones.
    pub const fn is_invalid(self) -> bool {
        self.0 as u32 == u32::MAX
    }
}

/// Operand size of an I/O access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IoSize {
    /// 8 bits.
    Byte,
    /// 16 bits.
    Word,
    /// 32 bits.
    Dword,
}

impl IoSize {
    /// Size in bytes: 1, 2 or 4.
    pub const fn bytes(self) -> usize {
        match self {
            Self::Byte => 1,
            Self::Word => 2,
            Self::Dword => 4,
        }
    }
}

/// Address size of a string I/O instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressSize {
    /// 16-bit addressing.
    A16,
    /// 32-bit addressing.
    A32,
    /// 64-bit addressing.
    A64,
}

/// An intercepted IN, OUT, INS or OUTS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IoAccess {
    /// Port number.
    pub port: u16,
    /// Operand size.
    pub size: IoSize,
    /// OUT/OUTS (guest writes to the port) rather than IN/INS.
    pub write: bool,
    /// INS/OUTS.
    pub string: bool,
    /// REP prefix.
    pub rep: bool,
    /// Address size, if the CPU reports it (Bochs and hardware do, QEMU does not).
    pub address_size: Option<AddressSize>,
    /// RIP of the next instruction, from EXITINFO2.
    pub next_rip: u64,
}

/// Which translation a nested page fault happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NpfStage {
    /// Translating the guest's final physical address (EXITINFO1 bit 32).
    FinalTranslation,
    /// Translating a guest page-table entry's address during the guest's walk (bit 33).
    GuestTableWalk,
}

/// A nested page fault: the guest touched a GPA its nested tables do not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NestedPageFault {
    /// Faulting guest physical address (EXITINFO2).
    pub gpa: u64,
    /// The nested entry was present (a protection fault rather than a missing page).
    pub present: bool,
    /// The access was a write.
    pub write: bool,
    /// The access was a user-mode access.
    pub user: bool,
    /// A reserved bit was set in a nested entry.
    pub reserved: bool,
    /// The access was an instruction fetch.
    pub execute: bool,
    /// Which translation faulted.
    pub stage: NpfStage,
    /// EXITINFO1 as the CPU wrote it.
    pub raw_error_code: u64,
}

/// An SVM instruction the guest may not execute: the hypervisor injects #UD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SvmInstruction {
    /// VMRUN.
    Vmrun,
    /// VMLOAD.
    Vmload,
    /// VMSAVE.
    Vmsave,
    /// STGI.
    Stgi,
    /// CLGI.
    Clgi,
    /// SKINIT.
    Skinit,
    /// INVLPGA.
    Invlpga,
}

/// A decoded #VMEXIT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SvmExit {
    /// VMMCALL: a hypercall.
    Vmmcall {
        /// RIP after the VMMCALL.
        next_rip: u64,
    },
    /// Port I/O.
    Ioio(IoAccess),
    /// Nested page fault.
    Npf(NestedPageFault),
    /// HLT.
    Hlt {
        /// RIP after the HLT.
        next_rip: u64,
    },
    /// CPUID (the leaf is in the guest's RAX/RCX).
    Cpuid {
        /// RIP after the CPUID.
        next_rip: u64,
    },
    /// RDMSR or WRMSR (the MSR is in the guest's ECX).
    Msr {
        /// WRMSR rather than RDMSR.
        write: bool,
        /// RIP after the instruction.
        next_rip: u64,
    },
    /// Shutdown: the guest triple-faulted.
    Shutdown,
    /// A physical maskable interrupt arrived for the host.
    Intr,
    /// A physical NMI arrived for the host.
    Nmi,
    /// An intercepted exception; reflect it into the guest or handle it.
    Exception {
        /// Vector 0-31.
        vector: u8,
        /// Error code, for the vectors that push one.
        error_code: Option<u32>,
        /// For #PF, the faulting linear address (EXITINFO2; CR2 is not yet written).
        fault_address: Option<u64>,
    },
    /// An intercepted SVM instruction; the guest gets #UD.
    SvmInstruction(SvmInstruction),
    /// VMRUN refused the VMCB (VMEXIT_INVALID).
    Invalid,
    /// Any exit without a variant of its own.
    Unknown {
        /// EXITCODE.
        code: u64,
    },
}

/// Exit information that contradicts itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// IOIO EXITINFO1 size bits (6:4) do not have exactly one bit set.
    #[error("IOIO exit with size bits {0:#05b}")]
    IoioSize(u8),
    /// IOIO EXITINFO1 address-size bits (9:7) have more than one bit set.
    #[error("IOIO exit with address-size bits {0:#05b}")]
    IoioAddressSize(u8),
    /// MSR EXITINFO1 is neither 0 (RDMSR) nor 1 (WRMSR).
    #[error("MSR exit with EXITINFO1 {0:#x}")]
    MsrDirection(u64),
    /// NPF EXITINFO1 does not have exactly one of bits 32 (final) and 33 (table walk).
    #[error("NPF exit with EXITINFO1 {0:#x}")]
    NpfStage(u64),
    /// The next RIP is not 1-15 bytes after RIP.
    #[error("Next RIP {next_rip:#x} is not 1-15 bytes after RIP {rip:#x}")]
    NextRip {
        /// Guest RIP.
        rip: u64,
        /// Reported next RIP.
        next_rip: u64,
    },
    /// An exception's error code in EXITINFO1 does not fit 32 bits.
    #[error("Exception error code {0:#x} wider than 32 bits")]
    ErrorCode(u64),
}

const VMMCALL_LEN: u8 = 3;
const CPUID_LEN: u8 = 2;
const MSR_LEN: u8 = 2;
const HLT_LEN: u8 = 1;
const MAX_INSN_LEN: u64 = 15;

const IOIO_IN: u64 = 1 << 0;
const IOIO_STRING: u64 = 1 << 2;
const IOIO_REP: u64 = 1 << 3;
const NPF_FINAL: u64 = 1 << 32;
const NPF_WALK: u64 = 1 << 33;
const PF_VECTOR: u8 = 14;

impl SvmExit {
    /// Decodes the exit recorded in `vmcb`. `nrip_supported` is the CPU's NRIP-save feature
    /// (CPUID Fn8000_000A EDX bit 3): only then is the VMCB's nRIP field used.
    pub fn decode(vmcb: &Vmcb, nrip_supported: bool) -> Result<Self, DecodeError> {
        let c = &vmcb.control;
        let code = ExitCode(c.exit_code);
        if code.is_invalid() {
            return Ok(Self::Invalid);
        }
        let exit = match code {
            ExitCode::VMMCALL => Self::Vmmcall {
                next_rip: next_rip(vmcb, nrip_supported, VMMCALL_LEN)?,
            },
            ExitCode::CPUID => Self::Cpuid {
                next_rip: next_rip(vmcb, nrip_supported, CPUID_LEN)?,
            },
            ExitCode::HLT => Self::Hlt {
                next_rip: next_rip(vmcb, nrip_supported, HLT_LEN)?,
            },
            ExitCode::MSR => {
                let write = match c.exit_info1 {
                    0 => false,
                    1 => true,
                    other => return Err(DecodeError::MsrDirection(other)),
                };
                Self::Msr {
                    write,
                    next_rip: next_rip(vmcb, nrip_supported, MSR_LEN)?,
                }
            }
            ExitCode::IOIO => Self::Ioio(decode_ioio(vmcb)?),
            ExitCode::NPF => Self::Npf(decode_npf(c.exit_info1, c.exit_info2)?),
            ExitCode::SHUTDOWN => Self::Shutdown,
            ExitCode::INTR => Self::Intr,
            ExitCode::NMI => Self::Nmi,
            ExitCode::VMRUN => Self::SvmInstruction(SvmInstruction::Vmrun),
            ExitCode::VMLOAD => Self::SvmInstruction(SvmInstruction::Vmload),
            ExitCode::VMSAVE => Self::SvmInstruction(SvmInstruction::Vmsave),
            ExitCode::STGI => Self::SvmInstruction(SvmInstruction::Stgi),
            ExitCode::CLGI => Self::SvmInstruction(SvmInstruction::Clgi),
            ExitCode::SKINIT => Self::SvmInstruction(SvmInstruction::Skinit),
            ExitCode::INVLPGA => Self::SvmInstruction(SvmInstruction::Invlpga),
            ExitCode(raw @ 0x40..=0x5F) => {
                // In range 0x40..=0x5F, so the difference is 0..=31.
                let vector = (raw - ExitCode::EXCEPTION_BASE.0) as u8;
                decode_exception(vector, c.exit_info1, c.exit_info2)?
            }
            ExitCode(raw) => Self::Unknown { code: raw },
        };
        Ok(exit)
    }
}

fn decode_exception(vector: u8, info1: u64, info2: u64) -> Result<SvmExit, DecodeError> {
    let error_code = if crate::event::exception_has_error_code(vector) {
        Some(u32::try_from(info1).map_err(|_| DecodeError::ErrorCode(info1))?)
    } else {
        None
    };
    let fault_address = (vector == PF_VECTOR).then_some(info2);
    Ok(SvmExit::Exception {
        vector,
        error_code,
        fault_address,
    })
}

fn decode_ioio(vmcb: &Vmcb) -> Result<IoAccess, DecodeError> {
    let info1 = vmcb.control.exit_info1;
    let size_bits = ((info1 >> 4) & 0b111) as u8;
    let size = match size_bits {
        0b001 => IoSize::Byte,
        0b010 => IoSize::Word,
        0b100 => IoSize::Dword,
        other => return Err(DecodeError::IoioSize(other)),
    };
    let addr_bits = ((info1 >> 7) & 0b111) as u8;
    let address_size = match addr_bits {
        0 => None,
        0b001 => Some(AddressSize::A16),
        0b010 => Some(AddressSize::A32),
        0b100 => Some(AddressSize::A64),
        other => return Err(DecodeError::IoioAddressSize(other)),
    };
    let next = vmcb.control.exit_info2;
    check_length(vmcb, next)?;
    Ok(IoAccess {
        port: (info1 >> 16) as u16,
        size,
        write: info1 & IOIO_IN == 0,
        string: info1 & IOIO_STRING != 0,
        rep: info1 & IOIO_REP != 0,
        address_size,
        next_rip: next,
    })
}

fn decode_npf(info1: u64, gpa: u64) -> Result<NestedPageFault, DecodeError> {
    let stage = match (info1 & NPF_FINAL != 0, info1 & NPF_WALK != 0) {
        (true, false) => NpfStage::FinalTranslation,
        (false, true) => NpfStage::GuestTableWalk,
        _ => return Err(DecodeError::NpfStage(info1)),
    };
    Ok(NestedPageFault {
        gpa,
        present: info1 & (1 << 0) != 0,
        write: info1 & (1 << 1) != 0,
        user: info1 & (1 << 2) != 0,
        reserved: info1 & (1 << 3) != 0,
        execute: info1 & (1 << 4) != 0,
        stage,
        raw_error_code: info1,
    })
}

/// RIP arithmetic wraps at 64 bits in 64-bit mode and at 32 bits otherwise.
fn ip_mask(vmcb: &Vmcb) -> u64 {
    if vmcb.save.in_64bit_mode() {
        u64::MAX
    } else {
        u64::from(u32::MAX)
    }
}

fn next_rip(vmcb: &Vmcb, nrip_supported: bool, len: u8) -> Result<u64, DecodeError> {
    if nrip_supported {
        let next = vmcb.control.next_rip;
        check_length(vmcb, next)?;
        Ok(next)
    } else {
        Ok(vmcb.save.rip.wrapping_add(u64::from(len)) & ip_mask(vmcb))
    }
}

fn check_length(vmcb: &Vmcb, next: u64) -> Result<(), DecodeError> {
    let rip = vmcb.save.rip;
    let mask = ip_mask(vmcb);
    let len = next.wrapping_sub(rip) & mask;
    if next & !mask == 0 && (1..=MAX_INSN_LEN).contains(&len) {
        Ok(())
    } else {
        Err(DecodeError::NextRip {
            rip,
            next_rip: next,
        })
    }
}
