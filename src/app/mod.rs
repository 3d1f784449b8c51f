//! One event end to end: decode → decide → act → answer. Shared by the HTTP server and the
//! one-shot mode, so both behave identically.
//!
//! - [`App`] (here): the process's state and `handle`, one event from body to reply;
//! - [`reply`]: the answer, before it is written as HTTP or printed;
//! - [`coalesce`]: one API round trip per pod during an event storm;
//! - [`once`]: the one-shot mode (an Argo Workflows step).

pub mod coalesce;
pub mod once;
pub mod reply;

use std::{ops::Deref, sync::Arc, time::Instant};

use http::{HeaderMap, StatusCode};
use kube::Client;
use tokio_util::task::TaskTracker;

use crate::{
    app::{
        coalesce::Coalescer,
        reply::{Failed, Handled, Named, REASON_MAX, RULE_MAX, Reply, ReplyBody},
    },
    cluster::client::Clients,
    cluster::{error::ApiError, pods::PodRemover},
    config::Config,
    domain::falco::Target,
    domain::outcome::{Outcome, OutcomeKind, PodRef, Why},
    domain::policy::{Decision, decide},
    fastfmt::{ECHO_MAX, bounded, bounded_string},
    ingest::decode::{DecodeError, Decoded, decode},
    obs::logs,
    obs::metrics::{
        AuditLabels, ErrorLabels, EventLabels, HeldLabels, Metrics, StepLabels, WorkloadLabels,
    },
};

/// The first pause between two checks of the breaker's records, and the longest.
const RECHECK_FIRST: std::time::Duration = std::time::Duration::from_millis(500);
const RECHECK_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// What a request holds of the body budget (BODY_MEMORY_BYTES), from the HTTP layer: grown to
/// cover the decoded event beside its body, and kept with the event until it is dropped (an
/// action that outlives its caller keeps it to the end).
pub trait Memory: Send + 'static {
    /// Bytes held.
    fn bytes(&self) -> usize;
    /// Grows to `to` bytes if they are free now; false (and unchanged) if not.
    fn grow(&mut self, to: usize) -> bool;
}

/// No budget: the one-shot mode reads one event.
pub struct Unmetered;

impl Memory for Unmetered {
    fn bytes(&self) -> usize {
        0
    }
    fn grow(&mut self, _: usize) -> bool {
        true
    }
}

/// One process's state, shared by every request (and by the actions that outlive them); a
/// clone is another handle on the same state.
#[derive(Clone)]
pub struct App(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    /// Set once the kube client is built (`App::connect`): a server answers its probes while it
    /// is built, and an event that comes first waits for it (`Inner::remover`).
    remover: std::sync::OnceLock<Option<PodRemover>>,
    connected: tokio::sync::watch::Sender<bool>,
    /// Why the process is not ready (`None`: ready): until the deletion breaker's records are
    /// known to be writable, the budget would not be shared with the other replicas.
    unready: std::sync::Mutex<Option<String>>,
    pub metrics: Metrics,
    coalescer: Coalescer,
    /// Actions and Event recordings: they run to their end even when the request that started
    /// them is gone, and shutdown waits for them.
    background: TaskTracker,
}

impl Deref for App {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl App {
    /// `client` is `None` only in DRY_RUN without a cluster: then nothing is looked up. With a
    /// client and the breaker on, readiness waits for [`App::watch`]'s check of the records.
    pub fn new(config: Config, client: Option<Client>) -> App {
        let app = App::connecting(config);
        app.connect(client.map(|main| Clients { main, evict: None }));
        app
    }

    /// An App whose kube client is still being built: `connect` must follow.
    pub fn connecting(config: Config) -> App {
        let breaker = config.guards.max_deletions.is_some()
            || config.guards.max_deletions_per_workload.is_some();
        let unready = breaker.then(|| {
            "starting: the deletion breaker's records are not checked yet (MAX_DELETIONS, \
             MAX_DELETIONS_PER_WORKLOAD)"
                .to_string()
        });
        App(Arc::new(Inner {
            unready: std::sync::Mutex::new(unready),
            background: TaskTracker::new(),
            coalescer: Coalescer::new(config.dedup),
            config,
            remover: std::sync::OnceLock::new(),
            connected: tokio::sync::watch::Sender::new(false),
            metrics: Metrics::new(),
        }))
    }

    /// Hands over the clients (`None`: DRY_RUN without a cluster); the first call counts.
    pub fn connect(&self, clients: Option<Clients>) {
        let config = &self.config;
        let instance = config
            .policy
            .own_pod
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "falco-responder".into());
        let remover = clients
            .map(|c| PodRemover::new(c, config, instance, self.background.clone(), &self.metrics));
        if remover.is_none() {
            // DRY_RUN without a cluster: no records, nothing to check.
            self.set_unready(None);
        }
        let _ = self.remover.set(remover);
        self.connected.send_replace(true);
    }

    /// Starts what only a serving process keeps running: the watch that feeds the deletion
    /// breaker's count (the one-shot mode lists once instead), and the check that its records
    /// can be written, which readiness waits for. After `connect`.
    pub fn watch(&self) {
        if let Some(Some(remover)) = self.remover.get() {
            remover.watch(self.config.api_timeout);
            let app = self.clone();
            let remover = remover.clone();
            tokio::spawn(async move { app.check_records(&remover).await });
        }
    }

    /// Why the process is not ready to take events (`None`: ready).
    pub fn unready(&self) -> Option<String> {
        self.unready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_unready(&self, why: Option<String>) {
        *self.unready.lock().unwrap_or_else(|e| e.into_inner()) = why;
    }

    /// Checks until it passes that the breaker's records can be written and listed; meanwhile
    /// readiness answers 503 with what is wrong. An API outage or missing RBAC keeps the
    /// process unready, alive and retrying: a restart would not fix either.
    async fn check_records(&self, remover: &PodRemover) {
        let mut backoff = RECHECK_FIRST;
        let mut said = None;
        loop {
            let why = match remover.check_records().await {
                None | Some(Ok(())) => {
                    if said.is_some() {
                        tracing::info!("the deletion breaker's records can be written: ready");
                    }
                    self.set_unready(None);
                    return;
                }
                Some(Err(why)) => why,
            };
            if said.as_ref() != Some(&why) {
                tracing::error!(
                    error = why.as_str(),
                    "not ready: the deletion breaker could not share its count with the other \
                     replicas; checking again"
                );
            }
            self.set_unready(Some(format!("not ready: {why}")));
            said = Some(why);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(RECHECK_MAX);
        }
    }

    /// Waits for work that outlives answers: actions whose caller went away and the Kubernetes
    /// Events. Each is bounded by API_TIMEOUT_SECONDS; an action and then its Event, twice that.
    /// Called before the process exits.
    pub async fn drain(&self) {
        self.background.close();
        let bound = self.config.api_timeout * 2 + std::time::Duration::from_secs(1);
        if tokio::time::timeout(bound, self.background.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                pending = self.background.len(),
                "exiting before every action and Kubernetes Event was finished"
            );
        }
    }

    /// One event without a memory budget (the one-shot mode).
    pub async fn handle(&self, headers: &HeaderMap, body: &[u8]) -> Reply {
        self.handle_within(headers, body, Unmetered).await
    }

    /// One event, its decoded form charged to `memory` (what the body already holds of the
    /// budget) until it is dropped.
    pub async fn handle_within(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        mut memory: impl Memory,
    ) -> Reply {
        let started = Instant::now();
        // Skipping is cheap: an event is first read, in its envelope, for the few fields the
        // decision to skip needs (rule, priority, source); only an event that passes them is
        // built whole.
        if let Some(peeked) = crate::ingest::decode::peek(headers, body)
            && let Some(reason) = crate::domain::policy::skip_early(
                &peeked.peek.rule,
                peeked.peek.priority,
                peeked.peek.source.as_deref(),
                &self.config.policy,
            )
        {
            return self.skipped_early(peeked, reason, started);
        }
        let decoded = match decode(headers, body) {
            Ok(d) => d,
            Err(DecodeError::OwnResult(what)) => {
                self.count("unknown", "skipped");
                tracing::info!(
                    outcome = "skipped",
                    reason = "our own result",
                    what = &*bounded(&what, REASON_MAX),
                    "ignored our own result: check the Trigger's filter (it must not deliver our replies)"
                );
                return Reply {
                    status: StatusCode::NO_CONTENT,
                    body: ReplyBody::Empty,
                    cloudevent: None,
                };
            }
            Err(e) => {
                self.count("unknown", "invalid");
                let excerpt = String::from_utf8_lossy(&body[..body.len().min(512)]);
                let ce_id = headers.get("ce-id").and_then(|v| v.to_str().ok());
                // The message may quote the sender's strings (keys, a priority): cut once, for
                // the line and the reply alike.
                let error = bounded_string(e.to_string(), REASON_MAX);
                tracing::warn!(
                    outcome = "invalid",
                    ce_id = &*bounded(ce_id.unwrap_or("-"), ECHO_MAX),
                    error = error.as_str(),
                    body = &*excerpt,
                    "rejected a request that is not a Falco event"
                );
                return Reply::error(
                    if matches!(e, DecodeError::Batch) {
                        StatusCode::UNSUPPORTED_MEDIA_TYPE
                    } else {
                        StatusCode::BAD_REQUEST
                    },
                    error,
                );
            }
        };
        // The decoded event is held beside the body (bounded: `domain::falco`); past the budget
        // it is refused as a body would be, and the sender retries.
        if !memory.grow(memory.bytes() + decoded.heap_bytes()) {
            self.metrics.reject("body_memory");
            tracing::warn!(
                "refused an event: BODY_MEMORY_BYTES of request bodies and decoded events already \
                 in memory"
            );
            return Reply::memory_busy();
        }
        let target = match decide(&decoded.event, &self.config.policy) {
            Decision::Skip {
                reason,
                target,
                audit,
            } => {
                if let Some(why) = audit {
                    let why = why.as_str();
                    self.metrics
                        .audit_skipped
                        .get_or_create(&AuditLabels { why })
                        .inc();
                }
                let outcome = Outcome {
                    kind: OutcomeKind::Skipped,
                    reason,
                    why: Why::Policy,
                    pod: target.as_ref().map(PodRef::of),
                    seen: None,
                    steps: Default::default(),
                };
                return self.finish(&decoded, Ok(outcome), started);
            }
            Decision::Invalid(e) => return self.invalid(&decoded, e),
            Decision::Delete(target) => target,
        };
        // Once decided, the action runs to its end (bounded by API_TIMEOUT_SECONDS) even if
        // the caller disconnects or shutdown begins: a deletion never goes unrecorded.
        let inner = self.0.clone();
        let task = self.background.spawn(async move {
            let _memory = memory;
            let result = inner.respond(&target, &decoded).await;
            inner.finish(&decoded, result, started)
        });
        match task.await {
            Ok(reply) => reply,
            Err(e) => {
                tracing::error!(error = %e, "the action task failed");
                Reply::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error while acting on the event",
                )
            }
        }
    }
}

impl Inner {
    /// The pod remover, once `App::connect` has set it (`None`: DRY_RUN without a cluster).
    async fn remover(&self) -> &Option<PodRemover> {
        if let Some(r) = self.remover.get() {
            return r;
        }
        let mut connected = self.connected.subscribe();
        // The sender lives as long as `self`: this returns once `connect` ran.
        let _ = connected.wait_for(|c| *c).await;
        self.remover.get().unwrap_or(&None)
    }

    /// The outcome for a pod the policy says to remove: shared by identical events in a storm.
    async fn respond(&self, target: &Target, decoded: &Decoded) -> Result<Outcome, ApiError> {
        match self.remover().await {
            Some(remover) => {
                // Counted by the one event that acted, not by those that shared its result.
                let remove_and_count = || async {
                    let result = remover.remove(target, &decoded.event).await;
                    match &result {
                        Ok(o) if o.kind == OutcomeKind::Deleted => self.metrics.deletions.inc(),
                        Ok(o) if o.kind == OutcomeKind::Contained => {
                            for step in o.steps.names() {
                                self.metrics
                                    .contain_steps
                                    .get_or_create(&StepLabels { step })
                                    .inc();
                            }
                            0
                        }
                        Ok(Outcome {
                            kind: OutcomeKind::Held(by),
                            ..
                        }) => self
                            .metrics
                            .held
                            .get_or_create(&HeldLabels { guard: by.as_str() })
                            .inc(),
                        Ok(Outcome {
                            kind: OutcomeKind::BreakerOpen(kind),
                            ..
                        }) => self
                            .metrics
                            .breaker_open
                            .get_or_create(&WorkloadLabels {
                                workload_kind: kind,
                            })
                            .inc(),
                        _ => 0,
                    };
                    result
                };
                self.coalescer
                    .run(target, decoded.event.occurred_at(), remove_and_count)
                    .await
            }
            None => Ok(Outcome {
                kind: OutcomeKind::DryRun,
                reason: format!(
                    "DRY_RUN without a Kubernetes cluster: would {} pod {}/{} (not looked up)",
                    self.config
                        .contain
                        .actions
                        .for_rule(&decoded.event.rule)
                        .as_str(),
                    target.namespace,
                    target.name
                ),
                // Nothing was looked up: the event's own names.
                why: Why::Policy,
                pod: Some(PodRef::of(target)),
                seen: None,
                steps: Default::default(),
            }),
        }
    }

    fn finish(&self, d: &Decoded, result: Result<Outcome, ApiError>, started: Instant) -> Reply {
        self.metrics
            .latency
            .observe(started.elapsed().as_secs_f64());
        self.answer(d, result, started)
    }

    /// An identifier that cannot be a Kubernetes one: 400, never looked up, never retried.
    fn invalid(&self, d: &Decoded, e: crate::domain::ident::InvalidIdent) -> Reply {
        let ev = &d.event;
        self.count(d.kind.as_str(), "invalid");
        let rule = bounded(&ev.rule, RULE_MAX);
        tracing::warn!(
            outcome = "invalid",
            rule = &*rule,
            priority = ev.priority.as_str(),
            input = d.kind.as_str(),
            uuid = &*uuid_of(d),
            ce_id = &*ce_id_of(d),
            error = %e,
            "rejected an event naming an invalid identifier"
        );
        Reply {
            status: StatusCode::BAD_REQUEST,
            body: ReplyBody::Failed(Failed {
                error: format!("{e}: the event cannot name a Kubernetes pod"),
                field: Some(e.field.clone()),
                retry: Some(false),
                rule: Some(rule.into_owned()),
                priority: Some(ev.priority),
                input: Some(d.kind),
            }),
            cloudevent: None,
        }
    }

    /// The answer `finish` gives a skip, from the peeked fields: the same line, metric and body.
    fn skipped_early(
        &self,
        peeked: crate::ingest::decode::Peeked<'_>,
        reason: String,
        started: Instant,
    ) -> Reply {
        let elapsed = started.elapsed().as_secs_f64();
        self.metrics.latency.observe(elapsed);
        let peek = &peeked.peek;
        let input = peeked.kind.as_str();
        self.metrics.skipped(input);
        let uuid = bounded(peek.uuid.as_deref().unwrap_or("-"), ECHO_MAX);
        let ce_id = bounded(
            peeked.cloudevent.as_ref().map_or("-", |c| c.id.as_str()),
            ECHO_MAX,
        );
        let ms = elapsed * 1000.0;
        // Cut once for the line and the reply (borrowed when short: the usual case).
        let rule = bounded(&peek.rule, RULE_MAX);
        let reason = bounded_string(reason, REASON_MAX);
        // The same line as `answer`'s; written directly where the text format allows (the
        // flood of events we skip is the hot path).
        let fields = [
            ("outcome", OutcomeKind::Skipped.as_str()),
            ("pod", "-"),
            ("rule", &*rule),
            ("priority", peek.priority.as_str()),
            ("input", input),
            ("reason", reason.as_str()),
            ("uid", "-"),
            ("workload", "-"),
            ("uuid", &*uuid),
            ("ce_id", &*ce_id),
        ];
        if tracing::enabled!(tracing::Level::INFO)
            && !crate::obs::logs::info_line("event handled", &fields, ms)
        {
            tracing::info!(
                outcome = fields[0].1,
                pod = fields[1].1,
                rule = fields[2].1,
                priority = fields[3].1,
                input = fields[4].1,
                reason = fields[5].1,
                uid = fields[6].1,
                workload = fields[7].1,
                uuid = fields[8].1,
                ce_id = fields[9].1,
                ms,
                "event handled"
            );
        }
        Reply {
            status: StatusCode::OK,
            body: ReplyBody::Handled(Handled {
                outcome: OutcomeKind::Skipped,
                // The policy's reason: about the event and the configuration only.
                reason,
                pod: None,
                rule: rule.into_owned(),
                priority: peek.priority,
                input: peeked.kind,
                retry: None,
                steps: None,
            }),
            cloudevent: peeked.cloudevent,
        }
    }

    fn count(&self, input: &'static str, outcome: &'static str) {
        self.metrics
            .events
            .get_or_create(&EventLabels { input, outcome })
            .inc();
    }

    fn answer(&self, d: &Decoded, result: Result<Outcome, ApiError>, started: Instant) -> Reply {
        let ev = &d.event;
        let input = d.kind.as_str();
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        match result {
            Ok(o) => {
                self.count(input, o.kind.as_str());
                let pod = o
                    .pod
                    .as_ref()
                    .map(|p| format!("{}/{}", p.namespace, p.name));
                let rule = bounded(&ev.rule, RULE_MAX);
                tracing::info!(
                    outcome = o.kind.as_str(),
                    pod = pod.as_deref().unwrap_or("-"),
                    // &str fields, not `%` Display: no formatting pass per event.
                    rule = &*rule,
                    priority = ev.priority.as_str(),
                    input,
                    // The details the reply leaves out: the whole reason, the live pod's uid and
                    // its workload.
                    // (A workload is named by the pod's author: cut like the sender's strings.)
                    reason = &*bounded(&o.reason, LOG_REASON_MAX),
                    uid = o.seen.as_ref().map_or("-", |s| s.uid.as_str()),
                    workload = &*bounded(
                        o.pod
                            .as_ref()
                            .and_then(|p| p.workload.as_deref())
                            .unwrap_or("-"),
                        ECHO_MAX
                    ),
                    // Redeliveries of one event carry the same ids: correlate them.
                    uuid = &*uuid_of(d),
                    ce_id = &*ce_id_of(d),
                    ms,
                    "event handled"
                );
                // Held to keep a workload available: not done, the sender retries later (unless
                // no recovery can let it through: then a person must look, and 200 ends it).
                let held = matches!(o.kind, OutcomeKind::Held(by) if by.retry_helps());
                Reply {
                    status: if held {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    },
                    body: ReplyBody::Handled(Handled {
                        outcome: o.kind,
                        reason: bounded(o.public_reason(), REASON_MAX).into_owned(),
                        pod: o.pod.as_ref().map(Named::from),
                        rule: rule.into_owned(),
                        priority: ev.priority,
                        input: d.kind,
                        retry: held.then_some(true),
                        steps: (o.kind == OutcomeKind::Contained || !o.steps.is_empty())
                            .then(|| o.steps.names()),
                    }),
                    cloudevent: d.cloudevent.clone(),
                }
            }
            Err(e) => {
                self.count(input, "error");
                self.metrics
                    .kube_errors
                    .get_or_create(&ErrorLabels {
                        kind: e.metric_label(),
                    })
                    .inc();
                // The sender is told to retry; the log keeps the event for replay, bounded
                // (LOG_EVENT_MAX_BYTES: largest fields cut first, never its identifiers).
                let event = logs::bounded_event(ev, logs::LOG_EVENT_MAX_BYTES);
                let rule = bounded(&ev.rule, RULE_MAX);
                tracing::error!(
                    outcome = "error",
                    rule = &*rule,
                    priority = ev.priority.as_str(),
                    input,
                    uuid = &*uuid_of(d),
                    ce_id = &*ce_id_of(d),
                    error = &*bounded_string(e.to_string(), LOG_REASON_MAX),
                    event = event.as_str(),
                    ms,
                    "could not act on event; the sender should retry"
                );
                let status = e.status();
                Reply {
                    status,
                    body: ReplyBody::Failed(Failed {
                        error: e.public(),
                        field: None,
                        retry: Some(status == StatusCode::SERVICE_UNAVAILABLE),
                        rule: Some(rule.into_owned()),
                        priority: Some(ev.priority),
                        input: Some(d.kind),
                    }),
                    cloudevent: d.cloudevent.clone(),
                }
            }
        }
    }
}

/// How much of a reason or an error a log line gives, in bytes: the whole story (live objects'
/// names and uids) fits; a pod author's megabyte of owner name does not.
pub const LOG_REASON_MAX: usize = 1024;

/// Falco's `uuid` of the event, `-` when it has none (before Falco 0.33, or stripped); bounded.
fn uuid_of(d: &Decoded) -> std::borrow::Cow<'_, str> {
    bounded(d.event.uuid.as_deref().unwrap_or("-"), ECHO_MAX)
}

/// The CloudEvent `id` the event came with, `-` when it was not a CloudEvent; bounded.
fn ce_id_of(d: &Decoded) -> std::borrow::Cow<'_, str> {
    bounded(
        d.cloudevent.as_ref().map_or("-", |c| c.id.as_str()),
        ECHO_MAX,
    )
}
