//! The deletion breaker's shared count against a real kube-apiserver: a removal whose answer
//! is lost still counts (a proxy carries out the DELETE and drops its answer), a process whose
//! records cannot be written is not ready and says why (then ready once fixed, without a
//! restart), and the one-shot mode fails when its record cannot be written. A storm while the
//! overall budget is spent costs no API call.

use std::{net::SocketAddr, time::Duration};

use http::{HeaderMap, Method, Request, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use k8s_openapi::api::{
    core::v1::Namespace,
    events::v1::Event as KubeEvent,
    rbac::v1::{Role, RoleBinding},
};
use kube::{Api, api::PostParams};
use serde_json::json;
use tokio::net::TcpListener;

use crate::testkit::apiserver as support;
use crate::testkit::binary::{self, Responder, kubeconfig_for};
use crate::testkit::scene::{Scene, new_cid};
use crate::testkit::sender::{http, terminal_shell};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A plain-HTTP proxy to the API server, as `admin`, that carries out every request but loses
/// the answer to a DELETE of a pod: the connection closes without one, as when the network
/// fails after the request was sent.
async fn losing_pod_delete_answers(admin: kube::Client) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let admin = admin.clone();
            let svc = hyper::service::service_fn(move |req| forward(admin.clone(), req));
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(sock);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .await;
            });
        }
    });
    addr
}

/// One request of [`losing_pod_delete_answers`].
async fn forward(
    admin: kube::Client,
    req: Request<Incoming>,
) -> Result<http::Response<kube::client::Body>, BoxError> {
    let lose = req.method() == Method::DELETE && req.uri().path().contains("/pods/");
    let (parts, body) = req.into_parts();
    let bytes = body.collect().await.map_err(BoxError::from)?.to_bytes();
    let uri = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = Request::builder().method(parts.method.clone()).uri(uri);
    for name in [header::ACCEPT, header::CONTENT_TYPE] {
        if let Some(v) = parts.headers.get(&name) {
            out = out.header(name, v);
        }
    }
    let out = out
        .body(kube::client::Body::from(bytes.to_vec()))
        .map_err(BoxError::from)?;
    let answer = admin.send(out).await.map_err(BoxError::from)?;
    if lose {
        return Err("the answer is lost".into());
    }
    Ok(answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_whose_answer_is_lost_still_counts() {
    let scene = Scene::with_controllers("lost").await;
    let home = scene.beside("lost-home").await.ns;
    scene.deployment("web", 2).await;
    let pods = scene.ready_pods("web", 2, 2).await;
    let proxy = losing_pod_delete_answers(scene.admin.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig_for(dir.path(), proxy);
    let budget = [
        ("POD_NAMESPACE", home.as_str()),
        ("MAX_DELETIONS", "off"),
        ("MAX_DELETIONS_PER_WORKLOAD", "1/10m"),
    ];
    let env = [
        &[
            ("KUBECONFIG", kc.to_str().unwrap()),
            ("API_TIMEOUT_SECONDS", "5"),
        ][..],
        &budget[..],
    ]
    .concat();
    let responder = Responder::start(&env).await;

    // The DELETE went through, its answer did not: unknown, so the sender is told to retry.
    let (r, v) = responder.shell_in(&scene.ns, &pods[0]).await;
    assert_eq!(r.status, 503, "{v}\n{}", responder.logs());
    assert_eq!(v["retry"], true, "{v}");
    assert!(
        !scene.exists(&pods[0]).await,
        "the proxy did not pass the DELETE on"
    );
    // It counts: its record is written, named after the pod.
    let uid = pods[0].metadata.uid.clone().unwrap();
    let records = Api::<KubeEvent>::namespaced(scene.admin.clone(), &home);
    let name = format!("falco-responder-deleted.{uid}");
    let (records_ref, name_ref) = (&records, &name);
    support::wait_for(
        "the record of the removal whose answer was lost",
        Duration::from_secs(10),
        move || async move { records_ref.get_opt(name_ref).await.unwrap() },
    )
    .await;
    // ... so the budget of one is spent: the next replica is not deleted.
    let (r, v) = responder.shell_in(&scene.ns, &pods[1]).await;
    assert_eq!(
        (r.status, v["outcome"].as_str()),
        (200, Some("breaker-open")),
        "{v}\n{}",
        responder.logs()
    );
    assert!(scene.exists(&pods[1]).await);
    // Another process counts it too, from the record.
    let other = scene.responder(&budget).await;
    let (_, v) = other.shell_in(&scene.ns, &pods[1]).await;
    assert_eq!(v["outcome"], "breaker-open", "{v}\n{}", other.logs());
    assert!(scene.exists(&pods[1]).await);
}

/// `GET /readyz` of `r` until `done` says yes about (status, body), or panics after 20 s.
async fn readiness_until(r: &Responder, done: impl Fn(u16, &str) -> bool) -> String {
    for _ in 0..200 {
        let reply = r.readyz().await;
        let body = String::from_utf8_lossy(&reply.body).into_owned();
        if done(reply.status, &body) {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("readiness never came to that: {}", r.logs());
}

#[tokio::test]
async fn not_ready_while_the_breaker_cannot_write_its_records_then_ready_once_fixed() {
    let scene = Scene::new("records").await;
    let admin_kc = scene.kubeconfig();
    // Its own namespace does not exist (yet).
    let missing = format!("{}-home", scene.ns);
    let a = Responder::start_live(&[
        ("KUBECONFIG", admin_kc.to_str().unwrap()),
        ("POD_NAMESPACE", &missing),
    ])
    .await;
    // A ServiceAccount the breaker's RBAC was not granted to.
    let (_, sa_kc) = scene.service_account_kubeconfig("no-records").await;
    let b = Responder::start_live(&[
        ("KUBECONFIG", sa_kc.to_str().unwrap()),
        ("POD_NAMESPACE", &scene.ns),
    ])
    .await;

    let said = readiness_until(&a, |s, b| s == 503 && b.starts_with("not ready")).await;
    assert!(
        said.contains(&missing) && said.contains("does the namespace exist"),
        "{said}"
    );
    let said = readiness_until(&b, |s, b| s == 503 && b.starts_with("not ready")).await;
    assert!(
        said.contains(&scene.ns)
            && said.contains("forbidden")
            && said.contains("grant create, list and watch on events"),
        "{said}"
    );
    // Alive all along: not restarted for it.
    for r in [&a, &b] {
        let live = http(r.addr, "GET", "/healthz", &HeaderMap::new(), b"").await;
        assert_eq!(live.status, 200);
        assert!(r.logs().contains("not ready"), "{}", r.logs());
    }

    // Fixed: the namespace created, the records' Role granted. Ready without a restart.
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": missing}})).unwrap();
    Api::<Namespace>::all(scene.admin.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "breaker-records"},
        "rules": [{"apiGroups": ["events.k8s.io"], "resources": ["events"],
                   "verbs": ["create", "list", "watch"]}]
    }))
    .unwrap();
    Api::<Role>::namespaced(scene.admin.clone(), &scene.ns)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "breaker-records"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "breaker-records"},
        "subjects": [{"kind": "ServiceAccount", "name": "no-records", "namespace": scene.ns}]
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(scene.admin.clone(), &scene.ns)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    for r in [&a, &b] {
        readiness_until(r, |s, _| s == 200).await;
    }
}

#[tokio::test]
async fn the_one_shot_mode_fails_when_its_record_cannot_be_written() {
    let scene = Scene::new("once-record").await;
    let cid = new_cid();
    scene.pod("victim", &cid).await;
    let missing = format!("{}-home", scene.ns);
    let out = tokio::process::Command::from(binary::command())
        .arg("once")
        .env("KUBECONFIG", scene.kubeconfig())
        .env("POD_NAMESPACE", &missing)
        .env("BODY", terminal_shell(&scene.ns, "victim", &cid))
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    // The pod is deleted and says so, but the exit code says the count was not shared.
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(stdout.contains("\"outcome\":\"deleted\""), "{stdout}");
    assert!(
        stderr.contains("record") && stderr.contains(&missing),
        "{stderr}"
    );
    assert!(scene.terminating("victim").await);
}

#[tokio::test]
async fn a_storm_while_the_overall_breaker_is_open_costs_no_api_call() {
    let scene = Scene::new("spent").await;
    // The records in a namespace of their own: this test's count only.
    let home = scene.beside("spent-home").await.ns;
    let (first, second) = (new_cid(), new_cid());
    scene.pod("first", &first).await;
    scene.pod("second", &second).await;
    let responder = scene
        .responder(&[("POD_NAMESPACE", home.as_str()), ("MAX_DELETIONS", "1/1m")])
        .await;
    let r = responder.shell(&scene.ns, "first", &first).await;
    assert_eq!(responder.result(&r)["outcome"], "deleted");
    let server = scene.server();
    let gets = server.count_audit_in("get", "pods", Some(&scene.ns), "*");
    let writes = server.count_audit_in("create", "events", Some(&scene.ns), "*");
    // The first refusal looks: the pod's GET, and its Warning Event.
    let r = responder.shell(&scene.ns, "second", &second).await;
    assert_eq!(responder.result(&r)["outcome"], "breaker-open");

    // Forged events for 40 other pods, within the next 5 s: refused from memory.
    for i in 0..40 {
        let r = responder
            .shell(&scene.ns, &format!("forged-{i}"), &new_cid())
            .await;
        let v = responder.result(&r);
        assert_eq!(
            (r.status, v["outcome"].as_str()),
            (200, Some("breaker-open")),
            "{v}"
        );
    }
    assert_eq!(
        server.count_audit_in("get", "pods", Some(&scene.ns), "*"),
        gets + 1,
        "a pod GET per forged event while the breaker is open"
    );
    assert_eq!(
        server.count_audit_in("create", "events", Some(&scene.ns), "*"),
        writes + 1,
        "an Event per forged event while the breaker is open"
    );
    assert!(
        responder
            .metrics()
            .await
            .contains(r#"falco_responder_suppressed_total{what="pod_get"} 40"#),
        "{}",
        responder.metrics().await
    );
    assert!(scene.untouched("second").await);
}
