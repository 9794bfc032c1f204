//! Each call's success path, and rep continuation.

use super::*;
use crate::abi::{
    CreatePartitionInput, CreateVpInput, DebugOutputHeader, GetPartitionPropertyInput,
    MapPoolPagesInput, NotifyLongSpinWaitInput, PartitionIdInput, SetPartitionPropertyInput,
    SetVpRegisterElement, UnmapGpaPagesInput, VpRegistersInput,
};
use crate::control::{HypercallControl, rep_call, simple_call};
use crate::fake::HandlerCall;
use crate::{
    CreatePartitionParams, CreateVpParams, HypercallInput, MapGpaFlags, PartitionPropertyCode,
    RegisterName, RegisterValue, VpTarget,
};

#[test]
fn notify_long_spin_wait_fast_and_slow() {
    let mut world = World::new();
    // Fast: spin count in RDX's low half; the reserved half and R8 are ignored.
    let outcome = world.fast(
        &child(),
        CallCode::NotifyLongSpinWait,
        0xFFFF_FFFF_0000_0400,
        0x1234,
    );
    assert_eq!(outcome.rax, 0, "success, no reps");
    assert!(outcome.advance_rip() && outcome.error.is_none());
    world.put(
        IN,
        &NotifyLongSpinWaitInput {
            spin_count: 77,
            reserved: 0,
        },
    );
    let outcome = world.slow(&child(), CallCode::NotifyLongSpinWait);
    assert_status(&outcome, HvStatus::Success);
    assert_eq!(
        world.handler.calls,
        [
            HandlerCall::NotifyLongSpinWait {
                caller: CHILD_ID,
                spin_count: 0x400
            },
            HandlerCall::NotifyLongSpinWait {
                caller: CHILD_ID,
                spin_count: 77
            },
        ]
    );
    assert!(world.mem.write_log().is_empty());
}

#[test]
fn create_partition_returns_the_new_id() {
    let mut world = World::new();
    let input = CreatePartitionInput {
        flags: 0x10,
        proximity_domain_info: 0x8000_0001,
        compatibility_version: 0x0A00,
        padding: 0,
        disabled_processor_features: [1, 2],
        disabled_processor_xsave_features: 3,
        reserved: 0,
    };
    world.put(IN, &input);
    world.handler.next_partition_id = 42;
    let outcome = world.slow(&root(), CallCode::CreatePartition);
    assert_status(&outcome, HvStatus::Success);
    assert_eq!(world.mem.peek_u64(OUT), 42);
    assert_eq!(world.mem.write_log(), [(OUT, 8)]);
    assert_eq!(
        world.handler.calls,
        [HandlerCall::CreatePartition {
            caller: ROOT_ID,
            params: CreatePartitionParams {
                flags: 0x10,
                proximity_domain_info: 0x8000_0001,
                compatibility_version: 0x0A00,
                disabled_processor_features: [1, 2],
                disabled_processor_xsave_features: 3,
            },
        }]
    );
}

#[test]
fn partition_lifecycle_calls_slow_and_fast() {
    let mut world = World::new();
    world.put(IN, &PartitionIdInput { partition_id: 5 });
    assert_status(
        &world.slow(&root(), CallCode::InitializePartition),
        HvStatus::Success,
    );
    assert_status(
        &world.fast(&root(), CallCode::FinalizePartition, 5, 0xFFFF),
        HvStatus::Success,
    );
    // HV_PARTITION_ID_SELF becomes the caller's ID.
    assert_status(
        &world.fast(&root(), CallCode::DeletePartition, PartitionId::SELF.0, 0),
        HvStatus::Success,
    );
    let p = PartitionId(5);
    assert_eq!(
        world.handler.calls,
        [
            HandlerCall::InitializePartition {
                caller: ROOT_ID,
                partition: p
            },
            HandlerCall::FinalizePartition {
                caller: ROOT_ID,
                partition: p
            },
            HandlerCall::DeletePartition {
                caller: ROOT_ID,
                partition: ROOT_ID
            },
        ]
    );
    assert!(world.mem.write_log().is_empty());
}

#[test]
fn partition_properties_round_trip() {
    let mut world = World::new();
    world.put(
        IN,
        &SetPartitionPropertyInput {
            partition_id: 9,
            property_code: 0x0001_0000,
            reserved: 0,
            property_value: 0xABCD,
        },
    );
    assert_status(
        &world.slow(&root(), CallCode::SetPartitionProperty),
        HvStatus::Success,
    );
    assert!(world.mem.write_log().is_empty());
    world.put(
        IN,
        &GetPartitionPropertyInput {
            partition_id: 9,
            property_code: 0x0001_0000,
            reserved: 0,
        },
    );
    assert_status(
        &world.slow(&root(), CallCode::GetPartitionProperty),
        HvStatus::Success,
    );
    assert_eq!(world.mem.peek_u64(OUT), 0xABCD);
    let code = PartitionPropertyCode(0x0001_0000);
    assert_eq!(
        world.handler.calls,
        [
            HandlerCall::SetPartitionProperty {
                caller: ROOT_ID,
                partition: PartitionId(9),
                code,
                value: 0xABCD
            },
            HandlerCall::GetPartitionProperty {
                caller: ROOT_ID,
                partition: PartitionId(9),
                code
            },
        ]
    );
}

#[test]
fn get_partition_id_answers_the_caller() {
    let mut world = World::new();
    assert_status(
        &world.slow(&root(), CallCode::GetPartitionId),
        HvStatus::Success,
    );
    assert_eq!(world.mem.peek_u64(OUT), ROOT_ID.0);
    let privileged_child = CallerContext {
        privileges: PartitionPrivileges::CHILD_DEFAULT | PartitionPrivileges::ACCESS_PARTITION_ID,
        ..child()
    };
    assert_status(
        &world.slow(&privileged_child, CallCode::GetPartitionId),
        HvStatus::Success,
    );
    assert_eq!(world.mem.peek_u64(OUT), CHILD_ID.0);
    // Served by the dispatcher alone.
    assert!(world.handler.calls.is_empty());
}

#[test]
fn create_vp_passes_its_parameters() {
    let mut world = World::new();
    world.put(
        IN,
        &CreateVpInput {
            partition_id: 4,
            vp_index: 3,
            reserved: [0; 3],
            subnode_type: 1,
            subnode_id: 2,
            proximity_domain_info: 6,
            flags: 0,
        },
    );
    assert_status(&world.slow(&root(), CallCode::CreateVp), HvStatus::Success);
    assert_eq!(
        world.handler.calls,
        [HandlerCall::CreateVp {
            caller: ROOT_ID,
            partition: PartitionId(4),
            params: CreateVpParams {
                vp_index: 3,
                subnode_type: 1,
                subnode_id: 2,
                proximity_domain_info: 6
            },
        }]
    );
}

fn vp_header(partition_id: u64, vp_index: u32) -> VpRegistersInput {
    VpRegistersInput {
        partition_id,
        vp_index,
        input_vtl: 0,
        reserved: [0; 3],
    }
}

#[test]
fn set_then_get_vp_registers() {
    let mut world = World::new();
    world.put(
        IN,
        &VpRegistersInput {
            input_vtl: 0x10,
            ..vp_header(4, 1)
        },
    );
    let elements = [
        SetVpRegisterElement {
            name: RegisterName(0x2_0000),
            reserved: [0; 3],
            value: RegisterValue::from_u64(0x1000),
        },
        SetVpRegisterElement {
            name: RegisterName(0x4_0002),
            reserved: [0; 3],
            value: RegisterValue { low: 1, high: 2 },
        },
    ];
    world.put(IN + 16, &elements);
    let outcome = world.rep(&root(), CallCode::SetVpRegisters, 2, 0);
    assert_eq!(status_of(&outcome), (HvStatus::Success, 2));
    assert!(outcome.advance_rip());
    assert!(world.mem.write_log().is_empty());

    world.put(IN, &vp_header(4, 1));
    world.put(IN + 16, &[RegisterName(0x4_0002), RegisterName(0x2_0000)]);
    let outcome = world.rep(&root(), CallCode::GetVpRegisters, 2, 0);
    assert_eq!(status_of(&outcome), (HvStatus::Success, 2));
    assert_eq!(
        [
            world.mem.peek_u64(OUT),
            world.mem.peek_u64(OUT + 8),
            world.mem.peek_u64(OUT + 16),
            world.mem.peek_u64(OUT + 24)
        ],
        [1, 2, 0x1000, 0]
    );
    let target = VpTarget {
        partition: PartitionId(4),
        vp_index: 1,
    };
    assert_eq!(
        world.handler.calls[2..],
        [
            HandlerCall::GetVpRegister {
                caller: ROOT_ID,
                target,
                name: RegisterName(0x4_0002)
            },
            HandlerCall::GetVpRegister {
                caller: ROOT_ID,
                target,
                name: RegisterName(0x2_0000)
            },
        ]
    );
}

#[test]
fn rep_start_skips_completed_elements() {
    let mut world = World::new();
    world.put(IN, &vp_header(4, 0));
    world.put(
        IN + 16,
        &[RegisterName(10), RegisterName(11), RegisterName(12)],
    );
    for name in 10..13 {
        world
            .handler
            .registers
            .insert((4, 0, name), RegisterValue::from_u64(u64::from(name) * 100));
    }
    let outcome = world.rep(&root(), CallCode::GetVpRegisters, 3, 1);
    // Reps completed counts from element 0, not from rep start.
    assert_eq!(status_of(&outcome), (HvStatus::Success, 3));
    assert_eq!(world.handler.calls.len(), 2);
    assert_eq!(
        world.mem.peek(OUT, 16),
        [0xAA; 16],
        "element 0 is not redone"
    );
    assert_eq!(world.mem.peek_u64(OUT + 16), 1100);
    assert_eq!(world.mem.peek_u64(OUT + 32), 1200);
}

#[test]
fn map_pool_pages_maps_consecutive_pages() {
    let mut world = World::new();
    world.put(
        IN,
        &MapPoolPagesInput {
            target_partition_id: 6,
            target_gpa_base: 0x100,
            map_flags: 0b0111,
            padding: 0,
        },
    );
    let outcome = world.rep(&root(), CallCode::MicaMapPoolPages, 3, 0);
    assert_eq!(status_of(&outcome), (HvStatus::Success, 3));
    let flags = MapGpaFlags::READABLE | MapGpaFlags::WRITABLE | MapGpaFlags::KERNEL_EXECUTABLE;
    let expected: Vec<_> = (0x100..0x103)
        .map(|gpa_page| HandlerCall::MapPoolPage {
            caller: ROOT_ID,
            partition: PartitionId(6),
            gpa_page,
            flags,
        })
        .collect();
    assert_eq!(world.handler.calls, expected);
}

#[test]
fn unmap_gpa_pages_unmaps_consecutive_pages() {
    let mut world = World::new();
    world.put(
        IN,
        &UnmapGpaPagesInput {
            target_partition_id: 6,
            target_gpa_base: 0x200,
            unmap_flags: 0,
            padding: 0,
        },
    );
    let outcome = world.rep(&root(), CallCode::UnmapGpaPages, 2, 0);
    assert_eq!(status_of(&outcome), (HvStatus::Success, 2));
    assert_eq!(
        world.handler.calls,
        [
            HandlerCall::UnmapGpaPage {
                caller: ROOT_ID,
                partition: PartitionId(6),
                gpa_page: 0x200
            },
            HandlerCall::UnmapGpaPage {
                caller: ROOT_ID,
                partition: PartitionId(6),
                gpa_page: 0x201
            },
        ]
    );
}

#[test]
fn start_and_stop_partition_are_fast() {
    let mut world = World::new();
    assert_status(
        &world.fast(&root(), CallCode::MicaStartPartition, 8, 0),
        HvStatus::Success,
    );
    assert_status(
        &world.fast(&root(), CallCode::MicaStopPartition, 8, 0),
        HvStatus::Success,
    );
    assert_eq!(
        world.handler.calls,
        [
            HandlerCall::StartPartition {
                caller: ROOT_ID,
                partition: PartitionId(8)
            },
            HandlerCall::StopPartition {
                caller: ROOT_ID,
                partition: PartitionId(8)
            },
        ]
    );
}

#[test]
fn debug_output_passes_the_text() {
    let test_guest = CallerContext {
        privileges: PartitionPrivileges::CHILD_DEFAULT | PartitionPrivileges::DEBUGGING,
        ..child()
    };
    let mut world = World::new();
    world.put(
        IN,
        &DebugOutputHeader {
            length: 12,
            reserved: 0,
        },
    );
    world.put(IN + 8, b"hello, mica\n");
    assert_status(
        &world.slow(&test_guest, CallCode::MicaDebugOutput),
        HvStatus::Success,
    );
    // Longest accepted, and empty.
    let max = crate::DEBUG_OUTPUT_MAX;
    world.put(
        IN,
        &DebugOutputHeader {
            length: u32::try_from(max).unwrap(),
            reserved: 0,
        },
    );
    world.put(IN + 8, &vec![b'x'; max][..]);
    assert_status(
        &world.slow(&test_guest, CallCode::MicaDebugOutput),
        HvStatus::Success,
    );
    world.put(
        IN,
        &DebugOutputHeader {
            length: 0,
            reserved: 0,
        },
    );
    assert_status(
        &world.slow(&test_guest, CallCode::MicaDebugOutput),
        HvStatus::Success,
    );
    assert_eq!(
        world.handler.calls,
        [
            HandlerCall::DebugOutput {
                caller: CHILD_ID,
                text: b"hello, mica\n".to_vec()
            },
            HandlerCall::DebugOutput {
                caller: CHILD_ID,
                text: vec![b'x'; max]
            },
            HandlerCall::DebugOutput {
                caller: CHILD_ID,
                text: Vec::new()
            },
        ]
    );
}

#[test]
fn time_slice_end_continues_the_rep_call() {
    let mut world = World::new();
    world.put(IN, &vp_header(4, 0));
    let names: Vec<RegisterName> = (0..5).map(RegisterName).collect();
    world.put(IN + 16, &names[..]);
    for name in 0..5 {
        world.handler.registers.insert(
            (4, 0, name),
            RegisterValue {
                low: u64::from(name),
                high: !u64::from(name),
            },
        );
    }
    world.handler.yield_every = Some(2);

    let mut rcx = rep_call(CallCode::GetVpRegisters.raw(), 5, 0);
    let mut starts = Vec::new();
    let outcome = loop {
        starts.push(HypercallControl::from_raw(rcx).unwrap().rep_start);
        let outcome = world.call(&root(), rcx, IN, OUT);
        match outcome.continue_rcx {
            // The exit handler writes RCX and leaves RIP on the instruction; the guest
            // re-executes it.
            Some(next) => {
                assert!(!outcome.advance_rip());
                let (status, done) = status_of(&outcome);
                assert_eq!(status, HvStatus::Success);
                assert_eq!(HypercallControl::from_raw(next).unwrap().rep_start, done);
                rcx = next;
            }
            None => break outcome,
        }
    };
    assert_eq!(starts, [0, 2, 4]);
    assert_eq!(status_of(&outcome), (HvStatus::Success, 5));
    // Each element was handled exactly once, in order, and every output is in place.
    let handled: Vec<u32> = world
        .handler
        .calls
        .iter()
        .map(|call| match call {
            HandlerCall::GetVpRegister { name, .. } => name.0,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(handled, [0, 1, 2, 3, 4]);
    for i in 0..5u64 {
        assert_eq!(world.mem.peek_u64(OUT + 16 * i), i);
        assert_eq!(world.mem.peek_u64(OUT + 16 * i + 8), !i);
    }
}

#[test]
fn at_least_one_rep_per_invocation() {
    // A handler whose time slice is always over still makes progress: one element per
    // invocation, and it is never asked after the last element.
    let mut world = World::new();
    world.put(
        IN,
        &UnmapGpaPagesInput {
            target_partition_id: 6,
            target_gpa_base: 0,
            unmap_flags: 0,
            padding: 0,
        },
    );
    world.handler.yield_every = Some(1);
    let mut rcx = rep_call(CallCode::UnmapGpaPages.raw(), 3, 0);
    let mut invocations = 0;
    loop {
        invocations += 1;
        let outcome = world.call(&root(), rcx, IN, OUT);
        match outcome.continue_rcx {
            Some(next) => rcx = next,
            None => {
                assert_eq!(status_of(&outcome), (HvStatus::Success, 3));
                break;
            }
        }
    }
    assert_eq!(invocations, 3);
    assert_eq!(world.handler.calls.len(), 3);
    assert_eq!(world.handler.slice_checks, 2);
}

#[test]
fn decode_exposes_the_control_fields() {
    let input =
        HypercallInput::decode(rep_call(CallCode::SetVpRegisters.raw(), 7, 2), IN, OUT).unwrap();
    assert_eq!(input.call_code(), CallCode::SetVpRegisters);
    assert!(!input.is_fast());
    assert_eq!(input.control().rep_count, 7);
    assert_eq!(input.control().rep_start, 2);
    let input = HypercallInput::decode(simple_call(CallCode::NotifyLongSpinWait.raw(), true), 1, 2)
        .unwrap();
    assert!(input.is_fast());
    // Decoding is pure and repeatable.
    assert_eq!(
        HypercallInput::decode(simple_call(0x0008, true), 1, 2),
        Ok(input)
    );
}
