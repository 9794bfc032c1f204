//! Exception entry stubs, the IDT, and the fault dump.
//!
//! Every CPU exception (vectors 0-31) enters through a small stub that pushes a uniform frame
//! (error code or 0, vector, all general-purpose registers) on its IST stack and calls
//! [`mica_exception`]. In the hypervisor itself an exception is a bug: the handler prints a
//! readable dump (`MICA FAULT: ...`) and stops the machine with the failure exit code.

use core::fmt;

use spin::Once;
use x86_64::VirtAddr;
use x86_64::instructions::tables::lidt;
use x86_64::registers::control::{Cr0, Cr2, Cr3, Cr4};
use x86_64::structures::DescriptorTablePointer;

use super::gdt;
use crate::shutdown::{self, ExitStatus};

// Entry stubs. Vectors 8, 10-14, 17, 21, 29 and 30 push an error code; the others get a 0 so
// the frame has one shape. The common path saves every GPR, aligns the stack and calls Rust.
core::arch::global_asm!(
    r#"
.macro MICA_ISR_NOERR n
mica_isr_\n:
    push $0
    push $\n
    jmp mica_isr_common
.endm
.macro MICA_ISR_ERR n
mica_isr_\n:
    push $\n
    jmp mica_isr_common
.endm

.section .text.mica_isr, "ax"
MICA_ISR_NOERR 0
MICA_ISR_NOERR 1
MICA_ISR_NOERR 2
MICA_ISR_NOERR 3
MICA_ISR_NOERR 4
MICA_ISR_NOERR 5
MICA_ISR_NOERR 6
MICA_ISR_NOERR 7
MICA_ISR_ERR   8
MICA_ISR_NOERR 9
MICA_ISR_ERR   10
MICA_ISR_ERR   11
MICA_ISR_ERR   12
MICA_ISR_ERR   13
MICA_ISR_ERR   14
MICA_ISR_NOERR 15
MICA_ISR_NOERR 16
MICA_ISR_ERR   17
MICA_ISR_NOERR 18
MICA_ISR_NOERR 19
MICA_ISR_NOERR 20
MICA_ISR_ERR   21
MICA_ISR_NOERR 22
MICA_ISR_NOERR 23
MICA_ISR_NOERR 24
MICA_ISR_NOERR 25
MICA_ISR_NOERR 26
MICA_ISR_NOERR 27
MICA_ISR_NOERR 28
MICA_ISR_ERR   29
MICA_ISR_ERR   30
MICA_ISR_NOERR 31

mica_isr_common:
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, %rdi
    and $-16, %rsp
    call mica_exception
    ud2

/* Interrupts (vectors 32-255): the timer counts and acknowledges; every other vector is
 * ignored (the PICs are masked, so only spurious interrupts can arrive there). Caller-saved
 * registers are preserved; these handlers return. */
.global mica_irq_timer
mica_irq_timer:
    push %rax
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %r8
    push %r9
    push %r10
    push %r11
    cld
    call mica_timer_irq
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rax
    iretq
.global mica_irq_ignore
mica_irq_ignore:
    iretq

.section .rodata.mica_isr, "a"
.balign 8
.global mica_isr_table
mica_isr_table:
    .quad mica_isr_0, mica_isr_1, mica_isr_2, mica_isr_3
    .quad mica_isr_4, mica_isr_5, mica_isr_6, mica_isr_7
    .quad mica_isr_8, mica_isr_9, mica_isr_10, mica_isr_11
    .quad mica_isr_12, mica_isr_13, mica_isr_14, mica_isr_15
    .quad mica_isr_16, mica_isr_17, mica_isr_18, mica_isr_19
    .quad mica_isr_20, mica_isr_21, mica_isr_22, mica_isr_23
    .quad mica_isr_24, mica_isr_25, mica_isr_26, mica_isr_27
    .quad mica_isr_28, mica_isr_29, mica_isr_30, mica_isr_31
"#,
    options(att_syntax)
);

unsafe extern "C" {
    static mica_isr_table: [u64; 32];
    fn mica_irq_timer();
    fn mica_irq_ignore();
}

/// The frame the entry stubs build, lowest address first.
#[repr(C)]
#[derive(Debug)]
pub struct ExceptionFrame {
    r15: u64,
    r14: u64,
    r13: u64,
    r12: u64,
    r11: u64,
    r10: u64,
    r9: u64,
    r8: u64,
    rbp: u64,
    rdi: u64,
    rsi: u64,
    rdx: u64,
    rcx: u64,
    rbx: u64,
    rax: u64,
    vector: u64,
    error_code: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

const _: () = assert!(core::mem::size_of::<ExceptionFrame>() == 22 * 8);

/// One 16-byte interrupt gate.
#[repr(C, align(16))]
#[derive(Clone, Copy)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

const _: () = assert!(core::mem::size_of::<Gate>() == 16);

impl Gate {
    const ABSENT: Gate = Gate {
        offset_low: 0,
        selector: 0,
        ist: 0,
        type_attr: 0,
        offset_mid: 0,
        offset_high: 0,
        reserved: 0,
    };

    /// A present, DPL-0 64-bit interrupt gate (interrupts stay disabled in the handler).
    fn interrupt(handler: u64, ist: u8) -> Gate {
        Gate {
            offset_low: handler as u16,
            selector: 0x08,
            ist,
            type_attr: 0x8E,
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

#[repr(C, align(16))]
struct Idt([Gate; 256]);

static IDT: Once<Idt> = Once::new();

/// Builds and loads the IDT: vectors 0-31 go to the dump stubs, each on an IST stack; the
/// local APIC timer vector counts ticks; every other vector returns at once.
pub fn init() {
    let idt = IDT.call_once(|| {
        let mut idt = Idt([Gate::ABSENT; 256]);
        // SAFETY: `mica_isr_table` is 32 initialised quadwords in .rodata (assembled above).
        let stubs: &[u64; 32] = unsafe { &mica_isr_table };
        for (vector, &stub) in stubs.iter().enumerate() {
            let ist = match vector {
                2 => gdt::IST_NMI,
                8 => gdt::IST_DOUBLE_FAULT,
                18 => gdt::IST_MACHINE_CHECK,
                _ => gdt::IST_EXCEPTION,
            };
            idt.0[vector] = Gate::interrupt(stub, ist);
        }
        // Interrupts run on the current stack (they are taken only in the run loop's short
        // STI windows, on the boot stack).
        for gate in idt.0.iter_mut().skip(32) {
            *gate = Gate::interrupt(mica_irq_ignore as *const () as u64, 0);
        }
        idt.0[usize::from(super::lapic::TIMER_VECTOR)] =
            Gate::interrupt(mica_irq_timer as *const () as u64, 0);
        idt
    });
    let pointer = DescriptorTablePointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: VirtAddr::from_ptr(idt),
    };
    // SAFETY: the IDT is static (never freed or moved); every present gate points at an entry
    // stub in this image with selector 0x08 (our code segment) and an IST index the TSS fills.
    unsafe { lidt(&pointer) };
}

const NAMES: [&str; 32] = [
    "#DE divide error",
    "#DB debug",
    "NMI",
    "#BP breakpoint",
    "#OF overflow",
    "#BR bound range",
    "#UD invalid opcode",
    "#NM device not available",
    "#DF double fault",
    "coprocessor segment overrun",
    "#TS invalid TSS",
    "#NP segment not present",
    "#SS stack fault",
    "#GP general protection",
    "#PF page fault",
    "reserved",
    "#MF x87 floating point",
    "#AC alignment check",
    "#MC machine check",
    "#XM SIMD floating point",
    "#VE virtualization",
    "#CP control protection",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "#HV hypervisor injection",
    "#VC VMM communication",
    "#SX security",
    "reserved",
];

impl fmt::Display for ExceptionFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = usize::try_from(self.vector)
            .ok()
            .and_then(|v| NAMES.get(v))
            .copied()
            .unwrap_or("unknown");
        writeln!(
            f,
            "MICA FAULT: {name} (vector={}) error=0x{:x} rip=0x{:016x} cr2=0x{:016x}",
            self.vector,
            self.error_code,
            self.rip,
            Cr2::read_raw()
        )?;
        let (cr3, _) = Cr3::read_raw();
        writeln!(
            f,
            "  cs=0x{:x} rflags=0x{:x} rsp=0x{:016x} ss=0x{:x} cr0=0x{:x} cr3=0x{:x} cr4=0x{:x}",
            self.cs,
            self.rflags,
            self.rsp,
            self.ss,
            Cr0::read_raw(),
            cr3.start_address().as_u64(),
            Cr4::read_raw()
        )?;
        let regs = [
            ("rax", self.rax),
            ("rbx", self.rbx),
            ("rcx", self.rcx),
            ("rdx", self.rdx),
            ("rsi", self.rsi),
            ("rdi", self.rdi),
            ("rbp", self.rbp),
            ("r8 ", self.r8),
            ("r9 ", self.r9),
            ("r10", self.r10),
            ("r11", self.r11),
            ("r12", self.r12),
            ("r13", self.r13),
            ("r14", self.r14),
            ("r15", self.r15),
        ];
        for row in regs.chunks(4) {
            write!(f, " ")?;
            for (name, value) in row {
                write!(f, " {name}=0x{value:016x}")?;
            }
            writeln!(f)?;
        }
        if self.vector == 14 {
            let e = self.error_code;
            if let Some(stack) =
                crate::memory::guard_page_hit(&boot_entry::image_layout(), Cr2::read_raw())
            {
                writeln!(
                    f,
                    "  stack overflow: the fault hit the guard page of the {stack}"
                )?;
            }
            writeln!(
                f,
                "  page fault: {} {} in {} mode{}",
                if e & 1 != 0 {
                    "protection violation"
                } else {
                    "not-present page"
                },
                if e & 0x10 != 0 {
                    "on instruction fetch"
                } else if e & 2 != 0 {
                    "on write"
                } else {
                    "on read"
                },
                if e & 4 != 0 { "user" } else { "supervisor" },
                if e & 8 != 0 {
                    " (reserved bit set)"
                } else {
                    ""
                }
            )?;
        }
        Ok(())
    }
}

/// Rust side of every exception: dump and stop. Never returns.
#[unsafe(no_mangle)]
extern "C" fn mica_exception(frame: &ExceptionFrame) -> ! {
    crate::serial::force_unlock();
    crate::serial::write_fmt(format_args!("{frame}"));
    shutdown::exit(ExitStatus::Failure)
}
