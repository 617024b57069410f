"""The operator SIGKILLed at random moments while many runs of one model register: nothing
lost, nothing twice."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fixtures import Cluster, fresh_namespace
from tests.operators import Operator
from tests.polling import until

from .conftest import PREFIX, SCALE, Supervised
from .registry import all_registered, assert_registered_once, runs, start_runs, unregistered


def test_killed_at_random_registers_every_run_exactly_once(
    crds: Cluster, tmp_path: Path, record: Callable[..., Any]
) -> None:
    seed = int(os.environ.get("MLOPS_CHAOS_SEED") or time.time())
    rng = random.Random(seed)
    # One replica without a Lease, so a restart takes over at once (the two-replica
    # failover is test_failover.py's): here every kill lands in the middle of work.
    operator = Operator(crds, tmp_path / "operator.log", watch=f"{PREFIX}-*",
                        args=["--no-leader-elect"])  # fmt: skip
    supervisor = Supervised([operator])
    supervisor.start()
    namespace_fixture = fresh_namespace(crds, PREFIX, watched=True)
    namespace = next(namespace_fixture)
    try:
        names = [f"run-{i:03d}" for i in range(SCALE.runs)]
        started = time.monotonic()
        # Runs finish over about as long as the kills take (about 4 s each with a restart).
        start_runs(crds, namespace, runs(names, "churn", rng, (1, 4 * SCALE.kills)))
        kills = 0
        while kills < SCALE.kills and not all_registered(crds, namespace, names):
            time.sleep(rng.uniform(0.5, 4.0))  # a random moment, not a wait for a condition
            if operator.exited() is None:
                operator.kill()
                kills += 1
        until(
            lambda: all_registered(crds, namespace, names),
            300,
            "every run registered",
            explain=lambda: unregistered(crds, namespace, names) + "\n" + supervisor.tails(),
        )
        settled = time.monotonic() - started
        assert_registered_once(crds, namespace, "churn", names)
        assert kills == SCALE.kills, f"only {kills} kills before every run was done"
        until(lambda: len(supervisor.exits) >= kills, 30, "the last kill's restart")
        assert supervisor.exits == [-9] * kills, f"exits besides our kills: {supervisor.exits}"
        record(seed=seed, runs=len(names), kills=kills, settled_s=round(settled, 1))
    finally:
        next(namespace_fixture, None)  # delete the namespace while the operator runs
        supervisor.stop()
