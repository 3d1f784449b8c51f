//! The Kubernetes side of one event: carries out the steps `domain::plan` asks for (the pod's
//! GET, the guards' facts, the removal with its uid precondition) within one deadline, and
//! records the Kubernetes Events the plan's end calls for.

use std::{sync::Arc, time::Duration};

use k8s_openapi::{
    api::{core::v1::Pod, events::v1::Event as KubeEvent},
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{DeleteParams, PostParams, Preconditions},
};
use tokio_util::task::TaskTracker;

use crate::{
    cluster::{
        client::Clients,
        error::{ApiError, Call, Deadline, error_chain},
        events::audit_event,
        evict::{self, Refused},
        facts::Guards,
        records::BreakerRecords,
        reservations::Reservations,
    },
    config::Config,
    domain::{
        falco::{FalcoEvent, Target},
        identity::IdentityConfig,
        outcome::Outcome,
        plan::{Plan, PlanConfig},
        step::{Finish, Removal, Removed, Step, Via},
    },
};

impl From<&Config> for IdentityConfig {
    fn from(c: &Config) -> IdentityConfig {
        IdentityConfig {
            grace_period_seconds: c.grace_period_seconds,
        }
    }
}

impl From<&Config> for PlanConfig {
    fn from(c: &Config) -> PlanConfig {
        PlanConfig {
            identity: IdentityConfig::from(c),
            dry_run: c.dry_run,
            skip_owner_kinds: c.guards.skip_owner_kinds.clone(),
            min_available: c.guards.min_available,
            use_eviction: c.guards.use_eviction,
        }
    }
}

/// Removes the pods events name, on behalf of one process; cheap to clone.
#[derive(Clone)]
pub struct PodRemover {
    client: Client,
    /// For the Eviction API: no 429 retries (`client::Clients::evict`, same pool); else `client`.
    evict_client: Client,
    timeout: Duration,
    instance: String,
    /// Event recordings in flight: they run after the answer, and shutdown waits for them.
    background: TaskTracker,
    plan: Arc<PlanConfig>,
    guards: Arc<Guards>,
    /// MIN_AVAILABLE's slots, beside the breaker's records.
    reservations: Arc<Reservations>,
}

impl PodRemover {
    /// `instance` names this process in the Events; the breaker's records live in the
    /// function's own namespace (out of a cluster, `default`).
    pub fn new(
        clients: Clients,
        config: &Config,
        instance: String,
        background: TaskTracker,
    ) -> PodRemover {
        let own = config
            .policy
            .own_namespace
            .as_ref()
            .map_or("default", |n| n.as_str())
            .to_string();
        let records = BreakerRecords::new(clients.main.clone(), own.clone(), instance.clone());
        let reservations = Reservations::new(clients.main.clone(), own, instance.clone());
        PodRemover {
            evict_client: clients.evict.unwrap_or_else(|| clients.main.clone()),
            client: clients.main,
            timeout: config.api_timeout,
            instance,
            background,
            plan: Arc::new(PlanConfig::from(config)),
            guards: Arc::new(Guards::new(&config.guards, records)),
            reservations: Arc::new(reservations),
        }
    }

    /// Starts the guards' watch (the deletion breaker's records).
    pub fn watch(&self, timeout: Duration) {
        self.guards.watch(timeout);
    }

    /// Removes the pod `target` names, if the plan says so, making each call it asks for.
    pub async fn remove(&self, target: &Target, event: &FalcoEvent) -> Result<Outcome, ApiError> {
        let deadline = Deadline::starting_now(self.timeout);
        // Only validated names reach the request path (`ident`).
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), target.namespace.as_str());
        let ns = target.namespace.as_str();
        let mut plan = Plan::new(&self.plan, &self.guards.breaker, target, event);
        let mut step = plan.first();
        let mut pod = None;
        let mut counted = None;
        let finish = loop {
            step = match step {
                Step::GetPod { with_count } => {
                    // The breaker's count does not depend on the pod: read alongside the GET.
                    let count = async {
                        if with_count {
                            self.guards.count(deadline).await
                        } else {
                            None
                        }
                    };
                    let get = deadline.within("get", pods.get_opt(target.name.as_str()));
                    let (got, count) = tokio::join!(get, count);
                    counted = count;
                    pod = got?.map_err(|e| Call::pod("get", target).failed(e))?;
                    plan.pod(pod.as_ref(), Timestamp::now())
                }
                Step::Resolve => {
                    let live = pod.as_ref().expect("the plan has the pod");
                    plan.workload(self.guards.workload(&self.client, live, deadline).await?)
                }
                Step::ReadReplicas(w) => {
                    plan.replicas(Guards::replicas(&self.client, ns, &w, deadline).await?)
                }
                Step::Count => {
                    let listed = counted.take().expect("read alongside the GET")?;
                    // Named only for a deletion that reached the breaker: the record it would write.
                    plan.counted(&listed, Timestamp::now(), &BreakerRecords::record_name())
                }
                Step::EvictDryRun(r) => {
                    let live = pod.as_ref().expect("the plan has the pod");
                    let answer = Guards::dry_evict(&self.evict_client, live, &r, deadline).await?;
                    plan.dry_evicted(answer)
                }
                Step::Reserve(r) => {
                    let (name, reservations) = (target.name.as_str(), &self.reservations);
                    plan.reserved(reservations.reserve(&r, (ns, name), deadline).await)?
                }
                Step::Remove(r) => {
                    let answer = self.removal(&pods, target, &r, deadline).await;
                    let next = plan.removed(answer);
                    if let Some(back) = plan.given_back()
                        && let Some(release) = self.reservations.release(&back)
                    {
                        self.background.spawn(release);
                    }
                    next?
                }
                Step::Finish(f) => break *f,
            };
        };
        self.finish(target, event, finish)
    }

    /// The removal, through the Eviction API or a DELETE; both carry the uid precondition.
    async fn removal(
        &self,
        pods: &Api<Pod>,
        target: &Target,
        r: &Removal,
        deadline: Deadline,
    ) -> Result<Removed, ApiError> {
        let verb = r.via.verb();
        let (ns, name) = (target.namespace.as_str(), target.name.as_str());
        let answer = match r.via {
            Via::Eviction => {
                let evicted = evict::evict(&self.evict_client, ns, name, &r.uid, r.grace, false);
                deadline.within(verb, evicted).await?
            }
            Via::Delete => {
                let mut dp = DeleteParams::default().preconditions(Preconditions {
                    uid: Some(r.uid.clone()),
                    resource_version: None,
                });
                if let Some(g) = r.grace {
                    dp = dp.grace_period(g);
                }
                let deleted = deadline.within(verb, pods.delete(name, &dp)).await?;
                deleted.map(drop).map_err(Refused::Other)
            }
        };
        match answer {
            Ok(()) => Ok(Removed::Done),
            Err(Refused::Budget(msg)) => Ok(Removed::Budget(msg)),
            Err(Refused::Other(kube::Error::Api(s))) if s.is_not_found() => Ok(Removed::NotFound),
            Err(Refused::Other(kube::Error::Api(s))) if s.is_conflict() => Ok(Removed::Conflict),
            Err(Refused::Other(e)) => Err(Call::pod(verb, target).failed(e)),
        }
    }

    /// The plan's end: the alarm, the breaker's record, then the audit Event.
    fn finish(&self, target: &Target, event: &FalcoEvent, f: Finish) -> Result<Outcome, ApiError> {
        let outcome = f.outcome?;
        let (ns, name) = (target.namespace.as_str(), target.name.as_str());
        if let Some(what) = f.alarm {
            let workload = outcome.pod.as_ref().and_then(|p| p.workload.as_deref());
            tracing::error!(
                pod = %format!("{ns}/{name}"),
                workload = workload.unwrap_or("-"),
                reason = outcome.reason.as_str(),
                "{what}"
            );
        }
        if let Some(r) = f.breaker_record {
            self.record_later(self.guards.records.record(
                r.name,
                (ns, name),
                r.workload_key,
                r.related,
                Timestamp::now(),
            ));
        }
        if let Some(audit) = f.audit {
            self.record_later(audit_event(&self.instance, target, event, audit));
        }
        Ok(outcome)
    }

    /// Records `event` after the answer: the sender should not wait a third API round trip for
    /// the audit trail. A deletion counts even when its Event cannot be recorded (no RBAC for
    /// events). Shutdown and the one-shot mode wait for these (`App::drain`).
    fn record_later(&self, record: KubeEvent) {
        let client = self.client.clone();
        let timeout = self.timeout;
        self.background.spawn(async move {
            let ns = record.metadata.namespace.clone().unwrap_or_default();
            let api: Api<KubeEvent> = Api::namespaced(client, &ns);
            let created =
                tokio::time::timeout(timeout, api.create(&PostParams::default(), &record)).await;
            let error = match created {
                Ok(Ok(_)) => return,
                Ok(Err(e)) => error_chain(&e),
                Err(_) => format!("no answer within {}s", timeout.as_secs()),
            };
            let pod = record.regarding.and_then(|r| r.name).unwrap_or_default();
            tracing::warn!(pod = %format!("{ns}/{pod}"), %error, "the Kubernetes Event could not be recorded");
        });
    }
}
