#!/usr/bin/env bash
# Runs every test: unit, black-box HTTP, kube mock, and the end-to-end suite against a real
# kube-apiserver + etcd (provisioned by scripts/kube-test-env.sh: built once per machine), the
# Helm chart tests with real helm and kubectl (scripts/helm-env.sh: installed once per machine),
# and the tests on a real node (tests/node: scripts/node-env.sh provisions kubelet, containerd,
# the images; only when the run includes them, and not with SKIP_NODE_TESTS=1).
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh --test it -- e2e_apiserver`).
set -euo pipefail
cd "$(dirname "$0")/.."

# Whether these cargo arguments run the node tests: no target named at all, or `--test node`.
wants_node() {
  local prev='' a narrowed=0
  for a in "$@"; do
    [[ $a != -- ]] || break
    if [[ $prev == --test ]]; then
      [[ $a != node ]] || return 0
    fi
    case $a in
      --test=node) return 0 ;;
      --test | --test=* | --lib | --doc | --bin | --bin=* | --bins | --example | --example=* | --examples | --bench | --bench=* | --benches) narrowed=1 ;;
    esac
    prev=$a
  done
  ((narrowed == 0))
}

if [[ ${SKIP_NODE_TESTS:-} != 1 ]] && wants_node "$@"; then
  assets=$(scripts/node-env.sh)
else
  assets=$(scripts/kube-test-env.sh)
fi
eval "$assets"
tools=$(scripts/helm-env.sh)
eval "$tools"
exec cargo test --locked "$@"
