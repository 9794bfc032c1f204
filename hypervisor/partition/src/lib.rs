//! Mica's architecture-neutral partition layer: partitions, their guest-physical memory,
//! vCPUs, VM-exit policies and vCPU scheduling. Host-tested with fakes; nothing here is
//! specific to AMD SVM or Intel VMX.
//!
//! # Pieces
//! - [`PartitionManager`] owns every [`Partition`] (root = [`ROOT_PARTITION`], children
//!   2, 3, ...), the child-memory [`MemoryPool`], the [`SecondLevel`] tables and
//!   [`HostPhysMemory`], and implements [`hypercall::HypercallHandler`]: partition
//!   lifecycle (`Created → Initialized → Running ⇄ Stopped → Finalized`, then deletion),
//!   pool-backed memory, vCPU creation and registers, start/stop, debug output.
//! - Each child's RAM is a map GPA page → pool frame + [`GpaPerms`] ([`GuestRam`]), the
//!   authority mirrored page by page into its second-level tables; the root's RAM is
//!   identity-mapped ranges. [`PartitionMemory`] copies bytes in and out through the map
//!   (it implements [`hypercall::GuestMemory`]).
//! - [`Vcpu`] / [`VcpuRegisters`]: register state addressed by TLFS register names, and
//!   [`RunState`].
//! - [`handle_exit`] answers an [`ExitEvent`] with an [`ExitAction`] (policies below).
//! - [`Scheduler`]: round-robin over one physical CPU's vCPUs with a time slice.
//!
//! # Exit policies
//! - Hypercall: from 64-bit mode at CPL 0 only (else #UD); decoded and dispatched by
//!   [`hypercall::handle_hypercall`] against the manager; RAX gets the result; a rep call
//!   cut short leaves RIP on the instruction with the new RCX.
//! - I/O: port [`DEBUG_CONSOLE_PORT`] (0xE9): writes append their low byte to the
//!   partition's console, reads return 0xE9; port [`EXIT_PORT`] (0xF4): a write stops the
//!   partition with [`StopReason::Exited`]`(value)`; any other port, and any string or REP
//!   I/O, stops the partition with [`StopReason::BadIoPort`] (stopping, rather than
//!   injecting #GP, makes a misbehaving test guest visible at once). Same for the root:
//!   the hypervisor intercepts only the root ports it chooses to.
//! - Second-level fault: outside the map → stop ([`StopReason::OutsideMemory`]); against
//!   the page's permissions → stop ([`StopReason::AccessViolation`]); allowed by the map
//!   (mapped meanwhile) → retry.
//! - CPUID: see [`cpuid`]; MSRs: see [`msr`] (anything not allow-listed → #GP).
//! - HLT → `Halt` (vCPU `Halted` until [`PartitionManager::wake_vcpu`]); triple fault,
//!   invalid state, unknown exits → stop that partition only; timer → `Yield`; external
//!   interrupt / NMI → resume (the host handled it); intercepted exception → reinjected.
//! - Every exit is counted per partition ([`Counters`]); stops record their reason.
//!
//! # How a backend plugs in
//! The bare-metal hypervisor creates one [`PartitionManager`] with its pool, a
//! [`SecondLevel`] (e.g. [`npt::NestedTables`] with `paging::LongMode::nested` for NPT, an
//! EPT entry format for VMX) and its physical-memory window as [`HostPhysMemory`], plus a
//! [`Platform`] (host CPUID, hypercall instruction bytes, TSC). Per physical CPU it runs
//! a [`Scheduler`]; for the picked vCPU the backend (SVM crate: VMCB; VMX crate: VMCS)
//! loads [`VcpuRegisters`] and the partition's second-level root (nCR3 / EPTP; flushing
//! its ASID / VPID when [`PartitionManager::take_tlb_flush`] says so), enters the guest,
//! and on exit stores the registers back, decodes the exit into an [`ExitEvent`], calls
//! [`handle_exit`] and carries out the [`ExitAction`] (advance RIP by the instruction
//! length it knows, inject, deschedule, re-enter). Only the backend knows SVM or VMX; the
//! SVM one converts segment attributes to the VMCB's 12-bit form, the VMX one to access
//! rights, and each maps its exit codes onto [`ExitEvent`].
//!
//! Architecture invariant: nothing a partition controls (registers, exits, hypercall
//! inputs, its memory) can make this crate panic, loop without bound, or give one
//! partition access to a frame of another: a child's GPA translates only through its own
//! map, pool frames are zeroed before they are mapped and return to the pool only after
//! they are unmapped.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(all(feature = "fake", not(test)))]
extern crate std;

pub mod cpuid;
mod exit;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
mod manager;
mod memory;
pub mod msr;
pub mod npt;
mod partition;
mod scheduler;
mod vcpu;

#[cfg(test)]
mod root_tests;
#[cfg(test)]
mod tests;

pub use cpuid::CpuidResult;
pub use exit::{
    DEBUG_CONSOLE_PORT, EXIT_PORT, ExitAction, ExitEvent, ExitKind, IoPortAccess, Platform,
    VECTOR_GP, VECTOR_UD, finish_run_partitions, handle_exit, inline_hypercall, root_msrs,
};
pub use manager::{HostInfo, MAX_GPA_PAGES, ManagerError, PartitionManager, properties};
pub use memory::{
    Flush, GpaMapping, GpaPerms, GuestRam, HostPhysMemory, MemoryPool, PAGE_SIZE, PartitionMemory,
    SecondLevel, SecondLevelError,
};
pub use partition::{
    CHILD_PRIVILEGES, Console, Counters, Limits, MemoryAccess, Partition, PartitionState,
    ROOT_PARTITION, StopReason, SyntheticMsrs,
};
pub use scheduler::{Scheduler, VcpuRef, VcpuStates};
pub use vcpu::{
    APIC_BASE_BSP, APIC_BASE_DEFAULT, Gpr, PAT_DEFAULT, RunState, SegmentRegister, TableRegister,
    Vcpu, VcpuRegisters, names,
};
