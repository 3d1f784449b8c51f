//! Real pods, and the function (the binary on this machine, as admin) judging what the kubelet
//! reports about them: real container ids, restarts, replacements, graceful deletion, mirror
//! pods, readiness and PodDisruptionBudget status computed from real pods. The events are built
//! by the tests as Falco's container plugin writes them (`testkit::node::shell_event`).

use serde_json::json;

use crate::node_test;
use crate::testkit::node::{self, container_id, exec};
use crate::testkit::scene::Scene;

pub fn tests() -> Vec<crate::NodeTest> {
    vec![node_test!(a_pod_runs_with_its_token, 120)]
}

/// The node runs a pod: a real containerd id, an address on the pod network, a ServiceAccount
/// token mounted by the admission plugin, the API server's Service reachable.
async fn a_pod_runs_with_its_token() {
    let scene = Scene::on_node("node-smoke").await;
    let pod = scene.real_pod("sleeper", json!({}), json!({})).await;
    let cid = container_id(&pod, "main");
    assert!(
        cid.len() == 64 && cid.bytes().all(|b| b.is_ascii_hexdigit()),
        "a containerd id: {cid}"
    );
    let ip = node::pod_ip(&pod);
    assert!(ip.starts_with("10.244.0."), "pod IP {ip}");
    let out = exec(
        &pod,
        "main",
        "wc -c < /var/run/secrets/kubernetes.io/serviceaccount/token; \
         cat /var/run/secrets/kubernetes.io/serviceaccount/namespace",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exec: {out:?}");
    let mut lines = text.lines();
    let token_bytes: usize = lines.next().unwrap_or("0").trim().parse().unwrap_or(0);
    assert!(token_bytes > 100, "a token is mounted: {text}");
    assert_eq!(lines.next(), Some(scene.ns.as_str()));
    // kube-proxy routes the `kubernetes` Service's ClusterIP to the API server.
    let out = exec(
        &pod,
        "main",
        "nc -w 5 10.0.0.1 443 </dev/null && echo routed",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "routed",
        "10.0.0.1:443 from a pod: {out:?}"
    );
    scene.clear().await;
}
