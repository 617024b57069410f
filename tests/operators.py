"""The operator as a real process (`mlops-operator run`), as the controller and fault
tests start, kill and restart it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

import libfaketime
import yaml

from tests.fixtures import OPERATOR_PREFIX, ROOT, Cluster, local_cluster

OPERATOR_ACCOUNT = local_cluster.OPERATOR_ACCOUNT
RBAC = ROOT / "manifests" / "rbac"  # the operator's identity as manifests/ installs it


def clock_ahead(seconds: int) -> dict[str, str]:
    """The environment that runs a process's wall clock `seconds` ahead (the libfaketime
    wheel's library, preloaded); its monotonic clock stays real."""
    library = Path(libfaketime.__file__).parent / "vendor" / "libfaketime" / "src"
    return {
        "LD_PRELOAD": str(library / "libfaketime.so.1"),
        "FAKETIME": f"{seconds:+d}s",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


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
        server: str = "",
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
        self.server = server  # another address of the API server (a proxy), if given
        self.kubeconfig = log_path.with_name("operator.kubeconfig")
        self.proc: subprocess.Popen[bytes] | None = None
        self.metrics_url = ""

    def start(self) -> None:
        local_cluster.service_account_kubeconfig(self.kubeconfig, Path(self.cluster.kubeconfig))
        if self.server:
            config = yaml.safe_load(self.kubeconfig.read_text())
            config["clusters"][0]["cluster"]["server"] = self.server
            self.kubeconfig.write_text(yaml.safe_dump(config))
        self.restart()

    def restart(self) -> None:
        """Start the process again with the token it had (as a kubelet restarts a container:
        no API call needed, so this works while the API server is away)."""
        for _ in range(3):
            if self._launch():
                return
        raise AssertionError(f"no free port for the operator:\n{self.log()[-3000:]}")

    def _launch(self) -> bool:
        """Run the process until /healthz answers; False if a port we picked was taken
        meanwhile (by any outgoing connection's ephemeral port): try others."""
        port, metrics_port = local_cluster.free_port(), local_cluster.free_port()
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        start = self.log_path.stat().st_size if self.log_path.exists() else 0
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
            if "Address already in use" in self.log()[start:]:
                return False
            raise AssertionError(f"{err}:\n{self.log()}") from None
        return True

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, as when a node dies under the operator."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=30)

    def exited(self) -> int | None:
        """The exit code if the process has ended, else None."""
        return None if self.proc is None else self.proc.poll()

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
