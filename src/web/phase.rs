//! Where a connection is (idle, reading a request, served, answering) and since when, and since
//! when its output has been waiting for the client to read: what its watchdog reads to enforce
//! IDLE_TIMEOUT_SECONDS and REQUEST_TIMEOUT_SECONDS (for requests and for replies), and what the
//! routes set once a request's body is in.

use std::{
    sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering},
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};

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

/// Where a connection is in its life, for the listener choosing which one gives its slot back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// Accepted; its first request head is not whole in the kernel yet.
    Arriving = 0,
    /// Its head is whole in the kernel, its body not: waiting for hyper's buffers.
    Queued = 1,
    /// Its whole request is in the kernel (an ordinary event): never reclaimed.
    Whole = 2,
    /// In hyper's hands (see [`Phase`]).
    Http = 3,
    /// Answered and closing (the lingering close): nothing more to do for it.
    Closing = 4,
}

/// The phase and since when, in one atomic: updated on reads, writes and by the service, all
/// within the connection's task, and read by its watchdog and by the listener when it looks for
/// a connection to reclaim, so no lock and no wake-ups.
pub(super) struct ConnState {
    /// When the connection was accepted.
    epoch: Instant,
    /// Phase in the top two bits, milliseconds since `epoch` below.
    packed: AtomicU64,
    /// 1 + milliseconds since `epoch` when the socket first refused output that is still
    /// unwritten; 0 while nothing waits.
    blocked: AtomicU64,
    /// Milliseconds since `epoch` of the last read that brought bytes.
    last_read: AtomicU64,
    /// On a spare slot: serves the probes and `/metrics` only.
    spare: AtomicBool,
    /// A [`Stage`].
    stage: AtomicU8,
    /// A byte of it has arrived.
    heard: AtomicBool,
    /// Told to give its slot back.
    evicted: AtomicBool,
    evict: Notify,
}

const MS_BITS: u64 = (1 << 62) - 1;

impl ConnState {
    /// Accepted now: arriving, its head's clock running from now.
    pub(super) fn new(spare: bool) -> ConnState {
        ConnState {
            epoch: Instant::now(),
            packed: AtomicU64::new((Phase::Head as u64) << 62),
            blocked: AtomicU64::new(0),
            last_read: AtomicU64::new(0),
            spare: AtomicBool::new(spare),
            stage: AtomicU8::new(Stage::Arriving as u8),
            heard: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
        }
    }

    /// On a spare slot: serves the probes and `/metrics` only.
    pub(super) fn probes_only(&self) -> bool {
        self.spare.load(Ordering::Relaxed)
    }

    pub(super) fn set_spare(&self, spare: bool) {
        self.spare.store(spare, Ordering::Relaxed);
    }

    pub(super) fn set_stage(&self, stage: Stage) {
        self.stage.store(stage as u8, Ordering::Relaxed);
    }

    fn stage(&self) -> Stage {
        match self.stage.load(Ordering::Relaxed) {
            0 => Stage::Arriving,
            1 => Stage::Queued,
            2 => Stage::Whole,
            3 => Stage::Http,
            _ => Stage::Closing,
        }
    }

    pub(super) fn heard(&self) -> bool {
        self.heard.load(Ordering::Relaxed)
    }

    /// More of its first request head arrived in the kernel (seen without reading it).
    pub(super) fn on_peek(&self) {
        if !self.heard.swap(true, Ordering::Relaxed) {
            // The head's clock runs from its first byte.
            self.set(Phase::Head, true);
        }
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_read.store(ms, Ordering::Relaxed);
    }

    /// Tells the connection to close now and give its slot back; false if it was told before.
    pub(super) fn evict(&self) -> bool {
        if self.evicted.swap(true, Ordering::AcqRel) {
            return false;
        }
        // Stored when nobody waits: the connection's next wait ends at once.
        self.evict.notify_one();
        true
    }

    /// Resolves once the connection was told to give its slot back.
    pub(super) async fn evicted(&self) {
        self.evict.notified().await
    }

    /// The same, as a future to keep and poll.
    pub(super) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.evict.notified()
    }

    pub(super) fn was_evicted(&self) -> bool {
        self.evicted.load(Ordering::Acquire)
    }

    /// The eviction came too late (it made progress meanwhile): may be told again.
    pub(super) fn pardon(&self) {
        self.evicted.store(false, Ordering::Release);
    }

    /// How little this connection is doing, for a slot to reclaim: `None` if it is doing
    /// something a reclaim would cut (an answer being made or sent, a request arriving, a
    /// whole request waiting for hyper); otherwise a rank (0: answered or silent, 1: between
    /// requests, 2: a head or body that brought no byte for STALLED, 3: a head waiting for
    /// hyper's buffers whose body has not come whole). Lower ranks go first.
    pub(super) fn idleness(&self, now: Instant) -> Option<u8> {
        if self.blocked_since().is_some() {
            return None;
        }
        let last_read = self.epoch + Duration::from_millis(self.last_read.load(Ordering::Relaxed));
        let stalled = now.saturating_duration_since(last_read) >= STALLED;
        match self.stage() {
            Stage::Closing => Some(0),
            Stage::Whole => None,
            Stage::Arriving if !stalled => None,
            Stage::Arriving if !self.heard.load(Ordering::Relaxed) => Some(0),
            Stage::Arriving => Some(2),
            Stage::Queued => stalled.then_some(3),
            Stage::Http => match self.get().0 {
                Phase::Idle => Some(1),
                Phase::Head | Phase::Served => stalled.then_some(2),
                Phase::Answering => None,
            },
        }
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
        self.heard.store(true, Ordering::Relaxed);
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
