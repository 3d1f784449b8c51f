//! BODY_MEMORY_BYTES: how many bytes of request bodies may be in memory at once, and what each
//! body being read holds of it.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

/// BODY_MEMORY_BYTES, counted in bytes of request body held in memory. Bodies over
/// SMALL_BODY also take from `large`, a quarter smaller: that quarter stays free for ordinary
/// events (a Falco event is a few KiB), so a flood of large bodies cannot starve them.
/// Nothing ever waits for bytes (a request over the budget is answered 503), so two atomic
/// counters do what semaphores would, without a lock on every release.
pub(super) struct BodyBudget {
    /// Bytes free.
    all: AtomicUsize,
    large: AtomicUsize,
}

/// Every real Falco event, in any envelope, is far below this.
const SMALL_BODY: usize = 64 << 10;

/// What one body holds of the budget, and then its decoded event (`app::Memory`): it may
/// outlive the request with an action that runs to its end. Given back on drop.
pub(super) struct Reservation {
    budget: Arc<BodyBudget>,
    bytes: usize,
    large_bytes: usize,
}

impl BodyBudget {
    pub(super) fn new(bytes: usize) -> BodyBudget {
        BodyBudget {
            all: AtomicUsize::new(bytes),
            large: AtomicUsize::new(bytes - bytes / 4),
        }
    }

    pub(super) fn reserve(self: &Arc<Self>) -> Reservation {
        Reservation {
            budget: self.clone(),
            bytes: 0,
            large_bytes: 0,
        }
    }
}

/// Takes `n` bytes from `free` if they are there now.
fn take(free: &AtomicUsize, n: usize) -> bool {
    n == 0
        || free
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |f| f.checked_sub(n))
            .is_ok()
}

impl Reservation {
    /// Bytes held.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Grows to `to` bytes if they are free now; false (and unchanged) if not.
    pub(super) fn grow(&mut self, to: usize) -> bool {
        let large_to = if to > SMALL_BODY { to } else { 0 };
        let more = to.saturating_sub(self.bytes);
        let more_large = large_to.saturating_sub(self.large_bytes);
        if !take(&self.budget.all, more) {
            return false;
        }
        if !take(&self.budget.large, more_large) {
            self.budget.all.fetch_add(more, Ordering::AcqRel);
            return false;
        }
        self.bytes += more;
        self.large_bytes += more_large;
        true
    }
}

impl crate::app::Memory for Reservation {
    fn bytes(&self) -> usize {
        self.bytes
    }

    fn grow(&mut self, to: usize) -> bool {
        Reservation::grow(self, to)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.all.fetch_add(self.bytes, Ordering::AcqRel);
        self.budget
            .large
            .fetch_add(self.large_bytes, Ordering::AcqRel);
    }
}
