"""Fixtures of the fault tests: operator replicas that come back when they exit (as their
kubelet would start them again), namespaces they watch, and the figures each test measures
(the control plane's processes are stopped through tools/cluster/controlplane.py).

`make test` runs these at a size that fits CI; `make chaos` (MLOPS_CHAOS=full) at the size
of docs/reliability.md. They run last in a session: they stop the API server and etcd.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures import ROOT, Cluster, fresh_namespace
from tests.measured import Measured
from tests.operators import Operator
from tests.polling import until

PREFIX = "ch"  # the namespaces the fault tests' operators watch
LEASE_NAMESPACE = "mlops-system"
RESULTS = Path(os.environ.get("MLOPS_CHAOS_RESULTS", ROOT / ".cluster" / "chaos-results.jsonl"))


@dataclass(frozen=True)
class Scale:
    runs: int  # TrainingJobs of one model while the operator is killed at random
    kills: int  # SIGKILLs among them
    failovers: int  # leader kills in the middle of a canary step and a burst of runs
    outage_seconds: float  # how long the API server or etcd stays stopped
    timeout: int  # per test


CI = Scale(runs=40, kills=6, failovers=3, outage_seconds=60, timeout=600)
FULL = Scale(runs=200, kills=20, failovers=10, outage_seconds=60, timeout=2400)
SCALE = FULL if os.environ.get("MLOPS_CHAOS") == "full" else CI


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    chaos = [i for i in items if Path(str(i.fspath)).is_relative_to(here)]
    for item in chaos:
        item.add_marker(pytest.mark.integration)
        item.add_marker(pytest.mark.timeout(SCALE.timeout))
    # Last: a test that stops the API server must not leave its after-effects (caches
    # re-listing, controllers catching up) to the tests that come after it.
    items[:] = [i for i in items if i not in chaos] + chaos


MEASURED = Measured(RESULTS, "fault tests: what was measured")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    MEASURED.report(terminalreporter)


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Callable[..., None]:
    """Write a test's figures to RESULTS (and the session's summary), one JSON line each."""
    scale = "full" if SCALE is FULL else "ci"
    return partial(MEASURED.write, request.node.name, scale=scale)


class Supervised:
    """Operator replicas started again whenever they exit, as a Deployment's kubelet does
    (restartPolicy Always), with every exit code kept for the test to judge."""

    def __init__(self, replicas: list[Operator]) -> None:
        self.replicas = replicas
        self.exits: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)

    def start(self) -> None:
        for replica in self.replicas:
            replica.start()
        self._thread.start()

    def _watch(self) -> None:
        counted: set[int] = set()  # pids whose exit is in `exits` already
        while not self._stop.wait(0.2):
            for replica in self.replicas:
                code = replica.exited()
                if code is None or replica.proc is None:
                    continue
                if replica.proc.pid not in counted:
                    counted.add(replica.proc.pid)
                    self.exits.append(code)
                try:
                    replica.restart()
                except Exception:  # it died again while starting: the next round sees it
                    continue

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for replica in self.replicas:
            replica.stop()

    def tails(self, lines: int = 40) -> str:
        """The end of each replica's log, for a failure message."""
        return "\n".join(
            f"--- replica {i} (exits so far: {self.exits}):\n"
            + "\n".join(r.log().splitlines()[-lines:])
            for i, r in enumerate(self.replicas)
        )

    def holding(self, identity: str) -> Operator:
        """The replica whose process took the Lease as `identity`."""
        line = f"{identity} holds Lease"
        return until(lambda: next((r for r in self.replicas if line in r.log()), None), 30, line)


@pytest.fixture
def chaos_namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace, watched by the fault tests' operators."""
    yield from fresh_namespace(cluster, PREFIX, watched=True)


@pytest.fixture
def replicas(crds: Cluster, tmp_path: Path) -> Iterator[tuple[Supervised, str]]:
    """Two supervised replicas sharing one Lease, as the default install runs them."""
    lease = f"ch-{uuid.uuid4().hex[:8]}"
    pair = Supervised(
        [
            Operator(crds, tmp_path / f"replica-{i}.log", watch=f"{PREFIX}-*",
                     args=[f"--lease-name={lease}"])
            for i in range(2)
        ]
    )  # fmt: skip
    pair.start()
    yield pair, lease
    pair.stop()
