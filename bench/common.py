"""What every benchmark shares: the cluster, an operator process, clocks and statistics."""

from __future__ import annotations

import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

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


def spread(values: list[float]) -> dict[str, float]:
    """Median, lowest and highest of one figure over repeated runs."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": len(values)}  # fmt: skip


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


@dataclass
class OperatorRun:
    """An operator process watching one fresh namespace, as its ServiceAccount."""

    api: client.ApiClient
    ns: str
    proc: subprocess.Popen[bytes]

    lease: str = ""  # its leader-election Lease, in LEASE_NAMESPACE

    def api_requests(self) -> Counter[str]:
        """Requests the operator made in its namespace, by "verb resource[/subresource]",
        as the API server's audit log recorded them (tools/cluster/audit-policy.yaml), and
        those for its Lease (renewals: per second, not per object)."""
        counts: Counter[str] = Counter()
        lease = f'"name":"{self.lease}"' if self.lease else None
        for path in local_cluster.audit_logs():
            with path.open() as log:
                for line in log:
                    ours = f'"namespace":"{self.ns}"' in line
                    if not ours and not (lease and lease in line and '"leases"' in line):
                        continue
                    event = json.loads(line)
                    ref = event.get("objectRef") or {}
                    # A watch is logged when it starts and when it ends: count it once.
                    counted = "ResponseStarted" if event["verb"] == "watch" else "ResponseComplete"
                    if event["stage"] != counted:
                        continue
                    if ours and ref.get("namespace") != self.ns:
                        continue
                    sub = f"/{ref['subresource']}" if ref.get("subresource") else ""
                    counts[f"{event['verb']} {ref.get('resource')}{sub}"] += 1
        return counts


def _has_flag(flag: str) -> bool:
    usage = subprocess.run([sys.executable, "-m", "mlops_operator", "run", "--help"],
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    return flag in usage


@contextmanager
def bench_namespace(log_path: Path, profile: Path | None = None) -> Iterator[OperatorRun]:
    """The local cluster with CRDs, a fresh namespace, and an operator watching only it.

    The operator authenticates as its installed ServiceAccount, so the API server's audit
    log holds its requests; with `profile`, py-spy samples it until it stops.
    """
    local_cluster.up()
    kubeconfig = str(local_cluster.KUBECONFIG)
    local_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    api = config.new_client_from_config(config_file=kubeconfig)
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": ns}})
    local_cluster.kubectl("wait", "-n", ns, "--for=create", "serviceaccount/default")
    login = log_path.with_suffix(".kubeconfig")
    local_cluster.service_account_kubeconfig(login)
    port = local_cluster.free_port()
    # A Lease of its own; an operator from before leader election (a before/after run with
    # PYTHONPATH pointing at an older checkout) has no such flag.
    lease = [f"--lease-name={ns}"] if _has_flag("--lease-name") else []
    with log_path.open("w") as log:
        operator = subprocess.Popen(
            [sys.executable, "-m", "mlops_operator", "run", "--standalone", f"--namespace={ns}",
             "--liveness-host=127.0.0.1", f"--liveness-port={port}", *lease],
            env={**os.environ, "KUBECONFIG": str(login)}, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        sampler = _py_spy(operator.pid, profile) if profile else None
        try:
            local_cluster.wait_healthy(f"http://127.0.0.1:{port}/healthz", operator)
            yield OperatorRun(api, ns, operator, lease=ns if lease else "")
        finally:
            if sampler:
                sampler.send_signal(signal.SIGINT)  # py-spy writes its profile and exits
                sampler.wait(timeout=60)
            operator.terminate()
            operator.wait(timeout=30)
            _release_models(api, ns)
            delete_namespace(api, ns)


def _release_models(api: client.ApiClient, ns: str) -> None:
    """A served Model keeps a finalizer that only the (now stopped) operator removes: without
    this, the namespace of a serving bench would never finish deleting."""
    custom = client.CustomObjectsApi(api)
    for model in custom.list_namespaced_custom_object(GROUP, VERSION, ns, "models")["items"]:
        if model["metadata"].get("finalizers"):
            custom.patch_namespaced_custom_object(GROUP, VERSION, ns, "models",
                                                  model["metadata"]["name"],
                                                  {"metadata": {"finalizers": None}})  # fmt: skip


@contextmanager
def scratch_namespace(api: client.ApiClient, prefix: str) -> Iterator[str]:
    """A namespace no operator watches, deleted (with what is in it) on exit."""
    ns = f"{prefix}-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": ns}})
    try:
        yield ns
    finally:
        delete_namespace(api, ns)


def delete_namespace(api: client.ApiClient, ns: str, timeout_s: float = 900) -> None:
    """Delete a namespace and wait until it is gone: the garbage collector's work on what
    it held would otherwise load the cluster while the next repetition is measured."""
    core = client.CoreV1Api(api)
    core.delete_namespace(ns)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            core.read_namespace(ns)
        except client.ApiException as err:
            if err.status == 404:
                return
            raise
        time.sleep(1)
    raise TimeoutError(f"namespace {ns} still exists after {timeout_s:.0f} s")


def watch_objects(api: client.ApiClient, group: str, version: str, ns: str, plural: str,
                  seen: Any, stop: threading.Event) -> None:  # fmt: skip
    """Call `seen(object)` for every watch event of one kind in `ns`, as plain dicts (cheaper
    than the client's typed models, so the watcher does not steal CPU from what it times)."""
    stream = watch.Watch()
    list_objects = client.CustomObjectsApi(api).list_namespaced_custom_object
    for event in stream.stream(list_objects, group, version, ns, plural, timeout_seconds=3600):
        seen(event["object"])
        if stop.is_set():
            stream.stop()


def _py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """Sample `pid` 100 times a second without pausing it, into collapsed stacks."""
    py_spy = Path(sys.executable).parent / "py-spy"
    return subprocess.Popen(
        [str(py_spy), "record", "--pid", str(pid), "--nonblocking", "--rate", "100",
         "--format", "raw", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def profile_summary(raw: Path, top: int = 30) -> str:
    """The functions that took the most samples (inclusive and self), from py-spy's
    collapsed stacks, one line each: share of samples, function, file."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        total += samples
        # "func (path/to/file.py:123)" -> "func (file.py)": one entry per function.
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += samples
        own[frames[-1]] += samples
    lines = [f"{total} samples"]
    for title, counter in (("inclusive", inclusive), ("self", own)):
        lines.append(f"-- top {top} by {title} samples")
        lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in counter.most_common(top)]
    return "\n".join(lines)


def wait_until(done: Any, operator: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Poll `done()` until true; fail if the operator dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if operator.poll() is not None:
            raise RuntimeError(f"operator exited with {operator.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError("the benchmark did not finish in time")
        time.sleep(0.2)
