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
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kubernetes import client, config

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "cluster"))
import cluster as local_cluster  # noqa: E402


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
        local_cluster.up()
        kubeconfig = str(local_cluster.KUBECONFIG)
    api = config.new_client_from_config(config_file=kubeconfig)
    return Cluster(kubeconfig=kubeconfig, api=api)


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace enforcing the `restricted` Pod Security Standard."""
    name = f"t-{uuid.uuid4().hex[:10]}"
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
