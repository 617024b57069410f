"""What the serving monitor costs and how it judges, against the real MLServer (no cluster).

examples/iris trains a model and its reference profile; MLServer serves it (from
.venv-mlserver, `make mlserver-venv`); `mlops-operator monitor` runs in front of it, as in a
serving pod. Then:

  latency:      open-loop V2 requests (one iris row each) at --rate per second for --seconds,
                straight to MLServer and through the monitor, alternating, --repeats times
                each: p50 and p99 of both, and what the monitor adds (median over repeats);
                the monitor's RSS (VmRSS, and the peak VmHWM) afterwards.
  false drift:  --calm in-distribution requests at --rate; every second /drift is read and
                judged as the operator would at the default thresholds (window 600 s, 500 rows,
                PSI 0.2): how many readings say Drifted, and the highest PSI seen.
  time to drift: then every request has petal_length 3 cm longer: the seconds from the first
                shifted request until a reading says Drifted (the operator reads every
                spec.monitoring.intervalSeconds, 60 s by default, which comes on top).
  --before REV: the monitor of commit REV (a git worktree) runs beside this one, in front of
                the same MLServer; the latency runs interleave direct, before, after.
  --hostile:    each monitor, alone, meets the hostile mix while a client sends --rate
                requests/s: four 200 MB uploads by Content-Length and two chunked, 50 uploads
                dribbled over 20 s, a deeply nested body, twenty 10,000-row requests and 200
                idle connections. Its peak RSS (VmHWM), whether it lived, and how many of the
                client's requests were answered 200.
Writes bench/results/monitor.json and prints a Markdown table.

    .venv/bin/python bench/monitor.py --rate 100 --seconds 30 --repeats 3 --calm 10000
    .venv/bin/python bench/monitor.py --calm 0 --before 243cfee --hostile
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from sklearn.datasets import load_iris

from mlops_operator.api.modeldeployment import Monitoring
from mlops_operator.builders import drift

ROOT = Path(__file__).resolve().parents[1]
MLSERVER = ROOT / ".venv-mlserver" / "bin" / "mlserver"
RESULTS = ROOT / "bench" / "results"
PATH = "/v2/models/iris/infer"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_http(url: str, proc: subprocess.Popen[bytes], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer in {seconds} s")


def body(row: list[float]) -> bytes:
    return json.dumps(
        {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [row]}]}
    ).encode()


async def load(
    session: aiohttp.ClientSession, url: str, rows: list[list[float]], rate: float
) -> list[float]:
    """Open loop: request i leaves at start + i / rate whatever the earlier ones do."""
    latencies: list[float] = []

    async def one(payload: bytes) -> None:
        started = time.perf_counter()
        async with session.post(
            url, data=payload, headers={"Content-Type": "application/json"}
        ) as r:
            await r.read()
            if r.status != 200:
                raise RuntimeError(f"{url}: HTTP {r.status}")
        latencies.append(time.perf_counter() - started)

    start = time.perf_counter()
    tasks = []
    try:
        for i, row in enumerate(rows):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(body(row))))
        await asyncio.gather(*tasks)
    finally:  # cancelled (the shifted load stops at the first Drifted): so are its requests
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return latencies


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def memory_kb(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


async def judged_while(
    session: aiohttp.ClientSession,
    admin: str,
    sending: asyncio.Task[list[float]],
    monitoring: Monitoring,
    stop_when_drifted: bool,
) -> list[tuple[float, drift.Verdict]]:
    """Read /drift every second while `sending` runs; each reading judged as the operator would."""
    seen: list[tuple[float, drift.Verdict]] = []
    start = time.monotonic()
    while not sending.done():
        await asyncio.sleep(1.0)
        async with session.get(f"{admin}/drift?window={monitoring.window_seconds}") as r:
            reading = await r.json()
        verdict = drift.assess([reading], [], monitoring, 1, datetime.now(UTC))
        seen.append((time.monotonic() - start, verdict))
        if stop_when_drifted and verdict.drifted:
            break
    return seen


async def measure(args: argparse.Namespace, direct: str, monitors: dict[str, Monitor]
                  ) -> dict[str, Any]:  # fmt: skip
    x, _ = load_iris(return_X_y=True)
    rng = np.random.default_rng(5)
    n = int(args.rate * args.seconds)
    connector = aiohttp.TCPConnector(limit=0)
    monitored, admin = monitors["monitored"].listen, monitors["monitored"].admin
    paths = {"direct": direct, **{name: m.listen for name, m in monitors.items()}}
    async with aiohttp.ClientSession(connector=connector) as session:
        # Warm every path (connections, MLServer's first calls).
        for base in paths.values():
            await load(session, base + PATH, x[:20].tolist(), args.rate)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in paths}
        for _ in range(args.repeats):
            for name, base in paths.items():
                rows = x[rng.integers(0, len(x), n)].tolist()
                got = await load(session, base + PATH, rows, args.rate)
                runs[name].append({"p50": pct(got, 50), "p99": pct(got, 99), "n": len(got)})
        memory = memory_kb(monitors["monitored"].proc.pid)
        if not args.calm:
            return summarize(args, n, runs, memory)

        defaults = Monitoring()
        calm_rows = x[rng.integers(0, len(x), args.calm)].tolist()
        calm = asyncio.create_task(load(session, monitored + PATH, calm_rows, args.rate))
        calm_seen = await judged_while(session, admin, calm, defaults, stop_when_drifted=False)
        await calm
        judged = [v for _, v in calm_seen if v.drifted is not None]
        max_psi = max((f.psi for v in judged if v.drift for f in v.drift.features), default=0.0)

        shifted = x[rng.integers(0, len(x), int(args.rate * 600))]
        shifted[:, 2] += 3.0
        shifting = asyncio.create_task(load(session, monitored + PATH, shifted.tolist(), args.rate))
        shift_seen = await judged_while(session, admin, shifting, defaults, stop_when_drifted=True)
        shifting.cancel()
        drifted_at = next((t for t, v in shift_seen if v.drifted), None)

    return summarize(args, n, runs, memory) | {
        "calm_requests": args.calm,
        "calm_readings_judged": len(judged),
        "calm_readings_drifted": sum(1 for v in judged if v.drifted),
        "calm_max_psi": round(max_psi, 4),
        "seconds_to_drifted": None if drifted_at is None else round(drifted_at, 1),
        "drifted_message": next((v.message for _, v in shift_seen if v.drifted), None),
    }


def summarize(
    args: argparse.Namespace, n: int, runs: dict[str, list[dict[str, float]]], memory: Any
) -> dict[str, Any]:
    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    added = {
        name: {q: round((median(name, q) - median("direct", q)) * 1000, 2) for q in ("p50", "p99")}
        for name in runs
        if name != "direct"
    }
    return {
        "rate": args.rate,
        "requests_per_run": n,
        "repeats": args.repeats,
        "runs": runs,
        "p50_ms": {k: round(median(k, "p50") * 1000, 2) for k in runs},
        "p99_ms": {k: round(median(k, "p99") * 1000, 2) for k in runs},
        "added_ms": added["monitored"],
        "added_ms_by_monitor": added,
        "monitor_memory_kb": memory,
    }


class Monitor:
    """`mlops-operator monitor` in front of the runtime, from this checkout or from `source`
    (another checkout's operator/ directory: the monitor of an earlier commit)."""

    def __init__(self, upstream: str, reference: Path, source: Path | None = None) -> None:
        port, admin = free_port(), free_port()
        self.listen, self.admin = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}"
        env = {**os.environ, **({"PYTHONPATH": str(source)} if source else {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlops_operator", "monitor", "--upstream", upstream,
             "--reference", str(reference), "--listen", f"127.0.0.1:{port}",
             "--admin", f"127.0.0.1:{admin}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
            cwd=source or ROOT,
        )  # fmt: skip
        wait_http(f"{self.admin}/healthz", self.proc)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


async def hostile(args: argparse.Namespace, monitor: Monitor) -> dict[str, Any]:
    """The hostile mix against one monitor while a client sends --rate requests/s."""
    x, _ = load_iris(return_X_y=True)
    host, port = monitor.listen.removeprefix("http://").split(":")
    crlf = b"\r\n"

    async def upload(total: int, *, chunked: bool = False, dribble: float = 0.0) -> None:
        try:
            reader, writer = await asyncio.open_connection(host, int(port))
            size = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % total
            writer.write(b"POST " + PATH.encode() + b" HTTP/1.1" + crlf + b"Host: x" + crlf
                         + size + crlf + crlf)  # fmt: skip
            block, sent = b"0" * (1 << 20 if not dribble else 64), 0
            while sent < total:
                writer.write(b"%x\r\n%s\r\n" % (len(block), block) if chunked else block)
                await writer.drain()
                sent += len(block)
                if dribble:
                    await asyncio.sleep(dribble)
            await asyncio.wait_for(reader.read(64), 30)
            writer.close()
        except (OSError, TimeoutError):
            pass  # refused or cut off: what the mix is for

    nested = b'{"inputs": ' + b"[" * 1_000_000 + b"]" * 1_000_000 + b"}"
    rows_10k = x[np.arange(10_000) % len(x)].tolist()
    tensor = {"name": "x", "shape": [10_000, 4], "datatype": "FP64", "data": rows_10k}
    wide = json.dumps({"inputs": [tensor]}).encode()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def post(payload: bytes) -> None:
            try:
                async with session.post(monitor.listen + PATH, data=payload) as r:
                    await r.read()
            except aiohttp.ClientError:
                pass

        idle = [await asyncio.open_connection(host, int(port)) for _ in range(200)]
        rows = x[np.random.default_rng(9).integers(0, len(x), int(args.rate * 30))].tolist()
        answered: list[int] = []

        async def client() -> None:
            async def one(row: list[float]) -> None:
                try:
                    async with session.post(
                        monitor.listen + PATH,
                        data=body(row),
                        headers={"Content-Type": "application/json"},
                    ) as r:
                        await r.read()
                        answered.append(r.status)
                except aiohttp.ClientError:
                    answered.append(0)

            start, tasks = time.perf_counter(), []
            for i, row in enumerate(rows):
                await asyncio.sleep(max(0.0, start + i / args.rate - time.perf_counter()))
                tasks.append(asyncio.create_task(one(row)))
            await asyncio.gather(*tasks)

        await asyncio.gather(
            client(),
            *(upload(200 << 20) for _ in range(4)),
            *(upload(200 << 20, chunked=True) for _ in range(2)),
            *(upload(64 * 20, dribble=0.4) for _ in range(50)),
            post(nested),
            *(post(wide) for _ in range(20)),
        )
        for _, writer in idle:
            writer.close()
    alive = monitor.proc.poll() is None
    return {
        "peak_rss_mb": round(memory_kb(monitor.proc.pid)["VmHWM"] / 1024) if alive else None,
        "alive": alive,
        "client_requests": len(rows),
        "client_answered_200": sum(1 for s in answered if s == 200),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calm", type=int, default=10_000)
    parser.add_argument("--before", help="also run the monitor of this commit (a worktree)")
    parser.add_argument("--hostile", action="store_true", help="measure under the hostile mix")
    args = parser.parse_args()
    if not MLSERVER.exists():
        raise SystemExit("run `make mlserver-venv` first")
    tmp = Path(tempfile.mkdtemp(prefix="mlops-monitor-bench-"))
    out = tmp / "out"
    env = {**os.environ, "MLOPS_OUTPUT_URI": f"file://{out}",
           "MLOPS_TERMINATION_LOG": str(tmp / "report")}  # fmt: skip
    subprocess.run([sys.executable, str(ROOT / "examples" / "iris" / "train.py")], env=env,
                   check=True)  # fmt: skip
    http, grpc, metrics = (free_port() for _ in range(3))
    runtime_env = {
        "MLSERVER_HTTP_PORT": str(http), "MLSERVER_GRPC_PORT": str(grpc),
        "MLSERVER_METRICS_PORT": str(metrics), "MLSERVER_MODEL_NAME": "iris",
        "MLSERVER_MODEL_IMPLEMENTATION": "mlserver_sklearn.SKLearnModel",
        "MLSERVER_MODEL_URI": str(out / "model.joblib"),
    }  # fmt: skip
    quiet = subprocess.DEVNULL
    server = subprocess.Popen([str(MLSERVER), "start", str(out)], cwd=tmp, stdout=quiet,
                              stderr=quiet, env={**os.environ, **runtime_env})  # fmt: skip
    upstream, reference = f"http://127.0.0.1:{http}", out / "reference.json"
    before = None
    if args.before:
        before = tmp / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(before),
                        args.before], check=True, capture_output=True)  # fmt: skip
    monitors: dict[str, Monitor] = {}
    try:
        wait_http(f"{upstream}/v2/models/iris/ready", server)
        if before:
            monitors["before"] = Monitor(upstream, reference, before / "operator")
        monitors["monitored"] = Monitor(upstream, reference)
        result = asyncio.run(measure(args, upstream, monitors))
        if args.hostile:
            result["hostile"] = {}
            for name, monitor in list(monitors.items()):  # one at a time, each fresh
                monitor.stop()
                source = before / "operator" if before and name == "before" else None
                fresh = Monitor(upstream, reference, source)
                monitors[name] = fresh
                result["hostile"][name] = asyncio.run(hostile(args, fresh))
    finally:
        for monitor in monitors.values():
            monitor.stop()
        server.terminate()
        server.wait(timeout=30)
        if before:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(before)], check=False)  # fmt: skip
    result["date"] = datetime.now(UTC).date().isoformat()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "monitor.json").write_text(json.dumps(result, indent=2, default=str))
    p50, p99, added = result["p50_ms"], result["p99_ms"], result["added_ms"]
    mem = result["monitor_memory_kb"]
    print("| measured | result |\n|---|---|")
    print(f"| latency at {args.rate:g} requests/s, straight to MLServer | p50 {p50['direct']} ms,"
          f" p99 {p99['direct']} ms |")  # fmt: skip
    print(f"| the same through the monitor | p50 {p50['monitored']} ms, p99 {p99['monitored']}"
          f" ms: **+{added['p50']} ms p50, +{added['p99']} ms p99** |")  # fmt: skip
    print(
        f"| monitor memory | RSS {mem['VmRSS'] / 1024:.0f} MB, peak {mem['VmHWM'] / 1024:.0f} MB |"
    )
    for name, added_by in result["added_ms_by_monitor"].items():
        print(f"| added by the {name} monitor | +{added_by['p50']} ms p50, +{added_by['p99']} ms"
              " p99 |")  # fmt: skip
    for name, mix in result.get("hostile", {}).items():
        print(f"| the {name} monitor under the hostile mix | peak RSS {mix['peak_rss_mb']} MB,"
              f" alive {mix['alive']}, {mix['client_answered_200']} of {mix['client_requests']}"
              " client requests answered 200 |")  # fmt: skip
    if not args.calm:
        return
    print(f"| false drift over {args.calm} in-distribution requests | "
          f"{result['calm_readings_drifted']} of {result['calm_readings_judged']} readings"
          f" Drifted; highest PSI {result['calm_max_psi']} |")  # fmt: skip
    print(
        f"| shifted traffic (petal_length +3 cm) to a Drifted reading | "
        f"{result['seconds_to_drifted']} s ({result['drifted_message']}) |"
    )


if __name__ == "__main__":
    main()
