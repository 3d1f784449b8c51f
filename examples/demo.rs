//! The local demo (`scripts/demo.sh`): the Falco blog's scenario against a real kube-apiserver.
//! A pod `alpine`, a shell spawned in it, Falco's event delivered the way Falcosidekick, Knative
//! and Argo deliver it, and the pod deleted, step by step. Everything is stopped at the end.

#[path = "../tests/testkit/sender.rs"]
mod common;
#[path = "../tests/testkit/apiserver.rs"]
mod support;

use std::{process::Stdio, time::Duration};

use common::{Envelope, http, terminal_shell, wrap};
use k8s_openapi::api::{core::v1::Pod, events::v1::Event as KubeEvent};
use kube::{Api, api::ListParams};
use support::ApiServer;

const CID: &str = "6ac7d190134e0123456789abcdef0123456789abcdef0123456789abcdef0123";

const STEPS: &[(Envelope, &str)] = &[
    (
        Envelope::Plain,
        "Falcosidekick webhook output (plain Falco JSON)",
    ),
    (
        Envelope::CloudEventBinary,
        "Falcosidekick cloudevents output via a Knative Broker (binary mode)",
    ),
    (
        Envelope::CloudEventStructured,
        "Knative Trigger with delivery.format: json (structured mode)",
    ),
    (
        Envelope::ArgoRaw,
        "Argo Events HTTP trigger, dataKey: body, useRawData: true",
    ),
    (
        Envelope::ArgoString,
        "Argo Events HTTP trigger, dataKey: body (an escaped JSON string)",
    ),
    (
        Envelope::ArgoEvent,
        "Argo Events trigger without dataKey (the whole event, base64 data)",
    ),
];

fn say(s: &str) {
    println!("{s}");
}

#[tokio::main]
async fn main() {
    let bin = std::env::var("FALCO_RESPONDER_BIN")
        .expect("run through scripts/demo.sh (FALCO_RESPONDER_BIN)");
    say("== 1. A real Kubernetes API server (kube-apiserver + etcd on loopback)");
    let started = std::time::Instant::now();
    let server = ApiServer::start();
    let admin = server.admin_client().await;
    say(&format!(
        "   {} ready in {:.1} s",
        server.url(),
        started.elapsed().as_secs_f64()
    ));

    say("\n== 2. falco-responder, the real binary, with the admin kubeconfig");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut responder = tokio::process::Command::new(&bin)
        .env("KUBECONFIG", server.admin_kubeconfig())
        .env("PORT", port.to_string())
        .env("GRACE_PERIOD_SECONDS", "30")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start falco-responder");
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let mut ready = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            ready = http(addr, "GET", "/readyz", &Default::default(), b"")
                .await
                .status
                == 200;
            if ready {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(ready, "falco-responder did not become ready");
    say(&format!("   listening on {addr}, GET /readyz → 200"));

    for (i, (envelope, how)) in STEPS.iter().enumerate() {
        let ns = format!("falcoresponse-{}", i + 1);
        say(&format!("\n== {}. {how}", i + 3));
        let ns_obj = serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).unwrap();
        Api::<k8s_openapi::api::core::v1::Namespace>::all(admin.clone())
            .create(&Default::default(), &ns_obj)
            .await
            .unwrap();
        let pod = support::create_pod(&admin, &ns, "alpine", CID, &[]).await;
        say(&format!(
            "   kubectl run alpine -n {ns}       → pod uid {}, container {}",
            pod.metadata.uid.as_deref().unwrap_or("?"),
            &CID[..12]
        ));
        say("   kubectl exec -it alpine -- sh    → Falco: Terminal shell in container (Critical)");
        let event = terminal_shell(&ns, "alpine", CID);
        let (headers, body) = wrap(*envelope, &event);
        let shown: Vec<String> = headers
            .iter()
            .filter(|(k, _)| k.as_str().starts_with("ce-") || *k == "content-type")
            .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("?")))
            .collect();
        say(&format!(
            "   POST / ({} bytes{}{})",
            body.len(),
            if shown.is_empty() {
                ", no Content-Type"
            } else {
                "; "
            },
            shown.join(", ")
        ));
        let reply = http(addr, "POST", "/", &headers, &body).await;
        let result = if reply.headers.contains_key("ce-specversion") {
            let ce =
                cloudevents::binding::http::to_event(&reply.headers, reply.body.clone()).unwrap();
            say(&format!(
                "   ← {} with a CloudEvent reply, ce-type: {}",
                reply.status,
                reply.header("ce-type").unwrap_or("?")
            ));
            serde_json::Value::try_from(ce.data().unwrap().clone()).unwrap()
        } else {
            say(&format!("   ← {}", reply.status));
            reply.json()
        };
        say(&format!("     {result}"));
        let live: Pod = Api::namespaced(admin.clone(), &ns)
            .get("alpine")
            .await
            .unwrap();
        let ts = live
            .metadata
            .deletion_timestamp
            .as_ref()
            .map(|t| t.0.to_string());
        say(&format!(
            "   kubectl get pod alpine -n {ns}   → {}",
            match ts {
                Some(t) => format!(
                    "Terminating (deletionTimestamp {t}, grace {}s)",
                    live.metadata
                        .deletion_grace_period_seconds
                        .unwrap_or_default()
                ),
                None => "still Running".into(),
            }
        ));
        // The Event is recorded just after the answer.
        let mut events = Vec::new();
        for _ in 0..40 {
            events = Api::<KubeEvent>::namespaced(admin.clone(), &ns)
                .list(&ListParams::default())
                .await
                .unwrap()
                .items;
            if !events.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for e in events {
            say(&format!(
                "   kubectl get events -n {ns}       → {} {} by {}: {}",
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.reporting_controller.unwrap_or_default(),
                e.note
                    .unwrap_or_default()
                    .chars()
                    .take(110)
                    .collect::<String>()
            ));
        }
    }

    say(&format!(
        "\n== {}. Not everything is deleted",
        STEPS.len() + 3
    ));
    let test_rule = common::fixture("falcosidekick-test-rule-debug-input.json");
    let reply = http(addr, "POST", "/", &Default::default(), test_rule.as_bytes()).await;
    say(&format!(
        "   Falcosidekick's test event → {} {}",
        reply.status,
        reply.json()
    ));
    let host = common::fixture("falco-0.31-host-write-below-binary-dir-no-container.json");
    let reply = http(addr, "POST", "/", &Default::default(), host.as_bytes()).await;
    say(&format!(
        "   a host event (Write below binary dir) → {} {}",
        reply.status,
        reply.json()
    ));
    let reply = http(
        addr,
        "POST",
        "/",
        &Default::default(),
        b"{\"hello\": \"world\", \"x\": 1}",
    )
    .await;
    say(&format!(
        "   not a Falco event → {} {}",
        reply.status,
        reply.json()
    ));

    say(&format!("\n== {}. GET /metrics (excerpt)", STEPS.len() + 4));
    let metrics = http(addr, "GET", "/metrics", &Default::default(), b"").await;
    for line in String::from_utf8_lossy(&metrics.body).lines() {
        if line.starts_with("falco_responder_events_total")
            || line.starts_with("falco_responder_deletions_total")
        {
            say(&format!("   {line}"));
        }
    }

    say(&format!("\n== {}. Stopping everything", STEPS.len() + 5));
    // SIGTERM: graceful shutdown, as Kubernetes would do it.
    let pid = responder.id().expect("running");
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let status = tokio::time::timeout(Duration::from_secs(10), responder.wait()).await;
    let mut logs = String::new();
    if let Some(mut err) = responder.stderr.take() {
        use tokio::io::AsyncReadExt;
        let _ = err.read_to_string(&mut logs).await;
    }
    say(&format!(
        "   falco-responder: SIGTERM → exited {:?}; it logged {} lines (one per event)",
        status.ok().and_then(|s| s.ok()).and_then(|s| s.code()),
        logs.lines().count()
    ));
    drop(server);
    say("   kube-apiserver and etcd stopped");
}
