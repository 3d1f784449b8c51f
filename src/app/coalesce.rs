//! Event storms: one noisy rule, thousands of events for the same pod, redeliveries from Knative
//! and Argo. Concurrent identical events share one API round trip (the first acts, the others
//! wait for its result), and a successful outcome is remembered for DEDUP_SECONDS, so a storm
//! costs one GET and one DELETE. A remembered outcome answers a later event only when that event
//! proves it names the same pod (its uid or container id matches the pod the outcome was decided
//! on): a pod recreated under the same name is always looked at again. Only outcomes about the
//! pod itself are remembered (the event proved it was that pod, and it was not `stale`): an
//! answer about one event (`stale`, nothing proves it) never answers another. Nor is a state of
//! the guards (`breaker-open`, `held`, and their dry runs): the breaker may close, replicas
//! recover, and the pod's next event must then be acted on. Failures are never remembered: the
//! next event tries again. The memory is bounded in entries and bytes, and forgets on time.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::jiff::Timestamp;
use tokio::{sync::watch, time::Instant};

use crate::{
    cache::TtlMap,
    cluster::error::ApiError,
    domain::falco::Target,
    domain::ident::{Namespace, PodName},
    domain::outcome::{Outcome, OutcomeKind, Why, why},
};

type Shared = Option<Result<Outcome, ApiError>>;

/// At most this many pods remembered, weighing at most this many bytes (an entry is a few
/// hundred bytes: its reason is cut to `LOG_REASON_MAX`).
const DONE_MAX: usize = 4096;
const DONE_BYTES: usize = 2 << 20;

type Done = TtlMap<(Namespace, PodName), Outcome>;

/// What a remembered outcome holds, in bytes.
fn done_weight((ns, name): &(Namespace, PodName), o: &Outcome) -> usize {
    let pod = o.pod.as_ref().map_or(0, |p| {
        p.namespace.len()
            + p.name.len()
            + p.uid.as_ref().map_or(0, String::len)
            + p.workload.as_ref().map_or(0, String::len)
    });
    let seen = o
        .seen
        .as_ref()
        .map_or(0, |s| s.uid.len() + s.container_ids.len() * 64);
    ns.as_str().len() + name.as_str().len() + o.reason.len() + pod + seen
}

/// Whether `o` says something about the pod itself that another event may be answered with:
/// not about the event (`stale`), nor a state of the guards, which may change at any time.
fn about_the_pod(o: &Outcome) -> bool {
    let guards = matches!(o.kind, OutcomeKind::Held(_) | OutcomeKind::BreakerOpen(_))
        || matches!(o.why, Why::Said(s) if s == why::DRY_BREAKER || s == why::DRY_HOLD);
    o.kind != OutcomeKind::Stale && !guards
}

struct State {
    /// Keyed by the whole target, with the leader's event time: only identical events (same
    /// target, same time) share a result as it is. The verdict compares the event's time with the
    /// pod's creation when nothing else proves identity, so an old (replayed or forged) event must
    /// not hand its `stale` to a current one; those only take what the memory can prove.
    in_flight: HashMap<Target, (Option<Timestamp>, watch::Receiver<Shared>)>,
    /// Keyed by the pod's name; reused only when the event proves it is the same pod.
    done: Done,
}

#[derive(Clone)]
pub struct Coalescer {
    state: Arc<Mutex<State>>,
}

/// Removes the in-flight slot if the leader is cancelled, so waiters and later events do not
/// wait for a result that never comes.
struct LeaderGuard<'a> {
    state: &'a Mutex<State>,
    key: &'a Target,
    armed: bool,
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .in_flight
                .remove(self.key);
        }
    }
}

fn name_of(t: &Target) -> (Namespace, PodName) {
    (t.namespace.clone(), t.name.clone())
}

impl Coalescer {
    pub fn new(window: Duration) -> Coalescer {
        Coalescer {
            state: Arc::new(Mutex::new(State {
                in_flight: HashMap::new(),
                done: TtlMap::new(window, DONE_MAX, DONE_BYTES, done_weight),
            })),
        }
    }

    /// Runs `act` for `key` (an event at `at`) unless an identical event is in flight (then waits
    /// for its result) or an outcome for the same, proven pod succeeded within the window (then
    /// answers with it).
    pub async fn run<F, Fut>(
        &self,
        key: &Target,
        at: Option<Timestamp>,
        act: F,
    ) -> Result<Outcome, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Outcome, ApiError>>,
    {
        let mut act = Some(act);
        // Whether this event already waited for a leader of another time: it waits once only,
        // then looks alongside the next one (never queued behind leader after leader).
        let mut waited = false;
        loop {
            let (tx, mut waiting) = {
                let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now().into_std();
                if let Some((outcome, at)) = state.done.get(&name_of(key), now)
                    && outcome.seen.as_ref().is_some_and(|s| s.proves(key))
                {
                    let mut o = outcome.clone();
                    o.reason = format!(
                        "already handled {} ms ago: {}",
                        now.saturating_duration_since(at).as_millis(),
                        o.reason
                    );
                    return Ok(o);
                }
                match state.in_flight.get(key) {
                    Some((leader_at, rx)) if *leader_at == at || !waited => {
                        (None, Some((*leader_at == at, rx.clone())))
                    }
                    Some(_) => (None, None),
                    None => {
                        let (tx, rx) = watch::channel(None);
                        state.in_flight.insert(key.clone(), (at, rx));
                        (Some(tx), None)
                    }
                }
            };
            if let Some((identical, rx)) = waiting.as_mut() {
                waited |= !*identical;
                // A dropped sender means the leader was cancelled: loop and take over. An event
                // of another time loops too: the memory (updated before the result is sent)
                // answers it if its outcome was about the pod and this event proves that pod;
                // otherwise it looks itself.
                if let Ok(shared) = rx.wait_for(Option::is_some).await
                    && let Some(result) = shared.clone()
                    && *identical
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
            // `tx` is None when this event acts alongside another time's leader.
            let mut guard = tx.as_ref().map(|_| LeaderGuard {
                state: &self.state,
                key,
                armed: true,
            });
            let act = act.take().expect("an event acts once");
            let result = act().await;
            {
                let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                if tx.is_some() {
                    state.in_flight.remove(key);
                }
                match &result {
                    // Only an outcome about the pod itself (this event proved it was that pod)
                    // may answer another event: `stale` and "nothing proves it" are about the
                    // event, and reusing them would spare the pod a true event. `held` and
                    // `breaker-open` are not remembered either: they are the guards' state,
                    // and the pod's next event must look again once they have changed.
                    Ok(outcome)
                        if about_the_pod(outcome)
                            && outcome.seen.as_ref().is_some_and(|s| s.proves(key)) =>
                    {
                        let mut o = outcome.clone();
                        o.reason =
                            crate::fastfmt::bounded_string(o.reason, crate::app::LOG_REASON_MAX);
                        state
                            .done
                            .insert(name_of(key), o, Instant::now().into_std());
                    }
                    // A failure, or an outcome about no pod or another one: the next event looks
                    // again. An outcome about this event only leaves what is known of the pod.
                    _ => {
                        let name = name_of(key);
                        let uid = |o: &Outcome| o.seen.as_ref().map(|s| s.uid.clone());
                        let now = Instant::now().into_std();
                        let same_pod = matches!((&result, state.done.get(&name, now)),
                            (Ok(o), Some((known, _))) if uid(o).is_some() && uid(o) == uid(known));
                        if !same_pod {
                            state.done.remove(&name);
                        }
                    }
                }
                if let Some(guard) = guard.as_mut() {
                    guard.armed = false;
                }
            }
            if let Some(tx) = tx {
                let _ = tx.send(Some(result.clone()));
            }
            return result;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        domain::ident::{ContainerId, PodUid},
        domain::outcome::Seen,
    };
    use std::sync::atomic::{AtomicUsize, Ordering};

    const CID: &str = "ee97d9c4186f";

    fn cid(c: &str) -> ContainerId {
        ContainerId::parse("c", c).unwrap().unwrap()
    }

    /// An event for pod `name` naming container CID.
    fn target(name: &str) -> Target {
        Target {
            namespace: Namespace::parse("ns", "ns").unwrap(),
            name: PodName::parse("pod", name).unwrap(),
            container_id: Some(cid(CID)),
            uid: None,
        }
    }

    /// Deleted the pod whose container is CID.
    fn deleted() -> Outcome {
        Outcome {
            kind: OutcomeKind::Deleted,
            reason: "r".into(),
            why: crate::domain::outcome::Why::Said(crate::domain::outcome::why::DELETED),
            pod: None,
            seen: Some(Seen {
                uid: "0f9a4c1e-1111-2222-3333-444455556666".into(),
                container_ids: vec![cid(&format!("{CID}{}", "0".repeat(52)))],
            }),
            steps: Default::default(),
        }
    }

    /// Runs one concurrent event for pod `p` per time in `times`, each deleting in 50 ms;
    /// checks every one is answered `deleted` and returns how many acted.
    async fn storm(times: Vec<Option<Timestamp>>) -> usize {
        let c = Coalescer::new(Duration::from_secs(5));
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for at in times {
            let (c, calls) = (c.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                c.run(&target("p"), at, || async {
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
        calls.load(Ordering::SeqCst)
    }

    /// An event for pod `p` whose action (counted in `calls`) deletes it, unless remembered.
    async fn deletes(c: &Coalescer, calls: &AtomicUsize) -> Outcome {
        c.run(&target("p"), None, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(deleted())
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn concurrent_events_for_one_pod_act_once() {
        assert_eq!(storm(vec![None; 50]).await, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn outcomes_are_remembered_for_the_window_only() {
        let c = Coalescer::new(Duration::from_secs(5));
        let calls = AtomicUsize::new(0);
        let act = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(deleted())
        };
        c.run(&target("p"), None, act).await.unwrap();
        let again = c.run(&target("p"), None, act).await.unwrap();
        assert!(
            again.reason.starts_with("already handled"),
            "{}",
            again.reason
        );
        c.run(&target("other"), None, act).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        tokio::time::advance(Duration::from_secs(6)).await;
        c.run(&target("p"), None, act).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn memory_answers_only_events_that_prove_the_same_pod() {
        let c = Coalescer::new(Duration::from_secs(5));
        let calls = AtomicUsize::new(0);
        let act = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(deleted())
        };
        c.run(&target("p"), None, act).await.unwrap();
        // Whether the memory answered an event for pod `p` with these ids.
        let remembered = async |cid: Option<&str>, uid: Option<&str>| {
            let mut t = target("p");
            t.container_id = cid.map(self::cid);
            t.uid = uid.map(|u| PodUid::parse("u", u).unwrap());
            let o = c.run(&t, None, act).await.unwrap();
            o.reason.starts_with("already handled")
        };
        // No uid, no container id: the name may belong to a new pod by now. Look again.
        assert!(!remembered(None, None).await);
        // Another container: look again.
        assert!(!remembered(Some("0123456789ab"), None).await);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // The uid of the pod the memory holds proves it.
        assert!(remembered(None, Some("0f9a4c1e-1111-2222-3333-444455556666")).await);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // Another uid with the remembered container: the verdict calls that `stale` (the uid
        // decides first), so the memory must not answer it `deleted`.
        assert!(!remembered(Some(CID), Some("9a9a4c1e-1111-2222-3333-444455556666")).await);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn failures_are_not_remembered() {
        let c = Coalescer::new(Duration::from_secs(5));
        let calls = AtomicUsize::new(0);
        let fail = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(ApiError::Unreachable {
                what: "get pod".into(),
                message: "down".into(),
            })
        };
        assert!(c.run(&target("p"), None, fail).await.is_err());
        assert!(c.run(&target("p"), None, fail).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_cancelled_leader_does_not_block_the_next_event() {
        let c = Coalescer::new(Duration::from_secs(5));
        let t = target("p");
        let hung = c.run(&t, None, std::future::pending);
        assert!(
            tokio::time::timeout(Duration::from_millis(20), hung)
                .await
                .is_err()
        );
        let o = tokio::time::timeout(
            Duration::from_secs(1),
            c.run(&t, None, || async { Ok(deleted()) }),
        )
        .await
        .expect("not blocked by the cancelled leader");
        assert_eq!(o.unwrap().kind, OutcomeKind::Deleted);
    }

    #[tokio::test]
    async fn outcomes_about_the_event_are_not_remembered() {
        let calls = AtomicUsize::new(0);
        // The pod whose container is CID, found `stale` for an event naming another container,
        // or left alone because an event proved nothing.
        for kind in [OutcomeKind::Stale, OutcomeKind::Skipped] {
            let c = Coalescer::new(Duration::from_secs(5));
            let mut other = target("p");
            other.container_id = if kind == OutcomeKind::Stale {
                Some(cid("0123456789ab"))
            } else {
                None
            };
            let about_event = || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(Outcome { kind, ..deleted() })
            };
            c.run(&other, None, about_event).await.unwrap();
            // The event that proves the pod (container CID) must look again.
            let o = deletes(&c, &calls).await;
            assert_eq!(o.kind, OutcomeKind::Deleted, "after {kind:?}: {}", o.reason);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn the_guards_state_is_never_remembered_for_the_pod() {
        use crate::domain::outcome::{HeldBy, Why, why};
        let calls = AtomicUsize::new(0);
        let c = Coalescer::new(Duration::from_secs(5));
        // Outcomes that say what the breaker or the floor allowed then, about a proven pod.
        for (kind, said) in [
            (OutcomeKind::BreakerOpen("Deployment"), why::BREAKER_OPEN),
            (OutcomeKind::Held(HeldBy::Floor), why::HELD_FLOOR),
            (OutcomeKind::Held(HeldBy::FloorNever), why::HELD_FOR_GOOD),
            (OutcomeKind::DryRun, why::DRY_BREAKER),
            (OutcomeKind::DryRun, why::DRY_HOLD),
        ] {
            let refused = || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(Outcome {
                    kind,
                    why: Why::Said(said),
                    ..deleted()
                })
            };
            assert_eq!(c.run(&target("p"), None, refused).await.unwrap().kind, kind);
            // The breaker closed (the floor recovered): the pod's next event acts.
            let o = deletes(&c, &calls).await;
            assert_eq!(o.kind, OutcomeKind::Deleted, "after {kind:?}: {}", o.reason);
            assert!(!o.reason.starts_with("already handled"), "{}", o.reason);
            // Start again with nothing remembered.
            c.state.lock().unwrap().done.remove(&name_of(&target("p")));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 10);
        // A dry run that would delete is about the pod: remembered.
        let dry = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(Outcome {
                kind: OutcomeKind::DryRun,
                why: Why::Said(why::DRY_DELETE),
                ..deleted()
            })
        };
        c.run(&target("p"), None, dry).await.unwrap();
        assert!(
            c.run(&target("p"), None, dry)
                .await
                .unwrap()
                .reason
                .starts_with("already handled")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_memory_is_bounded_and_forgets_on_time() {
        let c = Coalescer::new(Duration::from_secs(5));
        let long = || async {
            Ok(Outcome {
                reason: "r".repeat(1 << 20),
                ..deleted()
            })
        };
        c.run(&target("p"), None, long).await.unwrap();
        let again = c.run(&target("p"), None, long).await.unwrap();
        assert!(again.reason.starts_with("already handled"));
        assert!(
            again.reason.len() < crate::app::LOG_REASON_MAX + 64,
            "{}",
            again.reason.len()
        );
        for i in 0..DONE_MAX + 10 {
            c.run(&target(&format!("p{i}")), None, || async { Ok(deleted()) })
                .await
                .unwrap();
        }
        let (len, bytes) = {
            let s = c.state.lock().unwrap();
            (s.done.len(), s.done.bytes())
        };
        assert!(len <= DONE_MAX && bytes <= DONE_BYTES, "{len} {bytes}");
        // Forgotten once the window has passed, on the next look, however few there are.
        tokio::time::advance(Duration::from_secs(6)).await;
        c.run(&target("other"), None, || async { Ok(deleted()) })
            .await
            .unwrap();
        assert_eq!(c.state.lock().unwrap().done.len(), 1);
    }

    #[tokio::test]
    async fn a_storm_of_events_at_different_times_still_acts_once() {
        // One noisy rule: every event has its own time, all prove the pod by its container.
        let times = (0..20)
            .map(|i| Timestamp::from_second(1_700_000_000 + i).ok())
            .collect();
        assert_eq!(storm(times).await, 1);
    }
}
