//! The GETs behind the workload guards: a pod's owner, proven and followed one step up, the
//! protection label of a namespace, and a workload's replica counts (RBAC: `get` on
//! replicasets, statefulsets, daemonsets and jobs for resolution, on namespaces for the label;
//! on deployments, replicasets, statefulsets, daemonsets for the floor). What they mean is
//! `domain::workload` and `domain::guards`.

use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet},
    batch::v1::Job,
    core::v1::{Namespace, Pod},
};
use kube::{Api, Client, core::PartialObjectMeta};

use crate::domain::{
    guards::NAMESPACE_PROTECT_LABEL,
    workload::{Kind, Owner, Replicas, Workload, direct_workload, owner_of, standalone, step_up},
};

/// The pod's workload. An ownerReference is the pod author's claim: for the kinds that make
/// pods (ReplicaSet, StatefulSet, DaemonSet in `apps`, Job in `batch`), the owner must exist
/// with that uid (one metadata GET), else the pod is standalone; ReplicaSet → Deployment and
/// Job → CronJob are followed from the owner's own reference. No controller makes pods
/// directly as a Deployment or a CronJob: such a claim is standalone too. Other kinds
/// (custom resources, named group-qualified) are taken as named. `Err` is the API's (403 when
/// the ServiceAccount may not get the owner, a timeout): never "standalone", which would
/// lift the floor from a real StatefulSet's pod.
pub async fn resolve(client: &Client, pod: &Pod) -> Result<Workload, kube::Error> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let direct = direct_workload(pod);
    let Owner::Controller(owner) = owner_of(pod) else {
        return Ok(direct);
    };
    let name = owner.name.as_str();
    let c = || client.clone();
    let meta = match direct.kind {
        Kind::ReplicaSet => meta(Api::<ReplicaSet>::namespaced(c(), ns), name).await?,
        Kind::StatefulSet => meta(Api::<StatefulSet>::namespaced(c(), ns), name).await?,
        Kind::DaemonSet => meta(Api::<DaemonSet>::namespaced(c(), ns), name).await?,
        Kind::Job => meta(Api::<Job>::namespaced(c(), ns), name).await?,
        Kind::Deployment | Kind::CronJob => return Ok(standalone(pod)),
        _ => return Ok(direct),
    };
    // Gone, or a same-named owner with another uid (recreated, or never the one claimed).
    let Some(meta) = meta.filter(|m| m.uid.as_deref() == Some(owner.uid.as_str())) else {
        return Ok(standalone(pod));
    };
    let up = match direct.kind {
        Kind::ReplicaSet => Kind::Deployment,
        Kind::Job => Kind::CronJob,
        _ => return Ok(direct),
    };
    Ok(step_up(meta.owner_references.as_ref(), up).unwrap_or(direct))
}

/// An object's metadata; `None` when it does not exist.
async fn meta<K>(
    api: Api<K>,
    name: &str,
) -> Result<Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>, kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Ok(api
        .get_metadata_opt(name)
        .await?
        .map(|m: PartialObjectMeta<K>| m.metadata))
}

/// Whether namespace `ns` carries the label `falco-responder/protect=true`: a protection only
/// whoever may label namespaces can give, never a pod's author. Any error (403, 404, a
/// timeout) is the caller's error, never "not protected".
pub async fn namespace_protected(client: &Client, ns: &str) -> Result<bool, kube::Error> {
    let m = Api::<Namespace>::all(client.clone())
        .get_metadata(ns)
        .await?;
    Ok(m.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(NAMESPACE_PROTECT_LABEL))
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")))
}

fn n(v: Option<i32>) -> u32 {
    v.unwrap_or(0).max(0) as u32
}

/// The counts of a scaled workload (Deployment, ReplicaSet, StatefulSet): `spec.replicas`,
/// which defaults to 1 when unset, and `status.readyReplicas`.
fn scaled(replicas: Option<i32>, ready: Option<i32>) -> Replicas {
    Replicas {
        desired: replicas.map_or(1, |r| n(Some(r))),
        ready: n(ready),
    }
}

/// Replica counts of kinds that keep a number of pods available (Deployment, ReplicaSet,
/// StatefulSet: `spec.replicas`, `status.readyReplicas`; DaemonSet: desired and ready
/// scheduled). `Ok(None)` for other kinds or a workload that no longer exists.
pub async fn replicas(
    client: &Client,
    ns: &str,
    w: &Workload,
) -> Result<Option<Replicas>, kube::Error> {
    let c = client.clone();
    let name = w.name.as_str();
    match w.kind {
        Kind::Deployment => {
            get(c, ns, name, |d: Deployment| {
                scaled(
                    d.spec.and_then(|s| s.replicas),
                    d.status.and_then(|s| s.ready_replicas),
                )
            })
            .await
        }
        Kind::ReplicaSet => {
            get(c, ns, name, |r: ReplicaSet| {
                scaled(
                    r.spec.and_then(|s| s.replicas),
                    r.status.and_then(|s| s.ready_replicas),
                )
            })
            .await
        }
        Kind::StatefulSet => {
            get(c, ns, name, |s: StatefulSet| {
                scaled(
                    s.spec.and_then(|s| s.replicas),
                    s.status.and_then(|s| s.ready_replicas),
                )
            })
            .await
        }
        Kind::DaemonSet => {
            get(c, ns, name, |d: DaemonSet| {
                let s = d.status.unwrap_or_default();
                Replicas {
                    desired: n(Some(s.desired_number_scheduled)),
                    ready: n(Some(s.number_ready)),
                }
            })
            .await
        }
        _ => Ok(None),
    }
}

/// One namespaced object's counts; `None` when it no longer exists.
async fn get<K>(
    client: Client,
    ns: &str,
    name: &str,
    counts: impl FnOnce(K) -> Replicas,
) -> Result<Option<Replicas>, kube::Error>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Ok(Api::<K>::namespaced(client, ns)
        .get_opt(name)
        .await?
        .map(counts))
}
