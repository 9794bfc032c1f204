//! The Mica hypervisor binary: thin bare-metal glue over the host-testable crates.
//!
//! Boot sequence ([`mica_main`]): console, CPU tables (GDT/TSS/IDT), boot information,
//! command line, CPU features, memory (frame allocator, own page tables, heap), then READY.
//! Every step that can fail on bad input prints `MICA BOOT ERROR: ...` and stops cleanly.
#![no_std]
#![no_main]

extern crate alloc;

mod arch;
mod memory;
mod platform;
mod root;
mod serial;
mod shutdown;
#[cfg(feature = "test-hooks")]
mod test_hooks;
mod vmm;

use core::fmt::Display;

use boot_info::{Loader, MemoryKind, cmdline};
use cpu_features::{CpuReport, VirtSupport};
use frame_alloc::PhysRange;
use log::{info, warn};
use shutdown::ExitStatus;

/// Prints why boot cannot continue and stops with the failure status.
fn fatal(what: &str, error: impl Display) -> ! {
    serial::force_unlock();
    println!("MICA BOOT ERROR: {what}: {error}");
    shutdown::exit(ExitStatus::Failure)
}

/// SeaBIOS (QEMU) and the Bochs BIOS both identify their ACPI tables as "BOCHS ".
fn is_emulator_firmware(oem_id: &[u8; 6]) -> bool {
    oem_id == b"BOCHS "
}

fn level_filter(level: cmdline::LogLevel) -> log::LevelFilter {
    match level {
        cmdline::LogLevel::Error => log::LevelFilter::Error,
        cmdline::LogLevel::Warn => log::LevelFilter::Warn,
        cmdline::LogLevel::Info => log::LevelFilter::Info,
        cmdline::LogLevel::Debug => log::LevelFilter::Debug,
        cmdline::LogLevel::Trace => log::LevelFilter::Trace,
    }
}

/// Rust entry, called by the trampoline in `boot/entry` in 64-bit mode on the boot stack,
/// with the boot loader's magic and the physical address of its boot information.
#[unsafe(no_mangle)]
extern "C" fn mica_main(magic: u32, info_addr: u32) -> ! {
    let main_tsc = arch::rdtsc();
    serial::init(serial::COM1);
    serial::init_logger(log::LevelFilter::Info);
    let layout = boot_entry::image_layout();
    arch::init(&layout);

    let loader = match magic {
        boot_entry::MULTIBOOT1_LOADER_MAGIC => "Multiboot1",
        boot_entry::MULTIBOOT2_LOADER_MAGIC => "Multiboot2",
        _ => "unknown",
    };
    println!(
        "Mica {} starting (loader={loader})",
        env!("CARGO_PKG_VERSION")
    );
    // Decide early (before anything can fail) whether the emulator exit ports may be used:
    // the BIOS area's RSDP names the firmware. Refined below with the loader's RSDP.
    let bios_rsdp = boot_info::find_rsdp_in_bios_area(&platform::BootPhysMemory);
    shutdown::set_emulator(bios_rsdp.is_some_and(|rsdp| is_emulator_firmware(&rsdp.oem_id)));

    let boot = match boot_info::parse(&platform::BootPhysMemory, magic, info_addr) {
        Ok(boot) => boot,
        Err(error) => fatal("boot information", error),
    };
    let options = match cmdline::parse(boot.cmdline.as_str()) {
        Ok(options) => options,
        Err(error) => fatal("command line", error),
    };
    if options.serial_port != serial::COM1 {
        info!("console moves to I/O port {:#x}", options.serial_port);
        serial::init(options.serial_port);
    }
    serial::init_logger(level_filter(options.log_level));
    for warning in options.warnings.as_slice() {
        warn!("{warning}");
    }
    if options.dropped_warnings > 0 {
        warn!(
            "{} more command line warnings not shown",
            options.dropped_warnings
        );
    }
    let emulator = boot
        .rsdp
        .or(bios_rsdp)
        .is_some_and(|rsdp| is_emulator_firmware(&rsdp.oem_id));
    shutdown::set_emulator(emulator);
    info!(
        "boot: {} loader \"{}\", command line \"{}\", {} module(s), firmware {}",
        match boot.loader {
            Loader::Multiboot1 => "Multiboot1",
            Loader::Multiboot2 => "Multiboot2",
        },
        boot.loader_name.as_str(),
        boot.cmdline.as_str(),
        boot.modules.as_slice().len(),
        if emulator {
            "QEMU/Bochs (emulator exit ports enabled)"
        } else {
            "real or unknown"
        },
    );
    for region in boot.memory_map.regions() {
        log::debug!(
            "e820: {:#014x}..{:#014x} {:?}",
            region.start,
            region.end(),
            region.kind
        );
    }
    for module in boot.modules.as_slice() {
        info!(
            "module \"{}\" at {:#x}..{:#x}",
            module.name(),
            module.start,
            module.end
        );
    }

    let cpu = CpuReport::detect(&platform::HostCpuid, &platform::HostMsrs);
    println!("{}", cpu.identity_line());
    println!("{}", cpu.paging_line());
    println!("{}", cpu.virt_line());
    match cpu.virt_support() {
        VirtSupport::Svm(_) => info!("virtualization: AMD SVM with nested paging"),
        VirtSupport::Vmx(_) => info!("virtualization: Intel VMX with EPT"),
        VirtSupport::None(reason) => warn!("no usable hardware virtualization: {reason}"),
    }
    if !cpu.paging.nx {
        fatal(
            "CPU",
            "no NX (execute-disable) support; Mica needs it for W^X",
        );
    }

    let mut usable = [PhysRange::new(0, 0); boot_info::MAX_MEMORY_REGIONS];
    let mut unusable = [PhysRange::new(0, 0); boot_info::MAX_MEMORY_REGIONS];
    let (mut n_usable, mut n_unusable) = (0, 0);
    for region in boot.memory_map.regions() {
        let range = PhysRange::new(region.start, region.end());
        if region.kind == MemoryKind::Usable {
            usable[n_usable] = range;
            n_usable += 1;
        } else {
            unusable[n_unusable] = range;
            n_unusable += 1;
        }
    }
    let mut modules = [PhysRange::new(0, 0); boot_info::MAX_MODULES];
    for (slot, module) in modules.iter_mut().zip(boot.modules.as_slice()) {
        *slot = PhysRange::new(module.start, module.end);
    }
    let image = PhysRange::new(layout.image.start, layout.image.end);
    let root_plan = match root::plan(&boot, &usable[..n_usable], image, options.child_pool) {
        Ok(plan) => plan,
        Err(error) => fatal("root partition", error),
    };
    let summary = match memory::init(
        &usable[..n_usable],
        &unusable[..n_unusable],
        &modules[..boot.modules.as_slice().len()],
        &layout,
        cpu.paging.phys_addr_bits,
        cpu.paging.pdpe1gb,
        root_plan.as_ref().map(|plan| plan.hypervisor_region),
    ) {
        Ok(summary) => summary,
        Err(error) => fatal("memory", error),
    };
    info!(
        "memory: {} MiB managed, {} MiB free; page tables at {:#x}; heap {:#x}..{:#x}",
        summary.total_frames / 256,
        summary.free_frames / 256,
        summary.page_table_root,
        summary.heap.start,
        summary.heap.end
    );
    let check: alloc::vec::Vec<u64> = (1..=64).collect();
    if check.iter().sum::<u64>() != 64 * 65 / 2 {
        fatal("heap", "self-check returned wrong contents");
    }

    println!(
        "bench: entry_to_main_tsc={}",
        main_tsc.wrapping_sub(boot_entry::entry_tsc())
    );
    println!(
        "bench: entry_to_ready_tsc={}",
        arch::rdtsc().wrapping_sub(boot_entry::entry_tsc())
    );
    println!("MICA READY");

    if let Some(test) = options.test {
        #[cfg(feature = "test-hooks")]
        test_hooks::run(test, &layout);
        #[cfg(not(feature = "test-hooks"))]
        warn!("test={test} ignored: this image is built without test hooks");
    }

    if let Some(plan) = root_plan {
        if !options.launch.as_slice().is_empty() {
            warn!("launch= is ignored: the root partition creates the children");
        }
        let rsdp = bios_rsdp.map(|rsdp| rsdp.phys);
        match root::run(&boot, &plan, image, &cpu, rsdp) {
            Ok(reason) => {
                println!("root partition stopped: {reason}");
                shutdown::exit(ExitStatus::Failure)
            }
            Err(error) => fatal("root partition", error),
        }
    }

    if options.launch.as_slice().is_empty() {
        info!("nothing to launch (launch= is empty); shutting down");
        shutdown::exit(ExitStatus::Success);
    }
    let apic = arch::lapic::physical_base();
    if let Err(error) = memory::map_mmio(apic, 4096) {
        fatal("local APIC", error);
    }
    arch::lapic::init(apic);
    match vmm::run_launch_list(
        &boot,
        options.launch.as_slice(),
        options.wait.as_slice(),
        options.child_pool,
        &cpu,
    ) {
        Ok(failed) => {
            info!("all partitions stopped ({failed} did not exit with status 0); shutting down")
        }
        Err(error) => fatal("launch", error),
    }
    shutdown::exit(ExitStatus::Success)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    serial::force_unlock();
    println!("MICA PANIC: {info}");
    shutdown::exit(ExitStatus::Failure)
}
