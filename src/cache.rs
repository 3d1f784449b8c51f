//! The one cache type: a map whose entries expire a fixed time after they were written, bounded
//! in entries and in bytes, used by every per-process memory (the owner and namespace caches,
//! the storm memory). Pure: `now` is passed in.
//!
//! One time to live for every entry makes the order of writing the order of expiry, so a queue
//! in that order expires entries on time and evicts the oldest first, each in O(1) amortized: no
//! sweep of the whole map, no clock of its own. (`quick_cache` and `lru` bound entries or
//! weight but know no time to live; `moka` does, with a dozen crates and its own housekeeping,
//! for what is this page.)

use std::{
    collections::{HashMap, VecDeque},
    hash::Hash,
    time::{Duration, Instant},
};

/// What one entry costs beyond what its weigher counts (the map's and the queue's slots).
pub const ENTRY_OVERHEAD: usize = 64;

struct Entry<V> {
    value: V,
    at: Instant,
    /// Which write of the key this is: a queue slot of an older write is stale.
    write: u64,
    weight: usize,
}

/// A map of at most `max_entries` entries and `max_bytes` bytes (each entry weighed by `weigh`
/// plus [`ENTRY_OVERHEAD`]), whose entries are forgotten `ttl` after they were written.
pub struct TtlMap<K, V> {
    ttl: Duration,
    max_entries: usize,
    max_bytes: usize,
    weigh: fn(&K, &V) -> usize,
    bytes: usize,
    writes: u64,
    map: HashMap<K, Entry<V>>,
    /// Keys in the order they were written (expiry order), with the write they were: at most
    /// `2 × max_entries + 16` slots, stale ones (a key written again, or removed) included.
    order: VecDeque<(K, u64)>,
}

impl<K: Hash + Eq + Clone, V> TtlMap<K, V> {
    pub fn new(
        ttl: Duration,
        max_entries: usize,
        max_bytes: usize,
        weigh: fn(&K, &V) -> usize,
    ) -> TtlMap<K, V> {
        TtlMap {
            ttl,
            max_entries,
            max_bytes,
            weigh,
            bytes: 0,
            writes: 0,
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The value of `key` written less than the time to live before `now`, and when it was
    /// written.
    pub fn get(&mut self, key: &K, now: Instant) -> Option<(&V, Instant)> {
        self.expire(now);
        self.map.get(key).map(|e| (&e.value, e.at))
    }

    /// Writes `key` at `now`, evicting the oldest entries until the bounds hold. An entry that
    /// alone weighs more than the byte bound is not kept (and any older value of `key` is
    /// forgotten): `false`.
    pub fn insert(&mut self, key: K, value: V, now: Instant) -> bool {
        self.remove(&key);
        self.expire(now);
        let weight = (self.weigh)(&key, &value) + ENTRY_OVERHEAD;
        if weight > self.max_bytes || self.max_entries == 0 || self.ttl.is_zero() {
            return false;
        }
        while self.map.len() >= self.max_entries || self.bytes + weight > self.max_bytes {
            self.pop_oldest();
        }
        self.writes += 1;
        self.order.push_back((key.clone(), self.writes));
        self.bytes += weight;
        self.map.insert(
            key,
            Entry {
                value,
                at: now,
                write: self.writes,
                weight,
            },
        );
        true
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let e = self.map.remove(key)?;
        self.bytes -= e.weight;
        // Its queue slot is now stale: drop stale slots once they are half the queue.
        if self.order.len() > 2 * self.map.len() + 16 {
            let map = &self.map;
            self.order
                .retain(|(k, w)| map.get(k).is_some_and(|e| e.write == *w));
        }
        Some(e.value)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The bytes the entries weigh, overhead included.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Forgets the entries written a time to live or more before `now`: they are at the front.
    fn expire(&mut self, now: Instant) {
        while let Some((k, w)) = self.order.front() {
            match self.map.get(k) {
                Some(e) if e.write == *w => {
                    if now.saturating_duration_since(e.at) < self.ttl {
                        return;
                    }
                    self.pop_oldest();
                }
                // A stale slot (the key was written again, or removed).
                _ => {
                    self.order.pop_front();
                }
            }
        }
    }

    /// Forgets the oldest live entry.
    fn pop_oldest(&mut self) {
        while let Some((k, w)) = self.order.pop_front() {
            if self.map.get(&k).is_some_and(|e| e.write == w) {
                if let Some(e) = self.map.remove(&k) {
                    self.bytes -= e.weight;
                }
                return;
            }
        }
    }
}

impl<K, V> std::fmt::Debug for TtlMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TtlMap")
            .field("entries", &self.map.len())
            .field("bytes", &self.bytes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // The weigher's type is `fn(&K, &V)`: `&String` for a map of strings.
    #[allow(clippy::ptr_arg)]
    fn weigh(k: &String, v: &String) -> usize {
        k.len() + v.len()
    }

    fn map(entries: usize, bytes: usize) -> TtlMap<String, String> {
        TtlMap::new(Duration::from_secs(5), entries, bytes, weigh)
    }

    #[test]
    fn entries_expire_on_time() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut m = map(100, 1 << 20);
        m.insert("a".into(), "1".into(), at(0));
        m.insert("b".into(), "2".into(), at(1000));
        assert_eq!(
            m.get(&"a".into(), at(4999)).map(|(v, _)| v.as_str()),
            Some("1")
        );
        assert_eq!(m.get(&"a".into(), at(5000)), None, "expired");
        // Forgotten, not only hidden: its bytes are given back.
        assert_eq!(m.len(), 1);
        assert_eq!(m.bytes(), 2 + ENTRY_OVERHEAD);
        // A rewrite starts its time again.
        m.insert("b".into(), "3".into(), at(5500));
        assert_eq!(
            m.get(&"b".into(), at(10_000)).map(|(v, _)| v.as_str()),
            Some("3")
        );
        assert_eq!(m.get(&"b".into(), at(10_500)), None);
        assert!(m.is_empty() && m.bytes() == 0);
    }

    #[test]
    fn the_oldest_entries_make_room_within_both_bounds() {
        let now = Instant::now();
        let mut m = map(3, 1 << 20);
        for k in ["a", "b", "c", "d"] {
            assert!(m.insert(k.into(), "v".into(), now));
        }
        assert_eq!(m.len(), 3);
        assert!(m.get(&"a".into(), now).is_none(), "the oldest was evicted");
        assert!(m.get(&"d".into(), now).is_some());
        // Bytes: each entry weighs 100 + the overhead; three fit in 3.5 of them.
        let one = 100 + ENTRY_OVERHEAD;
        let mut m = map(100, one * 7 / 2);
        for k in ["a", "b", "c", "d"] {
            assert!(m.insert(k.into(), "v".repeat(99), now));
        }
        assert_eq!(m.len(), 3);
        assert!(m.bytes() <= one * 7 / 2);
        assert!(m.get(&"a".into(), now).is_none());
        // An entry larger than the whole bound is not kept, and forgets the key's old value.
        assert!(!m.insert("d".into(), "v".repeat(one * 4), now));
        assert!(m.get(&"d".into(), now).is_none());
        assert_eq!(m.len(), 2);
    }

    proptest! {
        /// Whatever the writes, the bounds hold, the queue stays within twice the entries, and
        /// every entry answered is the last value written for its key, within its time.
        #[test]
        fn bounds_hold_and_answers_are_the_last_fresh_write(
            ops in proptest::collection::vec((0u8..12, 0usize..300, 0u64..3000, any::<bool>()), 1..300)
        ) {
            let t0 = Instant::now();
            let mut m = map(8, 2000);
            let mut last: HashMap<String, (String, u64)> = HashMap::new();
            let mut now = 0;
            for (k, size, step, remove) in ops {
                now += step;
                let key = format!("k{k}");
                if remove {
                    m.remove(&key);
                    last.remove(&key);
                } else {
                    let v = "v".repeat(size);
                    if m.insert(key.clone(), v.clone(), t0 + Duration::from_millis(now)) {
                        last.insert(key.clone(), (v, now));
                    } else {
                        last.remove(&key);
                    }
                }
                prop_assert!(m.len() <= 8 && m.bytes() <= 2000);
                prop_assert!(m.order.len() <= 2 * 8 + 16, "{} slots", m.order.len());
                let got = m.get(&key, t0 + Duration::from_millis(now)).map(|(v, _)| v.clone());
                if let Some(v) = got {
                    let (want, at) = &last[&key];
                    prop_assert_eq!(&v, want);
                    prop_assert!(now - at < 5000);
                }
            }
        }
    }
}
