"""ContinuousTraining at scale, on the local cluster, against one operator process.

  new data:  N ContinuousTrainings, each on a dataset of its own; one Dataset version is
             registered for each, all at once: the time from a version's create to its
             run's TrainingJob appearing (client clocks: the create's answer, the watch).
  idle:      M ContinuousTrainings with a daily schedule that does not fire during the
             measurement, settled: the operator's CPU seconds per minute and its RSS, over a
             window that holds a periodic resync, and the API requests it made meanwhile.
  schedule:  K ContinuousTrainings on `* * * * *` for a few minutes: how late each run's
             TrainingJob appears after its scheduled minute (wall clock).
Writes bench/results/continuous-training.json and prints a Markdown table.

    .venv/bin/python bench/continuous_training.py --new-data 100 --idle 1000 --scheduled 50
"""

from __future__ import annotations

import argparse
import hashlib
import json
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
    percentiles,
    proc_usage,
    wait_until,
    watch_objects,
)
from kubernetes import client

CT_LABEL = f"{GROUP}/continuoustraining"
REPORT = json.dumps({"metrics": {"accuracy": 0.97}, "artifact": {"uri": "s3://bench/model.joblib"}})


def continuous(name: str, triggers: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "image": "registry.example/train:1",
        "output": {"uri": "s3://bench", "modelName": name, "format": "sklearn"},
        "podMetadata": {"annotations": {"sim.mlops.seed.dev/message": REPORT}},
    }
    if "onNewDataset" in triggers:
        spec["dataset"] = {"ref": {"name": triggers["onNewDataset"]["name"]}}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ContinuousTraining",
        "metadata": {"name": name},
        "spec": {
            "template": {"spec": spec},
            "triggers": triggers,
            "concurrencyPolicy": "Allow",
            "successfulRunsHistoryLimit": 1,
        },
    }


def dataset(name: str) -> dict[str, Any]:
    digest = "sha256:" + hashlib.sha256(name.encode()).hexdigest()
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Dataset",
        "metadata": {"name": f"{name}-v1"},
        "spec": {"datasetName": name, "version": 1, "uri": f"s3://data/{name}/", "digest": digest},
    }


def watch_runs(api: client.ApiClient, ns: str, seen: Any, stop: threading.Event) -> None:
    args = (api, GROUP, VERSION, ns, "trainingjobs", seen, stop)
    threading.Thread(target=watch_objects, args=args, daemon=True).start()


def create_all(custom: client.CustomObjectsApi, ns: str, plural: str, bodies: list[dict[str, Any]],
               marked: Recorder | None = None) -> None:  # fmt: skip
    def create(body: dict[str, Any]) -> None:
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, plural, body)
        if marked is not None:
            marked.mark(body["spec"]["datasetName"])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, bodies))


def ready_count(custom: client.CustomObjectsApi, ns: str) -> int:
    listed = custom.list_namespaced_custom_object(GROUP, VERSION, ns, "continuoustrainings")
    return sum(
        any(c["type"] == "Ready" and c["status"] == "True"
            for c in (ct.get("status") or {}).get("conditions") or [])
        for ct in listed["items"]
    )  # fmt: skip


def new_data(n: int, out: Path) -> dict[str, Any]:
    created, runs, stop = Recorder(), Recorder(), threading.Event()
    with bench_namespace(out.with_suffix(".new-data.log")) as op:
        custom = client.CustomObjectsApi(op.api)

        def seen(tj: dict[str, Any]) -> None:
            owner = (tj["metadata"].get("labels") or {}).get(CT_LABEL)
            if owner:
                runs.mark(owner)

        watch_runs(op.api, op.ns, seen, stop)
        names = [f"nd-{i:04d}" for i in range(n)]
        cts = [continuous(name, {"onNewDataset": {"name": name}}) for name in names]
        create_all(custom, op.ns, "continuoustrainings", cts)
        wait_until(lambda: ready_count(custom, op.ns) >= n, op.proc, 300)
        start = time.monotonic()
        create_all(custom, op.ns, "datasets", [dataset(name) for name in names], created)
        wait_until(lambda: len(runs.seen) >= n, op.proc, 300)
        stop.set()
        return {"n": n, "all_runs_s": round(max(runs.seen.values()) - start, 2),
                "dataset_to_trainingjob_s": latencies(created, runs)}  # fmt: skip


def idle(m: int, window_s: float, out: Path) -> dict[str, Any]:
    with bench_namespace(out.with_suffix(".idle.log")) as op:
        custom = client.CustomObjectsApi(op.api)
        daily = {"schedule": {"cron": "0 3 * * *", "timeZone": "Europe/Paris"}}
        cts = [continuous(f"idle-{i:05d}", daily) for i in range(m)]
        create_all(custom, op.ns, "continuoustrainings", cts)
        wait_until(lambda: ready_count(custom, op.ns) >= m, op.proc, 600 + m)
        time.sleep(30)  # let the last writes and their echoes settle before the window opens
        before = sum(op.api_requests().values())
        _, cpu_start = proc_usage(op.proc.pid)
        t0 = time.monotonic()
        time.sleep(window_s)  # the measurement window: nothing happens in it on purpose
        rss, cpu_end = proc_usage(op.proc.pid)
        minutes = (time.monotonic() - t0) / 60
        requests = op.api_requests()
        return {
            "m": m,
            "window_s": window_s,
            "cpu_s_per_minute": round((cpu_end - cpu_start) / minutes, 3),
            "peak_rss_mb": round(rss, 1),
            "api_requests_in_window": sum(requests.values()) - before,
            "api_requests": dict(requests.most_common(8)),
        }


def scheduled(k: int, minutes: int, out: Path) -> dict[str, Any]:
    late: list[float] = []
    stop = threading.Event()
    with bench_namespace(out.with_suffix(".schedule.log")) as op:
        custom = client.CustomObjectsApi(op.api)
        lock = threading.Lock()
        seen_names: set[str] = set()

        def seen(tj: dict[str, Any]) -> None:
            name = tj["metadata"]["name"]
            suffix = name.rsplit("-s", 1)[-1]
            with lock:
                if name in seen_names or not suffix.isdigit():
                    return
                seen_names.add(name)
                late.append(time.time() - int(suffix) * 60)

        watch_runs(op.api, op.ns, seen, stop)
        minutely = {"schedule": {"cron": "* * * * *"}}
        cts = [continuous(f"cron-{i:03d}", minutely) for i in range(k)]
        create_all(custom, op.ns, "continuoustrainings", cts)
        wait_until(lambda: len(late) >= k * minutes, op.proc, 60 * (minutes + 3))
        stop.set()
    return {"k": k, "minutes": minutes, "runs": len(late), "lateness_s": percentiles(late)}


def table(result: dict[str, Any]) -> str:
    """The rows docs/benchmarks.md keeps."""
    nd, idl, sch = result["new_data"], result["idle"], result["schedule"]
    d, lt = nd["dataset_to_trainingjob_s"], sch["lateness_s"]
    return "\n".join([
        "| measured | result |",
        "|---|---|",
        f"| new Dataset version → its TrainingJob (N = {nd['n']}, all at once) "
        f"| p50 {d['p50']:.2f} s, p99 {d['p99']:.2f} s, max {d['max']:.2f} s |",
        f"| {idl['m']:,} idle ContinuousTrainings with schedules, over {idl['window_s']:.0f} s "
        f"| {idl['cpu_s_per_minute']:.2f} CPU s per minute, {idl['peak_rss_mb']:.0f} MB peak RSS, "
        f"{idl['api_requests_in_window']} API requests |",
        f"| schedule lateness ({sch['runs']} runs of {sch['k']} ContinuousTrainings) "
        f"| p50 {lt['p50']:.2f} s, p99 {lt['p99']:.2f} s, max {lt['max']:.2f} s |",
    ])  # fmt: skip


def run(new_data_n: int, idle_m: int, idle_window: float, scheduled_k: int, minutes: int,
        out: Path) -> dict[str, Any]:  # fmt: skip
    result = {
        **machine(),
        "new_data": new_data(new_data_n, out),
        "idle": idle(idle_m, idle_window, out),
        "schedule": scheduled(scheduled_k, minutes, out),
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-data", type=int, default=100)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--idle-window", type=float, default=360.0, help="seconds (holds a resync)")
    parser.add_argument("--scheduled", type=int, default=50)
    parser.add_argument("--minutes", type=int, default=3)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "continuous-training.json"
    )
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = run(args.new_data, args.idle, args.idle_window, args.scheduled, args.minutes,
                 args.out)  # fmt: skip
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
