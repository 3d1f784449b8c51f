#!/usr/bin/env bash
# Runs every test: unit, black-box HTTP, kube mock, and the end-to-end suite against a real
# kube-apiserver + etcd (provisioned by scripts/kube-test-env.sh: built once per machine), and the
# Helm chart tests with real helm and kubectl (scripts/helm-env.sh: installed once per machine).
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh --test it -- e2e_apiserver`).
set -euo pipefail
cd "$(dirname "$0")/.."
assets=$(scripts/kube-test-env.sh)
eval "$assets"
tools=$(scripts/helm-env.sh)
eval "$tools"
exec cargo test --locked "$@"
