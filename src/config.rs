//! Configuration: environment variables read with envy, validated at start-up (a wrong value
//! stops the start, naming the variable). Their names are the public contract (README,
//! manifests); `ENV_VARS` lists them so tests can check every manifest against it. Each layer
//! gets only its part: the policy (`domain::policy`), the guards (`domain::guards`), the
//! containment (`domain::contain`), the server's limits (`Limits`).

use std::{path::PathBuf, str::FromStr, time::Duration};

use serde::Deserialize;

use crate::domain::{
    contain::{self, Action, Actions, ContainConfig},
    falco::Priority,
    ident::Namespace,
    policy::{Policy, Rules},
};

/// Every environment variable the binary reads. `BODY` is the one-shot input (Argo Workflows).
pub const ENV_VARS: &[&str] = &[
    "PORT",
    "RULES",
    "MIN_PRIORITY",
    "NAMESPACES",
    "PROTECTED_NAMESPACES",
    "UNPROTECT_BUILTIN_NAMESPACES",
    "DRY_RUN",
    "GRACE_PERIOD_SECONDS",
    "AUTH_TOKEN",
    "AUTH_TOKEN_FILE",
    "MAX_BODY_BYTES",
    "API_TIMEOUT_SECONDS",
    "LOG_FORMAT",
    "POD_NAMESPACE",
    "POD_NAME",
    "KUBE_TOKEN_FILE",
    "DEDUP_SECONDS",
    "REQUEST_TIMEOUT_SECONDS",
    "IDLE_TIMEOUT_SECONDS",
    "SHUTDOWN_DELAY_SECONDS",
    "BODY_MEMORY_BYTES",
    "ALLOW_FORCE_DELETE",
    "TRUST_PROTECT_ANNOTATION",
    "RUST_LOG",
    "BODY",
    // Workload-aware guards (domain::guards, domain::budget, cluster::evict).
    "SKIP_OWNER_KINDS",
    "MIN_AVAILABLE",
    "USE_EVICTION",
    "MAX_DELETIONS_PER_WORKLOAD",
    "MAX_DELETIONS",
    // Containment (domain::contain, cluster::contain).
    "ACTION",
    "CONTAIN_RULES",
    "DELETE_RULES",
    "CONTAIN_SECONDS",
    "EVIDENCE_LOG_BYTES",
    "EVIDENCE_MAX_CONFIGMAPS",
];

/// Where the in-cluster ServiceAccount namespace lives; the fallback for our own namespace.
pub const SA_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Env(String),
    #[error("invalid configuration: {var}={value:?}: {why}")]
    Value {
        var: &'static str,
        value: String,
        why: String,
    },
    #[error("invalid configuration: cannot read {var}={path:?}: {source}")]
    File {
        var: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The raw environment, as envy sees it. Kept private: `Config` is the validated form.
#[derive(Debug, Deserialize)]
struct Raw {
    port: Option<u16>,
    rules: Option<String>,
    min_priority: Option<String>,
    namespaces: Option<String>,
    protected_namespaces: Option<String>,
    unprotect_builtin_namespaces: Option<String>,
    dry_run: Option<String>,
    grace_period_seconds: Option<u32>,
    auth_token: Option<String>,
    auth_token_file: Option<PathBuf>,
    max_body_bytes: Option<usize>,
    api_timeout_seconds: Option<u64>,
    log_format: Option<String>,
    pod_namespace: Option<String>,
    pod_name: Option<String>,
    kube_token_file: Option<PathBuf>,
    dedup_seconds: Option<u64>,
    request_timeout_seconds: Option<u64>,
    idle_timeout_seconds: Option<u64>,
    shutdown_delay_seconds: Option<u64>,
    body_memory_bytes: Option<usize>,
    allow_force_delete: Option<String>,
    trust_protect_annotation: Option<String>,
    skip_owner_kinds: Option<String>,
    min_available: Option<String>,
    use_eviction: Option<String>,
    max_deletions_per_workload: Option<String>,
    max_deletions: Option<String>,
    action: Option<String>,
    contain_rules: Option<String>,
    delete_rules: Option<String>,
    contain_seconds: Option<String>,
    evidence_log_bytes: Option<String>,
    evidence_max_configmaps: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    /// RULES, MIN_PRIORITY, (PROTECTED_)NAMESPACES, POD_NAMESPACE, POD_NAME: what `decide` reads.
    pub policy: Policy,
    pub dry_run: bool,
    pub grace_period_seconds: Option<u32>,
    /// TRUST_PROTECT_ANNOTATION: honour the pod annotation `falco-responder/protect`, which
    /// whoever creates the pod sets (an attacker's pod too). Off by default.
    pub trust_protect_annotation: bool,
    /// The expected bearer token: AUTH_TOKEN, or the content of AUTH_TOKEN_FILE once `load_files` ran.
    pub auth_token: Option<String>,
    pub auth_token_file: Option<PathBuf>,
    pub max_body_bytes: usize,
    pub api_timeout: Duration,
    pub log_format: LogFormat,
    pub kube_token_file: Option<PathBuf>,
    pub dedup: Duration,
    /// SKIP_OWNER_KINDS, MIN_AVAILABLE, USE_EVICTION, MAX_DELETIONS(_PER_WORKLOAD).
    pub guards: crate::domain::guards::GuardConfig,
    /// Server limits: see `Limits`.
    pub limits: Limits,
    /// ACTION, CONTAIN_RULES, DELETE_RULES, CONTAIN_SECONDS, EVIDENCE_*: see `domain::contain`.
    pub contain: ContainConfig,
}

/// How long and how much one connection may take; each variable has a documented range and a
/// value outside it stops the start (README, configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// REQUEST_TIMEOUT_SECONDS (1..=300, default 10): first byte of a request to its whole body.
    pub request_timeout: Duration,
    /// IDLE_TIMEOUT_SECONDS (1..=3600, default 95): a connection without a request is closed.
    pub idle_timeout: Duration,
    /// SHUTDOWN_DELAY_SECONDS (0..=300, default 5): accept after SIGTERM while not ready.
    pub shutdown_delay: Duration,
    /// BODY_MEMORY_BYTES (2 × MAX_BODY_BYTES..=1 GiB, default 16 MiB): request bodies in memory at once.
    pub body_memory_bytes: usize,
}

impl Limits {
    fn from_raw(raw: &Raw, max_body_bytes: usize) -> Result<Limits, ConfigError> {
        fn ranged<T: PartialOrd + Copy + ToString>(
            var: &'static str,
            value: Option<T>,
            default: T,
            (min, max): (T, T),
        ) -> Result<T, ConfigError> {
            let v = value.unwrap_or(default);
            if v < min || v > max {
                return Err(ConfigError::Value {
                    var,
                    value: v.to_string(),
                    why: format!(
                        "must be between {} and {}",
                        min.to_string(),
                        max.to_string()
                    ),
                });
            }
            Ok(v)
        }
        let secs = Duration::from_secs;
        Ok(Limits {
            request_timeout: secs(ranged(
                "REQUEST_TIMEOUT_SECONDS",
                raw.request_timeout_seconds,
                10,
                (1, 300),
            )?),
            idle_timeout: secs(ranged(
                "IDLE_TIMEOUT_SECONDS",
                raw.idle_timeout_seconds,
                95,
                (1, 3600),
            )?),
            shutdown_delay: secs(ranged(
                "SHUTDOWN_DELAY_SECONDS",
                raw.shutdown_delay_seconds,
                5,
                (0, 300),
            )?),
            // A largest body must fit in the three quarters open to large bodies.
            body_memory_bytes: ranged(
                "BODY_MEMORY_BYTES",
                raw.body_memory_bytes,
                (16 << 20).max(2 * max_body_bytes),
                (2 * max_body_bytes, 1 << 30),
            )?,
        })
    }
}

/// The documented ranges of the numeric settings (README, configuration). Outside them the
/// process refuses to start: no value may overflow a deadline or make a DELETE a force delete
/// by accident.
pub const API_TIMEOUT_RANGE: (u64, u64) = (1, 300);
pub const DEDUP_RANGE: (u64, u64) = (0, 3600);
pub const MAX_BODY_RANGE: (u64, u64) = (1024, 16 * 1024 * 1024);
pub const GRACE_PERIOD_RANGE: (u64, u64) = (0, 86_400);

pub const DEFAULT_RULES: &str = "Terminal shell in container";
/// Always protected: PROTECTED_NAMESPACES adds to these, only UNPROTECT_BUILTIN_NAMESPACES
/// removes one (a list that replaced them would un-protect kube-system by naming `vault`).
pub const BUILTIN_PROTECTED: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// A comma list, trimmed. An empty element (`a,,b`, `,`) is a typo whose meaning nobody can
/// tell (`NAMESPACES=,` would be read as "every namespace"): it stops the start.
pub fn list(var: &'static str, s: &str) -> Result<Vec<String>, ConfigError> {
    s.split(',')
        .map(str::trim)
        .map(|item| {
            if item.is_empty() {
                return Err(ConfigError::Value {
                    var,
                    value: s.to_string(),
                    why: "an empty element in the comma list (a stray comma?)".into(),
                });
            }
            Ok(item.to_string())
        })
        .collect()
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

impl Config {
    /// Reads the process environment. Does not touch files: see `load_files`.
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Validates a set of variables exactly as at start-up. Unknown variables are ignored
    /// (platforms inject their own); empty values count as unset, as in most manifests.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        // AUTH_TOKEN is the exception: set but empty it would silently turn authentication
        // off (an empty AUTH_TOKEN_FILE is refused too).
        let vars = vars.into_iter().filter(|(k, v)| {
            ENV_VARS.contains(&k.as_str()) && (!v.trim().is_empty() || k == "AUTH_TOKEN")
        });
        let raw: Raw = envy::from_iter(vars).map_err(|e| {
            // envy names the variable in lower case; say it as the user wrote it.
            let mut msg = e.to_string();
            for var in ENV_VARS {
                msg = msg.replace(
                    &format!("provided by {}", var.to_lowercase()),
                    &format!("provided by {var}"),
                );
            }
            ConfigError::Env(msg)
        })?;
        let limits = Limits::from_raw(&raw, raw.max_body_bytes.unwrap_or(1024 * 1024))?;

        let rules = match raw.rules.as_deref().map(str::trim) {
            Some("*") => Rules::Any,
            Some(s) => {
                let names = list("RULES", s)?;
                if names.iter().any(|n| n == "*") {
                    Rules::Any
                } else {
                    Rules::Named(names)
                }
            }
            None => Rules::Named(vec![DEFAULT_RULES.to_string()]),
        };
        let contain = contain_config(&raw, &rules)?;
        let min_priority = match non_empty(raw.min_priority) {
            None => None,
            Some(p) => Some(Priority::from_str(&p).map_err(|why| ConfigError::Value {
                var: "MIN_PRIORITY",
                value: p.clone(),
                why,
            })?),
        };
        let dry_run = bool_var("DRY_RUN", raw.dry_run)?;
        let log_format = match non_empty(raw.log_format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::Value {
                    var: "LOG_FORMAT",
                    value: other.to_string(),
                    why: "expected text or json".into(),
                });
            }
        };
        let max_body_bytes = in_range(
            "MAX_BODY_BYTES",
            raw.max_body_bytes.map_or(1024 * 1024, |v| v as u64),
            MAX_BODY_RANGE,
        )? as usize;
        let api_timeout_seconds = in_range(
            "API_TIMEOUT_SECONDS",
            raw.api_timeout_seconds.unwrap_or(10),
            API_TIMEOUT_RANGE,
        )?;
        let dedup_seconds = in_range("DEDUP_SECONDS", raw.dedup_seconds.unwrap_or(5), DEDUP_RANGE)?;
        let allow_force_delete = bool_var("ALLOW_FORCE_DELETE", raw.allow_force_delete)?;
        let grace_period_seconds = match raw.grace_period_seconds {
            None => None,
            Some(g) => {
                in_range("GRACE_PERIOD_SECONDS", u64::from(g), GRACE_PERIOD_RANGE)?;
                if g == 0 && !allow_force_delete {
                    return Err(ConfigError::Value {
                        var: "GRACE_PERIOD_SECONDS",
                        value: "0".into(),
                        why: "0 is a force delete (the API forgets the pod before its containers stop); \
                              set ALLOW_FORCE_DELETE=true to mean it"
                            .into(),
                    });
                }
                Some(g)
            }
        };
        if raw.port == Some(0) {
            return Err(ConfigError::Value {
                var: "PORT",
                value: "0".into(),
                why: "must be between 1 and 65535".into(),
            });
        }
        let namespaces = raw
            .namespaces
            .as_deref()
            .map(|s| namespace_list("NAMESPACES", s))
            .transpose()?
            .filter(|l| !l.is_empty());
        let protected_namespaces = protected_namespaces(
            raw.protected_namespaces.as_deref(),
            raw.unprotect_builtin_namespaces.as_deref(),
        )?;
        let auth_token = match raw.auth_token {
            Some(t) if t.trim().is_empty() => {
                return Err(ConfigError::Value {
                    var: "AUTH_TOKEN",
                    value: t,
                    why: "set but empty: that would turn authentication off; unset AUTH_TOKEN \
                          to run without a token"
                        .into(),
                });
            }
            t => t.map(|t| t.trim().to_string()),
        };
        let own_namespace = non_empty(raw.pod_namespace)
            .map(|ns| {
                Namespace::parse("POD_NAMESPACE", &ns).map_err(|e| ConfigError::Value {
                    var: "POD_NAMESPACE",
                    value: ns.clone(),
                    why: e.why,
                })
            })
            .transpose()?;
        let guards = crate::domain::guards::GuardConfig::parse(
            non_empty(raw.skip_owner_kinds).as_deref(),
            non_empty(raw.min_available).as_deref(),
            Some(bool_var("USE_EVICTION", raw.use_eviction)?),
            non_empty(raw.max_deletions_per_workload).as_deref(),
            non_empty(raw.max_deletions).as_deref(),
        )
        .map_err(|(var, value, why)| ConfigError::Value { var, value, why })?;
        Ok(Config {
            guards,
            limits,
            contain,
            port: raw.port.unwrap_or(8080),
            policy: Policy {
                rules,
                min_priority,
                namespaces,
                protected_namespaces,
                // Else the in-cluster ServiceAccount file, once `load_files` ran.
                own_namespace,
                own_pod: non_empty(raw.pod_name),
            },
            dry_run,
            grace_period_seconds,
            trust_protect_annotation: bool_var(
                "TRUST_PROTECT_ANNOTATION",
                raw.trust_protect_annotation,
            )?,
            auth_token,
            auth_token_file: raw.auth_token_file,
            max_body_bytes,
            api_timeout: Duration::from_secs(api_timeout_seconds),
            log_format,
            kube_token_file: raw.kube_token_file,
            dedup: Duration::from_secs(dedup_seconds),
        })
    }

    /// Reads what lives in files: AUTH_TOKEN_FILE (an error if unreadable or empty) and, when
    /// POD_NAMESPACE is unset, the in-cluster ServiceAccount namespace (optional).
    pub fn load_files(mut self) -> Result<Config, ConfigError> {
        if let Some(path) = &self.auth_token_file {
            let token = std::fs::read_to_string(path).map_err(|source| ConfigError::File {
                var: "AUTH_TOKEN_FILE",
                path: path.clone(),
                source,
            })?;
            let token = token.trim().to_string();
            if token.is_empty() {
                return Err(ConfigError::Value {
                    var: "AUTH_TOKEN_FILE",
                    value: path.display().to_string(),
                    why: "the file is empty".into(),
                });
            }
            // AUTH_TOKEN_FILE wins: it is how Secrets are mounted, and rotation means a restart.
            self.auth_token = Some(token);
        }
        if let Some(path) = &self.kube_token_file {
            std::fs::metadata(path).map_err(|source| ConfigError::File {
                var: "KUBE_TOKEN_FILE",
                path: path.clone(),
                source,
            })?;
        }
        if self.policy.own_namespace.is_none() {
            self.policy.own_namespace = std::fs::read_to_string(SA_NAMESPACE_FILE)
                .ok()
                .and_then(|s| Namespace::parse("namespace file", s.trim()).ok());
        }
        self.check_own_namespace(std::env::var_os("KUBERNETES_SERVICE_HOST").is_some())?;
        Ok(self)
    }

    /// In a cluster the breaker's records and MIN_AVAILABLE's reservations must go to the
    /// function's own namespace: falling back to `default` would write them where others may
    /// forge them, or nowhere. Outside a cluster `default` stays the fallback (a kubeconfig
    /// user, a test).
    fn check_own_namespace(&self, in_cluster: bool) -> Result<(), ConfigError> {
        let records = self.guards.max_deletions.is_some()
            || self.guards.max_deletions_per_workload.is_some()
            || self.guards.min_available.is_some()
            || self.contain.actions.can_contain();
        if in_cluster && records && self.policy.own_namespace.is_none() {
            return Err(ConfigError::Value {
                var: "POD_NAMESPACE",
                value: String::new(),
                why: format!(
                    "running in a cluster (KUBERNETES_SERVICE_HOST is set) with the deletion \
                     breaker or MIN_AVAILABLE on, but the function's own namespace, where their \
                     records (and containment's evidence) go, is unknown (POD_NAMESPACE unset, no {SA_NAMESPACE_FILE}): set \
                     POD_NAMESPACE (downward API metadata.namespace), or turn the breaker off \
                     (MAX_DELETIONS=off and MAX_DELETIONS_PER_WORKLOAD=off) and MIN_AVAILABLE \
                     with it"
                ),
            });
        }
        Ok(())
    }
}

fn in_range(var: &'static str, value: u64, (min, max): (u64, u64)) -> Result<u64, ConfigError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::Value {
            var,
            value: value.to_string(),
            why: format!("must be between {min} and {max}"),
        })
    }
}

/// A comma list of namespaces, each a valid name: a typo such as `Kube-System` would otherwise
/// silently protect nothing.
fn namespace_list(var: &'static str, s: &str) -> Result<Vec<Namespace>, ConfigError> {
    list(var, s)?
        .into_iter()
        .map(|ns| {
            Namespace::parse(var, &ns).map_err(|e| ConfigError::Value {
                var,
                value: ns.clone(),
                why: e.why,
            })
        })
        .collect()
}

/// The built-in protected namespaces, less UNPROTECT_BUILTIN_NAMESPACES (each must be one of
/// them), plus PROTECTED_NAMESPACES.
fn protected_namespaces(
    added: Option<&str>,
    removed: Option<&str>,
) -> Result<Vec<Namespace>, ConfigError> {
    let var = "UNPROTECT_BUILTIN_NAMESPACES";
    let removed = removed.map(|r| namespace_list(var, r)).transpose()?;
    let removed = removed.unwrap_or_default();
    if let Some(ns) = removed
        .iter()
        .find(|ns| !BUILTIN_PROTECTED.contains(&ns.as_str()))
    {
        return Err(ConfigError::Value {
            var,
            value: ns.to_string(),
            why: format!(
                "not a built-in protected namespace (one of {}); PROTECTED_NAMESPACES only adds",
                BUILTIN_PROTECTED.join(", ")
            ),
        });
    }
    let mut all: Vec<Namespace> = BUILTIN_PROTECTED
        .iter()
        .map(|ns| Namespace::parse(var, ns).expect("a valid name"))
        .filter(|ns| !removed.contains(ns))
        .collect();
    for ns in added
        .map(|a| namespace_list("PROTECTED_NAMESPACES", a))
        .transpose()?
        .into_iter()
        .flatten()
    {
        if !all.contains(&ns) {
            all.push(ns);
        }
    }
    Ok(all)
}

/// ACTION, CONTAIN_RULES, DELETE_RULES, CONTAIN_SECONDS, EVIDENCE_LOG_BYTES,
/// EVIDENCE_MAX_CONFIGMAPS. A rule in both lists, or one RULES does not name (it could never
/// apply), stops the start.
fn contain_config(raw: &Raw, rules: &Rules) -> Result<ContainConfig, ConfigError> {
    let default = match raw.action.as_deref().map(str::trim) {
        None | Some("") | Some("delete") => Action::Delete,
        Some("contain") => Action::Contain,
        Some(other) => {
            return Err(ConfigError::Value {
                var: "ACTION",
                value: other.to_string(),
                why: "expected delete or contain".into(),
            });
        }
    };
    let named = |var: &'static str, v: &Option<String>| -> Result<Vec<String>, ConfigError> {
        let Some(v) = non_empty(v.clone()) else {
            return Ok(Vec::new());
        };
        let names = list(var, &v)?;
        if let Rules::Named(acted) = rules
            && let Some(n) = names.iter().find(|n| !acted.contains(n))
        {
            return Err(ConfigError::Value {
                var,
                value: n.clone(),
                why: "not one of the rules acted on (RULES): it could never apply".into(),
            });
        }
        Ok(names)
    };
    let contain_rules = named("CONTAIN_RULES", &raw.contain_rules)?;
    let delete_rules = named("DELETE_RULES", &raw.delete_rules)?;
    if let Some(both) = contain_rules.iter().find(|r| delete_rules.contains(r)) {
        return Err(ConfigError::Value {
            var: "CONTAIN_RULES",
            value: both.clone(),
            why: "also in DELETE_RULES: a rule has one action".into(),
        });
    }
    let number = |var: &'static str, v: &Option<String>, default: u64, (min, max): (u64, u64)| {
        let Some(v) = non_empty(v.clone()) else {
            return Ok(default);
        };
        let n: u64 = v.parse().map_err(|_| ConfigError::Value {
            var,
            value: v.clone(),
            why: format!("expected a whole number between {min} and {max}"),
        })?;
        in_range(var, n, (min, max))
    };
    let seconds = number(
        "CONTAIN_SECONDS",
        &raw.contain_seconds,
        0,
        (0, u64::from(contain::CONTAIN_SECONDS_MAX)),
    )?;
    let log_bytes = number(
        "EVIDENCE_LOG_BYTES",
        &raw.evidence_log_bytes,
        contain::LOG_BYTES_DEFAULT as u64,
        (1, contain::LOG_BYTES_MAX as u64),
    )?;
    let max_configmaps = number(
        "EVIDENCE_MAX_CONFIGMAPS",
        &raw.evidence_max_configmaps,
        contain::MAX_CONFIGMAPS_DEFAULT as u64,
        (1, contain::MAX_CONFIGMAPS_MAX as u64),
    )?;
    Ok(ContainConfig {
        actions: Actions {
            default,
            contain_rules,
            delete_rules,
        },
        // 0: never killed, isolated until a person deletes it.
        seconds: (seconds > 0).then_some(seconds as u32),
        log_bytes: log_bytes as usize,
        max_configmaps: max_configmaps as usize,
    })
}

/// A boolean variable; unset is false.
fn bool_var(var: &'static str, value: Option<String>) -> Result<bool, ConfigError> {
    match non_empty(value) {
        None => Ok(false),
        Some(v) => parse_bool(&v).ok_or(ConfigError::Value {
            var,
            value: v,
            why: "expected true or false".into(),
        }),
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn defaults_match_the_documented_contract() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.port, 8080);
        assert_eq!(
            c.policy.rules,
            Rules::Named(vec!["Terminal shell in container".into()])
        );
        assert_eq!(c.policy.min_priority, None);
        assert_eq!(c.policy.namespaces, None);
        let protected: Vec<&str> = c
            .policy
            .protected_namespaces
            .iter()
            .map(|n| n.as_str())
            .collect();
        assert_eq!(protected, ["kube-system", "kube-public", "kube-node-lease"]);
        assert!(!c.dry_run);
        assert!(!c.trust_protect_annotation);
        assert_eq!(c.grace_period_seconds, None);
        assert_eq!(c.auth_token, None);
        assert_eq!(c.max_body_bytes, 1_048_576);
        assert_eq!(c.api_timeout, Duration::from_secs(10));
        assert_eq!(c.log_format, LogFormat::Text);
    }

    #[test]
    fn lists_are_trimmed_and_star_means_any_rule() {
        let c = cfg(&[
            ("RULES", " Terminal shell in container , Write below etc "),
            ("NAMESPACES", "prod, staging"),
        ])
        .unwrap();
        assert_eq!(
            c.policy.rules,
            Rules::Named(vec![
                "Terminal shell in container".into(),
                "Write below etc".into()
            ])
        );
        let names: Vec<&str> = c
            .policy
            .namespaces
            .iter()
            .flatten()
            .map(|n| n.as_str())
            .collect();
        assert_eq!(names, ["prod", "staging"]);
        assert_eq!(cfg(&[("RULES", "*")]).unwrap().policy.rules, Rules::Any);
    }

    #[test]
    fn priority_any_case_and_info_alias() {
        assert_eq!(
            cfg(&[("MIN_PRIORITY", "warning")])
                .unwrap()
                .policy
                .min_priority,
            Some(Priority::Warning)
        );
        assert_eq!(
            cfg(&[("MIN_PRIORITY", "Info")])
                .unwrap()
                .policy
                .min_priority,
            Some(Priority::Informational)
        );
    }

    #[test]
    fn invalid_values_name_the_variable() {
        for (var, value) in [
            ("MIN_PRIORITY", "severe"),
            ("GRACE_PERIOD_SECONDS", "soon"),
            ("PORT", "http"),
            ("MAX_BODY_BYTES", "1MB"),
            ("API_TIMEOUT_SECONDS", "-1"),
            ("DRY_RUN", "maybe"),
            ("LOG_FORMAT", "xml"),
            ("DEDUP_SECONDS", "x"),
        ] {
            let err = cfg(&[(var, value)]).unwrap_err().to_string();
            assert!(err.contains(var), "{var}={value}: {err}");
        }
    }

    #[test]
    fn server_limits_have_documented_defaults_and_ranges() {
        let l = cfg(&[]).unwrap().limits;
        assert_eq!(l.request_timeout, Duration::from_secs(10));
        assert_eq!(l.idle_timeout, Duration::from_secs(95));
        assert_eq!(l.shutdown_delay, Duration::from_secs(5));
        assert_eq!(l.body_memory_bytes, 16 << 20);
        assert_eq!(
            cfg(&[("SHUTDOWN_DELAY_SECONDS", "0")])
                .unwrap()
                .limits
                .shutdown_delay,
            Duration::ZERO
        );
        // A larger MAX_BODY_BYTES raises the default budget with it.
        let big = cfg(&[("MAX_BODY_BYTES", "16777216")]).unwrap().limits;
        assert_eq!(big.body_memory_bytes, 32 << 20);
        for (var, value) in [
            ("REQUEST_TIMEOUT_SECONDS", "0"),
            ("REQUEST_TIMEOUT_SECONDS", "301"),
            ("IDLE_TIMEOUT_SECONDS", "0"),
            ("IDLE_TIMEOUT_SECONDS", "3601"),
            ("SHUTDOWN_DELAY_SECONDS", "301"),
            ("BODY_MEMORY_BYTES", "1048575"),
            ("BODY_MEMORY_BYTES", "1073741825"),
            ("IDLE_TIMEOUT_SECONDS", "soon"),
        ] {
            let err = cfg(&[(var, value)]).unwrap_err().to_string();
            assert!(err.contains(var), "{var}={value}: {err}");
        }
        let err = cfg(&[("BODY_MEMORY_BYTES", "1000")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("between 2097152 and 1073741824"), "{err}");
    }

    #[test]
    fn out_of_range_values_refuse_to_start_naming_the_variable() {
        for (var, value) in [
            ("API_TIMEOUT_SECONDS", "0"),
            ("API_TIMEOUT_SECONDS", "301"),
            ("API_TIMEOUT_SECONDS", "18446744073709551615"),
            ("DEDUP_SECONDS", "3601"),
            ("DEDUP_SECONDS", "18446744073709551615"),
            ("MAX_BODY_BYTES", "1023"),
            ("MAX_BODY_BYTES", "16777217"),
            ("MAX_BODY_BYTES", "0"),
            ("GRACE_PERIOD_SECONDS", "86401"),
            ("GRACE_PERIOD_SECONDS", "4294967295"),
            ("GRACE_PERIOD_SECONDS", "0"),
            ("PORT", "0"),
            ("PORT", "65536"),
            ("ALLOW_FORCE_DELETE", "perhaps"),
            ("TRUST_PROTECT_ANNOTATION", "perhaps"),
            ("NAMESPACES", "prod,Kube-System"),
            ("PROTECTED_NAMESPACES", "kube-system,vault/x"),
            ("POD_NAMESPACE", "Bad Name"),
        ] {
            let err = cfg(&[(var, value)]).unwrap_err().to_string();
            assert!(err.contains(var), "{var}={value}: {err}");
        }
        // The documented edges are accepted.
        for (var, value) in [
            ("API_TIMEOUT_SECONDS", "1"),
            ("API_TIMEOUT_SECONDS", "300"),
            ("DEDUP_SECONDS", "0"),
            ("DEDUP_SECONDS", "3600"),
            ("MAX_BODY_BYTES", "1024"),
            ("MAX_BODY_BYTES", "16777216"),
            ("GRACE_PERIOD_SECONDS", "86400"),
        ] {
            assert!(cfg(&[(var, value)]).is_ok(), "{var}={value}");
        }
        // 0 is a force delete: only with the explicit opt-in.
        let c = cfg(&[
            ("GRACE_PERIOD_SECONDS", "0"),
            ("ALLOW_FORCE_DELETE", "true"),
        ])
        .unwrap();
        assert_eq!(c.grace_period_seconds, Some(0));
    }

    fn protected(c: &Config) -> Vec<&str> {
        c.policy
            .protected_namespaces
            .iter()
            .map(|n| n.as_str())
            .collect()
    }

    #[test]
    fn the_built_in_protected_namespaces_stay_unless_unprotected_by_name() {
        let c = cfg(&[("PROTECTED_NAMESPACES", "vault, kube-system")]).unwrap();
        assert_eq!(
            protected(&c),
            ["kube-system", "kube-public", "kube-node-lease", "vault"]
        );
        let c = cfg(&[
            ("UNPROTECT_BUILTIN_NAMESPACES", "kube-public"),
            ("PROTECTED_NAMESPACES", "vault"),
        ])
        .unwrap();
        assert_eq!(protected(&c), ["kube-system", "kube-node-lease", "vault"]);
        for bad in ["vault", "kube-public,,kube-system", "Kube-Public"] {
            let err = cfg(&[("UNPROTECT_BUILTIN_NAMESPACES", bad)])
                .unwrap_err()
                .to_string();
            assert!(err.contains("UNPROTECT_BUILTIN_NAMESPACES"), "{bad}: {err}");
        }
    }

    #[test]
    fn an_empty_element_in_any_list_stops_the_start_naming_the_variable() {
        for (var, value) in [
            ("PROTECTED_NAMESPACES", ","),
            ("PROTECTED_NAMESPACES", "vault,"),
            ("NAMESPACES", ","),
            ("NAMESPACES", "prod,,staging"),
            ("RULES", "a,,b"),
            ("RULES", "*,"),
            ("SKIP_OWNER_KINDS", "Job,"),
            ("UNPROTECT_BUILTIN_NAMESPACES", ","),
        ] {
            let err = cfg(&[(var, value)]).unwrap_err().to_string();
            assert!(
                err.contains(var) && err.contains("empty element"),
                "{var}={value}: {err}"
            );
        }
    }

    #[test]
    fn a_bare_owner_kind_must_be_a_built_in_one() {
        let err = cfg(&[("SKIP_OWNER_KINDS", "Deployments")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("SKIP_OWNER_KINDS") && err.contains("Rollout.argoproj.io"),
            "{err}"
        );
        let c = cfg(&[("SKIP_OWNER_KINDS", "statefulset,Rollout.argoproj.io")]).unwrap();
        assert_eq!(c.guards.skip_owner_kinds.0.len(), 2);
    }

    #[test]
    fn an_auth_token_set_but_empty_stops_the_start() {
        for value in ["", "  "] {
            let err = cfg(&[("AUTH_TOKEN", value)]).unwrap_err().to_string();
            assert!(err.contains("AUTH_TOKEN") && err.contains("empty"), "{err}");
        }
        assert_eq!(cfg(&[]).unwrap().auth_token, None);
        let c = cfg(&[("AUTH_TOKEN", " s3cret ")]).unwrap();
        assert_eq!(c.auth_token.as_deref(), Some("s3cret"));
    }

    #[test]
    fn in_a_cluster_the_breaker_needs_the_functions_own_namespace() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.policy.own_namespace, None);
        let err = c.check_own_namespace(true).unwrap_err().to_string();
        assert!(err.contains("POD_NAMESPACE"), "{err}");
        // Outside a cluster `default` stays the fallback.
        assert!(c.check_own_namespace(false).is_ok());
        // Known, or the breaker off: nothing to refuse.
        let known = cfg(&[("POD_NAMESPACE", "falco")]).unwrap();
        assert!(known.check_own_namespace(true).is_ok());
        let off = cfg(&[
            ("MAX_DELETIONS", "off"),
            ("MAX_DELETIONS_PER_WORKLOAD", "off"),
        ])
        .unwrap();
        assert!(off.check_own_namespace(true).is_ok());
        let one = cfg(&[("MAX_DELETIONS", "off")]).unwrap();
        assert!(one.check_own_namespace(true).is_err());
        // MIN_AVAILABLE's reservations go there too.
        let floor = cfg(&[
            ("MAX_DELETIONS", "off"),
            ("MAX_DELETIONS_PER_WORKLOAD", "off"),
            ("MIN_AVAILABLE", "1"),
        ])
        .unwrap();
        assert!(floor.check_own_namespace(true).is_err());
    }

    #[test]
    fn empty_values_count_as_unset() {
        let c = cfg(&[("GRACE_PERIOD_SECONDS", ""), ("MIN_PRIORITY", " ")]).unwrap();
        assert_eq!(c.grace_period_seconds, None);
        assert_eq!(c.policy.min_priority, None);
    }

    #[test]
    fn auth_token_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        let c = cfg(&[("AUTH_TOKEN_FILE", path.to_str().unwrap())])
            .unwrap()
            .load_files()
            .unwrap();
        assert_eq!(c.auth_token.as_deref(), Some("s3cret"));
        let missing = cfg(&[("AUTH_TOKEN_FILE", "/nonexistent/token")])
            .unwrap()
            .load_files();
        assert!(missing.unwrap_err().to_string().contains("AUTH_TOKEN_FILE"));
    }

    #[test]
    fn containment_settings_are_validated_naming_the_variable() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.contain, ContainConfig::default());
        assert!(!c.contain.actions.can_contain());
        let c = cfg(&[
            ("ACTION", "contain"),
            ("RULES", "a,b"),
            ("DELETE_RULES", "b"),
            ("CONTAIN_SECONDS", "600"),
            ("EVIDENCE_LOG_BYTES", "1024"),
            ("EVIDENCE_MAX_CONFIGMAPS", "5"),
        ])
        .unwrap();
        assert_eq!(c.contain.actions.for_rule("a"), Action::Contain);
        assert_eq!(c.contain.actions.for_rule("b"), Action::Delete);
        assert_eq!(c.contain.seconds, Some(600));
        assert_eq!((c.contain.log_bytes, c.contain.max_configmaps), (1024, 5));
        assert_eq!(
            cfg(&[("CONTAIN_SECONDS", "0")]).unwrap().contain.seconds,
            None
        );
        for (vars, var) in [
            (&[("ACTION", "quarantine")][..], "ACTION"),
            (&[("CONTAIN_SECONDS", "2592001")][..], "CONTAIN_SECONDS"),
            (&[("CONTAIN_SECONDS", "-1")][..], "CONTAIN_SECONDS"),
            (
                &[("EVIDENCE_LOG_BYTES", "262145")][..],
                "EVIDENCE_LOG_BYTES",
            ),
            (
                &[("EVIDENCE_MAX_CONFIGMAPS", "0")][..],
                "EVIDENCE_MAX_CONFIGMAPS",
            ),
            (
                &[
                    ("RULES", "a,b"),
                    ("CONTAIN_RULES", "a"),
                    ("DELETE_RULES", "a"),
                ][..],
                "CONTAIN_RULES",
            ),
            (
                &[("RULES", "a"), ("CONTAIN_RULES", "c")][..],
                "CONTAIN_RULES",
            ),
            // Unset RULES is its default list: another name could never apply either.
            (&[("DELETE_RULES", "c")][..], "DELETE_RULES"),
        ] {
            let e = cfg(vars).unwrap_err().to_string();
            assert!(e.contains(var), "{vars:?}: {e}");
        }
        // RULES=* acts on every rule: any name may be listed.
        assert!(cfg(&[("RULES", "*"), ("CONTAIN_RULES", "c")]).is_ok());
        // Containment writes evidence to the function's namespace: it must be known in a cluster.
        let c = cfg(&[
            ("ACTION", "contain"),
            ("MAX_DELETIONS", "off"),
            ("MAX_DELETIONS_PER_WORKLOAD", "off"),
        ])
        .unwrap();
        assert!(c.check_own_namespace(true).is_err());
    }
}
