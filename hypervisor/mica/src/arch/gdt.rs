//! Global descriptor table and task-state segment.
//!
//! Layout: 0x08 kernel code, 0x10 kernel data, 0x18 TSS (same code/data selectors as the boot
//! trampoline's GDT, so the switch is seamless).

use boot_entry::ImageLayout;
use spin::Once;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

/// IST slots (1-based in the IDT, 0-based in the TSS array).
pub const IST_DOUBLE_FAULT: u8 = 1;
/// IST slot for NMIs.
pub const IST_NMI: u8 = 2;
/// IST slot for machine checks.
pub const IST_MACHINE_CHECK: u8 = 3;
/// IST slot for every other exception.
pub const IST_EXCEPTION: u8 = 4;

struct Selectors {
    code: SegmentSelector,
    data: SegmentSelector,
    tss: SegmentSelector,
}

static TSS: Once<TaskStateSegment> = Once::new();
static GDT: Once<(GlobalDescriptorTable, Selectors)> = Once::new();

pub fn init(layout: &ImageLayout) {
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        let ist = |top: u64| VirtAddr::new(top);
        tss.interrupt_stack_table[usize::from(IST_DOUBLE_FAULT - 1)] =
            ist(layout.double_fault_stack.top());
        tss.interrupt_stack_table[usize::from(IST_NMI - 1)] = ist(layout.nmi_stack.top());
        tss.interrupt_stack_table[usize::from(IST_MACHINE_CHECK - 1)] =
            ist(layout.machine_check_stack.top());
        tss.interrupt_stack_table[usize::from(IST_EXCEPTION - 1)] =
            ist(layout.exception_stack.top());
        tss
    });
    let (gdt, selectors) = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss = gdt.append(Descriptor::tss_segment(tss));
        (gdt, Selectors { code, data, tss })
    });
    gdt.load();
    // SAFETY: the selectors index descriptors of the GDT just loaded (static, never freed):
    // a 64-bit ring-0 code segment, a ring-0 data segment and an available 64-bit TSS whose IST
    // pointers are the tops of the image's mapped IST stacks.
    unsafe {
        CS::set_reg(selectors.code);
    }
    // SAFETY: as above; the data selector is a writable ring-0 data segment.
    unsafe {
        DS::set_reg(selectors.data);
    }
    // SAFETY: as above.
    unsafe {
        ES::set_reg(selectors.data);
    }
    // SAFETY: as above; SS must be a writable data segment at CPL 0, which it is.
    unsafe {
        SS::set_reg(selectors.data);
    }
    // SAFETY: the TSS descriptor is valid, available (not busy) and loaded exactly once.
    unsafe {
        load_tss(selectors.tss);
    }
}
