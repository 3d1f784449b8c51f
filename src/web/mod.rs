//! The HTTP side: hyper 1 connections, routes, auth, limits, shutdown.
//!
//! `run` takes a bound listener (main binds it with [`bind`]; tests bind 127.0.0.1:0) and a
//! shutdown future. What a hostile or broken client can take is bounded (README, "Limits"):
//! - time: REQUEST_TIMEOUT_SECONDS from the first byte of a request to its whole body (408),
//!   IDLE_TIMEOUT_SECONDS between requests; a silent connection holds no hyper buffers;
//! - memory: at most BODY_MEMORY_BYTES of request bodies at once; beyond it 503 + Retry-After
//!   before the body is read;
//! - an answer given before the whole body was read (413, 401, 503, 408, ...) is followed by a
//!   lingering close (nginx's model): half-close, read and discard for a bounded time and byte
//!   count, so that the client reads the answer instead of a connection reset.

use std::{
    convert::Infallible,
    future::Future,
    io,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use cloudevents::{EventBuilder, EventBuilderV10};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use subtle::ConstantTimeEq;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, watch},
    time::Instant,
};
use tokio_util::task::TaskTracker;

use crate::{
    app::{
        App,
        reply::{Body as ReplyBody, Reply},
    },
    config::Limits,
};

pub use crate::ingest::decode::RESULT_CE_TYPE;
pub const RESULT_CE_SOURCE: &str = "falco-responder";

/// Health paths: ours, Knative func's and OpenFaaS's (the image runs without a watchdog).
const LIVENESS: &[&str] = &["/healthz", "/health/liveness", "/_/health"];
const READINESS: &[&str] = &["/readyz", "/health/readiness", "/_/ready"];

/// Open connections at once; more wait in the kernel's accept queue. A silent connection costs
/// a task and a socket (about 1 KiB), so this bounds file descriptors more than memory.
pub const MAX_CONNECTIONS: usize = 4096;
/// The kernel's accept queue (tokio's default is 1024): bursts of new connections wait there.
const BACKLOG: i32 = 4096;
/// Lingering close: after an early answer, read and discard at most this long and this much.
pub const LINGER_TIME: Duration = Duration::from_secs(5);
pub const LINGER_BYTES: usize = 8 << 20;
/// A body of unknown length (chunked) reserves memory in steps, starting with this much.
const FIRST_RESERVATION: usize = 64 << 10;
/// Time the service has past the request deadline to answer 408 itself before the connection
/// is simply closed.
const ANSWER_GRACE: Duration = Duration::from_secs(2);

type Body = Full<Bytes>;

/// Listens on `[::]:port` accepting IPv4 too (dual stack), or on `0.0.0.0:port` where the host
/// has no IPv6.
pub fn bind(port: u16) -> io::Result<TcpListener> {
    match listen(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))) {
        Ok(l) => Ok(l),
        // EAFNOSUPPORT (ipv6.disable=1), EADDRNOTAVAIL, EPROTONOSUPPORT: no IPv6 here.
        Err(e) if matches!(e.raw_os_error(), Some(97 | 99 | 93)) => {
            tracing::info!(error = %e, "no IPv6 on this host: listening on IPv4 only");
            listen(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))
        }
        Err(e) => Err(e),
    }
}

fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        // Explicit: the default follows net.ipv6.bindv6only, which some hosts set.
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// What every connection shares.
struct Shared {
    app: Arc<App>,
    /// Set on SIGTERM: readiness answers 503 and answers close their connection.
    draining: AtomicBool,
    body_memory: BodyBudget,
}

/// BODY_MEMORY_BYTES, counted in bytes of request body held in memory. Bodies over
/// SMALL_BODY also take from `large`, a quarter smaller: that quarter stays free for ordinary
/// events (a Falco event is a few KiB), so a flood of large bodies cannot starve them.
/// Nothing ever waits for bytes (a request over the budget is answered 503), so two atomic
/// counters do what semaphores would, without a lock on every release.
struct BodyBudget {
    /// Bytes free.
    all: AtomicUsize,
    large: AtomicUsize,
}

/// Every real Falco event, in any envelope, is far below this.
const SMALL_BODY: usize = 64 << 10;

/// What one body holds of the budget; given back on drop.
struct Reservation<'a> {
    budget: &'a BodyBudget,
    bytes: usize,
    large_bytes: usize,
}

impl BodyBudget {
    fn new(bytes: usize) -> BodyBudget {
        BodyBudget {
            all: AtomicUsize::new(bytes),
            large: AtomicUsize::new(bytes - bytes / 4),
        }
    }

    fn reserve(&self) -> Reservation<'_> {
        Reservation {
            budget: self,
            bytes: 0,
            large_bytes: 0,
        }
    }
}

/// Takes `n` bytes from `free` if they are there now.
fn take(free: &AtomicUsize, n: usize) -> bool {
    n == 0
        || free
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |f| f.checked_sub(n))
            .is_ok()
}

impl Reservation<'_> {
    /// Grows to `to` bytes if they are free now; false (and unchanged) if not.
    fn grow(&mut self, to: usize) -> bool {
        let large_to = if to > SMALL_BODY { to } else { 0 };
        let more = to.saturating_sub(self.bytes);
        let more_large = large_to.saturating_sub(self.large_bytes);
        if !take(&self.budget.all, more) {
            return false;
        }
        if !take(&self.budget.large, more_large) {
            self.budget.all.fetch_add(more, Ordering::AcqRel);
            return false;
        }
        self.bytes += more;
        self.large_bytes += more_large;
        true
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.budget.all.fetch_add(self.bytes, Ordering::AcqRel);
        self.budget
            .large
            .fetch_add(self.large_bytes, Ordering::AcqRel);
    }
}

pub async fn run(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let limits = app.config.limits.clone();
    let shared = Arc::new(Shared {
        body_memory: BodyBudget::new(limits.body_memory_bytes),
        draining: AtomicBool::new(false),
        app: app.clone(),
    });
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (closing_tx, closing) = watch::channel(false);
    let connections = TaskTracker::new();
    tokio::pin!(shutdown);
    // Set once SIGTERM came: accept until then, so that events routed to us while the
    // endpoint removal propagates still succeed.
    let mut accept_until: Option<Instant> = None;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    loop {
        let stop = async {
            match accept_until {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        let step = tokio::select! {
            biased;
            _ = &mut shutdown, if accept_until.is_none() => None,
            _ = stop => break,
            accepted = accept(&listener, &slots) => Some(accepted),
        };
        let Some((stream, peer, slot)) = step else {
            // Not ready at once; keep serving while the endpoints update.
            shared.draining.store(true, Ordering::SeqCst);
            accept_until = Some(Instant::now() + limits.shutdown_delay);
            tracing::info!(
                delay_seconds = limits.shutdown_delay.as_secs(),
                "shutting down: readiness 503, still accepting for SHUTDOWN_DELAY_SECONDS"
            );
            continue;
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(connection(
            stream,
            peer,
            shared.clone(),
            closing.clone(),
            slot,
        ));
    }
    // Stop accepting, close idle connections, let in-flight events finish.
    drop(listener);
    shared.draining.store(true, Ordering::SeqCst);
    let _ = closing_tx.send(true);
    connections.close();
    let drain_for = limits.request_timeout + app.config.api_timeout + LINGER_TIME + ANSWER_GRACE;
    tracing::info!(
        open = connections.len(),
        "stopped accepting: finishing in-flight events"
    );
    tokio::select! {
        _ = connections.wait() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(drain_for) => tracing::warn!(
            open = connections.len(), "gave up waiting for connections to close"),
    }
    app.drain().await;
    Ok(())
}

/// The next connection, once a slot is free.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> (TcpStream, SocketAddr, OwnedSemaphorePermit) {
    let slot = slots
        .clone()
        .acquire_owned()
        .await
        .expect("semaphore never closed");
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => return (stream, peer, slot),
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Where a connection is, for its deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No request: closed after IDLE_TIMEOUT_SECONDS.
    Idle = 0,
    /// A request's first byte arrived; hyper has not handed it to the service yet.
    Head = 1,
    /// The service has it and answers 408 itself at the deadline.
    Served = 2,
    /// The body is in: the event is being handled (bounded by API_TIMEOUT_SECONDS) or answered.
    Answering = 3,
}

/// The phase and since when, in one atomic: updated on reads, writes and by the service, all
/// within the connection's task, and read by its watchdog, so no lock and no wake-ups.
struct ConnState {
    epoch: Instant,
    /// Phase in the top two bits, milliseconds since `epoch` below.
    packed: AtomicU64,
}

const MS_BITS: u64 = (1 << 62) - 1;

impl ConnState {
    fn new(phase: Phase) -> ConnState {
        let s = ConnState {
            epoch: Instant::now(),
            packed: AtomicU64::new(0),
        };
        s.set(phase, true);
        s
    }

    fn set(&self, phase: Phase, restart: bool) {
        let since = if restart {
            self.epoch.elapsed().as_millis() as u64 & MS_BITS
        } else {
            self.packed.load(Ordering::Relaxed) & MS_BITS
        };
        self.packed
            .store(((phase as u64) << 62) | since, Ordering::Relaxed);
    }

    fn get(&self) -> (Phase, Instant) {
        let p = self.packed.load(Ordering::Relaxed);
        let phase = match p >> 62 {
            0 => Phase::Idle,
            1 => Phase::Head,
            2 => Phase::Served,
            _ => Phase::Answering,
        };
        (phase, self.epoch + Duration::from_millis(p & MS_BITS))
    }

    fn on_read(&self) {
        if self.get().0 == Phase::Idle {
            self.set(Phase::Head, true);
        }
    }

    fn on_write(&self) {
        if self.get().0 == Phase::Answering {
            self.set(Phase::Idle, true);
        }
    }

    /// The request's deadline (REQUEST_TIMEOUT_SECONDS from its first byte).
    fn request_deadline(&self, limits: &Limits) -> Instant {
        self.get().1 + limits.request_timeout
    }

    /// When the watchdog must act, and how.
    fn deadline(&self, limits: &Limits) -> Option<(Instant, Expiry)> {
        let (phase, since) = self.get();
        match phase {
            Phase::Idle => Some((since + limits.idle_timeout, Expiry::Idle)),
            Phase::Head => Some((since + limits.request_timeout, Expiry::Request)),
            Phase::Served => Some((
                since + limits.request_timeout + ANSWER_GRACE,
                Expiry::Abandon,
            )),
            Phase::Answering => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    Idle,
    /// The headers did not arrive in time: answer 408 ourselves.
    Request,
    /// The service did not answer in time (cannot happen unless it hangs): close.
    Abandon,
}

/// The socket, telling the connection's state about reads and writes.
struct Io {
    stream: TcpStream,
    state: Arc<ConnState>,
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.state.on_read();
        }
        r
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.state.on_write();
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.state.on_write();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

type ServiceFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

/// One connection, from accept to close; `slot` is its MAX_CONNECTIONS permit.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut closing: watch::Receiver<bool>,
    slot: OwnedSemaphorePermit,
) {
    let _slot = slot;
    let limits = shared.app.config.limits.clone();
    // Until its first byte a connection is only a socket: hyper allocates its buffers when it
    // starts reading, which would make thousands of silent connections cost megabytes.
    // A new connection is opened to send a request: it gets the request deadline for its first
    // byte (or the idle timeout, if shorter), so silent ones cannot hold the slots for long.
    let first_byte = limits.request_timeout.min(limits.idle_timeout);
    let mut first = [0u8; 1];
    tokio::select! {
        // peek, not readable(): readiness can be reported before any byte arrived.
        r = tokio::time::timeout(first_byte, stream.peek(&mut first)) => {
            if !matches!(r, Ok(Ok(1..))) {
                return;
            }
        }
        _ = closing.wait_for(|c| *c) => return,
    }
    // Boxed: a task is as large as its future's largest state, and this one holds hyper's
    // connection; the silent wait above stays small.
    Box::pin(serve_http(stream, peer, shared, closing, limits)).await;
}

/// HTTP on a connection whose first byte has arrived, then its lingering close.
async fn serve_http(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut closing: watch::Receiver<bool>,
    limits: Limits,
) {
    let state = Arc::new(ConnState::new(Phase::Head));
    let service = {
        let state = state.clone();
        let shared = shared.clone();
        service_fn(move |req| {
            let state = state.clone();
            let shared = shared.clone();
            Box::pin(async move {
                let (phase, _) = state.get();
                // A pipelined request already in hyper's buffer starts its clock now.
                state.set(Phase::Served, phase == Phase::Idle);
                let mut resp = route(&shared, req, &state).await;
                if shared.draining.load(Ordering::Relaxed) {
                    // Move keep-alive clients (proxies) to another replica.
                    resp.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                state.set(Phase::Answering, false);
                Ok::<_, Infallible>(resp)
            }) as ServiceFuture
        })
    };
    let mut conn = http1::Builder::new()
        .timer(TokioTimer::new())
        // hyper's read buffer grows up to 400 KiB by default; an event needs far less.
        .max_buf_size(64 << 10)
        // Our watchdog bounds headers and body together (hyper's timeout covers headers only).
        .header_read_timeout(None)
        // A sender that closes right after its request (a fire-and-forget webhook, a
        // timed-out client) must not cancel the event: hyper would otherwise drop the
        // request at EOF, before it is read and decided.
        .half_close(true)
        // Replies are a few hundred bytes: copied behind the head, one write(2), which is
        // cheaper than a vectored write of two buffers (scripts/bench.sh, row 1).
        .writev(false)
        .serve_connection(
            TokioIo::new(Io {
                stream,
                state: state.clone(),
            }),
            service,
        );
    enum Event {
        Done(hyper::Result<()>),
        Timer,
        Closing,
    }
    // Never armed further ahead than the shorter timeout: a phase that starts after arming has
    // its deadline after the timer, so phase changes need no wake-up (cheap per request); an
    // idle connection wakes once per REQUEST_TIMEOUT_SECONDS.
    let horizon = limits.request_timeout.min(limits.idle_timeout);
    let arm = |state: &ConnState| {
        let cap = Instant::now() + horizon;
        state.deadline(&limits).map_or(cap, |(at, _)| at.min(cap))
    };
    let timer = tokio::time::sleep_until(arm(&state));
    tokio::pin!(timer);
    let closed = closing.wait_for(|c| *c);
    tokio::pin!(closed);
    // The closing signal is polled once, which registers this task (its waker never changes),
    // and again only once draining began (it is sent after): polling it takes a lock, on every
    // wake-up otherwise.
    let mut closed_registered = false;
    let mut graceful = false;
    let end = loop {
        let event = std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = conn.poll_without_shutdown(cx) {
                return Poll::Ready(Event::Done(r));
            }
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Event::Timer);
            }
            if !graceful && (!closed_registered || shared.draining.load(Ordering::Acquire)) {
                closed_registered = true;
                if closed.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Closing);
                }
            }
            Poll::Pending
        })
        .await;
        match event {
            Event::Done(Ok(())) => break None,
            Event::Done(Err(e)) => {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
                break None;
            }
            Event::Closing => {
                graceful = true;
                Pin::new(&mut conn).graceful_shutdown();
            }
            Event::Timer => {
                if let Some((at, how)) = state.deadline(&limits)
                    && at <= Instant::now()
                {
                    break Some(how);
                }
                timer.as_mut().reset(arm(&state));
            }
        }
    };
    let mut stream = conn.into_parts().io.into_inner().stream;
    match end {
        Some(Expiry::Idle) => return,
        Some(Expiry::Request) => {
            shared.app.metrics.reject("timeout");
            const MSG: &str = "the request was not complete within REQUEST_TIMEOUT_SECONDS\n";
            let head = format!(
                "HTTP/1.1 408 Request Timeout\r\nconnection: close\r\n\
                 content-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n\r\n{MSG}",
                MSG.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
        }
        Some(Expiry::Abandon) | None => {}
    }
    Box::pin(linger(stream)).await;
}

/// nginx's lingering close: our answer is out, so half-close and read whatever the client still
/// sends (bounded), instead of closing with unread data, which resets the connection and can
/// destroy the answer before the client read it.
async fn linger(mut stream: TcpStream) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER_TIME;
    let mut left = LINGER_BYTES;
    let mut buf = vec![0u8; 2048];
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
        if n == 0 || n >= left {
            return;
        }
        left -= n;
    }
}

async fn route(shared: &Shared, req: Request<Incoming>, state: &ConnState) -> Response<Body> {
    let app = &shared.app;
    let path = req.uri().path();
    let method = req.method().clone();
    let is_get = method == Method::GET || method == Method::HEAD;
    if LIVENESS.contains(&path) || READINESS.contains(&path) || path == "/metrics" {
        if !is_get {
            return plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n").with_allow("GET, HEAD");
        }
        if path == "/metrics" {
            return text(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                app.metrics.encode(),
            );
        }
        if shared.draining.load(Ordering::Relaxed) && READINESS.contains(&path) {
            return plain(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
        }
        return plain(StatusCode::OK, "ok\n");
    }
    if path != "/" {
        return json_error(
            StatusCode::NOT_FOUND,
            format!("no route for {path}: send events to POST /"),
        );
    }
    if method != Method::POST {
        return json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed: send events with POST"),
        )
        .with_allow("POST");
    }
    if let Some(expected) = &app.config.auth_token
        && !authorized(req.headers().get(header::AUTHORIZATION), expected)
    {
        tracing::warn!("rejected an event without a valid bearer token");
        app.metrics.reject("unauthorized");
        let mut resp = json_error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong Authorization: Bearer token",
        );
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return resp.closing();
    }
    let (parts, body) = req.into_parts();
    let deadline = state.request_deadline(&app.config.limits);
    let body = match read_body(shared, &parts.headers, body, deadline).await {
        Ok(b) => b,
        Err(resp) => return resp.closing(),
    };
    // The request is in: from here on API_TIMEOUT_SECONDS bounds the work, not our deadline.
    state.set(Phase::Answering, false);
    let reply = app.handle(&parts.headers, &body.bytes).await;
    drop(body);
    render(reply)
}

/// A request body in memory, with the BODY_MEMORY_BYTES it holds.
struct HeldBody<'a> {
    bytes: Bytes,
    _memory: Reservation<'a>,
}

/// Reads the body into one buffer (no second copy), within MAX_BODY_BYTES, BODY_MEMORY_BYTES
/// and the request deadline; the error is the answer.
async fn read_body<'a>(
    shared: &'a Shared,
    headers: &http::HeaderMap,
    mut body: Incoming,
    deadline: Instant,
) -> Result<HeldBody<'a>, Response<Body>> {
    let app = &shared.app;
    let max = app.config.max_body_bytes;
    let too_large = || {
        app.metrics.reject("too_large");
        json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "body larger than MAX_BODY_BYTES ({max} bytes): one Falco event is far smaller"
            ),
        )
    };
    let busy = || {
        app.metrics.reject("body_memory");
        tracing::warn!("refused a request: BODY_MEMORY_BYTES of request bodies already in memory");
        let mut reply = Reply::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many request bodies in memory at once (BODY_MEMORY_BYTES): retry later",
        );
        if let ReplyBody::Failed(f) = &mut reply.body {
            f.retry = Some(true);
        }
        render(reply)
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let declared = declared.map(|n| n as usize);
    // Reserve before reading a byte: over the budget, the client hears it at once.
    let mut memory = shared.body_memory.reserve();
    let first = declared.unwrap_or(FIRST_RESERVATION.min(max));
    if !memory.grow(first) {
        return Err(busy());
    }
    // Untouched capacity costs no resident memory: a slow client holds only what it sent.
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0));
    loop {
        // Usually the body is in hyper's buffer already: no timer for that.
        let ready = futures_util::FutureExt::now_or_never(body.frame());
        let frame = match ready {
            Some(frame) => Ok(frame),
            None => tokio::time::timeout_at(deadline, body.frame()).await,
        };
        let frame = match frame {
            Err(_) => {
                app.metrics.reject("timeout");
                return Err(json_error(
                    StatusCode::REQUEST_TIMEOUT,
                    "the body was not complete within REQUEST_TIMEOUT_SECONDS",
                ));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(json_error(
                    StatusCode::BAD_REQUEST,
                    format!("could not read the body: {e}"),
                ));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        // The usual case, a body in one frame: kept as hyper read it, not copied.
        if bytes.is_empty() && Some(data.len()) == declared {
            return Ok(HeldBody {
                bytes: data,
                _memory: memory,
            });
        }
        let len = bytes.len() + data.len();
        if len > max {
            return Err(too_large());
        }
        // Unknown length: grow the reservation by doubling, within the budget.
        if len > memory.bytes {
            let want = len.max(memory.bytes * 2).min(max);
            if !memory.grow(want) {
                return Err(busy());
            }
        }
        bytes.extend_from_slice(&data);
    }
    Ok(HeldBody {
        bytes: bytes.into(),
        _memory: memory,
    })
}

/// Constant-time comparison of `Authorization: Bearer <token>`; the token is never logged.
fn authorized(value: Option<&HeaderValue>, expected: &str) -> bool {
    let Some(given) = value.and_then(|v| v.to_str().ok()).and_then(|v| {
        v.strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
    }) else {
        return false;
    };
    given.trim().as_bytes().ct_eq(expected.as_bytes()).into()
}

/// HTTP form of a reply: a CloudEvent for CloudEvent requests (a Knative broker rejects a 2xx
/// with any other non-empty body), JSON otherwise.
pub fn render(reply: Reply) -> Response<Body> {
    if matches!(reply.body, ReplyBody::Empty) {
        let mut resp = Response::new(Body::default());
        *resp.status_mut() = reply.status;
        return resp;
    }
    if reply.cloudevent.is_some() && reply.status.is_success() {
        return match cloudevent_response(&reply) {
            Ok(resp) => resp,
            Err(e) => {
                // An empty 2xx is the other valid answer to a CloudEvent.
                tracing::warn!(error = %e, "could not build the reply CloudEvent; answering empty");
                let mut resp = Response::new(Body::default());
                *resp.status_mut() = StatusCode::NO_CONTENT;
                resp
            }
        };
    }
    let body = match &reply.body {
        ReplyBody::Handled(h) => h.to_json(),
        body => serde_json::to_vec(body).unwrap_or_default(),
    };
    let mut resp = text(reply.status, "application/json", body);
    if reply.status == StatusCode::SERVICE_UNAVAILABLE {
        // Held by a guard: replicas take tens of seconds to recover; anything else: soon.
        let after = if reply.outcome() == Some("held") {
            HeaderValue::from(crate::cluster::facts::HELD_RETRY_AFTER_SECONDS)
        } else {
            HeaderValue::from_static("1")
        };
        resp.headers_mut().insert(header::RETRY_AFTER, after);
    }
    resp
}

fn cloudevent_response(reply: &Reply) -> Result<Response<Body>, cloudevents::message::Error> {
    let subject = match &reply.body {
        ReplyBody::Handled(h) => h
            .pod
            .as_ref()
            .map(|p| format!("{}/{}", p.namespace, p.name)),
        _ => None,
    };
    let mut builder = EventBuilderV10::new()
        .id(uuid::Uuid::new_v4().to_string())
        .source(RESULT_CE_SOURCE)
        .ty(RESULT_CE_TYPE)
        .data("application/json", reply.json());
    if let Some(s) = subject {
        builder = builder.subject(s);
    }
    let event = builder
        .build()
        .map_err(|e| cloudevents::message::Error::Other {
            source: Box::new(e),
        })?;
    // The SDK writes binary-mode headers onto an http::Request; move them onto our response.
    let req: http::Request<Option<Vec<u8>>> = http::Request::try_from(event)?;
    let (parts, body) = req.into_parts();
    let mut resp = Response::new(Body::from(body.unwrap_or_default()));
    *resp.status_mut() = reply.status;
    *resp.headers_mut() = parts.headers;
    Ok(resp)
}

fn text(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Body::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn plain(status: StatusCode, body: &'static str) -> Response<Body> {
    text(status, "text/plain; charset=utf-8", body)
}

fn json_error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    render(Reply::error(status, message))
}

trait WithAllow {
    fn with_allow(self, allow: &'static str) -> Self;
    /// Answered before the body was read: the connection cannot be reused.
    fn closing(self) -> Self;
}

impl WithAllow for Response<Body> {
    fn with_allow(mut self, allow: &'static str) -> Self {
        self.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        self
    }

    fn closing(mut self) -> Self {
        self.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_token_must_match_exactly() {
        let ok = HeaderValue::from_static("Bearer s3cret");
        assert!(authorized(Some(&ok), "s3cret"));
        assert!(!authorized(
            Some(&HeaderValue::from_static("Bearer s3cre")),
            "s3cret"
        ));
        assert!(!authorized(
            Some(&HeaderValue::from_static("Basic s3cret")),
            "s3cret"
        ));
        assert!(!authorized(None, "s3cret"));
    }
}
