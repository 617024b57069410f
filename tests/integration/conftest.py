"""Fixtures of the controller tests: the operator as a process with its ServiceAccount's
token, and namespaces it watches. The cluster itself comes from tests/fixtures.py."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

# Not fixtures (those come from the plugin): names the test modules import from here.
from tests.fixtures import OPERATOR_PREFIX, ROOT, Cluster, fresh_namespace, local_cluster

__all__ = ["ROOT", "Cluster", "Operator", "local_cluster"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def op_namespace(cluster: Cluster, operator: Operator) -> Iterator[str]:
    """A fresh namespace enforcing `restricted`, watched by the test operator."""
    yield from fresh_namespace(cluster, OPERATOR_PREFIX)


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
        env: dict[str, str] | None = None,
    ) -> None:
        self.cluster = cluster
        self.log_path = log_path
        self.watch = watch
        # A Lease of its own unless told otherwise: test operators that watch different
        # namespaces must not wait for each other's Lease.
        lease = (
            []
            if any(a.startswith("--lease-name") for a in args)
            else [f"--lease-name=test-{uuid.uuid4().hex[:8]}"]
        )
        self.args = [*args, *lease]
        self.env = dict(env or {})
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
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig), **self.env},
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
