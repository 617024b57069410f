"""What watching live models costs at scale: N monitored ModelDeployments, on the local cluster.

N ModelDeployments with `spec.monitoring` at its defaults (a read every 60 s) serve a Model
that has a reference profile, so each is read for drift; kwok plays their pods (one replica
each, Ready). Once all are Ready and every one has been read once, the operator's API
requests (the audit log) and CPU are counted over `--seconds`. Each drift read is one LIST
of the served version's pods and one GET of `/drift` from each Ready pod's monitor; kwok's
pods have addresses nothing answers on, so every GET fails (after at most the client's 3 s
timeout), which is the most a read can cost. Writes bench/results/drift-reads.json.

    .venv/bin/python bench/drift_reads.py --n 100 --seconds 180
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import GROUP, ROOT, VERSION, bench_namespace, machine, proc_usage, wait_until
from kubernetes import client
from serving_latency import deployment, model

DIGEST = "sha256:" + "ab" * 32


def monitored_model() -> dict[str, Any]:
    body = model(1, 0.95)
    body["spec"]["artifact"]["reference"] = {"uri": "s3://bench/iris/1/reference.json",
                                             "digest": DIGEST}  # fmt: skip
    return body


def monitored(name: str) -> dict[str, Any]:
    body = deployment(name)
    body["spec"]["monitoring"] = {"enabled": True}
    return body


def run(n: int, seconds: float, out: Path) -> dict[str, Any]:
    with bench_namespace(out.with_suffix(".operator.log")) as op:
        custom = client.CustomObjectsApi(op.api)
        custom.create_namespaced_custom_object(GROUP, VERSION, op.ns, "models", monitored_model())
        names = [f"md-{i:04d}" for i in range(n)]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda name: custom.create_namespaced_custom_object(
                GROUP, VERSION, op.ns, "modeldeployments", monitored(name)), names))  # fmt: skip

        def drift_of_all() -> bool:
            listed = custom.list_namespaced_custom_object(GROUP, VERSION, op.ns,
                                                          "modeldeployments")["items"]  # fmt: skip
            said = [any(c["type"] == "Drifted" for c in (md.get("status") or {}).get("conditions")
                        or []) for md in listed]  # fmt: skip
            return len(said) == n and all(said)

        # Every one Ready and read once: its Drifted condition (Unknown: no monitor answered).
        wait_until(drift_of_all, op.proc, 600 + 2 * n)
        before, (_, cpu_before) = op.api_requests(), proc_usage(op.proc.pid)
        start = time.monotonic()
        time.sleep(seconds)  # the measurement window, not a wait for a condition
        elapsed = time.monotonic() - start
        after, (rss_mb, cpu_after) = op.api_requests(), proc_usage(op.proc.pid)
    window: Counter[str] = after - before
    per_minute = {what: round(count * 60 / elapsed, 1) for what, count in window.most_common()}
    reads = window["list pods"]
    result = {
        **machine(),
        "n": n,
        "seconds": round(elapsed, 1),
        "drift_reads_per_minute": round(reads * 60 / elapsed, 1),
        "pod_requests_per_minute": round(reads * 60 / elapsed, 1),  # one Ready pod each
        "api_requests_per_minute": per_minute,
        "operator_cpu_s_per_minute": round((cpu_after - cpu_before) * 60 / elapsed, 2),
        "operator_rss_mb": round(rss_mb, 1),
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "drift-reads.json")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    print(json.dumps(run(args.n, args.seconds, args.out), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
