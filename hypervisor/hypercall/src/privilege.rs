//! `HV_PARTITION_PRIVILEGE_MASK` (TLFS datatypes): what a partition may do. Bits 0-31
//! gate synthetic MSRs, bits 32-63 gate hypercalls; a partition reads the mask from CPUID
//! leaf 0x40000003 (EAX = low half, EBX = high half).

use bitflags::bitflags;

bitflags! {
    /// A partition's privilege mask, bit for bit as the TLFS defines it.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct PartitionPrivileges: u64 {
        /// HV_X64_MSR_VP_RUNTIME.
        const ACCESS_VP_RUNTIME_REG = 1 << 0;
        /// HV_X64_MSR_TIME_REF_COUNT.
        const ACCESS_PARTITION_REFERENCE_COUNTER = 1 << 1;
        /// SynIC MSRs (SCONTROL..EOM, SINT0..SINT15).
        const ACCESS_SYNIC_REGS = 1 << 2;
        /// Synthetic timer MSRs (STIMER0_CONFIG..STIMER3_COUNT).
        const ACCESS_SYNTHETIC_TIMER_REGS = 1 << 3;
        /// APIC MSRs (EOI, ICR, TPR).
        const ACCESS_INTR_CTRL_REGS = 1 << 4;
        /// HV_X64_MSR_GUEST_OS_ID and HV_X64_MSR_HYPERCALL.
        const ACCESS_HYPERCALL_MSRS = 1 << 5;
        /// HV_X64_MSR_VP_INDEX.
        const ACCESS_VP_INDEX = 1 << 6;
        /// The system reset MSR.
        const ACCESS_RESET_REG = 1 << 7;
        /// The statistics page MSRs.
        const ACCESS_STATS_REG = 1 << 8;
        /// The reference TSC page.
        const ACCESS_PARTITION_REFERENCE_TSC = 1 << 9;
        /// The guest idle MSR.
        const ACCESS_GUEST_IDLE_REG = 1 << 10;
        /// TSC and APIC frequency MSRs.
        const ACCESS_FREQUENCY_REGS = 1 << 11;
        /// Synthetic debugging MSRs.
        const ACCESS_DEBUG_REGS = 1 << 12;
        /// Reenlightenment controls.
        const ACCESS_REENLIGHTENMENT_CONTROLS = 1 << 13;

        /// HvCallCreatePartition, and every call that acts on a child partition.
        const CREATE_PARTITIONS = 1 << 32;
        /// HvCallGetPartitionId.
        const ACCESS_PARTITION_ID = 1 << 33;
        /// The memory pool calls (deposit, withdraw, balance; Mica: map pool pages).
        const ACCESS_MEMORY_POOL = 1 << 34;
        /// HvCallPostMessage.
        const POST_MESSAGES = 1 << 36;
        /// HvCallSignalEvent.
        const SIGNAL_EVENTS = 1 << 37;
        /// HvCallCreatePort.
        const CREATE_PORT = 1 << 38;
        /// HvCallConnectPort.
        const CONNECT_PORT = 1 << 39;
        /// HvCallMapStatsPage / HvCallUnmapStatsPage.
        const ACCESS_STATS = 1 << 40;
        /// The debug data calls (Mica: the debug-output call).
        const DEBUGGING = 1 << 43;
        /// CPU management calls.
        const CPU_MANAGEMENT = 1 << 44;
        /// Virtual Secure Mode.
        const ACCESS_VSM = 1 << 48;
        /// HvCallGetVpRegisters / HvCallSetVpRegisters on the caller's own partition.
        const ACCESS_VP_REGISTERS = 1 << 49;
        /// The extended hypercall interface (call codes above 0x8000).
        const ENABLE_EXTENDED_HYPERCALLS = 1 << 52;
        /// HvCallStartVirtualProcessor.
        const START_VIRTUAL_PROCESSOR = 1 << 53;
    }
}

impl PartitionPrivileges {
    /// The privileges Mica gives a partition's guest for its own use: the synthetic MSRs a
    /// Hyper-V-enlightened guest (Linux hv_vmbus) expects, plus messages and events.
    pub const GUEST_BASE: Self = Self::ACCESS_VP_RUNTIME_REG
        .union(Self::ACCESS_PARTITION_REFERENCE_COUNTER)
        .union(Self::ACCESS_SYNIC_REGS)
        .union(Self::ACCESS_SYNTHETIC_TIMER_REGS)
        .union(Self::ACCESS_INTR_CTRL_REGS)
        .union(Self::ACCESS_HYPERCALL_MSRS)
        .union(Self::ACCESS_VP_INDEX)
        .union(Self::ACCESS_PARTITION_REFERENCE_TSC)
        .union(Self::ACCESS_FREQUENCY_REGS)
        .union(Self::POST_MESSAGES)
        .union(Self::SIGNAL_EVENTS);

    /// A child partition's default mask: [`Self::GUEST_BASE`] and nothing that manages
    /// partitions, memory or CPUs.
    pub const CHILD_DEFAULT: Self = Self::GUEST_BASE;

    /// The root partition's mask: [`Self::GUEST_BASE`] plus the management privileges.
    pub const ROOT: Self = Self::GUEST_BASE
        .union(Self::CREATE_PARTITIONS)
        .union(Self::ACCESS_PARTITION_ID)
        .union(Self::ACCESS_MEMORY_POOL)
        .union(Self::CREATE_PORT)
        .union(Self::CONNECT_PORT)
        .union(Self::ACCESS_STATS)
        .union(Self::DEBUGGING)
        .union(Self::CPU_MANAGEMENT)
        .union(Self::ACCESS_VP_REGISTERS);

    /// The low half, as CPUID 0x40000003 returns it in EAX.
    #[must_use]
    pub const fn cpuid_eax(self) -> u32 {
        (self.bits() & 0xFFFF_FFFF) as u32
    }

    /// The high half, as CPUID 0x40000003 returns it in EBX.
    #[must_use]
    pub const fn cpuid_ebx(self) -> u32 {
        (self.bits() >> 32) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypercall_bits_match_the_cpuid_ebx_positions() {
        // CPUID 0x40000003 EBX bit n is mask bit 32 + n (Linux: HV_CREATE_PARTITIONS BIT(0),
        // HV_ACCESS_PARTITION_ID BIT(1), ..., HV_DEBUGGING BIT(11), HV_CPU_MANAGEMENT BIT(12),
        // HV_ACCESS_VP_REGS BIT(17), HV_ENABLE_EXTENDED_HYPERCALLS BIT(20)).
        assert_eq!(PartitionPrivileges::CREATE_PARTITIONS.cpuid_ebx(), 1 << 0);
        assert_eq!(PartitionPrivileges::ACCESS_PARTITION_ID.cpuid_ebx(), 1 << 1);
        assert_eq!(PartitionPrivileges::ACCESS_MEMORY_POOL.cpuid_ebx(), 1 << 2);
        assert_eq!(PartitionPrivileges::POST_MESSAGES.cpuid_ebx(), 1 << 4);
        assert_eq!(PartitionPrivileges::SIGNAL_EVENTS.cpuid_ebx(), 1 << 5);
        assert_eq!(PartitionPrivileges::CREATE_PORT.cpuid_ebx(), 1 << 6);
        assert_eq!(PartitionPrivileges::CONNECT_PORT.cpuid_ebx(), 1 << 7);
        assert_eq!(PartitionPrivileges::ACCESS_STATS.cpuid_ebx(), 1 << 8);
        assert_eq!(PartitionPrivileges::DEBUGGING.cpuid_ebx(), 1 << 11);
        assert_eq!(PartitionPrivileges::CPU_MANAGEMENT.cpuid_ebx(), 1 << 12);
        assert_eq!(PartitionPrivileges::ACCESS_VSM.cpuid_ebx(), 1 << 16);
        assert_eq!(
            PartitionPrivileges::ACCESS_VP_REGISTERS.cpuid_ebx(),
            1 << 17
        );
        assert_eq!(
            PartitionPrivileges::ENABLE_EXTENDED_HYPERCALLS.cpuid_ebx(),
            1 << 20
        );
        assert_eq!(
            PartitionPrivileges::START_VIRTUAL_PROCESSOR.cpuid_ebx(),
            1 << 21
        );
    }

    #[test]
    fn msr_bits_match_the_cpuid_eax_positions() {
        assert_eq!(PartitionPrivileges::ACCESS_VP_RUNTIME_REG.cpuid_eax(), 1);
        assert_eq!(PartitionPrivileges::ACCESS_SYNIC_REGS.cpuid_eax(), 1 << 2);
        assert_eq!(
            PartitionPrivileges::ACCESS_HYPERCALL_MSRS.cpuid_eax(),
            1 << 5
        );
        assert_eq!(PartitionPrivileges::ACCESS_VP_INDEX.cpuid_eax(), 1 << 6);
        assert_eq!(
            PartitionPrivileges::ACCESS_REENLIGHTENMENT_CONTROLS.cpuid_eax(),
            1 << 13
        );
    }

    #[test]
    fn root_manages_and_child_does_not() {
        let management = PartitionPrivileges::CREATE_PARTITIONS
            | PartitionPrivileges::ACCESS_PARTITION_ID
            | PartitionPrivileges::ACCESS_MEMORY_POOL
            | PartitionPrivileges::CPU_MANAGEMENT
            | PartitionPrivileges::DEBUGGING
            | PartitionPrivileges::ACCESS_VP_REGISTERS;
        assert!(PartitionPrivileges::ROOT.contains(management));
        assert!(!PartitionPrivileges::CHILD_DEFAULT.intersects(management));
        // Both can reach the hypercall MSRs and SynIC, which hv_vmbus needs.
        for mask in [
            PartitionPrivileges::ROOT,
            PartitionPrivileges::CHILD_DEFAULT,
        ] {
            assert!(mask.contains(
                PartitionPrivileges::ACCESS_HYPERCALL_MSRS
                    | PartitionPrivileges::ACCESS_VP_INDEX
                    | PartitionPrivileges::ACCESS_SYNIC_REGS
            ));
        }
    }
}
