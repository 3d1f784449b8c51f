//! The Kubernetes calls, against kube's tower-test mock: exact method, path and DeleteOptions,
//! and what each API answer becomes.

use std::{
    borrow::Borrow,
    time::{Duration, Instant},
};

use falco_responder::app::{App, reply::Reply};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use kube::{Client, client::Body};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tower_test::mock::{self, Handle, SendResponse};

use crate::testkit::sender::{said, terminal_shell};
use crate::testkit::server::config;

type ApiHandle = Handle<Request<Body>, Response<Body>>;

const NS: &str = "prod";
const POD: &str = "web-1";
const UID: &str = "1f4a0c1e-0000-4000-8000-000000000001";
const CID: &str = "ee97d9c4186f0123456789abcdef0123456789abcdef0123456789abcdef0123";

fn app(vars: &[(&str, &str)]) -> (App, ApiHandle) {
    // The breaker's LIST has its own tests (below, e2e_guards); here the exact pod calls.
    let off = [
        ("MAX_DELETIONS", "off"),
        ("MAX_DELETIONS_PER_WORKLOAD", "off"),
    ];
    app_with(&[&off[..], vars].concat())
}

fn event() -> Vec<u8> {
    terminal_shell(NS, POD, CID).into_bytes()
}

/// The pod as the API has it: container CID, no annotations.
fn live() -> Value {
    pod(CID, json!({}))
}

fn pod(container_id: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": POD, "namespace": NS, "uid": UID, "annotations": annotations},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "alpine"}]},
        "status": {"containerStatuses": [{"name": "c", "image": "alpine", "imageID": "", "ready": true,
            "restartCount": 0, "containerID": format!("containerd://{container_id}")}]}
    })
}

fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code});
    Response::builder()
        .status(code)
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

fn ok(v: Value) -> Response<Body> {
    Response::new(Body::from(serde_json::to_vec(&v).unwrap()))
}

async fn next(
    handle: &mut ApiHandle,
    method: Method,
    path: &str,
) -> (Value, SendResponse<Response<Body>>) {
    let (req, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .unwrap_or_else(|_| panic!("expected {method} {path}, but no request came"))
        .expect("service dropped");
    assert_eq!(req.method(), method, "{}", req.uri());
    assert_eq!(req.uri().path(), path);
    let bytes = req.into_body().collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (body, send)
}

/// Expects the next call and answers it; returns the request body.
async fn answer(
    handle: &mut ApiHandle,
    method: Method,
    path: &str,
    response: Response<Body>,
) -> Value {
    let (body, send) = next(handle, method, path).await;
    send.send_response(response);
    body
}

const POD_PATH: &str = "/api/v1/namespaces/prod/pods/web-1";
const NS_PATH: &str = "/api/v1/namespaces/prod";
const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/prod/events";

/// Handles `body` in a task while the test answers its API calls: the reply, and the app for
/// what it counted.
fn handling<A>(app: A, body: impl Into<Vec<u8>>) -> JoinHandle<(Reply, A)>
where
    A: Borrow<App> + Send + 'static,
{
    let body = body.into();
    tokio::spawn(async move { (app.borrow().handle(&HeaderMap::new(), &body).await, app) })
}

/// Answers the pod's GET with `response`.
async fn answer_get(handle: &mut ApiHandle, response: Response<Body>) {
    answer(handle, Method::GET, POD_PATH, response).await;
}

/// The namespace's metadata, with `labels`.
fn namespace(labels: Value) -> Response<Body> {
    ok(
        json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
        "metadata": {"name": NS, "uid": "ns-uid", "labels": labels}}),
    )
}

/// Answers the GET of the pod's namespace (its protection label): not labelled.
async fn answer_namespace(handle: &mut ApiHandle) {
    answer(handle, Method::GET, NS_PATH, namespace(json!({}))).await;
}

/// Answers one whole deletion of `live`: its GET, its namespace's, its DELETE, then its Event.
async fn answer_deletion(handle: &mut ApiHandle, live: Value) {
    answer(handle, Method::GET, POD_PATH, ok(live.clone())).await;
    answer_namespace(handle).await;
    answer(handle, Method::DELETE, POD_PATH, ok(live)).await;
    answer(handle, Method::POST, EVENTS_PATH, ok(json!({}))).await;
}

/// Asserts no further API call is made once `app` is gone.
async fn no_more_calls<A>(app: A, mut handle: ApiHandle) {
    drop(app);
    let extra = tokio::time::timeout(Duration::from_secs(1), handle.next_request()).await;
    if let Ok(Some((req, _))) = extra {
        panic!("unexpected API call {} {}", req.method(), req.uri());
    }
}

#[tokio::test]
async fn deletes_with_uid_precondition_and_grace_period_then_records_an_event() {
    let (app, mut api) = app(&[("GRACE_PERIOD_SECONDS", "5"), ("POD_NAME", "responder-0")]);
    let call = handling(app, event());

    answer_get(&mut api, ok(live())).await;
    answer_namespace(&mut api).await;
    let (opts, send) = next(&mut api, Method::DELETE, POD_PATH).await;
    assert_eq!(opts["preconditions"]["uid"], UID, "{opts}");
    assert_eq!(opts["gracePeriodSeconds"], 5, "{opts}");
    send.send_response(ok(live()));
    let (ev, send) = next(&mut api, Method::POST, EVENTS_PATH).await;
    assert_eq!(ev["reason"], "FalcoPodDeleted");
    assert_eq!(ev["action"], "Delete");
    assert_eq!(ev["type"], "Warning");
    assert_eq!(ev["reportingController"], "falco-responder");
    assert_eq!(ev["reportingInstance"], "responder-0");
    assert_eq!(ev["regarding"]["uid"], UID);
    assert_eq!(ev["regarding"]["kind"], "Pod");
    let note = ev["note"].as_str().unwrap();
    assert!(
        note.contains("Terminal shell in container") && note.contains("Critical"),
        "{note}"
    );
    assert!(note.contains("A shell was spawned"), "{note}");
    send.send_response(ok(ev.clone()));

    let (reply, app) = call.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["outcome"], "deleted");
    // The pod as the event named it: no live uid, no workload (the Event has them).
    assert_eq!(reply.json()["pod"], json!({"namespace": NS, "name": POD}));
    assert!(!reply.json().to_string().contains(UID), "{}", reply.json());
    assert_eq!(reply.json()["rule"], "Terminal shell in container");
    assert_eq!(reply.json()["priority"], "Critical");
    assert!(
        app.metrics
            .encode()
            .contains("falco_responder_deletions_total 1")
    );
    no_more_calls(app, api).await;
}

#[tokio::test]
async fn without_grace_period_the_pods_own_is_kept() {
    let (app, mut api) = app(&[]);
    let call = handling(app, event());
    answer_get(&mut api, ok(live())).await;
    answer_namespace(&mut api).await;
    let (opts, send) = next(&mut api, Method::DELETE, POD_PATH).await;
    assert!(opts.get("gracePeriodSeconds").is_none(), "{opts}");
    send.send_response(ok(live()));
    answer(&mut api, Method::POST, EVENTS_PATH, ok(json!({}))).await;
    assert_eq!(call.await.unwrap().0.json()["outcome"], "deleted");
}

#[tokio::test]
async fn missing_pod_is_gone_and_nothing_is_deleted() {
    let (app, mut api) = app(&[]);
    let call = handling(app, event());
    answer_get(
        &mut api,
        status(404, "NotFound", "pods \"web-1\" not found"),
    )
    .await;
    let (reply, app) = call.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["outcome"], "gone");
    no_more_calls(app, api).await;
}

#[tokio::test]
async fn conflict_on_delete_is_stale() {
    let (app, mut api) = app(&[]);
    let call = handling(app, event());
    answer_get(&mut api, ok(live())).await;
    answer_namespace(&mut api).await;
    let (_, send) = next(&mut api, Method::DELETE, POD_PATH).await;
    send.send_response(status(
        409,
        "Conflict",
        "Precondition failed: UID in precondition",
    ));
    let (reply, app) = call.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["outcome"], "stale");
    // Nothing deleted, so no Event either.
    no_more_calls(app, api).await;
}

#[tokio::test]
async fn container_id_mismatch_is_foreign_without_a_delete() {
    let (app, mut api) = app(&[]);
    let call = handling(app, event());
    let (_, send) = next(&mut api, Method::GET, POD_PATH).await;
    let other = "0123456789ab".repeat(5) + "cdef";
    send.send_response(ok(pod(&other, json!({}))));
    // Not `stale`: nothing says the pod is newer than the event. A Warning Event, no DELETE.
    let ev = answer(&mut api, Method::POST, EVENTS_PATH, ok(json!({}))).await;
    assert_eq!(ev["reason"], "FalcoForeignContainer", "{ev}");
    let (reply, app) = call.await.unwrap();
    assert_eq!(reply.json()["outcome"], "skipped");
    no_more_calls(app, api).await;
}

#[tokio::test]
async fn opt_out_annotation_is_respected_only_when_trusted() {
    let (app, mut api) = app(&[("TRUST_PROTECT_ANNOTATION", "true")]);
    let call = handling(app, event());
    let annotated = pod(CID, json!({"falco-responder/protect": "true"}));
    answer_get(&mut api, ok(annotated.clone())).await;
    let (reply, app) = call.await.unwrap();
    assert_eq!(reply.json()["outcome"], "skipped");
    assert!(said(&reply.json(), "reason").contains("protected"));
    no_more_calls(app, api).await;
    // By default the annotation is the pod author's word, not a protection.
    let (app, mut api) = self::app(&[]);
    let call = handling(app, event());
    answer_deletion(&mut api, annotated).await;
    assert_eq!(call.await.unwrap().0.json()["outcome"], "deleted");
}

#[tokio::test]
async fn a_namespace_labelled_protected_is_left_alone_and_its_get_fails_closed() {
    let (app, mut api) = app(&[]);
    let call = handling(app, event());
    answer_get(&mut api, ok(live())).await;
    let labels = json!({"falco-responder/protect": "true"});
    answer(&mut api, Method::GET, NS_PATH, namespace(labels)).await;
    let (reply, app) = call.await.unwrap();
    assert_eq!(reply.json()["outcome"], "skipped");
    assert_eq!(said(&reply.json(), "reason"), "the pod is protected");
    no_more_calls(app, api).await;
    // A 403 on the namespace is an error naming the missing right, never "not protected".
    let (app, mut api) = self::app(&[]);
    let call = handling(app, event());
    answer_get(&mut api, ok(live())).await;
    let forbidden = status(403, "Forbidden", "namespaces \"prod\" is forbidden");
    answer(&mut api, Method::GET, NS_PATH, forbidden).await;
    let (reply, app) = call.await.unwrap();
    assert!(reply.status.is_server_error(), "{:?}", reply.json());
    assert!(
        said(&reply.json(), "error").contains("get on namespaces"),
        "{}",
        reply.json()
    );
    no_more_calls(app, api).await;
}

#[tokio::test]
async fn dry_run_looks_but_never_deletes() {
    let (app, mut api) = app(&[("DRY_RUN", "true")]);
    let call = handling(app, event());
    answer_get(&mut api, ok(live())).await;
    answer_namespace(&mut api).await;
    // The trial run's audit trail, instead of a DELETE.
    let (ev, send) = next(&mut api, Method::POST, EVENTS_PATH).await;
    assert_eq!(ev["reason"], "FalcoDryRun");
    assert_eq!(ev["type"], "Normal");
    // What would have been done, with each guard's verdict, is in the Event's note.
    let note = ev["note"].as_str().unwrap();
    assert!(
        note.contains(&format!(
            "would delete pod {NS}/{POD} (workload Standalone/{POD}"
        )),
        "{note}"
    );
    send.send_response(ok(ev.clone()));
    let (reply, app) = call.await.unwrap();
    assert_eq!(reply.json()["outcome"], "dry-run");
    assert_eq!(
        said(&reply.json(), "reason"),
        "DRY_RUN: would delete the pod"
    );
    assert!(reply.json()["pod"].get("uid").is_none(), "{}", reply.json());
    no_more_calls(app, api).await;
}

#[tokio::test]
async fn forbidden_delete_is_a_5xx_naming_what_to_grant() {
    let (app, mut api) = app(&[]);
    let call = handling(app, event());
    answer_get(&mut api, ok(live())).await;
    answer_namespace(&mut api).await;
    let (_, send) = next(&mut api, Method::DELETE, POD_PATH).await;
    send.send_response(status(
        403,
        "Forbidden",
        "pods \"web-1\" is forbidden: User \"system:serviceaccount:falco-responder:falco-responder\" \
         cannot delete resource \"pods\" in API group \"\" in the namespace \"prod\"",
    ));
    let (reply, _) = call.await.unwrap();
    // A human must grant the permission: 500, and the sender is told a retry will not help.
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.json()["retry"], false);
    // What to grant; the ServiceAccount and the API server's message are in the log line only.
    let err = said(&reply.json(), "error").to_string();
    assert!(err.contains("grant delete on pods"), "{err}");
    assert!(!err.contains("system:serviceaccount"), "{err}");
}

/// Log lines written while `f` runs on this thread (the tests' current-thread runtime runs the
/// spawned action and Event tasks here too).
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let me = self.clone();
        tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .with_ansi(false)
                .with_writer(move || me.clone())
                .finish(),
        )
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn events_rbac_missing_still_counts_the_deletion() {
    let logs = Captured::default();
    let _guard = logs.install();
    let (app, mut api) = app(&[]);
    let app = std::sync::Arc::new(app);
    let call = handling(app.clone(), event());
    answer_get(&mut api, ok(live())).await;
    answer_namespace(&mut api).await;
    answer(&mut api, Method::DELETE, POD_PATH, ok(live())).await;
    let (_, send) = next(&mut api, Method::POST, EVENTS_PATH).await;
    send.send_response(status(
        403,
        "Forbidden",
        "events.events.k8s.io is forbidden",
    ));
    let (reply, _) = call.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["outcome"], "deleted");
    app.drain().await;
    assert!(
        app.metrics
            .encode()
            .contains("falco_responder_deletions_total 1"),
        "{}",
        app.metrics.encode()
    );
    let text = logs.text();
    assert!(
        text.contains("WARN") && text.contains("the Kubernetes Event could not be recorded"),
        "{text}"
    );
    assert!(
        text.contains("prod/web-1") && text.contains("forbidden"),
        "{text}"
    );
}

#[tokio::test]
async fn api_5xx_asks_the_sender_to_retry() {
    let (app, mut api) = app(&[]);
    let call = handling(app, event());
    let (_, send) = next(&mut api, Method::GET, POD_PATH).await;
    send.send_response(status(
        500,
        "InternalError",
        "etcdserver: request timed out",
    ));
    let (reply, _) = call.await.unwrap();
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.json()["retry"], true);
}

#[tokio::test]
async fn a_hung_api_gives_503_within_api_timeout_seconds() {
    let (app, mut api) = app(&[("API_TIMEOUT_SECONDS", "1")]);
    let started = Instant::now();
    let call = handling(app, event());
    // Take the GET and never answer it.
    let (_, _never) = next(&mut api, Method::GET, POD_PATH).await;
    let (reply, _) = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("the deadline must hold")
        .unwrap();
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(said(&reply.json(), "error").contains("API_TIMEOUT_SECONDS"));
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn uid_in_the_event_must_match_the_live_pod() {
    let (app, mut api) = app(&[]);
    let mut ev: Value = serde_json::from_slice(&event()).unwrap();
    ev["output_fields"]["k8smeta.pod.uid"] = json!("9f4a0c1e-0000-4000-8000-000000000009");
    let body = ev.to_string();
    let call = handling(app, body);
    answer_get(&mut api, ok(live())).await;
    let (reply, app) = call.await.unwrap();
    assert_eq!(reply.json()["outcome"], "stale");
    no_more_calls(app, api).await;
}

#[tokio::test]
async fn a_storm_for_one_pod_costs_one_get_and_one_delete() {
    let (app, mut api) = app(&[]);
    let app = std::sync::Arc::new(app);
    let mut calls = Vec::new();
    for _ in 0..20 {
        calls.push(handling(app.clone(), event()));
    }
    answer_deletion(&mut api, live()).await;
    for c in calls {
        assert_eq!(c.await.unwrap().0.json()["outcome"], "deleted");
    }
    // Within DEDUP_SECONDS a redelivery is answered from memory.
    let again = app.handle(&HeaderMap::new(), &event()).await;
    assert_eq!(again.json()["outcome"], "deleted");
    // The same answer; the log line says it was remembered.
    assert_eq!(said(&again.json(), "reason"), "the pod was deleted");
    no_more_calls(app, api).await;
}

/// `live()` whose container (re)started at `started`.
fn started_at(started: &str) -> Value {
    let mut p = live();
    p["status"]["containerStatuses"][0]["state"] = json!({"running": {"startedAt": started}});
    p
}

/// A matching uid proves the pod, not the container: an unknown container id deletes only when
/// restarts after the event may have hidden it; otherwise the container is not the pod's.
#[tokio::test]
async fn a_matching_uid_deletes_an_unknown_container_only_after_a_restart() {
    let mut ev: Value = serde_json::from_slice(&event()).unwrap();
    ev["output_fields"]["k8smeta.pod.uid"] = json!(UID);
    ev["output_fields"]["container.id"] = json!("0123456789ab");
    let body = ev.to_string();
    // The event is from 2023 (the fixture): a restart in 2026 may have hidden its container.
    let (responder, mut api) = app(&[]);
    let call = handling(responder, body.clone());
    answer_get(&mut api, ok(started_at("2026-11-30T09:00:00Z"))).await;
    answer_namespace(&mut api).await;
    let (opts, send) = next(&mut api, Method::DELETE, POD_PATH).await;
    assert_eq!(opts["preconditions"]["uid"], UID);
    send.send_response(ok(live()));
    answer(&mut api, Method::POST, EVENTS_PATH, ok(json!({}))).await;
    assert_eq!(call.await.unwrap().0.json()["outcome"], "deleted");

    // Running since before the event: a container outside the kubelet with the pod's uid.
    let (responder, mut api) = app(&[]);
    let call = handling(responder, body);
    answer_get(&mut api, ok(started_at("2020-01-01T00:00:00Z"))).await;
    let ev = answer(&mut api, Method::POST, EVENTS_PATH, ok(json!({}))).await;
    assert_eq!(
        (ev["reason"].as_str(), ev["type"].as_str()),
        (Some("FalcoForeignContainer"), Some("Warning")),
        "{ev}"
    );
    let (reply, responder) = call.await.unwrap();
    assert_eq!(reply.json()["outcome"], "skipped", "{}", reply.json());
    no_more_calls(responder, api).await;

    // No uid: a pod created before the event, restarted since, is the pod Falco saw (a name is
    // unique at any instant), never `stale` on container ids alone.
    let mut ev: Value = serde_json::from_slice(&event()).unwrap();
    ev["output_fields"]["container.id"] = json!("0123456789ab");
    let mut restarted = started_at("2026-11-30T09:00:00Z");
    restarted["metadata"]["creationTimestamp"] = json!("2020-01-01T00:00:00Z");
    let (responder, mut api) = app(&[]);
    let call = handling(responder, ev.to_string());
    answer_deletion(&mut api, restarted).await;
    assert_eq!(call.await.unwrap().0.json()["outcome"], "deleted");
}

#[tokio::test]
async fn invalid_identifiers_are_400_and_never_reach_the_api() {
    for (field, value) in [
        ("k8s.ns.name", "kube%2Dsystem"),
        ("k8s.ns.name", "prod/../kube-system"),
        ("k8s.pod.name", "web-1#"),
        ("k8s.pod.name", "web-1?watch=true"),
        ("k8s.pod.name", "Web-1"),
        ("k8smeta.pod.uid", "not-a-uid"),
        ("container.id", "ee97d9c4186f/../x"),
    ] {
        let (app, api) = app(&[]);
        let mut ev: Value = serde_json::from_slice(&event()).unwrap();
        ev["output_fields"][field] = json!(value);
        let reply = app
            .handle(&HeaderMap::new(), ev.to_string().as_bytes())
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{field}={value}");
        assert_eq!(reply.json()["field"], field);
        assert_eq!(reply.json()["retry"], false);
        assert!(
            said(&reply.json(), "error").contains(field),
            "{}",
            reply.json()
        );
        assert!(
            app.metrics
                .encode()
                .contains(r#"falco_responder_events_total{input="plain",outcome="invalid"} 1"#)
        );
        no_more_calls(app, api).await;
    }
}

/// A pod deleted earlier with a long grace period (here an hour, set 10 minutes ago).
fn terminating_pod() -> Value {
    let mut p = live();
    let deadline =
        k8s_openapi::jiff::Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_secs(50 * 60);
    p["metadata"]["deletionTimestamp"] = json!(deadline.to_string());
    p["metadata"]["deletionGracePeriodSeconds"] = json!(3600);
    p
}

#[tokio::test]
async fn a_terminating_pod_gets_the_shorter_grace_period() {
    let (app, mut api) = app(&[("GRACE_PERIOD_SECONDS", "10")]);
    let call = handling(app, event());
    answer_get(&mut api, ok(terminating_pod())).await;
    answer_namespace(&mut api).await;
    let (opts, send) = next(&mut api, Method::DELETE, POD_PATH).await;
    assert_eq!(opts["gracePeriodSeconds"], 10, "{opts}");
    assert_eq!(opts["preconditions"]["uid"], UID, "{opts}");
    send.send_response(ok(terminating_pod()));
    let (ev, send) = next(&mut api, Method::POST, EVENTS_PATH).await;
    assert_eq!(ev["reason"], "FalcoGraceShortened");
    send.send_response(ok(ev.clone()));
    let (reply, app) = call.await.unwrap();
    assert_eq!(reply.json()["outcome"], "terminating", "{}", reply.json());
    assert!(said(&reply.json(), "reason").contains("grace period was shortened"));
    // Not a new deletion.
    assert!(
        app.metrics
            .encode()
            .contains("falco_responder_deletions_total 0")
    );
    no_more_calls(app, api).await;
}

#[tokio::test]
async fn a_terminating_pod_without_a_shorter_grace_gets_no_second_delete() {
    for vars in [vec![], vec![("GRACE_PERIOD_SECONDS", "3600")]] {
        let (app, mut api) = app(&vars);
        let call = handling(app, event());
        answer_get(&mut api, ok(terminating_pod())).await;
        let (reply, app) = call.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.json()["outcome"], "terminating");
        // Not its deletionTimestamp nor the grace left: those are in the log line.
        assert_eq!(
            said(&reply.json(), "reason"),
            "the pod is already terminating"
        );
        no_more_calls(app, api).await;
    }
}

#[tokio::test]
async fn the_action_outlives_a_caller_that_went_away() {
    let (app, mut api) = app(&[]);
    let app = std::sync::Arc::new(app);
    let call = handling(app.clone(), event());
    // The GET is in flight when the client disconnects (hyper drops the request future).
    let (_, send) = next(&mut api, Method::GET, POD_PATH).await;
    call.abort();
    assert!(call.await.err().is_some_and(|e| e.is_cancelled()));
    send.send_response(ok(live()));
    answer_namespace(&mut api).await;
    // The decided action still runs to its end: DELETE, then the Event.
    answer(&mut api, Method::DELETE, POD_PATH, ok(live())).await;
    let (ev, send) = next(&mut api, Method::POST, EVENTS_PATH).await;
    assert_eq!(ev["reason"], "FalcoPodDeleted");
    send.send_response(ok(ev.clone()));
    app.drain().await;
    let metrics = app.metrics.encode();
    assert!(
        metrics.contains("falco_responder_deletions_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"falco_responder_events_total{input="plain",outcome="deleted"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn our_own_result_coming_back_is_an_empty_2xx_without_any_call() {
    let (app, api) = app(&[]);
    let result = json!({"outcome": "deleted", "reason": "r", "pod": {"namespace": NS, "name": POD, "uid": UID},
        "rule": "Terminal shell in container", "priority": "Critical", "input": "cloudevent-binary"});
    let mut headers = HeaderMap::new();
    for (k, v) in [
        ("ce-specversion", "1.0"),
        ("ce-id", "1"),
        ("ce-source", falco_responder::web::RESULT_CE_SOURCE),
        ("ce-type", falco_responder::web::RESULT_CE_TYPE),
        ("content-type", "application/json"),
    ] {
        headers.insert(k, v.parse().unwrap());
    }
    let reply = app.handle(&headers, result.to_string().as_bytes()).await;
    assert!(reply.status.is_success());
    assert_eq!(reply.json(), Value::Null);
    let rendered = falco_responder::web::render(reply);
    assert!(rendered.status().is_success());
    assert!(rendered.headers().get("ce-type").is_none());
    no_more_calls(app, api).await;
}

/// A forged event that names the pod with another container id is `skipped` (the container is
/// not the pod's). That answer is about the event, not the pod: it must never be reused for the
/// genuine event that proves the pod (its container id matches). Otherwise a process in the pod
/// that keeps posting such events (no AUTH_TOKEN) spares the pod every real Falco event.
#[tokio::test]
async fn an_answer_about_a_forged_event_is_never_reused_for_an_event_that_proves_the_pod() {
    let (app, mut api) = app(&[]);
    let app = std::sync::Arc::new(app);
    let mut forged: Value =
        serde_json::from_str(&terminal_shell(NS, POD, &"0123456789ab".repeat(2))).unwrap();
    // With the pod's own uid: the container still decides.
    forged["output_fields"]["k8smeta.pod.uid"] = json!(UID);
    let call = handling(app.clone(), forged.to_string());
    answer_get(&mut api, ok(live())).await;
    answer(&mut api, Method::POST, EVENTS_PATH, ok(json!({}))).await;
    assert_eq!(call.await.unwrap().0.json()["outcome"], "skipped");

    // The genuine event (container CID) within DEDUP_SECONDS: the pod is looked at and deleted.
    let call = handling(app.clone(), event());
    answer_deletion(&mut api, live()).await;
    let (reply, _) = call.await.unwrap();
    assert_eq!(reply.json()["outcome"], "deleted", "{}", reply.json());
    no_more_calls(app, api).await;
}

/// An event without uid or container id, as k8s_audit events are, at `time`.
fn timed_event(time: &str) -> String {
    let mut ev: Value = serde_json::from_slice(&event()).unwrap();
    ev["output_fields"]["container.id"] = Value::Null;
    ev["time"] = json!(time);
    ev.to_string()
}

/// Two events for one pod name, neither with uid nor container id, differ in time: an old one
/// (replayed, or forged with an old `time`) is `stale` for a pod created after it, a current one
/// is not. Sharing the first one's round trip would answer the current one `stale` too, and the
/// pod would survive a true event.
#[tokio::test]
async fn concurrent_events_that_differ_in_time_do_not_share_a_verdict() {
    let (app, mut api) = app(&[]);
    let app = std::sync::Arc::new(app);
    let mut live = live();
    live["metadata"]["creationTimestamp"] = json!("2026-11-30T09:00:00Z");

    let old = handling(app.clone(), timed_event("2026-11-30T08:00:00Z"));
    // The old event's GET is in flight when the current one arrives.
    let (_, send_old) = next(&mut api, Method::GET, POD_PATH).await;
    let current = handling(app.clone(), timed_event("2026-11-30T09:30:00Z"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    send_old.send_response(ok(live.clone()));
    assert_eq!(old.await.unwrap().0.json()["outcome"], "stale");

    answer_deletion(&mut api, live).await;
    let (reply, _) = current.await.unwrap();
    assert_eq!(reply.json()["outcome"], "deleted", "{}", reply.json());
}

/// The Event's name is `<pod>.<hex>`: for a pod name near the 253-character limit that is no
/// valid object name, the API refuses it and a deletion goes without its Event.
#[tokio::test]
async fn the_event_of_a_pod_with_a_long_name_has_a_valid_name() {
    let (app, mut api) = app(&[]);
    let name = format!("{}-{}", "a".repeat(240), "b".repeat(12));
    assert_eq!(name.len(), 253);
    let path = format!("/api/v1/namespaces/{NS}/pods/{name}");
    let body = terminal_shell(NS, &name, CID);
    let call = handling(app, body);
    let mut live = live();
    live["metadata"]["name"] = json!(name);
    answer(&mut api, Method::GET, &path, ok(live.clone())).await;
    answer_namespace(&mut api).await;
    answer(&mut api, Method::DELETE, &path, ok(live)).await;
    let (ev, send) = next(&mut api, Method::POST, EVENTS_PATH).await;
    let ev_name = ev["metadata"]["name"].as_str().unwrap().to_string();
    send.send_response(ok(ev.clone()));
    assert_eq!(call.await.unwrap().0.json()["outcome"], "deleted");
    assert!(
        falco_responder::domain::ident::PodName::parse("metadata.name", &ev_name).is_ok(),
        "the Event's name is no valid object name ({} characters): {ev_name}",
        ev_name.len()
    );
    assert_eq!(ev["regarding"]["name"], name);
}

#[tokio::test]
async fn a_recent_event_from_a_container_not_reported_yet_is_retried_not_stale() {
    let (app, mut api) = app(&[]);
    let mut ev: Value = serde_json::from_slice(&event()).unwrap();
    // Falco saw the shell a moment ago in a container the kubelet has not reported yet.
    ev["time"] = json!(k8s_openapi::jiff::Timestamp::now().to_string());
    ev["output_fields"]["container.id"] = json!("0123456789ab");
    let body = ev.to_string();
    let call = handling(app, body);
    let mut old = live();
    old["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
    answer_get(&mut api, ok(old)).await;
    let (reply, app) = call.await.unwrap();
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.json()["retry"], true);
    assert!(
        said(&reply.json(), "error").contains("cannot decide yet"),
        "{}",
        reply.json()
    );
    no_more_calls(app, api).await;
}

// --- The deletion breaker's count: what may have happened counts ------------------------------

/// Where the breaker's records live out of a cluster without POD_NAMESPACE.
const RECORDS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/default/events";

/// The app with these settings only (the breaker's defaults stay on).
fn app_with(vars: &[(&str, &str)]) -> (App, ApiHandle) {
    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (
        App::new(config(vars), Some(Client::new(svc, "default"))),
        handle,
    )
}

/// The records as the breaker's LIST returns them (metadata only).
fn records(names: &[String]) -> Response<Body> {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let items: Vec<Value> = names
        .iter()
        .map(|n| {
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                "metadata": {"name": n, "namespace": "default", "creationTimestamp": now}})
        })
        .collect();
    ok(
        json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": "7"}, "items": items}),
    )
}

/// Answers the pod's GET (at `path`) and the breaker's LIST, made together, in either order.
async fn answer_get_and_count(
    handle: &mut ApiHandle,
    path: &str,
    pod: Response<Body>,
    listed: Response<Body>,
) {
    let (mut pod, mut listed) = (Some(pod), Some(listed));
    for _ in 0..2 {
        let (req, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
            .await
            .expect("the pod's GET and the breaker's LIST")
            .unwrap();
        assert_eq!(req.method(), Method::GET, "{}", req.uri());
        if req.uri().path() == RECORDS_PATH {
            let q = req.uri().query().unwrap_or_default().to_string();
            assert!(q.contains("labelSelector=falco-responder"), "{q}");
            send.send_response(listed.take().expect("one LIST"));
        } else {
            assert_eq!(req.uri().path(), path);
            send.send_response(pod.take().expect("one GET"));
        }
    }
}

/// Takes the POSTs of Events made after an answer, in either order: (records, audit Events).
async fn posted(handle: &mut ApiHandle, n: usize) -> Vec<(Value, SendResponse<Response<Body>>)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let (req, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
            .await
            .expect("an Event's POST")
            .unwrap();
        assert_eq!(req.method(), Method::POST, "{}", req.uri());
        let path = req.uri().path().to_string();
        assert!(path == RECORDS_PATH || path == EVENTS_PATH, "{path}");
        let bytes = req.into_body().collect_bytes().await.unwrap();
        out.push((serde_json::from_slice(&bytes).unwrap(), send));
    }
    out
}

fn record_name_of(uid: &str) -> String {
    format!("falco-responder-deleted.{uid}")
}

#[tokio::test]
async fn a_removal_whose_answer_is_lost_counts_once_and_is_recorded() {
    let (app, mut api) = app_with(&[
        ("MAX_DELETIONS", "1/1m"),
        ("MAX_DELETIONS_PER_WORKLOAD", "off"),
    ]);
    let app = std::sync::Arc::new(app);
    // The DELETE is sent and the server fails after it: did the pod go? Unknown.
    let call = handling(app.clone(), event());
    answer_get_and_count(&mut api, POD_PATH, ok(live()), records(&[])).await;
    answer_namespace(&mut api).await;
    let (_, send) = next(&mut api, Method::DELETE, POD_PATH).await;
    send.send_response(status(500, "InternalError", "etcdserver: leader changed"));
    let (reply, _) = call.await.unwrap();
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.json()["retry"], true);
    // ... so it counts: its record is written, under the pod's uid.
    let (record, send) = next(&mut api, Method::POST, RECORDS_PATH).await;
    assert_eq!(record["metadata"]["name"], record_name_of(UID));
    assert_eq!(
        record["metadata"]["labels"]["falco-responder/breaker"],
        "deletion"
    );
    send.send_response(ok(record.clone()));

    // The sender's retry finds the same pod alive: the same removal, not refused by its own
    // first attempt (the budget is 1), and recorded under the same name (409: counted once).
    let call = handling(app.clone(), event());
    let listed = records(&[record_name_of(UID)]);
    answer_get_and_count(&mut api, POD_PATH, ok(live()), listed).await;
    answer(&mut api, Method::DELETE, POD_PATH, ok(live())).await;
    for (body, send) in posted(&mut api, 2).await {
        if body["metadata"]["name"] == record_name_of(UID) {
            send.send_response(status(409, "AlreadyExists", "already exists"));
        } else {
            assert_eq!(body["reason"], "FalcoPodDeleted");
            send.send_response(ok(body.clone()));
        }
    }
    let (reply, _) = call.await.unwrap();
    assert_eq!(reply.json()["outcome"], "deleted", "{}", reply.json());

    // That one removal spent the budget: another pod is refused.
    const OTHER: &str = "1f4a0c1e-0000-4000-8000-000000000002";
    let mut other = live();
    other["metadata"]["name"] = json!("web-2");
    other["metadata"]["uid"] = json!(OTHER);
    let call = handling(app.clone(), terminal_shell(NS, "web-2", CID));
    let listed = records(&[record_name_of(UID)]);
    let path = "/api/v1/namespaces/prod/pods/web-2";
    answer_get_and_count(&mut api, path, ok(other), listed).await;
    let (ev, send) = next(&mut api, Method::POST, EVENTS_PATH).await;
    assert_eq!(ev["reason"], "FalcoBreakerOpen");
    send.send_response(ok(ev.clone()));
    let (reply, _) = call.await.unwrap();
    assert_eq!(reply.json()["outcome"], "breaker-open", "{}", reply.json());
    app.drain().await;
    let metrics = app.metrics.encode();
    assert!(
        metrics.contains("falco_responder_breaker_record_failures_total 0"),
        "{metrics}"
    );
    no_more_calls(app, api).await;
}

#[tokio::test]
async fn a_removal_without_an_answer_in_time_counts_and_a_refused_one_does_not() {
    let (app, mut api) = app_with(&[("API_TIMEOUT_SECONDS", "1"), ("MAX_DELETIONS", "5/1m")]);
    let app = std::sync::Arc::new(app);
    let call = handling(app.clone(), event());
    answer_get_and_count(&mut api, POD_PATH, ok(live()), records(&[])).await;
    answer_namespace(&mut api).await;
    let (_, _never) = next(&mut api, Method::DELETE, POD_PATH).await;
    let (reply, _) = call.await.unwrap();
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    let (record, send) = next(&mut api, Method::POST, RECORDS_PATH).await;
    assert_eq!(record["metadata"]["name"], record_name_of(UID));
    send.send_response(ok(record.clone()));

    // A DELETE the API refused (403) removed nothing: no record.
    let (app, mut api) = app_with(&[("MAX_DELETIONS", "5/1m")]);
    let call = handling(app, event());
    answer_get_and_count(&mut api, POD_PATH, ok(live()), records(&[])).await;
    answer_namespace(&mut api).await;
    let (_, send) = next(&mut api, Method::DELETE, POD_PATH).await;
    send.send_response(status(403, "Forbidden", "pods \"web-1\" is forbidden"));
    let (reply, app) = call.await.unwrap();
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    no_more_calls(app, api).await;
}

#[tokio::test]
async fn a_record_that_cannot_be_written_is_an_error_line_and_a_metric() {
    let logs = Captured::default();
    let _guard = logs.install();
    let (app, mut api) = app_with(&[("MAX_DELETIONS", "5/1m")]);
    let app = std::sync::Arc::new(app);
    let call = handling(app.clone(), event());
    answer_get_and_count(&mut api, POD_PATH, ok(live()), records(&[])).await;
    answer_namespace(&mut api).await;
    answer(&mut api, Method::DELETE, POD_PATH, ok(live())).await;
    for (body, send) in posted(&mut api, 2).await {
        if body["metadata"]["name"] == record_name_of(UID) {
            send.send_response(status(
                403,
                "Forbidden",
                "events.events.k8s.io is forbidden: cannot create resource \"events\" in namespace \"default\"",
            ));
        } else {
            send.send_response(ok(body.clone()));
        }
    }
    assert_eq!(call.await.unwrap().0.json()["outcome"], "deleted");
    app.drain().await;
    let metrics = app.metrics.encode();
    assert!(
        metrics.contains("falco_responder_breaker_record_failures_total 1"),
        "{metrics}"
    );
    let text = logs.text();
    assert!(
        text.contains("ERROR")
            && text.contains("the deletion breaker's record could not be written"),
        "{text}"
    );
    assert!(
        text.contains("prod/web-1") && text.contains("forbidden"),
        "{text}"
    );
}

// --- Refusals are cheap and bounded ------------------------------------------------------------

/// While the overall budget is spent, a storm of forged events for any pods costs nothing more
/// than the first refusal: the GET, the count and one Event; the rest is answered from memory.
#[tokio::test]
async fn a_storm_while_the_overall_breaker_is_open_costs_the_first_refusal_only() {
    let (app, mut api) = app_with(&[
        ("MAX_DELETIONS", "1/1m"),
        ("MAX_DELETIONS_PER_WORKLOAD", "off"),
    ]);
    let app = std::sync::Arc::new(app);
    let call = handling(app.clone(), event());
    let spent = records(&["falco-responder-deleted.earlier".to_string()]);
    answer_get_and_count(&mut api, POD_PATH, ok(live()), spent).await;
    answer_namespace(&mut api).await;
    let (ev, send) = next(&mut api, Method::POST, EVENTS_PATH).await;
    assert_eq!(ev["reason"], "FalcoBreakerOpen");
    send.send_response(ok(ev.clone()));
    assert_eq!(call.await.unwrap().0.json()["outcome"], "breaker-open");

    let mut calls = Vec::new();
    for i in 0..50 {
        calls.push(handling(
            app.clone(),
            terminal_shell(NS, &format!("forged-{i}"), CID),
        ));
    }
    for c in calls {
        let reply = c.await.unwrap().0;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.json()["outcome"], "breaker-open", "{}", reply.json());
        assert!(said(&reply.json(), "reason").contains("the deletion breaker is open"));
    }
    let metrics = app.metrics.encode();
    assert!(
        metrics.contains(r#"falco_responder_suppressed_total{what="pod_get"} 50"#),
        "{metrics}"
    );
    no_more_calls(app, api).await;
}

/// Refusal Events (here the dry run's) are written once per workload and reason per window,
/// however many events repeat them.
#[tokio::test]
async fn repeated_refusals_write_one_event_per_workload_and_reason() {
    let (app, mut api) = app(&[("DRY_RUN", "true"), ("DEDUP_SECONDS", "0")]);
    let app = std::sync::Arc::new(app);
    for i in 0..10 {
        let call = handling(app.clone(), event());
        answer_get(&mut api, ok(live())).await;
        if i == 0 {
            answer_namespace(&mut api).await;
            let (ev, send) = next(&mut api, Method::POST, EVENTS_PATH).await;
            assert_eq!(ev["reason"], "FalcoDryRun");
            send.send_response(ok(ev.clone()));
        }
        assert_eq!(call.await.unwrap().0.json()["outcome"], "dry-run");
    }
    let metrics = app.metrics.encode();
    assert!(
        metrics.contains(r#"falco_responder_suppressed_total{what="refusal_event"} 9"#),
        "{metrics}"
    );
    no_more_calls(app, api).await;
}

/// The pod, claiming StatefulSet `db` (apps/v1) as its controller.
fn owned_by_statefulset() -> Value {
    let mut p = live();
    p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "StatefulSet",
        "name": "db", "uid": "5e7a0c1e-0000-4000-8000-000000000005", "controller": true}]);
    p
}

const STS_PATH: &str = "/apis/apps/v1/namespaces/prod/statefulsets/db";

#[tokio::test]
async fn an_owner_that_cannot_be_read_is_an_error_and_one_that_does_not_exist_is_standalone() {
    // 403: the floor and SKIP_OWNER_KINDS cannot be known; never "standalone".
    let (app, mut api) = app(&[("SKIP_OWNER_KINDS", "StatefulSet")]);
    let call = handling(app, event());
    answer_get(&mut api, ok(owned_by_statefulset())).await;
    answer_namespace(&mut api).await;
    let forbidden = status(403, "Forbidden", "statefulsets.apps \"db\" is forbidden");
    answer(&mut api, Method::GET, STS_PATH, forbidden).await;
    let (reply, app) = call.await.unwrap();
    assert!(reply.status.is_server_error(), "{:?}", reply.json());
    assert!(
        said(&reply.json(), "error").contains("statefulsets"),
        "{}",
        reply.json()
    );
    no_more_calls(app, api).await;

    // 404: a claim, not an owner: standalone, deleted though StatefulSets are skipped.
    let (app, mut api) = self::app(&[("SKIP_OWNER_KINDS", "StatefulSet")]);
    let call = handling(app, event());
    answer_get(&mut api, ok(owned_by_statefulset())).await;
    answer_namespace(&mut api).await;
    let missing = status(404, "NotFound", "statefulsets.apps \"db\" not found");
    answer(&mut api, Method::GET, STS_PATH, missing).await;
    answer(&mut api, Method::DELETE, POD_PATH, ok(live())).await;
    answer(&mut api, Method::POST, EVENTS_PATH, ok(json!({}))).await;
    let (reply, app) = call.await.unwrap();
    assert_eq!(reply.json()["outcome"], "deleted", "{}", reply.json());
    // The reply names the pod as the event did; the workload is in the log line only.
    assert_eq!(reply.json()["pod"], json!({"namespace": NS, "name": POD}));
    no_more_calls(app, api).await;
}

// --- MIN_AVAILABLE's reservations ------------------------------------------------------------

const RS_PATH: &str = "/apis/apps/v1/namespaces/prod/replicasets/web-5d8f";
const DEPLOY_PATH: &str = "/apis/apps/v1/namespaces/prod/deployments/web";
/// The function's own namespace out of a cluster: where the reservations go.
const RESERVATIONS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/default/events";

/// The uid of ReplicaSet web-5d8f: a UUID, as every object's (a claim that is none is never
/// remembered).
const RS_UID: &str = "7a1b0c1e-0000-4000-8000-000000000007";

/// The pod, ready, of ReplicaSet web-5d8f of Deployment web.
fn replica() -> Value {
    replica_claiming(RS_UID)
}

/// The pod, ready, claiming ReplicaSet web-5d8f with this uid.
fn replica_claiming(uid: &str) -> Value {
    let mut p = live();
    p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "name": "web-5d8f", "uid": uid, "controller": true}]);
    p["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
    p
}

/// The pod's GET, its namespace's, its ReplicaSet's (metadata) and its Deployment's (3 desired,
/// `ready` ready).
async fn answer_guards(handle: &mut ApiHandle, ready: i32) {
    answer(handle, Method::GET, POD_PATH, ok(replica())).await;
    answer_namespace(handle).await;
    answer_owner(handle).await;
    answer_replicas(handle, ready).await;
}

/// The ReplicaSet's GET (metadata), once per process: remembered by its uid.
async fn answer_owner(handle: &mut ApiHandle) {
    answer_owner_as(handle, RS_UID).await;
}

/// The ReplicaSet's GET, the ReplicaSet having this uid.
async fn answer_owner_as(handle: &mut ApiHandle, uid: &str) {
    let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web-5d8f",
        "namespace": NS, "uid": uid, "ownerReferences": [{"apiVersion": "apps/v1",
        "kind": "Deployment", "name": "web", "uid": "d-uid", "controller": true}]}});
    answer(handle, Method::GET, RS_PATH, ok(rs)).await;
}

async fn answer_replicas(handle: &mut ApiHandle, ready: i32) {
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web",
        "namespace": NS, "uid": "d-uid"}, "spec": {"replicas": 3, "selector": {}, "template": {}},
        "status": {"readyReplicas": ready}});
    answer(handle, Method::GET, DEPLOY_PATH, ok(d)).await;
}

fn slot_name(slot: u32) -> String {
    use falco_responder::cluster::reservations::{record_name, workload_hash};
    record_name(&workload_hash("prod/Deployment/web"), slot)
}

/// The created record, with a uid and a creation time `ago` seconds back.
fn record(slot: u32, uid: &str, ago: i64) -> Value {
    let at =
        k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(ago);
    json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": slot_name(slot),
        "namespace": "default", "uid": uid, "resourceVersion": "7", "creationTimestamp": at.to_string()},
        "eventTime": at.to_string()})
}

/// Slot 0's create answered 409, then the LIST of the workload's records answered with `held`.
async fn slot_taken(handle: &mut ApiHandle, held: Value) {
    let (_, send) = next(handle, Method::POST, RESERVATIONS_PATH).await;
    send.send_response(status(409, "AlreadyExists", "events \"x\" already exists"));
    let list = json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
        "metadata": {"resourceVersion": "9"}, "items": [held]});
    answer(handle, Method::GET, RESERVATIONS_PATH, ok(list)).await;
}

#[tokio::test]
async fn min_available_reserves_a_slot_with_one_post_before_the_delete() {
    let (app, mut api) = app(&[("MIN_AVAILABLE", "2"), ("POD_NAME", "responder-0")]);
    let call = handling(app, event());
    answer_guards(&mut api, 3).await;
    // 3 ready, floor 2: one slot, slot 0, created under its deterministic name.
    let (rec, send) = next(&mut api, Method::POST, RESERVATIONS_PATH).await;
    assert_eq!(rec["metadata"]["name"], slot_name(0), "{rec}");
    assert_eq!(rec["metadata"]["namespace"], "default");
    let hash = falco_responder::cluster::reservations::workload_hash("prod/Deployment/web");
    assert_eq!(
        rec["metadata"]["labels"],
        json!({"falco-responder/reservation": hash})
    );
    assert_eq!(
        rec["metadata"]["annotations"]["falco-responder/workload"],
        "prod/Deployment/web"
    );
    assert_eq!(rec["reason"], "FalcoDeletionReserved");
    assert!(
        rec["metadata"]["labels"]
            .get("falco-responder/breaker")
            .is_none()
    );
    send.send_response(ok(record(0, "r-0", 0)));
    let (opts, send) = next(&mut api, Method::DELETE, POD_PATH).await;
    assert_eq!(opts["preconditions"]["uid"], UID, "{opts}");
    send.send_response(ok(replica()));
    answer(&mut api, Method::POST, EVENTS_PATH, ok(json!({}))).await;
    let (reply, app) = call.await.unwrap();
    assert_eq!(reply.json()["outcome"], "deleted", "{}", reply.json());
    no_more_calls(app, api).await;
}

#[tokio::test]
async fn every_slot_taken_is_held_after_one_list_without_a_delete() {
    let (app, mut api) = app(&[("MIN_AVAILABLE", "2")]);
    let call = handling(app, event());
    answer_guards(&mut api, 3).await;
    // Slot 0 is another replica's (409); the LIST shows it held 5 s ago: held, retry.
    slot_taken(&mut api, record(0, "r-0", 5)).await;
    // The Warning Event on the pod says why.
    let (ev, send) = next(&mut api, Method::POST, EVENTS_PATH).await;
    assert_eq!(ev["reason"], "FalcoDeleteHeld");
    send.send_response(ok(json!({})));
    let (reply, app) = call.await.unwrap();
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.json()
    );
    assert_eq!(reply.json()["outcome"], "held");
    no_more_calls(app, api).await;
}

#[tokio::test]
async fn an_expired_slot_is_deleted_with_preconditions_and_taken_again() {
    let (app, mut api) = app(&[("MIN_AVAILABLE", "2")]);
    let call = handling(app, event());
    answer_guards(&mut api, 3).await;
    // Its holder died two minutes ago: the record is past its hold.
    slot_taken(&mut api, record(0, "r-old", 120)).await;
    let (opts, send) = next(
        &mut api,
        Method::DELETE,
        &format!("{RESERVATIONS_PATH}/{}", slot_name(0)),
    )
    .await;
    assert_eq!(
        opts["preconditions"],
        json!({"uid": "r-old", "resourceVersion": "7"}),
        "{opts}"
    );
    send.send_response(ok(record(0, "r-old", 120)));
    let (rec, send) = next(&mut api, Method::POST, RESERVATIONS_PATH).await;
    assert_eq!(rec["metadata"]["name"], slot_name(0));
    send.send_response(ok(record(0, "r-new", 0)));
    answer(&mut api, Method::DELETE, POD_PATH, ok(replica())).await;
    answer(&mut api, Method::POST, EVENTS_PATH, ok(json!({}))).await;
    let (reply, app) = call.await.unwrap();
    assert_eq!(reply.json()["outcome"], "deleted", "{}", reply.json());
    no_more_calls(app, api).await;
}

#[tokio::test]
async fn a_removal_that_did_not_happen_gives_its_slot_back() {
    let (app, mut api) = app(&[("MIN_AVAILABLE", "1")]);
    let app = std::sync::Arc::new(app);
    let call = handling(app.clone(), event());
    answer_guards(&mut api, 3).await;
    let (_, send) = next(&mut api, Method::POST, RESERVATIONS_PATH).await;
    send.send_response(ok(record(0, "r-0", 0)));
    let (_, send) = next(&mut api, Method::DELETE, POD_PATH).await;
    send.send_response(status(
        409,
        "Conflict",
        "Precondition failed: UID in precondition",
    ));
    // The record goes, with its own uid as the precondition (never someone else's).
    let (opts, send) = next(
        &mut api,
        Method::DELETE,
        &format!("{RESERVATIONS_PATH}/{}", slot_name(0)),
    )
    .await;
    assert_eq!(opts["preconditions"]["uid"], "r-0", "{opts}");
    send.send_response(ok(record(0, "r-0", 0)));
    let (reply, _) = call.await.unwrap();
    assert_eq!(reply.json()["outcome"], "stale", "{}", reply.json());
    app.drain().await;
    // The slot is free here again: the next event takes slot 0 at once.
    let call = handling(app.clone(), event());
    answer(&mut api, Method::GET, POD_PATH, ok(replica())).await;
    answer_replicas(&mut api, 3).await;
    let (rec, send) = next(&mut api, Method::POST, RESERVATIONS_PATH).await;
    assert_eq!(rec["metadata"]["name"], slot_name(0));
    send.send_response(ok(record(0, "r-1", 0)));
    answer(&mut api, Method::DELETE, POD_PATH, ok(replica())).await;
    answer(&mut api, Method::POST, EVENTS_PATH, ok(json!({}))).await;
    assert_eq!(call.await.unwrap().0.json()["outcome"], "deleted");
}

#[tokio::test]
async fn concurrent_events_in_one_process_share_the_slots_without_a_second_post() {
    // Two pods of one Deployment with one slot between them: the second event is held at once
    // from the local table, while the first one's DELETE is still in flight.
    let (app, mut api) = app(&[("MIN_AVAILABLE", "2")]);
    let app = std::sync::Arc::new(app);
    let first = handling(app.clone(), event());
    answer_guards(&mut api, 3).await;
    let (_, send) = next(&mut api, Method::POST, RESERVATIONS_PATH).await;
    send.send_response(ok(record(0, "r-0", 0)));
    let (_, send_delete) = next(&mut api, Method::DELETE, POD_PATH).await;
    // Another replica of the Deployment, web-2.
    let second = handling(app.clone(), web_2_event());
    answer_web_2(&mut api, 3).await;
    let (ev, send) = next(&mut api, Method::POST, EVENTS_PATH).await;
    assert_eq!(
        ev["reason"], "FalcoDeleteHeld",
        "no POST of a slot: the table said none is free"
    );
    send.send_response(ok(json!({})));
    let (reply, _) = second.await.unwrap();
    assert_eq!(reply.json()["outcome"], "held", "{}", reply.json());
    send_delete.send_response(ok(replica()));
    answer(&mut api, Method::POST, EVENTS_PATH, ok(json!({}))).await;
    assert_eq!(first.await.unwrap().0.json()["outcome"], "deleted");
}

#[tokio::test]
async fn a_removal_whose_answer_was_lost_keeps_its_slot() {
    let (app, mut api) = app(&[("MIN_AVAILABLE", "2"), ("API_TIMEOUT_SECONDS", "1")]);
    let app = std::sync::Arc::new(app);
    let call = handling(app.clone(), event());
    answer_guards(&mut api, 3).await;
    let (_, send) = next(&mut api, Method::POST, RESERVATIONS_PATH).await;
    send.send_response(ok(record(0, "r-0", 0)));
    // The DELETE is sent and never answered: it may have happened.
    let (_, _never) = next(&mut api, Method::DELETE, POD_PATH).await;
    let (reply, _) = call.await.unwrap();
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    app.drain().await;
    // No DELETE of the record: the slot stays held, and the retry is held from the table.
    let call = handling(app.clone(), event());
    answer(&mut api, Method::GET, POD_PATH, ok(replica())).await;
    answer_replicas(&mut api, 3).await;
    let (ev, send) = next(&mut api, Method::POST, EVENTS_PATH).await;
    assert_eq!(ev["reason"], "FalcoDeleteHeld");
    send.send_response(ok(json!({})));
    assert_eq!(call.await.unwrap().0.json()["outcome"], "held");
}

/// The event for web-2, another ready replica of the Deployment.
fn web_2_event() -> String {
    terminal_shell(NS, "web-2", &"ab".repeat(32))
}

/// web-2's GET and the Deployment's (`ready` of 3 ready); its owner is remembered.
async fn answer_web_2(handle: &mut ApiHandle, ready: i32) {
    let mut other = pod(&"ab".repeat(32), json!({}));
    other["metadata"]["name"] = json!("web-2");
    other["metadata"]["uid"] = json!("2f4a0c1e-0000-4000-8000-000000000002");
    other["metadata"]["ownerReferences"] = replica()["metadata"]["ownerReferences"].clone();
    other["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
    let path = "/api/v1/namespaces/prod/pods/web-2";
    answer(handle, Method::GET, path, ok(other)).await;
    answer_replicas(handle, ready).await;
}

#[tokio::test]
async fn a_process_counts_its_own_holds_beyond_the_slots_the_count_allows_now() {
    let (app, mut api) = app(&[("MIN_AVAILABLE", "1")]);
    let app = std::sync::Arc::new(app);
    // 3 ready, floor 1: two slots; slot 0 is another replica's, this process takes slot 1.
    let call = handling(app.clone(), event());
    answer_guards(&mut api, 3).await;
    slot_taken(&mut api, record(0, "r-0", 5)).await;
    let (rec, send) = next(&mut api, Method::POST, RESERVATIONS_PATH).await;
    assert_eq!(rec["metadata"]["name"], slot_name(1));
    send.send_response(ok(record(1, "r-1", 0)));
    answer(&mut api, Method::DELETE, POD_PATH, ok(replica())).await;
    answer(&mut api, Method::POST, EVENTS_PATH, ok(json!({}))).await;
    assert_eq!(call.await.unwrap().0.json()["outcome"], "deleted");
    // The controller counts 2 ready now: one slot, slot 0, which this process does not hold;
    // but its own hold of slot 1 is a deletion in flight too: held, without a call.
    let call = handling(app.clone(), web_2_event());
    answer_web_2(&mut api, 2).await;
    let (ev, send) = next(&mut api, Method::POST, EVENTS_PATH).await;
    assert_eq!(ev["reason"], "FalcoDeleteHeld");
    send.send_response(ok(json!({})));
    assert_eq!(call.await.unwrap().0.json()["outcome"], "held");
}

/// The breaker's LIST when Deployment web's own budget (1/10m) is spent: one record of it now.
fn spent_workload_budget() -> Response<Body> {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    ok(
        json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": "7"}, "items": [{"kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1", "metadata": {"name": "falco-responder-deleted.other",
        "namespace": "default", "creationTimestamp": now, "annotations": {
            "falco-responder/workload": "prod/Deployment/web", "falco-responder/pod": "prod/web-0"}}}]}),
    )
}

/// The owner cache is keyed only by validated identifiers: a claim whose uid is a UUID is looked
/// up once per process, one whose uid is not (a pod author's string) is looked up every time
/// and never becomes a key. A refusal by the breaker is not remembered for the pod either: the
/// second event looks at the pod again (its GET, the count), though not at its namespace
/// (remembered 5 s) nor, for the same workload within a minute, with another Event.
#[tokio::test]
async fn an_owner_claim_is_remembered_only_when_its_uid_is_a_uuid() {
    for (uid, looked_up_again) in [(RS_UID, false), ("rs-uid", true)] {
        let (app, mut api) = app_with(&[
            ("MAX_DELETIONS_PER_WORKLOAD", "1/10m"),
            ("MAX_DELETIONS", "off"),
        ]);
        let mut app = app;
        for round in 0..2 {
            let call = handling(app, event());
            answer_get_and_count(
                &mut api,
                POD_PATH,
                ok(replica_claiming(uid)),
                spent_workload_budget(),
            )
            .await;
            if round == 0 {
                answer_namespace(&mut api).await;
            }
            if round == 0 || looked_up_again {
                answer_owner_as(&mut api, uid).await;
            }
            if round == 0 {
                answer(&mut api, Method::POST, EVENTS_PATH, ok(json!({}))).await;
            }
            let (reply, back) = call.await.unwrap();
            let v = reply.json();
            assert_eq!(v["outcome"], "breaker-open", "{uid} round {round}: {v}");
            app = back;
        }
        no_more_calls(app, api).await;
    }
}

/// `breaker-open` is the breaker's state, not the pod's: once the records no longer spend the
/// budget, the same pod's next event (within DEDUP_SECONDS) is acted on, not answered from
/// memory.
#[tokio::test]
async fn a_breaker_open_answer_is_not_replayed_once_the_breaker_closes() {
    let (app, mut api) = app_with(&[
        ("MAX_DELETIONS_PER_WORKLOAD", "1/10m"),
        ("MAX_DELETIONS", "off"),
    ]);
    let spent = spent_workload_budget();
    let call = handling(app, event());
    answer_get_and_count(&mut api, POD_PATH, ok(replica()), spent).await;
    answer_namespace(&mut api).await;
    answer_owner(&mut api).await;
    answer(&mut api, Method::POST, EVENTS_PATH, ok(json!({}))).await;
    let (reply, app) = call.await.unwrap();
    assert_eq!(reply.json()["outcome"], "breaker-open", "{}", reply.json());
    // The record was deleted (an administrator reset the breaker): the budget is free again.
    let call = handling(app, event());
    answer_get_and_count(&mut api, POD_PATH, ok(replica()), records(&[])).await;
    answer(&mut api, Method::DELETE, POD_PATH, ok(replica())).await;
    for (_, send) in posted(&mut api, 2).await {
        send.send_response(ok(json!({})));
    }
    let (reply, app) = call.await.unwrap();
    assert_eq!(reply.json()["outcome"], "deleted", "{}", reply.json());
    no_more_calls(app, api).await;
}

/// While a workload's own budget is spent, an event for one of its pods is refused on the count
/// read alongside the pod's GET: the breaker is asked before the floor, so no GET of the
/// workload's replicas (the owner's GET is remembered per process).
#[tokio::test]
async fn a_spent_workload_budget_refuses_before_the_floors_get() {
    let (app, mut api) = app_with(&[
        ("MIN_AVAILABLE", "1"),
        ("MAX_DELETIONS_PER_WORKLOAD", "1/10m"),
        ("MAX_DELETIONS", "off"),
    ]);
    let call = handling(app, event());
    let spent = spent_workload_budget();
    answer_get_and_count(&mut api, POD_PATH, ok(replica()), spent).await;
    answer_namespace(&mut api).await;
    answer_owner(&mut api).await;
    let ev = answer(&mut api, Method::POST, EVENTS_PATH, ok(json!({}))).await;
    assert_eq!(ev["reason"], "FalcoBreakerOpen", "{ev}");
    let (reply, app) = call.await.unwrap();
    assert_eq!(reply.json()["outcome"], "breaker-open", "{}", reply.json());
    no_more_calls(app, api).await;
}

// ---- ACTION=contain: the exact calls of a containment ----

const POLICIES_PATH: &str = "/apis/networking.k8s.io/v1/namespaces/prod/networkpolicies";
const LOG_PATH: &str = "/api/v1/namespaces/prod/pods/web-1/log";
/// The function's own namespace out of a cluster (POD_NAMESPACE unset): `default`.
const CONFIGMAPS_PATH: &str = "/api/v1/namespaces/default/configmaps";

fn policy_name() -> String {
    format!("falco-responder-contain-{UID}")
}

fn evidence_name() -> String {
    format!("falco-responder-evidence-{UID}")
}

/// A Deployment's pod as its ReplicaSet selects it, started ten minutes ago.
fn selected_replica() -> Value {
    let mut p = replica();
    p["metadata"]["labels"] = json!({"app": "web", "pod-template-hash": "5d8f", "tier": "front"});
    let started =
        k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(600);
    p["status"]["startTime"] = json!(started.to_string());
    p
}

/// The ReplicaSet whole, its selector on `app` and `pod-template-hash`.
fn replicaset_whole() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web-5d8f",
        "namespace": NS, "uid": RS_UID}, "spec": {"selector": {"matchLabels":
        {"app": "web", "pod-template-hash": "5d8f"}}, "template": {}}})
}

/// Our NetworkPolicy, as the API returns it.
fn our_policy() -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {
        "name": policy_name(), "namespace": NS, "ownerReferences": [{"apiVersion": "v1",
        "kind": "Pod", "name": POD, "uid": UID}]}, "spec": {"podSelector": {"matchLabels":
        {"falco-responder/contained": UID}}, "policyTypes": ["Ingress", "Egress"]}})
}

fn configmap_list(names: &[(&str, &str)]) -> Response<Body> {
    let items: Vec<Value> = names
        .iter()
        .map(|(n, at)| {
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                "metadata": {"name": n, "namespace": "default", "creationTimestamp": at}})
        })
        .collect();
    ok(
        json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": "9"}, "items": items}),
    )
}

/// The next call: method, path and query, and its body as sent (bytes, header).
async fn next_call(
    handle: &mut ApiHandle,
    method: Method,
    path: &str,
) -> (String, Vec<u8>, HeaderMap, SendResponse<Response<Body>>) {
    let (req, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .unwrap_or_else(|_| panic!("expected {method} {path}, but no request came"))
        .expect("service dropped");
    assert_eq!(req.method(), method, "{}", req.uri());
    assert_eq!(req.uri().path(), path, "{}", req.uri());
    let query = req.uri().query().unwrap_or_default().to_string();
    let headers = req.headers().clone();
    let bytes = req.into_body().collect_bytes().await.unwrap().to_vec();
    (query, bytes, headers, send)
}

fn contain_app(vars: &[(&str, &str)]) -> (App, ApiHandle) {
    app(&[&[("ACTION", "contain")][..], vars].concat())
}

/// The calls up to the containment's first write: the pod, its namespace, its ReplicaSet's
/// metadata (the owner, proven) and the ReplicaSet whole (its selector).
async fn answer_up_to_isolation(api: &mut ApiHandle, pod: Value) {
    answer(api, Method::GET, POD_PATH, ok(pod)).await;
    answer_namespace(api).await;
    answer_owner(api).await;
    answer(api, Method::GET, RS_PATH, ok(replicaset_whole())).await;
}

#[tokio::test]
async fn a_containment_isolates_then_labels_releases_and_sets_the_deadline_then_keeps_the_logs() {
    let (app, mut api) =
        contain_app(&[("CONTAIN_SECONDS", "3600"), ("EVIDENCE_LOG_BYTES", "1024")]);
    let call = handling(app, event());
    answer_up_to_isolation(&mut api, selected_replica()).await;

    // 1. The isolation: a deny-all policy selecting the uid label, owned by the pod.
    let (np, send) = next(&mut api, Method::POST, POLICIES_PATH).await;
    assert_eq!(np["metadata"]["name"], policy_name());
    assert_eq!(
        np["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "falco-responder"
    );
    assert_eq!(
        np["metadata"]["ownerReferences"],
        json!([{"apiVersion": "v1", "kind": "Pod", "name": POD, "uid": UID}])
    );
    assert_eq!(
        np["spec"],
        json!({"podSelector": {"matchLabels": {"falco-responder/contained": UID}},
            "policyTypes": ["Ingress", "Egress"]})
    );
    send.send_response(ok(np.clone()));

    // 2. One JSON patch, the uid tested first: the label, the release, the deadline.
    let (_, body, headers, send) = next_call(&mut api, Method::PATCH, POD_PATH).await;
    assert_eq!(headers["content-type"], "application/json-patch+json");
    let patch: Value = serde_json::from_slice(&body).unwrap();
    let ops = patch.as_array().unwrap();
    assert_eq!(
        ops[0],
        json!({"op": "test", "path": "/metadata/uid", "value": UID})
    );
    assert_eq!(
        ops[1],
        json!({"op": "add", "path": "/metadata/labels/falco-responder~1contained", "value": UID})
    );
    assert_eq!(
        ops[2],
        json!({"op": "test", "path": "/metadata/labels/app", "value": "web"})
    );
    assert_eq!(
        ops[3],
        json!({"op": "remove", "path": "/metadata/labels/app"})
    );
    assert_eq!(
        ops[5],
        json!({"op": "remove", "path": "/metadata/labels/pod-template-hash"})
    );
    // The pod had annotations (`{}`): the record goes in beside them.
    assert_eq!(
        ops[6],
        json!({"op": "add", "path": "/metadata/annotations/falco-responder~1released-labels",
            "value": r#"{"app":"web","pod-template-hash":"5d8f"}"#})
    );
    assert_eq!(ops[7]["path"], "/spec/activeDeadlineSeconds");
    let d = ops[7]["value"].as_i64().unwrap();
    assert!((4199..=4202).contains(&d), "600 s ran + 3600: {d}");
    assert_eq!(ops.len(), 8, "{patch}");
    send.send_response(ok(selected_replica()));

    // 3. The log's tail (tailLines, never limitBytes), then the ConfigMap, then retention.
    let (query, _, _, send) = next_call(&mut api, Method::GET, LOG_PATH).await;
    assert!(
        query.contains("container=c") && query.contains("tailLines=128"),
        "{query}"
    );
    assert!(!query.contains("limitBytes"), "{query}");
    let log = format!("{}the newest line\n", "x".repeat(4000));
    send.send_response(Response::new(Body::from(log.into_bytes())));
    let (cm, send) = next(&mut api, Method::POST, CONFIGMAPS_PATH).await;
    assert_eq!(cm["metadata"]["name"], evidence_name());
    assert_eq!(cm["metadata"]["labels"]["falco-responder/evidence"], "true");
    assert_eq!(
        cm["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "falco-responder"
    );
    let notes = &cm["metadata"]["annotations"];
    assert_eq!(notes["falco-responder/pod-namespace"], NS);
    assert_eq!(notes["falco-responder/pod-name"], POD);
    assert_eq!(notes["falco-responder/pod-uid"], UID);
    assert_eq!(notes["falco-responder/rule"], "Terminal shell in container");
    assert!(
        notes["falco-responder/contained-at"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    let kept = cm["data"]["c.log"].as_str().unwrap();
    assert_eq!(kept.len(), 1024);
    assert!(
        kept.ends_with("the newest line\n"),
        "the tail, not the head"
    );
    send.send_response(ok(cm.clone()));
    let (query, _, _, send) = next_call(&mut api, Method::GET, CONFIGMAPS_PATH).await;
    assert!(
        query.contains("labelSelector=falco-responder%2Fevidence%3Dtrue"),
        "{query}"
    );
    send.send_response(configmap_list(&[(
        &evidence_name(),
        "2026-12-06T10:00:00Z",
    )]));

    // 4. The Warning Event names the steps.
    let (ev, send) = next(&mut api, Method::POST, EVENTS_PATH).await;
    assert_eq!(ev["reason"], "FalcoPodContained");
    assert_eq!(ev["action"], "Contain");
    assert_eq!(ev["type"], "Warning");
    let note = ev["note"].as_str().unwrap();
    assert!(
        note.contains(&policy_name()) && note.contains(&evidence_name()),
        "{note}"
    );
    assert!(
        note.contains("web-5d8f") && note.contains("3600s"),
        "{note}"
    );
    send.send_response(ok(ev.clone()));

    let (reply, app) = call.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["outcome"], "contained");
    assert_eq!(
        body["steps"],
        json!(["isolated", "released", "evidence", "deadline"])
    );
    assert!(!body.to_string().contains(UID), "{body}");
    let metrics = app.metrics.encode();
    assert!(metrics.contains(r#"outcome="contained""#), "{metrics}");
    assert!(
        metrics.contains(r#"falco_responder_contain_steps_total{step="released"} 1"#),
        "{metrics}"
    );
    no_more_calls(app, api).await;
}

#[tokio::test]
async fn a_contained_pod_costs_three_reads_and_no_write() {
    let (app, mut api) = contain_app(&[]);
    let mut pod = selected_replica();
    pod["metadata"]["labels"] = json!({"tier": "front", "falco-responder/contained": UID});
    let call = handling(app, event());
    answer(&mut api, Method::GET, POD_PATH, ok(pod)).await;
    answer(
        &mut api,
        Method::GET,
        &format!("{POLICIES_PATH}/{}", policy_name()),
        ok(our_policy()),
    )
    .await;
    let (query, _, _, send) = next_call(&mut api, Method::GET, CONFIGMAPS_PATH).await;
    assert!(
        query.contains(&format!(
            "fieldSelector=metadata.name%3D{}",
            evidence_name()
        )),
        "{query}"
    );
    send.send_response(configmap_list(&[(
        &evidence_name(),
        "2026-12-06T10:00:00Z",
    )]));
    let (reply, app) = call.await.unwrap();
    assert_eq!(reply.json()["outcome"], "contained");
    assert_eq!(reply.json()["steps"], json!([]));
    no_more_calls(app, api).await;
}

#[tokio::test]
async fn without_rbac_for_networkpolicies_the_pod_is_neither_labelled_nor_released() {
    let (app, mut api) = contain_app(&[]);
    let call = handling(app, event());
    answer_up_to_isolation(&mut api, selected_replica()).await;
    answer(
        &mut api,
        Method::POST,
        POLICIES_PATH,
        status(
            403,
            "Forbidden",
            "networkpolicies.networking.k8s.io is forbidden",
        ),
    )
    .await;
    let (reply, app) = call.await.unwrap();
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    let error = reply.json()["error"].as_str().unwrap().to_string();
    assert!(error.contains("networkpolicies"), "{error}");
    // No PATCH, no evidence, no Event.
    no_more_calls(app, api).await;
}

#[tokio::test]
async fn a_policy_of_our_name_that_is_not_ours_stops_the_containment_before_the_label() {
    let (app, mut api) = contain_app(&[]);
    let call = handling(app, event());
    answer_up_to_isolation(&mut api, selected_replica()).await;
    answer(
        &mut api,
        Method::POST,
        POLICIES_PATH,
        status(409, "AlreadyExists", "exists"),
    )
    .await;
    // Read back: it allows all ingress.
    let mut forged = our_policy();
    forged["spec"]["ingress"] = json!([{}]);
    answer(
        &mut api,
        Method::GET,
        &format!("{POLICIES_PATH}/{}", policy_name()),
        ok(forged),
    )
    .await;
    let (reply, app) = call.await.unwrap();
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("refusing to contain")
    );
    no_more_calls(app, api).await;
}

#[tokio::test]
async fn a_failed_uid_test_is_stale_and_nothing_more_is_written() {
    let (app, mut api) = contain_app(&[]);
    let call = handling(app, event());
    answer_up_to_isolation(&mut api, selected_replica()).await;
    answer(&mut api, Method::POST, POLICIES_PATH, ok(our_policy())).await;
    let (_, _, _, send) = next_call(&mut api, Method::PATCH, POD_PATH).await;
    send.send_response(status(422, "Invalid", "the server rejected our request"));
    // The pod is read again: another uid under the name now.
    let mut replaced = live();
    replaced["metadata"]["uid"] = json!("7c1d9e2f-aaaa-bbbb-cccc-ddddeeeeffff");
    answer(&mut api, Method::GET, POD_PATH, ok(replaced)).await;
    let (reply, app) = call.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["outcome"], "stale");
    no_more_calls(app, api).await;
}

#[tokio::test]
async fn a_patch_refused_on_the_same_pod_is_retried_and_nothing_more_is_written() {
    let (app, mut api) = contain_app(&[]);
    let call = handling(app, event());
    answer_up_to_isolation(&mut api, selected_replica()).await;
    answer(&mut api, Method::POST, POLICIES_PATH, ok(our_policy())).await;
    let (_, _, _, send) = next_call(&mut api, Method::PATCH, POD_PATH).await;
    send.send_response(status(422, "Invalid", "the server rejected our request"));
    // Read again, the pod is the same one (a label the release tests changed meanwhile):
    // not contained, so the sender must retry.
    answer(&mut api, Method::GET, POD_PATH, ok(selected_replica())).await;
    let (reply, app) = call.await.unwrap();
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.json()["retry"], true);
    no_more_calls(app, api).await;
}

#[tokio::test]
async fn an_unreadable_log_is_said_in_the_evidence_and_the_oldest_evidence_goes() {
    let (app, mut api) = contain_app(&[("EVIDENCE_MAX_CONFIGMAPS", "1")]);
    let call = handling(app, event());
    // A bare pod: no release, no ReplicaSet read.
    let mut pod = live();
    pod["metadata"]["labels"] = json!({"app": "web"});
    answer(&mut api, Method::GET, POD_PATH, ok(pod.clone())).await;
    answer_namespace(&mut api).await;
    answer(&mut api, Method::POST, POLICIES_PATH, ok(our_policy())).await;
    let (_, body, _, send) = next_call(&mut api, Method::PATCH, POD_PATH).await;
    let patch: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        patch.as_array().unwrap().len(),
        2,
        "uid test and label only: {patch}"
    );
    send.send_response(ok(pod));
    let (_, _, _, send) = next_call(&mut api, Method::GET, LOG_PATH).await;
    send.send_response(status(
        400,
        "BadRequest",
        "pod web-1 does not have a host assigned",
    ));
    let (cm, send) = next(&mut api, Method::POST, CONFIGMAPS_PATH).await;
    let unread = cm["data"]["unread.txt"].as_str().unwrap();
    assert!(
        unread.starts_with("c: 400") && unread.contains("host assigned"),
        "{unread}"
    );
    assert!(cm["data"].get("c.log").is_none());
    send.send_response(ok(cm.clone()));
    let (_, _, _, send) = next_call(&mut api, Method::GET, CONFIGMAPS_PATH).await;
    send.send_response(configmap_list(&[
        (&evidence_name(), "2026-12-06T10:00:00Z"),
        ("falco-responder-evidence-older", "2026-12-01T10:00:00Z"),
    ]));
    answer(
        &mut api,
        Method::DELETE,
        &format!("{CONFIGMAPS_PATH}/falco-responder-evidence-older"),
        ok(json!({"kind": "Status", "apiVersion": "v1", "status": "Success"})),
    )
    .await;
    let (ev, send) = next(&mut api, Method::POST, EVENTS_PATH).await;
    assert!(
        ev["note"].as_str().unwrap().contains("could not read: c"),
        "{ev}"
    );
    send.send_response(ok(ev.clone()));
    let (reply, app) = call.await.unwrap();
    assert_eq!(reply.json()["outcome"], "contained");
    assert_eq!(reply.json()["steps"], json!(["isolated", "evidence"]));
    no_more_calls(app, api).await;
}

#[tokio::test]
async fn a_containment_counts_once_its_patch_may_have_happened_and_not_before() {
    let (app, mut api) = app_with(&[
        ("ACTION", "contain"),
        ("MAX_DELETIONS", "1/1m"),
        ("MAX_DELETIONS_PER_WORKLOAD", "off"),
    ]);
    let app = std::sync::Arc::new(app);
    // Refused at the isolation: the pod was not touched, nothing counts.
    let call = handling(app.clone(), event());
    answer_get_and_count(&mut api, POD_PATH, ok(live()), records(&[])).await;
    answer_namespace(&mut api).await;
    answer(
        &mut api,
        Method::POST,
        POLICIES_PATH,
        status(403, "Forbidden", "no"),
    )
    .await;
    let (reply, _) = call.await.unwrap();
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    // The patch's answer lost: it may have labelled and released the pod, so it counts.
    let call = handling(app.clone(), event());
    answer_get_and_count(&mut api, POD_PATH, ok(live()), records(&[])).await;
    answer(&mut api, Method::POST, POLICIES_PATH, ok(our_policy())).await;
    let (_, _, _, send) = next_call(&mut api, Method::PATCH, POD_PATH).await;
    send.send_response(status(500, "InternalError", "etcdserver: leader changed"));
    let (reply, _) = call.await.unwrap();
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    let (record, send) = next(&mut api, Method::POST, RECORDS_PATH).await;
    assert_eq!(record["metadata"]["name"], record_name_of(UID));
    assert!(
        record["note"]
            .as_str()
            .unwrap()
            .starts_with("contained pod prod/web-1"),
        "{record}"
    );
    send.send_response(ok(record.clone()));
    app.drain().await;
    no_more_calls(app, api).await;
}
