//! Which workload a pod belongs to: its controller from `ownerReferences` (controller: true),
//! followed one step up where Kubernetes controllers stack (ReplicaSet → Deployment,
//! Job → CronJob), and the workload's replica counts for the availability floor.
//!
//! Pure; `cluster::workloads` makes the GETs (RBAC: `get` on replicasets and
//! jobs for resolution; on deployments, replicasets, statefulsets, daemonsets for the floor).

use std::fmt;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::fastfmt::{ECHO_MAX, bounded, bounded_string};

/// The kubelet sets this on the API copy of a static pod; deleting that copy changes nothing.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// The pod's kind of workload. `Other` keeps an owner kind we do not follow, group-qualified
/// as SKIP_OWNER_KINDS writes it (`Rollout.argoproj.io`; a core kind such as `Node` bare).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Kind {
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
    /// A static pod's API copy (annotation `kubernetes.io/config.mirror` and the kubelet's
    /// ownerReference to its Node).
    Mirror,
    /// No controller: deleted, it is not recreated.
    Standalone,
    Other(String),
}

/// The kinds with a name of their own, and the API group of those that are API objects.
const BUILT_IN: [(Kind, Option<&str>); 8] = [
    (Kind::Deployment, Some("apps")),
    (Kind::ReplicaSet, Some("apps")),
    (Kind::StatefulSet, Some("apps")),
    (Kind::DaemonSet, Some("apps")),
    (Kind::Job, Some("batch")),
    (Kind::CronJob, Some("batch")),
    (Kind::Mirror, None),
    (Kind::Standalone, None),
];

/// The group of an `apiVersion`: `apps` of `apps/v1`, empty for the core `v1`.
pub fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

impl Kind {
    pub fn as_str(&self) -> &str {
        match self {
            Kind::Other(k) => k,
            known => known.metric_label(),
        }
    }

    /// The kind as an API object names it (`Rollout` of `Rollout.argoproj.io`).
    pub fn bare(&self) -> &str {
        match self {
            Kind::Other(k) => k.split_once('.').map_or(k.as_str(), |(k, _)| k),
            known => known.metric_label(),
        }
    }

    /// A built-in kind by its bare name, any case.
    pub fn built_in(s: &str) -> Option<Kind> {
        BUILT_IN
            .into_iter()
            .map(|(k, _)| k)
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
    }

    /// The kind an ownerReference names: a built-in kind only when its apiVersion is in that
    /// kind's group (a `StatefulSet` of `fake/v1` is no StatefulSet: nothing the garbage
    /// collector or the guards know), else `Other`, group-qualified.
    pub fn of_owner(kind: &str, api_version: &str) -> Kind {
        let group = group_of(api_version);
        let known = BUILT_IN
            .into_iter()
            .find(|(k, g)| *g == Some(group) && k.as_str() == kind);
        // An unknown kind is the pod author's word, taken as named but bounded (`ECHO_MAX`):
        // it reaches log lines, Events and the breaker's keys.
        let other = |k: String| Kind::Other(bounded_string(k, ECHO_MAX));
        match known {
            Some((k, _)) => k,
            None if group.is_empty() => other(kind.to_string()),
            None => other(format!("{kind}.{group}")),
        }
    }

    /// A SKIP_OWNER_KINDS entry: a built-in kind by its bare name (any case), or a kind
    /// qualified by its API group (`Rollout.argoproj.io`, `StatefulSet.apps`). A bare name
    /// that is no built-in kind is refused: a typo (`Deployments`) would protect nothing.
    pub fn parse_listed(s: &str) -> Result<Kind, String> {
        let Some((kind, group)) = s.split_once('.') else {
            return Kind::built_in(s).ok_or_else(|| {
                format!(
                    "{s:?} is not a built-in kind ({}); write other kinds with their API group, \
                     e.g. Rollout.argoproj.io",
                    BUILT_IN.map(|(k, _)| k.metric_label()).join(", ")
                )
            });
        };
        if kind.is_empty() || group.is_empty() || !group.contains(|c: char| c.is_ascii_alphabetic())
        {
            return Err(format!("{s:?}: expected Kind or Kind.group"));
        }
        let group = group.to_ascii_lowercase();
        Ok(BUILT_IN
            .into_iter()
            .find(|(k, g)| *g == Some(group.as_str()) && k.as_str().eq_ignore_ascii_case(kind))
            .map_or_else(|| Kind::Other(format!("{kind}.{group}")), |(k, _)| k))
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

/// The longest name of a Kubernetes object (a DNS-1123 subdomain): a longer one in an
/// ownerReference names no object, and is cut to this.
const NAME_MAX: usize = 253;

impl Workload {
    /// The names come from ownerReferences, which a pod's author writes: bounded, since they
    /// reach log lines, Events and the breaker's keys (a real object's fit whole).
    fn new(kind: Kind, name: &str, api_version: &str) -> Workload {
        Workload {
            kind,
            name: bounded(name, NAME_MAX).into_owned(),
            api_version: bounded(api_version, ECHO_MAX).into_owned(),
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

/// The pod's controller reference (controller: true), if any.
fn controller_of(pod: &Pod) -> Option<&OwnerReference> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
}

/// A static pod's API copy, as the kubelet makes it: the annotation `kubernetes.io/config.mirror`
/// and (since 1.17) a controller reference to its Node (`kind: Node, apiVersion: v1`), the node
/// it runs on. The annotation alone is the pod author's word: any pod may carry it.
pub fn is_mirror(pod: &Pod) -> bool {
    let annotated = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION));
    let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
    annotated
        && controller_of(pod).is_some_and(|o| {
            o.kind == "Node" && o.api_version == "v1" && node.is_none_or(|n| n == o.name)
        })
}

/// The controller reference (controller: true). Mirror pods are recognised first: their Node
/// owner is not a workload.
pub fn owner_of(pod: &Pod) -> Owner {
    if is_mirror(pod) {
        return Owner::Mirror;
    }
    controller_of(pod).map_or(Owner::Standalone, |o| Owner::Controller(o.clone()))
}

/// The pod as its own workload: no controller, or one it only claims (a made-up or vanished
/// owner). Deleted, it is not recreated.
pub fn standalone(pod: &Pod) -> Workload {
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    Workload::new(Kind::Standalone, pod_name, "")
}

/// The workload from the pod alone, without following ReplicaSets and Jobs up.
pub fn direct_workload(pod: &Pod) -> Workload {
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    match owner_of(pod) {
        Owner::Mirror => Workload::new(Kind::Mirror, pod_name, ""),
        Owner::Standalone => standalone(pod),
        Owner::Controller(o) => Workload::new(
            Kind::of_owner(&o.kind, &o.api_version),
            &o.name,
            &o.api_version,
        ),
    }
}

/// The step up from an owner object's own controller reference (`Deployment` above a
/// ReplicaSet, `CronJob` above a Job), when it is of the `expected` kind.
pub fn step_up(refs: Option<&Vec<OwnerReference>>, expected: Kind) -> Option<Workload> {
    refs.into_iter()
        .flatten()
        .find(|o| o.controller == Some(true) && Kind::of_owner(&o.kind, &o.api_version) == expected)
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
        assert_eq!(w.to_string(), "Rollout.argoproj.io/r");
        assert_eq!(w.kind.bare(), "Rollout");
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
    fn the_mirror_annotation_alone_makes_no_mirror_pod() {
        let with = |refs: serde_json::Value, node: &str| {
            pod(json!({"metadata": {"name": "etcd-node1", "namespace": "ns",
                "annotations": {MIRROR_ANNOTATION: "abc"}, "ownerReferences": refs},
                "spec": {"nodeName": node, "containers": []}}))
        };
        let node = |api: &str, kind: &str, controller: bool| json!([{"apiVersion": api, "kind": kind, "name": "node1", "uid": "n", "controller": controller}]);
        assert_eq!(
            owner_of(&with(node("v1", "Node", true), "node1")),
            Owner::Mirror
        );
        for (refs, on) in [
            (json!([]), "node1"),
            (node("v1", "Node", false), "node1"),
            (node("fake/v1", "Node", true), "node1"),
            (node("v1", "ConfigMap", true), "node1"),
            // The kubelet's own node, not another one.
            (node("v1", "Node", true), "node2"),
        ] {
            let p = with(refs.clone(), on);
            assert_ne!(owner_of(&p), Owner::Mirror, "{refs} on {on}");
            assert_ne!(direct_workload(&p).kind, Kind::Mirror, "{refs} on {on}");
        }
    }

    #[test]
    fn a_claimed_owner_is_bounded_whatever_its_author_wrote() {
        let mega = "x".repeat(1 << 20);
        let w = direct_workload(&owned(&mega, &format!("{mega}/v1"), &mega, true));
        assert!(
            w.kind.as_str().len() <= ECHO_MAX,
            "{}",
            w.kind.as_str().len()
        );
        assert!(w.name.len() <= NAME_MAX && w.name.ends_with(crate::fastfmt::CUT_MARK));
        assert!(w.api_version.len() <= ECHO_MAX);
        assert!(w.to_string().len() < 2 * ECHO_MAX + NAME_MAX);
        // Real names are kept whole.
        let w = direct_workload(&owned(
            "Rollout",
            "argoproj.io/v1alpha1",
            &"r".repeat(253),
            true,
        ));
        assert_eq!(w.name, "r".repeat(253));
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
    fn listed_kinds_are_built_in_names_in_any_case_or_group_qualified() {
        assert_eq!(Kind::parse_listed("deployment"), Ok(Kind::Deployment));
        assert_eq!(Kind::parse_listed("STANDALONE"), Ok(Kind::Standalone));
        assert_eq!(Kind::parse_listed("MirrorPod"), Ok(Kind::Mirror));
        assert_eq!(
            Kind::parse_listed("StatefulSet.apps"),
            Ok(Kind::StatefulSet)
        );
        assert_eq!(
            Kind::parse_listed("Rollout.argoproj.io"),
            Ok(Kind::Other("Rollout.argoproj.io".into()))
        );
        // Not the apps group: another kind that happens to share the name.
        assert_eq!(
            Kind::parse_listed("StatefulSet.fake"),
            Ok(Kind::Other("StatefulSet.fake".into()))
        );
        for bad in ["Deployments", "Rollout", "Node", "x.", ".apps", "Rollout.1"] {
            let e = Kind::parse_listed(bad).unwrap_err();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn an_owner_is_a_built_in_kind_only_in_its_api_group() {
        assert_eq!(Kind::of_owner("StatefulSet", "apps/v1"), Kind::StatefulSet);
        assert_eq!(Kind::of_owner("Job", "batch/v1"), Kind::Job);
        assert_eq!(
            Kind::of_owner("StatefulSet", "fake/v1"),
            Kind::Other("StatefulSet.fake".into())
        );
        assert_eq!(
            Kind::of_owner("Job", "apps/v1"),
            Kind::Other("Job.apps".into())
        );
        assert_eq!(
            Kind::of_owner("ReplicaSet", "v1"),
            Kind::Other("ReplicaSet".into())
        );
        assert_eq!(
            Kind::of_owner("Rollout", "argoproj.io/v1alpha1"),
            Kind::parse_listed("Rollout.argoproj.io").unwrap()
        );
        // Kinds are case-sensitive in the API: `statefulset` is not the apps kind.
        assert_ne!(Kind::of_owner("statefulset", "apps/v1"), Kind::StatefulSet);
    }
}
