//! Which workload a pod belongs to: its controller from `ownerReferences` (controller: true),
//! followed one step up where Kubernetes controllers stack (ReplicaSet → Deployment,
//! Job → CronJob), and the workload's replica counts for the availability floor.
//!
//! Pure; `cluster::workloads` makes the GETs (RBAC: `get` on replicasets and
//! jobs for resolution; on deployments, replicasets, statefulsets, daemonsets for the floor).

use std::fmt;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

/// The kubelet sets this on the API copy of a static pod; deleting that copy changes nothing.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// The pod's kind of workload. `Other` keeps an owner kind we do not follow, as it is named.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Kind {
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
    /// A static pod's API copy (annotation `kubernetes.io/config.mirror`).
    Mirror,
    /// No controller: deleted, it is not recreated.
    Standalone,
    Other(String),
}

impl Kind {
    pub fn as_str(&self) -> &str {
        match self {
            Kind::Other(k) => k,
            known => known.metric_label(),
        }
    }

    /// Known kinds by name, any case; anything else is `Other` as written.
    pub fn parse(s: &str) -> Kind {
        let known = [
            Kind::Deployment,
            Kind::ReplicaSet,
            Kind::StatefulSet,
            Kind::DaemonSet,
            Kind::Job,
            Kind::CronJob,
            Kind::Mirror,
            Kind::Standalone,
        ];
        known
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
            .unwrap_or_else(|| Kind::Other(s.to_string()))
    }

    /// Low-cardinality metric label: unknown kinds collapse to `other`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Kind::Deployment => "Deployment",
            Kind::ReplicaSet => "ReplicaSet",
            Kind::StatefulSet => "StatefulSet",
            Kind::DaemonSet => "DaemonSet",
            Kind::Job => "Job",
            Kind::CronJob => "CronJob",
            Kind::Mirror => "MirrorPod",
            Kind::Standalone => "Standalone",
            Kind::Other(_) => "other",
        }
    }
}

/// A pod's workload: `kind/name` in the pod's namespace. For `Standalone` and `Mirror` the name
/// is the pod's own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Workload {
    pub kind: Kind,
    pub name: String,
    /// `apiVersion` of the owner (empty for Standalone/Mirror), for the Event's `related`.
    pub api_version: String,
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind.as_str(), self.name)
    }
}

impl Workload {
    fn new(kind: Kind, name: &str, api_version: &str) -> Workload {
        Workload {
            kind,
            name: name.to_string(),
            api_version: api_version.to_string(),
        }
    }
}

/// The pod's direct controller, before following it up: what a pod alone can tell.
#[derive(Debug, Clone, PartialEq)]
pub enum Owner {
    Mirror,
    Standalone,
    Controller(OwnerReference),
}

pub fn is_mirror(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION))
}

/// The controller reference (controller: true). Mirror pods are recognised first: since 1.17 the
/// kubelet gives them an owner reference to their Node, which is not a workload.
pub fn owner_of(pod: &Pod) -> Owner {
    if is_mirror(pod) {
        return Owner::Mirror;
    }
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map_or(Owner::Standalone, |o| Owner::Controller(o.clone()))
}

/// The workload from the pod alone, without following ReplicaSets and Jobs up.
pub fn direct_workload(pod: &Pod) -> Workload {
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    match owner_of(pod) {
        Owner::Mirror => Workload::new(Kind::Mirror, pod_name, ""),
        Owner::Standalone => Workload::new(Kind::Standalone, pod_name, ""),
        Owner::Controller(o) => Workload::new(Kind::parse(&o.kind), &o.name, &o.api_version),
    }
}

/// The step up from an owner object's own controller reference (`Deployment` above a
/// ReplicaSet, `CronJob` above a Job), when it is of the `expected` kind.
pub fn step_up(refs: Option<&Vec<OwnerReference>>, expected: Kind) -> Option<Workload> {
    refs.into_iter()
        .flatten()
        .find(|o| o.controller == Some(true) && Kind::parse(&o.kind) == expected)
        .map(|o| Workload::new(expected.clone(), &o.name, &o.api_version))
}

/// Desired and ready replicas of a workload, from its spec and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replicas {
    pub desired: u32,
    pub ready: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn owned(kind: &str, api: &str, name: &str, controller: bool) -> Pod {
        pod(
            json!({"metadata": {"name": "p", "namespace": "ns", "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "not-a-controller", "uid": "u0"},
                {"apiVersion": api, "kind": kind, "name": name, "uid": "u1", "controller": controller}
            ]}}),
        )
    }

    #[test]
    fn the_controller_reference_names_the_workload() {
        let w = direct_workload(&owned("StatefulSet", "apps/v1", "db", true));
        assert_eq!(w.to_string(), "StatefulSet/db");
        assert_eq!(w.api_version, "apps/v1");
        let w = direct_workload(&owned("DaemonSet", "apps/v1", "agent", true));
        assert_eq!(w.kind, Kind::DaemonSet);
        let w = direct_workload(&owned("Rollout", "argoproj.io/v1alpha1", "r", true));
        assert_eq!(w.to_string(), "Rollout/r");
        assert_eq!(w.kind.metric_label(), "other");
        // Owner references that are not the controller do not make a workload.
        let w = direct_workload(&owned("ReplicaSet", "apps/v1", "rs", false));
        assert_eq!(w.to_string(), "Standalone/p");
    }

    #[test]
    fn mirror_pods_are_recognised_before_their_node_owner() {
        let p = pod(
            json!({"metadata": {"name": "etcd-node1", "namespace": "kube-system",
            "annotations": {MIRROR_ANNOTATION: "abc"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "node1", "uid": "n", "controller": true}]}}),
        );
        assert_eq!(owner_of(&p), Owner::Mirror);
        assert_eq!(direct_workload(&p).to_string(), "MirrorPod/etcd-node1");
    }

    #[test]
    fn step_up_follows_only_the_expected_controller_kind() {
        let refs: Vec<OwnerReference> = serde_json::from_value(json!([
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "d", "controller": true}
        ]))
        .unwrap();
        assert_eq!(
            step_up(Some(&refs), Kind::Deployment).unwrap().to_string(),
            "Deployment/web"
        );
        assert_eq!(step_up(Some(&refs), Kind::CronJob), None);
        assert_eq!(step_up(None, Kind::Deployment), None);
    }

    #[test]
    fn kinds_parse_in_any_case_and_keep_unknown_names() {
        assert_eq!(Kind::parse("deployment"), Kind::Deployment);
        assert_eq!(Kind::parse("STANDALONE"), Kind::Standalone);
        assert_eq!(Kind::parse("Rollout"), Kind::Other("Rollout".into()));
    }
}
