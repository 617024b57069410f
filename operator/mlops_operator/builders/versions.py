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

Numbers end at MAX_VERSION (a Model's name must stay a valid object name). Anyone who may
create Models can register one by hand at the last number; following it would end numbering
for good, so a version that leaves no number above it is passed over, not followed: the next
number is then the lowest one above the ledger's that no Model holds. The ledger is a
ConfigMap its namespace's users may be able to edit: an entry that is not `<N> <owner>`
with N within range is `LedgerCorrupt`, said on the object that needed it, never retried.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlops_operator.api.common import MAX_VERSION

LEDGER = "mlops-model-versions"


class LedgerCorrupt(ValueError):
    """A ledger entry no registration could have written; a person must fix or remove it."""

    def __init__(self, ledger: str, key: str, value: str) -> None:
        shown = value if len(value) <= 80 else value[:80] + "…"
        super().__init__(
            f"ConfigMap {ledger}, key {key}: {shown!r} is not '<version> <owner>' with a"
            f" version from 1 to {MAX_VERSION}; fix or remove that key (removing it lets the"
            " numbers of deleted versions be given again)"
        )


class VersionsExhausted(ValueError):
    """Every number above the ledger's is held by a Model."""

    def __init__(self, model_name: str, last: int) -> None:
        super().__init__(
            f"every version of {model_name} from {last + 1} to {MAX_VERSION} is taken;"
            " delete the Models numbered above the last one registered by a run"
        )


def claim_of(data: dict[str, str], model_name: str, ledger: str = LEDGER) -> tuple[int, str]:
    """(last version handed out, the uid it went to) for a model name; (0, "") if none.
    Raises LedgerCorrupt for an entry no registration writes."""
    raw = data.get(model_name)
    if raw is None:
        return 0, ""
    last, _, owner = raw.partition(" ")
    if not (last.isascii() and last.isdigit() and 1 <= int(last) <= MAX_VERSION and owner):
        raise LedgerCorrupt(ledger, model_name, raw)
    return int(last), owner


def next_number(last: int, taken: set[int], model_name: str) -> int:
    """The number after both the ledger's `last` and every version `taken` by an existing
    object; past the ceiling, the lowest free number above `last` (see the module's doc)."""
    following = max(last, max(taken, default=0)) + 1
    if following <= MAX_VERSION:
        return following
    free = next((n for n in range(last + 1, MAX_VERSION + 1) if n not in taken), None)
    if free is None:
        raise VersionsExhausted(model_name, last)
    return free


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
    taken = taken_versions(models, model_name)
    # Its number has no Model (not only "is past every Model": a hand-registered last
    # version is always past it).
    if last not in taken and owner and registering(owner):
        raise ClaimInFlight(model_name, last, owner)
    return next_number(last, taken, model_name), True


def taken_versions(
    models: list[dict[str, Any]], model_name: str, name_field: str = "modelName"
) -> set[int]:
    """The versions these objects hold (Models, or Datasets with `datasetName`)."""
    return {int(m["spec"]["version"]) for m in models if m["spec"].get(name_field) == model_name}


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
