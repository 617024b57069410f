"""Operator memory (RSS) idle and with N TrainingJobs present, on the local cluster.

Starts `mlops-operator run --standalone --namespace=<fresh namespace>` and reads its RSS
from /proc/<pid>/status:
  idle:     started, nothing to watch yet;
  loaded:   after N TrainingJobs with `suspend: true` were created and each reached phase
            Suspended (the operator created N suspended Jobs; no pods run);
  restart:  a fresh operator started with the N present, once it has reconciled all of them
            (its own mlops_operator_reconcile_total counts them).
VmHWM is the process's peak RSS. For each N of a curve (`--n 100,1000,3000,10000`), in a
fresh namespace (the previous one gone first): the RSS above idle per cached object (each
run is a TrainingJob and its Job), and what the cache itself holds of one of each (the deep
size of the slimmed bodies, as kube/cache.py keeps them). Writes a table and
bench/results/operator-memory-<n>.json.

    .venv/bin/python bench/operator_memory.py --n 1000
    .venv/bin/python bench/operator_memory.py --n 100,1000,3000,10000 --no-restart
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


def trainingjobs(n: int) -> list[dict[str, Any]]:
    return [
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
    ]


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


def deep_size(value: Any) -> int:
    """Bytes a JSON-like value holds in this Python (dicts, lists, strings, numbers)."""
    size = sys.getsizeof(value)
    if isinstance(value, dict):
        size += sum(deep_size(k) + deep_size(v) for k, v in value.items())
    elif isinstance(value, list):
        size += sum(deep_size(v) for v in value)
    return size


def cached_bytes(namespace: str) -> dict[str, int]:
    """What the cache keeps of one TrainingJob and of one Job, slimmed as it slims them."""
    from mlops_operator.kube.cache import _slim

    tj = json.loads(kubectl("get", "tj", "-n", namespace, "mem-0000", "-o", "json"))
    selector = "mlops.seed.dev/trainingjob=mem-0000"
    job = json.loads(kubectl("get", "job", "-n", namespace, "-l", selector, "-o", "json"))
    job = job["items"][0]
    return {"trainingjob": deep_size(_slim("trainingjobs", tj)),
            "job": deep_size(_slim("jobs", job))}  # fmt: skip


def gone(namespace: str) -> bool:
    found = subprocess.run(
        [local_cluster.kubectl_binary(), "--kubeconfig", str(local_cluster.KUBECONFIG),
         "get", "namespace", namespace, "--ignore-not-found", "-o", "name"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    return not found.strip()


def measure(n: int, restart: bool) -> dict[str, Any]:
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
        manifests = trainingjobs(n)
        for first in range(0, n, 1000):  # kubectl apply in chunks of 1,000
            chunk = manifests[first : first + 1000]
            kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(chunk))
        result["apply_seconds"] = time.monotonic() - start
        result["all_suspended_seconds"] = (
            wait_until(lambda: suspended(namespace) == n, "all Suspended", 900 + n / 5)
            + result["apply_seconds"]
        )
        result["loaded"] = memory(op.proc.pid)
        op.stop()
        above_idle = (result["loaded"]["VmRSS"] - result["idle"]["VmRSS"]) * 1024 * 1024
        result["rss_bytes_per_cached_object"] = round(above_idle / (2 * n))
        result["cache_bytes_per_object"] = cached_bytes(namespace)
        if restart:
            op = Operator(namespace)
            result["restart_reconciled_seconds"] = wait_until(
                lambda: op.reconciled() >= n, "restart reconciled all"
            )
            result["restart"] = memory(op.proc.pid)
            op.stop()
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false")
        # The next N is measured on a cluster that is done deleting this one.
        wait_until(lambda: gone(namespace), f"namespace {namespace} deleted", 1800)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", default="1000", help="comma-separated sizes")
    parser.add_argument("--no-restart", action="store_true", help="skip the restart phase")
    args = parser.parse_args()
    local_cluster.up()
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    print(f"{'N':>6} {'state':<8} {'RSS MiB':>8} {'peak MiB':>9}  per cached object")
    for n in (int(size) for size in args.n.split(",")):
        result = measure(n, restart=not args.no_restart)
        out = ROOT / "bench" / "results" / f"operator-memory-{n}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        for state in ("idle", "loaded", "restart"):
            if state in result:
                extra = ""
                if state == "loaded":
                    held = result["cache_bytes_per_object"]
                    extra = (f"  {result['rss_bytes_per_cached_object']} B of RSS; the cache "
                             f"holds {held['trainingjob']} B of a TrainingJob, "
                             f"{held['job']} B of a Job")  # fmt: skip
                print(f"{n:>6} {state:<8} {result[state]['VmRSS']:8.1f} "
                      f"{result[state]['VmHWM']:9.1f}{extra}", flush=True)  # fmt: skip
        print(json.dumps({k: v for k, v in result.items() if k.endswith("seconds")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
