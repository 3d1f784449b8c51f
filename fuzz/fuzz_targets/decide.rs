//! decide on arbitrary events under configurations chosen by the first byte. Checks in
//! `fuzz/checks.rs`.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::decide_one(data));
