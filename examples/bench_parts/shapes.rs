//! Part of the benchmark driver (`examples/bench.rs`): (9) the hostile shapes one by one and all
//! together, on the image's binary (the static musl build), each while a true event is posted
//! every 100 ms on a fresh connection and the probes are polled: peak RSS (VmHWM) against the
//! 48 MiB goal, true events answered and their latency. `BENCH_ONLY=hostile` runs this alone.
//!
//! The shapes (a) decoding: valid ~1 MiB events whose `output_fields` holds a large array, 8
//! at once; (b) 1 MiB rule names (skipped, echoed), 8 at once; (c) clients that never read their
//! replies; (d) 300 small slow bodies; (e) 500 slow 1 MiB bodies; (f) 3,000 idle connections;
//! (g) 3,000 incomplete request heads; (h) every connection slot held by stalled bodies while
//! the probes are polled.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    path::Path,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    task::JoinHandle,
};

use super::{Proc, env_num, free_port, mib, ms, pct, say, spawn_ready, status_kib, yes};

/// The path a shape reaches the function by.
const DIRECT: &str = "direct or a streaming gateway (Kourier → activator/queue-proxy, the OpenFaaS gateway); a Knative Broker delivers it too (whole events)";
const STREAMING: &str = "direct or a streaming gateway (Kourier → activator/queue-proxy, the OpenFaaS gateway); not through a Knative Broker (it buffers whole events)";

pub struct Shape {
    pub key: &'static str,
    pub what: String,
    pub path: &'static str,
    pub idle_kib: u64,
    /// The highest of `hwm_runs`.
    pub hwm_kib: u64,
    /// VmHWM of each run (BENCH_SHAPE_RUNS).
    pub hwm_runs: Vec<u64>,
    pub events_ok: usize,
    pub events: usize,
    pub event_ms: Vec<f64>,
    pub probes_ok: usize,
    pub probes: usize,
    pub probe_ms: Vec<f64>,
    /// What the attackers heard: answers by status, or what became of them.
    pub note: String,
}

/// A valid event acted on (`dry-run`), with `output_fields` holding an array of about `bytes`.
fn big_array_event(bytes: usize) -> String {
    let mut v: Value = serde_json::from_str(&super::terminal_shell("shop", "big-0", super::CID))
        .expect("event JSON");
    let n = bytes / 16;
    let items: Vec<Value> = (0..n).map(|i| json!(format!("img-{i:09}"))).collect();
    v["output_fields"]["ka.req.pod.containers.image"] = Value::Array(items);
    v.to_string()
}

/// An event whose rule (not in RULES: skipped) is about `bytes` long.
fn long_rule_event(bytes: usize) -> String {
    let mut v: Value = serde_json::from_str(&super::terminal_shell("shop", "rule-0", super::CID))
        .expect("event JSON");
    v["rule"] = json!("r".repeat(bytes));
    v.to_string()
}

/// `POST /` of `body`; `close`: one request on the connection (else keep-alive, to pipeline).
fn post(body: &str, close: bool) -> Vec<u8> {
    format!(
        "POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{}content-length: {}\r\n\r\n{body}",
        if close { "connection: close\r\n" } else { "" },
        body.len()
    )
    .into_bytes()
}

/// Counts answers by status (`000` for none).
#[derive(Default)]
struct Tally(std::sync::Mutex<std::collections::BTreeMap<u16, usize>>);

impl Tally {
    fn add(&self, status: u16) {
        *self.0.lock().unwrap().entry(status).or_default() += 1;
    }
    fn text(&self) -> String {
        let m = self.0.lock().unwrap();
        if m.is_empty() {
            return "no answers".into();
        }
        m.iter()
            .map(|(s, n)| {
                if *s == 0 {
                    format!("{n} without an answer")
                } else {
                    format!("{n} × {s}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn status_of(raw: &[u8]) -> u16 {
    std::str::from_utf8(raw.get(9..12).unwrap_or_default())
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Sends `request` on a new connection and reads the answer, again and again until `stop`.
async fn repeat(addr: SocketAddr, request: Arc<Vec<u8>>, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let (mut rd, mut wr) = s.split();
        let send = async {
            let _ = wr.write_all(&request).await;
        };
        let mut raw = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(30), rd.read_to_end(&mut raw));
        let _ = tokio::join!(send, read);
        tally.add(status_of(&raw));
    }
}

/// (c) A client that never reads: a small receive window, requests pipelined until the server
/// stops taking them, then held without reading until the server drops it (or `stop`).
async fn never_reads(
    addr: SocketAddr,
    request: Arc<Vec<u8>>,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(socket) = TcpSocket::new_v4() else {
            return;
        };
        let _ = socket.set_recv_buffer_size(4096);
        let Ok(mut s) = socket.connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        for _ in 0..64 {
            match tokio::time::timeout(Duration::from_secs(1), s.write_all(&request)).await {
                Ok(Ok(())) => {}
                _ => break,
            }
        }
        // Held until the server ends it: a write fails once it has.
        let held = Instant::now();
        while !stop.load(Ordering::Relaxed) && held.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if matches!(
                tokio::time::timeout(Duration::from_millis(100), s.write_all(b"\r\n")).await,
                Ok(Err(_))
            ) {
                tally.add(1); // dropped by the server
                break;
            }
        }
    }
}

/// (d) and (h): announces 64 KiB, sends one byte, waits for the answer; again until `stop`.
async fn small_slow(addr: SocketAddr, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let head = Arc::new(
        b"POST / HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 65536\r\n\r\n{"
            .to_vec(),
    );
    repeat(addr, head, stop, tally).await
}

/// (g): a 12 KB request head that never ends; a new one when the server closes it.
async fn incomplete_head(addr: SocketAddr, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let head = format!(
        "POST / HTTP/1.1\r\nhost: x\r\nx-pad: {}",
        "a".repeat(12_000)
    );
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        if s.write_all(head.as_bytes()).await.is_err() {
            continue;
        }
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut raw)).await;
        tally.add(status_of(&raw));
    }
}

/// (f): connections that never send a byte; a new one when the server closes one.
async fn idle(addr: SocketAddr, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut b = [0u8; 1];
        let _ = tokio::time::timeout(Duration::from_secs(120), s.read(&mut b)).await;
        tally.add(0);
    }
}

struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
    notes: Vec<(&'static str, Arc<Tally>)>,
    /// Refused with 503 / answered otherwise.
    counted: Vec<(&'static str, Arc<AtomicUsize>, Arc<AtomicUsize>)>,
}

impl Load {
    fn new() -> Load {
        Load {
            stop: Arc::new(AtomicBool::new(false)),
            tasks: Vec::new(),
            notes: Vec::new(),
            counted: Vec::new(),
        }
    }

    fn spawn<F, Fut>(&mut self, label: &'static str, n: usize, f: F)
    where
        F: Fn(Arc<AtomicBool>, Arc<Tally>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let tally = Arc::new(Tally::default());
        for _ in 0..n {
            self.tasks
                .push(tokio::spawn(f(self.stop.clone(), tally.clone())));
        }
        self.notes.push((label, tally));
    }

    fn add(&mut self, key: char, addr: SocketAddr, scale: usize) {
        match key {
            'a' => {
                let r = Arc::new(post(&big_array_event(1_000_000), true));
                self.spawn("(a) big-array events", 8, |stop, t| {
                    repeat(addr, r.clone(), stop, t)
                });
            }
            'b' => {
                let r = Arc::new(post(&long_rule_event(1_000_000), true));
                self.spawn("(b) 1 MiB rule names", 8, |stop, t| {
                    repeat(addr, r.clone(), stop, t)
                });
            }
            'c' => {
                let r = Arc::new(post(&long_rule_event(200_000), false));
                self.spawn("(c) never-reading clients dropped", 16, |stop, t| {
                    never_reads(addr, r.clone(), stop, t)
                });
            }
            'd' => self.spawn("(d) small slow bodies", 300, move |stop, t| {
                small_slow(addr, stop, t)
            }),
            'e' => {
                let (refused, read) =
                    (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
                for _ in 0..500 {
                    self.tasks.push(tokio::spawn(super::hostile::slow_client(
                        addr,
                        self.stop.clone(),
                        refused.clone(),
                        read.clone(),
                    )));
                }
                self.counted.push(("(e) slow 1 MiB bodies", refused, read));
            }
            'f' => self.spawn(
                "(f) idle connections closed",
                3000 / scale,
                move |stop, t| idle(addr, stop, t),
            ),
            'g' => self.spawn("(g) incomplete heads", 3000 / scale, move |stop, t| {
                incomplete_head(addr, stop, t)
            }),
            'h' => self.spawn(
                "(h) stalled bodies holding every slot",
                4200,
                move |stop, t| small_slow(addr, stop, t),
            ),
            _ => unreachable!(),
        }
    }

    async fn stop(self) -> String {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.abort();
        }
        let counted = self.counted.iter().map(|(label, refused, read)| {
            format!(
                "{label}: {} × 503, {} answered otherwise",
                refused.load(Ordering::Relaxed),
                read.load(Ordering::Relaxed)
            )
        });
        self.notes
            .iter()
            .map(|(label, t)| format!("{label}: {}", t.text()))
            .chain(counted)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn responder(bin: &Path, port: u16) -> Proc {
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .env("PORT", port.to_string())
        .env("DRY_RUN", "true")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    spawn_ready(cmd, port, "/readyz")
}

/// A GET or an event on a fresh connection: its status (0: none within 5 s) and how long.
async fn probe(addr: SocketAddr, req: &[u8]) -> (u16, Duration) {
    let t = Instant::now();
    let exchange = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(req).await.ok()?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.ok()?;
        Some(status_of(&raw))
    };
    let status = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
        .unwrap_or(0);
    (status, t.elapsed())
}

async fn measure(
    bin: &Path,
    key: &'static str,
    what: String,
    path: &'static str,
    seconds: u64,
) -> Shape {
    let port = free_port();
    let proc = responder(bin, port);
    let pid = proc.pid();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_kib = status_kib(pid, "VmRSS:");
    let mut load = Load::new();
    let all = key == "all";
    for k in if all {
        "abcdefg".chars().collect::<Vec<_>>()
    } else {
        key.chars().collect()
    } {
        load.add(k, addr, if all { 2 } else { 1 });
    }
    let event = super::terminal_shell("shop", "payments-api-0", super::CID);
    let event_req = format!(
        "POST / HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{event}",
        event.len()
    );
    let started = Instant::now();
    let (mut events_ok, mut events, mut event_ms) = (0, 0, Vec::new());
    let (mut probes_ok, mut probes, mut probe_ms) = (0, 0, Vec::new());
    let mut i = 0usize;
    while started.elapsed() < Duration::from_secs(seconds) {
        let (s, d) = probe(addr, event_req.as_bytes()).await;
        events += 1;
        if s == 200 {
            events_ok += 1;
            event_ms.push(ms(d));
        }
        let path = ["/healthz", "/readyz", "/metrics"][i % 3];
        i += 1;
        let get = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        let (s, d) = probe(addr, get.as_bytes()).await;
        probes += 1;
        if s == 200 {
            probes_ok += 1;
            probe_ms.push(ms(d));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hwm_kib = status_kib(pid, "VmHWM:");
    let note = load.stop().await;
    drop(proc);
    let shape = Shape {
        key,
        what,
        path,
        idle_kib,
        hwm_kib,
        hwm_runs: vec![hwm_kib],
        events_ok,
        events,
        event_ms,
        probes_ok,
        probes,
        probe_ms,
        note,
    };
    say(&format!(
        "hostile ({key}): VmHWM {:.1} MiB; events {}/{} (max {:.1} ms); probes {}/{}; {}",
        mib(shape.hwm_kib * 1024),
        shape.events_ok,
        shape.events,
        worst(&shape.event_ms),
        shape.probes_ok,
        shape.probes,
        shape.note
    ));
    shape
}

fn jiff_now() -> String {
    super::jiff::Timestamp::now()
        .strftime("%Y-%m-%d %H:%M")
        .to_string()
}

fn worst(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        pct(v, 100.0)
    }
}

/// Raises the open-file limit (inherited by the binary) to the hard limit: thousands of
/// sockets on both ends of loopback.
fn raise_open_files() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: now.maximum,
            maximum: now.maximum,
        },
    );
    let after = getrlimit(Resource::Nofile).current;
    say(&format!("open files: {after:?} (needs about 10,000)"));
}

/// The same shape measured again: one row, every run's VmHWM, the events and probes of all.
fn merge(mut first: Shape, next: Shape) -> Shape {
    first.hwm_kib = first.hwm_kib.max(next.hwm_kib);
    first.hwm_runs.extend(next.hwm_runs);
    first.idle_kib = first.idle_kib.max(next.idle_kib);
    first.events_ok += next.events_ok;
    first.events += next.events;
    first.event_ms.extend(next.event_ms);
    first.probes_ok += next.probes_ok;
    first.probes += next.probes;
    first.probe_ms.extend(next.probe_ms);
    first.note = format!("{} / {}", first.note, next.note);
    first
}

/// The shapes to measure: BENCH_SHAPES (keys, e.g. `a,h,all`; all of them when unset).
fn chosen(key: &str) -> bool {
    std::env::var("BENCH_SHAPES")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .is_none_or(|v| v.split(',').any(|k| k.trim() == key))
}

pub async fn shapes(bin: &Path) -> Vec<Shape> {
    raise_open_files();
    let seconds = env_num("BENCH_SHAPE_SECONDS", 8u64);
    let runs = env_num("BENCH_SHAPE_RUNS", 1usize).max(1);
    let mut out = Vec::new();
    let list: [(&'static str, &str, &'static str); 9] = [
        (
            "a",
            "(a) valid ~1 MiB events whose `output_fields` holds a 62,500-item array, 8 clients at once",
            DIRECT,
        ),
        (
            "b",
            "(b) 1 MiB rule names (not in RULES: skipped, echoed), 8 clients at once",
            DIRECT,
        ),
        (
            "c",
            "(c) 16 clients that never read: 200 KB rule names pipelined on a 4 KiB receive window, held until dropped",
            STREAMING,
        ),
        (
            "d",
            "(d) 300 small slow bodies: 64 KiB announced, one byte sent, renewed",
            STREAMING,
        ),
        (
            "e",
            "(e) 500 slow 1 MiB bodies: 16 KiB every 100 ms, back 1 s after each 503",
            STREAMING,
        ),
        (
            "f",
            "(f) 3,000 idle connections (never a byte), renewed when closed",
            STREAMING,
        ),
        (
            "g",
            "(g) 3,000 incomplete 12 KB request heads, renewed when closed",
            STREAMING,
        ),
        (
            "h",
            "(h) 4,200 stalled bodies (64 KiB announced, one byte) against 4,096 slots; probes polled",
            STREAMING,
        ),
        (
            "all",
            "all together: (a)–(g), (f) and (g) 1,500 each",
            STREAMING,
        ),
    ];
    for (key, what, path) in list {
        if !chosen(key) {
            continue;
        }
        let mut shape = measure(bin, key, what.to_string(), path, seconds).await;
        for _ in 1..runs {
            let again = measure(bin, key, what.to_string(), path, seconds).await;
            shape = merge(shape, again);
        }
        out.push(shape);
    }
    out
}

pub fn write(w: &mut String, shapes: &[Shape], bin: &str) {
    let _ = writeln!(
        w,
        "\n## Hostile shapes\n\nThe image's binary ({bin}, `DRY_RUN=true`, log lines at info to /dev/null, default limits), one process per shape, {} s each; meanwhile a Terminal-shell event and a probe (`/healthz`, `/readyz`, `/metrics` in turn) on fresh connections every 100 ms. Target: peak RSS (VmHWM) < 48 MiB with every true event answered.\n\n| shape | path it models | peak RSS (VmHWM) | true events answered / max latency (p50) | probes answered / max | met? | what the attackers got |\n|---|---|---|---|---|---|---|",
        env_num("BENCH_SHAPE_SECONDS", 8u64)
    );
    for s in shapes {
        let met = s.hwm_kib < 48 * 1024
            && s.events_ok == s.events
            && (s.key != "h" || s.probes_ok == s.probes);
        let _ = writeln!(
            w,
            "| {} | {} | {} (idle {:.1}) | {} of {} / {:.1} ms ({:.1} ms) | {} of {} / {:.1} ms | {} | {} |",
            s.what,
            s.path,
            hwm_text(&s.hwm_runs),
            mib(s.idle_kib * 1024),
            s.events_ok,
            s.events,
            worst(&s.event_ms),
            if s.event_ms.is_empty() {
                f64::NAN
            } else {
                pct(&s.event_ms, 50.0)
            },
            s.probes_ok,
            s.probes,
            worst(&s.probe_ms),
            yes(met),
            s.note
        );
    }
    if shapes.iter().any(|s| s.hwm_runs.len() > 1) {
        let _ = writeln!(
            w,
            "\nWith several runs of a shape (`BENCH_SHAPE_RUNS`), its peak RSS is the median run's, with the lowest and highest; the events and probes are those of all its runs."
        );
    }
}

/// One run's VmHWM, or the median run's with the lowest and highest.
fn hwm_text(runs: &[u64]) -> String {
    let mut v = runs.to_vec();
    v.sort_unstable();
    let m = |kib: u64| mib(kib * 1024);
    match v.as_slice() {
        [one] => format!("{:.1} MiB", m(*one)),
        _ => format!(
            "{:.1} MiB median of {} ({:.1}–{:.1})",
            m(v[v.len() / 2]),
            v.len(),
            m(v[0]),
            m(v[v.len() - 1])
        ),
    }
}

/// `BENCH_ONLY=hostile`: the shapes alone, on MUSL_BIN (or FALCO_RESPONDER_BIN); prints the table.
pub fn run_only() {
    let bin = std::env::var_os("MUSL_BIN")
        .map(std::path::PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| std::env::var_os("FALCO_RESPONDER_BIN").map(std::path::PathBuf::from))
        .expect("MUSL_BIN or FALCO_RESPONDER_BIN: run scripts/bench.sh");
    let begun = Instant::now();
    let busy = super::cpu_busy(Duration::from_secs(2));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let shapes = runtime.block_on(shapes(&bin));
    drop(runtime);
    let mut md = String::new();
    let name = bin
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let label = if std::env::var_os("MUSL_BIN").is_some() {
        format!("static musl `{name}`")
    } else {
        format!("`{name}`")
    };
    write(&mut md, &shapes, &label);
    let _ = writeln!(
        md,
        "\nMeasured alone (`BENCH_ONLY=hostile`), commit `{}`, {} UTC; {busy:.0}% of the 2 cores busy before, load average {}.",
        std::env::var("BENCH_COMMIT").unwrap_or_else(|_| "unknown".into()),
        jiff_now(),
        super::loadavg()
    );
    println!("{md}");
    say(&format!(
        "hostile only: {:.0} s",
        begun.elapsed().as_secs_f64()
    ));
}
