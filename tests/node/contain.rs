//! `ACTION=contain` on real pods: the function (the binary on this machine) with the chart's own
//! RBAC for containment isolates a pod behind a NetworkPolicy the pod owns, releases a
//! Deployment's pod from its ReplicaSet (whose replacement becomes Ready), keeps the bounded
//! tail of each container's real log, and sets the deadline after which the real kubelet kills
//! the pod, leaving it Failed with its logs readable. The test node's CNI does not enforce
//! NetworkPolicies (docs/containment.md): the objects are checked, not the traffic.

use std::{path::PathBuf, time::Duration};

use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    core::v1::{ConfigMap, Pod},
    networking::v1::NetworkPolicy,
};
use kube::{
    Api,
    api::{DeleteParams, ListParams, LogParams, PostParams},
};
use serde_json::{Value, json};

use crate::node_test;
use crate::testkit::apiserver::{apply_manifests, wait_for};
use crate::testkit::binary::Responder;
use crate::testkit::node::{self, container_id, shell_event};
use crate::testkit::scene::Scene;
use crate::testkit::sender::Envelope;

pub fn tests() -> Vec<crate::NodeTest> {
    vec![
        node_test!(
            a_deployments_pod_is_isolated_released_kept_and_killed_by_the_kubelet,
            300
        ),
        node_test!(a_statefulset_pod_is_contained_without_release, 180),
        node_test!(an_event_with_the_wrong_uid_contains_nothing, 120),
        node_test!(a_dry_run_names_every_step_and_writes_nothing, 180),
        node_test!(
            without_rights_for_networkpolicies_no_pod_is_released_unisolated,
            180
        ),
        node_test!(a_host_network_pod_is_killed_at_once_after_its_evidence, 150),
        node_test!(the_guards_and_the_breaker_apply_to_containment, 180),
    ]
}

/// The label, and the names of what a containment writes, after the pod's uid.
const CONTAINED: &str = "falco-responder/contained";
fn policy_name(uid: &str) -> String {
    format!("falco-responder-contain-{uid}")
}
fn evidence_name(uid: &str) -> String {
    format!("falco-responder-evidence-{uid}")
}

/// What the test's containers write before they are Ready: more lines than the evidence bound
/// keeps, the last one known. Ready only once every line is written.
const LINES: usize = 400;
const LOG_BYTES: usize = 4096;
fn last_line(container: &str) -> String {
    format!("{container}: the last line")
}
fn writer(container: &str) -> Value {
    json!({
        "name": container, "image": node::BUSYBOX, "imagePullPolicy": "Never",
        "command": ["sh", "-c", format!(
            "i=0; while [ $i -lt {LINES} ]; do \
             echo \"{container} line $i: the quick brown fox jumps over the lazy dog\"; \
             i=$((i+1)); done; echo '{}'; touch /tmp/written; exec sleep 3600",
            last_line(container)
        )],
        "readinessProbe": {
            "exec": { "command": ["cat", "/tmp/written"] },
            "periodSeconds": 1
        }
    })
}
fn writers_spec() -> Value {
    json!({
        "terminationGracePeriodSeconds": 2,
        "containers": [writer("main"), writer("side")]
    })
}

/// The chart's RBAC for release `name` with `config.action=contain`, rendered by `helm
/// template` and applied in `home` (the function's own namespace); `edit` changes the rendered
/// text first. A kubeconfig with the token of the ServiceAccount the chart makes: every request
/// of the function is authorized by the chart's rules only.
async fn chart_identity(home: &Scene, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let helm = std::env::var("HELM").unwrap_or_else(|_| "helm".into());
    let chart = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/falco-responder");
    let out = std::process::Command::new(&helm)
        .args(["template", name])
        .arg(&chart)
        .args([
            "--namespace",
            &home.ns,
            "--show-only",
            "templates/serviceaccount.yaml",
            "--show-only",
            "templates/rbac.yaml",
            "--set",
            &format!("fullnameOverride={name},auth.existingSecret=unused,config.action=contain"),
        ])
        .output()
        .unwrap_or_else(|e| panic!("running {helm}: {e} (scripts/helm-env.sh installs it)"));
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = std::env::temp_dir().join(format!("{name}-rbac.yaml"));
    std::fs::write(&file, edit(String::from_utf8(out.stdout).unwrap())).unwrap();
    apply_manifests(&home.admin, &file, Some(&home.ns)).await;
    let _ = std::fs::remove_file(&file);
    node::wait_service_account(&home.admin, &home.ns, name).await;
    home.service_account_kubeconfig(name).await.1
}

/// The function as the chart's ServiceAccount of `home` (its own namespace, where the evidence
/// goes), with `env`.
async fn contain_responder(
    scene: &Scene,
    home: &Scene,
    kubeconfig: &std::path::Path,
    env: &[(&str, &str)],
) -> Responder {
    let base = [
        ("POD_NAMESPACE", home.ns.as_str()),
        ("ACTION", "contain"),
        ("EVIDENCE_LOG_BYTES", "4096"),
    ];
    scene
        .responder_as(kubeconfig, &[&base[..], env].concat())
        .await
}

async fn send(responder: &Responder, event: &str) -> (u16, Value) {
    let r = responder.send(Envelope::Plain, event).await;
    let v = responder.result(&r);
    (r.status, v)
}

/// The steps a reply names.
fn steps(v: &Value) -> Vec<String> {
    v["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no steps in {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Deployment `app` (label `app: app`) of `replicas` writers; its Ready pods once there are
/// `replicas`.
async fn writers_deployment(scene: &Scene, app: &str, replicas: i32) -> Vec<Pod> {
    let d: Deployment = serde_json::from_value(json!({
        "metadata": { "name": app },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": app } },
            "template": { "metadata": { "labels": { "app": app } }, "spec": writers_spec() }
        }
    }))
    .unwrap();
    Api::<Deployment>::namespaced(scene.admin.clone(), &scene.ns)
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    wait_for(
        &format!("{replicas} Ready pods of {app}"),
        node::POD_READY,
        || async {
            let pods: Vec<Pod> = scene
                .pods_of(app)
                .await
                .into_iter()
                .filter(node::pod_ready)
                .collect();
            (pods.len() == replicas as usize).then_some(pods)
        },
    )
    .await
}

fn uid(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap()
}
fn labels(p: &Pod) -> std::collections::BTreeMap<String, String> {
    p.metadata.labels.clone().unwrap_or_default()
}
fn deadline(p: &Pod) -> Option<i64> {
    p.spec.as_ref().and_then(|s| s.active_deadline_seconds)
}

async fn policies(scene: &Scene) -> Vec<NetworkPolicy> {
    Api::<NetworkPolicy>::namespaced(scene.admin.clone(), &scene.ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
}
async fn configmaps(home: &Scene) -> Vec<ConfigMap> {
    Api::<ConfigMap>::namespaced(home.admin.clone(), &home.ns)
        .list(&ListParams::default().labels("falco-responder/evidence=true"))
        .await
        .unwrap()
        .items
}

/// The policy of our name for `pod` is ours: deny-all both ways for the pod's uid label, owned
/// by the pod (no blockOwnerDeletion), labelled as ours.
fn assert_ours(np: &NetworkPolicy, pod: &Pod) {
    let v = serde_json::to_value(np).unwrap();
    let uid = uid(pod);
    assert_eq!(
        v["spec"]["podSelector"],
        json!({ "matchLabels": { CONTAINED: uid } }),
        "{v}"
    );
    assert_eq!(
        v["spec"]["policyTypes"],
        json!(["Ingress", "Egress"]),
        "{v}"
    );
    for dir in ["ingress", "egress"] {
        assert!(
            v["spec"][dir].as_array().is_none_or(Vec::is_empty),
            "deny-all has no {dir} rule: {v}"
        );
    }
    assert_eq!(
        v["metadata"]["ownerReferences"],
        json!([{
            "apiVersion": "v1", "kind": "Pod",
            "name": pod.metadata.name.as_deref().unwrap(), "uid": uid
        }]),
        "{v}"
    );
    assert_eq!(
        v["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "falco-responder"
    );
}

/// A Deployment's pod, contained with the chart's RBAC and CONTAIN_SECONDS=5: isolated (a
/// NetworkPolicy it owns, then its label), released (the ReplicaSet's selector labels gone and
/// recorded, the ReplicaSet lets go of it and its replacement becomes Ready), its two
/// containers' real logs kept as bounded tails in a ConfigMap of the function's namespace,
/// its deadline set; a FalcoPodContained Event. Then the kubelet kills it at the deadline: the
/// pod is Failed (DeadlineExceeded), still isolated, its logs readable; a second event is
/// answered `contained` with no write. Deleting the pod takes its NetworkPolicy with it.
async fn a_deployments_pod_is_isolated_released_kept_and_killed_by_the_kubelet() {
    let home = Scene::on_node("node-contain-home").await;
    let scene = home.beside("node-contain").await;
    let kc = chart_identity(&home, "fr-contain", |t| t).await;
    let responder = contain_responder(&scene, &home, &kc, &[("CONTAIN_SECONDS", "5")]).await;
    let pods = writers_deployment(&scene, "app", 1).await;
    let pod = &pods[0];
    let (name, uid) = (pod.metadata.name.clone().unwrap(), uid(pod));

    let (status, v) = send(&responder, &shell_event(pod, &container_id(pod, "main"))).await;
    let contained_at = k8s_openapi::jiff::Timestamp::now();
    assert_eq!(
        (status, v["outcome"].as_str()),
        (200, Some("contained")),
        "{v}\n{}",
        responder.logs()
    );
    assert_eq!(
        steps(&v),
        ["isolated", "released", "evidence", "deadline"],
        "{v}"
    );

    // Isolated: our NetworkPolicy, owned by the pod; the pod carries the label it selects.
    let nps = Api::<NetworkPolicy>::namespaced(scene.admin.clone(), &scene.ns);
    let np = nps.get(&policy_name(&uid)).await.unwrap();
    assert_ours(&np, pod);
    let live = scene.get_pod(&name).await.unwrap();
    assert_eq!(labels(&live).get(CONTAINED), Some(&uid));

    // Released: the ReplicaSet's selector labels removed and recorded; the ReplicaSet lets go.
    let before = labels(pod);
    for key in ["app", "pod-template-hash"] {
        assert!(
            !labels(&live).contains_key(key),
            "{key} still on the pod: {:?}",
            labels(&live)
        );
    }
    let recorded: Value = serde_json::from_str(
        live.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("falco-responder/released-labels"))
            .expect("the released labels are recorded"),
    )
    .unwrap();
    assert_eq!(recorded["app"], "app", "{recorded}");
    assert_eq!(recorded["pod-template-hash"], before["pod-template-hash"]);
    let pods_api = scene.pods();
    wait_for(
        "the ReplicaSet lets go of the pod",
        node::POD_READY,
        || async {
            let p = pods_api.get(&name).await.ok()?;
            p.metadata
                .owner_references
                .as_ref()
                .is_none_or(Vec::is_empty)
                .then_some(())
        },
    )
    .await;
    let replacement = wait_for("the replacement Ready", node::POD_READY, || async {
        scene
            .pods_of("app")
            .await
            .into_iter()
            .find(|p| node::pod_ready(p) && p.metadata.uid.as_deref() != Some(uid.as_str()))
    })
    .await;
    assert!(
        !labels(&replacement).contains_key(CONTAINED),
        "the replacement is free"
    );

    // Evidence: each container's bounded tail, from the real logs, in the function's namespace.
    let cm = Api::<ConfigMap>::namespaced(home.admin.clone(), &home.ns)
        .get(&evidence_name(&uid))
        .await
        .unwrap();
    let meta = &cm.metadata;
    let (l, a) = (
        meta.labels.clone().unwrap_or_default(),
        meta.annotations.clone().unwrap_or_default(),
    );
    assert_eq!(
        l.get("falco-responder/evidence").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        l.get("app.kubernetes.io/managed-by").map(String::as_str),
        Some("falco-responder")
    );
    assert_eq!(a.get("falco-responder/pod-namespace"), Some(&scene.ns));
    assert_eq!(a.get("falco-responder/pod-name"), Some(&name));
    assert_eq!(a.get("falco-responder/pod-uid"), Some(&uid));
    assert!(a.contains_key("falco-responder/contained-at"), "{a:?}");
    let data = cm.data.clone().unwrap_or_default();
    for c in ["main", "side"] {
        let log = data
            .get(&format!("{c}.log"))
            .unwrap_or_else(|| panic!("no {c}.log in {:?}", data.keys()));
        assert!(
            log.len() <= LOG_BYTES,
            "{c}.log: {} bytes, over the bound",
            log.len()
        );
        assert!(
            log.len() > LOG_BYTES / 2,
            "{c}.log: only {} bytes",
            log.len()
        );
        assert!(
            log.trim_end().ends_with(&last_line(c)),
            "{c}.log keeps the end: {:?}",
            &log[log.len().saturating_sub(200)..]
        );
        assert!(
            !log.contains(&format!("{c} line 0:")),
            "{c}.log is a tail, not the start"
        );
    }

    // The deadline: 5 s after the containment, counted from the pod's start.
    let start = live
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .unwrap()
        .0;
    let secs = deadline(&live).expect("activeDeadlineSeconds set");
    let kill_at = start.as_second() + secs;
    let want = contained_at.as_second() + 5;
    assert!(
        (want - 2..=want + 2).contains(&kill_at),
        "deadline {secs} s from {start}: kill at {kill_at}, want about {want}"
    );

    let event = scene.wait_event(&name, "FalcoPodContained").await;
    let note = event.note.clone().unwrap_or_default();
    assert!(note.contains(&evidence_name(&uid)), "{note}");
    assert_eq!(event.type_.as_deref(), Some("Warning"));

    // The kubelet kills it at the deadline; the pod object, its isolation and its logs stay.
    let failed = wait_for(
        "the kubelet kills the pod at its deadline",
        Duration::from_secs(60),
        || async {
            let p = pods_api.get(&name).await.ok()?;
            let s = p.status.clone()?;
            (s.phase.as_deref() == Some("Failed")).then_some(s)
        },
    )
    .await;
    assert_eq!(failed.reason.as_deref(), Some("DeadlineExceeded"));
    let log = pods_api
        .logs(
            &name,
            &LogParams {
                container: Some("main".into()),
                tail_lines: Some(1),
                ..LogParams::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(log.trim_end(), last_line("main"), "pods/log after the kill");
    let np_after = nps.get(&policy_name(&uid)).await.unwrap();
    assert_eq!(
        np_after.metadata.resource_version,
        np.metadata.resource_version
    );

    // Contained already: answered so, nothing written.
    let before = (scene.get_pod(&name).await.unwrap(), configmaps(&home).await);
    let (status, v) = send(&responder, &shell_event(pod, &container_id(pod, "main"))).await;
    assert_eq!(
        (status, v["outcome"].as_str()),
        (200, Some("contained")),
        "{v}"
    );
    let after = (scene.get_pod(&name).await.unwrap(), configmaps(&home).await);
    assert_eq!(after.0.metadata.labels, before.0.metadata.labels);
    assert_eq!(after.0.metadata.annotations, before.0.metadata.annotations);
    assert_eq!(deadline(&after.0), deadline(&before.0));
    let versions = |cms: &[ConfigMap]| -> Vec<Option<String>> {
        cms.iter()
            .map(|c| c.metadata.resource_version.clone())
            .collect()
    };
    assert_eq!(versions(&after.1), versions(&before.1));

    // Done with it: deleting the pod takes its NetworkPolicy (garbage collector).
    pods_api
        .delete(&name, &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    wait_for(
        "the NetworkPolicy goes with the pod",
        node::POD_GONE,
        || async { matches!(nps.get_opt(&policy_name(&uid)).await, Ok(None)).then_some(()) },
    )
    .await;
    assert_eq!(configmaps(&home).await.len(), 1, "the evidence stays");
    Api::<Deployment>::namespaced(scene.admin.clone(), &scene.ns)
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    scene.clear().await;
}

/// A StatefulSet's pod cannot be replaced while it exists: it is isolated and kept, never
/// released (its labels and owner stay). Without CONTAIN_SECONDS no deadline: isolated until a
/// person deletes it. Had it a deadline, its controller would replace it once Failed.
async fn a_statefulset_pod_is_contained_without_release() {
    let home = Scene::on_node("node-contain-sts-home").await;
    let scene = home.beside("node-contain-sts").await;
    let kc = chart_identity(&home, "fr-contain-sts", |t| t).await;
    let responder = contain_responder(&scene, &home, &kc, &[]).await;
    let sts: StatefulSet = serde_json::from_value(json!({
        "metadata": { "name": "db" },
        "spec": {
            "serviceName": "db", "replicas": 1,
            "selector": { "matchLabels": { "app": "db" } },
            "template": { "metadata": { "labels": { "app": "db" } }, "spec": writers_spec() }
        }
    }))
    .unwrap();
    let sts_api = Api::<StatefulSet>::namespaced(scene.admin.clone(), &scene.ns);
    sts_api.create(&PostParams::default(), &sts).await.unwrap();
    let pod = scene.wait_ready("db-0").await;
    let uid = uid(&pod);

    let (status, v) = send(&responder, &shell_event(&pod, &container_id(&pod, "main"))).await;
    assert_eq!(
        (status, v["outcome"].as_str()),
        (200, Some("contained")),
        "{v}\n{}",
        responder.logs()
    );
    assert_eq!(steps(&v), ["isolated", "evidence"], "{v}");
    let np = Api::<NetworkPolicy>::namespaced(scene.admin.clone(), &scene.ns)
        .get(&policy_name(&uid))
        .await
        .unwrap();
    assert_ours(&np, &pod);
    let live = scene.get_pod("db-0").await.unwrap();
    assert_eq!(labels(&live).get(CONTAINED), Some(&uid));
    assert_eq!(
        labels(&live).get("app").map(String::as_str),
        Some("db"),
        "not released"
    );
    assert!(
        live.metadata
            .annotations
            .as_ref()
            .is_none_or(|a| !a.contains_key("falco-responder/released-labels"))
    );
    let owners = live.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].kind, "StatefulSet");
    assert_eq!(deadline(&live), None, "no CONTAIN_SECONDS, no deadline");
    assert_eq!(configmaps(&home).await.len(), 1);
    // Still the one pod, Running.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still = scene.get_pod("db-0").await.unwrap();
    assert_eq!(still.metadata.uid.as_deref(), Some(uid.as_str()));
    assert_eq!(
        still.status.and_then(|s| s.phase).as_deref(),
        Some("Running")
    );
    // What a deadline would do here (README, "What survives"): once the kubelet has failed the
    // pod, the StatefulSet controller deletes it and makes a new one, so the pod's own
    // forensics (object, writable layers, logs) and its NetworkPolicy go; the evidence stays.
    scene
        .pods()
        .patch(
            "db-0",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({ "spec": { "activeDeadlineSeconds": 1 } })),
        )
        .await
        .unwrap();
    let pods_api = scene.pods();
    wait_for("a new db-0", node::POD_GONE, || async {
        let p = pods_api.get_opt("db-0").await.ok()??;
        (p.metadata.uid.as_deref() != Some(uid.as_str())).then_some(())
    })
    .await;
    let nps = Api::<NetworkPolicy>::namespaced(scene.admin.clone(), &scene.ns);
    wait_for(
        "the NetworkPolicy goes with the old pod",
        node::POD_GONE,
        || async { matches!(nps.get_opt(&policy_name(&uid)).await, Ok(None)).then_some(()) },
    )
    .await;
    assert_eq!(configmaps(&home).await.len(), 1, "the evidence stays");
    sts_api
        .delete("db", &DeleteParams::default())
        .await
        .unwrap();
    scene.clear().await;
}

/// An event naming the pod with another uid (an earlier pod of that name): `stale`, and no
/// write anywhere: no NetworkPolicy, the pod's labels and owner as they were, no evidence.
async fn an_event_with_the_wrong_uid_contains_nothing() {
    let home = Scene::on_node("node-contain-uid-home").await;
    let scene = home.beside("node-contain-uid").await;
    let responder = contain_responder(
        &scene,
        &home,
        &scene.kubeconfig(),
        &[("CONTAIN_SECONDS", "5")],
    )
    .await;
    let pods = writers_deployment(&scene, "app", 1).await;
    let pod = &pods[0];
    let mut event: Value =
        serde_json::from_str(&shell_event(pod, &container_id(pod, "main"))).unwrap();
    event["output_fields"]["k8s.pod.uid"] = json!(uuid::Uuid::new_v4().to_string());
    let (status, v) = send(&responder, &event.to_string()).await;
    assert_eq!((status, v["outcome"].as_str()), (200, Some("stale")), "{v}");
    let live = scene
        .get_pod(pod.metadata.name.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(live.metadata.labels, pod.metadata.labels);
    assert_eq!(live.metadata.annotations, pod.metadata.annotations);
    assert_eq!(
        live.metadata.owner_references,
        pod.metadata.owner_references
    );
    assert_eq!(deadline(&live), None);
    assert!(policies(&scene).await.is_empty());
    assert!(configmaps(&home).await.is_empty());
    Api::<Deployment>::namespaced(scene.admin.clone(), &scene.ns)
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    scene.clear().await;
}

/// DRY_RUN: the reply names every step it would take (isolate, release, evidence, deadline),
/// and nothing is written: no NetworkPolicy, no label, no deadline, no evidence, no release.
async fn a_dry_run_names_every_step_and_writes_nothing() {
    let home = Scene::on_node("node-contain-dry-home").await;
    let scene = home.beside("node-contain-dry").await;
    let responder = contain_responder(
        &scene,
        &home,
        &scene.kubeconfig(),
        &[("CONTAIN_SECONDS", "5"), ("DRY_RUN", "true")],
    )
    .await;
    let pods = writers_deployment(&scene, "app", 1).await;
    let pod = &pods[0];
    let (status, v) = send(&responder, &shell_event(pod, &container_id(pod, "main"))).await;
    assert_eq!(
        (status, v["outcome"].as_str()),
        (200, Some("dry-run")),
        "{v}"
    );
    assert_eq!(
        steps(&v),
        ["isolated", "released", "evidence", "deadline"],
        "{v}"
    );
    // Past the deadline it would have set: nothing happened.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let live = scene
        .get_pod(pod.metadata.name.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(live.metadata.labels, pod.metadata.labels);
    assert_eq!(
        live.metadata.owner_references,
        pod.metadata.owner_references
    );
    assert_eq!(deadline(&live), None);
    assert!(node::pod_ready(&live));
    assert!(policies(&scene).await.is_empty());
    assert!(configmaps(&home).await.is_empty());
    assert_eq!(scene.pods_of("app").await.len(), 1, "no replacement");
    Api::<Deployment>::namespaced(scene.admin.clone(), &scene.ns)
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    scene.clear().await;
}

/// The chart's containment RBAC without its NetworkPolicy rule: the containment stops at its
/// first step with a 500 naming the missing right, and the pod is neither labelled nor
/// released (a pod free of its ReplicaSet but not isolated would be the worst of both).
async fn without_rights_for_networkpolicies_no_pod_is_released_unisolated() {
    let home = Scene::on_node("node-contain-rbac-home").await;
    let scene = home.beside("node-contain-rbac").await;
    let rule = "\n  - apiGroups: [\"networking.k8s.io\"]\n    resources: [\"networkpolicies\"]\n    verbs: [\"create\", \"get\"]";
    let kc = chart_identity(&home, "fr-contain-rbac", |t| {
        assert!(t.contains(rule), "the chart's rule changed:\n{t}");
        t.replace(rule, "")
    })
    .await;
    let responder = contain_responder(&scene, &home, &kc, &[("CONTAIN_SECONDS", "5")]).await;
    let pods = writers_deployment(&scene, "app", 1).await;
    let pod = &pods[0];
    let (status, v) = send(&responder, &shell_event(pod, &container_id(pod, "main"))).await;
    assert_eq!(status, 500, "{v}\n{}", responder.logs());
    assert!(
        v.to_string().contains("networkpolicies"),
        "names the right: {v}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let live = scene
        .get_pod(pod.metadata.name.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(
        live.metadata.labels, pod.metadata.labels,
        "not labelled, not released"
    );
    assert_eq!(
        live.metadata.owner_references,
        pod.metadata.owner_references
    );
    assert_eq!(deadline(&live), None);
    assert!(policies(&scene).await.is_empty());
    assert_eq!(scene.pods_of("app").await.len(), 1, "no replacement");
    Api::<Deployment>::namespaced(scene.admin.clone(), &scene.ns)
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    scene.clear().await;
}

/// A `hostNetwork` pod shares the node's network, which no NetworkPolicy governs: it is not
/// isolated (no policy written) but killed at once, after its evidence is kept, even without
/// CONTAIN_SECONDS; the answer says so.
async fn a_host_network_pod_is_killed_at_once_after_its_evidence() {
    let home = Scene::on_node("node-contain-host-home").await;
    let scene = home.beside("node-contain-host").await;
    let responder = contain_responder(&scene, &home, &scene.kubeconfig(), &[]).await;
    let mut spec = writers_spec();
    spec["hostNetwork"] = json!(true);
    let pod = scene.real_pod("hostnet", json!({}), spec).await;
    let uid = uid(&pod);
    let (status, v) = send(&responder, &shell_event(&pod, &container_id(&pod, "main"))).await;
    assert_eq!(
        (status, v["outcome"].as_str()),
        (200, Some("contained")),
        "{v}\n{}",
        responder.logs()
    );
    assert_eq!(steps(&v), ["evidence", "killed"], "{v}");
    let pods_api = scene.pods();
    let failed = wait_for(
        "the kubelet kills it at once",
        Duration::from_secs(30),
        || async {
            let p = pods_api.get("hostnet").await.ok()?;
            let s = p.status.clone()?;
            (s.phase.as_deref() == Some("Failed")).then_some(s)
        },
    )
    .await;
    assert_eq!(failed.reason.as_deref(), Some("DeadlineExceeded"));
    assert!(
        policies(&scene).await.is_empty(),
        "no policy for a host-network pod"
    );
    let cm = Api::<ConfigMap>::namespaced(home.admin.clone(), &home.ns)
        .get(&evidence_name(&uid))
        .await
        .unwrap();
    let main = cm
        .data
        .unwrap_or_default()
        .remove("main.log")
        .unwrap_or_default();
    assert!(
        main.trim_end().ends_with(&last_line("main")),
        "evidence before the kill"
    );
    let event = scene.wait_event("hostnet", "FalcoPodContained").await;
    let note = event.note.unwrap_or_default();
    assert!(
        note.to_lowercase().contains("network"),
        "the Event says network isolation was impossible: {note}"
    );
    scene.clear().await;
}

/// A containment takes a pod out of service, so the deletion's guards hold it: MIN_AVAILABLE=2
/// on two replicas answers `held` and writes nothing; the per-workload breaker at 1
/// contains one replica, then answers `breaker-open` for the other, which stays untouched.
async fn the_guards_and_the_breaker_apply_to_containment() {
    let home = Scene::on_node("node-contain-guards-home").await;
    let scene = home.beside("node-contain-guards").await;
    let pods = writers_deployment(&scene, "app", 2).await;
    let admin = scene.kubeconfig();

    let floor = contain_responder(&scene, &home, &admin, &[("MIN_AVAILABLE", "2")]).await;
    let (status, v) = send(
        &floor,
        &shell_event(&pods[0], &container_id(&pods[0], "main")),
    )
    .await;
    // Two replicas, a floor of two: held for good (200, no retry can help).
    assert_eq!((status, v["outcome"].as_str()), (200, Some("held")), "{v}");
    let live = scene
        .get_pod(pods[0].metadata.name.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(live.metadata.labels, pods[0].metadata.labels);
    assert!(policies(&scene).await.is_empty());
    assert!(configmaps(&home).await.is_empty());

    let breaker = contain_responder(
        &scene,
        &home,
        &admin,
        &[("MAX_DELETIONS_PER_WORKLOAD", "1/10m")],
    )
    .await;
    let (status, v) = send(
        &breaker,
        &shell_event(&pods[0], &container_id(&pods[0], "main")),
    )
    .await;
    assert_eq!(
        (status, v["outcome"].as_str()),
        (200, Some("contained")),
        "{v}\n{}",
        breaker.logs()
    );
    let (status, v) = send(
        &breaker,
        &shell_event(&pods[1], &container_id(&pods[1], "main")),
    )
    .await;
    assert_eq!(
        (status, v["outcome"].as_str()),
        (200, Some("breaker-open")),
        "{v}"
    );
    let other = scene
        .get_pod(pods[1].metadata.name.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(other.metadata.labels, pods[1].metadata.labels);
    assert_eq!(deadline(&other), None);
    assert_eq!(policies(&scene).await.len(), 1, "only the first one's");
    assert_eq!(configmaps(&home).await.len(), 1);
    Api::<Deployment>::namespaced(scene.admin.clone(), &scene.ns)
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    scene.clear().await;
}
