//! Building a VMCB for a guest that starts directly in 64-bit mode.

use zerocopy::FromZeros;

use crate::asid::{Asid, TlbControl};
use crate::intercepts::{ExceptionIntercepts, Misc1Intercepts, Misc2Intercepts};
use crate::regs::{Cr0, Cr4, DR6_INIT, DR7_INIT, Efer, PAT_DEFAULT, RFLAGS_FIXED};
use crate::vmcb::{VIntrControl, Vmcb, VmcbSegment, attrib};

/// Instruction intercepts Mica always sets (first vector): physical interrupts, NMIs, SMIs
/// and INITs go to the host; CPUID, HLT, port I/O and MSRs (filtered by the permission maps)
/// are emulated; INVD would discard the host's dirty cache lines; INVLPGA acts on other
/// ASIDs; a triple fault stops the guest instead of resetting the CPU.
pub const BASELINE_MISC1: Misc1Intercepts = Misc1Intercepts::INTR
    .union(Misc1Intercepts::NMI)
    .union(Misc1Intercepts::SMI)
    .union(Misc1Intercepts::INIT)
    .union(Misc1Intercepts::CPUID)
    .union(Misc1Intercepts::INVD)
    .union(Misc1Intercepts::HLT)
    .union(Misc1Intercepts::INVLPGA)
    .union(Misc1Intercepts::IOIO_PROT)
    .union(Misc1Intercepts::MSR_PROT)
    .union(Misc1Intercepts::SHUTDOWN);

/// Instruction intercepts Mica always sets (second vector): VMRUN (mandatory) and the other
/// SVM instructions (the guest gets #UD), VMMCALL (hypercalls), XSETBV (SVM does not switch
/// XCR0, so a guest write would change the host's), MONITOR/MWAIT (could park the CPU).
pub const BASELINE_MISC2: Misc2Intercepts = Misc2Intercepts::VMRUN
    .union(Misc2Intercepts::VMMCALL)
    .union(Misc2Intercepts::VMLOAD)
    .union(Misc2Intercepts::VMSAVE)
    .union(Misc2Intercepts::STGI)
    .union(Misc2Intercepts::CLGI)
    .union(Misc2Intercepts::SKINIT)
    .union(Misc2Intercepts::XSETBV)
    .union(Misc2Intercepts::MONITOR)
    .union(Misc2Intercepts::MWAIT);

/// Exceptions Mica intercepts: #MC (host machine checks must reach the host), and #AC and
/// #DB, whose endless re-delivery inside a guest can hang the physical CPU
/// (CVE-2015-5307, CVE-2015-8104). The handler reflects #AC and #DB back into the guest.
pub const BASELINE_EXCEPTIONS: ExceptionIntercepts = ExceptionIntercepts::MC
    .union(ExceptionIntercepts::AC)
    .union(ExceptionIntercepts::DB);

/// Selectors the flat guest state uses (the guest's own GDT must match once it reloads them).
pub const GUEST_CODE_SELECTOR: u16 = 0x08;
/// Data selector of the flat guest state.
pub const GUEST_DATA_SELECTOR: u16 = 0x10;
/// TR selector of the flat guest state.
pub const GUEST_TSS_SELECTOR: u16 = 0x18;

impl Vmcb {
    /// Resets the VMCB to a guest that starts in 64-bit mode at `entry_rip` with stack
    /// `rsp`, paging rooted at guest-physical `cr3`, in ASID `asid`, with nested paging rooted
    /// at host-physical `n_cr3` and the permission maps at `iopm_pa` and `msrpm_pa`.
    ///
    /// Guest state: EFER.LME|LMA|SVME; CR0.PE|ET|NE|PG; CR4.PAE; flat ring-0 CS (L=1,
    /// selector 0x08) and data segments (selector 0x10); a busy 64-bit TSS in TR (selector
    /// 0x18, base 0); empty GDTR/IDTR (the guest installs its own before it enables
    /// interrupts or faults); RFLAGS with only bit 1; default PAT. Intercepts:
    /// [`BASELINE_MISC1`], [`BASELINE_MISC2`], [`BASELINE_EXCEPTIONS`]; nested paging on;
    /// V_INTR_MASKING on, so the host keeps physical interrupts. TLB_CONTROL is left at
    /// "do nothing": set it from [`crate::AsidGrant::first_run`] before the first VMRUN.
    #[allow(
        clippy::too_many_arguments,
        reason = "the argument list the lead specified"
    )]
    pub fn init_long_mode_guest(
        &mut self,
        entry_rip: u64,
        cr3: u64,
        rsp: u64,
        asid: Asid,
        n_cr3: u64,
        iopm_pa: u64,
        msrpm_pa: u64,
    ) {
        self.zero();

        let c = &mut self.control;
        c.set_misc1_intercepts(BASELINE_MISC1);
        c.set_misc2_intercepts(BASELINE_MISC2);
        c.set_exception_intercepts(BASELINE_EXCEPTIONS);
        c.iopm_base_pa = iopm_pa;
        c.msrpm_base_pa = msrpm_pa;
        c.guest_asid = asid.get();
        c.set_tlb_control(TlbControl::DoNothing);
        c.set_v_intr(VIntrControl::default().with_v_intr_masking(true));
        c.set_np_enabled(true);
        c.n_cr3 = n_cr3;

        let s = &mut self.save;
        let flat = |selector, attrib| VmcbSegment {
            selector,
            attrib,
            limit: u32::MAX,
            base: 0,
        };
        s.cs = flat(GUEST_CODE_SELECTOR, attrib::CODE64);
        s.ds = flat(GUEST_DATA_SELECTOR, attrib::DATA);
        s.es = s.ds;
        s.ss = s.ds;
        s.fs = s.ds;
        s.gs = s.ds;
        s.tr = VmcbSegment {
            selector: GUEST_TSS_SELECTOR,
            attrib: attrib::TSS64_BUSY,
            limit: 0x67,
            base: 0,
        };
        s.cpl = 0;
        s.efer = (Efer::LME | Efer::LMA | Efer::SVME).bits();
        s.cr0 = (Cr0::PE | Cr0::ET | Cr0::NE | Cr0::PG).bits();
        s.cr4 = Cr4::PAE.bits();
        s.cr3 = cr3;
        s.dr6 = DR6_INIT;
        s.dr7 = DR7_INIT;
        s.rflags = RFLAGS_FIXED;
        s.rip = entry_rip;
        s.rsp = rsp;
        s.g_pat = PAT_DEFAULT;
    }
}
