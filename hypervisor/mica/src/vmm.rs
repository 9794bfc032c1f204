//! Child partitions on AMD SVM: the boot-time launch list (test-only until the root partition
//! exists), the per-CPU run loop, and the bare-metal implementations of the `partition`
//! crate's hardware traits. All policy lives in `partition` (what an exit means) and `svm`
//! (what a VMCB holds); this module moves registers between them and executes VMRUN.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use boot_info::BootInfo;
use frame_alloc::{FrameAllocator, MemoryRegions, PhysRange};
use hypercall::abi::RunExitReason;
use hypercall::{
    CallerContext, CreatePartitionParams, CreateVpParams, HypercallHandler, MapGpaFlags,
    PartitionId, PartitionPrivileges,
};
use log::{info, warn};
use paging::{FrameSource, LongMode};
use partition::npt::NestedTables;
use partition::{
    CpuidResult, ExitAction, ExitEvent, Gpr, HostPhysMemory, IoPortAccess, Limits, MemoryAccess,
    MemoryPool, PartitionManager, Platform, ROOT_PARTITION, Scheduler, SegmentRegister, StopReason,
    VcpuRef, VcpuRegisters, handle_exit,
};
use svm::{
    AsidAllocator, Event, ExceptionIntercepts, IOPM_SIZE, IoPermissionMap, MSRPM_SIZE,
    MsrPermissionMap, SvmExit, TlbControl, Vmcb, VmcbSegment,
};
use zerocopy::FromZeros;

use crate::arch::svm::{self as svm_hw, GuestGprs};
use crate::arch::{fpu, lapic};
use crate::memory::{FRAMES, IdentityTables};
use crate::println;

/// RAM given to each launched test partition.
const CHILD_RAM: u64 = 4 << 20;
/// Child-memory pool used when `pool=` is not given but partitions are launched.
const DEFAULT_POOL: u64 = 64 << 20;
/// Local APIC timer period (APIC timer ticks at bus clock / 16) and ticks per time slice.
const TIMER_PERIOD: u32 = 50_000;
const SLICE_TICKS: u32 = 2;
/// VMMCALL, which `HV_X64_MSR_HYPERCALL` pages contain on AMD.
const VMMCALL: [u8; 3] = [0x0F, 0x01, 0xD9];

/// Why the launch list could not run (printed, then the hypervisor stops with failure).
#[derive(Debug)]
pub enum LaunchError {
    /// The CPU has no usable SVM (VMX backend not written yet).
    NoSvm(&'static str),
    /// No boot module carries the label.
    NoModule(alloc::string::String),
    /// The pool could not be reserved.
    Pool(&'static str),
    /// Loading the guest image failed.
    Load(guest_loader::LoadError),
    /// A management call failed.
    Hypercall(&'static str, hypercall::HvError),
    /// Out of ASIDs.
    Asid,
}

impl core::fmt::Display for LaunchError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoSvm(reason) => {
                write!(f, "Partitions need AMD SVM with nested paging: {reason}")
            }
            Self::NoModule(label) => write!(f, "No boot module is labelled '{label}'"),
            Self::Pool(why) => write!(f, "Child-memory pool: {why}"),
            Self::Load(e) => write!(f, "Loading the guest image: {e}"),
            Self::Hypercall(what, e) => write!(f, "{what}: {e:?}"),
            Self::Asid => write!(f, "Out of ASIDs"),
        }
    }
}

/// The child-memory pool: a contiguous range reserved at boot, handed out frame by frame.
pub(crate) struct ChildPool(FrameAllocator<'static>);

impl MemoryPool for ChildPool {
    fn allocate(&mut self) -> Option<u64> {
        self.0.allocate()
    }

    fn free(&mut self, hpa: u64) {
        if let Err(error) = self.0.free(hpa) {
            warn!("pool: freeing {hpa:#x} failed: {error}");
        }
    }

    fn free_frames(&self) -> u64 {
        self.0.free_frames()
    }

    fn total_frames(&self) -> u64 {
        self.0.total_frames()
    }
}

/// Host physical memory through the hypervisor's identity map.
pub(crate) struct HostMemory;

impl HostPhysMemory for HostMemory {
    fn read(&self, hpa: u64, buf: &mut [u8]) {
        // SAFETY: `partition` passes only host-physical ranges of frames it owns (pool frames
        // mapped into a child, never crossing a frame), which are RAM, identity mapped
        // read-write in the hypervisor's tables and not referenced by any Rust object.
        unsafe { core::ptr::copy_nonoverlapping(hpa as *const u8, buf.as_mut_ptr(), buf.len()) };
    }

    fn write(&mut self, hpa: u64, data: &[u8]) {
        // SAFETY: as in `read`; the frame belongs to a child partition, so writing it cannot
        // touch hypervisor data.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), hpa as *mut u8, data.len()) };
    }
}

/// Zeroed frames for nested page tables, from the hypervisor's frame allocator.
pub(crate) struct TableFrames;

impl FrameSource for TableFrames {
    fn allocate_table(&mut self) -> Option<u64> {
        let frame = FRAMES.lock().as_mut()?.allocate()?;
        // SAFETY: the frame was just allocated for this table alone and is identity mapped.
        unsafe { core::ptr::write_bytes(frame as *mut u8, 0, 4096) };
        Some(frame)
    }

    fn release_table(&mut self, table: u64) {
        // Released only after the TLB flush the caller performs before the next VMRUN of any
        // partition on this (single) CPU; nothing can hold the frame in a TLB afterwards.
        if let Some(frames) = FRAMES.lock().as_mut()
            && let Err(error) = frames.free(table)
        {
            warn!("npt: freeing table {table:#x} failed: {error}");
        }
    }
}

/// The host facts `partition` asks for.
struct SvmPlatform;

impl Platform for SvmPlatform {
    fn host_cpuid(&self, leaf: u32, subleaf: u32) -> CpuidResult {
        let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
        CpuidResult {
            eax: r.eax,
            ebx: r.ebx,
            ecx: r.ecx,
            edx: r.edx,
        }
    }

    fn hypercall_instruction(&self) -> [u8; 3] {
        VMMCALL
    }

    fn read_tsc(&self) -> u64 {
        crate::arch::rdtsc()
    }
}

type Manager =
    PartitionManager<ChildPool, NestedTables<IdentityTables, TableFrames, LongMode>, HostMemory>;

/// A 4 KiB-aligned page-sized buffer on the heap (heap memory is identity mapped, so its
/// address is its physical address).
#[repr(C, align(4096))]
pub(crate) struct Aligned<const N: usize>(pub(crate) [u8; N]);

pub(crate) fn physical<T>(value: &T) -> u64 {
    value as *const T as u64
}

/// What SVM keeps per vCPU.
struct SvmVcpu {
    vmcb: Box<Vmcb>,
    /// x87/SSE/AVX state while another vCPU owns the registers.
    fpu: Box<fpu::FpuArea>,
    gprs: GuestGprs,
    /// RIP after the exiting instruction, from the last decoded exit.
    next_rip: u64,
    /// Hypercalls completed on the fast path (not in the partition's counters).
    inline_hypercalls: u64,
}

/// One physical CPU running child vCPUs.
pub(crate) struct Runner {
    manager: Manager,
    scheduler: Scheduler,
    vcpus: BTreeMap<(u64, u32), SvmVcpu>,
    asids: AsidAllocator,
    partition_asid: BTreeMap<u64, svm::Asid>,
    names: BTreeMap<u64, alloc::string::String>,
    console_lines: BTreeMap<u64, Vec<u8>>,
    /// Labels whose end ends the run (empty: all).
    wait: Vec<alloc::string::String>,
    host_vmcb: Box<Aligned<4096>>,
    _host_save: Box<Aligned<4096>>,
    iopm: Box<Aligned<IOPM_SIZE>>,
    msrpm: Box<Aligned<MSRPM_SIZE>>,
    nrip: bool,
    last_tick: u64,
    fpu_mode: fpu::Mode,
    /// The vCPU whose FPU state is live in the registers.
    fpu_owner: Option<(u64, u32)>,
    /// XCR0 the hypervisor set for children.
    hv_xcr0: u64,
    /// A root partition drives the children (run-partitions calls); the hypervisor does
    /// not touch the local APIC and does not print children's consoles.
    root_mode: bool,
    /// Child partitions whose vCPUs are in the scheduler.
    scheduled: alloc::collections::BTreeSet<u64>,
    /// The root's permission maps (kept alive while its VMCB points at them).
    _root_maps: Option<(Box<Aligned<IOPM_SIZE>>, Box<Aligned<MSRPM_SIZE>>)>,
}

/// What one guest entry ended with, for the run-partitions loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Keep going.
    Continue,
    /// A physical interrupt arrived (root mode: it belongs to the root).
    Interrupted,
    /// The partition stopped.
    Stopped,
    /// The partition completed a console line.
    ConsoleLine,
    /// The root asked to run the children.
    RunPartitions,
}

/// Splits a module command line into (label, guest arguments). A leading path (QEMU and
/// GRUB put the file name first) is skipped.
pub(crate) fn module_label(cmdline: &str) -> (&str, &str) {
    let mut rest = cmdline.trim();
    let first = rest.split_whitespace().next().unwrap_or("");
    if first.contains('/') || first.ends_with(".elf") {
        rest = rest[first.len()..].trim_start();
    }
    let label = rest.split_whitespace().next().unwrap_or("");
    (label, rest[label.len()..].trim())
}

/// Runs the partitions named by `launch=` until all have stopped. Returns the number of
/// partitions that did not exit with status 0 (informative: the hypervisor itself succeeded
/// if it kept every partition in its box).
pub fn run_launch_list(
    boot: &BootInfo,
    launch: &[&str],
    wait: &[&str],
    pool_bytes: Option<u64>,
    cpu: &cpu_features::CpuReport,
) -> Result<usize, LaunchError> {
    let svm_features = match cpu.virt_support() {
        cpu_features::VirtSupport::Svm(features) => features,
        cpu_features::VirtSupport::Vmx(_) => {
            return Err(LaunchError::NoSvm(
                "this is an Intel VMX CPU; the VMX backend is not written yet",
            ));
        }
        cpu_features::VirtSupport::None(reason) => return Err(LaunchError::NoSvm(reason)),
    };
    let pool = reserve_pool(pool_bytes.unwrap_or(DEFAULT_POOL))?;
    let format = LongMode::nested(cpu.paging.phys_addr_bits)
        .ok_or(LaunchError::Pool("unsupported physical address width"))?;
    let tables = NestedTables::new(IdentityTables, TableFrames, format);
    let manager = PartitionManager::new(Limits::default(), pool, tables, HostMemory, &[])
        .map_err(|_| LaunchError::Pool("partition manager"))?;
    let mut runner = Runner::new(manager, svm_features, cpu);
    for label in launch {
        runner.launch(boot, label)?;
    }
    for label in wait {
        if !launch.contains(label) {
            return Err(LaunchError::NoModule(alloc::format!(
                "{label} (named by wait= but not launched)"
            )));
        }
    }
    runner.wait = wait
        .iter()
        .map(|w| alloc::string::String::from(*w))
        .collect();
    lapic::arm_periodic(TIMER_PERIOD);
    runner.run();
    lapic::disarm();
    Ok(runner.report())
}

/// CPUID.1:ECX.AVX (bit 28): AVX state may be enabled in XCR0.
fn avx_supported() -> bool {
    core::arch::x86_64::__cpuid_count(1, 0).ecx & (1 << 28) != 0
}

pub(crate) fn reserve_pool(bytes: u64) -> Result<ChildPool, LaunchError> {
    let frames_needed = bytes.div_ceil(4096);
    let start = FRAMES
        .lock()
        .as_mut()
        .ok_or(LaunchError::Pool("memory not initialised"))?
        .allocate_contiguous(frames_needed, 2 << 20)
        .map_err(|_| LaunchError::Pool("not enough contiguous free memory for pool="))?;
    let range = PhysRange::new(start, start + frames_needed * 4096);
    let regions = MemoryRegions::new(&[range], &[]).map_err(|_| LaunchError::Pool("regions"))?;
    let words = regions
        .bitmap_words()
        .map_err(|_| LaunchError::Pool("bitmap"))?;
    let bitmap: &'static mut [u64] = Box::leak(vec![0u64; words].into_boxed_slice());
    let frames =
        FrameAllocator::new(&regions, bitmap).map_err(|_| LaunchError::Pool("allocator"))?;
    info!(
        "child-memory pool: {} MiB at {:#x}..{:#x}",
        bytes >> 20,
        range.start,
        range.end
    );
    Ok(ChildPool(frames))
}

/// The root's identity for management calls made by the hypervisor on its behalf (the boot
/// launch list goes through the same checked calls the root partition will make).
fn root_caller() -> CallerContext {
    CallerContext {
        partition_id: PartitionId(ROOT_PARTITION.0),
        vp_index: 0,
        privileges: PartitionPrivileges::ROOT,
    }
}

impl Runner {
    /// A runner on this CPU: enables SVM and the FPU state switching.
    pub(crate) fn new(
        manager: Manager,
        svm_features: cpu_features::SvmFeatures,
        cpu: &cpu_features::CpuReport,
    ) -> Self {
        let host_save = Box::new(Aligned([0u8; 4096]));
        let host_vmcb = Box::new(Aligned([0u8; 4096]));
        svm_hw::enable(physical(&*host_save), physical(&*host_vmcb));
        let mut iopm = Box::new(Aligned([0u8; IOPM_SIZE]));
        IoPermissionMap::intercept_all(&mut iopm.0);
        let mut msrpm = Box::new(Aligned([0u8; MSRPM_SIZE]));
        MsrPermissionMap::intercept_all(&mut msrpm.0);
        let fpu_mode = fpu::enable(cpu.paging.xsave, avx_supported());
        Self {
            manager,
            scheduler: Scheduler::new(SLICE_TICKS),
            vcpus: BTreeMap::new(),
            asids: AsidAllocator::new(svm_features.asids, svm_features.flush_by_asid()),
            partition_asid: BTreeMap::new(),
            names: BTreeMap::new(),
            console_lines: BTreeMap::new(),
            wait: Vec::new(),
            host_vmcb,
            _host_save: host_save,
            iopm,
            msrpm,
            nrip: svm_features.nrip_save(),
            last_tick: lapic::ticks(),
            fpu_mode,
            fpu_owner: None,
            hv_xcr0: if fpu_mode == fpu::Mode::Xsave {
                fpu::xcr0()
            } else {
                0
            },
            root_mode: false,
            scheduled: alloc::collections::BTreeSet::new(),
            _root_maps: None,
        }
    }

    fn launch(&mut self, boot: &BootInfo, label: &str) -> Result<(), LaunchError> {
        println!("bench: partition_create_tsc={}", crate::arch::rdtsc());
        let module = boot
            .modules
            .as_slice()
            .iter()
            .find(|m| module_label(m.cmdline.as_str()).0 == label)
            .ok_or_else(|| LaunchError::NoModule((*label).into()))?;
        let args = module_label(module.cmdline.as_str()).1;
        let caller = root_caller();
        let id = self
            .manager
            .create_partition(
                &caller,
                &CreatePartitionParams {
                    flags: 0,
                    proximity_domain_info: 0,
                    compatibility_version: 0,
                    disabled_processor_features: [0; 2],
                    disabled_processor_xsave_features: 0,
                },
            )
            .map_err(|e| LaunchError::Hypercall("create partition", e))?;
        self.manager
            .initialize_partition(&caller, id)
            .map_err(|e| LaunchError::Hypercall("initialize partition", e))?;
        let flags = MapGpaFlags::READABLE | MapGpaFlags::WRITABLE | MapGpaFlags::KERNEL_EXECUTABLE;
        for page in 0..CHILD_RAM / 4096 {
            self.manager
                .map_pool_page(&caller, id, page, flags)
                .map_err(|e| LaunchError::Hypercall("map pool pages", e))?;
        }
        // The module is boot-loader memory, identity mapped, reserved from the allocator.
        let image_len = usize::try_from(module.end - module.start).unwrap_or(0);
        // SAFETY: [start, end) is a boot module: RAM the loader filled, kept out of the frame
        // allocator and the pool, identity mapped read-write, never written by the hypervisor.
        let image = unsafe { core::slice::from_raw_parts(module.start as *const u8, image_len) };
        let state = {
            let mut ram = PartitionRam {
                manager: core::cell::RefCell::new(&mut self.manager),
                id: PartitionId(id.0),
            };
            guest_loader::load(
                image,
                &guest_loader::LoadParams {
                    partition_id: id.0,
                    vp_index: 0,
                    args,
                },
                &mut ram,
            )
            .map_err(LaunchError::Load)?
        };
        self.manager
            .create_vp(
                &caller,
                id,
                &CreateVpParams {
                    vp_index: 0,
                    subnode_type: 0,
                    subnode_id: 0,
                    proximity_domain_info: 0,
                },
            )
            .map_err(|e| LaunchError::Hypercall("create VP", e))?;
        let pid = PartitionId(id.0);
        if let Some(vcpu) = self.manager.vcpu_mut(pid, 0) {
            apply_initial_state(&mut vcpu.regs, &state);
        }
        if !self.ensure_backend((id.0, 0)) {
            return Err(LaunchError::Asid);
        }
        let n_cr3 = self
            .manager
            .partition(pid)
            .and_then(|p| p.second_level_root())
            .unwrap_or(0);
        self.manager
            .start_partition(&caller, id)
            .map_err(|e| LaunchError::Hypercall("start partition", e))?;
        self.scheduler.enqueue(VcpuRef {
            partition: pid,
            vp_index: 0,
        });
        self.scheduled.insert(id.0);
        self.names.insert(id.0, label.into());
        let (small, large, _) = self.manager.second_level_mut().leaf_counts(n_cr3);
        info!(
            "partition {} '{label}' created: {} MiB, args \"{args}\", nested paging: {large} x 2 MiB + {small} x 4 KiB",
            id.0,
            CHILD_RAM >> 20
        );
        Ok(())
    }

    /// SVM state for vCPU `key` of a child, created on first use (registers are loaded from
    /// the manager before every entry). `false` if no ASID is left.
    fn ensure_backend(&mut self, key: (u64, u32)) -> bool {
        if self.vcpus.contains_key(&key) {
            return true;
        }
        let (asid, tlb) = match self.partition_asid.get(&key.0) {
            Some(&asid) => (asid, self.asids.on_mapping_change()),
            None => {
                let Ok(grant) = self.asids.allocate() else {
                    return false;
                };
                self.partition_asid.insert(key.0, grant.asid);
                (grant.asid, grant.first_run)
            }
        };
        let n_cr3 = self
            .manager
            .partition(PartitionId(key.0))
            .and_then(|p| p.second_level_root())
            .unwrap_or(0);
        let mut vmcb = Box::new(Vmcb::new_zeroed());
        vmcb.init_long_mode_guest(
            0,
            0,
            0,
            asid,
            n_cr3,
            physical(&*self.iopm),
            physical(&*self.msrpm),
        );
        vmcb.control.set_tlb_control(tlb);
        // #DF too: `partition` stops a guest whose IDT cannot deliver it (the shutdown to
        // come), which also covers emulators that reset instead of exiting on SHUTDOWN.
        let exceptions = vmcb.control.exception_intercepts() | ExceptionIntercepts::DF;
        vmcb.control.set_exception_intercepts(exceptions);
        self.insert_backend(key, vmcb);
        true
    }

    fn insert_backend(&mut self, key: (u64, u32), vmcb: Box<Vmcb>) {
        self.vcpus.insert(
            key,
            SvmVcpu {
                vmcb,
                fpu: Box::new(fpu::FpuArea::new()),
                gprs: GuestGprs::default(),
                next_rip: 0,
                inline_hypercalls: 0,
            },
        );
    }

    /// Root mode: the root drives the children; the hypervisor leaves the local APIC alone.
    pub(crate) fn set_root_mode(&mut self) {
        self.root_mode = true;
        self.names.insert(ROOT_PARTITION.0, "root".into());
    }

    /// A fresh ASID (for the root).
    pub(crate) fn allocate_asid(&mut self) -> Option<svm::AsidGrant> {
        self.asids.allocate().ok()
    }

    /// The root vCPU's VMCB, and the permission maps it points at.
    pub(crate) fn add_root_backend(
        &mut self,
        vmcb: Box<Vmcb>,
        iopm: Box<Aligned<IOPM_SIZE>>,
        msrpm: Box<Aligned<MSRPM_SIZE>>,
    ) {
        self.insert_backend((ROOT_PARTITION.0, 0), vmcb);
        self._root_maps = Some((iopm, msrpm));
    }

    /// Leaf counts of nested tables rooted at `root` (4 KiB, 2 MiB, 1 GiB).
    pub(crate) fn leaf_counts(&mut self, root: u64) -> (u64, u64, u64) {
        self.manager.second_level_mut().leaf_counts(root)
    }

    /// Runs the root partition until it stops; returns why it stopped.
    pub(crate) fn run_root(&mut self) -> alloc::string::String {
        let root = VcpuRef {
            partition: ROOT_PARTITION,
            vp_index: 0,
        };
        loop {
            match self.run_once(root) {
                Outcome::RunPartitions => {
                    let (reason, partition) = self.run_children();
                    partition::finish_run_partitions(&mut self.manager, 0, reason, partition);
                    let next_rip = self
                        .vcpus
                        .get(&(ROOT_PARTITION.0, 0))
                        .map_or(0, |b| b.next_rip);
                    self.set_rip(root, next_rip);
                }
                Outcome::Stopped => {
                    return self
                        .manager
                        .partition(ROOT_PARTITION)
                        .and_then(|p| p.stop_reason())
                        .as_ref()
                        .map_or_else(|| "stopped".into(), describe);
                }
                Outcome::Continue | Outcome::Interrupted | Outcome::ConsoleLine => {}
            }
        }
    }

    /// Lends the CPU to the children until an event for the root.
    fn run_children(&mut self) -> (RunExitReason, Option<PartitionId>) {
        self.sync_partitions();
        // The root's FPU state (and its XCR0, which SVM does not switch) is put aside while
        // children run, and restored before the root resumes.
        let root_xcr0 = (self.fpu_mode == fpu::Mode::Xsave).then(fpu::xcr0);
        self.release_fpu();
        if let Some(xcr0) = root_xcr0
            && xcr0 != self.hv_xcr0
        {
            fpu::set_xcr0(self.hv_xcr0);
        }
        let result = loop {
            let Some(vref) = self.scheduler.next(&self.manager) else {
                break (RunExitReason::Idle, None);
            };
            match self.run_once(vref) {
                Outcome::Continue | Outcome::RunPartitions => {}
                Outcome::Interrupted => {
                    self.scheduler.yield_current();
                    break (RunExitReason::Interrupted, None);
                }
                Outcome::Stopped => {
                    self.scheduled.remove(&vref.partition.0);
                    break (RunExitReason::PartitionStopped, Some(vref.partition));
                }
                Outcome::ConsoleLine => break (RunExitReason::ConsoleOutput, Some(vref.partition)),
            }
        };
        self.release_fpu();
        if let Some(xcr0) = root_xcr0
            && xcr0 != self.hv_xcr0
        {
            fpu::set_xcr0(xcr0);
        }
        result
    }

    /// Saves the live FPU state to its owner, leaving no owner.
    fn release_fpu(&mut self) {
        if let Some(owner) = self.fpu_owner.take()
            && let Some(previous) = self.vcpus.get_mut(&owner)
        {
            fpu::save(self.fpu_mode, &mut previous.fpu);
        }
    }

    /// Brings the scheduler and the SVM state in line with the manager after the root's
    /// management calls: started children are queued, stopped ones dequeued, deleted ones
    /// lose their VMCBs and ASID.
    fn sync_partitions(&mut self) {
        let mut start = Vec::new();
        let mut stop = Vec::new();
        for p in self.manager.partitions() {
            let id = p.id().0;
            if id == ROOT_PARTITION.0 {
                continue;
            }
            let running = p.state() == partition::PartitionState::Running;
            if running && !self.scheduled.contains(&id) {
                start.extend(p.vcpus().map(|v| (id, v.index())));
            } else if !running && self.scheduled.contains(&id) {
                stop.push(id);
            }
        }
        for id in stop {
            self.scheduler.remove_partition(PartitionId(id));
            self.scheduled.remove(&id);
        }
        for (id, index) in start {
            if self.ensure_backend((id, index)) {
                self.scheduler.enqueue(VcpuRef {
                    partition: PartitionId(id),
                    vp_index: index,
                });
                self.scheduled.insert(id);
            }
        }
        let gone: Vec<u64> = self
            .partition_asid
            .keys()
            .copied()
            .filter(|&id| self.manager.partition(PartitionId(id)).is_none())
            .collect();
        for id in gone {
            let keys: Vec<(u64, u32)> = self
                .vcpus
                .range((id, 0)..=(id, u32::MAX))
                .map(|(k, _)| *k)
                .collect();
            for key in keys {
                self.vcpus.remove(&key);
                if self.fpu_owner == Some(key) {
                    self.fpu_owner = None;
                }
            }
            if let Some(asid) = self.partition_asid.remove(&id)
                && let Err(error) = self.asids.free(asid)
            {
                warn!("partition {id}: freeing its ASID failed: {error:?}");
            }
            self.scheduler.remove_partition(PartitionId(id));
            self.scheduled.remove(&id);
            self.names.remove(&id);
            self.console_lines.remove(&id);
        }
    }

    fn is_running(&self, id: u64) -> bool {
        self.manager
            .partition(PartitionId(id))
            .is_some_and(|p| p.stop_reason().is_none())
    }

    /// Whether every partition the run waits for has stopped.
    fn finished(&self) -> bool {
        self.names
            .iter()
            .filter(|(_, name)| self.wait.is_empty() || self.wait.contains(name))
            .all(|(&id, _)| !self.is_running(id))
    }

    fn run(&mut self) {
        loop {
            if self.finished() {
                // Stop whatever is left (partitions the run does not wait for).
                self.stop_remaining();
                return;
            }
            let Some(vcpu) = self.scheduler.next(&self.manager) else {
                // Nothing runnable: children have no interrupt sources yet, so halted vCPUs
                // would sleep forever. Stop them and end.
                self.stop_remaining();
                return;
            };
            let _ = self.run_once(vcpu);
        }
    }

    fn run_once(&mut self, vref: VcpuRef) -> Outcome {
        let key = (vref.partition.0, vref.vp_index);
        let flush = self.manager.take_tlb_flush(vref.partition);
        let Some(regs) = self
            .manager
            .vcpu_mut(vref.partition, vref.vp_index)
            .map(|v| v.regs)
        else {
            self.scheduler.remove_partition(vref.partition);
            return Outcome::Stopped;
        };
        let Some(backend) = self.vcpus.get_mut(&key) else {
            self.scheduler.remove_partition(vref.partition);
            return Outcome::Stopped;
        };
        load_registers(&mut backend.vmcb, &mut backend.gprs, &regs);
        if self.fpu_owner != Some(key) {
            if let Some(owner) = self.fpu_owner
                && let Some(previous) = self.vcpus.get_mut(&owner)
            {
                fpu::save(self.fpu_mode, &mut previous.fpu);
            }
            if let Some(backend) = self.vcpus.get(&key) {
                fpu::restore(self.fpu_mode, &backend.fpu);
            }
            self.fpu_owner = Some(key);
        }
        let Some(backend) = self.vcpus.get_mut(&key) else {
            return Outcome::Stopped;
        };
        if flush {
            backend
                .vmcb
                .control
                .set_tlb_control(self.asids.on_mapping_change());
        }
        let vmcb_pa = physical(&*backend.vmcb);
        let host_vmcb = physical(&*self.host_vmcb);
        loop {
            // SAFETY: the VMCB was set up by `svm::Vmcb::init_long_mode_guest` with this
            // partition's nested tables (which map only its pool frames), a valid ASID and the
            // intercept-everything I/O and MSR maps; registers were loaded from the
            // partition's checked state; this CPU runs it alone.
            unsafe { svm_hw::run(vmcb_pa, host_vmcb, &mut backend.gprs) };
            backend.vmcb.control.set_tlb_control(TlbControl::DoNothing);
            backend.vmcb.control.clear_injection();
            // Fast path: a hypercall that touches no partition state is completed here and
            // the guest re-entered at once (same result as the generic path, see
            // `partition::inline_hypercall`).
            if backend.vmcb.control.exit_code == svm::ExitCode::VMMCALL.0 {
                let save = &backend.vmcb.save;
                let cpl0_long = save.in_64bit_mode() && save.cpl == 0;
                if let Some(rax) = partition::inline_hypercall(backend.gprs.rcx, cpl0_long) {
                    let next_rip = if self.nrip {
                        backend.vmcb.control.next_rip
                    } else {
                        backend.vmcb.save.rip.wrapping_add(VMMCALL.len() as u64)
                    };
                    backend.vmcb.save.rax = rax;
                    backend.vmcb.save.rip = next_rip;
                    backend.inline_hypercalls += 1;
                    continue;
                }
            }
            break;
        }

        let mut regs = regs;
        store_registers(&backend.vmcb, &backend.gprs, &mut regs);
        let event = match SvmExit::decode(&backend.vmcb, self.nrip) {
            Ok(exit) => self.exit_event(exit, &regs, key),
            Err(error) => {
                warn!("partition {}: undecodable exit: {error}", key.0);
                ExitEvent::Unknown {
                    code: backend.vmcb.control.exit_code,
                }
            }
        };
        if let Some(vcpu) = self.manager.vcpu_mut(vref.partition, vref.vp_index) {
            vcpu.regs = regs;
        }
        let action = handle_exit(
            &mut self.manager,
            &SvmPlatform,
            vref.partition,
            vref.vp_index,
            event,
        );
        let is_root = vref.partition == ROOT_PARTITION;
        let mut outcome = match (&event, &action) {
            (_, ExitAction::StopPartition { .. }) => Outcome::Stopped,
            (_, ExitAction::RunPartitions) => Outcome::RunPartitions,
            (ExitEvent::ExternalInterrupt, _) => Outcome::Interrupted,
            (ExitEvent::IoPort(io), _)
                if io.port == partition::DEBUG_CONSOLE_PORT
                    && io.write
                    && io.value & 0xFF == u32::from(b'\n') =>
            {
                Outcome::ConsoleLine
            }
            (ExitEvent::Hypercall, _) if !is_root => Outcome::ConsoleLine,
            _ => Outcome::Continue,
        };
        if self.root_mode && !is_root {
            // The root reads children's consoles; a hypercall that wrote nothing is no event.
            if outcome == Outcome::ConsoleLine
                && self
                    .manager
                    .partition(vref.partition)
                    .is_none_or(|p| p.console().is_empty())
            {
                outcome = Outcome::Continue;
            }
        } else {
            self.forward_console(vref.partition);
        }
        let next_rip = self.vcpus.get(&key).map_or(0, |b| b.next_rip);
        match action {
            ExitAction::Resume { advance_rip } => {
                if advance_rip {
                    self.set_rip(vref, next_rip);
                }
            }
            ExitAction::Inject { vector, error_code } => {
                match Event::exception(vector, error_code) {
                    Ok(event) => {
                        if let Some(backend) = self.vcpus.get_mut(&key) {
                            backend.vmcb.control.inject(event);
                        }
                    }
                    Err(_) => {
                        self.stop(vref.partition, StopReason::InvalidState);
                    }
                }
            }
            ExitAction::Halt => {
                self.set_rip(vref, next_rip);
                self.scheduler.yield_current();
            }
            ExitAction::Yield => self.scheduler.yield_current(),
            ExitAction::StopPartition { reason } => self.stop(vref.partition, reason),
            ExitAction::RunPartitions => {}
        }
        outcome
    }

    fn set_rip(&mut self, vref: VcpuRef, rip: u64) {
        if let Some(vcpu) = self.manager.vcpu_mut(vref.partition, vref.vp_index) {
            vcpu.regs.rip = rip;
        }
    }

    fn exit_event(&mut self, exit: SvmExit, regs: &VcpuRegisters, key: (u64, u32)) -> ExitEvent {
        let set_next = |this: &mut Self, rip: u64| {
            if let Some(b) = this.vcpus.get_mut(&key) {
                b.next_rip = rip;
            }
        };
        let gpr = |g: Gpr| regs.gprs[g as usize];
        match exit {
            SvmExit::Vmmcall { next_rip } => {
                set_next(self, next_rip);
                ExitEvent::Hypercall
            }
            SvmExit::Ioio(io) => {
                set_next(self, io.next_rip);
                let size = io.size.bytes() as u8;
                let mask = if size >= 4 {
                    u32::MAX
                } else {
                    (1u32 << (8 * size)) - 1
                };
                ExitEvent::IoPort(IoPortAccess {
                    port: io.port,
                    size,
                    write: io.write,
                    value: (gpr(Gpr::Rax) as u32) & mask,
                    string: io.string,
                    rep: io.rep,
                })
            }
            SvmExit::Npf(fault) => ExitEvent::MemoryFault {
                gpa: fault.gpa,
                access: if fault.execute {
                    MemoryAccess::Execute
                } else if fault.write {
                    MemoryAccess::Write
                } else {
                    MemoryAccess::Read
                },
            },
            SvmExit::Hlt { next_rip } => {
                set_next(self, next_rip);
                ExitEvent::Halt
            }
            SvmExit::Cpuid { next_rip } => {
                set_next(self, next_rip);
                ExitEvent::Cpuid {
                    leaf: gpr(Gpr::Rax) as u32,
                    subleaf: gpr(Gpr::Rcx) as u32,
                }
            }
            SvmExit::Msr { write, next_rip } => {
                set_next(self, next_rip);
                let msr = gpr(Gpr::Rcx) as u32;
                if write {
                    ExitEvent::MsrWrite {
                        msr,
                        value: (gpr(Gpr::Rdx) << 32) | (gpr(Gpr::Rax) & 0xFFFF_FFFF),
                    }
                } else {
                    ExitEvent::MsrRead { msr }
                }
            }
            SvmExit::Shutdown => ExitEvent::TripleFault,
            SvmExit::Intr if self.root_mode => ExitEvent::ExternalInterrupt,
            SvmExit::Intr => {
                lapic::take_pending_interrupts();
                let ticks = lapic::ticks();
                if ticks != self.last_tick {
                    self.last_tick = ticks;
                    if self.scheduler.tick() {
                        return ExitEvent::TimerPreempt;
                    }
                }
                ExitEvent::ExternalInterrupt
            }
            SvmExit::Nmi => ExitEvent::Nmi,
            SvmExit::Exception {
                vector, error_code, ..
            } => ExitEvent::Exception { vector, error_code },
            SvmExit::SvmInstruction(_) => ExitEvent::Exception {
                vector: partition::VECTOR_UD,
                error_code: None,
            },
            SvmExit::Invalid => ExitEvent::InvalidState,
            SvmExit::Unknown { code } => ExitEvent::Unknown { code },
        }
    }

    fn stop(&mut self, id: PartitionId, reason: StopReason) {
        self.manager.stop(id, reason);
        self.scheduler.remove_partition(id);
        // In root mode a child's console belongs to the root (it reads it after the stop).
        if !self.root_mode || id == ROOT_PARTITION {
            self.forward_console(id);
            self.flush_console(id);
        }
        match self.names.get(&id.0) {
            Some(name) => println!("partition {} '{name}' stopped: {}", id.0, describe(&reason)),
            // Created by the root, which knows its name.
            None => println!("partition {} stopped: {}", id.0, describe(&reason)),
        }
    }

    /// Stops every partition still running (end of the run).
    fn stop_remaining(&mut self) {
        let ids: Vec<u64> = self.names.keys().copied().collect();
        for id in ids {
            if self.is_running(id) {
                self.stop(PartitionId(id), StopReason::Requested);
            }
        }
    }

    /// Copies a partition's new console bytes to the serial log, one line per complete guest
    /// line (prefixed with the partition); a partial line waits for its end or for the stop.
    fn forward_console(&mut self, id: PartitionId) {
        let Some(bytes) = self.manager.drain_console(id) else {
            return;
        };
        if bytes.is_empty() {
            return;
        }
        let pending = self.console_lines.entry(id.0).or_default();
        pending.extend_from_slice(&bytes);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            print_guest_line(id.0, self.names.get(&id.0), &line);
        }
        if pending.len() > MAX_CONSOLE_LINE {
            let line: Vec<u8> = core::mem::take(pending);
            print_guest_line(id.0, self.names.get(&id.0), &line);
        }
    }

    fn flush_console(&mut self, id: PartitionId) {
        if let Some(line) = self.console_lines.remove(&id.0)
            && !line.is_empty()
        {
            print_guest_line(id.0, self.names.get(&id.0), &line);
        }
    }

    /// Prints a summary line per partition; returns how many did not exit with status 0.
    fn report(&self) -> usize {
        let mut failed = 0;
        for (&id, name) in &self.names {
            let partition = self.manager.partition(PartitionId(id));
            let reason = partition.and_then(|p| p.stop_reason());
            if reason != Some(StopReason::Exited(0)) {
                failed += 1;
            }
            let inline: u64 = self
                .vcpus
                .range((id, 0)..=(id, u32::MAX))
                .map(|(_, v)| v.inline_hypercalls)
                .sum();
            let exits: u64 = partition.map_or(0, |p| p.counters().total_exits()) + inline;
            println!(
                "partition {id} '{name}': {} after {exits} exits",
                reason.as_ref().map_or("still running".into(), describe)
            );
        }
        failed
    }
}

/// Longest guest console line printed in one piece.
const MAX_CONSOLE_LINE: usize = 256;

fn print_guest_line(id: u64, name: Option<&alloc::string::String>, line: &[u8]) {
    let name = name.map_or("?", |n| n.as_str());
    let text = core::str::from_utf8(line).unwrap_or("<non-UTF-8 output>");
    println!("[{id} {name}] {}", text.trim_end_matches(['\n', '\r']));
}

fn describe(reason: &StopReason) -> alloc::string::String {
    use alloc::format;
    match reason {
        StopReason::Requested => "stopped by request".into(),
        StopReason::Exited(code) => format!("exited with status {code}"),
        StopReason::TripleFault => "triple fault".into(),
        StopReason::BadIoPort { port, size, write } => format!(
            "{} of {size} byte(s) to I/O port {port:#x} is not allowed",
            if *write { "write" } else { "read" }
        ),
        StopReason::OutsideMemory { gpa, access } => {
            format!("{access:?} at GPA {gpa:#x} outside its memory")
        }
        StopReason::AccessViolation { gpa, access } => {
            format!("{access:?} at GPA {gpa:#x} violates the page's permissions")
        }
        StopReason::InvalidState => "invalid vCPU state".into(),
        StopReason::HypervisorLimit => "hypervisor limit reached".into(),
        StopReason::UnhandledExit { code } => format!("unhandled exit {code:#x}"),
    }
}

/// A child's RAM as the image loader sees it.
struct PartitionRam<'a> {
    manager: core::cell::RefCell<&'a mut Manager>,
    id: PartitionId,
}

impl guest_loader::GuestRam for PartitionRam<'_> {
    fn ram_size(&self) -> u64 {
        CHILD_RAM
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), guest_loader::RamError> {
        use hypercall::GuestMemory;
        let error = guest_loader::RamError {
            gpa,
            len: data.len() as u64,
        };
        let mut manager = self.manager.borrow_mut();
        let mut memory = manager.guest_memory(self.id).ok_or(error)?;
        memory.write(gpa, data).map_err(|_| error)
    }

    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), guest_loader::RamError> {
        use hypercall::GuestMemory;
        let error = guest_loader::RamError {
            gpa,
            len: buf.len() as u64,
        };
        let mut manager = self.manager.borrow_mut();
        let memory = manager.guest_memory(self.id).ok_or(error)?;
        memory.read(gpa, buf).map_err(|_| error)
    }

    fn zero(&mut self, gpa: u64, len: u64) -> Result<(), guest_loader::RamError> {
        let zeros = [0u8; 512];
        let mut done = 0;
        while done < len {
            let chunk = (len - done).min(zeros.len() as u64);
            self.write(gpa + done, &zeros[..chunk as usize])?;
            done += chunk;
        }
        Ok(())
    }
}

fn apply_initial_state(regs: &mut VcpuRegisters, state: &guest_loader::InitialState) {
    regs.gprs = [0; 16];
    regs.gprs[Gpr::Rsp as usize] = state.rsp;
    regs.gprs[Gpr::Rdi as usize] = state.rdi;
    regs.rip = state.rip;
    // IF set: guests get no virtual interrupts (none are injected), and Bochs gates physical
    // interrupts on the guest IF even with V_INTR_MASKING, which would stop preemption.
    regs.rflags = state.rflags | RFLAGS_IF;
    regs.cr0 = state.cr0;
    regs.cr3 = state.cr3;
    regs.cr4 = state.cr4;
    regs.efer = state.efer;
    set_flat_segments(regs, state.code_selector, state.data_selector);
    regs.gdtr.base = state.gdtr_base;
    regs.gdtr.limit = state.gdtr_limit;
    regs.idtr.base = 0;
    regs.idtr.limit = 0;
}

/// Flat 64-bit state: CS (L=1) and DS/ES/FS/GS/SS with the given selectors, base 0, 4 GiB
/// limit; a busy 64-bit TSS and an empty LDT (selector 0). Used for test guests and the root.
pub(crate) fn set_flat_segments(regs: &mut VcpuRegisters, code_selector: u16, data_selector: u16) {
    let flat = |selector, attributes| SegmentRegister {
        base: 0,
        limit: 0xFFFF_FFFF,
        selector,
        attributes,
    };
    regs.cs = flat(code_selector, 0xA09B);
    let data = flat(data_selector, 0xC093);
    regs.ds = data;
    regs.es = data;
    regs.fs = data;
    regs.gs = data;
    regs.ss = data;
    regs.tr = SegmentRegister {
        base: 0,
        limit: 0xFFFF,
        selector: 0,
        attributes: 0x008B,
    };
    regs.ldtr = SegmentRegister {
        base: 0,
        limit: 0,
        selector: 0,
        attributes: 0x0082,
    };
}

/// TLFS 16-bit attributes -> VMCB 12-bit attributes.
fn to_vmcb_attrib(attributes: u16) -> u16 {
    (attributes & 0x00FF) | ((attributes >> 4) & 0x0F00)
}

/// VMCB 12-bit attributes -> TLFS 16-bit attributes.
fn from_vmcb_attrib(attrib: u16) -> u16 {
    (attrib & 0x00FF) | ((attrib & 0x0F00) << 4)
}

fn to_vmcb_segment(s: &SegmentRegister) -> VmcbSegment {
    VmcbSegment {
        selector: s.selector,
        attrib: to_vmcb_attrib(s.attributes),
        limit: s.limit,
        base: s.base,
    }
}

fn from_vmcb_segment(s: &VmcbSegment) -> SegmentRegister {
    SegmentRegister {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        attributes: from_vmcb_attrib(s.attrib),
    }
}

const EFER_SVME: u64 = 1 << 12;
const RFLAGS_IF: u64 = 1 << 9;

/// Architecture-neutral registers -> VMCB save area and the GPR block.
fn load_registers(vmcb: &mut Vmcb, gprs: &mut GuestGprs, r: &VcpuRegisters) {
    let g = |x: Gpr| r.gprs[x as usize];
    let save = &mut vmcb.save;
    save.rax = g(Gpr::Rax);
    save.rsp = g(Gpr::Rsp);
    save.rip = r.rip;
    save.rflags = r.rflags;
    save.cr0 = r.cr0;
    save.cr2 = r.cr2;
    save.cr3 = r.cr3;
    save.cr4 = r.cr4;
    save.efer = r.efer | EFER_SVME;
    save.dr6 = r.dr6;
    save.dr7 = r.dr7;
    save.es = to_vmcb_segment(&r.es);
    save.cs = to_vmcb_segment(&r.cs);
    save.ss = to_vmcb_segment(&r.ss);
    save.ds = to_vmcb_segment(&r.ds);
    save.fs = to_vmcb_segment(&r.fs);
    save.gs = to_vmcb_segment(&r.gs);
    save.ldtr = to_vmcb_segment(&r.ldtr);
    save.tr = to_vmcb_segment(&r.tr);
    save.gdtr = VmcbSegment {
        selector: 0,
        attrib: 0,
        limit: u32::from(r.gdtr.limit),
        base: r.gdtr.base,
    };
    save.idtr = VmcbSegment {
        selector: 0,
        attrib: 0,
        limit: u32::from(r.idtr.limit),
        base: r.idtr.base,
    };
    save.cpl = ((r.ss.attributes >> 5) & 3) as u8;
    save.g_pat = r.pat;
    save.star = r.star;
    save.lstar = r.lstar;
    save.cstar = r.cstar;
    save.sfmask = r.sfmask;
    save.kernel_gs_base = r.kernel_gs_base;
    save.sysenter_cs = r.sysenter_cs;
    save.sysenter_esp = r.sysenter_esp;
    save.sysenter_eip = r.sysenter_eip;
    gprs.rbx = g(Gpr::Rbx);
    gprs.rcx = g(Gpr::Rcx);
    gprs.rdx = g(Gpr::Rdx);
    gprs.rsi = g(Gpr::Rsi);
    gprs.rdi = g(Gpr::Rdi);
    gprs.rbp = g(Gpr::Rbp);
    gprs.r8 = g(Gpr::R8);
    gprs.r9 = g(Gpr::R9);
    gprs.r10 = g(Gpr::R10);
    gprs.r11 = g(Gpr::R11);
    gprs.r12 = g(Gpr::R12);
    gprs.r13 = g(Gpr::R13);
    gprs.r14 = g(Gpr::R14);
    gprs.r15 = g(Gpr::R15);
}

/// VMCB save area and the GPR block -> architecture-neutral registers.
fn store_registers(vmcb: &Vmcb, gprs: &GuestGprs, r: &mut VcpuRegisters) {
    let save = &vmcb.save;
    let values = [
        (Gpr::Rax, save.rax),
        (Gpr::Rcx, gprs.rcx),
        (Gpr::Rdx, gprs.rdx),
        (Gpr::Rbx, gprs.rbx),
        (Gpr::Rsp, save.rsp),
        (Gpr::Rbp, gprs.rbp),
        (Gpr::Rsi, gprs.rsi),
        (Gpr::Rdi, gprs.rdi),
        (Gpr::R8, gprs.r8),
        (Gpr::R9, gprs.r9),
        (Gpr::R10, gprs.r10),
        (Gpr::R11, gprs.r11),
        (Gpr::R12, gprs.r12),
        (Gpr::R13, gprs.r13),
        (Gpr::R14, gprs.r14),
        (Gpr::R15, gprs.r15),
    ];
    for (gpr, value) in values {
        r.gprs[gpr as usize] = value;
    }
    r.rip = save.rip;
    r.rflags = save.rflags;
    r.cr0 = save.cr0;
    r.cr2 = save.cr2;
    r.cr3 = save.cr3;
    r.cr4 = save.cr4;
    r.efer = save.efer & !EFER_SVME;
    r.dr6 = save.dr6;
    r.dr7 = save.dr7;
    r.es = from_vmcb_segment(&save.es);
    r.cs = from_vmcb_segment(&save.cs);
    r.ss = from_vmcb_segment(&save.ss);
    r.ds = from_vmcb_segment(&save.ds);
    r.fs = from_vmcb_segment(&save.fs);
    r.gs = from_vmcb_segment(&save.gs);
    r.ldtr = from_vmcb_segment(&save.ldtr);
    r.tr = from_vmcb_segment(&save.tr);
    r.gdtr.base = save.gdtr.base;
    r.gdtr.limit = save.gdtr.limit as u16;
    r.idtr.base = save.idtr.base;
    r.idtr.limit = save.idtr.limit as u16;
    r.pat = save.g_pat;
    r.star = save.star;
    r.lstar = save.lstar;
    r.cstar = save.cstar;
    r.sfmask = save.sfmask;
    r.kernel_gs_base = save.kernel_gs_base;
    r.sysenter_cs = save.sysenter_cs;
    r.sysenter_esp = save.sysenter_esp;
    r.sysenter_eip = save.sysenter_eip;
}
