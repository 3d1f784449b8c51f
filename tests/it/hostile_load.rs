//! Memory under hostile load, measured on the real binary from /proc: 500
//! clients each slowly sending a 1 MiB body plus 3,000 idle connections, while another client's
//! events are still answered. The bound asserted here is generous (the 64Mi container limit the
//! manifests set); `scripts/bench.sh` measures the precise figure against the 48 MiB goal.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use http::HeaderMap;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::testkit::binary::Responder;
use crate::testkit::sender::{http, terminal_shell};

/// The shipped memory limit (knative/service.yaml, openfaas/stack.yml).
const LIMIT_KIB: u64 = 64 * 1024;

/// One hostile load at a time: each measures one binary, and on two cores the others' load
/// would be counted in its latency.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// The binary (DRY_RUN) alone under load, with a request timeout longer than the test (the
/// memory bound must hold by itself, not by timeouts; slow debug reads are not the point): the
/// lock that keeps it alone, the binary, its idle RSS.
async fn start_alone() -> (tokio::sync::MutexGuard<'static, ()>, Responder, u64) {
    let alone = ONE_AT_A_TIME.lock().await;
    let responder = Responder::start(&[
        ("DRY_RUN", "true"),
        ("RUST_LOG", "warn"),
        ("REQUEST_TIMEOUT_SECONDS", "120"),
    ])
    .await;
    let idle_kib = status_kib(responder.pid(), "VmRSS:");
    (alone, responder, idle_kib)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_large_bodies_and_idle_connections_stay_within_the_memory_limit() {
    let (_alone, responder, idle_kib) = start_alone().await;
    let (pid, addr): (u32, SocketAddr) = (responder.pid(), responder.addr);

    let mut idle = Vec::new();
    for _ in 0..3000 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }

    // 500 clients announcing 1 MiB and sending it in 16 KiB pieces every 100 ms (6.4 s).
    let refused = Arc::new(AtomicUsize::new(0));
    let mut slow = Vec::new();
    for _ in 0..500 {
        let refused = refused.clone();
        slow.push(tokio::spawn(async move {
            let Ok(s) = TcpStream::connect(addr).await else {
                return;
            };
            // Read while writing: an early answer arrives while the body is still being sent.
            let (mut rd, mut wr) = s.into_split();
            let reader = tokio::spawn(async move {
                let mut raw = Vec::new();
                let _ =
                    tokio::time::timeout(Duration::from_secs(20), rd.read_to_end(&mut raw)).await;
                raw
            });
            let head = "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 1048576\r\n\r\n";
            if wr.write_all(head.as_bytes()).await.is_ok() {
                let piece = vec![b' '; 16 << 10];
                for _ in 0..64 {
                    if wr.write_all(&piece).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            let raw = reader.await.unwrap();
            if raw.starts_with(b"HTTP/1.1 503") {
                refused.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    // Meanwhile, real events from another client, each answered promptly.
    let event = terminal_shell("prod", "web-1", "ee97d9c4186f");
    let mut slowest = Duration::ZERO;
    let mut peak_rss = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(6) {
        let t = Instant::now();
        let r = http(addr, "POST", "/", &HeaderMap::new(), event.as_bytes()).await;
        slowest = slowest.max(t.elapsed());
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["outcome"], "dry-run");
        peak_rss = peak_rss.max(status_kib(pid, "VmRSS:"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for t in slow {
        t.await.unwrap();
    }
    let hwm = status_kib(pid, "VmHWM:");
    eprintln!(
        "RSS idle {idle_kib} KiB, peak seen {peak_rss} KiB, VmHWM {hwm} KiB; \
         slowest event {slowest:?}; {} of 500 large bodies refused with 503",
        refused.load(Ordering::Relaxed)
    );
    assert!(
        slowest < Duration::from_secs(1),
        "an event took {slowest:?}"
    );
    assert!(
        refused.load(Ordering::Relaxed) > 400,
        "the body budget should refuse most of 500 MiB of concurrent bodies"
    );
    assert!(
        hwm < LIMIT_KIB,
        "peak RSS {hwm} KiB over the {LIMIT_KIB} KiB container limit"
    );
    drop(idle);
}

/// A valid Falco event of ~1 MiB whose `output_fields` holds a large list (the shape a JSON
/// tree multiplies ~17×): the parser keeps a bounded cut of the list, the decoded event is
/// charged to the body budget, and eight at once stay within the memory limit while a true
/// event of another client is still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_lists_in_output_fields_are_cut_and_stay_within_the_memory_limit() {
    let (_alone, responder, idle_kib) = start_alone().await;
    let (pid, addr): (u32, SocketAddr) = (responder.pid(), responder.addr);

    let mut large: serde_json::Value =
        serde_json::from_str(&terminal_shell("prod", "web-2", "ee97d9c4186f")).unwrap();
    large["output_fields"]["ka.req.pod.containers.image"] =
        serde_json::Value::from(vec![1u8; 500_000]);
    let large = large.to_string();
    assert!(
        large.len() > 1_000_000 && large.len() < 1 << 20,
        "{}",
        large.len()
    );

    let answered = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for _ in 0..8 {
        let (large, answered) = (large.clone(), answered.clone());
        senders.push(tokio::spawn(async move {
            for _ in 0..4 {
                let r = http(addr, "POST", "/", &HeaderMap::new(), large.as_bytes()).await;
                // Answered as the true event it is, or asked to retry while the budget is full.
                match r.status {
                    200 => {
                        assert_eq!(r.json()["outcome"], "dry-run");
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    503 => {}
                    s => panic!("{s}: {}", String::from_utf8_lossy(&r.body)),
                }
            }
        }));
    }
    let event = terminal_shell("prod", "web-1", "ee97d9c4186f");
    let mut slowest = Duration::ZERO;
    while !senders.iter().all(|s| s.is_finished()) {
        let t = Instant::now();
        let r = http(addr, "POST", "/", &HeaderMap::new(), event.as_bytes()).await;
        slowest = slowest.max(t.elapsed());
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["outcome"], "dry-run");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for s in senders {
        s.await.unwrap();
    }
    let hwm = status_kib(pid, "VmHWM:");
    let answered = answered.load(Ordering::Relaxed);
    eprintln!(
        "RSS idle {idle_kib} KiB, VmHWM {hwm} KiB; slowest event {slowest:?}; {answered} of 32 \
         large events answered (the rest 503)"
    );
    // Latency is the benchmark's to measure: decoding eight such bodies on the two workers of
    // a debug build may delay the true event here, never refuse it.
    assert!(
        answered >= 16,
        "only {answered} of 32 large events answered"
    );
    assert!(
        hwm < LIMIT_KIB,
        "peak RSS {hwm} KiB over the {LIMIT_KIB} KiB container limit"
    );
}
