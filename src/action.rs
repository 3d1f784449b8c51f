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

use crate::event::{FalcoEvent, Target};

/// Pods that carry this annotation set to "true" are never deleted.
pub const PROTECT_ANNOTATION: &str = "falco-responder/protect";
/// `reportingController` of the Events we record.
pub const REPORTER: &str = "falco-responder";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutcomeKind {
    Deleted,
    DryRun,
    Gone,
    Skipped,
    Stale,
}

impl OutcomeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Deleted => "deleted",
            OutcomeKind::DryRun => "dry-run",
            OutcomeKind::Gone => "gone",
            OutcomeKind::Skipped => "skipped",
            OutcomeKind::Stale => "stale",
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
            namespace: t.namespace.clone(),
            name: t.name.clone(),
            uid: t.uid.clone(),
        }
    }
}

/// What happened to one event. Every kind is a success for the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub kind: OutcomeKind,
    pub reason: String,
    pub pod: Option<PodRef>,
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
}

impl ActionError {
    /// 503 where a retry may help (timeouts, outages, throttling); 500 where it needs a human.
    pub fn status(&self) -> StatusCode {
        match self {
            ActionError::Timeout { .. } | ActionError::Unreachable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ActionError::Api { code, .. } if *code >= 500 || *code == 429 => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ActionError::Forbidden { .. } | ActionError::Api { .. } => {
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
        }
    }
}

/// Talks to the API server on behalf of one process; cheap to clone.
#[derive(Clone)]
pub struct Kube {
    client: Client,
    grace_period: Option<u32>,
    timeout: Duration,
    instance: String,
    /// Event recordings in flight: they run after the answer, and shutdown waits for them.
    background: TaskTracker,
}

fn map_err(e: kube::Error, verb: &'static str, t: &Target) -> ActionError {
    match e {
        kube::Error::Api(s) if s.is_forbidden() => ActionError::Forbidden {
            verb,
            namespace: t.namespace.clone(),
            name: t.name.clone(),
            message: s.message.clone(),
        },
        kube::Error::Api(s) => ActionError::Api {
            verb,
            namespace: t.namespace.clone(),
            name: t.name.clone(),
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

/// Strips the runtime scheme (`containerd://`, `docker://`, `cri-o://`).
fn bare_container_id(id: &str) -> &str {
    id.split_once("://").map_or(id, |(_, rest)| rest)
}

/// Does a container id from Falco (12-char short or full) name one of the pod's containers?
/// `None` when the pod reports no container ids (not started yet): nothing to compare.
pub fn container_matches(pod: &Pod, event_id: &str) -> Option<bool> {
    let status = pod.status.as_ref()?;
    let ids: Vec<&str> = [
        &status.container_statuses,
        &status.init_container_statuses,
        &status.ephemeral_container_statuses,
    ]
    .into_iter()
    .flatten()
    .flatten()
    .filter_map(|s| s.container_id.as_deref())
    .map(bare_container_id)
    .filter(|id| !id.is_empty())
    .collect();
    if ids.is_empty() {
        return None;
    }
    let ev = bare_container_id(event_id);
    Some(
        ids.iter()
            .any(|id| id.starts_with(ev) || ev.starts_with(id)),
    )
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
        grace_period: Option<u32>,
        timeout: Duration,
        instance: String,
        background: TaskTracker,
    ) -> Kube {
        Kube {
            client,
            grace_period,
            timeout,
            instance,
            background,
        }
    }

    /// GET, checks, then (unless `dry_run`) DELETE with the uid precondition and an Event.
    pub async fn act(
        &self,
        target: &Target,
        event: &FalcoEvent,
        dry_run: bool,
    ) -> Result<Outcome, ActionError> {
        let deadline = Instant::now() + self.timeout;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &target.namespace);
        let mut pod_ref = PodRef::of(target);
        let outcome = |kind, reason: String, pod: &PodRef| Outcome {
            kind,
            reason,
            pod: Some(pod.clone()),
        };

        let pod = match self
            .within(deadline, "get", pods.get_opt(&target.name))
            .await?
        {
            Ok(Some(pod)) => pod,
            Ok(None) => {
                return Ok(outcome(
                    OutcomeKind::Gone,
                    "the pod no longer exists".into(),
                    &pod_ref,
                ));
            }
            Err(e) => return Err(map_err(e, "get", target)),
        };
        let live_uid = pod.metadata.uid.clone().unwrap_or_default();
        pod_ref.uid = Some(live_uid.clone());

        if let Some(uid) = &target.uid
            && *uid != live_uid
        {
            return Ok(outcome(
                OutcomeKind::Stale,
                format!(
                    "the event names pod uid {uid}, the pod now has uid {live_uid}: it was replaced"
                ),
                &pod_ref,
            ));
        }
        if let Some(cid) = &target.container_id
            && container_matches(&pod, cid) == Some(false)
        {
            return Ok(outcome(
                OutcomeKind::Stale,
                format!(
                    "no container of the pod has id {cid}: the pod was replaced after the event"
                ),
                &pod_ref,
            ));
        }
        let protected = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PROTECT_ANNOTATION))
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        if protected {
            return Ok(outcome(
                OutcomeKind::Skipped,
                format!("the pod is annotated {PROTECT_ANNOTATION}=true"),
                &pod_ref,
            ));
        }
        if pod.metadata.deletion_timestamp.is_some() {
            return Ok(outcome(
                OutcomeKind::Gone,
                "the pod is already terminating".into(),
                &pod_ref,
            ));
        }
        if dry_run {
            // The audit trail of a trial run: what would have been deleted, and why.
            self.record_later(self.event_object(target, &live_uid, event, true));
            return Ok(outcome(
                OutcomeKind::DryRun,
                format!(
                    "DRY_RUN: would delete pod {}/{}",
                    target.namespace, target.name
                ),
                &pod_ref,
            ));
        }

        let mut dp = DeleteParams::default().preconditions(Preconditions {
            uid: Some(live_uid.clone()),
            resource_version: None,
        });
        if let Some(g) = self.grace_period {
            dp = dp.grace_period(g);
        }
        let deleted = match self
            .within(deadline, "delete", pods.delete(&target.name, &dp))
            .await?
        {
            Ok(_) => outcome(
                OutcomeKind::Deleted,
                format!("Falco rule {:?}", event.rule),
                &pod_ref,
            ),
            Err(kube::Error::Api(s)) if s.is_not_found() => {
                return Ok(outcome(
                    OutcomeKind::Gone,
                    "the pod disappeared before the delete".into(),
                    &pod_ref,
                ));
            }
            Err(kube::Error::Api(s)) if s.is_conflict() => {
                return Ok(outcome(
                    OutcomeKind::Stale,
                    "the pod was replaced between check and delete (uid precondition failed)"
                        .into(),
                    &pod_ref,
                ));
            }
            Err(e) => return Err(map_err(e, "delete", target)),
        };

        self.record_later(self.event_object(target, &live_uid, event, false));
        Ok(deleted)
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
    fn event_object(&self, t: &Target, uid: &str, event: &FalcoEvent, dry_run: bool) -> KubeEvent {
        let (action, reason, type_) = if dry_run {
            ("DryRunDelete", "FalcoDryRun", "Normal")
        } else {
            ("Delete", "FalcoPodDeleted", "Warning")
        };
        let now = jiff::Timestamp::now();
        KubeEvent {
            metadata: ObjectMeta {
                name: Some(format!("{}.{:x}", t.name, now.as_nanosecond())),
                namespace: Some(t.namespace.clone()),
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
                name: Some(t.name.clone()),
                namespace: Some(t.namespace.clone()),
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
    use k8s_openapi::api::core::v1::{ContainerStatus, PodStatus};

    fn pod_with(ids: &[&str]) -> Pod {
        Pod {
            status: Some(PodStatus {
                container_statuses: Some(
                    ids.iter()
                        .map(|id| ContainerStatus {
                            container_id: Some(id.to_string()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn container_ids_match_by_prefix_after_the_runtime_scheme() {
        let full = "ee97d9c4186f0123456789abcdef0123456789abcdef0123456789abcdef0123";
        for scheme in ["containerd://", "docker://", "cri-o://"] {
            let pod = pod_with(&[&format!("{scheme}{full}")]);
            assert_eq!(container_matches(&pod, "ee97d9c4186f"), Some(true));
            assert_eq!(container_matches(&pod, full), Some(true));
            assert_eq!(container_matches(&pod, "0123456789ab"), Some(false));
        }
        assert_eq!(container_matches(&pod_with(&[]), "ee97d9c4186f"), None);
        assert_eq!(container_matches(&Pod::default(), "ee97d9c4186f"), None);
    }

    #[test]
    fn note_is_bounded_to_one_kilobyte_on_a_char_boundary() {
        let ev: FalcoEvent = serde_json::from_value(serde_json::json!({
            "rule": "r", "priority": "Notice", "output": "é".repeat(2000)}))
        .unwrap();
        let note = event_note(&ev);
        assert!(note.len() <= 1024 && note.ends_with("..."));
    }
}
