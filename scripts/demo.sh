#!/usr/bin/env bash
# The local demo on a real node: kube-apiserver + etcd + controllers + scheduler, kubelet +
# containerd (scripts/node-env.sh provisions them, scripts/node.sh runs the node), a real pod, a
# real `kubectl exec` shell in it, the Falco event built from what the kubelet reports (Falco is
# not run), delivered as Falcosidekick, Knative and Argo deliver it, and the pod deleted, step by
# step. Needs root (a node). Everything is stopped and removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
# The demo runs the binary on this machine: our image is not needed on the node.
assets=$(NODE_IMAGE_RESPONDER=skip scripts/node-env.sh)
eval "$assets"
tools=$(scripts/helm-env.sh)
eval "$tools"
echo "building falco-responder..." >&2
cargo build --quiet --locked --bin falco-responder --example demo
FALCO_RESPONDER_BIN="$PWD/target/debug/falco-responder" exec target/debug/examples/demo
