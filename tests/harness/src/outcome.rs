//! The result of a run and the expectations tests place on it.

use std::cell::Cell;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::HarnessError;
use crate::runner::{error_chain, sanitize};
use crate::verdict::{Exit, ReportedExit, find_markers_in_order, last_lines, reported_exit};

/// Number of serial lines quoted in a failed expectation's message.
const TAIL_LINES: usize = 40;

/// How a run ended, what the serial port said, and where the logs are.
///
/// The run's temporary directory is removed when the outcome is dropped; a failed expectation
/// first copies its files to `<log root>/<test name>/`.
#[derive(Debug)]
pub struct RunOutcome {
    /// How the run ended.
    pub exit: Exit,
    /// Everything the hypervisor wrote to the first serial port (carriage returns removed).
    pub serial: String,
    /// The serial log in the run directory.
    pub serial_log: PathBuf,
    /// The emulator's own stdout and stderr.
    pub emulator_log: PathBuf,
    /// The run's temporary directory.
    pub run_dir: PathBuf,
    /// Wall time from start to end (or to the kill).
    pub duration: Duration,
    test_name: String,
    log_root: PathBuf,
    /// Set when logs could not be copied out: the run directory is then left in place.
    keep_run_dir: Cell<bool>,
}

impl RunOutcome {
    pub(crate) fn new(test_name: &str, run_dir: PathBuf, log_root: PathBuf) -> Self {
        Self {
            exit: Exit::Timeout,
            serial: String::new(),
            serial_log: run_dir.join("serial.log"),
            emulator_log: run_dir.join("emulator.log"),
            run_dir,
            duration: Duration::ZERO,
            test_name: test_name.to_owned(),
            log_root,
            keep_run_dir: Cell::new(false),
        }
    }

    /// The name the run was started with.
    pub fn test_name(&self) -> &str {
        &self.test_name
    }

    /// What the last `MICA EXIT:` serial line reported, if there is one.
    pub fn reported_exit(&self) -> Option<ReportedExit> {
        reported_exit(&self.serial)
    }

    /// The hypervisor reported success: QEMU's debug-exit status 33, or, under Bochs (which
    /// always exits with 1), a last serial line `MICA EXIT: success`.
    pub fn succeeded(&self) -> bool {
        match self.exit {
            Exit::Success => true,
            Exit::BochsFinished => self.reported_exit() == Some(ReportedExit::Success),
            Exit::Failure | Exit::Abnormal(_) | Exit::Timeout => false,
        }
    }

    /// The hypervisor reported failure: QEMU's debug-exit status 35, or, under Bochs, a last
    /// serial line `MICA EXIT: failure`.
    pub fn reported_failure(&self) -> bool {
        match self.exit {
            Exit::Failure => true,
            Exit::BochsFinished => self.reported_exit() == Some(ReportedExit::Failure),
            Exit::Success | Exit::Abnormal(_) | Exit::Timeout => false,
        }
    }

    /// Panics (keeping the logs) unless the hypervisor reported success.
    ///
    /// # Panics
    /// See above.
    #[track_caller]
    pub fn expect_success(&self) -> &Self {
        if !self.succeeded() {
            self.fail("the hypervisor to report success");
        }
        self
    }

    /// Panics (keeping the logs) unless the hypervisor reported failure (a timeout, a reset or
    /// a crash of the emulator is not the failure a test asks for).
    ///
    /// # Panics
    /// See above.
    #[track_caller]
    pub fn expect_failure(&self) -> &Self {
        if !self.reported_failure() {
            self.fail("the hypervisor to report failure");
        }
        self
    }

    /// Panics (keeping the logs) unless every marker occurs in the serial output, in this
    /// order (each after the end of the previous one's match; several may share a line).
    ///
    /// # Panics
    /// See above.
    #[track_caller]
    pub fn expect_markers(&self, markers: &[&str]) -> &Self {
        if let Err(err) = find_markers_in_order(&self.serial, markers) {
            self.fail(&format!("serial markers {markers:?} in order, but {err}"));
        }
        self
    }

    /// Panics (keeping the logs) if `marker` occurs anywhere in the serial output.
    ///
    /// # Panics
    /// See above.
    #[track_caller]
    pub fn expect_no_marker(&self, marker: &str) -> &Self {
        if self.serial.contains(marker) {
            self.fail(&format!("no {marker:?} in the serial output"));
        }
        self
    }

    /// Keeps the logs, then panics with a message naming `expectation`, how the run ended,
    /// where the logs are and the last 40 serial lines. For checks of a test's own.
    ///
    /// # Panics
    /// Always.
    #[track_caller]
    pub fn fail(&self, expectation: &str) -> ! {
        let kept = match self.keep_logs() {
            Ok(dir) => format!("logs kept in {}", dir.display()),
            Err(err) => {
                self.keep_run_dir.set(true);
                format!(
                    "could not keep logs ({}); run directory left at {}",
                    error_chain(&err),
                    self.run_dir.display()
                )
            }
        };
        let tail = last_lines(&self.serial, TAIL_LINES);
        panic!(
            "{name}: expected {expectation}; the run ended with {exit} after {secs:.1} s\n\
             {kept}\n\
             --- last {TAIL_LINES} serial lines ---\n{tail}\n--- end of serial output ---",
            name = self.test_name,
            exit = self.exit,
            secs = self.duration.as_secs_f64(),
        );
    }

    /// Copies the run's files (serial log, emulator log, command line, Bochs configuration and
    /// log) to `<log root>/<test name>/`, replacing what an earlier run left there, and
    /// returns that directory.
    ///
    /// # Errors
    /// The directory cannot be created or a file cannot be copied.
    pub fn keep_logs(&self) -> Result<PathBuf, HarnessError> {
        self.keep_logs_in(&self.log_root)
    }

    /// Like [`RunOutcome::keep_logs`], under `root` instead of the run's log root.
    ///
    /// # Errors
    /// The directory cannot be created or a file cannot be copied.
    pub fn keep_logs_in(&self, root: &Path) -> Result<PathBuf, HarnessError> {
        let dest = root.join(sanitize(&self.test_name));
        match fs::remove_dir_all(&dest) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(HarnessError::Io { path: dest, source }),
        }
        fs::create_dir_all(&dest).map_err(HarnessError::io(&dest))?;
        let entries = fs::read_dir(&self.run_dir).map_err(HarnessError::io(&self.run_dir))?;
        for entry in entries {
            let entry = entry.map_err(HarnessError::io(&self.run_dir))?;
            let from = entry.path();
            if from.is_file() {
                fs::copy(&from, dest.join(entry.file_name())).map_err(HarnessError::io(&from))?;
            }
        }
        Ok(dest)
    }
}

impl Drop for RunOutcome {
    fn drop(&mut self) {
        if !self.keep_run_dir.get() {
            let _ = fs::remove_dir_all(&self.run_dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::{AssertUnwindSafe, catch_unwind};

    /// An outcome over a real run directory under a scratch root, without an emulator.
    fn outcome(name: &str, exit: Exit, serial: &str) -> (RunOutcome, PathBuf) {
        let root =
            std::env::temp_dir().join(format!("mica-harness-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let run_dir = root.join("run");
        fs::create_dir_all(&run_dir).expect("run dir");
        let mut out = RunOutcome::new(name, run_dir, root.join("logs"));
        fs::write(&out.serial_log, serial).expect("serial");
        fs::write(&out.emulator_log, "emulator says hi\n").expect("emulator log");
        out.exit = exit;
        out.serial = serial.to_owned();
        (out, root)
    }

    fn panic_message(f: impl FnOnce()) -> String {
        let err = catch_unwind(AssertUnwindSafe(f)).expect_err("should panic");
        err.downcast_ref::<String>()
            .cloned()
            .or_else(|| err.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default()
    }

    #[test]
    fn bochs_verdict_comes_from_the_serial_log() {
        let (ok, root) = outcome(
            "bochs_ok",
            Exit::BochsFinished,
            "MICA READY\nMICA EXIT: success\n",
        );
        assert!(ok.succeeded());
        assert!(!ok.reported_failure());
        ok.expect_success().expect_markers(&["MICA READY"]);
        drop(ok);
        let (bad, _) = outcome(
            "bochs_bad",
            Exit::BochsFinished,
            "MICA PANIC: x\nMICA EXIT: failure\n",
        );
        assert!(!bad.succeeded());
        bad.expect_failure();
        let (silent, _) = outcome("bochs_silent", Exit::BochsFinished, "");
        assert!(!silent.succeeded() && !silent.reported_failure());
        let roots = [root, bad.run_dir.join(".."), silent.run_dir.join("..")];
        drop((bad, silent));
        for root in roots {
            let _ = fs::remove_dir_all(root);
        }
    }

    #[test]
    fn a_timeout_is_neither_success_nor_failure() {
        let (out, root) = outcome("timeout", Exit::Timeout, "MICA EXIT: failure\n");
        assert!(!out.succeeded());
        assert!(!out.reported_failure());
        let (qemu_ok, _) = outcome("qemu_ok", Exit::Success, "");
        assert!(qemu_ok.succeeded());
        let roots = [root, qemu_ok.run_dir.join("..")];
        drop((out, qemu_ok));
        for root in roots {
            let _ = fs::remove_dir_all(root);
        }
    }

    #[test]
    fn failed_expectation_keeps_logs_and_quotes_the_tail() {
        let serial: String = (1..=45).map(|i| format!("serial line {i}\n")).collect();
        let (out, root) = outcome("kept", Exit::Abnormal(0), &serial);
        let run_dir = out.run_dir.clone();
        let msg = panic_message(|| {
            out.expect_success();
        });
        let kept = root.join("logs").join("kept");
        assert!(msg.contains(&kept.display().to_string()), "{msg}");
        assert!(msg.contains("abnormal end (status 0)"), "{msg}");
        assert!(msg.contains("serial line 6\n"), "{msg}");
        assert!(!msg.contains("serial line 5\n"), "only 40 lines: {msg}");
        assert_eq!(
            fs::read_to_string(kept.join("serial.log")).expect("kept serial"),
            serial
        );
        assert!(kept.join("emulator.log").is_file());

        let msg = panic_message(|| {
            out.expect_markers(&["serial line 2", "MICA READY"]);
        });
        assert!(msg.contains("\"MICA READY\" not found"), "{msg}");
        let msg = panic_message(|| {
            out.expect_no_marker("serial line 45");
        });
        assert!(msg.contains("no \"serial line 45\""), "{msg}");

        drop(out);
        assert!(
            !run_dir.exists(),
            "the temporary run directory goes with the outcome"
        );
        assert!(kept.join("serial.log").is_file(), "kept logs stay");
        let _ = fs::remove_dir_all(root);
    }
}
