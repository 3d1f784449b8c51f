//! The one error of the Kubernetes side: the function could not act, so the sender must retry
//! (503) or a person must look (500). Its HTTP status and metric label are decided here, and so
//! is what a `kube::Error` and a missed deadline become.

use std::time::Duration;

use http::StatusCode;
use tokio::time::Instant;

use crate::domain::{
    falco::Target,
    step::{MayHaveHappened, Undecided},
};

/// The function could not act: the sender must retry (5xx), the event is kept in the log.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("the Kubernetes API did not complete {step} within API_TIMEOUT_SECONDS ({}s)", .timeout.as_secs())]
    Timeout {
        step: &'static str,
        timeout: Duration,
    },
    #[error(
        "forbidden: the Kubernetes API refused to {what}: {message} (grant {grant} to this \
         ServiceAccount: see {see})"
    )]
    Forbidden {
        what: String,
        grant: String,
        see: &'static str,
        message: String,
    },
    #[error("the Kubernetes API answered {code} to {what}: {message}")]
    Api {
        what: String,
        code: u16,
        message: String,
    },
    #[error("the Kubernetes API is unreachable ({what}): {message}")]
    Unreachable { what: String, message: String },
    /// The API answered with another object than the one asked for: never acted on.
    #[error("refusing to act: {0}")]
    Mismatch(String),
    /// The pod's status has not caught up with a recent event yet: retry.
    #[error("cannot decide yet: {0}")]
    NotYet(String),
    /// An object under a name the function uses is someone else's: never acted on.
    #[error("refusing to act: {0}")]
    Forged(String),
}

impl ApiError {
    /// 503 where a retry may help (timeouts, outages, throttling); 500 where it needs a human.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Timeout { .. } | ApiError::Unreachable { .. } | ApiError::NotYet(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Api { code, .. } if *code >= 500 || *code == 429 => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Forbidden { .. }
            | ApiError::Api { .. }
            | ApiError::Mismatch(_)
            | ApiError::Forged(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message a reply gives: what failed and what to grant, never the names, uids or
    /// messages of live objects (the API server's messages quote them; a guard's call names the
    /// pod's workload). The log line carries the whole error.
    pub fn public(&self) -> String {
        match self {
            ApiError::Timeout { .. } => self.to_string(),
            ApiError::Forbidden { grant, see, .. } => format!(
                "forbidden: the Kubernetes API refused a call this event needed (grant {grant} \
                 to this ServiceAccount: see {see}); the log line names the call"
            ),
            ApiError::Api { code, .. } => format!(
                "the Kubernetes API answered {code} to a call this event needed; the log line \
                 names the call"
            ),
            // Not the transport's message: a response that failed to decode quotes its data.
            ApiError::Unreachable { .. } => "the Kubernetes API is unreachable or did not answer \
                                             within API_TIMEOUT_SECONDS (the client's read \
                                             timeout); the log line has the cause"
                .into(),
            ApiError::Mismatch(_) => {
                "refusing to act: the API returned another object than the one asked for".into()
            }
            ApiError::NotYet(_) => "cannot decide yet: the pod's status has not caught up with \
                                    the event; retry"
                .into(),
            ApiError::Forged(_) => "refusing to contain: an object under a name the function \
                                    uses is not its own; a person must look (the log line names \
                                    it)"
            .into(),
        }
    }

    /// Low-cardinality label for the API error metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ApiError::Timeout { .. } => "timeout",
            ApiError::Forbidden { .. } => "forbidden",
            ApiError::Api { .. } => "api",
            ApiError::Unreachable { .. } => "unreachable",
            ApiError::Mismatch(_) => "mismatch",
            ApiError::NotYet(_) => "not-yet",
            ApiError::Forged(_) => "forged",
        }
    }
}

impl MayHaveHappened for ApiError {
    /// A call the API refused (4xx) did nothing; a deadline missed, a connection lost or a
    /// server error (etcd may have committed before the 5xx) leave it open.
    fn may_have_happened(&self) -> bool {
        match self {
            ApiError::Timeout { .. } | ApiError::Unreachable { .. } => true,
            ApiError::Api { code, .. } => *code >= 500,
            ApiError::Forbidden { .. }
            | ApiError::Mismatch(_)
            | ApiError::NotYet(_)
            | ApiError::Forged(_) => false,
        }
    }
}

impl From<Undecided> for ApiError {
    fn from(u: Undecided) -> ApiError {
        match u {
            Undecided::Mismatch(reason) => ApiError::Mismatch(reason),
            Undecided::NotYet(reason) => ApiError::NotYet(reason),
            Undecided::Forged(reason) => ApiError::Forged(reason),
        }
    }
}

/// The call an error is about, as its messages name it, and the grant that would allow it.
pub struct Call {
    what: String,
    /// How an unreachable API names the call (the pod calls say the verb only).
    unreachable: String,
    grant: String,
    see: &'static str,
    /// Whether an unreachable API's message carries the error's sources.
    chain: bool,
}

impl Call {
    /// A call on the event's pod: GET, DELETE, eviction.
    pub fn pod(verb: &'static str, t: &Target) -> Call {
        Call {
            what: format!("{verb} pod {}/{}", t.namespace, t.name),
            unreachable: format!("{verb} pod"),
            grant: format!("{verb} on pods"),
            see: "the RBAC manifests",
            chain: true,
        }
    }

    /// A call a guard makes: `what` it did, `rbac` it needs.
    pub fn guard(what: String, rbac: &'static str) -> Call {
        Call {
            unreachable: what.clone(),
            what,
            grant: rbac.into(),
            see: "the guards' RBAC in the README",
            chain: false,
        }
    }

    /// A containment's call: `what` it did, the grant it needs.
    pub fn contain(what: String, grant: &'static str) -> Call {
        Call {
            unreachable: what.clone(),
            what,
            grant: grant.into(),
            see: "the containment RBAC in the README",
            chain: false,
        }
    }

    /// What the API's refusal or a transport error means for this call.
    pub fn failed(self, e: kube::Error) -> ApiError {
        match e {
            kube::Error::Api(s) if s.is_forbidden() => ApiError::Forbidden {
                what: self.what,
                grant: self.grant,
                see: self.see,
                message: s.message,
            },
            kube::Error::Api(s) => ApiError::Api {
                what: self.what,
                code: s.code,
                message: s.message,
            },
            other => ApiError::Unreachable {
                what: self.unreachable,
                message: if self.chain {
                    error_chain(&other)
                } else {
                    other.to_string()
                },
            },
        }
    }
}

/// The error with its sources: kube's top-level messages alone ("ServiceError: ...") hide the cause.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let s_msg = s.to_string();
        if !msg.contains(&s_msg) {
            msg.push_str(": ");
            msg.push_str(&s_msg);
        }
        src = s.source();
    }
    msg
}

/// The one deadline every call of an event shares (API_TIMEOUT_SECONDS from its start).
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
    timeout: Duration,
}

impl Deadline {
    pub fn starting_now(timeout: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + timeout,
            timeout,
        }
    }

    /// `fut`'s output, or a timeout naming `step` once the deadline has passed.
    pub async fn within<T>(
        &self,
        step: &'static str,
        fut: impl Future<Output = T>,
    ) -> Result<T, ApiError> {
        tokio::time::timeout_at(self.at, fut)
            .await
            .map_err(|_| ApiError::Timeout {
                step,
                timeout: self.timeout,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_message_names_no_live_object() {
        let secret = "web-7d9f-x2 0f9a4c1e-1111-2222-3333-444455556666 node-1";
        for e in [
            ApiError::Forbidden {
                what: format!("get the owner of pod {secret}"),
                grant: "get on replicasets (apps) and jobs (batch)".into(),
                see: "the guards' RBAC in the README",
                message: secret.into(),
            },
            ApiError::Api {
                what: secret.into(),
                code: 422,
                message: secret.into(),
            },
            ApiError::Unreachable {
                what: secret.into(),
                message: secret.into(),
            },
            ApiError::Mismatch(secret.into()),
            ApiError::Forged(secret.into()),
            ApiError::NotYet(secret.into()),
        ] {
            let public = e.public();
            assert!(e.to_string().contains(secret), "{e}");
            assert!(
                !public.contains("node-1") && !public.contains("web-7d9f"),
                "{public}"
            );
            assert!(!public.contains("0f9a4c1e"), "{public}");
        }
    }
}
