//! Event storms: one noisy rule, thousands of events for the same pod, redeliveries from Knative
//! and Argo. Concurrent events for the same target share one API round trip (the first acts, the
//! others wait for its result), and a successful outcome is remembered for DEDUP_SECONDS, so a
//! storm costs one GET and one DELETE. Failures are never remembered: the next event tries again.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{sync::watch, time::Instant};

use crate::{
    action::{ActionError, Outcome},
    event::Target,
};

type Shared = Option<Result<Outcome, ActionError>>;

enum Slot {
    InFlight(watch::Receiver<Shared>),
    Done { at: Instant, outcome: Outcome },
}

/// Beyond this many remembered targets, expired ones are swept on insert.
const SWEEP_ABOVE: usize = 1024;

#[derive(Clone)]
pub struct Coalescer {
    window: Duration,
    slots: Arc<Mutex<HashMap<Target, Slot>>>,
}

/// Removes the in-flight slot if the leader is cancelled (its client went away), so waiters
/// and later events do not wait for a result that never comes.
struct LeaderGuard<'a> {
    slots: &'a Mutex<HashMap<Target, Slot>>,
    key: &'a Target,
    armed: bool,
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.slots
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(self.key);
        }
    }
}

impl Coalescer {
    pub fn new(window: Duration) -> Coalescer {
        Coalescer {
            window,
            slots: Arc::default(),
        }
    }

    /// Runs `act` for `key` unless an identical event is in flight (then waits for its result)
    /// or succeeded within the window (then answers with that outcome).
    pub async fn run<F, Fut>(&self, key: &Target, act: F) -> Result<Outcome, ActionError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Outcome, ActionError>>,
    {
        let mut act = Some(act);
        loop {
            let (tx, mut waiting) = {
                let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
                match slots.get(key) {
                    Some(Slot::Done { at, outcome }) if at.elapsed() < self.window => {
                        let mut o = outcome.clone();
                        o.reason = format!(
                            "already handled {} ms ago: {}",
                            at.elapsed().as_millis(),
                            o.reason
                        );
                        return Ok(o);
                    }
                    Some(Slot::InFlight(rx)) => (None, Some(rx.clone())),
                    _ => {
                        if slots.len() > SWEEP_ABOVE {
                            let window = self.window;
                            slots.retain(|_, s| match s {
                                Slot::Done { at, .. } => at.elapsed() < window,
                                Slot::InFlight(_) => true,
                            });
                        }
                        let (tx, rx) = watch::channel(None);
                        slots.insert(key.clone(), Slot::InFlight(rx));
                        (Some(tx), None)
                    }
                }
            };
            if let Some(rx) = waiting.as_mut() {
                // A dropped sender means the leader was cancelled: loop and take over.
                if let Ok(shared) = rx.wait_for(Option::is_some).await
                    && let Some(result) = shared.clone()
                {
                    return result.map(|mut o| {
                        o.reason = format!(
                            "handled together with a concurrent identical event: {}",
                            o.reason
                        );
                        o
                    });
                }
                continue;
            }
            let tx = tx.expect("leader has a sender");
            let mut guard = LeaderGuard {
                slots: &self.slots,
                key,
                armed: true,
            };
            let act = act.take().expect("the leader acts once");
            let result = act().await;
            {
                let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
                match &result {
                    Ok(outcome) if !self.window.is_zero() => {
                        slots.insert(
                            key.clone(),
                            Slot::Done {
                                at: Instant::now(),
                                outcome: outcome.clone(),
                            },
                        );
                    }
                    _ => {
                        slots.remove(key);
                    }
                }
                guard.armed = false;
            }
            let _ = tx.send(Some(result.clone()));
            return result;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::OutcomeKind;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn target(name: &str) -> Target {
        Target {
            namespace: "ns".into(),
            name: name.into(),
            container_id: None,
            uid: None,
        }
    }

    fn deleted() -> Outcome {
        Outcome {
            kind: OutcomeKind::Deleted,
            reason: "r".into(),
            pod: None,
        }
    }

    #[tokio::test]
    async fn concurrent_events_for_one_pod_act_once() {
        let c = Coalescer::new(Duration::from_secs(5));
        let calls = Arc::new(AtomicUsize::new(0));
        let t = target("p");
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (c, calls, t) = (c.clone(), calls.clone(), t.clone());
            tasks.push(tokio::spawn(async move {
                c.run(&t, || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(deleted())
                })
                .await
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap().kind, OutcomeKind::Deleted);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn outcomes_are_remembered_for_the_window_only() {
        let c = Coalescer::new(Duration::from_secs(5));
        let calls = AtomicUsize::new(0);
        let act = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(deleted())
        };
        c.run(&target("p"), act).await.unwrap();
        let again = c.run(&target("p"), act).await.unwrap();
        assert!(
            again.reason.starts_with("already handled"),
            "{}",
            again.reason
        );
        c.run(&target("other"), act).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        tokio::time::advance(Duration::from_secs(6)).await;
        c.run(&target("p"), act).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn failures_are_not_remembered() {
        let c = Coalescer::new(Duration::from_secs(5));
        let calls = AtomicUsize::new(0);
        let fail = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(ActionError::Unreachable {
                verb: "get",
                message: "down".into(),
            })
        };
        assert!(c.run(&target("p"), fail).await.is_err());
        assert!(c.run(&target("p"), fail).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_cancelled_leader_does_not_block_the_next_event() {
        let c = Coalescer::new(Duration::from_secs(5));
        let t = target("p");
        let hung = c.run(&t, std::future::pending);
        assert!(
            tokio::time::timeout(Duration::from_millis(20), hung)
                .await
                .is_err()
        );
        let o = tokio::time::timeout(
            Duration::from_secs(1),
            c.run(&t, || async { Ok(deleted()) }),
        )
        .await
        .expect("not blocked by the cancelled leader");
        assert_eq!(o.unwrap().kind, OutcomeKind::Deleted);
    }
}
