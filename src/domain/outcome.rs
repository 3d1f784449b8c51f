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
    /// verdict, the evidence is combined: another uid is no proof whatever the container, and a
    /// container id the pod did not report is no proof whatever the uid (a forged event with
    /// the right uid and a foreign container must not leave an answer a true event would reuse).
    pub fn proves(&self, target: &Target) -> bool {
        let uid = target.uid.as_ref().map(|u| u.as_str() == self.uid);
        let container = target
            .container_id
            .as_ref()
            .map(|c| self.container_ids.iter().any(|s| s.matches(c)));
        match (uid, container) {
            (None, None) => false,
            (u, c) => u.unwrap_or(true) && c.unwrap_or(true),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ident::{Namespace, PodName, PodUid};

    const UID: &str = "0f9a4c1e-1111-2222-3333-444455556666";
    const OTHER_UID: &str = "9a9a4c1e-1111-2222-3333-444455556666";

    fn target(cid: Option<&str>, uid: Option<&str>) -> Target {
        Target {
            namespace: Namespace::parse("ns", "prod").unwrap(),
            name: PodName::parse("pod", "web-0").unwrap(),
            container_id: cid.map(|c| ContainerId::parse("c", c).unwrap().unwrap()),
            uid: uid.map(|u| PodUid::parse("u", u).unwrap()),
        }
    }

    #[test]
    fn proof_needs_every_piece_of_evidence_the_event_carries_to_match() {
        let seen = Seen {
            uid: UID.into(),
            container_ids: vec![ContainerId::parse("c", "ee97d9c4186f").unwrap().unwrap()],
        };
        let (ours, foreign) = (Some("ee97d9c4186f"), Some("0123456789ab"));
        assert!(seen.proves(&target(ours, Some(UID))));
        assert!(seen.proves(&target(None, Some(UID))));
        assert!(seen.proves(&target(ours, None)));
        assert!(!seen.proves(&target(None, None)));
        assert!(!seen.proves(&target(ours, Some(OTHER_UID))));
        // The right uid with a container the pod never reported proves nothing.
        assert!(!seen.proves(&target(foreign, Some(UID))));
        assert!(!seen.proves(&target(foreign, None)));
    }
}
