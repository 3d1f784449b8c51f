#!/usr/bin/env bash
# Builds the falco-responder container image without a container engine or a registry.
#
#   scripts/image.sh            # as root on Debian bookworm (CI), or with the tools present
#
# 1. installs what is missing (Debian: musl-tools buildah file; rustup target for musl),
# 2. builds the static release binary: cargo build --release --locked --target x86_64-unknown-linux-musl,
# 3. checks it is statically linked and at most 10 MiB,
# 4. assembles the image with buildah from that binary, using the final stage of ./Dockerfile
#    verbatim (every line from "FROM scratch" on; only the COPY --from=builder source is
#    rewritten to the prebuilt binary), so the two cannot drift apart,
# 5. inspects the image and fails unless: user 65532:65532, entrypoint ["/falco-responder"],
#    no cmd, exposed port 8080/tcp, PORT=8080, and the root filesystem holds only /falco-responder,
# 6. exports it as an OCI archive (target/image/falco-responder-<version>.oci.tar) that can be
#    pushed from anywhere, e.g. `skopeo copy oci-archive:<file> docker://REGISTRY/IMAGE:TAG`.
#
# Idempotent: the buildah store lives in target/buildah (vfs driver, nothing outside the repo
# is touched besides the packages), the tag is replaced and dangling images are pruned.
#
# Environment: IMAGE (default localhost/falco-responder:<Cargo.toml version>),
# BUILDAH_STORE (default target/buildah), NO_INSTALL=1 (never call apt-get / rustup).
set -euo pipefail

log() { printf 'image.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$(pwd)

rust_target=x86_64-unknown-linux-musl
bin_name=falco-responder
max_binary_bytes=$((10 * 1024 * 1024))
want_user=65532:65532
want_entrypoint='["/falco-responder"]'

version=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n1)
[[ -n "$version" ]] || die "cannot read the package version from Cargo.toml"
image=${IMAGE:-localhost/falco-responder:$version}
store=${BUILDAH_STORE:-$repo/target/buildah}
out=$repo/target/image
buildah_cmd=(buildah --root "$store/root" --runroot "$store/run" --storage-driver vfs)

# ---- 1. tools ---------------------------------------------------------------------------
missing=()
command -v musl-gcc >/dev/null || missing+=(musl-tools)
command -v buildah >/dev/null || missing+=(buildah)
command -v file >/dev/null || missing+=(file)
if ((${#missing[@]})); then
  [[ "${NO_INSTALL:-}" != 1 ]] || die "missing packages: ${missing[*]} (NO_INSTALL=1)"
  [[ $(id -u) -eq 0 ]] || die "missing packages: ${missing[*]}; install them or run as root"
  command -v apt-get >/dev/null || die "missing packages: ${missing[*]} and no apt-get"
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || die "cargo not found"
if command -v rustup >/dev/null; then
  if ! rustup target list --installed | grep -qx "$rust_target"; then
    [[ "${NO_INSTALL:-}" != 1 ]] || die "rust target $rust_target missing (NO_INSTALL=1)"
    log "adding rust target $rust_target"
    rustup target add "$rust_target"
  fi
else
  log "no rustup; assuming the $rust_target standard library is installed"
fi

# ---- 2. static binary -------------------------------------------------------------------
log "cargo build --release --locked --target $rust_target --bin $bin_name"
cargo build --release --locked --target "$rust_target" --bin "$bin_name"
bin=$repo/target/$rust_target/release/$bin_name
[[ -x "$bin" ]] || die "$bin was not built"

# ---- 3. static + size -------------------------------------------------------------------
file_info=$(file -b "$bin")
case "$file_info" in
  *"statically linked"* | *"static-pie linked"*) ;;
  *) die "binary is not statically linked: $file_info" ;;
esac
ldd_info=$(ldd "$bin" 2>&1 || true)
case "$ldd_info" in
  *"not a dynamic executable"* | *"statically linked"*) ;;
  *) die "ldd reports dynamic dependencies: $ldd_info" ;;
esac
bin_bytes=$(stat -c %s "$bin")
((bin_bytes <= max_binary_bytes)) || die "binary is $bin_bytes bytes, more than $max_binary_bytes"

# ---- 4. image from the Dockerfile's final stage -----------------------------------------
ctx=$out/context
rm -rf "$ctx"
mkdir -p "$ctx"
cp "$bin" "$ctx/$bin_name"
awk '/^FROM scratch([[:space:]]|$)/ { p = 1 } p' Dockerfile \
  | sed -E "s#^COPY --from=builder [^ ]+ /$bin_name\$#COPY $bin_name /$bin_name#" \
  > "$ctx/Containerfile"
[[ $(grep -c '^FROM ' "$ctx/Containerfile") -eq 1 ]] || die "Dockerfile: no single final 'FROM scratch' stage"
grep -qx "COPY $bin_name /$bin_name" "$ctx/Containerfile" \
  || die "Dockerfile: final stage lacks 'COPY --from=builder <path> /$bin_name'"
! grep -q -- '--from=' "$ctx/Containerfile" || die "Dockerfile: final stage copies more from other stages"
! grep -qE '^RUN([[:space:]]|$)' "$ctx/Containerfile" || die "Dockerfile: final stage must not RUN (scratch has no shell)"

mkdir -p "$store"
log "buildah bud -> $image"
# --timestamp 0: same binary => same image digest.
"${buildah_cmd[@]}" bud --quiet --timestamp 0 -f "$ctx/Containerfile" -t "$image" "$ctx" >/dev/null
"${buildah_cmd[@]}" rmi --prune >/dev/null 2>&1 || true

# ---- 5. inspect -------------------------------------------------------------------------
inspect() { "${buildah_cmd[@]}" inspect --type image --format "$1" "$image"; }
# (buildah 1.28's templates have no `json`; %q renders a string list as ["a" "b"].)
user=$(inspect '{{.OCIv1.Config.User}}')
entrypoint=$(inspect '{{printf "%q" .OCIv1.Config.Entrypoint}}')
cmd=$(inspect '{{len .OCIv1.Config.Cmd}}')
ports=$(inspect '{{range $p, $_ := .OCIv1.Config.ExposedPorts}}{{$p}} {{end}}')
envs=$(inspect '{{printf "%q" .OCIv1.Config.Env}}')
arch=$(inspect '{{.OCIv1.Architecture}}/{{.OCIv1.OS}}')
fail=0
check() { if [[ "$2" == "$3" ]]; then log "ok: $1 = $2"; else log "FAIL: $1 = $2, expected $3"; fail=1; fi; }
check user "$user" "$want_user"
check entrypoint "$entrypoint" "$want_entrypoint"
check cmd-length "$cmd" 0
check exposed-ports "$ports" '8080/tcp '
if grep -q '"PORT=8080"' <<<"$envs"; then log "ok: env has PORT=8080"; else log "FAIL: env $envs lacks PORT=8080"; fail=1; fi
check platform "$arch" amd64/linux

container=$("${buildah_cmd[@]}" from --pull=false "$image")
trap '"${buildah_cmd[@]}" rm "$container" >/dev/null 2>&1 || true' EXIT
mnt=$("${buildah_cmd[@]}" mount "$container")
files=$(cd "$mnt" && find . -mindepth 1 | sort | tr '\n' ' ')
check rootfs "$files" "./$bin_name "
check binary-sha256 "$(sha256sum <"$mnt/$bin_name" | cut -d' ' -f1)" "$(sha256sum <"$bin" | cut -d' ' -f1)"
check binary-mode "$(stat -c %a "$mnt/$bin_name")" 755
# The binary in the image runs on this (Linux x86-64) machine: no loader, no libc needed.
if "$mnt/$bin_name" --help >/dev/null 2>&1; then log "ok: /$bin_name --help runs"; else log "FAIL: /$bin_name --help"; fail=1; fi
"${buildah_cmd[@]}" umount "$container" >/dev/null
"${buildah_cmd[@]}" rm "$container" >/dev/null
trap - EXIT
((fail == 0)) || die "image checks failed"

# ---- 6. export + summary ----------------------------------------------------------------
archive=$out/falco-responder-$version.oci.tar
rm -f "$archive"
"${buildah_cmd[@]}" push --quiet "$image" "oci-archive:$archive:$image" >/dev/null
image_id=$("${buildah_cmd[@]}" images --noheading --no-trunc --format '{{.ID}}' "$image" | head -n1)
image_size=$("${buildah_cmd[@]}" images --noheading --format '{{.Size}}' "$image" | head -n1)
archive_bytes=$(stat -c %s "$archive")

cat <<EOF
falco-responder image
  image:         $image ($arch)
  image id:      $image_id
  image size:    $image_size (buildah images)
  OCI archive:   ${archive#"$repo"/} ($archive_bytes bytes)
  binary:        ${bin#"$repo"/} ($bin_bytes bytes, limit $max_binary_bytes)
  linkage:       $file_info
  user:          $user
  entrypoint:    $entrypoint (cmd: none)
  exposed ports: $ports
  env:           $envs
  rootfs:        $files
push with e.g.: skopeo copy oci-archive:${archive#"$repo"/} docker://ghcr.io/falco-responder/falco-responder:$version
then deploy by digest: skopeo inspect docker://ghcr.io/falco-responder/falco-responder:$version --format '{{.Digest}}'
EOF
