"""Operator memory (RSS) idle and with N TrainingJobs present, on the local cluster.

Starts `mlops-operator run --standalone --namespace=<fresh namespace>` and reads its RSS
from /proc/<pid>/status:
  idle:     started, nothing to watch yet;
  loaded:   after N TrainingJobs with `suspend: true` were created and each reached phase
            Suspended (the operator created N suspended Jobs; no pods run);
  restart:  a fresh operator started with the N present, once it has reconciled all of them
            (its own mlops_operator_reconcile_total counts them).
VmHWM is the process's peak RSS. Writes a table and bench/results/operator-memory-<n>.json.

    .venv/bin/python bench/operator_memory.py --n 1000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools" / "cluster"))
import cluster as local_cluster  # noqa: E402


def kubectl(*args: str, input: str | None = None) -> str:
    return subprocess.run(
        [local_cluster.kubectl_binary(), "--kubeconfig", str(local_cluster.KUBECONFIG), *args],
        input=input, capture_output=True, text=True, check=True, timeout=900,
    ).stdout  # fmt: skip


def memory(pid: int) -> dict[str, float]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}  # MiB


class Operator:
    def __init__(self, namespace: str) -> None:
        port, self.metrics_port = local_cluster.free_port(), local_cluster.free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlops_operator", "run", "--standalone",
             f"--namespace={namespace}", "--liveness-host=127.0.0.1", f"--liveness-port={port}",
             "--metrics-host=127.0.0.1", f"--metrics-port={self.metrics_port}"],
            env={**os.environ, "KUBECONFIG": str(local_cluster.KUBECONFIG)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        local_cluster.wait_healthy(f"http://127.0.0.1:{port}/healthz", self.proc)

    def reconciled(self) -> float:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            for line in response.read().decode().splitlines():
                if line.startswith('mlops_operator_reconcile_total{kind="TrainingJob",result="s'):
                    return float(line.split()[-1])
        return 0.0

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


def trainingjobs(n: int) -> str:
    return yaml.safe_dump_all(
        {
            "apiVersion": "mlops.seed.dev/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": f"mem-{i:04d}"},
            "spec": {
                "image": "registry.example/train:1",
                "suspend": True,
                "output": {"uri": "s3://bench", "modelName": "mem", "format": "sklearn"},
            },
        }
        for i in range(n)
    )


def wait_until(predicate: Any, what: str, timeout_s: float = 900) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(what)
        time.sleep(1)
    return time.monotonic() - start


def suspended(namespace: str) -> int:
    phases = kubectl("get", "tj", "-n", namespace, "-o", "jsonpath={.items[*].status.phase}")
    return phases.split().count("Suspended")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000)
    n = parser.parse_args().n
    local_cluster.up()
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    namespace = f"mem-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", namespace)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version()}
    result: dict[str, Any] = {"n": n, "date": datetime.now(UTC).isoformat(), "machine": machine}
    try:
        op = Operator(namespace)
        # "Idle" is defined as 5 s after start-up with nothing to watch (a measurement
        # point, not a wait for a condition).
        time.sleep(5)
        result["idle"] = memory(op.proc.pid)
        start = time.monotonic()
        kubectl("apply", "-n", namespace, "-f", "-", input=trainingjobs(n))
        result["apply_seconds"] = time.monotonic() - start
        result["all_suspended_seconds"] = (
            wait_until(lambda: suspended(namespace) == n, "all Suspended") + result["apply_seconds"]
        )
        result["loaded"] = memory(op.proc.pid)
        op.stop()

        op = Operator(namespace)
        result["restart_reconciled_seconds"] = wait_until(
            lambda: op.reconciled() >= n, "restart reconciled all"
        )
        result["restart"] = memory(op.proc.pid)
        op.stop()
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false")
    out = ROOT / "bench" / "results" / f"operator-memory-{n}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"{'state':<10} {'RSS MiB':>8} {'peak MiB':>9}")
    for state in ("idle", "loaded", "restart"):
        print(f"{state:<10} {result[state]['VmRSS']:8.1f} {result[state]['VmHWM']:9.1f}")
    print(json.dumps({k: v for k, v in result.items() if k.endswith("seconds")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
