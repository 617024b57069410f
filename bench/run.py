"""The whole benchmark, one command: `make bench` (sizes: `make bench N=100,1000,3000`).

For each N, on the local cluster, one after the other:
  training:  the baseline (N plain Jobs created directly) and the operator (N TrainingJobs
             -> N Jobs -> N Models), interleaved REPEATS times (3: baseline, operator,
             baseline, ...) so that the median ratio and its range hold on a noisy machine;
             per-object latencies, the operator's peak RSS and CPU, and its API requests
             per TrainingJob (bench/training_latency.py);
  peer:      Kubeflow's training operator v1 under the same load, as it ships and with the
             client limits our cluster's controllers get (bench/peer_kubeflow.py);
and once:
  serving:   SERVING_N ModelDeployments to Ready, then a new approved Model to rollout
             start (bench/serving_latency.py);
  continuous training: a new Dataset version to its run's TrainingJob (100), 1,000 idle
             ContinuousTrainings, and schedule lateness (bench/continuous_training.py).
Prints a Markdown table (what docs/benchmarks.md keeps) and writes every result to
bench/results/bench.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import continuous_training
import peer_kubeflow
import serving_latency
import training_latency
from common import ROOT, machine

RESULTS = ROOT / "bench" / "results"
# What the local cluster gives kube-controller-manager (tools/cluster/kwok.yaml), given to the
# peer too: as shipped, its client limit of 20 requests/s is what bounds it.
PEER_TUNED = ["--controller-threads=8", "--kube-api-qps=300", "--kube-api-burst=600"]


def seconds(value: float) -> str:
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def training_rows(summaries: list[dict[str, Any]]) -> list[str]:
    """One row per N: each figure's median over the interleaved runs, the ratio's range."""
    lines = [
        "| N | runs | ratio, median (range) | baseline: all Jobs | operator: all Jobs "
        "| apply → Job p50 / p99 | complete → Model p50 / p99 | all Models | peak RSS "
        "| CPU per TrainingJob | API requests per TrainingJob |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        m = {key: value["median"] for key, value in s.items() if isinstance(value, dict)
             and "median" in value}  # fmt: skip
        lines.append(
            f"| {s['n']:,} | {s['repeats']} | **{m['ratio']:.2f}** "
            f"({s['ratio']['min']:.2f}-{s['ratio']['max']:.2f}) "
            f"| {seconds(m['baseline_all_jobs_s'])} | {seconds(m['all_jobs_s'])} "
            f"| {seconds(m['apply_to_job_p50_s'])} / {seconds(m['apply_to_job_p99_s'])} "
            f"| {seconds(m['complete_to_model_p50_s'])} / {seconds(m['complete_to_model_p99_s'])} "
            f"| {seconds(m['all_models_s'])} | {m['operator_peak_rss_mb']:.0f} MB "
            f"| {m['operator_cpu_ms_per_trainingjob']:.0f} ms "
            f"| {m['api_requests_per_trainingjob']:.1f} |"
        )
    return lines


def peer_rows(runs: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| N | settings | baseline: all Jobs | peer: all first pods | ratio "
        "| apply → pod p50 / p99 | all Succeeded | peak RSS | CPU per job "
        "| API requests per job |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        pod = r["apply_to_pod_s"]
        settings = "as shipped" if r["settings"] == "shipped" else "our controllers' limits"
        requests = r.get("peer_api_requests_per_job")
        lines.append(
            f"| {r['n']:,} | {settings} | {seconds(r['baseline_all_s'])} "
            f"| {seconds(r['peer_all_children_s'])} | **{r['ratio']:.2f}** "
            f"| {seconds(pod['p50'])} / {seconds(pod['p99'])} | {seconds(r['succeeded_all_s'])} "
            f"| {r['peer_peak_rss_mb']:.0f} MB | {1000 * r['peer_cpu_s'] / r['n']:.0f} ms "
            f"| {requests if requests is not None else 'n/a'} |"
        )
    return lines


def serving_rows(r: dict[str, Any]) -> list[str]:
    lines = ["| N | | p50 | p95 | p99 | max |", "|---|---|---|---|---|---|"]
    for label, key in (("apply → Ready", "apply_to_ready_s"),
                       ("new Model → rollout starts", "new_model_to_rollout_s"),
                       ("new Model → new version served", "new_model_to_served_s")):  # fmt: skip
        p = r[key]
        lines.append(
            f"| {r['n']} | {label} | {seconds(p['p50'])} | {seconds(p['p95'])} "
            f"| {seconds(p['p99'])} | {seconds(p['max'])} |"
        )
    lines.append(
        f"\nOperator: peak RSS {r['operator_peak_rss_mb']:.0f} MB, CPU {r['operator_cpu_s']} s, "
        f"{r['api_requests_per_modeldeployment']} API requests per ModelDeployment."
    )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--n", default="100,1000", help="comma-separated sizes")
    parser.add_argument("--serving-n", type=int, default=100, help="0: skip serving")
    parser.add_argument("--no-peer", action="store_true", help="skip the Kubeflow peer")
    parser.add_argument(
        "--no-continuous", action="store_true", help="skip the ContinuousTraining benchmark"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="creating threads")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs per N")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    sizes = [int(n) for n in args.n.split(",")]

    training, peers = [], []
    for n in sizes:
        out = RESULTS / f"training-{n}.json"
        training.append(training_latency.repeated(n, args.repeats, args.concurrency, out))
        print(training_latency.summary_table(training[-1]), flush=True)
        if args.no_peer:
            continue
        for extra, name in (([], "shipped"), (PEER_TUNED, "tuned")):
            out = RESULTS / f"peer-{name}-{n}.json"
            peers.append({**peer_kubeflow.run(n, args.concurrency, out, extra), "settings": name})
            print(peer_kubeflow.table(peers[-1]), flush=True)
    serving = None
    if args.serving_n:
        serving = serving_latency.run(args.serving_n, args.concurrency, RESULTS / "serving.json")

    continuous = None
    if not args.no_continuous:
        out = RESULTS / "continuous-training.json"
        continuous = continuous_training.run(100, 1000, 360.0, 50, 3, out)

    report = [f"{machine()['machine']}; {machine()['date']}", "", "TrainingJobs, burst:", "",
              *training_rows(training)]  # fmt: skip
    if peers:
        report += ["", "Kubeflow training-operator, PyTorchJobs, burst:", "", *peer_rows(peers)]
    if serving:
        report += ["", "ModelDeployments:", "", *serving_rows(serving)]
    if continuous:
        report += ["", "ContinuousTraining:", "", continuous_training.table(continuous)]
    print("\n".join(report))
    everything = {**machine(), "training": training, "peer": peers, "serving": serving,
                  "continuous": continuous}  # fmt: skip
    (RESULTS / "bench.json").write_text(json.dumps(everything, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
