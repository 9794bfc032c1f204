//! The decoded report, the backend choice and the serial lines.

use core::fmt;

use crate::identity::{self, CpuIdentity, FeatureWords, PagingFeatures, Vendor};
use crate::svm::SvmFeatures;
use crate::vmx::VmxFeatures;
use crate::{Cpuid, Msrs};

/// Everything this crate decodes about the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuReport {
    /// Vendor, family/model/stepping, brand.
    pub identity: CpuIdentity,
    /// Address widths and paging features.
    pub paging: PagingFeatures,
    /// SVM capabilities, if CPUID advertises SVM.
    pub svm: Option<SvmFeatures>,
    /// VMX capabilities, if CPUID advertises VMX.
    pub vmx: Option<VmxFeatures>,
}

/// Which virtualization backend the hypervisor can use on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtSupport {
    /// AMD SVM with nested paging.
    Svm(SvmFeatures),
    /// Intel VMX with EPT.
    Vmx(VmxFeatures),
    /// Neither is usable; the reason reads well on a serial console.
    None(&'static str),
}

impl CpuReport {
    /// Queries the CPU. Reads VM_CR only if CPUID advertises SVM, and the VMX capability MSRs
    /// only if CPUID advertises VMX (and then only those the SDM says exist).
    pub fn detect(cpu: &(impl Cpuid + ?Sized), msrs: &(impl Msrs + ?Sized)) -> Self {
        let identity = CpuIdentity::detect(cpu);
        let words = FeatureWords::detect(cpu, &identity);
        let paging = PagingFeatures::detect(cpu, &identity, &words);
        let svm = identity::has_svm(&words).then(|| SvmFeatures::detect(cpu, msrs, &identity));
        let vmx = identity::has_vmx(&words).then(|| VmxFeatures::detect(msrs));
        Self {
            identity,
            paging,
            svm,
            vmx,
        }
    }

    /// The backend to use, preferring SVM when (unusually) both are advertised.
    pub fn virt_support(&self) -> VirtSupport {
        if let Some(svm) = self.svm {
            return match svm.unusable_reason() {
                None => VirtSupport::Svm(svm),
                Some(reason) => VirtSupport::None(reason),
            };
        }
        if let Some(vmx) = self.vmx {
            return match vmx.unusable_reason() {
                None => VirtSupport::Vmx(vmx),
                Some(reason) => VirtSupport::None(reason),
            };
        }
        VirtSupport::None("CPU offers neither SVM nor VMX")
    }

    /// First serial line: identity.
    pub fn identity_line(&self) -> impl fmt::Display + '_ {
        IdentityLine(self)
    }

    /// Second serial line: address widths and paging features.
    pub fn paging_line(&self) -> impl fmt::Display + '_ {
        PagingLine(self)
    }

    /// Third serial line: `svm:` or `vmx:` capabilities.
    pub fn virt_line(&self) -> impl fmt::Display + '_ {
        VirtLine(self)
    }
}

fn yn(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

struct IdentityLine<'a>(&'a CpuReport);
struct PagingLine<'a>(&'a CpuReport);
struct VirtLine<'a>(&'a CpuReport);

impl fmt::Display for IdentityLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = &self.0.identity;
        write!(
            f,
            "cpu: vendor={} family={:#x} model={:#x} stepping={} brand=\"{}\"",
            id.vendor, id.family, id.model, id.stepping, id.brand
        )
    }
}

impl fmt::Display for PagingLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.0.paging;
        write!(
            f,
            "cpu: phys_addr_bits={} virt_addr_bits={} nx={} pdpe1gb={} x2apic={} xsave={} hypervisor_bit={}",
            p.phys_addr_bits,
            p.virt_addr_bits,
            yn(p.nx),
            yn(p.pdpe1gb),
            yn(p.x2apic),
            yn(p.xsave),
            yn(p.hypervisor)
        )
    }
}

impl fmt::Display for VirtLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        match (r.svm, r.vmx) {
            (Some(s), _) => write!(
                f,
                "svm: supported=yes disabled_by_bios={} revision={} asids={} npt={} nrip_save={} \
                 decode_assists={} flush_by_asid={} vmcb_clean={} vgif={} avic={}",
                yn(s.disabled_by_bios),
                s.revision,
                s.asids,
                yn(s.npt()),
                yn(s.nrip_save()),
                yn(s.decode_assists()),
                yn(s.flush_by_asid()),
                yn(s.vmcb_clean()),
                yn(s.vgif()),
                yn(s.avic())
            ),
            (None, Some(v)) => write!(
                f,
                "vmx: supported=yes feature_control_locked={} vmxon_outside_smx={} true_controls={} \
                 ept={} vpid={} unrestricted_guest={} ept_2m={} ept_1g={} invept={}",
                yn(v.feature_control_locked),
                yn(v.vmxon_outside_smx),
                yn(v.true_controls),
                yn(v.ept),
                yn(v.vpid),
                yn(v.unrestricted_guest),
                yn(v.ept_2m()),
                yn(v.ept_1g()),
                yn(v.invept())
            ),
            // Neither advertised: report the vendor's own extension as absent.
            (None, None) if r.identity.vendor == Vendor::Intel => f.write_str("vmx: supported=no"),
            (None, None) => f.write_str("svm: supported=no"),
        }
    }
}

/// Three lines (identity, paging, `svm:`/`vmx:`) separated by `\n`, without a trailing newline.
impl fmt::Display for CpuReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}\n{}\n{}",
            self.identity_line(),
            self.paging_line(),
            self.virt_line()
        )
    }
}
