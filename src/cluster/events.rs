//! The one vocabulary of the Kubernetes Events the function writes (reporter, reasons, labels
//! and annotations) and their builders: the audit Event in the pod's namespace and the
//! breaker's record in the function's own namespace.

use k8s_openapi::{
    api::{core::v1::ObjectReference, events::v1::Event as KubeEvent},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff,
};

use crate::domain::{
    falco::{FalcoEvent, Target},
    step::{Audit, Recorded},
};

/// `reportingController` of the Events we record.
pub const REPORTER: &str = "falco-responder";
/// Reason of the audit Event of a deletion, and of the breaker's record of one.
pub const DELETED_REASON: &str = "FalcoPodDeleted";
/// Reason of the Warning Event about an event whose container is not the pod's.
pub const FOREIGN_REASON: &str = "FalcoForeignContainer";
/// The label every breaker record carries (value [`RECORD_VALUE`]): what the watch and the
/// LIST select.
pub const RECORD_LABEL: &str = "falco-responder/breaker";
pub const RECORD_VALUE: &str = "deletion";
/// Annotation of a record: the workload key (`namespace/Kind/name`) it counts under.
pub const WORKLOAD_ANNOTATION: &str = "falco-responder/workload";
/// Annotation of a record: the pod deleted (`namespace/name`), for people.
pub const POD_ANNOTATION: &str = "falco-responder/pod";

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
        note.truncate(crate::fastfmt::cut(&note, 1021).len());
        note.push_str("...");
    }
    note
}

/// The Event for `kubectl get events`: who deleted the pod (or would have, under DRY_RUN),
/// and which Falco event made it.
pub fn audit_event(instance: &str, t: &Target, event: &FalcoEvent, audit: Audit) -> KubeEvent {
    let (action, reason, type_) = match audit.what {
        Recorded::DryRun => ("DryRunDelete", "FalcoDryRun", "Normal"),
        Recorded::Deleted => ("Delete", DELETED_REASON, "Warning"),
        Recorded::GraceShortened => ("Delete", "FalcoGraceShortened", "Warning"),
        Recorded::Held => ("Delete", "FalcoDeleteHeld", "Warning"),
        Recorded::BreakerOpen => ("Delete", "FalcoBreakerOpen", "Warning"),
        Recorded::Foreign => ("Skip", FOREIGN_REASON, "Warning"),
    };
    let now = jiff::Timestamp::now();
    let note = match audit.why {
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
        related: audit.related,
        type_: Some(type_.into()),
        reporting_controller: Some(REPORTER.into()),
        reporting_instance: Some(instance.to_string()),
        regarding: Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(t.name.to_string()),
            namespace: Some(t.namespace.to_string()),
            uid: Some(audit.uid),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The breaker's record of one deletion, created in the function's own `namespace` after the
/// pod is removed. RBAC: `create` on events there.
#[allow(clippy::too_many_arguments)]
pub fn breaker_record(
    namespace: &str,
    instance: &str,
    name: String,
    pod: (&str, &str),
    workload: Option<String>,
    related: Option<ObjectReference>,
    now: jiff::Timestamp,
) -> KubeEvent {
    let (pod_ns, pod_name) = pod;
    let mut annotations =
        std::collections::BTreeMap::from([(POD_ANNOTATION.into(), format!("{pod_ns}/{pod_name}"))]);
    if let Some(w) = workload {
        annotations.insert(WORKLOAD_ANNOTATION.into(), w);
    }
    KubeEvent {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(namespace.to_string()),
            labels: Some([(RECORD_LABEL.into(), RECORD_VALUE.into())].into()),
            annotations: Some(annotations),
            ..Default::default()
        },
        event_time: Some(MicroTime(now)),
        action: Some("Delete".into()),
        reason: Some(DELETED_REASON.into()),
        note: Some(format!(
            "deleted pod {pod_ns}/{pod_name}: counted by the deletion breaker \
             (MAX_DELETIONS, MAX_DELETIONS_PER_WORKLOAD)"
        )),
        related,
        type_: Some("Normal".into()),
        reporting_controller: Some(REPORTER.into()),
        reporting_instance: Some(instance.to_string()),
        // An Event must be about an object of its own namespace: this process's pod (in a
        // cluster the instance is the pod's name).
        regarding: Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(instance.to_string()),
            namespace: Some(namespace.to_string()),
            ..Default::default()
        }),
        ..Default::default()
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
