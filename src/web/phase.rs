//! Where a connection is (idle, reading a request, served, answering) and since when, and since
//! when its output has been waiting for the client to read: what its watchdog reads to enforce
//! IDLE_TIMEOUT_SECONDS and REQUEST_TIMEOUT_SECONDS (for requests and for replies), and what the
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

/// A request that brought no byte for this long is stalled: its slot may be reclaimed.
pub(super) const STALLED: Duration = Duration::from_secs(1);

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
    /// 1 + milliseconds since `epoch` when the socket first refused output that is still
    /// unwritten; 0 while nothing waits.
    blocked: AtomicU64,
    /// Milliseconds since `epoch` of the last read that brought bytes.
    last_read: AtomicU64,
    /// Accepted on a slot kept for the probes: serves nothing else.
    pub(super) probes_only: bool,
}

const MS_BITS: u64 = (1 << 62) - 1;

impl ConnState {
    /// In `phase` since `since` (not in the future).
    pub(super) fn new(phase: Phase, since: Instant, probes_only: bool) -> ConnState {
        let s = ConnState {
            epoch: since,
            packed: AtomicU64::new(0),
            blocked: AtomicU64::new(0),
            last_read: AtomicU64::new(0),
            probes_only,
        };
        s.set(phase, false);
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
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_read.store(ms, Ordering::Relaxed);
        if self.get().0 == Phase::Idle {
            self.set(Phase::Head, true);
        }
    }

    pub(super) fn on_write(&self) {
        if self.get().0 == Phase::Answering {
            self.set(Phase::Idle, true);
        }
    }

    /// The socket took none of the output: the client is not reading (yet).
    pub(super) fn on_write_blocked(&self) {
        if self.blocked.load(Ordering::Relaxed) == 0 {
            let ms = self.epoch.elapsed().as_millis() as u64;
            self.blocked.store(ms + 1, Ordering::Relaxed);
        }
    }

    /// All output is with the kernel.
    pub(super) fn on_flushed(&self) {
        self.blocked.store(0, Ordering::Relaxed);
    }

    /// Since when output has been waiting for the client, if it is.
    fn blocked_since(&self) -> Option<Instant> {
        match self.blocked.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(self.epoch + Duration::from_millis(ms - 1)),
        }
    }

    /// Nothing in progress that a reclaim would cut: between requests with all output written,
    /// or a request whose head or body has brought no byte for STALLED.
    pub(super) fn reclaimable(&self) -> bool {
        let last_read = self.epoch + Duration::from_millis(self.last_read.load(Ordering::Relaxed));
        self.blocked_since().is_none()
            && match self.get().0 {
                Phase::Idle => true,
                Phase::Head | Phase::Served => last_read.elapsed() >= STALLED,
                Phase::Answering => false,
            }
    }

    /// The request's deadline (REQUEST_TIMEOUT_SECONDS from its first byte).
    pub(super) fn request_deadline(&self, limits: &Limits) -> Instant {
        self.get().1 + limits.request_timeout
    }

    /// When the watchdog must act, and how. Output the client does not take within
    /// REQUEST_TIMEOUT_SECONDS ends the connection, whatever the phase: an idle connection
    /// with a reply still pending is not idle, and a reply is not held for a client that never
    /// reads it.
    pub(super) fn deadline(&self, limits: &Limits) -> Option<(Instant, Expiry)> {
        let phased = self.phase_deadline(limits);
        match self.blocked_since() {
            Some(b) => {
                let write = b + limits.request_timeout;
                Some(match phased {
                    Some((at, how)) if at < write => (at, how),
                    _ => (write, Expiry::Write),
                })
            }
            None => phased,
        }
    }

    fn phase_deadline(&self, limits: &Limits) -> Option<(Instant, Expiry)> {
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
    /// The client did not read its reply in time: close, dropping what is unwritten.
    Write,
}
