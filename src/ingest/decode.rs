//! HTTP request (headers + body) → Falco event, for every envelope a sender uses. Pure.
//!
//! - plain Falco JSON (Falco http_output, Falcosidekick webhook/openfaas), any or no Content-Type;
//! - CloudEvents binary and structured mode (Falcosidekick cloudevents, Knative Broker/Trigger);
//! - Argo Events HTTP trigger bodies: the Falco object, `{"<dest>": {falco}}`,
//!   `{"<dest>": "<falco JSON string>"}`, the whole Argo event `{"context", "data": base64}`
//!   (v0.14+ and older context keys) and the decoded webhook data `{"header", "body"}`.

use std::{borrow::Cow, fmt};

use base64::Engine;
use cloudevents::{AttributesReader, Data};
use http::{HeaderMap, header::CONTENT_TYPE};
use serde::Serialize;
use serde_json::Value;

use crate::domain::falco::{FalcoEvent, Priority};

/// The CloudEvent type Falcosidekick gives Falco events.
pub const FALCO_CE_TYPE: &str = "falco.rule.output.v1";
/// The CloudEvent type of our replies. Deliberately not `falco.rule.output.v1`: a Trigger
/// filtered on Falco's type must never deliver our own answer back to us; and if one does
/// anyway (a Trigger without a filter), it is recognised here and never decided on.
pub const RESULT_CE_TYPE: &str = "org.falco-responder.result.v1";

/// How the event reached us; a metrics label and part of every log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InputKind {
    /// Falco JSON as the whole body.
    Plain,
    CloudEventBinary,
    CloudEventStructured,
    /// Argo HTTP trigger payload: `{"<dest>": falco}` or `{"<dest>": "<falco json>"}`.
    ArgoPayload,
    /// The whole Argo event `{"context": .., "data": base64}` (argoWorkflow trigger, no dataKey).
    ArgoEvent,
    /// Argo's webhook event data `{"header": .., "body": falco}`.
    ArgoWebhook,
}

impl InputKind {
    pub fn as_str(self) -> &'static str {
        match self {
            InputKind::Plain => "plain",
            InputKind::CloudEventBinary => "cloudevent-binary",
            InputKind::CloudEventStructured => "cloudevent-structured",
            InputKind::ArgoPayload => "argo-payload",
            InputKind::ArgoEvent => "argo-event",
            InputKind::ArgoWebhook => "argo-webhook",
        }
    }

    pub fn is_cloudevent(self) -> bool {
        matches!(
            self,
            InputKind::CloudEventBinary | InputKind::CloudEventStructured
        )
    }
}

impl Serialize for InputKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for InputKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The CloudEvent attributes we echo back in the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudEventInfo {
    pub id: String,
    pub source: String,
    pub ty: String,
}

#[derive(Debug, Clone)]
pub struct Decoded {
    pub event: FalcoEvent,
    pub kind: InputKind,
    pub cloudevent: Option<CloudEventInfo>,
}

/// Why a body is not a Falco event. Every variant is the sender's fault (4xx).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("empty body: expected one Falco event")]
    Empty,
    #[error("CloudEvents batch mode is not supported: send one event per request")]
    Batch,
    #[error("invalid CloudEvent: {0}")]
    CloudEvent(String),
    #[error("CloudEvent of type {0:?} has no data: expected the Falco event as data")]
    NoData(String),
    #[error("body is not JSON: {0}")]
    Json(String),
    #[error("not a Falco event: {0}")]
    NotFalco(String),
    /// A key given twice in one JSON object: readers disagree on which value counts (serde_json
    /// takes the last, Argo's filters the first), so none is taken.
    #[error("ambiguous body: the key {0:?} appears twice in one JSON object; send each key once")]
    DuplicateKey(String),
    /// Not an error of the sender: our own result came back (a Broker/Trigger loop). Answered
    /// with an empty 2xx so that nothing is redelivered, and never decided on.
    #[error("our own result ({0}) came back: ignored so that it cannot loop")]
    OwnResult(String),
}

/// The few fields a decision to skip needs, read from a plain Falco body without building the
/// event: no map of output fields, no owned strings (unless JSON-escaped). Skipping is then
/// cheap for a flood of events we do not act on (a noisy rule, an attacker's junk).
#[derive(Debug)]
pub struct Peek<'a> {
    pub rule: Cow<'a, str>,
    pub priority: Priority,
    pub source: Option<Cow<'a, str>>,
    pub uuid: Option<Cow<'a, str>>,
}

/// `Some` exactly when `decode` would take its plain path and accept the body as a Falco event
/// (the same types are required of the same keys); `None` otherwise, and `decode` says why.
pub fn peek_plain<'a>(headers: &HeaderMap, body: &'a [u8]) -> Option<Peek<'a>> {
    // A static name: a `&str` key is parsed as a header name on every lookup.
    static CE_SPECVERSION: http::HeaderName = http::HeaderName::from_static("ce-specversion");
    if headers.contains_key(&CE_SPECVERSION) {
        return None;
    }
    if let Some(ct) = headers.get(CONTENT_TYPE) {
        let ct = ct.as_bytes().trim_ascii_start();
        let starts =
            |p: &str| ct.len() >= p.len() && ct[..p.len()].eq_ignore_ascii_case(p.as_bytes());
        if starts("application/cloudevents") {
            return None;
        }
    }
    let spans = crate::ingest::peek::scan(body)?;
    Some(Peek {
        priority: parse_priority(spans.priority)?,
        rule: text(spans.rule)?,
        source: match spans.source {
            Some(s) => Some(text(s)?),
            None => None,
        },
        uuid: match spans.uuid {
            Some(s) => Some(text(s)?),
            None => None,
        },
    })
}

/// A peeked string: borrowed, or unescaped by serde_json exactly as `decode` would.
fn text(s: crate::ingest::peek::Str<'_>) -> Option<Cow<'_, str>> {
    if s.escaped {
        return serde_json::from_slice::<String>(s.quoted)
            .ok()
            .map(Cow::Owned);
    }
    std::str::from_utf8(&s.quoted[1..s.quoted.len() - 1])
        .ok()
        .map(Cow::Borrowed)
}

fn parse_priority(s: crate::ingest::peek::Str<'_>) -> Option<Priority> {
    text(s)?.parse().ok()
}

/// Envelopes nest (a CloudEvent from an Argo event ...): bound the unwrapping.
const MAX_DEPTH: usize = 5;

pub fn decode(headers: &HeaderMap, body: &[u8]) -> Result<Decoded, DecodeError> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if content_type.starts_with("application/cloudevents-batch+json") {
        return Err(DecodeError::Batch);
    }
    let structured = content_type.starts_with("application/cloudevents+json");
    if structured || headers.contains_key("ce-specversion") {
        // The whole envelope (structured) or the data (binary): the SDK keeps the last value.
        unique(body)?;
        if structured {
            unique_base64_data(body)?;
        }
        return decode_cloudevent(headers, body, structured);
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(DecodeError::Empty);
    }
    // The scan that peeks a Falco event also proves its keys unique, for a fraction of the
    // check's cost; a body it does not read is checked in full.
    if crate::ingest::peek::scan(body).is_none() {
        unique(body)?;
    }
    // Fast path: the body is the Falco event itself (Falco, Falcosidekick webhook/openfaas).
    // Anything else takes the general path below, which also explains what is wrong.
    if let Ok(event) = serde_json::from_slice::<FalcoEvent>(body) {
        return Ok(Decoded {
            event,
            kind: InputKind::Plain,
            cloudevent: None,
        });
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| DecodeError::Json(e.to_string()))?;
    let (event, kind) = unwrap_value(value, InputKind::Plain, 0)?;
    Ok(Decoded {
        event,
        kind,
        cloudevent: None,
    })
}

fn decode_cloudevent(
    headers: &HeaderMap,
    body: &[u8],
    structured: bool,
) -> Result<Decoded, DecodeError> {
    let ce = cloudevents::binding::http::to_event(headers, body.to_vec())
        .map_err(|e| DecodeError::CloudEvent(e.to_string()))?;
    let info = CloudEventInfo {
        id: ce.id().to_string(),
        source: ce.source().to_string(),
        ty: ce.ty().to_string(),
    };
    if info.ty == RESULT_CE_TYPE {
        return Err(DecodeError::OwnResult(format!(
            "CloudEvent type {RESULT_CE_TYPE}"
        )));
    }
    let value = match ce.data() {
        Some(Data::Json(v)) => v.clone(),
        Some(Data::Binary(bytes)) => {
            unique(bytes)?;
            serde_json::from_slice(bytes)
                .map_err(|e| DecodeError::Json(format!("CloudEvent data: {e}")))?
        }
        Some(Data::String(s)) => {
            unique(s.as_bytes())?;
            serde_json::from_str(s)
                .map_err(|e| DecodeError::Json(format!("CloudEvent data: {e}")))?
        }
        None => {
            let ty = crate::fastfmt::bounded_string(info.ty, crate::fastfmt::ECHO_MAX);
            return Err(DecodeError::NoData(ty));
        }
    };
    // A result of ours (or of a look-alike) under another type: `outcome` is no Falco field.
    if info.ty != FALCO_CE_TYPE && value.get("outcome").is_some() {
        return Err(DecodeError::OwnResult(format!(
            "CloudEvent type {:?} whose data has an \"outcome\"",
            crate::fastfmt::bounded(&info.ty, crate::fastfmt::ECHO_MAX)
        )));
    }
    let kind = if structured {
        InputKind::CloudEventStructured
    } else {
        InputKind::CloudEventBinary
    };
    // The data is the Falco event; a CloudEvent wrapping an Argo payload is unusual but harmless.
    let (event, _) = unwrap_value(value, kind, 0)?;
    Ok(Decoded {
        event,
        kind,
        cloudevent: Some(info),
    })
}

fn is_falco(map: &serde_json::Map<String, Value>) -> bool {
    map.get("rule").is_some_and(Value::is_string)
        && (map.contains_key("priority") || map.contains_key("output_fields"))
}

/// Peels Argo envelopes until a Falco event appears. `kind` is the outermost envelope seen.
fn unwrap_value(
    value: Value,
    kind: InputKind,
    depth: usize,
) -> Result<(FalcoEvent, InputKind), DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::NotFalco(format!(
            "envelopes nested more than {MAX_DEPTH} deep"
        )));
    }
    let first = |k: InputKind| if kind == InputKind::Plain { k } else { kind };
    let mut map = match value {
        Value::Object(map) => map,
        // `{"dest": "<json>"}` (Argo without useRawData) or a JSON string body.
        Value::String(s) => {
            unique(s.as_bytes())?;
            let inner: Value = serde_json::from_str(&s)
                .map_err(|e| DecodeError::NotFalco(format!("a string that is not JSON ({e})")))?;
            return unwrap_value(inner, kind, depth + 1);
        }
        other => {
            return Err(DecodeError::NotFalco(format!(
                "expected a JSON object, found {}",
                json_type(&other)
            )));
        }
    };
    if is_falco(&map) {
        let event: FalcoEvent = serde_json::from_value(Value::Object(map))
            .map_err(|e| DecodeError::NotFalco(e.to_string()))?;
        return Ok((event, kind));
    }
    // The whole Argo event: `data` is base64 of `{"header": .., "body": ..}`.
    if map.contains_key("context") && map.contains_key("data") {
        let data = map.remove("data").unwrap_or(Value::Null);
        let inner = match data {
            Value::String(b64) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|e| {
                        DecodeError::NotFalco(format!("Argo event data is not base64: {e}"))
                    })?;
                unique(&bytes)?;
                serde_json::from_slice(&bytes).map_err(|e| {
                    DecodeError::NotFalco(format!("Argo event data is not JSON: {e}"))
                })?
            }
            other => other,
        };
        return unwrap_value(inner, first(InputKind::ArgoEvent), depth + 1)
            .map_err(|e| within("in the Argo event's data", e));
    }
    if let Some(body) = map.remove("body") {
        return unwrap_value(body, first(InputKind::ArgoWebhook), depth + 1)
            .map_err(|e| within("under \"body\"", e));
    }
    // `{"<dest>": falco}`: a single key holding the event.
    if map.len() == 1 {
        let (key, inner) = map.into_iter().next().expect("one entry");
        if inner.is_object() || inner.is_string() {
            return unwrap_value(inner, first(InputKind::ArgoPayload), depth + 1)
                .map_err(|e| within(&format!("under {:?}", named(&key)), e));
        }
        return Err(DecodeError::NotFalco(format!(
            "expected a Falco event under the single key, found {}",
            json_type(&inner)
        )));
    }
    let mut keys: Vec<Cow<'_, str>> = map.keys().map(|k| named(k)).take(8).collect();
    keys.sort_unstable();
    Err(DecodeError::NotFalco(format!(
        "expected an object with \"rule\", \"priority\" and \"output_fields\" (or a CloudEvent / Argo \
         Events envelope of one), found keys {keys:?}"
    )))
}

/// A key of the sender's as an error names it: cut (and marked) before it is quoted.
fn named(key: &str) -> Cow<'_, str> {
    crate::fastfmt::bounded(key, KEY_NAMED_MAX)
}

/// How much of a key an error names, in bytes.
const KEY_NAMED_MAX: usize = 64;

fn unique(json: &[u8]) -> Result<(), DecodeError> {
    crate::ingest::unique::check(json).map_err(DecodeError::DuplicateKey)
}

/// A structured CloudEvent's `data_base64` holding JSON: the SDK decodes and parses it (keeping
/// the last of two keys) before we see it, so its keys are checked here.
fn unique_base64_data(body: &[u8]) -> Result<(), DecodeError> {
    #[derive(serde::Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow, default)]
        data_base64: Option<Cow<'a, str>>,
    }
    let Ok(Envelope {
        data_base64: Some(b64),
    }) = serde_json::from_slice::<Envelope>(body)
    else {
        return Ok(()); // the SDK says what is wrong, if anything
    };
    match base64::engine::general_purpose::STANDARD.decode(b64.trim()) {
        Ok(bytes) => unique(&bytes),
        Err(_) => Ok(()),
    }
}

/// Says where in the envelopes a nested error was found.
fn within(location: &str, e: DecodeError) -> DecodeError {
    match e {
        DecodeError::NotFalco(msg) => DecodeError::NotFalco(format!("{location}: {msg}")),
        other => other,
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const FALCO: &str = r#"{"output":"x","priority":"Notice","rule":"Terminal shell in container","time":"2021-01-14T23:39:44.834631763Z", "output_fields": {"k8s.ns.name":"default","k8s.pod.name":"alpine","evt.time":1610667584834631763}}"#;

    fn plain(body: &str) -> Result<Decoded, DecodeError> {
        decode(&HeaderMap::new(), body.as_bytes())
    }

    #[test]
    fn plain_without_content_type() {
        let d = plain(FALCO).unwrap();
        assert_eq!(d.kind, InputKind::Plain);
        assert_eq!(d.event.field("k8s.pod.name"), Some("alpine"));
        assert_eq!(
            d.event.output_fields["evt.time"],
            serde_json::json!(1610667584834631763u64)
        );
    }

    #[test]
    fn peek_reads_what_decode_reads_or_nothing() {
        let ok = [
            FALCO.to_string(),
            r#"{"rule":"r","priority":"info","output_fields":{"a":[1,{"b":null}]},"tags":["x"],"output":null}"#.into(),
            r#"{"rule":"r\u0041","priority":"Notice","source":"internal","uuid":"u"}"#.into(),
        ];
        for body in &ok {
            let p = peek_plain(&HeaderMap::new(), body.as_bytes()).expect(body);
            let d = plain(body).unwrap();
            assert_eq!(d.event.rule, p.rule);
            assert_eq!(d.event.priority, p.priority);
            assert_eq!(d.event.source.as_deref(), p.source.as_deref());
            assert_eq!(d.event.uuid.as_deref(), p.uuid.as_deref());
        }
        let deep = format!(
            r#"{{"rule":"r","priority":"Notice","output_fields":{{"x":{}1{}}}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        for body in [
            "",
            "{}",
            r#"{"rule":"r","priority":"Loud"}"#,
            r#"{"rule":"r","priority":"Notice","output_fields":null}"#,
            r#"{"rule":"r","priority":"Notice","tags":[1]}"#,
            r#"{"rule":"r","priority":"Notice","hostname":5}"#,
            r#"{"rule":"r","rule":"s","priority":"Notice"}"#,
            deep.as_str(),
        ] {
            // decode decides about these (an error, or its general path): never the peek.
            assert!(
                peek_plain(&HeaderMap::new(), body.as_bytes()).is_none(),
                "{body}"
            );
        }
        let mut ce = HeaderMap::new();
        ce.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("Application/CloudEvents+json"),
        );
        assert!(peek_plain(&ce, FALCO.as_bytes()).is_none());
    }

    #[test]
    fn argo_shapes_unwrap_to_the_same_event() {
        let raw = format!(r#"{{"event": {FALCO}}}"#);
        assert_eq!(plain(&raw).unwrap().kind, InputKind::ArgoPayload);
        let escaped = serde_json::json!({ "falco": FALCO }).to_string();
        assert_eq!(plain(&escaped).unwrap().kind, InputKind::ArgoPayload);
        let webhook =
            format!(r#"{{"header": {{"Content-Type": ["application/json"]}}, "body": {FALCO}}}"#);
        assert_eq!(plain(&webhook).unwrap().kind, InputKind::ArgoWebhook);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&webhook);
        let whole =
            serde_json::json!({"context": {"id": "1", "type": "webhook"}, "data": b64}).to_string();
        let d = plain(&whole).unwrap();
        assert_eq!(d.kind, InputKind::ArgoEvent);
        assert_eq!(d.event.rule, "Terminal shell in container");
        // The whole event as a string under a dest (argo trigger without dataKey).
        let wrapped = serde_json::json!({ "event": whole }).to_string();
        assert_eq!(plain(&wrapped).unwrap().kind, InputKind::ArgoPayload);
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        assert_eq!(plain("  ").unwrap_err(), DecodeError::Empty);
        assert!(matches!(plain("{nope"), Err(DecodeError::Json(_))));
        let e = plain(r#"{"a":1,"b":2}"#).unwrap_err().to_string();
        assert!(e.contains("\"a\"") && e.contains("rule"), "{e}");
        assert!(plain("[1,2]").unwrap_err().to_string().contains("an array"));
        assert!(
            plain(r#"{"context":{},"data":"!!"}"#)
                .unwrap_err()
                .to_string()
                .contains("base64")
        );
        let bad_priority = r#"{"rule":"r","priority":"Severe","output_fields":{}}"#;
        assert!(
            plain(bad_priority)
                .unwrap_err()
                .to_string()
                .contains("Severe")
        );
    }

    #[test]
    fn a_duplicated_key_is_refused_in_every_envelope() {
        let dup_rule = r#"{"rule":"Terminal shell in container","priority":"Notice","rule":"x","output_fields":{}}"#;
        let dup_field = r#"{"rule":"r","priority":"Notice","output_fields":{"k8s.ns.name":"a","k8s.pod.name":"p","k8s.ns.name":"b"}}"#;
        let dup_other = r#"{"rule":"r","priority":"Notice","extra":1,"extra":2}"#;
        for (falco, key) in [
            (dup_rule, "rule"),
            (dup_field, "k8s.ns.name"),
            (dup_other, "extra"),
        ] {
            let webhook = format!(r#"{{"header":{{}},"body":{falco}}}"#);
            let b64 = base64::engine::general_purpose::STANDARD.encode(&webhook);
            let bodies = [
                falco.to_string(),
                format!(r#"{{"event": {falco}}}"#),
                serde_json::json!({ "falco": falco }).to_string(),
                webhook.clone(),
                serde_json::json!({"context": {"id": "1"}, "data": b64}).to_string(),
            ];
            for body in &bodies {
                assert_eq!(
                    plain(body).unwrap_err(),
                    DecodeError::DuplicateKey(key.into()),
                    "{body}"
                );
            }
            // CloudEvents: structured (data inline, or as a JSON string), binary.
            let mut h = HeaderMap::new();
            h.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/cloudevents+json"),
            );
            let inline = format!(
                r#"{{"specversion":"1.0","id":"1","source":"s","type":"{FALCO_CE_TYPE}","datacontenttype":"application/json","data":{falco}}}"#
            );
            let string = serde_json::json!({"specversion": "1.0", "id": "1", "source": "s",
                "type": FALCO_CE_TYPE, "datacontenttype": "text/plain", "data": falco})
            .to_string();
            for body in [inline, string] {
                let e = decode(&h, body.as_bytes()).unwrap_err();
                assert_eq!(e, DecodeError::DuplicateKey(key.into()), "{body}");
            }
            let e = decode(&binary_ce("s", FALCO_CE_TYPE), falco.as_bytes()).unwrap_err();
            assert_eq!(e, DecodeError::DuplicateKey(key.into()));
            assert!(e.to_string().contains(&format!("{key:?}")), "{e}");
        }
        // The CloudEvent's own attributes too.
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/cloudevents+json"),
        );
        let body = format!(
            r#"{{"specversion":"1.0","id":"1","source":"s","type":"{FALCO_CE_TYPE}","type":"other","data":{FALCO}}}"#
        );
        assert_eq!(
            decode(&h, body.as_bytes()).unwrap_err(),
            DecodeError::DuplicateKey("type".into())
        );
        // The same key in two objects is no duplicate.
        let twice =
            r#"{"rule":"r","priority":"Notice","output_fields":{"rule":"x","priority":"y"}}"#;
        assert!(plain(twice).is_ok());
        assert!(peek_plain(&HeaderMap::new(), twice.as_bytes()).is_some());
    }

    #[test]
    fn nesting_is_bounded() {
        let mut v = FALCO.to_string();
        for _ in 0..10 {
            v = format!(r#"{{"x": {v}}}"#);
        }
        assert!(plain(&v).unwrap_err().to_string().contains("nested"));
    }

    #[test]
    fn cloudevents_binary_mode() {
        let mut h = HeaderMap::new();
        h.insert("ce-specversion", HeaderValue::from_static("1.0"));
        h.insert("ce-id", HeaderValue::from_static("abc"));
        h.insert("ce-source", HeaderValue::from_static("https://falco.org"));
        h.insert("ce-type", HeaderValue::from_static(FALCO_CE_TYPE));
        h.insert("ce-priority", HeaderValue::from_static("Notice"));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let d = decode(&h, FALCO.as_bytes()).unwrap();
        assert_eq!(d.kind, InputKind::CloudEventBinary);
        assert_eq!(d.cloudevent.unwrap().id, "abc");
        h.remove("ce-id");
        assert!(matches!(
            decode(&h, FALCO.as_bytes()),
            Err(DecodeError::CloudEvent(_))
        ));
    }

    /// A binary-mode CloudEvent's headers, with a JSON body.
    fn binary_ce(source: &'static str, ty: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("ce-specversion", HeaderValue::from_static("1.0"));
        h.insert("ce-id", HeaderValue::from_static("abc"));
        h.insert("ce-source", HeaderValue::from_static(source));
        h.insert("ce-type", HeaderValue::from_static(ty));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h
    }

    #[test]
    fn our_own_results_are_recognised_not_decided_on() {
        let mut h = binary_ce("falco-responder", RESULT_CE_TYPE);
        let result = r#"{"outcome":"deleted","reason":"r","pod":null,"rule":"Terminal shell in container","priority":"Notice","input":"plain"}"#;
        assert!(matches!(
            decode(&h, result.as_bytes()),
            Err(DecodeError::OwnResult(_))
        ));
        // Another type, but the data is a result: still ours.
        h.insert("ce-type", HeaderValue::from_static("dev.knative.example"));
        assert!(matches!(
            decode(&h, result.as_bytes()),
            Err(DecodeError::OwnResult(_))
        ));
        // Falco's own type is decided on as usual.
        h.insert("ce-type", HeaderValue::from_static(FALCO_CE_TYPE));
        assert!(decode(&h, FALCO.as_bytes()).is_ok());
    }

    #[test]
    fn cloudevents_structured_and_batch() {
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/cloudevents+json; charset=utf-8"),
        );
        let body = serde_json::json!({"specversion": "1.0", "id": "1", "source": "falco.org",
            "type": FALCO_CE_TYPE, "datacontenttype": "application/json",
            "data": serde_json::from_str::<Value>(FALCO).unwrap()});
        let d = decode(&h, body.to_string().as_bytes()).unwrap();
        assert_eq!(d.kind, InputKind::CloudEventStructured);
        assert_eq!(d.cloudevent.unwrap().source, "falco.org");
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/cloudevents-batch+json"),
        );
        assert_eq!(decode(&h, b"[]").unwrap_err(), DecodeError::Batch);
    }
}
