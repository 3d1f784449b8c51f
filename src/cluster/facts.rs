//! The guards in action, between "this is the pod, delete it" and the DELETE: resolve the
//! workload, skip what must not or need not be deleted (mirror pods, SKIP_OWNER_KINDS), hold
//! what would break availability (MIN_AVAILABLE, a PodDisruptionBudget under USE_EVICTION), and
//! stop runaway deletion (the breaker). The decisions are `domain::plan`'s; this module makes
//! the guards' API calls within the event's deadline.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Pod;
use kube::Client;

use crate::{
    cluster::{
        error::{ApiError, Call, Deadline},
        evict::{self, Refused},
        records::BreakerRecords,
        workloads,
    },
    domain::{
        budget::{Breaker, Deletion},
        guards::{GuardConfig, NAMESPACE_PROTECT_LABEL},
        step::Removal,
        workload::{self, Replicas, Workload},
    },
};

/// Retry-After of a `held` answer: replicas take seconds to tens of seconds to become ready.
pub const HELD_RETRY_AFTER_SECONDS: u64 = 30;

/// Resolved owners by the whole claim (namespace, apiVersion, kind, name, uid): a delete loop
/// hits the same owner again and again, and an owner's own controller does not change. Keyed
/// by the whole claim, not the uid alone, so a pod claiming a real owner's uid under another
/// name or namespace is proven on its own. Bounded; cleared when full.
const OWNER_CACHE_MAX: usize = 4096;

/// How long a namespace's protection label is remembered: a storm in one namespace costs one
/// GET per window; labelling a namespace takes effect within it.
pub const NAMESPACE_CACHE_TTL: Duration = Duration::from_secs(5);
const NAMESPACE_CACHE_MAX: usize = 1024;

/// The guards' per-process state: the breaker's ledger and shared count, and the caches.
#[derive(Debug)]
pub struct Guards {
    pub breaker: Breaker,
    /// The breaker's shared count: records in the function's own namespace.
    pub records: Arc<BreakerRecords>,
    owners: Mutex<HashMap<String, Workload>>,
    namespaces: Mutex<HashMap<String, (bool, Instant)>>,
}

impl Guards {
    pub fn new(c: &GuardConfig, records: BreakerRecords) -> Guards {
        Guards {
            records: Arc::new(records),
            breaker: Breaker::new(c.max_deletions_per_workload, c.max_deletions),
            owners: Mutex::new(HashMap::new()),
            namespaces: Mutex::new(HashMap::new()),
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
        let now = Instant::now();
        let cached = self
            .namespaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(ns)
            .filter(|(_, at)| now.duration_since(*at) < NAMESPACE_CACHE_TTL)
            .map(|(p, _)| *p);
        if let Some(p) = cached {
            return Ok(p);
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
        let mut cache = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= NAMESPACE_CACHE_MAX {
            cache.clear();
        }
        cache.insert(ns.to_string(), (protected, now));
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
    /// remembered by the whole claim.
    async fn resolve(&self, client: &Client, pod: &Pod) -> Result<Workload, kube::Error> {
        let owner_uid = match workload::owner_of(pod) {
            workload::Owner::Controller(o) => {
                let ns = names(pod).0;
                format!("{ns}/{}/{}/{}/{}", o.api_version, o.kind, o.name, o.uid)
            }
            _ => return Ok(workload::direct_workload(pod)),
        };
        if let Some(w) = self
            .owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&owner_uid)
        {
            return Ok(w.clone());
        }
        let w = workloads::resolve(client, pod).await?;
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        if owners.len() >= OWNER_CACHE_MAX {
            owners.clear();
        }
        owners.insert(owner_uid, w.clone());
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
