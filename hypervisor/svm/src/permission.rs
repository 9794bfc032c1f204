//! The I/O and MSR permission maps (AMD APM vol. 2, 15.10.1 and 15.11), built in memory the
//! caller provides (for the hypervisor: physically contiguous frames it then points
//! IOPM_BASE_PA and MSRPM_BASE_PA at). A set bit intercepts, a clear bit lets the guest
//! access the port or MSR directly.

use thiserror::Error;

use crate::exit::IoSize;

/// Size of the I/O permission map: 12 KiB (three pages), 4 KiB aligned.
pub const IOPM_SIZE: usize = 3 * 4096;
/// Size of the MSR permission map: 8 KiB (two pages), 4 KiB aligned.
pub const MSRPM_SIZE: usize = 2 * 4096;

/// Byte offset of the bits beyond port 0xFFFF, which the CPU checks for a multi-byte access
/// that starts at 0xFFFD-0xFFFF and so runs past the last port.
const IOPM_WRAP_BYTE: usize = 0x2000;

/// I/O permission map: bit *n* intercepts port *n*; an access of *s* bytes at port *p* is
/// intercepted if any of the bits *p*..*p*+*s*-1 is set, and bits 0x10000-0x10002 (which
/// no port number names) cover accesses that run past port 0xFFFF. This builder keeps those
/// always set, so such accesses always exit.
#[derive(Debug)]
pub struct IoPermissionMap<'a> {
    bytes: &'a mut [u8; IOPM_SIZE],
}

impl<'a> IoPermissionMap<'a> {
    /// Takes `bytes` and fills it so that every port is intercepted.
    pub fn intercept_all(bytes: &'a mut [u8; IOPM_SIZE]) -> Self {
        bytes.fill(0xFF);
        Self { bytes }
    }

    /// Edits an existing map in `bytes`, re-setting the past-0xFFFF bits.
    pub fn edit(bytes: &'a mut [u8; IOPM_SIZE]) -> Self {
        let mut map = Self { bytes };
        map.set_wrap_bits();
        map
    }

    /// Lets the guest access `port` without an exit.
    pub fn allow(&mut self, port: u16) {
        self.set(port, false);
    }

    /// Makes accesses to `port` exit.
    pub fn deny(&mut self, port: u16) {
        self.set(port, true);
    }

    /// Sets or clears the intercept of every port in `first..=last` (nothing if
    /// `first > last`).
    pub fn set_range(&mut self, first: u16, last: u16, intercept: bool) {
        for port in first..=last {
            self.set(port, intercept);
        }
    }

    /// Sets or clears the intercept of `port`.
    pub fn set(&mut self, port: u16, intercept: bool) {
        set_bit(&mut self.bytes[..], usize::from(port), intercept);
    }

    /// Whether `port`'s own bit is set.
    pub fn intercepts_port(&self, port: u16) -> bool {
        bit(&self.bytes[..], usize::from(port))
    }

    /// Whether an access of `size` bytes at `port` exits, as the CPU decides it.
    pub fn intercepts_access(&self, port: u16, size: IoSize) -> bool {
        let first = usize::from(port);
        (first..first + size.bytes()).any(|b| bit(&self.bytes[..], b))
    }

    /// The map's bytes.
    pub fn as_bytes(&self) -> &[u8; IOPM_SIZE] {
        self.bytes
    }

    fn set_wrap_bits(&mut self) {
        self.bytes[IOPM_WRAP_BYTE] |= 0b111;
    }
}

/// One direction of MSR access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsrAccess {
    /// RDMSR.
    Read,
    /// WRMSR.
    Write,
}

/// Whether reads and writes of an MSR exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsrIntercept {
    /// RDMSR exits.
    pub read: bool,
    /// WRMSR exits.
    pub write: bool,
}

/// An MSR the permission map has no bits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("MSR {0:#x} is outside the permission map; it is always intercepted")]
pub struct MsrOutOfRange(pub u32);

/// The three MSR ranges the map covers: (first MSR, byte offset of its bits in the map).
const MSR_RANGES: [(u32, usize); 3] = [
    (0x0000_0000, 0x000),
    (0xC000_0000, 0x800),
    (0xC001_0000, 0x1000),
];
/// MSRs per range: 2 KiB of 2-bit entries.
const MSRS_PER_RANGE: u32 = 0x2000;

/// Where MSR `msr`'s read-intercept bit lives in the map, as (byte offset, bit in that byte);
/// the write-intercept bit is the next bit up. `None` for MSRs outside
/// 0-0x1FFF, 0xC000_0000-0xC000_1FFF and 0xC001_0000-0xC001_1FFF, which always exit.
pub const fn msrpm_position(msr: u32) -> Option<(usize, u8)> {
    let mut i = 0;
    while i < MSR_RANGES.len() {
        let (base, offset) = MSR_RANGES[i];
        if msr >= base && msr - base < MSRS_PER_RANGE {
            let bit = (msr - base) as usize * 2;
            return Some((offset + bit / 8, (bit % 8) as u8));
        }
        i += 1;
    }
    None
}

/// MSR permission map: two bits per MSR (even bit: RDMSR, odd bit: WRMSR) in three 2 KiB
/// vectors for MSRs 0-0x1FFF, 0xC000_0000-0xC000_1FFF and 0xC001_0000-0xC001_1FFF; the
/// fourth 2 KiB is reserved and kept set. MSRs outside the ranges always exit.
#[derive(Debug)]
pub struct MsrPermissionMap<'a> {
    bytes: &'a mut [u8; MSRPM_SIZE],
}

impl<'a> MsrPermissionMap<'a> {
    /// Takes `bytes` and fills it so that every MSR access is intercepted.
    pub fn intercept_all(bytes: &'a mut [u8; MSRPM_SIZE]) -> Self {
        bytes.fill(0xFF);
        Self { bytes }
    }

    /// Edits an existing map in `bytes`.
    pub fn edit(bytes: &'a mut [u8; MSRPM_SIZE]) -> Self {
        Self { bytes }
    }

    /// Sets or clears the intercept of `access` to `msr`.
    pub fn set(
        &mut self,
        msr: u32,
        access: MsrAccess,
        intercept: bool,
    ) -> Result<(), MsrOutOfRange> {
        let (byte, bit) = msrpm_position(msr).ok_or(MsrOutOfRange(msr))?;
        let bit = match access {
            MsrAccess::Read => bit,
            MsrAccess::Write => bit + 1,
        };
        set_bit(&mut self.bytes[..], byte * 8 + usize::from(bit), intercept);
        Ok(())
    }

    /// Lets the guest read and write `msr` without an exit.
    pub fn allow(&mut self, msr: u32) -> Result<(), MsrOutOfRange> {
        self.set(msr, MsrAccess::Read, false)?;
        self.set(msr, MsrAccess::Write, false)
    }

    /// Lets the guest read `msr` without an exit; writes keep their setting.
    pub fn allow_read(&mut self, msr: u32) -> Result<(), MsrOutOfRange> {
        self.set(msr, MsrAccess::Read, false)
    }

    /// Lets the guest write `msr` without an exit; reads keep their setting.
    pub fn allow_write(&mut self, msr: u32) -> Result<(), MsrOutOfRange> {
        self.set(msr, MsrAccess::Write, false)
    }

    /// Makes reads and writes of `msr` exit. Always succeeds for MSRs outside the map's
    /// ranges, which exit anyway.
    pub fn deny(&mut self, msr: u32) {
        // Outside the ranges there is nothing to set: such MSRs always exit.
        let _ = self.set(msr, MsrAccess::Read, true);
        let _ = self.set(msr, MsrAccess::Write, true);
    }

    /// Whether reads and writes of `msr` exit, as the CPU decides it.
    pub fn intercepts(&self, msr: u32) -> MsrIntercept {
        match msrpm_position(msr) {
            Some((byte, b)) => {
                let first = byte * 8 + usize::from(b);
                MsrIntercept {
                    read: bit(&self.bytes[..], first),
                    write: bit(&self.bytes[..], first + 1),
                }
            }
            None => MsrIntercept {
                read: true,
                write: true,
            },
        }
    }

    /// The map's bytes.
    pub fn as_bytes(&self) -> &[u8; MSRPM_SIZE] {
        self.bytes
    }
}

/// Bit `n` of `bytes`; bits past the end read as set (intercept).
fn bit(bytes: &[u8], n: usize) -> bool {
    bytes.get(n / 8).is_none_or(|b| b & (1 << (n % 8)) != 0)
}

/// Sets or clears bit `n` of `bytes`; bits past the end are ignored.
fn set_bit(bytes: &mut [u8], n: usize, on: bool) {
    if let Some(b) = bytes.get_mut(n / 8) {
        if on {
            *b |= 1 << (n % 8);
        } else {
            *b &= !(1 << (n % 8));
        }
    }
}
