//! Whatever arrives, decode answers Ok or a clear error; it never panics.

use falco_responder::decode::decode;
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
