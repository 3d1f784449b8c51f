#!/usr/bin/env bash
# The `kn` equivalent of knative/service.yaml (same name, namespace, env, scale, probes,
# resources, security). Run after `kubectl apply -f knative/namespace.yaml -f knative/rbac.yaml`.
#
#   IMAGE=ghcr.io/falco-responder/falco-responder@sha256:<digest> knative/kn-service-create.sh
#
# Extra arguments are passed to kn, e.g. `--target /tmp/ksvc.yaml` writes the Service to a
# file instead of creating it (offline), `--force` replaces an existing Service.
# Differences from service.yaml: kn has no flags for runAsGroup or readOnlyRootFilesystem
# (`--security-context strict` sets runAsNonRoot, allowPrivilegeEscalation false, drops all
# capabilities and sets seccompProfile RuntimeDefault: knative client pkg/flags/podspec_helper.go
# DefaultStrictSecCon); use service.yaml when those matter. Like `func deploy`, kn leaves the
# container unnamed, so Knative calls it `user-container` (as service.yaml does too).
# kn puts no labels of its own on the revision's pods: --label-revision gives them the ones
# knative/networkpolicy.yaml selects, without which any pod could reach port 8080 directly.
# --timeout is also the pods' grace period (Knative sets one from the other), inside which
# queue-proxy's preStop drain holds SIGTERM back at least 30 s (README, "Shutdown").
set -euo pipefail

IMAGE=${IMAGE:-ghcr.io/falco-responder/falco-responder:0.1.0}

exec kn service create falco-responder \
  --namespace falco-responder \
  --image "$IMAGE" \
  --port http1:8080 \
  --service-account falco-responder \
  --cluster-local \
  --label-revision app.kubernetes.io/name=falco-responder \
  --label-revision app.kubernetes.io/instance=falco-responder \
  --env "RULES=Terminal shell in container" \
  --env MIN_PRIORITY=Notice \
  --env PROTECTED_NAMESPACES=kube-system,kube-public,kube-node-lease,falco,falco-responder,knative-serving,knative-eventing,kourier-system \
  --env DRY_RUN=false \
  --env GRACE_PERIOD_SECONDS=5 \
  --env DEDUP_SECONDS=30 \
  --env MAX_BODY_BYTES=1048576 \
  --env MAX_DELETIONS=20/1m \
  --env MAX_DELETIONS_PER_WORKLOAD=3/10m \
  --env API_TIMEOUT_SECONDS=10 \
  --env LOG_FORMAT=json \
  --env RUST_LOG=info \
  --env REQUEST_TIMEOUT_SECONDS=10 \
  --env IDLE_TIMEOUT_SECONDS=95 \
  --env SHUTDOWN_DELAY_SECONDS=0 \
  --env BODY_MEMORY_BYTES=16777216 \
  --scale-min 1 --scale-max 3 --scale-target 10 \
  --concurrency-limit 50 \
  --timeout 60 \
  --probe-readiness http::8080:/health/readiness \
  --probe-liveness http::8080:/health/liveness --probe-liveness-opts PeriodSeconds=10,FailureThreshold=3 \
  --request cpu=10m,memory=16Mi \
  --limit cpu=200m,memory=64Mi \
  --security-context strict \
  --user 65532 \
  "$@"
