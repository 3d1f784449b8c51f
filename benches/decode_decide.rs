//! Micro-benchmarks (criterion) of the pure, per-request CPU work: decoding each envelope a sender
//! uses, and the policy decision. Run with `cargo bench --bench decode_decide` (scripts/bench.sh
//! does, and copies the medians into docs/BENCHMARKS.md). Not part of `cargo test`.
//!
//! Every envelope wraps the same event (Falco's documented "Terminal shell in container" output
//! with Kubernetes fields), built by the same helpers as the black-box tests.

#[path = "../tests/testkit/sender.rs"]
mod common;

use std::hint::black_box;
use std::time::Duration;

use common::{ENVELOPES, Envelope, fixture, terminal_shell, wrap};
use criterion::{Criterion, criterion_group, criterion_main};
use falco_responder::{
    config::Config,
    domain::policy::{Decision, decide},
    ingest::decode::decode,
};

const CID: &str = "6ac7d190134e0123456789abcdef0123456789abcdef0123456789abcdef0123";

/// Stable, file-system friendly benchmark ids (criterion uses them as directory names).
fn id(envelope: Envelope) -> &'static str {
    match envelope {
        Envelope::Plain => "plain",
        Envelope::PlainNoContentType => "plain-no-content-type",
        Envelope::CloudEventBinary => "cloudevent-binary",
        Envelope::CloudEventStructured => "cloudevent-structured",
        Envelope::CloudEventStructuredBase64 => "cloudevent-structured-base64",
        Envelope::ArgoRaw => "argo-raw",
        Envelope::ArgoString => "argo-string",
        Envelope::ArgoWebhook => "argo-webhook",
        Envelope::ArgoEvent => "argo-event",
        Envelope::ArgoEventLegacy => "argo-event-legacy",
    }
}

fn decode_each_envelope(c: &mut Criterion) {
    let event = terminal_shell("shop", "frontend-7d9c", CID);
    let mut group = c.benchmark_group("decode");
    for &envelope in ENVELOPES {
        let (headers, body) = wrap(envelope, &event);
        // Fail loudly here rather than benchmark an error path.
        decode(&headers, &body).unwrap_or_else(|e| panic!("{envelope:?}: {e}"));
        group.bench_function(id(envelope), |b| {
            b.iter(|| decode(black_box(&headers), black_box(&body)))
        });
    }
    group.finish();
}

fn decide_cases(c: &mut Criterion) {
    let config = Config::from_vars(Vec::<(String, String)>::new())
        .expect("default config")
        .policy;
    let none = http::HeaderMap::new();
    let delete = decode(
        &none,
        terminal_shell("shop", "frontend-7d9c", CID).as_bytes(),
    )
    .expect("terminal shell")
    .event;
    let test_rule = decode(
        &none,
        fixture("falcosidekick-test-rule-debug-input.json").as_bytes(),
    )
    .expect("test rule")
    .event;
    let mut other =
        serde_json::from_str::<serde_json::Value>(&terminal_shell("shop", "frontend-7d9c", CID))
            .unwrap();
    other["rule"] = "Read sensitive file untrusted".into();
    let other_rule = decode(&none, other.to_string().as_bytes())
        .expect("other rule")
        .event;
    assert!(matches!(decide(&delete, &config), Decision::Delete(_)));
    assert!(matches!(decide(&test_rule, &config), Decision::Skip { .. }));
    assert!(matches!(
        decide(&other_rule, &config),
        Decision::Skip { .. }
    ));

    let mut group = c.benchmark_group("decide");
    for (name, event) in [
        ("delete-terminal-shell", &delete),
        ("skip-test-rule", &test_rule),
        ("skip-rule-not-in-rules", &other_rule),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| decide(black_box(event), black_box(&config)))
        });
    }
    group.finish();
}

fn config() -> Criterion {
    // Short enough for scripts/bench.sh's time budget; the medians are stable at this size.
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = decode_each_envelope, decide_cases
}
criterion_main!(benches);
