//! What happened to one event: the outcome kinds (the public `outcome` values), what the reply
//! may say of why ([`Why`]: never live-object data), the pod an outcome is about, and the
//! identity of the live pod it was decided on. Pure.

use serde::Serialize;

use crate::domain::{contain::Steps, falco::Target, ident::ContainerId};

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
    /// ACTION=contain: isolated, released, evidence kept, a deadline (`Outcome::steps`).
    Contained,
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

    /// What the reply says of the hold.
    pub fn why(self) -> &'static str {
        match self {
            HeldBy::Floor => why::HELD_FLOOR,
            HeldBy::FloorNever => why::HELD_FOR_GOOD,
            HeldBy::Pdb => why::HELD_PDB,
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
            OutcomeKind::Contained => "contained",
        }
    }
}

impl Serialize for OutcomeKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The pod an outcome is about, as the log line and the Events name it (not serialized: the
/// reply names only what the event named).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    /// The pod's workload, `Kind/name` (`Deployment/web`, `Standalone/p`), once resolved.
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

/// The fixed sentences a reply gives as its reason once live objects were looked at. A reply
/// answers whoever can send an event: it names no uid, time, count, workload, node or other
/// object (those are in the log line and the Kubernetes Event), so it tells a forger no more
/// than the outcome does.
pub mod why {
    pub const GONE: &str = "the pod no longer exists";
    pub const STALE: &str =
        "not the pod the event saw: it was replaced, or is newer than the event";
    pub const REPLACED: &str =
        "the pod was replaced before it could be removed (the uid precondition failed)";
    pub const UNPROVEN: &str = "nothing in the event proves the live pod is the one Falco saw";
    pub const FOREIGN: &str =
        "the event's container is not one of the pod's: not deleted, a Warning Event records it";
    pub const PROTECTED: &str = "the pod is protected";
    pub const TERMINATING: &str = "the pod is already terminating";
    pub const SHORTENED: &str =
        "the pod was already terminating: its grace period was shortened to GRACE_PERIOD_SECONDS";
    pub const DELETED: &str = "the pod was deleted";
    pub const EVICTED: &str = "the pod was evicted through the Eviction API";
    pub const KIND_SKIPPED: &str =
        "the pod's workload is not acted on (a mirror pod, or a kind in SKIP_OWNER_KINDS)";
    pub const HELD_FLOOR: &str =
        "held: deleting the pod now would take its workload below MIN_AVAILABLE; retry";
    pub const HELD_FOR_GOOD: &str = "held for good: MIN_AVAILABLE can never be met by deleting \
                                     one of the workload's replicas; a person must look";
    pub const HELD_PDB: &str = "held: a PodDisruptionBudget does not allow the eviction now; retry";
    pub const BREAKER_OPEN: &str = "the deletion breaker is open (MAX_DELETIONS_PER_WORKLOAD or \
                                    MAX_DELETIONS); a person must look";
    pub const DRY_DELETE: &str = "DRY_RUN: would delete the pod";
    pub const DRY_EVICT: &str = "DRY_RUN: would evict the pod";
    pub const DRY_SHORTEN: &str = "DRY_RUN: would shorten the pod's grace period";
    pub const DRY_SKIP: &str = "DRY_RUN: would skip: the pod's workload is not acted on";
    pub const DRY_HOLD: &str = "DRY_RUN: would hold (MIN_AVAILABLE or a PodDisruptionBudget)";
    pub const DRY_BREAKER: &str = "DRY_RUN: would be refused: the deletion breaker is open";
    pub const CONTAINED: &str = "the pod was contained (the steps say how); a person deletes it \
                                 when done, or the kubelet at its deadline";
    pub const CONTAINED_HOST_NETWORK: &str = "the pod uses the host's network: no NetworkPolicy \
                                              can isolate it; its evidence was kept and the \
                                              kubelet kills it now";
    pub const ALREADY_CONTAINED: &str = "the pod is contained already";
    pub const REPLACED_CONTAIN: &str = "the pod changed before it could be contained (the uid \
                                        precondition failed, or its labels changed): retry";
    pub const DRY_CONTAIN: &str = "DRY_RUN: would contain the pod (the steps say how)";
    pub const TERMINATING_NOT_CONTAINED: &str =
        "the pod is already terminating: it is not contained";
}

/// What the reply may say of why an outcome is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Decided on the event and the configuration alone, before any API call: the detailed
    /// reason tells the sender nothing it did not send or could not read in the documentation.
    Policy,
    /// Decided on live objects: the reply says this fixed sentence (one of [`why`]) and no more.
    Said(&'static str),
}

/// What happened to one event. Every kind is a success for the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub kind: OutcomeKind,
    /// The whole story, live objects' data included: for the log line and the Events.
    pub reason: String,
    /// What the reply says instead.
    pub why: Why,
    pub pod: Option<PodRef>,
    /// The live pod looked at, when there was one.
    pub seen: Option<Seen>,
    /// A containment's steps, taken (`contained`) or that would be (`dry-run`).
    pub steps: Steps,
}

impl Outcome {
    /// The reason the reply gives: the policy's own, or the fixed sentence.
    pub fn public_reason(&self) -> &str {
        match self.why {
            Why::Policy => &self.reason,
            Why::Said(s) => s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0f9a4c1e-1111-2222-3333-444455556666";
    const OTHER_UID: &str = "9a9a4c1e-1111-2222-3333-444455556666";

    fn target(cid: Option<&str>, uid: Option<&str>) -> Target {
        Target::prod_web_0(cid, uid)
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
