//! HTTP request (headers + body) → Falco event, for every envelope a sender uses. Pure.
//!
//! - plain Falco JSON (Falco http_output, Falcosidekick webhook/openfaas), any or no Content-Type;
//! - CloudEvents binary and structured mode (Falcosidekick cloudevents, Knative Broker/Trigger);
//! - Argo Events HTTP trigger bodies: the Falco object, `{"<dest>": {falco}}`,
//!   `{"<dest>": "<falco JSON string>"}`, the whole Argo event `{"context", "data": base64}`
//!   (v0.14+ and older context keys) and the decoded webhook data `{"header", "body"}`.

use std::{borrow::Cow, fmt, ops::Range};

use base64::Engine;
use cloudevents::AttributesReader;
use http::{HeaderMap, header::CONTENT_TYPE};
use serde::{
    Deserialize, Serialize,
    de::{self, MapAccess, Visitor},
};
use serde_json::value::RawValue;

use crate::{
    domain::falco::{FalcoEvent, Priority},
    ingest::unique::Key,
};

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

impl Decoded {
    /// Memory it holds (what the body budget is charged for it beside the body).
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Decoded>()
            + self.event.heap_bytes()
            + self.cloudevent.as_ref().map_or(0, |c| {
                c.id.capacity() + c.source.capacity() + c.ty.capacity()
            })
    }
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
    peek_of(crate::ingest::peek::scan(body)?)
}

impl Peek<'_> {
    fn into_owned(self) -> Peek<'static> {
        let own = |c: Cow<'_, str>| Cow::Owned(c.into_owned());
        Peek {
            rule: own(self.rule),
            priority: self.priority,
            source: self.source.map(own),
            uuid: self.uuid.map(own),
        }
    }
}

/// What [`peek`] read of a request: the fields a decision to skip needs, the envelope, and the
/// CloudEvent's attributes.
#[derive(Debug)]
pub struct Peeked<'a> {
    pub peek: Peek<'a>,
    pub kind: InputKind,
    pub cloudevent: Option<CloudEventInfo>,
}

/// The first look of [`peek_plain`], through every envelope: `Some` only when `decode` would
/// accept the request as a Falco event with the same `rule`, `priority`, `source`, `uuid`, the
/// same envelope and the same CloudEvent attributes; `None` when it would not, and whenever this
/// look cannot tell (the unusual: CloudEvents 0.3, a `dataschema`, a number as an extension, an
/// escaped key, a type other than Falcosidekick's ...): then `decode` decides. It makes every
/// check `decode` makes of what it reads (the SDK's checks of the attributes, the content types,
/// a key given twice anywhere, the bounds), builds no tree and no CloudEvent, and decodes a
/// base64 or JSON-string envelope once.
pub fn peek<'a>(headers: &HeaderMap, body: &'a [u8]) -> Option<Peeked<'a>> {
    // `locate`'s order, without its lower-cased copy of the content type.
    let ct = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim();
    let starts = |p: &str| {
        ct.len() >= p.len() && ct.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
    };
    if starts("application/cloudevents-batch+json") {
        return None;
    }
    if starts("application/cloudevents+json") {
        return peek_structured(headers, body);
    }
    if headers.contains_key(&CE_SPECVERSION) {
        return peek_binary(headers, body);
    }
    if opens_like_falco(body)
        && let Some(spans) = crate::ingest::peek::scan(body)
    {
        return Some(Peeked {
            peek: peek_of(spans)?,
            kind: InputKind::Plain,
            cloudevent: None,
        });
    }
    let (peek, kind) = unwrap_peek(body, InputKind::Plain, 0, false)?;
    Some(Peeked {
        peek,
        kind,
        cloudevent: None,
    })
}

/// Whether `body` opens as a Falco event: an object whose first key is one of the event's fields
/// (Falco and Falcosidekick write one first). Only a cost: an envelope (`{"context":…`,
/// `{"payload":"…`) skips a read of the whole body as an event, which could only fail at its
/// end; an event with another key first is still read, by `unwrap_peek`.
fn opens_like_falco(body: &[u8]) -> bool {
    const FIELDS: [&[u8]; 9] = [
        b"rule",
        b"priority",
        b"uuid",
        b"output",
        b"time",
        b"source",
        b"hostname",
        b"tags",
        b"output_fields",
    ];
    let ws = |b: &[u8]| {
        b.iter()
            .position(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
            .unwrap_or(b.len())
    };
    let rest = &body[ws(body)..];
    let Some(rest) = rest.strip_prefix(b"{") else {
        return false;
    };
    let Some(key) = rest[ws(rest)..].strip_prefix(b"\"") else {
        return true; // `{}`, or not JSON: `scan` says which
    };
    match key.iter().position(|&c| c == b'"' || c == b'\\') {
        Some(end) => FIELDS.contains(&&key[..end]),
        None => true,
    }
}

/// Base64 as the full decode reads it (the base64 crate's `STANDARD`: padding required, no
/// stray bits, no whitespace), by a SIMD decoder: the first look's largest cost in the
/// `data_base64` and whole-Argo-event envelopes.
fn peek_base64(b64: &[u8]) -> Option<Vec<u8>> {
    base64_simd::STANDARD.decode_to_vec(b64).ok()
}

/// A static name: a `&str` key is parsed as a header name on every lookup.
static CE_SPECVERSION: http::HeaderName = http::HeaderName::from_static("ce-specversion");

/// Binary mode, as the SDK reads the headers (`binding::http::to_event`): the spec version (1.0
/// only here), every `ce-` header as text (the last of a repeated one counts), the required
/// attributes, the time parsed as it parses it, the content type as text.
fn peek_binary<'a>(headers: &HeaderMap, body: &'a [u8]) -> Option<Peeked<'a>> {
    if headers.get(&CE_SPECVERSION)?.to_str().ok()? != "1.0" {
        return None;
    }
    if let Some(ct) = headers.get(CONTENT_TYPE) {
        ct.to_str().ok()?;
    }
    let (mut id, mut source, mut ty) = (None, None, None);
    for (name, value) in headers {
        let Some(attribute) = name.as_str().strip_prefix("ce-") else {
            continue;
        };
        if attribute == "specversion" {
            continue;
        }
        let value = value.to_str().ok()?;
        match attribute {
            "id" => id = Some(value),
            "source" => source = Some(value),
            "type" => ty = Some(value),
            "time" => {
                cloudevents::event::TryIntoTime::into_time(value).ok()?;
            }
            // A URL the SDK parses: left to it.
            "dataschema" => return None,
            // `datacontenttype`, `subject`, extensions: any text.
            _ => {}
        }
    }
    let (id, source, ty) = (id?, source?, ty?);
    // Another type may carry our own result: `decode` looks for it.
    if ty != FALCO_CE_TYPE || body.is_empty() {
        return None;
    }
    let kind = InputKind::CloudEventBinary;
    let peek = data_peek(body, kind)?;
    Some(Peeked {
        peek,
        kind,
        cloudevent: Some(CloudEventInfo {
            id: id.to_string(),
            source: source.to_string(),
            ty: ty.to_string(),
        }),
    })
}

/// Structured mode, as `Envelope::read` and the SDK read it (`event::format`, 1.0): the
/// attributes no objects or arrays and within their bound; `specversion`, `id`, `source`,
/// `type` strings; `datacontenttype`, `subject`, `time` strings (the time parsed as the SDK
/// parses it) or null; extensions strings, booleans or null; `data` or `data_base64`, not both.
fn peek_structured<'a>(headers: &HeaderMap, body: &'a [u8]) -> Option<Peeked<'a>> {
    // The SDK's test of structured mode is case-sensitive: `decode` reads anything else as
    // binary mode.
    if !headers
        .get(CONTENT_TYPE)?
        .to_str()
        .ok()?
        .starts_with("application/cloudevents+json")
    {
        return None;
    }
    let members = crate::ingest::peek::members(body)?;
    let (mut data, mut data_base64) = (None, None);
    let (mut specversion, mut id, mut source, mut ty, mut ct) = (None, None, None, None, None);
    for m in members.iter() {
        let string = || m.string.and_then(text);
        let null = m.value == b"null";
        match m.key {
            b"data" => data = Some(m),
            b"data_base64" => data_base64 = Some(m),
            _ if matches!(m.value[0], b'{' | b'[') => return None,
            b"specversion" => specversion = Some(string()?),
            b"id" => id = Some(string()?),
            b"source" => source = Some(string()?),
            b"type" => ty = Some(string()?),
            b"datacontenttype" if !null => ct = Some(string()?),
            b"subject" if !null => {
                string()?;
            }
            b"time" if !null => {
                cloudevents::event::TryIntoTime::into_time(&*string()?).ok()?;
            }
            b"dataschema" if !null => return None,
            b"datacontenttype" | b"subject" | b"time" | b"dataschema" => {}
            // An extension: what `ExtensionValue` reads (numbers are left to it).
            _ if matches!(m.value[0], b'"' | b't' | b'f' | b'n') => {}
            _ => return None,
        }
    }
    let data_len = |d: Option<&crate::ingest::peek::Member<'_>>| d.map_or(0, |d| d.value.len());
    if body.len() - data_len(data) - data_len(data_base64) > MAX_CE_ATTRIBUTES_BYTES
        || specversion? != "1.0"
    {
        return None;
    }
    let ty = ty?;
    if ty != FALCO_CE_TYPE {
        return None;
    }
    let kind = InputKind::CloudEventStructured;
    let ct = ct.as_deref().unwrap_or("application/json");
    let json =
        ct.starts_with("application/json") || ct.starts_with("text/json") || ct.ends_with("+json");
    let peek = match (data, data_base64) {
        (None, Some(b64)) => {
            let b64 = text(b64.string?)?;
            let buf = peek_base64(b64.as_bytes())?;
            data_peek(&buf, kind)?.into_owned()
        }
        (Some(d), None) => match (d.value[0], d.falco) {
            (b'{', Some(spans)) if json => peek_of(spans)?,
            (b'{' | b'"', _) if json => unwrap_peek(d.value, kind, 0, false)?.0,
            // Another content type: the SDK takes the data as a string holding the event.
            (b'"', _) => match text(d.string?)? {
                Cow::Borrowed(s) => unwrap_peek(s.as_bytes(), kind, 0, true)?.0,
                Cow::Owned(s) => unwrap_peek(s.as_bytes(), kind, 0, true)?.0.into_owned(),
            },
            _ => return None,
        },
        _ => return None,
    };
    Some(Peeked {
        peek,
        kind,
        cloudevent: Some(CloudEventInfo {
            id: id?.into_owned(),
            source: source?.into_owned(),
            ty: ty.into_owned(),
        }),
    })
}

/// A CloudEvent's data, read as `locate_cloudevent` unwraps it.
fn data_peek(data: &[u8], kind: InputKind) -> Option<Peek<'_>> {
    match crate::ingest::peek::scan(data) {
        Some(spans) => peek_of(spans),
        None => unwrap_peek(data, kind, 0, false).map(|(p, _)| p),
    }
}

/// `unwrap`'s path through `bytes`, read in place: the Falco event's fields and the outermost
/// envelope. `likely_falco`: `bytes` came out of a JSON string (Argo without useRawData), where
/// the event itself is the rule: read as one first.
fn unwrap_peek(
    bytes: &[u8],
    kind: InputKind,
    depth: usize,
    likely_falco: bool,
) -> Option<(Peek<'_>, InputKind)> {
    if depth > MAX_DEPTH {
        return None;
    }
    let first = |k: InputKind| if kind == InputKind::Plain { k } else { kind };
    match bytes.iter().find(|b| !b.is_ascii_whitespace())? {
        b'{' => {}
        b'"' => return string_peek(bytes, kind, depth + 1),
        _ => return None,
    }
    if likely_falco && let Some(spans) = crate::ingest::peek::scan(bytes) {
        return Some((peek_of(spans)?, kind));
    }
    let m = crate::ingest::peek::members(bytes)?;
    // `Shape`'s reading, in its order.
    let has = |key: &str| m.get(key).is_some();
    if m.get("rule").is_some_and(|r| r.value[0] == b'"')
        && (has("priority") || has("output_fields"))
    {
        // A Falco event, unless `decode` refuses it: `scan` says which.
        if likely_falco {
            return None;
        }
        return Some((peek_of(crate::ingest::peek::scan(bytes)?)?, kind));
    }
    let (inner, kind) = match (has("context"), m.get("data"), m.get("body")) {
        (true, Some(data), _) => {
            if let Some(b64) = data.string {
                // The whole Argo event: its data is base64 of the webhook's `{header, body}`.
                let b64 = text(b64)?;
                let buf = peek_base64(b64.trim().as_bytes())?;
                let kind = first(InputKind::ArgoEvent);
                return unwrap_peek(&buf, kind, depth + 1, false).map(|(p, k)| (p.into_owned(), k));
            }
            (data, first(InputKind::ArgoEvent))
        }
        (_, _, Some(body)) => (body, first(InputKind::ArgoWebhook)),
        _ if m.len() == 1 => {
            let only = m.iter().next()?;
            if !matches!(only.value[0], b'{' | b'"') {
                return None;
            }
            (only, first(InputKind::ArgoPayload))
        }
        _ => return None,
    };
    let depth = depth + 1;
    if depth > MAX_DEPTH {
        return None;
    }
    if let Some(spans) = inner.falco {
        return Some((peek_of(spans)?, kind));
    }
    if let Some(s) = inner.string {
        // `string_peek`'s reading, from the text the scanner already checked.
        let s = text(s)?;
        return unwrap_peek(s.as_bytes(), kind, depth + 1, true).map(|(p, k)| (p.into_owned(), k));
    }
    unwrap_peek(inner.value, kind, depth, false)
}

/// A JSON string holding JSON (Argo without useRawData), decoded once as `unwrap` decodes it.
fn string_peek(quoted: &[u8], kind: InputKind, depth: usize) -> Option<(Peek<'static>, InputKind)> {
    let s: String = serde_json::from_slice(quoted).ok()?;
    unwrap_peek(s.as_bytes(), kind, depth, true).map(|(p, k)| (p.into_owned(), k))
}

fn peek_of(spans: crate::ingest::peek::Spans<'_>) -> Option<Peek<'_>> {
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

/// A peeked string: borrowed, or unescaped exactly as `decode` (serde_json) would.
fn text(s: crate::ingest::peek::Str<'_>) -> Option<Cow<'_, str>> {
    if s.escaped {
        return s.unescape().map(Cow::Owned);
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
/// A structured CloudEvent's attributes and extensions (all of it but the data): the SDK builds
/// its own tree of them. The specification asks producers to keep a whole event under 64 KiB.
pub const MAX_CE_ATTRIBUTES_BYTES: usize = 64 << 10;

/// The request's Falco event, decoded into its bounded form (`domain::falco`).
pub fn decode(headers: &HeaderMap, body: &[u8]) -> Result<Decoded, DecodeError> {
    locate(headers, body)?.decode()
}

/// Where a request's Falco event is, found without building it: its JSON text within the body
/// (or within the one buffer a JSON string or base64 envelope was decoded into), which envelope
/// it came in, and the CloudEvent's attributes. A first look (`peek::scan`) at [`Found::json`]
/// can decide a skip before anything else is built.
pub struct Found<'a> {
    text: Text<'a>,
    pub kind: InputKind,
    pub cloudevent: Option<CloudEventInfo>,
}

impl Found<'_> {
    /// The Falco event's JSON text: an object whose `rule` is a string.
    pub fn json(&self) -> &[u8] {
        self.text.bytes()
    }

    /// Builds the event, within its bounds (a field nested or in excess is named in the error).
    pub fn decode(self) -> Result<Decoded, DecodeError> {
        let event = serde_json::from_slice::<FalcoEvent>(self.json())
            .map_err(|e| DecodeError::NotFalco(e.to_string()))?;
        Ok(Decoded {
            event,
            kind: self.kind,
            cloudevent: self.cloudevent,
        })
    }
}

/// JSON text: part of the body, or of the one buffer an envelope's string or base64 was
/// decoded into (the only copy an envelope costs).
enum Text<'a> {
    Body(&'a [u8]),
    Decoded(Vec<u8>, Range<usize>),
}

impl<'a> Text<'a> {
    fn bytes(&self) -> &[u8] {
        match self {
            Text::Body(b) => b,
            Text::Decoded(buf, r) => &buf[r.clone()],
        }
    }

    /// The part of `self.bytes()` at `r`.
    fn narrow(self, r: Range<usize>) -> Text<'a> {
        match self {
            Text::Body(b) => Text::Body(&b[r]),
            Text::Decoded(buf, at) => Text::Decoded(buf, at.start + r.start..at.start + r.end),
        }
    }

    /// Decoded JSON text: its keys are checked as the body's were.
    fn decoded(buf: Vec<u8>) -> Result<Text<'a>, DecodeError> {
        unique(&buf)?;
        let n = buf.len();
        Ok(Text::Decoded(buf, 0..n))
    }
}

/// Where `inner`, a part of `outer`, lies in it.
fn span(outer: &[u8], inner: &str) -> Range<usize> {
    let start = inner.as_ptr() as usize - outer.as_ptr() as usize;
    start..start + inner.len()
}

/// The contents of a JSON string (quoted, already validated): borrowed unless it has escapes.
fn json_str(quoted: &[u8]) -> Result<Cow<'_, str>, serde_json::Error> {
    if let [b'"', inner @ .., b'"'] = quoted
        && !inner.contains(&b'\\')
        && let Ok(s) = std::str::from_utf8(inner)
    {
        return Ok(Cow::Borrowed(s));
    }
    serde_json::from_slice::<String>(quoted).map(Cow::Owned)
}

/// Finds the Falco event in a request (see [`Found`]); `decode` builds it.
pub fn locate<'a>(headers: &HeaderMap, body: &'a [u8]) -> Result<Found<'a>, DecodeError> {
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
        return locate_cloudevent(headers, body, structured);
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(DecodeError::Empty);
    }
    // The body is the Falco event itself (Falco, Falcosidekick webhook/openfaas): the scan that
    // peeks it also proves its keys unique, for a fraction of the check's cost.
    if crate::ingest::peek::scan(body).is_some() {
        return Ok(Found {
            text: Text::Body(body),
            kind: InputKind::Plain,
            cloudevent: None,
        });
    }
    // Anything else takes the general path, which also explains what is wrong.
    unique(body)?;
    let (text, kind) = unwrap(
        Text::Body(body),
        InputKind::Plain,
        0,
        &|e| DecodeError::Json(e.to_string()),
        None,
    )?;
    Ok(Found {
        text,
        kind,
        cloudevent: None,
    })
}

fn locate_cloudevent<'a>(
    headers: &HeaderMap,
    body: &'a [u8],
    structured: bool,
) -> Result<Found<'a>, DecodeError> {
    // The whole envelope (structured) or the data (binary): the SDK keeps the last value.
    unique(body)?;
    // What the SDK reads as structured mode (its test of the Content-Type is case-sensitive).
    let sdk_structured = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/cloudevents+json"));
    let (ce, data) = if sdk_structured {
        let envelope = Envelope::read(body)?;
        let ce = sdk_event(headers, envelope.for_sdk(body))?;
        let data = envelope.data(&ce, body)?;
        (ce, data)
    } else {
        // Binary mode: the SDK reads the attributes from the headers, and would take the body
        // as its data in a copy of its own; it is read here, in place.
        let ce = sdk_event(headers, Vec::new())?;
        (ce, (!body.is_empty()).then_some(Text::Body(body)))
    };
    let info = CloudEventInfo {
        id: ce.id().to_string(),
        source: ce.source().to_string(),
        ty: ce.ty().to_string(),
    };
    drop(ce);
    if info.ty == RESULT_CE_TYPE {
        return Err(DecodeError::OwnResult(format!(
            "CloudEvent type {RESULT_CE_TYPE}"
        )));
    }
    let Some(data) = data else {
        let ty = crate::fastfmt::bounded_string(info.ty, crate::fastfmt::ECHO_MAX);
        return Err(DecodeError::NoData(ty));
    };
    let kind = if structured {
        InputKind::CloudEventStructured
    } else {
        InputKind::CloudEventBinary
    };
    // The data is the Falco event; a CloudEvent wrapping an Argo payload is unusual but harmless.
    let (text, _) = unwrap(
        data,
        kind,
        0,
        &|e| DecodeError::Json(format!("CloudEvent data: {e}")),
        // A result of ours (or of a look-alike) under another type: `outcome` is no Falco field.
        (info.ty != FALCO_CE_TYPE).then_some(info.ty.as_str()),
    )?;
    Ok(Found {
        text,
        kind,
        cloudevent: Some(info),
    })
}

fn sdk_event(headers: &HeaderMap, body: Vec<u8>) -> Result<cloudevents::Event, DecodeError> {
    cloudevents::binding::http::to_event(headers, body)
        .map_err(|e| DecodeError::CloudEvent(e.to_string()))
}

/// A structured CloudEvent read as parts of the body: the SDK is given the envelope with its
/// data replaced by a stand-in, so that its tree (it builds one of the whole envelope) holds
/// only the attributes, and the data is read here in place.
struct Envelope<'a> {
    data: Option<&'a RawValue>,
    data_base64: Option<&'a RawValue>,
    /// CloudEvents 0.3's `datacontentencoding`.
    encoding: Option<&'a RawValue>,
}

impl<'a> Envelope<'a> {
    fn read(body: &'a [u8]) -> Result<Envelope<'a>, DecodeError> {
        let envelope: Envelope =
            serde_json::from_slice(body).map_err(|e| DecodeError::CloudEvent(e.to_string()))?;
        let data_len = |d: Option<&RawValue>| d.map_or(0, |d| d.get().len());
        let attributes = body.len() - data_len(envelope.data) - data_len(envelope.data_base64);
        if attributes > MAX_CE_ATTRIBUTES_BYTES {
            return Err(DecodeError::CloudEvent(format!(
                "{attributes} bytes of attributes and extensions besides the data, over \
                 {MAX_CE_ATTRIBUTES_BYTES}: a Falco event's CloudEvent has a few hundred"
            )));
        }
        Ok(envelope)
    }

    /// The envelope with each data member replaced by a stand-in of the same JSON type: the
    /// SDK validates what it validated before (the attributes, the data's type; `"e30="` is
    /// both a string and the base64 of `{}`), without a copy or a tree of the data.
    fn for_sdk(&self, body: &[u8]) -> Vec<u8> {
        let mut parts: Vec<(Range<usize>, &[u8])> = [self.data, self.data_base64]
            .into_iter()
            .flatten()
            .map(|raw| {
                let text = raw.get().as_bytes();
                let stand_in: &[u8] = match text.first() {
                    Some(b'{') => b"{}",
                    Some(b'[') => b"[]",
                    Some(b'"') => b"\"e30=\"",
                    _ => text,
                };
                (span(body, raw.get()), stand_in)
            })
            .collect();
        parts.sort_by_key(|(r, _)| r.start);
        let mut out = Vec::with_capacity(body.len().min(MAX_CE_ATTRIBUTES_BYTES + 64));
        let mut at = 0;
        for (r, stand_in) in parts {
            out.extend_from_slice(&body[at..r.start]);
            out.extend_from_slice(stand_in);
            at = r.end;
        }
        out.extend_from_slice(&body[at..]);
        out
    }

    /// The data as the SDK would read it from the original envelope: with a JSON content type
    /// any JSON value, otherwise a string holding JSON; `data_base64` (0.3: `data` with
    /// `datacontentencoding: base64`) decoded.
    fn data(
        &self,
        ce: &cloudevents::Event,
        body: &'a [u8],
    ) -> Result<Option<Text<'a>>, DecodeError> {
        let ct = ce.datacontenttype().unwrap_or("application/json");
        let json = ct.starts_with("application/json")
            || ct.starts_with("text/json")
            || ct.ends_with("+json");
        let (raw, base64) = if ce.specversion() == cloudevents::event::SpecVersion::V03 {
            let base64 = self
                .encoding
                .and_then(|e| json_str(e.get().as_bytes()).ok())
                .is_some_and(|e| e.eq_ignore_ascii_case("base64"));
            (self.data, base64)
        } else if self.data_base64.is_some() {
            (self.data_base64, true)
        } else {
            (self.data, false)
        };
        let Some(raw) = raw else {
            return Ok(None);
        };
        let quoted = raw.get().as_bytes();
        let bad = |e: serde_json::Error| DecodeError::CloudEvent(e.to_string());
        if base64 {
            let b64 = json_str(quoted).map_err(bad)?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map_err(|e| DecodeError::CloudEvent(format!("data: decode error `{e}`")))?;
            return Text::decoded(bytes).map(Some);
        }
        if json {
            return Ok(Some(Text::Body(&body[span(body, raw.get())])));
        }
        // Another content type: the SDK took the data as a string (and refused anything else).
        match json_str(quoted).map_err(bad)? {
            Cow::Borrowed(s) => {
                unique(s.as_bytes())?;
                Ok(Some(Text::Body(&body[span(body, s)])))
            }
            Cow::Owned(s) => Text::decoded(s.into_bytes()).map(Some),
        }
    }
}

impl<'de> Deserialize<'de> for Envelope<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Envelope<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a CloudEvent (a JSON object)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope<'de>, A::Error> {
                let mut e = Envelope {
                    data: None,
                    data_base64: None,
                    encoding: None,
                };
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    match &*key.0 {
                        "data" => e.data = Some(value),
                        "data_base64" => e.data_base64 = Some(value),
                        other => {
                            if other == "datacontentencoding" {
                                e.encoding = Some(value);
                            }
                            let first = value.get().as_bytes().first();
                            if let Some(b'{' | b'[') = first {
                                return Err(de::Error::custom(format_args!(
                                    "the attribute {:?} is {}: CloudEvent attributes are \
                                     strings, numbers or booleans",
                                    named(other),
                                    json_type(first)
                                )));
                            }
                        }
                    }
                }
                Ok(e)
            }
        }
        d.deserialize_map(V)
    }
}

/// What an object is, read without a tree: which keys it has (the values are parts of the text).
struct Shape<'a> {
    len: usize,
    rule_is_string: bool,
    priority: bool,
    output_fields: bool,
    context: bool,
    outcome: bool,
    data: Option<&'a RawValue>,
    body: Option<&'a RawValue>,
    first: Option<(Key<'a>, &'a RawValue)>,
    /// The smallest keys, sorted: named when the object is none of the shapes we read.
    keys: Vec<Key<'a>>,
}

/// Keys an error lists.
const LISTED_KEYS: usize = 8;

impl<'de> Deserialize<'de> for Shape<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Shape<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape<'de>, A::Error> {
                let mut s = Shape {
                    len: 0,
                    rule_is_string: false,
                    priority: false,
                    output_fields: false,
                    context: false,
                    outcome: false,
                    data: None,
                    body: None,
                    first: None,
                    keys: Vec::new(),
                };
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    match &*key.0 {
                        "rule" => s.rule_is_string = value.get().starts_with('"'),
                        "priority" => s.priority = true,
                        "output_fields" => s.output_fields = true,
                        "context" => s.context = true,
                        "outcome" => s.outcome = true,
                        "data" => s.data = Some(value),
                        "body" => s.body = Some(value),
                        _ => {}
                    }
                    s.len += 1;
                    let at = s.keys.partition_point(|k| k.0 < key.0);
                    if at < LISTED_KEYS {
                        s.keys.insert(at, key.clone());
                        s.keys.truncate(LISTED_KEYS);
                    }
                    if s.first.is_none() {
                        s.first = Some((key, value));
                    }
                }
                Ok(s)
            }
        }
        d.deserialize_map(V)
    }
}

/// What `unwrap` does next with an object, decided while its shape borrows the text.
enum Next {
    Falco,
    ArgoData { at: Range<usize>, base64: bool },
    ArgoBody(Range<usize>),
    Single { at: Range<usize>, key: String },
    NotFalco(String),
}

/// Peels Argo envelopes (and JSON strings holding JSON) until a Falco event appears: its text,
/// and the outermost envelope seen (`kind`). `invalid` says what is wrong when `text` is not
/// JSON; under `result_type` (a CloudEvent's type), an object with an `outcome` is our own
/// result.
fn unwrap<'a>(
    text: Text<'a>,
    kind: InputKind,
    depth: usize,
    invalid: &dyn Fn(serde_json::Error) -> DecodeError,
    result_type: Option<&str>,
) -> Result<(Text<'a>, InputKind), DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::NotFalco(format!(
            "envelopes nested more than {MAX_DEPTH} deep"
        )));
    }
    let first = |k: InputKind| if kind == InputKind::Plain { k } else { kind };
    let valid = |e: serde_json::Error| DecodeError::NotFalco(e.to_string());
    let bytes = text.bytes();
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace());
    match start.map(|i| bytes[i]) {
        Some(b'{') => {}
        // `{"dest": "<json>"}` (Argo without useRawData) or a JSON string body.
        Some(b'"') => {
            let s: String = serde_json::from_slice(bytes).map_err(invalid)?;
            let inner = Text::decoded(s.into_bytes())?;
            return unwrap(
                inner,
                kind,
                depth + 1,
                &|e| DecodeError::NotFalco(format!("a string that is not JSON ({e})")),
                result_type,
            );
        }
        other => {
            serde_json::from_slice::<de::IgnoredAny>(bytes).map_err(invalid)?;
            return Err(DecodeError::NotFalco(format!(
                "expected a JSON object, found {}",
                json_type(other.as_ref())
            )));
        }
    }
    let next = {
        let shape: Shape = serde_json::from_slice(bytes).map_err(invalid)?;
        if let Some(ty) = result_type
            && shape.outcome
        {
            return Err(DecodeError::OwnResult(format!(
                "CloudEvent type {:?} whose data has an \"outcome\"",
                crate::fastfmt::bounded(ty, crate::fastfmt::ECHO_MAX)
            )));
        }
        if shape.rule_is_string && (shape.priority || shape.output_fields) {
            Next::Falco
        } else if let (true, Some(data)) = (shape.context, shape.data) {
            // The whole Argo event: `data` is base64 of `{"header": .., "body": ..}`.
            Next::ArgoData {
                at: span(bytes, data.get()),
                base64: data.get().starts_with('"'),
            }
        } else if let Some(body) = shape.body {
            Next::ArgoBody(span(bytes, body.get()))
        } else if let (1, Some((key, value))) = (shape.len, &shape.first) {
            // `{"<dest>": falco}`: a single key holding the event.
            match value.get().as_bytes().first() {
                Some(b'{' | b'"') => Next::Single {
                    at: span(bytes, value.get()),
                    key: named(&key.0).into_owned(),
                },
                other => Next::NotFalco(format!(
                    "expected a Falco event under the single key, found {}",
                    json_type(other)
                )),
            }
        } else {
            let keys: Vec<Cow<'_, str>> = shape.keys.iter().map(|k| named(&k.0)).collect();
            Next::NotFalco(format!(
                "expected an object with \"rule\", \"priority\" and \"output_fields\" (or a \
                 CloudEvent / Argo Events envelope of one), found keys {keys:?}"
            ))
        }
    };
    match next {
        Next::Falco => Ok((text, kind)),
        Next::ArgoData { at, base64: true } => {
            let inner = {
                let b64 = json_str(&text.bytes()[at]).map_err(valid)?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|e| {
                        DecodeError::NotFalco(format!("Argo event data is not base64: {e}"))
                    })?;
                Text::decoded(bytes)?
            };
            let invalid = |e| DecodeError::NotFalco(format!("Argo event data is not JSON: {e}"));
            unwrap(
                inner,
                first(InputKind::ArgoEvent),
                depth + 1,
                &invalid,
                None,
            )
            .map_err(|e| within("in the Argo event's data", e))
        }
        Next::ArgoData { at, base64: false } => unwrap(
            text.narrow(at),
            first(InputKind::ArgoEvent),
            depth + 1,
            &valid,
            None,
        )
        .map_err(|e| within("in the Argo event's data", e)),
        Next::ArgoBody(at) => unwrap(
            text.narrow(at),
            first(InputKind::ArgoWebhook),
            depth + 1,
            &valid,
            None,
        )
        .map_err(|e| within("under \"body\"", e)),
        Next::Single { at, key } => unwrap(
            text.narrow(at),
            first(InputKind::ArgoPayload),
            depth + 1,
            &valid,
            None,
        )
        .map_err(|e| within(&format!("under {key:?}"), e)),
        Next::NotFalco(why) => Err(DecodeError::NotFalco(why)),
    }
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

/// Says where in the envelopes a nested error was found.
fn within(location: &str, e: DecodeError) -> DecodeError {
    match e {
        DecodeError::NotFalco(msg) => DecodeError::NotFalco(format!("{location}: {msg}")),
        other => other,
    }
}

/// The JSON type of a value, from its first byte.
fn json_type(first: Option<&u8>) -> &'static str {
    match first {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
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
            d.event
                .output_fields
                .get("evt.time")
                .and_then(|v| v.as_u64()),
            Some(1610667584834631763)
        );
    }

    #[test]
    fn peek_reads_what_decode_reads_or_nothing() {
        let ok = [
            FALCO.to_string(),
            r#"{"rule":"r","priority":"info","output_fields":{"a":[1,"b",null]},"tags":["x"],"output":null,"x":{"y":[{}]}}"#.into(),
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
            r#"{"rule":"r","priority":"info","output_fields":{"a":[1,{"b":null}]}}"#,
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
    fn peek_reads_every_envelope_as_decode_does() {
        for (h, body) in every_envelope(FALCO) {
            let p = peek(&h, body.as_bytes()).unwrap_or_else(|| panic!("not peeked: {body}"));
            let d = decode(&h, body.as_bytes()).unwrap();
            assert_eq!((p.kind, &p.cloudevent), (d.kind, &d.cloudevent), "{body}");
            assert_eq!(
                (&*p.peek.rule, p.peek.priority, p.peek.source.as_deref()),
                (
                    d.event.rule.as_str(),
                    d.event.priority,
                    d.event.source.as_deref()
                )
            );
        }
    }

    #[test]
    fn only_an_object_opening_with_a_falco_field_is_first_read_as_an_event() {
        for yes in [
            FALCO,
            " {\n\t\"rule\":1}",
            r#"{"output_fields":{}}"#,
            "{}",
            "{ 1",
            r#"{"ab"#,
        ] {
            assert!(opens_like_falco(yes.as_bytes()), "{yes}");
        }
        for no in [
            r#"{"payload":"{\"rule\":1}"}"#,
            r#"{"context":{},"data":""}"#,
            r#"{"rul\u0065":1}"#,
            "[]",
            r#""{}""#,
            "",
        ] {
            assert!(!opens_like_falco(no.as_bytes()), "{no}");
        }
        // Another key first costs a second look, not the peek.
        let other_first = format!(r#"{{"x":[1],{}"#, &FALCO[1..]);
        let p = peek(&HeaderMap::new(), other_first.as_bytes()).expect("peeked");
        assert_eq!(
            (p.kind, &*p.peek.rule),
            (InputKind::Plain, "Terminal shell in container")
        );
    }

    #[test]
    fn a_key_twice_in_an_envelope_is_never_peeked() {
        let mut structured = HeaderMap::new();
        structured.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/cloudevents+json"),
        );
        let webhook = |header: &str| format!(r#"{{"header":{header},"body":{FALCO}}}"#);
        let argo_event = |context: &str, data: &str| {
            let b64 = base64::engine::general_purpose::STANDARD.encode(data);
            format!(r#"{{"context":{context},"data":"{b64}"}}"#)
        };
        let ce = |attributes: &str| {
            format!(
                r#"{{"specversion":"1.0",{attributes},"type":"{FALCO_CE_TYPE}","data":{FALCO}}}"#
            )
        };
        for (h, body) in [
            (&structured, ce(r#""id":"1","source":"s","id":"2""#)),
            (&structured, ce(r#""id":"1","source":"s","source":"t""#)),
            (
                &structured,
                ce(r#""id":"1","source":"s","ext":"a","ext":"b""#),
            ),
            (&HeaderMap::new(), webhook(r#"{"a":["x"],"a":["y"]}"#)),
            (
                &HeaderMap::new(),
                format!(r#"{{"header":{{}},"header":{{}},"body":{FALCO}}}"#),
            ),
            (
                &HeaderMap::new(),
                argo_event(r#"{"id":"1","id":"2"}"#, &webhook("{}")),
            ),
            (
                &HeaderMap::new(),
                argo_event(r#"{"id":"1"}"#, &webhook(r#"{"a":1,"a":2}"#)),
            ),
        ] {
            assert!(peek(h, body.as_bytes()).is_none(), "peeked: {body}");
            assert!(
                matches!(
                    decode(h, body.as_bytes()),
                    Err(DecodeError::DuplicateKey(_))
                ),
                "{body}"
            );
        }
        // The same keys once each: peeked.
        assert!(peek(&structured, ce(r#""id":"1","source":"s""#).as_bytes()).is_some());
        assert!(
            peek(
                &HeaderMap::new(),
                argo_event(r#"{"id":"1"}"#, &webhook("{}")).as_bytes()
            )
            .is_some()
        );
    }

    /// Every envelope a sender uses, around `falco` (a Falco event's JSON).
    fn every_envelope(falco: &str) -> Vec<(HeaderMap, String)> {
        let plain = HeaderMap::new();
        let webhook = format!(r#"{{"header":{{}},"body":{falco}}}"#);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&webhook);
        let mut structured = HeaderMap::new();
        structured.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/cloudevents+json"),
        );
        vec![
            (plain.clone(), falco.to_string()),
            (plain.clone(), format!(r#"{{"event": {falco}}}"#)),
            (
                plain.clone(),
                serde_json::json!({ "falco": falco }).to_string(),
            ),
            (plain.clone(), webhook),
            (
                plain,
                serde_json::json!({"context": {"id": "1"}, "data": b64}).to_string(),
            ),
            (binary_ce("s", FALCO_CE_TYPE), falco.to_string()),
            (
                structured.clone(),
                format!(
                    r#"{{"specversion":"1.0","id":"1","source":"s","type":"{FALCO_CE_TYPE}","data":{falco}}}"#
                ),
            ),
            (
                structured.clone(),
                serde_json::json!({"specversion": "1.0", "id": "1", "source": "s",
                    "type": FALCO_CE_TYPE, "datacontenttype": "text/plain", "data": falco})
                .to_string(),
            ),
            (
                structured,
                serde_json::json!({"specversion": "1.0", "id": "1", "source": "s",
                    "type": FALCO_CE_TYPE,
                    "data_base64": base64::engine::general_purpose::STANDARD.encode(falco)})
                .to_string(),
            ),
        ]
    }

    #[test]
    fn every_envelope_is_found_in_place_and_decodes_to_the_same_event() {
        let reference = plain(FALCO).unwrap().event;
        for (h, body) in every_envelope(FALCO) {
            let found = locate(&h, body.as_bytes()).unwrap();
            // The event's own text, before anything is built from it.
            let text: serde_json::Value = serde_json::from_slice(found.json()).unwrap();
            assert_eq!(
                text,
                serde_json::from_str::<serde_json::Value>(FALCO).unwrap()
            );
            let d = found.decode().unwrap();
            assert_eq!(
                serde_json::to_value(&d.event).unwrap(),
                serde_json::to_value(&reference).unwrap(),
                "{body}"
            );
        }
    }

    #[test]
    fn nested_output_fields_are_refused_naming_the_field_in_every_envelope() {
        for (fields, what) in [
            (
                r#"{"k8s.pod.name":"p","ka.req.pod":{"spec":{}}}"#,
                "an object",
            ),
            (
                r#"{"k8s.pod.name":"p","ka.req.pod":[["a"]]}"#,
                "a list in a list",
            ),
        ] {
            let falco = format!(r#"{{"rule":"r","priority":"Notice","output_fields":{fields}}}"#);
            for (h, body) in every_envelope(&falco) {
                let e = decode(&h, body.as_bytes()).unwrap_err();
                assert!(matches!(e, DecodeError::NotFalco(_)), "{body}: {e}");
                let e = e.to_string();
                assert!(
                    e.contains("\"ka.req.pod\"") && e.contains(what),
                    "{body}: {e}"
                );
            }
        }
    }

    #[test]
    fn long_strings_are_cut_never_refused() {
        let long = "x".repeat(1 << 20);
        let falco = serde_json::json!({"rule": "Terminal shell in container",
            "priority": "Notice", "output": long, "hostname": long, "tags": [long],
            "output_fields": {"k8s.ns.name": "prod", "k8s.pod.name": "web-0",
                "proc.cmdline": long, "ka.req.pod.containers.image": [long, "nginx"]}})
        .to_string();
        for (h, body) in every_envelope(&falco) {
            let d = decode(&h, body.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
            let ev = &d.event;
            assert_eq!(ev.target().unwrap().name.as_str(), "web-0");
            for text in [
                ev.output.as_deref().unwrap(),
                ev.hostname.as_deref().unwrap(),
                &ev.tags.as_ref().unwrap()[0],
                ev.field("proc.cmdline").unwrap(),
            ] {
                assert!(
                    text.len() < 4200 && text.ends_with(" bytes]"),
                    "{}",
                    text.len()
                );
            }
            assert!(ev.heap_bytes() < 64 << 10, "{}", ev.heap_bytes());
        }
    }

    #[test]
    fn a_cloudevent_envelope_is_bounded_before_the_sdk_reads_it() {
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/cloudevents+json"),
        );
        // An extension the SDK would build a tree of: refused first, named.
        let list = format!("[{}1]", "1,".repeat(200_000));
        let body = format!(
            r#"{{"specversion":"1.0","id":"1","source":"s","type":"{FALCO_CE_TYPE}","big":{list},"data":{FALCO}}}"#
        );
        let e = decode(&h, body.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("\"big\" is an array"), "{e}");
        // Attributes beyond the bound.
        let body = format!(
            r#"{{"specversion":"1.0","id":"1","source":"s","type":"{FALCO_CE_TYPE}","big":"{}","data":{FALCO}}}"#,
            "x".repeat(MAX_CE_ATTRIBUTES_BYTES)
        );
        let e = decode(&h, body.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("attributes and extensions"), "{e}");
        // What the SDK checks of the data's type still holds: not a string under text/plain.
        let body = format!(
            r#"{{"specversion":"1.0","id":"1","source":"s","type":"{FALCO_CE_TYPE}","datacontenttype":"text/plain","data":{FALCO}}}"#
        );
        assert!(matches!(
            decode(&h, body.as_bytes()),
            Err(DecodeError::CloudEvent(_))
        ));
        // Both data and data_base64, and a data_base64 that is not base64.
        for data in [r#""data":{},"data_base64":"e30=""#, r#""data_base64":"!!""#] {
            let body = format!(
                r#"{{"specversion":"1.0","id":"1","source":"s","type":"{FALCO_CE_TYPE}",{data}}}"#
            );
            assert!(
                matches!(decode(&h, body.as_bytes()), Err(DecodeError::CloudEvent(_))),
                "{body}"
            );
        }
        // CloudEvents 0.3: data in base64 by datacontentencoding.
        let body = serde_json::json!({"specversion": "0.3", "id": "1", "source": "s",
            "type": FALCO_CE_TYPE, "datacontentencoding": "Base64",
            "data": base64::engine::general_purpose::STANDARD.encode(FALCO)})
        .to_string();
        assert_eq!(
            decode(&h, body.as_bytes()).unwrap().event.rule,
            "Terminal shell in container"
        );
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
            "data": serde_json::from_str::<serde_json::Value>(FALCO).unwrap()});
        let d = decode(&h, body.to_string().as_bytes()).unwrap();
        assert_eq!(d.kind, InputKind::CloudEventStructured);
        assert_eq!(d.cloudevent.unwrap().source, "falco.org");
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/cloudevents-batch+json"),
        );
        assert_eq!(decode(&h, b"[]").unwrap_err(), DecodeError::Batch);
    }

    proptest::proptest! {
        /// The first look's base64 reads what the full decode's does, and refuses what it
        /// refuses: any bytes, encoded then edited (a byte changed, dropped or added, from the
        /// alphabet, padding, whitespace and a few others).
        #[test]
        fn the_first_looks_base64_reads_as_the_base64_crate(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            edits in proptest::collection::vec((proptest::prelude::any::<proptest::sample::Index>(), 0u8..3, proptest::sample::select(&b"AQgw+/=-_ \n.Z9"[..])), 0..3),
        ) {
            let mut b64 = base64::engine::general_purpose::STANDARD.encode(&data).into_bytes();
            for (at, how, byte) in edits {
                let i = at.index(b64.len() + 1);
                match how {
                    0 if i < b64.len() => b64[i] = byte,
                    1 if i < b64.len() => _ = b64.remove(i),
                    _ => b64.insert(i, byte),
                }
            }
            let reference = base64::engine::general_purpose::STANDARD.decode(&b64).ok();
            proptest::prop_assert_eq!(peek_base64(&b64), reference, "{}", String::from_utf8_lossy(&b64));
        }
    }
}
