//! One event end to end: decode → decide → act → answer. Shared by the HTTP server and the
//! one-shot mode, so both behave identically.

use std::time::Instant;

use http::{HeaderMap, StatusCode};
use kube::Client;
use serde_json::{Value, json};
use tokio_util::task::TaskTracker;

use crate::{
    action::{ActionError, Kube, Outcome, OutcomeKind, PodRef},
    coalesce::Coalescer,
    config::Config,
    decode::{CloudEventInfo, Decoded, decode},
    event::Target,
    metrics::{ErrorLabels, EventLabels, Metrics},
    policy::{Decision, decide},
};

/// The answer to one event, before it is written as HTTP (or printed by `once`).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    /// `{"outcome", "reason", "pod", "rule", "priority", "input"}`, or `{"error", ...}`.
    pub body: Value,
    /// Set when the event came as a CloudEvent: the answer must be one too (or empty).
    pub cloudevent: Option<CloudEventInfo>,
}

impl Reply {
    pub fn error(status: StatusCode, message: impl Into<String>) -> Reply {
        Reply {
            status,
            body: json!({ "error": message.into() }),
            cloudevent: None,
        }
    }

    pub fn outcome(&self) -> Option<&str> {
        self.body.get("outcome").and_then(Value::as_str)
    }
}

pub struct App {
    pub config: Config,
    kube: Option<Kube>,
    pub metrics: Metrics,
    coalescer: Coalescer,
    background: TaskTracker,
}

impl App {
    /// `client` is `None` only in DRY_RUN without a cluster: then nothing is looked up.
    pub fn new(config: Config, client: Option<Client>) -> App {
        let instance = config
            .own_pod
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "falco-responder".into());
        let background = TaskTracker::new();
        let kube = client.map(|c| {
            let grace = config.grace_period_seconds;
            Kube::new(c, grace, config.api_timeout, instance, background.clone())
        });
        App {
            background,
            coalescer: Coalescer::new(config.dedup),
            config,
            kube,
            metrics: Metrics::new(),
        }
    }

    /// Waits (at most API_TIMEOUT_SECONDS, the bound of each of them) for work that runs after
    /// answers: the Kubernetes Events. Called before the process exits.
    pub async fn drain(&self) {
        self.background.close();
        if tokio::time::timeout(self.config.api_timeout, self.background.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                pending = self.background.len(),
                "exiting before every Kubernetes Event was recorded"
            );
        }
    }

    pub async fn handle(&self, headers: &HeaderMap, body: &[u8]) -> Reply {
        let started = Instant::now();
        let decoded = match decode(headers, body) {
            Ok(d) => d,
            Err(e) => {
                self.count("unknown", "invalid");
                let excerpt = String::from_utf8_lossy(&body[..body.len().min(512)]);
                tracing::warn!(outcome = "invalid", error = %e, body = %excerpt, "rejected a request that is not a Falco event");
                return Reply::error(
                    if matches!(e, crate::decode::DecodeError::Batch) {
                        StatusCode::UNSUPPORTED_MEDIA_TYPE
                    } else {
                        StatusCode::BAD_REQUEST
                    },
                    e.to_string(),
                );
            }
        };
        let result = match decide(&decoded.event, &self.config) {
            Decision::Skip { reason, target } => Ok(Outcome {
                kind: OutcomeKind::Skipped,
                reason,
                pod: target.as_ref().map(PodRef::of),
            }),
            Decision::Delete(target) => self.act(&target, &decoded).await,
        };
        self.metrics
            .latency
            .observe(started.elapsed().as_secs_f64());
        self.answer(&decoded, result, started)
    }

    async fn act(&self, target: &Target, decoded: &Decoded) -> Result<Outcome, ActionError> {
        let dry_run = self.config.dry_run;
        match &self.kube {
            Some(kube) => {
                // Counted by the one event that acted, not by those that shared its result.
                let act = || async {
                    let result = kube.act(target, &decoded.event, dry_run).await;
                    if matches!(&result, Ok(o) if o.kind == OutcomeKind::Deleted) {
                        self.metrics.deletions.inc();
                    }
                    result
                };
                self.coalescer.run(target, act).await
            }
            None => Ok(Outcome {
                kind: OutcomeKind::DryRun,
                reason: format!(
                    "DRY_RUN without a Kubernetes cluster: would delete pod {}/{} (not looked up)",
                    target.namespace, target.name
                ),
                pod: Some(PodRef::of(target)),
            }),
        }
    }

    fn count(&self, input: &'static str, outcome: &'static str) {
        self.metrics
            .events
            .get_or_create(&EventLabels { input, outcome })
            .inc();
    }

    fn answer(&self, d: &Decoded, result: Result<Outcome, ActionError>, started: Instant) -> Reply {
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
                tracing::info!(
                    outcome = o.kind.as_str(),
                    pod = pod.as_deref().unwrap_or("-"),
                    // &str fields, not `%` Display: no formatting pass per event.
                    rule = ev.rule.as_str(),
                    priority = ev.priority.as_str(),
                    input,
                    reason = o.reason.as_str(),
                    ms,
                    "event handled"
                );
                Reply {
                    status: StatusCode::OK,
                    body: json!({
                        "outcome": o.kind,
                        "reason": o.reason,
                        "pod": o.pod,
                        "rule": ev.rule,
                        "priority": ev.priority,
                        "input": d.kind,
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
                // The sender is told to retry; the log keeps the whole event for replay.
                let whole = serde_json::to_string(ev).unwrap_or_default();
                tracing::error!(
                    outcome = "error",
                    rule = ev.rule.as_str(),
                    priority = ev.priority.as_str(),
                    input,
                    error = %e,
                    event = whole.as_str(),
                    ms,
                    "could not act on event; the sender should retry"
                );
                let status = e.status();
                Reply {
                    status,
                    body: json!({
                        "error": e.to_string(),
                        "retry": status == StatusCode::SERVICE_UNAVAILABLE,
                        "rule": ev.rule,
                        "priority": ev.priority,
                        "input": d.kind,
                    }),
                    cloudevent: d.cloudevent.clone(),
                }
            }
        }
    }
}
