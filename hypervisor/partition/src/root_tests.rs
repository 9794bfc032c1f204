//! Host tests of the root partition's policies and ABI: the hypercall doorbell, the ports,
//! memory and MSRs the hypervisor keeps from the root, run-partitions, the root's CPUID,
//! and the manager's side of the Mica root calls (write partition memory, read console,
//! hypervisor info, stop-reason properties).

use hypercall::abi::{
    BACKEND_SVM, HostFeatures, HypervisorInfo, MAX_PROTECTED_RANGES, PartitionIdInput,
    ProtectedRange, ReadConsoleHeader, RunExitReason, WriteMemoryHeader, stop_code,
};
use hypercall::call::{CONSOLE_READ_MAX, WRITE_MEMORY_MAX};
use hypercall::control::{rep_call, result_value, simple_call, split_result_value};
use hypercall::root_abi::DOORBELL_PORT;
use hypercall::{
    CallCode, CallerContext, CreatePartitionParams, CreateVpParams, GuestMemory, HvError, HvStatus,
    HypercallHandler, MapGpaFlags, PartitionId, PartitionPrivileges, PartitionPropertyCode,
};
use proptest::prelude::*;
use zerocopy::{FromBytes, IntoBytes};

use crate::cpuid::MICA_BUILD;
use crate::fake::{FakeHostMemory, FakePlatform, FakePool, FakeSecondLevel};
use crate::*;

type Manager = PartitionManager<FakePool, FakeSecondLevel, FakeHostMemory>;

const POOL_BASE: u64 = 0x1000_0000;
const POOL_FRAMES: u64 = 64;
/// The root's RAM: identity-mapped `[0, ROOT_RAM_END)`.
const ROOT_RAM_END: u64 = 0x10_0000;
/// The root's input and output parameter pages (as in the shared window).
const INPUT: u64 = 0x1000;
const OUTPUT: u64 = 0x2000;
/// A value no policy produces, to see whether a register was touched.
const SENTINEL: u64 = 0x1122_3344_5566_7788;
const EFER_SVME: u64 = 1 << 12;
/// EFER as a 64-bit kernel runs: SCE, LME, LMA, NXE.
const EFER_LONG: u64 = 0xD01;
const RWX: MapGpaFlags = MapGpaFlags::READABLE
    .union(MapGpaFlags::WRITABLE)
    .union(MapGpaFlags::KERNEL_EXECUTABLE);
const GP: ExitAction = ExitAction::Inject {
    vector: VECTOR_GP,
    error_code: Some(0),
};
const UD: ExitAction = ExitAction::Inject {
    vector: VECTOR_UD,
    error_code: None,
};
const ADVANCE: ExitAction = ExitAction::Resume { advance_rip: true };

/// 64-bit mode at CPL `cpl`.
fn long_mode(regs: &mut VcpuRegisters, cpl: u16) {
    regs.efer = EFER_LONG;
    regs.cr0 = 0x8000_0011;
    regs.cr4 = 0x20;
    regs.cs.attributes = 0xA09B | cpl << 5;
    regs.ss.attributes = 0xC093 | cpl << 5;
}

/// A manager whose root has vCPUs 0 and 1 in 64-bit mode at CPL 0.
fn manager_with(limits: Limits) -> Manager {
    let mut m = PartitionManager::new(
        limits,
        FakePool::new(POOL_BASE, POOL_FRAMES),
        FakeSecondLevel::new(),
        FakeHostMemory::new(),
        &[(0, ROOT_RAM_END)],
    )
    .unwrap();
    for vp in 0..2 {
        let mut regs = VcpuRegisters::reset(vp);
        long_mode(&mut regs, 0);
        m.add_root_vcpu(vp, regs).unwrap();
    }
    m
}

fn manager() -> Manager {
    manager_with(Limits::default())
}

fn root_ctx() -> CallerContext {
    CallerContext {
        partition_id: ROOT_PARTITION,
        vp_index: 0,
        privileges: PartitionPrivileges::ROOT,
    }
}

/// A child with `pages` pages mapped from GPA 0 with `flags` and one vCPU in 64-bit mode,
/// initialized but not started.
fn new_child(m: &mut Manager, pages: u64, flags: MapGpaFlags) -> PartitionId {
    let params = CreatePartitionParams {
        flags: 0,
        proximity_domain_info: 0,
        compatibility_version: 0,
        disabled_processor_features: [0; 2],
        disabled_processor_xsave_features: 0,
    };
    let id = m.create_partition(&root_ctx(), &params).unwrap();
    m.initialize_partition(&root_ctx(), id).unwrap();
    for page in 0..pages {
        m.map_pool_page(&root_ctx(), id, page, flags).unwrap();
    }
    let vp = CreateVpParams {
        vp_index: 0,
        subnode_type: 0,
        subnode_id: 0,
        proximity_domain_info: 0,
    };
    m.create_vp(&root_ctx(), id, &vp).unwrap();
    long_mode(&mut m.vcpu_mut(id, 0).unwrap().regs, 0);
    id
}

fn running_child(m: &mut Manager, pages: u64) -> PartitionId {
    let id = new_child(m, pages, RWX);
    m.start_partition(&root_ctx(), id).unwrap();
    id
}

fn regs(m: &Manager, id: PartitionId, vp: u32) -> VcpuRegisters {
    m.partition(id).unwrap().vcpu(vp).unwrap().regs
}

fn gpr(m: &Manager, id: PartitionId, vp: u32, r: Gpr) -> u64 {
    regs(m, id, vp).gpr(r)
}

fn counters(m: &Manager, id: PartitionId) -> Counters {
    m.partition(id).unwrap().counters().clone()
}

fn set_call(m: &mut Manager, id: PartitionId, vp: u32, rcx: u64, rdx: u64, r8: u64) {
    let regs = &mut m.vcpu_mut(id, vp).unwrap().regs;
    regs.set_gpr(Gpr::Rax, SENTINEL);
    regs.set_gpr(Gpr::Rcx, rcx);
    regs.set_gpr(Gpr::Rdx, rdx);
    regs.set_gpr(Gpr::R8, r8);
}

fn exit(m: &mut Manager, id: PartitionId, vp: u32, event: ExitEvent) -> ExitAction {
    handle_exit(m, &FakePlatform::default(), id, vp, event)
}

fn io(port: u16, size: u8, write: bool) -> IoPortAccess {
    IoPortAccess {
        port,
        size,
        write,
        value: 0,
        string: false,
        rep: false,
    }
}

/// `out 0xE8, al` from root vCPU `vp` with RCX/RDX/R8 set.
fn doorbell(m: &mut Manager, vp: u32, rcx: u64, rdx: u64, r8: u64) -> ExitAction {
    set_call(m, ROOT_PARTITION, vp, rcx, rdx, r8);
    exit(
        m,
        ROOT_PARTITION,
        vp,
        ExitEvent::IoPort(io(DOORBELL_PORT, 1, true)),
    )
}

/// VMMCALL from vCPU `vp` of `id` with RCX/RDX/R8 set.
fn vmmcall(m: &mut Manager, id: PartitionId, vp: u32, rcx: u64, rdx: u64, r8: u64) -> ExitAction {
    set_call(m, id, vp, rcx, rdx, r8);
    exit(m, id, vp, ExitEvent::Hypercall)
}

/// The status a hypercall left in RAX of `vp` of `id`.
fn status(m: &Manager, id: PartitionId, vp: u32) -> HvStatus {
    let (status, reps) = split_result_value(gpr(m, id, vp, Gpr::Rax));
    assert_eq!(reps, 0);
    status.expect("RAX holds a known status")
}

/// A slow root call through the doorbell with `input` at INPUT and output at OUTPUT.
fn root_slow(m: &mut Manager, code: CallCode, input: &[u8]) -> HvStatus {
    m.host_mut().write(INPUT, input);
    let action = doorbell(m, 0, simple_call(code.raw(), false), INPUT, OUTPUT);
    assert_eq!(action, ADVANCE);
    status(m, ROOT_PARTITION, 0)
}

fn write_input(partition: PartitionId, gpa: u64, data: &[u8]) -> Vec<u8> {
    let mut input = WriteMemoryHeader {
        partition_id: partition.0,
        gpa,
        length: u32::try_from(data.len()).unwrap(),
        reserved: 0,
    }
    .as_bytes()
    .to_vec();
    input.extend_from_slice(data);
    input
}

fn child_bytes(m: &mut Manager, id: PartitionId, gpa: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    m.guest_memory(id).unwrap().read(gpa, &mut buf).unwrap();
    buf
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn read_console_call(m: &mut Manager, partition: PartitionId) -> (HvStatus, ReadConsoleHeader) {
    let status = root_slow(
        m,
        CallCode::MicaReadConsole,
        PartitionIdInput {
            partition_id: partition.0,
        }
        .as_bytes(),
    );
    let header = ReadConsoleHeader::read_from_bytes(&m.host().peek(OUTPUT, 8)).unwrap();
    (status, header)
}

fn info_call(m: &mut Manager) -> HypervisorInfo {
    assert_eq!(
        root_slow(m, CallCode::MicaGetHypervisorInfo, &[]),
        HvStatus::Success
    );
    HypervisorInfo::read_from_bytes(&m.host().peek(OUTPUT, size_of::<HypervisorInfo>())).unwrap()
}

fn property(m: &mut Manager, id: PartitionId, code: u32) -> u64 {
    m.get_partition_property(&root_ctx(), id, PartitionPropertyCode(code))
        .unwrap()
}

fn stop_properties(m: &mut Manager, id: PartitionId) -> (u64, u64) {
    (
        property(m, id, properties::MICA_STOP_REASON),
        property(m, id, properties::MICA_STOP_GPA),
    )
}

// ---------------------------------------------------------------------------------------
// The doorbell.

#[test]
fn doorbell_is_a_hypercall_from_any_cpl() {
    let mut m = manager();
    for cpl in 0..=3 {
        long_mode(&mut m.vcpu_mut(ROOT_PARTITION, 0).unwrap().regs, cpl);
        let before = m.partitions().count();
        let input = hypercall::abi::CreatePartitionInput::default();
        assert_eq!(
            root_slow(&mut m, CallCode::CreatePartition, input.as_bytes()),
            HvStatus::Success,
            "CPL {cpl}"
        );
        let id = u64::from_le_bytes(m.host().peek(OUTPUT, 8).try_into().unwrap());
        assert_eq!(m.partitions().count(), before + 1);
        assert_eq!(
            m.partition(PartitionId(id)).unwrap().parent(),
            Some(ROOT_PARTITION)
        );
    }
    let c = counters(&m, ROOT_PARTITION);
    assert_eq!(c.exits(ExitKind::IoPort), 4);
    assert_eq!(c.exits(ExitKind::Hypercall), 0);
    assert_eq!(c.root_denied_io, 0, "the doorbell is not a denied port");
    assert_eq!(c.failed_hypercalls, 0);
    assert_eq!(c.gp_injected, 0);
}

#[test]
fn doorbell_failures_are_statuses_not_faults() {
    let mut m = manager();
    long_mode(&mut m.vcpu_mut(ROOT_PARTITION, 0).unwrap().regs, 3);
    // A parameter page in the child pool (not root RAM): refused, nothing touched.
    let action = doorbell(
        &mut m,
        0,
        simple_call(CallCode::MicaGetHypervisorInfo.raw(), false),
        0,
        POOL_BASE,
    );
    assert_eq!(action, ADVANCE);
    assert_eq!(status(&m, ROOT_PARTITION, 0), HvStatus::InvalidAlignment);
    // An unknown call code.
    assert_eq!(doorbell(&mut m, 0, 0xC0FF, INPUT, OUTPUT), ADVANCE);
    assert_eq!(
        status(&m, ROOT_PARTITION, 0),
        HvStatus::InvalidHypercallCode
    );
    let c = counters(&m, ROOT_PARTITION);
    assert_eq!(c.failed_hypercalls, 2);
    assert_eq!(c.gp_injected, 0);
    assert_eq!(
        m.partition(ROOT_PARTITION).unwrap().state(),
        PartitionState::Running
    );
}

#[test]
fn vmmcall_from_root_user_mode_is_still_ud() {
    let mut m = manager();
    long_mode(&mut m.vcpu_mut(ROOT_PARTITION, 0).unwrap().regs, 3);
    m.host_mut().write(
        INPUT,
        hypercall::abi::CreatePartitionInput::default().as_bytes(),
    );
    let rcx = simple_call(CallCode::CreatePartition.raw(), false);
    assert_eq!(vmmcall(&mut m, ROOT_PARTITION, 0, rcx, INPUT, OUTPUT), UD);
    assert_eq!(gpr(&m, ROOT_PARTITION, 0, Gpr::Rax), SENTINEL);
    assert_eq!(m.partitions().count(), 1, "nothing was created");
    // At CPL 0 the same VMMCALL works.
    long_mode(&mut m.vcpu_mut(ROOT_PARTITION, 0).unwrap().regs, 0);
    assert_eq!(
        vmmcall(&mut m, ROOT_PARTITION, 0, rcx, INPUT, OUTPUT),
        ADVANCE
    );
    assert_eq!(status(&m, ROOT_PARTITION, 0), HvStatus::Success);
    assert_eq!(m.partitions().count(), 2);
}

#[test]
fn doorbell_outside_64_bit_mode_is_gp() {
    let rcx = simple_call(CallCode::CreatePartition.raw(), false);
    // (EFER, CS attributes): no LMA (legacy mode), and LMA with CS.L clear (compat mode).
    for (efer, cs) in [
        (0, 0xC09B),
        (0x101, 0xC09B),
        (EFER_LONG, 0xC09B),
        (0, 0xA09B),
    ] {
        for cpl in [0u16, 3] {
            let mut m = manager();
            m.host_mut().write(
                INPUT,
                hypercall::abi::CreatePartitionInput::default().as_bytes(),
            );
            let regs = &mut m.vcpu_mut(ROOT_PARTITION, 0).unwrap().regs;
            regs.efer = efer;
            regs.cs.attributes = cs | cpl << 5;
            regs.ss.attributes = 0xC093 | cpl << 5;
            assert_eq!(
                doorbell(&mut m, 0, rcx, INPUT, OUTPUT),
                GP,
                "EFER {efer:#x} CS {cs:#x} CPL {cpl}"
            );
            assert_eq!(gpr(&m, ROOT_PARTITION, 0, Gpr::Rax), SENTINEL);
            assert_eq!(m.partitions().count(), 1);
            assert_eq!(
                m.partition(ROOT_PARTITION).unwrap().state(),
                PartitionState::Running
            );
        }
    }
}

#[test]
fn only_a_plain_one_byte_out_rings_the_doorbell() {
    let mut m = manager();
    let rcx = simple_call(CallCode::CreatePartition.raw(), false);
    m.host_mut().write(
        INPUT,
        hypercall::abi::CreatePartitionInput::default().as_bytes(),
    );
    // 2- and 4-byte OUTs: a reserved port, the write is dropped.
    for size in [2, 4] {
        set_call(&mut m, ROOT_PARTITION, 0, rcx, INPUT, OUTPUT);
        let action = exit(
            &mut m,
            ROOT_PARTITION,
            0,
            ExitEvent::IoPort(io(DOORBELL_PORT, size, true)),
        );
        assert_eq!(action, ADVANCE, "size {size}");
        assert_eq!(gpr(&m, ROOT_PARTITION, 0, Gpr::Rax), SENTINEL);
    }
    // INs read a floating bus.
    for (size, expected) in [
        (1, SENTINEL | 0xFF),
        (2, SENTINEL | 0xFFFF),
        (4, 0xFFFF_FFFF),
    ] {
        set_call(&mut m, ROOT_PARTITION, 0, rcx, INPUT, OUTPUT);
        let action = exit(
            &mut m,
            ROOT_PARTITION,
            0,
            ExitEvent::IoPort(io(DOORBELL_PORT, size, false)),
        );
        assert_eq!(action, ADVANCE);
        assert_eq!(gpr(&m, ROOT_PARTITION, 0, Gpr::Rax), expected);
    }
    // OUTS and REP OUT: #GP.
    for (string, rep) in [(true, false), (false, true), (true, true)] {
        set_call(&mut m, ROOT_PARTITION, 0, rcx, INPUT, OUTPUT);
        let access = IoPortAccess {
            string,
            rep,
            ..io(DOORBELL_PORT, 1, true)
        };
        assert_eq!(
            exit(&mut m, ROOT_PARTITION, 0, ExitEvent::IoPort(access)),
            GP
        );
        assert_eq!(gpr(&m, ROOT_PARTITION, 0, Gpr::Rax), SENTINEL);
    }
    assert_eq!(m.partitions().count(), 1, "no call was made");
    let c = counters(&m, ROOT_PARTITION);
    assert_eq!(c.root_denied_io, 8);
    assert_eq!(c.gp_injected, 3);
    assert_eq!(c.failed_hypercalls, 0);
}

#[test]
fn a_child_has_no_doorbell() {
    let mut m = manager();
    let child = running_child(&mut m, 4);
    let rcx = simple_call(CallCode::CreatePartition.raw(), false);
    set_call(&mut m, child, 0, rcx, 0x1000, 0x2000);
    let action = exit(
        &mut m,
        child,
        0,
        ExitEvent::IoPort(io(DOORBELL_PORT, 1, true)),
    );
    let reason = StopReason::BadIoPort {
        port: DOORBELL_PORT,
        size: 1,
        write: true,
    };
    assert_eq!(action, ExitAction::StopPartition { reason });
    assert_eq!(m.partition(child).unwrap().stop_reason(), Some(reason));
    assert_eq!(m.partitions().count(), 2);
    assert_eq!(gpr(&m, child, 0, Gpr::Rax), SENTINEL);
}

// ---------------------------------------------------------------------------------------
// Ports, memory and MSRs the hypervisor keeps from the root.

#[test]
fn root_reserved_ports_float_drop_or_fault_but_never_stop() {
    let mut m = manager();
    let mut denied = 0;
    let mut gps = 0;
    for port in [
        0x3F8,
        0x3FD,
        DEBUG_CONSOLE_PORT,
        EXIT_PORT,
        0x80,
        0xCF8,
        0xFFFF,
    ] {
        for (size, expected) in [
            (1, SENTINEL | 0xFF),
            (2, SENTINEL | 0xFFFF),
            (4, 0xFFFF_FFFF),
        ] {
            m.vcpu_mut(ROOT_PARTITION, 0)
                .unwrap()
                .regs
                .set_gpr(Gpr::Rax, SENTINEL);
            let action = exit(
                &mut m,
                ROOT_PARTITION,
                0,
                ExitEvent::IoPort(io(port, size, false)),
            );
            assert_eq!(action, ADVANCE, "IN {port:#x}/{size}");
            assert_eq!(gpr(&m, ROOT_PARTITION, 0, Gpr::Rax), expected);
            let before = regs(&m, ROOT_PARTITION, 0);
            let out = IoPortAccess {
                value: 0x41,
                ..io(port, size, true)
            };
            let action = exit(&mut m, ROOT_PARTITION, 0, ExitEvent::IoPort(out));
            assert_eq!(action, ADVANCE, "OUT {port:#x}/{size}");
            assert_eq!(regs(&m, ROOT_PARTITION, 0), before, "a dropped write");
            denied += 2;
        }
        for size in [0, 3, 8] {
            for write in [false, true] {
                let action = exit(
                    &mut m,
                    ROOT_PARTITION,
                    0,
                    ExitEvent::IoPort(io(port, size, write)),
                );
                assert_eq!(action, GP, "{port:#x} size {size}");
                denied += 1;
                gps += 1;
            }
        }
        for write in [false, true] {
            let string = IoPortAccess {
                string: true,
                ..io(port, 1, write)
            };
            let rep = IoPortAccess {
                rep: true,
                ..io(port, 4, write)
            };
            assert_eq!(
                exit(&mut m, ROOT_PARTITION, 0, ExitEvent::IoPort(string)),
                GP
            );
            assert_eq!(exit(&mut m, ROOT_PARTITION, 0, ExitEvent::IoPort(rep)), GP);
            denied += 2;
            gps += 2;
        }
    }
    let root = m.partition(ROOT_PARTITION).unwrap();
    assert_eq!(root.state(), PartitionState::Running);
    assert_eq!(root.stop_reason(), None);
    // The root has no debug console or exit port: 0xE9 writes do not reach its console.
    assert!(root.console().is_empty());
    assert_eq!(root.counters().root_denied_io, denied);
    assert_eq!(root.counters().gp_injected, gps);
}

#[test]
fn root_second_level_faults_inject_gp_and_are_counted() {
    let mut m = manager();
    let child = running_child(&mut m, 2);
    let child_frame = m
        .partition(child)
        .unwrap()
        .ram()
        .translate_page(0)
        .unwrap()
        .hpa;
    let gpas = [POOL_BASE, child_frame + 0x123, ROOT_RAM_END, u64::MAX, 0];
    let accesses = [
        MemoryAccess::Read,
        MemoryAccess::Write,
        MemoryAccess::Execute,
    ];
    for gpa in gpas {
        for access in accesses {
            let before = regs(&m, ROOT_PARTITION, 1);
            let action = exit(
                &mut m,
                ROOT_PARTITION,
                1,
                ExitEvent::MemoryFault { gpa, access },
            );
            assert_eq!(action, GP, "{gpa:#x} {access:?}");
            assert_eq!(regs(&m, ROOT_PARTITION, 1), before);
        }
    }
    let root = m.partition(ROOT_PARTITION).unwrap();
    assert_eq!(root.state(), PartitionState::Running);
    let n = (gpas.len() * accesses.len()) as u64;
    assert_eq!(root.counters().root_denied_accesses, n);
    assert_eq!(root.counters().gp_injected, n);
    assert_eq!(root.counters().exits(ExitKind::MemoryFault), n);
    // The child's memory is untouched and it runs on.
    assert_eq!(m.partition(child).unwrap().state(), PartitionState::Running);
    assert_eq!(counters(&m, child).root_denied_accesses, 0);
}

#[test]
fn root_msr_numbers_are_the_architectural_ones() {
    assert_eq!(root_msrs::EFER, 0xC000_0080);
    assert_eq!(root_msrs::VM_CR, 0xC001_0114);
    assert_eq!(root_msrs::VM_HSAVE_PA, 0xC001_0117);
    assert_eq!(root_msrs::SYSCFG, 0xC001_0010);
    // MTRRcap, the variable ranges (0x200..), fixed ranges (0x250..0x26F) and
    // MTRRdefType (0x2FF).
    for msr in [0xFE, 0x200, 0x20F, 0x250, 0x258, 0x268, 0x26F, 0x2FF] {
        assert!(
            root_msrs::MTRRS.iter().any(|r| r.contains(&msr)),
            "{msr:#x}"
        );
    }
    for msr in root_msrs::READ_INTERCEPTED {
        assert!(root_msrs::WRITE_INTERCEPTED.contains(&msr), "{msr:#x}");
    }
}

#[test]
fn root_efer_reads_hide_svme_and_writes_may_not_set_it() {
    let mut m = manager();
    let read = |m: &mut Manager| {
        let action = exit(
            m,
            ROOT_PARTITION,
            0,
            ExitEvent::MsrRead {
                msr: root_msrs::EFER,
            },
        );
        assert_eq!(action, ADVANCE);
        (gpr(m, ROOT_PARTITION, 0, Gpr::Rdx) << 32) | gpr(m, ROOT_PARTITION, 0, Gpr::Rax)
    };
    assert_eq!(read(&mut m), EFER_LONG);
    // Even if SVME were in the saved state, the root would not see it.
    m.vcpu_mut(ROOT_PARTITION, 0).unwrap().regs.efer = EFER_LONG | EFER_SVME;
    assert_eq!(read(&mut m), EFER_LONG);
    m.vcpu_mut(ROOT_PARTITION, 0).unwrap().regs.efer = EFER_LONG;

    let write = |m: &mut Manager, value: u64| {
        exit(
            m,
            ROOT_PARTITION,
            0,
            ExitEvent::MsrWrite {
                msr: root_msrs::EFER,
                value,
            },
        )
    };
    for value in [EFER_SVME, EFER_LONG | EFER_SVME, u64::MAX] {
        let before = regs(&m, ROOT_PARTITION, 0);
        assert_eq!(write(&mut m, value), GP, "{value:#x}");
        assert_eq!(regs(&m, ROOT_PARTITION, 0), before);
    }
    // Other EFER changes are the root's (here: NXE off and on again).
    assert_eq!(write(&mut m, EFER_LONG & !(1 << 11)), ADVANCE);
    assert_eq!(regs(&m, ROOT_PARTITION, 0).efer, EFER_LONG & !(1 << 11));
    assert_eq!(read(&mut m), EFER_LONG & !(1 << 11));
    assert_eq!(write(&mut m, EFER_LONG), ADVANCE);
    assert_eq!(read(&mut m), EFER_LONG);
    let c = counters(&m, ROOT_PARTITION);
    assert_eq!(c.gp_injected, 3);
    assert_eq!(
        c.root_denied_msr_writes, 0,
        "EFER writes are checked, not dropped"
    );
    // The other root vCPU was not touched.
    assert_eq!(regs(&m, ROOT_PARTITION, 1).efer, EFER_LONG);
}

#[test]
fn root_svm_msrs_read_as_locked_and_writes_are_dropped() {
    let mut m = manager();
    let read = |m: &mut Manager, msr: u32| {
        let regs = &mut m.vcpu_mut(ROOT_PARTITION, 0).unwrap().regs;
        regs.set_gpr(Gpr::Rax, SENTINEL);
        regs.set_gpr(Gpr::Rdx, SENTINEL);
        let action = exit(m, ROOT_PARTITION, 0, ExitEvent::MsrRead { msr });
        (
            action,
            gpr(m, ROOT_PARTITION, 0, Gpr::Rdx),
            gpr(m, ROOT_PARTITION, 0, Gpr::Rax),
        )
    };
    // VM_CR: LOCK (bit 3) and SVMDIS (bit 4): "SVM disabled by firmware".
    assert_eq!(read(&mut m, root_msrs::VM_CR), (ADVANCE, 0, 0x18));
    assert_eq!(read(&mut m, root_msrs::VM_HSAVE_PA), (ADVANCE, 0, 0));

    let dropped: Vec<(u32, u64)> = vec![
        (root_msrs::VM_CR, 0),
        (root_msrs::VM_CR, u64::MAX),
        (root_msrs::VM_HSAVE_PA, POOL_BASE),
        (root_msrs::SYSCFG, 1 << 23),
        (0xFE, 0),
        (0x200, 0x6),
        (0x2FF, 0xC00),
        // Intercepted but not named (a backend may intercept more): dropped as well.
        (0x4000_0001, 0x1001),
        (0x4000_0000, 0x8100_0000_0000_0000),
    ];
    for &(msr, value) in &dropped {
        let before = m.partition(ROOT_PARTITION).unwrap().synthetic_msrs();
        let regs_before = regs(&m, ROOT_PARTITION, 0);
        let action = exit(
            &mut m,
            ROOT_PARTITION,
            0,
            ExitEvent::MsrWrite { msr, value },
        );
        assert_eq!(action, ADVANCE, "{msr:#x}");
        assert_eq!(regs(&m, ROOT_PARTITION, 0), regs_before, "{msr:#x}");
        assert_eq!(
            m.partition(ROOT_PARTITION).unwrap().synthetic_msrs(),
            before
        );
    }
    // Still locked after the writes.
    assert_eq!(read(&mut m, root_msrs::VM_CR), (ADVANCE, 0, 0x18));
    assert_eq!(read(&mut m, root_msrs::VM_HSAVE_PA), (ADVANCE, 0, 0));
    // Reads of MSRs that are intercepted only for writes (or not at all) are #GP.
    for msr in [root_msrs::SYSCFG, 0xFE, 0x200, 0x4000_0001, 0x1234_5678] {
        assert_eq!(read(&mut m, msr), (GP, SENTINEL, SENTINEL), "{msr:#x}");
    }
    let c = counters(&m, ROOT_PARTITION);
    assert_eq!(c.root_denied_msr_writes, dropped.len() as u64);
    assert_eq!(
        m.partition(ROOT_PARTITION).unwrap().state(),
        PartitionState::Running
    );
}

#[test]
fn root_efer_write_with_reserved_bits_is_gp() {
    let mut m = manager();
    for value in [EFER_LONG | 1 << 63, EFER_LONG | 1 << 40, EFER_LONG | 1 << 2] {
        let action = exit(
            &mut m,
            ROOT_PARTITION,
            0,
            ExitEvent::MsrWrite {
                msr: root_msrs::EFER,
                value,
            },
        );
        assert_eq!(action, GP, "{value:#x}");
        assert_eq!(regs(&m, ROOT_PARTITION, 0).efer, EFER_LONG);
    }
}

#[test]
fn every_gp_injected_into_the_root_is_counted() {
    let mut m = manager();
    let action = exit(&mut m, ROOT_PARTITION, 0, ExitEvent::MsrRead { msr: 0x200 });
    assert_eq!(action, GP);
    assert_eq!(counters(&m, ROOT_PARTITION).gp_injected, 1);
    m.vcpu_mut(ROOT_PARTITION, 0).unwrap().regs.efer = 0;
    assert_eq!(doorbell(&mut m, 0, 0, 0, 0), GP);
    assert_eq!(counters(&m, ROOT_PARTITION).gp_injected, 2);
}

// ---------------------------------------------------------------------------------------
// Run partitions.

fn run_rcx() -> u64 {
    simple_call(CallCode::MicaRunPartitions.raw(), true)
}

#[test]
fn run_partitions_lends_the_cpu_and_completes_with_the_reason() {
    let mut m = manager();
    let child = running_child(&mut m, 1);
    // From user space through the doorbell, on root vCPU 1.
    long_mode(&mut m.vcpu_mut(ROOT_PARTITION, 1).unwrap().regs, 3);
    assert_eq!(
        doorbell(&mut m, 1, run_rcx(), 0, 0),
        ExitAction::RunPartitions
    );
    // Nothing is written until the backend completes the call.
    assert_eq!(gpr(&m, ROOT_PARTITION, 1, Gpr::Rax), SENTINEL);
    finish_run_partitions(&mut m, 1, RunExitReason::ConsoleOutput, Some(child));
    assert_eq!(gpr(&m, ROOT_PARTITION, 1, Gpr::Rax), 0);
    assert_eq!(gpr(&m, ROOT_PARTITION, 1, Gpr::Rdx), 3);
    assert_eq!(gpr(&m, ROOT_PARTITION, 1, Gpr::R8), child.0);
    // Root vCPU 0 is untouched.
    assert_eq!(gpr(&m, ROOT_PARTITION, 0, Gpr::Rdx), 0);

    // From the kernel with VMMCALL too.
    assert_eq!(
        vmmcall(&mut m, ROOT_PARTITION, 0, run_rcx(), 0, 0),
        ExitAction::RunPartitions
    );
    for (reason, raw) in [
        (RunExitReason::Interrupted, 0),
        (RunExitReason::Idle, 1),
        (RunExitReason::PartitionStopped, 2),
    ] {
        set_call(&mut m, ROOT_PARTITION, 0, run_rcx(), 0, 0xFF);
        finish_run_partitions(&mut m, 0, reason, None);
        assert_eq!(gpr(&m, ROOT_PARTITION, 0, Gpr::Rax), 0);
        assert_eq!(gpr(&m, ROOT_PARTITION, 0, Gpr::Rdx), raw);
        assert_eq!(gpr(&m, ROOT_PARTITION, 0, Gpr::R8), 0);
        assert_eq!(
            RunExitReason::from_raw(gpr(&m, ROOT_PARTITION, 0, Gpr::Rdx)),
            Some(reason)
        );
    }
    // A vCPU the root does not have: nothing happens (and nothing panics).
    let before: Vec<_> = (0..2).map(|vp| regs(&m, ROOT_PARTITION, vp)).collect();
    finish_run_partitions(&mut m, 7, RunExitReason::Idle, None);
    let after: Vec<_> = (0..2).map(|vp| regs(&m, ROOT_PARTITION, vp)).collect();
    assert_eq!(before, after);
    let c = counters(&m, ROOT_PARTITION);
    assert_eq!(c.failed_hypercalls, 0);
}

#[test]
fn run_partitions_refusals() {
    let mut m = manager();
    // RDX and R8 are reserved.
    for (rdx, r8) in [(1, 0), (0, 1), (INPUT, OUTPUT), (u64::MAX, u64::MAX)] {
        assert_eq!(doorbell(&mut m, 0, run_rcx(), rdx, r8), ADVANCE);
        assert_eq!(status(&m, ROOT_PARTITION, 0), HvStatus::InvalidParameter);
        assert_eq!(gpr(&m, ROOT_PARTITION, 0, Gpr::Rdx), rdx, "left as it was");
        assert_eq!(gpr(&m, ROOT_PARTITION, 0, Gpr::R8), r8);
    }
    // The slow form does not exist.
    let slow = simple_call(CallCode::MicaRunPartitions.raw(), false);
    assert_eq!(doorbell(&mut m, 0, slow, INPUT, OUTPUT), ADVANCE);
    assert_eq!(
        status(&m, ROOT_PARTITION, 0),
        HvStatus::InvalidHypercallInput
    );
    // Rep fields on it.
    let rep = rep_call(CallCode::MicaRunPartitions.raw(), 1, 0) | 1 << 16;
    assert_eq!(doorbell(&mut m, 0, rep, 0, 0), ADVANCE);
    assert_eq!(
        status(&m, ROOT_PARTITION, 0),
        HvStatus::InvalidHypercallInput
    );
    assert_eq!(counters(&m, ROOT_PARTITION).failed_hypercalls, 6);

    // A child may not: it lacks the privilege.
    let child = running_child(&mut m, 1);
    assert_eq!(vmmcall(&mut m, child, 0, run_rcx(), 0, 0), ADVANCE);
    assert_eq!(status(&m, child, 0), HvStatus::AccessDenied);
    assert_eq!(
        gpr(&m, child, 0, Gpr::Rax),
        result_value(HvStatus::AccessDenied, 0)
    );
    assert_eq!(counters(&m, child).failed_hypercalls, 1);
    assert_eq!(m.partition(child).unwrap().state(), PartitionState::Running);
    // Nor at CPL 3 (VMMCALL rules first).
    long_mode(&mut m.vcpu_mut(child, 0).unwrap().regs, 3);
    assert_eq!(vmmcall(&mut m, child, 0, run_rcx(), 0, 0), UD);
}

// ---------------------------------------------------------------------------------------
// CPUID.

#[test]
fn root_cpuid_names_mica_and_keeps_host_apic_ids() {
    let mut m = manager();
    let child = running_child(&mut m, 1);
    let mut platform = FakePlatform::default();
    let host = |eax, ebx, ecx, edx| CpuidResult { eax, ebx, ecx, edx };
    platform.cpuid.insert(
        (1, 0),
        host(0x00A2_0F12, 0x0508_0800, 0x7FFA_3223, 0x178B_FBFF),
    );
    platform.cpuid.insert((0xB, 0), host(1, 2, 0x100, 5));
    platform.cpuid.insert((0x1F, 1), host(4, 8, 0x201, 5));
    platform
        .cpuid
        .insert((0x8000_0001, 0), host(0, 0, 0x75C2_37FF, 0));
    platform
        .cpuid
        .insert((0x8000_000A, 0), host(1, 0x8000, 0, 0xFFFF));
    let cpuid = |m: &mut Manager, id: PartitionId, vp: u32, leaf: u32, subleaf: u32| {
        let action = handle_exit(m, &platform, id, vp, ExitEvent::Cpuid { leaf, subleaf });
        assert_eq!(action, ADVANCE);
        let r = regs(m, id, vp);
        let low = |g| u32::try_from(r.gpr(g)).unwrap();
        host(low(Gpr::Rax), low(Gpr::Rbx), low(Gpr::Rcx), low(Gpr::Rdx))
    };
    let vendor = |r: CpuidResult| {
        let mut v = Vec::new();
        for reg in [r.ebx, r.ecx, r.edx] {
            v.extend_from_slice(&reg.to_le_bytes());
        }
        String::from_utf8(v).unwrap()
    };
    for vp in [0, 1] {
        let r = cpuid(&mut m, ROOT_PARTITION, vp, 0x4000_0000, 0);
        assert_eq!(vendor(r), "MicaMicaMica");
        assert_eq!(r.eax, 0x4000_0005);
        // The host's APIC ID (5), whatever the vCPU index.
        let r = cpuid(&mut m, ROOT_PARTITION, vp, 1, 0);
        assert_eq!(r.ebx >> 24, 5);
        assert_eq!(r.ebx & 0x00FF_FFFF, 0x08_0800);
        assert_eq!(r.ecx & 1 << 5, 0, "VMX hidden");
        assert_ne!(r.ecx & 1 << 31, 0, "hypervisor present");
        assert_eq!(cpuid(&mut m, ROOT_PARTITION, vp, 0xB, 0).edx, 5);
        assert_eq!(cpuid(&mut m, ROOT_PARTITION, vp, 0x1F, 1).edx, 5);
        // No nested virtualization for the root either.
        let r = cpuid(&mut m, ROOT_PARTITION, vp, 0x8000_0001, 0);
        assert_eq!(r.ecx & 1 << 2, 0, "SVM hidden");
        assert_eq!(r.ecx, 0x75C2_37FF & !(1 << 2));
        assert_eq!(
            cpuid(&mut m, ROOT_PARTITION, vp, 0x8000_000A, 0),
            CpuidResult::default()
        );
    }
    // A child is a Hyper-V guest with its own APIC IDs.
    let r = cpuid(&mut m, child, 0, 0x4000_0000, 0);
    assert_eq!(vendor(r), "Microsoft Hv");
    assert_eq!(cpuid(&mut m, child, 0, 1, 0).ebx >> 24, 0);
    assert_eq!(cpuid(&mut m, child, 0, 0xB, 0).edx, 0);
    assert_eq!(cpuid(&mut m, child, 0, 0x1F, 1).edx, 0);
}

// ---------------------------------------------------------------------------------------
// Write partition memory.

#[test]
fn root_writes_a_childs_memory_across_its_pages() {
    let mut m = manager();
    let child = running_child(&mut m, 4);
    let data = pattern(0x40, 1);
    // From root user space; the bytes straddle the child's pages 1 and 2.
    long_mode(&mut m.vcpu_mut(ROOT_PARTITION, 0).unwrap().regs, 3);
    assert_eq!(
        root_slow(
            &mut m,
            CallCode::MicaWritePartitionMemory,
            &write_input(child, 0x1FE0, &data)
        ),
        HvStatus::Success
    );
    assert_eq!(child_bytes(&mut m, child, 0x1FE0, 0x40), data);
    // The neighbours were not touched (fresh pool pages are zeroed).
    assert_eq!(child_bytes(&mut m, child, 0x1FD8, 8), [0; 8]);
    assert_eq!(child_bytes(&mut m, child, 0x2020, 8), [0; 8]);
    // The largest write, into a stopped child (reloading an image).
    m.stop_partition(&root_ctx(), child).unwrap();
    let big = pattern(WRITE_MEMORY_MAX, 9);
    assert_eq!(
        root_slow(
            &mut m,
            CallCode::MicaWritePartitionMemory,
            &write_input(child, 0x10, &big)
        ),
        HvStatus::Success
    );
    assert_eq!(child_bytes(&mut m, child, 0x10, WRITE_MEMORY_MAX), big);
    // The root's own memory outside its parameter page is untouched.
    assert_eq!(m.host().peek(OUTPUT, 8), [0xAA; 8]);
}

#[test]
fn write_partition_memory_only_reaches_mapped_pages_and_is_all_or_nothing() {
    let mut m = manager();
    let child = running_child(&mut m, 4);
    let data = pattern(0x20, 5);
    for gpa in [
        0x4000,          // the first page after the map
        0x3FF0,          // half in page 3 (mapped), half in page 4 (not)
        0x10_0000,       // far away
        u64::MAX - 0x10, // wraps around
        POOL_BASE,       // a host-physical address is not a GPA
    ] {
        let before = child_bytes(&mut m, child, 0x3000, 0x1000);
        assert_eq!(
            root_slow(
                &mut m,
                CallCode::MicaWritePartitionMemory,
                &write_input(child, gpa, &data)
            ),
            HvStatus::InvalidParameter,
            "{gpa:#x}"
        );
        assert_eq!(child_bytes(&mut m, child, 0x3000, 0x1000), before);
    }
    // Pages mapped without write permission are refused too (the call is a write).
    let read_only = new_child(&mut m, 1, MapGpaFlags::READABLE);
    assert_eq!(
        root_slow(
            &mut m,
            CallCode::MicaWritePartitionMemory,
            &write_input(read_only, 0, &data)
        ),
        HvStatus::InvalidParameter
    );
    assert_eq!(child_bytes(&mut m, read_only, 0, 0x20), [0; 0x20]);
    // A child created but not initialized has no memory at all.
    let params = CreatePartitionParams {
        flags: 0,
        proximity_domain_info: 0,
        compatibility_version: 0,
        disabled_processor_features: [0; 2],
        disabled_processor_xsave_features: 0,
    };
    let bare = m.create_partition(&root_ctx(), &params).unwrap();
    assert_eq!(
        root_slow(
            &mut m,
            CallCode::MicaWritePartitionMemory,
            &write_input(bare, 0, &data)
        ),
        HvStatus::InvalidParameter
    );
}

#[test]
fn write_partition_memory_targets_only_the_callers_children() {
    let mut m = manager();
    let a = running_child(&mut m, 2);
    let b = running_child(&mut m, 2);
    let data = b"not yours";
    // The root itself, by ID and as SELF: its memory is not reached this way.
    for target in [ROOT_PARTITION, PartitionId::SELF] {
        assert_eq!(
            root_slow(
                &mut m,
                CallCode::MicaWritePartitionMemory,
                &write_input(target, 0x8000, data)
            ),
            HvStatus::AccessDenied,
            "{target:?}"
        );
    }
    assert_eq!(m.host().peek(0x8000, 9), [0xAA; 9]);
    // Unknown partitions.
    for target in [PartitionId(99), PartitionId(0)] {
        assert_eq!(
            root_slow(
                &mut m,
                CallCode::MicaWritePartitionMemory,
                &write_input(target, 0, data)
            ),
            HvStatus::InvalidPartitionId,
            "{target:?}"
        );
    }
    // A child calling: no privilege.
    m.guest_memory(a)
        .unwrap()
        .write(0x1000, &write_input(b, 0, data))
        .unwrap();
    let rcx = simple_call(CallCode::MicaWritePartitionMemory.raw(), false);
    assert_eq!(vmmcall(&mut m, a, 0, rcx, 0x1000, 0), ADVANCE);
    assert_eq!(status(&m, a, 0), HvStatus::AccessDenied);
    // Even with the privilege, a partition is not its sibling's parent.
    let privileged_a = CallerContext {
        partition_id: a,
        vp_index: 0,
        privileges: PartitionPrivileges::ROOT,
    };
    assert_eq!(
        m.write_partition_memory(&privileged_a, b, 0, data),
        Err(HvError::AccessDenied)
    );
    assert_eq!(child_bytes(&mut m, b, 0, 9), [0; 9]);
}

#[test]
fn write_partition_memory_refuses_finalized_children_and_bad_headers() {
    let mut m = manager();
    let child = running_child(&mut m, 2);
    m.stop_partition(&root_ctx(), child).unwrap();
    m.finalize_partition(&root_ctx(), child).unwrap();
    assert_eq!(
        root_slow(
            &mut m,
            CallCode::MicaWritePartitionMemory,
            &write_input(child, 0, b"late")
        ),
        HvStatus::InvalidPartitionState
    );
    assert_eq!(child_bytes(&mut m, child, 0, 4), [0; 4]);

    let child = running_child(&mut m, 2);
    let header = |length, reserved| WriteMemoryHeader {
        partition_id: child.0,
        gpa: 0,
        length,
        reserved,
    };
    let too_long = u32::try_from(WRITE_MEMORY_MAX).unwrap() + 1;
    for (h, expected) in [
        (header(too_long, 0), HvStatus::InvalidParameter),
        (header(u32::MAX, 0), HvStatus::InvalidParameter),
        (header(4, 1), HvStatus::InvalidParameter),
    ] {
        let mut input = h.as_bytes().to_vec();
        input.extend_from_slice(&[0x55; 4]);
        assert_eq!(
            root_slow(&mut m, CallCode::MicaWritePartitionMemory, &input),
            expected
        );
    }
    // Header near the end of the root's page: the data would cross into the next page.
    let at = INPUT + 0x1000 - 24;
    m.host_mut().write(at, &write_input(child, 0, b""));
    m.host_mut().write(at + 16, &8u32.to_le_bytes());
    let rcx = simple_call(CallCode::MicaWritePartitionMemory.raw(), false);
    assert_eq!(doorbell(&mut m, 0, rcx, at, 0), ADVANCE);
    assert_eq!(status(&m, ROOT_PARTITION, 0), HvStatus::InvalidAlignment);
    // The fast form does not exist.
    assert_eq!(doorbell(&mut m, 0, rcx | 1 << 16, child.0, 0), ADVANCE);
    assert_eq!(
        status(&m, ROOT_PARTITION, 0),
        HvStatus::InvalidHypercallInput
    );
    assert_eq!(child_bytes(&mut m, child, 0, 8), [0; 8]);
}

// ---------------------------------------------------------------------------------------
// Read console.

#[test]
fn root_reads_a_childs_console_in_pieces() {
    let mut m = manager();
    let child = running_child(&mut m, 1);
    for &b in b"hi\n" {
        let out = IoPortAccess {
            value: u32::from(b),
            ..io(DEBUG_CONSOLE_PORT, 1, true)
        };
        assert_eq!(exit(&mut m, child, 0, ExitEvent::IoPort(out)), ADVANCE);
    }
    let (status, header) = read_console_call(&mut m, child);
    assert_eq!(status, HvStatus::Success);
    assert_eq!((header.length, header.remaining), (3, 0));
    assert_eq!(m.host().peek(OUTPUT + 8, 3), b"hi\n");
    assert!(m.partition(child).unwrap().console().is_empty());
    let (status, header) = read_console_call(&mut m, child);
    assert_eq!(status, HvStatus::Success);
    assert_eq!((header.length, header.remaining), (0, 0));

    // More than one call's worth: a full read, then the rest.
    let text = pattern(CONSOLE_READ_MAX + 100, 3);
    m.partition_mut(child).unwrap().console_write(&text);
    let (_, header) = read_console_call(&mut m, child);
    assert_eq!(
        (header.length as usize, header.remaining),
        (CONSOLE_READ_MAX, 100)
    );
    assert_eq!(
        m.host().peek(OUTPUT + 8, CONSOLE_READ_MAX),
        text[..CONSOLE_READ_MAX]
    );
    let (_, header) = read_console_call(&mut m, child);
    assert_eq!((header.length, header.remaining), (100, 0));
    assert_eq!(m.host().peek(OUTPUT + 8, 100), text[CONSOLE_READ_MAX..]);
}

#[test]
fn read_console_handler_fills_small_buffers_and_counts_the_rest() {
    let mut m = manager();
    let child = running_child(&mut m, 1);
    m.partition_mut(child).unwrap().console_write(b"abcdefghij");
    let mut buf = [0u8; 4];
    assert_eq!(m.read_console(&root_ctx(), child, &mut buf), Ok((4, 6)));
    assert_eq!(&buf, b"abcd");
    assert_eq!(m.read_console(&root_ctx(), child, &mut []), Ok((0, 6)));
    assert_eq!(m.read_console(&root_ctx(), child, &mut buf), Ok((4, 2)));
    assert_eq!(&buf, b"efgh");
    let mut big = [0u8; 64];
    assert_eq!(m.read_console(&root_ctx(), child, &mut big), Ok((2, 0)));
    assert_eq!(&big[..2], b"ij");
}

#[test]
fn read_console_refusals() {
    let mut m = manager();
    let a = running_child(&mut m, 1);
    let b = running_child(&mut m, 1);
    m.partition_mut(ROOT_PARTITION)
        .unwrap()
        .console_write(b"root");
    m.partition_mut(b).unwrap().console_write(b"sibling");
    // Not the root's own console (it is no child of itself).
    for target in [ROOT_PARTITION, PartitionId::SELF] {
        assert_eq!(read_console_call(&mut m, target).0, HvStatus::AccessDenied);
    }
    assert_eq!(
        read_console_call(&mut m, PartitionId(77)).0,
        HvStatus::InvalidPartitionId
    );
    // A sibling, even with the privilege.
    let privileged_a = CallerContext {
        partition_id: a,
        vp_index: 0,
        privileges: PartitionPrivileges::ROOT,
    };
    assert_eq!(
        m.read_console(&privileged_a, b, &mut [0; 16]),
        Err(HvError::AccessDenied)
    );
    // A child calling.
    m.guest_memory(a)
        .unwrap()
        .write(0, PartitionIdInput { partition_id: b.0 }.as_bytes())
        .unwrap();
    let rcx = simple_call(CallCode::MicaReadConsole.raw(), false);
    assert_eq!(vmmcall(&mut m, a, 0, rcx, 0, 0x1000), ADVANCE);
    assert_eq!(status(&m, a, 0), HvStatus::AccessDenied);
    // An output block that is not a whole page: nothing is consumed.
    m.host_mut()
        .write(INPUT, PartitionIdInput { partition_id: b.0 }.as_bytes());
    assert_eq!(doorbell(&mut m, 0, rcx, INPUT, OUTPUT + 8), ADVANCE);
    assert_eq!(status(&m, ROOT_PARTITION, 0), HvStatus::InvalidAlignment);
    // Outside root RAM (the child pool).
    assert_eq!(doorbell(&mut m, 0, rcx, INPUT, POOL_BASE), ADVANCE);
    assert_eq!(status(&m, ROOT_PARTITION, 0), HvStatus::InvalidAlignment);
    assert_eq!(m.partition(b).unwrap().console().contents(), b"sibling");
    assert_eq!(
        m.partition(ROOT_PARTITION).unwrap().console().contents(),
        b"root"
    );
}

#[test]
fn console_read_into_moves_the_oldest_bytes() {
    let mut console = Console::new(8);
    assert!(console.is_empty());
    assert_eq!(console.read_into(&mut [0; 4]), (0, 0));
    assert_eq!(console.push(b"0123456789"), 2, "two oldest bytes dropped");
    assert_eq!(console.len(), 8);
    let mut buf = [0u8; 3];
    assert_eq!(console.read_into(&mut buf), (3, 5));
    assert_eq!(&buf, b"234");
    assert_eq!(console.read_into(&mut []), (0, 5));
    let mut buf = [0xEEu8; 8];
    assert_eq!(console.read_into(&mut buf), (5, 0));
    assert_eq!(&buf, b"56789\xEE\xEE\xEE", "bytes past the data untouched");
    assert!(console.is_empty());
    assert_eq!(console.len(), 0);
}

// ---------------------------------------------------------------------------------------
// Hypervisor info.

#[test]
fn hypervisor_info_reports_pool_partitions_and_version() {
    let limits = Limits {
        max_partitions: 5,
        ..Limits::default()
    };
    let mut m = manager_with(limits);
    let info = info_call(&mut m);
    assert_eq!((info.version_major, info.version_minor), (0, 1));
    assert_eq!(info.build, MICA_BUILD);
    assert_eq!((info.backend, info.features), (0, 0), "no host info yet");
    assert_eq!(info.pool_total_pages, POOL_FRAMES);
    assert_eq!(info.pool_free_pages, POOL_FRAMES);
    assert_eq!((info.partitions, info.max_partitions), (1, 5));
    assert_eq!((info.protected_count, info.reserved), (0, 0));
    assert_eq!(
        info.protected,
        [ProtectedRange::default(); MAX_PROTECTED_RANGES]
    );

    let a = running_child(&mut m, 6);
    running_child(&mut m, 3);
    let info = info_call(&mut m);
    assert_eq!(info.pool_total_pages, POOL_FRAMES);
    assert_eq!(info.pool_free_pages, POOL_FRAMES - 9);
    assert_eq!(info.partitions, 3);
    // Pages come back on delete; the total never changes.
    m.stop_partition(&root_ctx(), a).unwrap();
    m.delete_partition(&root_ctx(), a).unwrap();
    let info = info_call(&mut m);
    assert_eq!(info.pool_total_pages, POOL_FRAMES);
    assert_eq!(info.pool_free_pages, POOL_FRAMES - 3);
    assert_eq!(info.partitions, 2);
    assert_eq!(m.pool().total_frames(), POOL_FRAMES);
    assert_eq!(m.pool().free_frames(), POOL_FRAMES - 3);
}

#[test]
fn hypervisor_info_reports_the_host_facts() {
    let mut m = manager();
    let features = (HostFeatures::NESTED_PAGING | HostFeatures::FLUSH_BY_ASID).bits();
    let mut protected = [(0xDEAD, 0xBEEF); MAX_PROTECTED_RANGES];
    protected[0] = (0x20_0000, 0x40_0000);
    protected[1] = (POOL_BASE, POOL_BASE + POOL_FRAMES * 4096);
    m.set_host_info(HostInfo {
        backend: BACKEND_SVM,
        features,
        protected,
        protected_count: 2,
    });
    let info = info_call(&mut m);
    assert_eq!(info.backend, BACKEND_SVM);
    assert_eq!(info.features, features);
    assert_eq!(info.protected_count, 2);
    assert_eq!(
        info.protected[..2],
        [
            ProtectedRange {
                start: 0x20_0000,
                end: 0x40_0000
            },
            ProtectedRange {
                start: POOL_BASE,
                end: POOL_BASE + POOL_FRAMES * 4096
            },
        ]
    );
    // Entries beyond the count are zero, not whatever the host table held.
    assert!(
        info.protected[2..]
            .iter()
            .all(|r| *r == ProtectedRange::default())
    );

    // A count beyond the table reports the table.
    let ranges: [(u64, u64); MAX_PROTECTED_RANGES] =
        core::array::from_fn(|i| (i as u64 * 0x1000, i as u64 * 0x1000 + 0x800));
    m.set_host_info(HostInfo {
        protected: ranges,
        protected_count: 100,
        ..HostInfo::default()
    });
    let info = info_call(&mut m);
    assert_eq!(info.protected_count, MAX_PROTECTED_RANGES as u32);
    for (got, &(start, end)) in info.protected.iter().zip(&ranges) {
        assert_eq!(*got, ProtectedRange { start, end });
    }
}

#[test]
fn hypervisor_info_is_for_the_root_only() {
    let mut m = manager();
    let child = running_child(&mut m, 2);
    let rcx = simple_call(CallCode::MicaGetHypervisorInfo.raw(), false);
    assert_eq!(vmmcall(&mut m, child, 0, rcx, 0, 0x1000), ADVANCE);
    assert_eq!(status(&m, child, 0), HvStatus::AccessDenied);
    assert_eq!(child_bytes(&mut m, child, 0x1000, 8), [0; 8]);
    // An output block in the child pool is not root RAM.
    assert_eq!(doorbell(&mut m, 0, rcx, 0, POOL_BASE), ADVANCE);
    assert_eq!(status(&m, ROOT_PARTITION, 0), HvStatus::InvalidAlignment);
}

// ---------------------------------------------------------------------------------------
// Stop-reason properties.

#[test]
fn stop_reason_properties_follow_the_child() {
    let mut m = manager();
    let child = new_child(&mut m, 2, MapGpaFlags::READABLE);
    assert_eq!(stop_properties(&mut m, child), (0, 0), "never ran");
    let cases: [(ExitEvent, u64, u64); 7] = [
        (
            ExitEvent::IoPort(IoPortAccess {
                value: 0x2A,
                ..io(EXIT_PORT, 1, true)
            }),
            u64::from(stop_code::EXITED) | 0x2A << 32,
            0,
        ),
        (
            ExitEvent::MemoryFault {
                gpa: 0x7000_1234,
                access: MemoryAccess::Read,
            },
            u64::from(stop_code::OUTSIDE_MEMORY),
            0x7000_1234,
        ),
        (
            ExitEvent::MemoryFault {
                gpa: 0x1008,
                access: MemoryAccess::Write,
            },
            u64::from(stop_code::ACCESS_VIOLATION),
            0x1008,
        ),
        (
            ExitEvent::IoPort(io(0x60, 1, false)),
            u64::from(stop_code::BAD_IO_PORT) | (0x60 | 1 << 16) << 32,
            0,
        ),
        (
            ExitEvent::TripleFault,
            u64::from(stop_code::TRIPLE_FAULT),
            0,
        ),
        (
            ExitEvent::InvalidState,
            u64::from(stop_code::INVALID_STATE),
            0,
        ),
        (
            ExitEvent::Unknown {
                code: 0x1_0000_0401,
            },
            u64::from(stop_code::UNHANDLED_EXIT) | 0x401 << 32,
            0,
        ),
    ];
    for (event, reason, gpa) in cases {
        m.start_partition(&root_ctx(), child).unwrap();
        assert_eq!(stop_properties(&mut m, child), (0, 0), "running again");
        assert!(matches!(
            exit(&mut m, child, 0, event),
            ExitAction::StopPartition { .. }
        ));
        assert_eq!(stop_properties(&mut m, child), (reason, gpa), "{event:?}");
    }
    m.start_partition(&root_ctx(), child).unwrap();
    m.stop_partition(&root_ctx(), child).unwrap();
    assert_eq!(
        stop_properties(&mut m, child),
        (u64::from(stop_code::REQUESTED), 0)
    );
    // Read through the hypercall too.
    let input = hypercall::abi::GetPartitionPropertyInput {
        partition_id: child.0,
        property_code: properties::MICA_STOP_REASON,
        reserved: 0,
    };
    assert_eq!(
        root_slow(&mut m, CallCode::GetPartitionProperty, input.as_bytes()),
        HvStatus::Success
    );
    assert_eq!(
        m.host().peek(OUTPUT, 8),
        u64::from(stop_code::REQUESTED).to_le_bytes()
    );
}

#[test]
fn stop_reason_codes_and_gpas() {
    let access = MemoryAccess::Execute;
    let cases = [
        (StopReason::Requested, 1, 0),
        (StopReason::Exited(u32::MAX), 2 | 0xFFFF_FFFF << 32, 0),
        (StopReason::TripleFault, 3, 0),
        (
            StopReason::BadIoPort {
                port: 0x92,
                size: 4,
                write: true,
            },
            4 | (0x92 | 4 << 16 | 1 << 24) << 32,
            0,
        ),
        (
            StopReason::OutsideMemory {
                gpa: u64::MAX,
                access,
            },
            5,
            u64::MAX,
        ),
        (
            StopReason::AccessViolation {
                gpa: 0x1000,
                access,
            },
            6,
            0x1000,
        ),
        (StopReason::InvalidState, 7, 0),
        (StopReason::HypervisorLimit, 8, 0),
        (
            StopReason::UnhandledExit {
                code: 0xFFFF_FFFF_0000_0078,
            },
            9 | 0x78 << 32,
            0,
        ),
    ];
    for (reason, code, gpa) in cases {
        assert_eq!(reason.code(), code, "{reason:?}");
        assert_eq!(reason.gpa(), gpa, "{reason:?}");
        // The kind is in bits 7:0 and bits 31:8 stay clear.
        assert_eq!(reason.code() & 0xFFFF_FF00, 0);
        assert_ne!(reason.code() & 0xFF, u64::from(stop_code::NONE));
    }
}

#[test]
fn bad_io_port_stop_codes_keep_port_size_and_write_apart() {
    let code = |port, size, write| StopReason::BadIoPort { port, size, write }.code();
    assert_ne!(code(0x2F8, 1, true), code(0x3F8, 1, true));
    assert_ne!(code(0x1F0, 2, false), code(0x3F0, 2, false));
    assert_ne!(code(0x100, 1, false), code(0x100, 2, false));
}

// ---------------------------------------------------------------------------------------
// Property: nothing the root does at a port or an MSR stops it or touches EFER.SVME.

#[derive(Clone, Copy, Debug)]
enum RootExit {
    Io(IoPortAccess),
    MsrWrite(u32, u64),
    MsrRead(u32),
}

fn arb_port() -> impl Strategy<Value = u16> {
    prop_oneof![
        3 => Just(DOORBELL_PORT),
        1 => Just(DEBUG_CONSOLE_PORT),
        1 => Just(EXIT_PORT),
        1 => Just(0x3F8u16),
        2 => any::<u16>(),
    ]
}

fn arb_io() -> impl Strategy<Value = IoPortAccess> {
    (
        arb_port(),
        prop_oneof![4 => Just(1u8), 2 => Just(2u8), 2 => Just(4u8), 1 => any::<u8>()],
        any::<bool>(),
        any::<u32>(),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.15),
    )
        .prop_map(|(port, size, write, value, string, rep)| IoPortAccess {
            port,
            size,
            write,
            value,
            string,
            rep,
        })
}

fn arb_msr() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => Just(root_msrs::EFER),
        1 => prop::sample::select(root_msrs::WRITE_INTERCEPTED.to_vec()),
        1 => 0xFEu32..=0x2FF,
        1 => 0x4000_0000u32..0x4000_0100,
        1 => any::<u32>(),
    ]
}

fn arb_msr_value() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(EFER_LONG),
        Just(EFER_LONG | EFER_SVME),
        any::<u64>(),
        any::<u64>().prop_map(|v| v & !EFER_SVME),
    ]
}

fn arb_root_exit() -> impl Strategy<Value = RootExit> {
    prop_oneof![
        3 => arb_io().prop_map(RootExit::Io),
        3 => (arb_msr(), arb_msr_value()).prop_map(|(m, v)| RootExit::MsrWrite(m, v)),
        1 => arb_msr().prop_map(RootExit::MsrRead),
    ]
}

/// RCX/RDX/R8 for a doorbell: mostly a real Mica call with the parameter pages, else noise.
fn arb_call_registers() -> impl Strategy<Value = (u64, u64, u64)> {
    let codes = prop::sample::select(CallCode::ALL.to_vec());
    prop_oneof![
        (codes, any::<bool>()).prop_map(|(c, fast)| (simple_call(c.raw(), fast), INPUT, OUTPUT)),
        (any::<u64>(), any::<u64>(), any::<u64>()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn root_io_and_msr_exits_never_stop_the_root_or_touch_svme(
        exits in prop::collection::vec((0u32..2, arb_call_registers(), arb_root_exit()), 1..24),
        cpl in prop_oneof![Just(0u16), Just(3u16)],
        input in prop::collection::vec(any::<u8>(), 64),
    ) {
        let mut m = manager();
        // A child for run-partitions and the management calls to find.
        running_child(&mut m, 2);
        m.host_mut().write(INPUT, &input);
        for vp in 0..2 {
            long_mode(&mut m.vcpu_mut(ROOT_PARTITION, vp).unwrap().regs, cpl);
        }
        for (vp, (rcx, rdx, r8), root_exit) in exits {
            set_call(&mut m, ROOT_PARTITION, vp, rcx, rdx, r8);
            let event = match root_exit {
                RootExit::Io(access) => ExitEvent::IoPort(access),
                RootExit::MsrWrite(msr, value) => ExitEvent::MsrWrite { msr, value },
                RootExit::MsrRead(msr) => ExitEvent::MsrRead { msr },
            };
            let action = exit(&mut m, ROOT_PARTITION, vp, event);
            prop_assert!(
                matches!(
                    action,
                    ExitAction::Resume { advance_rip: true }
                        | ExitAction::Inject { vector: VECTOR_GP, error_code: Some(0) }
                        | ExitAction::RunPartitions
                ),
                "{:?} -> {:?}", event, action
            );
            let root = m.partition(ROOT_PARTITION).unwrap();
            prop_assert_eq!(root.state(), PartitionState::Running);
            prop_assert_eq!(root.stop_reason(), None);
            for vcpu in root.vcpus() {
                prop_assert_eq!(vcpu.regs.efer & EFER_SVME, 0, "{:?}", event);
            }
            // A write of EFER with SVME is refused as a whole.
            if let RootExit::MsrWrite(root_msrs::EFER, value) = root_exit
                && value & EFER_SVME != 0
            {
                prop_assert_eq!(action, GP);
            }
        }
        prop_assert_eq!(m.partition(ROOT_PARTITION).unwrap().vcpus().count(), 2);
    }
}
