//! `cargo xtask run`: build, then boot in QEMU or Bochs with the serial console on the terminal.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use emu_harness::{
    BochsConfig, BochsCpu, Console, Emulator, QemuConfig, ReportedExit, RunOptions, try_run,
};

use crate::images;
use crate::process::{self, Result, bail};
use crate::tools::{self, Need};
use crate::workspace;

/// Which emulator `run` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EmulatorKind {
    /// QEMU under TCG: AMD SVM with NPT (no NRIP-save).
    Qemu,
    /// Bochs: Intel VMX with EPT (corei7_skylake_x) or AMD SVM with NPT and NRIP-save (ryzen).
    Bochs,
}

/// Bochs CPU models, as clap values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BochsModel {
    /// AMD: SVM, NPT, NRIP-save.
    #[value(name = "ryzen")]
    Ryzen,
    /// Intel: VMX, EPT, VPID, unrestricted guest.
    #[value(name = "corei7_skylake_x")]
    CoreI7SkylakeX,
}

impl From<BochsModel> for BochsCpu {
    fn from(model: BochsModel) -> Self {
        match model {
            BochsModel::Ryzen => Self::Ryzen,
            BochsModel::CoreI7SkylakeX => Self::CoreI7SkylakeX,
        }
    }
}

/// Arguments of `cargo xtask run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Emulator to boot in.
    #[arg(long, value_enum, default_value_t = EmulatorKind::Qemu)]
    pub emulator: EmulatorKind,
    /// QEMU CPU model (QEMU only; EPYC has SVM with NPT under TCG).
    #[arg(long, value_name = "MODEL")]
    pub cpu: Option<String>,
    /// Bochs CPU model (Bochs only).
    #[arg(long, value_enum, value_name = "MODEL")]
    pub bochs_model: Option<BochsModel>,
    /// QEMU: boot the GRUB ISO (Multiboot2) instead of `-kernel` (Multiboot1). Bochs always
    /// boots the ISO.
    #[arg(long)]
    pub iso: bool,
    /// Hypervisor command line (e.g. `test=fault` with --test-image).
    #[arg(long, value_name = "STR", default_value = "")]
    pub cmdline: String,
    /// A child partition to launch, as `LABEL=ARGS` (the test guest with that argument
    /// string, e.g. `--guest 'demo=memory-pattern 5'`); repeatable. Without any, QEMU and Bochs
    /// `ryzen` launch a small demo (`hello` and `memory-pattern`); Intel models launch none
    /// (the VMX backend is not written yet).
    #[arg(long, value_name = "LABEL=ARGS")]
    pub guest: Vec<String>,
    /// Launch no partitions (just bring the hypervisor up and shut down).
    #[arg(long, conflicts_with = "guest")]
    pub no_guests: bool,
    /// Boot without the Linux root partition: the hypervisor launches test guests itself
    /// (`--guest`, or the demo). Implied by `--guest`, `--no-guests`, `--test-image` and Bochs.
    #[arg(long)]
    pub no_root: bool,
    /// Boot the unattended smoke test (mica-smoke.iso's stack): the root runs it, prints
    /// MICA-SMOKE: PASS or FAIL, and powers off.
    #[arg(long, conflicts_with_all = ["guest", "no_guests", "no_root", "test_image"])]
    pub smoke: bool,
    /// Kill the emulator after this many seconds [default: 90 for QEMU, 240 for Bochs].
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Boot the test image (built with `--features test-hooks`).
    #[arg(long)]
    pub test_image: bool,
    /// Use the debug build.
    #[arg(long)]
    pub debug: bool,
}

/// The demo partitions `run` launches when no `--guest` is given (SVM CPUs only).
const DEMO_GUESTS: [(&str, &str); 2] = [("hello", "hello"), ("pattern", "memory-pattern 5")];

/// The partitions to launch: `--guest LABEL=ARGS` values, or the demo.
fn guests(args: &RunArgs, svm: bool) -> Result<Vec<(String, String)>> {
    if args.no_guests {
        return Ok(Vec::new());
    }
    if args.guest.is_empty() {
        if !svm {
            eprintln!(
                "note: no partitions launched: this CPU model has Intel VMX, whose backend is not written yet"
            );
            return Ok(Vec::new());
        }
        return Ok(DEMO_GUESTS
            .iter()
            .map(|(label, guest_args)| ((*label).to_owned(), (*guest_args).to_owned()))
            .collect());
    }
    args.guest
        .iter()
        .map(|spec| match spec.split_once('=') {
            Some((label, guest_args)) if !label.is_empty() && !label.contains(',') => {
                Ok((label.to_owned(), guest_args.to_owned()))
            }
            _ => bail!(
                "--guest takes LABEL=ARGS (e.g. --guest 'demo=memory-pattern 5'), got {spec:?}"
            ),
        })
        .collect()
}

/// Default QEMU CPU model.
pub const DEFAULT_QEMU_CPU: &str = "EPYC";
/// Default QEMU timeout.
pub const QEMU_TIMEOUT_SECS: u64 = 90;
/// Default Bochs timeout.
pub const BOCHS_TIMEOUT_SECS: u64 = 240;

/// Builds, boots, prints how the run ended; an error unless the hypervisor reported success.
pub fn run(args: &RunArgs) -> Result<()> {
    match args.emulator {
        EmulatorKind::Qemu if args.bochs_model.is_some() => {
            bail!("--bochs-model needs --emulator bochs")
        }
        EmulatorKind::Bochs if args.cpu.is_some() => {
            bail!("--cpu is for QEMU; use --bochs-model with Bochs")
        }
        _ => {}
    }
    let built = images::build(args.debug)?;
    let with_root = args.emulator == EmulatorKind::Qemu
        && !args.no_root
        && args.guest.is_empty()
        && !args.no_guests
        && !args.test_image;
    if with_root {
        return run_root(args, &built);
    }
    let (elf, prebuilt_iso) = if args.test_image {
        (built.test_elf, built.test_iso)
    } else {
        (built.elf, built.iso)
    };
    let svm = match args.emulator {
        EmulatorKind::Qemu => true,
        EmulatorKind::Bochs => args.bochs_model == Some(BochsModel::Ryzen),
    };
    let guests = guests(args, svm)?;
    let mut cmdline = args.cmdline.clone();
    if !guests.is_empty() && !cmdline.split_whitespace().any(|w| w.starts_with("launch=")) {
        let labels: Vec<&str> = guests.iter().map(|(label, _)| label.as_str()).collect();
        cmdline = format!("{cmdline} launch={}", labels.join(","))
            .trim()
            .to_owned();
    }
    let modules: Vec<(PathBuf, String)> = guests
        .iter()
        .map(|(label, guest_args)| (built.test_guest.clone(), format!("{label} {guest_args}")))
        .collect();
    let wants_iso = args.iso || args.emulator == EmulatorKind::Bochs;
    let iso = if wants_iso && (!cmdline.is_empty() || !modules.is_empty()) {
        // The prebuilt ISOs have an empty command line and no modules: make one.
        let custom = workspace::artifacts_dir().join("mica-run.iso");
        let mut spec = emu_harness::IsoSpec::new(&elf, &cmdline);
        for (file, module_cmdline) in &modules {
            spec = spec.module(file, module_cmdline);
        }
        spec.write(&custom)
            .map_err(|err| process::Error(format!("Cannot make {}: {err}", custom.display())))?;
        custom
    } else {
        prebuilt_iso
    };
    if !guests.is_empty() {
        eprintln!("==> launching {} partition(s): {cmdline}", guests.len());
    }

    let (emulator, default_timeout): (Emulator, u64) = match args.emulator {
        EmulatorKind::Qemu => {
            tools::ensure_packages(&[Need::Qemu])?;
            let config = if args.iso {
                QemuConfig::iso(iso)
            } else {
                let mut config = QemuConfig::kernel(elf, cmdline.clone());
                for (file, module_cmdline) in &modules {
                    config = config.module(file, module_cmdline);
                }
                config
            };
            let cpu = args.cpu.as_deref().unwrap_or(DEFAULT_QEMU_CPU);
            (config.cpu(cpu).into(), QEMU_TIMEOUT_SECS)
        }
        EmulatorKind::Bochs => {
            tools::ensure_packages(&[Need::Bochs])?;
            let model = args.bochs_model.unwrap_or(BochsModel::CoreI7SkylakeX);
            (
                BochsConfig::new(model.into(), iso).into(),
                BOCHS_TIMEOUT_SECS,
            )
        }
    };
    let timeout = Duration::from_secs(args.timeout.unwrap_or(default_timeout));
    let options = RunOptions::new("run", timeout).console(Console::Terminal);
    eprintln!("==> booting (timeout {} s)", timeout.as_secs());
    let outcome = try_run(&emulator, &options)?;
    let logs = outcome.keep_logs_in(&workspace::artifacts_dir().join("run-logs"))?;
    println!();
    println!(
        "run ended: {} after {:.1} s (logs: {})",
        outcome.exit,
        outcome.duration.as_secs_f64(),
        logs.display()
    );
    if matches!(emulator, Emulator::Bochs(_)) {
        let reported = match outcome.reported_exit() {
            Some(ReportedExit::Success) => "MICA EXIT: success",
            Some(ReportedExit::Failure) => "MICA EXIT: failure",
            Some(ReportedExit::Unrecognised) => "an unreadable MICA EXIT line",
            None => "no MICA EXIT line",
        };
        println!("serial log reports: {reported}");
    }
    if outcome.succeeded() {
        Ok(())
    } else {
        bail!("The hypervisor did not report success")
    }
}

/// Memory for QEMU runs with the root partition (Linux, the hypervisor's region, the pool).
pub const ROOT_MEMORY_MIB: u32 = 1024;
/// Default timeout of an interactive root session.
const ROOT_SESSION_SECS: u64 = 4 * 3600;
/// Default timeout of a smoke run.
pub const SMOKE_TIMEOUT_SECS: u64 = 300;

/// QEMU running Mica with its Linux root: COM1 (hypervisor log) and COM2 (root console) both
/// on `serial`'s sink.
pub fn root_qemu(
    built: &images::Images,
    root: &images::RootImages,
    kernel_args: &str,
    cmdline: &str,
    cpu: &str,
) -> QemuConfig {
    let mut config = QemuConfig::kernel(&built.elf, cmdline)
        .cpu(cpu)
        .memory_mib(ROOT_MEMORY_MIB)
        .two_serial_ports(true);
    for (file, module_cmdline) in images::root_modules(root, kernel_args) {
        config = config.module(file, module_cmdline);
    }
    config
}

/// `cargo xtask run` with the root partition (QEMU): a root shell on this terminal, or the
/// smoke test.
fn run_root(args: &RunArgs, built: &images::Images) -> Result<()> {
    let root = images::build_root(built, args.smoke)?;
    tools::ensure_packages(&[Need::Qemu])?;
    let cpu = args.cpu.as_deref().unwrap_or(DEFAULT_QEMU_CPU);
    let kernel_args = if args.smoke { images::SMOKE_ARG } else { "" };
    let emulator: Emulator = if args.iso {
        let iso = if args.smoke {
            &root.smoke_iso
        } else {
            &root.iso
        };
        let config = QemuConfig::iso(iso)
            .cpu(cpu)
            .memory_mib(ROOT_MEMORY_MIB)
            .two_serial_ports(true);
        if !args.cmdline.is_empty() {
            eprintln!("note: --cmdline is ignored with --iso (the ISO's GRUB entry has its own)");
        }
        config.into()
    } else {
        root_qemu(built, &root, kernel_args, &args.cmdline, cpu).into()
    };
    let default_timeout = if args.smoke {
        SMOKE_TIMEOUT_SECS
    } else {
        ROOT_SESSION_SECS
    };
    let timeout = Duration::from_secs(args.timeout.unwrap_or(default_timeout));
    eprintln!(
        "==> booting Mica with its Linux root partition (timeout {} s). COM1 (hypervisor log) \
         and COM2 (root console) share this terminal; keys go to the root shell. \
         Ctrl-A x quits QEMU.",
        timeout.as_secs()
    );
    let options = RunOptions::new("run-root", timeout).console(Console::Terminal);
    let outcome = try_run(&emulator, &options)?;
    let logs = outcome.keep_logs_in(&workspace::artifacts_dir().join("run-logs"))?;
    // The root ends a session by powering off (or you quit QEMU): QEMU exits with status 0.
    let ended = match outcome.exit {
        emu_harness::Exit::Abnormal(0) => "QEMU exited (root powered off, or quit)".to_owned(),
        other => other.to_string(),
    };
    println!();
    println!(
        "run ended: {ended} after {:.1} s (logs: {})",
        outcome.duration.as_secs_f64(),
        logs.display()
    );
    if args.smoke {
        let serial = outcome.serial.as_str();
        if serial.contains("MICA-SMOKE: PASS") {
            Ok(())
        } else {
            bail!("the smoke test did not print MICA-SMOKE: PASS")
        }
    } else {
        Ok(())
    }
}
