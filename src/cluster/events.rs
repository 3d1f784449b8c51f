//! The one vocabulary of the Kubernetes Events the function writes (reporter, reasons, labels
//! and annotations) and their builders: the audit Event in the pod's namespace and the
//! breaker's record in the function's own namespace.

use k8s_openapi::{
    api::{core::v1::ObjectReference, events::v1::Event as KubeEvent},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff,
};

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::domain::{
    falco::{FalcoEvent, Target},
    step::{Audit, Recorded},
};

/// `reportingController` of the Events we record.
pub const REPORTER: &str = "falco-responder";
/// Reason of the audit Event of a deletion, and of the breaker's record of one.
pub const DELETED_REASON: &str = "FalcoPodDeleted";
/// Reason of the Warning Event of a containment.
pub const CONTAINED_REASON: &str = "FalcoPodContained";
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

/// Label of a MIN_AVAILABLE reservation record (`cluster::reservations`): the hash of the
/// workload it holds a slot of, what the LIST of a workload's slots selects.
pub const RESERVATION_LABEL: &str = "falco-responder/reservation";
/// Reason of a reservation record.
pub const RESERVED_REASON: &str = "FalcoDeletionReserved";

/// The API's limit for an Event's note, in bytes.
const NOTE_MAX: usize = 1024;

/// A note for `kubectl get events`: rule, priority and Falco's output line (≤ 1 kB, the API's
/// limit). The sender's strings are cut before they are quoted or copied.
pub fn event_note(ev: &FalcoEvent) -> String {
    let rule = crate::fastfmt::bounded(&ev.rule, crate::fastfmt::ECHO_MAX);
    let mut note = format!("Falco rule {rule:?} ({})", ev.priority);
    if let Some(out) = &ev.output {
        note.push_str(": ");
        note.push_str(crate::fastfmt::cut(out, NOTE_MAX));
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

/// At most 1 kB (the API's limit for a note), cut on a char boundary and marked as cut.
fn bounded(note: String) -> String {
    crate::fastfmt::bounded_string(note, NOTE_MAX)
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
        Recorded::Contained => ("Contain", CONTAINED_REASON, "Warning"),
        Recorded::DryRunContain => ("DryRunContain", "FalcoDryRun", "Normal"),
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

/// A record in the function's own `namespace` (the breaker's, a reservation): an Event must be
/// about an object of its own namespace, so it is about this process's pod (in a cluster the
/// instance is the pod's name).
fn own_record(
    namespace: &str,
    instance: &str,
    metadata: ObjectMeta,
    reason: &str,
    note: String,
    now: jiff::Timestamp,
) -> KubeEvent {
    KubeEvent {
        metadata: ObjectMeta {
            namespace: Some(namespace.to_string()),
            ..metadata
        },
        event_time: Some(MicroTime(now)),
        action: Some("Delete".into()),
        reason: Some(reason.into()),
        note: Some(note),
        type_: Some("Normal".into()),
        reporting_controller: Some(REPORTER.into()),
        reporting_instance: Some(instance.to_string()),
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
    let metadata = ObjectMeta {
        name: Some(name),
        labels: Some([(RECORD_LABEL.into(), RECORD_VALUE.into())].into()),
        annotations: Some(annotations),
        ..Default::default()
    };
    let note = breaker_note(pod, false);
    KubeEvent {
        related,
        ..own_record(namespace, instance, metadata, DELETED_REASON, note, now)
    }
}

/// The note of the breaker's record: the pod it counts, deleted or `contained`.
pub fn breaker_note((pod_ns, pod_name): (&str, &str), contained: bool) -> String {
    let what = if contained { "contained" } else { "deleted" };
    format!(
        "{what} pod {pod_ns}/{pod_name}: counted by the deletion breaker \
         (MAX_DELETIONS, MAX_DELETIONS_PER_WORKLOAD)"
    )
}

/// How often one workload's refusal Event of one reason is written, at most.
pub const REFUSAL_EVENT_WINDOW: Duration = Duration::from_secs(60);
/// How many workload+reason pairs the limiter remembers (each key cut to well under 1 KiB:
/// at most ~1 MiB). Beyond that within one window, refusal Events are not written at all.
pub const REFUSAL_KEYS_MAX: usize = 1024;

/// Refusal Events (breaker open, held, dry run) are the audit trail of what was *not* done,
/// written in the pod's namespace at the rate events arrive: a storm of forged events would
/// write one each. At most one per workload (the pod's, for a pod whose workload was not
/// resolved) and reason per [`REFUSAL_EVENT_WINDOW`], and at most [`REFUSAL_KEYS_MAX`] per
/// window in all; the log line of every event says the rest. Kept in memory, per process:
/// the alternative (a deterministic Event name per workload, reason and window, so a second
/// create is a 409) still costs an API call per event, which is what this is for.
#[derive(Debug)]
pub struct RefusalLimiter {
    window: Duration,
    max_keys: usize,
    last: Mutex<HashMap<String, Instant>>,
}

impl Default for RefusalLimiter {
    fn default() -> Self {
        RefusalLimiter::new(REFUSAL_EVENT_WINDOW, REFUSAL_KEYS_MAX)
    }
}

impl RefusalLimiter {
    pub fn new(window: Duration, max_keys: usize) -> RefusalLimiter {
        RefusalLimiter {
            window,
            max_keys,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the refusal Event for `what` about `about` (`namespace/Kind/name`, or
    /// `namespace/pod`) may be written at `now`; a yes is remembered for the window.
    pub fn allow(&self, what: Recorded, about: &str, now: Instant) -> bool {
        // `about` names a workload its pod's author may have named: the key is bounded.
        let about = crate::fastfmt::bounded(about, 2 * crate::fastfmt::ECHO_MAX);
        let key = format!("{what:?}/{about}");
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = |at: &Instant| now.saturating_duration_since(*at) < self.window;
        if last.get(&key).is_some_and(fresh) {
            return false;
        }
        if last.len() >= self.max_keys {
            last.retain(|_, at| fresh(at));
            if last.len() >= self.max_keys {
                return false;
            }
        }
        last.insert(key, now);
        true
    }
}

/// Whether an Event about `what` is a refusal (rate-limited), not the record of an action. A
/// foreign container's Warning is one too: a forged event can name it at any rate.
pub fn is_refusal(what: Recorded) -> bool {
    matches!(
        what,
        Recorded::DryRun
            | Recorded::DryRunContain
            | Recorded::Held
            | Recorded::BreakerOpen
            | Recorded::Foreign
    )
}

/// A MIN_AVAILABLE reservation: a slot of `workload` (its key, hashed to `hash`) held by this
/// process for the deletion of `pod`, created in the function's own `namespace` under its
/// deterministic `name` (a second create of the same slot is a 409). RBAC: `create`, `list`,
/// `delete` on events there.
pub fn reservation_record(
    namespace: &str,
    instance: &str,
    name: String,
    hash: &str,
    workload: &str,
    pod: (&str, &str),
    now: jiff::Timestamp,
) -> KubeEvent {
    let (pod_ns, pod_name) = pod;
    let metadata = ObjectMeta {
        name: Some(name),
        labels: Some([(RESERVATION_LABEL.into(), hash.to_string())].into()),
        annotations: Some(std::collections::BTreeMap::from([
            (POD_ANNOTATION.into(), format!("{pod_ns}/{pod_name}")),
            (WORKLOAD_ANNOTATION.into(), workload.to_string()),
        ])),
        ..Default::default()
    };
    let note = format!(
        "deleting pod {pod_ns}/{pod_name}: holds one of the deletions MIN_AVAILABLE lets be in \
         flight for {workload}"
    );
    own_record(namespace, instance, metadata, RESERVED_REASON, note, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_refusal_event_per_workload_and_reason_per_window_and_a_bounded_memory() {
        let l = RefusalLimiter::new(Duration::from_secs(60), 3);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let web = "prod/Deployment/web";
        assert!(l.allow(Recorded::BreakerOpen, web, at(0)));
        // The same workload and reason: not again within the window ...
        assert!(!l.allow(Recorded::BreakerOpen, web, at(1)));
        assert!(!l.allow(Recorded::BreakerOpen, web, at(59)));
        // ... another reason or workload is another key.
        assert!(l.allow(Recorded::Held, web, at(1)));
        assert!(l.allow(Recorded::BreakerOpen, "prod/Deployment/db", at(1)));
        // Full (3 keys in the window): nothing more is written, not even a new key.
        assert!(!l.allow(Recorded::BreakerOpen, "prod/Deployment/x", at(2)));
        // After the window the same workload may be said again, and expired keys make room.
        assert!(l.allow(Recorded::BreakerOpen, web, at(60)));
        assert!(l.allow(Recorded::BreakerOpen, "prod/Deployment/x", at(62)));
        assert!(l.last.lock().unwrap().len() <= 3);
        assert!(is_refusal(Recorded::DryRun) && !is_refusal(Recorded::Deleted));
        assert!(is_refusal(Recorded::Foreign));
        assert!(!is_refusal(Recorded::GraceShortened));
    }

    #[test]
    fn note_is_bounded_to_one_kilobyte_on_a_char_boundary() {
        let ev: FalcoEvent = serde_json::from_value(serde_json::json!({
            "rule": "r", "priority": "Notice", "output": "é".repeat(2000)}))
        .unwrap();
        let note = event_note(&ev);
        assert!(note.len() <= NOTE_MAX && note.ends_with(crate::fastfmt::CUT_MARK));
        // A megabyte of rule is cut before it is quoted.
        let ev: FalcoEvent = serde_json::from_value(serde_json::json!({
            "rule": "\u{1}".repeat(1 << 20), "priority": "Notice"}))
        .unwrap();
        let note = event_note(&ev);
        assert!(note.len() <= NOTE_MAX && note.ends_with(crate::fastfmt::CUT_MARK));
    }
}
