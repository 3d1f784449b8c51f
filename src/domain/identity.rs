//! The live pod + the event's target + the event + its part of the configuration + now → what
//! to do to that pod. Pure: `plan` carries the verdict on. Every rule that keeps the wrong pod
//! alive lives here, so it can be tested (and fuzzed) without an API server.
//!
//! Identity: the pieces of evidence are combined, none short-circuits the others (the whole
//! table is in the README, "Which pod, and when", and in the property tests below):
//! 1. the event's pod uid: different is `stale`; equal proves the pod, but not the container;
//! 2. the event's container id against every container id the pod reports (current, init and
//!    ephemeral containers, and the previous `lastState.terminated` ids of restarted ones): a
//!    match is proof. No match is read with the containers' start times: if some container
//!    (re)started after the event, restarts may have hidden the id and the uid (or, without
//!    one, the time) decides; if none did, the container is not the pod's (forged, or started
//!    outside the kubelet with the pod's labels): [`Verdict::Foreign`], whatever the uid says;
//! 3. without a uid, time: a pod created after the event (beyond [`CLOCK_SKEW`]) is a newer
//!    pod that reused the name (`stale`); a pod not newer than the event is never `stale` on
//!    container ids alone;
//! 4. an event with nothing that proves the pod is left alone ([`Verdict::Unproven`]).
//!
//! A "retry" ([`Verdict::NotYet`]) is answered only where the kubelet's late report of a new
//! container is the plausible explanation: a recent event, never one from the future.

use std::time::Duration;

use k8s_openapi::{api::core::v1::Pod, jiff::Timestamp};

use crate::{
    domain::falco::{FalcoEvent, Target},
    domain::ident::ContainerId,
};

/// Pods that carry this annotation set to "true" are never deleted, when the deployer trusts
/// pod authors with it (TRUST_PROTECT_ANNOTATION): whoever creates a pod sets its annotations,
/// an attacker's pod too.
pub const PROTECT_ANNOTATION: &str = "falco-responder/protect";

/// How far a node's clock (Falco's event time) may run ahead of the API server's
/// (`creationTimestamp`) before a pod counts as newer than the event. A real event is always
/// later than its pod's creation by the time scheduling and container start take (seconds), so
/// this small margin only absorbs clock drift between NTP-synchronised machines.
pub const CLOCK_SKEW: Duration = Duration::from_secs(2);

/// How long after an event the pod's status may still lag behind it: the kubelet reports a
/// container that just started (or restarted) a second or two late. While an event is this
/// recent, evidence that is missing only because of that lag is answered "retry" (503), not
/// `stale`: a retry lets the status catch up, a 200 `stale` would end the shell's only chance.
pub const STATUS_LAG: Duration = Duration::from_secs(60);

/// The part of the configuration the verdict reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IdentityConfig {
    /// GRACE_PERIOD_SECONDS: the grace period of a deletion (`None`: the pod's own).
    pub grace_period_seconds: Option<u32>,
    /// TRUST_PROTECT_ANNOTATION: honour [`PROTECT_ANNOTATION`].
    pub trust_protect_annotation: bool,
}

/// What to do to the live pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// DELETE it with `preconditions.uid = uid` and this grace period (`None`: the pod's own).
    Delete { uid: String, grace: Option<u32> },
    /// It is already terminating with a longer grace than GRACE_PERIOD_SECONDS: DELETE again
    /// with the shorter one (Kubernetes allows shortening, never lengthening).
    Shorten {
        uid: String,
        grace: u32,
        reason: String,
    },
    /// Already terminating; nothing to send.
    Terminating { reason: String },
    /// Not the pod the event saw: it was replaced, or is newer than the event.
    Stale { reason: String },
    /// Cannot tell yet: the pod's status has not caught up with a recent event. The sender
    /// should retry (503); nothing is sent.
    NotYet { reason: String },
    /// Left alone on purpose (annotation).
    Skipped { reason: String },
    /// Nothing the event carries proves the live pod is the one Falco saw: left alone.
    Unproven { reason: String },
    /// The event's container is not the pod's: every container of the pod has been running
    /// since before the event and none has its id. Not a deletion, whatever the uid says; worth
    /// a Warning Event (a forged event, or a container started outside the kubelet).
    Foreign { reason: String },
    /// The API answered with an object that is not the pod asked for: an error, never a deletion.
    Mismatch { reason: String },
}

impl Verdict {
    /// The uid a DELETE would carry, for verdicts that send one.
    pub fn uid(&self) -> Option<&str> {
        match self {
            Verdict::Delete { uid, .. } | Verdict::Shorten { uid, .. } => Some(uid),
            _ => None,
        }
    }
}

/// Every container id the pod reports, restarted containers' previous ids included.
pub fn pod_container_ids(pod: &Pod) -> Vec<ContainerId> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    [
        &status.container_statuses,
        &status.init_container_statuses,
        &status.ephemeral_container_statuses,
    ]
    .into_iter()
    .flatten()
    .flatten()
    .flat_map(|s| {
        let previous = s
            .last_state
            .as_ref()
            .and_then(|l| l.terminated.as_ref())
            .and_then(|t| t.container_id.as_deref());
        [s.container_id.as_deref(), previous]
    })
    .flatten()
    .filter_map(ContainerId::from_status)
    .collect()
}

/// Does the event's container id name one of the pod's? `None` when the pod reports none yet.
pub fn container_matches(pod: &Pod, id: &ContainerId) -> Option<bool> {
    let ids = pod_container_ids(pod);
    if ids.is_empty() {
        return None;
    }
    Some(ids.iter().any(|c| c.matches(id)))
}

fn secs(d: i128) -> String {
    format!("{}s", d / 1_000_000_000)
}

pub fn verdict(
    pod: &Pod,
    target: &Target,
    event: &FalcoEvent,
    config: &IdentityConfig,
    now: Timestamp,
) -> Verdict {
    let meta = &pod.metadata;
    // Defence in depth: the object must be exactly the one asked for.
    if meta.namespace.as_deref() != Some(target.namespace.as_str())
        || meta.name.as_deref() != Some(target.name.as_str())
    {
        return Verdict::Mismatch {
            reason: format!(
                "asked for pod {}/{}, the API returned {}/{}",
                target.namespace,
                target.name,
                meta.namespace.as_deref().unwrap_or("?"),
                meta.name.as_deref().unwrap_or("?")
            ),
        };
    }
    let live_uid = match meta.uid.as_deref() {
        Some(u) if !u.is_empty() => u.to_ascii_lowercase(),
        _ => {
            return Verdict::Mismatch {
                reason: "the API returned the pod without a uid".into(),
            };
        }
    };

    if let Some(stale) = identity(pod, &live_uid, target, event, now) {
        return stale;
    }

    let protected = config.trust_protect_annotation
        && meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(PROTECT_ANNOTATION))
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if protected {
        return Verdict::Skipped {
            reason: format!("the pod is annotated {PROTECT_ANNOTATION}=true"),
        };
    }

    if let Some(deletion) = &meta.deletion_timestamp {
        let remaining = deletion.0.as_nanosecond() - now.as_nanosecond();
        let period = meta.deletion_grace_period_seconds;
        let since = format!(
            "the pod is already terminating (deletionTimestamp {}, {} of grace left)",
            deletion.0,
            secs(remaining.max(0))
        );
        return match config.grace_period_seconds {
            Some(g)
                if remaining > i128::from(g) * 1_000_000_000
                    && period.is_none_or(|p| i64::from(g) < p) =>
            {
                Verdict::Shorten {
                    uid: live_uid,
                    grace: g,
                    reason: format!("{since}: grace shortened to GRACE_PERIOD_SECONDS={g}s"),
                }
            }
            _ => Verdict::Terminating { reason: since },
        };
    }

    Verdict::Delete {
        uid: live_uid,
        grace: config.grace_period_seconds,
    }
}

/// Every start (and previous end) time the pod's containers report: `state.running.startedAt`,
/// `state.terminated.startedAt`, `lastState.terminated.startedAt` and `.finishedAt`.
fn container_times(pod: &Pod) -> impl Iterator<Item = Timestamp> + '_ {
    let statuses = pod.status.as_ref().into_iter().flat_map(|s| {
        [
            &s.container_statuses,
            &s.init_container_statuses,
            &s.ephemeral_container_statuses,
        ]
        .into_iter()
        .flatten()
        .flatten()
    });
    statuses.flat_map(|s| {
        let state = s.state.as_ref();
        let running = state.and_then(|st| st.running.as_ref());
        let ended = state.and_then(|st| st.terminated.as_ref());
        let last = s.last_state.as_ref().and_then(|l| l.terminated.as_ref());
        [
            running.and_then(|r| r.started_at.as_ref()),
            ended.and_then(|t| t.started_at.as_ref()),
            last.and_then(|t| t.started_at.as_ref()),
            last.and_then(|t| t.finished_at.as_ref()),
        ]
        .into_iter()
        .flatten()
        .map(|t| t.0)
    })
}

/// Did some container of the pod (re)start after `at`? Then restarts may have pushed the
/// event's container id out of the status (it keeps only the current and the previous id).
/// The kubelet and Falco read the same node's clock: no skew between them.
pub fn restarted_after(pod: &Pod, at: Timestamp) -> bool {
    container_times(pod).any(|t| t > at)
}

/// `Some(verdict)` when the live pod is not (provably) the one the event saw.
fn identity(
    pod: &Pod,
    live_uid: &str,
    target: &Target,
    event: &FalcoEvent,
    now: Timestamp,
) -> Option<Verdict> {
    if let Some(uid) = &target.uid
        && uid.as_str() != live_uid
    {
        return Some(Verdict::Stale {
            reason: format!(
                "the event names pod uid {uid}, the pod now has uid {live_uid}: it was replaced"
            ),
        });
    }
    let uid_proves = target.uid.is_some();
    let at = event.occurred_at();
    let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let nanos = |d: Duration| d.as_nanos() as i128;
    // k8s_audit times come from the API server's own clock, like creationTimestamp: no skew.
    let skew = if event.is_k8s_audit() {
        0
    } else {
        nanos(CLOCK_SKEW)
    };
    // A time ahead of ours beyond the tolerance is wrong (a node's clock, or forged): it earns
    // no "retry later", which would answer 503 to every retry until that time has passed.
    let future = at.is_some_and(|at| at.as_nanosecond() > now.as_nanosecond() + nanos(CLOCK_SKEW));
    let recent = !future
        && at.is_some_and(|at| now.as_nanosecond() - at.as_nanosecond() < nanos(STATUS_LAG));
    // Relative to the event: was the pod surely created after it, or within the skew of it?
    let newer = |at: Timestamp, c: Timestamp| c.as_nanosecond() > at.as_nanosecond() + skew;
    let close =
        |at: Timestamp, c: Timestamp| (c.as_nanosecond() - at.as_nanosecond()).abs() <= skew;
    let pod_newer = matches!((at, created), (Some(at), Some(c)) if newer(at, c));

    // Whether the pod reports no container ids yet (the event names one).
    let mut unreported = false;
    if let Some(cid) = &target.container_id {
        match container_matches(pod, cid) {
            Some(true) => return None,
            None => unreported = true,
            Some(false) => {
                let Some(at) = at else {
                    return Some(Verdict::Unproven {
                        reason: format!(
                            "no container of the pod has or had id {cid}, and the event has no \
                             time to tell a restart from a foreign container"
                        ),
                    });
                };
                if !restarted_after(pod, at) {
                    if !uid_proves && pod_newer {
                        return Some(Verdict::Stale {
                            reason: format!(
                                "the pod was created at {}, after the event at {at}: a newer pod \
                                 with the same name",
                                created.unwrap_or_default()
                            ),
                        });
                    }
                    // The container may have just started, not reported yet by the kubelet.
                    if recent {
                        return Some(Verdict::NotYet {
                            reason: format!(
                                "the pod reports no container {cid} yet (the kubelet reports new \
                                 containers late); retry"
                            ),
                        });
                    }
                    return Some(Verdict::Foreign {
                        reason: format!(
                            "no container of the pod has or had id {cid}, and every container of \
                             the pod has been running since before the event at {at}: the event's \
                             container is not the pod's (a forged event, or a container started \
                             outside the kubelet with the pod's labels)"
                        ),
                    });
                }
                // Restarts after the event may have hidden the id: the uid or the time decides.
            }
        }
    }
    if uid_proves {
        return None;
    }
    let Some(at) = at else {
        return Some(Verdict::Unproven {
            reason: "the event carries no pod uid, no container id the pod reports, and no time: \
                     nothing proves this pod is the one Falco saw"
                .into(),
        });
    };
    let Some(created) = created else {
        return Some(Verdict::Unproven {
            reason: "the pod has no creationTimestamp to compare with the event's time".into(),
        });
    };
    if newer(at, created) {
        return Some(Verdict::Stale {
            reason: format!(
                "the pod was created at {created}, after the event at {at}: a newer pod with the same name"
            ),
        });
    }
    // Created within the clock skew of the event and nothing else proves it: a replacement made
    // just after the event cannot be told from the pod Falco saw. The container id settles it
    // once reported; without one, nothing will.
    if close(at, created) && skew > 0 {
        if unreported && recent {
            return Some(Verdict::NotYet {
                reason: format!(
                    "the pod was created at {created}, within {}s of the event at {at}, and reports no container ids yet; retry",
                    CLOCK_SKEW.as_secs()
                ),
            });
        }
        return Some(Verdict::Stale {
            reason: format!(
                "the pod was created at {created}, within {}s of the event at {at}: it may be a replacement, and nothing proves otherwise",
                CLOCK_SKEW.as_secs()
            ),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ident::{Namespace, PodName, PodUid};
    use k8s_openapi::{
        api::core::v1::{
            ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus,
            PodStatus,
        },
        apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
    };
    use proptest::prelude::*;

    const UID: &str = "0f9a4c1e-1111-2222-3333-444455556666";
    const OTHER_UID: &str = "9a9a4c1e-1111-2222-3333-444455556666";
    const CID: &str = "ee97d9c4186f0123456789abcdef0123456789abcdef0123456789abcdef0123";
    const OLD_CID: &str = "5892b41bcf460123456789abcdef0123456789abcdef0123456789abcdef0123";
    /// A container id no pod of these tests reports.
    const THIRD: &str = "0123456789ab0123456789ab0123456789ab0123456789ab0123456789ab0123";

    /// The configuration the variables `vars` set (GRACE_PERIOD_SECONDS).
    fn cfg(vars: &[(&str, &str)]) -> IdentityConfig {
        let grace = vars.iter().find(|(k, _)| *k == "GRACE_PERIOD_SECONDS");
        IdentityConfig {
            grace_period_seconds: grace.map(|(_, v)| v.parse().unwrap()),
            trust_protect_annotation: vars.contains(&("TRUST_PROTECT_ANNOTATION", "true")),
        }
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn pod(created: &str, ids: &[&str]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: Some("prod".into()),
                name: Some("web-0".into()),
                uid: Some(UID.into()),
                creation_timestamp: Some(Time(ts(created))),
                ..Default::default()
            },
            status: Some(PodStatus {
                container_statuses: Some(
                    ids.iter()
                        .map(|id| ContainerStatus {
                            container_id: Some(format!("containerd://{id}")),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn target(cid: Option<&str>, uid: Option<&str>) -> Target {
        Target::prod_web_0(cid, uid)
    }

    fn event(time: Option<&str>) -> FalcoEvent {
        serde_json::from_value(serde_json::json!({
            "rule": "Terminal shell in container", "priority": "Notice", "time": time,
            "output_fields": {}
        }))
        .unwrap()
    }

    const NOW: &str = "2026-11-30T10:00:00Z";

    fn run(p: &Pod, t: &Target, e: &FalcoEvent, c: &IdentityConfig) -> Verdict {
        verdict(p, t, e, c, ts(NOW))
    }

    #[test]
    fn a_matching_container_is_deleted_with_the_live_uid() {
        let p = pod("2026-11-30T09:00:00Z", &[CID]);
        let v = run(&p, &target(Some(&CID[..12]), None), &event(None), &cfg(&[]));
        assert_eq!(
            v,
            Verdict::Delete {
                uid: UID.into(),
                grace: None
            }
        );
        let v = run(
            &p,
            &target(Some(CID), None),
            &event(None),
            &cfg(&[("GRACE_PERIOD_SECONDS", "5")]),
        );
        assert_eq!(v.uid(), Some(UID));
        assert!(matches!(v, Verdict::Delete { grace: Some(5), .. }));
    }

    #[test]
    fn a_restarted_container_still_matches_by_its_previous_id() {
        let mut p = pod("2026-11-30T09:00:00Z", &[CID]);
        let st = &mut p
            .status
            .as_mut()
            .unwrap()
            .container_statuses
            .as_mut()
            .unwrap()[0];
        st.last_state = Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                container_id: Some(format!("containerd://{OLD_CID}")),
                ..Default::default()
            }),
            ..Default::default()
        });
        let v = run(
            &p,
            &target(Some(&OLD_CID[..12]), None),
            &event(None),
            &cfg(&[]),
        );
        assert!(matches!(v, Verdict::Delete { .. }), "{v:?}");
    }

    #[test]
    fn init_and_ephemeral_containers_count() {
        let mut p = pod("2026-11-30T09:00:00Z", &[]);
        let st = |id: &str| ContainerStatus {
            container_id: Some(format!("cri-o://{id}")),
            ..Default::default()
        };
        p.status.as_mut().unwrap().init_container_statuses = Some(vec![st(OLD_CID)]);
        p.status.as_mut().unwrap().ephemeral_container_statuses = Some(vec![st(CID)]);
        for id in [CID, OLD_CID] {
            let v = run(&p, &target(Some(&id[..12]), None), &event(None), &cfg(&[]));
            assert!(matches!(v, Verdict::Delete { .. }), "{id}: {v:?}");
        }
    }

    /// The container `i` of `p` runs since `started` (and, with `previous`, restarted from it).
    fn started(p: &mut Pod, i: usize, started: &str, previous: Option<&str>) {
        let st = &mut p
            .status
            .as_mut()
            .unwrap()
            .container_statuses
            .as_mut()
            .unwrap()[i];
        st.state = Some(ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(Time(ts(started))),
            }),
            ..Default::default()
        });
        st.last_state = previous.map(|id| ContainerState {
            terminated: Some(ContainerStateTerminated {
                container_id: Some(format!("containerd://{id}")),
                ..Default::default()
            }),
            ..Default::default()
        });
    }

    #[test]
    fn a_matching_uid_does_not_skip_the_container_check() {
        let mut p = pod("2026-11-30T09:00:00Z", &[CID]);
        started(&mut p, 0, "2026-11-30T09:00:03Z", None);
        let e = event(Some("2026-11-30T09:30:00Z"));
        // Matching uid, a container the pod never had, every container running since before
        // the event: a container outside the kubelet carrying the pod's uid. Not a deletion.
        let v = run(&p, &target(Some(&THIRD[..12]), Some(UID)), &e, &cfg(&[]));
        assert!(
            matches!(&v, Verdict::Foreign { reason } if reason.contains("not the pod's")),
            "{v:?}"
        );
        // The same after a restart past the event: restarts may have hidden the id, the uid proves it.
        started(&mut p, 0, "2026-11-30T09:45:00Z", Some(OLD_CID));
        let v = run(&p, &target(Some(&THIRD[..12]), Some(UID)), &e, &cfg(&[]));
        assert!(matches!(v, Verdict::Delete { .. }), "{v:?}");
        // Other uid: stale even though the container matches.
        let v = run(
            &p,
            &target(Some(CID), Some(OTHER_UID)),
            &event(None),
            &cfg(&[]),
        );
        assert!(
            matches!(&v, Verdict::Stale { reason } if reason.contains("uid")),
            "{v:?}"
        );
    }

    #[test]
    fn a_container_id_restarts_hid_is_decided_by_the_uid_or_the_time() {
        // Created before the event, restarted twice since: the event's container left lastState.
        let mut p = pod("2026-11-30T09:00:00Z", &[CID]);
        started(&mut p, 0, "2026-11-30T09:59:00Z", Some(OLD_CID));
        p.status
            .as_mut()
            .unwrap()
            .container_statuses
            .as_mut()
            .unwrap()[0]
            .last_state
            .as_mut()
            .unwrap()
            .terminated
            .as_mut()
            .unwrap()
            .started_at = Some(Time(ts("2026-11-30T09:31:00Z")));
        let e = event(Some("2026-11-30T09:30:00Z"));
        let v = run(&p, &target(Some(&THIRD[..12]), None), &e, &cfg(&[]));
        assert!(matches!(v, Verdict::Delete { .. }), "{v:?}");
        // A pod newer than the event is a replacement, restarts or not.
        p.metadata.creation_timestamp = Some(Time(ts("2026-11-30T09:31:00Z")));
        let v = run(&p, &target(Some(&THIRD[..12]), None), &e, &cfg(&[]));
        assert!(matches!(v, Verdict::Stale { .. }), "{v:?}");
        // Without the event's time a restart cannot be told from a foreign container.
        let v = run(
            &p,
            &target(Some(&THIRD[..12]), Some(UID)),
            &event(None),
            &cfg(&[]),
        );
        assert!(matches!(v, Verdict::Unproven { .. }), "{v:?}");
    }

    #[test]
    fn an_unknown_container_in_a_pod_running_since_before_the_event_is_foreign() {
        let mut p = pod("2026-11-30T09:00:00Z", &[CID]);
        started(&mut p, 0, "2026-11-30T09:00:03Z", None);
        let v = run(
            &p,
            &target(Some(&OLD_CID[..12]), None),
            &event(Some("2026-11-30T09:30:00Z")),
            &cfg(&[]),
        );
        assert!(matches!(v, Verdict::Foreign { .. }), "{v:?}");
    }

    #[test]
    fn a_future_event_time_earns_no_retry() {
        let mut p = pod("2026-11-30T09:00:00Z", &[CID]);
        started(&mut p, 0, "2026-11-30T09:00:03Z", None);
        let future = event(Some("2026-11-30T10:00:03Z"));
        let v = run(&p, &target(Some(&THIRD[..12]), None), &future, &cfg(&[]));
        assert!(matches!(v, Verdict::Foreign { .. }), "{v:?}");
        // Within the skew tolerance it is a recent event: the kubelet may be late.
        let v = run(
            &p,
            &target(Some(&THIRD[..12]), None),
            &event(Some("2026-11-30T10:00:01Z")),
            &cfg(&[]),
        );
        assert!(matches!(v, Verdict::NotYet { .. }), "{v:?}");
        // A pod created within the skew of a future event, no containers reported: no retry.
        let p = pod("2026-11-30T10:00:02Z", &[]);
        let v = run(&p, &target(Some(&CID[..12]), None), &future, &cfg(&[]));
        assert!(matches!(v, Verdict::Stale { .. }), "{v:?}");
    }

    #[test]
    fn without_proof_a_pod_newer_than_the_event_is_stale() {
        // Containers not reported yet, or the event names none (k8s_audit).
        for p in [
            pod("2026-11-30T09:00:05Z", &[]),
            pod("2026-11-30T09:00:05Z", &[CID]),
        ] {
            for t in [target(Some(&OLD_CID[..12]), None), target(None, None)] {
                if t.container_id.is_some() && !pod_container_ids(&p).is_empty() {
                    continue; // decided by the container id
                }
                let v = run(&p, &t, &event(Some("2026-11-30T09:00:00Z")), &cfg(&[]));
                assert!(matches!(v, Verdict::Stale { .. }), "{v:?}");
                // Within the clock-skew tolerance: a replacement cannot be ruled out.
                let v = run(&p, &t, &event(Some("2026-11-30T09:00:04Z")), &cfg(&[]));
                assert!(
                    matches!(&v, Verdict::Stale { reason } if reason.contains("within")),
                    "{v:?}"
                );
                // An event after the pod's creation: the same pod.
                let v = run(&p, &t, &event(Some("2026-11-30T09:30:00Z")), &cfg(&[]));
                assert!(matches!(v, Verdict::Delete { .. }), "{v:?}");
            }
        }
    }

    #[test]
    fn evt_time_is_the_fallback_clock() {
        let p = pod("2026-11-30T09:00:05Z", &[]);
        let mut e = event(None);
        e.output_fields.insert(
            "evt.time",
            (ts("2026-11-30T09:00:00Z").as_nanosecond() as i64).into(),
        );
        let v = run(&p, &target(None, None), &e, &cfg(&[]));
        assert!(matches!(v, Verdict::Stale { .. }), "{v:?}");
    }

    #[test]
    fn nothing_to_prove_identity_leaves_the_pod_alone() {
        let p = pod("2026-11-30T09:00:00Z", &[CID]);
        let v = run(&p, &target(None, None), &event(None), &cfg(&[]));
        assert!(
            matches!(&v, Verdict::Unproven { reason } if reason.contains("nothing proves")),
            "{v:?}"
        );
        let v = run(
            &p,
            &target(None, None),
            &event(Some("not a time")),
            &cfg(&[]),
        );
        assert!(matches!(v, Verdict::Unproven { .. }), "{v:?}");
    }

    #[test]
    fn annotated_pods_are_skipped_only_when_the_deployer_trusts_pod_authors() {
        let mut p = pod("2026-11-30T09:00:00Z", &[CID]);
        p.metadata.annotations = Some([(PROTECT_ANNOTATION.to_string(), " TRUE ".into())].into());
        let trusting = cfg(&[("TRUST_PROTECT_ANNOTATION", "true")]);
        let v = run(&p, &target(Some(CID), None), &event(None), &trusting);
        assert!(matches!(v, Verdict::Skipped { .. }), "{v:?}");
        // By default the annotation is the pod author's word: not a protection.
        let v = run(&p, &target(Some(CID), None), &event(None), &cfg(&[]));
        assert!(matches!(v, Verdict::Delete { .. }), "{v:?}");
    }

    #[test]
    fn terminating_pods_get_a_shorter_grace_only_when_configured_and_shorter() {
        let mut p = pod("2026-11-30T09:00:00Z", &[CID]);
        // Deleted with a one-hour grace ten minutes ago: 50 minutes left.
        p.metadata.deletion_timestamp = Some(Time(ts("2026-11-30T10:50:00Z")));
        p.metadata.deletion_grace_period_seconds = Some(3600);
        let t = target(Some(CID), None);
        let v = run(&p, &t, &event(None), &cfg(&[]));
        assert!(
            matches!(&v, Verdict::Terminating { reason } if reason.contains("3000s of grace left")),
            "{v:?}"
        );
        let v = run(
            &p,
            &t,
            &event(None),
            &cfg(&[("GRACE_PERIOD_SECONDS", "30")]),
        );
        assert!(
            matches!(&v, Verdict::Shorten { grace: 30, uid, .. } if uid == UID),
            "{v:?}"
        );
        // Our grace is not shorter than what is left: nothing to send.
        let v = run(
            &p,
            &t,
            &event(None),
            &cfg(&[("GRACE_PERIOD_SECONDS", "3500")]),
        );
        assert!(matches!(v, Verdict::Terminating { .. }), "{v:?}");
        // The API never lengthens: not shorter than the pod's deletion grace period.
        p.metadata.deletion_grace_period_seconds = Some(20);
        let v = run(
            &p,
            &t,
            &event(None),
            &cfg(&[("GRACE_PERIOD_SECONDS", "30")]),
        );
        assert!(matches!(v, Verdict::Terminating { .. }), "{v:?}");
    }

    /// A container that (re)started a moment ago is not in the pod's status yet: the kubelet
    /// reports it a second or two later. A true event from it, for a pod that existed long before
    /// the event, would be dropped by a 200, and the shell would stay (an attacker who kills
    /// PID 1 and execs into the new container at once gets exactly this). While the event is
    /// recent the answer is a retry (503), which lets the status catch up.
    #[test]
    fn a_container_not_reported_yet_in_a_pod_older_than_the_event_is_not_stale() {
        let p = pod("2026-11-30T09:00:00Z", &[CID]);
        let v = run(
            &p,
            &target(Some(&OLD_CID[..12]), None),
            &event(Some("2026-11-30T09:59:59Z")),
            &cfg(&[]),
        );
        assert!(matches!(v, Verdict::NotYet { .. }), "{v:?}");
        // Once the event is older than STATUS_LAG, the status had its chance: the container is
        // not the pod's (never `stale`: the pod is not newer than the event).
        let v = run(
            &p,
            &target(Some(&OLD_CID[..12]), None),
            &event(Some("2026-11-30T09:58:59Z")),
            &cfg(&[]),
        );
        assert!(matches!(v, Verdict::Foreign { .. }), "{v:?}");
        // A pod created after the recent event is a replacement, lag or not.
        let p = pod("2026-11-30T09:59:59Z", &[CID]);
        let v = run(
            &p,
            &target(Some(&OLD_CID[..12]), None),
            &event(Some("2026-11-30T09:59:50Z")),
            &cfg(&[]),
        );
        assert!(matches!(v, Verdict::Stale { .. }), "{v:?}");
    }

    #[test]
    fn a_pod_created_within_the_skew_of_the_event_is_not_deleted_on_time_alone() {
        // No container ids reported yet; created 1 s after the event.
        let p = pod("2026-11-30T09:59:51Z", &[]);
        let recent = event(Some("2026-11-30T09:59:50Z"));
        let v = run(&p, &target(Some(&CID[..12]), None), &recent, &cfg(&[]));
        assert!(matches!(v, Verdict::NotYet { .. }), "{v:?}");
        // Without a container id nothing will settle it.
        let v = run(&p, &target(None, None), &recent, &cfg(&[]));
        assert!(matches!(v, Verdict::Stale { .. }), "{v:?}");
        // An old event: stale.
        let p = pod("2026-11-30T09:00:01Z", &[]);
        let v = run(
            &p,
            &target(Some(&CID[..12]), None),
            &event(Some("2026-11-30T09:00:00Z")),
            &cfg(&[]),
        );
        assert!(matches!(v, Verdict::Stale { .. }), "{v:?}");
    }

    #[test]
    fn audit_events_use_the_api_servers_clock_without_skew() {
        let p = pod("2026-11-30T09:00:01Z", &[]);
        let mut e = event(Some("2026-11-30T09:00:00Z"));
        e.source = Some("k8s_audit".into());
        let v = run(&p, &target(None, None), &e, &cfg(&[]));
        assert!(
            matches!(&v, Verdict::Stale { reason } if reason.contains("after the event")),
            "{v:?}"
        );
        e.time = Some("2026-11-30T09:00:02Z".into());
        assert!(matches!(
            run(&p, &target(None, None), &e, &cfg(&[])),
            Verdict::Delete { .. }
        ));
    }

    #[test]
    fn another_object_than_the_one_asked_for_is_a_mismatch() {
        let mut p = pod("2026-11-30T09:00:00Z", &[CID]);
        p.metadata.namespace = Some("kube-system".into());
        let v = run(&p, &target(Some(CID), None), &event(None), &cfg(&[]));
        assert!(matches!(v, Verdict::Mismatch { .. }), "{v:?}");
        let mut p = pod("2026-11-30T09:00:00Z", &[CID]);
        p.metadata.uid = None;
        let v = run(&p, &target(Some(CID), None), &event(None), &cfg(&[]));
        assert!(matches!(v, Verdict::Mismatch { .. }), "{v:?}");
    }

    // --- properties over generated pods and events ----------------------------------------

    fn hex_id() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            CID.to_string(),
            OLD_CID.to_string(),
            "0123456789ab".repeat(2),
        ])
    }

    prop_compose! {
        fn any_pod()(
            ns in prop::sample::select(vec!["prod", "kube-system", "other"]),
            name in prop::sample::select(vec!["web-0", "web-1"]),
            uid in prop::sample::select(vec![UID, OTHER_UID]),
            created_min in 0i64..120,
            ids in prop::collection::vec(hex_id(), 0..3),
            previous in prop::option::of(hex_id()),
            protected in any::<bool>(),
            deleting in prop::option::of(0i64..7200),
            started_min in prop::option::of(0i64..120),
            previous_started_min in prop::option::of(0i64..120),
        ) -> Pod {
            let mut p = pod("2026-11-30T09:00:00Z", &ids.iter().map(String::as_str).collect::<Vec<_>>());
            p.metadata.namespace = Some(ns.into());
            p.metadata.name = Some(name.into());
            p.metadata.uid = Some(uid.into());
            p.metadata.creation_timestamp = Some(Time(Timestamp::from_second(
                ts("2026-11-30T09:00:00Z").as_second() + created_min * 60).unwrap()));
            if let (Some(prev), Some(first)) = (previous, p.status.as_mut().unwrap().container_statuses.as_mut().unwrap().first_mut()) {
                first.last_state = Some(ContainerState { terminated: Some(ContainerStateTerminated {
                    container_id: Some(format!("docker://{prev}")), ..Default::default() }), ..Default::default() });
            }
            let minute = |m: i64| Time(Timestamp::from_second(ts("2026-11-30T09:00:00Z").as_second() + m * 60).unwrap());
            if let Some(first) = p.status.as_mut().unwrap().container_statuses.as_mut().unwrap().first_mut() {
                if let Some(m) = started_min {
                    first.state = Some(ContainerState { running: Some(ContainerStateRunning {
                        started_at: Some(minute(m)) }), ..Default::default() });
                }
                if let (Some(m), Some(last)) = (previous_started_min, first.last_state.as_mut()) {
                    last.terminated.as_mut().unwrap().started_at = Some(minute(m));
                }
            }
            if protected {
                p.metadata.annotations = Some([(PROTECT_ANNOTATION.to_string(), "true".into())].into());
            }
            if let Some(s) = deleting {
                p.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(ts(NOW).as_second() + s).unwrap()));
                p.metadata.deletion_grace_period_seconds = Some(7200);
            }
            p
        }
    }

    prop_compose! {
        fn any_case()(
            cid in prop::option::of(hex_id().prop_map(|h| h[..12].to_string())),
            uid in prop::option::of(prop::sample::select(vec![UID, OTHER_UID])),
            time_min in prop::option::of(0i64..120),
            grace in prop::option::of(1u32..3600),
            trust in any::<bool>(),
        ) -> (Target, FalcoEvent, IdentityConfig) {
            let t = Target {
                namespace: Namespace::parse("ns", "prod").unwrap(),
                name: PodName::parse("pod", "web-0").unwrap(),
                container_id: cid.map(|c| ContainerId::parse("c", &c).unwrap().unwrap()),
                uid: uid.map(|u| PodUid::parse("u", u).unwrap()),
            };
            let time = time_min.map(|m| Timestamp::from_second(ts("2026-11-30T09:00:00Z").as_second() + m * 60).unwrap().to_string());
            let mut c = match grace { Some(g) => cfg(&[("GRACE_PERIOD_SECONDS", &g.to_string())]), None => cfg(&[]) };
            c.trust_protect_annotation = trust;
            (t, event(time.as_deref()), c)
        }
    }

    // --- the decision table ------------------------------------------------------------------

    /// The event's pod uid against the live pod's.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Uid {
        Equal,
        Different,
        Absent,
    }

    /// The event's container id against the pod's containers.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Container {
        Matches,
        /// The event names none, or the pod reports none yet.
        Absent {
            event_names_one: bool,
        },
        /// Not found, and some container (re)started after the event.
        RestartedAfter,
        /// Not found, every container running since before the event.
        RunningBefore,
    }

    /// The pod's creation against the event's time.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Age {
        /// Created after the event, beyond the skew tolerance.
        Newer,
        /// Created within the skew tolerance of the event (just before it).
        Close,
        NotNewer,
    }

    /// The event's time against now.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum When {
        /// Under STATUS_LAG old.
        Recent,
        Old,
        /// Ahead of now beyond the skew tolerance.
        Future,
        None,
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Class {
        Delete,
        Stale,
        NotYet,
        Unproven,
        Foreign,
    }

    /// The README's table ("Which pod, and when"), row by row.
    fn expected(uid: Uid, c: Container, age: Age, when: When, audit: bool) -> Class {
        use {Age::*, Class::*, Container::*, When as W};
        // k8s_audit times are the API server's: no skew, so "close" is simply not newer.
        let age = if audit && age == Close { NotNewer } else { age };
        // Without a uid (or after restarts hid the container id), time decides.
        let by_time = |unreported: bool| match (when, age) {
            (W::None, _) => Unproven,
            (_, Newer) => Stale,
            (W::Recent, Close) if unreported => NotYet,
            (_, Close) => Stale,
            (_, NotNewer) => Delete,
        };
        match (uid, c) {
            (Uid::Different, _) => Stale,
            (_, Matches) => Delete,
            (_, RestartedAfter | RunningBefore) if when == W::None => Unproven,
            (Uid::Absent, RunningBefore) if age == Newer => Stale,
            (_, RunningBefore) if when == W::Recent => NotYet,
            (_, RunningBefore) => Foreign,
            (Uid::Equal, Absent { .. } | RestartedAfter) => Delete,
            (Uid::Absent, Absent { event_names_one }) => by_time(event_names_one),
            (Uid::Absent, RestartedAfter) => by_time(false),
        }
    }

    fn class(v: &Verdict) -> Class {
        match v {
            Verdict::Delete { .. } => Class::Delete,
            Verdict::Stale { .. } => Class::Stale,
            Verdict::NotYet { .. } => Class::NotYet,
            Verdict::Unproven { .. } => Class::Unproven,
            Verdict::Foreign { .. } => Class::Foreign,
            other => panic!("not in the table: {other:?}"),
        }
    }

    fn at_secs(offset: i64) -> Timestamp {
        Timestamp::from_second(ts(NOW).as_second() + offset).unwrap()
    }

    /// A pod and an event in the given cells of the table.
    fn case(
        uid: Uid,
        c: Container,
        age: Age,
        when: When,
        audit: bool,
    ) -> (Pod, Target, FalcoEvent) {
        let t = match when {
            When::Recent => at_secs(-30),
            When::Old => at_secs(-3600),
            When::Future => at_secs(3600),
            When::None => at_secs(-600),
        };
        let created = match age {
            Age::Newer => t.as_second() + 60,
            Age::Close => t.as_second() - 1,
            Age::NotNewer => t.as_second() - 600,
        };
        let created = Timestamp::from_second(created).unwrap().to_string();
        let ids: &[&str] = match c {
            Container::Absent {
                event_names_one: true,
            } => &[],
            _ => &[CID],
        };
        let mut p = pod(&created, ids);
        let at = |offset: i64| {
            Timestamp::from_second(t.as_second() + offset)
                .unwrap()
                .to_string()
        };
        match c {
            Container::RestartedAfter => started(&mut p, 0, &at(10), Some(OLD_CID)),
            Container::Absent { .. } => {}
            _ => started(&mut p, 0, &at(-5), None),
        }
        let cid = match c {
            Container::Matches => Some(&CID[..12]),
            Container::Absent { event_names_one } => event_names_one.then_some(&CID[..12]),
            _ => Some(&THIRD[..12]),
        };
        let target = target(
            cid,
            match uid {
                Uid::Equal => Some(UID),
                Uid::Different => Some(OTHER_UID),
                Uid::Absent => None,
            },
        );
        let mut e = event((when != When::None).then(|| t.to_string()).as_deref());
        if audit {
            e.source = Some("k8s_audit".into());
        }
        (p, target, e)
    }

    /// Every cell of the table (a pod cannot be created after an event from the future).
    fn cells() -> Vec<(Uid, Container, Age, When, bool)> {
        let mut all = Vec::new();
        for uid in [Uid::Equal, Uid::Different, Uid::Absent] {
            for c in [
                Container::Matches,
                Container::Absent {
                    event_names_one: false,
                },
                Container::Absent {
                    event_names_one: true,
                },
                Container::RestartedAfter,
                Container::RunningBefore,
            ] {
                for age in [Age::Newer, Age::Close, Age::NotNewer] {
                    for when in [When::Recent, When::Old, When::Future, When::None] {
                        for audit in [false, true] {
                            if when != When::Future || age == Age::NotNewer {
                                all.push((uid, c, age, when, audit));
                            }
                        }
                    }
                }
            }
        }
        all
    }

    #[test]
    fn the_verdict_is_the_readmes_table() {
        for (uid, c, age, when, audit) in cells() {
            let (p, t, e) = case(uid, c, age, when, audit);
            let v = run(&p, &t, &e, &cfg(&[]));
            assert_eq!(
                class(&v),
                expected(uid, c, age, when, audit),
                "uid {uid:?}, container {c:?}, pod {age:?}, time {when:?}, audit {audit}: {v:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn never_deletes_the_wrong_pod(p in any_pod(), (t, e, c) in any_case()) {
            let v = verdict(&p, &t, &e, &c, ts(NOW));
            if v.uid().is_some() {
                let m = &p.metadata;
                prop_assert_eq!(m.namespace.as_deref(), Some(t.namespace.as_str()));
                prop_assert_eq!(m.name.as_deref(), Some(t.name.as_str()));
                prop_assert_eq!(v.uid(), m.uid.as_deref());
                if let Some(uid) = &t.uid {
                    prop_assert_eq!(Some(uid.as_str()), m.uid.as_deref());
                }
                let protected = m.annotations.as_ref().is_some_and(|a| a.contains_key(PROTECT_ANNOTATION));
                prop_assert!(!(protected && c.trust_protect_annotation));
                // Newer than the event, and nothing else proves identity: never.
                let proven = t.uid.is_some()
                    || t.container_id.as_ref().is_some_and(|c| container_matches(&p, c) == Some(true));
                if !proven {
                    let at = e.occurred_at();
                    prop_assert!(at.is_some(), "no evidence at all yet {:?}", v);
                    let created = m.creation_timestamp.as_ref().unwrap().0;
                    prop_assert!(created.as_nanosecond() <= at.unwrap().as_nanosecond() + CLOCK_SKEW.as_nanos() as i128);
                }
                // A container id the pod does not report: only when restarts after the event may
                // have hidden it, and the uid or the pod's age proves the pod.
                if let Some(cid) = &t.container_id && container_matches(&p, cid) == Some(false) {
                    let at = e.occurred_at();
                    prop_assert!(at.is_some_and(|at| restarted_after(&p, at)), "{:?}", v);
                }
            }
        }
    }
}
