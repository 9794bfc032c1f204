//! `rootd`, Mica's root service, as a library (the `rootd` binary is a thin `main`; `hvctl`
//! uses [`protocol`]).
//!
//! rootd runs in the root partition (stock Linux) and owns every child partition: it
//! parses TOML configurations ([`config`]), builds partitions through hypercalls
//! ([`loader`]: create, initialize, map pool pages, copy the image, create VP 0, set its
//! registers), starts and stops them, keeps their console output ([`console`]) and why they
//! stopped ([`stop`]), and answers `hvctl` on a Unix socket ([`protocol`], [`server`]).
//!
//! The hypervisor is a trait, [`Hypervisor`]: two raw calling conventions plus typed
//! wrappers. [`doorbell::Doorbell`] is the real one (I/O-port doorbell and the shared window
//! through `/dev/mem`); `fake::Fake` (feature `fake`, and in tests) puts the real partition
//! manager and hypercall dispatcher in-process so all of rootd's logic is host-tested.
//!
//! Architecture invariant: nothing a child does (its console bytes, its stop reason) and
//! nothing a client sends can make rootd panic or block its loop for long: requests are
//! parsed into typed values with a size limit and I/O timeouts, hypervisor answers are
//! decoded with typed errors, and every loop over hypervisor answers is bounded.

#![deny(unsafe_code)]

pub mod config;
pub mod console;
#[cfg(target_os = "linux")]
#[allow(
    unsafe_code,
    reason = "port I/O, ioperm and mmap of /dev/mem: the hardware interface"
)]
pub mod doorbell;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod hv;
pub mod loader;
pub mod protocol;
pub mod registry;
#[allow(unsafe_code, reason = "poll(2) on the listening socket")]
pub mod server;
pub mod service;
pub mod stop;

#[cfg(test)]
mod tests;

pub use hv::{HvCallError, Hypervisor};
pub use service::Service;
