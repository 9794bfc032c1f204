//! What the CPU offers for virtualization, decoded from CPUID and MSRs behind narrow traits.
//!
//! [`CpuReport::detect`] queries a [`Cpuid`] and a [`Msrs`] implementation and returns a typed
//! report: identity (vendor, family/model/stepping, brand), the paging features the hypervisor
//! relies on, and either AMD SVM ([`SvmFeatures`]) or Intel VMX ([`VmxFeatures`]) capabilities.
//! [`CpuReport::virt_support`] turns that into the backend choice, [`VirtSupport`], with a
//! reason when the CPU is unusable. The report's `Display` gives stable, grep-able serial lines
//! that emulator tests match.
//!
//! Only leaves up to the CPU's reported maximum are queried, and an MSR is only read when
//! CPUID says it exists, so bare metal can implement [`Msrs`] with a plain `rdmsr`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

#[cfg(any(test, feature = "fake"))]
extern crate alloc;

#[cfg(any(test, feature = "fake"))]
mod fake;
mod identity;
mod report;
mod svm;
#[cfg(test)]
mod tests;
mod vmx;

#[cfg(any(test, feature = "fake"))]
pub use fake::FakeCpu;
pub use identity::{Brand, CpuIdentity, PagingFeatures, Vendor};
pub use report::{CpuReport, VirtSupport};
pub use svm::{SvmFeatureFlags, SvmFeatures};
pub use vmx::{EptVpidCaps, VmxFeatures};

/// The four registers CPUID returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuidResult {
    /// EAX.
    pub eax: u32,
    /// EBX.
    pub ebx: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
}

/// Executes CPUID.
pub trait Cpuid {
    /// CPUID with EAX = `leaf` and ECX = `subleaf`.
    fn cpuid(&self, leaf: u32, subleaf: u32) -> CpuidResult;
}

/// Reads model-specific registers.
pub trait Msrs {
    /// The value of `msr`, or `None` if it does not exist (RDMSR would raise #GP).
    fn read_msr(&self, msr: u32) -> Option<u64>;
}

impl<T: Cpuid + ?Sized> Cpuid for &T {
    fn cpuid(&self, leaf: u32, subleaf: u32) -> CpuidResult {
        (**self).cpuid(leaf, subleaf)
    }
}

impl<T: Msrs + ?Sized> Msrs for &T {
    fn read_msr(&self, msr: u32) -> Option<u64> {
        (**self).read_msr(msr)
    }
}

/// CPUID leaves and MSR numbers used here (AMD APM vol. 2/3, Intel SDM vol. 2A/3/4).
pub mod regs {
    /// Highest standard leaf and vendor string.
    pub const LEAF_VENDOR: u32 = 0x0000_0000;
    /// Family/model/stepping and standard feature flags.
    pub const LEAF_FEATURES: u32 = 0x0000_0001;
    /// Highest extended leaf.
    pub const LEAF_EXT_MAX: u32 = 0x8000_0000;
    /// Extended feature flags (SVM, NX, 1 GiB pages, long mode).
    pub const LEAF_EXT_FEATURES: u32 = 0x8000_0001;
    /// First of the three brand-string leaves.
    pub const LEAF_BRAND_FIRST: u32 = 0x8000_0002;
    /// Last of the three brand-string leaves.
    pub const LEAF_BRAND_LAST: u32 = 0x8000_0004;
    /// Physical/linear address sizes.
    pub const LEAF_ADDR_SIZES: u32 = 0x8000_0008;
    /// SVM revision, ASID count and SVM feature flags.
    pub const LEAF_SVM: u32 = 0x8000_000A;

    /// AMD VM_CR: bit 4 SVMDIS, bit 3 LOCK.
    pub const MSR_VM_CR: u32 = 0xC001_0114;
    /// Intel IA32_FEATURE_CONTROL: bit 0 lock, bit 1 VMX inside SMX, bit 2 VMX outside SMX.
    pub const MSR_IA32_FEATURE_CONTROL: u32 = 0x3A;
    /// Intel IA32_VMX_BASIC: bits 30:0 VMCS revision, bit 55 TRUE_* control MSRs exist.
    pub const MSR_IA32_VMX_BASIC: u32 = 0x480;
    /// Intel IA32_VMX_PROCBASED_CTLS: allowed-1 settings in bits 63:32.
    pub const MSR_IA32_VMX_PROCBASED_CTLS: u32 = 0x482;
    /// Intel IA32_VMX_PROCBASED_CTLS2: allowed-1 settings in bits 63:32.
    pub const MSR_IA32_VMX_PROCBASED_CTLS2: u32 = 0x48B;
    /// Intel IA32_VMX_EPT_VPID_CAP.
    pub const MSR_IA32_VMX_EPT_VPID_CAP: u32 = 0x48C;
}
