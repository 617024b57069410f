#!/usr/bin/env bash
# Builds the images the real node runs, with buildah (no Docker engine, no registry), once:
#
#   base        Debian bookworm + Python 3.11, bootstrapped with debootstrap from Debian's
#               mirror (the one apt uses here); every Python image builds FROM it
#   pause       the pod sandbox (tools/cluster/go/pause)
#   operator    operator/Dockerfile: the operator, and every serving pod's storage-init
#   trainer     examples/iris/Dockerfile: the iris training code, really training
#   mlserver    tools/images/mlserver/Dockerfile: MLServer + mlserver-sklearn, pinned,
#               tagged as the image the operator's `mlserver` preset deploys
#   s3          versitygw, the S3-compatible store; coredns: the cluster's DNS
#
#   build.sh            build what is missing; print the image archives, one per line
#   build.sh --cached   print them if all are built, else exit 3 (never builds)
#
# Each image is cached as a docker-archive under $MLOPS_CACHE/images/, keyed by a hash of its
# inputs, so a second run is a no-op and a change to the operator's code rebuilds only the
# operator image (~30 s). cluster.py imports the archives into the real node's containerd.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=../versions.env
source "$root/tools/versions.env"
cache="${MLOPS_CACHE:-$HOME/.cache/mlops-operator}"
out="$cache/images"
log() { echo "[images] $*" >&2; }
cached_only=false
[[ "${1:-}" == --cached ]] && cached_only=true

hash_of() { cat "$@" | sha256sum | cut -c1-16; }
# Source trees hashed by content, in a stable order, ignoring caches.
tree_hash() {
  (cd "$root" && find "$@" -type f -not -path '*/__pycache__/*' -not -name '*.pyc' | LC_ALL=C sort \
    | xargs sha256sum) | sha256sum | cut -c1-16
}

script_key="$(hash_of "$here/build.sh" "$root/tools/versions.env")"
base_key="$script_key"
declare -A keys=(
  [base]="$base_key"
  [pause]="$(hash_of <(echo "$script_key") "$root/tools/cluster/go/pause/main.go")"
  [operator]="$(hash_of <(echo "$base_key") <(tree_hash operator pyproject.toml README.md))"
  [trainer]="$(hash_of <(echo "$base_key") <(tree_hash operator pyproject.toml README.md examples/iris))"
  [mlserver]="$(hash_of <(echo "$base_key") "$here/mlserver/Dockerfile")"
  [s3]="$(hash_of <(echo "$script_key"))"
  [coredns]="$(hash_of <(echo "$script_key") "$root/tools/cluster/go/coredns/main.go")"
)
order=(base pause operator trainer mlserver s3 coredns)
archive() { echo "$out/$1-${keys[$1]}.tar"; }

missing=()
for name in "${order[@]}"; do
  [[ -f "$(archive "$name")" ]] || missing+=("$name")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  for name in "${order[@]}"; do [[ $name == base ]] || archive "$name"; done
  exit 0
fi
if $cached_only; then
  echo "images not built yet (${missing[*]}): run \`make images\` (or \`make test\`, which builds them first)" >&2
  exit 3
fi
if [[ $EUID -ne 0 ]]; then
  # The real node needs root too: cluster.py says so and runs kwok-only.
  log "skipped: building images needs root (buildah, debootstrap); the cluster will be kwok-only"
  exit 0
fi

mkdir -p "$out" "$cache/buildah"
exec 9>"$cache/.build-images.lock"
flock 9

# buildah's own storage, beside the cache (vfs: works without overlay support in the kernel).
storage="$cache/buildah"
export CONTAINERS_STORAGE_CONF="$storage/storage.conf"
cat >"$CONTAINERS_STORAGE_CONF" <<EOF
[storage]
driver = "vfs"
graphroot = "$storage/root"
runroot = "$storage/run"
EOF
export BUILDAH_ISOLATION=chroot
# TLS from inside a build goes through this machine's re-signing proxy: the host's CA bundle
# is mounted for each RUN step, never copied into an image.
ca=/etc/ssl/certs/ca-certificates.crt
bud() { buildah bud --quiet --isolation chroot --pull=never --layers=false -v "$ca:$ca:ro" "$@" >/dev/null; }
# save NAME TAG: write the image as a docker-archive that carries its tag (containerd's
# import names the image after it).
save() {
  local tmp
  tmp="$(archive "$1").tmp"
  rm -f "$tmp"
  buildah push --quiet "$2" "docker-archive:$tmp:$2" >&2
  mv "$tmp" "$(archive "$1")"
}
step() {
  local name="$1" estimate="$2" started=$SECONDS
  shift 2
  if [[ -f "$(archive "$name")" ]]; then return; fi
  log "$name (cold: $estimate)"
  "$@"
  log "  $name: done in $(( SECONDS - started ))s"
}

mirror="$(sed -nE 's#^URIs: (http[^ ]*/debian)$#\1#p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)"
mirror="${mirror:-$(sed -nE 's#^deb (http[^ ]*/debian) .*#\1#p' /etc/apt/sources.list 2>/dev/null | head -n1)}"
BASE_IMAGE=localhost/debian-python:$DEBIAN_SUITE

build_base() {
  local rootfs="$cache/rootfs-$DEBIAN_SUITE" c
  rm -rf "$rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
    "$DEBIAN_SUITE" "$rootfs" "$mirror" >"$cache/logs-debootstrap.log" 2>&1 \
    || { tail -n 20 "$cache/logs-debootstrap.log" >&2; exit 1; }
  rm -rf "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
    "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/{doc,man,locale}/* "$rootfs"/dev/*
  tar --numeric-owner -C "$rootfs" -cf "$cache/base.tar" .
  rm -rf "$rootfs"
  c="$(buildah from scratch)"
  buildah add --quiet "$c" "$cache/base.tar" / >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd '["python3"]' "$c"
  buildah commit --quiet --format docker "$c" "$BASE_IMAGE" >/dev/null
  buildah rm "$c" >/dev/null
  rm -f "$cache/base.tar"
  save base "$BASE_IMAGE"
}

# from_binary NAME TAG BINARY USER ARGS...: an image of one static binary, FROM scratch.
from_binary() {
  local name="$1" tag="$2" binary="$3" user="$4" c
  shift 4
  c="$(buildah from scratch)"
  buildah copy --quiet "$c" "$binary" "/$(basename "$binary")" >/dev/null
  buildah config --user "$user" --entrypoint "[\"/$(basename "$binary")\"]" "$c"
  buildah commit --quiet --format docker "$c" "$tag" >/dev/null
  buildah rm "$c" >/dev/null
  save "$name" "$tag"
  buildah rmi --force "$tag" >/dev/null
}

# build_from NAME TAG BUD-ARGS...: a Dockerfile built FROM the base. Once its archive is
# saved the image leaves buildah's storage (vfs keeps full copies): only the base stays.
build_from() {
  local name="$1" tag="$2"
  shift 2
  (cd "$root" && bud --build-arg "BASE=$BASE_IMAGE" -t "$tag" "$@")
  save "$name" "$tag"
  buildah rmi --force "$tag" >/dev/null
}

node_bin="$(bash "$root/tools/cluster/build.sh" node)"
# The base must be in buildah's storage for the builds FROM it (after a cache wipe of the
# storage, the archive brings it back).
if ! buildah inspect "$BASE_IMAGE" >/dev/null 2>&1 && [[ -f "$(archive base)" ]]; then
  buildah pull --quiet "docker-archive:$(archive base)" >/dev/null
fi
step base "about 1.5 min: debootstrap of Debian $DEBIAN_SUITE" build_base
step pause "seconds" from_binary pause localhost/pause:1 "$node_bin/pause" 65535
step operator "about 1 min" build_from operator localhost/mlops-operator:0.1.0 \
  -f operator/Dockerfile "$root"
step trainer "about 1.5 min" build_from trainer localhost/iris-trainer:0.1.0 \
  -f examples/iris/Dockerfile "$root"
step mlserver "about 1.5 min" build_from mlserver "docker.io/seldonio/mlserver:$MLSERVER_VERSION" \
  --build-arg "MLSERVER_VERSION=$MLSERVER_VERSION" -f "$here/mlserver/Dockerfile" "$here/mlserver"
step s3 "seconds" from_binary s3 "localhost/versitygw:$VERSITYGW_VERSION" "$node_bin/versitygw" 65532
step coredns "seconds" from_binary coredns "localhost/coredns:$COREDNS_VERSION" "$node_bin/coredns" 65532
# Images of older builds (and anything left by an interrupted one) are garbage now.
buildah rmi --prune --force >/dev/null 2>&1 || true
# Archives of older keys are garbage now.
for f in "$out"/*.tar; do
  keep=false
  for name in "${order[@]}"; do [[ "$f" == "$(archive "$name")" ]] && keep=true; done
  $keep || rm -f "$f"
done
for name in "${order[@]}"; do [[ $name == base ]] || archive "$name"; done
