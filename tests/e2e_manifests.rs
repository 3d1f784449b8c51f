//! The plain Kubernetes objects of the deploy manifests (NetworkPolicies, RBAC, namespaces,
//! ServiceAccounts, Secrets) created on a real kube-apiserver + etcd (tests/support): the API
//! server's own validation accepts them, stores what the files say, and rejects a broken
//! NetworkPolicy. The custom resources (Knative, Argo, OpenFaaS) need their CRDs and
//! controllers; tests/manifests.rs validates those against the upstream schemas.
//! Needs kube-apiserver and etcd: `scripts/kube-test-env.sh` (see tests/support/mod.rs).

mod support;

use std::path::Path;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::{Api, api::PostParams};
use serde_json::{Value, json};
use support::ApiServer;

const MANIFEST_DIRS: &[&str] = &["knative", "openfaas", "argo"];

/// Built-in API groups the bare API server serves (no CRDs installed).
fn is_builtin(doc: &Value) -> bool {
    matches!(
        doc["apiVersion"].as_str(),
        Some("v1" | "rbac.authorization.k8s.io/v1" | "networking.k8s.io/v1")
    )
}

/// Every Kubernetes manifest file (not Helm values, not OpenFaaS stacks) with its documents.
fn manifest_files() -> Vec<(String, Vec<Value>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = vec![];
    for dir in MANIFEST_DIRS {
        let mut names: Vec<String> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".yaml") && !n.ends_with("falcosidekick-values.yaml"))
            .collect();
        names.sort();
        for name in names {
            let rel = format!("{dir}/{name}");
            let text = std::fs::read_to_string(root.join(&rel)).unwrap();
            let docs: Vec<Value> =
                serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{rel}: {e}"));
            out.push((rel, docs.into_iter().filter(Value::is_object).collect()));
        }
    }
    out
}

/// Drops empty lists and maps: the API server omits them (`ingress: []` comes back absent),
/// and an absent ingress list with policyTypes [Ingress] admits nothing, just like `[]`.
fn without_empty(v: Value) -> Value {
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
    for (rel, docs) in manifest_files() {
        let builtin: Vec<&Value> = docs.iter().filter(|d| is_builtin(d)).collect();
        if builtin.is_empty() {
            continue;
        }
        // One fresh namespace per file: the harness relocates namespaced objects into it and
        // renames cluster-scoped ones, so parallel runs never collide.
        let ns = support::namespace(&client, "manifests").await;
        let file = dir.path().join(rel.replace('/', "-"));
        let text: String = builtin
            .iter()
            .map(|d| format!("---\n{}\n", serde_json::to_string(d).unwrap()))
            .collect();
        std::fs::write(&file, text).unwrap();
        let applied = support::apply_manifests(&client, &file, Some(&ns)).await;
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
    let ns = support::namespace(&client, "netpol").await;
    let (_, docs) = manifest_files()
        .into_iter()
        .find(|(rel, _)| rel == "knative/networkpolicy.yaml")
        .expect("knative/networkpolicy.yaml");
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
