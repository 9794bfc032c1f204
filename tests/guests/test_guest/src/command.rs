//! The argument string of the test guest: its first word selects the scenario, the rest
//! are that scenario's numbers (decimal or `0x` hexadecimal).

use core::fmt;

use guest_rt::args::{NumberError, parse_u64};

/// Default passes of `memory-pattern`.
pub const DEFAULT_PASSES: u64 = 10;
/// Default calls of `fuzz-hypercalls`.
pub const DEFAULT_FUZZ_CALLS: u64 = 100_000;
/// Default seed of `fuzz-hypercalls`.
pub const DEFAULT_FUZZ_SEED: u64 = 1;
/// Default iterations of the benchmarks.
pub const DEFAULT_ITERATIONS: u64 = 10_000;
/// Default spin iterations of `fpu-check` (several time slices under QEMU and Bochs).
const DEFAULT_FPU_SPINS: u64 = 20_000_000;

/// What the guest does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `hello`: greeting, one debug-output call, one fast NotifyLongSpinWait.
    Hello,
    /// `hypercall-errors`: each invalid-input class returns its TLFS status.
    HypercallErrors,
    /// `memory-pattern [N]`: fill free RAM with a partition-specific pattern, verify it
    /// `N` times.
    MemoryPattern {
        /// Verification passes.
        passes: u64,
    },
    /// `touch-outside [ADDR]`: read then write `ADDR` (default: the first byte beyond
    /// RAM); the hypervisor must stop the guest.
    TouchOutside {
        /// The GPA to touch (`None`: `ram_size`).
        addr: Option<u64>,
    },
    /// `triple-fault`: empty IDT, then INT3.
    TripleFault,
    /// `spin`: spin forever.
    Spin,
    /// `fuzz-hypercalls [N [SEED]]`: `N` random hypercalls.
    FuzzHypercalls {
        /// Number of calls.
        count: u64,
        /// PRNG seed.
        seed: u64,
    },
    /// `bench-null-hypercall [N]`: `N` fast NotifyLongSpinWait calls, timed.
    BenchNullHypercall {
        /// Iterations.
        iterations: u64,
    },
    /// `bench-ioio [N]`: `N` NUL bytes to the console port, timed.
    BenchIoio {
        /// Iterations.
        iterations: u64,
    },
    /// `first-instruction`: report the TSC read by the first instruction.
    FirstInstruction,
    /// `fpu-check [N]`: fill XMM0-15 with a pattern of this partition, spin `N` loop
    /// iterations (long enough to be preempted), check the registers are unchanged.
    FpuCheck {
        /// Spin iterations.
        iterations: u64,
    },
}

/// Why the argument string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgsError<'a> {
    /// No words at all.
    Empty,
    /// The first word names no scenario.
    UnknownCommand(&'a str),
    /// A number did not parse.
    BadNumber {
        /// The word.
        word: &'a str,
        /// Why.
        error: NumberError,
    },
    /// More words than the scenario takes.
    TooManyArguments(&'a str),
}

impl fmt::Display for ArgsError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty argument string"),
            Self::UnknownCommand(word) => write!(f, "unknown command {word:?}"),
            Self::BadNumber { word, error } => write!(f, "{word:?}: {error}"),
            Self::TooManyArguments(word) => write!(f, "unexpected argument {word:?}"),
        }
    }
}

impl Command {
    /// Parses an argument string.
    ///
    /// # Errors
    /// [`ArgsError`].
    pub fn parse(args: &str) -> Result<Self, ArgsError<'_>> {
        let mut words = args.split_ascii_whitespace();
        let name = words.next().ok_or(ArgsError::Empty)?;
        let command = match name {
            "hello" => Self::Hello,
            "hypercall-errors" => Self::HypercallErrors,
            "memory-pattern" => Self::MemoryPattern {
                passes: next_number(&mut words)?.unwrap_or(DEFAULT_PASSES),
            },
            "touch-outside" => Self::TouchOutside {
                addr: next_number(&mut words)?,
            },
            "triple-fault" => Self::TripleFault,
            "spin" => Self::Spin,
            "fuzz-hypercalls" => {
                let count = next_number(&mut words)?.unwrap_or(DEFAULT_FUZZ_CALLS);
                let seed = next_number(&mut words)?.unwrap_or(DEFAULT_FUZZ_SEED);
                Self::FuzzHypercalls { count, seed }
            }
            "bench-null-hypercall" => Self::BenchNullHypercall {
                iterations: next_number(&mut words)?.unwrap_or(DEFAULT_ITERATIONS),
            },
            "bench-ioio" => Self::BenchIoio {
                iterations: next_number(&mut words)?.unwrap_or(DEFAULT_ITERATIONS),
            },
            "first-instruction" => Self::FirstInstruction,
            "fpu-check" => Self::FpuCheck {
                iterations: next_number(&mut words)?.unwrap_or(DEFAULT_FPU_SPINS),
            },
            other => return Err(ArgsError::UnknownCommand(other)),
        };
        match words.next() {
            Some(extra) => Err(ArgsError::TooManyArguments(extra)),
            None => Ok(command),
        }
    }

    /// The scenario's name, as in `GUEST PASS <name>`.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Hello => "hello",
            Self::HypercallErrors => "hypercall-errors",
            Self::MemoryPattern { .. } => "memory-pattern",
            Self::TouchOutside { .. } => "touch-outside",
            Self::TripleFault => "triple-fault",
            Self::Spin => "spin",
            Self::FuzzHypercalls { .. } => "fuzz-hypercalls",
            Self::BenchNullHypercall { .. } => "bench-null-hypercall",
            Self::BenchIoio { .. } => "bench-ioio",
            Self::FirstInstruction => "first-instruction",
            Self::FpuCheck { .. } => "fpu-check",
        }
    }
}

/// The next word as a number, if there is one.
fn next_number<'a>(
    words: &mut impl Iterator<Item = &'a str>,
) -> Result<Option<u64>, ArgsError<'a>> {
    words
        .next()
        .map(|word| parse_u64(word).map_err(|error| ArgsError::BadNumber { word, error }))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_parses_with_and_without_numbers() {
        let cases = [
            ("hello", Command::Hello),
            ("  hypercall-errors  ", Command::HypercallErrors),
            ("memory-pattern", Command::MemoryPattern { passes: 10 }),
            ("memory-pattern 3", Command::MemoryPattern { passes: 3 }),
            ("touch-outside", Command::TouchOutside { addr: None }),
            (
                "touch-outside 0x100000",
                Command::TouchOutside {
                    addr: Some(0x10_0000),
                },
            ),
            ("triple-fault", Command::TripleFault),
            ("spin", Command::Spin),
            (
                "fuzz-hypercalls",
                Command::FuzzHypercalls {
                    count: 100_000,
                    seed: 1,
                },
            ),
            (
                "fuzz-hypercalls 50000 0xdead",
                Command::FuzzHypercalls {
                    count: 50_000,
                    seed: 0xDEAD,
                },
            ),
            (
                "bench-null-hypercall 1000",
                Command::BenchNullHypercall { iterations: 1000 },
            ),
            ("bench-ioio", Command::BenchIoio { iterations: 10_000 }),
            ("first-instruction", Command::FirstInstruction),
            ("fpu-check 5", Command::FpuCheck { iterations: 5 }),
        ];
        for (text, expected) in cases {
            let command = Command::parse(text).unwrap();
            assert_eq!(command, expected, "{text:?}");
            assert_eq!(command.name(), text.split_whitespace().next().unwrap());
        }
    }

    #[test]
    fn bad_argument_strings_are_refused() {
        assert_eq!(Command::parse(""), Err(ArgsError::Empty));
        assert_eq!(Command::parse(" \t "), Err(ArgsError::Empty));
        assert_eq!(
            Command::parse("hullo"),
            Err(ArgsError::UnknownCommand("hullo"))
        );
        assert_eq!(
            Command::parse("memory-pattern ten"),
            Err(ArgsError::BadNumber {
                word: "ten",
                error: NumberError::Invalid
            })
        );
        assert_eq!(
            Command::parse("bench-ioio 99999999999999999999"),
            Err(ArgsError::BadNumber {
                word: "99999999999999999999",
                error: NumberError::Overflow
            })
        );
        assert_eq!(
            Command::parse("hello world"),
            Err(ArgsError::TooManyArguments("world"))
        );
        assert_eq!(
            Command::parse("fuzz-hypercalls 1 2 3"),
            Err(ArgsError::TooManyArguments("3"))
        );
    }
}
