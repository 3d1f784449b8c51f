//! Writes the fuzzers' seed inputs (`scripts/fuzz.sh` runs it): every JSON fixture of
//! `tests/fixtures` in every envelope a sender uses, in the format of `fuzz/checks.rs`
//! (header lines, an empty line, the body). Usage: `cargo run --example fuzz_seeds -- DIR`;
//! writes DIR/decode/*, DIR/decide/* (the same with a configuration byte in front) and
//! DIR/verdict/* (with the configuration and live-pod shape bytes in front).

#[path = "../tests/testkit/sender.rs"]
mod common;

use std::path::PathBuf;

use common::{ENVELOPES, wrap};

fn main() {
    let out = PathBuf::from(std::env::args().nth(1).expect("usage: fuzz_seeds DIR"));
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let (decode, decide, verdict) = (out.join("decode"), out.join("decide"), out.join("verdict"));
    for dir in [&decode, &decide, &verdict] {
        std::fs::create_dir_all(dir).expect("seed directory");
    }
    let mut names: Vec<_> = std::fs::read_dir(&fixtures)
        .expect("tests/fixtures")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    let mut sources: Vec<(String, String)> = names
        .iter()
        .map(|path| {
            let json = std::fs::read_to_string(path).expect("fixture");
            (
                path.file_stem().unwrap().to_string_lossy().to_string(),
                json,
            )
        })
        .collect();
    // The shapes the parser bounds (README, "Limits"): a list field, a long one, a nested field.
    let docs = sources
        .iter()
        .find(|(stem, _)| stem == "falco-docs-terminal-shell-k8s-critical")
        .expect("the docs fixture")
        .1
        .clone();
    for (stem, value) in [
        (
            "list-field",
            serde_json::json!(["nginx:1.27", "busybox", true, 1, null]),
        ),
        ("long-list-field", serde_json::json!(vec![1u16; 2100])),
        (
            "nested-field",
            serde_json::json!({"spec": {"containers": [{}]}}),
        ),
    ] {
        let mut v: serde_json::Value = serde_json::from_str(&docs).expect("the docs fixture");
        v["output_fields"]["ka.req.pod.containers.image"] = value;
        sources.push((format!("bounds-{stem}"), v.to_string()));
    }
    let mut n = 0;
    for (stem, json) in sources {
        let mut seeds = vec![(format!("{stem}.raw"), json.clone().into_bytes())];
        if serde_json::from_str::<serde_json::Value>(&json).is_ok_and(|v| v.is_object()) {
            for &env in ENVELOPES {
                let (headers, body) = wrap(env, &json);
                let seed = common::fuzz_input(&headers, &body);
                seeds.push((format!("{stem}.{env:?}"), seed.clone()));
                if env == common::Envelope::CloudEventBinary {
                    // The other `source` Falcosidekick versions send.
                    let text = String::from_utf8_lossy(&seed).replacen(
                        "ce-source: https://falco.org",
                        "ce-source: falco.org",
                        1,
                    );
                    seeds.push((format!("{stem}.{env:?}-falco.org"), text.into_bytes()));
                }
            }
        }
        for (name, seed) in seeds {
            std::fs::write(decode.join(&name), &seed).expect("write seed");
            // Default configuration, and RULES=* with the rest set (0b0001_1111).
            for selector in [0u8, 0x1f] {
                let mut with = vec![selector];
                with.extend_from_slice(&seed);
                std::fs::write(decide.join(format!("{name}.{selector:02x}")), with)
                    .expect("write seed");
            }
            // The same pod (names, uid, containers, created before), a replaced one, a
            // protected and terminating one; GRACE_PERIOD_SECONDS set in the last.
            for (i, shape) in [
                [0u8, 0b1100_1111, 100, 200, 30, 130, 0],
                [0, 0b1000_0111, 200, 200, 0, 130, 0],
                [0x80, 0b1111_1111, 100, 250, 120, 130, 0],
            ]
            .iter()
            .enumerate()
            {
                let mut with = shape.to_vec();
                with.extend_from_slice(&seed);
                std::fs::write(verdict.join(format!("{name}.{i}")), with).expect("write seed");
            }
            n += 1;
        }
    }
    eprintln!("fuzz_seeds: {n} seeds in {}", out.display());
}
