"""The serving monitor in front of the real MLServer, as processes (no cluster).

examples/iris trains a model and its reference profile; MLServer serves it; `mlops-operator
monitor` listens in front. Answers come back through the monitor byte for byte as MLServer
gives them; in-distribution traffic scores low on every feature, traffic with one feature
shifted scores high on that feature only; bodies it cannot read reach MLServer all the same
and are counted. A second monitor with small caps meets hostile callers: bodies over the
cap, bodies over the binning cap, slow uploads.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_iris

from mlops_operator.api.reference import ReferenceProfile
from mlops_operator.api.report import parse_report
from mlops_operator.builders import drift
from tests.e2e.test_serving_local import MLSERVER, ROOT, local_cluster, wait_ready
from tests.metrics_doc import MONITOR_HEADER, documented_metrics

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@dataclass
class Served:
    direct: str  # MLServer itself
    monitored: str  # through the monitor
    admin: str
    monitor: subprocess.Popen[bytes]
    monitor_log: Path
    reference: ReferenceProfile
    reference_path: Path


def post(base: str, path: str, payload: bytes) -> tuple[int, bytes]:
    call = urllib.request.Request(
        base + path, data=payload, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(call, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def infer_body(rows: list[list[float]]) -> bytes:
    tensor = {"name": "input-0", "shape": [len(rows), 4], "datatype": "FP64", "data": rows}
    return json.dumps({"inputs": [tensor]}).encode()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    assert MLSERVER.exists(), "run `make mlserver-venv` (make test does)"
    tmp = tmp_path_factory.mktemp("monitor")
    out = tmp / "out"
    log = tmp / "termination-log"
    env = {**os.environ, "MLOPS_OUTPUT_URI": f"file://{out}", "MLOPS_TERMINATION_LOG": str(log)}
    subprocess.run([sys.executable, str(ROOT / "examples" / "iris" / "train.py")], env=env,
                   check=True, timeout=120)  # fmt: skip
    report = parse_report(log.read_text())
    assert report.artifact.reference is not None

    http, grpc, metrics, listen, admin = (local_cluster.free_port() for _ in range(5))
    runtime_env = {
        "MLSERVER_HTTP_PORT": str(http), "MLSERVER_GRPC_PORT": str(grpc),
        "MLSERVER_METRICS_PORT": str(metrics), "MLSERVER_MODEL_NAME": "iris",
        "MLSERVER_MODEL_IMPLEMENTATION": "mlserver_sklearn.SKLearnModel",
        "MLSERVER_MODEL_URI": str(out / "model.joblib"),
    }  # fmt: skip
    server_log, monitor_log = tmp / "mlserver.log", tmp / "monitor.log"
    with server_log.open("wb") as sink:
        server = subprocess.Popen([str(MLSERVER), "start", str(out)], cwd=tmp,
                                  env={**os.environ, **runtime_env}, stdout=sink,
                                  stderr=subprocess.STDOUT)  # fmt: skip
    with monitor_log.open("wb") as sink:
        monitor = subprocess.Popen(
            [sys.executable, "-m", "mlops_operator", "monitor",
             "--upstream", f"http://127.0.0.1:{http}", "--reference", str(out / "reference.json"),
             "--listen", f"127.0.0.1:{listen}", "--admin", f"127.0.0.1:{admin}",
             "--model", "iris", "--model-version", "1"],
            stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_ready(f"http://127.0.0.1:{http}/v2/models/iris/ready", server, server_log)
        wait_ready(f"http://127.0.0.1:{admin}/healthz", monitor, monitor_log)
        yield Served(
            direct=f"http://127.0.0.1:{http}",
            monitored=f"http://127.0.0.1:{listen}",
            admin=f"http://127.0.0.1:{admin}",
            monitor=monitor,
            monitor_log=monitor_log,
            reference=ReferenceProfile.model_validate_json((out / "reference.json").read_text()),
            reference_path=out / "reference.json",
        )
    finally:
        for proc in (monitor, server):
            proc.terminate()
            proc.wait(timeout=30)
    assert monitor.returncode == 0, monitor_log.read_text()


def test_answers_pass_through_unchanged(served: Served) -> None:
    x, _ = load_iris(return_X_y=True)
    payload = infer_body(x[::10].tolist())
    direct = post(served.direct, "/v2/models/iris/infer", payload)
    through = post(served.monitored, "/v2/models/iris/infer", payload)
    assert direct[0] == through[0] == 200
    # MLServer gives every answer a fresh id; the rest is the same, byte for byte.
    strip = {"id"}
    assert {k: v for k, v in json.loads(through[1]).items() if k not in strip} == {
        k: v for k, v in json.loads(direct[1]).items() if k not in strip
    }
    status, ready = post(served.monitored, "/v2/models/iris/ready", b"")
    assert status in (200, 405), ready  # non-infer paths reach MLServer too


def test_unreadable_bodies_reach_the_runtime_and_are_counted(served: Served) -> None:
    before = get_json(f"{served.admin}/drift?window=3600")
    for payload in (b"{not json", json.dumps({"inputs": [{"name": "x", "shape": [1, 3],
                    "datatype": "FP64", "data": [1, 2, 3]}]}).encode()):  # fmt: skip
        direct, through = (
            post(served.direct, "/v2/models/iris/infer", payload)[0],
            post(served.monitored, "/v2/models/iris/infer", payload)[0],
        )
        assert direct == through, "the runtime's own answer, not the monitor's"
        assert through >= 400
    after = get_json(f"{served.admin}/drift?window=3600")
    assert after["unparsed"] == before["unparsed"] + 2
    assert after["requests"] == before["requests"] + 2
    assert served.monitor.poll() is None, "the monitor is still running"


def test_in_distribution_traffic_is_calm_and_a_shifted_feature_alone_drifts(
    served: Served,
) -> None:
    x, _ = load_iris(return_X_y=True)
    rng = np.random.default_rng(7)
    base = get_json(f"{served.admin}/drift?window=3600")
    # In distribution: iris rows, resampled.
    for _ in range(40):
        rows = x[rng.integers(0, len(x), 10)].tolist()
        assert post(served.monitored, "/v2/models/iris/infer", infer_body(rows))[0] == 200
    calm = delta(served, base, until_binned(served, base["samples"] + 400))
    assert calm["samples"] == 400
    assert all(f["psi"] < 0.2 for f in calm["features"]), calm["features"]

    # petal_length shifted by 3 cm: that feature drifts, the others do not.
    base = get_json(f"{served.admin}/drift?window=3600")
    petal_length = served.reference.features[2]
    top = len(petal_length.counts) - 1
    top_before = sample_value(
        served, "mlops_monitor_feature_bin_total", feature="petal_length", bin=str(top)
    )
    expected_top = 0
    for _ in range(40):
        rows = x[rng.integers(0, len(x), 10)]
        rows[:, 2] += 3.0
        expected_top += sum(petal_length.bin(float(v)) == top for v in rows[:, 2])
        assert post(served.monitored, "/v2/models/iris/infer", infer_body(rows.tolist()))[0] == 200
    shifted = delta(served, base, until_binned(served, base["samples"] + 400))
    scores = {f["name"]: f["psi"] for f in shifted["features"]}
    assert scores["petal_length"] > 1.0, scores
    assert all(scores[name] < 0.2 for name in FEATURES if name != "petal_length"), scores

    # The counters saw the same rows: petal_length's top bin grew by those above its edge.
    top_after = sample_value(
        served, "mlops_monitor_feature_bin_total", feature="petal_length", bin=str(top)
    )
    assert top_after - top_before == expected_top > 200


def test_every_documented_monitor_metric_is_served_with_its_labels(served: Served) -> None:
    text = urllib.request.urlopen(f"{served.admin}/metrics", timeout=10).read().decode()
    served_labels: dict[str, set[frozenset[str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            served_labels.setdefault(sample.name, set()).add(frozenset(sample.labels))
    documented = documented_metrics(header=MONITOR_HEADER)
    assert documented, "docs/metrics.md has the monitor's table"
    for metric in documented:
        for name, labels in metric.series_names().items():
            assert served_labels.get(name) == {labels}, (name, served_labels.get(name))
    names = {n for m in documented for n in m.series_names()}
    assert {n for n in served_labels if n.startswith("mlops_monitor_")} == names


def sample_value(served: Served, name: str, **labels: str) -> float:
    text = urllib.request.urlopen(f"{served.admin}/metrics", timeout=10).read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    raise AssertionError(f"no {name}{labels} in /metrics")


def delta(served: Served, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What came in between two /drift readings, scored against the reference."""
    features = []
    for ref, b, a in zip(served.reference.features, before["features"], after["features"],
                         strict=True):  # fmt: skip
        counts = [y - x for x, y in zip(b["counts"], a["counts"], strict=True)]
        features.append({"name": a["name"], "psi": drift.psi(ref.counts, counts)})
    return {"samples": after["samples"] - before["samples"], "features": features}


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


# --- hostile callers -------------------------------------------------------------------

STRICT_REQUEST_BYTES = 1024 * 1024
STRICT_BINNED_BYTES = 64 * 1024


@pytest.fixture(scope="module")
def strict(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A second monitor in front of the same MLServer: 1 MiB per request, 64 KiB binned."""
    listen, admin = local_cluster.free_port(), local_cluster.free_port()
    log = tmp_path_factory.mktemp("strict") / "monitor.log"
    with log.open("wb") as sink:
        monitor = subprocess.Popen(
            [sys.executable, "-m", "mlops_operator", "monitor",
             "--upstream", served.direct, "--reference", str(served.reference_path),
             "--listen", f"127.0.0.1:{listen}", "--admin", f"127.0.0.1:{admin}",
             "--model", "iris", "--model-version", "1", "--deployment", "web", "--pod", "web-1",
             "--max-request-bytes", str(STRICT_REQUEST_BYTES),
             "--max-binned-bytes", str(STRICT_BINNED_BYTES)],
            stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_ready(f"http://127.0.0.1:{admin}/healthz", monitor, log)
        yield Served(served.direct, f"http://127.0.0.1:{listen}", f"http://127.0.0.1:{admin}",
                     monitor, log, served.reference, served.reference_path)  # fmt: skip
    finally:
        monitor.terminate()
        monitor.wait(timeout=30)
    assert monitor.returncode == 0, log.read_text()


def send(base: str, body: bytes, *, chunked: bool = False, pieces: int = 1,
         gap: float = 0.0) -> int:  # fmt: skip
    """POST an inference body as a client may: in one go, chunked, or in pieces `gap`
    seconds apart (a slow upload); the status answered."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("POST", "/v2/models/iris/infer")
    conn.putheader("Content-Type", "application/json")
    if chunked:
        conn.putheader("Transfer-Encoding", "chunked")
    else:
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders()
    size = -(-len(body) // pieces)
    try:
        for i in range(pieces):
            piece = body[i * size : (i + 1) * size]
            conn.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            if gap and i < pieces - 1:
                time.sleep(gap)  # the slow client under test, not a wait for a condition
        if chunked:
            conn.send(b"0\r\n\r\n")
    except OSError:
        pass  # refused mid-upload: the answer says so
    status = conn.getresponse().status
    conn.close()
    return status


def iris_rows(n: int) -> list[list[float]]:
    x, _ = load_iris(return_X_y=True)
    return x[np.random.default_rng(n).integers(0, len(x), n)].tolist()


def test_a_body_over_the_cap_is_refused_before_the_runtime_and_counted_apart(
    strict: Served,
) -> None:
    before = get_json(f"{strict.admin}/drift?window=3600")
    refused = sample_value(strict, "mlops_monitor_refused_requests_total", code="413")
    huge = b'{"inputs": [' + b" " * STRICT_REQUEST_BYTES + b"]}"
    assert send(strict.monitored, huge) == 413, "said by its Content-Length"
    assert send(strict.monitored, huge, chunked=True, pieces=16) == 413, "found while streaming"
    assert sample_value(strict, "mlops_monitor_refused_requests_total", code="413") == refused + 2
    after = get_json(f"{strict.admin}/drift?window=3600")
    assert after["requests"] == before["requests"], "not the runtime's traffic"
    assert send(strict.monitored, infer_body(iris_rows(5))) == 200
    assert strict.monitor.poll() is None


def test_a_body_over_the_binning_cap_passes_through_unbinned(strict: Served) -> None:
    before = get_json(f"{strict.admin}/drift?window=3600")
    large = infer_body(iris_rows(10_000))
    assert STRICT_BINNED_BYTES < len(large) < STRICT_REQUEST_BYTES
    assert send(strict.monitored, large) == 200, "MLServer answered it"
    after = get_json(f"{strict.admin}/drift?window=3600")
    assert after["requests"] == before["requests"] + 1
    assert after["unparsed"] == before["unparsed"] + 1
    assert after["samples"] == before["samples"]
    assert sample_value(strict, "mlops_monitor_unparsed_requests_total", reason="too-large") >= 1


def test_one_request_of_10000_rows_counts_as_at_most_100(served: Served) -> None:
    before = get_json(f"{served.admin}/drift?window=3600")
    assert send(served.monitored, infer_body(iris_rows(10_000))) == 200
    after = until_binned(served, before["samples"] + 1)
    assert after["samples"] - before["samples"] == 100


def test_a_slow_upload_is_not_counted_as_the_runtime_s_latency(strict: Served) -> None:
    """Four pieces 0.5 s apart: the upload takes 1.5 s, MLServer a few milliseconds."""
    before = get_json(f"{strict.admin}/drift?window=3600")
    assert send(strict.monitored, infer_body(iris_rows(20)), pieces=4, gap=0.5) == 200
    after = get_json(f"{strict.admin}/drift?window=3600")
    bounds = after["latency"]["bounds"]
    added = [a - b for a, b in zip(after["latency"]["counts"], before["latency"]["counts"],
                                   strict=True)]  # fmt: skip
    assert sum(added) == 1
    slowest = max(i for i, n in enumerate(added) if n)
    assert bounds[slowest] <= 0.5, f"latency counted up to {bounds[slowest]} s: {added}"


def test_each_drift_answer_names_its_deployment_version_and_pod(strict: Served) -> None:
    window = get_json(f"{strict.admin}/drift?window=60")
    assert (window["modelDeployment"], window["version"], window["pod"]) == ("web", "1", "web-1")


def until_binned(served: Served, samples: int) -> dict[str, Any]:
    """/drift once it holds `samples` rows (a worker thread bins them after the answer);
    what it holds after 10 s otherwise, for the caller's assertion to show."""
    deadline = time.monotonic() + 10
    while True:
        found: dict[str, Any] = get_json(f"{served.admin}/drift?window=3600")
        if found["samples"] >= samples or time.monotonic() > deadline:
            return found
        time.sleep(0.05)
