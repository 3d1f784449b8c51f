//! The HTTP side: hyper 1 accept loop, routes, auth, body limit, graceful shutdown.
//!
//! `run` takes a bound listener (main binds it; tests bind 127.0.0.1:0) and a shutdown future.

use std::{convert::Infallible, future::Future, sync::Arc, time::Duration};

use bytes::Bytes;
use cloudevents::{EventBuilder, EventBuilderV10};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use subtle::ConstantTimeEq;
use tokio::{
    net::TcpListener,
    sync::{Semaphore, watch},
};

use crate::app::{App, Body as ReplyBody, Reply};

pub use crate::decode::RESULT_CE_TYPE;
pub const RESULT_CE_SOURCE: &str = "falco-responder";

/// Health paths: ours, Knative func's and OpenFaaS's (the image runs without a watchdog).
const LIVENESS: &[&str] = &["/healthz", "/health/liveness", "/_/health"];
const READINESS: &[&str] = &["/readyz", "/health/readiness", "/_/ready"];

/// Open connections at once; more wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 4096;
/// Falcosidekick and Knative send one small request; a client that never finishes its headers
/// must not hold a connection forever.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Nor one that announces a body and never sends it (hyper has no body timeout of its own).
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

type Body = Full<Bytes>;

pub async fn run(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (draining_tx, draining) = watch::channel(false);
    tokio::pin!(shutdown);
    tracing::info!(addr = %listener.local_addr()?, "listening");
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("semaphore never closed"),
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let draining = draining.clone();
        let service = service_fn(move |req| {
            let app = app.clone();
            let draining = *draining.borrow();
            async move { Ok::<_, Infallible>(route(&app, req, draining).await) }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            // A sender that closes right after its request (a fire-and-forget webhook, a
            // timed-out client) must not cancel the event: hyper would otherwise drop the
            // request at EOF, before it is read and decided.
            .half_close(true)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    // Stop accepting, report not-ready, let in-flight events finish (Knative scales to zero so).
    drop(listener);
    let _ = draining_tx.send(true);
    let drain_for = app.config.api_timeout + Duration::from_secs(5);
    tracing::info!(
        seconds = drain_for.as_secs(),
        "shutting down: finishing in-flight events"
    );
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(drain_for) => tracing::warn!("gave up waiting for connections to close"),
    }
    app.drain().await;
    Ok(())
}

async fn route(app: &App, req: Request<Incoming>, draining: bool) -> Response<Body> {
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
        if draining && READINESS.contains(&path) {
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
        let mut resp = json_error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong Authorization: Bearer token",
        );
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return resp;
    }
    let max = app.config.max_body_bytes;
    let too_large = || {
        json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "body larger than MAX_BODY_BYTES ({max} bytes): one Falco event is far smaller"
            ),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return too_large();
    }
    let (parts, body) = req.into_parts();
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, max).collect()).await;
    let Ok(read) = read else {
        tracing::warn!("rejected a request whose body did not arrive in time");
        return json_error(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the body did not arrive within {}s",
                BODY_READ_TIMEOUT.as_secs()
            ),
        );
    };
    let bytes = match read {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return too_large(),
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                format!("could not read the body: {e}"),
            );
        }
    };
    render(app.handle(&parts.headers, &bytes).await)
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
    let body = serde_json::to_vec(&reply.body).unwrap_or_default();
    let mut resp = text(reply.status, "application/json", body);
    if reply.status == StatusCode::SERVICE_UNAVAILABLE {
        // Held by a guard: replicas take tens of seconds to recover; anything else: soon.
        let after = if reply.outcome() == Some("held") {
            HeaderValue::from(crate::availability::HELD_RETRY_AFTER_SECONDS)
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
}

impl WithAllow for Response<Body> {
    fn with_allow(mut self, allow: &'static str) -> Self {
        self.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
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
