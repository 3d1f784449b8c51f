//! The log lines of the real binary, fit for an incident: every per-event line
//! carries Falco's uuid and the CloudEvent id; the failure line keeps the event for replay but
//! bounded, identifiers intact; no line ever carries the auth token.

use http::{HeaderMap, HeaderValue, header};
use serde_json::Value;

use crate::testkit::binary::{Responder, closed_port, command, kubeconfig_for};
use crate::testkit::sender::{Envelope, http, terminal_shell, wrap};

const TOKEN: &str = "s3cret-token-0123456789";

/// The binary with a token and no endpoint-propagation delay, then `env`; once it answers
/// (an unreachable API keeps it from being ready: its breaker's records are not checked).
async fn start(env: &[(&str, &str)]) -> Responder {
    let defaults = [("AUTH_TOKEN", TOKEN), ("SHUTDOWN_DELAY_SECONDS", "0")];
    Responder::start_live(&[&defaults[..], env].concat()).await
}

/// `body` POSTed to `s` with the token.
async fn post(s: &Responder, body: &[u8]) -> crate::testkit::sender::HttpReply {
    http(s.addr, "POST", "/", &authorized(HeaderMap::new()), body).await
}

fn authorized(mut h: HeaderMap) -> HeaderMap {
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {TOKEN}")).unwrap(),
    );
    h
}

#[tokio::test]
async fn event_lines_carry_uuid_and_cloudevent_id_and_never_the_token() {
    let mut s = start(&[("DRY_RUN", "true")]).await;
    let event = terminal_shell("prod", "web-1", "ee97d9c4186f");
    let uuid = serde_json::from_str::<Value>(&event).unwrap()["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let (h, body) = wrap(Envelope::CloudEventBinary, &event);
    let ce_id = h["ce-id"].to_str().unwrap().to_string();
    let r = http(s.addr, "POST", "/", &authorized(h), &body).await;
    assert_eq!(r.status, 200);
    // A wrong token and a missing one: refused, and neither token is logged.
    let mut wrong = HeaderMap::new();
    wrong.insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Bearer guessed-token-987"),
    );
    assert_eq!(
        http(s.addr, "POST", "/", &wrong, event.as_bytes())
            .await
            .status,
        401
    );
    let log = s.stop().await;
    let line = log
        .lines()
        .find(|l| l.contains("event handled"))
        .unwrap_or_else(|| panic!("no event line in:\n{log}"));
    assert!(line.contains(&format!("uuid={uuid}")), "{line}");
    assert!(line.contains(&format!("ce_id={ce_id}")), "{line}");
    assert!(!log.contains(TOKEN), "the token is in the log:\n{log}");
    assert!(
        !log.contains("guessed-token-987"),
        "a wrong token is in the log:\n{log}"
    );
}

#[tokio::test]
async fn the_failure_line_keeps_a_bounded_event_with_its_identifiers() {
    let dir = tempfile::tempdir().unwrap();
    // A closed port: every API call fails, so the failure line is written.
    let kubeconfig = kubeconfig_for(dir.path(), closed_port());
    let mut s = start(&[
        ("KUBECONFIG", kubeconfig.to_str().unwrap()),
        ("API_TIMEOUT_SECONDS", "2"),
        ("LOG_FORMAT", "json"),
    ])
    .await;
    let mut event: Value =
        serde_json::from_str(&terminal_shell("prod", "web-1", "ee97d9c4186f")).unwrap();
    // An attacker-sized command line and output: 200 KB.
    event["output"] = Value::from("o".repeat(100_000));
    event["output_fields"]["proc.cmdline"] = Value::from("c".repeat(100_000));
    let body = event.to_string();
    let r = post(&s, body.as_bytes()).await;
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    let log = s.stop().await;
    let line = log
        .lines()
        .find(|l| l.contains("the sender should retry"))
        .unwrap_or_else(|| panic!("no failure line in:\n{log}"));
    assert!(
        line.len() < 12 * 1024,
        "failure line of {} bytes",
        line.len()
    );
    let fields: Value = serde_json::from_str(line).unwrap();
    assert_eq!(fields["uuid"], event["uuid"]);
    let logged: Value = serde_json::from_str(fields["event"].as_str().unwrap()).unwrap();
    assert!(fields["event"].as_str().unwrap().len() <= 8 * 1024);
    for key in ["rule", "priority", "uuid", "time"] {
        assert_eq!(logged[key], event[key], "{key}");
    }
    for key in ["k8s.ns.name", "k8s.pod.name", "container.id", "proc.name"] {
        assert_eq!(
            logged["output_fields"][key], event["output_fields"][key],
            "{key}"
        );
    }
    assert!(logged["output"].as_str().unwrap().ends_with("…(cut)"));
    assert!(!log.contains(TOKEN));
}

/// The line of an event skipped early (plain body, rule not in RULES) is written without
/// tracing's dispatch in the text format: it must be the same line, in every format, and obey
/// RUST_LOG like any other.
#[tokio::test]
async fn the_early_skip_line_is_the_usual_event_line_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    // A closed port: every API call fails, so the failure line is written.
    let kubeconfig = kubeconfig_for(dir.path(), closed_port());
    let kubeconfig = kubeconfig.to_str().unwrap();
    let event = terminal_shell("prod", "web-1", "ee97d9c4186f");
    let uuid = serde_json::from_str::<Value>(&event).unwrap()["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let (h, body) = wrap(Envelope::Plain, &event);
    for (format, level) in [("text", "info"), ("json", "info"), ("text", "warn")] {
        let mut s = start(&[
            ("KUBECONFIG", kubeconfig),
            ("RULES", "Some other rule"),
            ("LOG_FORMAT", format),
            ("RUST_LOG", level),
        ])
        .await;
        let r = http(s.addr, "POST", "/", &authorized(h.clone()), &body).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["outcome"], "skipped");
        let log = s.stop().await;
        let line = log.lines().find(|l| l.contains("event handled"));
        match (format, level) {
            ("text", "info") => {
                let line = line.unwrap_or_else(|| panic!("no event line in:\n{log}"));
                let (_, rest) = line.split_once(' ').unwrap();
                let (fields, ms) = rest.rsplit_once(" ms=").unwrap();
                assert_eq!(
                    fields,
                    format!(
                        " INFO event handled outcome=skipped pod=- \
                         rule=\"Terminal shell in container\" priority=Critical input=plain \
                         reason=\"rule \\\"Terminal shell in container\\\" is not in RULES\" \
                         uid=- workload=- uuid={uuid} ce_id=-"
                    )
                );
                assert!(ms.parse::<f64>().is_ok(), "{line}");
            }
            ("json", _) => {
                let line = line.unwrap_or_else(|| panic!("no event line in:\n{log}"));
                let fields: Value = serde_json::from_str(line).unwrap();
                assert_eq!(fields["outcome"], "skipped", "{line}");
                assert_eq!(fields["uuid"], uuid.as_str(), "{line}");
                assert_eq!(fields["rule"], "Terminal shell in container", "{line}");
                assert_eq!(fields["ce_id"], "-", "{line}");
            }
            _ => assert!(line.is_none(), "RUST_LOG=warn, yet:\n{log}"),
        }
    }
}

/// Attacker-sized strings (a megabyte of rule, of priority, of key names) come back and are
/// logged cut, in both log formats: the reply and the line stay a few KiB, where they were
/// megabytes (quoting multiplied them).
#[tokio::test]
async fn megabytes_of_rule_priority_or_keys_are_echoed_and_logged_bounded() {
    use falco_responder::app::reply::{REASON_MAX, RULE_MAX};
    // Characters that quoting multiplies: a quote, a backslash, a control character.
    let mega = "a\"\\\u{1}".repeat(1 << 18);
    let event = |rule: &str, priority: &str| {
        let mut e: Value =
            serde_json::from_str(&terminal_shell("prod", "web-1", "ee97d9c4186f")).unwrap();
        e["rule"] = rule.into();
        e["priority"] = priority.into();
        e.to_string()
    };
    let long_key = |i: usize| format!("{i}{}", "k\"".repeat(50_000));
    let keys: serde_json::Map<String, Value> =
        (0..8).map(|i| (long_key(i), Value::from(i))).collect();
    let mut nested = Value::from(1);
    for i in 0..5 {
        nested = serde_json::json!({ long_key(i): nested });
    }
    let cases = [
        ("rule", event(&mega, "Critical"), 200),
        ("priority", event("Terminal shell in container", &mega), 400),
        ("keys", Value::Object(keys).to_string(), 400),
        ("nested keys", nested.to_string(), 400),
    ];
    for format in ["text", "json"] {
        let mut s = start(&[
            ("DRY_RUN", "true"),
            ("RULES", "Terminal shell in container"),
            ("MAX_BODY_BYTES", "8388608"),
            ("LOG_FORMAT", format),
        ])
        .await;
        for (what, body, status) in &cases {
            let r = post(&s, body.as_bytes()).await;
            assert_eq!(
                r.status,
                *status,
                "{what}: {}",
                String::from_utf8_lossy(&r.body[..r.body.len().min(2000)])
            );
            // The reply's strings are cut (and marked); JSON escaping may double them.
            assert!(
                r.body.len() < 2 * (RULE_MAX + REASON_MAX) + 256,
                "{what}: a reply of {} bytes",
                r.body.len()
            );
            let v = r.json();
            let echoed = if *status == 200 {
                &v["rule"]
            } else {
                &v["error"]
            };
            assert!(echoed.as_str().unwrap().contains("…(cut)"), "{what}: {v}");
        }
        let log = s.stop().await;
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("event handled") || l.contains("rejected"))
            .collect();
        assert_eq!(lines.len(), cases.len(), "{}", &log[..log.len().min(4000)]);
        for line in lines {
            // Each echoed string is at most 512 bytes before quoting, and a few are logged.
            assert!(
                line.len() < 8 * 1024,
                "a {format} line of {} bytes",
                line.len()
            );
            assert!(line.contains("…(cut)"), "{line}");
        }
        assert!(
            log.len() < 32 * 1024,
            "{format}: a log of {} bytes",
            log.len()
        );
    }
}

/// The one-shot mode prints the same bounded reply on stdout, and a bounded line on stderr.
#[test]
fn the_one_shot_mode_echoes_a_megabyte_of_rule_bounded() {
    use std::{io::Write, process::Stdio};
    let mut event: Value =
        serde_json::from_str(&terminal_shell("prod", "web-1", "ee97d9c4186f")).unwrap();
    event["rule"] = "a\"\\\u{1}".repeat(1 << 18).into();
    let mut child = command()
        .args(["once"])
        .env("DRY_RUN", "true")
        .env("RULES", "Terminal shell in container")
        .env("MAX_BODY_BYTES", "8388608")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(event.to_string().as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        &stderr[..stderr.len().min(2000)]
    );
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["outcome"], "skipped", "{v}");
    assert!(v["rule"].as_str().unwrap().ends_with("…(cut)"), "{v}");
    assert!(
        stdout.len() < 2 * 1024,
        "a result of {} bytes",
        stdout.len()
    );
    assert!(stderr.len() < 8 * 1024, "stderr of {} bytes", stderr.len());
}
