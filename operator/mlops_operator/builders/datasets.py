"""Registered Datasets: which version a run reads, and who read each version. Pure."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from mlops_operator.api import Dataset, dataset_object_name
from mlops_operator.api.common import RESERVED_PREFIX, ResolvedDataset, TrainingData
from mlops_operator.api.dataset import MAX_USED_BY, UsedBy

# On the child Job: the dataset its pods were given, so that a pass after a crash records
# what the run really reads, even if `latest` has moved on since.
RESOLVED_ANNOTATION = f"{RESERVED_PREFIX}dataset"
DATASET_NAME_LABEL = f"{RESERVED_PREFIX}dataset-name"


@dataclass(frozen=True)
class Unresolved:
    """Why a run cannot start yet: the Dataset it names is missing or not Ready."""

    reason: str  # DatasetNotFound or DatasetNotReady
    message: str


def is_ready(body: dict[str, Any]) -> bool:
    conditions = (body.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def versions_of(datasets: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The versions of dataset `name`, oldest first."""
    found = [d for d in datasets if (d.get("spec") or {}).get("datasetName") == name]
    return sorted(found, key=lambda d: int(d["spec"].get("version") or 0))


def newest_ready(datasets: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    ready = [d for d in versions_of(datasets, name) if is_ready(d)]
    return ready[-1] if ready else None


def resolve(
    data: TrainingData | None, datasets: list[dict[str, Any]]
) -> ResolvedDataset | Unresolved | None:
    """What a run reads: a plain uri as given; a ref as the Dataset version it names (or the
    newest Ready one for `latest`), which must exist and be Ready."""
    if data is None:
        return None
    if data.ref is None:
        return resolved_uri(data)
    ref = data.ref
    if ref.version == "latest":
        body = newest_ready(datasets, ref.name)
        if body is None:
            what = "no version" if not versions_of(datasets, ref.name) else "no Ready version"
            reason = "DatasetNotFound" if what == "no version" else "DatasetNotReady"
            return Unresolved(reason, f"dataset {ref.name} has {what} yet; the run starts when"
                              " one is registered and Ready")  # fmt: skip
    else:
        wanted = dataset_object_name(ref.name, int(ref.version))
        body = next((d for d in datasets if d["metadata"]["name"] == wanted), None)
        if body is None:
            return Unresolved(
                "DatasetNotFound", f"Dataset {wanted} does not exist; the run starts when it does"
            )
        if not is_ready(body):
            return Unresolved(
                "DatasetNotReady", f"Dataset {wanted} is not Ready: {_ready_message(body)}"
            )
    spec = body["spec"]
    return ResolvedDataset(
        uri=spec["uri"], digest=spec["digest"], name=spec["datasetName"], version=spec["version"]
    )


def resolved_uri(data: TrainingData | None) -> ResolvedDataset | None:
    """A plain-uri dataset as what the run reads (None for none, or for a `ref`)."""
    if data is None or data.uri is None:
        return None
    return ResolvedDataset(uri=data.uri, digest=data.digest)


def _ready_message(body: dict[str, Any]) -> str:
    conditions = (body.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    return str(ready.get("message")) if ready else "not validated yet"


def annotation(resolved: ResolvedDataset) -> str:
    return json.dumps(resolved.wire(), sort_keys=True, separators=(",", ":"))


def of_job(job: dict[str, Any] | None) -> ResolvedDataset | None:
    """The dataset a child Job's pods were given (its annotation), if it says."""
    raw = ((job or {}).get("metadata", {}).get("annotations") or {}).get(RESOLVED_ANNOTATION)
    if not raw:
        return None
    try:
        return ResolvedDataset.model_validate_json(raw)
    except ValidationError:
        return None  # edited by hand: the TrainingJob's status still has it


def waiting_on(tj: dict[str, Any]) -> str | None:
    """The dataset name a TrainingJob that has no Job yet waits for, if it names one."""
    if (tj.get("status") or {}).get("jobName"):
        return None
    ref = ((tj.get("spec") or {}).get("dataset") or {}).get("ref") or {}
    name = ref.get("name")
    return str(name) if name else None


def used_by(
    dataset: Dataset, trainingjobs: list[dict[str, Any]], models: list[dict[str, Any]]
) -> UsedBy:
    """The TrainingJobs that read this version and the Models trained on it, newest last."""
    name, version = dataset.spec.dataset_name, dataset.spec.version

    def reads(record: dict[str, Any] | None) -> bool:
        record = record or {}
        return record.get("name") == name and record.get("version") == version

    jobs = [t for t in trainingjobs if reads((t.get("status") or {}).get("dataset"))]
    trained = [
        m for m in models if reads(((m.get("spec") or {}).get("lineage") or {}).get("dataset"))
    ]
    return UsedBy(
        training_jobs=_newest_names(jobs),
        models=_newest_names(trained),
    )


def _newest_names(bodies: list[dict[str, Any]]) -> list[str]:
    ordered = sorted(
        bodies, key=lambda b: (b["metadata"].get("creationTimestamp") or "", b["metadata"]["name"])
    )
    return [b["metadata"]["name"] for b in ordered][-MAX_USED_BY:]


def readiness(dataset: Dataset) -> tuple[bool, str, str]:
    """(ready, reason, message) of a Dataset: can a run read it?"""
    spec = dataset.spec
    size = f", {spec.size_bytes} bytes" if spec.size_bytes is not None else ""
    rows = f", {spec.rows} rows" if spec.rows is not None else ""
    return True, "Valid", f"{spec.format} data at {spec.uri} ({spec.digest[:19]}…{rows}{size})"
