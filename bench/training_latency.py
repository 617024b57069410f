"""Latency of the TrainingJob controller on the local cluster.

Creates N TrainingJobs (kwok plays each training pod for ~1 s and reports metrics),
and measures, with one client clock:
  apply -> Job:    from the create request of a TrainingJob to its Job appearing in a watch;
  complete -> Model: from its Job's Complete condition appearing in a watch to the Model
                   appearing in a watch.
Also the operator's peak RSS and CPU seconds, and (for a burst) the baseline: the same
number of plain batch/v1 Jobs created directly, the fastest any controller could go here.
Writes a table and bench/results/<name>.json.

One run proves nothing on 2 shared cores (two runs of the same code an hour apart gave
ratios of 0.33 and 0.52), so a burst is repeated, interleaved: baseline, operator, baseline,
operator, ... (`--repeats`, 3 by default), each pair in fresh namespaces, the previous pair's
namespaces gone before the next starts. The summary is each figure's median with its range.

    .venv/bin/python bench/training_latency.py --n 200   # `make bench` runs it for each N
    .venv/bin/python bench/training_latency.py --n 200 --rate 5   # steady arrivals
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
    profile_summary,
    row,
    scratch_namespace,
    spread,
    wait_until,
    watch_objects,
)
from kubernetes import client

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


def watch_jobs(api: client.ApiClient, ns: str, created: Recorder, done: Recorder,
               stop: threading.Event) -> None:  # fmt: skip
    def seen(job: dict[str, Any]) -> None:
        tj = (job["metadata"].get("labels") or {}).get(f"{GROUP}/trainingjob")
        if tj:
            created.mark(tj)
            conditions = (job.get("status") or {}).get("conditions") or []
            if any(c["type"] == "Complete" and c["status"] == "True" for c in conditions):
                done.mark(tj)

    watch_objects(api, "batch", "v1", ns, "jobs", seen, stop)


def watch_models(api: client.ApiClient, ns: str, models: Recorder, stop: threading.Event) -> None:
    def seen(model: dict[str, Any]) -> None:
        models.mark(model["spec"]["lineage"]["trainingJob"]["name"])

    watch_objects(api, GROUP, VERSION, ns, "models", seen, stop)


def plain_job(name: str) -> dict[str, Any]:
    """What a TrainingJob's child looks like, without a TrainingJob: the baseline's unit."""
    pod = {
        "metadata": {"annotations": {"sim.mlops.seed.dev/duration": "1s"}},
        "spec": {"restartPolicy": "Never",
                 "containers": [{"name": "trainer", "image": "registry.example/train:1"}]},
    }  # fmt: skip
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": 0, "template": pod}}  # fmt: skip


def baseline(api: client.ApiClient, ns: str, n: int, concurrency: int) -> float:
    """Seconds until N Jobs created directly (same client, same concurrency) all exist:
    what any controller could at best achieve on this cluster. Their pods run as the
    operator's will, so the cluster does the same work; the call returns once they have
    all finished, so that they do not load the cluster while the operator is measured.
    `ns` is one no operator watches."""
    created, finished, stop = Recorder(), Recorder(), threading.Event()

    def seen(job: dict[str, Any]) -> None:
        name = job["metadata"]["name"]
        created.mark(name)
        conditions = (job.get("status") or {}).get("conditions") or []
        if any(c["type"] in ("Complete", "Failed") and c["status"] == "True" for c in conditions):
            finished.mark(name)

    threading.Thread(
        target=watch_objects, args=(api, "batch", "v1", ns, "jobs", seen, stop), daemon=True
    ).start()
    batch = client.BatchV1Api(api)
    start = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda i: batch.create_namespaced_job(ns, plain_job(f"base-{i:05d}")),
                      range(n)))  # fmt: skip
    deadline = start + 600 + 2 * n
    while len(finished.seen) < n:
        if time.monotonic() > deadline:
            raise TimeoutError("baseline Jobs never all finished")
        time.sleep(0.1)
    stop.set()
    return max(created.seen.values()) - start


def run(n: int, concurrency: int, rate: float, out: Path, profile: bool = False) -> dict[str, Any]:
    created, done, models, applied = Recorder(), Recorder(), Recorder(), Recorder()
    stop = threading.Event()
    raw_profile = out.with_suffix(".profile.txt") if profile else None
    with (
        bench_namespace(out.with_suffix(".operator.log"), raw_profile) as op,
        scratch_namespace(op.api, "bench-baseline") as baseline_ns,
    ):
        # The limit first, in the same run, so the ratio holds on a noisy machine.
        limit = None if rate > 0 else baseline(op.api, baseline_ns, n, concurrency)
        for target, args in ((watch_jobs, (op.api, op.ns, created, done, stop)),
                             (watch_models, (op.api, op.ns, models, stop))):  # fmt: skip
            threading.Thread(target=target, args=args, daemon=True).start()
        custom = client.CustomObjectsApi(op.api)
        names = [f"tj-{i:05d}" for i in range(n)]
        start = time.monotonic()

        def create(name: str) -> None:
            applied.mark(name)
            custom.create_namespaced_custom_object(GROUP, VERSION, op.ns, "trainingjobs",
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
        wait_until(lambda: len(models.seen) >= n, op.proc, 600 + n)
        stop.set()
        rss_mb, cpu_s = proc_usage(op.proc.pid)
        requests = op.api_requests()
    all_jobs = max(created.seen.values()) - start
    result = {
        **machine(),
        "n": n,
        "concurrency": concurrency,
        "rate_per_s": rate or None,
        "namespace": op.ns,
        "apply_all_s": round(applied_all, 2),
        "all_jobs_s": round(all_jobs, 2),
        "baseline_all_jobs_s": round(limit, 2) if limit is not None else None,
        "throughput_ratio": round(limit / all_jobs, 3) if limit is not None else None,
        "all_models_s": round(max(models.seen.values()) - start, 2),
        "apply_to_job_s": latencies(applied, created),
        "complete_to_model_s": latencies(done, models),
        "operator_peak_rss_mb": round(rss_mb, 1),
        "operator_cpu_s": round(cpu_s, 1),
        "operator_cpu_ms_per_trainingjob": round(1000 * cpu_s / n, 1),
        "api_requests_per_trainingjob": round(sum(requests.values()) / n, 2),
        "api_requests": dict(requests.most_common()),
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    if raw_profile:
        summary = profile_summary(raw_profile)
        out.with_suffix(".profile-summary.txt").write_text(summary + "\n")
    return result


# The figures a repeated burst summarises (median and range over the runs).
SUMMARISED = {
    "ratio": lambda r: r["throughput_ratio"],
    "baseline_all_jobs_s": lambda r: r["baseline_all_jobs_s"],
    "all_jobs_s": lambda r: r["all_jobs_s"],
    "all_models_s": lambda r: r["all_models_s"],
    "apply_to_job_p50_s": lambda r: r["apply_to_job_s"]["p50"],
    "apply_to_job_p99_s": lambda r: r["apply_to_job_s"]["p99"],
    "complete_to_model_p50_s": lambda r: r["complete_to_model_s"]["p50"],
    "complete_to_model_p99_s": lambda r: r["complete_to_model_s"]["p99"],
    "operator_peak_rss_mb": lambda r: r["operator_peak_rss_mb"],
    "operator_cpu_ms_per_trainingjob": lambda r: r["operator_cpu_ms_per_trainingjob"],
    "api_requests_per_trainingjob": lambda r: r["api_requests_per_trainingjob"],
}


def repeated(n: int, repeats: int, concurrency: int, out: Path,
             profile: bool = False) -> dict[str, Any]:  # fmt: skip
    """`repeats` bursts of N, each its baseline then the operator; the last one profiled
    (if asked), so that the sampler's cost is in one run only."""
    runs = []
    for i in range(repeats):
        each = out.with_name(f"{out.stem}.run{i + 1}.json")
        runs.append(run(n, concurrency, 0, each, profile=profile and i == repeats - 1))
        print(f"  run {i + 1}/{repeats}: ratio {runs[-1]['throughput_ratio']:.2f} "
              f"({runs[-1]['baseline_all_jobs_s']} s / {runs[-1]['all_jobs_s']} s)",
              flush=True)  # fmt: skip
    summary = {
        **machine(),
        "n": n,
        "repeats": repeats,
        **{key: spread([pick(r) for r in runs]) for key, pick in SUMMARISED.items()},
        "api_requests": runs[-1]["api_requests"],
        "runs": runs,
    }
    out.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def summary_table(summary: dict[str, Any]) -> str:
    def fig(key: str, unit: str = "") -> str:
        s = summary[key]
        return f"{s['median']:g}{unit} ({s['min']:g}-{s['max']:g})"

    return "\n".join(
        [
            f"N={summary['n']} TrainingJobs, {summary['repeats']} interleaved runs "
            "(median (lowest-highest))",
            f"  throughput ratio {fig('ratio')}: baseline {fig('baseline_all_jobs_s', ' s')}, "
            f"operator {fig('all_jobs_s', ' s')}",
            f"  apply -> Job p50 {fig('apply_to_job_p50_s', ' s')}, "
            f"p99 {fig('apply_to_job_p99_s', ' s')}",
            f"  complete -> Model p50 {fig('complete_to_model_p50_s', ' s')}, "
            f"p99 {fig('complete_to_model_p99_s', ' s')}; all Models {fig('all_models_s', ' s')}",
            f"  operator peak RSS {fig('operator_peak_rss_mb', ' MB')}, "
            f"CPU {fig('operator_cpu_ms_per_trainingjob', ' ms')} per TrainingJob",
            f"  API requests per TrainingJob {fig('api_requests_per_trainingjob')}",
            *(
                f"    {count / summary['n']:6.2f}  {what}"
                for what, count in summary["api_requests"].items()
            ),
        ]
    )


def table(result: dict[str, Any]) -> str:
    pace = (
        f"created at {result['rate_per_s']}/s"
        if result["rate_per_s"]
        else f"created in a burst by {result['concurrency']} threads"
    )
    return "\n".join(
        [
            f"N={result['n']} TrainingJobs, {pace}",
            row("apply -> Job", result["apply_to_job_s"]),
            row("Job complete -> Model", result["complete_to_model_s"]),
            f"  all {result['n']} Jobs exist after {result['all_jobs_s']}s; "
            f"all Models after {result['all_models_s']}s",
            *(
                [
                    f"  baseline: {result['n']} Jobs created directly exist after "
                    f"{result['baseline_all_jobs_s']}s; throughput ratio "
                    f"{result['throughput_ratio']:.2f} (1.0 = the limit)"
                ]
                if result["baseline_all_jobs_s"]
                else []
            ),
            f"  operator: peak RSS {result['operator_peak_rss_mb']} MB, "
            f"CPU {result['operator_cpu_s']} s ({result['operator_cpu_ms_per_trainingjob']} ms "
            "per TrainingJob)",
            f"  API requests per TrainingJob: {result['api_requests_per_trainingjob']}",
            *(
                f"    {count / result['n']:6.2f}  {what}"
                for what, count in result["api_requests"].items()
            ),
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8, help="burst: creating threads")
    parser.add_argument("--rate", type=float, default=0, help="creations per second (0: burst)")
    parser.add_argument("--repeats", type=int, default=3, help="burst: interleaved runs")
    parser.add_argument("--profile", action="store_true", help="sample the operator with py-spy")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "training.json")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.rate > 0:
        print(table(run(args.n, args.concurrency, args.rate, args.out, args.profile)))
    else:
        print(summary_table(repeated(args.n, args.repeats, args.concurrency, args.out,
                                     args.profile)))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
