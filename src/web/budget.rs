//! BODY_MEMORY_BYTES: how many bytes of request bodies may be in memory at once, and what each
//! body holds of it.
//!
//! A body holds what has arrived of it (a declared length is not memory), except a large body,
//! which reserves its declared length up front so that it is refused before it is sent. Bodies
//! that are large, or slow (not complete within `PROMPT`), also take from `held`, a quarter
//! smaller than the whole: that quarter is open only to ordinary events arriving at once (a Falco
//! event is a few KiB and arrives with its head), so neither large bodies nor slow senders can
//! starve them.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};
use std::time::Duration;

/// Every real Falco event, in any envelope, is far below this.
pub(super) const SMALL_BODY: usize = 64 << 10;

/// A small body still incomplete this long after its head is slow: from then on it holds its
/// bytes from the pool open to large and slow bodies.
pub(super) const PROMPT: Duration = Duration::from_millis(250);

/// BODY_MEMORY_BYTES. Nothing ever waits for bytes (a body over the budget is answered 503), so
/// two atomic counters do what semaphores would, without a lock on every release.
pub(super) struct BodyBudget(Arc<Pools>);

struct Pools {
    /// Bytes free.
    all: AtomicUsize,
    /// Bytes free to large and slow bodies: three quarters of the budget.
    held: AtomicUsize,
}

/// What one body holds of the budget, given back on drop. Owned and `Send`: it can travel with
/// what was made of the body (the decoded event) until that is dropped.
pub(crate) struct Reservation {
    pools: Arc<Pools>,
    bytes: usize,
    /// Taken from `held` too: all of `bytes`, or none.
    restricted: bool,
}

impl BodyBudget {
    pub(super) fn new(bytes: usize) -> BodyBudget {
        BodyBudget(Arc::new(Pools {
            all: AtomicUsize::new(bytes),
            held: AtomicUsize::new(bytes - bytes / 4),
        }))
    }

    /// An empty reservation, for an ordinary body.
    pub(super) fn reserve(&self) -> Reservation {
        Reservation {
            pools: self.0.clone(),
            bytes: 0,
            restricted: false,
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
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Grows to `to` bytes if they are free now; false (and unchanged) if not. Beyond
    /// SMALL_BODY the reservation is restricted to the pool of large bodies.
    pub(crate) fn grow(&mut self, to: usize) -> bool {
        if to <= self.bytes {
            return true;
        }
        if to > SMALL_BODY && !self.restrict() {
            return false;
        }
        let more = to - self.bytes;
        if !take(&self.pools.all, more) {
            return false;
        }
        if self.restricted && !take(&self.pools.held, more) {
            self.pools.all.fetch_add(more, Ordering::AcqRel);
            return false;
        }
        self.bytes = to;
        true
    }

    /// Moves what is held to the pool of large and slow bodies (once); false (and unchanged) if
    /// it is full.
    pub(crate) fn restrict(&mut self) -> bool {
        if self.restricted {
            return true;
        }
        if !take(&self.pools.held, self.bytes) {
            return false;
        }
        self.restricted = true;
        true
    }

    /// Gives back what is held beyond `to` bytes.
    pub(crate) fn shrink(&mut self, to: usize) {
        if to >= self.bytes {
            return;
        }
        let less = self.bytes - to;
        self.pools.all.fetch_add(less, Ordering::AcqRel);
        if self.restricted {
            self.pools.held.fetch_add(less, Ordering::AcqRel);
        }
        self.bytes = to;
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
        self.shrink(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_and_large_bodies_leave_a_quarter_to_ordinary_ones() {
        let budget = BodyBudget::new(4 << 20);
        // Large bodies: three quarters, then no more.
        let mut large: Vec<_> = (0..3)
            .map(|_| {
                let mut r = budget.reserve();
                assert!(r.grow(1 << 20));
                r
            })
            .collect();
        let mut fourth = budget.reserve();
        assert!(!fourth.grow(1 << 20));
        assert_eq!(fourth.bytes(), 0);
        // A slow small body cannot move into the full pool: it stays where it was.
        let mut slow = budget.reserve();
        assert!(slow.grow(1000));
        assert!(!slow.restrict());
        // Ordinary bodies still have the last quarter, up to the whole budget.
        let mut ordinary: Vec<_> = (0..16)
            .map(|i| {
                let mut r = budget.reserve();
                assert!(r.grow(if i == 15 {
                    SMALL_BODY - 1000
                } else {
                    SMALL_BODY
                }));
                r
            })
            .collect();
        assert!(!budget.reserve().grow(1));
        // Given back on drop and by shrinking.
        ordinary[0].shrink(1);
        assert!(budget.reserve().grow(SMALL_BODY - 1));
        ordinary.clear();
        drop(large.pop());
        assert!(slow.restrict());
        assert!(!fourth.grow(1 << 20));
        assert!(fourth.grow((1 << 20) - 1000));
    }

    #[test]
    fn a_refused_growth_takes_nothing() {
        let budget = BodyBudget::new(1 << 20);
        let mut r = budget.reserve();
        assert!(r.grow(SMALL_BODY));
        assert!(!r.grow(1 << 20));
        assert_eq!(r.bytes(), SMALL_BODY);
        drop(r);
        let mut whole = budget.reserve();
        assert!(whole.grow(SMALL_BODY));
        assert!(whole.restrict());
        assert!(whole.grow(768 << 10));
        // The last quarter: for ordinary bodies only.
        assert!(!budget.reserve().grow(SMALL_BODY + 1));
        assert!(budget.reserve().grow(SMALL_BODY));
    }
}
