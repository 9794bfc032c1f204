//! The virtual machine control block (AMD APM vol. 2, appendix B).
//!
//! [`Vmcb`] is the exact 4096-byte hardware layout: the control area ([`VmcbControl`], offsets
//! 0x000-0x3FF, table B-1) followed by the state-save area ([`VmcbSave`], offsets 0x400-0xFFF,
//! table B-2). Every field's offset is asserted at compile time against the APM tables. Raw
//! fields are public because the CPU reads them as they are; typed accessors exist for the
//! packed ones (intercept vectors, TLB control, virtual interrupt control, event injection).
//! Fields for features Mica does not use (AVIC, SEV) are private reserved bytes, kept zero.

use core::mem::{offset_of, size_of};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::asid::TlbControl;
use crate::event::{Event, EventError};
use crate::intercepts::{
    CleanBits, CrIntercepts, DrIntercepts, ExceptionIntercepts, Misc1Intercepts, Misc2Intercepts,
    Misc3Intercepts,
};
use crate::regs::{Cr0, Cr4, Efer};

/// Size of a VMCB: one 4 KiB page, 4 KiB aligned in physical memory.
pub const VMCB_SIZE: usize = 4096;
/// Offset of the state-save area inside the VMCB.
pub const VMCB_SAVE_OFFSET: usize = 0x400;

/// A segment register as the VMCB stores it (16 bytes).
///
/// `attrib` packs descriptor bits 47:40 into its bits 7:0 (type, S, DPL, P) and descriptor
/// bits 55:52 into its bits 11:8 (AVL, L, D/B, G); see [`attrib_from_descriptor`].
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct VmcbSegment {
    /// Selector.
    pub selector: u16,
    /// Attributes in the SVM packed encoding.
    pub attrib: u16,
    /// Limit, expanded to bytes (granularity already applied).
    pub limit: u32,
    /// Base address.
    pub base: u64,
}

const _: () = assert!(size_of::<VmcbSegment>() == 16);

/// SVM segment attribute bits.
pub mod attrib {
    /// Descriptor type field (bits 3:0).
    pub const TYPE_MASK: u16 = 0x00F;
    /// S: code/data (1) or system (0) descriptor.
    pub const S: u16 = 1 << 4;
    /// DPL (bits 6:5).
    pub const DPL_MASK: u16 = 0x060;
    /// P: present.
    pub const P: u16 = 1 << 7;
    /// AVL: available to software.
    pub const AVL: u16 = 1 << 8;
    /// L: 64-bit code segment.
    pub const L: u16 = 1 << 9;
    /// D/B: default operand size 32 bits.
    pub const DB: u16 = 1 << 10;
    /// G: granularity 4 KiB.
    pub const G: u16 = 1 << 11;

    /// Code type: execute/read, accessed.
    pub const TYPE_CODE_XRA: u16 = 0xB;
    /// Data type: read/write, accessed.
    pub const TYPE_DATA_RWA: u16 = 0x3;
    /// System type: busy 64-bit TSS.
    pub const TYPE_TSS64_BUSY: u16 = 0xB;
    /// System type: LDT.
    pub const TYPE_LDT: u16 = 0x2;

    /// Flat 64-bit ring-0 code segment: P, S, execute/read/accessed, L, G (0xA9B).
    pub const CODE64: u16 = P | S | TYPE_CODE_XRA | L | G;
    /// Flat ring-0 data segment: P, S, read/write/accessed, D/B, G (0xC93).
    pub const DATA: u16 = P | S | TYPE_DATA_RWA | DB | G;
    /// Busy 64-bit TSS: P, type 0xB (0x08B).
    pub const TSS64_BUSY: u16 = P | TYPE_TSS64_BUSY;
}

/// The SVM attribute encoding of a legacy (8-byte) segment descriptor.
pub const fn attrib_from_descriptor(descriptor: u64) -> u16 {
    let low = (descriptor >> 40) & 0xFF;
    let high = (descriptor >> 52) & 0xF;
    (low | (high << 8)) as u16
}

/// The VMCB control area (table B-1), 1 KiB.
#[derive(Debug, Clone, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct VmcbControl {
    /// 0x000: CR read (15:0) and write (31:16) intercepts; see [`CrIntercepts`].
    pub intercept_cr: u32,
    /// 0x004: DR read (15:0) and write (31:16) intercepts; see [`DrIntercepts`].
    pub intercept_dr: u32,
    /// 0x008: exception intercepts, one bit per vector; see [`ExceptionIntercepts`].
    pub intercept_exceptions: u32,
    /// 0x00C: first miscellaneous intercept vector; see [`Misc1Intercepts`].
    pub intercept_misc1: u32,
    /// 0x010: second miscellaneous intercept vector; see [`Misc2Intercepts`].
    pub intercept_misc2: u32,
    /// 0x014: third miscellaneous intercept vector; see [`Misc3Intercepts`].
    pub intercept_misc3: u32,
    _reserved_018: [u8; 0x24],
    /// 0x03C: PAUSE filter threshold.
    pub pause_filter_threshold: u16,
    /// 0x03E: PAUSE filter count.
    pub pause_filter_count: u16,
    /// 0x040: physical base of the I/O permission map (4 KiB aligned).
    pub iopm_base_pa: u64,
    /// 0x048: physical base of the MSR permission map (4 KiB aligned).
    pub msrpm_base_pa: u64,
    /// 0x050: added to the host TSC while the guest runs.
    pub tsc_offset: u64,
    /// 0x058: guest ASID (0 is the host's and makes VMRUN fail).
    pub guest_asid: u32,
    /// 0x05C: TLB_CONTROL; see [`TlbControl`].
    pub tlb_control: u8,
    _reserved_05d: [u8; 3],
    /// 0x060: virtual interrupt control (V_TPR, V_IRQ, ...); see [`VIntrControl`].
    pub v_intr: u64,
    /// 0x068: bit 0 interrupt shadow, bit 1 guest interrupt mask.
    pub interrupt_state: u64,
    /// 0x070: EXITCODE.
    pub exit_code: u64,
    /// 0x078: EXITINFO1.
    pub exit_info1: u64,
    /// 0x080: EXITINFO2.
    pub exit_info2: u64,
    /// 0x088: EXITINTINFO, the event being delivered when the exit happened.
    pub exit_int_info: u64,
    /// 0x090: bit 0 NP_ENABLE (SEV bits above it stay zero).
    pub np_control: u64,
    _avic_apic_bar: u64,
    _ghcb_pa: u64,
    /// 0x0A8: EVENTINJ, the event to inject on VMRUN; see [`Event`].
    pub event_inj: u64,
    /// 0x0B0: N_CR3, the nested page-table root.
    pub n_cr3: u64,
    /// 0x0B8: bit 0 LBR virtualization enable, bit 1 virtualized VMSAVE/VMLOAD enable.
    pub virt_ext: u64,
    /// 0x0C0: VMCB clean bits; see [`CleanBits`].
    pub clean_bits: u32,
    _reserved_0c4: u32,
    /// 0x0C8: nRIP, the next sequential RIP (written on exit with NRIP-save).
    pub next_rip: u64,
    /// 0x0D0: number of guest instruction bytes fetched (decode assists).
    pub guest_insn_len: u8,
    /// 0x0D1: the guest instruction bytes (decode assists).
    pub guest_insn_bytes: [u8; 15],
    _avic_backing_page: u64,
    _reserved_0e8: u64,
    _avic_logical_table: u64,
    _avic_physical_table: u64,
    _reserved_100: u64,
    _vmsa_pa: u64,
    _reserved_110: [u8; 0x3E0 - 0x110],
    /// 0x3E0: reserved for host use; the CPU never touches it.
    pub host_scratch: [u8; 0x20],
}

const _: () = {
    assert!(size_of::<VmcbControl>() == VMCB_SAVE_OFFSET);
    assert!(offset_of!(VmcbControl, intercept_cr) == 0x000);
    assert!(offset_of!(VmcbControl, intercept_dr) == 0x004);
    assert!(offset_of!(VmcbControl, intercept_exceptions) == 0x008);
    assert!(offset_of!(VmcbControl, intercept_misc1) == 0x00C);
    assert!(offset_of!(VmcbControl, intercept_misc2) == 0x010);
    assert!(offset_of!(VmcbControl, intercept_misc3) == 0x014);
    assert!(offset_of!(VmcbControl, pause_filter_threshold) == 0x03C);
    assert!(offset_of!(VmcbControl, pause_filter_count) == 0x03E);
    assert!(offset_of!(VmcbControl, iopm_base_pa) == 0x040);
    assert!(offset_of!(VmcbControl, msrpm_base_pa) == 0x048);
    assert!(offset_of!(VmcbControl, tsc_offset) == 0x050);
    assert!(offset_of!(VmcbControl, guest_asid) == 0x058);
    assert!(offset_of!(VmcbControl, tlb_control) == 0x05C);
    assert!(offset_of!(VmcbControl, v_intr) == 0x060);
    assert!(offset_of!(VmcbControl, interrupt_state) == 0x068);
    assert!(offset_of!(VmcbControl, exit_code) == 0x070);
    assert!(offset_of!(VmcbControl, exit_info1) == 0x078);
    assert!(offset_of!(VmcbControl, exit_info2) == 0x080);
    assert!(offset_of!(VmcbControl, exit_int_info) == 0x088);
    assert!(offset_of!(VmcbControl, np_control) == 0x090);
    assert!(offset_of!(VmcbControl, _avic_apic_bar) == 0x098);
    assert!(offset_of!(VmcbControl, _ghcb_pa) == 0x0A0);
    assert!(offset_of!(VmcbControl, event_inj) == 0x0A8);
    assert!(offset_of!(VmcbControl, n_cr3) == 0x0B0);
    assert!(offset_of!(VmcbControl, virt_ext) == 0x0B8);
    assert!(offset_of!(VmcbControl, clean_bits) == 0x0C0);
    assert!(offset_of!(VmcbControl, next_rip) == 0x0C8);
    assert!(offset_of!(VmcbControl, guest_insn_len) == 0x0D0);
    assert!(offset_of!(VmcbControl, guest_insn_bytes) == 0x0D1);
    assert!(offset_of!(VmcbControl, _avic_backing_page) == 0x0E0);
    assert!(offset_of!(VmcbControl, _avic_logical_table) == 0x0F0);
    assert!(offset_of!(VmcbControl, _avic_physical_table) == 0x0F8);
    assert!(offset_of!(VmcbControl, _vmsa_pa) == 0x108);
    assert!(offset_of!(VmcbControl, host_scratch) == 0x3E0);
};

/// The VMCB state-save area (table B-2), 3 KiB. Offsets in the comments are relative to the
/// start of this area (VMCB offset 0x400), as in the APM table.
#[derive(Debug, Clone, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct VmcbSave {
    /// 0x000: ES.
    pub es: VmcbSegment,
    /// 0x010: CS.
    pub cs: VmcbSegment,
    /// 0x020: SS.
    pub ss: VmcbSegment,
    /// 0x030: DS.
    pub ds: VmcbSegment,
    /// 0x040: FS.
    pub fs: VmcbSegment,
    /// 0x050: GS.
    pub gs: VmcbSegment,
    /// 0x060: GDTR (only limit and base are used).
    pub gdtr: VmcbSegment,
    /// 0x070: LDTR.
    pub ldtr: VmcbSegment,
    /// 0x080: IDTR (only limit and base are used).
    pub idtr: VmcbSegment,
    /// 0x090: TR.
    pub tr: VmcbSegment,
    _reserved_0a0: [u8; 0x2A],
    _vmpl: u8,
    /// 0x0CB: current privilege level.
    pub cpl: u8,
    _reserved_0cc: u32,
    /// 0x0D0: EFER; see [`Efer`].
    pub efer: u64,
    _reserved_0d8: [u8; 0x148 - 0x0D8],
    /// 0x148: CR4; see [`Cr4`].
    pub cr4: u64,
    /// 0x150: CR3.
    pub cr3: u64,
    /// 0x158: CR0; see [`Cr0`].
    pub cr0: u64,
    /// 0x160: DR7.
    pub dr7: u64,
    /// 0x168: DR6.
    pub dr6: u64,
    /// 0x170: RFLAGS.
    pub rflags: u64,
    /// 0x178: RIP.
    pub rip: u64,
    _reserved_180: [u8; 0x1D8 - 0x180],
    /// 0x1D8: RSP.
    pub rsp: u64,
    /// 0x1E0: S_CET.
    pub s_cet: u64,
    /// 0x1E8: SSP.
    pub ssp: u64,
    /// 0x1F0: ISST_ADDR.
    pub isst_addr: u64,
    /// 0x1F8: RAX (the other general registers are the hypervisor's to save).
    pub rax: u64,
    /// 0x200: STAR.
    pub star: u64,
    /// 0x208: LSTAR.
    pub lstar: u64,
    /// 0x210: CSTAR.
    pub cstar: u64,
    /// 0x218: SFMASK.
    pub sfmask: u64,
    /// 0x220: KernelGSbase.
    pub kernel_gs_base: u64,
    /// 0x228: SYSENTER_CS.
    pub sysenter_cs: u64,
    /// 0x230: SYSENTER_ESP.
    pub sysenter_esp: u64,
    /// 0x238: SYSENTER_EIP.
    pub sysenter_eip: u64,
    /// 0x240: CR2.
    pub cr2: u64,
    _reserved_248: [u8; 0x268 - 0x248],
    /// 0x268: G_PAT, the guest PAT used with nested paging.
    pub g_pat: u64,
    /// 0x270: DBGCTL.
    pub dbgctl: u64,
    /// 0x278: BR_FROM.
    pub br_from: u64,
    /// 0x280: BR_TO.
    pub br_to: u64,
    /// 0x288: LASTEXCPFROM.
    pub last_excp_from: u64,
    /// 0x290: LASTEXCPTO.
    pub last_excp_to: u64,
    _reserved_298: [u8; VMCB_SIZE - VMCB_SAVE_OFFSET - 0x298],
}

const _: () = {
    assert!(size_of::<VmcbSave>() == VMCB_SIZE - VMCB_SAVE_OFFSET);
    assert!(offset_of!(VmcbSave, es) == 0x000);
    assert!(offset_of!(VmcbSave, cs) == 0x010);
    assert!(offset_of!(VmcbSave, ss) == 0x020);
    assert!(offset_of!(VmcbSave, ds) == 0x030);
    assert!(offset_of!(VmcbSave, fs) == 0x040);
    assert!(offset_of!(VmcbSave, gs) == 0x050);
    assert!(offset_of!(VmcbSave, gdtr) == 0x060);
    assert!(offset_of!(VmcbSave, ldtr) == 0x070);
    assert!(offset_of!(VmcbSave, idtr) == 0x080);
    assert!(offset_of!(VmcbSave, tr) == 0x090);
    assert!(offset_of!(VmcbSave, _vmpl) == 0x0CA);
    assert!(offset_of!(VmcbSave, cpl) == 0x0CB);
    assert!(offset_of!(VmcbSave, efer) == 0x0D0);
    assert!(offset_of!(VmcbSave, cr4) == 0x148);
    assert!(offset_of!(VmcbSave, cr3) == 0x150);
    assert!(offset_of!(VmcbSave, cr0) == 0x158);
    assert!(offset_of!(VmcbSave, dr7) == 0x160);
    assert!(offset_of!(VmcbSave, dr6) == 0x168);
    assert!(offset_of!(VmcbSave, rflags) == 0x170);
    assert!(offset_of!(VmcbSave, rip) == 0x178);
    assert!(offset_of!(VmcbSave, rsp) == 0x1D8);
    assert!(offset_of!(VmcbSave, s_cet) == 0x1E0);
    assert!(offset_of!(VmcbSave, ssp) == 0x1E8);
    assert!(offset_of!(VmcbSave, isst_addr) == 0x1F0);
    assert!(offset_of!(VmcbSave, rax) == 0x1F8);
    assert!(offset_of!(VmcbSave, star) == 0x200);
    assert!(offset_of!(VmcbSave, lstar) == 0x208);
    assert!(offset_of!(VmcbSave, cstar) == 0x210);
    assert!(offset_of!(VmcbSave, sfmask) == 0x218);
    assert!(offset_of!(VmcbSave, kernel_gs_base) == 0x220);
    assert!(offset_of!(VmcbSave, sysenter_cs) == 0x228);
    assert!(offset_of!(VmcbSave, sysenter_esp) == 0x230);
    assert!(offset_of!(VmcbSave, sysenter_eip) == 0x238);
    assert!(offset_of!(VmcbSave, cr2) == 0x240);
    assert!(offset_of!(VmcbSave, g_pat) == 0x268);
    assert!(offset_of!(VmcbSave, dbgctl) == 0x270);
    assert!(offset_of!(VmcbSave, br_from) == 0x278);
    assert!(offset_of!(VmcbSave, br_to) == 0x280);
    assert!(offset_of!(VmcbSave, last_excp_from) == 0x288);
    assert!(offset_of!(VmcbSave, last_excp_to) == 0x290);
};

/// A whole VMCB: control area then state-save area, one 4 KiB-aligned page.
///
/// Create one with [`zerocopy::FromZeros::new_zeroed`] (or zero a frame in place), then
/// [`Vmcb::init_long_mode_guest`]. The bytes the CPU sees are [`zerocopy::IntoBytes::as_bytes`].
#[derive(Debug, Clone, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C, align(4096))]
pub struct Vmcb {
    /// Control area (VMCB offset 0x000).
    pub control: VmcbControl,
    /// State-save area (VMCB offset 0x400).
    pub save: VmcbSave,
}

const _: () = {
    assert!(size_of::<Vmcb>() == VMCB_SIZE);
    assert!(core::mem::align_of::<Vmcb>() == VMCB_SIZE);
    assert!(offset_of!(Vmcb, control) == 0);
    assert!(offset_of!(Vmcb, save) == VMCB_SAVE_OFFSET);
};

/// The virtual interrupt control word at VMCB offset 0x060.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VIntrControl(pub u64);

impl VIntrControl {
    const V_IRQ: u64 = 1 << 8;
    const V_GIF: u64 = 1 << 9;
    const V_IGN_TPR: u64 = 1 << 20;
    const V_INTR_MASKING: u64 = 1 << 24;
    const V_GIF_ENABLE: u64 = 1 << 25;
    const AVIC_ENABLE: u64 = 1 << 31;

    /// V_TPR (bits 7:0): the guest's virtual TPR (CR8 in bits 3:0).
    pub const fn v_tpr(self) -> u8 {
        (self.0 & 0xFF) as u8
    }

    /// Sets V_TPR.
    pub const fn with_v_tpr(self, tpr: u8) -> Self {
        Self((self.0 & !0xFF) | tpr as u64)
    }

    /// V_IRQ (bit 8): a virtual interrupt is pending.
    pub const fn v_irq(self) -> bool {
        self.0 & Self::V_IRQ != 0
    }

    /// Sets V_IRQ.
    pub const fn with_v_irq(self, on: bool) -> Self {
        self.with_bit(Self::V_IRQ, on)
    }

    /// V_GIF (bit 9): virtual global interrupt flag.
    pub const fn v_gif(self) -> bool {
        self.0 & Self::V_GIF != 0
    }

    /// V_INTR_PRIO (bits 19:16): priority of the pending virtual interrupt.
    pub const fn v_intr_prio(self) -> u8 {
        ((self.0 >> 16) & 0xF) as u8
    }

    /// Sets V_INTR_PRIO (only the low 4 bits of `prio` are used).
    pub const fn with_v_intr_prio(self, prio: u8) -> Self {
        Self((self.0 & !(0xF << 16)) | (((prio & 0xF) as u64) << 16))
    }

    /// V_IGN_TPR (bit 20): the pending virtual interrupt ignores V_TPR.
    pub const fn v_ign_tpr(self) -> bool {
        self.0 & Self::V_IGN_TPR != 0
    }

    /// Sets V_IGN_TPR.
    pub const fn with_v_ign_tpr(self, on: bool) -> Self {
        self.with_bit(Self::V_IGN_TPR, on)
    }

    /// V_INTR_MASKING (bit 24): guest RFLAGS.IF and CR8 act on virtual interrupts only, so
    /// physical interrupts stay under the host's control.
    pub const fn v_intr_masking(self) -> bool {
        self.0 & Self::V_INTR_MASKING != 0
    }

    /// Sets V_INTR_MASKING.
    pub const fn with_v_intr_masking(self, on: bool) -> Self {
        self.with_bit(Self::V_INTR_MASKING, on)
    }

    /// V_GIF enable (bit 25).
    pub const fn v_gif_enable(self) -> bool {
        self.0 & Self::V_GIF_ENABLE != 0
    }

    /// AVIC enable (bit 31); Mica keeps it clear.
    pub const fn avic_enable(self) -> bool {
        self.0 & Self::AVIC_ENABLE != 0
    }

    /// V_INTR_VECTOR (bits 39:32): vector of the pending virtual interrupt.
    pub const fn v_intr_vector(self) -> u8 {
        ((self.0 >> 32) & 0xFF) as u8
    }

    /// Sets V_INTR_VECTOR.
    pub const fn with_v_intr_vector(self, vector: u8) -> Self {
        Self((self.0 & !(0xFF << 32)) | ((vector as u64) << 32))
    }

    const fn with_bit(self, bit: u64, on: bool) -> Self {
        if on {
            Self(self.0 | bit)
        } else {
            Self(self.0 & !bit)
        }
    }
}

const INTERRUPT_SHADOW: u64 = 1 << 0;
const NP_ENABLE: u64 = 1 << 0;

impl VmcbControl {
    /// CR intercepts.
    pub const fn cr_intercepts(&self) -> CrIntercepts {
        CrIntercepts::from_bits_retain(self.intercept_cr)
    }

    /// Replaces the CR intercepts.
    pub const fn set_cr_intercepts(&mut self, v: CrIntercepts) {
        self.intercept_cr = v.bits();
    }

    /// DR intercepts.
    pub const fn dr_intercepts(&self) -> DrIntercepts {
        DrIntercepts::from_bits_retain(self.intercept_dr)
    }

    /// Replaces the DR intercepts.
    pub const fn set_dr_intercepts(&mut self, v: DrIntercepts) {
        self.intercept_dr = v.bits();
    }

    /// Exception intercepts.
    pub const fn exception_intercepts(&self) -> ExceptionIntercepts {
        ExceptionIntercepts::from_bits_retain(self.intercept_exceptions)
    }

    /// Replaces the exception intercepts.
    pub const fn set_exception_intercepts(&mut self, v: ExceptionIntercepts) {
        self.intercept_exceptions = v.bits();
    }

    /// First miscellaneous intercept vector.
    pub const fn misc1_intercepts(&self) -> Misc1Intercepts {
        Misc1Intercepts::from_bits_retain(self.intercept_misc1)
    }

    /// Replaces the first miscellaneous intercept vector.
    pub const fn set_misc1_intercepts(&mut self, v: Misc1Intercepts) {
        self.intercept_misc1 = v.bits();
    }

    /// Second miscellaneous intercept vector.
    pub const fn misc2_intercepts(&self) -> Misc2Intercepts {
        Misc2Intercepts::from_bits_retain(self.intercept_misc2)
    }

    /// Replaces the second miscellaneous intercept vector.
    pub const fn set_misc2_intercepts(&mut self, v: Misc2Intercepts) {
        self.intercept_misc2 = v.bits();
    }

    /// Third miscellaneous intercept vector.
    pub const fn misc3_intercepts(&self) -> Misc3Intercepts {
        Misc3Intercepts::from_bits_retain(self.intercept_misc3)
    }

    /// Replaces the third miscellaneous intercept vector.
    pub const fn set_misc3_intercepts(&mut self, v: Misc3Intercepts) {
        self.intercept_misc3 = v.bits();
    }

    /// TLB_CONTROL, or `None` if the byte holds a reserved encoding.
    pub const fn tlb_control(&self) -> Option<TlbControl> {
        TlbControl::from_raw(self.tlb_control)
    }

    /// Sets TLB_CONTROL for the next VMRUN.
    pub const fn set_tlb_control(&mut self, tlb: TlbControl) {
        self.tlb_control = tlb as u8;
    }

    /// The virtual interrupt control word.
    pub const fn v_intr(&self) -> VIntrControl {
        VIntrControl(self.v_intr)
    }

    /// Replaces the virtual interrupt control word.
    pub const fn set_v_intr(&mut self, v: VIntrControl) {
        self.v_intr = v.0;
    }

    /// Whether the guest is in an interrupt shadow (after STI or MOV SS).
    pub const fn interrupt_shadow(&self) -> bool {
        self.interrupt_state & INTERRUPT_SHADOW != 0
    }

    /// Sets or clears the interrupt shadow.
    pub const fn set_interrupt_shadow(&mut self, on: bool) {
        if on {
            self.interrupt_state |= INTERRUPT_SHADOW;
        } else {
            self.interrupt_state &= !INTERRUPT_SHADOW;
        }
    }

    /// Whether nested paging is enabled (NP_ENABLE).
    pub const fn np_enabled(&self) -> bool {
        self.np_control & NP_ENABLE != 0
    }

    /// Enables or disables nested paging.
    pub const fn set_np_enabled(&mut self, on: bool) {
        if on {
            self.np_control |= NP_ENABLE;
        } else {
            self.np_control &= !NP_ENABLE;
        }
    }

    /// VMCB clean bits.
    pub const fn clean_bits(&self) -> CleanBits {
        CleanBits::from_bits_retain(self.clean_bits)
    }

    /// Replaces the VMCB clean bits.
    pub const fn set_clean_bits(&mut self, v: CleanBits) {
        self.clean_bits = v.bits();
    }

    /// Whether LBR virtualization is enabled.
    pub const fn lbr_virtualization(&self) -> bool {
        self.virt_ext & 1 != 0
    }

    /// The event set up for injection on the next VMRUN, if any.
    pub fn pending_injection(&self) -> Result<Option<Event>, EventError> {
        Event::from_raw(self.event_inj)
    }

    /// Sets EVENTINJ so that VMRUN delivers `event` to the guest.
    pub fn inject(&mut self, event: Event) {
        self.event_inj = event.to_raw();
    }

    /// Clears EVENTINJ (the CPU also clears it once the event is delivered).
    pub fn clear_injection(&mut self) {
        self.event_inj = 0;
    }

    /// The event whose delivery the exit interrupted (EXITINTINFO), to re-inject, if any.
    pub fn interrupted_event(&self) -> Result<Option<Event>, EventError> {
        Event::from_raw(self.exit_int_info)
    }
}

impl VmcbSave {
    /// EFER as flags.
    pub const fn efer(&self) -> Efer {
        Efer::from_bits_retain(self.efer)
    }

    /// CR0 as flags.
    pub const fn cr0(&self) -> Cr0 {
        Cr0::from_bits_retain(self.cr0)
    }

    /// CR4 as flags.
    pub const fn cr4(&self) -> Cr4 {
        Cr4::from_bits_retain(self.cr4)
    }

    /// Whether the guest executes 64-bit code: EFER.LMA and CS.L.
    pub const fn in_64bit_mode(&self) -> bool {
        self.efer().contains(Efer::LMA) && self.cs.attrib & attrib::L != 0
    }
}
