//! Decoding a hypercall from the caller's registers, validating it, running it against a
//! [`HypercallHandler`] and producing the register results.
//!
//! Two steps: [`HypercallInput::decode`] is pure (registers only: control word, call code,
//! convention, rep fields, GPA alignment and page placement, overlap); [`dispatch`] needs
//! the caller, its memory and the handler (privilege, RAM checks, copying parameters,
//! reserved fields, the call itself, output). [`handle_hypercall`] does both.
//!
//! Every failure is a [`HypercallError`]; [`HypercallError::status`] is the one place that
//! turns one into the guest-visible [`HvStatus`].

use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::abi::{
    CreatePartitionInput, CreateVpInput, DebugOutputHeader, GetPartitionPropertyInput,
    GetPartitionPropertyOutput, INPUT_VTL_CURRENT, INPUT_VTL_ZERO, MapGpaFlags, MapPoolPagesInput,
    NotifyLongSpinWaitInput, PartitionControlInput, PartitionIdInput, PartitionIdOutput,
    ReadConsoleHeader, RegisterName, SetPartitionPropertyInput, SetVpRegisterElement,
    UnmapGpaPagesInput, VpRegistersInput, WriteMemoryHeader,
};
use crate::call::{
    CONSOLE_READ_MAX, CallCode, CallKind, CallSpec, DEBUG_OUTPUT_MAX, PrivilegeRule,
    WRITE_MEMORY_MAX,
};
use crate::control::{HypercallControl, result_value, with_rep_start};
use crate::handler::{
    CallerContext, CreatePartitionParams, CreateVpParams, HypercallHandler, PartitionId,
    PartitionPropertyCode, VpTarget,
};
use crate::memory::{Access, GuestMemory, GuestMemoryError, PAGE_SIZE};
use crate::privilege::PartitionPrivileges;
use crate::status::{HvError, HvStatus};

/// Which parameter block an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    /// The input parameter block (RDX).
    Input,
    /// The output parameter block (R8).
    Output,
}

/// Why a hypercall failed. [`Self::status`] maps each to the status the guest sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HypercallError {
    /// A RsvdZ bit of the input value is set.
    #[error("Reserved bits {bits:#x} set in the hypercall input value")]
    ReservedControlBits {
        /// The offending bits.
        bits: u64,
    },
    /// The is-nested bit is set; Mica is not a nested (L1) hypervisor's parent.
    #[error("Nested hypercalls are not supported")]
    NestedNotSupported,
    /// Mica does not implement this call code.
    #[error("Unknown call code {0:#06x}")]
    UnknownCallCode(u16),
    /// Fast bit set on a call that is memory-based only.
    #[error("{0:?} cannot be a fast call")]
    FastNotSupported(CallCode),
    /// Fast bit clear on a call that is register-based only.
    #[error("{0:?} must be a fast call")]
    SlowNotSupported(CallCode),
    /// Non-zero variable header size on a call that takes none.
    #[error("{0:?} takes no variable header")]
    VariableHeaderNotSupported(CallCode),
    /// Non-zero rep count or rep start on a simple call.
    #[error("{0:?} is not a rep call")]
    RepFieldsOnSimpleCall(CallCode),
    /// Zero rep count on a rep call.
    #[error("{0:?} needs a non-zero rep count")]
    ZeroRepCount(CallCode),
    /// Rep start index not below the rep count.
    #[error("Rep start {start} is not below rep count {count}")]
    RepStartNotBelowCount {
        /// Rep start index.
        start: u16,
        /// Rep count.
        count: u16,
    },
    /// A parameter block GPA is not 8-byte aligned.
    #[error("{block:?} GPA {gpa:#x} is not 8-byte aligned")]
    Misaligned {
        /// Which block.
        block: Block,
        /// Its GPA.
        gpa: u64,
    },
    /// A parameter block does not lie within one page.
    #[error("{block:?} block {gpa:#x}+{len:#x} crosses a page boundary")]
    CrossesPage {
        /// Which block.
        block: Block,
        /// Its GPA.
        gpa: u64,
        /// Its length.
        len: u64,
    },
    /// The input and output blocks overlap.
    #[error("Input and output blocks overlap")]
    BlocksOverlap,
    /// A parameter block is not usable RAM of the caller.
    #[error("{block:?} block is unusable")]
    Memory {
        /// Which block.
        block: Block,
        /// Why.
        #[source]
        error: GuestMemoryError,
    },
    /// The caller lacks privileges the call needs.
    #[error("Caller lacks privileges {missing:?}")]
    AccessDenied {
        /// The privileges needed but not held.
        missing: PartitionPrivileges,
    },
    /// An input field is invalid (a reserved field set, an unsupported flag, ...).
    #[error("Invalid parameter: {0}")]
    InvalidParameter(&'static str),
    /// A call the backend carries out itself (Mica run-partitions) reached the dispatcher:
    /// this backend does not implement it.
    #[error("{0:?} is carried out by the virtualization backend, which lacks it")]
    BackendCall(CallCode),
    /// The handler failed the call.
    #[error(transparent)]
    Handler(HvError),
}

impl HypercallError {
    /// The guest-visible status for this error: the only place internal errors become
    /// `HV_STATUS` codes.
    ///
    /// A GPA that is not the caller's RAM maps to `HV_STATUS_INVALID_ALIGNMENT`, the TLFS
    /// code for "not within the bounds of the GPA space" (Mica sends no memory intercept
    /// for hypercall parameter pages); overlapping blocks break the same TLFS
    /// "Alignment Requirements" rule set and get the same code.
    #[must_use]
    pub const fn status(&self) -> HvStatus {
        match self {
            Self::ReservedControlBits { .. }
            | Self::NestedNotSupported
            | Self::FastNotSupported(_)
            | Self::SlowNotSupported(_)
            | Self::VariableHeaderNotSupported(_)
            | Self::RepFieldsOnSimpleCall(_)
            | Self::ZeroRepCount(_)
            | Self::RepStartNotBelowCount { .. } => HvStatus::InvalidHypercallInput,
            Self::UnknownCallCode(_) | Self::BackendCall(_) => HvStatus::InvalidHypercallCode,
            Self::Misaligned { .. }
            | Self::CrossesPage { .. }
            | Self::BlocksOverlap
            | Self::Memory { .. } => HvStatus::InvalidAlignment,
            Self::AccessDenied { .. } => HvStatus::AccessDenied,
            Self::InvalidParameter(_) => HvStatus::InvalidParameter,
            Self::Handler(error) => error.status(),
        }
    }
}

/// Where the parameters are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Params {
    /// Fast call: RDX then R8, as 16 little-endian bytes.
    Registers([u8; 16]),
    /// Slow call: parameter blocks in guest memory. A length of 0 means the call has no
    /// such block and its GPA was ignored.
    Memory {
        input_gpa: u64,
        input_len: u64,
        output_gpa: u64,
        output_len: u64,
    },
}

/// A decoded hypercall: the call is known, its control fields are consistent with it, and
/// its parameter blocks are aligned, within one page each and disjoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HypercallInput {
    rcx: u64,
    control: HypercallControl,
    code: CallCode,
    spec: CallSpec,
    params: Params,
}

/// A call the virtualization backend carries out itself, checked like any other call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendCall {
    /// [`CallCode::MicaRunPartitions`], valid: lend the CPU to the children.
    RunPartitions,
}

/// Whether RCX/RDX/R8 name a backend call: `None` if not (dispatch it normally),
/// `Some(Ok(call))` if it is one and valid for `caller`, `Some(Err(outcome))` if it is one
/// but invalid (the outcome to apply, as [`handle_hypercall`] would).
#[must_use]
pub fn backend_call(
    rcx: u64,
    rdx: u64,
    r8: u64,
    caller: &CallerContext,
) -> Option<Result<BackendCall, HypercallOutcome>> {
    let input = HypercallInput::decode(rcx, rdx, r8).ok()?;
    if input.code != CallCode::MicaRunPartitions {
        return None;
    }
    let fail = |error| Some(Err(HypercallOutcome::failed(error, 0)));
    if let PrivilegeRule::Requires(needed) = input.spec.privilege {
        let missing = needed.difference(caller.privileges);
        if !missing.is_empty() {
            return fail(HypercallError::AccessDenied { missing });
        }
    }
    if rdx != 0 || r8 != 0 {
        return fail(HypercallError::InvalidParameter("reserved field set"));
    }
    Some(Ok(BackendCall::RunPartitions))
}

impl HypercallInput {
    /// Decodes a hypercall from the caller's RCX, RDX and R8 (x64 register mapping).
    /// Pure: touches no memory.
    ///
    /// # Errors
    /// The first problem found (TLFS leaves the order of error checks open).
    pub fn decode(rcx: u64, rdx: u64, r8: u64) -> Result<Self, HypercallError> {
        let control = HypercallControl::from_raw(rcx)?;
        if control.nested {
            return Err(HypercallError::NestedNotSupported);
        }
        let code = CallCode::from_raw(control.call_code)
            .ok_or(HypercallError::UnknownCallCode(control.call_code))?;
        let spec = code.spec();
        if !spec.convention.accepts(control.fast) {
            return Err(if control.fast {
                HypercallError::FastNotSupported(code)
            } else {
                HypercallError::SlowNotSupported(code)
            });
        }
        if control.variable_header_qwords != 0 {
            return Err(HypercallError::VariableHeaderNotSupported(code));
        }
        let (input_len, output_len) = match spec.kind {
            CallKind::Simple => {
                if control.rep_count != 0 || control.rep_start != 0 {
                    return Err(HypercallError::RepFieldsOnSimpleCall(code));
                }
                (spec.input_header_size, spec.output_size)
            }
            CallKind::Rep {
                input_element_size,
                output_element_size,
            } => {
                if control.rep_count == 0 {
                    return Err(HypercallError::ZeroRepCount(code));
                }
                if control.rep_start >= control.rep_count {
                    return Err(HypercallError::RepStartNotBelowCount {
                        start: control.rep_start,
                        count: control.rep_count,
                    });
                }
                // rep_count < 4096 and element sizes <= 32: no overflow possible.
                let reps = u64::from(control.rep_count);
                (
                    spec.input_header_size + reps * input_element_size,
                    reps * output_element_size,
                )
            }
        };
        let params = if control.fast {
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&rdx.to_le_bytes());
            bytes[8..].copy_from_slice(&r8.to_le_bytes());
            Params::Registers(bytes)
        } else {
            if input_len != 0 {
                check_placement(Block::Input, rdx, input_len)?;
            }
            if output_len != 0 {
                check_placement(Block::Output, r8, output_len)?;
            }
            if input_len != 0 && output_len != 0 && overlaps(rdx, input_len, r8, output_len) {
                return Err(HypercallError::BlocksOverlap);
            }
            Params::Memory {
                input_gpa: rdx,
                input_len,
                output_gpa: r8,
                output_len,
            }
        };
        Ok(Self {
            rcx,
            control,
            code,
            spec,
            params,
        })
    }

    /// The call.
    #[must_use]
    pub const fn call_code(&self) -> CallCode {
        self.code
    }

    /// The decoded control fields.
    #[must_use]
    pub const fn control(&self) -> HypercallControl {
        self.control
    }

    /// Whether the call uses the register-based convention.
    #[must_use]
    pub const fn is_fast(&self) -> bool {
        self.control.fast
    }
}

/// Aligned to 8 bytes and within one page.
fn check_placement(block: Block, gpa: u64, len: u64) -> Result<(), HypercallError> {
    if !gpa.is_multiple_of(8) {
        return Err(HypercallError::Misaligned { block, gpa });
    }
    // offset < PAGE_SIZE and len is bounded by the spec table (< 2^20): no overflow.
    if gpa % PAGE_SIZE + len > PAGE_SIZE {
        return Err(HypercallError::CrossesPage { block, gpa, len });
    }
    Ok(())
}

/// Whether `[a, a + a_len)` and `[b, b + b_len)` share a byte (computed without overflow).
fn overlaps(a: u64, a_len: u64, b: u64, b_len: u64) -> bool {
    let (a, a_end) = (u128::from(a), u128::from(a) + u128::from(a_len));
    let (b, b_end) = (u128::from(b), u128::from(b) + u128::from(b_len));
    a < b_end && b < a_end
}

/// What the exit handler does with the guest's registers after a hypercall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HypercallOutcome {
    /// The hypercall result value: write it to RAX.
    pub rax: u64,
    /// `Some(rcx)` when a rep call was cut short by [`HypercallHandler::rep_time_slice_over`]
    /// (TLFS "hypercall continuation"): write `rcx` (the input value with rep start set to
    /// the reps completed so far) to RCX and **do not advance RIP**. The guest, once
    /// resumed (after pending interrupts and other VPs had their turn), executes the
    /// hypercall instruction again and the call continues from the new rep start. `None`:
    /// advance RIP past the hypercall instruction.
    pub continue_rcx: Option<u64>,
    /// The failure behind a non-success status, for (rate-limited) diagnostics.
    pub error: Option<HypercallError>,
}

impl HypercallOutcome {
    /// Whether the exit handler moves RIP past the hypercall instruction.
    #[must_use]
    pub const fn advance_rip(&self) -> bool {
        self.continue_rcx.is_none()
    }

    /// The status in RAX bits 15:0.
    #[must_use]
    pub fn status(&self) -> HvStatus {
        match self.error {
            None => HvStatus::Success,
            Some(error) => error.status(),
        }
    }

    /// The reps-completed field of RAX (bits 43:32).
    #[must_use]
    pub const fn reps_completed(&self) -> u16 {
        crate::control::split_result_value(self.rax).1
    }

    fn failed(error: HypercallError, reps_completed: u16) -> Self {
        Self {
            rax: result_value(error.status(), reps_completed),
            continue_rcx: None,
            error: Some(error),
        }
    }
}

/// Decodes and runs one hypercall: what the VMMCALL/VMCALL exit handler calls with the
/// caller's RCX, RDX and R8 (after checking CPL 0 and 64-bit mode, which the TLFS answers
/// with #UD).
pub fn handle_hypercall<M, H>(
    rcx: u64,
    rdx: u64,
    r8: u64,
    caller: &CallerContext,
    mem: &mut M,
    handler: &mut H,
) -> HypercallOutcome
where
    M: GuestMemory + ?Sized,
    H: HypercallHandler + ?Sized,
{
    match HypercallInput::decode(rcx, rdx, r8) {
        Ok(input) => dispatch(&input, caller, mem, handler),
        // Nothing was attempted, so no reps were completed.
        Err(error) => HypercallOutcome::failed(error, 0),
    }
}

/// Runs a decoded hypercall for `caller`.
///
/// Simple calls write their output only on success. A rep call writes each element's
/// output as that element completes; when element *k* fails, RAX reports *k* reps
/// completed (counted from 0, not from rep start, as the TLFS says) and element *k*'s output
/// slot is left untouched. A rep call failing before its first element reports rep start.
pub fn dispatch<M, H>(
    input: &HypercallInput,
    caller: &CallerContext,
    mem: &mut M,
    handler: &mut H,
) -> HypercallOutcome
where
    M: GuestMemory + ?Sized,
    H: HypercallHandler + ?Sized,
{
    let mut call = Call {
        input,
        caller,
        mem,
        handler,
    };
    match call.run() {
        Ok(Progress::Complete) => HypercallOutcome {
            rax: result_value(HvStatus::Success, input.control.rep_count),
            continue_rcx: None,
            error: None,
        },
        Ok(Progress::Yielded { completed }) => HypercallOutcome {
            rax: result_value(HvStatus::Success, completed),
            continue_rcx: Some(with_rep_start(input.rcx, completed)),
            error: None,
        },
        Err(Failure {
            error,
            reps_completed,
        }) => HypercallOutcome::failed(error, reps_completed),
    }
}

enum Progress {
    /// All of it done (all reps, for a rep call).
    Complete,
    /// A rep call stopped after `completed` reps in total.
    Yielded { completed: u16 },
}

struct Failure {
    error: HypercallError,
    reps_completed: u16,
}

struct Call<'a, M: ?Sized, H: ?Sized> {
    input: &'a HypercallInput,
    caller: &'a CallerContext,
    mem: &'a mut M,
    handler: &'a mut H,
}

impl<M: GuestMemory + ?Sized, H: HypercallHandler + ?Sized> Call<'_, M, H> {
    fn run(&mut self) -> Result<Progress, Failure> {
        // Failures before any element leave the reps of earlier invocations completed.
        let before_elements = |error| Failure {
            error,
            reps_completed: self.input.control.rep_start,
        };
        if let PrivilegeRule::Requires(needed) = self.input.spec.privilege {
            self.require(needed).map_err(before_elements)?;
        }
        self.check_memory().map_err(before_elements)?;
        match self.input.code {
            CallCode::NotifyLongSpinWait => self.simple(Self::notify_long_spin_wait),
            CallCode::CreatePartition => self.simple(Self::create_partition),
            CallCode::InitializePartition
            | CallCode::FinalizePartition
            | CallCode::DeletePartition => self.simple(Self::partition_lifecycle),
            CallCode::GetPartitionProperty => self.simple(Self::get_partition_property),
            CallCode::SetPartitionProperty => self.simple(Self::set_partition_property),
            CallCode::GetPartitionId => self.simple(Self::get_partition_id),
            CallCode::CreateVp => self.simple(Self::create_vp),
            CallCode::MicaStartPartition | CallCode::MicaStopPartition => {
                self.simple(Self::partition_control)
            }
            CallCode::MicaDebugOutput => self.simple(Self::debug_output),
            CallCode::MicaWritePartitionMemory => self.simple(Self::write_partition_memory),
            CallCode::MicaReadConsole => self.simple(Self::read_console),
            CallCode::MicaGetHypervisorInfo => self.simple(Self::hypervisor_info),
            // Carried out by the backend before dispatch (it runs other vCPUs); reaching
            // here means the backend does not support it.
            CallCode::MicaRunPartitions => Err(Failure {
                error: HypercallError::BackendCall(CallCode::MicaRunPartitions),
                reps_completed: 0,
            }),
            CallCode::UnmapGpaPages => self.unmap_gpa_pages(),
            CallCode::MicaMapPoolPages => self.map_pool_pages(),
            CallCode::GetVpRegisters => self.get_vp_registers(),
            CallCode::SetVpRegisters => self.set_vp_registers(),
        }
    }

    fn simple(
        &mut self,
        body: fn(&mut Self) -> Result<(), HypercallError>,
    ) -> Result<Progress, Failure> {
        body(self).map_err(|error| Failure {
            error,
            reps_completed: 0,
        })?;
        Ok(Progress::Complete)
    }

    /// Runs `element` for each rep from rep start, stopping at the first failure or when
    /// the handler's time slice is over (never before one element is done).
    fn reps(
        &mut self,
        mut element: impl FnMut(&mut Self, u16) -> Result<(), HypercallError>,
    ) -> Result<Progress, Failure> {
        let count = self.input.control.rep_count;
        let mut index = self.input.control.rep_start;
        loop {
            element(self, index).map_err(|error| Failure {
                error,
                reps_completed: index,
            })?;
            index += 1;
            if index >= count {
                return Ok(Progress::Complete);
            }
            if self.handler.rep_time_slice_over() {
                return Ok(Progress::Yielded { completed: index });
            }
        }
    }

    fn require(&self, needed: PartitionPrivileges) -> Result<(), HypercallError> {
        let missing = needed.difference(self.caller.privileges);
        if missing.is_empty() {
            Ok(())
        } else {
            Err(HypercallError::AccessDenied { missing })
        }
    }

    /// Both blocks are the caller's RAM with the right access, before anything happens.
    fn check_memory(&self) -> Result<(), HypercallError> {
        if let Params::Memory {
            input_gpa,
            input_len,
            output_gpa,
            output_len,
        } = self.input.params
        {
            if input_len != 0 {
                self.mem
                    .check(input_gpa, input_len, Access::Read)
                    .map_err(|error| HypercallError::Memory {
                        block: Block::Input,
                        error,
                    })?;
            }
            if output_len != 0 {
                self.mem
                    .check(output_gpa, output_len, Access::Write)
                    .map_err(|error| HypercallError::Memory {
                        block: Block::Output,
                        error,
                    })?;
            }
        }
        Ok(())
    }

    /// Copies `buf.len()` input bytes starting `offset` bytes into the input block.
    fn read_input_bytes(&self, offset: u64, buf: &mut [u8]) -> Result<(), HypercallError> {
        match self.input.params {
            Params::Registers(bytes) => {
                let source = usize::try_from(offset)
                    .ok()
                    .and_then(|start| bytes.get(start..start.checked_add(buf.len())?))
                    .ok_or(HypercallError::InvalidParameter("input beyond RDX:R8"))?;
                buf.copy_from_slice(source);
                Ok(())
            }
            Params::Memory { input_gpa, .. } => {
                // input_gpa + offset stays inside the checked input page.
                let gpa = input_gpa
                    .checked_add(offset)
                    .ok_or(HypercallError::InvalidParameter("input beyond GPA space"))?;
                self.mem
                    .read(gpa, buf)
                    .map_err(|error| HypercallError::Memory {
                        block: Block::Input,
                        error,
                    })
            }
        }
    }

    /// Copies one `T` out of the input block, `offset` bytes in.
    fn read_input<T: FromBytes + IntoBytes>(&self, offset: u64) -> Result<T, HypercallError> {
        let mut value = T::new_zeroed();
        self.read_input_bytes(offset, value.as_mut_bytes())?;
        Ok(value)
    }

    /// Writes `value` into the output block, `offset` bytes in.
    fn write_output<T: IntoBytes + Immutable>(
        &mut self,
        offset: u64,
        value: &T,
    ) -> Result<(), HypercallError> {
        self.write_output_bytes(offset, value.as_bytes())
    }

    /// `HV_PARTITION_ID_SELF` names the caller.
    fn resolve(&self, raw: u64) -> PartitionId {
        if raw == PartitionId::SELF.0 {
            self.caller.partition_id
        } else {
            PartitionId(raw)
        }
    }

    fn notify_long_spin_wait(&mut self) -> Result<(), HypercallError> {
        // Advisory: the reserved half is ignored and the call always succeeds.
        let input: NotifyLongSpinWaitInput = self.read_input(0)?;
        self.handler
            .notify_long_spin_wait(self.caller, input.spin_count);
        Ok(())
    }

    fn create_partition(&mut self) -> Result<(), HypercallError> {
        let input: CreatePartitionInput = self.read_input(0)?;
        if input.padding != 0 || input.reserved != 0 {
            return Err(HypercallError::InvalidParameter("reserved field set"));
        }
        let params = CreatePartitionParams {
            flags: input.flags,
            proximity_domain_info: input.proximity_domain_info,
            compatibility_version: input.compatibility_version,
            disabled_processor_features: input.disabled_processor_features,
            disabled_processor_xsave_features: input.disabled_processor_xsave_features,
        };
        let id = self
            .handler
            .create_partition(self.caller, &params)
            .map_err(HypercallError::Handler)?;
        self.write_output(0, &PartitionIdOutput { partition_id: id.0 })
    }

    fn partition_lifecycle(&mut self) -> Result<(), HypercallError> {
        let input: PartitionIdInput = self.read_input(0)?;
        let partition = self.resolve(input.partition_id);
        let result = match self.input.code {
            CallCode::InitializePartition => {
                self.handler.initialize_partition(self.caller, partition)
            }
            CallCode::FinalizePartition => self.handler.finalize_partition(self.caller, partition),
            _ => self.handler.delete_partition(self.caller, partition),
        };
        result.map_err(HypercallError::Handler)
    }

    fn get_partition_property(&mut self) -> Result<(), HypercallError> {
        let input: GetPartitionPropertyInput = self.read_input(0)?;
        if input.reserved != 0 {
            return Err(HypercallError::InvalidParameter("reserved field set"));
        }
        let partition = self.resolve(input.partition_id);
        let value = self
            .handler
            .get_partition_property(
                self.caller,
                partition,
                PartitionPropertyCode(input.property_code),
            )
            .map_err(HypercallError::Handler)?;
        self.write_output(
            0,
            &GetPartitionPropertyOutput {
                property_value: value,
            },
        )
    }

    fn set_partition_property(&mut self) -> Result<(), HypercallError> {
        let input: SetPartitionPropertyInput = self.read_input(0)?;
        if input.reserved != 0 {
            return Err(HypercallError::InvalidParameter("reserved field set"));
        }
        let partition = self.resolve(input.partition_id);
        self.handler
            .set_partition_property(
                self.caller,
                partition,
                PartitionPropertyCode(input.property_code),
                input.property_value,
            )
            .map_err(HypercallError::Handler)
    }

    fn get_partition_id(&mut self) -> Result<(), HypercallError> {
        let partition_id = self.caller.partition_id.0;
        self.write_output(0, &PartitionIdOutput { partition_id })
    }

    fn create_vp(&mut self) -> Result<(), HypercallError> {
        let input: CreateVpInput = self.read_input(0)?;
        if input.reserved != [0; 3] || input.flags != 0 {
            return Err(HypercallError::InvalidParameter("reserved field set"));
        }
        let partition = self.resolve(input.partition_id);
        let params = CreateVpParams {
            vp_index: input.vp_index,
            subnode_type: input.subnode_type,
            subnode_id: input.subnode_id,
            proximity_domain_info: input.proximity_domain_info,
        };
        self.handler
            .create_vp(self.caller, partition, &params)
            .map_err(HypercallError::Handler)
    }

    fn partition_control(&mut self) -> Result<(), HypercallError> {
        let input: PartitionControlInput = self.read_input(0)?;
        if input.reserved != 0 {
            return Err(HypercallError::InvalidParameter("reserved field set"));
        }
        let partition = self.resolve(input.partition_id);
        let result = if self.input.code == CallCode::MicaStartPartition {
            self.handler.start_partition(self.caller, partition)
        } else {
            self.handler.stop_partition(self.caller, partition)
        };
        result.map_err(HypercallError::Handler)
    }

    fn write_partition_memory(&mut self) -> Result<(), HypercallError> {
        let header: WriteMemoryHeader = self.read_input(0)?;
        if header.reserved != 0 {
            return Err(HypercallError::InvalidParameter("reserved field set"));
        }
        let len = usize::try_from(header.length)
            .ok()
            .filter(|&len| len <= WRITE_MEMORY_MAX)
            .ok_or(HypercallError::InvalidParameter("write too long"))?;
        let header_size = size_of::<WriteMemoryHeader>() as u64;
        let mut data = [0u8; WRITE_MEMORY_MAX];
        let data = &mut data[..len];
        self.read_checked_tail(header_size, data)?;
        let partition = self.resolve(header.partition_id);
        self.handler
            .write_partition_memory(self.caller, partition, header.gpa, data)
            .map_err(HypercallError::Handler)
    }

    fn read_console(&mut self) -> Result<(), HypercallError> {
        let input: PartitionIdInput = self.read_input(0)?;
        let partition = self.resolve(input.partition_id);
        let mut data = [0u8; CONSOLE_READ_MAX];
        let (len, remaining) = self
            .handler
            .read_console(self.caller, partition, &mut data)
            .map_err(HypercallError::Handler)?;
        let len = len.min(CONSOLE_READ_MAX);
        let header = ReadConsoleHeader {
            length: u32::try_from(len).unwrap_or(0),
            remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
        };
        self.write_output(0, &header)?;
        self.write_output_bytes(size_of::<ReadConsoleHeader>() as u64, &data[..len])
    }

    fn hypervisor_info(&mut self) -> Result<(), HypercallError> {
        let info = self
            .handler
            .hypervisor_info(self.caller)
            .map_err(HypercallError::Handler)?;
        self.write_output(0, &info)
    }

    /// Reads `buf.len()` bytes that follow a variable-length call's header, after checking
    /// the whole block (header + tail) is one readable page-contained block.
    fn read_checked_tail(&self, header_size: u64, buf: &mut [u8]) -> Result<(), HypercallError> {
        let Params::Memory { input_gpa, .. } = self.input.params else {
            return Err(HypercallError::InvalidParameter("call needs memory"));
        };
        let total = header_size + buf.len() as u64;
        check_placement(Block::Input, input_gpa, total)?;
        self.mem
            .check(input_gpa, total, Access::Read)
            .map_err(|error| HypercallError::Memory {
                block: Block::Input,
                error,
            })?;
        self.read_input_bytes(header_size, buf)
    }

    /// Writes raw bytes into the output block, `offset` bytes in.
    fn write_output_bytes(&mut self, offset: u64, bytes: &[u8]) -> Result<(), HypercallError> {
        let Params::Memory { output_gpa, .. } = self.input.params else {
            return Err(HypercallError::InvalidParameter(
                "fast call has no output block",
            ));
        };
        let gpa = output_gpa
            .checked_add(offset)
            .ok_or(HypercallError::InvalidParameter("output beyond GPA space"))?;
        self.mem
            .write(gpa, bytes)
            .map_err(|error| HypercallError::Memory {
                block: Block::Output,
                error,
            })
    }

    fn debug_output(&mut self) -> Result<(), HypercallError> {
        let header: DebugOutputHeader = self.read_input(0)?;
        if header.reserved != 0 {
            return Err(HypercallError::InvalidParameter("reserved field set"));
        }
        let len = usize::try_from(header.length)
            .ok()
            .filter(|&len| len <= DEBUG_OUTPUT_MAX)
            .ok_or(HypercallError::InvalidParameter("debug output too long"))?;
        let header_size = size_of::<DebugOutputHeader>() as u64;
        let mut text = [0u8; DEBUG_OUTPUT_MAX];
        let text = &mut text[..len];
        self.read_checked_tail(header_size, text)?;
        self.handler
            .debug_output(self.caller, text)
            .map_err(HypercallError::Handler)
    }

    /// Reads the header of a rep call; failures count as "before the first element".
    fn rep_header<T: FromBytes + IntoBytes>(
        &self,
        validate: impl FnOnce(&T) -> Result<(), HypercallError>,
    ) -> Result<T, Failure> {
        let header = self
            .read_input::<T>(0)
            .and_then(|header| validate(&header).map(|()| header));
        header.map_err(|error| Failure {
            error,
            reps_completed: self.input.control.rep_start,
        })
    }

    fn unmap_gpa_pages(&mut self) -> Result<Progress, Failure> {
        let header: UnmapGpaPagesInput = self.rep_header(|h: &UnmapGpaPagesInput| {
            if h.padding != 0 {
                Err(HypercallError::InvalidParameter("reserved field set"))
            } else if h.unmap_flags != 0 {
                Err(HypercallError::InvalidParameter("unmap flags unsupported"))
            } else {
                Ok(())
            }
        })?;
        let partition = self.resolve(header.target_partition_id);
        self.reps(|call, index| {
            let gpa_page = page_at(header.target_gpa_base, index)?;
            call.handler
                .unmap_gpa_page(call.caller, partition, gpa_page)
                .map_err(HypercallError::Handler)
        })
    }

    fn map_pool_pages(&mut self) -> Result<Progress, Failure> {
        let header: MapPoolPagesInput = self.rep_header(|h: &MapPoolPagesInput| {
            if h.padding != 0 {
                Err(HypercallError::InvalidParameter("reserved field set"))
            } else if MapGpaFlags::from_bits(h.map_flags).is_none() {
                Err(HypercallError::InvalidParameter("map flags unsupported"))
            } else {
                Ok(())
            }
        })?;
        let flags = MapGpaFlags::from_bits_truncate(header.map_flags);
        let partition = self.resolve(header.target_partition_id);
        self.reps(|call, index| {
            let gpa_page = page_at(header.target_gpa_base, index)?;
            call.handler
                .map_pool_page(call.caller, partition, gpa_page, flags)
                .map_err(HypercallError::Handler)
        })
    }

    /// Header of the VP register calls: VTL 0 only, reserved bytes zero, privilege by
    /// target (own partition: AccessVpRegisters; a child: CreatePartitions).
    fn vp_target(&self) -> Result<VpTarget, Failure> {
        let header: VpRegistersInput = self.rep_header(|h: &VpRegistersInput| {
            if h.reserved != [0; 3] {
                Err(HypercallError::InvalidParameter("reserved field set"))
            } else if h.input_vtl != INPUT_VTL_CURRENT && h.input_vtl != INPUT_VTL_ZERO {
                Err(HypercallError::InvalidParameter("only VTL 0 exists"))
            } else {
                Ok(())
            }
        })?;
        let partition = self.resolve(header.partition_id);
        if let PrivilegeRule::TargetDependent { own, other } = self.input.spec.privilege {
            let needed = if partition == self.caller.partition_id {
                own
            } else {
                other
            };
            self.require(needed).map_err(|error| Failure {
                error,
                reps_completed: self.input.control.rep_start,
            })?;
        }
        Ok(VpTarget {
            partition,
            vp_index: header.vp_index,
        })
    }

    fn get_vp_registers(&mut self) -> Result<Progress, Failure> {
        const NAMES_OFFSET: u64 = size_of::<VpRegistersInput>() as u64;
        const NAME_SIZE: u64 = size_of::<RegisterName>() as u64;
        const VALUE_SIZE: u64 = size_of::<crate::abi::RegisterValue>() as u64;
        let target = self.vp_target()?;
        self.reps(|call, index| {
            let index = u64::from(index);
            let name: RegisterName = call.read_input(NAMES_OFFSET + index * NAME_SIZE)?;
            let value = call
                .handler
                .get_vp_register(call.caller, target, name)
                .map_err(HypercallError::Handler)?;
            call.write_output(index * VALUE_SIZE, &value)
        })
    }

    fn set_vp_registers(&mut self) -> Result<Progress, Failure> {
        const ELEMENTS_OFFSET: u64 = size_of::<VpRegistersInput>() as u64;
        const ELEMENT_SIZE: u64 = size_of::<SetVpRegisterElement>() as u64;
        let target = self.vp_target()?;
        self.reps(|call, index| {
            let element: SetVpRegisterElement =
                call.read_input(ELEMENTS_OFFSET + u64::from(index) * ELEMENT_SIZE)?;
            if element.reserved != [0; 3] {
                return Err(HypercallError::InvalidParameter("reserved field set"));
            }
            call.handler
                .set_vp_register(call.caller, target, element.name, element.value)
                .map_err(HypercallError::Handler)
        })
    }
}

/// GPA page `base + index`, refusing to wrap.
fn page_at(base: u64, index: u16) -> Result<u64, HypercallError> {
    base.checked_add(u64::from(index))
        .ok_or(HypercallError::InvalidParameter(
            "GPA page number overflows",
        ))
}
