//! Workload-aware guards end to end: the real `falco-responder` binary against a real
//! kube-apiserver joined by a real kube-controller-manager (`Scene::with_controllers`), so
//! Deployments make ReplicaSets and pods with real ownerReferences, replica counts are the
//! controllers' own and PodDisruptionBudget status is the disruption controller's. No kubelet: the test marks pods
//! Running/Ready through `pods/status`, as a kubelet would.

use std::time::Duration;

use k8s_openapi::api::events::v1::Event as KubeEvent;
use kube::{
    Api,
    api::{DynamicObject, ListParams, PostParams},
    core::{ApiResource, GroupVersionKind},
};
use serde_json::json;

use crate::testkit::apiserver as support;
use crate::testkit::scene::{Scene, WAIT, new_cid};
use crate::testkit::sender::said;

#[tokio::test]
async fn the_floor_holds_the_last_ready_replicas_and_names_the_workload() {
    let scene = Scene::with_controllers("floor").await;
    scene.deployment("web", 3).await;
    let pods = scene.ready_pods("web", 3, 2).await;

    // 2 ready of 3, floor 2: deleting a ready one would leave 1; a third ready replica would
    // let it through, so the sender is told to retry.
    let strict = scene.responder(&[("MIN_AVAILABLE", "2")]).await;
    let (r, v) = strict.shell_in(&scene.ns, &pods[0]).await;
    assert_eq!(r.status, 503, "{v}\n{}", strict.logs());
    assert_eq!(v["outcome"], "held", "{v}");
    assert!(r.headers.contains_key("retry-after"), "{:?}", r.headers);
    let reason = strict.line_of(&v).await;
    assert!(
        reason.contains("Deployment/web") && reason.contains("MIN_AVAILABLE=2"),
        "{reason}"
    );
    // The reply names no workload; the log line does.
    assert!(v["pod"].get("workload").is_none(), "{v}");
    assert!(strict.line_of(&v).await.contains("workload=Deployment/web"));
    assert!(scene.exists(&pods[0]).await, "a held pod keeps running");
    let e = scene
        .wait_event(pods[0].metadata.name.as_deref().unwrap(), "FalcoDeleteHeld")
        .await;
    assert_eq!(e.type_.as_deref(), Some("Warning"));
    assert!(
        strict
            .metrics()
            .await
            .contains("falco_responder_held_total{guard=\"floor\"} 1")
    );

    // Floor 3 of 3: no recovery can let a deletion through (at best 2 stay ready). A 503
    // would make the sender retry for ever: held for good, 200, retry false, an error line.
    let never = scene.responder(&[("MIN_AVAILABLE", "3")]).await;
    let (r, v) = never.shell_in(&scene.ns, &pods[0]).await;
    assert_eq!(
        (r.status, v["outcome"].as_str()),
        (200, Some("held")),
        "{v}\n{}",
        never.logs()
    );
    assert!(!r.headers.contains_key("retry-after"), "{:?}", r.headers);
    assert_ne!(v["retry"], true, "{v}");
    assert!(said(&v, "reason").contains("can never be met"), "{v}");
    assert!(scene.exists(&pods[0]).await, "held for good: still running");
    assert!(
        never.logs().contains("a person must look"),
        "{}",
        never.logs()
    );

    // Floor 1: one may go. The answer and the Event name the Deployment, not the ReplicaSet.
    let lenient = scene.responder(&[("MIN_AVAILABLE", "1")]).await;
    let (r, v) = lenient.shell_in(&scene.ns, &pods[0]).await;
    assert_eq!(
        (r.status, v["outcome"].as_str()),
        (200, Some("deleted")),
        "{v}\n{}",
        lenient.logs()
    );
    // The reply names no workload; the log line does.
    assert!(v["pod"].get("workload").is_none(), "{v}");
    assert!(
        lenient
            .line_of(&v)
            .await
            .contains("workload=Deployment/web")
    );
    assert!(!scene.exists(&pods[0]).await);
    let e = scene
        .wait_event(pods[0].metadata.name.as_deref().unwrap(), "FalcoPodDeleted")
        .await;
    let related = e.related.expect("the Event names the workload");
    assert_eq!(
        (related.kind.as_deref(), related.name.as_deref()),
        (Some("Deployment"), Some("web"))
    );
}

#[tokio::test]
async fn percentage_floors_are_of_desired_replicas_rounded_up() {
    let scene = Scene::with_controllers("pct").await;
    scene.deployment("api", 3).await;
    // 3 desired, 2 ready (the first two).
    let pods = scene.ready_pods("api", 3, 2).await;

    // 50% of 3 rounds up to 2: deleting a ready pod leaves 1: held. (Rounded down it would be 1.)
    let half = scene.responder(&[("MIN_AVAILABLE", "50%")]).await;
    let (r, v) = half.shell_in(&scene.ns, &pods[0]).await;
    assert_eq!(
        (r.status, v["outcome"].as_str()),
        (503, Some("held")),
        "{v}"
    );
    assert!(half.line_of(&v).await.contains("(2 replicas)"), "{v}");
    // The pod that is not ready does not count: deleting it leaves 2 ready, the floor holds.
    let (_, v) = half.shell_in(&scene.ns, &pods[2]).await;
    assert_eq!(v["outcome"], "deleted", "{v}");
    // 33% of 3 rounds up to 1: a ready pod may go (1 left).
    let third = scene.responder(&[("MIN_AVAILABLE", "33%")]).await;
    let (_, v) = third.shell_in(&scene.ns, &pods[0]).await;
    assert_eq!(v["outcome"], "deleted", "{v}\n{}", third.logs());
}

/// PodDisruptionBudgets are `policy/v1beta1` on this 1.20 server: the eviction falls back too.
fn pdb_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("policy", "v1beta1", "PodDisruptionBudget"),
        "poddisruptionbudgets",
    )
}

async fn disruptions_allowed(scene: &Scene, name: &str, want: i64) {
    let api =
        &Api::<DynamicObject>::namespaced_with(scene.admin.clone(), &scene.ns, &pdb_resource());
    support::wait_for(
        &format!("PDB {name} disruptionsAllowed={want}"),
        WAIT,
        move || async move {
            let pdb = api.get(name).await.unwrap();
            let status = pdb.data.get("status")?;
            (status["disruptionsAllowed"].as_i64() == Some(want)
                && status["observedGeneration"].as_i64() == pdb.metadata.generation)
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_pod_disruption_budget_holds_an_eviction_until_it_allows_one() {
    let scene = Scene::with_controllers("pdb").await;
    scene.deployment("db", 2).await;
    let pdb: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget",
        "metadata": { "name": "db-pdb" },
        "spec": { "minAvailable": 2, "selector": { "matchLabels": { "app": "db" } } }
    }))
    .unwrap();
    Api::<DynamicObject>::namespaced_with(scene.admin.clone(), &scene.ns, &pdb_resource())
        .create(&PostParams::default(), &pdb)
        .await
        .unwrap();
    let pods = scene.ready_pods("db", 2, 2).await;
    disruptions_allowed(&scene, "db-pdb", 0).await;

    let responder = scene.responder(&[("USE_EVICTION", "true")]).await;
    let (r, v) = responder.shell_in(&scene.ns, &pods[0]).await;
    assert_eq!(
        (r.status, v["outcome"].as_str()),
        (503, Some("held")),
        "{v}\n{}",
        responder.logs()
    );
    assert!(responder.line_of(&v).await.contains("db-pdb"), "{v}");
    assert!(scene.exists(&pods[0]).await);
    scene
        .wait_event(pods[0].metadata.name.as_deref().unwrap(), "FalcoDeleteHeld")
        .await;
    assert!(
        responder
            .metrics()
            .await
            .contains("falco_responder_held_total{guard=\"pdb\"} 1")
    );

    // A third replica: the budget allows one disruption, the retry goes through.
    scene.scale("db", 3).await;
    scene.ready_pods("db", 3, 3).await;
    disruptions_allowed(&scene, "db-pdb", 1).await;
    let (r, v) = responder.shell_in(&scene.ns, &pods[0]).await;
    assert_eq!(
        (r.status, v["outcome"].as_str()),
        (200, Some("deleted")),
        "{v}\n{}",
        responder.logs()
    );
    assert!(said(&v, "reason").contains("evict"), "{v}");
    assert!(!scene.exists(&pods[0]).await);
    // The audit log shows an eviction, not a plain DELETE by us.
    assert!(
        scene.server().count_audit_in(
            "create",
            "pods/eviction",
            Some(&scene.ns),
            pods[0].metadata.name.as_deref().unwrap()
        ) >= 1
    );
}

#[tokio::test]
async fn mirror_pods_and_skip_owner_kinds_are_skipped() {
    let scene = Scene::with_controllers("skip").await;
    // As the kubelet makes it: the annotation and a controller reference to its Node.
    let mirror = owned_pod(
        &scene,
        "etcd-node-1",
        json!({"kubernetes.io/config.mirror": "3f1c0a"}),
        json!([{"apiVersion": "v1", "kind": "Node", "name": "node-1",
            "uid": uuid::Uuid::new_v4().to_string(), "controller": true}]),
    )
    .await;
    let plain = scene.responder(&[]).await;
    let (r, v) = plain.shell_in(&scene.ns, &mirror).await;
    assert_eq!(
        (r.status, v["outcome"].as_str()),
        (200, Some("skipped")),
        "{v}"
    );
    let reason = plain.line_of(&v).await;
    assert!(
        reason.contains("no effect") && reason.contains("node-1"),
        "{reason}"
    );
    assert!(scene.exists(&mirror).await);

    scene.deployment("web", 1).await;
    let pods = scene.ready_pods("web", 1, 1).await;
    let loner = scene.pod("loner", &new_cid()).await;
    let skipping = scene
        .responder(&[("SKIP_OWNER_KINDS", "Deployment,Standalone")])
        .await;
    let (_, v) = skipping.shell_in(&scene.ns, &pods[0]).await;
    assert_eq!(v["outcome"], "skipped", "{v}");
    assert!(skipping.line_of(&v).await.contains("Deployment/web"), "{v}");
    let (_, v) = skipping.shell_in(&scene.ns, &loner).await;
    assert_eq!(v["outcome"], "skipped", "{v}");
    assert!(
        skipping.line_of(&v).await.contains("Standalone/loner"),
        "{v}"
    );
    assert!(scene.exists(&pods[0]).await && scene.exists(&loner).await);
    // Standalone pods stay deletable by default (attackers use them).
    let (_, v) = plain.shell_in(&scene.ns, &loner).await;
    assert_eq!(v["outcome"], "deleted", "{v}");
    // The reply names no workload; the log line does.
    assert!(v["pod"].get("workload").is_none(), "{v}");
    assert!(
        plain
            .line_of(&v)
            .await
            .contains("workload=Standalone/loner")
    );
}

#[tokio::test]
async fn the_workload_breaker_opens_after_its_budget_and_closes_after_the_window() {
    let scene = Scene::with_controllers("loop").await;
    scene.deployment("looper", 3).await;
    let pods = scene.ready_pods("looper", 3, 3).await;
    let responder = scene
        .responder(&[("MAX_DELETIONS_PER_WORKLOAD", "2/6s")])
        .await;
    for p in &pods[..2] {
        let (_, v) = responder.shell_in(&scene.ns, p).await;
        assert_eq!(v["outcome"], "deleted", "{v}\n{}", responder.logs());
    }
    let opened = std::time::Instant::now();
    let (r, v) = responder.shell_in(&scene.ns, &pods[2]).await;
    assert_eq!(
        (r.status, v["outcome"].as_str()),
        (200, Some("breaker-open")),
        "{v}"
    );
    let reason = responder.line_of(&v).await;
    assert!(
        reason.contains("2 pods of workload Deployment/looper"),
        "{reason}"
    );
    assert!(scene.exists(&pods[2]).await);
    let e = scene
        .wait_event(
            pods[2].metadata.name.as_deref().unwrap(),
            "FalcoBreakerOpen",
        )
        .await;
    assert_eq!(e.type_.as_deref(), Some("Warning"));
    assert!(
        e.note
            .as_deref()
            .unwrap_or_default()
            .contains("Deployment/looper"),
        "{e:?}"
    );
    assert!(
        responder.logs().contains("deletion breaker open"),
        "{}",
        responder.logs()
    );
    assert!(
        responder
            .metrics()
            .await
            .contains("falco_responder_breaker_open_total{workload_kind=\"Deployment\"} 1")
    );
    // After the window the budget is back.
    tokio::time::sleep(
        Duration::from_secs(6).saturating_sub(opened.elapsed()) + Duration::from_secs(1),
    )
    .await;
    let (_, v) = responder.shell_in(&scene.ns, &pods[2]).await;
    assert_eq!(v["outcome"], "deleted", "{v}\n{}", responder.logs());
}

#[tokio::test]
async fn the_overall_breaker_holds_across_two_instances() {
    // A private server: the overall budget counts every deletion on the server.
    let scene = Scene::private("storm").await;
    let mut pods = Vec::new();
    for i in 0..3 {
        pods.push(scene.pod(&format!("p{i}"), &new_cid()).await);
    }
    let env = [("MAX_DELETIONS", "2/1m")];
    let a = scene.responder(&env).await;
    let b = scene.responder(&env).await;
    let (_, v) = a.shell_in(&scene.ns, &pods[0]).await;
    assert_eq!(v["outcome"], "deleted", "{v}");
    let (_, v) = b.shell_in(&scene.ns, &pods[1]).await;
    assert_eq!(v["outcome"], "deleted", "{v}");
    // Both deletions are recorded in the API (just after their answers).
    let (admin_ref, ns_ref) = (&scene.admin, &scene.ns);
    support::wait_for(
        "two FalcoPodDeleted Events",
        Duration::from_secs(10),
        move || async move {
            let n = Api::<KubeEvent>::namespaced(admin_ref.clone(), ns_ref)
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .iter()
                .filter(|e| e.reason.as_deref() == Some("FalcoPodDeleted"))
                .count();
            (n == 2).then_some(())
        },
    )
    .await;
    // Instance A deleted one itself and sees B's through the API: the budget is spent.
    for r in [&a, &b] {
        let (status, v) = r.shell_in(&scene.ns, &pods[2]).await;
        assert_eq!(
            (status.status, v["outcome"].as_str()),
            (200, Some("breaker-open")),
            "{v}"
        );
        assert!(r.line_of(&v).await.contains("MAX_DELETIONS=2/1m"), "{v}");
    }
    assert!(scene.exists(&pods[2]).await);
}

#[tokio::test]
async fn dry_run_reports_each_guard() {
    let scene = Scene::with_controllers("dry").await;
    scene.deployment("web", 2).await;
    let pods = scene.ready_pods("web", 2, 2).await;
    let held = scene
        .responder(&[("DRY_RUN", "true"), ("MIN_AVAILABLE", "2")])
        .await;
    let (r, v) = held.shell_in(&scene.ns, &pods[0]).await;
    assert_eq!(
        (r.status, v["outcome"].as_str()),
        (200, Some("dry-run")),
        "{v}"
    );
    let reason = held.line_of(&v).await;
    assert!(
        reason.contains("would hold") && reason.contains("MIN_AVAILABLE=2"),
        "{reason}"
    );
    let ok = scene
        .responder(&[
            ("DRY_RUN", "true"),
            ("MIN_AVAILABLE", "1"),
            ("USE_EVICTION", "true"),
        ])
        .await;
    let (_, v) = ok.shell_in(&scene.ns, &pods[0]).await;
    let reason = ok.line_of(&v).await;
    assert_eq!(v["outcome"], "dry-run", "{v}");
    assert!(
        reason.contains("would evict")
            && reason.contains("Deployment/web")
            && reason.contains("MIN_AVAILABLE=1 holds")
            && reason.contains("breaker closed")
            && reason.contains("PodDisruptionBudgets allow"),
        "{reason}"
    );
    let skip = scene
        .responder(&[("DRY_RUN", "true"), ("SKIP_OWNER_KINDS", "Deployment")])
        .await;
    let (_, v) = skip.shell_in(&scene.ns, &pods[0]).await;
    assert_eq!(v["outcome"], "dry-run", "{v}");
    assert!(said(&v, "reason").contains("would skip"), "{v}");
    for p in &pods {
        assert!(scene.exists(p).await, "a dry run deletes nothing");
    }
    // A dry-run eviction is not an eviction.
    assert_eq!(
        scene
            .server()
            .count_audit_in("delete", "pods", Some(&scene.ns), "*"),
        0
    );
}

#[tokio::test]
async fn the_shipped_rbac_covers_the_default_and_optional_guards() {
    let home = Scene::with_controllers("responder").await;
    home.apply("knative/rbac.yaml").await;
    let (_, kc) = home.service_account_kubeconfig("falco-responder").await;
    let scene = home.beside("victims").await;
    scene.deployment("web", 3).await;
    let pods = scene.ready_pods("web", 3, 3).await;

    // The defaults (workload resolution, both breakers) need only the base rules.
    let base = scene
        .responder_as(
            &kc,
            &[("POD_NAMESPACE", &home.ns), ("MAX_DELETIONS", "20/1m")],
        )
        .await;
    let (r, v) = base.shell_in(&scene.ns, &pods[0]).await;
    assert_eq!(
        (r.status, v["outcome"].as_str()),
        (200, Some("deleted")),
        "{v}\n{}",
        base.logs()
    );
    // The reply names no workload; the log line does.
    assert!(v["pod"].get("workload").is_none(), "{v}");
    assert!(base.line_of(&v).await.contains("workload=Deployment/web"));

    // The optional guards without their rules: a 500 naming what to grant.
    let env = [
        ("POD_NAMESPACE", home.ns.as_str()),
        ("MIN_AVAILABLE", "1"),
        ("USE_EVICTION", "true"),
    ];
    let bare = scene.responder_as(&kc, &env).await;
    let (r, v) = bare.shell_in(&scene.ns, &pods[1]).await;
    assert_eq!(r.status, 500, "{v}");
    assert!(said(&v, "error").contains("deployments"), "{v}");
    assert!(scene.exists(&pods[1]).await);

    // With knative/rbac-guards.yaml both work.
    home.apply("knative/rbac-guards.yaml").await;
    let full = scene.responder_as(&kc, &env).await;
    let (r, v) = full.shell_in(&scene.ns, &pods[1]).await;
    assert_eq!(
        (r.status, v["outcome"].as_str()),
        (200, Some("deleted")),
        "{v}\n{}",
        full.logs()
    );
    assert!(
        scene.server().count_audit_in(
            "create",
            "pods/eviction",
            Some(&scene.ns),
            pods[1].metadata.name.as_deref().unwrap()
        ) >= 1
    );
}

// --- The API mechanics on their own (no controller manager needed) ---------------------------

#[tokio::test]
async fn evictions_fall_back_to_v1beta1_and_keep_the_uid_precondition() {
    let scene = Scene::new("evict").await;
    let pod = scene.pod("victim", &new_cid()).await;
    let uid = pod.metadata.uid.clone().unwrap();
    // A wrong uid: 409, never an eviction of another pod.
    let wrong = falco_responder::cluster::evict::evict(
        &scene.admin,
        &scene.ns,
        "victim",
        "not-the-uid",
        None,
        false,
    )
    .await;
    assert!(
        matches!(&wrong, Err(falco_responder::cluster::evict::Refused::Other(kube::Error::Api(s))) if s.code == 409),
        "{wrong:?}"
    );
    // Dry run: accepted, nothing deleted.
    falco_responder::cluster::evict::evict(&scene.admin, &scene.ns, "victim", &uid, Some(0), true)
        .await
        .unwrap();
    assert!(scene.exists(&pod).await);
    // The real thing (this 1.20 server only knows policy/v1beta1): the pod goes.
    falco_responder::cluster::evict::evict(&scene.admin, &scene.ns, "victim", &uid, Some(0), false)
        .await
        .unwrap();
    assert!(!scene.exists(&pod).await);
    assert!(
        scene
            .server()
            .count_audit_in("create", "pods/eviction", Some(&scene.ns), "victim")
            >= 2
    );
}

#[tokio::test]
async fn forged_events_cannot_hold_the_breaker_open_and_the_records_are_watched() {
    let scene = Scene::with_controllers("forged").await;
    let home = scene.beside("fr-home").await.ns;
    let ns = &scene.ns;
    scene.deployment("web", 3).await;
    let pods = scene.ready_pods("web", 3, 3).await;

    // An attacker who may create Events in their own namespace forges 25 "deletions" of their
    // Deployment, as our audit Events look (and as the breaker counted them before): more than
    // both default budgets (3/10m per workload, 20/1m overall).
    let api = Api::<KubeEvent>::namespaced(scene.admin.clone(), &scene.ns);
    for i in 0..25 {
        let forged: KubeEvent = serde_json::from_value(json!({
            "metadata": {
                "name": format!("forged-{i}"), "namespace": ns,
                "labels": { "falco-responder/minute": (k8s_openapi::jiff::Timestamp::now().as_second() / 60).to_string(),
                            "falco-responder/breaker": "deletion" },
                "annotations": { "falco-responder/workload": format!("{ns}/Deployment/web") }
            },
            "eventTime": k8s_openapi::jiff::Timestamp::now().to_string(),
            "action": "Delete", "reason": "FalcoPodDeleted", "type": "Warning",
            "reportingController": "falco-responder", "reportingInstance": "attacker",
            "regarding": { "kind": "Pod", "name": format!("web-{i}"), "namespace": ns },
            "related": { "kind": "Deployment", "name": "web", "namespace": ns, "apiVersion": "apps/v1" }
        }))
        .unwrap();
        api.create(&PostParams::default(), &forged).await.unwrap();
    }
    // The defaults, counting in the function's own namespace: the pod still goes.
    let a = scene.responder(&[("POD_NAMESPACE", &home)]).await;
    let (r, v) = a.shell_in(&scene.ns, &pods[0]).await;
    assert_eq!(
        (r.status, v["outcome"].as_str()),
        (200, Some("deleted")),
        "{v}\n{}",
        a.logs()
    );

    // Its record is in the function's namespace, with the workload it counts under.
    let records = Api::<KubeEvent>::namespaced(scene.admin.clone(), &home);
    let lp = ListParams::default().labels("falco-responder/breaker=deletion");
    let (records_ref, lp_ref) = (&records, &lp);
    let record = support::wait_for(
        "the breaker's record",
        Duration::from_secs(10),
        move || async move {
            let items = records_ref.list(lp_ref).await.unwrap().items;
            (items.len() == 1).then(|| items[0].clone())
        },
    )
    .await;
    let notes = record.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        notes.get("falco-responder/workload").map(String::as_str),
        Some(format!("{ns}/Deployment/web").as_str()),
        "{record:?}"
    );
    assert_eq!(
        notes.get("falco-responder/pod").map(String::as_str),
        Some(format!("{ns}/{}", pods[0].metadata.name.as_deref().unwrap()).as_str())
    );
    assert_eq!(record.reason.as_deref(), Some("FalcoPodDeleted"));

    // A second instance with a budget of one per workload sees that record (from its watch,
    // which started when it did) and holds the next pod: the count is shared, and real.
    let b = scene
        .responder(&[
            ("POD_NAMESPACE", &home),
            ("MAX_DELETIONS_PER_WORKLOAD", "1/10m"),
        ])
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await; // its watch lists at start
    let lists_before = scene
        .server()
        .count_audit_in("list", "events", Some(&home), "*");
    let (_, v) = b.shell_in(&scene.ns, &pods[1]).await;
    assert_eq!(v["outcome"], "breaker-open", "{v}\n{}", b.logs());
    assert!(
        b.line_of(&v)
            .await
            .contains("1 pods of workload Deployment/web"),
        "{v}"
    );
    assert!(scene.exists(&pods[1]).await);
    // ... without a LIST per deletion: the watch fed the count.
    let (_, v) = a.shell_in(&scene.ns, &pods[2]).await;
    assert_eq!(v["outcome"], "deleted", "{v}");
    assert_eq!(
        scene
            .server()
            .count_audit_in("list", "events", Some(&home), "*"),
        lists_before,
        "a LIST of the records per deletion: the watch did not feed the count"
    );
}

#[tokio::test]
async fn controllers_make_real_owner_chains_and_replica_counts() {
    use falco_responder::{
        cluster::workloads,
        domain::workload::{self, Kind},
    };
    let scene = Scene::with_controllers("chain").await;
    scene.deployment("web", 2).await;
    let pods = scene.ready_pods("web", 2, 1).await;
    // The pod's controller is a ReplicaSet made by the deployment controller; one step up is
    // the Deployment.
    let direct = workload::direct_workload(&pods[0]);
    assert_eq!(direct.kind, Kind::ReplicaSet, "{direct}");
    assert!(direct.name.starts_with("web-"), "{direct}");
    let w = workloads::resolve(&scene.admin, &pods[0]).await.unwrap();
    assert_eq!(w.to_string(), "Deployment/web");
    let r = workloads::replicas(&scene.admin, &scene.ns, &w)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r.desired, r.ready), (2, 1));
    // The ReplicaSet on its own counts the same.
    let r = workloads::replicas(&scene.admin, &scene.ns, &direct)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r.desired, r.ready), (2, 1));
    // A standalone pod is its own workload, without a replica count.
    let loner = scene.pod("loner", &new_cid()).await;
    let w = workloads::resolve(&scene.admin, &loner).await.unwrap();
    assert_eq!(w.to_string(), "Standalone/loner");
    assert_eq!(
        workloads::replicas(&scene.admin, &scene.ns, &w)
            .await
            .unwrap(),
        None
    );
}

/// Binds pod `name` to `node-1` (`pods/binding`, as the scheduler does): without a kubelet, a
/// DELETE of a pod on a node leaves it terminating with the grace period it was given, so the
/// test can read that grace back (a pod on no node is removed at once, whatever the grace).
async fn bind(scene: &Scene, name: &str) {
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding", "metadata": { "name": name },
        "target": { "apiVersion": "v1", "kind": "Node", "name": "node-1" }
    });
    scene
        .pods()
        .create_subresource::<_, serde_json::Value>(
            "binding",
            name,
            &PostParams::default(),
            &binding,
        )
        .await
        .unwrap_or_else(|e| panic!("binding {name}: {e}"));
}

/// StatefulSet `name` (label `app: name`) with one pod, made ready on `node-1`.
async fn stateful_pod(scene: &Scene, name: &str) -> k8s_openapi::api::core::v1::Pod {
    let s: k8s_openapi::api::apps::v1::StatefulSet = serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": {
            "replicas": 1, "serviceName": name,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "main", "image": "alpine" }] }
            }
        }
    }))
    .unwrap();
    Api::<k8s_openapi::api::apps::v1::StatefulSet>::namespaced(scene.admin.clone(), &scene.ns)
        .create(&PostParams::default(), &s)
        .await
        .unwrap();
    let pod = format!("{name}-0");
    support::wait_for(&format!("pod {pod}"), WAIT, || async {
        scene.get_pod(&pod).await.map(|_| ())
    })
    .await;
    bind(scene, &pod).await;
    support::mark_pod_ready(&scene.admin, &scene.ns, &pod, &new_cid()).await
}

/// The grace period the API holds for a terminating pod.
async fn grace_of(scene: &Scene, name: &str) -> Option<i64> {
    let p = scene.get_pod(name).await.expect("still terminating");
    assert!(
        p.metadata.deletion_timestamp.is_some(),
        "{name} is not terminating"
    );
    p.metadata.deletion_grace_period_seconds
}

#[tokio::test]
async fn a_statefulset_pod_is_never_force_deleted_new_or_terminating() {
    let scene = Scene::with_controllers("sts").await;
    let force = [
        ("GRACE_PERIOD_SECONDS", "0"),
        ("ALLOW_FORCE_DELETE", "true"),
    ];
    let responder = scene.responder(&force).await;

    // A new deletion: 1 s, not 0.
    let db = stateful_pod(&scene, "db").await;
    let (_, v) = responder.shell_in(&scene.ns, &db).await;
    assert_eq!(v["outcome"], "deleted", "{v}\n{}", responder.logs());
    let line = responder.line_of(&v).await;
    assert!(line.contains("workload=StatefulSet/db"), "{line}");
    assert!(line.contains("never force-deleted"), "{line}");
    assert_eq!(grace_of(&scene, "db-0").await, Some(1));

    // Shortening the grace of one already terminating: 1 s too.
    let kv = stateful_pod(&scene, "kv").await;
    scene
        .pods()
        .delete(
            "kv-0",
            &kube::api::DeleteParams::default().grace_period(3600),
        )
        .await
        .unwrap();
    let (_, v) = responder.shell_in(&scene.ns, &kv).await;
    assert_eq!(v["outcome"], "terminating", "{v}\n{}", responder.logs());
    let line = responder.line_of(&v).await;
    assert!(line.contains("never force-deleted"), "{line}");
    assert_eq!(grace_of(&scene, "kv-0").await, Some(1));

    // Any other pod gets the force delete ALLOW_FORCE_DELETE asked for.
    let loner = scene.pod("loner", &new_cid()).await;
    let (_, v) = responder.shell_in(&scene.ns, &loner).await;
    assert_eq!(v["outcome"], "deleted", "{v}");
    assert!(
        scene.get_pod("loner").await.is_none(),
        "force-deleted at once"
    );
}

#[tokio::test]
async fn shortening_a_grace_period_passes_the_kind_guards() {
    let scene = Scene::with_controllers("shorten").await;
    scene.deployment("web", 1).await;
    let pod = scene.ready_pods("web", 1, 1).await.remove(0);
    let name = pod.metadata.name.clone().unwrap();
    bind(&scene, &name).await;
    scene
        .pods()
        .delete(
            &name,
            &kube::api::DeleteParams::default().grace_period(3600),
        )
        .await
        .unwrap();
    let env = [("GRACE_PERIOD_SECONDS", "5")];
    let skipping = scene
        .responder(&[&env[..], &[("SKIP_OWNER_KINDS", "Deployment")]].concat())
        .await;
    let (_, v) = skipping.shell_in(&scene.ns, &pod).await;
    assert_eq!(v["outcome"], "skipped", "{v}\n{}", skipping.logs());
    let line = skipping.line_of(&v).await;
    assert!(line.contains("SKIP_OWNER_KINDS"), "{line}");
    assert_eq!(grace_of(&scene, &name).await, Some(3600), "not shortened");

    // Not listed: shortened, and the floor does not hold it (a terminating pod is already out
    // of readyReplicas), though MIN_AVAILABLE=1 on a 1-replica Deployment holds any new one.
    let shortening = scene
        .responder(&[&env[..], &[("MIN_AVAILABLE", "1")]].concat())
        .await;
    let (_, v) = shortening.shell_in(&scene.ns, &pod).await;
    assert_eq!(v["outcome"], "terminating", "{v}\n{}", shortening.logs());
    assert_eq!(grace_of(&scene, &name).await, Some(5));
}

/// A pod on `node-1` with these annotations and ownerReferences, as its author wrote them
/// (no garbage collector runs here, so a dangling owner stays), started and ready.
async fn owned_pod(
    scene: &Scene,
    name: &str,
    annotations: serde_json::Value,
    owners: serde_json::Value,
) -> k8s_openapi::api::core::v1::Pod {
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
        "metadata": { "name": name, "annotations": annotations, "ownerReferences": owners },
        "spec": { "nodeName": "node-1", "containers": [{ "name": "main", "image": "alpine" }] }
    }))
    .unwrap();
    scene
        .pods()
        .create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("creating {name}: {e}"));
    support::mark_pod_ready(&scene.admin, &scene.ns, name, &new_cid()).await
}

fn controller(api_version: &str, kind: &str, name: &str) -> serde_json::Value {
    json!([{"apiVersion": api_version, "kind": kind, "name": name,
        "uid": uuid::Uuid::new_v4().to_string(), "controller": true}])
}

#[tokio::test]
async fn what_a_pod_author_writes_earns_no_skip_and_no_protection() {
    let scene = Scene::with_controllers("forged").await;
    let none = json!({});
    let skipping = scene
        .responder(&[("SKIP_OWNER_KINDS", "StatefulSet,MirrorPod")])
        .await;
    // A StatefulSet of a made-up group: not the apps kind, not skipped.
    let fake = owned_pod(
        &scene,
        "fake",
        none.clone(),
        controller("fake/v1", "StatefulSet", "db"),
    )
    .await;
    let (_, v) = skipping.shell_in(&scene.ns, &fake).await;
    assert_eq!(v["outcome"], "deleted", "{v}\n{}", skipping.logs());
    let line = skipping.line_of(&v).await;
    assert!(line.contains("workload=StatefulSet.fake/db"), "{line}");
    // An apps/v1 StatefulSet that does not exist: the pod is standalone.
    let ghost = owned_pod(
        &scene,
        "ghost",
        none.clone(),
        controller("apps/v1", "StatefulSet", "db"),
    )
    .await;
    let (_, v) = skipping.shell_in(&scene.ns, &ghost).await;
    assert_eq!(v["outcome"], "deleted", "{v}");
    let line = skipping.line_of(&v).await;
    assert!(line.contains("workload=Standalone/ghost"), "{line}");
    // One that exists, under its real uid: skipped.
    let real = stateful_pod(&scene, "db").await;
    let (_, v) = skipping.shell_in(&scene.ns, &real).await;
    assert_eq!(v["outcome"], "skipped", "{v}");
    let line = skipping.line_of(&v).await;
    assert!(line.contains("StatefulSet/db"), "{line}");
    // The mirror annotation without the kubelet's Node owner: no mirror pod.
    let mirror = json!({"kubernetes.io/config.mirror": "3f1c0a"});
    let posing = owned_pod(&scene, "posing", mirror, json!([])).await;
    let (_, v) = skipping.shell_in(&scene.ns, &posing).await;
    assert_eq!(v["outcome"], "deleted", "{v}");
    let line = skipping.line_of(&v).await;
    assert!(line.contains("workload=Standalone/posing"), "{line}");

    // The protect annotation is the author's word: honoured only when the deployer says so.
    let protect = json!({"falco-responder/protect": "true"});
    let plain = scene.responder(&[]).await;
    let annotated = owned_pod(&scene, "annotated", protect.clone(), json!([])).await;
    let (_, v) = plain.shell_in(&scene.ns, &annotated).await;
    assert_eq!(v["outcome"], "deleted", "{v}");
    let trusting = scene
        .responder(&[("TRUST_PROTECT_ANNOTATION", "true")])
        .await;
    let trusted = owned_pod(&scene, "trusted", protect, json!([])).await;
    let (_, v) = trusting.shell_in(&scene.ns, &trusted).await;
    assert_eq!(v["outcome"], "skipped", "{v}");
    assert!(scene.exists(&trusted).await);
}

#[tokio::test]
async fn a_namespace_labelled_protected_is_left_alone() {
    let scene = Scene::new("guarded").await;
    let label = json!({"metadata": {"labels": {"falco-responder/protect": "true"}}});
    Api::<k8s_openapi::api::core::v1::Namespace>::all(scene.admin.clone())
        .patch(
            &scene.ns,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&label),
        )
        .await
        .unwrap();
    let pod = scene.pod("web", &new_cid()).await;
    let responder = scene.responder(&[]).await;
    let (r, v) = responder.shell_in(&scene.ns, &pod).await;
    assert_eq!(
        (r.status, v["outcome"].as_str()),
        (200, Some("skipped")),
        "{v}\n{}",
        responder.logs()
    );
    assert_eq!(v["reason"], "the pod is protected", "{v}");
    let line = responder.line_of(&v).await;
    assert!(line.contains("falco-responder/protect=true"), "{line}");
    assert!(scene.exists(&pod).await);
    // Unlabelled, next door: deleted.
    let other = scene.beside("open").await;
    let pod = other.pod("web", &new_cid()).await;
    let (_, v) = responder.shell_in(&other.ns, &pod).await;
    assert_eq!(v["outcome"], "deleted", "{v}");
}
