//! What happened to one event: the outcome kinds (the public `outcome` values), the pod an
//! outcome is about, and the identity of the live pod it was decided on. Pure.

use serde::Serialize;

use crate::domain::{falco::Target, ident::ContainerId};

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
