//! The sender's side: the real Falco fixtures, every envelope a sender puts them in, and a raw
//! HTTP client. The CloudEvents are built and encoded by cloudevents-sdk, as a real sender would.
//! The examples and benches include this file by path (as `common`): it needs nothing else here.
#![allow(dead_code)]

use base64::Engine;
use cloudevents::{EventBuilder, EventBuilderV10};
use http::{HeaderMap, HeaderValue, header::CONTENT_TYPE};
use serde_json::{Value, json};

/// A request as a fuzz input (`fuzz/checks.rs`, `split` reads it back): a `name: value` line per
/// header, an empty line, the body.
pub fn fuzz_input(headers: &HeaderMap, body: &[u8]) -> Vec<u8> {
    let mut data = Vec::new();
    for (k, v) in headers {
        data.extend_from_slice(k.as_str().as_bytes());
        data.extend_from_slice(b": ");
        data.extend_from_slice(v.as_bytes());
        data.push(b'\n');
    }
    data.push(b'\n');
    data.extend_from_slice(body);
    data
}

pub fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The Terminal-shell fixtures (every Falco generation we have), by file name.
pub const TERMINAL_SHELL: &[&str] = &[
    "falco-docs-terminal-shell-k8s-critical.json",
    "falco-0.28-stdout-terminal-shell-k8s.json",
    "falco-0.27-terminal-shell-k8s-null-fields.json",
    "falcosidekick-cloudevent-knative-terminal-shell.data.json",
];

/// Every way a sender delivers one Falco event to `POST /`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    /// Falco http_output / Falcosidekick webhook: the JSON, `application/json; charset=utf-8`.
    Plain,
    /// Argo HTTP trigger with an empty dest: the JSON and no Content-Type at all.
    PlainNoContentType,
    /// Falcosidekick cloudevents output / Knative Broker delivery.
    CloudEventBinary,
    /// Knative Trigger with `delivery.format: json`.
    CloudEventStructured,
    /// Structured mode with the event in `data_base64`.
    CloudEventStructuredBase64,
    /// Argo HTTP trigger `dataKey: body`, `useRawData: true`, `dest: event`.
    ArgoRaw,
    /// The same without useRawData: the event as an escaped JSON string.
    ArgoString,
    /// Argo webhook event data `{"header", "body"}`.
    ArgoWebhook,
    /// The whole Argo event (v0.14+ context keys), as an argoWorkflow trigger passes it.
    ArgoEvent,
    /// The whole Argo event with the pre-v0.14 camelCase context keys.
    ArgoEventLegacy,
}

pub const ENVELOPES: &[Envelope] = &[
    Envelope::Plain,
    Envelope::PlainNoContentType,
    Envelope::CloudEventBinary,
    Envelope::CloudEventStructured,
    Envelope::CloudEventStructuredBase64,
    Envelope::ArgoRaw,
    Envelope::ArgoString,
    Envelope::ArgoWebhook,
    Envelope::ArgoEvent,
    Envelope::ArgoEventLegacy,
];

impl Envelope {
    /// The input kind falco-responder reports for this envelope.
    pub fn input_kind(self) -> &'static str {
        match self {
            Envelope::Plain | Envelope::PlainNoContentType => "plain",
            Envelope::CloudEventBinary => "cloudevent-binary",
            Envelope::CloudEventStructured | Envelope::CloudEventStructuredBase64 => {
                "cloudevent-structured"
            }
            Envelope::ArgoRaw | Envelope::ArgoString => "argo-payload",
            Envelope::ArgoWebhook => "argo-webhook",
            Envelope::ArgoEvent | Envelope::ArgoEventLegacy => "argo-event",
        }
    }

    pub fn is_cloudevent(self) -> bool {
        self.input_kind().starts_with("cloudevent")
    }
}

fn falco_cloudevent(falco: &Value) -> cloudevents::Event {
    EventBuilderV10::new()
        .id(uuid::Uuid::new_v4().to_string())
        .source("https://falco.org")
        .ty("falco.rule.output.v1")
        .extension("priority", falco["priority"].as_str().unwrap_or("Notice"))
        .extension("rule", falco["rule"].as_str().unwrap_or(""))
        .extension("eventsource", "syscall")
        .data("application/json", falco.clone())
        .build()
        .expect("valid CloudEvent")
}

fn webhook_data(falco: &Value) -> Value {
    json!({
        "header": {
            "Content-Type": ["application/json; charset=utf-8"],
            "User-Agent": ["Falcosidekick"],
        },
        "body": falco,
    })
}

/// Headers and body for `falco_json` in `envelope`.
pub fn wrap(envelope: Envelope, falco_json: &str) -> (HeaderMap, Vec<u8>) {
    let falco: Value = serde_json::from_str(falco_json).expect("fixture is JSON");
    let mut headers = HeaderMap::new();
    let json_ct = |h: &mut HeaderMap, ct: &'static str| {
        h.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    };
    let body: Vec<u8> = match envelope {
        Envelope::Plain => {
            json_ct(&mut headers, "application/json; charset=utf-8");
            falco_json.as_bytes().to_vec()
        }
        Envelope::PlainNoContentType => falco_json.as_bytes().to_vec(),
        Envelope::CloudEventBinary => {
            let req: http::Request<Option<Vec<u8>>> =
                http::Request::try_from(falco_cloudevent(&falco)).expect("binary encoding");
            let (parts, body) = req.into_parts();
            headers = parts.headers;
            body.unwrap_or_default()
        }
        Envelope::CloudEventStructured => {
            json_ct(&mut headers, "application/cloudevents+json; charset=utf-8");
            serde_json::to_vec(&falco_cloudevent(&falco)).unwrap()
        }
        Envelope::CloudEventStructuredBase64 => {
            json_ct(&mut headers, "application/cloudevents+json");
            let ce = EventBuilderV10::new()
                .id("b64")
                .source("https://falco.org")
                .ty("falco.rule.output.v1")
                .data("application/json", falco_json.as_bytes().to_vec())
                .build()
                .unwrap();
            let encoded = serde_json::to_value(&ce).unwrap();
            assert!(
                encoded.get("data_base64").is_some(),
                "SDK writes binary data as data_base64"
            );
            serde_json::to_vec(&encoded).unwrap()
        }
        Envelope::ArgoRaw => serde_json::to_vec(&json!({ "event": falco })).unwrap(),
        Envelope::ArgoString => serde_json::to_vec(&json!({ "event": falco_json })).unwrap(),
        Envelope::ArgoWebhook => serde_json::to_vec(&webhook_data(&falco)).unwrap(),
        Envelope::ArgoEvent | Envelope::ArgoEventLegacy => {
            argo_whole_event(&falco, envelope == Envelope::ArgoEventLegacy)
                .to_string()
                .into_bytes()
        }
    };
    (headers, body)
}

/// `{"context": ..., "data": "<base64 of {header, body}>"}` as Argo Events marshals its Event.
pub fn argo_whole_event(falco: &Value, legacy_keys: bool) -> Value {
    let data = base64::engine::general_purpose::STANDARD.encode(webhook_data(falco).to_string());
    let context = if legacy_keys {
        json!({"type": "webhook", "specVersion": "0.3", "source": "webhook",
               "eventID": "38376665363064642d", "time": "2020-01-11T16:55:42.996636Z",
               "dataContentType": "application/json", "subject": "example"})
    } else {
        json!({"id": "6230346366653830", "source": "webhook", "specversion": "1.0", "type": "webhook",
               "datacontenttype": "application/json", "subject": "falco", "time": "2026-11-30T10:00:00Z"})
    };
    json!({ "context": context, "data": data })
}

/// A Terminal-shell event for `ns/pod` in container `container_id`, shaped like Falco 0.41+ output
/// as Falcosidekick forwards it (based on the documented example fixture).
pub fn terminal_shell(ns: &str, pod: &str, container_id: &str) -> String {
    let mut v: Value =
        serde_json::from_str(&fixture("falco-docs-terminal-shell-k8s-critical.json")).unwrap();
    v["uuid"] = json!(uuid::Uuid::new_v4().to_string());
    let f = &mut v["output_fields"];
    f["k8s.ns.name"] = json!(ns);
    f["k8s.pod.name"] = json!(pod);
    f["container.id"] = json!(&container_id[..container_id.len().min(12)]);
    v.to_string()
}

/// A raw HTTP/1.1 exchange over a real socket (`Connection: close`): what a sender sees.
pub struct HttpReply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl HttpReply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The text of `key` (`error`, `reason`) in a reply's JSON: what the sender is told.
pub fn said<'a>(json: &'a Value, key: &str) -> &'a str {
    json[key]
        .as_str()
        .unwrap_or_else(|| panic!("no text at {key:?} in {json}"))
}

pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> HttpReply {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap()));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> HttpReply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut headers = HeaderMap::new();
    for line in lines {
        let (k, v) = line.split_once(':').unwrap();
        headers.append(
            http::HeaderName::try_from(k.trim()).unwrap(),
            HeaderValue::from_str(v.trim()).unwrap(),
        );
    }
    HttpReply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}
