//! The Mica-private calls of the root partition's ABI (write partition memory, read console,
//! run partitions, get hypervisor info): success paths, every refusal, and the wire layouts
//! the root's user space relies on.

use core::mem::offset_of;

use proptest::prelude::*;
use zerocopy::IntoBytes;

use super::*;
use crate::abi::{
    BACKEND_SVM, BACKEND_VMX, HostFeatures, HypervisorInfo, MAX_PROTECTED_RANGES, PartitionIdInput,
    ProtectedRange, ReadConsoleHeader, RunExitReason, WriteMemoryHeader, stop_code,
};
use crate::call::{CONSOLE_READ_MAX, CallKind, Convention, PrivilegeRule, WRITE_MEMORY_MAX};
use crate::control::{FAST_BIT, rep_call, result_value, simple_call};
use crate::fake::HandlerCall;
use crate::{BackendCall, Block, GuestMemoryError, HvError, HypercallError, backend_call};

const MISSING_MGMT: PartitionPrivileges = PartitionPrivileges::CREATE_PARTITIONS;

/// The input block of a write-partition-memory call: header then `data`.
fn write_input(partition_id: u64, gpa: u64, data: &[u8]) -> Vec<u8> {
    let mut input = WriteMemoryHeader {
        partition_id,
        gpa,
        length: u32::try_from(data.len()).unwrap(),
        reserved: 0,
    }
    .as_bytes()
    .to_vec();
    input.extend_from_slice(data);
    input
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

fn sample_info() -> HypervisorInfo {
    let mut protected = [ProtectedRange::default(); MAX_PROTECTED_RANGES];
    protected[0] = ProtectedRange {
        start: 0x10_0000,
        end: 0x80_0000,
    };
    protected[1] = ProtectedRange {
        start: 0x4000_0000,
        end: 0x8000_0000,
    };
    HypervisorInfo {
        version_major: 0,
        version_minor: 1,
        build: 1,
        backend: BACKEND_SVM,
        features: (HostFeatures::NESTED_PAGING | HostFeatures::NRIP_SAVE).bits(),
        pool_total_pages: 0x4_0000,
        pool_free_pages: 0x3_FF00,
        partitions: 3,
        max_partitions: 64,
        protected_count: 2,
        reserved: 0,
        protected,
    }
}

// ---------------------------------------------------------------------------------------
// Wire layouts and the call table.

#[test]
fn root_abi_layouts_match_the_documented_offsets() {
    assert_eq!(offset_of!(WriteMemoryHeader, partition_id), 0);
    assert_eq!(offset_of!(WriteMemoryHeader, gpa), 8);
    assert_eq!(offset_of!(WriteMemoryHeader, length), 16);
    assert_eq!(offset_of!(WriteMemoryHeader, reserved), 20);
    assert_eq!(offset_of!(ReadConsoleHeader, length), 0);
    assert_eq!(offset_of!(ReadConsoleHeader, remaining), 4);
    assert_eq!(offset_of!(HypervisorInfo, version_major), 0);
    assert_eq!(offset_of!(HypervisorInfo, version_minor), 2);
    assert_eq!(offset_of!(HypervisorInfo, build), 4);
    assert_eq!(offset_of!(HypervisorInfo, backend), 8);
    assert_eq!(offset_of!(HypervisorInfo, features), 12);
    assert_eq!(offset_of!(HypervisorInfo, pool_total_pages), 16);
    assert_eq!(offset_of!(HypervisorInfo, pool_free_pages), 24);
    assert_eq!(offset_of!(HypervisorInfo, partitions), 32);
    assert_eq!(offset_of!(HypervisorInfo, max_partitions), 36);
    assert_eq!(offset_of!(HypervisorInfo, protected_count), 40);
    assert_eq!(offset_of!(HypervisorInfo, reserved), 44);
    assert_eq!(offset_of!(HypervisorInfo, protected), 48);
    assert_eq!(
        size_of::<HypervisorInfo>(),
        48 + MAX_PROTECTED_RANGES * size_of::<ProtectedRange>()
    );
    // A write fills exactly one page; a console read's output is exactly one page.
    assert_eq!(size_of::<WriteMemoryHeader>() + WRITE_MEMORY_MAX, 4096);
    assert_eq!(size_of::<ReadConsoleHeader>() + CONSOLE_READ_MAX, 4096);
    // Little-endian on the wire.
    let header = ReadConsoleHeader {
        length: 0x0102_0304,
        remaining: 0x0A0B_0C0D,
    };
    assert_eq!(header.as_bytes(), [4, 3, 2, 1, 0xD, 0xC, 0xB, 0xA]);
}

#[test]
fn root_calls_have_their_codes_and_conventions() {
    let mgmt = PrivilegeRule::Requires(PartitionPrivileges::CREATE_PARTITIONS);
    let cases = [
        (
            CallCode::MicaWritePartitionMemory,
            0xC005,
            Convention::SlowOnly,
            24,
            0,
        ),
        (
            CallCode::MicaReadConsole,
            0xC006,
            Convention::SlowOnly,
            8,
            4096,
        ),
        (
            CallCode::MicaRunPartitions,
            0xC007,
            Convention::FastOnly,
            16,
            0,
        ),
        (
            CallCode::MicaGetHypervisorInfo,
            0xC008,
            Convention::SlowOnly,
            0,
            176,
        ),
    ];
    for (code, raw, convention, input, output) in cases {
        assert_eq!(code.raw(), raw);
        assert_eq!(CallCode::from_raw(raw), Some(code));
        assert!(CallCode::ALL.contains(&code));
        let spec = code.spec();
        assert_eq!(spec.convention, convention, "{code:?}");
        assert_eq!(spec.kind, CallKind::Simple, "{code:?}");
        assert_eq!(spec.input_header_size, input, "{code:?}");
        assert_eq!(spec.output_size, output, "{code:?}");
        assert_eq!(spec.privilege, mgmt, "{code:?}");
    }
    // The code after the last one is still unknown.
    assert_eq!(CallCode::from_raw(0xC009), None);
}

#[test]
fn run_exit_reasons_round_trip() {
    let all = [
        (RunExitReason::Interrupted, 0),
        (RunExitReason::Idle, 1),
        (RunExitReason::PartitionStopped, 2),
        (RunExitReason::ConsoleOutput, 3),
    ];
    for (reason, raw) in all {
        assert_eq!(reason as u64, raw);
        assert_eq!(RunExitReason::from_raw(raw), Some(reason));
    }
    for raw in [4, 5, 0x100, u64::from(u32::MAX) + 1, u64::MAX] {
        assert_eq!(RunExitReason::from_raw(raw), None, "{raw:#x}");
    }
}

#[test]
fn stop_codes_and_feature_bits_are_distinct() {
    let codes = [
        stop_code::NONE,
        stop_code::REQUESTED,
        stop_code::EXITED,
        stop_code::TRIPLE_FAULT,
        stop_code::BAD_IO_PORT,
        stop_code::OUTSIDE_MEMORY,
        stop_code::ACCESS_VIOLATION,
        stop_code::INVALID_STATE,
        stop_code::HYPERVISOR_LIMIT,
        stop_code::UNHANDLED_EXIT,
    ];
    // 0 means "not stopped"; the rest are numbered densely in declaration order.
    for (i, &code) in codes.iter().enumerate() {
        assert_eq!(usize::from(code), i);
    }
    let features = [
        HostFeatures::NESTED_PAGING,
        HostFeatures::NRIP_SAVE,
        HostFeatures::FLUSH_BY_ASID,
        HostFeatures::PAGES_1G,
        HostFeatures::XSAVE,
        HostFeatures::AVX,
    ];
    let mut seen = HostFeatures::empty();
    for feature in features {
        assert_eq!(feature.bits().count_ones(), 1);
        assert!(!seen.intersects(feature));
        seen |= feature;
    }
    assert_eq!(seen, HostFeatures::all());
    assert_ne!(BACKEND_SVM, BACKEND_VMX);
    assert_ne!(BACKEND_SVM, 0, "0 must not name a backend");
    assert_ne!(BACKEND_VMX, 0, "0 must not name a backend");
}

// ---------------------------------------------------------------------------------------
// MicaWritePartitionMemory.

#[test]
fn write_partition_memory_hands_the_bytes_to_the_handler() {
    let mut world = World::new();
    world.mem.poke(IN, &write_input(9, 0x1234_5678, b"hello"));
    let outcome = world.slow(&root(), CallCode::MicaWritePartitionMemory);
    assert_status(&outcome, HvStatus::Success);
    assert_eq!(outcome.rax, 0);
    // HV_PARTITION_ID_SELF names the caller (the handler refuses it, not the dispatcher).
    world
        .mem
        .poke(IN, &write_input(PartitionId::SELF.0, 0, b"x"));
    assert_status(
        &world.slow(&root(), CallCode::MicaWritePartitionMemory),
        HvStatus::Success,
    );
    // An empty write is a valid (if pointless) call.
    world.mem.poke(IN, &write_input(9, 0xFFFF_F000, b""));
    assert_status(
        &world.slow(&root(), CallCode::MicaWritePartitionMemory),
        HvStatus::Success,
    );
    assert_eq!(
        world.handler.calls,
        [
            HandlerCall::WritePartitionMemory {
                caller: ROOT_ID,
                partition: PartitionId(9),
                gpa: 0x1234_5678,
                data: b"hello".to_vec(),
            },
            HandlerCall::WritePartitionMemory {
                caller: ROOT_ID,
                partition: ROOT_ID,
                gpa: 0,
                data: b"x".to_vec(),
            },
            HandlerCall::WritePartitionMemory {
                caller: ROOT_ID,
                partition: PartitionId(9),
                gpa: 0xFFFF_F000,
                data: Vec::new(),
            },
        ]
    );
    assert!(world.mem.write_log().is_empty(), "the call has no output");
}

#[test]
fn write_partition_memory_takes_a_full_page_and_reads_only_input() {
    let mut world = World::new();
    let data = pattern(WRITE_MEMORY_MAX);
    world.mem.poke(IN, &write_input(3, 0x20_0000, &data));
    // The output GPA is ignored (no output block): even an unaligned non-RAM value.
    let rcx = simple_call(CallCode::MicaWritePartitionMemory.raw(), false);
    let outcome = world.call(&root(), rcx, IN, 0xDEAD_BEEF);
    assert_status(&outcome, HvStatus::Success);
    assert_eq!(
        world.handler.calls,
        [HandlerCall::WritePartitionMemory {
            caller: ROOT_ID,
            partition: PartitionId(3),
            gpa: 0x20_0000,
            data,
        }]
    );
    assert!(world.mem.write_log().is_empty());

    // Input in read-only memory is fine (the call only reads it).
    let mut world = World::new();
    world.mem.poke(RO + 0x800, &write_input(3, 0, b"ro"));
    let outcome = world.call(&root(), rcx, RO + 0x800, 0);
    assert_status(&outcome, HvStatus::Success);
    assert_eq!(world.handler.calls.len(), 1);
}

#[test]
fn write_partition_memory_needs_the_management_privilege() {
    let mut world = World::new();
    world.mem.poke(IN, &write_input(ROOT_ID.0, 0, b"evil"));
    let outcome = world.slow(&child(), CallCode::MicaWritePartitionMemory);
    assert_status(&outcome, HvStatus::AccessDenied);
    assert_eq!(
        outcome.error,
        Some(HypercallError::AccessDenied {
            missing: MISSING_MGMT
        })
    );
    world.assert_untouched();
}

#[test]
fn write_partition_memory_refuses_long_writes_and_reserved_bits() {
    for length in [WRITE_MEMORY_MAX as u32 + 1, 4096, 0x1_0000, u32::MAX] {
        let mut world = World::new();
        world.put(
            IN,
            &WriteMemoryHeader {
                partition_id: 5,
                gpa: 0,
                length,
                reserved: 0,
            },
        );
        let outcome = world.slow(&root(), CallCode::MicaWritePartitionMemory);
        assert_status(&outcome, HvStatus::InvalidParameter);
        assert_eq!(
            outcome.error,
            Some(HypercallError::InvalidParameter("write too long")),
            "{length:#x}"
        );
        world.assert_untouched();
    }
    for reserved in [1, 0x8000_0000, u32::MAX] {
        let mut world = World::new();
        world.put(
            IN,
            &WriteMemoryHeader {
                partition_id: 5,
                gpa: 0,
                length: 4,
                reserved,
            },
        );
        let outcome = world.slow(&root(), CallCode::MicaWritePartitionMemory);
        assert_eq!(
            outcome.error,
            Some(HypercallError::InvalidParameter("reserved field set"))
        );
        world.assert_untouched();
    }
}

#[test]
fn write_partition_memory_block_must_stay_in_one_readable_page() {
    let rcx = simple_call(CallCode::MicaWritePartitionMemory.raw(), false);
    // The header fits in the page, the data does not.
    let mut world = World::new();
    let at = IN + 0x1000 - 24;
    world.put(
        at,
        &WriteMemoryHeader {
            partition_id: 5,
            gpa: 0,
            length: 8,
            reserved: 0,
        },
    );
    let outcome = world.call(&root(), rcx, at, 0);
    assert_status(&outcome, HvStatus::InvalidAlignment);
    assert_eq!(
        outcome.error,
        Some(HypercallError::CrossesPage {
            block: Block::Input,
            gpa: at,
            len: 32
        })
    );
    world.assert_untouched();

    // Mid-page: the largest length that fits is accepted, one more byte is not.
    let at = IN + 0x800;
    let room = 0x800 - 24;
    let mut world = World::new();
    world.mem.poke(at, &write_input(5, 0, &pattern(room)));
    assert_status(&world.call(&root(), rcx, at, 0), HvStatus::Success);
    let mut world = World::new();
    world.put(
        at,
        &WriteMemoryHeader {
            partition_id: 5,
            gpa: 0,
            length: u32::try_from(room + 1).unwrap(),
            reserved: 0,
        },
    );
    let outcome = world.call(&root(), rcx, at, 0);
    assert_eq!(
        outcome.error,
        Some(HypercallError::CrossesPage {
            block: Block::Input,
            gpa: at,
            len: 0x801
        })
    );
    world.assert_untouched();

    // The header itself must not cross the page either.
    let mut world = World::new();
    let at = IN + 0x1000 - 16;
    let outcome = world.call(&root(), rcx, at, 0);
    assert_eq!(
        outcome.error,
        Some(HypercallError::CrossesPage {
            block: Block::Input,
            gpa: at,
            len: 24
        })
    );
    world.assert_untouched();

    // Misaligned.
    let mut world = World::new();
    let outcome = world.call(&root(), rcx, IN + 4, 0);
    assert_eq!(
        outcome.error,
        Some(HypercallError::Misaligned {
            block: Block::Input,
            gpa: IN + 4
        })
    );
    world.assert_untouched();

    // Data running past the end of RAM that ends mid-page.
    let mut world = World::new();
    let short_ram = 0x30_0000;
    world.mem.add_region(short_ram, 0x40, true);
    world.put(
        short_ram,
        &WriteMemoryHeader {
            partition_id: 5,
            gpa: 0,
            length: 0x40,
            reserved: 0,
        },
    );
    let outcome = world.call(&root(), rcx, short_ram, 0);
    assert_status(&outcome, HvStatus::InvalidAlignment);
    assert_eq!(
        outcome.error,
        Some(HypercallError::Memory {
            block: Block::Input,
            error: GuestMemoryError::NotRam {
                gpa: short_ram,
                len: 0x58
            }
        })
    );
    world.assert_untouched();

    // A header outside RAM.
    let mut world = World::new();
    let outcome = world.call(&root(), rcx, 0x4000_0000, 0);
    assert_status(&outcome, HvStatus::InvalidAlignment);
    world.assert_untouched();
}

#[test]
fn write_partition_memory_is_slow_only_and_simple() {
    let mut world = World::new();
    let outcome = world.fast(&root(), CallCode::MicaWritePartitionMemory, 5, 0);
    assert_status(&outcome, HvStatus::InvalidHypercallInput);
    assert_eq!(
        outcome.error,
        Some(HypercallError::FastNotSupported(
            CallCode::MicaWritePartitionMemory
        ))
    );
    let outcome = world.call(
        &root(),
        rep_call(CallCode::MicaWritePartitionMemory.raw(), 1, 0),
        IN,
        OUT,
    );
    assert_eq!(
        outcome.error,
        Some(HypercallError::RepFieldsOnSimpleCall(
            CallCode::MicaWritePartitionMemory
        ))
    );
    world.assert_untouched();
}

#[test]
fn write_partition_memory_reports_the_handler_status() {
    for error in [
        HvError::AccessDenied,
        HvError::InvalidPartitionId,
        HvError::InvalidParameter,
        HvError::InvalidPartitionState,
    ] {
        let mut world = World::new();
        world.handler.fail_at = Some((0, error));
        world.mem.poke(IN, &write_input(5, 0x1000, b"abc"));
        let outcome = world.slow(&root(), CallCode::MicaWritePartitionMemory);
        assert_status(&outcome, error.status());
        assert_eq!(outcome.error, Some(HypercallError::Handler(error)));
        assert_eq!(world.handler.calls.len(), 1);
        assert!(world.mem.write_log().is_empty());
    }
}

// ---------------------------------------------------------------------------------------
// MicaReadConsole.

fn read_console(world: &mut World, partition: u64) -> HypercallOutcome {
    world.put(
        IN,
        &PartitionIdInput {
            partition_id: partition,
        },
    );
    world.slow(&root(), CallCode::MicaReadConsole)
}

fn console_header(world: &World) -> (u32, u32) {
    let raw = world.mem.peek(OUT, 8);
    (
        u32::from_le_bytes(raw[..4].try_into().unwrap()),
        u32::from_le_bytes(raw[4..].try_into().unwrap()),
    )
}

#[test]
fn read_console_returns_header_then_bytes() {
    let mut world = World::new();
    world.handler.console = b"boot ok\n".to_vec();
    let outcome = read_console(&mut world, 4);
    assert_status(&outcome, HvStatus::Success);
    assert_eq!(console_header(&world), (8, 0));
    assert_eq!(world.mem.peek(OUT + 8, 8), b"boot ok\n");
    // Nothing beyond the bytes returned was written.
    assert_eq!(world.mem.peek(OUT + 16, 8), [0xAA; 8]);
    assert_eq!(
        world.handler.calls,
        [HandlerCall::ReadConsole {
            caller: ROOT_ID,
            partition: PartitionId(4),
            capacity: CONSOLE_READ_MAX,
        }]
    );
    for &(gpa, len) in world.mem.write_log() {
        assert!(gpa >= OUT && gpa + len as u64 <= OUT + 0x1000);
    }
    // Empty now: length 0, remaining 0, and no data bytes.
    let outcome = read_console(&mut world, 4);
    assert_status(&outcome, HvStatus::Success);
    assert_eq!(console_header(&world), (0, 0));
    // The SELF ID names the caller.
    read_console(&mut world, PartitionId::SELF.0);
    assert_eq!(
        world.handler.calls[2],
        HandlerCall::ReadConsole {
            caller: ROOT_ID,
            partition: ROOT_ID,
            capacity: CONSOLE_READ_MAX,
        }
    );
}

#[test]
fn read_console_is_partial_with_the_remaining_count() {
    let mut world = World::new();
    let text = pattern(CONSOLE_READ_MAX + 1000);
    world.handler.console.clone_from(&text);
    assert_status(&read_console(&mut world, 4), HvStatus::Success);
    assert_eq!(console_header(&world), (CONSOLE_READ_MAX as u32, 1000));
    assert_eq!(
        world.mem.peek(OUT + 8, CONSOLE_READ_MAX),
        text[..CONSOLE_READ_MAX]
    );
    assert_status(&read_console(&mut world, 4), HvStatus::Success);
    assert_eq!(console_header(&world), (1000, 0));
    assert_eq!(world.mem.peek(OUT + 8, 1000), text[CONSOLE_READ_MAX..]);
    assert!(world.handler.console.is_empty());
}

#[test]
fn read_console_output_must_be_one_whole_writable_page() {
    // Not page-aligned: 4096 bytes from there cross the page.
    let mut world = World::new();
    world.handler.console = b"keep me".to_vec();
    world.put(IN, &PartitionIdInput { partition_id: 4 });
    let rcx = simple_call(CallCode::MicaReadConsole.raw(), false);
    let outcome = world.call(&root(), rcx, IN, OUT + 8);
    assert_status(&outcome, HvStatus::InvalidAlignment);
    assert_eq!(
        outcome.error,
        Some(HypercallError::CrossesPage {
            block: Block::Output,
            gpa: OUT + 8,
            len: 4096
        })
    );
    world.assert_untouched();
    assert_eq!(world.handler.console, b"keep me", "nothing consumed");

    // Read-only output page: refused before the console is touched.
    let outcome = world.call(&root(), rcx, IN, RO);
    assert_eq!(
        outcome.error,
        Some(HypercallError::Memory {
            block: Block::Output,
            error: GuestMemoryError::NotWritable { gpa: RO, len: 4096 }
        })
    );
    world.assert_untouched();
    assert_eq!(world.handler.console, b"keep me");

    // Output not RAM.
    let outcome = world.call(&root(), rcx, IN, 0x4000_0000);
    assert_status(&outcome, HvStatus::InvalidAlignment);
    // Input and output in the same page overlap.
    let outcome = world.call(&root(), rcx, IN, IN);
    assert_eq!(outcome.error, Some(HypercallError::BlocksOverlap));
    let outcome = world.call(&root(), rcx, OUT + 0xFF8, OUT);
    assert_eq!(outcome.error, Some(HypercallError::BlocksOverlap));
    world.assert_untouched();
    assert_eq!(world.handler.console, b"keep me");
}

#[test]
fn read_console_refusals() {
    // A child may not read consoles (not even its own).
    let mut world = World::new();
    world.handler.console = b"secret".to_vec();
    world.put(
        IN,
        &PartitionIdInput {
            partition_id: CHILD_ID.0,
        },
    );
    let outcome = world.slow(&child(), CallCode::MicaReadConsole);
    assert_status(&outcome, HvStatus::AccessDenied);
    assert_eq!(
        outcome.error,
        Some(HypercallError::AccessDenied {
            missing: MISSING_MGMT
        })
    );
    world.assert_untouched();
    // Slow only.
    let outcome = world.fast(&root(), CallCode::MicaReadConsole, 4, 0);
    assert_eq!(
        outcome.error,
        Some(HypercallError::FastNotSupported(CallCode::MicaReadConsole))
    );
    world.assert_untouched();
    // A handler refusal writes no output.
    world.handler.fail_at = Some((0, HvError::InvalidPartitionId));
    let outcome = read_console(&mut world, 99);
    assert_status(&outcome, HvStatus::InvalidPartitionId);
    assert!(world.mem.write_log().is_empty());
    assert_eq!(world.handler.console, b"secret");
}

// ---------------------------------------------------------------------------------------
// MicaGetHypervisorInfo.

#[test]
fn hypervisor_info_is_written_whole_to_the_output_block() {
    let mut world = World::new();
    world.handler.info = sample_info();
    // No input block: RDX is ignored, whatever it holds.
    let rcx = simple_call(CallCode::MicaGetHypervisorInfo.raw(), false);
    let outcome = world.call(&root(), rcx, 0xDEAD_BEEF, OUT + 0x40);
    assert_status(&outcome, HvStatus::Success);
    assert_eq!(
        world.mem.peek(OUT + 0x40, size_of::<HypervisorInfo>()),
        sample_info().as_bytes()
    );
    assert_eq!(
        world.mem.write_log(),
        [(OUT + 0x40, size_of::<HypervisorInfo>())]
    );
    assert_eq!(
        world.handler.calls,
        [HandlerCall::HypervisorInfo { caller: ROOT_ID }]
    );
    // The last place in a page it fits.
    let at = OUT + 0x1000 - 176;
    assert_status(&world.call(&root(), rcx, 0, at), HvStatus::Success);
    assert_eq!(world.mem.peek(at, 176), sample_info().as_bytes());
}

#[test]
fn hypervisor_info_refusals() {
    let rcx = simple_call(CallCode::MicaGetHypervisorInfo.raw(), false);
    let cases = [
        (
            OUT + 4,
            HypercallError::Misaligned {
                block: Block::Output,
                gpa: OUT + 4,
            },
        ),
        (
            OUT + 0x1000 - 168,
            HypercallError::CrossesPage {
                block: Block::Output,
                gpa: OUT + 0x1000 - 168,
                len: 176,
            },
        ),
        (
            RO,
            HypercallError::Memory {
                block: Block::Output,
                error: GuestMemoryError::NotWritable { gpa: RO, len: 176 },
            },
        ),
        (
            0x4000_0000,
            HypercallError::Memory {
                block: Block::Output,
                error: GuestMemoryError::NotRam {
                    gpa: 0x4000_0000,
                    len: 176,
                },
            },
        ),
    ];
    for (r8, error) in cases {
        let mut world = World::new();
        let outcome = world.call(&root(), rcx, IN, r8);
        assert_status(&outcome, HvStatus::InvalidAlignment);
        assert_eq!(outcome.error, Some(error));
        world.assert_untouched();
    }
    let mut world = World::new();
    let outcome = world.slow(&child(), CallCode::MicaGetHypervisorInfo);
    assert_eq!(
        outcome.error,
        Some(HypercallError::AccessDenied {
            missing: MISSING_MGMT
        })
    );
    let outcome = world.fast(&root(), CallCode::MicaGetHypervisorInfo, 0, 0);
    assert_eq!(
        outcome.error,
        Some(HypercallError::FastNotSupported(
            CallCode::MicaGetHypervisorInfo
        ))
    );
    world.assert_untouched();
    world.handler.fail_at = Some((0, HvError::OperationDenied));
    let outcome = world.slow(&root(), CallCode::MicaGetHypervisorInfo);
    assert_status(&outcome, HvStatus::OperationDenied);
    assert!(world.mem.write_log().is_empty());
}

// ---------------------------------------------------------------------------------------
// MicaRunPartitions.

fn run_rcx() -> u64 {
    simple_call(CallCode::MicaRunPartitions.raw(), true)
}

#[test]
fn backend_call_accepts_a_valid_run_partitions() {
    assert_eq!(
        backend_call(run_rcx(), 0, 0, &root()),
        Some(Ok(BackendCall::RunPartitions))
    );
    // Any caller with the management privilege (the rule is the privilege, not the ID).
    let privileged_child = CallerContext {
        privileges: PartitionPrivileges::ROOT,
        ..child()
    };
    assert_eq!(
        backend_call(run_rcx(), 0, 0, &privileged_child),
        Some(Ok(BackendCall::RunPartitions))
    );
}

#[test]
fn backend_call_refuses_invalid_run_partitions() {
    let expect_failed = |result: Option<Result<BackendCall, HypercallOutcome>>,
                         error: HypercallError| {
        let outcome = result.expect("a backend call").expect_err("refused");
        assert_eq!(outcome.error, Some(error));
        assert_eq!(outcome.rax, result_value(error.status(), 0));
        assert!(outcome.advance_rip());
        assert_status(&outcome, error.status());
    };
    let denied = HypercallError::AccessDenied {
        missing: MISSING_MGMT,
    };
    let reserved = HypercallError::InvalidParameter("reserved field set");
    expect_failed(backend_call(run_rcx(), 0, 0, &child()), denied);
    // Privilege is checked before the reserved registers.
    expect_failed(backend_call(run_rcx(), 1, 1, &child()), denied);
    let no_privileges = CallerContext {
        privileges: PartitionPrivileges::empty(),
        ..root()
    };
    expect_failed(backend_call(run_rcx(), 0, 0, &no_privileges), denied);
    for (rdx, r8) in [(1, 0), (0, 1), (u64::MAX, 0), (0, 1 << 63), (IN, OUT)] {
        expect_failed(backend_call(run_rcx(), rdx, r8, &root()), reserved);
    }
}

#[test]
fn backend_call_leaves_everything_else_to_the_dispatcher() {
    // Other calls, fast or slow.
    for code in CallCode::ALL {
        if code == CallCode::MicaRunPartitions {
            continue;
        }
        for fast in [false, true] {
            assert_eq!(
                backend_call(simple_call(code.raw(), fast), IN, OUT, &root()),
                None,
                "{code:?}"
            );
        }
    }
    // Malformed run-partitions control words: the dispatcher reports the decode error.
    let malformed = [
        (
            simple_call(CallCode::MicaRunPartitions.raw(), false),
            HypercallError::SlowNotSupported(CallCode::MicaRunPartitions),
        ),
        (
            rep_call(CallCode::MicaRunPartitions.raw(), 1, 0) | FAST_BIT,
            HypercallError::RepFieldsOnSimpleCall(CallCode::MicaRunPartitions),
        ),
        (
            run_rcx() | (1 << 60),
            HypercallError::ReservedControlBits { bits: 1 << 60 },
        ),
    ];
    for (rcx, error) in malformed {
        assert_eq!(backend_call(rcx, 0, 0, &root()), None, "{rcx:#x}");
        let mut world = World::new();
        let outcome = world.call(&root(), rcx, 0, 0);
        assert_status(&outcome, HvStatus::InvalidHypercallInput);
        assert_eq!(outcome.error, Some(error));
        world.assert_untouched();
    }
}

#[test]
fn dispatcher_refuses_run_partitions_it_cannot_carry_out() {
    let mut world = World::new();
    let outcome = world.fast(&root(), CallCode::MicaRunPartitions, 0, 0);
    assert_status(&outcome, HvStatus::InvalidHypercallCode);
    assert_eq!(
        outcome.error,
        Some(HypercallError::BackendCall(CallCode::MicaRunPartitions))
    );
    world.assert_untouched();
    // Without the privilege the dispatcher says so first.
    let outcome = world.fast(&child(), CallCode::MicaRunPartitions, 0, 0);
    assert_status(&outcome, HvStatus::AccessDenied);
    world.assert_untouched();
}

// ---------------------------------------------------------------------------------------
// Property: a write-partition-memory header and position in any state never panics, reads
// no more than the page, writes nothing, and reaches the handler exactly when valid.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn write_partition_memory_validates_any_header(
        offset in prop_oneof![Just(0u64), (0u64..0x1000).prop_map(|o| o & !7), 0u64..0x1000],
        length in prop_oneof![0u32..64, 0u32..=WRITE_MEMORY_MAX as u32 + 8, any::<u32>()],
        reserved in prop_oneof![3 => Just(0u32), 1 => any::<u32>()],
        privileged in any::<bool>(),
    ) {
        let mut world = World::new();
        let at = IN + offset;
        if offset % 8 == 0 && offset + 24 <= 0x1000 {
            world.put(at, &WriteMemoryHeader { partition_id: 5, gpa: 0x1000, length, reserved });
        }
        let caller = if privileged { root() } else { child() };
        let rcx = simple_call(CallCode::MicaWritePartitionMemory.raw(), false);
        let outcome = world.call(&caller, rcx, at, OUT);
        let (status, reps) = status_of(&outcome);
        prop_assert_eq!(reps, 0);
        prop_assert!(outcome.advance_rip());
        prop_assert!(world.mem.write_log().is_empty());
        let valid = privileged
            && offset % 8 == 0
            && reserved == 0
            && (length as usize) <= WRITE_MEMORY_MAX
            && offset + 24 + u64::from(length) <= 0x1000;
        prop_assert_eq!(status == HvStatus::Success, valid, "{:?}", outcome);
        prop_assert_eq!(world.handler.calls.len(), usize::from(valid));
        if let Some(HandlerCall::WritePartitionMemory { data, .. }) = world.handler.calls.first() {
            prop_assert_eq!(data.len(), length as usize);
        }
    }
}
