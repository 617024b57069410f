"""The operator installed once for every real-node test module (package scope): from its
image with Helm, on the real node, and a `restricted` namespace it watches."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
import yaml

from tests.e2e.realnode import ON_REAL_NODE, RELEASE, ROOT, SYSTEM_NS, WATCHED, apply, kubectl_json
from tests.fixtures import Cluster, local_cluster
from tests.measured import Measured


@pytest.fixture(scope="package")
def real(crds: Cluster) -> Cluster:
    """The cluster, if it has a real node (the local one has, where the machine can)."""
    nodes = kubectl_json(crds, "get", "nodes", "-l", "mlops.seed.dev/node=real")["items"]
    if not nodes:
        why = local_cluster.realnode.unavailable() or "no node labelled mlops.seed.dev/node=real"
        pytest.skip(f"no real node: {why}")
    return crds


@pytest.fixture(scope="package")
def installed(real: Cluster) -> Iterator[str]:
    """The operator installed with Helm from its image, on the real node, watching e2e-*."""
    helm = str(local_cluster.build("helm", cached_only=True) / "helm")
    real.kubectl("create", "namespace", SYSTEM_NS)
    real.kubectl("label", "namespace", SYSTEM_NS, "pod-security.kubernetes.io/enforce=restricted")
    values = {
        "image": {"repository": "localhost/mlops-operator", "tag": "0.1.0",
                  "pullPolicy": "Never"},
        "watchNamespaces": [WATCHED],
        **ON_REAL_NODE,
    }  # fmt: skip
    command = [helm, "--kubeconfig", real.kubeconfig, "install", RELEASE,
               str(ROOT / "charts" / "mlops-operator"), "-n", SYSTEM_NS, "--values", "-",
               "--wait", "--timeout=3m"]  # fmt: skip
    proc = subprocess.run(command, input=yaml.safe_dump(values), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    yield SYSTEM_NS
    subprocess.run([helm, "--kubeconfig", real.kubeconfig, "uninstall", RELEASE, "-n", SYSTEM_NS,
                    "--wait"], capture_output=True, check=False)  # fmt: skip
    real.kubectl("delete", "namespace", SYSTEM_NS, "--wait=false", check=False)


@pytest.fixture(scope="package")
def workspace(installed: str, real: Cluster) -> Iterator[str]:
    """A `restricted` namespace the installed operator watches, with the S3 credentials."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    real.kubectl("create", "namespace", name)
    real.kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")
    secret = kubectl_json(real, "get", "secret", "s3-credentials", "-n", "storage")
    apply(real, name, {"apiVersion": "v1", "kind": "Secret",
                       "metadata": {"name": "s3-credentials"}, "data": secret["data"]})  # fmt: skip
    real.kubectl("wait", "-n", name, "--for=create", "serviceaccount/default", "--timeout=60s")
    yield name
    # Wait while the operator still runs: it releases the finalizers of the Models it served.
    real.kubectl("delete", "namespace", name, "--timeout=120s", timeout=150)


MEASURED = Measured(ROOT / ".cluster" / "e2e-results.jsonl", "real-node tests: what was measured")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    MEASURED.report(terminalreporter)


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Callable[..., None]:
    """Write a test's figures to .cluster/e2e-results.jsonl and the session's summary."""
    return partial(MEASURED.write, request.node.name)
