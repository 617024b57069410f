"""The condition summary (Ready with Reconciling or Stalled) that Flux, kstatus and Argo CD read.

The builders' own tests call `tests.readiness.summary` on what they produce; this checks that
the objects the Argo CD health checks are tested on say it the same way, so those cases
describe what the operator writes today.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.readiness import summary

ROOT = Path(__file__).resolve().parents[2]
TESTDATA = sorted(
    (ROOT / "gitops" / "argocd" / "resource_customizations" / "mlops.seed.dev").glob(
        "*/testdata/*.yaml"
    )
)


def expected_health(path: Path) -> str:
    tests = yaml.safe_load((path.parent.parent / "health_test.yaml").read_text())["tests"]
    case = next(c for c in tests if c["inputPath"] == f"testdata/{path.name}")
    return str(case["healthStatus"]["status"])


@pytest.mark.parametrize("path", TESTDATA, ids=lambda p: f"{p.parent.parent.name}-{p.stem}")
def test_every_argocd_case_follows_the_summary_rules(path: Path) -> None:
    obj = yaml.safe_load(path.read_text())
    status = obj.get("status") or {}
    generation = obj["metadata"].get("generation")
    if not status.get("conditions") or status.get("observedGeneration") != generation:
        return  # before the operator's first visit, or a stale status: Progressing anyway
    state, reason = summary(status["conditions"])
    # Argo CD's verdict follows the summary alone; Suspended is a Reconciling or Ready reason.
    health = {"Ready": "Healthy", "Reconciling": "Progressing", "Stalled": "Degraded"}[state]
    if reason in ("Suspended", "Queued"):
        health = "Suspended"
    assert expected_health(path) == health


def test_summary_rejects_what_breaks_fluxs_rules() -> None:
    base = {"lastTransitionTime": "2026-12-01T00:00:00Z", "observedGeneration": 1, "message": "m"}
    ready_true = {"type": "Ready", "status": "True", "reason": "Done", **base}
    ready_false = {**ready_true, "status": "False", "reason": "Failed"}
    stalled = {"type": "Stalled", "status": "True", "reason": "Failed", **base}
    reconciling = {"type": "Reconciling", "status": "True", "reason": "Failed", **base}
    with pytest.raises(AssertionError, match="Ready must be False"):
        summary([ready_true, stalled])
    with pytest.raises(AssertionError, match="only one of"):
        summary([ready_false, stalled, reconciling])
    with pytest.raises(AssertionError, match="present only while True"):
        summary([ready_false, {**stalled, "status": "False"}])
    with pytest.raises(AssertionError, match="needs Reconciling or Stalled"):
        summary([ready_false])
    assert summary([ready_false, stalled]) == ("Stalled", "Failed")
