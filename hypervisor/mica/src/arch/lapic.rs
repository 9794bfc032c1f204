//! The local APIC (xAPIC, MMIO) as the hypervisor's preemption timer, and the legacy PIC
//! silenced. The hypervisor runs with interrupts disabled; it opens a short window after a
//! guest exit so a pending timer interrupt is taken (and acknowledged) by [`timer_irq`].

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use x86_64::instructions::port::Port;
use x86_64::registers::model_specific::Msr;

/// Vector of the local APIC timer.
pub const TIMER_VECTOR: u8 = 0xF0;
/// Vector of the local APIC's spurious interrupt.
pub const SPURIOUS_VECTOR: u8 = 0xFF;

const IA32_APIC_BASE: u32 = 0x1B;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_MASK: u64 = 0x000F_FFFF_FFFF_F000;

const REG_TPR: usize = 0x80;
const REG_EOI: usize = 0xB0;
const REG_SVR: usize = 0xF0;
const REG_LVT_TIMER: usize = 0x320;
const REG_TIMER_INITIAL: usize = 0x380;
const REG_TIMER_DIVIDE: usize = 0x3E0;

const SVR_ENABLE: u32 = 1 << 8;
const LVT_MASKED: u32 = 1 << 16;
/// Divide configuration value for "divide by 16".
const DIVIDE_BY_16: u32 = 0b0011;

static BASE: AtomicUsize = AtomicUsize::new(0);
static TICKS: AtomicU64 = AtomicU64::new(0);

/// Physical (= virtual, identity mapped) address of the local APIC registers.
pub fn physical_base() -> u64 {
    let msr = Msr::new(IA32_APIC_BASE);
    // SAFETY: IA32_APIC_BASE exists on every x86-64 CPU with a local APIC (all we run on);
    // reading it has no side effects.
    let value = unsafe { msr.read() };
    value & APIC_BASE_MASK
}

fn write(reg: usize, value: u32) {
    let base = BASE.load(Ordering::Relaxed);
    if base == 0 {
        return;
    }
    let address = (base + reg) as *mut u32;
    // SAFETY: `base` is the local APIC's register page, mapped uncached by `init` before it
    // stored `base`; `reg` is one of the architectural 16-byte-aligned register offsets.
    unsafe { address.write_volatile(value) };
}

/// Masks the two 8259 PICs (after moving them to vectors 0x20-0x2F, away from exceptions)
/// and enables the local APIC at `base` (already mapped uncached) with the timer masked.
pub fn init(base: u64) {
    silence_pic();
    let msr_value = {
        let msr = Msr::new(IA32_APIC_BASE);
        // SAFETY: as in `physical_base`.
        unsafe { msr.read() }
    };
    if msr_value & APIC_BASE_ENABLE == 0 {
        let mut msr = Msr::new(IA32_APIC_BASE);
        // SAFETY: setting the global enable bit of the APIC at its current base only turns the
        // local APIC on; interrupts stay disabled (IF=0) in the hypervisor.
        unsafe { msr.write(msr_value | APIC_BASE_ENABLE) };
    }
    BASE.store(base as usize, Ordering::Relaxed);
    write(REG_TPR, 0);
    write(REG_SVR, SVR_ENABLE | u32::from(SPURIOUS_VECTOR));
    write(REG_TIMER_DIVIDE, DIVIDE_BY_16);
    write(REG_LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
}

fn silence_pic() {
    let commands: [(u16, u8); 10] = [
        (0x20, 0x11), // ICW1: init, expect ICW4
        (0xA0, 0x11),
        (0x21, 0x20), // ICW2: master vectors 0x20-0x27
        (0xA1, 0x28), // slave vectors 0x28-0x2F
        (0x21, 0x04), // ICW3: slave on IRQ2
        (0xA1, 0x02),
        (0x21, 0x01), // ICW4: 8086 mode
        (0xA1, 0x01),
        (0x21, 0xFF), // mask everything
        (0xA1, 0xFF),
    ];
    for (port, value) in commands {
        // SAFETY: the 8259 command/data ports; reprogramming and masking the PICs affects only
        // legacy interrupt delivery, which the hypervisor does not use.
        unsafe { Port::<u8>::new(port).write(value) };
    }
}

/// LVT timer mode bit 17: periodic.
const LVT_PERIODIC: u32 = 1 << 17;

/// Starts the periodic timer: an interrupt every `count` APIC timer ticks (bus clock / 16).
pub fn arm_periodic(count: u32) {
    write(REG_LVT_TIMER, LVT_PERIODIC | u32::from(TIMER_VECTOR));
    write(REG_TIMER_INITIAL, count);
}

/// Stops the timer.
pub fn disarm() {
    write(REG_TIMER_INITIAL, 0);
    write(REG_LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
}

/// Timer interrupts taken so far.
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// Lets a pending interrupt in: opens a one-instruction window with interrupts enabled.
pub fn take_pending_interrupts() {
    // SAFETY: the IDT has handlers for every vector 32-255 (`exceptions::init`), all of which
    // return; STI's shadow covers the NOP, so pending interrupts are taken exactly between the
    // NOP and the CLI, and the hypervisor continues with interrupts disabled as before.
    unsafe { core::arch::asm!("sti", "nop", "cli", options(nomem, nostack)) };
}

/// Rust side of the timer interrupt: count and acknowledge.
#[unsafe(no_mangle)]
extern "C" fn mica_timer_irq() {
    TICKS.fetch_add(1, Ordering::Relaxed);
    write(REG_EOI, 0);
}
