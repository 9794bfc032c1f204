//! Hypercalls from the guest, with the TLFS register ABI: RCX = control (input value), RDX
//! = input GPA or first fast parameter, R8 = output GPA or second fast parameter, result in
//! RAX. AMD CPUs use VMMCALL, Intel CPUs VMCALL (the other one raises #UD in a guest).
//!
//! The hypervisor may modify RCX, RDX, R8, R9, R10 and R11 (TLFS volatile registers); XMM
//! registers are not named because this target has no SSE and Mica has no XMM fast calls.
//! A rep call the hypervisor continues later leaves RIP on the instruction with RCX
//! updated, so the CPU simply executes it again: the wrapper sees only the final result.
//!
//! Memory-based calls use the two pages of [`HypercallPages`] (taken with [`pages`]): the
//! input page is RDX, the output page R8. Their guest-virtual address equals their GPA
//! (the guest runs identity-mapped).

use core::arch::asm;
use core::fmt;
use core::sync::atomic::{AtomicU8, Ordering};

use hypercall::control::{REP_FIELD_MASK, REPS_COMPLETED_SHIFT, rep_call, simple_call};
use hypercall::{CallCode, HvStatus};
use spin::{Mutex, MutexGuard};

use crate::cpu::Vendor;

/// The result value (RAX) of a hypercall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HypercallResult(pub u64);

impl HypercallResult {
    /// Bits of the result value the TLFS defines (status, reps completed).
    pub const DEFINED_BITS: u64 = 0xFFFF | (REP_FIELD_MASK << REPS_COMPLETED_SHIFT);

    /// The status, or `Err(raw)` for a code the `hypercall` crate does not know.
    ///
    /// # Errors
    /// The raw status when it is unknown.
    pub fn status(self) -> Result<HvStatus, u16> {
        HvStatus::from_raw(self.raw_status()).ok_or(self.raw_status())
    }

    /// Bits 15:0.
    #[must_use]
    pub const fn raw_status(self) -> u16 {
        (self.0 & 0xFFFF) as u16
    }

    /// Bits 43:32: reps completed.
    #[must_use]
    pub const fn reps_completed(self) -> u16 {
        ((self.0 >> REPS_COMPLETED_SHIFT) & REP_FIELD_MASK) as u16
    }

    /// Whether the status is `HV_STATUS_SUCCESS`.
    #[must_use]
    pub const fn is_success(self) -> bool {
        self.raw_status() == 0
    }

    /// Bits set outside the defined fields (the hypervisor must leave them zero).
    #[must_use]
    pub const fn undefined_bits(self) -> u64 {
        self.0 & !Self::DEFINED_BITS
    }
}

impl fmt::Display for HypercallResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status() {
            Ok(status) => write!(f, "{status}"),
            Err(raw) => write!(f, "unknown status {raw:#06x}"),
        }
    }
}

const UNKNOWN: u8 = 0;
const VMMCALL: u8 = 1;
const VMCALL: u8 = 2;

/// Which instruction this CPU uses, detected on first use.
static INSTRUCTION: AtomicU8 = AtomicU8::new(UNKNOWN);

fn instruction() -> u8 {
    match INSTRUCTION.load(Ordering::Relaxed) {
        UNKNOWN => {
            let chosen = match Vendor::detect() {
                Vendor::Amd => VMMCALL,
                Vendor::Intel | Vendor::Other => VMCALL,
            };
            INSTRUCTION.store(chosen, Ordering::Relaxed);
            chosen
        }
        known => known,
    }
}

/// Issues a hypercall with exactly these register values.
///
/// # Safety
/// A memory-based call may make the hypervisor write the call's output block at the GPA
/// in R8 (and RCX's call code decides how much). The caller must make sure no Rust object
/// lives there, or that the call cannot write (e.g. it is a fast call, or the caller lacks
/// the privilege of every call that writes output).
#[must_use]
pub unsafe fn raw(rcx: u64, rdx: u64, r8: u64) -> HypercallResult {
    let rax: u64;
    if instruction() == VMMCALL {
        // SAFETY: the hypervisor only changes the named registers and, per the caller's
        // contract, no memory Rust relies on.
        unsafe {
            asm!(
                "vmmcall",
                inout("rcx") rcx => _,
                inout("rdx") rdx => _,
                inout("r8") r8 => _,
                lateout("rax") rax,
                lateout("r9") _,
                lateout("r10") _,
                lateout("r11") _,
                options(nostack),
            );
        }
    } else {
        // SAFETY: as above.
        unsafe {
            asm!(
                "vmcall",
                inout("rcx") rcx => _,
                inout("rdx") rdx => _,
                inout("r8") r8 => _,
                lateout("rax") rax,
                lateout("r9") _,
                lateout("r10") _,
                lateout("r11") _,
                options(nostack),
            );
        }
    }
    HypercallResult(rax)
}

/// A simple fast (register-based) call: RDX and R8 carry the input, nothing is written
/// back but RAX.
#[must_use]
pub fn fast(code: u16, rdx: u64, r8: u64) -> HypercallResult {
    // SAFETY: the fast bit is set, so no memory block is involved.
    unsafe { raw(simple_call(code, true), rdx, r8) }
}

/// One page-aligned 4 KiB buffer.
#[derive(Debug)]
#[repr(C, align(4096))]
pub struct Page(pub [u8; 4096]);

impl Page {
    /// Its GPA (= its address).
    #[must_use]
    pub fn gpa(&self) -> u64 {
        core::ptr::from_ref(self).expose_provenance() as u64
    }
}

/// The input and output pages of memory-based hypercalls.
#[derive(Debug)]
pub struct HypercallPages {
    /// Input block (RDX).
    pub input: Page,
    /// Output block (R8).
    pub output: Page,
}

static PAGES: Mutex<HypercallPages> = Mutex::new(HypercallPages {
    input: Page([0; 4096]),
    output: Page([0; 4096]),
});

/// The hypercall pages (test guests run one VP, so this never waits).
pub fn pages() -> MutexGuard<'static, HypercallPages> {
    PAGES.lock()
}

impl HypercallPages {
    /// A call with control `rcx`, RDX = input page, R8 = output page.
    #[must_use]
    pub fn call(&mut self, rcx: u64) -> HypercallResult {
        let input = self.input.gpa();
        self.call_with_input(rcx, input)
    }

    /// A call with control `rcx`, RDX = `input_gpa` (any value: the hypervisor only reads
    /// the input block), R8 = output page.
    #[must_use]
    pub fn call_with_input(&mut self, rcx: u64, input_gpa: u64) -> HypercallResult {
        let output = self.output.gpa();
        // SAFETY: an output block can only be written at R8, our own output page, which
        // `&mut self` keeps free of other borrows for the call.
        unsafe { raw(rcx, input_gpa, output) }
    }

    /// A simple memory-based call.
    #[must_use]
    pub fn simple(&mut self, code: u16) -> HypercallResult {
        self.call(simple_call(code, false))
    }

    /// A memory-based rep call.
    #[must_use]
    pub fn rep(&mut self, code: u16, count: u16, start: u16) -> HypercallResult {
        self.call(rep_call(code, count, start))
    }

    /// Prints `text` through the Mica debug-output call (at most
    /// [`hypercall::DEBUG_OUTPUT_MAX`] bytes are sent; the rest is cut off).
    #[must_use]
    pub fn debug_output(&mut self, text: &str) -> HypercallResult {
        let bytes = text.as_bytes();
        let len = bytes.len().min(hypercall::DEBUG_OUTPUT_MAX);
        self.input.0[..4].copy_from_slice(&(len as u32).to_le_bytes());
        self.input.0[4..8].fill(0);
        self.input.0[8..8 + len].copy_from_slice(&bytes[..len]);
        self.simple(CallCode::MicaDebugOutput.raw())
    }
}
