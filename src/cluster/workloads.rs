//! The GETs behind the workload guards: a pod's owner followed one step up, and a workload's
//! replica counts (RBAC: `get` on replicasets and jobs for resolution; on deployments,
//! replicasets, statefulsets, daemonsets for the floor). What they mean is `domain::workload`.

use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet},
    batch::v1::Job,
    core::v1::Pod,
};
use kube::{Api, Client};

use crate::domain::workload::{
    Kind, Owner, Replicas, Workload, direct_workload, owner_of, step_up,
};

/// The pod's workload, following ReplicaSet → Deployment and Job → CronJob with one metadata
/// GET. An owner that no longer exists (being deleted) is named as it is; `Err` is the API's
/// (403 when the ServiceAccount may not get replicasets/jobs).
pub async fn resolve(client: &Client, pod: &Pod) -> Result<Workload, kube::Error> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let direct = direct_workload(pod);
    let Owner::Controller(owner) = owner_of(pod) else {
        return Ok(direct);
    };
    // Only the apps/batch kinds we know how to follow; a CRD named ReplicaSet is just Other.
    let meta = match (&direct.kind, owner.api_version.as_str()) {
        (Kind::ReplicaSet, "apps/v1") => Api::<ReplicaSet>::namespaced(client.clone(), ns)
            .get_metadata_opt(&owner.name)
            .await?
            .map(|m| m.metadata),
        (Kind::Job, "batch/v1") => Api::<Job>::namespaced(client.clone(), ns)
            .get_metadata_opt(&owner.name)
            .await?
            .map(|m| m.metadata),
        _ => return Ok(direct),
    };
    // A same-named owner with another uid is not ours (recreated): do not follow it.
    let Some(meta) = meta.filter(|m| m.uid.as_deref() == Some(owner.uid.as_str())) else {
        return Ok(direct);
    };
    let up = match direct.kind {
        Kind::ReplicaSet => Kind::Deployment,
        _ => Kind::CronJob,
    };
    Ok(step_up(meta.owner_references.as_ref(), up).unwrap_or(direct))
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
