//! Software copy of VMRUN's consistency checks (AMD APM vol. 2, 15.5.1), so a bad VMCB is
//! reported as a typed error before VMRUN instead of as an opaque VMEXIT_INVALID.
//!
//! The checks are the cheap ones from the APM's list, in the order given there, plus a few
//! Mica adds where the hardware's outcome would be undefined or surprising (each marked
//! "Mica" below). A VMCB that passes can still fail VMRUN on checks this module does not
//! model (SEV, AVIC, canonical segment bases); those still surface as
//! [`crate::SvmExit::Invalid`].

use thiserror::Error;

use crate::event::{Event, EventError};
use crate::intercepts::{Misc1Intercepts, Misc2Intercepts};
use crate::permission::{IOPM_SIZE, MSRPM_SIZE};
use crate::regs::{Cr0, Cr4, Efer};
use crate::vmcb::{Vmcb, attrib};

/// What the host CPU supports, as far as VMRUN's checks depend on it. Fill it from CPUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostCaps {
    /// Physical address width (CPUID Fn8000_0008 EAX bits 7:0).
    pub phys_addr_bits: u8,
    /// Long mode (CPUID Fn8000_0001 EDX bit 29).
    pub long_mode: bool,
    /// Nested paging (CPUID Fn8000_000A EDX bit 0).
    pub nested_paging: bool,
    /// Number of ASIDs (CPUID Fn8000_000A EBX).
    pub nasid: u32,
    /// CR4 bits the CPU implements; any other set bit fails VMRUN.
    pub cr4_supported: Cr4,
    /// EFER bits the CPU implements; any other set bit fails VMRUN.
    pub efer_supported: Efer,
}

impl HostCaps {
    /// Caps of a baseline SVM CPU with nested paging (what QEMU's `-cpu EPYC` offers): the
    /// given address width and ASID count, long mode, and the CR4/EFER bits every
    /// such CPU has. Widen `cr4_supported`/`efer_supported` from CPUID for newer features.
    pub const fn baseline(phys_addr_bits: u8, nasid: u32) -> Self {
        Self {
            phys_addr_bits,
            long_mode: true,
            nested_paging: true,
            nasid,
            cr4_supported: Cr4::VME
                .union(Cr4::PVI)
                .union(Cr4::TSD)
                .union(Cr4::DE)
                .union(Cr4::PSE)
                .union(Cr4::PAE)
                .union(Cr4::MCE)
                .union(Cr4::PGE)
                .union(Cr4::PCE)
                .union(Cr4::OSFXSR)
                .union(Cr4::OSXMMEXCPT)
                .union(Cr4::FSGSBASE)
                .union(Cr4::OSXSAVE)
                .union(Cr4::SMEP)
                .union(Cr4::SMAP),
            efer_supported: Efer::SCE
                .union(Efer::LME)
                .union(Efer::LMA)
                .union(Efer::NXE)
                .union(Efer::SVME)
                .union(Efer::FFXSR),
        }
    }

    /// Bits of a physical address above the CPU's width.
    const fn phys_reserved_mask(&self) -> u64 {
        if self.phys_addr_bits >= 64 {
            0
        } else {
            !((1u64 << self.phys_addr_bits) - 1)
        }
    }
}

/// A VMCB that VMRUN would refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum VmcbError {
    /// Guest EFER.SVME is clear.
    #[error("Guest EFER.SVME is clear")]
    SvmeClear,
    /// CR0.CD is clear while CR0.NW is set.
    #[error("Guest CR0.NW is set with CR0.CD clear")]
    Cr0NwWithoutCd,
    /// CR0 bits 63:32 are not zero.
    #[error("Guest CR0 bits 63:32 are set: {0:#x}")]
    Cr0High(u64),
    /// CR3 has bits set that must be zero in the guest's mode.
    #[error("Guest CR3 reserved bits are set: {0:#x}")]
    Cr3Reserved(u64),
    /// CR4 has bits set that the CPU does not implement.
    #[error("Guest CR4 reserved bits are set: {0:#x}")]
    Cr4Reserved(u64),
    /// DR6 bits 63:32 are not zero.
    #[error("Guest DR6 bits 63:32 are set: {0:#x}")]
    Dr6High(u64),
    /// DR7 bits 63:32 are not zero.
    #[error("Guest DR7 bits 63:32 are set: {0:#x}")]
    Dr7High(u64),
    /// EFER has bits set that the CPU does not implement.
    #[error("Guest EFER reserved bits are set: {0:#x}")]
    EferReserved(u64),
    /// EFER.LME or EFER.LMA is set on a CPU without long mode.
    #[error("Guest EFER enables long mode, which the CPU lacks")]
    LongModeUnsupported,
    /// EFER.LME and CR0.PG are set with CR4.PAE clear.
    #[error("Guest long mode without CR4.PAE")]
    LongModeWithoutPae,
    /// EFER.LME and CR0.PG are set with CR0.PE clear.
    #[error("Guest long mode without CR0.PE")]
    LongModeWithoutPe,
    /// Long mode is on and CS has both L and D set.
    #[error("Guest CS has both L and D set in long mode")]
    CsLongAndDefault,
    /// Mica: EFER.LMA does not equal EFER.LME and CR0.PG (the CPU computes it so itself).
    #[error("Guest EFER.LMA does not match EFER.LME and CR0.PG")]
    LmaMismatch,
    /// Mica: CS.L set outside long mode.
    #[error("Guest CS.L is set outside long mode")]
    CsLongOutsideLongMode,
    /// The VMRUN intercept is clear.
    #[error("VMRUN intercept is clear")]
    VmrunNotIntercepted,
    /// Guest ASID is 0 (the host's).
    #[error("Guest ASID is 0")]
    AsidZero,
    /// Mica: guest ASID is not below the CPU's ASID count.
    #[error("Guest ASID {0} is beyond the CPU's ASIDs")]
    AsidOutOfRange(u32),
    /// Mica: NP_ENABLE on a CPU without nested paging.
    #[error("Nested paging enabled on a CPU without it")]
    NestedPagingUnsupported,
    /// Mica: N_CR3 has bits set beyond the physical address width or in bits 11:0.
    #[error("N_CR3 is not a page-aligned physical address: {0:#x}")]
    NestedCr3Invalid(u64),
    /// Mica: IOPM_BASE_PA is not 4 KiB aligned (the CPU would ignore the low bits).
    #[error("IOPM_BASE_PA {0:#x} is not 4 KiB aligned")]
    IopmMisaligned(u64),
    /// The I/O permission map reaches past the physical address width.
    #[error("I/O permission map at {0:#x} reaches past the physical address width")]
    IopmBeyondPhysical(u64),
    /// Mica: MSRPM_BASE_PA is not 4 KiB aligned (the CPU would ignore the low bits).
    #[error("MSRPM_BASE_PA {0:#x} is not 4 KiB aligned")]
    MsrpmMisaligned(u64),
    /// The MSR permission map reaches past the physical address width.
    #[error("MSR permission map at {0:#x} reaches past the physical address width")]
    MsrpmBeyondPhysical(u64),
    /// EVENTINJ holds an event VMRUN rejects.
    #[error("Illegal event injection")]
    EventInjection(#[source] EventError),
}

const PAGE_MASK: u64 = 0xFFF;

/// Runs the checks VMRUN makes on `vmcb` that software can make, returning the first that
/// fails.
pub fn check_vmrun_consistency(vmcb: &Vmcb, caps: &HostCaps) -> Result<(), VmcbError> {
    let s = &vmcb.save;
    let c = &vmcb.control;
    let efer = s.efer();
    let cr0 = s.cr0();
    let cr4 = s.cr4();

    if !efer.contains(Efer::SVME) {
        return Err(VmcbError::SvmeClear);
    }
    if cr0.contains(Cr0::NW) && !cr0.contains(Cr0::CD) {
        return Err(VmcbError::Cr0NwWithoutCd);
    }
    if s.cr0 >> 32 != 0 {
        return Err(VmcbError::Cr0High(s.cr0));
    }
    let long_mode = efer.contains(Efer::LME) && cr0.contains(Cr0::PG);
    // Long mode: bits 63:52 are reserved, and so is everything above the physical width.
    // Otherwise CR3 is a 32-bit register.
    let cr3_reserved = if long_mode {
        caps.phys_reserved_mask()
    } else {
        !u64::from(u32::MAX)
    };
    if s.cr3 & cr3_reserved != 0 {
        return Err(VmcbError::Cr3Reserved(s.cr3 & cr3_reserved));
    }
    let cr4_reserved = s.cr4 & !caps.cr4_supported.bits();
    if cr4_reserved != 0 {
        return Err(VmcbError::Cr4Reserved(cr4_reserved));
    }
    if s.dr6 >> 32 != 0 {
        return Err(VmcbError::Dr6High(s.dr6));
    }
    if s.dr7 >> 32 != 0 {
        return Err(VmcbError::Dr7High(s.dr7));
    }
    let efer_reserved = s.efer & !caps.efer_supported.bits();
    if efer_reserved != 0 {
        return Err(VmcbError::EferReserved(efer_reserved));
    }
    if efer.intersects(Efer::LME | Efer::LMA) && !caps.long_mode {
        return Err(VmcbError::LongModeUnsupported);
    }
    if long_mode && !cr4.contains(Cr4::PAE) {
        return Err(VmcbError::LongModeWithoutPae);
    }
    if long_mode && !cr0.contains(Cr0::PE) {
        return Err(VmcbError::LongModeWithoutPe);
    }
    let cs_l = s.cs.attrib & attrib::L != 0;
    let cs_d = s.cs.attrib & attrib::DB != 0;
    if long_mode && cs_l && cs_d {
        return Err(VmcbError::CsLongAndDefault);
    }
    if efer.contains(Efer::LMA) != long_mode {
        return Err(VmcbError::LmaMismatch);
    }
    if cs_l && !long_mode {
        return Err(VmcbError::CsLongOutsideLongMode);
    }
    if !c.misc2_intercepts().contains(Misc2Intercepts::VMRUN) {
        return Err(VmcbError::VmrunNotIntercepted);
    }
    if c.guest_asid == 0 {
        return Err(VmcbError::AsidZero);
    }
    if c.guest_asid >= caps.nasid {
        return Err(VmcbError::AsidOutOfRange(c.guest_asid));
    }
    if c.np_enabled() {
        if !caps.nested_paging {
            return Err(VmcbError::NestedPagingUnsupported);
        }
        if c.n_cr3 & (caps.phys_reserved_mask() | PAGE_MASK) != 0 {
            return Err(VmcbError::NestedCr3Invalid(c.n_cr3));
        }
    }
    let misc1 = c.misc1_intercepts();
    if misc1.contains(Misc1Intercepts::IOIO_PROT) {
        check_map(
            c.iopm_base_pa,
            IOPM_SIZE,
            caps,
            VmcbError::IopmMisaligned,
            VmcbError::IopmBeyondPhysical,
        )?;
    }
    if misc1.contains(Misc1Intercepts::MSR_PROT) {
        check_map(
            c.msrpm_base_pa,
            MSRPM_SIZE,
            caps,
            VmcbError::MsrpmMisaligned,
            VmcbError::MsrpmBeyondPhysical,
        )?;
    }
    Event::from_raw(c.event_inj).map_err(VmcbError::EventInjection)?;
    Ok(())
}

/// A permission map must be page aligned and end below the top of physical memory.
fn check_map(
    base: u64,
    size: usize,
    caps: &HostCaps,
    misaligned: fn(u64) -> VmcbError,
    beyond: fn(u64) -> VmcbError,
) -> Result<(), VmcbError> {
    if base & PAGE_MASK != 0 {
        return Err(misaligned(base));
    }
    // `size` is a small constant, so the conversion cannot fail.
    let last = u64::try_from(size)
        .ok()
        .and_then(|size| base.checked_add(size - 1))
        .ok_or(beyond(base))?;
    if last & caps.phys_reserved_mask() != 0 {
        return Err(beyond(base));
    }
    Ok(())
}
