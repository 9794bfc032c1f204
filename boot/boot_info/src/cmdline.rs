//! The hypervisor's command line: space-separated `key=value` options and flags.
//!
//! | option            | meaning                                                        |
//! |-------------------|----------------------------------------------------------------|
//! | `log=LEVEL`       | `error`, `warn`, `info` (default), `debug` or `trace`          |
//! | `pool=SIZE`       | bytes reserved for child partitions; decimal or `0x` hex, with an optional `K`/`M`/`G` suffix (binary units) |
//! | `launch=a,b,...`  | up to 8 partition names to start at boot                       |
//! | `wait=a,b,...`    | the launched partitions whose end ends the run (default: all)  |
//! | `serial=PORT`     | debug UART I/O port (default `0x3f8`)                          |
//! | `test=NAME`       | test-only hook (e.g. `test=fault`)                             |
//!
//! A leading token that looks like a path (contains `/`, no `=`) is the image name some
//! loaders prepend (QEMU `-kernel`, GRUB `multiboot`) and is skipped. Unknown options and
//! flags are collected as [`CmdlineWarning`]s for the hypervisor to log; a malformed value of
//! a known option is a [`CmdlineError`] naming the option. A repeated option overrides the
//! earlier one.

use core::fmt;

use crate::fixed::FixedVec;

/// Most partition names `launch=` accepts.
pub const MAX_LAUNCH: usize = 8;
/// Most warnings kept; further ones are only counted.
pub const MAX_WARNINGS: usize = 8;
/// The serial port used when `serial=` is absent (COM1).
pub const DEFAULT_SERIAL_PORT: u16 = 0x3F8;

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Errors and warnings.
    Warn,
    /// Normal operation messages (default).
    #[default]
    Info,
    /// Debugging detail.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "error" => Self::Error,
            "warn" => Self::Warn,
            "info" => Self::Info,
            "debug" => Self::Debug,
            "trace" => Self::Trace,
            _ => return None,
        })
    }
}

/// What kind of token a warning is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WarningKind {
    /// `key=value` with an unknown key.
    #[default]
    UnknownOption,
    /// A bare word that is not a known flag.
    UnknownFlag,
}

/// A token the parser ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CmdlineWarning<'a> {
    /// Unknown option or unknown flag.
    pub kind: WarningKind,
    /// The whole token as written.
    pub token: &'a str,
}

impl fmt::Display for CmdlineWarning<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            WarningKind::UnknownOption => {
                write!(f, "Unknown command line option '{}' ignored", self.token)
            }
            WarningKind::UnknownFlag => {
                write!(f, "Unknown command line flag '{}' ignored", self.token)
            }
        }
    }
}

/// What is wrong with an option's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ValueProblem {
    /// Nothing after `=`.
    #[error("empty value")]
    Empty,
    /// Not a decimal or `0x` hex number (with an optional suffix where allowed).
    #[error("not a number")]
    NotANumber,
    /// The number does not fit.
    #[error("number too large")]
    TooLarge,
    /// Not one of the log levels.
    #[error("unknown log level (expected error, warn, info, debug or trace)")]
    UnknownLogLevel,
    /// More names than [`MAX_LAUNCH`].
    #[error("more than 8 names")]
    TooManyNames,
    /// An empty name in a comma-separated list.
    #[error("empty name in list")]
    EmptyName,
    /// A name with characters other than letters, digits, `-`, `_` and `.`.
    #[error("names may only contain letters, digits, '-', '_' and '.'")]
    BadName,
}

/// A known option with a malformed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Command line option {key}={value}: {problem}")]
pub struct CmdlineError<'a> {
    /// The option's key.
    pub key: &'static str,
    /// The value as written.
    pub value: &'a str,
    /// What is wrong with it.
    pub problem: ValueProblem,
}

/// The decoded hypervisor command line; strings borrow from the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HvCmdline<'a> {
    /// `log=`.
    pub log_level: LogLevel,
    /// `pool=`, in bytes.
    pub child_pool: Option<u64>,
    /// `launch=`, in the order given.
    pub launch: FixedVec<&'a str, MAX_LAUNCH>,
    /// `wait=`: the launched partitions whose end ends the run; the others are stopped then
    /// (empty: wait for all of them).
    pub wait: FixedVec<&'a str, MAX_LAUNCH>,
    /// `serial=`.
    pub serial_port: u16,
    /// `test=`.
    pub test: Option<&'a str>,
    /// Ignored tokens, in order (at most [`MAX_WARNINGS`]).
    pub warnings: FixedVec<CmdlineWarning<'a>, MAX_WARNINGS>,
    /// Ignored tokens beyond [`MAX_WARNINGS`].
    pub dropped_warnings: usize,
}

impl Default for HvCmdline<'_> {
    fn default() -> Self {
        Self {
            log_level: LogLevel::default(),
            child_pool: None,
            launch: FixedVec::new(),
            wait: FixedVec::new(),
            serial_port: DEFAULT_SERIAL_PORT,
            test: None,
            warnings: FixedVec::new(),
            dropped_warnings: 0,
        }
    }
}

impl<'a> HvCmdline<'a> {
    fn warn(&mut self, kind: WarningKind, token: &'a str) {
        if self.warnings.push(CmdlineWarning { kind, token }).is_err() {
            self.dropped_warnings = self.dropped_warnings.saturating_add(1);
        }
    }
}

/// Parses the hypervisor command line.
pub fn parse(line: &str) -> Result<HvCmdline<'_>, CmdlineError<'_>> {
    let mut out = HvCmdline::default();
    let mut tokens = line.split_ascii_whitespace().peekable();
    if let Some(first) = tokens.peek()
        && first.contains('/')
        && !first.contains('=')
    {
        tokens.next();
    }
    for token in tokens {
        let Some((key, value)) = token.split_once('=') else {
            out.warn(WarningKind::UnknownFlag, token);
            continue;
        };
        match key {
            "log" => {
                let level = LogLevel::from_name(value).ok_or(ValueProblem::UnknownLogLevel);
                out.log_level = level.map_err(|p| err("log", value, p))?;
            }
            "pool" => out.child_pool = Some(parse_size(value).map_err(|p| err("pool", value, p))?),
            "serial" => {
                let port = parse_number(value)
                    .and_then(|n| u16::try_from(n).map_err(|_| ValueProblem::TooLarge));
                out.serial_port = port.map_err(|p| err("serial", value, p))?;
            }
            "launch" => out.launch = parse_names(value).map_err(|p| err("launch", value, p))?,
            "wait" => out.wait = parse_names(value).map_err(|p| err("wait", value, p))?,
            "test" => {
                check_name(value).map_err(|p| err("test", value, p))?;
                out.test = Some(value);
            }
            _ => out.warn(WarningKind::UnknownOption, token),
        }
    }
    Ok(out)
}

fn err<'a>(key: &'static str, value: &'a str, problem: ValueProblem) -> CmdlineError<'a> {
    CmdlineError {
        key,
        value,
        problem,
    }
}

/// Decimal or `0x`/`0X` hexadecimal, digits only (no sign, no separators).
fn parse_number(s: &str) -> Result<u64, ValueProblem> {
    if s.is_empty() {
        return Err(ValueProblem::Empty);
    }
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (s, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(ValueProblem::NotANumber);
    }
    // Only digits remain, so the only possible failure is overflow.
    u64::from_str_radix(digits, radix).map_err(|_| ValueProblem::TooLarge)
}

/// A number with an optional binary-unit suffix `K`, `M` or `G` (either case).
fn parse_size(s: &str) -> Result<u64, ValueProblem> {
    let (number, shift) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (s.get(..s.len() - 1), 10),
        Some(b'M' | b'm') => (s.get(..s.len() - 1), 20),
        Some(b'G' | b'g') => (s.get(..s.len() - 1), 30),
        _ => (Some(s), 0),
    };
    let number = number.ok_or(ValueProblem::NotANumber)?;
    if number.is_empty() && shift != 0 {
        return Err(ValueProblem::NotANumber);
    }
    let n = parse_number(number)?;
    n.checked_mul(1u64 << shift).ok_or(ValueProblem::TooLarge)
}

fn check_name(name: &str) -> Result<(), ValueProblem> {
    if name.is_empty() {
        return Err(ValueProblem::EmptyName);
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(ValueProblem::BadName);
    }
    Ok(())
}

fn parse_names(list: &str) -> Result<FixedVec<&str, MAX_LAUNCH>, ValueProblem> {
    if list.is_empty() {
        return Err(ValueProblem::Empty);
    }
    let mut names = FixedVec::new();
    for name in list.split(',') {
        check_name(name)?;
        names.push(name).map_err(|_| ValueProblem::TooManyNames)?;
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_line_gives_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.log_level, LogLevel::Info);
        assert_eq!(c.child_pool, None);
        assert!(c.launch.is_empty());
        assert_eq!(c.serial_port, 0x3F8);
        assert_eq!(c.test, None);
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn all_options_decode() {
        let c = parse("  log=debug pool=64M launch=root,guest-1 serial=0x2f8 test=fault ").unwrap();
        assert_eq!(c.log_level, LogLevel::Debug);
        assert_eq!(c.child_pool, Some(64 << 20));
        assert_eq!(c.launch.as_slice(), &["root", "guest-1"]);
        assert!(c.wait.is_empty());
        assert_eq!(c.serial_port, 0x2F8);
        assert_eq!(c.test, Some("fault"));
        assert!(c.warnings.is_empty());
        let c = parse("launch=spin,hello wait=hello").unwrap();
        assert_eq!(c.wait.as_slice(), &["hello"]);
    }

    #[test]
    fn sizes_accept_suffixes_and_hex() {
        assert_eq!(parse("pool=4096").unwrap().child_pool, Some(4096));
        assert_eq!(parse("pool=16k").unwrap().child_pool, Some(16 << 10));
        assert_eq!(parse("pool=2G").unwrap().child_pool, Some(2 << 30));
        assert_eq!(parse("pool=0x1000").unwrap().child_pool, Some(0x1000));
        assert_eq!(parse("pool=0x10M").unwrap().child_pool, Some(16 << 20));
        assert_eq!(parse("serial=760").unwrap().serial_port, 760);
    }

    #[test]
    fn image_path_first_token_is_skipped() {
        let c = parse("/boot/mica.elf log=warn").unwrap();
        assert_eq!(c.log_level, LogLevel::Warn);
        assert!(c.warnings.is_empty());
        // Only in first position.
        let c = parse("log=warn /boot/mica.elf").unwrap();
        assert_eq!(
            c.warnings.as_slice(),
            &[CmdlineWarning {
                kind: WarningKind::UnknownFlag,
                token: "/boot/mica.elf"
            }]
        );
    }

    #[test]
    fn unknown_tokens_become_warnings_not_errors() {
        let c = parse("quiet colour=blue log=trace").unwrap();
        assert_eq!(c.log_level, LogLevel::Trace);
        assert_eq!(
            c.warnings.as_slice(),
            &[
                CmdlineWarning {
                    kind: WarningKind::UnknownFlag,
                    token: "quiet"
                },
                CmdlineWarning {
                    kind: WarningKind::UnknownOption,
                    token: "colour=blue"
                },
            ]
        );
        assert_eq!(
            c.warnings[1].to_string(),
            "Unknown command line option 'colour=blue' ignored"
        );
    }

    #[test]
    fn warnings_beyond_capacity_are_counted() {
        let c = parse("a b c d e f g h i j").unwrap();
        assert_eq!(c.warnings.len(), MAX_WARNINGS);
        assert_eq!(c.dropped_warnings, 2);
        assert_eq!(c.warnings[7].token, "h");
    }

    #[test]
    fn later_option_overrides_earlier() {
        let c = parse("log=error log=info launch=a launch=b,c").unwrap();
        assert_eq!(c.log_level, LogLevel::Info);
        assert_eq!(c.launch.as_slice(), &["b", "c"]);
    }

    fn problem(line: &str) -> (&'static str, ValueProblem) {
        let e = parse(line).unwrap_err();
        (e.key, e.problem)
    }

    #[test]
    fn malformed_values_name_their_option() {
        assert_eq!(problem("log=loud"), ("log", ValueProblem::UnknownLogLevel));
        assert_eq!(problem("pool="), ("pool", ValueProblem::Empty));
        assert_eq!(problem("pool=M"), ("pool", ValueProblem::NotANumber));
        assert_eq!(problem("pool=12T"), ("pool", ValueProblem::NotANumber));
        assert_eq!(problem("pool=-5"), ("pool", ValueProblem::NotANumber));
        assert_eq!(problem("pool=+5"), ("pool", ValueProblem::NotANumber));
        assert_eq!(problem("pool=0x"), ("pool", ValueProblem::NotANumber));
        assert_eq!(
            problem("pool=0xfffffffffffffffff"),
            ("pool", ValueProblem::TooLarge)
        );
        assert_eq!(
            problem("pool=17179869184G"),
            ("pool", ValueProblem::TooLarge)
        );
        assert_eq!(
            problem("serial=0x10000"),
            ("serial", ValueProblem::TooLarge)
        );
        assert_eq!(problem("serial=com1"), ("serial", ValueProblem::NotANumber));
        assert_eq!(problem("launch="), ("launch", ValueProblem::Empty));
        assert_eq!(problem("launch=a,,b"), ("launch", ValueProblem::EmptyName));
        assert_eq!(
            problem("launch=a,b,c,d,e,f,g,h,i"),
            ("launch", ValueProblem::TooManyNames)
        );
        assert_eq!(problem("launch=a;rm"), ("launch", ValueProblem::BadName));
        assert_eq!(problem("test="), ("test", ValueProblem::EmptyName));
    }

    #[test]
    fn error_message_reads_well() {
        let e = parse("pool=lots").unwrap_err();
        assert_eq!(e.to_string(), "Command line option pool=lots: not a number");
    }

    #[test]
    fn eight_launch_names_fit() {
        let c = parse("launch=a,b,c,d,e,f,g,h").unwrap();
        assert_eq!(c.launch.len(), 8);
    }
}
