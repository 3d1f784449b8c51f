//! MIN_AVAILABLE reserves, end to end: concurrent events for the replicas of one Deployment,
//! against a real kube-apiserver and kube-controller-manager, in one function process and
//! across two. Every event reads the same ready count; only the slots the floor allows let a
//! deletion through.

use k8s_openapi::api::{core::v1::Pod, events::v1::Event as KubeEvent};
use kube::{Api, api::ListParams};

use crate::testkit::binary::Responder;
use crate::testkit::scene::Scene;

/// One event for `pod`, sent to `r`: (status, outcome).
async fn one(scene: &Scene, r: &Responder, pod: &Pod) -> (u16, String) {
    let (reply, v) = r.shell_in(&scene.ns, pod).await;
    (
        reply.status,
        v["outcome"].as_str().unwrap_or("?").to_string(),
    )
}

/// Sends the three events at once, each to its responder; (status, outcome) per pod.
async fn at_once(scene: &Scene, sends: [(&Responder, &Pod); 3]) -> Vec<(u16, String)> {
    let [(ra, pa), (rb, pb), (rc, pc)] = sends;
    let (a, b, c) = tokio::join!(one(scene, ra, pa), one(scene, rb, pb), one(scene, rc, pc));
    vec![a, b, c]
}

/// Exactly one deleted (200) and the others held (503), and the pods agree.
async fn exactly_one_deleted(scene: &Scene, pods: &[Pod], answers: &[(u16, String)], logs: &str) {
    let deleted = answers.iter().filter(|(s, o)| *s == 200 && o == "deleted");
    let held = answers.iter().filter(|(s, o)| *s == 503 && o == "held");
    assert_eq!(
        (deleted.count(), held.count()),
        (1, 2),
        "{answers:?}\n{logs}"
    );
    let mut alive = 0;
    for p in pods {
        alive += usize::from(scene.exists(p).await);
    }
    assert_eq!(alive, 2, "the floor: two of three stay");
}

/// The reservation records in the function's namespace `home`.
async fn reservations(scene: &Scene, home: &str) -> Vec<KubeEvent> {
    Api::<KubeEvent>::namespaced(scene.admin.clone(), home)
        .list(&ListParams::default().labels("falco-responder/reservation"))
        .await
        .unwrap()
        .items
}

/// A Deployment of 3 ready replicas, and a namespace of the function's own.
async fn three_ready(prefix: &str) -> (Scene, String, Vec<Pod>) {
    let scene = Scene::with_controllers(prefix).await;
    let home = scene.beside(&format!("{prefix}-home")).await.ns;
    scene.deployment("web", 3).await;
    let pods = scene.ready_pods("web", 3, 3).await;
    (scene, home, pods)
}

#[tokio::test]
async fn concurrent_events_for_three_replicas_delete_one_with_a_floor_of_two() {
    let (scene, home, pods) = three_ready("reserve").await;
    // The breaker off: every write in the function's namespace is a reservation.
    let r = scene
        .responder(&[
            ("MIN_AVAILABLE", "2"),
            ("POD_NAMESPACE", &home),
            ("MAX_DELETIONS_PER_WORKLOAD", "off"),
        ])
        .await;
    let answers = at_once(&scene, [(&r, &pods[0]), (&r, &pods[1]), (&r, &pods[2])]).await;
    exactly_one_deleted(&scene, &pods, &answers, &r.logs()).await;
    // The cost: one POST for the deletion; the two held events asked this process's table,
    // not the API (no second create, no LIST).
    let server = scene.server();
    assert_eq!(
        server.count_audit_in("create", "events", Some(&home), "*"),
        1
    );
    assert_eq!(server.count_audit_in("list", "events", Some(&home), "*"), 0);
    // One slot (3 ready - floor 2), one record, in the function's own namespace.
    let records = reservations(&scene, &home).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].reason.as_deref(), Some("FalcoDeletionReserved"));
    assert!(reservations(&scene, &scene.ns).await.is_empty());
}

#[tokio::test]
async fn the_reservation_holds_across_two_function_processes() {
    let (scene, home, pods) = three_ready("reserve2").await;
    let env = [("MIN_AVAILABLE", "2"), ("POD_NAMESPACE", home.as_str())];
    let a = scene.responder(&env).await;
    let b = scene.responder(&env).await;
    let answers = at_once(&scene, [(&a, &pods[0]), (&b, &pods[1]), (&b, &pods[2])]).await;
    let logs = format!("{}\n{}", a.logs(), b.logs());
    exactly_one_deleted(&scene, &pods, &answers, &logs).await;
    // And again with the other process first on the remaining pods: the slot is still held
    // (the controller may already count 2 ready, which holds them too).
    let left: Vec<&Pod> = {
        let mut left = Vec::new();
        for p in &pods {
            if scene.exists(p).await {
                left.push(p);
            }
        }
        left
    };
    for p in left {
        let (reply, v) = a.shell_in(&scene.ns, p).await;
        assert_eq!(
            (reply.status, v["outcome"].as_str()),
            (503, Some("held")),
            "{v}"
        );
    }
}
