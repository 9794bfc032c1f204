//! Guest x87/SSE/AVX state. The hypervisor itself never touches these registers (its target
//! is soft-float), so the state of the vCPU that ran last stays live in the CPU; it is saved
//! and the next vCPU's restored only when the CPU switches to another vCPU.

use x86_64::registers::control::{Cr4, Cr4Flags};
use x86_64::registers::xcontrol::{XCr0, XCr0Flags};

/// One vCPU's saved state: the XSAVE (or FXSAVE) image, 64-byte aligned.
#[repr(C, align(64))]
pub struct FpuArea([u8; 4096]);

impl FpuArea {
    /// The architectural init state: an XSAVE header with no component present (XRSTOR then
    /// initialises every component), or for FXRSTOR the reset FCW 0x037F and MXCSR 0x1F80.
    pub fn new() -> Self {
        let mut area = [0u8; 4096];
        area[0..2].copy_from_slice(&0x037Fu16.to_le_bytes());
        area[24..28].copy_from_slice(&0x1F80u32.to_le_bytes());
        Self(area)
    }
}

/// How state is saved on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// XSAVE/XRSTOR of the components enabled in XCR0.
    Xsave,
    /// FXSAVE/FXRSTOR (x87 and SSE) on CPUs without XSAVE.
    Fxsave,
}

/// Enables SSE (CR4.OSFXSR/OSXMMEXCPT) and, when the CPU has XSAVE, CR4.OSXSAVE with XCR0 =
/// x87 | SSE (| AVX when present), the state guests may use.
pub fn enable(xsave: bool, avx: bool) -> Mode {
    let mut flags = Cr4::read();
    flags |= Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE;
    if xsave {
        flags |= Cr4Flags::OSXSAVE;
    }
    // SAFETY: enabling SSE and XSAVE support changes no memory and no mapping; the
    // hypervisor's own code does not use these registers.
    unsafe { Cr4::write(flags) };
    if !xsave {
        return Mode::Fxsave;
    }
    let mut xcr0 = XCr0Flags::X87 | XCr0Flags::SSE;
    if avx {
        xcr0 |= XCr0Flags::AVX;
    }
    // SAFETY: CR4.OSXSAVE is set (above) and the CPU supports every bit written (x87 and SSE
    // always with XSAVE, AVX only when CPUID says so).
    unsafe { XCr0::write(xcr0) };
    Mode::Xsave
}

/// Saves the live state into `area`.
pub fn save(mode: Mode, area: &mut FpuArea) {
    let ptr = area.0.as_mut_ptr();
    match mode {
        // SAFETY: `area` is 4096 bytes, 64-byte aligned (enough for x87/SSE/AVX); XSAVE with
        // EDX:EAX = all ones saves the XCR0 components.
        Mode::Xsave => unsafe {
            core::arch::asm!("xsave64 [{}]", in(reg) ptr, in("eax") u32::MAX, in("edx") u32::MAX, options(nostack));
        },
        // SAFETY: `area` is at least 512 bytes, 16-byte aligned, as FXSAVE needs.
        Mode::Fxsave => unsafe {
            core::arch::asm!("fxsave64 [{}]", in(reg) ptr, options(nostack));
        },
    }
}

/// Loads the state saved in `area` (or its init state).
pub fn restore(mode: Mode, area: &FpuArea) {
    let ptr = area.0.as_ptr();
    match mode {
        // SAFETY: `area` holds an image XSAVE wrote or the init image of `FpuArea::new` (XSAVE
        // header all zero), both valid for XRSTOR; 64-byte aligned.
        Mode::Xsave => unsafe {
            core::arch::asm!("xrstor64 [{}]", in(reg) ptr, in("eax") u32::MAX, in("edx") u32::MAX, options(nostack, readonly));
        },
        // SAFETY: `area` holds an FXSAVE image or the init image (valid MXCSR), 16-byte
        // aligned.
        Mode::Fxsave => unsafe {
            core::arch::asm!("fxrstor64 [{}]", in(reg) ptr, options(nostack, readonly));
        },
    }
}

/// XCR0 now (needs CR4.OSXSAVE, set by [`enable`] in XSAVE mode).
pub fn xcr0() -> u64 {
    let (eax, edx): (u32, u32);
    // SAFETY: XGETBV(0) reads XCR0; valid once CR4.OSXSAVE is set, which callers ensure by
    // using it only in `Mode::Xsave`. No memory is touched.
    unsafe {
        core::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") eax, out("edx") edx, options(nomem, nostack));
    }
    u64::from(edx) << 32 | u64::from(eax)
}

/// Sets XCR0 to a value previously read with [`xcr0`] on this CPU (the root's, or the
/// hypervisor's own).
pub fn set_xcr0(value: u64) {
    // SAFETY: `value` was XCR0 on this CPU before (so every bit is supported and x87 is
    // set); changing the enabled state components touches no memory. The hypervisor itself
    // uses no FPU/SSE state.
    unsafe {
        core::arch::asm!("xsetbv", in("ecx") 0u32, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nomem, nostack));
    }
}
