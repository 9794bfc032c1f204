//! Vendor, family/model/stepping, brand string and the basic paging features.

use core::fmt;

use crate::Cpuid;
use crate::regs::*;

/// The CPU vendor, from the 12-byte string of CPUID leaf 0 (EBX, EDX, ECX).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    /// "AuthenticAMD".
    Amd,
    /// "GenuineIntel".
    Intel,
    /// Any other vendor string, as reported.
    Other([u8; 12]),
}

impl Vendor {
    fn from_bytes(bytes: [u8; 12]) -> Self {
        match &bytes {
            b"AuthenticAMD" => Self::Amd,
            b"GenuineIntel" => Self::Intel,
            _ => Self::Other(bytes),
        }
    }
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Amd => f.write_str("AMD"),
            Self::Intel => f.write_str("Intel"),
            Self::Other(bytes) => bytes.iter().try_for_each(|b| write_sanitized(f, *b)),
        }
    }
}

/// Prints a byte from CPUID text as a printable, quote-free ASCII character.
fn write_sanitized(f: &mut fmt::Formatter<'_>, b: u8) -> fmt::Result {
    let c = if (b.is_ascii_graphic() && b != b'"') || b == b' ' {
        b as char
    } else {
        '?'
    };
    fmt::Write::write_char(f, c)
}

/// The processor brand string (leaves 0x80000002..=0x80000004), without padding.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Brand {
    bytes: [u8; 48],
    start: u8,
    end: u8,
}

impl Brand {
    fn from_bytes(bytes: [u8; 48]) -> Self {
        let nul = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
        let text = bytes.get(..nul).unwrap_or(&[]);
        let end = text.iter().rposition(|b| *b != b' ').map_or(0, |i| i + 1);
        let start = text.iter().position(|b| *b != b' ').unwrap_or(end).min(end);
        // Both are at most 48.
        Self {
            bytes,
            start: start as u8,
            end: end as u8,
        }
    }

    /// The brand's raw bytes, trimmed of NUL and space padding.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes
            .get(usize::from(self.start)..usize::from(self.end))
            .unwrap_or(&[])
    }
}

impl Default for Brand {
    fn default() -> Self {
        Self {
            bytes: [0; 48],
            start: 0,
            end: 0,
        }
    }
}

/// Printable form: non-printable bytes and `"` appear as `?`.
impl fmt::Display for Brand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_bytes()
            .iter()
            .try_for_each(|b| write_sanitized(f, *b))
    }
}

impl fmt::Debug for Brand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Who made the CPU and which one it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuIdentity {
    /// Vendor.
    pub vendor: Vendor,
    /// Highest standard CPUID leaf.
    pub max_leaf: u32,
    /// Highest extended CPUID leaf (0 if the extended range is absent).
    pub max_ext_leaf: u32,
    /// Display family (base family plus extended family when the base is 0xF).
    pub family: u32,
    /// Display model (extended model prepended where the vendor's rules say so).
    pub model: u32,
    /// Stepping.
    pub stepping: u8,
    /// Brand string (empty if the CPU has none).
    pub brand: Brand,
}

impl CpuIdentity {
    pub(crate) fn detect(cpu: &(impl Cpuid + ?Sized)) -> Self {
        let l0 = cpu.cpuid(LEAF_VENDOR, 0);
        let mut v = [0u8; 12];
        v[..4].copy_from_slice(&l0.ebx.to_le_bytes());
        v[4..8].copy_from_slice(&l0.edx.to_le_bytes());
        v[8..].copy_from_slice(&l0.ecx.to_le_bytes());
        let vendor = Vendor::from_bytes(v);
        let max_leaf = l0.eax;

        let sig = if max_leaf >= LEAF_FEATURES {
            cpu.cpuid(LEAF_FEATURES, 0).eax
        } else {
            0
        };
        let base_family = (sig >> 8) & 0xF;
        let ext_family = (sig >> 20) & 0xFF;
        let base_model = (sig >> 4) & 0xF;
        let ext_model = (sig >> 16) & 0xF;
        let family = if base_family == 0xF {
            base_family + ext_family
        } else {
            base_family
        };
        // AMD APM: extended model applies only to base family 0xF. Intel SDM: to families 6
        // and 0xF. Other vendors: Linux's rule (family 6 and above).
        let use_ext_model = match vendor {
            Vendor::Amd => base_family == 0xF,
            Vendor::Intel => base_family == 0x6 || base_family == 0xF,
            Vendor::Other(_) => base_family >= 0x6,
        };
        let model = if use_ext_model {
            (ext_model << 4) | base_model
        } else {
            base_model
        };

        let ext = cpu.cpuid(LEAF_EXT_MAX, 0).eax;
        let max_ext_leaf = if ext >= LEAF_EXT_MAX { ext } else { 0 };
        let mut brand = [0u8; 48];
        if max_ext_leaf >= LEAF_BRAND_LAST {
            for (chunk, leaf) in brand
                .chunks_exact_mut(16)
                .zip(LEAF_BRAND_FIRST..=LEAF_BRAND_LAST)
            {
                let r = cpu.cpuid(leaf, 0);
                for (dst, reg) in chunk.chunks_exact_mut(4).zip([r.eax, r.ebx, r.ecx, r.edx]) {
                    dst.copy_from_slice(&reg.to_le_bytes());
                }
            }
        }
        Self {
            vendor,
            max_leaf,
            max_ext_leaf,
            family,
            model,
            stepping: (sig & 0xF) as u8,
            brand: Brand::from_bytes(brand),
        }
    }
}

/// Paging and platform features every backend cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagingFeatures {
    /// Physical address width (leaf 0x80000008 EAX[7:0]; 36 with PAE or 32 if the leaf is absent).
    pub phys_addr_bits: u8,
    /// Linear address width (leaf 0x80000008 EAX[15:8]; 48 with long mode or 32 if absent).
    pub virt_addr_bits: u8,
    /// No-execute pages (leaf 0x80000001 EDX bit 20).
    pub nx: bool,
    /// 1 GiB pages (leaf 0x80000001 EDX bit 26).
    pub pdpe1gb: bool,
    /// Long mode (leaf 0x80000001 EDX bit 29).
    pub long_mode: bool,
    /// x2APIC (leaf 1 ECX bit 21).
    pub x2apic: bool,
    /// XSAVE (leaf 1 ECX bit 26).
    pub xsave: bool,
    /// Running under a hypervisor (leaf 1 ECX bit 31).
    pub hypervisor: bool,
}

/// Leaf 1 ECX/EDX and leaf 0x80000001 ECX/EDX, zero where the leaf is absent.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FeatureWords {
    pub std_ecx: u32,
    pub std_edx: u32,
    pub ext_ecx: u32,
    pub ext_edx: u32,
}

impl FeatureWords {
    pub(crate) fn detect(cpu: &(impl Cpuid + ?Sized), id: &CpuIdentity) -> Self {
        let mut w = Self::default();
        if id.max_leaf >= LEAF_FEATURES {
            let r = cpu.cpuid(LEAF_FEATURES, 0);
            (w.std_ecx, w.std_edx) = (r.ecx, r.edx);
        }
        if id.max_ext_leaf >= LEAF_EXT_FEATURES {
            let r = cpu.cpuid(LEAF_EXT_FEATURES, 0);
            (w.ext_ecx, w.ext_edx) = (r.ecx, r.edx);
        }
        w
    }
}

const fn bit(word: u32, n: u32) -> bool {
    word & (1 << n) != 0
}

impl PagingFeatures {
    pub(crate) fn detect(cpu: &(impl Cpuid + ?Sized), id: &CpuIdentity, w: &FeatureWords) -> Self {
        let long_mode = bit(w.ext_edx, 29);
        let (phys_addr_bits, virt_addr_bits) = if id.max_ext_leaf >= LEAF_ADDR_SIZES {
            let eax = cpu.cpuid(LEAF_ADDR_SIZES, 0).eax;
            ((eax & 0xFF) as u8, ((eax >> 8) & 0xFF) as u8)
        } else {
            let pae = bit(w.std_edx, 6);
            (if pae { 36 } else { 32 }, if long_mode { 48 } else { 32 })
        };
        Self {
            phys_addr_bits,
            virt_addr_bits,
            nx: bit(w.ext_edx, 20),
            pdpe1gb: bit(w.ext_edx, 26),
            long_mode,
            x2apic: bit(w.std_ecx, 21),
            xsave: bit(w.std_ecx, 26),
            hypervisor: bit(w.std_ecx, 31),
        }
    }
}

/// Whether CPUID advertises SVM (leaf 0x80000001 ECX bit 2).
pub(crate) fn has_svm(w: &FeatureWords) -> bool {
    bit(w.ext_ecx, 2)
}

/// Whether CPUID advertises VMX (leaf 1 ECX bit 5).
pub(crate) fn has_vmx(w: &FeatureWords) -> bool {
    bit(w.std_ecx, 5)
}
