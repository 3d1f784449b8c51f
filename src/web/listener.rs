//! The listening socket and the accept loop: connection slots (a few kept for the probes; when
//! they run out, the connection that has made the least progress gives its slot to the next
//! one), and the graceful shutdown (readiness 503 first, accept for SHUTDOWN_DELAY_SECONDS, then
//! let in-flight events finish).

use std::{
    future::Future,
    io,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
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
    phase::{ANSWER_GRACE, ConnState},
};
use crate::app::App;

/// Open connections at once; more wait in the kernel's accept queue. A silent connection costs
/// a task and a socket (about 1 KiB), so this bounds file descriptors more than memory.
pub const MAX_CONNECTIONS: usize = 4096;
/// Connections accepted beyond MAX_CONNECTIONS while those are full: a probe or `/metrics` is
/// served there (the kubelet must not restart a pod whose event slots are full), a request that
/// arrived whole takes the slot of a connection doing nothing, anything else gets 503 +
/// `Retry-After: 1`.
pub const SPARE_CONNECTIONS: usize = 64;
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
        slots: Arc::new(Slots::new()),
        served: Arc::new(Semaphore::new(MAX_SERVED)),
        served_whole: Arc::new(Semaphore::new(MAX_SERVED_WHOLE)),
        app: app.clone(),
    });
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
            accepted = server.slots.accept(&listener) => Some(accepted),
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

/// The connection slots: MAX_CONNECTIONS for events, each listed in a table (the connection
/// holding it and how little it is doing), and SPARE_CONNECTIONS more, taken while those are
/// full.
pub(super) struct Slots {
    table: std::sync::Mutex<Table>,
    events: Arc<Semaphore>,
    spares: Arc<Semaphore>,
    /// Told when an event slot is given back: the listener may be waiting for one.
    freed: Notify,
}

struct Table {
    conns: Vec<Option<Arc<ConnState>>>,
    free: Vec<usize>,
    /// Where the last look for a connection to reclaim stopped: the next goes on from there.
    hand: usize,
}

/// How long a whole request on a spare slot may wait for an event slot: long enough for
/// connections that filled the slots all at once to pass the second after which they count as
/// stalled.
const DISPLACE_WITHIN: Duration = Duration::from_secs(2);
/// How long it waits for the slot of the connection it displaced (which only has to close its
/// socket), and, while none is doing little enough, how often it looks again.
const LOOK_AGAIN: Duration = Duration::from_millis(100);

impl Slots {
    fn new() -> Slots {
        Slots {
            table: std::sync::Mutex::new(Table {
                conns: vec![None; MAX_CONNECTIONS],
                free: (0..MAX_CONNECTIONS).rev().collect(),
                hand: 0,
            }),
            events: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            spares: Arc::new(Semaphore::new(SPARE_CONNECTIONS)),
            freed: Notify::new(),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells a connection doing nothing (answered, silent, idle, or a head or body that
    /// brought no byte for a second: [`ConnState::idleness`]) to give its place back, or else
    /// one whose head waits for hyper's buffers with its body incomplete. False if none is
    /// doing little enough. The look goes round the table like a clock's hand (as page
    /// replacement does), so that it usually ends after a few connections, not all of them.
    fn evict_one(&self) -> bool {
        let now = Instant::now();
        let mut table = self.table();
        let n = table.conns.len();
        let (mut doing_nothing, mut waiting) = (None, None);
        for k in 0..n {
            let i = (table.hand + k) % n;
            let Some(c) = &table.conns[i] else { continue };
            if c.was_evicted() {
                continue;
            }
            match c.idleness(now) {
                Some(rank) if rank <= 2 => {
                    doing_nothing = Some(i);
                    break;
                }
                Some(_) if waiting.is_none() => waiting = Some(i),
                _ => {}
            }
        }
        let Some(i) = doing_nothing.or(waiting) else {
            return false;
        };
        table.hand = (i + 1) % n;
        table.conns[i].as_ref().is_some_and(|c| c.evict())
    }

    /// A connection on a spare slot whose whole request has arrived (an ordinary event) takes
    /// the event slot of one doing nothing, or one freed meanwhile: false if none came within
    /// DISPLACE_WITHIN. Only these displace others: a new connection that brings a whole request cannot
    /// stall, while displacing for any newcomer would let stalled senders push each other out
    /// as fast as they reconnect.
    pub(super) async fn displace(self: &Arc<Self>, slot: &mut Slot) -> bool {
        let until = Instant::now() + DISPLACE_WITHIN;
        loop {
            self.evict_one();
            // Only such connections wait on `events` (the listener tries it without waiting):
            // a slot given back, or freed otherwise, comes to the first of them.
            let wait = (Instant::now() + LOOK_AGAIN).min(until);
            match tokio::time::timeout_at(wait, self.events.clone().acquire_owned()).await {
                Ok(Ok(permit)) => {
                    self.enter(slot, permit);
                    return true;
                }
                Err(_) if Instant::now() < until => {}
                _ => return false,
            }
        }
    }

    /// `slot` takes an event slot: listed in the table, no longer a spare.
    fn enter(self: &Arc<Self>, slot: &mut Slot, permit: OwnedSemaphorePermit) {
        let i = {
            let mut table = self.table();
            let i = table.free.pop().expect("a place for every event slot");
            table.conns[i] = Some(slot.state.clone());
            i
        };
        slot.place = Some((self.clone(), i));
        slot.state.set_spare(false);
        // The spare's permit goes back.
        slot.permit = Some(permit);
    }

    /// A free slot: an event slot if one is free, else a spare one; when neither is, the
    /// first freed.
    async fn next(&self) -> (OwnedSemaphorePermit, bool) {
        loop {
            if let Ok(p) = self.events.clone().try_acquire_owned() {
                return (p, false);
            }
            tokio::select! {
                p = self.spares.clone().acquire_owned() => {
                    return (p.expect("semaphore never closed"), true);
                }
                _ = self.freed.notified() => {}
            }
        }
    }

    /// The next connection, once a slot is free; an event slot freed meanwhile replaces a
    /// spare one.
    async fn accept(self: &Arc<Self>, listener: &TcpListener) -> (TcpStream, SocketAddr, Slot) {
        let (permit, spare) = self.next().await;
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let mut slot = Slot {
                        place: None,
                        state: Arc::new(ConnState::new(true)),
                        permit: Some(permit),
                    };
                    let event = match spare {
                        false => slot.permit.take(),
                        true => self.events.clone().try_acquire_owned().ok(),
                    };
                    if let Some(p) = event {
                        self.enter(&mut slot, p);
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

/// A connection's place: one of MAX_CONNECTIONS (listed in the table), or a spare one.
pub(super) struct Slot {
    place: Option<(Arc<Slots>, usize)>,
    pub(super) state: Arc<ConnState>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((slots, i)) = self.place.take() {
            {
                let mut table = slots.table();
                table.conns[i] = None;
                table.free.push(i);
            }
            drop(self.permit.take());
            slots.freed.notify_one();
        }
    }
}
