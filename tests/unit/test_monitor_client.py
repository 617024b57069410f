"""The operator's reader of a pod's /drift: what the monitor serves is read and summed; any
other answer is a MonitorError (the pod counts as not answering), never a crash of the read.

A real HTTP server on 127.0.0.1 plays the pod, serving what the test gives it.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from mlops_operator.api.modeldeployment import Monitoring
from mlops_operator.builders import analysis, drift
from mlops_operator.monitor_client import MAX_ANSWER_BYTES, Asked, MonitorError, read_drift
from mlops_operator.monitoring.window import Window
from mlops_operator.sdk import profile


class Pod:
    """What the fake pod answers on /drift next: a JSON value, or raw bytes."""

    answer: Any = None


@pytest.fixture
def pod() -> Iterator[tuple[Pod, int]]:
    served = Pod()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            raw = served.answer if isinstance(served.answer, bytes) else None
            body = raw if raw is not None else json.dumps(served.answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield served, server.server_address[1]
    server.shutdown()
    server.server_close()


def monitor_window() -> dict[str, Any]:
    """What the serving monitor itself serves for 300 rows of two features."""
    rng = np.random.default_rng(3)
    ref = profile(rng.normal(0, 1, (500, 2)), rng.integers(0, 3, 500), feature_names=["a", "b"])
    window = Window(ref)
    rows = rng.normal(0, 1, (300, 2))
    window.record_rows([rows[:, 0].tolist(), rows[:, 1].tolist()], [0, 1, 2] * 100, 1000.0)
    window.record_request(seconds=0.004, error=False, now=1000.0)
    # What the monitor adds (monitoring/server.py): whose window it is.
    return window.summary(600, 1000.0) | {"modelDeployment": "web", "version": "2", "pod": "web-1"}


ASKED = Asked("web", 2, "web-1")


def test_the_monitors_own_window_is_read_and_summed(pod: tuple[Pod, int]) -> None:
    served, port = pod
    served.answer = monitor_window()
    body = read_drift("127.0.0.1", port, 600, ASKED)
    verdict = drift.assess([body], [], Monitoring(), 1, datetime.now(UTC))
    assert verdict.drift is not None
    assert verdict.drift.samples == 300
    assert sorted(f.name for f in verdict.drift.features) == ["a", "b"]  # highest PSI first
    traffic = analysis.traffic([body])
    assert traffic is not None
    assert traffic.requests == 1


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda w: w.pop("samples"), "without samples"),
        (lambda w: w.pop("latency"), "without latency"),
        (lambda w: w.__setitem__("latency", {"bounds": []}), "latency without bounds and counts"),
        (lambda w: w.__setitem__("features", {"a": 1}), "not a drift window"),
        (lambda w: w["features"][1].pop("name"), "a feature without name"),
        (lambda w: w["predictions"].pop("name"), "predictions without name"),
    ],
    ids=["samples", "latency", "latency-shape", "features-shape", "feature-name", "predictions"],
)
def test_an_answer_the_assessment_could_not_sum_is_a_monitor_error(
    pod: tuple[Pod, int], change: Any, says: str
) -> None:
    served, port = pod
    window = monitor_window()
    change(window)
    served.answer = window
    with pytest.raises(MonitorError, match=says):
        read_drift("127.0.0.1", port, 600, ASKED)


@pytest.mark.parametrize("answer", [b"<html>not json</html>", [1, 2], "window"])
def test_what_is_not_a_window_at_all_is_a_monitor_error(pod: tuple[Pod, int], answer: Any) -> None:
    served, port = pod
    served.answer = answer
    with pytest.raises(MonitorError):
        read_drift("127.0.0.1", port, 600, ASKED)


def test_a_pod_that_does_not_listen_is_a_monitor_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Closed again: nothing listens on it.
    with pytest.raises(MonitorError, match="refused"):
        read_drift("127.0.0.1", port, 600, ASKED)


@pytest.mark.parametrize(
    ("field", "other"),
    [("modelDeployment", "shop"), ("version", "3"), ("pod", "web-7"), ("pod", None)],
)
def test_an_answer_from_another_pod_version_or_deployment_is_not_used(
    pod: tuple[Pod, int], field: str, other: Any
) -> None:
    """A pod IP read after its pod was replaced may reach another monitor: its window is
    never taken for the one asked for."""
    served, port = pod
    served.answer = monitor_window() | {field: other}
    with pytest.raises(MonitorError, match=r"answered for .* not ModelDeployment 'web'"):
        read_drift("127.0.0.1", port, 600, ASKED)


@pytest.mark.parametrize(
    "answer",
    [b"[" * 100_000 + b"]" * 100_000, b" " * (MAX_ANSWER_BYTES + 1)],
    ids=["deeply-nested", "oversized"],
)
def test_a_hostile_answer_is_a_monitor_error(pod: tuple[Pod, int], answer: bytes) -> None:
    served, port = pod
    served.answer = answer
    with pytest.raises(MonitorError):
        read_drift("127.0.0.1", port, 600, ASKED)
