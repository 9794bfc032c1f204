//! Host tests against CPUs modelled on QEMU and Bochs.

use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use crate::regs::*;
use crate::*;

fn report(cpu: &FakeCpu) -> CpuReport {
    CpuReport::detect(cpu, cpu)
}

fn lines(r: &CpuReport) -> Vec<alloc::string::String> {
    r.to_string().lines().map(|l| l.to_string()).collect()
}

#[test]
fn qemu_epyc_decodes_svm_with_npt_only() {
    let cpu = FakeCpu::qemu_epyc();
    let r = report(&cpu);
    assert_eq!(r.identity.vendor, Vendor::Amd);
    assert_eq!(
        (r.identity.family, r.identity.model, r.identity.stepping),
        (0x17, 0x1, 2)
    );
    assert_eq!(r.identity.brand.as_bytes(), b"AMD EPYC Processor");
    assert_eq!((r.paging.phys_addr_bits, r.paging.virt_addr_bits), (40, 48));
    assert!(
        r.paging.nx
            && r.paging.pdpe1gb
            && r.paging.long_mode
            && r.paging.xsave
            && r.paging.hypervisor
    );
    assert!(!r.paging.x2apic);
    assert!(r.vmx.is_none());
    let svm = r.svm.unwrap();
    assert_eq!((svm.revision, svm.asids, svm.vm_cr), (1, 16, Some(0)));
    assert!(svm.npt() && !svm.nrip_save() && !svm.decode_assists() && !svm.disabled_by_bios);
    assert_eq!(svm.flags, SvmFeatureFlags::NP);
    assert_eq!(r.virt_support(), VirtSupport::Svm(svm));
    assert_eq!(
        lines(&r),
        vec![
            "cpu: vendor=AMD family=0x17 model=0x1 stepping=2 brand=\"AMD EPYC Processor\"",
            "cpu: phys_addr_bits=40 virt_addr_bits=48 nx=yes pdpe1gb=yes x2apic=no xsave=yes hypervisor_bit=yes",
            "svm: supported=yes disabled_by_bios=no revision=1 asids=16 npt=yes nrip_save=no decode_assists=no flush_by_asid=no vmcb_clean=no vgif=no avic=no",
        ]
    );
    assert_eq!(cpu.msr_reads(), vec![MSR_VM_CR]);
}

#[test]
fn bochs_ryzen_decodes_svm_with_nrip_save() {
    let r = report(&FakeCpu::bochs_ryzen());
    let svm = r.svm.unwrap();
    assert_eq!(
        svm.flags,
        SvmFeatureFlags::NP
            | SvmFeatureFlags::LBR_VIRT
            | SvmFeatureFlags::SVM_LOCK
            | SvmFeatureFlags::NRIP_SAVE
            | SvmFeatureFlags::FLUSH_BY_ASID
            | SvmFeatureFlags::PAUSE_FILTER
    );
    assert!(svm.nrip_save() && svm.flush_by_asid() && !svm.vmcb_clean());
    assert!(matches!(r.virt_support(), VirtSupport::Svm(_)));
    // Trailing padding of the brand string is trimmed.
    assert_eq!(
        lines(&r),
        vec![
            "cpu: vendor=AMD family=0x17 model=0x1 stepping=1 brand=\"AMD Ryzen 7 1700 Eight-Core Processor\"",
            "cpu: phys_addr_bits=40 virt_addr_bits=48 nx=yes pdpe1gb=yes x2apic=no xsave=yes hypervisor_bit=no",
            "svm: supported=yes disabled_by_bios=no revision=1 asids=32768 npt=yes nrip_save=yes decode_assists=no flush_by_asid=yes vmcb_clean=no vgif=no avic=no",
        ]
    );
}

#[test]
fn bochs_skylake_x_decodes_vmx_with_ept() {
    let cpu = FakeCpu::bochs_skylake_x();
    let r = report(&cpu);
    assert_eq!(r.identity.vendor, Vendor::Intel);
    assert_eq!(
        (r.identity.family, r.identity.model, r.identity.stepping),
        (0x6, 0x55, 4)
    );
    assert!(r.svm.is_none());
    let vmx = r.vmx.unwrap();
    assert_eq!(vmx.vmcs_revision, 4);
    assert!(vmx.feature_control_locked && vmx.vmxon_outside_smx && vmx.true_controls);
    assert!(vmx.secondary_controls && vmx.ept && vmx.vpid && vmx.unrestricted_guest);
    assert!(vmx.ept_2m() && vmx.ept_1g() && vmx.invept());
    assert!(
        vmx.ept_vpid_caps
            .contains(EptVpidCaps::WALK_LENGTH_4 | EptVpidCaps::MEMORY_TYPE_WB)
    );
    assert!(vmx.ept_vpid_caps.contains(EptVpidCaps::INVVPID));
    assert_eq!(r.virt_support(), VirtSupport::Vmx(vmx));
    assert_eq!(
        lines(&r),
        vec![
            "cpu: vendor=Intel family=0x6 model=0x55 stepping=4 brand=\"Intel(R) Core(TM) i7-7800X CPU @ 3.50GHz\"",
            "cpu: phys_addr_bits=40 virt_addr_bits=48 nx=yes pdpe1gb=yes x2apic=yes xsave=yes hypervisor_bit=no",
            "vmx: supported=yes feature_control_locked=yes vmxon_outside_smx=yes true_controls=yes ept=yes vpid=yes unrestricted_guest=yes ept_2m=yes ept_1g=yes invept=yes",
        ]
    );
    assert_eq!(
        cpu.msr_reads(),
        vec![
            MSR_IA32_FEATURE_CONTROL,
            MSR_IA32_VMX_BASIC,
            MSR_IA32_VMX_PROCBASED_CTLS,
            MSR_IA32_VMX_PROCBASED_CTLS2,
            MSR_IA32_VMX_EPT_VPID_CAP
        ]
    );
}

#[test]
fn cpu_with_neither_extension_is_unusable_and_reads_no_msr() {
    // An Intel CPU without VMX (as QEMU `-cpu Skylake-Client,-vmx` would present it).
    let sky = FakeCpu::bochs_skylake_x();
    let ecx = sky.cpuid(LEAF_FEATURES, 0).ecx & !(1 << 5);
    let cpu = sky.with_leaf(
        LEAF_FEATURES,
        0,
        CpuidResult {
            eax: 0x0005_0654,
            ecx,
            edx: 0xBFEB_FBFF,
            ebx: 0,
        },
    );
    let r = report(&cpu);
    assert!(r.svm.is_none() && r.vmx.is_none());
    assert_eq!(
        r.virt_support(),
        VirtSupport::None("CPU offers neither SVM nor VMX")
    );
    assert_eq!(lines(&r)[2], "vmx: supported=no");
    assert!(cpu.msr_reads().is_empty());

    // An AMD CPU without SVM.
    let epyc = FakeCpu::qemu_epyc();
    let ext = epyc.cpuid(LEAF_EXT_FEATURES, 0);
    let cpu = epyc.with_leaf(
        LEAF_EXT_FEATURES,
        0,
        CpuidResult {
            ecx: ext.ecx & !(1 << 2),
            ..ext
        },
    );
    let r = report(&cpu);
    assert_eq!(lines(&r)[2], "svm: supported=no");
    assert_eq!(
        r.virt_support(),
        VirtSupport::None("CPU offers neither SVM nor VMX")
    );
    assert!(cpu.msr_reads().is_empty());
}

#[test]
fn svm_disabled_by_bios_is_reported_and_unusable() {
    // VM_CR.LOCK | VM_CR.SVMDIS, as firmware leaves it when SVM is switched off in setup.
    let r = report(&FakeCpu::bochs_ryzen().with_msr(MSR_VM_CR, 0x18));
    let svm = r.svm.unwrap();
    assert!(svm.disabled_by_bios);
    assert_eq!(
        r.virt_support(),
        VirtSupport::None("SVM disabled by BIOS (VM_CR.SVMDIS)")
    );
    assert!(lines(&r)[2].starts_with("svm: supported=yes disabled_by_bios=yes revision=1 "));
}

#[test]
fn vmx_locked_off_is_reported_and_unusable() {
    // Locked with neither VMX-enable bit.
    let r = report(&FakeCpu::bochs_skylake_x().with_msr(MSR_IA32_FEATURE_CONTROL, 0x1));
    let vmx = r.vmx.unwrap();
    assert!(vmx.feature_control_locked && !vmx.vmxon_outside_smx);
    assert_eq!(
        r.virt_support(),
        VirtSupport::None("VMX locked off in IA32_FEATURE_CONTROL")
    );
    assert!(
        lines(&r)[2]
            .starts_with("vmx: supported=yes feature_control_locked=yes vmxon_outside_smx=no ")
    );
}

#[test]
fn unlocked_feature_control_is_usable() {
    let r = report(&FakeCpu::bochs_skylake_x().with_msr(MSR_IA32_FEATURE_CONTROL, 0));
    let vmx = r.vmx.unwrap();
    assert!(!vmx.feature_control_locked);
    assert!(matches!(r.virt_support(), VirtSupport::Vmx(_)));
}

#[test]
fn svm_without_npt_is_unusable() {
    let r = report(&FakeCpu::qemu_epyc().with_leaf(
        LEAF_SVM,
        0,
        CpuidResult {
            eax: 1,
            ebx: 16,
            ecx: 0,
            edx: 0,
        },
    ));
    assert_eq!(
        r.virt_support(),
        VirtSupport::None("SVM without nested paging (NPT) is not supported")
    );
}

#[test]
fn vmx_without_secondary_controls_skips_their_msrs() {
    // Allowed-1 bit 31 of IA32_VMX_PROCBASED_CTLS clear: 0x48B and 0x48C do not exist.
    let cpu =
        FakeCpu::bochs_skylake_x().with_msr(MSR_IA32_VMX_PROCBASED_CTLS, 0x7FF9_FFFE_0401_E172);
    let r = report(&cpu);
    let vmx = r.vmx.unwrap();
    assert!(!vmx.secondary_controls && !vmx.ept && !vmx.vpid && !vmx.ept_2m());
    assert_eq!(vmx.ept_vpid_caps, EptVpidCaps::empty());
    assert_eq!(
        r.virt_support(),
        VirtSupport::None("VMX without EPT is not supported")
    );
    assert!(!cpu.msr_reads().contains(&MSR_IA32_VMX_PROCBASED_CTLS2));
    assert!(!cpu.msr_reads().contains(&MSR_IA32_VMX_EPT_VPID_CAP));
}

#[test]
fn vmx_without_readable_basic_msr_is_unusable() {
    let r = report(&FakeCpu::bochs_skylake_x().without_msr(MSR_IA32_VMX_BASIC));
    assert!(!r.vmx.unwrap().true_controls);
    assert_eq!(
        r.virt_support(),
        VirtSupport::None("IA32_VMX_BASIC is not readable")
    );
}

#[test]
fn ept_without_invept_is_unusable() {
    let r = report(
        &FakeCpu::bochs_skylake_x().with_msr(MSR_IA32_VMX_EPT_VPID_CAP, 0x0000_0F01_0663_4141),
    );
    assert!(!r.vmx.unwrap().invept());
    assert_eq!(
        r.virt_support(),
        VirtSupport::None("EPT without INVEPT is not supported")
    );
}

#[test]
fn leaves_beyond_the_reported_maximum_are_ignored() {
    // Max extended leaf 0x80000001: brand, address sizes and the SVM leaf are absent even
    // though the table (like real CPUs) answers for them.
    let cpu = FakeCpu::qemu_epyc().with_leaf(
        LEAF_EXT_MAX,
        0,
        CpuidResult {
            eax: 0x8000_0001,
            ..Default::default()
        },
    );
    let r = report(&cpu);
    assert_eq!(r.identity.brand.as_bytes(), b"");
    // PAE (leaf 1 EDX bit 6) and long mode give the fallback widths.
    assert_eq!((r.paging.phys_addr_bits, r.paging.virt_addr_bits), (36, 48));
    let svm = r.svm.unwrap();
    assert_eq!(
        (svm.revision, svm.asids, svm.flags),
        (0, 0, SvmFeatureFlags::empty())
    );
    assert_eq!(
        lines(&r)[0],
        "cpu: vendor=AMD family=0x17 model=0x1 stepping=2 brand=\"\""
    );
}

#[test]
fn family_and_model_follow_vendor_rules() {
    // AMD Zen 3 (family 0x19, model 0x21): extended family and model both apply.
    let cpu = FakeCpu::new().with_vendor(1, "AuthenticAMD").with_leaf(
        LEAF_FEATURES,
        0,
        CpuidResult {
            eax: 0x00A2_0F10,
            ..Default::default()
        },
    );
    let id = report(&cpu).identity;
    assert_eq!((id.family, id.model, id.stepping), (0x19, 0x21, 0));
    // AMD family 6 (K7): the extended model field is not used.
    let cpu = FakeCpu::new().with_vendor(1, "AuthenticAMD").with_leaf(
        LEAF_FEATURES,
        0,
        CpuidResult {
            eax: 0x0001_0662,
            ..Default::default()
        },
    );
    let id = report(&cpu).identity;
    assert_eq!((id.family, id.model, id.stepping), (0x6, 0x6, 2));
    // Intel family 6 uses it.
    let cpu = FakeCpu::new().with_vendor(1, "GenuineIntel").with_leaf(
        LEAF_FEATURES,
        0,
        CpuidResult {
            eax: 0x0009_06EA,
            ..Default::default()
        },
    );
    let id = report(&cpu).identity;
    assert_eq!((id.family, id.model, id.stepping), (0x6, 0x9E, 0xA));
}

#[test]
fn unknown_vendor_and_odd_brand_print_safely() {
    let cpu = FakeCpu::new()
        .with_vendor(1, "HygonGenuine")
        .with_brand("  Odd \"quoted\"\u{7f} brand  ");
    let cpu = cpu.with_leaf(
        LEAF_EXT_MAX,
        0,
        CpuidResult {
            eax: 0x8000_0004,
            ..Default::default()
        },
    );
    let r = report(&cpu);
    assert_eq!(r.identity.vendor, Vendor::Other(*b"HygonGenuine"));
    assert_eq!(
        lines(&r)[0],
        "cpu: vendor=HygonGenuine family=0x0 model=0x0 stepping=0 brand=\"Odd ?quoted?? brand\""
    );
    assert_eq!(lines(&r)[2], "svm: supported=no");
}

#[test]
fn unnamed_svm_bits_are_kept() {
    let r = report(&FakeCpu::qemu_epyc().with_leaf(
        LEAF_SVM,
        0,
        CpuidResult {
            eax: 1,
            ebx: 8,
            ecx: 0,
            edx: 0x1 | 1 << 30,
        },
    ));
    assert_eq!(r.svm.unwrap().flags.bits(), 0x4000_0001);
}
