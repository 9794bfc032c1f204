//! Emulator harness for Mica's end-to-end tests.
//!
//! Boots a hypervisor image in QEMU (AMD SVM under TCG) or Bochs (Intel VMX or AMD SVM), waits
//! for it to end or for a timeout, and returns a [`RunOutcome`]: how the run ended ([`Exit`]),
//! the full serial text, and where the logs are. The expectation helpers
//! ([`RunOutcome::expect_success`], [`RunOutcome::expect_markers`],
//! [`RunOutcome::expect_failure`]) panic with a message holding the kept log directory and the
//! last serial lines, so a failing test says at once what the hypervisor printed.
//!
//! Every run gets its own temporary directory (serial log, emulator log, generated Bochs
//! configuration), so tests run in parallel. On a failed expectation the directory's files are
//! copied to `$MICA_LOG_DIR/<test name>/` (or to `<temp dir>/mica-test-logs/<test name>/` when
//! `MICA_LOG_DIR` is unset); the temporary directory is removed when the outcome is dropped.
//!
//! ```no_run
//! use std::time::Duration;
//! use emu_harness::{QemuConfig, run};
//!
//! let outcome = run(
//!     "my_test",
//!     QemuConfig::kernel("target/mica/mica.elf", ""),
//!     Duration::from_secs(90),
//! );
//! outcome.expect_markers(&["MICA READY"]).expect_success();
//! ```

#![forbid(unsafe_code)]

mod bochs;
mod iso;
mod outcome;
mod qemu;
mod runner;
mod verdict;

use std::path::PathBuf;

pub use bochs::{BOCHS_DEBUGGER_COMMANDS, BochsConfig, BochsCpu, UnknownBochsCpu};
pub use iso::IsoSpec;
pub use outcome::RunOutcome;
pub use qemu::{QemuBoot, QemuConfig, SerialSink};
pub use runner::{Console, Emulator, LOG_DIR_ENV, RunOptions, run, try_run};
pub use verdict::{
    Exit, MarkerError, ReportedExit, find_markers_in_order, judge_qemu_status, last_lines,
    normalize_serial, reported_exit,
};

/// Why the harness could not start or finish a run (as opposed to how the hypervisor ended,
/// which is an [`Exit`]).
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A path cannot be passed to the emulator as it is.
    #[error("Path {path:?} cannot be passed to the emulator: {reason}")]
    UnusablePath {
        /// The offending path.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A file the run needs does not exist.
    #[error("Missing file {0:?}")]
    MissingFile(PathBuf),
    /// Creating or reading the run's files failed.
    #[error("I/O error on {path:?}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A helper tool (e.g. `grub-mkrescue`) failed.
    #[error("{program} failed: {output}")]
    Tool {
        /// The tool.
        program: String,
        /// What it printed on stderr.
        output: String,
    },
    /// The emulator process could not be started.
    #[error("Cannot start {program:?} (is it installed? `cargo xtask` installs it)")]
    Spawn {
        /// The program that failed to start.
        program: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl HarnessError {
    fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}
