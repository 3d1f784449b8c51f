//! The benchmark driver of `scripts/bench.sh` (run it through the script: it installs wrk, builds
//! the release binaries and the criterion micro-benchmarks first).
//!
//! Starts a private kube-apiserver + etcd (the test harness in `tests/testkit/apiserver.rs`), runs the real
//! release binary of falco-responder next to its baselines in the same run, and writes
//! `docs/BENCHMARKS.md`:
//! 1. no-action throughput (wrk, pinned: server `taskset -c 0` with TOKIO_WORKER_THREADS=1, wrk
//!    `taskset -c 1`) against `examples/bench_bare_hyper.rs`;
//! 2. delete latency against a bare kube client loop (GET + DELETE with a uid precondition), with
//!    and without the Kubernetes Event POST; a burst of 200 events for 200 pods;
//! 3. start: exec → first 200 on /readyz, and `falco-responder once` exec → exit;
//! 4. RSS (VmRSS/VmHWM) and binary sizes;
//! 5. an event storm for one pod (API calls counted in the apiserver's audit log);
//! 6. the criterion medians of `benches/decode_decide.rs`.
//!
//! Environment (set by the script): FALCO_RESPONDER_BIN, BARE_HYPER_BIN, MUSL_BIN, CRITERION_DIR,
//! BENCH_OUT, BENCH_COMMIT (the commit the binaries were built from); optional
//! BENCH_CONNECTIONS (64), BENCH_SECONDS (4 per wrk run), BENCH_ROUNDS (5), BENCH_PODS (400 per
//! latency series), BENCH_BURST (200), BENCH_STARTS (20), BENCH_QUIET_WAIT (180: seconds to wait
//! for a quiet machine before measuring). Loopback only; every loop is bounded.
//! BENCH_ONLY=guards runs only the guards' section (its own apiserver, the same environment;
//! the release binary built) and prints its table without writing BENCH_OUT; BENCH_ONLY=hostile
//! runs only the hostile shapes (`bench_parts/shapes.rs`: no apiserver, MUSL_BIN) the same way;
//! BENCH_ONLY=start (the start on one CPU) and BENCH_ONLY=once (the one-shot mode) likewise for
//! their rows of (3); BENCH_ONLY=contain (`bench_parts/contain.rs`) the containment's cost
//! next to a deletion's, likewise; BENCH_ONLY=envelopes the rows of (1) for the realistic event
//! in each envelope, beside bare hyper.

#[path = "../tests/testkit/sender.rs"]
mod common;
#[path = "bench_parts/contain.rs"]
mod contain;
#[path = "bench_parts/hostile.rs"]
mod hostile;
#[path = "bench_parts/shapes.rs"]
mod shapes;
#[path = "../tests/testkit/apiserver.rs"]
mod support;

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::{Read, Write},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use common::{Envelope, HttpReply, parse_response, terminal_shell, wrap};
use http::HeaderMap;
use k8s_openapi::{
    api::{
        core::v1::{ObjectReference, Pod},
        events::v1::Event as KubeEvent,
    },
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff,
};
use kube::{
    Api, Client,
    api::{DeleteParams, PostParams, Preconditions},
    config::{KubeConfigOptions, Kubeconfig},
};
use serde_json::Value;
use support::ApiServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CID: &str = "6ac7d190134e0123456789abcdef0123456789abcdef0123456789abcdef0123";
/// Bound for any single request or wait of the driver.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Settings

struct Settings {
    responder: PathBuf,
    bare: PathBuf,
    musl: Option<PathBuf>,
    criterion: PathBuf,
    out: PathBuf,
    connections: usize,
    seconds: u64,
    rounds: usize,
    pods: usize,
    burst: usize,
    starts: usize,
    /// `git rev-parse --short HEAD` (+ `-dirty`) when the binaries were built (BENCH_COMMIT).
    commit: Option<String>,
}

fn env_path(name: &str) -> PathBuf {
    let p = PathBuf::from(
        std::env::var(name).unwrap_or_else(|_| panic!("{name} not set: run scripts/bench.sh")),
    );
    assert!(p.is_file(), "{name}={} is not a file", p.display());
    p
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Settings {
    fn from_env() -> Settings {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        Settings {
            responder: env_path("FALCO_RESPONDER_BIN"),
            bare: env_path("BARE_HYPER_BIN"),
            musl: std::env::var_os("MUSL_BIN")
                .map(PathBuf::from)
                .filter(|p| p.is_file()),
            criterion: std::env::var_os("CRITERION_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target/criterion")),
            out: std::env::var_os("BENCH_OUT")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("docs/BENCHMARKS.md")),
            connections: env_num("BENCH_CONNECTIONS", 64),
            seconds: env_num("BENCH_SECONDS", 4),
            rounds: env_num("BENCH_ROUNDS", 7).max(1),
            pods: env_num("BENCH_PODS", 400).max(1),
            burst: env_num("BENCH_BURST", 200).max(1),
            starts: env_num("BENCH_STARTS", 20).max(1),
            commit: std::env::var("BENCH_COMMIT").ok().filter(|c| !c.is_empty()),
        }
    }
}

fn say(s: &str) {
    eprintln!("bench: {s}");
}

// ---------------------------------------------------------------------------------------------
// Statistics

/// Nearest-rank percentile (p in 0..=100) of `v`, in the unit of `v`.
fn pct(v: &[f64], p: f64) -> f64 {
    assert!(!v.is_empty(), "no samples");
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    s[rank.min(s.len()) - 1]
}

fn median(v: &[f64]) -> f64 {
    pct(v, 50.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// ---------------------------------------------------------------------------------------------
// Processes

/// A child process killed (SIGKILL) and reaped on drop: nothing outlives the driver.
struct Proc {
    child: Child,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// `(VmRSS, VmHWM)` of `pid` in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    (status_kib(pid, "VmRSS:"), status_kib(pid, "VmHWM:"))
}

/// One `kB` field of /proc/PID/status.
fn status_kib(pid: u32, name: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing in /proc/{pid}/status"))
}

/// One blocking `GET path` over a fresh connection; the status, or None if not answering yet.
fn get_status(port: u16, path: &str) -> Option<u16> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .ok()?;
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).ok()?;
    std::str::from_utf8(&buf[9..12]).ok()?.parse().ok()
}

/// Polls `GET path` every 100 µs until it answers 200; the time since `since`.
fn wait_200(port: u16, path: &str, since: Instant, child: &mut Child) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if get_status(port, path) == Some(200) {
            return since.elapsed();
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("server exited before answering {path}: {status}");
        }
        assert!(Instant::now() < deadline, "no 200 on {path} after 20 s");
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// Base command for falco-responder as a server on `port`.
fn responder_cmd(bin: &Path, port: u16, kubeconfig: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .env("PORT", port.to_string())
        .env("KUBECONFIG", kubeconfig)
        // A benchmark deletes thousands of pods a minute, which the deletion breaker exists to
        // stop: it is off here and measured in its own section (guard_costs).
        .env("MAX_DELETIONS", "off")
        .env("MAX_DELETIONS_PER_WORKLOAD", "off")
        .env_remove("RUST_LOG")
        .env_remove("BODY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Starts `cmd` pinned to core 0 with one tokio worker (taskset execs it: the pid is the server's).
fn pinned(cmd: &Command) -> Command {
    let mut pinned = Command::new("taskset");
    pinned.arg("-c").arg("0").arg(cmd.get_program());
    pinned.args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => pinned.env(k, v),
            None => pinned.env_remove(k),
        };
    }
    pinned
        .env("TOKIO_WORKER_THREADS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    pinned
}

fn spawn_ready(mut cmd: Command, port: u16, ready_path: &str) -> Proc {
    let mut child = cmd.spawn().expect("spawn server");
    wait_200(port, ready_path, Instant::now(), &mut child);
    Proc { child }
}

// ---------------------------------------------------------------------------------------------
// A keep-alive HTTP/1.1 client (what Falcosidekick and queue-proxy do)

struct KeepAlive {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl KeepAlive {
    async fn connect(addr: SocketAddr) -> KeepAlive {
        let stream = tokio::time::timeout(STEP_TIMEOUT, tokio::net::TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        stream.set_nodelay(true).unwrap();
        KeepAlive {
            stream,
            buf: Vec::with_capacity(4096),
        }
    }

    async fn post(&mut self, headers: &HeaderMap, body: &[u8]) -> HttpReply {
        tokio::time::timeout(STEP_TIMEOUT, self.exchange(headers, body))
            .await
            .expect("no answer within 60 s")
    }

    async fn exchange(&mut self, headers: &HeaderMap, body: &[u8]) -> HttpReply {
        let mut req = format!(
            "POST / HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            let _ = write!(req, "{k}: {}\r\n", v.to_str().unwrap());
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.stream.write_all(&bytes).await.expect("write request");
        loop {
            if let Some(head_end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..head_end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse().expect("content-length"))
                    .unwrap_or(0);
                let total = head_end + 4 + len;
                if self.buf.len() >= total {
                    let reply = parse_response(&self.buf[..total]);
                    self.buf.drain(..total);
                    return reply;
                }
            }
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .expect("read response");
            assert!(n > 0, "connection closed before the response was complete");
        }
    }
}

fn outcome(reply: &HttpReply) -> String {
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()["outcome"]
        .as_str()
        .unwrap_or("none")
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// 1. No-action throughput

struct WrkRun {
    rps: f64,
    requests: u64,
    bad: u64,
    p50_us: f64,
    p99_us: f64,
}

fn lua_script(dir: &Path, name: &str, headers: &HeaderMap, body: &str) -> PathBuf {
    assert!(!body.contains("]==]"), "body would end the Lua long string");
    let mut lua = String::from("wrk.method = \"POST\"\n");
    for (k, v) in headers {
        let _ = writeln!(lua, "wrk.headers[\"{k}\"] = \"{}\"", v.to_str().unwrap());
    }
    let _ = writeln!(lua, "wrk.body = [==[{body}]==]");
    lua.push_str(
        r#"done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH requests=%d duration_us=%d bad=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration,
    e.status + e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"#,
    );
    let path = dir.join(format!("{name}.lua"));
    std::fs::write(&path, lua).expect("write lua");
    path
}

fn wrk(port: u16, lua: &Path, s: &Settings) -> WrkRun {
    let out = Command::new("taskset")
        .args(["-c", "1", "wrk", "-t1"])
        .arg(format!("-c{}", s.connections))
        .arg(format!("-d{}s", s.seconds))
        .arg("-s")
        .arg(lua)
        .arg(format!("http://127.0.0.1:{port}/"))
        .stdin(Stdio::null())
        .output()
        .expect("run wrk (scripts/bench.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk failed: {text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("BENCH "))
        .unwrap_or_else(|| panic!("no BENCH line in wrk output: {text}"));
    let kv: BTreeMap<&str, f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.split_once('='))
        .map(|(k, v)| (k, v.parse().unwrap()))
        .collect();
    let requests = kv["requests"] as u64;
    WrkRun {
        rps: requests as f64 / (kv["duration_us"] / 1e6),
        requests,
        bad: kv["bad"] as u64,
        p50_us: kv["p50_us"],
        p99_us: kv["p99_us"],
    }
}

struct MuslRun {
    rps: f64,
    idle_kib: u64,
    anon_kib: u64,
    peak_kib: u64,
}

#[derive(Default)]
struct Throughput {
    /// payload name → (responder runs, bare runs)
    runs: Vec<(String, Vec<WrkRun>, Vec<WrkRun>)>,
    /// Diagnostic variants of falco-responder on the first payload (environment only, same
    /// binary): (label, env, runs).
    variants: Vec<(String, String, Vec<WrkRun>)>,
    musl: Option<MuslRun>,
    idle_kib: u64,
    idle_anon_kib: u64,
    peak_kib: u64,
    bare_idle_kib: u64,
    bare_peak_kib: u64,
}

/// The realistic event in every envelope a sender uses (issue: each must skip at ≥ 0.8× bare
/// hyper): (row name, envelope, `ce-source` to put instead of the SDK's).
fn envelope_rows() -> Vec<(String, Envelope, Option<&'static str>)> {
    vec![
        (
            "the same event as a CloudEvent, binary mode, source `https://falco.org` (Falcosidekick)".into(),
            Envelope::CloudEventBinary,
            None,
        ),
        (
            "the same event as a CloudEvent, binary mode, source `falco.org` (older senders)".into(),
            Envelope::CloudEventBinary,
            Some("falco.org"),
        ),
        (
            "the same event as a CloudEvent, structured mode, `data` (Knative `delivery.format: json`)".into(),
            Envelope::CloudEventStructured,
            None,
        ),
        (
            "the same event as a CloudEvent, structured mode, `data_base64`".into(),
            Envelope::CloudEventStructuredBase64,
            None,
        ),
        (
            "the same event under an Argo dest, raw (`useRawData`)".into(),
            Envelope::ArgoRaw,
            None,
        ),
        (
            "the same event under an Argo dest, as a JSON string".into(),
            Envelope::ArgoString,
            None,
        ),
        (
            "the same event in the whole Argo event (base64)".into(),
            Envelope::ArgoEvent,
            None,
        ),
        (
            "the same event as Argo webhook data `{header, body}`".into(),
            Envelope::ArgoWebhook,
            None,
        ),
    ]
}

/// (1); `envelopes_only` (BENCH_ONLY=envelopes): the plain row and the envelope rows, without the
/// diagnosis variants and the static binary.
fn throughput(s: &Settings, server: &ApiServer, envelopes_only: bool) -> Throughput {
    let dir = server.dir().to_path_buf();
    let kubeconfig = server.admin_kubeconfig();
    let test_rule = common::fixture("falcosidekick-test-rule-debug-input.json");
    // Skipping is cheap: a realistic event we skip (rule not in RULES), in each envelope.
    let realistic =
        hostile::realistic_event("Read sensitive file untrusted", "shop", "payments-api-0");
    let mut payloads: Vec<(String, Envelope, String, Option<&'static str>)> = vec![(
        format!(
            "realistic Falco 0.41 event ({} B, container plugin fields), rule not in RULES, plain",
            realistic.len()
        ),
        Envelope::Plain,
        realistic.clone(),
        None,
    )];
    for (name, envelope, source) in envelope_rows() {
        payloads.push((name, envelope, realistic.clone(), source));
    }
    if !envelopes_only {
        payloads.push((
            "Falcosidekick test event (rule \"Test rule\")".into(),
            Envelope::Plain,
            test_rule,
            None,
        ));
    }

    let r_port = free_port();
    let b_port = free_port();
    let responder = spawn_ready(
        pinned(&responder_cmd(&s.responder, r_port, &kubeconfig)),
        r_port,
        "/readyz",
    );
    let mut bare_cmd = Command::new(&s.bare);
    bare_cmd.env("PORT", b_port.to_string());
    let bare = spawn_ready(pinned(&bare_cmd), b_port, "/");
    std::thread::sleep(Duration::from_millis(300));
    let mut t = Throughput {
        idle_kib: rss_kib(responder.pid()).0,
        idle_anon_kib: status_kib(responder.pid(), "RssAnon:"),
        bare_idle_kib: rss_kib(bare.pid()).0,
        ..Default::default()
    };

    for (i, (name, envelope, body, source)) in payloads.iter().enumerate() {
        let (mut headers, body) = wrap(*envelope, body);
        if let Some(source) = source {
            headers.insert("ce-source", http::HeaderValue::from_static(source));
        }
        let body = String::from_utf8(body).unwrap();
        // The function must skip it, without an API call.
        let reply = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                KeepAlive::connect(([127, 0, 0, 1], r_port).into())
                    .await
                    .post(&headers, body.as_bytes())
                    .await
            });
        let reply = if envelope.is_cloudevent() {
            // The answer is a CloudEvent: its data is the result.
            let ce = cloudevents::binding::http::to_event(&reply.headers, reply.body.clone())
                .expect("a CloudEvent reply");
            let data = ce.data().cloned().expect("reply data");
            let json = serde_json::Value::try_from(data).expect("JSON data");
            HttpReply {
                status: reply.status,
                headers: HeaderMap::new(),
                body: json.to_string().into_bytes(),
            }
        } else {
            reply
        };
        assert_eq!(outcome(&reply), "skipped", "{name}");
        let lua = lua_script(&dir, &format!("payload-{i}"), &headers, &body);
        let (mut ours, mut base) = (Vec::new(), Vec::new());
        for round in 0..s.rounds {
            // Alternate who goes first, so drift (thermal, background) hits both alike.
            let order = if round % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for is_ours in order {
                let run = wrk(if is_ours { r_port } else { b_port }, &lua, s);
                say(&format!(
                    "throughput {name}: {} round {round}: {:.0} req/s (p99 {:.2} ms, {} bad)",
                    if is_ours {
                        "falco-responder"
                    } else {
                        "bare hyper"
                    },
                    run.rps,
                    run.p99_us / 1000.0,
                    run.bad
                ));
                assert_eq!(run.bad, 0, "non-2xx or socket errors under load");
                if is_ours {
                    ours.push(run)
                } else {
                    base.push(run)
                }
            }
        }
        t.runs.push((name.to_string(), ours, base));
    }
    t.peak_kib = rss_kib(responder.pid()).1;
    t.bare_peak_kib = rss_kib(bare.pid()).1;
    drop(responder);
    if envelopes_only {
        return t;
    }

    // Where the difference goes: the same binary with JSON log lines (LOG_FORMAT=json), and
    // without the per-event log line at all (RUST_LOG=warn).
    let lua = dir.join("payload-0.lua");
    for (label, key, value) in [
        ("JSON log lines", "LOG_FORMAT", "json"),
        ("no per-event log line", "RUST_LOG", "warn"),
    ] {
        let port = free_port();
        let mut cmd = pinned(&responder_cmd(&s.responder, port, &kubeconfig));
        cmd.env(key, value);
        let p = spawn_ready(cmd, port, "/readyz");
        let mut runs = Vec::new();
        for round in 0..s.rounds {
            let run = wrk(port, &lua, s);
            assert_eq!(run.bad, 0);
            say(&format!(
                "throughput variant {key}={value} round {round}: {:.0} req/s",
                run.rps
            ));
            runs.push(run);
        }
        drop(p);
        t.variants
            .push((label.to_string(), format!("{key}={value}"), runs));
    }
    drop(bare);

    if let Some(musl) = &s.musl {
        // Context: the image ships the static musl binary.
        let lua = dir.join("payload-0.lua");
        let port = free_port();
        let p = spawn_ready(
            pinned(&responder_cmd(musl, port, &kubeconfig)),
            port,
            "/readyz",
        );
        std::thread::sleep(Duration::from_millis(300));
        let (idle_kib, _) = rss_kib(p.pid());
        let anon_kib = status_kib(p.pid(), "RssAnon:");
        let run = wrk(port, &lua, s);
        assert_eq!(run.bad, 0);
        let peak_kib = rss_kib(p.pid()).1;
        say(&format!(
            "musl binary: {:.0} req/s, idle RSS {idle_kib} KiB (anon {anon_kib}), peak {peak_kib} KiB",
            run.rps
        ));
        t.musl = Some(MuslRun {
            rps: run.rps,
            idle_kib,
            anon_kib,
            peak_kib,
        });
    }
    t
}

// ---------------------------------------------------------------------------------------------
// 2. Delete latency, burst; 5. storm

async fn create_pods(client: &Client, ns: &str, prefix: &str, n: usize) -> Vec<String> {
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}-{i:04}")).collect();
    let mut set = tokio::task::JoinSet::new();
    for chunk in names.chunks(n.div_ceil(16).max(1)) {
        let (client, ns, chunk) = (client.clone(), ns.to_string(), chunk.to_vec());
        set.spawn(async move {
            for name in chunk {
                support::create_pod(&client, &ns, &name, CID, &[]).await;
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("pod creation task");
    }
    names
}

fn uid_precondition(pod: &Pod) -> DeleteParams {
    DeleteParams::default().preconditions(Preconditions {
        uid: pod.metadata.uid.clone(),
        resource_version: None,
    })
}

/// The floor: what any responder must do, with a bare kube client.
async fn floor_pair(pods: &Api<Pod>, name: &str) -> Duration {
    let t = Instant::now();
    let pod = pods.get(name).await.expect("floor GET");
    pods.delete(name, &uid_precondition(&pod))
        .await
        .expect("floor DELETE");
    t.elapsed()
}

/// The floor plus the Event falco-responder records (same object shape as `pods::record`).
async fn floor_pair_event(client: &Client, ns: &str, name: &str, event: &Value) -> Duration {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let t = Instant::now();
    let pod = pods.get(name).await.expect("floor GET");
    pods.delete(name, &uid_precondition(&pod))
        .await
        .expect("floor DELETE");
    let now = jiff::Timestamp::now();
    let falco: falco_responder::domain::falco::FalcoEvent =
        serde_json::from_value(event.clone()).unwrap();
    let ev = KubeEvent {
        metadata: ObjectMeta {
            name: Some(format!("{name}.{:x}", now.as_nanosecond())),
            namespace: Some(ns.to_string()),
            ..Default::default()
        },
        event_time: Some(MicroTime(now)),
        action: Some("Delete".into()),
        reason: Some("FalcoPodDeleted".into()),
        note: Some(falco_responder::cluster::events::event_note(&falco)),
        type_: Some("Warning".into()),
        reporting_controller: Some("falco-responder".into()),
        reporting_instance: Some("bench".into()),
        regarding: Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(name.to_string()),
            namespace: Some(ns.to_string()),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    Api::<KubeEvent>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &ev)
        .await
        .expect("floor Event POST");
    t.elapsed()
}

// ---------------------------------------------------------------------------------------------
// 2b. The guards' cost: the same deletion with the guards off, with the default
// guards (workload resolution, both breakers: the count from the watched records, a record
// written after the answer),
// for a standalone pod and for a pod of a Deployment (ReplicaSet → Deployment resolved once, then
// remembered), and with MIN_AVAILABLE and its reservation (one more GET, of the Deployment, and
// the POST of the slot's record in the function's own namespace).

#[derive(Default)]
struct GuardCost {
    floor: Vec<f64>,
    off: Vec<f64>,
    standalone: Vec<f64>,
    deployment: Vec<f64>,
    min_available: Vec<f64>,
    /// USE_EVICTION with the default guards: the pod's GET, then the Eviction API's POST.
    eviction: Vec<f64>,
    /// MIN_AVAILABLE for pods that are not Ready: the Deployment's GET, no slot (no write).
    min_no_slot: Vec<f64>,
    /// The floor plus one write before its answer (a bare GET, DELETE and the Event's POST):
    /// the least any guard that writes before answering can take.
    floor_write: Vec<f64>,
    /// Delete latency at 1, 10 and 100 concurrent distinct pods (default guards / floor): per
    /// level, the latencies of each round.
    concurrent: Vec<Concurrent>,
    /// 200 events for 200 distinct pods at once, default guards: wall time until all answered,
    /// per round; the bare concurrent floor that also POSTs the Event, per round.
    burst: Vec<f64>,
    burst_floor_event: Vec<f64>,
    burst_pods: usize,
    /// The breaker's records in its namespace at the end (what the watch follows).
    events_listed: usize,
    /// The ready replicas the Deployment reports (MIN_AVAILABLE=1: one fewer slots).
    ready_replicas: i32,
    /// MIN_AVAILABLE's reservation records in the function's namespace right after the
    /// measured deletions (each is held 30 s): the slots really taken.
    reservations_listed: usize,
    /// How long the measured deletions took, in seconds (under 30: no slot was freed meanwhile).
    loop_seconds: f64,
}

/// Delete latency at one concurrency level: `level` events for distinct pods at once, each on
/// its own connection, against as many bare GET + DELETE pairs at once, round after round.
#[derive(Default)]
struct Concurrent {
    level: usize,
    /// Per round: every event's latency, ms.
    ours: Vec<Vec<f64>>,
    floor: Vec<Vec<f64>>,
}

impl Concurrent {
    fn all(v: &[Vec<f64>]) -> Vec<f64> {
        v.iter().flatten().copied().collect()
    }

    /// The per-round ratios of medians (ours / floor).
    fn ratios(&self) -> Vec<f64> {
        self.ours
            .iter()
            .zip(&self.floor)
            .map(|(o, f)| median(o) / median(f))
            .collect()
    }
}

/// Ratios of medians of `v` to `floor` in `rounds` consecutive chunks (the series are
/// interleaved pod by pod, so chunk `k` of each ran at the same time).
fn round_ratios(v: &[f64], floor: &[f64], rounds: usize) -> Vec<f64> {
    let size = v.len().min(floor.len()).div_ceil(rounds).max(1);
    v.chunks(size)
        .zip(floor.chunks(size))
        .map(|(a, b)| median(a) / median(b))
        .collect()
}

/// "min / median / max" of `v`, `digits` decimals.
fn min_med_max(v: &[f64], digits: usize) -> String {
    if v.is_empty() {
        return "—".into();
    }
    format!(
        "{:.digits$} / {:.digits$} / {:.digits$}",
        pct(v, 0.0),
        median(v),
        pct(v, 100.0)
    )
}

/// One event per pod of `names` at once, each on its own connection of `conns` (handed back):
/// the latency of each and the wall time until the last answer, ms.
async fn events_at_once(
    conns: Vec<KeepAlive>,
    ns: &str,
    names: &[String],
) -> (Vec<KeepAlive>, Vec<f64>, f64) {
    assert_eq!(conns.len(), names.len());
    let barrier = Arc::new(tokio::sync::Barrier::new(names.len() + 1));
    let mut set = tokio::task::JoinSet::new();
    for (mut conn, name) in conns.into_iter().zip(names) {
        let (h, b) = wrap(Envelope::Plain, &terminal_shell(ns, name, CID));
        let (barrier, name) = (barrier.clone(), name.clone());
        set.spawn(async move {
            barrier.wait().await;
            let t = Instant::now();
            let reply = conn.post(&h, &b).await;
            let done = Instant::now();
            assert_eq!(outcome(&reply), "deleted", "pod {name}");
            (conn, ms(done - t), done)
        });
    }
    barrier.wait().await;
    let t0 = Instant::now();
    let (mut back, mut out, mut last) = (Vec::new(), Vec::new(), t0);
    while let Some(r) = set.join_next().await {
        let (conn, dt, done) = r.expect("event task");
        back.push(conn);
        out.push(dt);
        last = last.max(done);
    }
    (back, out, ms(last - t0))
}

/// `names.len()` bare GET + DELETE pairs at once through `client`: the latency of each, ms.
async fn floors_at_once(client: &Client, ns: &str, names: &[String]) -> Vec<f64> {
    let barrier = Arc::new(tokio::sync::Barrier::new(names.len()));
    let mut set = tokio::task::JoinSet::new();
    for name in names {
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let (barrier, name) = (barrier.clone(), name.clone());
        set.spawn(async move {
            barrier.wait().await;
            ms(floor_pair(&pods, &name).await)
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.expect("floor task"));
    }
    out
}

/// Pods owned by ReplicaSet `rs` (controller reference), with the container id events carry;
/// `ready`: with the condition Ready=True too (what MIN_AVAILABLE's reservation is taken for).
async fn create_owned_pods(
    client: &Client,
    ns: &str,
    prefix: &str,
    n: usize,
    rs: &k8s_openapi::api::apps::v1::ReplicaSet,
    ready: bool,
) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let owner = serde_json::json!([{
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "controller": true,
        "name": rs.metadata.name, "uid": rs.metadata.uid,
    }]);
    let mut names = Vec::new();
    for i in 0..n {
        let name = format!("{prefix}-{i:04}");
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": { "name": name, "ownerReferences": owner, "labels": { "app": "web" } },
            "spec": { "nodeName": "node-1", "containers": [{ "name": "main", "image": "alpine" }] }
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("owned pod");
        let mut status = serde_json::json!({ "status": { "phase": "Running", "containerStatuses": [{
            "name": "main", "image": "alpine", "imageID": "", "ready": true, "restartCount": 0,
            "containerID": format!("containerd://{CID}"), "state": { "running": {} } }] } });
        if ready {
            status["status"]["conditions"] =
                serde_json::json!([{ "type": "Ready", "status": "True" }]);
        }
        pods.patch_status(
            &name,
            &Default::default(),
            &kube::api::Patch::Merge(&status),
        )
        .await
        .expect("owned pod status");
        names.push(name);
    }
    names
}

async fn guard_costs(s: &Settings, server: &ApiServer, admin: &Client) -> GuardCost {
    use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
    let kubeconfig = server.admin_kubeconfig();
    let start = |env: &[(&str, &str)]| {
        let port = free_port();
        let mut cmd = responder_cmd(&s.responder, port, &kubeconfig);
        cmd.envs(env.iter().copied());
        (
            spawn_ready(cmd, port, "/readyz"),
            SocketAddr::from(([127, 0, 0, 1], port)),
        )
    };
    let ns = support::namespace(admin, "bench-guards").await;
    // The function's own namespace, where the breaker keeps its records: this section's only.
    let home = support::namespace(admin, "bench-home").await;
    // The breaker on, with budgets this run never reaches (the default windows): it follows its
    // records with a watch and writes one per deletion. What it follows is reported below.
    let on: [(&str, &str); 4] = [
        ("MAX_DELETIONS", "1000000/1m"),
        ("MAX_DELETIONS_PER_WORKLOAD", "1000000/10m"),
        ("NAMESPACES", ns.as_str()),
        ("POD_NAMESPACE", home.as_str()),
    ];
    let (_off, off_addr) = start(&[
        ("NAMESPACES", ns.as_str()),
        ("POD_NAMESPACE", home.as_str()),
    ]);
    let (_on, on_addr) = start(&on);
    let mut with_min = on.to_vec();
    with_min.push(("MIN_AVAILABLE", "1"));
    let (_min, min_addr) = start(&with_min);
    let mut with_eviction = on.to_vec();
    with_eviction.push(("USE_EVICTION", "true"));
    let (_evict, evict_addr) = start(&with_eviction);

    // Few enough that the listed window holds about what default budgets allow (at most 20 a
    // minute overall): 4 × n deletions in about a minute.
    let n = s.pods.div_ceil(10).clamp(10, 50);
    // An inert Deployment and ReplicaSet (no controller manager here): the ownership chain is
    // what the guards read. Its status (patched: nothing else writes it) reports enough ready
    // replicas that every MIN_AVAILABLE deletion passes the floor and takes a free slot of the
    // `ready - 1`, even if all of them fell within one 30 s hold.
    let ready = 2 * (n as i32 + 1) + 1;
    let d: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "web" },
        "spec": { "replicas": ready, "selector": { "matchLabels": { "app": "web" } },
            "template": { "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "main", "image": "alpine" }] } } }
    }))
    .unwrap();
    let deployments = Api::<Deployment>::namespaced(admin.clone(), &ns);
    let d = deployments
        .create(&PostParams::default(), &d)
        .await
        .expect("Deployment");
    let status = serde_json::json!({ "status": { "observedGeneration": 1, "replicas": ready,
        "updatedReplicas": ready, "readyReplicas": ready, "availableReplicas": ready } });
    deployments
        .patch_status(
            "web",
            &Default::default(),
            &kube::api::Patch::Merge(&status),
        )
        .await
        .expect("Deployment status");
    let rs: ReplicaSet = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "web-5d9c7b8f9", "ownerReferences": [{
            "apiVersion": "apps/v1", "kind": "Deployment", "controller": true,
            "name": "web", "uid": d.metadata.uid }] },
        "spec": { "replicas": 0, "selector": { "matchLabels": { "app": "web" } },
            "template": { "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "main", "image": "alpine" }] } } }
    }))
    .unwrap();
    let rs = Api::<ReplicaSet>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &rs)
        .await
        .expect("ReplicaSet");

    let floor = create_pods(admin, &ns, "f", n).await;
    let off = create_pods(admin, &ns, "o", n).await;
    let alone = create_pods(admin, &ns, "s", n).await;
    let owned = create_owned_pods(admin, &ns, "d", n, &rs, false).await;
    let owned_min = create_owned_pods(admin, &ns, "m", n, &rs, true).await;
    let evicted = create_pods(admin, &ns, "e", n).await;
    let owned_unready = create_owned_pods(admin, &ns, "r", n, &rs, false).await;
    let written = create_pods(admin, &ns, "fw", n).await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
    let mut conns = [
        KeepAlive::connect(off_addr).await,
        KeepAlive::connect(on_addr).await,
        KeepAlive::connect(min_addr).await,
        KeepAlive::connect(evict_addr).await,
    ];
    // Warm-up, not counted: connections, and the owner cache's first (cold) resolution.
    {
        let w = create_pods(admin, &ns, "w", 2).await;
        let wo = create_owned_pods(admin, &ns, "wo", 1, &rs, false).await;
        // Ready: the warm-up of MIN_AVAILABLE takes a slot too (its first record's POST).
        let wm = create_owned_pods(admin, &ns, "wm", 1, &rs, true).await;
        let we = create_pods(admin, &ns, "we", 1).await;
        for (c, name) in [
            (0, &w[0]),
            (1, &w[1]),
            (1, &wo[0]),
            (2, &wm[0]),
            (3, &we[0]),
        ] {
            let (h, b) = wrap(Envelope::Plain, &terminal_shell(&ns, name, CID));
            assert_eq!(
                outcome(&conns[c].post(&h, &b).await),
                "deleted",
                "warm-up {name}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut g = GuardCost {
        ready_replicas: ready,
        ..Default::default()
    };
    let looped = Instant::now();
    for i in 0..n {
        for k in 0..8 {
            let (conn, name, out) = match (i + k) % 8 {
                0 => {
                    g.floor.push(ms(floor_pair(&pods, &floor[i]).await));
                    continue;
                }
                6 => {
                    let falco: Value =
                        serde_json::from_str(&terminal_shell(&ns, &written[i], CID)).unwrap();
                    let d = floor_pair_event(admin, &ns, &written[i], &falco).await;
                    g.floor_write.push(ms(d));
                    continue;
                }
                7 => (2, &owned_unready[i], &mut g.min_no_slot),
                1 => (0, &off[i], &mut g.off),
                2 => (1, &alone[i], &mut g.standalone),
                3 => (1, &owned[i], &mut g.deployment),
                4 => (3, &evicted[i], &mut g.eviction),
                _ => (2, &owned_min[i], &mut g.min_available),
            };
            let (h, b) = wrap(Envelope::Plain, &terminal_shell(&ns, name, CID));
            let t = Instant::now();
            let reply = conns[conn].post(&h, &b).await;
            let dt = t.elapsed();
            assert_eq!(outcome(&reply), "deleted", "pod {name}");
            out.push(ms(dt));
        }
    }
    g.loop_seconds = looped.elapsed().as_secs_f64();
    // Every MIN_AVAILABLE deletion took a slot: its record is there for 30 s.
    g.reservations_listed = Api::<KubeEvent>::namespaced(admin.clone(), &home)
        .list(
            &kube::api::ListParams::default()
                .labels(falco_responder::cluster::events::RESERVATION_LABEL),
        )
        .await
        .map(|l| l.items.len())
        .unwrap_or(0);
    assert!(
        g.reservations_listed > 0,
        "MIN_AVAILABLE took no slot: its row would not measure the reservation"
    );
    // How cost grows: 1, 10, 100 events for distinct pods at once (default guards), each on
    // its own connection, against as many bare GET + DELETE pairs at once; rounds alternate
    // the two, after a warm-up round that opens the connections on both sides.
    for level in [1usize, 10, 100] {
        let rounds = if level == 1 { 12 } else { 4 };
        let mut c = Concurrent {
            level,
            ..Default::default()
        };
        let mut conns = Vec::new();
        for _ in 0..level {
            conns.push(KeepAlive::connect(on_addr).await);
        }
        for round in 0..=rounds {
            let ours = create_pods(admin, &ns, &format!("c{level}-{round}"), level).await;
            let bare = create_pods(admin, &ns, &format!("b{level}-{round}"), level).await;
            let (back, o, _) = events_at_once(conns, &ns, &ours).await;
            conns = back;
            let f = floors_at_once(admin, &ns, &bare).await;
            if round > 0 {
                c.ours.push(o);
                c.floor.push(f);
            }
        }
        g.concurrent.push(c);
    }
    // The burst: 200 events for 200 distinct pods at once (default guards), against the bare
    // concurrent floor that also POSTs the Event (what the function's answer stands for).
    let burst = s.burst;
    g.burst_pods = burst;
    let mut conns = Vec::new();
    for _ in 0..burst {
        conns.push(KeepAlive::connect(on_addr).await);
    }
    for round in 0..3 {
        let ours = create_pods(admin, &ns, &format!("u{round}"), burst).await;
        let bare = create_pods(admin, &ns, &format!("v{round}"), burst).await;
        let (back, _, wall) = events_at_once(conns, &ns, &ours).await;
        g.burst.push(wall);
        conns = back;
        g.burst_floor_event
            .push(burst_floor(admin.clone(), &ns, bare, true).await);
    }
    drop(conns);
    g.events_listed = Api::<KubeEvent>::namespaced(admin.clone(), &home)
        .list(&kube::api::ListParams::default().labels("falco-responder/breaker=deletion"))
        .await
        .map(|l| l.items.len())
        .unwrap_or(0);
    say(&format!(
        "guards: floor {:.2} ms, off {:.2} ms, default (standalone) {:.2} ms, default (Deployment) {:.2} ms, MIN_AVAILABLE {:.2} ms; {} breaker records followed; {} reservation records after {:.1} s",
        median(&g.floor),
        median(&g.off),
        median(&g.standalone),
        median(&g.deployment),
        median(&g.min_available),
        g.events_listed,
        g.reservations_listed,
        g.loop_seconds
    ));
    g
}

fn write_guards(w: &mut String, g: &GuardCost) {
    if g.floor.is_empty() {
        return;
    }
    let (fm, fp) = (median(&g.floor), pct(&g.floor, 99.0));
    let _ = writeln!(
        w,
        "\n## Guards\n\nThe same event → `deleted`, pods interleaved one by one, \
         {} each; the floor is a bare kube client's GET + DELETE. The default guards resolve the \
         workload (a ReplicaSet's Deployment once per owner, then remembered) and run both \
         breakers: the count comes from the records each process follows with a watch (no API \
         call per deletion; {} records in the function's namespace by the end of the section), \
         and each deletion writes one record after the answer, beside its audit Event. Budgets \
         are raised so the breaker never opens; the other sections run with the breaker off. \
         MIN_AVAILABLE=1 on the Deployment, whose status reports {} ready replicas, for pods \
         that are Ready: each deletion passes the floor and first takes one of its slots (the \
         POST of a record in the function's namespace, held 30 s; {} records there right after \
         the {:.1} s of measured deletions). USE_EVICTION removes through the Eviction API (no \
         PodDisruptionBudget here). Targets: default guards within 1.1× the floor, USE_EVICTION \
         and MIN_AVAILABLE with its reservation within 1.3×.\n",
        g.floor.len(),
        g.events_listed,
        g.ready_replicas,
        g.reservations_listed,
        g.loop_seconds
    );
    let rounds = 5;
    let _ = writeln!(
        w,
        "Spread: the series are cut into {rounds} consecutive rounds (the same pods' turn for \
         every series) and the ratio of medians is taken per round: min / median / max.\n"
    );
    let _ = writeln!(
        w,
        "| series | median | p99 | median vs floor | ratio per round (min / median / max) | target | met |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|");
    let _ = writeln!(
        w,
        "| bare kube GET + DELETE (floor) | {fm:.2} ms | {fp:.2} ms | 1.00× | — | — | — |"
    );
    for (what, v, target) in [
        ("guards off (MAX_DELETIONS*=off)", &g.off, None),
        ("default guards, standalone pod", &g.standalone, Some(1.1)),
        (
            "default guards, pod of a Deployment",
            &g.deployment,
            Some(1.1),
        ),
        (
            "default guards + USE_EVICTION (the Eviction API's POST instead of the DELETE)",
            &g.eviction,
            Some(1.3),
        ),
        (
            "(diagnosis) the floor plus one write before the answer: bare GET, DELETE, POST of the Event",
            &g.floor_write,
            None,
        ),
        (
            "(diagnosis) default guards + MIN_AVAILABLE, pods not Ready (GET of the Deployment, no slot)",
            &g.min_no_slot,
            None,
        ),
        (
            "default guards + MIN_AVAILABLE (GET of the Deployment, the slot's POST)",
            &g.min_available,
            Some(1.3),
        ),
    ] {
        if v.is_empty() {
            continue;
        }
        let m = median(v);
        let _ = writeln!(
            w,
            "| {what} | {m:.2} ms | {:.2} ms | {:.2}× | {} | {} | {} |",
            pct(v, 99.0),
            m / fm,
            min_med_max(&round_ratios(v, &g.floor, rounds), 2),
            target.map_or("—".to_string(), |t| format!("≤ {t}×")),
            target.map_or("—", |t| yes(m / fm <= t)),
        );
    }
    for c in &g.concurrent {
        let (o, f) = (Concurrent::all(&c.ours), Concurrent::all(&c.floor));
        let (om, fm) = (median(&o), median(&f));
        let _ = writeln!(
            w,
            "| (how cost grows) {} event(s) for distinct pods at once, default guards, each on its own connection ({} rounds of {}; floor: as many bare GET + DELETE at once through one kube client: median {fm:.2} ms, p99 {:.2} ms; the function also writes the breaker's record and the audit Event, after each answer) | {om:.2} ms | {:.2} ms | {:.2}× | {} | — | — |",
            c.level,
            c.ours.len(),
            c.level,
            pct(&f, 99.0),
            pct(&o, 99.0),
            om / fm,
            min_med_max(&c.ratios(), 2),
        );
    }
    if !g.burst.is_empty() {
        let (bm, fm) = (median(&g.burst), median(&g.burst_floor_event));
        let ratios: Vec<f64> = g
            .burst
            .iter()
            .zip(&g.burst_floor_event)
            .map(|(a, b)| a / b)
            .collect();
        let _ = writeln!(
            w,
            "| burst: {} events for {} distinct pods at once, default guards, wall time until the last answer, median of {} rounds (floor: as many bare GET + DELETE + POST of the Event at once: {fm:.2} ms; rounds {}) | {bm:.2} ms (rounds {}) | — | {:.2}× | {} | ≤ 1.1× | {} |",
            g.burst_pods,
            g.burst_pods,
            g.burst.len(),
            min_med_max(&g.burst_floor_event, 0),
            min_med_max(&g.burst, 0),
            bm / fm,
            min_med_max(&ratios, 2),
            yes(bm / fm <= 1.1),
        );
    }
}

#[derive(Default)]
struct Latency {
    ours: Vec<f64>,
    floor: Vec<f64>,
    floor_event: Vec<f64>,
    /// apiserver-side time (audit log) per verb, ms: get, delete, create event
    server_side: Vec<(String, f64, f64)>,
    burst_ms: f64,
    burst_deleted: usize,
    burst_audit_deletes: usize,
    burst_terminating: usize,
    burst_floor_ms: f64,
    burst_floor_nodelay_ms: f64,
    burst_floor_event_ms: f64,
    storm_ms: f64,
    storm_requests: usize,
    storm_outcomes: BTreeMap<String, usize>,
    storm_deletes: usize,
    storm_gets: usize,
}

/// Wall time of GET + DELETE (and the Event POST with `event`) for every pod in `names` at
/// once, through one client.
async fn burst_floor(client: Client, ns: &str, names: Vec<String>, event: bool) -> f64 {
    let barrier = Arc::new(tokio::sync::Barrier::new(names.len() + 1));
    let mut set = tokio::task::JoinSet::new();
    for name in names {
        let (client, ns) = (client.clone(), ns.to_string());
        let falco: Value = serde_json::from_str(&terminal_shell(&ns, &name, CID)).unwrap();
        let barrier = barrier.clone();
        set.spawn(async move {
            barrier.wait().await;
            if event {
                floor_pair_event(&client, &ns, &name, &falco).await;
            } else {
                floor_pair(&Api::namespaced(client, &ns), &name).await;
            }
            Instant::now()
        });
    }
    barrier.wait().await;
    let t0 = Instant::now();
    let mut last = t0;
    while let Some(r) = set.join_next().await {
        last = last.max(r.expect("burst floor task"));
    }
    ms(last - t0)
}

fn parse_ts(v: &Value) -> Option<jiff::Timestamp> {
    v.as_str()?.parse().ok()
}

/// apiserver-side duration (RequestReceived → ResponseComplete) of calls in `ns`, from the audit log.
fn audit_ms(server: &ApiServer, ns: &str, verb: &str, resource: &str) -> Vec<f64> {
    server
        .audit_events()
        .iter()
        .filter(|e| {
            e["stage"] == "ResponseComplete"
                && e["verb"] == verb
                && e["objectRef"]["resource"] == resource
                && e["objectRef"]["subresource"].is_null()
                && e["objectRef"]["namespace"] == ns
        })
        .filter_map(|e| {
            let a = parse_ts(&e["requestReceivedTimestamp"])?;
            let b = parse_ts(&e["stageTimestamp"])?;
            (b - a).total(jiff::Unit::Millisecond).ok()
        })
        .collect()
}

async fn deletes(s: &Settings, server: &ApiServer, admin: &Client) -> Latency {
    let kubeconfig = server.admin_kubeconfig();
    let port = free_port();
    let responder = spawn_ready(
        responder_cmd(&s.responder, port, &kubeconfig),
        port,
        "/readyz",
    );
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut lat = Latency::default();

    // -- sequential: ours, floor, floor + Event, interleaved pod by pod
    let ns = support::namespace(admin, "bench-delete").await;
    let started = Instant::now();
    let ours = create_pods(admin, &ns, "r", s.pods).await;
    let floor = create_pods(admin, &ns, "f", s.pods).await;
    let floor_ev = create_pods(admin, &ns, "e", s.pods).await;
    say(&format!(
        "created {} pods in {:.1} s",
        3 * s.pods,
        started.elapsed().as_secs_f64()
    ));
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
    let mut conn = KeepAlive::connect(addr).await;
    // Warm-up: one of each on its own pod, not counted (connections, caches).
    {
        let w = create_pods(admin, &ns, "w", 3).await;
        floor_pair(&pods, &w[0]).await;
        let ev: Value = serde_json::from_str(&terminal_shell(&ns, &w[1], CID)).unwrap();
        floor_pair_event(admin, &ns, &w[1], &ev).await;
        let (h, b) = wrap(Envelope::Plain, &terminal_shell(&ns, &w[2], CID));
        assert_eq!(outcome(&conn.post(&h, &b).await), "deleted");
        // Let the Event recorded after that answer finish: otherwise the first measured event
        // finds the function's only apiserver connection busy and opens a second one (that
        // cost is measured on its own, in (3) "first events of a fresh server").
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for i in 0..s.pods {
        for k in 0..3 {
            match (i + k) % 3 {
                0 => {
                    let (h, b) = wrap(Envelope::Plain, &terminal_shell(&ns, &ours[i], CID));
                    let t = Instant::now();
                    let reply = conn.post(&h, &b).await;
                    let dt = t.elapsed();
                    assert_eq!(outcome(&reply), "deleted", "pod {}", ours[i]);
                    lat.ours.push(ms(dt));
                }
                1 => lat.floor.push(ms(floor_pair(&pods, &floor[i]).await)),
                _ => {
                    let ev: Value =
                        serde_json::from_str(&terminal_shell(&ns, &floor_ev[i], CID)).unwrap();
                    lat.floor_event
                        .push(ms(floor_pair_event(admin, &ns, &floor_ev[i], &ev).await));
                }
            }
        }
    }
    say(&format!(
        "delete latency median: falco-responder {:.2} ms, floor {:.2} ms, floor+Event {:.2} ms",
        median(&lat.ours),
        median(&lat.floor),
        median(&lat.floor_event)
    ));
    for (verb, resource) in [("get", "pods"), ("delete", "pods"), ("create", "events")] {
        let v = audit_ms(server, &ns, verb, resource);
        if !v.is_empty() {
            lat.server_side
                .push((format!("{verb} {resource}"), median(&v), pct(&v, 99.0)));
        }
    }

    // -- burst: N events for N pods at once, each on its own connection
    let ns_b = support::namespace(admin, "bench-burst").await;
    let burst = create_pods(admin, &ns_b, "b", s.burst).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(burst.len() + 1));
    let mut set = tokio::task::JoinSet::new();
    for name in &burst {
        let (h, b) = wrap(Envelope::Plain, &terminal_shell(&ns_b, name, CID));
        let barrier = barrier.clone();
        set.spawn(async move {
            let mut c = KeepAlive::connect(addr).await;
            barrier.wait().await;
            let reply = c.post(&h, &b).await;
            (outcome(&reply), Instant::now())
        });
    }
    barrier.wait().await;
    let t0 = Instant::now();
    let mut last = t0;
    while let Some(r) = set.join_next().await {
        let (o, at) = r.expect("burst task");
        lat.burst_deleted += usize::from(o == "deleted");
        last = last.max(at);
    }
    lat.burst_ms = ms(last - t0);
    lat.burst_audit_deletes = server.count_audit_in("delete", "pods", Some(&ns_b), "*");
    lat.burst_terminating = Api::<Pod>::namespaced(admin.clone(), &ns_b)
        .list(&Default::default())
        .await
        .expect("list burst pods")
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some())
        .count();
    say(&format!(
        "burst: {} events in {:.1} ms, {} deleted, {} DELETEs audited, {} pods terminating",
        burst.len(),
        lat.burst_ms,
        lat.burst_deleted,
        lat.burst_audit_deletes,
        lat.burst_terminating
    ));

    // -- the same burst by a bare kube client (one client, N concurrent GET + DELETE): kube's
    // default client, then one with TCP_NODELAY (each of the N new connections pays Nagle once)
    let ns_bf = support::namespace(admin, "bench-burst-floor").await;
    let names = create_pods(admin, &ns_bf, "bf", s.burst).await;
    lat.burst_floor_ms = burst_floor(server.admin_client().await, &ns_bf, names, false).await;
    let nodelay = || async {
        let config = server.admin_config().await;
        falco_responder::cluster::client::nodelay_client(config).expect("nodelay client")
    };
    let ns_bn = support::namespace(admin, "bench-burst-nodelay").await;
    let names = create_pods(admin, &ns_bn, "bn", s.burst).await;
    lat.burst_floor_nodelay_ms = burst_floor(nodelay().await, &ns_bn, names, false).await;
    let ns_be = support::namespace(admin, "bench-burst-event").await;
    let names = create_pods(admin, &ns_be, "be", s.burst).await;
    lat.burst_floor_event_ms = burst_floor(nodelay().await, &ns_be, names, true).await;
    say(&format!(
        "burst floor (bare kube client): {:.1} ms; with TCP_NODELAY {:.1} ms; TCP_NODELAY and \
         the Event POST {:.1} ms",
        lat.burst_floor_ms, lat.burst_floor_nodelay_ms, lat.burst_floor_event_ms
    ));

    // -- 5. storm: 10,000 requests, 100 concurrent, all for one pod
    let ns_s = support::namespace(admin, "bench-storm").await;
    create_pods(admin, &ns_s, "storm", 1).await;
    let (conns, per_conn) = (100usize, 100usize);
    let barrier = Arc::new(tokio::sync::Barrier::new(conns + 1));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..conns {
        let (h, b) = wrap(Envelope::Plain, &terminal_shell(&ns_s, "storm-0000", CID));
        let barrier = barrier.clone();
        set.spawn(async move {
            let mut c = KeepAlive::connect(addr).await;
            barrier.wait().await;
            let mut outcomes = Vec::with_capacity(per_conn);
            for _ in 0..per_conn {
                outcomes.push(outcome(&c.post(&h, &b).await));
            }
            (outcomes, Instant::now())
        });
    }
    barrier.wait().await;
    let t0 = Instant::now();
    let mut last = t0;
    while let Some(r) = set.join_next().await {
        let (outcomes, at) = r.expect("storm task");
        last = last.max(at);
        for o in outcomes {
            lat.storm_requests += 1;
            *lat.storm_outcomes.entry(o).or_default() += 1;
        }
    }
    lat.storm_ms = ms(last - t0);
    lat.storm_deletes = server.count_audit_in("delete", "pods", Some(&ns_s), "storm-0000");
    lat.storm_gets = server.count_audit_in("get", "pods", Some(&ns_s), "storm-0000");
    say(&format!(
        "storm: {} requests in {:.0} ms → {} DELETE, {} GET ({:?})",
        lat.storm_requests, lat.storm_ms, lat.storm_deletes, lat.storm_gets, lat.storm_outcomes
    ));
    drop(responder);
    lat
}

/// Fresh server processes: latency of the first event after /readyz, and of a second event (for
/// another pod) sent as soon as the first is answered.
async fn first_events(s: &Settings, server: &ApiServer, admin: &Client) -> (Vec<f64>, Vec<f64>) {
    let kubeconfig = server.admin_kubeconfig();
    let ns = support::namespace(admin, "bench-first").await;
    let n = (s.starts / 2).max(1);
    let a = create_pods(admin, &ns, "a", n).await;
    let b = create_pods(admin, &ns, "b", n).await;
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for (pa, pb) in a.iter().zip(&b) {
        let port = free_port();
        let proc = spawn_ready(
            responder_cmd(&s.responder, port, &kubeconfig),
            port,
            "/readyz",
        );
        let mut conn = KeepAlive::connect(([127, 0, 0, 1], port).into()).await;
        for (pod, out) in [(pa, &mut first), (pb, &mut second)] {
            let (h, body) = wrap(Envelope::Plain, &terminal_shell(&ns, pod, CID));
            let t = Instant::now();
            let reply = conn.post(&h, &body).await;
            out.push(ms(t.elapsed()));
            assert_eq!(outcome(&reply), "deleted", "pod {pod}");
        }
        // Let the background Event finish before the process goes.
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(proc);
    }
    (first, second)
}

/// A new client from the kubeconfig file (as the binary does at start), then GET + DELETE.
async fn cold_pair(kubeconfig: &Path, ns: &str, name: &str, nodelay: bool) -> Duration {
    let t = Instant::now();
    let kc = Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    let client = if nodelay {
        falco_responder::cluster::client::nodelay_client(config).expect("nodelay client")
    } else {
        Client::try_from(config).expect("client")
    };
    floor_pair(&Api::namespaced(client, ns), name).await;
    t.elapsed()
}

// ---------------------------------------------------------------------------------------------
// 3. Start

/// Which parts of (3) run: `BENCH_ONLY=start` the start on one CPU, `BENCH_ONLY=once` the
/// one-shot mode; a full run both.
#[derive(Clone, Copy)]
struct Parts {
    start: bool,
    once: bool,
}

#[derive(Default)]
struct Start {
    /// Warm GET + DELETE pairs through one client (the one-shot's floor), ms.
    warm_floor: Vec<f64>,
    // -- the start on one CPU (`taskset -c 0`, tokio's own worker count): exec → first 200
    ready: Vec<f64>,
    bare_ready: Vec<f64>,
    musl_ready: Vec<f64>,
    /// The same with the default deletion breaker: readiness waits for its records' check.
    ready_breaker: Vec<f64>,
    /// Exec → the first event (sent as soon as the port accepts) answered `deleted`.
    exec_first_event: Vec<f64>,
    /// VmRSS of the static musl binary once ready (idle), KiB.
    musl_idle_kib: Vec<u64>,
    /// Worker threads tokio started on one CPU (threads of the ready process, minus main).
    threads_on_one_cpu: Option<u64>,
    cold_floor: Vec<f64>,
    cold_floor_nodelay: Vec<f64>,
    first_event: Vec<f64>,
    second_event: Vec<f64>,
    // -- the one-shot mode, default configuration (breaker on)
    once: Vec<f64>,
    musl_once: Vec<f64>,
    /// Exec → exit of a one-shot whose event is skipped: process start, configuration, the
    /// client's set-up, no API call.
    once_skip: Vec<f64>,
    /// Where a one-shot's time goes, from the apiserver's audit log.
    once_parts: Vec<OnceParts>,
}

/// One one-shot run against the apiserver's audit log: ms since exec of each call's arrival
/// (RequestReceived) and end (ResponseComplete), and of the exit.
#[derive(Default, Clone)]
struct OnceParts {
    /// (call, received, completed), in the order received.
    calls: Vec<(String, f64, f64)>,
    exit: f64,
}

/// Exec → first 200 on `path`, ms.
fn ready_time(mut cmd: Command, port: u16, path: &str) -> f64 {
    let t = Instant::now();
    let mut child = cmd.spawn().expect("spawn");
    let dt = wait_200(port, path, t, &mut child);
    drop(Proc { child });
    ms(dt)
}

/// `cmd` on one CPU (`taskset -c 0`), with the worker count tokio derives from it (what a pod
/// with a CPU limit of 1 gets), unlike [`pinned`], which sets it.
fn on_one_cpu(cmd: &Command) -> Command {
    let mut one = pinned(cmd);
    one.env_remove("TOKIO_WORKER_THREADS");
    one
}

/// Threads of process `pid` (/proc/PID/status `Threads:`).
fn threads(pid: u32) -> u64 {
    status_kib(pid, "Threads:")
}

/// Exec → the first event answered: the sender connects as soon as the port accepts (polled
/// every 0.1 ms), as a Knative activator holding the event does.
async fn exec_to_first_event(mut cmd: Command, port: u16, body: (HeaderMap, Vec<u8>)) -> f64 {
    let t = Instant::now();
    let child = cmd.spawn().expect("spawn server");
    let proc = Proc { child };
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let stream = loop {
        if let Ok(s) = tokio::net::TcpStream::connect(addr).await {
            break s;
        }
        assert!(t.elapsed() < STEP_TIMEOUT, "the server never accepted");
        tokio::time::sleep(Duration::from_micros(100)).await;
    };
    stream.set_nodelay(true).unwrap();
    let mut conn = KeepAlive {
        stream,
        buf: Vec::with_capacity(4096),
    };
    let reply = conn.post(&body.0, &body.1).await;
    let dt = ms(t.elapsed());
    assert_eq!(
        outcome(&reply),
        "deleted",
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    // Let the background Event finish before the process goes.
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(proc);
    dt
}

/// `bin once` with `body` in BODY, the default configuration (deletion breaker on, its records
/// in namespace `home`): exec → exit, ms, and the wall-clock instants of both; the outcome
/// must be `expect`.
fn once_time(
    bin: &Path,
    kubeconfig: &Path,
    home: &str,
    body: &[u8],
    expect: &str,
) -> (f64, jiff::Timestamp, jiff::Timestamp) {
    let mut cmd = Command::new(bin);
    cmd.arg("once")
        .env("POD_NAMESPACE", home)
        .env("BODY", String::from_utf8(body.to_vec()).unwrap())
        .env("KUBECONFIG", kubeconfig)
        .env_remove("RUST_LOG")
        .env_remove("MAX_DELETIONS")
        .env_remove("MAX_DELETIONS_PER_WORKLOAD")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let wall = jiff::Timestamp::now();
    let t = Instant::now();
    let out = cmd.output().expect("run once");
    let dt = t.elapsed();
    let result: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "once printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert!(out.status.success(), "once failed: {result}");
    assert_eq!(result["outcome"], expect, "{result}");
    let exit = wall + jiff::SignedDuration::try_from(dt).expect("duration");
    (ms(dt), wall, exit)
}

/// The calls of one one-shot run (audit entries received between `exec` and `exit`).
fn once_parts(events: &[Value], exec: jiff::Timestamp, exit: jiff::Timestamp) -> OnceParts {
    let since = |t: jiff::Timestamp| (t - exec).total(jiff::Unit::Millisecond).unwrap_or(0.0);
    let mut calls: Vec<(String, f64, f64)> = events
        .iter()
        .filter(|e| e["stage"] == "ResponseComplete")
        .filter_map(|e| {
            let got = parse_ts(&e["requestReceivedTimestamp"])?;
            let done = parse_ts(&e["stageTimestamp"])?;
            if got < exec || got > exit {
                return None;
            }
            let what = format!(
                "{} {}",
                e["verb"].as_str().unwrap_or("?"),
                e["objectRef"]["resource"].as_str().unwrap_or("?")
            );
            Some((what, since(got), since(done)))
        })
        .collect();
    calls.sort_by(|a, b| a.1.total_cmp(&b.1));
    OnceParts {
        calls,
        exit: since(exit),
    }
}

/// Removes the deletion breaker's records from `home`: each one-shot run starts from the
/// same count (the default budget would otherwise open the breaker within the runs).
async fn clear_records(admin: &Client, home: &str) {
    let events: Api<KubeEvent> = Api::namespaced(admin.clone(), home);
    let lp = kube::api::ListParams::default().labels("falco-responder/breaker=deletion");
    events
        .delete_collection(&DeleteParams::default(), &lp)
        .await
        .expect("clear the breaker's records");
}

async fn starts(s: &Settings, server: &ApiServer, admin: &Client, parts: Parts) -> Start {
    let kubeconfig = server.admin_kubeconfig();
    let ns = support::namespace(admin, "bench-once").await;
    let home = support::namespace(admin, "bench-home").await;
    let n = s.starts;
    let argo_bodies = |names: &[String]| -> Vec<Vec<u8>> {
        names
            .iter()
            .map(|p| wrap(Envelope::ArgoEvent, &terminal_shell(&ns, p, CID)).1)
            .collect()
    };
    let mut st = Start::default();

    // The one-shot's floor: warm GET + DELETE pairs through one client.
    let warm = create_pods(admin, &ns, "w", n + 1).await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
    for (i, w) in warm.iter().enumerate() {
        let d = floor_pair(&pods, w).await;
        if i > 0 {
            st.warm_floor.push(ms(d));
        }
    }

    if parts.start {
        // Cold floor: a new kube client per pair (kubeconfig read, TLS handshake), as a fresh
        // process has; kube's default client and one with TCP_NODELAY, alternating.
        let cold_pods = create_pods(admin, &ns, "c", n).await;
        let nodelay_pods = create_pods(admin, &ns, "n", n).await;
        for (c, d) in cold_pods.iter().zip(&nodelay_pods) {
            st.cold_floor
                .push(ms(cold_pair(&kubeconfig, &ns, c, false).await));
            st.cold_floor_nodelay
                .push(ms(cold_pair(&kubeconfig, &ns, d, true).await));
        }
        let (first_event, second_event) = first_events(s, server, admin).await;
        st.first_event = first_event;
        st.second_event = second_event;
        // Exec → first event answered, on one CPU.
        let exec_pods = create_pods(admin, &ns, "x", n).await;
        for pod in &exec_pods {
            let port = free_port();
            let cmd = on_one_cpu(&responder_cmd(&s.responder, port, &kubeconfig));
            let body = wrap(Envelope::Plain, &terminal_shell(&ns, pod, CID));
            st.exec_first_event
                .push(exec_to_first_event(cmd, port, body).await);
        }
    }
    let once_pods = create_pods(admin, &ns, "o", if parts.once { n } else { 0 }).await;
    let musl_pods = create_pods(admin, &ns, "m", if parts.once { n } else { 0 }).await;
    let once_bodies = argo_bodies(&once_pods);
    let musl_bodies = argo_bodies(&musl_pods);
    // An event the default rules skip (a rule they do not name): no API call.
    let skip_body = {
        let mut v: Value = serde_json::from_str(&terminal_shell(&ns, "nobody", CID)).unwrap();
        v["rule"] = Value::from("A rule nobody acts on");
        wrap(Envelope::ArgoEvent, &v.to_string()).1
    };

    let s_resp = s.responder.clone();
    let s_bare = s.bare.clone();
    let s_musl = s.musl.clone();
    let kc = kubeconfig.clone();
    let handle = tokio::runtime::Handle::current();
    let admin = admin.clone();
    let audit_log = server.audit_log();
    tokio::task::spawn_blocking(move || {
        // The one-shot runs' exec and exit instants, matched with the audit log at the end.
        let mut windows = Vec::new();
        // Interleaved, so drift hits every binary alike.
        for i in 0..n {
            if parts.start {
                let port = free_port();
                st.ready.push(ready_time(
                    on_one_cpu(&responder_cmd(&s_resp, port, &kc)),
                    port,
                    "/readyz",
                ));
                let port = free_port();
                let mut bare = Command::new(&s_bare);
                bare.env("PORT", port.to_string());
                st.bare_ready.push(ready_time(on_one_cpu(&bare), port, "/"));
                let port = free_port();
                let mut breaker = on_one_cpu(&responder_cmd(&s_resp, port, &kc));
                breaker
                    .env_remove("MAX_DELETIONS")
                    .env_remove("MAX_DELETIONS_PER_WORKLOAD")
                    .env("POD_NAMESPACE", &home);
                st.ready_breaker.push(ready_time(breaker, port, "/readyz"));
                if i == 0 {
                    let port = free_port();
                    let proc = spawn_ready(
                        on_one_cpu(&responder_cmd(&s_resp, port, &kc)),
                        port,
                        "/readyz",
                    );
                    st.threads_on_one_cpu = Some(threads(proc.pid()));
                }
                if let Some(m) = &s_musl {
                    let port = free_port();
                    let t = Instant::now();
                    let mut child = on_one_cpu(&responder_cmd(m, port, &kc))
                        .spawn()
                        .expect("spawn");
                    st.musl_ready
                        .push(ms(wait_200(port, "/readyz", t, &mut child)));
                    std::thread::sleep(Duration::from_millis(20));
                    st.musl_idle_kib.push(rss_kib(child.id()).0);
                    drop(Proc { child });
                }
            }
            if parts.once {
                let (t, exec, exit) = once_time(&s_resp, &kc, &home, &once_bodies[i], "deleted");
                st.once.push(t);
                windows.push((exec, exit));
                handle.block_on(clear_records(&admin, &home));
                st.once_skip
                    .push(once_time(&s_resp, &kc, &home, &skip_body, "skipped").0);
                if let Some(m) = &s_musl {
                    st.musl_once
                        .push(once_time(m, &kc, &home, &musl_bodies[i], "deleted").0);
                    handle.block_on(clear_records(&admin, &home));
                }
            }
        }
        if !windows.is_empty() {
            // Written synchronously (--audit-log-mode=blocking): complete once a run exited.
            let events: Vec<Value> = std::fs::read_to_string(&audit_log)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            st.once_parts = windows
                .iter()
                .map(|(exec, exit)| once_parts(&events, *exec, *exit))
                .collect();
        }
        // A part that did not run has no samples.
        let m = |v: &[f64]| if v.is_empty() { f64::NAN } else { median(v) };
        say(&format!(
            "start: ready {:.2} ms on one CPU (bare hyper {:.2} ms, with the breaker {:.2} ms), \
             exec → first event {:.2} ms; once {:.2} ms (skipped event {:.2} ms), warm floor \
             {:.2} ms, cold floor {:.2} ms (TCP_NODELAY: {:.2} ms)",
            m(&st.ready),
            m(&st.bare_ready),
            m(&st.ready_breaker),
            m(&st.exec_first_event),
            m(&st.once),
            m(&st.once_skip),
            m(&st.warm_floor),
            m(&st.cold_floor),
            m(&st.cold_floor_nodelay)
        ));
        st
    })
    .await
    .expect("start measurements")
}

/// The medians of the one-shot's parts: (label, ms) in the order of a run.
fn once_breakdown(st: &Start) -> Vec<(String, f64)> {
    let runs: Vec<&OnceParts> = st
        .once_parts
        .iter()
        .filter(|p| !p.calls.is_empty())
        .collect();
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    let mut out = vec![(
        "exec → first call received (process start, configuration, TCP + TLS)".to_string(),
        median(&runs.iter().map(|r| r.calls[0].1).collect::<Vec<_>>()),
    )];
    // Calls in the same order in every run (they are: the plan is fixed); a run that differs
    // is left out of the per-call medians.
    let shape: Vec<&str> = first.calls.iter().map(|c| c.0.as_str()).collect();
    let same: Vec<&&OnceParts> = runs
        .iter()
        .filter(|r| {
            r.calls
                .iter()
                .map(|c| c.0.as_str())
                .eq(shape.iter().copied())
        })
        .collect();
    for (k, name) in shape.iter().enumerate() {
        let got = median(&same.iter().map(|r| r.calls[k].1).collect::<Vec<_>>());
        let done = median(&same.iter().map(|r| r.calls[k].2).collect::<Vec<_>>());
        out.push((format!("{name}: received at {got:.2}, answered at"), done));
    }
    let last = median(
        &runs
            .iter()
            .map(|r| r.exit - r.calls.iter().map(|c| c.2).fold(0.0, f64::max))
            .collect::<Vec<_>>(),
    );
    out.push(("last answer → exit".to_string(), last));
    out
}

/// The rows of (3) and their notes.
fn write_start(w: &mut String, st: &Start, parts: Parts) {
    let fm = median(&st.warm_floor);
    if parts.start {
        let rm = median(&st.ready);
        let bm = median(&st.bare_ready);
        let _ = writeln!(
            w,
            "| 3 | start on one CPU (`taskset -c 0`, tokio's own worker count; {} threads in all once ready): exec → first 200 on `/readyz`, median of {} (max) | {rm:.2} ms ({:.2} ms) | bare hyper the same way: {bm:.2} ms | {:.2}× | ≤ 3.6 ms | {} |",
            st.threads_on_one_cpu
                .map_or("?".to_string(), |t| t.to_string()),
            st.ready.len(),
            pct(&st.ready, 100.0),
            rm / bm,
            yes(rm <= 3.6)
        );
        let cold = median(&st.cold_floor_nodelay);
        let xm = median(&st.exec_first_event);
        let _ = writeln!(
            w,
            "| 3 | start on one CPU: exec → first event answered `deleted` (sent as soon as the port accepts), median of {} (max) | {xm:.2} ms ({:.2} ms) | cold floor in-process (new client with TCP_NODELAY + GET + DELETE): {cold:.2} ms | +{:.2} ms | ≤ floor + 3 ms = {:.2} ms | {} |",
            st.exec_first_event.len(),
            pct(&st.exec_first_event, 100.0),
            xm - cold,
            cold + 3.0,
            yes(xm <= cold + 3.0)
        );
        let _ = writeln!(
            w,
            "| 3 | (context) start on one CPU with the default deletion breaker: `/readyz` waits for the check that its records can be written (dryRun create + LIST) | {:.2} ms | — | — | — | — |",
            median(&st.ready_breaker)
        );
        if !st.musl_ready.is_empty() {
            let idle = median(
                &st.musl_idle_kib
                    .iter()
                    .map(|k| *k as f64)
                    .collect::<Vec<_>>(),
            );
            let _ = writeln!(
                w,
                "| 3 | start on one CPU, static musl binary (the image's): exec → `/readyz`; idle RSS once ready | {:.2} ms; {:.1} MiB = {:.2} MB | — | — | RSS ≤ 7.2 MB | {} |",
                median(&st.musl_ready),
                idle / 1024.0,
                idle * 1024.0 / 1e6,
                yes(idle * 1024.0 <= 7.2e6)
            );
        }
        let _ = writeln!(
            w,
            "| 3 | (diagnosis) cold floor in-process: new kube client + GET + DELETE, median of {n}: kube's default client / with TCP_NODELAY | {:.2} ms / {:.2} ms | — | — | — | — |",
            median(&st.cold_floor),
            median(&st.cold_floor_nodelay),
            n = st.cold_floor.len()
        );
        let _ = writeln!(
            w,
            "| 3 | (diagnosis) fresh server: first event after `/readyz` → `deleted`; a second event (other pod) sent right after, median of {} | {:.2} ms; {:.2} ms | floor {fm:.2} ms (warm) | {:.1}×; {:.1}× | — | — |",
            st.first_event.len(),
            median(&st.first_event),
            median(&st.second_event),
            median(&st.first_event) / fm,
            median(&st.second_event) / fm
        );
    }
    if parts.once {
        let onm = median(&st.once);
        let _ = writeln!(
            w,
            "| 3 | one-shot `falco-responder once` (whole Argo event in BODY, default configuration: breaker on): exec → exit after deleting, median of {} (max) | {onm:.2} ms ({:.2} ms) | floor {fm:.2} ms (warm GET + DELETE) | +{:.2} ms | ≤ floor + 8 ms = {:.2} ms | {} |",
            st.once.len(),
            pct(&st.once, 100.0),
            onm - fm,
            8.0 + fm,
            yes(onm <= 8.0 + fm)
        );
        let parts: Vec<String> = once_breakdown(st)
            .iter()
            .map(|(k, v)| format!("{k} {v:.2}"))
            .collect();
        let _ = writeln!(
            w,
            "| 3 | (breakdown) one-shot, ms since exec (medians; apiserver audit log): {} | process start without any call (a skipped event: exec → exit) {:.2} ms | — | — | — | — |",
            parts.join("; "),
            median(&st.once_skip)
        );
        if !st.musl_once.is_empty() {
            let _ = writeln!(
                w,
                "| 3 | (context) one-shot, static musl binary (the image's) | {:.2} ms | — | — | — | — |",
                median(&st.musl_once)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Sizes; 6. criterion; the machine

/// Static means: no program interpreter (PT_INTERP) in the ELF program headers.
fn is_static(path: &Path) -> bool {
    let b = std::fs::read(path).expect("read binary");
    assert!(
        b.len() > 64 && &b[..4] == b"\x7fELF" && b[4] == 2,
        "not an ELF64 file"
    );
    let u16at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(b[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16at(0x36), u16at(0x38));
    !(0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) == 3
    })
}

/// (benchmark id, median ns) from criterion's `new/estimates.json` files.
fn criterion_medians(dir: &Path) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut visited = 0;
    while let Some(d) = stack.pop() {
        visited += 1;
        if visited > 10_000 {
            break;
        }
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "new") {
                    let bench: Option<Value> = std::fs::read(p.join("benchmark.json"))
                        .ok()
                        .and_then(|b| serde_json::from_slice(&b).ok());
                    let est: Option<Value> = std::fs::read(p.join("estimates.json"))
                        .ok()
                        .and_then(|b| serde_json::from_slice(&b).ok());
                    if let (Some(bench), Some(est)) = (bench, est)
                        && let (Some(id), Some(m)) = (
                            bench["full_id"].as_str(),
                            est["median"]["point_estimate"].as_f64(),
                        )
                    {
                        out.push((id.to_string(), m));
                    }
                } else if p.file_name().is_some_and(|n| n != "report") {
                    stack.push(p);
                }
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Share (%) of both cores busy during `d`, from /proc/stat: anything else running shows here.
fn cpu_busy(d: Duration) -> f64 {
    let sample = || -> (u64, u64) {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let v: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .skip(1)
            .filter_map(|n| n.parse().ok())
            .collect();
        let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
        (v.iter().sum(), idle)
    };
    let (t0, i0) = sample();
    std::thread::sleep(d);
    let (t1, i1) = sample();
    let total = t1.saturating_sub(t0).max(1) as f64;
    100.0 * (1.0 - i1.saturating_sub(i0) as f64 / total)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{nproc} cores (nproc), {model}, {:.1} GiB memory, Linux {}",
        mem_kib as f64 / 1024.0 / 1024.0,
        kernel.trim()
    )
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn commit() -> String {
    let head = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    match git(&["status", "--porcelain", "--", ".", ":!docs/BENCHMARKS.md"]) {
        Some(s) if !s.is_empty() => format!("{head}-dirty"),
        _ => head,
    }
}

fn tool_version(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).to_string();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s.lines().next().unwrap_or("").trim().to_string()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// The report

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1024.0 / 1024.0
}

fn yes(ok: bool) -> &'static str {
    if ok { "yes" } else { "**no**" }
}

struct Report<'a> {
    s: &'a Settings,
    load_before: String,
    load_after: String,
    busy_before: f64,
    tp: Throughput,
    lat: Latency,
    st: Start,
    micro: Vec<(String, f64)>,
    hostile: Option<(hostile::Hostile, hostile::Soak)>,
    shapes: Option<Vec<shapes::Shape>>,
    elapsed: Duration,
    guards: GuardCost,
    contain: contain::ContainCost,
}

fn write_report(r: &Report) -> String {
    let s = r.s;
    let (tp, lat, st) = (&r.tp, &r.lat, &r.st);
    let mut md = String::new();
    let w = &mut md;
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%d %H:%M UTC")
        .to_string();
    let _ = writeln!(w, "# Benchmarks\n");
    let _ = writeln!(
        w,
        "Written by `scripts/bench.sh` (driver: `examples/bench.rs`; do not edit by hand). Every \
         number in the table was measured in one run, side by side with its baseline.\n"
    );
    let _ = writeln!(w, "- machine: {}", machine());
    let _ = writeln!(w, "- date: {now}");
    let _ = writeln!(
        w,
        "- quiet check: {:.0}% of the 2 cores busy in the 2 s before measuring (apiserver and \
         etcd idling: a few %); load average (1/5/15 min) before / after: {} / {}. Anything else \
         running on the machine shows here and skews the numbers.",
        r.busy_before, r.load_before, r.load_after
    );
    let now_commit = commit();
    match &s.commit {
        Some(built) if *built != now_commit => {
            let _ = writeln!(
                w,
                "- commit: `{built}` (binaries built from it; HEAD is `{now_commit}` now)"
            );
        }
        Some(built) => {
            let _ = writeln!(w, "- commit: `{built}`");
        }
        None => {
            let _ = writeln!(w, "- commit: `{now_commit}`");
        }
    }
    let _ = writeln!(
        w,
        "- tools: {}; {}; kube-apiserver 1.20.2 (`tests/testkit`, etcd on the same machine)",
        tool_version("rustc", &["-V"]),
        tool_version("wrk", &["-v"]),
    );
    let _ = writeln!(
        w,
        "- settings: {} connections, {} s per wrk run, {} rounds per side; {} pods per latency \
         series; bursts of {}; {} starts; measurements took {:.0} s\n",
        s.connections,
        s.seconds,
        s.rounds,
        s.pods,
        s.burst,
        s.starts,
        r.elapsed.as_secs_f64()
    );

    let _ = writeln!(w, "## Results\n");
    let _ = writeln!(
        w,
        "| # | what | measured | baseline (this run) | ratio | target | met? |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|");
    let targets = 1 + envelope_rows().len();
    for (i, (name, ours, base)) in tp.runs.iter().enumerate() {
        // The target holds for the realistic event in every envelope; the rest is context.
        throughput_row(w, s, name, ours, base, i < targets);
    }
    if let Some((_, _, base)) = tp.runs.first() {
        let b = median(&base.iter().map(|r| r.rps).collect::<Vec<_>>());
        for (label, env, runs) in &tp.variants {
            let v = median(&runs.iter().map(|r| r.rps).collect::<Vec<_>>());
            let _ = writeln!(
                w,
                "| 1 | (diagnosis) the same, first payload, {label} (`{env}`, same binary) | {v:.0} req/s | bare hyper {b:.0} req/s | {:.2}× | — | — |",
                v / b
            );
        }
    }
    let bare_rps = tp.runs.first().map_or(f64::NAN, |(_, _, base)| {
        median(&base.iter().map(|r| r.rps).collect::<Vec<_>>())
    });
    if let Some(m) = &tp.musl {
        let _ = writeln!(
            w,
            "| 1 | (context) the same, first payload, static musl binary (the image's), 1 run | {:.0} req/s | bare hyper {bare_rps:.0} req/s | {:.2}× | — | — |",
            m.rps,
            m.rps / bare_rps
        );
    }
    let (om, op99) = (median(&lat.ours), pct(&lat.ours, 99.0));
    let (fm, fp99) = (median(&lat.floor), pct(&lat.floor, 99.0));
    let (em, ep99) = (median(&lat.floor_event), pct(&lat.floor_event, 99.0));
    let n = lat.ours.len();
    let _ = writeln!(
        w,
        "| 2 | delete latency, event → `deleted`, median of {n} | {om:.2} ms | bare kube GET + DELETE {fm:.2} ms | {:.2}× | ≤ 1.1× | {} |",
        om / fm,
        yes(om / fm <= 1.1)
    );
    let _ = writeln!(
        w,
        "| 2 | delete latency, p99 of {n} | {op99:.2} ms | bare kube GET + DELETE {fp99:.2} ms | {:.2}× | ≤ 1.5× | {} |",
        op99 / fp99,
        yes(op99 / fp99 <= 1.5)
    );
    let _ = writeln!(
        w,
        "| 2 | (context) delete latency vs. a floor that also POSTs the Event, median / p99 | {om:.2} / {op99:.2} ms | bare kube GET + DELETE + POST event {em:.2} / {ep99:.2} ms | {:.2}× / {:.2}× | — | — |",
        om / em,
        op99 / ep99
    );
    let _ = writeln!(
        w,
        "| 2 | (context) cost of the Event POST: floor+Event − floor, median | {:.2} ms | — | — | — | — |",
        em - fm
    );
    let bn = s.burst;
    let _ = writeln!(
        w,
        "| 2 | burst: {bn} events for {bn} pods at once (own connection each), wall time | {:.0} ms; {}/{bn} answered `deleted`, {} DELETEs audited, {} pods terminating | bare kube client, {bn} concurrent GET + DELETE: {:.0} ms | {:.2}× | all {bn} deleted, no throttling | {} |",
        lat.burst_ms,
        lat.burst_deleted,
        lat.burst_audit_deletes,
        lat.burst_terminating,
        lat.burst_floor_ms,
        lat.burst_ms / lat.burst_floor_ms,
        yes(lat.burst_deleted == bn
            && lat.burst_terminating == bn
            && lat.burst_audit_deletes == bn)
    );
    let _ = writeln!(
        w,
        "| 2 | (diagnosis) the bare burst with a TCP_NODELAY kube client (as the function's); the same plus the Event POST per pod | {:.0} ms; {:.0} ms | bare kube client (default) {:.0} ms | {:.2}×; {:.2}× | — | — |",
        lat.burst_floor_nodelay_ms,
        lat.burst_floor_event_ms,
        lat.burst_floor_ms,
        lat.burst_floor_nodelay_ms / lat.burst_floor_ms,
        lat.burst_floor_event_ms / lat.burst_floor_ms
    );
    write_start(
        w,
        st,
        Parts {
            start: true,
            once: true,
        },
    );
    let idle = tp.idle_kib as f64 / 1024.0;
    let _ = writeln!(
        w,
        "| 4 | RSS idle (VmRSS after start, pinned, 1 worker; of which anonymous) | {idle:.1} MiB = {:.1} MB ({:.1} MiB) | bare hyper {:.1} MiB | — | ≤ 8 MB | {} |",
        tp.idle_kib as f64 * 1024.0 / 1e6,
        tp.idle_anon_kib as f64 / 1024.0,
        tp.bare_idle_kib as f64 / 1024.0,
        yes(tp.idle_kib * 1024 <= 8_000_000)
    );
    let _ = writeln!(
        w,
        "| 4 | RSS peak under (1) (VmHWM) | {:.1} MiB | bare hyper {:.1} MiB | — | — | — |",
        tp.peak_kib as f64 / 1024.0,
        tp.bare_peak_kib as f64 / 1024.0
    );
    if let Some(m) = &tp.musl {
        let _ = writeln!(
            w,
            "| 4 | RSS idle (of which anonymous) / peak under (1), static musl binary (what the image ships) | {:.1} MiB = {:.1} MB ({:.1} MiB) / {:.1} MiB | — | — | ≤ 8 MB idle | {} |",
            m.idle_kib as f64 / 1024.0,
            m.idle_kib as f64 * 1024.0 / 1e6,
            m.anon_kib as f64 / 1024.0,
            m.peak_kib as f64 / 1024.0,
            yes(m.idle_kib * 1024 <= 8_000_000)
        );
    }
    let rel = std::fs::metadata(&s.responder)
        .map(|m| m.len())
        .unwrap_or(0);
    let _ = writeln!(
        w,
        "| 4 | release binary size (glibc, stripped, LTO) | {:.2} MiB | — | — | — | — |",
        mib(rel)
    );
    match &s.musl {
        Some(m) => {
            let size = std::fs::metadata(m).map(|m| m.len()).unwrap_or(0);
            let st = is_static(m);
            let _ = writeln!(
                w,
                "| 4 | static musl binary size (what the image ships) | {:.2} MiB = {:.1} MB ({}) | — | — | ≤ 10 MB | {} |",
                mib(size),
                size as f64 / 1e6,
                if st {
                    "static: no ELF interpreter"
                } else {
                    "NOT static"
                },
                yes(st && size <= 10_000_000)
            );
        }
        None => {
            let _ = writeln!(
                w,
                "| 4 | static musl binary size | not built | — | — | ≤ 10 MB | **no** |"
            );
        }
    }
    let outcomes: Vec<String> = lat
        .storm_outcomes
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect();
    let _ = writeln!(
        w,
        "| 5 | event storm: {} requests, 100 concurrent, one pod: DELETEs / GETs at the apiserver; wall time | {} DELETE, {} GET; {:.0} ms ({}) | — | — | ≤ 2 DELETEs, < 2 s | {} |",
        lat.storm_requests,
        lat.storm_deletes,
        lat.storm_gets,
        lat.storm_ms,
        outcomes.join(", "),
        yes(lat.storm_deletes <= 2 && lat.storm_ms < 2000.0 && lat.storm_requests == 10_000)
    );
    if r.micro.is_empty() {
        let _ = writeln!(
            w,
            "| 6 | micro-benchmarks | not found in {} | — | — | — | — |",
            s.criterion.display()
        );
    }
    for (id, ns) in &r.micro {
        let _ = writeln!(
            w,
            "| 6 | `{id}` (criterion median) | {:.2} µs | — | — | — | — |",
            ns / 1000.0
        );
    }

    if let Some((h, k)) = &r.hostile {
        hostile::rows(w, h, k);
    }

    let _ = writeln!(w, "\n### Details\n");
    for (name, ours, base) in &tp.runs {
        let list = |runs: &[WrkRun]| {
            runs.iter()
                .map(|r| format!("{:.0} ({} req)", r.rps, r.requests))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            w,
            "- (1) {name}: falco-responder runs {}; bare hyper runs {}; wrk p50 {:.2} ms vs {:.2} ms.",
            list(ours),
            list(base),
            median(&ours.iter().map(|r| r.p50_us).collect::<Vec<_>>()) / 1000.0,
            median(&base.iter().map(|r| r.p50_us).collect::<Vec<_>>()) / 1000.0
        );
    }
    let _ = writeln!(
        w,
        "- (2) sequential series (interleaved pod by pod, min / median / p90 / p99 / max, ms): \
         falco-responder {}; floor {}; floor + Event {}.",
        spread(&lat.ours),
        spread(&lat.floor),
        spread(&lat.floor_event)
    );
    let slowest = |v: &[f64]| {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|a, b| v[*b].total_cmp(&v[*a]));
        idx.iter()
            .take(5)
            .map(|i| format!("#{i} {:.1}", v[*i]))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(
        w,
        "- (2) slowest five (pod index, ms): falco-responder {}; floor {}; floor + Event {}.",
        slowest(&lat.ours),
        slowest(&lat.floor),
        slowest(&lat.floor_event)
    );
    if !lat.server_side.is_empty() {
        let parts: Vec<String> = lat
            .server_side
            .iter()
            .map(|(k, m, p)| format!("{k} {m:.2} / {p:.2}"))
            .collect();
        let _ = writeln!(
            w,
            "- (2) time inside the apiserver (audit log, RequestReceived → ResponseComplete, median / p99 ms): {}.",
            parts.join("; ")
        );
    }
    let _ = writeln!(
        w,
        "- (3) start, ms: falco-responder ready on one CPU {}; bare hyper {}; exec → first event {}; once {}; once with a skipped event {}; warm floor {}; cold floor (new kube client + GET + DELETE, in-process) {}; the same with TCP_NODELAY {}.",
        spread(&st.ready),
        spread(&st.bare_ready),
        spread(&st.exec_first_event),
        spread(&st.once),
        spread(&st.once_skip),
        spread(&st.warm_floor),
        spread(&st.cold_floor),
        spread(&st.cold_floor_nodelay)
    );
    if let Some((h, k)) = &r.hostile {
        hostile::details(w, h, k);
    }
    let _ = writeln!(
        w,
        "\n## Reference (measured earlier, not in this run)\n\n\
         Measured earlier on the same kind of machine; context only, nothing above is compared \
         with them.\n\n\
         | what | reference |\n|---|---|\n\
         | bare hyper, no-action throughput | ~120,000 req/s |\n\
         | bare kube GET + DELETE pair | ~3 ms |\n\
         | Go responders: start (HTTP ready) | 12 ms |\n\
         | Go responders: one-shot delete | 16.5 ms |\n\
         | Go responders: RSS | 18 MiB |\n\
         | Go responders: binaries | 24 MiB |\n\
         | Python responder: cold start | 240 ms |\n\
         | Python responder: per delete | 7 ms |\n"
    );
    let _ = writeln!(
        w,
        "## How to read it\n\n\
         - **Ratios are against a baseline measured in the same run**, on the same machine, so \
         they travel between machines better than the absolute numbers. The targets are ratios \
         where a floor exists, absolute where none does.\n\
         - **(1)** Both servers run alone on core 0 (`taskset -c 0`, `TOKIO_WORKER_THREADS=1`); \
         wrk runs on core 1 (`taskset -c 1 wrk -t1`), POSTing the same body over keep-alive \
         connections. The bare server (`examples/bench_bare_hyper.rs`) only reads the body and \
         answers 200; falco-responder decodes, decides to skip, counts a metric, logs one line \
         at info (to /dev/null here) and answers JSON. The ratio is what all of that costs per \
         request. The target row is a realistic event: a full Falco 0.41 event (~2 KB, the six \
         container-plugin fields, rule not in RULES) as Falcosidekick posts it; a plain event is \
         skipped from its rule, priority and source alone, before the rest is built \
         (`decode::peek_plain`). The (breakdown) rows post the same event in the other \
         envelopes, which are decoded in full first. The kube-apiserver and etcd are idle on \
         the same machine. On a shared virtual machine one wrk run can be 15% off the next \
         for the same binary: each side's figure is the median of its runs, taken in \
         alternating order.\n\
         - **(2)** One request at a time, keep-alive, against the real apiserver; for each pod \
         index falco-responder, the bare kube loop and the bare loop with the Event POST take \
         turns, so apiserver drift hits all three alike. The floor is GET + DELETE with the uid \
         precondition: what any responder must do. falco-responder also records a Kubernetes \
         Event (a third call, POST events); the \"floor + Event\" row is what a responder that \
         waits for that call before answering would take, and the difference of the two floors \
         is what the Event costs. A ratio near 1.0× against the plain floor means the Event is \
         off the response path (recorded after the answer). The burst shows that the kube \
         client does not throttle (kube-rs has no client-side rate limiter): all pods are deleted \
         in about the time the apiserver needs for that many pairs.\n\
         - **(3)** Wall time from `spawn` to the first 200 (polled every 0.1 ms), to the first \
         event's answer, or to the exit of `once`. The start rows run on one CPU (`taskset -c \
         0`, no TOKIO_WORKER_THREADS: what a pod with a CPU limit of 1 gets), the deletion \
         breaker off unless said. The one-shot runs with the default configuration (breaker on: \
         its records in a namespace of their own, cleared between runs so that the default \
         budget never opens); it pays process start, reading the kubeconfig, one TLS connection \
         and six API calls taking turns on it: GET pod, LIST records, GET namespace, DELETE, \
         then the breaker's record and the audit Event. The breakdown takes the calls' arrival \
         and answer from the apiserver's audit log (same clock). The \"fresh server\" row is \
         the first event a just-started server (Knative scale from zero) handles, and a second \
         one right after it: both open a new apiserver connection.\n\
         - **(4)** VmRSS right after start (idle) and VmHWM after the runs of (1) (peak); sizes \
         of the stripped release binaries. VmRSS includes the touched, file-backed pages of the \
         binary and of libc (clean, shared with the page cache); the anonymous part in brackets \
         is the process's own memory. The static musl binary is what the image ships (with \
         mimalloc). MB in targets = 10^6 bytes; sizes are shown in MiB.\n\
         - **(5)** 100 keep-alive connections × 100 requests for one pod; the apiserver's audit \
         log counts the calls that reached it. Concurrent events share one GET + DELETE \
         (coalescing) and the outcome is remembered for `DEDUP_SECONDS` (5).\n\
         - **(diagnosis)** rows are not targets: the same binary under another environment \
         variable, or a kube client variant, measured in the same run to show where time goes. \
         `LOG_FORMAT=json` writes the per-event log line as JSON; `RUST_LOG=warn` drops it. \
         The cold floor compares kube's `Client::try_from(config)` with the function's \
         `client::nodelay_client` (the same layers on a connector with TCP_NODELAY; kube 5 \
         leaves Nagle on, kube-rs#2056): without it, the first request of every new apiserver \
         connection waits ~40 ms for a delayed ACK.\n\
         - **(6)** criterion medians of the pure per-request work \
         (`cargo bench --bench decode_decide`): microseconds, against milliseconds for any API \
         call.\n\
         - Latencies on 2 cores shared by the apiserver, etcd, the driver and the function: \
         medians are stable to a few percent between runs, p99 and throughput less so (±10%)."
    );
    write_guards(w, &r.guards);
    contain::write_contain(w, &r.contain);
    if let Some(shapes) = &r.shapes {
        let bin = if r.s.musl.is_some() {
            "the static musl build"
        } else {
            "the release build"
        };
        shapes::write(w, shapes, bin);
    }
    if r.hostile.is_some() {
        let _ = writeln!(w, "{}", hostile::HOW_TO_READ);
    }
    md
}

/// A row of (1): medians, with the spread of the rounds (min–max of each side, and of the ratio
/// of the two runs of each round, which ran back to back).
fn throughput_row(
    w: &mut String,
    s: &Settings,
    name: &str,
    ours: &[WrkRun],
    base: &[WrkRun],
    target: bool,
) {
    let rps = |runs: &[WrkRun]| runs.iter().map(|r| r.rps).collect::<Vec<_>>();
    let (o, b) = (rps(ours), rps(base));
    let ratios: Vec<f64> = ours.iter().zip(base).map(|(o, b)| o.rps / b.rps).collect();
    let p99 = median(&ours.iter().map(|r| r.p99_us).collect::<Vec<_>>()) / 1000.0;
    let bp99 = median(&base.iter().map(|r| r.p99_us).collect::<Vec<_>>()) / 1000.0;
    let ratio = median(&o) / median(&b);
    let (t, met) = if target {
        ("≥ 0.8×", yes(ratio >= 0.8))
    } else {
        ("—", "—")
    };
    let _ = writeln!(
        w,
        "| 1 | no-action throughput, {name}, {} conns (p99 latency) | {:.0} req/s ({p99:.2} ms; runs {:.0}–{:.0}) | bare hyper {:.0} req/s ({bp99:.2} ms; runs {:.0}–{:.0}) | {ratio:.2}× (rounds {:.2} / {:.2} / {:.2}) | {t} | {met} |",
        s.connections,
        median(&o),
        pct(&o, 0.0),
        pct(&o, 100.0),
        median(&b),
        pct(&b, 0.0),
        pct(&b, 100.0),
        pct(&ratios, 0.0),
        median(&ratios),
        pct(&ratios, 100.0),
    );
}

fn spread(v: &[f64]) -> String {
    if v.is_empty() {
        return "—".into();
    }
    format!(
        "{:.2} / {:.2} / {:.2} / {:.2} / {:.2}",
        pct(v, 0.0),
        median(v),
        pct(v, 90.0),
        pct(v, 99.0),
        pct(v, 100.0)
    )
}

// ---------------------------------------------------------------------------------------------

fn main() {
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    assert!(
        [
            "",
            "guards",
            "hostile",
            "start",
            "once",
            "contain",
            "envelopes"
        ]
        .contains(&only.as_str()),
        "BENCH_ONLY={only}: only `guards`, `hostile`, `start`, `once`, `contain` and `envelopes` are known"
    );
    if only == "hostile" {
        shapes::run_only();
        return;
    }
    let s = Settings::from_env();
    let begun = Instant::now();
    let load_before = loadavg();
    say("starting kube-apiserver + etcd");
    let server = ApiServer::start();
    // Wait (bounded) for the machine to be quiet: a shared machine skews every number.
    let quiet_wait = Duration::from_secs(env_num("BENCH_QUIET_WAIT", 180));
    let waiting_since = Instant::now();
    let mut busy_before = cpu_busy(Duration::from_secs(2));
    while busy_before > 15.0 && waiting_since.elapsed() < quiet_wait {
        say(&format!(
            "the machine is busy ({busy_before:.0}% of 2 cores): waiting for it to be quiet \
             (at most {} s more)",
            quiet_wait.saturating_sub(waiting_since.elapsed()).as_secs()
        ));
        std::thread::sleep(Duration::from_secs(5));
        busy_before = cpu_busy(Duration::from_secs(2));
    }
    if busy_before > 15.0 {
        say(&format!(
            "warning: still busy ({busy_before:.0}% of 2 cores): the numbers will be skewed"
        ));
    }

    if only == "guards" {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let guards = runtime.block_on(async {
            let admin = server.admin_client().await;
            guard_costs(&s, &server, &admin).await
        });
        drop(runtime);
        let mut md = String::new();
        write_guards(&mut md, &guards);
        println!("{md}");
        say(&format!(
            "guards only (BENCH_ONLY=guards): {busy_before:.0}% busy before, nothing written, \
             {:.0} s",
            begun.elapsed().as_secs_f64()
        ));
        drop(server);
        return;
    }
    if only == "contain" {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let c = runtime.block_on(async {
            let admin = server.admin_client().await;
            contain::contain_costs(&s, &server, &admin).await
        });
        drop(runtime);
        let mut md = String::new();
        contain::write_contain(&mut md, &c);
        println!("{md}");
        say(&format!(
            "contain only (BENCH_ONLY=contain): {busy_before:.0}% busy before, load {} → {}, \
             nothing written, {:.0} s",
            load_before,
            loadavg(),
            begun.elapsed().as_secs_f64()
        ));
        drop(server);
        return;
    }
    if only == "start" || only == "once" {
        let parts = Parts {
            start: only == "start",
            once: only == "once",
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let st = runtime.block_on(async {
            let admin = server.admin_client().await;
            starts(&s, &server, &admin, parts).await
        });
        drop(runtime);
        let mut md = String::from(
            "| # | what | measured | baseline (this run) | ratio | target | met? |\n|---|---|---|---|---|---|---|\n",
        );
        write_start(&mut md, &st, parts);
        println!("{md}");
        say(&format!(
            "{only} only (BENCH_ONLY={only}): {busy_before:.0}% busy before, load {} → {}, \
             nothing written, {:.0} s",
            load_before,
            loadavg(),
            begun.elapsed().as_secs_f64()
        ));
        drop(server);
        return;
    }

    if only == "envelopes" {
        let tp = throughput(&s, &server, true);
        let mut md = String::from(
            "| # | what | measured | baseline (this run) | ratio (rounds min / median / max) | target | met? |\n|---|---|---|---|---|---|---|\n",
        );
        for (name, ours, base) in &tp.runs {
            throughput_row(&mut md, &s, name, ours, base, true);
        }
        println!("{md}");
        say(&format!(
            "envelopes only (BENCH_ONLY=envelopes): {busy_before:.0}% busy before, load {} → {}, \
             {} rounds of {} s, nothing written, {:.0} s",
            load_before,
            loadavg(),
            s.rounds,
            s.seconds,
            begun.elapsed().as_secs_f64()
        ));
        drop(server);
        return;
    }

    // (1) first, on a quiet apiserver; synchronous (wrk runs as a child process).
    let tp = throughput(&s, &server, false);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (lat, st, guards, contain) = runtime.block_on(async {
        let admin = server.admin_client().await;
        let lat = deletes(&s, &server, &admin).await;
        let all = Parts {
            start: true,
            once: true,
        };
        let st = starts(&s, &server, &admin, all).await;
        let guards = guard_costs(&s, &server, &admin).await;
        let contain = contain::contain_costs(&s, &server, &admin).await;
        (lat, st, guards, contain)
    });
    // (7) and (8): hostile load and soak; BENCH_HOSTILE=0 skips them.
    let hostile = (env_num("BENCH_HOSTILE", 1u8) != 0).then(|| {
        let h = runtime.block_on(hostile::hostile_memory(&s));
        (h, hostile::soak(&s, server.dir()))
    });
    // (9) the hostile shapes, on the image's binary where it was built.
    let shapes = (env_num("BENCH_HOSTILE", 1u8) != 0)
        .then(|| runtime.block_on(shapes::shapes(s.musl.as_ref().unwrap_or(&s.responder))));
    drop(runtime);

    let micro = criterion_medians(&s.criterion);
    let report = Report {
        s: &s,
        load_before,
        load_after: loadavg(),
        busy_before,
        tp,
        lat,
        st,
        micro,
        hostile,
        shapes,
        elapsed: begun.elapsed(),
        guards,
        contain,
    };
    let md = write_report(&report);
    if let Some(parent) = s.out.parent() {
        std::fs::create_dir_all(parent).expect("create docs dir");
    }
    std::fs::write(&s.out, &md).expect("write report");
    println!("{md}");
    say(&format!(
        "wrote {} in {:.0} s",
        s.out.display(),
        begun.elapsed().as_secs_f64()
    ));
    drop(server);
}
