//! What the fuzz targets check, shared with `tests/fuzz_regressions.rs`, which replays every
//! input in `fuzz/regressions/<target>/` (each finding of the fuzzer is committed there).
//!
//! Input format: HTTP header lines `name: value`, an empty line, then the body; input without an
//! empty line is all body. The `decide` target takes one more leading byte that chooses the
//! configuration.
#![allow(dead_code)]

use falco_responder::{
    config::{Config, Rules},
    decode::decode,
    policy::{Decision, TEST_RULE, decide},
};
use http::{HeaderMap, HeaderName, HeaderValue};

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
    if let Ok(d) = decode(&headers, body) {
        // A CloudEvent reply is promised exactly for CloudEvent inputs.
        assert_eq!(d.kind.is_cloudevent(), d.cloudevent.is_some());
        // The failure log line and replays serialise the event.
        serde_json::to_string(&d.event).expect("a decoded event serialises");
        let _ = d.event.target();
    }
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
    Config::from_vars(vars).expect("a valid configuration")
}

/// decide: never panics; a Delete respects every rule of the configuration.
pub fn decide_one(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let cfg = config(selector);
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
            assert!(!t.namespace.is_empty() && !t.name.is_empty());
            assert!(!cfg.protected_namespaces.contains(&t.namespace));
            assert_ne!(cfg.own_namespace.as_deref(), Some(t.namespace.as_str()));
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
    }
}
