//! The function itself as a pod, the way users run it: our image (scripts/image.sh, imported into
//! the node's containerd), installed from the chart (`helm template`, default platform
//! `kubernetes`, applied with kubectl), with in-cluster configuration and the chart's RBAC,
//! answering the kubelet's probes, reached over the pod network.

use std::{path::Path, time::Duration};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, PostParams};
use serde_json::{Value, json};

use crate::node_test;
use crate::testkit::apiserver::wait_for;
use crate::testkit::node::{self, container_id, kubectl_ok, pod_ip, shell_event};
use crate::testkit::scene::Scene;
use crate::testkit::sender::http;

pub fn tests() -> Vec<crate::NodeTest> {
    vec![node_test!(
        the_chart_deploys_a_function_that_deletes_a_real_pod,
        420
    )]
}

/// The chart's objects for release `name` in `ns`, rendered by `helm template` with the API
/// versions of the node's API server (`--validate`: its PodDisruptionBudget is policy/v1beta1).
/// The values a test node needs: our image as the node has it (never pulled), one replica.
fn render(name: &str, ns: &str) -> String {
    let helm = std::env::var("HELM").unwrap_or_else(|_| "helm".into());
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/falco-responder");
    let image = std::env::var("TEST_NODE_RESPONDER_IMAGE")
        .expect("TEST_NODE_RESPONDER_IMAGE (scripts/node-env.sh)");
    let (repo, tag) = image.rsplit_once(':').unwrap();
    let kubeconfig = node::server().admin_kubeconfig();
    let out = std::process::Command::new(&helm)
        .args(["template", name])
        .arg(&chart)
        .args(["--namespace", ns, "--validate", "--kubeconfig"])
        .arg(&kubeconfig)
        .args([
            "--set",
            &format!("fullnameOverride={name}"),
            "--set",
            &format!("image.repository={repo}"),
            "--set",
            &format!("image.tag={tag}"),
            "--set",
            "image.pullPolicy=Never",
            "--set",
            "replicaCount=1",
        ])
        .output()
        .unwrap_or_else(|e| panic!("running {helm}: {e} (scripts/helm-env.sh installs it)"));
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The function's one pod of release `name` (the live one).
async fn function_pod(scene: &Scene, name: &str) -> Pod {
    let pods = scene.pods();
    wait_for(
        &format!("a Ready pod of {name}"),
        node::POD_READY,
        || async {
            pods.list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={name}")))
                .await
                .ok()?
                .items
                .into_iter()
                .find(node::pod_ready)
        },
    )
    .await
}

/// POSTs `event` to `addr` (`ip:port`) and returns the status and the JSON answer.
async fn send(addr: &str, event: &str) -> (u16, Value) {
    let r = http(
        addr.parse().unwrap(),
        "POST",
        "/",
        &Default::default(),
        event.as_bytes(),
    )
    .await;
    let v = serde_json::from_slice(&r.body).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&r.body));
    });
    (r.status, v)
}

/// helm template → kubectl apply → the kubelet starts our image, its probes pass; an event sent
/// over the pod network deletes a real pod through the in-cluster configuration and the chart's
/// RBAC; a pod in a protected namespace is refused; on a rollout the kubelet's SIGTERM ends the
/// old pod cleanly (exit 0); the one-shot mode runs as a pod with the event in BODY.
async fn the_chart_deploys_a_function_that_deletes_a_real_pod() {
    let fns = Scene::on_node("fn").await;
    let victims = Scene::on_node("victims").await;
    let name = format!("fr-{}", &fns.ns[fns.ns.len() - 8..]);
    let manifest = std::env::temp_dir().join(format!("{name}.yaml"));
    std::fs::write(&manifest, render(&name, &fns.ns)).unwrap();
    kubectl_ok(&["apply", "-n", &fns.ns, "-f", manifest.to_str().unwrap()]);
    kubectl_ok(&[
        "rollout",
        "status",
        "-n",
        &fns.ns,
        &format!("deployment/{name}"),
        "--timeout=180s",
    ]);
    // Ready: the kubelet's readiness probe got 200 from /readyz.
    let function = function_pod(&fns, &name).await;
    let addr = format!("{}:8080", pod_ip(&function));

    let victim = victims.real_pod("shell", json!({}), json!({})).await;
    let cid = container_id(&victim, "main");
    let (status, reply) = send(&addr, &shell_event(&victim, &cid)).await;
    assert_eq!(
        (status, reply["outcome"].as_str()),
        (200, Some("deleted")),
        "{reply}"
    );
    let live = victims
        .get_pod("shell")
        .await
        .expect("terminating, not gone yet");
    assert_eq!(live.metadata.uid, victim.metadata.uid);
    assert!(live.metadata.deletion_timestamp.is_some(), "terminating");

    // The function's own namespace is protected whatever the configuration says.
    let own = fns.real_pod("bystander", json!({}), json!({})).await;
    let (status, reply) = send(&addr, &shell_event(&own, &container_id(&own, "main"))).await;
    assert_eq!(
        (status, reply["outcome"].as_str()),
        (200, Some("skipped")),
        "{reply}"
    );
    assert!(fns.exists(&own).await, "the protected pod is left alone");

    // A rollout: the kubelet sends the old pod SIGTERM; it stops answering, then exits 0.
    kubectl_ok(&[
        "rollout",
        "restart",
        "-n",
        &fns.ns,
        &format!("deployment/{name}"),
    ]);
    let old = function.metadata.name.clone().unwrap();
    let pods = fns.pods();
    let exit = wait_for(
        &format!("the old function pod {old} to exit"),
        Duration::from_secs(120),
        || async {
            let p = pods.get_opt(&old).await.ok()??;
            let s = p.status?.container_statuses?.into_iter().next()?;
            s.state?.terminated.map(|t| (t.exit_code, t.reason))
        },
    )
    .await;
    assert_eq!(exit.0, 0, "exit code on SIGTERM: {exit:?}");
    kubectl_ok(&[
        "rollout",
        "status",
        "-n",
        &fns.ns,
        &format!("deployment/{name}"),
        "--timeout=180s",
    ]);

    // One-shot: the Deployment's container as an Argo Workflow step's main container runs it
    // (`once`, the event in BODY); Argo's emissary wrapper is not part of this.
    let target = victims.real_pod("step", json!({}), json!({})).await;
    let deployment: Value = serde_json::from_str(&kubectl_ok(&[
        "get",
        "-n",
        &fns.ns,
        &format!("deployment/{name}"),
        "-o",
        "json",
    ]))
    .unwrap();
    let pod_spec = &deployment["spec"]["template"]["spec"];
    let mut container = pod_spec["containers"][0].clone();
    let c = container.as_object_mut().unwrap();
    for k in ["readinessProbe", "livenessProbe", "ports"] {
        c.remove(k);
    }
    c.insert("args".into(), json!(["once"]));
    let event = shell_event(&target, &container_id(&target, "main"));
    c["env"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "name": "BODY", "value": event }));
    let step: Pod = serde_json::from_value(json!({
        "metadata": { "name": "once", "namespace": fns.ns },
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": pod_spec["serviceAccountName"],
            "securityContext": pod_spec["securityContext"],
            "containers": [container]
        }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &step).await.unwrap();
    let phase = wait_for(
        "the one-shot pod to finish",
        Duration::from_secs(120),
        || async {
            let p = pods.get_opt("once").await.ok()??;
            let phase = p.status?.phase?;
            (phase == "Succeeded" || phase == "Failed").then_some(phase)
        },
    )
    .await;
    let log = kubectl_ok(&["logs", "-n", &fns.ns, "once"]);
    assert_eq!(phase, "Succeeded", "{log}");
    let result: Value = serde_json::from_str(
        log.lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .unwrap_or("{}"),
    )
    .unwrap_or_else(|e| panic!("{e}: {log}"));
    assert_eq!(result["outcome"], "deleted", "{log}");
    assert!(
        victims.terminating("step").await,
        "the step deleted the pod"
    );

    victims.clear().await;
    fns.clear().await;
}
