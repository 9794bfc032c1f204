//! `hvctl`: manage Mica child partitions through rootd, and check the root partition's
//! isolation (`hvctl selftest`).
//!
//! Every command but `selftest` sends one request to rootd over its Unix socket
//! (`rootd::protocol`); `selftest` runs in hvctl itself.

#![deny(unsafe_code)]

mod commands;
mod selftest;
#[allow(
    unsafe_code,
    reason = "fork, setuid, ioperm, mmap of /dev/mem for the selftest"
)]
mod sys;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Manage Mica child partitions (through rootd) and check the root's isolation.
#[derive(Debug, Parser)]
#[command(
    name = "hvctl",
    version,
    after_help = "Example:\n  hvctl create /etc/mica/hello.toml && hvctl start hello && hvctl wait hello && hvctl console hello"
)]
struct Cli {
    /// rootd's control socket [default: $MICA_ROOTD_SOCKET, else /run/mica/rootd.sock]
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// The hvctl commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the hypervisor: version, backend and features, pool, protected ranges, partitions
    Info,
    /// Create a partition from a TOML file (name, image, memory, args, vcpus) and load it
    Create {
        /// The partition's TOML configuration
        file: PathBuf,
    },
    /// Start (or resume a stopped) partition
    Start {
        /// Partition name
        name: String,
    },
    /// Stop a running partition
    Stop {
        /// Partition name
        name: String,
    },
    /// List partitions: ID, name, state, memory, stop reason
    List,
    /// Print a partition's console output (the last 64 KiB)
    Console {
        /// Partition name
        name: String,
        /// Keep printing new output until the partition stops
        #[arg(short, long)]
        follow: bool,
    },
    /// Stop (if running) and delete a partition, returning its memory to the pool
    Delete {
        /// Partition name
        name: String,
    },
    /// Wait until a partition stops; exit code 0 only if it exited with status 0
    Wait {
        /// Partition name
        name: String,
        /// Give up after this many seconds (exit code 1)
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
    },
    /// Print TEXT in the hypervisor's debug log
    Log {
        /// The text
        text: String,
    },
    /// Check the root partition's isolation (runs in hvctl, as root); exit code 1 on any FAIL
    Selftest {
        /// Also check that the shared window IS readable (proves the method works)
        #[arg(long)]
        window: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let socket = rootd::protocol::socket_path(cli.socket.as_deref());
    let mut out = std::io::stdout().lock();
    match commands::run(&cli.command, &socket, &mut out) {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("hvctl: {message}");
            ExitCode::FAILURE
        }
    }
}
