//! Host tests of decoding and dispatch against the fakes.

mod calls;
mod errors;
mod properties;
mod root_calls;

use zerocopy::{Immutable, IntoBytes};

use crate::control::split_result_value;
use crate::fake::{FakeGuestMemory, RecordingHandler};
use crate::{
    CallCode, CallerContext, HvStatus, HypercallOutcome, PartitionId, PartitionPrivileges,
    handle_hypercall,
};

/// Start of the fake RAM: four pages.
const RAM: u64 = 0x10_0000;
const RAM_LEN: usize = 0x4000;
/// The input page.
const IN: u64 = RAM;
/// The output page.
const OUT: u64 = RAM + 0x1000;
/// A read-only page, outside the writable RAM.
const RO: u64 = 0x20_0000;

const ROOT_ID: PartitionId = PartitionId(1);
const CHILD_ID: PartitionId = PartitionId(7);

fn root() -> CallerContext {
    CallerContext {
        partition_id: ROOT_ID,
        vp_index: 0,
        privileges: PartitionPrivileges::ROOT,
    }
}

fn child() -> CallerContext {
    CallerContext {
        partition_id: CHILD_ID,
        vp_index: 1,
        privileges: PartitionPrivileges::CHILD_DEFAULT,
    }
}

/// Fake memory and handler, and the calls made through them.
struct World {
    mem: FakeGuestMemory,
    handler: RecordingHandler,
}

impl World {
    fn new() -> Self {
        let mut mem = FakeGuestMemory::with_ram(RAM, RAM_LEN);
        mem.add_region(RO, 0x1000, false);
        // A zeroed input page is a valid input for most calls; the rest stays 0xAA so
        // that untouched output is recognisable.
        mem.poke(IN, &[0; 0x1000]);
        Self {
            mem,
            handler: RecordingHandler::new(),
        }
    }

    fn put<T: IntoBytes + Immutable + ?Sized>(&mut self, gpa: u64, value: &T) {
        self.mem.poke(gpa, value.as_bytes());
    }

    fn call(&mut self, caller: &CallerContext, rcx: u64, rdx: u64, r8: u64) -> HypercallOutcome {
        handle_hypercall(rcx, rdx, r8, caller, &mut self.mem, &mut self.handler)
    }

    /// A memory-based simple call with input at `IN` and output at `OUT`.
    fn slow(&mut self, caller: &CallerContext, code: CallCode) -> HypercallOutcome {
        self.call(
            caller,
            crate::control::simple_call(code.raw(), false),
            IN,
            OUT,
        )
    }

    /// A fast simple call.
    fn fast(
        &mut self,
        caller: &CallerContext,
        code: CallCode,
        rdx: u64,
        r8: u64,
    ) -> HypercallOutcome {
        self.call(
            caller,
            crate::control::simple_call(code.raw(), true),
            rdx,
            r8,
        )
    }

    /// A rep call with input at `IN` and output at `OUT`.
    fn rep(
        &mut self,
        caller: &CallerContext,
        code: CallCode,
        count: u16,
        start: u16,
    ) -> HypercallOutcome {
        self.call(
            caller,
            crate::control::rep_call(code.raw(), count, start),
            IN,
            OUT,
        )
    }

    /// Nothing observable happened: no handler call, no guest write.
    fn assert_untouched(&self) {
        assert!(
            self.handler.calls.is_empty(),
            "handler called: {:?}",
            self.handler.calls
        );
        assert!(
            self.mem.write_log().is_empty(),
            "memory written: {:?}",
            self.mem.write_log()
        );
    }
}

/// Status and reps completed of an outcome, checked against its RAX encoding.
fn status_of(outcome: &HypercallOutcome) -> (HvStatus, u16) {
    let (status, reps) = split_result_value(outcome.rax);
    let status = status.expect("RAX carries a known status");
    assert_eq!(
        status,
        outcome.status(),
        "RAX and error disagree: {outcome:?}"
    );
    assert_eq!(
        outcome.rax & !0x0000_0FFF_0000_FFFF,
        0,
        "reserved RAX bits set"
    );
    (status, reps)
}

fn assert_status(outcome: &HypercallOutcome, expected: HvStatus) {
    assert_eq!(status_of(outcome).0, expected, "{outcome:?}");
    assert!(outcome.advance_rip());
}
