//! The guards in action, between "this is the pod, delete it" and the DELETE: resolve the
//! workload, skip what must not or need not be deleted (mirror pods, SKIP_OWNER_KINDS), hold
//! what would break availability (MIN_AVAILABLE, a PodDisruptionBudget under USE_EVICTION), and
//! stop runaway deletion (the breaker). The decisions are `guards` and `breaker`; this module
//! makes their API calls within the event's deadline.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::{api::core::v1::Pod, jiff::Timestamp};
use kube::Client;
use tokio::time::Instant;

use crate::{
    cluster::{
        error::{GuardError, api_error},
        evict::{self, Refused},
        records::Deletions,
        workloads,
    },
    domain::{
        budget::{self, Breaker, Open, Seen, Ticket},
        guards::{self, GuardConfig, MinAvailable, SkipOwnerKinds, Verdict},
        workload::{self, Kind, Workload},
    },
};

/// Retry-After of a `held` answer: replicas take seconds to tens of seconds to become ready.
pub const HELD_RETRY_AFTER_SECONDS: u64 = 30;

/// Resolved ReplicaSet/Job owners by uid: a delete loop hits the same owner again and again,
/// and an owner's own controller does not change. Bounded; cleared when full.
const OWNER_CACHE_MAX: usize = 4096;

/// The guard configuration and the per-process state (breaker ledger, owner cache).
#[derive(Debug)]
pub struct Availability {
    pub skip_owner_kinds: SkipOwnerKinds,
    pub min_available: Option<MinAvailable>,
    pub use_eviction: bool,
    pub breaker: Breaker,
    /// The breaker's shared count: records in the function's own namespace.
    pub deletions: Arc<Deletions>,
    owners: Mutex<HashMap<String, Workload>>,
}

/// What the guards decided for one pod.
#[derive(Debug)]
pub enum Plan {
    /// Remove the pod. `ticket`: the deletion reserved in the breaker (release it if the
    /// removal does not happen). `checks`: what each guard said, for dry-run reasons.
    Remove {
        workload: Workload,
        ticket: Option<Ticket>,
        checks: Vec<String>,
    },
    /// Never: deleting has no effect or was ruled out (`skipped`).
    Skip { workload: Workload, reason: String },
    /// Not now: availability (`held`, 503 + Retry-After).
    Hold { workload: Workload, reason: String },
    /// Not by retrying: the floor can never be met (`held`, 200: a person must look).
    Refuse { workload: Workload, reason: String },
    /// The breaker is open (`breaker-open`, 200: a person must look).
    BreakerOpen {
        workload: Workload,
        reason: String,
        open: Open,
    },
}

impl Plan {
    pub fn workload(&self) -> &Workload {
        match self {
            Plan::Remove { workload, .. }
            | Plan::Skip { workload, .. }
            | Plan::Hold { workload, .. }
            | Plan::Refuse { workload, .. }
            | Plan::BreakerOpen { workload, .. } => workload,
        }
    }
}

/// The breaker's count, read together with the pod's GET (see [`Availability::prefetch`]);
/// `None` when the breaker is off.
pub type Prefetched = Option<Result<Vec<Seen>, GuardError>>;

impl Availability {
    pub fn new(c: &GuardConfig, deletions: Deletions) -> Availability {
        Availability {
            deletions: Arc::new(deletions),
            skip_owner_kinds: c.skip_owner_kinds.clone(),
            min_available: c.min_available,
            use_eviction: c.use_eviction,
            breaker: Breaker::new(c.max_deletions_per_workload, c.max_deletions),
            owners: Mutex::new(HashMap::new()),
        }
    }

    /// The breaker's count, to run concurrently with the pod's GET: it does not depend on the
    /// pod. From the watched records when in sync (no API call), else a LIST, which a
    /// sequential call would add as a whole round trip to every deletion.
    pub async fn prefetch(&self, deadline: Instant, timeout: Duration) -> Prefetched {
        if !self.breaker.enabled() {
            return None;
        }
        let counted = Self::within(deadline, timeout, "list Events", self.deletions.count()).await;
        Some(counted.and_then(|r| {
            r.map_err(|e| {
                api_error(
                    e,
                    format!(
                        "list the deletion breaker's Events in {}",
                        self.deletions.namespace()
                    ),
                    "list and watch on events (events.k8s.io) in the function's own namespace",
                )
            })
        }))
    }

    /// Starts following the breaker's records (serving processes; `once` lists instead).
    pub fn watch(&self, timeout: Duration) {
        if self.breaker.enabled() {
            self.deletions.watch(timeout);
        }
    }

    async fn within<T>(
        deadline: Instant,
        timeout: Duration,
        step: &'static str,
        fut: impl Future<Output = T>,
    ) -> Result<T, GuardError> {
        tokio::time::timeout_at(deadline, fut)
            .await
            .map_err(|_| GuardError::Timeout { step, timeout })
    }

    /// The pod's workload: ReplicaSet → Deployment and Job → CronJob through one metadata GET,
    /// remembered by owner uid.
    async fn resolve(&self, client: &Client, pod: &Pod) -> Result<Workload, kube::Error> {
        let owner_uid = match workload::owner_of(pod) {
            workload::Owner::Controller(o) => o.uid,
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

    /// Runs every guard for `pod` (already checked to be the event's pod, not terminating).
    /// `event_key` (`namespace/eventName`) is the FalcoPodDeleted Event this deletion will
    /// record: the breaker reserves it. In `dry_run` nothing is reserved and an eviction is only
    /// tried with `dryRun=All`, so every guard still gives its verdict.
    #[allow(clippy::too_many_arguments)]
    pub async fn plan(
        &self,
        client: &Client,
        evict_client: &Client,
        pod: &Pod,
        prefetched: Prefetched,
        event_key: &str,
        grace: Option<u32>,
        deadline: Instant,
        timeout: Duration,
        dry_run: bool,
    ) -> Result<Plan, GuardError> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let w = Self::within(
            deadline,
            timeout,
            "resolve the workload",
            self.resolve(client, pod),
        )
        .await?
        .map_err(|e| {
            api_error(
                e,
                format!("get the owner of pod {ns}/{name}"),
                "get on replicasets (apps) and jobs (batch)",
            )
        })?;
        let mut checks = vec![format!("workload {w}")];

        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        if let Verdict::Skip(reason) = guards::by_kind(&w, &self.skip_owner_kinds, node) {
            return Ok(Plan::Skip {
                workload: w,
                reason,
            });
        }

        if let Some(min) = self.min_available {
            let replicas = Self::within(
                deadline,
                timeout,
                "get the workload",
                workloads::replicas(client, &ns, &w),
            )
            .await?
            .map_err(|e| {
                api_error(
                    e,
                    format!("get {w} in {ns}"),
                    "get on deployments, replicasets, statefulsets, daemonsets (apps) for MIN_AVAILABLE",
                )
            })?;
            match guards::floor(&w, min, replicas, guards::pod_is_ready(pod)) {
                Verdict::Hold(reason) => {
                    return Ok(Plan::Hold {
                        workload: w,
                        reason,
                    });
                }
                Verdict::Refuse(reason) => {
                    return Ok(Plan::Refuse {
                        workload: w,
                        reason,
                    });
                }
                _ => checks.push(match replicas {
                    Some(r) => format!(
                        "MIN_AVAILABLE={min} holds ({} of {} ready)",
                        r.ready, r.desired
                    ),
                    None => format!("MIN_AVAILABLE={min} does not apply to {}", w.kind.as_str()),
                }),
            }
        }

        let mut ticket = None;
        if let Some(listed) = prefetched {
            let listed = listed?;
            let key = budget::workload_key(&ns, &w);
            match self.breaker.decide(
                &listed,
                key.as_deref(),
                Timestamp::now(),
                event_key,
                !dry_run,
            ) {
                Ok(t) => ticket = t,
                Err(open) => {
                    let reason = open.reason(&w);
                    return Ok(Plan::BreakerOpen {
                        workload: w,
                        reason,
                        open,
                    });
                }
            }
            checks.push("deletion breaker closed".into());
        }

        // Under DRY_RUN the Eviction API itself says whether a budget would allow it.
        if dry_run && self.use_eviction {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            match Self::within(
                deadline,
                timeout,
                "evict (dry run)",
                evict::evict(evict_client, &ns, &name, &uid, grace, true),
            )
            .await?
            {
                Ok(()) => checks.push("the PodDisruptionBudgets allow an eviction".into()),
                Err(Refused::Budget(msg)) => {
                    return Ok(Plan::Hold {
                        workload: w,
                        reason: format!("eviction refused by a PodDisruptionBudget: {msg}"),
                    });
                }
                Err(Refused::Other(e)) => {
                    return Err(api_error(
                        e,
                        format!("evict pod {ns}/{name} (dry run)"),
                        "create on pods/eviction for USE_EVICTION",
                    ));
                }
            }
        }

        Ok(Plan::Remove {
            workload: w,
            ticket,
            checks,
        })
    }

    /// Gives a reserved deletion back when the pod was not removed after all.
    pub fn release(&self, ticket: Option<Ticket>) {
        if let Some(t) = ticket {
            self.breaker.release(t);
        }
    }

    /// Whether this workload kind is counted by the per-workload budget.
    pub fn counts_per_workload(w: &Workload) -> bool {
        !matches!(w.kind, Kind::Standalone | Kind::Mirror)
    }
}

/// The reason of a `held` outcome for a PodDisruptionBudget refusal.
pub fn pdb_reason(msg: &str) -> String {
    format!("eviction refused by a PodDisruptionBudget: {msg}; retry once replicas recover")
}
