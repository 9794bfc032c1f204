//! `cargo xtask`: Mica's entry point for building, running, testing, fuzzing, benchmarking
//! and CI (matklad's xtask convention: plain Rust instead of shell scripts).

#![forbid(unsafe_code)]

mod bench;
mod ci;
mod emulate;
mod fuzz;
mod images;
mod process;
mod root_image;
mod testing;
mod tools;
mod workspace;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Mica's build, run, test, fuzz, bench and CI tasks.
///
/// Images land in target/mica/ (mica.elf, mica.iso, mica-test.elf, mica-test.iso). Every
/// command first installs what it needs: Debian packages (QEMU, Bochs, GRUB tools; via
/// apt-get as root or `sudo -n`), the x86_64-unknown-none rustup target, cargo-fuzz.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the hypervisor images: mica.elf and mica-test.elf (--features test-hooks),
    /// each checked with grub-file for Multiboot1 and Multiboot2, and their GRUB ISOs; then
    /// the root partition (Debian's kernel, an initramfs with busybox, rootd, hvctl and the
    /// test guest) and mica-root.iso.
    Build {
        /// Debug build instead of release.
        #[arg(long)]
        debug: bool,
        /// Also write target/mica/mica-smoke.iso: boots Mica and its Linux root, which runs
        /// the smoke test unattended, prints `MICA-SMOKE: PASS` (or `FAIL <reason>`) on the
        /// serial console and powers off.
        #[arg(long)]
        smoke: bool,
    },
    /// Build, then boot in QEMU or Bochs with the serial console on this terminal.
    ///
    /// Examples: `cargo xtask run`; `cargo xtask run --iso`; `cargo xtask run --emulator
    /// bochs --bochs-model ryzen`; `cargo xtask run --test-image --cmdline test=fault`.
    Run(emulate::RunArgs),
    /// Run the tests: host unit tests, loom models and a fuzz smoke run, then the emulator
    /// tests against freshly built images (failure logs in target/mica/test-logs/).
    Test(testing::TestArgs),
    /// Run the cargo-fuzz targets (projects in */fuzz and */*/fuzz) for a bounded time.
    /// A crash fails the command and names the artifact.
    Fuzz(fuzz::FuzzArgs),
    /// Run a benchmark.
    Bench {
        #[command(subcommand)]
        bench: bench::Bench,
    },
    /// Everything CI checks: fmt, clippy (host and bare metal), then all that `test` runs;
    /// prints a summary table.
    Ci,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Build { debug, smoke } => images::build(*debug).and_then(|images| {
            let root = images::build_root(&images, *smoke)?;
            if *smoke {
                println!(
                    "smoke test image: {} (boot it on the machine to check, or try it here \
                     with `cargo xtask run --smoke`); it ends with MICA-SMOKE: PASS",
                    root.smoke_iso.display()
                );
            }
            Ok(())
        }),
        Command::Run(args) => emulate::run(args),
        Command::Test(args) => testing::run(args),
        Command::Fuzz(args) => fuzz::run(args),
        Command::Bench { bench } => bench::run(bench),
        Command::Ci => ci::run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_and_bench_arguments_parse() {
        let cli = Cli::try_parse_from([
            "cargo xtask",
            "run",
            "--emulator",
            "bochs",
            "--bochs-model",
            "corei7_skylake_x",
            "--cmdline",
            "test=fault",
            "--timeout",
            "30",
        ])
        .expect("valid run");
        let Command::Run(args) = cli.command else {
            panic!("not run: {cli:?}");
        };
        assert_eq!(args.emulator, emulate::EmulatorKind::Bochs);
        assert_eq!(args.bochs_model, Some(emulate::BochsModel::CoreI7SkylakeX));
        assert_eq!(args.cmdline, "test=fault");
        assert_eq!(args.timeout, Some(30));

        let cli = Cli::try_parse_from(["cargo xtask", "bench", "vmbus", "--", "--size", "4096"])
            .expect("valid bench");
        let Command::Bench {
            bench: bench::Bench::Vmbus { args },
        } = cli.command
        else {
            panic!("not bench vmbus: {cli:?}");
        };
        assert_eq!(args, ["--size", "4096"]);

        assert!(Cli::try_parse_from(["cargo xtask", "run", "--emulator", "vbox"]).is_err());
    }
}
