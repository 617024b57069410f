"""`mlops-operator run` starts against the cluster, stays healthy and stops cleanly."""

from __future__ import annotations

import re
import time
from pathlib import Path

from .conftest import Cluster, Operator


def test_operator_starts_and_stays_healthy(crds: Cluster, tmp_path: Path) -> None:
    # Watching a namespace that exists: kopf starts a watch per kind only for those.
    op = Operator(crds, tmp_path / "operator.log", watch="default")
    op.start()
    assert op.proc is not None
    # The watchdog finds kopf's watch tasks by the name kopf gives them: if kopf renamed
    # them, it would see none and a dead watch would go unnoticed (controllers/watchdog.py).
    deadline = time.monotonic() + 30
    while not (found := re.search(r"watchdog: (\d+) watch streams", op.log())):
        assert time.monotonic() < deadline, "the watchdog never saw kopf's watch tasks"
        time.sleep(0.2)
    assert int(found.group(1)) >= 5, "one per kind watched, at least ours"
    op.stop()
    assert op.proc.returncode == 0, op.log()
    assert "Traceback" not in op.log()
