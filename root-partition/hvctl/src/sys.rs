//! The few system calls the selftest needs, each behind a small safe function, and the
//! fork plumbing: [`in_child`] runs a function in a forked child and reports how the child
//! ended, so a check whose expected outcome is "the process dies" can be observed safely.
//!
//! Functions meant to run in a child allocate nothing (the parent may have other threads,
//! e.g. the test harness, holding the allocator lock at the fork).

use std::io;

/// How a forked child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildOutcome {
    /// `_exit(code)`.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
}

/// Runs `f` in a forked child that exits with `f`'s return value; returns how it ended.
/// SIGSEGV and SIGBUS have their default action in the child, so a fault kills it.
///
/// `f` must not allocate or take locks (see the module documentation).
///
/// # Errors
/// `fork` or `waitpid` failed.
pub fn in_child(f: impl FnOnce() -> i32) -> io::Result<ChildOutcome> {
    // SAFETY: fork has no memory-safety preconditions; the child only runs `f` (which
    // allocates nothing by contract) and then `_exit`s without unwinding or running
    // destructors or atexit handlers of the parent's state.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        default_fault_signals();
        let code = f();
        // SAFETY: `_exit` ends the child immediately; nothing of the parent's state is
        // flushed twice.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer; `pid` is our child.
        let waited = unsafe { libc::waitpid(pid, &raw mut status, 0) };
        if waited == pid {
            break;
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
    if libc::WIFSIGNALED(status) {
        Ok(ChildOutcome::Signaled(libc::WTERMSIG(status)))
    } else {
        Ok(ChildOutcome::Exited(libc::WEXITSTATUS(status)))
    }
}

/// Gives SIGSEGV and SIGBUS their default action (Rust's runtime installs a handler for
/// stack overflows).
fn default_fault_signals() {
    for signal in [libc::SIGSEGV, libc::SIGBUS] {
        // SAFETY: installs the default disposition; no handler code is involved.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
}

/// The calling thread's last OS error number.
#[must_use]
pub fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Drops to `uid`/`gid` with no supplementary groups.
///
/// # Errors
/// The errno of the failing call.
pub fn drop_privileges(uid: u32, gid: u32) -> Result<(), i32> {
    // SAFETY: an empty group list (null pointer, count 0) is valid for setgroups.
    if unsafe { libc::setgroups(0, std::ptr::null()) } != 0 {
        return Err(errno());
    }
    // SAFETY: plain system call on integers.
    if unsafe { libc::setgid(gid) } != 0 {
        return Err(errno());
    }
    // SAFETY: plain system call on integers.
    if unsafe { libc::setuid(uid) } != 0 {
        return Err(errno());
    }
    Ok(())
}

/// `ioperm(port, 1, 1)`.
///
/// # Errors
/// The errno.
pub fn ioperm(port: u16) -> Result<(), i32> {
    // SAFETY: ioperm only changes this thread's I/O permission bitmap.
    if unsafe { libc::ioperm(libc::c_ulong::from(port), 1, 1) } == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

/// Executes the hypercall doorbell (a harmless fast NotifyLongSpinWait) whatever the I/O
/// permission: without it, the CPU raises #GP and the process dies of SIGSEGV.
pub fn ring_doorbell_anyway() {
    let control =
        hypercall::control::simple_call(hypercall::CallCode::NotifyLongSpinWait.raw(), true);
    // SAFETY: a fast call names no memory; without the port permission the instruction
    // faults before the hypervisor sees it, which is exactly what the caller (a forked
    // child of the selftest) wants to observe.
    let _ = unsafe { rootd::doorbell::ring(control, 0, 0) };
}

/// `open("/dev/mem", flags)`, closed again at once.
///
/// # Errors
/// The errno.
pub fn open_dev_mem(flags: i32) -> Result<(), i32> {
    let fd = open_raw(flags)?;
    // SAFETY: `fd` is the descriptor just opened and owned here.
    unsafe { libc::close(fd) };
    Ok(())
}

fn open_raw(flags: i32) -> Result<i32, i32> {
    // SAFETY: the path is a NUL-terminated literal.
    let fd = unsafe { libc::open(c"/dev/mem".as_ptr(), flags) };
    if fd < 0 { Err(errno()) } else { Ok(fd) }
}

/// What mapping a physical page of `/dev/mem` and reading it gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapRead {
    /// `/dev/mem` did not open.
    OpenFailed(i32),
    /// `mmap` was refused.
    MapRefused(i32),
    /// 8 bytes were read.
    Read(u64),
}

/// Maps the page at physical address `page` from `/dev/mem` and reads its first 8 bytes
/// (may kill the process with SIGBUS or SIGSEGV: run it in [`in_child`]).
#[must_use]
pub fn map_and_read(page: u64) -> MapRead {
    let fd = match open_raw(libc::O_RDONLY | libc::O_SYNC) {
        Ok(fd) => fd,
        Err(errno) => return MapRead::OpenFailed(errno),
    };
    let Ok(offset) = libc::off_t::try_from(page) else {
        return MapRead::MapRefused(libc::EINVAL);
    };
    // SAFETY: a fresh read-only shared mapping chosen by the kernel, of a descriptor we own.
    let address = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd,
            offset,
        )
    };
    if address == libc::MAP_FAILED {
        return MapRead::MapRefused(errno());
    }
    // SAFETY: `address` is a readable 4 KiB mapping, 8-byte aligned (page aligned); the
    // read may fault (the point of the check), which kills this forked child.
    let value = unsafe { address.cast::<u64>().read_volatile() };
    MapRead::Read(value)
}
