//! I/O-free VMBus state machines for both ends of the channel protocol.
//!
//! - [`server::Server`] is the root side (Hyper-V's role): it negotiates the version, serves
//!   the offer list, assembles and tracks GPADLs, and opens and closes channels. The host drives
//!   it with [`server::Server::handle`] for each client message and with calls such as
//!   [`server::Server::offer`], [`server::Server::rescind`] and
//!   [`server::Server::complete_open`].
//! - [`client::Client`] is the guest side (what Linux's hv_vmbus does).
//!
//! Both return [`Actions`]: messages to send to the peer and events for the host (connect a
//! VSP to a ring, disconnect it, ...). Neither does any I/O, allocation aside.
//!
//! **Errors never change state.** A message that is illegal in the current state (wrong phase,
//! unknown relid or GPADL, duplicate, GPADL body before its header, too many pages, ...) gives a
//! typed [`ProtocolError`] and leaves the state machine exactly as it was. Requests that are
//! well-formed and legal but cannot be granted (an unsupported version, a ring that does not
//! fit its GPADL, a GPADL whose ranges turn out inconsistent) are answered on the wire with a
//! failure status instead, like Hyper-V does, so a waiting Linux guest does not hang.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod client;
mod error;
pub mod server;

use alloc::vec::Vec;

pub use error::{ChannelPhase, ConnectionPhase, ProtocolError};

/// What a state machine asks its host to do, in order.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Actions<A>(Vec<A>);

impl<A> Actions<A> {
    /// No action.
    pub fn new() -> Self {
        Self(Vec::new())
    }

    pub(crate) fn push(&mut self, a: A) {
        self.0.push(a);
    }

    /// The actions, in the order they must be carried out.
    pub fn as_slice(&self) -> &[A] {
        &self.0
    }

    /// Takes the actions out.
    pub fn into_vec(self) -> Vec<A> {
        self.0
    }

    /// Whether there is no action.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of actions.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Iterates over the actions.
    pub fn iter(&self) -> core::slice::Iter<'_, A> {
        self.0.iter()
    }
}

impl<A> Default for Actions<A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A> IntoIterator for Actions<A> {
    type Item = A;
    type IntoIter = alloc::vec::IntoIter<A>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a, A> IntoIterator for &'a Actions<A> {
    type Item = &'a A;
    type IntoIter = core::slice::Iter<'a, A>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}
