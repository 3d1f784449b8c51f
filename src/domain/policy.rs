//! Event + policy → what to do. Pure: the checks that need the live pod (identity, opt-out
//! annotation, terminating) are in `identity`. The policy is the part of the configuration these
//! checks read, and nothing else: `config` builds it from RULES, MIN_PRIORITY, NAMESPACES,
//! PROTECTED_NAMESPACES, POD_NAMESPACE and POD_NAME.

use crate::domain::{
    falco::{FalcoEvent, NoTarget, Priority, Target},
    ident::{InvalidIdent, Namespace},
};

/// Which Falco rules lead to deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rules {
    Any,
    Named(Vec<String>),
}

impl Rules {
    pub fn matches(&self, rule: &str) -> bool {
        match self {
            Rules::Any => true,
            Rules::Named(names) => names.iter().any(|n| n == rule),
        }
    }
}

/// Which events lead to deletion, and which pods are never touched.
#[derive(Debug, Clone)]
pub struct Policy {
    /// RULES.
    pub rules: Rules,
    /// MIN_PRIORITY.
    pub min_priority: Option<Priority>,
    /// NAMESPACES: `None` is every namespace.
    pub namespaces: Option<Vec<Namespace>>,
    /// PROTECTED_NAMESPACES: never touched, even when in NAMESPACES.
    pub protected_namespaces: Vec<Namespace>,
    /// Our own namespace: POD_NAMESPACE, else the in-cluster ServiceAccount file.
    pub own_namespace: Option<Namespace>,
    /// POD_NAME.
    pub own_pod: Option<String>,
}

/// Falcosidekick's synthetic event (`/test` endpoint); it bypasses every minimum priority.
pub const TEST_RULE: &str = "Test rule";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Delete(Target),
    /// Nothing to do; `target` is the pod when the event named one.
    Skip {
        reason: String,
        target: Option<Target>,
    },
    /// The event names an identifier that cannot be a Kubernetes one: refused (400), never
    /// looked up, never retried.
    Invalid(InvalidIdent),
}

fn skip(reason: impl Into<String>, target: Option<Target>) -> Decision {
    Decision::Skip {
        reason: reason.into(),
        target,
    }
}

/// The checks that need only the rule, the priority and the source: why to skip the event, if
/// so. `decide` starts with them; `App::handle` runs them first on a plain body's few fields
/// (`decode::peek_plain`), so a flood of events we do not act on never builds the whole event.
pub fn skip_early(
    rule: &str,
    priority: Priority,
    source: Option<&str>,
    cfg: &Policy,
) -> Option<String> {
    if rule == TEST_RULE {
        return Some("Falcosidekick test event (rule \"Test rule\")".into());
    }
    if source == Some("internal") {
        return Some("Falco internal event (source \"internal\")".into());
    }
    if !cfg.rules.matches(rule) {
        // Built by hand: this is the reason of nearly every skipped event.
        let mut reason = String::with_capacity(rule.len() + 24);
        reason.push_str("rule ");
        crate::fastfmt::push_debug_str(&mut reason, rule);
        reason.push_str(" is not in RULES");
        return Some(reason);
    }
    if let Some(min) = cfg.min_priority
        && priority < min
    {
        return Some(format!("priority {priority} is below MIN_PRIORITY {min}"));
    }
    None
}

pub fn decide(event: &FalcoEvent, cfg: &Policy) -> Decision {
    if let Some(reason) = skip_early(&event.rule, event.priority, event.source.as_deref(), cfg) {
        return skip(reason, None);
    }
    let target = match event.target() {
        Ok(t) => t,
        Err(NoTarget::Invalid(e)) => return Decision::Invalid(e),
        Err(e) => return skip(e.to_string(), None),
    };
    // Exact comparisons of validated names (config lists are validated at start-up too).
    let ns = target.namespace.as_str();
    if cfg.protected_namespaces.contains(&target.namespace) {
        return skip(
            format!("namespace {ns} is protected (PROTECTED_NAMESPACES)"),
            Some(target),
        );
    }
    if cfg.own_namespace.as_ref() == Some(&target.namespace) {
        return skip(
            format!("namespace {ns} is falco-responder's own namespace"),
            Some(target),
        );
    }
    if cfg.own_pod.as_deref() == Some(target.name.as_str()) && cfg.own_namespace.is_none() {
        // Without a known namespace, a pod with our own name might be us: stay away.
        return skip(
            format!(
                "pod {} has falco-responder's own name (POD_NAME)",
                target.name
            ),
            Some(target),
        );
    }
    if let Some(allowed) = &cfg.namespaces
        && !allowed.contains(&target.namespace)
    {
        return skip(format!("namespace {ns} is not in NAMESPACES"), Some(target));
    }
    Decision::Delete(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::falco::Priority;

    /// The policy `config` builds from these variables.
    fn cfg(vars: &[(&str, &str)]) -> Policy {
        crate::config::Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .unwrap()
            .policy
    }

    fn shell(ns: Option<&str>, pod: Option<&str>, priority: Priority) -> FalcoEvent {
        let mut fields = serde_json::Map::new();
        if let Some(ns) = ns {
            fields.insert("k8s.ns.name".into(), ns.into());
        }
        if let Some(pod) = pod {
            fields.insert("k8s.pod.name".into(), pod.into());
        }
        fields.insert("container.id".into(), "ee97d9c4186f".into());
        FalcoEvent {
            rule: "Terminal shell in container".into(),
            priority,
            uuid: None,
            output: None,
            time: None,
            source: Some("syscall".into()),
            hostname: None,
            tags: None,
            output_fields: fields,
        }
    }

    fn reason(d: Decision) -> String {
        match d {
            Decision::Skip { reason, .. } => reason,
            other => panic!("expected a skip, got {other:?}"),
        }
    }

    #[test]
    fn default_rule_in_a_normal_namespace_is_deleted() {
        let d = decide(
            &shell(Some("prod"), Some("web"), Priority::Notice),
            &cfg(&[]),
        );
        assert!(matches!(d, Decision::Delete(t) if t.namespace == "prod" && t.name == "web"));
    }

    #[test]
    fn other_rules_are_skipped_unless_listed_or_star() {
        let mut e = shell(Some("prod"), Some("web"), Priority::Notice);
        e.rule = "Write below etc".into();
        assert!(reason(decide(&e, &cfg(&[]))).contains("not in RULES"));
        assert!(matches!(
            decide(&e, &cfg(&[("RULES", "*")])),
            Decision::Delete(_)
        ));
        assert!(matches!(
            decide(&e, &cfg(&[("RULES", "A,Write below etc")])),
            Decision::Delete(_)
        ));
    }

    #[test]
    fn min_priority_is_inclusive() {
        let c = cfg(&[("MIN_PRIORITY", "Warning")]);
        assert!(
            reason(decide(&shell(Some("p"), Some("w"), Priority::Notice), &c)).contains("below")
        );
        assert!(matches!(
            decide(&shell(Some("p"), Some("w"), Priority::Warning), &c),
            Decision::Delete(_)
        ));
        assert!(matches!(
            decide(&shell(Some("p"), Some("w"), Priority::Critical), &c),
            Decision::Delete(_)
        ));
    }

    #[test]
    fn namespaces_allow_list() {
        let c = cfg(&[("NAMESPACES", "prod")]);
        assert!(matches!(
            decide(&shell(Some("prod"), Some("w"), Priority::Notice), &c),
            Decision::Delete(_)
        ));
        assert!(
            reason(decide(&shell(Some("dev"), Some("w"), Priority::Notice), &c))
                .contains("not in NAMESPACES")
        );
    }

    #[test]
    fn protected_namespaces_win_even_when_allowed() {
        let c = cfg(&[("NAMESPACES", "kube-system")]);
        let r = reason(decide(
            &shell(Some("kube-system"), Some("w"), Priority::Emergency),
            &c,
        ));
        assert!(r.contains("protected"), "{r}");
        let c = cfg(&[("PROTECTED_NAMESPACES", "vault")]);
        assert!(
            reason(decide(
                &shell(Some("vault"), Some("w"), Priority::Notice),
                &c
            ))
            .contains("protected")
        );
    }

    #[test]
    fn own_namespace_is_never_touched() {
        let c = cfg(&[("POD_NAMESPACE", "falco-responder"), ("POD_NAME", "fr-1")]);
        let r = reason(decide(
            &shell(Some("falco-responder"), Some("other"), Priority::Notice),
            &c,
        ));
        assert!(r.contains("own namespace"), "{r}");
    }

    #[test]
    fn own_pod_name_without_known_namespace_is_skipped() {
        let c = cfg(&[("POD_NAME", "fr-1")]);
        assert!(
            reason(decide(
                &shell(Some("x"), Some("fr-1"), Priority::Notice),
                &c
            ))
            .contains("own name")
        );
    }

    #[test]
    fn test_rule_and_internal_events_are_skipped() {
        let mut e = shell(Some("p"), Some("w"), Priority::Debug);
        e.rule = TEST_RULE.into();
        assert!(reason(decide(&e, &cfg(&[("RULES", "*")]))).contains("test event"));
        let mut e = shell(None, None, Priority::Informational);
        e.source = Some("internal".into());
        assert!(reason(decide(&e, &cfg(&[("RULES", "*")]))).contains("internal"));
    }

    #[test]
    fn no_namespace_and_host_events_are_skipped() {
        assert!(
            reason(decide(
                &shell(None, Some("alpine"), Priority::Notice),
                &cfg(&[])
            ))
            .contains("no namespace")
        );
        let mut host = shell(None, None, Priority::Notice);
        host.output_fields
            .insert("container.id".into(), "host".into());
        assert!(reason(decide(&host, &cfg(&[]))).contains("host"));
    }
}
