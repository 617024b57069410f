"""What every benchmark shares: the cluster, an operator process, clocks and statistics."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools" / "cluster"))
import cluster as local_cluster  # noqa: E402

GROUP, VERSION = "mlops.seed.dev", "v1alpha1"


class Recorder:
    """First time (monotonic) each key was seen; watch threads feed it."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}
        self.lock = threading.Lock()

    def mark(self, key: str) -> None:
        now = time.monotonic()
        with self.lock:
            self.seen.setdefault(key, now)


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {
        "p50": pick(0.50),
        "p95": pick(0.95),
        "p99": pick(0.99),
        "max": ordered[-1],
        "mean": statistics.fmean(ordered),
    }


def latencies(start: Recorder, end: Recorder) -> dict[str, float]:
    return percentiles([end.seen[k] - start.seen[k] for k in end.seen if k in start.seen])


def row(label: str, p: dict[str, float]) -> str:
    return (
        f"  {label:<24} p50 {p['p50']:.3f}s  p95 {p['p95']:.3f}s  "
        f"p99 {p['p99']:.3f}s  max {p['max']:.3f}s"
    )


def proc_usage(pid: int) -> tuple[float, float]:
    """(peak RSS in MB, CPU seconds) of a live process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    hwm_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return hwm_kb / 1024, ticks / os.sysconf("SC_CLK_TCK")


def machine() -> dict[str, str]:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}",
    }


@contextmanager
def bench_namespace(
    log_path: Path,
) -> Iterator[tuple[client.ApiClient, str, subprocess.Popen[bytes]]]:
    """The local cluster with CRDs, a fresh namespace, and an operator watching only it."""
    local_cluster.up()
    kubeconfig = str(local_cluster.KUBECONFIG)
    local_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    api = config.new_client_from_config(config_file=kubeconfig)
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": ns}})
    local_cluster.kubectl("wait", "-n", ns, "--for=create", "serviceaccount/default")
    port = local_cluster.free_port()
    with log_path.open("w") as log:
        operator = subprocess.Popen(
            [sys.executable, "-m", "mlops_operator", "run", "--standalone", f"--namespace={ns}",
             "--liveness-host=127.0.0.1", f"--liveness-port={port}"],
            env={**os.environ, "KUBECONFIG": kubeconfig}, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            local_cluster.wait_healthy(f"http://127.0.0.1:{port}/healthz", operator)
            yield api, ns, operator
        finally:
            operator.terminate()
            operator.wait(timeout=30)
            client.CoreV1Api(api).delete_namespace(ns)


def wait_until(done: Any, operator: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Poll `done()` until true; fail if the operator dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if operator.poll() is not None:
            raise RuntimeError(f"operator exited with {operator.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError("the benchmark did not finish in time")
        time.sleep(0.2)
