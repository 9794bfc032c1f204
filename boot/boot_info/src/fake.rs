//! A sparse fake of physical memory for host tests.

use alloc::vec::Vec;

use crate::phys::{OutOfRange, PhysRead};

/// Sparse physical memory: a set of written byte ranges; everything else is unreadable.
///
/// Later writes take precedence where ranges overlap. A read succeeds only if every byte of
/// it has been written (possibly by several writes).
#[derive(Debug, Default, Clone)]
pub struct FakePhys {
    regions: Vec<(u64, Vec<u8>)>,
}

impl FakePhys {
    /// Empty memory: every read fails.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `bytes` readable at `phys`.
    ///
    /// # Panics
    /// If the range wraps around the address space (a mistake in the test itself).
    pub fn write(&mut self, phys: u64, bytes: &[u8]) {
        assert!(
            phys.checked_add(bytes.len() as u64).is_some(),
            "FakePhys::write range wraps around the address space"
        );
        self.regions.push((phys, bytes.to_vec()));
    }

    /// Writes a little-endian `u32`.
    pub fn write_u32(&mut self, phys: u64, value: u32) {
        self.write(phys, &value.to_le_bytes());
    }

    /// Writes `s` followed by a NUL terminator.
    pub fn write_cstr(&mut self, phys: u64, s: &str) {
        let mut bytes = s.as_bytes().to_vec();
        bytes.push(0);
        self.write(phys, &bytes);
    }

    /// The byte at `phys`, if written.
    fn byte(&self, phys: u64) -> Option<u8> {
        self.regions.iter().rev().find_map(|(base, data)| {
            let off = usize::try_from(phys.checked_sub(*base)?).ok()?;
            data.get(off).copied()
        })
    }
}

impl PhysRead for FakePhys {
    fn read(&self, phys: u64, buf: &mut [u8]) -> Result<(), OutOfRange> {
        let err = OutOfRange {
            phys,
            len: buf.len() as u64,
        };
        for (i, slot) in buf.iter_mut().enumerate() {
            let addr = phys.checked_add(i as u64).ok_or(err)?;
            *slot = self.byte(addr).ok_or(err)?;
        }
        Ok(())
    }
}
