//! One partition: identity, lifecycle, privileges, memory map, vCPUs, console and counters.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

use hypercall::{PartitionId, PartitionPrivileges};

use crate::exit::ExitKind;
use crate::memory::GuestRam;
use crate::vcpu::Vcpu;

/// The root partition's ID.
///
/// TLFS reserves `HV_PARTITION_ID_INVALID` (0) and `HV_PARTITION_ID_SELF` (`u64::MAX`);
/// Mica gives the root 1 and its children 2, 3, ... in creation order. IDs are never
/// reused, so a stale ID held by the root cannot name a newer partition.
pub const ROOT_PARTITION: PartitionId = PartitionId(1);

/// The privileges of every child: the TLFS guest set plus `DEBUGGING`, so a test guest's
/// Mica debug-output call (0xC004) reaches its own console buffer. No management
/// privilege (create partitions, memory pool, CPU management, VP registers).
pub const CHILD_PRIVILEGES: PartitionPrivileges =
    PartitionPrivileges::CHILD_DEFAULT.union(PartitionPrivileges::DEBUGGING);

/// Hard limits of the partition manager. Exceeding one is a typed error, never a panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Partitions alive at once, the root included.
    pub max_partitions: usize,
    /// vCPUs per partition (indices `0..max_vcpus`).
    pub max_vcpus: u32,
    /// Pool pages one child may have mapped.
    pub max_pages: u64,
    /// Bytes each console buffer keeps (older bytes are dropped and counted).
    pub console_capacity: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_partitions: 64,
            max_vcpus: 64,
            max_pages: 1 << 20,
            console_capacity: 16 * 1024,
        }
    }
}

/// Lifecycle: `Created → Initialized → Running ⇄ Stopped → Finalized`, then deletion
/// removes the partition from the table (its ID is never reused).
///
/// Memory can be mapped and vCPUs created in `Initialized` and `Stopped` (mapping also
/// while `Running`); only `Initialized` and `Stopped` partitions can be started; a
/// `Running` partition must be stopped before it is finalized or deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PartitionState {
    /// Created by `HvCallCreatePartition`.
    Created,
    /// `HvCallInitializePartition` done: memory and vCPUs can be added.
    Initialized,
    /// Its vCPUs may be scheduled.
    Running,
    /// Stopped (see [`Partition::stop_reason`]); can be started again.
    Stopped,
    /// `HvCallFinalizePartition` done: can only be deleted.
    Finalized,
}

/// Why a partition stopped. Recorded on the partition for the root to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StopReason {
    /// The root asked (Mica stop-partition call or finalize).
    Requested,
    /// The guest wrote `code` to the exit port 0xF4.
    Exited(u32),
    /// A vCPU triple-faulted (shutdown).
    TripleFault,
    /// A vCPU used an I/O port it may not use (or a string/rep I/O instruction).
    BadIoPort {
        /// The port.
        port: u16,
        /// Access size in bytes.
        size: u8,
        /// Write (OUT) rather than read (IN).
        write: bool,
    },
    /// A vCPU touched guest-physical memory outside its map.
    OutsideMemory {
        /// The faulting guest-physical address.
        gpa: u64,
        /// The kind of access.
        access: MemoryAccess,
    },
    /// A vCPU violated the permissions of a mapped page (e.g. wrote a read-only page).
    AccessViolation {
        /// The faulting guest-physical address.
        gpa: u64,
        /// The kind of access.
        access: MemoryAccess,
    },
    /// The hardware refused the vCPU state (VMRUN/VMLAUNCH consistency checks).
    InvalidState,
    /// A hypervisor limit or resource was exhausted while serving the partition.
    HypervisorLimit,
    /// The backend reported an exit Mica does not handle.
    UnhandledExit {
        /// The backend's exit code.
        code: u64,
    },
}

/// The kind of memory access behind a fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemoryAccess {
    /// Data read.
    Read,
    /// Data write.
    Write,
    /// Instruction fetch.
    Execute,
}

/// Per-partition counters, for the root's `hvctl info`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    exits: [u64; ExitKind::COUNT],
    /// Hypercalls that returned a status other than success.
    pub failed_hypercalls: u64,
    /// Console bytes dropped because the buffer was full.
    pub console_dropped: u64,
    /// #GP injections by the exit policies.
    pub gp_injected: u64,
    /// Root only: accesses to memory it may not reach (hypervisor memory, child pool).
    pub root_denied_accesses: u64,
    /// Root only: accesses to I/O ports the hypervisor keeps.
    pub root_denied_io: u64,
    /// Root only: writes to protected MSRs that were dropped.
    pub root_denied_msr_writes: u64,
}

impl Counters {
    /// Exits of `kind` handled so far.
    #[must_use]
    pub fn exits(&self, kind: ExitKind) -> u64 {
        self.exits[kind as usize]
    }

    /// All exits handled so far.
    #[must_use]
    pub fn total_exits(&self) -> u64 {
        self.exits.iter().fold(0u64, |a, &b| a.saturating_add(b))
    }

    pub(crate) fn count(&mut self, kind: ExitKind) {
        let slot = &mut self.exits[kind as usize];
        *slot = slot.saturating_add(1);
    }
}

/// A bounded byte buffer: the partition's debug console (port 0xE9 and the debug-output
/// hypercall). When full, the oldest bytes make room and are counted as dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Console {
    bytes: VecDeque<u8>,
    capacity: usize,
}

impl Console {
    /// An empty console keeping at most `capacity` bytes.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            bytes: VecDeque::new(),
            capacity,
        }
    }

    /// Appends `data`; returns how many old bytes were dropped.
    pub fn push(&mut self, data: &[u8]) -> u64 {
        let mut dropped = 0u64;
        for &b in data {
            if self.capacity == 0 {
                dropped += 1;
                continue;
            }
            if self.bytes.len() >= self.capacity {
                self.bytes.pop_front();
                dropped += 1;
            }
            self.bytes.push_back(b);
        }
        dropped
    }

    /// The buffered bytes, oldest first.
    #[must_use]
    pub fn contents(&self) -> Vec<u8> {
        self.bytes.iter().copied().collect()
    }

    /// Takes the buffered bytes, leaving the buffer empty.
    pub fn drain(&mut self) -> Vec<u8> {
        self.bytes.drain(..).collect()
    }

    /// Moves the oldest buffered bytes into `buf`; returns (bytes moved, bytes left).
    pub fn read_into(&mut self, buf: &mut [u8]) -> (usize, usize) {
        let n = buf.len().min(self.bytes.len());
        for (slot, byte) in buf.iter_mut().zip(self.bytes.drain(..n)) {
            *slot = byte;
        }
        (n, self.bytes.len())
    }

    /// Bytes buffered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether nothing is buffered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl StopReason {
    /// The Mica stop-reason property value ([`hypercall::abi::stop_code`]): kind in bits
    /// 7:0, detail in bits 63:32.
    #[must_use]
    pub const fn code(&self) -> u64 {
        use hypercall::abi::stop_code as c;
        let (kind, detail): (u8, u32) = match *self {
            Self::Requested => (c::REQUESTED, 0),
            Self::Exited(status) => (c::EXITED, status),
            Self::TripleFault => (c::TRIPLE_FAULT, 0),
            Self::BadIoPort { port, size, write } => (
                c::BAD_IO_PORT,
                port as u32 | (size as u32) << 16 | (write as u32) << 24,
            ),
            Self::OutsideMemory { .. } => (c::OUTSIDE_MEMORY, 0),
            Self::AccessViolation { .. } => (c::ACCESS_VIOLATION, 0),
            Self::InvalidState => (c::INVALID_STATE, 0),
            Self::HypervisorLimit => (c::HYPERVISOR_LIMIT, 0),
            Self::UnhandledExit { code } => (c::UNHANDLED_EXIT, code as u32),
        };
        kind as u64 | (detail as u64) << 32
    }

    /// The faulting GPA of a memory stop (0 otherwise).
    #[must_use]
    pub const fn gpa(&self) -> u64 {
        match *self {
            Self::OutsideMemory { gpa, .. } | Self::AccessViolation { gpa, .. } => gpa,
            _ => 0,
        }
    }
}

/// Per-partition Hyper-V synthetic MSR state (HV_X64_MSR_GUEST_OS_ID, HV_X64_MSR_HYPERCALL).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyntheticMsrs {
    /// HV_X64_MSR_GUEST_OS_ID.
    pub guest_os_id: u64,
    /// HV_X64_MSR_HYPERCALL (enable bit 0, GPA page in bits 63:12).
    pub hypercall: u64,
}

/// One partition.
#[derive(Debug)]
pub struct Partition {
    pub(crate) id: PartitionId,
    pub(crate) parent: Option<PartitionId>,
    pub(crate) state: PartitionState,
    pub(crate) stop_reason: Option<StopReason>,
    pub(crate) privileges: PartitionPrivileges,
    pub(crate) ram: GuestRam,
    pub(crate) second_level_root: Option<u64>,
    pub(crate) tlb_flush_pending: bool,
    pub(crate) max_pages: u64,
    pub(crate) vcpus: BTreeMap<u32, Vcpu>,
    pub(crate) console: Console,
    pub(crate) counters: Counters,
    pub(crate) synthetic_msrs: SyntheticMsrs,
}

impl Partition {
    /// Its ID.
    #[must_use]
    pub const fn id(&self) -> PartitionId {
        self.id
    }

    /// The partition that created it (`None` for the root).
    #[must_use]
    pub const fn parent(&self) -> Option<PartitionId> {
        self.parent
    }

    /// Its lifecycle state.
    #[must_use]
    pub const fn state(&self) -> PartitionState {
        self.state
    }

    /// Why it stopped (`None` while running, and before it first stopped).
    #[must_use]
    pub const fn stop_reason(&self) -> Option<StopReason> {
        self.stop_reason
    }

    /// Its privilege mask.
    #[must_use]
    pub const fn privileges(&self) -> PartitionPrivileges {
        self.privileges
    }

    /// Its guest-physical RAM.
    #[must_use]
    pub const fn ram(&self) -> &GuestRam {
        &self.ram
    }

    /// Root of its second-level tables (`None` for the root partition, whose tables the
    /// hypervisor builds itself).
    #[must_use]
    pub const fn second_level_root(&self) -> Option<u64> {
        self.second_level_root
    }

    /// Its vCPU `index`.
    #[must_use]
    pub fn vcpu(&self, index: u32) -> Option<&Vcpu> {
        self.vcpus.get(&index)
    }

    /// Its vCPUs, by index.
    pub fn vcpus(&self) -> impl Iterator<Item = &Vcpu> {
        self.vcpus.values()
    }

    /// Its console buffer.
    #[must_use]
    pub const fn console(&self) -> &Console {
        &self.console
    }

    /// Its counters.
    #[must_use]
    pub const fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Its synthetic MSR state.
    #[must_use]
    pub const fn synthetic_msrs(&self) -> SyntheticMsrs {
        self.synthetic_msrs
    }

    /// Marks the partition stopped for `reason` and every vCPU not runnable.
    pub(crate) fn stop(&mut self, reason: StopReason) {
        self.state = PartitionState::Stopped;
        self.stop_reason = Some(reason);
        for vcpu in self.vcpus.values_mut() {
            vcpu.set_run_state(crate::vcpu::RunState::Stopped);
        }
    }

    pub(crate) fn console_write(&mut self, data: &[u8]) {
        let dropped = self.console.push(data);
        self.counters.console_dropped = self.counters.console_dropped.saturating_add(dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_keeps_the_newest_bytes_and_counts_drops() {
        let mut console = Console::new(4);
        assert_eq!(console.push(b"abc"), 0);
        assert_eq!(console.push(b"def"), 2);
        assert_eq!(console.contents(), b"cdef");
        assert_eq!(console.drain(), b"cdef");
        assert!(console.contents().is_empty());
        let mut none = Console::new(0);
        assert_eq!(none.push(b"xy"), 2);
        assert!(none.contents().is_empty());
    }

    #[test]
    fn ids_avoid_the_tlfs_reserved_values() {
        assert_ne!(ROOT_PARTITION, PartitionId::INVALID);
        assert_ne!(ROOT_PARTITION, PartitionId::SELF);
        assert!(!CHILD_PRIVILEGES.contains(PartitionPrivileges::CREATE_PARTITIONS));
        assert!(!CHILD_PRIVILEGES.contains(PartitionPrivileges::ACCESS_MEMORY_POOL));
        assert!(CHILD_PRIVILEGES.contains(PartitionPrivileges::DEBUGGING));
    }
}
