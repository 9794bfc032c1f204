//! Architecture-neutral VM exits and the policies that answer them.
//!
//! The backend (SVM, later VMX) decodes its exit (VMCB EXITCODE/EXITINFO, VMCS exit
//! reason/qualification) into an [`ExitEvent`], stores the guest state into the vCPU's
//! [`crate::VcpuRegisters`], calls [`handle_exit`] and carries out the [`ExitAction`].

use hypercall::abi::RunExitReason;
use hypercall::root_abi::DOORBELL_PORT;
use hypercall::{
    BackendCall, CallerContext, GuestMemory, PartitionId, backend_call, handle_hypercall,
};

use crate::cpuid::{CpuidContext, CpuidResult, cpuid};
use crate::manager::PartitionManager;
use crate::memory::{CallerMemory, GpaPerms, HostPhysMemory, MemoryPool, PAGE_SIZE, SecondLevel};
use crate::msr::{EFER_LMA, MsrContext, MsrEffect};
use crate::partition::{MemoryAccess, PartitionState, ROOT_PARTITION, StopReason};
use crate::vcpu::{Gpr, RunState};

/// The debug console port: byte writes append to the partition's console buffer (NUL bytes
/// are ignored); reads return 0xE9 (the Bochs "port E9 hack" convention, so guests can detect it).
pub const DEBUG_CONSOLE_PORT: u16 = 0xE9;
/// The exit port (like QEMU's isa-debug-exit): a write stops the partition with
/// [`StopReason::Exited`] carrying the value written.
pub const EXIT_PORT: u16 = 0xF4;

/// #UD.
pub const VECTOR_UD: u8 = 6;
/// #GP.
pub const VECTOR_GP: u8 = 13;

/// The hypercall input value's fast bit (RCX bit 16).
const FAST_BIT: u64 = 1 << 16;
/// CS.L in the TLFS segment attribute layout.
const CS_LONG: u16 = 1 << 13;

/// What the host CPU and backend supply to the exit policies.
pub trait Platform {
    /// The host CPU's CPUID(`leaf`, `subleaf`).
    fn host_cpuid(&self, leaf: u32, subleaf: u32) -> CpuidResult;

    /// The instruction a guest uses to make a hypercall (VMMCALL `0F 01 D9` on AMD,
    /// VMCALL `0F 01 C1` on Intel), written into the hypercall page.
    fn hypercall_instruction(&self) -> [u8; 3];

    /// The guest-visible TSC now (host TSC plus the backend's offset).
    fn read_tsc(&self) -> u64;
}

/// One I/O instruction that exited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IoPortAccess {
    /// The port.
    pub port: u16,
    /// Operand size in bytes (1, 2 or 4).
    pub size: u8,
    /// OUT/OUTS (true) or IN/INS (false).
    pub write: bool,
    /// For OUT: the value written (low `size` bytes of RAX). Ignored for IN.
    pub value: u32,
    /// INS/OUTS.
    pub string: bool,
    /// REP prefix.
    pub rep: bool,
}

/// An architecture-neutral VM exit.
///
/// Registers the exit needs are read from the vCPU's [`crate::VcpuRegisters`] (the backend
/// stores them before calling [`handle_exit`]): a hypercall's RCX/RDX/R8, CPUID's inputs
/// are given here, RDMSR's result goes to RAX:RDX.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExitEvent {
    /// VMMCALL/VMCALL: a hypercall; input in RCX, RDX, R8 of the vCPU state.
    Hypercall,
    /// IN/OUT/INS/OUTS on an intercepted port.
    IoPort(IoPortAccess),
    /// A second-level (NPT/EPT) fault.
    MemoryFault {
        /// The guest-physical address.
        gpa: u64,
        /// What the guest tried.
        access: MemoryAccess,
    },
    /// HLT.
    Halt,
    /// CPUID.
    Cpuid {
        /// EAX.
        leaf: u32,
        /// ECX.
        subleaf: u32,
    },
    /// RDMSR of an intercepted MSR.
    MsrRead {
        /// ECX.
        msr: u32,
    },
    /// WRMSR of an intercepted MSR.
    MsrWrite {
        /// ECX.
        msr: u32,
        /// EDX:EAX.
        value: u64,
    },
    /// Shutdown (triple fault).
    TripleFault,
    /// A physical interrupt arrived while the guest ran (the host handles it).
    ExternalInterrupt,
    /// A physical NMI arrived while the guest ran (the host handles it).
    Nmi,
    /// An intercepted guest exception.
    Exception {
        /// Vector (0..=31).
        vector: u8,
        /// Error code, for the vectors that push one.
        error_code: Option<u32>,
    },
    /// The hypervisor's time-slice timer expired.
    TimerPreempt,
    /// The hardware refused to enter the guest (invalid guest state).
    InvalidState,
    /// Anything else; `code` is the backend's raw exit code.
    Unknown {
        /// Raw exit code (VMCB EXITCODE / VMCS basic exit reason).
        code: u64,
    },
}

/// Exit kinds, for counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum ExitKind {
    /// [`ExitEvent::Hypercall`].
    Hypercall,
    /// [`ExitEvent::IoPort`].
    IoPort,
    /// [`ExitEvent::MemoryFault`].
    MemoryFault,
    /// [`ExitEvent::Halt`].
    Halt,
    /// [`ExitEvent::Cpuid`].
    Cpuid,
    /// [`ExitEvent::MsrRead`].
    MsrRead,
    /// [`ExitEvent::MsrWrite`].
    MsrWrite,
    /// [`ExitEvent::TripleFault`].
    TripleFault,
    /// [`ExitEvent::ExternalInterrupt`].
    ExternalInterrupt,
    /// [`ExitEvent::Nmi`].
    Nmi,
    /// [`ExitEvent::Exception`].
    Exception,
    /// [`ExitEvent::TimerPreempt`].
    TimerPreempt,
    /// [`ExitEvent::InvalidState`].
    InvalidState,
    /// [`ExitEvent::Unknown`].
    Unknown,
}

impl ExitKind {
    /// Number of kinds.
    pub const COUNT: usize = 14;

    /// The kind of an event.
    #[must_use]
    pub const fn of(event: &ExitEvent) -> Self {
        match event {
            ExitEvent::Hypercall => Self::Hypercall,
            ExitEvent::IoPort(_) => Self::IoPort,
            ExitEvent::MemoryFault { .. } => Self::MemoryFault,
            ExitEvent::Halt => Self::Halt,
            ExitEvent::Cpuid { .. } => Self::Cpuid,
            ExitEvent::MsrRead { .. } => Self::MsrRead,
            ExitEvent::MsrWrite { .. } => Self::MsrWrite,
            ExitEvent::TripleFault => Self::TripleFault,
            ExitEvent::ExternalInterrupt => Self::ExternalInterrupt,
            ExitEvent::Nmi => Self::Nmi,
            ExitEvent::Exception { .. } => Self::Exception,
            ExitEvent::TimerPreempt => Self::TimerPreempt,
            ExitEvent::InvalidState => Self::InvalidState,
            ExitEvent::Unknown { .. } => Self::Unknown,
        }
    }
}

const _: () = assert!(ExitKind::Unknown as usize + 1 == ExitKind::COUNT);

/// What the backend does after an exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExitAction {
    /// Re-enter the guest. `advance_rip`: move RIP past the exiting instruction first (the
    /// backend knows its length: SVM nRIP, VMX exit instruction length).
    Resume {
        /// Skip the exiting instruction.
        advance_rip: bool,
    },
    /// Re-enter the guest with this exception pending (RIP not advanced: a fault).
    Inject {
        /// Vector.
        vector: u8,
        /// Error code, if the vector has one.
        error_code: Option<u32>,
    },
    /// Advance RIP past HLT and deschedule the vCPU until it is woken
    /// ([`PartitionManager::wake_vcpu`]); its run state is now `Halted`.
    Halt,
    /// Re-queue the vCPU and let the scheduler pick (time slice over).
    Yield,
    /// The root asked to lend this CPU to the children (Mica run-partitions call, already
    /// validated): run child vCPUs until an event for the root, then complete the call with
    /// [`finish_run_partitions`] and resume the root past the instruction.
    RunPartitions,
    /// The partition is stopped (its state and reason are recorded): take every vCPU of it
    /// off the CPUs (kick the other CPUs running its vCPUs) and do not re-enter it.
    StopPartition {
        /// Why.
        reason: StopReason,
    },
}

fn stop<P: MemoryPool, S: SecondLevel, H: HostPhysMemory>(
    manager: &mut PartitionManager<P, S, H>,
    id: PartitionId,
    reason: StopReason,
) -> ExitAction {
    manager.stop(id, reason);
    ExitAction::StopPartition { reason }
}

/// RCX of the one hypercall a backend may complete inline: HvCallNotifyLongSpinWait (0x0008)
/// with the fast bit (16) and nothing else set.
const INLINE_NOTIFY_LONG_SPIN_WAIT: u64 = 0x0001_0008;

/// A hypercall the backend may complete without leaving its run loop, and the RAX it must
/// return: calls that read and change no partition state and need no privilege. Today that
/// is the fast HvCallNotifyLongSpinWait (advisory, always succeeds; Mica ignores the hint),
/// the cheapest valid call. The result is the one [`handle_exit`] would give; the call is
/// not counted in [`crate::Counters`] (the backend counts it).
///
/// `long_mode_cpl0`: the caller runs in 64-bit mode at CPL 0 (otherwise the generic path
/// raises #UD).
#[must_use]
pub const fn inline_hypercall(rcx: u64, long_mode_cpl0: bool) -> Option<u64> {
    if long_mode_cpl0 && rcx == INLINE_NOTIFY_LONG_SPIN_WAIT {
        Some(0)
    } else {
        None
    }
}

/// #DF.
pub const VECTOR_DF: u8 = 8;
/// Last byte of the 64-bit IDT gate for #DF: an IDT limit below it cannot deliver #DF.
const DF_GATE_END: u32 = 8 * 16 + 15;

const GP: ExitAction = ExitAction::Inject {
    vector: VECTOR_GP,
    error_code: Some(0),
};

const ADVANCE: ExitAction = ExitAction::Resume { advance_rip: true };
const RETRY: ExitAction = ExitAction::Resume { advance_rip: false };

/// Handles one exit of vCPU `vp_index` of partition `id` and says what the backend does next.
///
/// Counts the exit, applies the policy (module docs of [`crate`]), updates the vCPU state
/// (results of CPUID, RDMSR, IN, hypercalls) and the partition (console, stop reason). An
/// exit of a partition that is no longer running (stopped from another CPU meanwhile)
/// answers [`ExitAction::StopPartition`] without handling it; an unknown partition or vCPU
/// (a backend bug) answers `StopPartition { reason: InvalidState }`.
pub fn handle_exit<P, S, H, C>(
    manager: &mut PartitionManager<P, S, H>,
    platform: &C,
    id: PartitionId,
    vp_index: u32,
    event: ExitEvent,
) -> ExitAction
where
    P: MemoryPool,
    S: SecondLevel,
    H: HostPhysMemory,
    C: Platform + ?Sized,
{
    let max_vcpus = manager.limits().max_vcpus;
    let Some(partition) = manager.partition_mut(id) else {
        return ExitAction::StopPartition {
            reason: StopReason::InvalidState,
        };
    };
    if !partition.vcpus.contains_key(&vp_index) {
        return ExitAction::StopPartition {
            reason: StopReason::InvalidState,
        };
    }
    partition.counters.count(ExitKind::of(&event));
    if partition.state != PartitionState::Running {
        return ExitAction::StopPartition {
            reason: partition.stop_reason.unwrap_or(StopReason::Requested),
        };
    }
    let privileges = partition.privileges;
    let is_root = id == ROOT_PARTITION;
    match event {
        ExitEvent::Hypercall => hypercall(manager, id, vp_index, Gate::Instruction),
        ExitEvent::IoPort(io) if is_root => root_io_port(manager, io, vp_index),
        ExitEvent::IoPort(io) => io_port(manager, id, io, vp_index),
        ExitEvent::MemoryFault { .. } if is_root => {
            // The root's nested tables map everything but the hypervisor's memory and the
            // child pool: a fault is an access to those. It fails like a bus error would
            // surface in a guest: #GP (Linux: SIGSEGV for a process, a fixup or oops in
            // the kernel); the hypervisor and the root go on.
            partition.counters.gp_injected += 1;
            partition.counters.root_denied_accesses += 1;
            GP
        }
        ExitEvent::MsrRead { msr } if is_root => root_msr_read(manager, vp_index, msr),
        ExitEvent::MsrWrite { msr, value } if is_root => {
            root_msr_write(manager, vp_index, msr, value)
        }
        ExitEvent::MemoryFault { gpa, access } => {
            let needed = match access {
                MemoryAccess::Read => GpaPerms::READ,
                MemoryAccess::Write => GpaPerms::WRITE,
                MemoryAccess::Execute => GpaPerms::EXECUTE,
            };
            match partition.ram.translate_page(gpa / PAGE_SIZE) {
                None => stop(manager, id, StopReason::OutsideMemory { gpa, access }),
                // Mapped since the fault was taken: retry the access.
                Some(m) if m.perms.contains(needed) => RETRY,
                Some(_) => stop(manager, id, StopReason::AccessViolation { gpa, access }),
            }
        }
        ExitEvent::Halt => {
            if let Some(vcpu) = partition.vcpus.get_mut(&vp_index) {
                vcpu.set_run_state(RunState::Halted);
            }
            ExitAction::Halt
        }
        ExitEvent::Cpuid { leaf, subleaf } => {
            let Some(vcpu) = partition.vcpus.get_mut(&vp_index) else {
                return RETRY;
            };
            let ctx = CpuidContext {
                privileges,
                vp_index,
                cr4: vcpu.regs.cr4,
                max_vcpus,
                root: is_root,
            };
            let r = cpuid(leaf, subleaf, &ctx, |l, s| platform.host_cpuid(l, s));
            vcpu.regs.set_gpr(Gpr::Rax, u64::from(r.eax));
            vcpu.regs.set_gpr(Gpr::Rbx, u64::from(r.ebx));
            vcpu.regs.set_gpr(Gpr::Rcx, u64::from(r.ecx));
            vcpu.regs.set_gpr(Gpr::Rdx, u64::from(r.edx));
            ADVANCE
        }
        ExitEvent::MsrRead { msr } => {
            let Some(vcpu) = partition.vcpus.get_mut(&vp_index) else {
                return RETRY;
            };
            let ctx = MsrContext {
                regs: &mut vcpu.regs,
                synthetic: &mut partition.synthetic_msrs,
                privileges,
                vp_index,
                tsc: platform.read_tsc(),
            };
            match ctx.read(msr) {
                Some(value) => {
                    vcpu.regs.set_gpr(Gpr::Rax, value & 0xFFFF_FFFF);
                    vcpu.regs.set_gpr(Gpr::Rdx, value >> 32);
                    ADVANCE
                }
                None => {
                    partition.counters.gp_injected += 1;
                    GP
                }
            }
        }
        ExitEvent::MsrWrite { msr, value } => {
            msr_write(manager, platform, id, vp_index, msr, value)
        }
        ExitEvent::TripleFault => stop(manager, id, StopReason::TripleFault),
        ExitEvent::ExternalInterrupt | ExitEvent::Nmi => RETRY,
        ExitEvent::Exception { vector, error_code } => {
            // A double fault the guest's IDT cannot even hold (64-bit gates are 16 bytes) can
            // only end in a shutdown; stop it here as the triple fault it will become. Backends
            // intercept #DF because some (Bochs 2.7 SVM) reset the whole machine on a guest
            // shutdown instead of exiting with the SHUTDOWN intercept.
            let idt_limit = partition
                .vcpus
                .get(&vp_index)
                .map_or(0, |vcpu| vcpu.regs.idtr.limit);
            if vector == VECTOR_DF && u32::from(idt_limit) < DF_GATE_END {
                stop(manager, id, StopReason::TripleFault)
            } else {
                ExitAction::Inject { vector, error_code }
            }
        }
        ExitEvent::TimerPreempt => ExitAction::Yield,
        ExitEvent::InvalidState => stop(manager, id, StopReason::InvalidState),
        ExitEvent::Unknown { code } => stop(manager, id, StopReason::UnhandledExit { code }),
    }
}

/// How a hypercall reached the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gate {
    /// VMMCALL/VMCALL: TLFS rules (64-bit mode, CPL 0).
    Instruction,
    /// The root's I/O-port doorbell: 64-bit mode, any CPL (the OS's I/O permission bitmap
    /// decided who may reach the port).
    Doorbell,
}

fn hypercall<P, S, H>(
    manager: &mut PartitionManager<P, S, H>,
    id: PartitionId,
    vp_index: u32,
    gate: Gate,
) -> ExitAction
where
    P: MemoryPool,
    S: SecondLevel,
    H: HostPhysMemory,
{
    let Some(partition) = manager.partition(id) else {
        return RETRY;
    };
    let Some(vcpu) = partition.vcpu(vp_index) else {
        return RETRY;
    };
    let regs = &vcpu.regs;
    // TLFS: hypercalls from outside 64-bit mode or from CPL > 0 raise #UD.
    let long_mode = regs.efer & EFER_LMA != 0 && regs.cs.attributes & CS_LONG != 0;
    let cpl = (regs.ss.attributes >> 5) & 3;
    if !long_mode || (cpl != 0 && gate == Gate::Instruction) {
        if gate == Gate::Doorbell
            && let Some(partition) = manager.partition_mut(id)
        {
            partition.counters.gp_injected += 1;
        }
        return ExitAction::Inject {
            vector: if gate == Gate::Instruction {
                VECTOR_UD
            } else {
                VECTOR_GP
            },
            error_code: (gate == Gate::Doorbell).then_some(0),
        };
    }
    let (rcx, rdx, r8) = (regs.gpr(Gpr::Rcx), regs.gpr(Gpr::Rdx), regs.gpr(Gpr::R8));
    let caller = CallerContext {
        partition_id: id,
        vp_index,
        privileges: partition.privileges,
    };
    match backend_call(rcx, rdx, r8, &caller) {
        Some(Ok(BackendCall::RunPartitions)) => return ExitAction::RunPartitions,
        Some(Err(outcome)) => {
            if let Some(vcpu) = manager.vcpu_mut(id, vp_index) {
                vcpu.regs.set_gpr(Gpr::Rax, outcome.rax);
            }
            if let Some(partition) = manager.partition_mut(id) {
                partition.counters.failed_hypercalls += 1;
            }
            return ADVANCE;
        }
        None => {}
    }
    let mut memory = if rcx & FAST_BIT != 0 {
        // Fast calls pass everything in registers: no guest memory to buffer.
        CallerMemory::empty()
    } else {
        CallerMemory::load(&partition.ram, &manager.host, [rdx, r8])
    };
    let outcome = handle_hypercall(rcx, rdx, r8, &caller, &mut memory, manager);
    let Some(partition) = manager.partition_mut(id) else {
        return RETRY;
    };
    if outcome.error.is_some() {
        partition.counters.failed_hypercalls += 1;
    }
    manager.store_caller_memory(id, &memory);
    let Some(partition) = manager.partition_mut(id) else {
        return RETRY;
    };
    let Some(vcpu) = partition.vcpus.get_mut(&vp_index) else {
        return RETRY;
    };
    vcpu.regs.set_gpr(Gpr::Rax, outcome.rax);
    match outcome.continue_rcx {
        Some(rcx) => {
            vcpu.regs.set_gpr(Gpr::Rcx, rcx);
            RETRY
        }
        None => ADVANCE,
    }
}

fn io_port<P, S, H>(
    manager: &mut PartitionManager<P, S, H>,
    id: PartitionId,
    io: IoPortAccess,
    vp_index: u32,
) -> ExitAction
where
    P: MemoryPool,
    S: SecondLevel,
    H: HostPhysMemory,
{
    let bad = StopReason::BadIoPort {
        port: io.port,
        size: io.size,
        write: io.write,
    };
    if io.string || io.rep || !matches!(io.size, 1 | 2 | 4) {
        return stop(manager, id, bad);
    }
    let Some(partition) = manager.partition_mut(id) else {
        return RETRY;
    };
    match (io.port, io.write) {
        (DEBUG_CONSOLE_PORT, true) => {
            let byte = io.value.to_le_bytes()[0];
            // NUL is ignored: a cheap no-op I/O exit for guests (and benchmarks) to use.
            if byte != 0 {
                partition.console_write(&[byte]);
            }
            ADVANCE
        }
        (DEBUG_CONSOLE_PORT, false) => {
            if let Some(vcpu) = partition.vcpus.get_mut(&vp_index) {
                let rax = vcpu.regs.gpr(Gpr::Rax);
                let value = match io.size {
                    1 => (rax & !0xFF) | u64::from(DEBUG_CONSOLE_PORT & 0xFF),
                    2 => (rax & !0xFFFF) | u64::from(DEBUG_CONSOLE_PORT & 0xFF),
                    // A 32-bit IN zero-extends into RAX.
                    _ => u64::from(DEBUG_CONSOLE_PORT & 0xFF),
                };
                vcpu.regs.set_gpr(Gpr::Rax, value);
            }
            ADVANCE
        }
        (EXIT_PORT, true) => {
            let mask = match io.size {
                1 => 0xFF,
                2 => 0xFFFF,
                _ => u32::MAX,
            };
            stop(manager, id, StopReason::Exited(io.value & mask))
        }
        _ => stop(manager, id, bad),
    }
}

fn msr_write<P, S, H, C>(
    manager: &mut PartitionManager<P, S, H>,
    platform: &C,
    id: PartitionId,
    vp_index: u32,
    msr: u32,
    value: u64,
) -> ExitAction
where
    P: MemoryPool,
    S: SecondLevel,
    H: HostPhysMemory,
    C: Platform + ?Sized,
{
    let tsc = platform.read_tsc();
    let Some(partition) = manager.partition_mut(id) else {
        return RETRY;
    };
    let privileges = partition.privileges;
    let Some(vcpu) = partition.vcpus.get_mut(&vp_index) else {
        return RETRY;
    };
    let saved = (vcpu.regs, partition.synthetic_msrs);
    let mut ctx = MsrContext {
        regs: &mut vcpu.regs,
        synthetic: &mut partition.synthetic_msrs,
        privileges,
        vp_index,
        tsc,
    };
    let effect = ctx.write(msr, value);
    match effect {
        None => {
            partition.counters.gp_injected += 1;
            GP
        }
        Some(MsrEffect::None) => ADVANCE,
        Some(MsrEffect::InstallHypercallPage(gpa)) => {
            let mut page = [0u8; 4];
            page[..3].copy_from_slice(&platform.hypercall_instruction());
            page[3] = 0xC3; // RET
            let Some(mut memory) = manager.guest_memory(id) else {
                return RETRY;
            };
            if memory.write(gpa, &page).is_ok() {
                return ADVANCE;
            }
            // Not writable RAM of the partition: refuse the MSR write as a whole.
            if let Some(partition) = manager.partition_mut(id) {
                partition.synthetic_msrs = saved.1;
                if let Some(vcpu) = partition.vcpus.get_mut(&vp_index) {
                    vcpu.regs = saved.0;
                }
                partition.counters.gp_injected += 1;
            }
            GP
        }
    }
}

/// Completes a Mica run-partitions call of root vCPU `vp_index`: RAX = success, RDX =
/// `reason`, R8 = `partition` (0 if none). The backend then resumes the root past the
/// calling instruction.
pub fn finish_run_partitions<P, S, H>(
    manager: &mut PartitionManager<P, S, H>,
    vp_index: u32,
    reason: RunExitReason,
    partition: Option<PartitionId>,
) where
    P: MemoryPool,
    S: SecondLevel,
    H: HostPhysMemory,
{
    if let Some(vcpu) = manager.vcpu_mut(ROOT_PARTITION, vp_index) {
        vcpu.regs.set_gpr(
            Gpr::Rax,
            hypercall::result_value(hypercall::HvStatus::Success, 0),
        );
        vcpu.regs.set_gpr(Gpr::Rdx, reason as u64);
        vcpu.regs.set_gpr(Gpr::R8, partition.map_or(0, |p| p.0));
    }
}

/// The root's intercepted I/O: the doorbell, or a port the hypervisor keeps for itself
/// (its serial port): reads see a floating bus (all ones), writes are dropped, string and
/// REP forms get #GP. None of it stops the root.
fn root_io_port<P, S, H>(
    manager: &mut PartitionManager<P, S, H>,
    io: IoPortAccess,
    vp_index: u32,
) -> ExitAction
where
    P: MemoryPool,
    S: SecondLevel,
    H: HostPhysMemory,
{
    if io.port == DOORBELL_PORT && io.write && io.size == 1 && !io.string && !io.rep {
        return hypercall(manager, ROOT_PARTITION, vp_index, Gate::Doorbell);
    }
    let Some(partition) = manager.partition_mut(ROOT_PARTITION) else {
        return RETRY;
    };
    partition.counters.root_denied_io += 1;
    if io.string || io.rep || !matches!(io.size, 1 | 2 | 4) {
        partition.counters.gp_injected += 1;
        return GP;
    }
    if !io.write
        && let Some(vcpu) = partition.vcpus.get_mut(&vp_index)
    {
        let rax = vcpu.regs.gpr(Gpr::Rax);
        let value = match io.size {
            1 => rax | 0xFF,
            2 => rax | 0xFFFF,
            // A 32-bit IN zero-extends into RAX.
            _ => 0xFFFF_FFFF,
        };
        vcpu.regs.set_gpr(Gpr::Rax, value);
    }
    ADVANCE
}

/// MSRs the backend intercepts on the root (every other MSR passes through to the CPU).
pub mod root_msrs {
    /// EFER: SVME must stay set under the root (read and write intercepted).
    pub const EFER: u32 = 0xC000_0080;
    /// AMD VM_CR: reads report SVM disabled and locked; writes are dropped.
    pub const VM_CR: u32 = 0xC001_0114;
    /// AMD VM_HSAVE_PA: the hypervisor's host save area; reads 0, writes dropped.
    pub const VM_HSAVE_PA: u32 = 0xC001_0117;
    /// AMD SYSCFG (memory encryption, MTRR fix-ups): writes dropped.
    pub const SYSCFG: u32 = 0xC001_0010;
    /// MTRR range (capabilities, variable and fixed ranges, default type): writes dropped,
    /// so the root cannot change the memory types of the hypervisor's memory.
    pub const MTRRS: [core::ops::RangeInclusive<u32>; 2] =
        [0x0000_00FE..=0x0000_00FE, 0x0000_0200..=0x0000_02FF];
    /// Intercepted for reads (the rest only for writes).
    pub const READ_INTERCEPTED: [u32; 3] = [EFER, VM_CR, VM_HSAVE_PA];
    /// Intercepted for writes, single MSRs.
    pub const WRITE_INTERCEPTED: [u32; 4] = [EFER, VM_CR, VM_HSAVE_PA, SYSCFG];
}

/// VM_CR.LOCK (bit 3) and VM_CR.SVMDIS (bit 4).
const VM_CR_LOCKED_DISABLED: u64 = (1 << 3) | (1 << 4);
/// EFER.SVME.
const EFER_SVME: u64 = 1 << 12;
/// EFER bits the root may write: SCE, LME, LMA (ignored), NXE, LMSLE, FFXSR, TCE.
const ROOT_EFER_WRITABLE: u64 = (1 << 0) | (1 << 8) | (1 << 10) | (1 << 11) | (0b111 << 13);

fn root_msr_read<P, S, H>(
    manager: &mut PartitionManager<P, S, H>,
    vp_index: u32,
    msr: u32,
) -> ExitAction
where
    P: MemoryPool,
    S: SecondLevel,
    H: HostPhysMemory,
{
    let Some(partition) = manager.partition_mut(ROOT_PARTITION) else {
        return RETRY;
    };
    let Some(vcpu) = partition.vcpus.get_mut(&vp_index) else {
        return RETRY;
    };
    let value = match msr {
        root_msrs::EFER => vcpu.regs.efer & !EFER_SVME,
        root_msrs::VM_CR => VM_CR_LOCKED_DISABLED,
        root_msrs::VM_HSAVE_PA => 0,
        _ => {
            partition.counters.gp_injected += 1;
            return GP;
        }
    };
    vcpu.regs.set_gpr(Gpr::Rax, value & 0xFFFF_FFFF);
    vcpu.regs.set_gpr(Gpr::Rdx, value >> 32);
    ADVANCE
}

fn root_msr_write<P, S, H>(
    manager: &mut PartitionManager<P, S, H>,
    vp_index: u32,
    msr: u32,
    value: u64,
) -> ExitAction
where
    P: MemoryPool,
    S: SecondLevel,
    H: HostPhysMemory,
{
    let Some(partition) = manager.partition_mut(ROOT_PARTITION) else {
        return RETRY;
    };
    if msr == root_msrs::EFER {
        // The root may not turn SVM on (it has no SVM) nor off (the hypervisor's VMRUN needs
        // it): the bit is kept out of its view; the rest is the root's, and the hardware's
        // VMRUN checks reject an inconsistent EFER.
        if value & EFER_SVME != 0 || value & !ROOT_EFER_WRITABLE != 0 {
            partition.counters.gp_injected += 1;
            return GP;
        }
        if let Some(vcpu) = partition.vcpus.get_mut(&vp_index) {
            // LMA is the CPU's to set (it follows LME and CR0.PG); a write keeps it.
            vcpu.regs.efer = (value & !EFER_LMA) | (vcpu.regs.efer & EFER_LMA);
        }
        return ADVANCE;
    }
    partition.counters.root_denied_msr_writes += 1;
    ADVANCE
}
