"""TrainingJob: runs training pods and registers their output as a Model."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from mlops_operator.api.common import (
    MAX_NAME_LENGTH,
    ApiModel,
    Arg,
    Conditions,
    DnsSubdomain,
    Env,
    Hyperparameters,
    Image,
    KindInfo,
    MetricName,
    Metrics,
    ModelFormat,
    ModelName,
    PodMetadata,
    PrinterColumn,
    ResolvedDataset,
    Resource,
    ResourceRequirements,
    Scheduling,
    TrainingData,
    Uri,
    age_column,
    immutable_fields,
    name_rule,
)


class Output(ApiModel):
    """Where the artifact goes and the Model it is registered as."""

    uri: Uri = Field(
        description="Base URI for artifacts. Each run writes under its own directory"
        " `<uri>/<trainingjob>-<uid prefix>`, passed as `MLOPS_OUTPUT_URI`, so a rerun never"
        " overwrites a registered artifact."
    )
    model_name: ModelName = Field(
        description="Name of the model: on success the operator registers a Model"
        " `<modelName>-v<N>` with the next free version N.",
    )
    format: ModelFormat = Field(description="Format of the artifact; picks the serving runtime.")
    key_metric: MetricName | None = Field(
        default=None, description="The metric shown by `kubectl get` and copied to the Model."
    )


class TrainingJobSpec(ApiModel):
    """What to train and how. Immutable after creation except `suspend`."""

    image: Image = Field(description="Container image that runs the training code.")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(
        default=None, description="When to pull the image; the Kubernetes default if unset."
    )
    command: list[Arg] = Field(
        default_factory=list, max_length=32, description="Entrypoint; the image's if empty."
    )
    args: list[Arg] = Field(
        default_factory=list, max_length=64, description="Arguments to the entrypoint."
    )
    env: Env = Field(default_factory=list, description="Extra environment variables.")
    resources: ResourceRequirements = Field(
        default_factory=ResourceRequirements,
        description="Resources of each node's pod; GPUs as `limits: {nvidia.com/gpu: N}`.",
    )
    nodes: int = Field(
        default=1,
        ge=1,
        le=128,
        description="Number of pods (nodes). More than one runs an Indexed Job with a"
        " headless Service and the torchrun environment.",
    )
    processes_per_node: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Training processes per node (torchrun `--nproc-per-node`).",
    )
    hyperparameters: Hyperparameters = Field(
        default_factory=dict,
        description="Hyperparameters, passed as JSON in `MLOPS_HPARAMS` and recorded in the"
        ' Model\'s lineage. Values are strings: quote numbers (`lr: "0.01"`).',
    )
    dataset: TrainingData | None = Field(
        default=None, description="The data the training reads: a registered Dataset or a URI."
    )
    output: Output = Field(description="Where the artifact goes and the Model it becomes.")
    backoff_limit: int = Field(
        default=0, ge=0, le=100, description="Retries after a failed attempt before the job fails."
    )
    active_deadline_seconds: int | None = Field(
        default=None, ge=1, le=31536000, description="Fail the job when it runs longer than this."
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None,
        ge=0,
        le=31536000,
        description="Delete the child Job and its pods this many seconds after the run finished"
        " and its output was registered; the TrainingJob and its Model stay.",
    )
    suspend: bool = Field(
        default=False, description="Suspend the job: no pods run until it is false again."
    )
    queue_name: DnsSubdomain | None = Field(
        default=None, description="Kueue LocalQueue to admit the job through."
    )
    service_account_name: DnsSubdomain | None = Field(
        default=None, description="ServiceAccount the pods run as (for access to data and output)."
    )
    scheduling: Scheduling = Field(
        default_factory=Scheduling, description="Node selection and priority of the pods."
    )
    pod_metadata: PodMetadata = Field(
        default_factory=PodMetadata, description="Labels and annotations added to every pod."
    )


TrainingJobSpec.rules = immutable_fields(TrainingJobSpec, mutable=("suspend",))


class TrainingJobTemplateSpec(TrainingJobSpec):
    """A TrainingJob spec inside another object (a ContinuousTraining's template): the same
    fields and checks, but editable, since the immutability rules belong to a TrainingJob."""

    rules = ()


class Failure(ApiModel):
    """Why the training failed."""

    reason: Annotated[str, StringConstraints(max_length=256)] = Field(
        description="Machine-readable reason: `BackoffLimitExceeded`, `DeadlineExceeded`,"
        " `OOMKilled`, `ImagePullFailed`, `JobDeleted` or `JobNameConflict`."
    )
    exit_code: int | None = Field(default=None, description="Exit code of the training container.")
    message: Annotated[str, StringConstraints(max_length=4096)] = Field(
        default="", description="The container's termination message or the Job's message."
    )


TrainingPhase = Literal["Pending", "Queued", "Running", "Suspended", "Succeeded", "Failed"]


class TrainingJobStatus(ApiModel):
    """Observed state, written by the operator."""

    phase: TrainingPhase | None = Field(default=None, description="Summary of the job's progress.")
    conditions: Conditions = Field(default_factory=list, description="Current conditions.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="The `metadata.generation` this status describes."
    )
    start_time: datetime | None = Field(
        default=None,
        strict=False,
        description="When the Job started its pods; recorded once the run is running or done.",
    )
    completion_time: datetime | None = Field(
        default=None, strict=False, description="When the job succeeded or failed."
    )
    attempts: int | None = Field(default=None, ge=0, description="Attempts started so far.")
    job_name: DnsSubdomain | None = Field(
        default=None, description="Name of the child batch/v1 Job."
    )
    metrics: Metrics = Field(
        default_factory=dict, description="Metrics reported by the training container."
    )
    key_metric: Annotated[str, StringConstraints(max_length=128)] | None = Field(
        default=None, description="`name=value` of spec.output.keyMetric, for `kubectl get`."
    )
    failure: Failure | None = Field(default=None, description="Set when the job failed.")
    registered_model: DnsSubdomain | None = Field(
        default=None, description="Name of the Model registered from the output."
    )
    dataset: ResolvedDataset | None = Field(
        default=None, description="The data the run reads, as resolved when it started."
    )


class TrainingJob(Resource):
    """Runs training pods and registers their output as a Model."""

    rules = (name_rule("TrainingJob"),)

    kind: Literal["TrainingJob"] = Field(default="TrainingJob", description="TrainingJob.")
    spec: TrainingJobSpec = Field(description="What to train and how.")
    status: TrainingJobStatus | None = Field(default=None, description="Observed state.")


TRAINING_JOB = KindInfo(
    kind="TrainingJob",
    plural="trainingjobs",
    short_name="tj",
    resource=TrainingJob,
    spec=TrainingJobSpec,
    status=TrainingJobStatus,
    max_name_length=MAX_NAME_LENGTH,
    printer_columns=(
        PrinterColumn("Phase", "string", ".status.phase", "Summary of the job's progress."),
        PrinterColumn("Model", "string", ".spec.output.modelName", "Model name it registers."),
        PrinterColumn("Nodes", "integer", ".spec.nodes", "Number of pods."),
        PrinterColumn("Metric", "string", ".status.keyMetric", "The key metric."),
        PrinterColumn("Registered", "string", ".status.registeredModel", "Registered Model."),
        age_column(),
    ),
)
