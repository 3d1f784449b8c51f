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
//! - slots: MAX_CONNECTIONS, MAX_SERVED of them with hyper's buffers (the rest wait with their
//!   head in the kernel); when they are full, SPARE_CONNECTIONS more serve the probes, and a
//!   request that arrived whole there takes the slot of a connection doing nothing (answered,
//!   silent, idle, stalled);
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

use std::sync::atomic::AtomicBool;

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
    /// The connection slots, and who holds the event slots.
    slots: std::sync::Arc<listener::Slots>,
    /// Connections served by hyper (their buffers allocated) at once, but the probes' requests.
    served: std::sync::Arc<tokio::sync::Semaphore>,
    /// Beyond `served`, for requests whose whole body arrived with their head.
    served_whole: std::sync::Arc<tokio::sync::Semaphore>,
}
