//! A REAL node: kubelet + containerd + runc on this machine, with kube-scheduler, kube-proxy and
//! every controller, around a kube-apiserver that pods can reach ([`ApiServer::start_for_node`]).
//!
//! `scripts/node.sh` does the machine's part (pod network, containerd, images, kubelet, cleanup);
//! this starts it around one API server per test binary and gives tests real pods: container ids
//! as containerd makes them, readiness and restarts as the kubelet reports them, graceful
//! deletion as the kubelet carries it out. One node per machine (fixed host paths and ports):
//! the node tests share it (`tests/node`, one binary).
//!
//! Binaries and images come from `scripts/node-env.sh` (TEST_ASSET_*, TEST_NODE_IMAGES).
//!
//! The demo includes this file by path (as `node`, beside `apiserver` and `sender`).
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::OnceLock,
    time::Duration,
};

use k8s_openapi::api::core::v1::{Node as KubeNode, Pod, Secret, ServiceAccount};
use kube::{Api, Client, api::PostParams};
use serde_json::{Value, json};

use super::apiserver::{ApiServer, wait_for};

/// The pods' gateway: the bridge's address on this machine, where the API server listens.
pub const GATEWAY: &str = "10.244.0.1";
/// The image every test pod runs (busybox-static, imported without a registry).
pub const BUSYBOX: &str = "localhost/busybox:1";
/// How long a pod may take to become Ready on a busy 2-core machine.
pub const POD_READY: Duration = Duration::from_secs(90);
/// How long a graceful deletion may take to finish (the 1.20 kubelet removes finished pods in
/// 10 s batches; one took 63 s in a burst).
pub const POD_GONE: Duration = Duration::from_secs(120);

static NODE: OnceLock<&'static ApiServer> = OnceLock::new();

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/node.sh")
}

fn node_sh(args: &[&str]) -> Output {
    Command::new(script())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running scripts/node.sh: {e}"))
}

/// Why a node cannot start on this machine (not root, no cgroup v1, parts missing), or `None`.
pub fn why_not() -> Option<String> {
    let out = node_sh(&["check"]);
    (!out.status.success()).then(|| {
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if text.is_empty() {
            String::from_utf8_lossy(&out.stderr).trim().to_string()
        } else {
            text
        }
    })
}

/// Starts the node (cleaning a previous run), the API server it joins and every controller,
/// and waits until node `localhost` is Ready. Once per process; later calls return the server.
pub fn start() -> Result<&'static ApiServer, String> {
    if let Some(s) = NODE.get() {
        return Ok(s);
    }
    let up = node_sh(&["up", "--owner", &std::process::id().to_string()]);
    if !up.status.success() {
        return Err(format!(
            "scripts/node.sh up failed:\n{}",
            String::from_utf8_lossy(&up.stderr)
        ));
    }
    let server: &'static ApiServer = Box::leak(Box::new(ApiServer::start_for_node(GATEWAY)));
    server.start_controller_manager();
    let kubeconfig = server.admin_kubeconfig();
    let join = node_sh(&["join", "--kubeconfig", kubeconfig.to_str().unwrap()]);
    if !join.status.success() {
        return Err(format!(
            "scripts/node.sh join failed:\n{}",
            String::from_utf8_lossy(&join.stderr)
        ));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let nodes: Api<KubeNode> = Api::all(server.admin_client().await);
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(n) = nodes.get("localhost").await {
                let ready = n
                    .status
                    .and_then(|s| s.conditions)
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                if ready {
                    return Ok(());
                }
            }
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "node localhost not Ready after 120 s; kubelet log: {}",
                    log_tail("kubelet")
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })?;
    let _ = NODE.set(server);
    Ok(server)
}

/// The API server of the running node; panics when [`start`] has not succeeded.
pub fn server() -> &'static ApiServer {
    NODE.get()
        .copied()
        .expect("the node is not started (testkit::node::start)")
}

/// Stops the node and removes everything it made (processes, mounts, network namespaces, the
/// bridge, cgroups, its directories); the API server goes with the test process.
pub fn stop() -> Result<(), String> {
    let down = node_sh(&["down"]);
    if down.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&down.stderr).into_owned())
    }
}

/// The last lines of one of the node's logs (`kubelet`, `containerd`, `kube-proxy`, ...).
pub fn log_tail(name: &str) -> String {
    let text = std::fs::read_to_string(format!("/run/falco-responder-node/{name}.log"))
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// `kubectl` (KUBECTL, else on PATH) as admin on the node's API server.
pub fn kubectl(args: &[&str]) -> Output {
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
    Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(server().admin_kubeconfig())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {kubectl}: {e} (scripts/helm-env.sh installs it)"))
}

/// [`kubectl`], which must succeed; its stdout.
pub fn kubectl_ok(args: &[&str]) -> String {
    let out = kubectl(args);
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until ServiceAccount `ns/name` has its token Secret (pods using it are refused before).
pub async fn wait_service_account(client: &Client, ns: &str, name: &str) {
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    wait_for(
        &format!("a token for ServiceAccount {ns}/{name}"),
        Duration::from_secs(60),
        || async {
            let sa = sas.get_opt(name).await.ok().flatten()?;
            let secret = sa.secrets.unwrap_or_default().into_iter().next()?;
            secrets
                .get_opt(secret.name.as_deref()?)
                .await
                .ok()
                .flatten()
                .map(|_| ())
        },
    )
    .await;
}

/// Creates pod `ns/name` running busybox `sleep` (`meta` merged over its metadata, `spec` over
/// its spec, e.g. `terminationGracePeriodSeconds`) and waits until the kubelet reports it
/// Ready. The pod as the kubelet reported it.
pub async fn run_pod(client: &Client, ns: &str, name: &str, meta: Value, spec: Value) -> Pod {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": ns },
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "containers": [{
                "name": "main", "image": BUSYBOX, "imagePullPolicy": "Never",
                "command": ["sleep", "3600"]
            }]
        }
    });
    merge(&mut pod["metadata"], meta);
    merge(&mut pod["spec"], spec);
    let pod: Pod = serde_json::from_value(pod).unwrap();
    Api::<Pod>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("creating pod {ns}/{name}: {e}"));
    wait_ready(client, ns, name).await
}

/// Waits until pod `ns/name` is Ready with every container id reported.
pub async fn wait_ready(client: &Client, ns: &str, name: &str) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    wait_for(&format!("pod {ns}/{name} Ready"), POD_READY, || async {
        pods.get_opt(name).await.ok().flatten().filter(pod_ready)
    })
    .await
}

/// Merges `from` into `into`, objects key by key.
pub fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Ready, with every container started and its id reported.
pub fn pod_ready(p: &Pod) -> bool {
    let Some(s) = p.status.as_ref() else {
        return false;
    };
    let ready = s
        .conditions
        .as_ref()
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let ids = s
        .container_statuses
        .as_ref()
        .is_some_and(|cs| !cs.is_empty() && cs.iter().all(|c| c.container_id.is_some()));
    ready && ids && p.metadata.deletion_timestamp.is_none()
}

/// The full id of container `name` as the kubelet reports it (`containerd://<64 hex>` → hex).
pub fn container_id(p: &Pod, name: &str) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == name))
        .and_then(|c| c.container_id.as_deref())
        .unwrap_or_else(|| panic!("pod reports no id for container {name}"))
        .trim_start_matches("containerd://")
        .to_string()
}

/// The pod's IP on the pod network.
pub fn pod_ip(p: &Pod) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("the pod has no IP")
}

/// The Falco event of a shell in container `cid` of `pod`, as Falco's container plugin writes
/// it: the rule, the time of the shell (now), `container.id` as the 12-character short id,
/// the pod's name, namespace and uid. Built here: Falco itself is not run.
pub fn shell_event(pod: &Pod, cid: &str) -> String {
    let mut v: Value = serde_json::from_str(&super::sender::terminal_shell(
        pod.metadata.namespace.as_deref().unwrap(),
        pod.metadata.name.as_deref().unwrap(),
        cid,
    ))
    .unwrap();
    let now = k8s_openapi::jiff::Timestamp::now();
    let (ns, name) = (
        pod.metadata.namespace.as_deref().unwrap(),
        pod.metadata.name.as_deref().unwrap(),
    );
    let short = &cid[..cid.len().min(12)];
    v["time"] = json!(now.to_string());
    v["output"] = json!(format!(
        "{}: Critical A shell was spawned in a container with an attached terminal (user=root \
         user_loginuid=-1 k8s.ns={ns} k8s.pod={name} container={short} shell=sh parent=runc \
         cmdline=sh terminal=34816 container_id={short} image={BUSYBOX})",
        now.strftime("%H:%M:%S%.9f")
    ));
    let f = &mut v["output_fields"];
    f["evt.time"] = json!(now.as_nanosecond() as i64);
    f["container.image.repository"] = json!(BUSYBOX.split(':').next());
    f["k8s.pod.uid"] = json!(pod.metadata.uid.as_deref().unwrap());
    v.to_string()
}

/// Runs `script` in a busybox pod's container through the kubelet (`kubectl exec`).
pub fn exec(pod: &Pod, container: &str, script: &str) -> Output {
    kubectl(&[
        "exec",
        "-n",
        pod.metadata.namespace.as_deref().unwrap(),
        pod.metadata.name.as_deref().unwrap(),
        "-c",
        container,
        "--",
        "sh",
        "-c",
        script,
    ])
}

/// Where the kubelet reads static pod manifests.
pub const STATIC_PODS: &str = "/run/falco-responder-node/manifests";

/// SIGKILLs container `cid`'s PID 1 from the host (through containerd), as a crash would.
pub fn kill_container(cid: &str) {
    let out = Command::new("ctr")
        .args([
            "--address",
            "/run/falco-responder-node/containerd.sock",
            "-n",
            "k8s.io",
            "tasks",
            "kill",
            "--signal",
            "SIGKILL",
            cid,
        ])
        .output()
        .unwrap_or_else(|e| panic!("running ctr: {e}"));
    assert!(
        out.status.success(),
        "ctr tasks kill {cid}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
