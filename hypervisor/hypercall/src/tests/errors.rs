//! Every way a call can be refused, and what the guest sees.

use super::*;
use crate::abi::{
    CreatePartitionInput, CreateVpInput, DebugOutputHeader, MapPoolPagesInput,
    SetVpRegisterElement, UnmapGpaPagesInput, VpRegistersInput,
};
use crate::control::{FAST_BIT, NESTED_BIT, VARIABLE_HEADER_SHIFT, rep_call, simple_call};
use crate::{Block, GuestMemoryError, HvError, HypercallError, RegisterName, RegisterValue};

#[test]
fn reserved_control_bits_are_invalid_input() {
    for bit in (27..=30).chain(44..=47).chain(60..=63) {
        let mut world = World::new();
        let rcx = simple_call(CallCode::NotifyLongSpinWait.raw(), true) | (1 << bit);
        let outcome = world.call(&root(), rcx, 0, 0);
        assert_status(&outcome, HvStatus::InvalidHypercallInput);
        assert_eq!(
            outcome.error,
            Some(HypercallError::ReservedControlBits { bits: 1 << bit })
        );
        world.assert_untouched();
    }
}

#[test]
fn unknown_call_codes_are_invalid_code() {
    // 0x0048 (deposit memory) and 0x004B (map GPA pages by PFN) are deliberately absent;
    // 0x8001 is a TLFS extended call; 0xC000 is the unused base of the Mica range.
    for code in [
        0x0000, 0x0001, 0x0048, 0x004B, 0x005C, 0x8001, 0xC000, 0xC0FF, 0xFFFF,
    ] {
        let mut world = World::new();
        let outcome = world.call(&root(), simple_call(code, false), IN, OUT);
        assert_status(&outcome, HvStatus::InvalidHypercallCode);
        assert_eq!(outcome.error, Some(HypercallError::UnknownCallCode(code)));
        world.assert_untouched();
    }
}

#[test]
fn nested_bit_is_invalid_input() {
    let mut world = World::new();
    let rcx = simple_call(CallCode::NotifyLongSpinWait.raw(), true) | NESTED_BIT;
    let outcome = world.call(&root(), rcx, 0, 0);
    assert_status(&outcome, HvStatus::InvalidHypercallInput);
    assert_eq!(outcome.error, Some(HypercallError::NestedNotSupported));
    world.assert_untouched();
}

#[test]
fn fast_bit_on_memory_only_call_is_invalid_input() {
    for code in [
        CallCode::CreatePartition,
        CallCode::GetPartitionId,
        CallCode::GetPartitionProperty,
        CallCode::MicaDebugOutput,
    ] {
        let mut world = World::new();
        let outcome = world.fast(&root(), code, 0, 0);
        assert_status(&outcome, HvStatus::InvalidHypercallInput);
        assert_eq!(outcome.error, Some(HypercallError::FastNotSupported(code)));
        world.assert_untouched();
    }
    // Rep calls are never fast.
    let mut world = World::new();
    let rcx = rep_call(CallCode::GetVpRegisters.raw(), 1, 0) | FAST_BIT;
    let outcome = world.call(&root(), rcx, 0, 0);
    assert_eq!(
        outcome.error,
        Some(HypercallError::FastNotSupported(CallCode::GetVpRegisters))
    );
}

#[test]
fn memory_call_to_register_only_call_is_invalid_input() {
    for code in [CallCode::MicaStartPartition, CallCode::MicaStopPartition] {
        let mut world = World::new();
        let outcome = world.slow(&root(), code);
        assert_status(&outcome, HvStatus::InvalidHypercallInput);
        assert_eq!(outcome.error, Some(HypercallError::SlowNotSupported(code)));
        world.assert_untouched();
    }
}

#[test]
fn variable_header_is_invalid_input() {
    let mut world = World::new();
    let rcx = simple_call(CallCode::CreatePartition.raw(), false) | (1 << VARIABLE_HEADER_SHIFT);
    let outcome = world.call(&root(), rcx, IN, OUT);
    assert_status(&outcome, HvStatus::InvalidHypercallInput);
    assert_eq!(
        outcome.error,
        Some(HypercallError::VariableHeaderNotSupported(
            CallCode::CreatePartition
        ))
    );
    world.assert_untouched();
}

#[test]
fn rep_fields_must_match_the_call_class() {
    let cases = [
        // Rep count on a simple call.
        (
            rep_call(CallCode::CreatePartition.raw(), 1, 0),
            HypercallError::RepFieldsOnSimpleCall(CallCode::CreatePartition),
        ),
        // Rep start alone on a simple call.
        (
            simple_call(CallCode::CreateVp.raw(), false) | (1 << 48),
            HypercallError::RepFieldsOnSimpleCall(CallCode::CreateVp),
        ),
        // Zero rep count on a rep call.
        (
            rep_call(CallCode::GetVpRegisters.raw(), 0, 0),
            HypercallError::ZeroRepCount(CallCode::GetVpRegisters),
        ),
        // Rep start equal to rep count.
        (
            rep_call(CallCode::SetVpRegisters.raw(), 3, 3),
            HypercallError::RepStartNotBelowCount { start: 3, count: 3 },
        ),
        // Rep start above rep count.
        (
            rep_call(CallCode::UnmapGpaPages.raw(), 2, 9),
            HypercallError::RepStartNotBelowCount { start: 9, count: 2 },
        ),
    ];
    for (rcx, error) in cases {
        let mut world = World::new();
        let outcome = world.call(&root(), rcx, IN, OUT);
        assert_status(&outcome, HvStatus::InvalidHypercallInput);
        assert_eq!(outcome.error, Some(error));
        assert_eq!(status_of(&outcome).1, 0);
        world.assert_untouched();
    }
}

#[test]
fn misaligned_gpas_are_invalid_alignment() {
    for (rdx, r8, block, gpa) in [
        (IN + 4, OUT, Block::Input, IN + 4),
        (IN + 1, OUT, Block::Input, IN + 1),
        (IN, OUT + 4, Block::Output, OUT + 4),
    ] {
        let mut world = World::new();
        let rcx = simple_call(CallCode::CreatePartition.raw(), false);
        let outcome = world.call(&root(), rcx, rdx, r8);
        assert_status(&outcome, HvStatus::InvalidAlignment);
        assert_eq!(
            outcome.error,
            Some(HypercallError::Misaligned { block, gpa })
        );
        world.assert_untouched();
    }
}

#[test]
fn unused_gpas_are_ignored() {
    // GetPartitionId has no input: a garbage RDX is fine. InitializePartition has no
    // output: a garbage R8 is fine.
    let mut world = World::new();
    let outcome = world.call(
        &root(),
        simple_call(CallCode::GetPartitionId.raw(), false),
        0xDEAD_BEEF_0000_0003,
        OUT,
    );
    assert_status(&outcome, HvStatus::Success);
    let outcome = world.call(
        &root(),
        simple_call(CallCode::InitializePartition.raw(), false),
        IN,
        u64::MAX,
    );
    assert_status(&outcome, HvStatus::Success);
}

#[test]
fn gpas_outside_ram_are_invalid_alignment() {
    let outside = 0x4000_0000;
    let cases = [
        (
            outside,
            OUT,
            Block::Input,
            GuestMemoryError::NotRam {
                gpa: outside,
                len: 56,
            },
        ),
        (
            IN,
            outside,
            Block::Output,
            GuestMemoryError::NotRam {
                gpa: outside,
                len: 8,
            },
        ),
        // RAM, but not writable: no good as an output block.
        (
            IN,
            RO,
            Block::Output,
            GuestMemoryError::NotWritable { gpa: RO, len: 8 },
        ),
    ];
    for (rdx, r8, block, error) in cases {
        let mut world = World::new();
        let rcx = simple_call(CallCode::CreatePartition.raw(), false);
        let outcome = world.call(&root(), rcx, rdx, r8);
        assert_status(&outcome, HvStatus::InvalidAlignment);
        assert_eq!(outcome.error, Some(HypercallError::Memory { block, error }));
        // The handler never ran, so no partition was created behind the guest's back.
        world.assert_untouched();
    }
    // A read-only page is fine as an input block.
    let mut world = World::new();
    world.put(RO, &crate::abi::SetPartitionPropertyInput::default());
    let outcome = world.call(
        &root(),
        simple_call(CallCode::SetPartitionProperty.raw(), false),
        RO,
        0,
    );
    assert_status(&outcome, HvStatus::Success);
}

#[test]
fn blocks_crossing_a_page_are_invalid_alignment() {
    let mut world = World::new();
    // 56-byte input starting 48 bytes before a page end.
    let rcx = simple_call(CallCode::CreatePartition.raw(), false);
    let outcome = world.call(&root(), rcx, IN + 0x1000 - 48, OUT + 0x1000);
    assert_status(&outcome, HvStatus::InvalidAlignment);
    assert_eq!(
        outcome.error,
        Some(HypercallError::CrossesPage {
            block: Block::Input,
            gpa: IN + 0x1000 - 48,
            len: 56
        })
    );
    // 8-byte output in the last 8 bytes of a page is fine; 16 bytes (2 reps of 8) is not.
    let outcome = world.call(&root(), rcx, IN, OUT + 0x1000 - 8);
    assert_status(&outcome, HvStatus::Success);
    // Rep lists count: 16-byte header + 4 bytes per name; 1021 names end past the page.
    let mut world = World::new();
    let outcome = world.call(
        &root(),
        rep_call(CallCode::GetVpRegisters.raw(), 1021, 0),
        IN,
        OUT,
    );
    assert_eq!(
        outcome.error,
        Some(HypercallError::CrossesPage {
            block: Block::Input,
            gpa: IN,
            len: 16 + 4 * 1021
        })
    );
    // ... and 16 bytes of output per register: 257 values overflow one page.
    let outcome = world.call(
        &root(),
        rep_call(CallCode::GetVpRegisters.raw(), 257, 0),
        IN,
        OUT,
    );
    assert_eq!(
        outcome.error,
        Some(HypercallError::CrossesPage {
            block: Block::Output,
            gpa: OUT,
            len: 16 * 257
        })
    );
    world.assert_untouched();
}

#[test]
fn top_of_address_space_does_not_overflow() {
    let mut world = World::new();
    let top_page = !0xFFF_u64;
    let rcx = simple_call(CallCode::CreatePartition.raw(), false);
    // Fits in the last page: placement is fine but it is not RAM.
    let outcome = world.call(&root(), rcx, top_page, top_page + 0x100);
    assert_status(&outcome, HvStatus::InvalidAlignment);
    assert!(matches!(outcome.error, Some(HypercallError::Memory { .. })));
    // Ends past 2^64.
    let outcome = world.call(&root(), rcx, u64::MAX - 7, OUT);
    assert_status(&outcome, HvStatus::InvalidAlignment);
    world.assert_untouched();
}

#[test]
fn overlapping_blocks_are_invalid_alignment() {
    let mut world = World::new();
    let rcx = simple_call(CallCode::CreatePartition.raw(), false);
    for r8 in [IN, IN + 8, IN + 48] {
        let outcome = world.call(&root(), rcx, IN, r8);
        assert_status(&outcome, HvStatus::InvalidAlignment);
        assert_eq!(outcome.error, Some(HypercallError::BlocksOverlap));
    }
    world.assert_untouched();
    // Adjacent blocks in one page do not overlap.
    let outcome = world.call(&root(), rcx, IN, IN + 56);
    assert_status(&outcome, HvStatus::Success);
}

#[test]
fn missing_privileges_are_access_denied() {
    let cases = [
        (
            CallCode::CreatePartition,
            PartitionPrivileges::CREATE_PARTITIONS,
        ),
        (
            CallCode::InitializePartition,
            PartitionPrivileges::CREATE_PARTITIONS,
        ),
        (
            CallCode::GetPartitionId,
            PartitionPrivileges::ACCESS_PARTITION_ID,
        ),
        (CallCode::CreateVp, PartitionPrivileges::CREATE_PARTITIONS),
        (CallCode::MicaDebugOutput, PartitionPrivileges::DEBUGGING),
    ];
    for (code, missing) in cases {
        let mut world = World::new();
        let outcome = world.slow(&child(), code);
        assert_status(&outcome, HvStatus::AccessDenied);
        assert_eq!(
            outcome.error,
            Some(HypercallError::AccessDenied { missing })
        );
        world.assert_untouched();
    }
    // Fast calls too.
    let mut world = World::new();
    let outcome = world.fast(&child(), CallCode::MicaStartPartition, 3, 0);
    assert_status(&outcome, HvStatus::AccessDenied);
    world.assert_untouched();
}

#[test]
fn map_pool_pages_needs_both_privileges() {
    let mut world = World::new();
    world.put(
        IN,
        &MapPoolPagesInput {
            target_partition_id: 3,
            target_gpa_base: 0,
            map_flags: 3,
            padding: 0,
        },
    );
    let caller = CallerContext {
        privileges: PartitionPrivileges::CREATE_PARTITIONS,
        ..root()
    };
    let outcome = world.rep(&caller, CallCode::MicaMapPoolPages, 4, 0);
    assert_status(&outcome, HvStatus::AccessDenied);
    assert_eq!(
        outcome.error,
        Some(HypercallError::AccessDenied {
            missing: PartitionPrivileges::ACCESS_MEMORY_POOL
        })
    );
    world.assert_untouched();
}

#[test]
fn vp_register_privilege_depends_on_the_target() {
    let header = |partition_id| VpRegistersInput {
        partition_id,
        vp_index: 0,
        input_vtl: 0,
        reserved: [0; 3],
    };
    let mut child_with_vp_regs = child();
    child_with_vp_regs.privileges |= PartitionPrivileges::ACCESS_VP_REGISTERS;

    // A plain child may not read even its own registers.
    let mut world = World::new();
    world.put(IN, &header(PartitionId::SELF.0));
    let outcome = world.rep(&child(), CallCode::GetVpRegisters, 1, 0);
    assert_eq!(
        outcome.error,
        Some(HypercallError::AccessDenied {
            missing: PartitionPrivileges::ACCESS_VP_REGISTERS
        })
    );
    world.assert_untouched();

    // With AccessVpRegisters it may, by SELF or by its own ID ...
    for partition_id in [PartitionId::SELF.0, CHILD_ID.0] {
        let mut world = World::new();
        world.put(IN, &header(partition_id));
        world.put(IN + 16, &RegisterName(0x2_0000));
        world
            .handler
            .registers
            .insert((CHILD_ID.0, 0, 0x2_0000), RegisterValue::from_u64(5));
        let outcome = world.rep(&child_with_vp_regs, CallCode::GetVpRegisters, 1, 0);
        assert_status(&outcome, HvStatus::Success);
        assert_eq!(world.mem.peek_u64(OUT), 5);
    }

    // ... but not another partition's: that needs CreatePartitions.
    let mut world = World::new();
    world.put(IN, &header(ROOT_ID.0));
    let outcome = world.rep(&child_with_vp_regs, CallCode::SetVpRegisters, 1, 0);
    assert_eq!(
        outcome.error,
        Some(HypercallError::AccessDenied {
            missing: PartitionPrivileges::CREATE_PARTITIONS
        })
    );
    world.assert_untouched();
}

#[test]
fn handler_errors_reach_the_guest_unchanged() {
    for error in [
        HvError::InvalidPartitionId,
        HvError::InvalidPartitionState,
        HvError::InsufficientMemory,
        HvError::AccessDenied,
        HvError::OperationDenied,
    ] {
        let mut world = World::new();
        world.handler.fail_at = Some((0, error));
        let outcome = world.slow(&root(), CallCode::InitializePartition);
        assert_status(&outcome, error.status());
        assert_eq!(outcome.error, Some(HypercallError::Handler(error)));
        assert_eq!(world.handler.calls.len(), 1);
    }
}

#[test]
fn output_is_not_written_when_a_simple_call_fails() {
    let mut world = World::new();
    world.handler.fail_at = Some((0, HvError::InsufficientMemory));
    let outcome = world.slow(&root(), CallCode::CreatePartition);
    assert_status(&outcome, HvStatus::InsufficientMemory);
    assert!(world.mem.write_log().is_empty());
    assert_eq!(world.mem.peek(OUT, 8), [0xAA; 8]);

    let mut world = World::new();
    world.put(
        IN,
        &crate::abi::GetPartitionPropertyInput {
            partition_id: 3,
            property_code: 0x99,
            reserved: 0,
        },
    );
    let outcome = world.slow(&root(), CallCode::GetPartitionProperty);
    assert_status(&outcome, HvStatus::UnknownProperty);
    assert!(world.mem.write_log().is_empty());
}

#[test]
fn partial_rep_completion_reports_exact_reps() {
    // SetVpRegisters, 6 reps from start 2; the handler fails its 2nd call (element 3).
    let mut world = World::new();
    world.put(
        IN,
        &VpRegistersInput {
            partition_id: 3,
            vp_index: 0,
            input_vtl: 0,
            reserved: [0; 3],
        },
    );
    for i in 0..6u32 {
        let element = SetVpRegisterElement {
            name: RegisterName(0x1000 + i),
            reserved: [0; 3],
            value: RegisterValue::from_u64(u64::from(i)),
        };
        world.put(IN + 16 + 32 * u64::from(i), &element);
    }
    world.handler.fail_at = Some((1, HvError::InvalidRegisterValue));
    let outcome = world.rep(&root(), CallCode::SetVpRegisters, 6, 2);
    assert_eq!(status_of(&outcome), (HvStatus::InvalidRegisterValue, 3));
    assert!(outcome.advance_rip());
    let names: Vec<u32> = world
        .handler
        .calls
        .iter()
        .map(|call| match call {
            crate::fake::HandlerCall::SetVpRegister { name, .. } => name.0,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(names, [0x1002, 0x1003]);
}

#[test]
fn failed_rep_element_leaves_its_output_slot_alone() {
    let mut world = World::new();
    world.put(
        IN,
        &VpRegistersInput {
            partition_id: 3,
            vp_index: 0,
            input_vtl: 0,
            reserved: [0; 3],
        },
    );
    world.put(
        IN + 16,
        &[
            RegisterName(1),
            RegisterName(2),
            RegisterName(3),
            RegisterName(4),
        ],
    );
    world
        .handler
        .registers
        .insert((3, 0, 1), RegisterValue { low: 11, high: 12 });
    world
        .handler
        .registers
        .insert((3, 0, 2), RegisterValue { low: 21, high: 22 });
    // Register 3 is unknown to the handler: element 2 fails.
    let outcome = world.rep(&root(), CallCode::GetVpRegisters, 4, 0);
    assert_eq!(status_of(&outcome), (HvStatus::InvalidParameter, 2));
    assert_eq!(world.mem.peek_u64(OUT), 11);
    assert_eq!(world.mem.peek_u64(OUT + 8), 12);
    assert_eq!(world.mem.peek_u64(OUT + 16), 21);
    assert_eq!(world.mem.peek(OUT + 32, 32), [0xAA; 32]);
    assert_eq!(world.mem.write_log(), [(OUT, 16), (OUT + 16, 16)]);
}

#[test]
fn rep_header_errors_report_rep_start() {
    let mut world = World::new();
    world.put(
        IN,
        &UnmapGpaPagesInput {
            target_partition_id: 3,
            target_gpa_base: 0x100,
            unmap_flags: 2,
            padding: 0,
        },
    );
    let outcome = world.rep(&root(), CallCode::UnmapGpaPages, 8, 5);
    assert_eq!(status_of(&outcome), (HvStatus::InvalidParameter, 5));
    assert_eq!(
        outcome.error,
        Some(HypercallError::InvalidParameter("unmap flags unsupported"))
    );
    world.assert_untouched();
}

#[test]
fn gpa_page_overflow_stops_the_rep_call() {
    let mut world = World::new();
    world.put(
        IN,
        &UnmapGpaPagesInput {
            target_partition_id: 3,
            target_gpa_base: u64::MAX,
            unmap_flags: 0,
            padding: 0,
        },
    );
    let outcome = world.rep(&root(), CallCode::UnmapGpaPages, 3, 0);
    assert_eq!(status_of(&outcome), (HvStatus::InvalidParameter, 1));
    assert_eq!(world.handler.calls.len(), 1);
}

#[test]
fn reserved_input_fields_are_invalid_parameter() {
    fn check(world: &mut World, outcome: &HypercallOutcome) {
        assert_status(outcome, HvStatus::InvalidParameter);
        assert!(matches!(
            outcome.error,
            Some(HypercallError::InvalidParameter(_))
        ));
        world.assert_untouched();
    }

    let mut world = World::new();
    world.put(
        IN,
        &CreatePartitionInput {
            padding: 1,
            ..Default::default()
        },
    );
    let outcome = world.slow(&root(), CallCode::CreatePartition);
    check(&mut world, &outcome);

    let mut world = World::new();
    world.put(
        IN,
        &CreatePartitionInput {
            reserved: 1 << 63,
            ..Default::default()
        },
    );
    let outcome = world.slow(&root(), CallCode::CreatePartition);
    check(&mut world, &outcome);

    let mut world = World::new();
    world.put(
        IN,
        &CreateVpInput {
            partition_id: 3,
            flags: 1,
            ..Default::default()
        },
    );
    let outcome = world.slow(&root(), CallCode::CreateVp);
    check(&mut world, &outcome);

    let mut world = World::new();
    world.put(
        IN,
        &CreateVpInput {
            partition_id: 3,
            reserved: [0, 1, 0],
            ..Default::default()
        },
    );
    let outcome = world.slow(&root(), CallCode::CreateVp);
    check(&mut world, &outcome);

    let mut world = World::new();
    world.put(
        IN,
        &crate::abi::GetPartitionPropertyInput {
            partition_id: 3,
            property_code: 1,
            reserved: 1,
        },
    );
    let outcome = world.slow(&root(), CallCode::GetPartitionProperty);
    check(&mut world, &outcome);

    let mut world = World::new();
    world.put(
        IN,
        &crate::abi::SetPartitionPropertyInput {
            partition_id: 3,
            property_code: 1,
            reserved: 4,
            property_value: 0,
        },
    );
    let outcome = world.slow(&root(), CallCode::SetPartitionProperty);
    check(&mut world, &outcome);

    // VTL 1 does not exist; neither do reserved HV_INPUT_VTL bits.
    for input_vtl in [0x01, 0x11, 0x20, 0x80] {
        let mut world = World::new();
        world.put(
            IN,
            &VpRegistersInput {
                partition_id: 3,
                vp_index: 0,
                input_vtl,
                reserved: [0; 3],
            },
        );
        let outcome = world.rep(&root(), CallCode::GetVpRegisters, 1, 0);
        check(&mut world, &outcome);
    }

    let mut world = World::new();
    world.put(
        IN,
        &VpRegistersInput {
            partition_id: 3,
            vp_index: 0,
            input_vtl: 0,
            reserved: [0, 0, 9],
        },
    );
    let outcome = world.rep(&root(), CallCode::SetVpRegisters, 1, 0);
    check(&mut world, &outcome);

    let mut world = World::new();
    world.put(
        IN,
        &VpRegistersInput {
            partition_id: 3,
            vp_index: 0,
            input_vtl: 0,
            reserved: [0; 3],
        },
    );
    world.put(
        IN + 16,
        &SetVpRegisterElement {
            name: RegisterName(1),
            reserved: [0, 7, 0],
            value: RegisterValue::default(),
        },
    );
    let outcome = world.rep(&root(), CallCode::SetVpRegisters, 1, 0);
    check(&mut world, &outcome);

    let mut world = World::new();
    world.put(
        IN,
        &MapPoolPagesInput {
            target_partition_id: 3,
            target_gpa_base: 0,
            map_flags: 0x1_0000,
            padding: 0,
        },
    );
    let outcome = world.rep(&root(), CallCode::MicaMapPoolPages, 1, 0);
    check(&mut world, &outcome);

    let mut world = World::new();
    world.put(
        IN,
        &MapPoolPagesInput {
            target_partition_id: 3,
            target_gpa_base: 0,
            map_flags: 1,
            padding: 1,
        },
    );
    let outcome = world.rep(&root(), CallCode::MicaMapPoolPages, 1, 0);
    check(&mut world, &outcome);

    let mut world = World::new();
    world.put(
        IN,
        &UnmapGpaPagesInput {
            target_partition_id: 3,
            target_gpa_base: 0,
            unmap_flags: 0,
            padding: 1,
        },
    );
    let outcome = world.rep(&root(), CallCode::UnmapGpaPages, 1, 0);
    check(&mut world, &outcome);

    // Start/stop: R8 is reserved.
    let mut world = World::new();
    let outcome = world.fast(&root(), CallCode::MicaStopPartition, 3, 1);
    check(&mut world, &outcome);

    let mut world = World::new();
    world.put(
        IN,
        &DebugOutputHeader {
            length: 4,
            reserved: 1,
        },
    );
    let outcome = world.slow(&root(), CallCode::MicaDebugOutput);
    check(&mut world, &outcome);
}

#[test]
fn debug_output_is_bounded() {
    let mut world = World::new();
    let too_long = u32::try_from(crate::DEBUG_OUTPUT_MAX).unwrap() + 1;
    world.put(
        IN,
        &DebugOutputHeader {
            length: too_long,
            reserved: 0,
        },
    );
    let outcome = world.slow(&root(), CallCode::MicaDebugOutput);
    assert_eq!(
        outcome.error,
        Some(HypercallError::InvalidParameter("debug output too long"))
    );
    world.put(
        IN,
        &DebugOutputHeader {
            length: u32::MAX,
            reserved: 0,
        },
    );
    let outcome = world.slow(&root(), CallCode::MicaDebugOutput);
    assert_status(&outcome, HvStatus::InvalidParameter);
    world.assert_untouched();

    // Header in the last 8 bytes of a page, text on the next page.
    let mut world = World::new();
    let header_gpa = IN + 0x1000 - 8;
    world.put(
        header_gpa,
        &DebugOutputHeader {
            length: 16,
            reserved: 0,
        },
    );
    let rcx = simple_call(CallCode::MicaDebugOutput.raw(), false);
    let outcome = world.call(&root(), rcx, header_gpa, 0);
    assert_status(&outcome, HvStatus::InvalidAlignment);
    assert_eq!(
        outcome.error,
        Some(HypercallError::CrossesPage {
            block: Block::Input,
            gpa: header_gpa,
            len: 24
        })
    );
    world.assert_untouched();

    // Text running past the end of RAM (RAM that ends mid-page).
    let mut world = World::new();
    let short_ram = 0x30_0000;
    world.mem.add_region(short_ram, 0x20, true);
    world.put(
        short_ram + 0x10,
        &DebugOutputHeader {
            length: 16,
            reserved: 0,
        },
    );
    let outcome = world.call(&root(), rcx, short_ram + 0x10, 0);
    assert_status(&outcome, HvStatus::InvalidAlignment);
    assert_eq!(
        outcome.error,
        Some(HypercallError::Memory {
            block: Block::Input,
            error: GuestMemoryError::NotRam {
                gpa: short_ram + 0x10,
                len: 24
            }
        })
    );
    world.assert_untouched();
}

#[test]
fn rep_call_refused_before_its_elements_reports_rep_start() {
    // Reps before rep start were completed by earlier invocations; a refusal now (missing
    // privilege, unusable memory) does not undo them.
    let mut world = World::new();
    let outcome = world.rep(&child(), CallCode::UnmapGpaPages, 5, 2);
    assert_eq!(status_of(&outcome), (HvStatus::AccessDenied, 2));
    let outcome = world.call(
        &root(),
        rep_call(CallCode::GetVpRegisters.raw(), 4, 1),
        IN,
        0x4000_0000,
    );
    assert_eq!(status_of(&outcome), (HvStatus::InvalidAlignment, 1));
    world.assert_untouched();
}
