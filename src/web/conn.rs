//! One connection, from accept to close: a watchdog over its phases (request deadline, idle
//! timeout), the socket wrapper that tells it about reads and writes, hyper's HTTP/1 settings,
//! and the lingering close.

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
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::TcpStream,
    sync::{OwnedSemaphorePermit, watch},
    time::Instant,
};

use super::{
    HttpResponse, Server,
    phase::{ConnState, Expiry, Phase},
    routes::route,
};
use crate::config::Limits;

/// Lingering close: after an early answer, read and discard at most this long and this much.
pub const LINGER_TIME: Duration = Duration::from_secs(5);
pub const LINGER_BYTES: usize = 8 << 20;
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

type ServiceFuture = Pin<Box<dyn Future<Output = Result<HttpResponse, Infallible>> + Send>>;

/// One connection, from accept to close; `slot` is its MAX_CONNECTIONS permit.
pub(super) async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    server: Arc<Server>,
    mut closing: watch::Receiver<bool>,
    slot: OwnedSemaphorePermit,
) {
    let _slot = slot;
    let limits = server.app.config.limits.clone();
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
    Box::pin(serve_http(stream, peer, server, closing, limits)).await;
}

/// HTTP on a connection whose first byte has arrived, then its lingering close.
async fn serve_http(
    stream: TcpStream,
    peer: SocketAddr,
    server: Arc<Server>,
    mut closing: watch::Receiver<bool>,
    limits: Limits,
) {
    let state = Arc::new(ConnState::new(Phase::Head));
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
    enum Wake {
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
    let mut stream = conn.into_parts().io.into_inner().stream;
    match end {
        Some(Expiry::Idle) => return,
        Some(Expiry::Request) => {
            server.app.metrics.reject("timeout");
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
