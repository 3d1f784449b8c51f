//! Decode and decision over the real Falco fixtures, each Terminal-shell sample in every envelope.

use crate::testkit::sender::{ENVELOPES, Envelope, TERMINAL_SHELL, fixture, wrap};
use crate::testkit::server::config;
use falco_responder::{
    domain::falco::Priority,
    domain::policy::{Decision, Policy, decide},
    ingest::decode::decode,
};
use http::{HeaderMap, HeaderName, HeaderValue};

/// The policy part of the configuration these variables give.
fn policy(vars: &[(&str, &str)]) -> Policy {
    config(vars).policy
}

fn decode_plain(name: &str) -> falco_responder::domain::falco::FalcoEvent {
    decode(&HeaderMap::new(), fixture(name).as_bytes())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .event
}

fn skip_reason(name: &str, cfg: &Policy) -> String {
    match decide(&decode_plain(name), cfg) {
        Decision::Skip { reason, .. } => reason,
        other => panic!("{name}: expected a skip, got {other:?}"),
    }
}

#[test]
fn every_terminal_shell_fixture_decodes_identically_in_every_envelope() {
    let cfg = policy(&[]);
    for name in TERMINAL_SHELL {
        let reference = decode_plain(name);
        let expected_target = reference.target().unwrap();
        for &envelope in ENVELOPES {
            let (headers, body) = wrap(envelope, &fixture(name));
            let d =
                decode(&headers, &body).unwrap_or_else(|e| panic!("{name} in {envelope:?}: {e}"));
            assert_eq!(
                d.kind.as_str(),
                envelope.input_kind(),
                "{name} in {envelope:?}"
            );
            assert_eq!(d.cloudevent.is_some(), envelope.is_cloudevent());
            assert_eq!(d.event.rule, "Terminal shell in container");
            assert_eq!(d.event.priority, reference.priority);
            assert_eq!(
                d.event.output_fields, reference.output_fields,
                "{name} in {envelope:?}"
            );
            assert_eq!(
                decide(&d.event, &cfg),
                Decision::Delete(expected_target.clone())
            );
        }
    }
}

/// Every fixture that is a Falco event decodes into its bounded form with nothing lost: the
/// same event serde_json's own tree of the body gives (real events are far within the bounds).
#[test]
fn every_fixture_decodes_to_what_serde_json_reads() {
    let dir = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let Ok(tree) = serde_json::from_str::<serde_json::Value>(&fixture(&name)) else {
            continue; // the sdk-go text dump
        };
        if tree.get("rule").is_none() {
            continue; // the Argo envelope, decoded through its data below
        }
        let e = decode_plain(&name);
        let known = [
            "rule",
            "priority",
            "uuid",
            "output",
            "time",
            "source",
            "hostname",
            "tags",
            "output_fields",
        ];
        let mut expected = tree.as_object().unwrap().clone();
        expected.retain(|k, v| known.contains(&k.as_str()) && !v.is_null());
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::Value::Object(expected),
            "{name}"
        );
        seen += 1;
    }
    assert!(seen >= 9, "{seen} fixtures");
}

#[test]
fn terminal_shell_targets_per_falco_generation() {
    let t = decode_plain("falco-docs-terminal-shell-k8s-critical.json")
        .target()
        .unwrap();
    assert_eq!(
        (t.namespace.as_str(), t.name.as_str()),
        ("default", "kubecon")
    );
    assert_eq!(
        t.container_id.as_ref().map(|c| c.as_str()),
        Some("ee97d9c4186f")
    );
    let t = decode_plain("falco-0.28-stdout-terminal-shell-k8s.json")
        .target()
        .unwrap();
    assert_eq!(
        (t.namespace.as_str(), t.name.as_str()),
        ("falcoresponse", "alpine")
    );
    // Falco 0.27: null values (`<NA>`) beside the pod fields.
    let e = decode_plain("falco-0.27-terminal-shell-k8s-null-fields.json");
    assert!(e.output_fields.get("proc.pname").unwrap().is_null());
    assert_eq!(e.target().unwrap().name, "alpine");
    // Through a Go float64: evt.time lost precision but the event is intact.
    let e = decode_plain("falcosidekick-cloudevent-knative-terminal-shell.data.json");
    assert_eq!(e.time.as_deref(), Some("2021-01-11T23:46:19.82302759Z"));
    assert_eq!(e.target().unwrap().name, "mysql-db-7d59548d75-wh44s");
    assert_eq!(e.priority, Priority::Notice);
}

#[test]
fn integers_beyond_2_pow_53_are_kept_exactly() {
    let e = decode_plain("falco-docs-terminal-shell-k8s-critical.json");
    assert_eq!(
        e.output_fields.get("evt.time").and_then(|v| v.as_u64()),
        Some(1685022245478445995)
    );
}

/// The real sdk-go dump from n3wscott/falco-drop, replayed as the binary-mode request it was.
#[test]
fn the_real_falcosidekick_cloudevent_dump_decodes() {
    let dump = fixture("falcosidekick-cloudevent-knative-terminal-shell.ce.txt");
    let mut headers = HeaderMap::new();
    let mut section = "";
    for line in dump.lines() {
        let trimmed = line.trim();
        if trimmed.ends_with(',') && !line.starts_with(' ') {
            section = trimmed.trim_end_matches(',');
            continue;
        }
        if section == "Data" {
            break;
        }
        if let Some((k, v)) = trimmed.split_once(": ") {
            let name = if k == "datacontenttype" {
                "content-type".to_string()
            } else {
                format!("ce-{k}")
            };
            headers.insert(
                HeaderName::try_from(name).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
    }
    assert_eq!(headers["ce-source"], "falco.org");
    let body = fixture("falcosidekick-cloudevent-knative-terminal-shell.data.json");
    let d = decode(&headers, body.as_bytes()).unwrap();
    assert_eq!(d.kind.as_str(), "cloudevent-binary");
    let ce = d.cloudevent.unwrap();
    assert_eq!(ce.id, "f7628198-3822-4c98-ac3f-71770e272a16");
    assert_eq!(ce.ty, "falco.rule.output.v1");
    assert!(
        matches!(decide(&d.event, &policy(&[])), Decision::Delete(t) if t.name == "mysql-db-7d59548d75-wh44s")
    );
}

#[test]
fn events_without_a_pod_are_skipped_with_the_reason() {
    let any = policy(&[("RULES", "*")]);
    assert!(
        skip_reason(
            "falco-0.31-host-write-below-binary-dir-no-container.json",
            &any
        )
        .contains("host")
    );
    assert!(
        skip_reason("falco-0.31-docker-privileged-container-no-k8s.json", &any)
            .contains("without Kubernetes pod")
    );
    assert!(
        skip_reason(
            "falco-k8saudit-serviceaccount-created-non-pod-target.json",
            &any
        )
        .contains("serviceaccounts")
    );
    assert!(skip_reason("falco-0.41-internal-metrics-snapshot.json", &any).contains("internal"));
    assert!(skip_reason("falcosidekick-test-rule-debug-input.json", &any).contains("test event"));
}

#[test]
fn rules_not_listed_are_skipped_by_default() {
    let r = skip_reason(
        "falco-0.31-host-write-below-binary-dir-no-container.json",
        &policy(&[]),
    );
    assert!(r.contains("not in RULES"), "{r}");
}

#[test]
fn the_real_argo_whole_event_envelope_is_unwrapped_and_its_non_falco_body_rejected() {
    let err = decode(
        &HeaderMap::new(),
        fixture("argo-events-webhook-whole-event-envelope-pre-v0.14.json").as_bytes(),
    )
    .unwrap_err()
    .to_string();
    // The envelope (context + base64 data) and the webhook data (header + body) were
    // understood: the error is about what was found inside the body, `{"message": ...}`.
    assert!(err.contains("not a Falco event"), "{err}");
    assert!(
        err.contains(r#"in the Argo event's data: under "body": under "message""#),
        "{err}"
    );
}

#[test]
fn the_argo_envelopes_survive_every_terminal_shell_fixture_as_a_workflow_body() {
    // What the WorkflowTemplate passes as BODY: the whole event, as a JSON string.
    for name in TERMINAL_SHELL {
        for env in [Envelope::ArgoEvent, Envelope::ArgoEventLegacy] {
            let (_, body) = wrap(env, &fixture(name));
            let d = decode(&HeaderMap::new(), &body).unwrap();
            assert_eq!(d.kind.as_str(), "argo-event");
        }
    }
}
