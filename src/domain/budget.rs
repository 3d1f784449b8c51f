//! The deletion breaker: at most MAX_DELETIONS_PER_WORKLOAD pods of one workload and
//! MAX_DELETIONS pods overall per window, across every replica of the function.
//!
//! The count is shared through the Kubernetes API (`cluster::records`: one record per deletion in
//! the function's own namespace, watched); this module decides from it, pure. Within one process
//! a ledger of our own deletions, merged with the records by name, makes the count exact
//! (reserved before the DELETE, before the record exists).
//! Windows are at most one hour: the API server keeps Events for `--event-ttl` (1 h by default).

use std::{str::FromStr, sync::Mutex, time::Duration};

use k8s_openapi::{api::core::v1::ObjectReference, jiff::Timestamp};

use crate::domain::workload::{Kind, Workload};

/// The longest window: Events older than the API server's default `--event-ttl` are gone.
pub const MAX_WINDOW: Duration = Duration::from_secs(3600);

/// How long a spent overall budget answers from memory before one event looks again.
pub const OPEN_MEMORY: Duration = Duration::from_secs(5);

/// `N/DURATION`, e.g. `3/10m`: at most N deletions in any sliding window of DURATION.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub max: u32,
    pub window: Duration,
}

impl FromStr for Budget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let usage = "expected N/DURATION (e.g. 3/10m; DURATION in s, m or h, at most 1h), or off";
        let (n, d) = s.trim().split_once('/').ok_or(usage)?;
        let max: u32 = n.trim().parse().map_err(|_| usage)?;
        if max == 0 {
            return Err(format!("{usage}: N must be at least 1"));
        }
        let d = d.trim();
        let split = d.find(|c: char| !c.is_ascii_digit()).ok_or(usage)?;
        let (num, unit) = d.split_at(split);
        let num: u64 = num.parse().map_err(|_| usage)?;
        let secs = match unit {
            "s" => num,
            "m" => num.saturating_mul(60),
            "h" => num.saturating_mul(3600),
            _ => return Err(usage.into()),
        };
        let window = Duration::from_secs(secs);
        if window.is_zero() || window > MAX_WINDOW {
            return Err(format!(
                "{usage}: Kubernetes keeps Events for one hour, the count cannot look further back"
            ));
        }
        Ok(Budget { max, window })
    }
}

impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.window.as_secs();
        if s.is_multiple_of(3600) {
            write!(f, "{}/{}h", self.max, s / 3600)
        } else if s.is_multiple_of(60) {
            write!(f, "{}/{}m", self.max, s / 60)
        } else {
            write!(f, "{}/{s}s", self.max)
        }
    }
}

/// Parses a budget variable: `off` (or `none`, `0`) turns it off.
pub fn parse_budget(s: &str) -> Result<Option<Budget>, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "off" | "none" | "0" | "false" => Ok(None),
        _ => s.parse().map(Some),
    }
}

/// One deletion: a record read from the API or reserved by this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    /// The record's name: the same deletion seen both ways counts once.
    pub key: String,
    /// `namespace/Kind/name` of the workload; `None` for standalone pods.
    pub workload: Option<String>,
    pub at: Timestamp,
}

/// The key a workload is counted under; standalone and mirror pods have none (they are not
/// recreated, so there is no loop to stop: only the overall budget applies).
pub fn workload_key(ns: &str, w: &Workload) -> Option<String> {
    match w.kind {
        Kind::Standalone | Kind::Mirror => None,
        _ => Some(format!("{ns}/{}/{}", w.kind.as_str(), w.name)),
    }
}

/// The `related` reference our Events carry, so the next count can attribute them.
pub fn related(ns: &str, w: &Workload) -> Option<ObjectReference> {
    workload_key(ns, w).map(|_| ObjectReference {
        api_version: Some(w.api_version.clone()).filter(|v| !v.is_empty()),
        kind: Some(w.kind.bare().to_string()),
        name: Some(w.name.clone()),
        namespace: Some(ns.to_string()),
        ..Default::default()
    })
}

/// Which budget is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Workload,
    Overall,
}

/// The breaker is open: no deletion; a person must look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub scope: Scope,
    pub count: usize,
    pub budget: Budget,
}

/// A spent overall budget, remembered: until `until` events are refused without a look (one
/// event then looks again); never past `closes_at`, when the deletions it counted leave the
/// window and it would close by itself.
#[derive(Debug, Clone)]
struct Spent {
    open: Open,
    until: Timestamp,
    closes_at: Timestamp,
}

impl Open {
    /// The reason when the pod was not looked up: the overall budget refuses every deletion.
    pub fn reason_unresolved(&self) -> String {
        format!(
            "deletion breaker open: {} pods deleted in the last {}s (MAX_DELETIONS={}); a person \
             must look (answered from memory: every deletion is refused, the pod was not looked up)",
            self.count,
            self.budget.window.as_secs(),
            self.budget
        )
    }

    pub fn reason(&self, w: &Workload) -> String {
        match self.scope {
            Scope::Workload => format!(
                "deletion breaker open: {} pods of workload {w} deleted in the last {}s \
                 (MAX_DELETIONS_PER_WORKLOAD={}); a delete loop? a person must look",
                self.count,
                self.budget.window.as_secs(),
                self.budget
            ),
            Scope::Overall => format!(
                "deletion breaker open: {} pods deleted in the last {}s (MAX_DELETIONS={}); \
                 a person must look (workload {w})",
                self.count,
                self.budget.window.as_secs(),
                self.budget
            ),
        }
    }
}

/// A deletion reserved in the ledger; give it back with [`Breaker::release`] if it did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub key: String,
    /// The ledger already held this key (an earlier removal of the same pod whose answer was
    /// lost): giving this ticket back leaves that one counted.
    pub(crate) held_before: bool,
}

/// The breaker of one process. Cheap to share (`Arc`); the counting state is the API's.
#[derive(Debug)]
pub struct Breaker {
    pub per_workload: Option<Budget>,
    pub overall: Option<Budget>,
    /// Our own recent deletions, whose Events may not be listed yet.
    ledger: Mutex<Vec<Deletion>>,
    /// The overall budget, when a deletion found it spent: one cluster-wide fact, not per pod.
    spent: Mutex<Option<Spent>>,
}

impl Breaker {
    pub fn new(per_workload: Option<Budget>, overall: Option<Budget>) -> Breaker {
        Breaker {
            per_workload,
            overall,
            ledger: Mutex::new(Vec::new()),
            spent: Mutex::new(None),
        }
    }

    /// Whether the overall budget is known to be spent, so that an event can be refused without
    /// any API call. For [`OPEN_MEMORY`] after a deletion found it spent; then the next caller
    /// gets `None` (it looks: the GET and the count) and the others keep the answer for another
    /// [`OPEN_MEMORY`]: one look per period, like a token bucket of one. Never past the time
    /// the deletions counted then leave the window, and forgotten when a reserved deletion is
    /// given back: a deletion the budget would let through is never refused from memory.
    pub fn known_open(&self, now: Timestamp) -> Option<Open> {
        let mut spent = self.spent.lock().unwrap_or_else(|e| e.into_inner());
        let s = spent.as_mut()?;
        if now >= s.closes_at {
            *spent = None;
            return None;
        }
        if now < s.until {
            return Some(s.open.clone());
        }
        s.until = now
            .saturating_add(OPEN_MEMORY)
            .unwrap_or(now)
            .min(s.closes_at);
        None
    }

    fn remember_spent(&self, open: &Open, mut ats: Vec<Timestamp>, now: Timestamp) {
        // The count falls below the budget once the (count - max + 1) oldest have left it.
        ats.sort();
        let Some(oldest) = ats.get(open.count.saturating_sub(open.budget.max as usize)) else {
            return;
        };
        let closes_at = oldest.saturating_add(open.budget.window).unwrap_or(now);
        let until = now
            .saturating_add(OPEN_MEMORY)
            .unwrap_or(now)
            .min(closes_at);
        *self.spent.lock().unwrap_or_else(|e| e.into_inner()) = Some(Spent {
            open: open.clone(),
            until,
            closes_at,
        });
    }

    pub fn enabled(&self) -> bool {
        self.per_workload.is_some() || self.overall.is_some()
    }

    fn longest(&self) -> Duration {
        [self.per_workload, self.overall]
            .into_iter()
            .flatten()
            .map(|b| b.window)
            .max()
            .unwrap_or_default()
    }

    /// Counts `listed` and the ledger within each window and decides. With `reserve`, a
    /// closed breaker records `event_key` (the name of the record to be written) in the ledger
    /// before the DELETE, so this process's concurrent deletions see it at once.
    ///
    /// The key names the pod's removal (one per pod uid, `cluster::records`): a deletion already
    /// counted under it (an earlier attempt whose answer was lost) is this same deletion, so it
    /// is left out of the count that decides and counted once.
    pub fn admit(
        &self,
        listed: &[Deletion],
        workload: Option<&str>,
        now: Timestamp,
        event_key: &str,
        reserve: bool,
    ) -> Result<Option<Ticket>, Open> {
        let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        let longest = self.longest();
        let age = |s: &Deletion| now.duration_since(s.at).unsigned_abs();
        ledger.retain(|s| age(s) <= longest);
        let all = || {
            listed
                .iter()
                .filter(|s| !ledger.iter().any(|l| l.key == s.key))
                .chain(ledger.iter())
                .filter(|s| s.key != event_key)
        };
        if let (Some(b), Some(w)) = (self.per_workload, workload) {
            let count = all()
                .filter(|s| s.workload.as_deref() == Some(w) && age(s) <= b.window)
                .count();
            if count >= b.max as usize {
                return Err(Open {
                    scope: Scope::Workload,
                    count,
                    budget: b,
                });
            }
        }
        if let Some(b) = self.overall {
            let counted: Vec<Timestamp> =
                all().filter(|s| age(s) <= b.window).map(|s| s.at).collect();
            if counted.len() >= b.max as usize {
                let open = Open {
                    scope: Scope::Overall,
                    count: counted.len(),
                    budget: b,
                };
                // Remembered for real deletions only (DRY_RUN reserves nothing).
                if reserve {
                    self.remember_spent(&open, counted, now);
                }
                return Err(open);
            }
        }
        if !reserve {
            return Ok(None);
        }
        *self.spent.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let held_before = ledger.iter().any(|l| l.key == event_key);
        if !held_before {
            ledger.push(Deletion {
                key: event_key.to_string(),
                workload: workload.map(String::from),
                at: now,
            });
        }
        Ok(Some(Ticket {
            key: event_key.to_string(),
            held_before,
        }))
    }

    /// How many deletions this process holds reserved or made (within the longest window).
    #[cfg(test)]
    pub(crate) fn reserved(&self) -> usize {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The reserved deletion did not happen (gone, stale, refused): it must not count. A ticket
    /// taken over from a lost answer leaves that earlier attempt counted: it may have happened.
    pub fn release(&self, t: Ticket) {
        if t.held_before {
            return;
        }
        let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        ledger.retain(|s| s.key != t.key);
        *self.spent.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn seen(key: &str, w: Option<&str>, at: i64) -> Deletion {
        Deletion {
            key: key.into(),
            workload: w.map(String::from),
            at: ts(at),
        }
    }

    #[test]
    fn budgets_parse_and_print() {
        assert_eq!(
            "3/10m".parse(),
            Ok(Budget {
                max: 3,
                window: Duration::from_secs(600)
            })
        );
        assert_eq!(
            " 20 / 1m ".parse::<Budget>().map(|b| b.to_string()),
            Ok("20/1m".to_string())
        );
        assert_eq!("5/90s".parse::<Budget>().unwrap().to_string(), "5/90s");
        assert_eq!("1/1h".parse::<Budget>().unwrap().window, MAX_WINDOW);
        for bad in [
            "3", "0/1m", "3/0m", "3/2h", "3/10", "3/10d", "x/1m", "3/m", "-1/1m",
        ] {
            assert!(bad.parse::<Budget>().is_err(), "{bad:?}");
        }
        assert_eq!(parse_budget("off"), Ok(None));
        assert_eq!(parse_budget("OFF"), Ok(None));
        assert!(parse_budget("3/1m").unwrap().is_some());
    }

    #[test]
    fn the_workload_budget_counts_only_that_workload_within_its_window() {
        let b = Breaker::new(Some("2/60s".parse().unwrap()), None);
        let w = Some("ns/Deployment/web");
        let listed = vec![
            seen("ns/e1", w, -30),
            seen("ns/e2", Some("ns/Deployment/other"), -10),
            seen("ns/e3", w, -61), // outside the window
            seen("ns/e4", None, -5),
        ];
        // One of web in the window: a second is allowed, and reserved.
        let t = b.admit(&listed, w, ts(0), "ns/e5", true).unwrap().unwrap();
        assert_eq!(t.key, "ns/e5");
        // The reservation counts at once (before its Event is listed): the third is refused.
        let open = b.admit(&listed, w, ts(1), "ns/e6", true).unwrap_err();
        assert_eq!((open.scope, open.count), (Scope::Workload, 2));
        assert!(
            open.reason(&Workload {
                kind: Kind::Deployment,
                name: "web".into(),
                api_version: "apps/v1".into()
            })
            .contains("2 pods of workload Deployment/web")
        );
        // Once listed, the same deletion still counts once.
        let mut listed2 = listed.clone();
        listed2.push(seen("ns/e5", w, 0));
        assert!(b.admit(&listed2, w, ts(1), "ns/e6", false).is_err());
        // A release (the delete did not happen) gives the slot back.
        b.release(t);
        assert!(b.admit(&listed, w, ts(1), "ns/e6", false).is_ok());
        // The window slides: 31 s later e1 is out of it.
        let _ = b.admit(&listed, w, ts(1), "ns/e7", true).unwrap();
        assert!(b.admit(&listed, w, ts(2), "ns/e8", false).is_err());
        assert!(b.admit(&listed, w, ts(31), "ns/e8", false).is_ok());
        // Standalone pods (no workload key) are not held by the workload budget.
        assert!(b.admit(&listed, None, ts(2), "ns/e9", false).is_ok());
    }

    #[test]
    fn one_pod_removal_counts_once_however_many_attempts_it_took() {
        let b = Breaker::new(Some("2/60s".parse().unwrap()), None);
        let w = Some("ns/Deployment/web");
        // A removal whose answer was lost keeps its ticket: it counts.
        let lost = b.admit(&[], w, ts(0), "ns/pod-a", true).unwrap().unwrap();
        assert!(!lost.held_before);
        // The retry of the same pod is the same removal: not refused by its own first attempt,
        // not counted twice, and giving its ticket back leaves the first attempt counted.
        let retry = b.admit(&[], w, ts(5), "ns/pod-a", true).unwrap().unwrap();
        assert!(retry.held_before);
        assert_eq!(b.reserved(), 1);
        b.release(retry);
        assert_eq!(b.reserved(), 1);
        // Listed as well (its record written), still once: one more pod fits a budget of 2.
        let listed = vec![seen("ns/pod-a", w, 0)];
        let _ = b.admit(&listed, w, ts(6), "ns/pod-b", true).unwrap();
        let open = b.admit(&listed, w, ts(7), "ns/pod-c", true).unwrap_err();
        assert_eq!(open.count, 2);
        // A full budget still lets the retry of a removal it already counts through.
        assert!(b.admit(&listed, w, ts(8), "ns/pod-a", true).is_ok());
    }

    #[test]
    fn the_overall_budget_counts_every_deletion() {
        let b = Breaker::new(
            Some("5/60s".parse().unwrap()),
            Some("3/60s".parse().unwrap()),
        );
        let listed = vec![
            seen("a/e1", Some("a/StatefulSet/db"), -1),
            seen("b/e2", None, -2),
            seen("c/e3", Some("c/Job/j"), -70),
        ];
        assert!(b.admit(&listed, None, ts(0), "d/e4", true).is_ok());
        let open = b
            .admit(&listed, Some("x/Deployment/y"), ts(0), "d/e5", true)
            .unwrap_err();
        assert_eq!((open.scope, open.count), (Scope::Overall, 3));
        // Turned off: never open.
        let off = Breaker::new(None, None);
        assert!(!off.enabled());
        assert!(off.admit(&listed, None, ts(0), "d/e6", true).is_ok());
    }

    #[test]
    fn workloads_are_keyed_by_namespace_kind_and_name() {
        let w = Workload {
            kind: Kind::Deployment,
            name: "web".into(),
            api_version: "apps/v1".into(),
        };
        assert_eq!(workload_key("ns", &w).as_deref(), Some("ns/Deployment/web"));
        let standalone = Workload {
            kind: Kind::Standalone,
            name: "p".into(),
            api_version: String::new(),
        };
        assert_eq!(workload_key("ns", &standalone), None);
        assert_eq!(
            related("ns", &w).unwrap().kind.as_deref(),
            Some("Deployment")
        );
    }
}
