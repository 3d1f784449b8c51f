//! Who may do what: the function's roles grant least privilege, each identity it runs as is
//! bound to them, and the NetworkPolicies admit only the callers that must reach it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::{
    chart::{NAMED_SECRETS, PLATFORMS, env_of},
    files::*,
    shell::{doc_commands, flag_values},
    stacks::openfaas_function,
    tools::template,
};

/// Whether ServiceAccount `ns/sa` may `verb` `resource` of API group `group` in namespace
/// `ns`, by the Roles, ClusterRoles and bindings in the manifests.
pub(crate) fn may(ns: &str, sa: &str, group: &str, resource: &str, verb: &str) -> bool {
    let grants = |role: &Obj| {
        role.v["rules"].as_array().into_iter().flatten().any(|r| {
            strs(&r["apiGroups"]).iter().any(|g| g == group)
                && strs(&r["resources"]).iter().any(|x| x == resource)
                && strs(&r["verbs"]).iter().any(|v| v == verb)
        })
    };
    let binds = |b: &Obj| {
        b.v["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["kind"] == "ServiceAccount" && s["name"] == sa && s["namespace"] == ns)
    };
    objs(RBAC, "RoleBinding")
        .into_iter()
        .chain(objs(RBAC, "ClusterRoleBinding"))
        .filter(|b| binds(b) && (b.kind() == "ClusterRoleBinding" || b.namespace() == Some(ns)))
        .any(|b| {
            let role_kind = str_at(&b.v, "/roleRef/kind");
            let role_ns = if role_kind == "Role" {
                b.namespace()
            } else {
                None
            };
            objs(RBAC, role_kind)
                .into_iter()
                .find(|r| r.name() == str_at(&b.v, "/roleRef/name") && r.namespace() == role_ns)
                .is_some_and(grants)
        })
}

/// The function's ClusterRole when it only deletes.
pub(crate) fn function_rules() -> Value {
    json!([
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "delete"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create"]},
        {"apiGroups": ["apps"], "resources": ["replicasets", "statefulsets", "daemonsets"], "verbs": ["get"]},
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]},
    ])
}

/// What containment adds to it (ACTION=contain or CONTAIN_RULES): patch the pod (label,
/// release, deadline), its NetworkPolicy, its logs. Nothing more.
pub(crate) fn contain_rules() -> Value {
    json!([
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["patch"]},
        {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["create", "get"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    ])
}

#[test]
fn the_function_gets_least_privilege_rbac() {
    let function_rules = function_rules();
    // The optional guards (MIN_AVAILABLE, USE_EVICTION), in their own role.
    let guard_rules = json!([
        {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
    ]);
    let mut function_roles = 0;
    let mut breaker_roles = 0;
    let mut contain_roles = 0;
    for kind in ["ClusterRole", "Role"] {
        for r in objs(RBAC, kind) {
            for rule in r.v["rules"].as_array().unwrap() {
                for field in ["apiGroups", "resources", "verbs"] {
                    assert!(
                        !strs(&rule[field]).contains(&"*".to_string()),
                        "{}: wildcard {field}",
                        r.id()
                    );
                }
                assert!(
                    !strs(&rule["resources"]).contains(&"secrets".to_string()),
                    "{}: secrets",
                    r.id()
                );
            }
            match r.name() {
                "falco-responder-workflow-executor" => assert_eq!(
                    r.v["rules"],
                    json!([{"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]}]),
                    "{}",
                    r.id()
                ),
                "falco-responder-guards" => {
                    assert_eq!(r.v["rules"], guard_rules, "{}", r.id())
                }
                // Containment's extra rights (rbac-contain.yaml): exactly the chart's.
                "falco-responder-contain" => {
                    contain_roles += 1;
                    assert_eq!(kind, "ClusterRole", "{}", r.id());
                    assert_eq!(r.v["rules"], contain_rules(), "{}", r.id())
                }
                // Its evidence ConfigMaps, in the function's own namespace only.
                "falco-responder-evidence" => {
                    assert_eq!(kind, "Role", "{}", r.id());
                    assert_eq!(
                        r.v["rules"],
                        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "list", "delete"]}]),
                        "{}",
                        r.id()
                    );
                }
                // The deletion breaker's records: Events in the function's own namespace only
                // (a Role, never a ClusterRole: Events elsewhere can be forged).
                name if name.ends_with("-breaker") => {
                    breaker_roles += 1;
                    assert_eq!(kind, "Role", "{}", r.id());
                    assert_eq!(
                        r.v["rules"],
                        json!([{"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "list", "watch"]}]),
                        "{}",
                        r.id()
                    );
                }
                // MIN_AVAILABLE's reservations: the same, in the same namespace, plus delete
                // (a record is removed once its hold is over).
                name if name.ends_with("-reservations") => {
                    assert_eq!(kind, "Role", "{}", r.id());
                    assert_eq!(
                        r.v["rules"],
                        json!([{"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "list", "delete"]}]),
                        "{}",
                        r.id()
                    );
                }
                "falco-responder-sensor-dead-letters" => assert_eq!(
                    r.v["rules"],
                    json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]}]),
                    "{}: the dead letters, create only",
                    r.id()
                ),
                "falco-responder-sensor" => {
                    for rule in r.v["rules"].as_array().unwrap() {
                        assert_eq!(strs(&rule["apiGroups"]), ["argoproj.io"], "{}", r.id());
                        assert!(
                            !strs(&rule["verbs"]).contains(&"delete".to_string()),
                            "{}",
                            r.id()
                        );
                    }
                }
                _ => {
                    function_roles += 1;
                    assert_eq!(kind, "ClusterRole", "{}", r.id());
                    assert_eq!(
                        r.v["rules"],
                        function_rules,
                        "{}: pods get/delete, events create, owners and namespaces get only",
                        r.id()
                    );
                }
            }
        }
    }
    assert!(function_roles >= 3, "Knative, OpenFaaS and Workflow roles");
    assert_eq!(contain_roles, 2, "knative/ and openfaas/ rbac-contain.yaml");
    // Each rbac-contain.yaml binds its ClusterRole and its evidence Role (in the function's
    // namespace) to the identity its base RBAC binds.
    for (file, ns) in [
        ("knative/rbac-contain.yaml", "falco-responder"),
        ("openfaas/rbac-contain.yaml", "openfaas-fn"),
    ] {
        for (kind, role) in [
            ("ClusterRole", "falco-responder-contain"),
            ("Role", "falco-responder-evidence"),
        ] {
            let bound = objects().iter().any(|b| {
                b.file == file
                    && b.kind().ends_with("Binding")
                    && b.v["roleRef"]["kind"] == kind
                    && b.v["roleRef"]["name"] == role
                    && (kind == "ClusterRole" || b.namespace() == Some(ns))
                    && b.v["subjects"]
                        == json!([{"kind": "ServiceAccount", "name": "falco-responder", "namespace": ns}])
            });
            assert!(bound, "{file}: {role} is not bound to {ns}/falco-responder");
        }
    }
    assert_eq!(
        breaker_roles, function_roles,
        "each function identity has its breaker Role beside its ClusterRole"
    );

    // Each identity the function runs as is bound to such a role.
    let bound = |ns: &str, sa: &str| {
        objs(RBAC, "ClusterRoleBinding").iter().any(|b| {
            let role = the(RBAC, "ClusterRole", str_at(&b.v, "/roleRef/name"));
            role.v["rules"] == function_rules
                && b.v["subjects"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["name"] == sa && s["namespace"] == ns)
        })
    };
    let ksvc = the(KSVC, "Service", "falco-responder");
    let wt = the(ARGO, "WorkflowTemplate", "falco-responder");
    for (ns, sa) in [
        (
            ksvc.namespace().unwrap(),
            str_at(&ksvc.v, "/spec/template/spec/serviceAccountName"),
        ),
        (
            wt.namespace().unwrap(),
            str_at(&wt.v, "/spec/serviceAccountName"),
        ),
        ("openfaas-fn", "falco-responder"),
        ("openfaas-fn", "default"),
    ] {
        assert!(
            bound(ns, sa),
            "{ns}/{sa} is not bound to the function's ClusterRole"
        );
        // ... and, in its own namespace, to the breaker's Role (where its records live).
        let breaker_bound = objs(RBAC, "RoleBinding").iter().any(|b| {
            b.namespace() == Some(ns)
                && str_at(&b.v, "/roleRef/kind") == "Role"
                && str_at(&b.v, "/roleRef/name").ends_with("-breaker")
                && b.v["subjects"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["name"] == sa && s["namespace"] == ns)
        });
        assert!(breaker_bound, "{ns}/{sa} has no breaker Role in {ns}");
    }
    // The OpenFaaS CE default-SA variant says in the file what it grants.
    let text = read("openfaas/rbac-default-sa.yaml");
    assert!(
        text.contains("EVERY pod in openfaas-fn"),
        "warning in openfaas/rbac-default-sa.yaml"
    );
}

/// The ingress peers of a NetworkPolicy: (namespace, pod labels) pairs, and problems.
/// (namespace, pod labels) pairs a NetworkPolicy admits.
pub(crate) type Peers = BTreeSet<(String, BTreeMap<String, String>)>;

pub(crate) fn policy_peers(np: &Value) -> (Peers, Vec<String>) {
    let mut peers = BTreeSet::new();
    let mut errors = vec![];
    if !strs(&np["spec"]["policyTypes"]).contains(&"Ingress".to_string()) {
        errors.push("policyTypes lacks Ingress".into());
    }
    if np["spec"]["podSelector"]["matchLabels"]
        .as_object()
        .is_none_or(|m| m.is_empty())
    {
        errors.push("selects every pod of the namespace".into());
    }
    let Some(rules) = np["spec"]["ingress"].as_array() else {
        errors.push("no ingress list (an absent list admits nothing only with policyTypes)".into());
        return (peers, errors);
    };
    for rule in rules {
        if rule["ports"].as_array().is_none_or(|p| p.is_empty()) {
            errors.push("a rule without ports admits every port".into());
        }
        let from = rule["from"].as_array().cloned().unwrap_or_default();
        if from.is_empty() {
            errors.push("a rule without `from` admits everyone".into());
        }
        for peer in from {
            let ns =
                peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"].as_str();
            let pods: BTreeMap<String, String> = peer["podSelector"]["matchLabels"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect();
            match ns {
                Some(ns) if !pods.is_empty() && peer.get("ipBlock").is_none() => {
                    peers.insert((ns.to_string(), pods));
                }
                _ => errors.push(format!("peer {peer} is not one namespace's labelled pods")),
            }
        }
    }
    (peers, errors)
}

pub(crate) fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(crate) fn selects(np: &Obj, pod_labels: &Value) -> bool {
    np.v["spec"]["podSelector"]["matchLabels"]
        .as_object()
        .is_some_and(|m| m.iter().all(|(k, v)| &pod_labels[k] == v))
}

#[test]
fn network_policies_admit_only_the_callers_that_must_reach_the_function() {
    let nps = objs(NETWORKING, "NetworkPolicy");
    for np in &nps {
        let (_, errors) = policy_peers(&np.v);
        assert!(errors.is_empty(), "{}:\n{}", np.id(), errors.join("\n"));
    }
    let policy_for = |file: &str, ns: &str, pod_labels: &Value| -> &'static Obj {
        objs(NETWORKING, "NetworkPolicy")
            .into_iter()
            .find(|np| np.file == file && np.namespace() == Some(ns) && selects(np, pod_labels))
            .unwrap_or_else(|| panic!("{file}: no NetworkPolicy selects {pod_labels} in {ns}"))
    };
    // Knative: both Services' pods; only the activator, the Kourier gateway (8012/8013) and the
    // autoscaler (9090), never the container's own port.
    let knative_peers = BTreeSet::from([
        (
            "knative-serving".to_string(),
            labels(&[("app", "activator")]),
        ),
        (
            "kourier-system".to_string(),
            labels(&[("app", "3scale-kourier-gateway")]),
        ),
        (
            "knative-serving".to_string(),
            labels(&[("app", "autoscaler")]),
        ),
    ]);
    for name in ["falco-responder", ARGO_KSVC] {
        let k = the(KSVC, "Service", name);
        let np = policy_for(
            "knative/networkpolicy.yaml",
            k.namespace().unwrap(),
            &k.v["spec"]["template"]["metadata"]["labels"],
        );
        assert_eq!(policy_peers(&np.v).0, knative_peers, "{}", np.id());
        let ports: BTreeSet<u64> = np.v["spec"]["ingress"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| {
                r["ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["port"].as_u64().unwrap())
            })
            .collect();
        assert_eq!(
            ports,
            BTreeSet::from([8012, 8013, 9090]),
            "{}: queue-proxy's ports only",
            np.id()
        );
    }
    let event_display = the(KSVC, "Service", "falco-responder-event-display");
    assert!(
        !nps.iter().any(|np| selects(
            np,
            &event_display.v["spec"]["template"]["metadata"]["labels"]
        )),
        "the event-display is not the function"
    );
    // OpenFaaS: the function's pods (faas-netes labels them faas_function=<name>); the gateway.
    let (fn_name, fn_ns) = openfaas_function();
    let np = policy_for(
        "openfaas/networkpolicy.yaml",
        &fn_ns,
        &json!({"faas_function": fn_name}),
    );
    assert_eq!(
        policy_peers(&np.v).0,
        BTreeSet::from([("openfaas".to_string(), labels(&[("app", "gateway")]))]),
        "{}",
        np.id()
    );
    // Argo: the EventSource only from Falcosidekick; the workflow pods from nobody.
    let es = &objs(ARGO, "EventSource")[0];
    let np = policy_for(
        "argo/networkpolicy.yaml",
        es.namespace().unwrap(),
        &json!({"eventsource-name": es.name()}),
    );
    assert_eq!(
        policy_peers(&np.v).0,
        BTreeSet::from([(
            "falco".to_string(),
            labels(&[("app.kubernetes.io/name", "falcosidekick")])
        )]),
        "{}",
        np.id()
    );
    let port = es.v["spec"]["service"]["ports"][0]["targetPort"]
        .as_u64()
        .unwrap();
    assert_eq!(
        np.v["spec"]["ingress"][0]["ports"],
        json!([{"protocol": "TCP", "port": port}])
    );
    let wt = the(ARGO, "WorkflowTemplate", "falco-responder");
    let np = policy_for(
        "argo/networkpolicy.yaml",
        wt.namespace().unwrap(),
        &wt.v["spec"]["podMetadata"]["labels"],
    );
    assert_eq!(
        np.v["spec"]["ingress"],
        json!([]),
        "{}: nothing calls a workflow pod",
        np.id()
    );
    // Each guide applies its platform's policies.
    for (doc, file) in [
        ("docs/deploy-knative.md", "knative/networkpolicy.yaml"),
        ("docs/deploy-openfaas.md", "openfaas/networkpolicy.yaml"),
        ("docs/deploy-argo.md", "argo/networkpolicy.yaml"),
        ("docs/deploy-argo.md", "knative/networkpolicy.yaml"),
        ("docs/deploy-argo.md", "openfaas/networkpolicy.yaml"),
    ] {
        assert!(
            doc_commands(&read(doc))
                .iter()
                .any(|c| c.first().map(String::as_str) == Some("kubectl")
                    && c.get(1).map(String::as_str) == Some("apply")
                    && flag_values(c, "-f").contains(&file.to_string())),
            "{doc} never applies {file}"
        );
    }
    // The checks catch an open policy.
    let mut open = the(NETWORKING, "NetworkPolicy", "falco-eventsource")
        .v
        .clone();
    open["spec"]["ingress"][0]["from"] = json!([{"namespaceSelector": {}}]);
    assert!(!policy_peers(&open).1.is_empty());
    open["spec"]["ingress"] = json!([{"ports": [{"port": 12000}]}]);
    assert!(!policy_peers(&open).1.is_empty());
}

/// The rules of the rendered `kind` named `name` (in `ns` for a Role).
fn rules_of(docs: &[Value], kind: &str, name: &str, ns: Option<&str>) -> Option<Value> {
    docs.iter()
        .find(|d| {
            d["kind"] == kind
                && d["metadata"]["name"] == name
                && d["metadata"]["namespace"].as_str() == ns
        })
        .map(|d| d["rules"].clone())
}

/// Whether a RoleBinding `name` in `ns` binds Role `name` to ServiceAccount `ns`/`sa`.
fn role_bound(docs: &[Value], name: &str, ns: &str, sa: &str) -> bool {
    docs.iter().any(|d| {
        d["kind"] == "RoleBinding"
            && d["metadata"]["name"] == name
            && d["metadata"]["namespace"] == ns
            && d["roleRef"]
                == json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name})
            && d["subjects"] == json!([{"kind": "ServiceAccount", "name": sa, "namespace": ns}])
    })
}

/// The containment variables of the function's containers in `docs`, by name.
fn contain_env(docs: &[Value]) -> BTreeSet<String> {
    const VARS: &[&str] = &[
        "ACTION",
        "CONTAIN_RULES",
        "DELETE_RULES",
        "CONTAIN_SECONDS",
        "EVIDENCE_LOG_BYTES",
        "EVIDENCE_MAX_CONFIGMAPS",
    ];
    let mut out = BTreeSet::new();
    for d in docs {
        let env: Vec<String> = if d["kind"] == "Function" {
            d["spec"]["environment"]
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default()
        } else {
            crate::chart::containers(d)
                .into_iter()
                .flat_map(|c| env_of(c).into_keys())
                .collect()
        };
        out.extend(env.into_iter().filter(|v| VARS.contains(&v.as_str())));
    }
    out
}

/// Containment's rights come only with containment: with the default action (delete) no
/// platform grants patch, NetworkPolicies, logs or ConfigMaps, nor sets a containment
/// variable; with `config.action=contain` or `config.containRules` the ClusterRole gains
/// exactly the three containment rules and a Role in the function's own namespace (only) the
/// evidence ConfigMaps, for every identity the function runs as.
#[test]
fn containment_rbac_comes_only_with_containment() {
    let evidence_rules = json!([
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "list", "delete"]}
    ]);
    let contained = {
        let mut all = function_rules().as_array().unwrap().clone();
        all.extend(contain_rules().as_array().unwrap().iter().cloned());
        Value::Array(all)
    };
    // (setting, whether a containment can happen)
    let settings = [
        ("", false),
        ("config.action=delete", false),
        ("config.deleteRules=Terminal shell in container", false),
        ("config.action=contain", true),
        ("config.containRules=Terminal shell in container", true),
        (
            "config.action=contain,config.deleteRules=Terminal shell in container,config.containSeconds=600",
            true,
        ),
    ];
    let mut checked = 0;
    for platform in PLATFORMS {
        for (setting, on) in settings {
            // The workflow identity (argo namespace) besides the platform's.
            let set = format!(
                "platform={platform},argo.enabled=true,argo.trigger=workflow,{NAMED_SECRETS}{}{setting}",
                if setting.is_empty() { "" } else { "," }
            );
            let docs = template(&["--namespace", "fr", "--set", &set]);
            let identities = [
                ("falco-responder", "fr", "falco-responder"),
                (
                    "falco-responder-workflow",
                    "argo-events",
                    "falco-responder-workflow",
                ),
            ];
            for (role, ns, sa) in identities {
                let rules = rules_of(&docs, "ClusterRole", role, None)
                    .unwrap_or_else(|| panic!("{set}: no ClusterRole {role}"));
                let want = if on { &contained } else { &function_rules() };
                assert_eq!(&rules, want, "{set}: ClusterRole {role}");
                let evidence = format!("{role}-evidence");
                assert_eq!(
                    rules_of(&docs, "Role", &evidence, Some(ns)),
                    on.then(|| evidence_rules.clone()),
                    "{set}: Role {ns}/{evidence}"
                );
                assert_eq!(
                    role_bound(&docs, &evidence, ns, sa),
                    on,
                    "{set}: RoleBinding {ns}/{evidence} to {sa}"
                );
                checked += 1;
            }
            // Evidence Roles nowhere else.
            let evidence_roles: Vec<String> = docs
                .iter()
                .filter(|d| {
                    d["kind"] == "Role"
                        && strs(&d["rules"][0]["resources"]).contains(&"configmaps".to_string())
                        && d["rules"][0]["verbs"] != json!(["create"])
                })
                .map(|d| format!("{}/{}", d["metadata"]["namespace"], d["metadata"]["name"]))
                .collect();
            assert_eq!(
                evidence_roles.len(),
                if on { 2 } else { 0 },
                "{set}: {evidence_roles:?}"
            );
            let env = contain_env(&docs);
            if on {
                for var in ["ACTION", "EVIDENCE_LOG_BYTES", "EVIDENCE_MAX_CONFIGMAPS"] {
                    assert!(env.contains(var), "{set}: {var} not rendered: {env:?}");
                }
            } else {
                assert!(
                    env.is_empty(),
                    "{set}: renders {env:?} though nothing is contained"
                );
            }
        }
    }
    assert_eq!(checked, PLATFORMS.len() * settings.len() * 2);

    // rbac.namespaces: the ClusterRole (with containment) is bound per namespace only; the
    // evidence Role stays in the release namespace.
    let docs = template(&[
        "--namespace",
        "fr",
        "--set",
        "config.action=contain,auth.existingSecret=s,rbac.namespaces={a,b}",
    ]);
    assert_eq!(
        rules_of(&docs, "ClusterRole", "falco-responder", None),
        Some(contained)
    );
    assert!(!docs.iter().any(|d| d["kind"] == "ClusterRoleBinding"));
    for ns in ["a", "b"] {
        assert!(docs.iter().any(|d| d["kind"] == "RoleBinding"
            && d["metadata"]["namespace"] == ns
            && d["roleRef"]["kind"] == "ClusterRole"));
    }
    assert!(role_bound(
        &docs,
        "falco-responder-evidence",
        "fr",
        "falco-responder"
    ));
}
