//! Reading the loader's structures out of physical memory: copy first, then validate.

use core::fmt;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::error::{BootInfoError, StringKind};
use crate::fixed::FixedStr;

/// A physical address range that could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfRange {
    /// First address of the failed read.
    pub phys: u64,
    /// Length of the failed read in bytes.
    pub len: u64,
}

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Physical range {:#x}+{:#x} is not readable",
            self.phys, self.len
        )
    }
}

impl core::error::Error for OutOfRange {}

/// Read access to physical memory, the only way this crate touches it.
///
/// Bare metal implements it over identity-mapped low memory; tests use [`crate::FakePhys`].
pub trait PhysRead {
    /// Copies `buf.len()` bytes starting at physical address `phys` into `buf`.
    ///
    /// Fails, without partial guarantees about `buf`, if any byte of the range is not readable
    /// (including a range that wraps around the address space).
    fn read(&self, phys: u64, buf: &mut [u8]) -> Result<(), OutOfRange>;
}

impl<P: PhysRead + ?Sized> PhysRead for &P {
    fn read(&self, phys: u64, buf: &mut [u8]) -> Result<(), OutOfRange> {
        (**self).read(phys, buf)
    }
}

/// Copies a plain-old-data structure out of physical memory.
pub(crate) fn read_struct<T>(mem: &(impl PhysRead + ?Sized), phys: u64) -> Result<T, BootInfoError>
where
    T: FromBytes + IntoBytes + KnownLayout + Immutable,
{
    let mut value = T::new_zeroed();
    mem.read(phys, value.as_mut_bytes())?;
    Ok(value)
}

fn read_byte(mem: &(impl PhysRead + ?Sized), phys: u64) -> Result<u8, BootInfoError> {
    let mut b = [0u8; 1];
    mem.read(phys, &mut b)?;
    Ok(b[0])
}

/// Reads a NUL-terminated UTF-8 string whose terminator must lie within `window` bytes of
/// `phys`, into a buffer of `N` bytes.
///
/// Reads one byte at a time so that a string ending just before unreadable memory is fine.
pub(crate) fn read_cstr<const N: usize>(
    mem: &(impl PhysRead + ?Sized),
    phys: u64,
    window: u64,
    which: StringKind,
) -> Result<FixedStr<N>, BootInfoError> {
    let mut buf = [0u8; N];
    let mut len: u64 = 0;
    loop {
        if len >= window {
            return Err(BootInfoError::StringNotTerminated {
                which,
                cap: usize::try_from(window).unwrap_or(usize::MAX),
            });
        }
        let addr = phys
            .checked_add(len)
            .ok_or(BootInfoError::Unreadable { phys, len: len + 1 })?;
        let byte = read_byte(mem, addr)?;
        if byte == 0 {
            break;
        }
        if let Some(slot) = usize::try_from(len).ok().and_then(|i| buf.get_mut(i)) {
            *slot = byte;
        }
        len += 1;
    }
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    let bytes = buf
        .get(..len)
        .ok_or(BootInfoError::StringTooLong { which, len, cap: N })?;
    let s = core::str::from_utf8(bytes).map_err(|_| BootInfoError::StringNotUtf8 { which })?;
    FixedStr::try_from_str(s).map_err(|_| BootInfoError::StringTooLong { which, len, cap: N })
}

/// Reads a string that is only informative (the loader's name): never fails.
///
/// Stops at a NUL, after `N` bytes, after `window` bytes or at unreadable memory, and keeps the
/// longest valid UTF-8 prefix.
pub(crate) fn read_cstr_lenient<const N: usize>(
    mem: &(impl PhysRead + ?Sized),
    phys: u64,
    window: u64,
) -> FixedStr<N> {
    let mut buf = [0u8; N];
    let mut len = 0usize;
    for slot in buf.iter_mut() {
        let Ok(offset) = u64::try_from(len) else {
            break;
        };
        if offset >= window {
            break;
        }
        let Some(addr) = phys.checked_add(offset) else {
            break;
        };
        match read_byte(mem, addr) {
            Ok(0) | Err(_) => break,
            Ok(b) => *slot = b,
        }
        len += 1;
    }
    let bytes = buf.get(..len).unwrap_or(&[]);
    let valid = match core::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => bytes
            .get(..e.valid_up_to())
            .and_then(|b| core::str::from_utf8(b).ok())
            .unwrap_or(""),
    };
    FixedStr::from_str_truncated(valid)
}
