//! Host tests of the manager, the hypercall paths and the exit policies, through
//! `hypercall::handle_hypercall` (via `handle_exit`) with the fakes.

use hypercall::abi::{
    CreatePartitionInput, CreateVpInput, DebugOutputHeader, GetPartitionPropertyInput,
    MapPoolPagesInput, PartitionIdInput, SetPartitionPropertyInput, SetVpRegisterElement,
    UnmapGpaPagesInput, VpRegistersInput,
};
use hypercall::control::{rep_call, simple_call, split_result_value};
use hypercall::{
    CallCode, GuestMemory, GuestMemoryError, HvStatus, MapGpaFlags, PartitionId, RegisterName,
    RegisterValue,
};
use proptest::prelude::*;
use zerocopy::IntoBytes;

use crate::fake::{FakeHostMemory, FakePlatform, FakePool, FakeSecondLevel};
use crate::msr;
use crate::*;

type Manager = PartitionManager<FakePool, FakeSecondLevel, FakeHostMemory>;

const POOL_BASE: u64 = 0x1000_0000;
const INPUT: u64 = 0x1000;
const OUTPUT: u64 = 0x2000;
const RW: u32 = MapGpaFlags::READABLE.bits() | MapGpaFlags::WRITABLE.bits();
const RWX: u32 = RW | MapGpaFlags::KERNEL_EXECUTABLE.bits();

/// 64-bit mode at CPL 0, as a loader leaves a vCPU.
fn long_mode(regs: &mut VcpuRegisters) {
    regs.efer = 0x500 | 1;
    regs.cr0 = 0x8000_0011;
    regs.cr4 = 0x20;
    regs.cs.attributes = 0xA09B;
    regs.ss.attributes = 0xC093;
}

fn manager_with(pool_frames: u64, tables: FakeSecondLevel, limits: Limits) -> Manager {
    let mut m = PartitionManager::new(
        limits,
        FakePool::new(POOL_BASE, pool_frames),
        tables,
        FakeHostMemory::new(),
        &[(0, 0x10_0000)],
    )
    .unwrap();
    let mut regs = VcpuRegisters::reset(0);
    long_mode(&mut regs);
    m.add_root_vcpu(0, regs).unwrap();
    m
}

fn manager(pool_frames: u64) -> Manager {
    manager_with(pool_frames, FakeSecondLevel::new(), Limits::default())
}

fn platform() -> FakePlatform {
    FakePlatform {
        tsc: 1234,
        ..FakePlatform::default()
    }
}

/// Makes a hypercall from `vp` of `id` and returns (status, reps completed, action).
fn call_from(
    m: &mut Manager,
    id: PartitionId,
    vp: u32,
    rcx: u64,
    rdx: u64,
    r8: u64,
) -> (HvStatus, u16, ExitAction) {
    let vcpu = m.vcpu_mut(id, vp).unwrap();
    vcpu.regs.set_gpr(Gpr::Rcx, rcx);
    vcpu.regs.set_gpr(Gpr::Rdx, rdx);
    vcpu.regs.set_gpr(Gpr::R8, r8);
    let action = handle_exit(m, &platform(), id, vp, ExitEvent::Hypercall);
    let rax = m
        .partition(id)
        .unwrap()
        .vcpu(vp)
        .unwrap()
        .regs
        .gpr(Gpr::Rax);
    let (status, reps) = split_result_value(rax);
    (status.expect("known status"), reps, action)
}

/// A slow root hypercall with `input` at INPUT and output at OUTPUT.
fn root_call(m: &mut Manager, rcx: u64, input: &[u8]) -> (HvStatus, u16) {
    m.host_mut().write(INPUT, input);
    let (status, reps, _) = call_from(m, ROOT_PARTITION, 0, rcx, INPUT, OUTPUT);
    (status, reps)
}

fn root_output_u64(m: &Manager) -> u64 {
    u64::from_le_bytes(m.host().peek(OUTPUT, 8).try_into().unwrap())
}

fn create_child(m: &mut Manager) -> PartitionId {
    let (status, _) = root_call(
        m,
        simple_call(CallCode::CreatePartition.raw(), false),
        CreatePartitionInput::default().as_bytes(),
    );
    assert_eq!(status, HvStatus::Success);
    let id = PartitionId(root_output_u64(m));
    let (status, _) = root_call(
        m,
        simple_call(CallCode::InitializePartition.raw(), false),
        PartitionIdInput { partition_id: id.0 }.as_bytes(),
    );
    assert_eq!(status, HvStatus::Success);
    id
}

fn map_pages(
    m: &mut Manager,
    id: PartitionId,
    gpa_page: u64,
    count: u16,
    flags: u32,
) -> (HvStatus, u16) {
    let input = MapPoolPagesInput {
        target_partition_id: id.0,
        target_gpa_base: gpa_page,
        map_flags: flags,
        padding: 0,
    };
    root_call(
        m,
        rep_call(CallCode::MicaMapPoolPages.raw(), count, 0),
        input.as_bytes(),
    )
}

fn unmap_pages(m: &mut Manager, id: PartitionId, gpa_page: u64, count: u16) -> (HvStatus, u16) {
    let input = UnmapGpaPagesInput {
        target_partition_id: id.0,
        target_gpa_base: gpa_page,
        unmap_flags: 0,
        padding: 0,
    };
    root_call(
        m,
        rep_call(CallCode::UnmapGpaPages.raw(), count, 0),
        input.as_bytes(),
    )
}

fn create_vp(m: &mut Manager, id: PartitionId, vp_index: u32) -> HvStatus {
    let input = CreateVpInput {
        partition_id: id.0,
        vp_index,
        ..CreateVpInput::default()
    };
    root_call(
        m,
        simple_call(CallCode::CreateVp.raw(), false),
        input.as_bytes(),
    )
    .0
}

fn set_registers(
    m: &mut Manager,
    id: PartitionId,
    vp: u32,
    regs: &[(u32, RegisterValue)],
) -> (HvStatus, u16) {
    let mut input = VpRegistersInput {
        partition_id: id.0,
        vp_index: vp,
        ..VpRegistersInput::default()
    }
    .as_bytes()
    .to_vec();
    for &(name, value) in regs {
        input.extend_from_slice(
            SetVpRegisterElement {
                name: RegisterName(name),
                reserved: [0; 3],
                value,
            }
            .as_bytes(),
        );
    }
    let count = u16::try_from(regs.len()).unwrap();
    root_call(
        m,
        rep_call(CallCode::SetVpRegisters.raw(), count, 0),
        &input,
    )
}

fn control(m: &mut Manager, code: CallCode, id: PartitionId) -> HvStatus {
    call_from(m, ROOT_PARTITION, 0, simple_call(code.raw(), true), id.0, 0).0
}

/// A running child with `pages` RWX pages at GPA 0, one vCPU in 64-bit mode at RIP 0x1000.
fn running_child(m: &mut Manager, pages: u16) -> PartitionId {
    let id = create_child(m);
    assert_eq!(map_pages(m, id, 0, pages, RWX).0, HvStatus::Success);
    assert_eq!(create_vp(m, id, 0), HvStatus::Success);
    let mut regs = VcpuRegisters::reset(0);
    long_mode(&mut regs);
    let values = [
        (names::RIP, RegisterValue::from_u64(0x1000)),
        (names::EFER, RegisterValue::from_u64(regs.efer)),
        (names::CS, regs.cs.to_value()),
        (names::SS, regs.ss.to_value()),
        (names::CR0, RegisterValue::from_u64(regs.cr0)),
        (names::CR4, RegisterValue::from_u64(regs.cr4)),
    ];
    assert_eq!(set_registers(m, id, 0, &values), (HvStatus::Success, 6));
    assert_eq!(
        control(m, CallCode::MicaStartPartition, id),
        HvStatus::Success
    );
    id
}

fn exit(m: &mut Manager, id: PartitionId, event: ExitEvent) -> ExitAction {
    handle_exit(m, &platform(), id, 0, event)
}

fn io(port: u16, size: u8, write: bool, value: u32) -> ExitEvent {
    ExitEvent::IoPort(IoPortAccess {
        port,
        size,
        write,
        value,
        string: false,
        rep: false,
    })
}

// ---------------------------------------------------------------------------------------
// Hypercall paths.

#[test]
fn root_builds_and_starts_a_child() {
    let mut m = manager(64);
    let id = running_child(&mut m, 16);
    assert_eq!(id, PartitionId(2));
    let child = m.partition(id).unwrap();
    assert_eq!(child.state(), PartitionState::Running);
    assert_eq!(child.parent(), Some(ROOT_PARTITION));
    assert_eq!(child.privileges(), CHILD_PRIVILEGES);
    assert_eq!(child.ram().mapped_pages(), 16);
    let vcpu = child.vcpu(0).unwrap();
    assert_eq!(vcpu.regs.rip, 0x1000);
    assert_eq!(vcpu.regs.cs.attributes, 0xA09B);
    assert_eq!(vcpu.run_state(), RunState::Runnable);
    // The tables mirror the map, and every frame came from the pool zeroed.
    let root = child.second_level_root().unwrap();
    let tree = m.tables().tree(root).unwrap();
    assert_eq!(tree.len(), 16);
    for (gpa, (hpa, perms)) in tree {
        assert!(m.pool().allocated().contains(hpa));
        assert_eq!(
            child.ram().translate_page(gpa / PAGE_SIZE),
            Some(GpaMapping {
                hpa: *hpa,
                perms: *perms
            })
        );
        assert_eq!(*perms, GpaPerms::all());
        assert!(m.host().peek(*hpa, 4096).iter().all(|&b| b == 0));
    }
    assert_eq!(m.pool().free_frames(), 48);
}

#[test]
fn child_management_calls_are_denied() {
    let mut m = manager(16);
    let child = running_child(&mut m, 4);
    // The child's parameter pages are its own RAM (GPA 0x1000, 0x2000).
    let (status, _, action) = call_from(
        &mut m,
        child,
        0,
        simple_call(CallCode::CreatePartition.raw(), false),
        INPUT,
        OUTPUT,
    );
    assert_eq!(status, HvStatus::AccessDenied);
    assert_eq!(action, ExitAction::Resume { advance_rip: true });
    let (status, _, _) = call_from(
        &mut m,
        child,
        0,
        rep_call(CallCode::MicaMapPoolPages.raw(), 1, 0),
        INPUT,
        0,
    );
    assert_eq!(status, HvStatus::AccessDenied);
    let (status, _, _) = call_from(
        &mut m,
        child,
        0,
        simple_call(CallCode::MicaStopPartition.raw(), true),
        ROOT_PARTITION.0,
        0,
    );
    assert_eq!(status, HvStatus::AccessDenied);
    assert_eq!(m.partitions().count(), 2);
    assert_eq!(m.partition(child).unwrap().counters().failed_hypercalls, 3);
    assert_eq!(
        m.partition(child)
            .unwrap()
            .counters()
            .exits(ExitKind::Hypercall),
        3
    );
}

#[test]
fn a_child_cannot_manage_a_sibling_even_with_ids() {
    let mut m = manager(16);
    let a = running_child(&mut m, 2);
    let b = running_child(&mut m, 2);
    // Even if a child somehow had management privileges, it is not b's parent.
    let caller = hypercall::CallerContext {
        partition_id: a,
        vp_index: 0,
        privileges: hypercall::PartitionPrivileges::ROOT,
    };
    use hypercall::HypercallHandler;
    assert_eq!(
        m.stop_partition(&caller, b),
        Err(hypercall::HvError::AccessDenied)
    );
    assert_eq!(
        m.unmap_gpa_page(&caller, b, 0),
        Err(hypercall::HvError::AccessDenied)
    );
    assert_eq!(
        m.create_partition(
            &caller,
            &hypercall::CreatePartitionParams {
                flags: 0,
                proximity_domain_info: 0,
                compatibility_version: 0,
                disabled_processor_features: [0; 2],
                disabled_processor_xsave_features: 0,
            }
        ),
        Err(hypercall::HvError::PartitionTooDeep)
    );
}

#[test]
fn unmapping_and_deleting_return_pages_to_the_pool() {
    let mut m = manager(32);
    let id = running_child(&mut m, 8);
    assert_eq!(m.pool().free_frames(), 24);
    // Not while running: the frames could still be in another CPU's TLB.
    assert_eq!(
        unmap_pages(&mut m, id, 0, 2).0,
        HvStatus::InvalidPartitionState
    );
    let delete = |m: &mut Manager| {
        root_call(
            m,
            simple_call(CallCode::DeletePartition.raw(), false),
            PartitionIdInput { partition_id: id.0 }.as_bytes(),
        )
        .0
    };
    assert_eq!(delete(&mut m), HvStatus::InvalidPartitionState);
    assert_eq!(
        control(&mut m, CallCode::MicaStopPartition, id),
        HvStatus::Success
    );
    assert_eq!(
        m.partition(id).unwrap().stop_reason(),
        Some(StopReason::Requested)
    );
    assert_eq!(unmap_pages(&mut m, id, 0, 2), (HvStatus::Success, 2));
    assert_eq!(m.pool().free_frames(), 26);
    assert!(m.take_tlb_flush(id));
    assert!(!m.take_tlb_flush(id));
    // Unmapping an unmapped page fails at that element.
    assert_eq!(
        unmap_pages(&mut m, id, 1, 2),
        (HvStatus::InvalidParameter, 0)
    );
    let root = m.partition(id).unwrap().second_level_root().unwrap();
    assert_eq!(delete(&mut m), HvStatus::Success);
    assert!(m.partition(id).is_none());
    assert_eq!(m.pool().free_frames(), 32);
    assert!(m.pool().allocated().is_empty());
    assert_eq!(m.tables().destroyed(), &[root]);
    // The ID is gone for good.
    assert_eq!(
        control(&mut m, CallCode::MicaStartPartition, id),
        HvStatus::InvalidPartitionId
    );
}

#[test]
fn pool_exhaustion_is_insufficient_memory() {
    let mut m = manager(3);
    let id = create_child(&mut m);
    assert_eq!(
        map_pages(&mut m, id, 0x10, 5, RW),
        (HvStatus::InsufficientMemory, 3)
    );
    assert_eq!(m.partition(id).unwrap().ram().mapped_pages(), 3);
    assert_eq!(m.pool().free_frames(), 0);
}

#[test]
fn second_level_exhaustion_is_insufficient_memory() {
    let mut m = manager_with(8, FakeSecondLevel::with_budget(1), Limits::default());
    create_child(&mut m);
    let (status, _) = root_call(
        &mut m,
        simple_call(CallCode::CreatePartition.raw(), false),
        CreatePartitionInput::default().as_bytes(),
    );
    assert_eq!(status, HvStatus::Success);
    let second = root_output_u64(&m);
    let (status, _) = root_call(
        &mut m,
        simple_call(CallCode::InitializePartition.raw(), false),
        PartitionIdInput {
            partition_id: second,
        }
        .as_bytes(),
    );
    assert_eq!(status, HvStatus::InsufficientMemory);
    assert_eq!(
        m.partition(PartitionId(second)).unwrap().state(),
        PartitionState::Created
    );
}

#[test]
fn limits_are_typed_errors() {
    let limits = Limits {
        max_partitions: 2,
        max_vcpus: 2,
        max_pages: 4,
        console_capacity: 8,
    };
    let mut m = manager_with(16, FakeSecondLevel::new(), limits);
    let id = create_child(&mut m);
    let (status, _) = root_call(
        &mut m,
        simple_call(CallCode::CreatePartition.raw(), false),
        CreatePartitionInput::default().as_bytes(),
    );
    assert_eq!(status, HvStatus::NoResources);
    assert_eq!(create_vp(&mut m, id, 2), HvStatus::InvalidVpIndex);
    assert_eq!(create_vp(&mut m, id, 1), HvStatus::Success);
    assert_eq!(create_vp(&mut m, id, 1), HvStatus::InvalidVpIndex);
    assert_eq!(map_pages(&mut m, id, 0, 6, RW), (HvStatus::NoResources, 4));
    assert_eq!(
        map_pages(&mut m, id, MAX_GPA_PAGES, 1, RW).0,
        HvStatus::InvalidParameter
    );
    assert_eq!(m.pool().free_frames(), 12);
}

#[test]
fn bad_map_requests_are_rejected() {
    let mut m = manager(16);
    let id = create_child(&mut m);
    let write_only = MapGpaFlags::WRITABLE.bits();
    assert_eq!(
        map_pages(&mut m, id, 0, 1, write_only).0,
        HvStatus::InvalidParameter
    );
    assert_eq!(map_pages(&mut m, id, 0, 1, RW), (HvStatus::Success, 1));
    assert_eq!(
        map_pages(&mut m, id, 0, 1, RW).0,
        HvStatus::InvalidParameter
    );
    assert_eq!(m.pool().free_frames(), 15, "a failed map returns its frame");
    assert_eq!(
        map_pages(&mut m, PartitionId(99), 0, 1, RW).0,
        HvStatus::InvalidPartitionId
    );
    assert_eq!(
        map_pages(&mut m, ROOT_PARTITION, 0, 1, RW).0,
        HvStatus::AccessDenied
    );
}

#[test]
fn lifecycle_errors() {
    let mut m = manager(16);
    let (status, _) = root_call(
        &mut m,
        simple_call(CallCode::CreatePartition.raw(), false),
        CreatePartitionInput::default().as_bytes(),
    );
    assert_eq!(status, HvStatus::Success);
    let id = PartitionId(root_output_u64(&m));
    // Not initialized: no memory, no VPs, no start.
    assert_eq!(
        map_pages(&mut m, id, 0, 1, RW).0,
        HvStatus::InvalidPartitionState
    );
    assert_eq!(create_vp(&mut m, id, 0), HvStatus::InvalidPartitionState);
    let init = |m: &mut Manager| {
        root_call(
            m,
            simple_call(CallCode::InitializePartition.raw(), false),
            PartitionIdInput { partition_id: id.0 }.as_bytes(),
        )
        .0
    };
    assert_eq!(init(&mut m), HvStatus::Success);
    assert_eq!(init(&mut m), HvStatus::InvalidPartitionState);
    // No vCPU yet.
    assert_eq!(
        control(&mut m, CallCode::MicaStartPartition, id),
        HvStatus::InvalidPartitionState
    );
    assert_eq!(
        control(&mut m, CallCode::MicaStopPartition, id),
        HvStatus::InvalidPartitionState
    );
    assert_eq!(create_vp(&mut m, id, 0), HvStatus::Success);
    assert_eq!(
        control(&mut m, CallCode::MicaStartPartition, id),
        HvStatus::Success
    );
    assert_eq!(
        control(&mut m, CallCode::MicaStartPartition, id),
        HvStatus::InvalidPartitionState
    );
    // Running VPs' registers live in the hardware: no access from the root.
    assert_eq!(
        set_registers(&mut m, id, 0, &[(names::RIP, RegisterValue::from_u64(0))]).0,
        HvStatus::InvalidPartitionState
    );
    assert_eq!(
        control(&mut m, CallCode::MicaStopPartition, id),
        HvStatus::Success
    );
    let finalize = |m: &mut Manager| {
        root_call(
            m,
            simple_call(CallCode::FinalizePartition.raw(), false),
            PartitionIdInput { partition_id: id.0 }.as_bytes(),
        )
        .0
    };
    assert_eq!(finalize(&mut m), HvStatus::Success);
    assert_eq!(m.partition(id).unwrap().state(), PartitionState::Finalized);
    assert_eq!(
        control(&mut m, CallCode::MicaStartPartition, id),
        HvStatus::InvalidPartitionState
    );
}

#[test]
fn registers_round_trip_through_get_vp_registers() {
    let mut m = manager(16);
    let id = create_child(&mut m);
    assert_eq!(create_vp(&mut m, id, 0), HvStatus::Success);
    let gdtr = TableRegister {
        base: 0x5000,
        limit: 0x17,
    };
    assert_eq!(
        set_registers(
            &mut m,
            id,
            0,
            &[
                (names::RSP_FOR_TEST, RegisterValue::from_u64(0x8000)),
                (names::GDTR, gdtr.to_value()),
                (0x1234_5678, RegisterValue::from_u64(1)),
            ]
        ),
        (HvStatus::InvalidParameter, 2)
    );
    let mut input = VpRegistersInput {
        partition_id: id.0,
        vp_index: 0,
        ..VpRegistersInput::default()
    }
    .as_bytes()
    .to_vec();
    for name in [names::RSP_FOR_TEST, names::GDTR, names::VP_INDEX] {
        input.extend_from_slice(&name.to_le_bytes());
    }
    let (status, reps) = root_call(
        &mut m,
        rep_call(CallCode::GetVpRegisters.raw(), 3, 0),
        &input,
    );
    assert_eq!((status, reps), (HvStatus::Success, 3));
    let out = m.host().peek(OUTPUT, 48);
    assert_eq!(u64::from_le_bytes(out[0..8].try_into().unwrap()), 0x8000);
    assert_eq!(
        u64::from_le_bytes(out[16..24].try_into().unwrap()),
        0x17 << 48
    );
    assert_eq!(u64::from_le_bytes(out[24..32].try_into().unwrap()), 0x5000);
    assert_eq!(u64::from_le_bytes(out[32..40].try_into().unwrap()), 0);
    // A VP that does not exist.
    let mut input = VpRegistersInput {
        partition_id: id.0,
        vp_index: 7,
        ..VpRegistersInput::default()
    }
    .as_bytes()
    .to_vec();
    input.extend_from_slice(&names::RIP.to_le_bytes());
    let (status, _) = root_call(
        &mut m,
        rep_call(CallCode::GetVpRegisters.raw(), 1, 0),
        &input,
    );
    assert_eq!(status, HvStatus::InvalidVpIndex);
}

/// RSP's TLFS name, for the tests above.
mod names {
    pub use crate::names::*;
    pub const RSP_FOR_TEST: u32 = RAX + 4;
}

#[test]
fn properties_and_debug_output() {
    let mut m = manager(16);
    let id = create_child(&mut m);
    map_pages(&mut m, id, 0, 3, RW);
    let get = |m: &mut Manager, code: u32| {
        let input = GetPartitionPropertyInput {
            partition_id: id.0,
            property_code: code,
            reserved: 0,
        };
        let (status, _) = root_call(
            m,
            simple_call(CallCode::GetPartitionProperty.raw(), false),
            input.as_bytes(),
        );
        (status, root_output_u64(m))
    };
    assert_eq!(
        get(&mut m, properties::MICA_MAPPED_PAGES),
        (HvStatus::Success, 3)
    );
    assert_eq!(get(&mut m, properties::MICA_STATE), (HvStatus::Success, 1));
    assert_eq!(
        get(&mut m, properties::PRIVILEGE_FLAGS),
        (HvStatus::Success, CHILD_PRIVILEGES.bits())
    );
    assert_eq!(get(&mut m, 0x7777).0, HvStatus::UnknownProperty);
    let set = |m: &mut Manager, code: u32, value: u64| {
        let input = SetPartitionPropertyInput {
            partition_id: id.0,
            property_code: code,
            reserved: 0,
            property_value: value,
        };
        root_call(
            m,
            simple_call(CallCode::SetPartitionProperty.raw(), false),
            input.as_bytes(),
        )
        .0
    };
    assert_eq!(
        set(&mut m, properties::MICA_MAX_PAGES, 2),
        HvStatus::PropertyValueOutOfRange
    );
    assert_eq!(
        set(&mut m, properties::MICA_MAX_PAGES, 4),
        HvStatus::Success
    );
    assert_eq!(
        set(&mut m, properties::MICA_STATE, 0),
        HvStatus::InvalidParameter
    );
    assert_eq!(map_pages(&mut m, id, 8, 2, RW), (HvStatus::NoResources, 1));

    // The root's debug output goes to the root's console.
    let mut input = DebugOutputHeader {
        length: 5,
        reserved: 0,
    }
    .as_bytes()
    .to_vec();
    input.extend_from_slice(b"hello");
    let (status, _) = root_call(
        &mut m,
        simple_call(CallCode::MicaDebugOutput.raw(), false),
        &input,
    );
    assert_eq!(status, HvStatus::Success);
    assert_eq!(m.drain_console(ROOT_PARTITION).unwrap(), b"hello");
    assert!(m.drain_console(id).unwrap().is_empty());
}

#[test]
fn a_child_debug_output_reaches_its_own_console() {
    let mut m = manager(16);
    let child = running_child(&mut m, 4);
    let mut input = DebugOutputHeader {
        length: 2,
        reserved: 0,
    }
    .as_bytes()
    .to_vec();
    input.extend_from_slice(b"ok");
    m.guest_memory(child).unwrap().write(INPUT, &input).unwrap();
    let (status, _, _) = call_from(
        &mut m,
        child,
        0,
        simple_call(CallCode::MicaDebugOutput.raw(), false),
        INPUT,
        0,
    );
    assert_eq!(status, HvStatus::Success);
    assert_eq!(m.drain_console(child).unwrap(), b"ok");
    assert!(m.drain_console(ROOT_PARTITION).unwrap().is_empty());
    // A parameter page outside the child's RAM.
    let (status, _, _) = call_from(
        &mut m,
        child,
        0,
        simple_call(CallCode::MicaDebugOutput.raw(), false),
        0x40_0000,
        0,
    );
    assert_eq!(status, HvStatus::InvalidAlignment);
}

#[test]
fn hypercalls_need_64_bit_mode_at_cpl0() {
    let mut m = manager(16);
    let child = running_child(&mut m, 2);
    m.vcpu_mut(child, 0).unwrap().regs.ss.attributes = 0xC0F3; // DPL 3
    let action = exit(&mut m, child, ExitEvent::Hypercall);
    assert_eq!(
        action,
        ExitAction::Inject {
            vector: VECTOR_UD,
            error_code: None
        }
    );
    let regs = &mut m.vcpu_mut(child, 0).unwrap().regs;
    regs.ss.attributes = 0xC093;
    regs.efer = 0;
    assert!(matches!(
        exit(&mut m, child, ExitEvent::Hypercall),
        ExitAction::Inject { vector: 6, .. }
    ));
}

// ---------------------------------------------------------------------------------------
// Exit policies.

#[test]
fn debug_console_and_exit_ports() {
    let mut m = manager(16);
    let child = running_child(&mut m, 2);
    for &b in b"hi" {
        assert_eq!(
            exit(
                &mut m,
                child,
                io(DEBUG_CONSOLE_PORT, 1, true, u32::from(b) | 0xFF00)
            ),
            ExitAction::Resume { advance_rip: true }
        );
    }
    assert_eq!(m.partition(child).unwrap().console().contents(), b"hi");
    // NUL is a no-op write: advanced past, nothing recorded.
    assert_eq!(
        exit(&mut m, child, io(DEBUG_CONSOLE_PORT, 1, true, 0)),
        ExitAction::Resume { advance_rip: true }
    );
    assert_eq!(m.partition(child).unwrap().console().contents(), b"hi");
    m.vcpu_mut(child, 0)
        .unwrap()
        .regs
        .set_gpr(Gpr::Rax, 0x1111_2222_3333_4444);
    exit(&mut m, child, io(DEBUG_CONSOLE_PORT, 1, false, 0));
    assert_eq!(
        m.partition(child)
            .unwrap()
            .vcpu(0)
            .unwrap()
            .regs
            .gpr(Gpr::Rax),
        0x1111_2222_3333_44E9
    );
    exit(&mut m, child, io(DEBUG_CONSOLE_PORT, 4, false, 0));
    assert_eq!(
        m.partition(child)
            .unwrap()
            .vcpu(0)
            .unwrap()
            .regs
            .gpr(Gpr::Rax),
        0xE9
    );
    let action = exit(&mut m, child, io(EXIT_PORT, 4, true, 0x31));
    assert_eq!(
        action,
        ExitAction::StopPartition {
            reason: StopReason::Exited(0x31)
        }
    );
    let p = m.partition(child).unwrap();
    assert_eq!(p.state(), PartitionState::Stopped);
    assert_eq!(p.stop_reason(), Some(StopReason::Exited(0x31)));
    assert_eq!(p.vcpu(0).unwrap().run_state(), RunState::Stopped);
    assert_eq!(p.counters().exits(ExitKind::IoPort), 6);
    // A later exit of the stopped partition (another CPU) only reports the stop.
    assert_eq!(
        exit(&mut m, child, ExitEvent::Halt),
        ExitAction::StopPartition {
            reason: StopReason::Exited(0x31)
        }
    );
}

#[test]
fn other_ports_and_string_io_stop_the_partition() {
    for event in [
        io(0x3F8, 1, true, b'x'.into()),
        io(0x60, 1, false, 0),
        io(EXIT_PORT, 4, false, 0),
        ExitEvent::IoPort(IoPortAccess {
            port: DEBUG_CONSOLE_PORT,
            size: 1,
            write: true,
            value: 0,
            string: true,
            rep: true,
        }),
        io(DEBUG_CONSOLE_PORT, 3, true, 0),
    ] {
        let mut m = manager(8);
        let child = running_child(&mut m, 2);
        let ExitEvent::IoPort(access) = event else {
            unreachable!()
        };
        let reason = StopReason::BadIoPort {
            port: access.port,
            size: access.size,
            write: access.write,
        };
        assert_eq!(
            exit(&mut m, child, event),
            ExitAction::StopPartition { reason }
        );
        assert_eq!(m.partition(child).unwrap().stop_reason(), Some(reason));
        assert!(m.partition(child).unwrap().console().contents().is_empty());
    }
}

#[test]
fn memory_faults() {
    let mut m = manager(16);
    let child = create_child(&mut m);
    map_pages(&mut m, child, 0, 1, RWX);
    map_pages(&mut m, child, 1, 1, MapGpaFlags::READABLE.bits());
    create_vp(&mut m, child, 0);
    control(&mut m, CallCode::MicaStartPartition, child);
    let fault = |gpa, access| ExitEvent::MemoryFault { gpa, access };
    assert_eq!(
        exit(&mut m, child, fault(0x10, MemoryAccess::Write)),
        ExitAction::Resume { advance_rip: false }
    );
    let action = exit(&mut m, child, fault(0x1008, MemoryAccess::Write));
    let reason = StopReason::AccessViolation {
        gpa: 0x1008,
        access: MemoryAccess::Write,
    };
    assert_eq!(action, ExitAction::StopPartition { reason });
    assert_eq!(
        control(&mut m, CallCode::MicaStartPartition, child),
        HvStatus::Success
    );
    let action = exit(&mut m, child, fault(0x1_0000_0000, MemoryAccess::Execute));
    let reason = StopReason::OutsideMemory {
        gpa: 0x1_0000_0000,
        access: MemoryAccess::Execute,
    };
    assert_eq!(action, ExitAction::StopPartition { reason });
    assert_eq!(m.partition(child).unwrap().stop_reason(), Some(reason));
}

#[test]
fn inline_hypercall_matches_the_generic_path() {
    let mut m = manager(16);
    let child = running_child(&mut m, 2);
    let rcx = 0x0001_0008;
    let inline = crate::inline_hypercall(rcx, true).expect("fast NotifyLongSpinWait is inline");
    m.vcpu_mut(child, 0).unwrap().regs.set_gpr(Gpr::Rcx, rcx);
    assert_eq!(
        exit(&mut m, child, ExitEvent::Hypercall),
        ExitAction::Resume { advance_rip: true }
    );
    let rax = m
        .partition(child)
        .unwrap()
        .vcpu(0)
        .unwrap()
        .regs
        .gpr(Gpr::Rax);
    assert_eq!(inline, rax);
    // Anything else goes the generic way: slow form, rep fields, other codes, not CPL 0.
    for other in [
        0x0000_0008,
        0x0001_0008 | 1 << 32,
        0x0001_0009,
        0x0001_0008 | 1 << 31,
    ] {
        assert_eq!(crate::inline_hypercall(other, true), None, "{other:#x}");
    }
    assert_eq!(crate::inline_hypercall(rcx, false), None);
}

#[test]
fn double_fault_is_reinjected_unless_the_idt_cannot_hold_it() {
    let mut m = manager(16);
    let a = running_child(&mut m, 2);
    let b = running_child(&mut m, 2);
    let df = ExitEvent::Exception {
        vector: 8,
        error_code: Some(0),
    };
    m.vcpu_mut(a, 0).unwrap().regs.idtr.limit = 8 * 16 + 15;
    assert_eq!(
        exit(&mut m, a, df),
        ExitAction::Inject {
            vector: 8,
            error_code: Some(0)
        }
    );
    // One byte short of the #DF gate: delivery must fail, so it is the triple fault to come.
    m.vcpu_mut(b, 0).unwrap().regs.idtr.limit = 8 * 16 + 14;
    assert_eq!(
        exit(&mut m, b, df),
        ExitAction::StopPartition {
            reason: StopReason::TripleFault
        }
    );
    assert_eq!(m.partition(a).unwrap().state(), PartitionState::Running);
}

#[test]
fn halt_wake_and_other_exits() {
    let mut m = manager(16);
    let a = running_child(&mut m, 2);
    let b = running_child(&mut m, 2);
    assert_eq!(exit(&mut m, a, ExitEvent::Halt), ExitAction::Halt);
    assert_eq!(
        m.partition(a).unwrap().vcpu(0).unwrap().run_state(),
        RunState::Halted
    );
    assert!(m.wake_vcpu(a, 0));
    assert!(!m.wake_vcpu(a, 0), "only a halted vCPU wakes");
    assert_eq!(
        m.partition(a).unwrap().vcpu(0).unwrap().run_state(),
        RunState::Runnable
    );
    assert_eq!(exit(&mut m, a, ExitEvent::TimerPreempt), ExitAction::Yield);
    let retry = ExitAction::Resume { advance_rip: false };
    assert_eq!(exit(&mut m, a, ExitEvent::ExternalInterrupt), retry);
    assert_eq!(exit(&mut m, a, ExitEvent::Nmi), retry);
    assert_eq!(
        exit(
            &mut m,
            a,
            ExitEvent::Exception {
                vector: 14,
                error_code: Some(2)
            }
        ),
        ExitAction::Inject {
            vector: 14,
            error_code: Some(2)
        }
    );
    // A triple fault stops that partition only.
    assert_eq!(
        exit(&mut m, a, ExitEvent::TripleFault),
        ExitAction::StopPartition {
            reason: StopReason::TripleFault
        }
    );
    assert_eq!(m.partition(b).unwrap().state(), PartitionState::Running);
    assert_eq!(
        m.partition(ROOT_PARTITION).unwrap().state(),
        PartitionState::Running
    );
    assert_eq!(
        exit(&mut m, b, ExitEvent::Unknown { code: 0x7F }),
        ExitAction::StopPartition {
            reason: StopReason::UnhandledExit { code: 0x7F }
        }
    );
    control(&mut m, CallCode::MicaStartPartition, b);
    assert_eq!(
        exit(&mut m, b, ExitEvent::InvalidState),
        ExitAction::StopPartition {
            reason: StopReason::InvalidState
        }
    );
    let counters = m.partition(a).unwrap().counters();
    assert_eq!(counters.exits(ExitKind::Halt), 1);
    assert_eq!(counters.exits(ExitKind::TripleFault), 1);
    assert_eq!(counters.total_exits(), 6);
    // Unknown vCPUs and partitions (backend bugs) do not panic.
    assert!(matches!(
        handle_exit(&mut m, &platform(), a, 9, ExitEvent::Halt),
        ExitAction::StopPartition { .. }
    ));
    assert!(matches!(
        handle_exit(&mut m, &platform(), PartitionId(77), 0, ExitEvent::Halt),
        ExitAction::StopPartition { .. }
    ));
}

#[test]
fn cpuid_exit_fills_the_registers() {
    let mut m = manager(16);
    let child = running_child(&mut m, 2);
    assert_eq!(
        exit(
            &mut m,
            child,
            ExitEvent::Cpuid {
                leaf: 0x4000_0000,
                subleaf: 0
            }
        ),
        ExitAction::Resume { advance_rip: true }
    );
    let regs = m.partition(child).unwrap().vcpu(0).unwrap().regs;
    assert_eq!(regs.gpr(Gpr::Rax), 0x4000_0005);
    let mut vendor = Vec::new();
    for gpr in [Gpr::Rbx, Gpr::Rcx, Gpr::Rdx] {
        vendor.extend_from_slice(&(regs.gpr(gpr) as u32).to_le_bytes());
    }
    assert_eq!(vendor, b"Microsoft Hv");
    exit(
        &mut m,
        child,
        ExitEvent::Cpuid {
            leaf: 1,
            subleaf: 0,
        },
    );
    let ecx = m
        .partition(child)
        .unwrap()
        .vcpu(0)
        .unwrap()
        .regs
        .gpr(Gpr::Rcx);
    assert_eq!(ecx & (1 << 5), 0);
    assert_ne!(ecx & (1 << 31), 0);
}

#[test]
fn msr_exits() {
    let mut m = manager(16);
    let child = running_child(&mut m, 4);
    let advance = ExitAction::Resume { advance_rip: true };
    assert_eq!(
        exit(
            &mut m,
            child,
            ExitEvent::MsrWrite {
                msr: msr::IA32_LSTAR,
                value: 0xFFFF_8000_0000_2000
            }
        ),
        advance
    );
    assert_eq!(
        exit(
            &mut m,
            child,
            ExitEvent::MsrRead {
                msr: msr::IA32_LSTAR
            }
        ),
        advance
    );
    let regs = m.partition(child).unwrap().vcpu(0).unwrap().regs;
    assert_eq!(regs.gpr(Gpr::Rax), 0x0000_2000);
    assert_eq!(regs.gpr(Gpr::Rdx), 0xFFFF_8000);
    assert_eq!(regs.lstar, 0xFFFF_8000_0000_2000);
    let gp = ExitAction::Inject {
        vector: VECTOR_GP,
        error_code: Some(0),
    };
    assert_eq!(
        exit(&mut m, child, ExitEvent::MsrRead { msr: 0xC001_0114 }),
        gp
    );
    assert_eq!(
        exit(
            &mut m,
            child,
            ExitEvent::MsrWrite {
                msr: msr::IA32_EFER,
                value: 1 << 12
            }
        ),
        gp
    );
    assert_eq!(m.partition(child).unwrap().counters().gp_injected, 2);
    assert_eq!(
        exit(&mut m, child, ExitEvent::MsrRead { msr: msr::IA32_TSC }),
        advance
    );
    assert_eq!(
        m.partition(child)
            .unwrap()
            .vcpu(0)
            .unwrap()
            .regs
            .gpr(Gpr::Rax),
        1234
    );

    // Enabling the hypercall page writes VMMCALL; RET into the guest page.
    exit(
        &mut m,
        child,
        ExitEvent::MsrWrite {
            msr: msr::HV_X64_MSR_GUEST_OS_ID,
            value: 0x8100_0000_0000_0001,
        },
    );
    assert_eq!(
        exit(
            &mut m,
            child,
            ExitEvent::MsrWrite {
                msr: msr::HV_X64_MSR_HYPERCALL,
                value: 0x3001
            }
        ),
        advance
    );
    let mut page = [0u8; 4];
    m.guest_memory(child)
        .unwrap()
        .read(0x3000, &mut page)
        .unwrap();
    assert_eq!(page, [0x0F, 0x01, 0xD9, 0xC3]);
    // Outside the child's RAM: #GP and the MSR keeps its value.
    assert_eq!(
        exit(
            &mut m,
            child,
            ExitEvent::MsrWrite {
                msr: msr::HV_X64_MSR_HYPERCALL,
                value: 0x9_0000_1001
            }
        ),
        gp
    );
    assert_eq!(
        m.partition(child).unwrap().synthetic_msrs().hypercall,
        0x3001
    );
}

// ---------------------------------------------------------------------------------------
// Memory views.

#[test]
fn partition_memory_crosses_pages_and_respects_the_map() {
    let mut m = manager(16);
    let child = create_child(&mut m);
    map_pages(&mut m, child, 0, 2, RW);
    map_pages(&mut m, child, 2, 1, MapGpaFlags::READABLE.bits());
    let data: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    let mut mem = m.guest_memory(child).unwrap();
    mem.write(100, &data).unwrap();
    let mut back = vec![0; 5000];
    mem.read(100, &mut back).unwrap();
    assert_eq!(back, data);
    assert_eq!(
        mem.write(0x2000 - 4, &[1; 8]),
        Err(GuestMemoryError::NotWritable {
            gpa: 0x1FFC,
            len: 8
        })
    );
    let mut buf = [0u8; 8];
    assert_eq!(
        mem.read(0x3000 - 4, &mut buf),
        Err(GuestMemoryError::NotRam {
            gpa: 0x2FFC,
            len: 8
        })
    );
    assert!(mem.read(u64::MAX - 2, &mut buf).is_err());
    assert!(mem.check(u64::MAX, 2, hypercall::Access::Read).is_err());
    // Nothing was written by the failed write: page 2 still reads as zero.
    let mut page2 = [0xFFu8; 4];
    mem.read(0x2000, &mut page2).unwrap();
    assert_eq!(page2, [0; 4]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// With random maps for two children drawn from one pool, no GPA of one child reaches
    /// a frame of the other, and writes through one child's memory never change the other's.
    #[test]
    fn children_are_isolated(
        pages_a in proptest::collection::btree_set(0u64..64, 1..12),
        pages_b in proptest::collection::btree_set(0u64..64, 1..12),
        probes in proptest::collection::vec((any::<bool>(), 0u64..0x5_0000, any::<u8>()), 1..40),
    ) {
        let mut m = manager(32);
        let a = create_child(&mut m);
        let b = create_child(&mut m);
        for &p in &pages_a {
            prop_assert_eq!(map_pages(&mut m, a, p, 1, RW).0, HvStatus::Success);
        }
        for &p in &pages_b {
            prop_assert_eq!(map_pages(&mut m, b, p, 1, RW).0, HvStatus::Success);
        }
        let frames = |m: &Manager, id| -> std::collections::BTreeSet<u64> {
            match m.partition(id).unwrap().ram() {
                GuestRam::Mapped(map) => map.values().map(|g| g.hpa).collect(),
                GuestRam::Identity(_) => unreachable!(),
            }
        };
        let (frames_a, frames_b) = (frames(&m, a), frames(&m, b));
        prop_assert!(frames_a.is_disjoint(&frames_b));
        let snapshot_b: Vec<Vec<u8>> = frames_b.iter().map(|&f| m.host().peek(f, 4096)).collect();
        for (use_a, gpa, byte) in probes {
            let (me, mine) = if use_a { (a, &frames_a) } else { (b, &frames_b) };
            let mut mem = m.guest_memory(me).unwrap();
            match mem.translate(gpa) {
                Some(hpa) => prop_assert!(mine.contains(&(hpa & !0xFFF))),
                None => prop_assert!(mem.write(gpa, &[byte]).is_err()),
            }
            if use_a {
                let _ = mem.write(gpa, &[byte]);
            }
        }
        let after_b: Vec<Vec<u8>> = frames_b.iter().map(|&f| m.host().peek(f, 4096)).collect();
        prop_assert_eq!(snapshot_b, after_b);
        // Freed frames are zeroed before the next child sees them.
        control(&mut m, CallCode::DeletePartition, a);
        let c = create_child(&mut m);
        map_pages(&mut m, c, 0, u16::try_from(pages_a.len()).unwrap(), RW);
        for f in frames(&m, c) {
            prop_assert!(m.host().peek(f, 4096).iter().all(|&x| x == 0));
        }
    }
}

// ---------------------------------------------------------------------------------------
// NPT implementation over `paging`.

#[test]
fn nested_tables_map_translate_unmap_and_destroy() {
    use paging::{FakeFrames, FakeMemory, LongMode, MapFlags};
    let format = LongMode::nested(40).unwrap();
    let mut tables =
        npt::NestedTables::new(FakeMemory::new(), FakeFrames::new(0x100_0000, 64), format);
    let root = tables.create().unwrap();
    let flush = tables
        .map(
            root,
            0x20_0000,
            0x5000_0000,
            GpaPerms::READ | GpaPerms::WRITE,
        )
        .unwrap();
    assert!(!flush.is_needed());
    let _ = tables
        .map(root, 0x20_1000, 0x5000_1000, GpaPerms::all())
        .unwrap();
    assert_eq!(
        tables.map(root, 0x20_0000, 0x6000_0000, GpaPerms::READ),
        Err(SecondLevelError::AlreadyMapped(0x20_0000))
    );
    let (hpa, flags) = tables.translate(root, 0x20_0123).unwrap();
    assert_eq!(hpa, 0x5000_0123);
    assert!(flags.contains(MapFlags::WRITABLE | MapFlags::USER));
    assert!(!flags.contains(MapFlags::EXECUTABLE));
    let (_, flags) = tables.translate(root, 0x20_1000).unwrap();
    assert!(flags.contains(MapFlags::WRITABLE | MapFlags::EXECUTABLE));
    assert_eq!(
        tables.map(root, 1 << 48, 0x5000_0000, GpaPerms::READ),
        Err(SecondLevelError::Rejected(1 << 48))
    );
    assert!(tables.unmap(root, 0x20_0000).unwrap().is_needed());
    assert_eq!(
        tables.unmap(root, 0x20_0000),
        Err(SecondLevelError::NotMapped(0x20_0000))
    );
    let _ = tables.unmap(root, 0x20_1000).unwrap();
    assert_eq!(tables.translate(root, 0x20_1000), None);
    let allocated = tables.frames().allocated();
    tables.destroy(root);
    assert_eq!(tables.frames().released().len() as u64, allocated);
    assert!(tables.frames().released().contains(&root));
}

#[test]
fn nested_tables_promote_contiguous_2m_ranges_and_split_them_on_unmap() {
    use paging::{FakeFrames, FakeMemory, LongMode};
    let mut tables = npt::NestedTables::new(
        FakeMemory::new(),
        FakeFrames::new(0x100_0000, 64),
        LongMode::nested(40).unwrap(),
    );
    let root = tables.create().unwrap();
    let (gpa, hpa) = (0x40_0000u64, 0x8000_0000u64);
    // 511 pages: still small leaves; the 512th completes the range and promotes it.
    for page in 0..511u64 {
        let flush = tables
            .map(root, gpa + page * 4096, hpa + page * 4096, GpaPerms::all())
            .unwrap();
        assert!(!flush.is_needed(), "page {page}");
    }
    assert_eq!(tables.leaf_counts(root), (511, 0, 0));
    let flush = tables
        .map(root, gpa + 511 * 4096, hpa + 511 * 4096, GpaPerms::all())
        .unwrap();
    assert!(flush.is_needed(), "promotion changes present entries");
    assert_eq!(tables.leaf_counts(root), (0, 1, 0));
    for page in [0u64, 1, 255, 511] {
        let (found, _) = tables.translate(root, gpa + page * 4096 + 0x10).unwrap();
        assert_eq!(found, hpa + page * 4096 + 0x10);
    }
    // Unmapping one page splits the large leaf; every other page still translates.
    assert!(tables.unmap(root, gpa + 7 * 4096).unwrap().is_needed());
    assert_eq!(tables.leaf_counts(root), (511, 0, 0));
    assert_eq!(tables.translate(root, gpa + 7 * 4096), None);
    for page in (0..512u64).filter(|p| *p != 7) {
        assert_eq!(
            tables.translate(root, gpa + page * 4096).unwrap().0,
            hpa + page * 4096
        );
    }
    // Remapping it contiguously promotes again; the first page of a large leaf unmaps too.
    let _ = tables
        .map(root, gpa + 7 * 4096, hpa + 7 * 4096, GpaPerms::all())
        .unwrap();
    assert_eq!(tables.leaf_counts(root), (0, 1, 0));
    let _ = tables.unmap(root, gpa).unwrap();
    assert_eq!(tables.translate(root, gpa), None);
    assert_eq!(tables.leaf_counts(root), (511, 0, 0));
}

#[test]
fn nested_tables_keep_small_leaves_when_not_contiguous_or_mixed() {
    use paging::{FakeFrames, FakeMemory, LongMode};
    let mut tables = npt::NestedTables::new(
        FakeMemory::new(),
        FakeFrames::new(0x100_0000, 64),
        LongMode::nested(40).unwrap(),
    );
    let root = tables.create().unwrap();
    // Host range not 2 MiB aligned.
    for page in 0..512u64 {
        let _ = tables
            .map(
                root,
                page * 4096,
                0x8000_1000 + page * 4096,
                GpaPerms::all(),
            )
            .unwrap();
    }
    // Aligned and contiguous but one page with other permissions.
    for page in 0..512u64 {
        let perms = if page == 100 {
            GpaPerms::READ
        } else {
            GpaPerms::all()
        };
        let _ = tables
            .map(
                root,
                0x20_0000 + page * 4096,
                0x9000_0000 + page * 4096,
                perms,
            )
            .unwrap();
    }
    assert_eq!(tables.leaf_counts(root), (1024, 0, 0));
}

#[test]
fn nested_tables_run_out_of_frames_cleanly() {
    use paging::{FakeFrames, FakeMemory, LongMode};
    let mut tables = npt::NestedTables::new(
        FakeMemory::new(),
        FakeFrames::new(0x100_0000, 2),
        LongMode::nested(40).unwrap(),
    );
    let root = tables.create().unwrap();
    assert_eq!(
        tables.map(root, 0, 0x5000_0000, GpaPerms::READ),
        Err(SecondLevelError::OutOfFrames)
    );
}

#[test]
fn manager_runs_on_the_paging_backed_tables() {
    use paging::{FakeFrames, FakeMemory, LongMode};
    let tables = npt::NestedTables::new(
        FakeMemory::new(),
        FakeFrames::new(0x200_0000, 64),
        LongMode::nested(40).unwrap(),
    );
    let mut m = PartitionManager::new(
        Limits::default(),
        FakePool::new(POOL_BASE, 8),
        tables,
        FakeHostMemory::new(),
        &[(0, 0x10_0000)],
    )
    .unwrap();
    let caller = hypercall::CallerContext {
        partition_id: ROOT_PARTITION,
        vp_index: 0,
        privileges: hypercall::PartitionPrivileges::ROOT,
    };
    use hypercall::HypercallHandler;
    let id = m
        .create_partition(
            &caller,
            &hypercall::CreatePartitionParams {
                flags: 0,
                proximity_domain_info: 0,
                compatibility_version: 0,
                disabled_processor_features: [0; 2],
                disabled_processor_xsave_features: 0,
            },
        )
        .unwrap();
    m.initialize_partition(&caller, id).unwrap();
    m.map_pool_page(&caller, id, 5, MapGpaFlags::READABLE)
        .unwrap();
    let root = m.partition(id).unwrap().second_level_root().unwrap();
    let hpa = m
        .partition(id)
        .unwrap()
        .ram()
        .translate_page(5)
        .unwrap()
        .hpa;
    assert!(m.tables().memory().tables_written() > 0);
    m.delete_partition(&caller, id).unwrap();
    assert_eq!(m.pool().free_frames(), 8);
    assert!(m.tables().frames().released().contains(&root));
    assert!((POOL_BASE..POOL_BASE + 8 * PAGE_SIZE).contains(&hpa));
}

#[test]
fn invalid_root_ram_is_refused() {
    for ranges in [
        &[(0x1000u64, 0x1000u64)][..],
        &[(0x1001, 0x2000)],
        &[(0x2000, 0x3000), (0x1000, 0x2000)],
    ] {
        assert!(matches!(
            PartitionManager::new(
                Limits::default(),
                FakePool::new(0, 0),
                FakeSecondLevel::new(),
                FakeHostMemory::new(),
                ranges,
            ),
            Err(ManagerError::InvalidRootRam { .. })
        ));
    }
}

#[test]
fn scheduler_follows_the_manager() {
    let mut m = manager(16);
    let a = running_child(&mut m, 2);
    let b = running_child(&mut m, 2);
    let mut sched = Scheduler::new(2);
    for id in [a, b] {
        sched.enqueue(VcpuRef {
            partition: id,
            vp_index: 0,
        });
    }
    let first = sched.next(&m).unwrap();
    assert_eq!(first.partition, a);
    exit(&mut m, a, ExitEvent::Halt);
    assert_eq!(sched.next(&m).unwrap().partition, b);
    exit(&mut m, b, io(EXIT_PORT, 4, true, 0));
    assert_eq!(sched.next(&m), None, "a halted, b stopped: idle");
    m.wake_vcpu(a, 0);
    assert_eq!(sched.next(&m).unwrap().partition, a);
}
