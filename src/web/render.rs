//! A reply as an HTTP response: JSON, or the result CloudEvent when the event came as one; the
//! small response builders the routes share.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

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
        let mut buf = uuid::Uuid::encode_buffer();
        let id = &*reply_id().encode_lower(&mut buf);
        if let Some(resp) = direct_cloudevent_response(&reply, id) {
            return resp;
        }
        return match cloudevent_response(&reply, id.to_string()) {
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

/// A result CloudEvent's id: a version-4 UUID whose random bits are SipHash, keyed once from the
/// OS, of a counter. Unique and unguessable as `Uuid::new_v4` is, without its `getrandom` system
/// call on every reply (a few percent of a skip's time).
fn reply_id() -> uuid::fmt::Hyphenated {
    static KEY: OnceLock<RandomState> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let key = KEY.get_or_init(RandomState::new);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let half = |which: u64| {
        let mut h = key.build_hasher();
        h.write_u64(n);
        h.write_u64(which);
        h.finish().to_le_bytes()
    };
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&half(0));
    bytes[8..].copy_from_slice(&half(1));
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
}

/// The result CloudEvent of a reply that names no pod (every skip), written directly: byte for
/// byte what [`cloudevent_response`] has the SDK write (the same headers in the same order, the
/// same body; tested against it), without building an event, a request and a JSON tree.
/// `None` for any other reply.
fn direct_cloudevent_response(reply: &Reply, id: &str) -> Option<HttpResponse> {
    static SPECVERSION: header::HeaderName = header::HeaderName::from_static("ce-specversion");
    static ID: header::HeaderName = header::HeaderName::from_static("ce-id");
    static TYPE: header::HeaderName = header::HeaderName::from_static("ce-type");
    static SOURCE: header::HeaderName = header::HeaderName::from_static("ce-source");
    let ReplyBody::Handled(h) = &reply.body else {
        return None;
    };
    let body = h.to_value_json()?;
    let mut resp = Response::new(Full::from(body));
    *resp.status_mut() = reply.status;
    let headers = resp.headers_mut();
    headers.append(&SPECVERSION, HeaderValue::from_static("1.0"));
    headers.append(&ID, HeaderValue::from_str(id).ok()?);
    headers.append(&TYPE, HeaderValue::from_static(RESULT_CE_TYPE));
    headers.append(&SOURCE, HeaderValue::from_static(RESULT_CE_SOURCE));
    headers.append(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Some(resp)
}

fn cloudevent_response(
    reply: &Reply,
    id: String,
) -> Result<HttpResponse, cloudevents::message::Error> {
    let subject = match &reply.body {
        ReplyBody::Handled(h) => h
            .pod
            .as_ref()
            .map(|p| format!("{}/{}", p.namespace, p.name)),
        _ => None,
    };
    let mut builder = EventBuilderV10::new()
        .id(id)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        app::reply::{Handled, Named},
        domain::{falco::Priority, outcome::OutcomeKind},
        ingest::decode::{CloudEventInfo, InputKind},
    };
    use http_body_util::BodyExt;
    use proptest::prelude::*;

    async fn parts(resp: HttpResponse) -> (StatusCode, Vec<(String, String)>, Vec<u8>) {
        let status = resp.status();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        (status, headers, body)
    }

    fn reply(h: Handled) -> Reply {
        Reply {
            status: StatusCode::OK,
            body: ReplyBody::Handled(h),
            cloudevent: Some(CloudEventInfo {
                id: "1".into(),
                source: "s".into(),
                ty: crate::ingest::decode::FALCO_CE_TYPE.into(),
            }),
        }
    }

    fn same_as_the_sdk(r: &Reply) -> Result<(), TestCaseError> {
        let id = uuid::Uuid::new_v4().to_string();
        let direct = direct_cloudevent_response(r, &id).expect("written directly");
        let sdk = cloudevent_response(r, id).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (direct, sdk) = rt.block_on(async { (parts(direct).await, parts(sdk).await) });
        prop_assert_eq!(direct, sdk);
        Ok(())
    }

    proptest! {
        #[test]
        fn a_skip_s_result_cloudevent_is_what_the_sdk_writes(
            reason in any::<String>(),
            rule in any::<String>(),
            retry in prop::option::of(any::<bool>()),
            kind in 0usize..6,
        ) {
            let input = [
                InputKind::Plain,
                InputKind::CloudEventBinary,
                InputKind::CloudEventStructured,
                InputKind::ArgoPayload,
                InputKind::ArgoEvent,
                InputKind::ArgoWebhook,
            ][kind];
            same_as_the_sdk(&reply(Handled {
                outcome: OutcomeKind::Skipped,
                reason,
                pod: None,
                rule,
                priority: Priority::Notice,
                input,
                retry,
                steps: None,
            }))?;
        }
    }

    #[test]
    fn reply_ids_are_distinct_version_4_uuids() {
        let ids: std::collections::HashSet<_> =
            (0..10_000).map(|_| reply_id().into_uuid()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(100) {
            assert_eq!(id.get_version(), Some(uuid::Version::Random));
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        }
        // Not a counter: ids drawn one after the other share no long prefix.
        let (a, b) = (reply_id().into_uuid(), reply_id().into_uuid());
        assert_ne!(a.as_bytes()[..4], b.as_bytes()[..4]);
    }

    #[test]
    fn a_reply_naming_a_pod_goes_through_the_sdk() {
        let r = reply(Handled {
            outcome: OutcomeKind::Deleted,
            reason: "deleted".into(),
            pod: Some(Named {
                namespace: "ns".into(),
                name: "p".into(),
            }),
            rule: "r".into(),
            priority: Priority::Critical,
            input: InputKind::CloudEventBinary,
            retry: None,
            steps: None,
        });
        assert!(direct_cloudevent_response(&r, "x").is_none());
        let resp = render(r);
        assert_eq!(resp.headers()["ce-subject"], "ns/p");
    }
}
