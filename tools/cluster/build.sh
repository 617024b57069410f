#!/usr/bin/env bash
# Builds the project's Go binaries from the Go module proxy, once.
#
#   build.sh [control-plane]  -> $MLOPS_CACHE/bin/<key>/{kube-apiserver,kube-controller-manager,
#                                kube-scheduler,etcd,kwok,kwokctl}
#   build.sh helm             -> $MLOPS_CACHE/bin/helm-<key>/helm
#   build.sh kubeflow         -> $MLOPS_CACHE/bin/kubeflow-<key>/{training-operator,crds/*.yaml}
#                                (Kubeflow's training operator v1, for bench/peer_kubeflow.py)
#
# Each <key> hashes only the pinned versions that component uses, this script and its
# Go sources, so a second build on the same machine is a no-op, a version bump rebuilds
# what it pins, and bumping Helm does not rebuild Kubernetes.
# Prints the bin directory on stdout (logs go to stderr).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../versions.env
source "$here/../versions.env"
cache="${MLOPS_CACHE:-$HOME/.cache/mlops-operator}"
component="${1:-control-plane}"

pins() { grep -E "^($1)=" "$here/../versions.env"; }
case "$component" in
  control-plane)
    key="$({ pins 'KUBERNETES_VERSION|ETCD_VERSION|KWOK_VERSION'; cat "$here/build.sh" "$here"/go/*/main.go; } | sha256sum | cut -c1-16)"
    bin="$cache/bin/$key" ;;
  helm)
    key="$({ pins HELM_VERSION; cat "$here/build.sh"; } | sha256sum | cut -c1-16)"
    bin="$cache/bin/helm-$key" ;;
  kubeflow)
    key="$({ pins KUBEFLOW_TRAINING_OPERATOR_VERSION; cat "$here/build.sh"; } | sha256sum | cut -c1-16)"
    bin="$cache/bin/kubeflow-$key" ;;
  *) echo "usage: build.sh [control-plane|helm|kubeflow]" >&2; exit 2 ;;
esac
if [[ -f "$bin/.complete" ]]; then
  echo "$bin"
  exit 0
fi

mkdir -p "$cache/src"
# `make test` and `make cluster` may both ask for a cold build: the second one waits.
exec 9>"$cache/.build-$component.lock"
flock 9
if [[ -f "$bin/.complete" ]]; then
  echo "$bin"
  exit 0
fi

export CGO_ENABLED=0 GOWORK=off GOFLAGS=-mod=mod
mkdir -p "$bin"
log() { echo "[build] $*" >&2; }

# Builds one of our small modules under $cache/src/<name>: a main.go from
# tools/cluster/go/<name> plus a go.mod generated from the pinned versions.
prepare_module() {
  local name="$1" dir="$cache/src/$1-$key"
  rm -rf "$dir" && mkdir -p "$dir"
  cp "$here/go/$name/main.go" "$dir/"
  echo "$dir"
}

build_kube() {
  local dir ver="$KUBERNETES_VERSION" minor staging
  dir="$(prepare_module kube)"
  # Staging modules are replaced by local paths in k8s.io/kubernetes's go.mod;
  # replace each with its published v0.Y.Z instead, taking the list from that go.mod.
  local gomod
  gomod="$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$ver" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
  staging="v0.${ver#v1.}"
  {
    echo "module mlops.seed.dev/tools/kube"
    echo
    grep -E '^go ' "$gomod"
    echo
    echo "require k8s.io/kubernetes $ver"
    echo
    echo "replace ("
    sed -nE 's#^\s*(k8s\.io/[a-z0-9-]+) => \./staging/.*#\t\1 => \1 '"$staging"'#p' "$gomod"
    echo ")"
  } >"$dir/go.mod"
  log "kubernetes $ver: resolving modules"
  (cd "$dir" && go mod tidy >&2)
  minor="${ver#v1.}"; minor="${minor%%.*}"
  local pkg=k8s.io/component-base/version
  local ldflags="-s -w -X $pkg.gitVersion=$ver -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  log "kubernetes $ver: compiling (cold: tens of minutes on 2 cores)"
  (cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$bin/kube" . >&2)
  for c in kube-apiserver kube-controller-manager kube-scheduler; do
    ln -sf kube "$bin/$c"
  done
}

build_etcd() {
  local dir
  dir="$(prepare_module etcd)"
  printf 'module mlops.seed.dev/tools/etcd\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" >"$dir/go.mod"
  log "etcd $ETCD_VERSION: resolving and compiling"
  (cd "$dir" && go mod tidy >&2 && go build -trimpath -ldflags "-s -w" -o "$bin/etcd" . >&2)
}

build_kwok() {
  # kwok's module has no replaces, so `go install` works as its docs say.
  log "kwok $KWOK_VERSION: compiling kwok and kwokctl"
  GOBIN="$bin" go install -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION" >&2
}

build_helm() {
  # helm's module has no replaces either.
  log "helm $HELM_VERSION: compiling"
  GOBIN="$bin" go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
}

build_kubeflow() {
  # No replaces in its go.mod either; the binary is named after its package, training-operator.v1.
  local mod=github.com/kubeflow/training-operator ver="$KUBEFLOW_TRAINING_OPERATOR_VERSION" src
  log "kubeflow training-operator $ver: compiling"
  GOBIN="$bin" go install -trimpath -ldflags "-s -w" "$mod/cmd/training-operator.v1@$ver" >&2
  mv "$bin/training-operator.v1" "$bin/training-operator"
  # Its CRDs come from the same module zip (manifests/base/crds), already in the module cache.
  src="$(cd "$cache/src" && go mod download -json "$mod@$ver" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  mkdir -p "$bin/crds"
  install -m 0644 "$src"/manifests/base/crds/kubeflow.org_*.yaml "$bin/crds/"
}

start=$(date +%s)
if [[ "$component" == helm ]]; then
  build_helm
elif [[ "$component" == kubeflow ]]; then
  build_kubeflow
else
  build_etcd
  build_kwok
  build_kube
fi
touch "$bin/.complete"
log "done in $(( $(date +%s) - start ))s: $bin"
echo "$bin"
