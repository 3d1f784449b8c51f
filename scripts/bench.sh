#!/usr/bin/env bash
# The benchmarks, in one command: writes docs/BENCHMARKS.md.
#
#   scripts/bench.sh
#
# On a 2-core Debian bookworm machine, as root (or with wrk and musl-tools installed):
# 1. provides a real kube-apiserver + etcd (scripts/kube-test-env.sh: built once per machine),
# 2. installs wrk (and musl-tools for the static binary) with apt-get when missing,
# 3. builds the release binary, the static musl binary, the driver (examples/bench.rs) and the
#    bare hyper baseline (examples/bench_bare_hyper.rs), all with the release profile,
# 4. runs the criterion micro-benchmarks (benches/decode_decide.rs),
# 5. runs the driver: it starts its own apiserver, measures falco-responder side by side with
#    its baselines and writes docs/BENCHMARKS.md (also printed).
# Measurements take about 9 minutes; the first build about 10 more. Loopback only.
#
# Environment: BENCH_CONNECTIONS (64), BENCH_SECONDS (4 per wrk run), BENCH_ROUNDS (7),
# BENCH_PODS (400 per latency series), BENCH_BURST (200), BENCH_STARTS (20),
# BENCH_QUIET_WAIT (180: seconds to wait for a quiet machine before measuring),
# BENCH_OUT (docs/BENCHMARKS.md), NO_INSTALL=1 (never call apt-get / rustup);
# hostile load and soak: BENCH_HOSTILE (1; 0 skips them), BENCH_IDLE_CONNECTIONS (3000),
# BENCH_SLOW_CLIENTS (500), BENCH_HOSTILE_SECONDS (15), BENCH_SOAK_REQUESTS (1000000),
# BENCH_SOAK_SEGMENT (5 s per wrk run), BENCH_SHAPE_SECONDS (8 per hostile shape),
# BENCH_SHAPES (the hostile shapes to run, e.g. a,h,all; all when unset), BENCH_SHAPE_RUNS (1:
# runs of each, its peak RSS reported as the median run's with the lowest and highest);
# BENCH_NO_MUSL=1 and BENCH_NO_CRITERION=1 skip the static binary's rows and the
# micro-benchmarks (each costs one more LTO build).
# BENCH_ONLY=guards | hostile | start | once | envelopes: only that section (the guards; the
# hostile shapes on the static binary, about two minutes once built; the start on one CPU with
# the static binary's idle RSS; the one-shot mode with its breakdown; the no-action throughput of
# the realistic event plain and in every envelope beside bare hyper, 9 rows of BENCH_ROUNDS ×
# 2 wrk runs: with BENCH_NO_MUSL=1 BENCH_ROUNDS=5 BENCH_SECONDS=3 about five minutes), printed,
# BENCH_OUT untouched, no micro-benchmarks; with BENCH_STARTS=10 BENCH_QUIET_WAIT=0 start and once take about a minute
# each once built. BENCH_ONLY=contain: a containment's latency next to a deletion's, likewise.
set -euo pipefail

log() { printf 'bench.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$(pwd)
musl_target=x86_64-unknown-linux-musl

# ---- 1. kube-apiserver + etcd ------------------------------------------------------------
assets=$(scripts/kube-test-env.sh)
eval "$assets"

# ---- 2. tools --------------------------------------------------------------------------------
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v taskset >/dev/null || missing+=(util-linux)
command -v musl-gcc >/dev/null || missing+=(musl-tools)
command -v git >/dev/null || missing+=(git)
if ((${#missing[@]})); then
  [[ "${NO_INSTALL:-}" != 1 ]] || die "missing packages: ${missing[*]} (NO_INSTALL=1)"
  [[ $(id -u) -eq 0 ]] || die "missing packages: ${missing[*]}; install them or run as root"
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$musl_target"; then
  [[ "${NO_INSTALL:-}" != 1 ]] || die "rust target $musl_target missing (NO_INSTALL=1)"
  rustup target add "$musl_target" >&2
fi
[[ $(nproc) -ge 2 ]] || die "needs 2 cores (server on core 0, load on core 1)"

# ---- 3. builds ---------------------------------------------------------------------------
target_dir=${CARGO_TARGET_DIR:-$repo/target}
# The commit the binaries are built from (the report says so even if HEAD moves meanwhile);
# "-dirty" for uncommitted changes other than the report itself.
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -z "$(git status --porcelain -- . ':!docs/BENCHMARKS.md' 2>/dev/null)" ]] || commit="$commit-dirty"
log "building release binaries (the first build takes several minutes)"
# Separate invocations: the binary is built with its own features only, exactly as shipped
# (the examples' dev-dependencies do not leak into it).
only=${BENCH_ONLY:-}
[[ "$only" == hostile && "${BENCH_NO_MUSL:-}" != 1 ]] || cargo build --release --locked --quiet --bin falco-responder
if [[ "${BENCH_NO_MUSL:-}" != 1 ]]; then
  cargo build --release --locked --quiet --target "$musl_target" --bin falco-responder
fi
if [[ "$only" == hostile ]]; then
  cargo build --release --locked --quiet --example bench
else
  cargo build --release --locked --quiet --example bench --example bench_bare_hyper
fi

# ---- 4. criterion ------------------------------------------------------------------------
rm -rf "$target_dir/criterion/decode" "$target_dir/criterion/decide"
if [[ "${BENCH_NO_CRITERION:-}" != 1 && -z "$only" ]]; then
  log "micro-benchmarks (criterion)"
  cargo bench --locked --quiet --bench decode_decide -- --noplot >"$target_dir/bench-criterion.log" 2>&1 \
    || { tail -n 30 "$target_dir/bench-criterion.log" >&2; die "cargo bench failed"; }
  awk '/^(decode|decide)\// {name=$1} /time:/ {sub(/^.*time:/, "time:"); print "  " name, $0}' \
    "$target_dir/bench-criterion.log" >&2
fi

# ---- 5. measurements -----------------------------------------------------------------------
log "measuring${only:+ (only $only)}"
# Thousands of sockets on both ends of loopback (the hostile shapes): the usual 1,024 is not
# enough; the driver and the binary it starts inherit this.
ulimit -n "$(ulimit -Hn)"
FALCO_RESPONDER_BIN="$target_dir/release/falco-responder" \
BARE_HYPER_BIN="$target_dir/release/examples/bench_bare_hyper" \
MUSL_BIN="$target_dir/$musl_target/release/falco-responder" \
CRITERION_DIR="$target_dir/criterion" \
BENCH_OUT="${BENCH_OUT:-$repo/docs/BENCHMARKS.md}" \
BENCH_COMMIT="$commit" \
  "$target_dir/release/examples/bench"
