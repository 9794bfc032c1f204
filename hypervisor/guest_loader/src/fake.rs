//! A `Vec`-backed [`GuestRam`] for host tests (this crate's, and others' with the `fake`
//! feature).

use std::vec;
use std::vec::Vec;

use crate::load::{GuestRam, RamError};

/// Guest RAM held in a `Vec<u8>`, initially filled with a marker byte so that bytes the
/// loader leaves alone are recognisable. Every write and zero range is logged.
#[derive(Debug, Clone)]
pub struct FakeRam {
    bytes: Vec<u8>,
    writes: Vec<(u64, u64)>,
}

impl FakeRam {
    /// The byte untouched RAM holds.
    pub const FILL: u8 = 0xCC;

    /// `size` bytes of RAM filled with [`Self::FILL`].
    #[must_use]
    pub fn new(size: usize) -> Self {
        Self {
            bytes: vec![Self::FILL; size],
            writes: Vec::new(),
        }
    }

    /// All of RAM.
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// `(gpa, len)` of every write and zero call, in order.
    #[must_use]
    pub fn writes(&self) -> &[(u64, u64)] {
        &self.writes
    }

    /// The little-endian `u64` at `gpa`, if in RAM.
    #[must_use]
    pub fn read_u64(&self, gpa: u64) -> Option<u64> {
        let mut buf = [0u8; 8];
        self.read(gpa, &mut buf).ok()?;
        Some(u64::from_le_bytes(buf))
    }

    fn range(&self, gpa: u64, len: u64) -> Result<core::ops::Range<usize>, RamError> {
        let error = RamError { gpa, len };
        let start = usize::try_from(gpa).map_err(|_| error)?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| start.checked_add(len))
            .ok_or(error)?;
        if end > self.bytes.len() {
            return Err(error);
        }
        Ok(start..end)
    }
}

impl GuestRam for FakeRam {
    fn ram_size(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), RamError> {
        let range = self.range(gpa, data.len() as u64)?;
        self.bytes[range].copy_from_slice(data);
        self.writes.push((gpa, data.len() as u64));
        Ok(())
    }

    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), RamError> {
        let range = self.range(gpa, buf.len() as u64)?;
        buf.copy_from_slice(&self.bytes[range]);
        Ok(())
    }

    fn zero(&mut self, gpa: u64, len: u64) -> Result<(), RamError> {
        let range = self.range(gpa, len)?;
        self.bytes[range].fill(0);
        self.writes.push((gpa, len));
        Ok(())
    }
}
