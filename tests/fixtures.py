"""The local cluster as pytest fixtures, for every test directory that needs it.

By default the session starts (or reuses) the local cluster from tools/cluster (kwok nodes,
and the real node where the machine can run containers). With MLOPS_TEST_CLUSTER=existing it
uses whatever KUBECONFIG points at instead (that cluster must run kwok with
tools/cluster/kwok.yaml; `make kind` sets one up). Registered by tests/conftest.py, so the
session has one `cluster`, whichever directory asks first.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kubernetes import client, config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools" / "cluster"))
import cluster as local_cluster  # noqa: E402

from mlops_operator import GROUP, api  # noqa: E402

# The test operator watches only namespaces with this prefix, so tests that play the
# operator's part themselves (writing a status by hand) are left alone.
OPERATOR_PREFIX = "op"


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
    yield from fresh_namespace(cluster, "t")


def fresh_namespace(cluster: Cluster, prefix: str, *, watched: bool | None = None) -> Iterator[str]:
    """A namespace `<prefix>-<random>`, deleted afterwards; for one an operator `watched`
    (default: the test operator's prefix), once its Models are gone too."""
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
    if prefix == OPERATOR_PREFIX if watched is None else watched:
        # While the operator still runs it must release the finalizers of served Models,
        # or the namespace could never go: wait until its Models are gone.
        custom = client.CustomObjectsApi(cluster.api)
        deadline = time.monotonic() + 120
        while custom.list_namespaced_custom_object(GROUP, "v1alpha1", name, "models")["items"]:
            assert time.monotonic() < deadline, f"Models in {name} were never released"
            time.sleep(0.5)


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM a process the tests started, SIGKILL it if it is not gone in 30 s."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
