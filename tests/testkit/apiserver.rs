//! A REAL kube-apiserver + etcd (+ kube-controller-manager on demand) on loopback.
//!
//! No cluster, no containers: each [`ApiServer`] runs a private etcd and kube-apiserver on free
//! 127.0.0.1 ports in a temp dir (`$TMPDIR/falco-responder-test-*`), with RBAC, a static admin
//! token (group `system:masters`), ServiceAccount token issuing (TokenRequest) and a Metadata-level
//! audit log. See `docs/real-kube-apiserver.md` (shared docs) for how the binaries are built.
//!
//! Binaries: `TEST_ASSET_KUBE_APISERVER`, else `$KUBEBUILDER_ASSETS/kube-apiserver`, else
//! `~/.cache/falco-responder/kubernetes-1.20.2/kube-apiserver` (from `scripts/kube-test-env.sh`);
//! `TEST_ASSET_ETCD`, else `$KUBEBUILDER_ASSETS/etcd`, else `etcd` on PATH.
//!
//! No orphans: every server runs under a small bash watchdog that kills it as soon as the test
//! process is gone (normal exit, panic, SIGINT, SIGKILL) — no `unsafe`, no `prctl`. A per-instance
//! janitor removes the temp dir once the test process is gone (the shared instance is never
//! dropped). Non-shared instances are also stopped and removed on `Drop`.
//!
//! The examples include this file by path (as `support`): it needs nothing else here.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use k8s_openapi::api::events::v1::Event as KubeEvent;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{DynamicObject, GroupVersionKind};
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use kube::{Client, Config};
use serde_json::{Value, json};

const HINT: &str =
    "run scripts/kube-test-env.sh (or set TEST_ASSET_KUBE_APISERVER/TEST_ASSET_ETCD)";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Field manager used by [`apply_manifests`].
pub const FIELD_MANAGER: &str = "falco-responder-tests";

/// Watchdog run as `bash -c WATCHDOG watchdog TESTPID DIR NAME LOG server args...`.
/// Starts the server, records its pid in DIR/NAME.pid and kills it as soon as the test process
/// is gone (SIGKILL at once: the data is throwaway), or DIR/NAME.stop exists or the watchdog gets
/// SIGTERM (SIGTERM, then SIGKILL after 5 s), or the server died. SIGINT/SIGHUP are ignored so that Ctrl-C on the test run goes through the
/// "test process gone" path instead of orphaning the server.
const WATCHDOG: &str = r#"
testpid=$1; dir=$2; name=$3; log=$4; shift 4
trap '' INT HUP
"$@" >>"$log" 2>&1 </dev/null &
child=$!
echo "$child" >"$dir/$name.pid"
stop() {
  if kill -0 "$testpid" 2>/dev/null; then
    kill "$child" 2>/dev/null
    i=0
    while kill -0 "$child" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
  fi
  kill -9 "$child" 2>/dev/null
  wait "$child" 2>/dev/null
  rc=$?
  rm -f "$dir/$name.pid"
}
trap 'stop; exit 0' TERM
while kill -0 "$testpid" 2>/dev/null && kill -0 "$child" 2>/dev/null && [ ! -e "$dir/$name.stop" ]; do
  sleep 0.2
done
stop
exit "$rc"
"#;

/// Janitor run as `bash -c JANITOR janitor TESTPID DIR`: once the test process is gone, waits for
/// the watchdogs, SIGKILLs anything still named in DIR/*.pid and removes DIR. Exits early when
/// DIR disappears (a non-shared instance was dropped).
const JANITOR: &str = r#"
testpid=$1; dir=$2
trap '' INT HUP TERM
while kill -0 "$testpid" 2>/dev/null && [ -d "$dir" ]; do sleep 0.5; done
[ -d "$dir" ] || exit 0
sleep 2
for f in "$dir"/*.pid; do [ -e "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done
rm -rf "$dir"
"#;

/// A private etcd + kube-apiserver on loopback. See the module docs.
pub struct ApiServer {
    dir: PathBuf,
    /// `Some` for non-shared instances: removed on drop (after the servers are stopped).
    tempdir: Option<tempfile::TempDir>,
    apiserver_bin: PathBuf,
    apiserver_args: Vec<String>,
    port: u16,
    etcd_port: u16,
    /// The address it listens on: 127.0.0.1, or the pods' gateway when a node runs pods.
    host: String,
    admin_token: String,
    etcd: Mutex<Option<Child>>,
    apiserver: Mutex<Option<Child>>,
    janitor: Mutex<Option<Child>>,
}

static SHARED: OnceLock<ApiServer> = OnceLock::new();

impl ApiServer {
    /// Start a private etcd + kube-apiserver on free loopback ports in a temp dir and wait for
    /// `/readyz` (200 with the admin token). Retries once (free-port race); panics with the
    /// servers' last log lines on failure or after 60 s.
    pub fn start() -> ApiServer {
        Self::start_on("127.0.0.1", false)
    }

    /// The same for a cluster with a real node (`testkit::node`): it listens on `ip` (the pods'
    /// gateway, reachable from pods and from here, in its certificate) and advertises it as the
    /// `kubernetes` Service's endpoint, and the ServiceAccount admission plugin mounts each pod's
    /// token (the controller manager of [`Self::start_controller_manager`] makes them).
    pub fn start_for_node(ip: &str) -> ApiServer {
        Self::start_on(ip, true)
    }

    fn start_on(host: &str, node: bool) -> ApiServer {
        let apiserver_bin = find_binary("TEST_ASSET_KUBE_APISERVER", "kube-apiserver", || {
            std::env::var_os("HOME").map(|h| {
                PathBuf::from(h).join(".cache/falco-responder/kubernetes-1.20.2/kube-apiserver")
            })
        });
        let etcd_bin = find_binary("TEST_ASSET_ETCD", "etcd", || which("etcd"));
        match Self::try_start(&apiserver_bin, &etcd_bin, host, node) {
            Ok(server) => server,
            Err(first) => {
                eprintln!("support::ApiServer: first start failed, retrying once: {first}");
                Self::try_start(&apiserver_bin, &etcd_bin, host, node)
                    .unwrap_or_else(|e| panic!("support::ApiServer failed to start: {e}"))
            }
        }
    }

    /// One instance shared by all tests of the current test binary, started lazily (tests keep
    /// apart by namespace). Never
    /// stopped by tests (do not call `stop_apiserver` on it); its processes and temp dir go away
    /// shortly after the test process exits.
    pub fn shared() -> &'static ApiServer {
        SHARED.get_or_init(ApiServer::start)
    }

    fn try_start(
        apiserver_bin: &Path,
        etcd_bin: &Path,
        host: &str,
        node: bool,
    ) -> Result<ApiServer, String> {
        let tempdir = tempfile::Builder::new()
            .prefix("falco-responder-test-")
            .tempdir_in(std::env::temp_dir())
            .map_err(|e| format!("creating temp dir: {e}"))?;
        let dir = tempdir.path().to_path_buf();
        let certs = dir.join("certs");
        fs::create_dir_all(&certs).map_err(|e| format!("creating {}: {e}", certs.display()))?;

        let admin_token = uuid::Uuid::new_v4().simple().to_string();
        write(
            &dir.join("tokens.csv"),
            &format!("{admin_token},admin,admin-uid,system:masters\n"),
        )?;
        write(
            &dir.join("audit-policy.yaml"),
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n",
        )?;
        let sa_key = dir.join("sa.key");
        let sa_pub = dir.join("sa.pub");
        run_quiet(
            Command::new("openssl")
                .arg("genrsa")
                .arg("-out")
                .arg(&sa_key)
                .arg("2048"),
        )?;
        run_quiet(
            Command::new("openssl")
                .args(["rsa", "-pubout", "-in"])
                .arg(&sa_key)
                .arg("-out")
                .arg(&sa_pub),
        )?;

        let (etcd_port, etcd_peer_port) = (free_port()?, free_port()?);
        let port = free_port_on(host)?;

        let janitor = Command::new("bash")
            .arg("-c")
            .arg(JANITOR)
            .arg("janitor")
            .arg(std::process::id().to_string())
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawning bash (janitor): {e}"))?;

        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let etcd_args: Vec<String> = vec![
            format!("--data-dir={}", dir.join("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer_port}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer_port}"),
            format!("--initial-cluster=default=http://127.0.0.1:{etcd_peer_port}"),
            "--log-level=warn".into(),
        ];
        let etcd = spawn_watchdog(&dir, "etcd", etcd_bin, &etcd_args)?;

        let mut apiserver_args: Vec<String> = vec![
            format!("--etcd-servers={etcd_url}"),
            format!("--cert-dir={}", certs.display()),
            format!("--secure-port={port}"),
            format!("--bind-address={host}"),
            "--insecure-port=0".into(),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--service-account-issuer=https://kubernetes.default.svc".into(),
            format!("--service-account-key-file={}", sa_pub.display()),
            format!("--service-account-signing-key-file={}", sa_key.display()),
            "--authorization-mode=RBAC".into(),
            format!("--token-auth-file={}", dir.join("tokens.csv").display()),
            format!(
                "--audit-policy-file={}",
                dir.join("audit-policy.yaml").display()
            ),
            format!("--audit-log-path={}", dir.join("audit.log").display()),
            "--audit-log-mode=blocking".into(),
            "--audit-log-format=json".into(),
        ];
        if node {
            apiserver_args.push(format!("--advertise-address={host}"));
        } else {
            // No controller manager makes the `default` ServiceAccounts the plugin requires.
            apiserver_args.push("--disable-admission-plugins=ServiceAccount".into());
        }

        let server = ApiServer {
            dir,
            tempdir: Some(tempdir),
            apiserver_bin: apiserver_bin.to_path_buf(),
            apiserver_args,
            port,
            etcd_port,
            host: host.to_string(),
            admin_token,
            etcd: Mutex::new(Some(etcd)),
            apiserver: Mutex::new(None),
            janitor: Mutex::new(Some(janitor)),
        };
        // On error `server` is dropped: servers stopped, temp dir removed.
        wait_for_tcp(etcd_port, &server.etcd, Duration::from_secs(20))
            .map_err(|e| format!("{e}\n{}", server.log_tails()))?;
        server.spawn_apiserver()?;
        server.wait_ready()?;
        Ok(server)
    }

    fn spawn_apiserver(&self) -> Result<(), String> {
        let _ = fs::remove_file(self.dir.join("kube-apiserver.stop"));
        let child = spawn_watchdog(
            &self.dir,
            "kube-apiserver",
            &self.apiserver_bin,
            &self.apiserver_args,
        )?;
        *self.apiserver.lock().unwrap() = Some(child);
        Ok(())
    }

    fn wait_ready(&self) -> Result<(), String> {
        let start = Instant::now();
        let mut last_err = String::from("not probed yet");
        while start.elapsed() < READY_TIMEOUT {
            for (name, child) in [("etcd", &self.etcd), ("kube-apiserver", &self.apiserver)] {
                if let Some(c) = child.lock().unwrap().as_mut()
                    && let Ok(Some(status)) = c.try_wait()
                {
                    return Err(format!(
                        "{name} exited early (watchdog: {status})\n{}",
                        self.log_tails()
                    ));
                }
            }
            match self.probe_readyz() {
                Ok(()) => return Ok(()),
                Err(e) => last_err = e,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(format!(
            "kube-apiserver not ready after {:?} (last probe: {last_err})\n{}",
            READY_TIMEOUT,
            self.log_tails()
        ))
    }

    /// One `GET /readyz` with the admin token, through kube (TLS verified against the CA file).
    /// Runs on its own thread + runtime so `start()` may be called from sync or async tests.
    fn probe_readyz(&self) -> Result<(), String> {
        if !self.ca_file().exists() {
            return Err("serving cert not written yet".into());
        }
        let kubeconfig = self.admin_kubeconfig();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async move {
                let client = Client::try_from(config_from_file(&kubeconfig).await?)
                    .map_err(|e| e.to_string())?;
                let req = http::Request::get("/readyz")
                    .body(Vec::new())
                    .map_err(|e| e.to_string())?;
                match tokio::time::timeout(Duration::from_secs(5), client.request_text(req)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("readyz timed out".to_string()),
                }
            })
        })
        .join()
        .map_err(|_| "readyz probe thread panicked".to_string())?
    }

    /// `https://127.0.0.1:PORT` (the pods' gateway instead of 127.0.0.1 with a node)
    pub fn url(&self) -> String {
        format!("https://{}:{}", self.host, self.port)
    }

    /// The address it listens on.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT` of the private etcd.
    pub fn etcd_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.etcd_port)
    }

    /// Static bearer token of user `admin` in group `system:masters`.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The temp dir holding certs, keys, logs, kubeconfigs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The apiserver's self-signed serving cert bundle (`cert-dir/apiserver.crt`).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("certs").join("apiserver.crt")
    }

    /// kubeconfig (in the temp dir) for the admin token.
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.kubeconfig_for_token(&self.admin_token)
    }

    /// kubeconfig (in the temp dir) for `token`: server `https://127.0.0.1:PORT`,
    /// `certificate-authority` = [`Self::ca_file`], namespace `default`.
    pub fn kubeconfig_for_token(&self, token: &str) -> PathBuf {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        token.hash(&mut h);
        let path = self
            .dir
            .join(format!("kubeconfig-{:016x}.yaml", h.finish()));
        // JSON string literals are valid YAML double-quoted scalars.
        let q = |s: &str| serde_json::to_string(s).unwrap();
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: test\n  user:\n    token: {}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n    namespace: default\ncurrent-context: test\n",
            q(&self.url()),
            q(&self.ca_file().to_string_lossy()),
            q(token),
        );
        // Write + rename so concurrent readers never see a partial file.
        let tmp = self
            .dir
            .join(format!(".{}.{}", uuid::Uuid::new_v4().simple(), "tmp"));
        write(&tmp, &text).unwrap_or_else(|e| panic!("{e}"));
        fs::rename(&tmp, &path).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }

    /// `kube::Config` for the admin token (TLS verified against the CA file).
    pub async fn admin_config(&self) -> Config {
        self.config_for_token(&self.admin_token).await
    }

    /// `kube::Config` for `token` (TLS verified against the CA file).
    pub async fn config_for_token(&self, token: &str) -> Config {
        let path = self.kubeconfig_for_token(token);
        config_from_file(&path)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A fresh admin `kube::Client`, bound to the calling test's tokio runtime.
    pub async fn admin_client(&self) -> Client {
        self.client_for_token(&self.admin_token).await
    }

    /// A fresh `kube::Client` authenticating with `token`, bound to the calling runtime.
    pub async fn client_for_token(&self, token: &str) -> Client {
        Client::try_from(self.config_for_token(token).await)
            .unwrap_or_else(|e| panic!("building kube client: {e}"))
    }

    /// Stop only kube-apiserver (etcd keeps running); blocks until the process is gone.
    /// Do not call on [`ApiServer::shared`]: use a private [`ApiServer::start`] instance.
    pub fn stop_apiserver(&self) {
        let child = self.apiserver.lock().unwrap().take();
        if let Some(child) = child {
            stop_watchdog(&self.dir, "kube-apiserver", child);
        }
    }

    /// Start kube-apiserver again on the SAME port with the same certs/keys/tokens (stopping it
    /// first if it is running) and wait for readiness; panics with its log tail on failure.
    pub fn restart_apiserver(&self) {
        self.stop_apiserver();
        // The port was free a moment ago; give the kernel a beat in case of a lingering socket.
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpListener::bind((self.host.as_str(), self.port)).is_err()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        self.spawn_apiserver().unwrap_or_else(|e| panic!("{e}"));
        self.wait_ready()
            .unwrap_or_else(|e| panic!("restart_apiserver: {e}"));
    }

    /// Path of the audit log (JSON lines, level Metadata for every request).
    pub fn audit_log(&self) -> PathBuf {
        self.dir.join("audit.log")
    }

    /// All audit events recorded so far (every stage), one JSON object per line.
    pub fn audit_events(&self) -> Vec<Value> {
        let text = fs::read_to_string(self.audit_log()).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Counts `ResponseComplete` audit entries with this `verb` (`get`, `list`, `create`,
    /// `update`, `patch`, `delete`, `watch`, ...), `resource` and `name`, in any namespace.
    /// `resource` is `pods` (no subresource) or `pods/status` style (resource + subresource).
    /// `name` `"*"` matches any name (and none, e.g. `list`).
    ///
    /// The apiserver writes the ResponseComplete entry right after the response is sent, so
    /// this polls until the count is stable for 150 ms (at most 2 s) before returning.
    pub fn count_audit(&self, verb: &str, resource: &str, name: &str) -> usize {
        self.count_audit_in(verb, resource, None, name)
    }

    /// Like [`Self::count_audit`], restricted to namespace `ns` when `Some`.
    pub fn count_audit_in(
        &self,
        verb: &str,
        resource: &str,
        ns: Option<&str>,
        name: &str,
    ) -> usize {
        let (res, sub) = match resource.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (resource, None),
        };
        let count = || {
            self.audit_events()
                .iter()
                .filter(|e| {
                    let o = &e["objectRef"];
                    e["stage"] == "ResponseComplete"
                        && e["verb"] == verb
                        && o["resource"] == res
                        && o["subresource"].as_str() == sub
                        && (name == "*" || o["name"] == name)
                        && ns.is_none_or(|ns| o["namespace"] == ns)
                })
                .count()
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut last = count();
        loop {
            std::thread::sleep(Duration::from_millis(150));
            let now = count();
            if now == last || Instant::now() > deadline {
                return now;
            }
            last = now;
        }
    }

    /// Last lines of the etcd and kube-apiserver logs, for failure messages.
    pub fn log_tails(&self) -> String {
        let mut out = String::new();
        for name in ["etcd", "kube-apiserver"] {
            let path = self.dir.join(format!("{name}.log"));
            let text = fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(30)..];
            out.push_str(&format!(
                "--- last lines of {} ---\n{}\n",
                path.display(),
                tail.join("\n")
            ));
        }
        out
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(c) = take_child(&mut self.apiserver) {
            stop_watchdog(&self.dir, "kube-apiserver", c);
        }
        if let Some(c) = take_child(&mut self.etcd) {
            stop_watchdog(&self.dir, "etcd", c);
        }
        // Dropping the TempDir removes the dir; the janitor notices and exits.
        drop(self.tempdir.take());
        if let Some(mut j) = take_child(&mut self.janitor) {
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = j.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = j.kill();
            let _ = j.wait();
        }
    }
}

/// The child a slot holds, even after a test panicked while holding its lock (drop still stops it).
fn take_child(slot: &mut Mutex<Option<Child>>) -> Option<Child> {
    slot.get_mut().unwrap_or_else(|e| e.into_inner()).take()
}

/// Events recorded on pod `ns/pod`, as `kubectl get events` shows them.
pub async fn events_for(client: &Client, ns: &str, pod: &str) -> Vec<KubeEvent> {
    Api::<KubeEvent>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(pod))
        .collect()
}

/// The same, once there are `n` (they are written just after the answer), at most 5 s.
pub async fn wait_events(client: &Client, ns: &str, pod: &str, n: usize) -> Vec<KubeEvent> {
    for _ in 0..100 {
        let events = events_for(client, ns, pod).await;
        if events.len() >= n {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    events_for(client, ns, pod).await
}

/// Creates a uniquely named namespace (`<prefix>-<8 hex>`) and returns its name.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let name = format!(
        "{}-{suffix}",
        prefix.to_ascii_lowercase().trim_end_matches('-')
    );
    let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": name } })).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
    name
}

/// Creates pod `name` in `ns` (container `main`, image `alpine`, `spec.nodeName: node-1` so a
/// DELETE is graceful and leaves it Terminating) with `annotations`, then sets
/// `status.phase = Running` and `status.containerStatuses[0].containerID =
/// "containerd://<container_id>"` through `pods/status`. Returns the pod as stored (with uid).
pub async fn create_pod(
    client: &Client,
    ns: &str,
    name: &str,
    container_id: &str,
    annotations: &[(&str, &str)],
) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let annotations: serde_json::Map<String, Value> = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), Value::from(*v)))
        .collect();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": name, "namespace": ns, "annotations": annotations },
        "spec": {
            "nodeName": "node-1",
            "containers": [{ "name": "main", "image": "alpine", "command": ["sleep", "infinity"] }]
        }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("creating pod {ns}/{name}: {e}"));
    let status = json!({
        "status": {
            "phase": "Running",
            "containerStatuses": [ready_container("main", container_id, json!({}))]
        }
    });
    kubelet_status(&pods, ns, name, &status).await
}

/// A started, ready container as the kubelet reports it; `running`: its `state.running`.
fn ready_container(name: &str, container_id: &str, running: Value) -> Value {
    json!({
        "name": name,
        "image": "alpine",
        "imageID": "",
        "containerID": format!("containerd://{container_id}"),
        "ready": true,
        "restartCount": 0,
        "started": true,
        "state": { "running": running }
    })
}

/// Sets the status of pod `ns/name` as the kubelet would (there is none here).
async fn kubelet_status(pods: &Api<Pod>, ns: &str, name: &str, status: &Value) -> Pod {
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap_or_else(|e| panic!("setting status of pod {ns}/{name}: {e}"))
}

/// Creates ServiceAccount `ns/name` (if missing) and returns a 1-hour bearer token for it from
/// the TokenRequest API. Requests with it are authorized by RBAC only.
pub async fn service_account_token(client: &Client, ns: &str, name: &str) -> String {
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let sa: ServiceAccount =
        serde_json::from_value(json!({ "metadata": { "name": name } })).unwrap();
    match sas.create(&PostParams::default(), &sa).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("creating ServiceAccount {ns}/{name}: {e}"),
    }
    let tr = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let tr = sas
        .create_token_request(name, &PostParams::default(), &tr)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for {ns}/{name}: {e}"));
    tr.status
        .unwrap_or_else(|| panic!("TokenRequest for {ns}/{name} returned no status"))
        .token
}

/// Server-side-applies (field manager [`FIELD_MANAGER`], forced) every document of a
/// multi-document YAML file and returns `"Kind/name"` of each applied object, in file order.
///
/// With `Some(ns)` the manifests are relocated into `ns`, so parallel tests don't fight over
/// shared objects:
/// - namespaced objects get `metadata.namespace = ns`; every `subjects[].namespace` becomes `ns`;
/// - a `Namespace` object is renamed to `ns`;
/// - other cluster-scoped objects (ClusterRole, ClusterRoleBinding, ...) are renamed to
///   `<name>-<ns>`, and `roleRef.name` of bindings pointing at a ClusterRole renamed this way
///   follows.
///
/// With `None` objects are applied as written (namespaced objects without a namespace go to
/// `default`).
pub async fn apply_manifests(client: &Client, path: &Path, ns: Option<&str>) -> Vec<String> {
    let text =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|e| panic!("parsing YAML {}: {e}", path.display()));
    let mut docs: Vec<Value> = docs.into_iter().filter(|d| d.is_object()).collect();

    let mut kinds: HashMap<(String, String), (ApiResource, ApiCapabilities)> = HashMap::new();
    for doc in &docs {
        let (api_version, kind) = type_of(doc, path);
        if !kinds.contains_key(&(api_version.clone(), kind.clone())) {
            let (group, version) = match api_version.split_once('/') {
                Some((g, v)) => (g, v),
                None => ("", api_version.as_str()),
            };
            let found =
                kube::discovery::pinned_kind(client, &GroupVersionKind::gvk(group, version, &kind))
                    .await
                    .unwrap_or_else(|e| panic!("resolving {api_version} {kind}: {e}"));
            kinds.insert((api_version, kind), found);
        }
    }

    if let Some(ns) = ns {
        // Renamed ClusterRoles, so bindings' roleRef can follow.
        let mut renamed_cluster_roles: HashMap<String, String> = HashMap::new();
        for doc in docs.iter_mut() {
            let (api_version, kind) = type_of(doc, path);
            let scope = &kinds[&(api_version, kind.clone())].1.scope;
            let meta = doc
                .get_mut("metadata")
                .and_then(Value::as_object_mut)
                .unwrap_or_else(|| panic!("{}: {kind} without metadata", path.display()));
            match scope {
                Scope::Namespaced => {
                    meta.insert("namespace".into(), Value::from(ns));
                }
                Scope::Cluster if kind == "Namespace" => {
                    meta.insert("name".into(), Value::from(ns));
                }
                Scope::Cluster => {
                    let old = meta["name"].as_str().unwrap_or_default().to_string();
                    let new = format!("{old}-{ns}");
                    meta.insert("name".into(), Value::from(new.clone()));
                    if kind == "ClusterRole" {
                        renamed_cluster_roles.insert(old, new);
                    }
                }
            }
            if let Some(subjects) = doc.get_mut("subjects").and_then(Value::as_array_mut) {
                for s in subjects.iter_mut().filter_map(Value::as_object_mut) {
                    if s.contains_key("namespace")
                        || s.get("kind").and_then(Value::as_str) == Some("ServiceAccount")
                    {
                        s.insert("namespace".into(), Value::from(ns));
                    }
                }
            }
        }
        for doc in docs.iter_mut() {
            if let Some(role_ref) = doc.get_mut("roleRef").and_then(Value::as_object_mut) {
                let is_cluster_role =
                    role_ref.get("kind").and_then(Value::as_str) == Some("ClusterRole");
                let name = role_ref
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if let (true, Some(new)) = (is_cluster_role, renamed_cluster_roles.get(name)) {
                    role_ref.insert("name".into(), Value::from(new.clone()));
                }
            }
        }
    }

    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let mut applied = Vec::new();
    for doc in docs {
        let (api_version, kind) = type_of(&doc, path);
        let (ar, caps) = &kinds[&(api_version, kind.clone())];
        let name = doc["metadata"]["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: {kind} without metadata.name", path.display()))
            .to_string();
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => {
                let ns = doc["metadata"]["namespace"].as_str().unwrap_or("default");
                Api::namespaced_with(client.clone(), ns, ar)
            }
            Scope::Cluster => Api::all_with(client.clone(), ar),
        };
        api.patch(&name, &pp, &Patch::Apply(&doc))
            .await
            .unwrap_or_else(|e| panic!("applying {kind}/{name} from {}: {e}", path.display()));
        applied.push(format!("{kind}/{name}"));
    }
    applied
}

// ---------------------------------------------------------------------------------------------

fn type_of(doc: &Value, path: &Path) -> (String, String) {
    let api_version = doc["apiVersion"].as_str();
    let kind = doc["kind"].as_str();
    match (api_version, kind) {
        (Some(a), Some(k)) => (a.to_string(), k.to_string()),
        _ => panic!(
            "{}: document without apiVersion/kind: {doc}",
            path.display()
        ),
    }
}

async fn config_from_file(path: &Path) -> Result<Config, String> {
    let kc = Kubeconfig::read_from(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| format!("kube config from {}: {e}", path.display()))
}

fn find_binary(env: &str, name: &str, fallback: impl FnOnce() -> Option<PathBuf>) -> PathBuf {
    let candidate = std::env::var_os(env)
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("KUBEBUILDER_ASSETS").map(|d| PathBuf::from(d).join(name)))
        .or_else(fallback);
    match candidate {
        Some(p) if p.is_file() => p,
        Some(p) => panic!("{name} not found at {}: {HINT}", p.display()),
        None => panic!("{name} not found: {HINT}"),
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    fs::File::create(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

fn run_quiet(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {cmd:?}: {e} (is openssl installed?)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn free_port() -> Result<u16, String> {
    free_port_on("127.0.0.1")
}

fn free_port_on(host: &str) -> Result<u16, String> {
    TcpListener::bind((host, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

fn spawn_watchdog(dir: &Path, name: &str, bin: &Path, args: &[String]) -> Result<Child, String> {
    let log = dir.join(format!("{name}.log"));
    Command::new("bash")
        .arg("-c")
        .arg(WATCHDOG)
        .arg("watchdog")
        .arg(std::process::id().to_string())
        .arg(dir)
        .arg(name)
        .arg(&log)
        .arg(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawning bash watchdog for {name}: {e}"))
}

/// Asks a watchdog to stop its server (stop file) and waits for it (it SIGKILLs the server
/// after 5 s); SIGKILLs the watchdog itself if it does not exit within 10 s.
fn stop_watchdog(dir: &Path, name: &str, mut child: Child) {
    let _ = fs::File::create(dir.join(format!("{name}.stop")));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => break,
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    let _ = fs::remove_file(dir.join(format!("{name}.stop")));
}

fn wait_for_tcp(
    port: u16,
    watchdog: &Mutex<Option<Child>>,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Some(c) = watchdog.lock().unwrap().as_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            return Err(format!("etcd exited early (watchdog: {status})"));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "etcd not listening on 127.0.0.1:{port} after {timeout:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---- CRDs and tools for the Helm/kubectl tests (tests/helm_e2e.rs) ---------------------------

/// An `apiextensions.k8s.io/v1` CRD around the `openAPIV3Schema` of a datree CRDs-catalog file
/// (`tests/schemas/.../<kind>_<version>.json`). The catalog closes objects with
/// `additionalProperties: false`, which a structural CRD schema may not say, and adds `$schema`:
/// both are dropped (the API server prunes unknown fields instead), and so are `default`s
/// (kube-apiserver 1.20 rejects the catalog's `default: ""`; defaulting is not under test), with
/// the list-map markers that need them.
pub fn crd_from_schema(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    schema: &Path,
) -> Value {
    fn clean(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("$schema");
                if m.contains_key("type") {
                    m.remove("default");
                    // A list-map needs its keys defaulted; an atomic list is all we need.
                    m.remove("x-kubernetes-list-map-keys");
                    m.remove("x-kubernetes-list-type");
                }
                if m.get("additionalProperties") == Some(&Value::Bool(false)) {
                    m.remove("additionalProperties");
                }
                m.values_mut().for_each(clean);
            }
            Value::Array(a) => a.iter_mut().for_each(clean),
            _ => {}
        }
    }
    let text =
        fs::read_to_string(schema).unwrap_or_else(|e| panic!("reading {}: {e}", schema.display()));
    let mut schema: Value = serde_json::from_str(&text).unwrap();
    clean(&mut schema);
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": format!("{plural}.{group}") },
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": { "kind": kind, "plural": plural, "singular": kind.to_lowercase(),
                       "listKind": format!("{kind}List") },
            "versions": [{ "name": version, "served": true, "storage": true,
                           "schema": { "openAPIV3Schema": schema } }]
        }
    })
}

/// Server-side-applies CRD objects and waits until each is Established (its kind is served).
pub async fn ensure_crds(client: &Client, crds: &[Value]) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    for crd in crds {
        let name = crd["metadata"]["name"].as_str().unwrap();
        api.patch(name, &pp, &Patch::Apply(crd))
            .await
            .unwrap_or_else(|e| panic!("creating CRD {name}: {e}"));
    }
    for crd in crds {
        let name = crd["metadata"]["name"].as_str().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let c = api.get(name).await.unwrap();
            let established = c.status.and_then(|s| s.conditions).is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
            if established {
                break;
            }
            assert!(Instant::now() < deadline, "CRD {name} not Established");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

// --- kube-controller-manager ----------------------------------------------------------------

/// The controllers a guard test needs: Deployments make ReplicaSets, ReplicaSets and
/// StatefulSets make pods with real ownerReferences and count ready replicas, Jobs/CronJobs,
/// and the disruption controller computes PodDisruptionBudget status (`disruptionsAllowed`).
/// No scheduler and no kubelet: [`mark_pod_ready`] plays the kubelet's part.
pub const CONTROLLERS: &str = "deployment,replicaset,statefulset,job,cronjob,disruption";

/// With a real node, every default controller: ServiceAccounts and their tokens, Endpoints for
/// kube-proxy, the garbage collector and the namespace controller besides [`CONTROLLERS`].
pub const NODE_CONTROLLERS: &str = "*";

static CONTROLLER_MANAGERS: Mutex<Vec<u16>> = Mutex::new(Vec::new());

impl ApiServer {
    /// Started with [`Self::start_for_node`].
    pub fn is_for_node(&self) -> bool {
        self.apiserver_args
            .iter()
            .any(|a| a.starts_with("--advertise-address="))
    }

    /// Starts kube-controller-manager ([`CONTROLLERS`]) against this server, once per
    /// server; later calls return at once. Binary: `TEST_ASSET_KUBE_CONTROLLER_MANAGER`, else
    /// `$KUBEBUILDER_ASSETS/kube-controller-manager`, else the one `scripts/kube-test-env.sh`
    /// builds. Stopped like the other servers (watchdog) when the test process is gone.
    pub fn start_controller_manager(&self) {
        let controllers = if self.is_for_node() {
            NODE_CONTROLLERS
        } else {
            CONTROLLERS
        };
        self.start_controllers(controllers);
    }

    /// [`Self::start_controller_manager`] with these `--controllers`: e.g. the garbage
    /// collector, on a private server only (it deletes the other tests' pods that claim owners
    /// that do not exist).
    pub fn start_controllers(&self, controllers: &str) {
        let mut started = CONTROLLER_MANAGERS.lock().unwrap();
        if started.contains(&self.port) {
            return;
        }
        let bin = find_binary(
            "TEST_ASSET_KUBE_CONTROLLER_MANAGER",
            "kube-controller-manager",
            || {
                std::env::var_os("HOME").map(|h| {
                    PathBuf::from(h)
                        .join(".cache/falco-responder/kubernetes-1.20.2/kube-controller-manager")
                })
            },
        );
        let mut args: Vec<String> = vec![
            format!("--kubeconfig={}", self.admin_kubeconfig().display()),
            format!("--controllers={controllers}"),
            "--leader-elect=false".into(),
            // No serving at all: parallel test binaries would fight over the default ports.
            "--port=0".into(),
            "--secure-port=0".into(),
            // Sync quickly: tests wait on replica counts and PDB status.
            "--concurrent-deployment-syncs=2".into(),
            "--v=1".into(),
        ];
        if self.is_for_node() {
            // Pods get a token Secret signed with the key the API server checks, and the CA.
            args.push(format!(
                "--service-account-private-key-file={}",
                self.dir.join("sa.key").display()
            ));
            args.push(format!("--root-ca-file={}", self.ca_file().display()));
        }
        let mut child = spawn_watchdog(&self.dir, "kube-controller-manager", &bin, &args)
            .unwrap_or_else(|e| panic!("{e}"));
        // It has no health endpoint here (serving is off): a quick early exit is the failure.
        std::thread::sleep(Duration::from_millis(500));
        if let Ok(Some(status)) = child.try_wait() {
            let log = fs::read_to_string(self.dir.join("kube-controller-manager.log"))
                .unwrap_or_default();
            panic!("kube-controller-manager exited at start ({status}):\n{log}");
        }
        // The watchdog stops it when the test process is gone; no handle is kept.
        drop(child);
        started.push(self.port);
    }

    /// Last lines of the controller manager's log, for failure messages.
    pub fn controller_manager_log_tail(&self) -> String {
        let text =
            fs::read_to_string(self.dir.join("kube-controller-manager.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// Plays the kubelet for a pod made by a controller: `phase: Running`, condition `Ready`
/// (what ReplicaSets, StatefulSets and the disruption controller count) and a container id,
/// through the `pods/status` subresource.
pub async fn mark_pod_ready(client: &Client, ns: &str, name: &str, container_id: &str) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod = pods
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("getting pod {ns}/{name}: {e}"));
    let container = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .map(|c| c.name.clone())
        .unwrap_or_else(|| "main".into());
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = json!({
        "status": {
            "phase": "Running",
            "conditions": [
                { "type": "Ready", "status": "True", "lastTransitionTime": now },
                { "type": "ContainersReady", "status": "True", "lastTransitionTime": now }
            ],
            "containerStatuses": [
                ready_container(&container, container_id, json!({ "startedAt": now }))
            ]
        }
    });
    kubelet_status(&pods, ns, name, &status).await
}

/// Polls `check` every 100 ms until it returns `Some`, panicking with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
