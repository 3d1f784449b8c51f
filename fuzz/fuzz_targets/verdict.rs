//! verdict: the live pod (shaped by fuzz bytes) against the event's target, under fuzzed
//! configurations. Checks in `fuzz/checks.rs`.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::verdict_one(data));
