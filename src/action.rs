//! The Kubernetes side: check the pod is still the one the event named, delete it with a uid
//! precondition, and record a Kubernetes Event. Every call of one event shares one deadline.

use std::time::Duration;

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
    config::Config,
    event::{FalcoEvent, Target},
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
}

impl PodRef {
    pub fn of(t: &Target) -> PodRef {
        PodRef {
            namespace: t.namespace.to_string(),
            name: t.name.to_string(),
            uid: t.uid.as_ref().map(ToString::to_string),
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
    /// The pod's status has not caught up with a recent event yet: retry.
    #[error("cannot decide yet: {0}")]
    NotYet(String),
}

impl ActionError {
    /// 503 where a retry may help (timeouts, outages, throttling); 500 where it needs a human.
    pub fn status(&self) -> StatusCode {
        match self {
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
}

/// Talks to the API server on behalf of one process; cheap to clone.
#[derive(Clone)]
pub struct Kube {
    client: Client,
    timeout: Duration,
    instance: String,
    /// Event recordings in flight: they run after the answer, and shutdown waits for them.
    background: TaskTracker,
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
        }
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

        let pod = match self
            .within(deadline, "get", pods.get_opt(target.name.as_str()))
            .await?
        {
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
        let outcome = |kind, reason: String| Outcome {
            kind,
            reason,
            pod: Some(pod_ref.clone()),
            seen: Some(seen.clone()),
        };

        let (uid, grace, record) = match verdict {
            Verdict::Stale { reason } => return Ok(outcome(OutcomeKind::Stale, reason)),
            Verdict::NotYet { reason } => return Err(ActionError::NotYet(reason)),
            Verdict::Skipped { reason } => return Ok(outcome(OutcomeKind::Skipped, reason)),
            Verdict::Terminating { reason } => {
                return Ok(outcome(OutcomeKind::Terminating, reason));
            }
            Verdict::Mismatch { .. } => unreachable!("handled above"),
            Verdict::Delete { uid, grace } => (uid, grace, Recorded::Deleted),
            Verdict::Shorten { uid, grace, .. } => (uid, Some(grace), Recorded::GraceShortened),
        };
        if cfg.dry_run {
            // The audit trail of a trial run: what would have been done, and why.
            self.record_later(self.event_object(target, &uid, event, Recorded::DryRun));
            let what = match record {
                Recorded::GraceShortened => "shorten the grace period of",
                _ => "delete",
            };
            return Ok(outcome(
                OutcomeKind::DryRun,
                format!(
                    "DRY_RUN: would {what} pod {}/{}",
                    target.namespace, target.name
                ),
            ));
        }

        let mut dp = DeleteParams::default().preconditions(Preconditions {
            uid: Some(uid.clone()),
            resource_version: None,
        });
        if let Some(g) = grace {
            dp = dp.grace_period(g);
        }
        let done = match self
            .within(deadline, "delete", pods.delete(target.name.as_str(), &dp))
            .await?
        {
            Ok(_) => match record {
                Recorded::GraceShortened => outcome(
                    OutcomeKind::Terminating,
                    format!(
                        "the pod was already terminating: grace shortened to {}s (Falco rule {:?})",
                        grace.unwrap_or_default(),
                        event.rule
                    ),
                ),
                _ => outcome(OutcomeKind::Deleted, format!("Falco rule {:?}", event.rule)),
            },
            Err(kube::Error::Api(s)) if s.is_not_found() => {
                return Ok(outcome(
                    OutcomeKind::Gone,
                    "the pod disappeared before the delete".into(),
                ));
            }
            Err(kube::Error::Api(s)) if s.is_conflict() => {
                return Ok(outcome(
                    OutcomeKind::Stale,
                    "the pod was replaced between check and delete (uid precondition failed)"
                        .into(),
                ));
            }
            Err(e) => return Err(map_err(e, "delete", target)),
        };

        self.record_later(self.event_object(target, &uid, event, record));
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
    fn event_object(&self, t: &Target, uid: &str, event: &FalcoEvent, what: Recorded) -> KubeEvent {
        let (action, reason, type_) = match what {
            Recorded::DryRun => ("DryRunDelete", "FalcoDryRun", "Normal"),
            Recorded::Deleted => ("Delete", "FalcoPodDeleted", "Warning"),
            Recorded::GraceShortened => ("Delete", "FalcoGraceShortened", "Warning"),
        };
        let now = jiff::Timestamp::now();
        // `<pod>.<hex>` must stay a valid name (≤ 253) for pod names near the limit: cut the pod
        // part, and end it on a letter or digit.
        let suffix = format!(".{:x}", now.as_nanosecond());
        let prefix = &t.name.as_str()[..t.name.as_str().len().min(253 - suffix.len())];
        let prefix = prefix.trim_end_matches(['-', '.']);
        KubeEvent {
            metadata: ObjectMeta {
                name: Some(format!("{prefix}{suffix}")),
                namespace: Some(t.namespace.to_string()),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(action.into()),
            reason: Some(reason.into()),
            note: Some(event_note(event)),
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
