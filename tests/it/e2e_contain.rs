//! ACTION=contain against a real kube-apiserver and kube-controller-manager: the objects a
//! containment leaves (the NetworkPolicy owned by the pod, the label, the release and its
//! replacement, the evidence, the deadline), what it never does (release a StatefulSet's pod,
//! touch another pod, write under DRY_RUN, label under a policy it did not write, label without
//! its RBAC), and the guards before it. No kubelet: `pods/log` cannot be read, and the evidence
//! says so (the real-node tests read real logs).

use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{ConfigMap, Pod},
    networking::v1::NetworkPolicy,
    rbac::v1::{Role, RoleBinding},
};
use kube::{
    Api,
    api::{PostParams, ResourceExt},
};
use serde_json::{Value, json};

use crate::testkit::apiserver as support;
use crate::testkit::scene::{Scene, WAIT, cid_of, new_cid};
use crate::testkit::sender::{Envelope, said, terminal_shell};

const LABEL: &str = "falco-responder/contained";

fn policy_name(uid: &str) -> String {
    format!("falco-responder-contain-{uid}")
}

fn evidence_name(uid: &str) -> String {
    format!("falco-responder-evidence-{uid}")
}

fn uid(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap()
}

async fn policy(scene: &Scene, uid: &str) -> Option<NetworkPolicy> {
    Api::<NetworkPolicy>::namespaced(scene.admin.clone(), &scene.ns)
        .get_opt(&policy_name(uid))
        .await
        .unwrap()
}

async fn evidence(home: &Scene, uid: &str) -> Option<ConfigMap> {
    Api::<ConfigMap>::namespaced(home.admin.clone(), &home.ns)
        .get_opt(&evidence_name(uid))
        .await
        .unwrap()
}

fn contained_label(p: &Pod) -> Option<&str> {
    p.labels().get(LABEL).map(String::as_str)
}

#[tokio::test]
async fn a_deployments_pod_is_isolated_released_replaced_and_kept_and_its_policy_goes_with_it() {
    // The garbage collector runs on a private server only: on the shared one it would delete
    // the pods other tests make with owners that do not exist.
    let home = Scene::private("contain").await;
    let server = home.private_server();
    tokio::task::spawn_blocking(move || {
        server.start_controllers("deployment,replicaset,garbagecollector")
    })
    .await
    .unwrap();
    let scene = home.beside("victims").await;
    scene.deployment("web", 2).await;
    let pods = scene.ready_pods("web", 2, 2).await;
    let target = &pods[0];
    let (name, uid) = (target.name_any(), uid(target));
    let responder = scene
        .responder(&[
            ("ACTION", "contain"),
            ("CONTAIN_SECONDS", "600"),
            ("POD_NAMESPACE", &home.ns),
            // The second event goes to the API, not to the storm memory.
            ("DEDUP_SECONDS", "0"),
        ])
        .await;

    let (r, v) = responder.shell_in(&scene.ns, target).await;
    assert_eq!(r.status, 200, "{v}\n{}", responder.logs());
    assert_eq!(v["outcome"], "contained", "{v}");
    assert_eq!(
        v["steps"],
        json!(["isolated", "released", "evidence", "deadline"])
    );
    assert!(
        !v.to_string().contains(&uid),
        "the reply names no live uid: {v}"
    );

    // Isolated: the deny-all policy, owned by the pod, selecting its uid.
    let np = policy(&scene, &uid).await.expect("the NetworkPolicy");
    let owner = &np.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("Pod", uid.as_str())
    );
    let spec = np.spec.as_ref().unwrap();
    assert_eq!(
        spec.pod_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()[LABEL],
        uid
    );
    assert_eq!(spec.policy_types.as_deref().unwrap(), ["Ingress", "Egress"]);
    assert!(spec.ingress.is_none() && spec.egress.is_none());

    // Labelled, released (the selector's labels gone, recorded), its deadline set.
    let live = scene.get_pod(&name).await.unwrap();
    assert_eq!(contained_label(&live), Some(uid.as_str()));
    assert!(!live.labels().contains_key("app"), "{:?}", live.labels());
    let released = &live.annotations()["falco-responder/released-labels"];
    assert!(released.contains(r#""app":"web""#), "{released}");
    let d = live.spec.as_ref().unwrap().active_deadline_seconds.unwrap();
    assert!((600..=700).contains(&d), "{d}");

    // The ReplicaSet lets it go and makes a replacement: two pods of `web` again, not it.
    support::wait_for("the replacement and the release", WAIT, || async {
        let others = scene.pods_of("web").await;
        let released = scene.get_pod(&name).await.is_some_and(|p| {
            p.metadata
                .owner_references
                .as_ref()
                .is_none_or(Vec::is_empty)
        });
        (others.len() == 2 && others.iter().all(|p| p.name_any() != name) && released).then_some(())
    })
    .await;

    // The evidence, in the function's own namespace. No scheduler here: for a pod without a
    // node the API server answers its log with an empty 200 (a pod on a node that does not
    // answer is an unread log: see the bare pod below).
    let cm = evidence(&home, &uid).await.expect("the evidence ConfigMap");
    assert_eq!(cm.labels()["falco-responder/evidence"], "true");
    assert_eq!(cm.annotations()["falco-responder/pod-uid"], uid);
    assert_eq!(cm.annotations()["falco-responder/pod-name"], name);
    assert_eq!(
        cm.data
            .as_ref()
            .unwrap()
            .get("main.log")
            .map(String::as_str),
        Some(""),
        "{cm:?}"
    );
    let event = scene.wait_event(&name, "FalcoPodContained").await;
    let note = event.note.unwrap();
    assert!(
        note.contains(&evidence_name(&uid)) && note.contains("web-"),
        "{note}"
    );

    // A second event: contained, no write.
    let patches = || {
        home.server()
            .count_audit_in("patch", "pods", Some(&scene.ns), &name)
    };
    // Ours, and the ReplicaSet's release of it (its ownerReference removed).
    let before = patches();
    let again = terminal_shell(&scene.ns, &name, &cid_of(target));
    let r = responder.send(Envelope::Plain, &again).await;
    let v = responder.result(&r);
    assert_eq!(
        (v["outcome"].as_str(), &v["steps"]),
        (Some("contained"), &json!([])),
        "{v}"
    );
    assert_eq!(patches(), before);
    let creates = home
        .server()
        .count_audit_in("create", "networkpolicies", Some(&scene.ns), "*");
    assert_eq!(creates, 1);

    // Deleted by a person: its policy goes with it (the garbage collector, by its owner).
    scene.force_delete(&name).await;
    support::wait_for("the policy to be collected", WAIT, || async {
        policy(&scene, &uid).await.is_none().then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_statefulsets_pod_is_contained_without_release() {
    let home = Scene::with_controllers("contain-sts").await;
    let scene = home.beside("victims").await;
    let sts: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "spec": {"serviceName": "db", "replicas": 1,
            "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "main", "image": "alpine"}]}}}
    }))
    .unwrap();
    Api::<StatefulSet>::namespaced(scene.admin.clone(), &scene.ns)
        .create(&PostParams::default(), &sts)
        .await
        .unwrap();
    support::wait_for("db-0", WAIT, || async { scene.get_pod("db-0").await }).await;
    let pod = support::mark_pod_ready(&scene.admin, &scene.ns, "db-0", &new_cid()).await;
    let responder = scene
        .responder(&[("ACTION", "contain"), ("POD_NAMESPACE", &home.ns)])
        .await;
    let (r, v) = responder.shell_in(&scene.ns, &pod).await;
    assert_eq!(r.status, 200, "{v}\n{}", responder.logs());
    assert_eq!(v["steps"], json!(["isolated", "evidence"]), "{v}");
    let live = scene.get_pod("db-0").await.unwrap();
    assert_eq!(contained_label(&live), Some(uid(&pod).as_str()));
    assert_eq!(live.labels()["app"], "db", "never released");
    let owner = &live.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.kind, "StatefulSet");
    // CONTAIN_SECONDS unset: no deadline, isolated until a person deletes it.
    assert_eq!(live.spec.as_ref().unwrap().active_deadline_seconds, None);
    assert!(policy(&scene, &uid(&pod)).await.is_some());
}

#[tokio::test]
async fn dry_run_a_wrong_uid_and_a_forged_policy_write_nothing_on_the_pod() {
    let home = Scene::new("contain-no").await;
    let scene = home.beside("victims").await;
    let env = [("ACTION", "contain"), ("POD_NAMESPACE", home.ns.as_str())];

    // DRY_RUN: every step it would take, nothing written.
    let cid = new_cid();
    let pod = scene.pod("dry", &cid).await;
    let dry = scene
        .responder(&[&env[..], &[("DRY_RUN", "true"), ("CONTAIN_SECONDS", "60")]].concat())
        .await;
    let (r, v) = dry.shell_in(&scene.ns, &pod).await;
    assert_eq!(r.status, 200);
    assert_eq!(v["outcome"], "dry-run", "{v}");
    assert_eq!(v["steps"], json!(["isolated", "evidence", "deadline"]));
    let line = dry.line_of(&v).await;
    assert!(
        line.contains("would contain") && line.contains(&policy_name(&uid(&pod))),
        "{line}"
    );
    assert!(policy(&scene, &uid(&pod)).await.is_none());
    assert!(evidence(&home, &uid(&pod)).await.is_none());
    assert_eq!(contained_label(&scene.get_pod("dry").await.unwrap()), None);

    // An event naming another pod's uid: nothing.
    let responder = scene.responder(&env).await;
    let mut forged: Value = serde_json::from_str(&terminal_shell(&scene.ns, "dry", &cid)).unwrap();
    forged["output_fields"]["k8s.pod.uid"] = json!("0f9a4c1e-1111-2222-3333-444455556666");
    let r = responder.send(Envelope::Plain, &forged.to_string()).await;
    let v = responder.result(&r);
    assert_eq!(v["outcome"], "stale", "{v}");
    assert!(policy(&scene, &uid(&pod)).await.is_none());
    let live = scene.get_pod("dry").await.unwrap();
    assert_eq!(contained_label(&live), None);
    assert_eq!(
        scene
            .server()
            .count_audit_in("patch", "pods", Some(&scene.ns), "dry"),
        0
    );

    // A policy of our name that someone else wrote (it allows everything in): no label, an
    // error a person must read.
    let victim = scene.pod("forged", &new_cid()).await;
    let np: NetworkPolicy = serde_json::from_value(json!({
        "metadata": {"name": policy_name(&uid(&victim))},
        "spec": {"podSelector": {"matchLabels": {LABEL: uid(&victim)}},
            "policyTypes": ["Ingress"], "ingress": [{}]}
    }))
    .unwrap();
    Api::<NetworkPolicy>::namespaced(scene.admin.clone(), &scene.ns)
        .create(&PostParams::default(), &np)
        .await
        .unwrap();
    let (r, v) = responder.shell_in(&scene.ns, &victim).await;
    assert_eq!(r.status, 500, "{v}");
    assert!(said(&v, "error").contains("refusing to contain"), "{v}");
    assert_eq!(
        contained_label(&scene.get_pod("forged").await.unwrap()),
        None
    );

    // The pod labelled by its author, no policy: not taken as contained, contained anew.
    let labelled = scene.pod("selfmade", &new_cid()).await;
    let u = uid(&labelled);
    scene
        .pods()
        .patch(
            "selfmade",
            &Default::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"labels": {LABEL: u}}})),
        )
        .await
        .unwrap();
    let (_, v) = responder.shell_in(&scene.ns, &labelled).await;
    assert_eq!(v["steps"], json!(["isolated", "evidence"]), "{v}");
    assert!(policy(&scene, &u).await.is_some());
    // Its node does not exist (no kubelet): its log could not be read, and the evidence says so.
    let cm = evidence(&home, &u).await.expect("the evidence ConfigMap");
    let data = cm.data.unwrap();
    let unread = data.get("unread.txt").unwrap_or_else(|| panic!("{data:?}"));
    assert!(unread.starts_with("main: "), "{unread}");
    assert!(!data.contains_key("main.log"), "{data:?}");
}

/// A Role in `scene`'s namespace with `rules`, bound to ServiceAccount `home/falco-responder`.
async fn grant(scene: &Scene, home: &Scene, name: &str, rules: Value) {
    let role: Role =
        serde_json::from_value(json!({"metadata": {"name": name}, "rules": rules})).unwrap();
    Api::<Role>::namespaced(scene.admin.clone(), &scene.ns)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": "falco-responder", "namespace": home.ns}]
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(scene.admin.clone(), &scene.ns)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
}

#[tokio::test]
async fn without_rbac_for_networkpolicies_the_pod_is_neither_labelled_nor_released() {
    let home = Scene::with_controllers("contain-rbac").await;
    home.apply("knative/rbac.yaml").await;
    let (_, kc) = home.service_account_kubeconfig("falco-responder").await;
    let scene = home.beside("victims").await;
    scene.deployment("web", 2).await;
    let pods = scene.ready_pods("web", 2, 2).await;
    // Everything containment needs but the NetworkPolicy.
    grant(
        &scene,
        &home,
        "contain-pods",
        json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["patch"]},
               {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}]),
    )
    .await;
    grant(
        &home,
        &home,
        "contain-evidence",
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "list", "delete"]}]),
    )
    .await;
    let env = [
        ("ACTION", "contain"),
        ("POD_NAMESPACE", home.ns.as_str()),
        ("MAX_DELETIONS_PER_WORKLOAD", "off"),
    ];
    let responder = scene.responder_as(&kc, &env).await;
    let (r, v) = responder.shell_in(&scene.ns, &pods[0]).await;
    assert_eq!(r.status, 500, "{v}\n{}", responder.logs());
    assert!(said(&v, "error").contains("networkpolicies"), "{v}");
    let live = scene.get_pod(&pods[0].name_any()).await.unwrap();
    assert_eq!(contained_label(&live), None);
    assert_eq!(
        live.labels()["app"],
        "web",
        "never released without isolation"
    );

    // With the NetworkPolicy's grant, the same ServiceAccount contains it.
    grant(
        &scene,
        &home,
        "contain-isolate",
        json!([{"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["create", "get"]}]),
    )
    .await;
    let responder = scene.responder_as(&kc, &env).await;
    let (r, v) = responder.shell_in(&scene.ns, &pods[0]).await;
    assert_eq!(
        (r.status, v["outcome"].as_str()),
        (200, Some("contained")),
        "{v}\n{}",
        responder.logs()
    );
    assert_eq!(
        v["steps"],
        json!(["isolated", "released", "evidence"]),
        "{v}"
    );
}

#[tokio::test]
async fn the_floor_holds_a_containment_and_the_breaker_counts_it() {
    let home = Scene::with_controllers("contain-guards").await;
    let scene = home.beside("victims").await;
    scene.deployment("web", 3).await;
    // Two of three ready: the floor of 2 holds a containment of a ready one (until the third
    // is ready), and the breaker is tested on the ready ones.
    let pods = scene.ready_pods("web", 3, 2).await;

    let held = scene
        .responder(&[
            ("ACTION", "contain"),
            ("POD_NAMESPACE", &home.ns),
            ("MIN_AVAILABLE", "2"),
        ])
        .await;
    let (r, v) = held.shell_in(&scene.ns, &pods[0]).await;
    assert_eq!(
        (r.status, v["outcome"].as_str()),
        (503, Some("held")),
        "{v}"
    );
    assert!(policy(&scene, &uid(&pods[0])).await.is_none());

    let counted = scene
        .responder(&[
            ("ACTION", "contain"),
            ("POD_NAMESPACE", &home.ns),
            ("MAX_DELETIONS_PER_WORKLOAD", "1/1h"),
        ])
        .await;
    let (_, v) = counted.shell_in(&scene.ns, &pods[0]).await;
    assert_eq!(v["outcome"], "contained", "{v}\n{}", counted.logs());
    let (_, v) = counted.shell_in(&scene.ns, &pods[1]).await;
    assert_eq!(v["outcome"], "breaker-open", "{v}");
    assert!(policy(&scene, &uid(&pods[1])).await.is_none());
    assert_eq!(
        contained_label(&scene.get_pod(&pods[1].name_any()).await.unwrap()),
        None
    );
}

#[tokio::test]
async fn a_host_network_pod_is_killed_at_once_after_its_evidence() {
    let home = Scene::new("contain-host").await;
    let scene = home.beside("victims").await;
    let cid = new_cid();
    let spec: Pod = serde_json::from_value(json!({
        "metadata": {"name": "host", "namespace": scene.ns},
        "spec": {"nodeName": "node-1", "hostNetwork": true,
            "containers": [{"name": "main", "image": "alpine"}]}
    }))
    .unwrap();
    scene
        .pods()
        .create(&PostParams::default(), &spec)
        .await
        .unwrap();
    // Started a minute ago, as the kubelet would report it.
    let started =
        k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(60);
    let status = json!({"status": {"phase": "Running", "startTime": started.to_string(),
        "containerStatuses": [{"name": "main", "image": "alpine", "imageID": "", "ready": true,
            "restartCount": 0, "containerID": format!("containerd://{cid}"), "state": {"running": {}}}]}});
    let pod = scene
        .pods()
        .patch_status(
            "host",
            &Default::default(),
            &kube::api::Patch::Merge(&status),
        )
        .await
        .unwrap();
    let responder = scene
        .responder(&[
            ("ACTION", "contain"),
            ("CONTAIN_SECONDS", "3600"),
            ("POD_NAMESPACE", &home.ns),
        ])
        .await;
    let (r, v) = responder.shell_in(&scene.ns, &pod).await;
    assert_eq!(r.status, 200, "{v}\n{}", responder.logs());
    assert_eq!(v["steps"], json!(["evidence", "killed"]), "{v}");
    assert!(said(&v, "reason").contains("host's network"), "{v}");
    // No policy (none could isolate it); a deadline already passed: the kubelet kills it now.
    assert!(policy(&scene, &uid(&pod)).await.is_none());
    let live = scene.get_pod("host").await.unwrap();
    let d = live.spec.as_ref().unwrap().active_deadline_seconds.unwrap();
    assert!((1..=61).contains(&d), "{d}");
    assert!(evidence(&home, &uid(&pod)).await.is_some());
    let note = scene
        .wait_event("host", "FalcoPodContained")
        .await
        .note
        .unwrap();
    assert!(
        note.contains("not isolated") && note.contains("killed now"),
        "{note}"
    );
}

#[tokio::test]
async fn a_containment_stopped_before_its_evidence_is_finished_by_the_retry() {
    let home = Scene::new("contain-resume").await;
    home.apply("knative/rbac.yaml").await;
    let (_, kc) = home.service_account_kubeconfig("falco-responder").await;
    let scene = home.beside("victims").await;
    let pod = scene.pod("resume", &new_cid()).await;
    grant(
        &scene,
        &home,
        "contain-pods",
        json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["patch"]},
               {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
               {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["create", "get"]}]),
    )
    .await;
    let env = [
        ("ACTION", "contain"),
        ("POD_NAMESPACE", home.ns.as_str()),
        ("MAX_DELETIONS_PER_WORKLOAD", "off"),
        ("DEDUP_SECONDS", "0"),
    ];
    let responder = scene.responder_as(&kc, &env).await;
    // No grant for the evidence: the pod is contained, its evidence is not kept, an error.
    let (r, v) = responder.shell_in(&scene.ns, &pod).await;
    assert_eq!(r.status, 500, "{v}\n{}", responder.logs());
    assert!(said(&v, "error").contains("configmaps"), "{v}");
    let live = scene.get_pod("resume").await.unwrap();
    assert_eq!(contained_label(&live), Some(uid(&pod).as_str()));
    assert!(policy(&scene, &uid(&pod)).await.is_some());
    // Granted, the retry keeps the evidence and nothing else.
    grant(
        &home,
        &home,
        "contain-evidence",
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "list", "delete"]}]),
    )
    .await;
    let patches = scene
        .server()
        .count_audit_in("patch", "pods", Some(&scene.ns), "resume");
    let (r, v) = responder.shell_in(&scene.ns, &pod).await;
    assert_eq!(
        (r.status, v["outcome"].as_str()),
        (200, Some("contained")),
        "{v}"
    );
    assert_eq!(v["steps"], json!(["evidence"]), "{v}");
    assert!(evidence(&home, &uid(&pod)).await.is_some());
    assert_eq!(
        scene
            .server()
            .count_audit_in("patch", "pods", Some(&scene.ns), "resume"),
        patches
    );
}

/// What the plan reads a 422 as, checked against the API server: the uid `test` failing
/// (another pod under the name) changes nothing and is a 422, which `Patched::Stale` stands for;
/// a 422 on the pod itself is `Patched::Changed`.
#[tokio::test]
async fn the_api_server_refuses_a_patch_whose_uid_test_fails_with_nothing_changed() {
    use falco_responder::{
        cluster::{contain::Containment, error::Deadline},
        domain::{
            contain::{PodFacts, patch},
            falco::Target,
            ident::{Namespace, PodName},
            step::{Patched, PodPatch},
        },
    };
    let scene = Scene::new("contain-422").await;
    let pod = scene.pod("p", &new_cid()).await;
    let target = Target {
        namespace: Namespace::parse("ns", &scene.ns).unwrap(),
        name: PodName::parse("pod", "p").unwrap(),
        container_id: None,
        uid: None,
    };
    let c = Containment::new(
        scene.admin.clone(),
        scene.ns.clone(),
        10,
        std::time::Duration::from_secs(5),
    );
    let deadline = || Deadline::starting_now(std::time::Duration::from_secs(5));
    let mut facts = PodFacts::of(&pod);
    let real = facts.uid.clone();
    facts.uid = "0f9a4c1e-1111-2222-3333-444455556666".into();
    let wrong = patch(&facts, &Default::default(), Some(5));
    let p = PodPatch {
        uid: facts.uid.clone(),
        patch: wrong,
    };
    assert_eq!(
        c.patch(&target, &p, deadline()).await.unwrap(),
        Patched::Stale
    );
    let live = scene.get_pod("p").await.unwrap();
    assert_eq!(contained_label(&live), None);
    assert_eq!(live.spec.unwrap().active_deadline_seconds, None);
    // The same patch with the pod's own uid applies, label and deadline together.
    facts.uid = real.clone();
    let p = PodPatch {
        uid: real.clone(),
        patch: patch(&facts, &Default::default(), Some(5)),
    };
    assert_eq!(
        c.patch(&target, &p, deadline()).await.unwrap(),
        Patched::Done
    );
    let live = scene.get_pod("p").await.unwrap();
    assert_eq!(contained_label(&live), Some(real.as_str()));
    assert_eq!(live.spec.unwrap().active_deadline_seconds, Some(5));
    // A refused patch on the same pod (here: a deadline raised, which the API server refuses)
    // is `Changed`, not `Stale`: the pod was not replaced.
    let p = PodPatch {
        uid: real.clone(),
        patch: patch(&facts, &Default::default(), Some(50)),
    };
    assert_eq!(
        c.patch(&target, &p, deadline()).await.unwrap(),
        Patched::Changed
    );
}
