//! What the plan and the API side say to each other: the steps the plan asks for, the answers
//! it hears back, and its end (the outcome and the Kubernetes Events to record). Pure.

use k8s_openapi::api::{core::v1::ObjectReference, networking::v1::NetworkPolicy};
use serde_json::Value;

use crate::domain::{outcome::Outcome, workload::Workload};

/// How a pod is removed; both carry the uid precondition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Delete,
    Eviction,
}

impl Via {
    /// The verb of the call, as errors and timeouts name it.
    pub fn verb(self) -> &'static str {
        match self {
            Via::Delete => "delete",
            Via::Eviction => "evict",
        }
    }

    /// The call as the reasons name it ("before the eviction").
    pub fn noun(self) -> &'static str {
        match self {
            Via::Delete => "delete",
            Via::Eviction => "eviction",
        }
    }
}

/// The removal of one pod: with `preconditions.uid = uid` and this grace period (`None`: the
/// pod's own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub via: Via,
    pub uid: String,
    pub grace: Option<u32>,
}

/// MIN_AVAILABLE's reservation: hold one of the `slots` deletions the floor lets be in flight
/// for the workload counted under `workload` (its key, `namespace/Kind/name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserve {
    pub workload: String,
    pub slots: u32,
}

/// A slot held: given back when the removal did not happen, kept (until it expires) when it
/// happened or may have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserved {
    pub workload: String,
    pub slot: u32,
}

/// Whether a failed removal may still have happened: its answer was lost (a timeout, a
/// connection cut, a 5xx), as opposed to a refusal the API answered (nothing was removed).
pub trait MayHaveHappened {
    fn may_have_happened(&self) -> bool;
}

/// The next thing to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// GET the pod and, with `with_count`, read the breaker's count alongside (it does not
    /// depend on the pod). Answer with [`Plan::pod`](crate::domain::plan::Plan::pod).
    GetPod { with_count: bool },
    /// Read whether the pod's namespace is labelled protected (`falco-responder/protect=true`).
    /// Answer with [`Plan::namespace`](crate::domain::plan::Plan::namespace).
    ReadNamespace,
    /// Resolve the pod's workload (its owner, one GET unless remembered). Answer with
    /// [`Plan::workload`](crate::domain::plan::Plan::workload).
    Resolve,
    /// Hand in the breaker's count read alongside the GET (before the floor: an open
    /// breaker costs no GET of the replicas). Answer with [`Plan::counted`](crate::domain::plan::Plan::counted).
    Count,
    /// GET the workload's replica counts (MIN_AVAILABLE). Answer with [`Plan::replicas`](crate::domain::plan::Plan::replicas).
    ReadReplicas(Workload),
    /// Ask the Eviction API with `dryRun=All` whether a PodDisruptionBudget allows the removal.
    /// Answer with [`Plan::dry_evicted`](crate::domain::plan::Plan::dry_evicted).
    EvictDryRun(Removal),
    /// Hold a slot of the floor for this deletion (MIN_AVAILABLE, not under DRY_RUN). Answer
    /// with [`Plan::reserved`](crate::domain::plan::Plan::reserved).
    Reserve(Reserve),
    /// Remove the pod. Answer with [`Plan::removed`](crate::domain::plan::Plan::removed).
    Remove(Removal),
    /// GET the NetworkPolicy of this name: the pod carries our label, is it contained already?
    /// Answer with [`Plan::isolation`](crate::domain::plan::Plan::isolation).
    ReadIsolation { name: String },
    /// Whether the evidence ConfigMap of this name exists in the function's namespace (the pod
    /// is contained already: is its evidence kept?). Answer with
    /// [`Plan::evidence_found`](crate::domain::plan::Plan::evidence_found).
    ReadEvidence { name: String },
    /// GET the ReplicaSet of this name that the pod's controller reference names, for its
    /// selector. Answer with [`Plan::selector`](crate::domain::plan::Plan::selector).
    ReadSelector { name: String },
    /// Create this NetworkPolicy in the pod's namespace; if one of its name exists (409), GET
    /// it. Answer with [`Plan::isolated`](crate::domain::plan::Plan::isolated).
    Isolate(Box<NetworkPolicy>),
    /// Keep the tails of the pod's logs in its evidence ConfigMap (409: kept already), then
    /// apply the retention.
    /// Answer with [`Plan::evidence_kept`](crate::domain::plan::Plan::evidence_kept).
    Keep(Evidence),
    /// Apply the containment's JSON patch to the pod. Answer with
    /// [`Plan::contained`](crate::domain::plan::Plan::contained).
    Contain(PodPatch),
    /// Nothing more to call (boxed: the other steps are small).
    Finish(Box<Finish>),
}

/// The removal's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    Done,
    /// 404: the pod went first.
    NotFound,
    /// 409: the uid precondition failed (a new pod under the name).
    Conflict,
    /// 429 from the Eviction API: a PodDisruptionBudget forbids it now (its message).
    Budget(String),
}

/// The evidence to keep: the tail of each container's log (`tailLines=tail_lines`, cut to
/// `tail_bytes` on our side), in the ConfigMap named after the pod's `uid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    pub uid: String,
    pub containers: Vec<String>,
    pub tail_bytes: usize,
    pub tail_lines: i64,
}

/// The evidence kept: its ConfigMap (`namespace/name`) and the containers whose log could not
/// be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub configmap: String,
    pub unread: Vec<String>,
}

/// A JSON patch of the pod; its first op tests the pod's uid.
#[derive(Debug, Clone, PartialEq)]
pub struct PodPatch {
    pub uid: String,
    pub patch: Value,
}

/// The isolation's answer: created, or one of its name exists already (409: as read back).
#[derive(Debug, Clone, PartialEq)]
pub enum Isolated {
    Created,
    Exists(Box<NetworkPolicy>),
}

/// The containment patch's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patched {
    Done,
    /// 422, and the pod under the name has another uid: it was replaced since the GET.
    Stale,
    /// 422, and the pod is still the one tested: a label the release removes, or its deadline,
    /// changed since the GET. Nothing was written; a retry reads it again.
    Changed,
    /// 404: the pod went first.
    Gone,
}

/// Why nothing was decided: the sender must retry or a person must look (an error, not an outcome).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undecided {
    /// The API answered with another object than the one asked for.
    Mismatch(String),
    /// The pod's status has not caught up with a recent event yet.
    NotYet(String),
    /// An object under a name the function uses is not the function's: a person must look.
    Forged(String),
}

/// Which Kubernetes Event an event's end records about the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Deleted,
    GraceShortened,
    DryRun,
    /// A guard held the deletion (FalcoDeleteHeld).
    Held,
    /// The deletion breaker refused it (FalcoBreakerOpen).
    BreakerOpen,
    /// The event's container is not the pod's (FalcoForeignContainer): not deleted.
    Foreign,
    /// Contained (FalcoPodContained).
    Contained,
    /// DRY_RUN: what containing the pod would take.
    DryRunContain,
}

/// The Kubernetes Event about the pod: what was done, with the workload in `related` and the
/// guard's reason (`why`) at the head of its note.
#[derive(Debug, Clone, PartialEq)]
pub struct Audit {
    pub uid: String,
    pub what: Recorded,
    pub related: Option<ObjectReference>,
    pub why: Option<String>,
}

/// The breaker's record of a removal, under the name its reservation holds.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerRecord {
    pub name: String,
    /// The pod was contained, not removed (ACTION=contain): it counts the same.
    pub contained: bool,
    pub workload_key: Option<String>,
    pub related: Option<ObjectReference>,
}

/// The end of one event.
#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    pub outcome: Result<Outcome, Undecided>,
    /// Not removed, and no retry can change that: said loud (an error line), this first.
    pub alarm: Option<&'static str>,
    pub breaker_record: Option<BreakerRecord>,
    pub audit: Option<Audit>,
}

impl Finish {
    /// The end with `outcome`, nothing to record.
    pub fn of(outcome: Result<Outcome, Undecided>) -> Finish {
        Finish {
            outcome,
            alarm: None,
            breaker_record: None,
            audit: None,
        }
    }
}
