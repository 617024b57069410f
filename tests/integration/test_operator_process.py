"""`mlops-operator run` starts against the cluster, stays healthy and stops cleanly."""

from __future__ import annotations

from pathlib import Path

from .conftest import Cluster, Operator


def test_operator_starts_and_stays_healthy(crds: Cluster, tmp_path: Path) -> None:
    op = Operator(crds, tmp_path / "operator.log")
    op.start()
    assert op.proc is not None
    op.stop()
    assert op.proc.returncode == 0, op.log()
    assert "Traceback" not in op.log()
