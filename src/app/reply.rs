//! The answer to one event, before it is written as HTTP (`web`) or printed (`once`).
//!
//! A reply goes to whoever could send the event, forgers included: it carries the outcome, the
//! input kind, the namespace and name the event named, the rule and priority (bounded) and a
//! reason that names no live-object data (`Outcome::public_reason`). The details (uids, times,
//! counts, workloads, nodes, other objects) go to the log line and the Kubernetes Event.

use http::StatusCode;
use serde::Serialize;
use serde_json::Value;

use crate::{
    domain::{
        falco::Priority,
        outcome::{OutcomeKind, PodRef},
    },
    fastfmt::{ECHO_MAX, bounded_string, push_json_str},
    ingest::decode::{CloudEventInfo, InputKind},
};

/// How much of the event's rule a reply echoes, in bytes (Falco's rule names are far shorter).
pub const RULE_MAX: usize = ECHO_MAX;
/// How much of a reason or an error message a reply gives, in bytes (a policy reason or a
/// decode error may quote the sender's strings, each cut to `ECHO_MAX` first).
pub const REASON_MAX: usize = 512;

/// The pod as the event named it: no uid, workload or anything else read from the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Named {
    pub namespace: String,
    pub name: String,
}

impl From<&PodRef> for Named {
    fn from(p: &PodRef) -> Named {
        Named {
            namespace: p.namespace.clone(),
            name: p.name.clone(),
        }
    }
}

/// The answer to an event that was handled (every outcome is a success for the sender).
#[derive(Debug, Clone, Serialize)]
pub struct Handled {
    pub outcome: OutcomeKind,
    /// Bounded ([`REASON_MAX`]); never live-object data.
    pub reason: String,
    pub pod: Option<Named>,
    /// Bounded ([`RULE_MAX`]).
    pub rule: String,
    pub priority: Priority,
    pub input: InputKind,
    /// `true` on `held` (503): retrying later can succeed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<bool>,
    /// A containment's steps, taken (`contained`) or that would be (`dry-run`): fixed words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<&'static str>>,
}

impl Handled {
    /// The JSON serde writes for it; by hand when no pod is named (every skip): serde's
    /// serializer was a tenth of a skipped event's CPU.
    pub fn to_json(&self) -> Vec<u8> {
        self.skip_json(false)
            .unwrap_or_else(|| serde_json::to_vec(self).unwrap_or_default())
    }

    /// What serde_json writes for [`Reply::json`] of it (a `Value`: keys in order), which the
    /// result CloudEvent carries as its data; by hand when no pod is named (every skip), `None`
    /// otherwise (a pod or a containment's steps).
    pub fn to_value_json(&self) -> Option<Vec<u8>> {
        self.skip_json(true)
    }

    /// A reply naming no pod and no steps, written by hand: its members in the struct's order
    /// (serde's derive), or sorted by key (a `Value`'s map).
    fn skip_json(&self, sorted: bool) -> Option<Vec<u8>> {
        enum V<'a> {
            /// Fixed words: nothing to escape.
            Word(&'a str),
            Text(&'a str),
            Literal(&'static str),
        }
        if self.pod.is_some() || self.steps.is_some() {
            return None;
        }
        let retry = self
            .retry
            .map(|r| V::Literal(if r { "true" } else { "false" }));
        let mut members = [
            ("outcome", Some(V::Word(self.outcome.as_str()))),
            ("reason", Some(V::Text(&self.reason))),
            ("pod", Some(V::Literal("null"))),
            ("rule", Some(V::Text(&self.rule))),
            ("priority", Some(V::Word(self.priority.as_str()))),
            ("input", Some(V::Word(self.input.as_str()))),
            ("retry", retry),
        ];
        if sorted {
            members.sort_unstable_by_key(|m| m.0);
        }
        let mut out = Vec::with_capacity(96 + self.reason.len() + self.rule.len());
        for (key, value) in members {
            let Some(value) = value else { continue };
            out.push(if out.is_empty() { b'{' } else { b',' });
            out.push(b'"');
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\":");
            match value {
                V::Word(w) => {
                    out.push(b'"');
                    out.extend_from_slice(w.as_bytes());
                    out.push(b'"');
                }
                V::Text(t) => push_json_str(&mut out, t),
                V::Literal(l) => out.extend_from_slice(l.as_bytes()),
            }
        }
        out.push(b'}');
        Some(out)
    }
}

/// The answer to a request that could not be handled.
#[derive(Debug, Clone, Serialize)]
pub struct Failed {
    /// Names no live-object data (`ApiError::public`).
    pub error: String,
    /// The event field that was wrong (400 for an invalid identifier).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Set when the event was understood: whether a retry can help (503) or not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<InputKind>,
}

/// What a reply says: what was done with the event, why it could not be, or nothing.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum ReplyBody {
    Handled(Handled),
    Failed(Failed),
    /// Nothing to say (our own result came back): an empty 2xx.
    Empty,
}

/// The answer to one event, before it is written as HTTP (or printed by `once`).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub body: ReplyBody,
    /// Set when the event came as a CloudEvent: the answer must be one too (or empty).
    pub cloudevent: Option<CloudEventInfo>,
}

impl Reply {
    /// A failure; the message is cut to [`REASON_MAX`] (it may quote the sender's strings).
    pub fn error(status: StatusCode, message: impl Into<String>) -> Reply {
        Reply {
            status,
            body: ReplyBody::Failed(Failed {
                error: bounded_string(message.into(), REASON_MAX),
                field: None,
                retry: None,
                rule: None,
                priority: None,
                input: None,
            }),
            cloudevent: None,
        }
    }

    /// 503 + `Retry-After`: BODY_MEMORY_BYTES is taken by other requests' bodies and events.
    pub fn memory_busy() -> Reply {
        Reply::busy("too many request bodies in memory at once (BODY_MEMORY_BYTES): retry later")
    }

    /// 503 with `retry: true` and `Retry-After`: the server is busy, the same request may
    /// succeed in a moment.
    pub fn busy(why: &'static str) -> Reply {
        let mut reply = Reply::error(StatusCode::SERVICE_UNAVAILABLE, why);
        if let ReplyBody::Failed(f) = &mut reply.body {
            f.retry = Some(true);
        }
        reply
    }

    pub fn outcome(&self) -> Option<&str> {
        match &self.body {
            ReplyBody::Handled(h) => Some(h.outcome.as_str()),
            _ => None,
        }
    }

    /// The JSON body (`null` for an empty reply).
    pub fn json(&self) -> Value {
        serde_json::to_value(&self.body).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_pod_is_only_what_the_event_named_and_echoes_are_bounded() {
        let live = PodRef {
            namespace: "prod".into(),
            name: "web-0".into(),
            uid: Some("0f9a4c1e-1111-2222-3333-444455556666".into()),
            workload: Some("Deployment/web".into()),
        };
        let h = Handled {
            outcome: OutcomeKind::Deleted,
            reason: "the pod was deleted".into(),
            pod: Some(Named::from(&live)),
            rule: bounded_string("é".repeat(RULE_MAX), RULE_MAX),
            priority: Priority::Warning,
            input: InputKind::Plain,
            retry: None,
            steps: None,
        };
        let v: Value = serde_json::from_slice(&h.to_json()).unwrap();
        assert_eq!(
            v["pod"],
            serde_json::json!({"namespace": "prod", "name": "web-0"})
        );
        let rule = v["rule"].as_str().unwrap();
        assert!(
            rule.len() <= RULE_MAX && rule.len() > RULE_MAX - 2,
            "{}",
            rule.len()
        );
    }

    #[test]
    fn an_unknown_priority_is_never_echoed_whole() {
        let e = "\u{1}".repeat(1 << 20).parse::<Priority>().unwrap_err();
        // Cut to ECHO_MAX before quoting (six bytes a control character), then the sentence.
        assert!(e.len() < 6 * ECHO_MAX + 200, "{}", e.len());
        assert!(e.contains(crate::fastfmt::CUT_MARK), "{e}");
        let r = Reply::error(StatusCode::BAD_REQUEST, e);
        let ReplyBody::Failed(f) = &r.body else {
            panic!("{r:?}")
        };
        assert!(f.error.len() <= REASON_MAX && f.error.ends_with(crate::fastfmt::CUT_MARK));
    }

    proptest! {
        #[test]
        fn handled_json_is_serde_json(
            reason in any::<String>(),
            rule in any::<String>(),
            retry in prop::option::of(any::<bool>()),
            held in any::<bool>(),
        ) {
            let h = Handled {
                outcome: if held { OutcomeKind::Held(crate::domain::outcome::HeldBy::Floor) } else { OutcomeKind::Skipped },
                reason,
                pod: None,
                rule,
                priority: Priority::Warning,
                input: if held { InputKind::ArgoEvent } else { InputKind::CloudEventStructured },
                retry,
                steps: None,
            };
            prop_assert_eq!(
                String::from_utf8(h.to_json()).unwrap(),
                serde_json::to_string(&h).unwrap()
            );
            // What the result CloudEvent carries: the reply's `Value`, as serde_json writes it.
            let reply = Reply { status: StatusCode::OK, body: ReplyBody::Handled(h.clone()), cloudevent: None };
            prop_assert_eq!(
                String::from_utf8(h.to_value_json().unwrap()).unwrap(),
                serde_json::to_string(&reply.json()).unwrap()
            );
        }
    }
}
