"""ContinuousTraining: keeps a model fresh by starting TrainingJobs when a trigger fires."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from mlops_operator.api.common import (
    QUALIFIED_NAME,
    ApiModel,
    Conditions,
    DatasetName,
    DnsSubdomain,
    KindInfo,
    LabelKey,
    LabelValue,
    PrinterColumn,
    Resource,
    Rule,
    age_column,
    name_rule,
    ready_column,
)
from mlops_operator.api.model import TriggerType
from mlops_operator.api.trainingjob import TrainingJobTemplateSpec

# Its TrainingJobs are `<name>-<trigger suffix>` (at most 13 characters) and a TrainingJob
# name is at most 50.
MAX_NAME_LENGTH = 36
MAX_DECISIONS = 20
# Running TrainingJobs listed in status.active (activeCount counts them all): with
# `concurrencyPolicy: Allow` nothing else bounds them, and an over-long list is a status
# the API server refuses, every pass.
ACTIVE_LISTED = 64
CRON_MACROS = ("yearly", "annually", "monthly", "weekly", "daily", "midnight", "hourly")
# The shape of a cron expression (five fields, or a macro); the operator parses the rest.
CRON_SHAPE = rf"^(@({'|'.join(CRON_MACROS)})|[0-9*/,?A-Za-z-]+( +[0-9*/,?A-Za-z-]+){{4}})$"


class TemplateMetadata(ApiModel):
    """Labels and annotations of every TrainingJob made from the template."""

    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, max_length=32, description="Labels of each TrainingJob."
    )
    annotations: dict[LabelKey, Annotated[str, StringConstraints(max_length=4096)]] = Field(
        default_factory=dict, max_length=32, description="Annotations of each TrainingJob."
    )


class TrainingJobTemplate(ApiModel):
    """The TrainingJob each run is made from."""

    metadata: TemplateMetadata = Field(
        default_factory=TemplateMetadata, description="Labels and annotations of each run."
    )
    spec: TrainingJobTemplateSpec = Field(description="The spec of each run's TrainingJob.")


class Schedule(ApiModel):
    """Start a run on a cron schedule, as a CronJob does."""

    cron: Annotated[str, StringConstraints(max_length=128, pattern=CRON_SHAPE)] = Field(
        description="Five cron fields (minute hour day-of-month month day-of-week) or a macro"
        " such as `@daily`."
    )
    time_zone: (
        Annotated[
            str, StringConstraints(max_length=64, pattern=r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$")
        ]
        | None
    ) = Field(
        default=None,
        description="IANA time zone of the schedule, for example `Europe/Paris`; UTC if unset.",
    )
    starting_deadline_seconds: int | None = Field(
        default=None,
        ge=1,
        le=31536000,
        description="A run missed by more than this (the operator was down) is skipped; at"
        " most one missed run is caught up in any case.",
    )


class OnNewDataset(ApiModel):
    """Start a run on each new Ready version of a Dataset."""

    name: DatasetName = Field(description="The dataset (`spec.datasetName` of its versions).")


class OnModelDeployment(ApiModel):
    """Start a run when a condition of a ModelDeployment takes a status (such as `Drifted`
    becoming True) and holds it for `forSeconds`."""

    name: DnsSubdomain = Field(description="Name of the ModelDeployment.")
    condition: Annotated[
        str, StringConstraints(min_length=1, max_length=316, pattern=QUALIFIED_NAME)
    ] = Field(description="Type of its condition, for example `Drifted`.")
    status: Literal["True", "False", "Unknown"] = Field(
        default="True", description="The status that fires the trigger."
    )
    for_seconds: int = Field(
        default=0, ge=0, le=86400, description="How long the status must hold first."
    )


class Triggers(ApiModel):
    """What starts a run; any of them."""

    rules = (
        Rule(
            cel="has(self.schedule) || has(self.onNewDataset) || has(self.onModelDeployment)",
            message="set at least one of schedule, onNewDataset or onModelDeployment",
            check=lambda t: any((t.schedule, t.on_new_dataset, t.on_model_deployment)),
        ),
    )

    schedule: Schedule | None = Field(default=None, description="A cron schedule.")
    on_new_dataset: OnNewDataset | None = Field(
        default=None, description="Each new Ready version of a Dataset."
    )
    on_model_deployment: OnModelDeployment | None = Field(
        default=None, description="A condition of a ModelDeployment."
    )


def _dataset_matches(spec: ContinuousTrainingSpec) -> bool:
    trigger = spec.triggers.on_new_dataset
    data = spec.template.spec.dataset
    return (
        trigger is None or data is None or (data.ref is not None and data.ref.name == trigger.name)
    )


class ContinuousTrainingSpec(ApiModel):
    """The template of each run, what starts one, and how runs may overlap."""

    rules = (
        Rule(
            cel=(
                "!has(self.triggers.onNewDataset) || !has(self.template.spec.dataset)"
                " || (has(self.template.spec.dataset.ref)"
                " && self.template.spec.dataset.ref.name == self.triggers.onNewDataset.name)"
            ),
            message="onNewDataset: the template's dataset must be unset or a ref to the same"
            " dataset, which each run reads at the version that fired",
            check=_dataset_matches,
            field="triggers.onNewDataset",
        ),
    )

    template: TrainingJobTemplate = Field(description="The TrainingJob each run is made from.")
    triggers: Triggers = Field(description="What starts a run.")
    concurrency_policy: Literal["Forbid", "Replace", "Allow"] = Field(
        default="Forbid",
        description="When a trigger fires while a run is active: `Forbid` (a schedule's run is"
        " skipped; a dataset or condition waits for the active run), `Replace` (the active"
        " run is deleted) or `Allow`.",
    )
    cooldown_seconds: int = Field(
        default=0,
        ge=0,
        le=31536000,
        description="No run starts sooner than this after the previous one started.",
    )
    max_runs_per_day: int | None = Field(
        default=None,
        ge=1,
        le=1440,
        description="At most this many runs start per day (in the schedule's time zone, else UTC).",
    )
    successful_runs_history_limit: int = Field(
        default=3,
        ge=0,
        le=100,
        description="Succeeded TrainingJobs kept; their Models always stay.",
    )
    failed_runs_history_limit: int = Field(
        default=1, ge=0, le=100, description="Failed TrainingJobs kept."
    )
    suspend: bool = Field(default=False, description="Start no runs while true.")


class LastRun(ApiModel):
    """The run started last."""

    training_job: DnsSubdomain = Field(description="Its TrainingJob.")
    trigger: TriggerType = Field(description="The trigger that started it.")
    detail: Annotated[str, StringConstraints(max_length=512)] = Field(
        description="What fired the trigger."
    )
    time: datetime = Field(strict=False, description="When it started.")


class Decision(ApiModel):
    """A trigger that fired and what was done about it."""

    time: datetime = Field(strict=False, description="When.")
    trigger: TriggerType = Field(description="Which trigger.")
    detail: Annotated[str, StringConstraints(max_length=512)] = Field(
        description="What fired it: the schedule time, the Dataset version, the condition."
    )
    action: Literal["Started", "Replaced", "Skipped", "Deferred"] = Field(
        description="`Started` a run; `Replaced` the active run with a new one; `Skipped` (a"
        " schedule's run is lost); `Deferred` (a dataset or condition waits, and starts a run"
        " once nothing holds it back)."
    )
    reason: Annotated[str, StringConstraints(max_length=64, pattern=r"^[A-Za-z]+$")] = Field(
        description="`Triggered`, `Cooldown`, `ConcurrencyForbid`, `DailyLimit`, `MissedDeadline`."
    )
    message: Annotated[str, StringConstraints(max_length=1024)] = Field(description="Details.")
    training_job: DnsSubdomain | None = Field(default=None, description="The run it started.")


class TriggerState(ApiModel):
    """What each trigger last acted on: how a restarted operator knows what is new."""

    last_schedule_time: datetime | None = Field(
        default=None, strict=False, description="The last scheduled time acted on."
    )
    dataset_version: int | None = Field(
        default=None, ge=0, description="The last Dataset version acted on."
    )
    condition_since: datetime | None = Field(
        default=None,
        strict=False,
        description="lastTransitionTime of the ModelDeployment condition last acted on.",
    )


class DailyRuns(ApiModel):
    """Runs started on one day, for maxRunsPerDay."""

    day: Annotated[str, StringConstraints(max_length=10, pattern=r"^\d{4}-\d{2}-\d{2}$")] = Field(
        description="The day, `YYYY-MM-DD`."
    )
    count: int = Field(ge=0, description="Runs started that day.")


class ContinuousTrainingStatus(ApiModel):
    """Observed state, written by the operator."""

    conditions: Conditions = Field(default_factory=list, description="Current conditions.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="The `metadata.generation` this status describes."
    )
    active: list[DnsSubdomain] = Field(
        default_factory=list,
        max_length=ACTIVE_LISTED,
        description="TrainingJobs running now: the first 64 by name.",
    )
    active_count: int | None = Field(
        default=None, ge=0, description="How many TrainingJobs run now."
    )
    last_run: LastRun | None = Field(default=None, description="The run started last.")
    last_successful_model: DnsSubdomain | None = Field(
        default=None, description="The Model the last successful run registered."
    )
    next_schedule_time: datetime | None = Field(
        default=None, strict=False, description="When the schedule fires next."
    )
    triggers: TriggerState = Field(
        default_factory=TriggerState, description="What each trigger last acted on."
    )
    daily_runs: DailyRuns | None = Field(default=None, description="Runs started today.")
    decisions: list[Decision] = Field(
        default_factory=list,
        max_length=MAX_DECISIONS,
        description=f"The last {MAX_DECISIONS} triggers that fired and what was decided,"
        " oldest first.",
    )


class ContinuousTraining(Resource):
    """Keeps a model fresh: starts TrainingJobs from a template when a trigger fires."""

    rules = (name_rule("ContinuousTraining", MAX_NAME_LENGTH, " (its TrainingJobs add a suffix)"),)

    kind: Literal["ContinuousTraining"] = Field(
        default="ContinuousTraining", description="ContinuousTraining."
    )
    spec: ContinuousTrainingSpec = Field(description="Template, triggers and policies.")
    status: ContinuousTrainingStatus | None = Field(default=None, description="Observed state.")


CONTINUOUS_TRAINING = KindInfo(
    kind="ContinuousTraining",
    plural="continuoustrainings",
    short_name="ct",
    resource=ContinuousTraining,
    spec=ContinuousTrainingSpec,
    status=ContinuousTrainingStatus,
    max_name_length=MAX_NAME_LENGTH,
    printer_columns=(
        PrinterColumn(
            "Model", "string", ".spec.template.spec.output.modelName", "Model it trains."
        ),
        PrinterColumn("Schedule", "string", ".spec.triggers.schedule.cron", "Cron schedule."),
        PrinterColumn("Suspend", "boolean", ".spec.suspend", "Whether runs are suspended."),
        PrinterColumn("Last Run", "string", ".status.lastRun.trainingJob", "The run started last."),
        PrinterColumn(
            "Last Model", "string", ".status.lastSuccessfulModel", "Model of the last success."
        ),
        ready_column(),
        age_column(),
    ),
)
