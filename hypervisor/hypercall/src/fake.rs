//! In-memory fakes of [`GuestMemory`] and [`HypercallHandler`] for host tests (this crate's
//! and, with the `fake` feature, other crates'). They use `std`.

use std::collections::BTreeMap;
use std::vec;
use std::vec::Vec;

use crate::abi::{MapGpaFlags, RegisterName, RegisterValue};
use crate::handler::{
    CallerContext, CreatePartitionParams, CreateVpParams, HypercallHandler, PartitionId,
    PartitionPropertyCode, VpTarget,
};
use crate::memory::{Access, GuestMemory, GuestMemoryError};
use crate::status::HvError;

#[derive(Clone, Debug)]
struct Region {
    base: u64,
    bytes: Vec<u8>,
    writable: bool,
}

/// A guest-physical address space made of RAM regions backed by `Vec`s. A range is usable
/// only if it lies inside one region. Every successful `write` is logged.
#[derive(Clone, Debug, Default)]
pub struct FakeGuestMemory {
    regions: Vec<Region>,
    writes: Vec<(u64, usize)>,
}

impl FakeGuestMemory {
    /// No RAM at all.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// One writable RAM region `[base, base + len)`, filled with `0xAA` so that untouched
    /// bytes are recognisable.
    #[must_use]
    pub fn with_ram(base: u64, len: usize) -> Self {
        let mut mem = Self::new();
        mem.add_region(base, len, true);
        mem
    }

    /// Adds a RAM region filled with `0xAA`; `writable: false` makes it read-only.
    pub fn add_region(&mut self, base: u64, len: usize, writable: bool) {
        self.regions.push(Region {
            base,
            bytes: vec![0xAA; len],
            writable,
        });
    }

    fn locate(&self, gpa: u64, len: u64) -> Option<(usize, usize)> {
        let end = gpa.checked_add(len)?;
        let index = self.regions.iter().position(|region| {
            region
                .base
                .checked_add(region.bytes.len() as u64)
                .is_some_and(|region_end| gpa >= region.base && end <= region_end)
        })?;
        let offset = usize::try_from(gpa - self.regions[index].base).ok()?;
        Some((index, offset))
    }

    /// Test setup: stores `data` at `gpa` regardless of writability, without logging.
    ///
    /// # Panics
    /// If the range is not inside one region (a broken test, not guest input).
    pub fn poke(&mut self, gpa: u64, data: &[u8]) {
        let (i, offset) = self
            .locate(gpa, data.len() as u64)
            .expect("poke outside fake RAM");
        self.regions[i].bytes[offset..offset + data.len()].copy_from_slice(data);
    }

    /// Test inspection: `len` bytes at `gpa`.
    ///
    /// # Panics
    /// If the range is not inside one region (a broken test, not guest input).
    #[must_use]
    pub fn peek(&self, gpa: u64, len: usize) -> Vec<u8> {
        let (i, offset) = self.locate(gpa, len as u64).expect("peek outside fake RAM");
        self.regions[i].bytes[offset..offset + len].to_vec()
    }

    /// Test inspection: the little-endian `u64` at `gpa`.
    #[must_use]
    pub fn peek_u64(&self, gpa: u64) -> u64 {
        let bytes = self.peek(gpa, 8);
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&bytes);
        u64::from_le_bytes(raw)
    }

    /// Every successful `write`, as (GPA, length), in order.
    #[must_use]
    pub fn write_log(&self) -> &[(u64, usize)] {
        &self.writes
    }
}

impl GuestMemory for FakeGuestMemory {
    fn check(&self, gpa: u64, len: u64, access: Access) -> Result<(), GuestMemoryError> {
        let (i, _) = self
            .locate(gpa, len)
            .ok_or(GuestMemoryError::NotRam { gpa, len })?;
        if access == Access::Write && !self.regions[i].writable {
            return Err(GuestMemoryError::NotWritable { gpa, len });
        }
        Ok(())
    }

    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), GuestMemoryError> {
        let len = buf.len() as u64;
        let (i, offset) = self
            .locate(gpa, len)
            .ok_or(GuestMemoryError::NotRam { gpa, len })?;
        buf.copy_from_slice(&self.regions[i].bytes[offset..offset + buf.len()]);
        Ok(())
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), GuestMemoryError> {
        let len = data.len() as u64;
        self.check(gpa, len, Access::Write)?;
        let (i, offset) = self
            .locate(gpa, len)
            .ok_or(GuestMemoryError::NotRam { gpa, len })?;
        self.regions[i].bytes[offset..offset + data.len()].copy_from_slice(data);
        self.writes.push((gpa, data.len()));
        Ok(())
    }
}

/// One call a [`RecordingHandler`] received (the caller is recorded by partition ID).
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(
    missing_docs,
    reason = "fields mirror the HypercallHandler method arguments"
)]
pub enum HandlerCall {
    NotifyLongSpinWait {
        caller: PartitionId,
        spin_count: u32,
    },
    CreatePartition {
        caller: PartitionId,
        params: CreatePartitionParams,
    },
    InitializePartition {
        caller: PartitionId,
        partition: PartitionId,
    },
    FinalizePartition {
        caller: PartitionId,
        partition: PartitionId,
    },
    DeletePartition {
        caller: PartitionId,
        partition: PartitionId,
    },
    GetPartitionProperty {
        caller: PartitionId,
        partition: PartitionId,
        code: PartitionPropertyCode,
    },
    SetPartitionProperty {
        caller: PartitionId,
        partition: PartitionId,
        code: PartitionPropertyCode,
        value: u64,
    },
    CreateVp {
        caller: PartitionId,
        partition: PartitionId,
        params: CreateVpParams,
    },
    GetVpRegister {
        caller: PartitionId,
        target: VpTarget,
        name: RegisterName,
    },
    SetVpRegister {
        caller: PartitionId,
        target: VpTarget,
        name: RegisterName,
        value: RegisterValue,
    },
    MapPoolPage {
        caller: PartitionId,
        partition: PartitionId,
        gpa_page: u64,
        flags: MapGpaFlags,
    },
    UnmapGpaPage {
        caller: PartitionId,
        partition: PartitionId,
        gpa_page: u64,
    },
    StartPartition {
        caller: PartitionId,
        partition: PartitionId,
    },
    StopPartition {
        caller: PartitionId,
        partition: PartitionId,
    },
    DebugOutput {
        caller: PartitionId,
        text: Vec<u8>,
    },
    WritePartitionMemory {
        caller: PartitionId,
        partition: PartitionId,
        gpa: u64,
        data: Vec<u8>,
    },
    ReadConsole {
        caller: PartitionId,
        partition: PartitionId,
        capacity: usize,
    },
    HypervisorInfo {
        caller: PartitionId,
    },
}

/// A handler that records every call and answers from small in-memory tables.
///
/// - `create_partition` hands out `next_partition_id`, then increments it.
/// - `get_vp_register` answers from `registers` (`InvalidParameter` if absent);
///   `set_vp_register` stores there.
/// - `get_partition_property` answers from `properties` (`UnknownProperty` if absent);
///   `set_partition_property` stores there.
/// - `fail_at = Some((n, e))`: the `n`-th recorded call (0-based) fails with `e`.
/// - `yield_every = Some(n)`: the time slice is over after every `n` completed elements.
#[derive(Clone, Debug)]
pub struct RecordingHandler {
    /// Calls received, in order.
    pub calls: Vec<HandlerCall>,
    /// Make the n-th call (0-based) fail with this error.
    pub fail_at: Option<(usize, HvError)>,
    /// End the time slice after this many completed rep elements.
    pub yield_every: Option<usize>,
    /// The ID the next `create_partition` returns.
    pub next_partition_id: u64,
    /// VP registers by (partition, VP index, register name).
    pub registers: BTreeMap<(u64, u32, u32), RegisterValue>,
    /// Partition properties by (partition, property code).
    pub properties: BTreeMap<(u64, u32), u64>,
    /// What `read_console` hands out (drained from the front).
    pub console: Vec<u8>,
    /// What `hypervisor_info` answers.
    pub info: crate::abi::HypervisorInfo,
    /// How many times `rep_time_slice_over` was asked.
    pub slice_checks: usize,
    elements_in_slice: usize,
}

impl Default for RecordingHandler {
    fn default() -> Self {
        Self {
            calls: Vec::new(),
            fail_at: None,
            yield_every: None,
            next_partition_id: 2,
            registers: BTreeMap::new(),
            properties: BTreeMap::new(),
            console: Vec::new(),
            info: crate::abi::HypervisorInfo::default(),
            slice_checks: 0,
            elements_in_slice: 0,
        }
    }
}

impl RecordingHandler {
    /// A handler with empty tables that never fails or yields.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn record(&mut self, call: HandlerCall) -> Result<(), HvError> {
        self.calls.push(call);
        match self.fail_at {
            Some((n, error)) if n + 1 == self.calls.len() => Err(error),
            _ => Ok(()),
        }
    }
}

impl HypercallHandler for RecordingHandler {
    fn notify_long_spin_wait(&mut self, caller: &CallerContext, spin_count: u32) {
        // Advisory: a configured failure cannot surface, by the TLFS contract.
        let _ = self.record(HandlerCall::NotifyLongSpinWait {
            caller: caller.partition_id,
            spin_count,
        });
    }

    fn create_partition(
        &mut self,
        caller: &CallerContext,
        params: &CreatePartitionParams,
    ) -> Result<PartitionId, HvError> {
        self.record(HandlerCall::CreatePartition {
            caller: caller.partition_id,
            params: *params,
        })?;
        let id = self.next_partition_id;
        self.next_partition_id += 1;
        Ok(PartitionId(id))
    }

    fn initialize_partition(
        &mut self,
        caller: &CallerContext,
        partition: PartitionId,
    ) -> Result<(), HvError> {
        self.record(HandlerCall::InitializePartition {
            caller: caller.partition_id,
            partition,
        })
    }

    fn finalize_partition(
        &mut self,
        caller: &CallerContext,
        partition: PartitionId,
    ) -> Result<(), HvError> {
        self.record(HandlerCall::FinalizePartition {
            caller: caller.partition_id,
            partition,
        })
    }

    fn delete_partition(
        &mut self,
        caller: &CallerContext,
        partition: PartitionId,
    ) -> Result<(), HvError> {
        self.record(HandlerCall::DeletePartition {
            caller: caller.partition_id,
            partition,
        })
    }

    fn get_partition_property(
        &mut self,
        caller: &CallerContext,
        partition: PartitionId,
        code: PartitionPropertyCode,
    ) -> Result<u64, HvError> {
        self.record(HandlerCall::GetPartitionProperty {
            caller: caller.partition_id,
            partition,
            code,
        })?;
        self.properties
            .get(&(partition.0, code.0))
            .copied()
            .ok_or(HvError::UnknownProperty)
    }

    fn set_partition_property(
        &mut self,
        caller: &CallerContext,
        partition: PartitionId,
        code: PartitionPropertyCode,
        value: u64,
    ) -> Result<(), HvError> {
        self.record(HandlerCall::SetPartitionProperty {
            caller: caller.partition_id,
            partition,
            code,
            value,
        })?;
        self.properties.insert((partition.0, code.0), value);
        Ok(())
    }

    fn create_vp(
        &mut self,
        caller: &CallerContext,
        partition: PartitionId,
        params: &CreateVpParams,
    ) -> Result<(), HvError> {
        self.record(HandlerCall::CreateVp {
            caller: caller.partition_id,
            partition,
            params: *params,
        })
    }

    fn get_vp_register(
        &mut self,
        caller: &CallerContext,
        target: VpTarget,
        name: RegisterName,
    ) -> Result<RegisterValue, HvError> {
        self.record(HandlerCall::GetVpRegister {
            caller: caller.partition_id,
            target,
            name,
        })?;
        self.registers
            .get(&(target.partition.0, target.vp_index, name.0))
            .copied()
            .ok_or(HvError::InvalidParameter)
    }

    fn set_vp_register(
        &mut self,
        caller: &CallerContext,
        target: VpTarget,
        name: RegisterName,
        value: RegisterValue,
    ) -> Result<(), HvError> {
        self.record(HandlerCall::SetVpRegister {
            caller: caller.partition_id,
            target,
            name,
            value,
        })?;
        self.registers
            .insert((target.partition.0, target.vp_index, name.0), value);
        Ok(())
    }

    fn map_pool_page(
        &mut self,
        caller: &CallerContext,
        partition: PartitionId,
        gpa_page: u64,
        flags: MapGpaFlags,
    ) -> Result<(), HvError> {
        self.record(HandlerCall::MapPoolPage {
            caller: caller.partition_id,
            partition,
            gpa_page,
            flags,
        })
    }

    fn unmap_gpa_page(
        &mut self,
        caller: &CallerContext,
        partition: PartitionId,
        gpa_page: u64,
    ) -> Result<(), HvError> {
        self.record(HandlerCall::UnmapGpaPage {
            caller: caller.partition_id,
            partition,
            gpa_page,
        })
    }

    fn start_partition(
        &mut self,
        caller: &CallerContext,
        partition: PartitionId,
    ) -> Result<(), HvError> {
        self.record(HandlerCall::StartPartition {
            caller: caller.partition_id,
            partition,
        })
    }

    fn stop_partition(
        &mut self,
        caller: &CallerContext,
        partition: PartitionId,
    ) -> Result<(), HvError> {
        self.record(HandlerCall::StopPartition {
            caller: caller.partition_id,
            partition,
        })
    }

    fn debug_output(&mut self, caller: &CallerContext, text: &[u8]) -> Result<(), HvError> {
        self.record(HandlerCall::DebugOutput {
            caller: caller.partition_id,
            text: text.to_vec(),
        })
    }

    fn write_partition_memory(
        &mut self,
        caller: &CallerContext,
        partition: PartitionId,
        gpa: u64,
        data: &[u8],
    ) -> Result<(), HvError> {
        self.record(HandlerCall::WritePartitionMemory {
            caller: caller.partition_id,
            partition,
            gpa,
            data: data.to_vec(),
        })
    }

    fn read_console(
        &mut self,
        caller: &CallerContext,
        partition: PartitionId,
        buf: &mut [u8],
    ) -> Result<(usize, usize), HvError> {
        self.record(HandlerCall::ReadConsole {
            caller: caller.partition_id,
            partition,
            capacity: buf.len(),
        })?;
        let len = self.console.len().min(buf.len());
        buf[..len].copy_from_slice(&self.console[..len]);
        self.console.drain(..len);
        Ok((len, self.console.len()))
    }

    fn hypervisor_info(
        &mut self,
        caller: &CallerContext,
    ) -> Result<crate::abi::HypervisorInfo, HvError> {
        self.record(HandlerCall::HypervisorInfo {
            caller: caller.partition_id,
        })?;
        Ok(self.info)
    }

    fn rep_time_slice_over(&mut self) -> bool {
        self.slice_checks += 1;
        self.elements_in_slice += 1;
        match self.yield_every {
            Some(n) if self.elements_in_slice >= n => {
                self.elements_in_slice = 0;
                true
            }
            _ => false,
        }
    }
}
