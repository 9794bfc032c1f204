//! The calls Mica implements, with what each one accepts: convention (fast/slow), simple or
//! rep, parameter block sizes and the privilege it needs.
//!
//! # Call codes
//! TLFS calls keep their TLFS codes. Mica-private calls live at `0xC000..=0xC0FF`
//! ([`MICA_PRIVATE_BASE`]): the TLFS documents normal calls below 0x8000 and extended calls
//! from 0x8001 up (`HvExtCallQueryCapabilities` = 0x8001 ... 0x8006), so the brief's
//! "0x8000+" would collide with the extended range; 0xC000 is clear of both, and a stock
//! Linux guest never issues it.
//!
//! # How Mica adapts TLFS memory calls
//! The root never names host physical pages: child memory comes from a pool the hypervisor
//! reserved at boot. So Mica does **not** implement `HvCallDepositMemory` (0x0048, the root
//! donates its own pages) nor `HvCallMapGpaPages` (0x004B, the root names source pages);
//! both answer `HV_STATUS_INVALID_HYPERCALL_CODE`. Instead [`CallCode::MicaMapPoolPages`]
//! keeps `HvCallMapGpaPages`' header (target partition, target GPA page, map flags) and drops
//! its source-page list: it is a rep call whose rep count is the number of pages, and rep
//! *i* allocates one page from the child pool and maps it at `TargetGpaBase + i`.
//! `HvCallUnmapGpaPages` keeps its TLFS form and returns the pages to the pool.

use crate::privilege::PartitionPrivileges;

/// First Mica-private call code.
pub const MICA_PRIVATE_BASE: u16 = 0xC000;

/// The longest string [`CallCode::MicaDebugOutput`] accepts, in bytes.
pub const DEBUG_OUTPUT_MAX: usize = 256;

/// The most bytes one [`CallCode::MicaWritePartitionMemory`] call copies (a page minus its
/// 24-byte header).
pub const WRITE_MEMORY_MAX: usize = 4096 - 24;

/// The most bytes one [`CallCode::MicaReadConsole`] call returns (a page minus its 8-byte
/// header).
pub const CONSOLE_READ_MAX: usize = 4096 - 8;

/// A call code Mica recognises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum CallCode {
    /// `HvCallNotifyLongSpinWait`: advisory, always succeeds. Fast or slow.
    NotifyLongSpinWait = 0x0008,
    /// `HvCallCreatePartition`: creates a child; returns its ID.
    CreatePartition = 0x0040,
    /// `HvCallInitializePartition`. Fast or slow.
    InitializePartition = 0x0041,
    /// `HvCallFinalizePartition`. Fast or slow.
    FinalizePartition = 0x0042,
    /// `HvCallDeletePartition`. Fast or slow.
    DeletePartition = 0x0043,
    /// `HvCallGetPartitionProperty`.
    GetPartitionProperty = 0x0044,
    /// `HvCallSetPartitionProperty`.
    SetPartitionProperty = 0x0045,
    /// `HvCallGetPartitionId`: the caller's own partition ID.
    GetPartitionId = 0x0046,
    /// `HvCallUnmapGpaPages` (rep: one page per rep).
    UnmapGpaPages = 0x004C,
    /// `HvCallCreateVp`.
    CreateVp = 0x004E,
    /// `HvCallGetVpRegisters` (rep: one register per rep).
    GetVpRegisters = 0x0050,
    /// `HvCallSetVpRegisters` (rep: one register per rep).
    SetVpRegisters = 0x0051,
    /// Mica-private: allocate pages from the child pool and map them (rep: one page per
    /// rep). Header as `HvCallMapGpaPages`, no element list.
    MicaMapPoolPages = MICA_PRIVATE_BASE + 1,
    /// Mica-private: let a finalized partition's VPs run. Fast only: RDX = partition ID,
    /// R8 = 0.
    MicaStartPartition = MICA_PRIVATE_BASE + 2,
    /// Mica-private: stop a running partition's VPs. Fast only, as the start call.
    MicaStopPartition = MICA_PRIVATE_BASE + 3,
    /// Mica-private: print a string from a test guest. Slow: input = `u32` length, `u32`
    /// zero, then `length` bytes (at most [`DEBUG_OUTPUT_MAX`]).
    MicaDebugOutput = MICA_PRIVATE_BASE + 4,
    /// Mica-private: copy bytes into a child's RAM (image loading by the root). Slow: input =
    /// [`crate::abi::WriteMemoryHeader`] then `length` bytes (at most [`WRITE_MEMORY_MAX`]).
    MicaWritePartitionMemory = MICA_PRIVATE_BASE + 5,
    /// Mica-private: take a child's debug-console bytes. Slow: input = partition ID (8 bytes);
    /// output = [`crate::abi::ReadConsoleHeader`] then up to [`CONSOLE_READ_MAX`] bytes.
    MicaReadConsole = MICA_PRIVATE_BASE + 6,
    /// Mica-private: lend the calling root vCPU to the children until an event for the root.
    /// Fast, RDX = R8 = 0. Mica-private register output: on success RDX = a
    /// [`crate::abi::RunExitReason`] and R8 = the partition it concerns (0 if none). The
    /// backend carries it out; [`crate::dispatch`] refuses it (`HV_STATUS_INVALID_HYPERCALL_CODE`).
    MicaRunPartitions = MICA_PRIVATE_BASE + 7,
    /// Mica-private: what the hypervisor is and has. Slow, no input; output =
    /// [`crate::abi::HypervisorInfo`].
    MicaGetHypervisorInfo = MICA_PRIVATE_BASE + 8,
}

impl CallCode {
    /// Every call Mica implements.
    pub const ALL: [CallCode; 20] = [
        Self::NotifyLongSpinWait,
        Self::CreatePartition,
        Self::InitializePartition,
        Self::FinalizePartition,
        Self::DeletePartition,
        Self::GetPartitionProperty,
        Self::SetPartitionProperty,
        Self::GetPartitionId,
        Self::UnmapGpaPages,
        Self::CreateVp,
        Self::GetVpRegisters,
        Self::SetVpRegisters,
        Self::MicaMapPoolPages,
        Self::MicaStartPartition,
        Self::MicaStopPartition,
        Self::MicaDebugOutput,
        Self::MicaWritePartitionMemory,
        Self::MicaReadConsole,
        Self::MicaRunPartitions,
        Self::MicaGetHypervisorInfo,
    ];

    /// The call for a raw code, or `None` if Mica does not implement it.
    #[must_use]
    pub const fn from_raw(raw: u16) -> Option<Self> {
        let mut i = 0;
        while i < Self::ALL.len() {
            if Self::ALL[i] as u16 == raw {
                return Some(Self::ALL[i]);
            }
            i += 1;
        }
        None
    }

    /// The raw 16-bit call code.
    #[must_use]
    pub const fn raw(self) -> u16 {
        self as u16
    }

    /// What this call accepts.
    #[must_use]
    pub const fn spec(self) -> CallSpec {
        use Convention::{Either, FastOnly, SlowOnly};
        use PartitionPrivileges as P;
        let child_mgmt = PrivilegeRule::Requires(P::CREATE_PARTITIONS);
        match self {
            Self::NotifyLongSpinWait => CallSpec::simple(Either, 8, 0, PrivilegeRule::None),
            Self::CreatePartition => CallSpec::simple(SlowOnly, 56, 8, child_mgmt),
            Self::InitializePartition | Self::FinalizePartition | Self::DeletePartition => {
                CallSpec::simple(Either, 8, 0, child_mgmt)
            }
            Self::GetPartitionProperty => CallSpec::simple(SlowOnly, 16, 8, child_mgmt),
            Self::SetPartitionProperty => CallSpec::simple(SlowOnly, 24, 0, child_mgmt),
            Self::GetPartitionId => CallSpec::simple(
                SlowOnly,
                0,
                8,
                PrivilegeRule::Requires(P::ACCESS_PARTITION_ID),
            ),
            Self::UnmapGpaPages => CallSpec::rep(24, 0, 0, child_mgmt),
            Self::CreateVp => CallSpec::simple(SlowOnly, 40, 0, child_mgmt),
            Self::GetVpRegisters => CallSpec::rep(16, 4, 16, PrivilegeRule::VP_REGISTERS),
            Self::SetVpRegisters => CallSpec::rep(16, 32, 0, PrivilegeRule::VP_REGISTERS),
            Self::MicaMapPoolPages => CallSpec::rep(
                24,
                0,
                0,
                PrivilegeRule::Requires(P::CREATE_PARTITIONS.union(P::ACCESS_MEMORY_POOL)),
            ),
            Self::MicaStartPartition | Self::MicaStopPartition => {
                CallSpec::simple(FastOnly, 16, 0, child_mgmt)
            }
            Self::MicaDebugOutput => {
                CallSpec::simple(SlowOnly, 8, 0, PrivilegeRule::Requires(P::DEBUGGING))
            }
            Self::MicaWritePartitionMemory => CallSpec::simple(SlowOnly, 24, 0, child_mgmt),
            Self::MicaReadConsole => CallSpec::simple(SlowOnly, 8, 4096, child_mgmt),
            Self::MicaRunPartitions => CallSpec::simple(FastOnly, 16, 0, child_mgmt),
            Self::MicaGetHypervisorInfo => CallSpec::simple(
                SlowOnly,
                0,
                size_of::<crate::abi::HypervisorInfo>() as u64,
                child_mgmt,
            ),
        }
    }
}

/// Which calling conventions a call accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Convention {
    /// Memory-based only (fast bit must be clear).
    SlowOnly,
    /// Register-based only (fast bit must be set).
    FastOnly,
    /// Either; the input fits in RDX:R8 and there is no output.
    Either,
}

impl Convention {
    /// Whether a call with this convention accepts the given fast bit.
    #[must_use]
    pub const fn accepts(self, fast: bool) -> bool {
        match self {
            Self::SlowOnly => !fast,
            Self::FastOnly => fast,
            Self::Either => true,
        }
    }
}

/// Simple call, or rep call with per-element sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    /// One operation; rep count and rep start must be zero.
    Simple,
    /// A list of operations; rep count must be non-zero and above rep start.
    Rep {
        /// Bytes of input per element, after the header (0: no input list).
        input_element_size: u64,
        /// Bytes of output per element (0: no output list).
        output_element_size: u64,
    },
}

/// The privilege a call needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrivilegeRule {
    /// Any partition may make the call.
    None,
    /// The caller needs all of these.
    Requires(PartitionPrivileges),
    /// Depends on the target partition named in the input: `own` when it is the caller
    /// itself (or `HV_PARTITION_ID_SELF`), `other` otherwise (TLFS restriction of the VP
    /// register calls).
    TargetDependent {
        /// Needed to act on the caller's own partition.
        own: PartitionPrivileges,
        /// Needed to act on another (child) partition.
        other: PartitionPrivileges,
    },
}

impl PrivilegeRule {
    /// The rule of `HvCallGetVpRegisters` / `HvCallSetVpRegisters`.
    pub const VP_REGISTERS: Self = Self::TargetDependent {
        own: PartitionPrivileges::ACCESS_VP_REGISTERS,
        other: PartitionPrivileges::CREATE_PARTITIONS,
    };
}

/// What a call accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallSpec {
    /// Simple or rep.
    pub kind: CallKind,
    /// Accepted calling conventions.
    pub convention: Convention,
    /// Size of the fixed input header in bytes (for the debug-output call: the part before
    /// the string).
    pub input_header_size: u64,
    /// Size of the output block of a simple call in bytes (0: no output).
    pub output_size: u64,
    /// Privilege needed.
    pub privilege: PrivilegeRule,
}

impl CallSpec {
    const fn simple(
        convention: Convention,
        input_header_size: u64,
        output_size: u64,
        privilege: PrivilegeRule,
    ) -> Self {
        Self {
            kind: CallKind::Simple,
            convention,
            input_header_size,
            output_size,
            privilege,
        }
    }

    /// Rep calls are always memory-based (Mica has no fast rep calls).
    const fn rep(
        input_header_size: u64,
        input_element_size: u64,
        output_element_size: u64,
        privilege: PrivilegeRule,
    ) -> Self {
        Self {
            kind: CallKind::Rep {
                input_element_size,
                output_element_size,
            },
            convention: Convention::SlowOnly,
            input_header_size,
            output_size: 0,
            privilege,
        }
    }

    /// Whether this is a rep call.
    #[must_use]
    pub const fn is_rep(&self) -> bool {
        matches!(self.kind, CallKind::Rep { .. })
    }
}

/// Fast calls pass at most 16 bytes (RDX, R8) and return nothing but RAX.
const _: () = {
    let mut i = 0;
    while i < CallCode::ALL.len() {
        let spec = CallCode::ALL[i].spec();
        if !matches!(spec.convention, Convention::SlowOnly) {
            assert!(spec.input_header_size <= 16);
            assert!(spec.output_size == 0);
            assert!(!spec.is_rep());
        }
        // Every block fits in one page, and element lists start 8-byte aligned.
        assert!(spec.input_header_size <= 4096 && spec.output_size <= 4096);
        assert!(spec.input_header_size.is_multiple_of(8));
        i += 1;
    }
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlfs_call_codes() {
        assert_eq!(CallCode::NotifyLongSpinWait.raw(), 0x0008);
        assert_eq!(CallCode::CreatePartition.raw(), 0x0040);
        assert_eq!(CallCode::InitializePartition.raw(), 0x0041);
        assert_eq!(CallCode::FinalizePartition.raw(), 0x0042);
        assert_eq!(CallCode::DeletePartition.raw(), 0x0043);
        assert_eq!(CallCode::GetPartitionProperty.raw(), 0x0044);
        assert_eq!(CallCode::SetPartitionProperty.raw(), 0x0045);
        assert_eq!(CallCode::GetPartitionId.raw(), 0x0046);
        assert_eq!(CallCode::UnmapGpaPages.raw(), 0x004C);
        assert_eq!(CallCode::CreateVp.raw(), 0x004E);
        assert_eq!(CallCode::GetVpRegisters.raw(), 0x0050);
        assert_eq!(CallCode::SetVpRegisters.raw(), 0x0051);
    }

    #[test]
    fn from_raw_round_trips_and_rejects_others() {
        for code in CallCode::ALL {
            assert_eq!(CallCode::from_raw(code.raw()), Some(code));
        }
        // Deposit memory and map GPA pages (by PFN) are deliberately absent, as are the
        // TLFS extended calls.
        for raw in [0x0000, 0x0048, 0x004B, 0x8001, 0xC000, 0xFFFF] {
            assert_eq!(CallCode::from_raw(raw), None, "{raw:#x}");
        }
    }

    #[test]
    fn mica_private_codes_avoid_tlfs_ranges() {
        for code in CallCode::ALL {
            let raw = code.raw();
            let private = (MICA_PRIVATE_BASE..=MICA_PRIVATE_BASE + 0xFF).contains(&raw);
            let named_mica = matches!(
                code,
                CallCode::MicaMapPoolPages
                    | CallCode::MicaStartPartition
                    | CallCode::MicaStopPartition
                    | CallCode::MicaDebugOutput
                    | CallCode::MicaWritePartitionMemory
                    | CallCode::MicaReadConsole
                    | CallCode::MicaRunPartitions
                    | CallCode::MicaGetHypervisorInfo
            );
            assert_eq!(private, named_mica, "{code:?}");
        }
    }

    #[test]
    fn rep_calls_are_the_tlfs_rep_calls() {
        let reps: [CallCode; 4] = [
            CallCode::UnmapGpaPages,
            CallCode::GetVpRegisters,
            CallCode::SetVpRegisters,
            CallCode::MicaMapPoolPages,
        ];
        for code in CallCode::ALL {
            assert_eq!(code.spec().is_rep(), reps.contains(&code), "{code:?}");
        }
    }
}
