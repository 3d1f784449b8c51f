//! decode with arbitrary headers and body: every envelope (plain, CloudEvents binary and
//! structured, Argo shapes), and its first look `peek` through each (an answer that differs
//! from decode's is a crash). Checks in `fuzz/checks.rs`.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::decode_one(data));
