//! What the fuzz targets check, shared with `tests/it/fuzz_regressions.rs`, which replays every
//! input in `fuzz/regressions/<target>/` (each finding of the fuzzer is committed there).
//!
//! Input format: HTTP header lines `name: value`, an empty line, then the body; input without an
//! empty line is all body. The `decide` target takes one more leading byte that chooses the
//! configuration.
#![allow(dead_code)]

use falco_responder::{
    config::Config,
    domain::falco::{
        FalcoEvent, FieldValue, MAX_FIELDS, MAX_KEY_BYTES, MAX_LIST_BYTES, MAX_LISTS_BYTES,
        MAX_TAGS, MAX_TEXT_BYTES,
    },
    domain::identity::{IdentityConfig, PROTECT_ANNOTATION, Verdict, verdict},
    domain::policy::{Decision, Rules, TEST_RULE, decide},
    ingest::decode::{Decoded, InputKind, decode, locate, peek, peek_plain},
};
use http::{HeaderMap, HeaderName, HeaderValue};
use k8s_openapi::{
    api::core::v1::{ContainerStatus, Pod, PodStatus},
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
    jiff::{SignedDuration, Timestamp},
};

pub fn split(data: &[u8]) -> (HeaderMap, &[u8]) {
    let mut headers = HeaderMap::new();
    let Some(end) = data.windows(2).position(|w| w == b"\n\n") else {
        return (headers, data);
    };
    for line in data[..end].split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(line[..colon].trim_ascii()),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) {
            headers.append(name, value);
        }
    }
    (headers, &data[end + 2..])
}

/// decode: never panics; what it accepts is an event the rest of the function can use.
pub fn decode_one(data: &[u8]) {
    let (headers, body) = split(data);
    // The cheap path to a skip reads a plain body exactly as decode does.
    if let Some(p) = peek_plain(&headers, body) {
        let d = decode(&headers, body).expect("peek accepted what decode refuses");
        assert_eq!(d.kind, InputKind::Plain);
        assert_eq!(d.event.rule, p.rule);
        assert_eq!(d.event.priority, p.priority);
        assert_eq!(d.event.source.as_deref(), p.source.as_deref());
        assert_eq!(d.event.uuid.as_deref(), p.uuid.as_deref());
    }
    // The first look through every envelope (CloudEvents, Argo) answers only what decode
    // reads: the same event, envelope and CloudEvent attributes.
    peek_agrees(&headers, body);
    // Finding the event without building it agrees with decoding it.
    let found = locate(&headers, body).map(|f| (f.kind, f.json().to_vec()));
    if let Ok(d) = decode(&headers, body) {
        let (kind, json) = found.expect("decode found what locate did not");
        assert_eq!(kind, d.kind);
        let again: FalcoEvent = serde_json::from_slice(&json).expect("the found text decodes");
        assert_eq!(
            serde_json::to_value(&again).unwrap(),
            serde_json::to_value(&d.event).unwrap()
        );
        bounded(&d, body.len());
        // A CloudEvent reply is promised exactly for CloudEvent inputs.
        assert_eq!(d.kind.is_cloudevent(), d.cloudevent.is_some());
        // The failure log line and replays serialise the event.
        serde_json::to_string(&d.event).expect("a decoded event serialises");
        let _ = d.event.target();
    }
}

/// `decode::peek`'s answer, if any, is decode's: `true` when there was one.
pub fn peek_agrees(headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(p) = peek(headers, body) else {
        return false;
    };
    let d = decode(headers, body).expect("peek accepted what decode refuses");
    assert_eq!(d.kind, p.kind);
    assert_eq!(d.event.rule, p.peek.rule);
    assert_eq!(d.event.priority, p.peek.priority);
    assert_eq!(d.event.source.as_deref(), p.peek.source.as_deref());
    assert_eq!(d.event.uuid.as_deref(), p.peek.uuid.as_deref());
    assert_eq!(d.cloudevent, p.cloudevent);
    true
}

/// A decoded event is flat and within its bounds, and costs at most about its body (a JSON tree
/// of the same body costs up to ~17 times it).
fn bounded(d: &Decoded, body_len: usize) {
    let ev = &d.event;
    // A cut string keeps MAX_TEXT_BYTES and says how much it lost.
    let text = |s: &str| assert!(s.len() <= MAX_TEXT_BYTES + 32, "{} bytes", s.len());
    ev.output.as_deref().map(text);
    ev.hostname.as_deref().map(text);
    if let Some(tags) = &ev.tags {
        assert!(tags.len() <= MAX_TAGS + 1);
        tags.iter().for_each(|t| text(t));
    }
    assert!(ev.output_fields.len() <= MAX_FIELDS);
    let mut lists = 0;
    for (key, value) in ev.output_fields.iter() {
        assert!(key.len() <= MAX_KEY_BYTES);
        match value {
            FieldValue::String(s) => text(s),
            FieldValue::List(l) => {
                assert!(l.get().len() <= MAX_LIST_BYTES + 32, "{key}");
                lists += l.get().len();
            }
            _ => {}
        }
    }
    assert!(lists <= MAX_LISTS_BYTES + 32 * ev.output_fields.len());
    assert!(
        d.heap_bytes() <= 2 * body_len + (128 << 10),
        "{} bytes decoded from {body_len}",
        d.heap_bytes()
    );
}

/// The configurations `decide` is fuzzed under, chosen by one byte.
pub fn config(selector: u8) -> Config {
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| vars.push((k.into(), v.into()));
    if selector & 1 != 0 {
        set("RULES", "*");
    }
    if selector & 2 != 0 {
        let p = ["Critical", "Warning", "Debug", "Emergency"][(selector >> 5) as usize & 3];
        set("MIN_PRIORITY", p);
    }
    if selector & 4 != 0 {
        set("NAMESPACES", "prod,default");
    }
    if selector & 8 != 0 {
        set("POD_NAMESPACE", "falco");
    }
    if selector & 16 != 0 {
        set("POD_NAME", "falco-responder-0");
    }
    if selector & 64 != 0 {
        set("TRUST_PROTECT_ANNOTATION", "true");
    }
    if selector & 128 != 0 {
        set(
            "GRACE_PERIOD_SECONDS",
            ["1", "5", "30", "600"][(selector >> 5) as usize & 3],
        );
    }
    Config::from_vars(vars).expect("a valid configuration")
}

/// decide: never panics; a Delete respects every rule of the configuration.
pub fn decide_one(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let cfg = config(selector).policy;
    let (headers, body) = split(rest);
    let Ok(d) = decode(&headers, body) else {
        return;
    };
    let ev = &d.event;
    match decide(ev, &cfg) {
        Decision::Delete(t) => {
            assert_ne!(ev.rule, TEST_RULE);
            assert_ne!(ev.source.as_deref(), Some("internal"));
            match &cfg.rules {
                Rules::Any => {}
                Rules::Named(names) => assert!(names.contains(&ev.rule)),
            }
            assert!(cfg.min_priority.is_none_or(|m| ev.priority >= m));
            assert!(!t.namespace.as_str().is_empty() && !t.name.as_str().is_empty());
            assert!(!cfg.protected_namespaces.contains(&t.namespace));
            assert_ne!(cfg.own_namespace.as_ref(), Some(&t.namespace));
            if cfg.own_namespace.is_none() {
                assert_ne!(cfg.own_pod.as_deref(), Some(t.name.as_str()));
            }
            assert!(
                cfg.namespaces
                    .as_ref()
                    .is_none_or(|n| n.contains(&t.namespace))
            );
            assert_eq!(ev.target().ok().as_ref(), Some(&t));
        }
        Decision::Skip { reason, .. } => assert!(!reason.is_empty()),
        Decision::Invalid(e) => assert!(!e.field.is_empty()),
    }
}

const OTHER_UID: &str = "00000000-0000-4000-8000-000000000000";

/// verdict: never panics; a DELETE only for the very pod the event saw, never a protected or
/// terminating one, with the configured grace. Input: configuration byte, six bytes that shape
/// the live pod (names, uid, annotation, deletion, containers, times), then the event.
pub fn verdict_one(data: &[u8]) {
    let Some((shape, rest)) = data.split_first_chunk::<7>() else {
        return;
    };
    let [selector, bits, created_s, remaining_s, period_s, now_s, _] = *shape;
    let cfg = config(selector);
    let (headers, body) = split(rest);
    let Ok(d) = decode(&headers, body) else {
        return;
    };
    let Ok(target) = d.event.target() else {
        return;
    };
    let bit = |n: u8| bits & (1 << n) != 0;
    let at = d
        .event
        .occurred_at()
        .unwrap_or(Timestamp::from_second(1_700_000_000).unwrap());
    let secs = |s: u8| SignedDuration::from_secs(i64::from(s) - 128);
    let live_uid = match (&target.uid, bit(3)) {
        (Some(u), true) => u.as_str().to_ascii_uppercase(),
        _ => OTHER_UID.to_string(),
    };
    let container = match (&target.container_id, bit(6)) {
        (Some(c), true) => format!("containerd://{:0<64}", c.as_str()),
        _ => format!("containerd://{:0<64}", "ffff"),
    };
    let pod = Pod {
        metadata: ObjectMeta {
            namespace: Some(if bit(1) {
                target.namespace.to_string()
            } else {
                "other".into()
            }),
            name: Some(if bit(0) {
                target.name.to_string()
            } else {
                "other".into()
            }),
            uid: bit(2).then(|| live_uid.clone()),
            annotations: bit(4)
                .then(|| [(PROTECT_ANNOTATION.to_string(), "true".to_string())].into()),
            creation_timestamp: bit(7).then(|| Time(at + secs(created_s))),
            deletion_timestamp: bit(5).then(|| Time(at + secs(remaining_s))),
            deletion_grace_period_seconds: (period_s > 0).then_some(i64::from(period_s)),
            ..Default::default()
        },
        status: Some(PodStatus {
            container_statuses: Some(vec![ContainerStatus {
                container_id: Some(container),
                name: "main".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let names_match = bit(0) && bit(1);
    match verdict(
        &pod,
        &target,
        &d.event,
        &IdentityConfig::from(&cfg),
        at + secs(now_s),
    ) {
        Verdict::Delete { uid, grace } => {
            assert!(names_match && bit(2));
            assert_eq!(uid, live_uid.to_ascii_lowercase());
            assert!(
                !(bit(4) && cfg.trust_protect_annotation),
                "deleted a protected pod"
            );
            assert!(!bit(5), "a plain DELETE for a terminating pod");
            assert_eq!(grace, cfg.grace_period_seconds);
            if let Some(u) = &target.uid {
                assert_eq!(u.as_str(), uid, "deleted a pod with another uid");
            }
        }
        Verdict::Shorten { uid, grace, .. } => {
            assert!(names_match && bit(2) && bit(5));
            assert!(!(bit(4) && cfg.trust_protect_annotation));
            assert_eq!(uid, live_uid.to_ascii_lowercase());
            assert_eq!(Some(grace), cfg.grace_period_seconds);
        }
        Verdict::Terminating { .. } => assert!(bit(5)),
        Verdict::Mismatch { .. } => assert!(!names_match || !bit(2)),
        Verdict::Stale { reason }
        | Verdict::Skipped { reason }
        | Verdict::NotYet { reason }
        | Verdict::Unproven { reason }
        | Verdict::Foreign { reason } => {
            assert!(!reason.is_empty())
        }
    }
}
