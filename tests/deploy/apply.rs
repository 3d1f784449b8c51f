//! Every manifest on the real API server: `kubectl apply -k` of each rendered directory,
//! `kubectl apply --dry-run=server --validate=strict` of every document (broken copies
//! refused), and the plain objects (NetworkPolicies, RBAC, namespaces, ServiceAccounts, Secrets)
//! created and stored as written. The custom resources' own schemas: `schemas`.

use std::{collections::BTreeSet, path::Path};

use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::{Api, api::PostParams};
use serde_json::{Value, json};

use crate::{
    files::{ARGO, MANIFEST_DIRS, RBAC, objs, parse_yaml, root, str_at, yaml_docs},
    install::crds,
    rbac::may,
    testkit::apiserver::{self, ApiServer},
    tools::{ok, run},
};

pub(crate) const RENDERED_DIRS: &[&str] = &["kubernetes", "knative", "openfaas", "argo"];

/// The Kubernetes manifests of a directory, repo-relative, with their documents: YAML files
/// whose documents all have apiVersion and kind (not the Falcosidekick values, the faas-cli
/// stacks, nor the kustomization itself).
fn kube_manifests(dir: &str) -> Vec<(String, Vec<Value>)> {
    let mut names: Vec<String> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| (n.ends_with(".yaml") || n.ends_with(".yml")) && n != "kustomization.yaml")
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let rel = format!("{dir}/{name}");
            let docs = yaml_docs(&rel);
            (rel, docs)
        })
        .filter(|(_, d)| {
            !d.is_empty()
                && d.iter()
                    .all(|d| d["apiVersion"].is_string() && d["kind"].is_string())
        })
        .collect()
}

/// kube-apiserver 1.20 serves PodDisruptionBudget only as policy/v1beta1; the rendered YAML is
/// for current clusters (policy/v1, Kubernetes 1.21+), so it is left out here.
pub(crate) fn served_by_1_20(doc: &Value) -> bool {
    !(doc["kind"] == "PodDisruptionBudget" && doc["apiVersion"] == "policy/v1")
}

/// Documents as one `v1` List, which kubectl applies item by item.
pub(crate) fn as_list(docs: &[&Value]) -> String {
    json!({ "apiVersion": "v1", "kind": "List", "items": docs }).to_string()
}

/// The ServiceAccounts (namespace, name) the bindings among `docs` name.
fn bound_service_accounts(docs: &[Value]) -> BTreeSet<(String, String)> {
    docs.iter()
        .filter(|d| {
            d["apiVersion"] == RBAC && d["kind"].as_str().is_some_and(|k| k.ends_with("Binding"))
        })
        .flat_map(|b| b["subjects"].as_array().into_iter().flatten())
        .filter(|s| s["kind"] == "ServiceAccount")
        .map(|s| {
            (
                str_at(s, "/namespace").to_string(),
                str_at(s, "/name").to_string(),
            )
        })
        .collect()
}

/// The RBAC model the static checks answer with (`rbac::may`, which `retries` asks whether each
/// Sensor may create its dead letters) agrees with the API server's authorizer, asked by
/// `kubectl auth can-i` once the manifests are applied: for each Sensor's ServiceAccount, that
/// permission and some it must not have.
fn may_agrees_with_the_authorizer(kubeconfig: &Path, bound: &BTreeSet<(String, String)>) {
    let asked = [
        ("", "configmaps", "create"),
        ("", "configmaps", "delete"),
        ("", "secrets", "get"),
        ("", "pods", "delete"),
    ];
    let sensors: BTreeSet<(String, String)> = objs(ARGO, "Sensor")
        .iter()
        .map(|s| {
            let sa = str_at(&s.v, "/spec/template/serviceAccountName");
            (s.namespace().unwrap().to_string(), sa.to_string())
        })
        .collect();
    assert!(
        sensors.is_subset(bound),
        "the Sensors' ServiceAccounts {sensors:?} are not all bound by what kustomize applies: {bound:?}"
    );
    let bound = &sensors;
    let mut granted = 0;
    for (ns, sa) in bound {
        let who = format!("system:serviceaccount:{ns}:{sa}");
        for &(group, resource, verb) in &asked {
            let what = if group.is_empty() {
                resource.to_string()
            } else {
                format!("{resource}.{group}")
            };
            // can-i exits 0 for yes, 1 for no.
            let kubectl = run(
                "kubectl",
                Some(kubeconfig),
                &[
                    "auth",
                    "can-i",
                    verb,
                    &what,
                    "--namespace",
                    ns,
                    "--as",
                    &who,
                ],
            );
            let hand = may(ns, sa, group, resource, verb);
            assert_eq!(
                hand,
                kubectl.is_ok(),
                "{who} {verb} {what} in {ns}: the manifests' RBAC says {hand}, the API server {kubectl:?}"
            );
            granted += usize::from(hand);
        }
    }
    assert!(granted > 0, "nothing granted to {bound:?}");
}

#[tokio::test]
async fn kubectl_applies_every_rendered_directory_and_document() {
    let server = ApiServer::shared();
    let admin = server.admin_client().await;
    crds(&admin).await;
    let kc = server.admin_kubeconfig();
    // The namespaces the platforms' own installs create.
    for ns in ["argo-events", "openfaas-fn"] {
        let _ = run("kubectl", Some(&kc), &["create", "namespace", ns]);
    }
    let mut bound = BTreeSet::new();
    for dir in RENDERED_DIRS {
        let path = root().join(dir);
        if !path.join("kustomization.yaml").exists() {
            panic!("{dir}/kustomization.yaml missing: run scripts/render-manifests.sh");
        }
        let path = path.to_str().unwrap();
        // `kubectl apply -k` as a user runs it (through a filtered copy where 1.20 lacks an API).
        let built = parse_yaml(&ok(run("kubectl", None, &["kustomize", path])));
        assert!(!built.is_empty(), "{dir}: kustomize built nothing");
        if MANIFEST_DIRS.contains(dir) {
            bound.extend(bound_service_accounts(&built));
        }
        if built.iter().all(served_by_1_20) {
            ok(run("kubectl", Some(&kc), &["apply", "-k", path]));
        } else {
            let tmp = tempfile::tempdir().unwrap();
            let file = tmp.path().join("built.json");
            let kept: Vec<&Value> = built.iter().filter(|d| served_by_1_20(d)).collect();
            std::fs::write(&file, as_list(&kept)).unwrap();
            ok(run(
                "kubectl",
                Some(&kc),
                &["apply", "-f", file.to_str().unwrap()],
            ));
        }
        // Every document of every manifest, including the alternatives kustomize does not
        // apply, is accepted by the API server; unknown fields fail (strict validation).
        let files = kube_manifests(dir);
        assert!(!files.is_empty(), "{dir}: no manifests");
        for (f, all) in files {
            let kept: Vec<&Value> = all.iter().filter(|d| served_by_1_20(d)).collect();
            let tmp = tempfile::tempdir().unwrap();
            let file = tmp.path().join("docs.json");
            std::fs::write(&file, as_list(&kept)).unwrap();
            let out = run(
                "kubectl",
                Some(&kc),
                &[
                    "apply",
                    "--dry-run=server",
                    "--validate=strict",
                    "-f",
                    file.to_str().unwrap(),
                ],
            )
            .unwrap_or_else(|e| panic!("{f}: {e}"));
            assert_eq!(
                out.lines().count(),
                kept.len(),
                "{f}: one line per document expected:\n{out}"
            );
        }
    }
    may_agrees_with_the_authorizer(&kc, &bound);
    // (The namespaces exist now, so nothing fails for want of one.) The check can fail: broken
    // copies of the rendered objects are refused. (This stands in for JSON Schema checks by hand
    // of these kinds: see `schemas`.)
    let rendered: Vec<Value> = RENDERED_DIRS
        .iter()
        .flat_map(|d| kube_manifests(d))
        .flat_map(|(_, docs)| docs)
        .collect();
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, &str, &str, Option<Value>)> = vec![
        ("misspelt container field", "Deployment", "falco-responder", "/spec/template/spec/containers/0/imagePullPolicyy", Some(json!("Always"))),
        ("containerConcurrency as a string", "serving.knative.dev/v1 Service", "falco-responder", "/spec/template/spec/containerConcurrency", Some(json!("fifty"))),
        ("misspelt probe field", "serving.knative.dev/v1 Service", "falco-responder-argo", "/spec/template/spec/containers/0/readinessProbe/httpGet/pathx", Some(json!("/x"))),
        ("unknown top-level field", "serving.knative.dev/v1 Service", "falco-responder", "/specs", Some(json!({}))),
        ("unknown field", "Namespace", "falco-responder", "/specc", Some(json!({}))),
        ("automount as a string", "ServiceAccount", "falco-responder", "/automountServiceAccountToken", Some(json!("yes"))),
        ("type as a number", "Secret", "falco-responder-sa-token", "/type", Some(json!(5))),
        ("verbs as a string", "ClusterRole", "falco-responder", "/rules/0/verbs", Some(json!("get"))),
        ("misspelt subject field", "ClusterRoleBinding", "falco-responder", "/subjects/0/namespacee", Some(json!("x"))),
        ("unknown rule field", "Role", "falco-responder-sensor", "/rules/0/resourcez", Some(json!([]))),
        ("roleRef without name", "RoleBinding", "falco-responder-sensor", "/roleRef/name", None),
        ("misspelt container field", "WorkflowTemplate", "falco-responder", "/spec/templates/0/container/envv", Some(json!([]))),
        ("env value as a number", "WorkflowTemplate", "falco-responder", "/spec/templates/0/container/env/1/value", Some(json!(1))),
        ("port as a boolean", "NetworkPolicy", "falco-responder", "/spec/ingress/0/ports/0/port", Some(json!(true))),
        ("misspelt peer field", "NetworkPolicy", "falco-responder", "/spec/ingress/0/from/0/podSelektor", Some(json!({}))),
        ("policyTypes as a string", "NetworkPolicy", "falco-eventsource", "/spec/policyTypes", Some(json!("Ingress"))),
        ("misspelt Function field", "Function", "falco-responder", "/spec/imagee", Some(json!("x"))),
        ("Function without image", "Function", "falco-responder", "/spec/image", None),
    ];
    let tmp = tempfile::tempdir().unwrap();
    for (what, kind, name, ptr, value) in cases {
        let mut doc = rendered
            .iter()
            .find(|d| {
                // "apiVersion Kind" where the kind alone is ambiguous.
                let (api, k) = kind.rsplit_once(' ').unwrap_or(("", kind));
                d["kind"] == k
                    && (api.is_empty() || d["apiVersion"] == api)
                    && d["metadata"]["name"] == name
            })
            .unwrap_or_else(|| panic!("no {kind} {name} in {RENDERED_DIRS:?}"))
            .clone();
        let (parent, key) = ptr.rsplit_once('/').unwrap();
        let parent = doc
            .pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .unwrap();
        match value {
            Some(v) => parent.insert(key.to_string(), v),
            None => parent.remove(key),
        };
        let file = tmp.path().join("broken.json");
        std::fs::write(&file, as_list(&[&doc])).unwrap();
        let args = [
            "apply",
            "--dry-run=server",
            "--validate=strict",
            "-f",
            file.to_str().unwrap(),
        ];
        assert!(
            run("kubectl", Some(&kc), &args).is_err(),
            "{kind} {name}: {what}: accepted by the API server"
        );
    }
}

/// Built-in API groups the bare API server serves (no CRDs installed).
pub(crate) fn is_builtin(doc: &Value) -> bool {
    matches!(
        doc["apiVersion"].as_str(),
        Some("v1" | "rbac.authorization.k8s.io/v1" | "networking.k8s.io/v1")
    )
}

/// Drops empty lists and maps: the API server omits them (`ingress: []` comes back absent),
/// and an absent ingress list with policyTypes [Ingress] admits nothing, just like `[]`.
pub(crate) fn without_empty(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, without_empty(v)))
                .filter(|(_, v)| !matches!(v, Value::Array(a) if a.is_empty()))
                .filter(|(_, v)| !matches!(v, Value::Object(o) if o.is_empty()))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(without_empty).collect()),
        other => other,
    }
}

#[tokio::test]
async fn plain_kubernetes_manifests_are_accepted_and_stored_as_written() {
    let server = ApiServer::shared();
    let client = server.admin_client().await;
    let dir = tempfile::tempdir().unwrap();
    let mut policies = 0;
    let mut applied_total = 0;
    for (rel, docs) in MANIFEST_DIRS.iter().flat_map(|d| kube_manifests(d)) {
        let builtin: Vec<&Value> = docs.iter().filter(|d| is_builtin(d)).collect();
        if builtin.is_empty() {
            continue;
        }
        // One fresh namespace per file: the harness relocates namespaced objects into it and
        // renames cluster-scoped ones, so parallel runs never collide.
        let ns = apiserver::namespace(&client, "manifests").await;
        let file = dir.path().join(rel.replace('/', "-"));
        let text: String = builtin
            .iter()
            .map(|d| format!("---\n{}\n", serde_json::to_string(d).unwrap()))
            .collect();
        std::fs::write(&file, text).unwrap();
        let applied = apiserver::apply_manifests(&client, &file, Some(&ns)).await;
        assert_eq!(applied.len(), builtin.len(), "{rel}: {applied:?}");
        applied_total += applied.len();

        // What the API server stored is what the file says (nothing pruned or rewritten).
        let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
        for doc in builtin.iter().filter(|d| d["kind"] == "NetworkPolicy") {
            let name = doc["metadata"]["name"].as_str().unwrap();
            let stored = api
                .get(name)
                .await
                .unwrap_or_else(|e| panic!("{rel}: NetworkPolicy {name}: {e}"));
            let stored = without_empty(serde_json::to_value(stored.spec.unwrap()).unwrap());
            assert_eq!(
                stored,
                without_empty(doc["spec"].clone()),
                "{rel}: NetworkPolicy {name} as stored"
            );
            policies += 1;
        }
    }
    assert!(policies >= 4, "only {policies} NetworkPolicies found");
    assert!(applied_total >= 20, "only {applied_total} objects applied");
}

#[tokio::test]
async fn the_api_server_rejects_a_broken_network_policy() {
    let server = ApiServer::shared();
    let client = server.admin_client().await;
    let ns = apiserver::namespace(&client, "netpol").await;
    let docs = yaml_docs("knative/networkpolicy.yaml");
    let mut doc = docs[0].clone();
    doc["metadata"]["namespace"] = json!(ns);
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);

    let good: NetworkPolicy = serde_json::from_value(doc.clone()).unwrap();
    api.create(&PostParams::default(), &good)
        .await
        .expect("the shipped policy is valid");

    for (what, ptr, value) in [
        (
            "protocol HTTP",
            "/spec/ingress/0/ports/0/protocol",
            json!("HTTP"),
        ),
        ("port 0", "/spec/ingress/0/ports/0/port", json!(0)),
        (
            "label value with a space",
            "/spec/podSelector/matchLabels/app.kubernetes.io~1name",
            json!("falco responder"),
        ),
    ] {
        let mut bad = doc.clone();
        bad["metadata"]["name"] = json!("broken");
        *bad.pointer_mut(ptr).unwrap() = value;
        let bad: NetworkPolicy = serde_json::from_value(bad).unwrap();
        match api.create(&PostParams::default(), &bad).await {
            Err(kube::Error::Api(s)) => assert_eq!(s.code, 422, "{what}: {s:?}"),
            other => panic!("{what}: accepted: {other:?}"),
        }
    }
}
