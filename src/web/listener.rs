//! The listening socket and the accept loop: connection slots, and the graceful shutdown
//! (readiness 503 first, accept for SHUTDOWN_DELAY_SECONDS, then let in-flight events finish).

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
    sync::{OwnedSemaphorePermit, Semaphore, watch},
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
        body_memory: Arc::new(BodyBudget::new(limits.body_memory_bytes)),
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
            server.draining.store(true, Ordering::SeqCst);
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
