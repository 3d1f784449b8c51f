//! Prometheus metrics (`GET /metrics`, text format).

use std::sync::OnceLock;

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// plain, cloudevent-binary, ... or `unknown` when the body could not be decoded.
    pub input: &'static str,
    /// deleted, contained, dry-run, gone, skipped, stale, terminating, held, breaker-open,
    /// invalid, error.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: &'static str,
}

/// Why a deletion was held: `floor` (MIN_AVAILABLE) or `pdb` (a PodDisruptionBudget).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HeldLabels {
    pub guard: &'static str,
}

/// The workload kind (`Deployment`, ..., `Standalone`, `other`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkloadLabels {
    pub workload_kind: &'static str,
}

/// What was not done because it would repeat a refusal: `refusal_event` (a refusal Event
/// within its window), `pod_get` (an event answered `breaker-open` from memory).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SuppressedLabels {
    pub what: &'static str,
}

/// Why a request was refused before it reached decoding: the server's limits.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    /// timeout, too_large, body_memory, unauthorized.
    pub reason: &'static str,
}

/// Why a k8s_audit event about a pod was not acted on (`policy::AuditSkip`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuditLabels {
    /// unproven (no `ka.response.code` or `ka.verb`), refused, not_the_pod.
    pub why: &'static str,
}

/// A containment's step (`isolated`, `released`, `evidence`, `deadline`, `killed`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    pub step: &'static str,
}

pub struct Metrics {
    registry: Registry,
    /// `events{input=..,outcome="skipped"}` per input kind, each looked up once (a label lookup
    /// hashes the labels under a lock): the counters of a flood of skipped events.
    skipped: [OnceLock<Counter>; 6],
    pub held: Family<HeldLabels, Counter>,
    pub breaker_open: Family<WorkloadLabels, Counter>,
    pub rejected: Family<RejectLabels, Counter>,
    pub audit_skipped: Family<AuditLabels, Counter>,
    pub events: Family<EventLabels, Counter>,
    pub deletions: Counter,
    /// Containments' steps taken (ACTION=contain).
    pub contain_steps: Family<StepLabels, Counter>,
    /// Deletion breaker records that could not be written (the count is then not shared).
    pub breaker_record_failures: Counter,
    pub suppressed: Family<SuppressedLabels, Counter>,
    pub kube_errors: Family<ErrorLabels, Counter>,
    pub latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("falco_responder");
        let events = Family::<EventLabels, Counter>::default();
        let deletions = Counter::default();
        let kube_errors = Family::<ErrorLabels, Counter>::default();
        // 100 µs .. ~13 s: skips take microseconds, deletions milliseconds, timeouts seconds.
        let latency = Histogram::new(exponential_buckets(0.0001, 2.0, 18));
        registry.register(
            "events",
            "Falco events handled, by input kind and outcome",
            events.clone(),
        );
        registry.register("deletions", "Pods deleted", deletions.clone());
        let contain_steps = Family::<StepLabels, Counter>::default();
        registry.register(
            "contain_steps",
            "Containment steps taken (ACTION=contain), by step (isolated, released, evidence, \
             deadline, killed)",
            contain_steps.clone(),
        );
        registry.register(
            "kube_api_errors",
            "Kubernetes API calls that failed, by kind (timeout, forbidden, api, unreachable)",
            kube_errors.clone(),
        );
        registry.register(
            "handle_seconds",
            "Time to handle one event, from decoded request to answer",
            latency.clone(),
        );
        let held = Family::<HeldLabels, Counter>::default();
        let breaker_open = Family::<WorkloadLabels, Counter>::default();
        registry.register(
            "held",
            "Deletions held to keep a workload available, by guard (floor, pdb)",
            held.clone(),
        );
        registry.register(
            "breaker_open",
            "Deletions refused by the open deletion breaker, by workload kind",
            breaker_open.clone(),
        );
        let breaker_record_failures = Counter::default();
        registry.register(
            "breaker_record_failures",
            "Deletion breaker records that could not be written: those deletions are counted by \
             this process only",
            breaker_record_failures.clone(),
        );
        let suppressed = Family::<SuppressedLabels, Counter>::default();
        registry.register(
            "suppressed",
            "API calls not made because they would repeat a refusal, by what (refusal_event: \
             a refusal Event within its window; pod_get: breaker-open answered from memory)",
            suppressed.clone(),
        );
        let rejected = Family::<RejectLabels, Counter>::default();
        registry.register(
            "http_rejected",
            "Requests refused before decoding, by reason (timeout, too_large, body_memory, unauthorized)",
            rejected.clone(),
        );
        let audit_skipped = Family::<AuditLabels, Counter>::default();
        registry.register(
            "audit_skipped",
            "k8s_audit events about a pod not acted on, by why: unproven (no ka.response.code \
             or ka.verb in the output), refused (the request failed or was denied), not_the_pod",
            audit_skipped.clone(),
        );
        Metrics {
            skipped: Default::default(),
            audit_skipped,
            held,
            breaker_open,
            registry,
            rejected,
            events,
            deletions,
            contain_steps,
            breaker_record_failures,
            suppressed,
            kube_errors,
            latency,
        }
    }

    /// Counts a skipped event in `events{input,outcome="skipped"}` (`input`:
    /// `ingest::decode::InputKind::as_str`).
    pub fn skipped(&self, input: &'static str) {
        const KINDS: [&str; 6] = [
            "plain",
            "cloudevent-binary",
            "cloudevent-structured",
            "argo-payload",
            "argo-event",
            "argo-webhook",
        ];
        let labels = EventLabels {
            input,
            outcome: "skipped",
        };
        match KINDS.iter().position(|k| *k == input) {
            Some(at) => self.skipped[at]
                .get_or_init(|| self.events.get_or_create(&labels).clone())
                .inc(),
            None => self.events.get_or_create(&labels).inc(),
        };
    }

    pub fn reject(&self, reason: &'static str) {
        self.rejected.get_or_create(&RejectLabels { reason }).inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
