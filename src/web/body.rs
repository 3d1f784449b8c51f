//! Reading a request body: into one buffer, within MAX_BODY_BYTES, BODY_MEMORY_BYTES and the
//! request deadline; what cannot be read is answered (413, 503, 408, 400).

use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;

use super::{
    HttpResponse, Server,
    budget::Reservation,
    render::{json_error, render},
};
use crate::app::reply::Reply;

/// A body of unknown length (chunked) reserves memory in steps, starting with this much.
const FIRST_RESERVATION: usize = 64 << 10;

/// A request body in memory, with the BODY_MEMORY_BYTES it holds.
pub(super) struct HeldBody {
    pub(super) bytes: Bytes,
    pub(super) memory: Reservation,
}

/// Reads the body into one buffer (no second copy), within MAX_BODY_BYTES, BODY_MEMORY_BYTES
/// and the request deadline; the error is the answer.
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
    // Reserve before reading a byte: over the budget, the client hears it at once.
    let mut memory = server.body_memory.reserve();
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
                memory,
            });
        }
        let len = bytes.len() + data.len();
        if len > max {
            return Err(too_large());
        }
        // Unknown length: grow the reservation by doubling, within the budget.
        if len > memory.bytes() {
            let want = len.max(memory.bytes() * 2).min(max);
            if !memory.grow(want) {
                return Err(busy());
            }
        }
        bytes.extend_from_slice(&data);
    }
    Ok(HeldBody {
        bytes: bytes.into(),
        memory,
    })
}
