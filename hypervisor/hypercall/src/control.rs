//! The hypercall input value (RCX) and result value (RAX), bit for bit as in the TLFS
//! ("Hypercall Inputs" / "Hypercall Outputs").
//!
//! ```text
//! RCX  63..60 RsvdZ | 59..48 rep start | 47..44 RsvdZ | 43..32 rep count |
//!      31 is-nested | 30..27 RsvdZ | 26..17 variable header (qwords) | 16 fast | 15..0 code
//! RAX  63..44 Rsvd  | 43..32 reps completed | 31..16 Rsvd | 15..0 HV_STATUS
//! ```

use crate::dispatch::HypercallError;
use crate::status::HvStatus;

/// Bits 15:0 of the input value: the call code.
pub const CALL_CODE_MASK: u64 = 0xFFFF;
/// Bit 16 of the input value: register-based ("fast") calling convention.
pub const FAST_BIT: u64 = 1 << 16;
/// First bit of the variable header size field (bits 26:17, in 8-byte units).
pub const VARIABLE_HEADER_SHIFT: u32 = 17;
/// Width mask of the variable header size field.
pub const VARIABLE_HEADER_MASK: u64 = 0x3FF;
/// Bit 31 of the input value: the call is meant for the L0 hypervisor of a nested setup.
pub const NESTED_BIT: u64 = 1 << 31;
/// First bit of the rep count field (bits 43:32).
pub const REP_COUNT_SHIFT: u32 = 32;
/// First bit of the rep start index field (bits 59:48).
pub const REP_START_SHIFT: u32 = 48;
/// Width mask of the rep count and rep start index fields (12 bits).
pub const REP_FIELD_MASK: u64 = 0xFFF;
/// The RsvdZ bits of the input value: 30:27, 47:44 and 63:60.
pub const RESERVED_INPUT_BITS: u64 = (0xF << 27) | (0xF << 44) | (0xF << 60);

/// First bit of the reps-completed field of the result value (bits 43:32).
pub const REPS_COMPLETED_SHIFT: u32 = 32;

const _: () = assert!(
    RESERVED_INPUT_BITS
        & (CALL_CODE_MASK
            | FAST_BIT
            | (VARIABLE_HEADER_MASK << VARIABLE_HEADER_SHIFT)
            | NESTED_BIT
            | (REP_FIELD_MASK << REP_COUNT_SHIFT)
            | (REP_FIELD_MASK << REP_START_SHIFT))
        == 0
);
const _: () = assert!(
    RESERVED_INPUT_BITS
        | CALL_CODE_MASK
        | FAST_BIT
        | (VARIABLE_HEADER_MASK << VARIABLE_HEADER_SHIFT)
        | NESTED_BIT
        | (REP_FIELD_MASK << REP_COUNT_SHIFT)
        | (REP_FIELD_MASK << REP_START_SHIFT)
        == u64::MAX
);

/// The fields of a hypercall input value, split out but not yet checked against a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HypercallControl {
    /// Raw call code (bits 15:0).
    pub call_code: u16,
    /// Register-based calling convention (bit 16).
    pub fast: bool,
    /// Variable header size in 8-byte units (bits 26:17).
    pub variable_header_qwords: u16,
    /// The is-nested bit (bit 31).
    pub nested: bool,
    /// Total number of reps (bits 43:32).
    pub rep_count: u16,
    /// Index of the first rep to process (bits 59:48).
    pub rep_start: u16,
}

impl HypercallControl {
    /// Splits RCX into its fields. Fails only if a RsvdZ bit is set.
    ///
    /// # Errors
    /// [`HypercallError::ReservedControlBits`] if any of bits 30:27, 47:44, 63:60 is set.
    pub const fn from_raw(rcx: u64) -> Result<Self, HypercallError> {
        if rcx & RESERVED_INPUT_BITS != 0 {
            return Err(HypercallError::ReservedControlBits {
                bits: rcx & RESERVED_INPUT_BITS,
            });
        }
        // The masks keep every field within the width of its target type.
        Ok(Self {
            call_code: (rcx & CALL_CODE_MASK) as u16,
            fast: rcx & FAST_BIT != 0,
            variable_header_qwords: ((rcx >> VARIABLE_HEADER_SHIFT) & VARIABLE_HEADER_MASK) as u16,
            nested: rcx & NESTED_BIT != 0,
            rep_count: ((rcx >> REP_COUNT_SHIFT) & REP_FIELD_MASK) as u16,
            rep_start: ((rcx >> REP_START_SHIFT) & REP_FIELD_MASK) as u16,
        })
    }

    /// Packs the fields back into an input value. Fields wider than their bit range are
    /// truncated to it.
    #[must_use]
    pub const fn to_raw(self) -> u64 {
        (self.call_code as u64)
            | if self.fast { FAST_BIT } else { 0 }
            | (((self.variable_header_qwords as u64) & VARIABLE_HEADER_MASK)
                << VARIABLE_HEADER_SHIFT)
            | if self.nested { NESTED_BIT } else { 0 }
            | (((self.rep_count as u64) & REP_FIELD_MASK) << REP_COUNT_SHIFT)
            | (((self.rep_start as u64) & REP_FIELD_MASK) << REP_START_SHIFT)
    }
}

/// Builds the input value of a simple (non-rep) call, as a guest would.
#[must_use]
pub const fn simple_call(call_code: u16, fast: bool) -> u64 {
    HypercallControl {
        call_code,
        fast,
        variable_header_qwords: 0,
        nested: false,
        rep_count: 0,
        rep_start: 0,
    }
    .to_raw()
}

/// Builds the input value of a memory-based rep call, as a guest would.
#[must_use]
pub const fn rep_call(call_code: u16, rep_count: u16, rep_start: u16) -> u64 {
    HypercallControl {
        call_code,
        fast: false,
        variable_header_qwords: 0,
        nested: false,
        rep_count,
        rep_start,
    }
    .to_raw()
}

/// Returns `rcx` with its rep start index replaced by `rep_start` (how a continued rep call
/// re-enters: TLFS "Volatile Registers", rule 2).
#[must_use]
pub const fn with_rep_start(rcx: u64, rep_start: u16) -> u64 {
    (rcx & !(REP_FIELD_MASK << REP_START_SHIFT))
        | (((rep_start as u64) & REP_FIELD_MASK) << REP_START_SHIFT)
}

/// Encodes a hypercall result value (RAX): status in bits 15:0, reps completed in 43:32,
/// every other bit zero.
#[must_use]
pub const fn result_value(status: HvStatus, reps_completed: u16) -> u64 {
    (status.raw() as u64) | (((reps_completed as u64) & REP_FIELD_MASK) << REPS_COMPLETED_SHIFT)
}

/// Splits a result value into its status (`None` if unknown) and reps completed.
#[must_use]
pub const fn split_result_value(rax: u64) -> (Option<HvStatus>, u16) {
    let raw_status = (rax & 0xFFFF) as u16;
    let reps = ((rax >> REPS_COMPLETED_SHIFT) & REP_FIELD_MASK) as u16;
    (HvStatus::from_raw(raw_status), reps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_sit_at_the_tlfs_bit_positions() {
        let rcx = 0x0123_0456_0001_0008 | (3 << 17) | NESTED_BIT;
        let control = HypercallControl::from_raw(rcx).unwrap();
        assert_eq!(control.call_code, 0x0008);
        assert!(control.fast);
        assert_eq!(control.variable_header_qwords, 3);
        assert!(control.nested);
        assert_eq!(control.rep_count, 0x456);
        assert_eq!(control.rep_start, 0x123);
        assert_eq!(control.to_raw(), rcx);
    }

    #[test]
    fn every_reserved_bit_is_rejected() {
        for bit in (27..=30).chain(44..=47).chain(60..=63) {
            let rcx = simple_call(0x0008, true) | (1 << bit);
            assert_eq!(
                HypercallControl::from_raw(rcx),
                Err(HypercallError::ReservedControlBits { bits: 1 << bit }),
                "bit {bit}"
            );
        }
    }

    #[test]
    fn result_value_layout() {
        let rax = result_value(HvStatus::InvalidParameter, 7);
        assert_eq!(rax, 0x0000_0007_0000_0005);
        assert_eq!(
            split_result_value(rax),
            (Some(HvStatus::InvalidParameter), 7)
        );
        assert_eq!(result_value(HvStatus::Success, 0xFFF) >> 44, 0);
    }

    #[test]
    fn with_rep_start_only_touches_the_start_field() {
        let rcx = rep_call(0x0050, 25, 0);
        let resumed = with_rep_start(rcx, 20);
        let control = HypercallControl::from_raw(resumed).unwrap();
        assert_eq!(control.rep_start, 20);
        assert_eq!(control.rep_count, 25);
        assert_eq!(control.call_code, 0x0050);
    }
}
