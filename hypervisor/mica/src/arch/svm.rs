//! The SVM instructions themselves: enabling SVM, VMRUN with the guest's general-purpose
//! registers, and the host-state VMCB for VMSAVE/VMLOAD. Everything about what goes into a
//! VMCB and what an exit means lives in the host-tested `svm` crate.

use x86_64::registers::model_specific::Msr;

const IA32_EFER: u32 = 0xC000_0080;
const EFER_SVME: u64 = 1 << 12;
const VM_HSAVE_PA: u32 = 0xC001_0117;

/// Guest general-purpose registers that VMRUN does not switch (RAX, RSP, RIP, RFLAGS live in
/// the VMCB). The layout is fixed: `mica_svm_run` addresses the fields by offset.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuestGprs {
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}

const _: () = assert!(core::mem::size_of::<GuestGprs>() == 14 * 8);

// mica_svm_run(guest_vmcb_pa: rdi, host_vmcb_pa: rsi, gprs: rdx)
//
// Saves the callee-saved registers, loads the guest GPRs, then CLGI; STI; VMLOAD guest;
// VMRUN; VMSAVE guest; VMLOAD host; CLI; STGI. After #VMEXIT the CPU has restored the host's
// RAX, RSP, RIP, CR0/3/4, EFER, RFLAGS, GDTR/IDTR and segment registers from the host save
// area; VMLOAD of the host VMCB restores TR, FS/GS, KernelGsBase, STAR/LSTAR/CSTAR/SFMASK and
// SYSENTER state. Host IF is 1 only while GIF is 0 around VMRUN: with V_INTR_MASKING the
// host's IF at VMRUN decides whether physical interrupts reach the guest's run (they cause
// #VMEXIT(INTR)), and GIF=0 keeps them from being taken in the hypervisor. Outside that the
// hypervisor runs with IF=0 and takes pending interrupts only in `lapic::take_pending_interrupts`.
core::arch::global_asm!(
    r#"
.section .text.mica_svm_run, "ax"
.global mica_svm_run
mica_svm_run:
    push %rbx
    push %rbp
    push %r12
    push %r13
    push %r14
    push %r15
    push %rdx
    push %rsi
    mov %rdi, %rax
    mov 0x00(%rdx), %rbx
    mov 0x08(%rdx), %rcx
    mov 0x18(%rdx), %rsi
    mov 0x20(%rdx), %rdi
    mov 0x28(%rdx), %rbp
    mov 0x30(%rdx), %r8
    mov 0x38(%rdx), %r9
    mov 0x40(%rdx), %r10
    mov 0x48(%rdx), %r11
    mov 0x50(%rdx), %r12
    mov 0x58(%rdx), %r13
    mov 0x60(%rdx), %r14
    mov 0x68(%rdx), %r15
    mov 0x10(%rdx), %rdx
    clgi
    sti
    vmload %rax
    vmrun %rax
    vmsave %rax
    push %rdx
    mov 0x10(%rsp), %rdx
    mov %rbx, 0x00(%rdx)
    mov %rcx, 0x08(%rdx)
    pop %rcx
    mov %rcx, 0x10(%rdx)
    mov %rsi, 0x18(%rdx)
    mov %rdi, 0x20(%rdx)
    mov %rbp, 0x28(%rdx)
    mov %r8, 0x30(%rdx)
    mov %r9, 0x38(%rdx)
    mov %r10, 0x40(%rdx)
    mov %r11, 0x48(%rdx)
    mov %r12, 0x50(%rdx)
    mov %r13, 0x58(%rdx)
    mov %r14, 0x60(%rdx)
    mov %r15, 0x68(%rdx)
    pop %rax
    vmload %rax
    cli
    stgi
    add $8, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    pop %rbx
    ret

.global mica_svm_vmsave
mica_svm_vmsave:
    mov %rdi, %rax
    vmsave %rax
    ret
"#,
    options(att_syntax)
);

unsafe extern "C" {
    fn mica_svm_run(guest_vmcb_pa: u64, host_vmcb_pa: u64, gprs: *mut GuestGprs);
    fn mica_svm_vmsave(vmcb_pa: u64);
}

/// Turns SVM on (EFER.SVME) and gives the CPU its host save area.
///
/// `host_save_area` and `host_vmcb` are zeroed, 4 KiB-aligned frames owned by the hypervisor
/// for as long as SVM stays on. The host VMCB receives the state VMRUN does not restore.
pub fn enable(host_save_area: u64, host_vmcb: u64) {
    let mut efer = Msr::new(IA32_EFER);
    // SAFETY: reading EFER has no side effects.
    let value = unsafe { efer.read() };
    // SAFETY: `cpu_features` reported SVM supported and not disabled by the BIOS before this is
    // called; setting EFER.SVME only makes the SVM instructions available.
    unsafe { efer.write(value | EFER_SVME) };
    let mut hsave = Msr::new(VM_HSAVE_PA);
    // SAFETY: VM_HSAVE_PA exists when SVM does; the frame is page aligned and reserved for the
    // CPU's use (never touched by Rust code again).
    unsafe { hsave.write(host_save_area) };
    // SAFETY: SVM is enabled (above); `host_vmcb` is a 4 KiB-aligned frame the hypervisor owns;
    // VMSAVE writes the host's TR/FS/GS/syscall state into it.
    unsafe { mica_svm_vmsave(host_vmcb) };
}

/// Runs a guest until its next #VMEXIT.
///
/// # Safety
/// `guest_vmcb` must be the physical address of a VMCB that passed the `svm` crate's
/// consistency checks, whose nested page tables map only memory the guest owns, and that no
/// other CPU runs; `host_vmcb` the frame given to [`enable`].
pub unsafe fn run(guest_vmcb: u64, host_vmcb: u64, gprs: &mut GuestGprs) {
    // SAFETY: the caller guarantees the VMCB is valid and exclusively ours; the routine saves
    // and restores every host register the ABI requires and returns with the host state.
    unsafe { mica_svm_run(guest_vmcb, host_vmcb, gprs) };
}
