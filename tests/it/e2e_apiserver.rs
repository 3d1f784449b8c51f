//! End to end against a real kube-apiserver + etcd (`testkit::scene`), running the real
//! `falco-responder` binary: real authentication, RBAC, preconditions and graceful deletion.

use std::{path::Path, time::Duration};

use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api,
    api::{DeleteParams, ListParams},
};
use serde_json::json;

use crate::testkit::binary;
use crate::testkit::scene::Scene;
use crate::testkit::sender::{self, ENVELOPES, Envelope, said, terminal_shell};

const CID: &str = "6ac7d190134e0123456789abcdef0123456789abcdef0123456789abcdef0123";
const OTHER_CID: &str = "5892b41bcf460123456789abcdef0123456789abcdef0123456789abcdef0123";

#[tokio::test]
async fn the_blog_scenario_in_every_input_shape() {
    let first = Scene::new("blog").await;
    let responder = first.responder(&[]).await;
    for &envelope in ENVELOPES {
        let scene = first.beside("blog").await;
        let created = scene.pod("alpine", CID).await;
        let r = responder
            .send(envelope, &terminal_shell(&scene.ns, "alpine", CID))
            .await;
        assert_eq!(
            r.status,
            200,
            "{envelope:?}: {}\n{}",
            String::from_utf8_lossy(&r.body),
            responder.logs()
        );
        let result = responder.result(&r);
        assert_eq!(result["outcome"], "deleted", "{envelope:?}: {result}");
        // The live uid is in the log line, never in the reply.
        let uid = created.metadata.uid.clone().unwrap();
        assert!(!result.to_string().contains(&uid), "{envelope:?}: {result}");
        assert!(
            responder
                .line_of(&result)
                .await
                .contains(&format!("uid={uid}")),
            "{envelope:?}"
        );
        assert_eq!(result["input"], envelope.input_kind());
        // spec.nodeName is set, so deletion is graceful as with a kubelet: Terminating.
        assert!(
            scene.terminating("alpine").await,
            "{envelope:?}: pod not terminating"
        );
        let events = scene.wait_events("alpine", 1).await;
        assert_eq!(events.len(), 1, "{envelope:?}: {events:?}");
        let e = &events[0];
        assert_eq!(e.reason.as_deref(), Some("FalcoPodDeleted"));
        assert_eq!(e.reporting_controller.as_deref(), Some("falco-responder"));
        assert!(
            e.note
                .as_deref()
                .unwrap()
                .contains("Terminal shell in container"),
            "{e:?}"
        );
        assert_eq!(e.regarding.as_ref().unwrap().uid, created.metadata.uid);
    }
}

#[tokio::test]
async fn the_shipped_rbac_is_sufficient_and_nothing_else_is_granted() {
    // The function's own namespace, with the ServiceAccount and bindings exactly as shipped.
    let home = Scene::new("responder").await;
    let applied = home.apply("knative/rbac.yaml").await;
    assert!(
        applied.iter().any(|a| a.starts_with("ServiceAccount/")),
        "{applied:?}"
    );
    let (token, kubeconfig) = home.service_account_kubeconfig("falco-responder").await;

    let scene = home.beside("victims").await;
    scene.pod("alpine", CID).await;
    let responder = scene
        .responder_as(&kubeconfig, &[("POD_NAMESPACE", &home.ns)])
        .await;
    let r = scene.shell(&responder, "alpine", CID).await;
    assert_eq!(
        responder.result(&r)["outcome"],
        "deleted",
        "{}",
        responder.logs()
    );
    assert!(scene.terminating("alpine").await);
    let events = scene.wait_events("alpine", 1).await;
    assert_eq!(events.len(), 1, "events need their own RBAC rule");

    // Minimal: the same ServiceAccount may not list pods or touch anything else.
    let as_sa = scene.server().client_for_token(&token).await;
    let list = Api::<Pod>::namespaced(as_sa.clone(), &scene.ns)
        .list(&ListParams::default())
        .await;
    assert!(
        matches!(list, Err(kube::Error::Api(s)) if s.code == 403),
        "list pods must be forbidden"
    );
    let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(as_sa, &scene.ns)
        .list(&ListParams::default())
        .await;
    assert!(matches!(secrets, Err(kube::Error::Api(s)) if s.code == 403));
}

#[tokio::test]
async fn without_the_binding_it_is_a_5xx_naming_the_service_account() {
    let home = Scene::new("norbac").await;
    let (_, kubeconfig) = home.service_account_kubeconfig("falco-responder").await;
    let scene = home.beside("victims").await;
    scene.pod("alpine", CID).await;
    // No rights at all: with the breaker on it would not become ready (its records cannot be
    // written, e2e_breaker); here the pod calls.
    let off = [("MAX_DELETIONS_PER_WORKLOAD", "off")];
    let responder = scene.responder_as(&kubeconfig, &off).await;
    let r = scene.shell(&responder, "alpine", CID).await;
    assert_eq!(r.status, 500, "{}", String::from_utf8_lossy(&r.body));
    // The reply says what to grant; the log line names the ServiceAccount and the namespace.
    let err = said(&r.json(), "error").to_string();
    assert!(
        err.contains("forbidden") && err.contains("get on pods"),
        "{err}"
    );
    assert!(!err.contains(&home.ns), "{err}");
    let account = format!("system:serviceaccount:{}:falco-responder", home.ns);
    let logs = responder.logs_with(&account).await;
    let line = logs
        .lines()
        .find(|l| l.contains("could not act on event"))
        .unwrap_or_else(|| panic!("no error line in:\n{logs}"));
    assert!(
        line.contains(&account) && line.contains(&scene.ns),
        "{line}"
    );
    assert!(scene.untouched("alpine").await);
    // The log keeps the whole event for a replay.
    let logs = responder.logs_with("output_fields").await;
    assert!(logs.contains("output_fields"), "{logs}");
}

#[tokio::test]
async fn a_recreated_pod_with_the_same_name_is_left_alone() {
    let scene = Scene::new("stale").await;
    // StatefulSet-style: web-0 is replaced by a new web-0 with another container.
    scene.pod("web-0", CID).await;
    scene
        .pods()
        .delete("web-0", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let new = scene.pod("web-0", OTHER_CID).await;
    let responder = scene.responder(&[]).await;
    let r = scene
        .shell_as(&responder, Envelope::CloudEventBinary, "web-0", CID)
        .await;
    let result = responder.result(&r);
    assert_eq!(result["outcome"], "stale", "{result}");
    let uid = new.metadata.uid.clone().unwrap();
    assert!(!result.to_string().contains(&uid), "{result}");
    assert!(responder.line_of(&result).await.contains(&uid));
    assert!(scene.untouched("web-0").await);
}

#[tokio::test]
async fn protected_own_namespace_annotation_and_dry_run_leave_pods_untouched() {
    let scene = Scene::new("guard").await;
    scene.pod("alpine", CID).await;
    scene
        .annotated_pod("keep", CID, &[("falco-responder/protect", "true")])
        .await;
    let event = terminal_shell(&scene.ns, "alpine", CID);

    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: [Case; 3] = [
        (
            "protected",
            vec![("PROTECTED_NAMESPACES", scene.ns.as_str())],
            "skipped",
        ),
        (
            "own namespace",
            vec![("POD_NAMESPACE", scene.ns.as_str())],
            "skipped",
        ),
        ("dry run", vec![("DRY_RUN", "true")], "dry-run"),
    ];
    // Kept running to the end: the dry run's Event is recorded just after its answer, and
    // dropping a responder kills it.
    let mut running = Vec::new();
    for (what, env, outcome) in cases {
        let responder = scene.responder(&env).await;
        let result = responder.result(&responder.send(Envelope::Plain, &event).await);
        assert_eq!(result["outcome"], outcome, "{what}: {result}");
        assert!(scene.untouched("alpine").await, "{what}");
        running.push(responder);
    }
    // The annotation is the pod author's word: honoured only when the deployer trusts them.
    let responder = scene
        .responder(&[("TRUST_PROTECT_ANNOTATION", "true")])
        .await;
    let result = responder.result(&scene.shell(&responder, "keep", CID).await);
    assert_eq!(result["outcome"], "skipped", "{result}");
    assert!(scene.untouched("keep").await);
    // Only the dry run left a trace: a FalcoDryRun Event, no deletion.
    let events = scene.wait_events("alpine", 1).await;
    let reasons: Vec<_> = events
        .iter()
        .map(|e| e.reason.clone().unwrap_or_default())
        .collect();
    assert_eq!(reasons, ["FalcoDryRun"]);
}

#[tokio::test]
async fn a_missing_pod_is_gone() {
    let scene = Scene::new("gone").await;
    let responder = scene.responder(&[]).await;
    let r = scene.shell(&responder, "never-existed", CID).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["outcome"], "gone");
}

#[tokio::test]
async fn api_server_down_is_503_and_recovery_needs_no_restart() {
    // A private API server: this test stops it.
    let scene = Scene::private("outage").await;
    scene.pod("first", CID).await;
    scene.pod("second", CID).await;
    let responder = scene.responder(&[("API_TIMEOUT_SECONDS", "3")]).await;

    scene.server().stop_apiserver();
    let r = scene
        .shell_as(&responder, Envelope::CloudEventBinary, "first", CID)
        .await;
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        r.headers.get("ce-type").is_none(),
        "an error, not a reply event"
    );

    scene.server().restart_apiserver();
    let scene = scene.reconnected().await;
    assert!(scene.untouched("first").await);
    // The sender's retry now succeeds against the same process.
    let r = scene
        .shell_as(&responder, Envelope::CloudEventBinary, "first", CID)
        .await;
    assert_eq!(
        responder.result(&r)["outcome"],
        "deleted",
        "{}",
        responder.logs()
    );
    let r = scene.shell(&responder, "second", CID).await;
    assert_eq!(r.json()["outcome"], "deleted");
    assert!(scene.terminating("second").await);
}

async fn run_once(
    kubeconfig: &Path,
    args: &[&str],
    body_env: Option<&str>,
    stdin: Option<&[u8]>,
) -> (i32, String) {
    use std::process::Stdio;
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::from(binary::command());
    cmd.args(args)
        .env("KUBECONFIG", kubeconfig)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(b) = body_env {
        cmd.env("BODY", b);
    }
    let mut child = cmd.spawn().unwrap();
    let mut sin = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        sin.write_all(bytes).await.unwrap();
    }
    drop(sin);
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.trim().starts_with('{'),
        "stdout must be the JSON result only: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), stdout)
}

#[tokio::test]
async fn one_shot_mode_as_an_argo_workflow_step() {
    let scene = Scene::new("workflow").await;
    let kc = scene.kubeconfig();
    scene.pod("alpine", CID).await;
    scene.pod("piped", CID).await;

    // The WorkflowTemplate passes the whole Argo event as env BODY; the image runs with no args.
    let falco: serde_json::Value =
        serde_json::from_str(&terminal_shell(&scene.ns, "alpine", CID)).unwrap();
    let body = sender::argo_whole_event(&falco, false).to_string();
    let (code, out) = run_once(&kc, &[], Some(&body), None).await;
    assert_eq!(code, 0, "{out}");
    let result: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(result["outcome"], "deleted");
    assert_eq!(result["input"], "argo-event");
    assert!(scene.terminating("alpine").await);

    // `once` reading stdin.
    let (code, out) = run_once(
        &kc,
        &["once"],
        None,
        Some(terminal_shell(&scene.ns, "piped", CID).as_bytes()),
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(scene.terminating("piped").await);

    // A pod already gone: still success; garbage: non-zero.
    let (code, _) = run_once(&kc, &["once"], Some(&body), None).await;
    assert_eq!(code, 0);
    let (code, out) = run_once(&kc, &["once"], Some(r#"{"hello":1,"x":2}"#), None).await;
    assert_eq!(
        code, 2,
        "bad input: the documented exit code 2 (do not retry)"
    );
    assert!(out.contains("not a Falco event"));

    // The API unreachable: exit 1, so that the Workflow's retryStrategy retries the step.
    let port = binary::closed_port().port();
    let dir = tempfile::tempdir().unwrap();
    let unreachable = dir.path().join("kubeconfig");
    let text = std::fs::read_to_string(&kc)
        .unwrap()
        .replace(&scene.server().url(), &format!("https://127.0.0.1:{port}"));
    assert!(text.contains(&format!(":{port}")), "{text}");
    std::fs::write(&unreachable, text).unwrap();
    scene.pod("unreached", CID).await;
    let event = terminal_shell(&scene.ns, "unreached", CID);
    let (code, out) = run_once(&unreachable, &["once"], Some(&event), None).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("\"retry\":true"), "{out}");
    assert!(scene.untouched("unreached").await);
}

/// A TCP relay to `to` that counts the connections it accepts (TLS passes through it).
async fn counting_relay(
    to: u16,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::{Arc, atomic::AtomicUsize, atomic::Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn the_one_shot_mode_makes_its_calls_on_one_connection() {
    // The default configuration (deletion breaker on): the pod's GET and the LIST of the
    // breaker's records, the DELETE, then the record and the audit Event; a pool would open a
    // connection for each of two calls made at once.
    let scene = Scene::new("once-conn").await;
    let home = scene.beside("once-conn-home").await;
    scene.pod("victim", CID).await;
    let (relay, accepted) = counting_relay(scene.server().port()).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let text = std::fs::read_to_string(scene.kubeconfig())
        .unwrap()
        .replace(&scene.server().url(), &format!("https://{relay}"));
    assert!(text.contains(&relay.to_string()), "{text}");
    std::fs::write(&kubeconfig, text).unwrap();

    let out = tokio::process::Command::from(binary::command())
        .arg("once")
        .env("KUBECONFIG", &kubeconfig)
        .env("POD_NAMESPACE", &home.ns)
        .env("BODY", terminal_shell(&scene.ns, "victim", CID))
        .env_remove("MAX_DELETIONS")
        .env_remove("MAX_DELETIONS_PER_WORKLOAD")
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("\"outcome\":\"deleted\""), "{stdout}");
    // Every call it needs, each once, and no other (counted before this test's own GET).
    let server = scene.server();
    let calls =
        |verb: &str, resource: &str, ns: &str| server.count_audit_in(verb, resource, Some(ns), "*");
    assert_eq!(calls("get", "pods", &scene.ns), 1);
    assert_eq!(calls("delete", "pods", &scene.ns), 1);
    assert_eq!(calls("create", "events", &scene.ns), 1, "the audit Event");
    assert_eq!(calls("list", "events", &home.ns), 1, "the breaker's count");
    assert_eq!(
        calls("create", "events", &home.ns),
        1,
        "the breaker's record"
    );
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one connection (one TLS handshake) for all its calls\n{stderr}"
    );
    assert!(scene.terminating("victim").await);
}

#[tokio::test]
async fn an_event_storm_for_one_pod_costs_one_delete() {
    let scene = Scene::new("storm").await;
    scene.pod("noisy", CID).await;
    let responder = std::sync::Arc::new(scene.responder(&[]).await);
    let event = terminal_shell(&scene.ns, "noisy", CID);
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (r, event) = (responder.clone(), event.clone());
        let envelope = if i % 2 == 0 {
            Envelope::Plain
        } else {
            Envelope::CloudEventBinary
        };
        tasks.push(tokio::spawn(async move {
            let reply = r.send(envelope, &event).await;
            assert_eq!(
                reply.status,
                200,
                "{}",
                String::from_utf8_lossy(&reply.body)
            );
            r.result(&reply)["outcome"].as_str().unwrap().to_string()
        }));
    }
    for t in tasks {
        // Every answer is truthful: the pod was deleted (by this event or one it shared).
        assert_eq!(t.await.unwrap(), "deleted");
    }
    // Counted before this test's own GET below.
    assert_eq!(
        scene
            .server()
            .count_audit_in("get", "pods", Some(&scene.ns), "noisy"),
        1
    );
    assert_eq!(
        scene
            .server()
            .count_audit_in("delete", "pods", Some(&scene.ns), "noisy"),
        1
    );
    assert!(scene.terminating("noisy").await);
}

/// OpenFaaS CE: a dedicated ServiceAccount's token, mounted as a secret, read via KUBE_TOKEN_FILE,
/// replaces whatever credentials were inferred (here: the admin kubeconfig).
#[tokio::test]
async fn kube_token_file_replaces_the_inferred_credentials() {
    let home = Scene::new("openfaas-fn").await;
    let (weak, _) = home.service_account_kubeconfig("no-rights").await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("falco-responder-token");
    std::fs::write(&token_file, &weak).unwrap();
    let scene = home.beside("victims").await;
    scene.pod("alpine", CID).await;

    let token_path = token_file.to_str().unwrap();
    // No rights at all: with the breaker on it would not become ready (its records cannot be
    // written, e2e_breaker); here the credentials the pod calls use.
    let responder = scene
        .responder(&[
            ("KUBE_TOKEN_FILE", token_path),
            ("MAX_DELETIONS_PER_WORKLOAD", "off"),
        ])
        .await;
    let r = scene.shell(&responder, "alpine", CID).await;
    assert_eq!(
        r.status,
        500,
        "admin credentials must not be used: {}",
        String::from_utf8_lossy(&r.body)
    );
    assert!(said(&r.json(), "error").contains("forbidden"));
    let account = format!("system:serviceaccount:{}:no-rights", home.ns);
    assert!(responder.logs_with(&account).await.contains(&account));
    assert!(scene.untouched("alpine").await);

    // With the token of the account the RBAC manifests bind, it deletes.
    home.apply("knative/rbac.yaml").await;
    let (strong, _) = home.service_account_kubeconfig("falco-responder").await;
    std::fs::write(&token_file, &strong).unwrap();
    // In the pod, its namespace (where the deletion breaker keeps its records, and the RBAC
    // binds them) comes from the ServiceAccount mount; out of a cluster, from POD_NAMESPACE.
    let responder = scene
        .responder(&[("KUBE_TOKEN_FILE", token_path), ("POD_NAMESPACE", &home.ns)])
        .await;
    let r = scene.shell(&responder, "alpine", CID).await;
    assert_eq!(r.json()["outcome"], "deleted", "{}", responder.logs());
}

// --- Never the wrong pod (forged, malformed or late events) -----------------------------------

/// Every class of hostile identifier we try, as it would sit in `k8s.ns.name`: each decodes or
/// normalises to `kube-system` somewhere between kube-rs, the HTTP path and the API server.
const HOSTILE_NAMESPACES: &[&str] = &[
    "kube%2Dsystem",
    "kube%2dsystem",
    "%6Bube-system",
    "kube-system%2F",
    "kube-system/",
    "x/../kube-system",
    "..",
    "kube-system#x",
    "kube-system?x=1",
    " kube-system",
    "kube-system\t",
    "kube-system\n",
    "kube-system\u{0}",
    "kube-system\u{7f}",
    "KUBE-SYSTEM",
    "Kube-System",
    "kube-ѕystem",
    "kube-system\u{200b}",
    "kube-system.",
    "kube_system",
];

/// The same for `k8s.pod.name`, reaching for pod `victim` in kube-system from namespace `ns`.
fn hostile_names() -> Vec<String> {
    let mut v: Vec<String> = [
        "victim%23",
        "..%2F..%2Fkube-system%2Fpods%2Fvictim",
        "../../kube-system/pods/victim",
        "victim/",
        "victim#",
        "victim?dryRun=All",
        " victim",
        "victim\r\n",
        "vic\u{0}tim",
        "VICTIM",
        "víctim",
        "..",
        ".",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push("v".repeat(254));
    v
}

#[tokio::test]
async fn hostile_identifiers_are_400_and_the_protected_pod_stays_running() {
    let scene = Scene::new("attack").await;
    let attack = scene.ns.clone();
    // The prize: a pod in a protected namespace.
    let kube_system = scene.at("kube-system");
    let victim = format!("victim-{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    kube_system.pod(&victim, CID).await;
    let responder = scene.responder(&[]).await;

    let mut cases: Vec<(&str, String, String)> = HOSTILE_NAMESPACES
        .iter()
        .map(|ns| ("k8s.ns.name", ns.to_string(), victim.clone()))
        .collect();
    cases.push(("k8s.ns.name", "k".repeat(64), victim.clone()));
    for name in hostile_names() {
        let name = name.replace("victim", &victim);
        cases.push(("k8s.pod.name", attack.clone(), name));
    }
    for (field, ns, name) in &cases {
        let mut ev: serde_json::Value =
            serde_json::from_str(&terminal_shell("x", "y", CID)).unwrap();
        ev["output_fields"]["k8s.ns.name"] = json!(ns);
        ev["output_fields"]["k8s.pod.name"] = json!(name);
        for envelope in [Envelope::Plain, Envelope::CloudEventBinary] {
            let r = responder.send(envelope, &ev.to_string()).await;
            assert_eq!(
                r.status,
                400,
                "{field} {ns:?}/{name:?} in {envelope:?}: {}",
                String::from_utf8_lossy(&r.body)
            );
            let body = r.json();
            assert_eq!(body["field"], *field, "{body}");
            assert_eq!(body["retry"], false);
        }
    }
    // Nothing reached the API server for these events: not even a GET.
    assert_eq!(scene.server().count_audit("delete", "pods", &victim), 0);
    assert_eq!(scene.server().count_audit("get", "pods", &victim), 0);
    assert!(kube_system.untouched(&victim).await);
    assert!(
        responder
            .logs_with("rejected an event naming an invalid identifier")
            .await
            .contains("rejected an event naming an invalid identifier")
    );
}

/// Sets the status of pod `name` as a kubelet would report it.
async fn reported(pods: &Api<Pod>, name: &str, status: &serde_json::Value) -> Pod {
    pods.patch_status(name, &Default::default(), &kube::api::Patch::Merge(status))
        .await
        .unwrap()
}

/// A Terminal-shell event at `time` for `ns/pod`, with container `cid` or none.
fn event_at(ns: &str, pod: &str, cid: Option<&str>, time: &str) -> String {
    let mut ev: serde_json::Value = serde_json::from_str(&terminal_shell(ns, pod, CID)).unwrap();
    ev["time"] = json!(time);
    let fields = ev["output_fields"].as_object_mut().unwrap();
    fields.remove("evt.time");
    match cid {
        Some(c) => {
            fields.insert("container.id".into(), json!(&c[..12]));
        }
        None => {
            fields.remove("container.id");
        }
    }
    ev.to_string()
}

#[tokio::test]
async fn a_late_event_never_deletes_the_replacement_pod() {
    let scene = Scene::new("late").await;
    scene.pod("web-0", CID).await;
    // Falco saw the shell now; the event arrives late (a redelivery, a replay).
    let seen_at = k8s_openapi::jiff::Timestamp::now().to_string();
    // The StatefulSet replaces web-0 after the event (beyond the clock-skew tolerance).
    tokio::time::sleep(falco_responder::domain::identity::CLOCK_SKEW + Duration::from_millis(1200))
        .await;
    scene.force_delete("web-0").await;
    let replacement = scene.bare_pod("web-0").await;
    let responder = scene.responder(&[]).await;

    // No uid, no container id (k8s_audit-style), and a container id the new pod has not
    // reported yet: both decided by time.
    for cid in [None, Some(CID)] {
        let r = responder
            .send(
                Envelope::Plain,
                &event_at(&scene.ns, "web-0", cid, &seen_at),
            )
            .await;
        let result = r.json();
        assert_eq!(result["outcome"], "stale", "{cid:?}: {result}");
        let line = responder.line_of(&result).await;
        assert!(line.contains("after the event"), "{line}");
        let uid = replacement.metadata.uid.clone().unwrap();
        assert!(line.contains(&uid), "{line}");
        assert!(!result.to_string().contains(&uid), "{result}");
    }
    assert!(scene.untouched("web-0").await);
    assert_eq!(
        scene
            .server()
            .count_audit_in("delete", "pods", Some(&scene.ns), "web-0"),
        1
    );
}

#[tokio::test]
async fn storm_memory_never_answers_for_a_recreated_pod() {
    let scene = Scene::new("memory").await;
    scene.pod("web-0", CID).await;
    let seen_at = k8s_openapi::jiff::Timestamp::now().to_string();
    let responder = scene.responder(&[("DEDUP_SECONDS", "600")]).await;
    let first = responder
        .send(
            Envelope::Plain,
            &event_at(&scene.ns, "web-0", Some(CID), &seen_at),
        )
        .await;
    assert_eq!(first.json()["outcome"], "deleted");

    // Within DEDUP_SECONDS the pod is replaced under the same name.
    tokio::time::sleep(falco_responder::domain::identity::CLOCK_SKEW + Duration::from_millis(1200))
        .await;
    scene.force_delete("web-0").await;
    scene.bare_pod("web-0").await;

    // A redelivery of the first event still proves the pod it was about: answered from memory.
    let again = responder
        .send(
            Envelope::Plain,
            &event_at(&scene.ns, "web-0", Some(CID), &seen_at),
        )
        .await;
    assert_eq!(again.json()["outcome"], "deleted");
    // Its own line says so (the first event's line has the same outcome and pod).
    responder
        .line_with(&again.json(), "reason=\"already handled")
        .await;
    // The same event without uid or container id proves nothing about the new pod: looked at
    // again, and stale.
    let r = responder
        .send(
            Envelope::Plain,
            &event_at(&scene.ns, "web-0", None, &seen_at),
        )
        .await;
    let result = r.json();
    assert_eq!(result["outcome"], "stale", "{result}");
    assert!(scene.untouched("web-0").await);
    assert!(scene.untouched("web-0").await);
}

#[tokio::test]
async fn a_restarted_container_is_proof_and_a_matching_uid_needs_a_restart() {
    let scene = Scene::new("restart").await;
    // The attacker killed PID 1: the container runs again under a new id; the shell was in
    // the previous one.
    scene.pod("restarted", OTHER_CID).await;
    let status = json!({"status": {"containerStatuses": [{
        "name": "main", "image": "alpine", "imageID": "", "ready": true, "restartCount": 1,
        "containerID": format!("containerd://{OTHER_CID}"), "state": {"running": {}},
        "lastState": {"terminated": {"exitCode": 137, "containerID": format!("containerd://{CID}")}}
    }]}});
    let pods = scene.pods();
    reported(&pods, "restarted", &status).await;
    let uid_pod = scene.pod("by-uid", OTHER_CID).await;
    let responder = scene.responder(&[]).await;

    let r = scene.shell(&responder, "restarted", CID).await;
    assert_eq!(r.json()["outcome"], "deleted", "{}", r.json());
    assert!(scene.terminating("restarted").await);

    // The event's uid matches; its container id is one the pod never reported. Every container
    // has been running since before the event (2023): the container is not the pod's.
    let running_since = |at: &str| {
        json!({"status": {"containerStatuses": [{
            "name": "main", "image": "alpine", "imageID": "", "ready": true, "restartCount": 2,
            "containerID": format!("containerd://{OTHER_CID}"),
            "state": {"running": {"startedAt": at}}
        }]}})
    };
    let status = running_since("2020-01-01T00:00:00Z");
    reported(&pods, "by-uid", &status).await;
    let mut ev: serde_json::Value =
        serde_json::from_str(&terminal_shell(&scene.ns, "by-uid", CID)).unwrap();
    ev["output_fields"]["k8smeta.pod.uid"] = json!(uid_pod.metadata.uid);
    let r = responder.send(Envelope::Plain, &ev.to_string()).await;
    assert_eq!(r.json()["outcome"], "skipped", "{}", r.json());
    assert!(scene.untouched("by-uid").await);
    let warning = scene.wait_event("by-uid", "FalcoForeignContainer").await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    // Restarted since the event (twice: its id left lastState): the uid proves the pod.
    let status = running_since(&k8s_openapi::jiff::Timestamp::now().to_string());
    reported(&pods, "by-uid", &status).await;
    let r = responder.send(Envelope::Plain, &ev.to_string()).await;
    assert_eq!(r.json()["outcome"], "deleted", "{}", r.json());
    assert!(scene.terminating("by-uid").await);
}

#[tokio::test]
async fn a_terminating_pod_gets_a_shorter_grace_and_no_second_delete_otherwise() {
    let scene = Scene::new("grace").await;
    let pods = scene.pods();
    for name in ["slow", "slow-too"] {
        scene.pod(name, CID).await;
        // Someone deleted it with an hour's grace: the shell keeps running meanwhile.
        pods.delete(name, &DeleteParams::default().grace_period(3600))
            .await
            .unwrap();
    }
    let responder = scene.responder(&[]).await;
    let r = scene.shell(&responder, "slow-too", CID).await;
    assert_eq!(r.json()["outcome"], "terminating", "{}", r.json());
    assert_eq!(
        scene
            .server()
            .count_audit_in("delete", "pods", Some(&scene.ns), "slow-too"),
        1,
        "only the first DELETE"
    );

    let responder = scene.responder(&[("GRACE_PERIOD_SECONDS", "5")]).await;
    let r = scene.shell(&responder, "slow", CID).await;
    let result = r.json();
    assert_eq!(result["outcome"], "terminating", "{result}");
    assert!(
        responder.line_of(&result).await.contains("shortened to 5s"),
        "{result}"
    );
    let live = scene.get_pod("slow").await.unwrap();
    assert_eq!(live.metadata.deletion_grace_period_seconds, Some(5));
    let events = scene.wait_events("slow", 1).await;
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("FalcoGraceShortened")),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_caller_that_disconnects_does_not_stop_the_deletion_or_its_event() {
    use tokio::io::AsyncWriteExt;
    let scene = Scene::new("hangup").await;
    scene.pod("alpine", CID).await;
    let responder = scene.responder(&[]).await;
    let body = terminal_shell(&scene.ns, "alpine", CID);
    let mut stream = tokio::net::TcpStream::connect(responder.addr)
        .await
        .unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    // Gone before any answer.
    drop(stream);
    for _ in 0..100 {
        if scene.terminating("alpine").await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(scene.terminating("alpine").await, "{}", responder.logs());
    assert_eq!(
        scene.count_events("alpine", "FalcoPodDeleted").await,
        1,
        "{}",
        responder.logs()
    );
    let logs = responder.logs_with("outcome=deleted").await;
    assert!(logs.contains("outcome=deleted"), "{logs}");
}

#[tokio::test]
async fn our_own_result_sent_back_is_an_empty_2xx_and_no_api_call() {
    let scene = Scene::new("loop").await;
    scene.pod("alpine", CID).await;
    let responder = scene.responder(&[]).await;
    // A first event, answered with our result CloudEvent...
    let r = scene
        .shell_as(&responder, Envelope::CloudEventBinary, "alpine", CID)
        .await;
    assert_eq!(
        r.header("ce-type"),
        Some(falco_responder::web::RESULT_CE_TYPE)
    );
    // ...which a Trigger without a filter delivers back to us, as the Broker would.
    let mut headers = http::HeaderMap::new();
    for (k, v) in &r.headers {
        if k.as_str().starts_with("ce-") || k == http::header::CONTENT_TYPE {
            headers.insert(k.clone(), v.clone());
        }
    }
    let gets = scene
        .server()
        .count_audit_in("get", "pods", Some(&scene.ns), "alpine");
    let back = sender::http(responder.addr, "POST", "/", &headers, &r.body).await;
    assert!((200..300).contains(&back.status), "{}", back.status);
    assert!(back.body.is_empty());
    assert!(back.header("ce-type").is_none());
    assert_eq!(
        scene
            .server()
            .count_audit_in("get", "pods", Some(&scene.ns), "alpine"),
        gets
    );
    assert!(
        responder
            .logs_with("ignored our own result")
            .await
            .contains("ignored our own result")
    );
}

#[tokio::test]
async fn a_stale_answer_never_spares_the_pod_from_the_true_event() {
    let scene = Scene::new("stale-memory").await;
    scene.pod("web-0", CID).await;
    let responder = scene.responder(&[]).await;
    // A process in the pod (no AUTH_TOKEN needed) posts events naming its pod with another
    // container id, or an old event about the pod's predecessor is replayed: `stale`.
    let forged = scene.shell(&responder, "web-0", OTHER_CID).await;
    assert_eq!(forged.json()["outcome"], "stale", "{}", forged.json());
    // Falco's true event, within DEDUP_SECONDS: the pod is deleted.
    let r = scene.shell(&responder, "web-0", CID).await;
    assert_eq!(r.json()["outcome"], "deleted", "{}", r.json());
    assert!(scene.terminating("web-0").await);
}

#[tokio::test]
async fn a_pod_with_a_name_at_the_length_limit_gets_its_event() {
    let scene = Scene::new("long-name").await;
    let name = format!("{}-{}", "a".repeat(200), "b".repeat(52));
    assert_eq!(name.len(), 253);
    scene.pod(&name, CID).await;
    let responder = scene.responder(&[]).await;
    let r = scene.shell(&responder, &name, CID).await;
    assert_eq!(r.json()["outcome"], "deleted", "{}", r.json());
    assert_eq!(
        scene.count_events(&name, "FalcoPodDeleted").await,
        1,
        "{}",
        responder.logs()
    );
}

/// Forged events against the real API server: a wrong uid, a foreign container with the right
/// uid, and the forger's usual event (no uid, no container, the time now) for a pod whose
/// workload is skipped. Each reply tells the outcome and nothing of the live pod (uid,
/// creationTimestamp, workload, node); the log line and the Kubernetes Event have the details.
#[tokio::test]
async fn a_forged_event_learns_the_outcome_and_nothing_of_the_live_pod() {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    let scene = Scene::new("oracle").await;
    let labels = json!({"app": "vault"});
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "vault-6f7d9c8b5d", "namespace": scene.ns},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "main", "image": "alpine"}]}}}
    }))
    .unwrap();
    // No controller runs here: the ReplicaSet makes no pods of its own.
    let rs = Api::<ReplicaSet>::namespaced(scene.admin.clone(), &scene.ns)
        .create(&Default::default(), &rs)
        .await
        .unwrap();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "vault-0", "namespace": scene.ns, "labels": labels,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": rs.metadata.name, "uid": rs.metadata.uid, "controller": true}]},
        "spec": {"nodeName": "node-7f3a", "containers": [{"name": "main", "image": "alpine"}]}
    }))
    .unwrap();
    let pods = scene.pods();
    pods.create(&Default::default(), &pod).await.unwrap();
    let status = json!({"status": {"phase": "Running", "containerStatuses": [{
        "name": "main", "image": "alpine", "imageID": "", "ready": true, "restartCount": 0,
        "containerID": format!("containerd://{CID}"),
        "state": {"running": {"startedAt": "2020-01-01T00:00:00Z"}}}]}});
    let live = reported(&pods, "vault-0", &status).await;
    let uid = live.metadata.uid.clone().unwrap();
    let created = live.metadata.creation_timestamp.clone().unwrap().0;
    let secrets = [
        uid.clone(),
        created.to_string(),
        "vault-6f7d9c8b5d".to_string(),
        "node-7f3a".to_string(),
    ];
    let responder = scene.responder(&[("SKIP_OWNER_KINDS", "ReplicaSet")]).await;
    // The reply's result, once checked that neither its body nor its headers leak.
    let answered = |r: &sender::HttpReply, outcome: &str| {
        let result = responder.result(r);
        assert_eq!(result["outcome"], outcome, "{result}");
        let sent = format!("{:?} {}", r.headers, String::from_utf8_lossy(&r.body));
        let leaked: Vec<_> = secrets
            .iter()
            .filter(|s| sent.contains(s.as_str()))
            .collect();
        assert!(leaked.is_empty(), "{leaked:?} in {sent}");
        result
    };
    let base: serde_json::Value =
        serde_json::from_str(&terminal_shell(&scene.ns, "vault-0", CID)).unwrap();

    // 1. Another pod uid: `stale`, in the HTTP body and in the result CloudEvent alike.
    let mut wrong_uid = base.clone();
    wrong_uid["output_fields"]["k8smeta.pod.uid"] = json!("0f9a4c1e-1111-2222-3333-444455556666");
    for envelope in [Envelope::Plain, Envelope::CloudEventBinary] {
        let r = responder.send(envelope, &wrong_uid.to_string()).await;
        let result = answered(&r, "stale");
        assert_eq!(
            result["pod"],
            json!({"namespace": scene.ns, "name": "vault-0"})
        );
        let line = responder.line_of(&result).await;
        assert!(
            line.contains(&uid),
            "the log line names the live uid: {line}"
        );
    }

    // 2. The right uid, a container the pod never had, every container running since 2020:
    // `skipped`, and a Warning Event with the details.
    let mut foreign = base.clone();
    foreign["output_fields"]["k8smeta.pod.uid"] = json!(uid);
    foreign["output_fields"]["container.id"] = json!(&OTHER_CID[..12]);
    let r = responder.send(Envelope::Plain, &foreign.to_string()).await;
    answered(&r, "skipped");
    let warning = scene.wait_event("vault-0", "FalcoForeignContainer").await;
    let note = warning.note.unwrap_or_default();
    assert!(
        note.contains(&OTHER_CID[..12]) && note.contains("running since before the event"),
        "{note}"
    );
    assert_eq!(
        warning.regarding.and_then(|r| r.uid).as_deref(),
        Some(uid.as_str())
    );
    assert!(scene.untouched("vault-0").await);

    // 3. No uid, no container id, the time now (what a forger sends): the pod is the one
    // named, its workload is in SKIP_OWNER_KINDS: `skipped`, the workload only in the log.
    tokio::time::sleep(falco_responder::domain::identity::CLOCK_SKEW + Duration::from_millis(1200))
        .await;
    let mut bare = base;
    bare["time"] = json!(k8s_openapi::jiff::Timestamp::now().to_string());
    let fields = bare["output_fields"].as_object_mut().unwrap();
    fields.remove("evt.time");
    fields.remove("container.id");
    let r = responder.send(Envelope::Plain, &bare.to_string()).await;
    let result = answered(&r, "skipped");
    // The same pod was skipped above: wait for this event's line, the one naming the workload.
    let line = responder
        .line_with(&result, "workload=ReplicaSet/vault-6f7d9c8b5d")
        .await;
    assert!(
        line.contains("workload=ReplicaSet/vault-6f7d9c8b5d") && line.contains(&uid),
        "{line}"
    );
    assert!(scene.untouched("vault-0").await);
}
