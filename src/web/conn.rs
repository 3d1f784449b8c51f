//! One connection, from accept to close: its first request head waiting in the kernel until it
//! is complete, a watchdog over its phases (request deadline, idle timeout, the reply's write
//! deadline, reclaims under slot pressure), the socket wrapper that tells it about reads and
//! writes, hyper's HTTP/1 settings, and the lingering close.

use std::{
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, atomic::Ordering},
    task::{Context, Poll},
    time::Duration,
};

use http::{HeaderValue, header};
use hyper::{server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest, ReadBuf},
    net::TcpStream,
    sync::watch,
    time::Instant,
};

use super::{
    HttpResponse, Server,
    listener::Slot,
    phase::{ANSWER_GRACE, ConnState, Expiry, Phase, STALLED, Stage},
    routes::route,
};
use crate::config::Limits;

/// Lingering close: after an early answer, read and discard at most this long and this much.
pub const LINGER_TIME: Duration = Duration::from_secs(5);
pub const LINGER_BYTES: usize = 8 << 20;
/// The longest request head: a Falco event's headers (a bearer token, CloudEvents attributes, a
/// gateway's forwarding headers) are a few KiB; a longer head is answered 431. Also hyper's
/// largest read buffer, so what a keep-alive connection holds of a head is bounded by it.
pub const MAX_HEAD_BYTES: usize = 16 << 10;
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
        this.wrote(&r);
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.wrote(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    /// hyper flushes once its whole output went to the socket: nothing waits for the client.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_flush(cx);
        if matches!(r, Poll::Ready(Ok(()))) {
            this.state.on_flushed();
        }
        r
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

impl Io {
    fn wrote(&self, r: &Poll<io::Result<usize>>) {
        match r {
            Poll::Ready(Ok(n)) if *n > 0 => self.state.on_write(),
            // The client does not read: the write deadline runs from now.
            Poll::Pending => self.state.on_write_blocked(),
            _ => {}
        }
    }
}

type ServiceFuture = Pin<Box<dyn Future<Output = Result<HttpResponse, Infallible>> + Send>>;

/// One connection, from accept to close; `slot` is its place among MAX_CONNECTIONS (or a spare
/// one).
pub(super) async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    server: Arc<Server>,
    mut closing: watch::Receiver<bool>,
    mut slot: Slot,
) {
    let state = slot.state.clone();
    let limits = server.app.config.limits.clone();
    // Until its first request head is complete a connection is only a socket, its bytes in the
    // kernel: hyper allocates its buffers when it starts reading, which would make thousands
    // of silent or trickling connections cost megabytes. A new connection is opened to send a
    // request: its head gets the request deadline (or the idle timeout, if shorter), so silent
    // ones cannot hold the slots for long; on a spare slot, which is there for requests sent at
    // once, a second.
    let accepted = Instant::now();
    let mut deadline = accepted
        + if state.probes_only() {
            STALLED
        } else {
            limits.request_timeout.min(limits.idle_timeout)
        };
    let (mut probe, mut whole) = (false, false);
    let arrived = tokio::select! {
        r = tokio::time::timeout_at(deadline, head_arrived(&stream, &state, &mut probe, &mut whole)) => r,
        _ = closing.wait_for(|c| *c) => return,
        // Silent or trickling while the slots ran out.
        _ = state.evicted() => return,
    };
    match arrived {
        Ok(Ok(true)) => {}
        Ok(_) => return,
        // Silent: closed without a word.
        Err(_) if !state.heard() => return,
        Err(_) => {
            Box::pin(answer_timeout(stream, &server, &state)).await;
            return;
        }
    }
    // On a spare slot, a request that arrived whole (an ordinary event) takes the slot of a
    // connection doing nothing; anything else but the probes is answered 503 there.
    if state.probes_only() && !probe && whole && server.slots.displace(&mut slot).await {
        deadline = accepted + limits.request_timeout.min(limits.idle_timeout);
    }
    let probes_only = state.probes_only();
    let _slot = slot;
    // A whole head waits in the kernel for one of MAX_SERVED (the probes' do not wait), so that
    // hyper's buffers exist for that many connections at most. A request that is already whole
    // in the kernel (an ordinary event: head and body in one send) is served at once, and
    // waits instead for one of MAX_SERVED_WHOLE when those run out too: slow senders holding
    // every one of MAX_SERVED cannot make true events queue behind them.
    let _served = if probe || probes_only {
        None
    } else {
        let permit = match server.served.clone().try_acquire_owned() {
            Ok(p) => Ok(p),
            Err(_) => {
                let pool = if whole {
                    state.set_stage(Stage::Whole);
                    &server.served_whole
                } else {
                    // Waiting on us, but its body has not come whole: reclaimable once the
                    // stalled ones are gone.
                    state.set_stage(Stage::Queued);
                    &server.served
                };
                tokio::select! {
                    p = tokio::time::timeout_at(deadline, pool.clone().acquire_owned()) => p.ok().and_then(Result::ok).ok_or(()),
                    _ = closing.wait_for(|c| *c) => return,
                    _ = state.evicted() => return,
                }
            }
        };
        match permit {
            Ok(p) => Some(p),
            Err(()) => {
                Box::pin(answer_timeout(stream, &server, &state)).await;
                return;
            }
        }
    };
    // Boxed: a task is as large as its future's largest state, and this one holds hyper's
    // connection; the wait above stays small.
    state.set_stage(Stage::Http);
    Box::pin(serve_http(stream, peer, server, closing, limits, state)).await;
}

/// Waits until the request head is complete in the kernel's buffer (or MAX_HEAD_BYTES long, for
/// hyper to refuse), looking with MSG_PEEK into a buffer on the stack; false if the client
/// closed before sending anything. `state` hears of every byte; `whole` is set when the body
/// the head announces has arrived with it.
async fn head_arrived(
    stream: &TcpStream,
    state: &ConnState,
    probe: &mut bool,
    whole: &mut bool,
) -> io::Result<bool> {
    let mut seen = 0;
    loop {
        let ready = stream.ready(Interest::READABLE).await?;
        let peeked = stream.try_io(Interest::READABLE, || {
            let mut buf = [0u8; MAX_HEAD_BYTES];
            let (n, _) = rustix::net::recv(stream, &mut buf[..], rustix::net::RecvFlags::PEEK)?;
            if n > seen {
                seen = n;
                state.on_peek();
            }
            if n == 0 || n == MAX_HEAD_BYTES || head_complete(&buf[..n]) {
                *probe = is_probe_request(&buf[..n]);
                *whole = request_whole(&buf[..n]);
                return Ok(n);
            }
            // Clears the readiness seen before the peek: the next wake-up is new bytes.
            Err(io::ErrorKind::WouldBlock.into())
        });
        match peeked {
            Ok(n) => return Ok(n > 0),
            // The client closed its side after an incomplete head: hyper answers that.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && ready.is_read_closed() => {
                return Ok(true);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

/// Whether the request line is a GET (or HEAD) of a probe's or the metrics' path.
fn is_probe_request(buf: &[u8]) -> bool {
    let start = buf
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(buf.len());
    let line = buf[start..]
        .split(|&b| b == b'\n')
        .next()
        .unwrap_or_default();
    let mut words = line.split(|&b| b == b' ');
    let (Some(method), Some(target)) = (words.next(), words.next()) else {
        return false;
    };
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    matches!(method, b"GET" | b"HEAD")
        && std::str::from_utf8(path).is_ok_and(super::routes::is_probe)
}

/// Whether `buf` holds a whole request head: an empty line after the request line (empty lines
/// before it are skipped, as hyper does; bare LF line ends are accepted, as hyper does).
fn head_complete(buf: &[u8]) -> bool {
    let start = buf
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(buf.len());
    let rest = &buf[start..];
    rest.iter().enumerate().any(|(i, &b)| {
        b == b'\n'
            && match rest.get(i + 1) {
                Some(b'\n') => true,
                Some(b'\r') => rest.get(i + 2) == Some(&b'\n'),
                _ => false,
            }
    })
}

/// Whether `buf` holds a whole request: a complete head whose `Content-Length` body follows
/// it in full (a chunked body, or a length given twice, never counts).
fn request_whole(buf: &[u8]) -> bool {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4) else {
        return false;
    };
    let mut length = None;
    for line in buf[..end].split(|&b| b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return false;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let parsed = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok());
            if length.is_some() || parsed.is_none() {
                return false;
            }
            length = parsed;
        }
    }
    buf.len() - end >= length.unwrap_or(0)
}

/// 408 for a request that did not arrive within REQUEST_TIMEOUT_SECONDS, then the lingering
/// close.
async fn answer_timeout(mut stream: TcpStream, server: &Server, state: &ConnState) {
    state.set_stage(Stage::Closing);
    server.app.metrics.reject("timeout");
    const MSG: &str = "the request was not complete within REQUEST_TIMEOUT_SECONDS\n";
    let head = format!(
        "HTTP/1.1 408 Request Timeout\r\nconnection: close\r\n\
         content-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n\r\n{MSG}",
        MSG.len()
    );
    // Bounded: a client that reads nothing does not hold the connection.
    let written = tokio::time::timeout(ANSWER_GRACE, stream.write_all(head.as_bytes())).await;
    if matches!(written, Ok(Ok(()))) {
        linger(stream, state).await;
    }
}

/// HTTP on a connection whose first request head has arrived, then its lingering close.
async fn serve_http(
    stream: TcpStream,
    peer: SocketAddr,
    server: Arc<Server>,
    mut closing: watch::Receiver<bool>,
    limits: Limits,
    state: Arc<ConnState>,
) {
    let service = {
        let state = state.clone();
        let server = server.clone();
        service_fn(move |req| {
            let state = state.clone();
            let server = server.clone();
            Box::pin(async move {
                let (phase, _) = state.get();
                // A pipelined request already in hyper's buffer starts its clock now.
                state.set(Phase::Served, phase == Phase::Idle);
                let mut resp = route(&server, req, &state).await;
                if server.draining.load(Ordering::Relaxed) {
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
        // hyper's read buffer grows up to 400 KiB by default; an event needs far less, and a
        // keep-alive connection trickling its next head holds at most this.
        .max_buf_size(MAX_HEAD_BYTES)
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
    enum Wake {
        Done(hyper::Result<()>),
        Timer,
        Closing,
        Evicted,
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
    // The same for the listener's eviction: polled again only once it came.
    let evicted = state.notified();
    tokio::pin!(evicted);
    let mut evict_registered = false;
    let end = loop {
        let wake = std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = conn.poll_without_shutdown(cx) {
                return Poll::Ready(Wake::Done(r));
            }
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Wake::Timer);
            }
            if !graceful && (!closed_registered || server.draining.load(Ordering::Acquire)) {
                closed_registered = true;
                if closed.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wake::Closing);
                }
            }
            if !evict_registered || state.was_evicted() {
                evict_registered = true;
                if evicted.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wake::Evicted);
                }
            }
            Poll::Pending
        })
        .await;
        match wake {
            Wake::Done(Ok(())) => break None,
            Wake::Done(Err(e)) => {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
                break None;
            }
            Wake::Closing => {
                graceful = true;
                Pin::new(&mut conn).graceful_shutdown();
            }
            // Slots are short and this one was doing the least: it gives its own back.
            Wake::Evicted if state.idleness(Instant::now()).is_some() => break Some(Expiry::Idle),
            // It made progress since it was chosen.
            Wake::Evicted => {
                state.pardon();
                evicted.set(state.notified());
                evict_registered = false;
            }
            Wake::Timer => {
                if let Some((at, how)) = state.deadline(&limits)
                    && at <= Instant::now()
                {
                    break Some(how);
                }
                timer.as_mut().reset(arm(&state));
            }
        }
    };
    let stream = conn.into_parts().io.into_inner().stream;
    match end {
        Some(Expiry::Idle) => {}
        Some(Expiry::Write) => server.app.metrics.reject("write_timeout"),
        Some(Expiry::Request) => Box::pin(answer_timeout(stream, &server, &state)).await,
        Some(Expiry::Abandon) | None => {
            state.set_stage(Stage::Closing);
            Box::pin(linger(stream, &state)).await
        }
    }
}

/// nginx's lingering close: our answer is out, so half-close and read whatever the client still
/// sends (bounded), instead of closing with unread data, which resets the connection and can
/// destroy the answer before the client read it. Cut short when the slots run out.
async fn linger(mut stream: TcpStream, state: &ConnState) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER_TIME;
    let mut left = LINGER_BYTES;
    let mut buf = vec![0u8; 2048];
    loop {
        let n = tokio::select! {
            r = tokio::time::timeout_at(deadline, stream.read(&mut buf)) => match r {
                Ok(Ok(n)) => n,
                _ => return,
            },
            _ = state.evicted() => return,
        };
        if n == 0 || n >= left {
            return;
        }
        left -= n;
    }
}

#[cfg(test)]
mod tests {
    use super::request_whole;

    #[test]
    fn a_request_is_whole_when_its_announced_body_came_with_its_head() {
        let head = "POST / HTTP/1.1\r\nhost: x\r\nContent-Length: 5\r\n\r\n";
        assert!(request_whole(format!("{head}hello").as_bytes()));
        assert!(!request_whole(format!("{head}hell").as_bytes()));
        assert!(request_whole(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n"));
        // Not yet a whole head; a chunked body; a length twice or unreadable.
        assert!(!request_whole(b"POST / HTTP/1.1\r\ncontent-length: 0\r\n"));
        assert!(!request_whole(
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"
        ));
        assert!(!request_whole(
            b"POST / HTTP/1.1\r\ncontent-length: 0\r\ncontent-length: 0\r\n\r\n"
        ));
        assert!(!request_whole(
            b"POST / HTTP/1.1\r\ncontent-length: 65536\r\n\r\n{"
        ));
    }
}
