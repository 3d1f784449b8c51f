//! Every input the fuzzers ever found a problem with (`fuzz/regressions/<target>/`), replayed
//! with the fuzz targets' own checks (`fuzz/checks.rs`); and the checks themselves on the
//! fixtures, so that a broken check cannot pass silently.

#[path = "../../fuzz/checks.rs"]
mod checks;

use std::path::Path;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

#[test]
fn decode_regressions_pass() {
    for (name, data) in inputs("decode") {
        eprintln!("{name}");
        checks::decode_one(&data);
    }
}

#[test]
fn decide_regressions_pass() {
    for (name, data) in inputs("decide") {
        eprintln!("{name}");
        checks::decide_one(&data);
    }
}

#[test]
fn verdict_regressions_pass() {
    for (name, data) in inputs("verdict") {
        eprintln!("{name}");
        checks::verdict_one(&data);
    }
}

#[test]
fn the_input_format_carries_headers_and_body() {
    let (h, body) = checks::split(b"ce-specversion: 1.0\ncontent-type: application/json\n\n{}");
    assert_eq!(h["ce-specversion"], "1.0");
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(body, b"{}");
    let (h, body) = checks::split(b"{\"rule\": 1}");
    assert!(h.is_empty());
    assert_eq!(body, b"{\"rule\": 1}");
}

#[test]
fn the_decide_check_sees_a_deletion() {
    // A Terminal shell event in namespace prod under the default configuration (selector 0)
    // reaches the Delete branch's assertions.
    let ev = crate::testkit::sender::terminal_shell("prod", "web-1", "ee97d9c4186f");
    let mut data = vec![0u8, b'\n', b'\n'];
    data.extend_from_slice(ev.as_bytes());
    let cfg = checks::config(0);
    let d =
        falco_responder::ingest::decode::decode(&http::HeaderMap::new(), ev.as_bytes()).unwrap();
    assert!(matches!(
        falco_responder::domain::policy::decide(&d.event, &cfg.policy),
        falco_responder::domain::policy::Decision::Delete(_)
    ));
    checks::decide_one(&data);
}

#[test]
fn the_decode_check_sees_every_envelope_peeked() {
    // The seeds' shape (fuzz_seeds: header lines, an empty line, the body): the peek check
    // runs on each envelope, so that a fast answer that differs from decode's is a crash.
    let ev = crate::testkit::sender::terminal_shell("prod", "web-1", "ee97d9c4186f");
    for &env in crate::testkit::sender::ENVELOPES {
        let (headers, body) = crate::testkit::sender::wrap(env, &ev);
        let data = crate::testkit::sender::fuzz_input(&headers, &body);
        let (h, b) = checks::split(&data);
        assert!(checks::peek_agrees(&h, b), "{env:?} not peeked");
        checks::decode_one(&data);
    }
}
