//! rootd's logic, free of sockets: requests in, responses out ([`Service::handle`]), one
//! run-partitions round at a time ([`Service::step`]), pending waits answered when their
//! partition stops or their time is up ([`Service::ready_waiters`]).

use std::path::Path;
use std::time::{Duration, Instant};

use hypercall::abi::{BACKEND_SVM, BACKEND_VMX, HostFeatures, RunExitReason};
use hypercall::{PAGE_SIZE, PartitionId};

use crate::config::{ConfigError, PartitionConfig};
use crate::hv::{HvCallError, Hypervisor};
use crate::loader::{LaunchError, launch};
use crate::protocol::{InfoReply, PartitionState, Range, Request, Response};
use crate::registry::{Entry, Registry, RegistryError};
use crate::stop::StopReason;

/// Most MicaReadConsole calls per drain (bounds the loop whatever the hypervisor answers).
const MAX_CONSOLE_READS: usize = 64;

/// Where console lines and rootd's own messages go (stderr in the daemon).
pub type LogSink = Box<dyn FnMut(&str) + Send>;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A hypercall failed.
    #[error(transparent)]
    Hypercall(#[from] HvCallError),
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The name or ID is taken.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The image file is unreadable.
    #[error("Cannot read image {path}")]
    ReadImage {
        /// The path.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The image is not a guest ELF.
    #[error("{path} is not a valid guest image")]
    BadImage {
        /// The path.
        path: String,
        /// The loader's complaint.
        #[source]
        source: guest_loader::ElfError,
    },
    /// Building the partition failed.
    #[error("Creating partition {name:?} failed")]
    Launch {
        /// The name.
        name: String,
        /// Why.
        #[source]
        source: LaunchError,
    },
    /// The pool is too small.
    #[error(
        "Not enough memory in the child pool: {name:?} needs {need} MiB, {free} MiB of {total} MiB are free"
    )]
    PoolTooSmall {
        /// The partition.
        name: String,
        /// MiB needed.
        need: u64,
        /// MiB free.
        free: u64,
        /// MiB in the pool.
        total: u64,
    },
    /// No partition has this name.
    #[error("No partition named {0:?}")]
    NoSuchPartition(String),
    /// The partition cannot do that in its state.
    #[error("Partition {name:?} is {state}{reason}: {hint}")]
    WrongState {
        /// The name.
        name: String,
        /// Its state.
        state: &'static str,
        /// " (reason)" or "".
        reason: String,
        /// What to do instead.
        hint: &'static str,
    },
}

/// The message for a failed request: the error and its sources, joined by ": ".
#[must_use]
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A request answered later (a wait).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub u64);

/// What [`Service::handle`] did with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Handled {
    /// Answer now.
    Reply(Response),
    /// Answer when [`Service::ready_waiters`] returns this ticket.
    Pending(Ticket),
}

#[derive(Debug)]
struct Waiter {
    ticket: Ticket,
    name: String,
    deadline: Option<Instant>,
}

/// The root service: the hypervisor, the partitions, the pending waits.
pub struct Service<H: Hypervisor> {
    hv: H,
    registry: Registry,
    waiters: Vec<Waiter>,
    next_ticket: u64,
    log: LogSink,
}

impl<H: Hypervisor> core::fmt::Debug for Service<H> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Service")
            .field("registry", &self.registry)
            .field("waiters", &self.waiters)
            .finish_non_exhaustive()
    }
}

impl<H: Hypervisor> Service<H> {
    /// A service over `hv` logging to `log`.
    pub fn new(hv: H, log: LogSink) -> Self {
        Self {
            hv,
            registry: Registry::new(),
            waiters: Vec::new(),
            next_ticket: 1,
            log,
        }
    }

    /// The hypervisor (tests inspect the fake).
    pub const fn hypervisor(&mut self) -> &mut H {
        &mut self.hv
    }

    /// The partitions.
    #[must_use]
    pub const fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Whether any partition is running (then the main loop lends the CPU to them).
    #[must_use]
    pub fn any_running(&self) -> bool {
        !self.registry.ids_in(PartitionState::Running).is_empty()
    }

    /// The earliest deadline of a pending wait.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Instant> {
        self.waiters.iter().filter_map(|w| w.deadline).min()
    }

    /// Carries out `request` received at `now`.
    pub fn handle(&mut self, request: Request, now: Instant) -> Handled {
        let result = match request {
            Request::Info => self.info().map(Response::Info),
            Request::Create { config, path } => self.create(&config, path.as_deref()),
            Request::Start { name } => self.start(&name).map(|()| Response::Done),
            Request::Stop { name } => self.stop(&name).map(|()| Response::Done),
            Request::List => Ok(Response::List {
                partitions: self.registry.by_id().iter().map(|e| e.summary()).collect(),
            }),
            Request::Console { name, offset } => self.console(&name, offset),
            Request::Delete { name } => self.delete(&name).map(|()| Response::Done),
            Request::Wait { name, timeout_ms } => {
                return self.wait(name, timeout_ms, now);
            }
            Request::Log { text } => {
                // The hypervisor prints complete lines only: end the message with one.
                let mut line = text.into_bytes();
                if line.last() != Some(&b'\n') {
                    line.push(b'\n');
                }
                self.hv
                    .debug_output(&line)
                    .map(|()| Response::Done)
                    .map_err(ServiceError::from)
            }
        };
        Handled::Reply(result.unwrap_or_else(|error| Response::Error {
            message: error_chain(&error),
        }))
    }

    fn entry(&self, name: &str) -> Result<&Entry, ServiceError> {
        self.registry
            .get(name)
            .ok_or_else(|| ServiceError::NoSuchPartition(name.to_owned()))
    }

    fn info(&mut self) -> Result<InfoReply, ServiceError> {
        let info = self.hv.info()?;
        let backend = match info.backend {
            BACKEND_SVM => "AMD SVM with nested paging".to_owned(),
            BACKEND_VMX => "Intel VMX with EPT".to_owned(),
            other => format!("unknown ({other})"),
        };
        let features = HostFeatures::from_bits_retain(info.features)
            .iter_names()
            .map(|(name, _)| name.to_ascii_lowercase().replace('_', "-"))
            .collect();
        let count = (info.protected_count as usize).min(info.protected.len());
        Ok(InfoReply {
            version: format!("{}.{}", info.version_major, info.version_minor),
            build: info.build,
            backend,
            features,
            pool_total: info.pool_total_pages.saturating_mul(PAGE_SIZE),
            pool_free: info.pool_free_pages.saturating_mul(PAGE_SIZE),
            partitions_alive: info.partitions,
            max_partitions: info.max_partitions,
            protected: info.protected[..count]
                .iter()
                .map(|r| Range {
                    start: r.start,
                    end: r.end,
                })
                .collect(),
            partitions: self.registry.by_id().iter().map(|e| e.summary()).collect(),
        })
    }

    fn create(&mut self, text: &str, path: Option<&str>) -> Result<Response, ServiceError> {
        let base_dir = path.and_then(|p| Path::new(p).parent());
        let config = PartitionConfig::parse(text, base_dir)?;
        if self.registry.contains(&config.name) {
            return Err(RegistryError::DuplicateName(config.name).into());
        }
        let image_path = config.image.display().to_string();
        let image = std::fs::read(&config.image).map_err(|source| ServiceError::ReadImage {
            path: image_path.clone(),
            source,
        })?;
        guest_loader::ElfImage::parse(&image).map_err(|source| ServiceError::BadImage {
            path: image_path,
            source,
        })?;
        let info = self.hv.info()?;
        let need_pages = config.memory / PAGE_SIZE;
        if need_pages > info.pool_free_pages {
            let mib = |pages: u64| pages.saturating_mul(PAGE_SIZE) >> 20;
            return Err(ServiceError::PoolTooSmall {
                name: config.name,
                need: config.memory >> 20,
                free: mib(info.pool_free_pages),
                total: mib(info.pool_total_pages),
            });
        }
        let id = launch(&mut self.hv, &image, config.memory, &config.args).map_err(|source| {
            ServiceError::Launch {
                name: config.name.clone(),
                source,
            }
        })?;
        let name = config.name.clone();
        self.registry.insert(Entry::new(id, config))?;
        (self.log)(&format!("rootd: created partition {name} (ID {})", id.0));
        Ok(Response::Created { name, id: id.0 })
    }

    fn start(&mut self, name: &str) -> Result<(), ServiceError> {
        let entry = self.entry(name)?;
        let id = entry.id;
        match (entry.state, entry.reason) {
            (PartitionState::Created, _)
            | (PartitionState::Stopped, Some(StopReason::Requested)) => {}
            (PartitionState::Running, _) => {
                return Err(wrong_state(entry, "stop it first to restart it"));
            }
            (PartitionState::Stopped, _) => {
                return Err(wrong_state(entry, "delete it and create it again"));
            }
        }
        self.hv.start(id)?;
        if let Some(entry) = self.registry.get_mut(name) {
            entry.state = PartitionState::Running;
            entry.reason = None;
        }
        (self.log)(&format!("rootd: started partition {name}"));
        Ok(())
    }

    fn stop(&mut self, name: &str) -> Result<(), ServiceError> {
        let entry = self.entry(name)?;
        let id = entry.id;
        if entry.state != PartitionState::Running {
            return Err(wrong_state(
                entry,
                "only a running partition can be stopped",
            ));
        }
        let result = self.hv.stop(id);
        // Stopped by us, or it stopped by itself just before: either way read its reason.
        self.partition_stopped(id)?;
        if result.is_err()
            && self.registry.get(name).map(|e| e.state) == Some(PartitionState::Running)
        {
            result?;
        }
        Ok(())
    }

    fn console(&mut self, name: &str, offset: u64) -> Result<Response, ServiceError> {
        let id = self.entry(name)?.id;
        self.drain_console(id)?;
        let entry = self.entry(name)?;
        let read = entry.console.read_from(offset);
        Ok(Response::Console {
            data: String::from_utf8_lossy(&read.data).into_owned(),
            offset: read.offset,
            next_offset: read.next_offset,
            state: entry.state,
        })
    }

    fn delete(&mut self, name: &str) -> Result<(), ServiceError> {
        let entry = self.entry(name)?;
        let (id, state) = (entry.id, entry.state);
        if state == PartitionState::Running {
            self.stop(name)?;
        }
        self.hv.finalize(id)?;
        self.hv.delete(id)?;
        self.registry.remove(name);
        (self.log)(&format!("rootd: deleted partition {name}"));
        Ok(())
    }

    fn wait(&mut self, name: String, timeout_ms: Option<u64>, now: Instant) -> Handled {
        match self.registry.get(&name) {
            None => Handled::Reply(Response::Error {
                message: ServiceError::NoSuchPartition(name).to_string(),
            }),
            Some(entry) if entry.state == PartitionState::Stopped => {
                Handled::Reply(Response::Stopped {
                    partition: entry.summary(),
                })
            }
            Some(_) => {
                let ticket = Ticket(self.next_ticket);
                self.next_ticket += 1;
                let deadline = timeout_ms.and_then(|ms| now.checked_add(Duration::from_millis(ms)));
                self.waiters.push(Waiter {
                    ticket,
                    name,
                    deadline,
                });
                Handled::Pending(ticket)
            }
        }
    }

    /// The waits that can be answered at `now`: their partition stopped or is gone, or
    /// their deadline passed.
    pub fn ready_waiters(&mut self, now: Instant) -> Vec<(Ticket, Response)> {
        let mut ready = Vec::new();
        let registry = &self.registry;
        self.waiters.retain(|waiter| {
            let response = match registry.get(&waiter.name) {
                None => Some(Response::Error {
                    message: format!("Partition {:?} was deleted", waiter.name),
                }),
                Some(entry) if entry.state == PartitionState::Stopped => Some(Response::Stopped {
                    partition: entry.summary(),
                }),
                Some(_) if waiter.deadline.is_some_and(|d| now >= d) => Some(Response::Error {
                    message: format!("Timed out waiting for {:?} to stop", waiter.name),
                }),
                Some(_) => None,
            };
            match response {
                Some(response) => {
                    ready.push((waiter.ticket, response));
                    false
                }
                None => true,
            }
        });
        ready
    }

    /// Drops a pending wait (its client went away).
    pub fn cancel(&mut self, ticket: Ticket) {
        self.waiters.retain(|w| w.ticket != ticket);
    }

    /// One run-partitions round: lends the CPU to the children and handles why it came
    /// back. Returns the reason, for the main loop to decide how long to poll.
    ///
    /// # Errors
    /// A failed hypercall (the loop logs it and goes on).
    pub fn step(&mut self) -> Result<RunExitReason, HvCallError> {
        let (reason, partition) = self.hv.run_partitions()?;
        match (reason, partition) {
            (RunExitReason::PartitionStopped, Some(id)) => self.partition_stopped(id)?,
            (RunExitReason::ConsoleOutput, Some(id)) => self.drain_console(id)?,
            (RunExitReason::PartitionStopped, None) => self.refresh_running()?,
            _ => {}
        }
        Ok(reason)
    }

    /// Checks every partition rootd thinks is running (a stop without an ID).
    fn refresh_running(&mut self) -> Result<(), HvCallError> {
        for id in self.registry.ids_in(PartitionState::Running) {
            let state = self
                .hv
                .get_property(id, partition::properties::MICA_STATE)?;
            // 3 = Stopped, 4 = Finalized (partition::properties::MICA_STATE).
            if matches!(state, 3 | 4) {
                self.partition_stopped(id)?;
            }
        }
        Ok(())
    }

    /// Records that `id` stopped: its reason, its last console bytes.
    fn partition_stopped(&mut self, id: PartitionId) -> Result<(), HvCallError> {
        self.drain_console(id)?;
        let raw = self.hv.stop_reason(id)?;
        let Some(reason) = StopReason::decode(raw) else {
            // Not stopped after all (a stale event).
            return Ok(());
        };
        let Some(entry) = self.registry.by_id_mut(id) else {
            return Ok(());
        };
        entry.state = PartitionState::Stopped;
        entry.reason = Some(reason);
        let name = entry.config.name.clone();
        let partial = entry.console.flush_partial();
        if let Some(line) = partial {
            (self.log)(&format!("[{name}] {line}"));
        }
        (self.log)(&format!("rootd: partition {name} {reason}"));
        Ok(())
    }

    /// Moves `id`'s buffered console bytes into its [`crate::console::ConsoleBuffer`] and
    /// logs complete lines as `[NAME] line`.
    fn drain_console(&mut self, id: PartitionId) -> Result<(), HvCallError> {
        for _ in 0..MAX_CONSOLE_READS {
            let chunk = self.hv.read_console(id)?;
            if chunk.bytes.is_empty() {
                break;
            }
            let Some(entry) = self.registry.by_id_mut(id) else {
                continue;
            };
            let lines = entry.console.push(&chunk.bytes);
            let name = entry.config.name.clone();
            for line in lines {
                (self.log)(&format!("[{name}] {line}"));
            }
            if chunk.remaining == 0 {
                break;
            }
        }
        Ok(())
    }
}

fn wrong_state(entry: &Entry, hint: &'static str) -> ServiceError {
    ServiceError::WrongState {
        name: entry.config.name.clone(),
        state: entry.state.as_str(),
        reason: entry.reason.map(|r| format!(" ({r})")).unwrap_or_default(),
        hint,
    }
}
