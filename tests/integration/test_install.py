"""Installing the operator: kustomize (manifests/) and Helm (charts/mlops-operator).

No container runs under kwok, so "installed and healthy" means what the cluster can check:
every object admitted by the real API server (schemas, RBAC, PodSecurity `restricted`),
the operator pod scheduled and reported Ready by kwok, and the Helm release `deployed`.
That the operator itself works with this RBAC is shown by the controller tests, which run
it with the same ServiceAccount's token (see the `operator` fixture).
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from .conftest import ROOT, Cluster, local_cluster

CHART = ROOT / "charts" / "mlops-operator"
MANIFESTS = ROOT / "manifests"
NAMESPACE = "mlops-system"


def versions() -> dict[str, str]:
    lines = (ROOT / "tools" / "versions.env").read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return {key: value for key, value in pairs}


class Helm:
    def __init__(self, cluster: Cluster) -> None:
        # Built by `make test` before pytest (`make helm`); never here, under a timeout.
        self.binary = str(local_cluster.build("helm", cached_only=True) / "helm")
        self.cluster = cluster

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([self.binary, "--kubeconfig", self.cluster.kubeconfig, *args],
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stderr}")
        return proc

    def template(self, *args: str) -> list[dict[str, Any]]:
        kube = versions()["KUBERNETES_VERSION"]
        out = self("template", "mlops", str(CHART), "-n", NAMESPACE, "--kube-version", kube, *args)
        return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="module")
def helm(crds: Cluster) -> Helm:
    return Helm(crds)


@pytest.fixture(scope="module")
def copies_current() -> None:
    """manifests/ and the chart carry copies of crds/: applying stale ones would downgrade
    the CRDs under the other tests (`make manifests` refreshes them)."""
    for crd in (ROOT / "crds").glob("*.yaml"):
        for copy in (MANIFESTS / "crds" / crd.name, CHART / "crds" / crd.name):
            assert copy.read_text() == crd.read_text(), f"{copy} is stale: run `make manifests`"
    for name in ("clusterrole.yaml", "registry-policy.yaml"):
        source = (MANIFESTS / "rbac" / name).read_text()
        assert (CHART / "files" / name).read_text() == source, "run `make manifests`"


def kustomized(cluster: Cluster) -> list[dict[str, Any]]:
    out = cluster.kubectl("kustomize", str(MANIFESTS)).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [found] = [doc for doc in docs if doc["kind"] == kind]
    return found


def test_kustomize_install_passes_server_side_dry_run(crds: Cluster, copies_current: None) -> None:
    out = crds.kubectl("apply", "--dry-run=server", "-k", str(MANIFESTS)).stdout
    for kind in ("namespace", "customresourcedefinition", "serviceaccount", "clusterrole",
                 "clusterrolebinding", "deployment", "service"):  # fmt: skip
        assert f"{kind}." in out or f"{kind}/" in out, out


def test_kustomize_install_rolls_out(crds: Cluster, copies_current: None) -> None:
    """`kubectl apply -k manifests/` for real: the pod passes `restricted` and becomes Ready."""
    crds.kubectl("apply", "--server-side", "--force-conflicts", "-k", str(MANIFESTS))
    try:
        crds.kubectl("rollout", "status", "-n", NAMESPACE, "deployment/mlops-operator",
                     "--timeout=120s")  # fmt: skip
        selector = "app.kubernetes.io/name=mlops-operator"
        pods = crds.kubectl("get", "pods", "-n", NAMESPACE, "-l", selector, "-o", "json")
        pod = json.loads(pods.stdout)["items"][0]
        assert pod["spec"]["serviceAccountName"] == "mlops-operator"
        assert pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
        endpoints = crds.kubectl("get", "endpointslices", "-n", NAMESPACE, "-l",
                                 "kubernetes.io/service-name=mlops-operator-metrics",
                                 "-o", "jsonpath={.items[*].ports[*].port}").stdout  # fmt: skip
        assert endpoints.split() == ["8000"]
    finally:
        # Keep the namespace and RBAC: the test operator runs as that ServiceAccount.
        crds.kubectl("delete", "-n", NAMESPACE, "deployment/mlops-operator",
                     "service/mlops-operator-metrics", "poddisruptionbudget/mlops-operator",
                     "--wait=true")  # fmt: skip


def test_helm_lint(helm: Helm) -> None:
    out = helm("lint", "--strict", str(CHART)).stdout
    assert "0 chart(s) failed" in out


def test_helm_template_passes_server_side_dry_run(
    helm: Helm, crds: Cluster, copies_current: None
) -> None:
    rendered = yaml.safe_dump_all(helm.template("--include-crds"))
    crds.kubectl("apply", "--dry-run=server", "-n", NAMESPACE, "-f", "-", input=rendered)


def test_helm_and_kustomize_install_the_same_operator(helm: Helm, crds: Cluster) -> None:
    chart, kustomize = helm.template("--include-crds"), kustomized(crds)
    assert one(chart, "ClusterRole")["rules"] == one(kustomize, "ClusterRole")["rules"]
    assert one(chart, "Role")["rules"] == one(kustomize, "Role")["rules"], "the leader Lease"
    policy = [one(docs, "ValidatingAdmissionPolicy")["spec"] for docs in (chart, kustomize)]
    assert policy[0] == policy[1], "only the operator registers a run's output"
    bindings = [one(docs, "ValidatingAdmissionPolicyBinding") for docs in (chart, kustomize)]
    for binding, docs in zip(bindings, (chart, kustomize), strict=True):
        assert (
            binding["spec"]["policyName"]
            == one(docs, "ValidatingAdmissionPolicy")["metadata"]["name"]
        )
        assert binding["spec"]["validationActions"] == ["Deny"]
    crd_names = sorted(d["metadata"]["name"] for d in chart if d["kind"].startswith("CustomRes"))
    assert crd_names == sorted(
        d["metadata"]["name"] for d in kustomize if d["kind"].startswith("CustomRes")
    )
    pods = [one(docs, "Deployment")["spec"]["template"]["spec"] for docs in (chart, kustomize)]
    containers = [pod["containers"][0] for pod in pods]
    for key in ("args", "env", "ports", "livenessProbe", "readinessProbe", "resources",
                "securityContext", "volumeMounts"):  # fmt: skip
        assert containers[0][key] == containers[1][key], key
    for key in ("securityContext", "volumes"):
        assert pods[0][key] == pods[1][key], key
    specs = [one(docs, "Deployment")["spec"] for docs in (chart, kustomize)]
    assert specs[0]["strategy"] == specs[1]["strategy"]
    assert specs[0]["replicas"] == specs[1]["replicas"] == 2, "a leader and a standby"
    pdbs = [one(docs, "PodDisruptionBudget")["spec"] for docs in (chart, kustomize)]
    assert pdbs[0]["minAvailable"] == pdbs[1]["minAvailable"] == 1
    assert one(chart, "Service")["spec"]["ports"] == one(kustomize, "Service")["spec"]["ports"]


def test_chart_values_shape_the_command_line(helm: Helm) -> None:
    docs = helm.template(
        "--set", "watchNamespaces={team-a,ml-*}", "--set", "logFormat=text",
        "--set", "metrics.enabled=false", "--set", "verbose=true",
    )  # fmt: skip
    args = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == ["run", "--standalone", "--log-format=text", "--liveness-port=8080",
                    "--namespace=team-a", "--namespace=ml-*", "--verbose"]  # fmt: skip
    assert not [doc for doc in docs if doc["kind"] == "Service"]


def test_chart_renders_the_alerting_rules_only_when_asked(helm: Helm) -> None:
    """prometheusRule.enabled: the groups of manifests/monitoring/alerts.rules.yaml, verbatim
    (their `{{ $labels }}` templates are Prometheus', not Helm's); off by default, since the
    kind exists only with the Prometheus Operator."""
    assert not [doc for doc in helm.template() if doc["kind"] == "PrometheusRule"]
    docs = helm.template("--set", "prometheusRule.enabled=true",
                         "--set", "prometheusRule.labels.release=prometheus")  # fmt: skip
    rule = one(docs, "PrometheusRule")
    rules = yaml.safe_load((MANIFESTS / "monitoring" / "alerts.rules.yaml").read_text())
    assert rule["spec"]["groups"] == rules["groups"]
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    assert rule["metadata"]["namespace"] == NAMESPACE


@pytest.mark.parametrize(
    "value", ["replicas=11", "logFormat=xml", "image.pullPolicy=Sometimes", "unknownKey=1"]
)
def test_the_values_schema_rejects(helm: Helm, value: str) -> None:
    proc = helm("template", "mlops", str(CHART), "--set", value, check=False)
    assert proc.returncode != 0
    assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr


@pytest.fixture
def release_namespace(crds: Cluster) -> Iterator[str]:
    name = f"helm-{uuid.uuid4().hex[:8]}"
    crds.kubectl("create", "namespace", name)
    crds.kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")
    yield name
    crds.kubectl("delete", "namespace", name, "--wait=false")


def test_helm_install_reaches_a_deployed_release(
    helm: Helm, crds: Cluster, release_namespace: str, copies_current: None
) -> None:
    release = release_namespace  # unique, so its ClusterRole's name is too
    helm("install", release, str(CHART), "-n", release_namespace, "--wait", "--timeout=120s")
    try:
        status = json.loads(helm("status", release, "-n", release_namespace, "-o", "json").stdout)
        assert status["info"]["status"] == "deployed"
        assert "watching all namespaces" in status["info"]["notes"]
        deployment = f"deployment/{release}-mlops-operator"
        crds.kubectl("rollout", "status", "-n", release_namespace, deployment, "--timeout=60s")
        name = f"{release}-mlops-operator"
        binding = crds.kubectl("get", "clusterrolebinding", name, "-o", "json")
        subject = {"kind": "ServiceAccount", "name": name, "namespace": release_namespace}
        assert json.loads(binding.stdout)["subjects"] == [subject]
    finally:
        helm("uninstall", release, "-n", release_namespace, "--wait")
    # Uninstalling removes the cluster-wide RBAC, and keeps the CRDs (and so every object).
    gone = crds.kubectl("get", "clusterrole", f"{release}-mlops-operator", check=False)
    assert "NotFound" in gone.stderr
    crds.kubectl("get", "crd", "trainingjobs.mlops.seed.dev")
