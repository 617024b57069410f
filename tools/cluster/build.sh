#!/usr/bin/env bash
# Builds the project's Go binaries from the Go module proxy, once.
#
#   build.sh [control-plane]  -> $MLOPS_CACHE/bin/<key>/{kube-apiserver,kube-controller-manager,
#                                kube-scheduler,etcd,kwok,kwokctl}
#   build.sh helm             -> $MLOPS_CACHE/bin/helm-<key>/helm
#   build.sh kubeflow         -> $MLOPS_CACHE/bin/kubeflow-<key>/{training-operator,crds/*.yaml}
#                                (Kubeflow's training operator v1, for bench/peer_kubeflow.py)
#   build.sh node             -> $MLOPS_CACHE/bin/node-<key>/{containerd,containerd-shim-runc-v2,
#                                ctr,coredns,versitygw,pause,kube-network-policies}: the real
#                                node's runtime, its NetworkPolicy enforcer and the
#                                binaries its images are made of (kubelet/kube-proxy are in
#                                the control plane's binary)
#   build.sh prometheus       -> $MLOPS_CACHE/bin/prometheus-<key>/{prometheus,promtool}: to test
#                                the alerting rules (promtool test rules) and scrape the operator
#   build.sh argocd           -> $MLOPS_CACHE/bin/argocd-<key>/argocd-lua-test: Argo CD's own Lua
#                                engine (its util/lua package), to run our health checks against
#                                their health_test.yaml cases (tests/unit/test_argocd_health.py)
#   build.sh kueue            -> $MLOPS_CACHE/bin/kueue-<key>/{kueue,crds/*.yaml,webhook/manifests.yaml}:
#                                Kueue's manager, its CRDs and its webhook manifests from the same
#                                module zip (tests/kueue.py runs it against the local cluster)
#   build.sh flux             -> $MLOPS_CACHE/bin/flux-<key>/{source-controller,kustomize-controller,
#                                crds/*.yaml}: Flux's Git source and kustomize controllers, run as
#                                processes by tests/flux.py (tests/integration/test_flux.py)
#   build.sh --cached NAME    -> the bin directory if NAME is built, else exit 3 (never builds):
#                                what the test fixtures call, so no cold build runs under a
#                                test timeout (`make test` builds everything first).
#
# Progress goes to stderr, one `[build]` line per component with what a cold build of it
# costs, and a line a minute while it compiles; the Go tool's own output goes to
# $MLOPS_CACHE/logs/build-<component>.log (its tail is printed if a step fails).
# Each <key> hashes only the pinned versions that component uses, the text of the functions
# here that build it and its Go sources, so a second build on the same machine is a no-op, a
# version bump rebuilds what it pins, and bumping Helm (or adding a component) does not
# rebuild Kubernetes.
# Prints the bin directory on stdout (logs go to stderr).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../versions.env
source "$here/../versions.env"
cache="${MLOPS_CACHE:-$HOME/.cache/mlops-operator}"
cached_only=false
if [[ "${1:-}" == --cached ]]; then
  cached_only=true
  shift
fi
component="${1:-control-plane}"

pins() { grep -E "^($1)=" "$here/../versions.env"; }
# The text of build functions: a key covers the steps that make its component and nothing
# else, so adding or editing another component here rebuilds nothing already built.
fns() { local f; for f in "$@"; do sed -n "/^$f() {/,/^}/p" "$here/build.sh"; done; }
case "$component" in
  control-plane)
    key="$({ pins 'KUBERNETES_VERSION|ETCD_VERSION|KWOK_VERSION'; fns prepare_module build_kube build_etcd build_kwok; cat "$here"/go/{kube,etcd}/main.go; } | sha256sum | cut -c1-16)"
    bin="$cache/bin/$key" ;;
  helm)
    key="$({ pins HELM_VERSION; fns build_helm; } | sha256sum | cut -c1-16)"
    bin="$cache/bin/helm-$key" ;;
  kubeflow)
    key="$({ pins KUBEFLOW_TRAINING_OPERATOR_VERSION; fns build_kubeflow; } | sha256sum | cut -c1-16)"
    bin="$cache/bin/kubeflow-$key" ;;
  node)
    key="$({ pins 'CONTAINERD_VERSION|COREDNS_VERSION|VERSITYGW_VERSION|KUBE_NETWORK_POLICIES_VERSION'; fns prepare_module build_node; cat "$here"/go/{coredns,pause}/main.go "$here"/go/kube-network-policies/*.patch; } | sha256sum | cut -c1-16)"
    bin="$cache/bin/node-$key" ;;
  prometheus)
    key="$({ pins PROMETHEUS_VERSION; fns build_prometheus; } | sha256sum | cut -c1-16)"
    bin="$cache/bin/prometheus-$key" ;;
  argocd)
    key="$({ pins 'ARGOCD_VERSION|ARGOCD_GO_TOOLCHAIN'; fns prepare_module build_argocd; cat "$here/go/argocd/main.go"; } | sha256sum | cut -c1-16)"
    bin="$cache/bin/argocd-$key" ;;
  kueue)
    key="$({ pins KUEUE_VERSION; fns build_kueue; } | sha256sum | cut -c1-16)"
    bin="$cache/bin/kueue-$key" ;;
  flux)
    key="$({ pins FLUX_CONTROLLERS_VERSION; fns build_flux; } | sha256sum | cut -c1-16)"
    bin="$cache/bin/flux-$key" ;;
  *) echo "usage: build.sh [--cached] [control-plane|helm|kubeflow|node|prometheus|argocd|kueue|flux]" >&2; exit 2 ;;
esac
if [[ -f "$bin/.complete" ]]; then
  echo "$bin"
  exit 0
fi
if $cached_only; then
  echo "$component is not built yet: run \`make binaries\` (or \`make test\`, which builds it first)" >&2
  exit 3
fi

mkdir -p "$cache/src" "$cache/logs"
# `make test` and `make cluster` may both ask for a cold build: the second one waits.
exec 9>"$cache/.build-$component.lock"
flock 9
if [[ -f "$bin/.complete" ]]; then
  echo "$bin"
  exit 0
fi

# -s -w drops the linker's DWARF; -dwarf=false stops the compiler making it in the first place
# (the cold build's largest cost is compiling, and nothing here is run under a debugger).
export CGO_ENABLED=0 GOWORK=off GOFLAGS='-mod=mod -gcflags=all=-dwarf=false'
mkdir -p "$bin"
log() { echo "[build] $*" >&2; }
buildlog="$cache/logs/build-$component.log"
: >"$buildlog"

# step WHAT ESTIMATE COMMAND...: run a build step with its output in $buildlog, saying what
# it is, what it costs cold, and once a minute that it is still going.
step() {
  local what="$1" estimate="$2" started=$SECONDS pid rc=0
  shift 2
  log "$what (cold: $estimate; warm: seconds)"
  "$@" >>"$buildlog" 2>&1 &
  pid=$!
  while ! wait_up_to 60 "$pid"; do
    log "  $what: still going, $(( (SECONDS - started) / 60 )) min so far"
  done
  wait "$pid" || rc=$?
  if (( rc != 0 )); then
    log "$what failed (exit $rc); the end of $buildlog:"
    tail -n 40 "$buildlog" >&2
    exit "$rc"
  fi
  log "  $what: done in $(( SECONDS - started ))s"
}

# wait_up_to SECONDS PID: true once PID has exited, false if it still runs after SECONDS.
wait_up_to() {
  local i
  for (( i = 0; i < $1 * 5; i++ )); do
    kill -0 "$2" 2>/dev/null || return 0
    sleep 0.2
  done
  return 1
}

# Builds one of our small modules under $cache/src/<name>: a main.go from
# tools/cluster/go/<name> plus a go.mod generated from the pinned versions.
prepare_module() {
  local name="$1" dir="$cache/src/$1-$key"
  rm -rf "$dir" && mkdir -p "$dir"
  cp "$here/go/$name/main.go" "$dir/"
  echo "$dir"
}

build_kube() {
  local dir ver="$KUBERNETES_VERSION" minor staging gomod
  dir="$(prepare_module kube)"
  step "kubernetes $ver: downloading k8s.io/kubernetes" "about 1 min" \
    in_dir "$dir" go mod download -json "k8s.io/kubernetes@$ver"
  # Staging modules are replaced by local paths in k8s.io/kubernetes's go.mod;
  # replace each with its published v0.Y.Z instead, taking the list from that go.mod.
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
  step "kubernetes $ver: resolving and downloading modules" "about 2 min" in_dir "$dir" go mod tidy
  minor="${ver#v1.}"; minor="${minor%%.*}"
  local pkg=k8s.io/component-base/version
  local ldflags="-s -w -X $pkg.gitVersion=$ver -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  step "kubernetes $ver: compiling kube-apiserver, controller-manager, scheduler, kubelet, kube-proxy" \
    "10-12 min on 2 cores, 2.5 GB of memory" \
    in_dir "$dir" go build -trimpath -ldflags "$ldflags" -o "$bin/kube" .
  for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
    ln -sf kube "$bin/$c"
  done
}

# in_dir DIR COMMAND...: run COMMAND in DIR (a step runs it in the background).
in_dir() {
  cd "$1" && shift && "$@"
}

build_etcd() {
  local dir
  dir="$(prepare_module etcd)"
  printf 'module mlops.seed.dev/tools/etcd\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" >"$dir/go.mod"
  step "etcd $ETCD_VERSION: resolving modules" "under a minute" in_dir "$dir" go mod tidy
  step "etcd $ETCD_VERSION: compiling" "about 1 min" \
    in_dir "$dir" go build -trimpath -ldflags "-s -w" -o "$bin/etcd" .
}

build_kwok() {
  # kwok's module has no replaces, so `go install` works as its docs say.
  step "kwok $KWOK_VERSION: compiling kwok and kwokctl" "about 2 min" \
    env GOBIN="$bin" go install -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
}

build_helm() {
  # helm's module has no replaces either.
  step "helm $HELM_VERSION: compiling" "about 2 min" \
    env GOBIN="$bin" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

build_kubeflow() {
  # No replaces in its go.mod either; the binary is named after its package, training-operator.v1.
  local mod=github.com/kubeflow/training-operator ver="$KUBEFLOW_TRAINING_OPERATOR_VERSION" src
  step "kubeflow training-operator $ver: compiling" "about 3 min" \
    env GOBIN="$bin" go install -trimpath -ldflags "-s -w" "$mod/cmd/training-operator.v1@$ver"
  mv "$bin/training-operator.v1" "$bin/training-operator"
  # Its CRDs come from the same module zip (manifests/base/crds), already in the module cache.
  src="$(cd "$cache/src" && go mod download -json "$mod@$ver" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  mkdir -p "$bin/crds"
  install -m 0644 "$src"/manifests/base/crds/kubeflow.org_*.yaml "$bin/crds/"
}

build_node() {
  local dir
  step "containerd $CONTAINERD_VERSION: compiling containerd, its runc shim and ctr" "about 2 min" \
    env GOBIN="$bin" go install -trimpath -ldflags "-s -w" \
    "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD_VERSION"
  step "versitygw $VERSITYGW_VERSION: compiling the S3 store" "about 1.5 min" \
    env GOBIN="$bin" go install -trimpath -ldflags "-s -w" \
    "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
  dir="$(prepare_module coredns)"
  printf 'module mlops.seed.dev/tools/coredns\n\ngo 1.26.0\n\nrequire github.com/coredns/coredns %s\n' "$COREDNS_VERSION" >"$dir/go.mod"
  step "coredns $COREDNS_VERSION: resolving modules" "under a minute" in_dir "$dir" go mod tidy
  step "coredns $COREDNS_VERSION: compiling" "about 1.5 min" \
    in_dir "$dir" go build -trimpath -ldflags "-s -w" -o "$bin/coredns" .
  dir="$(prepare_module pause)"
  printf 'module mlops.seed.dev/tools/pause\n\ngo 1.26.0\n' >"$dir/go.mod"
  step "pause: compiling the pod sandbox process" "seconds" \
    in_dir "$dir" go build -trimpath -ldflags "-s -w" -o "$bin/pause" .
  # The enforcer's module, patched (see versions.env), built from a copy of its zip's tree.
  local mod=sigs.k8s.io/kube-network-policies ver="$KUBE_NETWORK_POLICIES_VERSION" src
  src="$(go mod download -json "$mod@$ver" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  dir="$cache/src/kube-network-policies-$key"
  rm -rf "$dir" && cp -r "$src" "$dir" && chmod -R u+w "$dir"
  # The ceiling keeps git from taking an enclosing repository's root as the patch's base.
  step "kube-network-policies $ver: patching" "seconds" \
    in_dir "$dir" env GIT_CEILING_DIRECTORIES="$cache/src" \
    git apply "$here/go/kube-network-policies/run-on-this-node.patch"
  step "kube-network-policies $ver: compiling the NetworkPolicy enforcer" "about 2 min" \
    in_dir "$dir" go build -trimpath -ldflags "-s -w" -o "$bin/kube-network-policies" ./cmd
}

build_prometheus() {
  # No replaces in its go.mod, so `go install` works. Prometheus 3.Y.Z is published to the Go
  # module proxy as v0.3YY.Z (3.16.0 is v0.316.0); the module's VERSION file must agree.
  local rel="${PROMETHEUS_VERSION#v}" mod=github.com/prometheus/prometheus modver minor src
  minor="${rel#*.}"; minor="${minor%%.*}"
  modver="v0.$(( 300 + minor )).${rel##*.}"
  step "prometheus $PROMETHEUS_VERSION: downloading $mod@$modver" "about 30 s" \
    in_dir "$cache/src" go mod download "$mod@$modver"
  src="$(cd "$cache/src" && go mod download -json "$mod@$modver" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  if [[ "$(cat "$src/VERSION")" != "$rel" ]]; then
    log "$mod@$modver is Prometheus $(cat "$src/VERSION"), not $rel: fix PROMETHEUS_VERSION"
    exit 1
  fi
  # remove_all_sd leaves out every service discovery but static, file and http (plugins/):
  # we scrape static_configs only. No builtinassets: the web UI's files are not in the module
  # zip; the HTTP API is all we use. The module zip has no git revision: the module version
  # stands in for it.
  local pkg=github.com/prometheus/common/version
  local ldflags="-s -w -X $pkg.Version=$rel -X $pkg.Revision=$modver -X $pkg.Branch=HEAD"
  ldflags+=" -X $pkg.BuildUser=mlops-operator -X $pkg.BuildDate=19700101-00:00:00"
  step "prometheus $PROMETHEUS_VERSION: compiling prometheus and promtool" "5-10 min, 1 GB of memory" \
    env GOBIN="$bin" go install -trimpath -tags remove_all_sd -ldflags "$ldflags" \
    "$mod/cmd/prometheus@$modver" "$mod/cmd/promtool@$modver"
}

build_argocd() {
  local dir ver="$ARGOCD_VERSION" mod=github.com/argoproj/argo-cd/v3 gomod
  # Argo CD v3.6 needs Go 1.27; the go command fetches the pinned toolchain from the module
  # proxy (golang.org/toolchain) into the module cache, once.
  export GOTOOLCHAIN="$ARGOCD_GO_TOOLCHAIN"
  dir="$(prepare_module argocd)"
  step "argo-cd $ver: downloading $mod" "under a minute" \
    in_dir "$dir" go mod download -json "$mod@$ver"
  # A module that depends on argo-cd must repeat its replaces (Kubernetes' modules and a few
  # more): copy them from its go.mod. A local-path replace (v3.6 has one: its gitops-engine
  # module, in ./gitops-engine) becomes that module's release tagged with the same version, as
  # build_kube does for Kubernetes' staging modules.
  gomod="$(cd "$dir" && go mod download -json "$mod@$ver" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
  {
    echo "module mlops.seed.dev/tools/argocd"
    echo
    grep -E '^go ' "$gomod"
    echo
    echo "require $mod $ver"
    echo
    echo "replace ("
    # The lines of `replace (...)` blocks and single `replace` lines, comments dropped.
    sed -nE -e '/^replace \($/,/^\)$/{/^replace|^\)/d;p}' -e 's/^replace ([^(].*)/\1/p' "$gomod" |
      sed -E 's#//.*##; s/^\s+//; s/\s+$//; /^$/d' |
      sed -E 's#^(\S+)( \S+)? => \.\.?/.*#\1 => \1 '"$ver"'#; s/^/\t/'
    echo ")"
  } >"$dir/go.mod"
  step "argo-cd $ver: resolving and downloading modules" "about 1 min" in_dir "$dir" go mod tidy
  step "argo-cd $ver: compiling argocd-lua-test (its util/lua and what that imports)" \
    "about 6 min on 2 cores, 1.3 GB of memory" \
    in_dir "$dir" go build -trimpath -ldflags "-s -w" -o "$bin/argocd-lua-test" .
}

build_kueue() {
  # Kueue's go.mod has no replaces, so `go install` works. Its Makefile stamps pkg/version the
  # same way (the module zip has no git commit: the version stands in for it).
  local mod=sigs.k8s.io/kueue ver="$KUEUE_VERSION" src
  local ldflags="-s -w -X $mod/pkg/version.GitVersion=$ver -X $mod/pkg/version.GitCommit=$ver"
  ldflags+=" -X $mod/pkg/version.BuildDate=1970-01-01T00:00:00Z"
  step "kueue $ver: compiling the manager" "about 7 min on 2 cores, 1.7 GB of memory" \
    env GOBIN="$bin" go install -trimpath -ldflags "$ldflags" "$mod/cmd/kueue@$ver"
  # Its CRDs and webhook manifests come from the same module zip, already in the module cache.
  src="$(cd "$cache/src" && go mod download -json "$mod@$ver" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  mkdir -p "$bin/crds" "$bin/webhook"
  install -m 0644 "$src"/config/components/crd/bases/kueue.x-k8s.io_*.yaml "$bin/crds/"
  install -m 0644 "$src/config/components/webhook/manifests.yaml" "$bin/webhook/"
}

build_flux() {
  # Both controllers in one generated module, so the many modules they share compile once.
  # Their go.mod files carry replaces: the ones to published modules are repeated here (a
  # dependency's replaces do not apply), the ones to their own ./api directories are dropped
  # (the api modules are published with the same version). `tool` lines keep the two main
  # packages in the module's build list.
  local dir ver="$FLUX_CONTROLLERS_VERSION" m gomod src
  dir="$cache/src/flux-$key"
  rm -rf "$dir" && mkdir -p "$dir"
  {
    echo "module mlops.seed.dev/tools/flux"
    echo
    echo "go 1.26.0"
    echo
    echo "require ("
    for m in source-controller kustomize-controller; do echo "	github.com/fluxcd/$m $ver"; done
    echo ")"
    echo
    echo "tool ("
    for m in source-controller kustomize-controller; do echo "	github.com/fluxcd/$m"; done
    echo ")"
    echo
    for m in source-controller kustomize-controller; do
      gomod="$(cd "$dir" && go mod download -json "github.com/fluxcd/$m@$ver" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
      sed -nE -e '/^replace \($/,/^\)$/{/^replace|^\)/d;p}' -e 's/^replace ([^(].*)/\1/p' "$gomod" |
        sed -E 's#//.*##; s/^\s+//; s/\s+$//; /^$/d; /=> \.\.?\//d; s/^/replace /'
    done | sort -u
  } >"$dir/go.mod"
  step "flux controllers $ver: compiling source-controller and kustomize-controller" \
    "about 8 min on 2 cores, 1.5 GB of memory" \
    in_dir "$dir" go build -trimpath -ldflags "-s -w" -o "$bin/" \
    "github.com/fluxcd/source-controller" "github.com/fluxcd/kustomize-controller"
  # Their CRDs come from the same module zips, already in the module cache.
  mkdir -p "$bin/crds"
  for m in source-controller kustomize-controller; do
    src="$(cd "$dir" && go mod download -json "github.com/fluxcd/$m@$ver" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
    install -m 0644 "$src"/config/crd/bases/*.yaml "$bin/crds/"
  done
}

start=$(date +%s)
case "$component" in
  control-plane) total="10-13 min" ;;
  helm) total="about 2 min" ;;
  kubeflow) total="about 3 min" ;;
  node) total="about 8 min" ;;
  prometheus) total="5-10 min" ;;
  argocd) total="about 7 min" ;;
  kueue) total="about 7 min" ;;
  flux) total="about 9 min" ;;
esac
log "$component is not built on this machine yet: building it once from the Go module proxy"
log "  ($total on 2 cores when the Go caches are empty; into $bin)"
if [[ "$component" == helm ]]; then
  build_helm
elif [[ "$component" == kubeflow ]]; then
  build_kubeflow
elif [[ "$component" == node ]]; then
  build_node
elif [[ "$component" == prometheus ]]; then
  build_prometheus
elif [[ "$component" == argocd ]]; then
  build_argocd
elif [[ "$component" == kueue ]]; then
  build_kueue
elif [[ "$component" == flux ]]; then
  build_flux
else
  build_etcd
  build_kwok
  build_kube
fi
touch "$bin/.complete"
log "done in $(( $(date +%s) - start ))s: $bin"
echo "$bin"
