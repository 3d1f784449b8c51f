//! The Kubernetes side: check the pod is still the one the event named, delete it with a uid
//! precondition, and record a Kubernetes Event. Every call of one event shares one deadline.

use std::{sync::Arc, time::Duration};

use k8s_openapi::{
    api::{
        core::v1::{ObjectReference, Pod},
        events::v1::Event as KubeEvent,
    },
    jiff,
};
use kube::{
    Api, Client,
    api::{DeleteParams, PostParams, Preconditions},
};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::{
    cluster::{
        error::{ActionError, error_chain, map_err},
        events::{Guarded, Recorded, audit_event},
        evict::{self, Refused},
        facts::{Availability, Plan},
    },
    config::Config,
    domain::{
        falco::{FalcoEvent, Target},
        identity::{Verdict, pod_container_ids, verdict},
        outcome::{HeldBy, Outcome, OutcomeKind, PodRef, Seen},
    },
};

/// Talks to the API server on behalf of one process; cheap to clone.
#[derive(Clone)]
pub struct Kube {
    client: Client,
    timeout: Duration,
    instance: String,
    /// Event recordings in flight: they run after the answer, and shutdown waits for them.
    background: TaskTracker,
    /// The workload-aware guards; `None` only in tests that drive the bare path.
    guards: Option<Arc<Availability>>,
    /// For the Eviction API: no 429 retries (`kubeconfig::Clients::evict`, same pool); else `client`.
    evict_client: Option<Client>,
}

impl Kube {
    pub fn new(
        client: Client,
        timeout: Duration,
        instance: String,
        background: TaskTracker,
    ) -> Kube {
        Kube {
            client,
            timeout,
            instance,
            background,
            guards: None,
            evict_client: None,
        }
    }

    pub fn with_eviction_client(mut self, client: Client) -> Kube {
        self.evict_client = Some(client);
        self
    }

    /// Starts the guards' watch (the deletion breaker's records).
    pub fn watch(&self, timeout: Duration) {
        if let Some(g) = &self.guards {
            g.watch(timeout);
        }
    }

    /// Turns on the workload-aware guards (every process does; see `App::new`).
    pub fn with_guards(mut self, guards: Arc<Availability>) -> Kube {
        self.guards = Some(guards);
        self
    }

    /// GET, the verdict (`verdict`), then (unless DRY_RUN) the DELETE it calls for, with the
    /// uid precondition, and an Event.
    pub async fn act(
        &self,
        target: &Target,
        event: &FalcoEvent,
        cfg: &Config,
    ) -> Result<Outcome, ActionError> {
        let deadline = Instant::now() + self.timeout;
        // Only validated names reach the request path (`ident`).
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), target.namespace.as_str());
        let mut pod_ref = PodRef::of(target);

        // The breaker's count does not depend on the pod: read alongside the GET.
        let prefetch = async {
            match &self.guards {
                Some(g) => g.prefetch(deadline, self.timeout).await,
                None => None,
            }
        };
        let (got, prefetched) = tokio::join!(
            self.within(deadline, "get", pods.get_opt(target.name.as_str())),
            prefetch
        );
        let pod = match got? {
            Ok(Some(pod)) => pod,
            Ok(None) => {
                return Ok(Outcome {
                    kind: OutcomeKind::Gone,
                    reason: "the pod no longer exists".into(),
                    pod: Some(pod_ref),
                    seen: None,
                });
            }
            Err(e) => return Err(map_err(e, "get", target)),
        };
        let verdict = verdict(&pod, target, event, cfg, jiff::Timestamp::now());
        if let Verdict::Mismatch { reason } = verdict {
            return Err(ActionError::Mismatch(reason));
        }
        let seen = Seen {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            container_ids: pod_container_ids(&pod),
        };
        pod_ref.uid = Some(seen.uid.clone());
        // Takes the pod by reference: the guards add its workload to `pod_ref` on the way.
        let outcome = |pod: &PodRef, kind, reason: String| Outcome {
            kind,
            reason,
            pod: Some(pod.clone()),
            seen: Some(seen.clone()),
        };

        let (uid, grace, record) = match verdict {
            Verdict::Stale { reason } => return Ok(outcome(&pod_ref, OutcomeKind::Stale, reason)),
            Verdict::NotYet { reason } => return Err(ActionError::NotYet(reason)),
            Verdict::Skipped { reason } => {
                return Ok(outcome(&pod_ref, OutcomeKind::Skipped, reason));
            }
            Verdict::Terminating { reason } => {
                return Ok(outcome(&pod_ref, OutcomeKind::Terminating, reason));
            }
            Verdict::Mismatch { .. } => unreachable!("handled above"),
            Verdict::Delete { uid, grace } => (uid, grace, Recorded::Deleted),
            Verdict::Shorten { uid, grace, .. } => (uid, Some(grace), Recorded::GraceShortened),
        };
        // The workload-aware guards, for a new deletion (not for shortening a grace period).
        let mut guarded = Guarded::default();
        let mut ticket = None;
        let mut use_eviction = false;
        let mut checks = String::new();
        if let (Some(g), Recorded::Deleted) = (&self.guards, record) {
            let record = crate::cluster::records::Deletions::record_name();
            let plan = g
                .plan(
                    &self.client,
                    self.evict_client.as_ref().unwrap_or(&self.client),
                    &pod,
                    prefetched,
                    &record,
                    grace,
                    deadline,
                    self.timeout,
                    cfg.dry_run,
                )
                .await?;
            let w = plan.workload().clone();
            pod_ref.workload = Some(w.to_string());
            let related = crate::domain::budget::related(target.namespace.as_str(), &w);
            let dry = |verdict: &str, reason: &str| {
                outcome(
                    &pod_ref,
                    OutcomeKind::DryRun,
                    format!("DRY_RUN: {verdict}: {reason}"),
                )
            };
            let for_good = matches!(plan, Plan::Refuse { .. });
            match plan {
                Plan::Skip { reason, .. } if cfg.dry_run => {
                    return Ok(dry("would skip", &reason));
                }
                Plan::Skip { reason, .. } => {
                    return Ok(outcome(&pod_ref, OutcomeKind::Skipped, reason));
                }
                Plan::Hold { reason, .. } | Plan::Refuse { reason, .. } if cfg.dry_run => {
                    return Ok(dry("would hold", &reason));
                }
                Plan::Hold { reason, .. } => {
                    self.record_refusal(target, &uid, event, Recorded::Held, related, &reason);
                    return Ok(outcome(&pod_ref, OutcomeKind::Held(HeldBy::Floor), reason));
                }
                Plan::BreakerOpen { reason, .. } if cfg.dry_run => {
                    return Ok(dry("would be refused", &reason));
                }
                // Not deleted, and no retry can change that: loud (an error line), 200.
                Plan::Refuse { reason, .. } | Plan::BreakerOpen { reason, .. } => {
                    let (recorded, kind, what) = if for_good {
                        (
                            Recorded::Held,
                            OutcomeKind::Held(HeldBy::FloorNever),
                            "held for good: the availability floor can never be met; a person must look",
                        )
                    } else {
                        (
                            Recorded::BreakerOpen,
                            OutcomeKind::BreakerOpen(w.kind.metric_label()),
                            "deletion breaker open: not deleting; a person must look",
                        )
                    };
                    tracing::error!(
                        pod = %format!("{}/{}", target.namespace, target.name),
                        workload = %w,
                        reason = reason.as_str(),
                        "{what}"
                    );
                    self.record_refusal(target, &uid, event, recorded, related, &reason);
                    return Ok(outcome(&pod_ref, kind, reason));
                }
                Plan::Remove {
                    ticket: t,
                    checks: c,
                    ..
                } => {
                    ticket = t;
                    use_eviction = g.use_eviction;
                    checks = format!(" ({})", c.join("; "));
                    guarded = Guarded {
                        related,
                        why: None,
                        workload_key: crate::domain::budget::workload_key(
                            target.namespace.as_str(),
                            &w,
                        ),
                    };
                }
            }
        }

        if cfg.dry_run {
            // The audit trail of a trial run: what would have been done, and why.
            let extra = Guarded {
                related: guarded.related.take(),
                ..Default::default()
            };
            self.record_later(audit_event(
                &self.instance,
                target,
                &uid,
                event,
                Recorded::DryRun,
                extra,
            ));
            let what = match record {
                Recorded::GraceShortened => "shorten the grace period of",
                _ if use_eviction => "evict",
                _ => "delete",
            };
            return Ok(outcome(
                &pod_ref,
                OutcomeKind::DryRun,
                format!(
                    "DRY_RUN: would {what} pod {}/{}{checks}",
                    target.namespace, target.name
                ),
            ));
        }

        // The removal, through the Eviction API or a DELETE; both carry the uid precondition.
        let (verb, noun) = if use_eviction {
            ("evict", "eviction")
        } else {
            ("delete", "delete")
        };
        let removed: Result<Result<(), Refused>, ActionError> = if use_eviction {
            self.within(
                deadline,
                verb,
                evict::evict(
                    self.evict_client.as_ref().unwrap_or(&self.client),
                    target.namespace.as_str(),
                    target.name.as_str(),
                    &uid,
                    grace,
                    false,
                ),
            )
            .await
        } else {
            let mut dp = DeleteParams::default().preconditions(Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            });
            if let Some(g) = grace {
                dp = dp.grace_period(g);
            }
            self.within(deadline, verb, pods.delete(target.name.as_str(), &dp))
                .await
                .map(|r| r.map(drop).map_err(Refused::Other))
        };
        if !matches!(removed, Ok(Ok(()))) {
            // Not removed (held, gone, stale, refused, timed out): the reservation must not count.
            if let Some(g) = &self.guards {
                g.release(ticket.take());
            }
        }
        let done = match removed? {
            Ok(()) => match record {
                Recorded::GraceShortened => outcome(
                    &pod_ref,
                    OutcomeKind::Terminating,
                    format!(
                        "the pod was already terminating: grace shortened to {}s (Falco rule {:?})",
                        grace.unwrap_or_default(),
                        event.rule
                    ),
                ),
                _ if use_eviction => outcome(
                    &pod_ref,
                    OutcomeKind::Deleted,
                    format!(
                        "Falco rule {:?} (evicted through the Eviction API)",
                        event.rule
                    ),
                ),
                _ => outcome(
                    &pod_ref,
                    OutcomeKind::Deleted,
                    format!("Falco rule {:?}", event.rule),
                ),
            },
            Err(Refused::Budget(msg)) => {
                let reason = crate::cluster::facts::pdb_reason(&msg);
                self.record_refusal(
                    target,
                    &uid,
                    event,
                    Recorded::Held,
                    guarded.related.take(),
                    &reason,
                );
                return Ok(outcome(&pod_ref, OutcomeKind::Held(HeldBy::Pdb), reason));
            }
            Err(Refused::Other(kube::Error::Api(s))) if s.is_not_found() => {
                return Ok(outcome(
                    &pod_ref,
                    OutcomeKind::Gone,
                    format!("the pod disappeared before the {noun}"),
                ));
            }
            Err(Refused::Other(kube::Error::Api(s))) if s.is_conflict() => {
                return Ok(outcome(
                    &pod_ref,
                    OutcomeKind::Stale,
                    format!(
                        "the pod was replaced between check and {noun} (uid precondition failed)"
                    ),
                ));
            }
            Err(Refused::Other(e)) => return Err(map_err(e, verb, target)),
        };

        // The breaker's record of this deletion, under the name its reservation holds.
        if let (Some(g), Some(t)) = (&self.guards, ticket) {
            self.record_later(g.deletions.record(
                t.key,
                (target.namespace.as_str(), target.name.as_str()),
                guarded.workload_key.take(),
                guarded.related.clone(),
                jiff::Timestamp::now(),
            ));
        }
        self.record_later(audit_event(
            &self.instance,
            target,
            &uid,
            event,
            record,
            guarded,
        ));
        Ok(done)
    }

    async fn within<T>(
        &self,
        deadline: Instant,
        step: &'static str,
        fut: impl Future<Output = T>,
    ) -> Result<T, ActionError> {
        tokio::time::timeout_at(deadline, fut)
            .await
            .map_err(|_| ActionError::Timeout {
                step,
                timeout: self.timeout,
            })
    }

    /// Records the Warning Event of a deletion a guard refused (held, breaker open), saying why.
    fn record_refusal(
        &self,
        t: &Target,
        uid: &str,
        event: &FalcoEvent,
        what: Recorded,
        related: Option<ObjectReference>,
        why: &str,
    ) {
        let extra = Guarded {
            related,
            why: Some(why.to_string()),
            ..Default::default()
        };
        self.record_later(audit_event(&self.instance, t, uid, event, what, extra));
    }

    /// Records `event` after the answer: the sender should not wait a third API round trip for
    /// the audit trail. A deletion counts even when its Event cannot be recorded (no RBAC for
    /// events). Shutdown and the one-shot mode wait for these (`App::drain`).
    fn record_later(&self, record: KubeEvent) {
        let this = self.clone();
        self.background.spawn(async move {
            let ns = record.metadata.namespace.clone().unwrap_or_default();
            let api: Api<KubeEvent> = Api::namespaced(this.client.clone(), &ns);
            let created =
                tokio::time::timeout(this.timeout, api.create(&PostParams::default(), &record)).await;
            let error = match created {
                Ok(Ok(_)) => return,
                Ok(Err(e)) => error_chain(&e),
                Err(_) => format!("no answer within {}s", this.timeout.as_secs()),
            };
            let pod = record.regarding.and_then(|r| r.name).unwrap_or_default();
            tracing::warn!(pod = %format!("{ns}/{pod}"), %error, "the Kubernetes Event could not be recorded");
        });
    }
}
