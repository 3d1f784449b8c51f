//! The guards in action, between "this is the pod, delete it" and the DELETE: resolve the
//! workload, skip what must not or need not be deleted (mirror pods, SKIP_OWNER_KINDS), hold
//! what would break availability (MIN_AVAILABLE, a PodDisruptionBudget under USE_EVICTION), and
//! stop runaway deletion (the breaker). The decisions are `domain::plan`'s; this module makes
//! the guards' API calls within the event's deadline.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Pod;
use kube::Client;

use crate::{
    cache::TtlMap,
    cluster::{
        error::{ApiError, Call, Deadline},
        evict::{self, Refused},
        records::BreakerRecords,
        workloads,
    },
    domain::{
        budget::{Breaker, Deletion},
        guards::{GuardConfig, NAMESPACE_PROTECT_LABEL},
        ident::{Namespace, ObjectName, PodUid},
        step::Removal,
        workload::{self, Kind, Replicas, Workload},
    },
};

/// Retry-After of a `held` answer: replicas take seconds to tens of seconds to become ready.
pub const HELD_RETRY_AFTER_SECONDS: u64 = 30;

/// Resolved owners by the whole claim (namespace, kind, name, uid), only for the kinds whose
/// owner is looked up and only when every part is a valid identifier (the uid a UUID, the
/// name a DNS-1123 subdomain): a delete loop hits the same owner again and again, and an
/// owner's own controller does not change. Keyed by the whole claim, not the uid alone, so a
/// pod claiming a real owner's uid under another name or namespace is proven on its own. A
/// claim that is no valid identifier is resolved each time and never remembered: nothing a
/// pod's author writes becomes a key unchecked.
const OWNER_CACHE_MAX: usize = 4096;
const OWNER_CACHE_BYTES: usize = 1 << 20;
/// An owner's uid names one object for its life: the time to live only makes room.
const OWNER_CACHE_TTL: Duration = Duration::from_secs(600);

/// How long a namespace's protection label is remembered: a storm in one namespace costs one
/// GET per window; labelling a namespace takes effect within it.
pub const NAMESPACE_CACHE_TTL: Duration = Duration::from_secs(5);
const NAMESPACE_CACHE_MAX: usize = 1024;
const NAMESPACE_CACHE_BYTES: usize = 256 << 10;

/// An owner claim made only of validated identifiers, of a kind that is looked up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct OwnerKey {
    namespace: Namespace,
    kind: Kind,
    name: ObjectName,
    uid: PodUid,
}

/// The cache key of the pod's owner claim: `None` when nothing is looked up for it (no
/// controller, a kind not proven by a GET) or when a part is not a valid identifier.
fn owner_key(pod: &Pod) -> Option<OwnerKey> {
    let workload::Owner::Controller(o) = workload::owner_of(pod) else {
        return None;
    };
    let kind = Kind::of_owner(&o.kind, &o.api_version);
    if !matches!(
        kind,
        Kind::ReplicaSet | Kind::StatefulSet | Kind::DaemonSet | Kind::Job
    ) {
        return None;
    }
    Some(OwnerKey {
        namespace: Namespace::parse("namespace", names(pod).0).ok()?,
        kind,
        name: ObjectName::parse("ownerReference name", &o.name).ok()?,
        uid: PodUid::parse("ownerReference uid", &o.uid).ok()?,
    })
}

/// What an owner entry holds, in bytes (the workload's strings: a name and apiVersion read
/// from objects a pod's author may have written, counted whole).
fn owner_weight(k: &OwnerKey, w: &Workload) -> usize {
    k.namespace.as_str().len()
        + k.name.as_str().len()
        + k.uid.as_str().len()
        + w.name.len()
        + w.api_version.len()
        + w.kind.as_str().len()
}

fn namespace_weight(k: &Namespace, _: &bool) -> usize {
    k.as_str().len()
}

/// The guards' per-process state: the breaker's ledger and shared count, and the caches.
#[derive(Debug)]
pub struct Guards {
    pub breaker: Breaker,
    /// The breaker's shared count: records in the function's own namespace.
    pub records: Arc<BreakerRecords>,
    owners: Mutex<TtlMap<OwnerKey, Workload>>,
    namespaces: Mutex<TtlMap<Namespace, bool>>,
}

impl Guards {
    pub fn new(c: &GuardConfig, records: BreakerRecords) -> Guards {
        Guards {
            records: Arc::new(records),
            breaker: Breaker::new(c.max_deletions_per_workload, c.max_deletions),
            owners: Mutex::new(TtlMap::new(
                OWNER_CACHE_TTL,
                OWNER_CACHE_MAX,
                OWNER_CACHE_BYTES,
                owner_weight,
            )),
            namespaces: Mutex::new(TtlMap::new(
                NAMESPACE_CACHE_TTL,
                NAMESPACE_CACHE_MAX,
                NAMESPACE_CACHE_BYTES,
                namespace_weight,
            )),
        }
    }

    /// Whether the pod's namespace is labelled protected (remembered [`NAMESPACE_CACHE_TTL`]).
    /// An error is an error: the event is answered "retry", never as unprotected.
    pub async fn namespace_protected(
        &self,
        client: &Client,
        ns: &str,
        deadline: Deadline,
    ) -> Result<bool, ApiError> {
        // The live pod's namespace: valid unless the API server is not one.
        let key = Namespace::parse("namespace", ns).ok();
        if let Some(key) = &key
            && let Some((p, _)) = self
                .namespaces
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(key, Instant::now())
        {
            return Ok(*p);
        }
        let protected = deadline
            .within(
                "get the namespace",
                workloads::namespace_protected(client, ns),
            )
            .await?
            .map_err(|e| {
                Call::guard(
                    format!("get namespace {ns} (its {NAMESPACE_PROTECT_LABEL} label)"),
                    "get on namespaces",
                )
                .failed(e)
            })?;
        if let Some(key) = key {
            self.namespaces
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, protected, Instant::now());
        }
        Ok(protected)
    }

    /// The breaker's count, to run concurrently with the pod's GET: it does not depend on the
    /// pod. From the watched records when in sync (no API call), else a LIST, which a
    /// sequential call would add as a whole round trip to every deletion. `None` when the
    /// breaker is off.
    pub async fn count(&self, deadline: Deadline) -> Option<Result<Vec<Deletion>, ApiError>> {
        if !self.breaker.enabled() {
            return None;
        }
        let counted = deadline.within("list Events", self.records.count()).await;
        Some(counted.and_then(|r| {
            r.map_err(|e| {
                Call::guard(
                    format!(
                        "list the deletion breaker's Events in {}",
                        self.records.namespace()
                    ),
                    "list and watch on events (events.k8s.io) in the function's own namespace",
                )
                .failed(e)
            })
        }))
    }

    /// Starts following the breaker's records (serving processes; `once` lists instead).
    pub fn watch(&self, timeout: Duration) {
        if self.breaker.enabled() {
            self.records.watch(timeout);
        }
    }

    /// The pod's workload (its owner's GET, unless remembered).
    pub async fn workload(
        &self,
        client: &Client,
        pod: &Pod,
        deadline: Deadline,
    ) -> Result<Workload, ApiError> {
        deadline
            .within("resolve the workload", self.resolve(client, pod))
            .await?
            .map_err(|e| {
                let (ns, name) = names(pod);
                Call::guard(
                    format!("get the owner of pod {ns}/{name}"),
                    "get on replicasets, statefulsets, daemonsets (apps) and jobs (batch)",
                )
                .failed(e)
            })
    }

    /// The pod's workload: its owner proven and followed up through one metadata GET,
    /// remembered by the whole claim when it is made of valid identifiers.
    async fn resolve(&self, client: &Client, pod: &Pod) -> Result<Workload, kube::Error> {
        let Some(key) = owner_key(pod) else {
            return workloads::resolve(client, pod).await;
        };
        if let Some((w, _)) = self
            .owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key, Instant::now())
        {
            return Ok(w.clone());
        }
        let w = workloads::resolve(client, pod).await?;
        self.owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, w.clone(), Instant::now());
        Ok(w)
    }

    /// The workload's replica counts, for MIN_AVAILABLE.
    pub async fn replicas(
        client: &Client,
        ns: &str,
        w: &Workload,
        deadline: Deadline,
    ) -> Result<Option<Replicas>, ApiError> {
        deadline
            .within("get the workload", workloads::replicas(client, ns, w))
            .await?
            .map_err(|e| {
                Call::guard(
                    format!("get {w} in {ns}"),
                    "get on deployments, replicasets, statefulsets, daemonsets (apps) for MIN_AVAILABLE",
                )
                .failed(e)
            })
    }

    /// The Eviction API's answer with `dryRun=All`: `Err(message)` when a PodDisruptionBudget
    /// refuses it.
    pub async fn dry_evict(
        client: &Client,
        pod: &Pod,
        r: &Removal,
        deadline: Deadline,
    ) -> Result<Result<(), String>, ApiError> {
        let (ns, name) = names(pod);
        let evicted = evict::evict(client, ns, name, &r.uid, r.grace, true);
        match deadline.within("evict (dry run)", evicted).await? {
            Ok(()) => Ok(Ok(())),
            Err(Refused::Budget(msg)) => Ok(Err(msg)),
            Err(Refused::Other(e)) => Err(Call::guard(
                format!("evict pod {ns}/{name} (dry run)"),
                "create on pods/eviction for USE_EVICTION",
            )
            .failed(e)),
        }
    }
}

fn names(pod: &Pod) -> (&str, &str) {
    let m = &pod.metadata;
    (
        m.namespace.as_deref().unwrap_or_default(),
        m.name.as_deref().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(kind: &str, api_version: &str, name: &str, uid: &str) -> Pod {
        serde_json::from_value(
            serde_json::json!({"metadata": {"name": "p", "namespace": "prod",
            "ownerReferences": [{"apiVersion": api_version, "kind": kind, "name": name,
            "uid": uid, "controller": true}]}}),
        )
        .unwrap()
    }

    const UID: &str = "7A1B0C1E-0000-4000-8000-000000000007";

    #[test]
    fn only_valid_claims_of_looked_up_kinds_become_owner_keys() {
        let key = owner_key(&pod("ReplicaSet", "apps/v1", "web-5d8f", UID)).unwrap();
        assert_eq!(key.uid.as_str(), UID.to_ascii_lowercase());
        assert_eq!(
            (key.kind, key.name.as_str()),
            (Kind::ReplicaSet, "web-5d8f")
        );
        for (kind, api, name, uid) in [
            // The pod author's strings that are no identifier: never a key.
            ("ReplicaSet", "apps/v1", "web-5d8f", "rs-uid"),
            ("ReplicaSet", "apps/v1", "web-5d8f", &"7".repeat(1 << 20)),
            ("ReplicaSet", "apps/v1", &"n".repeat(254), UID),
            ("ReplicaSet", "apps/v1", "Web", UID),
            // Kinds whose owner is not looked up: nothing to remember.
            ("Deployment", "apps/v1", "web", UID),
            ("Rollout", "argoproj.io/v1alpha1", "r", UID),
            ("ReplicaSet", "fake/v1", "web-5d8f", UID),
        ] {
            assert_eq!(
                owner_key(&pod(kind, api, name, uid)),
                None,
                "{kind} {api} {}",
                &uid[..uid.len().min(40)]
            );
        }
        let standalone: Pod =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}})).unwrap();
        assert_eq!(owner_key(&standalone), None);
    }
}
