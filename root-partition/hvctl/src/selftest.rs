//! `hvctl selftest`: checks, from inside the root partition, that its isolation holds.
//!
//! a. An unprivileged process cannot issue hypercalls: a child dropped to uid/gid 65534 is
//!    refused `ioperm(0xE8)` (EPERM) and dies of SIGSEGV when it executes the doorbell OUT
//!    anyway (the CPU checks the TSS I/O bitmap before any VM exit).
//! b. An unprivileged process cannot open `/dev/mem` (EACCES or EPERM).
//! c. Root cannot read hypervisor memory or the child pool: for the first, middle and last
//!    page of every protected range, mapping it from `/dev/mem` in a child and reading 8
//!    bytes must fail (mmap refused, or the child dies of SIGSEGV/SIGBUS), and `pread` there
//!    must fail or return nothing.
//!
//! With `--window`, one more check shows the method works: the shared window IS readable.
//!
//! Each check is a child outcome (see [`crate::sys::in_child`]) judged by a pure function,
//! so the judgments are unit-tested without privileges.

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::sys::{self, ChildOutcome, MapRead};

/// The unprivileged user and group the children drop to ("nobody").
pub const NOBODY: u32 = 65534;

/// Child exit codes (any code not listed is reported as unexpected).
pub mod code {
    /// The operation was refused, as it should be.
    pub const REFUSED: i32 = 0;
    /// Dropping privileges failed.
    pub const SETUID_FAILED: i32 = 10;
    /// `ioperm` was granted to the unprivileged child.
    pub const IOPERM_GRANTED: i32 = 11;
    /// `ioperm` failed, but not with EPERM.
    pub const IOPERM_OTHER_ERRNO: i32 = 12;
    /// The doorbell OUT did not fault.
    pub const DOORBELL_SURVIVED: i32 = 13;
    /// `/dev/mem` opened for the unprivileged child.
    pub const DEVMEM_OPENED: i32 = 20;
    /// `/dev/mem` failed to open, but not with EACCES/EPERM.
    pub const DEVMEM_OTHER_ERRNO: i32 = 21;
    /// The mapped page was read.
    pub const READ_SUCCEEDED: i32 = 30;
    /// `/dev/mem` did not open for root.
    pub const OPEN_FAILED: i32 = 32;
}

/// A check's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// As expected.
    Pass,
    /// Not as expected, and why.
    Fail(String),
}

impl Verdict {
    /// Whether it passed.
    #[must_use]
    pub const fn passed(&self) -> bool {
        matches!(self, Self::Pass)
    }
}

fn unexpected(outcome: ChildOutcome) -> Verdict {
    Verdict::Fail(match outcome {
        ChildOutcome::Exited(code::SETUID_FAILED) => "cannot drop to uid 65534".into(),
        ChildOutcome::Exited(code) => format!("child exited with unexpected code {code}"),
        ChildOutcome::Signaled(signal) => format!("child died of unexpected signal {signal}"),
    })
}

/// Check a: the child must die of SIGSEGV after ioperm was refused.
#[must_use]
pub fn judge_doorbell(outcome: ChildOutcome) -> Verdict {
    match outcome {
        ChildOutcome::Signaled(libc::SIGSEGV) => Verdict::Pass,
        ChildOutcome::Exited(code::IOPERM_GRANTED) => {
            Verdict::Fail("ioperm(0xE8) was granted to uid 65534".into())
        }
        ChildOutcome::Exited(code::IOPERM_OTHER_ERRNO) => {
            Verdict::Fail("ioperm(0xE8) failed with an errno other than EPERM".into())
        }
        ChildOutcome::Exited(code::DOORBELL_SURVIVED) => {
            Verdict::Fail("the doorbell OUT did not fault for uid 65534".into())
        }
        other => unexpected(other),
    }
}

/// Check b: `/dev/mem` must be refused.
#[must_use]
pub fn judge_devmem(outcome: ChildOutcome) -> Verdict {
    match outcome {
        ChildOutcome::Exited(code::REFUSED) => Verdict::Pass,
        ChildOutcome::Exited(code::DEVMEM_OPENED) => {
            Verdict::Fail("uid 65534 opened /dev/mem".into())
        }
        ChildOutcome::Exited(code::DEVMEM_OTHER_ERRNO) => {
            Verdict::Fail("opening /dev/mem failed with an errno other than EACCES/EPERM".into())
        }
        other => unexpected(other),
    }
}

/// Check c for one page: the mapped read must fail, and `pread` (`Ok(bytes)` or an error)
/// must return nothing.
#[must_use]
pub fn judge_protected(page: u64, outcome: ChildOutcome, pread: Result<usize, i32>) -> Verdict {
    let mapped = match outcome {
        ChildOutcome::Exited(code::REFUSED)
        | ChildOutcome::Signaled(libc::SIGSEGV | libc::SIGBUS) => Verdict::Pass,
        ChildOutcome::Exited(code::READ_SUCCEEDED) => {
            Verdict::Fail(format!("root read 8 bytes at {page:#x} through mmap"))
        }
        ChildOutcome::Exited(code::OPEN_FAILED) => {
            Verdict::Fail("root cannot open /dev/mem: the check proves nothing".into())
        }
        other => unexpected(other),
    };
    match (mapped, pread) {
        (Verdict::Pass, Ok(n)) if n > 0 => {
            Verdict::Fail(format!("root read {n} bytes at {page:#x} through pread"))
        }
        (verdict, _) => verdict,
    }
}

/// The `--window` check: the window page must be readable.
#[must_use]
pub fn judge_window(outcome: ChildOutcome) -> Verdict {
    match outcome {
        ChildOutcome::Exited(code::READ_SUCCEEDED) => Verdict::Pass,
        ChildOutcome::Exited(code::REFUSED) => {
            Verdict::Fail("mmap of the window was refused: the method is broken".into())
        }
        ChildOutcome::Exited(code::OPEN_FAILED) => Verdict::Fail("cannot open /dev/mem".into()),
        ChildOutcome::Signaled(signal) => Verdict::Fail(format!(
            "reading the window killed the child (signal {signal})"
        )),
        other => unexpected(other),
    }
}

/// The pages check c looks at in `[start, end)`: first, middle, last (deduplicated).
#[must_use]
pub fn probe_pages(start: u64, end: u64) -> Vec<(u64, &'static str)> {
    if end <= start {
        return Vec::new();
    }
    let page = |a: u64| a & !0xFFF;
    let first = page(start);
    let last = page(end - 1);
    let middle = page(start + (end - start) / 2);
    let mut pages = vec![(first, "start")];
    for (address, label) in [(middle, "middle"), (last, "last page")] {
        if pages.iter().all(|&(p, _)| p != address) {
            pages.push((address, label));
        }
    }
    pages
}

/// Runs check a.
#[must_use]
pub fn check_doorbell() -> Verdict {
    let outcome = sys::in_child(|| {
        if sys::drop_privileges(NOBODY, NOBODY).is_err() {
            return code::SETUID_FAILED;
        }
        match sys::ioperm(rootd_doorbell_port()) {
            Ok(()) => return code::IOPERM_GRANTED,
            Err(libc::EPERM) => {}
            Err(_) => return code::IOPERM_OTHER_ERRNO,
        }
        sys::ring_doorbell_anyway();
        code::DOORBELL_SURVIVED
    });
    outcome.map_or_else(
        |e| Verdict::Fail(format!("fork failed: {e}")),
        judge_doorbell,
    )
}

const fn rootd_doorbell_port() -> u16 {
    hypercall::root_abi::DOORBELL_PORT
}

/// Runs check b.
#[must_use]
pub fn check_devmem() -> Verdict {
    let outcome = sys::in_child(|| {
        if sys::drop_privileges(NOBODY, NOBODY).is_err() {
            return code::SETUID_FAILED;
        }
        match sys::open_dev_mem(libc::O_RDWR) {
            Ok(()) => code::DEVMEM_OPENED,
            Err(libc::EACCES | libc::EPERM) => code::REFUSED,
            Err(_) => code::DEVMEM_OTHER_ERRNO,
        }
    });
    outcome.map_or_else(|e| Verdict::Fail(format!("fork failed: {e}")), judge_devmem)
}

fn map_read_child(page: u64) -> std::io::Result<ChildOutcome> {
    sys::in_child(|| match sys::map_and_read(page) {
        MapRead::OpenFailed(_) => code::OPEN_FAILED,
        MapRead::MapRefused(_) => code::REFUSED,
        MapRead::Read(_) => code::READ_SUCCEEDED,
    })
}

/// Runs check c for one page.
#[must_use]
pub fn check_protected_page(page: u64) -> Verdict {
    let pread = File::open("/dev/mem")
        .and_then(|file| {
            let mut buf = [0u8; 8];
            file.read_at(&mut buf, page)
        })
        .map_err(|e| e.raw_os_error().unwrap_or(0));
    map_read_child(page).map_or_else(
        |e| Verdict::Fail(format!("fork failed: {e}")),
        |outcome| judge_protected(page, outcome, pread),
    )
}

/// Runs the window check on the window's first page.
#[must_use]
pub fn check_window(window: u64) -> Verdict {
    map_read_child(window & !0xFFF)
        .map_or_else(|e| Verdict::Fail(format!("fork failed: {e}")), judge_window)
}

/// The line printed for a check.
#[must_use]
pub fn report_line(name: &str, verdict: &Verdict) -> String {
    match verdict {
        Verdict::Pass => format!("selftest: {name}: PASS"),
        Verdict::Fail(why) => format!("selftest: {name}: FAIL {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fork_plumbing_reports_exit_codes_and_signals() {
        assert_eq!(sys::in_child(|| 7).unwrap(), ChildOutcome::Exited(7));
        let killed = sys::in_child(|| {
            // SAFETY: raising a signal in this forked child, whose default action kills it.
            #[allow(unsafe_code, reason = "test: kill the child with SIGBUS")]
            unsafe {
                libc::raise(libc::SIGBUS);
            }
            0
        })
        .unwrap();
        assert_eq!(killed, ChildOutcome::Signaled(libc::SIGBUS));
        // A real fault in the child (a null read) kills it with SIGSEGV, not the parent.
        let faulted = sys::in_child(|| {
            let null = std::ptr::null::<u64>();
            // SAFETY: deliberately faults; only this forked child dies.
            #[allow(unsafe_code, reason = "test: a real page fault in the child")]
            let value = unsafe { null.read_volatile() };
            i32::from(value == 0)
        })
        .unwrap();
        assert_eq!(faulted, ChildOutcome::Signaled(libc::SIGSEGV));
    }

    #[test]
    fn doorbell_judgments() {
        assert!(judge_doorbell(ChildOutcome::Signaled(libc::SIGSEGV)).passed());
        for (outcome, why) in [
            (ChildOutcome::Exited(code::IOPERM_GRANTED), "was granted"),
            (
                ChildOutcome::Exited(code::IOPERM_OTHER_ERRNO),
                "other than EPERM",
            ),
            (
                ChildOutcome::Exited(code::DOORBELL_SURVIVED),
                "did not fault",
            ),
            (ChildOutcome::Exited(code::SETUID_FAILED), "cannot drop"),
            (ChildOutcome::Signaled(libc::SIGKILL), "signal 9"),
            (ChildOutcome::Exited(0), "unexpected code 0"),
        ] {
            let Verdict::Fail(text) = judge_doorbell(outcome) else {
                panic!("{outcome:?} passed");
            };
            assert!(text.contains(why), "{text}");
        }
    }

    #[test]
    fn devmem_protected_and_window_judgments() {
        assert!(judge_devmem(ChildOutcome::Exited(code::REFUSED)).passed());
        assert!(!judge_devmem(ChildOutcome::Exited(code::DEVMEM_OPENED)).passed());
        assert!(!judge_devmem(ChildOutcome::Signaled(libc::SIGSEGV)).passed());

        let page = 0x100_0000;
        assert!(
            judge_protected(page, ChildOutcome::Exited(code::REFUSED), Err(libc::EPERM)).passed()
        );
        assert!(judge_protected(page, ChildOutcome::Signaled(libc::SIGBUS), Ok(0)).passed());
        assert!(judge_protected(page, ChildOutcome::Signaled(libc::SIGSEGV), Err(1)).passed());
        assert_eq!(
            judge_protected(page, ChildOutcome::Exited(code::READ_SUCCEEDED), Err(1)),
            Verdict::Fail("root read 8 bytes at 0x1000000 through mmap".into())
        );
        assert_eq!(
            judge_protected(page, ChildOutcome::Exited(code::REFUSED), Ok(8)),
            Verdict::Fail("root read 8 bytes at 0x1000000 through pread".into())
        );
        assert!(!judge_protected(page, ChildOutcome::Exited(code::OPEN_FAILED), Err(1)).passed());

        assert!(judge_window(ChildOutcome::Exited(code::READ_SUCCEEDED)).passed());
        assert!(!judge_window(ChildOutcome::Exited(code::REFUSED)).passed());
        assert!(!judge_window(ChildOutcome::Signaled(libc::SIGBUS)).passed());
    }

    #[test]
    fn probe_pages_cover_start_middle_and_end() {
        assert_eq!(
            probe_pages(0x100_0000, 0x200_0000),
            [
                (0x100_0000, "start"),
                (0x180_0000, "middle"),
                (0x1FF_F000, "last page")
            ]
        );
        assert_eq!(probe_pages(0x1000, 0x2000), [(0x1000, "start")]);
        assert_eq!(
            probe_pages(0x1000, 0x3000),
            [(0x1000, "start"), (0x2000, "middle")]
        );
        assert!(probe_pages(0x2000, 0x2000).is_empty());
    }

    #[test]
    fn report_lines() {
        assert_eq!(report_line("x", &Verdict::Pass), "selftest: x: PASS");
        assert_eq!(
            report_line("x", &Verdict::Fail("why".into())),
            "selftest: x: FAIL why"
        );
    }

    /// Check a and b for real where the test runs as root (they hold on any Linux: an
    /// unprivileged process has neither the port nor /dev/mem).
    #[test]
    fn unprivileged_checks_hold_on_this_host_when_root() {
        // SAFETY: geteuid has no preconditions.
        #[allow(unsafe_code, reason = "test: are we root?")]
        let euid = unsafe { libc::geteuid() };
        if euid != 0 {
            return;
        }
        // Under a seccomp filter (containers) ioperm may fail with another errno; anything
        // but "granted" or "the OUT went through" still shows the isolation.
        let doorbell = check_doorbell();
        assert!(
            doorbell.passed()
                || doorbell == judge_doorbell(ChildOutcome::Exited(code::IOPERM_OTHER_ERRNO)),
            "{doorbell:?}"
        );
        let devmem = check_devmem();
        // Containers may lack /dev/mem altogether (ENOENT): then the judgment says so.
        if std::path::Path::new("/dev/mem").exists() {
            assert_eq!(devmem, Verdict::Pass);
        } else {
            assert!(!devmem.passed());
        }
    }
}
