//! The privileged and special instructions the test guests use, one small wrapper each.
//!
//! These only make sense inside a guest (CPL 0); on the host they are compiled but never
//! called.

use core::arch::asm;

/// Writes one byte to an I/O port.
pub fn outb(port: u16, value: u8) {
    // SAFETY: port output has no effect on memory the compiler knows about; in a guest the
    // hypervisor decides what the port does (console, exit, or stopping the partition).
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags));
    }
}

/// Writes a 32-bit value to an I/O port.
pub fn outl(port: u16, value: u32) {
    // SAFETY: as `outb`.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags));
    }
}

/// Reads the time-stamp counter.
#[must_use]
pub fn rdtsc() -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: RDTSC only writes EDX:EAX.
    unsafe {
        asm!("rdtsc", out("eax") low, out("edx") high, options(nomem, nostack, preserves_flags));
    }
    (u64::from(high) << 32) | u64::from(low)
}

/// CPUID leaf `leaf`, subleaf 0: `[eax, ebx, ecx, edx]`.
#[must_use]
pub fn cpuid(leaf: u32) -> [u32; 4] {
    let (eax, ebx, ecx, edx): (u32, u32, u32, u32);
    // SAFETY: CPUID only writes EAX..EDX; RBX (reserved by LLVM) is saved and restored
    // through a scratch register.
    unsafe {
        asm!(
            "mov {tmp:r}, rbx",
            "cpuid",
            "xchg {tmp:r}, rbx",
            tmp = out(reg) ebx,
            inout("eax") leaf => eax,
            inout("ecx") 0u32 => ecx,
            out("edx") edx,
            options(nomem, nostack, preserves_flags),
        );
    }
    [eax, ebx, ecx, edx]
}

/// The CPU vendor, as CPUID leaf 0 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    /// "AuthenticAMD" or "HygonGenuine": SVM, hypercalls with VMMCALL.
    Amd,
    /// "GenuineIntel": VMX, hypercalls with VMCALL.
    Intel,
    /// Anything else (treated as Intel).
    Other,
}

impl Vendor {
    /// Classifies a vendor string (CPUID 0 EBX, EDX, ECX in that order).
    #[must_use]
    pub fn from_id(id: &[u8; 12]) -> Self {
        match id {
            b"AuthenticAMD" | b"HygonGenuine" => Self::Amd,
            b"GenuineIntel" => Self::Intel,
            _ => Self::Other,
        }
    }

    /// The vendor of the CPU this runs on.
    #[must_use]
    pub fn detect() -> Self {
        let [_, ebx, ecx, edx] = cpuid(0);
        let mut id = [0u8; 12];
        id[..4].copy_from_slice(&ebx.to_le_bytes());
        id[4..8].copy_from_slice(&edx.to_le_bytes());
        id[8..].copy_from_slice(&ecx.to_le_bytes());
        Self::from_id(&id)
    }
}

/// MAXPHYADDR from CPUID 0x8000_0008 (36 if the leaf is missing).
#[must_use]
pub fn phys_addr_bits() -> u8 {
    if cpuid(0x8000_0000)[0] < 0x8000_0008 {
        return 36;
    }
    (cpuid(0x8000_0008)[0] & 0xFF) as u8
}

/// The partition's privilege mask (`HV_PARTITION_PRIVILEGE_MASK`) from CPUID leaf
/// 0x4000_0003 (EAX low half, EBX high half), if the hypervisor presents the Hyper-V
/// interface ("Microsoft Hv" at leaf 0x4000_0000 with leaf 0x4000_0003 present).
#[must_use]
pub fn hv_privileges() -> Option<u64> {
    let [max_leaf, ebx, ecx, edx] = cpuid(0x4000_0000);
    let mut id = [0u8; 12];
    id[..4].copy_from_slice(&ebx.to_le_bytes());
    id[4..8].copy_from_slice(&ecx.to_le_bytes());
    id[8..].copy_from_slice(&edx.to_le_bytes());
    if &id != b"Microsoft Hv" || max_leaf < 0x4000_0003 {
        return None;
    }
    let [low, high, _, _] = cpuid(0x4000_0003);
    Some(u64::from(low) | (u64::from(high) << 32))
}

/// CR3.
#[must_use]
pub fn read_cr3() -> u64 {
    let value: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe {
        asm!("mov {}, cr3", out(reg) value, options(nomem, nostack, preserves_flags));
    }
    value
}

/// Invalidates the TLB entry of the page containing `addr`.
pub fn invlpg(addr: u64) {
    // SAFETY: dropping a TLB entry only makes the next access walk the tables again.
    unsafe {
        asm!("invlpg [{}]", in(reg) addr, options(nostack, preserves_flags));
    }
}

/// Disables interrupts and halts (the guest's idle-forever loop body).
pub fn cli_hlt() {
    // SAFETY: CLI and HLT touch no memory; the guest never relies on interrupts.
    unsafe {
        asm!("cli", "hlt", options(nomem, nostack));
    }
}

/// Loads an empty IDT (base 0, limit 0) and executes INT3: the breakpoint exception cannot
/// be delivered (#GP), nor can that (#DF), so the processor shuts down (triple fault).
pub fn triple_fault() -> ! {
    let idtr = [0u64; 2];
    // SAFETY: the 10-byte IDTR image (limit 0, base 0) is read from a live local; after
    // LIDT every exception is fatal to the guest, which is what this function is for.
    unsafe {
        asm!("lidt [{}]", in(reg) idtr.as_ptr(), options(readonly, nostack, preserves_flags));
    }
    // SAFETY: INT3 with an empty IDT escalates to a shutdown; control never comes back.
    unsafe {
        asm!("int3", "ud2", options(nomem, nostack, noreturn));
    }
}
