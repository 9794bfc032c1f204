//! `rootd`: Mica's root service. Opens the hypervisor doorbell, listens on the control
//! socket and runs forever (see the library documentation).

use std::path::PathBuf;
use std::process::ExitCode;

use rootd::doorbell::Doorbell;
use rootd::protocol::socket_path;
use rootd::server::Server;
use rootd::service::{Service, error_chain};

const USAGE: &str = "\
Usage: rootd [--socket PATH]

Mica's root service: owns the child partitions and serves hvctl.

Options:
  --socket PATH   control socket (default: $MICA_ROOTD_SOCKET, else /run/mica/rootd.sock)
  -h, --help      print this help
";

fn main() -> ExitCode {
    let mut socket: Option<PathBuf> = None;
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--socket") => match args.next() {
                Some(path) => socket = Some(PathBuf::from(path)),
                None => return usage_error("--socket needs a path"),
            },
            Some("-h" | "--help") => {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ => return usage_error(&format!("unexpected argument {arg:?}")),
        }
    }
    let path = socket_path(socket.as_deref());
    let doorbell = match Doorbell::open() {
        Ok(doorbell) => doorbell,
        Err(error) => {
            eprintln!("rootd: {}", error_chain(&error));
            return ExitCode::FAILURE;
        }
    };
    let mut server = match Server::bind(&path) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("rootd: cannot listen on {}: {error}", path.display());
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "rootd: window at {:#x}, listening on {}",
        doorbell.window_gpa(),
        path.display()
    );
    let mut service = Service::new(doorbell, Box::new(|line| eprintln!("{line}")));
    server.run_until(&mut service, || false);
    ExitCode::SUCCESS
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("rootd: {message}\n\n{USAGE}");
    ExitCode::from(2)
}
