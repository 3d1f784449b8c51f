//! The listening socket and the accept loop: connection slots (a few kept for the probes, and
//! the slots of connections doing nothing reclaimed when they run out), and the graceful
//! shutdown (readiness 503 first, accept for SHUTDOWN_DELAY_SECONDS, then let in-flight events
//! finish).

use std::{
    future::Future,
    io,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Notify, OwnedSemaphorePermit, Semaphore, watch},
    time::Instant,
};
use tokio_util::task::TaskTracker;

use super::{
    Server,
    budget::BodyBudget,
    conn::{LINGER_TIME, connection},
    phase::ANSWER_GRACE,
};
use crate::app::App;

/// Open connections at once; more wait in the kernel's accept queue. A silent connection costs
/// a task and a socket (about 1 KiB), so this bounds file descriptors more than memory.
pub const MAX_CONNECTIONS: usize = 4096;
/// Connections accepted beyond MAX_CONNECTIONS for the probes and `/metrics` only: the kubelet
/// must not restart a pod whose event slots are full.
pub const PROBE_CONNECTIONS: usize = 32;
/// SO_SNDBUF of a connection (the kernel doubles it).
const SEND_BUFFER: usize = 64 << 10;
/// Connections with a request in hyper's hands (about 20 KiB each: its buffers, the request)
/// at once; the others wait with their head in the kernel (1 KiB each). Probes are not counted.
pub const MAX_SERVED: usize = 1024;
/// More of those, for requests whose head and body are both already in the kernel (an
/// ordinary event, sent whole): they are answered without waiting for a byte, so they turn over
/// fast, and senders who stall cannot hold these.
pub const MAX_SERVED_WHOLE: usize = 128;
/// The kernel's accept queue (tokio's default is 1024): bursts of new connections wait there.
const BACKLOG: i32 = 4096;

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

/// Serves `app` on `listener` until `shutdown` resolves, then drains: in-flight events and the
/// work that outlives answers finish before this returns.
pub async fn run(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let limits = app.config.limits.clone();
    let server = Arc::new(Server {
        body_memory: BodyBudget::new(limits.body_memory_bytes),
        draining: AtomicBool::new(false),
        reclaim: Notify::new(),
        reclaims: AtomicU64::new(0),
        last_reclaim: std::sync::Mutex::new(None),
        served: Arc::new(Semaphore::new(MAX_SERVED)),
        served_whole: Arc::new(Semaphore::new(MAX_SERVED_WHOLE)),
        app: app.clone(),
    });
    let slots = Slots {
        events: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        probes: Arc::new(Semaphore::new(PROBE_CONNECTIONS)),
    };
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
            accepted = slots.accept(&listener, &server) => Some(accepted),
        };
        let Some((stream, peer, slot)) = step else {
            // Not ready at once; keep serving while the endpoints update.
            server.draining.store(true, Ordering::SeqCst);
            accept_until = Some(Instant::now() + limits.shutdown_delay);
            tracing::info!(
                delay_seconds = limits.shutdown_delay.as_secs(),
                "shutting down: readiness 503, still accepting for SHUTDOWN_DELAY_SECONDS"
            );
            continue;
        };
        let _ = stream.set_nodelay(true);
        // Replies are small: a fixed send buffer (no autotuning to megabytes) bounds what a
        // client that does not read leaves in the kernel, and makes our write block soon, for
        // the write deadline to end it.
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER);
        connections.spawn(connection(
            stream,
            peer,
            server.clone(),
            closing.clone(),
            slot,
        ));
    }
    // Stop accepting, close idle connections, let in-flight events finish.
    drop(listener);
    server.draining.store(true, Ordering::SeqCst);
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

/// A connection's place: one of MAX_CONNECTIONS, or one of the few kept for the probes.
pub(super) struct Slot {
    _permit: OwnedSemaphorePermit,
    /// Serves the probes and `/metrics` only.
    pub(super) probes_only: bool,
}

struct Slots {
    events: Arc<Semaphore>,
    probes: Arc<Semaphore>,
}

impl Slots {
    /// A free slot: an event slot if one is free; otherwise the connections doing nothing
    /// (silent, between requests, a head stalled) are told to give theirs back, and the next
    /// connection gets the first slot freed, of either kind (nginx reuses idle keep-alive
    /// connections the same way when it runs out).
    async fn next(&self, server: &Server) -> Slot {
        if let Ok(p) = self.events.clone().try_acquire_owned() {
            return Slot {
                _permit: p,
                probes_only: false,
            };
        }
        server.reclaim_idle();
        tokio::select! {
            biased;
            p = self.events.clone().acquire_owned() => Slot {
                _permit: p.expect("semaphore never closed"),
                probes_only: false,
            },
            p = self.probes.clone().acquire_owned() => Slot {
                _permit: p.expect("semaphore never closed"),
                probes_only: true,
            },
        }
    }

    /// The next connection, once a slot is free; an event slot freed meanwhile replaces a
    /// probe slot.
    async fn accept(
        &self,
        listener: &TcpListener,
        server: &Server,
    ) -> (TcpStream, SocketAddr, Slot) {
        let mut slot = self.next(server).await;
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    if slot.probes_only
                        && let Ok(p) = self.events.clone().try_acquire_owned()
                    {
                        slot = Slot {
                            _permit: p,
                            probes_only: false,
                        };
                    }
                    return (stream, peer, slot);
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}
