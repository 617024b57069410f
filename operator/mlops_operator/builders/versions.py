"""Model version numbers that mean one artifact forever: the per-namespace ledger. Pure.

A version is the Model's name (`<model>-v<N>`), so the API server already keeps two runs from
taking one number at once. What it cannot keep is a number from being taken again after its
Model was deleted. The ledger is a ConfigMap per namespace, `mlops-model-versions`, holding for
each model name the last version handed out and the TrainingJob (uid) it went to:
`iris: "7 0d3c…"`. Registering takes the next number by writing the ledger first, with its
resourceVersion (compare-and-swap), then creates the Model: a pass that crashed between the
two finds its own claim and uses that number; one that lost a race reads anew. A claim whose
run is still registering (it crashed between the two writes, and another run got to the ledger
first after the restart) is waited for, not skipped: numbers stay gap-free.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

LEDGER = "mlops-model-versions"


def claim_of(data: dict[str, str], model_name: str) -> tuple[int, str]:
    """(last version handed out, the uid it went to) for a model name; (0, "") if none."""
    last, _, owner = (data.get(model_name) or "0").partition(" ")
    return int(last), owner


class ClaimInFlight(Exception):
    """The last number handed out has no Model yet and its run is still registering."""

    def __init__(self, model_name: str, version: int, owner: str) -> None:
        super().__init__(f"version {version} of {model_name} is being registered by another run")
        self.version, self.owner = version, owner


def next_claim(
    data: dict[str, str],
    model_name: str,
    uid: str,
    models: list[dict[str, Any]],
    registering: Callable[[str], bool] = lambda _: False,
) -> tuple[int, bool]:
    """The version this TrainingJob registers as, and whether the ledger must record it.

    Past both the ledger and every Model that exists (hand-registered ones are not in the
    ledger); the same number again for the run that already claimed it. If the last claim
    has no Model and its run (by uid) is `registering` still, raises ClaimInFlight: that run
    will use the number, and this one goes after it.
    """
    last, owner = claim_of(data, model_name)
    if owner == uid and last:
        return last, False
    top = highest(models, model_name)
    if last > top and owner and registering(owner):
        raise ClaimInFlight(model_name, last, owner)
    return max(last, top) + 1, True


def highest(models: list[dict[str, Any]], model_name: str, name_field: str = "modelName") -> int:
    """The highest version among these objects (Models, or Datasets with `datasetName`)."""
    versions = [
        int(m["spec"]["version"]) for m in models if m["spec"].get(name_field) == model_name
    ]
    return max(versions, default=0)


def with_claim(data: dict[str, str], model_name: str, version: int, uid: str) -> dict[str, str]:
    return {**data, model_name: f"{version} {uid}"}


def ledger(
    namespace: str, data: dict[str, str], resource_version: str | None, name: str = LEDGER
) -> dict[str, Any]:
    """The ConfigMap; with `resource_version`, an update that fails if it changed meanwhile."""
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {"app.kubernetes.io/managed-by": "mlops-operator"},
        "annotations": {
            "mlops.seed.dev/purpose": (
                "the last version handed out per name; deleting it lets deleted versions'"
                " numbers be given again"
            )
        },
    }
    if resource_version:
        meta["resourceVersion"] = resource_version
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}
