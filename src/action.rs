//! The Kubernetes side: check the pod is still the one the event named, delete it with a uid
//! precondition, and record a Kubernetes Event. Every call of one event shares one deadline.

use std::{sync::Arc, time::Duration};

use http::StatusCode;
use k8s_openapi::{
    api::{
        core::v1::{ObjectReference, Pod},
        events::v1::Event as KubeEvent,
    },
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff,
};
use kube::{
    Api, Client,
    api::{DeleteParams, PostParams, Preconditions},
};
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::{
    availability::{Availability, GuardError, Plan},
    config::Config,
    event::{FalcoEvent, Target},
    evict::{self, Refused},
    ident::ContainerId,
    verdict::{Verdict, pod_container_ids, verdict},
};

/// `reportingController` of the Events we record.
pub const REPORTER: &str = "falco-responder";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutcomeKind {
    Deleted,
    DryRun,
    Gone,
    Skipped,
    Stale,
    Terminating,
    /// Deleting would break availability: 503 (retry) while replicas may recover; 200 when no
    /// recovery can meet the floor (`HeldBy::FloorNever`: a person must look).
    Held(HeldBy),
    /// The deletion breaker is open (200: a person must look); the workload kind's label.
    BreakerOpen(&'static str),
}

/// Which guard held a deletion (the `falco_responder_held_total{guard}` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeldBy {
    Floor,
    /// MIN_AVAILABLE can never be met by deleting one of the workload's replicas.
    FloorNever,
    Pdb,
}

impl HeldBy {
    pub fn as_str(self) -> &'static str {
        match self {
            HeldBy::Floor | HeldBy::FloorNever => "floor",
            HeldBy::Pdb => "pdb",
        }
    }

    /// Whether the sender's retry can let the deletion through (503 + Retry-After), or it
    /// would only loop (200).
    pub fn retry_helps(self) -> bool {
        !matches!(self, HeldBy::FloorNever)
    }
}

impl OutcomeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Deleted => "deleted",
            OutcomeKind::DryRun => "dry-run",
            OutcomeKind::Gone => "gone",
            OutcomeKind::Skipped => "skipped",
            OutcomeKind::Stale => "stale",
            OutcomeKind::Terminating => "terminating",
            OutcomeKind::Held(_) => "held",
            OutcomeKind::BreakerOpen(_) => "breaker-open",
        }
    }
}

impl Serialize for OutcomeKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    /// The pod's workload, `Kind/name` (`Deployment/web`, `Standalone/p`), once resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
}

impl PodRef {
    pub fn of(t: &Target) -> PodRef {
        PodRef {
            namespace: t.namespace.to_string(),
            name: t.name.to_string(),
            uid: t.uid.as_ref().map(ToString::to_string),
            workload: None,
        }
    }
}

/// The identity of the live pod an outcome was decided on: what a later event must match for
/// the storm memory to answer it without looking again (`coalesce`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Seen {
    pub uid: String,
    pub container_ids: Vec<ContainerId>,
}

impl Seen {
    /// Does `target` carry a pod uid or container id that proves it names this pod? As in the
    /// verdict, a uid decides first: another uid is no proof, whatever the container.
    pub fn proves(&self, target: &Target) -> bool {
        match &target.uid {
            Some(u) => u.as_str() == self.uid,
            None => target
                .container_id
                .as_ref()
                .is_some_and(|c| self.container_ids.iter().any(|s| s.matches(c))),
        }
    }
}

/// What happened to one event. Every kind is a success for the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub kind: OutcomeKind,
    pub reason: String,
    pub pod: Option<PodRef>,
    /// The live pod looked at, when there was one.
    pub seen: Option<Seen>,
}

/// The function could not act: the sender must retry (5xx), the event is kept in the log.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ActionError {
    #[error("the Kubernetes API did not complete {step} within API_TIMEOUT_SECONDS ({}s)", .timeout.as_secs())]
    Timeout {
        step: &'static str,
        timeout: Duration,
    },
    #[error(
        "forbidden: the Kubernetes API refused to {verb} pod {namespace}/{name}: {message} \
         (grant {verb} on pods to this ServiceAccount: see the RBAC manifests)"
    )]
    Forbidden {
        verb: &'static str,
        namespace: String,
        name: String,
        message: String,
    },
    #[error("the Kubernetes API answered {code} to {verb} pod {namespace}/{name}: {message}")]
    Api {
        verb: &'static str,
        namespace: String,
        name: String,
        code: u16,
        message: String,
    },
    #[error("the Kubernetes API is unreachable ({verb} pod): {message}")]
    Unreachable { verb: &'static str, message: String },
    /// The API answered with another object than the one asked for: never acted on.
    #[error("refusing to act: {0}")]
    Mismatch(String),
    /// A guard could not be evaluated: no deletion around it.
    #[error(transparent)]
    Guard(#[from] GuardError),
    /// The pod's status has not caught up with a recent event yet: retry.
    #[error("cannot decide yet: {0}")]
    NotYet(String),
}

impl ActionError {
    /// 503 where a retry may help (timeouts, outages, throttling); 500 where it needs a human.
    pub fn status(&self) -> StatusCode {
        match self {
            ActionError::Guard(g) => g.status(),
            ActionError::Timeout { .. }
            | ActionError::Unreachable { .. }
            | ActionError::NotYet(_) => StatusCode::SERVICE_UNAVAILABLE,
            ActionError::Api { code, .. } if *code >= 500 || *code == 429 => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ActionError::Forbidden { .. } | ActionError::Api { .. } | ActionError::Mismatch(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// Low-cardinality label for the API error metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ActionError::Timeout { .. } => "timeout",
            ActionError::Forbidden { .. } => "forbidden",
            ActionError::Api { .. } => "api",
            ActionError::Unreachable { .. } => "unreachable",
            ActionError::Mismatch(_) => "mismatch",
            ActionError::Guard(g) => g.metric_label(),
            ActionError::NotYet(_) => "not-yet",
        }
    }
}

/// Which Kubernetes Event an action records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recorded {
    Deleted,
    GraceShortened,
    DryRun,
    /// A guard held the deletion (FalcoDeleteHeld).
    Held,
    /// The deletion breaker refused it (FalcoBreakerOpen).
    BreakerOpen,
}

/// What the guards add to an Event: the workload in `related`, and the guard's reason at the
/// head of the note; the workload key the breaker's record counts under.
#[derive(Debug, Default)]
struct Guarded {
    related: Option<ObjectReference>,
    why: Option<String>,
    /// The breaker's workload key (`deletions::WORKLOAD_ANNOTATION`).
    workload_key: Option<String>,
}

/// Talks to the API server on behalf of one process; cheap to clone.
#[derive(Clone)]
pub struct Kube {
    client: Client,
    timeout: Duration,
    instance: String,
    /// Event recordings in flight: they run after the answer, and shutdown waits for them.
    background: TaskTracker,
    /// The workload-aware guards (issue 10); `None` only in tests that drive the bare path.
    guards: Option<Arc<Availability>>,
    /// For the Eviction API: no 429 retries (`kubeconfig::Clients::evict`, same pool); else `client`.
    evict_client: Option<Client>,
}

fn map_err(e: kube::Error, verb: &'static str, t: &Target) -> ActionError {
    match e {
        kube::Error::Api(s) if s.is_forbidden() => ActionError::Forbidden {
            verb,
            namespace: t.namespace.to_string(),
            name: t.name.to_string(),
            message: s.message.clone(),
        },
        kube::Error::Api(s) => ActionError::Api {
            verb,
            namespace: t.namespace.to_string(),
            name: t.name.to_string(),
            code: s.code,
            message: s.message.clone(),
        },
        other => ActionError::Unreachable {
            verb,
            message: error_chain(&other),
        },
    }
}

/// The error with its sources: kube's top-level messages alone ("ServiceError: ...") hide the cause.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let s_msg = s.to_string();
        if !msg.contains(&s_msg) {
            msg.push_str(": ");
            msg.push_str(&s_msg);
        }
        src = s.source();
    }
    msg
}

/// A note for `kubectl get events`: rule, priority and Falco's output line (≤ 1 kB, the API's limit).
pub fn event_note(ev: &FalcoEvent) -> String {
    let mut note = format!("Falco rule {:?} ({})", ev.rule, ev.priority);
    if let Some(out) = &ev.output {
        note.push_str(": ");
        note.push_str(out);
    }
    bounded(note)
}

/// `<pod>.<hex time>`, a valid name (≤ 253) for pod names near the limit: the pod part is cut
/// and ends on a letter or digit.
fn event_name(pod: &str, now: jiff::Timestamp) -> String {
    let suffix = format!(".{:x}", now.as_nanosecond());
    let prefix = &pod[..pod.len().min(253 - suffix.len())];
    let prefix = prefix.trim_end_matches(['-', '.']);
    format!("{prefix}{suffix}")
}

/// At most 1 kB (the API's limit for a note), cut on a char boundary.
fn bounded(mut note: String) -> String {
    if note.len() > 1024 {
        let mut cut = 1021;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
        note.push_str("...");
    }
    note
}

impl Kube {
    pub fn new(
        client: Client,
        timeout: Duration,
        instance: String,
        background: TaskTracker,
    ) -> Kube {
        Kube {
            client,
            timeout,
            instance,
            background,
            guards: None,
            evict_client: None,
        }
    }

    pub fn with_eviction_client(mut self, client: Client) -> Kube {
        self.evict_client = Some(client);
        self
    }

    /// Starts the guards' watch (the deletion breaker's records).
    pub fn watch(&self, timeout: Duration) {
        if let Some(g) = &self.guards {
            g.watch(timeout);
        }
    }

    /// Turns on the workload-aware guards (every process does; see `App::new`).
    pub fn with_guards(mut self, guards: Arc<Availability>) -> Kube {
        self.guards = Some(guards);
        self
    }

    /// GET, the verdict (`verdict`), then (unless DRY_RUN) the DELETE it calls for, with the
    /// uid precondition, and an Event.
    pub async fn act(
        &self,
        target: &Target,
        event: &FalcoEvent,
        cfg: &Config,
    ) -> Result<Outcome, ActionError> {
        let deadline = Instant::now() + self.timeout;
        // Only validated names reach the request path (`ident`).
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), target.namespace.as_str());
        let mut pod_ref = PodRef::of(target);

        // The breaker's count does not depend on the pod: read alongside the GET.
        let prefetch = async {
            match &self.guards {
                Some(g) => g.prefetch(deadline, self.timeout).await,
                None => None,
            }
        };
        let (got, prefetched) = tokio::join!(
            self.within(deadline, "get", pods.get_opt(target.name.as_str())),
            prefetch
        );
        let pod = match got? {
            Ok(Some(pod)) => pod,
            Ok(None) => {
                return Ok(Outcome {
                    kind: OutcomeKind::Gone,
                    reason: "the pod no longer exists".into(),
                    pod: Some(pod_ref),
                    seen: None,
                });
            }
            Err(e) => return Err(map_err(e, "get", target)),
        };
        let verdict = verdict(&pod, target, event, cfg, jiff::Timestamp::now());
        if let Verdict::Mismatch { reason } = verdict {
            return Err(ActionError::Mismatch(reason));
        }
        let seen = Seen {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            container_ids: pod_container_ids(&pod),
        };
        pod_ref.uid = Some(seen.uid.clone());
        // Takes the pod by reference: the guards add its workload to `pod_ref` on the way.
        let outcome = |pod: &PodRef, kind, reason: String| Outcome {
            kind,
            reason,
            pod: Some(pod.clone()),
            seen: Some(seen.clone()),
        };

        let (uid, grace, record) = match verdict {
            Verdict::Stale { reason } => return Ok(outcome(&pod_ref, OutcomeKind::Stale, reason)),
            Verdict::NotYet { reason } => return Err(ActionError::NotYet(reason)),
            Verdict::Skipped { reason } => {
                return Ok(outcome(&pod_ref, OutcomeKind::Skipped, reason));
            }
            Verdict::Terminating { reason } => {
                return Ok(outcome(&pod_ref, OutcomeKind::Terminating, reason));
            }
            Verdict::Mismatch { .. } => unreachable!("handled above"),
            Verdict::Delete { uid, grace } => (uid, grace, Recorded::Deleted),
            Verdict::Shorten { uid, grace, .. } => (uid, Some(grace), Recorded::GraceShortened),
        };
        // The workload-aware guards, for a new deletion (not for shortening a grace period).
        let mut guarded = Guarded::default();
        let mut ticket = None;
        let mut use_eviction = false;
        let mut checks = String::new();
        if let (Some(g), Recorded::Deleted) = (&self.guards, record) {
            let record = crate::deletions::Deletions::record_name();
            let plan = g
                .plan(
                    &self.client,
                    self.evict_client.as_ref().unwrap_or(&self.client),
                    &pod,
                    prefetched,
                    &record,
                    grace,
                    deadline,
                    self.timeout,
                    cfg.dry_run,
                )
                .await?;
            let w = plan.workload().clone();
            pod_ref.workload = Some(w.to_string());
            let related = crate::breaker::related(target.namespace.as_str(), &w);
            let dry = |verdict: &str, reason: &str| {
                outcome(
                    &pod_ref,
                    OutcomeKind::DryRun,
                    format!("DRY_RUN: {verdict}: {reason}"),
                )
            };
            let for_good = matches!(plan, Plan::Refuse { .. });
            match plan {
                Plan::Skip { reason, .. } if cfg.dry_run => {
                    return Ok(dry("would skip", &reason));
                }
                Plan::Skip { reason, .. } => {
                    return Ok(outcome(&pod_ref, OutcomeKind::Skipped, reason));
                }
                Plan::Hold { reason, .. } | Plan::Refuse { reason, .. } if cfg.dry_run => {
                    return Ok(dry("would hold", &reason));
                }
                Plan::Hold { reason, .. } => {
                    self.record_refusal(target, &uid, event, Recorded::Held, related, &reason);
                    return Ok(outcome(&pod_ref, OutcomeKind::Held(HeldBy::Floor), reason));
                }
                Plan::BreakerOpen { reason, .. } if cfg.dry_run => {
                    return Ok(dry("would be refused", &reason));
                }
                // Not deleted, and no retry can change that: loud (an error line), 200.
                Plan::Refuse { reason, .. } | Plan::BreakerOpen { reason, .. } => {
                    let (recorded, kind, what) = if for_good {
                        (
                            Recorded::Held,
                            OutcomeKind::Held(HeldBy::FloorNever),
                            "held for good: the availability floor can never be met; a person must look",
                        )
                    } else {
                        (
                            Recorded::BreakerOpen,
                            OutcomeKind::BreakerOpen(w.kind.metric_label()),
                            "deletion breaker open: not deleting; a person must look",
                        )
                    };
                    tracing::error!(
                        pod = %format!("{}/{}", target.namespace, target.name),
                        workload = %w,
                        reason = reason.as_str(),
                        "{what}"
                    );
                    self.record_refusal(target, &uid, event, recorded, related, &reason);
                    return Ok(outcome(&pod_ref, kind, reason));
                }
                Plan::Remove {
                    ticket: t,
                    checks: c,
                    ..
                } => {
                    ticket = t;
                    use_eviction = g.use_eviction;
                    checks = format!(" ({})", c.join("; "));
                    guarded = Guarded {
                        related,
                        why: None,
                        workload_key: crate::breaker::workload_key(target.namespace.as_str(), &w),
                    };
                }
            }
        }

        if cfg.dry_run {
            // The audit trail of a trial run: what would have been done, and why.
            let extra = Guarded {
                related: guarded.related.take(),
                ..Default::default()
            };
            self.record_later(self.event_object(target, &uid, event, Recorded::DryRun, extra));
            let what = match record {
                Recorded::GraceShortened => "shorten the grace period of",
                _ if use_eviction => "evict",
                _ => "delete",
            };
            return Ok(outcome(
                &pod_ref,
                OutcomeKind::DryRun,
                format!(
                    "DRY_RUN: would {what} pod {}/{}{checks}",
                    target.namespace, target.name
                ),
            ));
        }

        // The removal, through the Eviction API or a DELETE; both carry the uid precondition.
        let (verb, noun) = if use_eviction {
            ("evict", "eviction")
        } else {
            ("delete", "delete")
        };
        let removed: Result<Result<(), Refused>, ActionError> = if use_eviction {
            self.within(
                deadline,
                verb,
                evict::evict(
                    self.evict_client.as_ref().unwrap_or(&self.client),
                    target.namespace.as_str(),
                    target.name.as_str(),
                    &uid,
                    grace,
                    false,
                ),
            )
            .await
        } else {
            let mut dp = DeleteParams::default().preconditions(Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            });
            if let Some(g) = grace {
                dp = dp.grace_period(g);
            }
            self.within(deadline, verb, pods.delete(target.name.as_str(), &dp))
                .await
                .map(|r| r.map(drop).map_err(Refused::Other))
        };
        if !matches!(removed, Ok(Ok(()))) {
            // Not removed (held, gone, stale, refused, timed out): the reservation must not count.
            if let Some(g) = &self.guards {
                g.release(ticket.take());
            }
        }
        let done = match removed? {
            Ok(()) => match record {
                Recorded::GraceShortened => outcome(
                    &pod_ref,
                    OutcomeKind::Terminating,
                    format!(
                        "the pod was already terminating: grace shortened to {}s (Falco rule {:?})",
                        grace.unwrap_or_default(),
                        event.rule
                    ),
                ),
                _ if use_eviction => outcome(
                    &pod_ref,
                    OutcomeKind::Deleted,
                    format!(
                        "Falco rule {:?} (evicted through the Eviction API)",
                        event.rule
                    ),
                ),
                _ => outcome(
                    &pod_ref,
                    OutcomeKind::Deleted,
                    format!("Falco rule {:?}", event.rule),
                ),
            },
            Err(Refused::Budget(msg)) => {
                let reason = crate::availability::pdb_reason(&msg);
                self.record_refusal(
                    target,
                    &uid,
                    event,
                    Recorded::Held,
                    guarded.related.take(),
                    &reason,
                );
                return Ok(outcome(&pod_ref, OutcomeKind::Held(HeldBy::Pdb), reason));
            }
            Err(Refused::Other(kube::Error::Api(s))) if s.is_not_found() => {
                return Ok(outcome(
                    &pod_ref,
                    OutcomeKind::Gone,
                    format!("the pod disappeared before the {noun}"),
                ));
            }
            Err(Refused::Other(kube::Error::Api(s))) if s.is_conflict() => {
                return Ok(outcome(
                    &pod_ref,
                    OutcomeKind::Stale,
                    format!(
                        "the pod was replaced between check and {noun} (uid precondition failed)"
                    ),
                ));
            }
            Err(Refused::Other(e)) => return Err(map_err(e, verb, target)),
        };

        // The breaker's record of this deletion, under the name its reservation holds.
        if let (Some(g), Some(t)) = (&self.guards, ticket) {
            self.record_later(g.deletions.record(
                t.key,
                (target.namespace.as_str(), target.name.as_str()),
                guarded.workload_key.take(),
                guarded.related.clone(),
                jiff::Timestamp::now(),
            ));
        }
        self.record_later(self.event_object(target, &uid, event, record, guarded));
        Ok(done)
    }

    async fn within<T>(
        &self,
        deadline: Instant,
        step: &'static str,
        fut: impl Future<Output = T>,
    ) -> Result<T, ActionError> {
        tokio::time::timeout_at(deadline, fut)
            .await
            .map_err(|_| ActionError::Timeout {
                step,
                timeout: self.timeout,
            })
    }

    /// Records the Warning Event of a deletion a guard refused (held, breaker open), saying why.
    fn record_refusal(
        &self,
        t: &Target,
        uid: &str,
        event: &FalcoEvent,
        what: Recorded,
        related: Option<ObjectReference>,
        why: &str,
    ) {
        let extra = Guarded {
            related,
            why: Some(why.to_string()),
            ..Default::default()
        };
        self.record_later(self.event_object(t, uid, event, what, extra));
    }

    /// Records `event` after the answer: the sender should not wait a third API round trip for
    /// the audit trail. A deletion counts even when its Event cannot be recorded (no RBAC for
    /// events). Shutdown and the one-shot mode wait for these (`App::drain`).
    fn record_later(&self, record: KubeEvent) {
        let this = self.clone();
        self.background.spawn(async move {
            let ns = record.metadata.namespace.clone().unwrap_or_default();
            let api: Api<KubeEvent> = Api::namespaced(this.client.clone(), &ns);
            let created =
                tokio::time::timeout(this.timeout, api.create(&PostParams::default(), &record)).await;
            let error = match created {
                Ok(Ok(_)) => return,
                Ok(Err(e)) => error_chain(&e),
                Err(_) => format!("no answer within {}s", this.timeout.as_secs()),
            };
            let pod = record.regarding.and_then(|r| r.name).unwrap_or_default();
            tracing::warn!(pod = %format!("{ns}/{pod}"), %error, "the Kubernetes Event could not be recorded");
        });
    }

    /// The Event for `kubectl get events`: who deleted the pod (or would have, under DRY_RUN),
    /// and which Falco event made it.
    fn event_object(
        &self,
        t: &Target,
        uid: &str,
        event: &FalcoEvent,
        what: Recorded,
        extra: Guarded,
    ) -> KubeEvent {
        let (action, reason, type_) = match what {
            Recorded::DryRun => ("DryRunDelete", "FalcoDryRun", "Normal"),
            Recorded::Deleted => ("Delete", crate::breaker::DELETED_REASON, "Warning"),
            Recorded::GraceShortened => ("Delete", "FalcoGraceShortened", "Warning"),
            Recorded::Held => ("Delete", "FalcoDeleteHeld", "Warning"),
            Recorded::BreakerOpen => ("Delete", "FalcoBreakerOpen", "Warning"),
        };
        let now = jiff::Timestamp::now();
        let note = match extra.why {
            Some(why) => bounded(format!("{why}. {}", event_note(event))),
            None => event_note(event),
        };
        KubeEvent {
            metadata: ObjectMeta {
                name: Some(event_name(t.name.as_str(), now)),
                namespace: Some(t.namespace.to_string()),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(action.into()),
            reason: Some(reason.into()),
            note: Some(note),
            related: extra.related,
            type_: Some(type_.into()),
            reporting_controller: Some(REPORTER.into()),
            reporting_instance: Some(self.instance.clone()),
            regarding: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(t.name.to_string()),
                namespace: Some(t.namespace.to_string()),
                uid: Some(uid.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_is_bounded_to_one_kilobyte_on_a_char_boundary() {
        let ev: FalcoEvent = serde_json::from_value(serde_json::json!({
            "rule": "r", "priority": "Notice", "output": "é".repeat(2000)}))
        .unwrap();
        let note = event_note(&ev);
        assert!(note.len() <= 1024 && note.ends_with("..."));
    }
}
