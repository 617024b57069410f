"""Latency of the TrainingJob controller on the local cluster.

Creates N TrainingJobs (kwok plays each training pod for ~1 s and reports metrics),
and measures, with one client clock:
  apply -> Job:    from the create request of a TrainingJob to its Job appearing in a watch;
  complete -> Model: from its Job's Complete condition appearing in a watch to the Model
                   appearing in a watch.
Also the operator's peak RSS and CPU seconds. Writes a table and bench/results/<name>.json.

    make bench-training N=200        # or: .venv/bin/python bench/training_latency.py --n 200
    .venv/bin/python bench/training_latency.py --n 200 --rate 5   # steady arrivals
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools" / "cluster"))
import cluster as local_cluster  # noqa: E402

GROUP, VERSION = "mlops.seed.dev", "v1alpha1"
REPORT = json.dumps({"metrics": {"accuracy": 0.97}, "artifact": {"uri": "s3://bench/model.joblib"}})


def trainingjob(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "image": "registry.example/train:1",
            "output": {"uri": "s3://bench", "modelName": "bench", "format": "sklearn"},
            "podMetadata": {
                "annotations": {
                    "sim.mlops.seed.dev/message": REPORT,
                    "sim.mlops.seed.dev/duration": "1s",
                }
            },
        },
    }


class Recorder:
    """First time (monotonic) each key was seen; a thread per watch feeds it."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}
        self.lock = threading.Lock()

    def mark(self, key: str) -> None:
        now = time.monotonic()
        with self.lock:
            self.seen.setdefault(key, now)


def watch_jobs(api: client.ApiClient, ns: str, created: Recorder, done: Recorder,
               stop: threading.Event) -> None:  # fmt: skip
    stream = watch.Watch()
    for event in stream.stream(client.BatchV1Api(api).list_namespaced_job, ns,
                               timeout_seconds=3600):  # fmt: skip
        job = event["object"]
        tj = (job.metadata.labels or {}).get(f"{GROUP}/trainingjob")
        if tj:
            created.mark(tj)
            conditions = (job.status and job.status.conditions) or []
            if any(c.type == "Complete" and c.status == "True" for c in conditions):
                done.mark(tj)
        if stop.is_set():
            stream.stop()


def watch_models(api: client.ApiClient, ns: str, models: Recorder, stop: threading.Event) -> None:
    stream = watch.Watch()
    custom = client.CustomObjectsApi(api)
    for event in stream.stream(custom.list_namespaced_custom_object, GROUP, VERSION, ns,
                               "models", timeout_seconds=3600):  # fmt: skip
        obj = event["object"]
        tj = obj["spec"]["lineage"]["trainingJob"]["name"]
        models.mark(tj)
        if stop.is_set():
            stream.stop()


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


def proc_usage(pid: int) -> tuple[float, float]:
    """(peak RSS in MB, CPU seconds) of a live process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    hwm_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return hwm_kb / 1024, ticks / os.sysconf("SC_CLK_TCK")


def run(n: int, concurrency: int, rate: float, out: Path) -> dict[str, Any]:
    local_cluster.up()
    kubeconfig = str(local_cluster.KUBECONFIG)
    local_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    api = config.new_client_from_config(config_file=kubeconfig)
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": ns}})
    local_cluster.kubectl("wait", "-n", ns, "--for=create", "serviceaccount/default")

    log = (out.parent / f"{out.stem}.operator.log").open("w")
    port = local_cluster.free_port()
    operator = subprocess.Popen(
        [sys.executable, "-m", "mlops_operator", "run", "--standalone", f"--namespace={ns}",
         "--liveness-host=127.0.0.1", f"--liveness-port={port}"],
        env={**os.environ, "KUBECONFIG": kubeconfig}, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    created, done, models, applied = Recorder(), Recorder(), Recorder(), Recorder()
    stop = threading.Event()
    watchers = [
        threading.Thread(target=watch_jobs, args=(api, ns, created, done, stop), daemon=True),
        threading.Thread(target=watch_models, args=(api, ns, models, stop), daemon=True),
    ]
    for t in watchers:
        t.start()
    custom = client.CustomObjectsApi(api)
    try:
        local_cluster.wait_healthy(f"http://127.0.0.1:{port}/healthz", operator)
        names = [f"tj-{i:05d}" for i in range(n)]
        start = time.monotonic()

        def create(name: str) -> None:
            applied.mark(name)
            custom.create_namespaced_custom_object(GROUP, VERSION, ns, "trainingjobs",
                                                   trainingjob(name))  # fmt: skip

        if rate > 0:
            # A steady arrival rate: latency without the queueing of a burst.
            for i, name in enumerate(names):
                time.sleep(max(0.0, start + i / rate - time.monotonic()))
                create(name)
        else:
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(create, names))
        applied_all = time.monotonic() - start
        deadline = time.monotonic() + 600 + n
        while len(models.seen) < n and time.monotonic() < deadline:
            if operator.poll() is not None:
                raise RuntimeError(f"operator exited with {operator.returncode}")
            time.sleep(0.2)
        all_jobs = max(created.seen.values()) - start
        all_models = max(models.seen.values()) - start
        rss_mb, cpu_s = proc_usage(operator.pid)
    finally:
        stop.set()
        operator.terminate()
        operator.wait(timeout=30)
        client.CoreV1Api(api).delete_namespace(ns)
    missing = n - len(models.seen)
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}",
        "n": n,
        "concurrency": concurrency,
        "rate_per_s": rate or None,
        "missing_models": missing,
        "apply_all_s": round(applied_all, 2),
        "all_jobs_s": round(all_jobs, 2),
        "all_models_s": round(all_models, 2),
        "apply_to_job_s": percentiles([created.seen[k] - applied.seen[k] for k in created.seen]),
        "complete_to_model_s": percentiles(
            [models.seen[k] - done.seen[k] for k in models.seen if k in done.seen]
        ),
        "operator_peak_rss_mb": round(rss_mb, 1),
        "operator_cpu_s": round(cpu_s, 1),
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def table(result: dict[str, Any]) -> str:
    pace = (
        f"created at {result['rate_per_s']}/s"
        if result["rate_per_s"]
        else f"created in a burst by {result['concurrency']} threads"
    )
    rows = [f"N={result['n']} TrainingJobs, {pace}"]
    for key, label in (("apply_to_job_s", "apply -> Job"), ("complete_to_model_s",
                                                             "Job complete -> Model")):  # fmt: skip
        p = result[key]
        rows.append(f"  {label:<22} p50 {p['p50']:.3f}s  p95 {p['p95']:.3f}s  "
                    f"p99 {p['p99']:.3f}s  max {p['max']:.3f}s")  # fmt: skip
    rows.append(f"  all {result['n']} Jobs exist after {result['all_jobs_s']}s; "
                f"all Models after {result['all_models_s']}s")  # fmt: skip
    rows.append(
        f"  operator: peak RSS {result['operator_peak_rss_mb']} MB, "
        f"CPU {result['operator_cpu_s']} s; missing Models: {result['missing_models']}"
    )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8, help="burst: creating threads")
    parser.add_argument("--rate", type=float, default=0, help="creations per second (0: burst)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "training.json")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = run(args.n, args.concurrency, args.rate, args.out)
    print(table(result))
    return 1 if result["missing_models"] else 0


if __name__ == "__main__":
    sys.exit(main())
