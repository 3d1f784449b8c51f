//! The server's limits against clients that are slow, silent, too large or unauthorized, its
//! shutdown order and its dual-stack listener. Real sockets, in process.

use std::{
    io::{Read, Write},
    net::SocketAddr,
    time::{Duration, Instant},
};

use falco_responder::{app::App, web};
use http::HeaderMap;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::testkit::binary::{self, Responder};
use crate::testkit::sender::{HttpReply, http, parse_response, said, terminal_shell};
use crate::testkit::server::{Server, config};

fn shell() -> String {
    terminal_shell("prod", "web-1", "ee97d9c4186f")
}

/// Reads until the server closes; the bytes and how long it took.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(limit, stream.read_to_end(&mut raw)).await;
    (raw, started.elapsed())
}

/// A connection that never sends a byte: closed without a word; how long it was held.
async fn silent_connection(addr: SocketAddr) -> Duration {
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let (raw, took) = read_until_closed(&mut silent, Duration::from_secs(10)).await;
    assert!(raw.is_empty(), "{}", String::from_utf8_lossy(&raw));
    took
}

/// Held for the 1 s timeout the test set: neither closed at once nor kept.
fn assert_about_one_second(took: Duration) {
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_slow_body_gets_408_and_its_connection_is_freed_within_the_deadline() {
    let s = Server::dry(&[("REQUEST_TIMEOUT_SECONDS", "1")]).await;
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    // Announces 1000 bytes, sends 10, then nothing: without a body deadline this holds forever.
    stream
        .write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n{\"rule\":\"")
        .await
        .unwrap();
    let (raw, took) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(took < Duration::from_secs(4), "closed after {took:?}");
    let r = parse_response(&raw);
    assert_eq!(r.status, 408, "{}", String::from_utf8_lossy(&raw));
    assert!(said(&r.json(), "error").contains("REQUEST_TIMEOUT_SECONDS"));
    // The server is still there for the next client.
    let ok = http(s.addr, "POST", "/", &HeaderMap::new(), shell().as_bytes()).await;
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn trickled_headers_get_408_within_the_deadline() {
    let s = Server::dry(&[("REQUEST_TIMEOUT_SECONDS", "1")]).await;
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    let started = Instant::now();
    // One header line every 200 ms: each read is "activity", the request never completes.
    let mut closed = false;
    for i in 0..50 {
        if stream
            .write_all(format!("POST / HTTP/1.1\r\nx-{i}: y\r\n").as_bytes())
            .await
            .is_err()
        {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let (raw, _) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    // Either we read the 408 or the write failed because it had already been sent and closed.
    if !raw.is_empty() || !closed {
        assert!(
            String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 408"),
            "{}",
            String::from_utf8_lossy(&raw)
        );
    }
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let s = Server::dry(&[
        ("IDLE_TIMEOUT_SECONDS", "1"),
        ("REQUEST_TIMEOUT_SECONDS", "5"),
    ])
    .await;
    // Silent from the start.
    assert_about_one_second(silent_connection(s.addr).await);
    // Idle after one keep-alive request.
    let mut kept = TcpStream::connect(s.addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let (raw, took) = read_until_closed(&mut kept, Duration::from_secs(10)).await;
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 200"));
    assert_about_one_second(took);
}

/// A plain blocking client, as Python's http.client or curl: sends the whole body, then reads.
fn plain_client(addr: SocketAddr, head: &str, body_len: usize) -> std::io::Result<Vec<u8>> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(
        format!(
            "{head}host: x\r\ncontent-type: application/json\r\ncontent-length: {body_len}\r\n\r\n"
        )
        .as_bytes(),
    )?;
    let chunk = vec![b' '; 64 << 10];
    let mut left = body_len;
    while left > 0 {
        let n = left.min(chunk.len());
        s.write_all(&chunk[..n])?;
        left -= n;
    }
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    Ok(raw)
}

/// `plain_client` off the runtime: the answer it read in full (not a connection reset).
async fn whole_body_answer(addr: SocketAddr, head: &'static str, body_len: usize) -> HttpReply {
    let raw = tokio::task::spawn_blocking(move || plain_client(addr, head, body_len))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("the client must read the answer, not a connection reset: {e}"));
    parse_response(&raw)
}

#[tokio::test]
async fn early_answers_reach_a_client_that_sends_its_whole_body() {
    let s = Server::dry(&[("AUTH_TOKEN", "s3cret"), ("MAX_BODY_BYTES", "4194304")]).await;
    // 413: 6 MiB over a 4 MiB limit, answered from the Content-Length before reading it.
    let r = whole_body_answer(
        s.addr,
        "POST / HTTP/1.1\r\nauthorization: Bearer s3cret\r\n",
        6 << 20,
    )
    .await;
    assert_eq!(r.status, 413);
    assert!(said(&r.json(), "error").contains("MAX_BODY_BYTES"));
    // 401 before the body: a 2 MiB body without the token.
    let r = whole_body_answer(s.addr, "POST / HTTP/1.1\r\n", 2 << 20).await;
    assert_eq!(r.status, 401);
    // 404 with a 2 MiB body.
    let r = whole_body_answer(s.addr, "POST /nope HTTP/1.1\r\n", 2 << 20).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn a_2_mib_body_over_the_default_limit_gets_a_readable_413() {
    let s = Server::dry(&[]).await;
    let r = whole_body_answer(s.addr, "POST / HTTP/1.1\r\n", 2 << 20).await;
    assert_eq!(r.status, 413);
}

#[tokio::test]
async fn bodies_beyond_the_memory_budget_get_503_with_retry_after_before_being_read() {
    // 4 MiB: three quarters (3 MiB) open to large bodies, one kept for ordinary events.
    let s = Server::dry(&[
        ("BODY_MEMORY_BYTES", "4194304"),
        ("REQUEST_TIMEOUT_SECONDS", "20"),
    ])
    .await;
    let head = "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 1048576\r\n\r\n";
    let mut holders = Vec::new();
    for _ in 0..3 {
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        c.write_all(head.as_bytes()).await.unwrap();
        c.write_all(b"{").await.unwrap();
        holders.push(c);
    }
    // Let the server reserve for all three.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut fourth = TcpStream::connect(s.addr).await.unwrap();
    fourth.write_all(head.as_bytes()).await.unwrap();
    let (raw, took) = read_until_closed(&mut fourth, Duration::from_secs(10)).await;
    let r = parse_response(&raw);
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&raw));
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.json()["retry"], true);
    assert!(said(&r.json(), "error").contains("BODY_MEMORY_BYTES"));
    assert!(took < Duration::from_secs(8), "{took:?}");
    // Ordinary events are still answered while the large bodies hold their share.
    let started = Instant::now();
    let ok = http(s.addr, "POST", "/", &HeaderMap::new(), shell().as_bytes()).await;
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    assert!(started.elapsed() < Duration::from_secs(1));
    // Once a holder is gone, its memory is free again.
    drop(holders.pop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = TcpStream::connect(s.addr).await.unwrap();
    again.write_all(head.as_bytes()).await.unwrap();
    again.write_all(&vec![b' '; 1 << 20]).await.unwrap();
    let (raw, _) = read_until_closed(&mut again, Duration::from_secs(10)).await;
    // Spaces are not an event: 400, but only after the whole body was accepted and read.
    assert_eq!(
        parse_response(&raw).status,
        400,
        "{}",
        String::from_utf8_lossy(&raw)
    );
    let metrics = http(s.addr, "GET", "/metrics", &HeaderMap::new(), b"").await;
    let text = String::from_utf8(metrics.body).unwrap();
    assert!(
        text.contains(r#"falco_responder_http_rejected_total{reason="body_memory"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn chunked_bodies_are_held_to_the_budget_as_they_grow() {
    // 2 MiB: 1.5 MiB for large bodies; a declared 1 MiB body holds 1 MiB of it.
    let s = Server::dry(&[("BODY_MEMORY_BYTES", "2097152")]).await;
    let mut hog = TcpStream::connect(s.addr).await.unwrap();
    hog.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 1048576\r\n\r\n{")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    // 600 KB in chunks: the reservation grows with what arrived, past the 512 KiB left.
    let chunk = "x".repeat(60_000);
    for _ in 0..10 {
        if c.write_all(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes())
            .await
            .is_err()
        {
            break;
        }
    }
    let (raw, _) = read_until_closed(&mut c, Duration::from_secs(10)).await;
    assert_eq!(
        parse_response(&raw).status,
        503,
        "{}",
        String::from_utf8_lossy(&raw)
    );
    drop(hog);
}

/// Bodies larger than 64 KiB are read into their own mapping: one of unknown length moves
/// there once it passes 64 KiB, one announced large is written there from its first byte; both
/// arrive whole and are decoded as sent.
#[tokio::test]
async fn large_bodies_of_known_and_unknown_length_are_read_whole() {
    let s = Server::dry(&[]).await;
    let mut event: serde_json::Value = serde_json::from_str(&shell()).unwrap();
    event["output"] = serde_json::Value::from("o".repeat(300_000));
    let body = event.to_string();
    // Chunked, in pieces that cross 64 KiB.
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(
        b"POST / HTTP/1.1\r\nhost: x\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n",
    )
    .await
    .unwrap();
    for piece in body.as_bytes().chunks(50_000) {
        c.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
            .await
            .unwrap();
        c.write_all(piece).await.unwrap();
        c.write_all(b"\r\n").await.unwrap();
    }
    c.write_all(b"0\r\n\r\n").await.unwrap();
    let (raw, _) = read_until_closed(&mut c, Duration::from_secs(10)).await;
    let r = parse_response(&raw);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["outcome"], "dry-run");
    // Announced, sent in one go.
    let r = http(s.addr, "POST", "/", &HeaderMap::new(), body.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["outcome"], "dry-run");
}

#[tokio::test]
async fn sigterm_turns_readiness_503_at_once_while_events_are_still_accepted() {
    let mut s = Server::dry(&[("SHUTDOWN_DELAY_SECONDS", "2")]).await;
    assert_eq!(
        http(s.addr, "GET", "/readyz", &HeaderMap::new(), b"")
            .await
            .status,
        200
    );
    let stopped_at = Instant::now();
    s.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for path in ["/readyz", "/health/readiness", "/_/ready"] {
        assert_eq!(
            http(s.addr, "GET", path, &HeaderMap::new(), b"")
                .await
                .status,
            503,
            "{path}"
        );
    }
    // Liveness stays 200: the kubelet must not restart a draining pod.
    assert_eq!(
        http(s.addr, "GET", "/healthz", &HeaderMap::new(), b"")
            .await
            .status,
        200
    );
    // New connections, new events: still answered during the delay.
    for _ in 0..5 {
        let r = http(s.addr, "POST", "/", &HeaderMap::new(), shell().as_bytes()).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["outcome"], "dry-run");
        assert_eq!(r.header("connection"), Some("close"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(stopped_at.elapsed() < Duration::from_secs(2));
    // The server stops after the delay.
    s.stopped(Duration::from_secs(10)).await;
    assert!(stopped_at.elapsed() >= Duration::from_secs(2));
    assert!(TcpStream::connect(s.addr).await.is_err(), "still accepting");
}

#[tokio::test]
async fn shutdown_delay_zero_stops_accepting_at_once() {
    let mut s = Server::dry(&[("SHUTDOWN_DELAY_SECONDS", "0")]).await;
    s.shutdown();
    // Stops at once.
    s.stopped(Duration::from_secs(5)).await;
    assert!(TcpStream::connect(s.addr).await.is_err());
}

#[tokio::test]
async fn listens_dual_stack_on_ipv6_and_ipv4_loopback() {
    let listener = web::bind(0).expect("bind");
    let local = listener.local_addr().unwrap();
    let port = local.port();
    let ipv6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    if ipv6 {
        assert!(
            local.is_ipv6(),
            "{local}: not on [::] although IPv6 works here"
        );
    }
    let _s = Server::serve(listener, App::new(config(&[("DRY_RUN", "true")]), None));
    let mut addrs = vec![SocketAddr::from(([127, 0, 0, 1], port))];
    if ipv6 {
        addrs.push(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)));
    } else {
        eprintln!("this host has no IPv6 loopback: checked the IPv4 fallback only");
    }
    for addr in addrs {
        let r = http(addr, "POST", "/", &HeaderMap::new(), shell().as_bytes()).await;
        assert_eq!(r.status, 200, "{addr}");
        assert_eq!(r.json()["outcome"], "dry-run", "{addr}");
    }
}

#[test]
fn limits_out_of_range_stop_the_start_naming_the_variable() {
    for (var, value) in [
        ("REQUEST_TIMEOUT_SECONDS", "0"),
        ("IDLE_TIMEOUT_SECONDS", "100000"),
        ("SHUTDOWN_DELAY_SECONDS", "-1"),
        ("BODY_MEMORY_BYTES", "1024"),
    ] {
        binary::refused_start(var, value);
    }
}

#[tokio::test]
async fn the_binary_on_sigterm_is_not_ready_keeps_serving_for_the_delay_then_exits_0() {
    let mut responder =
        Responder::start(&[("DRY_RUN", "true"), ("SHUTDOWN_DELAY_SECONDS", "2")]).await;
    // Dual stack: the binary listens on [::], reachable on both loopbacks.
    let addr = responder.addr;
    let port = addr.port();
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
        let r = http(v6, "POST", "/", &HeaderMap::new(), shell().as_bytes()).await;
        assert_eq!(r.status, 200, "IPv6 loopback");
    }
    // Taken before the signal: the delay runs from its receipt, which is later.
    let sent = Instant::now();
    responder.sigterm();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        http(addr, "GET", "/readyz", &HeaderMap::new(), b"")
            .await
            .status,
        503
    );
    let r = http(addr, "POST", "/", &HeaderMap::new(), shell().as_bytes()).await;
    assert_eq!(r.status, 200);
    assert!(sent.elapsed() < Duration::from_secs(2));
    let code = responder
        .exit_code(Duration::from_secs(10).saturating_sub(sent.elapsed()))
        .await;
    assert_eq!(code, Some(0));
    assert!(
        sent.elapsed() >= Duration::from_secs(2),
        "{:?}",
        sent.elapsed()
    );
}

#[tokio::test]
async fn a_new_connection_that_stays_silent_is_closed_after_the_request_timeout() {
    // Idle connections may stay 95 s between requests, but a new one that never starts its
    // request only holds its slot for REQUEST_TIMEOUT_SECONDS.
    let s = Server::dry(&[
        ("REQUEST_TIMEOUT_SECONDS", "1"),
        ("IDLE_TIMEOUT_SECONDS", "95"),
    ])
    .await;
    assert_about_one_second(silent_connection(s.addr).await);
}

/// What a request holds of BODY_MEMORY_BYTES, as the app sees it: counted here.
struct Counted {
    held: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    limit: usize,
    bytes: usize,
    largest: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl falco_responder::app::Memory for Counted {
    fn bytes(&self) -> usize {
        self.bytes
    }
    fn grow(&mut self, to: usize) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        if to > self.limit {
            return false;
        }
        self.held.fetch_add(to - self.bytes, SeqCst);
        self.largest.fetch_max(to, SeqCst);
        self.bytes = to;
        true
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.held
            .fetch_sub(self.bytes, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The decoded event is charged to the body budget beside its body, and given back with it;
/// when the budget has no room for it the event gets the body budget's 503 (retry later).
#[tokio::test]
async fn a_decoded_event_is_charged_to_the_body_budget_until_it_is_dropped() {
    use std::sync::{Arc, atomic::AtomicUsize, atomic::Ordering::SeqCst};
    let app = App::new(config(&[("DRY_RUN", "true")]), None);
    let body = shell();
    let decoded = falco_responder::ingest::decode::decode(&HeaderMap::new(), body.as_bytes())
        .unwrap()
        .heap_bytes();
    assert!(decoded > 500, "{decoded}");
    let (held, largest) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let memory = |limit| {
        held.fetch_add(body.len(), SeqCst);
        Counted {
            held: held.clone(),
            limit,
            bytes: body.len(),
            largest: largest.clone(),
        }
    };
    let reply = app
        .handle_within(&HeaderMap::new(), body.as_bytes(), memory(usize::MAX))
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(largest.load(SeqCst), body.len() + decoded);
    assert_eq!(held.load(SeqCst), 0, "given back with the event");
    // No room beside the body.
    let reply = app
        .handle_within(
            &HeaderMap::new(),
            body.as_bytes(),
            memory(body.len() + decoded - 1),
        )
        .await;
    assert_eq!(reply.status, 503);
    let v = reply.json();
    assert_eq!(v["retry"], true, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("BODY_MEMORY_BYTES"),
        "{v}"
    );
    assert_eq!(held.load(SeqCst), 0);
}

#[tokio::test]
async fn a_request_head_over_16_kib_gets_431_and_one_under_it_is_served() {
    let s = Server::dry(&[]).await;
    let body = shell();
    for (pad, status) in [(12_000, 200), (20_000, 431)] {
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        let head = format!(
            "POST / HTTP/1.1\r\nhost: x\r\nx-pad: {}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            "a".repeat(pad),
            body.len()
        );
        let _ = c.write_all(head.as_bytes()).await;
        let (raw, _) = read_until_closed(&mut c, Duration::from_secs(10)).await;
        assert_eq!(
            parse_response(&raw).status,
            status,
            "{pad}: {}",
            String::from_utf8_lossy(&raw)
        );
    }
}
