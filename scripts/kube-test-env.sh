#!/usr/bin/env bash
# Provides a real kube-apiserver and etcd for the test suite and the demo.
#
# Honours envtest's convention first: TEST_ASSET_KUBE_APISERVER / TEST_ASSET_ETCD, or
# KUBEBUILDER_ASSETS (a folder holding both). Otherwise installs etcd from Debian's
# `etcd-server` and builds kube-apiserver once per machine from Debian's `kubernetes`
# source package (see docs/real-kube-apiserver.md), cached outside the clone in
# ${FALCO_RESPONDER_CACHE:-~/.cache/falco-responder}.
#
# It also provides kube-controller-manager from the same source (tests/it/e2e_guards.rs: real
# Deployments, ReplicaSets and PodDisruptionBudget status); TEST_ASSET_KUBE_CONTROLLER_MANAGER
# (or KUBEBUILDER_ASSETS) skips that build. A fresh machine builds both with one `make`.
#
# With --node it also provides what a real node needs from the same source tree (scripts/node-env.sh
# uses it): kubelet, kube-scheduler, kube-proxy and the sandbox ("pause") binary, built in the same
# make (TEST_ASSET_KUBELET, TEST_ASSET_KUBE_SCHEDULER, TEST_ASSET_KUBE_PROXY, TEST_ASSET_PAUSE skip
# each). A fresh machine running the whole suite builds all five in one make (about 11 minutes).
#
# On success prints lines for `eval "$(scripts/kube-test-env.sh)"`:
#   export TEST_ASSET_KUBE_APISERVER=/path
#   export TEST_ASSET_ETCD=/path
#   export TEST_ASSET_KUBE_CONTROLLER_MANAGER=/path
#   (with --node also TEST_ASSET_KUBELET, TEST_ASSET_KUBE_SCHEDULER, TEST_ASSET_KUBE_PROXY, TEST_ASSET_PAUSE)
# Quiet when everything is already there; progress goes to stderr.
set -euo pipefail

log() { printf 'kube-test-env: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

node=0
case "${1:-}" in
  --node) node=1 ;;
  "") ;;
  *) die "unknown argument $1 (usage: $0 [--node])" ;;
esac

cache="${FALCO_RESPONDER_CACHE:-$HOME/.cache/falco-responder}"
k8s_version=1.20.2
bin_dir="$cache/kubernetes-$k8s_version"
built="$bin_dir/kube-apiserver"
built_kcm="$bin_dir/kube-controller-manager"
# The node's parts; the cache key is the file itself, like the apiserver's.
node_parts=(kubelet kube-scheduler kube-proxy pause)
asset_var() { local v=${1//-/_}; echo "TEST_ASSET_${v^^}"; }

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  : "${TEST_ASSET_KUBE_APISERVER:=$KUBEBUILDER_ASSETS/kube-apiserver}"
  : "${TEST_ASSET_ETCD:=$KUBEBUILDER_ASSETS/etcd}"
  if [[ -x "$KUBEBUILDER_ASSETS/kube-controller-manager" ]]; then
    : "${TEST_ASSET_KUBE_CONTROLLER_MANAGER:=$KUBEBUILDER_ASSETS/kube-controller-manager}"
  fi
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
# build_kube NAME...: builds cmd/NAME for each NAME in one make (shared code generation and Go
# cache) and copies the binaries next to $built. NAME `pause` is the sandbox binary: its C source
# (build/pause/linux/pause.c) is compiled static, as the kubelet's pause image needs nothing else.
build_kube() {
  need_root "building $*"
  local start=$SECONDS
  log "$* not cached: building from Debian's kubernetes $k8s_version source (about 8 minutes on 2 cores, once per machine)"
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
  local name cmds=() pause=0
  for name in "$@"; do
    if [[ $name == pause ]]; then pause=1; else cmds+=("cmd/$name"); fi
  done
  if [[ $pause -eq 1 ]]; then
    command -v gcc >/dev/null 2>&1 && [[ -e /usr/lib/x86_64-linux-gnu/libc.a || -e /usr/lib/aarch64-linux-gnu/libc.a ]] \
      || apt_install gcc libc6-dev
    gcc -Os -static -o "$work/pause" "$src/build/pause/linux/pause.c" >"$work/pause.log" 2>&1 \
      || { cat "$work/pause.log" >&2; die "compiling pause failed"; }
  fi
  if [[ ${#cmds[@]} -gt 0 ]]; then
    log "compiling ${cmds[*]} (go $(go version | awk '{print $3}'))"
    (
      cd "$src"
      export GOPATH="$src/.go" CGO_ENABLED=0
      mkdir -p .go/src/k8s.io && ln -sfn ../../.. .go/src/k8s.io/kubernetes
      # GOCACHE, when set, is honoured (reusing a warm Go cache makes a rebuild take minutes).
      HOME=$(mktemp -d) make WHAT="${cmds[*]}" >"$work/build.log" 2>&1
    ) || { tail -n 30 "$work/build.log" >&2; die "$* build failed (full log: $work/build.log)"; }
  fi
  local dir=$bin_dir
  mkdir -p "$dir"
  for name in "$@"; do
    if [[ $name == pause ]]; then cp "$work/pause" "$dir/$name.tmp"; else cp "$src/_output/bin/$name" "$dir/$name.tmp"; fi
    mv "$dir/$name.tmp" "$dir/$name"
    log "built $dir/$name"
  done
  rm -rf "$work"
  log "built $* in $((SECONDS - start)) s"
}

# What is missing is built in one make: all on a fresh machine.
missing() {
  local m=()
  [[ -z "${TEST_ASSET_KUBE_APISERVER:-}" && ! -x "$built" ]] && m+=(kube-apiserver)
  [[ -z "${TEST_ASSET_KUBE_CONTROLLER_MANAGER:-}" && ! -x "$built_kcm" ]] && m+=(kube-controller-manager)
  if [[ $node -eq 1 ]]; then
    local part var
    for part in "${node_parts[@]}"; do
      var=$(asset_var "$part")
      [[ -z "${!var:-}" && ! -x "$bin_dir/$part" ]] && m+=("$part")
    done
  fi
  echo "${m[*]}"
}
if [[ -n "$(missing)" ]]; then
  mkdir -p "$cache"
  # One build per machine even when two runs start at once.
  exec 9>"$cache/.build.lock"
  flock 9
  todo=$(missing)
  # shellcheck disable=SC2086 # a list of names
  [[ -z "$todo" ]] || build_kube $todo
  flock -u 9
fi
: "${TEST_ASSET_KUBE_APISERVER:=$built}"
: "${TEST_ASSET_KUBE_CONTROLLER_MANAGER:=$built_kcm}"
[[ -x "$TEST_ASSET_KUBE_APISERVER" ]] || die "TEST_ASSET_KUBE_APISERVER=$TEST_ASSET_KUBE_APISERVER is not an executable"
[[ -x "$TEST_ASSET_KUBE_CONTROLLER_MANAGER" ]] || die "TEST_ASSET_KUBE_CONTROLLER_MANAGER=$TEST_ASSET_KUBE_CONTROLLER_MANAGER is not an executable"

# openssl makes the ServiceAccount signing key pair in the test harness.
command -v openssl >/dev/null 2>&1 || apt_install openssl

printf 'export TEST_ASSET_KUBE_APISERVER=%q\nexport TEST_ASSET_ETCD=%q\nexport TEST_ASSET_KUBE_CONTROLLER_MANAGER=%q\n' \
  "$TEST_ASSET_KUBE_APISERVER" "$TEST_ASSET_ETCD" "$TEST_ASSET_KUBE_CONTROLLER_MANAGER"
if [[ $node -eq 1 ]]; then
  for part in "${node_parts[@]}"; do
    var=$(asset_var "$part")
    [[ -n "${!var:-}" ]] || printf -v "$var" '%s' "$bin_dir/$part"
    [[ -x "${!var}" ]] || die "$var=${!var} is not an executable"
    printf 'export %s=%q\n' "$var" "${!var}"
  done
fi
