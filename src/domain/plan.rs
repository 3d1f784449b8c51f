//! What to do with the facts the API returns, step by step: each answer (the pod, its workload,
//! the replica counts, the breaker's count, the dry-run eviction's, the removal's) goes in, the
//! next call to make or the end (outcome, Events to record) comes out. Pure: `cluster::pods`
//! makes the calls this asks for and no other, so every branch is tested without an API server.
//! The facts come in stages, as each depends on the one before (the owner on the pod; the
//! workload is read only for a pod not skipped); only the breaker's count, which depends on
//! nothing, is read alongside the pod's GET and handed in when the plan gets to it.
//!
//! Under ACTION=contain (`domain::contain`) the same path decides, and the removal is replaced
//! by the containment's steps: the ReplicaSet's selector, the NetworkPolicy, the one patch, the
//! evidence; a pod labelled by us costs the GET of its policy and of its evidence instead.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::ReplicaSet,
        core::v1::{ObjectReference, Pod},
        networking::v1::NetworkPolicy,
    },
    jiff::Timestamp,
};

use crate::domain::{
    budget::{self, Breaker, Deletion, Ticket},
    contain::{
        self, Action, ContainConfig, Kill, PodFacts, Release, Steps, evidence_name, is_ours,
        network_policy, policy_name,
    },
    falco::{FalcoEvent, Target},
    guards::{self, MinAvailable, NAMESPACE_PROTECT_LABEL, Ruling, SkipOwnerKinds},
    identity::{IdentityConfig, Verdict, pod_container_ids, verdict},
    outcome::{HeldBy, Outcome, OutcomeKind, PodRef, Seen, Why, why},
    step::{
        Audit, BreakerRecord, Evidence, Finish, Isolated, Kept, MayHaveHappened, Patched, PodPatch,
        Recorded, Removal, Removed, Reserve, Reserved, Step, Undecided, Via,
    },
    workload::{Kind, Replicas, Workload},
};

/// The workload kind label of a `breaker-open` answered without looking the pod up.
pub const UNRESOLVED: &str = "unresolved";

/// The configuration the plan reads (built from `Config` by the cluster layer).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlanConfig {
    pub identity: IdentityConfig,
    /// DRY_RUN: every guard gives its verdict, nothing is removed or reserved.
    pub dry_run: bool,
    pub skip_owner_kinds: SkipOwnerKinds,
    pub min_available: Option<MinAvailable>,
    /// USE_EVICTION: remove through the Eviction API (PodDisruptionBudgets apply).
    pub use_eviction: bool,
    /// ACTION and its rule lists, CONTAIN_SECONDS, EVIDENCE_LOG_BYTES.
    pub contain: ContainConfig,
}

/// Which answer the plan waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    Start,
    Pod,
    Namespace,
    Workload,
    Replicas,
    Count,
    DryEviction,
    Reservation,
    Removal,
    /// The NetworkPolicy of a pod that carries our label (contained already?).
    Isolation,
    Selector,
    /// The evidence ConfigMap of a contained pod (kept already?).
    EvidenceCheck,
    Isolating,
    Patch,
    Evidence,
    Nothing,
}

/// The grace period a StatefulSet pod gets where 0 was asked (GRACE_PERIOD_SECONDS=0 with
/// ALLOW_FORCE_DELETE, or shortening to 0): a force delete lets the controller start the
/// replacement while the old pod may still run, two pods with one identity. The smallest
/// grace above 0 stops the pod as soon as the kubelet can.
pub const STATEFULSET_MIN_GRACE: u32 = 1;

/// The removal decided so far: what the pod's verdict called for.
#[derive(Debug)]
struct Decided {
    uid: String,
    grace: Option<u32>,
    /// `Deleted`, or `GraceShortened` for a terminating pod: a removal too (it stops the pod
    /// sooner), so it passes the same guards but the floor (a terminating pod already left
    /// `readyReplicas`).
    what: Recorded,
    pod_ready: bool,
    node: Option<String>,
    /// 0 was asked for a StatefulSet pod: raised to [`STATEFULSET_MIN_GRACE`].
    grace_raised: bool,
}

/// One event's plan, fed the API's answers in the order its steps ask for them.
#[derive(Debug)]
pub struct Plan<'a> {
    config: &'a PlanConfig,
    breaker: &'a Breaker,
    target: &'a Target,
    event: &'a FalcoEvent,
    due: Due,
    pod: PodRef,
    seen: Seen,
    decided: Option<Decided>,
    workload: Option<Workload>,
    /// What each guard said, for the dry-run reason.
    checks: Vec<String>,
    ticket: Option<Ticket>,
    /// The floor's slot to ask for before the removal (a ready pod under MIN_AVAILABLE).
    reserve: Option<Reserve>,
    /// The slot held for this removal.
    reservation: Option<Reserved>,
    /// The slot to give back: the removal did not happen.
    give_back: Option<Reserved>,
    /// What this event's rule calls for (ACTION, CONTAIN_RULES, DELETE_RULES).
    action: Action,
    /// The containment under way (ACTION=contain, the verdict called for acting).
    containing: Option<Containing>,
    /// The breaker's record of a containment that failed after its patch may have happened.
    unfinished: Option<BreakerRecord>,
}

/// A containment under way: the pod's facts and what was done so far.
#[derive(Debug)]
struct Containing {
    facts: PodFacts,
    /// When the pod was read: its deadline is counted from its start to then.
    read_at: Timestamp,
    release: Release,
    selector_read: bool,
    done: Steps,
    /// The patch happened: the pod is out of service.
    touched: bool,
    /// Contained by an earlier attempt that stopped before its evidence: only that is left.
    resumed: bool,
    kept: Option<Kept>,
    deadline: Option<i64>,
}

impl<'a> Plan<'a> {
    pub fn new(
        config: &'a PlanConfig,
        breaker: &'a Breaker,
        target: &'a Target,
        event: &'a FalcoEvent,
    ) -> Plan<'a> {
        Plan {
            config,
            breaker,
            target,
            event,
            due: Due::Start,
            pod: PodRef::of(target),
            seen: Seen::default(),
            decided: None,
            workload: None,
            checks: Vec::new(),
            ticket: None,
            reserve: None,
            reservation: None,
            give_back: None,
            action: config.contain.actions.for_rule(&event.rule),
            containing: None,
            unfinished: None,
        }
    }

    /// The first step at `now`: the pod, unless the overall budget is known to be spent
    /// ([`Breaker::known_open`]): then every deletion is refused, and the event is answered
    /// `breaker-open` from memory, with no API call (no Event either: no pod was looked at).
    pub fn start(&mut self, now: Timestamp) -> Step {
        if !self.config.dry_run
            && let Some(open) = self.breaker.known_open(now)
        {
            self.expect(Due::Start, Due::Nothing);
            return Self::end(Ok(Outcome {
                kind: OutcomeKind::BreakerOpen(UNRESOLVED),
                reason: open.reason_unresolved(),
                why: Why::Said(why::BREAKER_OPEN),
                pod: Some(self.pod.clone()),
                seen: None,
                steps: Default::default(),
            }));
        }
        self.first()
    }

    /// The first step: the pod.
    pub fn first(&mut self) -> Step {
        self.expect(Due::Start, Due::Pod);
        Step::GetPod {
            with_count: self.breaker.enabled(),
        }
    }

    /// The pod's GET answered: the pod, or `None` (404). `now` for the identity verdict.
    pub fn pod(&mut self, pod: Option<&Pod>, now: Timestamp) -> Step {
        self.expect(Due::Pod, Due::Nothing);
        let Some(pod) = pod else {
            return Self::end(Ok(Outcome {
                kind: OutcomeKind::Gone,
                reason: "the pod no longer exists".into(),
                why: Why::Said(why::GONE),
                pod: Some(self.pod.clone()),
                seen: None,
                steps: Default::default(),
            }));
        };
        let v = verdict(pod, self.target, self.event, &self.config.identity, now);
        if let Verdict::Mismatch { reason } = v {
            return Self::end(Err(Undecided::Mismatch(reason)));
        }
        self.seen = Seen {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            container_ids: pod_container_ids(pod),
        };
        self.pod.uid = Some(self.seen.uid.clone());
        let (uid, grace, what) = match v {
            Verdict::Stale { reason } => return self.done(OutcomeKind::Stale, reason, why::STALE),
            Verdict::NotYet { reason } => return Self::end(Err(Undecided::NotYet(reason))),
            Verdict::Skipped { reason } => {
                return self.done(OutcomeKind::Skipped, reason, why::PROTECTED);
            }
            Verdict::Unproven { reason } => {
                return self.done(OutcomeKind::Skipped, reason, why::UNPROVEN);
            }
            Verdict::Foreign { reason } => {
                // A forged event or a container outside the kubelet: the pod's namespace hears of it.
                let mut finish = self.finish(OutcomeKind::Skipped, reason.clone(), why::FOREIGN);
                finish.audit = Some(Audit {
                    uid: self.seen.uid.clone(),
                    what: Recorded::Foreign,
                    related: None,
                    why: Some(reason),
                });
                return Step::Finish(Box::new(finish));
            }
            Verdict::Terminating { reason } => {
                return self.done(OutcomeKind::Terminating, reason, why::TERMINATING);
            }
            Verdict::Mismatch { .. } => unreachable!("handled above"),
            // Someone is deleting it already: nothing is left to contain for long.
            Verdict::Shorten { .. } if self.action == Action::Contain => {
                return self.done(
                    OutcomeKind::Terminating,
                    "the pod is already terminating: not contained (ACTION=contain)".into(),
                    why::TERMINATING_NOT_CONTAINED,
                );
            }
            Verdict::Delete { uid, grace } => (uid, grace, Recorded::Deleted),
            Verdict::Shorten { uid, grace, .. } => (uid, Some(grace), Recorded::GraceShortened),
        };
        self.decided = Some(Decided {
            uid,
            grace,
            what,
            pod_ready: guards::pod_is_ready(pod),
            node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            grace_raised: false,
        });
        if self.action == Action::Contain {
            let facts = PodFacts::of(pod);
            // The label alone proves nothing (whoever may patch the pod can set it): contained
            // only with our NetworkPolicy, or, for a pod on the host's network, a passed deadline.
            let labelled = facts.labelled_contained();
            let killed = facts.host_network && facts.deadline_passed(now);
            let uid = facts.uid.clone();
            let host_network = facts.host_network;
            self.containing = Some(Containing {
                facts,
                read_at: now,
                release: Release::No,
                selector_read: false,
                done: Steps::NONE,
                touched: false,
                resumed: false,
                kept: None,
                deadline: None,
            });
            if labelled && killed {
                return self.check_evidence();
            }
            if labelled && !host_network {
                self.due = Due::Isolation;
                return Step::ReadIsolation {
                    name: policy_name(&uid),
                };
            }
        }
        // The protections pod authors cannot forge, then the workload-aware guards, for a
        // new deletion and a shortened grace period alike.
        self.due = Due::Namespace;
        Step::ReadNamespace
    }

    /// The NetworkPolicy named after the pod's uid (`None`: it does not exist), read because
    /// the pod carries our label: ours, the pod is contained (is its evidence kept?); else it
    /// is contained anew.
    pub fn isolation(&mut self, found: Option<&NetworkPolicy>) -> Step {
        self.expect(Due::Isolation, Due::Nothing);
        let uid = &self.containing().facts.uid;
        if found.is_some_and(|np| is_ours(np, uid)) {
            return self.check_evidence();
        }
        self.due = Due::Namespace;
        Step::ReadNamespace
    }

    /// Whether the pod's evidence ConfigMap exists: contained whole, or its evidence is kept
    /// now (an earlier attempt stopped after the patch).
    pub fn evidence_found(&mut self, exists: bool) -> Step {
        self.expect(Due::EvidenceCheck, Due::Nothing);
        if exists {
            return self.already_contained();
        }
        self.containing.as_mut().expect("containing").resumed = true;
        if self.config.dry_run {
            let (ns, name) = (&self.target.namespace, &self.target.name);
            let reason = format!(
                "DRY_RUN: pod {ns}/{name} is contained already; would keep its evidence in \
                 ConfigMap {}",
                evidence_name(&self.containing().facts.uid)
            );
            let mut finish = self.finish(OutcomeKind::DryRun, reason, why::DRY_CONTAIN);
            if let Ok(o) = &mut finish.outcome {
                o.steps = Steps::EVIDENCE;
            }
            return Step::Finish(Box::new(finish));
        }
        self.keep()
    }

    /// The ReplicaSet the pod's controller reference names (`None`: it does not exist).
    pub fn selector(&mut self, rs: Option<&ReplicaSet>) -> Step {
        self.expect(Due::Selector, Due::Nothing);
        let c = self.containing.as_mut().expect("containing");
        c.release = contain::release(&c.facts, rs);
        self.contain_next()
    }

    /// The isolation's answer. A NetworkPolicy of its name that is not exactly ours stops the
    /// containment: the pod is never labelled under a policy someone else wrote.
    pub fn isolated<E: MayHaveHappened>(&mut self, answer: Result<Isolated, E>) -> Result<Step, E> {
        self.expect(Due::Isolating, Due::Nothing);
        let isolated = answer.map_err(|e| self.failed(e, false))?;
        let uid = self.containing().facts.uid.clone();
        if let Isolated::Exists(np) = &isolated
            && !is_ours(np, &uid)
        {
            self.untouched();
            let (ns, name) = (&self.target.namespace, &self.target.name);
            return Ok(Self::end(Err(Undecided::Forged(format!(
                "NetworkPolicy {ns}/{} exists and is not the function's deny-all policy for pod \
                 {ns}/{name} (uid {uid}): not containing the pod under it; a person must look",
                policy_name(&uid)
            )))));
        }
        let c = self.containing.as_mut().expect("containing");
        c.done = c.done.with(Steps::ISOLATED);
        Ok(self.patch())
    }

    /// The containment patch's answer: the pod is labelled (so isolated), released and has its
    /// deadline; then its evidence. Or it changed or went first.
    pub fn contained<E: MayHaveHappened>(&mut self, answer: Result<Patched, E>) -> Result<Step, E> {
        self.expect(Due::Patch, Due::Nothing);
        let patched = answer.map_err(|e| self.failed(e, true))?;
        let step = match patched {
            Patched::Stale => {
                self.untouched();
                self.done(
                    OutcomeKind::Stale,
                    "the pod was replaced between check and containment (another uid under the \
                     name: the patch's test failed)"
                        .into(),
                    why::REPLACED_CONTAIN,
                )
            }
            Patched::Changed => {
                // Not `stale`: the pod is still the one Falco saw and is not contained yet.
                self.untouched();
                return Ok(Self::end(Err(Undecided::NotYet(
                    "the pod changed between check and containment (a label the release \
                     removes, or its deadline): nothing was written; retry"
                        .into(),
                ))));
            }
            Patched::Gone => {
                self.untouched();
                self.done(
                    OutcomeKind::Gone,
                    "the pod disappeared before it could be contained".into(),
                    why::GONE,
                )
            }
            Patched::Done => {
                let c = self.containing.as_mut().expect("containing");
                c.touched = true;
                if matches!(c.release, Release::Labels { .. }) {
                    c.done = c.done.with(Steps::RELEASED);
                }
                if c.deadline.is_some() {
                    let s = if c.facts.host_network {
                        Steps::KILLED
                    } else {
                        Steps::DEADLINE
                    };
                    c.done = c.done.with(s);
                }
                self.keep()
            }
        };
        Ok(step)
    }

    /// The evidence's answer: the end of the containment.
    pub fn evidence_kept<E: MayHaveHappened>(
        &mut self,
        answer: Result<Kept, E>,
    ) -> Result<Step, E> {
        self.expect(Due::Evidence, Due::Nothing);
        let kept = answer.map_err(|e| self.failed(e, false))?;
        let c = self.containing.as_mut().expect("containing");
        c.done = c.done.with(Steps::EVIDENCE);
        c.kept = Some(kept);
        let steps = c.done;
        let story = self.story(false);
        let said = if self.containing().facts.host_network {
            why::CONTAINED_HOST_NETWORK
        } else {
            why::CONTAINED
        };
        let reason = format!("Falco rule {:?}: contained: {story}", self.event.rule);
        let related = self.related();
        let mut finish = self.finish(OutcomeKind::Contained, reason, said);
        if let Ok(o) = &mut finish.outcome {
            o.steps = steps;
        }
        finish.breaker_record = self.kept();
        finish.audit = Some(self.audit(Recorded::Contained, related, Some(story)));
        Ok(Step::Finish(Box::new(finish)))
    }

    /// The breaker's record of a containment that failed once its patch happened, or may
    /// have though its answer was lost: it counts (and keeps its slot of the floor), as a
    /// lost removal does.
    pub fn unfinished(&mut self) -> Option<BreakerRecord> {
        self.unfinished.take()
    }

    /// Whether the pod's namespace carries the protection label.
    pub fn namespace(&mut self, protected: bool) -> Step {
        self.expect(Due::Namespace, Due::Nothing);
        if protected {
            return self.done(
                OutcomeKind::Skipped,
                format!(
                    "namespace {} is labelled {NAMESPACE_PROTECT_LABEL}=true",
                    self.target.namespace
                ),
                why::PROTECTED,
            );
        }
        self.due = Due::Workload;
        Step::Resolve
    }

    /// The pod's workload, resolved.
    pub fn workload(&mut self, w: Workload) -> Step {
        self.expect(Due::Workload, Due::Nothing);
        self.pod.workload = Some(w.to_string());
        self.checks.push(format!("workload {w}"));
        let node = self.decided().node.as_deref();
        let ruling = guards::by_kind(&w, &self.config.skip_owner_kinds, node);
        let stateful = w.kind == Kind::StatefulSet;
        self.workload = Some(w);
        if let Ruling::Skip(reason) = ruling {
            if self.config.dry_run {
                return self.dry(format!("would skip: {reason}"), why::DRY_SKIP);
            }
            return self.done(OutcomeKind::Skipped, reason, why::KIND_SKIPPED);
        }
        let d = self
            .decided
            .as_mut()
            .expect("the pod's verdict called for a removal");
        if stateful && d.grace == Some(0) {
            d.grace = Some(STATEFULSET_MIN_GRACE);
            d.grace_raised = true;
        }
        // The breaker before the floor: its count is in hand (read alongside the pod's GET), and
        // while it is open an event costs no GET of the workload's replicas.
        if self.breaker.enabled() {
            self.due = Due::Count;
            return Step::Count;
        }
        self.floor()
    }

    /// The floor's replica counts, for a new deletion under MIN_AVAILABLE.
    fn floor(&mut self) -> Step {
        match self.config.min_available {
            Some(_) if self.decided().what == Recorded::Deleted => {
                self.due = Due::Replicas;
                Step::ReadReplicas(self.resolved().clone())
            }
            // The floor counts ready replicas: a terminating pod already left them.
            _ => self.after_breaker(),
        }
    }

    /// The workload's replica counts (`None`: a kind without any, or the workload is gone).
    pub fn replicas(&mut self, replicas: Option<Replicas>) -> Step {
        self.expect(Due::Replicas, Due::Nothing);
        let min = self.config.min_available.expect("asked for replicas");
        let w = &self.resolved().clone();
        match guards::floor(w, min, replicas, self.decided().pod_ready) {
            Ruling::Hold(reason) => self.held(reason, HeldBy::Floor),
            Ruling::Refuse(reason) => self.held(reason, HeldBy::FloorNever),
            _ => {
                // A ready pod's deletion takes one of the slots the floor allows, so concurrent
                // events (here or in another replica) cannot all pass on the same count.
                let key = budget::workload_key(self.target.namespace.as_str(), w);
                // A floor of 0 holds nothing back: no slot to count.
                if let (Some(r), Some(workload), true, false) =
                    (replicas, key, self.decided().pod_ready, self.config.dry_run)
                    && min.floor(r.desired) > 0
                {
                    self.reserve = Some(Reserve {
                        workload,
                        slots: guards::slots(min, r),
                    });
                }
                let check = match replicas {
                    Some(r) => format!(
                        "MIN_AVAILABLE={min} holds ({} of {} ready)",
                        r.ready, r.desired
                    ),
                    None => format!("MIN_AVAILABLE={min} does not apply to {}", w.kind.as_str()),
                };
                self.checks.push(check);
                self.after_breaker()
            }
        }
    }

    /// The breaker's count (read alongside the pod's GET); `now` for its windows. A closed
    /// breaker reserves this deletion (not under DRY_RUN) by `record_name`, the name of the
    /// record it would write, until [`Plan::removed`] says whether it happened.
    pub fn counted(&mut self, listed: &[Deletion], now: Timestamp, record_name: &str) -> Step {
        self.expect(Due::Count, Due::Nothing);
        // Records are named after the pod's uid, so shortening the grace of a pod the function
        // removed itself is that same removal: the breaker counts it once by its name.
        let w = self.resolved();
        let key = budget::workload_key(self.target.namespace.as_str(), w);
        let reserve = !self.config.dry_run;
        match self
            .breaker
            .admit(listed, key.as_deref(), now, record_name, reserve)
        {
            Ok(ticket) => self.ticket = ticket,
            Err(open) => {
                let reason = open.reason(w);
                if self.config.dry_run {
                    return self.dry(format!("would be refused: {reason}"), why::DRY_BREAKER);
                }
                let kind = OutcomeKind::BreakerOpen(w.kind.metric_label());
                let mut finish =
                    self.refused(Recorded::BreakerOpen, kind, reason, why::BREAKER_OPEN);
                finish.alarm = Some("deletion breaker open: not deleting; a person must look");
                return Step::Finish(Box::new(finish));
            }
        }
        self.checks.push("deletion breaker closed".into());
        self.floor()
    }

    /// The floor's slot for this deletion, or `None`: every deletion the floor allows is in
    /// flight or too recent for the controller's count to show it: held. `Err` (the records
    /// could not be read or written) passes through; no deletion, so the breaker's ticket goes
    /// back.
    pub fn reserved<E>(&mut self, answer: Result<Option<Reserved>, E>) -> Result<Step, E> {
        self.expect(Due::Reservation, Due::Nothing);
        let asked = self.reserve.take().expect("asked for a slot");
        let slot = answer.inspect_err(|_| self.release())?;
        Ok(match slot {
            Some(s) => {
                self.reservation = Some(s);
                self.last()
            }
            None => {
                self.release();
                let min = self.config.min_available.expect("asked for a slot");
                let reason = format!(
                    "workload {}: MIN_AVAILABLE={min} lets {} deletion(s) of its ready replicas \
                     be in flight at once, and that many are (or were too recently for its \
                     ready count to show them); retry once replicas recover",
                    self.resolved(),
                    asked.slots,
                );
                self.held(reason, HeldBy::Floor)
            }
        })
    }

    /// The slot to give back once the plan is over: its removal did not happen (gone, stale,
    /// refused). A removal that happened, or whose answer was lost, keeps it until it expires.
    pub fn given_back(&mut self) -> Option<Reserved> {
        self.give_back.take()
    }

    /// The dry-run eviction's answer: allowed, or refused by a PodDisruptionBudget (its message).
    pub fn dry_evicted(&mut self, answer: Result<(), String>) -> Step {
        self.expect(Due::DryEviction, Due::Nothing);
        match answer {
            Ok(()) => {
                self.checks
                    .push("the PodDisruptionBudgets allow an eviction".into());
                self.last()
            }
            Err(msg) => self.held(
                format!("eviction refused by a PodDisruptionBudget: {msg}"),
                HeldBy::Pdb,
            ),
        }
    }

    /// The removal's answer; `Err` (any other refusal, a timeout) passes through. Whatever did
    /// not remove the pod gives its reservation back.
    pub fn removed<E: MayHaveHappened>(&mut self, answer: Result<Removed, E>) -> Result<Step, E> {
        self.expect(Due::Removal, Due::Nothing);
        if !matches!(answer, Ok(Removed::Done)) {
            self.release();
        }
        let kept = match &answer {
            Ok(Removed::Done) => true,
            Ok(_) => false,
            Err(e) => e.may_have_happened(),
        };
        if !kept {
            self.give_back = self.reservation.take();
        }
        let via = self.via();
        let noun = via.noun();
        let rule = &self.event.rule;
        let step = match answer? {
            Removed::Done => {
                let d = self.decided();
                let (kind, reason, said) = match d.what {
                    Recorded::GraceShortened => (
                        OutcomeKind::Terminating,
                        format!(
                            "the pod was already terminating: grace shortened to {}s (Falco rule {rule:?})",
                            d.grace.unwrap_or_default(),
                        ),
                        why::SHORTENED,
                    ),
                    _ if via == Via::Eviction => (
                        OutcomeKind::Deleted,
                        format!("Falco rule {rule:?} (evicted through the Eviction API)"),
                        why::EVICTED,
                    ),
                    _ => (
                        OutcomeKind::Deleted,
                        format!("Falco rule {rule:?}"),
                        why::DELETED,
                    ),
                };
                let reason = reason + self.grace_note();
                let related = self.related();
                let mut finish = self.finish(kind, reason, said);
                finish.breaker_record = self.kept();
                finish.audit = Some(self.audit(self.decided().what, related, None));
                Step::Finish(Box::new(finish))
            }
            Removed::Budget(msg) => {
                let reason = format!(
                    "eviction refused by a PodDisruptionBudget: {msg}; retry once replicas recover"
                );
                let kind = OutcomeKind::Held(HeldBy::Pdb);
                Step::Finish(Box::new(self.refused(
                    Recorded::Held,
                    kind,
                    reason,
                    HeldBy::Pdb.why(),
                )))
            }
            Removed::NotFound => self.done(
                OutcomeKind::Gone,
                format!("the pod disappeared before the {noun}"),
                why::GONE,
            ),
            Removed::Conflict => self.done(
                OutcomeKind::Stale,
                format!("the pod was replaced between check and {noun} (uid precondition failed)"),
                why::REPLACED,
            ),
        };
        Ok(step)
    }

    /// The removal's answer was lost (the deadline passed, the connection dropped, a 5xx after
    /// the request was sent): it may have happened, so it counts. The reservation is kept and
    /// its record returned, to be written; the error passes on (the sender retries). A retry
    /// whose GET finds the same pod alive and not terminating removes it under the same record
    /// name, so the pod is counted once.
    pub fn lost(&mut self) -> Option<BreakerRecord> {
        self.expect(Due::Removal, Due::Nothing);
        self.kept()
    }

    /// The record of the removal the reservation stands for (none when the breaker is off).
    fn kept(&mut self) -> Option<BreakerRecord> {
        let t = self.ticket.take()?;
        Some(BreakerRecord {
            name: t.key,
            contained: self.action == Action::Contain,
            workload_key: self
                .workload
                .as_ref()
                .and_then(|w| budget::workload_key(self.target.namespace.as_str(), w)),
            related: self.related(),
        })
    }

    /// Said in the reason when a StatefulSet pod got [`STATEFULSET_MIN_GRACE`] instead of 0.
    fn grace_note(&self) -> &'static str {
        if self.decided().grace_raised {
            " (grace 1s, not 0: a StatefulSet pod is never force-deleted, whatever \
             ALLOW_FORCE_DELETE says: two pods would hold one identity)"
        } else {
            ""
        }
    }

    fn expect(&mut self, due: Due, then: Due) {
        assert_eq!(self.due, due, "the plan was answered out of order");
        self.due = then;
    }

    fn decided(&self) -> &Decided {
        self.decided
            .as_ref()
            .expect("the pod's verdict called for a removal")
    }

    fn resolved(&self) -> &Workload {
        self.workload.as_ref().expect("the workload was resolved")
    }

    /// Through the Eviction API only for a new deletion under USE_EVICTION.
    fn via(&self) -> Via {
        if self.config.use_eviction && self.decided().what == Recorded::Deleted {
            Via::Eviction
        } else {
            Via::Delete
        }
    }

    /// The workload reference the Events carry, once the guards resolved it.
    fn related(&self) -> Option<ObjectReference> {
        let w = self.workload.as_ref()?;
        budget::related(self.target.namespace.as_str(), w)
    }

    fn removal(&self, via: Via) -> Removal {
        let d = self.decided();
        Removal {
            via,
            uid: d.uid.clone(),
            grace: d.grace,
        }
    }

    fn release(&mut self) {
        if let Some(t) = self.ticket.take() {
            self.breaker.release(t);
        }
    }

    fn after_breaker(&mut self) -> Step {
        // Under DRY_RUN the Eviction API itself says whether a budget would allow it.
        if self.config.dry_run && self.config.use_eviction && self.action == Action::Delete {
            self.due = Due::DryEviction;
            return Step::EvictDryRun(self.removal(Via::Eviction));
        }
        if let Some(r) = &self.reserve {
            self.due = Due::Reservation;
            return Step::Reserve(r.clone());
        }
        self.last()
    }

    /// The removal, or under DRY_RUN what it would have been (and its audit trail).
    fn last(&mut self) -> Step {
        if self.action == Action::Contain {
            return self.contain_next();
        }
        let via = self.via();
        if !self.config.dry_run {
            self.due = Due::Removal;
            return Step::Remove(self.removal(via));
        }
        let d = self.decided();
        let (what, said) = match d.what {
            Recorded::GraceShortened => ("shorten the grace period of", why::DRY_SHORTEN),
            _ if via == Via::Eviction => ("evict", why::DRY_EVICT),
            _ => ("delete", why::DRY_DELETE),
        };
        let checks = match self.workload {
            Some(_) => format!(" ({})", self.checks.join("; ")),
            None => String::new(),
        };
        let (ns, name) = (&self.target.namespace, &self.target.name);
        let reason = format!("DRY_RUN: would {what} pod {ns}/{name}{checks}");
        // The Event carries what each guard said; the reply only what would have been done.
        let audit = self.audit(Recorded::DryRun, self.related(), Some(reason.clone()));
        let mut finish = self.finish(OutcomeKind::DryRun, reason, said);
        finish.audit = Some(audit);
        Step::Finish(Box::new(finish))
    }

    fn containing(&self) -> &Containing {
        self.containing.as_ref().expect("a containment under way")
    }

    /// The containment's next step once the guards let it through: the ReplicaSet's selector
    /// (a pod it may release), then the isolation (not for a pod on the host's network: no
    /// NetworkPolicy applies to it), or under DRY_RUN what it would take.
    fn contain_next(&mut self) -> Step {
        let kind = self.resolved().kind.clone();
        let c = self.containing.as_mut().expect("containing");
        if !c.selector_read && c.facts.releasable(&kind) {
            c.selector_read = true;
            let (name, _) = c.facts.replicaset.clone().expect("releasable");
            self.due = Due::Selector;
            return Step::ReadSelector { name };
        }
        let kill = if c.facts.host_network {
            Some(Kill::Now)
        } else {
            self.config.contain.seconds.map(Kill::In)
        };
        c.deadline = kill.and_then(|k| contain::deadline(&c.facts, k, c.read_at));
        if self.config.dry_run {
            return self.dry_contain();
        }
        if c.facts.host_network {
            return self.patch();
        }
        let (ns, name) = (self.target.namespace.as_str(), self.target.name.as_str());
        self.due = Due::Isolating;
        Step::Isolate(Box::new(network_policy(ns, name, &c.facts.uid)))
    }

    /// The one patch: our label (what the isolation selects), the release, the deadline.
    fn patch(&mut self) -> Step {
        let c = self.containing();
        let released = match &c.release {
            Release::Labels { labels, .. } => labels.clone(),
            _ => BTreeMap::new(),
        };
        let patch = contain::patch(&c.facts, &released, c.deadline);
        let uid = c.facts.uid.clone();
        self.due = Due::Patch;
        Step::Contain(PodPatch { uid, patch })
    }

    /// A pod contained already: is its evidence kept?
    fn check_evidence(&mut self) -> Step {
        self.due = Due::EvidenceCheck;
        Step::ReadEvidence {
            name: evidence_name(&self.containing().facts.uid),
        }
    }

    /// The evidence: the tails of the pod's containers' logs (readable after the kubelet
    /// killed it too).
    fn keep(&mut self) -> Step {
        let c = self.containing();
        let n = c.facts.containers.len();
        let tail_bytes = contain::tail_bytes(self.config.contain.log_bytes, n);
        let evidence = Evidence {
            uid: c.facts.uid.clone(),
            containers: c.facts.containers.clone(),
            tail_bytes,
            tail_lines: contain::tail_lines(tail_bytes),
        };
        self.due = Due::Evidence;
        Step::Keep(evidence)
    }

    /// What containing the pod took (`dry`: would take), for the log line and the Event.
    fn story(&self, dry: bool) -> String {
        let c = self.containing();
        let f = &c.facts;
        let ns = &self.target.namespace;
        let mut said = Vec::new();
        if c.resumed {
            said.push("contained by an earlier attempt; its evidence is kept now".to_string());
        } else if f.host_network {
            said.push(
                "not isolated: the pod uses the host's network, no NetworkPolicy applies to it"
                    .to_string(),
            );
        } else {
            said.push(format!(
                "isolated by NetworkPolicy {ns}/{}",
                policy_name(&f.uid)
            ));
        }
        match &c.release {
            Release::Labels { replicaset, labels } => {
                let keys: Vec<&str> = labels.keys().map(String::as_str).collect();
                said.push(format!(
                    "released from ReplicaSet {replicaset} (labels removed: {}; never put them \
                     back: the ReplicaSet would delete a healthy replica)",
                    keys.join(", ")
                ));
            }
            Release::ExpressionsOnly(rs) => said.push(format!(
                "not released: ReplicaSet {rs} selects by matchExpressions only"
            )),
            Release::No => {}
        }
        if !c.resumed {
            let seconds = self.config.contain.seconds;
            said.push(match (f.host_network, c.deadline, seconds) {
                (true, Some(d), _) => format!("killed now (activeDeadlineSeconds={d})"),
                (false, Some(d), Some(s)) => {
                    format!("the kubelet kills it in {s}s (activeDeadlineSeconds={d})")
                }
                (false, _, None) => "no deadline: kept until a person deletes it".into(),
                (_, None, _) => "its own deadline is sooner: kept".into(),
            });
        }
        let unread = c
            .kept
            .as_ref()
            .filter(|k| !k.unread.is_empty())
            .map(|k| format!(" (could not read: {})", k.unread.join(", ")))
            .unwrap_or_default();
        let configmap = c
            .kept
            .as_ref()
            .map_or_else(|| evidence_name(&f.uid), |k| k.configmap.clone());
        let verb = if dry { "would keep" } else { "kept" };
        said.push(format!(
            "evidence (log tails of {}) {verb} in ConfigMap {configmap}{unread}",
            f.containers.join(", ")
        ));
        said.join("; ")
    }

    /// DRY_RUN: every step the containment would take, and what each guard said.
    fn dry_contain(&mut self) -> Step {
        let c = self.containing();
        let mut steps = Steps::EVIDENCE;
        if !c.facts.host_network {
            steps = steps.with(Steps::ISOLATED);
        }
        if matches!(c.release, Release::Labels { .. }) {
            steps = steps.with(Steps::RELEASED);
        }
        if c.deadline.is_some() {
            steps = steps.with(if c.facts.host_network {
                Steps::KILLED
            } else {
                Steps::DEADLINE
            });
        }
        let (ns, name) = (&self.target.namespace, &self.target.name);
        let reason = format!(
            "DRY_RUN: would contain pod {ns}/{name}: {} ({})",
            self.story(true),
            self.checks.join("; ")
        );
        let audit = self.audit(
            Recorded::DryRunContain,
            self.related(),
            Some(reason.clone()),
        );
        let mut finish = self.finish(OutcomeKind::DryRun, reason, why::DRY_CONTAIN);
        if let Ok(o) = &mut finish.outcome {
            o.steps = steps;
        }
        finish.audit = Some(audit);
        Step::Finish(Box::new(finish))
    }

    /// Contained already, its evidence kept: no write.
    fn already_contained(&mut self) -> Step {
        let f = &self.containing().facts;
        let how = if f.host_network {
            "its deadline has passed: the kubelet kills it".to_string()
        } else {
            format!("isolated by NetworkPolicy {}", policy_name(&f.uid))
        };
        let reason = format!(
            "already contained (labelled {}={}; {how}; evidence in ConfigMap {})",
            contain::CONTAINED_LABEL,
            f.uid,
            evidence_name(&f.uid)
        );
        self.done(OutcomeKind::Contained, reason, why::ALREADY_CONTAINED)
    }

    /// A containment step failed with `e`. Once its patch happened, or may have (`patch` and
    /// its answer was lost), the pod is out of service and it counts (its record is written,
    /// its slot kept); before, the pod is untouched (a NetworkPolicy selects it only once it
    /// carries the label).
    fn failed<E: MayHaveHappened>(&mut self, e: E, patch: bool) -> E {
        let touched = self.containing.as_ref().is_some_and(|c| c.touched);
        if touched || (patch && e.may_have_happened()) {
            self.unfinished = self.kept();
        } else {
            self.untouched();
        }
        e
    }

    /// Nothing was done to the pod: the breaker's ticket and the floor's slot go back.
    fn untouched(&mut self) {
        self.release();
        self.give_back = self.reservation.take();
    }

    /// Held by a guard: not now (503, retry), or never by retrying (`FloorNever`: 200, loud).
    fn held(&mut self, reason: String, by: HeldBy) -> Step {
        // Nothing is removed: the breaker's reservation goes back.
        self.release();
        if self.config.dry_run {
            return self.dry(format!("would hold: {reason}"), why::DRY_HOLD);
        }
        let mut finish = self.refused(Recorded::Held, OutcomeKind::Held(by), reason, by.why());
        if by == HeldBy::FloorNever {
            finish.alarm =
                Some("held for good: the availability floor can never be met; a person must look");
        }
        Step::Finish(Box::new(finish))
    }

    /// A removal a guard refused: its Warning Event says why (the reply only `said`).
    fn refused(
        &self,
        what: Recorded,
        kind: OutcomeKind,
        reason: String,
        said: &'static str,
    ) -> Finish {
        let audit = self.audit(what, self.related(), Some(reason.clone()));
        let mut finish = self.finish(kind, reason, said);
        finish.audit = Some(audit);
        finish
    }

    fn audit(
        &self,
        what: Recorded,
        related: Option<ObjectReference>,
        why: Option<String>,
    ) -> Audit {
        Audit {
            uid: self.decided().uid.clone(),
            what,
            related,
            why,
        }
    }

    fn dry(&self, verdict: String, said: &'static str) -> Step {
        self.done(OutcomeKind::DryRun, format!("DRY_RUN: {verdict}"), said)
    }

    fn done(&self, kind: OutcomeKind, reason: String, said: &'static str) -> Step {
        Step::Finish(Box::new(self.finish(kind, reason, said)))
    }

    /// An outcome about the live pod, nothing recorded (yet): `reason` for the log line and
    /// the Events, `said` (one of `outcome::why`) for the reply.
    fn finish(&self, kind: OutcomeKind, reason: String, said: &'static str) -> Finish {
        Finish::of(Ok(Outcome {
            kind,
            reason,
            why: Why::Said(said),
            pod: Some(self.pod.clone()),
            seen: Some(self.seen.clone()),
            steps: Steps::NONE,
        }))
    }

    fn end(outcome: Result<Outcome, Undecided>) -> Step {
        Step::Finish(Box::new(Finish::of(outcome)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use k8s_openapi::{
        api::core::v1::{
            ContainerState, ContainerStateRunning, ContainerStatus, PodCondition, PodSpec,
            PodStatus,
        },
        apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
    };
    use proptest::prelude::*;

    use super::*;
    use crate::domain::{
        budget::Budget,
        ident::{ContainerId, Namespace, PodName, PodUid},
        identity::PROTECT_ANNOTATION,
    };

    const UID: &str = "0f9a4c1e-1111-2222-3333-444455556666";
    const OTHER_UID: &str = "9a9a4c1e-1111-2222-3333-444455556666";
    const CID: &str = "ee97d9c4186f0123456789abcdef0123456789abcdef0123456789abcdef0123";
    const NOW: &str = "2026-11-30T10:00:00Z";
    const RECORD: &str = "falco-responder-deleted.test";
    /// The removal's answer was lost: it may have happened.
    const LOST: &str = "timeout";

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn at(offset_s: i64) -> Timestamp {
        Timestamp::from_second(ts(NOW).as_second() + offset_s).unwrap()
    }

    /// The live pod `prod/web-0`, created an hour before NOW, running container CID.
    fn pod(uid: &str, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: Some("prod".into()),
                name: Some("web-0".into()),
                uid: Some(uid.into()),
                creation_timestamp: Some(Time(at(-3600))),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node-1".into()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                container_statuses: Some(vec![ContainerStatus {
                    container_id: Some(format!("containerd://{CID}")),
                    ..Default::default()
                }]),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn target(uid: Option<&str>) -> Target {
        Target {
            namespace: Namespace::parse("ns", "prod").unwrap(),
            name: PodName::parse("pod", "web-0").unwrap(),
            container_id: Some(ContainerId::parse("c", &CID[..12]).unwrap().unwrap()),
            uid: uid.map(|u| PodUid::parse("u", u).unwrap()),
        }
    }

    fn event() -> FalcoEvent {
        serde_json::from_value(serde_json::json!({
            "rule": "Terminal shell in container", "priority": "Notice",
            "time": at(-60).to_string(), "output_fields": {}
        }))
        .unwrap()
    }

    fn workload(kind: Kind) -> Workload {
        Workload {
            kind,
            name: "web".into(),
            api_version: "apps/v1".into(),
        }
    }

    /// Every answer the API side could give one event.
    #[derive(Debug, Clone)]
    struct Answers {
        pod: Option<Pod>,
        workload: Workload,
        replicas: Option<Replicas>,
        listed: Vec<Deletion>,
        dry_eviction: Result<(), String>,
        /// Whether a slot of the floor is free, or the reservation's error.
        slot_free: bool,
        reserve_fails: Option<&'static str>,
        removed: Result<Removed, &'static str>,
        ns_protected: bool,
    }

    /// The tests' removal errors: [`LOST`] may have happened, any other is a refusal.
    impl MayHaveHappened for &'static str {
        fn may_have_happened(&self) -> bool {
            *self == LOST
        }
    }

    /// One event's run: the steps asked for, in order, and the end (`None`: the removal
    /// failed and its error passed through).
    #[derive(Debug)]
    struct Run {
        steps: Vec<Step>,
        finish: Option<Finish>,
        /// The record a lost removal's answer left to write.
        lost: Option<BreakerRecord>,
        /// The slot the plan gave back.
        given_back: Option<Reserved>,
    }

    fn drive(rules: &PlanConfig, breaker: &Breaker, target: &Target, answers: &Answers) -> Run {
        drive_named(rules, breaker, target, answers, RECORD)
    }

    /// [`drive`], the breaker's record (the pod's removal) named `record`.
    fn drive_named(
        rules: &PlanConfig,
        breaker: &Breaker,
        target: &Target,
        answers: &Answers,
        record: &str,
    ) -> Run {
        let event = event();
        let mut plan = Plan::new(rules, breaker, target, &event);
        let mut steps = Vec::new();
        let mut step = plan.first();
        let mut lost = None;
        let finish = loop {
            assert!(steps.len() < 10, "the plan does not end: {steps:?}");
            steps.push(step.clone());
            step = match step {
                Step::GetPod { .. } => plan.pod(answers.pod.as_ref(), ts(NOW)),
                Step::ReadNamespace => plan.namespace(answers.ns_protected),
                Step::Resolve => plan.workload(answers.workload.clone()),
                Step::ReadReplicas(_) => plan.replicas(answers.replicas),
                Step::Count => plan.counted(&answers.listed, ts(NOW), record),
                Step::EvictDryRun(_) => plan.dry_evicted(answers.dry_eviction.clone()),
                Step::Reserve(r) => {
                    let slot = answers.slot_free.then(|| Reserved {
                        workload: r.workload.clone(),
                        slot: r.slots - 1,
                    });
                    match plan.reserved(answers.reserve_fails.map_or(Ok(slot), Err)) {
                        Ok(next) => next,
                        Err(_) => break None,
                    }
                }
                // As the cluster layer does: an answer that may hide a removal is lost.
                Step::Remove(_)
                    if answers
                        .removed
                        .as_ref()
                        .is_err_and(|e| e.may_have_happened()) =>
                {
                    lost = plan.lost();
                    break None;
                }
                Step::Remove(_) => match plan.removed(answers.removed.clone()) {
                    Ok(next) => next,
                    Err(_) => break None,
                },
                Step::Finish(f) => {
                    steps.pop();
                    break Some(*f);
                }
                other => panic!("a deletion never asks for {other:?}"),
            };
        };
        let given_back = plan.given_back();
        Run {
            steps,
            finish,
            lost,
            given_back,
        }
    }

    fn outcome(run: &Run) -> Option<&Outcome> {
        run.finish.as_ref().and_then(|f| f.outcome.as_ref().ok())
    }

    fn removals(run: &Run) -> Vec<&Removal> {
        run.steps
            .iter()
            .filter_map(|s| match s {
                Step::Remove(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    /// The order the calls come in; each at most once.
    fn rank(s: &Step) -> usize {
        match s {
            Step::GetPod { .. } => 0,
            Step::ReadNamespace => 1,
            Step::Resolve => 2,
            Step::Count => 3,
            Step::ReadReplicas(_) => 4,
            Step::EvictDryRun(_) => 5,
            Step::Reserve(_) => 6,
            Step::Remove(_) => 7,
            Step::ReadIsolation { .. } => 8,
            Step::ReadEvidence { .. } => 9,
            Step::ReadSelector { .. } => 10,
            Step::Isolate(_) => 11,
            Step::Contain(_) => 12,
            Step::Keep(_) => 13,
            Step::Finish(_) => 14,
        }
    }

    fn kinds() -> Vec<Kind> {
        vec![
            Kind::Deployment,
            Kind::StatefulSet,
            Kind::DaemonSet,
            Kind::Job,
            Kind::Mirror,
            Kind::Standalone,
            Kind::Other("Rollout.argoproj.io".into()),
        ]
    }

    prop_compose! {
        fn any_rules()(
            dry_run in any::<bool>(),
            use_eviction in any::<bool>(),
            skip in prop::sample::subsequence(kinds(), 0..3),
            min in prop::option::of(prop_oneof![
                (0u32..4).prop_map(MinAvailable::Count),
                (0u32..=100).prop_map(MinAvailable::Percent),
            ]),
            // 0 (a force delete) as often as any other grace period.
            grace in prop_oneof![Just(None), Just(Some(0)), (1u32..120).prop_map(Some)],
        ) -> PlanConfig {
            PlanConfig {
                identity: IdentityConfig { grace_period_seconds: grace, trust_protect_annotation: true },
                dry_run,
                skip_owner_kinds: SkipOwnerKinds(skip),
                min_available: min,
                use_eviction,
                contain: ContainConfig::default(),
            }
        }
    }

    prop_compose! {
        fn any_breaker()(
            per_workload in prop::option::of(1u32..4),
            overall in prop::option::of(1u32..6),
        ) -> Breaker {
            let budget = |max, secs| Budget { max, window: Duration::from_secs(secs) };
            Breaker::new(per_workload.map(|m| budget(m, 600)), overall.map(|m| budget(m, 60)))
        }
    }

    prop_compose! {
        fn any_answers()(
            present in prop::bool::weighted(0.9),
            uid in prop::sample::select(vec![UID, OTHER_UID]),
            ready in any::<bool>(),
            protected in prop::bool::weighted(0.1),
            terminating in prop::option::of(0i64..7200),
            kind in prop::sample::select(kinds()),
            replicas in prop::option::of((0u32..5, 0u32..6)),
            // Ages within the breaker's windows mostly, some older than the pod (an hour).
            listed in prop::collection::vec(
                (any::<bool>(), prop_oneof![3 => 0i64..120, 1 => 0i64..7200]),
                0..6,
            ),
            pdb_allows in any::<bool>(),
            removed in 0usize..6,
            ns_protected in prop::bool::weighted(0.1),
            slot_free in prop::bool::weighted(0.7),
            reserve_fails in prop::option::weighted(0.2, Just("forbidden")),
        ) -> Answers {
            let mut p = pod(uid, ready);
            if protected {
                p.metadata.annotations =
                    Some([(PROTECT_ANNOTATION.to_string(), "true".into())].into());
            }
            if let Some(left) = terminating {
                p.metadata.deletion_timestamp = Some(Time(at(left)));
                p.metadata.deletion_grace_period_seconds = Some(7200);
            }
            Answers {
                pod: present.then_some(p),
                workload: workload(kind),
                replicas: replicas.map(|(desired, ready)| Replicas { desired, ready }),
                listed: listed
                    .into_iter()
                    .enumerate()
                    .map(|(i, (ours, ago))| Deletion {
                        key: format!("record-{i}"),
                        workload: Some(if ours { "prod/Deployment/web" } else { "prod/Job/other" }.into()),
                        at: at(-ago),
                    })
                    .collect(),
                dry_eviction: if pdb_allows { Ok(()) } else { Err("web-pdb needs 2".into()) },
                slot_free,
                reserve_fails,
                removed: match removed {
                    0 => Ok(Removed::Done),
                    1 => Ok(Removed::NotFound),
                    2 => Ok(Removed::Conflict),
                    3 => Ok(Removed::Budget("web-pdb needs 2".into())),
                    4 => Err(LOST),
                    _ => Err("forbidden"),
                },
                ns_protected,
            }
        }
    }

    fn any_target() -> impl Strategy<Value = Target> {
        prop::option::of(prop::sample::select(vec![UID, OTHER_UID])).prop_map(|uid| target(uid))
    }

    proptest! {
        #[test]
        fn removes_only_the_live_pod_the_event_names(
            rules in any_rules(), breaker in any_breaker(), t in any_target(), a in any_answers(),
        ) {
            let run = drive(&rules, &breaker, &t, &a);
            for r in removals(&run) {
                let live = a.pod.as_ref().expect("removed a pod the API did not return");
                prop_assert_eq!(Some(r.uid.as_str()), live.metadata.uid.as_deref());
                if let Some(uid) = &t.uid {
                    prop_assert_eq!(r.uid.as_str(), uid.as_str());
                }
                let protected = live.metadata.annotations.is_some();
                prop_assert!(!protected, "removed a protected pod");
                prop_assert!(!a.ns_protected, "removed a pod of a protected namespace");
                prop_assert!(run.steps.contains(&Step::ReadNamespace));
            }
        }

        #[test]
        fn the_reply_names_nothing_live(
            rules in any_rules(), breaker in any_breaker(), t in any_target(), a in any_answers(),
        ) {
            let run = drive(&rules, &breaker, &t, &a);
            if let Some(o) = outcome(&run) {
                // Every outcome of the plan is about live objects: a fixed sentence, no more.
                prop_assert!(matches!(o.why, Why::Said(_)), "{:?}", o);
                let public = o.public_reason();
                for live in [UID, OTHER_UID, "node-1", "web", "2026", "record-", "3 ready", "/"] {
                    prop_assert!(!public.contains(live), "{live:?} in {public:?}");
                }
            }
        }

        #[test]
        fn dry_run_never_removes_nor_reserves(
            mut rules in any_rules(), breaker in any_breaker(), t in any_target(), a in any_answers(),
        ) {
            rules.dry_run = true;
            let run = drive(&rules, &breaker, &t, &a);
            prop_assert!(removals(&run).is_empty(), "{:?}", run.steps);
            prop_assert_eq!(breaker.reserved(), 0);
            let f = run.finish.as_ref().unwrap();
            prop_assert!(f.breaker_record.is_none() && f.alarm.is_none());
            if let Some(audit) = &f.audit {
                prop_assert_eq!(audit.what, Recorded::DryRun);
            }
        }

        #[test]
        fn a_hold_or_an_open_breaker_never_removes(
            rules in any_rules(), breaker in any_breaker(), t in any_target(), a in any_answers(),
        ) {
            // The breaker's verdict on the same count, asked of a twin with the same budgets.
            let twin = Breaker::new(breaker.per_workload, breaker.overall);
            let run = drive(&rules, &breaker, &t, &a);
            let asked = |rank_of: usize| run.steps.iter().any(|s| rank(s) == rank_of);
            // The breaker is asked first: open, the floor is not even read.
            if asked(3) {
                let key = budget::workload_key("prod", &a.workload);
                if twin.admit(&a.listed, key.as_deref(), ts(NOW), "x", false).is_err() {
                    prop_assert!(removals(&run).is_empty() && !asked(4), "{:?}", run.steps);
                }
            }
            if asked(4) {
                let min = rules.min_available.unwrap();
                let ready = guards::pod_is_ready(a.pod.as_ref().unwrap());
                if !matches!(guards::floor(&a.workload, min, a.replicas, ready), Ruling::Pass) {
                    prop_assert!(removals(&run).is_empty(), "{:?}", run.steps);
                    // Held by the floor: the breaker's reservation went back.
                    prop_assert_eq!(breaker.reserved(), 0);
                }
            }
            if asked(5) && a.dry_eviction.is_err() {
                prop_assert!(removals(&run).is_empty());
            }
            let refused = |k| matches!(k, OutcomeKind::BreakerOpen(_) | OutcomeKind::Held(HeldBy::Floor | HeldBy::FloorNever));
            if outcome(&run).is_some_and(|o| refused(o.kind)) {
                prop_assert!(removals(&run).is_empty(), "{:?}", run.steps);
            }
        }

        #[test]
        fn the_removals_answer_decides_the_outcome_and_the_ticket(
            rules in any_rules(), breaker in any_breaker(), t in any_target(), a in any_answers(),
        ) {
            let run = drive(&rules, &breaker, &t, &a);
            let removed = !removals(&run).is_empty();
            let lost = removed && a.removed == Err(LOST);
            let counted = run.steps.contains(&Step::Count);
            let made = removed && a.removed == Ok(Removed::Done);
            // Reserved only by a removal that happened or may have (its answer lost); every
            // other path gave it back.
            prop_assert_eq!(breaker.reserved(), usize::from((made || lost) && counted));
            prop_assert_eq!(run.lost.is_some(), lost && counted);
            if !removed {
                return Ok(());
            }
            let Some(f) = &run.finish else {
                prop_assert!(a.removed.is_err());
                return Ok(());
            };
            let o = f.outcome.as_ref().unwrap();
            match &a.removed {
                Ok(Removed::Done) => {
                    prop_assert!(matches!(o.kind, OutcomeKind::Deleted | OutcomeKind::Terminating));
                    let record = f.breaker_record.as_ref().map(|r| r.name.as_str());
                    prop_assert_eq!(record, counted.then_some(RECORD));
                    let what = f.audit.as_ref().unwrap().what;
                    prop_assert!(matches!(what, Recorded::Deleted | Recorded::GraceShortened));
                }
                Ok(Removed::NotFound) => prop_assert_eq!(o.kind, OutcomeKind::Gone),
                Ok(Removed::Conflict) => prop_assert_eq!(o.kind, OutcomeKind::Stale),
                Ok(Removed::Budget(_)) => {
                    prop_assert_eq!(o.kind, OutcomeKind::Held(HeldBy::Pdb));
                    prop_assert!(HeldBy::Pdb.retry_helps());
                    prop_assert_eq!(f.audit.as_ref().unwrap().what, Recorded::Held);
                }
                Err(_) => unreachable!("no finish after a failed removal"),
            }
            if !matches!(a.removed, Ok(Removed::Done)) {
                prop_assert!(f.breaker_record.is_none());
            }
        }

        #[test]
        fn every_removal_passes_the_kind_guards_and_the_breaker_but_shortening_not_the_floor(
            rules in any_rules(), breaker in any_breaker(), t in any_target(), a in any_answers(),
        ) {
            let run = drive(&rules, &breaker, &t, &a);
            let skipped = a.workload.kind == Kind::Mirror
                || rules.skip_owner_kinds.contains(&a.workload.kind);
            let terminating = a.pod.as_ref().is_some_and(|p| p.metadata.deletion_timestamp.is_some());
            for r in removals(&run) {
                prop_assert!(!skipped, "removed a pod its kind skips: {:?}", run.steps);
                prop_assert!(run.steps.contains(&Step::Resolve));
                prop_assert!(!breaker.enabled() || run.steps.contains(&Step::Count), "{:?}", run.steps);
                // Never a force delete of a StatefulSet pod, new or shortened.
                if a.workload.kind == Kind::StatefulSet {
                    prop_assert_ne!(r.grace, Some(0), "{:?}", run.steps);
                }
            }
            if terminating {
                prop_assert!(!run.steps.iter().any(|s| matches!(s, Step::ReadReplicas(_))), "{:?}", run.steps);
            }
        }

        #[test]
        fn a_ready_pods_deletion_under_the_floor_holds_a_slot_and_gives_back_only_what_did_not_happen(
            rules in any_rules(), breaker in any_breaker(), t in any_target(), a in any_answers(),
        ) {
            let run = drive(&rules, &breaker, &t, &a);
            let reserve = run.steps.iter().find_map(|s| match s {
                Step::Reserve(r) => Some(r.clone()),
                _ => None,
            });
            let pod = a.pod.as_ref();
            let ready = pod.is_some_and(guards::pod_is_ready);
            let deletes = !removals(&run).is_empty()
                && pod.is_some_and(|p| p.metadata.deletion_timestamp.is_none());
            // Every deletion of a ready pod of a workload with a replica count, under
            // MIN_AVAILABLE and not in a dry run, holds a slot first.
            let key = budget::workload_key("prod", &a.workload);
            let floored = rules
                .min_available
                .zip(a.replicas)
                .is_some_and(|(min, r)| min.floor(r.desired) > 0);
            if deletes && ready && floored && key.is_some() {
                let r = reserve.as_ref().expect("removed without a slot");
                let min = rules.min_available.unwrap();
                prop_assert_eq!(r.slots, guards::slots(min, a.replicas.unwrap()));
                prop_assert!(r.slots >= 1);
                prop_assert_eq!(Some(&r.workload), key.as_ref());
            }
            if reserve.is_some() {
                prop_assert!(!rules.dry_run && ready);
            }
            // The records failed: the error passes on, nothing removed, the ticket given back.
            if reserve.is_some() && a.reserve_fails.is_some() {
                prop_assert!(removals(&run).is_empty() && run.finish.is_none());
                prop_assert_eq!(breaker.reserved(), 0);
                return Ok(());
            }
            // No slot: held, nothing removed, the breaker's ticket given back.
            if reserve.is_some() && !a.slot_free {
                prop_assert!(removals(&run).is_empty());
                prop_assert_eq!(outcome(&run).unwrap().kind, OutcomeKind::Held(HeldBy::Floor));
                prop_assert_eq!(breaker.reserved(), 0);
            }
            // Given back exactly when the removal did not happen and its answer was not lost.
            let held = reserve.is_some() && a.slot_free && !removals(&run).is_empty();
            let happened_or_lost = matches!(a.removed, Ok(Removed::Done) | Err(LOST));
            prop_assert_eq!(run.given_back.is_some(), held && !happened_or_lost);
        }

        #[test]
        fn mirror_pods_and_skipped_kinds_end_before_any_workload_get(
            rules in any_rules(), breaker in any_breaker(), t in any_target(), a in any_answers(),
        ) {
            let run = drive(&rules, &breaker, &t, &a);
            let skipped = a.workload.kind == Kind::Mirror
                || rules.skip_owner_kinds.contains(&a.workload.kind);
            if skipped && run.steps.contains(&Step::Resolve) {
                prop_assert_eq!(run.steps.last(), Some(&Step::Resolve));
                let o = outcome(&run).unwrap();
                let expected = if rules.dry_run { OutcomeKind::DryRun } else { OutcomeKind::Skipped };
                prop_assert_eq!(o.kind, expected);
                prop_assert_eq!(breaker.reserved(), 0);
            }
        }

        #[test]
        fn the_calls_come_in_order_and_none_twice(
            rules in any_rules(), breaker in any_breaker(), t in any_target(), a in any_answers(),
        ) {
            let run = drive(&rules, &breaker, &t, &a);
            prop_assert_eq!(
                run.steps.first(),
                Some(&Step::GetPod { with_count: breaker.enabled() })
            );
            let ranks: Vec<usize> = run.steps.iter().map(rank).collect();
            prop_assert!(ranks.windows(2).all(|w| w[0] < w[1]), "{:?}", run.steps);
            // The count handed in only when it was read alongside the GET.
            prop_assert!(!run.steps.contains(&Step::Count) || breaker.enabled());
            // The workload is read only under MIN_AVAILABLE, the dry-run eviction only in a
            // dry run under USE_EVICTION.
            for s in &run.steps {
                match s {
                    Step::ReadReplicas(_) => prop_assert!(rules.min_available.is_some()),
                    Step::EvictDryRun(_) => prop_assert!(rules.dry_run && rules.use_eviction),
                    _ => {}
                }
            }
        }
    }

    fn rules() -> PlanConfig {
        PlanConfig {
            min_available: Some(MinAvailable::Count(1)),
            ..PlanConfig::default()
        }
    }

    fn answers() -> Answers {
        Answers {
            pod: Some(pod(UID, true)),
            workload: workload(Kind::Deployment),
            replicas: Some(Replicas {
                desired: 3,
                ready: 3,
            }),
            listed: Vec::new(),
            dry_eviction: Ok(()),
            slot_free: true,
            reserve_fails: None,
            removed: Ok(Removed::Done),
            ns_protected: false,
        }
    }

    #[test]
    fn a_guarded_deletion_asks_every_fact_once_then_records_it() {
        let breaker = Breaker::new(None, Some("20/1m".parse().unwrap()));
        let run = drive(&rules(), &breaker, &target(Some(UID)), &answers());
        let removal = Removal {
            via: Via::Delete,
            uid: UID.into(),
            grace: None,
        };
        assert_eq!(
            run.steps,
            [
                Step::GetPod { with_count: true },
                Step::ReadNamespace,
                Step::Resolve,
                Step::Count,
                Step::ReadReplicas(workload(Kind::Deployment)),
                Step::Reserve(Reserve {
                    workload: "prod/Deployment/web".into(),
                    slots: 2,
                }),
                Step::Remove(removal),
            ]
        );
        let f = run.finish.unwrap();
        let o = f.outcome.unwrap();
        assert_eq!(o.kind, OutcomeKind::Deleted);
        assert_eq!(o.pod.unwrap().workload.as_deref(), Some("Deployment/web"));
        let record = f.breaker_record.unwrap();
        assert_eq!(record.name, RECORD);
        assert_eq!(record.workload_key.as_deref(), Some("prod/Deployment/web"));
        assert_eq!(f.audit.unwrap().what, Recorded::Deleted);
        assert_eq!(breaker.reserved(), 1);
    }

    #[test]
    fn concurrent_deletions_beyond_the_floors_slots_are_held() {
        let breaker = Breaker::new(None, Some("20/1m".parse().unwrap()));
        let r = PlanConfig {
            min_available: Some(MinAvailable::Count(2)),
            ..rules()
        };
        // 3 ready, floor 2: one slot.
        let run = drive(&r, &breaker, &target(Some(UID)), &answers());
        assert_eq!(
            run.steps[5..],
            [
                Step::Reserve(Reserve {
                    workload: "prod/Deployment/web".into(),
                    slots: 1
                }),
                Step::Remove(Removal {
                    via: Via::Delete,
                    uid: UID.into(),
                    grace: None
                }),
            ]
        );
        assert_eq!(
            run.given_back, None,
            "a deletion that happened keeps its slot"
        );
        // The same count, the slot taken by a concurrent deletion: held, retry.
        let breaker = Breaker::new(None, Some("20/1m".parse().unwrap()));
        let mut a = answers();
        a.slot_free = false;
        let run = drive(&r, &breaker, &target(Some(UID)), &a);
        let f = run.finish.unwrap();
        let o = f.outcome.unwrap();
        assert_eq!(o.kind, OutcomeKind::Held(HeldBy::Floor));
        assert!(o.reason.contains("lets 1 deletion(s)"), "{}", o.reason);
        assert!(HeldBy::Floor.retry_helps());
        assert_eq!(f.audit.unwrap().what, Recorded::Held);
        assert_eq!(breaker.reserved(), 0, "the breaker's ticket is given back");
        // A pod that is not ready takes no slot: the ready count does not change.
        let mut a = answers();
        a.pod = Some(pod(UID, false));
        let run = drive(&r, &breaker, &target(Some(UID)), &a);
        assert!(!run.steps.iter().any(|s| matches!(s, Step::Reserve(_))));
        // Nor does a dry run write one.
        let dry = PlanConfig {
            dry_run: true,
            ..r.clone()
        };
        let run = drive(&dry, &breaker, &target(Some(UID)), &answers());
        assert!(!run.steps.iter().any(|s| matches!(s, Step::Reserve(_))));
    }

    #[test]
    fn records_that_fail_pass_their_error_on_and_give_the_breakers_ticket_back() {
        let breaker = Breaker::new(None, Some("20/1m".parse().unwrap()));
        let mut a = answers();
        a.reserve_fails = Some("forbidden");
        let run = drive(&rules(), &breaker, &target(None), &a);
        assert!(
            matches!(run.steps.last(), Some(Step::Reserve(_))),
            "{:?}",
            run.steps
        );
        assert!(run.finish.is_none());
        assert_eq!(breaker.reserved(), 0);
    }

    #[test]
    fn a_slot_is_given_back_only_when_the_removal_surely_did_not_happen() {
        for (removed, back) in [
            (Ok(Removed::Done), false),
            (Err(LOST), false),
            (Err("forbidden"), true),
            (Ok(Removed::NotFound), true),
            (Ok(Removed::Conflict), true),
            (Ok(Removed::Budget("pdb".into())), true),
        ] {
            let mut a = answers();
            a.removed = removed.clone();
            let run = drive(&rules(), &Breaker::new(None, None), &target(None), &a);
            let expected = back.then(|| Reserved {
                workload: "prod/Deployment/web".into(),
                slot: 1,
            });
            assert_eq!(run.given_back, expected, "{removed:?}");
        }
    }

    #[test]
    fn a_failed_removal_gives_the_reservation_back_and_passes_its_error_on() {
        let breaker = Breaker::new(None, Some("20/1m".parse().unwrap()));
        let mut a = answers();
        a.removed = Err("forbidden");
        let run = drive(&rules(), &breaker, &target(None), &a);
        assert!(run.finish.is_none());
        assert_eq!(breaker.reserved(), 0);
    }

    #[test]
    fn a_lost_answer_keeps_the_reservation_and_a_retry_counts_it_once() {
        let breaker = Breaker::new(Some("2/10m".parse().unwrap()), None);
        let mut a = answers();
        a.removed = Err(LOST);
        let run = drive(&rules(), &breaker, &target(None), &a);
        assert!(run.finish.is_none());
        let record = run.lost.unwrap();
        assert_eq!(record.name, RECORD);
        assert_eq!(record.workload_key.as_deref(), Some("prod/Deployment/web"));
        assert_eq!(breaker.reserved(), 1);
        // The retry finds the same pod alive: its removal is the same one, under the same name.
        let run = drive(&rules(), &breaker, &target(None), &answers());
        assert_eq!(run.finish.unwrap().breaker_record.unwrap().name, RECORD);
        assert_eq!(breaker.reserved(), 1);
        // Once its record is listed too, it still counts once: a second pod fits the budget of 2.
        let mut a = answers();
        a.listed = vec![Deletion {
            key: RECORD.into(),
            workload: Some("prod/Deployment/web".into()),
            at: at(-5),
        }];
        let other = drive_named(
            &rules(),
            &breaker,
            &target(None),
            &a,
            "falco-responder-deleted.other",
        );
        assert_eq!(outcome(&other).unwrap().kind, OutcomeKind::Deleted);
        // ... and the third is refused.
        let third = drive_named(
            &rules(),
            &breaker,
            &target(None),
            &a,
            "falco-responder-deleted.third",
        );
        assert_eq!(
            outcome(&third).unwrap().kind,
            OutcomeKind::BreakerOpen("Deployment")
        );
    }

    #[test]
    fn a_retry_that_does_not_remove_leaves_the_lost_attempt_counted() {
        let breaker = Breaker::new(Some("2/10m".parse().unwrap()), None);
        let mut a = answers();
        a.removed = Err(LOST);
        drive(&rules(), &breaker, &target(None), &a);
        // The retry's removal is refused (403): the lost attempt may still have happened.
        a.removed = Err("forbidden");
        drive(&rules(), &breaker, &target(None), &a);
        assert_eq!(breaker.reserved(), 1);
    }

    #[test]
    fn a_spent_overall_budget_answers_from_memory_and_looks_again_once_per_period() {
        let breaker = Breaker::new(None, Some("2/1m".parse().unwrap()));
        let mut a = answers();
        a.listed = [-50, -10]
            .into_iter()
            .enumerate()
            .map(|(i, ago)| Deletion {
                key: format!("r{i}"),
                workload: None,
                at: at(ago),
            })
            .collect();
        let run = drive(&rules(), &breaker, &target(None), &a);
        assert_eq!(
            outcome(&run).unwrap().kind,
            OutcomeKind::BreakerOpen("Deployment")
        );
        let (r, e, t) = (rules(), event(), target(None));
        let start = |secs: i64| Plan::new(&r, &breaker, &t, &e).start(at(secs));
        let from_memory = |s: &Step| {
            matches!(s, Step::Finish(f) if f.outcome.as_ref().unwrap().kind
                == OutcomeKind::BreakerOpen(UNRESOLVED) && f.audit.is_none())
        };
        // Within the period: no API call.
        assert!(from_memory(&start(1)));
        assert!(from_memory(&start(4)));
        // After it, one event looks (the GET and the count); the others keep the answer.
        assert_eq!(start(6), Step::GetPod { with_count: true });
        assert!(from_memory(&start(7)));
        // Never past the moment the oldest counted deletion leaves the window (-50 + 60).
        assert_eq!(start(10), Step::GetPod { with_count: true });
        assert_eq!(start(11), Step::GetPod { with_count: true });
        // DRY_RUN never answers from memory.
        let dry = PlanConfig {
            dry_run: true,
            ..rules()
        };
        let run = drive(&rules(), &breaker, &target(None), &a);
        assert!(outcome(&run).is_some());
        assert_eq!(
            Plan::new(&dry, &breaker, &t, &e).start(at(1)),
            Step::GetPod { with_count: true }
        );
    }

    #[test]
    fn a_reservation_given_back_forgets_the_spent_budget() {
        let breaker = Breaker::new(None, Some("1/1m".parse().unwrap()));
        let mut gone = answers();
        gone.removed = Ok(Removed::NotFound);
        // A deletion in flight holds the only slot; another finds the budget spent ...
        let held = breaker
            .admit(&[], None, at(0), "in-flight", true)
            .unwrap()
            .unwrap();
        let run = drive(&rules(), &breaker, &target(None), &answers());
        assert!(matches!(
            outcome(&run).unwrap().kind,
            OutcomeKind::BreakerOpen(_)
        ));
        assert!(breaker.known_open(at(1)).is_some());
        // ... until the one in flight did not happen: then the slot is free again at once.
        breaker.release(held);
        assert!(breaker.known_open(at(1)).is_none());
        let run = drive(&rules(), &breaker, &target(None), &gone);
        assert_eq!(outcome(&run).unwrap().kind, OutcomeKind::Gone);
    }

    #[test]
    fn dry_run_says_what_each_guard_said() {
        let r = PlanConfig {
            dry_run: true,
            use_eviction: true,
            ..rules()
        };
        let breaker = Breaker::new(None, Some("20/1m".parse().unwrap()));
        let run = drive(&r, &breaker, &target(None), &answers());
        let o = run.finish.unwrap().outcome.unwrap();
        assert_eq!(
            o.reason,
            "DRY_RUN: would evict pod prod/web-0 (workload Deployment/web; deletion breaker closed; \
             MIN_AVAILABLE=1 holds (3 of 3 ready); the PodDisruptionBudgets allow an eviction)"
        );
        let mut a = answers();
        a.dry_eviction = Err("web-pdb needs 2".into());
        let run = drive(&r, &breaker, &target(None), &a);
        let o = run.finish.unwrap().outcome.unwrap();
        assert_eq!(
            o.reason,
            "DRY_RUN: would hold: eviction refused by a PodDisruptionBudget: web-pdb needs 2"
        );
    }

    #[test]
    fn refusals_no_retry_can_change_are_loud() {
        // 2 desired, floor 2: never met.
        let mut a = answers();
        a.replicas = Some(Replicas {
            desired: 2,
            ready: 2,
        });
        let r = PlanConfig {
            min_available: Some(MinAvailable::Count(2)),
            ..rules()
        };
        let run = drive(&r, &Breaker::new(None, None), &target(None), &a);
        let f = run.finish.unwrap();
        assert!(f.alarm.unwrap().starts_with("held for good"));
        assert_eq!(f.audit.unwrap().what, Recorded::Held);
        let breaker = Breaker::new(None, Some("1/1m".parse().unwrap()));
        let mut a = answers();
        a.listed = vec![Deletion {
            key: "r".into(),
            workload: None,
            at: at(-1),
        }];
        let run = drive(&rules(), &breaker, &target(None), &a);
        let f = run.finish.unwrap();
        assert!(f.alarm.unwrap().starts_with("deletion breaker open"));
        assert_eq!(
            f.outcome.unwrap().kind,
            OutcomeKind::BreakerOpen("Deployment")
        );
    }

    /// `prod/web-0` terminating with an hour of grace left.
    fn terminating() -> Pod {
        let mut p = pod(UID, false);
        p.metadata.deletion_timestamp = Some(Time(at(3600)));
        p.metadata.deletion_grace_period_seconds = Some(3600);
        p
    }

    #[test]
    fn shortening_a_grace_period_passes_the_kind_guards_and_the_breaker_not_the_floor() {
        let r = PlanConfig {
            identity: IdentityConfig {
                grace_period_seconds: Some(5),
                ..IdentityConfig::default()
            },
            ..rules()
        };
        let mut a = answers();
        a.pod = Some(terminating());
        let breaker = Breaker::new(None, Some("20/1m".parse().unwrap()));
        let run = drive(&r, &breaker, &target(Some(UID)), &a);
        let removal = Removal {
            via: Via::Delete,
            uid: UID.into(),
            grace: Some(5),
        };
        assert_eq!(
            run.steps,
            [
                Step::GetPod { with_count: true },
                Step::ReadNamespace,
                Step::Resolve,
                Step::Count,
                Step::Remove(removal),
            ]
        );
        let f = run.finish.unwrap();
        assert_eq!(f.outcome.unwrap().kind, OutcomeKind::Terminating);
        assert!(f.breaker_record.is_some());
        assert_eq!(breaker.reserved(), 1);

        // The record of this pod's own removal (named after its uid) is the same removal: a
        // budget it fills admits the shortening; a record of another pod does not.
        let breaker = Breaker::new(None, Some("1/1m".parse().unwrap()));
        a.listed = vec![Deletion {
            key: "ours".into(),
            workload: Some("prod/Deployment/web".into()),
            at: at(-30),
        }];
        let run = drive_named(&r, &breaker, &target(Some(UID)), &a, "ours");
        let f = run.finish.unwrap();
        assert_eq!(f.outcome.unwrap().kind, OutcomeKind::Terminating);
        assert!(f.breaker_record.is_some());
        let breaker = Breaker::new(None, Some("1/1m".parse().unwrap()));
        let run = drive_named(&r, &breaker, &target(Some(UID)), &a, "another");
        let kind = outcome(&run).unwrap().kind;
        assert!(matches!(kind, OutcomeKind::BreakerOpen(_)), "{kind:?}");
        assert!(removals(&run).is_empty());

        // Listed in SKIP_OWNER_KINDS: skipped, not shortened.
        let skip = PlanConfig {
            skip_owner_kinds: "Deployment".parse().unwrap(),
            ..r.clone()
        };
        let run = drive(&skip, &Breaker::new(None, None), &target(Some(UID)), &a);
        assert!(removals(&run).is_empty());
        assert_eq!(outcome(&run).unwrap().kind, OutcomeKind::Skipped);
    }

    #[test]
    fn a_statefulset_pod_is_never_force_deleted() {
        let r = PlanConfig {
            identity: IdentityConfig {
                grace_period_seconds: Some(0),
                ..IdentityConfig::default()
            },
            min_available: None,
            ..rules()
        };
        for p in [pod(UID, true), terminating()] {
            let mut a = answers();
            a.pod = Some(p);
            a.workload = workload(Kind::StatefulSet);
            let run = drive(&r, &Breaker::new(None, None), &target(Some(UID)), &a);
            assert_eq!(removals(&run)[0].grace, Some(STATEFULSET_MIN_GRACE));
            let reason = outcome(&run).unwrap().reason.clone();
            assert!(reason.contains("never force-deleted"), "{reason}");
            // Any other kind gets the force delete ALLOW_FORCE_DELETE allowed.
            a.workload = workload(Kind::Deployment);
            let run = drive(&r, &Breaker::new(None, None), &target(Some(UID)), &a);
            assert_eq!(removals(&run)[0].grace, Some(0));
        }
    }

    #[test]
    fn a_foreign_container_is_skipped_with_a_warning_event_and_nothing_else() {
        let breaker = Breaker::new(None, Some("20/1m".parse().unwrap()));
        let mut t = target(Some(UID));
        t.container_id = Some(ContainerId::parse("c", "0123456789ab").unwrap().unwrap());
        let mut a = answers();
        let st = &mut a.pod.as_mut().unwrap().status.as_mut().unwrap();
        st.container_statuses.as_mut().unwrap()[0].state = Some(ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(Time(at(-3500))),
            }),
            ..Default::default()
        });
        // The event is a minute old (`event()`): beyond what the kubelet's lag explains.
        let (rules, e) = (rules(), event());
        let mut plan = Plan::new(&rules, &breaker, &t, &e);
        plan.first();
        let now = Timestamp::from_second(at(-60).as_second() + 3600).unwrap();
        let Step::Finish(f) = plan.pod(a.pod.as_ref(), now) else {
            panic!("a foreign container must end the plan");
        };
        let o = f.outcome.as_ref().unwrap();
        assert_eq!(o.kind, OutcomeKind::Skipped);
        let audit = f.audit.unwrap();
        assert_eq!((audit.what, audit.uid.as_str()), (Recorded::Foreign, UID));
        assert!(audit.why.unwrap().contains("not the pod's"));
        assert!(f.breaker_record.is_none() && f.alarm.is_none());
        assert_eq!(breaker.reserved(), 0);
    }

    #[test]
    #[should_panic(expected = "out of order")]
    fn an_answer_out_of_order_is_a_bug() {
        let (rules, breaker, t, e) = (rules(), Breaker::new(None, None), target(None), event());
        let mut plan = Plan::new(&rules, &breaker, &t, &e);
        plan.first();
        plan.workload(workload(Kind::Deployment));
    }

    /// Containment: which steps for which pod, in which order.
    mod containment {
        use k8s_openapi::{
            api::apps::v1::ReplicaSetSpec,
            apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference},
        };

        use super::*;
        use crate::domain::contain::{Action, Actions, CONTAINED_LABEL};

        const RS_UID: &str = "aaaa4c1e-1111-2222-3333-444455556666";
        /// The pod started ten minutes before NOW.
        const STARTED_S_AGO: i64 = 600;

        fn config(seconds: Option<u32>) -> PlanConfig {
            PlanConfig {
                contain: ContainConfig {
                    actions: Actions {
                        default: Action::Contain,
                        ..Actions::default()
                    },
                    seconds,
                    ..ContainConfig::default()
                },
                ..PlanConfig::default()
            }
        }

        /// A Deployment's pod: labelled as its ReplicaSet selects, owned by it, running.
        fn deployments_pod(uid: &str) -> Pod {
            let mut p = pod(uid, true);
            p.metadata.labels = Some(
                [
                    ("app".to_string(), "web".to_string()),
                    ("pod-template-hash".into(), "7d9f".into()),
                ]
                .into(),
            );
            p.metadata.owner_references = Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "ReplicaSet".into(),
                name: "web-7d9f".into(),
                uid: RS_UID.into(),
                controller: Some(true),
                ..Default::default()
            }]);
            let spec = p.spec.as_mut().unwrap();
            spec.containers = vec![k8s_openapi::api::core::v1::Container {
                name: "c".into(),
                ..Default::default()
            }];
            p.status.as_mut().unwrap().start_time = Some(Time(at(-STARTED_S_AGO)));
            p
        }

        fn replicaset() -> ReplicaSet {
            ReplicaSet {
                metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                    name: Some("web-7d9f".into()),
                    uid: Some(RS_UID.into()),
                    ..Default::default()
                },
                spec: Some(ReplicaSetSpec {
                    selector: LabelSelector {
                        match_labels: Some(
                            [
                                ("app".to_string(), "web".to_string()),
                                ("pod-template-hash".into(), "7d9f".into()),
                            ]
                            .into(),
                        ),
                        match_expressions: None,
                    },
                    ..Default::default()
                }),
                status: None,
            }
        }

        /// The cluster a containment meets.
        #[derive(Debug, Clone)]
        struct World {
            pod: Option<Pod>,
            workload: Workload,
            rs: Option<ReplicaSet>,
            /// A NetworkPolicy under our name already (a 409 on create, found on a GET).
            policy: Option<NetworkPolicy>,
            evidence_exists: bool,
            isolate: Result<(), &'static str>,
            patched: Result<Patched, &'static str>,
            kept: Result<(), &'static str>,
            replicas: Option<Replicas>,
        }

        fn world() -> World {
            World {
                pod: Some(deployments_pod(UID)),
                workload: workload(Kind::Deployment),
                rs: Some(replicaset()),
                policy: None,
                evidence_exists: false,
                isolate: Ok(()),
                patched: Ok(Patched::Done),
                kept: Ok(()),
                replicas: Some(Replicas {
                    desired: 3,
                    ready: 3,
                }),
            }
        }

        struct Contained {
            steps: Vec<Step>,
            finish: Option<Finish>,
            unfinished: Option<BreakerRecord>,
            given_back: Option<Reserved>,
        }

        impl Contained {
            fn outcome(&self) -> Option<&Outcome> {
                self.finish.as_ref().and_then(|f| f.outcome.as_ref().ok())
            }

            fn writes(&self) -> Vec<&Step> {
                self.steps
                    .iter()
                    .filter(|s| matches!(s, Step::Isolate(_) | Step::Contain(_) | Step::Keep(_)))
                    .collect()
            }

            fn patch(&self) -> Option<&serde_json::Value> {
                self.steps.iter().find_map(|s| match s {
                    Step::Contain(p) => Some(&p.patch),
                    _ => None,
                })
            }

            fn kinds(&self) -> Vec<&'static str> {
                self.steps
                    .iter()
                    .map(|s| match s {
                        Step::GetPod { .. } => "get",
                        Step::ReadNamespace => "namespace",
                        Step::Resolve => "resolve",
                        Step::Count => "count",
                        Step::ReadReplicas(_) => "replicas",
                        Step::Reserve(_) => "reserve",
                        Step::ReadIsolation { .. } => "read-policy",
                        Step::ReadEvidence { .. } => "read-evidence",
                        Step::ReadSelector { .. } => "read-replicaset",
                        Step::Isolate(_) => "isolate",
                        Step::Contain(_) => "patch",
                        Step::Keep(_) => "evidence",
                        other => panic!("a containment never asks for {other:?}"),
                    })
                    .collect()
            }
        }

        fn contain(config: &PlanConfig, breaker: &Breaker, t: &Target, w: &World) -> Contained {
            let event = event();
            let mut plan = Plan::new(config, breaker, t, &event);
            let mut steps = Vec::new();
            let mut step = plan.first();
            let finish = loop {
                assert!(steps.len() < 16, "the plan does not end: {steps:?}");
                if let Step::Finish(f) = step {
                    break Some(*f);
                }
                steps.push(step.clone());
                let next = match step {
                    Step::GetPod { .. } => Ok(plan.pod(w.pod.as_ref(), ts(NOW))),
                    Step::ReadNamespace => Ok(plan.namespace(false)),
                    Step::Resolve => Ok(plan.workload(w.workload.clone())),
                    Step::Count => Ok(plan.counted(&[], ts(NOW), RECORD)),
                    Step::ReadReplicas(_) => Ok(plan.replicas(w.replicas)),
                    Step::Reserve(r) => plan.reserved::<&str>(Ok(Some(Reserved {
                        workload: r.workload.clone(),
                        slot: 0,
                    }))),
                    Step::ReadIsolation { .. } => Ok(plan.isolation(w.policy.as_ref())),
                    Step::ReadEvidence { .. } => Ok(plan.evidence_found(w.evidence_exists)),
                    Step::ReadSelector { .. } => Ok(plan.selector(w.rs.as_ref())),
                    Step::Isolate(_) => plan.isolated(w.isolate.map(|()| match &w.policy {
                        Some(np) => Isolated::Exists(Box::new(np.clone())),
                        None => Isolated::Created,
                    })),
                    Step::Contain(_) => plan.contained(w.patched),
                    Step::Keep(e) => plan.evidence_kept(w.kept.map(|()| Kept {
                        configmap: format!("fr/{}", evidence_name(&e.uid)),
                        unread: vec![],
                    })),
                    other => panic!("a containment never asks for {other:?}"),
                };
                match next {
                    Ok(s) => step = s,
                    Err(_) => break None,
                }
            };
            Contained {
                steps,
                finish,
                unfinished: plan.unfinished(),
                given_back: plan.given_back(),
            }
        }

        fn off() -> Breaker {
            Breaker::new(None, None)
        }

        #[test]
        fn a_deployments_pod_is_isolated_then_labelled_and_released_in_one_patch_then_kept() {
            let run = contain(&config(Some(3600)), &off(), &target(None), &world());
            assert_eq!(
                run.kinds(),
                [
                    "get",
                    "namespace",
                    "resolve",
                    "read-replicaset",
                    "isolate",
                    "patch",
                    "evidence"
                ]
            );
            let o = run.outcome().unwrap();
            assert_eq!(o.kind, OutcomeKind::Contained);
            assert_eq!(
                o.steps.names(),
                ["isolated", "released", "evidence", "deadline"]
            );
            let p = run.patch().unwrap();
            assert_eq!(p[0]["op"], "test");
            assert_eq!(p[0]["value"], UID);
            let removed: Vec<&str> = p
                .as_array()
                .unwrap()
                .iter()
                .filter(|o| o["op"] == "remove")
                .map(|o| o["path"].as_str().unwrap())
                .collect();
            assert_eq!(
                removed,
                ["/metadata/labels/app", "/metadata/labels/pod-template-hash"]
            );
            // Counted from the pod's start: 600 s ran, 3600 s to go.
            let deadline = p.as_array().unwrap().last().unwrap();
            assert_eq!(deadline["path"], "/spec/activeDeadlineSeconds");
            assert_eq!(deadline["value"], STARTED_S_AGO + 3600);
            let audit = run.finish.as_ref().unwrap().audit.as_ref().unwrap();
            assert_eq!(audit.what, Recorded::Contained);
            let why = audit.why.as_deref().unwrap();
            assert!(
                why.contains("falco-responder-contain-") && why.contains("web-7d9f"),
                "{why}"
            );
            // The reply names no live object.
            assert!(!o.public_reason().contains(UID));
        }

        #[test]
        fn statefulset_daemonset_and_bare_pods_are_contained_without_release() {
            for kind in [Kind::StatefulSet, Kind::DaemonSet, Kind::Standalone] {
                let w = World {
                    workload: workload(kind.clone()),
                    ..world()
                };
                let run = contain(&config(None), &off(), &target(None), &w);
                assert!(!run.kinds().contains(&"read-replicaset"), "{kind:?}");
                let o = run.outcome().unwrap();
                assert_eq!(o.steps.names(), ["isolated", "evidence"], "{kind:?}");
                let p = run.patch().unwrap().as_array().unwrap().clone();
                assert!(p.iter().all(|o| o["op"] != "remove"), "{kind:?}: {p:?}");
                // No CONTAIN_SECONDS: no deadline.
                assert!(
                    p.iter().all(|o| o["path"] != "/spec/activeDeadlineSeconds"),
                    "{p:?}"
                );
            }
        }

        #[test]
        fn a_host_network_pod_is_killed_at_once_without_a_network_policy() {
            let mut w = world();
            w.pod.as_mut().unwrap().spec.as_mut().unwrap().host_network = Some(true);
            let run = contain(&config(Some(3600)), &off(), &target(None), &w);
            assert_eq!(
                run.kinds(),
                ["get", "namespace", "resolve", "patch", "evidence"]
            );
            let o = run.outcome().unwrap();
            assert_eq!(o.steps.names(), ["evidence", "killed"]);
            assert_eq!(o.why, Why::Said(why::CONTAINED_HOST_NETWORK));
            let p = run.patch().unwrap().as_array().unwrap().clone();
            // The smallest deadline already passed.
            assert_eq!(p.last().unwrap()["value"], STARTED_S_AGO);
            assert!(p.iter().all(|o| o["op"] != "remove"));
        }

        #[test]
        fn contained_already_only_with_the_label_and_our_policy_and_then_without_writes() {
            let labelled = |w: &mut World| {
                let labels = w.pod.as_mut().unwrap().metadata.labels.as_mut().unwrap();
                labels.insert(CONTAINED_LABEL.into(), UID.into());
            };
            let ours = network_policy("prod", "web-0", UID);
            // Label, our policy, the evidence: nothing to do, one GET each.
            let mut w = world();
            labelled(&mut w);
            w.policy = Some(ours.clone());
            w.evidence_exists = true;
            let run = contain(&config(Some(60)), &off(), &target(None), &w);
            assert_eq!(run.kinds(), ["get", "read-policy", "read-evidence"]);
            let o = run.outcome().unwrap();
            assert_eq!(o.kind, OutcomeKind::Contained);
            assert_eq!(o.why, Why::Said(why::ALREADY_CONTAINED));
            assert!(run.finish.as_ref().unwrap().audit.is_none());
            // An earlier attempt stopped before the evidence: only that is done.
            w.evidence_exists = false;
            let run = contain(&config(Some(60)), &off(), &target(None), &w);
            assert_eq!(
                run.kinds(),
                ["get", "read-policy", "read-evidence", "evidence"]
            );
            assert_eq!(run.outcome().unwrap().steps.names(), ["evidence"]);
            // The label alone (the pod's author may set it): contained anew.
            let mut w = world();
            labelled(&mut w);
            let run = contain(&config(None), &off(), &target(None), &w);
            assert!(
                run.kinds().ends_with(&["isolate", "patch", "evidence"]),
                "{:?}",
                run.kinds()
            );
            // Our policy without the label (an attempt stopped after the isolation): resumed.
            let mut w = world();
            w.policy = Some(ours);
            let run = contain(&config(None), &off(), &target(None), &w);
            assert_eq!(run.outcome().unwrap().kind, OutcomeKind::Contained);
            // Another pod's policy under the label: contained anew, and its 409 is refused.
            let mut w = world();
            labelled(&mut w);
            w.policy = Some(network_policy("prod", "web-0", OTHER_UID));
            let run = contain(&config(None), &off(), &target(None), &w);
            assert!(run.patch().is_none());
            let err = run.finish.unwrap().outcome.unwrap_err();
            assert!(matches!(err, Undecided::Forged(_)), "{err:?}");
        }

        #[test]
        fn a_forged_policy_under_our_name_stops_before_the_label() {
            let mut np = network_policy("prod", "web-0", UID);
            np.spec.as_mut().unwrap().ingress = Some(vec![Default::default()]);
            let w = World {
                policy: Some(np),
                ..world()
            };
            let breaker = Breaker::new(None, Some("20/1m".parse().unwrap()));
            let run = contain(&config(None), &breaker, &target(None), &w);
            assert!(run.patch().is_none() && !run.kinds().contains(&"evidence"));
            assert!(matches!(
                run.finish.unwrap().outcome,
                Err(Undecided::Forged(_))
            ));
            // Nothing was done: the breaker's reservation went back.
            assert!(run.unfinished.is_none());
            assert_eq!(breaker.known_open(ts(NOW)), None);
        }

        #[test]
        fn the_wrong_uid_changes_nothing() {
            let run = contain(&config(Some(1)), &off(), &target(Some(OTHER_UID)), &world());
            assert_eq!(run.kinds(), ["get"]);
            assert_eq!(run.outcome().unwrap().kind, OutcomeKind::Stale);
            // The patch's uid test failed (replaced between GET and patch): stale too.
            let w = World {
                patched: Ok(Patched::Stale),
                ..world()
            };
            let run = contain(&config(None), &off(), &target(None), &w);
            assert_eq!(run.outcome().unwrap().kind, OutcomeKind::Stale);
            assert!(!run.kinds().contains(&"evidence"));
        }

        #[test]
        fn a_refused_patch_on_the_same_pod_is_retried_never_stale() {
            // The patch's test failed, yet the pod is still the one Falco saw (a label the
            // release removes, or its deadline, changed): not contained, so not a 2xx.
            let w = World {
                patched: Ok(Patched::Changed),
                ..world()
            };
            let breaker = Breaker::new(None, Some("20/1m".parse().unwrap()));
            let run = contain(&config(None), &breaker, &target(None), &w);
            assert!(!run.kinds().contains(&"evidence"));
            assert!(matches!(
                run.finish.unwrap().outcome,
                Err(Undecided::NotYet(_))
            ));
            // Nothing was written: the breaker's reservation went back.
            assert!(run.unfinished.is_none());
            assert_eq!(breaker.known_open(ts(NOW)), None);
        }

        #[test]
        fn a_terminating_pod_is_not_contained() {
            let mut w = world();
            let p = w.pod.as_mut().unwrap();
            p.metadata.deletion_timestamp = Some(Time(at(3000)));
            p.metadata.deletion_grace_period_seconds = Some(3600);
            let mut c = config(None);
            c.identity.grace_period_seconds = Some(5);
            let run = contain(&c, &off(), &target(None), &w);
            assert_eq!(run.kinds(), ["get"]);
            assert_eq!(run.outcome().unwrap().kind, OutcomeKind::Terminating);
        }

        #[test]
        fn dry_run_lists_every_step_and_writes_nothing() {
            let c = PlanConfig {
                dry_run: true,
                ..config(Some(60))
            };
            let run = contain(&c, &off(), &target(None), &world());
            assert!(run.writes().is_empty(), "{:?}", run.kinds());
            let o = run.outcome().unwrap();
            assert_eq!(o.kind, OutcomeKind::DryRun);
            assert_eq!(
                o.steps.names(),
                ["isolated", "released", "evidence", "deadline"]
            );
            assert!(o.reason.contains("would contain"), "{}", o.reason);
            assert_eq!(
                run.finish.unwrap().audit.unwrap().what,
                Recorded::DryRunContain
            );
        }

        #[test]
        fn the_floor_holds_a_containment_and_the_breaker_counts_it() {
            let mut c = config(None);
            c.min_available = Some(MinAvailable::Count(3));
            let w = World {
                replicas: Some(Replicas {
                    desired: 4,
                    ready: 3,
                }),
                ..world()
            };
            let run = contain(&c, &off(), &target(None), &w);
            assert!(run.writes().is_empty());
            assert_eq!(
                run.outcome().unwrap().kind,
                OutcomeKind::Held(HeldBy::Floor)
            );
            // The breaker: the containment's record, under the name it was admitted by.
            let breaker = Breaker::new(None, Some("20/1m".parse().unwrap()));
            let run = contain(&config(None), &breaker, &target(None), &world());
            let record = run.finish.unwrap().breaker_record.unwrap();
            assert_eq!(record.name, RECORD);
            let open = Breaker::new(None, Some("1/1m".parse().unwrap()));
            let listed = [Deletion {
                key: "other".into(),
                workload: None,
                at: at(-1),
            }];
            let event = event();
            let t = target(None);
            let cfg = config(None);
            let mut plan = Plan::new(&cfg, &open, &t, &event);
            plan.first();
            plan.pod(world().pod.as_ref(), ts(NOW));
            plan.namespace(false);
            assert_eq!(plan.workload(workload(Kind::Deployment)), Step::Count);
            let Step::Finish(f) = plan.counted(&listed, ts(NOW), RECORD) else {
                panic!("the open breaker refuses it")
            };
            assert!(matches!(
                f.outcome.unwrap().kind,
                OutcomeKind::BreakerOpen(_)
            ));
        }

        #[test]
        fn a_failure_before_the_patch_gives_everything_back_one_after_it_counts() {
            let breaker = || Breaker::new(None, Some("20/1m".parse().unwrap()));
            let mut c = config(None);
            c.min_available = Some(MinAvailable::Count(1));
            // No RBAC for the NetworkPolicy: never labelled, nothing counted, the slot back.
            let w = World {
                isolate: Err("forbidden"),
                ..world()
            };
            let run = contain(&c, &breaker(), &target(None), &w);
            assert!(run.patch().is_none());
            assert!(run.unfinished.is_none());
            assert!(run.given_back.is_some());
            // The patch's answer lost: it may have happened, it counts and keeps its slot.
            let w = World {
                patched: Err(LOST),
                ..world()
            };
            let run = contain(&c, &breaker(), &target(None), &w);
            assert!(run.unfinished.is_some() && run.given_back.is_none());
            // The evidence failed after the patch: the pod is contained, it counts.
            let w = World {
                kept: Err("forbidden"),
                ..world()
            };
            let run = contain(&c, &breaker(), &target(None), &w);
            assert!(run.unfinished.is_some() && run.given_back.is_none());
        }

        prop_compose! {
            fn any_world()(
                kind in prop::sample::select(kinds()),
                host_network in prop::bool::weighted(0.2),
                labelled in prop::bool::weighted(0.3),
                policy in prop::sample::select(vec![0u8, 1, 2, 3]),
                evidence_exists in any::<bool>(),
                isolate in prop::sample::select(vec![Ok(()), Err("forbidden"), Err(LOST)]),
                patched in prop::sample::select(vec![
                    Ok(Patched::Done), Ok(Patched::Stale), Ok(Patched::Changed), Ok(Patched::Gone), Err(LOST), Err("forbidden"),
                ]),
                kept in prop::sample::select(vec![Ok(()), Err("forbidden")]),
                rs in prop::sample::select(vec![0u8, 1, 2]),
                existing_deadline in prop::option::of(1i64..5000),
                uid in prop::sample::select(vec![UID, OTHER_UID]),
            ) -> World {
                let mut p = deployments_pod(uid);
                let spec = p.spec.as_mut().unwrap();
                spec.host_network = Some(host_network);
                spec.active_deadline_seconds = existing_deadline;
                if labelled {
                    p.metadata.labels.as_mut().unwrap().insert(CONTAINED_LABEL.into(), uid.into());
                }
                let policy = match policy {
                    0 => None,
                    1 => Some(network_policy("prod", "web-0", uid)),
                    2 => Some(network_policy("prod", "web-0", OTHER_UID)),
                    _ => {
                        let mut np = network_policy("prod", "web-0", uid);
                        np.spec.as_mut().unwrap().egress = Some(vec![Default::default()]);
                        Some(np)
                    }
                };
                World {
                    pod: Some(p),
                    workload: workload(kind),
                    rs: match rs { 0 => Some(replicaset()), 1 => None, _ => {
                        let mut r = replicaset();
                        r.metadata.uid = Some(OTHER_UID.into());
                        Some(r)
                    }},
                    policy,
                    evidence_exists,
                    isolate,
                    patched,
                    kept,
                    replicas: None,
                }
            }
        }

        proptest! {
            #[test]
            fn never_labelled_nor_released_without_our_isolation_first(
                w in any_world(), t in any_target(), dry_run in any::<bool>(), secs in prop::option::of(1u32..100_000),
            ) {
                let c = PlanConfig { dry_run, ..config(secs) };
                let run = contain(&c, &off(), &t, &w);
                let live = w.pod.as_ref().unwrap();
                let host_network = live.spec.as_ref().unwrap().host_network == Some(true);
                if dry_run {
                    prop_assert!(run.writes().is_empty());
                }
                let kinds = run.kinds();
                if let Some(at) = kinds.iter().position(|k| *k == "patch") {
                    // The patch tests the live pod's uid first and adds the label with it.
                    let p = run.patch().unwrap().as_array().unwrap().clone();
                    let uid = live.metadata.uid.clone().unwrap();
                    prop_assert_eq!(&p[0], &serde_json::json!({"op": "test", "path": "/metadata/uid", "value": uid}));
                    prop_assert!(p[1]["path"].as_str().unwrap().starts_with("/metadata/labels"));
                    if !host_network {
                        // Isolated first, by a policy that is ours (created, or found ours).
                        prop_assert!(kinds[..at].contains(&"isolate"));
                        prop_assert!(w.isolate.is_ok());
                        prop_assert!(w.policy.as_ref().is_none_or(|np| is_ours(np, &uid)));
                    }
                    let removes = p.iter().any(|o| o["op"] == "remove");
                    if removes {
                        // Released only from a ReplicaSet verified by its uid, never a
                        // StatefulSet's, DaemonSet's or bare pod, never a hostNetwork one.
                        prop_assert!(matches!(w.workload.kind, Kind::Deployment | Kind::ReplicaSet));
                        prop_assert!(!host_network);
                        prop_assert_eq!(w.rs.as_ref().and_then(|r| r.metadata.uid.as_deref()), Some(RS_UID));
                    }
                    // Only ever lowered.
                    if let Some(d) = p.iter().find(|o| o["path"] == "/spec/activeDeadlineSeconds") {
                        let d = d["value"].as_i64().unwrap();
                        let existing = live.spec.as_ref().unwrap().active_deadline_seconds;
                        prop_assert!(existing.is_none_or(|e| d < e) && d >= 1);
                    }
                }
                // No write without proof the live pod is the one Falco saw.
                if t.uid.as_ref().is_some_and(|u| Some(u.as_str()) != live.metadata.uid.as_deref()) {
                    prop_assert!(run.writes().is_empty());
                }
                // Contained without a write only with the label and our policy (or a passed
                // deadline on the host's network), its evidence kept.
                if run.writes().is_empty()
                    && run.outcome().is_some_and(|o| o.kind == OutcomeKind::Contained)
                {
                    let uid = live.metadata.uid.clone().unwrap();
                    let labelled = live.metadata.labels.as_ref().unwrap().get(CONTAINED_LABEL) == Some(&uid);
                    prop_assert!(labelled && w.evidence_exists);
                    prop_assert!(host_network || w.policy.as_ref().is_some_and(|np| is_ours(np, &uid)));
                }
                // Each call at most once.
                let mut seen = kinds.clone();
                seen.dedup();
                prop_assert_eq!(seen.len(), kinds.len());
            }
        }
    }
}
