//! A table-driven CPU for host tests, with presets modelled on the emulators Mica runs under.

use alloc::vec::Vec;
use core::cell::RefCell;

use crate::regs::*;
use crate::{Cpuid, CpuidResult, Msrs};

/// A fake CPU: CPUID leaves and MSRs from tables; missing leaves read as zeros, missing MSRs
/// as `None` (#GP). Records every MSR read so tests can check none was read needlessly.
#[derive(Debug, Default, Clone)]
pub struct FakeCpu {
    leaves: Vec<(u32, u32, CpuidResult)>,
    msrs: Vec<(u32, u64)>,
    msr_reads: RefCell<Vec<u32>>,
}

fn regs(eax: u32, ebx: u32, ecx: u32, edx: u32) -> CpuidResult {
    CpuidResult { eax, ebx, ecx, edx }
}

fn word(bytes: &[u8]) -> u32 {
    let mut w = [0u8; 4];
    for (dst, src) in w.iter_mut().zip(bytes) {
        *dst = *src;
    }
    u32::from_le_bytes(w)
}

impl FakeCpu {
    /// A CPU with no leaves and no MSRs.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets (or replaces) leaf `leaf`, subleaf `subleaf`.
    pub fn with_leaf(mut self, leaf: u32, subleaf: u32, r: CpuidResult) -> Self {
        self.leaves.retain(|(l, s, _)| (*l, *s) != (leaf, subleaf));
        self.leaves.push((leaf, subleaf, r));
        self
    }

    /// Sets leaf 0: highest standard leaf and the 12-character vendor string.
    pub fn with_vendor(self, max_leaf: u32, vendor: &str) -> Self {
        let v = vendor.as_bytes();
        let part = |i: usize| word(v.get(i..).unwrap_or(&[]));
        self.with_leaf(LEAF_VENDOR, 0, regs(max_leaf, part(0), part(8), part(4)))
    }

    /// Sets leaves 0x80000002..=0x80000004 from `brand` (padded with NULs, cut at 48 bytes).
    pub fn with_brand(mut self, brand: &str) -> Self {
        let mut bytes = [0u8; 48];
        for (dst, src) in bytes.iter_mut().zip(brand.as_bytes()) {
            *dst = *src;
        }
        for (i, leaf) in (LEAF_BRAND_FIRST..=LEAF_BRAND_LAST).enumerate() {
            let at = |k: usize| word(&bytes[i * 16 + k * 4..]);
            self = self.with_leaf(leaf, 0, regs(at(0), at(1), at(2), at(3)));
        }
        self
    }

    /// Makes `msr` readable with `value`.
    pub fn with_msr(mut self, msr: u32, value: u64) -> Self {
        self.msrs.retain(|(m, _)| *m != msr);
        self.msrs.push((msr, value));
        self
    }

    /// Makes `msr` raise #GP.
    pub fn without_msr(mut self, msr: u32) -> Self {
        self.msrs.retain(|(m, _)| *m != msr);
        self
    }

    /// The MSRs read so far, in order.
    pub fn msr_reads(&self) -> Vec<u32> {
        self.msr_reads.borrow().clone()
    }

    /// QEMU 7.2 `-cpu EPYC` under TCG: SVM with NPT only (TCG filters NRIP-save), 16 ASIDs,
    /// no x2APIC, hypervisor bit set, 40 physical address bits. QEMU's TCG reads unknown MSRs
    /// such as VM_CR as 0.
    pub fn qemu_epyc() -> Self {
        Self::new()
            .with_vendor(0xD, "AuthenticAMD")
            // Family 0x17 (0xF + 0x8), model 1, stepping 2.
            .with_leaf(
                LEAF_FEATURES,
                0,
                regs(0x0080_0F12, 0x0000_0800, 0xF6D8_3203, 0x078B_FBFF),
            )
            .with_leaf(LEAF_EXT_MAX, 0, regs(0x8000_001E, 0, 0, 0))
            .with_leaf(
                LEAF_EXT_FEATURES,
                0,
                regs(0x0080_0F12, 0, 0x0000_01E5, 0x2FD3_FBFF),
            )
            .with_brand("AMD EPYC Processor")
            .with_leaf(LEAF_ADDR_SIZES, 0, regs(0x0000_3028, 0, 0, 0))
            .with_leaf(LEAF_SVM, 0, regs(0x1, 0x10, 0, 0x1))
            .with_msr(MSR_VM_CR, 0)
    }

    /// Bochs 2.7 `cpu: model=ryzen` (Ryzen 7 1700): SVM with NPT, LBR virtualization, SVM lock,
    /// NRIP-save, flush-by-ASID and PAUSE filter; 32768 ASIDs.
    pub fn bochs_ryzen() -> Self {
        Self::new()
            .with_vendor(0xD, "AuthenticAMD")
            .with_leaf(
                LEAF_FEATURES,
                0,
                regs(0x0080_0F11, 0x0001_0800, 0x7ED8_320B, 0x178B_FBFF),
            )
            .with_leaf(LEAF_EXT_MAX, 0, regs(0x8000_001F, 0, 0, 0))
            .with_leaf(
                LEAF_EXT_FEATURES,
                0,
                regs(0x0080_0F11, 0x2000_0000, 0x35C2_33FF, 0x2FD3_FBFF),
            )
            .with_brand("AMD Ryzen 7 1700 Eight-Core Processor          ")
            .with_leaf(LEAF_ADDR_SIZES, 0, regs(0x0000_3028, 0, 0, 0))
            .with_leaf(LEAF_SVM, 0, regs(0x1, 0x8000, 0, 0x0000_044F))
            .with_msr(MSR_VM_CR, 0)
    }

    /// Bochs 2.7 `cpu: model=corei7_skylake_x` (Core i7-7800X): VMX with EPT (2 MiB and 1 GiB
    /// pages, INVEPT), VPID and unrestricted guest; IA32_FEATURE_CONTROL locked with VMXON
    /// allowed. MSR values are the ones Bochs documents for this model.
    pub fn bochs_skylake_x() -> Self {
        Self::new()
            .with_vendor(0x16, "GenuineIntel")
            // Family 6, model 0x55 (ext 5, base 5), stepping 4.
            .with_leaf(
                LEAF_FEATURES,
                0,
                regs(0x0005_0654, 0x0001_0800, 0x77FA_F3BF, 0xBFEB_FBFF),
            )
            .with_leaf(LEAF_EXT_MAX, 0, regs(0x8000_0008, 0, 0, 0))
            .with_leaf(LEAF_EXT_FEATURES, 0, regs(0, 0, 0x0000_0121, 0x2C10_0800))
            .with_brand("Intel(R) Core(TM) i7-7800X CPU @ 3.50GHz")
            .with_leaf(LEAF_ADDR_SIZES, 0, regs(0x0000_3028, 0, 0, 0))
            .with_msr(MSR_IA32_FEATURE_CONTROL, 0x5)
            .with_msr(MSR_IA32_VMX_BASIC, 0x00DA_0400_0000_0004)
            .with_msr(MSR_IA32_VMX_PROCBASED_CTLS, 0xFFF9_FFFE_0401_E172)
            .with_msr(MSR_IA32_VMX_PROCBASED_CTLS2, 0x025D_3FFF_0000_0000)
            .with_msr(MSR_IA32_VMX_EPT_VPID_CAP, 0x0000_0F01_0673_4141)
    }
}

impl Cpuid for FakeCpu {
    fn cpuid(&self, leaf: u32, subleaf: u32) -> CpuidResult {
        self.leaves
            .iter()
            .find(|(l, s, _)| (*l, *s) == (leaf, subleaf))
            .map_or_else(CpuidResult::default, |(_, _, r)| *r)
    }
}

impl Msrs for FakeCpu {
    fn read_msr(&self, msr: u32) -> Option<u64> {
        self.msr_reads.borrow_mut().push(msr);
        self.msrs.iter().find(|(m, _)| *m == msr).map(|(_, v)| *v)
    }
}
