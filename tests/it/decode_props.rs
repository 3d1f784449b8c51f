//! Whatever arrives, decode answers Ok or a clear error; it never panics.

use falco_responder::{
    domain::falco::FalcoEvent,
    ingest::decode::{DecodeError, FALCO_CE_TYPE, InputKind, decode, peek, peek_plain},
};
use http::{HeaderMap, HeaderValue, header::CONTENT_TYPE};
use proptest::prelude::*;

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        "[a-z.{}\":\\[\\] ]{0,12}".prop_map(serde_json::Value::from),
        prop_oneof![
            Just("rule"),
            Just("priority"),
            Just("output_fields"),
            Just("Notice"),
            Just("body"),
            Just("data")
        ]
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("rule".to_string()),
                    Just("priority".to_string()),
                    Just("output_fields".to_string()),
                    Just("context".to_string()),
                    Just("data".to_string()),
                    Just("body".to_string()),
                    "[a-z]{1,6}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&HeaderMap::new(), &body);
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/cloudevents+json"));
        let _ = decode(&h, &body);
        let mut h = HeaderMap::new();
        h.insert("ce-specversion", HeaderValue::from_static("1.0"));
        let _ = decode(&h, &body);
    }

    #[test]
    fn arbitrary_json_never_panics_and_errors_say_something(v in json_value()) {
        let body = v.to_string();
        if let Err(e) = decode(&HeaderMap::new(), body.as_bytes()) {
            prop_assert!(!e.to_string().is_empty());
        }
    }
}

// The cheap peek (`decode::peek_plain`, a hand-written scanner) against serde_json: whatever
// it accepts, `decode` accepts as the same plain event; a malformed body is never peeked, so it
// is never answered 200 from a skip.

/// `Some` must mean: decode reads a plain Falco event with the same fields.
fn peek_agrees(body: &[u8]) -> Result<bool, TestCaseError> {
    let h = HeaderMap::new();
    let Some(p) = peek_plain(&h, body) else {
        return Ok(false);
    };
    let d = decode(&h, body);
    prop_assert!(
        d.is_ok(),
        "peeked a body decode refuses: {:?} ({:?})",
        String::from_utf8_lossy(body),
        d.err()
    );
    let d = d.unwrap();
    prop_assert_eq!(d.kind, InputKind::Plain);
    prop_assert_eq!(&d.event.rule, &*p.rule);
    prop_assert_eq!(d.event.priority, p.priority);
    prop_assert_eq!(d.event.source.as_deref(), p.source.as_deref());
    prop_assert_eq!(d.event.uuid.as_deref(), p.uuid.as_deref());
    Ok(true)
}

/// Strings as Falco writes them and as an attacker might: escapes, quotes, non-ASCII, controls.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 ._/:-]{0,40}",
        any::<String>(),
        "[\"\\\\\u{0}\u{1f}\u{7f}é€😀a ]{0,12}",
    ]
}

fn field_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        text().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(text(), inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A Falco event, sometimes with a key missing, mistyped, or extra keys.
fn falco_like() -> impl Strategy<Value = serde_json::Value> {
    let priority = prop_oneof![
        Just("Warning".to_string()),
        Just("notice".to_string()),
        Just(" Info ".to_string()),
        Just("Loud".to_string()),
        text(),
    ];
    (
        text(),
        priority,
        prop::option::of(prop_oneof![
            text().prop_map(serde_json::Value::from),
            field_value()
        ]),
        prop::option::of(prop_oneof![
            text().prop_map(serde_json::Value::from),
            field_value()
        ]),
        prop::option::of(field_value()),
        prop::collection::btree_map("[a-z.\\[\\]0-9]{1,16}", field_value(), 0..12),
        prop::collection::btree_map(
            prop_oneof![
                Just("output".to_string()),
                Just("time".to_string()),
                Just("hostname".to_string()),
                "[a-z_]{1,8}"
            ],
            field_value(),
            0..4,
        ),
        any::<u8>(),
    )
        .prop_map(
            |(rule, priority, source, uuid, tags, fields, extra, drop)| {
                let mut m = serde_json::Map::new();
                for (k, v) in extra {
                    m.insert(k, v);
                }
                m.insert("rule".into(), rule.into());
                m.insert("priority".into(), priority.into());
                if let Some(s) = source {
                    m.insert("source".into(), s);
                }
                if let Some(u) = uuid {
                    m.insert("uuid".into(), u);
                }
                if let Some(t) = tags {
                    m.insert("tags".into(), t);
                }
                m.insert(
                    "output_fields".into(),
                    serde_json::Value::Object(fields.into_iter().collect()),
                );
                match drop % 8 {
                    0 => {
                        m.remove("rule");
                    }
                    1 => {
                        m.insert("output_fields".into(), serde_json::Value::Null);
                    }
                    _ => {}
                }
                serde_json::Value::Object(m)
            },
        )
}

/// Bytes that change what JSON means.
fn edit_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        prop::sample::select(b"\"\\{}[],:-+.eE0123456789untrlsfa /\t\n".to_vec()),
        Just(0u8),
        Just(0x1f),
        Just(0x7f),
        Just(0x80),
        Just(0xc3),
        Just(0xed),
        Just(0xff),
        any::<u8>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn peek_accepts_falco_events_exactly_as_decode(v in falco_like(), pretty in any::<bool>()) {
        let body = if pretty {
            serde_json::to_string_pretty(&v).unwrap()
        } else {
            v.to_string()
        };
        let peeked = peek_agrees(body.as_bytes())?;
        // Never too careful for what Falco sends: a body decode reads as a plain event is
        // peeked unless it holds a \u escape of a surrogate or a number of 10^308 or more
        // (left to serde_json).
        let plain = serde_json::from_slice::<FalcoEvent>(body.as_bytes()).is_ok();
        let left_to_serde = ["\\ud", "\\uD", "e308", "e+308"];
        if plain && !left_to_serde.iter().any(|s| body.contains(s)) {
            prop_assert!(peeked, "not peeked: {body}");
        }
    }

    #[test]
    fn peek_never_accepts_what_decode_refuses(
        v in falco_like(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), edit_byte(), 0u8..4), 1..4),
    ) {
        let mut body = v.to_string().into_bytes();
        for (at, byte, how) in edits {
            let i = at.index(body.len() + 1);
            match how {
                0 => body.insert(i, byte),
                1 if i < body.len() => body[i] = byte,
                2 if i < body.len() => {
                    body.remove(i);
                }
                _ => body.truncate(i),
            }
        }
        peek_agrees(&body)?;
    }

    #[test]
    fn peek_of_arbitrary_json_agrees(v in json_value()) {
        peek_agrees(v.to_string().as_bytes())?;
    }

    #[test]
    fn peek_of_arbitrary_bytes_agrees(body in prop::collection::vec(edit_byte(), 0..64)) {
        peek_agrees(&body)?;
    }
}

#[test]
fn peek_edge_cases_agree_with_serde() {
    let ok = r#"{"rule":"r","priority":"Notice","output_fields":{}}"#;
    for (body, peeked) in [
        (ok.to_string(), true),
        (format!(" \n{ok}\t\r "), true),
        (r#"{"rule":"r","priority":"Notice"}"#.into(), true),
        (
            r#"{"priority":"Notice","rule":"r\"\\\/\b\f\n\r\t\u00e9"}"#.into(),
            true,
        ),
        (
            r#"{"rule":"r","priority":"Notice","x":[1,-0,0.5,1e5,-2E-3,true,false,null,{}]}"#
                .into(),
            true,
        ),
        (
            r#"{"rule":"r","priority":"Notice","output_fields":{"a":1e-400,"b":-0.1e-99999999}}"#
                .into(),
            true,
        ),
        (
            format!(
                r#"{{"rule":"r","priority":"Notice","output_fields":{{"a":{}}}}}"#,
                "9".repeat(300)
            ),
            true,
        ),
        // decode refuses all of these
        (r#"{"rule":"r","priority":"Notice","x":01}"#.into(), false),
        (r#"{"rule":"r","priority":"Notice","x":1.}"#.into(), false),
        (r#"{"rule":"r","priority":"Notice","x":-}"#.into(), false),
        (r#"{"rule":"r","priority":"Notice","x":[1,]}"#.into(), false),
        (r#"{"rule":"r","priority":"Notice",}"#.into(), false),
        (r#"{"rule":"r","priority":"Notice"} x"#.into(), false),
        (
            r#"{"rule":"r","priority":"Notice","output_fields":{"a":1e400}}"#.into(),
            false,
        ),
        (
            r#"{"rule":"r","priority":"Notice","tags":["a",1]}"#.into(),
            false,
        ),
        (r#"{"rule":"r","priority":"Notice","uuid":1}"#.into(), false),
        (
            r#"{"rule":"r","priority":"Notice","output":"\x"}"#.into(),
            false,
        ),
        (
            r#"{"rule":"r","priority":"Notice","output":"\u12"}"#.into(),
            false,
        ),
        (
            r#"{"rule":"r","priority":"Notice","output":"a	b"}"#.into(),
            false,
        ),
        (
            r#"{"rule":"r","priority":"Notice","source":"s","source":"t"}"#.into(),
            false,
        ),
        // left to serde_json (it accepts them): the peek is careful, decode decides
        (
            r#"{"rule":"\ud83d\ude00","priority":"Notice"}"#.into(),
            false,
        ),
        (r#"{"rul\u0065":"r","priority":"Notice"}"#.into(), false),
        (r#"["r","Notice"]"#.into(), false),
    ] {
        let h = HeaderMap::new();
        assert_eq!(peek_plain(&h, body.as_bytes()).is_some(), peeked, "{body}");
        if peeked {
            assert!(decode(&h, body.as_bytes()).is_ok(), "{body}");
        }
    }
    // Invalid UTF-8 inside a string.
    let mut bad = br#"{"rule":"r","priority":"Notice","output":"xx"}"#.to_vec();
    let at = bad.len() - 3;
    bad[at] = 0xff;
    assert!(peek_plain(&HeaderMap::new(), &bad).is_none());
    assert!(decode(&HeaderMap::new(), &bad).is_err());
}

proptest! {
    /// A key given twice in `output_fields` or at the top level, wherever it sits among the
    /// others: never peeked (so never skipped on a peek), and decode names the key.
    #[test]
    fn a_key_given_twice_is_refused_by_peek_and_decode(
        fields in prop::collection::btree_map("[a-z.\\[\\]0-9]{1,16}", field_value(), 1..12),
        which in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        again in field_value(),
        top in any::<bool>(),
    ) {
        let mut entries: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{}:{v}", serde_json::to_string(k).unwrap()))
            .collect();
        let key = fields.keys().nth(which.index(fields.len())).unwrap().clone();
        let dup = format!("{}:{again}", serde_json::to_string(&key).unwrap());
        entries.insert(at.index(entries.len() + 1), dup);
        let body = if top {
            format!(r#"{{"rule":"r","priority":"Notice",{}}}"#, entries.join(","))
        } else {
            format!(
                r#"{{"rule":"r","priority":"Notice","output_fields":{{{}}}}}"#,
                entries.join(",")
            )
        };
        let h = HeaderMap::new();
        prop_assert!(peek_plain(&h, body.as_bytes()).is_none(), "peeked: {}", body);
        let e = decode(&h, body.as_bytes());
        let clash = top && fields.keys().any(|k| k == "rule" || k == "priority");
        let expected = if clash {
            None // then "rule" or "priority" is given twice as well: that key may be named
        } else {
            Some(DecodeError::DuplicateKey(key.clone()))
        };
        match expected {
            Some(expected) => prop_assert_eq!(e.unwrap_err(), expected),
            None => prop_assert!(e.is_err()),
        }
    }
}

// The first look through every envelope (`decode::peek`: CloudEvents binary and structured, the
// Argo shapes) against the full decode (cloudevents-sdk, base64, serde_json): whatever it
// answers, decode reads the same event from the same envelope with the same attributes.

use crate::testkit::sender::{ENVELOPES, Envelope, wrap};

/// `Some` from `peek` must mean: decode reads the same event in the same envelope.
fn envelope_peek_agrees(h: &HeaderMap, body: &[u8]) -> Result<bool, TestCaseError> {
    let Some(p) = peek(h, body) else {
        return Ok(false);
    };
    let d = decode(h, body);
    prop_assert!(
        d.is_ok(),
        "peeked a request decode refuses: {:?} {:?} ({:?})",
        h,
        String::from_utf8_lossy(body),
        d.err()
    );
    let d = d.unwrap();
    prop_assert_eq!(d.kind, p.kind);
    prop_assert_eq!(&d.event.rule, &*p.peek.rule);
    prop_assert_eq!(d.event.priority, p.peek.priority);
    prop_assert_eq!(d.event.source.as_deref(), p.peek.source.as_deref());
    prop_assert_eq!(d.event.uuid.as_deref(), p.peek.uuid.as_deref());
    prop_assert_eq!(&d.cloudevent, &p.cloudevent);
    Ok(true)
}

/// `wrap`, but binary mode by hand for any event: the SDK refuses to write a rule that is not
/// visible ASCII as its `ce-rule` extension (Falcosidekick then leaves it out).
fn wrap_any(env: Envelope, falco: &str) -> (HeaderMap, Vec<u8>) {
    if env != Envelope::CloudEventBinary {
        return wrap(env, falco);
    }
    let v: serde_json::Value = serde_json::from_str(falco).unwrap();
    let mut h = HeaderMap::new();
    h.insert("ce-specversion", HeaderValue::from_static("1.0"));
    h.insert(
        "ce-id",
        HeaderValue::from_static("7d3c8a4e-5b6f-4c2d-9e1a-3f4b5c6d7e8f"),
    );
    h.insert("ce-source", HeaderValue::from_static("https://falco.org"));
    h.insert("ce-type", HeaderValue::from_static(FALCO_CE_TYPE));
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for key in ["rule", "priority"] {
        // `from_str` also takes bytes past ASCII, which `to_str` (and the SDK) refuse.
        let visible = v[key]
            .as_str()
            .filter(|s| s.bytes().all(|b| (b' '..=b'~').contains(&b)));
        if let Some(Ok(value)) = visible.map(HeaderValue::from_str) {
            h.insert(
                format!("ce-{key}").parse::<http::HeaderName>().unwrap(),
                value,
            );
        }
    }
    (h, falco.as_bytes().to_vec())
}

fn envelope() -> impl Strategy<Value = Envelope> {
    prop::sample::select(ENVELOPES.to_vec())
}

/// Binary-mode headers as senders write them and as they should not: both `source` values of
/// Falcosidekick, a time (valid or not), extensions, repeated and missing attributes, another
/// spec version or type, a header value that is not text, a `dataschema`.
fn binary_headers() -> impl Strategy<Value = HeaderMap> {
    let source = prop_oneof![
        Just("https://falco.org".to_string()),
        Just("falco.org".to_string()),
        Just(String::new()),
        "[ -~]{0,12}",
    ];
    let time = prop_oneof![
        Just("2026-11-30T10:21:07.312905512Z".to_string()),
        Just("2026-11-30T10:21:07+02:00".to_string()),
        Just("2026-11-30 10:21:07".to_string()),
        "[0-9TZ:.+-]{0,24}",
    ];
    (
        source,
        prop::option::of(time),
        prop::collection::vec(
            (
                prop::sample::select(vec![
                    "ce-id",
                    "ce-source",
                    "ce-type",
                    "ce-specversion",
                    "ce-subject",
                    "ce-datacontenttype",
                    "ce-dataschema",
                    "ce-rule",
                    "ce-priority",
                    "content-type",
                ]),
                prop_oneof![
                    "[ -~]{0,12}".prop_map(|v| v.into_bytes()),
                    Just(b"1.0".to_vec()),
                    Just(b"0.3".to_vec()),
                    Just(FALCO_CE_TYPE.as_bytes().to_vec()),
                    Just(b"application/cloudevents+json".to_vec()),
                    Just(b"https://falco.org/schema".to_vec()),
                    Just(b"caf\xc3\xa9".to_vec()),
                ],
            ),
            0..3,
        ),
        any::<u8>(),
    )
        .prop_map(|(source, time, extra, drop)| {
            let mut h = HeaderMap::new();
            let mut set = |k: &'static str, v: &[u8]| {
                if let Ok(v) = HeaderValue::from_bytes(v) {
                    h.append(k, v);
                }
            };
            set("ce-specversion", b"1.0");
            set("ce-id", b"5c9e4f3a-3c5d-4f0e-9a1b-0d2f6c8e7a10");
            set("ce-source", source.as_bytes());
            set("ce-type", FALCO_CE_TYPE.as_bytes());
            set("content-type", b"application/json");
            if let Some(t) = time {
                set("ce-time", t.as_bytes());
            }
            for (k, v) in extra {
                set(k, &v);
            }
            match drop % 8 {
                0 => {
                    h.remove(
                        ["ce-id", "ce-source", "ce-type", "ce-specversion"]
                            [(drop >> 3) as usize % 4],
                    );
                }
                1 => {
                    h.remove("content-type");
                }
                _ => {}
            }
            h
        })
}

/// Byte edits that change what JSON (or base64) means, at random places.
fn edit(body: &mut Vec<u8>, edits: &[(prop::sample::Index, u8, u8)]) {
    for (at, byte, how) in edits {
        let i = at.index(body.len() + 1);
        match how {
            0 => body.insert(i, *byte),
            1 if i < body.len() => body[i] = *byte,
            2 if i < body.len() => {
                body.remove(i);
            }
            _ => body.truncate(i),
        }
    }
}

/// The opening brace of the object whose member `quoted` (`"key":`) is first found in compact
/// JSON text: the innermost brace still open there, strings skipped. The nearest `{` before the
/// key may belong to an object already closed (`{"a":{},"key":1}`).
fn object_holding(text: &str, quoted: &str) -> usize {
    let (mut open, mut in_string, mut escaped) = (Vec::new(), false, false);
    for (i, c) in text.bytes().enumerate() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' if text[i..].starts_with(quoted) => return *open.last().unwrap(),
            b'"' => in_string = true,
            b'{' => open.push(i),
            b'}' => _ = open.pop(),
            _ => {}
        }
    }
    panic!("{quoted} is not a member of {text}")
}

#[test]
fn the_key_given_twice_goes_into_its_own_object() {
    let text = r#"{"_":{"":"{"},"k":{"k":1},"s":"\"k\":"}"#;
    assert_eq!(object_holding(text, r#""k":"#), 0);
    assert_eq!(object_holding(text, r#""":"#), 5);
}

/// Keys of JSON text at any depth: the one to give twice.
fn keys_of(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                out.push(k.clone());
                keys_of(v, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| keys_of(v, out)),
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// A Falco event in every envelope as the sender kit writes it (cloudevents-sdk for the
    /// CloudEvents): peeked exactly as decoded, and peeked at all unless the event holds what
    /// the plain peek leaves to serde_json.
    #[test]
    fn every_envelope_is_peeked_exactly_as_decoded(v in falco_like(), env in envelope()) {
        let falco = v.to_string();
        let (h, body) = wrap_any(env, &falco);
        let peeked = envelope_peek_agrees(&h, &body)?;
        let plain = serde_json::from_slice::<FalcoEvent>(falco.as_bytes()).is_ok();
        let left_to_serde = ["\\ud", "\\uD", "e308", "e+308"];
        if plain && !left_to_serde.iter().any(|s| falco.contains(s)) {
            prop_assert!(peeked, "not peeked: {:?} {:?}", env, String::from_utf8_lossy(&body));
        }
    }

    /// Binary mode under any headers: the SDK's reading of them, the last of a repeated one.
    #[test]
    fn binary_mode_is_peeked_exactly_as_decoded_under_any_headers(
        v in falco_like(),
        h in binary_headers(),
    ) {
        envelope_peek_agrees(&h, v.to_string().as_bytes())?;
    }

    /// Every envelope, its body edited: never a peek that decode would not read the same.
    #[test]
    fn edited_envelopes_are_never_peeked_otherwise_than_decoded(
        v in falco_like(),
        env in envelope(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), edit_byte(), 0u8..4), 1..4),
    ) {
        let (h, mut body) = wrap_any(env, &v.to_string());
        edit(&mut body, &edits);
        envelope_peek_agrees(&h, &body)?;
    }

    /// Every envelope with one of its keys given twice (the envelope's, the Argo context's or
    /// header's, the event's): never peeked, and decode refuses it.
    #[test]
    fn a_key_twice_in_any_envelope_is_never_peeked(
        v in falco_like(),
        env in envelope(),
        which in any::<prop::sample::Index>(),
        // A string half the time: the type an envelope's attributes have.
        again in prop_oneof![text().prop_map(serde_json::Value::from), field_value()],
    ) {
        let (h, body) = wrap_any(env, &v.to_string());
        let Ok(tree) = serde_json::from_slice::<serde_json::Value>(&body) else {
            return Ok(()); // binary mode's body is the event: the plain properties cover it
        };
        let mut keys = Vec::new();
        keys_of(&tree, &mut keys);
        let key = &keys[which.index(keys.len())];
        // The first occurrence of `"key":` in the text, given again right after its object's
        // opening brace (serde_json's writer puts no space there).
        let quoted = format!("{}:", serde_json::to_string(key).unwrap());
        let text = String::from_utf8(body).unwrap();
        let open = object_holding(&text, &quoted);
        let body = format!("{}{quoted}{again},{}", &text[..=open], &text[open + 1..]);
        prop_assert!(
            peek(&h, body.as_bytes()).is_none(),
            "peeked a key given twice: {}",
            body
        );
        prop_assert!(decode(&h, body.as_bytes()).is_err(), "{}", body);
    }
}
