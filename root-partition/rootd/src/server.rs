//! rootd's main loop on one thread: the control socket and the run-partitions calls.
//!
//! While any child runs, each turn makes one run-partitions call and handles its reason
//! (a stop: refresh state and drain the console; console output: drain; an interrupt:
//! look at the socket without blocking); when the hypervisor says nothing can run ("idle"),
//! the turn blocks on the socket for up to 100 ms. When nothing runs, it blocks on the
//! socket until a request comes or a pending wait times out. Each connection carries one
//! request and one response; a wait keeps its connection until the partition stops.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use hypercall::abi::RunExitReason;

use crate::hv::Hypervisor;
use crate::protocol::{MAX_REQUEST, Request, Response, read_line, write_line};
use crate::service::{Handled, Service, Ticket};

/// How long a turn blocks on the socket when the hypervisor reports idle.
pub const IDLE_POLL: Duration = Duration::from_millis(100);
/// How long rootd waits for a client to send its request or take its answer.
const CLIENT_IO_TIMEOUT: Duration = Duration::from_secs(2);

/// The control socket and the connections of pending waits.
#[derive(Debug)]
pub struct Server {
    listener: UnixListener,
    pending: BTreeMap<Ticket, UnixStream>,
}

impl Server {
    /// Listens on `path` (replacing a stale socket file, creating its folder).
    ///
    /// # Errors
    /// The folder cannot be created or the socket cannot be bound.
    pub fn bind(path: &Path) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        match std::fs::remove_file(path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        Ok(Self {
            listener,
            pending: BTreeMap::new(),
        })
    }

    /// Runs turns until `stop()` says so (checked after every turn).
    pub fn run_until<H: Hypervisor>(
        &mut self,
        service: &mut Service<H>,
        mut stop: impl FnMut() -> bool,
    ) {
        while !stop() {
            self.turn(service);
        }
    }

    /// One turn of the main loop (module documentation).
    pub fn turn<H: Hypervisor>(&mut self, service: &mut Service<H>) {
        let wait = if service.any_running() {
            match service.step() {
                Ok(RunExitReason::Idle) => Some(IDLE_POLL),
                Ok(_) => Some(Duration::ZERO),
                Err(error) => {
                    eprintln!("rootd: {error}");
                    Some(IDLE_POLL)
                }
            }
        } else {
            service
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()))
        };
        if poll_readable(&self.listener, wait) {
            self.accept_all(service);
        }
        for (ticket, response) in service.ready_waiters(Instant::now()) {
            if let Some(stream) = self.pending.remove(&ticket) {
                // The client may have gone away; nothing to do then.
                let _ = write_line(&stream, &response);
            }
        }
    }

    fn accept_all<H: Hypervisor>(&mut self, service: &mut Service<H>) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => self.serve_connection(service, stream),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) => {
                    eprintln!("rootd: accept failed: {error}");
                    break;
                }
            }
        }
    }

    fn serve_connection<H: Hypervisor>(&mut self, service: &mut Service<H>, stream: UnixStream) {
        let setup = stream
            .set_nonblocking(false)
            .and_then(|()| stream.set_read_timeout(Some(CLIENT_IO_TIMEOUT)))
            .and_then(|()| stream.set_write_timeout(Some(CLIENT_IO_TIMEOUT)));
        if setup.is_err() {
            return;
        }
        let response = match read_line::<_, Request>(&stream, MAX_REQUEST) {
            Ok(Some(request)) => match service.handle(request, Instant::now()) {
                Handled::Reply(response) => response,
                Handled::Pending(ticket) => {
                    self.pending.insert(ticket, stream);
                    return;
                }
            },
            Ok(None) => return,
            Err(error) => Response::Error {
                message: format!("Bad request: {error}"),
            },
        };
        let _ = write_line(&stream, &response);
    }
}

/// Waits until `listener` has a connection or `timeout` passes (`None`: no limit).
fn poll_readable(listener: &UnixListener, timeout: Option<Duration>) -> bool {
    let timeout_ms = timeout.map_or(-1, |t| {
        // Round up so a deadline 0.5 ms away does not spin.
        i32::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX)
    });
    let mut fds = [libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: `fds` is a valid array of one pollfd for the duration of the call.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), 1, timeout_ms) };
    ready > 0 && fds[0].revents & libc::POLLIN != 0
}
