//! The partition manager: the table of partitions, the child-memory pool, the second-level
//! tables and host memory, and the hypercall handler acting on them.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use hypercall::abi::{HypervisorInfo, MAX_PROTECTED_RANGES, ProtectedRange};
use hypercall::{
    CallerContext, CreatePartitionParams, CreateVpParams, HvError, HypercallHandler, MapGpaFlags,
    PartitionId, PartitionPrivileges, PartitionPropertyCode, RegisterName, RegisterValue, VpTarget,
};

use crate::memory::{
    CallerMemory, GpaMapping, GpaPerms, GuestRam, HostPhysMemory, MemoryPool, PAGE_SIZE,
    PartitionMemory, SecondLevel, SecondLevelError,
};
use crate::partition::{
    CHILD_PRIVILEGES, Console, Counters, Limits, Partition, PartitionState, ROOT_PARTITION,
    StopReason, SyntheticMsrs,
};
use crate::vcpu::{RunState, Vcpu, VcpuRegisters};

/// Guest-physical addresses are below 2^48 (the second-level tables translate 48 bits).
pub const MAX_GPA_PAGES: u64 = 1 << (48 - 12);

/// Partition properties (`HV_PARTITION_PROPERTY_CODE`) Mica answers.
pub mod properties {
    /// `HvPartitionPropertyPrivilegeFlags` (read-only): the privilege mask.
    pub const PRIVILEGE_FLAGS: u32 = 0x0001_0000;
    /// Mica-private (read-only): pages mapped.
    pub const MICA_MAPPED_PAGES: u32 = 0x8000_0001;
    /// Mica-private (read/write): the most pages the partition may have mapped (at most
    /// the manager's limit).
    pub const MICA_MAX_PAGES: u32 = 0x8000_0002;
    /// Mica-private (read-only): [`crate::PartitionState`] as 0 Created, 1 Initialized,
    /// 2 Running, 3 Stopped, 4 Finalized.
    pub const MICA_STATE: u32 = 0x8000_0003;
    /// Mica-private (read-only): exits handled so far.
    pub const MICA_TOTAL_EXITS: u32 = 0x8000_0004;
    /// Mica-private (read-only): why it stopped, encoded as `hypercall::abi::stop_code`
    /// (0 while it has not stopped).
    pub const MICA_STOP_REASON: u32 = 0x8000_0005;
    /// Mica-private (read-only): the faulting GPA of a memory stop (0 otherwise).
    pub const MICA_STOP_GPA: u32 = 0x8000_0006;
}

/// What the backend tells the manager about the host, for the hypervisor-info call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostInfo {
    /// `hypercall::abi::BACKEND_SVM` or `BACKEND_VMX`.
    pub backend: u32,
    /// `hypercall::abi::HostFeatures` bits in use.
    pub features: u32,
    /// Physical ranges the root can never reach (at most `MAX_PROTECTED_RANGES` reported).
    pub protected: [(u64, u64); hypercall::abi::MAX_PROTECTED_RANGES],
    /// Valid entries of `protected`.
    pub protected_count: usize,
}

/// Errors of the manager's hypervisor-side (non-hypercall) API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ManagerError {
    /// A root RAM range is empty, not page-aligned, unsorted or overlapping.
    #[error("Root RAM range {start:#x}..{end:#x} is invalid")]
    InvalidRootRam {
        /// Start of the range.
        start: u64,
        /// End of the range.
        end: u64,
    },
    /// No partition has this ID.
    #[error("No partition {0:?}")]
    NoSuchPartition(PartitionId),
    /// The vCPU index is beyond the limit or already used.
    #[error("vCPU index {0} is invalid or in use")]
    InvalidVcpu(u32),
}

/// All partitions and the resources they draw on.
///
/// `P` supplies child RAM frames, `S` mirrors each child's map into second-level tables,
/// `H` reaches host-physical bytes. The manager implements [`HypercallHandler`];
/// [`crate::handle_exit`] runs exits (hypercalls included) against it.
#[derive(Debug)]
pub struct PartitionManager<P: MemoryPool, S: SecondLevel, H: HostPhysMemory> {
    limits: Limits,
    partitions: BTreeMap<u64, Partition>,
    next_id: u64,
    pub(crate) pool: P,
    tables: S,
    pub(crate) host: H,
    host_info: HostInfo,
}

impl<P: MemoryPool, S: SecondLevel, H: HostPhysMemory> PartitionManager<P, S, H> {
    /// A manager holding only the root partition ([`ROOT_PARTITION`], running, no vCPUs
    /// yet), whose RAM is identity-mapped over `root_ram` (page-aligned `[start, end)`
    /// ranges, sorted and disjoint).
    ///
    /// # Errors
    /// [`ManagerError::InvalidRootRam`].
    pub fn new(
        limits: Limits,
        pool: P,
        tables: S,
        host: H,
        root_ram: &[(u64, u64)],
    ) -> Result<Self, ManagerError> {
        let mut previous_end = 0;
        for &(start, end) in root_ram {
            if start >= end
                || !start.is_multiple_of(PAGE_SIZE)
                || !end.is_multiple_of(PAGE_SIZE)
                || start < previous_end
            {
                return Err(ManagerError::InvalidRootRam { start, end });
            }
            previous_end = end;
        }
        let root = Partition {
            id: ROOT_PARTITION,
            parent: None,
            state: PartitionState::Running,
            stop_reason: None,
            privileges: PartitionPrivileges::ROOT,
            ram: GuestRam::Identity(root_ram.to_vec()),
            second_level_root: None,
            tlb_flush_pending: false,
            max_pages: 0,
            vcpus: BTreeMap::new(),
            console: Console::new(limits.console_capacity),
            counters: Counters::default(),
            synthetic_msrs: SyntheticMsrs::default(),
        };
        let mut partitions = BTreeMap::new();
        partitions.insert(ROOT_PARTITION.0, root);
        Ok(Self {
            limits,
            partitions,
            next_id: ROOT_PARTITION.0 + 1,
            pool,
            tables,
            host,
            host_info: HostInfo::default(),
        })
    }

    /// Records the host facts the hypervisor-info call reports.
    pub fn set_host_info(&mut self, info: HostInfo) {
        self.host_info = info;
    }

    /// The second-level tables (for inspection: leaf counts, translations).
    pub fn second_level_mut(&mut self) -> &mut S {
        &mut self.tables
    }

    /// Adds root vCPU `index` (one per CPU the root runs on), runnable, with `regs`
    /// (the state the root's CPU had when the hypervisor took it over).
    ///
    /// # Errors
    /// [`ManagerError::InvalidVcpu`] if `index` is beyond the limit or used.
    pub fn add_root_vcpu(&mut self, index: u32, regs: VcpuRegisters) -> Result<(), ManagerError> {
        let max = self.limits.max_vcpus;
        let root = self
            .partitions
            .get_mut(&ROOT_PARTITION.0)
            .ok_or(ManagerError::NoSuchPartition(ROOT_PARTITION))?;
        if index >= max || root.vcpus.contains_key(&index) {
            return Err(ManagerError::InvalidVcpu(index));
        }
        let mut vcpu = Vcpu::new(index);
        vcpu.regs = regs;
        vcpu.set_run_state(RunState::Runnable);
        root.vcpus.insert(index, vcpu);
        Ok(())
    }

    /// The limits in force.
    #[must_use]
    pub const fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Partition `id`.
    #[must_use]
    pub fn partition(&self, id: PartitionId) -> Option<&Partition> {
        self.partitions.get(&id.0)
    }

    pub(crate) fn partition_mut(&mut self, id: PartitionId) -> Option<&mut Partition> {
        self.partitions.get_mut(&id.0)
    }

    /// Every partition, by ID.
    pub fn partitions(&self) -> impl Iterator<Item = &Partition> {
        self.partitions.values()
    }

    /// vCPU `index` of partition `id`, for the backend to sync registers.
    pub fn vcpu_mut(&mut self, id: PartitionId, index: u32) -> Option<&mut Vcpu> {
        self.partitions.get_mut(&id.0)?.vcpus.get_mut(&index)
    }

    /// Wakes a halted vCPU (an interrupt is pending for it, or the root asked). Returns
    /// whether it became runnable (only a halted vCPU of a running partition does).
    pub fn wake_vcpu(&mut self, id: PartitionId, index: u32) -> bool {
        let Some(partition) = self.partitions.get_mut(&id.0) else {
            return false;
        };
        if partition.state != PartitionState::Running {
            return false;
        }
        match partition.vcpus.get_mut(&index) {
            Some(vcpu) if vcpu.run_state() == RunState::Halted => {
                vcpu.set_run_state(RunState::Runnable);
                true
            }
            _ => false,
        }
    }

    /// Stops a running partition for `reason` (e.g. a watchdog of the hypervisor).
    /// Returns whether it was running.
    pub fn stop(&mut self, id: PartitionId, reason: StopReason) -> bool {
        match self.partitions.get_mut(&id.0) {
            Some(p) if p.state == PartitionState::Running => {
                p.stop(reason);
                true
            }
            _ => false,
        }
    }

    /// Returns and clears whether partition `id`'s second-level translations changed in a
    /// way the TLBs may still cache (flush its ASID/VPID on every CPU before running it).
    pub fn take_tlb_flush(&mut self, id: PartitionId) -> bool {
        self.partitions
            .get_mut(&id.0)
            .is_some_and(|p| core::mem::take(&mut p.tlb_flush_pending))
    }

    /// Takes partition `id`'s console bytes.
    pub fn drain_console(&mut self, id: PartitionId) -> Option<Vec<u8>> {
        self.partitions.get_mut(&id.0).map(|p| p.console.drain())
    }

    /// Partition `id`'s memory, to copy bytes in and out (image loading).
    pub fn guest_memory(&mut self, id: PartitionId) -> Option<PartitionMemory<'_, H>> {
        let partition = self.partitions.get(&id.0)?;
        Some(PartitionMemory {
            ram: &partition.ram,
            host: &mut self.host,
        })
    }

    /// The child-memory pool.
    pub const fn pool(&self) -> &P {
        &self.pool
    }

    /// The second-level tables.
    pub const fn tables(&self) -> &S {
        &self.tables
    }

    /// Host memory.
    pub const fn host(&self) -> &H {
        &self.host
    }

    /// Host memory, mutably.
    pub const fn host_mut(&mut self) -> &mut H {
        &mut self.host
    }

    /// Writes back what a hypercall wrote into the caller's parameter pages.
    pub(crate) fn store_caller_memory(&mut self, id: PartitionId, memory: &CallerMemory) {
        if let Some(partition) = self.partitions.get(&id.0) {
            memory.store(&partition.ram, &mut self.host);
        }
    }

    /// The partition `caller` may manage: an existing child of the caller.
    fn child_of(
        &mut self,
        caller: &CallerContext,
        target: PartitionId,
    ) -> Result<&mut Partition, HvError> {
        let partition = self
            .partitions
            .get_mut(&target.0)
            .ok_or(HvError::InvalidPartitionId)?;
        if partition.parent != Some(caller.partition_id) {
            return Err(HvError::AccessDenied);
        }
        Ok(partition)
    }

    /// The vCPU a register call may touch: the caller's own calling VP, or a VP of a child
    /// that is not running (a running VP's live state is in the hardware).
    fn register_target(
        &mut self,
        caller: &CallerContext,
        target: VpTarget,
    ) -> Result<&mut Vcpu, HvError> {
        let partition = if target.partition == caller.partition_id {
            if target.vp_index != caller.vp_index {
                return Err(HvError::InvalidVpState);
            }
            self.partitions
                .get_mut(&target.partition.0)
                .ok_or(HvError::InvalidPartitionId)?
        } else {
            let partition = self.child_of(caller, target.partition)?;
            if partition.state == PartitionState::Running {
                return Err(HvError::InvalidPartitionState);
            }
            partition
        };
        partition
            .vcpus
            .get_mut(&target.vp_index)
            .ok_or(HvError::InvalidVpIndex)
    }

    /// Unmaps every page of a child and returns the frames to the pool.
    fn release_memory(&mut self, id: PartitionId) {
        let Some(partition) = self.partitions.get_mut(&id.0) else {
            return;
        };
        let root = partition.second_level_root.take();
        let GuestRam::Mapped(map) = &mut partition.ram else {
            return;
        };
        let pages = core::mem::take(map);
        for (gpa_page, mapping) in pages {
            if let Some(root) = root {
                // The tables are destroyed below: a failure here leaves nothing behind.
                let _ = self.tables.unmap(root, gpa_page * PAGE_SIZE);
            }
            self.pool.free(mapping.hpa);
        }
        if let Some(root) = root {
            self.tables.destroy(root);
        }
    }
}

fn hv_error(error: SecondLevelError) -> HvError {
    match error {
        SecondLevelError::OutOfFrames => HvError::InsufficientMemory,
        SecondLevelError::AlreadyMapped(_)
        | SecondLevelError::NotMapped(_)
        | SecondLevelError::Rejected(_) => HvError::InvalidParameter,
    }
}

const fn state_code(state: PartitionState) -> u64 {
    match state {
        PartitionState::Created => 0,
        PartitionState::Initialized => 1,
        PartitionState::Running => 2,
        PartitionState::Stopped => 3,
        PartitionState::Finalized => 4,
    }
}

impl<P: MemoryPool, S: SecondLevel, H: HostPhysMemory> HypercallHandler
    for PartitionManager<P, S, H>
{
    fn notify_long_spin_wait(&mut self, _caller: &CallerContext, _spin_count: u32) {}

    fn create_partition(
        &mut self,
        caller: &CallerContext,
        params: &CreatePartitionParams,
    ) -> Result<PartitionId, HvError> {
        if params.flags != 0 {
            return Err(HvError::InvalidParameter);
        }
        // Children cannot nest: only the root creates partitions (the privilege check
        // already denies children; this keeps the hierarchy one level deep regardless).
        if caller.partition_id != ROOT_PARTITION {
            return Err(HvError::PartitionTooDeep);
        }
        if self.partitions.len() >= self.limits.max_partitions {
            return Err(HvError::NoResources);
        }
        let id = PartitionId(self.next_id);
        self.next_id = self.next_id.checked_add(1).ok_or(HvError::NoResources)?;
        self.partitions.insert(
            id.0,
            Partition {
                id,
                parent: Some(caller.partition_id),
                state: PartitionState::Created,
                stop_reason: None,
                privileges: CHILD_PRIVILEGES,
                ram: GuestRam::Mapped(BTreeMap::new()),
                second_level_root: None,
                tlb_flush_pending: false,
                max_pages: self.limits.max_pages,
                vcpus: BTreeMap::new(),
                console: Console::new(self.limits.console_capacity),
                counters: Counters::default(),
                synthetic_msrs: SyntheticMsrs::default(),
            },
        );
        Ok(id)
    }

    fn initialize_partition(
        &mut self,
        caller: &CallerContext,
        partition: PartitionId,
    ) -> Result<(), HvError> {
        if self.child_of(caller, partition)?.state != PartitionState::Created {
            return Err(HvError::InvalidPartitionState);
        }
        let root = self.tables.create().map_err(hv_error)?;
        let child = self.child_of(caller, partition)?;
        child.second_level_root = Some(root);
        child.state = PartitionState::Initialized;
        Ok(())
    }

    fn finalize_partition(
        &mut self,
        caller: &CallerContext,
        partition: PartitionId,
    ) -> Result<(), HvError> {
        let child = self.child_of(caller, partition)?;
        match child.state {
            PartitionState::Running => Err(HvError::InvalidPartitionState),
            PartitionState::Finalized => Ok(()),
            _ => {
                if child.stop_reason.is_none() {
                    child.stop_reason = Some(StopReason::Requested);
                }
                child.state = PartitionState::Finalized;
                Ok(())
            }
        }
    }

    fn delete_partition(
        &mut self,
        caller: &CallerContext,
        partition: PartitionId,
    ) -> Result<(), HvError> {
        if self.child_of(caller, partition)?.state == PartitionState::Running {
            return Err(HvError::InvalidPartitionState);
        }
        self.release_memory(partition);
        self.partitions.remove(&partition.0);
        Ok(())
    }

    fn get_partition_property(
        &mut self,
        caller: &CallerContext,
        partition: PartitionId,
        code: PartitionPropertyCode,
    ) -> Result<u64, HvError> {
        let target = if partition == caller.partition_id {
            self.partitions
                .get_mut(&partition.0)
                .ok_or(HvError::InvalidPartitionId)?
        } else {
            self.child_of(caller, partition)?
        };
        match code.0 {
            properties::PRIVILEGE_FLAGS => Ok(target.privileges.bits()),
            properties::MICA_MAPPED_PAGES => Ok(target.ram.mapped_pages()),
            properties::MICA_MAX_PAGES => Ok(target.max_pages),
            properties::MICA_STATE => Ok(state_code(target.state)),
            properties::MICA_TOTAL_EXITS => Ok(target.counters.total_exits()),
            properties::MICA_STOP_REASON => Ok(target.stop_reason.map_or(0, |r| r.code())),
            properties::MICA_STOP_GPA => Ok(target.stop_reason.map_or(0, |r| r.gpa())),
            _ => Err(HvError::UnknownProperty),
        }
    }

    fn set_partition_property(
        &mut self,
        caller: &CallerContext,
        partition: PartitionId,
        code: PartitionPropertyCode,
        value: u64,
    ) -> Result<(), HvError> {
        let limit = self.limits.max_pages;
        let target = self.child_of(caller, partition)?;
        match code.0 {
            properties::MICA_MAX_PAGES => {
                if value > limit || value < target.ram.mapped_pages() {
                    return Err(HvError::PropertyValueOutOfRange);
                }
                target.max_pages = value;
                Ok(())
            }
            properties::PRIVILEGE_FLAGS
            | properties::MICA_MAPPED_PAGES
            | properties::MICA_STATE
            | properties::MICA_TOTAL_EXITS => Err(HvError::InvalidParameter),
            _ => Err(HvError::UnknownProperty),
        }
    }

    fn create_vp(
        &mut self,
        caller: &CallerContext,
        partition: PartitionId,
        params: &CreateVpParams,
    ) -> Result<(), HvError> {
        let max = self.limits.max_vcpus;
        let child = self.child_of(caller, partition)?;
        if !matches!(
            child.state,
            PartitionState::Initialized | PartitionState::Stopped
        ) {
            return Err(HvError::InvalidPartitionState);
        }
        if params.vp_index >= max || child.vcpus.contains_key(&params.vp_index) {
            return Err(HvError::InvalidVpIndex);
        }
        child
            .vcpus
            .insert(params.vp_index, Vcpu::new(params.vp_index));
        Ok(())
    }

    fn get_vp_register(
        &mut self,
        caller: &CallerContext,
        target: VpTarget,
        name: RegisterName,
    ) -> Result<RegisterValue, HvError> {
        self.register_target(caller, target)?.get_register(name)
    }

    fn set_vp_register(
        &mut self,
        caller: &CallerContext,
        target: VpTarget,
        name: RegisterName,
        value: RegisterValue,
    ) -> Result<(), HvError> {
        self.register_target(caller, target)?
            .set_register(name, value)
    }

    fn map_pool_page(
        &mut self,
        caller: &CallerContext,
        partition: PartitionId,
        gpa_page: u64,
        flags: MapGpaFlags,
    ) -> Result<(), HvError> {
        let perms = GpaPerms::from_map_flags(flags).ok_or(HvError::InvalidParameter)?;
        if gpa_page >= MAX_GPA_PAGES {
            return Err(HvError::InvalidParameter);
        }
        let child = self.child_of(caller, partition)?;
        if !matches!(
            child.state,
            PartitionState::Initialized | PartitionState::Running | PartitionState::Stopped
        ) {
            return Err(HvError::InvalidPartitionState);
        }
        let root = child
            .second_level_root
            .ok_or(HvError::InvalidPartitionState)?;
        if child.ram.translate_page(gpa_page).is_some() {
            return Err(HvError::InvalidParameter);
        }
        if child.ram.mapped_pages() >= child.max_pages {
            return Err(HvError::NoResources);
        }
        let hpa = self.pool.allocate().ok_or(HvError::InsufficientMemory)?;
        // No guest ever sees another's (or the hypervisor's) old data.
        self.host.zero_frame(hpa);
        let flush = match self.tables.map(root, gpa_page * PAGE_SIZE, hpa, perms) {
            Ok(flush) => flush,
            Err(error) => {
                self.pool.free(hpa);
                return Err(hv_error(error));
            }
        };
        let child = self.child_of(caller, partition)?;
        if let GuestRam::Mapped(map) = &mut child.ram {
            map.insert(gpa_page, GpaMapping { hpa, perms });
        }
        child.tlb_flush_pending |= flush.is_needed();
        Ok(())
    }

    fn unmap_gpa_page(
        &mut self,
        caller: &CallerContext,
        partition: PartitionId,
        gpa_page: u64,
    ) -> Result<(), HvError> {
        let child = self.child_of(caller, partition)?;
        // A running child's vCPUs may hold the translation in their TLBs on other CPUs:
        // its frame must not go back to the pool before a shootdown, so stop it first.
        if !matches!(
            child.state,
            PartitionState::Initialized | PartitionState::Stopped | PartitionState::Finalized
        ) {
            return Err(HvError::InvalidPartitionState);
        }
        let GuestRam::Mapped(map) = &mut child.ram else {
            return Err(HvError::InvalidParameter);
        };
        let mapping = map.remove(&gpa_page).ok_or(HvError::InvalidParameter)?;
        child.tlb_flush_pending = true;
        if let Some(root) = child.second_level_root {
            // The map and the tables agree; a mismatch leaves the frame leaked, not shared.
            if self.tables.unmap(root, gpa_page * PAGE_SIZE).is_err() {
                return Ok(());
            }
        }
        self.pool.free(mapping.hpa);
        Ok(())
    }

    fn start_partition(
        &mut self,
        caller: &CallerContext,
        partition: PartitionId,
    ) -> Result<(), HvError> {
        let child = self.child_of(caller, partition)?;
        if !matches!(
            child.state,
            PartitionState::Initialized | PartitionState::Stopped
        ) || child.vcpus.is_empty()
        {
            return Err(HvError::InvalidPartitionState);
        }
        child.state = PartitionState::Running;
        child.stop_reason = None;
        for vcpu in child.vcpus.values_mut() {
            vcpu.set_run_state(RunState::Runnable);
        }
        Ok(())
    }

    fn stop_partition(
        &mut self,
        caller: &CallerContext,
        partition: PartitionId,
    ) -> Result<(), HvError> {
        let child = self.child_of(caller, partition)?;
        if child.state != PartitionState::Running {
            return Err(HvError::InvalidPartitionState);
        }
        child.stop(StopReason::Requested);
        Ok(())
    }

    fn write_partition_memory(
        &mut self,
        caller: &CallerContext,
        partition: PartitionId,
        gpa: u64,
        data: &[u8],
    ) -> Result<(), HvError> {
        use hypercall::GuestMemory;
        if matches!(
            self.child_of(caller, partition)?.state,
            PartitionState::Finalized
        ) {
            return Err(HvError::InvalidPartitionState);
        }
        let mut memory = self
            .guest_memory(partition)
            .ok_or(HvError::InvalidPartitionId)?;
        memory
            .write(gpa, data)
            .map_err(|_| HvError::InvalidParameter)
    }

    fn read_console(
        &mut self,
        caller: &CallerContext,
        partition: PartitionId,
        buf: &mut [u8],
    ) -> Result<(usize, usize), HvError> {
        Ok(self.child_of(caller, partition)?.console.read_into(buf))
    }

    fn hypervisor_info(&mut self, _caller: &CallerContext) -> Result<HypervisorInfo, HvError> {
        let host = &self.host_info;
        let mut info = HypervisorInfo {
            version_major: 0,
            version_minor: 1,
            build: crate::cpuid::MICA_BUILD,
            backend: host.backend,
            features: host.features,
            pool_total_pages: self.pool.total_frames(),
            pool_free_pages: self.pool.free_frames(),
            partitions: u32::try_from(self.partitions.len()).unwrap_or(u32::MAX),
            max_partitions: u32::try_from(self.limits.max_partitions).unwrap_or(u32::MAX),
            protected_count: 0,
            reserved: 0,
            protected: [ProtectedRange::default(); MAX_PROTECTED_RANGES],
        };
        for (slot, &(start, end)) in info
            .protected
            .iter_mut()
            .zip(host.protected.iter().take(host.protected_count))
        {
            *slot = ProtectedRange { start, end };
            info.protected_count += 1;
        }
        Ok(info)
    }

    fn debug_output(&mut self, caller: &CallerContext, text: &[u8]) -> Result<(), HvError> {
        let partition = self
            .partitions
            .get_mut(&caller.partition_id.0)
            .ok_or(HvError::InvalidPartitionId)?;
        partition.console_write(text);
        Ok(())
    }
}
