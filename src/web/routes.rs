//! Where a request goes: the health and metrics paths, `POST /` for events behind the optional
//! bearer token; an event's body is read within its limits and handed to the app. A connection
//! on a slot kept for the probes is answered 503 for anything else.

use std::sync::atomic::Ordering;

use http::{HeaderValue, Method, Request, StatusCode, header};
use hyper::body::Incoming;
use subtle::ConstantTimeEq;

use super::{
    HttpResponse, Server,
    body::{read_body, retry_later},
    phase::{ConnState, Phase},
    render::{WithAllow, json_error, plain, render, text},
};

/// Health paths: ours, Knative func's and OpenFaaS's (the image runs without a watchdog).
const LIVENESS: &[&str] = &["/healthz", "/health/liveness", "/_/health"];
const READINESS: &[&str] = &["/readyz", "/health/readiness", "/_/ready"];

/// The probes' and the metrics' paths: served before the event limits.
pub(super) fn is_probe(path: &str) -> bool {
    LIVENESS.contains(&path) || READINESS.contains(&path) || path == "/metrics"
}

pub(super) async fn route(
    server: &Server,
    req: Request<Incoming>,
    state: &ConnState,
) -> HttpResponse {
    let app = &server.app;
    let path = req.uri().path();
    let method = req.method().clone();
    let is_get = method == Method::GET || method == Method::HEAD;
    if is_probe(path) {
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
        if server.draining.load(Ordering::Relaxed) && READINESS.contains(&path) {
            return plain(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
        }
        if READINESS.contains(&path)
            && let Some(why) = app.unready()
        {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                format!("{why}\n"),
            );
        }
        return plain(StatusCode::OK, "ok\n");
    }
    if state.probes_only() {
        app.metrics.reject("connections");
        tracing::warn!("refused a request: all MAX_CONNECTIONS connection slots are busy");
        return retry_later(
            "all connection slots (MAX_CONNECTIONS) are busy and this one serves the probes only: retry later",
        )
        .closing();
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
        app.metrics.reject("unauthorized");
        let mut resp = json_error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong Authorization: Bearer token",
        );
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return resp.closing();
    }
    let (parts, body) = req.into_parts();
    let deadline = state.request_deadline(&app.config.limits);
    let body = match read_body(server, &parts.headers, body, deadline).await {
        Ok(b) => b,
        Err(resp) => return resp.closing(),
    };
    // The request is in: from here on API_TIMEOUT_SECONDS bounds the work, not our deadline.
    state.set(Phase::Answering, false);
    // The budget's reservation goes with the event: the app grows it by the decoded event and
    // keeps it until the event is dropped.
    let reply = app
        .handle_within(&parts.headers, &body.bytes, body.memory)
        .await;
    drop(body.bytes);
    render(reply)
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
