"""Dataset: one immutable, versioned dataset, the data registry entry."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from mlops_operator.api.common import (
    MAX_VERSION,
    ApiModel,
    Conditions,
    DatasetName,
    Digest,
    DnsSubdomain,
    Image,
    KindInfo,
    PrinterColumn,
    Resource,
    TransitionRule,
    Uri,
    age_column,
    ready_column,
    versioned_name,
    versioned_name_rule,
)

MAX_USED_BY = 64


def dataset_object_name(dataset_name: str, version: int) -> str:
    """The name of the Dataset object holding `version` of `dataset_name`."""
    return versioned_name(dataset_name, version)


ColumnName = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class Column(ApiModel):
    """One column of the data."""

    name: ColumnName = Field(description="Name of the column.")
    type: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="Its type, as the producer names it (`int64`, `float`, `string`, ...)."
    )


class DatasetSchema(ApiModel):
    """The shape of the data."""

    columns: list[Column] = Field(
        default_factory=list,
        max_length=512,
        description="The columns, in order.",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )


class DatasetLineage(ApiModel):
    """What produced the data."""

    code_revision: Annotated[str, StringConstraints(max_length=256)] | None = Field(
        default=None, description="Revision of the code that produced it, for example a commit."
    )
    image: Image | None = Field(default=None, description="The image that produced it.")
    source_uri: Uri | None = Field(default=None, description="Where it was derived from.")


class DatasetSpec(ApiModel):
    """One version of a dataset. Immutable: register a new version instead of changing one."""

    rules = (
        TransitionRule(
            cel="self == oldSelf",
            message="is immutable: a Dataset is one version; register a new version instead",
            check=lambda old, new: old == new,
        ),
    )

    dataset_name: DatasetName = Field(description="Name of the dataset this is a version of.")
    version: int = Field(ge=1, le=MAX_VERSION, description="Version number, from 1.")
    uri: Uri = Field(description="Where the data is: one object, or a prefix holding several.")
    digest: Digest = Field(
        description="Content digest (`sha256:<hex>`): of the object, or for a prefix of its"
        " objects' relative paths, sizes and digests in path order (`mlops-operator dataset"
        " register` computes it)."
    )
    format: Annotated[str, StringConstraints(max_length=32, pattern=r"^[a-z0-9][a-z0-9.+-]*$")] = (
        Field(default="unknown", description="Format of the data: `csv`, `parquet`, `jsonl`...")
    )
    schema_: DatasetSchema | None = Field(
        default=None, alias="schema", description="The columns and their types."
    )
    rows: int | None = Field(default=None, ge=0, description="Number of rows.")
    size_bytes: int | None = Field(default=None, ge=0, description="Total size in bytes.")
    lineage: DatasetLineage | None = Field(default=None, description="What produced it.")
    description: Annotated[str, StringConstraints(max_length=4096)] | None = Field(
        default=None, description="Free text for humans."
    )


class UsedBy(ApiModel):
    """What was trained on this version (the most recent, at most 64 of each)."""

    training_jobs: list[DnsSubdomain] = Field(
        default_factory=list, max_length=MAX_USED_BY, description="TrainingJobs that read it."
    )
    models: list[DnsSubdomain] = Field(
        default_factory=list, max_length=MAX_USED_BY, description="Models trained on it."
    )


class DatasetStatus(ApiModel):
    """Observed state, written by the operator."""

    conditions: Conditions = Field(default_factory=list, description="Current conditions.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="The `metadata.generation` this status describes."
    )
    used_by: UsedBy | None = Field(default=None, description="What was trained on it.")


class Dataset(Resource):
    """One immutable, versioned dataset: uri and digest, schema and lineage."""

    rules = (versioned_name_rule("datasetName"),)

    kind: Literal["Dataset"] = Field(default="Dataset", description="Dataset.")
    spec: DatasetSpec = Field(description="One version of a dataset.")
    status: DatasetStatus | None = Field(default=None, description="Observed state.")


DATASET = KindInfo(
    kind="Dataset",
    plural="datasets",
    short_name="ds",
    resource=Dataset,
    spec=DatasetSpec,
    status=DatasetStatus,
    max_name_length=63,
    printer_columns=(
        PrinterColumn("Dataset", "string", ".spec.datasetName", "Name of the dataset."),
        PrinterColumn("Version", "integer", ".spec.version", "Version number."),
        PrinterColumn("Format", "string", ".spec.format", "Format of the data."),
        PrinterColumn("Rows", "integer", ".spec.rows", "Number of rows."),
        ready_column(),
        age_column(),
    ),
)
