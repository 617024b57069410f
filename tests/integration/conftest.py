"""Fixtures for tests against a real Kubernetes control plane.

By default the session starts (or reuses) the local kwok-backed cluster from
tools/cluster. With MLOPS_TEST_CLUSTER=existing it uses whatever KUBECONFIG
points at instead (that cluster must run kwok with tools/cluster/kwok.yaml;
`make kind` sets one up).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kubernetes import client, config

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "cluster"))
import cluster as local_cluster  # noqa: E402

from mlops_operator import GROUP, api  # noqa: E402

# The test operator watches only namespaces with this prefix, so tests that play the
# operator's part themselves (writing a status by hand) are left alone.
OPERATOR_PREFIX = "op"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.integration)


@dataclass
class Cluster:
    kubeconfig: str
    api: client.ApiClient = field(repr=False)

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; raises with its stderr when check fails."""
        proc = subprocess.run(
            [local_cluster.kubectl_binary(), "--kubeconfig", self.kubeconfig, *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{proc.stderr}")
        return proc


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    if os.environ.get("MLOPS_TEST_CLUSTER") == "existing":
        kubeconfig = os.environ.get("KUBECONFIG", str(Path.home() / ".kube" / "config"))
    else:
        try:
            # Never a cold build here, under the test timeout: `make test` builds first.
            local_cluster.up(cached_only=True)
        except local_cluster.NotBuilt as err:
            pytest.exit(f"{err}\n(the integration tests need the local control plane)", 2)
        kubeconfig = str(local_cluster.KUBECONFIG)
    api = config.new_client_from_config(config_file=kubeconfig)
    return Cluster(kubeconfig=kubeconfig, api=api)


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> Cluster:
    """The cluster with the CRDs from crds/ installed and established."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    names = [f"crd/{info.plural}.{GROUP}" for info in api.KINDS]
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)
    return cluster


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace enforcing `restricted`, which the test operator does not watch."""
    yield from _namespace(cluster, "t")


@pytest.fixture
def op_namespace(cluster: Cluster, operator: Operator) -> Iterator[str]:
    """A fresh namespace enforcing `restricted`, watched by the test operator."""
    yield from _namespace(cluster, OPERATOR_PREFIX)


OPERATOR_ACCOUNT = local_cluster.OPERATOR_ACCOUNT
RBAC = ROOT / "manifests" / "rbac"  # the operator's identity as manifests/ installs it


class Operator:
    """`mlops-operator run` as a real process, with the installed ServiceAccount's own token.

    Everything an installed operator has but its Deployment (no container runs under kwok):
    manifests/rbac is applied and the process authenticates with a TokenRequest token of the
    ServiceAccount, so every test through it proves the ClusterRole is enough.
    """

    def __init__(
        self,
        cluster: Cluster,
        log_path: Path,
        *,
        watch: str = f"{OPERATOR_PREFIX}-*",
        args: Sequence[str] = (),
    ) -> None:
        self.cluster = cluster
        self.log_path = log_path
        self.watch = watch
        self.args = list(args)
        self.kubeconfig = log_path.with_name("operator.kubeconfig")
        self.proc: subprocess.Popen[bytes] | None = None
        self.metrics_url = ""

    def start(self) -> None:
        local_cluster.service_account_kubeconfig(self.kubeconfig, Path(self.cluster.kubeconfig))
        port, metrics_port = local_cluster.free_port(), local_cluster.free_port()
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlops_operator", "run", "--standalone",
             f"--namespace={self.watch}", "--liveness-host=127.0.0.1",
             f"--liveness-port={port}", "--metrics-host=127.0.0.1",
             f"--metrics-port={metrics_port}", *self.args],
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            local_cluster.wait_healthy(f"http://127.0.0.1:{port}/healthz", self.proc)
        except RuntimeError as err:
            raise AssertionError(f"{err}:\n{self.log()}") from None

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, as when a node dies under the operator."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def forbidden(self) -> list[str]:
        """Log lines where RBAC refused the operator: a rule missing from the ClusterRole.

        (Other 403s, such as an Event posted into a namespace being deleted, are not RBAC's.)
        """
        namespace, account = OPERATOR_ACCOUNT
        refused = f'User "system:serviceaccount:{namespace}:{account}" cannot'
        return [line for line in self.log().splitlines() if refused in line]


@pytest.fixture(scope="session")
def operator(crds: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    op = Operator(crds, tmp_path_factory.mktemp("operator") / "operator.log")
    op.start()
    yield op
    op.stop()
    # kopf only logs some refusals (an Event it could not post): fail the session on any.
    assert not op.forbidden(), "the operator was refused:\n" + "\n".join(op.forbidden())


def _namespace(cluster: Cluster, prefix: str) -> Iterator[str]:
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(cluster.api)
    core.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(
                name=name,
                labels={
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                    "mlops.seed.dev/test": "true",
                },
            )
        )
    )
    # Pods cannot be admitted before the ServiceAccount controller creates `default`.
    cluster.kubectl("wait", "-n", name, "--for=create", "serviceaccount/default", "--timeout=60s")
    yield name
    core.delete_namespace(name, propagation_policy="Background")
    if prefix == OPERATOR_PREFIX:
        # While the operator still runs it must release the finalizers of served Models,
        # or the namespace could never go: wait until its Models are gone.
        custom = client.CustomObjectsApi(cluster.api)
        deadline = time.monotonic() + 120
        while custom.list_namespaced_custom_object(GROUP, "v1alpha1", name, "models")["items"]:
            assert time.monotonic() < deadline, f"Models in {name} were never released"
            time.sleep(0.5)
