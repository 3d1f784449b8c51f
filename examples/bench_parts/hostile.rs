//! Part of the benchmark driver (`examples/bench.rs`): hostile load and soak.
//! - (7) memory under hostile load: 500 clients each slowly sending a 1 MiB body (and coming
//!   back after each 503), 3,000 idle connections, while another client's real events are
//!   answered; VmRSS sampled and VmHWM, against the 48 MiB goal;
//! - (8) soak: at least BENCH_SOAK_REQUESTS (1,000,000) requests mixing events to skip,
//!   malformed bodies, oversize bodies and auth failures (wrk, keep-alive where the server
//!   keeps the connection); RSS after 10% and after 100%, and every failed request;
//! - the realistic ~2 KB Falco 0.41 event (container plugin fields) of the throughput rows.

use std::{
    collections::BTreeMap,
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

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Proc, Settings, env_num, free_port, mib, pct, say, spawn_ready, status_kib, yes};

/// A full Falco 0.41 event as Falcosidekick forwards it (about 2 KB): syscall fields of the
/// falco-rules 4.x output of "Read sensitive file untrusted", the six container-plugin fields
/// marked "suggested output", `uuid`, `tags`, ISO time.
pub fn realistic_event(rule: &str, ns: &str, pod: &str) -> String {
    let cid = "3f7a9c2e41d8";
    let output = format!(
        "2026-11-30T10:21:07.312905512+0000: Warning Sensitive file opened for reading by \
         non-trusted program | file=/etc/shadow gparent=containerd-shim ggparent=<NA> \
         gggparent=<NA> evt_type=openat user=root user_uid=0 user_loginuid=-1 process=cat \
         proc_exepath=/usr/bin/cat parent=bash command=cat /etc/shadow terminal=34816 \
         container_id={cid} container_name=payments-api container_image_repository=\
         registry.example.com/shop/payments-api container_image_tag=2.14.3 k8s_pod_name={pod} \
         k8s_ns_name={ns}"
    );
    json!({
        "hostname": "ip-10-0-12-34.eu-west-1.compute.internal",
        "output": output,
        "output_fields": {
            "container.id": cid,
            "container.image.repository": "registry.example.com/shop/payments-api",
            "container.image.tag": "2.14.3",
            "container.name": "payments-api",
            "evt.res": "SUCCESS",
            "evt.time.iso8601": 1_796_034_067_312_905_512u64,
            "evt.type": "openat",
            "fd.name": "/etc/shadow",
            "k8s.ns.name": ns,
            "k8s.pod.name": pod,
            "proc.aname[2]": "containerd-shim",
            "proc.aname[3]": null,
            "proc.aname[4]": null,
            "proc.cmdline": "cat /etc/shadow",
            "proc.exepath": "/usr/bin/cat",
            "proc.name": "cat",
            "proc.pname": "bash",
            "proc.tty": 34816,
            "user.loginuid": -1,
            "user.name": "root",
            "user.uid": 0,
            "proc.pid": 48213,
            "proc.ppid": 48190,
            "proc.cwd": "/app/",
            "proc.sid": 48190,
            "proc.vpgid": 48213,
            "proc.is_exe_upper_layer": false,
            "evt.arg.flags": "O_RDONLY",
            "fd.directory": "/etc"
        },
        "priority": "Warning",
        "rule": rule,
        "source": "syscall",
        "tags": ["T1555", "container", "filesystem", "host", "maturity_stable", "mitre_credential_access"],
        "time": "2026-11-30T10:21:07.312905512Z",
        "uuid": "6d5f2a0c-8b1e-4c3a-9f47-2e8d1b6a0c95"
    })
    .to_string()
}

// ---------------------------------------------------------------------------------------------
// 7. Memory under hostile load

pub struct Hostile {
    pub idle_kib: u64,
    pub hwm_kib: u64,
    pub samples_kib: Vec<u64>,
    pub idle_conns: usize,
    pub slow_clients: usize,
    pub seconds: u64,
    pub refused: usize,
    pub accepted: usize,
    pub events_ok: usize,
    pub events_failed: usize,
    pub event_ms: Vec<f64>,
}

fn responder(s: &Settings, port: u16, env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(&s.responder);
    cmd.arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .env("PORT", port.to_string())
        .env("DRY_RUN", "true")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    spawn_ready(cmd, port, "/readyz")
}

/// One slow client: announces 1 MiB, sends it in 16 KiB pieces every 100 ms, reads the answer
/// while sending; after a 503 it comes back a second later (Retry-After: 1), until `stop`.
pub async fn slow_client(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(s) = tokio::net::TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let (mut rd, mut wr) = s.into_split();
        let reader = tokio::spawn(async move {
            let mut head = [0u8; 12];
            let _ = tokio::time::timeout(Duration::from_secs(30), rd.read_exact(&mut head)).await;
            head
        });
        let head = "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 1048576\r\n\r\n";
        if wr.write_all(head.as_bytes()).await.is_ok() {
            let piece = vec![b' '; 16 << 10];
            for _ in 0..64 {
                if reader.is_finished() || wr.write_all(&piece).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let status = reader.await.unwrap_or_default();
        if status.starts_with(b"HTTP/1.1 503") {
            refused.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(1)).await;
        } else {
            accepted.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub async fn hostile_memory(s: &Settings) -> Hostile {
    let idle_conns = env_num("BENCH_IDLE_CONNECTIONS", 3000usize);
    let slow_clients = env_num("BENCH_SLOW_CLIENTS", 500usize);
    let seconds = env_num("BENCH_HOSTILE_SECONDS", 15u64);
    let port = free_port();
    let proc = responder(s, port, &[("RUST_LOG", "info")]);
    let pid = proc.pid();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_kib = status_kib(pid, "VmRSS:");
    say(&format!(
        "hostile: {idle_conns} idle connections, {slow_clients} slow 1 MiB clients, {seconds} s"
    ));
    let mut idle = Vec::with_capacity(idle_conns);
    for _ in 0..idle_conns {
        idle.push(
            tokio::net::TcpStream::connect(addr)
                .await
                .expect("idle connection"),
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..slow_clients)
        .map(|_| {
            tokio::spawn(slow_client(
                addr,
                stop.clone(),
                refused.clone(),
                accepted.clone(),
            ))
        })
        .collect();
    let event = super::terminal_shell("shop", "payments-api-0", super::CID);
    let (mut ok, mut failed, mut event_ms, mut samples) = (0, 0, Vec::new(), Vec::new());
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        let t = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            super::common::http(addr, "POST", "/", &http::HeaderMap::new(), event.as_bytes()),
        )
        .await;
        event_ms.push(super::ms(t.elapsed()));
        match r {
            Ok(r) if r.status == 200 => ok += 1,
            _ => failed += 1,
        }
        samples.push(status_kib(pid, "VmRSS:"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let hwm_kib = status_kib(pid, "VmHWM:");
    for c in clients {
        c.abort();
    }
    drop(idle);
    drop(proc);
    let h = Hostile {
        idle_kib,
        hwm_kib,
        samples_kib: samples,
        idle_conns,
        slow_clients,
        seconds,
        refused: refused.load(Ordering::Relaxed),
        accepted: accepted.load(Ordering::Relaxed),
        events_ok: ok,
        events_failed: failed,
        event_ms,
    };
    say(&format!(
        "hostile: VmHWM {:.1} MiB; events {ok} ok, {failed} failed, max {:.1} ms; {} refused, {} accepted",
        mib(h.hwm_kib * 1024),
        pct(&h.event_ms, 100.0),
        h.refused,
        h.accepted
    ));
    h
}

// ---------------------------------------------------------------------------------------------
// 8. Soak

pub struct Soak {
    pub target: u64,
    pub requests: u64,
    pub seconds: f64,
    pub segments: usize,
    pub rss_start_kib: u64,
    pub rss_10_kib: u64,
    pub rss_end_kib: u64,
    pub hwm_kib: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub socket_errors: u64,
}

impl Soak {
    /// Requests whose answer was not the expected one for their kind, or none at all.
    pub fn failed(&self) -> u64 {
        self.socket_errors
            + self
                .statuses
                .iter()
                .filter(|(s, _)| ![200, 400, 401, 413].contains(*s))
                .map(|(_, n)| n)
                .sum::<u64>()
    }
}

fn lua_quote(s: &str) -> String {
    assert!(!s.contains("]==]"));
    format!("[==[{s}]==]")
}

/// A wrk script cycling through the mix, counting answers by status in every thread.
fn soak_script(dir: &Path) -> std::path::PathBuf {
    let skip = realistic_event("Read sensitive file untrusted", "shop", "payments-api-0");
    let test_rule = super::common::fixture("falcosidekick-test-rule-debug-input.json");
    let oversize = format!("{{\"rule\":\"{}\"}}", "x".repeat(12_000));
    let auth = "Bearer s3cret";
    // 8 requests per cycle: 4 to skip (two kinds), 2 malformed, 1 oversize, 1 unauthorized.
    let mix: [(&str, Option<&str>, String); 8] = [
        ("skip", Some(auth), skip.clone()),
        ("malformed", Some(auth), "{\"rule\": \"unterminated".into()),
        ("skip", Some(auth), test_rule.clone()),
        ("unauthorized", Some("Bearer guess"), skip.clone()),
        ("skip", Some(auth), skip.clone()),
        ("malformed", Some(auth), "{\"hello\": \"world\"}".into()),
        ("skip", Some(auth), test_rule),
        ("oversize", Some(auth), oversize),
    ];
    let mut lua = String::from(
        "local threads = {}\nfunction setup(thread) table.insert(threads, thread) end\n",
    );
    lua.push_str("function init(args)\n  counts = {}\n  i = 0\n  reqs = {\n");
    for (_, token, body) in &mix {
        let _ = writeln!(
            lua,
            "    wrk.format(\"POST\", \"/\", {{[\"Content-Type\"] = \"application/json\", [\"Authorization\"] = \"{}\"}}, {}),",
            token.unwrap_or(""),
            lua_quote(body)
        );
    }
    lua.push_str("  }\nend\n");
    lua.push_str(
        r#"function request()
  i = i % #reqs + 1
  return reqs[i]
end
function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end
function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    local c = t:get("counts")
    for k, v in pairs(c) do total[k] = (total[k] or 0) + v end
  end
  local e = summary.errors
  io.write(string.format("BENCH requests=%d duration_us=%d sockerr=%d", summary.requests,
    summary.duration, e.connect + e.read + e.write + e.timeout))
  for k, v in pairs(total) do io.write(string.format(" s%d=%d", k, v)) end
  io.write("\n")
end
"#,
    );
    let path = dir.join("soak.lua");
    std::fs::write(&path, lua).expect("write soak.lua");
    path
}

pub fn soak(s: &Settings, dir: &Path) -> Soak {
    let target = env_num("BENCH_SOAK_REQUESTS", 1_000_000u64);
    let segment = env_num("BENCH_SOAK_SEGMENT", 5u64);
    let lua = soak_script(dir);
    let port = free_port();
    let proc = responder(
        s,
        port,
        &[
            ("AUTH_TOKEN", "s3cret"),
            ("MAX_BODY_BYTES", "8192"),
            ("RUST_LOG", "info"),
        ],
    );
    let pid = proc.pid();
    std::thread::sleep(Duration::from_millis(300));
    let rss_start_kib = status_kib(pid, "VmRSS:");
    let mut soak = Soak {
        target,
        requests: 0,
        seconds: 0.0,
        segments: 0,
        rss_start_kib,
        rss_10_kib: 0,
        rss_end_kib: 0,
        hwm_kib: 0,
        statuses: BTreeMap::new(),
        socket_errors: 0,
    };
    say(&format!("soak: {target} requests in {segment} s segments"));
    while soak.requests < target && soak.segments < 400 {
        let out = Command::new("wrk")
            .args(["-t2", "-c64"])
            .arg(format!("-d{segment}s"))
            .arg("-s")
            .arg(&lua)
            .arg(format!("http://127.0.0.1:{port}/"))
            .stdin(Stdio::null())
            .output()
            .expect("run wrk");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "wrk failed: {text}");
        let line = text
            .lines()
            .find(|l| l.starts_with("BENCH "))
            .unwrap_or_else(|| panic!("no BENCH line: {text}"));
        for (k, v) in line
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.split_once('='))
        {
            let v: f64 = v.parse().unwrap();
            match k {
                "requests" => soak.requests += v as u64,
                "duration_us" => soak.seconds += v / 1e6,
                "sockerr" => soak.socket_errors += v as u64,
                status => {
                    let code: u16 = status.trim_start_matches('s').parse().unwrap();
                    *soak.statuses.entry(code).or_default() += v as u64;
                }
            }
        }
        soak.segments += 1;
        if soak.rss_10_kib == 0 && soak.requests >= target / 10 {
            soak.rss_10_kib = status_kib(pid, "VmRSS:");
        }
        say(&format!(
            "soak: {} requests, RSS {} KiB",
            soak.requests,
            status_kib(pid, "VmRSS:")
        ));
    }
    soak.rss_end_kib = status_kib(pid, "VmRSS:");
    soak.hwm_kib = status_kib(pid, "VmHWM:");
    drop(proc);
    soak
}

// ---------------------------------------------------------------------------------------------
// Report rows

pub fn rows(w: &mut String, h: &Hostile, k: &Soak) {
    let _ = writeln!(
        w,
        "| 7 | memory under hostile load: {} clients slowly sending 1 MiB bodies (back after each 503) + {} idle connections, {} s; peak RSS (VmHWM) | {:.1} MiB | idle {:.1} MiB | — | < 48 MiB | {} |",
        h.slow_clients,
        h.idle_conns,
        h.seconds,
        mib(h.hwm_kib * 1024),
        mib(h.idle_kib * 1024),
        yes(h.hwm_kib < 48 * 1024)
    );
    let worst = if h.event_ms.is_empty() {
        f64::NAN
    } else {
        pct(&h.event_ms, 100.0)
    };
    let _ = writeln!(
        w,
        "| 7 | the same: real events from another client meanwhile, answered / max latency (p50) | {} of {} / {:.1} ms ({:.1} ms) | — | — | all, max < 1 s | {} |",
        h.events_ok,
        h.events_ok + h.events_failed,
        worst,
        if h.event_ms.is_empty() {
            f64::NAN
        } else {
            pct(&h.event_ms, 50.0)
        },
        yes(h.events_failed == 0 && worst < 1000.0)
    );
    let flat = k.rss_end_kib.abs_diff(k.rss_10_kib);
    let _ = writeln!(
        w,
        "| 8 | soak: {} requests (skip, malformed, oversize, unauthorized), RSS after 10% / after 100% | {:.2} / {:.2} MiB (Δ {:.2} MiB) | start {:.2} MiB | — | flat within 2 MiB, ≥ 1,000,000 requests | {} |",
        k.requests,
        mib(k.rss_10_kib * 1024),
        mib(k.rss_end_kib * 1024),
        mib(flat * 1024),
        mib(k.rss_start_kib * 1024),
        yes(flat <= 2048 && k.requests >= k.target.max(1_000_000))
    );
    if k.target < 1_000_000 {
        let _ = writeln!(
            w,
            "| 8 | (note) a shorter soak than the goal: BENCH_SOAK_REQUESTS={} | — | — | — | — | — |",
            k.target
        );
    }
    let _ = writeln!(
        w,
        "| 8 | soak: failed requests (socket errors or an unexpected status) | {} of {} | — | — | 0 | {} |",
        k.failed(),
        k.requests,
        yes(k.failed() == 0)
    );
}

pub fn details(w: &mut String, h: &Hostile, k: &Soak) {
    let peak_seen = h.samples_kib.iter().max().copied().unwrap_or(0);
    let _ = writeln!(
        w,
        "- (7) slow clients: {} attempts refused with 503 before their body was read, {} bodies read in full (400: spaces are not an event); RSS sampled every 100 ms, highest sample {:.1} MiB; event latency min / median / p90 / p99 / max ms: {}.",
        h.refused,
        h.accepted,
        mib(peak_seen * 1024),
        super::spread(&h.event_ms)
    );
    let statuses: Vec<String> = k
        .statuses
        .iter()
        .map(|(s, n)| format!("{s}: {n}"))
        .collect();
    let _ = writeln!(
        w,
        "- (8) soak: {} wrk runs of {} s ({:.0} s, {:.0} req/s), 2 threads × 64 connections; answers by status: {}; socket errors {}; VmHWM {:.2} MiB.",
        k.segments,
        env_num("BENCH_SOAK_SEGMENT", 5u64),
        k.seconds,
        k.requests as f64 / k.seconds,
        statuses.join(", "),
        k.socket_errors,
        mib(k.hwm_kib * 1024)
    );
}

pub const HOW_TO_READ: &str = "- **(7)** The release binary (`DRY_RUN=true`, log lines at info to /dev/null, default \
     limits: `BODY_MEMORY_BYTES` 16 MiB) with 3,000 connections that never send a byte and 500 \
     clients that each announce a 1 MiB body and send it in 16 KiB pieces every 100 ms, coming \
     back one second after each 503; meanwhile a Terminal-shell event on a fresh connection \
     every 100 ms. VmHWM is the peak resident set of the whole run, against the 48 MiB goal (the \
     manifests' limit is 64Mi).\n\
     - **(8)** The release binary with `AUTH_TOKEN` and `MAX_BODY_BYTES=8192`; wrk cycles through \
     eight requests: the realistic event of (1) and Falcosidekick's test event (both skipped, \
     200), two malformed bodies (400), a 12 KB body (413, answered before its body and closed \
     with a lingering close) and a wrong token (401, closed). RSS is read after the wrk run that \
     passes 10% of the requests and at the end. A failed request is a socket error or a status \
     other than 200/400/401/413.";
