"""Model: one immutable, versioned model artifact, the registry entry."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from mlops_operator.api.common import (
    MAX_VERSION,
    RESERVED_PREFIX,
    ApiModel,
    Conditions,
    Digest,
    DnsSubdomain,
    Hyperparameters,
    KindInfo,
    MetricName,
    Metrics,
    ModelFormat,
    ModelName,
    PrinterColumn,
    ResolvedDataset,
    Resource,
    Rule,
    TransitionRule,
    Uri,
    age_column,
    ready_column,
    versioned_name,
    versioned_name_rule,
)
from mlops_operator.api.reference import ReferenceFile

# The label a Model carries once someone has approved it for serving.
APPROVED_LABEL = f"{RESERVED_PREFIX}approved"


def model_object_name(model_name: str, version: int) -> str:
    """The name of the Model object holding `version` of `model_name`."""
    return versioned_name(model_name, version)


class Artifact(ApiModel):
    """The stored model."""

    uri: Uri = Field(description="Where the artifact is, for example `s3://models/iris/run-1`.")
    format: ModelFormat = Field(description="Format of the artifact; picks the serving runtime.")
    digest: Digest | None = Field(
        default=None, description="Content digest (`sha256:<hex>`) of the artifact."
    )
    reference: ReferenceFile | None = Field(
        default=None,
        description="The training data's reference profile; a ModelDeployment serving this"
        " version monitors drift against it.",
    )


class TrainingJobRef(ApiModel):
    """The TrainingJob that produced a Model."""

    name: DnsSubdomain = Field(description="Name of the TrainingJob.")
    uid: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None, description="UID of the TrainingJob, which may since have been deleted."
    )


TriggerType = Literal["schedule", "onNewDataset", "onModelDeployment"]


class TriggerRecord(ApiModel):
    """What made a ContinuousTraining start the run."""

    continuous_training: DnsSubdomain = Field(description="Name of the ContinuousTraining.")
    type: TriggerType = Field(description="Which of its triggers fired.")
    detail: Annotated[str, StringConstraints(max_length=512)] = Field(
        description="What fired it: the schedule time, the Dataset version, or the"
        " ModelDeployment condition."
    )


class Lineage(ApiModel):
    """Where the Model came from."""

    training_job: TrainingJobRef | None = Field(
        default=None,
        description="The TrainingJob that produced it; unset for hand-registered Models.",
    )
    image: Annotated[str, StringConstraints(max_length=512)] | None = Field(
        default=None, description="The training image."
    )
    dataset: ResolvedDataset | None = Field(default=None, description="The data it was trained on.")
    trigger: TriggerRecord | None = Field(
        default=None, description="The ContinuousTraining trigger that started the run, if any."
    )
    hyperparameters: Hyperparameters = Field(
        default_factory=dict, description="The hyperparameters it was trained with."
    )
    code_revision: Annotated[str, StringConstraints(max_length=256)] | None = Field(
        default=None, description="Revision of the training code, for example a Git commit."
    )


class ModelSpec(ApiModel):
    """One version of a model. Immutable: register a new version instead of changing one."""

    rules = (
        Rule(
            cel="!has(self.keyMetric) || (has(self.metrics) && self.keyMetric in self.metrics)",
            message="must be one of the keys of metrics",
            check=lambda s: s.key_metric is None or s.key_metric in s.metrics,
            field="keyMetric",
        ),
        TransitionRule(
            cel="self == oldSelf",
            message="is immutable: a Model is one version; register a new version instead",
            check=lambda old, new: old == new,
        ),
    )

    model_name: ModelName = Field(description="Name of the model this is a version of.")
    version: int = Field(ge=1, le=MAX_VERSION, description="Version number, from 1.")
    artifact: Artifact = Field(description="The stored model.")
    metrics: Metrics = Field(default_factory=dict, description="Evaluation metrics.")
    key_metric: MetricName | None = Field(
        default=None, description="The metric shown by `kubectl get`; a key of `metrics`."
    )
    lineage: Lineage | None = Field(default=None, description="Where the Model came from.")
    description: Annotated[str, StringConstraints(max_length=4096)] | None = Field(
        default=None, description="Free text for humans."
    )


# Status lists are bounded (the API server checks maxItems); a version can serve more.
SERVED_BY_LISTED = 64


class ModelStatus(ApiModel):
    """Observed state, written by the operator."""

    conditions: Conditions = Field(default_factory=list, description="Current conditions.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="The `metadata.generation` this status describes."
    )
    key_metric: Annotated[str, StringConstraints(max_length=128)] | None = Field(
        default=None, description="`name=value` of spec.keyMetric, for `kubectl get`."
    )
    served_by: list[DnsSubdomain] = Field(
        default_factory=list,
        max_length=SERVED_BY_LISTED,
        description="ModelDeployments serving this version: the first 64 by name.",
    )
    served_by_count: int | None = Field(
        default=None, ge=0, description="How many ModelDeployments serve this version."
    )


class Model(Resource):
    """One immutable, versioned model artifact with metrics and lineage."""

    rules = (versioned_name_rule("modelName"),)

    kind: Literal["Model"] = Field(default="Model", description="Model.")
    spec: ModelSpec = Field(description="One version of a model.")
    status: ModelStatus | None = Field(default=None, description="Observed state.")


MODEL = KindInfo(
    kind="Model",
    plural="models",
    short_name="mdl",
    resource=Model,
    spec=ModelSpec,
    status=ModelStatus,
    max_name_length=63,
    printer_columns=(
        PrinterColumn("Model", "string", ".spec.modelName", "Name of the model."),
        PrinterColumn("Version", "integer", ".spec.version", "Version number."),
        PrinterColumn("Format", "string", ".spec.artifact.format", "Format of the artifact."),
        PrinterColumn("Metric", "string", ".status.keyMetric", "The key metric."),
        PrinterColumn(
            "Approved",
            "string",
            ".metadata.labels." + APPROVED_LABEL.replace(".", "\\."),
            f"The {APPROVED_LABEL} label.",
        ),
        ready_column(),
        age_column(),
    ),
)
