//! Field offsets and bit positions seen through the bytes the CPU reads.

use zerocopy::{FromZeros, IntoBytes};

use super::*;
use crate::*;

fn u64_at(vmcb: &Vmcb, offset: usize) -> u64 {
    let bytes: [u8; 8] = vmcb.as_bytes()[offset..offset + 8]
        .try_into()
        .expect("8 bytes");
    u64::from_le_bytes(bytes)
}

#[test]
fn control_fields_land_at_apm_offsets() {
    let mut v = Vmcb::new_zeroed();
    v.control.iopm_base_pa = 0x1111;
    v.control.msrpm_base_pa = 0x2222;
    v.control.tsc_offset = 0x3333;
    v.control.exit_code = 0x4444;
    v.control.exit_info1 = 0x5555;
    v.control.exit_info2 = 0x6666;
    v.control.exit_int_info = 0x7777;
    v.control.event_inj = 0x8888;
    v.control.n_cr3 = 0x9999;
    v.control.next_rip = 0xAAAA;
    assert_eq!(u64_at(&v, 0x040), 0x1111);
    assert_eq!(u64_at(&v, 0x048), 0x2222);
    assert_eq!(u64_at(&v, 0x050), 0x3333);
    assert_eq!(u64_at(&v, 0x070), 0x4444);
    assert_eq!(u64_at(&v, 0x078), 0x5555);
    assert_eq!(u64_at(&v, 0x080), 0x6666);
    assert_eq!(u64_at(&v, 0x088), 0x7777);
    assert_eq!(u64_at(&v, 0x0A8), 0x8888);
    assert_eq!(u64_at(&v, 0x0B0), 0x9999);
    assert_eq!(u64_at(&v, 0x0C8), 0xAAAA);
}

#[test]
fn asid_tlb_control_and_np_enable_bytes() {
    let mut v = Vmcb::new_zeroed();
    v.control.guest_asid = 0x0102_0304;
    v.control.set_tlb_control(TlbControl::FlushAsidNonGlobal);
    v.control.set_np_enabled(true);
    v.control.set_interrupt_shadow(true);
    let b = v.as_bytes();
    assert_eq!(&b[0x58..0x5C], &[4, 3, 2, 1]);
    assert_eq!(b[0x5C], 7);
    assert_eq!(b[0x90], 1);
    assert_eq!(b[0x68], 1);
    assert_eq!(
        v.control.tlb_control(),
        Some(TlbControl::FlushAsidNonGlobal)
    );
    v.control.tlb_control = 2;
    assert_eq!(v.control.tlb_control(), None);
}

#[test]
fn state_save_fields_land_at_apm_offsets() {
    let mut v = Vmcb::new_zeroed();
    v.save.cs = VmcbSegment {
        selector: 0x08,
        attrib: 0xA9B,
        limit: 0xFFFF_FFFF,
        base: 0x1234,
    };
    v.save.cpl = 3;
    v.save.efer = 0xD00;
    v.save.cr4 = 0x20;
    v.save.cr3 = 0x3000;
    v.save.cr0 = 0x8000_0011;
    v.save.rflags = 2;
    v.save.rip = 0xDEAD;
    v.save.rsp = 0xBEEF;
    v.save.rax = 0xCAFE;
    v.save.lstar = 0x1357;
    v.save.kernel_gs_base = 0x2468;
    v.save.cr2 = 0x9BDF;
    v.save.g_pat = PAT_DEFAULT_FOR_TEST;
    let b = v.as_bytes();
    assert_eq!(&b[0x410..0x414], &[0x08, 0x00, 0x9B, 0x0A]);
    assert_eq!(u64_at(&v, 0x418), 0x1234);
    assert_eq!(b[0x4CB], 3);
    assert_eq!(u64_at(&v, 0x4D0), 0xD00);
    assert_eq!(u64_at(&v, 0x548), 0x20);
    assert_eq!(u64_at(&v, 0x550), 0x3000);
    assert_eq!(u64_at(&v, 0x558), 0x8000_0011);
    assert_eq!(u64_at(&v, 0x570), 2);
    assert_eq!(u64_at(&v, 0x578), 0xDEAD);
    assert_eq!(u64_at(&v, 0x5D8), 0xBEEF);
    assert_eq!(u64_at(&v, 0x5F8), 0xCAFE);
    assert_eq!(u64_at(&v, 0x608), 0x1357);
    assert_eq!(u64_at(&v, 0x620), 0x2468);
    assert_eq!(u64_at(&v, 0x640), 0x9BDF);
    assert_eq!(u64_at(&v, 0x668), PAT_DEFAULT_FOR_TEST);
}

const PAT_DEFAULT_FOR_TEST: u64 = 0x0007_0406_0007_0406;

#[test]
fn intercept_bits_match_appendix_b() {
    let mut v = Vmcb::new_zeroed();
    v.control
        .set_cr_intercepts(CrIntercepts::CR3_READ | CrIntercepts::CR8_WRITE);
    v.control
        .set_dr_intercepts(DrIntercepts::write(7).expect("DR7"));
    v.control
        .set_exception_intercepts(ExceptionIntercepts::MC | ExceptionIntercepts::PF);
    v.control.set_misc1_intercepts(
        Misc1Intercepts::INTR | Misc1Intercepts::CPUID | Misc1Intercepts::SHUTDOWN,
    );
    v.control.set_misc2_intercepts(
        Misc2Intercepts::VMRUN | Misc2Intercepts::VMMCALL | Misc2Intercepts::XSETBV,
    );
    let b = v.as_bytes();
    assert_eq!(&b[0x00..0x04], &[0x08, 0x00, 0x00, 0x01]); // CR3 read bit 3, CR8 write bit 24
    assert_eq!(&b[0x04..0x08], &[0x00, 0x00, 0x80, 0x00]); // DR7 write bit 23
    assert_eq!(&b[0x08..0x0C], &[0x00, 0x40, 0x04, 0x00]); // #PF bit 14, #MC bit 18
    assert_eq!(&b[0x0C..0x10], &[0x01, 0x00, 0x04, 0x80]); // INTR 0, CPUID 18, SHUTDOWN 31
    assert_eq!(&b[0x10..0x14], &[0x03, 0x20, 0x00, 0x00]); // VMRUN 0, VMMCALL 1, XSETBV 13
    assert_eq!(Misc1Intercepts::IOIO_PROT.bits(), 1 << 27);
    assert_eq!(Misc1Intercepts::MSR_PROT.bits(), 1 << 28);
    assert_eq!(Misc1Intercepts::HLT.bits(), 1 << 24);
    assert_eq!(Misc2Intercepts::SKINIT.bits(), 1 << 6);
    assert_eq!(Misc2Intercepts::MWAIT.bits(), 1 << 11);
    assert_eq!(CrIntercepts::read(16), None);
    assert_eq!(ExceptionIntercepts::vector(32), None);
    assert_eq!(
        ExceptionIntercepts::vector(18),
        Some(ExceptionIntercepts::MC)
    );
}

#[test]
fn v_intr_fields() {
    let v = VIntrControl::default()
        .with_v_tpr(0x5)
        .with_v_irq(true)
        .with_v_intr_prio(0xF)
        .with_v_ign_tpr(true)
        .with_v_intr_masking(true)
        .with_v_intr_vector(0x41);
    assert_eq!(v.0, 0x41_011F_0105);
    assert_eq!(
        (v.v_tpr(), v.v_irq(), v.v_intr_prio(), v.v_intr_vector()),
        (5, true, 0xF, 0x41)
    );
    assert!(v.v_ign_tpr() && v.v_intr_masking() && !v.avic_enable() && !v.v_gif());
    assert!(!v.with_v_irq(false).v_irq());
}

#[test]
fn segment_attributes_from_descriptors() {
    // Flat 64-bit code and flat data descriptors as a GDT holds them.
    assert_eq!(
        attrib_from_descriptor(0x00AF_9B00_0000_FFFF),
        attrib::CODE64
    );
    assert_eq!(attrib_from_descriptor(0x00CF_9300_0000_FFFF), attrib::DATA);
    assert_eq!(attrib::CODE64, 0xA9B);
    assert_eq!(attrib::DATA, 0xC93);
    assert_eq!(attrib::TSS64_BUSY, 0x08B);
}

#[test]
fn long_mode_guest_state() {
    let v = guest();
    let s = &v.save;
    assert_eq!(s.efer, 0x1500); // SVME (bit 12) | LMA (bit 10) | LME (bit 8)
    assert_eq!(s.cr0, 0x8000_0031); // PG | NE | ET | PE
    assert_eq!(s.cr4, 0x20); // PAE
    assert_eq!(
        (s.cr3, s.rip, s.rsp, s.rflags),
        (0x20_0000, RIP, 0x30_0000, 2)
    );
    assert_eq!((s.cs.selector, s.cs.attrib), (0x08, 0xA9B));
    for seg in [s.ds, s.es, s.ss, s.fs, s.gs] {
        assert_eq!(
            (seg.selector, seg.attrib, seg.limit, seg.base),
            (0x10, 0xC93, u32::MAX, 0)
        );
    }
    assert_eq!((s.tr.attrib, s.tr.limit), (0x8B, 0x67));
    assert_eq!(s.g_pat, 0x0007_0406_0007_0406);
    assert_eq!((s.dr6, s.dr7, s.cpl), (0xFFFF_0FF0, 0x400, 0));
    assert!(s.in_64bit_mode());

    let c = &v.control;
    assert_eq!(
        (c.guest_asid, c.n_cr3, c.iopm_base_pa, c.msrpm_base_pa),
        (1, 0x40_0000, 0x50_0000, 0x60_0000)
    );
    assert!(c.np_enabled());
    assert!(c.v_intr().v_intr_masking());
    let m1 = c.misc1_intercepts();
    for f in [
        Misc1Intercepts::INTR,
        Misc1Intercepts::NMI,
        Misc1Intercepts::CPUID,
        Misc1Intercepts::HLT,
        Misc1Intercepts::INVLPGA,
        Misc1Intercepts::IOIO_PROT,
        Misc1Intercepts::MSR_PROT,
        Misc1Intercepts::SHUTDOWN,
    ] {
        assert!(m1.contains(f), "{f:?}");
    }
    let m2 = c.misc2_intercepts();
    for f in [
        Misc2Intercepts::VMRUN,
        Misc2Intercepts::VMMCALL,
        Misc2Intercepts::VMLOAD,
        Misc2Intercepts::VMSAVE,
        Misc2Intercepts::STGI,
        Misc2Intercepts::CLGI,
        Misc2Intercepts::SKINIT,
    ] {
        assert!(m2.contains(f), "{f:?}");
    }
    assert!(c.exception_intercepts().contains(ExceptionIntercepts::MC));
    assert_eq!(c.event_inj, 0);
}

#[test]
fn init_resets_previous_contents() {
    let mut v = guest();
    v.control.exit_code = 0x81;
    v.control.event_inj = 0x8000_0B0D;
    v.save.rax = 42;
    v.init_long_mode_guest(RIP, 0, 0, asid(2), 0, 0, 0);
    assert_eq!(
        (
            v.control.exit_code,
            v.control.event_inj,
            v.save.rax,
            v.control.guest_asid
        ),
        (0, 0, 0, 2)
    );
}
