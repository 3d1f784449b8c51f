//! Real pods, and the function (the binary on this machine, as admin) judging what the kubelet
//! reports about them: real container ids, restarts, replacements, graceful deletion, mirror
//! pods, readiness and PodDisruptionBudget status computed from real pods. The events are built
//! by the tests as Falco's container plugin writes them (`testkit::node::shell_event`).

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::{
    Api,
    api::{DeleteParams, DynamicObject, PostParams},
    core::GroupVersionKind,
    discovery::ApiResource,
};
use serde_json::{Value, json};

use crate::node_test;
use crate::testkit::apiserver::wait_for;
use crate::testkit::binary::Responder;
use crate::testkit::node::{self, STATIC_PODS, container_id, exec, kill_container, shell_event};
use crate::testkit::scene::Scene;
use crate::testkit::sender::Envelope;

pub fn tests() -> Vec<crate::NodeTest> {
    vec![
        node_test!(a_pod_runs_with_its_token, 120),
        node_test!(the_real_container_id_proves_the_pod, 120),
        node_test!(
            after_a_real_restart_the_old_container_id_still_proves_the_pod,
            180
        ),
        node_test!(a_statefulset_pod_replaced_under_the_same_name_is_stale, 240),
        node_test!(a_pod_in_its_grace_period_is_terminating, 120),
        node_test!(a_static_pods_mirror_pod_is_skipped, 150),
        node_test!(
            concurrent_events_for_every_replica_leave_the_floor_standing,
            300
        ),
    ]
}

async fn send(responder: &Responder, event: &str) -> (u16, Value) {
    let r = responder.send(Envelope::Plain, event).await;
    let v = responder.result(&r);
    (r.status, v)
}

/// Sends `event`; the answer, which must have this status and outcome.
async fn expect(responder: &Responder, event: &str, status: u16, outcome: &str) -> Value {
    let (got, v) = send(responder, event).await;
    assert_eq!((got, v["outcome"].as_str()), (status, Some(outcome)), "{v}");
    v
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

/// The 12-character id Falco reports matches the 64-character one the kubelet reports; an
/// event naming the pod's old uid is not acted on.
async fn the_real_container_id_proves_the_pod() {
    let scene = Scene::on_node("node-cid").await;
    let responder = scene.responder(&[]).await;
    let pod = scene.real_pod("shell", json!({}), json!({})).await;
    let cid = container_id(&pod, "main");

    let mut wrong_uid: Value = serde_json::from_str(&shell_event(&pod, &cid)).unwrap();
    wrong_uid["output_fields"]["k8s.pod.uid"] = json!(uuid::Uuid::new_v4().to_string());
    expect(&responder, &wrong_uid.to_string(), 200, "stale").await;
    assert!(scene.exists(&pod).await);

    expect(&responder, &shell_event(&pod, &cid), 200, "deleted").await;
    assert!(scene.terminating("shell").await);
    scene.clear().await;
}

/// Kill PID 1: the kubelet restarts the container under a new id and keeps the old one in
/// `lastState.terminated`; the event seen in the old container still proves the pod.
async fn after_a_real_restart_the_old_container_id_still_proves_the_pod() {
    let scene = Scene::on_node("node-restart").await;
    let responder = scene.responder(&[]).await;
    let pod = scene.real_pod("crashy", json!({}), json!({})).await;
    let old = container_id(&pod, "main");
    let event = shell_event(&pod, &old);
    kill_container(&old);
    let pods = scene.pods();
    let restarted = wait_for(
        "the container restarted and Ready",
        node::POD_READY,
        || async {
            let p = pods.get_opt("crashy").await.ok()??;
            let s = p
                .status
                .as_ref()?
                .container_statuses
                .as_ref()?
                .first()?
                .clone();
            let last = s.last_state?.terminated?;
            (node::pod_ready(&p) && s.restart_count == 1).then_some((p, last))
        },
    )
    .await;
    let (now, last) = restarted;
    assert_eq!(last.exit_code, 137, "killed: {last:?}");
    assert_eq!(
        last.container_id.as_deref(),
        Some(format!("containerd://{old}").as_str())
    );
    assert_ne!(container_id(&now, "main"), old, "a new container");

    expect(&responder, &event, 200, "deleted").await;
    assert!(scene.terminating("crashy").await);
    scene.clear().await;
}

/// A StatefulSet makes its replacement under the same name: an event about the pod it
/// replaced is `stale`, and the replacement keeps running.
async fn a_statefulset_pod_replaced_under_the_same_name_is_stale() {
    let scene = Scene::on_node("node-sts").await;
    let responder = scene.responder(&[]).await;
    let sts: StatefulSet = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": {
            "serviceName": "web", "replicas": 1,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": busybox_spec()
            }
        }
    }))
    .unwrap();
    Api::<StatefulSet>::namespaced(scene.admin.clone(), &scene.ns)
        .create(&PostParams::default(), &sts)
        .await
        .unwrap();
    let first = scene.wait_ready("web-0").await;
    let event = shell_event(&first, &container_id(&first, "main"));
    scene
        .pods()
        .delete("web-0", &DeleteParams::default())
        .await
        .unwrap();
    let pods = scene.pods();
    let second = wait_for("the replacement web-0 Ready", node::POD_GONE, || async {
        let p = pods.get_opt("web-0").await.ok()??;
        (p.metadata.uid != first.metadata.uid && node::pod_ready(&p)).then_some(p)
    })
    .await;

    expect(&responder, &event, 200, "stale").await;
    assert!(scene.exists(&second).await, "the replacement runs on");
    Api::<StatefulSet>::namespaced(scene.admin.clone(), &scene.ns)
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    scene.clear().await;
}

/// A pod whose process ignores SIGTERM stays Terminating through its real grace period: the
/// event is answered `terminating`, nothing is deleted twice.
async fn a_pod_in_its_grace_period_is_terminating() {
    let scene = Scene::on_node("node-grace").await;
    let responder = scene.responder(&[]).await;
    let pod = scene
        .real_pod(
            "slow",
            json!({}),
            json!({
                "terminationGracePeriodSeconds": 60,
                "containers": [{
                    "name": "main", "image": node::BUSYBOX, "imagePullPolicy": "Never",
                    "command": ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]
                }]
            }),
        )
        .await;
    let event = shell_event(&pod, &container_id(&pod, "main"));
    scene
        .pods()
        .delete("slow", &DeleteParams::default())
        .await
        .unwrap();
    // The kubelet has sent SIGTERM; the container runs on, the pod stays.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let live = scene
        .get_pod("slow")
        .await
        .expect("still there in its grace period");
    assert!(live.metadata.deletion_timestamp.is_some());

    expect(&responder, &event, 200, "terminating").await;
    scene.clear().await;
}

/// A static pod's mirror pod (what the API shows of a pod the kubelet runs from a file) is
/// skipped: deleting it would not stop the container.
async fn a_static_pods_mirror_pod_is_skipped() {
    let scene = Scene::on_node("node-static").await;
    let responder = scene.responder(&[]).await;
    let file = std::path::Path::new(STATIC_PODS).join(format!("{}.yaml", scene.ns));
    let manifest = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "static", "namespace": scene.ns },
        "spec": busybox_spec()
    });
    std::fs::write(&file, manifest.to_string()).unwrap();
    // The mirror pod is named after the node.
    let mirror = scene.wait_ready("static-localhost").await;
    assert!(
        mirror
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror")),
        "a mirror pod"
    );
    let (status, v) = send(
        &responder,
        &shell_event(&mirror, &container_id(&mirror, "main")),
    )
    .await;
    std::fs::remove_file(&file).unwrap();
    assert_eq!(
        (status, v["outcome"].as_str()),
        (200, Some("skipped")),
        "{v}"
    );
    assert!(
        v.to_string().contains("mirror pod"),
        "the reason names the mirror pod: {v}"
    );
}

fn busybox_spec() -> Value {
    json!({
        "terminationGracePeriodSeconds": 2,
        "containers": [{
            "name": "main", "image": node::BUSYBOX, "imagePullPolicy": "Never",
            "command": ["sleep", "3600"]
        }]
    })
}

/// Three ready replicas, readiness and PodDisruptionBudget status computed by the real kubelet
/// and controllers, and an event for every replica at once: with MIN_AVAILABLE 2 one replica
/// goes and the others are held; with USE_EVICTION and a budget of minAvailable 2 the same.
async fn concurrent_events_for_every_replica_leave_the_floor_standing() {
    for (app, env) in [
        ("floor", vec![("MIN_AVAILABLE", "2")]),
        ("pdb", vec![("USE_EVICTION", "true")]),
    ] {
        let scene = Scene::on_node(&format!("node-{app}")).await;
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": { "name": app },
            "spec": {
                "replicas": 3,
                "selector": { "matchLabels": { "app": app } },
                "template": { "metadata": { "labels": { "app": app } }, "spec": busybox_spec() }
            }
        }))
        .unwrap();
        let deployments = Api::<Deployment>::namespaced(scene.admin.clone(), &scene.ns);
        deployments
            .create(&PostParams::default(), &deployment)
            .await
            .unwrap();
        if app == "pdb" {
            let pdb_api = Api::<DynamicObject>::namespaced_with(
                scene.admin.clone(),
                &scene.ns,
                &ApiResource::from_gvk_with_plural(
                    &GroupVersionKind::gvk("policy", "v1beta1", "PodDisruptionBudget"),
                    "poddisruptionbudgets",
                ),
            );
            let pdb: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget",
                "metadata": { "name": app },
                "spec": { "minAvailable": 2, "selector": { "matchLabels": { "app": app } } }
            }))
            .unwrap();
            pdb_api.create(&PostParams::default(), &pdb).await.unwrap();
            wait_for("the PDB to allow 1", node::POD_READY, || async {
                let p = pdb_api.get(app).await.ok()?;
                (p.data["status"]["disruptionsAllowed"].as_i64() == Some(1)).then_some(())
            })
            .await;
        }
        let pods = wait_for("3 Ready replicas", node::POD_READY, || async {
            let d = deployments.get(app).await.ok()?;
            if d.status?.ready_replicas != Some(3) {
                return None;
            }
            let pods: Vec<_> = scene
                .pods_of(app)
                .await
                .into_iter()
                .filter(node::pod_ready)
                .collect();
            (pods.len() == 3).then_some(pods)
        })
        .await;
        let responder = scene.responder(&env).await;
        let events: Vec<String> = pods
            .iter()
            .map(|p| shell_event(p, &container_id(p, "main")))
            .collect();
        let replies =
            futures_util::future::join_all(events.iter().map(|e| send(&responder, e))).await;
        let outcomes: Vec<(u16, String)> = replies
            .iter()
            .map(|(s, v)| (*s, v["outcome"].as_str().unwrap_or_default().to_string()))
            .collect();
        let deleted = outcomes
            .iter()
            .filter(|(s, o)| *s == 200 && o == "deleted")
            .count();
        let held = outcomes
            .iter()
            .filter(|(s, o)| *s == 503 && o == "held")
            .count();
        assert_eq!(
            (deleted, held),
            (1, 2),
            "{app}: {outcomes:?}\n{}",
            responder.logs()
        );
        let still = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none());
        let mut running = 0;
        for p in still {
            if scene.exists(p).await {
                running += 1;
            }
        }
        assert_eq!(running, 2, "{app}: two replicas stay");
        deployments
            .delete(app, &DeleteParams::default())
            .await
            .unwrap();
        scene.clear().await;
    }
}
