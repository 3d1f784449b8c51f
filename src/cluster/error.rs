//! Errors of the Kubernetes side: the function could not act, so the sender must retry (503)
//! or a person must look (500); each with its metric label.

use std::time::Duration;

use http::StatusCode;

use crate::domain::falco::Target;

/// The function could not act: the sender must retry (5xx), the event is kept in the log.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ActionError {
    #[error("the Kubernetes API did not complete {step} within API_TIMEOUT_SECONDS ({}s)", .timeout.as_secs())]
    Timeout {
        step: &'static str,
        timeout: Duration,
    },
    #[error(
        "forbidden: the Kubernetes API refused to {verb} pod {namespace}/{name}: {message} \
         (grant {verb} on pods to this ServiceAccount: see the RBAC manifests)"
    )]
    Forbidden {
        verb: &'static str,
        namespace: String,
        name: String,
        message: String,
    },
    #[error("the Kubernetes API answered {code} to {verb} pod {namespace}/{name}: {message}")]
    Api {
        verb: &'static str,
        namespace: String,
        name: String,
        code: u16,
        message: String,
    },
    #[error("the Kubernetes API is unreachable ({verb} pod): {message}")]
    Unreachable { verb: &'static str, message: String },
    /// The API answered with another object than the one asked for: never acted on.
    #[error("refusing to act: {0}")]
    Mismatch(String),
    /// A guard could not be evaluated: no deletion around it.
    #[error(transparent)]
    Guard(#[from] GuardError),
    /// The pod's status has not caught up with a recent event yet: retry.
    #[error("cannot decide yet: {0}")]
    NotYet(String),
}

impl ActionError {
    /// 503 where a retry may help (timeouts, outages, throttling); 500 where it needs a human.
    pub fn status(&self) -> StatusCode {
        match self {
            ActionError::Guard(g) => g.status(),
            ActionError::Timeout { .. }
            | ActionError::Unreachable { .. }
            | ActionError::NotYet(_) => StatusCode::SERVICE_UNAVAILABLE,
            ActionError::Api { code, .. } if *code >= 500 || *code == 429 => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ActionError::Forbidden { .. } | ActionError::Api { .. } | ActionError::Mismatch(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// Low-cardinality label for the API error metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ActionError::Timeout { .. } => "timeout",
            ActionError::Forbidden { .. } => "forbidden",
            ActionError::Api { .. } => "api",
            ActionError::Unreachable { .. } => "unreachable",
            ActionError::Mismatch(_) => "mismatch",
            ActionError::Guard(g) => g.metric_label(),
            ActionError::NotYet(_) => "not-yet",
        }
    }
}

pub fn map_err(e: kube::Error, verb: &'static str, t: &Target) -> ActionError {
    match e {
        kube::Error::Api(s) if s.is_forbidden() => ActionError::Forbidden {
            verb,
            namespace: t.namespace.to_string(),
            name: t.name.to_string(),
            message: s.message.clone(),
        },
        kube::Error::Api(s) => ActionError::Api {
            verb,
            namespace: t.namespace.to_string(),
            name: t.name.to_string(),
            code: s.code,
            message: s.message.clone(),
        },
        other => ActionError::Unreachable {
            verb,
            message: error_chain(&other),
        },
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

/// A guard could not decide: the deletion does not happen, the sender is told why.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GuardError {
    #[error("the Kubernetes API did not complete {step} within API_TIMEOUT_SECONDS ({}s)", .timeout.as_secs())]
    Timeout {
        step: &'static str,
        timeout: Duration,
    },
    #[error(
        "forbidden: the Kubernetes API refused to {what}: {message} (grant {rbac} to this \
         ServiceAccount: see the guards' RBAC in the README)"
    )]
    Forbidden {
        what: String,
        rbac: &'static str,
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
}

impl GuardError {
    /// 503 where a retry may help, 500 where it needs a human (RBAC, a refusal).
    pub fn status(&self) -> http::StatusCode {
        match self {
            GuardError::Timeout { .. } | GuardError::Unreachable { .. } => {
                http::StatusCode::SERVICE_UNAVAILABLE
            }
            GuardError::Api { code, .. } if *code >= 500 || *code == 429 => {
                http::StatusCode::SERVICE_UNAVAILABLE
            }
            GuardError::Forbidden { .. } | GuardError::Api { .. } => {
                http::StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    pub fn metric_label(&self) -> &'static str {
        match self {
            GuardError::Timeout { .. } => "timeout",
            GuardError::Forbidden { .. } => "forbidden",
            GuardError::Api { .. } => "api",
            GuardError::Unreachable { .. } => "unreachable",
        }
    }
}

pub fn api_error(e: kube::Error, what: String, rbac: &'static str) -> GuardError {
    match e {
        kube::Error::Api(s) if s.is_forbidden() => GuardError::Forbidden {
            what,
            rbac,
            message: s.message.clone(),
        },
        kube::Error::Api(s) => GuardError::Api {
            what,
            code: s.code,
            message: s.message.clone(),
        },
        other => GuardError::Unreachable {
            what,
            message: other.to_string(),
        },
    }
}
