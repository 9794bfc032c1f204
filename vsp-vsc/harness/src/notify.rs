//! [`Notifier`] implementations for the harness.
//!
//! - [`ThreadNotifier`]: two threads of one process; a mutex-protected "pending" flag per side
//!   and a condition variable, so a waiting side sleeps in the kernel and wakes on the signal.
//! - [`ShmNotifier`]: two processes sharing the region; each side has a doorbell word (a counter
//!   the peer increments) and both share a closed flag (see [`crate::layout`]). A waiter polls its
//!   doorbell with backoff: it spins for a few microseconds (so a busy channel wakes at once),
//!   then yields, then sleeps in steps growing to 1 ms. Nothing but the shared file is needed
//!   (no pipes, no eventfds to pass), and a peer that dies costs at most the timeout.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use vsp_vsc_channel::{Notifier, Wake};

use crate::layout::{OFF_CLOSED, OFF_DOORBELL_CLIENT, OFF_DOORBELL_SERVER};
use crate::shm::SharedRegion;

#[derive(Debug, Default)]
struct ThreadShared {
    pending: Mutex<[bool; 2]>,
    cond: [Condvar; 2],
    closed: AtomicBool,
}

/// One side of an in-process channel interrupt (see [`ThreadNotifier::pair`]).
#[derive(Debug, Clone)]
pub struct ThreadNotifier {
    shared: Arc<ThreadShared>,
    side: usize,
}

impl ThreadNotifier {
    /// The two connected sides (server, client).
    pub fn pair() -> (Self, Self) {
        let shared = Arc::new(ThreadShared::default());
        (
            Self {
                shared: shared.clone(),
                side: 0,
            },
            Self { shared, side: 1 },
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, [bool; 2]> {
        // A poisoned lock only means another thread panicked holding it; the flags stay valid.
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

impl Notifier for ThreadNotifier {
    fn signal(&self) {
        let peer = 1 - self.side;
        self.lock()[peer] = true;
        self.shared.cond[peer].notify_one();
    }

    fn wait(&self, timeout: Duration) -> Wake {
        let me = self.side;
        let guard = self.lock();
        let (mut guard, _) = self.shared.cond[me]
            .wait_timeout_while(guard, timeout, |pending| {
                !pending[me] && !self.shared.closed.load(Ordering::Acquire)
            })
            .unwrap_or_else(|poison| poison.into_inner());
        if self.shared.closed.load(Ordering::Acquire) {
            Wake::Closed
        } else if std::mem::take(&mut guard[me]) {
            Wake::Signalled
        } else {
            Wake::TimedOut
        }
    }

    fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        let _guard = self.lock();
        for cond in &self.shared.cond {
            cond.notify_all();
        }
    }

    fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }
}

/// One side of a channel interrupt between two processes sharing a region.
#[derive(Debug, Clone)]
pub struct ShmNotifier {
    region: Arc<SharedRegion>,
    mine: usize,
    peer: usize,
    seen: Cell<u32>,
}

impl ShmNotifier {
    /// The server side's notifier.
    pub fn server(region: Arc<SharedRegion>) -> Self {
        Self::new(region, OFF_DOORBELL_SERVER, OFF_DOORBELL_CLIENT)
    }

    /// The client side's notifier.
    pub fn client(region: Arc<SharedRegion>) -> Self {
        Self::new(region, OFF_DOORBELL_CLIENT, OFF_DOORBELL_SERVER)
    }

    fn new(region: Arc<SharedRegion>, mine: usize, peer: usize) -> Self {
        let seen = Cell::new(region.load(mine, Ordering::Acquire));
        Self {
            region,
            mine,
            peer,
            seen,
        }
    }
}

/// Polls `ready` until it returns `Some` or `timeout` passes: spin, then yield, then sleep
/// with a delay doubling from 20 us to 1 ms.
pub fn poll_with_backoff<T>(timeout: Duration, mut ready: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    let mut round = 0u32;
    let mut sleep = Duration::from_micros(20);
    loop {
        if let Some(value) = ready() {
            return Some(value);
        }
        let elapsed = start.elapsed();
        if elapsed >= timeout {
            return None;
        }
        round = round.saturating_add(1);
        if round < 2000 {
            std::hint::spin_loop();
        } else if round < 2100 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(sleep.min(timeout - elapsed));
            sleep = (sleep * 2).min(Duration::from_millis(1));
        }
    }
}

impl Notifier for ShmNotifier {
    fn signal(&self) {
        if let Some(word) = self.region.word(self.peer) {
            word.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn wait(&self, timeout: Duration) -> Wake {
        poll_with_backoff(timeout, || {
            if self.is_closed() {
                return Some(Wake::Closed);
            }
            let now = self.region.load(self.mine, Ordering::Acquire);
            (now != self.seen.get()).then(|| {
                self.seen.set(now);
                Wake::Signalled
            })
        })
        .unwrap_or(Wake::TimedOut)
    }

    fn close(&self) {
        self.region.store(OFF_CLOSED, 1, Ordering::Release);
    }

    fn is_closed(&self) -> bool {
        self.region.load(OFF_CLOSED, Ordering::Acquire) != 0
    }
}
