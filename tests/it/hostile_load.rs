//! Hostile clients, each shape refused or bounded while a true event is still answered: memory
//! measured on the real binary from /proc (500 clients each slowly sending a 1 MiB body, 300
//! small bodies sent one byte at a time, 3,000 idle connections; thousands of incomplete request
//! heads), clients that never read their replies, and probes while every connection slot is
//! held. The bounds asserted here are generous (the 64Mi container limit the manifests set, time
//! budgets far above the server's deadlines); `scripts/bench.sh` measures the precise figures
//! against the 48 MiB goal.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use falco_responder::{app::App, web};
use http::HeaderMap;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpSocket, TcpStream},
};

use crate::testkit::binary::Responder;
use crate::testkit::sender::{http, parse_response, said, terminal_shell};
use crate::testkit::server::{Server, config};

/// The shipped memory limit (knative/service.yaml, openfaas/stack.yml).
const LIMIT_KIB: u64 = 64 * 1024;

/// Raises this process's open-file limit (inherited by the binary it starts) to at least `n`:
/// thousands of sockets exceed the usual 1,024.
fn raise_open_files(n: u64) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    if now.current.is_some_and(|c| c >= n) || now.current.is_none() {
        return;
    }
    assert!(
        now.maximum.is_none_or(|m| m >= n),
        "this test needs {n} open files; the hard limit is {:?}",
        now.maximum
    );
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(n),
            maximum: now.maximum,
        },
    )
    .expect("raise RLIMIT_NOFILE");
}

fn event() -> String {
    terminal_shell("prod", "web-1", "ee97d9c4186f")
}

/// A true event, answered `dry-run` within `within` (generous: the server answers in
/// milliseconds).
async fn true_event_answered(addr: SocketAddr, within: Duration) -> Duration {
    let t = Instant::now();
    let r = tokio::time::timeout(
        within,
        http(addr, "POST", "/", &HeaderMap::new(), event().as_bytes()),
    )
    .await
    .unwrap_or_else(|_| panic!("a true event was not answered within {within:?}"));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["outcome"], "dry-run");
    t.elapsed()
}

async fn metrics(addr: SocketAddr) -> String {
    let r = http(addr, "GET", "/metrics", &HeaderMap::new(), b"").await;
    String::from_utf8(r.body).unwrap()
}

/// One small slow body, again and again until `stop`: announces 64 KiB, sends one byte, waits
/// for the answer; the statuses it got.
async fn small_slow_body(addr: SocketAddr, stop: Arc<std::sync::atomic::AtomicBool>) -> Vec<u16> {
    let mut statuses = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let head = "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 65536\r\n\r\n{";
        if s.write_all(head.as_bytes()).await.is_err() {
            continue;
        }
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut raw)).await;
        if raw.len() >= 12 {
            statuses.push(parse_response(&raw).status);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    statuses
}

/// One memory measurement at a time: each measures one binary, and on two cores the others'
/// load would be counted in its latency.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The binary, its request timeout longer than the test: a memory bound must hold by itself,
/// not by timeouts.
async fn patient_responder() -> Responder {
    Responder::start(&[
        ("DRY_RUN", "true"),
        ("RUST_LOG", "warn"),
        ("REQUEST_TIMEOUT_SECONDS", "120"),
    ])
    .await
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_large_and_small_bodies_and_idle_connections_stay_within_the_memory_limit() {
    let _alone = ONE_AT_A_TIME.lock().await;
    raise_open_files(6000);
    let responder = patient_responder().await;
    let (pid, addr): (u32, SocketAddr) = (responder.pid(), responder.addr);
    let idle_kib = status_kib(pid, "VmRSS:");

    let mut idle = Vec::new();
    for _ in 0..3000 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    // 300 small bodies announcing 64 KiB and sending one byte, renewed as they are cut off.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let small: Vec<_> = (0..300)
        .map(|_| tokio::spawn(small_slow_body(addr, stop.clone())))
        .collect();

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
    stop.store(true, Ordering::Relaxed);
    let mut small_statuses = Vec::new();
    for t in small {
        small_statuses.extend(t.await.unwrap());
    }
    let hwm = status_kib(pid, "VmHWM:");
    eprintln!(
        "RSS idle {idle_kib} KiB, peak seen {peak_rss} KiB, VmHWM {hwm} KiB; \
         slowest event {slowest:?}; {} of 500 large bodies refused with 503",
        refused.load(Ordering::Relaxed)
    );
    // Generous: milliseconds on a quiet machine (scripts/bench.sh states the latencies); the
    // bound is that no event waits for a slow client's deadline (2 s and more).
    assert!(
        slowest < Duration::from_secs(5),
        "an event took {slowest:?}"
    );
    assert!(
        refused.load(Ordering::Relaxed) > 400,
        "the body budget should refuse most of 500 MiB of concurrent bodies"
    );
    // Cut off by the body's minimum rate, long before REQUEST_TIMEOUT_SECONDS (120 s), or
    // refused once slow: the share of the budget open to slow bodies is full of large ones.
    let timed_out = small_statuses.iter().filter(|&&s| s == 408).count();
    let refused = small_statuses.iter().filter(|&&s| s == 503).count();
    eprintln!("small slow bodies: {timed_out} cut off (408), {refused} refused (503)");
    assert!(
        small_statuses.len() >= 300 && timed_out + refused == small_statuses.len(),
        "{timed_out} × 408, {refused} × 503 of {}",
        small_statuses.len()
    );
    assert!(
        hwm < LIMIT_KIB,
        "peak RSS {hwm} KiB over the {LIMIT_KIB} KiB container limit"
    );
    drop(idle);
}

#[tokio::test]
async fn small_slow_bodies_cannot_starve_true_events() {
    // 300 × 64 KiB announced is more than BODY_MEMORY_BYTES (16 MiB): reserved up front, they
    // would hold all of it until REQUEST_TIMEOUT_SECONDS.
    raise_open_files(2000);
    let s = Server::dry(&[("REQUEST_TIMEOUT_SECONDS", "60")]).await;
    let mut slow = Vec::new();
    for _ in 0..300 {
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        c.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 65536\r\n\r\n{")
            .await
            .unwrap();
        slow.push(c);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..5 {
        true_event_answered(s.addr, Duration::from_secs(5)).await;
    }
    // Each is cut off by the body's first-byte and rate deadline, far before the 60 s.
    let started = Instant::now();
    for mut c in slow {
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(20), c.read_to_end(&mut raw)).await;
        let r = parse_response(&raw);
        assert_eq!(r.status, 408, "{}", String::from_utf8_lossy(&raw));
        assert!(
            said(&r.json(), "error").contains("too slowly"),
            "{:?}",
            r.json()
        );
    }
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(
        !metrics(s.addr).await.contains(r#"reason="body_memory""#),
        "a body was refused for memory"
    );
}

#[tokio::test]
async fn a_client_that_never_reads_its_replies_is_dropped_and_events_are_still_answered() {
    let s = Server::dry(&[
        ("REQUEST_TIMEOUT_SECONDS", "1"),
        ("IDLE_TIMEOUT_SECONDS", "60"),
    ])
    .await;
    // A small receive window: the replies pile up in the server's socket soon.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut c = socket.connect(s.addr).await.unwrap();
    let body = event();
    let request = format!(
        "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    // Pipelined requests until the server stops taking them: its replies wait for us.
    let mut sent = 0;
    while sent < 20_000 {
        match tokio::time::timeout(Duration::from_secs(1), c.write_all(request.as_bytes())).await {
            Ok(Ok(())) => sent += 1,
            _ => break,
        }
    }
    assert!(
        sent < 20_000,
        "the server kept reading while its replies were not read"
    );
    true_event_answered(s.addr, Duration::from_secs(5)).await;
    // Dropped within REQUEST_TIMEOUT_SECONDS of the blocked reply (60 s idle timeout here).
    let mut dropped = false;
    for _ in 0..50 {
        if metrics(s.addr)
            .await
            .contains(r#"falco_responder_http_rejected_total{reason="write_timeout"} 1"#)
        {
            dropped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(dropped, "{}", metrics(s.addr).await);
    // What was written before is readable, then the connection ends (EOF or reset).
    let mut raw = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut raw)).await;
    assert!(ended.is_ok(), "the connection was kept open");
    true_event_answered(s.addr, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_incomplete_request_heads_stay_within_the_memory_limit() {
    let _alone = ONE_AT_A_TIME.lock().await;
    raise_open_files(6000);
    let responder = patient_responder().await;
    let (pid, addr) = (responder.pid(), responder.addr);
    // 4,000 heads of 12 KB each, never finished: read into a buffer each, 48 MB and more.
    let pad = "a".repeat(12_000);
    let mut heads = Vec::new();
    for _ in 0..4000 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(format!("POST / HTTP/1.1\r\nhost: x\r\nx-pad: {pad}").as_bytes())
            .await
            .unwrap();
        heads.push(c);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Generous: the first one may wait behind 4,000 accepts on a busy machine; the heads hold
    // their connections for 120 s.
    for _ in 0..5 {
        true_event_answered(addr, Duration::from_secs(30)).await;
    }
    let hwm = status_kib(pid, "VmHWM:");
    eprintln!("4000 incomplete heads: VmHWM {hwm} KiB");
    assert!(
        hwm < LIMIT_KIB,
        "peak RSS {hwm} KiB over the {LIMIT_KIB} KiB container limit"
    );
    // A head finished late is served.
    let c = &mut heads[0];
    c.write_all(b"\r\ncontent-length: 0\r\n\r\n").await.unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut raw)).await;
    assert_eq!(
        parse_response(&raw).status,
        400,
        "{}",
        String::from_utf8_lossy(&raw)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_answer_while_every_event_slot_is_held() {
    raise_open_files(2 * web::MAX_CONNECTIONS as u64 + 500);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    // Events wait for a client that is not there yet: every one holds its slot.
    let app = App::connecting(config(&[("DRY_RUN", "true")]));
    let s = Server::serve(listener, app.clone());
    let addr = s.addr;
    let body = event();
    let request = format!(
        "POST / HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut held = Vec::new();
    for _ in 0..web::MAX_CONNECTIONS {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(request.as_bytes()).await.unwrap();
        held.push(c);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The probes and the metrics are answered on the slots kept for them; an event is told to
    // come back, not queued.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            http(addr, "GET", path, &HeaderMap::new(), b""),
        )
        .await
        .unwrap_or_else(|_| panic!("{path} not answered while the slots are full"));
        // Not ready until the client exists (the breaker's records): answered all the same.
        let not_ready = path == "/readyz" && r.status == 503;
        assert!(r.status == 200 || not_ready, "{path}: {}", r.status);
    }
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        http(addr, "POST", "/", &HeaderMap::new(), body.as_bytes()),
    )
    .await
    .expect("answered at once");
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["retry"], true);
    // Once the client exists every held event is answered, and new ones get slots again.
    app.connect(None);
    for c in held.iter_mut().take(10) {
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut raw)).await;
        assert_eq!(parse_response(&raw).status, 200);
    }
    drop(held);
    tokio::time::sleep(Duration::from_millis(500)).await;
    true_event_answered(addr, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_filling_the_slots_give_them_back_to_new_ones() {
    raise_open_files(2 * web::MAX_CONNECTIONS as u64 + 500);
    // Silent connections would hold their slots for the 60 s request timeout.
    let s = Server::dry(&[("REQUEST_TIMEOUT_SECONDS", "60")]).await;
    let mut silent = Vec::new();
    for _ in 0..web::MAX_CONNECTIONS {
        silent.push(TcpStream::connect(s.addr).await.unwrap());
    }
    // Reclaimed once they have been silent for a while.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        http(s.addr, "GET", "/healthz", &HeaderMap::new(), b""),
    )
    .await
    .expect("/healthz answered while silent connections hold the slots");
    assert_eq!(r.status, 200);
    true_event_answered(s.addr, Duration::from_secs(5)).await;
    // The silent ones were closed without a word.
    let mut closed = 0;
    for c in &mut silent {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(1), c.read(&mut byte)).await {
            closed += 1;
        }
    }
    assert!(closed > 0, "no silent connection was reclaimed");
}

/// Every event slot held by connections that stopped sending (a request head cut short, held
/// for the 60 s request timeout), and more stalled bodies (64 KiB announced, one byte sent)
/// renewed as soon as each ends: a true event, sent whole, takes the slot of a connection that
/// brought no byte for a second, instead of being told to come back; the probes are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_holding_every_slot_give_them_to_true_events() {
    raise_open_files(2 * web::MAX_CONNECTIONS as u64 + 1000);
    let s = Server::dry(&[("REQUEST_TIMEOUT_SECONDS", "60")]).await;
    let addr = s.addr;
    let mut held = Vec::new();
    for _ in 0..web::MAX_CONNECTIONS {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"POST / HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        held.push(c);
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stalled: Vec<_> = (0..200)
        .map(|_| {
            let stop = stop.clone();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut c) = TcpStream::connect(addr).await else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    let head = "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 65536\r\n\r\n{";
                    if c.write_all(head.as_bytes()).await.is_ok() {
                        let mut raw = Vec::new();
                        let _ =
                            tokio::time::timeout(Duration::from_secs(30), c.read_to_end(&mut raw))
                                .await;
                    }
                }
            })
        })
        .collect();
    // The held heads pass the second after which they may be reclaimed.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..5 {
        true_event_answered(addr, Duration::from_secs(5)).await;
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            http(addr, "GET", "/healthz", &HeaderMap::new(), b""),
        )
        .await
        .expect("/healthz answered while stalled connections hold the slots");
        assert_eq!(r.status, 200);
    }
    stop.store(true, Ordering::Relaxed);
    for t in stalled {
        t.abort();
    }
    drop(held);
}

/// A valid Falco event of ~1 MiB whose `output_fields` holds a large list (the shape a JSON
/// tree multiplies ~17×): the parser keeps a bounded cut of the list, the decoded event is
/// charged to the body budget, and eight at once stay within the memory limit while a true
/// event of another client is still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_lists_in_output_fields_are_cut_and_stay_within_the_memory_limit() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let responder = patient_responder().await;
    let idle_kib = status_kib(responder.pid(), "VmRSS:");
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
