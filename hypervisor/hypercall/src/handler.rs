//! The partition manager's side: who is calling ([`CallerContext`]) and what each call
//! does ([`HypercallHandler`]). The dispatcher has already decoded and validated the call,
//! checked the static privilege, copied the input out of guest memory and rejected
//! reserved-field violations; the handler applies policy (is the caller the target's
//! parent? is the partition in the right state?) and reports failures as [`HvError`].

use crate::abi::{HypervisorInfo, MapGpaFlags, RegisterName, RegisterValue};
use crate::privilege::PartitionPrivileges;
use crate::status::HvError;

/// `HV_PARTITION_ID`: a 64-bit partition identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionId(pub u64);

impl PartitionId {
    /// `HV_PARTITION_ID_INVALID`: never names a partition.
    pub const INVALID: Self = Self(0);
    /// `HV_PARTITION_ID_SELF`: "the caller's partition" in inputs. The dispatcher replaces
    /// it by the caller's ID before a handler sees it.
    pub const SELF: Self = Self(u64::MAX);
}

/// The virtual processor that made the hypercall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallerContext {
    /// The calling partition.
    pub partition_id: PartitionId,
    /// The calling VP's index within it.
    pub vp_index: u32,
    /// The calling partition's privilege mask.
    pub privileges: PartitionPrivileges,
}

/// A virtual processor of some partition, as named by a VP-register call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VpTarget {
    /// Target partition (never [`PartitionId::SELF`]).
    pub partition: PartitionId,
    /// Target VP index.
    pub vp_index: u32,
}

/// `HV_PARTITION_PROPERTY_CODE`: which partition property a call reads or writes. The
/// handler interprets it and answers `HV_STATUS_UNKNOWN_PROPERTY` for codes it lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PartitionPropertyCode(pub u32);

/// Validated `HvCallCreatePartition` parameters (reserved fields were zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreatePartitionParams {
    /// Partition creation flags.
    pub flags: u64,
    /// `HV_PROXIMITY_DOMAIN_INFO`.
    pub proximity_domain_info: u64,
    /// Requested compatibility version.
    pub compatibility_version: u32,
    /// Disabled processor features (two banks).
    pub disabled_processor_features: [u64; 2],
    /// Disabled XSAVE features.
    pub disabled_processor_xsave_features: u64,
}

/// Validated `HvCallCreateVp` parameters (reserved fields and flags were zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreateVpParams {
    /// New VP index.
    pub vp_index: u32,
    /// Subnode type.
    pub subnode_type: u8,
    /// Subnode ID.
    pub subnode_id: u64,
    /// `HV_PROXIMITY_DOMAIN_INFO`.
    pub proximity_domain_info: u64,
}

/// What the partition manager does for each call. One method per call; rep calls get one
/// call per element, in increasing element order.
///
/// Every partition ID a method receives has had [`PartitionId::SELF`] replaced by the
/// caller's ID. Methods must not panic on any argument: every value comes from a guest.
pub trait HypercallHandler {
    /// `HvCallNotifyLongSpinWait`: a scheduling hint; cannot fail.
    fn notify_long_spin_wait(&mut self, caller: &CallerContext, spin_count: u32);

    /// `HvCallCreatePartition`: creates a child of the caller and returns its ID.
    ///
    /// # Errors
    /// The status the caller sees.
    fn create_partition(
        &mut self,
        caller: &CallerContext,
        params: &CreatePartitionParams,
    ) -> Result<PartitionId, HvError>;

    /// `HvCallInitializePartition`.
    ///
    /// # Errors
    /// The status the caller sees.
    fn initialize_partition(
        &mut self,
        caller: &CallerContext,
        partition: PartitionId,
    ) -> Result<(), HvError>;

    /// `HvCallFinalizePartition`.
    ///
    /// # Errors
    /// The status the caller sees.
    fn finalize_partition(
        &mut self,
        caller: &CallerContext,
        partition: PartitionId,
    ) -> Result<(), HvError>;

    /// `HvCallDeletePartition`.
    ///
    /// # Errors
    /// The status the caller sees.
    fn delete_partition(
        &mut self,
        caller: &CallerContext,
        partition: PartitionId,
    ) -> Result<(), HvError>;

    /// `HvCallGetPartitionProperty`.
    ///
    /// # Errors
    /// The status the caller sees.
    fn get_partition_property(
        &mut self,
        caller: &CallerContext,
        partition: PartitionId,
        code: PartitionPropertyCode,
    ) -> Result<u64, HvError>;

    /// `HvCallSetPartitionProperty`.
    ///
    /// # Errors
    /// The status the caller sees.
    fn set_partition_property(
        &mut self,
        caller: &CallerContext,
        partition: PartitionId,
        code: PartitionPropertyCode,
        value: u64,
    ) -> Result<(), HvError>;

    /// `HvCallCreateVp`.
    ///
    /// # Errors
    /// The status the caller sees.
    fn create_vp(
        &mut self,
        caller: &CallerContext,
        partition: PartitionId,
        params: &CreateVpParams,
    ) -> Result<(), HvError>;

    /// One element of `HvCallGetVpRegisters`.
    ///
    /// # Errors
    /// The status the caller sees; elements before this one stay completed.
    fn get_vp_register(
        &mut self,
        caller: &CallerContext,
        target: VpTarget,
        name: RegisterName,
    ) -> Result<RegisterValue, HvError>;

    /// One element of `HvCallSetVpRegisters`.
    ///
    /// # Errors
    /// The status the caller sees; elements before this one stay completed.
    fn set_vp_register(
        &mut self,
        caller: &CallerContext,
        target: VpTarget,
        name: RegisterName,
        value: RegisterValue,
    ) -> Result<(), HvError>;

    /// One element of the Mica map-pool-pages call: allocate one page from the child pool
    /// and map it at `gpa_page` of `partition` with `flags`.
    ///
    /// # Errors
    /// The status the caller sees (e.g. `InsufficientMemory` when the pool is empty).
    fn map_pool_page(
        &mut self,
        caller: &CallerContext,
        partition: PartitionId,
        gpa_page: u64,
        flags: MapGpaFlags,
    ) -> Result<(), HvError>;

    /// One element of `HvCallUnmapGpaPages`: unmap `gpa_page` of `partition`, returning
    /// its backing page to the child pool.
    ///
    /// # Errors
    /// The status the caller sees.
    fn unmap_gpa_page(
        &mut self,
        caller: &CallerContext,
        partition: PartitionId,
        gpa_page: u64,
    ) -> Result<(), HvError>;

    /// Mica start-partition call.
    ///
    /// # Errors
    /// The status the caller sees.
    fn start_partition(
        &mut self,
        caller: &CallerContext,
        partition: PartitionId,
    ) -> Result<(), HvError>;

    /// Mica stop-partition call.
    ///
    /// # Errors
    /// The status the caller sees.
    fn stop_partition(
        &mut self,
        caller: &CallerContext,
        partition: PartitionId,
    ) -> Result<(), HvError>;

    /// Mica debug-output call: `text` (at most [`crate::DEBUG_OUTPUT_MAX`] bytes, not
    /// necessarily UTF-8) from a test guest. The handler rate-limits what it prints.
    ///
    /// # Errors
    /// The status the caller sees.
    fn debug_output(&mut self, caller: &CallerContext, text: &[u8]) -> Result<(), HvError>;

    /// Mica write-partition-memory call: copy `data` to `gpa` of child `partition` (every
    /// byte must land in a page mapped to it).
    ///
    /// # Errors
    /// The status the caller sees.
    fn write_partition_memory(
        &mut self,
        caller: &CallerContext,
        partition: PartitionId,
        gpa: u64,
        data: &[u8],
    ) -> Result<(), HvError>;

    /// Mica read-console call: move up to `buf.len()` of child `partition`'s buffered
    /// console bytes into `buf`; returns (bytes written, bytes still buffered).
    ///
    /// # Errors
    /// The status the caller sees.
    fn read_console(
        &mut self,
        caller: &CallerContext,
        partition: PartitionId,
        buf: &mut [u8],
    ) -> Result<(usize, usize), HvError>;

    /// Mica get-hypervisor-info call.
    ///
    /// # Errors
    /// The status the caller sees.
    fn hypervisor_info(&mut self, caller: &CallerContext) -> Result<HypervisorInfo, HvError>;

    /// Asked after each completed rep element (except the last): `true` ends this
    /// invocation early, and the dispatcher returns a continuation (see
    /// [`crate::HypercallOutcome::continue_rcx`]). The default never yields.
    fn rep_time_slice_over(&mut self) -> bool {
        false
    }
}
