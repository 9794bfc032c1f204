//! Mica's hypercall layer: the Hyper-V TLFS hypercall ABI, host-tested.
//!
//! On a VMMCALL/VMCALL exit the bare-metal exit handler checks the caller is in 64-bit mode
//! at CPL 0 (otherwise it injects #UD, as the TLFS says), then calls [`handle_hypercall`]
//! with the caller's RCX, RDX and R8, its [`CallerContext`], a [`GuestMemory`] view of the
//! caller's RAM and the partition manager's [`HypercallHandler`], and applies the returned
//! [`HypercallOutcome`]: RAX := `rax`; if `continue_rcx` is `Some`, RCX := that value and RIP
//! stays on the hypercall instruction (a rep call continues from its new rep start when the
//! guest re-executes it); otherwise RIP moves past the instruction. Nothing else in the
//! guest's registers changes (Mica implements no fast output).
//!
//! Everything a guest controls is parsed into typed values and checked here:
//! - [`control`]: the input value (RCX) and result value (RAX) bit layouts;
//! - [`call`]: the implemented calls, their conventions, sizes and privileges, and the
//!   Mica-private call range (`0xC000..=0xC0FF`) with the pool-backed memory calls;
//! - [`abi`]: the parameter block layouts (zerocopy, sizes checked at compile time);
//! - [`mod@dispatch`]: decoding, validation, privilege checks and the call itself;
//! - [`status`]: `HV_STATUS` codes; [`privilege`]: `HV_PARTITION_PRIVILEGE_MASK`.
//!
//! Architecture invariant: no register value or guest memory content can make this crate
//! panic, loop without bound or touch memory outside the caller's RAM; every failure is a
//! typed [`HypercallError`] turned into a status by [`HypercallError::status`] alone.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

#[cfg(all(feature = "fake", not(test)))]
extern crate std;

pub mod abi;
pub mod call;
pub mod control;
pub mod dispatch;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod handler;
pub mod memory;
pub mod privilege;
pub mod root_abi;
pub mod status;

pub use abi::{MapGpaFlags, RegisterName, RegisterValue};
pub use call::{CallCode, CallSpec, DEBUG_OUTPUT_MAX, MICA_PRIVATE_BASE};
pub use control::{HypercallControl, result_value};
pub use dispatch::{
    BackendCall, Block, HypercallError, HypercallInput, HypercallOutcome, backend_call, dispatch,
    handle_hypercall,
};
pub use handler::{
    CallerContext, CreatePartitionParams, CreateVpParams, HypercallHandler, PartitionId,
    PartitionPropertyCode, VpTarget,
};
pub use memory::{Access, GuestMemory, GuestMemoryError, PAGE_SIZE};
pub use privilege::PartitionPrivileges;
pub use status::{HvError, HvStatus};

#[cfg(test)]
mod tests;
