//! The ACPI Root System Description Pointer: where the hypervisor finds the ACPI tables
//! (it needs them for ACPI shutdown).

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::phys::{PhysRead, read_struct};

/// Where the RSDP was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsdpSource {
    /// A copy in Multiboot2 tag 14 (ACPI 1.0 RSDP).
    Multiboot2Old,
    /// A copy in Multiboot2 tag 15 (ACPI 2.0+ RSDP).
    Multiboot2New,
    /// Found by scanning the EBDA and the BIOS area 0xE0000..0x100000 (Multiboot1 boots).
    BiosScan,
}

/// A validated RSDP (signature and checksums checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rsdp {
    /// Physical address of the RSDP (for Multiboot2, of the copy inside the boot information).
    pub phys: u64,
    /// ACPI revision field: 0 for ACPI 1.0, 2 or more for ACPI 2.0+.
    pub revision: u8,
    /// OEM identifier.
    pub oem_id: [u8; 6],
    /// Physical address of the RSDT.
    pub rsdt_address: u32,
    /// Physical address of the XSDT (ACPI 2.0+ and non-zero only).
    pub xsdt_address: Option<u64>,
    /// Where it was found.
    pub source: RsdpSource,
}

/// ACPI 1.0 RSDP layout (ACPI spec 5.2.5.3): the first 20 bytes of every RSDP.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub(crate) struct RsdpV1 {
    signature: [u8; 8],
    checksum: u8,
    oem_id: [u8; 6],
    revision: u8,
    rsdt_address: U32,
}
const _: () = assert!(size_of::<RsdpV1>() == RSDP_V1_LEN);

/// ACPI 2.0+ RSDP layout.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub(crate) struct RsdpV2 {
    v1: RsdpV1,
    length: U32,
    xsdt_address: U64,
    extended_checksum: u8,
    reserved: [u8; 3],
}
const _: () = assert!(size_of::<RsdpV2>() == RSDP_V2_LEN);

/// Size of an ACPI 1.0 RSDP.
pub(crate) const RSDP_V1_LEN: usize = 20;
/// Size of an ACPI 2.0+ RSDP.
pub(crate) const RSDP_V2_LEN: usize = 36;
const SIGNATURE: [u8; 8] = *b"RSD PTR ";

fn checksum_ok(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |acc, b| acc.wrapping_add(*b)) == 0
}

fn decode_v1(v1: &RsdpV1, phys: u64, source: RsdpSource) -> Option<Rsdp> {
    if v1.signature != SIGNATURE || !checksum_ok(v1.as_bytes()) {
        return None;
    }
    Some(Rsdp {
        phys,
        revision: v1.revision,
        oem_id: v1.oem_id,
        rsdt_address: v1.rsdt_address.get(),
        xsdt_address: None,
        source,
    })
}

/// Validates an ACPI 1.0-style RSDP at `phys` (only the first 20 bytes are read).
pub(crate) fn read_v1(
    mem: &(impl PhysRead + ?Sized),
    phys: u64,
    source: RsdpSource,
) -> Option<Rsdp> {
    let v1: RsdpV1 = read_struct(mem, phys).ok()?;
    decode_v1(&v1, phys, source)
}

/// Validates an ACPI 2.0+ RSDP at `phys` (36 bytes; the extended checksum covers them all).
pub(crate) fn read_v2(
    mem: &(impl PhysRead + ?Sized),
    phys: u64,
    source: RsdpSource,
) -> Option<Rsdp> {
    let v2: RsdpV2 = read_struct(mem, phys).ok()?;
    let mut rsdp = decode_v1(&v2.v1, phys, source)?;
    if !checksum_ok(v2.as_bytes()) {
        return None;
    }
    let xsdt = v2.xsdt_address.get();
    if rsdp.revision >= 2 && xsdt != 0 {
        rsdp.xsdt_address = Some(xsdt);
    }
    Some(rsdp)
}

/// Reads whichever RSDP revision is at `phys`: 2.0+ when the revision says so and it validates.
fn read_any(mem: &(impl PhysRead + ?Sized), phys: u64) -> Option<Rsdp> {
    let v1 = read_v1(mem, phys, RsdpSource::BiosScan)?;
    if v1.revision >= 2 {
        read_v2(mem, phys, RsdpSource::BiosScan).or(Some(v1))
    } else {
        Some(v1)
    }
}

/// Searches for the RSDP the way a legacy-BIOS OS does: the first KiB of the Extended BIOS
/// Data Area (segment at 0x40E), then 0xE0000..0x100000, on 16-byte boundaries.
///
/// Returns `None` if nothing valid is found or the areas are unreadable.
pub fn find_rsdp_in_bios_area(mem: &(impl PhysRead + ?Sized)) -> Option<Rsdp> {
    let mut seg = [0u8; 2];
    let ebda = match mem.read(0x40E, &mut seg) {
        Ok(()) => u64::from(u16::from_le_bytes(seg)) << 4,
        Err(_) => 0,
    };
    let ebda_range = if ebda != 0 { ebda..ebda + 1024 } else { 0..0 };
    ebda_range
        .step_by(16)
        .chain((0xE0000u64..0x100000).step_by(16))
        .find_map(|phys| {
            let mut sig = [0u8; 8];
            mem.read(phys, &mut sig).ok()?;
            if sig != SIGNATURE {
                return None;
            }
            read_any(mem, phys)
        })
}
