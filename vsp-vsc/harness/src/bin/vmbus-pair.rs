//! `vmbus-pair`: run a VSP against a VSC back to back, with no hypervisor.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use echo_vsc::{EchoConfig, EchoReport, EchoVsc};
use echo_vsp::EchoVsp;
use vsp_vsc_harness::devices::{Device, Sabotage, SaboteurVsc};
use vsp_vsc_harness::{HarnessError, PairOptions, connect_file, run_in_process, serve_file};

/// Run a VSP (root-side device) against a VSC (guest-side driver) over real VMBus rings, in one
/// process or two, without a hypervisor.
///
/// Both halves go through the VMBus handshake a guest does (version negotiation, the offer of
/// the device's interface GUID, a GPADL for the ring buffer, open channel) before the device
/// code sees its ring pair, and close, tear down and unload afterwards.
#[derive(Parser, Debug)]
#[command(name = "vmbus-pair", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run both halves in this process, on two threads.
    Run {
        #[command(flatten)]
        device: DeviceArgs,
        #[command(flatten)]
        traffic: Traffic,
        #[command(flatten)]
        ring: RingArgs,
    },
    /// Create the shared file and serve the device's VSP from it (start this first).
    ///
    /// Exits when the client has unloaded (status 0), or with status 1 if the client broke the
    /// ring or the protocol. The file is removed on exit.
    Serve {
        #[command(flatten)]
        device: DeviceArgs,
        /// Shared memory file to create (must not exist).
        #[arg(long, value_name = "PATH")]
        shm: PathBuf,
        #[command(flatten)]
        ring: RingArgs,
    },
    /// Open the shared file another `vmbus-pair serve` created and run the device's VSC.
    Connect {
        #[command(flatten)]
        device: DeviceArgs,
        /// Shared memory file created by `vmbus-pair serve`.
        #[arg(long, value_name = "PATH")]
        shm: PathBuf,
        #[command(flatten)]
        traffic: Traffic,
        /// Instead of running the VSC, corrupt the ring after the handshake (tests the VSP's
        /// error handling: the VSP must close the channel and `serve` exit with status 1).
        #[arg(long, value_enum)]
        sabotage: Option<Sabotage>,
    },
    /// List the known devices.
    List,
}

#[derive(Args, Debug)]
struct DeviceArgs {
    /// Device to run (see `vmbus-pair list`).
    #[arg(long, value_enum)]
    device: Device,
}

#[derive(Args, Debug)]
struct Traffic {
    /// Number of requests the VSC sends.
    #[arg(long, default_value_t = 1000)]
    messages: u64,
    /// Payload bytes per request.
    #[arg(long, value_name = "BYTES", default_value_t = 64)]
    size: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    window: usize,
}

#[derive(Args, Debug)]
struct RingArgs {
    /// Data bytes of each channel ring (rounded up to 4 KiB pages).
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024)]
    ring_size: usize,
    /// Seconds to wait for the peer to attach, and for a silent peer on the channel.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    timeout: u64,
}

fn options(ring: Option<&RingArgs>) -> PairOptions {
    let mut options = PairOptions::default();
    if let Some(ring) = ring {
        options.ring_bytes = ring.ring_size;
        options.setup_timeout = Duration::from_secs(ring.timeout);
        options.idle_timeout = Duration::from_secs(ring.timeout);
    }
    options
}

fn echo_config(traffic: &Traffic) -> EchoConfig {
    EchoConfig {
        messages: traffic.messages,
        size: traffic.size,
        window: traffic.window,
    }
}

fn print_report(report: EchoReport, elapsed: Duration) {
    println!(
        "echo: {} messages, {} payload bytes echoed and checked in {:.1} ms",
        report.messages,
        report.bytes,
        elapsed.as_secs_f64() * 1e3
    );
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let mut text = format!("Error: {err}");
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("{text}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), HarnessError> {
    match cli.command {
        Command::List => {
            for device in Device::ALL {
                println!(
                    "{:<8} {}  {}",
                    device.name(),
                    device.interface_id(),
                    device.description()
                );
            }
            Ok(())
        }
        Command::Run {
            device: DeviceArgs {
                device: Device::Echo,
            },
            traffic,
            ring,
        } => {
            let start = Instant::now();
            let mut vsp = EchoVsp::new();
            let mut vsc = EchoVsc::new(echo_config(&traffic));
            let report = run_in_process(&mut vsp, &mut vsc, &options(Some(&ring))).into_result()?;
            print_report(report, start.elapsed());
            Ok(())
        }
        Command::Serve {
            device: DeviceArgs {
                device: Device::Echo,
            },
            shm,
            ring,
        } => {
            let mut vsp = EchoVsp::new();
            let result = serve_file(&mut vsp, &shm, &options(Some(&ring)));
            if !matches!(result, Err(HarnessError::Io { .. })) {
                // We created the file: remove it whatever happened on the channel.
                let _ = std::fs::remove_file(&shm);
            }
            result?;
            println!(
                "echo VSP: served {} requests ({} payload bytes)",
                vsp.requests, vsp.bytes
            );
            Ok(())
        }
        Command::Connect {
            device: DeviceArgs { device },
            shm,
            traffic,
            sabotage,
        } => {
            let options = options(None);
            if let Some(sabotage) = sabotage {
                let mut vsc = SaboteurVsc {
                    interface: device.interface_id(),
                    sabotage,
                    timeout: Duration::from_secs(10),
                };
                connect_file(&mut vsc, &shm, &options)?;
                println!("sabotage: the VSP closed the channel");
                return Ok(());
            }
            let start = Instant::now();
            let mut vsc = EchoVsc::new(echo_config(&traffic));
            let report = connect_file(&mut vsc, &shm, &options)?;
            print_report(report, start.elapsed());
            Ok(())
        }
    }
}
