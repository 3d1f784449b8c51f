//! Reading a request body: into one buffer, within MAX_BODY_BYTES, BODY_MEMORY_BYTES, the
//! request deadline and a minimum rate; what cannot be read is answered (413, 503, 408, 400).
//! A body larger than SMALL_BODY goes into its own anonymous mapping, not the heap: its pages
//! exist as it arrives and go back to the kernel the moment it is dropped, where the allocator
//! keeps freed megabytes for a while (a burst of large bodies would pile them up).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;

use super::{
    HttpResponse, Server,
    budget::{PROMPT, Reservation, SMALL_BODY},
    render::{json_error, render},
};
use crate::app::reply::Reply;

/// A body's first byte is due this soon after its head, and the rest at BODY_MIN_RATE or
/// faster (Apache's mod_reqtimeout model): a sender that trickles is cut off long before
/// REQUEST_TIMEOUT_SECONDS, so it holds its slot and its bytes briefly.
pub const BODY_FIRST_BYTE: Duration = Duration::from_secs(2);
/// Bytes a second, on average since the head; a Falco event arrives at network speed.
pub const BODY_MIN_RATE: u64 = 64 << 10;

/// A large body's buffer: a mapping of its declared length (or MAX_BODY_BYTES), of which `len`
/// bytes arrived; only the pages written are memory.
struct Mapped {
    map: memmap2::MmapMut,
    len: usize,
}

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        &self.map[..self.len]
    }
}

impl Mapped {
    fn new(capacity: usize) -> Option<Mapped> {
        let map = memmap2::MmapOptions::new().len(capacity).map_anon().ok()?;
        Some(Mapped { map, len: 0 })
    }

    /// Appends `data`, which fits: the caller keeps the body within the mapping's length.
    fn push(&mut self, data: &[u8]) {
        self.map[self.len..self.len + data.len()].copy_from_slice(data);
        self.len += data.len();
    }
}

/// A request body in memory, with the BODY_MEMORY_BYTES it holds.
pub(super) struct HeldBody {
    pub(super) bytes: Bytes,
    pub(super) memory: Reservation,
}

/// 503 with `retry: true` and Retry-After: the server is busy, the same request may succeed
/// in a moment.
pub(super) fn retry_later(why: &'static str) -> HttpResponse {
    render(Reply::busy(why))
}

/// Reads the body into one buffer (no second copy), within MAX_BODY_BYTES, BODY_MEMORY_BYTES,
/// the request deadline and the minimum rate; the error is the answer. A body holds the budget
/// for what has arrived of it, except one declared larger than SMALL_BODY, which reserves its
/// declared length before a byte is read: over the budget, the client hears it at once.
pub(super) async fn read_body(
    server: &Server,
    headers: &HeaderMap,
    mut body: Incoming,
    deadline: Instant,
) -> Result<HeldBody, HttpResponse> {
    let app = &server.app;
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
        render(Reply::memory_busy())
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let declared = declared.map(|n| n as usize);
    let mut memory = server.body_memory.reserve();
    if let Some(n) = declared
        && n > SMALL_BODY
        && !memory.grow(n)
    {
        return Err(busy());
    }
    let started = Instant::now();
    let mut ordinary = declared.is_none_or(|n| n <= SMALL_BODY);
    let mut bytes = Vec::new();
    // Declared large: mapped at once (its length is reserved already); a body of unknown
    // length is mapped once it passes SMALL_BODY.
    let mut mapped = match declared {
        Some(n) if n > SMALL_BODY => Some(Mapped::new(n).ok_or_else(busy)?),
        _ => None,
    };
    loop {
        // Incomplete after PROMPT: a slow body, which must not hold the ordinary events' share.
        if ordinary && started.elapsed() >= PROMPT {
            if !memory.restrict() {
                return Err(busy());
            }
            ordinary = false;
        }
        let arrived = bytes.len() + mapped.as_ref().map_or(0, |m| m.len);
        let rate = Duration::from_millis(arrived as u64 * 1000 / BODY_MIN_RATE);
        let slow_at = started + BODY_FIRST_BYTE + rate;
        let until = deadline.min(slow_at);
        // Usually the body is in hyper's buffer already: no timer for that.
        let ready = futures_util::FutureExt::now_or_never(body.frame());
        let frame = match ready {
            Some(frame) => Ok(frame),
            None if ordinary => {
                tokio::time::timeout_at(until.min(started + PROMPT), body.frame()).await
            }
            None => tokio::time::timeout_at(until, body.frame()).await,
        };
        let frame = match frame {
            // PROMPT passed: restricted above.
            Err(_) if Instant::now() < until => continue,
            Err(_) => {
                app.metrics.reject("timeout");
                return Err(json_error(
                    StatusCode::REQUEST_TIMEOUT,
                    if until == deadline {
                        "the body was not complete within REQUEST_TIMEOUT_SECONDS"
                    } else {
                        "the body came too slowly: its first byte is due within 2 s of the head, \
                         the rest at 64 KiB/s or faster (and all of it within \
                         REQUEST_TIMEOUT_SECONDS)"
                    },
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
        let len = bytes.len() + mapped.as_ref().map_or(0, |m| m.len) + data.len();
        if len > max {
            return Err(too_large());
        }
        if mapped.is_none() && len > SMALL_BODY {
            // Of unknown length: room for the largest body, memory as it arrives.
            let mut m = Mapped::new(max).ok_or_else(busy)?;
            m.push(&bytes);
            bytes = Vec::new();
            mapped = Some(m);
        }
        if let Some(m) = &mut mapped {
            if len > memory.bytes() && !memory.grow(len) {
                return Err(busy());
            }
            m.push(&data);
            continue;
        }
        // The usual case, a body in one frame: kept as hyper read it, not copied.
        if bytes.is_empty() && Some(data.len()) == declared {
            if !memory.grow(len) {
                return Err(busy());
            }
            return Ok(HeldBody {
                bytes: data,
                memory,
            });
        }
        // The buffer grows with what arrived (doubling, up to the declared length), and the
        // reservation with the buffer: a slow client holds about what it sent.
        if len > bytes.capacity() {
            let cap = len
                .max(2 * bytes.capacity())
                .min(declared.unwrap_or(max).max(len));
            if cap > memory.bytes() && !memory.grow(cap) {
                return Err(busy());
            }
            bytes.reserve_exact(cap - bytes.len());
        }
        bytes.extend_from_slice(&data);
    }
    let bytes = match mapped {
        Some(m) => Bytes::from_owner(m),
        None => bytes.into(),
    };
    Ok(HeldBody { bytes, memory })
}
