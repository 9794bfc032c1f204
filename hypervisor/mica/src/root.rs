//! The root partition: a stock Linux kernel started as Mica's first, privileged partition.
//!
//! Boot modules: the one labelled `linux` is the kernel (a bzImage, started through the
//! 64-bit boot protocol entry; the rest of its module command line is appended to the
//! kernel command line), the one labelled `initrd` its initramfs.
//!
//! Memory: [`plan`] picks, before the frame allocator exists, one 2 MiB-aligned region at
//! the top of RAM below 4 GiB for everything the hypervisor owns (page tables, heap, VMCBs,
//! the child pool, the shared window). The root sees all other RAM identity-mapped (guest
//! physical = host physical), its e820 map marks the hypervisor's image and region
//! reserved, and its nested tables leave them unmapped, except the shared window of
//! `hypercall::root_abi`. Everything that is not RAM (MMIO, the local APIC, firmware) is
//! identity-mapped too: devices pass through.
//!
//! CPU: the root owns the physical CPU, its local APIC and its interrupts (no interrupt
//! intercepts, V_INTR_MASKING off). The hypervisor intercepts CPUID, the MSRs of
//! `partition::root_msrs`, its own serial port and the doorbell port, VMMCALL and the SVM
//! instructions, and shutdown. Children run only inside the root's run-partitions call, on
//! the root's CPU, until a physical interrupt (the root's own timer) or an event for the
//! root ends the call.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use boot_info::{BootInfo, MemoryKind, Module};
use frame_alloc::{LOW_MEMORY, PhysRange, highest_fit};
use guest_loader::{BzImage, E820Entry, E820Table, GuestRam, LinuxBootSpec, RamError};
use hypercall::abi::{BACKEND_SVM, HostFeatures};
use hypercall::root_abi::{DOORBELL_PORT, WINDOW_PAGES, WINDOW_PARAM};
use log::info;
use paging::{HugePages, LongMode, MapFlags, PageTables};
use partition::npt::NestedTables;
use partition::{Gpr, HostInfo, Limits, PartitionManager, VcpuRegisters, root_msrs};
use svm::{IoPermissionMap, Misc1Intercepts, Misc2Intercepts, MsrAccess, MsrPermissionMap, Vmcb};
use zerocopy::FromZeros;

use crate::memory::{FRAMES, IdentityTables};
use crate::println;
use crate::vmm::{self, Runner};

/// Bytes the hypervisor keeps for itself besides the child pool (heap, tables, VMCBs).
const HYPERVISOR_OWN: u64 = 32 << 20;
/// Child pool when `pool=` is not given.
const DEFAULT_POOL: u64 = 64 << 20;
/// Where the boot parameters, command line, GDT and early page tables go (low memory,
/// which Linux keeps reserved).
const SCRATCH_BASE: u64 = 0x1_0000;
/// The early page tables identity-map this much (the kernel, its decompression window,
/// the boot parameters and the initrd must lie below).
const IDENTITY_LIMIT: u64 = 4 << 30;
const TWO_MIB: u64 = 2 << 20;
const ONE_GIB: u64 = 1 << 30;
/// The hypervisor's serial port range (COM1), kept from the root.
const HYPERVISOR_SERIAL: (u16, u16) = (0x3F8, 0x3FF);
/// Kernel parameters Mica always passes: the console on COM2 (COM1 carries the hypervisor
/// log), a fixed layout, one CPU (SMP comes with the hypervisor's own SMP support).
const BASE_CMDLINE: &str = "console=ttyS1,115200 nokaslr nosmp";

/// Why the root partition could not be started.
#[derive(Debug)]
pub enum RootError {
    /// The `linux` module is not a usable bzImage.
    Kernel(guest_loader::LinuxError),
    /// Not enough RAM for the hypervisor's region.
    NoRoom(u64),
    /// Something the plan needs is missing or inconsistent.
    Plan(&'static str),
    /// The partition manager or nested tables could not be built.
    Setup(&'static str),
}

impl core::fmt::Display for RootError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Kernel(e) => write!(f, "root kernel: {e}"),
            Self::NoRoom(bytes) => write!(
                f,
                "no 2 MiB-aligned free RAM below 4 GiB for the hypervisor's {} MiB \
                 (its own memory plus pool=); give the machine more memory or a smaller pool=",
                bytes >> 20
            ),
            Self::Plan(what) => write!(f, "{what}"),
            Self::Setup(what) => write!(f, "setting up the root partition: {what}"),
        }
    }
}

/// What the boot sequence decided for the root partition.
#[derive(Debug, Clone)]
pub struct RootPlan {
    kernel: PhysRange,
    initrd: Option<PhysRange>,
    /// The region every hypervisor allocation comes from.
    pub hypervisor_region: PhysRange,
    decompression: PhysRange,
    pool_bytes: u64,
}

fn module_bytes(module: &Module) -> &'static [u8] {
    let len = usize::try_from(module.end.saturating_sub(module.start)).unwrap_or(0);
    // SAFETY: boot modules are RAM the loader filled, below 4 GiB (identity mapped by the boot
    // tables and by the hypervisor's), kept out of the frame allocator; the hypervisor only
    // reads them, and the root does not run before the hypervisor is done with them.
    unsafe { core::slice::from_raw_parts(module.start as *const u8, len) }
}

fn find_module<'a>(boot: &'a BootInfo, label: &str) -> Option<&'a Module> {
    boot.modules
        .as_slice()
        .iter()
        .find(|m| vmm::module_label(m.cmdline.as_str()).0 == label)
}

/// The root plan if a `linux` module is present (`None`: no root partition). Runs before
/// the heap exists: allocates nothing.
///
/// # Errors
/// The kernel is unusable or RAM is too small.
pub fn plan(
    boot: &BootInfo,
    usable: &[PhysRange],
    image: PhysRange,
    pool: Option<u64>,
) -> Result<Option<RootPlan>, RootError> {
    let Some(kernel) = find_module(boot, "linux") else {
        return Ok(None);
    };
    let bz = BzImage::parse(module_bytes(kernel)).map_err(RootError::Kernel)?;
    let load = kernel.start + bz.protected_mode_offset();
    let (ds, de) = bz
        .decompression_window(load)
        .ok_or(RootError::Plan("kernel decompression window overflows"))?;
    let decompression = PhysRange::new(ds, de);
    let initrd = find_module(boot, "initrd").map(|m| PhysRange::new(m.start, m.end));
    let pool_bytes = pool.unwrap_or(DEFAULT_POOL).next_multiple_of(TWO_MIB);
    let size = HYPERVISOR_OWN + pool_bytes;
    // No heap yet: a fixed array of the ranges to keep clear.
    let mut avoid = [PhysRange::new(0, 0); boot_info::MAX_MODULES + 3];
    for (slot, m) in avoid.iter_mut().zip(boot.modules.as_slice()) {
        *slot = PhysRange::new(m.start, m.end).align_outward();
    }
    let n = boot.modules.as_slice().len().min(boot_info::MAX_MODULES);
    avoid[n] = image;
    avoid[n + 1] = decompression;
    avoid[n + 2] = LOW_MEMORY;
    let hypervisor_region = highest_fit(usable, &avoid[..n + 3], size, TWO_MIB, IDENTITY_LIMIT)
        .ok_or(RootError::NoRoom(size))?;
    Ok(Some(RootPlan {
        kernel: PhysRange::new(kernel.start, kernel.end),
        initrd,
        hypervisor_region,
        decompression,
        pool_bytes,
    }))
}

/// Root RAM reached through the identity map (the loader writes boot parameters into it).
struct RootRam<'a> {
    ram: &'a [(u64, u64)],
}

impl RootRam<'_> {
    fn check(&self, gpa: u64, len: u64) -> Result<(), RamError> {
        let end = gpa.checked_add(len).ok_or(RamError { gpa, len })?;
        if self.ram.iter().any(|&(s, e)| s <= gpa && end <= e) {
            Ok(())
        } else {
            Err(RamError { gpa, len })
        }
    }
}

impl GuestRam for RootRam<'_> {
    fn ram_size(&self) -> u64 {
        self.ram.last().map_or(0, |&(_, end)| end)
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), RamError> {
        self.check(gpa, data.len() as u64)?;
        // SAFETY: [gpa, gpa+len) lies in one root RAM range: RAM the hypervisor does not
        // own (outside its image and region), identity mapped read-write, and the root does
        // not run yet.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), gpa as *mut u8, data.len()) };
        Ok(())
    }

    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), RamError> {
        self.check(gpa, buf.len() as u64)?;
        // SAFETY: as in `write`; reading only.
        unsafe { core::ptr::copy_nonoverlapping(gpa as *const u8, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    fn zero(&mut self, gpa: u64, len: u64) -> Result<(), RamError> {
        self.check(gpa, len)?;
        // SAFETY: as in `write`.
        unsafe { core::ptr::write_bytes(gpa as *mut u8, 0, len as usize) };
        Ok(())
    }
}

/// `ranges` minus `holes` (both sorted or not; result sorted, page-aligned inward).
fn subtract(ranges: &[PhysRange], holes: &[PhysRange]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for r in ranges {
        let Some(r) = r.align_inward() else { continue };
        let mut pieces = alloc::vec![(r.start, r.end)];
        for h in holes {
            let mut next = Vec::new();
            for (s, e) in pieces {
                if h.end <= s || h.start >= e {
                    next.push((s, e));
                } else {
                    if s < h.start {
                        next.push((s, h.start));
                    }
                    if h.end < e {
                        next.push((h.end, e));
                    }
                }
            }
            pieces = next;
        }
        out.extend(pieces.into_iter().filter(|(s, e)| s < e));
    }
    out.sort_unstable();
    out
}

fn e820_type(kind: MemoryKind) -> u32 {
    match kind {
        MemoryKind::Usable => 1,
        MemoryKind::Reserved => 2,
        MemoryKind::AcpiReclaimable => 3,
        MemoryKind::AcpiNvs => 4,
        MemoryKind::BadMemory => 5,
    }
}

/// Builds and runs the root partition; returns only when it has stopped (the machine is
/// then shut down by the caller).
///
/// # Errors
/// Setup failures (before the root ran).
pub fn run(
    boot: &BootInfo,
    plan: &RootPlan,
    image: PhysRange,
    cpu: &cpu_features::CpuReport,
    acpi_rsdp: Option<u64>,
) -> Result<String, RootError> {
    let entry_tsc = crate::arch::rdtsc();
    let svm_features = match cpu.virt_support() {
        cpu_features::VirtSupport::Svm(features) => features,
        cpu_features::VirtSupport::Vmx(_) => {
            return Err(RootError::Setup(
                "this is an Intel VMX CPU; the VMX backend is not written yet",
            ));
        }
        cpu_features::VirtSupport::None(reason) => return Err(RootError::Setup(reason)),
    };

    // The shared window: hypervisor pages the root maps through /dev/mem.
    let window_start = FRAMES
        .lock()
        .as_mut()
        .ok_or(RootError::Setup("memory not initialised"))?
        .allocate_contiguous(WINDOW_PAGES, 4096)
        .map_err(|_| RootError::Setup("no memory for the shared window"))?;
    let window = PhysRange::new(window_start, window_start + WINDOW_PAGES * 4096);
    // SAFETY: just allocated for the window alone, identity mapped read-write.
    unsafe { core::ptr::write_bytes(window.start as *mut u8, 0, window.len() as usize) };
    let pool = vmm::reserve_pool(plan.pool_bytes).map_err(|_| RootError::Setup("child pool"))?;

    let region = plan.hypervisor_region;
    let protected: Vec<PhysRange> = [
        image.align_outward(),
        PhysRange::new(region.start, window.start),
        PhysRange::new(window.end, region.end),
    ]
    .into_iter()
    .filter(|r| !r.is_empty())
    .collect();

    // The root's RAM: usable memory minus what the hypervisor keeps (the window stays in,
    // so hypercall parameter pages there translate).
    let usable: Vec<PhysRange> = boot
        .memory_map
        .regions()
        .iter()
        .filter(|r| r.kind == MemoryKind::Usable)
        .map(|r| PhysRange::new(r.start, r.end()))
        .collect();
    let root_ram = subtract(&usable, &protected);

    // The root's e820: the firmware's, with the hypervisor's ranges and the window reserved.
    let firmware: Vec<E820Entry> = boot
        .memory_map
        .regions()
        .iter()
        .map(|r| E820Entry {
            addr: r.start,
            size: r.end() - r.start,
            kind: e820_type(r.kind),
        })
        .collect();
    let mut reserved: Vec<(u64, u64)> = protected.iter().map(|r| (r.start, r.end)).collect();
    reserved.push((window.start, window.end));
    let e820 = E820Table::for_root(&firmware, &reserved).map_err(RootError::Kernel)?;

    // The initrd must stay clear of the kernel's decompression window.
    let kernel_bytes = module_bytes_range(plan.kernel);
    let bz = BzImage::parse(kernel_bytes).map_err(RootError::Kernel)?;
    let initrd = match plan.initrd {
        Some(initrd) if initrd.overlaps(&plan.decompression) => {
            Some(relocate_initrd(initrd, &root_ram, plan, &bz)?)
        }
        other => other,
    };

    let kernel_args =
        find_module(boot, "linux").map_or("", |m| vmm::module_label(m.cmdline.as_str()).1);
    let cmdline = format!(
        "{BASE_CMDLINE} {WINDOW_PARAM}={:#x},{:#x} {kernel_args}",
        window.start,
        window.len(),
    );
    let entry = {
        let mut ram = RootRam { ram: &root_ram };
        guest_loader::prepare_linux_boot(
            &mut ram,
            &bz,
            &LinuxBootSpec {
                kernel_load: plan.kernel.start + bz.protected_mode_offset(),
                scratch: SCRATCH_BASE,
                cmdline: cmdline.trim_end(),
                initrd: initrd.map(|r| (r.start, r.len())),
                e820: &e820,
                acpi_rsdp,
                identity_limit: IDENTITY_LIMIT,
            },
        )
        .map_err(RootError::Kernel)?
    };

    // Nested tables: identity over the physical address space the root may use, minus
    // the protected ranges.
    let pages_1g = cpu.paging.pdpe1gb;
    let format = LongMode::nested(cpu.paging.phys_addr_bits)
        .ok_or(RootError::Setup("unsupported physical address width"))?
        .with_1g_pages(pages_1g);
    let ram_top = boot
        .memory_map
        .regions()
        .iter()
        .map(|r| r.end())
        .max()
        .unwrap_or(0)
        .max(IDENTITY_LIMIT)
        .next_multiple_of(ONE_GIB);
    // With 1 GiB pages, also the usual 64-bit PCI window above RAM (64 GiB more).
    let phys_limit = 1u64 << cpu.paging.phys_addr_bits.min(46);
    let map_limit = if pages_1g {
        (ram_top + (64 << 30)).min(phys_limit)
    } else {
        ram_top.min(phys_limit)
    };
    let n_cr3 = build_root_tables(format, &protected, map_limit)?;

    // The manager, with the root registered.
    let tables = NestedTables::new(IdentityTables, vmm::TableFrames, format_children(cpu)?);
    let mut manager =
        PartitionManager::new(Limits::default(), pool, tables, vmm::HostMemory, &root_ram)
            .map_err(|_| RootError::Setup("partition manager"))?;
    let mut features = HostFeatures::NESTED_PAGING;
    features.set(HostFeatures::NRIP_SAVE, svm_features.nrip_save());
    features.set(HostFeatures::FLUSH_BY_ASID, svm_features.flush_by_asid());
    features.set(HostFeatures::PAGES_1G, pages_1g);
    features.set(HostFeatures::XSAVE, cpu.paging.xsave);
    let mut host_info = HostInfo {
        backend: BACKEND_SVM,
        features: features.bits(),
        ..HostInfo::default()
    };
    for (slot, r) in host_info.protected.iter_mut().zip(&protected) {
        *slot = (r.start, r.end);
        host_info.protected_count += 1;
    }
    manager.set_host_info(host_info);
    manager
        .add_root_vcpu(0, root_registers(&entry))
        .map_err(|_| RootError::Setup("root vCPU"))?;

    let mut runner = Runner::new(manager, svm_features, cpu);
    runner.set_root_mode();
    let mut vmcb = Box::new(Vmcb::new_zeroed());
    let asid = runner
        .allocate_asid()
        .ok_or(RootError::Setup("no ASID for the root"))?;
    let (iopm, msrpm) = root_permission_maps()?;
    vmcb.init_long_mode_guest(
        entry.rip,
        entry.cr3,
        0,
        asid.asid,
        n_cr3,
        vmm::physical(&*iopm),
        vmm::physical(&*msrpm),
    );
    vmcb.control.set_tlb_control(asid.first_run);
    // The root owns interrupts, idling and its XCR0.
    let misc1 = vmcb.control.misc1_intercepts()
        - Misc1Intercepts::INTR
        - Misc1Intercepts::NMI
        - Misc1Intercepts::SMI
        - Misc1Intercepts::HLT;
    vmcb.control.set_misc1_intercepts(misc1);
    let misc2 = vmcb.control.misc2_intercepts()
        - Misc2Intercepts::XSETBV
        - Misc2Intercepts::MONITOR
        - Misc2Intercepts::MWAIT;
    vmcb.control.set_misc2_intercepts(misc2);
    let v_intr = vmcb.control.v_intr().with_v_intr_masking(false);
    vmcb.control.set_v_intr(v_intr);
    runner.add_root_backend(vmcb, iopm, msrpm);

    let (small, large, huge) = runner.leaf_counts(n_cr3);
    info!(
        "root partition: kernel {:#x}..{:#x} (boot protocol {:#x}, entry {:#x}), initrd {}, \
         {} RAM ranges, hypervisor region {:#x}..{:#x}, window {:#x}..{:#x}, nested paging \
         up to {} GiB: {huge} x 1 GiB + {large} x 2 MiB + {small} x 4 KiB",
        plan.kernel.start,
        plan.kernel.end,
        bz.version(),
        entry.rip,
        initrd.map_or(String::from("none"), |r| format!(
            "{:#x}..{:#x}",
            r.start, r.end
        )),
        root_ram.len(),
        region.start,
        region.end,
        window.start,
        window.end,
        map_limit >> 30,
    );
    info!("root command line: \"{}\"", cmdline.trim_end());
    println!(
        "bench: root_setup_tsc={}",
        crate::arch::rdtsc().wrapping_sub(entry_tsc)
    );
    println!("starting the root partition (its console is on COM2 / ttyS1)");
    // Under QEMU -icount the TSC counts instructions: this is the cost from the hypervisor's
    // entry to the root's first instruction (the VMRUN below), less this line's own printing.
    let to_root = crate::arch::rdtsc().wrapping_sub(boot_entry::entry_tsc());
    println!("bench: entry_to_root_tsc={to_root}");
    Ok(runner.run_root())
}

fn format_children(cpu: &cpu_features::CpuReport) -> Result<LongMode, RootError> {
    LongMode::nested(cpu.paging.phys_addr_bits)
        .ok_or(RootError::Setup("unsupported physical address width"))
}

fn module_bytes_range(range: PhysRange) -> &'static [u8] {
    let len = usize::try_from(range.len()).unwrap_or(0);
    // SAFETY: `range` is a boot module (see `module_bytes`).
    unsafe { core::slice::from_raw_parts(range.start as *const u8, len) }
}

/// Copies the initrd to the highest root RAM below the kernel's initrd limit that is clear
/// of the decompression window and the kernel module.
fn relocate_initrd(
    initrd: PhysRange,
    root_ram: &[(u64, u64)],
    plan: &RootPlan,
    bz: &BzImage<'_>,
) -> Result<PhysRange, RootError> {
    let ram: Vec<PhysRange> = root_ram
        .iter()
        .map(|&(s, e)| PhysRange::new(s, e))
        .collect();
    let limit = (bz.initrd_addr_max().saturating_add(1)).min(IDENTITY_LIMIT);
    let avoid = [
        plan.decompression,
        plan.kernel.align_outward(),
        initrd.align_outward(),
        LOW_MEMORY,
    ];
    let size = initrd.len().next_multiple_of(4096);
    let to = highest_fit(&ram, &avoid, size, 4096, limit).ok_or(RootError::Plan(
        "no room to move the initrd out of the kernel's way",
    ))?;
    // SAFETY: `to` is root RAM not overlapping the initrd (both identity mapped); nothing
    // else uses either yet.
    unsafe {
        core::ptr::copy_nonoverlapping(
            initrd.start as *const u8,
            to.start as *mut u8,
            initrd.len() as usize,
        );
    }
    info!(
        "initrd moved from {:#x} to {:#x} (it overlapped the kernel's decompression window)",
        initrd.start, to.start
    );
    Ok(PhysRange::new(to.start, to.start + initrd.len()))
}

/// Identity nested tables over [0, limit) minus `protected`; returns their root.
fn build_root_tables(
    format: LongMode,
    protected: &[PhysRange],
    limit: u64,
) -> Result<u64, RootError> {
    let mut memory = IdentityTables;
    let mut frames = vmm::TableFrames;
    let mut tables = PageTables::create(&mut memory, format, &mut frames)
        .map_err(|_| RootError::Setup("nested tables for the root"))?
        .with_wx_policy(paging::WxPolicy::Allow);
    let whole = [PhysRange::new(0, limit)];
    let flags = MapFlags::USER | MapFlags::WRITABLE | MapFlags::EXECUTABLE;
    for (start, end) in subtract(&whole, protected) {
        // New tables no CPU has used yet: nothing to flush.
        let _flush = tables
            .map_range(
                start,
                start,
                end - start,
                flags,
                HugePages::Allowed,
                &mut frames,
            )
            .map_err(|_| RootError::Setup("mapping the root's memory"))?;
    }
    Ok(tables.root())
}

/// The root's I/O and MSR permission maps: everything passes through except the
/// hypervisor's serial port, the doorbell and the MSRs of `partition::root_msrs`.
#[allow(clippy::type_complexity, reason = "two boxed page-aligned maps")]
fn root_permission_maps() -> Result<
    (
        Box<vmm::Aligned<{ svm::IOPM_SIZE }>>,
        Box<vmm::Aligned<{ svm::MSRPM_SIZE }>>,
    ),
    RootError,
> {
    let mut iopm = Box::new(vmm::Aligned([0u8; svm::IOPM_SIZE]));
    {
        let mut map = IoPermissionMap::edit(&mut iopm.0);
        map.set_range(HYPERVISOR_SERIAL.0, HYPERVISOR_SERIAL.1, true);
        map.set(DOORBELL_PORT, true);
    }
    let mut msrpm = Box::new(vmm::Aligned([0u8; svm::MSRPM_SIZE]));
    {
        let mut map = MsrPermissionMap::edit(&mut msrpm.0);
        let bad = |_| RootError::Setup("MSR permission map");
        for msr in root_msrs::READ_INTERCEPTED {
            map.set(msr, MsrAccess::Read, true).map_err(bad)?;
        }
        for msr in root_msrs::WRITE_INTERCEPTED {
            map.set(msr, MsrAccess::Write, true).map_err(bad)?;
        }
        for range in root_msrs::MTRRS {
            for msr in range {
                map.set(msr, MsrAccess::Write, true).map_err(bad)?;
            }
        }
    }
    Ok((iopm, msrpm))
}

/// The root vCPU at the Linux 64-bit entry.
fn root_registers(entry: &guest_loader::LinuxEntry) -> VcpuRegisters {
    let mut regs = VcpuRegisters::default();
    regs.gprs[Gpr::Rsi as usize] = entry.rsi;
    regs.rip = entry.rip;
    regs.rflags = entry.rflags;
    regs.cr0 = entry.cr0;
    regs.cr3 = entry.cr3;
    regs.cr4 = entry.cr4;
    regs.efer = entry.efer;
    vmm::set_flat_segments(&mut regs, entry.code_selector, entry.data_selector);
    regs.gdtr.base = entry.gdtr_base;
    regs.gdtr.limit = entry.gdtr_limit;
    regs
}
