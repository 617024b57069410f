"""Every list in every kind's status is cut by its builder to at most what the CRD allows.

A status list longer than the schema's maxItems is refused by the API server on every write,
so nothing of that pass's status (cooldowns, decisions, observedGeneration) would ever land.
The limits are read from the CRDs the API models generate: a new status list fails here until
its builder's cut is named below.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from mlops_operator import crdgen
from mlops_operator.api.continuoustraining import ACTIVE_LISTED, MAX_DECISIONS
from mlops_operator.api.dataset import MAX_USED_BY
from mlops_operator.api.model import SERVED_BY_LISTED
from mlops_operator.api.modeldeployment import HISTORY_LIMIT
from mlops_operator.builders import datasets, registry
from mlops_operator.builders.drift import STATUS_FEATURES
from tests.unit.test_datasets import dataset_object, model, reader

# Each status list, and the length its builder cuts it to (where, in the comment).
CUT_TO = {
    "ContinuousTraining.status.active": ACTIVE_LISTED,  # continuous.status_of
    "ContinuousTraining.status.decisions": MAX_DECISIONS,  # continuous: the newest
    "Dataset.status.usedBy.models": MAX_USED_BY,  # datasets.used_by: the newest
    "Dataset.status.usedBy.trainingJobs": MAX_USED_BY,
    "ModelDeployment.status.drift.features": STATUS_FEATURES,  # drift: the highest PSI
    "ModelDeployment.status.history": HISTORY_LIMIT,  # rollout: the newest
    "Model.status.servedBy": SERVED_BY_LISTED,  # registry.serving_fields: the first by name
}
# Conditions are keyed by type (builders/conditions.py): as many as the types the code sets.
CONDITIONS_AT_MOST = 16


def _arrays(node: dict[str, Any], path: str) -> Iterator[tuple[str, int | None]]:
    if node.get("type") == "array":
        yield path, node.get("maxItems")
        yield from _arrays(node.get("items") or {}, f"{path}[]")
    for key, child in (node.get("properties") or {}).items():
        yield from _arrays(child, f"{path}.{key}")


def status_lists() -> dict[str, int | None]:
    found: dict[str, int | None] = {}
    for crd in crdgen.crds().values():
        kind = crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            status = version["schema"]["openAPIV3Schema"]["properties"].get("status") or {}
            found.update(_arrays(status, f"{kind}.status"))
    return found


def test_every_status_list_has_a_named_cut_within_its_schema() -> None:
    lists = status_lists()
    conditions = {path: most for path, most in lists.items() if path.endswith(".conditions")}
    assert set(lists) - set(conditions) == set(CUT_TO), "a status list without a named cut"
    for path, cut in CUT_TO.items():
        most = lists[path]
        assert most is not None, f"{path}: no maxItems"
        assert cut <= most, (path, cut, most)
    assert set(conditions.values()) == {CONDITIONS_AT_MOST}


def test_the_cuts_hold_for_any_number_of_items() -> None:
    names = [f"md-{i:04d}" for i in range(500)]
    served = registry.serving_fields(names)
    assert (len(served["served_by"]), served["served_by_count"]) == (SERVED_BY_LISTED, 500)
    t0 = datetime(2026, 6, 1, tzinfo=UTC)
    jobs = [reader(f"tj-{i:04d}", t0 + timedelta(minutes=i)) for i in range(500)]
    trained = [model(f"iris-v{i}", t0 + timedelta(minutes=i)) for i in range(1, 501)]
    used = datasets.used_by(dataset_object(2), jobs, trained)
    assert used.training_jobs == [f"tj-{i:04d}" for i in range(500 - MAX_USED_BY, 500)]
    assert len(used.models) == MAX_USED_BY
