//! Running programs. Every command is echoed (`==> ...`) before it runs, so a log shows
//! exactly what to re-run by hand.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// An xtask failure: a message for the person at the terminal.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(pub String);

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Returns early with an [`Error`] built like `format!`.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::process::Error(format!($($arg)*)))
    };
}
pub(crate) use bail;

impl From<emu_harness::HarnessError> for Error {
    fn from(err: emu_harness::HarnessError) -> Self {
        Self(chain(&err))
    }
}

/// An error and its sources on one line.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Attaches the path to an I/O error.
pub fn io_err(what: &str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    let what = what.to_owned();
    move |err| Error(format!("Cannot {what} {}: {err}", path.display()))
}

/// `cargo`: the one that started xtask (`$CARGO`), so nested builds use the same toolchain.
pub fn cargo() -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(program);
    command.current_dir(crate::workspace::root());
    command
}

/// The command as a shell-like line: environment overrides, program, arguments.
pub fn display(command: &Command) -> String {
    let mut words: Vec<String> = command
        .get_envs()
        .filter_map(|(key, value)| value.map(|v| format!("{}={}", key.to_string_lossy(), quote(v))))
        .collect();
    let program = PathBuf::from(command.get_program());
    // `$CARGO` is a full path into the toolchain; `cargo` reads better and means the same.
    let name = match program.file_name() {
        Some(file) if file == "cargo" => "cargo".to_owned(),
        _ => program.display().to_string(),
    };
    words.push(name);
    words.extend(command.get_args().map(quote));
    words.join(" ")
}

fn quote(word: &OsStr) -> String {
    let text = word.to_string_lossy();
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=.,/:+@%".contains(c));
    if plain {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

fn echo(command: &Command) {
    eprintln!("==> {}", display(command));
}

/// Runs `command` with inherited stdio; a non-zero exit is an error naming the command.
pub fn run(command: &mut Command) -> Result<()> {
    echo(command);
    let status = command
        .status()
        .map_err(|err| Error(format!("Cannot start `{}`: {err}", display(command))))?;
    if status.success() {
        Ok(())
    } else {
        bail!("`{}` failed ({status})", display(command))
    }
}

/// Runs `command` quietly and returns its stdout; on failure the error holds its stderr.
pub fn output(command: &mut Command) -> Result<String> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|err| Error(format!("Cannot start `{}`: {err}", display(command))))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        bail!(
            "`{}` failed ({}):\n{}{}",
            display(command),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

/// Whether `command` runs and exits with status 0 (output discarded).
pub fn succeeds(command: &mut Command) -> bool {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_what_a_shell_would_split() {
        let mut command = Command::new("/usr/bin/cargo");
        command
            .env("RUSTFLAGS", "--cfg loom")
            .args(["test", "-p", "ring", "--", "it's"]);
        assert_eq!(
            display(&command),
            "RUSTFLAGS='--cfg loom' cargo test -p ring -- 'it'\\''s'"
        );
        let plain = Command::new("grub-mkrescue");
        assert_eq!(display(&plain), "grub-mkrescue");
    }

    #[test]
    fn failures_name_the_command() {
        let err = run(Command::new("false").arg("x")).expect_err("false fails");
        assert!(err.0.starts_with("`false x` failed"), "{err}");
        let err =
            output(Command::new("sh").args(["-c", "echo oops >&2; exit 3"])).expect_err("exit 3");
        assert!(err.0.contains("oops"), "{err}");
        assert_eq!(
            output(Command::new("sh").args(["-c", "echo hi"])).expect("ok"),
            "hi\n"
        );
        assert!(succeeds(&mut Command::new("true")));
        assert!(!succeeds(&mut Command::new("/nonexistent/program")));
    }
}
