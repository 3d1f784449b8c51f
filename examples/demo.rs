//! The local demo (`scripts/demo.sh`): the Falco blog's scenario on a real node. A real pod, a
//! real shell in it (`kubectl exec`), the Falco event built from what the kubelet reports for
//! that pod, delivered the way Falcosidekick, Knative and Argo deliver it, and the pod going
//! Running → Terminating → gone, step by step; then one pod contained instead (isolated,
//! released, its logs kept, killed by the kubelet at its deadline) and what was kept. Everything
//! is stopped at the end.
//!
//! Falco itself is not run: the event is built here, as Falco's container plugin would write it
//! (`testkit::node::shell_event`).

#[path = "../tests/testkit/apiserver.rs"]
mod apiserver;
#[path = "../tests/testkit/node.rs"]
mod node;
#[path = "../tests/testkit/sender.rs"]
mod sender;

use std::{process::Stdio, time::Duration};

use k8s_openapi::api::{core::v1::Pod, events::v1::Event as KubeEvent};
use kube::{Api, api::ListParams};
use sender::{Envelope, http, wrap};

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

/// Starts the binary on a free port with `env` and waits for `GET /readyz` → 200.
async fn spawn(
    bin: &str,
    kubeconfig: &std::path::Path,
    env: &[(&str, &str)],
) -> (tokio::process::Child, std::net::SocketAddr) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = tokio::process::Command::new(bin)
        .env("KUBECONFIG", kubeconfig)
        .env("PORT", port.to_string())
        .envs(env.iter().copied())
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
    (child, addr)
}

/// Containment instead of deletion: a Deployment's pod with a shell in it is isolated,
/// released (its replacement starts), its log tail kept, and killed by the kubelet at its
/// deadline; what was kept is shown, then the pod is deleted and its NetworkPolicy goes.
async fn contain(bin: &str, kubeconfig: &std::path::Path, admin: &kube::Client, step: usize) {
    use k8s_openapi::api::{
        apps::v1::Deployment,
        core::v1::{ConfigMap, Namespace},
        networking::v1::NetworkPolicy,
    };
    use kube::api::{DeleteParams, LogParams, PostParams};
    use serde_json::json;

    say(&format!(
        "\n== {step}. Contain instead of delete: ACTION=contain, CONTAIN_SECONDS=8"
    ));
    let (home, ns) = ("falco-responder", "falcoresponse-contain");
    for name in [home, ns] {
        let obj: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        Api::<Namespace>::all(admin.clone())
            .create(&PostParams::default(), &obj)
            .await
            .unwrap();
        node::wait_service_account(admin, name, "default").await;
    }
    let (mut responder, addr) = spawn(
        bin,
        kubeconfig,
        &[
            ("ACTION", "contain"),
            ("CONTAIN_SECONDS", "8"),
            ("EVIDENCE_LOG_BYTES", "1024"),
            ("POD_NAMESPACE", home),
        ],
    )
    .await;
    say(&format!(
        "   a second falco-responder on {addr}: its own namespace {home} keeps the evidence"
    ));
    let script = "i=0; while [ $i -lt 200 ]; do echo \"web: request $i served\"; i=$((i+1)); done; \
                  echo 'web: the last line before the shell'; touch /tmp/up; exec sleep 3600";
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "containers": [{
                        "name": "main", "image": node::BUSYBOX, "imagePullPolicy": "Never",
                        "command": ["sh", "-c", script],
                        "readinessProbe": {
                            "exec": { "command": ["cat", "/tmp/up"] }, "periodSeconds": 1
                        }
                    }]
                }
            }
        }
    }))
    .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), ns);
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(admin.clone(), ns);
    let ready = |p: &Pod| node::pod_ready(p);
    let web = apiserver::wait_for("2 Ready pods of web", node::POD_READY, || async {
        let list = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .ok()?
            .items;
        (list.iter().filter(|p| ready(p)).count() == 2).then_some(list)
    })
    .await;
    let pod = web[0].clone();
    let name = pod.metadata.name.clone().unwrap();
    let uid = pod.metadata.uid.clone().unwrap();
    say(&format!(
        "   Deployment web, 2 replicas Ready; each wrote 201 log lines; the shell goes into {name}"
    ));
    let cid = node::container_id(&pod, "main");
    let out = node::exec(&pod, "main", "echo dropped > /tmp/payload; echo a shell");
    say(&format!(
        "   kubectl exec {name} -- sh -c 'echo dropped > /tmp/payload' → exit {} (a file in its writable layer)",
        out.status.code().unwrap_or(-1)
    ));
    let reply = http(
        addr,
        "POST",
        "/",
        &Default::default(),
        node::shell_event(&pod, &cid).as_bytes(),
    )
    .await;
    say(&format!("   POST / ← {}", reply.status));
    say(&format!("     {}", reply.json()));

    let np = Api::<NetworkPolicy>::namespaced(admin.clone(), ns)
        .get_opt(&format!("falco-responder-contain-{uid}"))
        .await
        .unwrap();
    if let Some(np) = &np {
        let v = serde_json::to_value(np).unwrap();
        say(&format!(
            "   NetworkPolicy {}: policyTypes {}, no rules (deny all), selects {}, owned by Pod {}",
            np.metadata.name.as_deref().unwrap_or("?"),
            v["spec"]["policyTypes"],
            v["spec"]["podSelector"]["matchLabels"],
            v["metadata"]["ownerReferences"][0]["name"]
        ));
    }
    let live = pods.get(&name).await.unwrap();
    say(&format!(
        "   pod {name}: labels {:?}, owners {}, activeDeadlineSeconds {:?}",
        live.metadata.labels.clone().unwrap_or_default(),
        live.metadata
            .owner_references
            .as_ref()
            .map_or(0, |o| o.len()),
        live.spec.as_ref().and_then(|s| s.active_deadline_seconds)
    ));
    let replacement = apiserver::wait_for("a replacement Ready", node::POD_READY, || async {
        pods.list(&ListParams::default().labels("app=web"))
            .await
            .ok()?
            .items
            .into_iter()
            .find(|p| ready(p) && web.iter().all(|w| w.metadata.uid != p.metadata.uid))
    })
    .await;
    say(&format!(
        "   the ReplicaSet let go of it and started {} (Ready): web still has 2 replicas serving",
        replacement.metadata.name.as_deref().unwrap_or("?")
    ));
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), home);
    if let Some(cm) = cms
        .get_opt(&format!("falco-responder-evidence-{uid}"))
        .await
        .unwrap()
    {
        for (key, log) in cm.data.unwrap_or_default() {
            say(&format!(
                "   ConfigMap {home}/falco-responder-evidence-{uid}: {key}, {} bytes, last line {:?}",
                log.len(),
                log.trim_end().lines().last().unwrap_or("")
            ));
        }
    }

    let since = std::time::Instant::now();
    let failed = apiserver::wait_for("the kubelet kills it", Duration::from_secs(60), || async {
        let p = pods.get(&name).await.ok()?;
        let s = p.status.clone()?;
        (s.phase.as_deref() == Some("Failed")).then_some(s)
    })
    .await;
    say(&format!(
        "   {:.0} s later the kubelet killed it: phase Failed, reason {}",
        since.elapsed().as_secs_f64(),
        failed.reason.unwrap_or_default()
    ));
    let tail = pods
        .logs(
            &name,
            &LogParams {
                tail_lines: Some(1),
                ..LogParams::default()
            },
        )
        .await
        .unwrap_or_default();
    say("   What was kept, until someone deletes the pod:");
    let released = pods
        .get(&name)
        .await
        .ok()
        .and_then(|p| p.metadata.annotations)
        .and_then(|a| a.get("falco-responder/released-labels").cloned())
        .unwrap_or_default();
    say(&format!(
        "     the Failed pod object, annotated falco-responder/released-labels: {released} (never put them back)"
    ));
    say(&format!(
        "     its logs: kubectl logs {name} → ... {:?}",
        tail.trim_end()
    ));
    say("     its exited container's writable layer on the node (/tmp/payload)");
    say("     its NetworkPolicy, and the evidence ConfigMap (which outlives the pod)");
    say("   Lost at the kill: its processes, its network, emptyDir contents");

    pods.delete(&name, &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let nps: Api<NetworkPolicy> = Api::namespaced(admin.clone(), ns);
    let since = std::time::Instant::now();
    apiserver::wait_for("the NetworkPolicy gone", node::POD_GONE, || async {
        matches!(
            nps.get_opt(&format!("falco-responder-contain-{uid}")).await,
            Ok(None)
        )
        .then_some(())
    })
    .await;
    say(&format!(
        "   kubectl delete pod {name} → its NetworkPolicy garbage-collected within {:.0} ms; the evidence stays",
        since.elapsed().as_secs_f64() * 1000.0
    ));
    let metrics = http(addr, "GET", "/metrics", &Default::default(), b"").await;
    for line in String::from_utf8_lossy(&metrics.body).lines() {
        if (line.starts_with("falco_responder_events_total") && line.contains("contained"))
            || line.starts_with("falco_responder_contain_steps_total")
        {
            say(&format!("   {line}"));
        }
    }
    let _ = responder.start_kill();
    let _ = responder.wait().await;
}

#[tokio::main]
async fn main() {
    let bin = std::env::var("FALCO_RESPONDER_BIN")
        .expect("run through scripts/demo.sh (FALCO_RESPONDER_BIN)");
    say("== 1. A real cluster: kube-apiserver + etcd, controllers, scheduler, and one node");
    say("   (kubelet + containerd + runc on this machine, pods on a bridge network)");
    let started = std::time::Instant::now();
    if let Some(why) = node::why_not() {
        eprintln!("demo: no node on this machine: {why}");
        std::process::exit(1);
    }
    let server = tokio::task::spawn_blocking(node::start)
        .await
        .unwrap()
        .unwrap_or_else(|e| {
            let _ = node::stop();
            panic!("starting the node: {e}")
        });
    let admin = server.admin_client().await;
    say(&format!(
        "   {} ready, node localhost Ready, in {:.1} s",
        server.url(),
        started.elapsed().as_secs_f64()
    ));
    say("   Falco is not run: each event below is built by this demo from what the kubelet");
    say("   reports for the pod, as Falco's container plugin would write it.");

    say("\n== 2. falco-responder, the real binary, with the admin kubeconfig");
    let kubeconfig = server.admin_kubeconfig();
    let (mut responder, addr) = spawn(&bin, &kubeconfig, &[("GRACE_PERIOD_SECONDS", "5")]).await;
    say(&format!("   listening on {addr}, GET /readyz → 200"));

    let mut deleted: Vec<(String, Pod, std::time::Instant)> = Vec::new();
    for (i, (envelope, how)) in STEPS.iter().enumerate() {
        let ns = format!("falcoresponse-{}", i + 1);
        say(&format!("\n== {}. {how}", i + 3));
        let ns_obj = serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).unwrap();
        Api::<k8s_openapi::api::core::v1::Namespace>::all(admin.clone())
            .create(&Default::default(), &ns_obj)
            .await
            .unwrap();
        node::wait_service_account(&admin, &ns, "default").await;
        let pod = node::run_pod(
            &admin,
            &ns,
            "alpine",
            serde_json::json!({}),
            serde_json::json!({ "terminationGracePeriodSeconds": 5 }),
        )
        .await;
        let cid = node::container_id(&pod, "main");
        say(&format!(
            "   kubectl run alpine -n {ns}       → Running, uid {}, container {}",
            pod.metadata.uid.as_deref().unwrap_or("?"),
            &cid[..12]
        ));
        let at = k8s_openapi::jiff::Timestamp::now();
        let out = node::exec(
            &pod,
            "main",
            "echo \"a shell as uid $(id -u) in $(hostname)\"",
        );
        say(&format!(
            "   kubectl exec alpine -- sh -c ...  → {} (exit {})",
            String::from_utf8_lossy(&out.stdout).trim(),
            out.status.code().unwrap_or(-1)
        ));
        let mut event: serde_json::Value =
            serde_json::from_str(&node::shell_event(&pod, &cid)).unwrap();
        event["time"] = serde_json::json!(at.to_string());
        let event = event.to_string();
        say(&format!(
            "   the event (built here): Terminal shell in container, time {at}, container.id {}, k8s.pod.uid",
            &cid[..12]
        ));
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
        deleted.push((ns.clone(), pod.clone(), std::time::Instant::now()));
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
        let (ours, kubelet): (Vec<KubeEvent>, Vec<KubeEvent>) = events
            .into_iter()
            .partition(|e| e.reporting_controller.as_deref() == Some("falco-responder"));
        let reasons: Vec<String> = kubelet.into_iter().filter_map(|e| e.reason).collect();
        say(&format!(
            "   kubectl get events -n {ns}       → from the scheduler and kubelet: {}",
            reasons.join(", ")
        ));
        for e in ours {
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
    let test_rule = sender::fixture("falcosidekick-test-rule-debug-input.json");
    let reply = http(addr, "POST", "/", &Default::default(), test_rule.as_bytes()).await;
    say(&format!(
        "   Falcosidekick's test event → {} {}",
        reply.status,
        reply.json()
    ));
    let host = sender::fixture("falco-0.31-host-write-below-binary-dir-no-container.json");
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

    say(&format!(
        "\n== {}. The kubelet stops each container and the pods go",
        STEPS.len() + 4
    ));
    for (ns, pod, since) in &deleted {
        let pods: Api<Pod> = Api::namespaced(admin.clone(), ns);
        let gone = apiserver::wait_for("the pod gone", node::POD_GONE, || async {
            match pods.get_opt("alpine").await {
                Ok(Some(p)) if p.metadata.uid == pod.metadata.uid => None,
                Ok(_) => Some(()),
                Err(_) => None,
            }
        });
        gone.await;
        say(&format!(
            "   kubectl get pod alpine -n {ns}   → NotFound ({:.0} s after the DELETE)",
            since.elapsed().as_secs_f64()
        ));
    }

    contain(&bin, &kubeconfig, &admin, STEPS.len() + 5).await;

    say(&format!("\n== {}. GET /metrics (excerpt)", STEPS.len() + 6));
    let metrics = http(addr, "GET", "/metrics", &Default::default(), b"").await;
    for line in String::from_utf8_lossy(&metrics.body).lines() {
        if line.starts_with("falco_responder_events_total")
            || line.starts_with("falco_responder_deletions_total")
        {
            say(&format!("   {line}"));
        }
    }

    say(&format!("\n== {}. Stopping everything", STEPS.len() + 7));
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
    match node::stop() {
        Ok(()) => say("   node stopped and removed (containers, mounts, network, cgroups)"),
        Err(e) => say(&format!("   stopping the node failed: {e}")),
    }
    say("   kube-apiserver, etcd and the controllers stop with this process");
}
