#!/usr/bin/env bash
# Coverage-guided fuzzing of decode (any headers and body, every envelope), of the policy
# decision and of the verdict on the live pod, with libFuzzer (the libfuzzer-sys crate) on the
# STABLE toolchain: coverage comes from LLVM's SanitizerCoverage pass, enabled with stable `-C`
# flags (what `cargo fuzz --sanitizer none` passes). No sanitizer is needed: the code under
# test is safe Rust, the
# fuzzer hunts panics and broken invariants (fuzz/checks.rs).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 60; .ci/run runs 20 per target)
#
# Seeds: every fixture of tests/fixtures in every envelope (examples/fuzz_seeds.rs) plus the
# committed findings in fuzz/regressions/. The corpus grows in fuzz/corpus/ (not committed).
# A finding stops the run (exit 1) and is written to fuzz/artifacts/<target>/: copy it to
# fuzz/regressions/<target>/, fix the bug, and `cargo test --test it fuzz_regressions` keeps it
# fixed. Environment: FUZZ_TARGETS ("decode decide verdict"), NO_INSTALL=1 (never call apt-get).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
log() { printf 'fuzz.sh: %s\n' "$*" >&2; }

seconds=${1:-60}
read -r -a targets <<<"${FUZZ_TARGETS:-decode decide verdict}"

# libfuzzer-sys compiles libFuzzer (C++).
if ! command -v c++ >/dev/null; then
  [[ "${NO_INSTALL:-}" != 1 && $(id -u) -eq 0 ]] || { log "needs a C++ compiler (g++)"; exit 1; }
  log "installing g++"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends g++ >/dev/null
fi

host=$(rustc -vV | sed -n 's/^host: //p')
# An explicit --target keeps the instrumentation off build scripts and proc macros.
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
log "building the fuzz targets (instrumented; the first build takes several minutes)"
# Not --locked: fuzz/Cargo.lock is the root lock plus libfuzzer-sys; when the crate gains a
# dependency, cargo adds it here rather than failing (the root build stays --locked).
cargo build --release --quiet --manifest-path fuzz/Cargo.toml --target "$host" --bins
unset RUSTFLAGS

seeds=fuzz/target/seeds
rm -rf "$seeds"
cargo run --locked --quiet --example fuzz_seeds -- "$seeds"

status=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t" "fuzz/regressions/$t"
  log "$t: ${seconds}s"
  if ! "fuzz/target/$host/release/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -max_len=65536 -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" \
      "fuzz/corpus/$t" "$seeds/$t" "fuzz/regressions/$t" 2>"fuzz/target/$t.log"; then
    tail -n 40 "fuzz/target/$t.log" >&2
    log "$t FOUND A PROBLEM: $(ls -t "fuzz/artifacts/$t" | head -n 1) in fuzz/artifacts/$t/;"
    log "copy it to fuzz/regressions/$t/ and fix it (cargo test --test it fuzz_regressions replays it)"
    status=1
  else
    grep -E '^stat::(number_of_executed_units|new_units_added|peak_rss_mb)|cov: ' "fuzz/target/$t.log" \
      | tail -n 4 >&2 || true
  fi
done
exit $status
