//! The HTTP side: hyper 1 connections, routes, auth, limits, shutdown. The top layer: it reads
//! requests, hands each event's body to [`App`] and writes its reply.
//!
//! [`run`] takes a bound listener (main binds it with [`bind`]; tests bind 127.0.0.1:0) and a
//! shutdown future. What a hostile or broken client can take is bounded (README, "Limits"):
//! - time: REQUEST_TIMEOUT_SECONDS from the first byte of a request to its whole body (408), a
//!   body's first byte within 2 s and 64 KiB/s after it, IDLE_TIMEOUT_SECONDS between requests,
//!   REQUEST_TIMEOUT_SECONDS for a reply the client does not read; a connection holds no hyper
//!   buffers until its first request head is complete;
//! - memory: at most BODY_MEMORY_BYTES of request bodies at once, each holding what arrived of
//!   it (a large one its declared length, refused with 503 + Retry-After before it is read);
//!   slow and large bodies leave a quarter to ordinary events;
//! - slots: MAX_CONNECTIONS, a few more for the probes only, MAX_SERVED of them with hyper's
//!   buffers (the rest wait with their head in the kernel), and the connections doing nothing
//!   reclaimed when either runs out;
//! - an answer given before the whole body was read (413, 401, 503, 408, ...) is followed by a
//!   lingering close (nginx's model): half-close, read and discard for a bounded time and byte
//!   count, so that the client reads the answer instead of a connection reset.
//!
//! One file a concern, in the order a request meets them:
//! - `listener`: bind, the accept loop, connection slots, graceful shutdown;
//! - `conn`: one connection: its timers, the socket wrapper, the lingering close;
//! - `phase`: where a connection is and since when (what its timers read);
//! - `routes`: paths, methods, the bearer token; the event's body to the app;
//! - `body`: reading a request body within MAX_BODY_BYTES, the memory budget and the deadline;
//! - `budget`: BODY_MEMORY_BYTES and what each body holds of it;
//! - `render`: a reply as an HTTP response (JSON, or the result CloudEvent).

mod body;
mod budget;
mod conn;
mod listener;
mod phase;
mod render;
mod routes;

use std::sync::atomic::{AtomicBool, AtomicU64};

use bytes::Bytes;
use http::Response;
use http_body_util::Full;

use crate::app::App;

pub use conn::{LINGER_BYTES, LINGER_TIME};
pub use listener::{MAX_CONNECTIONS, bind, run};
pub use render::{RESULT_CE_SOURCE, RESULT_CE_TYPE, render};

/// Every answer is one buffer, written whole.
pub type HttpResponse = Response<Full<Bytes>>;

/// The server's state, shared by every connection.
struct Server {
    app: App,
    /// Set on SIGTERM: readiness answers 503 and answers close their connection.
    draining: AtomicBool,
    body_memory: budget::BodyBudget,
    /// Told when the connection slots are full: connections doing nothing close.
    reclaim: tokio::sync::Notify,
    /// How many reclaims were announced: a connection polls `reclaim` again only after one.
    reclaims: AtomicU64,
    /// When the last reclaim was announced.
    last_reclaim: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// Connections served by hyper (their buffers allocated) at once, but the probes' requests.
    served: std::sync::Arc<tokio::sync::Semaphore>,
    /// Beyond `served`, for requests whose whole body arrived with their head.
    served_whole: std::sync::Arc<tokio::sync::Semaphore>,
}

/// At most one reclaim this often: each wakes every connection that waits for a request.
const RECLAIM_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

impl Server {
    /// Tells the connections doing nothing (silent, between requests, stalled) to close: slots
    /// or served connections ran out. At most once per RECLAIM_EVERY.
    fn reclaim_idle(&self) {
        let mut last = self.last_reclaim.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| t.elapsed() < RECLAIM_EVERY) {
            return;
        }
        *last = Some(tokio::time::Instant::now());
        drop(last);
        self.reclaims
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.reclaim.notify_waiters();
        tracing::debug!("connections short: reclaiming those doing nothing");
    }
}
