"""A succeeded TrainingJob's report -> the Model that registers it. Pure."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from mlops_operator.api import API_VERSION, Model, ModelSpec, TrainingJob, model_object_name
from mlops_operator.api.common import RESERVED_PREFIX, ResolvedDataset
from mlops_operator.api.model import (
    SERVED_BY_LISTED,
    Artifact,
    Lineage,
    TrainingJobRef,
    TriggerRecord,
)
from mlops_operator.api.report import TrainingReport
from mlops_operator.builders.meta import child_labels, name_and_uid
from mlops_operator.builders.serving import MLSERVER_IMPLEMENTATIONS as MLSERVER_FORMATS

MODEL_NAME_LABEL = f"{RESERVED_PREFIX}model-name"
# Lets people select the Models one TrainingJob registered (the operator itself
# matches spec.lineage.trainingJob.uid, which hand-edited labels cannot fake).
TRAININGJOB_UID_LABEL = f"{RESERVED_PREFIX}trainingjob-uid"
# Annotation on a TrainingJob naming the code revision, copied into the lineage.
CODE_REVISION_ANNOTATION = f"{RESERVED_PREFIX}code-revision"
# Annotation on a TrainingJob a ContinuousTraining started: the trigger, as JSON.
TRIGGER_ANNOTATION = f"{RESERVED_PREFIX}trigger"


def trigger_of(tj: TrainingJob) -> TriggerRecord | None:
    """The trigger that started a TrainingJob, from its annotation (None if absent or not
    one of ours)."""
    raw = tj.metadata.annotations.get(TRIGGER_ANNOTATION)
    if not raw:
        return None
    try:
        return TriggerRecord.model_validate_json(raw)
    except ValidationError:
        return None


def build_model(
    tj: TrainingJob, report: TrainingReport, version: int, dataset: ResolvedDataset | None = None
) -> dict[str, Any]:
    """The Model of a run's output; `dataset`: what the run read (its resolved dataset)."""
    name, uid = name_and_uid(tj.metadata)
    output = tj.spec.output
    key = output.key_metric if output.key_metric in report.metrics else None
    spec = ModelSpec(
        model_name=output.model_name,
        version=version,
        artifact=Artifact(
            uri=report.artifact.uri,
            format=output.format,
            digest=report.artifact.digest,
            reference=report.artifact.reference,
        ),
        metrics=dict(report.metrics),
        key_metric=key,
        lineage=Lineage(
            training_job=TrainingJobRef(name=name, uid=uid),
            image=tj.spec.image,
            dataset=dataset,
            trigger=trigger_of(tj),
            hyperparameters=dict(tj.spec.hyperparameters),
            code_revision=tj.metadata.annotations.get(CODE_REVISION_ANNOTATION),
        ),
        description=f"Registered from TrainingJob {name}.",
    )
    # No ownerReference: the registry entry outlives the TrainingJob.
    labels = child_labels("TrainingJob", name, model_name=output.model_name)
    labels[TRAININGJOB_UID_LABEL] = uid
    return {
        "apiVersion": API_VERSION,
        "kind": "Model",
        "metadata": {
            "name": model_object_name(output.model_name, version),
            "namespace": tj.metadata.namespace,
            "labels": labels,
        },
        "spec": spec.wire(),
    }


def registered_by(models: list[dict[str, Any]], uid: str) -> str | None:
    """The Model a TrainingJob with this uid already registered, if any."""
    for m in models:
        lineage_job = ((m["spec"].get("lineage") or {}).get("trainingJob")) or {}
        if lineage_job.get("uid") == uid:
            name: str = m["metadata"]["name"]
            return name
    return None


# Artifact locations storage-init can fetch from (fsspec protocols, and a PVC mount).
SUPPORTED_SCHEMES = ("s3", "gs", "https", "pvc")


def model_readiness(model: Model) -> tuple[bool, str, str]:
    """(ready, reason, message) of a Model: can a ModelDeployment serve it?"""
    uri = model.spec.artifact.uri
    scheme = uri.split("://", 1)[0]
    if scheme not in SUPPORTED_SCHEMES:
        supported = ", ".join(f"{s}://" for s in SUPPORTED_SCHEMES)
        return False, "UnsupportedArtifactURI", f"artifact {uri}: supported are {supported}"
    fmt = model.spec.artifact.format
    runtime = "the mlserver preset" if fmt in MLSERVER_FORMATS else "a custom runtime image"
    return True, "Valid", f"{fmt} artifact at {uri}; served by {runtime}"


def served_by(deployments: list[dict[str, Any]], model: str) -> list[str]:
    """Names of the ModelDeployments (not being deleted) serving Model `model`, sorted."""
    serving = []
    for md in deployments:
        if md["metadata"].get("deletionTimestamp"):
            continue
        status = md.get("status") or {}
        canary = status.get("canary") or {}
        canary_model = (
            model_object_name(md["spec"]["model"]["name"], canary["version"]) if canary else None
        )
        if model in (status.get("currentModel"), canary_model):
            serving.append(md["metadata"]["name"])
    return sorted(serving)


def serving_fields(serving: list[str]) -> dict[str, Any]:
    """The Model status fields for the ModelDeployments serving it: the list is bounded (a
    longer one is refused by the API server), the count is not."""
    return {"served_by": serving[:SERVED_BY_LISTED], "served_by_count": len(serving) or None}
