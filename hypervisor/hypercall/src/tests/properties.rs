//! Property tests: whatever the registers and memory hold, the dispatcher answers with a
//! TLFS status, a well-formed RAX, and touches nothing outside the caller's output page.

use proptest::prelude::*;

use super::*;
use crate::control::{HypercallControl, rep_call};
use crate::{HvError, HypercallError};

fn check_invariants(rcx: u64, r8: u64, outcome: &HypercallOutcome, world: &World) {
    let (status, reps) = status_of(outcome);
    assert!(HvStatus::ALL.contains(&status));
    match HypercallControl::from_raw(rcx) {
        Ok(control) => {
            assert!(
                reps <= control.rep_count,
                "reps {reps} > count {}",
                control.rep_count
            );
            if let Some(next) = outcome.continue_rcx {
                let resumed = HypercallControl::from_raw(next).expect("continuation decodes");
                assert_eq!(status, HvStatus::Success);
                assert!(resumed.rep_start > control.rep_start, "no forward progress");
                assert!(resumed.rep_start < control.rep_count);
                assert_eq!(resumed.rep_start, reps);
                assert_eq!(next & !(0xFFF << 48), rcx & !(0xFFF << 48));
            }
        }
        Err(_) => {
            assert_eq!(status, HvStatus::InvalidHypercallInput);
            assert!(outcome.continue_rcx.is_none());
        }
    }
    if status != HvStatus::Success {
        assert!(outcome.error.is_some());
    }
    let out_page = r8 & !0xFFF;
    for &(gpa, len) in world.mem.write_log() {
        assert!(
            gpa >= r8 && gpa - out_page + len as u64 <= 0x1000,
            "write {gpa:#x}+{len:#x} outside output block at {r8:#x}"
        );
    }
}

fn arb_privileges() -> impl Strategy<Value = PartitionPrivileges> {
    prop_oneof![
        4 => Just(PartitionPrivileges::ROOT),
        1 => Just(PartitionPrivileges::CHILD_DEFAULT),
        1 => any::<u64>().prop_map(PartitionPrivileges::from_bits_retain),
    ]
}

/// GPAs: mostly `usual`, else near the interesting places: the RAM pages (aligned or
/// not), page ends, the read-only page, outside RAM, and anything.
fn arb_gpa(usual: u64) -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => Just(usual),
        1 => (0u64..0x4000).prop_map(|offset| RAM + (offset & !7)),
        1 => (0u64..0x4000).prop_map(|offset| RAM + offset),
        1 => (0u64..64).prop_map(|back| RAM + 0x1000 - back * 8),
        1 => (0u64..0x1000).prop_map(|offset| RO + offset),
        1 => any::<u64>(),
    ]
}

fn arb_handler_error() -> impl Strategy<Value = Option<(usize, HvError)>> {
    let errors = prop::sample::select(
        HvStatus::ALL
            .iter()
            .filter_map(|&s| HvError::from_status(s))
            .collect::<Vec<_>>(),
    );
    prop::option::of((0usize..4, errors))
}

/// Control words for implemented calls: mostly well-formed (natural convention, rep start
/// below rep count), sometimes with the convention flipped, bad rep fields or a stray bit.
fn arb_control() -> impl Strategy<Value = u64> {
    let codes = prop::sample::select(CallCode::ALL.to_vec());
    (
        codes,
        1u16..8,
        any::<prop::sample::Index>(),
        any::<bool>(),
        prop::bool::weighted(0.1),
        prop::option::weighted(0.1, (0u16..2, 0u16..10)),
        prop::option::weighted(0.1, 0u32..64),
    )
        .prop_map(
            |(code, count, start, either_fast, flip_fast, bad_reps, stray_bit)| {
                let spec = code.spec();
                let (count, start) = match bad_reps {
                    Some((count, start)) => (count, start),
                    None if spec.is_rep() => {
                        (count, u16::try_from(start.index(count.into())).unwrap())
                    }
                    None => (0, 0),
                };
                let fast = match spec.convention {
                    crate::call::Convention::SlowOnly => false,
                    crate::call::Convention::FastOnly => true,
                    crate::call::Convention::Either => either_fast,
                } ^ flip_fast;
                let mut rcx = rep_call(code.raw(), count, start);
                if fast {
                    rcx |= crate::control::FAST_BIT;
                }
                if let Some(bit) = stray_bit {
                    rcx |= 1 << bit;
                }
                rcx
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_registers_never_panic(
        rcx in any::<u64>(),
        rdx in any::<u64>(),
        r8 in any::<u64>(),
        privileges in arb_privileges(),
    ) {
        let mut world = World::new();
        let caller = CallerContext { privileges, ..root() };
        let outcome = world.call(&caller, rcx, rdx, r8);
        check_invariants(rcx, r8, &outcome, &world);
    }

    #[test]
    fn plausible_calls_never_panic(
        rcx in arb_control(),
        rdx in arb_gpa(IN),
        r8 in arb_gpa(OUT),
        input in prop::collection::vec(prop_oneof![15 => Just(0u8), 1 => any::<u8>()], 256),
        privileges in arb_privileges(),
        fail_at in arb_handler_error(),
        yield_every in prop::option::of(1usize..4),
    ) {
        let mut world = World::new();
        // The bytes go where the call will read them, when that is RAM.
        for base in [IN, RO, rdx] {
            let fits = |start: u64, len: u64| base >= start && base.saturating_add(256) <= start + len;
            if fits(RAM, RAM_LEN as u64) || fits(RO, 0x1000) {
                world.mem.poke(base, &input);
            }
        }
        world.handler.fail_at = fail_at;
        world.handler.yield_every = yield_every;
        let caller = CallerContext { privileges, ..root() };
        let outcome = world.call(&caller, rcx, rdx, r8);
        check_invariants(rcx, r8, &outcome, &world);
        // A handler failure is reported as exactly the handler's status: the injected one,
        // or the fake's answer for an unknown property or register.
        if let Some(HypercallError::Handler(error)) = outcome.error {
            prop_assert_eq!(outcome.status(), error.status());
            prop_assert!(
                fail_at.map(|(_, e)| e) == Some(error)
                    || matches!(error, HvError::UnknownProperty | HvError::InvalidParameter),
                "unexpected handler error {:?}", error
            );
        }
    }
}
