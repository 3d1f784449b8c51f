//! The function itself as a pod, the way users run it: our image (scripts/image.sh, imported into
//! the node's containerd), installed from the chart (`helm template`, default platform
//! `kubernetes`, applied with kubectl), with in-cluster configuration and the chart's RBAC,
//! answering the kubelet's probes, reached over the pod network.

use std::{path::Path, time::Duration};

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::{Value, json};

use crate::node_test;
use crate::testkit::apiserver::wait_for;
use crate::testkit::node::{self, container_id, kubectl_ok, pod_ip, shell_event};
use crate::testkit::scene::Scene;
use crate::testkit::sender::http;

pub fn tests() -> Vec<crate::NodeTest> {
    vec![
        node_test!(the_chart_deploys_a_function_that_deletes_a_real_pod, 420),
        node_test!(
            under_hostile_load_the_pod_stays_within_its_memory_limit,
            300
        ),
    ]
}

/// The chart's objects for release `name` in `ns`, rendered by `helm template` with the API
/// versions of the node's API server (`--validate`: its PodDisruptionBudget is policy/v1beta1).
/// The values a test node needs: our image as the node has it (never pulled), one replica.
fn render(name: &str, ns: &str, secret: &str) -> String {
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
            // The token is on by default and `helm template` never invents one: the Secret is
            // created first, as a GitOps user does.
            "--set",
            &format!("auth.existingSecret={secret}"),
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

/// The bearer token the test's release expects (its Secret made by [`deploy`]).
const TOKEN: &str = "node-test-token-0123456789abcdefghijklmnopqrstuv";

/// Renders and applies the chart in `scene`'s namespace and waits for the rollout; the release
/// name and its Ready pod (Ready: the kubelet's readiness probe got 200 from /readyz).
async fn deploy(scene: &Scene) -> (String, Pod) {
    let name = format!("fr-{}", &scene.ns[scene.ns.len() - 8..]);
    let secret = format!("{name}-token");
    kubectl_ok(&[
        "create",
        "secret",
        "generic",
        &secret,
        "-n",
        &scene.ns,
        &format!("--from-literal=auth-token={TOKEN}"),
    ]);
    let manifest = std::env::temp_dir().join(format!("{name}.yaml"));
    std::fs::write(&manifest, render(&name, &scene.ns, &secret)).unwrap();
    kubectl_ok(&["apply", "-n", &scene.ns, "-f", manifest.to_str().unwrap()]);
    let _ = std::fs::remove_file(&manifest);
    kubectl_ok(&[
        "rollout",
        "status",
        "-n",
        &scene.ns,
        &format!("deployment/{name}"),
        "--timeout=180s",
    ]);
    let pod = function_pod(scene, &name).await;
    (name, pod)
}

/// POSTs `event` to `addr` (`ip:port`) with the release's token and returns the status and the
/// JSON answer.
async fn send(addr: &str, event: &str) -> (u16, Value) {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {TOKEN}").parse().unwrap(),
    );
    let r = http(
        addr.parse().unwrap(),
        "POST",
        "/",
        &headers,
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
    let (name, function) = deploy(&fns).await;
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
    // The chart's default: a request without the token is refused.
    let r = http(
        addr.parse().unwrap(),
        "POST",
        "/",
        &Default::default(),
        shell_event(&victim, &cid).as_bytes(),
    )
    .await;
    assert_eq!(r.status, 401, "{}", String::from_utf8_lossy(&r.body));

    // The function's own namespace is protected whatever the configuration says; this event
    // goes through the chart's Service (its ClusterIP, routed by kube-proxy).
    let own = fns.real_pod("bystander", json!({}), json!({})).await;
    let service = kubectl_ok(&[
        "get",
        "-n",
        &fns.ns,
        &format!("service/{name}"),
        "-o",
        "jsonpath={.spec.clusterIP}:{.spec.ports[0].port}",
    ]);
    let (status, reply) = send(&service, &shell_event(&own, &container_id(&own, "main"))).await;
    assert_eq!(
        (status, reply["outcome"].as_str()),
        (200, Some("skipped")),
        "{reply}"
    );
    assert!(fns.exists(&own).await, "the protected pod is left alone");

    // A rollout: the kubelet sends the old pod SIGTERM; it stops answering, then exits 0.
    // Watched from before the restart: the pod is deleted as soon as its container has exited,
    // so a poll can miss the status that says how it exited; a watch sees every change.
    let old = function.metadata.name.clone().unwrap();
    let pods = fns.pods();
    let since = pods
        .get(&old)
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let watch = WatchParams::default()
        .fields(&format!("metadata.name={old}"))
        .timeout(180);
    let mut changes = pods.watch(&watch, &since).await.unwrap().boxed();
    kubectl_ok(&[
        "rollout",
        "restart",
        "-n",
        &fns.ns,
        &format!("deployment/{name}"),
    ]);
    let exited = async {
        while let Some(change) = changes.try_next().await.unwrap() {
            let (WatchEvent::Added(p) | WatchEvent::Modified(p) | WatchEvent::Deleted(p)) = change
            else {
                continue;
            };
            let s = p.status.and_then(|s| s.container_statuses);
            let state = s.and_then(|s| s.into_iter().next()).and_then(|s| s.state);
            if let Some(t) = state.and_then(|s| s.terminated) {
                return (t.exit_code, t.reason);
            }
        }
        panic!("the watch of the old function pod {old} ended before it exited")
    };
    let exit = tokio::time::timeout(Duration::from_secs(120), exited)
        .await
        .unwrap_or_else(|_| {
            panic!("timed out after 120s waiting for the old function pod to exit")
        });
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
            // The token's file, as the Deployment mounts it (once needs no token, but the
            // container is the Deployment's own).
            "volumes": pod_spec["volumes"],
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

/// The chart's memory limit (64Mi) for real: the kubelet runs the pod in a memory cgroup of that
/// size while 3,000 idle connections and 300 clients slowly sending 1 MiB bodies arrive over the
/// pod network; true events are answered meanwhile, and the container is never OOM-killed.
async fn under_hostile_load_the_pod_stays_within_its_memory_limit() {
    use tokio::{io::AsyncWriteExt, net::TcpStream};

    let fns = Scene::on_node("fn-load").await;
    let victims = Scene::on_node("victims-load").await;
    let (_, function) = deploy(&fns).await;
    let limit = function.spec.as_ref().unwrap().containers[0]
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.get("memory"))
        .map(|q| q.0.clone());
    assert_eq!(limit.as_deref(), Some("64Mi"), "the chart's limit");
    let addr: std::net::SocketAddr = format!("{}:8080", pod_ip(&function)).parse().unwrap();

    let mut idle = Vec::new();
    for _ in 0..3000 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut slow = Vec::new();
    for _ in 0..300 {
        slow.push(tokio::spawn(async move {
            let Ok(mut s) = TcpStream::connect(addr).await else {
                return;
            };
            // With the token: the worst case, a sender that stole it.
            let head = format!(
                "POST / HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n\
                 content-length: 1048576\r\n\r\n"
            );
            if s.write_all(head.as_bytes()).await.is_ok() {
                let piece = vec![b' '; 16 << 10];
                for _ in 0..64 {
                    if s.write_all(&piece).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }));
    }
    // Meanwhile true events: one deletes a real pod, the others name pods that are gone.
    let victim = victims.real_pod("under-load", json!({}), json!({})).await;
    let (status, reply) = send(
        &addr.to_string(),
        &shell_event(&victim, &container_id(&victim, "main")),
    )
    .await;
    assert_eq!(
        (status, reply["outcome"].as_str()),
        (200, Some("deleted")),
        "{reply}"
    );
    for i in 0..10 {
        let mut gone = victim.clone();
        gone.metadata.name = Some(format!("gone-{i}"));
        let (status, reply) = send(&addr.to_string(), &shell_event(&gone, "0123456789ab")).await;
        assert_eq!(
            (status, reply["outcome"].as_str()),
            (200, Some("gone")),
            "{reply}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for t in slow {
        let _ = t.await;
    }
    drop(idle);

    let pod = fns
        .get_pod(function.metadata.name.as_deref().unwrap())
        .await
        .unwrap();
    let status = pod.status.unwrap().container_statuses.unwrap().remove(0);
    assert_eq!(status.restart_count, 0, "{status:?}");
    assert!(
        status.last_state.and_then(|s| s.terminated).is_none(),
        "never killed"
    );
    let cid = status.container_id.unwrap();
    let cid = cid.trim_start_matches("containerd://");
    let uid = pod.metadata.uid.unwrap();
    if let Ok(peak) = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/memory/kubepods/burstable/pod{uid}/{cid}/memory.max_usage_in_bytes"
    )) {
        eprintln!(
            "function pod under hostile load: peak memory {} KiB of 65536",
            peak.trim().parse::<u64>().unwrap_or(0) / 1024
        );
    }
    victims.clear().await;
    fns.clear().await;
}
