//! VMRUN consistency checks, each triggered once.

use super::*;
use crate::*;

fn caps() -> HostCaps {
    HostCaps::baseline(40, 0x8000)
}

fn check(mutate: impl FnOnce(&mut Vmcb)) -> Result<(), VmcbError> {
    let mut v = guest();
    mutate(&mut v);
    check_vmrun_consistency(&v, &caps())
}

#[test]
fn the_long_mode_guest_passes() {
    assert_eq!(check(|_| {}), Ok(()));
}

/// A mutation of a valid guest VMCB and the error it must cause.
type Case = (fn(&mut Vmcb), VmcbError);

#[test]
fn each_check_fires() {
    let cases: [Case; 22] = [
        (|v| v.save.efer &= !(1 << 12), VmcbError::SvmeClear),
        (|v| v.save.cr0 |= 1 << 29, VmcbError::Cr0NwWithoutCd),
        (|v| v.save.cr0 |= 1 << 32, VmcbError::Cr0High(0x1_8000_0031)),
        (|v| v.save.cr3 |= 1 << 45, VmcbError::Cr3Reserved(1 << 45)),
        (|v| v.save.cr4 |= 1 << 13, VmcbError::Cr4Reserved(1 << 13)),
        (
            |v| v.save.dr6 |= 1 << 40,
            VmcbError::Dr6High(0x100_FFFF_0FF0),
        ),
        (|v| v.save.dr7 |= 1 << 32, VmcbError::Dr7High(0x1_0000_0400)),
        (|v| v.save.efer |= 1 << 9, VmcbError::EferReserved(1 << 9)),
        (|v| v.save.cr4 = 0, VmcbError::LongModeWithoutPae),
        (|v| v.save.cr0 &= !1, VmcbError::LongModeWithoutPe),
        (
            |v| v.save.cs.attrib |= attrib::DB,
            VmcbError::CsLongAndDefault,
        ),
        (|v| v.save.efer &= !(1 << 10), VmcbError::LmaMismatch),
        (
            |v| v.control.intercept_misc2 &= !1,
            VmcbError::VmrunNotIntercepted,
        ),
        (|v| v.control.guest_asid = 0, VmcbError::AsidZero),
        (
            |v| v.control.guest_asid = 0x8000,
            VmcbError::AsidOutOfRange(0x8000),
        ),
        (
            |v| v.control.n_cr3 = 0x1001,
            VmcbError::NestedCr3Invalid(0x1001),
        ),
        (
            |v| v.control.iopm_base_pa = 0x50_0800,
            VmcbError::IopmMisaligned(0x50_0800),
        ),
        (
            |v| v.control.iopm_base_pa = 0xFF_FFFF_E000,
            VmcbError::IopmBeyondPhysical(0xFF_FFFF_E000),
        ),
        (
            |v| v.control.msrpm_base_pa = 0x60_0010,
            VmcbError::MsrpmMisaligned(0x60_0010),
        ),
        (
            |v| v.control.msrpm_base_pa = 0xFF_FFFF_F000,
            VmcbError::MsrpmBeyondPhysical(0xFF_FFFF_F000),
        ),
        (
            |v| v.control.event_inj = 0x8000_0302,
            VmcbError::EventInjection(EventError::NmiAsException),
        ),
        (
            |v| v.control.event_inj = 0x8000_0500,
            VmcbError::EventInjection(EventError::ReservedType(5)),
        ),
    ];
    for (i, (mutate, expected)) in cases.into_iter().enumerate() {
        assert_eq!(check(mutate), Err(expected), "case {i}");
    }
}

#[test]
fn mode_dependent_checks() {
    // Paging off: CR3 is 32 bits wide, and CS.L outside long mode is flagged.
    let legacy = |v: &mut Vmcb| {
        v.save.cr0 = 0x11;
        v.save.efer = 1 << 12;
        v.save.cs.attrib = attrib::DATA & !attrib::TYPE_MASK | attrib::TYPE_CODE_XRA;
    };
    assert_eq!(check(legacy), Ok(()));
    assert_eq!(
        check(|v| {
            legacy(v);
            v.save.cr3 = 1 << 32;
        }),
        Err(VmcbError::Cr3Reserved(1 << 32))
    );
    assert_eq!(
        check(|v| {
            legacy(v);
            v.save.cs.attrib = attrib::CODE64;
        }),
        Err(VmcbError::CsLongOutsideLongMode)
    );
    // CD and NW together are allowed.
    assert_eq!(check(|v| v.save.cr0 |= (1 << 29) | (1 << 30)), Ok(()));
}

#[test]
fn host_capability_checks() {
    let mut v = guest();
    let mut no_lm = caps();
    no_lm.long_mode = false;
    assert_eq!(
        check_vmrun_consistency(&v, &no_lm),
        Err(VmcbError::LongModeUnsupported)
    );
    let mut no_npt = caps();
    no_npt.nested_paging = false;
    assert_eq!(
        check_vmrun_consistency(&v, &no_npt),
        Err(VmcbError::NestedPagingUnsupported)
    );
    // Permission maps are only checked when their intercept is on.
    v.control.iopm_base_pa = 0x123;
    v.control
        .set_misc1_intercepts(BASELINE_MISC1 - Misc1Intercepts::IOIO_PROT);
    assert_eq!(check_vmrun_consistency(&v, &caps()), Ok(()));
    // A wider CR4 mask admits newer bits.
    v.save.cr4 |= regs::Cr4::PKE.bits();
    assert!(matches!(
        check_vmrun_consistency(&v, &caps()),
        Err(VmcbError::Cr4Reserved(_))
    ));
    let mut wide = caps();
    wide.cr4_supported |= regs::Cr4::PKE;
    assert_eq!(check_vmrun_consistency(&v, &wide), Ok(()));
}
