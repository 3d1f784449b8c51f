#!/usr/bin/env bash
# Provides everything a real Kubernetes node needs on this machine (scripts/node.sh starts it):
#
# - Debian's containerd, runc, containernetworking-plugins and busybox-static (apt, as root);
# - kubelet, kube-scheduler, kube-proxy and the sandbox ("pause") binary, built from the same
#   Debian kubernetes source as the API server (scripts/kube-test-env.sh --node, cached);
# - the test images as docker-archive tarballs, without a registry or a container engine:
#   localhost/pause:3.4.1 and localhost/busybox:1 (cached next to the binaries), and our own
#   image from scripts/image.sh (target/image/*.oci.tar) unless NODE_IMAGE_RESPONDER=skip.
#
# Prints what scripts/kube-test-env.sh --node prints, plus
#   export TEST_NODE_IMAGES=tar[:tar...]   (imported by scripts/node.sh)
#   export TEST_NODE_RESPONDER_IMAGE=localhost/falco-responder:<version>
# Progress goes to stderr.
set -euo pipefail

log() { printf 'node-env: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

cd "$(dirname "${BASH_SOURCE[0]}")/.."
cache="${FALCO_RESPONDER_CACHE:-$HOME/.cache/falco-responder}"

missing=()
command -v containerd >/dev/null || missing+=(containerd)
command -v runc >/dev/null || missing+=(runc)
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local ]] || missing+=(containernetworking-plugins)
[[ -x /bin/busybox ]] && file -b /bin/busybox 2>/dev/null | grep -q static || missing+=(busybox-static)
command -v file >/dev/null || missing+=(file)
if ((${#missing[@]})); then
  [[ $(id -u) -eq 0 ]] || die "missing packages: ${missing[*]}; install them or run as root"
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1 || apt-get update >&2
  out=$(apt-get install -y -q --no-install-recommends "${missing[@]}" 2>&1) \
    || { printf '%s\n' "$out" | tail -n 20 >&2; die "apt-get install ${missing[*]} failed"; }
fi

assets=$(scripts/kube-test-env.sh --node)
eval "$assets"

# docker_archive OUT TAG ENTRYPOINT_JSON ROOTFS_DIR: a one-layer docker-archive image of ROOTFS_DIR
# (what `ctr images import` reads), reproducible (fixed owner and times).
docker_archive() {
  local out=$1 tag=$2 entrypoint=$3 rootfs=$4 tmp
  tmp=$(mktemp -d)
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$rootfs" -cf "$tmp/layer.tar" .
  local diff_id config_id
  diff_id=$(sha256sum "$tmp/layer.tar" | cut -d' ' -f1)
  mkdir "$tmp/$diff_id"
  mv "$tmp/layer.tar" "$tmp/$diff_id/layer.tar"
  printf '{"architecture":"amd64","os":"linux","created":"1970-01-01T00:00:00Z","config":{"Entrypoint":%s,"Env":["PATH=/bin"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$entrypoint" "$diff_id" >"$tmp/config.json"
  config_id=$(sha256sum "$tmp/config.json" | cut -d' ' -f1)
  mv "$tmp/config.json" "$tmp/$config_id.json"
  printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]' "$config_id" "$tag" "$diff_id" >"$tmp/manifest.json"
  tar --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$tmp" -cf "$out.tmp" manifest.json "$config_id.json" "$diff_id"
  mv "$out.tmp" "$out"
  rm -rf "$tmp"
}

images_dir="$cache/node-images"
mkdir -p "$images_dir"
pause_tar="$images_dir/pause-3.4.1.tar"
if [[ ! -s "$pause_tar" || "$pause_tar" -ot "$TEST_ASSET_PAUSE" ]]; then
  root=$(mktemp -d)
  cp "$TEST_ASSET_PAUSE" "$root/pause"
  docker_archive "$pause_tar" localhost/pause:3.4.1 '["/pause"]' "$root"
  rm -rf "$root"
  log "made $pause_tar"
fi
busybox_tar="$images_dir/busybox-1.tar"
if [[ ! -s "$busybox_tar" || "$busybox_tar" -ot /bin/busybox ]]; then
  root=$(mktemp -d)
  mkdir -p "$root/bin" "$root/tmp" "$root/etc"
  cp /bin/busybox "$root/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [[ $applet == busybox ]] || ln -s busybox "$root/bin/$applet"
  done
  chmod 1777 "$root/tmp"
  docker_archive "$busybox_tar" localhost/busybox:1 '["/bin/sh"]' "$root"
  rm -rf "$root"
  log "made $busybox_tar"
fi
images="$pause_tar:$busybox_tar"

version=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n1)
responder_image=localhost/falco-responder:$version
if [[ "${NODE_IMAGE_RESPONDER:-}" != skip ]]; then
  # Idempotent; after the first build it only relinks nothing and reassembles the image.
  scripts/image.sh >/dev/null
  archive=target/image/falco-responder-$version.oci.tar
  [[ -s "$archive" ]] || die "scripts/image.sh left no $archive"
  images="$images:$PWD/$archive"
fi

printf '%s\n' "$assets"
printf 'export TEST_NODE_IMAGES=%q\nexport TEST_NODE_RESPONDER_IMAGE=%q\n' "$images" "$responder_image"
