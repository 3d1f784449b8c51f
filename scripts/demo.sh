#!/usr/bin/env bash
# The local demo: a real kube-apiserver + etcd, falco-responder, a pod `alpine`, a shell in it
# (Falco's "Terminal shell in container" event, delivered as Falcosidekick, Knative and Argo
# deliver it) and the pod deleted, step by step. Everything is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
assets=$(scripts/kube-test-env.sh)
eval "$assets"
echo "building falco-responder..." >&2
cargo build --quiet --locked --bin falco-responder --example demo
FALCO_RESPONDER_BIN="$PWD/target/debug/falco-responder" exec target/debug/examples/demo
