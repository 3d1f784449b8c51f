//! Where a connection is (idle, reading a request, served, answering) and since when: what its
//! watchdog reads to enforce IDLE_TIMEOUT_SECONDS and REQUEST_TIMEOUT_SECONDS, and what the
//! routes set once a request's body is in.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use tokio::time::Instant;

use crate::config::Limits;

/// Time the service has past the request deadline to answer 408 itself before the connection
/// is simply closed.
pub(super) const ANSWER_GRACE: Duration = Duration::from_secs(2);

/// Where a connection is, for its deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// No request: closed after IDLE_TIMEOUT_SECONDS.
    Idle = 0,
    /// A request's first byte arrived; hyper has not handed it to the service yet.
    Head = 1,
    /// The service has it and answers 408 itself at the deadline.
    Served = 2,
    /// The body is in: the event is being handled (bounded by API_TIMEOUT_SECONDS) or answered.
    Answering = 3,
}

/// The phase and since when, in one atomic: updated on reads, writes and by the service, all
/// within the connection's task, and read by its watchdog, so no lock and no wake-ups.
pub(super) struct ConnState {
    epoch: Instant,
    /// Phase in the top two bits, milliseconds since `epoch` below.
    packed: AtomicU64,
}

const MS_BITS: u64 = (1 << 62) - 1;

impl ConnState {
    pub(super) fn new(phase: Phase) -> ConnState {
        let s = ConnState {
            epoch: Instant::now(),
            packed: AtomicU64::new(0),
        };
        s.set(phase, true);
        s
    }

    pub(super) fn set(&self, phase: Phase, restart: bool) {
        let since = if restart {
            self.epoch.elapsed().as_millis() as u64 & MS_BITS
        } else {
            self.packed.load(Ordering::Relaxed) & MS_BITS
        };
        self.packed
            .store(((phase as u64) << 62) | since, Ordering::Relaxed);
    }

    pub(super) fn get(&self) -> (Phase, Instant) {
        let p = self.packed.load(Ordering::Relaxed);
        let phase = match p >> 62 {
            0 => Phase::Idle,
            1 => Phase::Head,
            2 => Phase::Served,
            _ => Phase::Answering,
        };
        (phase, self.epoch + Duration::from_millis(p & MS_BITS))
    }

    pub(super) fn on_read(&self) {
        if self.get().0 == Phase::Idle {
            self.set(Phase::Head, true);
        }
    }

    pub(super) fn on_write(&self) {
        if self.get().0 == Phase::Answering {
            self.set(Phase::Idle, true);
        }
    }

    /// The request's deadline (REQUEST_TIMEOUT_SECONDS from its first byte).
    pub(super) fn request_deadline(&self, limits: &Limits) -> Instant {
        self.get().1 + limits.request_timeout
    }

    /// When the watchdog must act, and how.
    pub(super) fn deadline(&self, limits: &Limits) -> Option<(Instant, Expiry)> {
        let (phase, since) = self.get();
        match phase {
            Phase::Idle => Some((since + limits.idle_timeout, Expiry::Idle)),
            Phase::Head => Some((since + limits.request_timeout, Expiry::Request)),
            Phase::Served => Some((
                since + limits.request_timeout + ANSWER_GRACE,
                Expiry::Abandon,
            )),
            Phase::Answering => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expiry {
    Idle,
    /// The headers did not arrive in time: answer 408 ourselves.
    Request,
    /// The service did not answer in time (cannot happen unless it hangs): close.
    Abandon,
}
