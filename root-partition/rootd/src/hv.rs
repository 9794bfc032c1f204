//! The hypervisor as rootd sees it: a [`Hypervisor`] that issues raw hypercalls (the real
//! [`crate::doorbell::Doorbell`] or the in-process [`crate::fake::Fake`]), and typed
//! wrappers on top that build the TLFS parameter blocks and turn result values into
//! [`HvCallError`]s.

use hypercall::abi::{
    CreatePartitionInput, DebugOutputHeader, GetPartitionPropertyInput, GetPartitionPropertyOutput,
    HypervisorInfo, MapPoolPagesInput, PartitionIdOutput, ReadConsoleHeader, RunExitReason,
    SetVpRegisterElement, VpRegistersInput, WriteMemoryHeader,
};
use hypercall::call::{CONSOLE_READ_MAX, WRITE_MEMORY_MAX};
use hypercall::control::{rep_call, simple_call, split_result_value};
use hypercall::{
    CallCode, DEBUG_OUTPUT_MAX, HvStatus, MapGpaFlags, PAGE_SIZE, PartitionId, RegisterName,
    RegisterValue,
};
use zerocopy::{FromBytes, IntoBytes};

/// Most elements one rep call may carry (the rep count field is 12 bits wide).
pub const MAX_REPS: u64 = 0xFFF;

/// Register elements that fit in one input page after the 16-byte header.
const REGISTERS_PER_CALL: usize =
    (PAGE_SIZE as usize - size_of::<VpRegistersInput>()) / size_of::<SetVpRegisterElement>();

/// A failed hypercall: which call, and the `HV_STATUS` it returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} ({:#06x}) failed: {}", call_name(*.call), .call.raw(), status_text(*.raw_status))]
pub struct HvCallError {
    /// The call that failed.
    pub call: CallCode,
    /// Its raw status (bits 15:0 of RAX).
    pub raw_status: u16,
}

impl HvCallError {
    /// The status, if Mica's table knows it.
    #[must_use]
    pub const fn status(&self) -> Option<HvStatus> {
        HvStatus::from_raw(self.raw_status)
    }
}

fn status_text(raw: u16) -> String {
    HvStatus::from_raw(raw).map_or_else(|| format!("unknown status {raw:#06x}"), |s| s.to_string())
}

/// The TLFS (or Mica) name of a call, for messages.
#[must_use]
pub const fn call_name(call: CallCode) -> &'static str {
    match call {
        CallCode::NotifyLongSpinWait => "HvCallNotifyLongSpinWait",
        CallCode::CreatePartition => "HvCallCreatePartition",
        CallCode::InitializePartition => "HvCallInitializePartition",
        CallCode::FinalizePartition => "HvCallFinalizePartition",
        CallCode::DeletePartition => "HvCallDeletePartition",
        CallCode::GetPartitionProperty => "HvCallGetPartitionProperty",
        CallCode::SetPartitionProperty => "HvCallSetPartitionProperty",
        CallCode::GetPartitionId => "HvCallGetPartitionId",
        CallCode::UnmapGpaPages => "HvCallUnmapGpaPages",
        CallCode::CreateVp => "HvCallCreateVp",
        CallCode::GetVpRegisters => "HvCallGetVpRegisters",
        CallCode::SetVpRegisters => "HvCallSetVpRegisters",
        CallCode::MicaMapPoolPages => "MicaMapPoolPages",
        CallCode::MicaStartPartition => "MicaStartPartition",
        CallCode::MicaStopPartition => "MicaStopPartition",
        CallCode::MicaDebugOutput => "MicaDebugOutput",
        CallCode::MicaWritePartitionMemory => "MicaWritePartitionMemory",
        CallCode::MicaReadConsole => "MicaReadConsole",
        CallCode::MicaRunPartitions => "MicaRunPartitions",
        CallCode::MicaGetHypervisorInfo => "MicaGetHypervisorInfo",
    }
}

/// Checks a result value: `Ok(reps completed)` on success.
fn check(call: CallCode, rax: u64) -> Result<u16, HvCallError> {
    match split_result_value(rax) {
        (Some(HvStatus::Success), reps) => Ok(reps),
        _ => Err(HvCallError {
            call,
            raw_status: (rax & 0xFFFF) as u16,
        }),
    }
}

/// Bytes of console output and how many remain buffered in the hypervisor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsoleChunk {
    /// The bytes taken.
    pub bytes: Vec<u8>,
    /// Bytes still buffered after this read.
    pub remaining: u32,
}

/// A partition's stop property values (`MICA_STOP_REASON`, `MICA_STOP_GPA`), raw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawStop {
    /// `hypercall::abi::stop_code` encoding: kind in bits 7:0, detail in bits 63:32.
    pub code: u64,
    /// Faulting GPA of a memory stop.
    pub gpa: u64,
}

/// A way to issue hypercalls from the root partition, plus typed wrappers.
///
/// Implementors provide the two raw conventions; every other method is built on them.
pub trait Hypervisor {
    /// A memory-based call: `input` is placed in the input page, at most `output.len()`
    /// bytes of the output page are copied back. Returns RAX. `input` and `output` are at
    /// most a page each (callers here never pass more).
    fn call(&mut self, control: u64, input: &[u8], output: &mut [u8]) -> u64;

    /// A register-based call with RDX and R8; returns RAX, RDX and R8 after the call.
    fn fast(&mut self, control: u64, rdx: u64, r8: u64) -> (u64, u64, u64);

    /// `HvCallCreatePartition` with default properties; returns the new ID.
    ///
    /// # Errors
    /// The call's status.
    fn create_partition(&mut self) -> Result<PartitionId, HvCallError> {
        let code = CallCode::CreatePartition;
        let input = CreatePartitionInput::default();
        let mut output = PartitionIdOutput::default();
        let rax = self.call(
            simple_call(code.raw(), false),
            input.as_bytes(),
            output.as_mut_bytes(),
        );
        check(code, rax)?;
        Ok(PartitionId(output.partition_id))
    }

    /// `HvCallInitializePartition` (fast).
    ///
    /// # Errors
    /// The call's status.
    fn initialize_partition(&mut self, id: PartitionId) -> Result<(), HvCallError> {
        self.fast_partition_call(CallCode::InitializePartition, id)
    }

    /// `HvCallFinalizePartition` (fast).
    ///
    /// # Errors
    /// The call's status.
    fn finalize(&mut self, id: PartitionId) -> Result<(), HvCallError> {
        self.fast_partition_call(CallCode::FinalizePartition, id)
    }

    /// `HvCallDeletePartition` (fast).
    ///
    /// # Errors
    /// The call's status.
    fn delete(&mut self, id: PartitionId) -> Result<(), HvCallError> {
        self.fast_partition_call(CallCode::DeletePartition, id)
    }

    /// Mica start-partition (fast).
    ///
    /// # Errors
    /// The call's status.
    fn start(&mut self, id: PartitionId) -> Result<(), HvCallError> {
        self.fast_partition_call(CallCode::MicaStartPartition, id)
    }

    /// Mica stop-partition (fast).
    ///
    /// # Errors
    /// The call's status.
    fn stop(&mut self, id: PartitionId) -> Result<(), HvCallError> {
        self.fast_partition_call(CallCode::MicaStopPartition, id)
    }

    /// A fast call whose only input is a partition ID in RDX (R8 = 0).
    ///
    /// # Errors
    /// The call's status.
    fn fast_partition_call(&mut self, code: CallCode, id: PartitionId) -> Result<(), HvCallError> {
        let (rax, _, _) = self.fast(simple_call(code.raw(), true), id.0, 0);
        check(code, rax).map(drop)
    }

    /// `HvCallGetPartitionProperty`.
    ///
    /// # Errors
    /// The call's status.
    fn get_property(&mut self, id: PartitionId, property: u32) -> Result<u64, HvCallError> {
        let code = CallCode::GetPartitionProperty;
        let input = GetPartitionPropertyInput {
            partition_id: id.0,
            property_code: property,
            reserved: 0,
        };
        let mut output = GetPartitionPropertyOutput::default();
        let rax = self.call(
            simple_call(code.raw(), false),
            input.as_bytes(),
            output.as_mut_bytes(),
        );
        check(code, rax)?;
        Ok(output.property_value)
    }

    /// The stop-reason and stop-GPA properties of `id`.
    ///
    /// # Errors
    /// The property call's status.
    fn stop_reason(&mut self, id: PartitionId) -> Result<RawStop, HvCallError> {
        Ok(RawStop {
            code: self.get_property(id, partition::properties::MICA_STOP_REASON)?,
            gpa: self.get_property(id, partition::properties::MICA_STOP_GPA)?,
        })
    }

    /// Mica map-pool-pages: `count` pages at GPA page `first_page` onwards, in rep calls of
    /// at most [`MAX_REPS`] pages.
    ///
    /// # Errors
    /// The first failing call's status (earlier pages stay mapped).
    fn map_pool_pages(
        &mut self,
        id: PartitionId,
        first_page: u64,
        count: u64,
        flags: MapGpaFlags,
    ) -> Result<(), HvCallError> {
        let code = CallCode::MicaMapPoolPages;
        let mut done = 0;
        while done < count {
            let reps = (count - done).min(MAX_REPS);
            let input = MapPoolPagesInput {
                target_partition_id: id.0,
                target_gpa_base: first_page.saturating_add(done),
                map_flags: flags.bits(),
                padding: 0,
            };
            // `reps` <= 0xFFF fits the 12-bit field.
            let rax = self.call(
                rep_call(code.raw(), reps as u16, 0),
                input.as_bytes(),
                &mut [],
            );
            let completed = check(code, rax)?;
            if u64::from(completed) != reps {
                return Err(HvCallError {
                    call: code,
                    raw_status: HvStatus::OperationFailed.raw(),
                });
            }
            done += reps;
        }
        Ok(())
    }

    /// Mica write-partition-memory: copies `data` to `gpa` of `id` in calls of at most
    /// [`WRITE_MEMORY_MAX`] bytes.
    ///
    /// # Errors
    /// The first failing call's status.
    fn write_memory(&mut self, id: PartitionId, gpa: u64, data: &[u8]) -> Result<(), HvCallError> {
        let code = CallCode::MicaWritePartitionMemory;
        let mut input = Vec::with_capacity(size_of::<WriteMemoryHeader>() + WRITE_MEMORY_MAX);
        let mut offset = 0u64;
        for chunk in data.chunks(WRITE_MEMORY_MAX) {
            let header = WriteMemoryHeader {
                partition_id: id.0,
                gpa: gpa.saturating_add(offset),
                // A chunk is at most WRITE_MEMORY_MAX (< 4096) bytes.
                length: chunk.len() as u32,
                reserved: 0,
            };
            input.clear();
            input.extend_from_slice(header.as_bytes());
            input.extend_from_slice(chunk);
            check(
                code,
                self.call(simple_call(code.raw(), false), &input, &mut []),
            )?;
            offset += chunk.len() as u64;
        }
        Ok(())
    }

    /// `HvCallCreateVp` for VP `index` of `id`.
    ///
    /// # Errors
    /// The call's status.
    fn create_vp(&mut self, id: PartitionId, index: u32) -> Result<(), HvCallError> {
        let code = CallCode::CreateVp;
        let input = hypercall::abi::CreateVpInput {
            partition_id: id.0,
            vp_index: index,
            ..Default::default()
        };
        check(
            code,
            self.call(simple_call(code.raw(), false), input.as_bytes(), &mut []),
        )
        .map(drop)
    }

    /// `HvCallSetVpRegisters` for VP `index` of `id`, in rep calls that fit one page.
    ///
    /// # Errors
    /// The first failing call's status.
    fn set_vp_registers(
        &mut self,
        id: PartitionId,
        index: u32,
        registers: &[(u32, RegisterValue)],
    ) -> Result<(), HvCallError> {
        let code = CallCode::SetVpRegisters;
        let header = VpRegistersInput {
            partition_id: id.0,
            vp_index: index,
            input_vtl: 0,
            reserved: [0; 3],
        };
        for batch in registers.chunks(REGISTERS_PER_CALL) {
            let mut input = header.as_bytes().to_vec();
            for &(name, value) in batch {
                let element = SetVpRegisterElement {
                    name: RegisterName(name),
                    reserved: [0; 3],
                    value,
                };
                input.extend_from_slice(element.as_bytes());
            }
            // A batch is at most REGISTERS_PER_CALL (127) elements.
            let control = rep_call(code.raw(), batch.len() as u16, 0);
            let completed = check(code, self.call(control, &input, &mut []))?;
            if usize::from(completed) != batch.len() {
                return Err(HvCallError {
                    call: code,
                    raw_status: HvStatus::OperationFailed.raw(),
                });
            }
        }
        Ok(())
    }

    /// Mica read-console: takes up to [`CONSOLE_READ_MAX`] buffered console bytes of `id`.
    ///
    /// # Errors
    /// The call's status.
    fn read_console(&mut self, id: PartitionId) -> Result<ConsoleChunk, HvCallError> {
        let code = CallCode::MicaReadConsole;
        let mut output = vec![0u8; size_of::<ReadConsoleHeader>() + CONSOLE_READ_MAX];
        let rax = self.call(simple_call(code.raw(), false), id.0.as_bytes(), &mut output);
        check(code, rax)?;
        let (header, rest) =
            ReadConsoleHeader::read_from_prefix(&output).map_err(|_| HvCallError {
                call: code,
                raw_status: HvStatus::OperationFailed.raw(),
            })?;
        let length = (header.length as usize).min(rest.len());
        Ok(ConsoleChunk {
            bytes: rest[..length].to_vec(),
            remaining: header.remaining,
        })
    }

    /// Mica run-partitions: lends this CPU to the children; returns why it came back and
    /// the partition concerned.
    ///
    /// # Errors
    /// The call's status, or `OperationFailed` if RDX holds no known reason.
    fn run_partitions(&mut self) -> Result<(RunExitReason, Option<PartitionId>), HvCallError> {
        let code = CallCode::MicaRunPartitions;
        let (rax, rdx, r8) = self.fast(simple_call(code.raw(), true), 0, 0);
        check(code, rax)?;
        let reason = RunExitReason::from_raw(rdx).ok_or(HvCallError {
            call: code,
            raw_status: HvStatus::OperationFailed.raw(),
        })?;
        Ok((reason, (r8 != 0).then_some(PartitionId(r8))))
    }

    /// Mica get-hypervisor-info.
    ///
    /// # Errors
    /// The call's status.
    fn info(&mut self) -> Result<HypervisorInfo, HvCallError> {
        let code = CallCode::MicaGetHypervisorInfo;
        let mut info = HypervisorInfo::default();
        check(
            code,
            self.call(simple_call(code.raw(), false), &[], info.as_mut_bytes()),
        )?;
        Ok(info)
    }

    /// Mica debug-output: prints `text` in the hypervisor's log, in pieces of at most
    /// [`DEBUG_OUTPUT_MAX`] bytes.
    ///
    /// # Errors
    /// The first failing call's status.
    fn debug_output(&mut self, text: &[u8]) -> Result<(), HvCallError> {
        let code = CallCode::MicaDebugOutput;
        for chunk in text.chunks(DEBUG_OUTPUT_MAX) {
            let header = DebugOutputHeader {
                // At most DEBUG_OUTPUT_MAX bytes.
                length: chunk.len() as u32,
                reserved: 0,
            };
            let mut input = header.as_bytes().to_vec();
            input.extend_from_slice(chunk);
            check(
                code,
                self.call(simple_call(code.raw(), false), &input, &mut []),
            )?;
        }
        Ok(())
    }
}

impl<H: Hypervisor + ?Sized> Hypervisor for &mut H {
    fn call(&mut self, control: u64, input: &[u8], output: &mut [u8]) -> u64 {
        (**self).call(control, input, output)
    }

    fn fast(&mut self, control: u64, rdx: u64, r8: u64) -> (u64, u64, u64) {
        (**self).fast(control, rdx, r8)
    }
}

impl<H: Hypervisor + ?Sized> Hypervisor for Box<H> {
    fn call(&mut self, control: u64, input: &[u8], output: &mut [u8]) -> u64 {
        (**self).call(control, input, output)
    }

    fn fast(&mut self, control: u64, rdx: u64, r8: u64) -> (u64, u64, u64) {
        (**self).fast(control, rdx, r8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hypercall::control::result_value;

    #[test]
    fn errors_name_the_call_and_the_status() {
        let error = check(
            CallCode::CreatePartition,
            result_value(HvStatus::AccessDenied, 0),
        )
        .unwrap_err();
        assert_eq!(error.status(), Some(HvStatus::AccessDenied));
        assert_eq!(
            error.to_string(),
            "HvCallCreatePartition (0x0040) failed: HV_STATUS_ACCESS_DENIED (0x0006)"
        );
        let unknown = check(CallCode::MicaReadConsole, 0x0001).unwrap_err();
        assert_eq!(unknown.status(), None);
        assert!(unknown.to_string().contains("unknown status 0x0001"));
        assert_eq!(
            check(CallCode::SetVpRegisters, result_value(HvStatus::Success, 5)),
            Ok(5)
        );
    }

    #[test]
    fn register_batches_fit_a_page() {
        assert_eq!(REGISTERS_PER_CALL, 127);
        assert!(16 + REGISTERS_PER_CALL * 32 <= PAGE_SIZE as usize);
    }
}
