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
use prometheus_client::metrics::{counter::Counter, family::Family};
use tokio_util::task::TaskTracker;

use crate::{
    cluster::{
        client::Clients,
        contain::Containment,
        error::{ApiError, Call, Deadline, error_chain},
        events::{self, RefusalLimiter, audit_event, is_refusal},
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
        step::{BreakerRecord, Finish, MayHaveHappened, Removal, Removed, Step, Via},
    },
    obs::metrics::{Metrics, SuppressedLabels},
};

impl From<&Config> for IdentityConfig {
    fn from(c: &Config) -> IdentityConfig {
        IdentityConfig {
            grace_period_seconds: c.grace_period_seconds,
            trust_protect_annotation: c.trust_protect_annotation,
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
            contain: c.contain.clone(),
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
    /// Breaker records that could not be written: the count is no longer shared.
    record_failures: Counter,
    /// Refusal Events: one per workload and reason per window.
    refusals: Arc<RefusalLimiter>,
    suppressed: Family<SuppressedLabels, Counter>,
    /// MIN_AVAILABLE's slots, beside the breaker's records.
    reservations: Arc<Reservations>,
    /// ACTION=contain's calls.
    containment: Containment,
}

impl PodRemover {
    /// `instance` names this process in the Events; the breaker's records live in the
    /// function's own namespace (out of a cluster, `default`).
    pub fn new(
        clients: Clients,
        config: &Config,
        instance: String,
        background: TaskTracker,
        metrics: &Metrics,
    ) -> PodRemover {
        let own = config
            .policy
            .own_namespace
            .as_ref()
            .map_or("default", |n| n.as_str())
            .to_string();
        let records = BreakerRecords::new(clients.main.clone(), own.clone(), instance.clone());
        let reservations = Reservations::new(clients.main.clone(), own.clone(), instance.clone());
        let containment = Containment::new(
            clients.main.clone(),
            own,
            config.contain.max_configmaps,
            config.api_timeout,
        );
        PodRemover {
            evict_client: clients.evict.unwrap_or_else(|| clients.main.clone()),
            client: clients.main,
            timeout: config.api_timeout,
            instance,
            background,
            plan: Arc::new(PlanConfig::from(config)),
            guards: Arc::new(Guards::new(&config.guards, records)),
            record_failures: metrics.breaker_record_failures.clone(),
            refusals: Arc::new(RefusalLimiter::default()),
            suppressed: metrics.suppressed.clone(),
            reservations: Arc::new(reservations),
            containment,
        }
    }

    /// Whether the breaker's records can be written and listed (`None`: the breaker is off,
    /// nothing to check); `Err` names what to fix.
    pub async fn check_records(&self) -> Option<Result<(), String>> {
        if !self.guards.breaker.enabled() {
            return None;
        }
        let checked = tokio::time::timeout(self.timeout, self.guards.records.check()).await;
        Some(checked.unwrap_or_else(|_| {
            Err(format!(
                "the deletion breaker's records (Events in namespace {}) could not be checked: \
                 no answer within API_TIMEOUT_SECONDS ({}s)",
                self.guards.records.namespace(),
                self.timeout.as_secs()
            ))
        }))
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
        let mut step = plan.start(Timestamp::now());
        if matches!(step, Step::Finish(_)) {
            self.suppress("pod_get");
        }
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
                Step::ReadNamespace => {
                    let g = &self.guards;
                    plan.namespace(g.namespace_protected(&self.client, ns, deadline).await?)
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
                    // Named only for a deletion that reached the breaker: the record it would
                    // write, after the pod it removes.
                    let live = pod.as_ref().expect("the plan has the pod");
                    let uid = live.metadata.uid.as_deref().unwrap_or_default();
                    plan.counted(&listed, Timestamp::now(), &BreakerRecords::record_name(uid))
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
                    let next = match self.removal(&pods, target, &r, deadline).await {
                        // It may have happened: it counts (its record is written) and keeps
                        // its slot of the floor.
                        Err(e) if e.may_have_happened() => {
                            if let Some(record) = plan.lost() {
                                self.record((ns, target.name.as_str()), record);
                            }
                            Err(e)
                        }
                        answer => plan.removed(answer),
                    };
                    self.settle(&mut plan, target);
                    next?
                }
                Step::ReadIsolation { name } => {
                    let found = self.containment.policy(target, &name, deadline).await?;
                    plan.isolation(found.as_ref())
                }
                Step::ReadEvidence { name } => {
                    let c = &self.containment;
                    plan.evidence_found(c.evidence_exists(&name, deadline).await?)
                }
                Step::ReadSelector { name } => {
                    let rs = self.containment.replicaset(target, &name, deadline).await?;
                    plan.selector(rs.as_ref())
                }
                Step::Isolate(np) => {
                    let answer = self.containment.isolate(target, &np, deadline).await;
                    let next = plan.isolated(answer);
                    self.settle(&mut plan, target);
                    next?
                }
                Step::Contain(p) => {
                    let answer = self.containment.patch(target, &p, deadline).await;
                    let next = plan.contained(answer);
                    self.settle(&mut plan, target);
                    next?
                }
                Step::Keep(e) => {
                    let answer = self.containment.keep(target, event, &e, deadline).await;
                    let next = plan.evidence_kept(answer);
                    self.settle(&mut plan, target);
                    next?
                }
                Step::Finish(f) => break *f,
            };
        };
        self.finish(target, event, finish)
    }

    /// After an answer that may end the action: the floor's slot it did not use goes back, the
    /// record of a containment that failed once the pod was touched is written.
    fn settle(&self, plan: &mut Plan<'_>, target: &Target) {
        if let Some(back) = plan.given_back()
            && let Some(release) = self.reservations.release(&back)
        {
            self.background.spawn(release);
        }
        if let Some(record) = plan.unfinished() {
            self.record((target.namespace.as_str(), target.name.as_str()), record);
        }
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
            self.record((ns, name), r);
        }
        if let Some(audit) = f.audit {
            let workload = outcome.pod.as_ref().and_then(|p| p.workload.as_deref());
            let about = format!("{ns}/{}", workload.unwrap_or(name));
            if is_refusal(audit.what)
                && !self
                    .refusals
                    .allow(audit.what, &about, std::time::Instant::now())
            {
                self.suppress("refusal_event");
            } else {
                self.record_later(audit_event(&self.instance, target, event, audit), None);
            }
        }
        Ok(outcome)
    }

    fn suppress(&self, what: &'static str) {
        self.suppressed
            .get_or_create(&SuppressedLabels { what })
            .inc();
    }

    /// Writes the breaker's record of the removal of `pod` (after the answer).
    fn record(&self, pod: (&str, &str), r: BreakerRecord) {
        let mut record =
            self.guards
                .records
                .record(r.name, pod, r.workload_key, r.related, Timestamp::now());
        if r.contained {
            record.note = Some(events::breaker_note(pod, true));
        }
        let about = format!("{}/{}", pod.0, pod.1);
        self.record_later(record, Some((about, self.record_failures.clone())));
    }

    /// Records `event` after the answer: the sender should not wait a third API round trip for
    /// the audit trail. A deletion counts even when its Event cannot be recorded (no RBAC for
    /// events). Shutdown and the one-shot mode wait for these (`App::drain`).
    ///
    /// `breaker`: the event is the breaker's record of the removal of that pod. Its failure is
    /// an error and counted: the other replicas (and the next one-shot run) will not count that
    /// deletion. A record that exists already (409: an earlier attempt at the same removal) is
    /// the same count.
    fn record_later(&self, record: KubeEvent, breaker: Option<(String, Counter)>) {
        let client = self.client.clone();
        let timeout = self.timeout;
        self.background.spawn(async move {
            let ns = record.metadata.namespace.clone().unwrap_or_default();
            let api: Api<KubeEvent> = Api::namespaced(client, &ns);
            let created =
                tokio::time::timeout(timeout, api.create(&PostParams::default(), &record)).await;
            let error = match created {
                Ok(Ok(_)) => return,
                Ok(Err(kube::Error::Api(s))) if s.code == 409 && breaker.is_some() => return,
                Ok(Err(e)) => error_chain(&e),
                Err(_) => format!("no answer within {}s", timeout.as_secs()),
            };
            if let Some((pod, failures)) = breaker {
                failures.inc();
                tracing::error!(
                    pod = pod.as_str(),
                    namespace = ns.as_str(),
                    %error,
                    "the deletion breaker's record could not be written: other replicas will not \
                     count this deletion (RBAC: create on events in the function's own namespace)"
                );
                return;
            }
            let pod = record.regarding.and_then(|r| r.name).unwrap_or_default();
            tracing::warn!(pod = %format!("{ns}/{pod}"), %error, "the Kubernetes Event could not be recorded");
        });
    }
}
