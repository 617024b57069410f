"""Latency of the ModelDeployment controller on the local cluster.

Registers Model iris-v1 (approved, accuracy 0.95), creates N ModelDeployments that follow
the newest approved version with accuracy >= 0.9, and measures with one client clock:
  apply -> Ready:          from a ModelDeployment's create request to its Ready condition;
  new Model -> rollout:    from creating iris-v2 to each ModelDeployment's status showing
                           a rollout of version 2 (history[0].version == 2);
  new Model -> served:     to each one's currentVersion being 2.

    .venv/bin/python bench/serving_latency.py --n 100
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import (
    GROUP,
    ROOT,
    VERSION,
    Recorder,
    bench_namespace,
    latencies,
    machine,
    proc_usage,
    row,
    wait_until,
)
from kubernetes import client, watch

APPROVED = {"mlops.seed.dev/approved": "true"}


def model(version: int, accuracy: float) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Model",
        "metadata": {"name": f"iris-v{version}", "labels": APPROVED},
        "spec": {
            "modelName": "iris",
            "version": version,
            "artifact": {"uri": f"s3://bench/iris/{version}/model.joblib", "format": "sklearn"},
            "metrics": {"accuracy": accuracy},
        },
    }


def deployment(name: str) -> dict[str, Any]:
    policy = {
        "selector": {"matchLabels": APPROVED},
        "gates": [{"metric": "accuracy", "operator": ">=", "value": 0.9}],
    }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {"model": {"name": "iris", "policy": policy}, "runtime": {"preset": "mlserver"}},
    }


def watch_deployments(api: client.ApiClient, ns: str, ready: Recorder, started: Recorder,
                      served: Recorder, stop: threading.Event) -> None:  # fmt: skip
    stream = watch.Watch()
    custom = client.CustomObjectsApi(api)
    for event in stream.stream(custom.list_namespaced_custom_object, GROUP, VERSION, ns,
                               "modeldeployments", timeout_seconds=3600):  # fmt: skip
        obj = event["object"]
        name, status = obj["metadata"]["name"], obj.get("status") or {}
        conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
        if conditions.get("Ready") == "True":
            ready.mark(name)
        history = status.get("history") or []
        if history and history[0]["version"] == 2:
            started.mark(name)
        if status.get("currentVersion") == 2:
            served.mark(name)
        if stop.is_set():
            stream.stop()


def run(n: int, concurrency: int, out: Path) -> dict[str, Any]:
    applied, ready, started, served, new_model = (Recorder() for _ in range(5))
    stop = threading.Event()
    with bench_namespace(out.with_suffix(".operator.log")) as op:
        api, ns, operator = op.api, op.ns, op.proc
        threading.Thread(
            target=watch_deployments, args=(api, ns, ready, started, served, stop), daemon=True
        ).start()
        custom = client.CustomObjectsApi(api)
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, "models", model(1, 0.95))
        names = [f"md-{i:04d}" for i in range(n)]
        begin = time.monotonic()

        def create(name: str) -> None:
            applied.mark(name)
            custom.create_namespaced_custom_object(GROUP, VERSION, ns, "modeldeployments",
                                                   deployment(name))  # fmt: skip

        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(create, names))
        wait_until(lambda: len(ready.seen) >= n, operator, 600 + 2 * n)
        all_ready = max(ready.seen.values()) - begin

        for name in names:
            new_model.mark(name)  # one event, N observers: the same start for each
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, "models", model(2, 0.97))
        wait_until(lambda: len(served.seen) >= n, operator, 600 + 2 * n)
        stop.set()
        rss_mb, cpu_s = proc_usage(operator.pid)
        requests = op.api_requests()
    result = {
        **machine(),
        "n": n,
        "concurrency": concurrency,
        "all_ready_s": round(all_ready, 2),
        "apply_to_ready_s": latencies(applied, ready),
        "new_model_to_rollout_s": latencies(new_model, started),
        "new_model_to_served_s": latencies(new_model, served),
        "operator_peak_rss_mb": round(rss_mb, 1),
        "operator_cpu_s": round(cpu_s, 1),
        "api_requests_per_modeldeployment": round(sum(requests.values()) / n, 2),
        "api_requests": dict(requests.most_common()),
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serving.json")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = run(args.n, args.concurrency, args.out)
    n = result["n"]
    print(
        "\n".join(
            [
                f"N={result['n']} ModelDeployments following one model",
                row("apply -> Ready", result["apply_to_ready_s"]),
                row("new Model -> rollout", result["new_model_to_rollout_s"]),
                row("new Model -> served", result["new_model_to_served_s"]),
                f"  all Ready after {result['all_ready_s']}s; operator: peak RSS "
                f"{result['operator_peak_rss_mb']} MB, CPU {result['operator_cpu_s']} s",
                "  API requests per ModelDeployment (create, Ready, one upgrade): "
                f"{result['api_requests_per_modeldeployment']}",
                *(
                    f"    {count / n:6.2f}  {what}"
                    for what, count in result["api_requests"].items()
                ),
            ]
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
