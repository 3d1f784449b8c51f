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
    /// Nothing to do; `target` is the pod when the event named one, `audit` why a k8s_audit
    /// event about a pod is no evidence against it (counted in a metric).
    Skip {
        reason: String,
        target: Option<Target>,
        audit: Option<AuditSkip>,
    },
    /// The event names an identifier that cannot be a Kubernetes one: refused (400), never
    /// looked up, never retried.
    Invalid(InvalidIdent),
}

fn skip(reason: impl Into<String>, target: Option<Target>) -> Decision {
    Decision::Skip {
        reason: reason.into(),
        target,
        audit: None,
    }
}

/// Why a k8s_audit event about a pod is not acted on: a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditSkip {
    /// The event lacks `ka.response.code` or `ka.verb`: what the request did is unknown (the
    /// stock k8saudit rules do not output them; README, "Audit events").
    Unproven,
    /// The API server refused the request or it failed (`ka.response.code`,
    /// `ka.auth.decision`).
    Refused,
    /// A successful request that says nothing about what runs in the pod (a GET, a delete, a
    /// log read ...): about the user who asked, not about the pod.
    NotThePod,
}

impl AuditSkip {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditSkip::Unproven => "unproven",
            AuditSkip::Refused => "refused",
            AuditSkip::NotThePod => "not_the_pod",
        }
    }
}

/// The stock k8saudit rules (falcosecurity/plugins, `plugins/k8saudit/rules/k8s_audit_rules.yaml`)
/// that can name a pod as their target. None outputs `ka.response.code` (nor, but for two,
/// `ka.verb`): listed in RULES, their events are skipped until the field is added (a WARN at
/// start; README, "Audit events").
pub const K8S_AUDIT_POD_RULES: &[&str] = &[
    "Disallowed K8s User",
    "Create Disallowed Pod",
    "Create Privileged Pod",
    "Create Sensitive Mount Pod",
    "Create HostNetwork Pod",
    "Create HostPid Pod",
    "Create HostIPC Pod",
    "Anonymous Request Allowed",
    "Attach/Exec Pod",
    "port-forward",
    "EphemeralContainers Created",
    "Pod Created in Kube Namespace",
    "All K8s Audit Events",
    "Full K8s Administrative Access",
];

impl Policy {
    /// The stock k8saudit rules RULES lets act (all of them for `*`): named in a WARN at start.
    pub fn k8s_audit_rules(&self) -> Vec<&'static str> {
        K8S_AUDIT_POD_RULES
            .iter()
            .copied()
            .filter(|r| self.rules.matches(r))
            .collect()
    }
}

/// The pod's subresources whose successful use means foreign code or a foreign connection got
/// into the pod: the pod is the one to remove.
const INTO_THE_POD: &[&str] = &["exec", "attach", "portforward"];

/// For a k8s_audit event about a pod: `None` when the request succeeded and makes the pod the
/// one to remove, else why not. The table (README, "Audit events"):
///
/// - `ka.response.code` must be present (a string in Falco's output, a number accepted) and
///   2xx, or 101 (the protocol upgrade) for exec, attach and portforward; when
///   `ka.auth.decision` is present it must be `allow`. A refused or failed request (403, 404,
///   409 ...) is no evidence that anything happened in the pod.
/// - `ka.verb` must be present. Acted on: `create` of a pod (no subresource: the pod now runs
///   what the rule flagged, e.g. privileged); `create` or `get` of `exec`, `attach`,
///   `portforward` (kubectl's SPDY requests are POSTs, WebSocket ones GETs); `update` or
///   `patch` of `ephemeralcontainers` (a debug container now runs in it). Never acted on:
///   `get`, `list`, `watch` of a pod (reading is about the user, not the pod), `delete`,
///   `update`/`patch` of the pod object, and every other subresource (`log`, `status`,
///   `binding`, `eviction`, `proxy` ...).
fn audit_evidence(event: &FalcoEvent) -> Option<(AuditSkip, String)> {
    use crate::domain::falco::FieldValue;
    let unproven = |field: &str| {
        Some((
            AuditSkip::Unproven,
            format!(
                "k8s_audit event without {field}: whether the API request succeeded, and what it \
                 did, is unknown, so it is no evidence against the pod (add {field} to the rule's \
                 output: README, \"Audit events\")"
            ),
        ))
    };
    let (shown_code, code) = match event.output_fields.get("ka.response.code") {
        Some(v @ FieldValue::String(s)) if !s.trim().is_empty() && s != "<NA>" => {
            (v, s.trim().parse::<u16>().ok())
        }
        Some(v @ FieldValue::Number(n)) => (v, n.as_u64().and_then(|n| u16::try_from(n).ok())),
        _ => return unproven("ka.response.code"),
    };
    let Some(verb) = event.field("ka.verb") else {
        return unproven("ka.verb");
    };
    let subresource = event.field("ka.target.subresource");
    let into_the_pod = subresource.is_some_and(|s| INTO_THE_POD.contains(&s));
    let succeeded = match code {
        Some(c) => (200..300).contains(&c) || (c == 101 && into_the_pod),
        None => false,
    };
    if !succeeded {
        return Some((
            AuditSkip::Refused,
            format!(
                "k8s_audit ka.response.code={}: the API request did not succeed, so nothing \
                 happened in the pod",
                shown(shown_code)
            ),
        ));
    }
    match event.output_fields.get("ka.auth.decision") {
        None | Some(FieldValue::Null) => {}
        Some(FieldValue::String(d)) if d == "allow" || d == "<NA>" || d.is_empty() => {}
        Some(other) => {
            return Some((
                AuditSkip::Refused,
                format!(
                    "k8s_audit ka.auth.decision={}: the API request was not allowed",
                    shown(other)
                ),
            ));
        }
    }
    let acted = match subresource {
        None => verb == "create",
        Some(s) if INTO_THE_POD.contains(&s) => verb == "create" || verb == "get",
        Some("ephemeralcontainers") => verb == "update" || verb == "patch",
        Some(_) => false,
    };
    if acted {
        return None;
    }
    Some((
        AuditSkip::NotThePod,
        format!(
            "k8s_audit ka.verb={} on pods{}: says what the user did, not what runs in the pod \
             (acted on: create of a pod, exec/attach/portforward into it, ephemeral containers)",
            bounded(verb),
            subresource.map_or(String::new(), |s| format!("/{}", bounded(s))),
        ),
    ))
}

fn shown(v: &crate::domain::falco::FieldValue) -> String {
    match v {
        crate::domain::falco::FieldValue::String(s) => bounded(s),
        other => bounded(&other.to_string()),
    }
}

/// An attacker's value in a reason: at most 32 bytes (cut and marked as cut), as Rust
/// debug-quotes them.
fn bounded(s: &str) -> String {
    format!("{:?}", crate::fastfmt::bounded(s, 32))
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
        // Built by hand: this is the reason of nearly every skipped event. The rule is cut
        // before it is quoted: quoting multiplies an attacker's string up to six times.
        let rule = crate::fastfmt::bounded(rule, crate::fastfmt::ECHO_MAX);
        let mut reason = String::with_capacity(rule.len() + 24);
        reason.push_str("rule ");
        crate::fastfmt::push_debug_str(&mut reason, &rule);
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
    if event.is_k8s_audit()
        && let Some((why, reason)) = audit_evidence(event)
    {
        return Decision::Skip {
            reason,
            target: Some(target),
            audit: Some(why),
        };
    }
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
        let mut fields = crate::domain::falco::Fields::default();
        if let Some(ns) = ns {
            fields.insert("k8s.ns.name", ns.into());
        }
        if let Some(pod) = pod {
            fields.insert("k8s.pod.name", pod.into());
        }
        fields.insert("container.id", "ee97d9c4186f".into());
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
        host.output_fields.insert("container.id", "host".into());
        assert!(reason(decide(&host, &cfg(&[]))).contains("host"));
    }

    /// An audit event as Falco's k8saudit plugin writes it: `source: k8s_audit`, every field a
    /// string (`ka.response.code` too), `null` for a field without a value.
    fn audit(rule: &str, fields: serde_json::Value) -> FalcoEvent {
        let mut output_fields = serde_json::json!({
            "evt.time": 1_733_400_000_000_000_000u64,
            "ka.target.namespace": "prod",
            "ka.target.resource": "pods",
            "ka.target.name": "db-0",
            "ka.user.name": "mallory",
        });
        for (k, v) in fields.as_object().unwrap() {
            output_fields[k] = v.clone();
        }
        FalcoEvent {
            rule: rule.into(),
            priority: Priority::Notice,
            uuid: None,
            output: None,
            time: Some("2024-12-05T12:00:00Z".into()),
            source: Some("k8s_audit".into()),
            hostname: None,
            tags: Some(vec!["k8s".into()]),
            output_fields: serde_json::from_value(output_fields).unwrap(),
        }
    }

    fn audit_skip(d: Decision) -> (AuditSkip, String) {
        match d {
            Decision::Skip {
                audit: Some(why),
                reason,
                target: Some(_),
            } => (why, reason),
            other => panic!("expected an audit skip with the pod, got {other:?}"),
        }
    }

    #[test]
    fn an_audit_event_acts_only_when_the_request_succeeded() {
        let c = cfg(&[("RULES", "*")]);
        let exec = |code: serde_json::Value, decision: serde_json::Value| {
            audit(
                "Attach/Exec Pod",
                serde_json::json!({"ka.target.subresource": "exec", "ka.verb": "create",
                    "ka.response.code": code, "ka.auth.decision": decision,
                    "ka.uri.param[command]": "sh"}),
            )
        };
        let allowed = exec("101".into(), "allow".into());
        assert!(matches!(decide(&allowed, &c), Decision::Delete(t) if t.name == "db-0"));
        // A user without rights: 403 and forbid.
        let (why, reason) = audit_skip(decide(&exec("403".into(), "forbid".into()), &c));
        assert_eq!(why, AuditSkip::Refused);
        assert!(reason.contains(r#"ka.response.code="403""#), "{reason}");
        // The decision alone refuses, whatever the code says.
        let (why, reason) = audit_skip(decide(&exec("101".into(), "forbid".into()), &c));
        assert_eq!(why, AuditSkip::Refused);
        assert!(reason.contains(r#"ka.auth.decision="forbid""#), "{reason}");
        // Without a decision (not in the output, or null), the code decides.
        for decision in [serde_json::Value::Null, "<NA>".into()] {
            assert!(matches!(
                decide(&exec("101".into(), decision), &c),
                Decision::Delete(_)
            ));
        }
        // Failures after authorization (the container is gone, the kubelet refused).
        for code in ["400", "404", "500", "", "abc", "101x"] {
            let (why, _) = audit_skip(decide(&exec(code.into(), "allow".into()), &c));
            assert_eq!(
                why,
                if code.is_empty() {
                    AuditSkip::Unproven
                } else {
                    AuditSkip::Refused
                },
                "{code}"
            );
        }
        // A number is accepted as well as Falco's string.
        assert!(matches!(
            decide(&exec(101.into(), "allow".into()), &c),
            Decision::Delete(_)
        ));
    }

    #[test]
    fn an_audit_event_without_the_response_code_or_verb_is_unproven() {
        // The stock "Attach/Exec Pod" output: no ka.response.code, no ka.verb.
        let stock = audit(
            "Attach/Exec Pod",
            serde_json::json!({"ka.target.subresource": "exec", "ka.uri.param[command]": "sh"}),
        );
        let c = cfg(&[("RULES", "Attach/Exec Pod")]);
        let (why, reason) = audit_skip(decide(&stock, &c));
        assert_eq!(why, AuditSkip::Unproven);
        assert!(reason.contains("without ka.response.code"), "{reason}");
        let mut null = stock.clone();
        null.output_fields
            .insert("ka.response.code", crate::domain::falco::FieldValue::Null);
        assert_eq!(audit_skip(decide(&null, &c)).0, AuditSkip::Unproven);
        let mut no_verb = stock.clone();
        no_verb
            .output_fields
            .insert("ka.response.code", "101".into());
        let (why, reason) = audit_skip(decide(&no_verb, &c));
        assert_eq!(why, AuditSkip::Unproven);
        assert!(reason.contains("without ka.verb"), "{reason}");
    }

    #[test]
    fn which_audit_requests_make_the_pod_the_one_to_remove() {
        let c = cfg(&[("RULES", "*")]);
        let ev = |verb: &str, sub: Option<&str>, code: &str| {
            audit(
                "any",
                serde_json::json!({"ka.verb": verb, "ka.target.subresource": sub,
                    "ka.response.code": code, "ka.auth.decision": "allow"}),
            )
        };
        for (verb, sub, code) in [
            ("create", None, "201"),
            ("create", Some("exec"), "101"),
            ("get", Some("exec"), "101"),
            ("create", Some("attach"), "101"),
            ("create", Some("portforward"), "101"),
            ("get", Some("portforward"), "101"),
            ("patch", Some("ephemeralcontainers"), "200"),
            ("update", Some("ephemeralcontainers"), "200"),
        ] {
            assert!(
                matches!(decide(&ev(verb, sub, code), &c), Decision::Delete(_)),
                "{verb} {sub:?} {code}"
            );
        }
        for (verb, sub, code, why) in [
            // Reading a pod is about the user who asked, not about the pod.
            ("get", None, "200", AuditSkip::NotThePod),
            ("list", None, "200", AuditSkip::NotThePod),
            ("watch", None, "200", AuditSkip::NotThePod),
            ("delete", None, "200", AuditSkip::NotThePod),
            ("patch", None, "200", AuditSkip::NotThePod),
            ("get", Some("log"), "200", AuditSkip::NotThePod),
            ("create", Some("eviction"), "201", AuditSkip::NotThePod),
            ("create", Some("binding"), "201", AuditSkip::NotThePod),
            ("get", Some("proxy"), "200", AuditSkip::NotThePod),
            // A create of an existing name: 409, the pod is someone else's.
            ("create", None, "409", AuditSkip::Refused),
            // 101 is an upgrade only for the streaming subresources.
            ("create", None, "101", AuditSkip::Refused),
            ("get", Some("log"), "101", AuditSkip::Refused),
        ] {
            let (got, reason) = audit_skip(decide(&ev(verb, sub, code), &c));
            assert_eq!(got, why, "{verb} {sub:?} {code}: {reason}");
            if why == AuditSkip::NotThePod {
                assert!(reason.contains(&format!("ka.verb={verb:?}")), "{reason}");
            }
        }
        // Other sources are not audit events: their fields are not asked for.
        let mut syscall = shell(Some("prod"), Some("web"), Priority::Notice);
        syscall
            .output_fields
            .insert("ka.response.code", "403".into());
        assert!(matches!(decide(&syscall, &c), Decision::Delete(_)));
    }

    #[test]
    fn attacker_values_in_audit_reasons_are_bounded() {
        let c = cfg(&[("RULES", "*")]);
        let long = "x".repeat(10_000);
        let e = audit(
            "any",
            serde_json::json!({"ka.verb": long, "ka.response.code": "200"}),
        );
        let (_, reason) = audit_skip(decide(&e, &c));
        assert!(reason.len() < 400, "{}", reason.len());
    }

    #[test]
    fn a_long_rule_is_cut_before_it_is_quoted_in_the_reason() {
        // Control characters quote to six bytes each: a megabyte would become six.
        let rule = "\u{1}".repeat(1 << 20);
        let reason = skip_early(&rule, Priority::Critical, None, &cfg(&[])).unwrap();
        assert!(
            reason.len() < 6 * crate::fastfmt::ECHO_MAX,
            "{}",
            reason.len()
        );
        assert!(reason.contains(crate::fastfmt::CUT_MARK), "{reason}");
    }

    #[test]
    fn the_stock_audit_rules_rules_lets_act_are_named() {
        assert!(cfg(&[]).k8s_audit_rules().is_empty());
        assert_eq!(
            cfg(&[("RULES", "Terminal shell in container,port-forward")]).k8s_audit_rules(),
            ["port-forward"]
        );
        assert_eq!(
            cfg(&[("RULES", "*")]).k8s_audit_rules().len(),
            K8S_AUDIT_POD_RULES.len()
        );
    }

    use proptest::prelude::*;

    proptest! {
        /// Whatever the audit fields say, a deletion needs a 2xx (or 101 into the pod), no
        /// decision but allow, and one of the acting verb/subresource pairs.
        #[test]
        fn audit_deletions_follow_the_table(
            code in proptest::option::of(proptest::prop_oneof![
                (100u16..600).prop_map(|c| serde_json::Value::from(c.to_string())),
                (100u16..600).prop_map(serde_json::Value::from),
                proptest::prelude::Just(serde_json::Value::Null),
                "[0-9a-z ]{0,4}".prop_map(serde_json::Value::from),
            ]),
            decision in proptest::option::of(proptest::sample::select(vec!["allow", "forbid", "", "Allow"])),
            verb in proptest::option::of(proptest::sample::select(vec![
                "create", "get", "list", "watch", "update", "patch", "delete", "deletecollection",
            ])),
            sub in proptest::option::of(proptest::sample::select(vec![
                "exec", "attach", "portforward", "ephemeralcontainers", "log", "status", "proxy",
            ])),
        ) {
            let mut fields = serde_json::json!({"ka.target.subresource": sub});
            if let Some(code) = &code {
                fields["ka.response.code"] = code.clone();
            }
            if let Some(d) = decision {
                fields["ka.auth.decision"] = d.into();
            }
            if let Some(v) = verb {
                fields["ka.verb"] = v.into();
            }
            let d = decide(&audit("any", fields), &cfg(&[("RULES", "*")]));
            let n = code.as_ref().and_then(|c| match c {
                serde_json::Value::String(s) => s.trim().parse::<u16>().ok(),
                other => other.as_u64().map(|n| n as u16),
            });
            let streaming = matches!(sub, Some("exec" | "attach" | "portforward"));
            let ok_code = n.is_some_and(|n| (200..300).contains(&n) || (n == 101 && streaming));
            let ok_decision = matches!(decision, None | Some("allow" | ""));
            let ok_verb = matches!(
                (sub, verb),
                (None, Some("create"))
                    | (Some("exec" | "attach" | "portforward"), Some("create" | "get"))
                    | (Some("ephemeralcontainers"), Some("update" | "patch"))
            );
            let deleted = matches!(d, Decision::Delete(_));
            prop_assert_eq!(deleted, ok_code && ok_decision && ok_verb && verb.is_some(), "{:?}", d);
        }
    }
}
