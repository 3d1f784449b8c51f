//! A reply as an HTTP response: JSON, or the result CloudEvent when the event came as one; the
//! small response builders the routes share.

use bytes::Bytes;
use cloudevents::{EventBuilder, EventBuilderV10};
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use super::HttpResponse;
use crate::app::reply::{Reply, ReplyBody};

pub use crate::ingest::decode::RESULT_CE_TYPE;
pub const RESULT_CE_SOURCE: &str = "falco-responder";

/// HTTP form of a reply: a CloudEvent for CloudEvent requests (a Knative broker rejects a 2xx
/// with any other non-empty body), JSON otherwise.
pub fn render(reply: Reply) -> HttpResponse {
    if matches!(reply.body, ReplyBody::Empty) {
        let mut resp = Response::new(Full::default());
        *resp.status_mut() = reply.status;
        return resp;
    }
    if reply.cloudevent.is_some() && reply.status.is_success() {
        return match cloudevent_response(&reply) {
            Ok(resp) => resp,
            Err(e) => {
                // An empty 2xx is the other valid answer to a CloudEvent.
                tracing::warn!(error = %e, "could not build the reply CloudEvent; answering empty");
                let mut resp = Response::new(Full::default());
                *resp.status_mut() = StatusCode::NO_CONTENT;
                resp
            }
        };
    }
    let body = match &reply.body {
        ReplyBody::Handled(h) => h.to_json(),
        body => serde_json::to_vec(body).unwrap_or_default(),
    };
    let mut resp = text(reply.status, "application/json", body);
    if reply.status == StatusCode::SERVICE_UNAVAILABLE {
        // Held by a guard: replicas take tens of seconds to recover; anything else: soon.
        let after = if reply.outcome() == Some("held") {
            HeaderValue::from(crate::cluster::facts::HELD_RETRY_AFTER_SECONDS)
        } else {
            HeaderValue::from_static("1")
        };
        resp.headers_mut().insert(header::RETRY_AFTER, after);
    }
    resp
}

fn cloudevent_response(reply: &Reply) -> Result<HttpResponse, cloudevents::message::Error> {
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
    let mut resp = Response::new(Full::from(body.unwrap_or_default()));
    *resp.status_mut() = reply.status;
    *resp.headers_mut() = parts.headers;
    Ok(resp)
}

pub(super) fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> HttpResponse {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

pub(super) fn plain(status: StatusCode, body: &'static str) -> HttpResponse {
    text(status, "text/plain; charset=utf-8", body)
}

pub(super) fn json_error(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    render(Reply::error(status, message))
}

pub(super) trait WithAllow {
    fn with_allow(self, allow: &'static str) -> Self;
    /// Answered before the body was read: the connection cannot be reused.
    fn closing(self) -> Self;
}

impl WithAllow for HttpResponse {
    fn with_allow(mut self, allow: &'static str) -> Self {
        self.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        self
    }

    fn closing(mut self) -> Self {
        self.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        self
    }
}
