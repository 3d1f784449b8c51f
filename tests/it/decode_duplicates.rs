//! A key given twice anywhere in a Falco event is refused with a 400 naming the key, in every
//! envelope, through the real HTTP server: serde_json alone would act on the last value while
//! Argo's filter reads the first. The cheap skip path agrees (never a 200 `skipped`).

use base64::Engine;
use http::HeaderMap;
use serde_json::Value;

use crate::testkit::sender::{ENVELOPES, http, said, terminal_shell, wrap};
use crate::testkit::server::Server;

/// Stands in the event until the envelope is built, then becomes the duplicate.
const MARK: &str = r#""zz.mark":"here""#;

/// `body` with the mark replaced by `dup` at whatever layer it sits: raw JSON, a JSON string
/// (Argo without useRawData), base64 (Argo's whole event, CloudEvents `data_base64`).
fn inject(body: &[u8], dup: &str) -> Vec<u8> {
    let mut s = String::from_utf8(body.to_vec()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let v: Value = serde_json::from_str(&s).unwrap_or(Value::Null);
    let mut strings = vec![&v];
    while let Some(x) = strings.pop() {
        match x {
            Value::Object(m) => strings.extend(m.values()),
            Value::String(t) => {
                if let Ok(raw) = b64.decode(t)
                    && let Ok(text) = String::from_utf8(raw)
                    && text.contains(MARK)
                {
                    s = s.replace(t.as_str(), &b64.encode(text.replace(MARK, dup)));
                }
            }
            _ => {}
        }
    }
    let escaped = |j: &str| {
        let q = serde_json::to_string(j).unwrap();
        q[1..q.len() - 1].to_string()
    };
    s = s.replace(MARK, dup).replace(&escaped(MARK), &escaped(dup));
    assert!(s.contains(dup) || s.contains(&escaped(dup)) || !s.contains("zz.mark"));
    s.into_bytes()
}

fn marked_shell() -> String {
    let shell = terminal_shell("prod", "web-1", "ee97d9c4186f");
    // Into output_fields, and at the top level, once each.
    shell.replacen(
        r#""output_fields":{"#,
        &format!(r#""output_fields":{{{MARK},"#),
        1,
    )
}

#[tokio::test]
async fn a_duplicated_key_is_a_400_naming_it_in_every_envelope() {
    let s = Server::dry(&[]).await;
    for (dup, key) in [
        (r#""k8s.ns.name":"kube-system""#, "k8s.ns.name"),
        (r#""k8s.pod.name":"other""#, "k8s.pod.name"),
        (r#""x":{"a":1,"a":2}"#, "a"),
    ] {
        for &env in ENVELOPES {
            let (headers, body) = wrap(env, &marked_shell());
            let body = inject(&body, dup);
            let r = http(s.addr, "POST", "/", &headers, &body).await;
            let text = String::from_utf8_lossy(&r.body).to_string();
            assert_eq!(r.status, 400, "{env:?} {dup}: {text}");
            let error = said(&r.json(), "error").to_string();
            assert!(
                error.contains("appears twice") && error.contains(&format!("{key:?}")),
                "{env:?}: {error}"
            );
        }
    }
}

#[tokio::test]
async fn the_skip_path_refuses_too() {
    // A rule not in RULES is skipped on a peek of the body; with a key given twice it is not.
    let s = Server::dry(&[]).await;
    let skipped = r#"{"rule":"Write below etc","priority":"Notice","output_fields":{"k8s.ns.name":"prod","k8s.pod.name":"web-1"}}"#;
    let r = http(s.addr, "POST", "/", &HeaderMap::new(), skipped.as_bytes()).await;
    assert_eq!((r.status, said(&r.json(), "outcome")), (200, "skipped"));
    for body in [
        // The first rule is in RULES (what a filter reading the first value lets through), the
        // last is not: neither is taken.
        r#"{"rule":"Terminal shell in container","priority":"Notice","rule":"Write below etc","output_fields":{}}"#,
        r#"{"rule":"Write below etc","priority":"Notice","output_fields":{"k8s.ns.name":"prod","k8s.ns.name":"dev"}}"#,
        r#"{"rule":"Write below etc","priority":"Notice","tag":1,"tag":2}"#,
    ] {
        let r = http(s.addr, "POST", "/", &HeaderMap::new(), body.as_bytes()).await;
        assert_eq!(
            r.status,
            400,
            "{body}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(said(&r.json(), "error").contains("appears twice"), "{body}");
    }
}
