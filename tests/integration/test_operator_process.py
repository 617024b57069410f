"""`mlops-operator run` starts against the cluster and reports itself healthy."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from .conftest import Cluster


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_healthy(url: str, proc: subprocess.Popen[str], timeout_s: float = 60) -> int:
    """Poll the liveness endpoint until it answers; fail fast if the process dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"operator exited early:\n{proc.communicate()[1]}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                status: int = response.status
                return status
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    raise TimeoutError(f"{url} never answered")


def test_operator_starts_and_stays_healthy(cluster: Cluster) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlops_operator",
            "run",
            "--standalone",
            "--liveness-host=127.0.0.1",
            f"--liveness-port={port}",
        ],
        env={**os.environ, "KUBECONFIG": cluster.kubeconfig},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_healthy(f"http://127.0.0.1:{port}/healthz", proc) == 200
        # Healthy twice in a row: it started and keeps serving, not a one-off.
        assert wait_healthy(f"http://127.0.0.1:{port}/healthz", proc) == 200
        assert proc.poll() is None
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
