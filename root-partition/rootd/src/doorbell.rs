//! The real [`Hypervisor`]: hypercalls through Mica's I/O-port doorbell, parameter pages in
//! the shared window mapped from `/dev/mem` (see `hypercall::root_abi`).
//!
//! The process needs `ioperm(0xE8)` (CAP_SYS_RAWIO) and `/dev/mem`: in practice root.
//! Page 0 of the window is the input page, page 1 the output page; both are identity-mapped
//! root RAM that the hypervisor reserved, so their GPA is their physical address.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::ptr::NonNull;

use hypercall::PAGE_SIZE;
use hypercall::root_abi::{DOORBELL_PORT, WINDOW_PARAM, parse_window};

use crate::hv::Hypervisor;

/// Bytes of the window rootd maps: the input and the output page.
const MAPPED: usize = 2 * PAGE_SIZE as usize;

/// Why the doorbell could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DoorbellError {
    /// `/proc/cmdline` is unreadable.
    #[error("Cannot read /proc/cmdline")]
    Cmdline(#[source] io::Error),
    /// No (valid) window parameter: this kernel was not started by Mica.
    #[error(
        "No valid {WINDOW_PARAM}= on the kernel command line: not running in Mica's root partition"
    )]
    NotOnMica,
    /// The window is smaller than the two pages rootd needs, or not page-aligned.
    #[error("The shared window {start:#x}+{len:#x} is too small or misaligned")]
    BadWindow {
        /// Its start.
        start: u64,
        /// Its length.
        len: u64,
    },
    /// `ioperm` refused the doorbell port.
    #[error("ioperm({DOORBELL_PORT:#x}) refused (rootd needs root / CAP_SYS_RAWIO)")]
    Ioperm(#[source] io::Error),
    /// `/dev/mem` could not be opened.
    #[error("Cannot open /dev/mem")]
    DevMem(#[source] io::Error),
    /// The window could not be mapped.
    #[error("Cannot map the shared window at {start:#x} from /dev/mem")]
    Mmap {
        /// Window start.
        start: u64,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Issues one doorbell hypercall: RCX = `control`, RDX = `rdx`, R8 = `r8`, then
/// `out 0xE8, al`. Returns RAX, RDX and R8 afterwards.
///
/// # Safety
/// The calling thread must hold the I/O permission for port 0xE8 (`ioperm`), or else be
/// prepared to die of SIGSEGV (the CPU raises #GP before any VM exit: that is what `hvctl
/// selftest` checks). Any GPA passed must be one the caller owns: the hypervisor reads and
/// writes the parameter pages it names.
#[must_use]
pub unsafe fn ring(control: u64, rdx: u64, r8: u64) -> (u64, u64, u64) {
    let rax: u64;
    let rdx_out: u64;
    let r8_out: u64;
    // SAFETY: the caller guarantees the port permission and the ownership of the named
    // pages (function contract). The OUT exits to the hypervisor, which writes only RAX,
    // RDX and R8 (declared as outputs) and RCX on a continued rep call (declared clobbered),
    // and the pages the call names; memory is not declared `nomem`, so the compiler keeps
    // the parameter copies before and after the instruction. No stack is used.
    unsafe {
        core::arch::asm!(
            "out 0xe8, al",
            inout("rax") 0u64 => rax,
            inout("rcx") control => _,
            inout("rdx") rdx => rdx_out,
            inout("r8") r8 => r8_out,
            options(nostack),
        );
    }
    (rax, rdx_out, r8_out)
}

/// The doorbell, with the window's first two pages mapped.
#[derive(Debug)]
pub struct Doorbell {
    window_gpa: u64,
    pages: NonNull<u8>,
}

impl Doorbell {
    /// Reads the window from `/proc/cmdline`, gets the port, maps the window.
    ///
    /// # Errors
    /// Every [`DoorbellError`], each saying what is wrong.
    pub fn open() -> Result<Self, DoorbellError> {
        let cmdline = std::fs::read_to_string("/proc/cmdline").map_err(DoorbellError::Cmdline)?;
        let (start, len) = parse_window(&cmdline).ok_or(DoorbellError::NotOnMica)?;
        if len < MAPPED as u64 || !start.is_multiple_of(PAGE_SIZE) {
            return Err(DoorbellError::BadWindow { start, len });
        }
        let offset =
            libc::off_t::try_from(start).map_err(|_| DoorbellError::BadWindow { start, len })?;
        // SAFETY: ioperm only changes this thread's I/O permission bitmap.
        if unsafe { libc::ioperm(libc::c_ulong::from(DOORBELL_PORT), 1, 1) } != 0 {
            return Err(DoorbellError::Ioperm(io::Error::last_os_error()));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_SYNC)
            .open("/dev/mem")
            .map_err(DoorbellError::DevMem)?;
        // SAFETY: a fresh shared mapping chosen by the kernel (no address hint), of a file
        // descriptor we own; nothing else in this process aliases it.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                MAPPED,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                offset,
            )
        };
        if address == libc::MAP_FAILED {
            return Err(DoorbellError::Mmap {
                start,
                source: io::Error::last_os_error(),
            });
        }
        // The mapping stays valid after the descriptor is closed.
        drop(file);
        let pages = NonNull::new(address.cast::<u8>()).ok_or(DoorbellError::Mmap {
            start,
            source: io::Error::from(io::ErrorKind::InvalidData),
        })?;
        Ok(Self {
            window_gpa: start,
            pages,
        })
    }

    /// Physical address of the window (its input page).
    #[must_use]
    pub const fn window_gpa(&self) -> u64 {
        self.window_gpa
    }
}

impl Hypervisor for Doorbell {
    fn call(&mut self, control: u64, input: &[u8], output: &mut [u8]) -> u64 {
        let page = PAGE_SIZE as usize;
        let input = &input[..input.len().min(page)];
        let out_len = output.len().min(page);
        // SAFETY: `pages` maps MAPPED (two pages) bytes, read-write, owned by this value;
        // `input` is at most one page and does not overlap the mapping (it is a Rust slice
        // of ordinary memory).
        unsafe {
            std::ptr::copy_nonoverlapping(input.as_ptr(), self.pages.as_ptr(), input.len());
        }
        // SAFETY: ioperm was granted in `open` (this process, and rootd is single-threaded
        // for hypercalls); the window pages are reserved for this process's use.
        let (rax, _, _) = unsafe { ring(control, self.window_gpa, self.window_gpa + PAGE_SIZE) };
        let output_page = self.pages.as_ptr().wrapping_add(page);
        // SAFETY: `output_page` is the second page of the mapping; `out_len` is at most a
        // page and `output` is ordinary memory, disjoint from it.
        unsafe {
            std::ptr::copy_nonoverlapping(output_page, output.as_mut_ptr(), out_len);
        }
        rax
    }

    fn fast(&mut self, control: u64, rdx: u64, r8: u64) -> (u64, u64, u64) {
        // SAFETY: ioperm was granted in `open`; a fast call names no memory.
        unsafe { ring(control | hypercall::control::FAST_BIT, rdx, r8) }
    }
}

impl Drop for Doorbell {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `open`, which nothing uses any more.
        unsafe {
            libc::munmap(self.pages.as_ptr().cast(), MAPPED);
        }
    }
}
