//! The caller's guest-physical memory, as the dispatcher needs it: check a range, copy
//! bytes out, copy bytes in. The bare-metal implementation walks the caller's NPT/EPT;
//! tests use `fake::FakeGuestMemory` (feature `fake`).

/// Size of a hypercall page (and of the pages parameter blocks must not cross).
pub const PAGE_SIZE: u64 = 4096;

/// The kind of access a range must allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The hypervisor reads it (an input block).
    Read,
    /// The hypervisor writes it (an output block).
    Write,
}

/// Why a guest-physical range cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GuestMemoryError {
    /// Some byte of the range is not RAM of the calling partition (unmapped, MMIO, beyond
    /// its GPA space, or an overflowing range).
    #[error("Range {gpa:#x}+{len:#x} is not the caller's RAM")]
    NotRam {
        /// Start of the range.
        gpa: u64,
        /// Length of the range.
        len: u64,
    },
    /// The range is RAM but the caller may not have it written.
    #[error("Range {gpa:#x}+{len:#x} is not writable")]
    NotWritable {
        /// Start of the range.
        gpa: u64,
        /// Length of the range.
        len: u64,
    },
}

/// The calling partition's guest-physical memory.
///
/// Implementations must not panic on any `gpa`/length, including ranges whose end
/// overflows `u64`: they report [`GuestMemoryError::NotRam`].
pub trait GuestMemory {
    /// Checks that `[gpa, gpa + len)` is the caller's RAM and allows `access`, without
    /// touching it. The dispatcher checks every parameter block before it acts, so a
    /// handler never runs for a call whose output cannot be delivered.
    ///
    /// # Errors
    /// Why the range is unusable.
    fn check(&self, gpa: u64, len: u64, access: Access) -> Result<(), GuestMemoryError>;

    /// Copies `buf.len()` bytes starting at `gpa` into `buf`.
    ///
    /// # Errors
    /// Why the range is unreadable; `buf` contents are then unspecified.
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), GuestMemoryError>;

    /// Copies `data` to guest memory starting at `gpa`.
    ///
    /// # Errors
    /// Why the range is unwritable; nothing was written.
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), GuestMemoryError>;
}

impl<M: GuestMemory + ?Sized> GuestMemory for &mut M {
    fn check(&self, gpa: u64, len: u64, access: Access) -> Result<(), GuestMemoryError> {
        (**self).check(gpa, len, access)
    }

    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), GuestMemoryError> {
        (**self).read(gpa, buf)
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), GuestMemoryError> {
        (**self).write(gpa, data)
    }
}
