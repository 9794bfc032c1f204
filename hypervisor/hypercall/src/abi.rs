//! Wire layouts of the input and output blocks (TLFS hypercall reference pages; Mica-private
//! layouts documented on [`crate::CallCode`]). Each is copied out of guest memory once with
//! zerocopy, then validated; sizes are checked at compile time. Integers are little-endian,
//! which is the native order of the only target (x86-64).

use bitflags::bitflags;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `HvCallNotifyLongSpinWait` input (8 bytes).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct NotifyLongSpinWaitInput {
    /// How long the guest has been spinning.
    pub spin_count: u32,
    /// RsvdZ (ignored: the call is advisory and always succeeds).
    pub reserved: u32,
}

/// `HvCallCreatePartition` input (x64 layout, 56 bytes).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct CreatePartitionInput {
    /// Partition creation flags.
    pub flags: u64,
    /// `HV_PROXIMITY_DOMAIN_INFO`: initial NUMA hint.
    pub proximity_domain_info: u64,
    /// Requested compatibility version.
    pub compatibility_version: u32,
    /// Padding, must be zero.
    pub padding: u32,
    /// `Properties.DisabledProcessorFeatures` (two banks).
    pub disabled_processor_features: [u64; 2],
    /// `Properties.DisabledProcessorXsaveFeatures`.
    pub disabled_processor_xsave_features: u64,
    /// ReservedZ0, must be zero.
    pub reserved: u64,
}

/// Input naming one partition (`HvCallInitializePartition`, `HvCallFinalizePartition`,
/// `HvCallDeletePartition`; 8 bytes).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct PartitionIdInput {
    /// Target partition.
    pub partition_id: u64,
}

/// Output carrying one partition ID (`HvCallCreatePartition`, `HvCallGetPartitionId`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct PartitionIdOutput {
    /// The partition ID.
    pub partition_id: u64,
}

/// `HvCallGetPartitionProperty` input (16 bytes).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GetPartitionPropertyInput {
    /// Target partition.
    pub partition_id: u64,
    /// `HV_PARTITION_PROPERTY_CODE`.
    pub property_code: u32,
    /// RsvdZ.
    pub reserved: u32,
}

/// `HvCallGetPartitionProperty` output (8 bytes).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GetPartitionPropertyOutput {
    /// The property's value.
    pub property_value: u64,
}

/// `HvCallSetPartitionProperty` input (24 bytes).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct SetPartitionPropertyInput {
    /// Target partition.
    pub partition_id: u64,
    /// `HV_PARTITION_PROPERTY_CODE`.
    pub property_code: u32,
    /// RsvdZ.
    pub reserved: u32,
    /// New value.
    pub property_value: u64,
}

/// `HvCallUnmapGpaPages` input header (20 bytes of fields, padded to 24); no element list.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct UnmapGpaPagesInput {
    /// Target partition.
    pub target_partition_id: u64,
    /// First GPA page number; rep *i* unmaps page `target_gpa_base + i`.
    pub target_gpa_base: u64,
    /// `HV_UNMAP_GPA_FLAGS`; Mica supports none, must be zero.
    pub unmap_flags: u32,
    /// Padding, must be zero.
    pub padding: u32,
}

/// `HvCallCreateVp` input (40 bytes).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct CreateVpInput {
    /// Target partition.
    pub partition_id: u64,
    /// New VP index.
    pub vp_index: u32,
    /// ReservedZ0, must be zero.
    pub reserved: [u8; 3],
    /// Subnode type (0 if unused).
    pub subnode_type: u8,
    /// Subnode ID (0 if unused).
    pub subnode_id: u64,
    /// `HV_PROXIMITY_DOMAIN_INFO`.
    pub proximity_domain_info: u64,
    /// Flags, reserved: must be zero.
    pub flags: u64,
}

/// Header of `HvCallGetVpRegisters` / `HvCallSetVpRegisters` (16 bytes).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VpRegistersInput {
    /// Target partition (`HV_PARTITION_ID_SELF` allowed).
    pub partition_id: u64,
    /// Target VP index.
    pub vp_index: u32,
    /// `HV_INPUT_VTL`: Mica has only VTL 0, so 0 or "use target VTL 0" (0x10).
    pub input_vtl: u8,
    /// RsvdZ.
    pub reserved: [u8; 3],
}

/// `HV_REGISTER_NAME`: a 32-bit register identifier (TLFS datatypes).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(transparent)]
pub struct RegisterName(pub u32);

/// `HV_REGISTER_VALUE`: a 128-bit register value, low quadword first.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RegisterValue {
    /// Bits 63:0 (the whole value of a 64-bit register).
    pub low: u64,
    /// Bits 127:64.
    pub high: u64,
}

impl RegisterValue {
    /// A 64-bit register value.
    #[must_use]
    pub const fn from_u64(value: u64) -> Self {
        Self {
            low: value,
            high: 0,
        }
    }
}

/// One `HvCallSetVpRegisters` input element (32 bytes).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct SetVpRegisterElement {
    /// Register to write.
    pub name: RegisterName,
    /// RsvdZ.
    pub reserved: [u32; 3],
    /// New value.
    pub value: RegisterValue,
}

/// Mica-private map-pool-pages input header (24 bytes, as `HvCallMapGpaPages` without its
/// source page list).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct MapPoolPagesInput {
    /// Target partition.
    pub target_partition_id: u64,
    /// First GPA page number; rep *i* maps page `target_gpa_base + i`.
    pub target_gpa_base: u64,
    /// `HV_MAP_GPA_FLAGS`: only the permission bits ([`MapGpaFlags`]) are accepted.
    pub map_flags: u32,
    /// Padding, must be zero.
    pub padding: u32,
}

/// Mica-private start/stop-partition input: RDX, R8 of a fast call (16 bytes).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct PartitionControlInput {
    /// Target partition (RDX).
    pub partition_id: u64,
    /// RsvdZ (R8).
    pub reserved: u64,
}

/// Mica-private debug-output header (8 bytes), followed by `length` bytes of text.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct DebugOutputHeader {
    /// Number of bytes that follow (at most [`crate::DEBUG_OUTPUT_MAX`]).
    pub length: u32,
    /// RsvdZ.
    pub reserved: u32,
}

/// Mica-private write-partition-memory header (24 bytes), followed by `length` bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct WriteMemoryHeader {
    /// Target child partition.
    pub partition_id: u64,
    /// First GPA written (the bytes must lie in pages mapped to the child).
    pub gpa: u64,
    /// Number of bytes that follow (at most [`crate::call::WRITE_MEMORY_MAX`]).
    pub length: u32,
    /// RsvdZ.
    pub reserved: u32,
}

/// Mica-private read-console output header (8 bytes), followed by `length` bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct ReadConsoleHeader {
    /// Bytes that follow (0: the console is empty).
    pub length: u32,
    /// Bytes still buffered after this read.
    pub remaining: u32,
}

/// Why a Mica run-partitions call returned (RDX on success).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum RunExitReason {
    /// A physical interrupt arrived for the root: handle it and call again.
    Interrupted = 0,
    /// No child vCPU can run: wait for the root's own events.
    Idle = 1,
    /// A child stopped (R8 = its ID): read its stop reason.
    PartitionStopped = 2,
    /// A child wrote a complete console line or filled its buffer (R8 = its ID).
    ConsoleOutput = 3,
}

impl RunExitReason {
    /// The reason for a raw RDX value.
    #[must_use]
    pub const fn from_raw(raw: u64) -> Option<Self> {
        match raw {
            0 => Some(Self::Interrupted),
            1 => Some(Self::Idle),
            2 => Some(Self::PartitionStopped),
            3 => Some(Self::ConsoleOutput),
            _ => None,
        }
    }
}

/// One physical range the root can never reach (hypervisor memory, child pool).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct ProtectedRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

/// The most protected ranges [`HypervisorInfo`] lists.
pub const MAX_PROTECTED_RANGES: usize = 8;

/// Mica-private get-hypervisor-info output (176 bytes).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct HypervisorInfo {
    /// Mica version, major.
    pub version_major: u16,
    /// Mica version, minor.
    pub version_minor: u16,
    /// Build number (as CPUID 0x40000002 EAX).
    pub build: u32,
    /// Virtualization backend: [`BACKEND_SVM`] or [`BACKEND_VMX`].
    pub backend: u32,
    /// [`HostFeatures`] bits in use.
    pub features: u32,
    /// Child-memory pool size in 4 KiB pages.
    pub pool_total_pages: u64,
    /// Free pages in the pool.
    pub pool_free_pages: u64,
    /// Partitions alive, the root included.
    pub partitions: u32,
    /// The most partitions alive at once.
    pub max_partitions: u32,
    /// Valid entries in `protected`.
    pub protected_count: u32,
    /// RsvdZ.
    pub reserved: u32,
    /// Physical ranges the root can never reach.
    pub protected: [ProtectedRange; MAX_PROTECTED_RANGES],
}

/// [`HypervisorInfo::backend`]: AMD SVM with nested paging.
pub const BACKEND_SVM: u32 = 1;
/// [`HypervisorInfo::backend`]: Intel VMX with EPT.
pub const BACKEND_VMX: u32 = 2;

bitflags! {
    /// CPU features the hypervisor uses ([`HypervisorInfo::features`]).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct HostFeatures: u32 {
        /// Nested paging (NPT / EPT).
        const NESTED_PAGING = 1 << 0;
        /// SVM next-RIP save.
        const NRIP_SAVE = 1 << 1;
        /// TLB flush by ASID / VPID.
        const FLUSH_BY_ASID = 1 << 2;
        /// 1 GiB pages in the root's nested tables.
        const PAGES_1G = 1 << 3;
        /// XSAVE-based FPU switching.
        const XSAVE = 1 << 4;
        /// AVX state switched.
        const AVX = 1 << 5;
    }
}

/// Encoding of a partition's stop reason in the Mica stop-reason property
/// (`properties::MICA_STOP_REASON` of the `partition` crate): kind in bits 7:0, detail in
/// bits 63:32 (exit status, I/O port, exit code).
pub mod stop_code {
    /// Not stopped.
    pub const NONE: u8 = 0;
    /// Stopped by request.
    pub const REQUESTED: u8 = 1;
    /// Exited; detail = status.
    pub const EXITED: u8 = 2;
    /// Triple fault.
    pub const TRIPLE_FAULT: u8 = 3;
    /// Forbidden I/O port; detail bits 15:0 = port, 23:16 = size, bit 24 = write.
    pub const BAD_IO_PORT: u8 = 4;
    /// Access outside its memory (GPA in the stop-GPA property).
    pub const OUTSIDE_MEMORY: u8 = 5;
    /// Access against page permissions (GPA in the stop-GPA property).
    pub const ACCESS_VIOLATION: u8 = 6;
    /// Invalid vCPU state.
    pub const INVALID_STATE: u8 = 7;
    /// A hypervisor limit was reached.
    pub const HYPERVISOR_LIMIT: u8 = 8;
    /// Unhandled exit; detail = exit code (low 32 bits).
    pub const UNHANDLED_EXIT: u8 = 9;
}

bitflags! {
    /// The `HV_MAP_GPA_FLAGS` permission bits Mica accepts when mapping pool pages.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct MapGpaFlags: u32 {
        /// `HV_MAP_GPA_READABLE`.
        const READABLE = 1 << 0;
        /// `HV_MAP_GPA_WRITABLE`.
        const WRITABLE = 1 << 1;
        /// `HV_MAP_GPA_KERNEL_EXECUTABLE`.
        const KERNEL_EXECUTABLE = 1 << 2;
        /// `HV_MAP_GPA_USER_EXECUTABLE`.
        const USER_EXECUTABLE = 1 << 3;
    }
}

/// `HV_INPUT_VTL` value meaning "the caller's current VTL".
pub const INPUT_VTL_CURRENT: u8 = 0;
/// `HV_INPUT_VTL` value meaning "explicitly VTL 0" (UseTargetVtl = 1, TargetVtl = 0).
pub const INPUT_VTL_ZERO: u8 = 0x10;

const _: () = assert!(size_of::<NotifyLongSpinWaitInput>() == 8);
const _: () = assert!(size_of::<CreatePartitionInput>() == 56);
const _: () = assert!(size_of::<PartitionIdInput>() == 8);
const _: () = assert!(size_of::<PartitionIdOutput>() == 8);
const _: () = assert!(size_of::<GetPartitionPropertyInput>() == 16);
const _: () = assert!(size_of::<GetPartitionPropertyOutput>() == 8);
const _: () = assert!(size_of::<SetPartitionPropertyInput>() == 24);
const _: () = assert!(size_of::<UnmapGpaPagesInput>() == 24);
const _: () = assert!(size_of::<CreateVpInput>() == 40);
const _: () = assert!(size_of::<VpRegistersInput>() == 16);
const _: () = assert!(size_of::<RegisterName>() == 4);
const _: () = assert!(size_of::<RegisterValue>() == 16);
const _: () = assert!(size_of::<SetVpRegisterElement>() == 32);
const _: () = assert!(size_of::<MapPoolPagesInput>() == 24);
const _: () = assert!(size_of::<PartitionControlInput>() == 16);
const _: () = assert!(size_of::<DebugOutputHeader>() == 8);
const _: () = assert!(size_of::<WriteMemoryHeader>() == 24);
const _: () = assert!(size_of::<ReadConsoleHeader>() == 8);
const _: () = assert!(size_of::<ProtectedRange>() == 16);
const _: () = assert!(size_of::<HypervisorInfo>() == 176);
// Field offsets the TLFS pages state explicitly.
const _: () = assert!(core::mem::offset_of!(CreatePartitionInput, compatibility_version) == 16);
const _: () =
    assert!(core::mem::offset_of!(CreatePartitionInput, disabled_processor_features) == 24);
const _: () = assert!(core::mem::offset_of!(CreatePartitionInput, reserved) == 48);
const _: () = assert!(core::mem::offset_of!(CreateVpInput, subnode_type) == 15);
const _: () = assert!(core::mem::offset_of!(CreateVpInput, flags) == 32);
const _: () = assert!(core::mem::offset_of!(VpRegistersInput, input_vtl) == 12);
const _: () = assert!(core::mem::offset_of!(SetVpRegisterElement, value) == 16);
const _: () = assert!(core::mem::offset_of!(UnmapGpaPagesInput, unmap_flags) == 16);

/// The spec sizes agree with the layouts.
const _: () = {
    use crate::call::{CallCode, CallKind};
    assert!(
        CallCode::CreatePartition.spec().input_header_size
            == size_of::<CreatePartitionInput>() as u64
    );
    assert!(CallCode::CreatePartition.spec().output_size == size_of::<PartitionIdOutput>() as u64);
    assert!(
        CallCode::GetPartitionProperty.spec().input_header_size
            == size_of::<GetPartitionPropertyInput>() as u64
    );
    assert!(
        CallCode::SetPartitionProperty.spec().input_header_size
            == size_of::<SetPartitionPropertyInput>() as u64
    );
    assert!(
        CallCode::UnmapGpaPages.spec().input_header_size == size_of::<UnmapGpaPagesInput>() as u64
    );
    assert!(CallCode::CreateVp.spec().input_header_size == size_of::<CreateVpInput>() as u64);
    assert!(
        CallCode::GetVpRegisters.spec().input_header_size == size_of::<VpRegistersInput>() as u64
    );
    assert!(
        CallCode::MicaMapPoolPages.spec().input_header_size
            == size_of::<MapPoolPagesInput>() as u64
    );
    assert!(
        CallCode::MicaStartPartition.spec().input_header_size
            == size_of::<PartitionControlInput>() as u64
    );
    assert!(
        CallCode::MicaDebugOutput.spec().input_header_size == size_of::<DebugOutputHeader>() as u64
    );
    assert!(
        CallCode::MicaWritePartitionMemory.spec().input_header_size
            == size_of::<WriteMemoryHeader>() as u64
    );
    assert!(matches!(
        CallCode::GetVpRegisters.spec().kind,
        CallKind::Rep {
            input_element_size: 4,
            output_element_size: 16
        }
    ));
    assert!(matches!(
        CallCode::SetVpRegisters.spec().kind,
        CallKind::Rep {
            input_element_size: 32,
            output_element_size: 0
        }
    ));
};
