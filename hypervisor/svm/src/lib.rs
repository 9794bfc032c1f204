//! AMD SVM data structures and #VMEXIT decoding, everything about AMD-V that can be computed
//! without executing VMRUN, VMSAVE or VMLOAD (AMD APM vol. 2, chapter 15 and appendices B-C).
//!
//! - [`Vmcb`]: the 4 KiB VMCB with compile-time-checked offsets, typed intercept vectors
//!   ([`Misc1Intercepts`], ...), and [`Vmcb::init_long_mode_guest`] for a guest that starts
//!   in 64-bit mode under nested paging.
//! - [`check_vmrun_consistency`]: VMRUN's consistency checks in software, as typed
//!   [`VmcbError`]s instead of an opaque VMEXIT_INVALID.
//! - [`IoPermissionMap`], [`MsrPermissionMap`]: the permission bitmaps, over caller memory.
//! - [`SvmExit::decode`]: typed exits, with or without NRIP-save.
//! - [`Event`]: EVENTINJ encoding and EXITINTINFO decoding, validated.
//! - [`AsidAllocator`], [`TlbControl`]: ASIDs and the flush they need.
//!
//! The crate holds no `unsafe` and does no I/O: the bare-metal binary executes the
//! instructions and maps these values onto the architecture-neutral exit events.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

mod asid;
mod check;
mod event;
mod exit;
mod intercepts;
mod permission;
pub mod regs;
mod setup;
mod vmcb;

#[cfg(test)]
mod tests;

pub use asid::{Asid, AsidAllocator, AsidError, AsidGrant, TlbControl};
pub use check::{HostCaps, VmcbError, check_vmrun_consistency};
pub use event::{Event, EventError, EventType, exception_has_error_code};
pub use exit::{
    AddressSize, DecodeError, ExitCode, IoAccess, IoSize, NestedPageFault, NpfStage, SvmExit,
    SvmInstruction,
};
pub use intercepts::{
    CleanBits, CrIntercepts, DrIntercepts, ExceptionIntercepts, Misc1Intercepts, Misc2Intercepts,
    Misc3Intercepts,
};
pub use permission::{
    IOPM_SIZE, IoPermissionMap, MSRPM_SIZE, MsrAccess, MsrIntercept, MsrOutOfRange,
    MsrPermissionMap, msrpm_position,
};
pub use setup::{
    BASELINE_EXCEPTIONS, BASELINE_MISC1, BASELINE_MISC2, GUEST_CODE_SELECTOR, GUEST_DATA_SELECTOR,
    GUEST_TSS_SELECTOR,
};
pub use vmcb::{
    VIntrControl, VMCB_SAVE_OFFSET, VMCB_SIZE, Vmcb, VmcbControl, VmcbSave, VmcbSegment, attrib,
    attrib_from_descriptor,
};
