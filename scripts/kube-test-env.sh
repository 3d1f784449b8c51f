#!/usr/bin/env bash
# Provides a real kube-apiserver and etcd for the test suite and the demo.
#
# Honours envtest's convention first: TEST_ASSET_KUBE_APISERVER / TEST_ASSET_ETCD, or
# KUBEBUILDER_ASSETS (a folder holding both). Otherwise installs etcd from Debian's
# `etcd-server` and builds kube-apiserver once per machine from Debian's `kubernetes`
# source package (see docs/real-kube-apiserver.md), cached outside the clone in
# ${FALCO_RESPONDER_CACHE:-~/.cache/falco-responder}.
#
# On success prints two lines for `eval "$(scripts/kube-test-env.sh)"`:
#   export TEST_ASSET_KUBE_APISERVER=/path
#   export TEST_ASSET_ETCD=/path
# Quiet when everything is already there; progress goes to stderr.
set -euo pipefail

log() { printf 'kube-test-env: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

cache="${FALCO_RESPONDER_CACHE:-$HOME/.cache/falco-responder}"
k8s_version=1.20.2
built="$cache/kubernetes-$k8s_version/kube-apiserver"

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  : "${TEST_ASSET_KUBE_APISERVER:=$KUBEBUILDER_ASSETS/kube-apiserver}"
  : "${TEST_ASSET_ETCD:=$KUBEBUILDER_ASSETS/etcd}"
fi

need_root() {
  [[ $(id -u) -eq 0 ]] || die "$1 needs root (apt-get); or set TEST_ASSET_KUBE_APISERVER and TEST_ASSET_ETCD"
}

apt_updated=0
apt_install() {
  need_root "installing $*"
  if [[ $apt_updated -eq 0 ]]; then
    log "apt-get update"
    apt-get update -qq >/dev/null 2>&1 || apt-get update >&2 || die "apt-get update failed"
    apt_updated=1
  fi
  log "apt-get install $*"
  local out
  out=$(DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" 2>&1) || { printf '%s\n' "$out" | tail -n 20 >&2; die "apt-get install $* failed"; }
}

# --- etcd -------------------------------------------------------------------
if [[ -z "${TEST_ASSET_ETCD:-}" ]]; then
  if ! command -v etcd >/dev/null 2>&1; then
    apt_install etcd-server
  fi
  TEST_ASSET_ETCD=$(command -v etcd) || die "etcd not found after installing etcd-server"
fi
[[ -x "$TEST_ASSET_ETCD" ]] || die "TEST_ASSET_ETCD=$TEST_ASSET_ETCD is not an executable"

# --- kube-apiserver ---------------------------------------------------------
build_apiserver() {
  need_root "building kube-apiserver"
  local start=$SECONDS
  log "kube-apiserver not cached: building it from Debian's kubernetes $k8s_version source (about 8 minutes on 2 cores, once per machine)"
  if [[ ! -f /etc/apt/sources.list.d/debian-src.sources ]]; then
    cat > /etc/apt/sources.list.d/debian-src.sources <<'S'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
S
    apt_updated=0
  fi
  apt_install golang-go rsync golang-github-modern-go-reflect2-dev make
  local work="$cache/build"
  rm -rf "$work"
  mkdir -p "$work"
  (cd "$work" && apt-get source --download-only kubernetes >&2) || die "apt-get source kubernetes failed"
  local orig
  orig=$(ls "$work"/kubernetes_*.orig.tar.gz | head -n1) || die "no kubernetes orig tarball downloaded"
  log "unpacking $(basename "$orig")"
  tar xzf "$orig" -C "$work"
  local src="$work/kubernetes-$k8s_version"
  [[ -d "$src" ]] || die "expected $src after unpacking"
  # Kubernetes 1.20 vendors reflect2 v1.0.1, which crashes on Go >= 1.18 the first time the
  # apiserver serializes a map (e.g. the first DELETE). Debian ships a fixed reflect2.
  rm -rf "$src/vendor/github.com/modern-go/reflect2"
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$src/vendor/github.com/modern-go/reflect2"
  rm -f "$src/vendor/github.com/modern-go/reflect2/go.mod"
  log "compiling (go $(go version | awk '{print $3}'))"
  (
    cd "$src"
    export GOPATH="$src/.go" CGO_ENABLED=0
    mkdir -p .go/src/k8s.io && ln -sfn ../../.. .go/src/k8s.io/kubernetes
    HOME=$(mktemp -d) make WHAT=cmd/kube-apiserver >"$work/build.log" 2>&1
  ) || { tail -n 30 "$work/build.log" >&2; die "kube-apiserver build failed (full log: $work/build.log)"; }
  mkdir -p "$(dirname "$built")"
  cp "$src/_output/bin/kube-apiserver" "$built.tmp"
  mv "$built.tmp" "$built"
  rm -rf "$work"
  log "built $built in $((SECONDS - start)) s"
}

if [[ -z "${TEST_ASSET_KUBE_APISERVER:-}" ]]; then
  if [[ ! -x "$built" ]]; then
    mkdir -p "$cache"
    # One build per machine even when two runs start at once.
    exec 9>"$cache/.build.lock"
    flock 9
    [[ -x "$built" ]] || build_apiserver
    flock -u 9
  fi
  TEST_ASSET_KUBE_APISERVER=$built
fi
[[ -x "$TEST_ASSET_KUBE_APISERVER" ]] || die "TEST_ASSET_KUBE_APISERVER=$TEST_ASSET_KUBE_APISERVER is not an executable"

# openssl makes the ServiceAccount signing key pair in the test harness.
command -v openssl >/dev/null 2>&1 || apt_install openssl

printf 'export TEST_ASSET_KUBE_APISERVER=%q\nexport TEST_ASSET_ETCD=%q\n' "$TEST_ASSET_KUBE_APISERVER" "$TEST_ASSET_ETCD"
