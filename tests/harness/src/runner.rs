//! Starting an emulator, enforcing the timeout, collecting the serial log.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::HarnessError;
use crate::bochs::{BOCHS_DEBUGGER_COMMANDS, BochsConfig};
use crate::outcome::RunOutcome;
use crate::qemu::{QemuConfig, SerialSink};
use crate::verdict::{Exit, judge_qemu_status, normalize_serial};

/// Environment variable naming the directory where logs of failed expectations are kept
/// (`cargo xtask test` sets it to `target/mica/test-logs`).
pub const LOG_DIR_ENV: &str = "MICA_LOG_DIR";

/// How often the harness looks at the emulator while it runs.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Which emulator to run, with its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Emulator {
    /// QEMU (TCG).
    Qemu(QemuConfig),
    /// Bochs.
    Bochs(BochsConfig),
}

impl From<QemuConfig> for Emulator {
    fn from(config: QemuConfig) -> Self {
        Self::Qemu(config)
    }
}

impl From<BochsConfig> for Emulator {
    fn from(config: BochsConfig) -> Self {
        Self::Bochs(config)
    }
}

impl Emulator {
    fn input_files(&self) -> Vec<&Path> {
        match self {
            Self::Qemu(config) => config.input_files(),
            Self::Bochs(config) => config.input_files(),
        }
    }
}

/// Where the serial console goes while the emulator runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Console {
    /// Serial output goes to the run's `serial.log` only; the emulator runs in its own
    /// process group, killed as a whole on timeout. For tests.
    #[default]
    Capture,
    /// Serial output on the caller's terminal as it comes (QEMU: `-serial stdio`, so
    /// [`RunOutcome::serial`] stays empty; Bochs: the serial log is tailed to stdout). The
    /// emulator stays in the caller's process group so Ctrl-C stops it too. For `cargo xtask
    /// run`.
    Terminal,
}

/// Options of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    /// Names the run: the kept log directory is `<log_root>/<test_name>/`.
    pub test_name: String,
    /// The emulator is killed if it has not ended after this long.
    pub timeout: Duration,
    /// Where serial output goes.
    pub console: Console,
    /// Where logs of failed expectations are kept: `$MICA_LOG_DIR`, or
    /// `<temp dir>/mica-test-logs` if it is unset.
    pub log_root: PathBuf,
}

impl RunOptions {
    /// Options for `test_name` with `timeout`, capturing the console, keeping failure logs
    /// under `$MICA_LOG_DIR`.
    pub fn new(test_name: impl Into<String>, timeout: Duration) -> Self {
        let log_root = std::env::var_os(LOG_DIR_ENV)
            .filter(|dir| !dir.is_empty())
            .map_or_else(
                || std::env::temp_dir().join("mica-test-logs"),
                PathBuf::from,
            );
        Self {
            test_name: test_name.into(),
            timeout,
            console: Console::Capture,
            log_root,
        }
    }

    /// Sets where the serial console goes.
    #[must_use]
    pub fn console(mut self, console: Console) -> Self {
        self.console = console;
        self
    }

    /// Sets the directory under which failure logs are kept.
    #[must_use]
    pub fn log_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.log_root = root.into();
        self
    }
}

/// Runs `emulator` for the test `test_name`, capturing the console, and panics if the emulator
/// cannot be started (a missing image or emulator is a broken test setup, not a verdict).
///
/// # Panics
/// When [`try_run`] fails.
pub fn run(test_name: &str, emulator: impl Into<Emulator>, timeout: Duration) -> RunOutcome {
    match try_run(&emulator.into(), &RunOptions::new(test_name, timeout)) {
        Ok(outcome) => outcome,
        Err(err) => panic!("{test_name}: {}", error_chain(&err)),
    }
}

/// Runs `emulator` until it ends or `options.timeout` passes, in a fresh temporary directory.
///
/// # Errors
/// A missing input file, an unusable path, a failure to create the run's files or to start
/// the emulator. How the emulator itself ended is never an error: see [`RunOutcome::exit`].
pub fn try_run(emulator: &Emulator, options: &RunOptions) -> Result<RunOutcome, HarnessError> {
    for file in emulator.input_files() {
        if !file.is_file() {
            return Err(HarnessError::MissingFile(file.to_owned()));
        }
    }
    let run_dir = create_run_dir(&options.test_name)?;
    // From here on the outcome owns the directory (and removes it when dropped), even if
    // starting fails.
    let mut outcome = RunOutcome::new(&options.test_name, run_dir, options.log_root.clone());
    let serial_log = outcome.serial_log.clone();
    let emulator_log = outcome.emulator_log.clone();
    let terminal = options.console == Console::Terminal;

    let mut command = match emulator {
        Emulator::Qemu(config) => {
            let sink = if terminal {
                SerialSink::Stdio
            } else {
                SerialSink::File(serial_log.clone())
            };
            let mut command = Command::new(&config.binary);
            command.args(config.args(&sink)?);
            command
        }
        Emulator::Bochs(config) => {
            let rc_path = outcome.run_dir.join("bochsrc");
            let cmds_path = outcome.run_dir.join("bochs-commands");
            let bochs_log = outcome.run_dir.join("bochs.log");
            let rc = config.bochsrc(&serial_log, &bochs_log)?;
            fs::write(&rc_path, rc).map_err(HarnessError::io(&rc_path))?;
            fs::write(&cmds_path, BOCHS_DEBUGGER_COMMANDS).map_err(HarnessError::io(&cmds_path))?;
            let mut command = Command::new(&config.binary);
            command
                .arg("-q")
                .arg("-f")
                .arg(&rc_path)
                .arg("-rc")
                .arg(&cmds_path);
            command
        }
    };
    command.current_dir(&outcome.run_dir);

    let command_txt = outcome.run_dir.join("command.txt");
    fs::write(&command_txt, format!("{command:?}\n")).map_err(HarnessError::io(&command_txt))?;

    let log = File::create(&emulator_log).map_err(HarnessError::io(&emulator_log))?;
    let log_err = log.try_clone().map_err(HarnessError::io(&emulator_log))?;
    command.stderr(log_err);
    let qemu_on_terminal = terminal && matches!(emulator, Emulator::Qemu(_));
    if qemu_on_terminal {
        command.stdin(Stdio::inherit()).stdout(Stdio::inherit());
    } else {
        command.stdin(Stdio::null()).stdout(log);
    }
    if !terminal {
        // Its own process group, so a timeout kills the emulator and anything it started.
        command.process_group(0);
    }

    let started = Instant::now();
    let mut child = command.spawn().map_err(|source| HarnessError::Spawn {
        program: PathBuf::from(command.get_program()),
        source,
    })?;

    let mut tail = (terminal && !qemu_on_terminal).then(|| SerialTail::new(serial_log.clone()));
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(source) => {
                kill(&mut child, !terminal);
                return Err(HarnessError::Io {
                    path: PathBuf::from(command.get_program()),
                    source,
                });
            }
        }
        if let Some(tail) = tail.as_mut() {
            tail.forward();
        }
        if started.elapsed() >= options.timeout {
            kill(&mut child, !terminal);
            break None;
        }
        std::thread::sleep(POLL_INTERVAL);
    };
    if let Some(tail) = tail.as_mut() {
        tail.forward();
    }
    outcome.duration = started.elapsed();

    outcome.exit = match (status, emulator) {
        (None, _) => Exit::Timeout,
        (Some(_), Emulator::Bochs(_)) => Exit::BochsFinished,
        (Some(status), Emulator::Qemu(_)) => judge_qemu_status(status.code(), status.signal()),
    };
    outcome.serial = match fs::read(&serial_log) {
        Ok(bytes) => normalize_serial(&bytes),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(HarnessError::Io {
                path: serial_log,
                source,
            });
        }
    };
    Ok(outcome)
}

/// Kills the emulator (with its whole process group when it has its own) and reaps it.
fn kill(child: &mut Child, own_group: bool) {
    if own_group {
        // The group id is the child's pid (process_group(0)). `kill` the command keeps this
        // crate free of unsafe FFI; if it fails, `Child::kill` below still ends the emulator.
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", child.id())])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Copies what the emulator adds to the serial log to stdout.
#[derive(Debug)]
struct SerialTail {
    path: PathBuf,
    offset: u64,
}

impl SerialTail {
    fn new(path: PathBuf) -> Self {
        Self { path, offset: 0 }
    }

    fn forward(&mut self) {
        let Ok(mut file) = File::open(&self.path) else {
            return;
        };
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut buf = Vec::new();
        if let Ok(n) = file.read_to_end(&mut buf) {
            self.offset = self.offset.saturating_add(n as u64);
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&buf);
            let _ = out.flush();
        }
    }
}

/// Creates `<temp>/mica-emu-<name>-<pid>-<n>`, unique within and across processes.
fn create_run_dir(test_name: &str) -> Result<PathBuf, HarnessError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = std::env::temp_dir();
    let name = sanitize(test_name);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("mica-emu-{name}-{}-{n}", std::process::id()));
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            // A stale directory of an earlier process with the same pid: take the next number.
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(HarnessError::Io { path: dir, source }),
        }
    }
}

/// A test name as a single, safe path component.
pub(crate) fn sanitize(test_name: &str) -> String {
    let cleaned: String = test_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "unnamed".to_owned()
    } else {
        cleaned
    }
}

/// An error and its sources on one line.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A stand-in for QEMU: a shell script that writes `serial_text` to the `-serial file:`
    /// path it is given, then runs `tail_cmd`.
    fn fake_qemu(dir: &Path, serial_text: &str, tail_cmd: &str) -> PathBuf {
        let script = dir.join("fake-qemu");
        let body = format!(
            "#!/bin/sh\n\
             prev=\nserial=\n\
             for a in \"$@\"; do\n\
               if [ \"$prev\" = -serial ]; then serial=\"${{a#file:}}\"; fi\n\
               prev=\"$a\"\n\
             done\n\
             printf '{serial_text}' > \"$serial\"\n\
             {tail_cmd}\n"
        );
        fs::write(&script, body).expect("write script");
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
        script
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = create_run_dir(name).expect("scratch dir");
        fs::write(dir.join("mica.elf"), b"not really an ELF").expect("image");
        dir
    }

    fn config(dir: &Path, script: PathBuf) -> Emulator {
        let mut config = QemuConfig::kernel(dir.join("mica.elf"), "");
        config.binary = script;
        config.into()
    }

    #[test]
    fn qemu_status_33_with_serial_is_success() {
        let dir = scratch("fake_success");
        let script = fake_qemu(&dir, "\\rMICA READY\\r\\nMICA EXIT: success\\n", "exit 33");
        let options = RunOptions::new("fake_success", Duration::from_secs(60)).log_root(&dir);
        let outcome = try_run(&config(&dir, script), &options).expect("runs");
        assert_eq!(outcome.exit, Exit::Success);
        assert_eq!(outcome.serial, "MICA READY\nMICA EXIT: success\n");
        outcome
            .expect_markers(&["MICA READY", "MICA EXIT: success"])
            .expect_success();
        let run_dir = outcome.run_dir.clone();
        assert!(run_dir.join("command.txt").is_file());
        drop(outcome);
        assert!(!run_dir.exists(), "run dir is removed with the outcome");
        fs::remove_dir_all(dir).expect("cleanup");
    }

    #[test]
    fn qemu_reset_is_abnormal_and_failure_is_failure() {
        let dir = scratch("fake_abnormal");
        let script = fake_qemu(&dir, "booting\\n", "exit 0");
        let options = RunOptions::new("fake_abnormal", Duration::from_secs(60)).log_root(&dir);
        let outcome = try_run(&config(&dir, script), &options).expect("runs");
        assert_eq!(outcome.exit, Exit::Abnormal(0));
        drop(outcome);

        let script = fake_qemu(&dir, "MICA PANIC: x\\nMICA EXIT: failure\\n", "exit 35");
        let outcome = try_run(&config(&dir, script), &options).expect("runs");
        assert_eq!(outcome.exit, Exit::Failure);
        outcome.expect_failure();
        drop(outcome);
        fs::remove_dir_all(dir).expect("cleanup");
    }

    #[test]
    fn timeout_kills_the_whole_process_group() {
        let dir = scratch("fake_timeout");
        let pid_file = dir.join("grandchild.pid");
        // The fake emulator starts a grandchild and waits for it forever.
        let tail = format!("sleep 1000 &\necho $! > '{}'\nwait", pid_file.display());
        let script = fake_qemu(&dir, "stuck\\n", &tail);
        let options = RunOptions::new("fake_timeout", Duration::from_millis(500)).log_root(&dir);
        let outcome = try_run(&config(&dir, script), &options).expect("runs");
        assert_eq!(outcome.exit, Exit::Timeout);
        assert_eq!(outcome.serial, "stuck\n");

        let pid = fs::read_to_string(&pid_file).expect("grandchild pid");
        let stat = Path::new("/proc").join(pid.trim()).join("stat");
        // A SIGKILLed process ends when it is next scheduled, and the reparented grandchild
        // may then stay a zombie until init reaps it: wait (bounded) until it is gone or a
        // zombie.
        let alive = || {
            fs::read_to_string(&stat).is_ok_and(|s| {
                !s.rsplit(')')
                    .next()
                    .is_some_and(|rest| rest.trim_start().starts_with('Z'))
            })
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive() && Instant::now() < deadline {
            std::thread::sleep(POLL_INTERVAL);
        }
        assert!(!alive(), "grandchild {} survived the timeout", pid.trim());
        drop(outcome);
        fs::remove_dir_all(dir).expect("cleanup");
    }

    #[test]
    fn missing_image_and_missing_emulator_are_errors() {
        let err = try_run(
            &QemuConfig::kernel("/nonexistent/mica.elf", "").into(),
            &RunOptions::new("missing", Duration::from_secs(1)),
        )
        .expect_err("missing image");
        assert!(matches!(err, HarnessError::MissingFile(_)));

        let dir = scratch("missing_emulator");
        let emulator = config(&dir, dir.join("no-such-qemu"));
        let err = try_run(&emulator, &RunOptions::new("x", Duration::from_secs(1)))
            .expect_err("missing emulator");
        assert!(matches!(err, HarnessError::Spawn { .. }));
        assert!(error_chain(&err).contains("No such file"));
        fs::remove_dir_all(dir).expect("cleanup");
    }

    #[test]
    fn run_dirs_are_unique_and_names_sanitised() {
        let a = create_run_dir("same").expect("a");
        let b = create_run_dir("same").expect("b");
        assert_ne!(a, b);
        fs::remove_dir(a).expect("cleanup");
        fs::remove_dir(b).expect("cleanup");
        assert_eq!(sanitize("mod::test name/1"), "mod__test_name_1");
        assert_eq!(sanitize(""), "unnamed");
    }
}
